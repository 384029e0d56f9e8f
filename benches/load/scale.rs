//! Append throughput as the log grows (to 10M entries), without the network or signatures:
//! the committer's storage path run in this process (tiles group commit with its signed
//! checkpoint, then the index batch, written at once), timed over windows of the log's
//! growth, with this process's memory and the disk it leaves.
//!
//! The leaves are real signed harvests, encoded with a distinct integration time each so
//! every leaf (and leaf hash) is unique. The index gets, per entry, the keys a harvest writes
//! in the node: its statement id and leaf hash (the hash indexes), a lot record and an entry
//! in its producer's list (the state store). The ledger rules themselves are measured by the node runs,
//! not here.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use bytes::Bytes;
use fairtrail_client::checkpoint::Checkpoint;
use fairtrail_client::entry::encode_leaf;
use fairtrail_client::merkle::leaf_hash;
use fairtrail_client::note::NoteSigner;
use fairtrail_client::proto;
use fairtrail_client::rules::records::prefix;
use fairtrail_node::index::{Index, IndexOptions};
use fairtrail_node::tiles::TileStore;

use std::io::{BufRead, BufReader};
use std::process::{Command as Process, Stdio};

use anyhow::{anyhow, bail};
use fairtrail_client::statement::now_ms;

use crate::chain::Filler;
use crate::node::{disk_usage, index_disk_usage};
use crate::phases::{sign, MB, PRODUCERS};
use crate::report::{Goal, Results};
use crate::Args;

/// Bytes of a lot record in the node (its JSON, 3.6.8 in SPEC.md), about.
const LOT_RECORD_BYTES: usize = 170;

/// What one scale run measured.
pub struct Scale {
    /// (log size at the end of the window, entries per second over the window).
    pub windows: Vec<(u64, f64)>,
    pub rss: u64,
    pub peak_rss: u64,
    /// Anonymous resident memory (heap), apart from mapped files.
    pub rss_anon: u64,
    pub leaf_bytes: u64,
    pub log_disk: u64,
    pub index_disk: u64,
}

/// Appends `entries` leaves, `batch` per group commit, into a new log under `parent`;
/// measures throughput over the windows that end at each of `marks` (each window is the last
/// tenth of the way to its mark). Without `index` options, only the tiles are written: what
/// the log itself costs, apart from the index. With `flush_every` > 0 the index is flushed
/// every that many batches (the node leaves flushing to sled's background thread).
pub fn run(
    parent: &Path,
    pool: &[proto::Envelope],
    entries: u64,
    batch: usize,
    marks: &[u64],
    index: Option<IndexOptions>,
    flush_every: u64,
) -> anyhow::Result<Scale> {
    let dir = tempfile::Builder::new()
        .prefix("fairtrail-scale-")
        .tempdir_in(parent)?;
    let signer = NoteSigner::new("bench.fairtrail/scale", crate::chain::key(98))?;
    let (_store, mut writer, _) =
        TileStore::open(&dir.path().join("log"), &signer.verifier(), 4096)?;
    let index = index
        .map(|options| Index::open_with(&dir.path().join("index"), options))
        .transpose()?;

    let mut windows = Vec::new();
    let mut leaf_bytes = 0u64;
    let mut size = 0u64;
    let mut window_start: Option<(u64, Instant)> = None;
    let mut marks = marks.iter().copied().filter(|&m| m <= entries).peekable();
    while size < entries {
        let n = (batch as u64).min(entries - size);
        if let Some(&mark) = marks.peek() {
            if window_start.is_none() && size + n > mark - mark / 10 {
                window_start = Some((size, Instant::now()));
            }
        }
        let mut leaves = Vec::with_capacity(n as usize);
        let mut hashes = Vec::with_capacity(n as usize);
        let mut writes = BTreeMap::new();
        for i in size..size + n {
            let envelope = pool[(i % pool.len() as u64) as usize].clone();
            let leaf = encode_leaf(envelope, 1_760_000_000_000 + i)?;
            let hash = leaf_hash(&leaf);
            leaf_bytes += leaf.len() as u64;
            // What a harvest writes in the node: its statement id (to the statement-id hash
            // index), a lot record and an entry in its producer's list (to the state store); the leaf
            // hash goes to the leaf-hash index. The leaf hash stands in for the statement
            // id: as unique, as random.
            let mut statement_key = vec![prefix::STATEMENT];
            statement_key.extend_from_slice(&hash);
            writes.insert(statement_key, i.to_be_bytes().to_vec());
            let mut lot_key = vec![prefix::LOT];
            lot_key.extend_from_slice(&hash);
            lot_key.extend_from_slice(&[0; 4]);
            writes.insert(lot_key, vec![0x42; LOT_RECORD_BYTES]);
            let mut list_key = vec![prefix::BY_PARTICIPANT];
            list_key.extend_from_slice(&[(i % PRODUCERS as u64) as u8; 32]);
            list_key.extend_from_slice(&i.to_be_bytes());
            writes.insert(list_key, Vec::new());
            hashes.push((hash, i));
            leaves.push(Bytes::from(leaf));
        }
        let root = writer.append(&leaves)?;
        let note = Checkpoint {
            origin: signer.name().to_owned(),
            size: writer.size(),
            root,
            extensions: Vec::new(),
        }
        .sign(&signer)?;
        writer.commit(note, root)?;
        if let Some(index) = &index {
            index.apply(writes, &hashes, writer.size())?;
            if flush_every > 0 && (size / batch as u64).is_multiple_of(flush_every) {
                index.flush()?;
            }
        }
        size += n;
        if let (Some(&mark), Some((from, at))) = (marks.peek(), window_start) {
            if size >= mark {
                let rate = (size - from) as f64 / at.elapsed().as_secs_f64();
                eprintln!(
                    "  scale: {size} entries, {rate:.0} entries/s over the last {}",
                    size - from
                );
                windows.push((size, rate));
                window_start = None;
                marks.next();
            }
        }
    }
    if let Some(index) = &index {
        index.flush()?;
    }
    let (rss, peak_rss, rss_anon) = memory()?;
    let (_, log_disk) = disk_usage(&dir.path().join("log"));
    let (_, index_disk) = index_disk_usage(dir.path());
    Ok(Scale {
        windows,
        rss,
        peak_rss,
        rss_anon,
        leaf_bytes,
        log_disk,
        index_disk,
    })
}

