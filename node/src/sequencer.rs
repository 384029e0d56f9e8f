//! The single writer: decode, batch-verify, deduplicate, append, sign a checkpoint, answer.
//!
//! Two threads form a pipeline so both cores work under load:
//! 1. the *verifier* takes every queued submission (up to a batch), decodes it, and checks
//!    all signatures at once with Ed25519 batch verification. A submission may carry several
//!    envelopes (a stream hands over whatever has arrived together), answered together;
//! 2. the *committer* takes every verified batch waiting, drops statements already logged
//!    (idempotent resubmission), appends the rest to the tiles with one group commit
//!    (fdatasync), signs and durably writes one checkpoint, hands the index writes to the
//!    index's applier thread (readers see them from then on), publishes the new tree, and
//!    only then answers each caller. A new entry's receipt (its inclusion proof against the
//!    published checkpoint) is built by the caller's task from the answer, off the
//!    committer's thread, which every submission waits on.
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
    verify_batch_with, Envelope, EnvelopeError, KnownKeys, StatementId, VerifiedEnvelope,
};
use fairtrail_client::keys::PublicKey;
use fairtrail_client::merkle::{leaf_hash, Hash};
use fairtrail_client::note::NoteSigner;
use fairtrail_client::proto;
use fairtrail_client::rules::{self, statement_index, Overlay, Position, RuleError};
use fairtrail_client::statement::{now_ms, Statement, StatementError};
use tokio::sync::{mpsc, oneshot};

use crate::diskspace::{self, DiskGuard, Room};
use crate::index::{Index, IndexError};
use crate::limits::{AdmissionPolicy, RateLimiter};
use crate::metrics::Metrics;
use crate::tiles::{Snapshot, StoreError, TileStore, TileWriter};

/// The most submissions verified or committed together.
pub const MAX_BATCH: usize = 4096;
/// How often an idle committer measures the free disk space.
const DISK_CHECK_IDLE: std::time::Duration = std::time::Duration::from_secs(1);

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
    /// Free disk space is below the node's reserve (`crate::diskspace`).
    #[error("{0}")]
    DiskFull(String),
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

/// The committer's answer to one submission.
enum Answer {
    /// A new entry, durable and published in `snapshot`: the caller builds the receipt. The
    /// envelope and statement travel with it so that freeing them is the caller's work too.
    New {
        snapshot: Arc<Snapshot>,
        index: u64,
        id: StatementId,
        leaf: Bytes,
        leaf_hash: Hash,
        _spent: Box<(VerifiedEnvelope, Statement)>,
    },
    /// A statement logged before, with its receipt.
    Existing(proto::EntryReceipt),
}

/// One answer per envelope of a submission, in its order.
type Reply = oneshot::Sender<Vec<Result<Answer, SubmitError>>>;

struct Submission {
    envelopes: Vec<proto::Envelope>,
    reply: Reply,
}

/// A submission on its way through the pipeline: the answers it has so far (refusals, then
/// everything once committed), and its envelopes that verified, by position.
struct Group {
    answers: Vec<Option<Result<Answer, SubmitError>>>,
    verified: Vec<(usize, Verified)>,
    reply: Reply,
}

struct Verified {
    envelope: VerifiedEnvelope,
    statement: Statement,
}

impl Group {
    fn new(len: usize, reply: Reply) -> Group {
        Group {
            answers: (0..len).map(|_| None).collect(),
            verified: Vec::new(),
            reply,
        }
    }

    fn answer(&mut self, slot: usize, answer: Result<Answer, SubmitError>) {
        if let Some(s) = self.answers.get_mut(slot) {
            *s = Some(answer);
        }
    }

    /// Answers every envelope not answered yet with `error`, and sends.
    fn fail(mut self, error: impl Fn() -> SubmitError) {
        for answer in &mut self.answers {
            if answer.is_none() {
                *answer = Some(Err(error()));
            }
        }
        self.send();
    }

