//! Step 6: each lot is used only by its holder, never beyond its quantity, and each
//! transformation's yield is within the policy's bounds for its process.

use std::collections::{BTreeMap, BTreeSet};

use super::chain::{inputs, lot_of, output_families, place, yield_in, LotInfo, Traced};
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
        if bad_steps.contains(&pos) {
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

/// Checks a transformation's sources and yields against the policy, in each policy family
/// its outputs fall in (or over everything when none does); false when it fails.
fn check_yield(
    ctx: &Ctx<'_>,
    traced: &Traced,
    item: &Item,
    t: &proto::Transformation,
    out: &mut Findings,
) -> bool {
    let families = output_families(ctx.policy, t);
    if families.is_empty() {
        return check_yield_in(ctx, traced, item, t, None, out);
    }
    let mut sound = true;
    for family in families {
        sound &= check_source(ctx, traced, item, t, family, out)
            && check_yield_in(ctx, traced, item, t, Some(family), out);
    }
    sound
}

/// Whether a transformation that makes goods of policy family `family` uses some of it.
fn check_source(
    ctx: &Ctx<'_>,
    traced: &Traced,
    item: &Item,
    t: &proto::Transformation,
    family: &str,
    out: &mut Findings,
) -> bool {
    let of_family = |commodity: &str| {
        ctx.policy
            .commodity(commodity)
            .is_some_and(|(f, _)| f == family)
    };
    let lots: Vec<&LotInfo> = t
        .inputs
        .iter()
        .filter_map(|i| lot_of(i).and_then(|l| traced.lots.get(&l)))
        .collect();
    if lots.iter().any(|info| of_family(&info.commodity)) {
        return true;
    }
    let made: Vec<&str> = t
        .outputs
        .iter()
        .filter(|o| of_family(&o.commodity))
        .map(|o| o.commodity.as_str())
        .collect();
    let from: Vec<&str> = lots.iter().map(|info| info.commodity.as_str()).collect();
    out.fail(
        Step::Quantities,
        Problem::CommodityWithoutSource,
        Some(item.index),
        format!(
            "{} {} at entry {} made {} from no {family} (its inputs: {}); what the policy counts as {family} must be made from {family}",
            possessive(&ctx.ids.name(&item.statement.issuer)),
            t.process,
            item.index,
            made.join(" and "),
            if from.is_empty() { "none known".to_owned() } else { from.join(", ") }
        ),
    );
    false
}

/// Checks a transformation's yield in `family` (see [`yield_in`]) against the policy's
/// bounds for its process. A yield that cannot be worked out is a warning, and a failure
/// when the policy bounds the process: what it bounds must be checked.
fn check_yield_in(
    ctx: &Ctx<'_>,
    traced: &Traced,
    item: &Item,
    t: &proto::Transformation,
    family: Option<&str>,
    out: &mut Findings,
) -> bool {
    let entry = Some(item.index);
    let actor = possessive(&ctx.ids.name(&item.statement.issuer));
    let bounds = ctx.policy.yields.get(&t.process);
    let of = family.map(|f| format!(" of {f}")).unwrap_or_default();
    let Some((input, output, per_mille)) = yield_in(traced, t, ctx.policy, family) else {
        let message = format!(
            "the yield{of} of {actor} {} at entry {} cannot be worked out (its inputs and outputs{of} do not share a unit)",
            t.process, item.index
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
    let unit = traced
        .lots
        .get(&LotId {
            statement: item.statement.id,
            output: 0,
        })
        .map_or(0, |l| l.unit);
    let amounts = format!(
        "{}{of} into {}{of}: a yield of {per_mille}‰",
        DisplayQuantity(input, unit),
        DisplayQuantity(output, unit)
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
    let scaled = u128::from(output) * 1000;
    let within = scaled >= u128::from(bounds.min_per_mille) * u128::from(input)
        && scaled <= u128::from(bounds.max_per_mille) * u128::from(input);
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
