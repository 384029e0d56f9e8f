//! C2SP signed notes (<https://c2sp.org/signed-note>) with Ed25519 keys: signing, parsing and
//! verifying notes, and the text forms of signer and verifier keys used by golang.org/x/mod/sumdb/note.
//!
//! A signed note is a text ending in a newline, a blank line, then one or more signature lines
//! `— <key name> <base64(4-byte key id || signature)>`. The signed message is the text including
//! its final newline. Checkpoints (see `checkpoint.rs`) are signed notes.

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

/// The most signature lines [`Note::parse`] accepts. The spec asks verifiers to accept at least
/// 16; the cap keeps a hostile note from making us parse (and keep) an unbounded list.
pub const MAX_SIGNATURES: usize = 100;

/// The signature-type byte of Ed25519 keys, the only type supported here.
const ALG_ED25519: u8 = 0x01;

/// Every signature line starts with an em dash (U+2014) and a space.
const SIGNATURE_PREFIX: &str = "\u{2014} ";

/// The literal that starts a signer key, so a secret key cannot be mistaken for a public one.
const SIGNER_KEY_PREFIX: &str = "PRIVATE+KEY+";

/// Why a note, a key text or a signature was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NoteError {
    #[error("malformed signed note: {reason}")]
    MalformedNote { reason: String },
    #[error("signed note has no signature lines after its last blank line")]
    MissingSignatures,
    #[error("malformed signature line {line} of the signed note: {reason}")]
    MalformedSignatureLine { line: usize, reason: &'static str },
    #[error("signed note has more than {max} signature lines; refusing to parse it")]
    TooManySignatures { max: usize },
    #[error("invalid key name {name:?}: {reason}")]
    BadKeyName { name: String, reason: &'static str },
    #[error("malformed {kind} key text: {reason}")]
    BadKeyText { kind: KeyKind, reason: &'static str },
    #[error("{kind} key uses signature type {algorithm:#04x}; only Ed25519 (0x01) is supported")]
    UnknownKeyAlgorithm { kind: KeyKind, algorithm: u8 },
    #[error(
        "{kind} key text for {name:?} says key id {}, but the key's id is {}; the key text is corrupt",
        hex::encode(.found),
        hex::encode(.expected)
    )]
    KeyIdMismatch {
        kind: KeyKind,
        name: String,
        expected: [u8; 4],
        found: [u8; 4],
    },
    #[error("verifier key for {name:?} is not a valid Ed25519 public key (not a curve point)")]
    InvalidPublicKey { name: String },
    #[error(
        "verifier key for {name:?} is a weak (small-order) Ed25519 key; \
         anyone could forge its signatures"
    )]
    WeakKey { name: String },
    #[error("cannot sign this text: {reason}")]
    BadText { reason: &'static str },
    #[error(
        "the signature by key {name}+{} does not verify: \
         the note was altered or signed by another key",
        hex::encode(.key_id)
    )]
    BadSignature { name: String, key_id: [u8; 4] },
    #[error("the note has no signature by key {name}+{}", hex::encode(.key_id))]
    NoSignatureByKey { name: String, key_id: [u8; 4] },
}

/// Which kind of key text an error is about; a signer key's text is never quoted in errors
/// because it is secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    Signer,
    Verifier,
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyKind::Signer => "signer",
            KeyKind::Verifier => "verifier",
        })
    }
}

/// The key id of an Ed25519 key: the first 4 bytes of SHA-256(name || 0x0A || 0x01 || key).
pub fn key_id(name: &str, public_key: &[u8; 32]) -> [u8; 4] {
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update([b'\n', ALG_ED25519]);
    hasher.update(public_key);
    let digest = hasher.finalize();
    let mut id = [0u8; 4];
    id.copy_from_slice(&digest[..4]);
    id
}

