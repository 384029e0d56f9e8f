//! What is derived from the log. Three stores, each suited to its keys:
//! - sled holds the ledger state that is per participant, not per entry (keys, identities,
//!   certifications, products) and how far the log has been applied (`m/applied`);
//! - the [`StateStore`] holds the ledger state written for nearly every entry: lot records,
//!   transfer records and the lists of entries (by participant, lot, transfer,
//!   certification, subject, dispute, key history). Millions of these made sled the pace of
//!   ingest and of memory (BENCHMARKS.md); an LSM with a write-ahead log serves them better;
//! - two [`HashIndex`]es map the per-entry hashes to entry indexes: statement id -> index
//!   (the rules' `i` keys, routed here) and leaf hash -> index. Their keys are uniform
//!   hashes, one of each per entry: the write pattern that makes sled's memory grow without
//!   bound, and the one an append-only run index with Bloom filters serves best.
//!
//! SPEC.md sections "Storage" and "Ledger state".
//!
//! # Contract
//! - Never ahead of the log: the sequencer applies a batch only after the log made it durable.
//! - The ledger state (sled and the state store) moves as one: each batch goes into the state
//!   store's write-ahead log first; sled's part of a batch goes in atomically with `m/applied`,
//!   and only after the write-ahead log is synced; sled is flushed before the state store
//!   writes a run (and empties its log). So at open the state store can always be brought
//!   exactly to sled's mark; if it cannot (a damaged file), both are rebuilt from the log.
//! - A batch that writes nothing to sled (most: a harvest's records are all per entry) moves
//!   neither sled's mark nor syncs the write-ahead log, unless the mark is [`MARK_EVERY`] old:
//!   a sync and a sled write per batch were most of the applier's cost. After a crash the
//!   entries past the mark are replayed from the log, as they were before for sled's own
//!   background flush.
//! - Not durable on its own (sled flushes in the background, the hash indexes write runs
//!   every so many entries): after a crash each part may lag the log, and says from where
//!   to replay. Replaying is idempotent.
//! - Safe to read concurrently with the single writer.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{mpsc as std_mpsc, Arc, Condvar, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use fairtrail_client::envelope::StatementId;
use fairtrail_client::merkle::Hash;
use fairtrail_client::rules::{records::prefix, StateError, StateRead};

use crate::hashindex::{HashIndex, HashIndexError, HashIndexStats};
use crate::statestore::{StateStore, StateStoreError, StateStoreStats};

