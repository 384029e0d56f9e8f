//! `fairtrail-bench`: the load generator. One command runs the whole suite several times and
//! prints one table: the same-run baselines (what one core batch-verifies, a no-op tonic
//! service on the same messages, the disk's and sled's raw rates), then a real
//! `fairtrail-node` under unary and streaming ingest, `GetProvenance` and consumer-page
//! reads, its memory and disk, and the storage path's throughput as the log grows. Every
//! figure is the median of the runs with its spread, and node figures are ratios to the
//! baselines. BENCHMARKS.md explains the method and records the numbers.
//!
//! # Layout
//! - this file: settings.
//! - [`phases`]: signing, the order of the phases, the baselines' rows.
//! - [`node_run`]: one run of the node under load and its rows.
//! - [`baseline`]: (a) Ed25519 on one core, (c) plain-file fdatasync and raw sled.
//! - [`noop`]: (b) the no-op `LedgerService`, run as `fairtrail-bench noop-server`.
//! - [`node`]: server processes (the node, the no-op service), memory and disk.
//! - [`grpc`], [`http`]: the clients that put load on them.
//! - [`scale`]: the storage path's throughput as the log grows, run as
//!   `fairtrail-bench scale`, a process of its own so its memory is its own.
//! - [`report`]: histograms, medians and spreads, the table.
//! - [`criterion`]: `fairtrail-bench criterion-table`, several `cargo bench` runs as one
//!   table.

mod baseline;
#[path = "../common/chain.rs"]
mod chain;
mod criterion;
mod grpc;
mod http;
mod node;
mod node_run;
mod noop;
mod phases;
mod report;
mod scale;
#[path = "../common/submit.rs"]
mod submit;

/// The same allocator as the node's (`fairtrail-node`), so the baselines this process runs
/// (the no-op service, the load generator's own side) are measured on equal terms.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// The load generator's settings; `--smoke` replaces the sizes with tiny ones.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "fairtrail-bench",
    about = "Fairtrail's load generator: baselines, a real node under load, one table"
)]
pub struct Args {
    /// A tiny configuration that runs in seconds (for CI): checks everything runs.
    #[arg(long)]
    pub smoke: bool,
    /// Runs of the whole suite; figures are the median over runs, with their spread.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Concurrent unary clients, each on its own connection.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// A second unary phase with this many clients, on the no-op service and the node (0
    /// skips it): for information, the target is judged with `--clients`.
    #[arg(long, default_value_t = 256)]
    pub clients_many: usize,
    /// Concurrent `SubmitStream` clients.
    #[arg(long, default_value_t = 4)]
    pub streams: usize,
    /// Envelopes in flight on each stream.
    #[arg(long, default_value_t = 1024)]
    pub window: usize,
    /// Envelopes submitted with unary `Submit` per run.
    #[arg(long, default_value_t = 30_000)]
    pub unary: usize,
    /// Envelopes submitted on `SubmitStream` in the measured streaming phase per run.
    #[arg(long, default_value_t = 100_000)]
    pub stream: usize,
    /// Entries in the log when reads are measured (filled by streaming, timed in segments).
    #[arg(long, default_value_t = 1_000_000)]
    pub log_size: usize,
    /// Seconds of each read load (`GetProvenance`, the consumer page).
    #[arg(long, default_value_t = 10)]
    pub read_secs: u64,
    /// Concurrent readers (connections) in each read load.
    #[arg(long, default_value_t = 16)]
    pub readers: usize,
    /// Seconds of each in-process baseline.
    #[arg(long, default_value_t = 3)]
    pub baseline_secs: u64,
    /// Entries the storage-path scale run appends (0 skips it).
    #[arg(long, default_value_t = 1_000_000)]
    pub scale: u64,
    /// Entries per group commit in the scale run.
    #[arg(long, default_value_t = 1024)]
    pub scale_batch: usize,
    /// The scale run writes the tiles only, without the index (to tell their costs
    /// apart).
    #[arg(long)]
    pub scale_no_index: bool,
    /// Megabytes of sled's page cache in the scale run [default: the node's default].
    #[arg(long)]
    pub scale_index_cache_mb: Option<u64>,
    /// The scale run flushes the index every this many batches (0: never, as the node).
    #[arg(long, default_value_t = 0)]
    pub scale_flush_every: u64,
    /// The `fairtrail-node` binary [default: beside this one].
    #[arg(long)]
    pub node_bin: Option<PathBuf>,
    /// Where data directories go [default: the system's temporary directory].
    #[arg(long)]
    pub dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug, Clone)]
pub enum Command {
    /// Serve the no-op service (the suite starts this itself).
    #[command(hide = true)]
    NoopServer {
        /// Gather its writes as the node does (`fairtrail_node::gather`).
        #[arg(long)]
        gather: bool,
    },
    /// The storage-path scale run alone; prints its figures as `key value` lines.
    #[command(hide = true)]
    Scale,
    /// Summarise `cargo bench` runs saved with `--save-baseline NAME` as one table.
    CriterionTable {
        /// Criterion's output directory.
        #[arg(long, default_value = "target/criterion")]
        criterion_dir: PathBuf,
        /// The saved runs to summarise.
        #[arg(required = true)]
        baselines: Vec<String>,
    },
}

impl Args {
    /// Envelopes the node gets in the many-clients unary phase.
    pub fn many_unary(&self) -> usize {
        if self.clients_many > 0 {
            self.unary
        } else {
            0
        }
    }

    /// The sizes in force: `--smoke` shrinks everything.
    fn resolved(mut self) -> Args {
        if self.smoke {
            self.runs = 1;
            self.clients = 4;
            self.clients_many = 8;
            self.streams = 2;
            self.window = 64;
            self.unary = 200;
            self.stream = 600;
            self.log_size = 1_500;
            self.read_secs = 1;
            self.readers = 2;
            self.baseline_secs = 1;
            self.scale = 3_000;
            self.scale_batch = 256;
        }
        self.log_size = self
            .log_size
            .max(self.unary + self.stream + self.many_unary());
        self
    }
}

fn main() -> std::process::ExitCode {
    let args = Args::parse().resolved();
    let result = match &args.command {
        Some(Command::NoopServer { gather }) => noop::serve(*gather),
        Some(Command::CriterionTable {
            criterion_dir,
            baselines,
        }) => criterion::table(criterion_dir, baselines),
        Some(Command::Scale) => scale::child(&args),
        None => phases::suite(&args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fairtrail-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