/// What is wrong with a key name, if anything. Besides the spec's rules (non-empty, no Unicode
/// spaces, no '+'), control characters are refused because a note containing one does not parse.
fn name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("a key name must not be empty")
    } else if name.contains('+') {
        Some("a key name must not contain '+'")
    } else if name.chars().any(char::is_whitespace) {
        Some("a key name must not contain spaces or other whitespace")
    } else if name.chars().any(|c| c < ' ') {
        Some("a key name must not contain control characters")
    } else {
        None
    }
}

fn check_name(name: &str) -> Result<(), NoteError> {
    match name_problem(name) {
        Some(reason) => Err(NoteError::BadKeyName {
            name: name.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// Parses the 8 hex digits of a key id in a key text. Upper case is accepted, as Go does.
fn parse_key_id(kind: KeyKind, hex_id: &str) -> Result<[u8; 4], NoteError> {
    let mut id = [0u8; 4];
    if hex_id.len() != 8 || hex::decode_to_slice(hex_id, &mut id).is_err() {
        return Err(NoteError::BadKeyText {
            kind,
            reason: "the key id must be 8 hex digits",
        });
    }
    Ok(id)
}

/// Decodes the `base64(0x01 || 32 bytes)` part of a key text into the 32 key bytes.
fn parse_key_bytes(kind: KeyKind, b64: &str) -> Result<[u8; 32], NoteError> {
    let raw = BASE64.decode(b64).map_err(|_| NoteError::BadKeyText {
        kind,
        reason: "the key data is not standard padded base64",
    })?;
    let (&algorithm, key) = raw.split_first().ok_or(NoteError::BadKeyText {
        kind,
        reason: "the key data is empty",
    })?;
    if algorithm != ALG_ED25519 {
        return Err(NoteError::UnknownKeyAlgorithm { kind, algorithm });
    }
    key.try_into().map_err(|_| NoteError::BadKeyText {
        kind,
        reason: "an Ed25519 key must be a type byte 0x01 followed by 32 key bytes",
    })
}

/// Splits `<name>+<hex id>+<base64>`. The base64 part may itself contain '+', so only the first
/// two are separators (names cannot contain '+').
fn split_key_text(kind: KeyKind, text: &str) -> Result<(&str, &str, &str), NoteError> {
    let mut parts = text.splitn(3, '+');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(name), Some(id), Some(key)) => Ok((name, id, key)),
        _ => Err(NoteError::BadKeyText {
            kind,
            reason: "expected <name>+<8 hex digit key id>+<base64 key>",
        }),
    }
}

/// A key that signs notes: a name, an Ed25519 signing key and its key id.
///
/// Its `Debug` output leaves out the secret key.
#[derive(Clone)]
pub struct NoteSigner {
    name: String,
    key: SigningKey,
    key_id: [u8; 4],
}

impl fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NoteSigner")
            .field("name", &self.name)
            .field("key_id", &hex::encode(self.key_id))
            .field("key", &"<secret>")
            .finish()
    }
}

impl NoteSigner {
    pub fn new(name: &str, key: SigningKey) -> Result<Self, NoteError> {
        check_name(name)?;
        let key_id = key_id(name, key.verifying_key().as_bytes());
        Ok(NoteSigner {
            name: name.to_owned(),
            key,
            key_id,
        })
    }

    /// Parses a signer key text `PRIVATE+KEY+<name>+<hex key id>+<base64(0x01 || seed)>`, checking
    /// that the key id matches the key. Surrounding whitespace (a trailing newline from a file) is
    /// ignored.
    pub fn from_text(skey: &str) -> Result<Self, NoteError> {
        let kind = KeyKind::Signer;
        let rest = skey
            .trim()
            .strip_prefix(SIGNER_KEY_PREFIX)
            .ok_or(NoteError::BadKeyText {
                kind,
                reason: "a signer key must start with PRIVATE+KEY+",
            })?;
        let (name, hex_id, b64) = split_key_text(kind, rest)?;
        check_name(name)?;
        let found = parse_key_id(kind, hex_id)?;
        let seed = parse_key_bytes(kind, b64)?;
        let signer = NoteSigner::new(name, SigningKey::from_bytes(&seed))?;
        check_key_id(kind, name, signer.key_id, found)?;
        Ok(signer)
    }

