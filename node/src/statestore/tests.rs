use super::*;

fn open(dir: &Path, limit: u64) -> StateStore {
    StateStore::open(dir, limit, 1 << 20).expect("open")
}

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
