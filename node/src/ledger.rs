//! The gRPC `fairtrail.v1.LedgerService`: submissions go to the sequencer, reads come from
//! the published snapshot of the tiles. Errors become `Status` in [`status`] alone.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use fairtrail_client::envelope::StatementId;
use fairtrail_client::merkle::hash_from_bytes;
use fairtrail_client::proto;
use fairtrail_client::proto::ledger_service_server::LedgerService;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use crate::index::{Index, IndexError};
use crate::limits::RateLimiter;
use crate::sequencer::{Accepted, SequencerHandle, SubmitError};
use crate::tiles::{Snapshot, StoreError, TileStore};

/// Entries per `GetEntriesResponse` message: one entry bundle.
const ENTRIES_PER_MESSAGE: u64 = 256;

pub struct Ledger {
    sequencer: SequencerHandle,
    store: Arc<TileStore>,
    index: Index,
    verifier_key: String,
    /// Submissions per connection (by peer address): checked before anything is decoded,
    /// so a flood costs the node almost nothing.
    per_connection: Arc<RateLimiter<Option<SocketAddr>>>,
}

/// Envelopes of one stream being sequenced at once; the stream is read no faster.
const STREAM_IN_FLIGHT: usize = 4096;
/// The most envelopes of one stream handed to the sequencer as one submission.
const STREAM_GATHER: usize = 256;

/// How a stream of requests went on after the requests [`gather`] took.
enum Then {
    /// It may hold more.
    More,
    /// It ended.
    Ended,
    /// It failed (the requests taken before are still submitted).
    Failed(Status),
}

/// `first` and whatever else the stream already holds, without waiting, up to
/// [`STREAM_GATHER`] requests; and whether the stream ended or failed meanwhile (it is not
/// polled again after either).
async fn gather(
    first: proto::SubmitStreamRequest,
    requests: &mut Streaming<proto::SubmitStreamRequest>,
) -> (Vec<proto::SubmitStreamRequest>, Then) {
    let mut gathered = vec![first];
    while gathered.len() < STREAM_GATHER {
        let ready = std::future::poll_fn(|cx| {
            std::task::Poll::Ready(match Pin::new(&mut *requests).poll_next(cx) {
                std::task::Poll::Ready(next) => Some(next),
                std::task::Poll::Pending => None,
            })
        })
        .await;
        match ready {
            Some(Some(Ok(req))) => gathered.push(req),
            Some(Some(Err(s))) => return (gathered, Then::Failed(s)),
            Some(None) => return (gathered, Then::Ended),
            // Nothing more yet.
            None => break,
        }
    }
    (gathered, Then::More)
}

impl Ledger {
    pub fn new(
        sequencer: SequencerHandle,
        store: Arc<TileStore>,
        index: Index,
        verifier_key: String,
        per_connection: RateLimiter<Option<SocketAddr>>,
    ) -> Self {
        Ledger {
            sequencer,
            store,
            index,
            verifier_key,
            per_connection: Arc::new(per_connection),
        }
    }
}

fn rate_limited() -> Status {
    status(LedgerError::Submit(SubmitError::RateLimited(
        "this connection is submitting faster than the node allows; slow down and retry".into(),
    )))
}

/// Every error a ledger call can meet.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error(transparent)]
    Submit(#[from] SubmitError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    OutOfRange(String),
}

/// The one place ledger errors become gRPC statuses: the caller's fault gets a precise code
/// and a message to act on; ours gets INTERNAL, with the detail in the node's log only.
pub fn status(e: LedgerError) -> Status {
    match e {
        LedgerError::Submit(SubmitError::MissingEnvelope) => {
            Status::invalid_argument("the request has no envelope")
        }
        LedgerError::Submit(
            e @ (SubmitError::Envelope(_) | SubmitError::Statement(_) | SubmitError::Leaf(_)),
        ) => Status::invalid_argument(e.to_string()),
        LedgerError::Submit(SubmitError::Rejected(e)) if e.is_invalid_argument() => {
            Status::invalid_argument(e.to_string())
        }
        LedgerError::Submit(SubmitError::Rejected(e)) => Status::failed_precondition(e.to_string()),
        LedgerError::Submit(SubmitError::NotAdmitted(m)) => Status::permission_denied(m),
        LedgerError::Submit(SubmitError::RateLimited(m) | SubmitError::DiskFull(m)) => {
            Status::resource_exhausted(m)
        }
        LedgerError::Submit(SubmitError::Unavailable(m)) => Status::unavailable(m),
        LedgerError::Submit(SubmitError::Internal(m)) => internal(&m),
        LedgerError::Store(StoreError::OutOfRange { index, size }) => {
            Status::out_of_range(format!("index {index} is beyond the tree size {size}"))
        }
        LedgerError::Store(e) => internal(&e.to_string()),
        LedgerError::Index(e) => internal(&e.to_string()),
        LedgerError::InvalidArgument(m) => Status::invalid_argument(m),
        LedgerError::NotFound(m) => Status::not_found(m),
        LedgerError::OutOfRange(m) => Status::out_of_range(m),
    }
}

