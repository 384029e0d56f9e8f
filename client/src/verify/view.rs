//! The chain as verified, assembled for display from what the steps found.

use std::collections::BTreeMap;

use super::chain::{inputs, place, yield_of, Traced};
use super::coverage::Certs;
use super::identity::{organisation_name, role_name};
use super::receipts::Receipts;
use super::report::{
    Assurance, CertificationView, ChainView, CoverageView, DisputeView, FarmgateView, JourneyStep,
    KeyView, LotView, ParticipantView, PriceView, ProductView, QuantityView, ReceiptView,
    StatusChangeView, StepKind,
};
use super::Ctx;
use crate::keys::PublicKey;
use crate::proto::{self, statement::Body};
use crate::rules::LotId;
use crate::units::{format_money, format_price, unit_symbol, DisplayQuantity};

/// Grams in a pound, times 100,000 (a pound is exactly 453.59237 g).
const GRAMS_PER_LB_E5: u128 = 45_359_237;

pub(crate) fn quantity_view(amount: u64, unit: i32) -> QuantityView {
    QuantityView {
        amount,
        unit: unit_symbol(unit).to_owned(),
        text: DisplayQuantity(amount, unit).to_string(),
    }
}

pub(crate) fn price_view(price: &proto::Price) -> PriceView {
    let per = price.per.unwrap_or_default();
    let per_lb = (per.unit == proto::Unit::Gram as i32 && per.amount > 0).then(|| {
        // Rounded down to the minor unit, like `format_price`.
        let minor =
            u128::from(price.minor_units) * GRAMS_PER_LB_E5 / (u128::from(per.amount) * 100_000);
        format!("{}/lb", format_money(&price.currency, minor))
    });
    let text = format_price(price);
    let stated = match &per_lb {
        Some(lb) if u128::from(per.amount) == GRAMS_PER_LB_E5 => lb.clone(),
        _ => text.clone(),
    };
    PriceView {
        currency: price.currency.clone(),
        minor_units: price.minor_units,
        per: quantity_view(per.amount, per.unit),
        text,
        stated,
        per_lb,
    }
}

