//! The workloads the benchmarks submit, signed ahead of time: a 10-step fair-trade coffee
//! chain (with the declarations and certifications it stands on) and its trust policy, and
//! filler harvests by producers of their own, which grow the log without touching the chain.
//!
//! The chain's ten steps are the statements on the path from the harvest to the product:
//! harvest, export, its receipt, sale to the roaster, its receipt, roasting, packing, sale to
//! the retailer, its receipt, and the product binding. Every statement is signed here, in
//! order, so later ones can name the ids of earlier ones before anything is submitted; they
//! must be submitted in this order (the node's rules check each lot exists when it is used).

// Each benchmark crate includes this file and uses a different part of it.
#![allow(dead_code)]

use ed25519_dalek::SigningKey;
use fairtrail_client::envelope::{self, StatementId};
use fairtrail_client::proto::{self, statement::Body};
use fairtrail_client::rules::LotId;
use fairtrail_client::statement::encode;
use fairtrail_client::units::parse_price;

/// The GTIN the chain's retailer binds (a GS1 example number with a valid check digit).
pub const GTIN: &str = "09506000134352";
/// Steps on the lot path from the harvest to the product binding.
pub const CHAIN_STEPS: usize = 10;

const DAY_MS: u64 = 86_400_000;

/// A deterministic key, so runs sign the same bytes (`seed` 0 is never used).
pub fn key(seed: u64) -> SigningKey {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    bytes[31] = 0x5a;
    SigningKey::from_bytes(&bytes)
}

fn public(key: &SigningKey) -> Vec<u8> {
    key.verifying_key().to_bytes().to_vec()
}

fn kg(amount_kg: u64) -> proto::Quantity {
    proto::Quantity {
        amount: amount_kg * 1000,
        unit: proto::Unit::Gram as i32,
    }
}

/// A price such as "USD 2.10/lb" (exact, as the CLI writes it).
fn price(text: &str) -> proto::Price {
    parse_price(text).expect("a benchmark price parses")
}

fn lot(statement: StatementId, amount_kg: u64) -> proto::LotInput {
    proto::LotInput {
        lot: Some(
            LotId {
                statement,
                output: 0,
            }
            .to_proto(),
        ),
        amount: kg(amount_kg).amount,
    }
}

/// Signs statements in order, each by its issuer (plus co-signers).
struct Signer {
    now_ms: u64,
    out: Vec<Signed>,
}

/// One signed statement and what it is, for progress messages.
pub struct Signed {
    pub what: &'static str,
    pub envelope: proto::Envelope,
}

impl Signer {
    fn sign(&mut self, what: &'static str, issuer: &SigningKey, body: Body) -> StatementId {
        let statement = proto::Statement {
            issuer: public(issuer),
            issued_at_ms: self.now_ms,
            references: Vec::new(),
            remark: String::new(),
            body: Some(body),
        };
        let envelope = envelope::sign(encode(&statement), &[issuer]);
        let id = StatementId::of_payload(&envelope.payload);
        self.out.push(Signed { what, envelope });
        id
    }
}

fn declaration(name: &str, roles: &[proto::Role], org: proto::OrganisationType) -> Body {
    Body::ParticipantDeclaration(proto::ParticipantDeclaration {
        name: name.into(),
        roles: roles.iter().map(|r| *r as i32).collect(),
        organisation_type: org as i32,
        country: "HN".into(),
        location: "Marcala, La Paz".into(),
        guardians: Vec::new(),
        guardian_threshold: 0,
    })
}

fn transfer(inputs: Vec<proto::LotInput>, to: &SigningKey, price: proto::Price) -> Body {
    Body::Transfer(proto::Transfer {
        inputs,
        recipient: public(to),
        price: Some(price),
        document_reference: "INV 2026-0311".into(),
    })
}

fn receipt(transfer: StatementId, amount_kg: u64) -> Body {
    Body::Receipt(proto::Receipt {
        transfer: transfer.as_bytes().to_vec(),
        outcome: proto::ReceiptOutcome::Confirmed as i32,
        amount_received: kg(amount_kg).amount,
    })
}

/// The chain, signed: submit `statements` in order.
pub struct Chain {
    pub statements: Vec<Signed>,
    /// The batch the retailer binds, unique to this chain.
    pub batch: String,
    pub certifier: SigningKey,
}