fn internal(detail: &str) -> Status {
    tracing::error!(%detail, "internal error");
    Status::internal("internal error; the node's log has the details")
}

fn submit_response(a: Accepted) -> proto::SubmitResponse {
    proto::SubmitResponse {
        receipt: Some(a.receipt),
        existing: a.existing,
    }
}

impl Ledger {
    /// A tree size from a request: 0 means the snapshot's; beyond it is OUT_OF_RANGE.
    fn tree_size(snapshot: &Snapshot, requested: u64) -> Result<u64, LedgerError> {
        match requested {
            0 => Ok(snapshot.size),
            s if s > snapshot.size => Err(LedgerError::OutOfRange(format!(
                "tree size {s} is beyond the latest checkpoint's size {}",
                snapshot.size
            ))),
            s => Ok(s),
        }
    }

    fn checkpoint_if_latest(snapshot: &Snapshot, size: u64) -> String {
        if size == snapshot.size {
            snapshot.checkpoint.clone()
        } else {
            String::new()
        }
    }

    fn get_entry_inner(
        &self,
        req: proto::GetEntryRequest,
    ) -> Result<proto::GetEntryResponse, LedgerError> {
        let snapshot = self.store.snapshot();
        let index = match req.key {
            Some(proto::get_entry_request::Key::Index(i)) => i,
            Some(proto::get_entry_request::Key::StatementId(id)) => {
                let id = StatementId::from_bytes(&id)
                    .map_err(|e| LedgerError::InvalidArgument(e.to_string()))?;
                self.index
                    .index_of_statement(&id)?
                    .filter(|&i| i < snapshot.size)
                    .ok_or_else(|| {
                        LedgerError::NotFound(format!("no entry holds statement {id}"))
                    })?
            }
            None => {
                return Err(LedgerError::InvalidArgument(
                    "give an index or a statement id".into(),
                ))
            }
        };
        let leaf = self.store.leaf(&snapshot, index)?;
        Ok(proto::GetEntryResponse {
            entry: Some(proto::Entry {
                index,
                leaf: leaf.to_vec(),
            }),
        })
    }

    fn inclusion_inner(
        &self,
        req: proto::GetInclusionProofRequest,
    ) -> Result<proto::GetInclusionProofResponse, LedgerError> {
        let snapshot = self.store.snapshot();
        let size = Self::tree_size(&snapshot, req.tree_size)?;
        let index = match req.leaf {
            Some(proto::get_inclusion_proof_request::Leaf::Index(i)) => i,
            Some(proto::get_inclusion_proof_request::Leaf::LeafHash(h)) => {
                let h = hash_from_bytes(&h)
                    .map_err(|e| LedgerError::InvalidArgument(format!("leaf hash: {e}")))?;
                self.index
                    .index_of_leaf(&h)?
                    .filter(|&i| i < snapshot.size)
                    .ok_or_else(|| {
                        LedgerError::NotFound(format!("no entry has leaf hash {}", hex::encode(h)))
                    })?
            }
            None => {
                return Err(LedgerError::InvalidArgument(
                    "give a leaf index or a leaf hash".into(),
                ))
            }
        };
        if index >= size {
            return Err(LedgerError::OutOfRange(format!(
                "index {index} is not in a tree of size {size}"
            )));
        }
        let proof = self.store.prove_inclusion(&snapshot, index, size)?;
        let leaf = self.store.leaf(&snapshot, index)?;
        Ok(proto::GetInclusionProofResponse {
            index,
            tree_size: size,
            leaf_hash: fairtrail_client::merkle::leaf_hash(&leaf).to_vec(),
            proof: proof.iter().map(|h| h.to_vec()).collect(),
            checkpoint: Self::checkpoint_if_latest(&snapshot, size),
        })
    }

