//! The per-entry part of the ledger state (lot records and the lists of entries by
//! participant, lot, transfer, certification, subject, dispute and key history): an LSM of
//! sorted immutable run files, a write-ahead log and an ordered memtable.
//!
//! # Why not sled
//! These records are written once or twice per entry, millions of them; in sled they set the
//! pace of ingest, its memory grows with what it has written whatever its cache, and its files
//! grow several times larger than the log (BENCHMARKS.md). Here a batch costs one append to
//! the write-ahead log, synced when the caller needs it durable; memory holds the memtable, a
//! Bloom filter and one fence key per 16 KiB of runs.
//!
//! # Contract
//! - Keys are byte strings up to 65,535 bytes; a batch's writes, encoded, up to 1 GiB (so a
//!   value up to a little under 1 GiB). A key written
//!   again replaces its value (the newest wins). Nothing is ever deleted but by [`StateStore::clear`].
//! - Each batch covers log entries `[from, to)` and is applied in log order. [`StateStore::apply`]
//!   appends it to the write-ahead log without syncing; [`StateStore::sync`] makes every batch
//!   so far durable. The caller (the index) syncs before it moves sled's mark, so sled's
//!   durable mark never passes the store's.
//! - Runs are durable before the write-ahead log is emptied, and a merged run before its
//!   sources are deleted: the store cannot be rebuilt but from the log, from entry 0.
//! - [`StateStore::open`] takes the mark the rest of the ledger state reached (`limit`) and
//!   replays the write-ahead log up to it, no further, dropping what lies beyond (those
//!   entries are replayed from the log through the rules). [`StateStore::applied`] then says
//!   where the store is: equal to `limit` when consistent; anything else means the caller
//!   must rebuild the whole ledger state.
//! - One writer at a time (the index's applier); readers at any time.
//!
//! # Files (in one directory)
//! Run `state-{from:020}-{to:020}.run`, covering entries `[from, to)`:
//!
//! | offset | size | content |
//! |---|---|---|
//! | 0 | 8 | magic `FTSTRUN1` |
//! | 8 | 8 | `from`, u64 big-endian |
//! | 16 | 8 | `to`, u64 big-endian |
//! | 24 | 8 | `count`, u64 big-endian |
//! | 32 | ... | `count` records: key length u16 BE, value length u32 BE, key, value |
//! | end - 32 | 32 | BLAKE3 of every preceding byte |
//!
//! Records are sorted by key, strictly ascending. A run is written to
//! `state-{from}-{to}.run.{seq}.tmp`, synced, renamed into place, and its directory synced.
//! At open, invalid runs are deleted and the chain from 0 is kept exactly as in the hash
//! index (`hashindex.rs`): at each position the valid run reaching furthest.
//!
//! Write-ahead log `state.wal`: a sequence of records, each
//!
//! | size | content |
//! |---|---|
//! | 4 | `len`: bytes of the body, u32 BE |
//! | `len` | body: `from` u64 BE, `to` u64 BE, `count` u32 BE, then `count` items as in runs |
//! | 16 | the first 16 bytes of BLAKE3(`len` ‖ body) |
//!
//! Replay stops at the first record that is short, fails its checksum, does not start where
//! the previous one ended, or ends beyond `limit`; the file is cut there. After a run is
//! written the log is emptied.
//!
//! # In memory
//! The memtable (an ordered map, also the frozen one being written out), and per run a Bloom
//! filter of 10 bits per key (k = 7, double hashing of a 64-bit SipHash) and the first key
//! and offset of every block of about 16 KiB. A lookup probes the Bloom filters newest run
//! first and reads one block on a hit; a prefix scan reads the blocks that can hold the prefix.
//!
//! # Merging
//! Size-tiered as in the hash index: while an adjacent pair has its older run at most twice
//! the records of the newer, the newest such pair is merged on a background thread (the newer
//! value wins on equal keys); the merged file is synced, renamed, its directory synced, then
//! its sources are deleted.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::hash::Hasher;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;

use crate::runfiles::{
    self, choose_chain, list_run_files, lock, pair_to_merge, read, remove_if_exists,
    with_pair_merged, write, FileKind, MergeControl, Span,
};

#[cfg(test)]
mod tests;

/// Bytes of keys and values the memtable holds before the index writes it out: 16 MiB.
pub const DEFAULT_RUN_BYTES: usize = 16 << 20;

const MAGIC: &[u8; 8] = b"FTSTRUN1";
const HEADER_LEN: u64 = 32;
const CHECKSUM_LEN: u64 = 32;
const ITEM_HEADER: usize = 6;
const WAL_NAME: &str = "state.wal";
const WAL_BODY_HEADER: usize = 20;
const WAL_CHECKSUM: usize = 16;
/// Largest write-ahead record body accepted at replay (a batch is a group commit's writes).
const WAL_MAX_BODY: u32 = 1 << 30;
/// A new block (and fence) starts after this many bytes of records.
const BLOCK_BYTES: u64 = 16 << 10;
const BLOOM_BITS_PER_KEY: u64 = 10;
const BLOOM_HASHES: u64 = 7;
/// Buffered reads and writes while loading, flushing and merging.
const IO_CHUNK: usize = 64 << 10;
/// Memory charged per memtable record besides its bytes (map node, two allocations).
const MEMTABLE_OVERHEAD: usize = 64;
const CANCEL_CHECK_EVERY: u64 = 4096;
const NAME: &str = "state";

