//! Tile storage against the in-memory reference tree: roots, proofs, reopening, crash
//! recovery and corruption on disk.

use super::*;
use fairtrail_client::checkpoint::Checkpoint;
use fairtrail_client::merkle::{verify_consistency, verify_inclusion, MemoryTree};
use fairtrail_client::note::NoteSigner;

fn signer() -> NoteSigner {
    NoteSigner::new(
        "test.example/log",
        ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]),
    )
    .unwrap()
}

fn leaf(i: u64) -> Bytes {
    Bytes::from(format!("leaf {i}").into_bytes())
}

fn commit(writer: &mut TileWriter, signer: &NoteSigner, leaves: &[Bytes]) -> Hash {
    let root = writer.append(leaves).unwrap();
    let note = Checkpoint {
        origin: signer.name().into(),
        size: writer.size(),
        root,
        extensions: vec![],
    }
    .sign(signer)
    .unwrap();
    writer.commit(note, root).unwrap();
    root
}

fn open(dir: &Path) -> (Arc<TileStore>, TileWriter, Option<SignedCheckpoint>) {
    TileStore::open(dir, &signer().verifier(), 64).unwrap()
}

/// Commits the leaves of `range` in one batch, and adds them to the reference tree.
fn commit_range(
    writer: &mut TileWriter,
    reference: &mut MemoryTree,
    range: std::ops::Range<u64>,
) -> Hash {
    let batch: Vec<Bytes> = range.map(leaf).collect();
    for l in &batch {
        reference.push_leaf_hash(leaf_hash(l));
    }
    commit(writer, &signer(), &batch)
}

/// Appends `total` leaves in batches of varied sizes, checking against the reference tree.
fn fill(writer: &mut TileWriter, reference: &mut MemoryTree, total: u64) {
    let sizes = [1u64, 2, 3, 255, 1, 256, 257, 1000, 7, 4096, 513];
    let mut k = 0;
    while reference.len() < total {
        let n = sizes[k % sizes.len()].min(total - reference.len());
        k += 1;
        let start = reference.len();
        let root = commit_range(writer, reference, start..start + n);
        assert_eq!(root, reference.root(), "root at size {}", reference.len());
    }
}

#[test]
fn roots_and_proofs_match_the_reference_tree() {
    let dir = tempfile::tempdir().unwrap();
    let (store, mut writer, checkpoint) = open(dir.path());
    assert!(checkpoint.is_none());
    let mut reference = MemoryTree::new();
    fill(&mut writer, &mut reference, 70_000);
    let snapshot = store.snapshot();
    assert_eq!(snapshot.size, 70_000);
    for &index in &[0u64, 1, 255, 256, 65_535, 65_536, 69_999] {
        for &size in &[index + 1, 65_536.max(index + 1), 70_000] {
            let proof = store.prove_inclusion(&snapshot, index, size).unwrap();
            assert_eq!(proof, reference.prove_inclusion(index, size).unwrap());
            verify_inclusion(
                &leaf_hash(&leaf(index)),
                index,
                size,
                &proof,
                &reference.root_at(size).unwrap(),
            )
            .unwrap();
        }
        assert_eq!(store.leaf(&snapshot, index).unwrap(), leaf(index));
    }
    for &(a, b) in &[
        (1u64, 70_000u64),
        (256, 65_536),
        (65_535, 65_537),
        (300, 70_000),
    ] {
        let proof = store.prove_consistency(&snapshot, a, b).unwrap();
        assert_eq!(proof, reference.prove_consistency(a, b).unwrap());
        verify_consistency(
            a,
            b,
            &proof,
            &reference.root_at(a).unwrap(),
            &reference.root_at(b).unwrap(),
        )
        .unwrap();
    }
    assert!(matches!(
        store.leaf(&snapshot, 70_000),
        Err(StoreError::OutOfRange { .. })
    ));
}

