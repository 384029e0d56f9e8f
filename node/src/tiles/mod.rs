//! The log itself on disk: leaves, tree hashes and the signed checkpoint, laid out as C2SP
//! `tlog-tiles` (but for partial hash tiles, which are derived and held in memory, never
//! stored) and made durable with fdatasync at every group commit. SPEC.md section "Storage".
//!
//! # Contract
//! - [`TileWriter::append`] writes every new tile and entry bundle (not yet synced) and
//!   returns the new root; [`TileWriter::prepare`] closes the batch with its signed
//!   checkpoint as a [`PreparedCommit`], whose `make_durable` writes the checkpoint to a
//!   temporary file, syncs it with every file and directory the batch wrote, all at once
//!   (file data fdatasync'ed, new directory entries fsync'ed), swaps it into place and fsyncs
//!   its directory; only its `publish` shows readers the new tree (the sequencer hands the
//!   batch's index writes over in between; [`TileWriter::commit`] does all three at once).
//!   An error is fatal to the writer: the caller must stop sequencing and reopen, since the
//!   disk may be ahead of the checkpoint.
//! - The checkpoint file is the commit point. At [`TileStore::open`] everything beyond the
//!   checkpoint's size is deleted, the right edge is rebuilt from the partial bundle and the
//!   full tiles below each level's edge, and the root it gives must equal the signed root, so
//!   a torn write can never become part of the tree.
//! - Readers ([`TileStore`]) are safe to use concurrently with the writer: they see the last
//!   published [`Snapshot`]. Every full tile read from disk is checked against its parent
//!   hash, and every entry bundle against its leaf hashes, so corruption on disk is reported,
//!   never served.
//! - Appends, inclusion proofs and consistency proofs cost O(log n) tile reads; nothing
//!   rebuilds the tree, and opening reads only what the right edge is derived from (at most
//!   255 full tiles per level).

pub mod paths;
pub mod tree;

use std::collections::BTreeSet;
use std::fs;
use std::io::{ErrorKind, Write};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use bytes::Bytes;
use fairtrail_client::checkpoint::SignedCheckpoint;
use fairtrail_client::merkle::{self, leaf_hash, Hash, ProveError, SubtreeSource};
use fairtrail_client::note::NoteVerifier;
use lru::LruCache;

use paths::{partial_dir, tile_path, TileKind};
use tree::{TileTree, TILE_WIDTH};

