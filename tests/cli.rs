//! The `fairtrail` CLI end to end: keys, declarations, receipts checked offline (and their
//! tampered copies refused), checkpoints checked for consistency, and a fork caught.

use std::path::Path;

use fairtrail_client::keys::{generate_signing_key, PublicKey};
use fairtrail_client::note::NoteSigner;
use fairtrail_client::receipt::ReceiptJson;

use crate::util::{arg, declaration, fairtrail, CliOutput, TestNode};

/// The exit code of `fairtrail checkpoint` when it sees a fork.
const EXIT_FORK: i32 = 3;

/// `fairtrail declare --json` with the `common` global flags; the receipt it prints.
async fn declare(common: &[&str], key_file: &Path, name: &str) -> ReceiptJson {
    let mut args = common.to_vec();
    args.extend(["--key", arg(key_file), "--json", "declare", "--name", name]);
    args.extend(["--role", "producer", "--country", "hn"]);
    ReceiptJson::parse(fairtrail(&args, &[]).await.ok()).expect("declare --json prints a receipt")
}

/// `fairtrail verify-receipt` on `receipt`, written to a file in `dir`, offline.
async fn verify_receipt(dir: &Path, receipt: &ReceiptJson, log_key: &str) -> CliOutput {
    let file = tempfile::NamedTempFile::new_in(dir).unwrap();
    std::fs::write(file.path(), serde_json::to_string(receipt).unwrap()).unwrap();
    let args = ["verify-receipt", arg(file.path()), "--log-key", log_key];
    fairtrail(&args, &[]).await
}

