//! A log built in-process for the verifier's tests. [`TestLog`] signs statements with
//! deterministic keys and appends their leaves to a `MemoryTree` exactly as the node
//! encodes them, signs checkpoints, and cuts bundles with inclusion proofs. It plays a node
//! that may lie: it appends whatever it is given, so tests can plant forged, retired-key or
//! out-of-policy statements that a real node would refuse.
//!
//! [`Scenario`] writes a realistic coffee chain: two cooperatives (Honduras, certified
//! Fairtrade by a certification body; Peru, certified by a participatory guarantee system),
//! an importer, a roaster who roasts a blend, and a retailer who binds GTIN 09506000134352.
//! Its [`Knobs`] change one thing at a time, for the failure tests.

use ed25519_dalek::SigningKey;

use crate::bundle::{Bundle, BundleEntry, Subject};
use crate::checkpoint::Checkpoint;
use crate::entry::encode_leaf;
use crate::envelope::{self, StatementId};
use crate::gs1::ProductId;
use crate::keys::PublicKey;
use crate::merkle::{leaf_hash, MemoryTree};
use crate::note::{NoteSigner, NoteVerifier};
use crate::proto::{self, statement::Body};
use crate::rules::LotId;
use crate::statement::encode;
use crate::units::{parse_price, parse_quantity};

use super::Policy;

pub const ORIGIN: &str = "fairtrail.test/log";
/// 2024-02-01 00:00 UTC.
pub const T0: u64 = 1_706_745_600_000;
pub const DAY: u64 = 86_400_000;
pub const GTIN: &str = "09506000134352";
pub const BATCH: &str = "R2024-118";
pub const PGS_SCHEME: &str = "Red Andina PGS";

pub fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

pub fn pk(key: &SigningKey) -> PublicKey {
    PublicKey::from(&key.verifying_key())
}

pub fn kg(text: &str) -> proto::Quantity {
    parse_quantity(text).expect("a test quantity")
}

pub fn price(text: &str) -> proto::Price {
    parse_price(text).expect("a test price")
}

fn lot(id: StatementId, output: u32) -> Option<proto::LotRef> {
    Some(
        LotId {
            statement: id,
            output,
        }
        .to_proto(),
    )
}

pub fn take(id: StatementId, output: u32, amount: &str) -> proto::LotInput {
    proto::LotInput {
        lot: lot(id, output),
        amount: kg(amount).amount,
    }
}

/// An append-only log in memory, signing like a node.
pub struct TestLog {
    tree: MemoryTree,
    leaves: Vec<Vec<u8>>,
    ids: Vec<StatementId>,
    pub signer: NoteSigner,
    /// The integration time of the next entry; each append moves it on a minute.
    pub now: u64,
}

impl TestLog {
    pub fn new() -> Self {
        TestLog {
            tree: MemoryTree::new(),
            leaves: Vec::new(),
            ids: Vec::new(),
            signer: NoteSigner::new(ORIGIN, key(250)).expect("a valid key name"),
            now: T0,
        }
    }

    pub fn verifier(&self) -> NoteVerifier {
        self.signer.verifier()
    }

    /// Appends an envelope as it is (the log plays a node that checks nothing).
    pub fn append_envelope(&mut self, envelope: proto::Envelope) -> StatementId {
        let id = StatementId::of_payload(&envelope.payload);
        let leaf = encode_leaf(envelope, self.now).expect("a test leaf fits");
        self.tree.push_leaf_hash(leaf_hash(&leaf));
        self.leaves.push(leaf);
        self.ids.push(id);
        self.now += 60_000;
        id
    }

    /// Signs `body` as `issuer` (then `cosigners`) and appends it.
    pub fn append(
        &mut self,
        issuer: &SigningKey,
        body: Body,
        cosigners: &[&SigningKey],
    ) -> StatementId {
        let statement = proto::Statement {
            issuer: issuer.verifying_key().to_bytes().to_vec(),
            issued_at_ms: self.now,
            references: Vec::new(),
            remark: String::new(),
            body: Some(body),
        };
        let mut keys = vec![issuer];
        keys.extend_from_slice(cosigners);
        self.append_envelope(envelope::sign(encode(&statement), &keys))
    }

