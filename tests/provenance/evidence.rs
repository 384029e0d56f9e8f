//! The evidence: a forged signature refused by the node, and caught offline even when a
//! lying node proves it; bundles with an entry, a proof or the checkpoint tampered with.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use fairtrail_client::bundle::Bundle;
use fairtrail_client::checkpoint::{Checkpoint, SignedCheckpoint};
use fairtrail_client::keys::read_signing_key;
use fairtrail_client::merkle::{leaf_hash, MemoryTree};
use fairtrail_client::note::NoteSigner;
use fairtrail_client::proto;
use prost::Message;
use serde_json::Value;
use tonic::Code;

use super::Scene;
use crate::util::chain::Knobs;
use crate::util::verdict::Verdict;
use crate::util::writer::{harvest, key, pk, Writer};
use crate::util::{assert_status, entries};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_signature_is_refused_by_the_node_and_caught_offline() {
    let s = Scene::new(Knobs::default()).await;
    let mut w = Writer {
        client: s.node.client().await,
        log_key: s.chain.w.log_key.clone(),
    };
    let keys = &s.chain.keys;

    // 1. The node refuses a signature that does not verify, and a statement whose issuer
    //    did not sign it.
    let coop = pk(&keys.coop);
    let mut forged = Writer::envelope(&coop, harvest("500kg", "USD 1.95/lb", "F-1"), &[&keys.coop]);
    forged.signatures[0].sig[32] ^= 1;
    assert_status(
        w.submit(forged).await,
        Code::InvalidArgument,
        "does not verify",
    );
    let usurped = Writer::envelope(
        &coop,
        harvest("500kg", "USD 1.95/lb", "F-2"),
        &[&keys.importer],
    );
    assert_status(
        w.submit(usurped).await,
        Code::InvalidArgument,
        "did not sign the envelope",
    );

    // 2. A lying node could log a forged statement anyway and prove it: the harvest's
    //    signature is forged, the tree rebuilt and the checkpoint signed with the log's own
    //    key. The proofs hold; the signature does not.
    let mut bundle =
        Bundle::from_json(&std::fs::read_to_string(s.bundle().await).unwrap()).unwrap();
    let signed = SignedCheckpoint::verify(&bundle.checkpoint, &w.log_key)
        .unwrap()
        .checkpoint;
    let mut leaves: Vec<Vec<u8>> = entries(&mut w.client, 0, signed.size)
        .await
        .into_iter()
        .map(|e| e.leaf)
        .collect();
    let at = s.chain.harvest.index;
    let mut entry = proto::LogEntry::decode(leaves[at as usize].as_slice()).unwrap();
    entry.envelope.as_mut().unwrap().signatures[0].sig[32] ^= 1;
    leaves[at as usize] = entry.encode_to_vec();
    let mut tree = MemoryTree::new();
    for leaf in &leaves {
        tree.push_leaf_hash(leaf_hash(leaf));
    }
    for e in &mut bundle.entries {
        e.leaf = leaves[e.index as usize].clone();
        e.inclusion_proof = tree.prove_inclusion(e.index, signed.size).unwrap();
    }
    let log_signer = read_signing_key(&s.node.data_dir().join("log-key.pem")).unwrap();
    let log_signer = NoteSigner::new(&signed.origin, log_signer).unwrap();
    let root = tree.root();
    bundle.checkpoint = Checkpoint { root, ..signed }.sign(&log_signer).unwrap();
    let file = s.dir.path().join("forged.json");
    std::fs::write(&file, bundle.to_json()).unwrap();

    let v = Verdict::offline(&file, &s.policy).await;
    let f = v.assert_fails("bad_signature", Some(at));
    assert!(
        f["message"].as_str().unwrap().contains("does not verify"),
        "{f}"
    );
    v.assert_only(&["bad_signature"]);
    let ran: Vec<bool> = v.report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["ran"] == true)
        .collect();
    assert_eq!(
        ran,
        [true, true, true, false, false, false, false, false, false, false]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_bundle_fails_offline() {
    let mut s = Scene::new(Knobs::default()).await;
    let original: Value =
        serde_json::from_str(&std::fs::read_to_string(s.bundle().await).unwrap()).unwrap();
    let signed =
        SignedCheckpoint::verify(original["checkpoint"].as_str().unwrap(), &s.chain.w.log_key)
            .unwrap();
    s.node.stop().await;
    let position = |index: u64| {
        original["entries"]
            .as_array()
            .unwrap()
            .iter()
            .position(|e| e["index"] == index)
            .unwrap_or_else(|| panic!("entry {index} is not in the bundle"))
    };
    let (harvest, export) = (s.chain.harvest.index, s.chain.export.index);

    // An entry changed: one byte in the middle of the harvest's leaf.
    let mut entry_changed = original.clone();
    let leaf = &mut entry_changed["entries"][position(harvest)]["leaf"];
    let mut bytes = B64.decode(leaf.as_str().unwrap()).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    *leaf = B64.encode(bytes).into();
    // A proof changed: the first hash of the export's inclusion proof.
    let mut proof_changed = original.clone();
    let hash = &mut proof_changed["entries"][position(export)]["inclusion_proof"][0];
    let flipped = flip_first_digit(hash.as_str().unwrap());
    *hash = flipped.into();
    // The checkpoint re-signed by another key, under the log's own name.
    let mut resigned = original.clone();
    let impostor = NoteSigner::new(&signed.checkpoint.origin, key(251)).unwrap();
    resigned["checkpoint"] = signed.checkpoint.sign(&impostor).unwrap().into();

    let cases = [
        ("entry", entry_changed, "not_in_log", Some(harvest)),
        ("proof", proof_changed, "not_in_log", Some(export)),
        ("checkpoint", resigned, "checkpoint_not_signed_by_log", None),
    ];
    for (what, tampered, problem, entry) in cases {
        let file = s.dir.path().join(format!("{what}-changed.json"));
        std::fs::write(&file, serde_json::to_string_pretty(&tampered).unwrap()).unwrap();
        let v = Verdict::offline(&file, &s.policy).await;
        v.assert_fails(problem, entry);
        v.assert_only(&[problem]);
        assert!(
            v.report["chain"]["journey"].as_array().unwrap().is_empty(),
            "{what}"
        );
    }
}

fn flip_first_digit(hex: &str) -> String {
    let first = if hex.starts_with('0') { "1" } else { "0" };
    format!("{first}{}", &hex[1..])
}
