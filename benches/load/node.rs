//! Servers under load, each a process of its own: the real `fairtrail-node` on a fresh data
//! directory, or this binary's no-op service. Each is read for the one line that says where it
//! listens, measured (resident memory, disk), and stopped when dropped.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use anyhow::{anyhow, bail, Context};

/// A server process and where it listens.
pub struct Server {
    child: Child,
    /// The no-op server's stdin: it stops when this closes. The node has none.
    stdin: Option<ChildStdin>,
    /// Kept open so the server never writes to a closed pipe.
    _stdout: BufReader<ChildStdout>,
    pub grpc: String,
    pub http: Option<String>,
    /// The node's data directory (removed on drop), or none.
    pub data: Option<tempfile::TempDir>,
}

impl Server {
    /// Starts `fairtrail-node` on a new data directory under `parent`, with the benchmark's
    /// settings: logs at warn, and the abuse limits off (the load generator is one client
    /// that means to saturate the node).
    pub fn node(binary: &Path, parent: &Path) -> anyhow::Result<Server> {
        let data = tempfile::Builder::new()
            .prefix("fairtrail-bench-")
            .tempdir_in(parent)?;
        let mut command = Command::new(binary);
        // Only our settings count: drop any the environment carries (but the log filter).
        for (k, _) in std::env::vars_os() {
            if k.to_str()
                .is_some_and(|k| k.starts_with("FAIRTRAIL_") && k != "FAIRTRAIL_LOG")
            {
                command.env_remove(k);
            }
        }
        command
            .arg("--data-dir")
            .arg(data.path().join("data"))
            .args(["--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"])
            .arg("--policy")
            .arg(data.path().join("policy.toml"))
            .env(
                "FAIRTRAIL_LOG",
                std::env::var("FAIRTRAIL_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .env("FAIRTRAIL_RATE_PER_CONNECTION", "0")
            .env("FAIRTRAIL_RATE_PER_KEY", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut server = Self::spawn(command, "fairtrail-node listening ")?;
        server.data = Some(data);
        Ok(server)
    }

    /// Starts this binary's no-op service; with `gather`, on connections that gather writes
    /// as the node's plain-text connections do.
    pub fn noop(gather: bool) -> anyhow::Result<Server> {
        let me = std::env::current_exe().context("this binary's path")?;
        let mut command = Command::new(me);
        command.arg("noop-server");
        if gather {
            command.arg("--gather");
        }
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        Self::spawn(command, "listening ")
    }

    fn spawn(mut command: Command, prefix: &str) -> anyhow::Result<Server> {
        let mut child = command.spawn().context("cannot start the server")?;
        let stdin = child.stdin.take();
        let mut stdout = BufReader::new(
            child
                .stdout
                .take()
                .ok_or_else(|| anyhow!("no stdout from the server"))?,
        );
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        let Some(fields) = line.trim().strip_prefix(prefix) else {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the server's first line is {line:?}, not \"{prefix}grpc=...\"");
        };
        let field = |name: &str| {
            fields
                .split_whitespace()
                .find_map(|f| f.strip_prefix(name))
                .map(str::to_owned)
        };
        let grpc = field("grpc=").ok_or_else(|| anyhow!("no grpc= in {line:?}"))?;
        Ok(Server {
            child,
            stdin,
            _stdout: stdout,
            grpc: format!("http://{grpc}"),
            http: field("http="),
            data: None,
        })
    }

    pub fn data_dir(&self) -> Option<PathBuf> {
        self.data.as_ref().map(|d| d.path().join("data"))
    }

    pub fn policy_path(&self) -> Option<PathBuf> {
        self.data.as_ref().map(|d| d.path().join("policy.toml"))
    }

    /// Resident, peak resident and anonymous resident memory in bytes (VmRSS, VmHWM,
    /// RssAnon: the heap, apart from mapped files).
    pub fn memory(&self) -> anyhow::Result<(u64, u64, u64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let kb = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
                .map(|v| v * 1024)
                .ok_or_else(|| anyhow!("no {name} in /proc/PID/status"))
        };
        Ok((kb("VmRSS:")?, kb("VmHWM:")?, kb("RssAnon:")?))
    }

    /// CPU seconds (user and system) each of the server's threads has used so far, summed by
    /// thread name; `None` where `/proc` cannot tell (not Linux).
    pub fn cpu_by_thread(&self) -> Option<CpuTimes> {
        cpu_by_thread(self.child.id())
    }

    /// Graceful stop: the no-op server on closing its stdin, the node on SIGTERM (it drains
    /// its sequencer); either must then exit with success.
    pub fn stop(mut self) -> anyhow::Result<()> {
        if self.stdin.take().is_none() {
            // SAFETY: kill(2) on our own child, not yet reaped, so the pid is still ours.
            unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        }
        let status = self.child.wait()?;
        if !status.success() {
            bail!("the server exited with {status} when asked to stop");
        }
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Bytes on disk of the indexes derived from the log in the data directory `data`: sled
/// (`index/`), the state store (`index-state/`) and the hash indexes (`index-hashes/`).
pub fn index_disk_usage(data: &Path) -> (u64, u64) {
    ["index", "index-state", "index-hashes"]
        .iter()
        .map(|dir| disk_usage(&data.join(dir)))
        .fold((0, 0), |(a, b), (x, y)| (a + x, b + y))
}

/// Bytes on disk under `dir`: (apparent size, allocated blocks).
pub fn disk_usage(dir: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let (mut apparent, mut allocated) = (0u64, 0u64);
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                stack.push(e.path());
            } else {
                apparent += m.len();
                allocated += m.blocks() * 512;
            }
        }
    }
    (apparent, allocated)
}

/// `fairtrail-node`: given, or beside this binary (cargo builds a workspace's binaries into
/// one directory).
pub fn node_binary(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(p) = given {
        return Ok(p);
    }
    let me = std::env::current_exe()?;
    let path = me.with_file_name("fairtrail-node");
    if path.exists() {
        Ok(path)
    } else {
        bail!(
            "fairtrail-node was not found beside {}; build it (`cargo build --release -p fairtrail-node`) or pass --node-bin",
            me.display()
        )
    }
}

/// CPU seconds by thread name.
pub type CpuTimes = std::collections::BTreeMap<String, f64>;

/// CPU seconds (user and system) used by each thread of process `pid`, summed by thread name,
/// from `/proc/<pid>/task/*/stat`; `None` where that cannot be read.
pub fn cpu_by_thread(pid: u32) -> Option<CpuTimes> {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks <= 0 {
        return None;
    }
    let mut times = CpuTimes::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue; // the thread ended meanwhile
        };
        // "tid (name) state ...": the name may hold spaces and parentheses; utime and stime
        // are the 14th and 15th fields, the 12th and 13th after the name.
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let name = head.split_once('(').map_or("?", |(_, n)| n).to_owned();
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let used = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
        let (Some(user), Some(system)) = (used(11), used(12)) else {
            continue;
        };
        *times.entry(name).or_default() += (user + system) as f64 / ticks as f64;
    }
    Some(times)
}
