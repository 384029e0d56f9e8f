//! Step 10: every dispute of an entry in the bundle. Nothing in the log closes a dispute,
//! so each is open and shown as a warning, with who raised it and why.

use super::report::{Assurance, DisputeView};
use super::{Ctx, Findings, Problem, Step};
use crate::envelope::StatementId;
use crate::proto::statement::Body;

/// Runs step 10: every dispute of an entry in the bundle, as a warning.
pub(crate) fn check(ctx: &Ctx<'_>, out: &mut Findings) -> Vec<DisputeView> {
    let ids = ctx.ids;
    let mut views = Vec::new();
    for item in &ctx.ev.items {
        let Body::Dispute(d) = &item.statement.body else {
            continue;
        };
        let Some(disputed) = StatementId::from_bytes(&d.entry)
            .ok()
            .and_then(|id| ctx.ev.get(&id))
        else {
            continue;
        };
        let by = ids.party(&item.statement.issuer);
        out.warn(
            Step::Disputes,
            Problem::OpenDispute,
            Some(item.index),
            format!(
                "{} disputes {} by {} (dispute at entry {}): \"{}\"",
                ids.name(&item.statement.issuer),
                disputed.describe(),
                ids.name(&disputed.statement.issuer),
                item.index,
                d.reason
            ),
        )
        .assurance = Some(Assurance::SelfDeclared);
        views.push(DisputeView {
            entry: item.index,
            integrated_at_ms: item.at,
            by,
            disputed_entry: disputed.index,
            disputed_statement: disputed.statement.id,
            disputed_kind: disputed.statement.kind().to_owned(),
            reason: d.reason.clone(),
        });
    }
    if views.is_empty() {
        out.pass(
            Step::Disputes,
            None,
            None,
            "no entry in the bundle is disputed",
        );
    }
    views
}
