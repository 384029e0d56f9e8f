//! C2SP tlog checkpoints (<https://c2sp.org/tlog-checkpoint>): the signed tree head of the log,
//! a signed note whose text is the origin, the tree size, the base64 root hash and optional
//! extension lines.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

use crate::note::{self, NoteError, NoteSigner, NoteVerifier};

/// An RFC 9162 Merkle tree root hash (SHA-256).
type RootHash = [u8; 32];

/// How much of an offending line an error quotes: enough to recognise it, not a whole hostile
/// note.
const QUOTE_LIMIT: usize = 80;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CheckpointError {
    #[error("checkpoint note: {source}")]
    Note {
        #[source]
        source: NoteError,
    },
    #[error("checkpoint text must end with a newline")]
    MissingFinalNewline,
    #[error("checkpoint text has no {line} line")]
    MissingLine { line: &'static str },
    #[error("checkpoint origin (line 1) is empty")]
    EmptyOrigin,
    #[error("checkpoint {line} contains a newline or another control character")]
    ControlCharacter { line: String },
    #[error("bad checkpoint tree size {found:?} (line 2): {reason}")]
    BadSize { found: String, reason: &'static str },
    #[error("bad checkpoint root hash {found:?} (line 3): {reason}")]
    BadRoot { found: String, reason: String },
    #[error("checkpoint extension line {line} is empty; extension lines must be non-empty")]
    EmptyExtension { line: usize },
    #[error(
        "checkpoint origin {found:?} does not match the log key name {expected:?}: \
         the checkpoint is from another log, or the wrong log key is configured"
    )]
    OriginMismatch { expected: String, found: String },
}

impl From<NoteError> for CheckpointError {
    fn from(source: NoteError) -> Self {
        CheckpointError::Note { source }
    }
}

/// Quotes at most `QUOTE_LIMIT` characters of untrusted input in an error.
fn quote(s: &str) -> String {
    match s.char_indices().nth(QUOTE_LIMIT) {
        Some((end, _)) => format!("{}…", s.get(..end).unwrap_or_default()),
        None => s.to_owned(),
    }
}

/// A log checkpoint: the tree of `size` leaves under `origin` has root hash `root`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: RootHash,
    /// Opaque extra lines after the root hash; each must be non-empty.
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// The note text: origin, decimal size, base64 root and extension lines, each ending in a
    /// newline.
    pub fn body(&self) -> String {
        let mut body = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            BASE64.encode(self.root)
        );
        for extension in &self.extensions {
            body.push_str(extension);
            body.push('\n');
        }
        body
    }

    /// Parses a checkpoint note text (the text only, without signatures).
    pub fn parse_body(text: &str) -> Result<Self, CheckpointError> {
        let body = text
            .strip_suffix('\n')
            .ok_or(CheckpointError::MissingFinalNewline)?;
        let mut lines = body.split('\n');
        // `split` always yields at least one item; an empty body gives an empty origin.
        let origin = lines.next().unwrap_or_default();
        if origin.is_empty() {
            return Err(CheckpointError::EmptyOrigin);
        }
        let size = lines.next().ok_or(CheckpointError::MissingLine {
            line: "tree size (line 2)",
        })?;
        let root = lines.next().ok_or(CheckpointError::MissingLine {
            line: "root hash (line 3)",
        })?;
        let checkpoint = Checkpoint {
            origin: origin.to_owned(),
            size: parse_size(size)?,
            root: parse_root(root)?,
            extensions: lines.map(str::to_owned).collect(),
        };
        checkpoint.validate()?;
        Ok(checkpoint)
    }

    /// Signs the checkpoint and returns the signed note. Refuses a checkpoint whose body would
    /// not parse back to the same checkpoint.
    pub fn sign(&self, signer: &NoteSigner) -> Result<String, CheckpointError> {
        self.validate()?;
        Ok(signer.sign(&self.body())?)
    }

    /// Checks the origin and extension lines, which must each be one non-empty line.
    fn validate(&self) -> Result<(), CheckpointError> {
        let has_control = |s: &str| s.chars().any(|c| c < ' ');
        if self.origin.is_empty() {
            return Err(CheckpointError::EmptyOrigin);
        }
        if has_control(&self.origin) {
            return Err(CheckpointError::ControlCharacter {
                line: "origin (line 1)".to_owned(),
            });
        }
        for (index, extension) in self.extensions.iter().enumerate() {
            // Extension lines follow the three mandatory lines.
            let line = index + 4;
            if extension.is_empty() {
                return Err(CheckpointError::EmptyExtension { line });
            }
            if has_control(extension) {
                return Err(CheckpointError::ControlCharacter {
                    line: format!("extension line {line}"),
                });
            }
        }
        Ok(())
    }
}

