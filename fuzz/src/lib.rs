//! Fixtures shared by the fuzz targets (`fuzz_targets/*.rs`) and the seed generator
//! (`examples/seeds.rs`): deterministic keys, a small ledger of valid statements with the
//! state the rules leave after it, a log signing key, and the input formats of the
//! structured targets with encoders, so that the checked-in seeds decode to what they say.
//!
//! Everything here is deterministic: the same keys, statements, ids and signatures on every
//! run (Ed25519 signing is deterministic), so a seed that names a statement id of the fixture
//! ledger keeps naming it.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use ed25519_dalek::SigningKey;
use fairtrail_client::bundle::{Bundle, BundleEntry, Subject};
use fairtrail_client::checkpoint::Checkpoint;
use fairtrail_client::entry::encode_leaf;
use fairtrail_client::envelope::{self, Envelope, StatementId};
use fairtrail_client::gs1::ProductId;
use fairtrail_client::keys::PublicKey;
use fairtrail_client::merkle::{leaf_hash, MemoryTree};
use fairtrail_client::note::{NoteSigner, NoteVerifier};
use fairtrail_client::proto::{self, statement::Body};
use fairtrail_client::rules::{self, LotId, Overlay, Position};
use fairtrail_client::statement::{encode, Statement};
use fairtrail_client::units::{parse_price, parse_quantity};
use fairtrail_client::verify::Policy;
use prost::Message;

/// 2024-02-01 00:00 UTC: the fixture ledger's first entry.
pub const T0: u64 = 1_706_745_600_000;
/// The fixture ledger integrates one entry a minute.
pub const MINUTE: u64 = 60_000;
/// The origin (and note key name) of the fixture log.
pub const ORIGIN: &str = "fairtrail.fuzz/log";
pub const GTIN: &str = "09506000134352";

/// The seeds of the fixture keys, in the order the envelope fuzzer's signer mask names them
/// (bit `i` of the mask is `KEY_SEEDS[i]`).
pub const KEY_SEEDS: [u8; 12] = [1, 2, 4, 5, 6, 7, 8, 9, 10, 12, 13, 14];
/// Who each fixture key is (index into [`KEY_SEEDS`]).
pub mod who {
    /// A certification body (role certifier).
    pub const CERTIFIER: usize = 0;
    /// A Honduran cooperative (producer, cooperative) with guardians 12 and 13, quorum 2.
    pub const COOP: usize = 1;
    /// A participatory guarantee system whose members are 5, 6 and 7, quorum 2.
    pub const PGS: usize = 2;
    pub const PGS_MEMBER_A: usize = 3;
    pub const PGS_MEMBER_B: usize = 4;
    pub const PGS_MEMBER_C: usize = 5;
    /// An importer (trader).
    pub const TRADER: usize = 6;
    /// A roaster (processor): holds the transferred lot.
    pub const ROASTER: usize = 7;
    /// A retailer.
    pub const RETAILER: usize = 8;
    /// The cooperative's guardians: never declared.
    pub const GUARDIAN_A: usize = 9;
    pub const GUARDIAN_B: usize = 10;
    /// A key nobody has declared: a new participant, or a new key for a rotation.
    pub const FRESH: usize = 11;
}

/// The signing key of fixture participant `i` (see [`who`]).
pub fn key(i: usize) -> SigningKey {
    SigningKey::from_bytes(&[KEY_SEEDS[i]; 32])
}

pub fn public(i: usize) -> PublicKey {
    PublicKey::from(&key(i).verifying_key())
}

fn pk_bytes(i: usize) -> Vec<u8> {
    public(i).as_bytes().to_vec()
}

/// The key the fixture log signs its checkpoints with.
pub fn log_signer() -> NoteSigner {
    NoteSigner::new(ORIGIN, SigningKey::from_bytes(&[250; 32])).expect("a valid key name")
}

pub fn log_verifier() -> NoteVerifier {
    log_signer().verifier()
}

