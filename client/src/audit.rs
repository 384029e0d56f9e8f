//! Auditing a whole log: replay every entry from the first, and check everything a node could
//! get wrong or lie about.
//!
//! A receipt proves that a signed statement is in the log; it does not prove that the log obeys
//! the ledger rules, nor that the node verified the signatures it logged. An auditor closes that
//! gap: it reads every leaf (`GetEntries`) and
//!
//! 1. recomputes the Merkle tree from the leaves and compares its root with the checkpoint the
//!    log's key signed (and with any checkpoint seen before, so a rewritten history is caught);
//! 2. decodes each leaf, its envelope and its statement (SPEC.md 5.3, 4.5, 3.4);
//! 3. checks that integration times never decrease along the log;
//! 4. checks that no statement is logged twice;
//! 5. verifies every signature (batch verification per bundle, falling back to one envelope at
//!    a time to name the culprits);
//! 6. replays the ledger rules ([`crate::rules`]) over an in-memory state, in log order, so a
//!    broken invariant (an unknown reference, a lot overdrawn or used by another holder, a
//!    retired key signing, a receipt by the wrong party, ...) is reported at its entry.
//!
//! Each problem is a [`Finding`] naming its entry. An entry with a finding is left out of the
//! replayed state (it should never have entered the log), so entries that build on it may be
//! reported too: the first finding is the cause.
//!
//! [`Replay`] is the synchronous core (feed it entries in index order); [`audit_node`] drives it
//! from a node's `GetEntries` stream.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use crate::checkpoint::{Checkpoint, SignedCheckpoint};
use crate::entry::Leaf;
use crate::envelope::{verify_batch_with, Envelope, KnownKeys, StatementId};
use crate::merkle::{empty_root, leaf_hash, CompactRange, Hash};
use crate::proto;
use crate::rpc::{NodeClient, RpcError};
use crate::rules::{self, Overlay, Position, RuleError};
use crate::statement::Statement;

/// Which check a finding comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// The leaf is not an encoded `LogEntry` with an envelope (SPEC.md 5.3).
    Leaf,
    /// The integration time went back from the entry before.
    IntegrationTime,
    /// The statement is already in the log at an earlier entry.
    Duplicate,
    /// The envelope fails its shape checks (SPEC.md 4.5).
    Envelope,
    /// The statement check fails (SPEC.md 3.4).
    Statement,
    /// A signature does not verify (SPEC.md 4.7).
    Signature,
    /// The ledger rules refuse the statement at its place in the log.
    Rules,
    /// The tree of the leaves is not the tree the checkpoint signs.
    Tree,
    /// The log is not an extension of a checkpoint seen before (a fork).
    Consistency,
}

impl Check {
    pub fn name(&self) -> &'static str {
        match self {
            Check::Leaf => "leaf",
            Check::IntegrationTime => "integration_time",
            Check::Duplicate => "duplicate",
            Check::Envelope => "envelope",
            Check::Statement => "statement",
            Check::Signature => "signature",
            Check::Rules => "rules",
            Check::Tree => "tree",
            Check::Consistency => "consistency",
        }
    }
}

/// One problem found in the log.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    /// The entry at fault; `None` for the log as a whole (its tree, its checkpoints).
    pub index: Option<u64>,
    pub check: Check,
    /// For [`Check::Rules`], which rule (see [`rule_name`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<&'static str>,
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.index {
            Some(i) => write!(f, "entry #{i}: ")?,
            None => write!(f, "log: ")?,
        }
        match self.rule {
            Some(rule) => write!(f, "[{}: {rule}] {}", self.check.name(), self.message),
            None => write!(f, "[{}] {}", self.check.name(), self.message),
        }
    }
}

