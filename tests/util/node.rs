//! `TestNode`: the real `fairtrail-node` binary on `127.0.0.1:0`, over a temporary data
//! directory that outlives restarts and is removed (after the node is killed) on drop.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};

use fairtrail_client::note::NoteVerifier;
use fairtrail_client::proto;
use fairtrail_client::proto::ledger_service_client::LedgerServiceClient;
use fairtrail_client::rpc::NodeClient;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};
use tokio::time::timeout;
use tonic::transport::Endpoint;

use super::{binaries, connect, hermetic, CALL_TIMEOUT, START_TIMEOUT, STOP_TIMEOUT};

/// How the one line the node prints on stdout, once it serves, begins.
const LISTENING: &str = "fairtrail-node listening ";

/// A real `fairtrail-node` on `127.0.0.1:0` over a temporary data directory.
pub struct TestNode {
    /// The running node; `None` between `stop`/`kill` and `restart`.
    child: Option<Child>,
    /// The node's stdout, kept open after its one line so the node never writes to a closed
    /// pipe.
    stdout: Option<Lines<BufReader<ChildStdout>>>,
    /// Where the running (or last) node served gRPC.
    addr: SocketAddr,
    /// Where the running (or last) node served HTTP, when it said.
    http: Option<SocketAddr>,
    data_dir: PathBuf,
    /// Flags added to every start (TLS, admission, limits).
    args: Vec<String>,
    /// The node's stderr (its tracing log), appended across restarts.
    log_path: PathBuf,
    /// Owns `data_dir` and `log_path`; declared last so it is removed after the child is
    /// killed.
    _root: tempfile::TempDir,
}

impl TestNode {
    /// Starts a node on a new, empty data directory.
    pub async fn start() -> TestNode {
        Self::start_with(|_| {}).await
    }

    /// Starts a node on a new data directory that `prepare` fills first (for example with
    /// another log's key).
    pub async fn start_with(prepare: impl FnOnce(&Path)) -> TestNode {
        Self::start_with_args(prepare, Vec::new()).await
    }

    /// Starts a node with extra flags. With `--tls-cert`, the node serves TLS only, so the
    /// start does not probe it in plain text: `url()` is then `https://`.
    pub async fn start_with_args(prepare: impl FnOnce(&Path), args: Vec<String>) -> TestNode {
        let root = tempfile::Builder::new()
            .prefix("fairtrail-e2e-")
            .tempdir()
            .expect("cannot create a temporary directory");
        let data_dir = root.path().join("data");
        std::fs::create_dir(&data_dir).expect("cannot create the data directory");
        prepare(&data_dir);
        let spawned = spawn(&data_dir, &root.path().join("node.log"), &args).await;
        TestNode {
            child: Some(spawned.child),
            stdout: Some(spawned.stdout),
            addr: spawned.grpc,
            http: spawned.http,
            log_path: root.path().join("node.log"),
            data_dir,
            args,
            _root: root,
        }
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// The base URL of the node's HTTP side (pages, bundles, checkpoint, tiles, metrics).
    pub fn http_url(&self) -> String {
        format!("http://{}", self.http_addr())
    }

    /// Where the node serves HTTP.
    pub fn http_addr(&self) -> SocketAddr {
        self.http.expect("no HTTP address in the node's first line")
    }

    fn tls(&self) -> bool {
        self.args.iter().any(|a| a == "--tls-cert")
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Everything the node has logged (its stderr), across restarts.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// A new connection to the node.
    pub async fn client(&self) -> NodeClient {
        connect(&self.url()).await
    }

    /// The log's verifier key text, as `fairtrail-node log-key` prints it.
    pub async fn log_key(&self) -> String {
        let mut command = Command::new(&binaries().node);
        hermetic(&mut command);
        command
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("log-key")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let output = timeout(CALL_TIMEOUT, command.output())
            .await
            .expect("`fairtrail-node log-key` did not finish")
            .expect("cannot run `fairtrail-node log-key`");
        assert!(
            output.status.success(),
            "`fairtrail-node log-key` failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout)
            .expect("the log key is text")
            .trim()
            .to_owned()
    }

    /// The log's verifier key, parsed.
    pub async fn verifier(&self) -> NoteVerifier {
        NoteVerifier::from_text(&self.log_key().await).expect("the node's log key parses")
    }

    /// Graceful shutdown: SIGTERM, then the node must drain and exit with success.
    pub async fn stop(&mut self) {
        let mut child = self.child.take().expect("the node is not running");
        let pid = child.id().expect("a running node has a pid");
        // SAFETY: kill(2) on the pid of our own child, not yet reaped (we still hold its
        // `Child` and have not waited on it), so the pid cannot belong to another process.
        let rc = unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        assert_eq!(rc, 0, "cannot send SIGTERM to the node");
        let status = wait(&mut child, "SIGTERM", &self.log_path).await;
        self.stdout = None;
        assert!(
            status.success(),
            "the node exited with {status} after SIGTERM; its log:\n{}",
            tail(&self.log_path)
        );
    }

    /// A crash: SIGKILL, no chance to drain.
    pub async fn kill(&mut self) {
        let mut child = self.child.take().expect("the node is not running");
        child.start_kill().expect("cannot send SIGKILL to the node");
        wait(&mut child, "SIGKILL", &self.log_path).await;
        self.stdout = None;
    }

    /// Waits for the node to exit by itself (after a fatal error), and returns how it ended.
    pub async fn exits(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("the node is not running");
        let status = wait(&mut child, "its fatal error", &self.log_path).await;
        self.stdout = None;
        status
    }

    /// Starts the node on its data directory and SIGKILLs it `after` later, whether it serves
    /// by then or is still recovering. True when it was killed before it said it listens (a
    /// crash during recovery).
    pub async fn start_and_kill_after(&mut self, after: std::time::Duration) -> bool {
        assert!(self.child.is_none(), "the node is running");
        let mut child = command(&self.data_dir, &self.log_path, &self.args)
            .spawn()
            .expect("cannot start fairtrail-node");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        tokio::time::sleep(after).await;
        child.start_kill().expect("cannot send SIGKILL to the node");
        let status = wait(&mut child, "SIGKILL", &self.log_path).await;
        // Ended by the kill, not by an error of its own before it.
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "the node ended with {status} before it was killed; its log:\n{}",
            tail(&self.log_path)
        );
        // What it printed before it died: its listening line, or nothing.
        let listened = matches!(
            timeout(CALL_TIMEOUT, stdout.next_line()).await,
            Ok(Ok(Some(line))) if line.starts_with(LISTENING)
        );
        !listened
    }

    /// Restarts the node (as [`TestNode::restart`]) with `args` in place of the extra flags it
    /// was started with, for this start and the next.
    pub async fn restart_with_args(&mut self, args: Vec<String>) {
        self.args = args;
        self.restart().await;
    }

    /// Starts the node again on the same data directory (stopping it gracefully first if it
    /// is running). It listens on a new port: take `url()` again.
    pub async fn restart(&mut self) {
        if self.child.is_some() {
            self.stop().await;
        }
        let spawned = spawn(&self.data_dir, &self.log_path, &self.args).await;
        self.child = Some(spawned.child);
        self.stdout = Some(spawned.stdout);
        self.addr = spawned.grpc;
        self.http = spawned.http;
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.start_kill();
        }
        if std::thread::panicking() {
            eprintln!(
                "--- the end of the log of the node at {} ---\n{}",
                self.addr,
                tail(&self.log_path)
            );
        }
    }
}

/// A node just started: the process and where it serves gRPC.
struct Spawned {
    child: Child,
    stdout: Lines<BufReader<ChildStdout>>,
    grpc: SocketAddr,
    http: Option<SocketAddr>,
}

/// The node's command line over `data_dir`, its log appended to `log_path`.
fn command(data_dir: &Path, log_path: &Path, args: &[String]) -> Command {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)
        .expect("cannot open the node's log file");
    let mut command = Command::new(&binaries().node);
    hermetic(&mut command);
    if std::env::var_os("FAIRTRAIL_LOG").is_none() {
        command.env("FAIRTRAIL_LOG", "info");
    }
    command
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .kill_on_drop(true);
    command
}

