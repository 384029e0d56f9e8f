//! The bad-input matrix: one node holding a small, sound chain (a cooperative and its harvest,
//! an importer holding part of it, a PGS network with a quorum of 2, a retailer who bound a
//! product), then one table of bad inputs over gRPC and HTTP. Each gets the status code SPEC.md
//! and the error types document, with a message that says what is wrong; none appends to
//! the log (a replayed statement is answered `existing`, with its first entry); none is a
//! 500, a hang, INTERNAL or the log key's bytes. At the end the node still takes a valid statement, its lots are as they were, and the
//! consumer page still renders.
//!
//! # Layout
//! - [`Case`], [`Call`], [`Want`]: one row of the table, how it is sent, what must come back.
//! - [`cases`]: the table, by theme: transport and envelope, signatures, statement, ledger
//!   rules, replays, reads, HTTP.
//! - [`run`] and [`check`]: sending a row and judging the answer.

use std::net::SocketAddr;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use fairtrail_client::envelope::{self, cosign, PAYLOAD_TYPE};
use fairtrail_client::proto::ledger_service_client::LedgerServiceClient;
use fairtrail_client::proto::provenance_service_client::ProvenanceServiceClient;
use fairtrail_client::proto::submit_stream_response::Result as StreamResult;
use fairtrail_client::proto::{self, statement::Body, OrganisationType as Org, Role};
use fairtrail_client::rules::LotId;
use fairtrail_client::statement::{encode, now_ms};
use fairtrail_client::units::parse_price;
use prost::Message;
use tokio::time::timeout;
use tonic::transport::Channel;
use tonic::Code;

use crate::util::chain::{GTIN, PGS_SCHEME};
use crate::util::raw::{self, splice};
use crate::util::writer::{
    amount, bytes, declaration, from_now, harvest, key, receipt, take, transfer, Logged, Writer,
    DAY,
};
use crate::util::{channel, TestNode, CALL_TIMEOUT};

/// The node's `--max-message-bytes`: the smallest it allows, doubled.
const MAX_MESSAGE_BYTES: usize = 131_072;
/// The product the retailer binds (GTIN 09506000134352).
const BATCH: &str = "BI-2026-07";
const PRODUCT_NAME: &str = "Bad Input Blend 250 g";
/// The sequence number of the one request a stream case sends.
const STREAM_SEQUENCE: u64 = 7;
/// The largest number of messages a `GetEntries` answer may take in this test.
const MAX_MESSAGES: usize = 64;

/// The participants. `stranger` never declares itself.
struct Keys {
    coop: SigningKey,
    importer: SigningKey,
    retailer: SigningKey,
    pgs: SigningKey,
    peers: [SigningKey; 3],
    stranger: SigningKey,
}

impl Keys {
    fn new() -> Keys {
        Keys {
            coop: key(41),
            importer: key(42),
            retailer: key(43),
            pgs: key(44),
            peers: [key(45), key(46), key(47)],
            stranger: key(48),
        }
    }
}

/// What the node holds before the first case.
struct Sound {
    /// 12,000 kg of green coffee harvested by the cooperative; 6,000 kg are left.
    harvest: Logged,
    /// The harvest's envelope, to replay.
    harvest_envelope: proto::Envelope,
    /// Two harvests of 2^64 − 1 g each, to overflow a sum.
    big: [Logged; 2],
    /// 5,000 kg of the harvest shipped to the importer, not yet answered.
    to_importer: Logged,
    /// 1,000 kg shipped to the retailer, confirmed.
    to_retailer: Logged,
    /// Entries in the log.
    size: u64,
}

/// Writes the sound chain the cases are measured against.
async fn write_sound_chain(w: &mut Writer, k: &Keys) -> Sound {
    for (key, body) in participants(k) {
        w.write(key, body, &[]).await;
    }
    let mut network = declaration(
        "Red de Garantía Participativa del Sur",
        &[Role::Certifier],
        Org::ParticipatoryGuaranteeSystem,
        "PE",
        "Puno",
    );
    if let Body::ParticipantDeclaration(d) = &mut network {
        d.guardians = k.peers.iter().map(bytes).collect();
        d.guardian_threshold = 2;
    }
    w.write(&k.pgs, network, &[]).await;
    let certified = Body::Certification(pgs_certification(k, "RGP-1"));
    w.write(&k.peers[0], certified, &[&k.peers[1]]).await;

    let harvest_envelope = by(&k.coop, harvest("12000kg", "USD 1.95/lb", "OPA-2026-1"));
    let harvest = w
        .submit(harvest_envelope.clone())
        .await
        .expect("the harvest is logged");
    let mut big = Vec::new();
    for code in ["OPA-BIG-1", "OPA-BIG-2"] {
        let mut h = crop(code);
        h.quantity = Some(grams(u64::MAX));
        big.push(w.write(&k.coop, Body::Harvest(h), &[]).await);
    }
    let big: [Logged; 2] = big.try_into().expect("two big harvests");

    let shipped = transfer(
        vec![take(harvest.lot(0), "5000kg")],
        &k.importer,
        "USD 2.35/lb",
        "BL-OPA-1",
    );
    let to_importer = w.write(&k.coop, shipped, &[]).await;
    let shipped = transfer(
        vec![take(harvest.lot(0), "1000kg")],
        &k.retailer,
        "USD 2.40/lb",
        "BL-OPA-2",
    );
    let to_retailer = w.write(&k.coop, shipped, &[]).await;
    w.write(&k.retailer, receipt(&to_retailer, "1000kg"), &[])
        .await;
    let bound = w
        .write(&k.retailer, binding(GTIN, BATCH, &to_retailer), &[])
        .await;
    Sound {
        harvest,
        harvest_envelope,
        big,
        to_importer,
        to_retailer,
        size: bound.index + 1,
    }
}

/// The participants but the PGS network, in the order they declare themselves.
#[rustfmt::skip]
fn participants(k: &Keys) -> [(&SigningKey, Body); 6] {
    use Org::*;
    use Role::*;
    [
        (&k.coop, declaration("Cooperativa Cafetalera Opalaca", &[Cooperative, Producer], SmallholderAssociation, "HN", "Intibucá")),
        (&k.importer, declaration("Comercio Justo Importers", &[Trader], WorkerCooperative, "NL", "Rotterdam")),
        (&k.retailer, declaration("Corner Co-op Grocers", &[Retailer], WorkerCooperative, "GB", "Leeds")),
        (&k.peers[0], declaration("Finca Ocho Vientos", &[Producer], FamilyFarm, "PE", "Puno")),
        (&k.peers[1], declaration("Finca Huayna", &[Producer], FamilyFarm, "PE", "Puno")),
        (&k.peers[2], declaration("Finca Sandia", &[Producer], FamilyFarm, "PE", "Puno")),
    ]
}

/// One row of the matrix.
struct Case {
    name: String,
    call: Call,
    want: Want,
}

/// The table being built.
struct Table(Vec<Case>);

impl Table {
    fn add(&mut self, name: impl Into<String>, call: Call, want: Want) {
        self.0.push(Case {
            name: name.into(),
            call,
            want,
        });
    }
}

/// How a case reaches the node.
enum Call {
    /// `LedgerService/Submit` with this request.
    Submit(Option<proto::Envelope>),
    /// `LedgerService/Submit` whose request message is these bytes.
    SubmitBytes(Vec<u8>),
    /// One request on `LedgerService/SubmitStream`.
    Stream(Option<proto::Envelope>),
    /// One request message on `LedgerService/SubmitStream` that is these bytes.
    StreamBytes(Vec<u8>),
    GetEntry(proto::GetEntryRequest),
    GetEntries(proto::GetEntriesRequest),
    Inclusion(proto::GetInclusionProofRequest),
    Consistency(proto::GetConsistencyProofRequest),
    Provenance(proto::GetProvenanceRequest),
    Participant(proto::GetParticipantRequest),
    Lot(proto::GetLotRequest),
    /// A whole HTTP/1.1 request, byte for byte.
    Http(Vec<u8>),
}

