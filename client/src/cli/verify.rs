//! Chain verification commands: `verify` (online through a node's provenance service, or
//! offline from a bundle file without any network) and `bundle` (fetch a product's or a
//! lot's provenance bundle and save it for offline verification).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;
use fairtrail_client::bundle::{Bundle, Subject};
use fairtrail_client::checkpoint::SignedCheckpoint;
use fairtrail_client::gs1::ProductId;
use fairtrail_client::note::NoteVerifier;
use fairtrail_client::proto::{self, get_provenance_request::Subject as Request};
use fairtrail_client::rpc::{NodeClient, RpcError};
use fairtrail_client::rules::LotId;
use fairtrail_client::verify::{render_text, verify_bundle, Policy, Verdict};

use super::EXIT_OK;
use crate::Global;

/// `fairtrail verify` exit code: the chain meets the policy, with warnings.
pub const EXIT_WARNINGS: u8 = 4;
/// `fairtrail verify` exit code: the chain fails the policy, or its evidence is bad.
pub const EXIT_FAILED: u8 = 5;
/// Bad usage (as clap exits on its own usage errors).
pub const EXIT_USAGE: u8 = 2;

const VERIFY_HELP: &str = "\
Examples:
  fairtrail verify https://trace.example.org/01/09506000134352/10/R2024-118 --policy policy.toml
  fairtrail verify 09506000134352 R2024-118 --policy policy.toml --node http://node:50051
  fairtrail verify --bundle bundle.json --policy policy.toml       (offline: no network at all)

The log's key comes from the policy's log_key, or --log-key (when both are given they must
be the same key). Nothing the node says is trusted: every signature, inclusion proof and
rule is checked against the log key and the policy.

Exit codes:
  0  verified
  4  verified with warnings (for example an open dispute)
  5  failed: the chain does not meet the policy, or its evidence is bad
  1  could not run (unreadable policy or bundle file, node unreachable)
  2  bad usage";

const BUNDLE_HELP: &str = "\
Examples:
  fairtrail bundle https://trace.example.org/01/09506000134352/10/R2024-118 --out bundle.json
  fairtrail bundle 09506000134352 R2024-118 --out bundle.json
  fairtrail bundle --lot 5f1c...e9:0 --out lot.json

Verify the file later, on any machine, without a node:
  fairtrail verify --bundle bundle.json --policy policy.toml";

#[derive(Args, Debug)]
#[command(after_help = VERIFY_HELP)]
pub struct VerifyArgs {
    /// The product: a GS1 Digital Link URL (https://host/01/GTIN/10/BATCH[/21/SERIAL]), or
    /// a GTIN and a batch.
    #[arg(value_name = "URL | GTIN BATCH", num_args = 0..=2)]
    pub product: Vec<String>,
    /// Verify the chain behind this lot (STATEMENT_ID, or STATEMENT_ID:OUTPUT) instead of a product.
    #[arg(long, value_name = "LOT", conflicts_with = "product")]
    pub lot: Option<LotId>,
    /// Verify this bundle file (written by `fairtrail bundle`) offline, without any network.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["product", "lot"])]
    pub bundle: Option<PathBuf>,
    /// Your trust policy (TOML; see examples/policy.toml).
    #[arg(long, value_name = "FILE")]
    pub policy: PathBuf,
}

