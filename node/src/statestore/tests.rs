//! The state store against a `BTreeMap` model: the memtable, the frozen memtable, runs and
//! merges, the write-ahead log and the `limit` of `open`, crashes, damaged and leftover
//! files, `clear`, concurrency.

use super::*;
use proptest::prelude::*;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::AtomicUsize;

/// Memtable bytes never reached: runs are written only when a test flushes.
const NEVER: usize = 1 << 30;

type Writes = Vec<(Vec<u8>, Vec<u8>)>;
type Model = BTreeMap<Vec<u8>, Vec<u8>>;

fn open(dir: &Path, limit: u64) -> StateStore {
    StateStore::open(dir, limit, 1 << 20).expect("open")
}

fn open_with(dir: &Path, limit: u64, run_bytes: usize) -> StateStore {
    StateStore::open(dir, limit, run_bytes)
        .unwrap_or_else(|e| panic!("open {} at limit {limit}: {e}", dir.display()))
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("a temporary directory")
}

fn kv(key: &str, value: &str) -> (Vec<u8>, Vec<u8>) {
    (key.as_bytes().to_vec(), value.as_bytes().to_vec())
}

fn apply(store: &StateStore, writes: &[(Vec<u8>, Vec<u8>)], to: u64) {
    store
        .apply(writes.iter().map(|(k, v)| (k.as_slice(), v.as_slice())), to)
        .unwrap_or_else(|e| panic!("apply up to {to}: {e}"));
}

fn flush(store: &StateStore) {
    store
        .flush()
        .unwrap_or_else(|e| panic!("flush at {}: {e}", store.applied()));
}

fn get(store: &StateStore, key: &[u8]) -> Option<Vec<u8>> {
    store
        .get(key)
        .unwrap_or_else(|e| panic!("get {:?}: {e}", String::from_utf8_lossy(key)))
}

/// `get` of a text key, as text.
fn get_str(store: &StateStore, key: &str) -> Option<String> {
    get(store, key.as_bytes()).map(|v| String::from_utf8(v).expect("a text value"))
}

fn scan(store: &StateStore, prefix: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    store
        .scan_prefix(prefix)
        .unwrap_or_else(|e| panic!("scan_prefix {:?}: {e}", String::from_utf8_lossy(prefix)))
}

fn model_scan(model: &Model, prefix: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    model
        .range(prefix.to_vec()..)
        .take_while(|(k, _)| k.starts_with(prefix))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The store holds exactly the model: a full scan, and `get` of every key.
fn assert_holds(store: &StateStore, model: &Model, context: &str) {
    let all = scan(store, b"");
    let expected: Vec<_> = model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    assert!(
        all == expected,
        "{context}: a full scan differs from the model"
    );
    for (key, value) in model {
        assert_eq!(
            get(store, key).as_ref(),
            Some(value),
            "{context}: get {key:?}"
        );
    }
}

fn wal_path(dir: &Path) -> PathBuf {
    dir.join(WAL_NAME)
}

fn file_len(path: &Path) -> u64 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("metadata of {}: {e}", path.display()))
        .len()
}

fn read_file(path: &Path) -> Vec<u8> {
    fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn write_file(path: &Path, bytes: &[u8]) {
    fs::write(path, bytes).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

fn truncate_file(path: &Path, len: u64) {
    OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|f| f.set_len(len))
        .unwrap_or_else(|e| panic!("truncating {} to {len}: {e}", path.display()));
}

/// The store's run files on disk, by range.
fn run_files(dir: &Path) -> Vec<(u64, u64, PathBuf)> {
    let mut runs: Vec<_> = own_files(dir)
        .expect("listing the directory")
        .into_iter()
        .filter_map(|(path, kind)| match kind {
            FileKind::Run { from, to } => Some((from, to, path)),
            FileKind::Tmp => None,
        })
        .collect();
    runs.sort();
    runs
}

fn run_ranges(dir: &Path) -> Vec<(u64, u64)> {
    run_files(dir)
        .into_iter()
        .map(|(from, to, _)| (from, to))
        .collect()
}

fn tmp_files(dir: &Path) -> Vec<PathBuf> {
    own_files(dir)
        .expect("listing the directory")
        .into_iter()
        .filter(|(_, kind)| *kind == FileKind::Tmp)
        .map(|(path, _)| path)
        .collect()
}

/// The runs in memory: (from, to, records), oldest first.
fn state_runs(store: &StateStore) -> Vec<(u64, u64, u64)> {
    read(&store.inner.shared.state)
        .runs
        .iter()
        .map(|run| (run.from, run.to, run.count))
        .collect()
}

fn run_path(dir: &Path, from: u64, to: u64) -> PathBuf {
    dir.join(run_file_name(from, to))
}

/// A run file's bytes as the module doc describes them, checksum included.
fn encode_run(magic: &[u8], from: u64, to: u64, count: u64, records: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(magic);
    out.extend_from_slice(&from.to_be_bytes());
    out.extend_from_slice(&to.to_be_bytes());
    out.extend_from_slice(&count.to_be_bytes());
    for (key, value) in records {
        let key_len = u16::try_from(key.len()).expect("a short key");
        let value_len = u32::try_from(value.len()).expect("a short value");
        out.extend_from_slice(&key_len.to_be_bytes());
        out.extend_from_slice(&value_len.to_be_bytes());
        out.extend_from_slice(key);
        out.extend_from_slice(value);
    }
    let checksum = blake3::hash(&out);
    out.extend_from_slice(checksum.as_bytes());
    out
}

/// Replaces the last 32 bytes by the BLAKE3 of the rest (a damaged file that checks out).
fn fix_checksum(bytes: &mut [u8]) {
    let body = bytes.len().checked_sub(32).expect("at least a checksum");
    let (head, tail) = bytes.split_at_mut(body);
    tail.copy_from_slice(blake3::hash(head).as_bytes());
}

/// A write-ahead record as the module doc describes it.
fn encode_wal(from: u64, to: u64, items: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&from.to_be_bytes());
    body.extend_from_slice(&to.to_be_bytes());
    body.extend_from_slice(&u32::try_from(items.len()).expect("few items").to_be_bytes());
    for (key, value) in items {
        body.extend_from_slice(&u16::try_from(key.len()).expect("a short key").to_be_bytes());
        body.extend_from_slice(
            &u32::try_from(value.len())
                .expect("a short value")
                .to_be_bytes(),
        );
        body.extend_from_slice(key);
        body.extend_from_slice(value);
    }
    let mut record = Vec::new();
    record.extend_from_slice(
        &u32::try_from(body.len())
            .expect("a short body")
            .to_be_bytes(),
    );
    record.extend_from_slice(&body);
    let checksum = blake3::hash(&record);
    record.extend_from_slice(&checksum.as_bytes()[..16]);
    record
}

// ----- newest wins, misses, prefix scans -----

#[test]
fn writes_survive_flush_merge_and_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path(), 0);
    for batch in 0..6u64 {
        let key = format!("k{batch}");
        let writes = [
            (key.as_bytes(), b"v".as_slice()),
            (b"shared".as_slice(), key.as_bytes()),
        ];
        store.apply(writes, batch + 1).expect("apply");
        if batch % 2 == 1 {
            store.flush().expect("flush");
        }
    }
    store.wait_for_merges();
    assert_eq!(store.get(b"shared").expect("get"), Some(b"k5".to_vec()));
    assert_eq!(store.get(b"k3").expect("get"), Some(b"v".to_vec()));
    drop(store);
    let store = open(dir.path(), 6);
    assert_eq!(store.applied(), 6);
    assert_eq!(store.get(b"shared").expect("get"), Some(b"k5".to_vec()));
    let keys: Vec<Vec<u8>> = store
        .scan_prefix(b"k")
        .expect("scan")
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(keys.len(), 6);
}

