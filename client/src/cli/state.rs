//! The client's memory of each log: its pinned verifier key and the last checkpoint seen,
//! so a later checkpoint can be checked for consistency (a fork is caught, not believed).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// One log, named by its verifier key text.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct LogState {
    /// The latest checkpoint (signed note) this client verified.
    pub checkpoint: String,
}

/// The state file: `{"logs": {"<verifier key>": {"checkpoint": "..."}}, "pinned": {"<node url>": "<verifier key>"}}`.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct State {
    #[serde(default)]
    pub logs: BTreeMap<String, LogState>,
    /// The log key first seen at each node URL (trust on first use, unless --log-key is given).
    #[serde(default)]
    pub pinned: BTreeMap<String, String>,
}

/// Where the state lives: `--state`, else `$FAIRTRAIL_STATE`, else `~/.fairtrail/state.json`.
pub fn default_path() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
        .join(".fairtrail")
        .join("state.json")
}

impl State {
    pub fn load(path: &Path) -> anyhow::Result<State> {
        match std::fs::read_to_string(path) {
            Ok(text) => serde_json::from_str(&text)
                .with_context(|| format!("state file {} is damaged", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(e).with_context(|| format!("cannot read state file {}", path.display())),
        }
    }

    /// Writes the state atomically (temporary file, then rename), so a crash never leaves
    /// half a file.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(())
    }
}