/// The name of the checkpoint file in the log directory.
pub const CHECKPOINT_FILE: &str = "checkpoint";
/// Where the next checkpoint is written before it takes the place of [`CHECKPOINT_FILE`].
const CHECKPOINT_TMP: &str = "checkpoint.tmp";
/// The file holding the edge's partial bundle in its `<N>.p/` directory, appended to by
/// each commit that widens it (10.2): a bundle's partial versions are not written one file
/// each.
pub const TAIL: &str = "tail";
/// Levels of 8 tree levels each: 8 of them cover 2^64 leaves.
const MAX_TILE_LEVELS: usize = 8;
/// Where superseded partial tiles wait to be reused as new files (under the log's directory,
/// outside `tile/`, so never served).
const SPARE_DIR: &str = "spare";
/// Spare files kept at most; beyond, superseded partial tiles are deleted.
const MAX_SPARES: usize = 256;
/// Under `log/`: emptied directories of partial tiles, kept to be renamed into place as new
/// directories (10.3).
const SPARE_DIRS_DIR: &str = "spare-dirs";
/// Spare directories kept at most.
const MAX_SPARE_DIRS: usize = 64;
/// Full bundles before the edge whose partial directory is looked for at open (one left by
/// a crash before the spare maker emptied it).
const LEFTOVERS_CHECKED: u64 = 8;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("i/o error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the log on disk is corrupt: {path}: {what}")]
    Corrupt { path: PathBuf, what: String },
    #[error("the checkpoint on disk does not verify: {0}")]
    Checkpoint(#[source] fairtrail_client::checkpoint::CheckpointError),
    #[error("index {index} is beyond the tree size {size}")]
    OutOfRange { index: u64, size: u64 },
    #[error("{0}")]
    BadRange(String),
    #[error("a leaf has {len} bytes; a tlog-tiles entry holds at most 65535")]
    LeafTooLarge { len: usize },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A published state of the log: what readers see.
#[derive(Debug)]
pub struct Snapshot {
    pub size: u64,
    pub root: Hash,
    /// The signed checkpoint of `size` and `root`, as a C2SP signed note.
    pub checkpoint: String,
    /// The right-edge (partial) hash tile of each level, level 0 first.
    edge: Vec<Arc<TileTree>>,
    /// The leaves of the partial entry bundle.
    bundle: Arc<Vec<Bytes>>,
}

/// The read side of the log. Shared by every request handler; see the module contract.
pub struct TileStore {
    dir: PathBuf,
    published: ArcSwap<Snapshot>,
    /// Full tiles read back from disk and checked, by (level, index). Bounded, so memory
    /// stays flat however long the log grows.
    tiles: Mutex<LruCache<(u8, u64), Arc<TileTree>>>,
    /// Full entry bundles read back from disk and checked, by index.
    bundles: Mutex<LruCache<u64, Arc<Vec<Bytes>>>>,
}

/// The write side: owned by the sequencer alone, so appends never race.
pub struct TileWriter {
    store: Arc<TileStore>,
    size: u64,
    edge: Vec<Arc<TileTree>>,
    bundle: Arc<Vec<Bytes>>,
    /// The size at the last [`TileWriter::prepare`].
    prepared_size: u64,
    /// Written by `append`, synced by the prepared commit together with the checkpoint.
    unsynced: Unsynced,
    /// Files of superseded partial tiles, renamed aside to be reused for new tiles. Creating
    /// a file per partial tile per commit and deleting it a moment later made ext4 scan its
    /// recently freed inodes at every creation: measured, a third of the committer's CPU.
    spares: Spares,
    /// Directories known to exist under `tile/` (so a commit does not ask the file system
    /// again for each file). The only ones moved away are the partial-bundle directories of
    /// full bundles (to the spare directories), which the writer never writes into again.
    known_dirs: std::collections::HashSet<PathBuf>,
    /// Threads that sync files at a commit, all at once.
    syncer: Arc<Syncer>,
    /// The edge's partial bundle on disk, appended to by the next commit that widens it;
    /// `None` when the edge has no partial bundle or its file is still to be written whole.
    tail: Option<Tail>,
}

/// The file of the partial bundle of the edge (`<N>.p/tail`): it holds exactly the first
/// `leaves` leaves of bundle `n`, `len` bytes, as written by the last commit.
struct Tail {
    n: u64,
    path: PathBuf,
    file: fs::File,
    leaves: usize,
    len: u64,
}

/// Directories remembered at most by [`TileWriter::known_dirs`] (then forgotten at once).
const KNOWN_DIRS: usize = 4096;
/// Threads kept to sync a commit's files concurrently; a commit with more files than this
/// queues the rest behind them.
const SYNC_THREADS: usize = 8;

/// A sync to run on a [`Syncer`] thread, and where its outcome goes.
struct SyncJob {
    path: PathBuf,
    file: fs::File,
    sync: SyncFn,
    done: std::sync::mpsc::Sender<(PathBuf, std::io::Result<()>)>,
}

/// A fixed set of threads that run syncs, so a commit need not start a thread per file.
/// Threads that cannot be started are done without: the syncs then run on the caller.
struct Syncer {
    jobs: Option<std::sync::mpsc::Sender<SyncJob>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Syncer {
    fn start() -> Syncer {
        let (jobs, queue) = std::sync::mpsc::channel::<SyncJob>();
        let queue = Arc::new(Mutex::new(queue));
        let threads: Vec<_> = (0..SYNC_THREADS)
            .filter_map(|i| {
                let queue = queue.clone();
                std::thread::Builder::new()
                    .name(format!("log-sync-{i}"))
                    .spawn(move || loop {
                        let job = match queue.lock() {
                            Ok(q) => q.recv(),
                            Err(_) => return,
                        };
                        let Ok(job) = job else { return };
                        let outcome = (job.sync)(&job.file);
                        let _ = job.done.send((job.path, outcome));
                    })
                    .ok()
            })
            .collect();
        Syncer {
            jobs: (!threads.is_empty()).then_some(jobs),
            threads,
        }
    }

    /// Runs every sync at once (the first on this thread) and reports the first failure.
    fn sync_all(&self, files: Vec<(PathBuf, fs::File, SyncFn)>) -> Result<(), StoreError> {
        let mut files = files.into_iter();
        let first = files.next();
        let (done, outcomes) = std::sync::mpsc::channel();
        let mut queued = 0;
        let mut failure = None;
        for (path, file, sync) in files {
            let job = SyncJob {
                path,
                file,
                sync,
                done: done.clone(),
            };
            let sent = match &self.jobs {
                Some(jobs) => jobs.send(job).map_err(|e| e.0),
                None => Err(job),
            };
            match sent {
                Ok(()) => queued += 1,
                Err(job) => failure = failure.or(synced(&job.path, (job.sync)(&job.file))),
            }
        }
        drop(done);
        if let Some((path, file, sync)) = first {
            failure = failure.or(synced(&path, sync(&file)));
        }
        for _ in 0..queued {
            match outcomes.recv() {
                Ok((path, outcome)) => failure = failure.or(synced(&path, outcome)),
                // A sync thread died with its job: the file's state is unknown.
                Err(_) => {
                    failure = failure.or(Some(StoreError::Io {
                        path: PathBuf::from("(sync thread)"),
                        source: std::io::Error::other("a sync thread stopped"),
                    }));
                    break;
                }
            }
        }
        failure.map_or(Ok(()), Err)
    }
}

/// The error of a sync of `path`, if it failed.
fn synced(path: &Path, outcome: std::io::Result<()>) -> Option<StoreError> {
    outcome.err().map(io_err(path))
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.jobs = None;
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// A pool of spare files in `log/spare/`, named by number.
///
/// Two sources fill it: superseded partial tiles, and empty files created ahead of need
/// whenever the pool runs low, so the committer renames a file into place instead of
/// allocating an inode on its own time. Both are the work of a background thread
/// (`spare-maker`): a commit only names the directories of partial tiles it made superseded
/// ([`SparePool::retire`]); the thread moves their files into the pool and empties them
/// (freeing a file's blocks is slow, a discard per extent on some disks), so every spare is
/// empty. The thread ends when the pool is dropped.
struct Spares {
    dir: PathBuf,
    pool: Arc<SparePool>,
    /// Wakes the maker, and the maker's thread; `None` if it could not be started (files are
    /// then created inline).
    maker: Option<(std::sync::mpsc::SyncSender<()>, std::thread::JoinHandle<()>)>,
}

struct SparePool {
    /// Empty files, ready to be renamed into place.
    files: Mutex<Vec<PathBuf>>,
    /// Directories of partial tiles whose tile is full, to be emptied into the pool.
    retired: Mutex<Vec<PathBuf>>,
    /// Empty directories in `dirs_dir`, ready to be renamed into place: a directory created
    /// and deleted per bundle left ext4 (without a journal) scanning the recently freed
    /// inodes at every creation, as files did (BENCHMARKS.md).
    dirs: Mutex<Vec<PathBuf>>,
    dirs_dir: PathBuf,
    /// The number for the next spare's name.
    next: std::sync::atomic::AtomicU64,
}

/// Below this many spares the maker is woken...
const SPARES_LOW: usize = 64;
/// ...and creates files until there are this many.
const SPARES_TARGET: usize = 128;

impl SparePool {
    fn take(&self) -> (Option<PathBuf>, usize) {
        let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        let spare = files.pop();
        (spare, files.len())
    }

    fn len(&self) -> usize {
        self.files.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Adds `path` to the pool unless it is full; whether it was added.
    fn put(&self, path: PathBuf) -> Result<(), PathBuf> {
        let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        if files.len() < MAX_SPARES {
            files.push(path);
            Ok(())
        } else {
            Err(path)
        }
    }

    /// Names directories of partial tiles to empty into the pool, and has the maker (woken
    /// by `wake`) empty them, or, without a maker, empties them here into `spare_dir`.
    fn retire(
        &self,
        dirs: Vec<PathBuf>,
        wake: Option<&std::sync::mpsc::SyncSender<()>>,
        spare_dir: &Path,
    ) {
        if dirs.is_empty() {
            return;
        }
        self.retired
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(dirs);
        match wake {
            // Full means a wake-up is already pending.
            Some(wake) => {
                let _ = wake.try_send(());
            }
            None => self.empty_retired(spare_dir),
        }
    }

    /// Moves the files of every retired directory into the pool, emptied, and the emptied
    /// directories to the spare directories (or deletes them). Best effort: what is left
    /// behind, the next open ignores.
    fn empty_retired(&self, dir: &Path) {
        let dirs = std::mem::take(&mut *self.retired.lock().unwrap_or_else(|e| e.into_inner()));
        for partials in dirs {
            if let Ok(entries) = fs::read_dir(&partials) {
                for entry in entries.flatten() {
                    self.keep(dir, &entry.path());
                }
            }
            // The writer never writes into it again: the tile is full.
            let emptied = fs::read_dir(&partials).is_ok_and(|mut e| e.next().is_none());
            if !(emptied && self.keep_dir(&partials)) {
                let _ = fs::remove_dir_all(&partials);
            }
        }
    }

    /// Keeps the file at `path` as a spare in `dir`, emptied (deletes it if the pool is full).
    /// Best effort.
    fn keep(&self, dir: &Path, path: &Path) {
        if self.len() < MAX_SPARES {
            let spare = self.next_name(dir);
            if fs::rename(path, &spare).is_ok() {
                let emptied = fs::OpenOptions::new()
                    .write(true)
                    .open(&spare)
                    .and_then(|f| f.set_len(0));
                if emptied.is_err() || self.put(spare.clone()).is_err() {
                    let _ = fs::remove_file(&spare);
                }
                return;
            }
        }
        let _ = fs::remove_file(path);
    }

    /// Keeps the empty directory at `path` as a spare; whether it was kept.
    fn keep_dir(&self, path: &Path) -> bool {
        let mut dirs = self.dirs.lock().unwrap_or_else(|e| e.into_inner());
        if dirs.len() >= MAX_SPARE_DIRS {
            return false;
        }
        let spare = self.next_name(&self.dirs_dir);
        if fs::rename(path, &spare).is_ok() {
            dirs.push(spare);
            true
        } else {
            false
        }
    }

    fn next_name(&self, dir: &Path) -> PathBuf {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        dir.join(n.to_string())
    }

    /// The maker's loop: at each wake-up, empty the retired directories into the pool, then
    /// create empty spares up to [`SPARES_TARGET`]. Best effort: a failure stops this round
    /// (the committer then creates files itself).
    fn make(&self, dir: &Path, wake: std::sync::mpsc::Receiver<()>) {
        while wake.recv().is_ok() {
            loop {
                // Retired directories first, at every step: a wake-up taken below may have
                // been for them.
                self.empty_retired(dir);
                if self.len() >= SPARES_TARGET {
                    break;
                }
                if let Err(std::sync::mpsc::TryRecvError::Disconnected) = wake.try_recv() {
                    break;
                }
                let path = self.next_name(dir);
                if fs::File::create(&path).is_err() {
                    break;
                }
                if let Err(path) = self.put(path) {
                    let _ = fs::remove_file(path);
                    break;
                }
            }
            // A round cut short may have taken a wake-up meant for retired directories.
            self.empty_retired(dir);
        }
        self.empty_retired(dir);
    }
}

impl Spares {
    /// Takes stock of `dir` (creating it); files beyond [`MAX_SPARES`] and anything that is
    /// not a plain file named by a number are deleted. The same for the spare directories
    /// in `dirs_dir`: kept only if empty and named by a number. Starts the maker.
    fn open(dir: PathBuf, dirs_dir: PathBuf) -> Result<Spares, StoreError> {
        // A file with another name too is a committed tile's second name (a power loss before
        // the spare directory was synced): removing this name is all that may be done.
        let (files, next_file) = take_stock(&dir, MAX_SPARES, |entry| {
            use std::os::unix::fs::MetadataExt;
            entry
                .metadata()
                .is_ok_and(|m| m.is_file() && m.nlink() == 1)
        })?;
        let (dirs, next_dir) = take_stock(&dirs_dir, MAX_SPARE_DIRS, |entry| {
            entry.file_type().is_ok_and(|t| t.is_dir())
                && fs::read_dir(entry.path()).is_ok_and(|mut e| e.next().is_none())
        })?;
        let next = next_file.max(next_dir);
        let pool = Arc::new(SparePool {
            files: Mutex::new(files),
            retired: Mutex::new(Vec::new()),
            dirs: Mutex::new(dirs),
            dirs_dir,
            next: std::sync::atomic::AtomicU64::new(next),
        });
        let (wake, woken) = std::sync::mpsc::sync_channel(1);
        let maker = std::thread::Builder::new()
            .name("spare-maker".into())
            .spawn({
                let pool = pool.clone();
                let dir = dir.clone();
                move || pool.make(&dir, woken)
            })
            .ok()
            .map(|thread| (wake, thread));
        let spares = Spares { dir, pool, maker };
        spares.wake_maker_if_low(spares.pool.len());
        Ok(spares)
    }

    fn wake_maker_if_low(&self, left: usize) {
        if left < SPARES_LOW {
            if let Some((maker, _)) = &self.maker {
                // Full means a wake-up is already pending.
                let _ = maker.try_send(());
            }
        }
    }

    /// Makes the directory `path` (whose parent exists) from a spare directory, if there is
    /// one; whether it did.
    fn place_dir(&mut self, path: &Path) -> bool {
        let spare = self
            .pool
            .dirs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop();
        let Some(spare) = spare else {
            return false;
        };
        if fs::rename(&spare, path).is_ok() {
            return true;
        }
        let _ = fs::remove_dir(&spare);
        false
    }

    /// Creates `path` for writing from empty: a spare renamed into place if there is one (no
    /// new inode), else a new file.
    /// The directory a spare was renamed out of is noted in `dirs`, to be synced with the
    /// commit: without a journal, an unsynced source entry could outlive a power loss as a
    /// second name for the committed file.
    fn create(
        &mut self,
        path: &Path,
        dirs: &mut BTreeSet<PathBuf>,
    ) -> Result<fs::File, StoreError> {
        let (spare, left) = self.pool.take();
        self.wake_maker_if_low(left);
        if let Some(spare) = spare {
            if fs::rename(&spare, path).is_ok() {
                dirs.insert(self.dir.clone());
                return fs::OpenOptions::new()
                    .write(true)
                    .truncate(true)
                    .open(path)
                    .map_err(io_err(path));
            }
        }
        fs::File::create(path).map_err(io_err(path))
    }
}

impl Drop for Spares {
    /// Stops the maker (it ends after the file it is creating and the retired directories
    /// still waiting, a few hundred renames at most) and waits for it, so nothing is created
    /// in the directory once the writer is gone.
    fn drop(&mut self) {
        if let Some((wake, thread)) = self.maker.take() {
            drop(wake);
            let _ = thread.join();
        }
    }
}

/// The spares in `dir` (created if missing): entries named by a number that `usable` accepts,
/// up to `max`; everything else is deleted (a directory only if empty: one that is not may be
/// a second name for a committed one, left by a power loss). Also the number after the
/// highest kept.
fn take_stock(
    dir: &Path,
    max: usize,
    usable: impl Fn(&fs::DirEntry) -> bool,
) -> Result<(Vec<PathBuf>, u64), StoreError> {
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let mut kept = Vec::new();
    let mut next = 0;
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let path = entry.path();
        let number = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u64>().ok());
        match number {
            Some(n) if kept.len() < max && usable(&entry) => {
                next = next.max(n.saturating_add(1));
                kept.push(path);
            }
            _ => {
                let _ = if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    fs::remove_dir(&path)
                } else {
                    fs::remove_file(&path)
                };
            }
        }
    }
    Ok((kept, next))
}

/// Hashes at `level` (tree level `8 * level`) in a tree of `size` leaves.
fn hashes_at(size: u64, level: usize) -> u64 {
    if level >= MAX_TILE_LEVELS {
        0
    } else {
        size >> (8 * level)
    }
}

impl TileStore {
    /// Opens the log in `dir` (creating it when new), recovers from any crash, and checks the
    /// right edge against the signed checkpoint. Returns the store and its only writer; the
    /// checkpoint is `None` for a new log, which the caller must commit before serving.
    pub fn open(
        dir: &Path,
        log_key: &NoteVerifier,
        cache_tiles: usize,
    ) -> Result<(Arc<TileStore>, TileWriter, Option<SignedCheckpoint>), StoreError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let checkpoint_path = dir.join(CHECKPOINT_FILE);
        let signed = match fs::read_to_string(&checkpoint_path) {
            Ok(note) => {
                Some(SignedCheckpoint::verify(&note, log_key).map_err(StoreError::Checkpoint)?)
            }
            Err(e) if e.kind() == ErrorKind::NotFound => None,
            Err(e) => return Err(io_err(&checkpoint_path)(e)),
        };
        let size = signed.as_ref().map_or(0, |s| s.checkpoint.size);

        // 1. Delete whatever a crash left beyond the checkpoint: it was never acknowledged.
        remove_beyond(dir, TileKind::Entries, size)?;
        for level in 0..MAX_TILE_LEVELS {
            remove_beyond(dir, TileKind::Hashes(level as u8), hashes_at(size, level))?;
        }

        // 2. Rebuild the right edge: the partial entry bundle is read, and each partial hash
        //    tile derived (level 0 from the bundle's leaf hashes, level k from the roots of
        //    the full tiles of level k - 1 it covers). Partial hash tiles are not stored
        //    (10.2); ones an older node wrote are ignored.
        let mut upper = Vec::new();
        for level in 1..MAX_TILE_LEVELS {
            let count = hashes_at(size, level);
            if count == 0 {
                break;
            }
            let first = count - count % TILE_WIDTH as u64;
            let hashes = (first..count)
                .map(|n| {
                    let below = TileKind::Hashes((level - 1) as u8);
                    let path = tile_path(dir, below, n, TILE_WIDTH);
                    TileTree::from_hashes(&read_hashes(&path, TILE_WIDTH)?)
                        .root()
                        .ok_or_else(|| StoreError::Corrupt {
                            path,
                            what: "an empty full tile".into(),
                        })
                })
                .collect::<Result<Vec<Hash>, StoreError>>()?;
            upper.push(Arc::new(TileTree::from_hashes(&hashes)));
        }
        let bundle_width = (size % TILE_WIDTH as u64) as usize;
        let edge_n = size / TILE_WIDTH as u64;
        let store = Arc::new(TileStore {
            dir: dir.to_owned(),
            published: ArcSwap::from_pointee(Snapshot {
                size: 0,
                root: merkle::empty_root(),
                checkpoint: String::new(),
                edge: Vec::new(),
                bundle: Arc::new(Vec::new()),
            }),
            tiles: Mutex::new(LruCache::new(
                NonZeroUsize::new(cache_tiles.max(16)).unwrap_or(NonZeroUsize::MIN),
            )),
            bundles: Mutex::new(LruCache::new(
                NonZeroUsize::new((cache_tiles / 4).max(16)).unwrap_or(NonZeroUsize::MIN),
            )),
        });
        let checkpoint = signed.as_ref().map(|s| s.note.clone()).unwrap_or_default();

        // 3. The edge must give exactly the signed root: this is what makes a torn or
        //    tampered tile fatal at start instead of a wrong proof later. The partial bundle
        //    is the tail file's first leaves, or, in a directory an older node wrote, the
        //    file of its width (10.4).
        // `None`: no partial bundle (the edge is a bundle boundary).
        let sources: Vec<Option<PathBuf>> = if bundle_width == 0 {
            vec![None]
        } else {
            let tail = partial_dir(dir, TileKind::Entries, edge_n).join(TAIL);
            let legacy = tile_path(dir, TileKind::Entries, edge_n, bundle_width);
            let sources: Vec<Option<PathBuf>> = [tail, legacy]
                .into_iter()
                .filter(|p| p.exists())
                .map(Some)
                .collect();
            if sources.is_empty() {
                return Err(StoreError::Corrupt {
                    path: partial_dir(dir, TileKind::Entries, edge_n),
                    what: format!("no partial bundle of {bundle_width} entries"),
                });
            }
            sources
        };
        let mut opened = None;
        let mut failure = None;
        for source in sources {
            let (bundle, used) = match &source {
                None => (Vec::new(), 0),
                Some(path) => match read_bundle_prefix(path, bundle_width) {
                    Ok(read) => read,
                    Err(e) => {
                        failure = failure.or(Some(e));
                        continue;
                    }
                },
            };
            let mut edge = Vec::with_capacity(upper.len() + 1);
            if size > 0 {
                let hashes: Vec<Hash> = bundle.iter().map(|l| leaf_hash(l)).collect();
                edge.push(Arc::new(TileTree::from_hashes(&hashes)));
                edge.extend(upper.iter().cloned());
            }
            let snapshot = Snapshot {
                size,
                root: merkle::empty_root(),
                checkpoint: checkpoint.clone(),
                edge,
                bundle: Arc::new(bundle),
            };
            let root = merkle::root(&store.view(&snapshot), size).map_err(prove_to_store)?;
            if signed.as_ref().is_some_and(|s| s.checkpoint.root != root) {
                // The edge is derived from the partial bundle, when there is one, and from
                // the full tiles below each level's edge: one of them is damaged.
                failure = failure.or(Some(match source {
                    None => StoreError::Corrupt {
                        path: checkpoint_path.clone(),
                        what: "the tiles on disk do not give the checkpoint's root hash".into(),
                    },
                    Some(path) => StoreError::Corrupt {
                        path,
                        what: "this partial bundle and the full tiles the right edge is derived \
                               from do not give the checkpoint's root hash"
                            .into(),
                    },
                }));
                continue;
            }
            opened = Some((Snapshot { root, ..snapshot }, source, used));
            break;
        }
        let Some((snapshot, source, used)) = opened else {
            return Err(failure.unwrap_or_else(|| StoreError::Corrupt {
                path: checkpoint_path,
                what: "the tiles on disk do not give the checkpoint's root hash".into(),
            }));
        };
        // The tail, cut to the checkpoint's leaves (more were written by a commit that never
        // reached its checkpoint), is appended to from here; a tail not read (beside an
        // older node's partial bundle) was written by no commit that reached its checkpoint.
        let mut tail = None;
        if bundle_width > 0 {
            let tail_path = partial_dir(dir, TileKind::Entries, edge_n).join(TAIL);
            if source.as_ref() == Some(&tail_path) {
                let file = fs::OpenOptions::new()
                    .write(true)
                    .open(&tail_path)
                    .map_err(io_err(&tail_path))?;
                if file.metadata().map_err(io_err(&tail_path))?.len() != used {
                    file.set_len(used).map_err(io_err(&tail_path))?;
                }
                // Its name is made durable, and the spare directory it may have been renamed
                // out of synced, before anything is appended to it: a tail first written by a
                // commit that never reached its checkpoint (beside an older node's partial
                // bundle, whose leaves it begins with) was never synced with one.
                for d in [
                    partial_dir(dir, TileKind::Entries, edge_n),
                    dir.join(SPARE_DIR),
                ] {
                    if d.is_dir() {
                        sync_dir(&d)?;
                    }
                }
                tail = Some(Tail {
                    n: edge_n,
                    path: tail_path,
                    file,
                    leaves: bundle_width,
                    len: used,
                });
            } else if tail_path.exists() {
                fs::remove_file(&tail_path).map_err(io_err(&tail_path))?;
            }
        }
        let snapshot = Arc::new(snapshot);
        store.published.store(snapshot.clone());
        let edge = snapshot.edge.clone();

        let writer = TileWriter {
            store: store.clone(),
            size,
            edge,
            bundle: snapshot.bundle.clone(),
            prepared_size: size,
            unsynced: Unsynced::default(),
            spares: Spares::open(dir.join(SPARE_DIR), dir.join(SPARE_DIRS_DIR))?,
            known_dirs: Default::default(),
            syncer: Arc::new(Syncer::start()),
            tail,
        };
        // A crash between a commit that filled a bundle and the spare maker's emptying of
        // that bundle's partial directory leaves the directory behind: the last few before
        // the edge are handed to the spare maker again (their bundles are full on disk).
        let leftovers: Vec<PathBuf> = (edge_n.saturating_sub(LEFTOVERS_CHECKED)..edge_n)
            .filter(|&n| tile_path(dir, TileKind::Entries, n, TILE_WIDTH).is_file())
            .map(|n| partial_dir(dir, TileKind::Entries, n))
            .filter(|p| p.is_dir())
            .collect();
        let spares = &writer.spares;
        let wake = spares.maker.as_ref().map(|(wake, _)| wake);
        spares.pool.retire(leftovers, wake, &spares.dir);
        Ok((store, writer, signed))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the published tree covers the tile `kind`/`n` of `width`: only those tiles are
    /// final (a tile beyond the checkpoint may still be rewritten after a crash).
    pub fn is_published(&self, kind: TileKind, n: u64, width: usize) -> bool {
        let size = self.snapshot().size;
        let count = match kind {
            TileKind::Entries => size,
            TileKind::Hashes(level) => hashes_at(size, usize::from(level)),
        };
        n.checked_mul(TILE_WIDTH as u64)
            .and_then(|start| start.checked_add(width as u64))
            .is_some_and(|end| end <= count)
    }

    /// The latest published state.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.published.load_full()
    }

    /// The tree of `snapshot` as a source of subtree hashes, for proofs.
    pub fn view<'a>(&'a self, snapshot: &'a Snapshot) -> TreeView<'a> {
        TreeView {
            store: self,
            snapshot,
        }
    }

    /// The leaf at `index` in `snapshot`.
    pub fn leaf(&self, snapshot: &Snapshot, index: u64) -> Result<Bytes, StoreError> {
        if index >= snapshot.size {
            return Err(StoreError::OutOfRange {
                index,
                size: snapshot.size,
            });
        }
        let n = index / TILE_WIDTH as u64;
        let pos = (index % TILE_WIDTH as u64) as usize;
        let bundle = self.bundle(snapshot, n)?;
        bundle.get(pos).cloned().ok_or(StoreError::OutOfRange {
            index,
            size: snapshot.size,
        })
    }

    /// The bytes of the partial tile `kind`/`n` of `width` in the published tree, or `None`
    /// if the tree does not cover it. Built from the published edge in memory, or from the
    /// full tile it has become (checked as every tile read is), never read from a
    /// partial-tile file: those are reused for other tiles once superseded (10.3).
    pub fn partial_tile(
        &self,
        kind: TileKind,
        n: u64,
        width: usize,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        if width == 0 || width >= TILE_WIDTH || !self.is_published(kind, n, width) {
            return Ok(None);
        }
        let snapshot = self.snapshot();
        match kind {
            TileKind::Entries => {
                let leaves = self.bundle(&snapshot, n)?;
                Ok(leaves.get(..width).map(encode_bundle))
            }
            TileKind::Hashes(level) => {
                let view = self.view(&snapshot);
                let first = n.saturating_mul(TILE_WIDTH as u64);
                let mut out = Vec::with_capacity(width * 32);
                for i in 0..width as u64 {
                    out.extend_from_slice(&view.subtree(8 * level, first + i)?);
                }
                Ok(Some(out))
            }
        }
    }

    /// The leaves of entry bundle `n` as far as `snapshot` has them.
    pub fn bundle(&self, snapshot: &Snapshot, n: u64) -> Result<Arc<Vec<Bytes>>, StoreError> {
        let edge_n = snapshot.size / TILE_WIDTH as u64;
        if n == edge_n {
            return Ok(snapshot.bundle.clone());
        }
        if n > edge_n {
            return Err(StoreError::OutOfRange {
                index: n.saturating_mul(TILE_WIDTH as u64),
                size: snapshot.size,
            });
        }
        if let Some(b) = self
            .bundles
            .lock()
            .ok()
            .and_then(|mut c| c.get(&n).cloned())
        {
            return Ok(b);
        }
        let path = tile_path(&self.dir, TileKind::Entries, n, TILE_WIDTH);
        let leaves = read_bundle(&path, TILE_WIDTH)?;
        let view = self.view(snapshot);
        for (i, leaf) in leaves.iter().enumerate() {
            let expected = view.subtree(0, n * TILE_WIDTH as u64 + i as u64)?;
            if leaf_hash(leaf) != expected {
                return Err(StoreError::Corrupt {
                    path,
                    what: format!("entry {i} does not match its leaf hash"),
                });
            }
        }
        let leaves = Arc::new(leaves);
        if let Ok(mut cache) = self.bundles.lock() {
            cache.put(n, leaves.clone());
        }
        Ok(leaves)
    }

    /// A full hash tile, from the cache or from disk (checked against its parent hash).
    fn full_tile(
        &self,
        snapshot: &Snapshot,
        level: u8,
        n: u64,
    ) -> Result<Arc<TileTree>, StoreError> {
        if let Some(t) = self
            .tiles
            .lock()
            .ok()
            .and_then(|mut c| c.get(&(level, n)).cloned())
        {
            return Ok(t);
        }
        let path = tile_path(&self.dir, TileKind::Hashes(level), n, TILE_WIDTH);
        let tile = TileTree::from_hashes(&read_hashes(&path, TILE_WIDTH)?);
        let parent = self.view(snapshot).subtree(8 * (level + 1), n)?;
        if tile.root() != Some(parent) {
            return Err(StoreError::Corrupt {
                path,
                what: "the tile does not hash to its parent".into(),
            });
        }
        let tile = Arc::new(tile);
        self.cache_tile(level, n, tile.clone());
        Ok(tile)
    }

    fn cache_tile(&self, level: u8, n: u64, tile: Arc<TileTree>) {
        if let Ok(mut cache) = self.tiles.lock() {
            cache.put((level, n), tile);
        }
    }

    /// An inclusion proof for `index` in the tree of `size` (at most the snapshot's size).
    pub fn prove_inclusion(
        &self,
        snapshot: &Snapshot,
        index: u64,
        size: u64,
    ) -> Result<Vec<Hash>, StoreError> {
        if size > snapshot.size || index >= size {
            return Err(StoreError::OutOfRange {
                index,
                size: size.min(snapshot.size),
            });
        }
        merkle::prove_inclusion(&self.view(snapshot), index, size).map_err(prove_to_store)
    }

    /// A consistency proof from `size1` to `size2` (at most the snapshot's size).
    pub fn prove_consistency(
        &self,
        snapshot: &Snapshot,
        size1: u64,
        size2: u64,
    ) -> Result<Vec<Hash>, StoreError> {
        if size2 > snapshot.size || size1 > size2 {
            return Err(StoreError::OutOfRange {
                index: size2,
                size: snapshot.size,
            });
        }
        merkle::prove_consistency(&self.view(snapshot), size1, size2).map_err(prove_to_store)
    }

    /// The root of the tree of `size` (at most the snapshot's size).
    pub fn root_at(&self, snapshot: &Snapshot, size: u64) -> Result<Hash, StoreError> {
        if size > snapshot.size {
            return Err(StoreError::OutOfRange {
                index: size,
                size: snapshot.size,
            });
        }
        merkle::root(&self.view(snapshot), size).map_err(prove_to_store)
    }
}

