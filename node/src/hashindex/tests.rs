//! The hash index against a `HashMap` model: memtable, runs, merges, reopening, crashes,
//! corrupted and leftover files, concurrency.

use super::*;
use crate::runfiles::parse_file_name;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

const NAME: &str = "stmt";

/// A uniform key for log entry `i`.
fn key(i: u64) -> [u8; 32] {
    *blake3::hash(&i.to_le_bytes()).as_bytes()
}

/// A uniform key never inserted.
fn absent(i: u64) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"absent");
    hasher.update(&i.to_le_bytes());
    *hasher.finalize().as_bytes()
}

fn open(dir: &Path, flush_every: usize) -> HashIndex {
    HashIndex::open_with(dir, NAME, flush_every).unwrap()
}

/// Indexes entries `range`, each with its own key, in batches of `batch`.
fn fill(index: &HashIndex, range: std::ops::Range<u64>, batch: u64) {
    let mut at = range.start;
    while at < range.end {
        let end = (at + batch).min(range.end);
        let items: Vec<_> = (at..end).map(|i| (key(i), i)).collect();
        index.insert(&items, end).unwrap();
        at = end;
    }
}

fn assert_present(index: &HashIndex, range: std::ops::Range<u64>) {
    for i in range {
        assert_eq!(index.get(&key(i)).unwrap(), Some(i), "entry {i}");
    }
}

fn assert_missing(index: &HashIndex, range: std::ops::Range<u64>) {
    for i in range {
        assert_eq!(index.get(&key(i)).unwrap(), None, "entry {i}");
    }
}

fn assert_absent_keys(index: &HashIndex, n: u64) {
    for i in 0..n {
        assert_eq!(index.get(&absent(i)).unwrap(), None);
    }
}

/// This index's run files, by range.
fn run_files(dir: &Path) -> Vec<(u64, u64, PathBuf)> {
    let mut runs: Vec<_> = own_files(dir, NAME)
        .unwrap()
        .into_iter()
        .filter_map(|(path, kind)| match kind {
            FileKind::Run { from, to } => Some((from, to, path)),
            FileKind::Tmp => None,
        })
        .collect();
    runs.sort();
    runs
}

/// After merges settle, every run holds more than twice the entries of the next newer one
/// (so there are O(log n) runs).
fn assert_tiered(index: &HashIndex) {
    let counts: Vec<u64> = read(&index.inner.shared.state)
        .runs
        .iter()
        .map(|run| run.count)
        .collect();
    for pair in counts.windows(2) {
        assert!(pair[0] > 2 * pair[1], "run sizes {counts:?}");
    }
}

fn ranges(dir: &Path) -> Vec<(u64, u64)> {
    run_files(dir)
        .into_iter()
        .map(|(from, to, _)| (from, to))
        .collect()
}

/// Writes a run file by hand; `fix_checksum` false leaves the checksum zero.
fn write_raw_run(dir: &Path, from: u64, to: u64, records: &[([u8; 32], u64)]) -> PathBuf {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&from.to_be_bytes());
    bytes.extend_from_slice(&to.to_be_bytes());
    bytes.extend_from_slice(&(records.len() as u64).to_be_bytes());
    for (key, value) in records {
        bytes.extend_from_slice(key);
        bytes.extend_from_slice(&value.to_be_bytes());
    }
    let checksum = blake3::hash(&bytes);
    bytes.extend_from_slice(checksum.as_bytes());
    let path = dir.join(run_file_name(NAME, from, to));
    fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn handles_are_send_sync_and_clone() {
    fn check<T: Send + Sync + Clone>() {}
    check::<HashIndex>();
}

