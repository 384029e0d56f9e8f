//! `fairtrail audit`: replays the whole log from a node and checks everything (see
//! [`fairtrail_client::audit`]): the tree against the signed checkpoint and against the
//! checkpoint this client saw before, every leaf, signature and integration time, no statement
//! twice, and every ledger rule replayed over an in-memory state.

use std::io::IsTerminal;
use std::time::Instant;

use anyhow::Context;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use clap::Args;
use fairtrail_client::audit::{audit_node, Replay, Report};
use fairtrail_client::checkpoint::SignedCheckpoint;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::state::{LogState, State};
use super::{connect, log_key, state_path, EXIT_OK};
use crate::Global;

/// The exit code when the audit finds anything wrong with the log.
pub const EXIT_FINDINGS: u8 = 5;

#[derive(Args, Debug)]
#[command(after_help = "\
Exit status: 0 when the log is clean; 5 when there is at least one finding (each names its \
entry); 1 when the audit could not be completed (node unreachable, checkpoint not signed by \
the log key, entries not served).

Each finding is printed as `entry #N: [check] message`; with --json, as an object with \
`index`, `check` (leaf, integration_time, duplicate, envelope, statement, signature, rules, \
tree, consistency), `rule` for rule findings (such as lot_overdrawn), and `message`.

A clean audit saves the audited checkpoint in the state file, as `fairtrail checkpoint` does, \
so that later checkpoints are checked for consistency with it.")]
pub struct AuditArgs {}

pub async fn audit(g: &Global, _a: AuditArgs) -> anyhow::Result<u8> {
    let started = Instant::now();
    let mut client = connect(g).await?;
    let key = log_key(g, &mut client).await?;
    let note = client.checkpoint().await?.checkpoint;
    let checkpoint = SignedCheckpoint::verify(&note, &key)
        .context("the node's checkpoint does not verify with the log key")?;
    let size = checkpoint.checkpoint.size;

    // The checkpoint this client saw before must be a prefix of the log it replays.
    let path = state_path(g);
    let mut state = State::load(&path)?;
    let log_id = key.to_text();
    let mut replay = Replay::new();
    let mut previous = None;
    if let Some(saved) = state.logs.get(&log_id) {
        let saved = SignedCheckpoint::verify(&saved.checkpoint, &key)
            .context("the checkpoint saved in the state file does not verify")?;
        replay.expect_root(
            saved.checkpoint.size,
            saved.checkpoint.root,
            format!(
                "the checkpoint of size {} saved in {}",
                saved.checkpoint.size,
                path.display()
            ),
        );
        previous = Some(saved.checkpoint.size);
    }

    let bar = if g.json || !std::io::stderr().is_terminal() {
        ProgressBar::hidden()
    } else {
        let bar = ProgressBar::with_draw_target(Some(size), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "auditing {bar:40} {pos}/{len} entries ({per_sec}, {eta} left)",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    };
    let report = audit_node(&mut client, &checkpoint, replay, |done| {
        bar.set_position(done)
    });
    let report = report.await;
    bar.finish_and_clear();
    let report = report.context("the audit could not be completed")?;

    if report.is_clean() && previous.is_none_or(|s| s <= size) {
        state.logs.insert(
            log_id,
            LogState {
                checkpoint: checkpoint.note.clone(),
            },
        );
        state.save(&path)?;
    }
    print(
        g,
        &checkpoint,
        &report,
        previous,
        started.elapsed().as_secs_f64(),
    );
    Ok(if report.is_clean() {
        EXIT_OK
    } else {
        EXIT_FINDINGS
    })
}

fn print(
    g: &Global,
    checkpoint: &SignedCheckpoint,
    report: &Report,
    previous: Option<u64>,
    seconds: f64,
) {
    let cp = &checkpoint.checkpoint;
    if g.json {
        let json = serde_json::json!({
            "origin": cp.origin,
            "size": cp.size,
            "root": B64.encode(cp.root),
            "checkpoint": checkpoint.note,
            "entries": report.entries,
            "signatures": report.signatures,
            "consistent_with_size": previous,
            "clean": report.is_clean(),
            "findings": report.findings,
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&json).unwrap_or_default()
        );
        return;
    }
    println!(
        "audited {}: {} entries, {} signatures, in {seconds:.1} s",
        cp.origin, report.entries, report.signatures
    );
    if report.is_clean() {
        println!(
            "  tree        the root of the {} leaves is the root the checkpoint signs (signature verified)",
            report.entries
        );
        if let Some(size) = previous {
            println!("  history     the checkpoint of size {size} seen before is a prefix");
        }
        println!("  entries     every leaf, signature, integration time and ledger rule checked");
        println!("clean: no finding");
        return;
    }
    for finding in &report.findings {
        println!("{finding}");
    }
    println!(
        "{} finding{}",
        report.findings.len(),
        if report.findings.len() == 1 { "" } else { "s" }
    );
}