/// Each key's newest value comes from wherever it is: the active memtable over the frozen one,
/// the frozen one over the runs, a newer run over a merged one, and within a merge the newer
/// source; after a reopen too.
#[test]
fn the_newest_value_wins_across_memtables_runs_and_merges() {
    let dir = tempdir();
    let store = open_with(dir.path(), 0, NEVER);
    // [0, 1): 20 fillers and a..e = 1.
    let mut first: Writes = (0..20).map(|i| kv(&format!("f{i:02}"), "filler")).collect();
    first.extend(["a", "b", "c", "d", "e"].map(|k| kv(k, "1")));
    apply(&store, &first, 1);
    flush(&store);
    // [1, 2): a..d = 2 and 10 fillers: 25 <= 2 * 14, so the two runs merge.
    let mut second: Writes = (0..10).map(|i| kv(&format!("g{i:02}"), "filler")).collect();
    second.extend(["a", "b", "c", "d"].map(|k| kv(k, "2")));
    apply(&store, &second, 2);
    flush(&store);
    store.wait_for_merges();
    assert_eq!(state_runs(&store), vec![(0, 2, 35)], "the two runs merged");
    assert_eq!(
        run_ranges(dir.path()),
        vec![(0, 2)],
        "the sources are deleted"
    );
    // [2, 3): a..c = 3, a run too small to merge with 35 records.
    apply(&store, &["a", "b", "c"].map(|k| kv(k, "3")), 3);
    flush(&store);
    store.wait_for_merges();
    assert_eq!(state_runs(&store), vec![(0, 2, 35), (2, 3, 3)]);
    // [3, 4): a, b = 4 in the memtable.
    apply(&store, &["a", "b"].map(|k| kv(k, "4")), 4);

    let expect = |store: &StateStore, c: &str| {
        assert_eq!(
            get_str(store, "a").as_deref(),
            Some("4"),
            "memtable over the runs"
        );
        assert_eq!(get_str(store, "b").as_deref(), Some("4"));
        assert_eq!(get_str(store, "c").as_deref(), Some(c));
        assert_eq!(
            get_str(store, "d").as_deref(),
            Some("2"),
            "the newer merge source"
        );
        assert_eq!(
            get_str(store, "e").as_deref(),
            Some("1"),
            "the older merge source"
        );
        assert_eq!(get_str(store, "f07").as_deref(), Some("filler"));
        assert_eq!(get_str(store, "g09").as_deref(), Some("filler"));
        let abcde: Vec<_> = scan(store, b"")
            .into_iter()
            .filter(|(k, _)| k.len() == 1)
            .map(|(k, v)| {
                format!(
                    "{}={}",
                    String::from_utf8_lossy(&k),
                    String::from_utf8_lossy(&v)
                )
            })
            .collect();
        assert_eq!(
            abcde,
            ["a=4", "b=4", format!("c={c}").as_str(), "d=2", "e=1"]
        );
        assert_eq!(scan(store, b"").len(), 35);
    };
    expect(&store, "3");

    // A frozen memtable (being written out) is searched between the active one and the runs.
    let frozen: Memtable = [kv("a", "frozen"), kv("c", "frozen"), kv("z", "frozen")]
        .into_iter()
        .collect();
    write(&store.inner.shared.state).frozen = Some(Arc::new(frozen));
    assert_eq!(
        get_str(&store, "a").as_deref(),
        Some("4"),
        "the active memtable over the frozen one"
    );
    assert_eq!(
        get_str(&store, "c").as_deref(),
        Some("frozen"),
        "the frozen memtable over the runs"
    );
    assert_eq!(get_str(&store, "z").as_deref(), Some("frozen"));
    assert_eq!(
        scan(&store, b"")
            .into_iter()
            .filter(|(k, _)| k.len() == 1)
            .map(|(k, v)| (
                String::from_utf8_lossy(&k).into_owned(),
                String::from_utf8_lossy(&v).into_owned()
            ))
            .collect::<Vec<_>>(),
        [
            ("a", "4"),
            ("b", "4"),
            ("c", "frozen"),
            ("d", "2"),
            ("e", "1"),
            ("z", "frozen")
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
    );
    assert_eq!(scan(&store, b"z"), vec![kv("z", "frozen")]);
    write(&store.inner.shared.state).frozen = None;
    expect(&store, "3");
    assert_eq!(get(&store, b"z"), None);

    drop(store);
    let store = open_with(dir.path(), 4, NEVER);
    assert_eq!(store.applied(), 4);
    expect(&store, "3");
    flush(&store);
    store.wait_for_merges();
    expect(&store, "3");
}

/// The same key twice in one batch: the later write wins, in memory, in a run and at replay.
#[test]
fn within_a_batch_the_later_write_wins() {
    let dir = tempdir();
    let store = open_with(dir.path(), 0, NEVER);
    apply(&store, &[kv("k", "first"), kv("k", "second")], 1);
    assert_eq!(get_str(&store, "k").as_deref(), Some("second"));
    drop(store);
    let store = open_with(dir.path(), 1, NEVER);
    assert_eq!(
        get_str(&store, "k").as_deref(),
        Some("second"),
        "after replay"
    );
    flush(&store);
    assert_eq!(
        get_str(&store, "k").as_deref(),
        Some("second"),
        "from the run"
    );
    drop(store);
    let store = open_with(dir.path(), 1, NEVER);
    assert_eq!(
        get_str(&store, "k").as_deref(),
        Some("second"),
        "from the run after reopening"
    );
    assert_eq!(scan(&store, b""), vec![kv("k", "second")]);
}

/// Keys never written are missing wherever they would fall: before, between and after the
/// keys of runs and memtable, prefixes and extensions of keys, the empty key.
#[test]
fn get_misses_keys_never_written() {
    let dir = tempdir();
    let store = open_with(dir.path(), 0, NEVER);
    let misses: [&[u8]; 10] = [
        b"",
        b"a",
        b"b",
        b"b1",
        b"b10x",
        b"c",
        b"m",
        b"m50",
        b"z",
        b"\xff\xff",
    ];
    for key in misses {
        assert_eq!(get(&store, key), None, "empty store");
    }
    assert_eq!(scan(&store, b""), vec![]);
    let mut model = Model::new();
    for batch in 0..4u64 {
        let writes: Writes = (0..500u64)
            .filter(|i| i % 4 == batch)
            .map(|i| kv(&format!("b{:03}", i * 2), &format!("v{i}")))
            .collect();
        model.extend(writes.iter().cloned());
        apply(&store, &writes, batch + 1);
        if batch < 3 {
            flush(&store);
        }
    }
    store.wait_for_merges();
    for key in misses {
        assert_eq!(get(&store, key), None, "{:?}", String::from_utf8_lossy(key));
    }
    // Odd numbers were never written; nor were keys one byte longer or shorter.
    for i in (1..1000u64).step_by(2) {
        assert_eq!(get(&store, format!("b{i:03}").as_bytes()), None, "b{i:03}");
    }
    assert_eq!(get(&store, b"b00"), None);
    assert_eq!(get(&store, b"b0000"), None);
    assert_eq!(get(&store, b"b998\0"), None);
    assert_holds(&store, &model, "four batches");
}

/// A 40-byte key of group `i / 37`: groups straddle the 16 KiB blocks of a run.
fn block_key(i: usize) -> Vec<u8> {
    format!("g{:03}/{:035}", i / 37, i).into_bytes()
}

const BLOCK_KEYS: usize = 6000;

/// Every prefix scan agrees with the model: each group, shorter and longer prefixes, whole
/// keys, keys missing, before and after everything, and the empty prefix.
fn assert_prefixes(store: &StateStore, model: &Model, context: &str) {
    let groups = BLOCK_KEYS.div_ceil(37);
    let mut prefixes: Vec<Vec<u8>> = (0..groups)
        .map(|g| format!("g{g:03}/").into_bytes())
        .collect();
    for p in [
        "", "g", "g0", "g00", "g01", "g1", "g10", "g16", "g99", "f", "h", "g000/0", "\u{ff}",
    ] {
        prefixes.push(p.as_bytes().to_vec());
    }
    // Keys around the first key of every block, whole and cut short.
    let fences: Vec<Vec<u8>> = read(&store.inner.shared.state)
        .runs
        .iter()
        .flat_map(|run| {
            run.fences
                .iter()
                .map(|f| f.key.to_vec())
                .collect::<Vec<_>>()
        })
        .collect();
    let numbers = fences.iter().map(|key| {
        let text = std::str::from_utf8(key).expect("a text key");
        text[5..].parse::<usize>().expect("a numbered key")
    });
    let mut around: Vec<usize> = vec![0, 36, 37, 2999, BLOCK_KEYS - 1];
    around.extend(numbers.flat_map(|i| [i.saturating_sub(1), i, i + 1]));
    for i in around.into_iter().filter(|&i| i < BLOCK_KEYS) {
        let key = block_key(i);
        for cut in [0, 1, 2, 30] {
            prefixes.push(key[..key.len() - cut].to_vec());
        }
        let mut longer = key.clone();
        longer.push(0);
        prefixes.push(longer);
    }
    for prefix in prefixes {
        let found = scan(store, &prefix);
        let expected = model_scan(model, &prefix);
        assert!(
            found == expected,
            "{context}: prefix {:?}: {} records found, {} expected",
            String::from_utf8_lossy(&prefix),
            found.len(),
            expected.len()
        );
    }
}

/// Some run has a block starting inside a group: the scans above cross a block boundary.
fn assert_groups_straddle_blocks(store: &StateStore) {
    let state = read(&store.inner.shared.state);
    let mut straddling = 0;
    for run in state.runs.iter() {
        for fence in run.fences.iter().skip(1) {
            let text = std::str::from_utf8(&fence.key).expect("a text key");
            let i: usize = text[5..].parse().expect("a numbered key");
            if !i.is_multiple_of(37) {
                straddling += 1;
            }
        }
    }
    assert!(
        straddling > 5,
        "only {straddling} blocks start inside a group"
    );
}

#[test]
fn scan_prefix_across_blocks_one_run() {
    let dir = tempdir();
    let store = open_with(dir.path(), 0, NEVER);
    let writes: Writes = (0..BLOCK_KEYS)
        .map(|i| (block_key(i), format!("value-{i}").into_bytes()))
        .collect();
    let model: Model = writes.iter().cloned().collect();
    apply(&store, &writes, 1);
    assert_prefixes(&store, &model, "memtable");
    flush(&store);
    let runs = read(&store.inner.shared.state).runs.clone();
    assert_eq!(runs.len(), 1);
    assert!(runs[0].fences.len() > 15, "{} blocks", runs[0].fences.len());
    assert_groups_straddle_blocks(&store);
    assert_prefixes(&store, &model, "one run");
    for i in 0..BLOCK_KEYS {
        assert_eq!(
            get(&store, &block_key(i)),
            Some(format!("value-{i}").into_bytes()),
            "key {i}"
        );
        let mut longer = block_key(i);
        longer.push(0);
        assert_eq!(get(&store, &longer), None, "key {i} and a zero byte");
    }
    drop(store);
    let store = open_with(dir.path(), 1, NEVER);
    assert_groups_straddle_blocks(&store);
    assert_prefixes(&store, &model, "one run, reopened");
}

/// Values overwritten in later runs, some merged, some not, and in the memtable: every scan
/// returns the newest values.
#[test]
fn scan_prefix_across_blocks_runs_merges_and_memtable() {
    let dir = tempdir();
    let store = open_with(dir.path(), 0, NEVER);
    let mut model = Model::new();
    let mut to = 0;
    let mut write_batch = |store: &StateStore, model: &mut Model, writes: Writes| {
        to += 1;
        apply(store, &writes, to);
        model.extend(writes);
    };
    // Two runs of 3,000 keys, interleaved (i % 2): they merge into one.
    for part in 0..2 {
        let writes = (0..BLOCK_KEYS)
            .filter(|i| i % 2 == part)
            .map(|i| (block_key(i), format!("first-{i}").into_bytes()))
            .collect();
        write_batch(&store, &mut model, writes);
        flush(&store);
    }
    store.wait_for_merges();
    assert_eq!(
        state_runs(&store).len(),
        1,
        "merged: {:?}",
        state_runs(&store)
    );
    assert_groups_straddle_blocks(&store);
    assert_prefixes(&store, &model, "one merged run");
    // Every third key again, in a run that stays apart (2,000 keys against 6,000).
    let writes = (0..BLOCK_KEYS)
        .step_by(3)
        .map(|i| (block_key(i), format!("second-{i}").into_bytes()))
        .collect();
    write_batch(&store, &mut model, writes);
    flush(&store);
    store.wait_for_merges();
    assert_eq!(state_runs(&store).len(), 2, "{:?}", state_runs(&store));
    // Every fifth key in the memtable, every seventh in a frozen memtable.
    let writes = (0..BLOCK_KEYS)
        .step_by(5)
        .map(|i| (block_key(i), format!("third-{i}").into_bytes()))
        .collect();
    write_batch(&store, &mut model, writes);
    assert_prefixes(&store, &model, "memtable over two runs");
    let frozen: Memtable = (0..BLOCK_KEYS)
        .step_by(7)
        .filter(|i| i % 5 != 0)
        .map(|i| (block_key(i), format!("frozen-{i}").into_bytes()))
        .collect();
    let mut with_frozen = model.clone();
    with_frozen.extend(frozen.iter().map(|(k, v)| (k.clone(), v.clone())));
    write(&store.inner.shared.state).frozen = Some(Arc::new(frozen));
    assert_prefixes(&store, &with_frozen, "memtable, frozen memtable, two runs");
    write(&store.inner.shared.state).frozen = None;
    for i in (0..BLOCK_KEYS).step_by(11) {
        assert_eq!(
            get(&store, &block_key(i)).as_ref(),
            model.get(&block_key(i)),
            "key {i}"
        );
    }
    drop(store);
    let store = open_with(dir.path(), 4, NEVER);
    assert_eq!(store.applied(), 4);
    assert_prefixes(&store, &model, "reopened");
    flush(&store);
    store.wait_for_merges();
    assert_prefixes(&store, &model, "all in runs");
    assert_holds(&store, &model, "all in runs");
}

/// The empty key and empty values are records like any other.
#[test]
fn empty_keys_and_values() {
    let dir = tempdir();
    let store = open_with(dir.path(), 0, NEVER);
    apply(&store, &[kv("", "empty key"), kv("k", "")], 1);
    let expected = vec![kv("", "empty key"), kv("k", "")];
    assert_eq!(scan(&store, b""), expected);
    drop(store);
    let store = open_with(dir.path(), 1, NEVER);
    assert_eq!(scan(&store, b""), expected, "replayed");
    flush(&store);
    assert_eq!(get_str(&store, "").as_deref(), Some("empty key"));
    assert_eq!(get_str(&store, "k").as_deref(), Some(""));
    assert_eq!(scan(&store, b""), expected, "from a run");
    assert_eq!(scan(&store, b"k"), vec![kv("k", "")]);
}

// ----- apply: skipped batches, sizes, stats -----

/// A batch ending at or before `applied` changes nothing, not even the log.
#[test]
fn apply_at_or_before_applied_is_skipped() {
    let dir = tempdir();
    let store = open_with(dir.path(), 0, NEVER);
    apply(&store, &[kv("a", "1")], 3);
    let wal = file_len(&wal_path(dir.path()));
    assert_eq!(store.stats().wal_bytes, wal);
    for to in [3, 2, 1, 0] {
        apply(&store, &[kv("a", "stale"), kv("new", "stale")], to);
        assert_eq!(store.applied(), 3, "to = {to}");
        assert_eq!(get_str(&store, "a").as_deref(), Some("1"), "to = {to}");
        assert_eq!(get(&store, b"new"), None, "to = {to}");
        assert_eq!(
            file_len(&wal_path(dir.path())),
            wal,
            "to = {to}: nothing logged"
        );
        assert_eq!(store.stats().memtable_records, 1);
    }
    apply(&store, &[kv("a", "2")], 4);
    assert_eq!(get_str(&store, "a").as_deref(), Some("2"));
    drop(store);
    let store = open_with(dir.path(), 4, NEVER);
    assert_eq!(store.applied(), 4);
    assert_eq!(get_str(&store, "a").as_deref(), Some("2"));
    assert_eq!(get(&store, b"new"), None);
    // After a flush too.
    flush(&store);
    apply(&store, &[kv("a", "stale")], 4);
    assert_eq!(get_str(&store, "a").as_deref(), Some("2"));
    assert_eq!(file_len(&wal_path(dir.path())), 0);
}

/// A key of 65,536 bytes is refused with `TooLarge` and nothing changes; 65,535 bytes work
/// through the log, a run and a merge.
#[test]
fn keys_over_65535_bytes_are_too_large() {
    let dir = tempdir();
    let store = open_with(dir.path(), 0, NEVER);
    apply(&store, &[kv("a", "1")], 1);
    let wal = file_len(&wal_path(dir.path()));
    let stats = store.stats();
    let big = vec![b'x'; 65_536];
    let result = store.apply(
        [
            (b"ok".as_slice(), b"v".as_slice()),
            (big.as_slice(), b"value".as_slice()),
        ],
        2,
    );
    match result {
        Err(StateStoreError::TooLarge { key_len, value_len }) => {
            assert_eq!((key_len, value_len), (65_536, 5));
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert_eq!(store.applied(), 1);
    assert_eq!(get(&store, b"ok"), None, "no part of the batch is applied");
    assert_eq!(get(&store, &big), None);
    assert_eq!(get_str(&store, "a").as_deref(), Some("1"));
    assert_eq!(file_len(&wal_path(dir.path())), wal, "nothing logged");
    assert_eq!(store.stats(), stats);

    // The largest key allowed, through every path.
    let largest = vec![b'y'; 65_535];
    store
        .apply([(largest.as_slice(), b"largest".as_slice())], 2)
        .expect("a key of 65,535 bytes");
    assert_eq!(get(&store, &largest), Some(b"largest".to_vec()));
    drop(store);
    let store = open_with(dir.path(), 2, NEVER);
    assert_eq!(store.applied(), 2, "replayed");
    assert_eq!(get(&store, &largest), Some(b"largest".to_vec()));
    flush(&store);
    apply(&store, &[kv("b", "2")], 3);
    flush(&store);
    store.wait_for_merges();
    assert_eq!(state_runs(&store).len(), 1, "merged");
    assert_eq!(get(&store, &largest), Some(b"largest".to_vec()));
    assert_eq!(scan(&store, b"yy").len(), 1);
    drop(store);
    let store = open_with(dir.path(), 3, NEVER);
    assert_eq!(store.applied(), 3);
    assert_eq!(get(&store, &largest), Some(b"largest".to_vec()));
    assert_eq!(get_str(&store, "a").as_deref(), Some("1"));
}

/// Values larger than a block and than the read and write buffers (64 KiB), through the log,
/// a run, a merge and a reopen.
#[test]
fn values_larger_than_blocks_and_buffers() {
    let dir = tempdir();
    let store = open_with(dir.path(), 0, NEVER);
    let value =
        |i: usize, len: usize| -> Vec<u8> { (0..len).map(|j| (i * 31 + j * 7) as u8).collect() };
    let sizes = [
        0,
        1,
        16 << 10,
        (64 << 10) - 7,
        64 << 10,
        100 << 10,
        300 << 10,
        5,
    ];
    let mut model = Model::new();
    for (i, &len) in sizes.iter().enumerate() {
        let writes = vec![
            (format!("big{i}").into_bytes(), value(i, len)),
            (format!("small{i}").into_bytes(), value(i, 3)),
        ];
        model.extend(writes.iter().cloned());
        apply(&store, &writes, i as u64 + 1);
        if i % 2 == 1 {
            flush(&store);
        }
    }
    assert_holds(&store, &model, "written");
    drop(store);
    let store = open_with(dir.path(), sizes.len() as u64, NEVER);
    assert_eq!(store.applied(), sizes.len() as u64);
    assert_holds(&store, &model, "reopened");
    store.wait_for_merges();
    assert_holds(&store, &model, "merged");
    let big3 = value(99, 200 << 10);
    apply(&store, &[(b"big3".to_vec(), big3.clone())], 20);
    model.insert(b"big3".to_vec(), big3);
    flush(&store);
    store.wait_for_merges();
    drop(store);
    let store = open_with(dir.path(), 20, NEVER);
    assert_eq!(store.applied(), 20);
    assert_holds(&store, &model, "overwritten, reopened");
    assert_eq!(scan(&store, b"big").len(), sizes.len());
}

/// The module doc promises values up to 2^32 - 1 bytes, but `apply` refuses any batch whose
/// log record body exceeds `WAL_MAX_BODY` (1 GiB): a single value of 1 GiB is `TooLarge`.
/// A batch over the 1 GiB a write-ahead record holds is refused with its size, before any
/// copy (the value here is zeroed memory never touched), and changes nothing.
#[test]
fn a_batch_over_one_gib_is_refused() {
    let dir = tempdir();
    let store = open_with(dir.path(), 0, NEVER);
    apply(&store, &[kv("a", "1")], 1);
    let value = vec![0u8; 1 << 30];
    let result = store.apply([(b"k".as_slice(), value.as_slice())], 2);
    assert!(
        matches!(result, Err(StateStoreError::BatchTooLarge { bytes }) if bytes > 1 << 30),
        "{result:?}"
    );
    assert_eq!(store.applied(), 1);
    assert_eq!(store.get(b"k").expect("get"), None);
    assert_eq!(store.get(b"a").expect("get"), Some(b"1".to_vec()));
}

/// Batches without writes move the mark; their run holds no record.
#[test]
fn empty_batches_and_empty_runs() {
    let dir = tempdir();
    let store = open_with(dir.path(), 0, NEVER);
    apply(&store, &[], 1);
    apply(&store, &[], 2);
    assert_eq!(store.applied(), 2);
    flush(&store);
    assert_eq!(state_runs(&store), vec![(0, 2, 0)]);
    drop(store);
    let store = open_with(dir.path(), 2, NEVER);
    assert_eq!(store.applied(), 2);
    assert_eq!(scan(&store, b""), vec![]);
    apply(&store, &[kv("a", "1")], 3);
    flush(&store);
    apply(&store, &[], 4);
    flush(&store);
    store.wait_for_merges();
    assert_eq!(get_str(&store, "a").as_deref(), Some("1"));
    drop(store);
    let store = open_with(dir.path(), 4, NEVER);
    assert_eq!(store.applied(), 4);
    assert_eq!(scan(&store, b""), vec![kv("a", "1")]);
}

/// A flush with nothing new since the last one writes no run.
#[test]
fn flush_without_new_entries_writes_nothing() {
    let dir = tempdir();
    let store = open_with(dir.path(), 0, NEVER);
    flush(&store);
    assert_eq!(run_ranges(dir.path()), vec![]);
    apply(&store, &[kv("a", "1")], 1);
    flush(&store);
    flush(&store);
    assert_eq!(run_ranges(dir.path()), vec![(0, 1)]);
    assert_eq!(state_runs(&store), vec![(0, 1, 1)]);
}

#[test]
fn wants_flush_at_run_bytes() {
    let dir = tempdir();
    let record = 10 + 10 + MEMTABLE_OVERHEAD;
    let store = open_with(dir.path(), 0, 2 * record + 1);
    assert!(!store.wants_flush());
    apply(
        &store,
        &[
            kv("key-000001", "value-0001"),
            kv("key-000002", "value-0002"),
        ],
        1,
    );
    assert!(!store.wants_flush(), "two records, one byte short");
    apply(&store, &[kv("key-000003", "value-0003")], 2);
    assert!(store.wants_flush());
    drop(store);
    let store = open_with(dir.path(), 2, 2 * record + 1);
    assert!(store.wants_flush(), "the replayed memtable counts the same");
    flush(&store);
    assert!(!store.wants_flush());
}

#[test]
fn stats_follow_the_memtable_runs_and_log() {
    let dir = tempdir();
    let store = open_with(dir.path(), 0, NEVER);
    let stats = store.stats();
    assert_eq!(
        (
            stats.runs,
            stats.run_records,
            stats.memtable_records,
            stats.wal_bytes
        ),
        (0, 0, 0, 0)
    );
    apply(&store, &[kv("a", "1"), kv("b", "1"), kv("c", "1")], 1);
    let stats = store.stats();
    assert_eq!(stats.memtable_records, 3);
    assert_eq!(stats.wal_bytes, file_len(&wal_path(dir.path())));
    assert_eq!(
        stats.wal_bytes,
        encode_wal(0, 1, &[(b"a", b"1"), (b"b", b"1"), (b"c", b"1")]).len() as u64
    );
    assert!(stats.memory_bytes > 0);
    flush(&store);
    let stats = store.stats();
    assert_eq!(
        (
            stats.runs,
            stats.run_records,
            stats.memtable_records,
            stats.wal_bytes
        ),
        (1, 3, 0, 0)
    );
    assert_eq!(file_len(&wal_path(dir.path())), 0, "the log is emptied");
    apply(&store, &[kv("a", "2"), kv("d", "2")], 2);
    flush(&store);
    store.wait_for_merges();
    let stats = store.stats();
    assert_eq!(
        (stats.runs, stats.run_records),
        (1, 4),
        "merged, the older a dropped"
    );
}

/// The write-ahead log holds exactly the documented records, one per batch.
#[test]
fn the_log_holds_one_documented_record_per_batch() {
    let dir = tempdir();
    let store = open_with(dir.path(), 0, NEVER);
    apply(&store, &[kv("a", "1"), kv("bb", "")], 2);
    apply(&store, &[], 3);
    apply(&store, &[kv("", "x")], 7);
    drop(store);
    let mut expected = encode_wal(0, 2, &[(b"a", b"1"), (b"bb", b"")]);
    expected.extend(encode_wal(2, 3, &[]));
    expected.extend(encode_wal(3, 7, &[(b"", b"x")]));
    assert_eq!(read_file(&wal_path(dir.path())), expected);
}

// ----- reopening: the limit, torn and damaged logs -----

/// Writes batch `i` = [i, i + 1): `k{i}` and `last` = i. Returns the log's length after each.
fn ten_batches(store: &StateStore, dir: &Path) -> Vec<u64> {
    let mut ends = vec![file_len(&wal_path(dir))];
    for i in 0..10u64 {
        apply(
            store,
            &[
                kv(&format!("k{i}"), &format!("v{i}")),
                kv("last", &i.to_string()),
            ],
            i + 1,
        );
        ends.push(file_len(&wal_path(dir)));
    }
    ends
}

/// The store holds batches [0, n) of `ten_batches`, nothing more.
fn assert_batches(store: &StateStore, n: u64, context: &str) {
    assert_eq!(store.applied(), n, "{context}");
    for i in 0..10u64 {
        let expected = (i < n).then(|| format!("v{i}"));
        assert_eq!(
            get_str(store, &format!("k{i}")),
            expected,
            "{context}: k{i}"
        );
    }
    let last = n.checked_sub(1).map(|i| i.to_string());
    assert_eq!(get_str(store, "last"), last, "{context}");
    assert_eq!(scan(store, b"k").len() as u64, n, "{context}");
}

#[test]
fn reopen_replays_the_log_up_to_limit_exactly() {
    let dir = tempdir();
    let wal = wal_path(dir.path());
    let store = open_with(dir.path(), 0, NEVER);
    assert_eq!(store.applied(), 0, "a new store");
    let ends = ten_batches(&store, dir.path());
    drop(store);

    // A limit beyond the log: everything, nothing cut.
    let store = open_with(dir.path(), 100, NEVER);
    assert_batches(&store, 10, "limit 100");
    assert_eq!(file_len(&wal), ends[10]);
    drop(store);
    let store = open_with(dir.path(), 10, NEVER);
    assert_batches(&store, 10, "limit 10");
    assert_eq!(file_len(&wal), ends[10]);
    drop(store);

    // A smaller limit: replayed up to it, the rest dropped and cut from the file.
    let store = open_with(dir.path(), 6, NEVER);
    assert_batches(&store, 6, "limit 6");
    assert_eq!(file_len(&wal), ends[6], "the log is cut after entry 6");
    assert_eq!(store.stats().wal_bytes, ends[6]);
    drop(store);

    // A larger limit later does not bring them back.
    let store = open_with(dir.path(), 10, NEVER);
    assert_batches(&store, 6, "limit 10 after the cut");
    // New batches follow the cut, with other values.
    apply(&store, &[kv("k6", "w6"), kv("last", "w")], 7);
    apply(&store, &[kv("k7", "w7")], 9);
    drop(store);
    let store = open_with(dir.path(), 9, NEVER);
    assert_eq!(store.applied(), 9);
    assert_eq!(get_str(&store, "k6").as_deref(), Some("w6"));
    assert_eq!(get_str(&store, "k7").as_deref(), Some("w7"));
    assert_eq!(get_str(&store, "k8"), None);
    assert_eq!(get_str(&store, "last").as_deref(), Some("w"));
    drop(store);

    // A limit inside a batch stops before it: [7, 9) ends beyond 8.
    let store = open_with(dir.path(), 8, NEVER);
    assert_eq!(store.applied(), 7);
    assert_eq!(get_str(&store, "k6").as_deref(), Some("w6"));
    assert_eq!(get_str(&store, "k7"), None);
    drop(store);

    // Limit 0: nothing.
    let store = open_with(dir.path(), 0, NEVER);
    assert_batches(&store, 0, "limit 0");
    assert_eq!(file_len(&wal), 0);
    assert_eq!(store.stats().wal_bytes, 0);
}

/// With runs, the limit applies to the log after them; a limit below the runs' end cannot be
/// met and `applied` says so (it is the runs' end).
#[test]
fn reopen_with_runs_and_a_limit() {
    let dir = tempdir();
    let wal = wal_path(dir.path());
    let store = open_with(dir.path(), 0, NEVER);
    for i in 0..4u64 {
        apply(
            &store,
            &[
                kv(&format!("k{i}"), &format!("v{i}")),
                kv("last", &i.to_string()),
            ],
            i + 1,
        );
    }
    flush(&store);
    for i in 4..8u64 {
        apply(
            &store,
            &[
                kv(&format!("k{i}"), &format!("v{i}")),
                kv("last", &i.to_string()),
            ],
            i + 1,
        );
    }
    drop(store);
    let store = open_with(dir.path(), 6, NEVER);
    assert_eq!(store.applied(), 6);
    assert_eq!(get_str(&store, "last").as_deref(), Some("5"));
    assert_eq!(get_str(&store, "k6"), None);
    drop(store);
    let store = open_with(dir.path(), 2, NEVER);
    assert_eq!(
        store.applied(),
        4,
        "the runs reach 4: the caller must rebuild"
    );
    assert_eq!(
        file_len(&wal),
        0,
        "nothing in the log follows 4 up to the limit"
    );
    assert_eq!(get_str(&store, "last").as_deref(), Some("3"));
    assert_eq!(get_str(&store, "k4"), None);
    drop(store);
    let store = open_with(dir.path(), 8, NEVER);
    assert_eq!(store.applied(), 4, "the cut entries stay gone");
}

/// A torn tail (the file cut inside the last record) is cut back to the last whole record.
#[test]
fn a_torn_log_tail_is_cut_at_the_last_whole_record() {
    let dir = tempdir();
    let wal = wal_path(dir.path());
    let store = open_with(dir.path(), 0, NEVER);
    let ends = ten_batches(&store, dir.path());
    drop(store);
    let original = read_file(&wal);
    let last = ends[10] - ends[9];
    // Inside the checksum, the body, the length prefix.
    for cut in [1, 8, 15, 16, 17, last / 2, last - 4, last - 1] {
        write_file(&wal, &original);
        truncate_file(&wal, ends[10] - cut);
        let store = open_with(dir.path(), 10, NEVER);
        assert_batches(&store, 9, &format!("cut by {cut}"));
        assert_eq!(file_len(&wal), ends[9], "cut by {cut}");
        drop(store);
    }
    // The next batch follows the last whole record.
    let store = open_with(dir.path(), 10, NEVER);
    ten_batches_from(&store, 9);
    drop(store);
    let store = open_with(dir.path(), 10, NEVER);
    assert_batches(&store, 10, "rewritten after the cut");
}

/// Writes batches `[from, 10)` of `ten_batches` again.
fn ten_batches_from(store: &StateStore, from: u64) {
    for i in from..10 {
        apply(
            store,
            &[
                kv(&format!("k{i}"), &format!("v{i}")),
                kv("last", &i.to_string()),
            ],
            i + 1,
        );
    }
}

/// Garbage after the last record (a zero length, a huge length, random bytes, a record that
/// does not follow) is cut.
#[test]
fn garbage_after_the_log_is_cut() {
    let dir = tempdir();
    let wal = wal_path(dir.path());
    let store = open_with(dir.path(), 0, NEVER);
    let ends = ten_batches(&store, dir.path());
    drop(store);
    let original = read_file(&wal);
    let mut random = Vec::new();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..300 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        random.push(x as u8);
    }
    let mut huge_len = u32::MAX.to_be_bytes().to_vec();
    huge_len.extend([0u8; 40]);
    let mut just_under_max = WAL_MAX_BODY.to_be_bytes().to_vec();
    just_under_max.extend([1u8; 40]);
    // Whole, checked records that do not continue at 10.
    let gap = encode_wal(11, 12, &[(b"k11", b"gap")]);
    let overlap = encode_wal(9, 11, &[(b"k10", b"overlap")]);
    let empty_range = encode_wal(10, 10, &[(b"k10", b"empty")]);
    let backwards = encode_wal(10, 9, &[(b"k10", b"backwards")]);
    // A record whose count says more items than it holds, and one with bytes after its items.
    let mut short_count = encode_wal(10, 11, &[(b"k10", b"count")]);
    short_count[4 + 16..4 + 20].copy_from_slice(&2u32.to_be_bytes());
    let n = short_count.len() - 16;
    let checksum = blake3::hash(&short_count[..n]);
    short_count[n..].copy_from_slice(&checksum.as_bytes()[..16]);
    let mut extra = encode_wal(10, 11, &[(b"k10", b"extra")]);
    extra.truncate(extra.len() - 16);
    extra.push(0);
    let body_len = u32::try_from(extra.len() - 4).expect("short");
    extra[..4].copy_from_slice(&body_len.to_be_bytes());
    let checksum = blake3::hash(&extra);
    extra.extend_from_slice(&checksum.as_bytes()[..16]);
    let garbage: [(&str, Vec<u8>); 11] = [
        ("one byte", vec![0xff]),
        ("zeros", vec![0; 40]),
        ("random", random),
        ("a huge length", huge_len),
        ("the largest length, short", just_under_max),
        ("a gap", gap),
        ("an overlap", overlap),
        ("an empty range", empty_range),
        ("a backwards range", backwards),
        ("a count beyond the items", short_count),
        ("bytes after the items", extra),
    ];
    for (what, tail) in garbage {
        let mut bytes = original.clone();
        bytes.extend_from_slice(&tail);
        write_file(&wal, &bytes);
        let store = open_with(dir.path(), 20, NEVER);
        assert_batches(&store, 10, what);
        assert_eq!(get(&store, b"k11"), None, "{what}");
        assert_eq!(file_len(&wal), ends[10], "{what}: cut");
        // The next record lands right after the last whole one.
        apply(&store, &[kv("k10", "v10")], 11);
        drop(store);
        let store = open_with(dir.path(), 20, NEVER);
        assert_eq!(store.applied(), 11, "{what}");
        assert_eq!(get_str(&store, "k10").as_deref(), Some("v10"), "{what}");
        drop(store);
    }
}

/// A byte flipped anywhere in a record stops replay before it: that record and those after
/// are dropped and cut.
#[test]
fn a_flipped_byte_in_the_log_stops_replay_there() {
    let dir = tempdir();
    let wal = wal_path(dir.path());
    let store = open_with(dir.path(), 0, NEVER);
    let ends = ten_batches(&store, dir.path());
    drop(store);
    let original = read_file(&wal);
    // Every byte of record 4 ([4, 5)), each with another bit.
    let (start, end) = (ends[4], ends[5]);
    for at in start..end {
        let mut bytes = original.clone();
        bytes[at as usize] ^= 1 << (at % 8);
        write_file(&wal, &bytes);
        let store = open_with(dir.path(), 10, NEVER);
        assert_batches(&store, 4, &format!("byte {at} of record [{start}, {end})"));
        assert_eq!(file_len(&wal), ends[4], "byte {at}");
        drop(store);
    }
    // In the first record: nothing at all.
    let mut bytes = original.clone();
    bytes[10] ^= 0x20;
    write_file(&wal, &bytes);
    let store = open_with(dir.path(), 10, NEVER);
    assert_batches(&store, 0, "first record");
    assert_eq!(file_len(&wal), 0);
}

// ----- crashes -----

/// A crash after a run is renamed into place but before the log is emptied: the log's records
/// are all in the run; reopening skips them, gives the same state, and continues from there.
#[test]
fn a_crash_between_run_rename_and_log_reset() {
    let dir = tempdir();
    let wal = wal_path(dir.path());
    let store = open_with(dir.path(), 0, NEVER);
    ten_batches(&store, dir.path());
    let logged = read_file(&wal);
    flush(&store);
    assert_eq!(file_len(&wal), 0);
    drop(store);
    write_file(&wal, &logged);

    let store = open_with(dir.path(), 10, NEVER);
    assert_batches(&store, 10, "the old log back");
    assert_eq!(
        store.stats().memtable_records,
        0,
        "records already in the run are not replayed"
    );
    assert_eq!(file_len(&wal), logged.len() as u64, "but skipped, not cut");
    assert_eq!(state_runs(&store), vec![(0, 10, 11)]);
    // The next batch follows the skipped records and is replayed after them.
    apply(&store, &[kv("k10", "v10"), kv("last", "10")], 11);
    drop(store);
    let store = open_with(dir.path(), 11, NEVER);
    assert_eq!(store.applied(), 11);
    assert_eq!(store.stats().memtable_records, 2);
    assert_eq!(get_str(&store, "last").as_deref(), Some("10"));
    assert_eq!(get_str(&store, "k9").as_deref(), Some("v9"));
    drop(store);
    // A limit below the run's end.
    let store = open_with(dir.path(), 5, NEVER);
    assert_eq!(store.applied(), 10, "the run reaches 10");
    assert_eq!(get_str(&store, "k10"), None);
    assert_eq!(get_str(&store, "last").as_deref(), Some("9"));
    apply(&store, &[kv("k10", "again")], 11);
    flush(&store);
    assert_eq!(file_len(&wal), 0);
    drop(store);
    let store = open_with(dir.path(), 11, NEVER);
    assert_eq!(store.applied(), 11);
    assert_eq!(get_str(&store, "k10").as_deref(), Some("again"));
    assert_eq!(state_runs(&store), vec![(0, 10, 11), (10, 11, 1)]);
}

/// The same with a second run after the first: the log then starts at the first run's end.
#[test]
fn a_crash_between_rename_and_log_reset_after_earlier_runs() {
    let dir = tempdir();
    let wal = wal_path(dir.path());
    let store = open_with(dir.path(), 0, NEVER);
    let writes: Writes = (0..30)
        .map(|i| kv(&format!("base{i:02}"), "base"))
        .collect();
    apply(&store, &writes, 1);
    flush(&store);
    apply(&store, &[kv("a", "2"), kv("base00", "2")], 2);
    apply(&store, &[kv("a", "3")], 3);
    let logged = read_file(&wal);
    flush(&store);
    store.wait_for_merges();
    assert_eq!(state_runs(&store), vec![(0, 1, 30), (1, 3, 2)]);
    drop(store);
    write_file(&wal, &logged);
    let store = open_with(dir.path(), 3, NEVER);
    assert_eq!(store.applied(), 3);
    assert_eq!(store.stats().memtable_records, 0);
    assert_eq!(get_str(&store, "a").as_deref(), Some("3"));
    assert_eq!(get_str(&store, "base00").as_deref(), Some("2"));
    assert_eq!(scan(&store, b"").len(), 31);
}

/// A crash during a flush, before the rename: a temporary file is left and the log has
/// everything. A crash during a merge: the same, with the runs intact.
#[test]
fn leftover_temporary_files_are_deleted_at_open() {
    let dir = tempdir();
    let store = open_with(dir.path(), 0, NEVER);
    apply(&store, &[kv("a", "1")], 1);
    flush(&store);
    apply(&store, &[kv("b", "2")], 2);
    drop(store);
    let tmps = [
        format!("{}.0.tmp", run_file_name(1, 2)),
        format!("{}.17.tmp", run_file_name(0, 2)),
        format!("{}.3.tmp", run_file_name(0, 1)),
    ];
    for name in &tmps {
        write_file(&dir.path().join(name), b"half a run");
    }
    // Not the store's: left alone.
    let foreign = ["notes.tmp", "state.wal.tmp", "state-1-2.run.0.tmp"];
    for name in foreign {
        write_file(&dir.path().join(name), b"someone else's");
    }
    assert_eq!(tmp_files(dir.path()).len(), 3);
    let store = open_with(dir.path(), 2, NEVER);
    assert_eq!(
        tmp_files(dir.path()),
        Vec::<PathBuf>::new(),
        "the store's temporary files are deleted"
    );
    for name in &tmps {
        assert!(!dir.path().join(name).exists(), "{name}");
    }
    for name in foreign {
        assert!(dir.path().join(name).exists(), "{name} is not the store's");
    }
    assert_eq!(store.applied(), 2);
    assert_eq!(run_ranges(dir.path()), vec![(0, 1)]);
    assert_eq!(scan(&store, b""), vec![kv("a", "1"), kv("b", "2")]);
    // A flush afterwards is not hindered by the names used before.
    flush(&store);
    assert_eq!(run_ranges(dir.path()), vec![(0, 1), (1, 2)]);
}

/// Runs written by hand in the documented format load and answer.
#[test]
fn runs_in_the_documented_format_load() {
    let dir = tempdir();
    let first = encode_run(MAGIC, 0, 3, 3, &[(b"a", b"1"), (b"b", b"1"), (b"c", b"1")]);
    let second = encode_run(MAGIC, 3, 5, 2, &[(b"b", b"2"), (b"d", b"2")]);
    let empty = encode_run(MAGIC, 5, 6, 0, &[]);
    write_file(&run_path(dir.path(), 0, 3), &first);
    write_file(&run_path(dir.path(), 3, 5), &second);
    write_file(&run_path(dir.path(), 5, 6), &empty);
    let store = open_with(dir.path(), 6, NEVER);
    assert_eq!(store.applied(), 6);
    store.wait_for_merges();
    let expected = vec![kv("a", "1"), kv("b", "2"), kv("c", "1"), kv("d", "2")];
    assert_eq!(scan(&store, b""), expected);
    assert_eq!(get_str(&store, "b").as_deref(), Some("2"));
    drop(store);
    let store = open_with(dir.path(), 6, NEVER);
    assert_eq!(store.applied(), 6);
    assert_eq!(scan(&store, b""), expected);
}

/// A run the store writes is exactly the documented format.
#[test]
fn a_flushed_run_is_the_documented_format() {
    let dir = tempdir();
    let store = open_with(dir.path(), 0, NEVER);
    apply(&store, &[kv("b", "2"), kv("a", "1"), kv("", "e")], 3);
    flush(&store);
    drop(store);
    let expected = encode_run(MAGIC, 0, 3, 3, &[(b"", b"e"), (b"a", b"1"), (b"b", b"2")]);
    assert_eq!(read_file(&run_path(dir.path(), 0, 3)), expected);
}

/// A crash after a merged run is renamed into place but before its sources are deleted: the
/// merged run is preferred and the sources deleted. If the merged run is damaged instead, the
/// sources are used. The merged run is the documented format, its count fixed for the
/// replaced key.
#[test]
fn a_crash_between_merge_rename_and_source_deletion() {
    let dir = tempdir();
    let older = encode_run(MAGIC, 0, 2, 3, &[(b"a", b"1"), (b"b", b"1"), (b"c", b"1")]);
    let newer = encode_run(MAGIC, 2, 4, 2, &[(b"b", b"2"), (b"d", b"2")]);
    let merged_expected = encode_run(
        MAGIC,
        0,
        4,
        4,
        &[(b"a", b"1"), (b"b", b"2"), (b"c", b"1"), (b"d", b"2")],
    );
    let expected = vec![kv("a", "1"), kv("b", "2"), kv("c", "1"), kv("d", "2")];
    let put_sources = || {
        write_file(&run_path(dir.path(), 0, 2), &older);
        write_file(&run_path(dir.path(), 2, 4), &newer);
    };
    put_sources();
    // 3 <= 2 * 2: the open merges them.
    let store = open_with(dir.path(), 4, NEVER);
    store.wait_for_merges();
    assert_eq!(state_runs(&store), vec![(0, 4, 4)]);
    assert_eq!(
        run_ranges(dir.path()),
        vec![(0, 4)],
        "the sources are deleted"
    );
    assert_eq!(scan(&store, b""), expected);
    drop(store);
    let merged = read_file(&run_path(dir.path(), 0, 4));
    assert_eq!(
        merged, merged_expected,
        "the merged run, count and checksum fixed"
    );

    // The sources back beside the merged run.
    put_sources();
    let store = open_with(dir.path(), 4, NEVER);
    assert_eq!(store.applied(), 4);
    assert_eq!(state_runs(&store), vec![(0, 4, 4)]);
    assert_eq!(
        run_ranges(dir.path()),
        vec![(0, 4)],
        "the sources are deleted at open"
    );
    assert_eq!(scan(&store, b""), expected);
    drop(store);

    // The sources back and the merged run damaged.
    put_sources();
    let mut damaged = merged.clone();
    damaged[40] ^= 1;
    write_file(&run_path(dir.path(), 0, 4), &damaged);
    let store = open_with(dir.path(), 4, NEVER);
    assert_eq!(store.applied(), 4, "the chain of the sources");
    assert_eq!(scan(&store, b""), expected);
    store.wait_for_merges();
    assert_eq!(run_ranges(dir.path()), vec![(0, 4)], "merged again");
    assert_eq!(read_file(&run_path(dir.path(), 0, 4)), merged_expected);
}

// ----- damaged runs -----

/// A store whose only run covers [0, 4) (k0..k3), with [4, 5) in the log after it if
/// `with_log`. Returns the run's path and bytes.
fn one_run(dir: &Path, with_log: bool) -> (PathBuf, Vec<u8>) {
    let store = open_with(dir, 0, NEVER);
    for i in 0..4u64 {
        apply(&store, &[kv(&format!("k{i}"), &format!("v{i}"))], i + 1);
    }
    flush(&store);
    if with_log {
        apply(&store, &[kv("k4", "v4")], 5);
    }
    drop(store);
    let runs = run_files(dir);
    assert_eq!(runs.len(), 1, "{runs:?}");
    let (from, to, path) = runs.into_iter().next().expect("one run");
    assert_eq!((from, to), (0, 4));
    let bytes = read_file(&path);
    (path, bytes)
}

const ONE_RUN_RECORDS: [(&[u8], &[u8]); 4] = [
    (b"k0", b"v0"),
    (b"k1", b"v1"),
    (b"k2", b"v2"),
    (b"k3", b"v3"),
];

/// The only run was invalid: open deleted it, the chain is empty and `applied` is below the
/// mark (the caller rebuilds); the store answers nothing, and rebuilding from 0 works.
fn assert_dropped_then_rebuilt(dir: &Path, path: &Path, what: &str) {
    let store = open_with(dir, 5, NEVER);
    assert!(!path.exists(), "{what}: the invalid run is deleted");
    assert!(
        store.applied() < 5,
        "{what}: applied {} must be below 5",
        store.applied()
    );
    assert_eq!(store.applied(), 0, "{what}");
    assert_eq!(run_ranges(dir), vec![], "{what}");
    assert_eq!(scan(&store, b""), vec![], "{what}");
    assert_eq!(get(&store, b"k0"), None, "{what}");
    assert_eq!(
        file_len(&wal_path(dir)),
        0,
        "{what}: [4, 5) does not follow 0: cut"
    );
    store.clear().expect("clear");
    for i in 0..5u64 {
        apply(&store, &[kv(&format!("k{i}"), &format!("v{i}"))], i + 1);
    }
    flush(&store);
    assert_eq!(get_str(&store, "k3").as_deref(), Some("v3"), "{what}");
    drop(store);
    let store = open_with(dir, 5, NEVER);
    assert_eq!(store.applied(), 5, "{what}: rebuilt");
    assert_eq!(scan(&store, b"k").len(), 5, "{what}");
}

/// Truncations, appended bytes and wrong fields, some behind a valid checksum.
#[test]
fn damaged_runs_are_deleted_and_break_the_chain() {
    let dir = tempdir();
    let (_, original) = one_run(dir.path(), true);
    let len = original.len();
    assert_eq!(
        original,
        encode_run(MAGIC, 0, 4, 4, &ONE_RUN_RECORDS),
        "the documented format"
    );
    let records_len = (len - 64) as u64;

    let with_count = |count: u64| {
        let mut bytes = original.clone();
        bytes[24..32].copy_from_slice(&count.to_be_bytes());
        fix_checksum(&mut bytes);
        bytes
    };
    let mut key_past_end = original[..len - 32].to_vec();
    key_past_end.extend_from_slice(&1000u16.to_be_bytes());
    key_past_end.extend_from_slice(&0u32.to_be_bytes());
    key_past_end.extend_from_slice(b"k4");
    key_past_end[24..32].copy_from_slice(&5u64.to_be_bytes());
    key_past_end.extend([0u8; 32]);
    fix_checksum(&mut key_past_end);
    let mut value_past_end = key_past_end.clone();
    value_past_end[len - 32..len - 30].copy_from_slice(&2u16.to_be_bytes());
    value_past_end[len - 30..len - 26].copy_from_slice(&u32::MAX.to_be_bytes());
    fix_checksum(&mut value_past_end);
    let mut partial_record = original[..len - 32].to_vec();
    partial_record.extend([0u8, 1, 0]);
    partial_record.extend([0u8; 32]);
    fix_checksum(&mut partial_record);
    let mut zeroed_checksum = original.clone();
    zeroed_checksum[len - 32..].fill(0);
    let mut flipped_checksum = original.clone();
    flipped_checksum[len - 1] ^= 0x80;

    let damages: Vec<(&str, Vec<u8>)> = vec![
        ("truncated by 1 byte", original[..len - 1].to_vec()),
        ("truncated by 31 bytes", original[..len - 31].to_vec()),
        ("truncated by the checksum", original[..len - 32].to_vec()),
        ("truncated into the records", original[..len - 40].to_vec()),
        ("truncated to 64 bytes", original[..64].to_vec()),
        ("truncated to 63 bytes", original[..63].to_vec()),
        ("truncated into the header", original[..20].to_vec()),
        ("empty", Vec::new()),
        ("a byte appended", [original.as_slice(), &[0]].concat()),
        (
            "32 bytes appended",
            [original.as_slice(), &[0; 32]].concat(),
        ),
        ("a zeroed checksum", zeroed_checksum),
        ("a flipped checksum", flipped_checksum),
        ("all zeros", vec![0; len]),
        (
            "bad magic, valid checksum",
            encode_run(b"FTSTRUN2", 0, 4, 4, &ONE_RUN_RECORDS),
        ),
        (
            "lowercase magic, valid checksum",
            encode_run(b"ftstrun1", 0, 4, 4, &ONE_RUN_RECORDS),
        ),
        (
            "header [0, 3), valid checksum",
            encode_run(MAGIC, 0, 3, 4, &ONE_RUN_RECORDS),
        ),
        (
            "header [1, 4), valid checksum",
            encode_run(MAGIC, 1, 4, 4, &ONE_RUN_RECORDS),
        ),
        (
            "header [0, 5), valid checksum",
            encode_run(MAGIC, 0, 5, 4, &ONE_RUN_RECORDS),
        ),
        (
            "keys out of order, valid checksum",
            encode_run(
                MAGIC,
                0,
                4,
                4,
                &[
                    (b"k1", b"v1"),
                    (b"k0", b"v0"),
                    (b"k2", b"v2"),
                    (b"k3", b"v3"),
                ],
            ),
        ),
        (
            "the last key out of order, valid checksum",
            encode_run(
                MAGIC,
                0,
                4,
                4,
                &[
                    (b"k0", b"v0"),
                    (b"k1", b"v1"),
                    (b"k3", b"v3"),
                    (b"k2", b"v2"),
                ],
            ),
        ),
        (
            "a repeated key, valid checksum",
            encode_run(
                MAGIC,
                0,
                4,
                4,
                &[
                    (b"k0", b"v0"),
                    (b"k1", b"v1"),
                    (b"k1", b"v2"),
                    (b"k3", b"v3"),
                ],
            ),
        ),
        ("count u64::MAX, valid checksum", with_count(u64::MAX)),
        (
            "count larger than possible, valid checksum",
            with_count(records_len / 6 + 1),
        ),
        (
            "count at the most possible, valid checksum",
            with_count(records_len / 6),
        ),
        ("count one more, valid checksum", with_count(5)),
        ("count one fewer, valid checksum", with_count(3)),
        ("count zero, valid checksum", with_count(0)),
        ("a key past the end, valid checksum", key_past_end),
        ("a value past the end, valid checksum", value_past_end),
        ("a partial record header, valid checksum", partial_record),
    ];
    for (what, bytes) in damages {
        let path = run_path(dir.path(), 0, 4);
        write_file(&path, &bytes);
        write_file(&wal_path(dir.path()), &encode_wal(4, 5, &[(b"k4", b"v4")]));
        assert_dropped_then_rebuilt(dir.path(), &path, what);
        // Back to one run [0, 4) and [4, 5) in the log.
        for (_, _, path) in run_files(dir.path()) {
            fs::remove_file(&path).expect("removing a run");
        }
    }
}

/// A valid run under a name whose range differs from its header's.
#[test]
fn a_renamed_run_is_deleted() {
    let dir = tempdir();
    let (path, _) = one_run(dir.path(), false);
    let renamed = run_path(dir.path(), 0, 5);
    fs::rename(&path, &renamed).expect("rename");
    assert_dropped_then_rebuilt(dir.path(), &renamed, "named [0, 5), header [0, 4)");
}

/// A run with an empty range (from == to) is never valid.
#[test]
fn a_run_with_an_empty_range_is_deleted() {
    let dir = tempdir();
    one_run(dir.path(), false);
    let empty = run_path(dir.path(), 4, 4);
    write_file(&empty, &encode_run(MAGIC, 4, 4, 0, &[]));
    let zero = run_path(dir.path(), 0, 0);
    write_file(&zero, &encode_run(MAGIC, 0, 0, 1, &[(b"z", b"z")]));
    let store = open_with(dir.path(), 4, NEVER);
    assert!(!empty.exists());
    assert!(!zero.exists());
    assert_eq!(store.applied(), 4);
    assert_eq!(run_ranges(dir.path()), vec![(0, 4)]);
    assert_eq!(get(&store, b"z"), None);
}

/// Any single bit flipped anywhere in a run file: open never panics, deletes the file and
/// reports the broken chain.
#[test]
fn every_bit_flip_in_a_run_is_detected() {
    let dir = tempdir();
    let (path, original) = one_run(dir.path(), false);
    for at in 0..original.len() {
        for bit in 0..8 {
            let mut bytes = original.clone();
            bytes[at] ^= 1 << bit;
            write_file(&path, &bytes);
            let store = open_with(dir.path(), 4, NEVER);
            assert!(!path.exists(), "byte {at} bit {bit}: not deleted");
            assert_eq!(store.applied(), 0, "byte {at} bit {bit}");
            assert_eq!(scan(&store, b""), vec![], "byte {at} bit {bit}");
            drop(store);
        }
    }
}

/// A damaged run in the middle of the chain: the chain ends before it, the runs after it are
/// deleted too, and `applied` is the end of the runs before it.
#[test]
fn a_damaged_run_in_the_middle_cuts_the_chain() {
    let dir = tempdir();
    let store = open_with(dir.path(), 0, NEVER);
    // 20, 5 and 1 records: no pair merges (20 > 2 * 5, 5 > 2 * 1).
    let sizes = [20, 5, 1];
    for (batch, size) in sizes.iter().enumerate() {
        let writes: Writes = (0..*size)
            .map(|i| kv(&format!("r{batch}-{i:02}"), &format!("{batch}")))
            .chain([kv("last", &batch.to_string())])
            .collect();
        apply(&store, &writes, 2 * batch as u64 + 2);
        flush(&store);
    }
    apply(&store, &[kv("tail", "log")], 7);
    store.wait_for_merges();
    assert_eq!(state_runs(&store), vec![(0, 2, 21), (2, 4, 6), (4, 6, 2)]);
    drop(store);
    let middle = run_path(dir.path(), 2, 4);
    let mut bytes = read_file(&middle);
    bytes[50] ^= 4;
    write_file(&middle, &bytes);
    let store = open_with(dir.path(), 7, NEVER);
    assert_eq!(store.applied(), 2, "the chain ends at the damaged run");
    assert_eq!(
        run_ranges(dir.path()),
        vec![(0, 2)],
        "the runs after it are deleted"
    );
    assert_eq!(get_str(&store, "last").as_deref(), Some("0"));
    assert_eq!(scan(&store, b"r0-").len(), 20);
    assert_eq!(scan(&store, b"r1-"), vec![]);
    assert_eq!(scan(&store, b"r2-"), vec![]);
    assert_eq!(get(&store, b"tail"), None);
    assert_eq!(
        file_len(&wal_path(dir.path())),
        0,
        "[6, 7) does not follow 2"
    );
}

/// Runs that do not start at 0, or leave a gap: no chain reaches them.
#[test]
fn runs_outside_the_chain_are_deleted() {
    let dir = tempdir();
    write_file(
        &run_path(dir.path(), 0, 2),
        &encode_run(MAGIC, 0, 2, 1, &[(b"a", b"1")]),
    );
    write_file(
        &run_path(dir.path(), 3, 5),
        &encode_run(MAGIC, 3, 5, 1, &[(b"b", b"1")]),
    );
    write_file(
        &run_path(dir.path(), 1, 9),
        &encode_run(MAGIC, 1, 9, 1, &[(b"c", b"1")]),
    );
    let store = open_with(dir.path(), 5, NEVER);
    assert_eq!(store.applied(), 2);
    assert_eq!(run_ranges(dir.path()), vec![(0, 2)]);
    assert_eq!(scan(&store, b""), vec![kv("a", "1")]);
}

// ----- merges -----

/// After many flushes the merges settle into size tiers; the files on disk are exactly the
/// runs in memory, and everything reads back, after a reopen too.
#[test]
fn merges_settle_into_tiers_and_leave_no_files_behind() {
    let dir = tempdir();
    let store = open_with(dir.path(), 0, NEVER);
    let mut model = Model::new();
    for batch in 0..40u64 {
        let mut writes: Writes = (0..batch % 7 + 1)
            .map(|j| kv(&format!("m{batch:02}-{j}"), &format!("{batch}")))
            .collect();
        writes.push(kv("shared", &batch.to_string()));
        writes.push(kv(
            &format!("m{:02}-0", batch / 2),
            &format!("again {batch}"),
        ));
        model.extend(writes.iter().cloned());
        apply(&store, &writes, batch + 1);
        flush(&store);
        if batch % 9 == 0 {
            store.wait_for_merges();
        }
    }
    store.wait_for_merges();
    let runs = state_runs(&store);
    for pair in runs.windows(2) {
        assert!(pair[0].2 > 2 * pair[1].2, "not tiered: {runs:?}");
        assert_eq!(pair[0].1, pair[1].0, "not contiguous: {runs:?}");
    }
    assert_eq!(runs.first().map(|r| r.0), Some(0));
    assert_eq!(runs.last().map(|r| r.1), Some(40));
    let ranges: Vec<_> = runs.iter().map(|&(from, to, _)| (from, to)).collect();
    assert_eq!(run_ranges(dir.path()), ranges, "the files are the runs");
    assert_eq!(tmp_files(dir.path()), Vec::<PathBuf>::new());
    assert_eq!(
        store.stats().run_records,
        runs.iter().map(|r| r.2).sum::<u64>()
    );
    assert_holds(&store, &model, "after merges");
    drop(store);
    let store = open_with(dir.path(), 40, NEVER);
    assert_eq!(store.applied(), 40);
    assert_eq!(run_ranges(dir.path()), ranges);
    assert_holds(&store, &model, "reopened");
}

// ----- clear -----

#[test]
fn clear_forgets_everything_and_starts_again_from_zero() {
    let dir = tempdir();
    let store = open_with(dir.path(), 0, NEVER);
    for i in 0..6u64 {
        apply(
            &store,
            &[kv(&format!("k{i}"), "old"), kv("shared", "old")],
            i + 1,
        );
        if i % 2 == 1 {
            flush(&store);
        }
    }
    store.wait_for_merges();
    apply(&store, &[kv("memtable", "old")], 7);
    assert!(!run_ranges(dir.path()).is_empty());
    store.clear().expect("clear");
    assert_eq!(store.applied(), 0);
    assert_eq!(scan(&store, b""), vec![]);
    assert_eq!(get(&store, b"shared"), None);
    assert_eq!(get(&store, b"memtable"), None);
    let stats = store.stats();
    assert_eq!(
        (
            stats.runs,
            stats.run_records,
            stats.memtable_records,
            stats.wal_bytes
        ),
        (0, 0, 0, 0)
    );
    assert!(!store.wants_flush());
    assert_eq!(run_ranges(dir.path()), vec![], "run files deleted");
    assert_eq!(tmp_files(dir.path()), Vec::<PathBuf>::new());
    assert_eq!(file_len(&wal_path(dir.path())), 0, "the log emptied");
    store.wait_for_merges();
    drop(store);

    // Reopened at the old mark: nothing there, the caller must rebuild.
    let store = open_with(dir.path(), 7, NEVER);
    assert_eq!(store.applied(), 0);
    assert_eq!(scan(&store, b""), vec![]);
    // Applying again from 0, with other batch boundaries.
    apply(&store, &[kv("k0", "new"), kv("shared", "new")], 2);
    flush(&store);
    apply(&store, &[kv("k5", "new")], 3);
    flush(&store);
    apply(&store, &[kv("k1", "new")], 5);
    store.wait_for_merges();
    let expected = vec![
        kv("k0", "new"),
        kv("k1", "new"),
        kv("k5", "new"),
        kv("shared", "new"),
    ];
    assert_eq!(scan(&store, b""), expected);
    drop(store);
    let store = open_with(dir.path(), 5, NEVER);
    assert_eq!(store.applied(), 5);
    assert_eq!(scan(&store, b""), expected);
    assert_eq!(get(&store, b"k2"), None);
}

/// `clear` while merges run, then new runs under the same names as the old ones: the files
/// on disk stay exactly the runs in memory.
#[test]
fn clear_during_merges_then_the_same_run_names() {
    let dir = tempdir();
    let store = open_with(dir.path(), 0, NEVER);
    for round in 0..20u64 {
        let value = format!("round {round}");
        apply(&store, &[kv("a", &value), kv("b", &value)], 1);
        flush(&store);
        apply(&store, &[kv("a", &value), kv("c", &value)], 2);
        flush(&store); // 2 <= 2 * 2: a merge starts
        store.clear().expect("clear");
        apply(&store, &[kv("x", &value)], 1);
        flush(&store);
        store.wait_for_merges();
        assert_eq!(
            run_ranges(dir.path()),
            vec![(0, 1)],
            "round {round}: the new run [0, 1)"
        );
        apply(&store, &[kv("y", &value)], 2);
        flush(&store);
        store.wait_for_merges();
        let ranges: Vec<_> = state_runs(&store)
            .iter()
            .map(|&(from, to, _)| (from, to))
            .collect();
        assert_eq!(run_ranges(dir.path()), ranges, "round {round}");
        assert_eq!(
            scan(&store, b""),
            vec![kv("x", &value), kv("y", &value)],
            "round {round}"
        );
        store.clear().expect("clear");
    }
}

// ----- concurrency -----

/// Readers on other threads while one writer applies, flushes and merges run: a key written
/// by batch n is visible from the moment `apply` returns, in `get` and `scan_prefix`, and an
/// overwritten key never goes back to an older value.
#[test]
fn readers_never_see_a_written_key_vanish() {
    const BATCHES: u64 = 200;
    const PER_BATCH: u64 = 4;
    let dir = tempdir();
    let store = open_with(dir.path(), 0, 1024);
    let published = AtomicU64::new(0);
    let done = AtomicBool::new(false);
    let checks = AtomicUsize::new(0);
    let key = |i: u64| format!("k{i:06}").into_bytes();
    let value = |i: u64| format!("v{i}").into_bytes();

    /// Sets `done` when the writer leaves, even by a panic, so the readers stop.
    struct Done<'a>(&'a AtomicBool);
    impl Drop for Done<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Release);
        }
    }

    std::thread::scope(|scope| {
        for reader in 0..3u64 {
            let store = store.clone();
            let (published, done, checks) = (&published, &done, &checks);
            scope.spawn(move || {
                let mut last_counter = 0u64;
                let mut probe = reader;
                loop {
                    let finished = done.load(Ordering::Acquire);
                    let n = published.load(Ordering::Acquire);
                    let written = n * PER_BATCH;
                    // The newest keys, and one older key at random.
                    probe = probe
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1);
                    let older = if written > 0 {
                        (probe >> 33) % written
                    } else {
                        0
                    };
                    for i in (written.saturating_sub(2 * PER_BATCH)..written)
                        .chain((written > 0).then_some(older))
                    {
                        let found = store.get(&key(i)).expect("get");
                        assert_eq!(
                            found,
                            Some(value(i)),
                            "reader {reader}: key {i} after batch {n}"
                        );
                    }
                    let counter = store
                        .get(b"counter")
                        .expect("get")
                        .map(|v| {
                            String::from_utf8(v)
                                .expect("text")
                                .parse::<u64>()
                                .expect("a number")
                        })
                        .unwrap_or(0);
                    assert!(
                        counter >= n,
                        "reader {reader}: counter {counter} after batch {n}"
                    );
                    assert!(
                        counter >= last_counter,
                        "reader {reader}: counter {counter} after {last_counter}"
                    );
                    last_counter = counter;
                    if probe % 4 == 0 {
                        let found = store.scan_prefix(b"k").expect("scan_prefix");
                        assert!(
                            found.len() as u64 >= written,
                            "reader {reader}: {} keys after batch {n}",
                            found.len()
                        );
                        for (i, (k, v)) in found.iter().take(written as usize).enumerate() {
                            assert_eq!(
                                (k, v),
                                (&key(i as u64), &value(i as u64)),
                                "reader {reader}: scan after batch {n}"
                            );
                        }
                    } else {
                        let group = older / 10;
                        let prefix = format!("k{group:05}");
                        let found = store.scan_prefix(prefix.as_bytes()).expect("scan_prefix");
                        let expected: Vec<_> = (group * 10..(group * 10 + 10).min(written))
                            .map(|i| (key(i), value(i)))
                            .collect();
                        assert!(
                            found.len() >= expected.len()
                                && found[..expected.len()] == expected[..],
                            "reader {reader}: prefix {prefix} after batch {n}"
                        );
                    }
                    checks.fetch_add(1, Ordering::Relaxed);
                    if finished {
                        break;
                    }
                }
            });
        }
        let _done = Done(&done);
        for n in 1..=BATCHES {
            let mut writes: Writes = ((n - 1) * PER_BATCH..n * PER_BATCH)
                .map(|i| (key(i), value(i)))
                .collect();
            writes.push((b"counter".to_vec(), n.to_string().into_bytes()));
            apply(&store, &writes, n);
            published.store(n, Ordering::Release);
            if store.wants_flush() {
                flush(&store);
            }
        }
    });
    assert!(checks.load(Ordering::Relaxed) >= 3, "the readers ran");
    store.wait_for_merges();
    let runs = state_runs(&store);
    assert!(!runs.is_empty(), "flushed");
    for pair in runs.windows(2) {
        assert!(pair[0].2 > 2 * pair[1].2, "merged into tiers: {runs:?}");
    }
    let ranges: Vec<_> = runs.iter().map(|&(from, to, _)| (from, to)).collect();
    assert_eq!(run_ranges(dir.path()), ranges, "the files are the runs");
    let model: Model = (0..BATCHES * PER_BATCH)
        .map(|i| (key(i), value(i)))
        .chain([(b"counter".to_vec(), BATCHES.to_string().into_bytes())])
        .collect();
    assert_holds(&store, &model, "after the writer");
}

