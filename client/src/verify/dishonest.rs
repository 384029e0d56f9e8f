//! The verifier against a dishonest node, as a property over structured changes to the
//! sound chain.
//!
//! A node owns its log key, so it can log anything and prove it: the checkpoint and the
//! inclusion proofs of what it serves are always good, and only the checks behind them
//! stand between its word and the consumer's verdict. Each case takes the sound coffee
//! chain of [`Scenario`], makes one to three changes, logs the result under the same log
//! key and verifies the product's bundle. The changes are the node's own (an entry left
//! out, moved or logged twice; its integration time changed; its signatures replaced or one
//! added) and those of participants who sign what it asks (a statement issued in another's
//! name; a number or a commodity in it changed, or its inputs taken away, and signed again
//! by its signers). A statement changed that way gets a new id, so the statements that
//! refer to it are changed to refer to the new one and signed again by their signers, down
//! the chain: the chain as its participants could have signed it, not one broken by a
//! dangling id.
//!
//! Whatever the verdict, nothing panics and the report is the same twice. When it is not a
//! failure, what the report claims must be true of the log it was given: every journey step
//! and receipt is an entry of the bundle, with the statement id and integration time the
//! log gave it, issued by a key that signed it, in log order; the journey reaches a
//! harvest, and every step but a harvest names an input lot; every harvest is covered by a
//! certification of the bundle about its producer, of a scheme the policy names, valid at
//! the harvest's integration time (as its signed statement says), and paid farmers at least
//! the policy's minimum price and premium (in whole numbers, from the signed statement);
//! every transfer shows a receipt that confirms it (the policy requires receipts); the
//! product is GTIN [`GTIN`] batch [`BATCH`], bound by an entry that binds it; leaving out
//! of the bundle any one journey step or the binding makes the verdict a failure, and
//! leaving out a receipt the report shows does too, unless another receipt by the recipient
//! then answers.
//!
//! The fuzz target `bundle_verify` (RELIABILITY.md 7.1) checks the same claims (all but the
//! certification's subject) over statements of any bytes; this property reaches the
//! semantic changes a byte-level fuzzer rarely makes, and runs with every `cargo test`.

use std::collections::BTreeMap;

use ed25519_dalek::SigningKey;
use proptest::prelude::*;
use prost::Message;

use super::testlog::{Keys, Knobs, Scenario, TestLog, BATCH, DAY, GTIN, PGS_SCHEME};
use super::*;
use crate::bundle::{Bundle, Subject};
use crate::entry::Leaf;
use crate::envelope::{sign, StatementId};
use crate::gs1::ProductId;
use crate::proto::{self, statement::Body};

/// One change a dishonest node makes to the log it serves, alone or with participants who
/// sign what it asks.
#[derive(Clone, Debug)]
enum Change {
    /// The entry's signatures replaced by one from key `key`.
    Resign { entry: usize, key: usize },
    /// The entry cosigned by key `key`.
    Cosign { entry: usize, key: usize },
    /// The statement issued in the name of key `key` and signed by it.
    Reissue { entry: usize, key: usize },
    /// A number in a statement of the chain or its evidence (its time, a quantity, an
    /// amount, a price, a validity) changed, and the statement signed again by its signers.
    /// `entry` picks one of [`Sound::numbered`].
    Number {
        entry: usize,
        field: usize,
        how: Tweak,
    },
    /// The commodity of a harvest or of a transformation's output renamed to
    /// `COMMODITIES[to]`, and the statement signed again by its signers.
    Commodity { entry: usize, to: usize },
    /// The statement's inputs taken away (a transfer, transformation or binding of
    /// nothing), and the statement signed again by its signers.
    NoInputs { entry: usize },
    /// The entry's integration time changed (the node chooses it).
    Clock { entry: usize, how: Tweak },
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
        1 => (at.clone(), key.clone()).prop_map(|(entry, key)| Change::Resign { entry, key }),
        1 => (at.clone(), key.clone()).prop_map(|(entry, key)| Change::Cosign { entry, key }),
        1 => (at.clone(), key).prop_map(|(entry, key)| Change::Reissue { entry, key }),
        4 => (at.clone(), 0..16usize, tweak.clone()).prop_map(|(entry, field, how)| {
            Change::Number { entry, field, how }
        }),
        1 => at.clone().prop_map(|entry| Change::NoInputs { entry }),
        1 => (at.clone(), 0..COMMODITIES.len()).prop_map(|(entry, to)| Change::Commodity { entry, to }),
        1 => (at.clone(), tweak.clone()).prop_map(|(entry, how)| Change::Clock { entry, how }),
        1 => at.clone().prop_map(|entry| Change::Drop { entry }),
        1 => (at.clone(), at.clone()).prop_map(|(entry, to)| Change::Move { entry, to }),
        1 => (at.clone(), at).prop_map(|(entry, to)| Change::Duplicate { entry, to }),
    ]
}

