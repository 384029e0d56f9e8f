//! `fairtrail audit` end to end: a clean log passes; a byte flipped in a stopped node's tiles
//! stops the node at start (or is refused on read); a history rewritten and re-signed with the
//! node's own key is caught against the checkpoint seen before; and a log forged by a malicious
//! node (a double spend, a statement nobody signed, a statement logged twice, time going back)
//! is served with valid proofs, yet every bad entry is named.

use std::path::Path;

use ed25519_dalek::SigningKey;
use fairtrail_client::entry::encode_leaf;
use fairtrail_client::envelope::{self, StatementId};
use fairtrail_client::keys::generate_signing_key;
use fairtrail_client::merkle::{hashes_from_bytes, verify_inclusion};
use fairtrail_client::proto;
use fairtrail_client::proto::get_entry_request::Key;
use fairtrail_client::proto::get_inclusion_proof_request::Leaf as ProofLeaf;
use fairtrail_client::statement;
use tonic::Code;

use crate::util::tiles::{
    checkpoint_on_disk, forge_data_dir, leaf_location, log_signer, read_leaves, refused_start,
    write_log,
};
use crate::util::{arg, checkpoint, declaration, fairtrail, harvest, CliOutput, TestNode};

/// The exit code of `fairtrail audit` when it finds anything.
const EXIT_FINDINGS: i32 = 5;
/// When the forged log's statements were issued.
const T0: u64 = 1_700_000_000_000;

/// `fairtrail audit` against `node`, with its state in `state` and `--json` if asked.
async fn audit(node: &TestNode, log_key: &str, state: &Path, json: bool) -> CliOutput {
    let url = node.url();
    let mut args = vec![
        "--node",
        url.as_str(),
        "--log-key",
        log_key,
        "--state",
        arg(state),
    ];
    if json {
        args.push("--json");
    }
    args.push("audit");
    fairtrail(&args, &[]).await
}

