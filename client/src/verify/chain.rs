//! Step 5: tracing the subject back to every harvest, and working out the lots on the way
//! (what each statement made, in what quantity, held by whom).

use std::collections::{BTreeMap, BTreeSet};

use super::evidence::Item;
use super::{Ctx, Findings, Policy, Problem, Step};
use crate::bundle::Subject;
use crate::keys::PublicKey;
use crate::proto::{self, statement::Body};
use crate::rules::LotId;
use crate::units::{unit_symbol, DisplayQuantity};

/// A lot made by a traced statement.
pub(crate) struct LotInfo {
    /// Position (in the evidence) of the statement that made it.
    pub creator: usize,
    pub commodity: String,
    pub quantity: u64,
    pub unit: i32,
    /// The identity that holds it.
    pub holder: PublicKey,
    pub lot_code: String,
}

impl LotInfo {
    /// "12,000 kg green coffee".
    pub fn describe(&self, amount: u64) -> String {
        format!("{} {}", DisplayQuantity(amount, self.unit), self.commodity)
    }
}

/// The chain behind the subject.
#[derive(Default)]
pub(crate) struct Traced {
    /// Position of the product binding, for a product.
    pub binding: Option<usize>,
    /// Positions of every statement on the chain (harvests, transfers, transformations and
    /// the binding), which is log order.
    pub steps: BTreeSet<usize>,
    /// Every lot the chain's statements made.
    pub lots: BTreeMap<LotId, LotInfo>,
    /// Identities that harvested on the chain: the producers.
    pub producers: BTreeSet<PublicKey>,
}

/// The lots a statement consumes.
pub(crate) fn inputs(body: &Body) -> &[proto::LotInput] {
    match body {
        Body::Transfer(t) => &t.inputs,
        Body::Transformation(t) => &t.inputs,
        Body::ProductBinding(b) => &b.inputs,
        _ => &[],
    }
}

pub(crate) fn lot_of(input: &proto::LotInput) -> Option<LotId> {
    input.lot.as_ref().and_then(|l| LotId::try_from(l).ok())
}

/// Runs step 5 and works out the lots of the chain.
pub(crate) fn trace(ctx: &Ctx<'_>, subject: &Subject, out: &mut Findings) -> Traced {
    let ev = ctx.ev;
    let mut traced = Traced::default();
    let mut stack: Vec<LotId> = Vec::new();
    match subject {
        Subject::Product(p) => {
            let matches = |b: &proto::ProductBinding, exact: bool| {
                b.gtin == p.gtin
                    && b.batch == p.batch
                    && if exact {
                        p.serial.as_deref().unwrap_or("") == b.serial
                    } else {
                        b.serial.is_empty()
                    }
            };
            // A serial belongs to its batch: without a binding of the serial itself, the
            // batch's binding covers it.
            let found: Vec<usize> = [true, false]
                .iter()
                .map(|exact| {
                    ev.items
                        .iter()
                        .enumerate()
                        .filter(|(_, i)| {
                            matches!(&i.statement.body, Body::ProductBinding(b) if matches(b, *exact))
                        })
                        .map(|(pos, _)| pos)
                        .collect::<Vec<_>>()
                })
                .find(|v| !v.is_empty())
                .unwrap_or_default();
            let Some(&binding) = found.first() else {
                out.fail(
                    Step::Trace,
                    Problem::NoBinding,
                    None,
                    format!("the bundle holds no product binding for {subject}, so the product cannot be traced"),
                );
                return traced;
            };
            if let Some(&other) = found.get(1) {
                out.fail(
                    Step::Trace,
                    Problem::BindingConflict,
                    Some(ev.items[other].index),
                    format!(
                        "{subject} is bound twice, at entries {} and {}; a product is bound once",
                        ev.items[binding].index, ev.items[other].index
                    ),
                );
            }
            traced.binding = Some(binding);
            traced.steps.insert(binding);
            stack.extend(input_lots(&ev.items[binding], out));
        }
        Subject::Lot(lot) => stack.push(*lot),
        Subject::Participant(_) => {
            out.pass(
                Step::Trace,
                None,
                None,
                "this bundle is about a participant: there is no chain of lots to trace",
            );
            return traced;
        }
    }

    let mut visited = BTreeSet::new();
    while let Some(lot) = stack.pop() {
        if !visited.insert(lot) {
            continue;
        }
        let Some(pos) = ev.position(&lot.statement) else {
            out.fail(
                Step::Trace,
                Problem::UntracedLot,
                None,
                format!("cannot trace lot {lot}: the statement that made it is not in the bundle"),
            );
            continue;
        };
        let item = &ev.items[pos];
        let makes_it = match &item.statement.body {
            Body::Harvest(_) | Body::Transfer(_) => lot.output == 0,
            Body::Transformation(t) => (lot.output as usize) < t.outputs.len(),
            _ => false,
        };
        if !makes_it {
            out.fail(
                Step::Trace,
                Problem::NotALot,
                Some(item.index),
                format!(
                    "cannot trace lot {lot}: {} makes no output {}",
                    item.describe(),
                    lot.output
                ),
            );
            continue;
        }
        if traced.steps.insert(pos) {
            stack.extend(input_lots(item, out));
        }
    }
    work_out_lots(ctx, &mut traced, out);
    if let Some(binding) = traced.binding {
        check_covered_by_policy(ctx, &traced, &ev.items[binding], out);
    }

    if !out.failed(Step::Trace) {
        let harvests: Vec<String> = traced
            .steps
            .iter()
            .filter(|p| matches!(ev.items[**p].statement.body, Body::Harvest(_)))
            .map(|p| ctx.ids.name(&ev.items[*p].statement.issuer))
            .collect();
        out.pass(
            Step::Trace,
            None,
            None,
            format!(
                "{subject} is traced through {} statements to {} harvest{} ({})",
                traced.steps.len(),
                harvests.len(),
                if harvests.len() == 1 { "" } else { "s" },
                harvests.join("; ")
            ),
        );
    }
    traced
}

