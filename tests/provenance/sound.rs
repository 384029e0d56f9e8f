//! The sound chains verify: the demo's, online, and ours from a bundle file with no node
//! running.

use std::collections::BTreeSet;

use serde_json::Value;

use super::Scene;
use crate::util::chain::Knobs;
use crate::util::verdict::{fairtrail_in, Verdict, EXIT_VERIFIED};
use crate::util::{arg, fairtrail, TestNode};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_chain_verifies() {
    let node = TestNode::start().await;
    let dir = tempfile::tempdir().unwrap();
    let url = node.url();
    let demo = fairtrail_in(dir.path(), &["--node", &url, "demo"]).await;
    assert_eq!(demo.status.code(), Some(EXIT_VERIFIED), "{demo:?}");
    let (gtin, batch) = demo
        .stdout
        .lines()
        .find_map(|l| {
            l.strip_prefix("the chain behind GTIN ")?
                .strip_suffix(':')?
                .split_once(" batch ")
        })
        .unwrap_or_else(|| panic!("the demo names no product: {demo:?}"));
    assert!(dir.path().join("demo-policy.toml").is_file(), "{demo:?}");

    let verify = [
        "--node",
        &url,
        "verify",
        gtin,
        batch,
        "--policy",
        "demo-policy.toml",
    ];
    let text = fairtrail_in(dir.path(), &verify).await;
    assert_eq!(text.status.code(), Some(EXIT_VERIFIED), "{text:?}");
    assert!(text.stdout.contains("Verdict: VERIFIED\n"), "{text:?}");
    let json = fairtrail_in(dir.path(), &[&verify[..], &["--json"]].concat()).await;
    let report: Value = serde_json::from_str(json.ok()).expect("verify --json prints the report");
    assert_eq!(report["verdict"], "verified");
    assert_eq!(report["chain"]["product"]["gtin"], gtin);
    assert_eq!(report["chain"]["product"]["batch"], batch);
    let kinds: Vec<&str> = report["chain"]["journey"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "harvest",
            "harvest",
            "transfer",
            "transfer",
            "transfer",
            "transformation",
            "transfer",
            "product_binding"
        ]
    );
    let assurances: BTreeSet<&str> = report["chain"]["certifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["assurance"].as_str().unwrap())
        .collect();
    assert_eq!(
        assurances,
        BTreeSet::from(["peer_certified", "third_party_certified"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_verifies_offline_with_no_node_running() {
    let mut s = Scene::new(Knobs::default()).await;
    let bundle = s.bundle().await;
    s.node.stop().await;

    let v = Verdict::offline(&bundle, &s.policy).await;
    v.assert_verified();
    let c = &s.chain;
    let journey: Vec<u64> = v.report["chain"]["journey"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["entry"].as_u64().unwrap())
        .collect();
    let steps = [
        c.harvest,
        c.export,
        c.to_roaster,
        c.roasting,
        c.to_retailer,
        c.binding,
    ];
    assert_eq!(journey, steps.map(|s| s.index));
    let args = [
        "verify",
        "--bundle",
        arg(&bundle),
        "--policy",
        arg(&s.policy),
    ];
    let text = fairtrail(&args, &[]).await;
    assert!(text.ok().contains("Verdict: VERIFIED\n"), "{text:?}");
}
