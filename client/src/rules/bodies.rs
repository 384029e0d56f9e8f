//! The rule for each statement body: checks first, then writes, so an error leaves nothing.

use std::collections::BTreeMap;

use super::records::{
    key, prefix, product_key, CertificationRecord, CertificationStatus, IdentityRecord, KeyRecord,
    LotId, LotRecord, TransferRecord,
};
use super::{
    get_json, key_record, put_json, statement_index, Overlay, Position, RuleError, StateRead,
    MAX_FUTURE_SKEW_MS, MAX_GUARDIANS, MAX_LOTS_PER_STATEMENT, MAX_TEXT,
};
use crate::envelope::{Envelope, StatementId};
use crate::gs1;
use crate::keys::PublicKey;
use crate::proto::{self, statement::Body};
use crate::statement::Statement;
use crate::units::{check_currency, DisplayQuantity};

pub(super) fn apply(
    state: &mut Overlay<'_>,
    envelope: &Envelope,
    statement: &Statement,
    at: Position,
) -> Result<(), RuleError> {
    if statement.issued_at_ms > at.integrated_at_ms.saturating_add(MAX_FUTURE_SKEW_MS) {
        return Err(RuleError::invalid(
            "issued_at_ms",
            format!(
                "{} is more than {} minutes after the log's clock ({}); check the signer's clock",
                statement.issued_at_ms,
                MAX_FUTURE_SKEW_MS / 60_000,
                at.integrated_at_ms
            ),
        ));
    }
    // INVARIANT: a statement enters the log once. Applied again, a harvest or transfer would
    // recreate its lot with the full quantity, undoing what was spent from it. (A replay may
    // find the statement's own entry already indexed: that is not a second copy.)
    if let Some(i) = logged_before(&*state, &statement.id, at.index)? {
        return Err(RuleError::Conflict(format!(
            "statement {} is already in the log at entry {i}",
            statement.id
        )));
    }
    text("remark", &statement.proto.remark, false)?;
    for (i, r) in statement.proto.references.iter().enumerate() {
        let id = StatementId::from_bytes(r)
            .map_err(|e| RuleError::invalid(format!("references[{i}]"), e.to_string()))?;
        known_statement(state, "referenced statement", &id, at.index)?;
    }
    let mut rule = Rule {
        state,
        envelope,
        statement,
        at,
    };
    match &statement.body {
        Body::ParticipantDeclaration(b) => rule.declaration(b),
        Body::KeyRotation(b) => rule.rotation(b),
        Body::Certification(b) => rule.certification(b),
        Body::Revocation(b) => rule.revocation(b),
        Body::Harvest(b) => rule.harvest(b),
        Body::Transfer(b) => rule.transfer(b),
        Body::Receipt(b) => rule.receipt(b),
        Body::Transformation(b) => rule.transformation(b),
        Body::ProductBinding(b) => rule.binding(b),
        Body::Dispute(b) => rule.dispute(b),
    }
}

struct Rule<'s, 'o> {
    state: &'s mut Overlay<'o>,
    envelope: &'s Envelope,
    statement: &'s Statement,
    at: Position,
}

fn text(field: &str, value: &str, required: bool) -> Result<(), RuleError> {
    if required && value.trim().is_empty() {
        return Err(RuleError::invalid(field, "must not be empty"));
    }
    if value.len() > MAX_TEXT {
        return Err(RuleError::invalid(
            field,
            format!("has {} bytes; at most {MAX_TEXT} are allowed", value.len()),
        ));
    }
    if value.chars().any(|c| c.is_control() && c != '\n') {
        return Err(RuleError::invalid(
            field,
            "must not contain control characters",
        ));
    }
    Ok(())
}

fn country(field: &str, value: &str) -> Result<(), RuleError> {
    if value.len() == 2 && value.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(())
    } else {
        Err(RuleError::invalid(
            field,
            format!("{value:?} is not an ISO 3166-1 alpha-2 code such as HN or PE"),
        ))
    }
}