/// Under a policy that names commodities, a product whose chain reaches harvests of none of
/// them cannot be vouched for: nothing in it is what the policy sets prices and
/// certifications for. (A chain that reaches no harvest has failed already; a policy that
/// names no commodity judges the evidence and the chain alone.)
fn check_covered_by_policy(ctx: &Ctx<'_>, traced: &Traced, binding: &Item, out: &mut Findings) {
    let mut harvested: Vec<&str> = traced
        .steps
        .iter()
        .filter_map(|&pos| match &ctx.ev.items[pos].statement.body {
            Body::Harvest(h) => Some(h.commodity.as_str()),
            _ => None,
        })
        .collect();
    if ctx.policy.commodities.is_empty()
        || harvested.is_empty()
        || harvested.iter().any(|c| named(ctx.policy, c))
    {
        return;
    }
    harvested.sort_unstable();
    harvested.dedup();
    out.fail(
        Step::Trace,
        Problem::ProductNotCovered,
        Some(binding.index),
        format!(
            "{} is made from harvests of {}, none of which the policy names: it sets no price or certification for anything in it, so it cannot vouch for it",
            binding.describe(),
            harvested.join(", ")
        ),
    );
}

/// The lots an item consumes; an input that names no valid lot is a finding, and so is a
/// transfer, transformation or binding that names none: it would make goods from nothing.
fn input_lots(item: &Item, out: &mut Findings) -> Vec<LotId> {
    let mut lots = Vec::new();
    let consumes = matches!(
        item.statement.body,
        Body::Transfer(_) | Body::Transformation(_) | Body::ProductBinding(_)
    );
    if consumes && inputs(&item.statement.body).is_empty() {
        out.fail(
            Step::Trace,
            Problem::InvalidStatement,
            Some(item.index),
            format!(
                "{} uses no lot, so what it passes on comes from nowhere; a transfer, transformation or product binding names at least one input lot",
                item.describe()
            ),
        );
    }
    for (i, input) in inputs(&item.statement.body).iter().enumerate() {
        match lot_of(input) {
            Some(lot) => lots.push(lot),
            None => {
                out.fail(
                    Step::Trace,
                    Problem::InvalidStatement,
                    Some(item.index),
                    format!(
                        "input {i} of {} names no valid lot (a 32-byte statement id and an output)",
                        item.describe()
                    ),
                );
            }
        }
    }
    lots
}

