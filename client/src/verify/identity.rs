//! Step 4: participants and their keys. Declarations and key rotations are replayed in log
//! order, as the ledger rules apply them, and every statement is checked to be signed with
//! the key its participant held at that entry.

use std::collections::{BTreeMap, HashMap};

use super::evidence::{Evidence, Item};
use super::report::{Assurance, PartyRef};
use super::{Findings, Problem, Step};
use crate::keys::PublicKey;
use crate::proto::{self, statement::Body};

/// One key an identity has held.
pub(crate) struct KeySpan {
    pub key: PublicKey,
    /// The entry that declared it or rotated to it.
    pub from: u64,
    /// The entry that rotated it away; it signs nothing after that entry.
    pub retired_at: Option<u64>,
}

/// A declared participant. Its identity is the key that declared it.
pub(crate) struct Participant {
    pub identity: PublicKey,
    pub declaration: proto::ParticipantDeclaration,
    pub declared_at: u64,
    /// The guardians that parse as keys.
    pub guardians: Vec<PublicKey>,
    pub keys: Vec<KeySpan>,
}

/// What a key could do at an entry.
pub(crate) enum KeyState {
    /// It spoke for this identity.
    Active(PublicKey),
    /// It had been rotated away at entry `at`.
    Retired { identity: PublicKey, at: u64 },
    /// No declaration or rotation in the bundle introduced it by then.
    Unknown,
}

/// Every participant declared in the bundle, with its key history.
#[derive(Default)]
pub(crate) struct Identities {
    participants: BTreeMap<PublicKey, Participant>,
    keys: HashMap<PublicKey, PublicKey>,
}

impl Identities {
    /// What `key` could do at entry `index`.
    pub fn state(&self, key: &PublicKey, index: u64) -> KeyState {
        let Some(identity) = self.keys.get(key) else {
            return KeyState::Unknown;
        };
        let span = self
            .participants
            .get(identity)
            .and_then(|p| p.keys.iter().find(|s| s.key == *key));
        match span {
            Some(s) if s.from > index => KeyState::Unknown,
            Some(KeySpan {
                retired_at: Some(at),
                ..
            }) if index > *at => KeyState::Retired {
                identity: *identity,
                at: *at,
            },
            Some(_) => KeyState::Active(*identity),
            None => KeyState::Unknown,
        }
    }

    /// The identity a key speaks (or spoke) for; an undeclared key stands for itself.
    pub fn identity_of(&self, key: &PublicKey) -> PublicKey {
        self.keys.get(key).copied().unwrap_or(*key)
    }

    pub fn participant(&self, identity: &PublicKey) -> Option<&Participant> {
        self.participants.get(identity)
    }

    pub fn participants(&self) -> impl Iterator<Item = &Participant> {
        self.participants.values()
    }

    /// Every key the identity of `key` has held (just `key` when undeclared).
    pub fn keys_of(&self, key: &PublicKey) -> Vec<PublicKey> {
        match self.participants.get(&self.identity_of(key)) {
            Some(p) => p.keys.iter().map(|s| s.key).collect(),
            None => vec![*key],
        }
    }

    /// A participant's name for people; a short key when it is not declared.
    pub fn name(&self, key: &PublicKey) -> String {
        match self.participant(&self.identity_of(key)) {
            Some(p) => p.declaration.name.clone(),
            None => short_key(key),
        }
    }

    pub fn party(&self, key: &PublicKey) -> PartyRef {
        let identity = self.identity_of(key);
        let p = self.participant(&identity);
        PartyRef {
            key: identity,
            name: p.map(|p| p.declaration.name.clone()),
            country: p.map(|p| p.declaration.country.clone()),
        }
    }

    /// The distinct identities among `signers` that are among `members` (listed by any of
    /// their keys), counting only keys not retired at `index`. This is how a PGS quorum and
    /// a guardians' quorum are counted: one member, one vote, whatever keys it signs with.
    pub fn count_members(
        &self,
        signers: &[PublicKey],
        members: &[PublicKey],
        index: u64,
    ) -> Vec<PublicKey> {
        let member_ids: Vec<(PublicKey, PublicKey)> =
            members.iter().map(|m| (*m, self.identity_of(m))).collect();
        let mut counted: Vec<PublicKey> = Vec::new();
        for signer in signers {
            let id = match self.state(signer, index) {
                KeyState::Active(id) => id,
                KeyState::Retired { .. } => continue,
                KeyState::Unknown => *signer,
            };
            let member = member_ids.iter().any(|(m, mid)| m == signer || *mid == id);
            if member && !counted.contains(&id) {
                counted.push(id);
            }
        }
        counted
    }
}

