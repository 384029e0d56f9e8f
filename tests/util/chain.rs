//! A fair-trade coffee chain written to a real node, one signed statement at a time: a
//! Honduran cooperative certified by a certification body (or by the peers of a
//! Participatory Guarantee System), an importer, a roaster who roasts, and a retailer who
//! binds GTIN 09506000134352 to the roasted coffee; and the retailer's trust policy.
//! [`Knobs`] break one thing at a time.
//!
//! The node's integration time is the wall clock, so certification dates and revocations
//! are set relative to the moment they are written, never to fixed dates.

use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use fairtrail_client::proto::{self, statement::Body, OrganisationType as Org, Role};
use fairtrail_client::statement::now_ms;
use fairtrail_client::units::parse_quantity;

use super::writer::{
    bytes, declaration, from_now, harvest, key, pk, receipt, take, transfer, wait_until_after,
    Logged, Writer, DAY,
};
use super::TestNode;

pub const GTIN: &str = "09506000134352";
pub const BATCH: &str = "R2026-118";
pub const PGS_SCHEME: &str = "Red Andina PGS";

/// The participants' keys.
pub struct Keys {
    pub certifier: SigningKey,
    pub coop: SigningKey,
    /// The PGS network, whose declaration names `peers` as members with a quorum of 2.
    pub pgs: SigningKey,
    pub peers: [SigningKey; 3],
    /// The importer names the cooperative, the roaster and the retailer as its guardians,
    /// 2 of whom may recover its identity if its key is lost.
    pub importer: SigningKey,
    pub roaster: SigningKey,
    pub retailer: SigningKey,
    pub monitor: SigningKey,
}

impl Keys {
    fn new() -> Self {
        Keys {
            certifier: key(1),
            coop: key(2),
            pgs: key(4),
            peers: [key(5), key(6), key(7)],
            importer: key(8),
            roaster: key(9),
            retailer: key(10),
            monitor: key(11),
        }
    }
}

/// Who certifies the cooperative.
#[derive(Clone, Copy, Debug)]
pub enum CertifiedBy {
    /// The certification body, for Fairtrade.
    Certifier,
    /// This many of the PGS network's members, for its own scheme.
    Peers(usize),
}

/// A certification of the cooperative (in the role of cooperative) for `commodities`, by
/// the certification body or by the PGS network's peers, valid over `[from, until)`.
pub fn certification(
    keys: &Keys,
    by: CertifiedBy,
    certificate_id: &str,
    commodities: &[&str],
    from: u64,
    until: u64,
) -> Body {
    let (scheme, kind, network) = match by {
        CertifiedBy::Certifier => ("Fairtrade", proto::CertificationKind::ThirdParty, vec![]),
        CertifiedBy::Peers(_) => {
            let kind = proto::CertificationKind::Participatory;
            (PGS_SCHEME, kind, bytes(&keys.pgs))
        }
    };
    Body::Certification(proto::Certification {
        subject: bytes(&keys.coop),
        scheme: scheme.into(),
        certificate_id: certificate_id.into(),
        commodities: commodities.iter().map(|c| (*c).to_owned()).collect(),
        roles: vec![Role::Cooperative as i32],
        valid_from_ms: from,
        valid_until_ms: until,
        kind: kind as i32,
        network,
    })
}

/// What the chain changes; `Knobs::default()` is the sound chain.
#[derive(Clone, Debug)]
pub struct Knobs {
    pub certified_by: CertifiedBy,
    /// The commodities the cooperative's certification covers.
    pub cert_commodities: &'static [&'static str],
    /// The certification's validity, in milliseconds from the moment it is written.
    pub cert_from: i64,
    pub cert_until: i64,
    /// The certifier revokes the certification effective just after the harvest was
    /// integrated: before the export, which is written once that time has passed.
    pub revoke_after_harvest: bool,
    /// What the cooperative paid its farmers.
    pub farmgate_price: &'static str,
    /// What the roaster makes of 10,000 kg of green coffee.
    pub roasted_output: &'static str,
    /// The importer confirms the cooperative's shipment.
    pub importer_receipt: bool,
    /// A monitor disputes the harvest once the product is bound.
    pub dispute_harvest: bool,
}

