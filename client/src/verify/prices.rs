//! Step 9: what farmers were paid, against the policy's minimum price and premium for the
//! commodity.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use super::chain::Traced;
use super::identity::possessive;
use super::report::{Assurance, FarmgateView};
use super::view::price_view;
use super::{Ctx, Findings, Problem, Step};
use crate::proto::{self, statement::Body};
use crate::units::{compare_prices, format_money, price_total};

/// "USD 1.95/lb" for goods in grams, else "USD 4.30/kg".
fn show(price: &proto::Price) -> String {
    let view = price_view(price);
    view.per_lb.unwrap_or(view.text)
}

/// Runs step 9: returns what each harvest on the chain paid, against the policy.
pub(crate) fn check(
    ctx: &Ctx<'_>,
    traced: &Traced,
    out: &mut Findings,
) -> BTreeMap<usize, FarmgateView> {
    let mut views = BTreeMap::new();
    for &pos in &traced.steps {
        let item = &ctx.ev.items[pos];
        let Body::Harvest(h) = &item.statement.body else {
            continue;
        };
        let entry = Some(item.index);
        let producer = ctx.ids.name(&item.statement.issuer);
        let quantity = h.quantity.map_or(0, |q| q.amount);
        let total = |p: &Option<proto::Price>| p.as_ref().and_then(|p| price_total(p, quantity));
        let text = |p: &Option<proto::Price>, minor: Option<u128>| {
            p.as_ref()
                .zip(minor)
                .map(|(p, m)| format_money(&p.currency, m))
        };
        let (total_paid_minor, premium_total_minor) = (total(&h.farmgate_price), total(&h.premium));
        let mut view = FarmgateView {
            paid: h.farmgate_price.as_ref().map(price_view),
            minimum: None,
            meets_minimum: None,
            premium: h.premium.as_ref().map(price_view),
            premium_minimum: None,
            meets_premium: None,
            total_paid: text(&h.farmgate_price, total_paid_minor),
            premium_total: text(&h.premium, premium_total_minor),
            total_paid_minor,
            premium_total_minor,
            farmer_count: h.farmer_count,
            harvested_from_ms: h.harvested_from_ms,
            harvested_until_ms: h.harvested_until_ms,
        };
        let Some((family, policy)) = ctx.policy.commodity(&h.commodity) else {
            out.warn(
                Step::Prices,
                Problem::NoPolicyForCommodity,
                entry,
                format!(
                    "the policy sets nothing for {}, so what {producer} paid at entry {} is not checked",
                    h.commodity, item.index
                ),
            )
            .assurance = Some(Assurance::SelfDeclared);
            views.insert(pos, view);
            continue;
        };
        let what = format!(
            "{} {} harvest (entry {})",
            possessive(&producer),
            h.commodity,
            item.index
        );

        let mut checked = false;
        if let Some(minimum) = &policy.minimum_price {
            checked = true;
            view.minimum = Some(price_view(minimum));
            view.meets_minimum = compare(
                out,
                &what,
                "price paid to farmers",
                h.farmgate_price.as_ref(),
                minimum,
                (Problem::InvalidStatement, Problem::PriceBelowMinimum),
                entry,
            );
        }
        if let Some(premium) = &policy.premium {
            checked = true;
            view.premium_minimum = Some(price_view(premium));
            view.meets_premium = compare(
                out,
                &what,
                "premium",
                h.premium.as_ref(),
                premium,
                (Problem::PremiumMissing, Problem::PremiumBelowMinimum),
                entry,
            );
        }
        if !checked {
            if let Some(paid) = &h.farmgate_price {
                out.pass(
                    Step::Prices,
                    Some(Assurance::SelfDeclared),
                    entry,
                    format!(
                        "{what} paid farmers {} (the policy sets no minimum for {family})",
                        show(paid)
                    ),
                );
            }
        }
        views.insert(pos, view);
    }
    views
}

/// Compares a price paid with the policy's least; records the finding and returns whether
/// it is met (`None` when it cannot be told).
fn compare(
    out: &mut Findings,
    what: &str,
    name: &str,
    paid: Option<&proto::Price>,
    least: &proto::Price,
    (missing, below): (Problem, Problem),
    entry: Option<u64>,
) -> Option<bool> {
    let Some(paid) = paid else {
        out.fail(
            Step::Prices,
            missing,
            entry,
            format!(
                "{what} states no {name}; the policy requires at least {}",
                show(least)
            ),
        );
        return None;
    };
    match compare_prices(paid, least) {
        None => {
            out.fail(
                Step::Prices,
                Problem::PriceNotComparable,
                entry,
                format!(
                    "{what}: the {name} {} cannot be compared with the policy's {} (another currency or unit)",
                    show(paid),
                    show(least)
                ),
            );
            None
        }
        Some(Ordering::Less) => {
            out.fail(
                Step::Prices,
                below,
                entry,
                format!(
                    "{what}: the {name}, {}, is below the policy's minimum of {}",
                    show(paid),
                    show(least)
                ),
            )
            .assurance = Some(Assurance::SelfDeclared);
            Some(false)
        }
        Some(_) => {
            out.pass(
                Step::Prices,
                Some(Assurance::SelfDeclared),
                entry,
                format!(
                    "{what}: the {name}, {}, is at or above the policy's minimum of {}",
                    show(paid),
                    show(least)
                ),
            );
            Some(true)
        }
    }
}