    /// The index of the entry holding a statement.
    pub fn index_of(&self, id: StatementId) -> u64 {
        self.ids
            .iter()
            .position(|i| *i == id)
            .expect("the statement is in the log") as u64
    }

    /// Moves the clock to `at` (never backwards).
    pub fn at(&mut self, at: u64) {
        self.now = self.now.max(at);
    }

    /// The signed checkpoint of the whole log.
    pub fn checkpoint(&self) -> String {
        Checkpoint {
            origin: ORIGIN.to_owned(),
            size: self.tree.len(),
            root: self.tree.root(),
            extensions: vec![],
        }
        .sign(&self.signer)
        .expect("a valid checkpoint")
    }

    /// A bundle of every entry, each with its proof at the full size.
    pub fn bundle(&self, subject: Subject) -> Bundle {
        let size = self.tree.len();
        let entries = self
            .leaves
            .iter()
            .enumerate()
            .map(|(i, leaf)| BundleEntry {
                index: i as u64,
                leaf: leaf.clone(),
                inclusion_proof: self.tree.prove_inclusion(i as u64, size).expect("a proof"),
            })
            .collect();
        Bundle::new(subject, self.checkpoint(), entries).expect("a well-formed bundle")
    }
}

/// What the scenario changes; `Knobs::default()` is the sound chain.
#[derive(Clone)]
pub struct Knobs {
    /// What the Honduran cooperative paid its farmers.
    pub hn_price: &'static str,
    pub hn_premium: Option<&'static str>,
    pub hn_cert_commodities: Vec<&'static str>,
    pub hn_cert_roles: Vec<proto::Role>,
    pub hn_cert_from: u64,
    pub hn_cert_until: u64,
    /// A change to the Honduran certification, logged at `.2`, effective at `.1`.
    pub hn_cert_changes: Vec<(proto::RevocationKind, u64, u64)>,
    /// Members of the PGS who sign the Peruvian certification (of 3; quorum 2).
    pub pgs_signers: usize,
    /// What the roaster takes from its 16,000 kg lot to roast.
    pub roast_input: &'static str,
    pub roasted_output: &'static str,
    /// The importer confirms the Honduran shipment.
    pub importer_receipt: bool,
    /// The importer rotates its key before shipping to the roaster, then signs the
    /// shipment with the retired key.
    pub importer_uses_retired_key: bool,
    /// A monitor disputes the Honduran harvest.
    pub dispute: bool,
    /// The Honduran harvest's signature is forged.
    pub forge_hn_harvest: bool,
}

impl Default for Knobs {
    fn default() -> Self {
        Knobs {
            hn_price: "USD 1.95/lb",
            hn_premium: Some("USD 0.20/lb"),
            hn_cert_commodities: vec!["coffee"],
            hn_cert_roles: vec![proto::Role::Cooperative],
            hn_cert_from: T0 - 30 * DAY,
            hn_cert_until: T0 + 3 * 365 * DAY,
            hn_cert_changes: Vec::new(),
            pgs_signers: 2,
            roast_input: "16000kg",
            roasted_output: "13280kg",
            importer_receipt: true,
            importer_uses_retired_key: false,
            dispute: false,
            forge_hn_harvest: false,
        }
    }
}

/// The participants' keys.
pub struct Keys {
    pub flocert: SigningKey,
    pub hn_coop: SigningKey,
    pub pe_coop: SigningKey,
    pub pgs: SigningKey,
    pub pgs_members: [SigningKey; 3],
    pub importer: SigningKey,
    pub importer_new: SigningKey,
    pub roaster: SigningKey,
    pub retailer: SigningKey,
    pub monitor: SigningKey,
}

impl Keys {
    pub fn new() -> Self {
        Keys {
            flocert: key(1),
            hn_coop: key(2),
            pe_coop: key(3),
            pgs: key(4),
            pgs_members: [key(5), key(6), key(7)],
            importer: key(8),
            importer_new: key(18),
            roaster: key(9),
            retailer: key(10),
            monitor: key(11),
        }
    }
}

/// The chain written, with the ids tests refer to.
pub struct Scenario {
    pub log: TestLog,
    pub keys: Keys,
    pub hn_cert: StatementId,
    pub hn_harvest: StatementId,
    pub pe_harvest: StatementId,
    pub hn_shipment: StatementId,
    pub roasting: StatementId,
}