impl Default for Knobs {
    fn default() -> Self {
        Knobs {
            certified_by: CertifiedBy::Certifier,
            cert_commodities: &["coffee"],
            cert_from: -30 * DAY,
            cert_until: 3 * 365 * DAY,
            revoke_after_harvest: false,
            farmgate_price: "USD 1.95/lb",
            roasted_output: "8300kg",
            importer_receipt: true,
            dispute_harvest: false,
        }
    }
}

/// The chain written, with the entries tests refer to.
pub struct Chain {
    pub w: Writer,
    pub keys: Keys,
    pub cert: Logged,
    pub harvest: Logged,
    pub revocation: Option<Logged>,
    /// 12,000 kg green coffee, cooperative to importer.
    pub export: Logged,
    /// 10,000 kg of it, importer to roaster (the importer keeps 2,000 kg).
    pub to_roaster: Logged,
    pub roasting: Logged,
    /// 1,200 kg roasted coffee, roaster to retailer.
    pub to_retailer: Logged,
    pub binding: Logged,
    pub dispute: Option<Logged>,
}

impl Chain {
    /// Writes the chain to `node`, as `k` says.
    pub async fn write(node: &TestNode, k: Knobs) -> Chain {
        let mut w = Writer::new(node).await;
        let keys = Keys::new();

        // 1. Participants.
        for (key, body) in participants(&keys) {
            w.write(key, body, &[]).await;
        }

        // 2. The cooperative's certification, dated from now.
        let now = now_ms();
        let (from, until) = (from_now(now, k.cert_from), from_now(now, k.cert_until));
        let body = certification(
            &keys,
            k.certified_by,
            "FLO ID 3521",
            k.cert_commodities,
            from,
            until,
        );
        let cert = match k.certified_by {
            CertifiedBy::Certifier => w.write(&keys.certifier, body, &[]).await,
            CertifiedBy::Peers(n) => {
                let peers: Vec<&SigningKey> = keys.peers[..n].iter().collect();
                w.write(peers[0], body, &peers[1..]).await
            }
        };

        // 3. The harvest; a revocation effective right after it, if asked.
        let harvested = harvest("12000kg", k.farmgate_price, "HN-MAR-2026-07");
        let harvest = w.write(&keys.coop, harvested, &[]).await;
        let revocation = if k.revoke_after_harvest {
            let effective = harvest.at + 1;
            let revoked = Body::Revocation(proto::Revocation {
                certification: cert.id.as_bytes().to_vec(),
                kind: proto::RevocationKind::Revoked as i32,
                effective_at_ms: effective,
                reason: "internal control system audit findings".into(),
            });
            let logged = w.write(&keys.certifier, revoked, &[]).await;
            wait_until_after(effective).await;
            Some(logged)
        } else {
            None
        };

        // 4. Export, then the importer ships most of it to the roaster.
        let inputs = vec![take(harvest.lot(0), "12000kg")];
        let body = transfer(inputs, &keys.importer, "USD 2.35/lb", "BL HNPCR-2026-0418");
        let export = w.write(&keys.coop, body, &[]).await;
        if k.importer_receipt {
            w.write(&keys.importer, receipt(&export, "12000kg"), &[])
                .await;
        }
        let inputs = vec![take(export.lot(0), "10000kg")];
        let body = transfer(inputs, &keys.roaster, "USD 3.10/lb", "INV SCI-2026-1187");
        let to_roaster = w.write(&keys.importer, body, &[]).await;
        w.write(&keys.roaster, receipt(&to_roaster, "10000kg"), &[])
            .await;

        // 5. Roasting, the retailer's share, and the product.
        let roasting = Body::Transformation(proto::Transformation {
            inputs: vec![take(to_roaster.lot(0), "10000kg")],
            outputs: vec![proto::LotOutput {
                commodity: "roasted coffee".into(),
                quantity: parse_quantity(k.roasted_output).ok(),
                lot_code: "R-2026-118".into(),
            }],
            process: "roasting".into(),
        });
        let roasting = w.write(&keys.roaster, roasting, &[]).await;
        let inputs = vec![take(roasting.lot(0), "1200kg")];
        let body = transfer(inputs, &keys.retailer, "GBP 14.50/kg", "INV BCR-0931");
        let to_retailer = w.write(&keys.roaster, body, &[]).await;
        w.write(&keys.retailer, receipt(&to_retailer, "1200kg"), &[])
            .await;
        let binding = Body::ProductBinding(proto::ProductBinding {
            gtin: GTIN.into(),
            batch: BATCH.into(),
            serial: String::new(),
            inputs: vec![take(to_retailer.lot(0), "1200kg")],
            product_name: "Marcala Fairtrade Medium Roast 250 g".into(),
        });
        let binding = w.write(&keys.retailer, binding, &[]).await;

        // 6. A monitor's dispute, if asked.
        let dispute = if k.dispute_harvest {
            let body = Body::Dispute(proto::Dispute {
                entry: harvest.id.as_bytes().to_vec(),
                reason: "members report USD 1.60/lb paid at the collection centre".into(),
            });
            Some(w.write(&keys.monitor, body, &[]).await)
        } else {
            None
        };

        Chain {
            w,
            keys,
            cert,
            harvest,
            revocation,
            export,
            to_roaster,
            roasting,
            to_retailer,
            binding,
            dispute,
        }
    }

