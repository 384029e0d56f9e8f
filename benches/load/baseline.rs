//! The baselines measured in the same run as the node, so every node figure is a ratio that
//! survives a noisy machine: what one core batch-verifies, and what the disk and sled do with
//! the same bytes and nothing else.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use ed25519_dalek::{Signature, Signer, VerifyingKey};
use fairtrail_client::envelope::{pae, Envelope, PAYLOAD_TYPE};
use fairtrail_client::proto;

/// Signatures per batch, as the sequencer's verifier sees them under load.
pub const VERIFY_BATCH: usize = 256;

/// (a) Ed25519 signatures batch-verified per second on one core (this thread), over the DSSE
/// messages of `envelopes`, for about `time`. Also returns the strict one-by-one rate.
pub fn ed25519(envelopes: &[proto::Envelope], time: Duration) -> (f64, f64) {
    let mut messages = Vec::new();
    let mut signatures: Vec<Signature> = Vec::new();
    let mut keys: Vec<VerifyingKey> = Vec::new();
    for wire in envelopes.iter().take(VERIFY_BATCH) {
        let envelope = Envelope::try_from(wire.clone()).expect("a well-formed envelope");
        messages.push(pae(PAYLOAD_TYPE, envelope.payload()));
        let s = &wire.signatures[0];
        signatures.push(Signature::from_slice(&s.sig).expect("64 bytes"));
        keys.push(VerifyingKey::try_from(s.public_key.as_slice()).expect("a key"));
    }
    if messages.is_empty() {
        // No envelopes: sign some, so the baseline still runs.
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        for i in 0..VERIFY_BATCH {
            let m = format!("message {i}").into_bytes();
            signatures.push(key.sign(&m));
            keys.push(key.verifying_key());
            messages.push(m);
        }
    }
    let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
    let started = Instant::now();
    let mut verified = 0u64;
    while started.elapsed() < time {
        ed25519_dalek::verify_batch(&refs, &signatures, &keys).expect("the batch verifies");
        verified += refs.len() as u64;
    }
    let batch = verified as f64 / started.elapsed().as_secs_f64();

    let started = Instant::now();
    let mut verified = 0u64;
    while started.elapsed() < time / 2 {
        for ((m, s), k) in refs.iter().zip(&signatures).zip(&keys) {
            k.verify_strict(m, s).expect("verifies");
        }
        verified += refs.len() as u64;
    }
    let single = verified as f64 / started.elapsed().as_secs_f64();
    (batch, single)
}

/// (c) Entries per second appended to one plain file, `batch` at a time with one fdatasync
/// per batch: the same length-prefixed leaf bytes the tiles hold, for about `time`.
pub fn fdatasync(dir: &Path, leaves: &[Vec<u8>], batch: usize, time: Duration) -> f64 {
    let path = dir.join(format!("plain-{batch}"));
    let mut file = File::create(&path).expect("a plain file");
    let started = Instant::now();
    let mut written = 0u64;
    let mut at = 0usize;
    while started.elapsed() < time {
        for _ in 0..batch {
            let leaf = &leaves[at % leaves.len()];
            at += 1;
            file.write_all(&(leaf.len() as u16).to_be_bytes())
                .expect("write");
            file.write_all(leaf).expect("write");
        }
        file.sync_data().expect("fdatasync");
        written += batch as u64;
    }
    let rate = written as f64 / started.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&path);
    rate
}

/// (c) sled's raw batched insert, in entries per second: `batch` entries at a time, each as
/// many fresh keys as the index writes per harvest (`keys_per_entry`), for about `time`.
pub fn sled_insert(dir: &Path, batch: usize, keys_per_entry: usize, time: Duration) -> f64 {
    let db = sled::Config::new()
        .path(dir.join("sled-raw"))
        .cache_capacity(64 * 1024 * 1024)
        .open()
        .expect("sled opens");
    let tree = db.open_tree("raw").expect("a tree");
    let started = Instant::now();
    let mut entries = 0u64;
    let mut next = 0u64;
    while started.elapsed() < time {
        let mut b = sled::Batch::default();
        for _ in 0..batch * keys_per_entry {
            next += 1;
            let mut k = [0u8; 33];
            k[0] = b'h';
            k[1..9].copy_from_slice(&next.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes());
            b.insert(&k[..], &next.to_be_bytes());
        }
        tree.apply_batch(b).expect("apply");
        entries += batch as u64;
    }
    entries as f64 / started.elapsed().as_secs_f64()
}
