//! Steps 1 to 3: the checkpoint's signature, every entry's inclusion proof, and every
//! envelope's signatures. What passes becomes [`Evidence`]: decoded statements whose place
//! in the log and signatures are proven, in log order.

use std::collections::HashMap;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

use super::report::CheckpointView;
use super::{Findings, Policy, Problem, Step};
use crate::bundle::Bundle;
use crate::checkpoint::{CheckpointError, SignedCheckpoint};
use crate::entry::Leaf;
use crate::envelope::{verify_batch_with, Envelope, KnownKeys, StatementId};
use crate::keys::PublicKey;
use crate::merkle::{leaf_hash, verify_inclusions, Inclusion, ProofError};
use crate::note::NoteError;
use crate::rules::MAX_FUTURE_SKEW_MS;
use crate::statement::{Statement, StatementError};

/// A statement proven to be in the log, with verified signatures.
pub(crate) struct Item {
    /// Its index in the log.
    pub index: u64,
    /// When the log integrated it (ms since the epoch).
    pub at: u64,
    pub statement: Statement,
    /// Every key that signed the envelope (all verified), in envelope order.
    pub signers: Vec<PublicKey>,
}

impl Item {
    /// "the transfer at entry 12".
    pub fn describe(&self) -> String {
        format!("the {} at entry {}", self.statement.kind(), self.index)
    }
}

/// The bundle's statements that passed steps 1 to 3, in log order.
pub(crate) struct Evidence {
    pub items: Vec<Item>,
    by_id: HashMap<StatementId, usize>,
}

impl Evidence {
    /// The position in `items` of the statement with this id.
    pub fn position(&self, id: &StatementId) -> Option<usize> {
        self.by_id.get(id).copied()
    }

    pub fn get(&self, id: &StatementId) -> Option<&Item> {
        self.position(id).and_then(|p| self.items.get(p))
    }
}

