//! What a consumer's scan costs: building the provenance bundle of a 10-step chain from the
//! node's tiles and indexes (afresh, and as kept for the checkpoint), verifying it under a
//! trust policy (all ten verifier steps), and rendering the consumer page.
//!
//! The log is written by a real node run in-process (the whole `server::run`, over gRPC on
//! loopback): filler harvests, the chain, more filler. The node is then stopped and its data
//! directory reopened, so the benchmark reads exactly what a node would serve from.

use std::hint::black_box;
use std::path::Path;

use clap::Parser;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fairtrail_client::bundle::Bundle;
use fairtrail_client::gs1::ProductId;
use fairtrail_client::proto;
use fairtrail_client::statement::now_ms;
use fairtrail_client::verify::{verify_bundle, Policy, Verdict};
use fairtrail_node::config::Cli;
use fairtrail_node::http::i18n::Lang;
use fairtrail_node::http::page::{page_policy, render_html};
use fairtrail_node::index::Index;
use fairtrail_node::provenance::{Provenance, Subject};
use fairtrail_node::server;
use fairtrail_node::tiles::TileStore;

#[path = "common/chain.rs"]
mod chain;
#[path = "common/submit.rs"]
mod submit;

/// Filler entries around the chain: enough that proofs reach 17 levels and most of the
/// chain's tiles are read from disk rather than the edge.
fn filler_entries() -> u64 {
    if test_mode() {
        2_000
    } else {
        100_000
    }
}

/// `cargo bench -- --test` (criterion's test mode, for CI) runs each benchmark once: shrink
/// the setup so it takes seconds.
fn test_mode() -> bool {
    std::env::args().any(|a| a == "--test")
}

struct Written {
    log_key: String,
    chain: chain::Chain,
}

/// Runs a node on `dir` and writes filler, the chain, and filler again.
fn write_log(dir: &Path) -> anyhow::Result<Written> {
    // Benchmarks write as fast as they can: the node's abuse limits would throttle them.
    std::env::set_var("FAIRTRAIL_RATE_PER_CONNECTION", "0");
    std::env::set_var("FAIRTRAIL_RATE_PER_KEY", "0");
    let dir_text = dir
        .to_str()
        .ok_or_else(|| anyhow::anyhow!("a UTF-8 path"))?;
    let cli = Cli::try_parse_from([
        "fairtrail-node",
        "--data-dir",
        dir_text,
        "--listen",
        "127.0.0.1:0",
        "--http-listen",
        "127.0.0.1:0",
    ])?;
    let config = cli.settings.resolve()?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let http = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", grpc.local_addr()?);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let node = tokio::spawn(server::run(
            config,
            server::Listeners { grpc, http },
            || {},
            async {
                let _ = stopped.await;
            },
        ));
        let mut client = submit::ledger(submit::channel(&url).await?);
        let log_key = client
            .get_checkpoint(proto::GetCheckpointRequest {})
            .await?
            .into_inner()
            .verifier_key;
        let now = now_ms();
        let filler = chain::Filler::new(1, 256, now);
        submit::in_order(
            &mut client,
            filler
                .declarations()
                .into_iter()
                .map(|e| ("a declaration".to_owned(), e)),
        )
        .await?;
        let half = filler_entries() / 2;
        submit::streamed(&mut client, (0..half).map(|i| filler.harvest(i)).collect()).await?;
        let chain = chain::Chain::sign(1, now);
        submit::in_order(
            &mut client,
            chain
                .statements
                .iter()
                .map(|s| (s.what.to_owned(), s.envelope.clone())),
        )
        .await?;
        submit::streamed(
            &mut client,
            (half..filler_entries())
                .map(|i| filler.harvest(i))
                .collect(),
        )
        .await?;
        drop(client);
        let _ = stop.send(());
        node.await??;
        Ok(Written { log_key, chain })
    })
}

fn provenance(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let started = std::time::Instant::now();
    let written = write_log(dir.path()).expect("the node wrote the log");
    eprintln!(
        "wrote {} entries through the node in {:.1?}",
        filler_entries() + 256 + written.chain.statements.len() as u64,
        started.elapsed()
    );
    let verifier = fairtrail_client::note::NoteVerifier::from_text(&written.log_key)
        .expect("the node's key parses");
    let (store, _writer, _) =
        TileStore::open(&dir.path().join("log"), &verifier, 4096).expect("the log reopens");
    let index = Index::open(&dir.path().join("index")).expect("the index reopens");
    let provenance = Provenance::new(store, index);
    let product = ProductId::new(chain::GTIN, &written.chain.batch, None).expect("a product");
    let subject = Subject::Product(product.clone());
    let policy_text = written.chain.policy_toml(&written.log_key);
    let policy = Policy::from_toml(&policy_text).expect("the policy parses");

    let wire = provenance.bundle(&subject).expect("a bundle");
    let bundle = Bundle::try_from(wire.clone()).expect("a well-formed bundle");
    let report = verify_bundle(&bundle, &policy);
    assert_eq!(
        report.verdict,
        Verdict::Verified,
        "the benchmark chain must verify cleanly: {report:#?}"
    );
    eprintln!(
        "the bundle holds {} entries ({} chain steps), {} bytes encoded",
        wire.entries.len(),
        chain::CHAIN_STEPS,
        prost::Message::encoded_len(&wire)
    );

    let mut group = c.benchmark_group("provenance");
    group.throughput(Throughput::Elements(1));
    assert_eq!(
        provenance.bundle_uncached(&subject).expect("a bundle"),
        wire,
        "a bundle built afresh is the one kept"
    );
    group.bench_function("bundle/10-step", |b| {
        b.iter(|| {
            black_box(
                provenance
                    .bundle_uncached(black_box(&subject))
                    .expect("a bundle"),
            )
        })
    });
    // A request for the same product against the same checkpoint: the bundle kept.
    group.bench_function("bundle-kept/10-step", |b| {
        b.iter(|| black_box(provenance.bundle(black_box(&subject)).expect("a bundle")))
    });
    group.bench_function("decode+verify/10-step", |b| {
        b.iter(|| {
            let bundle = Bundle::try_from(black_box(wire.clone())).expect("well formed");
            black_box(verify_bundle(&bundle, &policy))
        })
    });
    group.bench_function("verify/10-step", |b| {
        b.iter(|| black_box(verify_bundle(black_box(&bundle), &policy)))
    });
    // The page as the node builds it on a cache miss: verify under the operator's policy,
    // then render; and the rendering alone.
    let page_policy = page_policy(Ok(Some(&policy_text)), &written.log_key).expect("a policy");
    assert!(
        page_policy.state.in_force(),
        "the page policy must be the operator's"
    );
    group.bench_function("page-verify+render/10-step", |b| {
        b.iter(|| {
            let report = verify_bundle(black_box(&bundle), &page_policy.policy);
            black_box(render_html(
                &report,
                &product,
                Lang::En,
                &page_policy.state,
                "http://127.0.0.1:8080",
            ))
        })
    });
    group.bench_function("page-render/10-step", |b| {
        b.iter(|| {
            black_box(render_html(
                black_box(&report),
                &product,
                Lang::En,
                &page_policy.state,
                "http://127.0.0.1:8080",
            ))
        })
    });
    group.finish();
}

criterion_group!(benches, provenance);
criterion_main!(benches);
