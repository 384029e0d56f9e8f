//! Provenance bundles: everything needed to verify a product, a lot or a participant offline,
//! given only the log's public key. SPEC.md section "Provenance bundle".
//!
//! A bundle is a subject, one signed checkpoint and log entries, each with its inclusion
//! proof at the checkpoint's tree size. [`Bundle`] is the wire form
//! (`fairtrail.v1.ProvenanceBundle`) with its shape checked; nothing in it is trusted until
//! [`crate::verify::verify_bundle`] has checked the checkpoint, the proofs and the signatures.
//!
//! # File form
//!
//! `fairtrail bundle` writes, and `fairtrail verify --bundle` reads, this JSON (UTF-8, one
//! object):
//!
//! ```json
//! {
//!   "format": "fairtrail-bundle/v1",
//!   "subject": { "product": { "gtin": "09506000134352", "batch": "R2024-118", "serial": "0042" } },
//!   "checkpoint": "fairtrail.example/log\n42\nq0d7...base64 root...=\n\n\u2014 fairtrail.example/log AbCd...base64...\n",
//!   "entries": [
//!     { "index": 3, "leaf": "CqgBCh...base64...", "inclusion_proof": ["5f1c...64 hex digits...", "..."] }
//!   ]
//! }
//! ```
//!
//! - `format` is always `"fairtrail-bundle/v1"`; any other value is refused.
//! - `subject` is exactly one of `{"product": {"gtin", "batch", "serial"?}}` (GTIN-14 digits;
//!   `serial` left out when there is none), `{"lot": "<statement id hex>:<output>"}` or
//!   `{"participant": "ed25519:<64 hex digits>"}`.
//! - `checkpoint` is the C2SP signed note, byte for byte as the log signed it.
//! - `entries` are in strictly increasing `index` order; `leaf` is the standard (padded)
//!   base64 of the leaf bytes (an encoded `fairtrail.v1.LogEntry`); `inclusion_proof` lists
//!   the RFC 9162 audit path, leaf to root, each hash as 64 lower-case hex digits.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::entry::MAX_LEAF_LEN;
use crate::gs1::{Gs1Error, ProductId};
use crate::keys::{PublicKey, PublicKeyError};
use crate::merkle::{hash_from_bytes, Hash};
use crate::proto;
use crate::rules::LotId;

/// The `format` of the JSON file form.
pub const FORMAT: &str = "fairtrail-bundle/v1";
/// An inclusion proof in a tree of at most 2^64 leaves has at most 64 hashes.
pub const MAX_PROOF_LEN: usize = 64;
/// More entries than any node puts in one bundle.
pub const MAX_ENTRIES: usize = 1_000_000;

/// What a bundle is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subject {
    /// A trade item: GTIN and batch, optionally a serial.
    Product(ProductId),
    /// One lot and its upstream chain.
    Lot(LotId),
    /// A participant: declaration, keys, certifications.
    Participant(PublicKey),
}

/// One log entry of a bundle, with its claimed inclusion proof.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BundleEntry {
    pub index: u64,
    /// The leaf bytes (an encoded `LogEntry`), exactly as the log hashed them.
    pub leaf: Vec<u8>,
    pub inclusion_proof: Vec<Hash>,
}

/// A provenance bundle whose shape has been checked: a subject, a checkpoint note, and entries
/// in strictly increasing index order whose hashes are all 32 bytes. Nothing is verified yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bundle {
    pub subject: Subject,
    /// The C2SP signed note of the checkpoint every proof is against (not yet verified).
    pub checkpoint: String,
    pub entries: Vec<BundleEntry>,
}