    /// The retailer's trust policy: this chain's certifier and PGS network, the Fairtrade
    /// minimum price and premium for washed Arabica, roasting yields of 78% to 88%.
    pub fn policy_toml(&self, log_key: &str) -> String {
        format!(
            r#"name = "Green Basket sourcing policy (end-to-end test)"
log_key = "{log_key}"
require_receipts = true
clock_skew_ms = 300000

[certifiers]
Fairtrade = ["{certifier}"]

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
            certifier = pk(&self.keys.certifier),
            pgs = pk(&self.keys.pgs),
        )
    }

    /// Writes the policy, changed by `edit`, to the file `name` in `dir`.
    pub fn write_policy(
        &self,
        dir: &Path,
        log_key: &str,
        name: &str,
        edit: impl FnOnce(String) -> String,
    ) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, edit(self.policy_toml(log_key))).expect("cannot write the policy");
        path
    }
}

/// Every participant's declaration, in the order they are logged. The PGS network names its
/// three members and a quorum of 2; the importer names three guardians, 2 of whom recover.
#[rustfmt::skip]
fn participants(keys: &Keys) -> [(&SigningKey, Body); 10] {
    use Org::*;
    use Role::*;
    let peers = [&keys.peers[0], &keys.peers[1], &keys.peers[2]];
    let guardians = [&keys.coop, &keys.roaster, &keys.retailer];
    [
        (&keys.certifier, declaration("FLOCERT GmbH", &[Certifier], CertificationBody, "DE", "Bonn")),
        (&keys.coop, declaration("Cooperativa Cafetalera Marcala", &[Cooperative, Producer], SmallholderAssociation, "HN", "Marcala, La Paz")),
        (peers[0], declaration("Finca Los Alisos", &[Producer], FamilyFarm, "PE", "Puno")),
        (peers[1], declaration("Finca Quillabamba", &[Producer], FamilyFarm, "PE", "Puno")),
        (peers[2], declaration("Finca Putina", &[Producer], FamilyFarm, "PE", "Puno")),
        (&keys.pgs, guarded(declaration("Red Andina de Garantía Participativa", &[Certifier], ParticipatoryGuaranteeSystem, "PE", "Puno"), &peers)),
        (&keys.importer, guarded(declaration("Solidaridad Coffee Importers", &[Trader], WorkerCooperative, "NL", "Rotterdam"), &guardians)),
        (&keys.roaster, declaration("Bristol Co-operative Roasters", &[Processor], WorkerCooperative, "GB", "Bristol")),
        (&keys.retailer, declaration("Green Basket Co-op Stores", &[Retailer], WorkerCooperative, "GB", "Manchester")),
        (&keys.monitor, declaration("Observatorio Cafetalero", &[Monitor], NonProfit, "HN", "Tegucigalpa")),
    ]
}

/// A declaration that names `guardians`, 2 of whom may act for the participant.
fn guarded(mut body: Body, guardians: &[&SigningKey]) -> Body {
    if let Body::ParticipantDeclaration(d) = &mut body {
        d.guardians = guardians.iter().map(|g| bytes(g)).collect();
        d.guardian_threshold = 2;
    }
    body
}
