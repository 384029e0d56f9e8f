//! The end-to-end harness: builds `fairtrail-node` and `fairtrail` once per test process, runs
//! a real node on a free loopback port in a temporary data directory, and runs the CLI.
//!
//! Every wait here is bounded: a node that never binds, never exits or never answers fails
//! the test with its log instead of hanging it.
//!
//! # Layout
//! - this file: building the binaries, and the time limits.
//! - [`node`]: `TestNode`, a real node: start, stop (SIGTERM), kill (SIGKILL), restart.
//! - [`cli`]: running the `fairtrail` CLI.
//! - [`grpc`]: connections, submissions on both paths, reads, checked receipts.
//! - [`statements`]: signed statements to submit.
//! - [`writer`]: statements signed with deterministic keys, written with checked receipts.
//! - [`chain`]: a whole coffee chain written to a node, with knobs that break one thing.
//! - [`verdict`]: `fairtrail verify --json` and its report.
//! - [`tiles`]: a node's log on disk as tlog-tiles: tampered with, rewritten, forged.
//! - [`http`]: a raw HTTP/1.1 client, and a node serving the demo chain's consumer pages.
//! - [`raw`]: bytes the typed clients refuse to send: any gRPC request body, any HTTP
//!   request, protobuf spliced in place.

pub mod chain;
mod cli;
mod grpc;
pub mod http;
mod node;
pub mod raw;
mod statements;
pub mod tiles;
pub mod verdict;
pub mod writer;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use tokio::process::Command;

pub use cli::{arg, fairtrail, CliOutput};
pub use grpc::*;
pub use node::TestNode;
pub use statements::*;

/// How long a node may take to recover its data directory and start serving.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a node may take to drain its sequencer and exit after a signal.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one gRPC call, one stream message or one CLI run may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long building the binaries may take: another build may hold cargo's lock.
const BUILD_TIMEOUT: Duration = Duration::from_secs(900);

/// The binaries under test, built with the test's own profile.
pub struct Binaries {
    pub node: PathBuf,
    pub cli: PathBuf,
}

/// Builds the binaries on first use; every later call (from any test thread) gets the same
/// paths, so cargo runs once per test process.
pub fn binaries() -> &'static Binaries {
    static BINARIES: OnceLock<Binaries> = OnceLock::new();
    BINARIES.get_or_init(build)
}

/// Runs `cargo build -p fairtrail-node -p fairtrail-client --bins` into the target directory
/// this test executable came from (`<target>/<profile>/deps/<test>`), and takes the binaries'
/// paths from cargo's JSON messages rather than guessing the layout.
fn build() -> Binaries {
    let exe = std::env::current_exe().expect("the test executable's path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test executable lives in <target>/<profile>/deps");
    let target_dir = profile_dir
        .parent()
        .expect("<target>/<profile> has a parent");
    let profile = profile_dir
        .file_name()
        .and_then(|n| n.to_str())
        .expect("the profile directory's name");

    let mut cargo = std::process::Command::new(env!("CARGO"));
    cargo
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "build",
            "-p",
            "fairtrail-node",
            "-p",
            "fairtrail-client",
            "--bins",
        ])
        .args(["--message-format", "json-render-diagnostics"])
        .arg("--target-dir")
        .arg(target_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match profile {
        "debug" => {}
        "release" => {
            cargo.arg("--release");
        }
        other => {
            cargo.args(["--profile", other]);
        }
    }
    let child = cargo.spawn().expect("cannot run cargo");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let output = match rx.recv_timeout(BUILD_TIMEOUT) {
        Ok(output) => output.expect("cannot wait for cargo"),
        Err(_) => {
            // SAFETY: kill(2) on the pid of our own child, which the waiting thread has not
            // reaped yet (it is still waiting), so the pid cannot have been reused.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            panic!("building the binaries took longer than {BUILD_TIMEOUT:?}");
        }
    };
    assert!(
        output.status.success(),
        "building the binaries failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );

    let (mut node, mut cli) = (None, None);
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let Some(path) = message["executable"].as_str() else {
            continue;
        };
        match message["target"]["name"].as_str() {
            Some("fairtrail-node") => node = Some(PathBuf::from(path)),
            Some("fairtrail") => cli = Some(PathBuf::from(path)),
            _ => {}
        }
    }
    Binaries {
        node: node.expect("cargo built no fairtrail-node executable"),
        cli: cli.expect("cargo built no fairtrail executable"),
    }
}

/// Removes every `FAIRTRAIL_*` setting the test runner's environment might carry (except the
/// node's log filter), so only the test's own flags count.
fn hermetic(command: &mut Command) {
    let inherited: Vec<OsString> = std::env::vars_os()
        .map(|(k, _)| k)
        .filter(|k| {
            k.to_str()
                .is_some_and(|k| k.starts_with("FAIRTRAIL_") && k != "FAIRTRAIL_LOG")
        })
        .collect();
    for k in inherited {
        command.env_remove(k);
    }
    // A small disk reserve, so that the tests pass on a machine whose temporary directory
    // has less free than the default 256 MiB; the tests of the reserve set their own.
    command.env("FAIRTRAIL_DISK_RESERVE_MB", "16");
}