#[test]
fn reopening_gives_the_same_tree() {
    let dir = tempfile::tempdir().unwrap();
    let mut reference = MemoryTree::new();
    {
        let (_store, mut writer, _) = open(dir.path());
        fill(&mut writer, &mut reference, 1_300);
    }
    let (store, mut writer, checkpoint) = open(dir.path());
    assert_eq!(checkpoint.unwrap().checkpoint.size, 1_300);
    let snapshot = store.snapshot();
    assert_eq!(snapshot.root, reference.root());
    assert_eq!(
        store.prove_inclusion(&snapshot, 3, 1_300).unwrap(),
        reference.prove_inclusion(3, 1_300).unwrap()
    );
    fill(&mut writer, &mut reference, 1_600);
    assert_eq!(store.snapshot().root, reference.root());
}

/// Partial hash tiles are never stored: the edge of every level is derived at open, from the
/// partial bundle and the full tiles below, and gives the signed root (here three levels deep:
/// 66,000 entries are 257 full level-0 tiles, one full level-1 tile and partials above). A
/// partial hash tile an older node left is ignored, whatever it holds.
#[test]
fn the_edge_is_derived_at_open_three_levels_deep() {
    let dir = tempfile::tempdir().unwrap();
    let mut reference = MemoryTree::new();
    {
        let (_store, mut writer, _) = open(dir.path());
        fill(&mut writer, &mut reference, 66_000);
    }
    for level in ["0", "1", "2"] {
        let partials: Vec<_> = walk(&dir.path().join("tile").join(level))
            .into_iter()
            .filter(|p| p.to_string_lossy().contains(".p/"))
            .collect();
        assert!(
            partials.is_empty(),
            "partial hash tiles stored: {partials:?}"
        );
    }
    let stale = dir.path().join("tile/1/001.p/1");
    fs::create_dir_all(stale.parent().unwrap()).unwrap();
    fs::write(&stale, [7u8; 32]).unwrap();
    let (store, mut writer, checkpoint) = open(dir.path());
    assert_eq!(checkpoint.unwrap().checkpoint.size, 66_000);
    let snapshot = store.snapshot();
    assert_eq!(snapshot.root, reference.root());
    for (index, size) in [
        (0, 66_000),
        (65_535, 66_000),
        (65_999, 66_000),
        (300, 65_600),
    ] {
        assert_eq!(
            store.prove_inclusion(&snapshot, index, size).unwrap(),
            reference.prove_inclusion(index, size).unwrap()
        );
    }
    fill(&mut writer, &mut reference, 66_300);
    assert_eq!(store.snapshot().root, reference.root());
    drop((store, writer));

    // A corrupt full tile below a full tile of the level above is not read at open: it is
    // reported when read, never served.
    let path = dir.path().join("tile/0/000");
    let mut bytes = fs::read(&path).unwrap();
    bytes[40] ^= 1;
    fs::write(&path, bytes).unwrap();
    let (store, _writer, _) = open(dir.path());
    let snapshot = store.snapshot();
    assert!(matches!(
        store.prove_inclusion(&snapshot, 5, 66_300),
        Err(StoreError::Corrupt { .. })
    ));
    // Entries of that tile can no longer be matched to their hashes either.
    assert!(matches!(
        store.leaf(&snapshot, 5),
        Err(StoreError::Corrupt { .. })
    ));
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else {
                out.push(path);
            }
        }
    }
    out
}

#[test]
fn a_crash_before_the_checkpoint_loses_only_unacknowledged_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let mut reference = MemoryTree::new();
    {
        let (_store, mut writer, _) = open(dir.path());
        fill(&mut writer, &mut reference, 300);
        // Tiles written and synced, but the process dies before the checkpoint.
        let batch: Vec<Bytes> = (300..1_000)
            .map(|i| Bytes::from(format!("lost {i}")))
            .collect();
        writer.append(&batch).unwrap();
    }
    assert!(
        dir.path().join("tile/entries/002").exists(),
        "a full bundle beyond the checkpoint was written"
    );
    let (store, mut writer, checkpoint) = open(dir.path());
    assert_eq!(checkpoint.unwrap().checkpoint.size, 300);
    assert!(
        !dir.path().join("tile/entries/002").exists(),
        "recovery removes tiles beyond the checkpoint"
    );
    fill(&mut writer, &mut reference, 1_000);
    assert_eq!(store.snapshot().root, reference.root());
    assert_eq!(store.leaf(&store.snapshot(), 500).unwrap(), leaf(500));
}