fn declaration(
    name: &str,
    roles: &[proto::Role],
    org: proto::OrganisationType,
    country: &str,
    location: &str,
) -> Body {
    Body::ParticipantDeclaration(proto::ParticipantDeclaration {
        name: name.into(),
        roles: roles.iter().map(|r| *r as i32).collect(),
        organisation_type: org as i32,
        country: country.into(),
        location: location.into(),
        guardians: Vec::new(),
        guardian_threshold: 0,
    })
}

pub fn transfer(
    inputs: Vec<proto::LotInput>,
    to: &SigningKey,
    price_text: &str,
    doc: &str,
) -> Body {
    Body::Transfer(proto::Transfer {
        inputs,
        recipient: to.verifying_key().to_bytes().to_vec(),
        price: Some(price(price_text)),
        document_reference: doc.into(),
    })
}

pub fn receipt(transfer: StatementId, amount: &str) -> Body {
    Body::Receipt(proto::Receipt {
        transfer: transfer.as_bytes().to_vec(),
        outcome: proto::ReceiptOutcome::Confirmed as i32,
        amount_received: kg(amount).amount,
    })
}

impl Scenario {
    pub fn build(k: Knobs) -> Scenario {
        use proto::OrganisationType as O;
        use proto::Role as R;
        let keys = Keys::new();
        let mut log = TestLog::new();

        // Participants.
        log.append(
            &keys.flocert,
            declaration(
                "FLOCERT GmbH",
                &[R::Certifier],
                O::CertificationBody,
                "DE",
                "Bonn",
            ),
            &[],
        );
        log.append(
            &keys.hn_coop,
            declaration(
                "Cooperativa Cafetalera Marcala",
                &[R::Cooperative, R::Producer],
                O::SmallholderAssociation,
                "HN",
                "Marcala, La Paz",
            ),
            &[],
        );
        log.append(
            &keys.pe_coop,
            declaration(
                "Cooperativa Agraria Valle del Inambari",
                &[R::Cooperative, R::Producer],
                O::SmallholderAssociation,
                "PE",
                "San Juan del Oro, Puno",
            ),
            &[],
        );
        for (i, m) in keys.pgs_members.iter().enumerate() {
            let name = ["Finca Los Alisos", "Finca Quillabamba", "Finca Putina"][i];
            log.append(
                m,
                declaration(name, &[R::Producer], O::FamilyFarm, "PE", "Puno"),
                &[],
            );
        }
        let mut pgs = declaration(
            "Red Andina de Garantía Participativa",
            &[R::Certifier],
            O::ParticipatoryGuaranteeSystem,
            "PE",
            "Puno",
        );
        if let Body::ParticipantDeclaration(d) = &mut pgs {
            d.guardians = keys
                .pgs_members
                .iter()
                .map(|m| m.verifying_key().to_bytes().to_vec())
                .collect();
            d.guardian_threshold = 2;
        }
        log.append(&keys.pgs, pgs, &[]);
        log.append(
            &keys.importer,
            declaration(
                "Solidaridad Coffee Importers",
                &[R::Trader],
                O::WorkerCooperative,
                "NL",
                "Rotterdam",
            ),
            &[],
        );
        log.append(
            &keys.roaster,
            declaration(
                "Bristol Co-operative Roasters",
                &[R::Processor],
                O::WorkerCooperative,
                "GB",
                "Bristol",
            ),
            &[],
        );
        log.append(
            &keys.retailer,
            declaration(
                "Green Basket Co-op Stores",
                &[R::Retailer],
                O::WorkerCooperative,
                "GB",
                "Manchester",
            ),
            &[],
        );
        log.append(
            &keys.monitor,
            declaration(
                "Observatorio Cafetalero",
                &[R::Monitor],
                O::NonProfit,
                "HN",
                "Tegucigalpa",
            ),
            &[],
        );

        // Certifications.
        log.at(T0 + DAY);
        let hn_cert = log.append(
            &keys.flocert,
            Body::Certification(proto::Certification {
                subject: keys.hn_coop.verifying_key().to_bytes().to_vec(),
                scheme: "Fairtrade".into(),
                certificate_id: "FLO ID 3521".into(),
                commodities: k
                    .hn_cert_commodities
                    .iter()
                    .map(|c| (*c).to_owned())
                    .collect(),
                roles: k.hn_cert_roles.iter().map(|r| *r as i32).collect(),
                valid_from_ms: k.hn_cert_from,
                valid_until_ms: k.hn_cert_until,
                kind: proto::CertificationKind::ThirdParty as i32,
                network: Vec::new(),
            }),
            &[],
        );
        let peers: Vec<&SigningKey> = keys.pgs_members.iter().take(k.pgs_signers).collect();
        let (first, rest) = peers.split_first().expect("at least one PGS member signs");
        log.append(
            first,
            Body::Certification(proto::Certification {
                subject: keys.pe_coop.verifying_key().to_bytes().to_vec(),
                scheme: PGS_SCHEME.into(),
                certificate_id: "RAGP-PE-0147".into(),
                commodities: vec!["coffee".into()],
                roles: Vec::new(),
                valid_from_ms: T0,
                valid_until_ms: T0 + 2 * 365 * DAY,
                kind: proto::CertificationKind::Participatory as i32,
                network: keys.pgs.verifying_key().to_bytes().to_vec(),
            }),
            rest,
        );

        // Harvests.
        log.at(T0 + 10 * DAY);
        let harvest = |commodity: &str,
                       q: &str,
                       paid: &str,
                       premium: Option<&str>,
                       country: &str,
                       region: &str,
                       farmers: u32,
                       code: &str| {
            Body::Harvest(proto::Harvest {
                commodity: commodity.into(),
                quantity: Some(kg(q)),
                harvested_from_ms: T0 - 120 * DAY,
                harvested_until_ms: T0 - 30 * DAY,
                country: country.into(),
                region: region.into(),
                farmgate_price: Some(price(paid)),
                premium: premium.map(price),
                farmer_count: farmers,
                lot_code: code.into(),
            })
        };
        let hn_body = harvest(
            "green coffee",
            "12000kg",
            k.hn_price,
            k.hn_premium,
            "HN",
            "Marcala, La Paz",
            214,
            "HN-MAR-2024-07",
        );
        let hn_harvest = if k.forge_hn_harvest {
            let statement = proto::Statement {
                issuer: keys.hn_coop.verifying_key().to_bytes().to_vec(),
                issued_at_ms: log.now,
                body: Some(hn_body),
                ..Default::default()
            };
            let mut wire = envelope::sign(encode(&statement), &[&keys.hn_coop]);
            wire.signatures[0].sig[10] ^= 0x40;
            log.append_envelope(wire)
        } else {
            log.append(&keys.hn_coop, hn_body, &[])
        };
        let pe_harvest = log.append(
            &keys.pe_coop,
            harvest(
                "green coffee",
                "8000kg",
                "USD 2.10/lb",
                Some("USD 0.20/lb"),
                "PE",
                "San Juan del Oro, Puno",
                96,
                "PE-SJO-2024-03",
            ),
            &[],
        );
        let export = T0 + 40 * DAY;
        let change =
            |log: &mut TestLog, (kind, effective, logged): &(proto::RevocationKind, u64, u64)| {
                log.at(*logged);
                log.append(
                    &keys.flocert,
                    Body::Revocation(proto::Revocation {
                        certification: hn_cert.as_bytes().to_vec(),
                        kind: *kind as i32,
                        effective_at_ms: *effective,
                        reason: "internal control system audit findings".into(),
                    }),
                    &[],
                );
            };
        for c in k.hn_cert_changes.iter().filter(|c| c.2 < export) {
            change(&mut log, c);
        }

        // Export to the importer.
        log.at(export);
        let hn_shipment = log.append(
            &keys.hn_coop,
            transfer(
                vec![take(hn_harvest, 0, "12000kg")],
                &keys.importer,
                "USD 2.35/lb",
                "BL HNPCR-2024-0418",
            ),
            &[],
        );
        let pe_shipment = log.append(
            &keys.pe_coop,
            transfer(
                vec![take(pe_harvest, 0, "8000kg")],
                &keys.importer,
                "USD 2.50/lb",
                "BL PECLL-2024-0522",
            ),
            &[],
        );
        log.at(T0 + 70 * DAY);
        if k.importer_receipt {
            log.append(&keys.importer, receipt(hn_shipment, "12000kg"), &[]);
        }
        log.append(&keys.importer, receipt(pe_shipment, "8000kg"), &[]);

        // The importer ships a blend's worth to the roaster.
        log.at(T0 + 75 * DAY);
        if k.importer_uses_retired_key {
            log.append(
                &keys.importer,
                Body::KeyRotation(proto::KeyRotation {
                    new_key: keys.importer_new.verifying_key().to_bytes().to_vec(),
                    recovery: false,
                }),
                &[&keys.importer_new],
            );
        }
        let to_roaster = log.append(
            &keys.importer,
            transfer(
                vec![
                    take(hn_shipment, 0, "10000kg"),
                    take(pe_shipment, 0, "6000kg"),
                ],
                &keys.roaster,
                "USD 3.10/lb",
                "INV SCI-2024-1187",
            ),
            &[],
        );
        log.append(&keys.roaster, receipt(to_roaster, "16000kg"), &[]);

        // Roasting, then the retailer's share and its product.
        log.at(T0 + 80 * DAY);
        let roasting = log.append(
            &keys.roaster,
            Body::Transformation(proto::Transformation {
                inputs: vec![proto::LotInput {
                    lot: lot(to_roaster, 0),
                    amount: kg(k.roast_input).amount,
                }],
                outputs: vec![proto::LotOutput {
                    commodity: "roasted coffee".into(),
                    quantity: Some(kg(k.roasted_output)),
                    lot_code: "R-2024-118".into(),
                }],
                process: "roasting".into(),
            }),
            &[],
        );
        log.at(T0 + 82 * DAY);
        let to_retailer = log.append(
            &keys.roaster,
            transfer(
                vec![take(roasting, 0, "1200kg")],
                &keys.retailer,
                "GBP 14.50/kg",
                "INV BCR-0931",
            ),
            &[],
        );
        log.append(&keys.retailer, receipt(to_retailer, "1200kg"), &[]);
        log.at(T0 + 85 * DAY);
        log.append(
            &keys.retailer,
            Body::ProductBinding(proto::ProductBinding {
                gtin: GTIN.into(),
                batch: BATCH.into(),
                serial: String::new(),
                inputs: vec![take(to_retailer, 0, "1200kg")],
                product_name: "Andes & Marcala Fairtrade Medium Roast 250 g".into(),
            }),
            &[],
        );

        // Changes logged after the export (a retroactive revocation).
        for c in k.hn_cert_changes.iter().filter(|c| c.2 >= export) {
            change(&mut log, c);
        }

        if k.dispute {
            log.at(T0 + 90 * DAY);
            log.append(
                &keys.monitor,
                Body::Dispute(proto::Dispute {
                    entry: hn_harvest.as_bytes().to_vec(),
                    reason: "members report USD 1.60/lb paid at the Marcala collection centre, not USD 1.95".into(),
                }),
                &[],
            );
        }

        Scenario {
            log,
            keys,
            hn_cert,
            hn_harvest,
            pe_harvest,
            hn_shipment,
            roasting,
        }
    }

