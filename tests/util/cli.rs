//! Running the `fairtrail` CLI binary and capturing what it prints.

use std::path::Path;
use std::process::{ExitStatus, Stdio};

use tokio::process::Command;
use tokio::time::timeout;

use super::{binaries, hermetic, CALL_TIMEOUT};

/// What a CLI run printed, and how it ended.
pub struct CliOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl CliOutput {
    /// Asserts the run succeeded; returns its stdout.
    #[track_caller]
    pub fn ok(&self) -> &str {
        assert!(self.status.success(), "the CLI failed: {self:?}");
        &self.stdout
    }
}

impl std::fmt::Debug for CliOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// Runs the `fairtrail` CLI with `args` and extra environment `env`. `HOME` points nowhere,
/// so a command that forgets `--state` fails instead of writing to the real home.
pub async fn fairtrail(args: &[&str], env: &[(&str, &str)]) -> CliOutput {
    let mut command = Command::new(&binaries().cli);
    hermetic(&mut command);
    command
        .args(args)
        .env("HOME", "/nonexistent/fairtrail-e2e-home")
        .envs(env.iter().copied())
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

/// A path as a CLI argument.
pub fn arg(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}