/// Spawns the node and reads the one line that says where it listens.
async fn spawn(data_dir: &Path, log_path: &Path, args: &[String]) -> Spawned {
    let mut child = command(data_dir, log_path, args)
        .spawn()
        .expect("cannot start fairtrail-node");
    let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    let line = match timeout(START_TIMEOUT, stdout.next_line()).await {
        Ok(Ok(Some(line))) => line,
        Ok(Ok(None)) => {
            let status = wait(&mut child, "closing its stdout", log_path).await;
            panic!(
                "the node exited ({status}) before listening; its log:\n{}",
                tail(log_path)
            )
        }
        Ok(Err(e)) => panic!("cannot read the node's stdout: {e}"),
        Err(_) => panic!(
            "the node did not listen within {START_TIMEOUT:?}; its log:\n{}",
            tail(log_path)
        ),
    };
    let (grpc, http) = parse_listening(&line).unwrap_or_else(|| {
        panic!("the node's first line is {line:?}, not \"{LISTENING}grpc=ADDR http=ADDR\"")
    });
    for addr in std::iter::once(grpc).chain(http) {
        assert!(addr.ip().is_loopback(), "the node listens on {addr}");
    }
    // The line says the node serves; its first answer confirms it.
    let ready = async {
        let channel = Endpoint::from_shared(format!("http://{grpc}"))
            .map_err(|e| e.to_string())?
            .timeout(START_TIMEOUT)
            .connect()
            .await
            .map_err(|e| e.to_string())?;
        LedgerServiceClient::new(channel)
            .get_checkpoint(proto::GetCheckpointRequest {})
            .await
            .map_err(|e| e.to_string())
    };
    // A TLS node is probed by its test, which holds the certificate authority.
    let tls = args.iter().any(|a| a == "--tls-cert");
    let probe = if tls { Ok(()) } else { ready.await.map(|_| ()) };
    if let Err(e) = probe {
        panic!(
            "the node at {grpc} says it listens but does not answer ({e}); its log:\n{}",
            tail(log_path)
        );
    }
    Spawned {
        child,
        stdout,
        grpc,
        http,
    }
}

/// Parses `fairtrail-node listening grpc=ADDR http=ADDR` (the HTTP address is optional).
fn parse_listening(line: &str) -> Option<(SocketAddr, Option<SocketAddr>)> {
    let (mut grpc, mut http) = (None, None);
    for field in line.strip_prefix(LISTENING)?.split_whitespace() {
        let (name, addr) = field.split_once('=')?;
        let addr: SocketAddr = addr.parse().ok()?;
        match name {
            "grpc" => grpc = Some(addr),
            "http" => http = Some(addr),
            _ => {}
        }
    }
    Some((grpc?, http))
}

async fn wait(child: &mut Child, after: &str, log_path: &Path) -> ExitStatus {
    match timeout(STOP_TIMEOUT, child.wait()).await {
        Ok(status) => status.expect("cannot wait for the node"),
        Err(_) => panic!(
            "the node did not exit within {STOP_TIMEOUT:?} after {after}; its log:\n{}",
            tail(log_path)
        ),
    }
}

/// The last few kilobytes of a log file.
fn tail(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_default();
    let start = bytes.len().saturating_sub(8 * 1024);
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}