#[test]
fn hits_and_misses_across_memtable_runs_merges_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let index = open(dir.path(), 100);
    assert_eq!(index.applied(), 0);
    assert_eq!(index.get(&key(0)).unwrap(), None);

    fill(&index, 0..1050, 7);
    assert_eq!(index.applied(), 1050);
    // Possibly before any merge: memtable plus several runs.
    assert_present(&index, 0..1050);
    assert_missing(&index, 1050..1100);
    assert_absent_keys(&index, 1000);
    let stats = index.stats();
    assert_eq!(stats.run_entries + stats.memtable_entries, 1050);
    assert!(stats.memtable_entries < 100, "{stats:?}");

    index.wait_for_merges();
    let stats = index.stats();
    assert_tiered(&index);
    assert_eq!(stats.runs, run_files(dir.path()).len());
    assert_present(&index, 0..1050);
    assert_absent_keys(&index, 1000);

    index.flush().unwrap();
    index.wait_for_merges();
    assert_eq!(index.stats().memtable_entries, 0);
    drop(index);

    let index = open(dir.path(), 100);
    assert_eq!(index.applied(), 1050);
    assert_present(&index, 0..1050);
    assert_missing(&index, 1050..1100);
    assert_absent_keys(&index, 1000);
    assert_eq!(index.stats().run_entries, 1050);
}

#[test]
fn runs_chain_contiguously_from_zero() {
    let dir = tempfile::tempdir().unwrap();
    let index = open(dir.path(), 64);
    fill(&index, 0..5000, 13);
    index.flush().unwrap();
    index.wait_for_merges();
    let ranges = ranges(dir.path());
    assert_eq!(ranges.first().map(|r| r.0), Some(0));
    assert_eq!(ranges.last().map(|r| r.1), Some(5000));
    for pair in ranges.windows(2) {
        assert_eq!(pair[0].1, pair[1].0, "{ranges:?}");
    }
    // ~77 flushes, many while a merge was running.
    assert_tiered(&index);
    assert_eq!(index.stats().run_entries, 5000);
}

#[test]
fn crash_without_flush_replays_the_lost_range() {
    let dir = tempfile::tempdir().unwrap();
    let index = open(dir.path(), 100);
    fill(&index, 0..1050, 1);
    drop(index); // no flush: the memtable (entries 1000..1050) is lost

    let index = open(dir.path(), 100);
    assert_eq!(index.applied(), 1000);
    assert_present(&index, 0..1000);
    assert_missing(&index, 1000..1050);

    // The caller replays from an earlier point; what is below applied is skipped.
    fill(&index, 900..1050, 16);
    assert_eq!(index.applied(), 1050);
    assert_present(&index, 0..1050);
    index.flush().unwrap();
    drop(index);

    let index = open(dir.path(), 100);
    assert_eq!(index.applied(), 1050);
    assert_present(&index, 0..1050);
}

#[test]
fn insert_skips_items_below_applied() {
    let dir = tempfile::tempdir().unwrap();
    let index = open(dir.path(), 100);
    index.insert(&[(key(1), 5)], 10).unwrap();
    // Below applied = 10: already indexed, skipped.
    index.insert(&[(key(2), 3), (key(3), 10)], 12).unwrap();
    assert_eq!(index.get(&key(2)).unwrap(), None);
    assert_eq!(index.get(&key(3)).unwrap(), Some(10));
    // Applied never moves backwards.
    index.insert(&[], 4).unwrap();
    assert_eq!(index.applied(), 12);
    // A key already present keeps its lower value.
    index.insert(&[(key(1), 12)], 13).unwrap();
    assert_eq!(index.get(&key(1)).unwrap(), Some(5));
    // Within one batch too.
    index.insert(&[(key(4), 20), (key(4), 14)], 21).unwrap();
    assert_eq!(index.get(&key(4)).unwrap(), Some(14));
}

