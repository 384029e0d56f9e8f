//! Crash safety: a real node under load from concurrent clients, killed with SIGKILL at random
//! moments, again and again. After every restart nothing it acknowledged is lost or changed,
//! the log has no gap, its tree, its index and its ledger state agree with its leaves, and its
//! new checkpoint extends every checkpoint it ever signed.
//!
//! Rounds: 20 by default, `FAIRTRAIL_CRASH_ROUNDS=200` for a long run. The random moments come
//! from a seed printed at the start (`FAIRTRAIL_CRASH_SEED=N` replays one). Run with
//! `--nocapture` to see the numbers RELIABILITY.md quotes.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use fairtrail_client::audit::Replay;
use fairtrail_client::checkpoint::SignedCheckpoint;
use fairtrail_client::entry::Leaf;
use fairtrail_client::envelope::StatementId;
use fairtrail_client::keys::{generate_signing_key, PublicKey};
use fairtrail_client::merkle::{
    hashes_from_bytes, leaf_hash, verify_consistency, verify_inclusion, Hash, MemoryTree,
};
use fairtrail_client::note::NoteVerifier;
use fairtrail_client::proto;
use fairtrail_client::proto::get_entry_request::Key;
use fairtrail_client::proto::get_inclusion_proof_request::Leaf as ProofLeaf;
use fairtrail_client::proto::provenance_service_client::ProvenanceServiceClient;
use fairtrail_client::rpc::NodeClient;
use fairtrail_client::rules::get_record;
use fairtrail_client::rules::records::{key as record_key, prefix, LotId, LotRecord};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use tokio::task::JoinSet;
use tokio::time::timeout;
use tonic::Code;

use crate::util::{
    channel, check_receipt, checkpoint, declaration, entries, fairtrail, harvest, TestNode,
    CALL_TIMEOUT,
};

/// Rounds when `FAIRTRAIL_CRASH_ROUNDS` is not set.
const DEFAULT_ROUNDS: usize = 20;
/// Clients submitting at once, each with its own key and connection.
const CLIENTS: usize = 4;
/// Unary submissions each client keeps in flight.
const IN_FLIGHT: usize = 8;
/// The longest load burst before the kill.
const MAX_BURST_MS: u64 = 300;
/// Older receipts whose index entries are re-read after each restart (all of them at the end).
const SAMPLE: usize = 32;
/// Entries each hash index holds in memory before it writes a run: small, so that runs are
/// written, merged and read back in every round.
const HASH_RUN_ENTRIES: usize = 40;
/// About 40 harvests' lot records and list entries per state-store run.
const STATE_RUN_KB: usize = 16;

/// One producer: it declares itself once, then records harvests.
struct Producer {
    number: usize,
    key: SigningKey,
    declared: bool,
    lots: u64,
    /// Sent but never acknowledged (the node died first): sent again next round, when the
    /// node must either log them or answer with the entry it already has.
    unanswered: Vec<proto::Envelope>,
}

impl Producer {
    fn declaration(&self) -> proto::Envelope {
        declaration(&self.key, &format!("producer {}", self.number))
    }

    fn next_harvest(&mut self) -> proto::Envelope {
        self.lots += 1;
        harvest(
            &self.key,
            &format!("producer {} lot {}", self.number, self.lots),
        )
    }
}

