//! A purpose-built, append-only index from 32-byte uniform hashes (statement ids, leaf hashes)
//! to log indexes: a small LSM of sorted immutable run files plus an in-memory memtable.
//!
//! # Why not sled
//! The keys are uniformly random, so a B-tree touches a random page per insert and its cache
//! grows without bound. Here inserts go to a hash map and are written out sorted, in bulk;
//! lookups cost a Bloom filter probe per run and, on a hit, one read of at most 10 KiB.
//!
//! # Contract
//! - Derived state: the log is the truth. Runs are written without fsync (every run file
//!   carries a checksum and a file that fails it is dropped at open); only a merged run and
//!   its directory are synced, before its sources are deleted, so that a power cut cannot
//!   lose both and send the caller back to replaying the log from 0. After a crash [`HashIndex::applied`]
//!   says from where the caller replays the log; replaying is idempotent ([`HashIndex::insert`]
//!   skips items below `applied`).
//! - Entries `[0, applied)` of the log are indexed. The memtable covers `[end of the last run,
//!   applied)`; each run covers a contiguous range `[from, to)` and the runs chain from 0.
//! - A key stored more than once answers its lowest value.
//! - One [`HashIndex`] per `(dir, name)` at a time (nothing locks the files against a second
//!   process); several indexes with different names may share a directory.
//!
//! # Run file format
//! File name `{name}-{from:020}-{to:020}.run`, covering log entries `[from, to)`, `from < to`.
//!
//! | offset        | size     | content                                                  |
//! |---------------|----------|----------------------------------------------------------|
//! | 0             | 8        | magic `FTHXRUN1`                                         |
//! | 8             | 8        | `from`, u64 big-endian                                   |
//! | 16            | 8        | `to`, u64 big-endian                                     |
//! | 24            | 8        | `count`, u64 big-endian                                  |
//! | 32            | 40×count | records: 32-byte key, u64 big-endian value               |
//! | 32+40×count   | 32       | BLAKE3 of every preceding byte                           |
//!
//! Records are sorted by key, strictly ascending (no duplicate keys). A run may hold no
//! records (the log advanced by entries without keys).
//!
//! A run is written to `{name}-{from:020}-{to:020}.run.{seq}.tmp` in the same directory and
//! renamed into place; no fsync (the checksum catches torn writes).
//!
//! At open every run file is validated: a file that is short, has bad magic, a length that
//! does not match its count, a bad checksum, unsorted or duplicate keys, `from >= to`, or a
//! header range that differs from its name is logged and deleted. Then a chain is chosen: at
//! position `p` (starting at 0) take the valid run with `from == p` and the largest `to`, and
//! continue from its `to`; stop when no run starts at `p`. Runs outside the chain (merge
//! sources left by a crash, runs beyond a gap) and every `*.tmp` are deleted. `applied` is the
//! end of the chain (0 if empty).
//!
//! # In memory
//! - Memtable: a hash map keyed by the first 8 key bytes (mixed with a per-process random seed
//!   and a folded multiply, so that keys ground to collide cannot degrade the map).
//! - Per run: a Bloom filter of 10 bits per key with k = 7, bit positions taken from the key
//!   itself (`h1` = u64 LE of bytes 0..8, `h2` = u64 LE of bytes 8..16 | 1,
//!   `bit_i = (h1 + i·h2) mod m`), about 0.8 % false positives; and fences: the first 8 key bytes
//!   (u64 BE) of every 256th record. A lookup binary-searches the fences, reads the one block
//!   of at most 256 records (more when fences share the key's 8-byte prefix) with a positioned
//!   read, and binary-searches it. Bloom negatives never touch the disk.
//! - About 1.3 bytes per indexed key in runs, plus the memtable: 41 bytes per hash-table
//!   bucket, kept between flushes (at the default threshold 2^18 buckets, about 10.7 MB).
//!
//! # Merging
//! Size-tiered: after each flush, while some run holds at most twice the entries of its newer
//! neighbour, the newest such pair is merged (streaming, on one background thread per index,
//! so `insert` never waits for it) into a run covering both ranges; on equal keys the lower
//! value wins. (Not only the two newest runs: flushes land while a merge runs, so a merged run
//! can sit in the middle of the list.) The merged file is synced, renamed into place, its
//! directory synced, swapped into the run list, then its sources are deleted (a crash in between leaves sources that the chain
//! rule discards). Each run then holds more than twice the entries of the next newer one, so
//! there are O(log n) runs. Lookups in progress keep reading the files of replaced runs
//! through their open handles. Dropping the last handle abandons a merge in progress and
//! joins the thread.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;

use crate::runfiles::{
    choose_chain, list_run_files, lock, pair_to_merge, read, remove_if_exists, run_file_name,
    with_pair_merged, write, FileKind, MergeControl, Span,
};

#[cfg(test)]
mod tests;

/// Memtable entries at which [`HashIndex::open`] flushes a run: 128 Ki entries, 5 MiB on disk.
pub const DEFAULT_FLUSH_EVERY: usize = 1 << 17;

