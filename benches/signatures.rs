//! Ed25519: one signature at a time (strict, as `Envelope::verify` and every verifier check)
//! against batch verification (as the sequencer checks), on the DSSE messages of real
//! statements; and the same at the envelope level, where decoding and PAE are counted too.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ed25519_dalek::{Signature, Signer, Verifier, VerifyingKey};
use fairtrail_client::envelope::{
    pae, verify_batch, verify_batch_with, Envelope, KnownKeys, PAYLOAD_TYPE,
};

#[path = "common/chain.rs"]
mod chain;

/// Signatures per batch in the batch benchmarks (the sequencer takes up to 4,096).
const BATCHES: [usize; 5] = [1, 16, 64, 256, 1024];

fn signed(n: usize) -> (Vec<Vec<u8>>, Vec<Signature>, Vec<VerifyingKey>) {
    let filler = chain::Filler::new(7, 64, 1_760_000_000_000);
    let mut messages = Vec::with_capacity(n);
    let mut signatures = Vec::with_capacity(n);
    let mut keys = Vec::with_capacity(n);
    for i in 0..n {
        let key = chain::key(3_000_000 + (i % 64) as u64);
        let payload = filler.harvest(i as u64).payload;
        let message = pae(PAYLOAD_TYPE, &payload);
        signatures.push(key.sign(&message));
        keys.push(key.verifying_key());
        messages.push(message);
    }
    (messages, signatures, keys)
}

fn raw(c: &mut Criterion) {
    let max = *BATCHES.iter().max().unwrap_or(&1);
    let (messages, signatures, keys) = signed(max);
    let mut group = c.benchmark_group("ed25519");
    group.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    group.bench_function("single/verify_strict", |b| {
        b.iter(|| {
            i = (i + 1) % max;
            keys[i]
                .verify_strict(black_box(&messages[i]), &signatures[i])
                .expect("verifies")
        })
    });
    group.bench_function("single/verify", |b| {
        b.iter(|| {
            i = (i + 1) % max;
            keys[i]
                .verify(black_box(&messages[i]), &signatures[i])
                .expect("verifies")
        })
    });
    for n in BATCHES {
        let refs: Vec<&[u8]> = messages[..n].iter().map(Vec::as_slice).collect();
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(format!("batch/{n}"), |b| {
            b.iter(|| {
                ed25519_dalek::verify_batch(black_box(&refs), &signatures[..n], &keys[..n])
                    .expect("verifies")
            })
        });
    }
    group.finish();
}

fn envelopes(c: &mut Criterion) {
    const N: usize = 256;
    let filler = chain::Filler::new(8, 64, 1_760_000_000_000);
    let wire: Vec<_> = (0..N as u64).map(|i| filler.harvest(i)).collect();
    let decoded: Vec<Envelope> = wire
        .iter()
        .map(|w| Envelope::try_from(w.clone()).expect("well formed"))
        .collect();
    let mut group = c.benchmark_group("envelope");
    group.throughput(Throughput::Elements(N as u64));
    group.bench_function("decode/256", |b| {
        b.iter_batched(
            || wire.clone(),
            |w| {
                w.into_iter()
                    .map(|w| Envelope::try_from(w).expect("well formed"))
                    .collect::<Vec<_>>()
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("verify-one-by-one/256", |b| {
        b.iter_batched(
            || decoded.clone(),
            |d| {
                for e in d {
                    black_box(e.verify().expect("verifies"));
                }
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("verify_batch/256", |b| {
        b.iter_batched(
            || decoded.clone(),
            |d| {
                let results = verify_batch(d);
                assert!(results.iter().all(Result::is_ok));
                results
            },
            BatchSize::SmallInput,
        )
    });
    // As the node's verifier does: the signers' keys were checked (and their points kept)
    // when their envelopes were decoded.
    let mut known = KnownKeys::default();
    for e in &decoded {
        for key in e.signers() {
            known.check(&key).expect("a valid key");
        }
    }
    group.bench_function("verify_batch_with_known_keys/256", |b| {
        b.iter_batched(
            || decoded.clone(),
            |d| {
                let results = verify_batch_with(d, &known);
                assert!(results.iter().all(Result::is_ok));
                results
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, raw, envelopes);
criterion_main!(benches);