/// "Marcala's", "Bristol Co-operative Roasters'".
pub(crate) fn possessive(name: &str) -> String {
    if name.ends_with('s') {
        format!("{name}'")
    } else {
        format!("{name}'s")
    }
}

/// "1 distinct member", "2 distinct members".
pub(crate) fn members(n: usize) -> String {
    format!("{n} distinct member{}", if n == 1 { "" } else { "s" })
}

/// `ed25519:1a2b3c4d…`: enough of a key to recognise it.
pub(crate) fn short_key(key: &PublicKey) -> String {
    let text = key.to_string();
    format!("{}…", text.get(..16).unwrap_or(&text))
}

/// Statements whose issuer must be a declared participant for the chain to mean anything.
fn needs_declared_issuer(body: &Body) -> bool {
    match body {
        Body::Harvest(_)
        | Body::Transfer(_)
        | Body::Receipt(_)
        | Body::Transformation(_)
        | Body::ProductBinding(_) => true,
        Body::Certification(c) => c.kind == proto::CertificationKind::ThirdParty as i32,
        _ => false,
    }
}

/// Runs step 4.
pub(crate) fn check(ev: &Evidence, out: &mut Findings) -> Identities {
    let mut ids = Identities::default();
    let mut rotations = 0;
    for item in &ev.items {
        match &item.statement.body {
            Body::ParticipantDeclaration(d) => ids.declare(item, d, out),
            Body::KeyRotation(r) => rotations += usize::from(ids.rotate(item, r, out)),
            body => ids.check_signer(item, needs_declared_issuer(body), out),
        }
    }
    if !out.failed(Step::Participants) {
        out.pass(
            Step::Participants,
            None,
            None,
            format!(
                "every statement is signed with its participant's key at the time ({} participants, {rotations} key rotations followed)",
                ids.participants.len()
            ),
        );
    }
    ids
}