const MAGIC: &[u8; 8] = b"FTHXRUN1";
const HEADER_LEN: u64 = 32;
const RECORD_LEN: u64 = 40;
const CHECKSUM_LEN: u64 = 32;
/// Records per fence: one block is 10 KiB, one positioned read.
const FENCE_EVERY: u64 = 256;
const BLOOM_BITS_PER_KEY: u64 = 10;
const BLOOM_HASHES: u64 = 7;
/// Records per buffered read or write while validating, flushing and merging (~64 KiB).
const IO_CHUNK_RECORDS: u64 = 1638;
/// How often (in records) a merge checks whether it should be abandoned.
const CANCEL_CHECK_EVERY: u64 = 4096;

#[derive(Debug, thiserror::Error)]
pub enum HashIndexError {
    /// A file or directory operation failed. The index is derived from the log: if a run file
    /// is unreadable, deleting the index files makes the node rebuild them by replay.
    #[error("hash index {path}: {what}: {source}")]
    Io {
        path: String,
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("hash index {name}: cannot start its merge thread: {source}")]
    Spawn {
        name: String,
        #[source]
        source: io::Error,
    },
}

/// Sizes for metrics and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HashIndexStats {
    /// Run files in the chain.
    pub runs: usize,
    /// Entries held in run files.
    pub run_entries: u64,
    /// Entries in the memtable (including one being written out).
    pub memtable_entries: u64,
    /// Estimated bytes of memory held by Bloom filters, fences and the memtable.
    pub memory_bytes: u64,
}

/// The index. Cheap to clone; all clones share one state and one merge thread, which stops
/// when the last clone is dropped.
#[derive(Clone)]
pub struct HashIndex {
    inner: Arc<Inner>,
}

/// Owns the merge thread: dropping the last [`HashIndex`] stops and joins it, so no file of
/// this index changes after the drop (a reopen right after is safe).
struct Inner {
    shared: Arc<Shared>,
    merger: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shared.close();
        if let Some(handle) = lock(&self.merger).take() {
            // A panic in the merge thread has nothing left to report to.
            let _ = handle.join();
        }
    }
}

impl HashIndex {
    /// Opens (creating `dir` if missing) the index named `name` in `dir`, with the default
    /// flush threshold.
    pub fn open(dir: &Path, name: &str) -> Result<HashIndex, HashIndexError> {
        HashIndex::open_with(dir, name, DEFAULT_FLUSH_EVERY)
    }

    /// Opens the index, flushing the memtable to a run at `flush_every` entries.
    pub fn open_with(
        dir: &Path,
        name: &str,
        flush_every: usize,
    ) -> Result<HashIndex, HashIndexError> {
        let shared = Arc::new(Shared::open(dir, name, flush_every)?);
        let worker = Arc::clone(&shared);
        let handle = std::thread::Builder::new()
            .name(format!("hashindex-{name}"))
            .spawn(move || worker.merge_loop())
            .map_err(|source| HashIndexError::Spawn {
                name: name.to_owned(),
                source,
            })?;
        // Runs loaded at open may already call for a merge (one interrupted by a crash).
        shared.request_merge();
        Ok(HashIndex {
            inner: Arc::new(Inner {
                shared,
                merger: Mutex::new(Some(handle)),
            }),
        })
    }

    /// Entries `[0, applied)` of the log are indexed (memtable included).
    pub fn applied(&self) -> u64 {
        read(&self.inner.shared.state).applied
    }

    /// The value stored for `key`, if any; the lowest if the key was stored more than once.
    pub fn get(&self, key: &[u8; 32]) -> Result<Option<u64>, HashIndexError> {
        self.inner.shared.get(key)
    }

    /// Adds `items` (key, log index) and moves `applied` forward to `applied`. Items below the
    /// current [`HashIndex::applied`] are skipped (already indexed), so replay is idempotent.
    /// Items should lie below `applied`: a run is only written once `applied` moved past the
    /// last run, so items at or above it wait in the memtable until then.
    pub fn insert(&self, items: &[([u8; 32], u64)], applied: u64) -> Result<(), HashIndexError> {
        self.inner.shared.insert(items, applied)
    }

    /// Writes the memtable out as a run now (at shutdown, at the end of a replay). Does nothing
    /// when neither entries nor `applied` moved since the last run.
    pub fn flush(&self) -> Result<(), HashIndexError> {
        let shared = &self.inner.shared;
        let _writer = lock(&shared.writer);
        shared.flush_locked()
    }

    /// Forgets everything: deletes the run files, empties the memtable, `applied` = 0.
    pub fn clear(&self) -> Result<(), HashIndexError> {
        self.inner.shared.clear()
    }

    pub fn stats(&self) -> HashIndexStats {
        self.inner.shared.stats()
    }

    /// Blocks until no merge is pending or running (for tests and benchmarks).
    pub fn wait_for_merges(&self) {
        self.inner.shared.wait_for_merges();
    }
}

/// Everything the handles and the merge thread share.
struct Shared {
    dir: PathBuf,
    name: String,
    flush_every: usize,
    hasher: KeyHashBuilder,
    /// Serializes the writers (insert, flush, clear), so that runs are written in log order
    /// and at most one memtable is being written at a time.
    writer: Mutex<()>,
    state: RwLock<State>,
    /// The merge thread's signals; closing when the last handle is dropped (a merge in
    /// progress is then abandoned).
    merges: MergeControl,
    /// Bumped by `clear` (under the state lock): a merge started before is abandoned.
    generation: AtomicU64,
    /// Makes temporary file names unique, so an abandoned merge never shares one with a flush.
    tmp_seq: AtomicU64,
}

