//! The ledger state the rules keep: keys of the key-value space and the records under them.
//! SPEC.md section "Ledger state". Every record is derived from the log alone.

use serde::{Deserialize, Serialize};

use crate::envelope::StatementId;
use crate::keys::PublicKey;
use crate::proto;

/// A lot: an output of a statement. Text form `<statement id hex>:<output>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LotId {
    pub statement: StatementId,
    pub output: u32,
}

impl LotId {
    pub fn bytes(&self) -> [u8; 36] {
        let mut b = [0u8; 36];
        b[..32].copy_from_slice(self.statement.as_bytes());
        b[32..].copy_from_slice(&self.output.to_be_bytes());
        b
    }

    pub fn to_proto(&self) -> proto::LotRef {
        proto::LotRef {
            statement_id: self.statement.as_bytes().to_vec(),
            output: self.output,
        }
    }
}

impl TryFrom<&proto::LotRef> for LotId {
    type Error = crate::envelope::StatementIdError;
    fn try_from(r: &proto::LotRef) -> Result<Self, Self::Error> {
        Ok(LotId {
            statement: StatementId::from_bytes(&r.statement_id)?,
            output: r.output,
        })
    }
}

impl std::fmt::Display for LotId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.statement, self.output)
    }
}

impl std::str::FromStr for LotId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (id, output) = match s.trim().split_once(':') {
            Some((id, o)) => (
                id,
                o.parse::<u32>()
                    .map_err(|_| format!("lot {s:?}: the output after ':' must be a number"))?,
            ),
            None => (s.trim(), 0),
        };
        let statement = id.parse().map_err(|_| {
            format!(
                "lot {s:?} must be a statement id (64 hex digits), optionally followed by :OUTPUT"
            )
        })?;
        Ok(LotId { statement, output })
    }
}

/// Key prefixes. One byte each; the rest of the key is fixed-width binary so that prefix
/// scans list one thing's entries in log order.
pub mod prefix {
    /// `i` + statement id -> entry index (8 bytes BE).
    pub const STATEMENT: u8 = b'i';
    /// `K` + public key -> [`super::KeyRecord`].
    pub const KEY: u8 = b'K';
    /// `I` + identity (its first key) -> [`super::IdentityRecord`].
    pub const IDENTITY: u8 = b'I';
    /// `L` + lot (36 bytes) -> [`super::LotRecord`].
    pub const LOT: u8 = b'L';
    /// `T` + transfer id -> [`super::TransferRecord`].
    pub const TRANSFER: u8 = b'T';
    /// `C` + certification id -> [`super::CertificationRecord`].
    pub const CERTIFICATION: u8 = b'C';
    /// `G` + GTIN-14 + batch + 0x00 + serial -> entry index of the binding.
    pub const PRODUCT: u8 = b'G';
    /// `P` + identity + index -> empty: entries by or about a participant.
    pub const BY_PARTICIPANT: u8 = b'P';
    /// `S` + subject identity + index -> empty: certifications of a participant.
    pub const BY_SUBJECT: u8 = b'S';
    /// `R` + certification id + index -> empty: revocations of a certification.
    pub const BY_CERTIFICATION: u8 = b'R';
    /// `U` + lot + index -> empty: statements that consumed a lot.
    pub const BY_LOT: u8 = b'U';
    /// `Q` + transfer id + index -> empty: receipts of a transfer.
    pub const BY_TRANSFER: u8 = b'Q';
    /// `D` + statement id + index -> empty: disputes of an entry.
    pub const BY_DISPUTED: u8 = b'D';
    /// `Y` + identity + index -> empty: key rotations of a participant.
    pub const KEY_HISTORY: u8 = b'Y';
}

pub fn key(prefix: u8, parts: &[&[u8]]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + parts.iter().map(|p| p.len()).sum::<usize>());
    k.push(prefix);
    for p in parts {
        k.extend_from_slice(p);
    }
    k
}

/// The product key of a binding.
pub fn product_key(gtin: &str, batch: &str, serial: &str) -> Vec<u8> {
    key(
        prefix::PRODUCT,
        &[gtin.as_bytes(), batch.as_bytes(), &[0], serial.as_bytes()],
    )
}

/// A key someone has signed with.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct KeyRecord {
    /// The identity the key speaks for: the key that declared it.
    pub identity: PublicKey,
    /// The entry that declared this key or rotated the identity to it.
    #[serde(default)]
    pub since: u64,
    /// The entry that rotated this key away, after which it may not sign.
    pub retired_at: Option<u64>,
}

/// A declared participant.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct IdentityRecord {
    pub name: String,
    pub declared_at: u64,
    pub current_key: PublicKey,
    pub roles: Vec<i32>,
    pub organisation_type: i32,
    pub guardians: Vec<PublicKey>,
    pub guardian_threshold: u32,
}

/// A lot and what is left of it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LotRecord {
    pub holder: PublicKey,
    pub commodity: String,
    pub unit: i32,
    pub quantity: u64,
    pub remaining: u64,
    pub created_at: u64,
}

/// A transfer, to check its receipt.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TransferRecord {
    pub recipient: PublicKey,
    pub amount: u64,
    pub unit: i32,
    pub receipt_at: Option<u64>,
}

/// The standing of a certification.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum CertificationStatus {
    Active,
    Suspended,
    Revoked,
}

/// A certification, to check revocations.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct CertificationRecord {
    /// The certifier's identity (a third-party certification), or the PGS network's.
    pub issuer: PublicKey,
    pub participatory: bool,
    pub subject: PublicKey,
    pub status: CertificationStatus,
}
