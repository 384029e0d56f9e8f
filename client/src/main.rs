//! `fairtrail`: the command-line client. Make keys, sign statements (online or offline),
//! submit them, and check everything a node says: receipts, checkpoints, proofs.

mod cli;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use cli::ledger;

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
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
    }
}