pub fn kg(text: &str) -> proto::Quantity {
    parse_quantity(text).expect("a fixture quantity")
}

pub fn price(text: &str) -> proto::Price {
    parse_price(text).expect("a fixture price")
}

pub fn statement(issuer: usize, issued_at_ms: u64, body: Body) -> proto::Statement {
    proto::Statement {
        issuer: pk_bytes(issuer),
        issued_at_ms,
        references: Vec::new(),
        remark: String::new(),
        body: Some(body),
    }
}

pub fn declaration(
    name: &str,
    roles: &[proto::Role],
    org: proto::OrganisationType,
    country: &str,
    guardians: &[usize],
    threshold: u32,
) -> Body {
    Body::ParticipantDeclaration(proto::ParticipantDeclaration {
        name: name.into(),
        roles: roles.iter().map(|r| *r as i32).collect(),
        organisation_type: org as i32,
        country: country.into(),
        location: String::new(),
        guardians: guardians.iter().map(|g| pk_bytes(*g)).collect(),
        guardian_threshold: threshold,
    })
}

pub fn lot_input(id: StatementId, output: u32, amount: &str) -> proto::LotInput {
    proto::LotInput {
        lot: Some(
            LotId {
                statement: id,
                output,
            }
            .to_proto(),
        ),
        amount: kg(amount).amount,
    }
}

/// Signs `statement` with the fixture keys `signers`, in order.
pub fn sign(statement: &proto::Statement, signers: &[usize]) -> proto::Envelope {
    let keys: Vec<SigningKey> = signers.iter().map(|i| key(*i)).collect();
    let refs: Vec<&SigningKey> = keys.iter().collect();
    envelope::sign(encode(statement), &refs)
}

/// A small ledger of valid statements and the state the rules leave after them.
pub struct Ledger {
    /// The envelopes, in log order (entry `i` is `envelopes[i]`).
    pub envelopes: Vec<proto::Envelope>,
    pub ids: Vec<StatementId>,
    /// The rules' state after every entry.
    pub state: BTreeMap<Vec<u8>, Vec<u8>>,
    pub harvest: StatementId,
    pub certification: StatementId,
    pub transfer: StatementId,
}

impl Ledger {
    /// Where the next entry lands.
    pub fn next_position(&self, offset: u64) -> Position {
        let index = self.envelopes.len() as u64 + offset;
        Position {
            index,
            integrated_at_ms: T0 + index * MINUTE,
        }
    }

    /// When the next entry is integrated: statements issued then are on time.
    pub fn now(&self) -> u64 {
        self.next_position(0).integrated_at_ms
    }
}

/// The fixture ledger: declarations of every participant but the guardians and the fresh
/// key, a harvest of 20,000 kg by the cooperative, its third-party certification, and a
/// transfer of 16,000 kg of it to the roaster (not yet received).
pub fn ledger() -> &'static Ledger {
    static LEDGER: OnceLock<Ledger> = OnceLock::new();
    LEDGER.get_or_init(build_ledger)
}

