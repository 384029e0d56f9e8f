//! Step 7: each transfer on the chain confirmed by its recipient. A receipt raises a
//! transfer's quantities from self-declared to confirmed by the counterparty.

use std::collections::{BTreeMap, HashMap};

use super::chain::Traced;
use super::identity::possessive;
use super::report::Assurance;
use super::{Ctx, Findings, Problem, Step};
use crate::envelope::StatementId;
use crate::keys::PublicKey;
use crate::proto::{self, statement::Body};
use crate::rules::LotId;
use crate::units::DisplayQuantity;

/// The receipt that answers each transfer on the chain: transfer position -> receipt
/// position (in the evidence), for receipts by the transfer's recipient.
pub(crate) struct Receipts {
    pub by_transfer: BTreeMap<usize, usize>,
}

impl Receipts {
    /// Whether the recipient confirmed the full amount of the transfer at `pos`.
    pub fn confirmed(&self, ctx: &Ctx<'_>, traced: &Traced, pos: usize) -> bool {
        self.by_transfer.get(&pos).is_some_and(|r| {
            let item = &ctx.ev.items[pos];
            let amount = traced
                .lots
                .get(&LotId {
                    statement: item.statement.id,
                    output: 0,
                })
                .map(|l| l.quantity);
            matches!(&ctx.ev.items[*r].statement.body, Body::Receipt(rc)
                if rc.outcome == proto::ReceiptOutcome::Confirmed as i32
                    && Some(rc.amount_received) == amount)
        })
    }
}

/// Runs step 7.
pub(crate) fn check(ctx: &Ctx<'_>, traced: &Traced, out: &mut Findings) -> Receipts {
    let ev = ctx.ev;
    let ids = ctx.ids;
    let mut answers: HashMap<StatementId, Vec<usize>> = HashMap::new();
    for (pos, item) in ev.items.iter().enumerate() {
        if let Body::Receipt(r) = &item.statement.body {
            if let Ok(id) = StatementId::from_bytes(&r.transfer) {
                answers.entry(id).or_default().push(pos);
            }
        }
    }

    let mut receipts = Receipts {
        by_transfer: BTreeMap::new(),
    };
    let mut transfers = 0;
    for &pos in &traced.steps {
        let item = &ev.items[pos];
        let Body::Transfer(t) = &item.statement.body else {
            continue;
        };
        transfers += 1;
        let entry = Some(item.index);
        let Some(lot) = traced.lots.get(&LotId {
            statement: item.statement.id,
            output: 0,
        }) else {
            continue;
        };
        let from = ids.name(&item.statement.issuer);
        let recipient = PublicKey::from_bytes(&t.recipient)
            .map(|k| ids.identity_of(&k))
            .unwrap_or(lot.holder);
        let to = ids.name(&recipient);
        let what = format!(
            "{} from {from} (transfer at entry {})",
            lot.describe(lot.quantity),
            item.index
        );

        let mut answer = None;
        for &r in answers.get(&item.statement.id).into_iter().flatten() {
            let receipt = &ev.items[r];
            let by = ids.identity_of(&receipt.statement.issuer);
            if by != recipient {
                out.fail(
                    Step::Receipts,
                    Problem::ReceiptByStranger,
                    Some(receipt.index),
                    format!(
                        "the receipt at entry {} answers the transfer at entry {} but is signed by {}, not by its recipient {to}; it is ignored",
                        receipt.index,
                        item.index,
                        ids.name(&by)
                    ),
                );
            } else if answer.is_none() {
                answer = Some(r);
            }
        }

        let Some(r) = answer else {
            if ctx.policy.require_receipts {
                out.fail(
                    Step::Receipts,
                    Problem::ReceiptMissing,
                    entry,
                    format!("{to} has not confirmed receiving {what}, and the policy requires a receipt for every transfer"),
                );
            } else {
                out.pass(
                    Step::Receipts,
                    Some(Assurance::SelfDeclared),
                    entry,
                    format!(
                        "{to} has not confirmed receiving {what}: the shipment rests on {} word (the policy does not require receipts)",
                        possessive(&from)
                    ),
                );
            }
            continue;
        };
        receipts.by_transfer.insert(pos, r);
        let receipt = &ev.items[r];
        let Body::Receipt(rc) = &receipt.statement.body else {
            continue;
        };
        let received = DisplayQuantity(rc.amount_received, lot.unit);
        match proto::ReceiptOutcome::try_from(rc.outcome) {
            Ok(proto::ReceiptOutcome::Confirmed) if rc.amount_received == lot.quantity => {
                out.pass(
                    Step::Receipts,
                    Some(Assurance::CounterpartyConfirmed),
                    entry,
                    format!(
                        "{to} confirmed receiving {what} (receipt at entry {})",
                        receipt.index
                    ),
                );
            }
            Ok(proto::ReceiptOutcome::Confirmed) => {
                out.fail(
                    Step::Receipts,
                    Problem::ReceiptAmountMismatch,
                    entry,
                    format!(
                        "{to} confirms receiving {received} of {what} (receipt at entry {}); a confirmation states the full amount",
                        receipt.index
                    ),
                );
            }
            Ok(proto::ReceiptOutcome::Disputed) => {
                let message = format!(
                    "{to} disputes {what}: it says it received {received} (receipt at entry {})",
                    receipt.index
                );
                let finding = if ctx.policy.require_receipts {
                    out.fail(Step::Receipts, Problem::ReceiptDisputed, entry, message)
                } else {
                    out.warn(Step::Receipts, Problem::ReceiptDisputed, entry, message)
                };
                finding.assurance = Some(Assurance::SelfDeclared);
            }
            _ => {
                out.fail(
                    Step::Receipts,
                    Problem::InvalidStatement,
                    Some(receipt.index),
                    format!(
                        "the receipt at entry {} neither confirms nor disputes",
                        receipt.index
                    ),
                );
            }
        }
    }
    if transfers == 0 && !out.failed(Step::Trace) {
        out.pass(
            Step::Receipts,
            None,
            None,
            "there are no transfers to confirm",
        );
    }
    receipts
}
