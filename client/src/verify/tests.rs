//! The verifier's tests: a sound coffee chain verifies, and every way of breaking it (the
//! evidence, the chain, the policy's demands) fails with its own precise finding.
//!
//! - the sound chain: verified; every claim with its assurance; its JSON and text; a bundle
//!   file verified offline; lot and participant bundles
//! - the evidence: forged signatures, tampered entries, changed proofs (each hash flipped,
//!   truncated, extended, swapped, index moved), checkpoints signed by another key, altered
//!   or from another log, no log key, a clock that runs backwards, a statement logged twice
//! - the chain: untraced lots, overdrawn lots, lots used by someone else, yields out of
//!   bounds or unbounded, retired keys, unsound rotations, undeclared keys, missing bindings
//! - the policy's demands: certifications revoked (from their effective time, whenever
//!   logged), suspended, reinstated, expired, not yet valid, out of scope (commodity, role),
//!   by untrusted certifiers, revoked by strangers, missing; PGS quorums; prices and
//!   premiums; receipts missing, disputed, short or by strangers; open disputes
//! - the policy file itself, and the example in `examples/policy.toml`

use super::testlog::{key, pk, Knobs, Scenario, BATCH, DAY, GTIN, ORIGIN, PGS_SCHEME, T0};
use super::*;
use crate::bundle::Subject;
use crate::checkpoint::Checkpoint;
use crate::gs1::ProductId;
use crate::note::NoteSigner;
use crate::proto::{self, RevocationKind};
use crate::rules::LotId;

fn verify(s: &Scenario) -> Report {
    verify_bundle(&s.bundle(), &s.policy())
}

/// Verifies the bundle of GTIN [`GTIN`] batch `batch` from the scenario's log.
fn verify_batch(s: &Scenario, batch: &str) -> Report {
    let product = ProductId::new(GTIN, batch, None).expect("a valid GTIN");
    verify_bundle(&s.log.bundle(Subject::Product(product)), &s.policy())
}

fn scenario(change: impl FnOnce(&mut Knobs)) -> Scenario {
    let mut knobs = Knobs::default();
    change(&mut knobs);
    Scenario::build(knobs)
}

/// Asserts the report failed with `problem` at `entry`, and returns that finding.
#[track_caller]
fn assert_fails(report: &Report, problem: Problem, entry: Option<u64>) -> Finding {
    assert_eq!(report.verdict, Verdict::Failed, "{}", render_text(report));
    report
        .problems(problem)
        .find(|f| f.severity == Severity::Failure && (entry.is_none() || f.entry == entry))
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "no {problem:?} failure at {entry:?} in:\n{}",
                render_text(report)
            )
        })
}

/// Asserts every failure in the report is one of `allowed`: a break causes its own
/// finding, not a cascade of unrelated ones.
#[track_caller]
fn assert_only(report: &Report, allowed: &[Problem]) {
    for f in report.failures() {
        assert!(
            f.problem.is_some_and(|p| allowed.contains(&p)),
            "unexpected {:?}: {}\n{}",
            f.problem,
            f.message,
            render_text(report)
        );
    }
}

/// Asserts the evidence failed at `step` and nothing after it ran.
#[track_caller]
fn assert_stopped_after(report: &Report, step: u8) {
    for s in &report.steps {
        assert_eq!(s.ran, s.number <= step, "step {}", s.number);
    }
    assert!(report.chain.journey.is_empty());
}

// The sound chain.

#[test]
fn the_sound_chain_is_verified() {
    let s = Scenario::build(Knobs::default());
    let report = verify(&s);
    assert_eq!(
        report.verdict,
        Verdict::Verified,
        "{}",
        render_text(&report)
    );
    assert_eq!(report.warnings().count(), 0);
    assert!(report.steps.iter().all(|s| s.ran && !s.findings.is_empty()));

    let chain = &report.chain;
    let product = chain.product.as_ref().expect("the product");
    assert_eq!(
        (product.gtin.as_str(), product.batch.as_str()),
        (GTIN, BATCH)
    );
    assert_eq!(
        product.bound_by.name.as_deref(),
        Some("Green Basket Co-op Stores")
    );
    let kinds: Vec<StepKind> = chain.journey.iter().map(|j| j.kind).collect();
    use StepKind::*;
    assert_eq!(
        kinds,
        [
            Harvest,
            Harvest,
            Transfer,
            Transfer,
            Transfer,
            Transformation,
            Transfer,
            ProductBinding
        ]
    );

    let hn = &chain.journey[0];
    assert_eq!(
        hn.actor.name.as_deref(),
        Some("Cooperativa Cafetalera Marcala")
    );
    assert_eq!(hn.place.as_deref(), Some("Marcala, La Paz, HN"));
    assert_eq!(hn.outputs[0].quantity.text, "12,000 kg");
    let farmgate = hn.farmgate.as_ref().expect("farm-gate prices");
    assert_eq!(
        farmgate.paid.as_ref().and_then(|p| p.per_lb.as_deref()),
        Some("USD 1.95/lb")
    );
    assert_eq!(
        farmgate.minimum.as_ref().and_then(|p| p.per_lb.as_deref()),
        Some("USD 1.80/lb")
    );
    assert_eq!(
        (farmgate.meets_minimum, farmgate.meets_premium),
        (Some(true), Some(true))
    );
    assert_eq!(farmgate.farmer_count, 214);
    assert!(hn.certifications.iter().any(|c| c.covers
        && c.scheme == "Fairtrade"
        && c.assurance == Assurance::ThirdPartyCertified));
    let pe = &chain.journey[1];
    assert!(pe
        .certifications
        .iter()
        .any(|c| c.covers && c.scheme == PGS_SCHEME && c.assurance == Assurance::PeerCertified));

    let export = &chain.journey[2];
    assert_eq!(export.assurance, Assurance::CounterpartyConfirmed);
    assert_eq!(
        export.receipt.as_ref().map(|r| r.outcome.as_str()),
        Some("confirmed")
    );
    assert_eq!(
        export.counterparty.as_ref().and_then(|c| c.name.as_deref()),
        Some("Solidaridad Coffee Importers")
    );
    let roasting = &chain.journey[5];
    assert_eq!(roasting.process.as_deref(), Some("roasting"));
    assert_eq!(roasting.yield_per_mille, Some(830));

    let pgs_cert = chain
        .certifications
        .iter()
        .find(|c| c.scheme == PGS_SCHEME)
        .expect("the PGS certification");
    assert_eq!(pgs_cert.peers.len(), 2);
    assert_eq!(pgs_cert.quorum, Some(2));
    assert!(pgs_cert.trusted);
    assert_eq!(chain.participants.len(), 11);
    assert!(chain.disputes.is_empty());
}

#[test]
fn every_claim_carries_its_assurance() {
    let report = verify(&Scenario::build(Knobs::default()));
    for f in report.findings().filter(|f| f.step >= 5) {
        // Steps 5 and on make claims about the world, except summaries of what was traced.
        if f.entry.is_some() {
            assert!(f.assurance.is_some(), "no assurance: {}", f.message);
        }
    }
    let text = render_text(&report);
    for expected in [
        "1. The checkpoint is signed by the log",
        "10. Open disputes",
        "[self-declared]",
        "[confirmed by the counterparty]",
        "[third-party certified]",
        "[peer (PGS) certified]",
        "USD 1.95/lb (minimum USD 1.80/lb), premium USD 0.20/lb",
        "roasting: Bristol Co-operative Roasters made 13,280 kg roasted coffee from 16,000 kg, yield 830‰",
        "Verdict: VERIFIED",
    ] {
        assert!(text.contains(expected), "{expected:?} not in:\n{text}");
    }
}