fn build_ledger() -> Ledger {
    use proto::OrganisationType as O;
    use proto::Role as R;
    let mut ledger = Ledger {
        envelopes: Vec::new(),
        ids: Vec::new(),
        state: BTreeMap::new(),
        harvest: StatementId([0; 32]),
        certification: StatementId([0; 32]),
        transfer: StatementId([0; 32]),
    };
    let append = |ledger: &mut Ledger, issuer: usize, body: Body, cosigners: &[usize]| {
        let at = ledger.next_position(0);
        let s = statement(issuer, at.integrated_at_ms, body);
        let mut signers = vec![issuer];
        signers.extend_from_slice(cosigners);
        let wire = sign(&s, &signers);
        let env = Envelope::try_from(wire.clone()).expect("a well-formed fixture envelope");
        let st = Statement::decode(&env).expect("a well-formed fixture statement");
        let env = env
            .verify()
            .expect("fixture signatures verify")
            .into_envelope();
        let mut overlay = Overlay::new(&ledger.state);
        rules::apply(&mut overlay, &env, &st, at)
            .unwrap_or_else(|e| panic!("fixture entry {} is refused: {e}", at.index));
        let writes = overlay.into_writes();
        ledger.state.extend(writes);
        ledger.envelopes.push(wire);
        ledger.ids.push(env.id());
        env.id()
    };
    use who::*;
    append(
        &mut ledger,
        CERTIFIER,
        declaration(
            "FLOCERT",
            &[R::Certifier],
            O::CertificationBody,
            "DE",
            &[],
            0,
        ),
        &[],
    );
    append(
        &mut ledger,
        COOP,
        declaration(
            "Cooperativa Cafetalera",
            &[R::Producer, R::Cooperative],
            O::SmallholderAssociation,
            "HN",
            &[GUARDIAN_A, GUARDIAN_B],
            2,
        ),
        &[],
    );
    for (member, name) in [
        (PGS_MEMBER_A, "Finca A"),
        (PGS_MEMBER_B, "Finca B"),
        (PGS_MEMBER_C, "Finca C"),
    ] {
        append(
            &mut ledger,
            member,
            declaration(name, &[R::Producer], O::FamilyFarm, "PE", &[], 0),
            &[],
        );
    }
    append(
        &mut ledger,
        PGS,
        declaration(
            "Red Andina PGS",
            &[R::Certifier],
            O::ParticipatoryGuaranteeSystem,
            "PE",
            &[PGS_MEMBER_A, PGS_MEMBER_B, PGS_MEMBER_C],
            2,
        ),
        &[],
    );
    append(
        &mut ledger,
        TRADER,
        declaration("Importer", &[R::Trader], O::Company, "US", &[], 0),
        &[],
    );
    append(
        &mut ledger,
        ROASTER,
        declaration("Roaster", &[R::Processor], O::Company, "US", &[], 0),
        &[],
    );
    append(
        &mut ledger,
        RETAILER,
        declaration("Retailer", &[R::Retailer], O::Company, "US", &[], 0),
        &[],
    );
    ledger.harvest = append(
        &mut ledger,
        COOP,
        Body::Harvest(proto::Harvest {
            commodity: "coffee".into(),
            quantity: Some(kg("20000kg")),
            harvested_from_ms: T0 - 90 * 86_400_000,
            harvested_until_ms: T0 - 30 * 86_400_000,
            country: "HN".into(),
            region: "Santa Barbara".into(),
            farmgate_price: Some(price("USD 1.95/lb")),
            premium: Some(price("USD 0.20/lb")),
            farmer_count: 212,
            lot_code: "HN-2024-001".into(),
        }),
        &[],
    );
    ledger.certification = append(
        &mut ledger,
        CERTIFIER,
        Body::Certification(proto::Certification {
            subject: pk_bytes(COOP),
            scheme: "Fairtrade".into(),
            certificate_id: "FLO-ID 1234".into(),
            commodities: vec!["coffee".into()],
            roles: vec![R::Cooperative as i32],
            valid_from_ms: T0 - 30 * 86_400_000,
            valid_until_ms: T0 + 3 * 365 * 86_400_000,
            kind: proto::CertificationKind::ThirdParty as i32,
            network: Vec::new(),
        }),
        &[],
    );
    let harvest = ledger.harvest;
    ledger.transfer = append(
        &mut ledger,
        COOP,
        Body::Transfer(proto::Transfer {
            inputs: vec![lot_input(harvest, 0, "16000kg")],
            recipient: pk_bytes(ROASTER),
            price: Some(price("USD 3.10/lb")),
            document_reference: "INV-2024-7".into(),
        }),
        &[],
    );
    ledger
}

/// The envelope fuzzer's "rules" records: up to [`MAX_RECORDS`] statements, each
/// `mask (u16 LE) || length (u16 LE) || payload`, signed by the fixture keys the mask names
/// and applied in turn over the fixture ledger. A length past the end takes what is left.
pub const MAX_RECORDS: usize = 4;
/// Mask bit: do not add the issuer to the signers when it is a fixture key.
pub const NO_AUTO_ISSUER: u16 = 1 << 15;

