//! Running `fairtrail verify --json` (online against a node, or offline on a bundle file) and
//! reading its report: the verdict, the exit code, and the findings by problem name.

use std::path::Path;
use std::process::Stdio;

use serde_json::Value;
use tokio::process::Command;
use tokio::time::timeout;

use super::{arg, binaries, fairtrail, hermetic, CliOutput, CALL_TIMEOUT};

/// `fairtrail verify` exit codes.
pub const EXIT_VERIFIED: i32 = 0;
pub const EXIT_WARNINGS: i32 = 4;
pub const EXIT_FAILED: i32 = 5;

/// Runs the `fairtrail` CLI in `dir` (for commands that write files beside them), with
/// `HOME` pointing nowhere as [`fairtrail`] does.
pub async fn fairtrail_in(dir: &Path, args: &[&str]) -> CliOutput {
    let mut command = Command::new(&binaries().cli);
    hermetic(&mut command);
    command
        .args(args)
        .current_dir(dir)
        .env("HOME", "/nonexistent/fairtrail-e2e-home")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let output = timeout(CALL_TIMEOUT, command.output())
        .await
        .unwrap_or_else(|_| panic!("`fairtrail {}` did not finish", args.join(" ")))
        .expect("cannot run fairtrail");
    CliOutput {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// What `fairtrail verify --json` printed, and how it exited.
pub struct Verdict {
    pub out: CliOutput,
    pub report: Value,
}

impl Verdict {
    /// `fairtrail verify --json SUBJECT... --policy POLICY` against the node at `url`;
    /// `subject` is a GTIN and batch, or `--lot LOT`.
    pub async fn online(url: &str, subject: &[&str], policy: &Path) -> Verdict {
        let mut args = vec!["--node", url, "--json", "verify"];
        args.extend(subject);
        args.extend(["--policy", arg(policy)]);
        Self::parse(fairtrail(&args, &[]).await)
    }

    /// `fairtrail verify --json --bundle FILE --policy POLICY`: no node involved.
    pub async fn offline(bundle: &Path, policy: &Path) -> Verdict {
        let args = [
            "--json",
            "verify",
            "--bundle",
            arg(bundle),
            "--policy",
            arg(policy),
        ];
        Self::parse(fairtrail(&args, &[]).await)
    }

    fn parse(out: CliOutput) -> Verdict {
        let report = serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("`verify --json` printed no JSON report ({e}): {out:?}"));
        Verdict { out, report }
    }

    pub fn code(&self) -> Option<i32> {
        self.out.status.code()
    }

    pub fn findings(&self) -> impl Iterator<Item = &Value> {
        self.report["steps"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|s| s["findings"].as_array().into_iter().flatten())
    }

    /// Asserts the chain verified without warnings (exit 0).
    #[track_caller]
    pub fn assert_verified(&self) {
        assert_eq!(self.report["verdict"], "verified", "{}", self.out.stdout);
        assert_eq!(self.code(), Some(EXIT_VERIFIED), "{:?}", self.out);
    }

    /// Asserts verification failed (exit 5) with `problem` at `entry` (any entry for
    /// `None`); returns that finding.
    #[track_caller]
    pub fn assert_fails(&self, problem: &str, entry: Option<u64>) -> &Value {
        assert_eq!(self.report["verdict"], "failed", "{}", self.out.stdout);
        assert_eq!(self.code(), Some(EXIT_FAILED), "{:?}", self.out);
        self.find("failure", problem, entry)
    }

    /// Asserts the chain verified with warnings (exit 4), one of them `problem` at `entry`;
    /// returns that finding.
    #[track_caller]
    pub fn assert_warns(&self, problem: &str, entry: Option<u64>) -> &Value {
        assert_eq!(
            self.report["verdict"], "verified_with_warnings",
            "{}",
            self.out.stdout
        );
        assert_eq!(self.code(), Some(EXIT_WARNINGS), "{:?}", self.out);
        self.find("warning", problem, entry)
    }

    #[track_caller]
    fn find(&self, severity: &str, problem: &str, entry: Option<u64>) -> &Value {
        self.findings()
            .find(|f| {
                f["severity"] == severity
                    && f["problem"] == problem
                    && entry.is_none_or(|e| f["entry"] == e)
            })
            .unwrap_or_else(|| {
                panic!(
                    "no {problem} {severity} at entry {entry:?} in:\n{}",
                    self.out.stdout
                )
            })
    }

    /// Asserts every failure is one of `allowed`: a break causes its own finding, not a
    /// cascade of unrelated ones.
    #[track_caller]
    pub fn assert_only(&self, allowed: &[&str]) {
        for f in self.findings().filter(|f| f["severity"] == "failure") {
            assert!(
                f["problem"].as_str().is_some_and(|p| allowed.contains(&p)),
                "unexpected failure {}: {}",
                f["problem"],
                f["message"]
            );
        }
    }

    /// Whether any finding (failure or warning) is about `entry`.
    pub fn mentions_problem_at(&self, entry: u64) -> bool {
        self.findings()
            .any(|f| f["entry"] == entry && f["severity"] != "pass")
    }
}