/// A full tile the right edge is derived from (the last 255 of its level at most) is read at
/// open: corrupt, it stops the node from opening.
#[test]
fn a_corrupt_full_tile_under_the_edge_stops_the_node_from_opening() {
    let dir = tempfile::tempdir().unwrap();
    let mut reference = MemoryTree::new();
    {
        let (_store, mut writer, _) = open(dir.path());
        fill(&mut writer, &mut reference, 600);
    }
    let path = dir.path().join("tile/0/000");
    let mut bytes = fs::read(&path).unwrap();
    bytes[40] ^= 1;
    fs::write(&path, bytes).unwrap();
    let err = TileStore::open(dir.path(), &signer().verifier(), 64)
        .err()
        .unwrap();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
}

#[test]
fn a_corrupt_edge_tile_stops_the_node_from_opening() {
    let dir = tempfile::tempdir().unwrap();
    let mut reference = MemoryTree::new();
    {
        let (_store, mut writer, _) = open(dir.path());
        fill(&mut writer, &mut reference, 600);
    }
    // 600 = 2 full tiles + a partial of 88, whose hashes are derived from the partial
    // bundle: a leaf changed there no longer gives the signed root.
    let path = dir.path().join("tile/entries/002.p/tail");
    let mut bytes = fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fs::write(&path, bytes).unwrap();
    let err = TileStore::open(dir.path(), &signer().verifier(), 64)
        .err()
        .unwrap();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
}

#[test]
fn a_checkpoint_by_another_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (_store, mut writer, _) = open(dir.path());
        commit(&mut writer, &signer(), &[leaf(0)]);
    }
    let other = NoteSigner::new(
        "test.example/log",
        ed25519_dalek::SigningKey::from_bytes(&[8u8; 32]),
    )
    .unwrap();
    assert!(matches!(
        TileStore::open(dir.path(), &other.verifier(), 64),
        Err(StoreError::Checkpoint(_))
    ));
}

