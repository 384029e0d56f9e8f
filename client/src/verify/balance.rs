//! Step 6: each lot is used only by its holder, never beyond its quantity, and each
//! transformation's yield is within the policy's bounds for its process.

use std::collections::{BTreeMap, BTreeSet};

use super::chain::{inputs, lot_of, named, place, yield_of, Traced};
use super::evidence::Item;
use super::identity::possessive;
use super::report::Assurance;
use super::{Ctx, Findings, Problem, Step};
use crate::keys::PublicKey;
use crate::proto::{self, statement::Body};
use crate::rules::LotId;
use crate::units::DisplayQuantity;

/// Runs step 6.
pub(crate) fn check(ctx: &Ctx<'_>, traced: &Traced, out: &mut Findings) {
    let ev = ctx.ev;
    let ids = ctx.ids;
    let mut used: BTreeMap<LotId, u64> = BTreeMap::new();
    let mut overdrawn: BTreeSet<LotId> = BTreeSet::new();
    let mut bad_steps: BTreeSet<usize> = BTreeSet::new();
    // Every statement in the bundle that uses a chain lot counts against it, on the chain
    // or not: a lot is never used beyond its quantity.
    for (pos, item) in ev.items.iter().enumerate() {
        let consumer = ids.identity_of(&item.statement.issuer);
        for input in inputs(&item.statement.body) {
            let Some((lot, info)) = lot_of(input).and_then(|l| traced.lots.get_key_value(&l))
            else {
                continue;
            };
            let entry = Some(item.index);
            let creator = &ev.items[info.creator];
            if creator.index >= item.index {
                bad_steps.insert(pos);
                out.fail(
                    Step::Quantities,
                    Problem::LotUsedBeforeCreated,
                    entry,
                    format!(
                        "{} uses lot {lot}, which {} makes later",
                        item.describe(),
                        creator.describe()
                    ),
                );
            }
            if info.holder != consumer {
                bad_steps.insert(pos);
                out.fail(
                    Step::Quantities,
                    Problem::NotHolder,
                    entry,
                    format!(
                        "{} by {} uses lot {lot}, which {} holds; only a lot's holder may use it",
                        item.describe(),
                        ids.name(&consumer),
                        ids.name(&info.holder)
                    ),
                );
            }
            if input.amount == 0 {
                bad_steps.insert(pos);
                out.fail(
                    Step::Quantities,
                    Problem::InvalidStatement,
                    entry,
                    format!("{} takes nothing from lot {lot}", item.describe()),
                );
            }
            let total = used.entry(*lot).or_default();
            *total = total.saturating_add(input.amount);
            if *total > info.quantity && overdrawn.insert(*lot) {
                bad_steps.insert(pos);
                out.fail(
                    Step::Quantities,
                    Problem::LotOverdrawn,
                    entry,
                    format!(
                        "lot {lot} ({} made by {}) is used for {} in all, more than it holds; {} takes {}",
                        info.describe(info.quantity),
                        creator.describe(),
                        DisplayQuantity(*total, info.unit),
                        item.describe(),
                        DisplayQuantity(input.amount, info.unit)
                    ),
                );
            }
        }
    }

    for &pos in &traced.steps {
        let item = &ev.items[pos];
        let entry = Some(item.index);
        let actor = ids.name(&item.statement.issuer);
        let made = |output: u32| {
            traced.lots.get(&LotId {
                statement: item.statement.id,
                output,
            })
        };
        if let Body::Transformation(t) = &item.statement.body {
            if !check_yield(ctx, traced, item, t, out) {
                bad_steps.insert(pos);
            }
        }
        // A step that uses nothing failed in step 5; it holds no lots to speak of.
        if bad_steps.contains(&pos)
            || inputs(&item.statement.body).is_empty()
                && !matches!(item.statement.body, Body::Harvest(_))
        {
            continue;
        }
        let message = match &item.statement.body {
            Body::Harvest(h) => made(0).map(|lot| {
                format!(
                    "{actor} harvested {} in {} (entry {})",
                    lot.describe(lot.quantity),
                    place(&h.region, &h.country),
                    item.index
                )
            }),
            Body::Transfer(t) => made(0).map(|lot| {
                let to = PublicKey::from_bytes(&t.recipient)
                    .map(|k| ids.name(&k))
                    .unwrap_or_default();
                format!(
                    "{actor} shipped {} to {to} from lots it held (entry {})",
                    lot.describe(lot.quantity),
                    item.index
                )
            }),
            Body::Transformation(t) => Some(format!(
                "{actor} made {} by {} from lots it held (entry {})",
                (0..t.outputs.len() as u32)
                    .filter_map(|o| made(o).map(|l| l.describe(l.quantity)))
                    .collect::<Vec<_>>()
                    .join(" and "),
                t.process,
                item.index
            )),
            Body::ProductBinding(b) => Some(format!(
                "{actor} bound GTIN {} batch {} (\"{}\") to lots it held (entry {})",
                b.gtin, b.batch, b.product_name, item.index
            )),
            _ => None,
        };
        if let Some(message) = message {
            out.pass(
                Step::Quantities,
                Some(Assurance::SelfDeclared),
                entry,
                message,
            );
        }
    }
}