fn prove_to_store(e: ProveError<StoreError>) -> StoreError {
    match e {
        ProveError::Source(s) => s,
        other => StoreError::BadRange(other.to_string()),
    }
}

/// The tree of one snapshot, as complete-subtree hashes read from tiles.
pub struct TreeView<'a> {
    store: &'a TileStore,
    snapshot: &'a Snapshot,
}

impl SubtreeSource for TreeView<'_> {
    type Error = StoreError;

    fn subtree(&self, level: u8, index: u64) -> Result<Hash, StoreError> {
        let out_of_range = || StoreError::OutOfRange {
            index,
            size: self.snapshot.size,
        };
        // The subtree must be complete within the snapshot: its last leaf is below the size.
        let end = (u128::from(index) + 1) << level.min(64);
        if end > u128::from(self.snapshot.size) {
            return Err(out_of_range());
        }
        let tile_level = level / 8;
        let height = level % 8;
        let n = index >> (8 - height);
        let pos = index & ((1u64 << (8 - height)) - 1);
        let edge_n = hashes_at(self.snapshot.size, usize::from(tile_level)) / TILE_WIDTH as u64;
        let tile = if n == edge_n {
            self.snapshot
                .edge
                .get(usize::from(tile_level))
                .cloned()
                .ok_or_else(out_of_range)?
        } else {
            self.store.full_tile(self.snapshot, tile_level, n)?
        };
        tile.get(height, pos).ok_or_else(out_of_range)
    }
}