/// The partial bundle is one file, appended to by each commit; once its bundle is full it
/// becomes a spare, reused for a new file (no new inode), as its emptied directory is. The
/// tree is the same, a crash while spares are in use loses only what was not committed, and
/// whatever else sits in the spare directory is cleared at open.
#[test]
fn spare_files_are_reused_without_changing_the_tree() {
    let dir = tempfile::tempdir().unwrap();
    let spares = |dir: &Path| fs::read_dir(dir.join(SPARE_DIR)).unwrap().count();
    let signer = signer();
    let mut reference = MemoryTree::new();
    {
        let (store, mut writer, _) = open(dir.path());
        // One entry per commit until the first bundle fills: one file, appended to.
        let partials = dir.path().join("tile/entries/000.p");
        for i in 0..255 {
            reference.push_leaf_hash(leaf_hash(&leaf(i)));
            commit(&mut writer, &signer, &[leaf(i)]);
        }
        let files: Vec<_> = fs::read_dir(&partials)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(files, [TAIL], "one file for the partial bundle");
        let leaves: Vec<Bytes> = (0..255).map(leaf).collect();
        assert_eq!(
            fs::read(partials.join(TAIL)).unwrap(),
            encode_bundle(&leaves)
        );
        reference.push_leaf_hash(leaf_hash(&leaf(255)));
        commit(&mut writer, &signer, &[leaf(255)]);
        // The spare maker moves it in the background.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let retired = partials;
        while retired.exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let kept = spares(dir.path());
        assert!(kept >= 1, "the first bundle's tail is a spare: {kept}");
        let spare_dir = dir.path().join(SPARE_DIR);
        for entry in fs::read_dir(&spare_dir).unwrap() {
            let len = entry.unwrap().metadata().unwrap().len();
            assert_eq!(len, 0, "spares are emptied before they are used");
        }
        assert!(!retired.exists(), "the full bundle's partials are gone");
        // Their directory, emptied, waits to be the next one.
        let spare_dirs = dir.path().join(SPARE_DIRS_DIR);
        assert_eq!(fs::read_dir(&spare_dirs).unwrap().count(), 1);
        for i in 256..300 {
            reference.push_leaf_hash(leaf_hash(&leaf(i)));
            commit(&mut writer, &signer, &[leaf(i)]);
        }
        assert!(spares(dir.path()) < kept, "new files took spares");
        assert_eq!(fs::read_dir(&spare_dirs).unwrap().count(), 0);
        let leaves: Vec<Bytes> = (256..300).map(leaf).collect();
        assert_eq!(
            fs::read(dir.path().join("tile/entries/001.p").join(TAIL)).unwrap(),
            encode_bundle(&leaves)
        );
        assert_eq!(store.snapshot().root, reference.root());
        for i in [0, 255, 256, 299] {
            assert_eq!(store.leaf(&store.snapshot(), i).unwrap(), leaf(i));
        }
        // Written from spares, never committed: the process dies.
        let batch: Vec<Bytes> = (300..700)
            .map(|i| Bytes::from(format!("lost {i}")))
            .collect();
        writer.append(&batch).unwrap();
    }
    fs::create_dir(dir.path().join(SPARE_DIR).join("a-directory")).unwrap();
    fs::write(dir.path().join(SPARE_DIR).join("not-a-number"), b"x").unwrap();
    let spare_dirs = dir.path().join(SPARE_DIRS_DIR);
    fs::create_dir_all(spare_dirs.join("7").join("not-empty")).unwrap();
    fs::create_dir(spare_dirs.join("8")).unwrap();
    fs::write(spare_dirs.join("9"), b"a file").unwrap();
    // A second name for a committed bundle in the spares, as a power loss could leave one
    // without a journal: never reused (the fill below would truncate the bundle).
    let alias = dir.path().join(SPARE_DIR).join("999999");
    fs::hard_link(dir.path().join("tile/entries/000"), &alias).unwrap();
    let (store, mut writer, checkpoint) = open(dir.path());
    assert_eq!(checkpoint.unwrap().checkpoint.size, 300);
    assert!(!dir.path().join(SPARE_DIR).join("a-directory").exists());
    assert!(!dir.path().join(SPARE_DIR).join("not-a-number").exists());
    assert!(
        !alias.exists(),
        "the second name is removed, the bundle kept"
    );
    let mut kept_dirs: Vec<_> = fs::read_dir(&spare_dirs)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    kept_dirs.sort();
    // "8" is kept; "7", not empty, is left alone (it may be a committed directory's second
    // name), and the file "9" removed.
    assert_eq!(kept_dirs, ["7", "8"]);
    assert!(spare_dirs.join("7").join("not-empty").is_dir());
    assert_eq!(store.snapshot().root, reference.root());
    fill(&mut writer, &mut reference, 1_000);
    assert_eq!(store.snapshot().root, reference.root());
    assert_eq!(store.leaf(&store.snapshot(), 650).unwrap(), leaf(650));
    // Every committed partial width of the edge tile still reads back whole.
    let (_store, _writer, checkpoint) = open(dir.path());
    assert_eq!(checkpoint.unwrap().checkpoint.size, 1_000);
}