#[test]
fn duplicate_key_keeps_the_lower_value_across_runs_and_merges() {
    let dir = tempfile::tempdir().unwrap();
    let index = open(dir.path(), 1000);
    let dup = absent(7);
    index.insert(&[(dup, 0)], 1).unwrap();
    fill(&index, 1..100, 10);
    index.flush().unwrap();
    index.wait_for_merges();
    index.insert(&[(dup, 100)], 101).unwrap();
    // Memtable says 100, the run says 0.
    assert_eq!(index.get(&dup).unwrap(), Some(0));
    fill(&index, 101..200, 10);
    index.flush().unwrap();
    index.wait_for_merges();
    // The two runs (100 entries each) merged into one, dropping the duplicate: the merge
    // fixed its header count and re-hashed.
    assert_eq!(ranges(dir.path()), vec![(0, 200)]);
    let stats = index.stats();
    assert_eq!((stats.runs, stats.run_entries), (1, 199));
    assert_eq!(index.get(&dup).unwrap(), Some(0));
    assert_present(&index, 1..100);
    assert_present(&index, 101..200);
    drop(index);

    let index = open(dir.path(), 1000);
    assert_eq!(index.applied(), 200);
    assert_eq!(index.stats().run_entries, 199);
    assert_eq!(index.get(&dup).unwrap(), Some(0));
    assert_present(&index, 101..200);
}

#[test]
fn merge_keeps_the_lower_value_whichever_run_holds_it() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (absent(1), absent(2));
    let mut older = vec![(a, 5), (b, 1)];
    older.sort();
    let mut newer = vec![(a, 2), (b, 7)];
    newer.sort();
    write_raw_run(dir.path(), 0, 10, &older);
    write_raw_run(dir.path(), 10, 20, &newer);
    let index = open(dir.path(), 100);
    index.wait_for_merges();
    assert_eq!(ranges(dir.path()), vec![(0, 20)]);
    assert_eq!(index.get(&a).unwrap(), Some(2));
    assert_eq!(index.get(&b).unwrap(), Some(1));
    drop(index);
    let index = open(dir.path(), 100);
    assert_eq!(index.get(&a).unwrap(), Some(2));
    assert_eq!(index.get(&b).unwrap(), Some(1));
}

/// Two runs, [0, 300) and [300, 400), that do not merge (300 > 2 × 100).
fn two_runs(dir: &Path) -> Vec<(u64, u64, PathBuf)> {
    let index = open(dir, 1000);
    fill(&index, 0..300, 10);
    index.flush().unwrap();
    fill(&index, 300..400, 10);
    index.flush().unwrap();
    index.wait_for_merges();
    drop(index);
    let runs = run_files(dir);
    assert_eq!(
        runs.iter().map(|r| (r.0, r.1)).collect::<Vec<_>>(),
        vec![(0, 300), (300, 400)]
    );
    runs
}

fn flip_byte(path: &Path, at: u64) {
    let mut bytes = fs::read(path).unwrap();
    bytes[at as usize] ^= 0x40;
    fs::write(path, bytes).unwrap();
}

#[test]
fn a_run_with_a_flipped_byte_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let runs = two_runs(dir.path());
    let newest = &runs[1].2;
    flip_byte(newest, fs::metadata(newest).unwrap().len() / 2);

    let index = open(dir.path(), 1000);
    assert_eq!(index.applied(), 300);
    assert_present(&index, 0..300);
    assert_missing(&index, 300..400);
    assert_eq!(ranges(dir.path()), vec![(0, 300)]);
    fill(&index, 300..400, 10);
    assert_present(&index, 0..400);
}

#[test]
fn a_truncated_run_is_ignored_and_the_chain_stops_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let runs = two_runs(dir.path());
    let oldest = &runs[0].2;
    let file = OpenOptions::new().write(true).open(oldest).unwrap();
    file.set_len(fs::metadata(oldest).unwrap().len() - 41)
        .unwrap();
    drop(file);

    let index = open(dir.path(), 1000);
    // [300, 400) no longer chains from 0: discarded too.
    assert_eq!(index.applied(), 0);
    assert_missing(&index, 0..400);
    assert!(ranges(dir.path()).is_empty());
}