#[derive(Debug, thiserror::Error)]
pub enum StateStoreError {
    #[error("ledger state store {path}: {what}: {source}")]
    Io {
        path: String,
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("ledger state store: cannot start its merge thread: {0}")]
    Spawn(#[source] io::Error),
    #[error("ledger state store: a record of {key_len} key bytes and {value_len} value bytes is too large")]
    TooLarge { key_len: usize, value_len: usize },
    #[error("ledger state store: a batch of {bytes} bytes of writes is over the 1 GiB a write-ahead record holds")]
    BatchTooLarge { bytes: usize },
}

/// Sizes for metrics and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StateStoreStats {
    pub runs: usize,
    pub run_records: u64,
    pub memtable_records: u64,
    /// Estimated bytes of memory: Bloom filters, fences and memtables.
    pub memory_bytes: u64,
    pub wal_bytes: u64,
}

/// The store. Cheap to clone; clones share one state and one merge thread, which stops when
/// the last clone is dropped.
#[derive(Clone)]
pub struct StateStore {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    merger: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shared.close();
        if let Some(handle) = lock(&self.merger).take() {
            let _ = handle.join();
        }
    }
}

type Memtable = BTreeMap<Vec<u8>, Vec<u8>>;

/// A key and its value.
pub type Record = (Vec<u8>, Vec<u8>);

/// A record read from a run and where its bytes are in the reader's buffer.
type RawRecord = (Vec<u8>, Vec<u8>, std::ops::Range<usize>);

impl StateStore {
    /// Opens (creating `dir` if missing) the store, replaying its write-ahead log up to entry
    /// `limit` (see the module doc). `run_bytes`: memtable bytes at which
    /// [`StateStore::wants_flush`] says yes.
    pub fn open(dir: &Path, limit: u64, run_bytes: usize) -> Result<StateStore, StateStoreError> {
        let shared = Arc::new(Shared::open(dir, limit, run_bytes)?);
        let worker = Arc::clone(&shared);
        let handle = std::thread::Builder::new()
            .name("statestore-merge".into())
            .spawn(move || worker.merge_loop())
            .map_err(StateStoreError::Spawn)?;
        shared.request_merge();
        Ok(StateStore {
            inner: Arc::new(Inner {
                shared,
                merger: Mutex::new(Some(handle)),
            }),
        })
    }

    /// Entries `[0, applied)` of the log are reflected.
    pub fn applied(&self) -> u64 {
        read(&self.inner.shared.state).applied
    }

    /// The newest value of `key`.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateStoreError> {
        self.inner.shared.get(key)
    }

    /// Every record whose key starts with `prefix`, newest values, in key order.
    pub fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<Record>, StateStoreError> {
        self.inner.shared.scan_prefix(prefix)
    }

    /// Writes the batch of entries `[applied, to)` to the write-ahead log (not synced: see
    /// [`StateStore::sync`]) and makes it visible. A batch ending at or before
    /// [`StateStore::applied`] is skipped.
    pub fn apply<'a, I>(&self, writes: I, to: u64) -> Result<(), StateStoreError>
    where
        I: IntoIterator<Item = (&'a [u8], &'a [u8])>,
    {
        self.inner.shared.apply(writes, to)
    }

    /// Makes every batch applied so far durable (one fdatasync of the write-ahead log, none
    /// if nothing was appended since the last).
    pub fn sync(&self) -> Result<(), StateStoreError> {
        lock(&self.inner.shared.wal).sync()
    }

    /// Whether the memtable has reached its size: the caller makes the rest of the ledger
    /// state durable up to [`StateStore::applied`], then calls [`StateStore::flush`].
    pub fn wants_flush(&self) -> bool {
        let state = read(&self.inner.shared.state);
        state.memtable_bytes >= self.inner.shared.run_bytes
    }

    /// Writes the memtable out as a durable run and empties the write-ahead log. The caller
    /// must have made the rest of the ledger state durable up to [`StateStore::applied`]
    /// first: after this, the entries are no longer replayable from the write-ahead log.
    pub fn flush(&self) -> Result<(), StateStoreError> {
        self.inner.shared.flush()
    }

    /// Forgets everything (files included).
    pub fn clear(&self) -> Result<(), StateStoreError> {
        self.inner.shared.clear()
    }

    pub fn stats(&self) -> StateStoreStats {
        self.inner.shared.stats()
    }

    /// Waits until no merge is running or requested (tests and benchmarks).
    pub fn wait_for_merges(&self) {
        self.inner.shared.wait_for_merges()
    }
}

struct Shared {
    dir: PathBuf,
    run_bytes: usize,
    /// The write-ahead log; its lock serializes the writers (apply, flush, clear).
    wal: Mutex<Wal>,
    state: RwLock<State>,
    /// The merge thread's signals; closing when the last handle is dropped (a merge in
    /// progress is then abandoned).
    merges: MergeControl,
    /// Bumped by `clear`: a merge started before is abandoned.
    generation: AtomicU64,
    tmp_seq: AtomicU64,
}

struct Wal {
    path: PathBuf,
    file: File,
    len: u64,
    /// Records appended since the last sync.
    unsynced: bool,
}

impl Wal {
    fn sync(&mut self) -> Result<(), StateStoreError> {
        if self.unsynced {
            self.file
                .sync_data()
                .map_err(io_error(&self.path, "syncing the write-ahead log"))?;
            self.unsynced = false;
        }
        Ok(())
    }