    /// Sends the answers (an envelope left unanswered, which would be a bug, gets an internal
    /// error rather than silence).
    fn send(self) {
        let answers = self
            .answers
            .into_iter()
            .map(|a| a.unwrap_or_else(|| Err(SubmitError::Internal("no answer".into()))))
            .collect();
        let _ = self.reply.send(answers);
    }
}

/// How request handlers reach the sequencer. Cheap to clone.
#[derive(Clone)]
pub struct SequencerHandle {
    tx: mpsc::Sender<Submission>,
    failed: Arc<AtomicBool>,
    store: Arc<TileStore>,
}

impl SequencerHandle {
    /// Submits one envelope and waits for its receipt (sent only once the entry is durable).
    pub async fn submit(&self, envelope: proto::Envelope) -> Result<Accepted, SubmitError> {
        self.submit_all(vec![envelope])
            .await
            .pop()
            .unwrap_or_else(|| Err(SubmitError::Internal("no answer".into())))
    }

    /// Submits envelopes together and waits for their answers, one per envelope in order
    /// (sent only once the batch's new entries are durable). Each is judged on its own, as if
    /// submitted one by one in this order.
    pub async fn submit_all(
        &self,
        envelopes: Vec<proto::Envelope>,
    ) -> Vec<Result<Accepted, SubmitError>> {
        let count = envelopes.len();
        let unavailable = |why: &str| {
            (0..count)
                .map(|_| Err(SubmitError::Unavailable(why.to_owned())))
                .collect()
        };
        if self.failed.load(Ordering::Acquire) {
            return unavailable("stopped after a storage failure; restart the node");
        }
        let (reply, answers) = oneshot::channel();
        if self.tx.send(Submission { envelopes, reply }).await.is_err() {
            return unavailable("shutting down");
        }
        match answers.await {
            Ok(answers) => answers
                .into_iter()
                .map(|a| a.and_then(|a| self.accepted(a)))
                .collect(),
            Err(_) => unavailable("shutting down"),
        }
    }

    /// The receipt of an answer: for a new entry, built here, on the caller's task.
    fn accepted(&self, answer: Answer) -> Result<Accepted, SubmitError> {
        match answer {
            Answer::Existing(receipt) => Ok(Accepted {
                receipt,
                existing: true,
            }),
            Answer::New {
                snapshot,
                index,
                id,
                leaf,
                leaf_hash,
                _spent,
            } => receipt_of(&self.store, &snapshot, index, id, &leaf, leaf_hash)
                .map(|receipt| Accepted {
                    receipt,
                    existing: false,
                })
                .map_err(|e| SubmitError::Internal(e.to_string())),
        }
    }
}

