//! The disk reserve: the sequencer takes no new entries while the file system holding the
//! log or its indexes has less free space than the reserve, and takes them again by itself
//! once space is freed. Reads go on all the while.
//!
//! A write refused for want of space is fatal to the sequencer (the disk may then be ahead of
//! the checkpoint; SPEC.md 9.3), and a node on a full disk cannot even start again: opening
//! the indexes writes. The reserve keeps the node short of that point: it keeps serving
//! retailers and consumers, answers a submission already in the log with its receipt, and
//! refuses new ones with `RESOURCE_EXHAUSTED`, which tells producers to try again later.
//! What it keeps back also lets the node stop and start again cleanly (the indexes write
//! what they hold in memory at shutdown, and sled writes at open).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// The default reserve, in mebibytes: well over what one group commit (at most 4,096
/// entries of at most 64 KiB, 256 MiB in the worst case, a few MiB in practice) and a
/// shutdown and restart write.
pub const DEFAULT_RESERVE_MB: u64 = 256;

/// Space below the reserve, as last measured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Low {
    /// The directory on the fullest file system.
    pub dir: PathBuf,
    pub free: u64,
    pub reserve: u64,
}

impl Low {
    /// What a refused submitter is told.
    pub fn message(&self) -> String {
        format!(
            "the node's disk is nearly full ({} free, {} kept in reserve): it takes no new \
             entries until its operator frees space; reads go on, and a statement already \
             logged still gets its receipt. Submit again later",
            mib(self.free),
            mib(self.reserve),
        )
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// How free space is measured: bytes available to the node's user on the file system of a
/// path (statvfs `f_bavail` blocks of `f_frsize` bytes).
pub type Measure = fn(&Path) -> std::io::Result<u64>;

/// Free space on the file system holding `path`.
pub fn available(path: &Path) -> std::io::Result<u64> {
    let stats = rustix::fs::statvfs(path)?;
    Ok(stats.f_bavail.saturating_mul(stats.f_frsize))
}

/// Watches the free space of the data directory's file systems against the reserve.
pub struct DiskGuard {
    /// One directory per file system (the log and each index may be mounted apart).
    dirs: Vec<PathBuf>,
    reserve: u64,
    measure: Measure,
    /// The last measurement below the reserve, if the last one was.
    low: Option<Low>,
    /// The least free space at the last measurement, for `/metrics`.
    free: Option<u64>,
}

impl DiskGuard {
    /// A guard over `dirs` (those that do not exist are left out; two on one file system are
    /// measured once). A reserve of 0 turns the guard off.
    pub fn new(dirs: &[PathBuf], reserve_mb: u64) -> DiskGuard {
        Self::with_measure(dirs, reserve_mb, available)
    }

    pub fn with_measure(dirs: &[PathBuf], reserve_mb: u64, measure: Measure) -> DiskGuard {
        let mut devices = HashSet::new();
        let dirs = dirs
            .iter()
            .filter(|dir| match rustix::fs::stat(dir.as_path()) {
                Ok(stat) => devices.insert(stat.st_dev),
                Err(_) => false,
            })
            .cloned()
            .collect();
        DiskGuard {
            dirs,
            reserve: reserve_mb.saturating_mul(1024 * 1024),
            measure,
            low: None,
            free: None,
        }
    }

    /// Measures again. Returns the shortfall if free space is below the reserve; logs each
    /// change between the two states once. A file system that cannot be measured does not
    /// stop writes: if it is truly broken, the write itself fails and says why.
    pub fn check(&mut self) -> Option<&Low> {
        if self.reserve == 0 {
            return None;
        }
        let mut least: Option<(u64, &PathBuf)> = None;
        for dir in &self.dirs {
            match (self.measure)(dir) {
                Ok(free) if least.is_none_or(|(l, _)| free < l) => least = Some((free, dir)),
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(dir = %dir.display(), error = %e, "cannot measure free space")
                }
            }
        }
        self.free = least.map(|(free, _)| free);
        let low = least
            .filter(|(free, _)| *free < self.reserve)
            .map(|(free, dir)| Low {
                dir: dir.clone(),
                free,
                reserve: self.reserve,
            });
        match (&self.low, &low) {
            (None, Some(now)) => tracing::warn!(
                dir = %now.dir.display(),
                free_bytes = now.free,
                reserve_bytes = now.reserve,
                "disk nearly full: new submissions are refused until space is freed; reads go on"
            ),
            (Some(_), None) => tracing::info!(
                free_bytes = self.free.unwrap_or(0),
                reserve_bytes = self.reserve,
                "free space is above the reserve again: new submissions are taken"
            ),
            _ => {}
        }
        self.low = low;
        self.low.as_ref()
    }

    /// Free bytes on the fullest file system at the last check (`None` before the first, or
    /// when nothing could be measured).
    pub fn free(&self) -> Option<u64> {
        self.free
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    const MIB: u64 = 1024 * 1024;

    // The free space the fake measurement reports, per test (tests run in parallel).
    static FREE_A: AtomicU64 = AtomicU64::new(0);
    static FREE_B: AtomicU64 = AtomicU64::new(0);

    fn dirs() -> (tempfile::TempDir, Vec<PathBuf>) {
        let root = tempfile::tempdir().expect("a temporary directory");
        let dirs = vec![root.path().join("log"), root.path().join("index")];
        for d in &dirs {
            std::fs::create_dir(d).expect("a directory");
        }
        (root, dirs)
    }

    #[test]
    fn writes_stop_below_the_reserve_and_resume_once_space_is_freed() {
        let (_root, dirs) = dirs();
        let mut guard = DiskGuard::with_measure(&dirs, 256, |_| Ok(FREE_A.load(Ordering::SeqCst)));
        FREE_A.store(300 * MIB, Ordering::SeqCst);
        assert_eq!(guard.check(), None);
        assert_eq!(guard.free(), Some(300 * MIB));

        FREE_A.store(256 * MIB - 1, Ordering::SeqCst);
        let low = guard.check().cloned().expect("one byte below the reserve");
        assert_eq!((low.free, low.reserve), (256 * MIB - 1, 256 * MIB));
        assert!(
            low.message().contains("256.0 MiB kept in reserve"),
            "{}",
            low.message()
        );
        assert!(
            guard.check().is_some(),
            "it stays refused while the disk is as full"
        );

        FREE_A.store(256 * MIB, Ordering::SeqCst);
        assert_eq!(guard.check(), None, "exactly the reserve free is enough");
    }

    #[test]
    fn the_fullest_file_system_decides_and_a_zero_reserve_never_refuses() {
        let (_root, dirs) = dirs();
        // The two directories are on one file system, so only one is measured.
        let guard = DiskGuard::with_measure(&dirs, 1, |_| Ok(0));
        assert_eq!(guard.dirs.len(), 1);

        let mut guard = DiskGuard::with_measure(&dirs, 0, |_| Ok(0));
        assert_eq!(guard.check(), None, "a reserve of 0 turns the guard off");

        // Measured per directory as if on two file systems: the one with less space decides.
        let mut guard = DiskGuard::with_measure(&dirs, 10, |_| Ok(0));
        guard.dirs = dirs.clone();
        guard.measure = |dir| {
            Ok(if dir.ends_with("index") {
                FREE_B.load(Ordering::SeqCst)
            } else {
                100 * MIB
            })
        };
        FREE_B.store(5 * MIB, Ordering::SeqCst);
        let low = guard
            .check()
            .cloned()
            .expect("the index's file system is short");
        assert!(low.dir.ends_with("index"));
        assert_eq!(guard.free(), Some(5 * MIB));
    }

    #[test]
    fn a_file_system_that_cannot_be_measured_does_not_stop_writes() {
        let (_root, dirs) = dirs();
        let mut guard = DiskGuard::with_measure(&dirs, 256, |_| {
            Err(std::io::Error::other("statvfs refused"))
        });
        assert_eq!(guard.check(), None);
        assert_eq!(guard.free(), None);
        let missing =
            DiskGuard::with_measure(&[PathBuf::from("/nonexistent/fairtrail")], 1, available);
        assert!(
            missing.dirs.is_empty(),
            "a directory that does not exist is left out"
        );
    }

    #[test]
    fn the_real_measurement_reads_this_file_system() {
        let (_root, dirs) = dirs();
        let free = available(&dirs[0]).expect("statvfs works on a temporary directory");
        // An impossible reserve is never met; none is always met.
        let mut guard = DiskGuard::new(&dirs, u64::MAX / (1024 * 1024));
        let low = guard.check().cloned().expect("no disk has exabytes free");
        assert!(low.free > 0 && free > 0);
        assert!(DiskGuard::new(&dirs, 0).check().is_none());
    }
}