pub(crate) fn build(
    ctx: &Ctx<'_>,
    traced: &Traced,
    receipts: &Receipts,
    certs: &Certs,
    farmgate: &BTreeMap<usize, FarmgateView>,
    disputes: Vec<DisputeView>,
) -> ChainView {
    let ev = ctx.ev;
    let ids = ctx.ids;
    let product = traced.binding.and_then(|pos| {
        let item = &ev.items[pos];
        let Body::ProductBinding(b) = &item.statement.body else {
            return None;
        };
        Some(ProductView {
            gtin: b.gtin.clone(),
            batch: b.batch.clone(),
            serial: (!b.serial.is_empty()).then(|| b.serial.clone()),
            name: b.product_name.clone(),
            bound_by: ids.party(&item.statement.issuer),
            entry: item.index,
            bound_at_ms: item.at,
        })
    });

    let lot_view = |lot: LotId, amount: Option<u64>| {
        let info = traced.lots.get(&lot);
        LotView {
            lot,
            commodity: info.map(|i| i.commodity.clone()),
            quantity: quantity_view(
                amount.or(info.map(|i| i.quantity)).unwrap_or(0),
                info.map_or(0, |i| i.unit),
            ),
            lot_code: info.map(|i| i.lot_code.clone()).filter(|c| !c.is_empty()),
        }
    };

    let mut journey = Vec::new();
    for &pos in &traced.steps {
        let item = &ev.items[pos];
        let s = &item.statement;
        let actor = ids.party(&s.issuer);
        let declared_place = ids
            .participant(&actor.key)
            .map(|p| place(&p.declaration.location, &p.declaration.country))
            .filter(|p| !p.is_empty());
        let (kind, outputs) = match &s.body {
            Body::Harvest(_) => (StepKind::Harvest, 1),
            Body::Transfer(_) => (StepKind::Transfer, 1),
            Body::Transformation(t) => (StepKind::Transformation, t.outputs.len()),
            Body::ProductBinding(_) => (StepKind::ProductBinding, 0),
            _ => continue,
        };
        let outputs = (0..outputs as u32)
            .map(|output| {
                lot_view(
                    LotId {
                        statement: s.id,
                        output,
                    },
                    None,
                )
            })
            .collect();
        let inputs = inputs(&s.body)
            .iter()
            .filter_map(|i| {
                let lot = i.lot.as_ref().and_then(|l| LotId::try_from(l).ok())?;
                Some(lot_view(lot, Some(i.amount)))
            })
            .collect();
        let mut step = JourneyStep {
            entry: item.index,
            statement_id: s.id,
            kind,
            actor,
            counterparty: None,
            integrated_at_ms: item.at,
            issued_at_ms: s.issued_at_ms,
            place: declared_place,
            inputs,
            outputs,
            process: None,
            yield_per_mille: None,
            price: None,
            farmgate: farmgate.get(&pos).cloned(),
            receipt: None,
            certifications: certs
                .coverage
                .get(&pos)
                .into_iter()
                .flatten()
                .map(|c| {
                    let cert = &certs.certs[c.cert];
                    CoverageView {
                        certification: cert.id,
                        scheme: cert.body.scheme.clone(),
                        certificate_id: cert.body.certificate_id.clone(),
                        covers: c.result.is_ok(),
                        reason: c.result.as_ref().err().map(|(_, why)| why.clone()),
                        assurance: cert.assurance(),
                    }
                })
                .collect(),
            assurance: Assurance::SelfDeclared,
            remark: (!s.proto.remark.is_empty()).then(|| s.proto.remark.clone()),
        };
        match &s.body {
            Body::Harvest(h) => {
                let harvest_place = place(&h.region, &h.country);
                if !harvest_place.is_empty() {
                    step.place = Some(harvest_place);
                }
            }
            Body::Transfer(t) => {
                step.counterparty = PublicKey::from_bytes(&t.recipient)
                    .ok()
                    .map(|k| ids.party(&k));
                step.price = t.price.as_ref().map(price_view);
                if let Some(r) = receipts.by_transfer.get(&pos) {
                    let receipt = &ev.items[*r];
                    if let Body::Receipt(rc) = &receipt.statement.body {
                        let unit = traced
                            .lots
                            .get(&LotId {
                                statement: s.id,
                                output: 0,
                            })
                            .map_or(0, |l| l.unit);
                        step.receipt = Some(ReceiptView {
                            entry: receipt.index,
                            integrated_at_ms: receipt.at,
                            outcome: if rc.outcome == proto::ReceiptOutcome::Confirmed as i32 {
                                "confirmed".into()
                            } else {
                                "disputed".into()
                            },
                            received: quantity_view(rc.amount_received, unit),
                        });
                    }
                }
                if receipts.confirmed(ctx, traced, pos) {
                    step.assurance = Assurance::CounterpartyConfirmed;
                }
            }
            Body::Transformation(t) => {
                step.process = Some(t.process.clone());
                step.yield_per_mille = yield_of(traced, t).map(|(_, _, y)| y);
            }
            _ => {}
        }
        journey.push(step);
    }

    let participants = ids
        .participants()
        .map(|p| {
            let d = &p.declaration;
            ParticipantView {
                identity: p.identity,
                name: d.name.clone(),
                roles: d.roles.iter().map(|r| role_name(*r).to_owned()).collect(),
                organisation: organisation_name(d.organisation_type).to_owned(),
                country: d.country.clone(),
                location: d.location.clone(),
                declared_at_entry: p.declared_at,
                keys: p
                    .keys
                    .iter()
                    .map(|k| KeyView {
                        key: k.key,
                        from_entry: k.from,
                        retired_at_entry: k.retired_at,
                    })
                    .collect(),
                assurance: Assurance::SelfDeclared,
            }
        })
        .collect();

    let certifications = certs
        .certs
        .iter()
        .map(|c| {
            let item = &ev.items[c.pos];
            CertificationView {
                statement_id: c.id,
                entry: item.index,
                logged_at_ms: item.at,
                subject: ids.party(&c.subject),
                scheme: c.body.scheme.clone(),
                certificate_id: c.body.certificate_id.clone(),
                certifier: ids.party(&c.certifier),
                assurance: c.assurance(),
                peers: c.peers.iter().map(|k| ids.party(k)).collect(),
                quorum: c.quorum,
                commodities: c.body.commodities.clone(),
                roles: c
                    .body
                    .roles
                    .iter()
                    .map(|r| role_name(*r).to_owned())
                    .collect(),
                valid_from_ms: c.body.valid_from_ms,
                valid_until_ms: c.body.valid_until_ms,
                status_changes: c
                    .changes
                    .iter()
                    .map(|ch| StatusChangeView {
                        entry: ev.items[ch.pos].index,
                        kind: match ch.kind {
                            proto::RevocationKind::Revoked => "revoked",
                            proto::RevocationKind::Suspended => "suspended",
                            _ => "reinstated",
                        }
                        .to_owned(),
                        effective_at_ms: ch.effective_at,
                        reason: ch.reason.clone(),
                    })
                    .collect(),
                trusted: c.untrusted.is_none(),
                untrusted_reason: c.untrusted.as_ref().map(|(_, why)| why.clone()),
            }
        })
        .collect();

    ChainView {
        product,
        journey,
        participants,
        certifications,
        disputes,
    }
}
