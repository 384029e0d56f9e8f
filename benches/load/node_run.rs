//! The node under load, one run: setup (untimed), unary and streaming ingest, the fill to
//! the read size in timed segments, `GetProvenance` and consumer-page reads, then memory and
//! disk, each figure recorded with its ratio to the same run's baseline.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use fairtrail_client::bundle::Bundle;
use fairtrail_client::gs1::ProductId;
use fairtrail_client::proto::{self, provenance_service_client::ProvenanceServiceClient};
use fairtrail_client::verify::{verify_bundle, Policy, Verdict};

use crate::chain::{Chain, Filler, GTIN};
use crate::node::{cpu_by_thread, disk_usage, index_disk_usage, CpuTimes, Server};
use crate::phases::{leaf_len, MB, PRODUCERS};
use crate::report::{Goal, Phase, Results};
use crate::{grpc, http, submit, Args};

/// The longest the reader beside the fill's second-to-last segment may run, should the
/// segment not end first (it always has: a segment takes seconds).
const READ_BESIDE_AT_MOST: Duration = Duration::from_secs(600);

/// What one node run needs: the settings and the workload signed before any clock.
pub struct NodeRun<'a> {
    pub args: &'a Args,
    pub filler: &'a Filler,
    pub harvests: &'a [proto::Envelope],
    pub harvest_bytes: u64,
    pub now: u64,
    pub seed: u64,
}