/// What readers look at, swapped under one lock so a lookup never misses an entry that is
/// moving from the memtable to a run.
struct State {
    active: Memtable,
    /// The memtable being written out as a run; still searched until the run is installed.
    frozen: Option<Arc<Memtable>>,
    /// Runs in log order, oldest first. Readers clone the `Arc` and search without the lock.
    runs: Arc<Vec<Arc<Run>>>,
    /// End of the last run: the memtable covers `[run_end, applied)`.
    run_end: u64,
    applied: u64,
}

impl Shared {
    fn open(dir: &Path, name: &str, flush_every: usize) -> Result<Shared, HashIndexError> {
        fs::create_dir_all(dir).map_err(io_error(dir, "creating the directory"))?;
        let runs = load_chain(dir, name)?;
        let end = runs.last().map_or(0, |run| run.to);
        let hasher = KeyHashBuilder::new();
        tracing::debug!(
            dir = %dir.display(), name, runs = runs.len(), applied = end,
            "hash index opened"
        );
        Ok(Shared {
            dir: dir.to_owned(),
            name: name.to_owned(),
            flush_every: flush_every.max(1),
            writer: Mutex::new(()),
            state: RwLock::new(State {
                active: Memtable::with_hasher(hasher.clone()),
                frozen: None,
                runs: Arc::new(runs),
                run_end: end,
                applied: end,
            }),
            hasher,
            merges: MergeControl::default(),
            generation: AtomicU64::new(0),
            tmp_seq: AtomicU64::new(0),
        })
    }

    fn run_path(&self, from: u64, to: u64) -> PathBuf {
        self.dir.join(run_file_name(&self.name, from, to))
    }

    fn tmp_path(&self, from: u64, to: u64) -> PathBuf {
        let seq = self.tmp_seq.fetch_add(1, Ordering::Relaxed);
        let run = run_file_name(&self.name, from, to);
        self.dir.join(format!("{run}.{seq}.tmp"))
    }

    fn get(&self, key: &[u8; 32]) -> Result<Option<u64>, HashIndexError> {
        let (mut best, frozen, runs) = {
            let state = read(&self.state);
            (
                state.active.get(&MemKey(*key)).copied(),
                state.frozen.clone(),
                Arc::clone(&state.runs),
            )
        };
        if let Some(frozen) = frozen {
            best = lowest(best, frozen.get(&MemKey(*key)).copied());
        }
        for run in runs.iter() {
            best = lowest(best, run.get(key)?);
        }
        Ok(best)
    }

    fn insert(&self, items: &[([u8; 32], u64)], applied: u64) -> Result<(), HashIndexError> {
        let _writer = lock(&self.writer);
        let full = {
            let mut state = write(&self.state);
            let floor = state.applied;
            for &(key, value) in items.iter().filter(|(_, value)| *value >= floor) {
                state
                    .active
                    .entry(MemKey(key))
                    .and_modify(|old| *old = (*old).min(value))
                    .or_insert(value);
            }
            state.applied = state.applied.max(applied);
            state.active.len() >= self.flush_every
        };
        if full {
            self.flush_locked()?;
        }
        Ok(())
    }

    /// Writes the memtable out as the run `[run_end, applied)`. The caller holds `writer`.
    fn flush_locked(&self) -> Result<(), HashIndexError> {
        let Some((frozen, from, to)) = self.freeze() else {
            return Ok(());
        };
        let written = self.write_memtable(&frozen, from, to);
        let mut state = write(&self.state);
        state.frozen = None;
        match written {
            Ok(run) => {
                let mut runs = Vec::with_capacity(state.runs.len() + 1);
                runs.extend(state.runs.iter().cloned());
                runs.push(run);
                state.runs = Arc::new(runs);
                state.run_end = to;
                // Reuse the allocation: the next memtable grows to the same size.
                if let Ok(mut map) = Arc::try_unwrap(frozen) {
                    if state.active.is_empty() {
                        map.clear();
                        state.active = map;
                    }
                }
            }
            Err(e) => {
                // Keep the entries in memory; the next insert or flush tries again.
                let map = Arc::try_unwrap(frozen).unwrap_or_else(|shared| (*shared).clone());
                for (key, value) in map {
                    state
                        .active
                        .entry(key)
                        .and_modify(|old| *old = (*old).min(value))
                        .or_insert(value);
                }
                return Err(e);
            }
        }
        drop(state);
        self.request_merge();
        Ok(())
    }

    /// Moves the memtable aside for writing, if there is a range to write: a run must cover a
    /// non-empty range `[run_end, applied)`, so entries with nothing applied past the last run
    /// stay in memory.
    fn freeze(&self) -> Option<(Arc<Memtable>, u64, u64)> {
        let mut state = write(&self.state);
        if state.applied <= state.run_end {
            return None;
        }
        let map = std::mem::replace(
            &mut state.active,
            Memtable::with_hasher(self.hasher.clone()),
        );
        let frozen = Arc::new(map);
        state.frozen = Some(Arc::clone(&frozen));
        Some((frozen, state.run_end, state.applied))
    }