#[test]
fn malformed_run_files_are_ignored_without_panicking() {
    let dir = tempfile::tempdir().unwrap();
    let good = write_raw_run(dir.path(), 0, 10, &[(absent(0), 3)]);
    let good_bytes = fs::read(&good).unwrap();
    type Damage = Box<dyn Fn(&Path)>;
    let cases: Vec<(&str, Damage)> = vec![
        ("empty", Box::new(|p: &Path| fs::write(p, b"").unwrap())),
        (
            "short",
            Box::new(|p: &Path| fs::write(p, b"FTHXRUN1\0\0").unwrap()),
        ),
        (
            "bad magic",
            Box::new(|p: &Path| {
                let mut bytes = fs::read(p).unwrap();
                bytes[0] = b'X';
                fs::write(p, bytes).unwrap();
            }),
        ),
        (
            "huge count",
            Box::new(|p: &Path| {
                let mut bytes = fs::read(p).unwrap();
                bytes[24..32].copy_from_slice(&u64::MAX.to_be_bytes());
                fs::write(p, bytes).unwrap();
            }),
        ),
        (
            "checksum",
            Box::new(|p: &Path| {
                let mut bytes = fs::read(p).unwrap();
                let last = bytes.len() - 1;
                bytes[last] ^= 1;
                fs::write(p, bytes).unwrap();
            }),
        ),
        (
            "trailing bytes",
            Box::new(|p: &Path| {
                let mut bytes = fs::read(p).unwrap();
                bytes.push(0);
                fs::write(p, bytes).unwrap();
            }),
        ),
    ];
    for (what, damage) in &cases {
        fs::write(&good, &good_bytes).unwrap();
        damage(&good);
        let index = open(dir.path(), 100);
        assert_eq!(index.applied(), 0, "{what}");
        assert_eq!(index.get(&absent(0)).unwrap(), None, "{what}");
        assert!(!good.exists(), "{what}: invalid file deleted");
    }

    // Valid checksum, but keys out of order.
    let mut records = vec![(absent(1), 1), (absent(2), 2)];
    records.sort();
    records.reverse();
    write_raw_run(dir.path(), 0, 10, &records);
    assert_eq!(open(dir.path(), 100).applied(), 0);
    // Valid checksum, duplicate keys.
    write_raw_run(dir.path(), 0, 10, &[(absent(1), 1), (absent(1), 2)]);
    assert_eq!(open(dir.path(), 100).applied(), 0);
    // Valid checksum, empty range.
    write_raw_run(dir.path(), 5, 5, &[]);
    assert_eq!(open(dir.path(), 100).applied(), 0);
    // Valid file under a name that differs from its header.
    let path = write_raw_run(dir.path(), 0, 10, &[(absent(1), 1)]);
    fs::rename(&path, dir.path().join(run_file_name(NAME, 0, 11))).unwrap();
    assert_eq!(open(dir.path(), 100).applied(), 0);
    assert!(ranges(dir.path()).is_empty());
}

#[test]
fn a_run_truncated_while_open_gives_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let index = open(dir.path(), 100_000);
    fill(&index, 0..2000, 100);
    index.flush().unwrap();
    let (_, _, path) = run_files(dir.path()).remove(0);
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(100)
        .unwrap();
    let errors = (0..2000).filter(|&i| index.get(&key(i)).is_err()).count();
    assert!(errors > 1900, "{errors}");
    let message = index.get(&key(1999)).unwrap_err().to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
}