const APPLIED_KEY: &[u8] = b"m/applied";
/// How long sled's applied mark may stay behind the ledger state (batches that write nothing
/// else to sled leave it): what a crash costs in entries to replay, never anything lost.
pub const MARK_EVERY: Duration = Duration::from_millis(250);
/// Which layout the sled tree has. A tree without it (or with another) is rebuilt from the log.
const FORMAT_KEY: &[u8] = b"m/format";
/// 2: statement ids and leaf hashes moved from sled to the hash indexes.
/// 3: lot and transfer records and the entry lists moved from sled to the state store.
const FORMAT: u64 = 3;
/// A rules key `i` + 32-byte statement id: served by the statement-id hash index.
const ID_KEY_LEN: usize = 33;

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("index database: {0}")]
    Sled(#[from] sled::Error),
    #[error("index database holds a malformed value under {key}")]
    Malformed { key: String },
    #[error(transparent)]
    Hash(#[from] HashIndexError),
    #[error(transparent)]
    State(#[from] StateStoreError),
    #[error("index applier: {0}")]
    Applier(String),
}

/// The derived indexes. Cheap to clone: every part is a shared handle.
///
/// Writes reach the stores in two ways: [`Index::apply`] writes them at once (replay at
/// start), and [`Index::apply_later`] hands them to the applier thread, so the sequencer can
/// answer as soon as the log is durable. Until the applier has written a batch, readers see
/// it in the pending list, newest first, before the stores: a receipt's entry can be looked
/// up the moment the receipt is sent.
#[derive(Clone)]
pub struct Index {
    stores: Stores,
    pending: Arc<ArcSwap<Vec<Arc<PendingBatch>>>>,
    applier: Arc<ApplierHandle>,
}

/// The stores themselves.
#[derive(Clone)]
struct Stores {
    db: sled::Db,
    tree: sled::Tree,
    state: StateStore,
    ids: HashIndex,
    leaves: HashIndex,
    /// When sled's applied mark was last moved, and to where.
    mark: Arc<Mutex<Mark>>,
    mark_every: Duration,
}

struct Mark {
    /// Where sled's `m/applied` is.
    at: u64,
    moved: std::time::Instant,
    /// How far the ledger state is written whole: the state store's part and sled's part of
    /// every batch before it. Never ahead of either, so the mark can always move here.
    done: u64,
    /// A batch failed part way: the stores may hold half of it, so the mark stays where it
    /// is (the entries past it are replayed from the log at the next start).
    broken: bool,
}

impl Mark {
    fn new(at: u64) -> Mark {
        Mark {
            at,
            moved: std::time::Instant::now(),
            done: at,
            broken: false,
        }
    }

    fn moved_to(&mut self, at: u64) {
        self.at = at;
        self.moved = std::time::Instant::now();
    }
}

/// One group commit's writes, handed to the applier and not yet in the stores.
struct PendingBatch {
    writes: BTreeMap<Vec<u8>, Vec<u8>>,
    leaves: Vec<(Hash, u64)>,
    applied: u64,
}

/// Batches handed to the applier and not yet written, at most: the sequencer waits beyond.
pub const MAX_PENDING_BATCHES: usize = 8;

/// The sequencer's end of the applier thread. Dropping it (with the last [`Index`]) lets the
/// thread write what is queued and waits for it to end, so that its handles on the stores
/// are gone after (sled itself then releases its file lock from a thread of its own).
struct ApplierHandle {
    queue: Option<std_mpsc::SyncSender<Arc<PendingBatch>>>,
    thread: Option<std::thread::JoinHandle<()>>,
    shared: Arc<ApplierShared>,
}

impl Drop for ApplierHandle {
    fn drop(&mut self) {
        self.queue = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What the applier thread and the index share.
#[derive(Default)]
struct ApplierShared {
    /// Why the applier stopped, if it failed: the index is then frozen at its pending state.
    failure: Mutex<Option<String>>,
    /// Signalled each time a batch is written (or the applier fails).
    progress: Condvar,
}

/// The statement id in a rules key `i` + id, if `key` is one.
fn statement_key(key: &[u8]) -> Option<[u8; 32]> {
    match key.split_first() {
        Some((&p, id)) if p == prefix::STATEMENT && key.len() == ID_KEY_LEN => id.try_into().ok(),
        _ => None,
    }
}

/// Whether a rules key belongs in the state store: written for nearly every entry.
fn in_state_store(key: &[u8]) -> bool {
    matches!(
        key.first(),
        Some(
            &(prefix::LOT
                | prefix::TRANSFER
                | prefix::BY_PARTICIPANT
                | prefix::BY_SUBJECT
                | prefix::BY_CERTIFICATION
                | prefix::BY_LOT
                | prefix::BY_TRANSFER
                | prefix::BY_DISPUTED
                | prefix::KEY_HISTORY)
        )
    )
}

/// Where the other stores of the sled database at `path` live: beside it, `path` + `suffix`.
/// Removes the snapshots sled left unfinished in its directory `path`. sled 0.34 writes a
/// snapshot to `snap.<lsn>.generating`, syncs it and renames it to `snap.<lsn>`; but when it
/// opens, it reads the newest file whose name begins `snap.`, unfinished ones included, and
/// refuses to open when that one fails its checksum (sled issue #1527). A crash while sled
/// writes one, which it does as it opens, left the index unopenable. An unfinished snapshot
/// was never one sled relied on (the previous snapshot is removed only after the rename), so
/// removing it loses nothing: sled recovers from the previous snapshot and its log.
fn remove_unfinished_snapshots(path: &Path) -> Result<(), IndexError> {
    let entries = match std::fs::read_dir(path) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(IndexError::Sled(sled::Error::Io(e))),
    };
    for entry in entries {
        let entry = entry.map_err(|e| IndexError::Sled(sled::Error::Io(e)))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            tracing::warn!(
                file = %entry.path().display(),
                "removing an unfinished index snapshot left by a crash"
            );
            std::fs::remove_file(entry.path()).map_err(|e| IndexError::Sled(sled::Error::Io(e)))?;
        }
    }
    Ok(())
}

fn beside(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

fn decode_u64(value: &[u8], what: &str) -> Result<u64, IndexError> {
    let bytes: [u8; 8] = value.try_into().map_err(|_| IndexError::Malformed {
        key: what.to_owned(),
    })?;
    Ok(u64::from_be_bytes(bytes))
}

/// Megabytes of sled's page cache, unless configured: an upper bound on what the ledger
/// state left in sled (participants, keys, certifications, products) may keep in memory.
/// The per-entry state, which once needed a large cache, is in the state store.
pub const DEFAULT_CACHE_MB: u64 = 64;

/// How an index is opened; `Default` is the node's defaults.
#[derive(Debug, Clone, Copy)]
pub struct IndexOptions {
    /// Megabytes of sled's page cache.
    pub cache_mb: u64,
    /// Entries a hash index holds in memory before it writes them out as a run.
    pub hash_run_entries: usize,
    /// Bytes of records the state store holds in memory before it writes them out as a run.
    pub state_run_bytes: usize,
    /// How long sled's applied mark may stay behind ([`MARK_EVERY`]).
    pub mark_every: Duration,
}

impl Default for IndexOptions {
    fn default() -> Self {
        IndexOptions {
            cache_mb: DEFAULT_CACHE_MB,
            hash_run_entries: crate::hashindex::DEFAULT_FLUSH_EVERY,
            state_run_bytes: crate::statestore::DEFAULT_RUN_BYTES,
            mark_every: MARK_EVERY,
        }
    }
}

impl Index {
    /// Opens the index at `path` with the default options.
    pub fn open(path: &Path) -> Result<Self, IndexError> {
        Self::open_with(path, IndexOptions::default())
    }

    /// The directories of the index at `path`: sled's, the state store's and the hash
    /// indexes'.
    pub fn directories(path: &Path) -> [PathBuf; 3] {
        [
            path.to_owned(),
            beside(path, "-state"),
            beside(path, "-hashes"),
        ]
    }

    /// Opens the index at `path` (sled there, the hash indexes beside it).
    pub fn open_with(path: &Path, options: IndexOptions) -> Result<Self, IndexError> {
        remove_unfinished_snapshots(path)?;
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(options.cache_mb.saturating_mul(1024 * 1024))
            .open()?;
        let tree = db.open_tree("index")?;
        let applied = sled_applied(&tree)?;
        let [_, state, hashes] = Self::directories(path);
        let stores = Stores {
            state: StateStore::open(&state, applied, options.state_run_bytes)?,
            db,
            tree,
            ids: HashIndex::open_with(&hashes, "ids", options.hash_run_entries)?,
            leaves: HashIndex::open_with(&hashes, "leaves", options.hash_run_entries)?,
            mark: Arc::new(Mutex::new(Mark::new(applied))),
            mark_every: options.mark_every,
        };
        let format = match stores.tree.get(FORMAT_KEY)? {
            Some(v) => Some(decode_u64(&v, "format")?),
            None => None,
        };
        if format != Some(FORMAT) {
            if format.is_some() || !stores.tree.is_empty() {
                tracing::warn!(
                    ?format,
                    "the index has an older layout; rebuilding it from the log"
                );
            }
            stores.clear_state()?;
            stores.clear_hashes()?;
        } else if stores.state.applied() != applied {
            tracing::warn!(
                sled = applied,
                state_store = stores.state.applied(),
                "the ledger state store cannot be brought to sled's mark; rebuilding the ledger state from the log"
            );
            stores.clear_state()?;
        }
        let pending = Arc::new(ArcSwap::from_pointee(Vec::new()));
        let applier = start_applier(stores.clone(), pending.clone())
            .map_err(|e| IndexError::Applier(format!("cannot start the applier thread: {e}")))?;
        Ok(Index {
            stores,
            pending,
            applier: Arc::new(applier),
        })
    }

    /// How many log entries the ledger state (sled and the state store) reflects, written
    /// whole; not necessarily durable: sled's durable mark may lag it (it catches up by
    /// [`Index::flush`]), and after a crash the index reopens at that mark.
    pub fn applied(&self) -> Result<u64, IndexError> {
        Ok(self.stores.lock_mark()?.done)
    }

    /// How many log entries the statement-id and leaf-hash indexes reflect: each may lag
    /// the ledger state after a crash, or lead it.
    pub fn hashes_applied(&self) -> (u64, u64) {
        (self.stores.ids.applied(), self.stores.leaves.applied())
    }

    pub fn index_of_statement(&self, id: &StatementId) -> Result<Option<u64>, IndexError> {
        let key = records_key(prefix::STATEMENT, id.as_bytes());
        for batch in self.pending.load().iter().rev() {
            if let Some(v) = batch.writes.get(&key) {
                return decode_u64(v, "statement id").map(Some);
            }
        }
        Ok(self.stores.ids.get(id.as_bytes())?)
    }

    pub fn index_of_leaf(&self, leaf_hash: &Hash) -> Result<Option<u64>, IndexError> {
        for batch in self.pending.load().iter().rev() {
            if let Some((_, i)) = batch.leaves.iter().find(|(h, _)| h == leaf_hash) {
                return Ok(Some(*i));
            }
        }
        Ok(self.stores.leaves.get(leaf_hash)?)
    }

    /// Records the rules' `writes` and the `leaves` (leaf hash, index) of new entries, and
    /// moves the applied marks to `applied`, now (after whatever is pending: batches are
    /// written in order).
    pub fn apply(
        &self,
        writes: BTreeMap<Vec<u8>, Vec<u8>>,
        leaves: &[(Hash, u64)],
        applied: u64,
    ) -> Result<(), IndexError> {
        self.wait_applied()?;
        self.stores.apply(&writes, leaves, applied)
    }

    /// Hands the same to the applier thread and returns at once, unless
    /// [`MAX_PENDING_BATCHES`] are already waiting (then it waits for room). Readers see the
    /// writes from now on. Fails if the applier has failed: the stores cannot follow the log.
    pub fn apply_later(
        &self,
        writes: BTreeMap<Vec<u8>, Vec<u8>>,
        leaves: Vec<(Hash, u64)>,
        applied: u64,
    ) -> Result<(), IndexError> {
        self.check_applier()?;
        let batch = Arc::new(PendingBatch {
            writes,
            leaves,
            applied,
        });
        self.pending.rcu(|list| {
            let mut list = Vec::clone(list);
            list.push(batch.clone());
            list
        });
        let stopped = || IndexError::Applier("the applier thread has stopped".into());
        let queue = self.applier.queue.as_ref().ok_or_else(stopped)?;
        queue.send(batch).map_err(|_| stopped())
    }

    /// Fails if the applier thread has failed: the sequencer asks before it writes a batch,
    /// so that a batch is not made durable only to be refused.
    pub fn check_applier(&self) -> Result<(), IndexError> {
        match self.applier.shared.failure.lock() {
            Ok(failure) => match failure.as_ref() {
                Some(reason) => Err(IndexError::Applier(reason.clone())),
                None => Ok(()),
            },
            Err(_) => Err(IndexError::Applier("the applier state is poisoned".into())),
        }
    }

    /// Waits until the applier has written every pending batch.
    pub fn wait_applied(&self) -> Result<(), IndexError> {
        let shared = &self.applier.shared;
        let mut failure = shared
            .failure
            .lock()
            .map_err(|_| IndexError::Applier("the applier state is poisoned".into()))?;
        loop {
            if let Some(reason) = failure.as_ref() {
                return Err(IndexError::Applier(reason.clone()));
            }
            if self.pending.load().is_empty() {
                return Ok(());
            }
            // A timeout, not only the signal: a wake-up between the check and the wait is
            // then late, never lost.
            failure = shared
                .progress
                .wait_timeout(failure, Duration::from_millis(10))
                .map_err(|_| IndexError::Applier("the applier state is poisoned".into()))?
                .0;
        }
    }

    /// Brings the hash indexes to `applied` with entries (statement id, leaf hash, index)
    /// read back from the log: replay after a crash. Entries they already hold are skipped.
    pub fn apply_hashes(
        &self,
        entries: &[(StatementId, Hash, u64)],
        applied: u64,
    ) -> Result<(), IndexError> {
        let ids: Vec<([u8; 32], u64)> = entries
            .iter()
            .map(|(id, _, i)| (*id.as_bytes(), *i))
            .collect();
        let leaves: Vec<(Hash, u64)> = entries.iter().map(|(_, h, i)| (*h, *i)).collect();
        self.stores.ids.insert(&ids, applied)?;
        self.stores.leaves.insert(&leaves, applied)?;
        Ok(())
    }

    /// The hash indexes' sizes and memory, for metrics and benchmarks.
    pub fn hash_stats(&self) -> [HashIndexStats; 2] {
        [self.stores.ids.stats(), self.stores.leaves.stats()]
    }

    /// The state store's sizes and memory, for metrics and benchmarks.
    pub fn state_stats(&self) -> StateStoreStats {
        self.stores.state.stats()
    }

    /// The entry indexes listed under `prefix` (keys ending with an 8-byte big-endian index),
    /// ascending.
    pub fn list(&self, prefix: &[u8]) -> Result<Vec<u64>, IndexError> {
        // The pending list first: a batch the applier writes and drops from it while sled is
        // scanned is then still seen, in one place or the other (or both).
        let pending = self.pending.load_full();
        let mut out = Vec::new();
        if in_state_store(prefix) {
            for (key, _) in self.stores.state.scan_prefix(prefix)? {
                out.push(list_index(&key)?);
            }
        } else {
            for item in self.stores.tree.scan_prefix(prefix).keys() {
                out.push(list_index(&item?)?);
            }
        }
        if !pending.is_empty() {
            for batch in pending.iter() {
                let keys = batch.writes.range(prefix.to_vec()..);
                for (k, _) in keys.take_while(|(k, _)| k.starts_with(prefix)) {
                    out.push(list_index(k)?);
                }
            }
            out.sort_unstable();
            out.dedup();
        }
        Ok(out)
    }

    /// Forgets everything.
    pub fn clear(&self) -> Result<(), IndexError> {
        self.wait_applied()?;
        self.stores.clear_state()?;
        self.stores.clear_hashes()
    }

    /// Forgets the ledger state only: used when it is found ahead of the log.
    pub fn clear_state(&self) -> Result<(), IndexError> {
        self.wait_applied()?;
        self.stores.clear_state()
    }

    /// Forgets the hash indexes only: used when they are found ahead of the log.
    pub fn clear_hashes(&self) -> Result<(), IndexError> {
        self.wait_applied()?;
        self.stores.clear_hashes()
    }

    /// Writes every pending batch, then the stores to disk (they also do so in the
    /// background).
    pub fn flush(&self) -> Result<(), IndexError> {
        self.wait_applied()?;
        self.stores.move_mark()?;
        self.stores.db.flush()?;
        self.stores.ids.flush()?;
        self.stores.leaves.flush()?;
        Ok(())
    }
}

/// The entry index at the end of a list key.
fn list_index(key: &[u8]) -> Result<u64, IndexError> {
    decode_u64(
        key.get(key.len().saturating_sub(8)..).unwrap_or(&[]),
        "list index",
    )
}

fn sled_applied(tree: &sled::Tree) -> Result<u64, IndexError> {
    match tree.get(APPLIED_KEY)? {
        Some(v) => decode_u64(&v, "applied"),
        None => Ok(0),
    }
}

fn records_key(prefix: u8, bytes: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + bytes.len());
    k.push(prefix);
    k.extend_from_slice(bytes);
    k
}

impl Stores {
    /// Writes one batch: the state store's part durably, then the sled part atomically with
    /// its applied mark, then the hashes (see the module's contract for why in this order).
    fn apply(
        &self,
        writes: &BTreeMap<Vec<u8>, Vec<u8>>,
        leaves: &[(Hash, u64)],
        applied: u64,
    ) -> Result<(), IndexError> {
        let mut batch = sled::Batch::default();
        let mut in_sled = false;
        let mut ids = Vec::new();
        let mut state = Vec::new();
        for (k, v) in writes {
            if let Some(id) = statement_key(k) {
                ids.push((id, decode_u64(v, "statement id")?));
            } else if in_state_store(k) {
                state.push((k.as_slice(), v.as_slice()));
            } else {
                batch.insert(k.as_slice(), v.as_slice());
                in_sled = true;
            }
        }
        {
            // Held throughout, so the mark never moves over a batch half written.
            let mut mark = self.lock_mark()?;
            if mark.broken {
                return Err(IndexError::Applier(
                    "an earlier batch failed part way; restart the node to replay it".into(),
                ));
            }
            let written = self.apply_ledger_state(&mut mark, state, batch, in_sled, applied);
            if written.is_err() {
                mark.broken = true;
            }
            written?;
        }
        self.ids.insert(&ids, applied)?;
        self.leaves.insert(leaves, applied)?;
        Ok(())
    }

    /// The ledger-state part of [`Stores::apply`]: the state store's records, then (when due)
    /// sled's part with the mark, after the state store's log is synced.
    fn apply_ledger_state(
        &self,
        mark: &mut Mark,
        state: Vec<(&[u8], &[u8])>,
        batch: sled::Batch,
        in_sled: bool,
        applied: u64,
    ) -> Result<(), IndexError> {
        self.state.apply(state, applied)?;
        let flush = self.state.wants_flush();
        if in_sled || flush || mark.moved.elapsed() >= self.mark_every {
            self.write_mark(mark, batch, applied)?;
        }
        if flush {
            // The state store's write-ahead log is emptied by its flush: sled must hold
            // everything up to here durably before.
            self.db.flush()?;
            self.state.flush()?;
        }
        mark.done = mark.done.max(applied);
        Ok(())
    }

    /// Writes `batch` (sled's part of the ledger state) with the mark moved to `at`, once the
    /// state store holds the same durably.
    fn write_mark(
        &self,
        mark: &mut Mark,
        mut batch: sled::Batch,
        at: u64,
    ) -> Result<(), IndexError> {
        self.state.sync()?;
        batch.insert(APPLIED_KEY, &at.to_be_bytes());
        self.tree.apply_batch(batch)?;
        mark.moved_to(at);
        Ok(())
    }

    fn lock_mark(&self) -> Result<std::sync::MutexGuard<'_, Mark>, IndexError> {
        self.mark
            .lock()
            .map_err(|_| IndexError::Applier("the applied mark is poisoned".into()))
    }

    /// Moves sled's mark to where the ledger state is written whole (the write-ahead log
    /// synced first). Not after a batch failed part way: the mark then stays, and the next
    /// start replays from it.
    fn move_mark(&self) -> Result<(), IndexError> {
        let mut mark = self.lock_mark()?;
        if mark.broken || mark.at == mark.done {
            return Ok(());
        }
        let done = mark.done;
        let moved = self.write_mark(&mut mark, sled::Batch::default(), done);
        if moved.is_err() {
            mark.broken = true;
        }
        moved
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, IndexError> {
        if let Some(id) = statement_key(key) {
            Ok(self.ids.get(&id)?.map(|i| i.to_be_bytes().to_vec()))
        } else if in_state_store(key) {
            Ok(self.state.get(key)?)
        } else {
            Ok(self.tree.get(key)?.map(|v| v.to_vec()))
        }
    }

    /// Forgets the ledger state: the state store first, so that a crash in between leaves
    /// sled ahead of it (rebuilt at open), never the other way round unnoticed.
    fn clear_state(&self) -> Result<(), IndexError> {
        let mut mark = self.lock_mark()?;
        self.state.clear()?;
        self.tree.clear()?;
        self.tree.insert(FORMAT_KEY, &FORMAT.to_be_bytes())?;
        *mark = Mark::new(0);
        // Durably, before anything new reaches the state store's write-ahead log.
        self.db.flush()?;
        Ok(())
    }

    fn clear_hashes(&self) -> Result<(), IndexError> {
        self.ids.clear()?;
        self.leaves.clear()?;
        Ok(())
    }
}

/// Starts the thread that writes pending batches to the stores, in order. It ends when the
/// last [`Index`] handle is dropped, after writing what was queued.
fn start_applier(
    stores: Stores,
    pending: Arc<ArcSwap<Vec<Arc<PendingBatch>>>>,
) -> std::io::Result<ApplierHandle> {
    let (queue, batches) = std_mpsc::sync_channel::<Arc<PendingBatch>>(MAX_PENDING_BATCHES);
    let shared = Arc::new(ApplierShared::default());
    let thread_shared = shared.clone();
    let thread = std::thread::Builder::new()
        .name("index-applier".into())
        .spawn(move || {
            while let Ok(first) = batches.recv() {
                // Whatever else is queued goes with it: one write-ahead sync and one sled
                // batch for all, when the applier has fallen behind.
                let mut group = vec![first];
                while group.len() < MAX_PENDING_BATCHES {
                    match batches.try_recv() {
                        Ok(batch) => group.push(batch),
                        Err(_) => break,
                    }
                }
                // A panic must not leave the batches pending for ever with nobody told: it
                // is a failure like any other.
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    apply_group(&stores, &group)
                }))
                .unwrap_or_else(|_| Err(IndexError::Applier("writing the index panicked".into())));
                let Ok(mut failure) = thread_shared.failure.lock() else {
                    return;
                };
                match result {
                    Ok(()) => {
                        pending.rcu(|list| {
                            list.iter()
                                .filter(|b| !group.iter().any(|done| Arc::ptr_eq(b, done)))
                                .cloned()
                                .collect::<Vec<_>>()
                        });
                    }
                    Err(e) => {
                        // The batches stay pending, so readers still see them; the sequencer
                        // learns of the failure before its next commit (or within a second,
                        // idle) and stops the node. The failure is recorded under the lock
                        // taken above, before the line is logged: whoever reads the line
                        // finds the failure at `check_applier` (a crash test relies on it).
                        tracing::error!(error = %e, "writing the index failed");
                        *failure = Some(format!("writing the index failed: {e}"));
                        thread_shared.progress.notify_all();
                        return;
                    }
                }
                drop(failure);
                thread_shared.progress.notify_all();
            }
            // The last handle is gone: bring sled's mark level, so a restart replays nothing.
            if let Err(e) = stores.move_mark() {
                tracing::warn!(error = %e, "moving the index's applied mark at shutdown failed; entries past it are replayed at the next start");
            }
        })?;
    Ok(ApplierHandle {
        queue: Some(queue),
        thread: Some(thread),
        shared,
    })
}