/// Fills in `traced.lots` from the chain's statements, in log order (so a transfer's input
/// lots are known before the transfer).
fn work_out_lots(ctx: &Ctx<'_>, traced: &mut Traced, out: &mut Findings) {
    let ev = ctx.ev;
    for &pos in &traced.steps {
        let item = &ev.items[pos];
        let id = item.statement.id;
        let issuer = ctx.ids.identity_of(&item.statement.issuer);
        let invalid = |out: &mut Findings, what: String| {
            out.fail(
                Step::Trace,
                Problem::InvalidStatement,
                Some(item.index),
                format!("{}: {what}", item.describe()),
            );
        };
        match &item.statement.body {
            Body::Harvest(h) => {
                let Some(q) = h.quantity.filter(|q| q.amount > 0) else {
                    invalid(out, "it states no quantity".into());
                    continue;
                };
                traced.producers.insert(issuer);
                traced.lots.insert(
                    LotId {
                        statement: id,
                        output: 0,
                    },
                    LotInfo {
                        creator: pos,
                        commodity: h.commodity.clone(),
                        quantity: q.amount,
                        unit: q.unit,
                        holder: issuer,
                        lot_code: h.lot_code.clone(),
                    },
                );
            }
            Body::Transfer(t) => {
                let Ok(recipient) = PublicKey::from_bytes(&t.recipient) else {
                    invalid(out, "its recipient is not a public key".into());
                    continue;
                };
                let mut total: u64 = 0;
                let mut kinds: BTreeSet<(String, i32)> = BTreeSet::new();
                for input in &t.inputs {
                    total = total.saturating_add(input.amount);
                    if let Some(info) = lot_of(input).and_then(|l| traced.lots.get(&l)) {
                        kinds.insert((info.commodity.clone(), info.unit));
                    }
                }
                if kinds.len() > 1 {
                    out.fail(
                        Step::Quantities,
                        Problem::MixedTransfer,
                        Some(item.index),
                        format!(
                            "{} ships lots of different commodities or units ({}); a transfer ships one commodity",
                            item.describe(),
                            kinds
                                .iter()
                                .map(|(c, u)| format!("{c} in {}", unit_symbol(*u)))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    );
                }
                // Without a known input (an untraced lot, already a finding), the lot made
                // is unknown too.
                let Some((commodity, unit)) = kinds.into_iter().next() else {
                    continue;
                };
                traced.lots.insert(
                    LotId {
                        statement: id,
                        output: 0,
                    },
                    LotInfo {
                        creator: pos,
                        commodity,
                        quantity: total,
                        unit,
                        holder: ctx.ids.identity_of(&recipient),
                        lot_code: t.document_reference.clone(),
                    },
                );
            }
            Body::Transformation(t) => {
                for (i, o) in t.outputs.iter().enumerate() {
                    let Some(q) = o.quantity.filter(|q| q.amount > 0) else {
                        invalid(out, format!("output {i} states no quantity"));
                        continue;
                    };
                    traced.lots.insert(
                        LotId {
                            statement: id,
                            output: i as u32,
                        },
                        LotInfo {
                            creator: pos,
                            commodity: o.commodity.clone(),
                            quantity: q.amount,
                            unit: q.unit,
                            holder: issuer,
                            lot_code: o.lot_code.clone(),
                        },
                    );
                }
            }
            _ => {}
        }
    }
}

/// A transformation's yield: the input and output totals it is counted on, their unit,
/// per mille, and whether some inputs were left out of the count.
pub(crate) struct Yield {
    pub input: u64,
    pub output: u64,
    pub unit: i32,
    pub per_mille: u64,
    pub partial: bool,
}

/// Whether the policy names `commodity` (in any of its families).
pub(crate) fn named(policy: &Policy, commodity: &str) -> bool {
    policy.commodity(commodity).is_some()
}

/// A transformation's yield. When an output is of a commodity the policy names, only the
/// inputs and outputs the policy names count (16 t of sand do not make 13 t of roasted coffee
/// plausible; a blend of two kinds of coffee counts both), and every counted output must be
/// in the counted inputs' unit. Otherwise all inputs count, and the outputs in their unit.
/// `None` when an input is not a lot of the chain, the counted inputs do not share one unit,
/// a counted output is in another, or either total is zero.
pub(crate) fn yield_of(
    traced: &Traced,
    t: &proto::Transformation,
    policy: &Policy,
) -> Option<Yield> {
    let covered = t.outputs.iter().any(|o| named(policy, &o.commodity));
    let counted = |commodity: &str| !covered || named(policy, commodity);
    let mut unit = None;
    let mut input: u64 = 0;
    let mut partial = false;
    for i in &t.inputs {
        let info = lot_of(i).and_then(|l| traced.lots.get(&l))?;
        if !counted(&info.commodity) {
            partial = true;
            continue;
        }
        if unit.is_some_and(|u| u != info.unit) {
            return None;
        }
        unit = Some(info.unit);
        input = input.saturating_add(i.amount);
    }
    let unit = unit?;
    let mut output: u64 = 0;
    for q in t
        .outputs
        .iter()
        .filter(|o| counted(&o.commodity))
        .filter_map(|o| o.quantity)
    {
        if q.unit == unit {
            output = output.saturating_add(q.amount);
        } else if covered {
            return None;
        }
    }
    if input == 0 || output == 0 {
        return None;
    }
    let per_mille = u128::from(output) * 1000 / u128::from(input);
    Some(Yield {
        input,
        output,
        unit,
        per_mille: u64::try_from(per_mille).unwrap_or(u64::MAX),
        partial,
    })
}

/// "Marcala, La Paz, HN": the non-empty parts, joined.
pub(crate) fn place(region: &str, country: &str) -> String {
    [region, country]
        .iter()
        .filter(|s| !s.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(", ")
}