/// A spare directory renamed into place for a batch that never commits: at reopen the log is
/// the last checkpoint's, and the directory serves the bundle when it grows again.
#[test]
fn a_recycled_directory_in_a_batch_lost_to_a_crash_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut reference = MemoryTree::new();
    let spare_dirs = dir.path().join(SPARE_DIRS_DIR);
    let spares = || fs::read_dir(&spare_dirs).unwrap().count();
    {
        let (_store, mut writer, _) = open(dir.path());
        // Bundle 0 in two commits (a partial, then full), then bundle 1 the same way: each
        // full bundle's partial directory becomes the spare the next one takes.
        for range in [0..10, 10..256, 256..266, 266..512] {
            commit_range(&mut writer, &mut reference, range);
        }
        // The spare maker moves bundle 1's partial directory aside (and bundle 0's, if
        // bundle 1 did not take it in time).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let retired = dir.path().join("tile/entries/001.p");
        while retired.exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let before = spares();
        assert!(before >= 1);
        // Bundle 2's partial directory is a spare, written into, never committed.
        let lost: Vec<Bytes> = (0..10).map(|i| Bytes::from(format!("lost {i}"))).collect();
        writer.append(&lost).unwrap();
        assert_eq!(spares(), before - 1);
        assert!(dir.path().join("tile/entries/002.p/tail").is_file());
    }
    let (store, mut writer, checkpoint) = open(dir.path());
    assert_eq!(checkpoint.unwrap().checkpoint.size, 512);
    assert_eq!(store.snapshot().root, reference.root());
    assert!(!dir.path().join("tile/entries/002.p/tail").exists());
    fill(&mut writer, &mut reference, 700);
    assert_eq!(store.snapshot().root, reference.root());
    for i in [0, 255, 256, 511, 512, 699] {
        assert_eq!(store.leaf(&store.snapshot(), i).unwrap(), leaf(i));
    }
    let (store, _writer, checkpoint) = open(dir.path());
    assert_eq!(checkpoint.unwrap().checkpoint.size, 700);
    assert_eq!(store.leaf(&store.snapshot(), 650).unwrap(), leaf(650));
}

/// The spare maker tops the pool up in the background when it runs low, its files are taken
/// for new tiles (full ones included) without changing the tree, and it stops with the writer.
#[test]
fn spares_are_made_ahead_of_need_and_the_maker_stops_with_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let spares = |dir: &Path| fs::read_dir(dir.join(SPARE_DIR)).unwrap().count();
    let wait_for = |dir: &Path, want: usize| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while spares(dir) < want && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        spares(dir)
    };
    let mut reference = MemoryTree::new();
    {
        let (store, mut writer, _) = open(dir.path());
        assert_eq!(wait_for(dir.path(), SPARES_TARGET), SPARES_TARGET);
        // 40 full tiles and bundles at once take more spares than the pool holds above its
        // low mark (81 of 128 would leave 47): the maker refills it, at least to the mark
        // (it may finish a round while the commit still takes files).
        commit_range(&mut writer, &mut reference, 0..40 * 256);
        assert_eq!(store.snapshot().root, reference.root());
        assert!(wait_for(dir.path(), SPARES_LOW) >= SPARES_LOW);
        assert_eq!(store.leaf(&store.snapshot(), 5_000).unwrap(), leaf(5_000));
    }
    // The writer is gone: nothing more is created, even with the pool emptied.
    for entry in fs::read_dir(dir.path().join(SPARE_DIR)).unwrap() {
        fs::remove_file(entry.unwrap().path()).unwrap();
    }
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert_eq!(spares(dir.path()), 0);
    let (store, _writer, checkpoint) = open(dir.path());
    assert_eq!(checkpoint.unwrap().checkpoint.size, 40 * 256);
    assert_eq!(store.snapshot().root, reference.root());
}

