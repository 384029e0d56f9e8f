//! The CLI's commands and what they share: keys, the node connection, the pinned log key,
//! signing a statement and either submitting it or writing it for later.

pub mod audit;
pub mod demo;
pub mod ledger;
pub mod qr;
pub mod state;
pub mod statements;
pub mod verify;

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};
use ed25519_dalek::SigningKey;
use fairtrail_client::envelope::{self, EnvelopeJson, StatementId};
use fairtrail_client::keys::{read_signing_key, PublicKey};
use fairtrail_client::note::NoteVerifier;
use fairtrail_client::proto;
use fairtrail_client::receipt::{ReceiptJson, VerifiedReceipt};
use fairtrail_client::rpc::NodeClient;
use fairtrail_client::statement::{encode, now_ms};

use crate::Global;
use state::State;

/// Exit codes: 0 success; 1 an error; 2 bad usage (clap); 3 a fork (two checkpoints that
/// cannot both be true).
pub const EXIT_OK: u8 = 0;
pub const EXIT_ERROR: u8 = 1;
pub const EXIT_FORK: u8 = 3;

pub fn signing_key(g: &Global) -> anyhow::Result<SigningKey> {
    let path = g
        .key
        .as_ref()
        .ok_or_else(|| anyhow!("this command signs: give your key with --key FILE or FAIRTRAIL_KEY (make one with `fairtrail keygen`)"))?;
    Ok(read_signing_key(path)?)
}

#[allow(dead_code)]
pub fn read_key_file(path: &Path) -> anyhow::Result<SigningKey> {
    Ok(read_signing_key(path)?)
}

#[allow(dead_code)]
pub fn public_key(key: &SigningKey) -> PublicKey {
    PublicKey::from(&key.verifying_key())
}

pub fn state_path(g: &Global) -> PathBuf {
    g.state.clone().unwrap_or_else(state::default_path)
}

pub async fn connect(g: &Global) -> anyhow::Result<NodeClient> {
    Ok(NodeClient::connect(&g.node).await?)
}

/// The log key to check this node's answers with: `--log-key`, else the key pinned for this
/// node URL, else (first contact) the key the node shows, pinned from now on.
pub async fn log_key(g: &Global, client: &mut NodeClient) -> anyhow::Result<NoteVerifier> {
    if let Some(text) = &g.log_key {
        return NoteVerifier::from_text(text)
            .with_context(|| "--log-key is not a verifier key (name+hexkeyid+base64key)");
    }
    let path = state_path(g);
    let mut state = State::load(&path)?;
    if let Some(text) = state.pinned.get(&g.node) {
        return NoteVerifier::from_text(text)
            .with_context(|| format!("the log key pinned in {} is damaged", path.display()));
    }
    let shown = client.checkpoint().await?.verifier_key;
    let key =
        NoteVerifier::from_text(&shown).with_context(|| "the node's verifier key is malformed")?;
    eprintln!(
        "note: first contact with {}: pinning its log key {shown} in {} (pass --log-key to pin another)",
        g.node,
        path.display()
    );
    state.pinned.insert(g.node.clone(), shown);
    state.save(&path)?;
    Ok(key)
}

/// A statement header for `key`, issued now.
pub fn statement(
    key: &SigningKey,
    body: proto::statement::Body,
    remark: Option<String>,
) -> proto::Statement {
    proto::Statement {
        issuer: key.verifying_key().to_bytes().to_vec(),
        issued_at_ms: now_ms(),
        references: Vec::new(),
        remark: remark.unwrap_or_default(),
        body: Some(body),
    }
}

/// Signs `statement` with `keys` (the issuer first) and either writes the envelope to `out`
/// for later submission, or submits it and prints the checked receipt.
pub async fn sign_and_send(
    g: &Global,
    statement: &proto::Statement,
    keys: &[&SigningKey],
    out: Option<&Path>,
) -> anyhow::Result<u8> {
    let wire = envelope::sign(encode(statement), keys);
    if let Some(out) = out {
        return write_envelope(g, &wire, out);
    }
    submit_envelope(g, wire).await
}

/// Writes an envelope as DSSE JSON, refusing to overwrite a file.
pub fn write_envelope(g: &Global, wire: &proto::Envelope, out: &Path) -> anyhow::Result<u8> {
    let id = StatementId::of_payload(&wire.payload);
    let text = serde_json::to_string_pretty(&EnvelopeJson::from(wire))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    let mut file = options
        .open(out)
        .with_context(|| format!("cannot create {} (it must not exist yet)", out.display()))?;
    std::io::Write::write_all(&mut file, format!("{text}\n").as_bytes())?;
    if g.json {
        println!(
            "{}",
            serde_json::json!({ "statement_id": id.to_string(), "file": out.display().to_string() })
        );
    } else {
        println!(
            "signed statement {id}\nwritten to {} (submit it later with `fairtrail submit {}`)",
            out.display(),
            out.display()
        );
    }
    Ok(EXIT_OK)
}

/// Submits an envelope, checks the receipt against the log key, and prints it.
pub async fn submit_envelope(g: &Global, wire: proto::Envelope) -> anyhow::Result<u8> {
    let mut client = connect(g).await?;
    let key = log_key(g, &mut client).await?;
    let id = StatementId::of_payload(&wire.payload);
    let response = client.submit(wire).await?;
    let receipt = response
        .receipt
        .ok_or_else(|| anyhow!("the node answered without a receipt"))?;
    if receipt.statement_id != id.as_bytes() {
        anyhow::bail!("the node's receipt is for another statement than the one submitted ({id})");
    }
    let mut json = ReceiptJson::from(&receipt);
    json.existing = response.existing;
    let verified = json
        .verify(&key)
        .context("the node's receipt does not verify")?;
    print_receipt(g, &json, &verified);
    Ok(EXIT_OK)
}

pub fn print_receipt(g: &Global, json: &ReceiptJson, v: &VerifiedReceipt) {
    if g.json {
        println!("{}", serde_json::to_string_pretty(json).unwrap_or_default());
        return;
    }
    let what = if json.existing {
        "already logged"
    } else {
        "logged"
    };
    println!(
        "{what}: {} by {}\n  entry      #{}\n  statement  {}\n  checkpoint {} at size {} (signature and inclusion proof verified)",
        v.kind, v.issuer, v.index, v.statement_id, v.checkpoint.origin, v.checkpoint.size
    );
}