/// What must come back.
enum Want {
    /// This gRPC code, with a message containing this text.
    Grpc(Code, &'static str),
    /// Accepted as already logged at this entry (`existing = true`), appending nothing.
    Existing(u64),
    /// One of these HTTP statuses, with this text in the answer.
    Http(&'static [u16], &'static str),
}

/// What came back.
enum Outcome {
    Status(tonic::Status),
    /// A submission's answer: `existing` and the entry's index.
    Submitted {
        existing: bool,
        index: u64,
    },
    /// Any other call that succeeded.
    Served,
    Http(raw::RawResponse),
}

impl std::fmt::Debug for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Status(s) => write!(f, "{:?}: {:?}", s.code(), s.message()),
            Outcome::Submitted { existing, index } => {
                write!(f, "accepted at entry {index} (existing: {existing})")
            }
            Outcome::Served => f.write_str("served"),
            Outcome::Http(r) => write!(f, "{r:?}"),
        }
    }
}

/// Where the cases go.
struct Target {
    channel: Channel,
    ledger: LedgerServiceClient<Channel>,
    provenance: ProvenanceServiceClient<Channel>,
    http: SocketAddr,
}

impl Target {
    async fn connect(node: &TestNode) -> Target {
        let channel = channel(&node.url()).await;
        Target {
            ledger: LedgerServiceClient::new(channel.clone()),
            provenance: ProvenanceServiceClient::new(channel.clone())
                .max_decoding_message_size(64 * 1024 * 1024),
            channel,
            http: node.http_addr(),
        }
    }