/// Decimal, no sign, no leading zeros except for "0" itself, so that each size has exactly one
/// encoding.
fn parse_size(line: &str) -> Result<u64, CheckpointError> {
    let bad = |reason| {
        Err(CheckpointError::BadSize {
            found: quote(line),
            reason,
        })
    };
    if line.is_empty() {
        return bad("the tree size line is empty");
    }
    if !line.bytes().all(|b| b.is_ascii_digit()) {
        return bad("the tree size must be decimal digits only, with no sign or spaces");
    }
    if line.len() > 1 && line.starts_with('0') {
        return bad("the tree size must not have leading zeros");
    }
    match line.parse::<u64>() {
        Ok(size) => Ok(size),
        Err(_) => bad("the tree size does not fit in 64 bits"),
    }
}

fn parse_root(line: &str) -> Result<RootHash, CheckpointError> {
    let bad = |reason: String| CheckpointError::BadRoot {
        found: quote(line),
        reason,
    };
    let raw = BASE64
        .decode(line)
        .map_err(|_| bad("the root hash is not standard padded base64".to_owned()))?;
    let len = raw.len();
    raw.try_into().map_err(|_| {
        bad(format!(
            "the root hash is {len} bytes; a SHA-256 root hash is 32 bytes"
        ))
    })
}

/// A checkpoint whose signature has been checked, with the exact note bytes (kept as evidence).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedCheckpoint {
    pub checkpoint: Checkpoint,
    pub note: String,
}