#[test]
fn merge_sources_left_beside_their_output_are_discarded() {
    let dir = tempfile::tempdir().unwrap();
    let index = open(dir.path(), 1000);
    fill(&index, 0..100, 10);
    index.flush().unwrap();
    index.wait_for_merges();
    fill(&index, 100..200, 10);
    index.flush().unwrap();
    index.wait_for_merges();
    assert_eq!(ranges(dir.path()), vec![(0, 200)]);
    drop(index);

    // A crash between renaming the merged run and deleting its sources (and mid-merge).
    let first = write_raw_run(
        dir.path(),
        0,
        100,
        &sorted((0..100).map(|i| (key(i), i)).collect()),
    );
    let second = write_raw_run(
        dir.path(),
        100,
        200,
        &sorted((100..200).map(|i| (key(i), i)).collect()),
    );
    let tmp = dir
        .path()
        .join(format!("{}.3.tmp", run_file_name(NAME, 0, 200)));
    fs::write(&tmp, b"half a merge").unwrap();

    let index = open(dir.path(), 1000);
    assert_eq!(index.applied(), 200);
    assert_eq!(ranges(dir.path()), vec![(0, 200)]);
    assert!(!first.exists() && !second.exists() && !tmp.exists());
    assert_present(&index, 0..200);
    drop(index);

    // If the merged run is the damaged one, the chain falls back to the sources.
    let merged = run_files(dir.path()).remove(0).2;
    write_raw_run(
        dir.path(),
        0,
        100,
        &sorted((0..100).map(|i| (key(i), i)).collect()),
    );
    write_raw_run(
        dir.path(),
        100,
        200,
        &sorted((100..200).map(|i| (key(i), i)).collect()),
    );
    flip_byte(&merged, 100);
    let index = open(dir.path(), 1000);
    assert_eq!(index.applied(), 200);
    assert_present(&index, 0..200);
    index.wait_for_merges();
    assert_eq!(ranges(dir.path()), vec![(0, 200)]);
}

fn sorted(mut records: Vec<([u8; 32], u64)>) -> Vec<([u8; 32], u64)> {
    records.sort();
    records
}

#[test]
fn other_files_in_the_directory_are_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let foreign = [
        "notes.txt".to_owned(),
        run_file_name("leaf", 0, 10),
        format!("{}.7.tmp", run_file_name("leaf", 0, 10)),
        format!("{NAME}-1-2.run"),
        format!("{NAME}-{:020}-{:020}.run.tmp", 0, 10),
    ];
    for name in &foreign {
        fs::write(dir.path().join(name), b"x").unwrap();
    }
    let index = open(dir.path(), 10);
    fill(&index, 0..95, 3);
    index.flush().unwrap();
    index.wait_for_merges();
    drop(index);
    let index = open(dir.path(), 10);
    assert_eq!(index.applied(), 95);
    for name in &foreign {
        assert!(dir.path().join(name).exists(), "{name}");
    }
    index.clear().unwrap();
    for name in &foreign {
        assert!(dir.path().join(name).exists(), "{name}");
    }
}

#[test]
fn file_names_parse() {
    let run = run_file_name("stmt", 3, 1 << 40);
    assert_eq!(run, "stmt-00000000000000000003-00000001099511627776.run");
    assert_eq!(
        parse_file_name(&run, "stmt"),
        Some(FileKind::Run {
            from: 3,
            to: 1 << 40
        })
    );
    assert_eq!(
        parse_file_name(&format!("{run}.12.tmp"), "stmt"),
        Some(FileKind::Tmp)
    );
    assert_eq!(parse_file_name(&run, "leaf"), None);
    assert_eq!(parse_file_name(&run, "stm"), None);
    let malformed = [
        run.replace("-0000000000000000000", "-000000000000000000"),
        run.replace("00000000000000000003-", "00000000000000000003x"),
        run.replace("00000000000000000003", "99999999999999999999"),
        format!("{run}x"),
        format!("{run}.tmp"),
        format!("{run}..tmp"),
        format!("{run}.1a.tmp"),
        run.replace(".run", ".rum"),
    ];
    for other in &malformed {
        assert_eq!(parse_file_name(other, "stmt"), None, "{other}");
    }
}

#[test]
fn applied_survives_entries_without_keys() {
    let dir = tempfile::tempdir().unwrap();
    let index = open(dir.path(), 100);
    index.insert(&[], 10).unwrap();
    index.flush().unwrap();
    index.insert(&[(key(10), 10)], 11).unwrap();
    index.insert(&[], 30).unwrap();
    index.flush().unwrap();
    // Nothing new: no run.
    index.flush().unwrap();
    index.wait_for_merges();
    drop(index);
    let index = open(dir.path(), 100);
    assert_eq!(index.applied(), 30);
    assert_eq!(index.get(&key(10)).unwrap(), Some(10));
    assert_eq!(index.stats().run_entries, 1);
}

