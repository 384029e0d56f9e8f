//! The certifications in a bundle, weighed against the policy: issued by a certifier the
//! policy trusts for the scheme, or by a PGS network it trusts with at least the quorum of
//! distinct members signing; with their revocations, suspensions and reinstatements, each
//! checked to come from the certification's issuer. Step 8 ([`super::coverage`]) matches
//! them with the chain's steps.

use super::evidence::Item;
use super::identity::{members, KeyState};
use super::report::{format_date, Assurance};
use super::{Ctx, Findings, Problem, Step};
use crate::envelope::StatementId;
use crate::keys::PublicKey;
use crate::proto::{self, statement::Body};

/// A revocation, suspension or reinstatement by the certification's issuer.
pub(crate) struct StatusChange {
    pub pos: usize,
    pub kind: proto::RevocationKind,
    pub effective_at: u64,
    pub reason: String,
}

/// A certification in the bundle, weighed against the policy.
pub(crate) struct Cert {
    pub pos: usize,
    pub id: StatementId,
    pub body: proto::Certification,
    /// The certified identity.
    pub subject: PublicKey,
    /// The certifier's identity, or the PGS network's.
    pub certifier: PublicKey,
    pub participatory: bool,
    /// Distinct members (identities) who signed a participatory certification.
    pub peers: Vec<PublicKey>,
    /// The members a participatory certification needed.
    pub quorum: Option<u32>,
    /// Why the policy does not accept it, if it does not.
    pub untrusted: Option<(Problem, String)>,
    /// Sorted by effective time, then log order.
    pub changes: Vec<StatusChange>,
}

impl Cert {
    pub fn assurance(&self) -> Assurance {
        if self.participatory {
            Assurance::PeerCertified
        } else {
            Assurance::ThirdPartyCertified
        }
    }

    /// "Fairtrade certificate FLO-3521".
    pub fn label(&self) -> String {
        if self.body.certificate_id.is_empty() {
            format!("{} certification", self.body.scheme)
        } else {
            format!(
                "{} certificate {}",
                self.body.scheme, self.body.certificate_id
            )
        }
    }

    /// Whether it was revoked or suspended at `t`.
    pub fn status_at(&self, ev: &[Item], t: u64) -> Result<(), (Problem, String)> {
        let mut suspended: Option<&StatusChange> = None;
        for c in self.changes.iter().take_while(|c| c.effective_at <= t) {
            match c.kind {
                proto::RevocationKind::Revoked => {
                    return Err((
                        Problem::CertificationRevoked,
                        format!(
                            "revoked from {} (entry {}): {}",
                            format_date(c.effective_at),
                            ev[c.pos].index,
                            c.reason
                        ),
                    ))
                }
                proto::RevocationKind::Suspended => suspended = Some(c),
                _ => suspended = None,
            }
        }
        match suspended {
            Some(c) => Err((
                Problem::CertificationSuspended,
                format!(
                    "suspended from {} (entry {}): {}",
                    format_date(c.effective_at),
                    ev[c.pos].index,
                    c.reason
                ),
            )),
            None => Ok(()),
        }
    }
}

/// Every certification in the bundle, weighed against the policy, with its status
/// changes.
pub(crate) fn weigh(ctx: &Ctx<'_>, out: &mut Findings) -> Vec<Cert> {
    let mut certs = collect(ctx, out);
    revocations(ctx, &mut certs, out);
    certs
}

fn collect(ctx: &Ctx<'_>, out: &mut Findings) -> Vec<Cert> {
    let ids = ctx.ids;
    let mut certs = Vec::new();
    for (pos, item) in ctx.ev.items.iter().enumerate() {
        let Body::Certification(c) = &item.statement.body else {
            continue;
        };
        let entry = Some(item.index);
        let Ok(subject) = PublicKey::from_bytes(&c.subject) else {
            out.fail(
                Step::Certifications,
                Problem::InvalidStatement,
                entry,
                format!("{} names no valid subject key", item.describe()),
            );
            continue;
        };
        let mut cert = Cert {
            pos,
            id: item.statement.id,
            body: c.clone(),
            subject: ids.identity_of(&subject),
            certifier: ids.identity_of(&item.statement.issuer),
            participatory: false,
            peers: Vec::new(),
            quorum: None,
            untrusted: None,
            changes: Vec::new(),
        };
        let scheme = &c.scheme;
        match proto::CertificationKind::try_from(c.kind) {
            Ok(proto::CertificationKind::ThirdParty) => {
                let trusted = ctx.policy.certifiers.get(scheme);
                cert.untrusted = match trusted {
                    None => Some((
                        Problem::UntrustedCertifier,
                        format!("the policy trusts no certifier for {scheme}"),
                    )),
                    Some(keys)
                        if !ids
                            .keys_of(&cert.certifier)
                            .iter()
                            .any(|k| keys.contains(k)) =>
                    {
                        Some((
                            Problem::UntrustedCertifier,
                            format!(
                                "its certifier {} is not one the policy trusts for {scheme}",
                                ids.name(&cert.certifier)
                            ),
                        ))
                    }
                    Some(_) => None,
                };
            }
            Ok(proto::CertificationKind::Participatory) => {
                cert.participatory = true;
                let Ok(network) = PublicKey::from_bytes(&c.network) else {
                    out.fail(
                        Step::Certifications,
                        Problem::InvalidStatement,
                        entry,
                        format!("{} names no valid PGS network key", item.describe()),
                    );
                    continue;
                };
                cert.certifier = ids.identity_of(&network);
                cert.untrusted = weigh_pgs(ctx, &mut cert, item, out);
            }
            _ => {
                out.fail(
                    Step::Certifications,
                    Problem::InvalidStatement,
                    entry,
                    format!(
                        "{} is neither third-party nor participatory",
                        item.describe()
                    ),
                );
                continue;
            }
        }
        certs.push(cert);
    }
    certs
}

