//! The suite, phase by phase: sign every envelope (before any clock starts), then in each
//! run measure the baselines, the no-op service, the node, and the storage path's scale run,
//! and record each figure with its ratio to the same run's baseline.

use std::time::{Duration, Instant};

use anyhow::anyhow;
use fairtrail_client::entry::encode_leaf;
use fairtrail_client::proto;
use fairtrail_client::statement::now_ms;

use crate::chain::Filler;
use crate::node::{node_binary, Server};
use crate::node_run::CpuMark;
use crate::report::{Goal, Results};
use crate::{baseline, grpc, scale, Args};

/// Producers whose harvests are the workload (each declares itself during setup).
pub const PRODUCERS: usize = 256;
pub const MB: f64 = 1024.0 * 1024.0;

/// Harvests signed on every core, and the bytes of their leaves as the node will store them.
pub fn sign(filler: &Filler, n: usize) -> (Vec<proto::Envelope>, u64) {
    let threads = std::thread::available_parallelism().map_or(2, |p| p.get());
    let per = n.div_ceil(threads).max(1);
    let parts: Vec<(Vec<proto::Envelope>, u64)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .step_by(per)
            .map(|start| {
                s.spawn(move || {
                    let mut bytes = 0u64;
                    let part: Vec<_> = (start..(start + per).min(n))
                        .map(|i| {
                            let e = filler.harvest(i as u64);
                            bytes += leaf_len(&e);
                            e
                        })
                        .collect();
                    (part, bytes)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a signing thread"))
            .collect()
    });
    let bytes = parts.iter().map(|p| p.1).sum();
    (parts.into_iter().flat_map(|p| p.0).collect(), bytes)
}

pub fn leaf_len(e: &proto::Envelope) -> u64 {
    encode_leaf(e.clone(), now_ms()).map_or(0, |l| l.len() as u64)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// The whole suite: `args.runs` runs, then the table.
pub fn suite(args: &Args) -> anyhow::Result<()> {
    let parent = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let node_bin = node_binary(args.node_bin.clone())?;
    let load_before = load_average();
    let started = Instant::now();
    let now = now_ms();
    let filler = Filler::new(1, PRODUCERS, now);
    eprintln!(
        "signing {} harvests (before any clock starts)...",
        args.log_size
    );
    let (harvests, harvest_bytes) = sign(&filler, args.log_size);
    let runtime = tokio::runtime::Runtime::new()?;
    let mut results = Results::default();
    for run in 0..args.runs {
        eprintln!(
            "run {} of {} (load average {})",
            run + 1,
            args.runs,
            load_average()
        );
        baselines(args, &parent, &harvests, &mut results)?;
        runtime.block_on(noop(args, &harvests, &mut results))?;
        let ctx = crate::node_run::NodeRun {
            args,
            filler: &filler,
            harvests: &harvests,
            harvest_bytes,
            now,
            seed: run as u64 + 1,
        };
        runtime.block_on(ctx.run(&node_bin, &parent, &mut results))?;
        if args.scale > 0 {
            scale::in_child(args, &mut results)?;
        }
    }
    println!(
        "fairtrail-bench: {} run(s) on {} cores, load average {} before and {} after, {:.0?}",
        args.runs,
        std::thread::available_parallelism().map_or(0, |p| p.get()),
        load_before,
        load_average(),
        started.elapsed()
    );
    println!(
        "settings: {} unary clients, {} streams x {} in flight, {} unary + {} streamed per run, reads at {} entries by {} readers for {}s each",
        args.clients, args.streams, args.window, args.unary, args.stream, args.log_size, args.readers, args.read_secs
    );
    println!("\n{}", results.table());
    Ok(())
}

/// Baselines (a) and (c), in this process, with nothing else running.
fn baselines(
    args: &Args,
    parent: &std::path::Path,
    harvests: &[proto::Envelope],
    r: &mut Results,
) -> anyhow::Result<()> {
    let time = Duration::from_secs(args.baseline_secs);
    let (batch, single) = baseline::ed25519(harvests, time);
    r.add(
        "(a) Ed25519 batch verify, 1 core",
        "sig/s",
        batch,
        Goal::None,
    );
    r.add(
        "(a) Ed25519 strict verify one by one, 1 core",
        "sig/s",
        single,
        Goal::None,
    );
    let dir = tempfile::Builder::new()
        .prefix("fairtrail-baseline-")
        .tempdir_in(parent)?;
    let leaves: Vec<Vec<u8>> = harvests
        .iter()
        .take(4096)
        .map(|e| encode_leaf(e.clone(), now_ms()).map_err(|e| anyhow!("{e}")))
        .collect::<Result<_, _>>()?;
    let floor1 = baseline::fdatasync(dir.path(), &leaves, 1, time);
    let floor256 = baseline::fdatasync(dir.path(), &leaves, 256, time);
    r.add(
        "(c) plain file, fdatasync per entry",
        "entry/s",
        floor1,
        Goal::None,
    );
    r.add(
        "(c) plain file, fdatasync per 256 entries",
        "entry/s",
        floor256,
        Goal::None,
    );
    // A harvest writes 4 index keys (benches/storage.rs counts them); one more stands for
    // the applied mark and the larger records of other statements.
    let sled = baseline::sled_insert(dir.path(), 256, 5, time);
    r.add(
        "(c) sled raw batched insert, 256 x 5 keys",
        "entry/s",
        sled,
        Goal::None,
    );
    Ok(())
}

/// Baseline (b): the no-op service under the same client load as the node.
async fn noop(args: &Args, harvests: &[proto::Envelope], r: &mut Results) -> anyhow::Result<()> {
    let server = Server::noop(false)?;
    let cpu = CpuMark::now(&server);
    let unary = grpc::unary(&server.grpc, args.clients, harvests[..args.unary].to_vec()).await?;
    cpu.report_totals(r, "(b) no-op tonic, unary", &server, args.unary);
    if args.clients_many > 0 {
        let many = grpc::unary(
            &server.grpc,
            args.clients_many,
            harvests[..args.unary].to_vec(),
        )
        .await?;
        r.add(
            &format!(
                "(b) no-op tonic, unary Submit, {} clients",
                args.clients_many
            ),
            "req/s",
            many.rate(),
            Goal::None,
        );
    }
    let cpu = CpuMark::now(&server);
    let stream = grpc::streaming(
        &server.grpc,
        args.streams,
        args.window,
        harvests[..args.stream].to_vec(),
    )
    .await?;
    cpu.report_totals(r, "(b) no-op tonic, streaming", &server, args.stream);
    r.add(
        "(b) no-op tonic, unary Submit",
        "req/s",
        unary.rate(),
        Goal::None,
    );
    r.add(
        "(b) no-op tonic, SubmitStream",
        "req/s",
        stream.rate(),
        Goal::None,
    );
    server.stop()?;
    // For information: the same service on connections that gather writes as the node's do
    // (one write per answer instead of two), the ceiling for the node's own transport.
    let gathered = Server::noop(true)?;
    let unary = grpc::unary(
        &gathered.grpc,
        args.clients,
        harvests[..args.unary].to_vec(),
    )
    .await?;
    r.add(
        "(b) no-op tonic, gathered writes, unary Submit",
        "req/s",
        unary.rate(),
        Goal::None,
    );
    gathered.stop()
}