    fn write_memtable(
        &self,
        memtable: &Memtable,
        from: u64,
        to: u64,
    ) -> Result<Arc<Run>, HashIndexError> {
        let mut records: Vec<([u8; 32], u64)> = memtable
            .iter()
            .map(|(key, value)| (key.0, *value))
            .collect();
        records.sort_unstable_by_key(|record| record.0);
        let path = self.run_path(from, to);
        let tmp = self.tmp_path(from, to);
        let written = (|| -> io::Result<Built> {
            let mut writer = RunWriter::create(&tmp, from, to, records.len() as u64)?;
            for (key, value) in &records {
                writer.push(key, *value)?;
            }
            let built = writer.finish()?;
            fs::rename(&tmp, &path)?;
            Ok(built)
        })();
        match written {
            Ok(built) => Ok(Arc::new(Run::new(path, from, to, built))),
            Err(source) => {
                remove_quietly(&tmp);
                Err(io_error(&path, "writing a run file")(source))
            }
        }
    }

    fn clear(&self) -> Result<(), HashIndexError> {
        let _writer = lock(&self.writer);
        {
            let mut state = write(&self.state);
            self.generation.fetch_add(1, Ordering::AcqRel);
            state.active = Memtable::with_hasher(self.hasher.clone());
            state.frozen = None;
            state.runs = Arc::new(Vec::new());
            state.run_end = 0;
            state.applied = 0;
        }
        // A merge still running notices the new generation and never renames its output.
        for (path, _) in own_files(&self.dir, &self.name)? {
            remove_if_exists(&path).map_err(io_error(&path, "deleting a run file"))?;
        }
        // The deletions durable before the caller replays: old runs coming back after a
        // power cut would otherwise chain under the new ones.
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_error(&self.dir, "syncing the directory"))?;
        Ok(())
    }

    fn stats(&self) -> HashIndexStats {
        let state = read(&self.state);
        let frozen = state.frozen.as_deref();
        let memtable_bytes = memtable_memory(&state.active) + frozen.map_or(0, memtable_memory);
        HashIndexStats {
            runs: state.runs.len(),
            run_entries: state.runs.iter().map(|run| run.count).sum(),
            memtable_entries: (state.active.len() + frozen.map_or(0, HashMap::len)) as u64,
            memory_bytes: state.runs.iter().map(|run| run.memory_bytes()).sum::<u64>()
                + memtable_bytes,
        }
    }

    // ----- merging -----

    fn request_merge(&self) {
        self.merges.request();
    }

    fn close(&self) {
        self.merges.close();
    }

    fn wait_for_merges(&self) {
        self.merges.wait_idle();
    }

    /// The merge thread: sleeps until a flush (or open) asks, merges while the size rule
    /// says so, and exits when the last handle is dropped.
    fn merge_loop(&self) {
        self.merges.run("hash index", || self.merge_while_needed());
    }

    fn merge_while_needed(&self) {
        while !self.merges.closing() {
            let Some((older, newer, generation)) = self.merge_candidates() else {
                return;
            };
            match self.merge_pair(&older, &newer, generation) {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => {
                    tracing::warn!(
                        error = %e,
                        "hash index merge failed; its sources stay in place"
                    );
                    return;
                }
            }
        }
    }

    /// The newest adjacent pair of runs whose older run holds at most twice the entries of the
    /// newer. Not only the two newest: flushes land while a merge runs, so its output can sit
    /// in the middle of the list, and its older neighbour must be checked against it too.
    /// Merging until no pair qualifies leaves every run more than twice the size of the next
    /// newer one, hence at most log2(entries / smallest run) + 1 runs.
    fn merge_candidates(&self) -> Option<(Arc<Run>, Arc<Run>, u64)> {
        let state = read(&self.state);
        let generation = self.generation.load(Ordering::Acquire);
        let (older, newer) = pair_to_merge(&state.runs)?;
        Some((older, newer, generation))
    }

    /// Merges two adjacent runs into one; `Ok(false)` if abandoned (closing, or cleared).
    fn merge_pair(
        &self,
        older: &Arc<Run>,
        newer: &Arc<Run>,
        generation: u64,
    ) -> Result<bool, HashIndexError> {
        let (from, to) = (older.from, newer.to);
        let tmp = self.tmp_path(from, to);
        let built = match self.write_merged(older, newer, &tmp, generation) {
            Ok(Some(built)) => built,
            Ok(None) => {
                remove_quietly(&tmp);
                return Ok(false);
            }
            Err(source) => {
                remove_quietly(&tmp);
                return Err(io_error(&tmp, "merging two runs")(source));
            }
        };
        // The sources are deleted below: make the merged run durable first, data then its
        // name, so a power cut cannot leave neither (the log would be replayed from 0).
        if let Err(source) = built.file.sync_data() {
            remove_quietly(&tmp);
            return Err(io_error(&tmp, "syncing a merged run")(source));
        }
        match self.install_merged(older, newer, &tmp, built, generation) {
            Ok(true) => {
                if let Err(e) = File::open(&self.dir).and_then(|d| d.sync_all()) {
                    // Keep the sources: the next open prefers the merged run if it is whole.
                    tracing::warn!(error = %e, "hash index: syncing the directory failed");
                    return Ok(true);
                }
                // Under the state lock and only in the same generation: after a `clear`, a
                // replay may have written a run of the same name as a source.
                let _state = read(&self.state);
                if self.generation.load(Ordering::Acquire) != generation {
                    return Ok(false);
                }
                for source in [older, newer] {
                    if let Err(e) = remove_if_exists(&source.path) {
                        tracing::warn!(
                            path = %source.path.display(), error = %e,
                            "hash index: deleting a merged run failed (retried at next open)"
                        );
                    }
                }
                tracing::debug!(
                    from,
                    to,
                    entries = older.count.saturating_add(newer.count),
                    "hash index merged two runs"
                );
                Ok(true)
            }
            other => {
                remove_quietly(&tmp);
                other
            }
        }
    }

    fn merge_cancelled(&self, generation: u64) -> bool {
        self.merges.closing() || self.generation.load(Ordering::Acquire) != generation
    }

    /// Streams the two-way merge into `tmp`; `None` if abandoned midway.
    fn write_merged(
        &self,
        older: &Run,
        newer: &Run,
        tmp: &Path,
        generation: u64,
    ) -> io::Result<Option<Built>> {
        let declared = older.count.saturating_add(newer.count);
        let mut out = RunWriter::create(tmp, older.from, newer.to, declared)?;
        let mut a = RecordReader::new(older);
        let mut b = RecordReader::new(newer);
        let (mut x, mut y) = (a.next()?, b.next()?);
        loop {
            let (key, value) = match (x, y) {
                (None, None) => break,
                (Some(left), None) => {
                    x = a.next()?;
                    left
                }
                (None, Some(right)) => {
                    y = b.next()?;
                    right
                }
                (Some(left), Some(right)) => match left.0.cmp(&right.0) {
                    std::cmp::Ordering::Less => {
                        x = a.next()?;
                        left
                    }
                    std::cmp::Ordering::Greater => {
                        y = b.next()?;
                        right
                    }
                    std::cmp::Ordering::Equal => {
                        x = a.next()?;
                        y = b.next()?;
                        (left.0, left.1.min(right.1))
                    }
                },
            };
            out.push(&key, value)?;
            if out.count % CANCEL_CHECK_EVERY == 0 && self.merge_cancelled(generation) {
                return Ok(None);
            }
        }
        out.finish().map(Some)
    }

    /// Renames the merged file into place and swaps it for its sources, unless the run list
    /// changed under the merge (cleared). Under the state lock, so `clear` cannot interleave.
    fn install_merged(
        &self,
        older: &Arc<Run>,
        newer: &Arc<Run>,
        tmp: &Path,
        built: Built,
        generation: u64,
    ) -> Result<bool, HashIndexError> {
        let (from, to) = (older.from, newer.to);
        let path = self.run_path(from, to);
        let mut state = write(&self.state);
        if self.generation.load(Ordering::Acquire) != generation {
            return Ok(false);
        }
        let merged = Arc::new(Run::new(path.clone(), from, to, built));
        let Some(runs) = with_pair_merged(&state.runs, older, newer, merged) else {
            return Ok(false);
        };
        fs::rename(tmp, &path).map_err(io_error(&path, "renaming a merged run into place"))?;
        state.runs = Arc::new(runs);
        Ok(true)
    }
}