fn commodity(field: &str, value: &str) -> Result<(), RuleError> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b' ');
    if ok {
        Ok(())
    } else {
        Err(RuleError::invalid(field, format!("{value:?} must be 1 to 64 lower-case letters, digits, spaces or '-', such as \"coffee\" or \"green coffee\"")))
    }
}

fn unit(field: &str, unit: i32) -> Result<(), RuleError> {
    match proto::Unit::try_from(unit) {
        Ok(proto::Unit::Unspecified) | Err(_) => Err(RuleError::invalid(
            field,
            "unit must be gram, millilitre or piece",
        )),
        Ok(_) => Ok(()),
    }
}

fn quantity(field: &str, q: &Option<proto::Quantity>) -> Result<proto::Quantity, RuleError> {
    let q = (*q).ok_or_else(|| RuleError::invalid(field, "is missing"))?;
    if q.amount == 0 {
        return Err(RuleError::invalid(field, "must be more than zero"));
    }
    unit(field, q.unit)?;
    Ok(q)
}

fn price(field: &str, p: &Option<proto::Price>, goods_unit: i32) -> Result<(), RuleError> {
    let Some(p) = p else {
        return Err(RuleError::invalid(field, "is missing"));
    };
    check_currency(&p.currency).map_err(|e| RuleError::invalid(field, e.to_string()))?;
    // The field's name is only spelled out when there is an error to report: this runs for
    // every statement.
    let per = match p.per {
        Some(per) if per.amount != 0 && unit(field, per.unit).is_ok() => per,
        _ => quantity(&format!("{field}.per"), &p.per)?,
    };
    if per.unit != goods_unit {
        return Err(RuleError::invalid(
            field,
            "must be per the same unit as the goods",
        ));
    }
    Ok(())
}

fn public_key(field: &str, bytes: &[u8]) -> Result<PublicKey, RuleError> {
    let key = PublicKey::from_bytes(bytes).map_err(|e| RuleError::invalid(field, e.to_string()))?;
    key.verifying_key()
        .map_err(|e| RuleError::invalid(field, e.to_string()))?;
    Ok(key)
}

fn statement_id(field: &str, bytes: &[u8]) -> Result<StatementId, RuleError> {
    StatementId::from_bytes(bytes).map_err(|e| RuleError::invalid(field, e.to_string()))
}

/// The entry holding `id`, if it is before entry `before`: the rules judge each entry by the
/// log before it, even when an index already reaches further (a replay after a crash).
fn logged_before(
    state: &dyn StateRead,
    id: &StatementId,
    before: u64,
) -> Result<Option<u64>, RuleError> {
    Ok(statement_index(state, id)?.filter(|&i| i < before))
}

fn known_statement(
    state: &dyn StateRead,
    what: &'static str,
    id: &StatementId,
    before: u64,
) -> Result<u64, RuleError> {
    logged_before(state, id, before)?.ok_or_else(|| RuleError::Unknown {
        what,
        id: id.to_string(),
    })
}

fn role_name(role: proto::Role) -> &'static str {
    match role {
        proto::Role::Producer => "producer",
        proto::Role::Cooperative => "cooperative",
        proto::Role::Trader => "trader",
        proto::Role::Processor => "processor",
        proto::Role::Retailer => "retailer",
        proto::Role::Certifier => "certifier",
        proto::Role::Monitor => "monitor",
        proto::Role::Unspecified => "unspecified",
    }
}

impl Rule<'_, '_> {
    fn issuer(&self) -> PublicKey {
        self.statement.issuer
    }

    /// The identity behind a key that may sign now.
    fn active_identity(&self, key: &PublicKey) -> Result<PublicKey, RuleError> {
        let record =
            key_record(&*self.state, key)?.ok_or(RuleError::UndeclaredKey { key: *key })?;
        if let Some(at) = record.retired_at {
            return Err(RuleError::RetiredKey { key: *key, at });
        }
        Ok(record.identity)
    }