/// A short, stable name for the rule a statement breaks.
pub fn rule_name(e: &RuleError) -> &'static str {
    match e {
        RuleError::Invalid { .. } => "invalid",
        RuleError::UndeclaredKey { .. } => "undeclared_key",
        RuleError::RetiredKey { .. } => "retired_key",
        RuleError::KeyInUse { .. } => "key_in_use",
        RuleError::Unknown { .. } => "unknown_reference",
        RuleError::NotHolder { .. } => "not_holder",
        RuleError::LotOverdrawn { .. } => "lot_overdrawn",
        RuleError::MissingSignature { .. } => "missing_signature",
        RuleError::QuorumNotMet { .. } => "quorum_not_met",
        RuleError::MissingRole { .. } => "missing_role",
        RuleError::Conflict(_) => "conflict",
        RuleError::State(_) => "state",
    }
}

/// Why an audit could not be completed (as opposed to a [`Finding`] about the log).
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("the node sent entry {got} where entry {expected} was due")]
    OutOfOrder { expected: u64, got: u64 },
    #[error("the node failed to serve the entries from {from}: {source}")]
    Read {
        from: u64,
        #[source]
        source: RpcError,
    },
    #[error("the replayed state holds a malformed record: {0}")]
    State(String),
}

/// A root the log must have at some size (from a checkpoint seen before).
#[derive(Clone, Debug)]
struct Expected {
    root: Hash,
    what: String,
}

/// Replays a log entry by entry. Feed it every entry from index 0 in order with
/// [`Replay::push`], then call [`Replay::finish`] with the log's signed checkpoint.
pub struct Replay {
    range: CompactRange,
    state: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Where each statement was first logged.
    ids: HashMap<StatementId, u64>,
    /// The last decodable entry's (index, integration time).
    last_time: Option<(u64, u64)>,
    /// Roots the tree must have at given sizes.
    expected: BTreeMap<u64, Expected>,
    findings: Vec<Finding>,
    signatures: u64,
    /// Keys already checked to be valid curve points: a log's entries are signed by the
    /// same participants' keys again and again, each decompressed once (bounded).
    known: KnownKeys,
}

impl Default for Replay {
    fn default() -> Self {
        Self::new()
    }
}

/// An entry that decoded, waiting for its signatures to be verified with its bundle.
struct Decoded {
    index: u64,
    integrated_at_ms: u64,
    statement: Statement,
}

impl Replay {
    pub fn new() -> Self {
        Replay {
            range: CompactRange::new(),
            state: BTreeMap::new(),
            ids: HashMap::new(),
            last_time: None,
            expected: BTreeMap::new(),
            findings: Vec::new(),
            signatures: 0,
            known: KnownKeys::default(),
        }
    }

    /// Requires the tree of the first `size` leaves to have `root` (a checkpoint of this log
    /// seen before, described by `what`): otherwise the log forked, and it is a finding.
    pub fn expect_root(&mut self, size: u64, root: Hash, what: impl Into<String>) {
        let what = what.into();
        if size == 0 {
            if root != empty_root() {
                self.findings.push(Finding {
                    index: None,
                    check: Check::Consistency,
                    rule: None,
                    message: format!(
                        "{what} signs a root for the empty tree that is not the empty tree's"
                    ),
                });
            }
            return;
        }
        if size <= self.range.size() {
            // Too late to compare: only a root passed on the way is known. Callers register
            // their expectations before the replay starts.
            return;
        }
        self.expected.insert(size, Expected { root, what });
    }

    /// Entries replayed so far.
    pub fn size(&self) -> u64 {
        self.range.size()
    }

    /// The root of the entries replayed so far.
    pub fn root(&self) -> Hash {
        self.range.root()
    }

    /// The findings so far.
    pub fn findings(&self) -> &[Finding] {
        &self.findings
    }

    /// The ledger state replayed so far: the same key-value records the node keeps in its
    /// index (SPEC.md 10.6), for the entries that pass every check.
    pub fn state(&self) -> &BTreeMap<Vec<u8>, Vec<u8>> {
        &self.state
    }

    /// Where the statement `id` was first logged, if it was.
    pub fn index_of(&self, id: &StatementId) -> Option<u64> {
        self.ids.get(id).copied()
    }

    fn find(&mut self, index: u64, check: Check, message: impl Into<String>) {
        self.findings.push(Finding {
            index: Some(index),
            check,
            rule: None,
            message: message.into(),
        });
    }