// ----- memtable -----

/// A memtable key. Its own `Hash` feeds only the first 8 bytes to the hasher: the keys are
/// uniform hashes already.
#[derive(Clone, Copy, PartialEq, Eq)]
struct MemKey([u8; 32]);

impl Hash for MemKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(u64::from_le_bytes(word(&self.0, 0)));
    }
}

type Memtable = HashMap<MemKey, u64, KeyHashBuilder>;

/// Mixes the 8-byte key prefix with a per-process secret (one multiply): the keys are
/// hashes of client-supplied data, and without the secret a client could grind statements
/// whose ids share hash-table buckets.
#[derive(Clone)]
struct KeyHashBuilder {
    seed: u64,
}

impl KeyHashBuilder {
    fn new() -> KeyHashBuilder {
        KeyHashBuilder {
            seed: RandomState::new().hash_one(0x5eed_u64),
        }
    }
}

impl BuildHasher for KeyHashBuilder {
    type Hasher = KeyHasher;
    fn build_hasher(&self) -> KeyHasher {
        KeyHasher {
            seed: self.seed,
            word: 0,
        }
    }
}

struct KeyHasher {
    seed: u64,
    word: u64,
}

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        // Only reached if something other than `MemKey` is hashed; stay correct anyway.
        for &byte in bytes {
            self.word = self.word.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u64(&mut self, word: u64) {
        self.word ^= word;
    }

    fn finish(&self) -> u64 {
        let product = u128::from(self.word ^ self.seed) * 0x9e37_79b9_7f4a_7c15_u128;
        (product as u64) ^ ((product >> 64) as u64)
    }
}

fn memtable_memory(map: &Memtable) -> u64 {
    // hashbrown: one control byte per bucket, at most 7/8 of the buckets full.
    let slot = std::mem::size_of::<(MemKey, u64)>() as u64 + 1;
    (map.capacity() as u64) * 8 / 7 * slot
}

// ----- runs -----

/// An immutable sorted run: its open file, Bloom filter and fences.
struct Run {
    path: PathBuf,
    file: File,
    from: u64,
    to: u64,
    count: u64,
    bloom: Bloom,
    /// First 8 key bytes (u64 BE) of records 0, 256, 512, ...
    fences: Vec<u64>,
}

/// What writing or validating a run file yields besides its name.
struct Built {
    file: File,
    count: u64,
    bloom: Bloom,
    fences: Vec<u64>,
}