    fn identity(&self, identity: &PublicKey) -> Result<IdentityRecord, RuleError> {
        get_json(&*self.state, &key(prefix::IDENTITY, &[identity.as_bytes()]))?
            .ok_or(RuleError::UndeclaredKey { key: *identity })
    }

    /// The issuer's identity, requiring one of `roles`.
    fn issuer_with_role(&self, roles: &[proto::Role]) -> Result<PublicKey, RuleError> {
        let identity = self.active_identity(&self.issuer())?;
        let record = self.identity(&identity)?;
        if !roles.is_empty() && !roles.iter().any(|r| record.roles.contains(&(*r as i32))) {
            return Err(RuleError::MissingRole {
                key: self.issuer(),
                role: roles.first().map(|r| role_name(*r)).unwrap_or("?"),
            });
        }
        Ok(identity)
    }

    /// Distinct envelope signers whose identity is among `members` (listed by key; a member
    /// who rotated counts with its current key).
    fn count_members(&self, members: &[PublicKey]) -> Result<usize, RuleError> {
        let mut member_identities = Vec::new();
        for m in members {
            let id = key_record(&*self.state, m)?.map_or(*m, |r| r.identity);
            member_identities.push((m, id));
        }
        let mut counted: Vec<PublicKey> = Vec::new();
        for signer in self.envelope.signers() {
            let record = key_record(&*self.state, &signer)?;
            let signer_identity = match &record {
                Some(r) if r.retired_at.is_some() => continue,
                Some(r) => r.identity,
                None => signer,
            };
            let is_member = member_identities
                .iter()
                .any(|(m, id)| **m == signer || *id == signer_identity);
            if is_member && !counted.contains(&signer_identity) {
                counted.push(signer_identity);
            }
        }
        Ok(counted.len())
    }

    fn note(&mut self, identity: &PublicKey) {
        self.state.put(
            key(
                prefix::BY_PARTICIPANT,
                &[identity.as_bytes(), &self.at.index.to_be_bytes()],
            ),
            Vec::new(),
        );
    }

    fn declaration(&mut self, b: &proto::ParticipantDeclaration) -> Result<(), RuleError> {
        let issuer = self.issuer();
        if let Some(record) = key_record(&*self.state, &issuer)? {
            return Err(RuleError::KeyInUse {
                key: issuer,
                at: record.since,
            });
        }
        text("name", &b.name, true)?;
        text("location", &b.location, false)?;
        country("country", &b.country)?;
        if b.roles.is_empty() {
            return Err(RuleError::invalid("roles", "name at least one role"));
        }
        for r in &b.roles {
            match proto::Role::try_from(*r) {
                Ok(proto::Role::Unspecified) | Err(_) => {
                    return Err(RuleError::invalid("roles", format!("{r} is not a role")))
                }
                Ok(_) => {}
            }
        }
        if proto::OrganisationType::try_from(b.organisation_type).is_err() {
            return Err(RuleError::invalid(
                "organisation_type",
                "is not an organisation type",
            ));
        }
        if b.guardians.len() > MAX_GUARDIANS {
            return Err(RuleError::invalid(
                "guardians",
                format!("at most {MAX_GUARDIANS}"),
            ));
        }
        let mut guardians: Vec<PublicKey> = Vec::new();
        for (i, g) in b.guardians.iter().enumerate() {
            let g = public_key(&format!("guardians[{i}]"), g)?;
            if g == issuer || guardians.contains(&g) {
                return Err(RuleError::invalid(
                    format!("guardians[{i}]"),
                    "each guardian must be another, distinct key",
                ));
            }
            guardians.push(g);
        }
        let k = b.guardian_threshold as usize;
        if (guardians.is_empty() && k != 0)
            || (!guardians.is_empty() && (k == 0 || k > guardians.len()))
        {
            return Err(RuleError::invalid(
                "guardian_threshold",
                format!("is {k} with {} guardians; it must be between 1 and the number of guardians (0 without guardians)", guardians.len()),
            ));
        }
        put_json(
            self.state,
            key(prefix::KEY, &[issuer.as_bytes()]),
            &KeyRecord {
                identity: issuer,
                since: self.at.index,
                retired_at: None,
            },
        );
        let record = IdentityRecord {
            name: b.name.clone(),
            declared_at: self.at.index,
            current_key: issuer,
            roles: b.roles.clone(),
            organisation_type: b.organisation_type,
            guardians,
            guardian_threshold: b.guardian_threshold,
        };
        put_json(
            self.state,
            key(prefix::IDENTITY, &[issuer.as_bytes()]),
            &record,
        );
        self.note(&issuer);
        Ok(())
    }

