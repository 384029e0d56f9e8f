//! Signed statements for the tests: declarations and harvests, with any signers.

use ed25519_dalek::SigningKey;
use fairtrail_client::envelope;
use fairtrail_client::proto;
use fairtrail_client::statement;

/// A participant declaration (as a producer) by `key`, signed by it. A key declares itself
/// once: every declaration needs a key of its own.
pub fn declaration(key: &SigningKey, name: &str) -> proto::Envelope {
    let body = proto::statement::Body::ParticipantDeclaration(proto::ParticipantDeclaration {
        name: name.to_owned(),
        roles: vec![proto::Role::Producer as i32],
        country: "HN".into(),
        ..Default::default()
    });
    signed(key, body, &[key])
}

/// A harvest of coffee by `key` (a declared producer); distinct lot codes make distinct
/// statements.
pub fn harvest(key: &SigningKey, lot_code: &str) -> proto::Envelope {
    harvest_signed_by(key, lot_code, &[key])
}

/// A harvest by `key`, signed by `signers`.
pub fn harvest_signed_by(
    key: &SigningKey,
    lot_code: &str,
    signers: &[&SigningKey],
) -> proto::Envelope {
    let grams = |amount| proto::Quantity {
        amount,
        unit: proto::Unit::Gram as i32,
    };
    let body = proto::statement::Body::Harvest(proto::Harvest {
        commodity: "coffee".into(),
        quantity: Some(grams(69_000)),
        harvested_from_ms: 1_690_000_000_000,
        harvested_until_ms: 1_695_000_000_000,
        country: "HN".into(),
        region: "Marcala, La Paz".into(),
        farmgate_price: Some(proto::Price {
            currency: "USD".into(),
            minor_units: 450,
            per: Some(grams(1000)),
        }),
        premium: None,
        farmer_count: 12,
        lot_code: lot_code.to_owned(),
    });
    signed(key, body, signers)
}

fn signed(
    key: &SigningKey,
    body: proto::statement::Body,
    signers: &[&SigningKey],
) -> proto::Envelope {
    let statement = proto::Statement {
        issuer: key.verifying_key().to_bytes().to_vec(),
        issued_at_ms: 1_700_000_000_000,
        references: Vec::new(),
        remark: String::new(),
        body: Some(body),
    };
    envelope::sign(statement::encode(&statement), signers)
}