    /// Replays the next entries (`(index, leaf)`, continuing exactly where the last call
    /// stopped). Signatures are verified together for each call, so pass a bundle at a time.
    pub fn push(&mut self, entries: Vec<(u64, Vec<u8>)>) -> Result<(), AuditError> {
        let mut decoded: Vec<Decoded> = Vec::with_capacity(entries.len());
        let mut envelopes: Vec<Envelope> = Vec::with_capacity(entries.len());
        for (index, bytes) in entries {
            let expected = self.range.size();
            if index != expected {
                return Err(AuditError::OutOfOrder {
                    expected,
                    got: index,
                });
            }
            // INVARIANT: the tree commits to the bytes as served, whatever they hold.
            self.range
                .push(leaf_hash(&bytes))
                .map_err(|e| AuditError::State(e.to_string()))?;
            self.check_expected_root();
            if let Some((envelope, d)) = self.decode(index, bytes) {
                envelopes.push(envelope);
                decoded.push(d);
            }
        }

        let results = verify_batch_with(envelopes, &self.known);
        let mut overlay = Overlay::new(&self.state);
        let mut findings = Vec::new();
        for (d, result) in decoded.into_iter().zip(results) {
            let envelope = match result {
                Ok(v) => v.into_envelope(),
                Err(e) => {
                    findings.push(Finding {
                        index: Some(d.index),
                        check: Check::Signature,
                        rule: None,
                        message: format!(
                            "{e}: the node logged a statement its signers did not sign"
                        ),
                    });
                    continue;
                }
            };
            self.signatures += envelope.signatures().len() as u64;
            let at = Position {
                index: d.index,
                integrated_at_ms: d.integrated_at_ms,
            };
            match rules::apply(&mut overlay, &envelope, &d.statement, at) {
                Ok(()) => {}
                Err(RuleError::State(e)) => return Err(AuditError::State(e.to_string())),
                Err(e) => findings.push(Finding {
                    index: Some(d.index),
                    check: Check::Rules,
                    rule: Some(rule_name(&e)),
                    message: format!(
                        "{} by {} breaks a ledger rule: {e}",
                        d.statement.kind(),
                        d.statement.issuer
                    ),
                }),
            }
        }
        let writes = overlay.into_writes();
        self.state.extend(writes);
        self.findings.extend(findings);
        Ok(())
    }

    /// Compares the root at the current size with a checkpoint seen before, if one is due.
    fn check_expected_root(&mut self) {
        let size = self.range.size();
        if let Some(e) = self.expected.remove(&size) {
            if e.root != self.range.root() {
                self.findings.push(Finding {
                    index: None,
                    check: Check::Consistency,
                    rule: None,
                    message: format!(
                        "the first {size} entries do not give the root of {}: the log has forked or rewritten its history",
                        e.what
                    ),
                });
            }
        }
    }

    /// The checks of one entry that need nothing but the entries before it. `None` when the
    /// entry cannot be replayed (its finding is recorded).
    fn decode(&mut self, index: u64, bytes: Vec<u8>) -> Option<(Envelope, Decoded)> {
        let leaf = match Leaf::decode(bytes) {
            Ok(leaf) => leaf,
            Err(e) => {
                self.find(index, Check::Leaf, e.to_string());
                return None;
            }
        };
        if let Some((before, time)) = self.last_time {
            if leaf.integrated_at_ms < time {
                self.find(
                    index,
                    Check::IntegrationTime,
                    format!(
                        "integrated at {} ms, before entry #{before} ({time} ms): integration times must never decrease",
                        leaf.integrated_at_ms
                    ),
                );
            }
        }
        self.last_time = Some((index, leaf.integrated_at_ms));
        if let Some(first) = self.ids.get(&leaf.statement_id) {
            self.find(
                index,
                Check::Duplicate,
                format!(
                    "statement {} is logged again; it is already entry #{first}",
                    leaf.statement_id
                ),
            );
            return None;
        }
        self.ids.insert(leaf.statement_id, index);
        let envelope = match Envelope::decode_with(leaf.envelope, &mut self.known) {
            Ok(e) => e,
            Err(e) => {
                self.find(index, Check::Envelope, e.to_string());
                return None;
            }
        };
        let statement = match Statement::decode_with(&envelope, &mut self.known) {
            Ok(s) => s,
            Err(e) => {
                self.find(index, Check::Statement, e.to_string());
                return None;
            }
        };
        Some((
            envelope,
            Decoded {
                index,
                integrated_at_ms: leaf.integrated_at_ms,
                statement,
            },
        ))
    }