#[test]
fn keys_sharing_their_first_eight_bytes_are_all_found() {
    let dir = tempfile::tempdir().unwrap();
    let index = open(dir.path(), 100_000);
    let shared = |i: u64| {
        let mut k = key(i);
        k[..8].copy_from_slice(&[0x77; 8]);
        k
    };
    // 1000 keys with one prefix straddle several fences, among 3000 ordinary keys.
    let items: Vec<_> = (0..4000)
        .map(|i| (if i % 4 == 0 { key(i) } else { shared(i) }, i))
        .collect();
    index.insert(&items, 4000).unwrap();
    index.flush().unwrap();
    let check = |index: &HashIndex| {
        for &(k, v) in &items {
            assert_eq!(index.get(&k).unwrap(), Some(v));
        }
        for i in 4000..4100 {
            assert_eq!(index.get(&shared(i)).unwrap(), None);
        }
    };
    check(&index);
    drop(index);
    // The fences are rebuilt from the file.
    check(&open(dir.path(), 100_000));
}

#[test]
fn clear_forgets_everything() {
    let dir = tempfile::tempdir().unwrap();
    let index = open(dir.path(), 50);
    fill(&index, 0..500, 9);
    index.clear().unwrap();
    assert_eq!(index.applied(), 0);
    assert_missing(&index, 0..500);
    let stats = index.stats();
    assert_eq!(
        (stats.runs, stats.run_entries, stats.memtable_entries),
        (0, 0, 0)
    );
    index.wait_for_merges();
    assert!(own_files(dir.path(), NAME).unwrap().is_empty());

    fill(&index, 0..120, 9);
    index.flush().unwrap();
    index.wait_for_merges();
    drop(index);
    let index = open(dir.path(), 50);
    assert_eq!(index.applied(), 120);
    assert_present(&index, 0..120);
}

#[test]
fn concurrent_readers_never_miss_an_inserted_key() {
    let dir = tempfile::tempdir().unwrap();
    let index = open(dir.path(), 97);
    let published = AtomicU64::new(0);
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        for seed in 1..=2u64 {
            let (index, published, done) = (index.clone(), &published, &done);
            scope.spawn(move || {
                let mut rng = XorShift(seed);
                while !done.load(Ordering::Acquire) {
                    let n = published.load(Ordering::Acquire);
                    if n > 0 {
                        let i = rng.below(n);
                        assert_eq!(index.get(&key(i)).unwrap(), Some(i), "entry {i}");
                    }
                    assert_eq!(index.get(&absent(rng.next())).unwrap(), None);
                }
            });
        }
        let mut at = 0;
        while at < 20_000 {
            let end = at + 11;
            let items: Vec<_> = (at..end).map(|i| (key(i), i)).collect();
            index.insert(&items, end).unwrap();
            published.store(end, Ordering::Release);
            at = end;
        }
        index.wait_for_merges();
        done.store(true, Ordering::Release);
    });
}

/// A tiny deterministic generator for the randomized tests.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The log as the model sees it: entry i has `log[i]` as its key (or none).
struct Model {
    log: Vec<Option<[u8; 32]>>,
}

impl Model {
    /// The first index of every key among entries `[0, applied)`.
    fn expected(&self, applied: u64) -> HashMap<[u8; 32], u64> {
        let mut map = HashMap::new();
        for (i, k) in self.log.iter().enumerate().take(applied as usize) {
            if let Some(k) = k {
                map.entry(*k).or_insert(i as u64);
            }
        }
        map
    }

    /// Feeds entries `[from, to)` to the index in random batches.
    fn replay(&self, index: &HashIndex, rng: &mut XorShift, from: u64, to: u64) {
        let mut at = from;
        while at < to {
            let end = (at + 1 + rng.below(40)).min(to);
            let items: Vec<_> = (at..end)
                .filter_map(|i| self.log[i as usize].map(|k| (k, i)))
                .collect();
            index.insert(&items, end).unwrap();
            at = end;
        }
    }

