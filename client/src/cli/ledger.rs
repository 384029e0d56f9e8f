//! Ledger commands: keygen, declare, submit, checkpoint, get, prove, verify-receipt.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use clap::{Args, ValueEnum};
use fairtrail_client::checkpoint::SignedCheckpoint;
use fairtrail_client::entry::Leaf;
use fairtrail_client::envelope::{Envelope, EnvelopeJson, StatementId};
use fairtrail_client::keys::{generate_signing_key, write_signing_key, PublicKey};
use fairtrail_client::merkle::{
    hash_from_bytes, hashes_from_bytes, verify_consistency, verify_inclusion,
};
use fairtrail_client::note::NoteVerifier;
use fairtrail_client::proto;
use fairtrail_client::receipt::ReceiptJson;
use fairtrail_client::statement::Statement;

use super::state::{LogState, State};
use super::{
    connect, log_key, print_receipt, sign_and_send, signing_key, state_path, EXIT_FORK, EXIT_OK,
};
use crate::Global;

#[derive(Args, Debug)]
pub struct KeygenArgs {
    /// Where to write the private key (PKCS#8 PEM, mode 0600); never overwritten.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn keygen(g: &Global, a: KeygenArgs) -> anyhow::Result<u8> {
    let key = generate_signing_key();
    write_signing_key(&a.out, &key)?;
    let public = PublicKey::from(&key.verifying_key());
    if g.json {
        println!(
            "{}",
            serde_json::json!({ "public_key": public.to_string(), "key_file": a.out.display().to_string() })
        );
    } else {
        println!("{public}");
        eprintln!(
            "private key written to {} (keep it safe: it is your identity)",
            a.out.display()
        );
    }
    Ok(EXIT_OK)
}

/// A participant's role, as the CLI spells it.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum RoleArg {
    Producer,
    Cooperative,
    Trader,
    Processor,
    Retailer,
    Certifier,
    Monitor,
}

impl From<RoleArg> for proto::Role {
    fn from(r: RoleArg) -> Self {
        match r {
            RoleArg::Producer => proto::Role::Producer,
            RoleArg::Cooperative => proto::Role::Cooperative,
            RoleArg::Trader => proto::Role::Trader,
            RoleArg::Processor => proto::Role::Processor,
            RoleArg::Retailer => proto::Role::Retailer,
            RoleArg::Certifier => proto::Role::Certifier,
            RoleArg::Monitor => proto::Role::Monitor,
        }
    }
}

/// How an organisation is set up, as the CLI spells it.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum OrgTypeArg {
    SmallholderAssociation,
    WorkerCooperative,
    FamilyFarm,
    Estate,
    Company,
    CertificationBody,
    ParticipatoryGuaranteeSystem,
    NonProfit,
    Individual,
}

impl From<OrgTypeArg> for proto::OrganisationType {
    fn from(o: OrgTypeArg) -> Self {
        use proto::OrganisationType as O;
        match o {
            OrgTypeArg::SmallholderAssociation => O::SmallholderAssociation,
            OrgTypeArg::WorkerCooperative => O::WorkerCooperative,
            OrgTypeArg::FamilyFarm => O::FamilyFarm,
            OrgTypeArg::Estate => O::Estate,
            OrgTypeArg::Company => O::Company,
            OrgTypeArg::CertificationBody => O::CertificationBody,
            OrgTypeArg::ParticipatoryGuaranteeSystem => O::ParticipatoryGuaranteeSystem,
            OrgTypeArg::NonProfit => O::NonProfit,
            OrgTypeArg::Individual => O::Individual,
        }
    }
}

#[derive(Args, Debug)]
pub struct DeclareArgs {
    /// The participant's name, as people know it.
    #[arg(long)]
    pub name: String,
    /// A role (repeat for several).
    #[arg(long = "role", value_enum, required = true)]
    pub roles: Vec<RoleArg>,
    #[arg(long, value_enum)]
    pub org_type: Option<OrgTypeArg>,
    /// ISO 3166-1 alpha-2 country code, such as HN or PE.
    #[arg(long)]
    pub country: String,
    /// A coarse place (municipality, region); never a farm's exact position.
    #[arg(long, default_value = "")]
    pub location: String,
    /// A guardian's public key (repeat): guardians can together recover this identity.
    #[arg(long = "guardian")]
    pub guardians: Vec<PublicKey>,
    /// How many guardians must sign a recovery.
    #[arg(long, default_value_t = 0)]
    pub guardian_threshold: u32,
    /// A short remark.
    #[arg(long)]
    pub remark: Option<String>,
    /// Write the signed envelope here instead of submitting it.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub async fn declare(g: &Global, a: DeclareArgs) -> anyhow::Result<u8> {
    let key = signing_key(g)?;
    let body = proto::statement::Body::ParticipantDeclaration(proto::ParticipantDeclaration {
        name: a.name,
        roles: a
            .roles
            .into_iter()
            .map(|r| proto::Role::from(r) as i32)
            .collect(),
        organisation_type: a
            .org_type
            .map(|o| proto::OrganisationType::from(o) as i32)
            .unwrap_or_default(),
        country: a.country.to_uppercase(),
        location: a.location,
        guardians: a.guardians.iter().map(|k| k.as_bytes().to_vec()).collect(),
        guardian_threshold: a.guardian_threshold,
    });
    let statement = super::statement(&key, body, a.remark);
    sign_and_send(g, &statement, &[&key], a.out.as_deref()).await
}