/// Each commit swaps the new checkpoint in for the old one: the two files keep their inodes
/// (nothing is created or freed per commit), the old checkpoint is never read back, and the
/// log reopens at the last commit.
#[cfg(target_os = "linux")]
#[test]
fn checkpoints_are_swapped_into_place_without_new_files() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let signer = signer();
    let inodes = |dir: &Path| {
        let mut inodes = [CHECKPOINT_FILE, CHECKPOINT_TMP]
            .map(|name| fs::metadata(dir.join(name)).unwrap().ino());
        inodes.sort();
        inodes
    };
    let (_store, mut writer, _) = open(dir.path());
    commit(&mut writer, &signer, &[leaf(0)]);
    commit(&mut writer, &signer, &[leaf(1)]);
    let before = inodes(dir.path());
    let second = fs::read_to_string(dir.path().join(CHECKPOINT_FILE)).unwrap();
    commit(&mut writer, &signer, &[leaf(2)]);
    assert_eq!(
        inodes(dir.path()),
        before,
        "a commit created a checkpoint file"
    );
    assert_eq!(
        fs::read_to_string(dir.path().join(CHECKPOINT_TMP)).unwrap(),
        second,
        "the replaced checkpoint is kept aside"
    );
    drop(writer);
    let (store, _writer, checkpoint) = open(dir.path());
    assert_eq!(checkpoint.unwrap().checkpoint.size, 3);
    assert_eq!(store.snapshot().size, 3);
}

/// Partial tiles are served from the published tree, whatever became of their files: older
/// widths of a tile now full (their files reused as spares), and the edge itself.
#[test]
fn partial_tiles_come_from_the_published_tree() {
    let dir = tempfile::tempdir().unwrap();
    let (store, mut writer, _) = open(dir.path());
    let signer = signer();
    let mut reference = MemoryTree::new();
    for i in 0..600 {
        reference.push_leaf_hash(leaf_hash(&leaf(i)));
        commit(&mut writer, &signer, &[leaf(i)]);
    }
    let hashes = |from: u64, width: u64| -> Vec<u8> {
        (from..from + width)
            .flat_map(|i| leaf_hash(&leaf(i)))
            .collect()
    };
    let leaves = |from: u64, width: u64| -> Vec<u8> {
        encode_bundle(&(from..from + width).map(leaf).collect::<Vec<_>>())
    };
    let tile = |kind, n, width| store.partial_tile(kind, n, width).unwrap();
    // Tile 0 is full; its 17-wide partial file was moved to the spares long ago.
    assert_eq!(tile(TileKind::Hashes(0), 0, 17), Some(hashes(0, 17)));
    assert_eq!(tile(TileKind::Entries, 0, 5), Some(leaves(0, 5)));
    // The edge tile (entries 512..600).
    assert_eq!(tile(TileKind::Hashes(0), 2, 88), Some(hashes(512, 88)));
    assert_eq!(tile(TileKind::Entries, 2, 40), Some(leaves(512, 40)));
    // Level 1: two full level-0 tiles so far.
    let level1 = tile(TileKind::Hashes(1), 0, 2).unwrap();
    assert_eq!(level1.len(), 64);
    // Beyond the published tree, or not a partial width.
    assert_eq!(tile(TileKind::Hashes(0), 2, 89), None);
    assert_eq!(tile(TileKind::Hashes(1), 0, 3), None);
    assert_eq!(tile(TileKind::Hashes(0), 0, 0), None);
    assert_eq!(tile(TileKind::Hashes(0), 0, 256), None);
}