#[derive(Args, Debug)]
#[command(after_help = BUNDLE_HELP)]
pub struct BundleArgs {
    /// The product: a GS1 Digital Link URL, or a GTIN and a batch.
    #[arg(value_name = "URL | GTIN BATCH", num_args = 0..=2)]
    pub product: Vec<String>,
    /// Fetch the chain behind this lot (STATEMENT_ID, or STATEMENT_ID:OUTPUT) instead of a product.
    #[arg(long, value_name = "LOT", conflicts_with = "product")]
    pub lot: Option<LotId>,
    /// Where to write the bundle (JSON); standard output when not given. An existing file
    /// is never overwritten.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// What to fetch, from the command line; `Err` is a usage message.
fn subject(product: &[String], lot: Option<LotId>) -> Result<Subject, String> {
    let product = match (product, lot) {
        ([], Some(lot)) => return Ok(Subject::Lot(lot)),
        ([url], None) => ProductId::from_digital_link(url),
        ([gtin, batch], None) => ProductId::new(gtin, batch, None),
        ([], None) => {
            return Err(
                "name a product (a GS1 Digital Link URL, or a GTIN and a batch), a --lot, or a --bundle file"
                    .into(),
            )
        }
        _ => return Err("name a product or a --lot, not both".into()),
    };
    product.map(Subject::Product).map_err(|e| e.to_string())
}

fn usage(command: &str, message: &str) -> u8 {
    eprintln!(
        "fairtrail {command}: {message}\n\nFor more information, try 'fairtrail {command} --help'."
    );
    EXIT_USAGE
}

/// The policy, with the log key from `--log-key` when given (it must agree with the
/// policy's own).
fn load_policy(g: &Global, path: &Path) -> anyhow::Result<Policy> {
    let mut policy = Policy::load(path)?;
    if let Some(text) = &g.log_key {
        let key = NoteVerifier::from_text(text)
            .context("--log-key is not a verifier key (name+hexkeyid+base64key)")?;
        policy = policy
            .with_log_key(key)
            .with_context(|| format!("the policy {}", path.display()))?;
    }
    if policy.log_key.is_none() {
        bail!(
            "no log key: add log_key = \"<name+keyid+key>\" to {} or pass --log-key (the node's operator publishes it; `fairtrail-node log-key` prints it)",
            path.display()
        );
    }
    Ok(policy)
}

/// Fetches the bundle of `subject` from the node. `Ok(Err(message))` when the node has
/// nothing sound to verify: that is a verdict, not a failure to run.
async fn fetch(g: &Global, subject: &Subject) -> anyhow::Result<Result<Bundle, String>> {
    let request = match subject {
        Subject::Product(p) => Request::Product(proto::ProductKey {
            gtin: p.gtin.clone(),
            batch: p.batch.clone(),
            serial: p.serial.clone().unwrap_or_default(),
        }),
        Subject::Lot(lot) => Request::Lot(lot.to_proto()),
        Subject::Participant(_) => bail!("participant bundles are fetched with GetParticipant"),
    };
    let client = NodeClient::connect(&g.node).await?;
    let wire = match client.get_provenance(request).await {
        Ok(wire) => wire,
        Err(e @ RpcError::Status { .. }) if e.code() == Some(tonic::Code::NotFound) => {
            return Ok(Err(format!(
                "the node at {} has no such chain: {e}",
                g.node
            )))
        }
        Err(e) => return Err(e.into()),
    };
    let bundle = match Bundle::try_from(wire) {
        Ok(bundle) => bundle,
        Err(e) => return Ok(Err(format!("the node's bundle is malformed: {e}"))),
    };
    // A node could answer with the sound chain of another product: the bundle must be
    // about exactly what was asked.
    if bundle.subject != *subject {
        return Ok(Err(format!(
            "asked for {subject}, the node answered with a bundle about {}",
            bundle.subject
        )));
    }
    Ok(Ok(bundle))
}

pub async fn verify(g: &Global, a: VerifyArgs) -> anyhow::Result<u8> {
    let subject = match (&a.bundle, subject(&a.product, a.lot)) {
        (Some(_), _) => None,
        (None, Ok(s)) => Some(s),
        (None, Err(message)) => return Ok(usage("verify", &message)),
    };
    let policy = load_policy(g, &a.policy)?;
    let bundle = match (&a.bundle, subject) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the bundle {}", path.display()))?;
            Bundle::from_json(&text).with_context(|| format!("{}", path.display()))?
        }
        (None, subject) => {
            let Some(subject) = subject else {
                return Ok(usage(
                    "verify",
                    "name a product, a --lot or a --bundle file",
                ));
            };
            match fetch(g, &subject).await? {
                Ok(bundle) => bundle,
                Err(message) => {
                    if g.json {
                        println!(
                            "{}",
                            serde_json::json!({ "verdict": Verdict::Failed, "error": message })
                        );
                    } else {
                        println!("{message}\n\nVerdict: FAILED");
                    }
                    return Ok(EXIT_FAILED);
                }
            }
        }
    };
    let report = verify_bundle(&bundle, &policy);
    if g.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render_text(&report));
    }
    Ok(match report.verdict {
        Verdict::Verified => EXIT_OK,
        Verdict::VerifiedWithWarnings => EXIT_WARNINGS,
        Verdict::Failed => EXIT_FAILED,
    })
}

pub async fn bundle(g: &Global, a: BundleArgs) -> anyhow::Result<u8> {
    let subject = match subject(&a.product, a.lot) {
        Ok(s) => s,
        Err(message) => return Ok(usage("bundle", &message)),
    };
    let bundle = match fetch(g, &subject).await? {
        Ok(bundle) => bundle,
        Err(message) => bail!("{message}"),
    };
    // With a log key at hand, refuse to save a bundle the log did not sign.
    let checkpoint = match &g.log_key {
        Some(text) => {
            let key = NoteVerifier::from_text(text)
                .context("--log-key is not a verifier key (name+hexkeyid+base64key)")?;
            let signed = SignedCheckpoint::verify(&bundle.checkpoint, &key)
                .context("the bundle's checkpoint is not signed by the log key; not saved")?;
            Some(signed.checkpoint)
        }
        None => None,
    };
    let text = bundle.to_json();
    let Some(out) = &a.out else {
        std::io::stdout().write_all(text.as_bytes())?;
        return Ok(EXIT_OK);
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(out)
        .with_context(|| format!("cannot create {} (it must not exist yet)", out.display()))?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    if g.json {
        println!(
            "{}",
            serde_json::json!({
                "file": out.display().to_string(),
                "subject": bundle.subject.to_string(),
                "entries": bundle.entries.len(),
                "checkpoint_size": checkpoint.as_ref().map(|c| c.size),
            })
        );
    } else {
        let at = checkpoint
            .map(|c| format!(" at {} tree size {}", c.origin, c.size))
            .unwrap_or_default();
        println!(
            "wrote the bundle of {} ({} entries{at}) to {}\nverify it offline with: fairtrail verify --bundle {} --policy POLICY.toml",
            bundle.subject,
            bundle.entries.len(),
            out.display(),
            out.display()
        );
    }
    Ok(EXIT_OK)
}
