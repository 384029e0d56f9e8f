//! The disk reserve: the sequencer takes no new entries while the file system holding the
//! log or one of its indexes has less free space than the reserve, and takes them again by
//! itself once space is freed. Reads go on all the while.
//!
//! A write refused for want of space is fatal to the sequencer (the disk may then be ahead of
//! the checkpoint; SPEC.md 9.3), and a node on a full disk cannot even start again: opening
//! the indexes writes. The reserve keeps the node short of that point: it keeps serving
//! retailers and consumers, answers a submission already in the log with its receipt, and
//! refuses new ones with `RESOURCE_EXHAUSTED`, which tells producers to try again later.
//! What it keeps back also lets the node stop and start again cleanly (the indexes write
//! what they hold in memory at shutdown, and sled writes at open).
//!
//! Free space is measured before each group commit (and every second while none runs), and
//! the commit is charged what it will write: each entry its [`entry_cost`], and the commit
//! itself its [`commit_cost`] (the leaves of the partial bundle written before it, which go
//! to disk again when the bundle completes, and a hash tile), so that a commit does not
//! write into the reserve. The index's merges are not charged: they write a merged run
//! before deleting its sources (up to the size of the two runs merged), and a merge that
//! finds no room fails harmlessly, its sources kept (SPEC.md 10.6.1).
//!
//! Once short of the reserve, the guard takes new statements again only when the reserve
//! and a margin are free ([`DiskGuard::check`]), so that a disk hovering at the reserve
//! (the index's merges write, then delete) does not flip between the two states every
//! second.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// The default reserve, in mebibytes.
pub const DEFAULT_RESERVE_MB: u64 = 256;

/// Free inodes below which a file system counts as full too (where it counts inodes): the log
/// creates two files every 256 entries and a directory every 256 more.
const MIN_FREE_INODES: u64 = 4096;

/// What one more entry costs on disk at most, beyond its leaf's two copies (in the partial
/// bundle's tail file, then in the full bundle): its hash in the tiles, its records in the
/// index (written behind the answers), and blocks part-filled, with room to spare.
const ENTRY_OVERHEAD: u64 = 2048;

/// A full hash tile (256 hashes of 32 bytes).
const HASH_TILE_BYTES: u64 = 8192;

/// The least margin above the reserve a short guard waits for (else a 64th of the reserve).
const MIN_MARGIN: u64 = 1024 * 1024;

/// The largest leaf (a tlog-tiles entry holds at most 65535 bytes).
const MAX_LEAF: usize = 65_535;

/// What a new entry of `leaf_len` bytes is charged against the free space.
pub fn entry_cost(leaf_len: usize) -> u64 {
    (leaf_len as u64)
        .saturating_mul(2)
        .saturating_add(ENTRY_OVERHEAD)
}

/// What a group commit that appends is charged besides its entries: the `partial_bundle`
/// bytes already in the log's partial bundle, written again (as the full bundle) by the
/// commit that completes it, or (the first after a restart) to a new tail file, and a full
/// hash tile.
pub fn commit_cost(partial_bundle: u64) -> u64 {
    partial_bundle.saturating_add(HASH_TILE_BYTES)
}

/// Free space on one file system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Space {
    /// Bytes available to the node's user (statvfs `f_bavail` blocks of `f_frsize` bytes).
    pub bytes: u64,
    /// Inodes available to it, where the file system counts them (`None` where it does not,
    /// reporting a total of 0).
    pub inodes: Option<u64>,
}

/// How free space is measured on the file system holding a path.
pub(crate) type Measure = fn(&Path) -> std::io::Result<Space>;

/// Free space on the file system holding `path`.
fn statvfs(path: &Path) -> std::io::Result<Space> {
    let stats = rustix::fs::statvfs(path)?;
    Ok(Space {
        bytes: stats.f_bavail.saturating_mul(stats.f_frsize),
        inodes: (stats.f_files > 0).then_some(stats.f_favail),
    })
}

/// The room a group commit has, as measured before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Room {
    /// Free bytes on the fullest file system; `None` if none could be measured.
    pub free: Option<u64>,
    /// The reserve in force, in bytes (0: none): the configured one, and while the guard is
    /// short, a margin above it.
    pub reserve: u64,
    /// Whether some file system has fewer free inodes than the node keeps.
    pub inodes_short: bool,
}

impl Room {
    /// Whether the room is short: not even an entry of the largest size fits above the
    /// reserve.
    pub fn short(&self) -> bool {
        !self.allows(entry_cost(MAX_LEAF))
    }

    /// Whether `bytes` more may be written and leave the reserve free. Always, without a
    /// reserve or a measurement.
    pub fn allows(&self, bytes: u64) -> bool {
        if self.reserve == 0 {
            return true;
        }
        match self.free {
            Some(free) => !self.inodes_short && free.saturating_sub(bytes) >= self.reserve,
            None => true,
        }
    }
}