/// What the committer checks besides the ledger rules before it appends a statement.
pub struct Guards {
    /// Who may declare themselves.
    pub admission: AdmissionPolicy,
    /// Submissions per issuer key.
    pub per_key: RateLimiter<PublicKey>,
    /// Free disk space against the reserve.
    pub disk: DiskGuard,
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
        guards: Guards,
    ) -> std::io::Result<(Sequencer, SequencerHandle)> {
        let Guards {
            admission,
            per_key,
            mut disk,
        } = guards;
        // Measured once now, so that a start on a nearly full disk says so at once.
        record_room(&metrics, &disk.check());
        let (tx, rx) = mpsc::channel(queue.max(1));
        let (verified_tx, verified_rx) = std_mpsc::sync_channel::<Vec<Group>>(4);
        let (fatal_tx, fatal) = oneshot::channel();
        let store = writer.store().clone();
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
            disk,
        };
        let committer = std::thread::Builder::new()
            .name("committer".into())
            .spawn(move || committer.run(verified_rx, fatal_tx))?;
        Ok((
            Sequencer {
                threads: vec![verifier, committer],
                fatal,
            },
            SequencerHandle { tx, failed, store },
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
    out: std_mpsc::SyncSender<Vec<Group>>,
    metrics: &Metrics,
) {
    let mut known = KnownKeys::default();
    while let Some(first) = rx.blocking_recv() {
        let mut count = first.envelopes.len();
        let mut submissions = vec![first];
        while count < MAX_BATCH {
            match rx.try_recv() {
                Ok(s) => {
                    count += s.envelopes.len();
                    submissions.push(s);
                }
                Err(_) => break,
            }
        }
        let mut groups = Vec::with_capacity(submissions.len());
        let mut envelopes = Vec::with_capacity(count);
        // For each envelope to verify: its group, its position there, and its statement.
        let mut owners = Vec::with_capacity(count);
        for submission in submissions {
            let mut group = Group::new(submission.envelopes.len(), submission.reply);
            for (slot, wire) in submission.envelopes.into_iter().enumerate() {
                // Defence in depth: decoding handles untrusted bytes, and a bug there must
                // cost one submission, not the thread every later submission needs.
                let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    decode(wire, &mut known)
                }))
                .unwrap_or_else(|_| {
                    tracing::error!("decoding a submission panicked; it is refused");
                    Err(SubmitError::Internal("decoding the envelope failed".into()))
                });
                match decoded {
                    Ok((envelope, statement)) => {
                        envelopes.push(envelope);
                        owners.push((groups.len(), slot, statement));
                    }
                    Err(e) => {
                        Metrics::add(&metrics.submissions_rejected, 1);
                        group.answer(slot, Err(e));
                    }
                }
            }
            groups.push(group);
        }
        for (result, (g, slot, statement)) in
            verify_batch_with(envelopes, &known).into_iter().zip(owners)
        {
            let Some(group) = groups.get_mut(g) else {
                continue;
            };
            match result {
                Ok(envelope) => group.verified.push((
                    slot,
                    Verified {
                        envelope,
                        statement,
                    },
                )),
                Err(e) => {
                    Metrics::add(&metrics.submissions_rejected, 1);
                    group.answer(slot, Err(e.into()));
                }
            }
        }
        let (to_commit, refused): (Vec<Group>, Vec<Group>) =
            groups.into_iter().partition(|g| !g.verified.is_empty());
        refused.into_iter().for_each(Group::send);
        if !to_commit.is_empty() {
            if let Err(std_mpsc::SendError(groups)) = out.send(to_commit) {
                for group in groups {
                    group.fail(|| SubmitError::Unavailable("shutting down".into()));
                }
                return;
            }
        }
    }
}

/// Shows the room measured before a commit at `/metrics`.
fn record_room(metrics: &Metrics, room: &Room) {
    Metrics::set(&metrics.submissions_paused, u64::from(room.short()));
    Metrics::set(&metrics.disk_free_bytes, room.free.unwrap_or(0));
    Metrics::set(&metrics.disk_free_measured, u64::from(room.free.is_some()));
}

