//! Fairtrail client library: everything needed to make, sign and check Fairtrail statements
//! without trusting a node.
//!
//! # Layout
//! - [`keys`]: the text form of public keys; PKCS#8 PEM key files (0600).
//! - [`envelope`]: DSSE envelopes: PAE, signing, single and batch verification, statement ids.
//! - [`statement`]: decoding and encoding statements.
//! - [`rules`]: what each statement must satisfy to enter the log, and the state it leaves.
//! - [`units`], [`gs1`]: quantities and money; GTINs and GS1 Digital Link.
//! - [`entry`]: the log's leaves (`LogEntry`).
//! - [`merkle`]: RFC 9162 hashing, proofs and their verification.
//! - [`note`], [`checkpoint`]: C2SP signed notes and tlog checkpoints.
//! - [`receipt`]: receipts and their offline verification.
//! - [`rpc`]: a thin gRPC client returning checked types.
//! - [`proto`]: the generated wire types; [`codec`]: their gRPC codec.
//!
//! # Example: checking a receipt offline
//! ```
//! use fairtrail_client::receipt::ReceiptJson;
//! # fn check(json: &str, log_key: &str) -> Result<(), Box<dyn std::error::Error>> {
//! let log_key = log_key.parse()?;
//! let verified = ReceiptJson::parse(json)?.verify(&log_key)?;
//! println!("entry {} is in the tree of size {}", verified.index, verified.checkpoint.size);
//! # Ok(()) }
//! ```

pub mod audit;
pub mod bundle;
pub mod checkpoint;
pub mod codec;
pub mod entry;
pub mod envelope;
pub mod gs1;
pub mod keys;
pub mod merkle;
pub mod note;
pub mod qr;
pub mod receipt;
pub mod rpc;
pub mod rules;
pub mod statement;
pub mod units;
pub mod verify;

/// The wire types generated from `proto/fairtrail/v1/*.proto`.
#[allow(clippy::all, missing_docs)]
pub mod proto {
    tonic::include_proto!("fairtrail.v1");
    /// The encoded descriptors of the proto files, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("fairtrail_descriptor");
}
