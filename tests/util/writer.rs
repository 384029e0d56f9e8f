//! Writing statements to a real node: signing with deterministic keys, submitting, and
//! checking each receipt offline with the log's key; the statement bodies the tests write;
//! and times relative to now (the node's integration time is the wall clock).

use std::time::Duration;

use ed25519_dalek::SigningKey;
use fairtrail_client::envelope::{self, StatementId};
use fairtrail_client::keys::PublicKey;
use fairtrail_client::note::NoteVerifier;
use fairtrail_client::proto::{self, statement::Body, OrganisationType as Org, Role};
use fairtrail_client::receipt::ReceiptJson;
use fairtrail_client::rpc::{NodeClient, RpcError};
use fairtrail_client::rules::LotId;
use fairtrail_client::statement::{encode, now_ms};
use fairtrail_client::units::{parse_price, parse_quantity};

use super::{TestNode, CALL_TIMEOUT};

pub const HOUR: i64 = 3_600_000;
pub const DAY: i64 = 24 * HOUR;

/// A deterministic key: every test's node is new, so the same keys serve every test.
pub fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

pub fn pk(key: &SigningKey) -> PublicKey {
    PublicKey::from(&key.verifying_key())
}

/// A public key's 32 bytes, as statements carry it.
pub fn bytes(key: &SigningKey) -> Vec<u8> {
    key.verifying_key().to_bytes().to_vec()
}

/// A statement the node logged, its receipt checked with the log's key.
#[derive(Clone, Copy, Debug)]
pub struct Logged {
    pub id: StatementId,
    pub index: u64,
    /// When the log integrated it: the time every check of the verifier uses.
    pub at: u64,
}

impl Logged {
    /// The lot this statement made at `output`.
    pub fn lot(&self, output: u32) -> LotId {
        LotId {
            statement: self.id,
            output,
        }
    }
}

/// Signs statements and submits them to one node, checking every receipt offline.
pub struct Writer {
    pub client: NodeClient,
    pub log_key: NoteVerifier,
}

impl Writer {
    pub async fn new(node: &TestNode) -> Writer {
        Writer {
            client: node.client().await,
            log_key: node.verifier().await,
        }
    }

    /// A statement by `issuer`, issued now, signed by `signers` (in that order).
    pub fn envelope(issuer: &PublicKey, body: Body, signers: &[&SigningKey]) -> proto::Envelope {
        let statement = proto::Statement {
            issuer: issuer.as_bytes().to_vec(),
            issued_at_ms: now_ms(),
            references: Vec::new(),
            remark: String::new(),
            body: Some(body),
        };
        envelope::sign(encode(&statement), signers)
    }

    /// Submits an envelope; the node's refusal comes back as its gRPC status.
    pub async fn submit(&mut self, wire: proto::Envelope) -> Result<Logged, tonic::Status> {
        let id = StatementId::of_payload(&wire.payload);
        let answer = match self.client.submit(wire).await {
            Ok(answer) => answer,
            Err(RpcError::Status { code, message }) => {
                return Err(tonic::Status::new(code, message))
            }
            Err(e) => panic!("cannot submit: {e}"),
        };
        assert!(!answer.existing, "statement {id} was already logged");
        let receipt = answer.receipt.expect("an answer carries a receipt");
        let verified = ReceiptJson::from(&receipt)
            .verify(&self.log_key)
            .unwrap_or_else(|e| panic!("the receipt for {id} does not verify: {e}"));
        assert_eq!(verified.statement_id, id, "a receipt for another statement");
        Ok(Logged {
            id,
            index: verified.index,
            at: verified.integrated_at_ms,
        })
    }

    /// Signs `body` as `issuer` (then `cosigners`) and submits it.
    pub async fn try_write(
        &mut self,
        issuer: &SigningKey,
        body: Body,
        cosigners: &[&SigningKey],
    ) -> Result<Logged, tonic::Status> {
        let signers: Vec<&SigningKey> = std::iter::once(issuer)
            .chain(cosigners.iter().copied())
            .collect();
        self.submit(Self::envelope(&pk(issuer), body, &signers))
            .await
    }

    /// As [`Writer::try_write`], for a statement the node must accept.
    pub async fn write(
        &mut self,
        issuer: &SigningKey,
        body: Body,
        cosigners: &[&SigningKey],
    ) -> Logged {
        let what = fairtrail_client::statement::body_kind(&body);
        self.try_write(issuer, body, cosigners)
            .await
            .unwrap_or_else(|s| panic!("the node refused a {what}: {s:?}"))
    }
}

/// An amount in base units: "12000kg" -> 12,000,000 (grams).
pub fn amount(text: &str) -> u64 {
    parse_quantity(text).expect("a test quantity").amount
}

pub fn take(lot: LotId, quantity: &str) -> proto::LotInput {
    proto::LotInput {
        lot: Some(lot.to_proto()),
        amount: amount(quantity),
    }
}

pub fn declaration(name: &str, roles: &[Role], org: Org, country: &str, location: &str) -> Body {
    Body::ParticipantDeclaration(proto::ParticipantDeclaration {
        name: name.into(),
        roles: roles.iter().map(|r| *r as i32).collect(),
        organisation_type: org as i32,
        country: country.into(),
        location: location.into(),
        guardians: Vec::new(),
        guardian_threshold: 0,
    })
}

pub fn transfer(inputs: Vec<proto::LotInput>, to: &SigningKey, price: &str, doc: &str) -> Body {
    Body::Transfer(proto::Transfer {
        inputs,
        recipient: bytes(to),
        price: Some(parse_price(price).expect("a test price")),
        document_reference: doc.into(),
    })
}

pub fn receipt(transfer: &Logged, quantity: &str) -> Body {
    Body::Receipt(proto::Receipt {
        transfer: transfer.id.as_bytes().to_vec(),
        outcome: proto::ReceiptOutcome::Confirmed as i32,
        amount_received: amount(quantity),
    })
}

/// A harvest of green coffee in Marcala over the last four months, with the Fairtrade
/// premium paid on top of `price`.
pub fn harvest(quantity: &str, price: &str, lot_code: &str) -> Body {
    let now = now_ms();
    Body::Harvest(proto::Harvest {
        commodity: "green coffee".into(),
        quantity: Some(parse_quantity(quantity).expect("a test quantity")),
        harvested_from_ms: from_now(now, -120 * DAY),
        harvested_until_ms: from_now(now, -30 * DAY),
        country: "HN".into(),
        region: "Marcala, La Paz".into(),
        farmgate_price: Some(parse_price(price).expect("a test price")),
        premium: Some(parse_price("USD 0.20/lb").expect("a test price")),
        farmer_count: 214,
        lot_code: lot_code.into(),
    })
}

pub fn rotation(new_key: &SigningKey, recovery: bool) -> Body {
    Body::KeyRotation(proto::KeyRotation {
        new_key: bytes(new_key),
        recovery,
    })
}

/// `offset` milliseconds after `now` (before it, when negative).
pub fn from_now(now: u64, offset: i64) -> u64 {
    now.checked_add_signed(offset).expect("a time after 1970")
}

/// Waits (briefly: the node's clock is this machine's) until the wall clock has passed `t`,
/// so that whatever is written next is integrated after it.
pub async fn wait_until_after(t: u64) {
    tokio::time::timeout(CALL_TIMEOUT, async {
        while now_ms() <= t {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .expect("the clock does not move");
}
