//! The single writer: decode, batch-verify, deduplicate, append, sign a checkpoint, answer.
//!
//! Two threads form a pipeline so both cores work under load:
//! 1. the *verifier* takes every queued submission (up to a batch), decodes it, and checks
//!    all signatures at once with Ed25519 batch verification;
//! 2. the *committer* takes every verified batch waiting, drops statements already logged
//!    (idempotent resubmission), appends the rest to the tiles with one group commit
//!    (fdatasync), signs and durably writes one checkpoint, hands the index writes to the
//!    index's applier thread (readers see them from then on), publishes the new tree, and
//!    only then answers each caller with its receipt.
//!
//! A storage failure is fatal to the sequencer: it answers UNAVAILABLE from then on and
//! reports the failure so the node stops; nothing unsure is ever acknowledged.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc as std_mpsc, Arc};
use std::thread::JoinHandle;

use bytes::Bytes;
use fairtrail_client::checkpoint::Checkpoint;
use fairtrail_client::entry::{encode_leaf, LeafError};
use fairtrail_client::envelope::{
    verify_batch, Envelope, EnvelopeError, KnownKeys, StatementId, VerifiedEnvelope,
};
use fairtrail_client::keys::PublicKey;
use fairtrail_client::merkle::{leaf_hash, Hash};
use fairtrail_client::note::NoteSigner;
use fairtrail_client::proto;
use fairtrail_client::rules::{self, statement_index, Overlay, Position, RuleError};
use fairtrail_client::statement::{now_ms, Statement, StatementError};
use tokio::sync::{mpsc, oneshot};

use crate::index::{Index, IndexError};
use crate::limits::{AdmissionPolicy, RateLimiter};
use crate::metrics::Metrics;
use crate::tiles::{Snapshot, StoreError, TileStore, TileWriter};

/// The most submissions verified or committed together.
pub const MAX_BATCH: usize = 4096;

/// Why a submission was not logged.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("the envelope is missing")]
    MissingEnvelope,
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    #[error(transparent)]
    Statement(#[from] StatementError),
    #[error(transparent)]
    Leaf(#[from] LeafError),
    /// The ledger rules refuse the statement.
    #[error(transparent)]
    Rejected(RuleError),
    /// The node's admission policy refuses the declaration.
    #[error("{0}")]
    NotAdmitted(String),
    /// Too many submissions from one connection or key.
    #[error("{0}")]
    RateLimited(String),
    /// The sequencer stopped (shutting down, or after a storage failure).
    #[error("the sequencer is not running: {0}")]
    Unavailable(String),
    /// Our fault; the detail goes to the log, not to the caller.
    #[error("internal error: {0}")]
    Internal(String),
}

/// A logged statement: its receipt, and whether it was there before this submission.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub receipt: proto::EntryReceipt,
    pub existing: bool,
}

type Reply = oneshot::Sender<Result<Accepted, SubmitError>>;

struct Submission {
    envelope: proto::Envelope,
    reply: Reply,
}

struct Verified {
    envelope: VerifiedEnvelope,
    statement: Statement,
    reply: Reply,
}

/// How request handlers reach the sequencer. Cheap to clone.
#[derive(Clone)]
pub struct SequencerHandle {
    tx: mpsc::Sender<Submission>,
    failed: Arc<AtomicBool>,
}

impl SequencerHandle {
    /// Submits one envelope and waits for its receipt (sent only once the entry is durable).
    pub async fn submit(&self, envelope: proto::Envelope) -> Result<Accepted, SubmitError> {
        if self.failed.load(Ordering::Acquire) {
            return Err(SubmitError::Unavailable(
                "stopped after a storage failure; restart the node".into(),
            ));
        }
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Submission { envelope, reply })
            .await
            .map_err(|_| SubmitError::Unavailable("shutting down".into()))?;
        answer
            .await
            .map_err(|_| SubmitError::Unavailable("shutting down".into()))?
    }
}

/// The running sequencer threads. Dropping every [`SequencerHandle`] lets them drain and end.
pub struct Sequencer {
    pub threads: Vec<JoinHandle<()>>,
    /// Fires once if the committer hits a storage failure.
    pub fatal: oneshot::Receiver<String>,
}