// ----- the model -----

#[derive(Debug, Clone)]
enum Op {
    /// A batch of `step` entries after `applied`, then a flush if the store wants one.
    Apply(Writes, u64),
    /// A batch ending `back` entries before `applied` (skipped).
    Stale(Writes, u64),
    Flush,
    /// A flush, then a crash before the log is emptied: the old log back, reopened.
    FlushCrash,
    WaitForMerges,
    /// Reopen with `limit` = `applied`.
    Reopen,
    /// Reopen with `limit` this much below `applied`.
    ReopenBelow(u64),
    /// Reopen with `limit` this much above `applied`.
    ReopenAbove(u64),
    Clear,
    Get(Vec<u8>),
    Scan(Vec<u8>),
}

/// Short keys over a small alphabet (with 0x00 and 0xff), so they collide and share prefixes.
fn small_key(max_len: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop::sample::select(vec![0u8, b'a', b'b', b'c', 0xff]),
        0..max_len,
    )
}

fn writes_strategy() -> impl Strategy<Value = Writes> {
    prop::collection::vec(
        (small_key(4), prop::collection::vec(any::<u8>(), 0..24)),
        0..8,
    )
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => (writes_strategy(), 1..4u64).prop_map(|(w, step)| Op::Apply(w, step)),
        1 => (writes_strategy(), 0..3u64).prop_map(|(w, back)| Op::Stale(w, back)),
        2 => Just(Op::Flush),
        1 => Just(Op::FlushCrash),
        1 => Just(Op::WaitForMerges),
        1 => Just(Op::Reopen),
        2 => (1..12u64).prop_map(Op::ReopenBelow),
        1 => (1..5u64).prop_map(Op::ReopenAbove),
        1 => Just(Op::Clear),
        2 => small_key(5).prop_map(Op::Get),
        2 => small_key(3).prop_map(Op::Scan),
    ]
}