impl SignedCheckpoint {
    /// Parses the note, verifies the log's signature, parses the body, and checks the origin
    /// equals the verifier's name.
    ///
    /// The signature is checked before the body is parsed: an unverified text is never
    /// interpreted. Our logs sign with key name == origin (as C2SP recommends), so a checkpoint
    /// whose origin differs from the key name is refused even if the signature is good.
    pub fn verify(note: &str, log_key: &NoteVerifier) -> Result<Self, CheckpointError> {
        let opened = note::open(note, log_key)?;
        let checkpoint = Checkpoint::parse_body(&opened.text)?;
        if checkpoint.origin != log_key.name() {
            return Err(CheckpointError::OriginMismatch {
                expected: log_key.name().to_owned(),
                found: quote(&checkpoint.origin),
            });
        }
        Ok(SignedCheckpoint {
            checkpoint,
            note: note.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;
    use proptest::prelude::*;

    const ORIGIN: &str = "fairtrail.example/log";

    fn signer(name: &str, seed: u8) -> NoteSigner {
        NoteSigner::new(name, SigningKey::from_bytes(&[seed; 32])).unwrap()
    }

    fn checkpoint() -> Checkpoint {
        Checkpoint {
            origin: ORIGIN.to_owned(),
            size: 20852163,
            root: [0xab; 32],
            extensions: vec![],
        }
    }

    #[test]
    fn body_has_the_c2sp_layout() {
        let root = BASE64
            .decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=")
            .unwrap();
        let cp = Checkpoint {
            origin: "example.com/behind-the-sofa".to_owned(),
            size: 20852163,
            root: root.try_into().unwrap(),
            extensions: vec![],
        };
        let body =
            "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
        assert_eq!(cp.body(), body);
        assert_eq!(Checkpoint::parse_body(body).unwrap(), cp);
    }

    #[test]
    fn bodies_round_trip() {
        let mut cp = checkpoint();
        for (size, extensions) in [
            (0, vec![]),
            (1, vec!["ext one".to_owned()]),
            (u64::MAX, vec!["a".into(), "b".into()]),
        ] {
            cp.size = size;
            cp.extensions = extensions;
            assert_eq!(Checkpoint::parse_body(&cp.body()).unwrap(), cp);
        }
    }

    #[test]
    fn missing_lines_are_refused() {
        let root = BASE64.encode([0u8; 32]);
        assert_eq!(
            Checkpoint::parse_body(""),
            Err(CheckpointError::MissingFinalNewline)
        );
        assert_eq!(
            Checkpoint::parse_body(&format!("o\n1\n{root}")),
            Err(CheckpointError::MissingFinalNewline)
        );
        assert_eq!(
            Checkpoint::parse_body("\n"),
            Err(CheckpointError::EmptyOrigin)
        );
        assert_eq!(
            Checkpoint::parse_body(&format!("\n1\n{root}\n")),
            Err(CheckpointError::EmptyOrigin)
        );
        assert!(matches!(
            Checkpoint::parse_body("o\n"),
            Err(CheckpointError::MissingLine { .. })
        ));
        assert!(matches!(
            Checkpoint::parse_body("o\n1\n"),
            Err(CheckpointError::MissingLine { .. })
        ));
        assert_eq!(
            Checkpoint::parse_body(&format!("o\n1\n{root}\n\n")),
            Err(CheckpointError::EmptyExtension { line: 4 })
        );
        assert_eq!(
            Checkpoint::parse_body(&format!("o\n1\n{root}\nx\n\n")),
            Err(CheckpointError::EmptyExtension { line: 5 })
        );
        assert!(matches!(
            Checkpoint::parse_body(&format!("o\r\n1\n{root}\n")),
            Err(CheckpointError::ControlCharacter { .. })
        ));
    }

    #[test]
    fn bad_sizes_are_refused() {
        let root = BASE64.encode([0u8; 32]);
        for size in [
            "",
            "01",
            "00",
            "-1",
            "+1",
            " 1",
            "1 ",
            "1a",
            "0x10",
            "１",
            "18446744073709551616",
        ] {
            let result = Checkpoint::parse_body(&format!("o\n{size}\n{root}\n"));
            assert!(
                matches!(result, Err(CheckpointError::BadSize { .. })),
                "{size:?}: {result:?}"
            );
        }
        let max = Checkpoint::parse_body(&format!("o\n18446744073709551615\n{root}\n")).unwrap();
        assert_eq!(max.size, u64::MAX);
    }

    #[test]
    fn bad_roots_are_refused() {
        let full = BASE64.encode([0u8; 32]);
        for root in [
            String::new(),
            "not base64!".to_owned(),
            full.trim_end_matches('=').to_owned(),
            full.replace('A', "-"),
            BASE64.encode([0u8; 31]),
            BASE64.encode([0u8; 33]),
            format!(" {full}"),
        ] {
            let result = Checkpoint::parse_body(&format!("o\n1\n{root}\n"));
            assert!(
                matches!(result, Err(CheckpointError::BadRoot { .. })),
                "{root:?}: {result:?}"
            );
        }
    }

    #[test]
    fn sign_and_verify_round_trip() {
        let log = signer(ORIGIN, 1);
        let mut cp = checkpoint();
        cp.extensions = vec!["note: extension".to_owned()];
        let note = cp.sign(&log).unwrap();
        let signed = SignedCheckpoint::verify(&note, &log.verifier()).unwrap();
        assert_eq!(signed.checkpoint, cp);
        assert_eq!(signed.note, note);
        assert!(note.starts_with(&cp.body()));
    }

    #[test]
    fn signature_by_another_key_is_refused() {
        let log = signer(ORIGIN, 1);
        let impostor = signer(ORIGIN, 2);
        let note = checkpoint().sign(&impostor).unwrap();
        assert_eq!(
            SignedCheckpoint::verify(&note, &log.verifier()),
            Err(CheckpointError::Note {
                source: NoteError::NoSignatureByKey {
                    name: ORIGIN.to_owned(),
                    key_id: log.key_id()
                }
            })
        );
    }

    #[test]
    fn tampered_checkpoint_is_refused() {
        let log = signer(ORIGIN, 1);
        let note = checkpoint()
            .sign(&log)
            .unwrap()
            .replace("20852163", "20852164");
        assert!(matches!(
            SignedCheckpoint::verify(&note, &log.verifier()),
            Err(CheckpointError::Note {
                source: NoteError::BadSignature { .. }
            })
        ));
    }

    #[test]
    fn origin_must_match_the_key_name() {
        let log = signer("other.example/log", 1);
        let note = checkpoint().sign(&log).unwrap();
        assert_eq!(
            SignedCheckpoint::verify(&note, &log.verifier()),
            Err(CheckpointError::OriginMismatch {
                expected: "other.example/log".to_owned(),
                found: ORIGIN.to_owned()
            })
        );
    }

    #[test]
    fn unknown_cosignatures_are_ignored() {
        let log = signer(ORIGIN, 1);
        let witness = signer("witness.example", 3);
        let body = checkpoint().body();
        let note = checkpoint().sign(&log).unwrap();
        let cosigned = witness.sign(&body).unwrap();
        let cosignature = cosigned.strip_prefix(&format!("{body}\n")).unwrap();
        let both = format!("{note}{cosignature}");
        let signed = SignedCheckpoint::verify(&both, &log.verifier()).unwrap();
        assert_eq!(signed.note, both);
        assert_eq!(signed.checkpoint, checkpoint());
    }

    #[test]
    fn verified_note_must_hold_a_valid_body() {
        let log = signer(ORIGIN, 1);
        let note = log
            .sign(&format!("{ORIGIN}\n01\n{}\n", BASE64.encode([0u8; 32])))
            .unwrap();
        assert!(matches!(
            SignedCheckpoint::verify(&note, &log.verifier()),
            Err(CheckpointError::BadSize { .. })
        ));
    }

    #[test]
    fn sign_refuses_checkpoints_that_would_not_parse_back() {
        let log = signer(ORIGIN, 1);
        for cp in [
            Checkpoint {
                origin: String::new(),
                ..checkpoint()
            },
            Checkpoint {
                origin: "a\nb".to_owned(),
                ..checkpoint()
            },
            Checkpoint {
                extensions: vec![String::new()],
                ..checkpoint()
            },
            Checkpoint {
                extensions: vec!["x\ny".to_owned()],
                ..checkpoint()
            },
        ] {
            assert!(cp.sign(&log).is_err(), "{cp:?}");
        }
    }

    #[test]
    fn long_input_is_quoted_briefly() {
        let long = "9".repeat(10_000);
        let err = Checkpoint::parse_body(&format!("o\n{long}\nx\n")).unwrap_err();
        assert!(err.to_string().len() < 300, "{err}");
    }

    proptest! {
        #[test]
        fn parse_body_never_panics(text in "(.{0,40}\n?){0,6}") {
            let _ = Checkpoint::parse_body(&text);
        }

        #[test]
        fn valid_checkpoints_round_trip(
            origin in "[a-z0-9./-]{1,30}",
            size in any::<u64>(),
            root in any::<[u8; 32]>(),
            extensions in prop::collection::vec("[^\u{0}-\u{1f}]{1,20}", 0..4),
        ) {
            let cp = Checkpoint { origin, size, root, extensions };
            prop_assert_eq!(Checkpoint::parse_body(&cp.body()).unwrap(), cp.clone());
            let log = NoteSigner::new(&cp.origin, SigningKey::from_bytes(&root)).unwrap();
            let signed = SignedCheckpoint::verify(&cp.sign(&log).unwrap(), &log.verifier()).unwrap();
            prop_assert_eq!(signed.checkpoint, cp);
        }
    }
}