impl Sequencer {
    /// Starts the pipeline over `writer`. `queue` bounds how many submissions wait.
    pub fn start(
        writer: TileWriter,
        index: Index,
        signer: NoteSigner,
        queue: usize,
        metrics: Arc<Metrics>,
        admission: AdmissionPolicy,
        per_key: RateLimiter<PublicKey>,
    ) -> std::io::Result<(Sequencer, SequencerHandle)> {
        let (tx, rx) = mpsc::channel(queue.max(1));
        let (verified_tx, verified_rx) = std_mpsc::sync_channel::<Vec<Verified>>(4);
        let (fatal_tx, fatal) = oneshot::channel();
        // INVARIANT: integration times never decrease along the log, even if the clock went
        // back while the node was down: the next entry is never earlier than the last one.
        let last_integrated_ms = last_integration_time(writer.store())?;
        let failed = Arc::new(AtomicBool::new(false));
        let verifier = std::thread::Builder::new().name("verifier".into()).spawn({
            let metrics = metrics.clone();
            move || verify_loop(rx, verified_tx, &metrics)
        })?;
        let committer = Committer {
            writer,
            index,
            signer,
            failed: failed.clone(),
            last_integrated_ms,
            metrics,
            admission,
            per_key,
        };
        let committer = std::thread::Builder::new()
            .name("committer".into())
            .spawn(move || committer.run(verified_rx, fatal_tx))?;
        Ok((
            Sequencer {
                threads: vec![verifier, committer],
                fatal,
            },
            SequencerHandle { tx, failed },
        ))
    }

    /// Waits for both threads to finish their last batch.
    pub fn join(self) {
        for t in self.threads {
            let _ = t.join();
        }
    }
}

fn verify_loop(
    mut rx: mpsc::Receiver<Submission>,
    out: std_mpsc::SyncSender<Vec<Verified>>,
    metrics: &Metrics,
) {
    let mut known = KnownKeys::default();
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(s) => batch.push(s),
                Err(_) => break,
            }
        }
        let mut envelopes = Vec::with_capacity(batch.len());
        let mut replies = Vec::with_capacity(batch.len());
        for s in batch {
            // Defence in depth: decoding handles untrusted bytes, and a bug there must cost
            // one submission, not the thread every later submission needs.
            let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                decode(s.envelope, &mut known)
            }))
            .unwrap_or_else(|_| {
                tracing::error!("decoding a submission panicked; it is refused");
                Err(SubmitError::Internal("decoding the envelope failed".into()))
            });
            match decoded {
                Ok((e, statement)) => {
                    envelopes.push(e);
                    replies.push((s.reply, statement));
                }
                Err(e) => {
                    Metrics::add(&metrics.submissions_rejected, 1);
                    let _ = s.reply.send(Err(e));
                }
            }
        }
        let mut verified = Vec::with_capacity(envelopes.len());
        for (result, (reply, statement)) in verify_batch(envelopes).into_iter().zip(replies) {
            match result {
                Ok(envelope) => verified.push(Verified {
                    envelope,
                    statement,
                    reply,
                }),
                Err(e) => {
                    Metrics::add(&metrics.submissions_rejected, 1);
                    let _ = reply.send(Err(e.into()));
                }
            }
        }
        if !verified.is_empty() && out.send(verified).is_err() {
            return;
        }
    }
}

/// Decodes an envelope and its statement: everything checkable without the log's state.
fn decode(
    wire: proto::Envelope,
    known: &mut KnownKeys,
) -> Result<(Envelope, Statement), SubmitError> {
    let envelope = Envelope::decode_with(wire, known)?;
    let statement = Statement::decode(&envelope)?;
    Ok((envelope, statement))
}

struct Committer {
    writer: TileWriter,
    index: Index,
    signer: NoteSigner,
    failed: Arc<AtomicBool>,
    last_integrated_ms: u64,
    metrics: Arc<Metrics>,
    admission: AdmissionPolicy,
    /// Submissions per issuer key: counted after signatures verify, so nobody can spend
    /// another key's allowance by naming it.
    per_key: RateLimiter<PublicKey>,
}