/// Changes one hex digit.
fn flip_digit(hex: &str) -> String {
    let mut digits: Vec<char> = hex.chars().collect();
    digits[7] = if digits[7] == '0' { '1' } else { '0' };
    digits.into_iter().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cli_round_trip() {
    let mut node = TestNode::start().await;
    let (url, log_key) = (node.url(), node.log_key().await);
    let home = tempfile::tempdir().unwrap();
    let state = home.path().join("state.json");
    let common = [
        "--node",
        &url,
        "--state",
        arg(&state),
        "--log-key",
        &log_key,
    ];

    // 1. Two participants (a key declares itself once), each with a key from `keygen`.
    let key_file = home.path().join("key.pem");
    let other_key_file = home.path().join("other.pem");
    let public = fairtrail(&["keygen", "--out", arg(&key_file)], &[]).await;
    let public: PublicKey = public.ok().trim().parse().expect("keygen prints a key");
    fairtrail(&["keygen", "--out", arg(&other_key_file)], &[])
        .await
        .ok();
    let first = declare(&common, &key_file, "Cooperativa Cafetalera").await;
    assert_eq!((first.index, first.existing), (0, false));

    // 2. Checkpoints: the first is saved, each later one is proved consistent with it.
    let checkpoint = [&common[..], &["checkpoint"]].concat();
    let seen = fairtrail(&checkpoint, &[]).await;
    assert!(seen.ok().contains("first checkpoint seen"), "{seen:?}");
    let second = declare(&common, &other_key_file, "Asociación de Productores").await;
    assert_eq!((second.index, second.existing), (1, false));
    let seen = fairtrail(&checkpoint, &[]).await;
    assert!(
        seen.ok()
            .contains("consistent with the checkpoint of size 1"),
        "{seen:?}"
    );
    let seen = fairtrail(&[&common[..], &["--json", "checkpoint"]].concat(), &[]).await;
    let seen: serde_json::Value = serde_json::from_str(seen.ok()).expect("checkpoint --json");
    assert_eq!(
        (&seen["size"], &seen["consistent_with_size"]),
        (&2.into(), &2.into())
    );

    // 3. Reads and proofs, checked by the CLI against the log key.
    let got = fairtrail(&[&common[..], &["get", "0", "--json"]].concat(), &[]).await;
    let got: serde_json::Value = serde_json::from_str(got.ok()).expect("get --json");
    assert_eq!(got["index"], 0);
    assert_eq!(got["statement_id"], first.statement_id.as_str());
    assert_eq!(got["issuer"], public.to_string().as_str());
    assert_eq!(got["signatures_verified"], true);
    let proved = fairtrail(&[&common[..], &["--json", "prove", "1"]].concat(), &[]).await;
    let proved: serde_json::Value = serde_json::from_str(proved.ok()).expect("prove --json");
    assert_eq!(proved["verified"], true);

    // 4. Offline: the node is gone, the log key (here from the environment) is enough.
    node.stop().await;
    let receipt_file = home.path().join("receipt.json");
    std::fs::write(&receipt_file, serde_json::to_string(&second).unwrap()).unwrap();
    let args = ["verify-receipt", arg(&receipt_file)];
    let ok = fairtrail(&args, &[("FAIRTRAIL_LOG_KEY", &log_key)]).await;
    assert!(ok.ok().contains("#1"), "{ok:?}");

    // 5. Every changed copy of the receipt is refused, and so is another log's key.
    let mut tampered = Vec::new();
    let mut receipt = second.clone();
    receipt.leaf_hash = flip_digit(&receipt.leaf_hash);
    tampered.push(("leaf hash", receipt));
    let mut receipt = second.clone();
    assert_eq!(
        receipt.inclusion_proof.len(),
        1,
        "entry 1 of 2 has one sibling"
    );
    receipt.inclusion_proof[0] = flip_digit(&receipt.inclusion_proof[0]);
    tampered.push(("inclusion proof", receipt));
    let mut receipt = second.clone();
    receipt.index = 0;
    tampered.push(("index", receipt));
    for (what, receipt) in &tampered {
        let out = verify_receipt(home.path(), receipt, &log_key).await;
        assert!(!out.status.success(), "a changed {what} verifies: {out:?}");
        assert!(out.stderr.contains("does not verify"), "{out:?}");
    }
    let stranger = NoteSigner::new("fairtrail.local/log", generate_signing_key()).unwrap();
    let out = verify_receipt(home.path(), &second, &stranger.verifier().to_text()).await;
    assert!(!out.status.success(), "another log's key verifies: {out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fork_is_detected_loudly() {
    let home = tempfile::tempdir().unwrap();
    let state = home.path().join("state.json");

    // 1. Log A: one entry, its key pinned on first use and its checkpoint saved in the state.
    let mut a = TestNode::start().await;
    let log_key = a.log_key().await;
    let history_a = declaration(&generate_signing_key(), "history A");
    a.client().await.submit(history_a).await.unwrap();
    let args = ["--node", &a.url(), "--state", arg(&state), "checkpoint"];
    let seen = fairtrail(&args, &[]).await;
    seen.ok();
    assert!(seen.stderr.contains("pinning"), "{seen:?}");
    let a_note = a.client().await.checkpoint().await.unwrap().checkpoint;
    a.stop().await;

    // 2. Log B: the same key and origin, another history.
    let mut b = TestNode::start_with(|dir| {
        for file in ["log-key.pem", "origin"] {
            std::fs::copy(a.data_dir().join(file), dir.join(file)).expect("copy A's key");
        }
    })
    .await;
    assert_eq!(b.log_key().await, log_key);
    let mut b_client = b.client().await;

    // 3. B at A's size with another root, then B larger than A: both are forks.
    let url = b.url();
    let args = [
        "--log-key",
        &log_key,
        "--state",
        arg(&state),
        "--node",
        &url,
    ];
    let cases = [
        (
            "history B",
            false,
            "two different roots for the same tree size 1",
        ),
        (
            "history B grows",
            true,
            "consistency proof from size 1 to 2 fails",
        ),
    ];
    for (name, json, reason) in cases {
        let history_b = declaration(&generate_signing_key(), name);
        b_client.submit(history_b).await.unwrap();
        let b_note = b_client.checkpoint().await.unwrap().checkpoint;
        let json_flag: &[&str] = if json { &["--json"] } else { &[] };
        let out = fairtrail(&[&args[..], json_flag, &["checkpoint"]].concat(), &[]).await;
        assert_eq!(out.status.code(), Some(EXIT_FORK), "{out:?}");
        assert!(out.stderr.contains("FORK"), "{out:?}");
        assert!(out.stderr.contains(reason), "{out:?}");
        assert!(
            out.stderr.contains(&a_note),
            "A's checkpoint is not shown: {out:?}"
        );
        assert!(
            out.stderr.contains(&b_note),
            "B's checkpoint is not shown: {out:?}"
        );
        if json {
            let fork: serde_json::Value = serde_json::from_str(&out.stdout).expect("fork --json");
            assert_eq!(fork["fork"], true);
            assert_eq!(fork["previous"], a_note.as_str());
            assert_eq!(fork["latest"], b_note.as_str());
        }
    }

    // 4. The state still holds A's checkpoint: a fork never overwrites the evidence.
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    assert_eq!(saved["logs"][&log_key]["checkpoint"], a_note.as_str());
    b.stop().await;
}
