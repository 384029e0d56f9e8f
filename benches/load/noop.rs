//! Baseline (b): a no-op `LedgerService` on the same messages, the framework's ceiling. It
//! decodes each request as the node does and answers at once with a receipt of the real
//! shape and size (the leaf encoded from the envelope, a 20-hash proof, a checkpoint note),
//! so the ceiling pays for the same bytes each way and nothing else. It runs as a process of
//! its own (this binary, `noop-server`), on a runtime like the node's.

use std::pin::Pin;

use fairtrail_client::entry::encode_leaf;
use fairtrail_client::envelope::StatementId;
use fairtrail_client::merkle::leaf_hash;
use fairtrail_client::proto::{self, ledger_service_server::LedgerService};
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

/// A checkpoint note of the length the node signs (origin, size, root, one signature).
const CHECKPOINT: &str = "fairtrail.local/log\n1048576\nq7tBRk3u0JSyXkVzX2x3ebb5K9Jz0mvyV/1S1cqgzkw=\n\n\u{2014} fairtrail.local/log 2b1mAV9ZOm9qEU5m9fUsn6N5ih3D6sRtCDsB7h0PGH2EsBGz/4tTQ9FWTv0fZ6/8L+pSR/8mprR1p6QIIxiBiw5rPYI=\n";

struct Noop;

fn answer(envelope: Option<proto::Envelope>) -> Result<proto::SubmitResponse, Status> {
    let envelope = envelope.ok_or_else(|| Status::invalid_argument("no envelope"))?;
    let id = StatementId::of_payload(&envelope.payload);
    let leaf = encode_leaf(envelope, 1_760_000_000_000)
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
    Ok(proto::SubmitResponse {
        receipt: Some(proto::EntryReceipt {
            index: 1_048_575,
            statement_id: id.as_bytes().to_vec(),
            leaf_hash: leaf_hash(&leaf).to_vec(),
            leaf,
            checkpoint: CHECKPOINT.to_owned(),
            inclusion_proof: vec![vec![0x5a; 32]; 20],
        }),
        existing: false,
    })
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl LedgerService for Noop {
    async fn submit(
        &self,
        request: Request<proto::SubmitRequest>,
    ) -> Result<Response<proto::SubmitResponse>, Status> {
        answer(request.into_inner().envelope).map(Response::new)
    }

    type SubmitStreamStream = BoxStream<proto::SubmitStreamResponse>;

    async fn submit_stream(
        &self,
        request: Request<Streaming<proto::SubmitStreamRequest>>,
    ) -> Result<Response<Self::SubmitStreamStream>, Status> {
        let answers = request.into_inner().map(|r| {
            let r = r?;
            let result = match answer(r.envelope) {
                Ok(a) => proto::submit_stream_response::Result::Accepted(a),
                Err(s) => proto::submit_stream_response::Result::Error(proto::SubmitError {
                    code: s.code() as i32,
                    message: s.message().to_owned(),
                }),
            };
            Ok(proto::SubmitStreamResponse {
                sequence: r.sequence,
                result: Some(result),
            })
        });
        Ok(Response::new(Box::pin(answers)))
    }

    async fn get_entry(
        &self,
        _: Request<proto::GetEntryRequest>,
    ) -> Result<Response<proto::GetEntryResponse>, Status> {
        Err(Status::unimplemented("no-op service"))
    }

    type GetEntriesStream = BoxStream<proto::GetEntriesResponse>;

    async fn get_entries(
        &self,
        _: Request<proto::GetEntriesRequest>,
    ) -> Result<Response<Self::GetEntriesStream>, Status> {
        Err(Status::unimplemented("no-op service"))
    }

    async fn get_checkpoint(
        &self,
        _: Request<proto::GetCheckpointRequest>,
    ) -> Result<Response<proto::GetCheckpointResponse>, Status> {
        Ok(Response::new(proto::GetCheckpointResponse {
            checkpoint: CHECKPOINT.to_owned(),
            verifier_key: String::new(),
        }))
    }

    async fn get_inclusion_proof(
        &self,
        _: Request<proto::GetInclusionProofRequest>,
    ) -> Result<Response<proto::GetInclusionProofResponse>, Status> {
        Err(Status::unimplemented("no-op service"))
    }

    async fn get_consistency_proof(
        &self,
        _: Request<proto::GetConsistencyProofRequest>,
    ) -> Result<Response<proto::GetConsistencyProofResponse>, Status> {
        Err(Status::unimplemented("no-op service"))
    }
}

/// Serves the no-op service on `127.0.0.1:0` until stdin closes, after printing
/// `listening grpc=ADDR` (the parent reads it, and closes stdin to stop us).
pub fn serve(gather: bool) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        println!("listening grpc={}", listener.local_addr()?);
        // A blocking thread watches stdin: the parent closing it (or dying) stops us.
        let (closed, stop) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let mut sink = [0u8; 64];
            while std::io::Read::read(&mut std::io::stdin(), &mut sink).is_ok_and(|n| n > 0) {}
            let _ = closed.send(());
        });
        let stop = async {
            let _ = stop.await;
        };
        tonic::transport::Server::builder()
            .add_service(
                proto::ledger_service_server::LedgerServiceServer::new(Noop)
                    .max_decoding_message_size(4 * 1024 * 1024),
            )
            .serve_with_incoming_shutdown(
                // As the node does: no Nagle delay on small answers, and with `gather` the
                // node's connections (gathered writes) themselves.
                fairtrail_node::limits::limit_connections(listener, 4096, gather),
                stop,
            )
            .await?;
        Ok(())
    })
}