/// A storage failure: fatal to the sequencer.
#[derive(Debug, thiserror::Error)]
enum FatalError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error("signing the checkpoint: {0}")]
    Sign(String),
    #[error("reading the ledger state: {0}")]
    State(String),
}

impl Committer {
    fn run(mut self, rx: std_mpsc::Receiver<Vec<Verified>>, fatal: oneshot::Sender<String>) {
        while let Ok(first) = rx.recv() {
            let mut batch = first;
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(more) => batch.extend(more),
                    Err(_) => break,
                }
            }
            if let Err(e) = self.commit(batch) {
                tracing::error!(error = %e, "storage failure; the sequencer stops and the node shuts down");
                self.failed.store(true, Ordering::Release);
                let _ = fatal.send(e.to_string());
                // Refuse whatever is still queued, rather than leave callers waiting.
                for batch in rx.iter() {
                    for v in batch {
                        let _ = v
                            .reply
                            .send(Err(SubmitError::Unavailable("storage failure".into())));
                    }
                }
                return;
            }
        }
    }

    /// One group commit. On error, every caller of the batch is answered UNAVAILABLE.
    fn commit(&mut self, batch: Vec<Verified>) -> Result<(), FatalError> {
        let started = std::time::Instant::now();
        let mut replies: Vec<(Reply, Target, StatementId)> = Vec::with_capacity(batch.len());
        let mut leaves: Vec<Bytes> = Vec::new();
        let mut leaf_hashes: Vec<(Hash, u64)> = Vec::new();
        let integrated_at = now_ms().max(self.last_integrated_ms);
        let base = self.writer.size();
        let index = self.index.clone();
        // Every statement of the batch sees the effects of those before it.
        let mut state = Overlay::new(&index);

        // 1. Deduplicate against the log and within the batch, check the ledger rules, and
        //    encode the new leaves.
        for v in batch {
            let id = v.envelope.id();
            // A second copy within the batch appends nothing either: it is "existing".
            let existing = match statement_index(&state, &id) {
                Ok(Some(i)) => Some(Target::Existing(i)),
                Ok(None) => None,
                Err(e) => {
                    let _ = v.reply.send(Err(SubmitError::Internal(e.to_string())));
                    return Err(FatalError::State(e.to_string()));
                }
            };
            if let Some(target) = existing {
                replies.push((v.reply, target, id));
                continue;
            }
            let leaf = match encode_leaf(v.envelope.to_proto(), integrated_at) {
                Ok(leaf) => Bytes::from(leaf),
                Err(e) => {
                    let _ = v.reply.send(Err(e.into()));
                    continue;
                }
            };
            if let Err(message) = self.admission.check(&v.envelope, &v.statement) {
                Metrics::add(&self.metrics.submissions_rejected, 1);
                let _ = v.reply.send(Err(SubmitError::NotAdmitted(message)));
                continue;
            }
            if !self.per_key.allow(&v.statement.issuer, 1) {
                Metrics::add(&self.metrics.submissions_rejected, 1);
                let _ = v.reply.send(Err(SubmitError::RateLimited(format!(
                    "key {} is submitting faster than this node allows; slow down and retry",
                    v.statement.issuer
                ))));
                continue;
            }
            let at = Position {
                index: base + leaves.len() as u64,
                integrated_at_ms: integrated_at,
            };
            match rules::apply(&mut state, &v.envelope, &v.statement, at) {
                Ok(()) => {}
                Err(RuleError::State(e)) => {
                    let _ = v.reply.send(Err(SubmitError::Internal(e.to_string())));
                    return Err(FatalError::State(e.to_string()));
                }
                Err(e) => {
                    Metrics::add(&self.metrics.submissions_rejected, 1);
                    let _ = v.reply.send(Err(SubmitError::Rejected(e)));
                    continue;
                }
            }
            leaf_hashes.push((leaf_hash(&leaf), at.index));
            leaves.push(leaf);
            replies.push((v.reply, Target::New(at.index), id));
        }
        let writes = state.into_writes();

        // 2. Make the batch and its checkpoint durable, hand the index writes over, then
        //    publish.
        let snapshot = match self.append_and_commit(&leaves, writes, leaf_hashes) {
            Ok(s) => s,
            Err(e) => {
                for (reply, _, _) in replies {
                    let _ = reply.send(Err(SubmitError::Unavailable("storage failure".into())));
                }
                return Err(e);
            }
        };
        if !leaves.is_empty() {
            self.last_integrated_ms = integrated_at;
            Metrics::add(&self.metrics.commits, 1);
            Metrics::add(&self.metrics.committed_entries, leaves.len() as u64);
            Metrics::add(
                &self.metrics.commit_micros_total,
                started.elapsed().as_micros() as u64,
            );
        }

        // 3. Answer, now that everything is durable.
        let store = self.writer.store().clone();
        for (reply, target, id) in replies {
            let (index, existing) = match target {
                Target::New(i) => (i, false),
                Target::Existing(i) => (i, true),
            };
            let counter = if existing {
                &self.metrics.submissions_existing
            } else {
                &self.metrics.submissions_accepted
            };
            Metrics::add(counter, 1);
            let answer = receipt(&store, &snapshot, index, id)
                .map(|receipt| Accepted { receipt, existing })
                .map_err(|e| SubmitError::Internal(e.to_string()));
            let _ = reply.send(answer);
        }
        Ok(())
    }

    /// Appends `leaves`, makes them and their checkpoint durable, hands the batch's index
    /// writes to the index, and only then publishes the new tree: a reader who sees the new
    /// checkpoint also sees its entries in the index (as pending writes at least), so nothing
    /// built for that checkpoint (a bundle, a page, both cached per checkpoint) can miss them.
    /// The index follows the log, never leads it: the writes go in after the checkpoint is
    /// durable.
    fn append_and_commit(
        &mut self,
        leaves: &[Bytes],
        writes: BTreeMap<Vec<u8>, Vec<u8>>,
        leaf_hashes: Vec<(Hash, u64)>,
    ) -> Result<Arc<Snapshot>, FatalError> {
        if leaves.is_empty() {
            return Ok(self.writer.store().snapshot());
        }
        let root = self.writer.append(leaves)?;
        let checkpoint = Checkpoint {
            origin: self.signer.name().to_owned(),
            size: self.writer.size(),
            root,
            extensions: Vec::new(),
        };
        let note = checkpoint
            .sign(&self.signer)
            .map_err(|e| FatalError::Sign(e.to_string()))?;
        self.writer.make_durable(&note)?;
        // The applier writes these while the next batch commits; until then readers see
        // them as pending.
        self.index
            .apply_later(writes, leaf_hashes, self.writer.size())?;
        Ok(self.writer.publish(note, root))
    }
}

