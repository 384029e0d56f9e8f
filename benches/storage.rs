//! The durable append path, piece by piece, in a temporary directory on the real disk: the
//! tiles' group commit (append, sign the checkpoint, commit, each with fdatasync), the index
//! update of a batch (the ledger rules' writes and the leaf hashes, to the state store,
//! sled and the hash indexes, with the state store's write-ahead fdatasync), and beside them
//! their floors: the same leaf bytes appended to one plain file with one fdatasync per batch,
//! and sled's raw batched insert of as many keys. Then proofs read from tiles at 1M leaves.

use std::collections::BTreeMap;
use std::fs::File;
use std::hint::black_box;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, SamplingMode, Throughput};
use fairtrail_client::checkpoint::Checkpoint;
use fairtrail_client::entry::encode_leaf;
use fairtrail_client::envelope::{Envelope, VerifiedEnvelope};
use fairtrail_client::merkle::{leaf_hash, verify_inclusion, Hash};
use fairtrail_client::note::NoteSigner;
use fairtrail_client::rules::{self, Overlay, Position};
use fairtrail_client::statement::Statement;
use fairtrail_node::index::Index;
use fairtrail_node::tiles::{TileStore, TileWriter};

#[path = "common/chain.rs"]
mod chain;

/// Entries per group commit.
const GROUPS: [usize; 4] = [1, 64, 256, 1024];
const NOW_MS: u64 = 1_760_000_000_000;
/// Leaves in the tiles-backed proof benchmark.
fn proof_leaves() -> u64 {
    if test_mode() {
        1 << 12
    } else {
        1 << 20
    }
}

/// `cargo bench -- --test` (criterion's test mode, for CI) runs each benchmark once: shrink
/// the setup so it takes seconds.
fn test_mode() -> bool {
    std::env::args().any(|a| a == "--test")
}

/// A log in a directory, committing as the sequencer does.
struct Log {
    writer: TileWriter,
    signer: NoteSigner,
}

impl Log {
    fn open(dir: &Path) -> Log {
        let signer = NoteSigner::new("bench.fairtrail/log", chain::key(99)).expect("a signer");
        let (_store, writer, _) =
            TileStore::open(dir, &signer.verifier(), 4096).expect("the log opens");
        Log { writer, signer }
    }

    /// One group commit: every tile durable, then the signed checkpoint, then published.
    fn commit(&mut self, leaves: &[Bytes]) {
        let root = self.writer.append(leaves).expect("append");
        let note = Checkpoint {
            origin: self.signer.name().to_owned(),
            size: self.writer.size(),
            root,
            extensions: Vec::new(),
        }
        .sign(&self.signer)
        .expect("a checkpoint");
        self.writer.commit(note, root).expect("commit");
    }
}

/// Realistic leaves: signed harvests as the node encodes them.
fn leaves(n: usize) -> Vec<Bytes> {
    let filler = chain::Filler::new(11, 64, NOW_MS);
    (0..n as u64)
        .map(|i| Bytes::from(encode_leaf(filler.harvest(i), NOW_MS).expect("a leaf")))
        .collect()
}

fn tiles(c: &mut Criterion) {
    let pool = leaves(4096);
    let mean = pool.iter().map(Bytes::len).sum::<usize>() / pool.len();
    eprintln!("leaves average {mean} bytes");
    let mut group = c.benchmark_group("storage/group-commit");
    group.sampling_mode(SamplingMode::Flat);
    group.measurement_time(Duration::from_secs(8));
    for n in GROUPS {
        group.throughput(Throughput::Elements(n as u64));
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut log = Log::open(dir.path());
        let mut at = 0usize;
        group.bench_function(format!("tiles/{n}"), |b| {
            b.iter(|| {
                let start = at % (pool.len() - n + 1);
                at += n;
                log.commit(&pool[start..start + n]);
            })
        });

        // The floor: the same bytes, one file, one fdatasync per batch.
        let path = dir.path().join("plain");
        let mut file = File::create(&path).expect("a plain file");
        let mut at = 0usize;
        group.bench_function(format!("plain-file-fdatasync/{n}"), |b| {
            b.iter(|| {
                let start = at % (pool.len() - n + 1);
                at += n;
                for leaf in &pool[start..start + n] {
                    file.write_all(&(leaf.len() as u16).to_be_bytes())
                        .expect("write");
                    file.write_all(leaf).expect("write");
                }
                file.sync_data().expect("fdatasync");
            })
        });
    }
    group.finish();
}

/// One committed batch as the index sees it: the rules' writes, and (leaf hash, index).
type IndexBatch = (BTreeMap<Vec<u8>, Vec<u8>>, Vec<(Hash, u64)>);

/// Harvests made on demand (signed, decoded, verified, hashed outside the timed part), so
/// that every batch the index applies holds statements it has never seen, as on a node.
struct Fresh {
    filler: chain::Filler,
    next: u64,
    position: u64,
}

impl Fresh {
    /// Declares the producers in `index`.
    fn new(index: &Index) -> Fresh {
        let filler = chain::Filler::new(12, 64, NOW_MS);
        let mut state = Overlay::new(index);
        let mut hashes = Vec::new();
        for (i, wire) in filler.declarations().into_iter().enumerate() {
            let (envelope, statement, hash) = decode(wire);
            apply(&mut state, &envelope, &statement, i as u64);
            hashes.push((hash, i as u64));
        }
        let position = hashes.len() as u64;
        index
            .apply(state.into_writes(), &hashes, position)
            .expect("declarations applied");
        Fresh {
            filler,
            next: 0,
            position,
        }
    }

