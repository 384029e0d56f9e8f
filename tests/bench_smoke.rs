//! The load generator's smoke configuration: `fairtrail-bench --smoke` runs every phase of the
//! suite (baselines, the no-op service, a real node under unary and streaming ingest, reads,
//! the storage scale run) at a tiny size and prints its table. Benchmarks are not timed
//! tests: this checks that the suite runs, never how fast.

use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;
use tokio::time::timeout;

use crate::util::binaries;

/// Generous: a debug build on a busy 2-core machine.
const SMOKE_TIMEOUT: Duration = Duration::from_secs(300);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn benches_smoke() {
    // Cargo builds the root package's binaries for its integration tests.
    let bench = env!("CARGO_BIN_EXE_fairtrail-bench");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut command = Command::new(bench);
    command
        .arg("--smoke")
        .arg("--node-bin")
        .arg(&binaries().node)
        .arg("--dir")
        .arg(dir.path())
        .env("FAIRTRAIL_LOG", "error")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let output = timeout(SMOKE_TIMEOUT, command.output())
        .await
        .expect("fairtrail-bench --smoke did not finish in time")
        .expect("cannot run fairtrail-bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "fairtrail-bench --smoke failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    for row in [
        "| figure ",
        "(a) Ed25519 batch verify, 1 core",
        "(b) no-op tonic, unary Submit",
        "(b) no-op tonic, SubmitStream",
        "(c) plain file, fdatasync per entry",
        "(c) sled raw batched insert",
        "node unary Submit, durable",
        "node SubmitStream, durable",
        "GetProvenance p99, 1 client",
        "consumer page, 2 keep-alive clients",
        "node RSS at",
        "log on disk",
        "storage path append at",
    ] {
        assert!(
            stdout.contains(row),
            "the table has no row {row:?}:\n{stdout}"
        );
    }
    // Every data directory was removed.
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .expect("the directory")
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "the suite left {left:?} behind");
}
