//! A node's log on disk, read and written as C2SP tlog-tiles lays it out (SPEC.md 10.1, 10.2),
//! with nothing of the node's own code: to tamper with a stopped node's leaves, to forge a whole
//! log signed with a node's key (what a malicious node could serve), and to check that a node
//! refuses a log whose tiles do not give its checkpoint's root.
//!
//! Layout: `log/tile/<L>/<N>` holds 256 hashes of level `L` (leaf hashes at level 0, the root
//! of each full tile of the level below above that), `log/tile/entries/<N>` 256 leaves as u16
//! big-endian length + bytes; the last tile of a level is partial, at `<N>.p/<W>`; `<N>` is in
//! groups of three digits, all but the last prefixed with `x`. `log/checkpoint` is the signed
//! note of the tree. A node stores only the partial bundle of the edge (it derives partial
//! hash tiles), in one file appended to at each commit, `<N>.p/tail`; the forged logs written
//! here are laid out as an older node wrote them, one file per partial width, with partial
//! hash tiles too, which a node reads and ignores respectively (SPEC.md 10.2, 10.4).

use std::path::{Path, PathBuf};
use std::process::Stdio;

use ed25519_dalek::SigningKey;
use fairtrail_client::checkpoint::{Checkpoint, SignedCheckpoint};
use fairtrail_client::keys::{read_signing_key, write_signing_key};
use fairtrail_client::merkle::{leaf_hash, node_hash, Hash, MemoryTree};
use fairtrail_client::note::NoteSigner;
use tokio::process::Command;
use tokio::time::timeout;

use super::{binaries, hermetic, START_TIMEOUT};

/// Entries (or hashes) in a full tile.
pub const TILE_WIDTH: usize = 256;

/// `N` as path elements: 5 -> `005`, 1234067 -> `x001/x234/067`.
pub fn index_path(n: u64) -> String {
    let digits = n.to_string();
    let padded = format!("{}{digits}", "0".repeat((3 - digits.len() % 3) % 3));
    let groups: Vec<&str> = (0..padded.len())
        .step_by(3)
        .map(|i| &padded[i..i + 3])
        .collect();
    let (last, rest) = groups.split_last().expect("at least one group");
    rest.iter()
        .map(|g| format!("x{g}"))
        .chain(std::iter::once((*last).to_owned()))
        .collect::<Vec<_>>()
        .join("/")
}

/// The file of tile `n` of `width` entries: a hash tile of `level`, or with `None` an entry
/// bundle.
pub fn tile_path(data_dir: &Path, level: Option<u8>, n: u64, width: usize) -> PathBuf {
    let kind = level.map_or_else(|| "entries".to_owned(), |l| l.to_string());
    let full = format!("log/tile/{kind}/{}", index_path(n));
    if width == TILE_WIDTH {
        data_dir.join(full)
    } else {
        data_dir.join(format!("{full}.p/{width}"))
    }
}

/// The file holding entry bundle `n` of `width` leaves: for a partial bundle, its tail file
/// when there is one (the leaves are its first `width`), else the file of that width.
pub fn bundle_path(data_dir: &Path, n: u64, width: usize) -> PathBuf {
    let path = tile_path(data_dir, None, n, width);
    if width < TILE_WIDTH {
        let tail = path.with_file_name("tail");
        if tail.exists() {
            return tail;
        }
    }
    path
}

/// The entry bundle holding entry `index` in a log of `size` entries, and the offset of that
/// entry's bytes (after its length prefix) in the file.
pub fn leaf_location(data_dir: &Path, size: u64, index: u64) -> (PathBuf, usize) {
    let n = index / TILE_WIDTH as u64;
    let width = if (n + 1) * TILE_WIDTH as u64 <= size {
        TILE_WIDTH
    } else {
        (size % TILE_WIDTH as u64) as usize
    };
    let path = bundle_path(data_dir, n, width);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut at = 0;
    for _ in 0..index % TILE_WIDTH as u64 {
        at += 2 + usize::from(u16::from_be_bytes([bytes[at], bytes[at + 1]]));
    }
    (path, at + 2)
}

/// The log's signer, from the data directory's `log-key.pem` and `origin`: what a node (or
/// whoever holds its key) signs checkpoints with.
pub fn log_signer(data_dir: &Path) -> NoteSigner {
    let key = read_signing_key(&data_dir.join("log-key.pem")).expect("the node's log key");
    let origin = std::fs::read_to_string(data_dir.join("origin")).expect("the node's origin");
    NoteSigner::new(origin.trim(), key).expect("a note signer")
}