#[derive(Args, Debug)]
pub struct SubmitArgs {
    /// DSSE JSON envelope files.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

pub async fn submit(g: &Global, a: SubmitArgs) -> anyhow::Result<u8> {
    // Read and check every file first, so a typo fails before anything is sent.
    let mut envelopes = Vec::new();
    for path in &a.files {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let wire = EnvelopeJson::parse(&text).with_context(|| format!("{}", path.display()))?;
        envelopes.push(wire);
    }
    for wire in envelopes {
        super::submit_envelope(g, wire).await?;
    }
    Ok(EXIT_OK)
}

pub async fn checkpoint(g: &Global) -> anyhow::Result<u8> {
    let mut client = connect(g).await?;
    let key = log_key(g, &mut client).await?;
    let note = client.checkpoint().await?.checkpoint;
    let latest = SignedCheckpoint::verify(&note, &key)
        .context("the node's checkpoint does not verify with the log key")?;
    let path = state_path(g);
    let mut state = State::load(&path)?;
    let log_id = key.to_text();
    let previous = state.logs.get(&log_id).map(|s| s.checkpoint.clone());
    let mut consistent_with = None;
    if let Some(prev_note) = previous {
        let prev = SignedCheckpoint::verify(&prev_note, &key)
            .context("the checkpoint saved in the state file does not verify")?;
        match check_consistency(&mut client, &prev, &latest).await {
            Ok(()) => consistent_with = Some(prev.checkpoint.size),
            Err(reason) => {
                eprintln!(
                    "FORK DETECTED: the log {} shows two histories that cannot both be true.",
                    key.name()
                );
                eprintln!("reason: {reason:#}");
                eprintln!("\n--- checkpoint seen before ---\n{}", prev.note);
                eprintln!("--- checkpoint shown now ---\n{}", latest.note);
                eprintln!(
                    "Both are signed by the log's key: keep them as evidence and warn the network."
                );
                if g.json {
                    println!(
                        "{}",
                        serde_json::json!({"fork": true, "reason": format!("{reason:#}"), "previous": prev.note, "latest": latest.note})
                    );
                }
                return Ok(EXIT_FORK);
            }
        }
    }
    let advance = previous_size(&state, &log_id).is_none_or(|s| latest.checkpoint.size >= s);
    if advance {
        state.logs.insert(
            log_id,
            LogState {
                checkpoint: latest.note.clone(),
            },
        );
        state.save(&path)?;
    }
    if g.json {
        println!(
            "{}",
            serde_json::json!({
                "origin": latest.checkpoint.origin,
                "size": latest.checkpoint.size,
                "root": B64.encode(latest.checkpoint.root),
                "checkpoint": latest.note,
                "consistent_with_size": consistent_with,
            })
        );
    } else {
        println!("{}", latest.note.trim_end());
        println!("\nsignature verified with {}", key.to_text());
        match consistent_with {
            Some(size) => println!("consistent with the checkpoint of size {size} seen before (consistency proof verified)"),
            None => println!("first checkpoint seen from this log; saved in {}", path.display()),
        }
    }
    Ok(EXIT_OK)
}

fn previous_size(state: &State, log_id: &str) -> Option<u64> {
    let note = &state.logs.get(log_id)?.checkpoint;
    let body = note.split("\n\n").next()?;
    body.lines().nth(1)?.parse().ok()
}

/// Checks that `latest` extends `prev`: same root at equal size, else a consistency proof.
async fn check_consistency(
    client: &mut fairtrail_client::rpc::NodeClient,
    prev: &SignedCheckpoint,
    latest: &SignedCheckpoint,
) -> anyhow::Result<()> {
    let (old, new) = (&prev.checkpoint, &latest.checkpoint);
    if new.size < old.size {
        // An older checkpoint is no fork if it is consistent with the one we hold.
        if new.size == 0 {
            bail!("the node shows an empty tree after size {}", old.size);
        }
        let proof = client.consistency_proof(new.size, old.size).await;
        let proof = match proof {
            Ok(p) => hashes_from_bytes(&p.proof)?,
            Err(e) => bail!(
                "the node went back from size {} to {} and cannot prove consistency: {e}",
                old.size,
                new.size
            ),
        };
        verify_consistency(new.size, old.size, &proof, &new.root, &old.root).map_err(|e| {
            anyhow!(
                "checkpoint of size {} is not a prefix of size {}: {e}",
                new.size,
                old.size
            )
        })?;
        return Ok(());
    }
    if new.size == old.size {
        if new.root != old.root {
            bail!("two different roots for the same tree size {}", new.size);
        }
        return Ok(());
    }
    if old.size == 0 {
        return Ok(());
    }
    let response = client.consistency_proof(old.size, new.size).await?;
    let proof = hashes_from_bytes(&response.proof)?;
    verify_consistency(old.size, new.size, &proof, &old.root, &new.root).map_err(|e| {
        anyhow!(
            "the consistency proof from size {} to {} fails: {e}",
            old.size,
            new.size
        )
    })
}

#[derive(Args, Debug)]
pub struct GetArgs {
    /// The entry's index.
    #[arg(conflicts_with = "id", required_unless_present = "id")]
    pub index: Option<u64>,
    /// The statement id (64 hex digits) instead of an index.
    #[arg(long)]
    pub id: Option<StatementId>,
}

pub async fn get(g: &Global, a: GetArgs) -> anyhow::Result<u8> {
    let mut client = connect(g).await?;
    let key = match (a.index, a.id) {
        (Some(i), _) => proto::get_entry_request::Key::Index(i),
        (None, Some(id)) => proto::get_entry_request::Key::StatementId(id.as_bytes().to_vec()),
        (None, None) => bail!("give an index or --id"),
    };
    let entry = client.entry(key).await?;
    let leaf = Leaf::decode(entry.leaf.clone()).context("the node sent a malformed leaf")?;
    let envelope =
        Envelope::try_from(leaf.envelope.clone()).context("the logged envelope is malformed")?;
    let statement = Statement::decode(&envelope).context("the logged statement is malformed")?;
    let signatures_ok = envelope.clone().verify().is_ok();
    if g.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "index": entry.index,
                "statement_id": leaf.statement_id.to_string(),
                "leaf_hash": hex::encode(leaf.hash),
                "integrated_at_ms": leaf.integrated_at_ms,
                "kind": statement.kind(),
                "issuer": statement.issuer.to_string(),
                "issued_at_ms": statement.issued_at_ms,
                "signatures_verified": signatures_ok,
                "envelope": EnvelopeJson::from(&leaf.envelope),
                "statement": format!("{:?}", statement.body),
            }))?
        );
    } else {
        println!(
            "entry #{}: {} by {}",
            entry.index,
            statement.kind(),
            statement.issuer
        );
        println!("  statement   {}", leaf.statement_id);
        println!("  leaf hash   {}", hex::encode(leaf.hash));
        println!(
            "  integrated  {} ms since 1970 (issued {})",
            leaf.integrated_at_ms, statement.issued_at_ms
        );
        for signer in envelope.signers() {
            println!("  signed by   {signer}");
        }
        println!(
            "  signatures  {}",
            if signatures_ok {
                "verified"
            } else {
                "DO NOT VERIFY"
            }
        );
        println!("  body        {:?}", statement.body);
    }
    Ok(EXIT_OK)
}