impl Run {
    fn new(path: PathBuf, from: u64, to: u64, built: Built) -> Run {
        Run {
            path,
            file: built.file,
            from,
            to,
            count: built.count,
            bloom: built.bloom,
            fences: built.fences,
        }
    }

    fn memory_bytes(&self) -> u64 {
        (self.bloom.words.len() * 8
            + self.fences.capacity() * 8
            + std::mem::size_of::<Run>()
            + self.path.as_os_str().len()) as u64
    }

    fn get(&self, key: &[u8; 32]) -> Result<Option<u64>, HashIndexError> {
        if self.count == 0 || !self.bloom.may_contain(key) {
            return Ok(None);
        }
        let Some((lo, hi)) = self.records_to_search(prefix(key)) else {
            return Ok(None);
        };
        let len = usize::try_from(hi.saturating_sub(lo).saturating_mul(RECORD_LEN))
            .map_err(|_| io_error(&self.path, "reading a block")(invalid("block too large")))?;
        let mut block = vec![0u8; len];
        self.file
            .read_exact_at(&mut block, HEADER_LEN + lo * RECORD_LEN)
            .map_err(io_error(&self.path, "reading a block of a run file"))?;
        Ok(search_block(&block, key))
    }

    /// Records `[lo, hi)` that may hold a key with this 8-byte prefix. Block `b` may hold it
    /// iff `fences[b] <= prefix <= fences[b + 1]`: normally one block, two when a fence shares
    /// the prefix (equal prefixes can straddle a block boundary).
    fn records_to_search(&self, prefix: u64) -> Option<(u64, u64)> {
        let first_not_below = self.fences.partition_point(|&fence| fence < prefix);
        let first_above = self.fences.partition_point(|&fence| fence <= prefix);
        if first_above == 0 {
            return None;
        }
        let lo = first_not_below.saturating_sub(1) as u64 * FENCE_EVERY;
        let hi = (first_above as u64 * FENCE_EVERY).min(self.count);
        (lo < hi).then_some((lo, hi))
    }
}

/// Binary search over a block of whole records.
fn search_block(block: &[u8], key: &[u8; 32]) -> Option<u64> {
    let record = RECORD_LEN as usize;
    let (mut lo, mut hi) = (0, block.len() / record);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let (found, value) = parse_record(block.get(mid * record..(mid + 1) * record)?)?;
        match found.cmp(key) {
            std::cmp::Ordering::Less => lo = mid + 1,
            std::cmp::Ordering::Greater => hi = mid,
            std::cmp::Ordering::Equal => return Some(value),
        }
    }
    None
}

fn parse_record(record: &[u8]) -> Option<([u8; 32], u64)> {
    let (key, rest) = record.split_first_chunk::<32>()?;
    let value = rest.first_chunk::<8>()?;
    Some((*key, u64::from_be_bytes(*value)))
}

/// 8 bytes of a key from `at`, panic-free.
fn word(key: &[u8; 32], at: usize) -> [u8; 8] {
    std::array::from_fn(|i| key.get(at + i).copied().unwrap_or(0))
}

/// The fence value of a key: its first 8 bytes, big-endian (so it orders like the key).
fn prefix(key: &[u8; 32]) -> u64 {
    u64::from_be_bytes(word(key, 0))
}

// ----- Bloom filter -----

/// A plain Bloom filter with double hashing on the key's own bytes (see the module doc).
struct Bloom {
    words: Box<[u64]>,
}

impl Bloom {
    fn new(keys: u64) -> Bloom {
        let words = keys.saturating_mul(BLOOM_BITS_PER_KEY).div_ceil(64).max(1);
        let words = usize::try_from(words).unwrap_or(usize::MAX / 8);
        Bloom {
            words: vec![0u64; words].into_boxed_slice(),
        }
    }

    fn positions(&self, key: &[u8; 32]) -> impl Iterator<Item = u64> {
        let bits = self.words.len() as u64 * 64;
        let h1 = u64::from_le_bytes(word(key, 0));
        let h2 = u64::from_le_bytes(word(key, 8)) | 1;
        (0..BLOOM_HASHES).map(move |i| h1.wrapping_add(i.wrapping_mul(h2)) % bits)
    }

    fn insert(&mut self, key: &[u8; 32]) {
        for bit in self.positions(key) {
            if let Some(word) = self.words.get_mut((bit / 64) as usize) {
                *word |= 1 << (bit % 64);
            }
        }
    }

    fn may_contain(&self, key: &[u8; 32]) -> bool {
        self.positions(key).all(|bit| {
            // A missing word (impossible) answers "maybe": never a false negative.
            self.words
                .get((bit / 64) as usize)
                .is_none_or(|word| word & (1 << (bit % 64)) != 0)
        })
    }
}

// ----- writing a run -----

/// Streams sorted records into a new run file, hashing as it goes and building the Bloom
/// filter and fences, so a freshly written run never needs to be read back.
struct RunWriter {
    file: File,
    buf: Vec<u8>,
    hasher: blake3::Hasher,
    /// Bytes already written to `file`.
    written: u64,
    /// The count in the header: exact for a flush, an upper bound for a merge.
    declared: u64,
    count: u64,
    last: Option<[u8; 32]>,
    bloom: Bloom,
    fences: Vec<u64>,
}