/// What a commodity may be renamed to: the policy's two coffees, and two it does not name.
const COMMODITIES: [&str; 4] = ["green coffee", "roasted coffee", "sand", "cocoa beans"];

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

/// Every statement id a statement refers to: the lots it uses, the transfer it answers,
/// the certification it revokes, the entry it disputes, its references.
fn ids(statement: &mut proto::Statement) -> Vec<&mut Vec<u8>> {
    let mut out: Vec<&mut Vec<u8>> = statement.references.iter_mut().collect();
    fn lots(inputs: &mut [proto::LotInput]) -> impl Iterator<Item = &mut Vec<u8>> {
        inputs
            .iter_mut()
            .filter_map(|i| i.lot.as_mut().map(|l| &mut l.statement_id))
    }
    match &mut statement.body {
        Some(Body::Transfer(t)) => out.extend(lots(&mut t.inputs)),
        Some(Body::Transformation(t)) => out.extend(lots(&mut t.inputs)),
        Some(Body::ProductBinding(b)) => out.extend(lots(&mut b.inputs)),
        Some(Body::Receipt(r)) => out.push(&mut r.transfer),
        Some(Body::Revocation(r)) => out.push(&mut r.certification),
        Some(Body::Dispute(d)) => out.push(&mut d.entry),
        _ => {}
    }
    out
}

/// One entry of the log to serve: its envelope, its integration time, and whether that
/// time is kept as it is (else it is at least the previous entry's, a minute on).
#[derive(Clone)]
struct Planned {
    envelope: proto::Envelope,
    at: u64,
    exact: bool,
}

/// The sound chain's entries, each with its integration time, and the keys that wrote it.
struct Sound {
    entries: Vec<Planned>,
    /// The places of the statements whose numbers the verifier judges: harvests,
    /// certifications and their revocations, transfers, receipts, transformations and the
    /// binding.
    numbered: Vec<usize>,
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
            Planned {
                envelope: leaf.envelope,
                at: leaf.integrated_at_ms,
                exact: false,
            }
        })
        .collect::<Vec<Planned>>();
    let numbered = entries
        .iter()
        .enumerate()
        .filter(|(_, p)| {
            proto::Statement::decode(p.envelope.payload.as_slice()).is_ok_and(|s| {
                matches!(
                    s.body,
                    Some(
                        Body::Harvest(_)
                            | Body::Certification(_)
                            | Body::Revocation(_)
                            | Body::Transfer(_)
                            | Body::Receipt(_)
                            | Body::Transformation(_)
                            | Body::ProductBinding(_)
                    )
                )
            })
        })
        .map(|(i, _)| i)
        .collect();
    Sound {
        entries,
        numbered,
        keys: all_keys(&s.keys),
        policy: s.policy(),
    }
}

impl Sound {
    /// `statement` signed by the keys that signed `envelope`, in the same order.
    fn sign_as(&self, envelope: &proto::Envelope, statement: &proto::Statement) -> proto::Envelope {
        let signers: Vec<&SigningKey> = envelope
            .signatures
            .iter()
            .filter_map(|s| {
                self.keys
                    .iter()
                    .find(|k| k.verifying_key().as_bytes().as_slice() == s.public_key)
            })
            .collect();
        sign(statement.encode_to_vec(), &signers)
    }

