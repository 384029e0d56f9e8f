//! The RFC 9162 Merkle tree: appends, and inclusion and consistency proofs (generation and
//! verification) at 1M leaves, side by side with the `ct-merkle` crate on the same SHA-256
//! tree and the same leaves. BENCHMARKS.md records the numbers.
//!
//! Fairness: both trees get the same 32-byte leaves and hash them (leaf hash included in our
//! append and in our verification, as `ct-merkle` does inside `push` and `verify_inclusion`);
//! both answer proofs at their full size; roots are checked equal before anything is timed.
//! `ct-merkle` keeps its leaf values as well as its hashes: a cost of its design, counted.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use ct_merkle::mem_backed_tree::MemoryBackedTree;
use ct_merkle::RootHash;
use fairtrail_client::merkle::{
    leaf_hash, verify_consistency, verify_inclusion, verify_inclusions, Hash, Inclusion, MemoryTree,
};
use sha2_ct::Sha256 as CtSha256;

type CtTree = MemoryBackedTree<CtSha256, [u8; 32]>;

/// Leaves in the proof benchmarks.
fn proof_leaves() -> u64 {
    if test_mode() {
        1 << 12
    } else {
        1 << 20
    }
}
/// Indices and old sizes the proof benchmarks cycle through.
const PROBES: usize = 256;
/// Proofs checked together in the batch verification benchmarks.
const BATCH: usize = 16;

/// `cargo bench -- --test` (criterion's test mode, for CI) runs each benchmark once: shrink
/// the setup so it takes seconds.
fn test_mode() -> bool {
    std::env::args().any(|a| a == "--test")
}

fn leaves(n: u64) -> Vec<[u8; 32]> {
    (0..n)
        .map(|i| {
            let mut leaf = [0u8; 32];
            leaf[..8].copy_from_slice(&i.to_le_bytes());
            leaf[8..16].copy_from_slice(&(i.wrapping_mul(0x9e37_79b9_7f4a_7c15)).to_le_bytes());
            leaf
        })
        .collect()
}

fn ours(leaves: &[[u8; 32]]) -> MemoryTree {
    let mut tree = MemoryTree::new();
    for leaf in leaves {
        tree.push_leaf_hash(leaf_hash(leaf));
    }
    tree
}

fn theirs(leaves: &[[u8; 32]]) -> CtTree {
    let mut tree = CtTree::new();
    for leaf in leaves {
        tree.push(*leaf);
    }
    tree
}

fn ct_root(hash: &Hash, size: u64) -> RootHash<CtSha256> {
    RootHash::new((*hash).into(), size)
}

/// A spread of probe values in `lo..hi` (a fixed LCG: the same probes every run).
fn probes(lo: u64, hi: u64) -> Vec<u64> {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    (0..PROBES)
        .map(|_| {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            lo + (x >> 11) % (hi - lo)
        })
        .collect()
}

fn append(c: &mut Criterion) {
    let mut group = c.benchmark_group("merkle/append");
    group.sampling_mode(SamplingMode::Flat);
    let sizes: &[u64] = if test_mode() {
        &[1_000]
    } else {
        &[1_000, 100_000, 1_000_000]
    };
    for &n in sizes {
        let data = leaves(n);
        assert_eq!(
            ours(&data).root().as_slice(),
            theirs(&data).root().as_bytes().as_slice(),
            "the two trees disagree on the root of {n} leaves"
        );
        group.throughput(Throughput::Elements(n));
        if n >= 100_000 {
            group.sample_size(10);
            group.measurement_time(Duration::from_secs(if n >= 1_000_000 { 30 } else { 10 }));
        }
        group.bench_function(format!("fairtrail/{n}"), |b| {
            b.iter(|| {
                let tree = ours(black_box(&data));
                black_box(tree.root())
            })
        });
        group.bench_function(format!("ct-merkle/{n}"), |b| {
            b.iter(|| {
                let tree = theirs(black_box(&data));
                black_box(tree.root())
            })
        });
    }
    group.finish();
}

