//! Certifications: revoked before the shipment, out of scope, expired, and a PGS quorum of
//! distinct peers demanded by the node and by the policy.

use tonic::Code;

use super::{knobs, Scene};
use crate::util::assert_status;
use crate::util::chain::{certification, CertifiedBy, BATCH, GTIN, PGS_SCHEME};
use crate::util::writer::{key, rotation, DAY, HOUR};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certification_revoked_before_the_shipment_fails() {
    let s = Scene::new(knobs(|k| k.revoke_after_harvest = true)).await;
    let c = &s.chain;
    let revocation = c.revocation.expect("the revocation");
    assert!(
        c.harvest.at < c.export.at,
        "the export follows the revocation's effective time"
    );

    let v = s.verify().await;
    let f = v.assert_fails("certification_revoked", Some(c.export.index));
    assert!(
        f["message"].as_str().unwrap().contains("revoked from"),
        "{f}"
    );
    v.assert_only(&["certification_revoked"]);
    assert!(
        !v.mentions_problem_at(c.harvest.index),
        "the harvest came before the revocation"
    );
    let cert = v.report["chain"]["certifications"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["statement_id"] == c.cert.id.to_string())
        .expect("the certification is shown");
    assert_eq!(cert["status_changes"][0]["kind"], "revoked");
    assert_eq!(cert["status_changes"][0]["entry"], revocation.index);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certification_out_of_scope_fails() {
    let s = Scene::new(knobs(|k| k.cert_commodities = &["cocoa"])).await;
    let v = s.verify().await;
    let f = v.assert_fails("certification_out_of_scope", Some(s.chain.harvest.index));
    assert!(
        f["message"]
            .as_str()
            .unwrap()
            .contains("its scope is cocoa"),
        "{f}"
    );
    v.assert_fails("certification_out_of_scope", Some(s.chain.export.index));
    v.assert_only(&["certification_out_of_scope"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_certification_fails() {
    let s = Scene::new(knobs(|k| (k.cert_from, k.cert_until) = (-365 * DAY, -HOUR))).await;
    let v = s.verify().await;
    let f = v.assert_fails("certification_expired", Some(s.chain.harvest.index));
    assert!(f["message"].as_str().unwrap().contains("expired on"), "{f}");
    v.assert_fails("certification_expired", Some(s.chain.export.index));
    v.assert_only(&["certification_expired"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pgs_certification_needs_its_quorum_of_distinct_peers() {
    let mut s = Scene::new(knobs(|k| k.certified_by = CertifiedBy::Peers(2))).await;
    let peers = s.chain.keys.peers.clone();
    let w = &mut s.chain.w;

    // 1. The node refuses fewer distinct members than the network declared (2): one member
    //    alone, with a participant who is not a member, twice over, or with its own retired
    //    key beside its new one.
    let now = fairtrail_client::statement::now_ms();
    let (from, until) = (now, now + 365 * DAY as u64);
    let renewal = certification(
        &s.chain.keys,
        CertifiedBy::Peers(1),
        "RAGP-HN-0002",
        &["coffee"],
        from,
        until,
    );
    let quorum = "participatory certification: 1 distinct signatures of the members of Red Andina de Garantía Participativa, 2 needed";
    let alone = w.try_write(&peers[2], renewal.clone(), &[]).await;
    assert_status(alone, Code::FailedPrecondition, quorum);
    let importer = &s.chain.keys.importer;
    let with_stranger = w.try_write(&peers[2], renewal.clone(), &[importer]).await;
    assert_status(with_stranger, Code::FailedPrecondition, quorum);
    let twice = w.try_write(&peers[2], renewal.clone(), &[&peers[2]]).await;
    assert_status(twice, Code::InvalidArgument, "signs the envelope twice");
    let renewed_key = key(15);
    w.write(&peers[0], rotation(&renewed_key, false), &[&renewed_key])
        .await;
    let old_and_new = w
        .try_write(&renewed_key, renewal.clone(), &[&peers[0]])
        .await;
    assert_status(old_and_new, Code::FailedPrecondition, quorum);
    // A member who rotated counts once, with its current key.
    let renewed = w.write(&renewed_key, renewal, &[&peers[1]]).await;

    // 2. Two of three members: the cooperative's steps are peer certified, by the first
    //    certification (co-signed before the member rotated) and by the renewal.
    let v = s.verify().await;
    v.assert_verified();
    for cert in [s.chain.cert, renewed] {
        let view = v.report["chain"]["certifications"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["statement_id"] == cert.id.to_string())
            .expect("the PGS certification is shown");
        assert_eq!(
            (&view["scheme"], &view["assurance"]),
            (&PGS_SCHEME.into(), &"peer_certified".into())
        );
        assert_eq!(
            (view["peers"].as_array().unwrap().len(), &view["quorum"]),
            (2, &2.into()),
            "{view}"
        );
        assert_eq!(view["trusted"], true, "{view}");
    }

    // 3. A policy that demands three peers, more than the network declared.
    let v = s
        .verify_with(&[GTIN, BATCH], |p| p.replace("quorum = 2", "quorum = 3"))
        .await;
    let f = v.assert_fails("pgs_quorum_not_met", Some(s.chain.harvest.index));
    assert!(
        f["message"]
            .as_str()
            .unwrap()
            .contains("the policy requires 3"),
        "{f}"
    );
    v.assert_fails("pgs_quorum_not_met", Some(s.chain.export.index));
    v.assert_only(&["pgs_quorum_not_met"]);
}