    /// The signer key text, `PRIVATE+KEY+<name>+<hex key id>+<base64(0x01 || seed)>`.
    ///
    /// This is the SECRET key: anyone holding it can sign as this key. Store it like any private
    /// key and never log it.
    pub fn to_text(&self) -> String {
        format!(
            "{SIGNER_KEY_PREFIX}{}",
            key_text(&self.name, self.key_id, self.key.as_bytes())
        )
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn key_id(&self) -> [u8; 4] {
        self.key_id
    }

    /// The verifier for this signer's public key.
    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier {
            name: self.name.clone(),
            key_id: self.key_id,
            key: self.key.verifying_key(),
        }
    }

    /// Signs `text` and returns the whole signed note: the text, a blank line and one signature
    /// line. The text must be non-empty, end in a newline and contain no control characters other
    /// than newlines (it may contain blank lines).
    pub fn sign(&self, text: &str) -> Result<String, NoteError> {
        if text.is_empty() {
            return Err(NoteError::BadText {
                reason: "the text is empty",
            });
        }
        if !text.ends_with('\n') {
            return Err(NoteError::BadText {
                reason: "the text must end with a newline",
            });
        }
        if text.chars().any(|c| c < ' ' && c != '\n') {
            return Err(NoteError::BadText {
                reason: "the text contains a control character other than newline",
            });
        }
        let signature = self.key.sign(text.as_bytes());
        let mut raw = Vec::with_capacity(4 + 64);
        raw.extend_from_slice(&self.key_id);
        raw.extend_from_slice(&signature.to_bytes());
        Ok(format!(
            "{text}\n{SIGNATURE_PREFIX}{} {}\n",
            self.name,
            BASE64.encode(&raw)
        ))
    }
}

/// A key that verifies notes: a name, a key id and an Ed25519 public key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    key_id: [u8; 4],
    key: VerifyingKey,
}

impl NoteVerifier {
    /// Refuses small-order public keys: signatures for them can be forged by anyone.
    pub fn new(name: &str, key: VerifyingKey) -> Result<Self, NoteError> {
        check_name(name)?;
        if key.is_weak() {
            return Err(NoteError::WeakKey {
                name: name.to_owned(),
            });
        }
        let key_id = key_id(name, key.as_bytes());
        Ok(NoteVerifier {
            name: name.to_owned(),
            key_id,
            key,
        })
    }

    /// Parses a verifier key text `<name>+<hex key id>+<base64(0x01 || public key)>`, checking that
    /// the key id matches the key. Surrounding whitespace is ignored.
    pub fn from_text(vkey: &str) -> Result<Self, NoteError> {
        let kind = KeyKind::Verifier;
        let (name, hex_id, b64) = split_key_text(kind, vkey.trim())?;
        check_name(name)?;
        let found = parse_key_id(kind, hex_id)?;
        let bytes = parse_key_bytes(kind, b64)?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| NoteError::InvalidPublicKey {
            name: name.to_owned(),
        })?;
        let verifier = NoteVerifier::new(name, key)?;
        check_key_id(kind, name, verifier.key_id, found)?;
        Ok(verifier)
    }

    /// The verifier key text, `<name>+<hex key id>+<base64(0x01 || public key)>`.
    pub fn to_text(&self) -> String {
        key_text(&self.name, self.key_id, self.key.as_bytes())
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn key_id(&self) -> [u8; 4] {
        self.key_id
    }

    pub fn public_key(&self) -> &VerifyingKey {
        &self.key
    }

    /// Strict verification (no small-order components, canonical encodings): honest signers
    /// always pass, and it rules out the malleable signatures plain verification admits.
    fn verifies(&self, text: &str, signature: &[u8]) -> bool {
        match Signature::from_slice(signature) {
            Ok(signature) => self.key.verify_strict(text.as_bytes(), &signature).is_ok(),
            Err(_) => false,
        }
    }
}