/// One record of the rules mode.
pub struct Record<'a> {
    pub mask: u16,
    pub payload: &'a [u8],
}

pub fn parse_records(mut data: &[u8]) -> Vec<Record<'_>> {
    let mut records = Vec::new();
    while data.len() >= 4 && records.len() < MAX_RECORDS {
        let mask = u16::from_le_bytes([data[0], data[1]]);
        let len = usize::from(u16::from_le_bytes([data[2], data[3]]));
        let rest = &data[4..];
        let (payload, tail) = rest.split_at(len.min(rest.len()));
        records.push(Record { mask, payload });
        data = tail;
    }
    records
}

pub fn encode_record(out: &mut Vec<u8>, mask: u16, payload: &[u8]) {
    out.extend_from_slice(&mask.to_le_bytes());
    out.extend_from_slice(
        &u16::try_from(payload.len())
            .expect("a short payload")
            .to_le_bytes(),
    );
    out.extend_from_slice(payload);
}

/// The mask naming these fixture keys as signers.
pub fn mask(signers: &[usize]) -> u16 {
    signers.iter().fold(0, |m, i| m | 1 << i)
}

/// The fixture keys a mask names, with the issuer first if it is a fixture key and the mask
/// does not forbid it.
pub fn signers_for(mask: u16, issuer: &[u8]) -> Vec<usize> {
    let mut signers = Vec::new();
    if mask & NO_AUTO_ISSUER == 0 {
        if let Some(i) = (0..KEY_SEEDS.len()).find(|i| public(*i).as_bytes()[..] == *issuer) {
            signers.push(i);
        }
    }
    for i in 0..KEY_SEEDS.len() {
        if mask & (1 << i) != 0 && !signers.contains(&i) {
            signers.push(i);
        }
    }
    signers
}

/// The structured input of the `merkle_proofs` target. The derived `Arbitrary` decodes it
/// field by field (integers little-endian, each `Vec` as `1, element` pairs ended by `0`);
/// [`MerkleInput::encode`] writes that form, for the seeds.
#[derive(arbitrary::Arbitrary, Clone, Debug, PartialEq, Eq)]
pub struct MerkleInput {
    /// The hostile half: any sizes, index, hashes of any length.
    pub index: u64,
    pub size1: u64,
    pub size2: u64,
    pub leaf_hash: Vec<u8>,
    pub root1: Vec<u8>,
    pub root2: Vec<u8>,
    /// The differential half: a tree of `leaves % 130` leaves built in memory.
    pub leaves: u8,
    pub at_index: u8,
    pub at_size1: u8,
    pub at_size2: u8,
    /// Which proof hash to corrupt (`% len`) and which bit of it to flip.
    pub corrupt: u8,
    pub bit: u8,
    pub proof: Vec<Vec<u8>>,
}

fn encode_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    for b in bytes {
        out.push(1);
        out.push(*b);
    }
    out.push(0);
}

impl MerkleInput {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&self.index.to_le_bytes());
        out.extend_from_slice(&self.size1.to_le_bytes());
        out.extend_from_slice(&self.size2.to_le_bytes());
        encode_bytes(&mut out, &self.leaf_hash);
        encode_bytes(&mut out, &self.root1);
        encode_bytes(&mut out, &self.root2);
        out.extend_from_slice(&[
            self.leaves,
            self.at_index,
            self.at_size1,
            self.at_size2,
            self.corrupt,
            self.bit,
        ]);
        for h in &self.proof {
            out.push(1);
            encode_bytes(&mut out, h);
        }
        out.push(0);
        out
    }
}

/// The batch of the fixture product: what the retailer binds GTIN [`GTIN`] to.
pub const BATCH: &str = "R2024-118";