/// The signed checkpoint on disk, verified with the key in the data directory.
pub fn checkpoint_on_disk(data_dir: &Path) -> SignedCheckpoint {
    let note = std::fs::read_to_string(data_dir.join("log/checkpoint")).expect("log/checkpoint");
    SignedCheckpoint::verify(&note, &log_signer(data_dir).verifier())
        .expect("the checkpoint on disk verifies")
}

/// Every leaf of the checkpoint's tree, read from the entry bundles.
pub fn read_leaves(data_dir: &Path) -> Vec<Vec<u8>> {
    let size = checkpoint_on_disk(data_dir).checkpoint.size;
    let mut leaves = Vec::with_capacity(size as usize);
    let mut n = 0u64;
    while (leaves.len() as u64) < size {
        let width = (size - n * TILE_WIDTH as u64).min(TILE_WIDTH as u64) as usize;
        let path = bundle_path(data_dir, n, width);
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut at = 0;
        for _ in 0..width {
            let len = usize::from(u16::from_be_bytes([bytes[at], bytes[at + 1]]));
            leaves.push(bytes[at + 2..at + 2 + len].to_vec());
            at += 2 + len;
        }
        assert_eq!(at, bytes.len(), "{} has trailing bytes", path.display());
        n += 1;
    }
    leaves
}

/// The root of a full tile's 256 hashes.
fn tile_root(hashes: &[Hash]) -> Hash {
    let mut row = hashes.to_vec();
    while row.len() > 1 {
        row = row.chunks(2).map(|p| node_hash(&p[0], &p[1])).collect();
    }
    row[0]
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().expect("a tile has a directory"))
        .expect("cannot create a tile directory");
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// Replaces the log in `data_dir` with `leaves`: every tile and bundle, and a checkpoint of
/// their tree signed by `signer`. Returns the signed note. Other files (the key, the origin,
/// the index) are left alone.
pub fn write_log(data_dir: &Path, leaves: &[Vec<u8>], signer: &NoteSigner) -> String {
    let log = data_dir.join("log");
    if log.exists() {
        std::fs::remove_dir_all(&log).expect("cannot remove the old log");
    }
    // Entry bundles.
    for (n, chunk) in leaves.chunks(TILE_WIDTH).enumerate() {
        let mut bundle = Vec::new();
        for leaf in chunk {
            let len = u16::try_from(leaf.len()).expect("a leaf fits a bundle");
            bundle.extend_from_slice(&len.to_be_bytes());
            bundle.extend_from_slice(leaf);
        }
        write(&tile_path(data_dir, None, n as u64, chunk.len()), &bundle);
    }
    // Hash tiles, level by level, while the level has any hash.
    let mut hashes: Vec<Hash> = leaves.iter().map(|l| leaf_hash(l)).collect();
    let mut level = 0u8;
    while !hashes.is_empty() {
        for (n, chunk) in hashes.chunks(TILE_WIDTH).enumerate() {
            write(
                &tile_path(data_dir, Some(level), n as u64, chunk.len()),
                &chunk.concat(),
            );
        }
        hashes = hashes.chunks_exact(TILE_WIDTH).map(tile_root).collect();
        level += 1;
    }
    let mut tree = MemoryTree::new();
    for leaf in leaves {
        tree.push_leaf_hash(leaf_hash(leaf));
    }
    let note = Checkpoint {
        origin: signer.name().to_owned(),
        size: tree.len(),
        root: tree.root(),
        extensions: vec![],
    }
    .sign(signer)
    .expect("signing the checkpoint");
    write(&log.join("checkpoint"), note.as_bytes());
    note
}

/// Makes `data_dir` a node's data directory holding `leaves`, signed with `key` under
/// `origin`: what a node whose operator writes whatever log it likes would serve.
pub fn forge_data_dir(data_dir: &Path, key: &SigningKey, origin: &str, leaves: &[Vec<u8>]) {
    write_signing_key(&data_dir.join("log-key.pem"), key).expect("writing the log key");
    std::fs::write(data_dir.join("origin"), format!("{origin}\n")).expect("writing the origin");
    let signer = NoteSigner::new(origin, key.clone()).expect("a note signer");
    write_log(data_dir, leaves, &signer);
}

/// Starts `fairtrail-node` on `data_dir` and expects it to refuse: it must exit with a failure
/// before it serves. Returns what it printed on stderr.
pub async fn refused_start(data_dir: &Path) -> String {
    let mut command = Command::new(&binaries().node);
    hermetic(&mut command);
    command
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let output = timeout(START_TIMEOUT, command.output())
        .await
        .expect("the node neither served nor exited")
        .expect("cannot run fairtrail-node");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        !output.status.success() && !stdout.contains("listening"),
        "the node started on a corrupt log ({}):\n{stdout}\n{stderr}",
        output.status
    );
    stderr
}