impl fmt::Display for NoteVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

impl FromStr for NoteVerifier {
    type Err = NoteError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        NoteVerifier::from_text(s)
    }
}

/// One signature line of a note, not yet verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteSignature {
    pub name: String,
    pub key_id: [u8; 4],
    /// The signature bytes after the key id (64 bytes for Ed25519; other types may differ).
    pub signature: Vec<u8>,
}

/// A parsed signed note. Its text must be ignored until [`Note::verify`] has accepted it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// The signed text, including its final newline but not the blank separator line.
    pub text: String,
    pub signatures: Vec<NoteSignature>,
}

impl Note {
    /// Parses a signed note without verifying any signature. Every signature line must be well
    /// formed, whether or not its key is known.
    pub fn parse(msg: &str) -> Result<Note, NoteError> {
        if let Some(c) = msg.chars().find(|&c| c < ' ' && c != '\n') {
            return Err(NoteError::MalformedNote {
                reason: format!(
                    "it contains the control character U+{:04X}; only newlines are allowed",
                    u32::from(c)
                ),
            });
        }
        // The text may itself contain blank lines: the spec separates it from the signatures at
        // the last blank line, and signature lines are never empty.
        let split = msg.rfind("\n\n").ok_or_else(|| NoteError::MalformedNote {
            reason: "no blank line separates the text from the signature lines".to_owned(),
        })?;
        let (text, rest) = msg.split_at(split + 1);
        let block = rest.get(1..).unwrap_or_default();
        if block.is_empty() {
            return Err(NoteError::MissingSignatures);
        }
        let block = block
            .strip_suffix('\n')
            .ok_or_else(|| NoteError::MalformedNote {
                reason: "the last signature line does not end with a newline".to_owned(),
            })?;

        let mut signatures = Vec::new();
        for (index, line) in block.split('\n').enumerate() {
            if index >= MAX_SIGNATURES {
                return Err(NoteError::TooManySignatures {
                    max: MAX_SIGNATURES,
                });
            }
            let signature =
                parse_signature_line(line).map_err(|reason| NoteError::MalformedSignatureLine {
                    line: index + 1,
                    reason,
                })?;
            signatures.push(signature);
        }
        Ok(Note {
            text: text.to_owned(),
            signatures,
        })
    }

    /// Verifies the note with `verifier`: `Ok(())` when the note has a signature by that key
    /// (same name and key id) and every such signature verifies.
    ///
    /// Signatures by other keys are ignored, including ones sharing only the name or only the key
    /// id, as the spec requires. A signature by this key that fails is `BadSignature`, and no
    /// signature by it at all is `NoSignatureByKey`.
    pub fn verify(&self, verifier: &NoteVerifier) -> Result<(), NoteError> {
        let mut verified = false;
        for sig in &self.signatures {
            if sig.name != verifier.name || sig.key_id != verifier.key_id {
                continue;
            }
            if !verifier.verifies(&self.text, &sig.signature) {
                return Err(NoteError::BadSignature {
                    name: verifier.name.clone(),
                    key_id: verifier.key_id,
                });
            }
            verified = true;
        }
        if verified {
            Ok(())
        } else {
            Err(NoteError::NoSignatureByKey {
                name: verifier.name.clone(),
                key_id: verifier.key_id,
            })
        }
    }
}

/// Parses `— <name> <base64(key id || signature)>` (without its newline).
fn parse_signature_line(line: &str) -> Result<NoteSignature, &'static str> {
    let rest = line
        .strip_prefix(SIGNATURE_PREFIX)
        .ok_or("it does not start with an em dash (U+2014) and a space")?;
    let (name, b64) = rest
        .split_once(' ')
        .ok_or("it has no space between the key name and the signature")?;
    if let Some(problem) = name_problem(name) {
        return Err(problem);
    }
    let raw = BASE64
        .decode(b64)
        .map_err(|_| "the signature is not standard padded base64")?;
    if raw.len() < 5 {
        return Err("the signature is shorter than a 4-byte key id and a signature");
    }
    let (id, signature) = raw.split_at(4);
    let mut key_id = [0u8; 4];
    key_id.copy_from_slice(id);
    Ok(NoteSignature {
        name: name.to_owned(),
        key_id,
        signature: signature.to_vec(),
    })
}