impl NodeRun<'_> {
    /// The node: setup (untimed), unary, streaming, fill in timed segments, reads, memory,
    /// disk.
    pub async fn run(
        &self,
        binary: &std::path::Path,
        parent: &std::path::Path,
        r: &mut Results,
    ) -> anyhow::Result<()> {
        let args = self.args;
        let server = Server::node(binary, parent)?;
        let url = server.grpc.clone();

        // 1. Setup: the producers, and the chain the reads ask for.
        let mut client = submit::ledger(submit::channel(&url).await?);
        let log_key = client
            .get_checkpoint(proto::GetCheckpointRequest {})
            .await?
            .into_inner()
            .verifier_key;
        let chain = Chain::sign(self.seed, self.now);
        let policy_text = chain.policy_toml(&log_key);
        if let Some(p) = server.policy_path() {
            std::fs::write(p, &policy_text)?;
        }
        let declarations = self.filler.declarations();
        let mut setup_bytes: u64 = declarations.iter().map(leaf_len).sum();
        setup_bytes += chain
            .statements
            .iter()
            .map(|s| leaf_len(&s.envelope))
            .sum::<u64>();
        submit::streamed(&mut client, declarations).await?;
        submit::in_order(
            &mut client,
            chain
                .statements
                .iter()
                .map(|s| (s.what.to_owned(), s.envelope.clone())),
        )
        .await?;

        // 2. Ingest.
        let (u, s) = (args.unary, args.stream);
        let http = server
            .http
            .clone()
            .ok_or_else(|| anyhow!("the node gave no HTTP address"))?;
        let before = http::commit_counters(&http).await?;
        let cpu_before = CpuMark::now(&server);
        let unary = grpc::unary(&url, args.clients, self.harvests[..u].to_vec()).await?;
        cpu_before.report(r, "unary", &server, u);
        commit_rows(r, "node unary Submit", before, &http, &unary).await?;
        ratio(
            r,
            "node unary Submit, durable",
            &unary,
            "(b) no-op tonic, unary Submit",
            Goal::RatioAtLeast(0.5),
        );
        ratio(
            r,
            "node unary Submit, to the gathered no-op",
            &unary,
            "(b) no-op tonic, gathered writes, unary Submit",
            Goal::None,
        );
        latencies(r, "node unary Submit", &unary);
        let before = http::commit_counters(&http).await?;
        let cpu_before = CpuMark::now(&server);
        let stream = grpc::streaming(
            &url,
            args.streams,
            args.window,
            self.harvests[u..u + s].to_vec(),
        )
        .await?;
        cpu_before.report(r, "streaming", &server, s);
        commit_rows(r, "node SubmitStream", before, &http, &stream).await?;
        let (rss, _, _) = server.memory()?;
        r.add(
            &format!("node RSS at {}k entries", (u + s) / 1000),
            "MB",
            rss as f64 / MB,
            Goal::None,
        );
        let a = r
            .last("(a) Ed25519 batch verify, 1 core")
            .unwrap_or(f64::NAN);
        let b = r.last("(b) no-op tonic, SubmitStream").unwrap_or(f64::NAN);
        r.add("min((a), (b) stream)", "req/s", a.min(b), Goal::None);
        ratio(
            r,
            "node SubmitStream, durable",
            &stream,
            "min((a), (b) stream)",
            Goal::RatioAtLeast(0.6),
        );
        latencies(r, "node SubmitStream", &stream);
        let early = (u + s, stream.rate());

        // 2b. Unary again with many clients (bigger group commits), for information.
        let many = args.many_unary();
        if many > 0 {
            let name = format!("node unary Submit, {} clients", args.clients_many);
            let phase = grpc::unary(
                &url,
                args.clients_many,
                self.harvests[u + s..u + s + many].to_vec(),
            )
            .await?;
            ratio(
                r,
                &format!("{name}, durable"),
                &phase,
                &format!(
                    "(b) no-op tonic, unary Submit, {} clients",
                    args.clients_many
                ),
                Goal::None,
            );
            r.add(&format!("{name} p50"), "ms", phase.ms(0.5), Goal::None);
        }

        // 3. Fill to the read size in segments of a tenth, the last one timed. The segment
        //    before it is written with one `GetProvenance` client reading beside it: a
        //    retailer's lookups while producers submit, every commit a new checkpoint, so
        //    the bundle kept for the last one does not serve the next.
        let batch = chain.batch.clone();
        let key = proto::ProductKey {
            gtin: GTIN.into(),
            batch: batch.clone(),
            serial: String::new(),
        };
        let entries = check_bundle(&url, &key, &policy_text).await?;
        let total = args.log_size;
        let segment = (total / 10).max(1);
        let mut at = u + s + many;
        let mut last = None;
        let mut beside = None;
        while at < total {
            let end = (at + segment).min(total);
            let envelopes = self.harvests[at..end].to_vec();
            let phase = if end < total && end + segment >= total {
                let commits_before = http::commit_counters(&http).await?.0;
                let stop = Arc::new(AtomicBool::new(false));
                // The reader is a client of its own (a thread and runtime of its own), as a
                // retailer's is: on the writers' runtime its latency would be theirs.
                let reader = std::thread::spawn({
                    let (url, stop, key) = (url.clone(), stop.clone(), key.clone());
                    move || -> anyhow::Result<Phase> {
                        tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()?
                            .block_on(grpc::provenance(
                                &url,
                                1,
                                READ_BESIDE_AT_MOST,
                                Some(stop),
                                key,
                                entries,
                            ))
                    }
                });
                let written = grpc::streaming(&url, args.streams, args.window, envelopes).await;
                stop.store(true, Ordering::Release);
                let read = reader
                    .join()
                    .map_err(|_| anyhow!("the GetProvenance reader panicked"))?;
                let (written, read) = (written?, read?);
                let checkpoints = http::commit_counters(&http).await?.0 - commits_before;
                beside = Some((at, end, written.rate(), read, checkpoints));
                written
            } else {
                grpc::streaming(&url, args.streams, args.window, envelopes).await?
            };
            eprintln!("  filled to {end}: {:.0} entries/s", phase.rate());
            last = Some((end, phase.rate()));
            at = end;
        }
        if let Some((end, rate)) = last {
            let name = format!("node SubmitStream at {}k entries", end / 1000);
            r.add_ratio(
                &name,
                "req/s",
                rate,
                &format!("same at {}k", early.0 / 1000),
                early.1,
                Goal::RatioAtLeast(0.8),
            );
        }

        // 4. Reads, on the log at rest (bundles are kept per checkpoint, so all but the
        //    first request of each load are served one); the bundle must verify first.
        let entries = check_bundle(&url, &key, &policy_text).await?;
        // Latency alone (one client), then throughput (every reader at once).
        let size = format!(
            "{}k-entry log",
            (total + PRODUCERS + chain.statements.len()) / 1000
        );
        let secs = Duration::from_secs(args.read_secs);
        if let Some((from, to, written, read, checkpoints)) = beside {
            let name = format!(
                "GetProvenance p99, 1 client, beside SubmitStream from {}k to {}k",
                from / 1000,
                to / 1000
            );
            r.add(
                "node SubmitStream, a GetProvenance client beside it",
                "req/s",
                written,
                Goal::None,
            );
            r.add(
                "GetProvenance, 1 client, beside SubmitStream",
                "req/s",
                read.rate(),
                Goal::None,
            );
            // A request builds its bundle afresh when it is the first at a new checkpoint.
            r.add(
                "GetProvenance beside SubmitStream: requests per new checkpoint",
                "req",
                read.operations as f64 / checkpoints.max(1.0),
                Goal::None,
            );
            r.add(
                "GetProvenance p50, 1 client, beside SubmitStream",
                "ms",
                read.ms(0.5),
                Goal::None,
            );
            r.add(&name, "ms", read.ms(0.99), Goal::Below(5.0));
            r.add(
                "GetProvenance p99.9, 1 client, beside SubmitStream",
                "ms",
                read.ms(0.999),
                Goal::None,
            );
        }
        let alone = grpc::provenance(&url, 1, secs, None, key.clone(), entries).await?;
        r.add(
            &format!("GetProvenance p50, 1 client, {size}"),
            "ms",
            alone.ms(0.5),
            Goal::None,
        );
        r.add(
            &format!("GetProvenance p99, 1 client, {size}"),
            "ms",
            alone.ms(0.99),
            Goal::Below(5.0),
        );
        r.add(
            &format!("GetProvenance p99.9, 1 client, {size}"),
            "ms",
            alone.ms(0.999),
            Goal::None,
        );
        let busy = grpc::provenance(&url, args.readers, secs, None, key, entries).await?;
        let n = args.readers;
        r.add(
            &format!("GetProvenance, {n} clients"),
            "req/s",
            busy.rate(),
            Goal::None,
        );
        r.add(
            &format!("GetProvenance p50, {n} clients"),
            "ms",
            busy.ms(0.5),
            Goal::None,
        );
        r.add(
            &format!("GetProvenance p99, {n} clients"),
            "ms",
            busy.ms(0.99),
            Goal::None,
        );
        let path = ProductId::new(GTIN, &batch, None)?.path();
        let page = http::load(&http, &path, n, secs).await?;
        r.add(
            &format!("consumer page, {n} keep-alive clients"),
            "req/s",
            page.rate(),
            Goal::AtLeast(5000.0),
        );
        r.add(
            &format!("consumer page p99, {n} clients"),
            "ms",
            page.ms(0.99),
            Goal::None,
        );

        // 5. Memory and disk.
        let (rss, peak, anon) = server.memory()?;
        r.add(
            &format!("node RSS at {size}"),
            "MB",
            rss as f64 / MB,
            Goal::Below(300.0),
        );
        r.add(
            &format!("node peak RSS at {size}"),
            "MB",
            peak as f64 / MB,
            Goal::None,
        );
        r.add(
            &format!("node heap (RssAnon) at {size}"),
            "MB",
            anon as f64 / MB,
            Goal::None,
        );
        let data = server
            .data_dir()
            .ok_or_else(|| anyhow!("no data directory"))?;
        let (_, log_disk) = disk_usage(&data.join("log"));
        let (_, index_disk) = index_disk_usage(&data);
        let raw = (setup_bytes + self.harvest_bytes) as f64;
        r.add_ratio(
            "log on disk",
            "MB",
            log_disk as f64 / MB,
            "raw leaf bytes",
            raw / MB,
            Goal::RatioAtMost(1.5),
        );
        r.add_ratio(
            "index on disk",
            "MB",
            index_disk as f64 / MB,
            "raw leaf bytes",
            raw / MB,
            Goal::None,
        );
        drop(client);
        server.stop()
    }
}

