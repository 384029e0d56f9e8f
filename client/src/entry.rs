//! Log entries: the leaf bytes the Merkle tree commits to (an encoded `LogEntry`: the
//! envelope and the time the log integrated it). SPEC.md section "Leaf".

use prost::Message;

use crate::envelope::StatementId;
use crate::merkle::{leaf_hash, Hash};
use crate::proto;

/// The largest leaf: tlog-tiles entry bundles prefix each entry with a 16-bit length.
pub const MAX_LEAF_LEN: usize = u16::MAX as usize;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LeafError {
    #[error("the leaf is not an encoded fairtrail.v1.LogEntry: {0}")]
    Decode(String),
    #[error("the leaf has no envelope")]
    MissingEnvelope,
    #[error("the leaf has {len} bytes; a leaf may have at most {MAX_LEAF_LEN}")]
    TooLarge { len: usize },
}

/// Encodes the leaf for an envelope integrated at `integrated_at_ms`.
pub fn encode_leaf(envelope: proto::Envelope, integrated_at_ms: u64) -> Result<Vec<u8>, LeafError> {
    let leaf = proto::LogEntry {
        envelope: Some(envelope),
        integrated_at_ms,
    }
    .encode_to_vec();
    if leaf.len() > MAX_LEAF_LEN {
        return Err(LeafError::TooLarge { len: leaf.len() });
    }
    Ok(leaf)
}

/// A leaf read back from the log: its bytes, hash and decoded contents.
#[derive(Clone, Debug)]
pub struct Leaf {
    pub bytes: Vec<u8>,
    pub hash: Hash,
    pub envelope: proto::Envelope,
    pub integrated_at_ms: u64,
    pub statement_id: StatementId,
}

impl Leaf {
    pub fn decode(bytes: Vec<u8>) -> Result<Self, LeafError> {
        if bytes.len() > MAX_LEAF_LEN {
            return Err(LeafError::TooLarge { len: bytes.len() });
        }
        let entry = proto::LogEntry::decode(bytes.as_slice())
            .map_err(|e| LeafError::Decode(e.to_string()))?;
        let envelope = entry.envelope.ok_or(LeafError::MissingEnvelope)?;
        let statement_id = StatementId::of_payload(&envelope.payload);
        Ok(Leaf {
            hash: leaf_hash(&bytes),
            bytes,
            envelope,
            integrated_at_ms: entry.integrated_at_ms,
            statement_id,
        })
    }
}