/// Runs steps 1 to 3. Returns the checkpoint (once its signature verified) and, when all
/// three steps passed, the evidence for the rest.
pub(crate) fn check(
    bundle: &Bundle,
    policy: &Policy,
    out: &mut Findings,
) -> (Option<CheckpointView>, Option<Evidence>) {
    // Step 1: the checkpoint.
    let Some(log_key) = policy.log_key.as_ref() else {
        out.fail(
            Step::Checkpoint,
            Problem::NoLogKey,
            None,
            "the policy names no log_key, so the bundle cannot be checked against the log: add the log's verifier key (from `fairtrail-node log-key`) to the policy, or pass --log-key",
        );
        return (None, None);
    };
    let signed = match SignedCheckpoint::verify(&bundle.checkpoint, log_key) {
        Ok(signed) => signed,
        Err(e) => {
            let problem = match &e {
                CheckpointError::Note {
                    source: NoteError::NoSignatureByKey { .. } | NoteError::BadSignature { .. },
                } => Problem::CheckpointNotSignedByLog,
                CheckpointError::OriginMismatch { .. } => Problem::CheckpointFromAnotherLog,
                _ => Problem::CheckpointMalformed,
            };
            out.fail(
                Step::Checkpoint,
                problem,
                None,
                format!(
                    "the checkpoint does not verify with the log key {}: {e}",
                    log_key.to_text()
                ),
            );
            return (None, None);
        }
    };
    let cp = &signed.checkpoint;
    out.pass(
        Step::Checkpoint,
        None,
        None,
        format!(
            "the checkpoint of {} at tree size {} is signed by the log key {}+{}",
            cp.origin,
            cp.size,
            log_key.name(),
            hex::encode(log_key.key_id())
        ),
    );
    let view = CheckpointView {
        origin: cp.origin.clone(),
        size: cp.size,
        root: B64.encode(cp.root),
    };

    // Step 2: inclusion. The proof is checked over the leaf bytes before they are decoded:
    // nothing unproven is interpreted.
    // The proofs are checked together (faster than one by one), their verdicts used in order.
    let inclusions: Vec<Inclusion<'_>> = bundle
        .entries
        .iter()
        .filter(|e| e.index < cp.size)
        .map(|e| Inclusion {
            leaf_hash: leaf_hash(&e.leaf),
            index: e.index,
            tree_size: cp.size,
            proof: &e.inclusion_proof,
            root: &cp.root,
        })
        .collect();
    let mut proven = verify_inclusions(&inclusions).into_iter();
    let mut leaves = Vec::with_capacity(bundle.entries.len());
    let mut seen: HashMap<StatementId, u64> = HashMap::new();
    let mut last: Option<(u64, u64)> = None;
    for e in &bundle.entries {
        let entry = Some(e.index);
        if e.index >= cp.size {
            out.fail(
                Step::Inclusion,
                Problem::EntryBeyondCheckpoint,
                entry,
                format!(
                    "entry {} is beyond the checkpoint's tree of size {}",
                    e.index, cp.size
                ),
            );
            continue;
        }
        // One verdict per entry inside the tree, in order; were one missing, it fails closed.
        let verdict = proven.next().unwrap_or(Err(ProofError::RootMismatch));
        if let Err(err) = verdict {
            out.fail(
                Step::Inclusion,
                Problem::NotInLog,
                entry,
                format!(
                    "entry {} is not proven to be in the log: {err} (the entry or its proof was altered)",
                    e.index
                ),
            );
            continue;
        }
        let leaf = match Leaf::decode(e.leaf.clone()) {
            Ok(leaf) => leaf,
            Err(err) => {
                out.fail(
                    Step::Inclusion,
                    Problem::LeafMalformed,
                    entry,
                    format!("entry {}: {err}", e.index),
                );
                continue;
            }
        };
        if let Some(first) = seen.insert(leaf.statement_id, e.index) {
            out.fail(
                Step::Inclusion,
                Problem::DuplicateStatement,
                entry,
                format!(
                    "entries {first} and {} hold the same statement {}; the log holds each statement once",
                    e.index, leaf.statement_id
                ),
            );
        }
        if let Some((index, at)) = last.filter(|(_, at)| *at > leaf.integrated_at_ms) {
            out.fail(
                Step::Inclusion,
                Problem::TimeGoesBackwards,
                entry,
                format!(
                    "entry {} was integrated at {} ms, before entry {index} ({at} ms): the log's clock never runs backwards",
                    e.index, leaf.integrated_at_ms
                ),
            );
        }
        last = Some((e.index, leaf.integrated_at_ms));
        leaves.push((e.index, leaf));
    }
    if out.failed(Step::Inclusion) {
        return (Some(view), None);
    }
    out.pass(
        Step::Inclusion,
        None,
        None,
        format!(
            "all {} entries are in the log's tree of size {}: each inclusion proof leads to the checkpoint's root",
            leaves.len(),
            cp.size
        ),
    );

    // Step 3: envelopes, statements and signatures. A bundle's entries are signed by a few
    // parties' keys again and again: each key is checked (and its curve point decompressed)
    // once for the bundle, not once per entry that names it.
    let mut known = KnownKeys::default();
    let mut envelopes = Vec::with_capacity(leaves.len());
    let mut decoded = Vec::with_capacity(leaves.len());
    for (index, leaf) in leaves {
        let entry = Some(index);
        let envelope = match Envelope::decode_with(leaf.envelope, &mut known) {
            Ok(envelope) => envelope,
            Err(err) => {
                out.fail(
                    Step::Signatures,
                    Problem::EnvelopeMalformed,
                    entry,
                    format!("entry {index}: {err}"),
                );
                continue;
            }
        };
        let statement = match Statement::decode_with(&envelope, &mut known) {
            Ok(statement) => statement,
            Err(err) => {
                let problem = match err {
                    StatementError::IssuerDidNotSign { .. } => Problem::IssuerDidNotSign,
                    _ => Problem::StatementMalformed,
                };
                out.fail(
                    Step::Signatures,
                    problem,
                    entry,
                    format!("entry {index}: {err}"),
                );
                continue;
            }
        };
        decoded.push((index, leaf.integrated_at_ms, statement));
        envelopes.push(envelope);
    }
    let mut items = Vec::with_capacity(decoded.len());
    let mut signatures = 0;
    for ((index, at, statement), result) in decoded
        .into_iter()
        .zip(verify_batch_with(envelopes, &known))
    {
        match result {
            Ok(verified) => {
                // The log's time for an entry is what every later check trusts. A statement
                // signed after the log says it integrated it (beyond the skew the ledger
                // rules allow) shows a log clock held back, which could put goods inside a
                // certificate's dates.
                if statement.issued_at_ms > at.saturating_add(MAX_FUTURE_SKEW_MS) {
                    out.fail(
                        Step::Signatures,
                        Problem::IssuedAfterLogged,
                        Some(index),
                        format!(
                            "entry {index} (a {}) was signed at {} ms, more than {} minutes after the log says it integrated it ({at} ms): the log's clock was held back",
                            statement.kind(),
                            statement.issued_at_ms,
                            MAX_FUTURE_SKEW_MS / 60_000,
                        ),
                    );
                }
                let signers: Vec<PublicKey> = verified.signers().collect();
                signatures += signers.len();
                items.push(Item {
                    index,
                    at,
                    statement,
                    signers,
                });
            }
            Err(err) => {
                out.fail(
                    Step::Signatures,
                    Problem::BadSignature,
                    Some(index),
                    format!(
                        "entry {index} (a {}): {err}; it is forged or altered",
                        statement.kind()
                    ),
                );
            }
        }
    }
    if out.failed(Step::Signatures) {
        return (Some(view), None);
    }
    out.pass(
        Step::Signatures,
        None,
        None,
        format!(
            "all {} statements are well formed and signed by their issuers; all {signatures} Ed25519 signatures verify",
            items.len()
        ),
    );
    let by_id = items
        .iter()
        .enumerate()
        .map(|(i, item)| (item.statement.id, i))
        .collect();
    (Some(view), Some(Evidence { items, by_id }))
}