    fn check(&self, index: &HashIndex, rng: &mut XorShift) {
        let applied = index.applied();
        let expected = self.expected(applied);
        for (k, v) in &expected {
            assert_eq!(index.get(k).unwrap(), Some(*v));
        }
        // Keys of entries beyond applied, and keys never logged.
        for k in self.log.iter().skip(applied as usize).flatten() {
            assert_eq!(index.get(k).unwrap(), expected.get(k).copied());
        }
        for _ in 0..2000 {
            assert_eq!(index.get(&absent(rng.next())).unwrap(), None);
        }
    }
}

fn randomized_against_a_hash_map(seed: u64) {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = XorShift(seed);
    let mut model = Model { log: Vec::new() };
    for i in 0..20_000u64 {
        let entry = match rng.below(20) {
            0 => None,                                                       // no key
            1 if i > 0 => model.log[rng.below(i) as usize].or(Some(key(i))), // a repeat
            _ => Some(key(i)),
        };
        model.log.push(entry);
    }
    let total = model.log.len() as u64;

    let mut index = open(dir.path(), 257);
    model.replay(&index, &mut rng, 0, 8000);
    model.check(&index, &mut rng);

    // Crash: the memtable is lost; replay resumes a little before applied.
    drop(index);
    index = open(dir.path(), 257);
    let applied = index.applied();
    assert!(applied <= 8000 && applied + 257 * 2 >= 8000, "{applied}");
    model.check(&index, &mut rng);
    model.replay(&index, &mut rng, applied.saturating_sub(300), 14_000);
    index.wait_for_merges();
    model.check(&index, &mut rng);

    // Clean shutdown.
    index.flush().unwrap();
    drop(index);
    index = open(dir.path(), 257);
    assert_eq!(index.applied(), 14_000);
    model.replay(&index, &mut rng, 14_000, total);
    model.check(&index, &mut rng);
    index.flush().unwrap();
    index.wait_for_merges();
    model.check(&index, &mut rng);
    // Every distinct key is in some run; a repeated key may sit in two runs until they merge.
    let stats = index.stats();
    assert!(stats.run_entries >= model.expected(total).len() as u64);
    assert_eq!(stats.memtable_entries, 0);
    assert_tiered(&index);
}

#[test]
fn randomized_against_a_hash_map_seed_1() {
    randomized_against_a_hash_map(0x9e37_79b9_7f4a_7c15);
}

#[test]
fn randomized_against_a_hash_map_seed_2() {
    randomized_against_a_hash_map(42);
}

/// A quick speed check, not a benchmark:
/// `cargo test --release -p fairtrail-node --lib hashindex -- --ignored --nocapture`.
#[test]
#[ignore]
fn speed_sanity_check() {
    const N: u64 = 2_000_000;
    const LOOKUPS: u64 = 200_000;
    let dir = tempfile::tempdir().unwrap();
    let index = HashIndex::open(dir.path(), NAME).unwrap();
    let mut rng = XorShift(7);
    let random_key = |rng: &mut XorShift| {
        let mut k = [0u8; 32];
        for word in k.chunks_exact_mut(8) {
            word.copy_from_slice(&rng.next().to_le_bytes());
        }
        k
    };
    let keys: Vec<[u8; 32]> = (0..N).map(|_| random_key(&mut rng)).collect();

    let started = Instant::now();
    for (batch, chunk) in keys.chunks(1000).enumerate() {
        let base = batch as u64 * 1000;
        let items: Vec<_> = chunk
            .iter()
            .enumerate()
            .map(|(i, k)| (*k, base + i as u64))
            .collect();
        index.insert(&items, base + chunk.len() as u64).unwrap();
    }
    let insert = started.elapsed();
    let started = Instant::now();
    index.flush().unwrap();
    index.wait_for_merges();
    let settle = started.elapsed();
    let stats = index.stats();

    let started = Instant::now();
    for _ in 0..LOOKUPS {
        assert_eq!(index.get(&random_key(&mut rng)).unwrap(), None);
    }
    let negative = started.elapsed();
    let started = Instant::now();
    for _ in 0..LOOKUPS {
        let i = rng.below(N);
        assert_eq!(index.get(&keys[i as usize]).unwrap(), Some(i));
    }
    let positive = started.elapsed();

    let started = Instant::now();
    drop(index);
    let index = HashIndex::open(dir.path(), NAME).unwrap();
    let reopen = started.elapsed();
    assert_eq!(index.applied(), N);

    let per = |d: std::time::Duration, n: u64| d.as_nanos() as f64 / n as f64;
    println!(
        "insert {N} keys: {insert:?} ({:.0} ns/key); final flush + merges: {settle:?}",
        per(insert, N)
    );
    println!("{stats:?}");
    println!(
        "memory: {:.2} bytes/key",
        stats.memory_bytes as f64 / N as f64
    );
    println!(
        "{LOOKUPS} negative lookups: {negative:?} ({:.0} ns each)",
        per(negative, LOOKUPS)
    );
    println!(
        "{LOOKUPS} positive lookups: {positive:?} ({:.0} ns each)",
        per(positive, LOOKUPS)
    );
    println!("reopen (validate and rebuild blooms): {reopen:?}");
}