    /// Ends the replay: the tree must be the one `checkpoint` signs, and every checkpoint
    /// registered with [`Replay::expect_root`] must be a prefix of it.
    pub fn finish(mut self, checkpoint: &Checkpoint) -> Report {
        let size = self.range.size();
        let root = self.range.root();
        if size != checkpoint.size {
            self.findings.push(Finding {
                index: None,
                check: Check::Tree,
                rule: None,
                message: format!(
                    "the node served {size} entries; its checkpoint signs a tree of {}",
                    checkpoint.size
                ),
            });
        } else if root != checkpoint.root {
            self.findings.push(Finding {
                index: None,
                check: Check::Tree,
                rule: None,
                message: format!(
                    "the root of the {size} entries served is {}, not the root the checkpoint signs ({})",
                    hex::encode(root),
                    hex::encode(checkpoint.root)
                ),
            });
        }
        for (at, e) in std::mem::take(&mut self.expected) {
            self.findings.push(Finding {
                index: None,
                check: Check::Consistency,
                rule: None,
                message: format!(
                    "{} has {at} entries but the log now has {size}: the log went back",
                    e.what
                ),
            });
        }
        // Entry findings in log order, then those about the whole log.
        self.findings.sort_by_key(|f| f.index.unwrap_or(u64::MAX));
        Report {
            entries: size,
            signatures: self.signatures,
            root,
            findings: self.findings,
            state: self.state,
        }
    }
}

/// What an audit found.
#[derive(Debug)]
pub struct Report {
    /// Entries replayed.
    pub entries: u64,
    /// Signatures verified.
    pub signatures: u64,
    /// The root recomputed from the leaves.
    pub root: Hash,
    /// Every finding, entries in log order first.
    pub findings: Vec<Finding>,
    /// The ledger state replayed from the entries that passed every check.
    pub state: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty()
    }
}

