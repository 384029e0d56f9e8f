//! The provenance service read directly: bundles by product and by lot proven against their
//! checkpoint, a participant after a rotation, what is left of lots after partial shipments,
//! and bad requests refused with precise codes.

use std::collections::BTreeSet;

use fairtrail_client::bundle::Bundle;
use fairtrail_client::checkpoint::SignedCheckpoint;
use fairtrail_client::entry::Leaf;
use fairtrail_client::keys::PublicKey;
use fairtrail_client::merkle::{hashes_from_bytes, leaf_hash, verify_inclusion};
use fairtrail_client::note::NoteVerifier;
use fairtrail_client::proto::provenance_service_client::ProvenanceServiceClient;
use fairtrail_client::proto::{self, get_provenance_request::Subject, statement::Body};
use fairtrail_client::statement::Statement;
use fairtrail_client::verify::{render_text, verify_bundle, Policy, Verdict};
use tonic::transport::Channel;
use tonic::Code;

use super::{reship, Scene};
use crate::util::assert_status;
use crate::util::chain::{Knobs, BATCH, GTIN};
use crate::util::writer::{amount, harvest, key, pk, rotation, take, transfer, Logged};

/// Checks the bundle's checkpoint with the log's key and every entry's inclusion proof
/// against it; returns the entries' indices.
#[track_caller]
fn proven(bundle: &proto::ProvenanceBundle, log_key: &NoteVerifier) -> BTreeSet<u64> {
    let checkpoint = SignedCheckpoint::verify(&bundle.checkpoint, log_key)
        .expect("the bundle's checkpoint is signed by the log")
        .checkpoint;
    assert!(!bundle.entries.is_empty());
    for e in &bundle.entries {
        let proof = hashes_from_bytes(&e.inclusion_proof).expect("proof hashes of 32 bytes");
        verify_inclusion(
            &leaf_hash(&e.leaf),
            e.index,
            checkpoint.size,
            &proof,
            &checkpoint.root,
        )
        .unwrap_or_else(|err| panic!("entry {}'s inclusion proof: {err}", e.index));
    }
    bundle.entries.iter().map(|e| e.index).collect()
}

/// The bundle the node answers for `subject`.
async fn bundle_of(
    p: &mut ProvenanceServiceClient<Channel>,
    subject: Subject,
) -> proto::ProvenanceBundle {
    p.get_provenance(proto::GetProvenanceRequest {
        subject: Some(subject),
    })
    .await
    .unwrap()
    .into_inner()
    .bundle
    .unwrap()
}