/// The batches applied since the last `clear`, and where the runs end.
#[derive(Default)]
struct History {
    batches: Vec<(u64, Writes)>,
    applied: u64,
    run_end: u64,
}

impl History {
    fn state(&self) -> Model {
        let mut model = Model::new();
        for (_, writes) in &self.batches {
            model.extend(writes.iter().cloned());
        }
        model
    }

    fn flushed(&mut self) {
        self.run_end = self.run_end.max(self.applied);
    }

    /// Where a reopen at `limit` must land: the runs' end if the limit is below it, else the
    /// last batch of the log ending at or before the limit.
    fn reopened(&mut self, limit: u64) -> u64 {
        let applied = if limit < self.run_end {
            self.run_end
        } else {
            self.batches
                .iter()
                .map(|&(to, _)| to)
                .filter(|&to| to > self.run_end && to <= limit)
                .max()
                .unwrap_or(self.run_end)
        };
        self.batches.retain(|&(to, _)| to <= applied);
        self.applied = applied;
        applied
    }
}

fn run_model(run_bytes: usize, ops: &[Op]) -> Result<(), TestCaseError> {
    let dir = tempdir();
    let mut store = open_with(dir.path(), 0, run_bytes);
    let mut history = History::default();
    for (step, op) in ops.iter().enumerate() {
        match op {
            Op::Apply(writes, n) => {
                let to = history.applied + n;
                apply(&store, writes, to);
                history.batches.push((to, writes.clone()));
                history.applied = to;
                if store.wants_flush() {
                    flush(&store);
                    history.flushed();
                }
            }
            Op::Stale(writes, back) => {
                let wal = store.stats().wal_bytes;
                apply(&store, writes, history.applied.saturating_sub(*back));
                prop_assert_eq!(
                    store.stats().wal_bytes,
                    wal,
                    "step {}: a skipped batch is not logged",
                    step
                );
            }
            Op::Flush => {
                let writes_a_run = history.applied > history.run_end;
                flush(&store);
                history.flushed();
                if writes_a_run {
                    prop_assert_eq!(
                        store.stats().wal_bytes,
                        0,
                        "step {}: the log is emptied",
                        step
                    );
                }
            }
            Op::FlushCrash => {
                let wal = wal_path(dir.path());
                let logged = read_file(&wal);
                flush(&store);
                history.flushed();
                drop(store);
                write_file(&wal, &logged);
                store = open_with(dir.path(), history.applied, run_bytes);
                prop_assert_eq!(
                    store.stats().memtable_records,
                    0,
                    "step {}: nothing replayed",
                    step
                );
            }
            Op::WaitForMerges => store.wait_for_merges(),
            Op::Reopen | Op::ReopenBelow(_) | Op::ReopenAbove(_) => {
                let limit = match op {
                    Op::ReopenBelow(back) => history.applied.saturating_sub(*back),
                    Op::ReopenAbove(ahead) => history.applied + ahead,
                    _ => history.applied,
                };
                drop(store);
                store = open_with(dir.path(), limit, run_bytes);
                let expected = history.reopened(limit);
                prop_assert_eq!(
                    store.applied(),
                    expected,
                    "step {}: reopened at limit {}",
                    step,
                    limit
                );
            }
            Op::Clear => {
                store.clear().expect("clear");
                history = History::default();
            }
            Op::Get(key) => {
                let model = history.state();
                let found = get(&store, key);
                prop_assert_eq!(
                    found.as_ref(),
                    model.get(key),
                    "step {}: get {:?}",
                    step,
                    key
                );
            }
            Op::Scan(prefix) => {
                let model = history.state();
                prop_assert_eq!(
                    scan(&store, prefix),
                    model_scan(&model, prefix),
                    "step {}: prefix {:?}",
                    step,
                    prefix
                );
            }
        }
        prop_assert_eq!(store.applied(), history.applied, "step {}: {:?}", step, op);
        let model = history.state();
        prop_assert!(
            scan(&store, b"") == model_scan(&model, b""),
            "step {}: {:?}: the store differs from the model",
            step,
            op
        );
    }
    // Everything settles and reads back after a last reopen.
    store.wait_for_merges();
    drop(store);
    let store = open_with(dir.path(), history.applied, run_bytes);
    prop_assert_eq!(store.applied(), history.applied);
    let model = history.state();
    prop_assert!(
        scan(&store, b"") == model_scan(&model, b""),
        "after the last reopen"
    );
    for (key, value) in &model {
        let found = get(&store, key);
        prop_assert_eq!(found.as_ref(), Some(value));
    }
    let ranges: Vec<_> = state_runs(&store)
        .iter()
        .map(|&(from, to, _)| (from, to))
        .collect();
    store.wait_for_merges();
    let settled: Vec<_> = state_runs(&store)
        .iter()
        .map(|&(from, to, _)| (from, to))
        .collect();
    prop_assert!(settled.len() <= ranges.len());
    prop_assert_eq!(run_ranges(dir.path()), settled, "the files are the runs");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 96,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x5747_e570),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Random batches, flushes, merges, reopens at, below and above the mark, clears, reads:
    /// the store always holds what a `BTreeMap` of the surviving batches holds.
    #[test]
    fn the_store_behaves_like_a_btreemap(
        run_bytes in 256usize..4096,
        ops in prop::collection::vec(op_strategy(), 1..80),
    ) {
        run_model(run_bytes, &ops)?;
    }
}

/// A key written again is charged once: rewriting one lot record does not fill the memtable.
#[test]
fn a_rewritten_key_is_charged_once() {
    let dir = tempdir();
    let value = "v".repeat(1000);
    let one_record = 1 + value.len() + MEMTABLE_OVERHEAD;
    let store = open_with(dir.path(), 0, 2 * one_record);
    for to in 1..=100 {
        apply(&store, &[kv("k", &value)], to);
        assert!(!store.wants_flush(), "after {to} rewrites of one key");
    }
    drop(store);
    // The same after replaying the write-ahead log.
    let store = open_with(dir.path(), 100, 2 * one_record);
    assert_eq!(store.applied(), 100);
    assert!(!store.wants_flush());
    apply(&store, &[kv("other", &value)], 101);
    assert!(store.wants_flush());
}