    /// The tree size of the latest checkpoint.
    async fn tree_size(&self) -> u64 {
        let answer = timeout(
            CALL_TIMEOUT,
            self.ledger
                .clone()
                .get_checkpoint(proto::GetCheckpointRequest {}),
        )
        .await
        .expect("GetCheckpoint answers in time")
        .expect("GetCheckpoint")
        .into_inner();
        answer
            .checkpoint
            .lines()
            .nth(1)
            .and_then(|l| l.parse().ok())
            .expect("a checkpoint's second line is its size")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_matrix() {
    let args = vec![
        "--max-message-bytes".to_owned(),
        MAX_MESSAGE_BYTES.to_string(),
    ];
    let node = TestNode::start_with_args(|_| {}, args).await;
    let keys = Keys::new();
    let mut w = Writer::new(&node).await;
    let sound = write_sound_chain(&mut w, &keys).await;
    let target = Target::connect(&node).await;
    assert_eq!(target.tree_size().await, sound.size);
    let pem = std::fs::read_to_string(node.data_dir().join("log-key.pem")).expect("the log key");
    let secret = pem.lines().nth(1).expect("the key file has a body line");

    let cases = cases(&keys, &sound);
    assert!(cases.len() >= 40, "only {} cases", cases.len());
    let mut names = std::collections::HashSet::new();
    for case in &cases {
        assert!(
            names.insert(case.name.as_str()),
            "two cases named {:?}",
            case.name
        );
    }

    let count = cases.len();
    let mut failures = Vec::new();
    let size = sound.size;
    for case in cases {
        let name = case.name;
        let outcome = timeout(CALL_TIMEOUT, run(&target, case.call)).await;
        let verdict = match &outcome {
            Ok(outcome) => check(outcome, &case.want, secret),
            Err(_) => Err(format!("no answer within {CALL_TIMEOUT:?}")),
        };
        if let Err(why) = verdict {
            failures.push(format!("{name}: {why}"));
        }
        let now = target.tree_size().await;
        if now != size {
            failures.push(format!("{name}: the tree grew from {size} to {now}"));
            break;
        }
    }
    eprintln!("{count} bad inputs sent");
    assert!(
        failures.is_empty(),
        "{} case(s) answered other than documented:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // The node keeps serving: nothing refused touched a lot, a valid statement is logged
    // next, and the consumer page renders.
    for (lot, left) in [
        (sound.harvest.lot(0), amount("6000kg")),
        (sound.to_importer.lot(0), amount("5000kg")),
        (sound.to_retailer.lot(0), amount("900kg")),
        (sound.big[0].lot(0), u64::MAX),
        (sound.big[1].lot(0), u64::MAX),
    ] {
        let answer = target
            .provenance
            .clone()
            .get_lot(proto::GetLotRequest {
                lot: Some(lot.to_proto()),
            })
            .await
            .expect("GetLot")
            .into_inner();
        assert_eq!(answer.remaining, left, "lot {lot}");
    }
    let after = w
        .write(
            &keys.coop,
            harvest("500kg", "USD 1.95/lb", "OPA-2026-2"),
            &[],
        )
        .await;
    assert_eq!(after.index, size, "the next statement takes the next entry");
    assert_eq!(target.tree_size().await, size + 1);
    let page = format!("/01/{GTIN}/10/{BATCH}");
    let r = raw::http(target.http, &get(&page))
        .await
        .expect("the page answers");
    assert_eq!(r.status, 200, "{r:?}");
    let r = raw::http(target.http, &get(&format!("{page}?format=json")))
        .await
        .expect("the JSON view answers");
    assert!(r.status == 200 && r.text().contains(PRODUCT_NAME), "{r:?}");
    // TestNode keeps the node's stderr next to its data directory.
    let log = std::fs::read_to_string(node.data_dir().with_file_name("node.log"))
        .expect("the node's log");
    assert!(!log.contains("panicked"), "the node panicked:\n{log}");
}

/// Sends one case.
async fn run(t: &Target, call: Call) -> Outcome {
    let mut ledger = t.ledger.clone();
    let mut provenance = t.provenance.clone();
    match call {
        Call::Submit(envelope) => submitted(ledger.submit(proto::SubmitRequest { envelope }).await),
        Call::SubmitBytes(body) => {
            let method = "/fairtrail.v1.LedgerService/Submit";
            match raw::unary(&t.channel, method, body).await {
                Ok(answer) => submitted(
                    proto::SubmitResponse::decode(answer.as_slice())
                        .map(tonic::Response::new)
                        .map_err(|e| tonic::Status::unknown(format!("undecodable answer: {e}"))),
                ),
                Err(s) => Outcome::Status(s),
            }
        }
        Call::Stream(envelope) => stream(&mut ledger, envelope).await,
        Call::StreamBytes(body) => {
            let method = "/fairtrail.v1.LedgerService/SubmitStream";
            match raw::streaming(&t.channel, method, body).await {
                Ok(Some(answer)) => match proto::SubmitStreamResponse::decode(answer.as_slice()) {
                    Ok(answer) => stream_answer(answer),
                    Err(e) => {
                        Outcome::Status(tonic::Status::unknown(format!("undecodable answer: {e}")))
                    }
                },
                Ok(None) => Outcome::Status(tonic::Status::unknown("the stream ended unanswered")),
                Err(s) => Outcome::Status(s),
            }
        }
        Call::GetEntry(r) => served(ledger.get_entry(r).await),
        Call::GetEntries(r) => match ledger.get_entries(r).await {
            Err(s) => Outcome::Status(s),
            Ok(answer) => {
                let mut stream = answer.into_inner();
                for _ in 0..MAX_MESSAGES {
                    match stream.message().await {
                        Ok(Some(_)) => {}
                        Ok(None) => return Outcome::Served,
                        Err(s) => return Outcome::Status(s),
                    }
                }
                Outcome::Status(tonic::Status::unknown("the stream does not end"))
            }
        },
        Call::Inclusion(r) => served(ledger.get_inclusion_proof(r).await),
        Call::Consistency(r) => served(ledger.get_consistency_proof(r).await),
        Call::Provenance(r) => served(provenance.get_provenance(r).await),
        Call::Participant(r) => served(provenance.get_participant(r).await),
        Call::Lot(r) => served(provenance.get_lot(r).await),
        Call::Http(request) => match raw::http(t.http, &request).await {
            Ok(r) => Outcome::Http(r),
            Err(e) => Outcome::Status(tonic::Status::unknown(format!("HTTP: {e}"))),
        },
    }
}

/// A read's outcome: served, or its status.
fn served<T>(r: Result<T, tonic::Status>) -> Outcome {
    match r {
        Ok(_) => Outcome::Served,
        Err(s) => Outcome::Status(s),
    }
}

/// A submission's outcome: where its statement is logged, or its status.
fn submitted(r: Result<tonic::Response<proto::SubmitResponse>, tonic::Status>) -> Outcome {
    match r {
        Ok(answer) => {
            let answer = answer.into_inner();
            Outcome::Submitted {
                existing: answer.existing,
                index: answer.receipt.map_or(u64::MAX, |r| r.index),
            }
        }
        Err(s) => Outcome::Status(s),
    }
}

/// One request on a stream: its one answer, as the unary call would give it.
async fn stream(
    ledger: &mut LedgerServiceClient<Channel>,
    envelope: Option<proto::Envelope>,
) -> Outcome {
    let request = proto::SubmitStreamRequest {
        sequence: STREAM_SEQUENCE,
        envelope,
    };
    let mut answers = match ledger.submit_stream(tokio_stream::iter([request])).await {
        Ok(a) => a.into_inner(),
        Err(s) => return Outcome::Status(s),
    };
    match answers.message().await {
        Ok(Some(answer)) => stream_answer(answer),
        Ok(None) => Outcome::Status(tonic::Status::unknown("the stream ended unanswered")),
        Err(s) => Outcome::Status(s),
    }
}

/// A stream's answer, as the unary call would give it.
fn stream_answer(answer: proto::SubmitStreamResponse) -> Outcome {
    if answer.sequence != STREAM_SEQUENCE {
        return Outcome::Status(tonic::Status::unknown("the answer names another sequence"));
    }
    match answer.result {
        Some(StreamResult::Accepted(a)) => submitted(Ok(tonic::Response::new(a))),
        Some(StreamResult::Error(e)) => {
            Outcome::Status(tonic::Status::new(Code::from(e.code), e.message))
        }
        None => Outcome::Status(tonic::Status::unknown("an answer without a result")),
    }
}

/// Whether `outcome` is what `want` documents; an HTTP answer must never hold the log key.
fn check(outcome: &Outcome, want: &Want, secret: &str) -> Result<(), String> {
    let ok = match (want, outcome) {
        (Want::Grpc(code, says), Outcome::Status(s)) => {
            s.code() == *code && s.message().contains(says)
        }
        (
            Want::Existing(index),
            Outcome::Submitted {
                existing,
                index: at,
            },
        ) => *existing && at == index,
        (Want::Http(codes, says), Outcome::Http(r)) => {
            let text = r.text();
            if text.contains(secret) || text.contains("PRIVATE KEY") {
                return Err(format!("the answer holds the log key: {r:?}"));
            }
            codes.contains(&r.status) && text.contains(says)
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        let wanted = match want {
            Want::Grpc(code, says) => format!("{code:?} saying {says:?}"),
            Want::Existing(i) => format!("existing = true at entry {i}"),
            Want::Http(codes, says) => format!("HTTP {codes:?} saying {says:?}"),
        };
        Err(format!("wanted {wanted}, got {outcome:?}"))
    }
}

// --- Statements -----------------------------------------------------------------------------

/// A statement by `issuer`, issued now.
fn statement(issuer: &SigningKey, body: Body) -> proto::Statement {
    proto::Statement {
        issuer: bytes(issuer),
        issued_at_ms: now_ms(),
        references: Vec::new(),
        remark: String::new(),
        body: Some(body),
    }
}

fn signed(statement: &proto::Statement, signers: &[&SigningKey]) -> proto::Envelope {
    envelope::sign(encode(statement), signers)
}

/// A statement by `issuer`, signed by it alone.
fn by(issuer: &SigningKey, body: Body) -> proto::Envelope {
    signed(&statement(issuer, body), &[issuer])
}

fn grams(amount: u64) -> proto::Quantity {
    proto::Quantity {
        amount,
        unit: proto::Unit::Gram as i32,
    }
}

/// A sound harvest body (12,000 kg of green coffee).
fn crop(lot_code: &str) -> proto::Harvest {
    match harvest("12000kg", "USD 1.95/lb", lot_code) {
        Body::Harvest(h) => h,
        _ => unreachable!("writer::harvest makes a harvest"),
    }
}

/// A sound declaration body of a producer.
fn person(name: &str) -> proto::ParticipantDeclaration {
    match declaration(name, &[Role::Producer], Org::FamilyFarm, "HN", "La Paz") {
        Body::ParticipantDeclaration(d) => d,
        _ => unreachable!("writer::declaration makes a declaration"),
    }
}

fn shipment(inputs: Vec<proto::LotInput>, to: &SigningKey) -> proto::Transfer {
    match transfer(inputs, to, "USD 2.35/lb", "BL-BAD-1") {
        Body::Transfer(t) => t,
        _ => unreachable!("writer::transfer makes a transfer"),
    }
}

fn binding(gtin: &str, batch: &str, from: &Logged) -> Body {
    Body::ProductBinding(proto::ProductBinding {
        gtin: gtin.into(),
        batch: batch.into(),
        serial: String::new(),
        inputs: vec![take(from.lot(0), "100kg")],
        product_name: PRODUCT_NAME.into(),
    })
}

/// A participatory certification of the cooperative by the PGS network.
fn pgs_certification(k: &Keys, certificate_id: &str) -> proto::Certification {
    let now = now_ms();
    proto::Certification {
        subject: bytes(&k.coop),
        scheme: PGS_SCHEME.into(),
        certificate_id: certificate_id.into(),
        commodities: vec!["green coffee".into()],
        roles: Vec::new(),
        valid_from_ms: from_now(now, -30 * DAY),
        valid_until_ms: from_now(now, 365 * DAY),
        kind: proto::CertificationKind::Participatory as i32,
        network: bytes(&k.pgs),
    }
}

fn lot_ref(statement_id: &[u8], output: u32) -> proto::LotRef {
    proto::LotRef {
        statement_id: statement_id.to_vec(),
        output,
    }
}

fn input(lot: LotId, amount: u64) -> proto::LotInput {
    proto::LotInput {
        lot: Some(lot.to_proto()),
        amount,
    }
}

/// The identity point: a small-order key.
fn identity_point() -> Vec<u8> {
    let mut b = vec![0u8; 32];
    b[0] = 1;
    b
}

/// 32 bytes that are not the encoding of any curve point.
fn not_a_point() -> [u8; 32] {
    (2u8..=255)
        .map(|y| {
            let mut b = [0u8; 32];
            b[0] = y;
            b
        })
        .find(|b| VerifyingKey::from_bytes(b).is_err())
        .expect("some small y is not on the curve")
}

/// `s + ℓ`, little-endian: the same scalar, non-canonically encoded.
fn plus_ell(s: &[u8]) -> Vec<u8> {
    const ELL: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let mut out = vec![0u8; 32];
    let mut carry = 0u16;
    for i in 0..32 {
        let sum = u16::from(s[i]) + u16::from(ELL[i]) + carry;
        out[i] = sum as u8;
        carry = sum >> 8;
    }
    out
}

/// `envelope`, changed by `f`.
fn altered(envelope: &proto::Envelope, f: impl FnOnce(&mut proto::Envelope)) -> proto::Envelope {
    let mut e = envelope.clone();
    f(&mut e);
    e
}

/// A `GET` of `target`, byte for byte.
fn get(target: &str) -> Vec<u8> {
    get_bytes(target.as_bytes(), b"")
}

/// A `GET` of `target` with `headers` (each line ending in CRLF).
fn get_bytes(target: &[u8], headers: &[u8]) -> Vec<u8> {
    let mut request = b"GET ".to_vec();
    request.extend_from_slice(target);
    request.extend_from_slice(b" HTTP/1.1\r\nHost: fairtrail.test\r\nConnection: close\r\n");
    request.extend_from_slice(headers);
    request.extend_from_slice(b"\r\n");
    request
}

// --- The table ------------------------------------------------------------------------------

/// Every case, by theme.
fn cases(k: &Keys, s: &Sound) -> Vec<Case> {
    let mut t = Table(Vec::new());
    use Code::{FailedPrecondition, InvalidArgument, NotFound, OutOfRange};
    use Want::Grpc;
    let submit = |e: proto::Envelope| Call::Submit(Some(e));

    // Transport and envelope shape (SPEC 4.5, 9.1, 9.2).
    let good = by(&k.coop, Body::Harvest(crop("BAD-SHAPE")));
    let good_request = proto::SubmitRequest {
        envelope: Some(good.clone()),
    }
    .encode_to_vec();
    t.add(
        "no envelope",
        Call::Submit(None),
        Grpc(InvalidArgument, "the request has no envelope"),
    );
    t.add(
        "an empty request message",
        Call::SubmitBytes(Vec::new()),
        Grpc(InvalidArgument, "the request has no envelope"),
    );
    t.add(
        "request bytes that are not protobuf",
        Call::SubmitBytes(vec![0xff; 11]),
        Grpc(InvalidArgument, "failed to decode Protobuf message"),
    );
    t.add(
        "a SubmitRequest cut short",
        Call::SubmitBytes(good_request[..good_request.len() / 2].to_vec()),
        Grpc(InvalidArgument, "failed to decode Protobuf message"),
    );
    t.add(
        "the envelope field sent as a varint",
        Call::SubmitBytes(vec![0x08, 0x01]),
        Grpc(InvalidArgument, "failed to decode Protobuf message"),
    );
    let mut bad_type = PAYLOAD_TYPE.as_bytes().to_vec();
    bad_type[12] = 0xff;
    t.add(
        "invalid UTF-8 in the envelope's payload_type",
        Call::SubmitBytes(splice(&good_request, PAYLOAD_TYPE.as_bytes(), &bad_type)),
        Grpc(InvalidArgument, "failed to decode Protobuf message"),
    );
    t.add(
        "a stream message that is not protobuf",
        Call::StreamBytes(vec![0xff; 11]),
        Grpc(InvalidArgument, "failed to decode Protobuf message"),
    );
    t.add(
        "a 200 KB message, over --max-message-bytes",
        submit(altered(&good, |e| e.payload = vec![0x2a; 200_000])),
        Grpc(OutOfRange, "message length too large"),
    );
    t.add(
        "a 200 KB GetProvenance request",
        Call::Provenance(proto::GetProvenanceRequest {
            subject: Some(proto::get_provenance_request::Subject::Product(
                proto::ProductKey {
                    gtin: GTIN.into(),
                    batch: "B".repeat(200_000),
                    serial: String::new(),
                },
            )),
        }),
        Grpc(OutOfRange, "message length too large"),
    );
    t.add(
        "an empty payload",
        submit(altered(&good, |e| e.payload.clear())),
        Grpc(InvalidArgument, "the envelope has no payload"),
    );
    let mut d = person("Finca Grande");
    d.name = "x".repeat(100_000);
    t.add(
        "a 100 KB name (payload over 60 KiB)",
        submit(by(&k.stranger, Body::ParticipantDeclaration(d))),
        Grpc(InvalidArgument, "the most a statement may have is 61440"),
    );
    t.add(
        "payload type application/json",
        submit(altered(&good, |e| {
            e.payload_type = "application/json".into()
        })),
        Grpc(InvalidArgument, "Fairtrail envelopes use"),
    );
    t.add(
        "payload type in capitals",
        submit(altered(&good, |e| {
            e.payload_type = PAYLOAD_TYPE.to_uppercase()
        })),
        Grpc(InvalidArgument, "Fairtrail envelopes use"),
    );
    t.add(
        "no signatures",
        submit(altered(&good, |e| e.signatures.clear())),
        Grpc(InvalidArgument, "the envelope carries no signature"),
    );
    let mut crowded = good.clone();
    for seed in 100..132 {
        cosign(&mut crowded, &key(seed));
    }
    t.add(
        "33 signatures",
        submit(crowded),
        Grpc(InvalidArgument, "carries 33 signatures; at most 32"),
    );

    // Signatures (SPEC 2.3, 2.4, 4.4, 4.5).
    t.add(
        "a public key of 31 bytes",
        submit(altered(&good, |e| e.signatures[0].public_key.truncate(31))),
        Grpc(InvalidArgument, "a public key has 32 bytes, got 31"),
    );
    t.add(
        "a small-order public key",
        submit(altered(&good, |e| {
            e.signatures[0].public_key = identity_point()
        })),
        Grpc(InvalidArgument, "small order"),
    );
    t.add(
        "a public key that is not a curve point",
        submit(altered(&good, |e| {
            e.signatures[0].public_key = not_a_point().to_vec()
        })),
        Grpc(InvalidArgument, "not a curve point"),
    );
    t.add(
        "a truncated signature (63 bytes)",
        submit(altered(&good, |e| e.signatures[0].sig.truncate(63))),
        Grpc(InvalidArgument, "has 63 bytes; an Ed25519 signature has 64"),
    );
    t.add(
        "an empty signature",
        submit(altered(&good, |e| e.signatures[0].sig.clear())),
        Grpc(InvalidArgument, "has 0 bytes"),
    );
    t.add(
        "a signature whose R is the identity (small order)",
        submit(altered(&good, |e| {
            e.signatures[0].sig[..32].copy_from_slice(&identity_point())
        })),
        Grpc(InvalidArgument, "its R is a small-order point"),
    );
    let mut r_plus_p = [0xffu8; 32];
    r_plus_p[0] = 0xed + 3;
    r_plus_p[31] = 0x7f;
    t.add(
        "a signature whose R is non-canonical (y + p)",
        submit(altered(&good, |e| {
            e.signatures[0].sig[..32].copy_from_slice(&r_plus_p)
        })),
        Grpc(InvalidArgument, "its R is not canonically encoded"),
    );
    t.add(
        "a signature whose R is not a curve point",
        submit(altered(&good, |e| {
            e.signatures[0].sig[..32].copy_from_slice(&not_a_point())
        })),
        Grpc(InvalidArgument, "its R is not a curve point"),
    );
    t.add(
        "a signature with S + ℓ (non-canonical S)",
        submit(altered(&good, |e| {
            let s = plus_ell(&e.signatures[0].sig[32..]);
            e.signatures[0].sig[32..].copy_from_slice(&s);
        })),
        Grpc(InvalidArgument, "does not verify over this payload"),
    );
    t.add(
        "a flipped bit in S",
        submit(altered(&good, |e| e.signatures[0].sig[40] ^= 0x04)),
        Grpc(InvalidArgument, "does not verify over this payload"),
    );
    t.add(
        "a signature over the bare payload, not its PAE",
        submit(altered(&good, |e| {
            e.signatures[0].sig = k.coop.sign(&e.payload).to_bytes().to_vec()
        })),
        Grpc(InvalidArgument, "does not verify over this payload"),
    );
    t.add(
        "the same key twice",
        submit(signed(
            &statement(&k.coop, Body::Harvest(crop("TWICE"))),
            &[&k.coop, &k.coop],
        )),
        Grpc(InvalidArgument, "signs the envelope twice"),
    );
    let cert = statement(
        &k.peers[0],
        Body::Certification(pgs_certification(k, "RGP-2")),
    );
    t.add(
        "one PGS member twice to pad the quorum of 2",
        submit(signed(&cert, &[&k.peers[0], &k.peers[0]])),
        Grpc(InvalidArgument, "signs the envelope twice"),
    );
    t.add(
        "a PGS quorum padded with a non-member",
        submit(signed(&cert, &[&k.peers[0], &k.retailer])),
        Grpc(
            FailedPrecondition,
            "1 distinct signatures of the members of",
        ),
    );
    t.add(
        "a PGS quorum padded with an undeclared key",
        submit(signed(&cert, &[&k.peers[0], &k.stranger])),
        Grpc(FailedPrecondition, "2 needed"),
    );
    t.add(
        "a harvest signed by a key that never declared",
        submit(by(&k.stranger, Body::Harvest(crop("STRANGER")))),
        Grpc(FailedPrecondition, "has not declared itself"),
    );
    t.add(
        "an issuer that did not sign",
        submit(signed(
            &statement(&k.coop, Body::Harvest(crop("NOT-ME"))),
            &[&k.retailer],
        )),
        Grpc(InvalidArgument, "did not sign the envelope"),
    );

    // The statement (SPEC 1.4, 3.4).
    t.add(
        "a signed payload that is not protobuf",
        submit(envelope::sign(vec![0xff; 24], &[&k.coop])),
        Grpc(
            InvalidArgument,
            "the payload is not a protobuf fairtrail.v1.Statement",
        ),
    );
    let mut st = statement(
        &k.stranger,
        Body::ParticipantDeclaration(person("@@NAME@@")),
    );
    st.issued_at_ms = 1_700_000_000_000;
    let payload = splice(&encode(&st), b"@@NAME@@", b"Coop\xff\xfe\xfd!");
    t.add(
        "invalid UTF-8 in a name",
        submit(envelope::sign(payload, &[&k.stranger])),
        Grpc(InvalidArgument, "UTF-8"),
    );
    let mut nested = vec![0x2b; 150];
    nested.extend(std::iter::repeat_n(0x2c, 150));
    t.add(
        "groups nested 150 deep in the payload",
        submit(envelope::sign(nested, &[&k.coop])),
        Grpc(
            InvalidArgument,
            "the payload is not a protobuf fairtrail.v1.Statement",
        ),
    );
    let mut st = statement(&k.coop, Body::Harvest(crop("NO-BODY")));
    st.body = None;
    t.add(
        "a statement with no body",
        submit(signed(&st, &[&k.coop])),
        Grpc(InvalidArgument, "the statement has no body"),
    );
    let mut st = statement(&k.coop, Body::Harvest(crop("SHORT-ISSUER")));
    st.issuer.truncate(31);
    t.add(
        "an issuer of 31 bytes",
        submit(signed(&st, &[&k.coop])),
        Grpc(InvalidArgument, "issuer: a public key has 32 bytes, got 31"),
    );

    // Common checks and field checks of the ledger rules (SPEC 3.6.1).
    let mut st = statement(&k.coop, Body::Harvest(crop("FAR-FUTURE")));
    st.issued_at_ms = u64::MAX;
    t.add(
        "issued_at_ms = 2^64 - 1",
        submit(signed(&st, &[&k.coop])),
        Grpc(
            InvalidArgument,
            "issued_at_ms: 18446744073709551615 is more than 10 minutes",
        ),
    );
    let mut st = statement(&k.coop, Body::Harvest(crop("AHEAD")));
    st.issued_at_ms = now_ms() + 11 * 60_000;
    t.add(
        "issued_at_ms 11 minutes ahead",
        submit(signed(&st, &[&k.coop])),
        Grpc(
            InvalidArgument,
            "is more than 10 minutes after the log's clock",
        ),
    );
    let mut st = statement(&k.coop, Body::Harvest(crop("REMARK")));
    st.remark = "paid in full\u{85}".into();
    t.add(
        "a C1 control character in a remark",
        submit(signed(&st, &[&k.coop])),
        Grpc(
            InvalidArgument,
            "remark: must not contain control characters",
        ),
    );
    let mut st = statement(&k.coop, Body::Harvest(crop("REF-UNKNOWN")));
    st.references = vec![vec![0x5a; 32]];
    t.add(
        "a reference to a statement not in the log",
        submit(signed(&st, &[&k.coop])),
        Grpc(FailedPrecondition, "referenced statement"),
    );
    let mut st = statement(&k.coop, Body::Harvest(crop("REF-SHORT")));
    st.references = vec![vec![0x5a; 5]];
    t.add(
        "a reference of 5 bytes",
        submit(signed(&st, &[&k.coop])),
        Grpc(
            InvalidArgument,
            "references[0]: a statement id has 32 bytes, got 5",
        ),
    );

    let declare = |f: &dyn Fn(&mut proto::ParticipantDeclaration)| {
        let mut d = person("Finca El Retiro");
        f(&mut d);
        submit(by(&k.stranger, Body::ParticipantDeclaration(d)))
    };
    t.add(
        "a name of 2,000 bytes",
        declare(&|d| d.name = "n".repeat(2000)),
        Grpc(
            InvalidArgument,
            "name: has 2000 bytes; at most 1000 are allowed",
        ),
    );
    t.add(
        "a blank name",
        declare(&|d| d.name = " \n ".into()),
        Grpc(InvalidArgument, "name: must not be empty"),
    );
    t.add(
        "a NUL in a name",
        declare(&|d| d.name = "Finca\0Oculta".into()),
        Grpc(InvalidArgument, "name: must not contain control characters"),
    );
    t.add(
        "a tab in a name",
        declare(&|d| d.name = "Finca\tOculta".into()),
        Grpc(InvalidArgument, "name: must not contain control characters"),
    );
    t.add(
        "a lower-case country code",
        declare(&|d| d.country = "hn".into()),
        Grpc(
            InvalidArgument,
            "country: \"hn\" is not an ISO 3166-1 alpha-2 code",
        ),
    );
    t.add(
        "a three-letter country code",
        declare(&|d| d.country = "HND".into()),
        Grpc(InvalidArgument, "is not an ISO 3166-1 alpha-2 code"),
    );
    t.add(
        "an unknown role number",
        declare(&|d| d.roles = vec![99]),
        Grpc(InvalidArgument, "roles: 99 is not a role"),
    );
    t.add(
        "the unspecified role",
        declare(&|d| d.roles = vec![Role::Producer as i32, 0]),
        Grpc(InvalidArgument, "roles: 0 is not a role"),
    );
    t.add(
        "no roles",
        declare(&|d| d.roles.clear()),
        Grpc(InvalidArgument, "roles: name at least one role"),
    );
    t.add(
        "an unknown organisation type",
        declare(&|d| d.organisation_type = 42),
        Grpc(
            InvalidArgument,
            "organisation_type: is not an organisation type",
        ),
    );
    t.add(
        "a guardian threshold above the guardians",
        declare(&|d| {
            d.guardians = vec![bytes(&k.peers[0]), bytes(&k.peers[1])];
            d.guardian_threshold = 3;
        }),
        Grpc(InvalidArgument, "guardian_threshold: is 3 with 2 guardians"),
    );
    t.add(
        "a small-order guardian",
        declare(&|d| {
            d.guardians = vec![identity_point()];
            d.guardian_threshold = 1;
        }),
        Grpc(InvalidArgument, "guardians[0]:"),
    );
    t.add(
        "a key declared twice",
        submit(by(
            &k.coop,
            Body::ParticipantDeclaration(person("Otra Cooperativa")),
        )),
        Grpc(FailedPrecondition, "is already in use"),
    );
    t.add(
        "a rotation to another participant's key",
        submit(signed(
            &statement(
                &k.coop,
                Body::KeyRotation(proto::KeyRotation {
                    new_key: bytes(&k.retailer),
                    recovery: false,
                }),
            ),
            &[&k.coop, &k.retailer],
        )),
        Grpc(FailedPrecondition, "is already in use"),
    );

    // Harvests: quantities, units, money, times (SPEC 3.6.1, 3.6.4).
    let crop_with = |f: &dyn Fn(&mut proto::Harvest)| {
        let mut h = crop("BAD-HARVEST");
        f(&mut h);
        submit(by(&k.coop, Body::Harvest(h)))
    };
    t.add(
        "a harvest of zero grams",
        crop_with(&|h| h.quantity = Some(grams(0))),
        Grpc(InvalidArgument, "quantity: must be more than zero"),
    );
    t.add(
        "a harvest with no quantity",
        crop_with(&|h| h.quantity = None),
        Grpc(InvalidArgument, "quantity: is missing"),
    );
    t.add(
        "a harvest in the unspecified unit",
        crop_with(&|h| h.quantity = Some(proto::Quantity { amount: 5, unit: 0 })),
        Grpc(
            InvalidArgument,
            "quantity: unit must be gram, millilitre or piece",
        ),
    );
    t.add(
        "a harvest in unit 7",
        crop_with(&|h| h.quantity = Some(proto::Quantity { amount: 5, unit: 7 })),
        Grpc(
            InvalidArgument,
            "quantity: unit must be gram, millilitre or piece",
        ),
    );
    t.add(
        "a price per zero grams",
        crop_with(&|h| {
            if let Some(p) = &mut h.farmgate_price {
                p.per = Some(grams(0));
            }
        }),
        Grpc(
            InvalidArgument,
            "farmgate_price.per: must be more than zero",
        ),
    );
    t.add(
        "a lower-case currency",
        crop_with(&|h| {
            h.farmgate_price = parse_price("USD 1.95/kg").ok().map(|mut p| {
                p.currency = "usd".into();
                p
            })
        }),
        Grpc(
            InvalidArgument,
            "farmgate_price: \"usd\" is not an ISO 4217 currency code",
        ),
    );
    t.add(
        "a price per millilitre for goods in grams",
        crop_with(&|h| h.farmgate_price = parse_price("USD 1.95/l").ok()),
        Grpc(
            InvalidArgument,
            "farmgate_price: must be per the same unit as the goods",
        ),
    );
    t.add(
        "a harvest without its farm-gate price",
        crop_with(&|h| h.farmgate_price = None),
        Grpc(InvalidArgument, "farmgate_price: is missing"),
    );
    t.add(
        "a harvest that ends before it begins",
        crop_with(&|h| h.harvested_until_ms = h.harvested_from_ms - 1),
        Grpc(
            InvalidArgument,
            "harvested_until_ms: must not be before harvested_from_ms",
        ),
    );
    t.add(
        "a commodity in capitals",
        crop_with(&|h| h.commodity = "Green Coffee".into()),
        Grpc(
            InvalidArgument,
            "commodity: \"Green Coffee\" must be 1 to 64",
        ),
    );
    t.add(
        "a NUL in a lot code",
        crop_with(&|h| h.lot_code = "OPA\0".into()),
        Grpc(
            InvalidArgument,
            "lot_code: must not contain control characters",
        ),
    );

    // Lots: who holds them, how much is left, sums (SPEC 3.6.4).
    let harvest_lot = s.harvest.lot(0);
    let ship = |inputs: Vec<proto::LotInput>, to: &SigningKey| {
        submit(by(&k.coop, Body::Transfer(shipment(inputs, to))))
    };
    t.add(
        "an input of zero",
        ship(vec![input(harvest_lot, 0)], &k.importer),
        Grpc(InvalidArgument, "inputs[0]: amount must be more than zero"),
    );
    let minus_one = by(
        &k.coop,
        Body::Transfer(shipment(vec![input(harvest_lot, u64::MAX)], &k.importer)),
    );
    assert!(
        minus_one
            .payload
            .windows(10)
            .any(|w| w == [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
        "2^64 - 1 is written as the ten-byte varint of -1"
    );
    t.add(
        "an input of -1 as a varint (2^64 - 1)",
        submit(minus_one),
        Grpc(
            FailedPrecondition,
            "has 6,000 kg left, 18,446,744,073,709,551.615 kg asked",
        ),
    );
    t.add(
        "an input of 1 g more than is left",
        ship(vec![input(harvest_lot, amount("6000kg") + 1)], &k.importer),
        Grpc(FailedPrecondition, "has 6,000 kg left, 6,000.001 kg asked"),
    );
    t.add(
        "inputs whose sum overflows 2^64",
        ship(
            vec![input(s.big[0].lot(0), u64::MAX), input(s.big[1].lot(0), 1)],
            &k.importer,
        ),
        Grpc(
            InvalidArgument,
            "inputs: the amounts add up to more than 2^64",
        ),
    );
    t.add(
        "the same lot twice in one transfer",
        ship(
            vec![input(harvest_lot, 1000), input(harvest_lot, 1000)],
            &k.importer,
        ),
        Grpc(InvalidArgument, "is named twice"),
    );
    t.add(
        "a transfer of no lots",
        ship(Vec::new(), &k.importer),
        Grpc(InvalidArgument, "inputs: name at least one lot"),
    );
    t.add(
        "a transfer of 65 lots",
        ship(
            (0..65)
                .map(|o| {
                    input(
                        LotId {
                            statement: s.harvest.id,
                            output: o,
                        },
                        1,
                    )
                })
                .collect(),
            &k.importer,
        ),
        Grpc(InvalidArgument, "inputs: at most 64 lots"),
    );
    t.add(
        "an input naming no lot",
        ship(
            vec![proto::LotInput {
                lot: None,
                amount: 1,
            }],
            &k.importer,
        ),
        Grpc(InvalidArgument, "inputs[0]: names no lot"),
    );
    t.add(
        "a lot reference of 5 bytes",
        ship(
            vec![proto::LotInput {
                lot: Some(lot_ref(&[7; 5], 0)),
                amount: 1,
            }],
            &k.importer,
        ),
        Grpc(
            InvalidArgument,
            "inputs[0]: a statement id has 32 bytes, got 5",
        ),
    );
    t.add(
        "an unknown lot",
        ship(
            vec![proto::LotInput {
                lot: Some(lot_ref(&[7; 32], 0)),
                amount: 1,
            }],
            &k.importer,
        ),
        Grpc(FailedPrecondition, "is not in the log"),
    );
    t.add(
        "output 1 of a harvest (it has only output 0)",
        ship(vec![input(s.harvest.lot(1), 1)], &k.importer),
        Grpc(FailedPrecondition, "is not in the log"),
    );
    t.add(
        "consuming another holder's lot",
        ship(vec![input(s.to_importer.lot(0), 1000)], &k.retailer),
        Grpc(FailedPrecondition, "only the holder may use it"),
    );
    t.add(
        "a transfer to oneself",
        ship(vec![input(harvest_lot, 1000)], &k.coop),
        Grpc(InvalidArgument, "a transfer goes to another participant"),
    );
    t.add(
        "a transfer to a key that never declared",
        ship(vec![input(harvest_lot, 1000)], &k.stranger),
        Grpc(FailedPrecondition, "has not declared itself"),
    );
    let mut weak = shipment(vec![input(harvest_lot, 1000)], &k.importer);
    weak.recipient = identity_point();
    t.add(
        "a transfer to a small-order key",
        submit(by(&k.coop, Body::Transfer(weak))),
        Grpc(InvalidArgument, "recipient: ed25519:0100"),
    );
    let mut priced = shipment(vec![input(harvest_lot, 1000)], &k.importer);
    if let Some(p) = &mut priced.price {
        p.currency = "EURO".into();
    }
    t.add(
        "a price in a four-letter currency",
        submit(by(&k.coop, Body::Transfer(priced))),
        Grpc(
            InvalidArgument,
            "price: \"EURO\" is not an ISO 4217 currency code",
        ),
    );

    // Receipts (SPEC 3.6.5).
    let answer = |who: &SigningKey, transfer: &[u8], outcome: i32, amount: u64| {
        submit(by(
            who,
            Body::Receipt(proto::Receipt {
                transfer: transfer.to_vec(),
                outcome,
                amount_received: amount,
            }),
        ))
    };
    let confirmed = proto::ReceiptOutcome::Confirmed as i32;
    let to_importer = s.to_importer.id.as_bytes().to_vec();
    t.add(
        "a receipt by someone other than the recipient",
        answer(&k.retailer, &to_importer, confirmed, amount("5000kg")),
        Grpc(FailedPrecondition, "the transfer's recipient"),
    );
    t.add(
        "a receipt of a transfer not in the log",
        answer(&k.importer, &[9; 32], confirmed, 1),
        Grpc(FailedPrecondition, "is not in the log"),
    );
    t.add(
        "a confirmation of 2^64 - 1 g received",
        answer(&k.importer, &to_importer, confirmed, u64::MAX),
        Grpc(
            InvalidArgument,
            "a confirmation must state the full 5,000 kg shipped",
        ),
    );
    t.add(
        "a receipt with the unspecified outcome",
        answer(&k.importer, &to_importer, 0, amount("5000kg")),
        Grpc(InvalidArgument, "outcome: must be confirmed or disputed"),
    );
    t.add(
        "a second receipt of a transfer",
        answer(
            &k.retailer,
            s.to_retailer.id.as_bytes(),
            confirmed,
            amount("1000kg"),
        ),
        Grpc(FailedPrecondition, "was already answered at entry"),
    );

    // Product bindings and disputes (SPEC 3.6.6, 3.6.7).
    t.add(
        "a binding whose GTIN has a bad check digit",
        submit(by(
            &k.retailer,
            binding("09506000134353", "BI-2", &s.to_retailer),
        )),
        Grpc(
            InvalidArgument,
            "has check digit 3; the digits before it give 2",
        ),
    );
    t.add(
        "a binding with a GTIN-13",
        submit(by(
            &k.retailer,
            binding("9506000134352", "BI-3", &s.to_retailer),
        )),
        Grpc(InvalidArgument, "write it as the 14 digits 09506000134352"),
    );
    t.add(
        "a binding whose batch has a space",
        submit(by(&k.retailer, binding(GTIN, "BI 4", &s.to_retailer))),
        Grpc(
            InvalidArgument,
            "batch: batch \"BI 4\" must be 1 to 20 characters",
        ),
    );
    t.add(
        "a binding of a product already bound",
        submit(by(&k.retailer, binding(GTIN, BATCH, &s.to_retailer))),
        Grpc(FailedPrecondition, "is already bound at entry"),
    );
    t.add(
        "a binding by a cooperative",
        submit(by(&k.coop, binding(GTIN, "BI-5", &s.harvest))),
        Grpc(FailedPrecondition, "has not declared the role retailer"),
    );
    t.add(
        "a dispute of a statement not in the log",
        submit(by(
            &k.importer,
            Body::Dispute(proto::Dispute {
                entry: vec![3; 32],
                reason: "no such shipment".into(),
            }),
        )),
        Grpc(FailedPrecondition, "disputed statement"),
    );
    let mut backwards = pgs_certification(k, "RGP-3");
    backwards.valid_until_ms = backwards.valid_from_ms;
    t.add(
        "a certification that ends as it begins",
        submit(signed(
            &statement(&k.peers[0], Body::Certification(backwards)),
            &[&k.peers[0], &k.peers[1]],
        )),
        Grpc(
            InvalidArgument,
            "valid_until_ms: must be after valid_from_ms",
        ),
    );
    let mut odd = pgs_certification(k, "RGP-4");
    odd.kind = 9;
    t.add(
        "a certification of kind 9",
        submit(signed(
            &statement(&k.peers[0], Body::Certification(odd)),
            &[&k.peers[0], &k.peers[1]],
        )),
        Grpc(
            InvalidArgument,
            "kind: must be third-party or participatory",
        ),
    );

    t.add(
        "a revocation of a certification not in the log",
        submit(by(
            &k.peers[0],
            Body::Revocation(proto::Revocation {
                certification: vec![8; 32],
                kind: proto::RevocationKind::Revoked as i32,
                effective_at_ms: now_ms(),
                reason: "audit findings".into(),
            }),
        )),
        Grpc(FailedPrecondition, "certification 08080808"),
    );
    let new_key = key(60);
    t.add(
        "a recovery of an identity that named no guardians",
        submit(signed(
            &statement(
                &k.coop,
                Body::KeyRotation(proto::KeyRotation {
                    new_key: bytes(&new_key),
                    recovery: true,
                }),
            ),
            &[&new_key, &k.peers[0], &k.peers[1]],
        )),
        Grpc(
            FailedPrecondition,
            "named no guardians, so its key cannot be recovered",
        ),
    );

    // Replays (SPEC 3.5, 9.3): the first entry, nothing appended.
    t.add(
        "a logged statement replayed",
        submit(s.harvest_envelope.clone()),
        Want::Existing(s.harvest.index),
    );
    t.add(
        "a logged statement replayed with an extra co-signer",
        submit(altered(&s.harvest_envelope, |e| cosign(e, &k.retailer))),
        Want::Existing(s.harvest.index),
    );
    t.add(
        "a logged statement replayed on a stream",
        Call::Stream(Some(s.harvest_envelope.clone())),
        Want::Existing(s.harvest.index),
    );
    t.add(
        "an envelope without signatures on a stream",
        Call::Stream(Some(altered(&good, |e| e.signatures.clear()))),
        Grpc(InvalidArgument, "the envelope carries no signature"),
    );
    t.add(
        "no envelope on a stream",
        Call::Stream(None),
        Grpc(InvalidArgument, "the request has no envelope"),
    );

    // Reads (SPEC 9.2, 9.4).
    let size = s.size;
    let entry = |key| Call::GetEntry(proto::GetEntryRequest { key });
    use proto::get_entry_request::Key;
    t.add(
        "GetEntry at the tree size",
        entry(Some(Key::Index(size))),
        Grpc(OutOfRange, "is beyond the tree size"),
    );
    t.add(
        "GetEntry at 2^64 - 1",
        entry(Some(Key::Index(u64::MAX))),
        Grpc(OutOfRange, "is beyond the tree size"),
    );
    t.add(
        "GetEntry by a statement id of 31 bytes",
        entry(Some(Key::StatementId(vec![1; 31]))),
        Grpc(InvalidArgument, "a statement id has 32 bytes, got 31"),
    );
    t.add(
        "GetEntry with no key",
        entry(None),
        Grpc(InvalidArgument, "give an index or a statement id"),
    );
    t.add(
        "GetEntry by a statement id not in the log",
        entry(Some(Key::StatementId(vec![1; 32]))),
        Grpc(NotFound, "no entry holds statement"),
    );
    t.add(
        "GetEntries with start > end",
        Call::GetEntries(proto::GetEntriesRequest { start: 10, end: 5 }),
        Grpc(InvalidArgument, "start 10 is after end 5"),
    );
    t.add(
        "GetEntries from 2^64 - 1 to the end",
        Call::GetEntries(proto::GetEntriesRequest {
            start: u64::MAX,
            end: 0,
        }),
        Grpc(InvalidArgument, "is after end"),
    );
    t.add(
        "GetEntries beyond the tree size",
        Call::GetEntries(proto::GetEntriesRequest {
            start: 0,
            end: size + 1,
        }),
        Grpc(OutOfRange, "is beyond the latest checkpoint's size"),
    );
    use proto::get_inclusion_proof_request::Leaf;
    let inclusion =
        |leaf, tree_size| Call::Inclusion(proto::GetInclusionProofRequest { leaf, tree_size });
    t.add(
        "GetInclusionProof with a 31-byte leaf hash",
        inclusion(Some(Leaf::LeafHash(vec![2; 31])), 0),
        Grpc(
            InvalidArgument,
            "leaf hash: a hash is 31 bytes long, not 32",
        ),
    );
    t.add(
        "GetInclusionProof with no leaf",
        inclusion(None, 0),
        Grpc(InvalidArgument, "give a leaf index or a leaf hash"),
    );
    t.add(
        "GetInclusionProof beyond the tree size",
        inclusion(Some(Leaf::Index(0)), size + 1),
        Grpc(OutOfRange, "is beyond the latest checkpoint's size"),
    );
    t.add(
        "GetInclusionProof of an index outside its tree",
        inclusion(Some(Leaf::Index(5)), 3),
        Grpc(OutOfRange, "index 5 is not in a tree of size 3"),
    );
    t.add(
        "GetInclusionProof of a leaf hash not in the log",
        inclusion(Some(Leaf::LeafHash(vec![2; 32])), 0),
        Grpc(NotFound, "no entry has leaf hash"),
    );
    let consistency = |from_size, to_size| {
        Call::Consistency(proto::GetConsistencyProofRequest { from_size, to_size })
    };
    t.add(
        "GetConsistencyProof with from > to",
        consistency(5, 3),
        Grpc(InvalidArgument, "from_size 5 is larger than to_size 3"),
    );
    t.add(
        "GetConsistencyProof from 0",
        consistency(0, 3),
        Grpc(InvalidArgument, "from_size must be at least 1"),
    );
    t.add(
        "GetConsistencyProof beyond the tree size",
        consistency(1, size + 1),
        Grpc(OutOfRange, "is beyond the latest checkpoint's size"),
    );
    let lot = |lot| Call::Lot(proto::GetLotRequest { lot });
    t.add(
        "GetLot with a 5-byte statement id",
        lot(Some(lot_ref(&[4; 5], 0))),
        Grpc(InvalidArgument, "lot: a statement id has 32 bytes, got 5"),
    );
    t.add(
        "GetLot with no lot",
        lot(None),
        Grpc(InvalidArgument, "name a lot"),
    );
    t.add(
        "GetLot of a lot not in the log",
        lot(Some(lot_ref(&[4; 32], 0))),
        Grpc(NotFound, "is not in the log"),
    );
    t.add(
        "GetLot of output 2^32 - 1 of a harvest",
        lot(Some(s.harvest.lot(u32::MAX).to_proto())),
        Grpc(NotFound, "is not in the log"),
    );
    use proto::get_provenance_request::Subject;
    let product = |gtin: &str, batch: &str| {
        Call::Provenance(proto::GetProvenanceRequest {
            subject: Some(Subject::Product(proto::ProductKey {
                gtin: gtin.into(),
                batch: batch.into(),
                serial: String::new(),
            })),
        })
    };
    t.add(
        "GetProvenance of a GTIN with a bad check digit",
        product("09506000134353", BATCH),
        Grpc(
            InvalidArgument,
            "has check digit 3; the digits before it give 2",
        ),
    );
    t.add(
        "GetProvenance of a GTIN with a letter",
        product("0950600013435X", BATCH),
        Grpc(InvalidArgument, "must be 8, 12, 13 or 14 digits"),
    );
    t.add(
        "GetProvenance of a 21-character batch",
        product(GTIN, "ABCDEFGHIJKLMNOPQRSTU"),
        Grpc(InvalidArgument, "must be 1 to 20 characters"),
    );
    t.add(
        "GetProvenance of a product not bound",
        product(GTIN, "NOPE"),
        Grpc(
            NotFound,
            "no product is bound to GTIN 09506000134352 batch NOPE",
        ),
    );
    t.add(
        "GetProvenance with no subject",
        Call::Provenance(proto::GetProvenanceRequest { subject: None }),
        Grpc(InvalidArgument, "name a product (GTIN and batch) or a lot"),
    );
    t.add(
        "GetProvenance of a lot with a 5-byte statement id",
        Call::Provenance(proto::GetProvenanceRequest {
            subject: Some(Subject::Lot(lot_ref(&[4; 5], 0))),
        }),
        Grpc(InvalidArgument, "lot: a statement id has 32 bytes, got 5"),
    );
    t.add(
        "GetParticipant with a 31-byte key",
        Call::Participant(proto::GetParticipantRequest {
            public_key: vec![5; 31],
        }),
        Grpc(
            InvalidArgument,
            "public_key: a public key has 32 bytes, got 31",
        ),
    );
    t.add(
        "GetParticipant of a key that never declared",
        Call::Participant(proto::GetParticipantRequest {
            public_key: bytes(&k.stranger),
        }),
        Grpc(NotFound, "has not declared itself in this log"),
    );

    // HTTP (SPEC 12.2, 12.3, 12.5, 12.6): 4xx that say what is wrong, never 500, never the key.
    let http = |target: &str| Call::Http(get(target));
    let refused: &'static [u16] = &[400, 404];
    t.add(
        "HTTP: a GTIN with a bad check digit",
        http("/01/09506000134353/10/BI-2026-07"),
        Want::Http(&[400], "check digit"),
    );
    t.add(
        "HTTP: a GTIN with a bad check digit, as JSON",
        http("/01/09506000134353/10/BI-2026-07?format=json"),
        Want::Http(&[400], "\"status\":400"),
    );
    t.add(
        "HTTP: a bundle of a GTIN with a bad check digit",
        http("/bundle/01/09506000134353/10/BI-2026-07"),
        Want::Http(&[400], "check digit"),
    );
    t.add(
        "HTTP: a product not bound",
        http(&format!("/01/{GTIN}/10/NOPE")),
        Want::Http(&[404], "This product is not in the record."),
    );
    t.add(
        "HTTP: a NUL in a batch",
        http(&format!("/01/{GTIN}/10/A%00B")),
        Want::Http(&[400], "batch"),
    );
    t.add(
        "HTTP: a serial in braces",
        http(&format!("/01/{GTIN}/10/{BATCH}/21/%7B1%7D")),
        Want::Http(&[400], "serial"),
    );
    t.add(
        "HTTP: a percent-encoded batch that is not UTF-8",
        http(&format!("/01/{GTIN}/10/%FF%FE")),
        Want::Http(&[400], "This product link is not valid."),
    );
    t.add(
        "HTTP: a percent-encoded batch that is not UTF-8, as JSON",
        http(&format!("/01/{GTIN}/10/%FF%FE?format=json")),
        Want::Http(&[400], "\"status\":400"),
    );
    t.add(
        "HTTP: a bundle of a batch that is not UTF-8",
        http(&format!("/bundle/01/{GTIN}/10/%FF%FE")),
        Want::Http(&[400], "UTF-8"),
    );
    t.add(
        "HTTP: a path of raw bytes that are not UTF-8",
        Call::Http(get_bytes(b"/01/\xff\xfe/10/x", b"")),
        Want::Http(&[400], ""),
    );
    t.add(
        "HTTP: a lang that is not UTF-8 is ignored",
        http(&format!("/01/{GTIN}/10/{BATCH}?lang=%FF&format=json")),
        Want::Http(&[200], PRODUCT_NAME),
    );
    t.add(
        "HTTP: an Accept-Language that is not UTF-8 is ignored",
        Call::Http(get_bytes(
            format!("/01/{GTIN}/10/{BATCH}?format=json").as_bytes(),
            b"Accept-Language: es\xff\xfe\r\n",
        )),
        Want::Http(&[200], PRODUCT_NAME),
    );
    for target in [
        "/tile/../log-key.pem",
        "/tile/../../log-key.pem",
        "/tile/%2e%2e/%2e%2e/log-key.pem",
        "/tile/entries/..%2F..%2Flog-key.pem",
        "/tile/0/x001/../../../log-key.pem",
        "/01/..%2f..%2flog-key.pem/10/x",
        "/bundle/01/..%2f../10/..%2flog-key.pem",
        "/../log-key.pem",
        "//etc/passwd",
    ] {
        t.add(
            format!("HTTP: traversal {target}"),
            http(target),
            Want::Http(refused, ""),
        );
    }
    t.add(
        "HTTP: a tile path that is not UTF-8",
        http("/tile/0/%FF"),
        Want::Http(&[400], ""),
    );
    t.add(
        "HTTP: a partial tile of width 0",
        http("/tile/0/000.p/0"),
        Want::Http(&[400], "not a tlog-tiles path"),
    );
    t.add(
        "HTTP: a tile beyond the published tree",
        http("/tile/0/999"),
        Want::Http(&[404], "no such tile in the published tree"),
    );
    t.add(
        "HTTP: a 512 KB header",
        Call::Http(get_bytes(
            b"/checkpoint",
            format!("X-Fill: {}\r\n", "a".repeat(512 * 1024)).as_bytes(),
        )),
        Want::Http(&[431], ""),
    );
    t.add(
        "HTTP: 200 headers",
        Call::Http(get_bytes(
            b"/checkpoint",
            (0..200)
                .map(|i| format!("X-Header-{i}: {i}\r\n"))
                .collect::<String>()
                .as_bytes(),
        )),
        Want::Http(&[431], ""),
    );
    t.add(
        "HTTP: a 70 KB path",
        http(&format!("/01/{}/10/x", "9".repeat(70_000))),
        Want::Http(&[400, 404, 414, 431], ""),
    );
    t.add(
        "HTTP: a Content-Length that is not a number",
        Call::Http(get_bytes(b"/checkpoint", b"Content-Length: lots\r\n")),
        Want::Http(&[400], ""),
    );
    t.add(
        "HTTP: POST to the checkpoint",
        Call::Http(
            b"POST /checkpoint HTTP/1.1\r\nHost: fairtrail.test\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
                .to_vec(),
        ),
        Want::Http(&[405], ""),
    );
    t.0
}
