//! C2SP signed notes, checkpoints and note keys on hostile text.
//!
//! The input, as UTF-8 (invalid sequences replaced), goes through `Note::parse`, `note::open`
//! and `SignedCheckpoint::verify` with fixed verifiers (the two published example keys and
//! the fixture log's key), `Checkpoint::parse_body` (of the whole input and of a parsed
//! note's text), `NoteVerifier::from_text` and `NoteSigner::from_text` (of the whole input
//! and of each line). Nothing may panic, and these must hold: a parsed note's text ends in a
//! newline and its signatures are at most `MAX_SIGNATURES`; a checkpoint body that parses
//! is the canonical body of what it parsed to; a key text that parses prints back to a key
//! text that parses to the same key; signing then opening any signable text gives it back.
#![no_main]

use std::sync::OnceLock;

use fairtrail_client::checkpoint::{Checkpoint, SignedCheckpoint};
use fairtrail_client::note::{self, Note, NoteSigner, NoteVerifier, MAX_SIGNATURES};
use fairtrail_fuzz::{log_signer, log_verifier};
use libfuzzer_sys::fuzz_target;

/// The verifier keys of shared/testdata/signed-note/vectors.json, and the fixture log's.
fn verifiers() -> &'static [NoteVerifier] {
    static V: OnceLock<Vec<NoteVerifier>> = OnceLock::new();
    V.get_or_init(|| {
        vec![
            NoteVerifier::from_text(
                "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
            )
            .expect("the C2SP example key"),
            NoteVerifier::from_text(
                "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            )
            .expect("the Go example key"),
            log_verifier(),
        ]
    })
}

fn signer() -> &'static NoteSigner {
    static S: OnceLock<NoteSigner> = OnceLock::new();
    S.get_or_init(log_signer)
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let text: &str = &text;

    if let Ok(parsed) = Note::parse(text) {
        assert!(
            parsed.text.ends_with('\n'),
            "a note's text ends in a newline"
        );
        assert!(!parsed.signatures.is_empty() && parsed.signatures.len() <= MAX_SIGNATURES);
        assert!(text.starts_with(&parsed.text));
        if let Ok(cp) = Checkpoint::parse_body(&parsed.text) {
            check_checkpoint(&parsed.text, &cp);
        }
    }
    for verifier in verifiers() {
        if let Ok(opened) = note::open(text, verifier) {
            assert!(opened.signatures.iter().any(|s| s.name == verifier.name()));
        }
        if let Ok(signed) = SignedCheckpoint::verify(text, verifier) {
            assert_eq!(signed.checkpoint.origin, verifier.name());
            assert_eq!(signed.note, text);
        }
    }
    if let Ok(cp) = Checkpoint::parse_body(text) {
        check_checkpoint(text, &cp);
    }
    for candidate in std::iter::once(text).chain(text.lines().take(8)) {
        if let Ok(v) = NoteVerifier::from_text(candidate) {
            let again = NoteVerifier::from_text(&v.to_text()).expect("a printed key parses");
            assert_eq!(again, v);
        }
        if let Ok(s) = NoteSigner::from_text(candidate) {
            let again = NoteSigner::from_text(&s.to_text()).expect("a printed key parses");
            assert_eq!(again.verifier(), s.verifier());
        }
    }
    // Whatever can be signed opens again to the same text.
    if let Ok(signed) = signer().sign(text) {
        let opened = note::open(&signed, &signer().verifier()).expect("our own note opens");
        assert_eq!(opened.text, text);
    }
});

fn check_checkpoint(body: &str, cp: &Checkpoint) {
    // One encoding per checkpoint: the body that parsed is the one it prints.
    assert_eq!(cp.body(), body, "a checkpoint body is not canonical");
    assert_eq!(Checkpoint::parse_body(&cp.body()).as_ref(), Ok(cp));
    // A checkpoint of the fixture log's origin, signed, verifies back to itself.
    if cp.origin == signer().name() {
        let note = cp.sign(signer()).expect("a parsed checkpoint signs");
        let verified = SignedCheckpoint::verify(&note, &signer().verifier()).expect("verifies");
        assert_eq!(&verified.checkpoint, cp);
    }
}