/// Decodes an envelope and its statement: everything checkable without the log's state.
fn decode(
    wire: proto::Envelope,
    known: &mut KnownKeys,
) -> Result<(Envelope, Statement), SubmitError> {
    let envelope = Envelope::decode_with(wire, known)?;
    let statement = Statement::decode_with(&envelope, known)?;
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
    /// Free space against the reserve, measured before each group commit.
    disk: DiskGuard,
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
    fn run(mut self, rx: std_mpsc::Receiver<Vec<Group>>, fatal: oneshot::Sender<String>) {
        loop {
            let first = match rx.recv_timeout(DISK_CHECK_IDLE) {
                Ok(first) => first,
                // Idle: the disk is measured all the same, so that `/metrics` and the log say
                // when it fills up or is freed before anyone submits; and the index's applier
                // is asked, so that one that has failed stops the node now, not at the next
                // batch that appends.
                Err(std_mpsc::RecvTimeoutError::Timeout) => {
                    record_room(&self.metrics, &self.disk.check());
                    if let Err(e) = self.index.check_applier() {
                        self.stop(e.into(), fatal, &rx);
                        return;
                    }
                    continue;
                }
                Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
            };
            let mut batch = first;
            let mut count: usize = batch.iter().map(|g| g.verified.len()).sum();
            while count < MAX_BATCH {
                match rx.try_recv() {
                    Ok(more) => {
                        count += more.iter().map(|g| g.verified.len()).sum::<usize>();
                        batch.extend(more);
                    }
                    Err(_) => break,
                }
            }
            if let Err(e) = self.commit(batch) {
                self.stop(e, fatal, &rx);
                return;
            }
        }
    }

    /// After a storage failure: reports it so the node shuts down, and refuses whatever is
    /// still queued, rather than leave callers waiting.
    fn stop(
        &self,
        error: FatalError,
        fatal: oneshot::Sender<String>,
        rx: &std_mpsc::Receiver<Vec<Group>>,
    ) {
        tracing::error!(error = %error, "storage failure; the sequencer stops and the node shuts down");
        self.failed.store(true, Ordering::Release);
        let _ = fatal.send(error.to_string());
        for group in rx.iter().flatten() {
            group.fail(|| SubmitError::Unavailable("storage failure".into()));
        }
    }

    /// One group commit. On error, every caller of the batch is answered UNAVAILABLE (but
    /// those already refused, who keep their answer).
    fn commit(&mut self, mut groups: Vec<Group>) -> Result<(), FatalError> {
        let started = std::time::Instant::now();
        // Where each answer goes once the batch is durable: (group, slot, target).
        let mut targets: Vec<(usize, usize, Target)> = Vec::new();
        let mut leaves: Vec<Bytes> = Vec::new();
        let mut leaf_hashes: Vec<(Hash, u64)> = Vec::new();
        let integrated_at = now_ms().max(self.last_integrated_ms);
        let base = self.writer.size();
        let index = self.index.clone();
        // Every statement of the batch sees the effects of those before it.
        let mut state = Overlay::new(&index);
        let storage_failure = || SubmitError::Unavailable("storage failure".into());
        // The commit is charged what it writes (each new entry, and with the first the
        // partial bundle it writes again), so that it does not write into the disk reserve.
        // Statements already logged cost nothing and are answered as ever.
        let room = self.disk.check();
        record_room(&self.metrics, &room);
        let mut charged: u64 = 0;
        let commit_cost = diskspace::commit_cost(self.writer.partial_bundle_bytes());

        // 1. Deduplicate against the log and within the batch, check the ledger rules, and
        //    encode the new leaves.
        for (g, group) in groups.iter_mut().enumerate() {
            for (slot, v) in std::mem::take(&mut group.verified) {
                let id = v.envelope.id();
                // A second copy within the batch appends nothing either: it is "existing".
                match statement_index(&state, &id) {
                    Ok(Some(i)) => {
                        targets.push((g, slot, Target::Existing(i, id)));
                        continue;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        group.answer(slot, Err(SubmitError::Internal(e.to_string())));
                        groups.into_iter().for_each(|g| g.fail(storage_failure));
                        return Err(FatalError::State(e.to_string()));
                    }
                }
                let leaf = match encode_leaf(v.envelope.to_proto(), integrated_at) {
                    Ok(leaf) => Bytes::from(leaf),
                    Err(e) => {
                        group.answer(slot, Err(e.into()));
                        continue;
                    }
                };
                if let Err(message) = self.admission.check(&v.envelope, &v.statement) {
                    Metrics::add(&self.metrics.submissions_rejected, 1);
                    group.answer(slot, Err(SubmitError::NotAdmitted(message)));
                    continue;
                }
                if !self.per_key.allow(&v.statement.issuer, 1) {
                    Metrics::add(&self.metrics.submissions_rejected, 1);
                    group.answer(
                        slot,
                        Err(SubmitError::RateLimited(format!(
                            "key {} is submitting faster than this node allows; slow down and retry",
                            v.statement.issuer
                        ))),
                    );
                    continue;
                }
                let at = Position {
                    index: base + leaves.len() as u64,
                    integrated_at_ms: integrated_at,
                };
                // The rules first: a statement they refuse gets their answer even when the
                // disk is short; one they take is recorded only if it has room.
                let writes = match rules::effects(&state, &v.envelope, &v.statement, at) {
                    Ok(writes) => writes,
                    Err(RuleError::State(e)) => {
                        group.answer(slot, Err(SubmitError::Internal(e.to_string())));
                        groups.into_iter().for_each(|g| g.fail(storage_failure));
                        return Err(FatalError::State(e.to_string()));
                    }
                    Err(e) => {
                        Metrics::add(&self.metrics.submissions_rejected, 1);
                        group.answer(slot, Err(SubmitError::Rejected(e)));
                        continue;
                    }
                };
                let first = if leaves.is_empty() { commit_cost } else { 0 };
                let cost = diskspace::entry_cost(leaf.len()).saturating_add(first);
                if !room.allows(charged.saturating_add(cost)) {
                    Metrics::add(&self.metrics.submissions_rejected, 1);
                    group.answer(slot, Err(SubmitError::DiskFull(diskspace::refusal())));
                    continue;
                }
                state.extend(writes);
                charged = charged.saturating_add(cost);
                let hash = leaf_hash(&leaf);
                leaf_hashes.push((hash, at.index));
                leaves.push(leaf.clone());
                let Verified {
                    envelope,
                    statement,
                } = v;
                targets.push((
                    g,
                    slot,
                    Target::New {
                        index: at.index,
                        id,
                        leaf,
                        leaf_hash: hash,
                        spent: Box::new((envelope, statement)),
                    },
                ));
            }
        }
        let writes = state.into_writes();

        // 2. Make the batch and its checkpoint durable, hand the index writes over, then
        //    publish.
        let snapshot = match self.append_and_commit(&leaves, writes, leaf_hashes) {
            Ok(s) => s,
            Err(e) => {
                groups.into_iter().for_each(|g| g.fail(storage_failure));
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
        for (g, slot, target) in targets {
            let answer = match target {
                Target::New {
                    index,
                    id,
                    leaf,
                    leaf_hash,
                    spent,
                } => {
                    Metrics::add(&self.metrics.submissions_accepted, 1);
                    Ok(Answer::New {
                        snapshot: snapshot.clone(),
                        index,
                        id,
                        leaf,
                        leaf_hash,
                        _spent: spent,
                    })
                }
                Target::Existing(index, id) => {
                    Metrics::add(&self.metrics.submissions_existing, 1);
                    receipt(&store, &snapshot, index, id)
                        .map(Answer::Existing)
                        .map_err(|e| SubmitError::Internal(e.to_string()))
                }
            };
            if let Some(group) = groups.get_mut(g) {
                group.answer(slot, answer);
            }
        }
        groups.into_iter().for_each(Group::send);
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
        // An index that can take no more writes stops the node at `apply_later` below; asked
        // first, it does so before the batch is written. (Should the applier fail in between,
        // the batch is durable but answered UNAVAILABLE, as when the node stops after a
        // commit and before its answers: a caller who submits again gets the receipt.)
        self.index.check_applier()?;
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
        let mut prepared = self.writer.prepare(note, root);
        prepared.make_durable()?;
        // The applier writes these while the next batch commits; until then readers see
        // them as pending.
        self.index
            .apply_later(writes, leaf_hashes, prepared.size())?;
        Ok(prepared.publish())
    }
}

enum Target {
    New {
        index: u64,
        id: StatementId,
        leaf: Bytes,
        leaf_hash: Hash,
        spent: Box<(VerifiedEnvelope, Statement)>,
    },
    Existing(u64, StatementId),
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
    receipt_of(
        store,
        snapshot,
        index,
        statement_id,
        &leaf,
        leaf_hash(&leaf),
    )
}

/// The receipt for the entry at `index`, whose leaf (and its hash) the caller has.
fn receipt_of(
    store: &TileStore,
    snapshot: &Snapshot,
    index: u64,
    statement_id: StatementId,
    leaf: &[u8],
    leaf_hash: Hash,
) -> Result<proto::EntryReceipt, StoreError> {
    let proof = store.prove_inclusion(snapshot, index, snapshot.size)?;
    Ok(proto::EntryReceipt {
        index,
        statement_id: statement_id.as_bytes().to_vec(),
        leaf_hash: leaf_hash.to_vec(),
        leaf: leaf.to_vec(),
        checkpoint: snapshot.checkpoint.clone(),
        inclusion_proof: proof.iter().map(|h: &Hash| h.to_vec()).collect(),
    })
}