/// The rest of a product's chain after the fixture ledger, in log order: the roaster's
/// receipt of the transfer, its roasting of the lot, its sale of the roasted lot to the
/// retailer, the retailer's receipt and its binding of GTIN [`GTIN`] batch [`BATCH`]. Each
/// statement is issued when it lands right after the fixture ledger, and each is accepted
/// by the rules (the seed generator checks it).
pub struct ChainTail {
    /// Issuer (a [`who`] index) and statement, in log order.
    pub statements: Vec<(usize, proto::Statement)>,
    pub roasting: StatementId,
    pub sale: StatementId,
}

pub fn chain_tail() -> &'static ChainTail {
    static TAIL: OnceLock<ChainTail> = OnceLock::new();
    TAIL.get_or_init(build_chain_tail)
}

fn build_chain_tail() -> ChainTail {
    use who::*;
    let l = ledger();
    let mut statements = Vec::new();
    let mut add = |issuer: usize, body: Body| -> StatementId {
        let at = l.next_position(statements.len() as u64).integrated_at_ms;
        let s = statement(issuer, at, body);
        let id = StatementId::of_payload(&encode(&s));
        statements.push((issuer, s));
        id
    };
    add(
        ROASTER,
        Body::Receipt(proto::Receipt {
            transfer: l.transfer.0.to_vec(),
            outcome: proto::ReceiptOutcome::Confirmed as i32,
            amount_received: kg("16000kg").amount,
        }),
    );
    let roasting = add(
        ROASTER,
        Body::Transformation(proto::Transformation {
            inputs: vec![lot_input(l.transfer, 0, "16000kg")],
            outputs: vec![proto::LotOutput {
                commodity: "roasted coffee".into(),
                quantity: Some(kg("13000kg")),
                lot_code: BATCH.into(),
            }],
            process: "roasting".into(),
        }),
    );
    let sale = add(
        ROASTER,
        Body::Transfer(proto::Transfer {
            inputs: vec![lot_input(roasting, 0, "13000kg")],
            recipient: pk_bytes(RETAILER),
            price: Some(price("USD 9.00/kg")),
            document_reference: "INV-R-118".into(),
        }),
    );
    add(
        RETAILER,
        Body::Receipt(proto::Receipt {
            transfer: sale.0.to_vec(),
            outcome: proto::ReceiptOutcome::Confirmed as i32,
            amount_received: kg("13000kg").amount,
        }),
    );
    add(
        RETAILER,
        Body::ProductBinding(proto::ProductBinding {
            gtin: GTIN.into(),
            batch: BATCH.into(),
            serial: String::new(),
            inputs: vec![lot_input(sale, 0, "13000kg")],
            product_name: "Santa Barbara roast".into(),
        }),
    );
    ChainTail {
        statements,
        roasting,
        sale,
    }
}

/// The trust policy the bundle target verifies under: the fixture log's key, the fixture
/// certifier for Fairtrade, the fixture PGS, the Fairtrade coffee minimum and premium,
/// receipts required, and roasting yields of 780 to 880 per 1000.
pub fn policy() -> &'static Policy {
    static POLICY: OnceLock<Policy> = OnceLock::new();
    POLICY.get_or_init(|| {
        let toml = format!(
            r#"
name = "fuzz policy"
log_key = "{log_key}"
require_receipts = true
clock_skew_ms = 300000

[certifiers]
Fairtrade = ["{certifier}"]

[pgs."Red Andina PGS"]
network = "{pgs}"
quorum = 2

[commodities.coffee]
includes = ["green coffee", "roasted coffee"]
minimum_price = "USD 1.80/lb"
premium = "USD 0.20/lb"
certification_required = true
schemes = ["Fairtrade", "Red Andina PGS"]

[yields.roasting]
min_per_mille = 780
max_per_mille = 880
"#,
            log_key = log_verifier().to_text(),
            certifier = public(who::CERTIFIER),
            pgs = public(who::PGS),
        );
        Policy::from_toml(&toml).expect("the fuzz policy is valid")
    })
}

