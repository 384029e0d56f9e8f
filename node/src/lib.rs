//! The Fairtrail node: an append-only, verifiable log of signed fair-trade attestations.
//!
//! # Layout
//! - [`config`]: flags, environment and TOML settings.
//! - [`server`]: opening the data directory (recovery) and serving gRPC; graceful shutdown.
//! - [`http`]: the HTTP side: GS1 Digital Link resolver, consumer pages, bundles, tiles, metrics.
//! - [`sequencer`]: the single writer: batch signature verification, group commit, receipts.
//! - [`tiles`]: the log on disk as C2SP tlog-tiles, durable at every commit; proofs.
//! - [`index`]: sled indexes derived from the log, replayed from it after a crash.
//! - [`hashindex`]: an append-only LSM index from 32-byte hashes to log indexes (derived state).
//! - [`statestore`]: lot records and entry lists: an LSM with a write-ahead log (ledger state).
//! - [`tls`]: TLS for the HTTP side.
//! - [`ledger`]: the gRPC `fairtrail.v1.LedgerService`.
//! - [`limits`]: admission policy, rate limits and the gRPC listener's connections.
//! - [`gather`]: gathered writes, so a unary gRPC answer leaves in one system call.
//! - [`metrics`]: counters for `/metrics`.
//! - [`provenance`]: the gRPC `fairtrail.v1.ProvenanceService`: bundles, participants, lots.

pub mod config;
pub mod diskspace;
pub mod gather;
pub mod hashindex;
pub mod http;
pub mod index;
pub mod ledger;
pub mod limits;
pub mod metrics;
pub mod provenance;
mod runfiles;
pub mod sequencer;
pub mod server;
pub mod statestore;
pub mod tiles;
pub mod tls;
