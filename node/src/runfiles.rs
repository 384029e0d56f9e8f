//! What the two run stores ([`crate::hashindex`], [`crate::statestore`]) share: how run files
//! are named and recognized, how the chain of runs from entry 0 is chosen among the valid
//! ones, and small file and lock helpers.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{
    Arc, Condvar, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard,
};

/// `{name}-{from:020}-{to:020}.run`: the run covering log entries `[from, to)`.
pub(crate) fn run_file_name(name: &str, from: u64, to: u64) -> String {
    format!("{name}-{from:020}-{to:020}.run")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileKind {
    Run { from: u64, to: u64 },
    Tmp,
}

/// Recognizes a store's files: `{name}-{from:020}-{to:020}.run` and
/// `{name}-{from:020}-{to:020}.run.{seq}.tmp`.
pub(crate) fn parse_file_name(file: &str, name: &str) -> Option<FileKind> {
    let rest = file.strip_prefix(name)?.strip_prefix('-')?;
    let range = rest.get(..41)?;
    let suffix = rest.get(41..)?;
    let from = parse_digits(range.get(..20)?)?;
    let to = parse_digits(range.get(21..)?)?;
    if range.get(20..21)? != "-" {
        return None;
    }
    if suffix == ".run" {
        return Some(FileKind::Run { from, to });
    }
    let seq = suffix.strip_prefix(".run.")?.strip_suffix(".tmp")?;
    (!seq.is_empty() && seq.bytes().all(|b| b.is_ascii_digit())).then_some(FileKind::Tmp)
}

fn parse_digits(text: &str) -> Option<u64> {
    if text.len() != 20 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// The files of the store `name` in `dir`.
pub(crate) fn list_run_files(dir: &Path, name: &str) -> io::Result<Vec<(PathBuf, FileKind)>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let file_name = entry.file_name();
        if let Some(kind) = file_name.to_str().and_then(|f| parse_file_name(f, name)) {
            files.push((entry.path(), kind));
        }
    }
    Ok(files)
}

/// A run's range of log entries, `[from, to)` with `from < to` (checked when loaded).
pub(crate) trait Span {
    fn from(&self) -> u64;
    fn to(&self) -> u64;
    /// Records in the run.
    fn records(&self) -> u64;
}

/// Splits valid runs into the chain from 0 (at each position the run reaching furthest) and
/// the rest (merge sources left by a crash, runs beyond a gap).
pub(crate) fn choose_chain<R: Span>(runs: Vec<R>) -> (Vec<R>, Vec<R>) {
    let mut best: BTreeMap<u64, R> = BTreeMap::new();
    let mut rest = Vec::new();
    for run in runs {
        match best.remove(&run.from()) {
            Some(other) if other.to() >= run.to() => {
                rest.push(run);
                best.insert(other.from(), other);
            }
            Some(other) => {
                rest.push(other);
                best.insert(run.from(), run);
            }
            None => {
                best.insert(run.from(), run);
            }
        }
    }
    let mut chain = Vec::new();
    let mut at = 0;
    while let Some(run) = best.remove(&at) {
        // Validation guarantees from < to, so this advances.
        at = run.to();
        chain.push(run);
    }
    rest.extend(best.into_values());
    (chain, rest)
}

pub(crate) fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Locks that a panic elsewhere does not poison for good: the state behind them is only
/// swapped whole, never left half-changed.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

/// What a store and its merge thread signal each other: merges asked for, one running, the
/// store closing (its last handle dropped).
#[derive(Default)]
pub(crate) struct MergeControl {
    flags: Mutex<MergeFlags>,
    cv: Condvar,
    closing: AtomicBool,
}

#[derive(Default)]
struct MergeFlags {
    pending: bool,
    running: bool,
}

impl MergeControl {
    /// Asks the merge thread to look for merges.
    pub(crate) fn request(&self) {
        lock(&self.flags).pending = true;
        self.cv.notify_all();
    }

    /// Tells the merge thread to exit (a merge in progress is abandoned).
    pub(crate) fn close(&self) {
        let _flags = lock(&self.flags);
        self.closing.store(true, Ordering::Release);
        self.cv.notify_all();
    }

    pub(crate) fn closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// Waits until no merge is running or asked for (tests and benchmarks).
    pub(crate) fn wait_idle(&self) {
        let mut flags = lock(&self.flags);
        while (flags.pending || flags.running) && !self.closing() {
            flags = self.cv.wait(flags).unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// The merge thread's loop: sleeps until asked, calls `merge`, and returns once closed.
    /// A panic in `merge` is reported as `store`'s and never leaves a merge marked running
    /// (waiters would wait for ever).
    pub(crate) fn run(&self, store: &str, merge: impl Fn()) {
        loop {
            {
                let mut flags = lock(&self.flags);
                while !flags.pending && !self.closing() {
                    flags = self.cv.wait(flags).unwrap_or_else(PoisonError::into_inner);
                }
                if self.closing() {
                    flags.pending = false;
                    self.cv.notify_all();
                    return;
                }
                flags.pending = false;
                flags.running = true;
            }
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(&merge)).is_err() {
                tracing::error!(store, "a merge panicked; its sources stay in place");
            }
            lock(&self.flags).running = false;
            self.cv.notify_all();
        }
    }
}

/// The size-tiered rule both stores merge by: the newest adjacent pair of runs (oldest
/// first in `runs`) whose older run holds at most twice the records of the newer. Not only
/// the two newest: flushes land while a merge runs, so a merged run can sit in the middle.
/// Merging until no pair qualifies leaves O(log n) runs.
pub(crate) fn pair_to_merge<R: Span>(runs: &[Arc<R>]) -> Option<(Arc<R>, Arc<R>)> {
    runs.windows(2).rev().find_map(|pair| match pair {
        [older, newer] if older.records() <= newer.records().saturating_mul(2) => {
            Some((Arc::clone(older), Arc::clone(newer)))
        }
        _ => None,
    })
}

/// `runs` with the adjacent pair `older`, `newer` replaced by `merged`; `None` if they are
/// no longer adjacent there (the list changed under the merge).
pub(crate) fn with_pair_merged<R>(
    runs: &[Arc<R>],
    older: &Arc<R>,
    newer: &Arc<R>,
    merged: Arc<R>,
) -> Option<Vec<Arc<R>>> {
    let at = runs.iter().position(|run| Arc::ptr_eq(run, older))?;
    if !runs.get(at + 1).is_some_and(|run| Arc::ptr_eq(run, newer)) {
        return None;
    }
    let mut out = Vec::with_capacity(runs.len() - 1);
    out.extend(runs.iter().take(at).cloned());
    out.push(merged);
    out.extend(runs.iter().skip(at + 2).cloned());
    Some(out)
}