/// CPU microseconds per item used between `before` and `after` by the threads named in
/// `names` (all if empty); `None` where `/proc` gave nothing.
fn cpu_per(
    before: &Option<CpuTimes>,
    after: Option<CpuTimes>,
    names: &[&str],
    items: usize,
) -> Option<f64> {
    let (before, after) = (before.as_ref()?, after?);
    let used: f64 = after
        .iter()
        .filter(|(name, _)| names.is_empty() || names.contains(&name.as_str()))
        .map(|(name, t)| t - before.get(name).copied().unwrap_or(0.0))
        .sum();
    Some(used * 1e6 / items.max(1) as f64)
}

/// Rows on the group commits of a phase, from the node's counters before and after it.
async fn commit_rows(
    r: &mut Results,
    name: &str,
    before: (f64, f64, f64),
    http: &str,
    phase: &Phase,
) -> anyhow::Result<()> {
    let after = http::commit_counters(http).await?;
    let (commits, entries, micros) = (after.0 - before.0, after.1 - before.1, after.2 - before.2);
    r.add(
        &format!("{name}: entries per group commit"),
        "entry",
        entries / commits.max(1.0),
        Goal::None,
    );
    r.add(
        &format!("{name}: time per group commit"),
        "ms",
        micros / commits.max(1.0) / 1000.0,
        Goal::None,
    );
    r.add(
        &format!("{name}: share of the time committing"),
        "%",
        100.0 * micros / 1e6 / phase.elapsed.as_secs_f64(),
        Goal::None,
    );
    Ok(())
}