/// Checks a participatory certification's network and quorum; returns why the policy does
/// not accept it, if it does not.
fn weigh_pgs(
    ctx: &Ctx<'_>,
    cert: &mut Cert,
    item: &Item,
    out: &mut Findings,
) -> Option<(Problem, String)> {
    let ids = ctx.ids;
    let network = ids.participant(&cert.certifier);
    let declared_quorum = network.map_or(0, |n| n.declaration.guardian_threshold);
    let declared_members = network.map(|n| n.guardians.clone()).unwrap_or_default();
    let name = ids.name(&cert.certifier);

    // Whatever the policy says, the network's own quorum must be met: the log should never
    // have accepted less, so less is evidence against the node.
    let declared_peers = ids.count_members(&item.signers, &declared_members, item.index);
    if network.is_some() && declared_peers.len() < declared_quorum as usize {
        out.fail(
            Step::Certifications,
            Problem::PgsQuorumNotMet,
            Some(item.index),
            format!(
                "{} by {name} carries the signatures of {}; {name} declared a quorum of {declared_quorum}",
                item.describe(),
                members(declared_peers.len())
            ),
        );
    }

    let scheme = &cert.body.scheme;
    let Some(pgs) = ctx.policy.pgs.get(scheme) else {
        cert.peers = declared_peers;
        return Some((
            Problem::UntrustedCertifier,
            format!("the policy trusts no participatory guarantee system for {scheme}"),
        ));
    };
    if ids.identity_of(&pgs.network) != cert.certifier {
        cert.peers = declared_peers;
        return Some((
            Problem::UntrustedCertifier,
            format!("the policy trusts {scheme} certifications from another network, not {name}"),
        ));
    }
    let Some(network) = network else {
        return Some((
            Problem::UntrustedCertifier,
            format!(
                "the network {name} has no declaration in the bundle, so its members are unknown"
            ),
        ));
    };
    if network.declaration.organisation_type
        != proto::OrganisationType::ParticipatoryGuaranteeSystem as i32
    {
        return Some((
            Problem::UntrustedCertifier,
            format!("{name} is not declared as a participatory guarantee system"),
        ));
    }
    let recognised = if pgs.members.is_empty() {
        declared_members
    } else {
        pgs.members.clone()
    };
    let quorum = pgs.quorum.max(declared_quorum);
    cert.peers = ids.count_members(&item.signers, &recognised, item.index);
    cert.quorum = Some(quorum);
    if cert.peers.len() < quorum as usize {
        return Some((
            Problem::PgsQuorumNotMet,
            format!(
                "{} of {name} signed it; the policy requires {quorum}",
                members(cert.peers.len())
            ),
        ));
    }
    None
}

/// Collects each certification's status changes, refusing those not made by its issuer.
fn revocations(ctx: &Ctx<'_>, certs: &mut [Cert], out: &mut Findings) {
    let ids = ctx.ids;
    for (pos, item) in ctx.ev.items.iter().enumerate() {
        let Body::Revocation(r) = &item.statement.body else {
            continue;
        };
        let Some(cert) = StatementId::from_bytes(&r.certification)
            .ok()
            .and_then(|id| certs.iter_mut().find(|c| c.id == id))
        else {
            continue;
        };
        let entry = Some(item.index);
        let authorised = if cert.participatory {
            let network = ids.participant(&cert.certifier);
            let members = network.map(|n| n.guardians.clone()).unwrap_or_default();
            let quorum = network.map_or(0, |n| n.declaration.guardian_threshold) as usize;
            quorum > 0 && ids.count_members(&item.signers, &members, item.index).len() >= quorum
        } else {
            matches!(ids.state(&item.statement.issuer, item.index), KeyState::Active(id) if id == cert.certifier)
        };
        if !authorised {
            out.fail(
                Step::Certifications,
                Problem::UnauthorisedRevocation,
                entry,
                format!(
                    "{} changes {} of {}, but its certifier {} did not make it; it is ignored",
                    item.describe(),
                    cert.label(),
                    ids.name(&cert.subject),
                    ids.name(&cert.certifier)
                ),
            );
            continue;
        }
        let kind = match proto::RevocationKind::try_from(r.kind) {
            Ok(
                k @ (proto::RevocationKind::Revoked
                | proto::RevocationKind::Suspended
                | proto::RevocationKind::Reinstated),
            ) => k,
            _ => {
                out.fail(
                    Step::Certifications,
                    Problem::InvalidStatement,
                    entry,
                    format!(
                        "{} neither revokes, suspends nor reinstates",
                        item.describe()
                    ),
                );
                continue;
            }
        };
        cert.changes.push(StatusChange {
            pos,
            kind,
            effective_at: r.effective_at_ms,
            reason: r.reason.clone(),
        });
    }
    for cert in certs.iter_mut() {
        cert.changes.sort_by_key(|c| (c.effective_at, c.pos));
    }
}
