//! Statements: decoding an envelope's payload into a checked `Statement` with its issuer,
//! and encoding statements for signing. SPEC.md section "Statement".

use prost::Message;

use crate::envelope::{Envelope, KnownKeys, StatementId};
use crate::keys::{PublicKey, PublicKeyError};
use crate::proto;

/// Which body a statement carries, named as in SPEC.md.
pub fn body_kind(body: &proto::statement::Body) -> &'static str {
    use proto::statement::Body;
    match body {
        Body::ParticipantDeclaration(_) => "participant declaration",
        Body::KeyRotation(_) => "key rotation",
        Body::Certification(_) => "certification",
        Body::Revocation(_) => "revocation",
        Body::Harvest(_) => "harvest",
        Body::Transfer(_) => "transfer",
        Body::Receipt(_) => "receipt",
        Body::Transformation(_) => "transformation",
        Body::ProductBinding(_) => "product binding",
        Body::Dispute(_) => "dispute",
    }
}

/// What is wrong with a statement's payload.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StatementError {
    #[error("the payload is not a protobuf fairtrail.v1.Statement: {0}")]
    Decode(String),
    #[error("the statement has no body: set exactly one of its body fields")]
    MissingBody,
    #[error("issuer: {0}")]
    BadIssuer(#[source] PublicKeyError),
    #[error("the issuer {issuer} did not sign the envelope")]
    IssuerDidNotSign { issuer: PublicKey },
}

/// A statement decoded from a structurally checked envelope, with its id and issuer.
#[derive(Clone, Debug)]
pub struct Statement {
    pub id: StatementId,
    pub issuer: PublicKey,
    pub issued_at_ms: u64,
    pub body: proto::statement::Body,
    pub proto: proto::Statement,
}

impl Statement {
    /// Decodes the payload of `envelope`. Checks that the issuer is a valid key and that it
    /// signed the envelope; whether the signatures verify is the envelope's business.
    pub fn decode(envelope: &Envelope) -> Result<Self, StatementError> {
        Self::decode_with(envelope, &mut KnownKeys::default())
    }

    /// Decodes as [`Statement::decode`] does, skipping the curve check of an issuer key
    /// `known` has already seen pass (the sequencer decodes every submission).
    pub fn decode_with(envelope: &Envelope, known: &mut KnownKeys) -> Result<Self, StatementError> {
        Self::decode_payload_with(envelope.payload(), envelope.id(), known).and_then(|s| {
            // A recovery is signed by guardians because the issuer's key is lost; the rules
            // check the guardians' quorum instead.
            let recovery = matches!(&s.body, proto::statement::Body::KeyRotation(r) if r.recovery);
            if recovery || envelope.is_signed_by(&s.issuer) {
                Ok(s)
            } else {
                Err(StatementError::IssuerDidNotSign { issuer: s.issuer })
            }
        })
    }

    /// Decodes a payload without looking at who signed it.
    pub fn decode_payload(payload: &[u8], id: StatementId) -> Result<Self, StatementError> {
        Self::decode_payload_with(payload, id, &mut KnownKeys::default())
    }

    fn decode_payload_with(
        payload: &[u8],
        id: StatementId,
        known: &mut KnownKeys,
    ) -> Result<Self, StatementError> {
        let proto =
            proto::Statement::decode(payload).map_err(|e| StatementError::Decode(e.to_string()))?;
        let issuer = PublicKey::from_bytes(&proto.issuer).map_err(StatementError::BadIssuer)?;
        known.check(&issuer).map_err(StatementError::BadIssuer)?;
        let body = proto.body.clone().ok_or(StatementError::MissingBody)?;
        Ok(Statement {
            id,
            issuer,
            issued_at_ms: proto.issued_at_ms,
            body,
            proto,
        })
    }

    pub fn kind(&self) -> &'static str {
        body_kind(&self.body)
    }
}

/// Encodes a statement into the bytes that are signed and logged.
pub fn encode(statement: &proto::Statement) -> Vec<u8> {
    statement.encode_to_vec()
}

/// Milliseconds since the Unix epoch, now; 0 if the clock is before 1970.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::sign;
    use crate::keys::generate_signing_key;

    fn declaration(issuer: &PublicKey) -> proto::Statement {
        proto::Statement {
            issuer: issuer.as_bytes().to_vec(),
            issued_at_ms: 1_700_000_000_000,
            body: Some(proto::statement::Body::ParticipantDeclaration(
                proto::ParticipantDeclaration {
                    name: "Cooperativa Cafetalera".into(),
                    country: "HN".into(),
                    ..Default::default()
                },
            )),
            ..Default::default()
        }
    }

    #[test]
    fn decodes_a_signed_declaration() {
        let key = generate_signing_key();
        let issuer = PublicKey::from(&key.verifying_key());
        let wire = sign(encode(&declaration(&issuer)), &[&key]);
        let envelope = Envelope::try_from(wire).unwrap();
        let statement = Statement::decode(&envelope).unwrap();
        assert_eq!(statement.issuer, issuer);
        assert_eq!(statement.kind(), "participant declaration");
        assert_eq!(statement.id, envelope.id());
    }

    #[test]
    fn refuses_a_statement_its_issuer_did_not_sign() {
        let key = generate_signing_key();
        let other = generate_signing_key();
        let issuer = PublicKey::from(&key.verifying_key());
        let envelope = Envelope::try_from(sign(encode(&declaration(&issuer)), &[&other])).unwrap();
        assert_eq!(
            Statement::decode(&envelope).unwrap_err(),
            StatementError::IssuerDidNotSign { issuer }
        );
    }

    #[test]
    fn refuses_garbage_and_missing_bodies() {
        let key = generate_signing_key();
        let envelope = Envelope::try_from(sign(vec![0xff, 0xff, 0xff], &[&key])).unwrap();
        assert!(matches!(
            Statement::decode(&envelope),
            Err(StatementError::Decode(_))
        ));
        let mut s = declaration(&PublicKey::from(&key.verifying_key()));
        s.body = None;
        let envelope = Envelope::try_from(sign(encode(&s), &[&key])).unwrap();
        assert_eq!(
            Statement::decode(&envelope).unwrap_err(),
            StatementError::MissingBody
        );
    }
}