/// This process's resident, peak resident and anonymous resident memory, in bytes.
fn memory() -> anyhow::Result<(u64, u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kb = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .map_or(0, |v| v * 1024)
    };
    Ok((kb("VmRSS:"), kb("VmHWM:"), kb("RssAnon:")))
}

/// The scale run, in a process of its own; its figures join this run's.
pub fn in_child(args: &Args, r: &mut Results) -> anyhow::Result<()> {
    let me = std::env::current_exe()?;
    let mut command = Process::new(me);
    command
        .args(["--scale", &args.scale.to_string()])
        .args(["--scale-batch", &args.scale_batch.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if args.smoke {
        command.arg("--smoke");
    }
    if args.scale_no_index {
        command.arg("--scale-no-index");
    }
    if args.scale_flush_every > 0 {
        command.args(["--scale-flush-every", &args.scale_flush_every.to_string()]);
    }
    if let Some(mb) = args.scale_index_cache_mb {
        command.args(["--scale-index-cache-mb", &mb.to_string()]);
    }
    if let Some(d) = &args.dir {
        command.arg("--dir").arg(d);
    }
    command.arg("scale");
    let mut child = command.spawn()?;
    let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
    let mut windows = Vec::new();
    let mut figures = std::collections::HashMap::new();
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        let mut words = line.split_whitespace();
        match (words.next(), words.next(), words.next()) {
            (Some("window"), Some(size), Some(rate)) => {
                windows.push((size.parse::<u64>()?, rate.parse::<f64>()?));
            }
            (Some(k), Some(v), None) => {
                figures.insert(k.to_owned(), v.parse::<f64>()?);
            }
            _ => {}
        }
    }
    if !child.wait()?.success() {
        bail!("the scale run failed");
    }
    let Some(&(first_size, first_rate)) = windows.first() else {
        bail!("the scale run measured nothing");
    };
    r.add(
        &format!("storage path append at {}k", first_size / 1000),
        "entry/s",
        first_rate,
        Goal::None,
    );
    for &(size, rate) in windows.iter().skip(1) {
        r.add_ratio(
            &format!("storage path append at {}k", size / 1000),
            "entry/s",
            rate,
            &format!("same at {}k", first_size / 1000),
            first_rate,
            Goal::RatioAtLeast(0.8),
        );
    }
    let last = windows.last().map_or(0, |w| w.0);
    let get = |k: &str| figures.get(k).copied().unwrap_or(f64::NAN);
    r.add(
        &format!("storage path heap (RssAnon) at {}k", last / 1000),
        "MB",
        get("anon") / MB,
        Goal::None,
    );
    r.add(
        &format!("storage path RSS at {}k", last / 1000),
        "MB",
        get("rss") / MB,
        Goal::None,
    );
    r.add_ratio(
        &format!("storage path log on disk at {}k", last / 1000),
        "MB",
        get("log") / MB,
        "raw leaf bytes",
        get("leaf") / MB,
        Goal::RatioAtMost(1.5),
    );
    r.add(
        &format!("storage path index on disk at {}k", last / 1000),
        "MB",
        get("index") / MB,
        Goal::None,
    );
    Ok(())
}

/// `fairtrail-bench scale`: the storage path alone, figures on stdout.
pub fn child(args: &Args) -> anyhow::Result<()> {
    let parent = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let filler = Filler::new(2, PRODUCERS, now_ms());
    let (pool, _) = sign(&filler, 4096);
    let marks: Vec<u64> = if args.scale >= 100_000 {
        [100_000, 1_000_000, 10_000_000, 100_000_000]
            .into_iter()
            .filter(|&m| m <= args.scale)
            .chain((!matches!(args.scale, 100_000 | 1_000_000 | 10_000_000)).then_some(args.scale))
            .collect()
    } else {
        vec![args.scale / 3, args.scale]
    };
    let s = run(
        &parent,
        &pool,
        args.scale,
        args.scale_batch,
        &marks,
        (!args.scale_no_index).then(|| IndexOptions {
            cache_mb: args
                .scale_index_cache_mb
                .unwrap_or(fairtrail_node::index::DEFAULT_CACHE_MB),
            ..IndexOptions::default()
        }),
        args.scale_flush_every,
    )?;
    for (size, rate) in &s.windows {
        println!("window {size} {rate}");
    }
    println!("rss {}", s.rss);
    println!("peak {}", s.peak_rss);
    println!("anon {}", s.rss_anon);
    println!("leaf {}", s.leaf_bytes);
    println!("log {}", s.log_disk);
    println!("index {}", s.index_disk);
    Ok(())
}