    fn consistency_inner(
        &self,
        req: proto::GetConsistencyProofRequest,
    ) -> Result<proto::GetConsistencyProofResponse, LedgerError> {
        let snapshot = self.store.snapshot();
        let to = Self::tree_size(&snapshot, req.to_size)?;
        if req.from_size == 0 {
            return Err(LedgerError::InvalidArgument(
                "from_size must be at least 1: every tree is consistent with the empty tree".into(),
            ));
        }
        if req.from_size > to {
            return Err(LedgerError::InvalidArgument(format!(
                "from_size {} is larger than to_size {to}",
                req.from_size
            )));
        }
        let proof = self.store.prove_consistency(&snapshot, req.from_size, to)?;
        Ok(proto::GetConsistencyProofResponse {
            from_size: req.from_size,
            to_size: to,
            proof: proof.iter().map(|h| h.to_vec()).collect(),
            checkpoint: Self::checkpoint_if_latest(&snapshot, to),
        })
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl LedgerService for Ledger {
    async fn submit(
        &self,
        request: Request<proto::SubmitRequest>,
    ) -> Result<Response<proto::SubmitResponse>, Status> {
        if !self.per_connection.allow(&request.remote_addr(), 1) {
            return Err(rate_limited());
        }
        let envelope = request
            .into_inner()
            .envelope
            .ok_or(LedgerError::Submit(SubmitError::MissingEnvelope))
            .map_err(status)?;
        let accepted = self
            .sequencer
            .submit(envelope)
            .await
            .map_err(|e| status(e.into()))?;
        Ok(Response::new(submit_response(accepted)))
    }

    type SubmitStreamStream = BoxStream<proto::SubmitStreamResponse>;

    async fn submit_stream(
        &self,
        request: Request<Streaming<proto::SubmitStreamRequest>>,
    ) -> Result<Response<Self::SubmitStreamStream>, Status> {
        let peer = request.remote_addr();
        let per_connection = self.per_connection.clone();
        let mut requests = request.into_inner();
        let sequencer = self.sequencer.clone();
        let in_flight = Arc::new(tokio::sync::Semaphore::new(STREAM_IN_FLIGHT));
        // Envelopes are submitted as they arrive, without waiting for earlier receipts, so one
        // stream fills whole group commits; whatever has arrived together (up to
        // STREAM_GATHER) goes to the sequencer as one submission, and answers go back as they
        // complete.
        let (tx, rx) =
            tokio::sync::mpsc::channel::<Result<proto::SubmitStreamResponse, Status>>(1024);
        tokio::spawn(async move {
            let mut pending = tokio::task::JoinSet::new();
            // The stream's error, sent after every answer owed (the response ends with it).
            let mut failure = None;
            loop {
                tokio::select! {
                    next = requests.next() => match next {
                        Some(Ok(first)) => {
                            let (gathered, then) = gather(first, &mut requests).await;
                            let Ok(count) = u32::try_from(gathered.len()) else { break };
                            let Ok(permit) = in_flight.clone().acquire_many_owned(count).await else { break };
                            let mut envelopes = Vec::with_capacity(gathered.len());
                            let mut sequences = Vec::with_capacity(gathered.len());
                            let mut refused = Vec::new();
                            for req in gathered {
                                match req.envelope {
                                    _ if !per_connection.allow(&peer, 1) => refused.push((req.sequence, rate_limited())),
                                    None => refused.push((req.sequence, status(LedgerError::Submit(SubmitError::MissingEnvelope)))),
                                    Some(envelope) => {
                                        envelopes.push(envelope);
                                        sequences.push(req.sequence);
                                    }
                                }
                            }
                            let sequencer = sequencer.clone();
                            let answers = tx.clone();
                            pending.spawn(async move {
                                let _permit = permit;
                                let results = sequencer.submit_all(envelopes).await;
                                let answered = sequences.into_iter().zip(results.into_iter().map(|r| r.map_err(|e| status(e.into()))));
                                for (sequence, result) in refused.into_iter().map(|(q, s)| (q, Err(s))).chain(answered) {
                                    let result = match result {
                                        Ok(a) => proto::submit_stream_response::Result::Accepted(submit_response(a)),
                                        Err(s) => proto::submit_stream_response::Result::Error(proto::SubmitError {
                                            code: s.code() as i32,
                                            message: s.message().to_owned(),
                                        }),
                                    };
                                    if answers.send(Ok(proto::SubmitStreamResponse { sequence, result: Some(result) })).await.is_err() {
                                        return;
                                    }
                                }
                            });
                            match then {
                                Then::More => {}
                                Then::Ended => break,
                                Then::Failed(s) => {
                                    failure = Some(s);
                                    break;
                                }
                            }
                        }
                        Some(Err(s)) => {
                            failure = Some(s);
                            break;
                        }
                        None => break,
                    },
                    Some(_) = pending.join_next(), if !pending.is_empty() => {}
                }
            }
            while pending.join_next().await.is_some() {}
            if let Some(s) = failure {
                let _ = tx.send(Err(s)).await;
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn get_entry(
        &self,
        request: Request<proto::GetEntryRequest>,
    ) -> Result<Response<proto::GetEntryResponse>, Status> {
        self.get_entry_inner(request.into_inner())
            .map(Response::new)
            .map_err(status)
    }

    type GetEntriesStream = BoxStream<proto::GetEntriesResponse>;

    async fn get_entries(
        &self,
        request: Request<proto::GetEntriesRequest>,
    ) -> Result<Response<Self::GetEntriesStream>, Status> {
        let req = request.into_inner();
        let snapshot = self.store.snapshot();
        let end = if req.end == 0 { snapshot.size } else { req.end };
        if end > snapshot.size {
            return Err(status(LedgerError::OutOfRange(format!(
                "end {end} is beyond the latest checkpoint's size {}",
                snapshot.size
            ))));
        }
        if req.start > end {
            return Err(status(LedgerError::InvalidArgument(format!(
                "start {} is after end {end}",
                req.start
            ))));
        }
        let store = self.store.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        // Reads are blocking file I/O; a bounded channel keeps a slow reader from making the
        // node buffer the whole log.
        tokio::task::spawn_blocking(move || {
            let mut at = req.start;
            while at < end {
                let n = at / ENTRIES_PER_MESSAGE;
                let chunk_end = ((n + 1) * ENTRIES_PER_MESSAGE).min(end);
                let message = store
                    .bundle(&snapshot, n)
                    .map_err(|e| status(e.into()))
                    .map(|bundle| {
                        let entries = (at..chunk_end)
                            .filter_map(|i| {
                                let leaf = bundle.get((i - n * ENTRIES_PER_MESSAGE) as usize)?;
                                Some(proto::Entry {
                                    index: i,
                                    leaf: leaf.to_vec(),
                                })
                            })
                            .collect();
                        proto::GetEntriesResponse { entries }
                    });
                let failed = message.is_err();
                if tx.blocking_send(message).is_err() || failed {
                    return;
                }
                at = chunk_end;
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn get_checkpoint(
        &self,
        _request: Request<proto::GetCheckpointRequest>,
    ) -> Result<Response<proto::GetCheckpointResponse>, Status> {
        let snapshot = self.store.snapshot();
        Ok(Response::new(proto::GetCheckpointResponse {
            checkpoint: snapshot.checkpoint.clone(),
            verifier_key: self.verifier_key.clone(),
        }))
    }

    async fn get_inclusion_proof(
        &self,
        request: Request<proto::GetInclusionProofRequest>,
    ) -> Result<Response<proto::GetInclusionProofResponse>, Status> {
        self.inclusion_inner(request.into_inner())
            .map(Response::new)
            .map_err(status)
    }

    async fn get_consistency_proof(
        &self,
        request: Request<proto::GetConsistencyProofRequest>,
    ) -> Result<Response<proto::GetConsistencyProofResponse>, Status> {
        self.consistency_inner(request.into_inner())
            .map(Response::new)
            .map_err(status)
    }
}
