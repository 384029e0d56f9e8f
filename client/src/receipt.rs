//! Receipts: the node's answer to a submission, and their offline verification against the
//! log's public key alone. SPEC.md section "Receipt".

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

use crate::checkpoint::{Checkpoint, CheckpointError, SignedCheckpoint};
use crate::entry::{Leaf, LeafError};
use crate::envelope::{Envelope, EnvelopeError, StatementId};
use crate::keys::PublicKey;
use crate::merkle::{hash_from_bytes, verify_inclusion, Hash, ProofError};
use crate::note::NoteVerifier;
use crate::proto;
use crate::statement::{Statement, StatementError};

/// A receipt in its JSON form, as `fairtrail submit --json` prints it. Hashes and ids are
/// lower-case hex; the leaf is standard base64; the checkpoint is the signed note text.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct ReceiptJson {
    pub index: u64,
    pub statement_id: String,
    pub leaf_hash: String,
    pub leaf: String,
    pub checkpoint: String,
    pub inclusion_proof: Vec<String>,
    /// True when the statement was already in the log before this submission.
    #[serde(default)]
    pub existing: bool,
}

/// What is wrong with a receipt.
#[derive(Debug, thiserror::Error)]
pub enum ReceiptError {
    #[error("the receipt is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the receipt's {field} is not valid {encoding}")]
    Encoding {
        field: &'static str,
        encoding: &'static str,
    },
    #[error("the checkpoint does not verify with the log's key: {0}")]
    Checkpoint(#[source] CheckpointError),
    #[error("the leaf hash is not SHA-256(0x00 || leaf)")]
    LeafHashMismatch,
    #[error("the leaf: {0}")]
    Leaf(#[source] LeafError),
    #[error("the statement id is not BLAKE3 of the logged payload")]
    StatementIdMismatch,
    #[error("the logged envelope: {0}")]
    Envelope(#[source] EnvelopeError),
    #[error("the logged statement: {0}")]
    Statement(#[source] StatementError),
    #[error("the inclusion proof does not lead to the checkpoint's root: {0}")]
    Inclusion(#[source] ProofError),
}

/// A receipt every step of which has been checked.
#[derive(Clone, Debug)]
pub struct VerifiedReceipt {
    pub index: u64,
    pub statement_id: StatementId,
    pub issuer: PublicKey,
    pub kind: &'static str,
    pub integrated_at_ms: u64,
    pub checkpoint: Checkpoint,
}

impl From<&proto::EntryReceipt> for ReceiptJson {
    fn from(r: &proto::EntryReceipt) -> Self {
        ReceiptJson {
            index: r.index,
            statement_id: hex::encode(&r.statement_id),
            leaf_hash: hex::encode(&r.leaf_hash),
            leaf: B64.encode(&r.leaf),
            checkpoint: r.checkpoint.clone(),
            inclusion_proof: r.inclusion_proof.iter().map(hex::encode).collect(),
            existing: false,
        }
    }
}

fn hex_hash(field: &'static str, text: &str) -> Result<Hash, ReceiptError> {
    let bytes = hex::decode(text).map_err(|_| ReceiptError::Encoding {
        field,
        encoding: "hex",
    })?;
    hash_from_bytes(&bytes).map_err(|_| ReceiptError::Encoding {
        field,
        encoding: "32-byte hash",
    })
}

impl ReceiptJson {
    pub fn parse(text: &str) -> Result<Self, ReceiptError> {
        Ok(serde_json::from_str(text)?)
    }

    /// Checks the receipt with nothing but the log's verifier key, in the order SPEC.md gives:
    /// 1. the checkpoint is signed by the log's key (and names the log's origin);
    /// 2. the leaf hash is SHA-256(0x00 || leaf);
    /// 3. the leaf decodes, and the statement id is BLAKE3 of its envelope's payload;
    /// 4. the envelope's signatures verify and its issuer signed it;
    /// 5. the inclusion proof takes the leaf hash at the index to the checkpoint's root.
    pub fn verify(&self, log_key: &NoteVerifier) -> Result<VerifiedReceipt, ReceiptError> {
        let signed = SignedCheckpoint::verify(&self.checkpoint, log_key)
            .map_err(ReceiptError::Checkpoint)?;

        let leaf_bytes = B64
            .decode(self.leaf.as_bytes())
            .map_err(|_| ReceiptError::Encoding {
                field: "leaf",
                encoding: "base64",
            })?;
        let leaf = Leaf::decode(leaf_bytes).map_err(ReceiptError::Leaf)?;
        if leaf.hash != hex_hash("leaf_hash", &self.leaf_hash)? {
            return Err(ReceiptError::LeafHashMismatch);
        }

        let statement_id: StatementId =
            self.statement_id
                .parse()
                .map_err(|_| ReceiptError::Encoding {
                    field: "statement_id",
                    encoding: "hex",
                })?;
        if leaf.statement_id != statement_id {
            return Err(ReceiptError::StatementIdMismatch);
        }

        let envelope = Envelope::try_from(leaf.envelope.clone()).map_err(ReceiptError::Envelope)?;
        let statement = Statement::decode(&envelope).map_err(ReceiptError::Statement)?;
        envelope.verify().map_err(ReceiptError::Envelope)?;

        let proof = self
            .inclusion_proof
            .iter()
            .map(|h| hex_hash("inclusion_proof", h))
            .collect::<Result<Vec<_>, _>>()?;
        verify_inclusion(
            &leaf.hash,
            self.index,
            signed.checkpoint.size,
            &proof,
            &signed.checkpoint.root,
        )
        .map_err(ReceiptError::Inclusion)?;

        Ok(VerifiedReceipt {
            index: self.index,
            statement_id,
            issuer: statement.issuer,
            kind: statement.kind(),
            integrated_at_ms: leaf.integrated_at_ms,
            checkpoint: signed.checkpoint,
        })
    }
}
