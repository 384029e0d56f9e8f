//! Writing a workload to a node over gRPC, checking every answer: statements one by one in
//! order (the chain), and many at once on `SubmitStream` (the filler).

// Each benchmark crate includes this file and uses a different part of it.
#![allow(dead_code)]

use anyhow::{anyhow, bail, Context};
use fairtrail_client::proto::{self, ledger_service_client::LedgerServiceClient};
use tonic::transport::{Channel, Endpoint};

/// Messages up to this size each way (a bundle can be large).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;
/// Envelopes sent on one `SubmitStream` call before it is closed and another opened.
const PER_STREAM: usize = 8192;

/// A new HTTP/2 connection to `url` (`http://host:port`).
pub async fn channel(url: &str) -> anyhow::Result<Channel> {
    Endpoint::from_shared(url.to_owned())?
        .tcp_nodelay(true)
        .connect_timeout(std::time::Duration::from_secs(10))
        .connect()
        .await
        .with_context(|| format!("cannot connect to {url}"))
}

pub fn ledger(channel: Channel) -> LedgerServiceClient<Channel> {
    LedgerServiceClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// Submits envelopes one at a time, in order, each accepted as new before the next goes.
pub async fn in_order(
    client: &mut LedgerServiceClient<Channel>,
    envelopes: impl IntoIterator<Item = (String, proto::Envelope)>,
) -> anyhow::Result<()> {
    for (what, envelope) in envelopes {
        let response = client
            .submit(proto::SubmitRequest {
                envelope: Some(envelope),
            })
            .await
            .with_context(|| format!("the node refused {what}"))?
            .into_inner();
        if response.receipt.is_none() {
            bail!("no receipt for {what}");
        }
    }
    Ok(())
}

/// Submits envelopes on `SubmitStream`, all of them in flight at once (up to one stream's
/// worth), and checks each was accepted. Returns how many were new.
pub async fn streamed(
    client: &mut LedgerServiceClient<Channel>,
    envelopes: Vec<proto::Envelope>,
) -> anyhow::Result<u64> {
    let mut new = 0u64;
    let mut envelopes = envelopes.into_iter().peekable();
    while envelopes.peek().is_some() {
        let requests: Vec<proto::SubmitStreamRequest> = envelopes
            .by_ref()
            .take(PER_STREAM)
            .enumerate()
            .map(|(i, e)| proto::SubmitStreamRequest {
                sequence: i as u64,
                envelope: Some(e),
            })
            .collect();
        let sent = requests.len();
        let mut answers = client
            .submit_stream(tokio_stream::iter(requests))
            .await
            .context("SubmitStream refused")?
            .into_inner();
        let mut got = 0usize;
        while let Some(answer) = answers.message().await.context("SubmitStream broke")? {
            got += 1;
            match answer.result {
                Some(proto::submit_stream_response::Result::Accepted(a)) => {
                    new += u64::from(!a.existing);
                }
                Some(proto::submit_stream_response::Result::Error(e)) => {
                    bail!(
                        "the node refused envelope {}: {}",
                        answer.sequence,
                        e.message
                    )
                }
                None => bail!("an empty answer on SubmitStream"),
            }
        }
        if got != sent {
            return Err(anyhow!("{sent} envelopes sent on a stream, {got} answers"));
        }
    }
    Ok(new)
}