fn proofs(c: &mut Criterion) {
    let n = proof_leaves();
    let data = leaves(n);
    let mine = ours(&data);
    let ct = theirs(&data);
    let root = mine.root();
    assert_eq!(root.as_slice(), ct.root().as_bytes().as_slice());
    let ct_full = ct.root();

    let mut group = c.benchmark_group("merkle/inclusion@1M");
    group.throughput(Throughput::Elements(1));
    let indices = probes(0, n);
    let mut i = 0usize;
    group.bench_function("prove/fairtrail", |b| {
        b.iter(|| {
            i = (i + 1) % PROBES;
            black_box(mine.prove_inclusion(indices[i], n).expect("a proof"))
        })
    });
    group.bench_function("prove/ct-merkle", |b| {
        b.iter(|| {
            i = (i + 1) % PROBES;
            black_box(ct.prove_inclusion(indices[i] as usize))
        })
    });
    let our_proofs: Vec<Vec<Hash>> = indices
        .iter()
        .map(|&x| mine.prove_inclusion(x, n).expect("a proof"))
        .collect();
    let ct_proofs: Vec<_> = indices
        .iter()
        .map(|&x| ct.prove_inclusion(x as usize))
        .collect();
    for (k, &x) in indices.iter().enumerate() {
        let leaf = &data[x as usize];
        verify_inclusion(&leaf_hash(leaf), x, n, &our_proofs[k], &root).expect("ours verifies");
        ct_full
            .verify_inclusion(leaf, x, &ct_proofs[k])
            .expect("theirs verifies");
    }
    group.bench_function("verify/fairtrail", |b| {
        b.iter(|| {
            i = (i + 1) % PROBES;
            let x = indices[i];
            let leaf = leaf_hash(black_box(&data[x as usize]));
            verify_inclusion(&leaf, x, n, &our_proofs[i], &root).expect("verifies")
        })
    });
    group.bench_function("verify/ct-merkle", |b| {
        b.iter(|| {
            i = (i + 1) % PROBES;
            let x = indices[i];
            ct_full
                .verify_inclusion(black_box(&data[x as usize]), x, &ct_proofs[i])
                .expect("verifies")
        })
    });
    // Sixteen proofs at a time, as a bundle's entries or a batch of receipts are checked:
    // ours with `verify_inclusions` (several hash chains in lockstep), `ct-merkle` one by one
    // (it has no batch check). Leaf hashes inside the timing for both, as above.
    group.throughput(Throughput::Elements(BATCH as u64));
    let mut start = 0usize;
    group.bench_function(format!("verify-{BATCH}/fairtrail"), |b| {
        b.iter(|| {
            start = (start + BATCH) % PROBES;
            let batch: Vec<Inclusion<'_>> = (start..start + BATCH)
                .map(|k| {
                    let k = k % PROBES;
                    let x = indices[k];
                    Inclusion {
                        leaf_hash: leaf_hash(black_box(&data[x as usize])),
                        index: x,
                        tree_size: n,
                        proof: &our_proofs[k],
                        root: &root,
                    }
                })
                .collect();
            let verdicts = verify_inclusions(&batch);
            assert!(verdicts.iter().all(Result::is_ok));
            verdicts
        })
    });
    group.bench_function(format!("verify-{BATCH}/ct-merkle"), |b| {
        b.iter(|| {
            start = (start + BATCH) % PROBES;
            for k in start..start + BATCH {
                let k = k % PROBES;
                let x = indices[k];
                ct_full
                    .verify_inclusion(black_box(&data[x as usize]), x, &ct_proofs[k])
                    .expect("verifies");
            }
        })
    });
    group.finish();

    let mut group = c.benchmark_group("merkle/consistency@1M");
    group.throughput(Throughput::Elements(1));
    let olds = probes(1, n);
    let old_roots: Vec<Hash> = olds
        .iter()
        .map(|&m| mine.root_at(m).expect("a root"))
        .collect();
    let ct_old_roots: Vec<_> = olds
        .iter()
        .zip(&old_roots)
        .map(|(&m, r)| ct_root(r, m))
        .collect();
    group.bench_function("prove/fairtrail", |b| {
        b.iter(|| {
            i = (i + 1) % PROBES;
            black_box(mine.prove_consistency(olds[i], n).expect("a proof"))
        })
    });
    group.bench_function("prove/ct-merkle", |b| {
        b.iter(|| {
            i = (i + 1) % PROBES;
            black_box(ct.prove_consistency((n - olds[i]) as usize))
        })
    });
    let our_proofs: Vec<Vec<Hash>> = olds
        .iter()
        .map(|&m| mine.prove_consistency(m, n).expect("a proof"))
        .collect();
    let ct_proofs: Vec<_> = olds
        .iter()
        .map(|&m| ct.prove_consistency((n - m) as usize))
        .collect();
    for k in 0..PROBES {
        verify_consistency(olds[k], n, &our_proofs[k], &old_roots[k], &root).expect("ours");
        ct_full
            .verify_consistency(&ct_old_roots[k], &ct_proofs[k])
            .expect("theirs");
    }
    group.bench_function("verify/fairtrail", |b| {
        b.iter(|| {
            i = (i + 1) % PROBES;
            verify_consistency(olds[i], n, &our_proofs[i], &old_roots[i], black_box(&root))
                .expect("verifies")
        })
    });
    group.bench_function("verify/ct-merkle", |b| {
        b.iter(|| {
            i = (i + 1) % PROBES;
            black_box(&ct_full)
                .verify_consistency(&ct_old_roots[i], &ct_proofs[i])
                .expect("verifies")
        })
    });
    group.finish();
}

criterion_group!(benches, append, proofs);
criterion_main!(benches);
