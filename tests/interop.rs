//! The independent receipt verifier in `tests/interop/` (Python, written from SPEC.md alone)
//! agrees with the node: it accepts a receipt the CLI printed, and refuses tampered copies.

use std::path::Path;
use std::time::Duration;

use tokio::process::Command;
use tokio::time::timeout;

use crate::util::{arg, fairtrail, TestNode};

/// Runs the Python verifier; `None` when Python is not installed (outside CI only).
async fn python_verify(receipt: &Path, log_key: &str) -> Option<(bool, String)> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/verify_receipt.py");
    let run = Command::new("python3")
        .arg(&script)
        .arg(receipt)
        .arg(log_key)
        .kill_on_drop(true)
        .output();
    match timeout(Duration::from_secs(120), run).await {
        Ok(Ok(out)) => Some((
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )),
        Ok(Err(e))
            if e.kind() == std::io::ErrorKind::NotFound && std::env::var_os("CI").is_none() =>
        {
            eprintln!("python3 is not installed: skipping the independent verifier");
            None
        }
        Ok(Err(e)) => panic!("cannot run python3: {e}"),
        Err(_) => panic!("the Python verifier did not finish within 120 s"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_independent_verifier_accepts_cli_receipts_and_refuses_tampered_ones() {
    let node = TestNode::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("coop.pem");
    let state = dir.path().join("state.json");
    let url = node.url();
    fairtrail(&["keygen", "--out", arg(&key)], &[]).await.ok();
    let receipt = fairtrail(
        &[
            "--node",
            &url,
            "--state",
            arg(&state),
            "--key",
            arg(&key),
            "--json",
            "declare",
            "--name",
            "Cooperativa Interop",
            "--role",
            "producer",
            "--country",
            "PE",
        ],
        &[],
    )
    .await;
    let text = receipt.ok().to_owned();
    let file = dir.path().join("receipt.json");
    std::fs::write(&file, &text).expect("write");
    let log_key = node.log_key().await;

    let Some((ok, out)) = python_verify(&file, &log_key).await else {
        return;
    };
    assert!(
        ok && out.starts_with("VALID"),
        "the independent verifier refused a real receipt: {out}"
    );

    let mut json: serde_json::Value = serde_json::from_str(&text).expect("receipt JSON");
    let leaf_hash = json["leaf_hash"].as_str().expect("leaf_hash").to_owned();
    let flipped = format!(
        "{}{}",
        if leaf_hash.starts_with('0') { '1' } else { '0' },
        &leaf_hash[1..]
    );
    json["leaf_hash"] = serde_json::Value::String(flipped);
    let tampered = dir.path().join("tampered.json");
    std::fs::write(&tampered, json.to_string()).expect("write");
    let (ok, out) = python_verify(&tampered, &log_key)
        .await
        .expect("python ran once already");
    assert!(
        !ok && out.starts_with("INVALID"),
        "a tampered receipt was accepted: {out}"
    );

    let other_key = "other.example/log+00000000+AQYHER70wbE2dJK50UVXW3dB59Zj6IZZ8tz693vEF27h";
    let (ok, _) = python_verify(&file, other_key)
        .await
        .expect("python ran once already");
    assert!(!ok, "a receipt verified under another log's key");
}