/// What is wrong with a bundle's shape.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("not a Fairtrail bundle file: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the bundle's format is {found:?}; this client reads {FORMAT:?}")]
    UnknownFormat { found: String },
    #[error("the bundle names no subject (a product, a lot or a participant)")]
    MissingSubject,
    #[error("the bundle's product: {0}")]
    BadProduct(#[source] Gs1Error),
    #[error("the bundle's lot: {0}")]
    BadLot(String),
    #[error("the bundle's participant: {0}")]
    BadParticipant(#[source] PublicKeyError),
    #[error("the bundle has no checkpoint")]
    MissingCheckpoint,
    #[error("the bundle has {count} entries; at most {MAX_ENTRIES} are accepted")]
    TooManyEntries { count: usize },
    #[error("entry {index} follows entry {previous}: entries must be in strictly increasing index order, each once")]
    OutOfOrder { index: u64, previous: u64 },
    #[error("entry {index} has an empty leaf")]
    EmptyLeaf { index: u64 },
    #[error("entry {index}: the leaf has {len} bytes; a leaf has at most {MAX_LEAF_LEN}")]
    LeafTooLarge { index: u64, len: usize },
    #[error("entry {index}: the leaf is not standard base64")]
    LeafEncoding { index: u64 },
    #[error(
        "entry {index}: the inclusion proof has {len} hashes; at most {MAX_PROOF_LEN} are possible"
    )]
    ProofTooLong { index: u64, len: usize },
    #[error("entry {index}: inclusion proof hash {position} is not 32 bytes (64 hex digits)")]
    BadProofHash { index: u64, position: usize },
}

impl TryFrom<proto::ProvenanceBundle> for Bundle {
    type Error = BundleError;