#[derive(Args, Debug)]
pub struct ProveArgs {
    /// The entry's index (for an inclusion proof).
    #[arg(required_unless_present_any = ["leaf_hash", "consistency"])]
    pub index: Option<u64>,
    /// Prove the entry with this leaf hash (64 hex digits) instead.
    #[arg(long, conflicts_with = "index")]
    pub leaf_hash: Option<String>,
    /// Prove that the tree of this size is a prefix of the latest (or of --tree-size).
    #[arg(long, conflicts_with_all = ["index", "leaf_hash"])]
    pub consistency: Option<u64>,
    /// The tree size to prove against [default: the latest checkpoint's].
    #[arg(long, default_value_t = 0)]
    pub tree_size: u64,
}

pub async fn prove(g: &Global, a: ProveArgs) -> anyhow::Result<u8> {
    let mut client = connect(g).await?;
    let key = log_key(g, &mut client).await?;
    if let Some(from) = a.consistency {
        return prove_consistency(g, &mut client, &key, from, a.tree_size).await;
    }
    let leaf = match (a.index, &a.leaf_hash) {
        (Some(i), _) => proto::get_inclusion_proof_request::Leaf::Index(i),
        (None, Some(h)) => proto::get_inclusion_proof_request::Leaf::LeafHash(
            hex::decode(h).map_err(|_| anyhow!("--leaf-hash takes 64 hex digits"))?,
        ),
        (None, None) => bail!("give an index, --leaf-hash or --consistency"),
    };
    let response = client.inclusion_proof(leaf, a.tree_size).await?;
    let leaf_hash = hash_from_bytes(&response.leaf_hash)?;
    let proof = hashes_from_bytes(&response.proof)?;
    // The root comes from a checkpoint the log signed, never from the node's word.
    let root_note = if response.checkpoint.is_empty() {
        bail!(
            "the node gave no checkpoint for tree size {}; prove against the latest size instead",
            response.tree_size
        )
    } else {
        SignedCheckpoint::verify(&response.checkpoint, &key)?
    };
    verify_inclusion(
        &leaf_hash,
        response.index,
        root_note.checkpoint.size,
        &proof,
        &root_note.checkpoint.root,
    )
    .context("the inclusion proof does not verify")?;
    if g.json {
        println!(
            "{}",
            serde_json::json!({
                "index": response.index, "tree_size": response.tree_size, "leaf_hash": hex::encode(leaf_hash),
                "proof": proof.iter().map(hex::encode).collect::<Vec<_>>(), "checkpoint": response.checkpoint, "verified": true,
            })
        );
    } else {
        println!(
            "entry #{} (leaf hash {}) is in the tree of size {}: inclusion proof of {} hashes verified against the signed checkpoint",
            response.index,
            hex::encode(leaf_hash),
            response.tree_size,
            proof.len()
        );
    }
    Ok(EXIT_OK)
}