    /// Truncates the log to nothing, durably.
    fn empty(&mut self) -> Result<(), StateStoreError> {
        self.file
            .set_len(0)
            .and_then(|()| self.file.sync_data())
            .map_err(io_error(&self.path, "emptying the write-ahead log"))?;
        self.len = 0;
        self.unsynced = false;
        Ok(())
    }
}

struct State {
    active: Memtable,
    memtable_bytes: usize,
    /// The memtable being written out; searched until its run is installed.
    frozen: Option<Arc<Memtable>>,
    /// Runs in log order, oldest first.
    runs: Arc<Vec<Arc<Run>>>,
    run_end: u64,
    applied: u64,
}

impl Shared {
    fn open(dir: &Path, limit: u64, run_bytes: usize) -> Result<Shared, StateStoreError> {
        fs::create_dir_all(dir).map_err(io_error(dir, "creating the directory"))?;
        let runs = load_chain(dir)?;
        let run_end = runs.last().map_or(0, |run| run.to);
        let wal_path = dir.join(WAL_NAME);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&wal_path)
            .map_err(io_error(&wal_path, "opening the write-ahead log"))?;
        // The log's name (and the directory's own) durable before anything relies on them.
        for d in [Some(dir), dir.parent()].into_iter().flatten() {
            File::open(d)
                .and_then(|d| d.sync_all())
                .map_err(io_error(d, "syncing the directory"))?;
        }
        let (active, memtable_bytes, applied, keep) = replay_wal(&file, &wal_path, run_end, limit)?;
        let len = file
            .metadata()
            .map_err(io_error(&wal_path, "reading the write-ahead log"))?
            .len();
        if keep < len {
            tracing::info!(
                dropped = len - keep,
                "ledger state store: cutting the write-ahead log after entry {applied}"
            );
            file.set_len(keep)
                .and_then(|()| file.sync_data())
                .map_err(io_error(&wal_path, "cutting the write-ahead log"))?;
        }
        tracing::debug!(
            dir = %dir.display(), runs = runs.len(), run_end, applied, "ledger state store opened"
        );
        Ok(Shared {
            dir: dir.to_owned(),
            run_bytes: run_bytes.max(1),
            wal: Mutex::new(Wal {
                path: wal_path,
                file,
                len: keep,
                unsynced: false,
            }),
            state: RwLock::new(State {
                active,
                memtable_bytes,
                frozen: None,
                runs: Arc::new(runs),
                run_end,
                applied,
            }),
            merges: MergeControl::default(),
            generation: AtomicU64::new(0),
            tmp_seq: AtomicU64::new(0),
        })
    }

    fn run_path(&self, from: u64, to: u64) -> PathBuf {
        self.dir.join(run_file_name(from, to))
    }

    fn tmp_path(&self, from: u64, to: u64) -> PathBuf {
        let seq = self.tmp_seq.fetch_add(1, Ordering::Relaxed);
        self.dir
            .join(format!("{}.{seq}.tmp", run_file_name(from, to)))
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateStoreError> {
        let (frozen, runs) = {
            let state = read(&self.state);
            if let Some(value) = state.active.get(key) {
                return Ok(Some(value.clone()));
            }
            (state.frozen.clone(), Arc::clone(&state.runs))
        };
        if let Some(value) = frozen.as_ref().and_then(|f| f.get(key)) {
            return Ok(Some(value.clone()));
        }
        for run in runs.iter().rev() {
            if let Some(value) = run.get(key)? {
                return Ok(Some(value));
            }
        }
        Ok(None)
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<Record>, StateStoreError> {
        let mut found: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        let (frozen, runs) = {
            let state = read(&self.state);
            collect_prefix(&state.active, prefix, &mut found);
            (state.frozen.clone(), Arc::clone(&state.runs))
        };
        if let Some(frozen) = frozen {
            collect_prefix(&frozen, prefix, &mut found);
        }
        for run in runs.iter().rev() {
            run.scan_prefix(prefix, &mut found)?;
        }
        Ok(found.into_iter().collect())
    }

    fn apply<'a, I>(&self, writes: I, to: u64) -> Result<(), StateStoreError>
    where
        I: IntoIterator<Item = (&'a [u8], &'a [u8])>,
    {
        let mut wal = lock(&self.wal);
        let from = read(&self.state).applied;
        if to <= from {
            return Ok(());
        }
        let items: Vec<(&[u8], &[u8])> = writes.into_iter().collect();
        let record = encode_wal_record(from, to, &items)?;
        let at = wal.len;
        let path = wal.path.clone();
        wal.unsynced = true;
        wal.file
            .write_all_at(&record, at)
            .map_err(io_error(&path, "appending to the write-ahead log"))?;
        wal.len = at + record.len() as u64;
        let mut state = write(&self.state);
        for (key, value) in items {
            let State {
                active,
                memtable_bytes,
                ..
            } = &mut *state;
            insert_charged(active, memtable_bytes, key.to_vec(), value.to_vec());
        }
        state.applied = to;
        Ok(())
    }

    fn flush(&self) -> Result<(), StateStoreError> {
        let mut wal = lock(&self.wal);
        let (frozen, from, to) = {
            let mut state = write(&self.state);
            if state.applied <= state.run_end {
                return Ok(());
            }
            let map = std::mem::take(&mut state.active);
            state.memtable_bytes = 0;
            let frozen = Arc::new(map);
            state.frozen = Some(Arc::clone(&frozen));
            (frozen, state.run_end, state.applied)
        };
        let written = self.write_run(&frozen, from, to);
        let mut state = write(&self.state);
        state.frozen = None;
        let run = match written {
            Ok(run) => run,
            Err(e) => {
                // Back into memory (newer writes win); the write-ahead log still has them.
                let map = Arc::try_unwrap(frozen).unwrap_or_else(|shared| (*shared).clone());
                for (key, value) in map {
                    if !state.active.contains_key(&key) {
                        state.memtable_bytes += key.len() + value.len() + MEMTABLE_OVERHEAD;
                        state.active.insert(key, value);
                    }
                }
                return Err(e);
            }
        };
        let mut runs = Vec::with_capacity(state.runs.len() + 1);
        runs.extend(state.runs.iter().cloned());
        runs.push(run);
        state.runs = Arc::new(runs);
        state.run_end = to;
        drop(state);
        // Every record of the write-ahead log is in the run now, durably.
        wal.empty()?;
        drop(wal);
        self.request_merge();
        Ok(())
    }

    /// Writes a memtable as the durable run `[from, to)`: data synced, renamed, directory synced.
    fn write_run(
        &self,
        memtable: &Memtable,
        from: u64,
        to: u64,
    ) -> Result<Arc<Run>, StateStoreError> {
        let path = self.run_path(from, to);
        let tmp = self.tmp_path(from, to);
        let written = (|| -> io::Result<Built> {
            let mut writer = RunWriter::create(&tmp, from, to, memtable.len() as u64)?;
            for (key, value) in memtable {
                writer.push(key, value)?;
            }
            let built = writer.finish()?;
            built.file.sync_data()?;
            fs::rename(&tmp, &path)?;
            File::open(&self.dir)?.sync_all()?;
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

    fn clear(&self) -> Result<(), StateStoreError> {
        let mut wal = lock(&self.wal);
        {
            let mut state = write(&self.state);
            self.generation.fetch_add(1, Ordering::AcqRel);
            state.active = Memtable::new();
            state.memtable_bytes = 0;
            state.frozen = None;
            state.runs = Arc::new(Vec::new());
            state.run_end = 0;
            state.applied = 0;
        }
        wal.empty()?;
        for (path, _) in own_files(&self.dir)? {
            remove_if_exists(&path).map_err(io_error(&path, "deleting a run file"))?;
        }
        // The deletions durable before the caller rebuilds: runs of the old state coming
        // back after a power cut would chain under the new write-ahead log.
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_error(&self.dir, "syncing the directory"))?;
        Ok(())
    }

    fn stats(&self) -> StateStoreStats {
        let wal_bytes = lock(&self.wal).len;
        let state = read(&self.state);
        let frozen = state.frozen.as_deref();
        let frozen_bytes: usize = frozen.map_or(0, |f| {
            f.iter()
                .map(|(k, v)| k.len() + v.len() + MEMTABLE_OVERHEAD)
                .sum()
        });
        StateStoreStats {
            runs: state.runs.len(),
            run_records: state.runs.iter().map(|run| run.count).sum(),
            memtable_records: (state.active.len() + frozen.map_or(0, BTreeMap::len)) as u64,
            memory_bytes: state.runs.iter().map(|run| run.memory_bytes()).sum::<u64>()
                + (state.memtable_bytes + frozen_bytes) as u64,
            wal_bytes,
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
        self.merges
            .run("ledger state store", || self.merge_while_needed());
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
                    tracing::warn!(error = %e, "ledger state store: a merge failed; its sources stay in place");
                    return;
                }
            }
        }
    }

    fn merge_candidates(&self) -> Option<(Arc<Run>, Arc<Run>, u64)> {
        let state = read(&self.state);
        let generation = self.generation.load(Ordering::Acquire);
        let (older, newer) = pair_to_merge(&state.runs)?;
        Some((older, newer, generation))
    }

    fn merge_pair(
        &self,
        older: &Arc<Run>,
        newer: &Arc<Run>,
        generation: u64,
    ) -> Result<bool, StateStoreError> {
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
        if let Err(source) = built.file.sync_data() {
            remove_quietly(&tmp);
            return Err(io_error(&tmp, "syncing a merged run")(source));
        }
        match self.install_merged(older, newer, &tmp, built, generation) {
            Ok(true) => {
                if let Err(e) = File::open(&self.dir).and_then(|d| d.sync_all()) {
                    // Keep the sources: the next open prefers the merged run if it is whole.
                    tracing::warn!(error = %e, "ledger state store: syncing the directory failed");
                    return Ok(true);
                }
                // Under the state lock and only in the same generation: after a `clear`, a
                // flush may have written a run of the same name as a source.
                let _state = read(&self.state);
                if self.generation.load(Ordering::Acquire) != generation {
                    return Ok(false);
                }
                for source in [older, newer] {
                    if let Err(e) = remove_if_exists(&source.path) {
                        tracing::warn!(
                            path = %source.path.display(), error = %e,
                            "ledger state store: deleting a merged run failed (retried at next open)"
                        );
                    }
                }
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

    /// Streams the two-way merge into `tmp` (the newer value wins); `None` if abandoned.
    fn write_merged(
        &self,
        older: &Run,
        newer: &Run,
        tmp: &Path,
        generation: u64,
    ) -> io::Result<Option<Built>> {
        let declared = older.count.saturating_add(newer.count);
        let mut out = RunWriter::create(tmp, older.from, newer.to, declared)?;
        let mut a = RecordReader::new(&older.file, older.records_end);
        let mut b = RecordReader::new(&newer.file, newer.records_end);
        let (mut x, mut y) = (a.next()?, b.next()?);
        let mut n = 0u64;
        loop {
            let (key, value) = match (x.take(), y.take()) {
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
                        y = Some(right);
                        left
                    }
                    std::cmp::Ordering::Greater => {
                        y = b.next()?;
                        x = Some(left);
                        right
                    }
                    std::cmp::Ordering::Equal => {
                        x = a.next()?;
                        y = b.next()?;
                        right
                    }
                },
            };
            out.push(&key, &value)?;
            n += 1;
            if n.is_multiple_of(CANCEL_CHECK_EVERY) && self.merge_cancelled(generation) {
                return Ok(None);
            }
        }
        out.finish().map(Some)
    }

    fn install_merged(
        &self,
        older: &Arc<Run>,
        newer: &Arc<Run>,
        tmp: &Path,
        built: Built,
        generation: u64,
    ) -> Result<bool, StateStoreError> {
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

/// Inserts into a memtable, keeping `charged` at its keys' and values' bytes plus
/// [`MEMTABLE_OVERHEAD`] a record (a replaced value no longer counts).
fn insert_charged(map: &mut Memtable, charged: &mut usize, key: Vec<u8>, value: Vec<u8>) {
    let added = key.len() + value.len() + MEMTABLE_OVERHEAD;
    let key_len = key.len();
    if let Some(old) = map.insert(key, value) {
        *charged = charged.saturating_sub(key_len + old.len() + MEMTABLE_OVERHEAD);
    }
    *charged = charged.saturating_add(added);
}

fn collect_prefix(map: &Memtable, prefix: &[u8], found: &mut BTreeMap<Vec<u8>, Vec<u8>>) {
    for (key, value) in map.range(prefix.to_vec()..) {
        if !key.starts_with(prefix) {
            break;
        }
        found.entry(key.clone()).or_insert_with(|| value.clone());
    }
}

// ----- the write-ahead log -----

fn encode_wal_record(
    from: u64,
    to: u64,
    items: &[(&[u8], &[u8])],
) -> Result<Vec<u8>, StateStoreError> {
    // Checked before anything is copied: a refused batch costs no memory.
    for (key, value) in items {
        if u16::try_from(key.len()).is_err() || u32::try_from(value.len()).is_err() {
            return Err(StateStoreError::TooLarge {
                key_len: key.len(),
                value_len: value.len(),
            });
        }
    }
    let size = items.iter().fold(WAL_BODY_HEADER, |sum, (k, v)| {
        sum.saturating_add(ITEM_HEADER + k.len())
            .saturating_add(v.len())
    });
    let (Ok(len), Ok(count)) = (u32::try_from(size), u32::try_from(items.len())) else {
        return Err(StateStoreError::BatchTooLarge { bytes: size });
    };
    if len > WAL_MAX_BODY {
        return Err(StateStoreError::BatchTooLarge { bytes: size });
    }
    let mut body = Vec::with_capacity(size);
    body.extend_from_slice(&from.to_be_bytes());
    body.extend_from_slice(&to.to_be_bytes());
    body.extend_from_slice(&count.to_be_bytes());
    for (key, value) in items {
        push_item(&mut body, key, value)?;
    }
    let mut record = Vec::with_capacity(4 + body.len() + WAL_CHECKSUM);
    record.extend_from_slice(&len.to_be_bytes());
    record.extend_from_slice(&body);
    let checksum = blake3::hash(&record);
    record.extend_from_slice(checksum.as_bytes().get(..WAL_CHECKSUM).unwrap_or_default());
    Ok(record)
}

fn push_item(out: &mut Vec<u8>, key: &[u8], value: &[u8]) -> Result<(), StateStoreError> {
    let too_large = || StateStoreError::TooLarge {
        key_len: key.len(),
        value_len: value.len(),
    };
    let key_len = u16::try_from(key.len()).map_err(|_| too_large())?;
    let value_len = u32::try_from(value.len()).map_err(|_| too_large())?;
    out.extend_from_slice(&key_len.to_be_bytes());
    out.extend_from_slice(&value_len.to_be_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(value);
    Ok(())
}

/// Replays the write-ahead log over the runs' end `run_end`, up to `limit`. Returns the
/// memtable, its charged bytes, the mark reached and how many bytes of the file to keep.
fn replay_wal(
    file: &File,
    path: &Path,
    run_end: u64,
    limit: u64,
) -> Result<(Memtable, usize, u64, u64), StateStoreError> {
    let mut bytes = Vec::new();
    {
        use std::io::Read;
        let mut reader = file;
        reader
            .read_to_end(&mut bytes)
            .map_err(io_error(path, "reading the write-ahead log"))?;
    }
    let mut memtable = Memtable::new();
    let mut charged = 0usize;
    let mut applied = run_end;
    let mut at = 0usize;
    while let Some((from, to, items, next)) = parse_wal_record(&bytes, at) {
        if to <= run_end {
            // Already in a run (the log was not emptied before a crash).
            at = next;
            continue;
        }
        if from != applied || to > limit {
            break;
        }
        for (key, value) in items {
            insert_charged(&mut memtable, &mut charged, key.to_vec(), value.to_vec());
        }
        applied = to;
        at = next;
    }
    Ok((memtable, charged, applied, at as u64))
}

type WalRecord<'a> = (u64, u64, Vec<(&'a [u8], &'a [u8])>, usize);

/// The record at `at`, if whole and valid, and where the next one starts.
fn parse_wal_record(bytes: &[u8], at: usize) -> Option<WalRecord<'_>> {
    let len = u32::from_be_bytes(*bytes.get(at..)?.first_chunk::<4>()?);
    if len > WAL_MAX_BODY {
        return None;
    }
    let body_end = at.checked_add(4)?.checked_add(len as usize)?;
    let end = body_end.checked_add(WAL_CHECKSUM)?;
    let framed = bytes.get(at..body_end)?;
    let checksum = bytes.get(body_end..end)?;
    if blake3::hash(framed).as_bytes().get(..WAL_CHECKSUM)? != checksum {
        return None;
    }
    let body = framed.get(4..)?;
    let from = u64::from_be_bytes(*body.first_chunk::<8>()?);
    let to = u64::from_be_bytes(*body.get(8..)?.first_chunk::<8>()?);
    let count = u32::from_be_bytes(*body.get(16..)?.first_chunk::<4>()?);
    if from >= to {
        return None;
    }
    let mut items = Vec::new();
    let mut rest = body.get(WAL_BODY_HEADER..)?;
    for _ in 0..count {
        let (key, value, tail) = parse_item(rest)?;
        items.push((key, value));
        rest = tail;
    }
    rest.is_empty().then_some((from, to, items, end))
}

/// One item (key length, value length, key, value) and what follows it.
fn parse_item(bytes: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let key_len = u16::from_be_bytes(*bytes.first_chunk::<2>()?) as usize;
    let value_len = u32::from_be_bytes(*bytes.get(2..)?.first_chunk::<4>()?) as usize;
    let rest = bytes.get(ITEM_HEADER..)?;
    let key = rest.get(..key_len)?;
    let value = rest.get(key_len..key_len.checked_add(value_len)?)?;
    let tail = rest.get(key_len + value_len..)?;
    Some((key, value, tail))
}

// ----- runs -----

struct Run {
    path: PathBuf,
    file: File,
    from: u64,
    to: u64,
    count: u64,
    /// Offset where the records end (the checksum starts).
    records_end: u64,
    bloom: Bloom,
    fences: Vec<Fence>,
}

/// The first key of a block and the block's offset in the file.
struct Fence {
    key: Box<[u8]>,
    offset: u64,
}

struct Built {
    file: File,
    count: u64,
    records_end: u64,
    bloom: Bloom,
    fences: Vec<Fence>,
}

impl Run {
    fn new(path: PathBuf, from: u64, to: u64, built: Built) -> Run {
        Run {
            path,
            file: built.file,
            from,
            to,
            count: built.count,
            records_end: built.records_end,
            bloom: built.bloom,
            fences: built.fences,
        }
    }

    fn memory_bytes(&self) -> u64 {
        let fences: usize = self
            .fences
            .iter()
            .map(|f| f.key.len() + std::mem::size_of::<Fence>())
            .sum();
        (self.bloom.words.len() * 8 + fences + std::mem::size_of::<Run>()) as u64
    }

    /// Block `b`'s byte range.
    fn block(&self, b: usize) -> Option<(u64, u64)> {
        let start = self.fences.get(b)?.offset;
        let end = self
            .fences
            .get(b + 1)
            .map_or(self.records_end, |f| f.offset);
        Some((start, end))
    }

    fn read_block(&self, b: usize) -> Result<Option<Vec<u8>>, StateStoreError> {
        let Some((start, end)) = self.block(b) else {
            return Ok(None);
        };
        let len = usize::try_from(end.saturating_sub(start))
            .map_err(|_| io_error(&self.path, "reading a block")(invalid("block too large")))?;
        let mut block = vec![0u8; len];
        self.file
            .read_exact_at(&mut block, start)
            .map_err(io_error(&self.path, "reading a block of a run file"))?;
        Ok(Some(block))
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateStoreError> {
        if self.count == 0 || !self.bloom.may_contain(key) {
            return Ok(None);
        }
        let after = self.fences.partition_point(|f| &*f.key <= key);
        let Some(b) = after.checked_sub(1) else {
            return Ok(None);
        };
        let Some(block) = self.read_block(b)? else {
            return Ok(None);
        };
        let mut rest = block.as_slice();
        while let Some((k, v, tail)) = parse_item(rest) {
            match k.cmp(key) {
                std::cmp::Ordering::Less => rest = tail,
                std::cmp::Ordering::Equal => return Ok(Some(v.to_vec())),
                std::cmp::Ordering::Greater => break,
            }
        }
        Ok(None)
    }

    /// Adds the records under `prefix` not already in `found` (newer sources come first).
    fn scan_prefix(
        &self,
        prefix: &[u8],
        found: &mut BTreeMap<Vec<u8>, Vec<u8>>,
    ) -> Result<(), StateStoreError> {
        // The block before the first whose first key is >= prefix may hold the start.
        let first = self
            .fences
            .partition_point(|f| &*f.key < prefix)
            .saturating_sub(1);
        let mut b = first;
        while let Some(block) = self.read_block(b)? {
            let mut rest = block.as_slice();
            while let Some((k, v, tail)) = parse_item(rest) {
                if k.starts_with(prefix) {
                    found.entry(k.to_vec()).or_insert_with(|| v.to_vec());
                } else if k > prefix {
                    return Ok(());
                }
                rest = tail;
            }
            b += 1;
        }
        Ok(())
    }
}

// ----- Bloom filter -----

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

    fn positions(&self, key: &[u8]) -> impl Iterator<Item = u64> {
        let bits = self.words.len() as u64 * 64;
        // SipHash with fixed keys: the filter lives only in memory, rebuilt at every open.
        #[allow(deprecated)]
        let mut hasher = std::hash::SipHasher::new_with_keys(0x6661_6972, 0x7472_6169);
        hasher.write(key);
        let h = hasher.finish();
        let (h1, h2) = (h & 0xffff_ffff, (h >> 32) | 1);
        (0..BLOOM_HASHES).map(move |i| h1.wrapping_add(i.wrapping_mul(h2)) % bits)
    }

    fn insert(&mut self, key: &[u8]) {
        for bit in self.positions(key) {
            if let Some(word) = self.words.get_mut((bit / 64) as usize) {
                *word |= 1 << (bit % 64);
            }
        }
    }

    fn may_contain(&self, key: &[u8]) -> bool {
        self.positions(key).all(|bit| {
            self.words
                .get((bit / 64) as usize)
                .is_none_or(|word| word & (1 << (bit % 64)) != 0)
        })
    }
}

// ----- writing a run -----

struct RunWriter {
    file: File,
    buf: Vec<u8>,
    hasher: blake3::Hasher,
    /// Bytes already written to `file`.
    written: u64,
    declared: u64,
    count: u64,
    last: Option<Vec<u8>>,
    /// Offset where the current block started.
    block_start: u64,
    bloom: Bloom,
    fences: Vec<Fence>,
}

impl RunWriter {
    fn create(tmp: &Path, from: u64, to: u64, declared: u64) -> io::Result<RunWriter> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(tmp)?;
        let mut buf = Vec::with_capacity(IO_CHUNK + 4096);
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
            block_start: 0,
            bloom: Bloom::new(declared),
            fences: Vec::new(),
        })
    }

    fn offset(&self) -> u64 {
        self.written + self.buf.len() as u64
    }

    fn push(&mut self, key: &[u8], value: &[u8]) -> io::Result<()> {
        if self.last.as_deref().is_some_and(|last| last >= key) {
            return Err(invalid("a source run has keys out of order"));
        }
        if self.count >= self.declared {
            return Err(invalid("more records than declared"));
        }
        let offset = self.offset();
        if self.fences.is_empty() || offset - self.block_start >= BLOCK_BYTES {
            self.fences.push(Fence {
                key: key.into(),
                offset,
            });
            self.block_start = offset;
        }
        self.bloom.insert(key);
        let key_len = u16::try_from(key.len()).map_err(|_| invalid("key too long"))?;
        let value_len = u32::try_from(value.len()).map_err(|_| invalid("value too long"))?;
        self.buf.extend_from_slice(&key_len.to_be_bytes());
        self.buf.extend_from_slice(&value_len.to_be_bytes());
        self.buf.extend_from_slice(key);
        self.buf.extend_from_slice(value);
        self.count += 1;
        self.last = Some(key.to_vec());
        if self.buf.len() >= IO_CHUNK {
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

    /// Appends the checksum; if a merge dropped replaced keys, fixes the header's count and
    /// hashes the file again.
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
            records_end: self.written,
            bloom: self.bloom,
            fences: self.fences,
        })
    }
}

