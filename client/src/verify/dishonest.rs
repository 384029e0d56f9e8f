//! The verifier against a dishonest node, as a property over structured changes to the
//! sound chain.
//!
//! A node owns its log key, so it can log anything and prove it: the checkpoint and the
//! inclusion proofs of what it serves are always good, and only the checks behind them
//! stand between its word and the consumer's verdict. Each case takes the sound coffee
//! chain of [`Scenario`], changes up to three things (an entry signed by another key or
//! cosigned, issued in another's name, a number in it changed and re-signed by its issuer,
//! an entry left out, moved or logged twice), logs the result under the same log key, and
//! verifies the product's bundle.
//!
//! Whatever the verdict, nothing panics and the report is the same twice. When it is not a
//! failure, what the report claims must be true of the log it was given: every journey
//! step and receipt is an entry of the bundle, with the statement id and integration time
//! the log gave it, issued by a key that signed it, in log order; the product is GTIN
//! [`GTIN`] batch [`BATCH`], bound by an entry that binds it; and leaving out of the bundle
//! any one entry the journey, a receipt or the binding rests on makes the verdict a failure.
//!
//! The fuzz target `bundle_verify` (RELIABILITY.md 7.1) checks the same claims over
//! arbitrary statements; this property reaches the semantic changes a byte-level fuzzer
//! rarely finds, and runs with every `cargo test`.

use std::collections::BTreeMap;

use ed25519_dalek::SigningKey;
use proptest::prelude::*;
use prost::Message;

use super::testlog::{Keys, Knobs, Scenario, TestLog, BATCH, DAY, GTIN};
use super::*;
use crate::bundle::{Bundle, Subject};
use crate::entry::Leaf;
use crate::envelope::sign;
use crate::gs1::ProductId;
use crate::proto::{self, statement::Body};

/// One change a dishonest node makes to the log it serves.
#[derive(Clone, Debug)]
enum Change {
    /// The entry's signatures replaced by one from key `key`.
    Resign { entry: usize, key: usize },
    /// The entry cosigned by key `key`.
    Cosign { entry: usize, key: usize },
    /// The statement issued in the name of key `key` and signed by it.
    Reissue { entry: usize, key: usize },
    /// A number in the statement (its time, a quantity, an amount, a price, a validity)
    /// changed, and the statement re-signed by its issuer.
    Number {
        entry: usize,
        field: usize,
        how: Tweak,
    },
    /// The entry left out of the log.
    Drop { entry: usize },
    /// The entry moved to another place in the log.
    Move { entry: usize, to: usize },
    /// The entry logged a second time, at another place.
    Duplicate { entry: usize, to: usize },
}

#[derive(Clone, Copy, Debug)]
enum Tweak {
    Increment,
    Decrement,
    Double,
    Halve,
    Zero,
    DayLater,
    DayEarlier,
}

impl Tweak {
    fn apply(self, n: u64) -> u64 {
        match self {
            Tweak::Increment => n.saturating_add(1),
            Tweak::Decrement => n.saturating_sub(1),
            Tweak::Double => n.saturating_mul(2),
            Tweak::Halve => n / 2,
            Tweak::Zero => 0,
            Tweak::DayLater => n.saturating_add(DAY),
            Tweak::DayEarlier => n.saturating_sub(DAY),
        }
    }
}

fn change() -> impl Strategy<Value = Change> {
    let at = 0..64usize;
    let key = 0..12usize;
    let tweak = prop_oneof![
        Just(Tweak::Increment),
        Just(Tweak::Decrement),
        Just(Tweak::Double),
        Just(Tweak::Halve),
        Just(Tweak::Zero),
        Just(Tweak::DayLater),
        Just(Tweak::DayEarlier),
    ];
    prop_oneof![
        (at.clone(), key.clone()).prop_map(|(entry, key)| Change::Resign { entry, key }),
        (at.clone(), key.clone()).prop_map(|(entry, key)| Change::Cosign { entry, key }),
        (at.clone(), key).prop_map(|(entry, key)| Change::Reissue { entry, key }),
        (at.clone(), 0..16usize, tweak).prop_map(|(entry, field, how)| Change::Number {
            entry,
            field,
            how
        }),
        at.clone().prop_map(|entry| Change::Drop { entry }),
        (at.clone(), at.clone()).prop_map(|(entry, to)| Change::Move { entry, to }),
        (at.clone(), at).prop_map(|(entry, to)| Change::Duplicate { entry, to }),
    ]
}

/// The roaster's place in [`all_keys`].
const ROASTER: usize = 6;

/// Every key of the scenario: 12, the roaster at [`ROASTER`].
fn all_keys(keys: &Keys) -> Vec<SigningKey> {
    let mut all = vec![
        keys.flocert.clone(),
        keys.hn_coop.clone(),
        keys.pe_coop.clone(),
        keys.pgs.clone(),
        keys.importer.clone(),
        keys.importer_new.clone(),
        keys.roaster.clone(),
        keys.retailer.clone(),
        keys.monitor.clone(),
    ];
    all.extend(keys.pgs_members.iter().cloned());
    all
}

