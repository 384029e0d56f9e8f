//! The ledger service end to end: a real node, real connections, and every answer checked
//! offline with the log's public key alone.

use std::collections::{BTreeMap, HashMap, HashSet};

use fairtrail_client::checkpoint::SignedCheckpoint;
use fairtrail_client::keys::generate_signing_key;
use fairtrail_client::merkle::{hashes_from_bytes, verify_consistency, verify_inclusion};
use fairtrail_client::proto;
use fairtrail_client::proto::get_entry_request::Key;
use fairtrail_client::proto::get_inclusion_proof_request::Leaf;
use fairtrail_client::proto::submit_stream_response::Result as StreamResult;
use tokio::task::JoinSet;
use tokio::time::timeout;
use tonic::Code;

use crate::util::{
    accepted, assert_status, check_receipt, checkpoint, connect, declaration, entries, harvest,
    harvest_signed_by, submit_stream, submit_unary, TestNode, CALL_TIMEOUT,
};

/// Clients submitting at once, each on its own connection with its own key.
const CLIENTS: usize = 8;
/// Statements they submit in all.
const STATEMENTS: usize = 1000;
/// Statements each client submits: a declaration, then harvests.
const PER_CLIENT: usize = STATEMENTS / CLIENTS;
const _: () = assert!(PER_CLIENT * CLIENTS == STATEMENTS, "shared evenly");

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_clients_thousand_statements_survive_restart() {
    let mut node = TestNode::start().await;
    let log_key = node.verifier().await;

    // 1. Eight clients, each with its own connection and key: even ones call Submit, odd
    //    ones SubmitStream. Each checks its receipts offline as they come.
    let mut clients = JoinSet::new();
    for c in 0..CLIENTS {
        let (url, log_key) = (node.url(), log_key.clone());
        clients.spawn(async move {
            let mut client = connect(&url).await;
            let key = generate_signing_key();
            // A producer declares itself once, then records its harvests.
            let declared = declaration(&key, &format!("producer {c}"));
            let mut answers = vec![client.submit(declared.clone()).await.expect("Submit")];
            let harvests: Vec<_> = (1..PER_CLIENT)
                .map(|i| harvest(&key, &format!("client {c} lot {i}")))
                .collect();
            if c % 2 == 0 {
                answers.extend(submit_unary(&client, &harvests).await);
            } else {
                let stream = submit_stream(&mut client, &harvests).await;
                answers.extend(stream.into_iter().map(accepted));
            }
            let envelopes = [&[declared][..], &harvests].concat();
            assert_eq!(answers.len(), PER_CLIENT);
            let mut receipts = Vec::with_capacity(PER_CLIENT);
            for (answer, envelope) in answers.into_iter().zip(&envelopes) {
                assert!(!answer.existing, "a new statement is reported as existing");
                let receipt = answer.receipt.expect("an answer carries a receipt");
                check_receipt(&receipt, envelope, &key, &log_key);
                receipts.push(receipt);
            }
            receipts
        });
    }
    let mut by_index: BTreeMap<u64, proto::EntryReceipt> = BTreeMap::new();
    while let Some(joined) = clients.join_next().await {
        for receipt in joined.expect("a client panicked") {
            let index = receipt.index;
            assert!(
                by_index.insert(index, receipt).is_none(),
                "index {index} given twice"
            );
        }
    }
    assert!(
        by_index.keys().copied().eq(0..STATEMENTS as u64),
        "the indices do not cover 0..{STATEMENTS}"
    );

    // 2. Receipts name one checkpoint per tree size: a second root for a size is a fork.
    //    (Each distinct note is checked once: Ed25519 is slow in a debug build.)
    let notes: HashSet<&str> = by_index.values().map(|r| r.checkpoint.as_str()).collect();
    let mut by_size: HashMap<u64, SignedCheckpoint> = HashMap::new();
    for note in notes {
        let signed = SignedCheckpoint::verify(note, &log_key).expect("a receipt's checkpoint");
        let size = signed.checkpoint.size;
        assert!(
            by_size.insert(size, signed).is_none(),
            "two checkpoints of size {size}"
        );
    }

    // 3. A graceful stop and a restart change nothing that was signed.
    let before = checkpoint(&mut node.client().await, &log_key).await;
    assert_eq!(before.checkpoint.size, STATEMENTS as u64);
    node.stop().await;
    node.restart().await;
    let mut client = node.client().await;
    let after = client.checkpoint().await.expect("GetCheckpoint");
    assert_eq!(
        after.checkpoint, before.note,
        "the restarted node signs another note"
    );
    assert_eq!(after.verifier_key, log_key.to_text());

    // 4. Entries read back, by index, by statement id and as ranges, are the receipts' leaves.
    for index in [0, 1, 255, 256, 257, 511, 512, 700, 998, 999] {
        let receipt = &by_index[&index];
        let by_number = client.entry(Key::Index(index)).await.expect("GetEntry");
        assert_eq!((by_number.index, &by_number.leaf), (index, &receipt.leaf));
        let by_id = client
            .entry(Key::StatementId(receipt.statement_id.clone()))
            .await
            .expect("GetEntry by statement id");
        assert_eq!((by_id.index, &by_id.leaf), (index, &receipt.leaf));
    }
    let all = entries(&mut client, 0, 0).await;
    assert_eq!(all.len(), STATEMENTS);
    assert!(all.iter().all(|e| e.leaf == by_index[&e.index].leaf));
    let middle = entries(&mut client, 250, 700).await;
    assert_eq!(middle.len(), 450);
    assert!(middle.iter().all(|e| e.leaf == by_index[&e.index].leaf));

    // 5. The log grows after the restart, and every checkpoint ever given in a receipt (and
    //    the one before the restart) is a prefix of the new tree.
    let key = generate_signing_key();
    let declared = declaration(&key, "producer after restart");
    let answer = client.submit(declared.clone()).await.expect("Submit");
    check_receipt(answer.receipt.as_ref().unwrap(), &declared, &key, &log_key);
    let more: Vec<_> = (0..24)
        .map(|i| harvest(&key, &format!("after restart {i}")))
        .collect();
    let (first, second) = more.split_at(12);
    let mut answers = submit_unary(&client, first).await;
    answers.extend(
        submit_stream(&mut client, second)
            .await
            .into_iter()
            .map(accepted),
    );
    for (answer, envelope) in answers.iter().zip(&more) {
        let receipt = answer.receipt.as_ref().unwrap();
        assert!(receipt.index >= STATEMENTS as u64);
        check_receipt(receipt, envelope, &key, &log_key);
    }
    let latest = checkpoint(&mut client, &log_key).await;
    assert_eq!(latest.checkpoint.size, (STATEMENTS + 1 + more.len()) as u64);
    let proof = client
        .consistency_proof(before.checkpoint.size, 0)
        .await
        .expect("GetConsistencyProof");
    assert_eq!(proof.to_size, latest.checkpoint.size);
    assert_eq!(proof.checkpoint, latest.note);
    let mut hashes = hashes_from_bytes(&proof.proof).unwrap();
    let (old, new) = (&before.checkpoint, &latest.checkpoint);
    verify_consistency(old.size, new.size, &hashes, &old.root, &new.root)
        .expect("the tree before the restart is a prefix of the tree after it");
    hashes[0][0] ^= 1;
    assert!(verify_consistency(old.size, new.size, &hashes, &old.root, &new.root).is_err());
    for old in by_size.values().map(|s| &s.checkpoint) {
        let proof = client.consistency_proof(old.size, new.size).await.unwrap();
        let hashes = hashes_from_bytes(&proof.proof).unwrap();
        verify_consistency(old.size, new.size, &hashes, &old.root, &new.root)
            .unwrap_or_else(|e| panic!("checkpoint of size {} is not a prefix: {e}", old.size));
    }
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_signature_is_invalid_argument_and_changes_nothing() {
    let node = TestNode::start().await;
    let log_key = node.verifier().await;
    let mut client = node.client().await;
    let (key, other) = (generate_signing_key(), generate_signing_key());
    client
        .submit(declaration(&key, "first"))
        .await
        .expect("Submit");
    let before = checkpoint(&mut client, &log_key).await;
    let submit = |envelope: Option<proto::Envelope>| {
        let mut client = client.clone();
        async move {
            client
                .ledger
                .submit(proto::SubmitRequest { envelope })
                .await
        }
    };

    let mut flipped = harvest(&key, "flipped");
    flipped.signatures[0].sig[17] ^= 0x08;
    assert_status(
        submit(Some(flipped.clone())).await,
        Code::InvalidArgument,
        "signature",
    );
    let mut by_other = harvest_signed_by(&key, "signed by another key", &[&other]);
    assert_status(
        submit(Some(by_other.clone())).await,
        Code::InvalidArgument,
        "did not sign",
    );
    by_other.signatures[0].public_key = key.verifying_key().to_bytes().to_vec();
    assert_status(
        submit(Some(by_other)).await,
        Code::InvalidArgument,
        "signature",
    );
    let mut wrong_type = harvest(&key, "wrong type");
    wrong_type.payload_type = "application/json".into();
    assert_status(
        submit(Some(wrong_type)).await,
        Code::InvalidArgument,
        "payload type",
    );
    let empty = proto::Envelope::default();
    assert_status(submit(Some(empty)).await, Code::InvalidArgument, "payload");
    assert_status(submit(None).await, Code::InvalidArgument, "envelope");
    // Well-formed and well-signed, but the ledger rules refuse it: the key never declared.
    let undeclared = harvest(&other, "by an undeclared key");
    assert_status(
        submit(Some(undeclared)).await,
        Code::FailedPrecondition,
        "declar",
    );
    let after = client.checkpoint().await.unwrap().checkpoint;
    assert_eq!(after, before.note, "a refused submission changed the log");

    // A bad envelope in a busy batch is refused alone: the good ones around it are logged.
    let good: Vec<_> = (0..8)
        .map(|i| harvest(&key, &format!("good {i}")))
        .collect();
    let mut mixed = good.clone();
    mixed.insert(4, flipped);
    let answers = submit_stream(&mut client, &mixed).await;
    for (i, answer) in answers.into_iter().enumerate() {
        match answer {
            StreamResult::Error(e) if i == 4 => {
                assert_eq!(e.code, Code::InvalidArgument as i32, "{e:?}");
                assert!(e.message.contains("signature"), "{e:?}");
            }
            StreamResult::Accepted(a) if i != 4 => {
                let envelope = &mixed[i];
                check_receipt(a.receipt.as_ref().unwrap(), envelope, &key, &log_key);
            }
            other => panic!("envelope {i}: unexpected answer {other:?}"),
        }
    }
    let after = checkpoint(&mut client, &log_key).await;
    assert_eq!(
        after.checkpoint.size,
        before.checkpoint.size + good.len() as u64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn resubmission_is_idempotent() {
    let node = TestNode::start().await;
    let log_key = node.verifier().await;
    let mut client = node.client().await;
    let key = generate_signing_key();

    let envelope = declaration(&key, "once");
    let first = client.submit(envelope.clone()).await.unwrap();
    let second = client.submit(envelope.clone()).await.unwrap();
    assert!(!first.existing && second.existing);
    let (first, second) = (first.receipt.unwrap(), second.receipt.unwrap());
    assert_eq!(
        (first.index, &first.leaf),
        (second.index, &second.leaf),
        "a resubmission got another entry"
    );
    check_receipt(&second, &envelope, &key, &log_key);
    let size = checkpoint(&mut client, &log_key).await.checkpoint.size;
    assert_eq!(size, 1);

    // Five at once, each on its own connection: one entry, one index for all.
    let envelope = harvest(&key, "five at once");
    let mut calls = JoinSet::new();
    for _ in 0..5 {
        let (url, envelope) = (node.url(), envelope.clone());
        calls.spawn(async move { connect(&url).await.submit(envelope).await });
    }
    let mut answers = Vec::new();
    while let Some(joined) = calls.join_next().await {
        answers.push(joined.unwrap().expect("Submit"));
    }
    assert_one_entry(&answers, 1);
    for answer in &answers {
        check_receipt(answer.receipt.as_ref().unwrap(), &envelope, &key, &log_key);
    }
    assert_eq!(checkpoint(&mut client, &log_key).await.checkpoint.size, 2);

    // Three times back to back on one stream, most likely in one batch: still one entry.
    let envelope = harvest(&key, "thrice on a stream");
    let thrice = submit_stream(&mut client, &vec![envelope.clone(); 3]).await;
    let answers: Vec<_> = thrice.into_iter().map(accepted).collect();
    assert_one_entry(&answers, 2);
    assert_eq!(checkpoint(&mut client, &log_key).await.checkpoint.size, 3);
}

/// The same statements from two connections at once, one unary call each, many in flight:
/// group commits are small, so the two copies of a statement land in the same commit or in
/// two (the second while the first is being made durable). Each statement still gets exactly
/// one entry, both copies the same index, and every receipt (the "existing" ones too) proves
/// its entry against a checkpoint that covers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_statements_from_two_connections_get_one_entry_each() {
    let node = TestNode::start().await;
    let log_key = node.verifier().await;
    let mut client = node.client().await;
    // Four producers, so that no key's submission rate is near the node's limit.
    let keys: Vec<_> = (0..4).map(|_| generate_signing_key()).collect();
    for (i, key) in keys.iter().enumerate() {
        client
            .submit(declaration(key, &format!("twice {i}")))
            .await
            .unwrap();
    }
    let issuer = |i: usize| &keys[i % keys.len()];
    let envelopes: Vec<_> = (0..600)
        .map(|i| harvest(issuer(i), &format!("twice {i}")))
        .collect();
    let connections = [node.client().await, node.client().await];
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(32));
    let mut calls = JoinSet::new();
    for (i, envelope) in envelopes.iter().enumerate() {
        for connection in &connections {
            let (mut connection, envelope) = (connection.clone(), envelope.clone());
            let slot = slots.clone().acquire_owned().await.unwrap();
            calls.spawn(async move {
                let _slot = slot;
                let answer = timeout(CALL_TIMEOUT, connection.submit(envelope)).await;
                (i, answer.expect("answered in time").expect("Submit"))
            });
        }
    }
    let mut answers: BTreeMap<usize, Vec<proto::SubmitResponse>> = BTreeMap::new();
    while let Some(joined) = calls.join_next().await {
        let (i, answer) = joined.unwrap();
        answers.entry(i).or_default().push(answer);
    }
    let mut indices = HashSet::new();
    for (i, pair) in answers {
        let [x, y] = pair.as_slice() else {
            panic!("statement {i}: {} answers", pair.len())
        };
        let (rx, ry) = (x.receipt.as_ref().unwrap(), y.receipt.as_ref().unwrap());
        assert_eq!(rx.index, ry.index, "statement {i} logged twice");
        assert_eq!(
            u8::from(x.existing) + u8::from(y.existing),
            1,
            "statement {i}: exactly one copy appended it"
        );
        check_receipt(rx, &envelopes[i], issuer(i), &log_key);
        check_receipt(ry, &envelopes[i], issuer(i), &log_key);
        indices.insert(rx.index);
    }
    assert_eq!(indices.len(), envelopes.len());
    let size = checkpoint(&mut client, &log_key).await.checkpoint.size;
    assert_eq!(size, (keys.len() + envelopes.len()) as u64);
}

/// Identical submissions, answered: one index for all, and exactly one of them appended it.
#[track_caller]
fn assert_one_entry(answers: &[proto::SubmitResponse], index: u64) {
    let indices: HashSet<u64> = answers
        .iter()
        .map(|a| a.receipt.as_ref().expect("a receipt").index)
        .collect();
    assert_eq!(indices, HashSet::from([index]));
    let new = answers.iter().filter(|a| !a.existing).count();
    assert_eq!(
        new,
        1,
        "{new} of {} identical submissions say they appended the entry",
        answers.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_have_precise_errors() {
    let mut node = TestNode::start().await;
    let log_key = node.verifier().await;
    let mut client = node.client().await;
    let key = generate_signing_key();
    let mut receipts = Vec::new();
    for i in 0..5 {
        let envelope = match i {
            0 => declaration(&key, "reader"),
            i => harvest(&key, &format!("read {i}")),
        };
        let answer = client.submit(envelope).await.unwrap();
        receipts.push(answer.receipt.unwrap());
    }
    let latest = checkpoint(&mut client, &log_key).await;
    assert_eq!(latest.checkpoint.size, 5);
    let ledger = &mut client.ledger;
    let get = |key: Option<Key>| proto::GetEntryRequest { key };

    // GetEntry.
    let entry = ledger
        .get_entry(get(Some(Key::Index(4))))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(entry.entry.unwrap().leaf, receipts[4].leaf);
    assert_status(
        ledger.get_entry(get(Some(Key::Index(5)))).await,
        Code::OutOfRange,
        "5",
    );
    let unknown = Key::StatementId(vec![7; 32]);
    assert_status(
        ledger.get_entry(get(Some(unknown))).await,
        Code::NotFound,
        "statement",
    );
    let short = Key::StatementId(vec![7; 5]);
    assert_status(
        ledger.get_entry(get(Some(short))).await,
        Code::InvalidArgument,
        "32",
    );
    assert_status(
        ledger.get_entry(get(None)).await,
        Code::InvalidArgument,
        "index",
    );

    // GetInclusionProof.
    let prove = |leaf: Leaf, tree_size: u64| proto::GetInclusionProofRequest {
        leaf: Some(leaf),
        tree_size,
    };
    assert_status(
        ledger.get_inclusion_proof(prove(Leaf::Index(0), 6)).await,
        Code::OutOfRange,
        "6",
    );
    assert_status(
        ledger.get_inclusion_proof(prove(Leaf::Index(5), 0)).await,
        Code::OutOfRange,
        "5",
    );
    let by_hash = ledger
        .get_inclusion_proof(prove(Leaf::LeafHash(receipts[2].leaf_hash.clone()), 0))
        .await
        .expect("GetInclusionProof by leaf hash")
        .into_inner();
    assert_eq!((by_hash.index, by_hash.tree_size), (2, 5));
    assert_eq!(by_hash.checkpoint, latest.note);
    let leaf_hash = hashes_from_bytes(&[&by_hash.leaf_hash]).unwrap()[0];
    let path = hashes_from_bytes(&by_hash.proof).unwrap();
    verify_inclusion(&leaf_hash, 2, 5, &path, &latest.checkpoint.root).expect("inclusion");
    // At an older size the node sends no checkpoint: the root is the one of an old receipt.
    let old = SignedCheckpoint::verify(&receipts[2].checkpoint, &log_key)
        .unwrap()
        .checkpoint;
    assert_eq!(old.size, 3);
    let at_three = ledger
        .get_inclusion_proof(prove(Leaf::Index(1), 3))
        .await
        .unwrap()
        .into_inner();
    assert!(at_three.checkpoint.is_empty());
    let leaf_hash = hashes_from_bytes(&[&receipts[1].leaf_hash]).unwrap()[0];
    let path = hashes_from_bytes(&at_three.proof).unwrap();
    verify_inclusion(&leaf_hash, 1, 3, &path, &old.root).expect("inclusion at size 3");
    let unknown = Leaf::LeafHash(vec![9; 32]);
    assert_status(
        ledger.get_inclusion_proof(prove(unknown, 0)).await,
        Code::NotFound,
        "leaf hash",
    );
    let short = Leaf::LeafHash(vec![9; 5]);
    assert_status(
        ledger.get_inclusion_proof(prove(short, 0)).await,
        Code::InvalidArgument,
        "leaf hash",
    );

    // GetConsistencyProof.
    let consistency = |from_size, to_size| proto::GetConsistencyProofRequest { from_size, to_size };
    assert_status(
        ledger.get_consistency_proof(consistency(0, 0)).await,
        Code::InvalidArgument,
        "from_size",
    );
    assert_status(
        ledger.get_consistency_proof(consistency(6, 0)).await,
        Code::InvalidArgument,
        "from_size",
    );
    assert_status(
        ledger.get_consistency_proof(consistency(1, 6)).await,
        Code::OutOfRange,
        "6",
    );
    let proof = ledger
        .get_consistency_proof(consistency(3, 0))
        .await
        .unwrap()
        .into_inner();
    let path = hashes_from_bytes(&proof.proof).unwrap();
    verify_consistency(3, 5, &path, &old.root, &latest.checkpoint.root).expect("consistency");

    // GetEntries streams exactly [start, end).
    let range = entries(&mut client, 1, 4).await;
    assert_eq!(range.iter().map(|e| e.index).collect::<Vec<_>>(), [1, 2, 3]);
    assert!(range
        .iter()
        .all(|e| e.leaf == receipts[e.index as usize].leaf));
    assert_eq!(entries(&mut client, 0, 0).await.len(), 5);
    assert!(entries(&mut client, 3, 3).await.is_empty());
    let range = |start, end| proto::GetEntriesRequest { start, end };
    assert_status(
        client.ledger.get_entries(range(0, 6)).await,
        Code::OutOfRange,
        "6",
    );
    assert_status(
        client.ledger.get_entries(range(4, 2)).await,
        Code::InvalidArgument,
        "start",
    );

    // What was acknowledged is durable: a SIGKILL loses none of it.
    node.kill().await;
    node.restart().await;
    let mut client = node.client().await;
    assert_eq!(client.checkpoint().await.unwrap().checkpoint, latest.note);
    let leaves: Vec<_> = entries(&mut client, 0, 0)
        .await
        .into_iter()
        .map(|e| e.leaf)
        .collect();
    assert_eq!(
        leaves,
        receipts.iter().map(|r| r.leaf.clone()).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reflection_names_the_ledger_service() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::{ServerReflectionRequest, ServerReflectionResponse};

    let node = TestNode::start().await;
    let channel = crate::util::channel(&node.url()).await;

    // What `grpcurl -plaintext ADDR list` asks, then the file defining the ledger service.
    let ask = |message_request| ServerReflectionRequest {
        host: String::new(),
        message_request: Some(message_request),
    };
    let requests = vec![
        ask(MessageRequest::ListServices(String::new())),
        ask(MessageRequest::FileContainingSymbol(
            "fairtrail.v1.LedgerService".into(),
        )),
    ];
    let mut answers = ServerReflectionClient::new(channel.clone())
        .server_reflection_info(tokio_stream::iter(requests))
        .await
        .expect("ServerReflectionInfo")
        .into_inner();
    async fn next(
        answers: &mut tonic::Streaming<ServerReflectionResponse>,
    ) -> Option<MessageResponse> {
        let answer = timeout(CALL_TIMEOUT, answers.message()).await;
        let answer = answer
            .expect("reflection stalled")
            .expect("reflection failed");
        answer.expect("an answer per request").message_response
    }
    let Some(MessageResponse::ListServicesResponse(list)) = next(&mut answers).await else {
        panic!("no service list");
    };
    let names: HashSet<String> = list.service.into_iter().map(|s| s.name).collect();
    for wanted in ["fairtrail.v1.LedgerService", "grpc.health.v1.Health"] {
        assert!(
            names.contains(wanted),
            "{wanted} is not listed in {names:?}"
        );
    }
    let Some(MessageResponse::FileDescriptorResponse(files)) = next(&mut answers).await else {
        panic!("no file for fairtrail.v1.LedgerService");
    };
    assert!(!files.file_descriptor_proto.is_empty());

    let mut health = HealthClient::new(channel);
    for service in ["", "fairtrail.v1.LedgerService"] {
        let request = HealthCheckRequest {
            service: service.into(),
        };
        let answer = health.check(request).await.expect("Check").into_inner();
        assert_eq!(
            answer.status,
            ServingStatus::Serving as i32,
            "service {service:?}"
        );
    }
    let request = HealthCheckRequest {
        service: "no.such.Service".into(),
    };
    assert_status(health.check(request).await, Code::NotFound, "");
}

/// A second node on a serving node's data directory refuses to start (the first holds the
/// directory's `LOCK` for as long as it runs, not just while opening it), and the first keeps
/// serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_node_on_a_serving_directory_refuses_to_start() {
    let node = TestNode::start().await;
    let log_key = node.verifier().await;
    let mut client = node.client().await;
    let key = generate_signing_key();
    client.submit(declaration(&key, "first")).await.unwrap();
    let refused = crate::util::tiles::refused_start(node.data_dir()).await;
    assert!(
        refused.contains("another fairtrail-node"),
        "the second node names the reason: {refused}"
    );
    let envelope = harvest(&key, "still served");
    let answer = client.submit(envelope.clone()).await.unwrap();
    check_receipt(answer.receipt.as_ref().unwrap(), &envelope, &key, &log_key);
}