impl TileWriter {
    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn store(&self) -> &Arc<TileStore> {
        &self.store
    }

    /// The bytes of the partial bundle's leaves as a bundle holds them (each after its 2-byte
    /// length): what the commit that completes the bundle writes again.
    pub fn partial_bundle_bytes(&self) -> u64 {
        self.bundle.iter().map(|leaf| leaf.len() as u64 + 2).sum()
    }

    /// Appends `leaves` and makes every tile they touch durable. Returns the new root.
    /// Readers do not see the leaves until [`TileWriter::commit`].
    pub fn append(&mut self, leaves: &[Bytes]) -> Result<Hash, StoreError> {
        let dir = self.store.dir.clone();
        let mut pending = PendingWrites::default();
        for leaf in leaves {
            if leaf.len() > usize::from(u16::MAX) {
                return Err(StoreError::LeafTooLarge { len: leaf.len() });
            }
            let index = self.size;
            Arc::make_mut(&mut self.bundle).push(leaf.clone());
            if self.bundle.len() == TILE_WIDTH {
                pending.files.push((
                    tile_path(
                        &dir,
                        TileKind::Entries,
                        index / TILE_WIDTH as u64,
                        TILE_WIDTH,
                    ),
                    encode_bundle(&self.bundle),
                ));
                self.bundle = Arc::new(Vec::with_capacity(TILE_WIDTH));
            }
            self.push_hash(0, leaf_hash(leaf), &mut pending);
            self.size += 1;
        }
        // The partial bundle of the new edge (partial hash tiles are derived, never stored):
        // the new leaves appended to its tail file, or, for a bundle just begun (or a tail
        // not known to be whole), the whole bundle written to a new one.
        let mut new_tail = None;
        let n = self.size / TILE_WIDTH as u64;
        if self.bundle.is_empty() {
            self.tail = None;
        } else if self.size != self.prepared_size {
            match &mut self.tail {
                Some(tail) if tail.n == n && tail.leaves <= self.bundle.len() => {
                    let bytes = encode_bundle(self.bundle.get(tail.leaves..).unwrap_or(&[]));
                    use std::os::unix::fs::FileExt;
                    tail.file
                        .write_all_at(&bytes, tail.len)
                        .map_err(io_err(&tail.path))?;
                    tail.len += bytes.len() as u64;
                    tail.leaves = self.bundle.len();
                    let file = tail.file.try_clone().map_err(io_err(&tail.path))?;
                    self.unsynced.files.push((tail.path.clone(), file));
                }
                _ => {
                    self.tail = None;
                    let path = partial_dir(&dir, TileKind::Entries, n).join(TAIL);
                    let bytes = encode_bundle(&self.bundle);
                    new_tail = Some((path.clone(), bytes.len() as u64));
                    pending.files.push((path, bytes));
                }
            }
        }
        if self.known_dirs.len() > KNOWN_DIRS {
            self.known_dirs.clear();
        }
        pending.write(
            &dir,
            &mut self.unsynced,
            &mut self.spares,
            &mut self.known_dirs,
        )?;
        if let Some((path, len)) = new_tail {
            if let Some((_, file)) = self.unsynced.files.iter().find(|(p, _)| *p == path) {
                self.tail = Some(Tail {
                    n,
                    file: file.try_clone().map_err(io_err(&path))?,
                    path,
                    leaves: self.bundle.len(),
                    len,
                });
            }
        }
        let snapshot = Snapshot {
            size: self.size,
            root: merkle::empty_root(),
            checkpoint: String::new(),
            edge: self.edge.clone(),
            bundle: self.bundle.clone(),
        };
        merkle::root(&self.store.view(&snapshot), self.size).map_err(prove_to_store)
    }