impl RunWriter {
    fn create(tmp: &Path, from: u64, to: u64, declared: u64) -> io::Result<RunWriter> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(tmp)?;
        let mut buf = Vec::with_capacity((IO_CHUNK_RECORDS * RECORD_LEN) as usize);
        buf.extend_from_slice(MAGIC);
        buf.extend_from_slice(&from.to_be_bytes());
        buf.extend_from_slice(&to.to_be_bytes());
        buf.extend_from_slice(&declared.to_be_bytes());
        Ok(RunWriter {
            file,
            buf,
            hasher: blake3::Hasher::new(),
            written: 0,
            declared,
            count: 0,
            last: None,
            bloom: Bloom::new(declared),
            fences: Vec::with_capacity(declared.div_ceil(FENCE_EVERY) as usize),
        })
    }

    fn push(&mut self, key: &[u8; 32], value: u64) -> io::Result<()> {
        if self.last.is_some_and(|last| last >= *key) {
            return Err(invalid("a source run has keys out of order"));
        }
        if self.count >= self.declared {
            return Err(invalid("more records than declared"));
        }
        if self.count.is_multiple_of(FENCE_EVERY) {
            self.fences.push(prefix(key));
        }
        self.bloom.insert(key);
        self.buf.extend_from_slice(key);
        self.buf.extend_from_slice(&value.to_be_bytes());
        self.count += 1;
        self.last = Some(*key);
        if self.buf.len() as u64 >= IO_CHUNK_RECORDS * RECORD_LEN {
            self.spill()?;
        }
        Ok(())
    }

    fn spill(&mut self) -> io::Result<()> {
        self.hasher.update(&self.buf);
        self.file.write_all(&self.buf)?;
        self.written += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// Appends the checksum. If a merge dropped duplicate keys, the header's count is fixed
    /// first and the file hashed again (rare: keys are unique hashes).
    fn finish(mut self) -> io::Result<Built> {
        self.spill()?;
        if self.count != self.declared {
            self.file.write_all_at(&self.count.to_be_bytes(), 24)?;
            self.hasher = hash_prefix(&self.file, self.written)?;
        }
        let checksum = self.hasher.finalize();
        self.file.write_all_at(checksum.as_bytes(), self.written)?;
        Ok(Built {
            file: self.file,
            count: self.count,
            bloom: self.bloom,
            fences: self.fences,
        })
    }
}

/// BLAKE3 of the first `len` bytes of `file`.
fn hash_prefix(file: &File, len: u64) -> io::Result<blake3::Hasher> {
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; (IO_CHUNK_RECORDS * RECORD_LEN) as usize];
    let mut at = 0;
    while at < len {
        let n = (len - at).min(buf.len() as u64) as usize;
        let chunk = buf.get_mut(..n).ok_or_else(|| invalid("chunk"))?;
        file.read_exact_at(chunk, at)?;
        hasher.update(chunk);
        at += n as u64;
    }
    Ok(hasher)
}

// ----- reading a run sequentially -----

/// Reads a run's records in order with buffered positioned reads (the file offset is never
/// used, so lookups on the same file are unaffected).
struct RecordReader<'a> {
    file: &'a File,
    count: u64,
    /// Next record to load into `buf`.
    next: u64,
    buf: Vec<u8>,
    at: usize,
}

