//! Writes the seed corpora of the fuzz targets into `fuzz/corpus/<target>/seed-*`: real
//! envelopes, statements, notes, checkpoints, proofs, bundles and receipts made by the
//! library from the fixture ledger, the published signed-note vectors and the RFC 9162 proof
//! vectors from `../shared/testdata/`. Deterministic: running it again rewrites the same
//! files. Run from the repository root:
//!
//!     cargo run --manifest-path fuzz/Cargo.toml --example seeds
//!
//! It checks what it writes: each structured seed decodes (with `arbitrary`, as the target
//! will) to the input it was made from, and the receipt and bundle seeds verify.

use std::fs;
use std::path::{Path, PathBuf};

use arbitrary::{Arbitrary, Unstructured};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use fairtrail_client::bundle::{Bundle, BundleEntry, Subject};
use fairtrail_client::checkpoint::Checkpoint;
use fairtrail_client::envelope::{EnvelopeJson, StatementId};
use fairtrail_client::merkle::{leaf_hash, MemoryTree};
use fairtrail_client::proto::{self, statement::Body};
use fairtrail_client::receipt::ReceiptJson;
use fairtrail_client::rules::LotId;
use fairtrail_client::statement::encode;
use fairtrail_fuzz::who::*;
use fairtrail_fuzz::*;
use prost::Message;

fn corpus(target: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    fs::create_dir_all(&dir).expect("create the corpus directory");
    dir
}

