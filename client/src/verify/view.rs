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
use crate::units::{
    format_money, format_price, money, price_per_lb, price_per_unit, stated_per_lb,
    unit_from_symbol, unit_symbol, Decimal, DisplayQuantity,
};

pub(crate) fn quantity_view(amount: u64, unit: i32) -> QuantityView {
    QuantityView {
        amount,
        unit: unit_symbol(unit).to_owned(),
        text: DisplayQuantity(amount, unit).to_string(),
    }
}

pub(crate) fn price_view(price: &proto::Price) -> PriceView {
    let per = price.per.unwrap_or_default();
    let per_lb =
        price_per_lb(price).map(|minor| format!("{}/lb", format_money(&price.currency, minor)));
    let text = format_price(price);
    let stated = match &per_lb {
        Some(lb) if stated_per_lb(price) => lb.clone(),
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

// The numbers behind the views' texts, for writers with other separators than the texts'
// (the consumer pages write the reader's locale). Each is computed by the same function as
// the text it stands for, so the two cannot disagree.

impl QuantityView {
    /// The number and unit that `text` shows: (12000, "kg") for "12,000 kg".
    pub fn shown(&self) -> (Decimal, &'static str) {
        DisplayQuantity(self.amount, unit_from_symbol(&self.unit)).shown()
    }
}

impl PriceView {
    fn proto(&self) -> proto::Price {
        proto::Price {
            currency: self.currency.clone(),
            minor_units: self.minor_units,
            per: Some(proto::Quantity {
                amount: self.per.amount,
                unit: unit_from_symbol(&self.per.unit),
            }),
        }
    }

    /// The money and unit that `text` shows: (3.97, "kg") for "USD 3.97/kg"; `None` when
    /// the price is per no quantity.
    pub fn shown(&self) -> Option<(Decimal, &'static str)> {
        price_per_unit(&self.proto()).map(|(minor, per)| (money(&self.currency, minor), per))
    }

    /// The money that `per_lb` shows: 1.95 for "USD 1.95/lb".
    pub fn shown_per_lb(&self) -> Option<Decimal> {
        price_per_lb(&self.proto()).map(|minor| money(&self.currency, minor))
    }

    /// The money and unit that `stated` shows.
    pub fn shown_as_stated(&self) -> Option<(Decimal, &'static str)> {
        let price = self.proto();
        match price_per_lb(&price) {
            Some(minor) if stated_per_lb(&price) => Some((money(&self.currency, minor), "lb")),
            _ => self.shown(),
        }
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
                step.yield_per_mille = yield_of(traced, t, ctx.policy).map(|y| y.per_mille);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::parse_price;

    /// Money and a unit written as the report's texts write them.
    fn text(currency: &str, (n, per): (Decimal, &str)) -> String {
        format!("{currency} {n}/{per}")
    }

    #[test]
    fn a_price_views_numbers_are_those_of_its_texts() {
        for stated in [
            "USD 1.80/lb",
            "USD 3.97/kg",
            "USD 1234.56/kg",
            "JPY 1500/kg",
            "KWD 12.345/l",
            "EUR 0.02/pcs",
            "GBP 14.50/kg",
        ] {
            let view = price_view(&parse_price(stated).unwrap());
            let shown = view.shown().unwrap();
            assert_eq!(text(&view.currency, shown), view.text, "{stated}");
            let as_stated = view.shown_as_stated().unwrap();
            assert_eq!(text(&view.currency, as_stated), view.stated, "{stated}");
            let per_lb = view
                .shown_per_lb()
                .map(|lb| text(&view.currency, (lb, "lb")));
            assert_eq!(per_lb, view.per_lb, "{stated}");
        }
        assert_eq!(
            price_view(&parse_price("USD 1.80/lb").unwrap()).stated,
            "USD 1.80/lb"
        );
        let no_quantity = price_view(&proto::Price {
            currency: "USD".into(),
            minor_units: 180,
            per: None,
        });
        assert_eq!(no_quantity.shown(), None);
        assert_eq!(no_quantity.shown_as_stated(), None);
    }

    #[test]
    fn a_quantity_views_numbers_are_those_of_its_text() {
        let view = quantity_view(1_234_500, proto::Unit::Gram as i32);
        assert_eq!(view.text, "1,234.5 kg");
        assert_eq!(
            view.shown(),
            (
                Decimal {
                    units: 12_345,
                    decimals: 1
                },
                "kg"
            )
        );
    }
}
