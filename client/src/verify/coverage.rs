//! Step 8: certifications in force and in scope. Each chain step the policy wants
//! certified is matched with a certification of its actor that the policy accepts (see
//! [`super::certs`]), in scope for the commodity and the actor's role, valid at the step's
//! integration time and neither revoked nor suspended then. The time rules are in the
//! documentation of [`super`].

use std::collections::BTreeMap;

use super::certs::{weigh, Cert};
use super::chain::{inputs, Traced};
use super::evidence::Item;
use super::identity::{possessive, role_name};
use super::report::format_date;
use super::{Ctx, Findings, Problem, Step};
use crate::bundle::Subject;
use crate::keys::PublicKey;
use crate::proto::{self, statement::Body};
use crate::rules::LotId;

/// What one certification says about one chain step.
pub(crate) struct Coverage {
    /// Index into [`Certs::certs`].
    pub cert: usize,
    pub result: Result<(), (Problem, String)>,
}

/// Step 8's result: every certification, and the coverage of each chain step.
pub(crate) struct Certs {
    pub certs: Vec<Cert>,
    /// Chain step position -> the actor's certifications and whether each covers it.
    pub coverage: BTreeMap<usize, Vec<Coverage>>,
}

/// Runs step 8.
pub(crate) fn check(
    ctx: &Ctx<'_>,
    traced: &Traced,
    subject: &Subject,
    out: &mut Findings,
) -> Certs {
    let mut result = Certs {
        certs: weigh(ctx, out),
        coverage: BTreeMap::new(),
    };
    if let Subject::Participant(key) = subject {
        participant(ctx, &result, key, out);
        return result;
    }
    let mut required = 0;
    for &pos in &traced.steps {
        required += usize::from(cover_step(ctx, traced, &mut result, pos, out));
    }
    if required == 0 {
        out.pass(
            Step::Certifications,
            None,
            None,
            "the policy requires no certification of this chain's steps",
        );
    }
    result
}

/// Whether `cert` covers a step by `roles` in `commodities` at `t`.
fn covers(
    ctx: &Ctx<'_>,
    cert: &Cert,
    commodities: &[String],
    roles: &[i32],
    t: u64,
) -> Result<(), (Problem, String)> {
    if let Some(why) = &cert.untrusted {
        return Err(why.clone());
    }
    let c = &cert.body;
    if !c.commodities.is_empty() && !c.commodities.iter().any(|x| commodities.contains(x)) {
        return Err((
            Problem::CertificationOutOfScope,
            format!(
                "its scope is {}, not {}",
                c.commodities.join(", "),
                commodities.first().map_or("this commodity", |s| s.as_str())
            ),
        ));
    }
    if !c.roles.is_empty() && !c.roles.iter().any(|r| roles.contains(r)) {
        let names = |rs: &[i32]| {
            rs.iter()
                .map(|r| role_name(*r))
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Err((
            Problem::CertificationOutOfScope,
            format!(
                "its scope is the role of {}, not {} as at this step",
                names(&c.roles),
                names(roles)
            ),
        ));
    }
    let skew = ctx.policy.clock_skew_ms;
    if c.valid_from_ms > t.saturating_add(skew) {
        return Err((
            Problem::CertificationNotYetValid,
            format!("it is valid only from {}", format_date(c.valid_from_ms)),
        ));
    }
    if t > c.valid_until_ms.saturating_add(skew) {
        return Err((
            Problem::CertificationExpired,
            format!("it expired on {}", format_date(c.valid_until_ms)),
        ));
    }
    cert.status_at(&ctx.ev.items, t)
}

/// The roles a participant acts in at a step: its declared roles that fit the step (all its
/// declared roles when none fits).
fn acting_roles(ctx: &Ctx<'_>, actor: &PublicKey, body: &Body) -> Vec<i32> {
    use proto::Role as R;
    let fitting: &[R] = match body {
        Body::Harvest(_) => &[R::Producer, R::Cooperative],
        _ => &[R::Producer, R::Cooperative, R::Trader, R::Processor],
    };
    let declared = ctx
        .ids
        .participant(actor)
        .map(|p| p.declaration.roles.clone())
        .unwrap_or_default();
    let acting: Vec<i32> = declared
        .iter()
        .copied()
        .filter(|r| fitting.iter().any(|f| *f as i32 == *r))
        .collect();
    if acting.is_empty() {
        declared
    } else {
        acting
    }
}

/// The commodities a step handles: a harvest's, a transfer's lot's, a transformation's
/// inputs' and outputs'.
fn commodities_of(traced: &Traced, item: &Item) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    match &item.statement.body {
        Body::Harvest(h) => names.push(h.commodity.clone()),
        Body::Transformation(t) => names.extend(t.outputs.iter().map(|o| o.commodity.clone())),
        _ => {}
    }
    for input in inputs(&item.statement.body) {
        if let Some(info) = input
            .lot
            .as_ref()
            .and_then(|l| LotId::try_from(l).ok())
            .and_then(|l| traced.lots.get(&l))
        {
            names.push(info.commodity.clone());
        }
    }
    names.dedup();
    names
}