/// The tail file holds the committed leaves of the edge's bundle and whatever an uncommitted
/// batch appended after them: at open it is cut back to the checkpoint's leaves, and later
/// commits append after those.
#[test]
fn a_tail_widened_by_a_lost_batch_is_cut_back_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut reference = MemoryTree::new();
    let tail = dir.path().join("tile/entries/001.p").join(TAIL);
    {
        let (_store, mut writer, _) = open(dir.path());
        fill(&mut writer, &mut reference, 266);
        let lost: Vec<Bytes> = (0..20).map(|i| Bytes::from(format!("lost {i}"))).collect();
        writer.append(&lost).unwrap();
        let mut widened: Vec<Bytes> = (256..266).map(leaf).collect();
        widened.extend(lost);
        assert_eq!(fs::read(&tail).unwrap(), encode_bundle(&widened));
    }
    let (store, mut writer, checkpoint) = open(dir.path());
    assert_eq!(checkpoint.unwrap().checkpoint.size, 266);
    let committed: Vec<Bytes> = (256..266).map(leaf).collect();
    assert_eq!(fs::read(&tail).unwrap(), encode_bundle(&committed));
    commit_range(&mut writer, &mut reference, 266..271);
    let both: Vec<Bytes> = (256..271).map(leaf).collect();
    assert_eq!(fs::read(&tail).unwrap(), encode_bundle(&both));
    assert_eq!(store.snapshot().root, reference.root());
    drop((store, writer));
    let (store, _writer, checkpoint) = open(dir.path());
    assert_eq!(checkpoint.unwrap().checkpoint.size, 271);
    assert_eq!(store.snapshot().root, reference.root());
}

/// A directory an older node wrote, with one file per partial width (`<N>.p/<W>`) and no
/// tail, opens from that file; a tail beside it that does not give the signed root (written
/// by a first commit that never reached its checkpoint) is set aside, and the next commit
/// writes the whole partial bundle to a new tail.
#[test]
fn an_older_nodes_partial_bundle_is_read_and_a_tail_written_at_the_next_commit() {
    let dir = tempfile::tempdir().unwrap();
    let mut reference = MemoryTree::new();
    let partials = dir.path().join("tile/entries/001.p");
    {
        let (_store, mut writer, _) = open(dir.path());
        fill(&mut writer, &mut reference, 300);
    }
    // As an older node left it: the partial bundle of width 44 in a file of that name, and a
    // tail of zeros (its blocks never written before a power loss).
    fs::rename(partials.join(TAIL), partials.join("44")).unwrap();
    fs::write(partials.join(TAIL), vec![0u8; 4096]).unwrap();
    let (store, mut writer, checkpoint) = open(dir.path());
    assert_eq!(checkpoint.unwrap().checkpoint.size, 300);
    assert_eq!(store.snapshot().root, reference.root());
    assert!(!partials.join(TAIL).exists(), "the stale tail is removed");
    commit_range(&mut writer, &mut reference, 300..310);
    let leaves: Vec<Bytes> = (256..310).map(leaf).collect();
    assert_eq!(
        fs::read(partials.join(TAIL)).unwrap(),
        encode_bundle(&leaves)
    );
    drop((store, writer));
    let (store, _writer, checkpoint) = open(dir.path());
    assert_eq!(checkpoint.unwrap().checkpoint.size, 310);
    assert_eq!(store.snapshot().root, reference.root());
}

/// A full bundle's partial directory that a crash left before the spare maker emptied it is
/// emptied at the next open; the tree is unchanged.
#[test]
fn a_full_bundles_partial_directory_left_by_a_crash_is_emptied_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut reference = MemoryTree::new();
    {
        let (_store, mut writer, _) = open(dir.path());
        fill(&mut writer, &mut reference, 600);
    }
    // As if the process died before the spare maker took bundle 1's tail.
    let leftover = dir.path().join("tile/entries/001.p");
    fs::create_dir_all(&leftover).unwrap();
    let leaves: Vec<Bytes> = (256..300).map(leaf).collect();
    fs::write(leftover.join(TAIL), encode_bundle(&leaves)).unwrap();
    let (store, _writer, checkpoint) = open(dir.path());
    assert_eq!(checkpoint.unwrap().checkpoint.size, 600);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while leftover.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(
        !leftover.exists(),
        "the leftover directory is emptied and moved aside"
    );
    assert_eq!(store.snapshot().root, reference.root());
    assert_eq!(store.leaf(&store.snapshot(), 299).unwrap(), leaf(299));
    assert!(dir.path().join("tile/entries/002.p").join(TAIL).is_file());
}