impl Chain {
    /// Signs a chain whose keys come from `seed` (distinct seeds give unrelated chains) and
    /// whose statements claim to be issued at `now_ms`.
    pub fn sign(seed: u64, now_ms: u64) -> Chain {
        use proto::OrganisationType as Org;
        use proto::Role;
        let k = |i: u64| key(1_000_000 + seed * 16 + i);
        let (coop, certifier, importer, roaster, retailer) = (k(1), k(2), k(3), k(4), k(5));
        let batch = format!("B{seed}-{}", now_ms / 1000);
        let mut s = Signer {
            now_ms,
            out: Vec::new(),
        };

        // What the chain stands on: who is who, and who is certified.
        s.sign(
            "cooperative declares itself",
            &coop,
            declaration(
                "Cooperativa Cafetalera Montaña Verde",
                &[Role::Producer, Role::Cooperative],
                Org::SmallholderAssociation,
            ),
        );
        s.sign(
            "certifier declares itself",
            &certifier,
            declaration(
                "Certificadora Justa",
                &[Role::Certifier],
                Org::CertificationBody,
            ),
        );
        s.sign(
            "importer declares itself",
            &importer,
            declaration("Solidar Import eG", &[Role::Trader], Org::WorkerCooperative),
        );
        s.sign(
            "roaster declares itself",
            &roaster,
            declaration(
                "Tostadores Solidarios",
                &[Role::Processor],
                Org::WorkerCooperative,
            ),
        );
        s.sign(
            "retailer declares itself",
            &retailer,
            declaration(
                "La Colmena Consumer Cooperative",
                &[Role::Retailer],
                Org::WorkerCooperative,
            ),
        );
        for (subject, roles) in [
            (&coop, vec![Role::Producer, Role::Cooperative]),
            (&importer, vec![Role::Trader]),
            (&roaster, vec![Role::Processor]),
        ] {
            s.sign(
                "certifier certifies a participant",
                &certifier,
                Body::Certification(proto::Certification {
                    subject: public(subject),
                    scheme: "Fairtrade".into(),
                    certificate_id: format!("FLO-{seed}-{}", roles.len()),
                    commodities: vec!["coffee".into()],
                    roles: roles.iter().map(|r| *r as i32).collect(),
                    valid_from_ms: now_ms.saturating_sub(365 * DAY_MS),
                    valid_until_ms: now_ms + 3 * 365 * DAY_MS,
                    kind: proto::CertificationKind::ThirdParty as i32,
                    network: Vec::new(),
                }),
            );
        }

        // The ten steps.
        let harvest = s.sign(
            "1 harvest",
            &coop,
            Body::Harvest(proto::Harvest {
                commodity: "coffee".into(),
                quantity: Some(kg(18_000)),
                harvested_from_ms: now_ms.saturating_sub(120 * DAY_MS),
                harvested_until_ms: now_ms.saturating_sub(30 * DAY_MS),
                country: "HN".into(),
                region: "La Paz".into(),
                farmgate_price: Some(price("USD 2.10/lb")),
                premium: Some(price("USD 0.20/lb")),
                farmer_count: 212,
                lot_code: format!("MV-{seed}"),
            }),
        );
        let export = s.sign(
            "2 export",
            &coop,
            transfer(vec![lot(harvest, 12_000)], &importer, price("USD 2.45/lb")),
        );
        s.sign("3 export received", &importer, receipt(export, 12_000));
        let sale = s.sign(
            "4 sale to the roaster",
            &importer,
            transfer(vec![lot(export, 10_000)], &roaster, price("USD 2.80/lb")),
        );
        s.sign("5 sale received", &roaster, receipt(sale, 10_000));
        let roasted = s.sign(
            "6 roasting",
            &roaster,
            Body::Transformation(proto::Transformation {
                inputs: vec![lot(sale, 10_000)],
                outputs: vec![proto::LotOutput {
                    commodity: "roasted coffee".into(),
                    quantity: Some(kg(8_400)),
                    lot_code: format!("TS-R-{seed}"),
                }],
                process: "roasting".into(),
            }),
        );
        let packed = s.sign(
            "7 packing",
            &roaster,
            Body::Transformation(proto::Transformation {
                inputs: vec![lot(roasted, 8_400)],
                outputs: vec![proto::LotOutput {
                    commodity: "roasted coffee".into(),
                    quantity: Some(kg(8_400)),
                    lot_code: format!("TS-P-{seed}"),
                }],
                process: "packing".into(),
            }),
        );
        let to_retailer = s.sign(
            "8 sale to the retailer",
            &roaster,
            transfer(vec![lot(packed, 2_500)], &retailer, price("EUR 14.90/kg")),
        );
        s.sign(
            "9 sale to the retailer received",
            &retailer,
            receipt(to_retailer, 2_500),
        );
        s.sign(
            "10 product binding",
            &retailer,
            Body::ProductBinding(proto::ProductBinding {
                gtin: GTIN.into(),
                batch: batch.clone(),
                serial: String::new(),
                inputs: vec![lot(to_retailer, 2_500)],
                product_name: "Café Solidario, whole bean, 500 g".into(),
            }),
        );
        Chain {
            statements: s.out,
            batch,
            certifier,
        }
    }