/// Writes consecutive batches as one: later writes of a key win, as they would one by one.
fn apply_group(stores: &Stores, group: &[Arc<PendingBatch>]) -> Result<(), IndexError> {
    match group {
        [] => Ok(()),
        [one] => stores.apply(&one.writes, &one.leaves, one.applied),
        [.., last] => {
            let mut writes = BTreeMap::new();
            let mut leaves = Vec::new();
            for batch in group {
                writes.extend(batch.writes.iter().map(|(k, v)| (k.clone(), v.clone())));
                leaves.extend_from_slice(&batch.leaves);
            }
            stores.apply(&writes, &leaves, last.applied)
        }
    }
}

impl StateRead for Index {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        for batch in self.pending.load().iter().rev() {
            if let Some(v) = batch.writes.get(key) {
                return Ok(Some(v.clone()));
            }
        }
        self.stores.get(key).map_err(|e| StateError(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> StatementId {
        StatementId::of_payload(&[n])
    }

    fn id_key(id: &StatementId) -> Vec<u8> {
        records_key(prefix::STATEMENT, id.as_bytes())
    }

    fn list_key(subject: u8, index: u64) -> Vec<u8> {
        let mut k = vec![prefix::BY_PARTICIPANT, subject];
        k.extend_from_slice(&index.to_be_bytes());
        k
    }

    /// A batch's rules writes and leaves.
    type Batch = (BTreeMap<Vec<u8>, Vec<u8>>, Vec<(Hash, u64)>);

    /// The writes of one batch: a statement id, a record and a list entry per index.
    fn batch(indexes: std::ops::Range<u64>) -> Batch {
        let mut writes = BTreeMap::new();
        let mut leaves = Vec::new();
        for i in indexes {
            writes.insert(id_key(&id(i as u8)), i.to_be_bytes().to_vec());
            writes.insert(vec![b'L', i as u8], format!("lot {i}").into_bytes());
            writes.insert(list_key(7, i), Vec::new());
            leaves.push(([i as u8; 32], i));
        }
        (writes, leaves)
    }

    #[test]
    fn pending_writes_are_read_before_and_after_the_applier_writes_them() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let index = Index::open(&dir.path().join("index")).expect("the index opens");
        let (writes, leaves) = batch(0..3);
        index.apply(writes, &leaves, 3).expect("applied now");
        let (writes, leaves) = batch(3..6);
        index.apply_later(writes, leaves, 6).expect("handed over");

        let read = |index: &Index| {
            (
                index.index_of_statement(&id(4)).expect("a lookup"),
                index.index_of_leaf(&[5; 32]).expect("a lookup"),
                StateRead::get(index, &[b'L', 4]).expect("a read"),
                index.list(&[prefix::BY_PARTICIPANT, 7]).expect("a list"),
            )
        };
        let expected = (
            Some(4),
            Some(5),
            Some(b"lot 4".to_vec()),
            vec![0, 1, 2, 3, 4, 5],
        );
        // Whether or not the applier has got to it yet, the batch is visible...
        assert_eq!(read(&index), expected);
        index.wait_applied().expect("the applier catches up");
        // ...and after, from the stores.
        assert_eq!(read(&index), expected);
        assert_eq!(index.applied().expect("the mark"), 6);
        assert_eq!(index.hashes_applied(), (6, 6));
        assert_eq!(index.index_of_statement(&id(9)).expect("a lookup"), None);
    }

    /// Opens the index at `path` again. sled releases its file lock from a background
    /// thread after the last handle is dropped, so a reopen may find it still held for a
    /// moment (sled issues #1234, #1289): retry briefly.
    /// A closed index, in a temporary directory, that holds the batch of entries `0..n`.
    fn closed_index_of(n: u64) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("index");
        let index = Index::open(&path).expect("the index opens");
        let (writes, leaves) = batch(0..n);
        index.apply_later(writes, leaves, n).expect("handed over");
        index.flush().expect("flushed");
        (dir, path)
    }