/// `text` without its ANSI colour sequences (`ESC [ ... m`), as the node's log has them.
fn without_colours(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// One producer per client, none declared yet.
fn producers() -> Vec<Producer> {
    (0..CLIENTS)
        .map(|number| Producer {
            number,
            key: generate_signing_key(),
            declared: false,
            lots: 0,
            unanswered: Vec::new(),
        })
        .collect()
}

/// `FAIRTRAIL_CRASH_ROUNDS`, else `default`.
fn rounds_or(default: usize) -> usize {
    std::env::var("FAIRTRAIL_CRASH_ROUNDS")
        .ok()
        .map(|r| r.parse().expect("FAIRTRAIL_CRASH_ROUNDS is a number"))
        .unwrap_or(default)
}

/// `FAIRTRAIL_CRASH_SEED`, else a random seed.
fn seed() -> u64 {
    std::env::var("FAIRTRAIL_CRASH_SEED")
        .ok()
        .map(|s| s.parse().expect("FAIRTRAIL_CRASH_SEED is a number"))
        .unwrap_or_else(rand::random)
}

/// A node with small hash-index and state-store runs, so that kills land while runs are
/// written and merged, and recovery reads runs and write-ahead logs back as well as replaying
/// the log.
async fn start_with_small_runs() -> TestNode {
    TestNode::start_with_args(
        |_| {},
        vec![
            "--hash-run-entries".into(),
            HASH_RUN_ENTRIES.to_string(),
            "--state-run-kb".into(),
            STATE_RUN_KB.to_string(),
        ],
    )
    .await
}

/// An error that a crash explains (the connection died, the node stopped), as opposed to a
/// refusal of a valid statement.
fn crash_related(code: Code) -> bool {
    !matches!(
        code,
        Code::InvalidArgument
            | Code::FailedPrecondition
            | Code::NotFound
            | Code::OutOfRange
            | Code::AlreadyExists
            | Code::PermissionDenied
            | Code::Unauthenticated
    )
}

/// Submits as `producer` until `stop` is set or the node dies; returns the producer and the
/// receipts it got, each checked offline.
async fn load(
    mut producer: Producer,
    url: String,
    log_key: NoteVerifier,
    stop: Arc<AtomicBool>,
) -> (Producer, Vec<proto::SubmitResponse>) {
    let mut answers = Vec::new();
    let Ok(Ok(client)) = timeout(CALL_TIMEOUT, NodeClient::connect(&url)).await else {
        return (producer, answers);
    };
    let key = producer.key.clone();
    // The declaration comes first, alone: a harvest by an undeclared producer is refused.
    if !producer.declared {
        let envelope = producer.declaration();
        match timeout(CALL_TIMEOUT, client.clone().submit(envelope.clone())).await {
            Ok(Ok(answer)) => {
                check_receipt(answer.receipt.as_ref().unwrap(), &envelope, &key, &log_key);
                answers.push(answer);
                producer.declared = true;
            }
            Ok(Err(e)) => {
                assert!(
                    e.code().is_none_or(crash_related),
                    "a valid declaration refused: {e}"
                );
                return (producer, answers);
            }
            Err(_) => return (producer, answers),
        }
    }
    let mut queue: VecDeque<proto::Envelope> = producer.unanswered.drain(..).collect();
    let mut calls = JoinSet::new();
    let mut dead = false;
    loop {
        while !dead && !stop.load(Ordering::Acquire) && calls.len() < IN_FLIGHT {
            let envelope = queue.pop_front().unwrap_or_else(|| producer.next_harvest());
            let mut client = client.clone();
            calls.spawn(async move {
                let answer = timeout(CALL_TIMEOUT, client.submit(envelope.clone())).await;
                (envelope, answer)
            });
        }
        let Some(joined) = calls.join_next().await else {
            break;
        };
        let (envelope, answer) = joined.expect("a submission task panicked");
        match answer {
            Ok(Ok(answer)) => {
                check_receipt(answer.receipt.as_ref().unwrap(), &envelope, &key, &log_key);
                answers.push(answer);
            }
            Ok(Err(e)) if e.code() == Some(Code::ResourceExhausted) => {
                // Rate limited: not an answer; send it again a little later.
                tokio::time::sleep(Duration::from_millis(20)).await;
                queue.push_back(envelope);
            }
            Ok(Err(e)) => {
                assert!(
                    e.code().is_none_or(crash_related),
                    "a valid harvest refused: {e}"
                );
                producer.unanswered.push(envelope);
                dead = true;
            }
            Err(_) => {
                producer.unanswered.push(envelope);
                dead = true;
            }
        }
    }
    producer.unanswered.extend(queue);
    (producer, answers)
}

/// What the clients were told, over every round.
#[derive(Default)]
struct Acknowledged {
    /// Entry index -> the leaf hash a receipt gave for it.
    leaves: BTreeMap<u64, Hash>,
    /// Statement id -> the entry its receipts name.
    statements: HashMap<StatementId, u64>,
    /// Every checkpoint a receipt or a read carried, by size (one root per size).
    checkpoints: BTreeMap<u64, SignedCheckpoint>,
    /// The same checkpoints' notes, to verify each once.
    notes: HashSet<String>,
    /// Checkpoint sizes not yet proved to be prefixes of a later checkpoint by the node.
    unproven: Vec<u64>,
    /// Receipts received, `existing` ones included.
    receipts: u64,
    /// Of which for statements logged before (resubmitted after a crash).
    existing: u64,
}

impl Acknowledged {
    fn checkpoint(&mut self, note: &str, log_key: &NoteVerifier) {
        if !self.notes.insert(note.to_owned()) {
            return;
        }
        let signed = SignedCheckpoint::verify(note, log_key).expect("a checkpoint the node signed");
        let size = signed.checkpoint.size;
        match self.checkpoints.get(&size) {
            Some(seen) => assert_eq!(
                seen.checkpoint.root, signed.checkpoint.root,
                "two checkpoints of size {size} with different roots: a fork"
            ),
            None => {
                self.checkpoints.insert(size, signed);
                self.unproven.push(size);
            }
        }
    }

    fn receipt(&mut self, answer: &proto::SubmitResponse, log_key: &NoteVerifier) {
        let receipt = answer
            .receipt
            .as_ref()
            .expect("an answer carries a receipt");
        let hash: Hash = receipt.leaf_hash.as_slice().try_into().expect("32 bytes");
        let id = StatementId::from_bytes(&receipt.statement_id).expect("32 bytes");
        if let Some(before) = self.leaves.insert(receipt.index, hash) {
            assert_eq!(
                before, hash,
                "entry {} was acknowledged with two different leaves",
                receipt.index
            );
        }
        if let Some(before) = self.statements.insert(id, receipt.index) {
            assert_eq!(
                before, receipt.index,
                "statement {id} acknowledged at entries {before} and {}",
                receipt.index
            );
        }
        self.receipts += 1;
        self.existing += u64::from(answer.existing);
        self.checkpoint(&receipt.checkpoint, log_key);
    }
}

/// Numbers for RELIABILITY.md.
#[derive(Default)]
struct Measured {
    recovery: Duration,
    worst_recovery: Duration,
    checks: Duration,
    index_reads: u64,
    lots_compared: u64,
    consistency_proofs: u64,
    /// Kills that came before the node served again.
    kills_in_recovery: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_under_load_loses_nothing_acknowledged() {
    let rounds = rounds_or(DEFAULT_ROUNDS);
    let seed = seed();
    println!("crash test: {rounds} rounds, seed {seed} (FAIRTRAIL_CRASH_SEED={seed} replays it)");
    let mut rng = StdRng::seed_from_u64(seed);
    // Timed from here: building the binaries is not the test.
    crate::util::binaries();
    let started = Instant::now();
    let mut load_time = Duration::ZERO;

    let mut node = start_with_small_runs().await;
    let log_key = node.verifier().await;
    let mut producers = producers();
    let mut acked = Acknowledged::default();
    let mut seen = Seen::default();
    let mut measured = Measured::default();

    for round in 1..=rounds {
        // 1. Load from every client, then SIGKILL at a random moment: sometimes at once, before
        //    the clients are even connected, mostly in the middle of a burst.
        let burst = if rng.gen_ratio(1, 10) {
            rng.gen_range(0..5)
        } else {
            rng.gen_range(5..=MAX_BURST_MS)
        };
        let stop = Arc::new(AtomicBool::new(false));
        let mut clients = JoinSet::new();
        for producer in producers.drain(..) {
            clients.spawn(load(producer, node.url(), log_key.clone(), stop.clone()));
        }
        let loading = Instant::now();
        tokio::time::sleep(Duration::from_millis(burst)).await;
        node.kill().await;
        stop.store(true, Ordering::Release);
        let mut answers = Vec::new();
        while let Some(joined) = timeout(CALL_TIMEOUT, clients.join_next())
            .await
            .expect("a client hangs after the kill")
        {
            let (producer, got) = joined.expect("a client panicked");
            producers.push(producer);
            answers.extend(got);
        }
        load_time += loading.elapsed();
        producers.sort_by_key(|p| p.number);
        for answer in &answers {
            acked.receipt(answer, &log_key);
        }

        // 2. Sometimes a crash during the recovery too (cutting back what the batch in flight
        //    left, replaying write-ahead logs and indexes); then restart, and check everything
        //    against what was acknowledged.
        if rng.gen_ratio(1, 3) {
            let latest = (measured.worst_recovery.as_millis() as u64).max(KILL_FLOOR_MS + 1);
            let after = Duration::from_millis(rng.gen_range(KILL_FLOOR_MS..latest));
            if node.start_and_kill_after(after).await {
                measured.kills_in_recovery += 1;
            }
        }
        let recovery = Instant::now();
        node.restart().await;
        let recovery = recovery.elapsed();
        measured.recovery += recovery;
        measured.worst_recovery = measured.worst_recovery.max(recovery);
        let checks = Instant::now();
        let last = round == rounds;
        let size = check(
            &node,
            &log_key,
            &mut acked,
            &mut seen,
            &answers,
            last,
            &mut rng,
            &mut measured,
        )
        .await;
        let checks = checks.elapsed();
        measured.checks += checks;
        println!(
            "round {round}: killed after {burst} ms, {} answers, log of {size} entries, recovered in {} ms, checked in {} ms",
            answers.len(),
            recovery.as_millis(),
            checks.as_millis()
        );
    }

    // 3. The CLI's audit agrees: the whole log replayed, clean.
    let key_text = log_key.to_text();
    let home = tempfile::tempdir().unwrap();
    let state = home.path().join("state.json");
    let url = node.url();
    let args = [
        "--node",
        url.as_str(),
        "--log-key",
        key_text.as_str(),
        "--state",
        crate::util::arg(&state),
        "--json",
        "audit",
    ];
    let audit = fairtrail(&args, &[]).await;
    let report: serde_json::Value = serde_json::from_str(audit.ok()).expect("audit --json");
    assert_eq!(report["clean"], true, "{audit:?}");
    // 4. Every recovery resumed from what was on disk: no store was ever found ahead of the
    // log or unable to follow sled's mark and rebuilt from entry 0.
    let log = node.log_text();
    let rebuilt: Vec<&str> = log.lines().filter(|l| l.contains("rebuilding")).collect();
    assert!(
        rebuilt.is_empty(),
        "a restart rebuilt an index: {rebuilt:#?}"
    );

    let elapsed = started.elapsed();
    let size = acked.checkpoints.keys().last().copied().unwrap_or(0);
    println!(
        "crash test: seed {seed}, {rounds} SIGKILLs under load from {CLIENTS} clients: {} receipts ({} for entries logged before a crash), {} entries acknowledged, log of {size} entries, {} checkpoints checked ({} by consistency proof), {} index reads and {} lots compared with the replayed state; every restart recovered (mean {} ms, worst {} ms; {} more kills during a recovery); load {:.1} s, checks {:.1} s, total {:.1} s",
        acked.receipts,
        acked.existing,
        acked.leaves.len(),
        acked.checkpoints.len(),
        measured.consistency_proofs,
        measured.index_reads,
        measured.lots_compared,
        measured.recovery.as_millis() / rounds.max(1) as u128,
        measured.worst_recovery.as_millis(),
        measured.kills_in_recovery,
        load_time.as_secs_f64(),
        measured.checks.as_secs_f64(),
        elapsed.as_secs_f64(),
    );
}

/// A write the disk refuses stops the write path: the submission of that batch is answered
/// UNAVAILABLE, never with a receipt, and the node exits with an error. Restarted on a
/// writable disk, it serves the log as it was at its last checkpoint, without the refused
/// statement, which is then logged when sent again. Here the next checkpoint's file is made
/// `/dev/full`, which answers every write "no space left on device".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_the_disk_refuses_stops_the_node_and_acknowledges_nothing() {
    refused_write(1, "No space left on device", |data_dir| {
        let next = data_dir.join("log").join("checkpoint.tmp");
        match std::fs::remove_file(&next) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("cannot remove {}: {e}", next.display()),
        }
        std::os::unix::fs::symlink("/dev/full", &next).expect("a symlink to /dev/full");
        next
    })
    .await;
}