    fn push_hash(&mut self, level: usize, hash: Hash, pending: &mut PendingWrites) {
        if self.edge.len() <= level {
            self.edge.push(Arc::new(TileTree::new()));
        }
        let index_at_level = hashes_at(self.size, level) / TILE_WIDTH as u64;
        let Some(slot) = self.edge.get_mut(level) else {
            return;
        };
        if let Some(root) = Arc::make_mut(slot).push(hash) {
            let full = std::mem::replace(slot, Arc::new(TileTree::new()));
            let path = tile_path(
                &self.store.dir,
                TileKind::Hashes(level as u8),
                index_at_level,
                TILE_WIDTH,
            );
            pending.files.push((path, full.encode()));
            // Hot: proofs for recent entries read it next.
            self.store.cache_tile(level as u8, index_at_level, full);
            self.push_hash(level + 1, root, pending);
        }
    }

    /// Makes `checkpoint` (the signed note for the current size and `root`) durable, then
    /// publishes the new tree to readers and deletes the partial tiles it supersedes.
    pub fn commit(&mut self, checkpoint: String, root: Hash) -> Result<Arc<Snapshot>, StoreError> {
        let mut prepared = self.prepare(checkpoint, root);
        prepared.make_durable()?;
        Ok(prepared.publish())
    }