fn hash_prefix(file: &File, len: u64) -> io::Result<blake3::Hasher> {
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; IO_CHUNK];
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

/// Reads records in order from `HEADER_LEN` to `end` with buffered positioned reads.
struct RecordReader<'a> {
    file: &'a File,
    /// File offset of `buf[0]`.
    base: u64,
    end: u64,
    buf: Vec<u8>,
    at: usize,
}

impl<'a> RecordReader<'a> {
    fn new(file: &'a File, end: u64) -> RecordReader<'a> {
        RecordReader {
            file,
            base: HEADER_LEN,
            end,
            buf: Vec::new(),
            at: 0,
        }
    }

    /// Offset of the next record.
    fn offset(&self) -> u64 {
        self.base + self.at as u64
    }

    /// Makes at least `n` bytes available from `at` (fewer only at the end of the records).
    fn fill(&mut self, n: usize) -> io::Result<()> {
        if self.buf.len() - self.at >= n {
            return Ok(());
        }
        let offset = self.offset();
        let want = n.max(IO_CHUNK) as u64;
        let len = want.min(self.end.saturating_sub(offset)) as usize;
        let mut buf = vec![0u8; len];
        self.file.read_exact_at(&mut buf, offset)?;
        self.buf = buf;
        self.base = offset;
        self.at = 0;
        Ok(())
    }

    /// The next record and the bytes it took (for hashing at load).
    fn next_raw(&mut self) -> io::Result<Option<RawRecord>> {
        if self.offset() >= self.end {
            return Ok(None);
        }
        self.fill(ITEM_HEADER)?;
        let header = self
            .buf
            .get(self.at..)
            .and_then(|b| b.first_chunk::<ITEM_HEADER>())
            .ok_or_else(|| invalid("truncated record"))?;
        let [k0, k1, v0, v1, v2, v3] = *header;
        let key_len = u16::from_be_bytes([k0, k1]) as usize;
        let value_len = u32::from_be_bytes([v0, v1, v2, v3]) as usize;
        let len = ITEM_HEADER + key_len + value_len;
        self.fill(len)?;
        let record = self
            .buf
            .get(self.at..self.at + len)
            .ok_or_else(|| invalid("truncated record"))?;
        let (key, value, _) = parse_item(record).ok_or_else(|| invalid("truncated record"))?;
        let out = (key.to_vec(), value.to_vec(), self.at..self.at + len);
        self.at += len;
        Ok(Some(out))
    }

    fn next(&mut self) -> io::Result<Option<(Vec<u8>, Vec<u8>)>> {
        Ok(self.next_raw()?.map(|(k, v, _)| (k, v)))
    }
}

// ----- opening: file names, validation, the chain -----

fn run_file_name(from: u64, to: u64) -> String {
    runfiles::run_file_name(NAME, from, to)
}

fn own_files(dir: &Path) -> Result<Vec<(PathBuf, FileKind)>, StateStoreError> {
    list_run_files(dir, NAME).map_err(io_error(dir, "listing the directory"))
}

fn load_chain(dir: &Path) -> Result<Vec<Arc<Run>>, StateStoreError> {
    let mut valid = Vec::new();
    for (path, kind) in own_files(dir)? {
        let FileKind::Run { from, to } = kind else {
            remove_if_exists(&path).map_err(io_error(&path, "deleting a temporary file"))?;
            continue;
        };
        match load_run(&path, from, to) {
            Ok(run) => valid.push(run),
            Err(LoadError::Invalid(reason)) => {
                tracing::warn!(
                    path = %path.display(), reason,
                    "ledger state store: deleting an invalid run file (the ledger state is rebuilt from the log if it was needed)"
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
            "ledger state store: deleting a run outside the chain (merge source or orphan)"
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
    Invalid(String),
    Io(io::Error),
}

impl From<io::Error> for LoadError {
    fn from(e: io::Error) -> LoadError {
        match e.kind() {
            io::ErrorKind::UnexpectedEof | io::ErrorKind::InvalidData => {
                LoadError::Invalid(e.to_string())
            }
            _ => LoadError::Io(e),
        }
    }
}

fn invalid_run(reason: impl Into<String>) -> LoadError {
    LoadError::Invalid(reason.into())
}

/// Reads and checks a whole run file, rebuilding its Bloom filter and fences.
fn load_run(path: &Path, from: u64, to: u64) -> Result<Run, LoadError> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    if len < HEADER_LEN + CHECKSUM_LEN {
        return Err(invalid_run(format!("{len} bytes, shorter than a header")));
    }
    let mut header = [0u8; HEADER_LEN as usize];
    file.read_exact_at(&mut header, 0)?;
    if header.get(..8) != Some(MAGIC.as_slice()) {
        return Err(invalid_run("bad magic"));
    }
    let field = |at: usize| {
        header
            .get(at..at + 8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_be_bytes)
            .unwrap_or(0)
    };
    let (head_from, head_to, count) = (field(8), field(16), field(24));
    if (head_from, head_to) != (from, to) {
        return Err(invalid_run(format!(
            "header covers [{head_from}, {head_to}), its name [{from}, {to})"
        )));
    }
    if from >= to {
        return Err(invalid_run(format!("empty range [{from}, {to})")));
    }
    let records_end = len - CHECKSUM_LEN;
    let mut hasher = blake3::Hasher::new();
    hasher.update(&header);
    // At most one Bloom bit group per record of the smallest size: never trust `count` to
    // size memory before the records are counted.
    let most = (records_end - HEADER_LEN) / ITEM_HEADER as u64;
    if count > most {
        return Err(invalid_run(format!(
            "{count} records declared in {} bytes",
            records_end - HEADER_LEN
        )));
    }
    let mut bloom = Bloom::new(count);
    let mut fences = Vec::new();
    let mut reader = RecordReader::new(&file, records_end);
    let mut last: Option<Vec<u8>> = None;
    let mut n = 0u64;
    let mut block_start = HEADER_LEN;
    let mut hashed_to = HEADER_LEN;
    loop {
        let offset = reader.offset();
        let Some((key, _, range)) = reader.next_raw()? else {
            break;
        };
        if let Some(bytes) = reader.buf.get(range) {
            hasher.update(bytes);
            hashed_to += bytes.len() as u64;
        }
        if last.as_deref().is_some_and(|last| last >= key.as_slice()) {
            return Err(invalid_run(format!("record {n} is out of key order")));
        }
        if fences.is_empty() || offset - block_start >= BLOCK_BYTES {
            fences.push(Fence {
                key: key.as_slice().into(),
                offset,
            });
            block_start = offset;
        }
        bloom.insert(&key);
        last = Some(key);
        n += 1;
    }
    if n != count || hashed_to != records_end {
        return Err(invalid_run(format!(
            "{n} records found where the header declares {count}"
        )));
    }
    let mut checksum = [0u8; CHECKSUM_LEN as usize];
    file.read_exact_at(&mut checksum, records_end)?;
    if hasher.finalize() != blake3::Hash::from_bytes(checksum) {
        return Err(invalid_run("checksum mismatch"));
    }
    let built = Built {
        file,
        count,
        records_end,
        bloom,
        fences,
    };
    Ok(Run::new(path.to_owned(), from, to, built))
}

// ----- small helpers -----

fn invalid(message: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

fn io_error(path: &Path, what: &'static str) -> impl FnOnce(io::Error) -> StateStoreError {
    let path = path.display().to_string();
    move |source| StateStoreError::Io { path, what, source }
}

fn remove_quietly(path: &Path) {
    if let Err(e) = remove_if_exists(path) {
        tracing::debug!(path = %path.display(), error = %e, "ledger state store: cleanup failed");
    }
}