/// One way a run file can be damaged on disk.
#[derive(Debug, Clone)]
enum Damage {
    /// Flip one bit at a position (taken modulo the file's length).
    Flip { at: u64, bit: u8 },
    /// Cut the file to a length (taken modulo the file's length).
    Truncate { to: u64 },
    /// Overwrite one header field (0: from, 1: to, 2: count) and fix the checksum, so only
    /// the checks behind the checksum can catch it.
    Header { field: usize, value: u64 },
}

fn damage_strategy() -> impl proptest::strategy::Strategy<Value = Damage> {
    use proptest::prelude::*;
    prop_oneof![
        (any::<u64>(), 0u8..8).prop_map(|(at, bit)| Damage::Flip { at, bit }),
        any::<u64>().prop_map(|to| Damage::Truncate { to }),
        (0usize..3, prop_oneof![any::<u64>(), 0u64..700])
            .prop_map(|(field, value)| Damage::Header { field, value }),
    ]
}

fn apply_damage(path: &Path, damage: &Damage) {
    let mut bytes = fs::read(path).unwrap();
    let len = bytes.len() as u64;
    match *damage {
        Damage::Flip { at, bit } => bytes[(at % len) as usize] ^= 1 << bit,
        Damage::Truncate { to } => bytes.truncate((to % len) as usize),
        Damage::Header { field, value } => {
            let at = 8 + 8 * field;
            bytes[at..at + 8].copy_from_slice(&value.to_be_bytes());
            let body = bytes.len() - 32;
            let checksum = blake3::hash(&bytes[..body]);
            bytes[body..].copy_from_slice(checksum.as_bytes());
        }
    }
    fs::write(path, bytes).unwrap();
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

    /// Whatever happens to one run file on disk, opening never panics, never claims more
    /// than was written, and answers every entry it claims correctly.
    #[test]
    fn a_damaged_run_never_panics_nor_answers_wrongly(
        which in 0usize..8,
        damage in damage_strategy(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        {
            let index = open(dir.path(), 100);
            fill(&index, 0..600, 50);
            index.flush().unwrap();
            index.wait_for_merges();
        }
        let runs = run_files(dir.path());
        let (_, _, path) = &runs[which % runs.len()];
        apply_damage(path, &damage);
        let index = open(dir.path(), 100);
        let applied = index.applied();
        proptest::prop_assert!(applied <= 600);
        for i in 0..applied {
            proptest::prop_assert_eq!(index.get(&key(i)).unwrap(), Some(i));
        }
        // What was lost is replayed, and then everything answers again.
        fill(&index, applied..600, 50);
        for i in 0..600 {
            proptest::prop_assert_eq!(index.get(&key(i)).unwrap(), Some(i));
        }
    }
}