    fn rotation(&mut self, b: &proto::KeyRotation) -> Result<(), RuleError> {
        let old = self.issuer();
        let identity = self.active_identity(&old)?;
        let mut record = self.identity(&identity)?;
        let new_key = public_key("new_key", &b.new_key)?;
        if let Some(r) = key_record(&*self.state, &new_key)? {
            return Err(RuleError::KeyInUse {
                key: new_key,
                at: r.since,
            });
        }
        if !self.envelope.is_signed_by(&new_key) {
            return Err(RuleError::MissingSignature {
                who: "the new key".into(),
                key: new_key,
            });
        }
        if b.recovery {
            let need = record.guardian_threshold as usize;
            if need == 0 {
                return Err(RuleError::Conflict(format!(
                    "participant {identity} named no guardians, so its key cannot be recovered; only the old key can rotate it"
                )));
            }
            let have = self.count_members(&record.guardians)?;
            if have < need {
                return Err(RuleError::QuorumNotMet {
                    what: "key recovery".into(),
                    among: "the participant's guardians".into(),
                    have,
                    need,
                });
            }
        } else if !self.envelope.is_signed_by(&old) {
            return Err(RuleError::MissingSignature {
                who: "the old key".into(),
                key: old,
            });
        }
        let since = key_record(&*self.state, &old)?.map_or(0, |r| r.since);
        put_json(
            self.state,
            key(prefix::KEY, &[old.as_bytes()]),
            &KeyRecord {
                identity,
                since,
                retired_at: Some(self.at.index),
            },
        );
        put_json(
            self.state,
            key(prefix::KEY, &[new_key.as_bytes()]),
            &KeyRecord {
                identity,
                since: self.at.index,
                retired_at: None,
            },
        );
        record.current_key = new_key;
        put_json(
            self.state,
            key(prefix::IDENTITY, &[identity.as_bytes()]),
            &record,
        );
        self.state.put(
            key(
                prefix::KEY_HISTORY,
                &[identity.as_bytes(), &self.at.index.to_be_bytes()],
            ),
            Vec::new(),
        );
        self.note(&identity);
        Ok(())
    }

    fn certification(&mut self, b: &proto::Certification) -> Result<(), RuleError> {
        text("scheme", &b.scheme, true)?;
        text("certificate_id", &b.certificate_id, false)?;
        if b.commodities.is_empty() && b.roles.is_empty() {
            return Err(RuleError::invalid(
                "scope",
                "name at least one commodity or role",
            ));
        }
        for (i, c) in b.commodities.iter().enumerate() {
            commodity(&format!("commodities[{i}]"), c)?;
        }
        for r in &b.roles {
            if matches!(
                proto::Role::try_from(*r),
                Ok(proto::Role::Unspecified) | Err(_)
            ) {
                return Err(RuleError::invalid("roles", format!("{r} is not a role")));
            }
        }
        if b.valid_from_ms >= b.valid_until_ms {
            return Err(RuleError::invalid(
                "valid_until_ms",
                "must be after valid_from_ms",
            ));
        }
        let subject_key = public_key("subject", &b.subject)?;
        let subject = self.active_identity(&subject_key)?;
        let (issuer, participatory) = match proto::CertificationKind::try_from(b.kind) {
            Ok(proto::CertificationKind::ThirdParty) => {
                if !b.network.is_empty() {
                    return Err(RuleError::invalid(
                        "network",
                        "only a participatory certification names a network",
                    ));
                }
                (self.issuer_with_role(&[proto::Role::Certifier])?, false)
            }
            Ok(proto::CertificationKind::Participatory) => {
                self.active_identity(&self.issuer())?;
                let network_key = public_key("network", &b.network)?;
                (
                    self.check_network_quorum(&network_key, "participatory certification")?,
                    true,
                )
            }
            _ => {
                return Err(RuleError::invalid(
                    "kind",
                    "must be third-party or participatory",
                ))
            }
        };
        let record = CertificationRecord {
            issuer,
            participatory,
            subject,
            status: CertificationStatus::Active,
        };
        put_json(
            self.state,
            key(prefix::CERTIFICATION, &[self.statement.id.as_bytes()]),
            &record,
        );
        self.state.put(
            key(
                prefix::BY_SUBJECT,
                &[subject.as_bytes(), &self.at.index.to_be_bytes()],
            ),
            Vec::new(),
        );
        self.note(&subject);
        self.note(&issuer);
        Ok(())
    }

