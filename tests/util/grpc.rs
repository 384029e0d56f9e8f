//! Talking to a node over gRPC: connections whose calls are bounded in time, submissions on
//! both paths (unary and stream), reads, and receipts checked offline.

use ed25519_dalek::SigningKey;
use fairtrail_client::checkpoint::SignedCheckpoint;
use fairtrail_client::envelope::StatementId;
use fairtrail_client::keys::PublicKey;
use fairtrail_client::note::NoteVerifier;
use fairtrail_client::proto;
use fairtrail_client::proto::ledger_service_client::LedgerServiceClient;
use fairtrail_client::proto::submit_stream_response::Result as StreamResult;
use fairtrail_client::receipt::ReceiptJson;
use fairtrail_client::rpc::NodeClient;
use tokio::task::JoinSet;
use tokio::time::timeout;
use tonic::transport::{Channel, Endpoint};

use super::CALL_TIMEOUT;

/// Unary submissions one client keeps in flight on its connection.
const UNARY_WINDOW: usize = 16;
/// More stream messages than any test reads: a stream that never ends fails the test.
const MAX_MESSAGES: usize = 100_000;

/// A gRPC channel whose every call is bounded by [`CALL_TIMEOUT`].
pub async fn channel(url: &str) -> Channel {
    Endpoint::from_shared(url.to_owned())
        .expect("a node URL")
        .connect_timeout(CALL_TIMEOUT)
        .timeout(CALL_TIMEOUT)
        .tcp_nodelay(true)
        .connect()
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"))
}

/// A client on a connection of its own.
pub async fn connect(url: &str) -> NodeClient {
    NodeClient {
        ledger: LedgerServiceClient::new(channel(url).await)
            .max_decoding_message_size(64 * 1024 * 1024),
        url: url.to_owned(),
    }
}

/// The node's latest checkpoint, its signature checked with `log_key`.
pub async fn checkpoint(client: &mut NodeClient, log_key: &NoteVerifier) -> SignedCheckpoint {
    let note = client.checkpoint().await.expect("GetCheckpoint").checkpoint;
    SignedCheckpoint::verify(&note, log_key).expect("the node's checkpoint verifies")
}

/// Asserts that a call failed with `code` and a message containing `needle`.
#[track_caller]
pub fn assert_status<T: std::fmt::Debug>(
    result: Result<T, tonic::Status>,
    code: tonic::Code,
    needle: &str,
) {
    let status = result.expect_err("the call should fail");
    assert_eq!(status.code(), code, "wrong code: {status:?}");
    assert!(
        status.message().contains(needle),
        "the message {:?} does not mention {needle:?}",
        status.message()
    );
}

/// Checks a receipt offline, with the log's key alone, and that it is the receipt of
/// `envelope` by `issuer`.
#[track_caller]
pub fn check_receipt(
    receipt: &proto::EntryReceipt,
    envelope: &proto::Envelope,
    issuer: &SigningKey,
    log_key: &NoteVerifier,
) {
    let verified = ReceiptJson::from(receipt)
        .verify(log_key)
        .unwrap_or_else(|e| panic!("receipt {} does not verify: {e}", receipt.index));
    assert_eq!(verified.index, receipt.index);
    assert_eq!(
        verified.statement_id,
        StatementId::of_payload(&envelope.payload),
        "the receipt is for another statement"
    );
    assert_eq!(
        verified.issuer,
        PublicKey::from(&issuer.verifying_key()),
        "the receipt names another issuer"
    );
}

/// Submits with unary calls, [`UNARY_WINDOW`] at a time on the client's connection; the
/// answers in submission order.
pub async fn submit_unary(
    client: &NodeClient,
    envelopes: &[proto::Envelope],
) -> Vec<proto::SubmitResponse> {
    let mut out = Vec::with_capacity(envelopes.len());
    for window in envelopes.chunks(UNARY_WINDOW) {
        let mut calls = JoinSet::new();
        for (i, envelope) in window.iter().cloned().enumerate() {
            let mut client = client.clone();
            calls.spawn(async move { (i, client.submit(envelope).await) });
        }
        let mut answers: Vec<Option<proto::SubmitResponse>> = vec![None; window.len()];
        while let Some(joined) = calls.join_next().await {
            let (i, result) = joined.expect("a submission task panicked");
            answers[i] = Some(result.expect("Submit"));
        }
        out.extend(answers.into_iter().map(|a| a.expect("every call answered")));
    }
    out
}

/// Submits on one `SubmitStream`; the answers (which may come out of order) put back in
/// submission order. Each envelope gets exactly one answer, then the stream ends.
pub async fn submit_stream(
    client: &mut NodeClient,
    envelopes: &[proto::Envelope],
) -> Vec<StreamResult> {
    let requests: Vec<proto::SubmitStreamRequest> = envelopes
        .iter()
        .enumerate()
        .map(|(i, e)| proto::SubmitStreamRequest {
            sequence: i as u64,
            envelope: Some(e.clone()),
        })
        .collect();
    let mut answers = client
        .ledger
        .submit_stream(tokio_stream::iter(requests))
        .await
        .expect("SubmitStream")
        .into_inner();
    let mut out: Vec<Option<StreamResult>> = vec![None; envelopes.len()];
    let mut ended = false;
    for _ in 0..=envelopes.len() {
        let next = timeout(CALL_TIMEOUT, answers.message())
            .await
            .expect("the stream stalled")
            .expect("the stream failed");
        let Some(answer) = next else {
            ended = true;
            break;
        };
        let slot = out
            .get_mut(answer.sequence as usize)
            .unwrap_or_else(|| panic!("an answer to sequence {}", answer.sequence));
        assert!(
            slot.is_none(),
            "sequence {} answered twice",
            answer.sequence
        );
        *slot = Some(answer.result.expect("an answer carries a result"));
    }
    assert!(ended, "the stream goes on after every envelope is answered");
    out.into_iter()
        .enumerate()
        .map(|(i, a)| a.unwrap_or_else(|| panic!("sequence {i} never answered")))
        .collect()
}

/// The answer to an envelope the stream accepted.
#[track_caller]
pub fn accepted(result: StreamResult) -> proto::SubmitResponse {
    match result {
        StreamResult::Accepted(a) => a,
        StreamResult::Error(e) => panic!("refused on the stream: {e:?}"),
    }
}

/// Every entry of `[start, end)` as `GetEntries` streams it, checked to come in index order.
pub async fn entries(client: &mut NodeClient, start: u64, end: u64) -> Vec<proto::Entry> {
    let mut stream = client
        .ledger
        .get_entries(proto::GetEntriesRequest { start, end })
        .await
        .expect("GetEntries")
        .into_inner();
    let mut out: Vec<proto::Entry> = Vec::new();
    for _ in 0..MAX_MESSAGES {
        let next = timeout(CALL_TIMEOUT, stream.message())
            .await
            .expect("the stream stalled")
            .expect("the stream failed");
        let Some(message) = next else {
            return out;
        };
        for entry in message.entries {
            let expected = start + out.len() as u64;
            assert_eq!(entry.index, expected, "entries out of order");
            out.push(entry);
        }
    }
    panic!("GetEntries sent more than {MAX_MESSAGES} messages")
}