impl Identities {
    fn declare(&mut self, item: &Item, d: &proto::ParticipantDeclaration, out: &mut Findings) {
        let key = item.statement.issuer;
        if let Some(identity) = self.keys.get(&key) {
            out.fail(
                Step::Participants,
                Problem::KeyReused,
                Some(item.index),
                format!(
                    "entry {} declares key {key} again, which already speaks for {}",
                    item.index,
                    self.name(identity)
                ),
            );
            return;
        }
        let guardians = d
            .guardians
            .iter()
            .filter_map(|g| PublicKey::from_bytes(g).ok())
            .collect();
        self.keys.insert(key, key);
        self.participants.insert(
            key,
            Participant {
                identity: key,
                declaration: d.clone(),
                declared_at: item.index,
                guardians,
                keys: vec![KeySpan {
                    key,
                    from: item.index,
                    retired_at: None,
                }],
            },
        );
        let place = [d.location.as_str(), d.country.as_str()]
            .iter()
            .filter(|s| !s.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join(", ");
        out.pass(
            Step::Participants,
            Some(Assurance::SelfDeclared),
            Some(item.index),
            format!(
                "{} declared itself ({}; {}) at entry {}",
                d.name,
                roles_text(&d.roles),
                place,
                item.index
            ),
        );
    }

    /// Follows a rotation if it is sound; returns whether it was followed.
    fn rotate(&mut self, item: &Item, r: &proto::KeyRotation, out: &mut Findings) -> bool {
        let old = item.statement.issuer;
        let entry = Some(item.index);
        let identity = match self.state(&old, item.index) {
            KeyState::Active(identity) => identity,
            KeyState::Retired { identity, at } => {
                out.fail(
                    Step::Participants,
                    Problem::RetiredKey,
                    entry,
                    format!(
                        "entry {} rotates key {old} of {}, which was already rotated away at entry {at}",
                        item.index,
                        self.name(&identity)
                    ),
                );
                return false;
            }
            KeyState::Unknown => {
                out.fail(
                    Step::Participants,
                    Problem::UndeclaredKey,
                    entry,
                    format!(
                        "entry {} rotates key {old}, which no declaration in the bundle introduces",
                        item.index
                    ),
                );
                return false;
            }
        };
        let name = self.name(&identity);
        let bad = |out: &mut Findings, problem, why: String| {
            out.fail(
                Step::Participants,
                problem,
                entry,
                format!(
                    "the key rotation of {name} at entry {} is not followed: {why}",
                    item.index
                ),
            );
            false
        };
        let new_key =
            match PublicKey::from_bytes(&r.new_key).and_then(|k| k.verifying_key().map(|_| k)) {
                Ok(k) => k,
                Err(e) => return bad(out, Problem::BadRotation, format!("new key: {e}")),
            };
        if self.keys.contains_key(&new_key) {
            return bad(
                out,
                Problem::KeyReused,
                format!(
                    "the new key {new_key} already speaks for {}",
                    self.name(&new_key)
                ),
            );
        }
        if !item.signers.contains(&new_key) {
            return bad(
                out,
                Problem::BadRotation,
                format!("the new key {new_key} did not sign it"),
            );
        }
        let how = if r.recovery {
            let Some(p) = self.participants.get(&identity) else {
                return false;
            };
            let need = p.declaration.guardian_threshold as usize;
            let guardians = p.guardians.clone();
            let have = self
                .count_members(&item.signers, &guardians, item.index)
                .len();
            if need == 0 || have < need {
                return bad(
                    out,
                    Problem::RecoveryQuorumNotMet,
                    format!(
                        "a recovery needs {need} distinct guardians of the {} {name} declared; {have} signed",
                        guardians.len()
                    ),
                );
            }
            format!("recovered by the new key and {have} of its guardians")
        } else {
            if !item.signers.contains(&old) {
                return bad(
                    out,
                    Problem::BadRotation,
                    format!("the old key {old} did not sign it"),
                );
            }
            "signed by the old and the new key".to_owned()
        };
        if let Some(p) = self.participants.get_mut(&identity) {
            for span in p.keys.iter_mut().filter(|s| s.key == old) {
                span.retired_at = Some(item.index);
            }
            p.keys.push(KeySpan {
                key: new_key,
                from: item.index,
                retired_at: None,
            });
        }
        self.keys.insert(new_key, identity);
        let assurance = if r.recovery {
            Assurance::PeerCertified
        } else {
            Assurance::SelfDeclared
        };
        out.pass(
            Step::Participants,
            Some(assurance),
            entry,
            format!(
                "{name} moved from key {} to key {} at entry {} ({how})",
                short_key(&old),
                short_key(&new_key),
                item.index
            ),
        );
        true
    }

    fn check_signer(&self, item: &Item, must_be_declared: bool, out: &mut Findings) {
        let key = item.statement.issuer;
        match self.state(&key, item.index) {
            KeyState::Active(_) => {}
            KeyState::Retired { identity, at } => {
                out.fail(
                    Step::Participants,
                    Problem::RetiredKey,
                    Some(item.index),
                    format!(
                        "{} is signed with key {key}, which {} rotated away at entry {at}; after a rotation only the new key speaks for a participant",
                        item.describe(),
                        self.name(&identity)
                    ),
                );
            }
            KeyState::Unknown if must_be_declared => {
                out.fail(
                    Step::Participants,
                    Problem::UndeclaredKey,
                    Some(item.index),
                    format!(
                        "{} is signed by key {key}, which no declaration in the bundle introduces before it",
                        item.describe()
                    ),
                );
            }
            KeyState::Unknown => {}
        }
    }
}

pub(crate) fn role_name(role: i32) -> &'static str {
    match proto::Role::try_from(role) {
        Ok(proto::Role::Producer) => "producer",
        Ok(proto::Role::Cooperative) => "cooperative",
        Ok(proto::Role::Trader) => "trader",
        Ok(proto::Role::Processor) => "processor",
        Ok(proto::Role::Retailer) => "retailer",
        Ok(proto::Role::Certifier) => "certifier",
        Ok(proto::Role::Monitor) => "monitor",
        _ => "unspecified",
    }
}

pub(crate) fn roles_text(roles: &[i32]) -> String {
    roles
        .iter()
        .map(|r| role_name(*r))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) fn organisation_name(kind: i32) -> &'static str {
    use proto::OrganisationType as O;
    match O::try_from(kind) {
        Ok(O::SmallholderAssociation) => "smallholder association",
        Ok(O::WorkerCooperative) => "worker cooperative",
        Ok(O::FamilyFarm) => "family farm",
        Ok(O::Estate) => "estate",
        Ok(O::Company) => "company",
        Ok(O::CertificationBody) => "certification body",
        Ok(O::ParticipatoryGuaranteeSystem) => "participatory guarantee system",
        Ok(O::NonProfit) => "non-profit",
        Ok(O::Individual) => "individual",
        _ => "unspecified",
    }
}