    /// Ends the batch appended since the last call: what [`TileWriter::append`] wrote, with
    /// `checkpoint` (the signed note for the current size and `root`), becomes a
    /// [`PreparedCommit`] to make durable and publish.
    pub fn prepare(&mut self, checkpoint: String, root: Hash) -> PreparedCommit<'_> {
        let from = self.prepared_size;
        self.prepared_size = self.size;
        PreparedCommit {
            store: self.store.clone(),
            syncer: self.syncer.clone(),
            spares: self.spares.pool.clone(),
            spare_dir: self.spares.dir.clone(),
            wake_maker: self.spares.maker.as_ref().map(|(wake, _)| wake.clone()),
            unsynced: std::mem::take(&mut self.unsynced),
            snapshot: Arc::new(Snapshot {
                size: self.size,
                root,
                checkpoint,
                edge: self.edge.clone(),
                bundle: self.bundle.clone(),
            }),
            from,
            _writer: std::marker::PhantomData,
        }
    }
}

/// A batch of the log written by [`TileWriter::append`] and closed by
/// [`TileWriter::prepare`], not yet durable nor visible to readers. It holds its writer
/// (nothing is appended until it is published or dropped), so commits happen one at a time,
/// in order, and never outlive the writer that owns the directory.
pub struct PreparedCommit<'w> {
    store: Arc<TileStore>,
    syncer: Arc<Syncer>,
    spares: Arc<SparePool>,
    spare_dir: PathBuf,
    /// The spare maker, to empty superseded partial tiles into the pool; `None` if it could
    /// not be started (then done inline).
    wake_maker: Option<std::sync::mpsc::SyncSender<()>>,
    unsynced: Unsynced,
    /// What readers will see once it is published.
    snapshot: Arc<Snapshot>,
    /// The size before this batch.
    from: u64,
    _writer: std::marker::PhantomData<&'w mut TileWriter>,
}