impl<'a> RecordReader<'a> {
    fn new(run: &'a Run) -> RecordReader<'a> {
        RecordReader::over(&run.file, run.count)
    }

    fn over(file: &'a File, count: u64) -> RecordReader<'a> {
        RecordReader {
            file,
            count,
            next: 0,
            buf: Vec::new(),
            at: 0,
        }
    }

    /// Loads the next chunk; the bytes are returned for hashing. `false` at the end.
    fn refill(&mut self) -> io::Result<bool> {
        if self.next >= self.count {
            return Ok(false);
        }
        let n = (self.count - self.next).min(IO_CHUNK_RECORDS);
        self.buf.resize((n * RECORD_LEN) as usize, 0);
        self.file
            .read_exact_at(&mut self.buf, HEADER_LEN + self.next * RECORD_LEN)?;
        self.next += n;
        self.at = 0;
        Ok(true)
    }

    fn next(&mut self) -> io::Result<Option<([u8; 32], u64)>> {
        if self.at >= self.buf.len() && !self.refill()? {
            return Ok(None);
        }
        let end = self.at + RECORD_LEN as usize;
        let record = self
            .buf
            .get(self.at..end)
            .and_then(parse_record)
            .ok_or_else(|| invalid("truncated record"))?;
        self.at = end;
        Ok(Some(record))
    }
}

// ----- opening: file names, validation, the chain -----

/// This index's files in `dir`.
fn own_files(dir: &Path, name: &str) -> Result<Vec<(PathBuf, FileKind)>, HashIndexError> {
    list_run_files(dir, name).map_err(io_error(dir, "listing the directory"))
}

/// Validates every run file, keeps the chain from 0 and deletes the rest (see the module doc).
fn load_chain(dir: &Path, name: &str) -> Result<Vec<Arc<Run>>, HashIndexError> {
    let mut valid = Vec::new();
    for (path, kind) in own_files(dir, name)? {
        let FileKind::Run { from, to } = kind else {
            tracing::debug!(
                path = %path.display(),
                "hash index: deleting a leftover temporary file"
            );
            remove_if_exists(&path).map_err(io_error(&path, "deleting a temporary file"))?;
            continue;
        };
        match load_run(&path, from, to) {
            Ok(run) => valid.push(run),
            Err(LoadError::Invalid(reason)) => {
                tracing::warn!(
                    path = %path.display(), reason,
                    "hash index: ignoring and deleting an invalid run file (replayed from the log)"
                );
                remove_if_exists(&path).map_err(io_error(&path, "deleting an invalid run file"))?;
            }
            Err(LoadError::Io(source)) => {
                return Err(io_error(&path, "reading a run file")(source));
            }
        }
    }
    let (chain, rest) = choose_chain(valid);
    for run in rest {
        tracing::info!(
            path = %run.path.display(),
            "hash index: deleting a run outside the chain (merge source or orphan)"
        );
        remove_if_exists(&run.path).map_err(io_error(&run.path, "deleting a stale run file"))?;
    }
    Ok(chain.into_iter().map(Arc::new).collect())
}

impl Span for Run {
    fn from(&self) -> u64 {
        self.from
    }
    fn to(&self) -> u64 {
        self.to
    }
    fn records(&self) -> u64 {
        self.count
    }
}

enum LoadError {
    /// The file's contents are wrong: delete it.
    Invalid(String),
    /// The file could not be read: report it.
    Io(io::Error),
}

impl From<io::Error> for LoadError {
    fn from(e: io::Error) -> LoadError {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            LoadError::Invalid("shorter than its header says".into())
        } else {
            LoadError::Io(e)
        }
    }
}

fn invalid_run(reason: impl Into<String>) -> LoadError {
    LoadError::Invalid(reason.into())
}

/// Reads and checks a whole run file, rebuilding its Bloom filter and fences on the way.
fn load_run(path: &Path, from: u64, to: u64) -> Result<Run, LoadError> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    if len < HEADER_LEN + CHECKSUM_LEN {
        return Err(invalid_run(format!("{len} bytes, shorter than a header")));
    }
    let mut header = [0u8; HEADER_LEN as usize];
    file.read_exact_at(&mut header, 0)?;
    let count = check_header(&header, from, to)?;
    let expected = count
        .checked_mul(RECORD_LEN)
        .and_then(|n| n.checked_add(HEADER_LEN + CHECKSUM_LEN));
    if expected != Some(len) {
        return Err(invalid_run(format!(
            "{len} bytes do not hold the {count} records its header declares"
        )));
    }
    let mut hasher = blake3::Hasher::new();
    hasher.update(&header);
    let (bloom, fences) = scan_records(&file, count, &mut hasher)?;
    let mut checksum = [0u8; CHECKSUM_LEN as usize];
    file.read_exact_at(&mut checksum, len - CHECKSUM_LEN)?;
    if hasher.finalize() != blake3::Hash::from_bytes(checksum) {
        return Err(invalid_run("checksum mismatch"));
    }
    let built = Built {
        file,
        count,
        bloom,
        fences,
    };
    Ok(Run::new(path.to_owned(), from, to, built))
}

/// Checks magic and range against the file name; returns the declared count.
fn check_header(header: &[u8; 32], from: u64, to: u64) -> Result<u64, LoadError> {
    let field = |at: usize| {
        header
            .get(at..at + 8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_be_bytes)
            .ok_or_else(|| invalid_run("header"))
    };
    if header.get(..8) != Some(MAGIC.as_slice()) {
        return Err(invalid_run("bad magic"));
    }
    let (head_from, head_to) = (field(8)?, field(16)?);
    if (head_from, head_to) != (from, to) {
        return Err(invalid_run(format!(
            "header covers [{head_from}, {head_to}), its name [{from}, {to})"
        )));
    }
    if from >= to {
        return Err(invalid_run(format!("empty range [{from}, {to})")));
    }
    field(24)
}

/// Streams the records: hashes them, checks strict key order, builds Bloom and fences.
fn scan_records(
    file: &File,
    count: u64,
    hasher: &mut blake3::Hasher,
) -> Result<(Bloom, Vec<u64>), LoadError> {
    let mut bloom = Bloom::new(count);
    let mut fences = Vec::with_capacity(count.div_ceil(FENCE_EVERY) as usize);
    let mut reader = RecordReader::over(file, count);
    let mut last: Option<[u8; 32]> = None;
    let mut n = 0u64;
    while reader.refill()? {
        hasher.update(&reader.buf);
        for record in reader.buf.chunks_exact(RECORD_LEN as usize) {
            let (key, _) = parse_record(record).ok_or_else(|| invalid_run("record"))?;
            if last.is_some_and(|last| last >= key) {
                return Err(invalid_run(format!("record {n} is out of key order")));
            }
            if n.is_multiple_of(FENCE_EVERY) {
                fences.push(prefix(&key));
            }
            bloom.insert(&key);
            last = Some(key);
            n += 1;
        }
    }
    Ok((bloom, fences))
}

// ----- small helpers -----

fn lowest(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn invalid(message: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

fn io_error(path: &Path, what: &'static str) -> impl FnOnce(io::Error) -> HashIndexError {
    let path = path.display().to_string();
    move |source| HashIndexError::Io { path, what, source }
}

/// Cleanup on a path already failing: the next open deletes whatever is left.
fn remove_quietly(path: &Path) {
    if let Err(e) = remove_if_exists(path) {
        tracing::debug!(path = %path.display(), error = %e, "hash index: cleanup failed");
    }
}