/// What a submitter refused for want of room is told. The figures go to the node's log and
/// `/metrics`, not to whoever submits.
pub fn refusal() -> String {
    "the node's disk is nearly full: it takes no new statements until its operator frees \
     space (reads go on, and a statement already logged still gets its receipt); submit \
     again later"
        .to_owned()
}

/// Watches the free space of the data directory's file systems against the reserve.
pub struct DiskGuard {
    /// One directory per file system (the log and each index may be mounted apart).
    dirs: Vec<PathBuf>,
    reserve: u64,
    measure: Measure,
    /// Whether the last check found the room short of the reserve.
    short: bool,
    /// Directories whose file system could not be measured, said once each in the log.
    unmeasured: HashSet<PathBuf>,
}

impl DiskGuard {
    /// A guard over `dirs`; two on one file system are measured once. A reserve of 0 refuses
    /// nothing (the space is still measured, for `/metrics`).
    pub fn new(dirs: &[PathBuf], reserve_mb: u64) -> DiskGuard {
        Self::with_measure(dirs, reserve_mb, statvfs)
    }

    /// [`DiskGuard::new`], measuring with `measure`.
    pub(crate) fn with_measure(dirs: &[PathBuf], reserve_mb: u64, measure: Measure) -> DiskGuard {
        let mut devices = HashSet::new();
        let dirs = dirs
            .iter()
            .filter(|dir| match rustix::fs::stat(dir.as_path()) {
                Ok(stat) => devices.insert(stat.st_dev),
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot find this directory: the disk reserve leaves its file system out");
                    false
                }
            })
            .cloned()
            .collect();
        DiskGuard {
            dirs,
            reserve: reserve_mb.saturating_mul(1024 * 1024),
            measure,
            short: false,
            unmeasured: HashSet::new(),
        }
    }

    /// Measures again, and logs each change between enough room and too little once. A file
    /// system that cannot be measured does not stop writes (if it is truly broken, the write
    /// itself fails and says why); that it cannot is logged once.
    pub fn check(&mut self) -> Room {
        let mut fullest: Option<(Space, &PathBuf)> = None;
        let mut inodes_short = false;
        for dir in &self.dirs {
            match (self.measure)(dir) {
                Ok(space) => {
                    self.unmeasured.remove(dir);
                    inodes_short |= space.inodes.is_some_and(|n| n < MIN_FREE_INODES);
                    if fullest.is_none_or(|(least, _)| space.bytes < least.bytes) {
                        fullest = Some((space, dir));
                    }
                }
                Err(e) => {
                    if self.unmeasured.insert(dir.clone()) {
                        tracing::warn!(dir = %dir.display(), error = %e, "cannot measure the free space of this directory's file system; the disk reserve does not count it");
                    }
                }
            }
        }
        // Short, the guard asks for a margin more before it takes statements again.
        let margin = if self.short && self.reserve > 0 {
            (self.reserve / 64).max(MIN_MARGIN)
        } else {
            0
        };
        let room = Room {
            free: fullest.map(|(space, _)| space.bytes),
            reserve: self.reserve.saturating_add(margin),
            inodes_short,
        };
        let short = room.short();
        match (self.short, short, fullest) {
            (false, true, Some((space, dir))) => tracing::warn!(
                dir = %dir.display(),
                free_bytes = space.bytes,
                free_inodes = space.inodes,
                reserve_bytes = self.reserve,
                "disk nearly full: new statements are refused until space is freed; reads go on"
            ),
            (true, false, Some((space, _))) => tracing::info!(
                free_bytes = space.bytes,
                reserve_bytes = self.reserve,
                margin_bytes = margin,
                "free space is above the reserve again: new statements are taken"
            ),
            (true, false, None) => {
                tracing::warn!("free space can no longer be measured: new statements are taken")
            }
            _ => {}
        }
        self.short = short;
        room
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    const MIB: u64 = 1024 * 1024;

    // What the fake measurements report, one static per test (tests run in parallel).
    static FREE_A: AtomicU64 = AtomicU64::new(0);
    static FREE_B: AtomicU64 = AtomicU64::new(0);
    static INODES_C: AtomicU64 = AtomicU64::new(0);

    fn dirs() -> (tempfile::TempDir, Vec<PathBuf>) {
        let root = tempfile::tempdir().expect("a temporary directory");
        let dirs = vec![root.path().join("log"), root.path().join("index")];
        for d in &dirs {
            std::fs::create_dir(d).expect("a directory");
        }
        (root, dirs)
    }

    fn bytes(bytes: u64) -> std::io::Result<Space> {
        Ok(Space {
            bytes,
            inodes: None,
        })
    }

    #[test]
    fn writes_stop_below_the_reserve_and_resume_once_space_is_freed() {
        let (_root, dirs) = dirs();
        let mut guard =
            DiskGuard::with_measure(&dirs, 256, |_| bytes(FREE_A.load(Ordering::SeqCst)));
        FREE_A.store(300 * MIB, Ordering::SeqCst);
        let room = guard.check();
        assert!(room.allows(0) && room.allows(44 * MIB));
        assert!(
            !room.allows(44 * MIB + 1),
            "a commit may not write into the reserve"
        );
        assert_eq!(room.free, Some(300 * MIB));

        // Short once the largest entry no longer fits above the reserve.
        FREE_A.store(256 * MIB + entry_cost(MAX_LEAF), Ordering::SeqCst);
        assert!(!guard.check().short());
        FREE_A.store(256 * MIB + entry_cost(MAX_LEAF) - 1, Ordering::SeqCst);
        let room = guard.check();
        assert!(
            room.short() && room.allows(entry_cost(100)),
            "small entries still fit"
        );
        FREE_A.store(256 * MIB - 1, Ordering::SeqCst);
        assert!(!guard.check().allows(0), "one byte below the reserve");
        assert!(
            !guard.check().allows(0),
            "refused while the disk is as full"
        );

        // Short, it waits for a margin (4 MiB, a 64th of 256) above the reserve.
        FREE_A.store(256 * MIB + entry_cost(MAX_LEAF), Ordering::SeqCst);
        let room = guard.check();
        assert!(
            room.short() && !room.allows(0),
            "just above the reserve is not enough"
        );
        FREE_A.store(260 * MIB + entry_cost(MAX_LEAF), Ordering::SeqCst);
        assert!(
            !guard.check().short(),
            "the reserve and its margin are free"
        );
        FREE_A.store(256 * MIB + entry_cost(MAX_LEAF), Ordering::SeqCst);
        assert!(
            !guard.check().short(),
            "no margin asked once taking statements again"
        );
    }

    #[test]
    fn the_fullest_file_system_decides_and_a_zero_reserve_never_refuses() {
        let (_root, dirs) = dirs();
        // The two directories are on one file system, so only one is measured.
        let guard = DiskGuard::with_measure(&dirs, 1, |_| bytes(0));
        assert_eq!(guard.dirs.len(), 1);

        let mut guard = DiskGuard::with_measure(&dirs, 0, |_| bytes(0));
        let room = guard.check();
        assert!(room.allows(u64::MAX), "a reserve of 0 turns the guard off");
        assert_eq!(room.free, Some(0), "but the space is still measured");

        // Measured per directory as if on two file systems: the one with less space decides.
        let mut guard = DiskGuard::with_measure(&dirs, 10, |_| bytes(0));
        guard.dirs = dirs.clone();
        guard.measure = |dir| {
            bytes(if dir.ends_with("index") {
                FREE_B.load(Ordering::SeqCst)
            } else {
                100 * MIB
            })
        };
        FREE_B.store(5 * MIB, Ordering::SeqCst);
        let room = guard.check();
        assert!(!room.allows(0), "the index's file system is short");
        assert_eq!(room.free, Some(5 * MIB));
    }

    #[test]
    fn too_few_free_inodes_stop_writes_too() {
        let (_root, dirs) = dirs();
        let mut guard = DiskGuard::with_measure(&dirs, 1, |_| {
            Ok(Space {
                bytes: 1 << 40,
                inodes: Some(INODES_C.load(Ordering::SeqCst)),
            })
        });
        INODES_C.store(MIN_FREE_INODES - 1, Ordering::SeqCst);
        assert!(!guard.check().allows(0));
        INODES_C.store(MIN_FREE_INODES, Ordering::SeqCst);
        assert!(guard.check().allows(0));
    }

    #[test]
    fn a_file_system_that_cannot_be_measured_does_not_stop_writes() {
        let (_root, dirs) = dirs();
        let mut guard = DiskGuard::with_measure(&dirs, 256, |_| {
            Err(std::io::Error::other("statvfs refused"))
        });
        let room = guard.check();
        assert!(room.allows(u64::MAX));
        assert_eq!(room.free, None);
        let missing = DiskGuard::new(&[PathBuf::from("/nonexistent/fairtrail")], 1);
        assert!(
            missing.dirs.is_empty(),
            "a directory that does not exist is left out"
        );
    }

    #[test]
    fn the_real_measurement_reads_this_file_system() {
        let (_root, dirs) = dirs();
        let space = statvfs(&dirs[0]).expect("statvfs works on a temporary directory");
        assert!(space.bytes > 0);
        // An impossible reserve is never met; none is always met.
        let room = DiskGuard::new(&dirs, u64::MAX / (1024 * 1024)).check();
        assert!(!room.allows(0), "no disk has exabytes free");
        assert!(room.free.is_some_and(|free| free > 0));
        assert!(DiskGuard::new(&dirs, 0).check().allows(0));
    }

    #[test]
    fn an_entry_is_charged_its_leaf_twice_and_a_commit_its_partial_bundle() {
        assert_eq!(entry_cost(500), 3048);
        assert_eq!(entry_cost(usize::MAX), u64::MAX);
        assert_eq!(commit_cost(100_000), 108_192);
        assert_eq!(commit_cost(u64::MAX), u64::MAX);
    }
}