/// The same when the write refused is a tile's: the refused statement is the 256th entry, so
/// its commit writes the log's first full entry bundle, and a directory stands where that
/// file goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tile_the_disk_refuses_stops_the_node_and_acknowledges_nothing() {
    refused_write(254, "Is a directory", |data_dir| {
        let bundle = data_dir
            .join("log")
            .join("tile")
            .join("entries")
            .join("000");
        std::fs::create_dir(&bundle).expect("a directory where the full bundle goes");
        bundle
    })
    .await;
}

/// A write the index refuses: the entries it indexes are already durable and acknowledged,
/// so they stay acknowledged; the node stops at its next commit (that batch answered
/// UNAVAILABLE), and, restarted, rebuilds what the index lacks from the log. The statement-id
/// index writes a run file per entry here (`--hash-run-entries 1`), and a directory stands
/// where the run of the third entry goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_write_the_disk_refuses_stops_the_node_and_loses_nothing_acknowledged() {
    let mut node =
        TestNode::start_with_args(|_| {}, vec!["--hash-run-entries".into(), "1".into()]).await;
    let log_key = node.verifier().await;
    let key = generate_signing_key();
    let mut client = node.client().await;
    let mut acknowledged = Vec::new();
    for envelope in [
        declaration(&key, "producer whose index fails"),
        harvest(&key, "lot 0"),
    ] {
        let answer = client.submit(envelope.clone()).await.expect("a receipt");
        check_receipt(answer.receipt.as_ref().unwrap(), &envelope, &key, &log_key);
        acknowledged.push(answer);
    }
    // Once the index holds the first two entries in runs of their own (the applier writes
    // pending batches together when it lags), the next run is exactly `ids-2-3`.
    let hashes = node.data_dir().join("index-hashes");
    let written = Instant::now();
    while !std::fs::read_dir(&hashes)
        .expect("the hash indexes' directory")
        .filter_map(|e| e.ok())
        .any(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with("ids-") && name.ends_with(&format!("-{:020}.run", 2))
        })
    {
        assert!(
            written.elapsed() < CALL_TIMEOUT,
            "no statement-id run ends at entry 2"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let run = hashes.join(format!("ids-{:020}-{:020}.run", 2, 3));
    std::fs::create_dir(&run).expect("a directory where the next run goes");

    // The entry whose index write fails is acknowledged: the applier writes behind the
    // answers. The next submission, once the applier has failed, is refused before anything
    // of it is written.
    let third = harvest(&key, "lot 1");
    let answer = client.submit(third.clone()).await.expect("a receipt");
    check_receipt(answer.receipt.as_ref().unwrap(), &third, &key, &log_key);
    acknowledged.push(answer);
    let failed = Instant::now();
    while !node.log_text().contains("writing the index failed") {
        assert!(
            failed.elapsed() < CALL_TIMEOUT,
            "the index's failure was not logged:\n{}",
            node.log_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let refused = harvest(&key, "lot 2");
    let error = client
        .submit(refused.clone())
        .await
        .expect_err("a batch after the index failed is not acknowledged");
    assert_eq!(error.code(), Some(Code::Unavailable), "{error}");
    let status = node.exits().await;
    assert_eq!(status.code(), Some(1), "the node ended with {status}");
    let log = node.log_text();
    assert!(
        log.contains("writing the index failed") && log.contains("Is a directory"),
        "the node's log does not say what failed:\n{log}"
    );

    std::fs::remove_dir(&run).expect("the directory removed");
    node.restart().await;
    let mut client = node.client().await;
    let size = checkpoint(&mut client, &log_key).await.checkpoint.size;
    assert_eq!(
        size,
        acknowledged.len() as u64,
        "the log holds what was acknowledged, and not the refused batch"
    );
    // Found by statement id: the index the failed run belonged to, rebuilt from the log.
    acknowledged_and_refused(&mut client, &acknowledged, &refused, &key, &log_key, size).await;
}

/// Logs a declaration and `harvests` harvests, has `refuse` make the disk refuse a write (it
/// returns the path to remove to undo that), sends one more harvest and checks that nothing
/// of it is acknowledged, that the node exits saying `why` in its log, and that the log
/// restarted without the obstacle is as before.
async fn refused_write(
    harvests: usize,
    why: &str,
    refuse: impl FnOnce(&std::path::Path) -> std::path::PathBuf,
) {
    let mut node = TestNode::start().await;
    let log_key = node.verifier().await;
    let key = generate_signing_key();
    let mut client = node.client().await;
    let mut before = Vec::new();
    let envelopes = std::iter::once(declaration(&key, "producer on a refusing disk"))
        .chain((0..harvests).map(|i| harvest(&key, &format!("lot {i}"))));
    for envelope in envelopes {
        let answer = client.submit(envelope.clone()).await.expect("a receipt");
        check_receipt(answer.receipt.as_ref().unwrap(), &envelope, &key, &log_key);
        before.push(answer);
    }
    let size = checkpoint(&mut client, &log_key).await.checkpoint.size;
    assert_eq!(size, harvests as u64 + 1);

    let obstacle = refuse(node.data_dir());
    let refused = harvest(&key, "the refused lot");
    let error = client
        .submit(refused.clone())
        .await
        .expect_err("a batch that could not be written is not acknowledged");
    assert_eq!(error.code(), Some(Code::Unavailable), "{error}");
    let status = node.exits().await;
    assert_eq!(
        status.code(),
        Some(1),
        "the node ended with {status}, not with its error exit"
    );
    let log = node.log_text();
    assert!(
        log.contains("storage failure") && log.contains(why),
        "the node's log does not say what failed ({why}):\n{log}"
    );

    // On a writable disk again: the log as it was, without the refused statement.
    if obstacle.is_dir() {
        std::fs::remove_dir(&obstacle).expect("the directory removed");
    } else {
        std::fs::remove_file(&obstacle).expect("the file removed");
    }
    node.restart().await;
    let mut client = node.client().await;
    let latest = checkpoint(&mut client, &log_key).await;
    assert_eq!(latest.checkpoint.size, size, "the log changed size");
    acknowledged_and_refused(&mut client, &before, &refused, &key, &log_key, size).await;
}

/// After a refused write and a restart: every `acknowledged` statement is in the log, found by
/// its id at its receipt's index with its leaf; `refused` is not, and is logged when sent
/// again, at `size`.
async fn acknowledged_and_refused(
    client: &mut NodeClient,
    acknowledged: &[proto::SubmitResponse],
    refused: &proto::Envelope,
    key: &SigningKey,
    log_key: &NoteVerifier,
    size: u64,
) {
    for answer in acknowledged {
        let receipt = answer.receipt.as_ref().unwrap();
        let entry = client
            .entry(Key::StatementId(receipt.statement_id.clone()))
            .await
            .expect("an acknowledged statement is in the log");
        assert_eq!(entry.index, receipt.index);
        assert_eq!(
            leaf_hash(&entry.leaf).as_slice(),
            receipt.leaf_hash.as_slice()
        );
    }
    let id = StatementId::of_payload(&refused.payload);
    let missing = client
        .entry(Key::StatementId(id.as_bytes().to_vec()))
        .await
        .expect_err("the refused statement is not in the log");
    assert_eq!(missing.code(), Some(Code::NotFound), "{missing}");
    let answer = client.submit(refused.clone()).await.expect("logged now");
    check_receipt(answer.receipt.as_ref().unwrap(), refused, key, log_key);
    assert!(!answer.existing);
    assert_eq!(answer.receipt.unwrap().index, size);
}

/// How long the clients load the node before the kills during recovery.
const RECOVERY_LOAD_MS: u64 = 1500;
/// Kills during the rebuild, when `FAIRTRAIL_CRASH_ROUNDS` is not set.
const DEFAULT_RECOVERY_KILLS: usize = 8;
/// The earliest kill during the rebuild, in milliseconds: not before the process starts.
const KILL_FLOOR_MS: u64 = 20;

/// Kills during recovery. With its indexes gone (statement ids, leaf hashes, ledger state),
/// the node rebuilds them from the log when it starts, and is killed at random moments of that
/// rebuild, again and again, each start taking up what the last left. The start that finally
/// completes serves everything acknowledged before, with no gap and the signed root, and its
/// indexes and ledger state agree with the log replayed by the client library.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_during_recovery_changes_nothing() {
    let kills = rounds_or(DEFAULT_RECOVERY_KILLS).max(1);
    let seed = seed();
    println!(
        "recovery crash test: {kills} kills, seed {seed} (FAIRTRAIL_CRASH_SEED={seed} replays it)"
    );
    let mut rng = StdRng::seed_from_u64(seed);
    crate::util::binaries();
    let mut node = start_with_small_runs().await;
    let log_key = node.verifier().await;

    // 1. A log to recover: every client loads the node for a while, then a clean stop.
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = JoinSet::new();
    for producer in producers() {
        clients.spawn(load(producer, node.url(), log_key.clone(), stop.clone()));
    }
    tokio::time::sleep(Duration::from_millis(RECOVERY_LOAD_MS)).await;
    stop.store(true, Ordering::Release);
    let mut answers = Vec::new();
    while let Some(joined) = timeout(CALL_TIMEOUT, clients.join_next())
        .await
        .expect("a client hangs")
    {
        // (A submission still unanswered when the load stopped, rate-limited, is simply not
        // acknowledged.)
        let (_, got) = joined.expect("a client panicked");
        answers.extend(got);
    }
    let mut acked = Acknowledged::default();
    for answer in &answers {
        acked.receipt(answer, &log_key);
    }
    node.stop().await;

    // 2. How long a whole rebuild takes, start to first answer.
    let forget_indexes = |data_dir: &std::path::Path| {
        for name in ["index", "index-hashes", "index-state"] {
            let path = data_dir.join(name);
            match std::fs::remove_dir_all(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => panic!("cannot remove {}: {e}", path.display()),
            }
        }
    };
    forget_indexes(node.data_dir());
    let started = Instant::now();
    node.restart().await;
    let whole = started.elapsed();
    node.stop().await;

    // 3. The rebuild again, killed at random moments; each start takes up what the one before
    //    left. A start that got to serve before its kill finished the rebuild: the indexes are
    //    removed again, so that the next start has one to be killed in.
    //    The kills come at most as late as a whole start took, and earlier (down to a third of
    //    it) after a kill that came too late (a start can be faster than the one measured).
    forget_indexes(node.data_dir());
    let mut during = 0;
    let mut latest = (whole.as_millis() as u64).max(KILL_FLOOR_MS + 1);
    let shortest = (latest / 3).max(KILL_FLOOR_MS + 1);
    for kill in 1..=kills {
        let after = Duration::from_millis(rng.gen_range(KILL_FLOOR_MS..latest));
        let recovering = node.start_and_kill_after(after).await;
        during += usize::from(recovering);
        if !recovering {
            forget_indexes(node.data_dir());
            latest = (latest / 2).max(shortest);
        }
        println!(
            "kill {kill}: after {} ms, {}",
            after.as_millis(),
            if recovering {
                "while recovering"
            } else {
                "once serving (the indexes removed again)"
            }
        );
    }
    assert!(
        during > 0,
        "no kill landed during recovery (a whole rebuild took {} ms)",
        whole.as_millis()
    );
    // And one landed inside a rebuild, not only before it began: a later start took one up
    // part way (its replay starts after entry 0).
    let log = without_colours(&node.log_text());
    let resumed = log
        .lines()
        .filter(|l| l.contains("replaying the log into"))
        .filter_map(|l| l.split("from=").nth(1))
        .filter_map(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse::<u64>().ok()
        })
        .filter(|&from| from > 0)
        .count();
    assert!(
        resumed > 0,
        "no start took up a rebuild that a kill interrupted; the node's log:\n{log}"
    );

    // 4. The start that completes, checked against everything acknowledged and the replay.
    let recovery = Instant::now();
    node.restart().await;
    let recovery = recovery.elapsed();
    let mut measured = Measured::default();
    let size = check(
        &node,
        &log_key,
        &mut acked,
        &mut Seen::default(),
        &answers,
        true,
        &mut rng,
        &mut measured,
    )
    .await;
    println!(
        "recovery crash test: seed {seed}, a log of {size} entries ({} receipts); a whole rebuild {} ms; {during} of {kills} kills during recovery, {resumed} replays taken up part way; the last start {} ms; {} index reads and {} lots compared with the replayed state",
        acked.receipts,
        whole.as_millis(),
        recovery.as_millis(),
        measured.index_reads,
        measured.lots_compared,
    );
}

/// The log as the test has read it so far. Each round reads only the entries added since, and
/// one older bundle again: the signed root over the old and new leaves proves the old ones
/// unchanged. The last round reads and replays everything again from scratch.
#[derive(Default)]
struct Seen {
    tree: MemoryTree,
    ids: HashSet<StatementId>,
    replay: Replay,
}

/// Checks the restarted node against everything acknowledged so far; returns the log's size.
/// The index entries of this round's receipts, and of a sample of older ones (all of them when
/// `all`), are read back.
#[allow(clippy::too_many_arguments)]
async fn check(
    node: &TestNode,
    log_key: &NoteVerifier,
    acked: &mut Acknowledged,
    seen: &mut Seen,
    answers: &[proto::SubmitResponse],
    all: bool,
    rng: &mut StdRng,
    measured: &mut Measured,
) -> u64 {
    let mut client = node.client().await;
    let latest = checkpoint(&mut client, log_key).await;
    acked.checkpoint(&latest.note, log_key);
    let size = latest.checkpoint.size;

    // The new leaves, in order, with no gap; with the old ones they make the signed tree, and
    // they replay clean: signatures, integration times, no duplicate, every ledger rule.
    let start = seen.tree.len();
    assert!(
        size >= start,
        "the log went back from {start} to {size} entries"
    );
    let new = entries(&mut client, start, size).await;
    assert_eq!(new.len() as u64, size - start, "the log has a gap");
    for entry in &new {
        seen.tree.push_leaf_hash(leaf_hash(&entry.leaf));
        let leaf = Leaf::decode(entry.leaf.clone()).expect("a logged leaf decodes");
        assert!(
            seen.ids.insert(leaf.statement_id),
            "statement {} is logged twice (again at entry {})",
            leaf.statement_id,
            entry.index
        );
    }
    for chunk in new.chunks(256) {
        seen.replay
            .push(chunk.iter().map(|e| (e.index, e.leaf.clone())).collect())
            .expect("entries in order");
    }
    assert_eq!(
        seen.tree.root(),
        latest.checkpoint.root,
        "the leaves served do not give the signed root"
    );
    assert!(
        seen.replay.findings().is_empty(),
        "the replay finds problems: {:#?}",
        seen.replay.findings()
    );
    // An old bundle, served again, is what it was.
    if start > 0 {
        let from = rng.gen_range(0..start.div_ceil(256)) * 256;
        let to = (from + 256).min(start);
        let again = entries(&mut client, from, to).await;
        for entry in again {
            assert_eq!(
                leaf_hash(&entry.leaf),
                seen.tree.leaf_hashes()[entry.index as usize],
                "entry {} changed",
                entry.index
            );
        }
    }
    // At the end, everything once more from scratch: the whole log read and replayed.
    if all {
        let everything = entries(&mut client, 0, size).await;
        assert_eq!(everything.len() as u64, size, "the log has a gap");
        let mut replay = Replay::new();
        for chunk in everything.chunks(256) {
            replay
                .push(chunk.iter().map(|e| (e.index, e.leaf.clone())).collect())
                .expect("entries in order");
        }
        let report = replay.finish(&latest.checkpoint);
        assert!(
            report.is_clean(),
            "the replay finds problems: {:#?}",
            report.findings
        );
        assert!(
            &report.state == seen.replay.state(),
            "replaying the whole log gives another state than replaying it round by round"
        );
    }
    let tree = &seen.tree;

    // Every acknowledged entry is there, unchanged.
    for (&index, hash) in &acked.leaves {
        assert!(
            index < size,
            "entry {index} was acknowledged but the log restarted at size {size}"
        );
        assert_eq!(
            &tree.leaf_hashes()[index as usize],
            hash,
            "entry {index} is not the leaf that was acknowledged"
        );
    }

    // Every checkpoint ever signed is a prefix of this one: by the leaves, and by the node's
    // own consistency proofs for those not proved yet.
    for (&old, signed) in &acked.checkpoints {
        assert!(
            old <= size,
            "a checkpoint of size {old} was signed but the log restarted at size {size}"
        );
        assert_eq!(
            tree.root_at(old).expect("a prefix"),
            signed.checkpoint.root,
            "the checkpoint of size {old} is not a prefix of the log"
        );
    }
    for old in std::mem::take(&mut acked.unproven) {
        if old == 0 || old == size {
            continue;
        }
        let proof = client
            .consistency_proof(old, size)
            .await
            .expect("GetConsistencyProof");
        let proof = hashes_from_bytes(&proof.proof).expect("32-byte hashes");
        let old_root = acked.checkpoints[&old].checkpoint.root;
        verify_consistency(old, size, &proof, &old_root, &latest.checkpoint.root)
            .unwrap_or_else(|e| panic!("no consistency from size {old} to {size}: {e}"));
        measured.consistency_proofs += 1;
    }

    // The node's index agrees: statement ids and leaf hashes lead to their entries, and lots
    // hold what the replayed rules say.
    let mut sample: Vec<(StatementId, u64)> = answers
        .iter()
        .filter_map(|a| a.receipt.as_ref())
        .map(|r| (StatementId::from_bytes(&r.statement_id).unwrap(), r.index))
        .collect();
    let older: Vec<(StatementId, u64)> = acked.statements.iter().map(|(k, v)| (*k, *v)).collect();
    if all {
        sample = older;
    } else {
        sample.extend(older.choose_multiple(rng, SAMPLE).copied());
    }
    let mut provenance = ProvenanceServiceClient::new(channel(&node.url()).await);
    let mut lots_left = if all { 256 } else { 8 };
    for (id, index) in sample {
        let entry = client
            .entry(Key::StatementId(id.as_bytes().to_vec()))
            .await
            .unwrap_or_else(|e| panic!("GetEntry of acknowledged statement {id}: {e}"));
        assert_eq!(
            entry.index, index,
            "statement {id} indexed at another entry"
        );
        let hash = tree.leaf_hashes()[index as usize];
        let proof = client
            .inclusion_proof(ProofLeaf::LeafHash(hash.to_vec()), 0)
            .await
            .unwrap_or_else(|e| panic!("GetInclusionProof of entry {index} by leaf hash: {e}"));
        assert_eq!((proof.index, proof.tree_size), (index, size));
        let path = hashes_from_bytes(&proof.proof).expect("32-byte hashes");
        verify_inclusion(&hash, index, size, &path, &latest.checkpoint.root)
            .unwrap_or_else(|e| panic!("the inclusion proof of entry {index} fails: {e}"));
        measured.index_reads += 2;

        let lot = LotId {
            statement: id,
            output: 0,
        };
        let lot_key = record_key(prefix::LOT, &[&lot.bytes()]);
        let Some(record) =
            get_record::<LotRecord>(seen.replay.state(), &lot_key).expect("a record")
        else {
            continue; // a declaration: no lot
        };
        if lots_left == 0 {
            continue;
        }
        lots_left -= 1;
        let got = provenance
            .get_lot(proto::GetLotRequest {
                lot: Some(lot.to_proto()),
            })
            .await
            .unwrap_or_else(|e| panic!("GetLot {lot}: {e}"))
            .into_inner();
        let holder = PublicKey::from_bytes(&got.holder).expect("a 32-byte holder");
        assert_eq!(
            (got.remaining, got.unit, got.commodity.as_str(), holder),
            (
                record.remaining,
                record.unit,
                record.commodity.as_str(),
                record.holder
            ),
            "the node's lot {lot} differs from the replayed state"
        );
        measured.lots_compared += 1;
    }
    size
}