    /// The trust policy the chain verifies under, for the log whose verifier key is
    /// `log_key` (C2SP text form).
    pub fn policy_toml(&self, log_key: &str) -> String {
        let certifier = fairtrail_client::keys::PublicKey::from(&self.certifier.verifying_key());
        format!(
            r#"name = "benchmark policy"
log_key = "{log_key}"
require_receipts = true
clock_skew_ms = 600000

[certifiers]
Fairtrade = ["{certifier}"]

[commodities.coffee]
includes = ["roasted coffee"]
minimum_price = "USD 1.80/lb"
premium = "USD 0.20/lb"
certification_required = true
schemes = ["Fairtrade"]

[yields.roasting]
min_per_mille = 780
max_per_mille = 880

[yields.packing]
min_per_mille = 990
max_per_mille = 1000
"#
        )
    }
}

/// Producers who declare themselves once and then log harvests: the filler that grows the
/// log. Harvest `i` is by producer `i % producers`, with a lot code of its own.
pub struct Filler {
    producers: Vec<SigningKey>,
    now_ms: u64,
}

impl Filler {
    /// `producers` keys derived from `seed`.
    pub fn new(seed: u64, producers: usize, now_ms: u64) -> Filler {
        Filler {
            producers: (0..producers as u64)
                .map(|i| key(2_000_000 + seed * 100_000 + i))
                .collect(),
            now_ms,
        }
    }

    /// The producers' declarations: submit these (and wait for them) before any harvest.
    pub fn declarations(&self) -> Vec<proto::Envelope> {
        self.producers
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let body = Body::ParticipantDeclaration(proto::ParticipantDeclaration {
                    name: format!("Finca {i}"),
                    roles: vec![proto::Role::Producer as i32],
                    organisation_type: proto::OrganisationType::FamilyFarm as i32,
                    country: "PE".into(),
                    location: "Sandia, Puno".into(),
                    guardians: Vec::new(),
                    guardian_threshold: 0,
                });
                self.signed(p, body)
            })
            .collect()
    }

    /// Harvest number `i` (distinct `i` give distinct statements).
    pub fn harvest(&self, i: u64) -> proto::Envelope {
        let producer = &self.producers[(i % self.producers.len() as u64) as usize];
        let body = Body::Harvest(proto::Harvest {
            commodity: "coffee".into(),
            quantity: Some(kg(69)),
            harvested_from_ms: self.now_ms.saturating_sub(120 * DAY_MS),
            harvested_until_ms: self.now_ms.saturating_sub(30 * DAY_MS),
            country: "PE".into(),
            region: "Sandia, Puno".into(),
            farmgate_price: Some(price("USD 2.05/lb")),
            premium: Some(price("USD 0.20/lb")),
            farmer_count: 1,
            lot_code: format!("H-{i:010}"),
        });
        self.signed(producer, body)
    }

    fn signed(&self, issuer: &SigningKey, body: Body) -> proto::Envelope {
        let statement = proto::Statement {
            issuer: public(issuer),
            issued_at_ms: self.now_ms,
            references: Vec::new(),
            remark: String::new(),
            body: Some(body),
        };
        envelope::sign(encode(&statement), &[issuer])
    }
}