/// Each entry's statement kind and issuer.
fn statements(bundle: &proto::ProvenanceBundle) -> Vec<(u64, &'static str, PublicKey)> {
    bundle
        .entries
        .iter()
        .map(|e| {
            let leaf = Leaf::decode(e.leaf.clone()).expect("a leaf");
            let statement = Statement::decode_payload(&leaf.envelope.payload, leaf.statement_id)
                .expect("a statement");
            (e.index, statement.kind(), statement.issuer)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_provenance_by_product_and_by_lot_proves_every_entry() {
    let s = Scene::new(Knobs::default()).await;
    let (c, log_key) = (&s.chain, &s.chain.w.log_key);
    let mut p = s.provenance().await;
    let product = proto::ProductKey {
        gtin: GTIN.into(),
        batch: BATCH.into(),
        serial: String::new(),
    };
    let by_product = bundle_of(&mut p, Subject::Product(product.clone())).await;
    // Asked again against the same checkpoint, it is answered from the bundle kept for it:
    // the same bundle.
    let again = bundle_of(&mut p, Subject::Product(product.clone())).await;
    assert_eq!(again, by_product);
    assert_eq!(
        by_product.subject,
        Some(proto::provenance_bundle::Subject::Product(product))
    );
    let indices = proven(&by_product, log_key);
    let chain = [
        c.cert,
        c.harvest,
        c.export,
        c.to_roaster,
        c.roasting,
        c.to_retailer,
        c.binding,
    ];
    for step in chain {
        assert!(
            indices.contains(&step.index),
            "entry {} is missing from {indices:?}",
            step.index
        );
    }
    // Nothing in it rests on the node's word: the library verifies it against the policy.
    let policy = Policy::from_toml(&c.policy_toml(&s.log_key)).unwrap();
    let report = verify_bundle(&Bundle::try_from(by_product).unwrap(), &policy);
    assert_eq!(
        report.verdict,
        Verdict::Verified,
        "{}",
        render_text(&report)
    );

    // By lot: the roasted coffee's chain goes upstream only.
    let lot = c.roasting.lot(0).to_proto();
    let by_lot = bundle_of(&mut p, Subject::Lot(lot.clone())).await;
    assert_eq!(
        by_lot.subject,
        Some(proto::provenance_bundle::Subject::Lot(lot))
    );
    let indices = proven(&by_lot, log_key);
    for step in &chain[..5] {
        assert!(
            indices.contains(&step.index),
            "entry {} is missing from {indices:?}",
            step.index
        );
    }
    for downstream in [c.to_retailer, c.binding] {
        assert!(
            !indices.contains(&downstream.index),
            "{indices:?} holds a later entry"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_participant_shows_declaration_certifications_and_current_key_after_rotation() {
    let mut s = Scene::new(Knobs::default()).await;
    let (coop, new_key) = (s.chain.keys.coop.clone(), key(12));
    let rotated = s
        .chain
        .w
        .write(&coop, rotation(&new_key, false), &[&new_key])
        .await;
    let mut p = s.provenance().await;

    for asked in [pk(&coop), pk(&new_key)] {
        let request = proto::GetParticipantRequest {
            public_key: asked.as_bytes().to_vec(),
        };
        let answer = p.get_participant(request).await.unwrap().into_inner();
        assert_eq!(
            answer.current_key,
            pk(&new_key).as_bytes(),
            "asked by {asked}"
        );
        let bundle = answer.bundle.unwrap();
        proven(&bundle, &s.chain.w.log_key);
        let found = statements(&bundle);
        let has = |index: Option<u64>, kind: &str, issuer: PublicKey| {
            found
                .iter()
                .any(|(i, k, by)| index.is_none_or(|x| x == *i) && *k == kind && *by == issuer)
        };
        assert!(has(None, "participant declaration", pk(&coop)), "{found:?}");
        assert!(
            has(
                Some(s.chain.cert.index),
                "certification",
                pk(&s.chain.keys.certifier)
            ),
            "{found:?}"
        );
        assert!(
            has(Some(rotated.index), "key rotation", pk(&coop)),
            "{found:?}"
        );
        let policy = Policy::from_toml(&s.chain.policy_toml(&s.log_key)).unwrap();
        let report = verify_bundle(&Bundle::try_from(bundle).unwrap(), &policy);
        assert_eq!(
            report.verdict,
            Verdict::Verified,
            "{}",
            render_text(&report)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_lot_shows_what_is_left_after_partial_shipments() {
    let mut s = Scene::new(Knobs::default()).await;
    let c = &s.chain;
    let mut p = s.provenance().await;
    let lot = |logged: &Logged| proto::GetLotRequest {
        lot: Some(logged.lot(0).to_proto()),
    };
    let gram = proto::Unit::Gram as i32;

    // The export: 12,000 kg, of which the importer shipped 10,000 kg to the roaster.
    let export = p.get_lot(lot(&c.export)).await.unwrap().into_inner();
    assert_eq!((export.remaining, export.unit), (amount("2000kg"), gram));
    assert_eq!(
        (export.commodity.as_str(), export.holder.as_slice()),
        ("green coffee", pk(&c.keys.importer).as_bytes().as_slice())
    );
    let made_and_used = BTreeSet::from([c.export.index, c.to_roaster.index]);
    assert_eq!(proven(&export.bundle.unwrap(), &c.w.log_key), made_and_used);
    // The roasted coffee: 8,300 kg made, 1,200 kg shipped to the retailer.
    let roasted = p.get_lot(lot(&c.roasting)).await.unwrap().into_inner();
    assert_eq!(
        (roasted.remaining, roasted.commodity.as_str()),
        (amount("7100kg"), "roasted coffee")
    );
    assert_eq!(roasted.holder, pk(&c.keys.roaster).as_bytes());
    // The harvest: all of it exported.
    assert_eq!(
        p.get_lot(lot(&c.harvest))
            .await
            .unwrap()
            .into_inner()
            .remaining,
        0
    );

    // Another partial shipment from the export.
    let importer = c.keys.importer.clone();
    let body = reship(c, "500kg");
    let more = s.chain.w.write(&importer, body, &[]).await;
    let export = p.get_lot(lot(&s.chain.export)).await.unwrap().into_inner();
    assert_eq!(export.remaining, amount("1500kg"));
    let made_and_used =
        BTreeSet::from([s.chain.export.index, s.chain.to_roaster.index, more.index]);
    assert_eq!(
        proven(&export.bundle.unwrap(), &s.chain.w.log_key),
        made_and_used
    );
}

/// A product made from 320 harvests: its bundle, of more entries than a kept bundle is copied
/// on the request's task for, is built, kept, and answered again the same (the copy made on
/// the blocking pool), every entry proven.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_bundle_is_answered_again_from_the_keep() {
    const HARVESTS: usize = 320;
    const PER_SHIPMENT: usize = 64;
    let mut s = Scene::new(Knobs::default()).await;
    let (coop, retailer) = (s.chain.keys.coop.clone(), s.chain.keys.retailer.clone());
    let mut harvests = Vec::new();
    for n in 0..HARVESTS {
        let body = harvest("100kg", "USD 1.95/lb", &format!("HN-BIG-{n}"));
        harvests.push(s.chain.w.write(&coop, body, &[]).await);
    }
    let mut shipments = Vec::new();
    for (n, lots) in harvests.chunks(PER_SHIPMENT).enumerate() {
        let inputs = lots.iter().map(|h| take(h.lot(0), "100kg")).collect();
        let body = transfer(inputs, &retailer, "USD 2.35/lb", &format!("BL BIG-{n}"));
        shipments.push(s.chain.w.write(&coop, body, &[]).await);
    }
    let binding = Body::ProductBinding(proto::ProductBinding {
        gtin: GTIN.into(),
        batch: "BIG-1".into(),
        serial: String::new(),
        inputs: shipments.iter().map(|t| take(t.lot(0), "6400kg")).collect(),
        product_name: "Marcala blend, many lots".into(),
    });
    let binding = s.chain.w.write(&retailer, binding, &[]).await;

    let mut p = s.provenance().await;
    let product = proto::ProductKey {
        gtin: GTIN.into(),
        batch: "BIG-1".into(),
        serial: String::new(),
    };
    let built = bundle_of(&mut p, Subject::Product(product.clone())).await;
    let kept = bundle_of(&mut p, Subject::Product(product)).await;
    assert!(built.entries.len() > 256, "{} entries", built.entries.len());
    assert_eq!(kept, built);
    let indices = proven(&kept, &s.chain.w.log_key);
    for logged in harvests.iter().chain(&shipments).chain([&binding]) {
        assert!(
            indices.contains(&logged.index),
            "entry {} missing",
            logged.index
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_provenance_requests_are_refused_precisely() {
    let s = Scene::new(Knobs::default()).await;
    let mut p = s.provenance().await;
    let product = |gtin: &str, batch: &str| proto::GetProvenanceRequest {
        subject: Some(Subject::Product(proto::ProductKey {
            gtin: gtin.into(),
            batch: batch.into(),
            serial: String::new(),
        })),
    };
    let short_lot = proto::LotRef {
        statement_id: vec![7; 5],
        output: 0,
    };

    let bad_check_digit = p.get_provenance(product("09506000134353", BATCH)).await;
    assert_status(bad_check_digit, Code::InvalidArgument, "check digit");
    let unknown = p.get_provenance(product(GTIN, "R2026-999")).await;
    assert_status(
        unknown,
        Code::NotFound,
        &format!("no product is bound to GTIN {GTIN} batch R2026-999"),
    );
    let no_subject = p
        .get_provenance(proto::GetProvenanceRequest { subject: None })
        .await;
    assert_status(no_subject, Code::InvalidArgument, "name a product");
    let lot_request = proto::GetProvenanceRequest {
        subject: Some(Subject::Lot(short_lot.clone())),
    };
    assert_status(
        p.get_provenance(lot_request).await,
        Code::InvalidArgument,
        "lot",
    );
    let short = p
        .get_lot(proto::GetLotRequest {
            lot: Some(short_lot),
        })
        .await;
    assert_status(short, Code::InvalidArgument, "lot");
    let unknown_lot = proto::LotRef {
        statement_id: vec![7; 32],
        output: 0,
    };
    let unknown = p
        .get_lot(proto::GetLotRequest {
            lot: Some(unknown_lot),
        })
        .await;
    assert_status(unknown, Code::NotFound, "is not in the log");
    let short_key = proto::GetParticipantRequest {
        public_key: vec![1; 31],
    };
    assert_status(
        p.get_participant(short_key).await,
        Code::InvalidArgument,
        "public_key",
    );
    let stranger = proto::GetParticipantRequest {
        public_key: pk(&key(99)).as_bytes().to_vec(),
    };
    assert_status(
        p.get_participant(stranger).await,
        Code::NotFound,
        "has not declared itself",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_provenance_of_a_lot_that_was_never_made_is_not_found() {
    let s = Scene::new(Knobs::default()).await;
    let mut p = s.provenance().await;
    // A harvest makes one lot (output 0); a certification makes none.
    for never_made in [s.chain.harvest.lot(5), s.chain.cert.lot(0)] {
        let lot = Some(never_made.to_proto());
        let not_found = format!("lot {never_made} is not in the log");
        let by_lot = p.get_lot(proto::GetLotRequest { lot: lot.clone() }).await;
        assert_status(by_lot, Code::NotFound, &not_found);
        let request = proto::GetProvenanceRequest {
            subject: lot.map(Subject::Lot),
        };
        assert_status(p.get_provenance(request).await, Code::NotFound, &not_found);
    }
}