/// Parses a signed note and verifies it with `verifier` (see [`Note::verify`]).
pub fn open(msg: &str, verifier: &NoteVerifier) -> Result<Note, NoteError> {
    let note = Note::parse(msg)?;
    note.verify(verifier)?;
    Ok(note)
}

/// `<name>+<hex key id>+<base64(0x01 || key bytes)>`: the common tail of both key texts.
fn key_text(name: &str, key_id: [u8; 4], key: &[u8; 32]) -> String {
    let mut raw = Vec::with_capacity(33);
    raw.push(ALG_ED25519);
    raw.extend_from_slice(key);
    format!("{name}+{}+{}", hex::encode(key_id), BASE64.encode(&raw))
}

/// A key text's id must be the one its name and key give.
fn check_key_id(
    kind: KeyKind,
    name: &str,
    expected: [u8; 4],
    found: [u8; 4],
) -> Result<(), NoteError> {
    if expected == found {
        Ok(())
    } else {
        Err(NoteError::KeyIdMismatch {
            kind,
            name: name.to_owned(),
            expected,
            found,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const VECTORS: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/testdata/signed-note/vectors.json"
    );

    const GO_TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                           then you don't know what your problem is.\n";

    fn vectors() -> serde_json::Map<String, serde_json::Value> {
        let text = std::fs::read_to_string(VECTORS)
            .unwrap_or_else(|e| panic!("cannot read test vectors {VECTORS}: {e}"));
        match serde_json::from_str(&text) {
            Ok(serde_json::Value::Object(map)) => map,
            other => panic!("{VECTORS} is not a JSON object: {other:?}"),
        }
    }

    fn field<'a>(vector: &'a serde_json::Value, key: &str) -> &'a str {
        vector[key]
            .as_str()
            .unwrap_or_else(|| panic!("vector has no string field {key:?}"))
    }

    fn signer(name: &str, seed: u8) -> NoteSigner {
        NoteSigner::new(name, SigningKey::from_bytes(&[seed; 32])).unwrap()
    }

    #[test]
    fn published_vectors_verify_or_fail_as_published() {
        let vectors = vectors();
        assert!(vectors.len() >= 3, "expected at least three vectors");
        for (label, vector) in &vectors {
            let verifier = NoteVerifier::from_text(field(vector, "verifier_key")).unwrap();
            let result = open(field(vector, "note"), &verifier);
            if vector["verifies"].as_bool() == Some(true) {
                let note = result.unwrap_or_else(|e| panic!("{label}: {e}"));
                assert_eq!(note.signatures.len(), 1, "{label}");
            } else {
                assert_eq!(
                    result,
                    Err(NoteError::BadSignature {
                        name: verifier.name().to_owned(),
                        key_id: verifier.key_id()
                    }),
                    "{label}"
                );
            }
        }
    }

    #[test]
    fn resigning_the_go_example_gives_the_published_bytes() {
        let vectors = vectors();
        let vector = &vectors["go-sumdb-note-example"];
        let signer = NoteSigner::from_text(field(vector, "signer_key")).unwrap();
        assert_eq!(signer.name(), "PeterNeumann");
        assert_eq!(signer.key_id(), [0xc7, 0x4f, 0x20, 0xa3]);
        assert_eq!(signer.sign(GO_TEXT).unwrap(), field(vector, "note"));
        assert_eq!(signer.verifier().to_text(), field(vector, "verifier_key"));
        assert_eq!(signer.to_text(), field(vector, "signer_key"));
    }

    #[test]
    fn key_id_matches_published_verifier_key() {
        let verifier: NoteVerifier =
            "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
                .parse()
                .unwrap();
        assert_eq!(
            key_id("example.com/foo", verifier.public_key().as_bytes()),
            [0x53, 0x0d, 0x90, 0x3a]
        );
    }

    #[test]
    fn keys_round_trip_through_text() {
        let signer = signer("fairtrail.example/log", 7);
        let again = NoteSigner::from_text(&format!("{}\n", signer.to_text())).unwrap();
        assert_eq!(again.to_text(), signer.to_text());
        assert_eq!(again.verifier(), signer.verifier());
        let verifier = signer.verifier();
        assert_eq!(
            verifier.to_string().parse::<NoteVerifier>().unwrap(),
            verifier
        );
        assert!(!format!("{signer:?}").contains(&signer.to_text()));
    }

    #[test]
    fn sign_and_open_round_trip_with_blank_lines_in_text() {
        let signer = signer("log.example", 1);
        for text in [
            "a\n",
            "\n",
            "first\n\nsecond\n",
            "ends blank\n\n",
            "— looks like a sig AAAA\n",
        ] {
            let msg = signer.sign(text).unwrap();
            let note = open(&msg, &signer.verifier()).unwrap();
            assert_eq!(note.text, text);
            assert_eq!(note.signatures.len(), 1);
            assert_eq!(note.signatures[0].name, "log.example");
            assert_eq!(note.signatures[0].key_id, signer.key_id());
        }
    }

    #[test]
    fn sign_refuses_bad_text() {
        let signer = signer("log.example", 1);
        for text in ["", "no newline", "tab\there\n", "cr\r\n"] {
            assert!(
                matches!(signer.sign(text), Err(NoteError::BadText { .. })),
                "{text:?}"
            );
        }
    }

    #[test]
    fn bad_names_are_refused() {
        for name in ["", "a+b", "a b", "a\u{a0}b", "a\u{1}b", "tab\t"] {
            assert!(
                matches!(
                    NoteSigner::new(name, SigningKey::from_bytes(&[1; 32])),
                    Err(NoteError::BadKeyName { .. })
                ),
                "{name:?}"
            );
        }
    }

    #[test]
    fn signature_by_another_key_is_not_accepted() {
        let ours = signer("log.example", 1);
        let same_name = signer("log.example", 2);
        let other_name = signer("other.example", 1);
        let expected = Err(NoteError::NoSignatureByKey {
            name: ours.name().to_owned(),
            key_id: ours.key_id(),
        });
        assert_eq!(
            open(&same_name.sign("x\n").unwrap(), &ours.verifier()).map(|_| ()),
            expected
        );
        assert_eq!(
            open(&other_name.sign("x\n").unwrap(), &ours.verifier()).map(|_| ()),
            expected
        );
    }

    #[test]
    fn known_key_with_bad_signature_is_an_error() {
        let signer = signer("log.example", 1);
        let good = Note::parse(&signer.sign("hello\n").unwrap()).unwrap();
        let bad_sig = Err(NoteError::BadSignature {
            name: signer.name().to_owned(),
            key_id: signer.key_id(),
        });

        let mut flipped = good.clone();
        flipped.signatures[0].signature[10] ^= 1;
        assert_eq!(flipped.verify(&signer.verifier()), bad_sig);

        let mut short = good.clone();
        short.signatures[0].signature.truncate(63);
        assert_eq!(short.verify(&signer.verifier()), bad_sig);

        // A valid signature followed by a bad one by the same key still fails.
        let mut doubled = good.clone();
        doubled.signatures.push(flipped.signatures[0].clone());
        assert_eq!(doubled.verify(&signer.verifier()), bad_sig);
    }

    #[test]
    fn unknown_signatures_are_ignored() {
        let ours = signer("log.example", 1);
        let msg = ours.sign("checkpoint\n").unwrap();
        let witness = signer("witness.example", 3);
        let witness_line = witness.sign("checkpoint\n").unwrap();
        let witness_line = witness_line.strip_prefix("checkpoint\n\n").unwrap();
        // Same name with another key id, and same key id under another name: both unknown.
        let same_name_line = format!(
            "{SIGNATURE_PREFIX}log.example {}\n",
            BASE64.encode([&[0, 0, 0, 0][..], &[9u8; 64]].concat())
        );
        let same_id_line = format!(
            "{SIGNATURE_PREFIX}other.example {}\n",
            BASE64.encode([&ours.key_id()[..], &[9u8; 64]].concat())
        );
        let msg = format!("{msg}{witness_line}{same_name_line}{same_id_line}");
        let note = open(&msg, &ours.verifier()).unwrap();
        assert_eq!(note.signatures.len(), 4);
        open(&msg, &witness.verifier()).unwrap();
    }

    #[test]
    fn malformed_notes_are_refused() {
        let signer = signer("log.example", 1);
        let msg = signer.sign("text\n").unwrap();
        let (text, sig_line) = msg.split_once("\n\n").unwrap();
        let sig_b64 = sig_line.trim_end().rsplit_once(' ').unwrap().1;

        let malformed_line = |m: &str| {
            matches!(
                Note::parse(m),
                Err(NoteError::MalformedSignatureLine { .. })
            )
        };
        for line in [
            format!("- log.example {sig_b64}\n"),
            format!("—log.example {sig_b64}\n"),
            format!("— log.example{sig_b64}\n"),
            format!("— log.example  {sig_b64}\n"),
            format!("—  {sig_b64}\n"),
            format!("— log+example {sig_b64}\n"),
            format!("— log.example {}\n", sig_b64.trim_end_matches('=')),
            format!("— log.example {sig_b64} \n"),
            format!("— log.example {}\n", BASE64.encode([1, 2, 3, 4])),
            "— log.example !!!!\n".to_owned(),
        ] {
            assert!(malformed_line(&format!("{text}\n\n{line}")), "{line:?}");
            // A malformed line is refused even next to a valid signature.
            assert!(malformed_line(&format!("{msg}{line}")), "{line:?}");
        }

        let malformed = |m: &str| matches!(Note::parse(m), Err(NoteError::MalformedNote { .. }));
        assert!(malformed(""));
        assert!(malformed("text\n"));
        assert!(malformed(msg.trim_end()));
        assert!(malformed(&msg.replace("text", "te\u{7}xt")));
        assert!(malformed(&msg.replace('\n', "\r\n")));
        assert_eq!(Note::parse("text\n\n"), Err(NoteError::MissingSignatures));
        assert_eq!(
            Note::parse(&format!("{msg}\n")),
            Err(NoteError::MissingSignatures)
        );
    }

    #[test]
    fn signature_count_is_limited() {
        let signer = signer("log.example", 1);
        let msg = signer.sign("text\n").unwrap();
        let filler = format!("{SIGNATURE_PREFIX}filler {}\n", BASE64.encode([7u8; 68]));
        let at_limit = format!("{msg}{}", filler.repeat(MAX_SIGNATURES - 1));
        open(&at_limit, &signer.verifier()).unwrap();
        let over = format!("{at_limit}{filler}");
        assert_eq!(
            Note::parse(&over),
            Err(NoteError::TooManySignatures {
                max: MAX_SIGNATURES
            })
        );
    }

    #[test]
    fn bad_key_texts_are_refused() {
        let signer = signer("log.example", 1);
        let vkey = signer.verifier().to_text();
        let skey = signer.to_text();
        let (name, rest) = vkey.split_once('+').unwrap();
        let (id, b64) = rest.split_once('+').unwrap();

        let bad_text =
            |r: Result<NoteVerifier, NoteError>| matches!(r, Err(NoteError::BadKeyText { .. }));
        assert!(bad_text(NoteVerifier::from_text("")));
        assert!(bad_text(NoteVerifier::from_text(&format!("{name}+{id}"))));
        assert!(bad_text(NoteVerifier::from_text(&format!(
            "{name}+{}+{b64}",
            &id[..7]
        ))));
        assert!(bad_text(NoteVerifier::from_text(&format!(
            "{name}+{id}0+{b64}"
        ))));
        assert!(bad_text(NoteVerifier::from_text(&format!(
            "{name}+zzzzzzzz+{b64}"
        ))));
        assert!(bad_text(NoteVerifier::from_text(&format!(
            "{name}+{id}+{}",
            &b64[1..]
        ))));
        assert!(bad_text(NoteVerifier::from_text(&format!("{name}+{id}+"))));
        assert!(bad_text(NoteVerifier::from_text(&format!(
            "{name}+{id}+{}",
            BASE64.encode([1u8; 32])
        ))));
        assert!(matches!(
            NoteVerifier::from_text(&format!("+{id}+{b64}")),
            Err(NoteError::BadKeyName { .. })
        ));
        assert!(matches!(
            NoteVerifier::from_text(&format!("other.example+{id}+{b64}")),
            Err(NoteError::KeyIdMismatch {
                kind: KeyKind::Verifier,
                ..
            })
        ));
        let mut alg2 = BASE64.decode(b64).unwrap();
        alg2[0] = 2;
        assert_eq!(
            NoteVerifier::from_text(&format!("{name}+{id}+{}", BASE64.encode(&alg2))),
            Err(NoteError::UnknownKeyAlgorithm {
                kind: KeyKind::Verifier,
                algorithm: 2
            })
        );

        // The identity point: a small-order key anyone could forge for.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let weak = [&[ALG_ED25519][..], &identity].concat();
        let weak_id = hex::encode(key_id("weak", &identity));
        assert_eq!(
            NoteVerifier::from_text(&format!("weak+{weak_id}+{}", BASE64.encode(weak))),
            Err(NoteError::WeakKey {
                name: "weak".to_owned()
            })
        );

        // Signer keys: a verifier key is not a signer key, and ids are checked after derivation.
        let bad_signer = |text: &str| NoteSigner::from_text(text).map(|s| s.to_text());
        assert!(matches!(
            bad_signer(&vkey),
            Err(NoteError::BadKeyText {
                kind: KeyKind::Signer,
                ..
            })
        ));
        assert!(matches!(
            bad_signer(&skey.replace("log.example", "other.example")),
            Err(NoteError::KeyIdMismatch {
                kind: KeyKind::Signer,
                ..
            })
        ));
        // Errors about signer keys never repeat the secret.
        let err = bad_signer(&skey.replace("log.example", "other.example")).unwrap_err();
        let seed_b64 = skey.rsplit_once('+').unwrap().1;
        assert!(!err.to_string().contains(seed_b64));
    }

    proptest! {
        #[test]
        fn parse_never_panics(msg in ".{0,300}") {
            let _ = Note::parse(&msg);
        }

        #[test]
        fn parse_never_panics_on_note_like_input(
            parts in prop::collection::vec(
                prop_oneof![
                    Just("\n".to_owned()),
                    Just("\n\n".to_owned()),
                    Just("\u{2014} ".to_owned()),
                    Just(" ".to_owned()),
                    Just("+".to_owned()),
                    Just("=".to_owned()),
                    "[A-Za-z0-9+/]{0,100}",
                    ".{0,5}",
                ],
                0..30,
            )
        ) {
            let msg = parts.concat();
            if let Ok(note) = Note::parse(&msg) {
                prop_assert!(note.text.ends_with('\n'));
                prop_assert!(!note.signatures.is_empty());
            }
        }

        #[test]
        fn signed_text_round_trips(text in "([^\u{0}-\u{1f}]{0,20}\n){1,5}", seed in any::<[u8; 32]>()) {
            let signer = NoteSigner::new("prop.example", SigningKey::from_bytes(&seed)).unwrap();
            let note = open(&signer.sign(&text).unwrap(), &signer.verifier()).unwrap();
            prop_assert_eq!(note.text, text);
        }
    }
}