/// Every number in a statement a node could change.
fn numbers(statement: &mut proto::Statement) -> Vec<&mut u64> {
    fn quantity(q: &mut Option<proto::Quantity>) -> Option<&mut u64> {
        q.as_mut().map(|q| &mut q.amount)
    }
    fn price(p: &mut Option<proto::Price>) -> Vec<&mut u64> {
        match p {
            Some(p) => {
                let mut out = vec![&mut p.minor_units];
                out.extend(quantity(&mut p.per));
                out
            }
            None => Vec::new(),
        }
    }
    fn inputs(inputs: &mut [proto::LotInput]) -> impl Iterator<Item = &mut u64> {
        inputs.iter_mut().map(|i| &mut i.amount)
    }
    let mut out = vec![&mut statement.issued_at_ms];
    match &mut statement.body {
        Some(Body::Certification(c)) => out.extend([&mut c.valid_from_ms, &mut c.valid_until_ms]),
        Some(Body::Revocation(r)) => out.push(&mut r.effective_at_ms),
        Some(Body::Harvest(h)) => {
            out.extend(quantity(&mut h.quantity));
            out.extend(price(&mut h.farmgate_price));
            out.extend(price(&mut h.premium));
            out.extend([&mut h.harvested_from_ms, &mut h.harvested_until_ms]);
        }
        Some(Body::Transfer(t)) => {
            out.extend(inputs(&mut t.inputs));
            out.extend(price(&mut t.price));
        }
        Some(Body::Receipt(r)) => out.push(&mut r.amount_received),
        Some(Body::Transformation(t)) => {
            out.extend(inputs(&mut t.inputs));
            for output in &mut t.outputs {
                out.extend(quantity(&mut output.quantity));
            }
        }
        Some(Body::ProductBinding(b)) => out.extend(inputs(&mut b.inputs)),
        _ => {}
    }
    out
}

/// The sound chain's entries, each with its integration time, and the keys that wrote it.
struct Sound {
    entries: Vec<(proto::Envelope, u64)>,
    keys: Vec<SigningKey>,
    policy: Policy,
}

fn sound() -> Sound {
    let s = Scenario::build(Knobs::default());
    let entries = s
        .bundle()
        .entries
        .into_iter()
        .map(|e| {
            let leaf = Leaf::decode(e.leaf).expect("the scenario's leaves decode");
            (leaf.envelope, leaf.integrated_at_ms)
        })
        .collect();
    Sound {
        entries,
        keys: all_keys(&s.keys),
        policy: s.policy(),
    }
}

/// The log with `changes` made, and the product's bundle cut from it.
fn served(sound: &Sound, changes: &[Change]) -> Bundle {
    let mut entries = sound.entries.clone();
    let key_of = |issuer: &[u8]| {
        sound
            .keys
            .iter()
            .find(|k| k.verifying_key().as_bytes().as_slice() == issuer)
    };
    for change in changes {
        if entries.is_empty() {
            break;
        }
        let len = entries.len();
        match *change {
            Change::Resign { entry, key } => {
                let (envelope, _) = &mut entries[entry % len];
                *envelope = sign(envelope.payload.clone(), &[&sound.keys[key]]);
            }
            Change::Cosign { entry, key } => {
                let (envelope, _) = &mut entries[entry % len];
                let extra = sign(envelope.payload.clone(), &[&sound.keys[key]]);
                envelope.signatures.extend(extra.signatures);
            }
            Change::Reissue { entry, key } => {
                let (envelope, _) = &mut entries[entry % len];
                let mut statement = proto::Statement::decode(envelope.payload.as_slice())
                    .expect("the scenario's statements decode");
                let key = &sound.keys[key];
                statement.issuer = key.verifying_key().to_bytes().to_vec();
                *envelope = sign(statement.encode_to_vec(), &[key]);
            }
            Change::Number { entry, field, how } => {
                let (envelope, _) = &mut entries[entry % len];
                let mut statement = proto::Statement::decode(envelope.payload.as_slice())
                    .expect("the scenario's statements decode");
                let mut fields = numbers(&mut statement);
                let count = fields.len();
                if let Some(n) = fields.get_mut(field % count) {
                    **n = how.apply(**n);
                }
                let issuer = key_of(&statement.issuer).expect("the scenario's issuers are known");
                *envelope = sign(statement.encode_to_vec(), &[issuer]);
            }
            Change::Drop { entry } => {
                entries.remove(entry % len);
            }
            Change::Move { entry, to } => {
                let moved = entries.remove(entry % len);
                entries.insert(to % len, moved);
            }
            Change::Duplicate { entry, to } => {
                let copy = entries[entry % len].clone();
                entries.insert(to % (len + 1), copy);
            }
        }
    }
    let mut log = TestLog::new();
    for (envelope, at) in entries {
        log.at(at);
        log.append_envelope(envelope);
    }
    log.bundle(Subject::Product(
        ProductId::new(GTIN, BATCH, None).expect("a valid GTIN"),
    ))
}