    /// A PGS network acts when at least its quorum of distinct members sign. Returns the
    /// network's identity.
    fn check_network_quorum(
        &self,
        network_key: &PublicKey,
        what: &str,
    ) -> Result<PublicKey, RuleError> {
        let network = self.active_identity(network_key)?;
        let record = self.identity(&network)?;
        // Without this, anyone who names a few keys of its own as guardians could certify
        // itself "by peer quorum".
        if record.organisation_type != proto::OrganisationType::ParticipatoryGuaranteeSystem as i32
        {
            return Err(RuleError::invalid(
                "network",
                format!("{network} is not declared as a participatory guarantee system"),
            ));
        }
        let need = record.guardian_threshold as usize;
        if need == 0 {
            return Err(RuleError::invalid(
                "network",
                format!(
                    "{network} declared no members (guardians) and quorum, so it cannot certify"
                ),
            ));
        }
        let have = self.count_members(&record.guardians)?;
        if have < need {
            return Err(RuleError::QuorumNotMet {
                what: what.into(),
                among: format!("the members of {}", record.name),
                have,
                need,
            });
        }
        Ok(network)
    }

    fn revocation(&mut self, b: &proto::Revocation) -> Result<(), RuleError> {
        text("reason", &b.reason, true)?;
        let cert_id = statement_id("certification", &b.certification)?;
        let cert_key = key(prefix::CERTIFICATION, &[cert_id.as_bytes()]);
        let mut cert: CertificationRecord =
            get_json(&*self.state, &cert_key)?.ok_or(RuleError::Unknown {
                what: "certification",
                id: cert_id.to_string(),
            })?;
        // Like every other statement, a revocation may not come from a retired key, even
        // when a peer quorum co-signs it.
        let issuer = self.active_identity(&self.issuer())?;
        if cert.participatory {
            let network = self.identity(&cert.issuer)?;
            self.check_network_quorum(
                &network.current_key,
                "revocation of a participatory certification",
            )?;
        } else {
            if issuer != cert.issuer {
                return Err(RuleError::MissingSignature {
                    who: "the certifier who issued it".into(),
                    key: cert.issuer,
                });
            }
        }
        let next = match (proto::RevocationKind::try_from(b.kind), cert.status) {
            (_, CertificationStatus::Revoked) => {
                return Err(RuleError::Conflict(format!(
                    "certification {cert_id} is already revoked"
                )))
            }
            (Ok(proto::RevocationKind::Revoked), _) => CertificationStatus::Revoked,
            (Ok(proto::RevocationKind::Suspended), CertificationStatus::Active) => {
                CertificationStatus::Suspended
            }
            (Ok(proto::RevocationKind::Suspended), _) => {
                return Err(RuleError::Conflict(format!(
                    "certification {cert_id} is already suspended"
                )))
            }
            (Ok(proto::RevocationKind::Reinstated), CertificationStatus::Suspended) => {
                CertificationStatus::Active
            }
            (Ok(proto::RevocationKind::Reinstated), _) => {
                return Err(RuleError::Conflict(format!(
                    "certification {cert_id} is not suspended"
                )))
            }
            _ => {
                return Err(RuleError::invalid(
                    "kind",
                    "must be revoked, suspended or reinstated",
                ))
            }
        };
        cert.status = next;
        put_json(self.state, cert_key, &cert);
        self.state.put(
            key(
                prefix::BY_CERTIFICATION,
                &[cert_id.as_bytes(), &self.at.index.to_be_bytes()],
            ),
            Vec::new(),
        );
        let subject = cert.subject;
        self.note(&subject);
        Ok(())
    }

