//! The ledger rules told as small stories: participants declare themselves, harvest, ship,
//! receive, transform and bind lots over a `BTreeMap` state, and every refusal is checked for
//! its exact `RuleError`. A property test checks lot balances against an independent model.

use std::collections::BTreeMap;

use ed25519_dalek::SigningKey;
use proptest::prelude::*;

use super::records::{
    key, prefix, product_key, CertificationRecord, CertificationStatus, IdentityRecord, LotRecord,
    TransferRecord,
};
use super::{apply, get_json, key_record, LotId, Overlay, Position, RuleError, StateRead};
use crate::envelope::{sign, Envelope, EnvelopeError, StatementId};
use crate::keys::PublicKey;
use crate::proto::{self, statement::Body, OrganisationType, Role, Unit};
use crate::statement::{encode, Statement};

/// The log's clock when each story starts (June 2025).
const NOW: u64 = 1_750_000_000_000;
const DAY: u64 = 24 * 60 * 60 * 1000;
const KG: u64 = 1_000;

fn signing_key(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

fn pk(key: &SigningKey) -> PublicKey {
    PublicKey::from(&key.verifying_key())
}

/// A statement id that is in no log.
fn unknown_id() -> StatementId {
    StatementId([0xab; 32])
}

// ---------------------------------------------------------------------------------------------
// The ledger under test: a committed state and the next position in the log.

struct Ledger {
    state: BTreeMap<Vec<u8>, Vec<u8>>,
    index: u64,
    clock: u64,
}

impl Ledger {
    fn new() -> Self {
        Ledger {
            state: BTreeMap::new(),
            index: 0,
            clock: NOW,
        }
    }

    /// A statement by `issuer`, claimed to be made now.
    fn statement(&self, issuer: &SigningKey, body: Body) -> proto::Statement {
        proto::Statement {
            issuer: pk(issuer).as_bytes().to_vec(),
            issued_at_ms: self.clock,
            body: Some(body),
            ..Default::default()
        }
    }

    /// Signs `statement` with every key of `signers` and runs the rules on it.
    fn submit(
        &mut self,
        statement: proto::Statement,
        signers: &[&SigningKey],
    ) -> Result<StatementId, RuleError> {
        self.submit_wire(sign(encode(&statement), signers))
    }

    /// Runs the rules on an envelope; on success its writes join the committed state and the
    /// log grows by one entry. A refusal must leave no pending write behind.
    fn submit_wire(&mut self, wire: proto::Envelope) -> Result<StatementId, RuleError> {
        let envelope = Envelope::try_from(wire).expect("a well-formed envelope");
        let statement = Statement::decode(&envelope).expect("a decodable statement");
        let at = Position {
            index: self.index,
            integrated_at_ms: self.clock,
        };
        let mut overlay = Overlay::new(&self.state);
        let result = apply(&mut overlay, &envelope, &statement, at);
        match &result {
            Ok(()) => {
                let writes = overlay.into_writes();
                self.state.extend(writes);
                self.index += 1;
                self.clock += 1_000;
            }
            Err(e) => assert!(
                overlay.writes().is_empty(),
                "refused with {e} but left writes behind"
            ),
        }
        result.map(|()| envelope.id())
    }

    /// A statement signed by its issuer alone.
    fn by(&mut self, issuer: &SigningKey, body: Body) -> Result<StatementId, RuleError> {
        let s = self.statement(issuer, body);
        self.submit(s, &[issuer])
    }

    fn declare(&mut self, key: &SigningKey, roles: &[Role]) -> StatementId {
        self.by(key, Body::ParticipantDeclaration(declaration(roles)))
            .expect("declaration")
    }

    fn declare_as(&mut self, key: &SigningKey, d: proto::ParticipantDeclaration) -> StatementId {
        self.by(key, Body::ParticipantDeclaration(d))
            .expect("declaration")
    }

    /// A harvest of `grams` of `commodity`; returns its lot.
    fn harvest(&mut self, key: &SigningKey, commodity: &str, grams: u64) -> LotId {
        let id = self
            .by(key, Body::Harvest(harvest(commodity, grams)))
            .expect("harvest");
        LotId {
            statement: id,
            output: 0,
        }
    }

    fn transfer(
        &mut self,
        from: &SigningKey,
        lots: &[(LotId, u64)],
        to: &SigningKey,
    ) -> Result<StatementId, RuleError> {
        self.by(from, Body::Transfer(transfer(lots, &pk(to))))
    }

    /// Ships and returns the recipient's new lot.
    fn ship(&mut self, from: &SigningKey, lots: &[(LotId, u64)], to: &SigningKey) -> LotId {
        let id = self.transfer(from, lots, to).expect("transfer");
        LotId {
            statement: id,
            output: 0,
        }
    }

    fn rotate(
        &mut self,
        old: &SigningKey,
        new: &SigningKey,
        recovery: bool,
        signers: &[&SigningKey],
    ) -> Result<StatementId, RuleError> {
        let s = self.statement(
            old,
            Body::KeyRotation(proto::KeyRotation {
                new_key: pk(new).as_bytes().to_vec(),
                recovery,
            }),
        );
        self.submit(s, signers)
    }

    fn lot(&self, lot: &LotId) -> LotRecord {
        get_json(&self.state, &key(prefix::LOT, &[&lot.bytes()]))
            .expect("state")
            .expect("the lot is recorded")
    }

    fn identity(&self, identity: &SigningKey) -> IdentityRecord {
        get_json(
            &self.state,
            &key(prefix::IDENTITY, &[pk(identity).as_bytes()]),
        )
        .expect("state")
        .expect("the identity is recorded")
    }

    fn certification(&self, id: &StatementId) -> CertificationRecord {
        get_json(&self.state, &key(prefix::CERTIFICATION, &[id.as_bytes()]))
            .expect("state")
            .expect("the certification is recorded")
    }

    fn transfer_record(&self, id: &StatementId) -> TransferRecord {
        get_json(&self.state, &key(prefix::TRANSFER, &[id.as_bytes()]))
            .expect("state")
            .expect("the transfer is recorded")
    }
}

// ---------------------------------------------------------------------------------------------
// Statement bodies, valid unless a test changes them.

fn declaration(roles: &[Role]) -> proto::ParticipantDeclaration {
    proto::ParticipantDeclaration {
        name: "Cooperativa La Esperanza".into(),
        roles: roles.iter().map(|r| *r as i32).collect(),
        organisation_type: OrganisationType::SmallholderAssociation as i32,
        country: "HN".into(),
        location: "Marcala, La Paz".into(),
        guardians: Vec::new(),
        guardian_threshold: 0,
    }
}

fn guarded(roles: &[Role], guardians: &[&SigningKey], k: u32) -> proto::ParticipantDeclaration {
    proto::ParticipantDeclaration {
        guardians: guardians
            .iter()
            .map(|g| pk(g).as_bytes().to_vec())
            .collect(),
        guardian_threshold: k,
        ..declaration(roles)
    }
}

/// A Participatory Guarantee System whose members are `members`, `k` of whom make a quorum.
fn pgs(members: &[&SigningKey], k: u32) -> proto::ParticipantDeclaration {
    proto::ParticipantDeclaration {
        name: "Red de Garantía Participativa".into(),
        organisation_type: OrganisationType::ParticipatoryGuaranteeSystem as i32,
        ..guarded(&[Role::Certifier], members, k)
    }
}

fn grams(amount: u64) -> proto::Quantity {
    proto::Quantity {
        amount,
        unit: Unit::Gram as i32,
    }
}

fn usd_per_kg(cents: u64) -> proto::Price {
    proto::Price {
        currency: "USD".into(),
        minor_units: cents,
        per: Some(grams(KG)),
    }
}

fn harvest(commodity: &str, amount: u64) -> proto::Harvest {
    proto::Harvest {
        commodity: commodity.into(),
        quantity: Some(grams(amount)),
        harvested_from_ms: NOW - 90 * DAY,
        harvested_until_ms: NOW - 30 * DAY,
        country: "HN".into(),
        region: "La Paz".into(),
        farmgate_price: Some(usd_per_kg(420)),
        premium: Some(usd_per_kg(44)),
        farmer_count: 120,
        lot_code: "LP-2025-07".into(),
    }
}

fn inputs(lots: &[(LotId, u64)]) -> Vec<proto::LotInput> {
    lots.iter()
        .map(|(lot, amount)| proto::LotInput {
            lot: Some(lot.to_proto()),
            amount: *amount,
        })
        .collect()
}

fn transfer(lots: &[(LotId, u64)], recipient: &PublicKey) -> proto::Transfer {
    proto::Transfer {
        inputs: inputs(lots),
        recipient: recipient.as_bytes().to_vec(),
        price: Some(usd_per_kg(610)),
        document_reference: "BL-HN-2025-0042".into(),
    }
}

fn receipt(transfer: &StatementId, outcome: proto::ReceiptOutcome, amount: u64) -> Body {
    Body::Receipt(proto::Receipt {
        transfer: transfer.as_bytes().to_vec(),
        outcome: outcome as i32,
        amount_received: amount,
    })
}

fn certification(subject: &SigningKey) -> proto::Certification {
    proto::Certification {
        subject: pk(subject).as_bytes().to_vec(),
        scheme: "Fairtrade".into(),
        certificate_id: "FLO-ID 3456".into(),
        commodities: vec!["coffee".into()],
        roles: vec![Role::Producer as i32],
        valid_from_ms: NOW - DAY,
        valid_until_ms: NOW + 365 * DAY,
        kind: proto::CertificationKind::ThirdParty as i32,
        network: Vec::new(),
    }
}

fn participatory(subject: &SigningKey, network: &SigningKey) -> proto::Certification {
    proto::Certification {
        scheme: "SPG Ecovida".into(),
        kind: proto::CertificationKind::Participatory as i32,
        network: pk(network).as_bytes().to_vec(),
        ..certification(subject)
    }
}

fn revocation(cert: &StatementId, kind: proto::RevocationKind) -> Body {
    Body::Revocation(proto::Revocation {
        certification: cert.as_bytes().to_vec(),
        kind: kind as i32,
        effective_at_ms: NOW,
        reason: "audit found unpaid premiums".into(),
    })
}

fn binding(gtin: &str, batch: &str, lots: &[(LotId, u64)]) -> Body {
    Body::ProductBinding(proto::ProductBinding {
        gtin: gtin.into(),
        batch: batch.into(),
        serial: String::new(),
        inputs: inputs(lots),
        product_name: "Café de Marcala, tostado medio, 250 g".into(),
    })
}

fn dispute(entry: &StatementId) -> Body {
    Body::Dispute(proto::Dispute {
        entry: entry.as_bytes().to_vec(),
        reason: "we were paid USD 3.10/kg, not 4.20".into(),
    })
}

/// GS1's example GTIN-14 (check digit 2).
const GTIN: &str = "09506000134352";

#[track_caller]
fn assert_invalid<T: std::fmt::Debug>(result: Result<T, RuleError>, expected_field: &str) {
    match result {
        Err(RuleError::Invalid { field, .. }) if field == expected_field => {}
        other => panic!("expected Invalid on {expected_field:?}, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Declarations.

#[test]
fn a_declaration_records_the_key_and_the_identity() {
    let mut ledger = Ledger::new();
    let coop = signing_key(1);
    ledger.declare(&coop, &[Role::Cooperative, Role::Producer]);

    let record = key_record(&ledger.state, &pk(&coop)).unwrap().unwrap();
    assert_eq!(record.identity, pk(&coop));
    assert_eq!(record.since, 0);
    assert_eq!(record.retired_at, None);
    let identity = ledger.identity(&coop);
    assert_eq!(identity.current_key, pk(&coop));
    assert_eq!(
        identity.roles,
        vec![Role::Cooperative as i32, Role::Producer as i32]
    );
    assert_eq!(identity.declared_at, 0);
}

#[test]
fn declaring_the_same_key_twice_is_key_in_use() {
    let mut ledger = Ledger::new();
    let (other, coop) = (signing_key(9), signing_key(1));
    ledger.declare(&other, &[Role::Trader]);
    ledger.declare(&coop, &[Role::Cooperative]);
    assert_eq!(
        ledger.by(
            &coop,
            Body::ParticipantDeclaration(declaration(&[Role::Trader]))
        ),
        Err(RuleError::KeyInUse {
            key: pk(&coop),
            at: 1
        })
    );
}

#[test]
fn a_declaration_with_a_bad_country_is_invalid() {
    let mut ledger = Ledger::new();
    for country in ["hn", "HND", "H", "", "H1"] {
        let d = proto::ParticipantDeclaration {
            country: country.into(),
            ..declaration(&[Role::Producer])
        };
        assert_invalid(
            ledger.by(&signing_key(1), Body::ParticipantDeclaration(d)),
            "country",
        );
    }
}

#[test]
fn a_declaration_without_roles_is_invalid() {
    let mut ledger = Ledger::new();
    assert_invalid(
        ledger.by(
            &signing_key(1),
            Body::ParticipantDeclaration(declaration(&[])),
        ),
        "roles",
    );
}

#[test]
fn a_declaration_with_an_unknown_role_number_is_invalid() {
    let mut ledger = Ledger::new();
    for role in [99, 0, -1] {
        let d = proto::ParticipantDeclaration {
            roles: vec![Role::Producer as i32, role],
            ..declaration(&[])
        };
        assert_invalid(
            ledger.by(&signing_key(1), Body::ParticipantDeclaration(d)),
            "roles",
        );
    }
}

#[test]
fn a_declaration_naming_a_guardian_twice_is_invalid() {
    let mut ledger = Ledger::new();
    let (g1, g2) = (signing_key(11), signing_key(12));
    let d = guarded(&[Role::Producer], &[&g1, &g2, &g1], 2);
    assert_invalid(
        ledger.by(&signing_key(1), Body::ParticipantDeclaration(d)),
        "guardians[2]",
    );
}

#[test]
fn a_declaration_naming_itself_as_guardian_is_invalid() {
    let mut ledger = Ledger::new();
    let (me, g) = (signing_key(1), signing_key(11));
    let d = guarded(&[Role::Producer], &[&g, &me], 1);
    assert_invalid(
        ledger.by(&me, Body::ParticipantDeclaration(d)),
        "guardians[1]",
    );
}

#[test]
fn a_guardian_threshold_out_of_range_is_invalid() {
    let mut ledger = Ledger::new();
    let (g1, g2) = (signing_key(11), signing_key(12));
    for (guardians, k) in [(vec![&g1, &g2], 0), (vec![&g1, &g2], 3), (vec![], 1)] {
        let d = guarded(&[Role::Producer], &guardians, k);
        assert_invalid(
            ledger.by(&signing_key(1), Body::ParticipantDeclaration(d)),
            "guardian_threshold",
        );
    }
    // The bounds themselves are fine.
    ledger.declare_as(&signing_key(1), guarded(&[Role::Producer], &[&g1, &g2], 2));
    ledger.declare_as(&signing_key(2), guarded(&[Role::Producer], &[&g1, &g2], 1));
}

// ---------------------------------------------------------------------------------------------
// Undeclared issuers.

#[test]
fn every_body_but_a_declaration_needs_a_declared_issuer() {
    let mut ledger = Ledger::new();
    let (coop, certifier, stranger, fresh) = (
        signing_key(1),
        signing_key(2),
        signing_key(99),
        signing_key(98),
    );
    ledger.declare(&coop, &[Role::Cooperative, Role::Retailer]);
    ledger.declare(&certifier, &[Role::Certifier]);
    let lot = ledger.harvest(&coop, "coffee", 1_000 * KG);
    let shipment = ledger
        .transfer(&coop, &[(lot, 10 * KG)], &certifier)
        .unwrap();
    let cert = ledger
        .by(&certifier, Body::Certification(certification(&coop)))
        .unwrap();
    let undeclared = Err(RuleError::UndeclaredKey { key: pk(&stranger) });

    // A rotation is signed by the old and the new key.
    assert_eq!(
        ledger.rotate(&stranger, &fresh, false, &[&stranger, &fresh]),
        undeclared
    );
    let bodies = [
        Body::Certification(certification(&coop)),
        Body::Certification(participatory(&coop, &certifier)),
        revocation(&cert, proto::RevocationKind::Suspended),
        Body::Harvest(harvest("coffee", 5 * KG)),
        Body::Transfer(transfer(&[(lot, KG)], &pk(&certifier))),
        receipt(&shipment, proto::ReceiptOutcome::Confirmed, 10 * KG),
        Body::Transformation(proto::Transformation {
            inputs: inputs(&[(lot, KG)]),
            outputs: vec![proto::LotOutput {
                commodity: "roasted coffee".into(),
                quantity: Some(grams(800)),
                lot_code: String::new(),
            }],
            process: "roasting".into(),
        }),
        binding(GTIN, "L1", &[(lot, KG)]),
        dispute(&shipment),
    ];
    for body in bodies {
        let kind = crate::statement::body_kind(&body);
        assert_eq!(ledger.by(&stranger, body), undeclared, "{kind}");
    }
}

// ---------------------------------------------------------------------------------------------
// Key rotation and recovery.

#[test]
fn a_rotation_signed_by_old_and_new_key_moves_the_identity() {
    let mut ledger = Ledger::new();
    let (coop, coop2, trader) = (signing_key(1), signing_key(2), signing_key(3));
    ledger.declare(&coop, &[Role::Cooperative]);
    ledger.declare(&trader, &[Role::Trader]);
    let lot = ledger.harvest(&coop, "coffee", 1_000 * KG);
    let rotated_at = ledger.index;
    ledger
        .rotate(&coop, &coop2, false, &[&coop, &coop2])
        .unwrap();

    let old = key_record(&ledger.state, &pk(&coop)).unwrap().unwrap();
    assert_eq!(old.retired_at, Some(rotated_at));
    let new = key_record(&ledger.state, &pk(&coop2)).unwrap().unwrap();
    assert_eq!(
        (new.identity, new.since, new.retired_at),
        (pk(&coop), rotated_at, None)
    );
    assert_eq!(ledger.identity(&coop).current_key, pk(&coop2));

    // The old key may no longer sign anything.
    let retired = Err(RuleError::RetiredKey {
        key: pk(&coop),
        at: rotated_at,
    });
    assert_eq!(
        ledger.by(&coop, Body::Harvest(harvest("coffee", KG))),
        retired
    );
    assert_eq!(ledger.transfer(&coop, &[(lot, KG)], &trader), retired);
    assert_eq!(ledger.by(&coop, dispute(&lot.statement)), retired);
    assert_eq!(
        ledger.rotate(&coop, &signing_key(4), false, &[&coop, &signing_key(4)]),
        retired
    );
    // Nor be named as a recipient (checked before the sender's inputs).
    assert_eq!(ledger.transfer(&trader, &[(lot, KG)], &coop), retired);

    // The new key speaks for the identity, and still holds its lots.
    ledger.harvest(&coop2, "coffee", 2 * KG);
    let shipped = ledger.ship(&coop2, &[(lot, 400 * KG)], &trader);
    assert_eq!(ledger.lot(&lot).remaining, 600 * KG);
    assert_eq!(ledger.lot(&shipped).holder, pk(&trader));
}

#[test]
fn a_rotation_the_new_key_did_not_sign_is_missing_signature() {
    let mut ledger = Ledger::new();
    let (coop, coop2) = (signing_key(1), signing_key(2));
    ledger.declare(&coop, &[Role::Cooperative]);
    assert_eq!(
        ledger.rotate(&coop, &coop2, false, &[&coop]),
        Err(RuleError::MissingSignature {
            who: "the new key".into(),
            key: pk(&coop2)
        })
    );
}

#[test]
fn a_rotation_to_a_key_in_use_is_key_in_use() {
    let mut ledger = Ledger::new();
    let (coop, trader, trader2, other) = (
        signing_key(1),
        signing_key(2),
        signing_key(3),
        signing_key(4),
    );
    ledger.declare(&coop, &[Role::Cooperative]);
    ledger.declare(&trader, &[Role::Trader]);
    assert_eq!(
        ledger.rotate(&coop, &trader, false, &[&coop, &trader]),
        Err(RuleError::KeyInUse {
            key: pk(&trader),
            at: 1
        })
    );
    // A key rotated to is in use from that entry; a retired key stays in use for good.
    ledger.declare(&other, &[Role::Trader]);
    let rotated_at = ledger.index;
    ledger
        .rotate(&trader, &trader2, false, &[&trader, &trader2])
        .unwrap();
    assert_eq!(
        ledger.rotate(&coop, &trader2, false, &[&coop, &trader2]),
        Err(RuleError::KeyInUse {
            key: pk(&trader2),
            at: rotated_at
        })
    );
    assert_eq!(
        ledger.rotate(&coop, &trader, false, &[&coop, &trader]),
        Err(RuleError::KeyInUse {
            key: pk(&trader),
            at: 1
        })
    );
    // Nor may a retired key declare a new identity.
    assert_eq!(
        ledger.by(
            &trader,
            Body::ParticipantDeclaration(declaration(&[Role::Producer]))
        ),
        Err(RuleError::KeyInUse {
            key: pk(&trader),
            at: 1
        })
    );
}

#[test]
fn a_recovery_by_k_of_n_guardians_works_without_the_lost_key() {
    let mut ledger = Ledger::new();
    let (coop, coop2, trader) = (signing_key(1), signing_key(2), signing_key(3));
    let (g1, g2, g3) = (signing_key(11), signing_key(12), signing_key(13));
    // One guardian is a declared participant, the others are just keys.
    ledger.declare(&g1, &[Role::Monitor]);
    ledger.declare_as(&coop, guarded(&[Role::Cooperative], &[&g1, &g2, &g3], 2));
    ledger.declare(&trader, &[Role::Trader]);
    let lot = ledger.harvest(&coop, "coffee", 1_000 * KG);

    let recovered_at = ledger.index;
    ledger
        .rotate(&coop, &coop2, true, &[&coop2, &g1, &g3])
        .unwrap();
    assert_eq!(
        ledger.by(&coop, Body::Harvest(harvest("coffee", KG))),
        Err(RuleError::RetiredKey {
            key: pk(&coop),
            at: recovered_at
        })
    );
    ledger.ship(&coop2, &[(lot, 100 * KG)], &trader);
    assert_eq!(ledger.lot(&lot).remaining, 900 * KG);
}

#[test]
fn a_recovery_by_k_minus_one_guardians_is_quorum_not_met() {
    let mut ledger = Ledger::new();
    let (coop, coop2) = (signing_key(1), signing_key(2));
    let (g1, g2, g3) = (signing_key(11), signing_key(12), signing_key(13));
    ledger.declare_as(&coop, guarded(&[Role::Cooperative], &[&g1, &g2, &g3], 2));
    let quorum = |have| {
        Err(RuleError::QuorumNotMet {
            what: "key recovery".into(),
            among: "the participant's guardians".into(),
            have,
            need: 2,
        })
    };
    assert_eq!(
        ledger.rotate(&coop, &coop2, true, &[&coop2, &g2]),
        quorum(1)
    );
    // Someone who is no guardian does not count.
    let outsider = signing_key(14);
    assert_eq!(
        ledger.rotate(&coop, &coop2, true, &[&coop2, &g2, &outsider]),
        quorum(1)
    );
    // The new key must sign a recovery too.
    assert_eq!(
        ledger.rotate(&coop, &coop2, true, &[&g1, &g2]),
        Err(RuleError::MissingSignature {
            who: "the new key".into(),
            key: pk(&coop2)
        })
    );
}

#[test]
fn a_guardian_cannot_sign_a_recovery_twice() {
    let ledger = Ledger::new();
    let (coop, coop2, g1) = (signing_key(1), signing_key(2), signing_key(11));
    let s = ledger.statement(
        &coop,
        Body::KeyRotation(proto::KeyRotation {
            new_key: pk(&coop2).as_bytes().to_vec(),
            recovery: true,
        }),
    );
    assert_eq!(
        Envelope::try_from(sign(encode(&s), &[&coop2, &g1, &g1])).unwrap_err(),
        EnvelopeError::DuplicateSigner { key: pk(&g1) }
    );
}

#[test]
fn a_guardian_identity_counts_once_whichever_of_its_keys_sign() {
    let mut ledger = Ledger::new();
    let (coop, coop2) = (signing_key(1), signing_key(2));
    let (g1, g1_new, g2) = (signing_key(11), signing_key(21), signing_key(12));
    // The coop names both keys of its guardian g1, and g2.
    ledger.declare(&g1, &[Role::Monitor]);
    ledger.declare_as(
        &coop,
        guarded(&[Role::Cooperative], &[&g1, &g1_new, &g2], 2),
    );
    ledger.rotate(&g1, &g1_new, false, &[&g1, &g1_new]).unwrap();
    assert_eq!(
        ledger.rotate(&coop, &coop2, true, &[&coop2, &g1, &g1_new]),
        Err(RuleError::QuorumNotMet {
            what: "key recovery".into(),
            among: "the participant's guardians".into(),
            have: 1,
            need: 2,
        })
    );
    // A guardian that rotated counts with its current key, though the coop named the old one.
    let coop_only_old = signing_key(5);
    ledger.declare_as(
        &coop_only_old,
        guarded(&[Role::Cooperative], &[&g1, &g2], 2),
    );
    ledger
        .rotate(
            &coop_only_old,
            &signing_key(6),
            true,
            &[&signing_key(6), &g1_new, &g2],
        )
        .unwrap();
    ledger
        .rotate(&coop, &coop2, true, &[&coop2, &g1_new, &g2])
        .unwrap();
}

#[test]
fn a_recovery_without_guardians_is_conflict() {
    let mut ledger = Ledger::new();
    let (coop, coop2, friend) = (signing_key(1), signing_key(2), signing_key(11));
    ledger.declare(&coop, &[Role::Cooperative]);
    assert!(matches!(
        ledger.rotate(&coop, &coop2, true, &[&coop2, &friend]),
        Err(RuleError::Conflict(m)) if m.contains("named no guardians")
    ));
}

// ---------------------------------------------------------------------------------------------
// Certifications.

/// A coop and a certifier, declared.
fn certification_world() -> (Ledger, SigningKey, SigningKey) {
    let mut ledger = Ledger::new();
    let (coop, certifier) = (signing_key(1), signing_key(2));
    ledger.declare(&coop, &[Role::Cooperative]);
    ledger.declare_as(
        &certifier,
        proto::ParticipantDeclaration {
            name: "FLOCERT".into(),
            organisation_type: OrganisationType::CertificationBody as i32,
            country: "DE".into(),
            ..declaration(&[Role::Certifier])
        },
    );
    (ledger, coop, certifier)
}

#[test]
fn a_certifier_certifies_a_participant() {
    let (mut ledger, coop, certifier) = certification_world();
    let id = ledger
        .by(&certifier, Body::Certification(certification(&coop)))
        .unwrap();
    assert_eq!(
        ledger.certification(&id),
        CertificationRecord {
            issuer: pk(&certifier),
            participatory: false,
            subject: pk(&coop),
            status: CertificationStatus::Active,
        }
    );
    let by_subject = key(
        prefix::BY_SUBJECT,
        &[pk(&coop).as_bytes(), &2u64.to_be_bytes()],
    );
    assert!(ledger.state.contains_key(&by_subject));
}

#[test]
fn a_certification_by_a_non_certifier_is_missing_role() {
    let (mut ledger, coop, _) = certification_world();
    let neighbour = signing_key(3);
    ledger.declare(&neighbour, &[Role::Producer, Role::Monitor]);
    assert_eq!(
        ledger.by(&neighbour, Body::Certification(certification(&coop))),
        Err(RuleError::MissingRole {
            key: pk(&neighbour),
            role: "certifier"
        })
    );
}

#[test]
fn a_certification_of_an_undeclared_subject_is_undeclared_key() {
    let (mut ledger, _, certifier) = certification_world();
    let nobody = signing_key(50);
    assert_eq!(
        ledger.by(&certifier, Body::Certification(certification(&nobody))),
        Err(RuleError::UndeclaredKey { key: pk(&nobody) })
    );
}

#[test]
fn a_certification_valid_until_not_after_valid_from_is_invalid() {
    let (mut ledger, coop, certifier) = certification_world();
    for until in [NOW - DAY, NOW - 2 * DAY] {
        let c = proto::Certification {
            valid_until_ms: until,
            ..certification(&coop)
        };
        assert_invalid(
            ledger.by(&certifier, Body::Certification(c)),
            "valid_until_ms",
        );
    }
}

#[test]
fn a_certification_with_an_empty_scope_is_invalid() {
    let (mut ledger, coop, certifier) = certification_world();
    let c = proto::Certification {
        commodities: Vec::new(),
        roles: Vec::new(),
        ..certification(&coop)
    };
    assert_invalid(ledger.by(&certifier, Body::Certification(c)), "scope");
}

/// A coop, a PGS network of four members (three make a quorum), and an outsider; all
/// declared. Returns (ledger, coop, network, members, outsider).
fn pgs_world() -> (Ledger, SigningKey, SigningKey, Vec<SigningKey>, SigningKey) {
    let (mut ledger, coop, _) = certification_world();
    let members: Vec<SigningKey> = (31..35).map(signing_key).collect();
    for m in &members {
        ledger.declare(m, &[Role::Producer]);
    }
    let network = signing_key(30);
    let refs: Vec<&SigningKey> = members.iter().collect();
    ledger.declare_as(&network, pgs(&refs, 3));
    let outsider = signing_key(40);
    ledger.declare(&outsider, &[Role::Producer]);
    (ledger, coop, network, members, outsider)
}

#[test]
fn a_pgs_certification_by_k_distinct_members_works() {
    let (mut ledger, coop, network, m, _) = pgs_world();
    let s = ledger.statement(&m[0], Body::Certification(participatory(&coop, &network)));
    let id = ledger.submit(s, &[&m[0], &m[2], &m[3]]).unwrap();
    let record = ledger.certification(&id);
    assert!(record.participatory);
    assert_eq!(record.issuer, pk(&network));
    assert_eq!(record.subject, pk(&coop));
}

#[test]
fn a_pgs_certification_by_k_minus_one_members_is_quorum_not_met() {
    let (mut ledger, coop, network, m, outsider) = pgs_world();
    let quorum = |have| {
        Err(RuleError::QuorumNotMet {
            what: "participatory certification".into(),
            among: "the members of Red de Garantía Participativa".into(),
            have,
            need: 3,
        })
    };
    let s = ledger.statement(&m[0], Body::Certification(participatory(&coop, &network)));
    assert_eq!(ledger.submit(s.clone(), &[&m[0], &m[1]]), quorum(2));
    // Signatures of non-members, declared or not, do not count; nor does the subject's.
    assert_eq!(
        ledger.submit(
            s.clone(),
            &[&m[0], &m[1], &outsider, &signing_key(41), &coop]
        ),
        quorum(2)
    );
    // The network's own key is not one of its members.
    assert_eq!(ledger.submit(s, &[&m[0], &m[1], &network]), quorum(2));
}

#[test]
fn a_participatory_certification_needs_a_pgs_network() {
    let (mut ledger, coop, _, m, _) = pgs_world();
    // A participant that names guardians is not thereby a guarantee system: it must not be
    // able to certify itself by signing with a few keys of its own.
    let (own1, own2) = (signing_key(61), signing_key(62));
    let sly = signing_key(60);
    ledger.declare_as(&sly, guarded(&[Role::Producer], &[&own1, &own2], 2));
    let s = ledger.statement(&sly, Body::Certification(participatory(&sly, &sly)));
    assert_invalid(ledger.submit(s, &[&sly, &own1, &own2]), "network");
    // A network with no quorum cannot certify either.
    let empty = signing_key(63);
    ledger.declare_as(&empty, pgs(&[], 0));
    let s = ledger.statement(&m[0], Body::Certification(participatory(&coop, &empty)));
    assert_invalid(ledger.submit(s, &[&m[0], &m[1], &m[2]]), "network");
}

#[test]
fn a_pgs_member_counts_with_its_current_key_after_rotating() {
    let (mut ledger, coop, network, m, _) = pgs_world();
    let m0_new = signing_key(70);
    ledger
        .rotate(&m[0], &m0_new, false, &[&m[0], &m0_new])
        .unwrap();
    let s = ledger.statement(&m[1], Body::Certification(participatory(&coop, &network)));
    // The retired key no longer counts.
    assert!(matches!(
        ledger.submit(s.clone(), &[&m[1], &m[2], &m[0]]),
        Err(RuleError::QuorumNotMet { have: 2, .. })
    ));
    ledger.submit(s, &[&m[1], &m[2], &m0_new]).unwrap();
}

// ---------------------------------------------------------------------------------------------
// Revocations.

#[test]
fn the_certifier_suspends_reinstates_and_revokes() {
    let (mut ledger, coop, certifier) = certification_world();
    let cert = ledger
        .by(&certifier, Body::Certification(certification(&coop)))
        .unwrap();
    use proto::RevocationKind::*;
    for (kind, status) in [
        (Suspended, CertificationStatus::Suspended),
        (Reinstated, CertificationStatus::Active),
        (Revoked, CertificationStatus::Revoked),
    ] {
        ledger.by(&certifier, revocation(&cert, kind)).unwrap();
        assert_eq!(ledger.certification(&cert).status, status, "{kind:?}");
    }
    // A suspended certification may be revoked outright.
    let cert2 = ledger
        .by(&certifier, Body::Certification(certification(&coop)))
        .unwrap();
    ledger
        .by(&certifier, revocation(&cert2, Suspended))
        .unwrap();
    ledger.by(&certifier, revocation(&cert2, Revoked)).unwrap();
    assert_eq!(
        ledger.certification(&cert2).status,
        CertificationStatus::Revoked
    );
}

#[test]
fn a_revocation_by_someone_else_is_missing_signature() {
    let (mut ledger, coop, certifier) = certification_world();
    let cert = ledger
        .by(&certifier, Body::Certification(certification(&coop)))
        .unwrap();
    let rival = signing_key(3);
    ledger.declare(&rival, &[Role::Certifier]);
    let expected = Err(RuleError::MissingSignature {
        who: "the certifier who issued it".into(),
        key: pk(&certifier),
    });
    assert_eq!(
        ledger.by(&rival, revocation(&cert, proto::RevocationKind::Revoked)),
        expected
    );
    // Nor may the subject lift its own suspension.
    ledger
        .by(
            &certifier,
            revocation(&cert, proto::RevocationKind::Suspended),
        )
        .unwrap();
    assert_eq!(
        ledger.by(&coop, revocation(&cert, proto::RevocationKind::Reinstated)),
        expected
    );
}

#[test]
fn revocations_out_of_order_are_conflicts() {
    let (mut ledger, coop, certifier) = certification_world();
    let cert = ledger
        .by(&certifier, Body::Certification(certification(&coop)))
        .unwrap();
    use proto::RevocationKind::*;
    let conflict = |r: Result<StatementId, RuleError>, what: &str| match r {
        Err(RuleError::Conflict(m)) if m.contains(what) => {}
        other => panic!("expected a conflict ({what}), got {other:?}"),
    };
    conflict(
        ledger.by(&certifier, revocation(&cert, Reinstated)),
        "is not suspended",
    );
    ledger.by(&certifier, revocation(&cert, Suspended)).unwrap();
    conflict(
        ledger.by(&certifier, revocation(&cert, Suspended)),
        "already suspended",
    );
    ledger.by(&certifier, revocation(&cert, Revoked)).unwrap();
    for kind in [Revoked, Suspended, Reinstated, Unspecified] {
        conflict(
            ledger.by(&certifier, revocation(&cert, kind)),
            "already revoked",
        );
    }
}

#[test]
fn a_revocation_kind_unspecified_is_invalid() {
    let (mut ledger, coop, certifier) = certification_world();
    let cert = ledger
        .by(&certifier, Body::Certification(certification(&coop)))
        .unwrap();
    assert_invalid(
        ledger.by(
            &certifier,
            revocation(&cert, proto::RevocationKind::Unspecified),
        ),
        "kind",
    );
}

#[test]
fn a_revocation_of_an_unknown_certification_is_unknown() {
    let (mut ledger, _, certifier) = certification_world();
    assert_eq!(
        ledger.by(
            &certifier,
            revocation(&unknown_id(), proto::RevocationKind::Revoked)
        ),
        Err(RuleError::Unknown {
            what: "certification",
            id: unknown_id().to_string()
        })
    );
    // Nor is any other statement a certification.
    let lot = {
        ledger.declare(&signing_key(5), &[Role::Producer]);
        ledger.harvest(&signing_key(5), "coffee", KG)
    };
    assert!(matches!(
        ledger.by(
            &certifier,
            revocation(&lot.statement, proto::RevocationKind::Revoked)
        ),
        Err(RuleError::Unknown {
            what: "certification",
            ..
        })
    ));
}

#[test]
fn a_pgs_revokes_its_certification_by_quorum() {
    let (mut ledger, coop, network, m, outsider) = pgs_world();
    let s = ledger.statement(&m[0], Body::Certification(participatory(&coop, &network)));
    let cert = ledger.submit(s, &[&m[0], &m[1], &m[2]]).unwrap();
    let s = ledger.statement(&m[3], revocation(&cert, proto::RevocationKind::Suspended));
    assert!(matches!(
        ledger.submit(s.clone(), &[&m[3], &outsider]),
        Err(RuleError::QuorumNotMet {
            have: 1,
            need: 3,
            ..
        })
    ));
    // Whoever submits it must be a declared participant with a current key.
    let stranger = signing_key(77);
    let mut by_stranger = s.clone();
    by_stranger.issuer = pk(&stranger).as_bytes().to_vec();
    assert_eq!(
        ledger.submit(by_stranger, &[&stranger, &m[3], &m[1], &m[0]]),
        Err(RuleError::UndeclaredKey { key: pk(&stranger) })
    );
    ledger.submit(s, &[&m[3], &m[1], &m[0]]).unwrap();
    assert_eq!(
        ledger.certification(&cert).status,
        CertificationStatus::Suspended
    );
}

// ---------------------------------------------------------------------------------------------
// Harvests.

#[test]
fn a_harvest_creates_a_lot_of_the_full_quantity() {
    let mut ledger = Ledger::new();
    let coop = signing_key(1);
    ledger.declare(&coop, &[Role::Cooperative]);
    let lot = ledger.harvest(&coop, "coffee", 69_500);
    assert_eq!(lot.output, 0);
    assert_eq!(
        ledger.lot(&lot),
        LotRecord {
            holder: pk(&coop),
            commodity: "coffee".into(),
            unit: Unit::Gram as i32,
            quantity: 69_500,
            remaining: 69_500,
            created_at: 1,
        }
    );
    assert_eq!(lot.to_string(), format!("{}:0", lot.statement));
}

#[test]
fn a_harvest_needs_the_producer_or_cooperative_role() {
    let mut ledger = Ledger::new();
    let (trader, producer, coop) = (signing_key(1), signing_key(2), signing_key(3));
    ledger.declare(&trader, &[Role::Trader, Role::Retailer, Role::Certifier]);
    ledger.declare(&producer, &[Role::Producer]);
    ledger.declare(&coop, &[Role::Cooperative]);
    assert_eq!(
        ledger.by(&trader, Body::Harvest(harvest("coffee", KG))),
        Err(RuleError::MissingRole {
            key: pk(&trader),
            role: "producer"
        })
    );
    ledger.harvest(&producer, "coffee", KG);
    ledger.harvest(&coop, "cocoa", KG);
}

#[test]
fn a_harvest_of_nothing_is_invalid() {
    let mut ledger = Ledger::new();
    let coop = signing_key(1);
    ledger.declare(&coop, &[Role::Cooperative]);
    assert_invalid(
        ledger.by(&coop, Body::Harvest(harvest("coffee", 0))),
        "quantity",
    );
    let h = proto::Harvest {
        quantity: None,
        ..harvest("coffee", KG)
    };
    assert_invalid(ledger.by(&coop, Body::Harvest(h)), "quantity");
}

#[test]
fn a_harvest_priced_per_another_unit_is_invalid() {
    let mut ledger = Ledger::new();
    let coop = signing_key(1);
    ledger.declare(&coop, &[Role::Cooperative]);
    let per_piece = proto::Price {
        per: Some(proto::Quantity {
            amount: 1,
            unit: Unit::Piece as i32,
        }),
        ..usd_per_kg(5)
    };
    let h = proto::Harvest {
        farmgate_price: Some(per_piece.clone()),
        ..harvest("coffee", KG)
    };
    assert_invalid(ledger.by(&coop, Body::Harvest(h)), "farmgate_price");
    let h = proto::Harvest {
        premium: Some(per_piece),
        ..harvest("coffee", KG)
    };
    assert_invalid(ledger.by(&coop, Body::Harvest(h)), "premium");
}

#[test]
fn a_harvest_priced_in_a_bad_currency_is_invalid() {
    let mut ledger = Ledger::new();
    let coop = signing_key(1);
    ledger.declare(&coop, &[Role::Cooperative]);
    for currency in ["usd", "US", "USDT", ""] {
        let h = proto::Harvest {
            farmgate_price: Some(proto::Price {
                currency: currency.into(),
                ..usd_per_kg(420)
            }),
            ..harvest("coffee", KG)
        };
        assert_invalid(ledger.by(&coop, Body::Harvest(h)), "farmgate_price");
    }
}

// ---------------------------------------------------------------------------------------------
// Transfers.

/// A coop holding a 1,000 kg coffee lot, and a trader; both declared.
fn coffee_world() -> (Ledger, SigningKey, SigningKey, LotId) {
    let mut ledger = Ledger::new();
    let (coop, trader) = (signing_key(1), signing_key(2));
    ledger.declare(&coop, &[Role::Cooperative]);
    ledger.declare(&trader, &[Role::Trader]);
    let lot = ledger.harvest(&coop, "coffee", 1_000 * KG);
    (ledger, coop, trader, lot)
}

#[test]
fn a_transfer_ships_part_of_a_lot_to_the_recipient() {
    let (mut ledger, coop, trader, lot) = coffee_world();
    let id = ledger.transfer(&coop, &[(lot, 600 * KG)], &trader).unwrap();
    let shipped = LotId {
        statement: id,
        output: 0,
    };
    assert_eq!(ledger.lot(&lot).remaining, 400 * KG);
    assert_eq!(ledger.lot(&lot).quantity, 1_000 * KG);
    let new = ledger.lot(&shipped);
    assert_eq!(
        (
            new.holder,
            new.commodity.as_str(),
            new.quantity,
            new.remaining
        ),
        (pk(&trader), "coffee", 600 * KG, 600 * KG)
    );
    assert_eq!(
        ledger.transfer_record(&id),
        TransferRecord {
            recipient: pk(&trader),
            amount: 600 * KG,
            unit: Unit::Gram as i32,
            receipt_at: None,
        }
    );
    // The consumption is indexed under the lot.
    let by_lot = key(prefix::BY_LOT, &[&lot.bytes(), &3u64.to_be_bytes()]);
    assert!(ledger.state.contains_key(&by_lot));

    // The recipient may ship on what it received.
    let buyer = signing_key(3);
    ledger.declare(&buyer, &[Role::Retailer]);
    ledger.ship(&trader, &[(shipped, 600 * KG)], &buyer);
    assert_eq!(ledger.lot(&shipped).remaining, 0);
}

#[test]
fn a_transfer_beyond_what_is_left_is_lot_overdrawn() {
    let (mut ledger, coop, trader, lot) = coffee_world();
    ledger.ship(&coop, &[(lot, 600 * KG)], &trader);
    let err = ledger
        .transfer(&coop, &[(lot, 500 * KG)], &trader)
        .unwrap_err();
    assert_eq!(
        err,
        RuleError::LotOverdrawn {
            lot,
            left: "400 kg".into(),
            asked: "500 kg".into()
        }
    );
    assert_eq!(
        err.to_string(),
        format!("lot {}:0 has 400 kg left, 500 kg asked", lot.statement)
    );
    // Exactly what is left may go; then nothing.
    ledger.ship(&coop, &[(lot, 400 * KG)], &trader);
    assert_eq!(
        ledger
            .transfer(&coop, &[(lot, 1)], &trader)
            .unwrap_err()
            .to_string(),
        format!("lot {}:0 has 0 g left, 1 g asked", lot.statement)
    );
}

#[test]
fn a_transfer_of_a_lot_held_by_someone_else_is_not_holder() {
    let (mut ledger, coop, trader, lot) = coffee_world();
    assert_eq!(
        ledger.transfer(&trader, &[(lot, KG)], &coop),
        Err(RuleError::NotHolder {
            lot,
            holder: pk(&coop),
            issuer: pk(&trader)
        })
    );
    // Once shipped, the lot the recipient holds is not the sender's.
    let shipped = ledger.ship(&coop, &[(lot, 10 * KG)], &trader);
    assert!(matches!(
        ledger.transfer(&coop, &[(shipped, KG)], &trader),
        Err(RuleError::NotHolder { .. })
    ));
}

#[test]
fn a_transfer_of_an_unknown_lot_is_unknown() {
    let (mut ledger, coop, trader, lot) = coffee_world();
    for missing in [
        LotId {
            statement: unknown_id(),
            output: 0,
        },
        LotId {
            statement: lot.statement,
            output: 1,
        },
    ] {
        assert_eq!(
            ledger.transfer(&coop, &[(missing, KG)], &trader),
            Err(RuleError::Unknown {
                what: "lot",
                id: missing.to_string()
            })
        );
    }
}

#[test]
fn a_transfer_naming_a_lot_twice_is_invalid() {
    let (mut ledger, coop, trader, lot) = coffee_world();
    assert_invalid(
        ledger.transfer(&coop, &[(lot, 300 * KG), (lot, 300 * KG)], &trader),
        "inputs[1]",
    );
}

#[test]
fn a_transfer_without_inputs_or_of_nothing_is_invalid() {
    let (mut ledger, coop, trader, lot) = coffee_world();
    assert_invalid(ledger.transfer(&coop, &[], &trader), "inputs");
    assert_invalid(ledger.transfer(&coop, &[(lot, 0)], &trader), "inputs[0]");
}

#[test]
fn a_transfer_mixing_commodities_or_units_is_invalid() {
    let (mut ledger, coop, trader, coffee) = coffee_world();
    let cocoa = ledger.harvest(&coop, "cocoa", 500 * KG);
    assert_invalid(
        ledger.transfer(&coop, &[(coffee, KG), (cocoa, KG)], &trader),
        "inputs",
    );
    let h = proto::Harvest {
        quantity: Some(proto::Quantity {
            amount: 40,
            unit: Unit::Piece as i32,
        }),
        farmgate_price: None,
        premium: None,
        ..harvest("coffee", 0)
    };
    // A harvest needs a farmgate price, per the same unit.
    assert_invalid(ledger.by(&coop, Body::Harvest(h.clone())), "farmgate_price");
    let per_piece = proto::Price {
        currency: "USD".into(),
        minor_units: 2_000,
        per: Some(proto::Quantity {
            amount: 1,
            unit: Unit::Piece as i32,
        }),
    };
    let sacks = ledger
        .by(
            &coop,
            Body::Harvest(proto::Harvest {
                farmgate_price: Some(per_piece),
                ..h
            }),
        )
        .map(|statement| LotId {
            statement,
            output: 0,
        })
        .unwrap();
    assert_invalid(
        ledger.transfer(&coop, &[(coffee, KG), (sacks, 1)], &trader),
        "inputs",
    );
}

#[test]
fn a_transfer_to_oneself_is_invalid() {
    let (mut ledger, coop, _, lot) = coffee_world();
    assert_invalid(ledger.transfer(&coop, &[(lot, KG)], &coop), "recipient");
    // Not even to one's own new key.
    let coop2 = signing_key(7);
    ledger
        .rotate(&coop, &coop2, false, &[&coop, &coop2])
        .unwrap();
    assert_invalid(ledger.transfer(&coop2, &[(lot, KG)], &coop2), "recipient");
}

#[test]
fn a_transfer_to_an_undeclared_recipient_is_undeclared_key() {
    let (mut ledger, coop, _, lot) = coffee_world();
    let nobody = signing_key(50);
    assert_eq!(
        ledger.transfer(&coop, &[(lot, KG)], &nobody),
        Err(RuleError::UndeclaredKey { key: pk(&nobody) })
    );
}

#[test]
fn a_transfer_priced_per_another_unit_is_invalid() {
    let (mut ledger, coop, trader, lot) = coffee_world();
    let t = proto::Transfer {
        price: Some(proto::Price {
            per: Some(proto::Quantity {
                amount: 1,
                unit: Unit::Millilitre as i32,
            }),
            ..usd_per_kg(610)
        }),
        ..transfer(&[(lot, KG)], &pk(&trader))
    };
    assert_invalid(ledger.by(&coop, Body::Transfer(t)), "price");
}

#[test]
fn a_transfer_whose_amounts_add_past_u64_max_is_invalid() {
    let mut ledger = Ledger::new();
    let (coop, trader) = (signing_key(1), signing_key(2));
    ledger.declare(&coop, &[Role::Cooperative]);
    ledger.declare(&trader, &[Role::Trader]);
    let big = ledger.harvest(&coop, "coffee", u64::MAX);
    let bigger = ledger.harvest(&coop, "coffee", u64::MAX);
    let before = ledger.state.clone();
    assert_invalid(
        ledger.transfer(&coop, &[(big, u64::MAX), (bigger, 1)], &trader),
        "inputs",
    );
    assert_eq!(ledger.state, before);
    // Each alone is fine.
    ledger.ship(&coop, &[(big, u64::MAX)], &trader);
    assert_eq!(ledger.lot(&big).remaining, 0);
}

// ---------------------------------------------------------------------------------------------
// Receipts.

/// A coop shipped 600 kg to a trader. Returns (ledger, coop, trader, transfer id).
fn shipped_world() -> (Ledger, SigningKey, SigningKey, StatementId) {
    let (mut ledger, coop, trader, lot) = coffee_world();
    let id = ledger.transfer(&coop, &[(lot, 600 * KG)], &trader).unwrap();
    (ledger, coop, trader, id)
}

#[test]
fn the_recipient_confirms_a_transfer() {
    use proto::ReceiptOutcome::Confirmed;
    let (mut ledger, _, trader, shipment) = shipped_world();
    let at = ledger.index;
    ledger
        .by(&trader, receipt(&shipment, Confirmed, 600 * KG))
        .unwrap();
    assert_eq!(ledger.transfer_record(&shipment).receipt_at, Some(at));
    let by_transfer = key(
        prefix::BY_TRANSFER,
        &[shipment.as_bytes(), &at.to_be_bytes()],
    );
    assert!(ledger.state.contains_key(&by_transfer));
}

#[test]
fn a_receipt_by_another_is_missing_signature() {
    use proto::ReceiptOutcome::Confirmed;
    let (mut ledger, coop, trader, shipment) = shipped_world();
    let expected = Err(RuleError::MissingSignature {
        who: "the transfer's recipient".into(),
        key: pk(&trader),
    });
    assert_eq!(
        ledger.by(&coop, receipt(&shipment, Confirmed, 600 * KG)),
        expected
    );
    let third = signing_key(3);
    ledger.declare(&third, &[Role::Monitor]);
    assert_eq!(
        ledger.by(&third, receipt(&shipment, Confirmed, 600 * KG)),
        expected
    );
}

#[test]
fn a_second_receipt_is_conflict() {
    use proto::ReceiptOutcome::{Confirmed, Disputed};
    let (mut ledger, _, trader, shipment) = shipped_world();
    let at = ledger.index;
    ledger
        .by(&trader, receipt(&shipment, Confirmed, 600 * KG))
        .unwrap();
    for outcome in [Confirmed, Disputed] {
        assert_eq!(
            ledger.by(&trader, receipt(&shipment, outcome, 599 * KG)),
            Err(RuleError::Conflict(format!(
                "transfer {shipment} was already answered at entry {at}"
            )))
        );
    }
}

#[test]
fn a_confirmation_of_another_amount_is_invalid() {
    use proto::ReceiptOutcome::{Confirmed, Unspecified};
    let (mut ledger, _, trader, shipment) = shipped_world();
    for amount in [590 * KG, 601 * KG, 0] {
        assert_invalid(
            ledger.by(&trader, receipt(&shipment, Confirmed, amount)),
            "amount_received",
        );
    }
    assert_invalid(
        ledger.by(&trader, receipt(&shipment, Unspecified, 600 * KG)),
        "outcome",
    );
}

#[test]
fn a_dispute_of_the_amount_received_is_recorded() {
    use proto::ReceiptOutcome::Disputed;
    let (mut ledger, _, trader, shipment) = shipped_world();
    let at = ledger.index;
    ledger
        .by(&trader, receipt(&shipment, Disputed, 587 * KG))
        .unwrap();
    assert_eq!(ledger.transfer_record(&shipment).receipt_at, Some(at));
}

#[test]
fn a_receipt_for_an_unknown_transfer_is_unknown() {
    use proto::ReceiptOutcome::Confirmed;
    let (mut ledger, _, trader, lot) = coffee_world();
    // A harvest is no transfer.
    assert_eq!(
        ledger.by(&trader, receipt(&lot.statement, Confirmed, 1)),
        Err(RuleError::Unknown {
            what: "transfer",
            id: lot.statement.to_string()
        })
    );
}

// ---------------------------------------------------------------------------------------------
// Transformations and product bindings.

fn output(commodity: &str, amount: u64) -> proto::LotOutput {
    proto::LotOutput {
        commodity: commodity.into(),
        quantity: Some(grams(amount)),
        lot_code: "R-118".into(),
    }
}

fn roast(lots: &[(LotId, u64)], outputs: Vec<proto::LotOutput>) -> Body {
    Body::Transformation(proto::Transformation {
        inputs: inputs(lots),
        outputs,
        process: "roasting".into(),
    })
}

/// A roaster holding 600 kg of green coffee and a retailer; all declared.
/// Returns (ledger, roaster, retailer, green lot).
fn roastery_world() -> (Ledger, SigningKey, SigningKey, LotId) {
    let (mut ledger, coop, _, lot) = coffee_world();
    let (roaster, retailer) = (signing_key(4), signing_key(5));
    ledger.declare(&roaster, &[Role::Processor]);
    ledger.declare(&retailer, &[Role::Retailer]);
    let green = ledger.ship(&coop, &[(lot, 600 * KG)], &roaster);
    (ledger, roaster, retailer, green)
}

#[test]
fn a_transformation_consumes_inputs_and_creates_outputs_held_by_the_issuer() {
    let (mut ledger, roaster, retailer, green) = roastery_world();
    let id = ledger
        .by(
            &roaster,
            roast(
                &[(green, 500 * KG)],
                vec![
                    output("roasted coffee", 420 * KG),
                    output("coffee chaff", 6 * KG),
                ],
            ),
        )
        .unwrap();
    assert_eq!(ledger.lot(&green).remaining, 100 * KG);
    let roasted = LotId {
        statement: id,
        output: 0,
    };
    let chaff = LotId {
        statement: id,
        output: 1,
    };
    for (lot, commodity, amount) in [
        (roasted, "roasted coffee", 420 * KG),
        (chaff, "coffee chaff", 6 * KG),
    ] {
        let record = ledger.lot(&lot);
        assert_eq!(
            (
                record.holder,
                record.commodity.as_str(),
                record.quantity,
                record.remaining
            ),
            (pk(&roaster), commodity, amount, amount)
        );
    }
    let beyond = LotId {
        statement: id,
        output: 2,
    };
    assert!(matches!(
        ledger.transfer(&roaster, &[(beyond, 1)], &retailer),
        Err(RuleError::Unknown { what: "lot", .. })
    ));

    // The outputs can be shipped like any lot.
    let shipped = ledger.ship(&roaster, &[(roasted, 400 * KG)], &retailer);
    assert_eq!(ledger.lot(&roasted).remaining, 20 * KG);
    assert_eq!(ledger.lot(&shipped).commodity, "roasted coffee");
    ledger.ship(&roaster, &[(chaff, 6 * KG)], &retailer);
}

#[test]
fn a_transformation_needs_outputs_and_may_not_overdraw() {
    let (mut ledger, roaster, _, green) = roastery_world();
    assert_invalid(
        ledger.by(&roaster, roast(&[(green, KG)], vec![])),
        "outputs",
    );
    assert_invalid(
        ledger.by(
            &roaster,
            roast(&[(green, KG)], vec![output("roasted coffee", 0)]),
        ),
        "outputs[0].quantity",
    );
    assert!(matches!(
        ledger.by(
            &roaster,
            roast(&[(green, 601 * KG)], vec![output("roasted coffee", KG)])
        ),
        Err(RuleError::LotOverdrawn { .. })
    ));
    assert_eq!(ledger.lot(&green).remaining, 600 * KG);
}

/// The retailer holds 400 kg of roasted coffee. Returns (ledger, retailer, roaster, lot).
fn shop_world() -> (Ledger, SigningKey, SigningKey, LotId) {
    let (mut ledger, roaster, retailer, green) = roastery_world();
    let id = ledger
        .by(
            &roaster,
            roast(
                &[(green, 500 * KG)],
                vec![output("roasted coffee", 420 * KG)],
            ),
        )
        .unwrap();
    let roasted = LotId {
        statement: id,
        output: 0,
    };
    let lot = ledger.ship(&roaster, &[(roasted, 400 * KG)], &retailer);
    (ledger, retailer, roaster, lot)
}

#[test]
fn a_retailer_binds_a_gtin_and_batch_to_the_lots_it_consumes() {
    let (mut ledger, retailer, _, lot) = shop_world();
    let at = ledger.index;
    ledger
        .by(&retailer, binding(GTIN, "L2026-11", &[(lot, 250 * KG)]))
        .unwrap();
    assert_eq!(ledger.lot(&lot).remaining, 150 * KG);
    assert_eq!(
        ledger.state.get(&product_key(GTIN, "L2026-11", "")),
        Some(&at.to_be_bytes().to_vec())
    );
}

#[test]
fn a_binding_with_a_wrong_check_digit_is_invalid() {
    let (mut ledger, retailer, _, lot) = shop_world();
    assert_invalid(
        ledger.by(&retailer, binding("09506000134353", "L1", &[(lot, KG)])),
        "gtin",
    );
}

#[test]
fn a_binding_with_a_short_gtin_is_invalid_and_tells_the_14_digit_form() {
    let (mut ledger, retailer, _, lot) = shop_world();
    assert_eq!(
        ledger.by(&retailer, binding("9506000134352", "L1", &[(lot, KG)])),
        Err(RuleError::Invalid {
            field: "gtin".into(),
            reason: format!("write it as the 14 digits {GTIN}")
        })
    );
}

#[test]
fn binding_the_same_gtin_and_batch_twice_is_conflict() {
    let (mut ledger, retailer, _, lot) = shop_world();
    let at = ledger.index;
    ledger
        .by(&retailer, binding(GTIN, "L2026-11", &[(lot, 100 * KG)]))
        .unwrap();
    assert_eq!(
        ledger.by(&retailer, binding(GTIN, "L2026-11", &[(lot, 100 * KG)])),
        Err(RuleError::Conflict(format!(
            "GTIN {GTIN} batch L2026-11 is already bound at entry {at}; use a new batch number"
        )))
    );
    // Another batch is another product.
    ledger
        .by(&retailer, binding(GTIN, "L2026-12", &[(lot, 100 * KG)]))
        .unwrap();
}

#[test]
fn a_binding_by_a_non_retailer_or_processor_is_missing_role() {
    let (mut ledger, _, _, _) = shop_world();
    // The coop holds what is left of its harvest but is no retailer.
    let coop = signing_key(1);
    let lot = ledger.harvest(&coop, "coffee", 10 * KG);
    assert_eq!(
        ledger.by(&coop, binding(GTIN, "L1", &[(lot, KG)])),
        Err(RuleError::MissingRole {
            key: pk(&coop),
            role: "retailer"
        })
    );
}

#[test]
fn a_processor_may_bind_too() {
    let (mut ledger, roaster, _, green) = roastery_world();
    ledger
        .by(&roaster, binding(GTIN, "P1", &[(green, 100 * KG)]))
        .unwrap();
    assert_eq!(ledger.lot(&green).remaining, 500 * KG);
}

// ---------------------------------------------------------------------------------------------
// Disputes.

#[test]
fn a_declared_participant_disputes_an_entry() {
    let (mut ledger, _, _, lot) = coffee_world();
    let worker = signing_key(8);
    ledger.declare(&worker, &[Role::Monitor]);
    let at = ledger.index;
    ledger.by(&worker, dispute(&lot.statement)).unwrap();
    let disputed = key(
        prefix::BY_DISPUTED,
        &[lot.statement.as_bytes(), &at.to_be_bytes()],
    );
    assert!(ledger.state.contains_key(&disputed));
}

#[test]
fn a_dispute_of_an_unknown_entry_is_unknown() {
    let (mut ledger, coop, _, _) = coffee_world();
    assert_eq!(
        ledger.by(&coop, dispute(&unknown_id())),
        Err(RuleError::Unknown {
            what: "disputed statement",
            id: unknown_id().to_string()
        })
    );
}

// ---------------------------------------------------------------------------------------------
// The header, replays, and what a refusal leaves behind.

#[test]
fn a_statement_issued_more_than_ten_minutes_ahead_is_invalid() {
    let mut ledger = Ledger::new();
    let coop = signing_key(1);
    let mut s = ledger.statement(
        &coop,
        Body::ParticipantDeclaration(declaration(&[Role::Producer])),
    );
    s.issued_at_ms = NOW + 10 * 60 * 1000 + 1;
    assert_invalid(ledger.submit(s.clone(), &[&coop]), "issued_at_ms");
    // Ten minutes exactly is tolerated; the past always is.
    s.issued_at_ms = NOW + 10 * 60 * 1000;
    ledger.submit(s, &[&coop]).unwrap();
    let mut s = ledger.statement(&coop, Body::Harvest(harvest("coffee", KG)));
    s.issued_at_ms = 0;
    ledger.submit(s, &[&coop]).unwrap();
}

#[test]
fn a_reference_to_an_unknown_statement_is_unknown() {
    let (mut ledger, coop, _, lot) = coffee_world();
    let mut s = ledger.statement(&coop, Body::Harvest(harvest("coffee", KG)));
    s.references = vec![lot.statement.as_bytes().to_vec(), unknown_id().0.to_vec()];
    assert_eq!(
        ledger.submit(s.clone(), &[&coop]),
        Err(RuleError::Unknown {
            what: "referenced statement",
            id: unknown_id().to_string()
        })
    );
    s.references = vec![vec![1, 2, 3]];
    assert_invalid(ledger.submit(s.clone(), &[&coop]), "references[0]");
    s.references = vec![lot.statement.as_bytes().to_vec()];
    ledger.submit(s, &[&coop]).unwrap();
}

#[test]
fn the_same_statement_twice_is_conflict_and_does_not_refill_its_lot() {
    let (mut ledger, coop, trader, _) = coffee_world();
    let s = ledger.statement(&coop, Body::Harvest(harvest("coffee", 100 * KG)));
    let wire = sign(encode(&s), &[&coop]);
    let id = ledger.submit_wire(wire.clone()).unwrap();
    let lot = LotId {
        statement: id,
        output: 0,
    };
    ledger.ship(&coop, &[(lot, 100 * KG)], &trader);
    assert!(matches!(
        ledger.submit_wire(wire),
        Err(RuleError::Conflict(m)) if m.contains("already in the log at entry 3")
    ));
    assert_eq!(ledger.lot(&lot).remaining, 0);
}

#[test]
fn a_refused_statement_leaves_the_state_unchanged() {
    let (mut ledger, coop, trader, lot) = coffee_world();
    let shipment = ledger.transfer(&coop, &[(lot, 600 * KG)], &trader).unwrap();
    let cocoa = ledger.harvest(&coop, "cocoa", 5 * KG);
    let before = ledger.state.clone();
    let index = ledger.index;
    let refusals = [
        // Fails on the second input, after the first was checked.
        ledger.transfer(&coop, &[(lot, 100 * KG), (lot, 400 * KG)], &trader),
        ledger.transfer(&coop, &[(lot, 100 * KG), (cocoa, KG)], &trader),
        ledger.transfer(&coop, &[(lot, 100 * KG), (cocoa, 6 * KG)], &trader),
        ledger.by(
            &coop,
            roast(
                &[(lot, 100 * KG)],
                vec![output("roasted coffee", KG), output("Bad", 1)],
            ),
        ),
        ledger.by(
            &trader,
            receipt(&shipment, proto::ReceiptOutcome::Confirmed, 1),
        ),
        ledger.by(
            &coop,
            Body::ParticipantDeclaration(declaration(&[Role::Producer])),
        ),
        ledger.rotate(&coop, &trader, false, &[&coop, &trader]),
    ];
    assert!(refusals.iter().all(Result::is_err), "{refusals:?}");
    assert_eq!(ledger.state, before);
    assert_eq!(ledger.index, index);

    // Within a batch (an overlay with pending writes, as the sequencer keeps), a refusal
    // leaves the earlier pending writes exactly as they were.
    let mut batch = Overlay::new(&ledger.state);
    let accepted = ledger.statement(
        &coop,
        Body::Transfer(transfer(&[(lot, 50 * KG)], &pk(&trader))),
    );
    let refused = ledger.statement(
        &coop,
        Body::Transfer(transfer(&[(lot, 351 * KG)], &pk(&trader))),
    );
    let position = |index| Position {
        index,
        integrated_at_ms: NOW,
    };
    for (s, at, ok) in [(accepted, index, true), (refused, index + 1, false)] {
        let envelope = Envelope::try_from(sign(encode(&s), &[&coop])).unwrap();
        let statement = Statement::decode(&envelope).unwrap();
        let pending = batch.writes().clone();
        let result = apply(&mut batch, &envelope, &statement, position(at));
        assert_eq!(result.is_ok(), ok, "{result:?}");
        if !ok {
            assert_eq!(batch.writes(), &pending);
            assert!(matches!(result, Err(RuleError::LotOverdrawn { .. })));
        }
    }
    let left: LotRecord = get_json(&batch, &key(prefix::LOT, &[&lot.bytes()]))
        .unwrap()
        .unwrap();
    assert_eq!(left.remaining, 350 * KG);
    assert!(batch.get(b"nothing").unwrap().is_none());
}

// ---------------------------------------------------------------------------------------------
// Property: lot balances against an independent model.

/// One step of a random story among three producers.
#[derive(Clone, Debug)]
enum Step {
    Harvest {
        who: usize,
        commodity: usize,
        amount: u64,
    },
    Transfer {
        who: usize,
        to: usize,
        inputs: Vec<(prop::sample::Index, u64)>,
    },
}

/// What the test believes about a lot, kept apart from the rules' own records.
struct ModelLot {
    id: LotId,
    holder: usize,
    commodity: usize,
    quantity: u64,
    consumed: u128,
}

const COMMODITIES: [&str; 2] = ["coffee", "cocoa"];

fn amount() -> impl Strategy<Value = u64> {
    prop_oneof![
        6 => 0..3_000u64,
        1 => Just(u64::MAX),
        1 => (u64::MAX - 2_000)..=u64::MAX,
        1 => any::<u64>(),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        1 => (0..3usize, 0..2usize, amount()).prop_map(|(who, commodity, amount)| Step::Harvest {
            who,
            commodity,
            amount
        }),
        3 => (
            0..3usize,
            0..3usize,
            prop::collection::vec((any::<prop::sample::Index>(), amount()), 1..4)
        )
            .prop_map(|(who, to, inputs)| Step::Transfer { who, to, inputs }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn lot_balances_follow_the_model(steps in prop::collection::vec(step(), 1..40)) {
        let mut ledger = Ledger::new();
        let keys: Vec<SigningKey> = (1..=3).map(signing_key).collect();
        for k in &keys {
            ledger.declare(k, &[Role::Producer]);
        }
        let mut lots: Vec<ModelLot> = Vec::new();
        for step in steps {
            match step {
                Step::Harvest { who, commodity, amount } => {
                    let result = ledger.by(
                        &keys[who],
                        Body::Harvest(harvest(COMMODITIES[commodity], amount)),
                    );
                    prop_assert_eq!(result.is_ok(), amount > 0, "{:?}", result);
                    if let Ok(statement) = result {
                        lots.push(ModelLot {
                            id: LotId { statement, output: 0 },
                            holder: who,
                            commodity,
                            quantity: amount,
                            consumed: 0,
                        });
                    }
                }
                Step::Transfer { who, to, inputs } => {
                    // Index `lots.len()` names a lot that does not exist.
                    let unknown = LotId { statement: unknown_id(), output: 7 };
                    let chosen: Vec<(Option<usize>, LotId, u64)> = inputs
                        .iter()
                        .map(|(i, amount)| {
                            let i = i.index(lots.len() + 1);
                            match lots.get(i) {
                                Some(l) => (Some(i), l.id, *amount),
                                None => (None, unknown, *amount),
                            }
                        })
                        .collect();
                    let mut ok = who != to;
                    let mut total: Option<u64> = Some(0);
                    let mut commodity = None;
                    let mut seen = Vec::new();
                    for (i, lot, amount) in &chosen {
                        let Some(i) = i else { ok = false; break };
                        let model = &lots[*i];
                        let left = u128::from(model.quantity) - model.consumed;
                        if seen.contains(lot)
                            || *amount == 0
                            || model.holder != who
                            || u128::from(*amount) > left
                            || commodity.is_some_and(|c| c != model.commodity)
                        {
                            ok = false;
                            break;
                        }
                        seen.push(*lot);
                        commodity = Some(model.commodity);
                        total = total.and_then(|t| t.checked_add(*amount));
                    }
                    let ok = ok && total.is_some();
                    let lots_in: Vec<(LotId, u64)> =
                        chosen.iter().map(|(_, lot, amount)| (*lot, *amount)).collect();
                    let before = ledger.state.clone();
                    let result = ledger.transfer(&keys[who], &lots_in, &keys[to]);
                    prop_assert_eq!(result.is_ok(), ok, "{:?} for {:?}", result, chosen);
                    match result {
                        Ok(statement) => {
                            for (i, _, amount) in &chosen {
                                if let Some(i) = i {
                                    lots[*i].consumed += u128::from(*amount);
                                }
                            }
                            lots.push(ModelLot {
                                id: LotId { statement, output: 0 },
                                holder: to,
                                commodity: commodity.unwrap_or(0),
                                quantity: total.unwrap_or(0),
                                consumed: 0,
                            });
                        }
                        Err(_) => prop_assert!(ledger.state == before),
                    }
                }
            }
            for model in &lots {
                let record = ledger.lot(&model.id);
                prop_assert!(record.remaining <= record.quantity);
                prop_assert_eq!(record.quantity, model.quantity);
                prop_assert!(model.consumed <= u128::from(record.quantity));
                prop_assert_eq!(
                    u128::from(record.remaining),
                    u128::from(record.quantity) - model.consumed
                );
                prop_assert_eq!(record.holder, pk(&keys[model.holder]));
                prop_assert_eq!(record.commodity.as_str(), COMMODITIES[model.commodity]);
            }
        }
    }
}