fn write(target: &str, name: &str, bytes: &[u8]) {
    if target == "envelope_statement" && name.starts_with("rules-") {
        check_rules_seed(name, &bytes[1..]);
    }
    let path = corpus(target).join(format!("seed-{name}"));
    fs::write(&path, bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata")
}

fn main() {
    envelope_statement();
    signed_note();
    merkle_proofs();
    digital_link();
    bundle_verify();
    println!("seeds written under {}", corpus("").display());
}

/// Every record of a rules-mode seed is accepted, so the seed reaches the rules' writes.
fn check_rules_seed(name: &str, data: &[u8]) {
    use fairtrail_client::envelope::Envelope;
    use fairtrail_client::rules::{self, Overlay};
    use fairtrail_client::statement::Statement;
    let l = ledger();
    let mut overlay = Overlay::new(&l.state);
    for (i, record) in parse_records(data).iter().enumerate() {
        let decoded = proto::Statement::decode(record.payload).expect("a statement");
        let keys: Vec<_> = signers_for(record.mask, &decoded.issuer)
            .iter()
            .map(|i| key(*i))
            .collect();
        let refs: Vec<_> = keys.iter().collect();
        let wire = fairtrail_client::envelope::sign(record.payload.to_vec(), &refs);
        let envelope = Envelope::try_from(wire).expect("an envelope");
        let statement = Statement::decode(&envelope).expect("a statement");
        rules::apply(
            &mut overlay,
            &envelope,
            &statement,
            l.next_position(i as u64),
        )
        .unwrap_or_else(|e| panic!("seed {name}: record {i} is refused: {e}"));
    }
}

fn with_mode(mode: u8, bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![mode];
    out.extend_from_slice(bytes);
    out
}

/// The rules-mode records, each a statement by `issuer` signed by the fixture keys `mask`
/// names (plus the issuer).
struct Records(Vec<u8>);

impl Records {
    fn new() -> Self {
        Records(vec![1])
    }
    fn push(&mut self, mask: u16, s: &proto::Statement) -> StatementId {
        let payload = encode(s);
        encode_record(&mut self.0, mask, &payload);
        StatementId::of_payload(&payload)
    }
}

fn envelope_statement() {
    const T: &str = "envelope_statement";
    let l = ledger();
    let now = l.now();

    // Raw mode: the fixture's own envelopes (declaration, harvest, certification, transfer),
    // a statement payload, a DSSE JSON envelope, and a co-signed rotation.
    for (name, i) in [("declaration", 1), ("pgs-declaration", 5)] {
        write(
            T,
            &format!("raw-envelope-{name}"),
            &with_mode(0, &l.envelopes[i].encode_to_vec()),
        );
    }
    let n = l.envelopes.len();
    for (name, i) in [
        ("harvest", n - 3),
        ("certification", n - 2),
        ("transfer", n - 1),
    ] {
        write(
            T,
            &format!("raw-envelope-{name}"),
            &with_mode(0, &l.envelopes[i].encode_to_vec()),
        );
    }
    write(
        T,
        "raw-statement-harvest",
        &with_mode(0, &l.envelopes[n - 3].payload),
    );
    let json = serde_json::to_string(&EnvelopeJson::from(&l.envelopes[n - 1])).unwrap();
    write(T, "raw-json-transfer", &with_mode(0, json.as_bytes()));
    let rotation = statement(
        COOP,
        now,
        Body::KeyRotation(proto::KeyRotation {
            new_key: public(FRESH).as_bytes().to_vec(),
            recovery: false,
        }),
    );
    let wire = sign(&rotation, &[COOP, FRESH]);
    write(
        T,
        "raw-envelope-rotation",
        &with_mode(0, &wire.encode_to_vec()),
    );

    // Rules mode.
    let transfer_lot = |amount: &str| lot_input(l.transfer, 0, amount);
    let one = |name: &str, signers: &[usize], s: proto::Statement| {
        let mut r = Records::new();
        r.push(mask(signers), &s);
        write(T, &format!("rules-{name}"), &r.0);
    };
    one(
        "receipt",
        &[],
        statement(
            ROASTER,
            now,
            Body::Receipt(proto::Receipt {
                transfer: l.transfer.as_bytes().to_vec(),
                outcome: proto::ReceiptOutcome::Confirmed as i32,
                amount_received: kg("16000kg").amount,
            }),
        ),
    );
    let roast = Body::Transformation(proto::Transformation {
        inputs: vec![transfer_lot("8000kg")],
        outputs: vec![proto::LotOutput {
            commodity: "roasted coffee".into(),
            quantity: Some(kg("6640kg")),
            lot_code: "RST-1".into(),
        }],
        process: "roasting".into(),
    });
    one(
        "transformation",
        &[],
        statement(ROASTER, now, roast.clone()),
    );
    let binding = |inputs: Vec<proto::LotInput>| {
        Body::ProductBinding(proto::ProductBinding {
            gtin: GTIN.into(),
            batch: "R2024-118".into(),
            serial: "0042".into(),
            inputs,
            product_name: "Honduras Marcala, whole bean 340 g".into(),
        })
    };
    one(
        "binding",
        &[],
        statement(ROASTER, now, binding(vec![transfer_lot("1000kg")])),
    );
    one(
        "revocation",
        &[],
        statement(
            CERTIFIER,
            now,
            Body::Revocation(proto::Revocation {
                certification: l.certification.as_bytes().to_vec(),
                kind: proto::RevocationKind::Suspended as i32,
                effective_at_ms: now,
                reason: "audit found unpaid premiums".into(),
            }),
        ),
    );
    one(
        "participatory-certification",
        &[PGS_MEMBER_B],
        statement(
            PGS_MEMBER_A,
            now,
            Body::Certification(proto::Certification {
                subject: public(COOP).as_bytes().to_vec(),
                scheme: "Red Andina PGS".into(),
                certificate_id: String::new(),
                commodities: vec!["coffee".into()],
                roles: Vec::new(),
                valid_from_ms: now,
                valid_until_ms: now + 365 * 86_400_000,
                kind: proto::CertificationKind::Participatory as i32,
                network: public(PGS).as_bytes().to_vec(),
            }),
        ),
    );
    one(
        "dispute",
        &[],
        statement(
            TRADER,
            now,
            Body::Dispute(proto::Dispute {
                entry: l.harvest.as_bytes().to_vec(),
                reason: "the farmgate price is not what farmers report".into(),
            }),
        ),
    );
    one("rotation", &[FRESH], rotation.clone());
    let mut recovery = rotation.clone();
    if let Some(Body::KeyRotation(r)) = &mut recovery.body {
        r.recovery = true;
    }
    one(
        "recovery",
        &[GUARDIAN_A, GUARDIAN_B, FRESH],
        recovery.clone(),
    );
    // The recovery without the automatic issuer signature: the guardians alone.
    let mut r = Records::new();
    r.push(
        mask(&[GUARDIAN_A, GUARDIAN_B, FRESH]) | NO_AUTO_ISSUER,
        &recovery,
    );
    write(T, "rules-recovery-guardians-only", &r.0);

    // Sequences: a statement, then one that builds on it.
    let mut r = Records::new();
    r.push(
        0,
        &statement(
            FRESH,
            now,
            declaration(
                "Finca Nueva",
                &[proto::Role::Producer],
                proto::OrganisationType::FamilyFarm,
                "GT",
                &[],
                0,
            ),
        ),
    );
    r.push(
        0,
        &statement(
            FRESH,
            now,
            Body::Harvest(proto::Harvest {
                commodity: "cocoa".into(),
                quantity: Some(kg("500kg")),
                harvested_from_ms: now - 86_400_000,
                harvested_until_ms: now,
                country: "GT".into(),
                region: String::new(),
                farmgate_price: Some(price("USD 2.40/kg")),
                premium: None,
                farmer_count: 1,
                lot_code: String::new(),
            }),
        ),
    );
    write(T, "rules-declare-then-harvest", &r.0);

    let mut r = Records::new();
    let t = r.push(
        0,
        &statement(
            COOP,
            now,
            Body::Transfer(proto::Transfer {
                inputs: vec![lot_input(l.harvest, 0, "4000kg")],
                recipient: public(TRADER).as_bytes().to_vec(),
                price: Some(price("USD 3.20/lb")),
                document_reference: "INV-2024-8".into(),
            }),
        ),
    );
    r.push(
        0,
        &statement(
            TRADER,
            now,
            Body::Receipt(proto::Receipt {
                transfer: t.as_bytes().to_vec(),
                outcome: proto::ReceiptOutcome::Disputed as i32,
                amount_received: kg("3900kg").amount,
            }),
        ),
    );
    write(T, "rules-transfer-then-receipt", &r.0);

    let mut r = Records::new();
    let roasted = r.push(0, &statement(ROASTER, now, roast));
    r.push(
        0,
        &statement(ROASTER, now, binding(vec![lot_input(roasted, 0, "340kg")])),
    );
    write(T, "rules-roast-then-bind", &r.0);

    let mut r = Records::new();
    let shipped = r.push(
        0,
        &statement(
            ROASTER,
            now,
            Body::Transfer(proto::Transfer {
                inputs: vec![transfer_lot("2000kg")],
                recipient: public(RETAILER).as_bytes().to_vec(),
                price: None,
                document_reference: String::new(),
            }),
        ),
    );
    r.push(
        0,
        &statement(
            RETAILER,
            now,
            binding(vec![lot_input(shipped, 0, "2000kg")]),
        ),
    );
    write(T, "rules-ship-then-bind", &r.0);

    let mut harvest = statement(
        COOP,
        now,
        Body::Harvest(proto::Harvest {
            commodity: "coffee".into(),
            quantity: Some(kg("1.5t")),
            harvested_from_ms: now - 86_400_000,
            harvested_until_ms: now,
            country: "HN".into(),
            region: "Copán".into(),
            farmgate_price: Some(price("HNL 48.50/kg")),
            premium: Some(price("USD 0.20/lb")),
            farmer_count: 40,
            lot_code: "HN-2024-002".into(),
        }),
    );
    harvest.references = vec![l.harvest.as_bytes().to_vec()];
    harvest.remark = "second picking".into();
    one("harvest-with-reference", &[], harvest);
}

fn vectors() -> serde_json::Map<String, serde_json::Value> {
    let path = testdata().join("signed-note/vectors.json");
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    match serde_json::from_str(&text).expect("vectors.json is JSON") {
        serde_json::Value::Object(map) => map,
        _ => panic!("vectors.json is not an object"),
    }
}

/// The fixture log as a node would have it: leaves, tree, signed checkpoint.
struct Log {
    leaves: Vec<Vec<u8>>,
    tree: MemoryTree,
    checkpoint: String,
}

fn log() -> Log {
    // The fixture ledger alone, served whole.
    let served = BundleInput {
        subject: 0,
        omit_fixture: 0,
        omit_from_bundle: 0,
        records: Vec::new(),
    }
    .serve();
    Log {
        leaves: served.leaves,
        tree: served.tree,
        checkpoint: served.bundle.checkpoint,
    }
}

fn signed_note() {
    const T: &str = "signed_note";
    for (name, v) in vectors() {
        write(
            T,
            &format!("{name}-note"),
            v["note"].as_str().unwrap().as_bytes(),
        );
        write(
            T,
            &format!("{name}-verifier-key"),
            v["verifier_key"].as_str().unwrap().as_bytes(),
        );
        if let Some(skey) = v.get("signer_key").and_then(|k| k.as_str()) {
            write(T, &format!("{name}-signer-key"), skey.as_bytes());
        }
    }
    let log = log();
    write(T, "fixture-checkpoint", log.checkpoint.as_bytes());
    write(T, "fixture-log-key", log_verifier().to_text().as_bytes());
    let with_extensions = Checkpoint {
        origin: ORIGIN.into(),
        size: 0,
        root: fairtrail_client::merkle::empty_root(),
        extensions: vec!["timestamp 1706745600".into(), "— not a signature".into()],
    };
    write(
        T,
        "checkpoint-body-extensions",
        with_extensions.body().as_bytes(),
    );
    // Two signatures, one by an unknown key.
    let other = fairtrail_client::note::NoteSigner::new(
        "witness.example/w1",
        ed25519_dalek::SigningKey::from_bytes(&[77; 32]),
    )
    .unwrap();
    let twice = other.sign(&with_extensions.body()).unwrap();
    let mine = log_signer().sign(&with_extensions.body()).unwrap();
    let (text, sigs) = twice.rsplit_once("\n\n").unwrap();
    let (_, my_sig) = mine.rsplit_once("\n\n").unwrap();
    write(
        T,
        "checkpoint-cosigned",
        format!("{text}\n\n{sigs}{my_sig}").as_bytes(),
    );
}

fn hash_b64(v: &serde_json::Value) -> Vec<u8> {
    v.as_str()
        .map(|s| B64.decode(s).expect("base64"))
        .unwrap_or_default()
}

fn proof_b64(v: &serde_json::Value) -> Vec<Vec<u8>> {
    v.as_array()
        .map(|a| a.iter().map(hash_b64).collect())
        .unwrap_or_default()
}

fn merkle_seed(name: &str, input: &MerkleInput) {
    let bytes = input.encode();
    let decoded = MerkleInput::arbitrary_take_rest(Unstructured::new(&bytes)).expect("decodes");
    assert_eq!(
        &decoded, input,
        "the seed {name} does not decode to its input"
    );
    write("merkle_proofs", name, &bytes);
}

fn merkle_proofs() {
    let dir = testdata().join("rfc9162");
    let cases = [
        "inclusion/1/happy-path.json",
        "inclusion/2/happy-path.json",
        "inclusion/3/happy-path.json",
        "inclusion/4/happy-path.json",
        "inclusion/1/modified-proof[0]-bit-@3.json",
        "inclusion/2/trailing-garbage.json",
        "consistency/1/happy-path.json",
        "consistency/2/happy-path.json",
        "consistency/3/happy-path.json",
        "consistency/4/happy-path.json",
        "consistency/2/size2-div-@2.json",
        "consistency/additional/sizes-are-equal-one-and-proof-is-empty.json",
    ];
    for (n, case) in cases.iter().enumerate() {
        let path = dir.join(case);
        let Ok(text) = fs::read_to_string(&path) else {
            eprintln!("skipping missing vector {}", path.display());
            continue;
        };
        let v: serde_json::Value = serde_json::from_str(&text).expect("a JSON vector");
        let name = case
            .trim_end_matches(".json")
            .replace(['/', '@', '[', ']'], "-");
        let input = if case.starts_with("inclusion") {
            MerkleInput {
                index: v["leafIdx"].as_u64().unwrap_or(0),
                size1: 0,
                size2: v["treeSize"].as_u64().unwrap_or(0),
                leaf_hash: hash_b64(&v["leafHash"]),
                root1: hash_b64(&v["root"]),
                root2: hash_b64(&v["root"]),
                leaves: 7 + 13 * n as u8,
                at_index: 3 * n as u8,
                at_size1: 5 + n as u8,
                at_size2: 40 + 17 * n as u8,
                corrupt: n as u8,
                bit: 11 * n as u8,
                proof: proof_b64(&v["proof"]),
            }
        } else {
            MerkleInput {
                index: 0,
                size1: v["size1"].as_u64().unwrap_or(0),
                size2: v["size2"].as_u64().unwrap_or(0),
                leaf_hash: hash_b64(&v["root1"]),
                root1: hash_b64(&v["root1"]),
                root2: hash_b64(&v["root2"]),
                leaves: 128 - 9 * n as u8,
                at_index: 2 * n as u8,
                at_size1: 3 + 7 * n as u8,
                at_size2: 100 + n as u8,
                corrupt: 2 * n as u8,
                bit: 255 - n as u8,
                proof: proof_b64(&v["proof"]),
            }
        };
        merkle_seed(&name, &input);
    }
}

fn digital_link() {
    const T: &str = "digital_link";
    let texts = [
        (
            "link-serial",
            "https://id.example.org/01/09506000134352/10/R2024-118/21/0042",
        ),
        (
            "link-gtin13-prefix-query",
            "https://example.com/shop/01/4006381333931/10/L1?lang=es#top",
        ),
        (
            "link-percent",
            "https://trace.example.org/01/09506000134352/10/LOT-7%2FA/21/42",
        ),
        ("link-path", "/01/00000096385074/10/A%21B"),
        ("gtin-8", "96385074"),
        ("gtin-14", " 09506000134352\n"),
        ("qty-kg", "69.5 kg"),
        ("qty-t", "2t"),
        ("qty-pcs", "12pcs"),
        ("qty-l", "3l"),
        ("price-lb", "USD 1.80/lb"),
        ("price-kg", "USD 4.25/kg"),
        ("price-jpy", "JPY 500/kg"),
        ("price-bhd", "BHD 1.250/l"),
        ("price-pcs", "EUR 0.02/pcs"),
    ];
    for (name, text) in texts {
        write(T, name, text.as_bytes());
    }

    let l = ledger();
    let log = log();
    let size = log.tree.len();
    let n = l.envelopes.len();
    // A receipt for the transfer, as `fairtrail submit --json` prints it.
    let index = n as u64 - 1;
    let leaf = &log.leaves[n - 1];
    let receipt = ReceiptJson {
        index,
        statement_id: l.transfer.to_string(),
        leaf_hash: hex::encode(leaf_hash(leaf)),
        leaf: B64.encode(leaf),
        checkpoint: log.checkpoint.clone(),
        inclusion_proof: log
            .tree
            .prove_inclusion(index, size)
            .unwrap()
            .iter()
            .map(hex::encode)
            .collect(),
        existing: false,
    };
    let json = serde_json::to_string_pretty(&receipt).unwrap();
    ReceiptJson::parse(&json)
        .unwrap()
        .verify(&log_verifier())
        .expect("the receipt seed verifies");
    write(T, "receipt", json.as_bytes());

    // Bundles of the harvest, the transfer's lot, the cooperative and a product.
    let entries = |indices: &[usize]| -> Vec<BundleEntry> {
        indices
            .iter()
            .map(|&i| BundleEntry {
                index: i as u64,
                leaf: log.leaves[i].clone(),
                inclusion_proof: log.tree.prove_inclusion(i as u64, size).unwrap(),
            })
            .collect()
    };
    let bundles = [
        (
            "bundle-lot",
            Subject::Lot(LotId {
                statement: l.transfer,
                output: 0,
            }),
            entries(&[1, n - 3, n - 1]),
        ),
        (
            "bundle-participant",
            Subject::Participant(public(COOP)),
            entries(&[1, n - 2]),
        ),
        (
            "bundle-product",
            Subject::Product(
                fairtrail_client::gs1::ProductId::new(GTIN, "R2024-118", None).unwrap(),
            ),
            entries(&[0]),
        ),
    ];
    for (name, subject, entries) in bundles {
        let b = Bundle::new(subject, log.checkpoint.clone(), entries).expect("a bundle");
        write(T, name, b.to_json().as_bytes());
    }
}

/// The fixture product's whole chain as a dishonest node could serve it, about each kind of
/// subject; the chain's tail is accepted by the rules, and the product's bundle verifies.
fn bundle_verify() {
    use fairtrail_client::rules::{self, Overlay};
    use fairtrail_client::statement::Statement;
    use fairtrail_client::verify::{verify_bundle, Verdict};
    const T: &str = "bundle_verify";
    let l = ledger();
    let mut state = l.state.clone();
    for (offset, (issuer, s)) in chain_tail().statements.iter().enumerate() {
        let wire = sign(s, &[*issuer]);
        let env = fairtrail_client::envelope::Envelope::try_from(wire)
            .expect("a tail envelope")
            .verify()
            .expect("a tail envelope verifies")
            .into_envelope();
        let st = Statement::decode(&env).expect("a tail statement");
        let mut overlay = Overlay::new(&state);
        rules::apply(&mut overlay, &env, &st, l.next_position(offset as u64))
            .unwrap_or_else(|e| panic!("tail statement {offset} is refused: {e}"));
        let writes = overlay.into_writes();
        state.extend(writes);
    }
    let named = [
        ("product", 0),
        ("transfer-lot", 1),
        ("harvest-lot", 2),
        ("cooperative", 3),
        ("roasted-lot", 4),
    ];
    for (name, subject) in named {
        let mut input = BundleInput::whole_chain(subject);
        if subject == 4 {
            // The lot of the last record: the roasting, inserted last at its place in the
            // log (between the roaster's receipt and its sale).
            let roasting = input.records.remove(1);
            for r in &mut input.records[1..] {
                r.position -= 1;
            }
            input.records.push(roasting);
        }
        let bytes = input.encode();
        assert_eq!(BundleInput::parse(&bytes).as_ref(), Some(&input));
        let report = verify_bundle(&input.serve().bundle, policy());
        assert_eq!(
            report.verdict,
            Verdict::Verified,
            "the {name} seed verifies: {:?}",
            report
                .failures()
                .chain(report.warnings())
                .collect::<Vec<_>>()
        );
        write(T, &format!("chain-{name}"), &bytes);
    }
    // The same, every statement a record.
    let input = BundleInput::whole_chain_as_records(0);
    let bytes = input.encode();
    assert_eq!(BundleInput::parse(&bytes).as_ref(), Some(&input));
    let served = input.serve();
    assert_eq!(served.leaves, BundleInput::whole_chain(0).serve().leaves);
    assert_eq!(
        verify_bundle(&served.bundle, policy()).verdict,
        Verdict::Verified
    );
    write(T, "records-product", &bytes);
    // The product's chain with the roaster's receipt left out of the bundle.
    let mut input = BundleInput::whole_chain(0);
    input.omit_from_bundle = 1 << l.envelopes.len();
    write(T, "chain-product-no-receipt", &input.encode());
}