    fn harvest(&mut self, b: &proto::Harvest) -> Result<(), RuleError> {
        let holder = self.issuer_with_role(&[proto::Role::Producer, proto::Role::Cooperative])?;
        commodity("commodity", &b.commodity)?;
        let q = quantity("quantity", &b.quantity)?;
        if b.harvested_from_ms > b.harvested_until_ms {
            return Err(RuleError::invalid(
                "harvested_until_ms",
                "must not be before harvested_from_ms",
            ));
        }
        country("country", &b.country)?;
        text("region", &b.region, false)?;
        text("lot_code", &b.lot_code, false)?;
        price("farmgate_price", &b.farmgate_price, q.unit)?;
        if b.premium.is_some() {
            price("premium", &b.premium, q.unit)?;
        }
        let lot = LotId {
            statement: self.statement.id,
            output: 0,
        };
        self.create_lot(lot, holder, &b.commodity, &q);
        self.note(&holder);
        Ok(())
    }

    fn create_lot(&mut self, lot: LotId, holder: PublicKey, commodity: &str, q: &proto::Quantity) {
        let record = LotRecord {
            holder,
            commodity: commodity.to_owned(),
            unit: q.unit,
            quantity: q.amount,
            remaining: q.amount,
            created_at: self.at.index,
        };
        put_json(self.state, key(prefix::LOT, &[&lot.bytes()]), &record);
    }

    /// Checks that the issuer holds every input lot and that none is overdrawn; returns the
    /// lots with their new balances, the total taken, and the common commodity and unit if
    /// every input shares them.
    fn consume(
        &self,
        inputs: &[proto::LotInput],
        holder: &PublicKey,
    ) -> Result<Consumption, RuleError> {
        if inputs.is_empty() {
            return Err(RuleError::invalid("inputs", "name at least one lot"));
        }
        if inputs.len() > MAX_LOTS_PER_STATEMENT {
            return Err(RuleError::invalid(
                "inputs",
                format!("at most {MAX_LOTS_PER_STATEMENT} lots"),
            ));
        }
        let mut lots: BTreeMap<LotId, LotRecord> = BTreeMap::new();
        let mut total: u64 = 0;
        let mut common: Option<(String, i32)> = None;
        let mut same = true;
        for (i, input) in inputs.iter().enumerate() {
            let field = format!("inputs[{i}]");
            let lot_ref = input
                .lot
                .as_ref()
                .ok_or_else(|| RuleError::invalid(&field, "names no lot"))?;
            let lot =
                LotId::try_from(lot_ref).map_err(|e| RuleError::invalid(&field, e.to_string()))?;
            if input.amount == 0 {
                return Err(RuleError::invalid(&field, "amount must be more than zero"));
            }
            if lots.contains_key(&lot) {
                return Err(RuleError::invalid(
                    &field,
                    format!("lot {lot} is named twice"),
                ));
            }
            let record: LotRecord = get_json(&*self.state, &key(prefix::LOT, &[&lot.bytes()]))?
                .ok_or(RuleError::Unknown {
                    what: "lot",
                    id: lot.to_string(),
                })?;
            if &record.holder != holder {
                return Err(RuleError::NotHolder {
                    lot,
                    holder: record.holder,
                    issuer: self.issuer(),
                });
            }
            if input.amount > record.remaining {
                return Err(RuleError::LotOverdrawn {
                    lot,
                    left: DisplayQuantity(record.remaining, record.unit).to_string(),
                    asked: DisplayQuantity(input.amount, record.unit).to_string(),
                });
            }
            total = total.checked_add(input.amount).ok_or_else(|| {
                RuleError::invalid("inputs", "the amounts add up to more than 2^64")
            })?;
            match &common {
                None => common = Some((record.commodity.clone(), record.unit)),
                Some((c, u)) if *c != record.commodity || *u != record.unit => same = false,
                Some(_) => {}
            }
            let mut updated = record;
            updated.remaining -= input.amount;
            lots.insert(lot, updated);
        }
        Ok(Consumption {
            lots,
            total,
            common: if same { common } else { None },
        })
    }