#[test]
fn the_report_serialises_to_self_contained_json() {
    let report = verify(&Scenario::build(Knobs::default()));
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["verdict"], "verified");
    assert_eq!(json["steps"][0]["number"], 1);
    assert_eq!(json["chain"]["product"]["gtin"], GTIN);
    assert_eq!(json["chain"]["journey"][0]["kind"], "harvest");
    assert_eq!(
        json["chain"]["journey"][0]["actor"]["name"],
        "Cooperativa Cafetalera Marcala"
    );
    assert_eq!(
        json["chain"]["journey"][0]["farmgate"]["premium"]["per_lb"],
        "USD 0.20/lb"
    );
    assert_eq!(
        json["chain"]["journey"][2]["assurance"],
        "counterparty_confirmed"
    );
}

#[test]
fn a_bundle_file_verifies_offline() {
    let s = Scenario::build(Knobs::default());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bundle.json");
    std::fs::write(&path, s.bundle().to_json()).unwrap();
    let bundle =
        crate::bundle::Bundle::from_json(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(bundle, s.bundle());
    let policy_path = dir.path().join("policy.toml");
    std::fs::write(&policy_path, s.policy_toml()).unwrap();
    let report = verify_bundle(&bundle, &Policy::load(&policy_path).unwrap());
    assert_eq!(
        report.verdict,
        Verdict::Verified,
        "{}",
        render_text(&report)
    );
}

#[test]
fn a_lot_bundle_traces_that_lot() {
    let s = Scenario::build(Knobs::default());
    let bundle = s.log.bundle(Subject::Lot(LotId {
        statement: s.roasting,
        output: 0,
    }));
    let report = verify_bundle(&bundle, &s.policy());
    assert_eq!(
        report.verdict,
        Verdict::Verified,
        "{}",
        render_text(&report)
    );
    assert!(report.chain.product.is_none());
    assert_eq!(
        report.chain.journey.last().map(|j| j.kind),
        Some(StepKind::Transformation)
    );
}

#[test]
fn a_participant_bundle_shows_its_certifications() {
    let s = Scenario::build(Knobs::default());
    let bundle = s.log.bundle(Subject::Participant(pk(&s.keys.hn_coop)));
    let report = verify_bundle(&bundle, &s.policy());
    assert_eq!(
        report.verdict,
        Verdict::Verified,
        "{}",
        render_text(&report)
    );
    assert!(report.findings().any(|f| f.step == 8
        && f.message.contains("FLO ID 3521")
        && f.message.contains("in force")));

    let revoked = scenario(|k| {
        k.hn_cert_changes = vec![(RevocationKind::Revoked, T0 + 20 * DAY, T0 + 20 * DAY)]
    });
    let bundle = revoked
        .log
        .bundle(Subject::Participant(pk(&revoked.keys.hn_coop)));
    let report = verify_bundle(&bundle, &revoked.policy());
    assert_eq!(report.verdict, Verdict::VerifiedWithWarnings);
    assert!(report.has(Problem::CertificationRevoked));
}

// The evidence.

#[test]
fn a_forged_signature_fails() {
    let s = scenario(|k| k.forge_hn_harvest = true);
    let report = verify(&s);
    let f = assert_fails(
        &report,
        Problem::BadSignature,
        Some(s.log.index_of(s.hn_harvest)),
    );
    assert!(f.message.contains("does not verify"), "{}", f.message);
    assert_only(&report, &[Problem::BadSignature]);
    assert_stopped_after(&report, 3);
}

#[test]
fn a_statement_signed_after_it_was_logged_fails() {
    // A node that holds its clock back logs a statement before it was signed. Up to the
    // ledger's ten minutes of skew is allowed; a millisecond more is not.
    for (ahead, fails) in [(10 * 60_000, false), (10 * 60_000 + 1, true)] {
        let mut s = Scenario::build(Knobs::default());
        let retailer = s.keys.retailer.clone();
        let statement = proto::Statement {
            issuer: retailer.verifying_key().to_bytes().to_vec(),
            issued_at_ms: s.log.now + ahead,
            references: Vec::new(),
            remark: String::new(),
            body: Some(proto::statement::Body::Dispute(proto::Dispute {
                entry: s.hn_shipment.as_bytes().to_vec(),
                reason: "late".into(),
            })),
        };
        let id = s.log.append_envelope(crate::envelope::sign(
            crate::statement::encode(&statement),
            &[&retailer],
        ));
        let report = verify(&s);
        if fails {
            let f = assert_fails(
                &report,
                Problem::IssuedAfterLogged,
                Some(s.log.index_of(id)),
            );
            assert!(f.message.contains("held back"), "{}", f.message);
            assert_only(&report, &[Problem::IssuedAfterLogged]);
            assert_stopped_after(&report, 3);
        } else {
            assert!(
                !report.has(Problem::IssuedAfterLogged),
                "{}",
                render_text(&report)
            );
            assert_ne!(report.verdict, Verdict::Failed, "{}", render_text(&report));
        }
    }
}

#[test]
fn a_tampered_entry_is_not_in_the_log() {
    let s = Scenario::build(Knobs::default());
    let index = s.log.index_of(s.hn_harvest);
    let at = index as usize;
    let other_leaf = s.bundle().entries[at + 1].leaf.clone();
    type Tamper = Box<dyn Fn(&mut Vec<u8>)>;
    let breaks: Vec<Tamper> = vec![
        Box::new(|leaf| {
            let middle = leaf.len() / 2;
            leaf[middle] ^= 1;
        }),
        Box::new(|leaf| leaf.truncate(leaf.len() - 1)),
        Box::new(|leaf| leaf.push(0)),
        Box::new(move |leaf| *leaf = other_leaf.clone()),
    ];
    for (n, tamper) in breaks.iter().enumerate() {
        let mut bundle = s.bundle();
        tamper(&mut bundle.entries[at].leaf);
        let report = verify_bundle(&bundle, &s.policy());
        let f = assert_fails(&report, Problem::NotInLog, Some(index));
        assert!(f.message.contains("altered"), "break {n}: {}", f.message);
        assert_only(&report, &[Problem::NotInLog]);
        assert_stopped_after(&report, 2);
    }
}

#[test]
fn a_changed_proof_fails() {
    let s = Scenario::build(Knobs::default());
    let at = s.log.index_of(s.hn_shipment) as usize;
    let proof_len = s.bundle().entries[at].inclusion_proof.len();
    assert!(proof_len >= 4);
    let mut broken = Vec::new();
    for position in 0..proof_len {
        let mut bundle = s.bundle();
        bundle.entries[at].inclusion_proof[position][31] ^= 0x80;
        broken.push(bundle);
    }
    let mut truncated = s.bundle();
    truncated.entries[at].inclusion_proof.pop();
    broken.push(truncated);
    let mut extended = s.bundle();
    extended.entries[at].inclusion_proof.push([0; 32]);
    broken.push(extended);
    let mut swapped = s.bundle();
    swapped.entries[at].inclusion_proof.swap(0, 1);
    broken.push(swapped);
    let mut moved = s.bundle();
    moved.entries[at].index += 1;
    broken.push(moved);
    for bundle in broken {
        let report = verify_bundle(&bundle, &s.policy());
        assert_fails(&report, Problem::NotInLog, Some(bundle.entries[at].index));
        assert_only(&report, &[Problem::NotInLog]);
    }

    let mut beyond = s.bundle();
    let last = beyond.entries.len() - 1;
    beyond.entries[last].index += 1;
    let report = verify_bundle(&beyond, &s.policy());
    assert_fails(
        &report,
        Problem::EntryBeyondCheckpoint,
        Some(last as u64 + 1),
    );

    // An entry beyond the tree has no proof to check (the proofs are checked together): the
    // verdicts of the proofs after it still land on their own entries.
    let mut both = s.bundle();
    let size = both.entries.len() as u64;
    both.entries[0].index = size;
    both.entries[at].inclusion_proof[0][0] ^= 1;
    let report = verify_bundle(&both, &s.policy());
    assert_fails(&report, Problem::EntryBeyondCheckpoint, Some(size));
    assert_fails(&report, Problem::NotInLog, Some(at as u64));
    assert_eq!(
        report.problems(Problem::NotInLog).count(),
        1,
        "{}",
        render_text(&report)
    );
}

#[test]
fn a_checkpoint_signed_by_another_key_fails() {
    let s = Scenario::build(Knobs::default());
    let size = s.bundle().entries.len() as u64;
    let body = |origin: &str| Checkpoint {
        origin: origin.to_owned(),
        size,
        root: crate::merkle::root_from_inclusion_proof(
            &crate::merkle::leaf_hash(&s.bundle().entries[0].leaf),
            0,
            size,
            &s.bundle().entries[0].inclusion_proof,
        )
        .unwrap(),
        extensions: vec![],
    };

    let impostor = NoteSigner::new(ORIGIN, key(251)).unwrap();
    let mut bundle = s.bundle();
    bundle.checkpoint = body(ORIGIN).sign(&impostor).unwrap();
    let report = verify_bundle(&bundle, &s.policy());
    let f = assert_fails(&report, Problem::CheckpointNotSignedByLog, None);
    assert!(f.message.contains("no signature by key"), "{}", f.message);
    assert_stopped_after(&report, 1);
    assert!(report.checkpoint.is_none());

    let mut bundle = s.bundle();
    bundle.checkpoint =
        bundle
            .checkpoint
            .replacen(&format!("\n{size}\n"), &format!("\n{}\n", size + 1), 1);
    assert_fails(
        &verify_bundle(&bundle, &s.policy()),
        Problem::CheckpointNotSignedByLog,
        None,
    );

    let mut bundle = s.bundle();
    bundle.checkpoint = body("other.test/log").sign(&s.log.signer).unwrap();
    assert_fails(
        &verify_bundle(&bundle, &s.policy()),
        Problem::CheckpointFromAnotherLog,
        None,
    );

    let mut bundle = s.bundle();
    bundle.checkpoint = "not a note".into();
    assert_fails(
        &verify_bundle(&bundle, &s.policy()),
        Problem::CheckpointMalformed,
        None,
    );

    let mut policy = s.policy();
    policy.log_key = None;
    let report = verify_bundle(&s.bundle(), &policy);
    assert_fails(&report, Problem::NoLogKey, None);
    assert_stopped_after(&report, 1);
}

// The chain.

#[test]
fn a_lot_whose_creator_is_missing_cannot_be_traced() {
    let s = Scenario::build(Knobs::default());
    let mut bundle = s.bundle();
    let gone = s.log.index_of(s.pe_harvest);
    bundle.entries.retain(|e| e.index != gone);
    let report = verify_bundle(&bundle, &s.policy());
    let f = assert_fails(&report, Problem::UntracedLot, None);
    assert!(
        f.message
            .starts_with(&format!("cannot trace lot {}:0", s.pe_harvest)),
        "{}",
        f.message
    );
    assert_only(&report, &[Problem::UntracedLot]);
}

#[test]
fn using_more_of_a_lot_than_it_holds_fails() {
    let s = scenario(|k| k.roast_input = "16500kg");
    let report = verify(&s);
    let f = assert_fails(
        &report,
        Problem::LotOverdrawn,
        Some(s.log.index_of(s.roasting)),
    );
    assert!(f.message.contains("16,500 kg in all"), "{}", f.message);
    assert_only(&report, &[Problem::LotOverdrawn]);
}

#[test]
fn a_yield_beyond_the_bounds_fails() {
    let s = scenario(|k| k.roasted_output = "15000kg");
    let report = verify(&s);
    let f = assert_fails(
        &report,
        Problem::YieldOutOfBounds,
        Some(s.log.index_of(s.roasting)),
    );
    assert!(
        f.message.contains("937‰") && f.message.contains("780–880‰"),
        "{}",
        f.message
    );
    assert_only(&report, &[Problem::YieldOutOfBounds]);

    let s = scenario(|k| k.roasted_output = "12000kg");
    assert_fails(
        &verify(&s),
        Problem::YieldOutOfBounds,
        Some(s.log.index_of(s.roasting)),
    );
}

#[test]
fn a_process_without_bounds_is_a_warning() {
    let s = Scenario::build(Knobs::default());
    let policy = Policy::from_toml(
        &s.policy_toml()
            .replace("[yields.roasting]", "[yields.\"decaffeination\"]"),
    )
    .unwrap();
    let report = verify_bundle(&s.bundle(), &policy);
    assert_eq!(report.verdict, Verdict::VerifiedWithWarnings);
    assert!(report.has(Problem::NoYieldBound));
}

#[test]
fn an_old_key_used_after_its_rotation_fails() {
    let s = scenario(|k| k.importer_uses_retired_key = true);
    let report = verify(&s);
    let f = assert_fails(&report, Problem::RetiredKey, None);
    assert!(
        f.message
            .contains("Solidaridad Coffee Importers rotated away"),
        "{}",
        f.message
    );
    assert_only(&report, &[Problem::RetiredKey]);
    assert!(report
        .findings()
        .any(|f| f.step == 4 && f.message.contains("moved from key")));
}

#[test]
fn a_product_without_a_binding_cannot_be_traced() {
    let s = Scenario::build(Knobs::default());
    let bundle = s.log.bundle(Subject::Product(
        ProductId::new(GTIN, "OTHER-BATCH", None).unwrap(),
    ));
    let report = verify_bundle(&bundle, &s.policy());
    assert_fails(&report, Problem::NoBinding, None);

    // A serial of a bound batch is covered by the batch's binding.
    let bundle = s.log.bundle(Subject::Product(
        ProductId::new(GTIN, BATCH, Some("0042")).unwrap(),
    ));
    assert_eq!(
        verify_bundle(&bundle, &s.policy()).verdict,
        Verdict::Verified
    );
}

// The policy's demands: certifications.

#[test]
fn a_certification_revoked_before_the_shipment_fails() {
    let s = scenario(|k| {
        k.hn_cert_changes = vec![(RevocationKind::Revoked, T0 + 20 * DAY, T0 + 20 * DAY)]
    });
    let report = verify(&s);
    let f = assert_fails(
        &report,
        Problem::CertificationRevoked,
        Some(s.log.index_of(s.hn_shipment)),
    );
    assert!(
        f.message.contains("revoked from 2024-02-21"),
        "{}",
        f.message
    );
    assert_only(&report, &[Problem::CertificationRevoked]);
    // The harvest, before the revocation, is still covered.
    let harvest = s.log.index_of(s.hn_harvest);
    assert!(!report.failures().any(|f| f.entry == Some(harvest)));
    let cert = report
        .chain
        .certifications
        .iter()
        .find(|c| c.statement_id == s.hn_cert)
        .unwrap();
    assert_eq!(cert.status_changes.len(), 1);
}

#[test]
fn a_revocation_counts_from_its_effective_time_whenever_logged() {
    // Logged long after the shipment, effective before it: the shipment is not covered.
    let s = scenario(|k| {
        k.hn_cert_changes = vec![(RevocationKind::Revoked, T0 + 20 * DAY, T0 + 100 * DAY)]
    });
    assert_fails(
        &verify(&s),
        Problem::CertificationRevoked,
        Some(s.log.index_of(s.hn_shipment)),
    );
    // Logged before the shipment, effective after it: the shipment is covered.
    let s = scenario(|k| {
        k.hn_cert_changes = vec![(RevocationKind::Revoked, T0 + 60 * DAY, T0 + 20 * DAY)]
    });
    assert_eq!(verify(&s).verdict, Verdict::Verified);
}

#[test]
fn a_suspended_certification_fails_until_reinstated() {
    let s = scenario(|k| {
        k.hn_cert_changes = vec![(RevocationKind::Suspended, T0 + 20 * DAY, T0 + 20 * DAY)]
    });
    let report = verify(&s);
    assert_fails(
        &report,
        Problem::CertificationSuspended,
        Some(s.log.index_of(s.hn_shipment)),
    );
    assert_only(&report, &[Problem::CertificationSuspended]);

    let s = scenario(|k| {
        k.hn_cert_changes = vec![
            (RevocationKind::Suspended, T0 + 20 * DAY, T0 + 20 * DAY),
            (RevocationKind::Reinstated, T0 + 30 * DAY, T0 + 30 * DAY),
        ]
    });
    let report = verify(&s);
    assert_eq!(
        report.verdict,
        Verdict::Verified,
        "{}",
        render_text(&report)
    );
}

#[test]
fn a_revocation_by_someone_else_is_refused() {
    let mut s = Scenario::build(Knobs::default());
    let importer = s.keys.importer.clone();
    s.log.append(
        &importer,
        proto::statement::Body::Revocation(proto::Revocation {
            certification: s.hn_cert.as_bytes().to_vec(),
            kind: RevocationKind::Revoked as i32,
            effective_at_ms: T0,
            reason: "a competitor's word".into(),
        }),
        &[],
    );
    let report = verify(&s);
    assert_fails(&report, Problem::UnauthorisedRevocation, None);
    assert_only(&report, &[Problem::UnauthorisedRevocation]);
}

#[test]
fn a_certification_out_of_scope_fails() {
    let s = scenario(|k| k.hn_cert_commodities = vec!["cocoa"]);
    let report = verify(&s);
    let f = assert_fails(
        &report,
        Problem::CertificationOutOfScope,
        Some(s.log.index_of(s.hn_harvest)),
    );
    assert!(f.message.contains("its scope is cocoa"), "{}", f.message);
    assert_fails(
        &report,
        Problem::CertificationOutOfScope,
        Some(s.log.index_of(s.hn_shipment)),
    );
    assert_only(&report, &[Problem::CertificationOutOfScope]);
}

#[test]
fn an_expired_certification_fails() {
    let s = scenario(|k| k.hn_cert_until = T0 + 30 * DAY);
    let report = verify(&s);
    let f = assert_fails(
        &report,
        Problem::CertificationExpired,
        Some(s.log.index_of(s.hn_shipment)),
    );
    assert!(f.message.contains("expired on 2024-03-02"), "{}", f.message);
    assert_only(&report, &[Problem::CertificationExpired]);

    // Within the policy's clock skew, it still covers.
    let s = scenario(|k| k.hn_cert_until = T0 + 40 * DAY - 60_000);
    assert_eq!(verify(&s).verdict, Verdict::Verified);
}

#[test]
fn a_certifier_the_policy_does_not_trust_does_not_count() {
    let s = Scenario::build(Knobs::default());
    let policy = Policy::from_toml(
        &s.policy_toml()
            .replace(&pk(&s.keys.flocert).to_string(), &pk(&key(99)).to_string()),
    )
    .unwrap();
    let report = verify_bundle(&s.bundle(), &policy);
    let f = assert_fails(
        &report,
        Problem::UntrustedCertifier,
        Some(s.log.index_of(s.hn_harvest)),
    );
    assert!(
        f.message
            .contains("FLOCERT GmbH is not one the policy trusts"),
        "{}",
        f.message
    );
    assert_only(&report, &[Problem::UntrustedCertifier]);
}

#[test]
fn a_pgs_certification_needs_its_quorum_of_distinct_peers() {
    // One member signs where the network declared a quorum of two.
    let s = scenario(|k| k.pgs_signers = 1);
    let report = verify(&s);
    assert_fails(
        &report,
        Problem::PgsQuorumNotMet,
        Some(s.log.index_of(s.pe_harvest)),
    );
    assert_only(&report, &[Problem::PgsQuorumNotMet]);

    // Two sign, but the policy asks for three.
    let s = Scenario::build(Knobs::default());
    let policy = Policy::from_toml(&s.policy_toml().replace("quorum = 2", "quorum = 3")).unwrap();
    let report = verify_bundle(&s.bundle(), &policy);
    let f = assert_fails(
        &report,
        Problem::PgsQuorumNotMet,
        Some(s.log.index_of(s.pe_harvest)),
    );
    assert!(f.message.contains("2 distinct members"), "{}", f.message);
    assert_only(&report, &[Problem::PgsQuorumNotMet]);

    // Three sign and the policy asks for three.
    let s = scenario(|k| k.pgs_signers = 3);
    let policy = Policy::from_toml(&s.policy_toml().replace("quorum = 2", "quorum = 3")).unwrap();
    assert_eq!(
        verify_bundle(&s.bundle(), &policy).verdict,
        Verdict::Verified
    );
}

#[test]
fn a_pgs_member_counts_once_and_only_members_count() {
    let s = Scenario::build(Knobs::default());
    // The policy names its own member list, without the second signer.
    let members = format!(
        "members = [\"{}\", \"{}\"]",
        pk(&s.keys.pgs_members[0]),
        pk(&s.keys.pgs_members[2])
    );
    let policy = Policy::from_toml(
        &s.policy_toml()
            .replace("quorum = 2", &format!("quorum = 2\n{members}")),
    )
    .unwrap();
    let report = verify_bundle(&s.bundle(), &policy);
    assert_fails(&report, Problem::PgsQuorumNotMet, None);
}

#[test]
fn an_uncertified_producer_fails() {
    let s = Scenario::build(Knobs::default());
    let mut bundle = s.bundle();
    let cert = s.log.index_of(s.hn_cert);
    bundle.entries.retain(|e| e.index != cert);
    let report = verify_bundle(&bundle, &s.policy());
    assert_fails(
        &report,
        Problem::NotCertified,
        Some(s.log.index_of(s.hn_harvest)),
    );
    assert_only(&report, &[Problem::NotCertified]);
}

// The policy's demands: prices, receipts, disputes.

#[test]
fn a_price_below_the_minimum_fails() {
    let s = scenario(|k| k.hn_price = "USD 1.79/lb");
    let report = verify(&s);
    let f = assert_fails(
        &report,
        Problem::PriceBelowMinimum,
        Some(s.log.index_of(s.hn_harvest)),
    );
    assert!(
        f.message
            .contains("USD 1.79/lb, is below the policy's minimum of USD 1.80/lb"),
        "{}",
        f.message
    );
    assert_eq!(f.assurance, Some(Assurance::SelfDeclared));
    assert_only(&report, &[Problem::PriceBelowMinimum]);
    assert_eq!(
        report.chain.journey[0]
            .farmgate
            .as_ref()
            .and_then(|f| f.meets_minimum),
        Some(false)
    );

    // The same price per kilogram: 3.97/kg is above 1.80/lb (3.968.../kg), 3.96 below.
    let s = scenario(|k| k.hn_price = "USD 3.97/kg");
    assert_eq!(verify(&s).verdict, Verdict::Verified);
    let s = scenario(|k| k.hn_price = "USD 3.96/kg");
    assert_fails(&verify(&s), Problem::PriceBelowMinimum, None);
    let s = scenario(|k| k.hn_price = "EUR 9.00/kg");
    assert_fails(&verify(&s), Problem::PriceNotComparable, None);
}

#[test]
fn a_premium_below_the_minimum_or_missing_fails() {
    let s = scenario(|k| k.hn_premium = Some("USD 0.10/lb"));
    let report = verify(&s);
    assert_fails(
        &report,
        Problem::PremiumBelowMinimum,
        Some(s.log.index_of(s.hn_harvest)),
    );
    assert_only(&report, &[Problem::PremiumBelowMinimum]);

    let s = scenario(|k| k.hn_premium = None);
    let report = verify(&s);
    assert_fails(
        &report,
        Problem::PremiumMissing,
        Some(s.log.index_of(s.hn_harvest)),
    );
    assert_only(&report, &[Problem::PremiumMissing]);
}

#[test]
fn a_missing_receipt_fails_when_required() {
    let s = scenario(|k| k.importer_receipt = false);
    let report = verify(&s);
    let f = assert_fails(
        &report,
        Problem::ReceiptMissing,
        Some(s.log.index_of(s.hn_shipment)),
    );
    assert!(
        f.message.starts_with(
            "Solidaridad Coffee Importers has not confirmed receiving 12,000 kg green coffee"
        ),
        "{}",
        f.message
    );
    assert_only(&report, &[Problem::ReceiptMissing]);

    // Not required: the shipment stands on the shipper's word, and says so.
    let policy = Policy::from_toml(
        &s.policy_toml()
            .replace("require_receipts = true", "require_receipts = false"),
    )
    .unwrap();
    let report = verify_bundle(&s.bundle(), &policy);
    assert_eq!(
        report.verdict,
        Verdict::Verified,
        "{}",
        render_text(&report)
    );
    assert_eq!(report.chain.journey[2].assurance, Assurance::SelfDeclared);
    assert!(report.findings().any(|f| f.step == 7
        && f.assurance == Some(Assurance::SelfDeclared)
        && f.message
            .contains("rests on Cooperativa Cafetalera Marcala's word")));
}

#[test]
fn an_open_dispute_is_a_warning() {
    let s = scenario(|k| k.dispute = true);
    let report = verify(&s);
    assert_eq!(
        report.verdict,
        Verdict::VerifiedWithWarnings,
        "{}",
        render_text(&report)
    );
    let f = report
        .problems(Problem::OpenDispute)
        .next()
        .expect("the dispute");
    assert_eq!(f.severity, Severity::Warning);
    assert!(
        f.message
            .starts_with("Observatorio Cafetalero disputes the harvest at entry"),
        "{}",
        f.message
    );
    let d = &report.chain.disputes[0];
    assert_eq!(d.disputed_statement, s.hn_harvest);
    assert_eq!(d.by.name.as_deref(), Some("Observatorio Cafetalero"));
    assert!(render_text(&report).contains("Verdict: VERIFIED WITH WARNINGS (1 warning)"));
}

// The policy file.

#[test]
fn the_example_policy_is_valid_and_real() {
    let text = include_str!("../../../examples/policy.toml");
    let policy = Policy::from_toml(text).expect("examples/policy.toml is a valid policy");
    let (family, coffee) = policy.commodity("green coffee").expect("coffee");
    assert_eq!(family, "coffee");
    let min = coffee.minimum_price.as_ref().unwrap();
    assert_eq!(
        crate::units::compare_prices(min, &crate::units::parse_price("USD 1.80/lb").unwrap()),
        Some(std::cmp::Ordering::Equal)
    );
    let premium = coffee.premium.as_ref().unwrap();
    assert_eq!(
        crate::units::compare_prices(premium, &crate::units::parse_price("USD 0.20/lb").unwrap()),
        Some(std::cmp::Ordering::Equal)
    );
    assert!(text.contains("Fairtrade International"));
    assert!(policy.yields.contains_key("roasting"));
}

#[test]
fn policy_errors_name_the_field() {
    let s = Scenario::build(Knobs::default());
    let good = s.policy_toml();
    let cases = [
        (
            good.replace("USD 1.80/lb", "USD 1,80/lb"),
            "commodities.\"coffee\".minimum_price",
        ),
        (
            good.replace(&pk(&s.keys.flocert).to_string(), "ed25519:abc"),
            "certifiers.Fairtrade[0]",
        ),
        (good.replace("quorum = 2", "quorum = 0"), "quorum"),
        (
            good.replace("min_per_mille = 780", "min_per_mille = 900"),
            "above max_per_mille",
        ),
        (
            good.replace("\"Fairtrade\", ", "\"Rainforest\", "),
            "no certifier or PGS is trusted for the scheme \"Rainforest\"",
        ),
        (
            good.replace("clock_skew_ms = 300000", "clock_skew_ms = 999999999"),
            "clock_skew_ms",
        ),
        (
            good.replace("require_receipts", "require_reciepts"),
            "unknown field",
        ),
        (
            good.replace(&s.log.verifier().to_text(), "fairtrail.test/log+00+xx"),
            "log_key",
        ),
        (
            good.replace("\"green coffee\",", "\"Green Coffee\","),
            "not a commodity name",
        ),
    ];
    for (text, expected) in cases {
        let err = Policy::from_toml(&text).expect_err(expected).to_string();
        assert!(err.contains(expected), "{expected:?} not in {err:?}");
    }
}

#[test]
fn a_log_key_given_apart_must_match_the_policy() {
    let s = Scenario::build(Knobs::default());
    let other = NoteSigner::new(ORIGIN, key(251)).unwrap().verifier();
    assert!(matches!(
        s.policy().with_log_key(other.clone()),
        Err(PolicyError::LogKeyMismatch { .. })
    ));
    assert!(s.policy().with_log_key(s.log.verifier()).is_ok());
    let mut policy = s.policy();
    policy.log_key = None;
    let policy = policy.with_log_key(s.log.verifier()).unwrap();
    assert_eq!(
        verify_bundle(&s.bundle(), &policy).verdict,
        Verdict::Verified
    );
}

// More ways to break the chain: each names its own problem.

/// Appends a statement to a built scenario, as a lying node would accept it.
fn append(
    s: &mut Scenario,
    who: fn(&super::testlog::Keys) -> &ed25519_dalek::SigningKey,
    body: proto::statement::Body,
) -> u64 {
    let key = who(&s.keys).clone();
    let id = s.log.append(&key, body, &[]);
    s.log.index_of(id)
}

fn receipt_body(
    transfer: crate::envelope::StatementId,
    outcome: proto::ReceiptOutcome,
    grams: u64,
) -> proto::statement::Body {
    proto::statement::Body::Receipt(proto::Receipt {
        transfer: transfer.as_bytes().to_vec(),
        outcome: outcome as i32,
        amount_received: grams,
    })
}

#[test]
fn goods_from_nowhere_fail() {
    use proto::statement::Body;
    let mut s = Scenario::build(Knobs::default());
    let retailer = s.keys.retailer.clone();
    let roaster = s.keys.roaster.clone();
    let bind = |s: &mut Scenario, batch: &str, inputs: Vec<proto::LotInput>| {
        s.log.append(
            &retailer,
            Body::ProductBinding(proto::ProductBinding {
                gtin: GTIN.into(),
                batch: batch.into(),
                serial: String::new(),
                inputs,
                product_name: "Santa Barbara roast".into(),
            }),
            &[],
        )
    };
    let kilos = |id: crate::envelope::StatementId| proto::LotInput {
        lot: Some(proto::LotRef {
            statement_id: id.as_bytes().to_vec(),
            output: 0,
        }),
        amount: 1_000_000,
    };
    // A binding of nothing.
    let empty_binding = bind(&mut s, "NOWHERE-1", vec![]);
    // A roasting of nothing, sold to the retailer, received and bound.
    let roasting = s.log.append(
        &roaster,
        Body::Transformation(proto::Transformation {
            inputs: vec![],
            outputs: vec![proto::LotOutput {
                commodity: "roasted coffee".into(),
                quantity: Some(proto::Quantity {
                    amount: 1_000_000,
                    unit: proto::Unit::Gram as i32,
                }),
                lot_code: "R-NOWHERE".into(),
            }],
            process: "roasting".into(),
        }),
        &[],
    );
    // A transfer of nothing to the retailer, received and bound.
    let transfer = s.log.append(
        &roaster,
        Body::Transfer(proto::Transfer {
            inputs: vec![],
            recipient: retailer.verifying_key().to_bytes().to_vec(),
            price: Some(proto::Price {
                currency: "USD".into(),
                minor_units: 900,
                per: Some(proto::Quantity {
                    amount: 1000,
                    unit: proto::Unit::Gram as i32,
                }),
            }),
            document_reference: "INV-NOWHERE".into(),
        }),
        &[],
    );
    s.log.append(
        &retailer,
        receipt_body(transfer, proto::ReceiptOutcome::Confirmed, 1_000_000),
        &[],
    );
    bind(&mut s, "NOWHERE-2", vec![kilos(roasting)]);
    bind(&mut s, "NOWHERE-3", vec![kilos(transfer)]);
    for (batch, empty) in [
        ("NOWHERE-1", empty_binding),
        ("NOWHERE-2", roasting),
        ("NOWHERE-3", transfer),
    ] {
        let report = verify_batch(&s, batch);
        let f = assert_fails(
            &report,
            Problem::InvalidStatement,
            Some(s.log.index_of(empty)),
        );
        assert!(f.message.contains("uses no lot"), "{batch}: {}", f.message);
    }
}

/// The Peruvian cooperative harvests `(commodity, amount, farm-gate price)` for batch
/// `batch` and ships it all to `to`, who confirms it; returns the transfer's id.
fn shipped(
    s: &mut Scenario,
    batch: &str,
    (commodity, amount, paid): (&str, &str, &str),
    to: &ed25519_dalek::SigningKey,
) -> crate::envelope::StatementId {
    use super::testlog::{kg, price, receipt, take, transfer};
    let pe = s.keys.pe_coop.clone();
    let made = s.log.append(
        &pe,
        proto::statement::Body::Harvest(proto::Harvest {
            commodity: commodity.into(),
            quantity: Some(kg(amount)),
            harvested_from_ms: T0,
            harvested_until_ms: T0 + DAY,
            country: "PE".into(),
            region: "Puno".into(),
            farmgate_price: Some(price(paid)),
            premium: Some(price("USD 0.20/lb")),
            farmer_count: 12,
            lot_code: format!("{batch}-{commodity}"),
        }),
        &[],
    );
    let sale = s.log.append(
        &pe,
        transfer(vec![take(made, 0, amount)], to, "USD 3.00/kg", batch),
        &[],
    );
    s.log.append(to, receipt(sale, amount), &[]);
    sale
}

/// A roaster's chain to a product of batch `batch`: the Peruvian cooperative harvests and
/// ships each of `harvests` (commodity, amount, farm-gate price) to the roaster, who roasts
/// them all into `outputs` (commodity, quantity) and sells output `sold` whole to the
/// retailer, who binds it. Returns the roasting's id.
fn roasted_from(
    s: &mut Scenario,
    batch: &str,
    harvests: &[(&str, &str, &str)],
    outputs: &[(&str, proto::Quantity)],
    sold: u32,
) -> crate::envelope::StatementId {
    use super::testlog::{take, transfer};
    use proto::statement::Body;
    let (roaster, retailer) = (s.keys.roaster.clone(), s.keys.retailer.clone());
    let inputs = harvests
        .iter()
        .map(|&harvest| {
            let amount = harvest.1;
            take(shipped(s, batch, harvest, &roaster), 0, amount)
        })
        .collect();
    let roasting = s.log.append(
        &roaster,
        Body::Transformation(proto::Transformation {
            inputs,
            outputs: outputs
                .iter()
                .map(|(commodity, quantity)| proto::LotOutput {
                    commodity: (*commodity).into(),
                    quantity: Some(*quantity),
                    lot_code: batch.into(),
                })
                .collect(),
            process: "roasting".into(),
        }),
        &[],
    );
    let whole = |id, output| proto::LotInput {
        lot: Some(proto::LotRef {
            statement_id: crate::envelope::StatementId::as_bytes(&id).to_vec(),
            output,
        }),
        amount: outputs[output as usize].1.amount,
    };
    let sale = s.log.append(
        &roaster,
        transfer(vec![whole(roasting, sold)], &retailer, "USD 9.00/kg", batch),
        &[],
    );
    s.log.append(
        &retailer,
        receipt_body(
            sale,
            proto::ReceiptOutcome::Confirmed,
            outputs[sold as usize].1.amount,
        ),
        &[],
    );
    s.log.append(
        &retailer,
        Body::ProductBinding(proto::ProductBinding {
            gtin: GTIN.into(),
            batch: batch.into(),
            serial: String::new(),
            inputs: vec![whole(sale, 0)],
            product_name: "Santa Barbara roast".into(),
        }),
        &[],
    );
    roasting
}

#[test]
fn a_second_output_cannot_escape_the_yield() {
    use super::testlog::kg;
    let mut s = Scenario::build(Knobs::default());
    let coffee = ("green coffee", "1000kg", "USD 2.10/lb");
    let pieces = |n| proto::Quantity {
        amount: n,
        unit: proto::Unit::Piece as i32,
    };
    // 1 t of green coffee roasted into 800 kg, which is plausible, and also into five
    // million pieces of roasted coffee, sold and bound: the yield in coffee cannot be
    // worked out, and roasting is bounded, so it fails.
    let roasting = roasted_from(
        &mut s,
        "DECOY-1",
        &[coffee],
        &[
            ("roasted coffee", kg("800kg")),
            ("roasted coffee", pieces(5_000_000)),
        ],
        1,
    );
    let report = verify_batch(&s, "DECOY-1");
    let f = assert_fails(
        &report,
        Problem::YieldNotComputable,
        Some(s.log.index_of(roasting)),
    );
    assert!(f.message.contains("the policy bounds"), "{}", f.message);
    assert_only(&report, &[Problem::YieldNotComputable]);
}

#[test]
fn a_product_of_nothing_the_policy_names_fails() {
    use super::testlog::take;
    use proto::statement::Body;
    let mut s = Scenario::build(Knobs::default());
    let retailer = s.keys.retailer.clone();
    let sale = shipped(
        &mut s,
        "SAND-3",
        ("sand", "1000kg", "USD 0.01/kg"),
        &retailer,
    );
    let binding = s.log.append(
        &retailer,
        Body::ProductBinding(proto::ProductBinding {
            gtin: GTIN.into(),
            batch: "SAND-3".into(),
            serial: String::new(),
            inputs: vec![take(sale, 0, "1000kg")],
            product_name: "Santa Barbara roast".into(),
        }),
        &[],
    );
    let report = verify_batch(&s, "SAND-3");
    let f = assert_fails(
        &report,
        Problem::ProductNotCovered,
        Some(s.log.index_of(binding)),
    );
    assert!(
        f.message
            .contains("made from harvests of sand, none of which the policy names"),
        "{}",
        f.message
    );
    assert_only(&report, &[Problem::ProductNotCovered]);
}

#[test]
fn a_blend_of_kinds_the_policy_prices_apart_is_counted_whole() {
    use super::testlog::kg;
    // The policy prices natural robusta apart from the coffee family (as the example policy
    // does): a blend of both roasted into "roasted coffee" is made from goods it names, and
    // its yield counts both inputs, 830 kg from 1 t.
    let mut s = Scenario::build(Knobs::default());
    let roasting = roasted_from(
        &mut s,
        "BLEND-1",
        &[
            ("green coffee", "600kg", "USD 2.10/lb"),
            ("natural robusta", "400kg", "USD 1.30/lb"),
        ],
        &[("roasted coffee", kg("830kg"))],
        0,
    );
    let policy = Policy::from_toml(&format!(
        "{}\n[commodities.\"natural robusta\"]\nminimum_price = \"USD 1.20/lb\"\npremium = \"USD 0.20/lb\"\n",
        s.policy_toml()
    ))
    .unwrap();
    let report = verify_bundle(
        &s.log.bundle(Subject::Product(
            ProductId::new(GTIN, "BLEND-1", None).unwrap(),
        )),
        &policy,
    );
    assert_eq!(
        report.verdict,
        Verdict::Verified,
        "{}",
        render_text(&report)
    );
    let step = report
        .chain
        .journey
        .iter()
        .find(|j| j.entry == s.log.index_of(roasting))
        .unwrap();
    assert_eq!(step.yield_per_mille, Some(830));
}

#[test]
fn coffee_made_from_something_else_fails() {
    let mut s = Scenario::build(Knobs::default());
    let sand = ("sand", "16000kg", "USD 0.01/kg");
    let roasted = [("roasted coffee", super::testlog::kg("13000kg"))];
    // Sand roasted into coffee: the policy's coffee made from no coffee.
    let from_sand = roasted_from(&mut s, "SAND-1", &[sand], &roasted, 0);
    // A pinch of coffee in the sand: the yield counts coffee alone, 13 t from 10 kg.
    let pinch = roasted_from(
        &mut s,
        "SAND-2",
        &[sand, ("green coffee", "10kg", "USD 2.10/lb")],
        &roasted,
        0,
    );
    let report = verify_batch(&s, "SAND-1");
    let f = assert_fails(
        &report,
        Problem::CommodityWithoutSource,
        Some(s.log.index_of(from_sand)),
    );
    assert!(
        f.message
            .contains("made roasted coffee from sand, nothing the policy names"),
        "{}",
        f.message
    );
    // The product as a whole comes from no harvest the policy names, too.
    assert_only(
        &report,
        &[Problem::CommodityWithoutSource, Problem::ProductNotCovered],
    );

    let report = verify_batch(&s, "SAND-2");
    let f = assert_fails(
        &report,
        Problem::YieldOutOfBounds,
        Some(s.log.index_of(pinch)),
    );
    assert!(
        f.message.contains(
            "10 kg into 13,000 kg: a yield of 1300000‰ (counting only the goods the policy names)"
        ),
        "{}",
        f.message
    );
    assert_only(&report, &[Problem::YieldOutOfBounds]);
}

#[test]
fn a_certification_not_yet_valid_or_for_another_role_fails() {
    let s = scenario(|k| k.hn_cert_from = T0 + 20 * DAY);
    let report = verify(&s);
    let f = assert_fails(
        &report,
        Problem::CertificationNotYetValid,
        Some(s.log.index_of(s.hn_harvest)),
    );
    assert!(
        f.message.contains("valid only from 2024-02-21"),
        "{}",
        f.message
    );
    assert_only(&report, &[Problem::CertificationNotYetValid]);

    let s = scenario(|k| k.hn_cert_roles = vec![proto::Role::Trader]);
    let report = verify(&s);
    let f = assert_fails(
        &report,
        Problem::CertificationOutOfScope,
        Some(s.log.index_of(s.hn_harvest)),
    );
    assert!(f.message.contains("the role of trader"), "{}", f.message);
}

#[test]
fn receipts_that_do_not_confirm_fail() {
    let disputed = |outcome, grams| {
        let mut s = scenario(|k| k.importer_receipt = false);
        let shipment = s.hn_shipment;
        append(
            &mut s,
            |k| &k.importer,
            receipt_body(shipment, outcome, grams),
        );
        let report = verify(&s);
        (s, report)
    };
    let (s, report) = disputed(proto::ReceiptOutcome::Disputed, 11_000_000);
    let f = assert_fails(
        &report,
        Problem::ReceiptDisputed,
        Some(s.log.index_of(s.hn_shipment)),
    );
    assert!(
        f.message.contains("it says it received 11,000 kg"),
        "{}",
        f.message
    );
    assert_only(&report, &[Problem::ReceiptDisputed]);

    let (s, report) = disputed(proto::ReceiptOutcome::Confirmed, 11_000_000);
    assert_fails(
        &report,
        Problem::ReceiptAmountMismatch,
        Some(s.log.index_of(s.hn_shipment)),
    );
    assert_only(&report, &[Problem::ReceiptAmountMismatch]);

    // A receipt signed by someone other than the recipient does not count.
    let mut s = scenario(|k| k.importer_receipt = false);
    let shipment = s.hn_shipment;
    let at = append(
        &mut s,
        |k| &k.roaster,
        receipt_body(shipment, proto::ReceiptOutcome::Confirmed, 12_000_000),
    );
    let report = verify(&s);
    assert_fails(&report, Problem::ReceiptByStranger, Some(at));
    assert_fails(
        &report,
        Problem::ReceiptMissing,
        Some(s.log.index_of(s.hn_shipment)),
    );
    assert_only(
        &report,
        &[Problem::ReceiptByStranger, Problem::ReceiptMissing],
    );
}

#[test]
fn only_a_lots_holder_may_use_it() {
    let mut s = Scenario::build(Knobs::default());
    // The roaster ships green coffee the importer still holds.
    let lot = LotId {
        statement: s.hn_shipment,
        output: 0,
    };
    let retailer = pk(&s.keys.retailer);
    let at = append(
        &mut s,
        |k| &k.roaster,
        proto::statement::Body::Transfer(proto::Transfer {
            inputs: vec![proto::LotInput {
                lot: Some(lot.to_proto()),
                amount: 1_000_000,
            }],
            recipient: retailer.as_bytes().to_vec(),
            price: None,
            document_reference: String::new(),
        }),
    );
    let report = verify(&s);
    let f = assert_fails(&report, Problem::NotHolder, Some(at));
    assert!(
        f.message
            .contains("which Solidaridad Coffee Importers holds"),
        "{}",
        f.message
    );
    assert_only(&report, &[Problem::NotHolder]);
}

#[test]
fn a_statement_by_an_undeclared_key_fails() {
    let s = Scenario::build(Knobs::default());
    let mut bundle = s.bundle();
    // The Honduran cooperative's declaration is left out (entry 1).
    bundle.entries.retain(|e| e.index != 1);
    let report = verify_bundle(&bundle, &s.policy());
    assert_fails(
        &report,
        Problem::UndeclaredKey,
        Some(s.log.index_of(s.hn_harvest)),
    );
    assert_fails(
        &report,
        Problem::UndeclaredKey,
        Some(s.log.index_of(s.hn_shipment)),
    );
}

#[test]
fn unsound_rotations_are_not_followed() {
    use proto::statement::Body;
    // Not signed by the new key.
    let mut s = Scenario::build(Knobs::default());
    let new_key = pk(&key(40));
    let at = append(
        &mut s,
        |k| &k.retailer,
        Body::KeyRotation(proto::KeyRotation {
            new_key: new_key.as_bytes().to_vec(),
            recovery: false,
        }),
    );
    let report = verify(&s);
    let f = assert_fails(&report, Problem::BadRotation, Some(at));
    assert!(f.message.contains("did not sign it"), "{}", f.message);

    // A recovery by a participant that named no guardians.
    let mut s = Scenario::build(Knobs::default());
    let statement = proto::Statement {
        issuer: pk(&s.keys.retailer).as_bytes().to_vec(),
        issued_at_ms: s.log.now,
        body: Some(Body::KeyRotation(proto::KeyRotation {
            new_key: new_key.as_bytes().to_vec(),
            recovery: true,
        })),
        ..Default::default()
    };
    let id = s.log.append_envelope(crate::envelope::sign(
        crate::statement::encode(&statement),
        &[&key(40)],
    ));
    let report = verify(&s);
    assert_fails(
        &report,
        Problem::RecoveryQuorumNotMet,
        Some(s.log.index_of(id)),
    );
}

#[test]
fn a_log_whose_clock_runs_backwards_or_repeats_itself_fails() {
    let mut s = Scenario::build(Knobs::default());
    s.log.now = T0;
    let at = append(
        &mut s,
        |k| &k.monitor,
        proto::statement::Body::Dispute(proto::Dispute {
            entry: vec![0; 32],
            reason: "x".into(),
        }),
    );
    let report = verify(&s);
    assert_fails(&report, Problem::TimeGoesBackwards, Some(at));
    assert_stopped_after(&report, 2);

    // The same statement logged twice.
    let mut s = Scenario::build(Knobs::default());
    let statement = proto::Statement {
        issuer: pk(&s.keys.monitor).as_bytes().to_vec(),
        issued_at_ms: s.log.now,
        body: Some(proto::statement::Body::Dispute(proto::Dispute {
            entry: s.hn_harvest.as_bytes().to_vec(),
            reason: "twice".into(),
        })),
        ..Default::default()
    };
    let wire = crate::envelope::sign(crate::statement::encode(&statement), &[&s.keys.monitor]);
    s.log.append_envelope(wire.clone());
    s.log.append_envelope(wire);
    let report = verify(&s);
    let f = assert_fails(&report, Problem::DuplicateStatement, Some(26));
    assert!(f.message.contains("entries 25 and 26"), "{}", f.message);

    let s = Scenario::build(Knobs::default());
    let mut bundle = s.bundle();
    let mut copy = bundle.entries[0].clone();
    copy.index = 1;
    bundle.entries[1] = copy;
    let report = verify_bundle(&bundle, &s.policy());
    // The copy is not the leaf at index 1.
    assert_fails(&report, Problem::NotInLog, Some(1));
}

// A bad key is refused wherever it appears, not only the first time: keys that pass are
// remembered (`KnownKeys`), keys that fail never are.
pub(crate) mod bad_keys {
    use super::super::testlog::{key, Knobs, Scenario, T0};
    use super::*;
    use crate::envelope::PAYLOAD_TYPE;
    use crate::proto::statement::Body;
    use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
    use curve25519_dalek::scalar::Scalar;

    pub(crate) const IDENTITY: [u8; 32] = {
        let mut b = [0u8; 32];
        b[0] = 1;
        b
    };
    /// y = 2 is not the y of any curve point.
    pub(crate) const NOT_A_POINT: [u8; 32] = {
        let mut b = [0u8; 32];
        b[0] = 2;
        b
    };

    pub(crate) fn declaration_by(issuer: [u8; 32], n: u64) -> Vec<u8> {
        crate::statement::encode(&proto::Statement {
            issuer: issuer.to_vec(),
            issued_at_ms: T0,
            body: Some(Body::ParticipantDeclaration(
                proto::ParticipantDeclaration {
                    name: format!("declared {n}"),
                    country: "HN".into(),
                    ..Default::default()
                },
            )),
            ..Default::default()
        })
    }

    /// A "signature" by the identity key that ZIP 215 accepts: R = sB.
    pub(crate) fn forged_by_weak_key(n: u64) -> proto::Envelope {
        let s = Scalar::from(1000 + n);
        let mut sig = (ED25519_BASEPOINT_POINT * s).compress().to_bytes().to_vec();
        sig.extend_from_slice(s.as_bytes());
        proto::Envelope {
            payload: declaration_by(IDENTITY, n),
            payload_type: PAYLOAD_TYPE.into(),
            signatures: vec![proto::Signature {
                public_key: IDENTITY.to_vec(),
                sig,
            }],
        }
    }

    #[test]
    fn the_weak_forgery_is_zip215_valid_so_only_the_key_check_stops_it() {
        let mut known = crate::envelope::KnownKeys::default();
        assert!(crate::envelope::Envelope::decode_with(forged_by_weak_key(1), &mut known).is_err());
        assert!(crate::envelope::Envelope::decode_with(forged_by_weak_key(2), &mut known).is_err());
        // Straight to zebra: the signature itself verifies.
        let e = forged_by_weak_key(3);
        let msg = crate::envelope::pae(PAYLOAD_TYPE, &e.payload);
        let vk = ed25519_zebra::VerificationKey::try_from(IDENTITY).unwrap();
        let sig: [u8; 64] = e.signatures[0].sig.clone().try_into().unwrap();
        assert!(vk
            .verify(&ed25519_zebra::Signature::from_bytes(&sig), &msg)
            .is_ok());
    }

    #[test]
    fn a_bad_key_is_refused_each_time_it_appears_in_a_bundle() {
        let mut s = Scenario::build(Knobs::default());
        let good = key(2);
        let mut at = Vec::new();
        // Twice: a weak signer key, a signer key not on the curve, a weak issuer.
        for n in 0..2u64 {
            at.push(s.log.append_envelope(forged_by_weak_key(n)));
            let mut off = crate::envelope::sign(declaration_by(NOT_A_POINT, 10 + n), &[&good]);
            off.signatures[0].public_key = NOT_A_POINT.to_vec();
            at.push(s.log.append_envelope(off));
            at.push(s.log.append_envelope(crate::envelope::sign(
                declaration_by(IDENTITY, 20 + n),
                &[&good],
            )));
        }
        // An R that is not a point, on a key already seen valid: batch fails, one-by-one names it.
        let mut bad_r = crate::envelope::sign(
            declaration_by(pk(&good).as_bytes().to_owned(), 30),
            &[&good],
        );
        bad_r.signatures[0].sig[..32].copy_from_slice(&NOT_A_POINT);
        at.push(s.log.append_envelope(bad_r));
        let report = verify_bundle(&s.bundle(), &s.policy());
        let idx: Vec<u64> = at.iter().map(|id| s.log.index_of(*id)).collect();
        let expect = [
            (Problem::EnvelopeMalformed, "small order"),
            (Problem::EnvelopeMalformed, "not a curve point"),
            (Problem::StatementMalformed, "small order"),
        ];
        for (i, index) in idx[..6].iter().enumerate() {
            let (problem, text) = expect[i % 3];
            let f = assert_fails(&report, problem, Some(*index));
            assert!(f.message.contains(text), "entry {index}: {}", f.message);
        }
        let f = assert_fails(&report, Problem::BadSignature, Some(idx[6]));
        assert!(
            f.message.contains("its R is not a curve point"),
            "{}",
            f.message
        );
        assert_only(
            &report,
            &[
                Problem::EnvelopeMalformed,
                Problem::StatementMalformed,
                Problem::BadSignature,
            ],
        );
        assert_eq!(report.failures().count(), 7, "{}", render_text(&report));
    }
}