/// The input of the `bundle_verify` target: a log a dishonest node could serve, and the
/// bundle it cuts from it.
///
/// ```text
/// subject u8 || omitted fixture entries u16 LE || omitted bundle entries u32 LE ||
/// up to MAX_LOG_RECORDS records: position u8 || signers u16 LE || length u16 LE || payload
/// ```
///
/// The log starts as the fixture ledger's entries, less those whose bit is set in the
/// second field; each record's payload is then signed (as the `rules` records are, see
/// [`signers_for`]) and inserted at `position % (entries + 1)`. Entry `i` is integrated at
/// `T0 + i * MINUTE`. The bundle holds every entry of the log but those whose bit is set in
/// the third field, each with its inclusion proof, and a checkpoint the fixture log key
/// signs. The subject's low three bits pick it: 0 the product [`GTIN`] / [`BATCH`], 1 the
/// transfer's lot, 2 the harvest's lot, 3 the cooperative, otherwise the lot of the last
/// record, output `subject >> 3`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BundleInput {
    pub subject: u8,
    pub omit_fixture: u16,
    pub omit_from_bundle: u32,
    pub records: Vec<LogRecord>,
}

/// A statement a dishonest node logs: see [`BundleInput`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogRecord {
    pub position: u8,
    pub mask: u16,
    pub payload: Vec<u8>,
}

/// The most records a [`BundleInput`] holds.
pub const MAX_LOG_RECORDS: usize = 24;

