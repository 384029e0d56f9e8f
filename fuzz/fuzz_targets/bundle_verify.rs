//! The consumer's verifier against a dishonest node.
//!
//! A node owns its log key, so it can log anything and prove it: the checkpoint and the
//! inclusion proofs of what it serves are always good, and only the checks behind them
//! (participants and keys, the lot chain, holders and quantities, receipts, certifications,
//! prices, disputes) stand between its word and the consumer's verdict. The input is a
//! `fairtrail_fuzz::BundleInput`: the fixture ledger less some entries, with statements of
//! any bytes signed by any fixture keys inserted anywhere, re-sealed under the fixture log
//! key, and a bundle cut from it with some entries left out.
//!
//! Nothing may panic, and these must hold: the report is the same twice and from the
//! bundle's wire form; it serialises and renders as text. When the verdict is not a
//! failure: every journey step and receipt the report shows is an entry of the bundle,
//! with the statement id and integration time the log gave it, issued by a key that signed
//! it, in log order; the journey of a product or a lot reaches a harvest, and every step
//! but a harvest names an input lot; every harvest is covered by a certification of the
//! bundle, of a scheme the policy names, valid at the harvest's integration time (as its
//! signed statement says), and paid farmers at least the policy's minimum price and
//! premium (in whole numbers, from the signed statement); every transfer shows a receipt
//! that confirms it (the policy requires receipts); a product report names the product the
//! bundle is about, bound by an entry of the bundle that binds it; and leaving out of the
//! bundle any one journey step or the binding the report cites makes the verdict a
//! failure, and leaving out a receipt it cites does too, unless another receipt by the
//! recipient then answers.
#![no_main]

use std::collections::BTreeMap;

use fairtrail_client::bundle::{Bundle, Subject};
use fairtrail_client::envelope::StatementId;
use fairtrail_client::proto::{self, statement::Body};
use fairtrail_client::verify::{
    render_text, verify_bundle, JourneyStep, Report, StepKind, Verdict,
};
use fairtrail_fuzz::{policy, BundleInput, ServedLog, MINUTE, T0};
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Some(input) = BundleInput::parse(data) else {
        return;
    };
    let served = input.serve();
    let report = verify_bundle(&served.bundle, policy());
    serde_json::to_string(&report).expect("a report serialises");
    render_text(&report);
    assert_eq!(
        verify_bundle(&served.bundle, policy()),
        report,
        "the same bundle gives the same report"
    );
    let wire = Bundle::try_from(served.bundle.to_proto()).expect("a bundle's wire form parses");
    assert_eq!(
        verify_bundle(&wire, policy()),
        report,
        "the wire form gives the same report"
    );
    if report.verdict != Verdict::Failed {
        check_chain(&served, &report);
    }
});