/// Checks a transformation's source and yield against the policy; false when it fails, or
/// when an input is missing, unknown or empty (findings of steps 5 and 6 already).
fn check_yield(
    ctx: &Ctx<'_>,
    traced: &Traced,
    item: &Item,
    t: &proto::Transformation,
    out: &mut Findings,
) -> bool {
    let entry = Some(item.index);
    let actor = possessive(&ctx.ids.name(&item.statement.issuer));
    let mut used = Vec::with_capacity(t.inputs.len());
    for input in &t.inputs {
        match lot_of(input).and_then(|l| traced.lots.get(&l)) {
            Some(info) if input.amount > 0 => used.push(info.commodity.as_str()),
            _ => return false,
        }
    }
    if used.is_empty() {
        return false;
    }
    let mut made: Vec<&str> = t
        .outputs
        .iter()
        .map(|o| o.commodity.as_str())
        .filter(|c| named(ctx.policy, c))
        .collect();
    made.dedup();
    if !made.is_empty() && !used.iter().any(|c| named(ctx.policy, c)) {
        used.sort_unstable();
        used.dedup();
        out.fail(
            Step::Quantities,
            Problem::CommodityWithoutSource,
            entry,
            format!(
                "{actor} {} at entry {} made {} from {}, nothing the policy names; what it sets prices and certifications for must be made from goods it names",
                t.process,
                item.index,
                made.join(" and "),
                used.join(", ")
            ),
        );
        return false;
    }
    let bounds = ctx.policy.yields.get(&t.process);
    let Some(y) = yield_of(traced, t, ctx.policy) else {
        let message = format!(
            "the yield of {actor} {} at entry {} cannot be worked out (its inputs and outputs{} do not share a unit)",
            t.process,
            item.index,
            if made.is_empty() { "" } else { " that the policy names" }
        );
        if let Some(bounds) = bounds {
            out.fail(
                Step::Quantities,
                Problem::YieldNotComputable,
                entry,
                format!(
                    "{message}, and the policy bounds \"{}\" to {}–{}‰",
                    t.process, bounds.min_per_mille, bounds.max_per_mille
                ),
            );
            return false;
        }
        out.warn(
            Step::Quantities,
            Problem::YieldNotComputable,
            entry,
            message,
        );
        return true;
    };
    let amounts = format!(
        "{} into {}: a yield of {}‰{}",
        DisplayQuantity(y.input, y.unit),
        DisplayQuantity(y.output, y.unit),
        y.per_mille,
        if y.partial {
            " (counting only the goods the policy names)"
        } else {
            ""
        }
    );
    let Some(bounds) = bounds else {
        out.warn(
            Step::Quantities,
            Problem::NoYieldBound,
            entry,
            format!(
                "{actor} {} at entry {} turned {amounts}; the policy sets no yield bounds for \"{}\", so it is not checked",
                t.process, item.index, t.process
            ),
        )
        .assurance = Some(Assurance::SelfDeclared);
        return true;
    };
    // Exact: output/input within [min, max]/1000, by cross multiplication.
    let scaled = u128::from(y.output) * 1000;
    let within = scaled >= u128::from(bounds.min_per_mille) * u128::from(y.input)
        && scaled <= u128::from(bounds.max_per_mille) * u128::from(y.input);
    if within {
        out.pass(
            Step::Quantities,
            Some(Assurance::SelfDeclared),
            entry,
            format!(
                "{actor} {} at entry {} turned {amounts}, within the policy's {}–{}‰",
                t.process, item.index, bounds.min_per_mille, bounds.max_per_mille
            ),
        );
        true
    } else {
        out.fail(
            Step::Quantities,
            Problem::YieldOutOfBounds,
            entry,
            format!(
                "{actor} {} at entry {} turned {amounts}, outside the policy's {}–{}‰",
                t.process, item.index, bounds.min_per_mille, bounds.max_per_mille
            ),
        );
        false
    }
}
