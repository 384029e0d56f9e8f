//! Provenance end to end: coffee chains written to a real node and verified by the real
//! `fairtrail verify` against a trust policy. The sound chains verify, online and offline
//! with no node running; each way of breaking a chain is caught on its own, either refused
//! by the node at sequencing (its gRPC status) or failed by the verifier (its `Problem` in
//! the JSON report, and exit code 5); and the provenance service is read directly, its
//! proofs checked with the log's key alone.
//!
//! # Layout
//! - this file: [`Scene`], a node with a chain written to it and the retailer's policy.
//! - [`sound`]: the demo chain and a bundle verified offline.
//! - [`evidence`]: forged signatures, tampered bundles.
//! - [`certifications`]: revoked, out of scope, expired; PGS quorums.
//! - [`trade`]: double spends, yields, prices, receipts, disputes.
//! - [`keys`]: rotation and recovery.
//! - [`service`]: the gRPC `ProvenanceService`, read directly.

mod certifications;
mod evidence;
mod keys;
mod service;
mod sound;
mod trade;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use fairtrail_client::proto;
use fairtrail_client::proto::provenance_service_client::ProvenanceServiceClient;
use tonic::transport::Channel;

use crate::util::chain::{Chain, Knobs, BATCH, GTIN};
use crate::util::verdict::Verdict;
use crate::util::writer::{take, transfer};
use crate::util::{arg, channel, fairtrail, TestNode};

/// A node with a chain written to it, and a directory holding the retailer's policy.
struct Scene {
    node: TestNode,
    chain: Chain,
    log_key: String,
    dir: tempfile::TempDir,
    policy: PathBuf,
}

impl Scene {
    async fn new(knobs: Knobs) -> Scene {
        let node = TestNode::start().await;
        let chain = Chain::write(&node, knobs).await;
        let log_key = chain.w.log_key.to_text();
        let dir = tempfile::tempdir().unwrap();
        let policy = chain.write_policy(dir.path(), &log_key, "policy.toml", |p| p);
        Scene {
            node,
            chain,
            log_key,
            dir,
            policy,
        }
    }

    /// `fairtrail verify` of the product online, with the retailer's policy.
    async fn verify(&self) -> Verdict {
        Verdict::online(&self.node.url(), &[GTIN, BATCH], &self.policy).await
    }

    /// `fairtrail verify` of `subject` online, with the policy changed by `edit`.
    async fn verify_with(&self, subject: &[&str], edit: impl FnOnce(String) -> String) -> Verdict {
        static POLICIES: AtomicUsize = AtomicUsize::new(0);
        let name = format!("policy-{}.toml", POLICIES.fetch_add(1, Ordering::Relaxed));
        let policy = self
            .chain
            .write_policy(self.dir.path(), &self.log_key, &name, edit);
        Verdict::online(&self.node.url(), subject, &policy).await
    }

    /// `fairtrail bundle` of the product, written to a new file.
    async fn bundle(&self) -> PathBuf {
        let file = self.dir.path().join("bundle.json");
        let url = self.node.url();
        let args = [
            "--node",
            &url,
            "--log-key",
            &self.log_key,
            "bundle",
            GTIN,
            BATCH,
        ];
        let out = fairtrail(&[&args[..], &["--out", arg(&file)]].concat(), &[]).await;
        assert!(out.ok().contains("wrote the bundle of GTIN"), "{out:?}");
        file
    }

    async fn provenance(&self) -> ProvenanceServiceClient<Channel> {
        ProvenanceServiceClient::new(channel(&self.node.url()).await)
            .max_decoding_message_size(64 * 1024 * 1024)
    }
}

fn knobs(change: impl FnOnce(&mut Knobs)) -> Knobs {
    let mut k = Knobs::default();
    change(&mut k);
    k
}

/// The importer ships `quantity` of what is left of the cooperative's export to the roaster.
fn reship(chain: &Chain, quantity: &str) -> proto::statement::Body {
    let lot = chain.export.lot(0);
    transfer(
        vec![take(lot, quantity)],
        &chain.keys.roaster,
        "USD 3.10/lb",
        "INV SCI-2026-1203",
    )
}