#[derive(Clone, Copy)]
enum Target {
    New(u64),
    Existing(u64),
}

/// When the last entry of the log was integrated (0 for an empty log).
fn last_integration_time(store: &TileStore) -> std::io::Result<u64> {
    let snapshot = store.snapshot();
    if snapshot.size == 0 {
        return Ok(0);
    }
    let leaf = store
        .leaf(&snapshot, snapshot.size - 1)
        .map_err(std::io::Error::other)?;
    let leaf =
        fairtrail_client::entry::Leaf::decode(leaf.to_vec()).map_err(std::io::Error::other)?;
    Ok(leaf.integrated_at_ms)
}

/// The receipt for the entry at `index` (holding `statement_id`), against the snapshot's
/// checkpoint.
pub fn receipt(
    store: &TileStore,
    snapshot: &Snapshot,
    index: u64,
    statement_id: StatementId,
) -> Result<proto::EntryReceipt, StoreError> {
    let leaf = store.leaf(snapshot, index)?;
    let proof = store.prove_inclusion(snapshot, index, snapshot.size)?;
    Ok(proto::EntryReceipt {
        index,
        statement_id: statement_id.as_bytes().to_vec(),
        leaf_hash: leaf_hash(&leaf).to_vec(),
        leaf: leaf.to_vec(),
        checkpoint: snapshot.checkpoint.clone(),
        inclusion_proof: proof.iter().map(|h: &Hash| h.to_vec()).collect(),
    })
}
