//! gRPC load: N clients, each on its own HTTP/2 connection, submitting envelopes signed
//! before the clock starts (unary `Submit`, or `SubmitStream` with a window of envelopes in
//! flight), and reading `GetProvenance`. Every answer is checked; latency goes to an HDR
//! histogram per client, merged at the end.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use fairtrail_client::proto::{
    self, provenance_service_client::ProvenanceServiceClient, submit_stream_response,
};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::report::{histogram, record, Phase};
use crate::submit::{channel, ledger, MAX_MESSAGE_BYTES};

/// Splits `items` into `n` shares of (nearly) equal size.
fn shares<T>(items: Vec<T>, n: usize) -> Vec<Vec<T>> {
    let n = n.max(1);
    let mut out: Vec<Vec<T>> = (0..n).map(|_| Vec::new()).collect();
    for (i, item) in items.into_iter().enumerate() {
        out[i % n].push(item);
    }
    out
}

/// Joins the clients' results into one phase, failing if any client failed.
async fn gather(
    mut set: JoinSet<anyhow::Result<(u64, hdrhistogram::Histogram<u64>)>>,
    started: Instant,
) -> anyhow::Result<Phase> {
    let mut latency = histogram();
    let mut operations = 0;
    let mut elapsed = Duration::ZERO;
    while let Some(joined) = set.join_next().await {
        let (n, h) = joined.context("a client task failed")??;
        elapsed = started.elapsed();
        operations += n;
        latency
            .add(&h)
            .map_err(|e| anyhow!("merging histograms: {e}"))?;
    }
    Ok(Phase {
        operations,
        elapsed,
        latency,
    })
}

/// Fails on an answer that is not a new entry: the benchmark only counts real appends (the
/// no-op service answers `existing: false` too).
fn check(response: &proto::SubmitResponse) -> anyhow::Result<()> {
    if response.receipt.is_none() {
        bail!("an answer without a receipt");
    }
    if response.existing {
        bail!("an envelope was already in the log: the workload must be fresh");
    }
    Ok(())
}

/// Unary `Submit` by `clients` clients, each sending its share one call at a time.
pub async fn unary(
    url: &str,
    clients: usize,
    envelopes: Vec<proto::Envelope>,
) -> anyhow::Result<Phase> {
    let mut connections = Vec::new();
    for _ in 0..clients.max(1) {
        connections.push(ledger(channel(url).await?));
    }
    let started = Instant::now();
    let mut set = JoinSet::new();
    for (mut client, share) in connections.into_iter().zip(shares(envelopes, clients)) {
        set.spawn(async move {
            let mut h = histogram();
            let n = share.len() as u64;
            for envelope in share {
                let t = Instant::now();
                let response = client
                    .submit(proto::SubmitRequest {
                        envelope: Some(envelope),
                    })
                    .await
                    .context("Submit failed")?
                    .into_inner();
                record(&mut h, t.elapsed());
                check(&response)?;
            }
            Ok((n, h))
        });
    }
    gather(set, started).await
}

/// `SubmitStream` by `clients` clients, each one stream keeping up to `window` envelopes in
/// flight. Latency is from sending an envelope to receiving its answer.
pub async fn streaming(
    url: &str,
    clients: usize,
    window: usize,
    envelopes: Vec<proto::Envelope>,
) -> anyhow::Result<Phase> {
    let mut connections = Vec::new();
    for _ in 0..clients.max(1) {
        connections.push(ledger(channel(url).await?));
    }
    let started = Instant::now();
    let mut set = JoinSet::new();
    for (mut client, share) in connections.into_iter().zip(shares(envelopes, clients)) {
        set.spawn(async move {
            let n = share.len();
            let base = Instant::now();
            // Microseconds since `base` at which each envelope was sent, by sequence.
            let sent: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
            let credit = Arc::new(Semaphore::new(window.max(1)));
            let (tx, rx) = tokio::sync::mpsc::channel(window.max(1));
            let sender = {
                let (sent, credit) = (sent.clone(), credit.clone());
                tokio::spawn(async move {
                    for (i, envelope) in share.into_iter().enumerate() {
                        let Ok(permit) = credit.acquire().await else {
                            return;
                        };
                        permit.forget();
                        sent[i].store(base.elapsed().as_micros() as u64, Ordering::Relaxed);
                        let request = proto::SubmitStreamRequest {
                            sequence: i as u64,
                            envelope: Some(envelope),
                        };
                        if tx.send(request).await.is_err() {
                            return;
                        }
                    }
                })
            };
            let mut answers = client
                .submit_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
                .context("SubmitStream refused")?
                .into_inner();
            let mut h = histogram();
            let mut got = 0usize;
            while got < n {
                let answer = answers
                    .message()
                    .await
                    .context("SubmitStream broke")?
                    .ok_or_else(|| anyhow!("the stream ended after {got} of {n} answers"))?;
                let at = sent
                    .get(answer.sequence as usize)
                    .ok_or_else(|| anyhow!("an answer to an unknown sequence"))?
                    .load(Ordering::Relaxed);
                let now = base.elapsed().as_micros() as u64;
                record(&mut h, Duration::from_micros(now.saturating_sub(at)));
                credit.add_permits(1);
                got += 1;
                match answer.result {
                    Some(submit_stream_response::Result::Accepted(a)) => check(&a)?,
                    Some(submit_stream_response::Result::Error(e)) => {
                        bail!(
                            "the server refused envelope {}: {}",
                            answer.sequence,
                            e.message
                        )
                    }
                    None => bail!("an empty answer"),
                }
            }
            sender.await?;
            Ok((n as u64, h))
        });
    }
    gather(set, started).await
}

/// `GetProvenance` for one product by `clients` clients, back to back, for `time` or until
/// `stop` is raised, whichever comes first. Each answer must hold `entries` entries.
pub async fn provenance(
    url: &str,
    clients: usize,
    time: Duration,
    stop: Option<Arc<AtomicBool>>,
    product: proto::ProductKey,
    entries: usize,
) -> anyhow::Result<Phase> {
    let mut connections = Vec::new();
    for _ in 0..clients.max(1) {
        connections.push(
            ProvenanceServiceClient::new(channel(url).await?)
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
        );
    }
    let started = Instant::now();
    let mut set = JoinSet::new();
    for mut client in connections {
        let product = product.clone();
        let stop = stop.clone();
        set.spawn(async move {
            let mut h = histogram();
            let mut n = 0u64;
            let stopped = || stop.as_ref().is_some_and(|s| s.load(Ordering::Acquire));
            while started.elapsed() < time && !stopped() {
                let t = Instant::now();
                let bundle = client
                    .get_provenance(proto::GetProvenanceRequest {
                        subject: Some(proto::get_provenance_request::Subject::Product(
                            product.clone(),
                        )),
                    })
                    .await
                    .context("GetProvenance failed")?
                    .into_inner()
                    .bundle
                    .ok_or_else(|| anyhow!("an answer without a bundle"))?;
                record(&mut h, t.elapsed());
                if bundle.entries.len() != entries {
                    bail!(
                        "a bundle of {} entries, where the first had {entries}",
                        bundle.entries.len()
                    );
                }
                n += 1;
            }
            Ok((n, h))
        });
    }
    gather(set, started).await
}