impl PreparedCommit<'_> {
    /// The log's size with this batch.
    pub fn size(&self) -> u64 {
        self.snapshot.size
    }

    /// Makes the batch's tiles and its checkpoint durable in two rounds of syncs. First the
    /// checkpoint is written to `checkpoint.tmp`, and every file the batch wrote, that file
    /// and every directory that gained an entry are synced at once (on the sync threads: the
    /// file system commits concurrent syncs together); then the checkpoint is swapped into
    /// place and its directory synced. From here the entries are in the log, though readers
    /// do not see them until [`PreparedCommit::publish`]: whatever must be ready when they
    /// do (the index) goes in between.
    pub fn make_durable(&mut self) -> Result<(), StoreError> {
        let dir = self.store.dir.clone();
        let tmp = dir.join(CHECKPOINT_TMP);
        // Usually the previous checkpoint's file, swapped out at the last commit, overwritten
        // in place: no inode is created or freed per commit, and no block (the length only
        // changes when the size gains a digit).
        let file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&tmp)
            .map_err(io_err(&tmp))?;
        let note = self.snapshot.checkpoint.as_bytes();
        use std::os::unix::fs::FileExt;
        file.write_all_at(note, 0).map_err(io_err(&tmp))?;
        if file.metadata().map_err(io_err(&tmp))?.len() != note.len() as u64 {
            file.set_len(note.len() as u64).map_err(io_err(&tmp))?;
        }
        let unsynced = std::mem::take(&mut self.unsynced);
        let mut syncs: Vec<(PathBuf, fs::File, SyncFn)> = Vec::new();
        syncs.push((tmp.clone(), file, fs::File::sync_data));
        for (path, f) in unsynced.files {
            syncs.push((path, f, fs::File::sync_data));
        }
        for d in unsynced.dirs {
            let handle = fs::File::open(&d).map_err(io_err(&d))?;
            syncs.push((d, handle, fs::File::sync_all));
        }
        self.syncer.sync_all(syncs)?;
        let target = dir.join(CHECKPOINT_FILE);
        swap_into_place(&tmp, &target).map_err(io_err(&target))?;
        sync_dir(&dir)
    }

    /// Shows readers the batch (after [`PreparedCommit::make_durable`]), then has the
    /// partial bundles it made superseded moved aside (by the spare maker).
    pub fn publish(self) -> Arc<Snapshot> {
        self.store.published.store(self.snapshot.clone());
        self.retire_superseded_partials();
        self.snapshot
    }

    /// Partial bundles of bundles now full (and partial hash tiles an older node wrote, of
    /// tiles now full) become spares. Partial bundles of a bundle still growing are kept.
    /// Only tidiness: a failure here leaves files the next open ignores.
    fn retire_superseded_partials(&self) {
        let dir = &self.store.dir;
        let (from, to) = (self.from, self.snapshot.size);
        let mut kinds: Vec<(TileKind, u64, u64)> = vec![(TileKind::Entries, from, to)];
        for level in 0..self.snapshot.edge.len() {
            kinds.push((
                TileKind::Hashes(level as u8),
                hashes_at(from, level),
                hashes_at(to, level),
            ));
        }
        let mut retired = Vec::new();
        for (kind, old_count, new_count) in kinds {
            let (old_n, new_n) = (old_count / TILE_WIDTH as u64, new_count / TILE_WIDTH as u64);
            retired.extend((old_n..new_n).map(|n| partial_dir(dir, kind, n)));
        }
        self.spares
            .retire(retired, self.wake_maker.as_ref(), &self.spare_dir);
    }
}

/// Files to write in one group commit.
#[derive(Default)]
struct PendingWrites {
    files: Vec<(PathBuf, Vec<u8>)>,
}

/// Files written and not yet synced, and the directories that gained an entry.
#[derive(Default)]
struct Unsynced {
    files: Vec<(PathBuf, fs::File)>,
    dirs: BTreeSet<PathBuf>,
}

type SyncFn = fn(&fs::File) -> std::io::Result<()>;

impl PendingWrites {
    /// Creates and writes every file (and missing directories), without syncing: the
    /// commit syncs them with its checkpoint ([`PreparedCommit::make_durable`]).
    fn write(
        self,
        root: &Path,
        unsynced: &mut Unsynced,
        spares: &mut Spares,
        known_dirs: &mut std::collections::HashSet<PathBuf>,
    ) -> Result<(), StoreError> {
        for (path, bytes) in self.files {
            let Some(parent) = path.parent() else {
                continue;
            };
            if !known_dirs.contains(parent) {
                create_dirs(parent, root, &mut unsynced.dirs, spares)?;
                known_dirs.insert(parent.to_owned());
            }
            let mut file = spares.create(&path, &mut unsynced.dirs)?;
            file.write_all(&bytes).map_err(io_err(&path))?;
            unsynced.dirs.insert(parent.to_owned());
            unsynced.files.push((path, file));
        }
        Ok(())
    }
}