async fn prove_consistency(
    g: &Global,
    client: &mut fairtrail_client::rpc::NodeClient,
    key: &NoteVerifier,
    from: u64,
    to: u64,
) -> anyhow::Result<u8> {
    let response = client.consistency_proof(from, to).await?;
    if response.checkpoint.is_empty() {
        bail!(
            "the node gave no checkpoint for tree size {}; prove against the latest size instead",
            response.to_size
        );
    }
    let latest = SignedCheckpoint::verify(&response.checkpoint, key)?;
    let proof = hashes_from_bytes(&response.proof)?;
    // The old root must come from a checkpoint this client saw before.
    let state = State::load(&state_path(g))?;
    let old_root = state
        .logs
        .get(&key.to_text())
        .and_then(|s| SignedCheckpoint::verify(&s.checkpoint, key).ok())
        .filter(|s| s.checkpoint.size == from)
        .map(|s| s.checkpoint.root);
    let verified = match old_root {
        Some(root) => {
            verify_consistency(
                from,
                latest.checkpoint.size,
                &proof,
                &root,
                &latest.checkpoint.root,
            )
            .context("the consistency proof does not verify")?;
            true
        }
        None => false,
    };
    if g.json {
        println!(
            "{}",
            serde_json::json!({
                "from_size": from,
                "to_size": response.to_size,
                "proof": proof.iter().map(hex::encode).collect::<Vec<_>>(),
                "verified": verified,
            })
        );
    } else if verified {
        println!(
            "the tree of size {from} you saw before is a prefix of the tree of size {}: verified",
            latest.checkpoint.size
        );
    } else {
        println!(
            "consistency proof from {from} to {} has {} hashes; no checkpoint of size {from} is saved here to check it against (run `fairtrail checkpoint` to save one)",
            latest.checkpoint.size,
            proof.len()
        );
    }
    Ok(EXIT_OK)
}

#[derive(Args, Debug)]
pub struct VerifyReceiptArgs {
    /// The receipt (JSON, as `--json` prints it).
    pub file: PathBuf,
}

pub fn verify_receipt(g: &Global, a: VerifyReceiptArgs) -> anyhow::Result<u8> {
    let text = std::fs::read_to_string(&a.file)
        .with_context(|| format!("cannot read {}", a.file.display()))?;
    let key_text = g
        .log_key
        .as_ref()
        .ok_or_else(|| anyhow!("offline verification needs the log's key: --log-key or FAIRTRAIL_LOG_KEY (from `fairtrail-node log-key`)"))?;
    let key = NoteVerifier::from_text(key_text).context("--log-key is not a verifier key")?;
    let receipt = ReceiptJson::parse(&text)?;
    let verified = receipt
        .verify(&key)
        .context("the receipt does not verify")?;
    print_receipt(g, &receipt, &verified);
    Ok(EXIT_OK)
}