    /// The product's bundle: every entry of the log, as the node would send it.
    pub fn bundle(&self) -> Bundle {
        self.log.bundle(Subject::Product(
            ProductId::new(GTIN, BATCH, None).expect("a valid GTIN"),
        ))
    }

    /// The test policy's TOML: the real Fairtrade coffee figures, these keys.
    pub fn policy_toml(&self) -> String {
        format!(
            r#"
name = "Green Basket sourcing policy (test)"
log_key = "{log_key}"
require_receipts = true
clock_skew_ms = 300000

[certifiers]
Fairtrade = ["{flocert}"]

[pgs."{PGS_SCHEME}"]
network = "{pgs}"
quorum = 2

[commodities.coffee]
includes = ["green coffee", "roasted coffee"]
minimum_price = "USD 1.80/lb"
premium = "USD 0.20/lb"
certification_required = true
schemes = ["Fairtrade", "{PGS_SCHEME}"]

[yields.roasting]
min_per_mille = 780
max_per_mille = 880
"#,
            log_key = self.log.verifier().to_text(),
            flocert = pk(&self.keys.flocert),
            pgs = pk(&self.keys.pgs),
        )
    }

    pub fn policy(&self) -> Policy {
        Policy::from_toml(&self.policy_toml()).expect("the test policy is valid")
    }
}