/// Creates `dir` and its missing ancestors below `root` (from spare directories while there
/// are some), noting each parent that gained an entry so it is fsync'ed too.
fn create_dirs(
    dir: &Path,
    root: &Path,
    dirs: &mut BTreeSet<PathBuf>,
    spares: &mut Spares,
) -> Result<(), StoreError> {
    if dir.is_dir() || dir == root {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_dirs(parent, root, dirs, spares)?;
        if spares.place_dir(dir) {
            // Both ends of the rename, as for spare files.
            dirs.insert(parent.to_owned());
            dirs.insert(spares.pool.dirs_dir.clone());
            return Ok(());
        }
        match fs::create_dir(dir) {
            Ok(()) => {
                dirs.insert(parent.to_owned());
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err(dir)(e)),
        }
    }
    Ok(())
}

/// Puts `from` in place of `to` atomically. Where the file system can, the two are swapped
/// (`renameat2` with `RENAME_EXCHANGE`), so the replaced file stays as `from` to be
/// rewritten next time; otherwise `from` is renamed over `to`.
fn swap_into_place(from: &Path, to: &Path) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::ffi::OsStrExt;
        let c = |p: &Path| std::ffi::CString::new(p.as_os_str().as_bytes());
        if let (Ok(from_c), Ok(to_c)) = (c(from), c(to)) {
            // SAFETY: both are valid NUL-terminated paths that outlive the call.
            let swapped = unsafe {
                libc::renameat2(
                    libc::AT_FDCWD,
                    from_c.as_ptr(),
                    libc::AT_FDCWD,
                    to_c.as_ptr(),
                    libc::RENAME_EXCHANGE,
                )
            };
            if swapped == 0 {
                return Ok(());
            }
            // Not supported here, or `to` does not exist yet (the first commit): rename.
        }
    }
    fs::rename(from, to)
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

fn read_hashes(path: &Path, width: usize) -> Result<Vec<Hash>, StoreError> {
    let bytes = fs::read(path).map_err(io_err(path))?;
    if bytes.len() != width * 32 {
        return Err(StoreError::Corrupt {
            path: path.to_owned(),
            what: format!(
                "{} bytes where {width} hashes need {}",
                bytes.len(),
                width * 32
            ),
        });
    }
    Ok(bytes
        .chunks_exact(32)
        .map(|c| {
            let mut h = [0u8; 32];
            h.copy_from_slice(c);
            h
        })
        .collect())
}

/// An entry bundle: each leaf prefixed with its length as a big-endian u16.
fn encode_bundle(leaves: &[Bytes]) -> Vec<u8> {
    let mut out = Vec::with_capacity(leaves.iter().map(|l| l.len() + 2).sum());
    for leaf in leaves {
        // INVARIANT: append refuses leaves over 65535 bytes.
        out.extend_from_slice(&(leaf.len() as u16).to_be_bytes());
        out.extend_from_slice(leaf);
    }
    out
}

fn read_bundle(path: &Path, width: usize) -> Result<Vec<Bytes>, StoreError> {
    let bytes = Bytes::from(fs::read(path).map_err(io_err(path))?);
    split_bundle(path, &bytes, width, usize::MAX).map(|(leaves, _)| leaves)
}

/// The first `width` leaves of the bundle file at `path` (bytes after them are ignored: a
/// tail file widened by a commit that never reached its checkpoint), and the bytes they take.
fn read_bundle_prefix(path: &Path, width: usize) -> Result<(Vec<Bytes>, u64), StoreError> {
    let bytes = Bytes::from(fs::read(path).map_err(io_err(path))?);
    split_bundle(path, &bytes, width, width).map(|(leaves, used)| (leaves, used as u64))
}

/// Splits `bytes` into length-prefixed leaves, at most `most` of them, which must come to
/// `width`. Returns them and the bytes they take.
fn split_bundle(
    path: &Path,
    bytes: &Bytes,
    width: usize,
    most: usize,
) -> Result<(Vec<Bytes>, usize), StoreError> {
    let corrupt = |what: String| StoreError::Corrupt {
        path: path.to_owned(),
        what,
    };
    let mut leaves = Vec::with_capacity(width);
    let mut at = 0usize;
    while at < bytes.len() && leaves.len() < most {
        let len_bytes = bytes
            .get(at..at + 2)
            .ok_or_else(|| corrupt("truncated length prefix".into()))?;
        let len = usize::from(u16::from_be_bytes([len_bytes[0], len_bytes[1]]));
        let leaf = bytes
            .get(at + 2..at + 2 + len)
            .ok_or_else(|| corrupt("truncated entry".into()))?;
        leaves.push(bytes.slice_ref(leaf));
        at += 2 + len;
    }
    if leaves.len() != width {
        return Err(corrupt(format!(
            "{} entries where {width} were expected",
            leaves.len()
        )));
    }
    Ok((leaves, at))
}

/// Removes every tile of `kind` beyond `count` entries: full tiles from index `count / 256`
/// on, and every partial tile wider than `count % 256` (or of a later tile). The tail file
/// of the edge's partial bundle is kept (cut to its leaves at open).
fn remove_beyond(dir: &Path, kind: TileKind, count: u64) -> Result<(), StoreError> {
    if !paths::level_exists(dir, kind) {
        return Ok(());
    }
    let edge_n = count / TILE_WIDTH as u64;
    let keep_width = (count % TILE_WIDTH as u64) as usize;
    let mut n = edge_n;
    loop {
        let full = tile_path(dir, kind, n, TILE_WIDTH);
        let partials = partial_dir(dir, kind, n);
        let mut found = false;
        if full.exists() {
            found = true;
            fs::remove_file(&full).map_err(io_err(&full))?;
        }
        if partials.is_dir() {
            found = true;
            for entry in fs::read_dir(&partials).map_err(io_err(&partials))? {
                let entry = entry.map_err(io_err(&partials))?;
                // Partials up to the checkpoint's width are committed: clients holding an
                // older checkpoint still read them. Wider ones were never acknowledged.
                let width = entry
                    .file_name()
                    .to_str()
                    .and_then(|w| w.parse::<usize>().ok());
                let keep = n == edge_n
                    && (width.is_some_and(|w| w >= 1 && w <= keep_width)
                        || (keep_width > 0 && entry.file_name() == TAIL));
                if !keep {
                    let p = entry.path();
                    fs::remove_file(&p).map_err(io_err(&p))?;
                }
            }
        }
        if !found && n > edge_n {
            return Ok(());
        }
        n += 1;
    }
}

#[cfg(test)]
mod tests;