/// Matches a chain step with its actor's certifications; returns whether the policy
/// required it to be certified.
fn cover_step(
    ctx: &Ctx<'_>,
    traced: &Traced,
    result: &mut Certs,
    pos: usize,
    out: &mut Findings,
) -> bool {
    let ids = ctx.ids;
    let item = &ctx.ev.items[pos];
    if !matches!(
        item.statement.body,
        Body::Harvest(_) | Body::Transfer(_) | Body::Transformation(_)
    ) {
        return false;
    }
    let actor = ids.identity_of(&item.statement.issuer);
    let handled = commodities_of(traced, item);
    let family = handled.iter().find_map(|c| ctx.policy.commodity(c));
    let mut names = handled.clone();
    if let Some((family, policy)) = family {
        names.extend(policy.names(family).map(str::to_owned));
    }
    let required = family.is_some_and(|(_, p)| {
        p.certification_required
            && (traced.producers.contains(&actor) || p.require_certified_handlers)
    });
    let schemes: Option<&[String]> = family
        .map(|(_, p)| p.schemes.as_slice())
        .filter(|s| !s.is_empty());
    let roles = acting_roles(ctx, &actor, &item.statement.body);
    let coverage: Vec<Coverage> = result
        .certs
        .iter()
        .enumerate()
        .filter(|(_, c)| c.subject == actor)
        .filter(|(_, c)| schemes.is_none_or(|s| s.contains(&c.body.scheme)))
        .map(|(i, c)| Coverage {
            cert: i,
            result: covers(ctx, c, &names, &roles, item.at),
        })
        .collect();

    let entry = Some(item.index);
    let step = format!(
        "{} {} at entry {} ({})",
        possessive(&ids.name(&actor)),
        item.statement.kind(),
        item.index,
        format_date(item.at)
    );
    let mut covered = false;
    for cov in coverage.iter().filter(|c| c.result.is_ok()) {
        covered = true;
        let cert = &result.certs[cov.cert];
        let c = &cert.body;
        let by = if cert.participatory {
            format!(
                "the {} peers of {} who signed",
                cert.peers.len(),
                ids.name(&cert.certifier)
            )
        } else {
            ids.name(&cert.certifier)
        };
        out.pass(
            Step::Certifications,
            Some(cert.assurance()),
            entry,
            format!(
                "{step} is covered by {} (by {by}; valid {} to {})",
                cert.label(),
                format_date(c.valid_from_ms),
                format_date(c.valid_until_ms)
            ),
        );
    }
    if let Some((family, policy)) = family.filter(|_| required && !covered) {
        if coverage.is_empty() {
            out.fail(
                Step::Certifications,
                Problem::NotCertified,
                entry,
                format!(
                    "{step}: the policy requires a {} certification for {family}, and the bundle holds none of {}",
                    policy.schemes.join(" or "),
                    ids.name(&actor)
                ),
            );
        }
        for cov in &coverage {
            if let Err((problem, why)) = &cov.result {
                let cert = &result.certs[cov.cert];
                out.fail(
                    Step::Certifications,
                    *problem,
                    entry,
                    format!("{step} is not covered by {}: {why}", cert.label()),
                );
            }
        }
    }
    result.coverage.insert(pos, coverage);
    required
}

/// For a participant bundle: each of its certifications and its standing as at the last
/// entry of the bundle.
fn participant(ctx: &Ctx<'_>, result: &Certs, key: &PublicKey, out: &mut Findings) {
    let ids = ctx.ids;
    let identity = ids.identity_of(key);
    let now = ctx.ev.items.iter().map(|i| i.at).max().unwrap_or(0);
    let mut any = false;
    for cert in result.certs.iter().filter(|c| c.subject == identity) {
        any = true;
        let index = ctx.ev.items[cert.pos].index;
        let what = format!(
            "{} of {} by {} (entry {index})",
            cert.label(),
            ids.name(&identity),
            ids.name(&cert.certifier)
        );
        let standing = cert.untrusted.clone().map_or_else(
            || {
                let c = &cert.body;
                if now > c.valid_until_ms.saturating_add(ctx.policy.clock_skew_ms) {
                    Err((
                        Problem::CertificationExpired,
                        format!("it expired on {}", format_date(c.valid_until_ms)),
                    ))
                } else {
                    cert.status_at(&ctx.ev.items, now)
                }
            },
            Err,
        );
        match standing {
            Ok(()) => out.pass(
                Step::Certifications,
                Some(cert.assurance()),
                Some(index),
                format!("{what} is in force as of {}", format_date(now)),
            ),
            Err((problem, why)) => {
                out.warn(
                    Step::Certifications,
                    problem,
                    Some(index),
                    format!("{what}: {why}"),
                );
            }
        }
    }
    if !any {
        out.pass(
            Step::Certifications,
            None,
            None,
            format!(
                "the bundle holds no certification of {}",
                ids.name(&identity)
            ),
        );
    }
}