/// The findings of an `audit --json` run as (index, check, rule), after checking its exit code.
fn findings(out: &CliOutput) -> Vec<(Option<u64>, String, Option<String>)> {
    let report: serde_json::Value =
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("audit --json: {e}: {out:?}"));
    let list = report["findings"].as_array().expect("a findings array");
    let expected_code = if list.is_empty() { 0 } else { EXIT_FINDINGS };
    assert_eq!(out.status.code(), Some(expected_code), "{out:?}");
    assert_eq!(report["clean"], list.is_empty(), "{out:?}");
    list.iter()
        .map(|f| {
            (
                f["index"].as_u64(),
                f["check"].as_str().expect("a check").to_owned(),
                f["rule"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

/// Flips one bit of the first signature's S half (so R still decodes and the leaf still
/// parses) of entry `index`, in place in its entry bundle.
fn flip_signature_bit(data_dir: &Path, index: u64, signature: &[u8]) {
    let size = checkpoint_on_disk(data_dir).checkpoint.size;
    let (path, at) = leaf_location(data_dir, size, index);
    let mut bytes = std::fs::read(&path).unwrap();
    let offset = bytes[at..]
        .windows(signature.len())
        .position(|w| w == signature)
        .expect("the signature is in the leaf");
    bytes[at + offset + 40] ^= 0x01;
    std::fs::write(&path, bytes).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn audit_passes_a_clean_log_and_catches_a_rewritten_one() {
    let mut node = TestNode::start().await;
    let log_key = node.log_key().await;
    let home = tempfile::tempdir().unwrap();
    let state = home.path().join("state.json");

    // 1. A clean log: declarations, harvests, a transfer and its receipt.
    let (a, b) = (generate_signing_key(), generate_signing_key());
    let lot = harvest(&a, "lot 1");
    let shipped = transfer(&a, &lot, &b, 30_000, "invoice 1");
    let envelopes = vec![
        declaration(&a, "producer a"),
        declaration(&b, "producer b"),
        lot.clone(),
        harvest(&a, "lot 2"),
        shipped.clone(),
        receipt(&b, &shipped, 30_000),
    ];
    let mut client = node.client().await;
    for e in &envelopes {
        client.submit(e.clone()).await.expect("Submit");
    }
    let size = envelopes.len() as u64;
    let out = audit(&node, &log_key, &state, true).await;
    assert_eq!(findings(&out), vec![]);
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        (&report["entries"], &report["signatures"], &report["size"]),
        (&size.into(), &size.into(), &size.into())
    );
    // People get a summary; a clean audit saved the checkpoint it checked.
    let out = audit(&node, &log_key, &state, false).await;
    assert!(out.ok().contains("clean: no finding"), "{out:?}");
    assert!(
        out.stdout.contains("seen before"),
        "the second audit checks the first one's checkpoint: {out:?}"
    );

    // 2. A bit flipped in a signature on disk: the leaf no longer hashes to its tile, and the
    //    node refuses to start rather than serve it.
    node.stop().await;
    let data = node.data_dir().to_owned();
    let signature = envelopes[3].signatures[0].sig.clone();
    flip_signature_bit(&data, 3, &signature);
    let refused = refused_start(&data).await;
    assert!(
        refused.contains("corrupt") && refused.contains("entries"),
        "the node's complaint names the corrupt bundle: {refused}"
    );

    // 3. The same change, with the tiles rewritten around it and the checkpoint re-signed with
    //    the node's own key (what whoever holds the data directory can do): the node starts,
    //    and a new auditor finds the unsigned entry; one that saw the old checkpoint also
    //    finds the rewritten history.
    let leaves = read_leaves(&data);
    let signer = log_signer(&data);
    write_log(&data, &leaves, &signer);
    std::fs::remove_dir_all(data.join("index")).unwrap();
    node.restart().await;
    let fresh = home.path().join("fresh.json");
    assert_eq!(
        findings(&audit(&node, &log_key, &fresh, true).await),
        vec![(Some(3), "signature".to_owned(), None)]
    );
    let out = audit(&node, &log_key, &state, true).await;
    assert_eq!(
        findings(&out),
        vec![
            (Some(3), "signature".to_owned(), None),
            (None, "consistency".to_owned(), None)
        ]
    );
    assert!(
        out.stdout.contains("forked or rewritten its history"),
        "{out:?}"
    );
    let out = audit(&node, &log_key, &state, false).await;
    assert_eq!(out.status.code(), Some(EXIT_FINDINGS), "{out:?}");
    assert!(
        out.stdout.contains("entry #3: [signature]") && out.stdout.contains("2 findings"),
        "{out:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn audit_names_each_bad_entry_of_a_forged_log() {
    // A malicious node's log, built with the library and signed with its own key: valid
    // tiles, a valid checkpoint, valid proofs; the node serves it. Entries (integration time
    // T0 + index unless said otherwise):
    //   0, 1       A and B declare themselves (producers)
    //   2 ..= 261  260 harvests by A, of 69 kg each (the tiles hold a full bundle)
    //   262        A ships 50 kg of harvest #2 to B
    //   263        A ships 50 kg of harvest #2 to B again: only 19 kg are left (double spend)
    //   264        a harvest "by A" whose signature does not verify (A never signed it)
    //   265        B confirms the shipment of 262
    //   266        harvest #2 logged a second time
    //   267        a harvest by B integrated before entry 266 (time goes back)
    //   268        B ships 20 kg of what it received to A (valid)
    let (a, b) = (generate_signing_key(), generate_signing_key());
    let mut envelopes = vec![declaration(&a, "producer a"), declaration(&b, "producer b")];
    envelopes.extend((0..260).map(|i| harvest(&a, &format!("filler {i}"))));
    let first = envelopes[2].clone();
    let shipped = transfer(&a, &first, &b, 50_000, "invoice 1");
    envelopes.push(shipped.clone());
    envelopes.push(transfer(&a, &first, &b, 50_000, "invoice 2"));
    let mut unsigned = harvest(&a, "never signed");
    unsigned.signatures[0].sig[40] ^= 0x01;
    envelopes.push(unsigned);
    envelopes.push(receipt(&b, &shipped, 50_000));
    envelopes.push(first.clone());
    envelopes.push(harvest(&b, "late"));
    envelopes.push(transfer(&b, &shipped, &a, 20_000, "invoice 3"));
    let leaves: Vec<Vec<u8>> = envelopes
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            let at = if i == 267 { T0 } else { T0 + i as u64 };
            encode_leaf(e, at).expect("a leaf")
        })
        .collect();
    let log_key = generate_signing_key();
    let mut node =
        TestNode::start_with(|dir| forge_data_dir(dir, &log_key, "forged.example/log", &leaves))
            .await;
    let key_text = node.log_key().await;
    let verifier = node.verifier().await;

    // What a verifier holding a receipt sees: the double spend is in the signed tree.
    let mut client = node.client().await;
    let latest = checkpoint(&mut client, &verifier).await;
    assert_eq!(latest.checkpoint.size, 269);
    let entry = client.entry(Key::Index(263)).await.expect("GetEntry");
    let proof = client
        .inclusion_proof(ProofLeaf::Index(263), 0)
        .await
        .expect("GetInclusionProof");
    let path = hashes_from_bytes(&proof.proof).unwrap();
    verify_inclusion(
        &fairtrail_client::merkle::leaf_hash(&entry.leaf),
        263,
        269,
        &path,
        &latest.checkpoint.root,
    )
    .expect("the double spend is provably in the log");
    // The node's own replay refuses it, but still finds it by its statement id.
    let id = StatementId::of_payload(&transfer(&a, &first, &b, 50_000, "invoice 2").payload);
    let by_id = client
        .entry(Key::StatementId(id.as_bytes().to_vec()))
        .await
        .expect("GetEntry by the statement id of a refused entry");
    assert_eq!(by_id.index, 263);
    // A duplicate never takes over the first copy's index.
    let first_id = StatementId::of_payload(&first.payload);
    let by_id = client
        .entry(Key::StatementId(first_id.as_bytes().to_vec()))
        .await
        .expect("GetEntry by the statement id of a duplicated entry");
    assert_eq!(by_id.index, 2);

    // What an auditor sees: each bad entry, by index.
    let home = tempfile::tempdir().unwrap();
    let state = home.path().join("state.json");
    let out = audit(&node, &key_text, &state, true).await;
    assert_eq!(
        findings(&out),
        vec![
            (
                Some(263),
                "rules".to_owned(),
                Some("lot_overdrawn".to_owned())
            ),
            (Some(264), "signature".to_owned(), None),
            (Some(266), "duplicate".to_owned(), None),
            (Some(267), "integration_time".to_owned(), None),
        ],
        "{out:?}"
    );
    let out = audit(&node, &key_text, &state, false).await;
    assert_eq!(out.status.code(), Some(EXIT_FINDINGS), "{out:?}");
    for line in [
        "entry #263: [rules: lot_overdrawn]",
        "entry #264: [signature]",
        "entry #266: [duplicate] statement",
        "entry #267: [integration_time]",
        "4 findings",
    ] {
        assert!(out.stdout.contains(line), "no {line:?} in {out:?}");
    }

    // A byte flipped in a full bundle (not read at start, whose index needs no replay): the
    // node starts, but refuses to serve the bundle, and the audit cannot complete.
    node.stop().await;
    let data = node.data_dir().to_owned();
    let (path, at) = leaf_location(&data, 269, 100);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[at + 20] ^= 0x01;
    std::fs::write(&path, bytes).unwrap();
    node.restart().await;
    let mut client = node.client().await;
    let refused = client
        .entry(Key::Index(100))
        .await
        .expect_err("a corrupt entry");
    assert_eq!(refused.code(), Some(Code::Internal), "{refused}");
    let out = audit(&node, &key_text, &state, true).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stderr.contains("could not be completed"), "{out:?}");
}

/// A statement by `key` with `body`, signed by it.
fn signed(key: &SigningKey, body: proto::statement::Body) -> proto::Envelope {
    let statement = proto::Statement {
        issuer: key.verifying_key().to_bytes().to_vec(),
        issued_at_ms: T0,
        references: Vec::new(),
        remark: String::new(),
        body: Some(body),
    };
    envelope::sign(statement::encode(&statement), &[key])
}

/// `from` ships `amount` grams of the lot made by `lot` to `to`.
fn transfer(
    from: &SigningKey,
    lot: &proto::Envelope,
    to: &SigningKey,
    amount: u64,
    document: &str,
) -> proto::Envelope {
    let body = proto::statement::Body::Transfer(proto::Transfer {
        inputs: vec![proto::LotInput {
            lot: Some(proto::LotRef {
                statement_id: StatementId::of_payload(&lot.payload).as_bytes().to_vec(),
                output: 0,
            }),
            amount,
        }],
        recipient: to.verifying_key().to_bytes().to_vec(),
        price: None,
        document_reference: document.to_owned(),
    });
    signed(from, body)
}

/// `by` confirms that `amount` grams of `shipment` arrived.
fn receipt(by: &SigningKey, shipment: &proto::Envelope, amount: u64) -> proto::Envelope {
    let body = proto::statement::Body::Receipt(proto::Receipt {
        transfer: StatementId::of_payload(&shipment.payload)
            .as_bytes()
            .to_vec(),
        outcome: proto::ReceiptOutcome::Confirmed as i32,
        amount_received: amount,
    });
    signed(by, body)
}
