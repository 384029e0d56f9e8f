//! `fairtrail`: the command-line client. Make keys, sign statements (online or offline),
//! submit them, and check everything a node says: receipts, checkpoints, proofs.

mod cli;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use cli::{audit, demo, ledger, qr, statements, verify};

#[derive(Parser, Debug)]
#[command(
    name = "fairtrail",
    version,
    about = "Fairtrail client: sign, submit and verify fair-trade attestations"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command understands.
#[derive(clap::Args, Debug, Clone)]
pub struct Global {
    /// The node's gRPC address.
    #[arg(long, env = "FAIRTRAIL_NODE", global = true, default_value = fairtrail_client::rpc::DEFAULT_NODE)]
    pub node: String,
    /// Your private key (PKCS#8 PEM, made by `fairtrail keygen`).
    #[arg(long, env = "FAIRTRAIL_KEY", global = true)]
    pub key: Option<PathBuf>,
    /// The log's verifier key (name+hexkeyid+base64key, from `fairtrail-node log-key`). Without
    /// it, the key a node first shows is pinned in the state file (trust on first use).
    #[arg(long, env = "FAIRTRAIL_LOG_KEY", global = true)]
    pub log_key: Option<String>,
    /// The client's state file (pinned log keys, last checkpoints seen)
    /// [default: ~/.fairtrail/state.json].
    #[arg(long, env = "FAIRTRAIL_STATE", global = true)]
    pub state: Option<PathBuf>,
    /// The certificate authority (PEM) that signed an https:// node's certificate; without
    /// it, the web's usual roots.
    #[arg(long, env = "FAIRTRAIL_CA_CERT", global = true)]
    pub ca_cert: Option<PathBuf>,
    /// Print JSON for scripts instead of text for people.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Make a new Ed25519 key: the private key goes to FILE (mode 0600), the public key is printed.
    Keygen(ledger::KeygenArgs),
    /// Declare yourself as a participant (signed with --key).
    Declare(ledger::DeclareArgs),
    /// Submit envelopes signed earlier (DSSE JSON files, as written with --out).
    Submit(ledger::SubmitArgs),
    /// Fetch the node's checkpoint, verify its signature, and check it is consistent with the
    /// last one this client saw.
    Checkpoint,
    /// Show one entry of the log, by index or statement id.
    Get(ledger::GetArgs),
    /// Get and check an inclusion proof (for an entry) or a consistency proof (between sizes).
    Prove(ledger::ProveArgs),
    /// Verify a receipt offline, with the log's verifier key only.
    VerifyReceipt(ledger::VerifyReceiptArgs),
    /// Certify a participant for a scheme (as a certifier, or with --pgs as peers of a
    /// Participatory Guarantee System).
    Certify(statements::CertifyArgs),
    /// Revoke, suspend or reinstate a certification you issued.
    Revoke(statements::RevokeArgs),
    /// Move your identity to a new key (or recover it with your guardians' signatures).
    RotateKey(statements::RotateKeyArgs),
    /// Record a harvest: creates an origin lot that you hold.
    Harvest(statements::HarvestArgs),
    /// Ship quantities of your lots to another participant.
    Ship(statements::ShipArgs),
    /// Confirm (or dispute) a shipment you received.
    Receive(statements::ReceiveArgs),
    /// Transform your lots into new lots (for example green coffee into roasted coffee).
    Transform(statements::TransformArgs),
    /// Bind a product (GTIN + batch, optionally serial) to the lots it contains.
    Label(statements::LabelArgs),
    /// Contest a logged statement, with a reason.
    Dispute(statements::DisputeArgs),
    /// Add your signature to an envelope someone else prepared (a PGS peer, a guardian).
    Cosign(statements::CosignArgs),
    /// Verify the whole chain behind a product against your trust policy.
    Verify(verify::VerifyArgs),
    /// Fetch a product's provenance bundle and save it, for offline verification.
    Bundle(verify::BundleArgs),
    /// Replay the whole log from a node: recompute the tree, check every signature and every
    /// ledger rule, and report each finding with its entry.
    Audit(audit::AuditArgs),
    /// Write the QR code of a product's GS1 Digital Link (SVG or PNG) for its label.
    Qr(qr::QrArgs),
    /// Write a realistic coffee chain to a node (starting one if needed) and verify it.
    Demo(demo::DemoArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(ca) = &cli.global.ca_cert {
        // The connection code reads it from here, whichever command connects.
        std::env::set_var("FAIRTRAIL_CA_CERT", ca);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("fairtrail: cannot start: {e}");
            return ExitCode::from(cli::EXIT_ERROR);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("fairtrail: {e:#}");
            ExitCode::from(cli::EXIT_ERROR)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<u8> {
    let g = &cli.global;
    match cli.command {
        Command::Keygen(a) => ledger::keygen(g, a),
        Command::Declare(a) => ledger::declare(g, a).await,
        Command::Submit(a) => ledger::submit(g, a).await,
        Command::Checkpoint => ledger::checkpoint(g).await,
        Command::Get(a) => ledger::get(g, a).await,
        Command::Prove(a) => ledger::prove(g, a).await,
        Command::VerifyReceipt(a) => ledger::verify_receipt(g, a),
        Command::Certify(a) => statements::certify(g, a).await,
        Command::Revoke(a) => statements::revoke(g, a).await,
        Command::RotateKey(a) => statements::rotate_key(g, a).await,
        Command::Harvest(a) => statements::harvest(g, a).await,
        Command::Ship(a) => statements::ship(g, a).await,
        Command::Receive(a) => statements::receive(g, a).await,
        Command::Transform(a) => statements::transform(g, a).await,
        Command::Label(a) => statements::label(g, a).await,
        Command::Dispute(a) => statements::dispute(g, a).await,
        Command::Cosign(a) => statements::cosign(g, a),
        Command::Verify(a) => verify::verify(g, a).await,
        Command::Bundle(a) => verify::bundle(g, a).await,
        Command::Demo(a) => demo::demo(g, a).await,
        Command::Qr(a) => qr::qr(g, a),
        Command::Audit(a) => audit::audit(g, a).await,
    }
}