    fn write_consumption(&mut self, consumption: &Consumption) {
        for (lot, record) in &consumption.lots {
            put_json(self.state, key(prefix::LOT, &[&lot.bytes()]), record);
            self.state.put(
                key(
                    prefix::BY_LOT,
                    &[&lot.bytes(), &self.at.index.to_be_bytes()],
                ),
                Vec::new(),
            );
        }
    }

    fn transfer(&mut self, b: &proto::Transfer) -> Result<(), RuleError> {
        let holder = self.active_identity(&self.issuer())?;
        let recipient_key = public_key("recipient", &b.recipient)?;
        let recipient = self.active_identity(&recipient_key)?;
        if recipient == holder {
            return Err(RuleError::invalid(
                "recipient",
                "a transfer goes to another participant",
            ));
        }
        text("document_reference", &b.document_reference, false)?;
        let consumption = self.consume(&b.inputs, &holder)?;
        let (commodity, unit) = consumption.common.clone().ok_or_else(|| {
            RuleError::invalid(
                "inputs",
                "a transfer ships one commodity in one unit; transform blends first",
            )
        })?;
        if b.price.is_some() {
            price("price", &b.price, unit)?;
        }
        self.write_consumption(&consumption);
        let lot = LotId {
            statement: self.statement.id,
            output: 0,
        };
        self.create_lot(
            lot,
            recipient,
            &commodity,
            &proto::Quantity {
                amount: consumption.total,
                unit,
            },
        );
        put_json(
            self.state,
            key(prefix::TRANSFER, &[self.statement.id.as_bytes()]),
            &TransferRecord {
                recipient,
                amount: consumption.total,
                unit,
                receipt_at: None,
            },
        );
        self.note(&holder);
        self.note(&recipient);
        Ok(())
    }

    fn receipt(&mut self, b: &proto::Receipt) -> Result<(), RuleError> {
        let issuer = self.active_identity(&self.issuer())?;
        let transfer_id = statement_id("transfer", &b.transfer)?;
        let transfer_key = key(prefix::TRANSFER, &[transfer_id.as_bytes()]);
        let mut transfer: TransferRecord =
            get_json(&*self.state, &transfer_key)?.ok_or(RuleError::Unknown {
                what: "transfer",
                id: transfer_id.to_string(),
            })?;
        if transfer.recipient != issuer {
            return Err(RuleError::MissingSignature {
                who: "the transfer's recipient".into(),
                key: transfer.recipient,
            });
        }
        if let Some(at) = transfer.receipt_at {
            return Err(RuleError::Conflict(format!(
                "transfer {transfer_id} was already answered at entry {at}"
            )));
        }
        match proto::ReceiptOutcome::try_from(b.outcome) {
            Ok(proto::ReceiptOutcome::Confirmed) if b.amount_received != transfer.amount => {
                return Err(RuleError::invalid(
                    "amount_received",
                    format!(
                        "a confirmation must state the full {} shipped ({} stated); dispute the transfer otherwise",
                        DisplayQuantity(transfer.amount, transfer.unit),
                        DisplayQuantity(b.amount_received, transfer.unit)
                    ),
                ))
            }
            Ok(proto::ReceiptOutcome::Confirmed | proto::ReceiptOutcome::Disputed) => {}
            _ => return Err(RuleError::invalid("outcome", "must be confirmed or disputed")),
        }
        transfer.receipt_at = Some(self.at.index);
        put_json(self.state, transfer_key, &transfer);
        self.state.put(
            key(
                prefix::BY_TRANSFER,
                &[transfer_id.as_bytes(), &self.at.index.to_be_bytes()],
            ),
            Vec::new(),
        );
        self.note(&issuer);
        Ok(())
    }