impl BundleInput {
    pub fn parse(data: &[u8]) -> Option<Self> {
        let (&subject, rest) = data.split_first()?;
        let omit_fixture = u16::from_le_bytes(rest.get(..2)?.try_into().ok()?);
        let omit_from_bundle = u32::from_le_bytes(rest.get(2..6)?.try_into().ok()?);
        let mut data = rest.get(6..)?;
        let mut records = Vec::new();
        while data.len() >= 5 && records.len() < MAX_LOG_RECORDS {
            let position = data[0];
            let mask = u16::from_le_bytes([data[1], data[2]]);
            let len = usize::from(u16::from_le_bytes([data[3], data[4]]));
            let rest = &data[5..];
            let (payload, tail) = rest.split_at(len.min(rest.len()));
            records.push(LogRecord {
                position,
                mask,
                payload: payload.to_vec(),
            });
            data = tail;
        }
        Some(BundleInput {
            subject,
            omit_fixture,
            omit_from_bundle,
            records,
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![self.subject];
        out.extend_from_slice(&self.omit_fixture.to_le_bytes());
        out.extend_from_slice(&self.omit_from_bundle.to_le_bytes());
        for r in &self.records {
            out.push(r.position);
            encode_record(&mut out, r.mask, &r.payload);
        }
        out
    }

    /// The fixture product's whole chain with every statement a record (the fixture
    /// ledger's entries all left out and logged again from records), so that mutations
    /// reach the declarations, the harvest and the certification too.
    pub fn whole_chain_as_records(subject: u8) -> Self {
        let l = ledger();
        let mut records: Vec<LogRecord> = l
            .envelopes
            .iter()
            .enumerate()
            .map(|(i, wire)| {
                let issuer = proto::Statement::decode(wire.payload.as_slice())
                    .expect("a fixture statement")
                    .issuer;
                let signer = (0..KEY_SEEDS.len())
                    .find(|k| public(*k).as_bytes()[..] == issuer[..])
                    .expect("a fixture issuer");
                LogRecord {
                    position: u8::try_from(i).expect("a short ledger"),
                    mask: mask(&[signer]) | NO_AUTO_ISSUER,
                    payload: wire.payload.clone(),
                }
            })
            .collect();
        records.extend(Self::whole_chain(subject).records);
        BundleInput {
            subject,
            omit_fixture: u16::MAX,
            omit_from_bundle: 0,
            records,
        }
    }

    /// The fixture product's whole chain: the fixture ledger, then [`chain_tail`] appended.
    /// Each record's mask names its issuer and sets [`NO_AUTO_ISSUER`], so that flipping
    /// one bit of a mask leaves a statement its issuer did not sign.
    pub fn whole_chain(subject: u8) -> Self {
        let start = ledger().envelopes.len();
        BundleInput {
            subject,
            omit_fixture: 0,
            omit_from_bundle: 0,
            records: chain_tail()
                .statements
                .iter()
                .enumerate()
                .map(|(i, (issuer, s))| LogRecord {
                    position: u8::try_from(start + i).expect("a short ledger"),
                    mask: mask(&[*issuer]) | NO_AUTO_ISSUER,
                    payload: encode(s),
                })
                .collect(),
        }
    }
}

/// The log a [`BundleInput`] describes, and the bundle cut from it.
pub struct ServedLog {
    /// Every entry, in log order: its envelope and its leaf.
    pub envelopes: Vec<proto::Envelope>,
    pub leaves: Vec<Vec<u8>>,
    pub tree: MemoryTree,
    pub bundle: Bundle,
}

impl BundleInput {
    pub fn serve(&self) -> ServedLog {
        let l = ledger();
        let mut envelopes: Vec<proto::Envelope> = l
            .envelopes
            .iter()
            .enumerate()
            .filter(|(i, _)| *i >= 16 || self.omit_fixture & (1 << i) == 0)
            .map(|(_, e)| e.clone())
            .collect();
        let mut last = None;
        for r in &self.records {
            let issuer = proto::Statement::decode(r.payload.as_slice())
                .map(|s| s.issuer)
                .unwrap_or_default();
            let keys: Vec<SigningKey> = signers_for(r.mask, &issuer)
                .iter()
                .map(|i| key(*i))
                .collect();
            let refs: Vec<&SigningKey> = keys.iter().collect();
            let wire = envelope::sign(r.payload.clone(), &refs);
            last = Some(StatementId::of_payload(&r.payload));
            let at = usize::from(r.position) % (envelopes.len() + 1);
            envelopes.insert(at, wire);
        }
        let mut kept = Vec::with_capacity(envelopes.len());
        let mut leaves = Vec::with_capacity(envelopes.len());
        for wire in envelopes {
            let at = T0 + leaves.len() as u64 * MINUTE;
            // A node cannot log what has no leaf encoding (an envelope over the size limit).
            if let Ok(leaf) = encode_leaf(wire.clone(), at) {
                leaves.push(leaf);
                kept.push(wire);
            }
        }
        let mut tree = MemoryTree::new();
        for leaf in &leaves {
            tree.push_leaf_hash(leaf_hash(leaf));
        }
        let checkpoint = Checkpoint {
            origin: ORIGIN.into(),
            size: tree.len(),
            root: tree.root(),
            extensions: vec![],
        }
        .sign(&log_signer())
        .expect("a checkpoint signs");
        let size = tree.len();
        let entries = leaves
            .iter()
            .enumerate()
            .filter(|(i, _)| *i >= 32 || self.omit_from_bundle & (1 << i) == 0)
            .map(|(i, leaf)| BundleEntry {
                index: i as u64,
                leaf: leaf.clone(),
                inclusion_proof: tree
                    .prove_inclusion(i as u64, size)
                    .expect("an index inside the tree"),
            })
            .collect();
        let subject = match self.subject & 7 {
            0 => Subject::Product(ProductId::new(GTIN, BATCH, None).expect("a valid product")),
            1 => Subject::Lot(LotId {
                statement: l.transfer,
                output: 0,
            }),
            2 => Subject::Lot(LotId {
                statement: l.harvest,
                output: 0,
            }),
            3 => Subject::Participant(public(who::COOP)),
            _ => Subject::Lot(LotId {
                statement: last.unwrap_or(l.transfer),
                output: u32::from(self.subject >> 3),
            }),
        };
        let bundle = Bundle::new(subject, checkpoint, entries).expect("a well-formed bundle");
        ServedLog {
            envelopes: kept,
            leaves,
            tree,
            bundle,
        }
    }
}
