//! Fairtrail's end-to-end tests: the real `fairtrail-node` and `fairtrail` binaries, talking
//! gRPC over loopback, checked with nothing but the client library and the log's public key.

/// The harness: builds the binaries, runs a node on `127.0.0.1:0` in a temporary data
/// directory (start, stop, kill, restart), runs the CLI, submits and reads over gRPC.
mod util;

/// The ledger service over gRPC: concurrent submission surviving a restart, refusals,
/// idempotence, precise read errors, reflection and health.
mod ledger;

/// The `fairtrail` CLI against a node: a round trip with offline receipt checks, and a fork
/// detected.
mod cli;
