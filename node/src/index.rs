//! What is derived from the log, kept in sled: the ledger state of the rules (participants,
//! keys, lots and balances, certifications, products, and the indexes by participant, lot,
//! product, certification subject, revocation, receipt and dispute), leaf hash -> index, and
//! how far the log has been applied. SPEC.md sections "Storage" and "Ledger state".
//!
//! # Contract
//! - Never ahead of the log: the sequencer applies a batch only after the log made it durable,
//!   and each batch is one atomic sled batch together with the new `applied` mark.
//! - Not durable on its own (sled flushes in the background): after a crash the index may
//!   lag the log, and [`Index::applied`] says from where to replay. Replaying is idempotent.
//! - Safe to read concurrently with the single writer.

use std::path::Path;

use std::collections::BTreeMap;

use fairtrail_client::envelope::StatementId;
use fairtrail_client::merkle::Hash;
use fairtrail_client::rules::{records::prefix, StateError, StateRead};

const APPLIED_KEY: &[u8] = b"m/applied";
const ID_PREFIX: u8 = prefix::STATEMENT;
const LEAF_PREFIX: u8 = b'h';

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("index database: {0}")]
    Sled(#[from] sled::Error),
    #[error("index database holds a malformed value under {key}")]
    Malformed { key: String },
}

/// The derived indexes. Cheap to clone: sled trees are shared handles.
#[derive(Clone)]
pub struct Index {
    db: sled::Db,
    tree: sled::Tree,
}

fn key(prefix: u8, bytes: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + bytes.len());
    k.push(prefix);
    k.extend_from_slice(bytes);
    k
}

fn decode_u64(value: &[u8], what: &str) -> Result<u64, IndexError> {
    let bytes: [u8; 8] = value.try_into().map_err(|_| IndexError::Malformed {
        key: what.to_owned(),
    })?;
    Ok(u64::from_be_bytes(bytes))
}

impl Index {
    pub fn open(path: &Path) -> Result<Self, IndexError> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(64 * 1024 * 1024)
            .open()?;
        let tree = db.open_tree("index")?;
        Ok(Index { db, tree })
    }

    /// How many log entries the index reflects.
    pub fn applied(&self) -> Result<u64, IndexError> {
        match self.tree.get(APPLIED_KEY)? {
            Some(v) => decode_u64(&v, "applied"),
            None => Ok(0),
        }
    }

    pub fn index_of_statement(&self, id: &StatementId) -> Result<Option<u64>, IndexError> {
        self.tree
            .get(key(ID_PREFIX, id.as_bytes()))?
            .map(|v| decode_u64(&v, "statement id"))
            .transpose()
    }

    pub fn index_of_leaf(&self, leaf_hash: &Hash) -> Result<Option<u64>, IndexError> {
        self.tree
            .get(key(LEAF_PREFIX, leaf_hash))?
            .map(|v| decode_u64(&v, "leaf hash"))
            .transpose()
    }

    /// Records the rules' `writes` and the `leaves` (leaf hash, index) of new entries, and
    /// moves the applied mark to `applied`, all in one atomic batch.
    pub fn apply(
        &self,
        writes: BTreeMap<Vec<u8>, Vec<u8>>,
        leaves: &[(Hash, u64)],
        applied: u64,
    ) -> Result<(), IndexError> {
        let mut batch = sled::Batch::default();
        for (k, v) in writes {
            batch.insert(k, v);
        }
        for (hash, index) in leaves {
            batch.insert(key(LEAF_PREFIX, hash), &index.to_be_bytes());
        }
        batch.insert(APPLIED_KEY, &applied.to_be_bytes());
        self.tree.apply_batch(batch)?;
        Ok(())
    }

    /// The entry indexes listed under `prefix` (keys ending with an 8-byte big-endian index).
    pub fn list(&self, prefix: &[u8]) -> Result<Vec<u64>, IndexError> {
        let mut out = Vec::new();
        for item in self.tree.scan_prefix(prefix).keys() {
            let k = item?;
            let tail = k.get(k.len().saturating_sub(8)..).unwrap_or(&[]);
            out.push(decode_u64(tail, "list index")?);
        }
        Ok(out)
    }

    /// Forgets everything: used when the index is found ahead of the log.
    pub fn clear(&self) -> Result<(), IndexError> {
        self.tree.clear()?;
        Ok(())
    }

    /// Writes the index to disk now (it also does so in the background).
    pub fn flush(&self) -> Result<(), IndexError> {
        self.db.flush()?;
        Ok(())
    }
}

impl StateRead for Index {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        self.tree
            .get(key)
            .map(|v| v.map(|v| v.to_vec()))
            .map_err(|e| StateError(e.to_string()))
    }
}