/// What a report that does not fail claims of the log must be true of it.
fn check_chain(served: &ServedLog, report: &Report) {
    let in_bundle: BTreeMap<u64, ()> = served
        .bundle
        .entries
        .iter()
        .map(|e| (e.index, ()))
        .collect();
    let statement_at = |entry: u64| -> proto::Statement {
        assert!(
            in_bundle.contains_key(&entry),
            "the report cites entry {entry}, which the bundle does not hold"
        );
        let wire = &served.envelopes[entry as usize];
        let statement = proto::Statement::decode(wire.payload.as_slice())
            .expect("a cited entry holds a statement");
        assert!(
            wire.signatures
                .iter()
                .any(|s| s.public_key == statement.issuer),
            "entry {entry} is cited, but its issuer did not sign it"
        );
        statement
    };
    let mut rests_on = Vec::new();
    let mut receipts = Vec::new();
    let mut previous = None;
    if matches!(served.bundle.subject, Subject::Product(_) | Subject::Lot(_)) {
        assert!(
            report
                .chain
                .journey
                .iter()
                .any(|s| s.kind == StepKind::Harvest),
            "a chain that does not fail reaches a harvest"
        );
    }
    for step in &report.chain.journey {
        statement_at(step.entry);
        assert!(
            step.kind == StepKind::Harvest || !step.inputs.is_empty(),
            "the step at entry {} makes something from nothing",
            step.entry
        );
        if step.kind == StepKind::Harvest {
            check_covered(served, step);
            if let Some(Body::Harvest(h)) = statement_at(step.entry).body {
                check_paid(step.entry, &h);
            }
        }
        if step.kind == StepKind::Transfer {
            let receipt = step.receipt.as_ref().unwrap_or_else(|| {
                panic!(
                    "the transfer at entry {} shows no receipt, and the policy requires one",
                    step.entry
                )
            });
            assert_eq!(receipt.outcome, "confirmed");
        }
        let wire = &served.envelopes[step.entry as usize];
        assert_eq!(step.statement_id, StatementId::of_payload(&wire.payload));
        assert_eq!(step.integrated_at_ms, T0 + step.entry * MINUTE);
        assert!(previous < Some(step.entry), "the journey is in log order");
        previous = Some(step.entry);
        rests_on.push(step.entry);
        if let Some(receipt) = &step.receipt {
            let statement = statement_at(receipt.entry);
            assert!(
                matches!(statement.body, Some(Body::Receipt(_))),
                "a receipt is a receipt"
            );
            assert_eq!(receipt.integrated_at_ms, T0 + receipt.entry * MINUTE);
            receipts.push((step.entry, receipt.entry));
        }
    }
    if let Subject::Product(p) = &served.bundle.subject {
        let product = report
            .chain
            .product
            .as_ref()
            .expect("a product report that does not fail names the product");
        assert_eq!((&product.gtin, &product.batch), (&p.gtin, &p.batch));
        match statement_at(product.entry).body {
            Some(Body::ProductBinding(b)) => {
                assert_eq!((&b.gtin, &b.batch), (&p.gtin, &p.batch));
            }
            other => panic!("the product is bound by {other:?}"),
        }
        rests_on.push(product.entry);
    }
    rests_on.sort_unstable();
    rests_on.dedup();
    for entry in rests_on {
        assert_eq!(
            verify_bundle(&without(served, entry), policy()).verdict,
            Verdict::Failed,
            "the bundle without entry {entry}, which the chain rests on, does not fail"
        );
    }
    // A recipient may answer a transfer twice; the first answer counts, and without it the
    // next does.
    for (transfer, receipt) in receipts {
        let less = verify_bundle(&without(served, receipt), policy());
        let answered_by = less
            .chain
            .journey
            .iter()
            .find(|s| s.entry == transfer)
            .and_then(|s| s.receipt.as_ref())
            .map(|r| r.entry);
        assert!(
            less.verdict == Verdict::Failed || answered_by.is_some_and(|r| r != receipt),
            "the bundle without the receipt at entry {receipt} does not fail, and no other receipt answers the transfer at entry {transfer}"
        );
    }
}

/// A harvest that does not fail is covered, as the signed statements say: some
/// certification the report cites is an entry of the bundle, of a scheme the policy names
/// for coffee, and valid (within the clock skew) at the harvest's integration time.
fn check_covered(served: &ServedLog, step: &JourneyStep) {
    let t = step.integrated_at_ms;
    let skew = policy().clock_skew_ms;
    let covered = step.certifications.iter().filter(|c| c.covers).any(|c| {
        served.bundle.entries.iter().any(|e| {
            let wire = &served.envelopes[e.index as usize];
            StatementId::of_payload(&wire.payload) == c.certification
                && match proto::Statement::decode(wire.payload.as_slice()).map(|s| s.body) {
                    Ok(Some(Body::Certification(cert))) => {
                        ["Fairtrade", "Red Andina PGS"].contains(&cert.scheme.as_str())
                            && cert.scheme == c.scheme
                            && cert.valid_from_ms <= t.saturating_add(skew)
                            && t <= cert.valid_until_ms.saturating_add(skew)
                    }
                    _ => false,
                }
        })
    });
    assert!(
        covered,
        "the harvest at entry {} is shown covered by no certification in force in the bundle",
        step.entry
    );
}

/// A harvest that does not fail paid farmers at least the policy's USD 1.80 a pound and a
/// premium of at least USD 0.20 a pound, by its signed statement (a pound is 45,359,237 g
/// over 100,000), in whole numbers.
fn check_paid(entry: u64, harvest: &proto::Harvest) {
    for (what, price, least_cents) in [
        ("price", &harvest.farmgate_price, 180u128),
        ("premium", &harvest.premium, 20),
    ] {
        let (cents, grams) = price
            .as_ref()
            .and_then(|p| {
                let per = p.per.as_ref()?;
                (p.currency == "USD" && per.unit == proto::Unit::Gram as i32 && per.amount > 0)
                    .then_some((u128::from(p.minor_units), u128::from(per.amount)))
            })
            .unwrap_or_else(|| {
                panic!("the harvest at entry {entry} states no {what} in USD per gram")
            });
        assert!(
            cents * 45_359_237 >= least_cents * 100_000 * grams,
            "the harvest at entry {entry} pays a {what} of {cents} cents per {grams} g, below {least_cents} US cents a pound"
        );
    }
}

/// The served bundle less one entry.
fn without(served: &ServedLog, entry: u64) -> Bundle {
    let mut entries = served.bundle.entries.clone();
    entries.retain(|e| e.index != entry);
    Bundle::new(
        served.bundle.subject.clone(),
        served.bundle.checkpoint.clone(),
        entries,
    )
    .expect("a bundle less one entry is well formed")
}