    fn transformation(&mut self, b: &proto::Transformation) -> Result<(), RuleError> {
        let holder = self.active_identity(&self.issuer())?;
        text("process", &b.process, true)?;
        let consumption = self.consume(&b.inputs, &holder)?;
        if b.outputs.is_empty() || b.outputs.len() > MAX_LOTS_PER_STATEMENT {
            return Err(RuleError::invalid(
                "outputs",
                format!("name 1 to {MAX_LOTS_PER_STATEMENT} output lots"),
            ));
        }
        let mut outputs = Vec::with_capacity(b.outputs.len());
        for (i, o) in b.outputs.iter().enumerate() {
            commodity(&format!("outputs[{i}].commodity"), &o.commodity)?;
            let q = quantity(&format!("outputs[{i}].quantity"), &o.quantity)?;
            text(&format!("outputs[{i}].lot_code"), &o.lot_code, false)?;
            outputs.push((o.commodity.clone(), q));
        }
        self.write_consumption(&consumption);
        for (i, (c, q)) in outputs.iter().enumerate() {
            let lot = LotId {
                statement: self.statement.id,
                output: i as u32,
            };
            self.create_lot(lot, holder, c, q);
        }
        self.note(&holder);
        Ok(())
    }

    fn binding(&mut self, b: &proto::ProductBinding) -> Result<(), RuleError> {
        let holder = self.issuer_with_role(&[proto::Role::Retailer, proto::Role::Processor])?;
        let gtin =
            gs1::normalise_gtin(&b.gtin).map_err(|e| RuleError::invalid("gtin", e.to_string()))?;
        if gtin != b.gtin {
            return Err(RuleError::invalid(
                "gtin",
                format!("write it as the 14 digits {gtin}"),
            ));
        }
        gs1::check_text("batch", &b.batch)
            .map_err(|e| RuleError::invalid("batch", e.to_string()))?;
        if !b.serial.is_empty() {
            gs1::check_text("serial", &b.serial)
                .map_err(|e| RuleError::invalid("serial", e.to_string()))?;
        }
        text("product_name", &b.product_name, true)?;
        let product = product_key(&gtin, &b.batch, &b.serial);
        if let Some(v) = self.state.get(&product)? {
            let at = v.as_slice().try_into().map(u64::from_be_bytes).unwrap_or(0);
            return Err(RuleError::Conflict(format!(
                "GTIN {gtin} batch {} is already bound at entry {at}; use a new batch number",
                b.batch
            )));
        }
        let consumption = self.consume(&b.inputs, &holder)?;
        self.write_consumption(&consumption);
        self.state
            .put(product, self.at.index.to_be_bytes().to_vec());
        self.note(&holder);
        Ok(())
    }

    fn dispute(&mut self, b: &proto::Dispute) -> Result<(), RuleError> {
        let issuer = self.active_identity(&self.issuer())?;
        text("reason", &b.reason, true)?;
        let entry = statement_id("entry", &b.entry)?;
        known_statement(&*self.state, "disputed statement", &entry, self.at.index)?;
        self.state.put(
            key(
                prefix::BY_DISPUTED,
                &[entry.as_bytes(), &self.at.index.to_be_bytes()],
            ),
            Vec::new(),
        );
        self.note(&issuer);
        Ok(())
    }
}

struct Consumption {
    lots: BTreeMap<LotId, LotRecord>,
    total: u64,
    common: Option<(String, i32)>,
}