    fn try_from(wire: proto::ProvenanceBundle) -> Result<Self, Self::Error> {
        use proto::provenance_bundle::Subject as S;
        let subject = match wire.subject.ok_or(BundleError::MissingSubject)? {
            S::Product(p) => Subject::Product(product(&p.gtin, &p.batch, &p.serial)?),
            S::Lot(l) => {
                Subject::Lot(LotId::try_from(&l).map_err(|e| BundleError::BadLot(e.to_string()))?)
            }
            S::Participant(k) => Subject::Participant(
                PublicKey::from_bytes(&k).map_err(BundleError::BadParticipant)?,
            ),
        };
        let entries = wire
            .entries
            .into_iter()
            .map(|e| {
                let proof = e
                    .inclusion_proof
                    .iter()
                    .enumerate()
                    .map(|(position, h)| {
                        hash_from_bytes(h).map_err(|_| BundleError::BadProofHash {
                            index: e.index,
                            position,
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(BundleEntry {
                    index: e.index,
                    leaf: e.leaf,
                    inclusion_proof: proof,
                })
            })
            .collect::<Result<Vec<_>, BundleError>>()?;
        Bundle::new(subject, wire.checkpoint, entries)
    }
}

fn product(gtin: &str, batch: &str, serial: &str) -> Result<ProductId, BundleError> {
    let serial = (!serial.is_empty()).then_some(serial);
    ProductId::new(gtin, batch, serial).map_err(BundleError::BadProduct)
}

impl Bundle {
    /// Checks the shape of a bundle: a checkpoint, entries in strictly increasing index order,
    /// leaves of a possible size, proofs of a possible length.
    pub fn new(
        subject: Subject,
        checkpoint: String,
        entries: Vec<BundleEntry>,
    ) -> Result<Self, BundleError> {
        if checkpoint.is_empty() {
            return Err(BundleError::MissingCheckpoint);
        }
        if entries.len() > MAX_ENTRIES {
            return Err(BundleError::TooManyEntries {
                count: entries.len(),
            });
        }
        let mut previous: Option<u64> = None;
        for e in &entries {
            if let Some(previous) = previous.filter(|p| *p >= e.index) {
                return Err(BundleError::OutOfOrder {
                    index: e.index,
                    previous,
                });
            }
            previous = Some(e.index);
            if e.leaf.is_empty() {
                return Err(BundleError::EmptyLeaf { index: e.index });
            }
            if e.leaf.len() > MAX_LEAF_LEN {
                return Err(BundleError::LeafTooLarge {
                    index: e.index,
                    len: e.leaf.len(),
                });
            }
            if e.inclusion_proof.len() > MAX_PROOF_LEN {
                return Err(BundleError::ProofTooLong {
                    index: e.index,
                    len: e.inclusion_proof.len(),
                });
            }
        }
        Ok(Bundle {
            subject,
            checkpoint,
            entries,
        })
    }

    /// The wire form, for sending a bundle on.
    pub fn to_proto(&self) -> proto::ProvenanceBundle {
        use proto::provenance_bundle::Subject as S;
        let subject = match &self.subject {
            Subject::Product(p) => S::Product(proto::ProductKey {
                gtin: p.gtin.clone(),
                batch: p.batch.clone(),
                serial: p.serial.clone().unwrap_or_default(),
            }),
            Subject::Lot(l) => S::Lot(l.to_proto()),
            Subject::Participant(k) => S::Participant(k.as_bytes().to_vec()),
        };
        proto::ProvenanceBundle {
            subject: Some(subject),
            checkpoint: self.checkpoint.clone(),
            entries: self
                .entries
                .iter()
                .map(|e| proto::BundleEntry {
                    index: e.index,
                    leaf: e.leaf.clone(),
                    inclusion_proof: e.inclusion_proof.iter().map(|h| h.to_vec()).collect(),
                })
                .collect(),
        }
    }

    /// Parses the JSON file form (see the module documentation) and checks its shape.
    pub fn from_json(text: &str) -> Result<Self, BundleError> {
        let file: BundleJson = serde_json::from_str(text)?;
        if file.format != FORMAT {
            let found = file.format.chars().take(80).collect();
            return Err(BundleError::UnknownFormat { found });
        }
        let subject = match file.subject {
            SubjectJson::Product {
                gtin,
                batch,
                serial,
            } => Subject::Product(product(&gtin, &batch, serial.as_deref().unwrap_or(""))?),
            SubjectJson::Lot(text) => Subject::Lot(text.parse().map_err(BundleError::BadLot)?),
            SubjectJson::Participant(text) => {
                Subject::Participant(text.parse().map_err(BundleError::BadParticipant)?)
            }
        };
        let entries = file
            .entries
            .into_iter()
            .map(|e| {
                let leaf = B64
                    .decode(e.leaf.as_bytes())
                    .map_err(|_| BundleError::LeafEncoding { index: e.index })?;
                let inclusion_proof = e
                    .inclusion_proof
                    .iter()
                    .enumerate()
                    .map(|(position, h)| {
                        let mut hash = [0u8; 32];
                        hex::decode_to_slice(h, &mut hash)
                            .map(|()| hash)
                            .map_err(|_| BundleError::BadProofHash {
                                index: e.index,
                                position,
                            })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(BundleEntry {
                    index: e.index,
                    leaf,
                    inclusion_proof,
                })
            })
            .collect::<Result<Vec<_>, BundleError>>()?;
        Bundle::new(subject, file.checkpoint, entries)
    }

    /// The JSON file form, pretty-printed, ending in a newline.
    pub fn to_json(&self) -> String {
        let subject = match &self.subject {
            Subject::Product(p) => SubjectJson::Product {
                gtin: p.gtin.clone(),
                batch: p.batch.clone(),
                serial: p.serial.clone(),
            },
            Subject::Lot(l) => SubjectJson::Lot(l.to_string()),
            Subject::Participant(k) => SubjectJson::Participant(k.to_string()),
        };
        let file = BundleJson {
            format: FORMAT.to_owned(),
            subject,
            checkpoint: self.checkpoint.clone(),
            entries: self
                .entries
                .iter()
                .map(|e| EntryJson {
                    index: e.index,
                    leaf: B64.encode(&e.leaf),
                    inclusion_proof: e.inclusion_proof.iter().map(hex::encode).collect(),
                })
                .collect(),
        };
        // Plain strings and numbers always serialise.
        let mut text = serde_json::to_string_pretty(&file).unwrap_or_default();
        text.push('\n');
        text
    }
}

impl std::fmt::Display for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Subject::Product(p) => {
                write!(f, "GTIN {} batch {}", p.gtin, p.batch)?;
                if let Some(s) = &p.serial {
                    write!(f, " serial {s}")?;
                }
                Ok(())
            }
            Subject::Lot(l) => write!(f, "lot {l}"),
            Subject::Participant(k) => write!(f, "participant {k}"),
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BundleJson {
    format: String,
    subject: SubjectJson,
    checkpoint: String,
    entries: Vec<EntryJson>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum SubjectJson {
    Product {
        gtin: String,
        batch: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        serial: Option<String>,
    },
    Lot(String),
    Participant(String),
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryJson {
    index: u64,
    leaf: String,
    inclusion_proof: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Bundle {
        Bundle::new(
            Subject::Product(ProductId::new("09506000134352", "R2024-118", None).unwrap()),
            "log\n2\nAAAA\n\n\u{2014} log AAAA\n".to_owned(),
            vec![
                BundleEntry {
                    index: 0,
                    leaf: vec![1, 2, 3],
                    inclusion_proof: vec![[7u8; 32]],
                },
                BundleEntry {
                    index: 5,
                    leaf: vec![4],
                    inclusion_proof: vec![],
                },
            ],
        )
        .unwrap()
    }

    #[test]
    fn json_round_trips_for_every_subject() {
        let mut bundle = sample();
        for subject in [
            bundle.subject.clone(),
            Subject::Product(ProductId::new("9506000134352", "B", Some("S/1")).unwrap()),
            Subject::Lot(format!("{}:2", "ab".repeat(32)).parse().unwrap()),
            Subject::Participant(format!("ed25519:{}", "cd".repeat(32)).parse().unwrap()),
        ] {
            bundle.subject = subject;
            let text = bundle.to_json();
            assert_eq!(Bundle::from_json(&text).unwrap(), bundle, "{text}");
            assert_eq!(Bundle::try_from(bundle.to_proto()).unwrap(), bundle);
        }
    }

    #[test]
    fn the_json_shape_is_the_documented_one() {
        let value: serde_json::Value = serde_json::from_str(&sample().to_json()).unwrap();
        assert_eq!(value["format"], FORMAT);
        assert_eq!(value["subject"]["product"]["gtin"], "09506000134352");
        assert!(value["subject"]["product"].get("serial").is_none());
        assert_eq!(value["entries"][0]["index"], 0);
        assert_eq!(value["entries"][0]["leaf"], "AQID");
        assert_eq!(value["entries"][0]["inclusion_proof"][0], "07".repeat(32));
    }

    #[test]
    fn malformed_files_are_refused_precisely() {
        let good = sample().to_json();
        let cases: Vec<(String, &str)> = vec![
            (good.replace(FORMAT, "fairtrail-bundle/v9"), "format"),
            (good.replace("\"AQID\"", "\"AQID!\""), "base64"),
            (good.replace(&"07".repeat(32), &"07".repeat(31)), "32 bytes"),
            (good.replace("\"index\": 5", "\"index\": 0"), "increasing"),
            (
                good.replace("09506000134352", "09506000134353"),
                "check digit",
            ),
            (good.replace("\"format\"", "\"formats\""), "unknown field"),
            ("{}".to_owned(), "missing field"),
        ];
        for (text, expected) in cases {
            let err = Bundle::from_json(&text).unwrap_err().to_string();
            assert!(err.contains(expected), "{expected:?} not in {err:?}");
        }
    }

    #[test]
    fn malformed_wire_bundles_are_refused() {
        let mut wire = sample().to_proto();
        wire.subject = None;
        assert!(matches!(
            Bundle::try_from(wire),
            Err(BundleError::MissingSubject)
        ));
        let mut wire = sample().to_proto();
        wire.entries[0].inclusion_proof[0].pop();
        assert!(matches!(
            Bundle::try_from(wire),
            Err(BundleError::BadProofHash {
                index: 0,
                position: 0
            })
        ));
        let mut wire = sample().to_proto();
        wire.entries[1].leaf.clear();
        assert!(matches!(
            Bundle::try_from(wire),
            Err(BundleError::EmptyLeaf { index: 5 })
        ));
        let mut wire = sample().to_proto();
        wire.checkpoint.clear();
        assert!(matches!(
            Bundle::try_from(wire),
            Err(BundleError::MissingCheckpoint)
        ));
        let mut wire = sample().to_proto();
        wire.entries[1].index = 0;
        assert!(matches!(
            Bundle::try_from(wire),
            Err(BundleError::OutOfOrder {
                index: 0,
                previous: 0
            })
        ));
        let mut wire = sample().to_proto();
        wire.entries[0].inclusion_proof = vec![vec![0; 32]; MAX_PROOF_LEN + 1];
        assert!(matches!(
            Bundle::try_from(wire),
            Err(BundleError::ProofTooLong { index: 0, .. })
        ));
        let mut wire = sample().to_proto();
        wire.subject = Some(proto::provenance_bundle::Subject::Participant(vec![1; 31]));
        assert!(matches!(
            Bundle::try_from(wire),
            Err(BundleError::BadParticipant(_))
        ));
    }
}
