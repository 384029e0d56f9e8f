//! The ledger rules: what each statement must satisfy to enter the log, and the state it
//! leaves behind (participants, keys, lots and their balances, certifications, products).
//! SPEC.md section "Ledger rules".
//!
//! The rules are a pure function of the log: the node runs them at sequencing time over its
//! sled state, and an auditor replays them over the whole log to prove the node did. They
//! read and write a key-value space ([`records`]) through [`StateRead`] and an [`Overlay`] of
//! pending writes, so a rejected statement leaves no trace.

mod bodies;
pub mod records;

use std::collections::BTreeMap;

use crate::envelope::Envelope;
use crate::keys::PublicKey;
use crate::statement::Statement;

pub use records::LotId;
use records::{key, prefix, KeyRecord};

/// How far a statement's claimed `issued_at` may run ahead of the log's clock.
pub const MAX_FUTURE_SKEW_MS: u64 = 10 * 60 * 1000;
/// The most inputs or outputs one statement may have.
pub const MAX_LOTS_PER_STATEMENT: usize = 64;
/// The most guardians a participant may name.
pub const MAX_GUARDIANS: usize = 16;
/// Longest free text (names, reasons, remarks), in bytes.
pub const MAX_TEXT: usize = 1000;

/// Reading the state the rules keep.
pub trait StateRead {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError>;
}

/// The state store failed: not the submitter's fault.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("state store: {0}")]
pub struct StateError(pub String);

impl StateRead for BTreeMap<Vec<u8>, Vec<u8>> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        Ok(BTreeMap::get(self, key).cloned())
    }
}

/// Pending writes over a base state. Reads see the writes first.
pub struct Overlay<'a> {
    base: &'a dyn StateRead,
    writes: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl<'a> Overlay<'a> {
    pub fn new(base: &'a dyn StateRead) -> Self {
        Overlay {
            base,
            writes: BTreeMap::new(),
        }
    }

    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.writes.insert(key, value);
    }

    pub fn writes(&self) -> &BTreeMap<Vec<u8>, Vec<u8>> {
        &self.writes
    }

    pub fn into_writes(self) -> BTreeMap<Vec<u8>, Vec<u8>> {
        self.writes
    }

    pub fn extend(&mut self, writes: BTreeMap<Vec<u8>, Vec<u8>>) {
        self.writes.extend(writes);
    }
}

impl StateRead for Overlay<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        match self.writes.get(key) {
            Some(v) => Ok(Some(v.clone())),
            None => self.base.get(key),
        }
    }
}

/// Why a statement may not enter the log. Every variant but `State` is the submitter's fault:
/// `Invalid` means the statement itself is malformed (INVALID_ARGUMENT); the others mean it
/// is well-formed but the log's state forbids it (FAILED_PRECONDITION).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum RuleError {
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error("key {key} has not declared itself; submit a participant declaration first")]
    UndeclaredKey { key: PublicKey },
    #[error("key {key} was rotated away at entry {at}; sign with the participant's current key")]
    RetiredKey { key: PublicKey, at: u64 },
    #[error("key {key} is already in use (declared or rotated to at entry {at})")]
    KeyInUse { key: PublicKey, at: u64 },
    #[error("{what} {id} is not in the log")]
    Unknown { what: &'static str, id: String },
    #[error("lot {lot} is held by {holder}, not by {issuer}; only the holder may use it")]
    NotHolder {
        lot: LotId,
        holder: PublicKey,
        issuer: PublicKey,
    },
    #[error("lot {lot} has {left} left, {asked} asked")]
    LotOverdrawn {
        lot: LotId,
        left: String,
        asked: String,
    },
    #[error("{who} ({key}) must sign this statement")]
    MissingSignature { who: String, key: PublicKey },
    #[error("{what}: {have} distinct signatures of {among}, {need} needed")]
    QuorumNotMet {
        what: String,
        among: String,
        have: usize,
        need: usize,
    },
    #[error("{key} has not declared the role {role} that this statement needs")]
    MissingRole { key: PublicKey, role: &'static str },
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    State(#[from] StateError),
}

impl RuleError {
    /// True when the statement itself is malformed, rather than at odds with the log's state.
    pub fn is_invalid_argument(&self) -> bool {
        matches!(self, RuleError::Invalid { .. })
    }

    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        RuleError::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Where a statement lands in the log.
#[derive(Clone, Copy, Debug)]
pub struct Position {
    pub index: u64,
    pub integrated_at_ms: u64,
}

/// Checks `statement` (from `envelope`, whose signatures are verified) against the state and,
/// if it may enter the log at `at`, records its effects in `state`. On error `state` is
/// unchanged.
pub fn apply(
    state: &mut Overlay<'_>,
    envelope: &Envelope,
    statement: &Statement,
    at: Position,
) -> Result<(), RuleError> {
    let writes = effects(state, envelope, statement, at)?;
    state.extend(writes);
    Ok(())
}

/// What [`apply`] would record in `state`, without recording it: the caller may still decide
/// against the statement (the node does when its disk is short).
pub fn effects(
    state: &Overlay<'_>,
    envelope: &Envelope,
    statement: &Statement,
    at: Position,
) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, RuleError> {
    let mut tx = Overlay::new(state);
    bodies::apply(&mut tx, envelope, statement, at)?;
    tx.put(
        key(prefix::STATEMENT, &[statement.id.as_bytes()]),
        at.index.to_be_bytes().to_vec(),
    );
    Ok(tx.into_writes())
}

pub(crate) fn get_json<T: serde::de::DeserializeOwned>(
    state: &dyn StateRead,
    key: &[u8],
) -> Result<Option<T>, RuleError> {
    match state.get(key)? {
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| RuleError::State(StateError(format!("malformed record: {e}")))),
        None => Ok(None),
    }
}

/// Reads a record of the ledger state (see [`records`]).
pub fn get_record<T: serde::de::DeserializeOwned>(
    state: &dyn StateRead,
    key: &[u8],
) -> Result<Option<T>, RuleError> {
    get_json(state, key)
}

pub(crate) fn put_json<T: serde::Serialize>(state: &mut Overlay<'_>, key: Vec<u8>, value: &T) {
    // Serialising these plain records cannot fail.
    let mut bytes = Vec::with_capacity(256);
    if serde_json::to_writer(&mut bytes, value).is_err() {
        bytes.clear();
    }
    state.put(key, bytes);
}

/// The identity a key speaks for, and whether it may still sign.
pub fn key_record(state: &dyn StateRead, key: &PublicKey) -> Result<Option<KeyRecord>, RuleError> {
    get_json(state, &records::key(prefix::KEY, &[key.as_bytes()]))
}

/// The index of the entry holding a statement, if logged.
pub fn statement_index(
    state: &dyn StateRead,
    id: &crate::envelope::StatementId,
) -> Result<Option<u64>, RuleError> {
    match state.get(&key(prefix::STATEMENT, &[id.as_bytes()]))? {
        Some(v) => {
            let b: [u8; 8] = v
                .as_slice()
                .try_into()
                .map_err(|_| RuleError::State(StateError("malformed statement index".into())))?;
            Ok(Some(u64::from_be_bytes(b)))
        }
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests;