fn ratio(r: &mut Results, name: &str, phase: &Phase, baseline: &str, goal: Goal) {
    let base = r.last(baseline).unwrap_or(f64::NAN);
    r.add_ratio(name, "req/s", phase.rate(), baseline, base, goal);
}

fn latencies(r: &mut Results, name: &str, phase: &Phase) {
    for (label, q) in [("p50", 0.5), ("p99", 0.99), ("p99.9", 0.999)] {
        r.add(&format!("{name} {label}"), "ms", phase.ms(q), Goal::None);
    }
}

/// Fetches the chain's bundle once and verifies it under the policy, as a consumer's
/// verifier would; returns its number of entries.
async fn check_bundle(url: &str, key: &proto::ProductKey, policy: &str) -> anyhow::Result<usize> {
    let mut client = ProvenanceServiceClient::new(submit::channel(url).await?)
        .max_decoding_message_size(submit::MAX_MESSAGE_BYTES);
    let wire = client
        .get_provenance(proto::GetProvenanceRequest {
            subject: Some(proto::get_provenance_request::Subject::Product(key.clone())),
        })
        .await?
        .into_inner()
        .bundle
        .ok_or_else(|| anyhow!("no bundle"))?;
    let entries = wire.entries.len();
    let bundle = Bundle::try_from(wire).context("the node's bundle is malformed")?;
    let report = verify_bundle(&bundle, &Policy::from_toml(policy)?);
    if report.verdict != Verdict::Verified {
        bail!("the chain's bundle does not verify: {report:?}");
    }
    Ok(entries)
}

/// The CPU the node's threads and the load generator have used, at the start of a phase.
pub(crate) struct CpuMark {
    node: Option<CpuTimes>,
    generator: Option<CpuTimes>,
}

/// The node's threads, grouped as reported: (row label, thread names).
const THREAD_GROUPS: [(&str, &[&str]); 4] = [
    ("verifier", &["verifier"]),
    ("committer", &["committer"]),
    ("gRPC (tokio)", &["tokio-rt-worker"]),
    ("index applier", &["index-applier"]),
];

impl CpuMark {
    pub(crate) fn now(server: &Server) -> CpuMark {
        CpuMark {
            node: server.cpu_by_thread(),
            generator: cpu_by_thread(std::process::id()),
        }
    }

    /// Rows of CPU microseconds per request over the phase since this mark, for the server
    /// (any, all its threads) and for the load generator, named `{name} {what} CPU per
    /// request`. Nothing where `/proc` is missing.
    pub(crate) fn report_totals(
        &self,
        r: &mut Results,
        name: &str,
        server: &Server,
        requests: usize,
    ) {
        let total = |before: &Option<CpuTimes>, after| cpu_per(before, after, &[], requests);
        for (what, v) in [
            ("server", total(&self.node, server.cpu_by_thread())),
            (
                "load generator",
                total(&self.generator, cpu_by_thread(std::process::id())),
            ),
        ] {
            if let Some(v) = v {
                r.add(
                    &format!("{name}: {what} CPU per request"),
                    "us",
                    v,
                    Goal::None,
                );
            }
        }
    }

    /// Rows of CPU microseconds per entry over the phase since this mark, for the node in
    /// all, by thread group, and for the load generator. Nothing where `/proc` is missing.
    fn report(&self, r: &mut Results, phase: &str, server: &Server, entries: usize) {
        let per_entry = |before: &Option<CpuTimes>, after, names: &[&str]| {
            cpu_per(before, after, names, entries)
        };
        let Some(total) = per_entry(&self.node, server.cpu_by_thread(), &[]) else {
            return;
        };
        r.add(
            &format!("node CPU per entry, {phase}"),
            "us",
            total,
            Goal::None,
        );
        let mut grouped = 0.0;
        for (label, names) in THREAD_GROUPS {
            if let Some(v) = per_entry(&self.node, server.cpu_by_thread(), names) {
                grouped += v;
                r.add(
                    &format!("node CPU per entry, {phase}: {label}"),
                    "us",
                    v,
                    Goal::None,
                );
            }
        }
        r.add(
            &format!("node CPU per entry, {phase}: other threads"),
            "us",
            (total - grouped).max(0.0),
            Goal::None,
        );
        if let Some(v) = per_entry(&self.generator, cpu_by_thread(std::process::id()), &[]) {
            r.add(
                &format!("load generator CPU per entry, {phase}"),
                "us",
                v,
                Goal::None,
            );
        }
    }
}
