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

/// Provenance end to end: the demo chain verified; every way of breaking a chain caught with
/// its own precise failure, by the node or by `fairtrail verify`; bundles verified offline
/// and their tampered copies refused; the provenance service read directly.
mod provenance;

/// TLS with a CA made in the test: the right CA connects, another CA and plain text do not;
/// a TLS key others can read is refused.
mod tls;

/// Admission (open or endorsed by an operator) and limits: a flood of invalid writes is
/// refused while reads go on.
mod limits;

/// Crash safety: SIGKILL at random moments under load from concurrent clients; after every
/// restart nothing acknowledged is lost, the log has no gap, its tree, index and ledger state
/// agree with its leaves, and every checkpoint ever signed is a prefix of the new one.
mod crash;

/// `fairtrail audit`: a clean log passes; corrupt tiles stop the node; a rewritten history and
/// a forged log (double spend, unsigned statement, duplicate, time going back) are caught,
/// each finding naming its entry.
mod audit;

/// An independent receipt verifier in Python, written from SPEC.md alone, agrees with the
/// node on real and tampered receipts.
mod interop;

/// The HTTP side: the demo product's consumer page in English and Spanish (verdict, journey,
/// prices, certifications) with numbers written as the reader's region writes them, its JSON
/// view, the proof bundle verified offline, Digital Link errors, caching, the operator's
/// policy, the checkpoint, tiles, metrics and health.
mod http;

/// The consumer page in headless Chromium: the rendered DOM shows the verdict, each journey
/// step and the price chart; screenshots at phone and desktop widths.
mod browser;

/// The load generator's tiny `--smoke` configuration runs every phase and prints its table
/// (benchmarks are not timed tests: nothing here is about speed).
mod bench_smoke;

/// The bad-input matrix: malformed protobuf, oversized messages, broken envelopes and
/// signatures, out-of-range quantities and times, invalid text, bad GTINs, path traversal,
/// foreign lots and replays, over gRPC and HTTP: each gets its documented status code and
/// message, nothing is appended, and the node keeps serving.
mod bad_input;