/// Replays the log of `client`'s node up to `checkpoint` (already verified with the log's key):
/// streams `GetEntries` for `[0, size)`, feeds each message (one entry bundle) to `replay`,
/// and calls `progress` with the number of entries replayed after each.
pub async fn audit_node(
    client: &mut NodeClient,
    checkpoint: &SignedCheckpoint,
    mut replay: Replay,
    mut progress: impl FnMut(u64),
) -> Result<Report, AuditError> {
    let size = checkpoint.checkpoint.size;
    // `end = 0` would mean "the latest size": an empty log has nothing to read.
    if size > 0 {
        let read_error = |from: u64| {
            move |e: tonic::Status| AuditError::Read {
                from,
                source: e.into(),
            }
        };
        let mut stream = client
            .ledger
            .get_entries(proto::GetEntriesRequest {
                start: 0,
                end: size,
            })
            .await
            .map_err(read_error(0))?
            .into_inner();
        while let Some(message) = stream.message().await.map_err(read_error(replay.size()))? {
            let entries = message
                .entries
                .into_iter()
                .map(|e| (e.index, e.leaf))
                .collect();
            replay.push(entries)?;
            progress(replay.size());
            if replay.size() > size {
                break;
            }
        }
    }
    Ok(replay.finish(&checkpoint.checkpoint))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::encode_leaf;
    use crate::envelope::sign;
    use crate::keys::generate_signing_key;
    use crate::merkle::MemoryTree;
    use crate::statement::encode;
    use ed25519_dalek::SigningKey;

    const T0: u64 = 1_700_000_000_000;

    fn statement(key: &SigningKey, body: proto::statement::Body) -> Vec<u8> {
        encode(&proto::Statement {
            issuer: key.verifying_key().to_bytes().to_vec(),
            issued_at_ms: T0,
            body: Some(body),
            ..Default::default()
        })
    }

    fn declaration(key: &SigningKey) -> proto::Envelope {
        let body = proto::statement::Body::ParticipantDeclaration(proto::ParticipantDeclaration {
            name: "Cooperativa".into(),
            roles: vec![proto::Role::Producer as i32],
            country: "HN".into(),
            ..Default::default()
        });
        sign(statement(key, body), &[key])
    }

    fn grams(amount: u64) -> Option<proto::Quantity> {
        Some(proto::Quantity {
            amount,
            unit: proto::Unit::Gram as i32,
        })
    }

    fn harvest(key: &SigningKey, lot_code: &str) -> proto::Envelope {
        let body = proto::statement::Body::Harvest(proto::Harvest {
            commodity: "coffee".into(),
            quantity: grams(1000),
            country: "HN".into(),
            farmgate_price: Some(proto::Price {
                currency: "USD".into(),
                minor_units: 450,
                per: grams(1000),
            }),
            lot_code: lot_code.into(),
            ..Default::default()
        });
        sign(statement(key, body), &[key])
    }

    fn transfer(
        key: &SigningKey,
        lot: &proto::Envelope,
        to: &SigningKey,
        amount: u64,
    ) -> proto::Envelope {
        let body = proto::statement::Body::Transfer(proto::Transfer {
            inputs: vec![proto::LotInput {
                lot: Some(proto::LotRef {
                    statement_id: StatementId::of_payload(&lot.payload).as_bytes().to_vec(),
                    output: 0,
                }),
                amount,
            }],
            recipient: to.verifying_key().to_bytes().to_vec(),
            document_reference: format!("invoice {amount}"),
            ..Default::default()
        });
        sign(statement(key, body), &[key])
    }

    fn leaves(envelopes: &[(proto::Envelope, u64)]) -> Vec<Vec<u8>> {
        envelopes
            .iter()
            .map(|(e, t)| encode_leaf(e.clone(), *t).unwrap())
            .collect()
    }

    fn replay(leaves: &[Vec<u8>]) -> Report {
        let mut tree = MemoryTree::new();
        for l in leaves {
            tree.push_leaf_hash(leaf_hash(l));
        }
        let checkpoint = Checkpoint {
            origin: "audit.test/log".into(),
            size: tree.len(),
            root: tree.root(),
            extensions: vec![],
        };
        let mut r = Replay::new();
        for (i, chunk) in leaves.chunks(3).enumerate() {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(j, l)| ((i * 3 + j) as u64, l.clone()))
                .collect();
            r.push(entries).unwrap();
        }
        r.finish(&checkpoint)
    }

    #[test]
    fn a_clean_log_has_no_findings() {
        let (a, b) = (generate_signing_key(), generate_signing_key());
        let h = harvest(&a, "one");
        let log = leaves(&[
            (declaration(&a), T0),
            (declaration(&b), T0),
            (h.clone(), T0 + 1),
            (transfer(&a, &h, &b, 600), T0 + 1),
            (transfer(&a, &h, &b, 400), T0 + 2),
        ]);
        let report = replay(&log);
        assert!(report.is_clean(), "{:?}", report.findings);
        assert_eq!((report.entries, report.signatures), (5, 5));
    }

    #[test]
    fn each_finding_names_its_entry() {
        let (a, b) = (generate_signing_key(), generate_signing_key());
        let h = harvest(&a, "one");
        let mut forged = harvest(&a, "two");
        forged.signatures[0].sig[40] ^= 1;
        let log = leaves(&[
            (declaration(&a), T0),
            (declaration(&b), T0),
            (h.clone(), T0 + 5),
            (transfer(&a, &h, &b, 600), T0 + 5),
            (transfer(&a, &h, &b, 500), T0 + 5),
            (forged, T0 + 6),
            (h.clone(), T0 + 7),
            (harvest(&b, "three"), T0 + 1),
        ]);
        let mut log = log;
        log.push(b"\x0a\x01".to_vec());
        let report = replay(&log);
        let found: Vec<(Option<u64>, Check, Option<&str>)> = report
            .findings
            .iter()
            .map(|f| (f.index, f.check, f.rule))
            .collect();
        assert_eq!(
            found,
            vec![
                (Some(4), Check::Rules, Some("lot_overdrawn")),
                (Some(5), Check::Signature, None),
                (Some(6), Check::Duplicate, None),
                (Some(7), Check::IntegrationTime, None),
                (Some(8), Check::Leaf, None),
            ],
            "{:#?}",
            report.findings
        );
    }

    #[test]
    fn a_wrong_root_or_a_rewritten_history_is_found() {
        let a = generate_signing_key();
        let log = leaves(&[(declaration(&a), T0), (harvest(&a, "x"), T0)]);
        let mut r = Replay::new();
        r.expect_root(1, [7; 32], "the checkpoint of size 1 seen before");
        r.expect_root(5, [7; 32], "the checkpoint of size 5 seen before");
        r.push(vec![(0, log[0].clone()), (1, log[1].clone())])
            .unwrap();
        let checkpoint = Checkpoint {
            origin: "audit.test/log".into(),
            size: 2,
            root: [9; 32],
            extensions: vec![],
        };
        let report = r.finish(&checkpoint);
        let checks: Vec<Check> = report.findings.iter().map(|f| f.check).collect();
        assert_eq!(
            checks,
            vec![Check::Consistency, Check::Tree, Check::Consistency],
            "{:#?}",
            report.findings
        );
    }

    #[test]
    fn entries_must_come_in_order() {
        let a = generate_signing_key();
        let log = leaves(&[(declaration(&a), T0)]);
        let mut r = Replay::new();
        assert!(matches!(
            r.push(vec![(1, log[0].clone())]),
            Err(AuditError::OutOfOrder {
                expected: 0,
                got: 1
            })
        ));
    }

    #[test]
    fn a_bad_key_is_found_each_time_it_appears() {
        use crate::verify::bad_keys as k;
        let a = generate_signing_key();
        let mut bad_r = harvest(&a, "bad-r");
        bad_r.signatures[0].sig[..32].copy_from_slice(&k::NOT_A_POINT);
        let mut off = sign(k::declaration_by(k::NOT_A_POINT, 1), &[&a]);
        off.signatures[0].public_key = k::NOT_A_POINT.to_vec();
        let mut off2 = sign(k::declaration_by(k::NOT_A_POINT, 2), &[&a]);
        off2.signatures[0].public_key = k::NOT_A_POINT.to_vec();
        let log = leaves(&[
            (declaration(&a), T0),
            (k::forged_by_weak_key(1), T0),
            (k::forged_by_weak_key(2), T0),
            (off, T0),
            (off2, T0),
            (sign(k::declaration_by(k::IDENTITY, 3), &[&a]), T0),
            (sign(k::declaration_by(k::IDENTITY, 4), &[&a]), T0),
            (harvest(&a, "ok"), T0),
            (bad_r, T0),
        ]);
        let report = replay(&log);
        let found: Vec<(Option<u64>, Check, String)> = report
            .findings
            .iter()
            .map(|f| (f.index, f.check, f.message.clone()))
            .collect();
        let checks: Vec<(Option<u64>, Check)> = found.iter().map(|(i, c, _)| (*i, *c)).collect();
        assert_eq!(
            checks,
            vec![
                (Some(1), Check::Envelope),
                (Some(2), Check::Envelope),
                (Some(3), Check::Envelope),
                (Some(4), Check::Envelope),
                (Some(5), Check::Statement),
                (Some(6), Check::Statement),
                (Some(8), Check::Signature),
            ],
            "{found:#?}"
        );
        assert!(
            found[6].2.contains("its R is not a curve point"),
            "{found:#?}"
        );
    }
}