    /// The next `n` harvests through the ledger rules, as the committer does: the writes
    /// and (leaf hash, index) pairs of one batch.
    fn batch(&mut self, index: &Index, n: usize) -> IndexBatch {
        let mut state = Overlay::new(index);
        let mut hashes = Vec::with_capacity(n);
        for _ in 0..n {
            let (envelope, statement, hash) = decode(self.filler.harvest(self.next));
            self.next += 1;
            apply(&mut state, &envelope, &statement, self.position);
            hashes.push((hash, self.position));
            self.position += 1;
        }
        (state.into_writes(), hashes)
    }
}

fn decode(wire: fairtrail_client::proto::Envelope) -> (VerifiedEnvelope, Statement, Hash) {
    let hash = leaf_hash(&encode_leaf(wire.clone(), NOW_MS).expect("a leaf"));
    let envelope = Envelope::try_from(wire).expect("well formed");
    let statement = Statement::decode(&envelope).expect("a statement");
    (envelope.verify().expect("verifies"), statement, hash)
}

fn apply(state: &mut Overlay<'_>, envelope: &VerifiedEnvelope, statement: &Statement, index: u64) {
    rules::apply(
        state,
        envelope,
        statement,
        Position {
            index,
            integrated_at_ms: NOW_MS,
        },
    )
    .expect("the rules accept it");
}

fn index(c: &mut Criterion) {
    let mut group = c.benchmark_group("storage/index");
    for n in [64usize, 1024] {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let index = Index::open(&dir.path().join("index")).expect("the index opens");
        let mut fresh = Fresh::new(&index);
        let (writes, hashes) = fresh.batch(&index, n);
        let keys = writes.len() + hashes.len();
        eprintln!("{n} harvests write {keys} index keys");
        index.apply(writes, &hashes, fresh.position).expect("apply");
        group.throughput(Throughput::Elements(n as u64));
        if n >= 1024 {
            group.sample_size(20);
        }
        group.bench_function(format!("apply/{n}"), |b| {
            b.iter_batched(
                || fresh.batch(&index, n),
                |(writes, hashes)| {
                    // The applied mark moves to the batch's end, as in the node: a batch
                    // ending at or before the mark would be skipped as already applied.
                    let applied = hashes.last().map_or(0, |(_, i)| i + 1);
                    index.apply(writes, &hashes, applied).expect("apply")
                },
                BatchSize::PerIteration,
            )
        });

        // The floor: sled's own batched insert of as many fresh keys, no rules, no encoding.
        let db = sled::Config::new()
            .path(dir.path().join("raw"))
            .cache_capacity(64 * 1024 * 1024)
            .open()
            .expect("sled opens");
        let tree = db.open_tree("raw").expect("a tree");
        let mut next = 0u64;
        group.bench_function(format!("sled-raw-batch/{n}"), |b| {
            b.iter(|| {
                let mut batch = sled::Batch::default();
                for _ in 0..keys {
                    next += 1;
                    let mut k = [0u8; 33];
                    k[0] = b'h';
                    k[1..9]
                        .copy_from_slice(&next.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes());
                    batch.insert(&k[..], &next.to_be_bytes());
                }
                tree.apply_batch(batch).expect("apply");
            })
        });
    }
    group.finish();
}

fn proofs(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut log = Log::open(dir.path());
    let mut leaf_hashes = Vec::with_capacity(proof_leaves() as usize);
    let mut pending = Vec::with_capacity(4096);
    for i in 0..proof_leaves() {
        let leaf = Bytes::from(format!("leaf {i:016} of the proof benchmark's log").into_bytes());
        leaf_hashes.push(leaf_hash(&leaf));
        pending.push(leaf);
        if pending.len() == 4096 {
            log.commit(&pending);
            pending.clear();
        }
    }
    log.commit(&pending);
    let store = log.writer.store().clone();
    let snapshot = store.snapshot();
    let n = snapshot.size;
    let root = snapshot.root;
    let mut x = 7u64;
    let indices: Vec<u64> = (0..256)
        .map(|_| {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            (x >> 11) % n
        })
        .collect();
    let mut group = c.benchmark_group("storage/tiles@1M");
    group.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    group.bench_function("prove-inclusion", |b| {
        b.iter(|| {
            i = (i + 1) % indices.len();
            let proof = store
                .prove_inclusion(&snapshot, indices[i], n)
                .expect("a proof");
            black_box(proof)
        })
    });
    for &k in &indices {
        let proof = store.prove_inclusion(&snapshot, k, n).expect("a proof");
        verify_inclusion(&leaf_hashes[k as usize], k, n, &proof, &root).expect("verifies");
    }
    group.bench_function("prove-consistency", |b| {
        b.iter(|| {
            i = (i + 1) % indices.len();
            black_box(
                store
                    .prove_consistency(&snapshot, indices[i] + 1, n)
                    .expect("a proof"),
            )
        })
    });
    group.bench_function("read-leaf", |b| {
        b.iter(|| {
            i = (i + 1) % indices.len();
            black_box(store.leaf(&snapshot, indices[i]).expect("a leaf"))
        })
    });
    group.finish();
}

criterion_group!(benches, tiles, index, proofs);
criterion_main!(benches);