    /// After a statement's id changed from `old` to `new`: every statement that refers to
    /// `old` refers to `new` instead and is signed again by its signers, and so on down the
    /// chain, as its participants would have signed it.
    fn relink(&self, entries: &mut [Planned], old: StatementId, new: StatementId) {
        let mut pending = vec![(old, new)];
        while let Some((old, new)) = pending.pop() {
            for planned in entries.iter_mut() {
                let Ok(mut statement) =
                    proto::Statement::decode(planned.envelope.payload.as_slice())
                else {
                    continue;
                };
                let mut touched = false;
                for id in ids(&mut statement) {
                    if id.as_slice() == old.as_bytes() {
                        *id = new.as_bytes().to_vec();
                        touched = true;
                    }
                }
                if touched {
                    let before = StatementId::of_payload(&planned.envelope.payload);
                    planned.envelope = self.sign_as(&planned.envelope, &statement);
                    pending.push((before, StatementId::of_payload(&planned.envelope.payload)));
                }
            }
        }
    }
}

/// The log with `changes` made, and the product's bundle cut from it.
fn served(sound: &Sound, changes: &[Change]) -> Bundle {
    let mut entries = sound.entries.clone();
    for change in changes {
        if entries.is_empty() {
            break;
        }
        let len = entries.len();
        match *change {
            Change::Resign { entry, key } => {
                let envelope = &mut entries[entry % len].envelope;
                *envelope = sign(envelope.payload.clone(), &[&sound.keys[key]]);
            }
            Change::Cosign { entry, key } => {
                let envelope = &mut entries[entry % len].envelope;
                let extra = sign(envelope.payload.clone(), &[&sound.keys[key]]);
                envelope.signatures.extend(extra.signatures);
            }
            Change::Reissue { entry, key } => {
                let envelope = &mut entries[entry % len].envelope;
                let old = StatementId::of_payload(&envelope.payload);
                let mut statement = proto::Statement::decode(envelope.payload.as_slice())
                    .expect("the scenario's statements decode");
                let key = &sound.keys[key];
                statement.issuer = key.verifying_key().to_bytes().to_vec();
                *envelope = sign(statement.encode_to_vec(), &[key]);
                let new = StatementId::of_payload(&envelope.payload);
                sound.relink(&mut entries, old, new);
            }
            Change::Number { entry, field, how } => {
                let at = sound.numbered[entry % sound.numbered.len()] % len;
                let envelope = &mut entries[at].envelope;
                let old = StatementId::of_payload(&envelope.payload);
                let mut statement = proto::Statement::decode(envelope.payload.as_slice())
                    .expect("the scenario's statements decode");
                let mut fields = numbers(&mut statement);
                let count = fields.len();
                if let Some(n) = fields.get_mut(field % count) {
                    **n = how.apply(**n);
                }
                *envelope = sound.sign_as(envelope, &statement);
                let new = StatementId::of_payload(&envelope.payload);
                sound.relink(&mut entries, old, new);
            }
            Change::Commodity { entry, to } => {
                let at = sound.numbered[entry % sound.numbered.len()] % len;
                let envelope = &mut entries[at].envelope;
                let old = StatementId::of_payload(&envelope.payload);
                let mut statement = proto::Statement::decode(envelope.payload.as_slice())
                    .expect("the scenario's statements decode");
                let name = COMMODITIES[to].to_owned();
                match &mut statement.body {
                    Some(Body::Harvest(h)) => h.commodity = name,
                    Some(Body::Transformation(t)) => {
                        for output in &mut t.outputs {
                            output.commodity = name.clone();
                        }
                    }
                    _ => continue,
                }
                *envelope = sound.sign_as(envelope, &statement);
                let new = StatementId::of_payload(&envelope.payload);
                sound.relink(&mut entries, old, new);
            }
            Change::NoInputs { entry } => {
                let envelope = &mut entries[entry % len].envelope;
                let old = StatementId::of_payload(&envelope.payload);
                let mut statement = proto::Statement::decode(envelope.payload.as_slice())
                    .expect("the scenario's statements decode");
                match &mut statement.body {
                    Some(Body::Transfer(t)) => t.inputs.clear(),
                    Some(Body::Transformation(t)) => t.inputs.clear(),
                    Some(Body::ProductBinding(b)) => b.inputs.clear(),
                    _ => continue,
                }
                *envelope = sound.sign_as(envelope, &statement);
                let new = StatementId::of_payload(&envelope.payload);
                sound.relink(&mut entries, old, new);
            }
            Change::Clock { entry, how } => {
                let planned = &mut entries[entry % len];
                planned.at = how.apply(planned.at);
                planned.exact = true;
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
    for planned in entries {
        if planned.exact {
            log.now = planned.at;
        } else {
            log.at(planned.at);
        }
        log.append_envelope(planned.envelope);
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
    let by_id: BTreeMap<StatementId, u64> = leaves
        .iter()
        .map(|(index, leaf)| (leaf.statement_id, *index))
        .collect();
    let mut rests_on = Vec::new();
    let mut receipts = Vec::new();
    let mut previous = None;
    prop_assert!(
        report
            .chain
            .journey
            .iter()
            .any(|s| s.kind == StepKind::Harvest),
        "a chain that does not fail reaches a harvest"
    );
    for step in &report.chain.journey {
        let (leaf, _) = cited(step.entry)?;
        prop_assert_eq!(step.statement_id, leaf.statement_id);
        prop_assert_eq!(step.integrated_at_ms, leaf.integrated_at_ms);
        prop_assert!(previous < Some(step.entry), "the journey is in log order");
        prop_assert!(
            step.kind == StepKind::Harvest || !step.inputs.is_empty(),
            "the step at entry {} makes something from nothing",
            step.entry
        );
        previous = Some(step.entry);
        rests_on.push(step.entry);
        if step.kind == StepKind::Harvest {
            let (_, statement) = cited(step.entry)?;
            check_covered(step, &statement.issuer, &by_id, &leaves, policy)?;
            if let Some(Body::Harvest(h)) = &statement.body {
                check_paid(step.entry, h)?;
            }
        }
        if step.kind == StepKind::Transfer {
            prop_assert!(
                step.receipt
                    .as_ref()
                    .is_some_and(|r| r.outcome == "confirmed"),
                "the transfer at entry {} shows no confirming receipt, and the policy requires one",
                step.entry
            );
        }
        if let Some(receipt) = &step.receipt {
            let (leaf, statement) = cited(receipt.entry)?;
            prop_assert!(
                matches!(statement.body, Some(Body::Receipt(_))),
                "entry {} is shown as a receipt",
                receipt.entry
            );
            prop_assert_eq!(receipt.integrated_at_ms, leaf.integrated_at_ms);
            receipts.push((step.entry, receipt.entry));
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
        prop_assert_eq!(
            verify_bundle(&without(bundle, entry), policy).verdict,
            Verdict::Failed,
            "the bundle without entry {}, which the chain rests on, does not fail",
            entry
        );
    }
    // A recipient may answer a transfer twice; the first answer counts, and without it the
    // next does.
    for (transfer, receipt) in receipts {
        let less = verify_bundle(&without(bundle, receipt), policy);
        let answered_by = less
            .chain
            .journey
            .iter()
            .find(|s| s.entry == transfer)
            .and_then(|s| s.receipt.as_ref())
            .map(|r| r.entry);
        prop_assert!(
            less.verdict == Verdict::Failed || answered_by.is_some_and(|r| r != receipt),
            "the bundle without the receipt at entry {} does not fail, and no other receipt answers the transfer at entry {}",
            receipt,
            transfer
        );
    }
    Ok(())
}

/// A harvest that does not fail is covered, as its signed statements say: some
/// certification the report cites is an entry of the bundle, about the harvest's issuer
/// (no producer of the scenario rotates its key), of a scheme the policy names for coffee,
/// and valid (within the clock skew) at the harvest's integration time.
fn check_covered(
    step: &JourneyStep,
    producer: &[u8],
    by_id: &BTreeMap<StatementId, u64>,
    leaves: &BTreeMap<u64, Leaf>,
    policy: &Policy,
) -> Result<(), TestCaseError> {
    let t = step.integrated_at_ms;
    let skew = policy.clock_skew_ms;
    let covered = step.certifications.iter().filter(|c| c.covers).any(|c| {
        let Some(leaf) = by_id.get(&c.certification).and_then(|i| leaves.get(i)) else {
            return false;
        };
        match proto::Statement::decode(leaf.envelope.payload.as_slice()).map(|s| s.body) {
            Ok(Some(Body::Certification(cert))) => {
                ["Fairtrade", PGS_SCHEME].contains(&cert.scheme.as_str())
                    && cert.scheme == c.scheme
                    && cert.subject == producer
                    && cert.valid_from_ms <= t.saturating_add(skew)
                    && t <= cert.valid_until_ms.saturating_add(skew)
            }
            _ => false,
        }
    });
    prop_assert!(
        covered,
        "the harvest at entry {} is shown covered by no certification in force in the bundle",
        step.entry
    );
    Ok(())
}

/// A harvest that does not fail paid farmers at least the policy's USD 1.80 a pound and a
/// premium of at least USD 0.20 a pound, by its signed statement (a pound is 45,359,237 g
/// over 100,000), in whole numbers.
fn check_paid(entry: u64, harvest: &proto::Harvest) -> Result<(), TestCaseError> {
    for (what, price, least_cents) in [
        ("price", &harvest.farmgate_price, 180u128),
        ("premium", &harvest.premium, 20),
    ] {
        let per_gram = price.as_ref().and_then(|p| {
            let per = p.per.as_ref()?;
            (p.currency == "USD" && per.unit == proto::Unit::Gram as i32 && per.amount > 0)
                .then_some((u128::from(p.minor_units), u128::from(per.amount)))
        });
        let Some((cents, grams)) = per_gram else {
            return Err(TestCaseError::fail(format!(
                "the harvest at entry {entry} states no {what} in USD per gram"
            )));
        };
        prop_assert!(
            cents * 45_359_237 >= least_cents * 100_000 * grams,
            "the harvest at entry {} pays a {} of {} cents per {} g, below {} US cents a pound",
            entry,
            what,
            cents,
            grams,
            least_cents
        );
    }
    Ok(())
}

/// The bundle less one entry.
fn without(bundle: &Bundle, entry: u64) -> Bundle {
    let mut entries = bundle.entries.clone();
    entries.retain(|e| e.index != entry);
    Bundle::new(bundle.subject.clone(), bundle.checkpoint.clone(), entries)
        .expect("a bundle less one entry is well formed")
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
    // The property is only as good as its changes and claims: a harvest signed by the wrong
    // key is one of them, and it must fail.
    let harvest = sound
        .entries
        .iter()
        .position(|p| {
            proto::Statement::decode(p.envelope.payload.as_slice())
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
    // Every harvest renamed to sand, signed again and re-linked down the chain: the roaster
    // roasts sand into coffee, which must fail. (One harvest renamed fails already, as a
    // shipment of sand and coffee together.)
    let harvests: Vec<Change> = sound
        .numbered
        .iter()
        .enumerate()
        .filter(|(_, at)| {
            proto::Statement::decode(sound.entries[**at].envelope.payload.as_slice())
                .is_ok_and(|s| matches!(s.body, Some(Body::Harvest(_))))
        })
        .map(|(n, _)| Change::Commodity { entry: n, to: 2 })
        .collect();
    assert_eq!(harvests.len(), 2);
    let sand = served(sound, &harvests);
    let report = verify_bundle(&sand, &sound.policy);
    assert_eq!(report.verdict, Verdict::Failed, "{}", render_text(&report));
    check_claims(&sand, &report, &sound.policy).expect_err("the claims of coffee made of sand");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

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