    fn reopen(path: &Path) -> Index {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            match Index::open(path) {
                Ok(index) => return index,
                Err(IndexError::Sled(sled::Error::Io(e)))
                    if e.kind() == std::io::ErrorKind::Other
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("the index reopens: {e}"),
            }
        }
    }

    #[test]
    fn a_list_never_misses_a_batch_handed_over_before_it() {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        let dir = tempfile::tempdir().expect("a temporary directory");
        let index = Index::open(&dir.path().join("index")).expect("the index opens");
        // A long list already in sled, so that each scan takes long enough for the applier
        // to write batches meanwhile.
        const STORED: u64 = 40_000;
        let (writes, leaves) = batch(0..STORED);
        index.apply(writes, &leaves, STORED).expect("applied now");
        let handed = Arc::new(AtomicU64::new(STORED));
        let done = Arc::new(AtomicBool::new(false));
        let reader = std::thread::spawn({
            let (index, handed, done) = (index.clone(), handed.clone(), done.clone());
            move || {
                let mut lists = 0u64;
                while !done.load(Ordering::Acquire) {
                    let before = handed.load(Ordering::Acquire);
                    let listed = index.list(&[prefix::BY_PARTICIPANT, 7]).expect("a list");
                    assert!(
                        listed.len() as u64 >= before,
                        "{} listed, {before} handed over before the call",
                        listed.len()
                    );
                    lists += 1;
                }
                lists
            }
        });
        for b in 0..400u64 {
            let from = STORED + b * 4;
            let (writes, leaves) = batch(from..from + 4);
            index
                .apply_later(writes, leaves, from + 4)
                .expect("handed over");
            handed.store(from + 4, Ordering::Release);
        }
        index.wait_applied().expect("the applier catches up");
        done.store(true, Ordering::Release);
        let lists = reader.join().expect("the reader never saw a batch missing");
        assert!(lists > 0);
    }

    #[test]
    fn statement_ids_live_in_the_hash_index_not_in_sled() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("index");
        {
            let index = Index::open(&path).expect("the index opens");
            let (writes, leaves) = batch(0..4);
            index.apply_later(writes, leaves, 4).expect("handed over");
            index.flush().expect("flushed");
            assert_eq!(
                index.stores.tree.get(id_key(&id(2))).expect("a sled read"),
                None
            );
            assert_eq!(
                StateRead::get(&index, &id_key(&id(2))).expect("a read"),
                Some(2u64.to_be_bytes().to_vec())
            );
        }
        let index = reopen(&path);
        assert_eq!(index.hashes_applied(), (4, 4));
        assert_eq!(index.index_of_statement(&id(3)).expect("a lookup"), Some(3));
        assert_eq!(index.index_of_leaf(&[1; 32]).expect("a lookup"), Some(1));
    }

    #[test]
    fn batches_written_as_one_group_read_as_if_written_one_by_one() {
        let dirs = [(); 2].map(|()| tempfile::tempdir().expect("a temporary directory"));
        let [grouped, single] =
            [0, 1].map(|i| Index::open(&dirs[i].path().join("index")).expect("the index opens"));
        let make = |range: std::ops::Range<u64>, lot: &str| {
            let (mut writes, leaves) = batch(range.clone());
            writes.insert(vec![b'L', 200], lot.as_bytes().to_vec());
            Arc::new(PendingBatch {
                writes,
                leaves,
                applied: range.end,
            })
        };
        let group = [
            make(0..3, "first"),
            make(3..6, "second"),
            make(6..7, "third"),
        ];
        apply_group(&grouped.stores, &group).expect("written as one");
        for b in &group {
            single
                .stores
                .apply(&b.writes, &b.leaves, b.applied)
                .expect("written alone");
        }
        for index in [&grouped, &single] {
            assert_eq!(index.applied().expect("the mark"), 7);
            assert_eq!(index.hashes_applied(), (7, 7));
            assert_eq!(index.stores.state.applied(), 7);
            assert_eq!(
                StateRead::get(index, &[b'L', 200]).expect("a read"),
                Some(b"third".to_vec())
            );
            assert_eq!(
                index.list(&[prefix::BY_PARTICIPANT, 7]).expect("a list"),
                (0..7).collect::<Vec<u64>>()
            );
            assert_eq!(index.index_of_statement(&id(5)).expect("a lookup"), Some(5));
        }
    }

    #[test]
    fn sled_and_the_state_store_reopen_together_or_are_rebuilt_together() {
        let (_dir, path) = closed_index_of(5);
        {
            let index = reopen(&path);
            assert_eq!(index.applied().expect("the mark"), 5);
            assert_eq!(
                StateRead::get(&index, &[b'L', 3]).expect("a read"),
                Some(b"lot 3".to_vec())
            );
            assert_eq!(
                index.list(&[prefix::BY_PARTICIPANT, 7]).expect("a list"),
                vec![0, 1, 2, 3, 4]
            );
        }
        // The state store's write-ahead log lost: it cannot follow sled's mark, so the whole
        // ledger state starts again from 0 (the node then replays the log).
        std::fs::write(beside(&path, "-state").join("state.wal"), b"").expect("emptied");
        let index = reopen(&path);
        assert_eq!(index.applied().expect("the mark"), 0);
        assert_eq!(StateRead::get(&index, &[b'L', 3]).expect("a read"), None);
        assert_eq!(
            index.list(&[prefix::BY_PARTICIPANT, 7]).expect("a list"),
            Vec::<u64>::new()
        );
    }

    /// A snapshot sled left unfinished (a crash while it wrote one, as it does when it opens)
    /// no longer stops the index from opening: it is removed, and the index opens with what
    /// it held.
    #[test]
    fn an_unfinished_sled_snapshot_does_not_stop_the_index_from_opening() {
        let (_dir, path) = closed_index_of(5);
        // What a crash during its write leaves: the newest `snap.` file, empty or torn.
        let unfinished = path.join("snap.FFFFFFFFFFFFFFFF.generating");
        std::fs::write(&unfinished, b"torn").expect("written");
        let opened = sled::Config::new().path(&path).open();
        assert!(
            opened.is_err(),
            "sled itself opens past an unfinished snapshot: this workaround can go"
        );
        drop(opened);
        let index = reopen(&path);
        assert!(!unfinished.exists());
        assert_eq!(index.applied().expect("the mark"), 5);
        assert_eq!(
            StateRead::get(&index, &[b'L', 3]).expect("a read"),
            Some(b"lot 3".to_vec())
        );
    }

    /// Options under which sled's mark moves only with sled writes and at flush.
    fn no_timed_mark() -> IndexOptions {
        IndexOptions {
            mark_every: Duration::from_secs(3600),
            ..IndexOptions::default()
        }
    }

    /// The batch with a participant record too (a sled write).
    fn with_participant((mut writes, leaves): Batch) -> Batch {
        writes.insert(vec![prefix::IDENTITY, 9], b"participant".to_vec());
        (writes, leaves)
    }

    /// sled's mark as stored (not the ledger state's own, which [`Index::applied`] gives).
    fn sled_mark(index: &Index) -> u64 {
        sled_applied(&index.stores.tree).expect("the mark")
    }

    #[test]
    fn sleds_mark_moves_with_sled_writes_and_at_flush_and_the_state_store_is_durable_to_it() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("index");
        {
            let index = Index::open_with(&path, no_timed_mark()).expect("the index opens");
            // Only per-entry records (the state store, the hash indexes): the mark stays.
            let (writes, leaves) = batch(0..4);
            index.apply_later(writes, leaves, 4).expect("handed over");
            index.wait_applied().expect("applied");
            assert_eq!(index.applied().expect("the mark"), 4);
            assert_eq!(sled_mark(&index), 0);
            // A participant record (sled) goes in with its mark, the write-ahead log synced
            // before.
            let (writes, leaves) = with_participant(batch(4..6));
            index.apply_later(writes, leaves, 6).expect("handed over");
            index.wait_applied().expect("applied");
            assert_eq!(sled_mark(&index), 6);
            let (writes, leaves) = batch(6..9);
            index.apply_later(writes, leaves, 9).expect("handed over");
            index.wait_applied().expect("applied");
            assert_eq!(sled_mark(&index), 6);
            index.flush().expect("flushed");
            assert_eq!(sled_mark(&index), 9);
        }
        let index = Index::open_with(&path, no_timed_mark()).expect("the index reopens");
        assert_eq!(index.applied().expect("the mark"), 9);
        assert_eq!(
            index.list(&[prefix::BY_PARTICIPANT, 7]).expect("a list"),
            (0..9).collect::<Vec<u64>>()
        );
    }

    #[test]
    fn a_mark_left_behind_reopens_at_the_mark_for_the_log_to_replay() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("index");
        {
            let index = Index::open_with(&path, no_timed_mark()).expect("the index opens");
            let (writes, leaves) = with_participant(batch(0..3));
            index.apply_later(writes, leaves, 3).expect("handed over");
            // Written alone, not grouped with the next batch.
            index.wait_applied().expect("applied");
            let (writes, leaves) = batch(3..8);
            index.apply_later(writes, leaves, 8).expect("handed over");
            index.wait_applied().expect("applied");
            assert_eq!(sled_mark(&index), 3);
            // As at a crash: sled durable as it is, the mark at 3 (no flush of the index,
            // which would move it).
            index.stores.db.flush().expect("sled flushed");
            let mut mark = index.stores.lock_mark().expect("the mark");
            mark.at = 8; // the applier's last act, moving the mark, is then a no-op
        }
        let index = Index::open_with(&path, no_timed_mark()).expect("the index reopens");
        // The state store is cut to sled's mark; the log replays the rest.
        assert_eq!(index.applied().expect("the mark"), 3);
        assert_eq!(
            index.list(&[prefix::BY_PARTICIPANT, 7]).expect("a list"),
            vec![0, 1, 2]
        );
        assert_eq!(
            StateRead::get(&index, &[prefix::IDENTITY, 9]).expect("a read"),
            Some(b"participant".to_vec())
        );
    }

    #[test]
    fn after_a_batch_fails_part_way_the_mark_stays_where_it_was() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("index");
        {
            let index = Index::open_with(&path, no_timed_mark()).expect("the index opens");
            let (writes, leaves) = with_participant(batch(0..3));
            index.apply(writes, &leaves, 3).expect("applied");
            let (writes, leaves) = batch(3..5);
            index.apply(writes, &leaves, 5).expect("applied");
            assert_eq!(
                (sled_mark(&index), index.applied().expect("the mark")),
                (3, 5)
            );
            // A record the state store cannot hold (its keys are at most 65,535 bytes).
            let (mut writes, leaves) = batch(5..7);
            writes.insert(vec![prefix::LOT; 70_000], Vec::new());
            assert!(index.apply(writes, &leaves, 7).is_err());
            let (writes, leaves) = batch(7..9);
            assert!(
                index.apply(writes, &leaves, 9).is_err(),
                "nothing more is written over a failed batch"
            );
            // Shutting down does not move the mark over it.
            let _ = index.flush();
            assert_eq!(sled_mark(&index), 3);
        }
        let index = Index::open_with(&path, no_timed_mark()).expect("the index reopens");
        assert_eq!(index.applied().expect("the mark"), 3);
        assert_eq!(
            index.list(&[prefix::BY_PARTICIPANT, 7]).expect("a list"),
            vec![0, 1, 2]
        );
    }

    #[test]
    fn an_index_of_the_old_layout_is_cleared_for_a_rebuild() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("index");
        {
            let db = sled::open(&path).expect("sled opens");
            let tree = db.open_tree("index").expect("the tree opens");
            tree.insert(APPLIED_KEY, &9u64.to_be_bytes())
                .expect("a write");
            tree.insert(id_key(&id(1)), &1u64.to_be_bytes())
                .expect("a write");
            db.flush().expect("flushed");
        }
        let index = reopen(&path);
        assert_eq!(index.applied().expect("the mark"), 0);
        assert_eq!(index.index_of_statement(&id(1)).expect("a lookup"), None);
    }
}