/// What a report that does not fail claims of the log must be true of it.
fn check_claims(bundle: &Bundle, report: &Report, policy: &Policy) -> Result<(), TestCaseError> {
    let leaves: BTreeMap<u64, Leaf> = bundle
        .entries
        .iter()
        .map(|e| {
            (
                e.index,
                Leaf::decode(e.leaf.clone()).expect("served leaves decode"),
            )
        })
        .collect();
    let cited = |entry: u64| -> Result<(&Leaf, proto::Statement), TestCaseError> {
        let leaf = leaves.get(&entry).ok_or_else(|| {
            TestCaseError::fail(format!("the report cites entry {entry}, not in the bundle"))
        })?;
        let statement = proto::Statement::decode(leaf.envelope.payload.as_slice())
            .map_err(|e| TestCaseError::fail(format!("entry {entry}: {e}")))?;
        prop_assert!(
            leaf.envelope
                .signatures
                .iter()
                .any(|s| s.public_key == statement.issuer),
            "entry {entry} is cited, but its issuer did not sign it"
        );
        Ok((leaf, statement))
    };
    let mut rests_on = Vec::new();
    let mut previous = None;
    for step in &report.chain.journey {
        let (leaf, _) = cited(step.entry)?;
        prop_assert_eq!(step.statement_id, leaf.statement_id);
        prop_assert_eq!(step.integrated_at_ms, leaf.integrated_at_ms);
        prop_assert!(previous < Some(step.entry), "the journey is in log order");
        previous = Some(step.entry);
        rests_on.push(step.entry);
        if let Some(receipt) = &step.receipt {
            let (leaf, statement) = cited(receipt.entry)?;
            prop_assert!(
                matches!(statement.body, Some(Body::Receipt(_))),
                "entry {} is shown as a receipt",
                receipt.entry
            );
            prop_assert_eq!(receipt.integrated_at_ms, leaf.integrated_at_ms);
            rests_on.push(receipt.entry);
        }
    }
    let product = report
        .chain
        .product
        .as_ref()
        .ok_or_else(|| TestCaseError::fail("a product report that does not fail names none"))?;
    prop_assert_eq!(
        (product.gtin.as_str(), product.batch.as_str()),
        (GTIN, BATCH)
    );
    match cited(product.entry)?.1.body {
        Some(Body::ProductBinding(b)) => {
            prop_assert_eq!((b.gtin.as_str(), b.batch.as_str()), (GTIN, BATCH));
        }
        other => prop_assert!(false, "the product is bound by {:?}", other),
    }
    rests_on.push(product.entry);
    rests_on.sort_unstable();
    rests_on.dedup();
    for entry in rests_on {
        let mut less = bundle.entries.clone();
        less.retain(|e| e.index != entry);
        let less = Bundle::new(bundle.subject.clone(), bundle.checkpoint.clone(), less)
            .expect("a bundle less one entry is well formed");
        prop_assert_eq!(
            verify_bundle(&less, policy).verdict,
            Verdict::Failed,
            "the bundle without entry {}, which the chain rests on, does not fail",
            entry
        );
    }
    Ok(())
}

fn sound_chain() -> &'static Sound {
    static SOUND: std::sync::OnceLock<Sound> = std::sync::OnceLock::new();
    SOUND.get_or_init(sound)
}

#[test]
fn the_sound_chain_meets_the_claims_and_each_change_is_real() {
    let sound = sound_chain();
    let bundle = served(sound, &[]);
    let report = verify_bundle(&bundle, &sound.policy);
    assert_eq!(
        report.verdict,
        Verdict::Verified,
        "{}",
        render_text(&report)
    );
    check_claims(&bundle, &report, &sound.policy).expect("the sound chain's claims hold");
    // The property is only as good as its changes: a harvest signed by the wrong key is
    // one of them, and it must fail.
    let harvest = sound
        .entries
        .iter()
        .position(|(e, _)| {
            proto::Statement::decode(e.payload.as_slice())
                .is_ok_and(|s| matches!(s.body, Some(Body::Harvest(_))))
        })
        .expect("the chain has a harvest");
    let wrong = served(
        sound,
        &[Change::Resign {
            entry: harvest,
            key: ROASTER,
        }],
    );
    assert_eq!(
        verify_bundle(&wrong, &sound.policy).verdict,
        Verdict::Failed,
        "a harvest signed by the roaster alone"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn a_dishonest_nodes_changes_never_make_a_false_claim(
        changes in prop::collection::vec(change(), 1..=3),
    ) {
        let sound = sound_chain();
        let bundle = served(sound, &changes);
        let report = verify_bundle(&bundle, &sound.policy);
        prop_assert_eq!(&verify_bundle(&bundle, &sound.policy), &report);
        render_text(&report);
        if report.verdict != Verdict::Failed {
            check_claims(&bundle, &report, &sound.policy)?;
        }
    }
}
