//! The node's HTTP side from outside: a tiny HTTP/1.1 client on a raw TCP stream (the
//! request target goes out byte for byte, so `..` and `%2e%2e` reach the server as written),
//! and [`DemoNode`], a node serving the `fairtrail demo` chain under the demo's policy.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::verdict::fairtrail_in;
use super::{TestNode, CALL_TIMEOUT};

/// One HTTP response.
pub struct Response {
    pub status: u16,
    /// Header names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first header of this (lower-case) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = self.text();
        let shown: String = text.chars().take(2000).collect();
        write!(f, "HTTP {} {:?}\n{shown}", self.status, self.headers)
    }
}

/// `GET target` with extra `headers`, on a new connection closed after the response.
pub async fn get(addr: SocketAddr, target: &str, headers: &[(&str, &str)]) -> Response {
    timeout(CALL_TIMEOUT, exchange(addr, target, headers))
        .await
        .unwrap_or_else(|_| panic!("GET {target} got no response within {CALL_TIMEOUT:?}"))
        .unwrap_or_else(|e| panic!("GET {target}: {e}"))
}

async fn exchange(
    addr: SocketAddr,
    target: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect(addr).await?;
    let mut request = format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    parse(&raw).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// Parses a whole HTTP/1.1 response (the connection was closed after it).
fn parse(raw: &[u8]) -> Result<Response, String> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of headers")?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| "headers are not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or("no status line")?;
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let rest = &raw[end + 4..];
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        dechunk(rest)?
    } else {
        rest.to_vec()
    };
    if let Some(len) = headers.iter().find(|(n, _)| n == "content-length") {
        let len: usize = len.1.parse().map_err(|_| "bad content-length")?;
        if len != body.len() && status != 304 {
            return Err(format!("content-length {len}, body {}", body.len()));
        }
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("truncated chunk size")?;
        let size = std::str::from_utf8(&rest[..line_end])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next()?.trim(), 16).ok())
            .ok_or("bad chunk size")?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        let chunk = rest.get(..size).ok_or("truncated chunk")?;
        body.extend_from_slice(chunk);
        rest = rest.get(size + 2..).ok_or("truncated chunk end")?;
    }
}

/// A node serving the demo chain, its consumer pages judged under the demo's policy.
pub struct DemoNode {
    pub node: TestNode,
    /// Where the demo ran: `demo-policy.toml` is here.
    pub dir: tempfile::TempDir,
    /// The policy file the node reads (`--policy`).
    pub node_policy: PathBuf,
    /// GTIN-14 and batch of the demo's product.
    pub gtin: String,
    pub batch: String,
    /// The declared names of the participants of each journey step, in order.
    pub actors: Vec<&'static str>,
}

/// The demo's participants, by journey step: two harvests, four shipments, the roasting,
/// and the retailer's binding.
const DEMO_ACTORS: [&str; 8] = [
    "Cooperativa Cafetalera Montaña Verde",
    "Cooperativa Agraria Valle del Inambari",
    "Cooperativa Cafetalera Montaña Verde",
    "Cooperativa Agraria Valle del Inambari",
    "Solidar Import eG",
    "Tostadores Solidarios S.Coop.",
    "Tostadores Solidarios S.Coop.",
    "La Colmena Consumer Cooperative",
];

impl DemoNode {
    /// Starts a node with `--policy` (a file that does not exist yet), writes the demo chain
    /// to it with `fairtrail demo --node`, then installs the policy the demo wrote.
    pub async fn start() -> DemoNode {
        let demo = Self::without_policy().await;
        let policy = std::fs::read_to_string(demo.dir.path().join("demo-policy.toml"))
            .expect("the demo wrote demo-policy.toml");
        demo.set_policy(&policy);
        demo
    }

    /// As [`DemoNode::start`], but the node's policy file is not written yet.
    pub async fn without_policy() -> DemoNode {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let node_policy = dir.path().join("node-policy.toml");
        let node =
            TestNode::start_with_args(|_| {}, vec!["--policy".into(), path_arg(&node_policy)])
                .await;
        let args = [
            "--node",
            &node.url(),
            "demo",
            "--public-url",
            &node.http_url(),
        ];
        let out = fairtrail_in(dir.path(), &args).await;
        assert!(out.status.success(), "the demo failed: {out:?}");
        let (gtin, batch) = out
            .stdout
            .lines()
            .find_map(|l| {
                l.strip_prefix("the chain behind GTIN ")?
                    .strip_suffix(':')?
                    .split_once(" batch ")
            })
            .map(|(g, b)| (g.to_owned(), b.to_owned()))
            .unwrap_or_else(|| panic!("the demo names no product: {out:?}"));
        DemoNode {
            node,
            dir,
            node_policy,
            gtin,
            batch,
            actors: DEMO_ACTORS.to_vec(),
        }
    }

    /// Replaces the node's policy file (see [`install_policy`]).
    pub fn set_policy(&self, text: &str) {
        install_policy(&self.node_policy, text);
    }

    /// The Digital Link path of the demo's product.
    pub fn path(&self) -> String {
        format!("/01/{}/10/{}", self.gtin, self.batch)
    }

    /// `GET` on the node's HTTP side.
    pub async fn get(&self, target: &str, headers: &[(&str, &str)]) -> Response {
        get(self.node.http_addr(), target, headers).await
    }
}

/// Replaces a node's policy file atomically, with a modification time later than any before
/// it, so the node sees the change however coarse the file system's clock.
pub fn install_policy(path: &Path, text: &str) {
    static BUMP: AtomicU64 = AtomicU64::new(1);
    let mut staged = path.as_os_str().to_owned();
    staged.push(".new");
    let staged = PathBuf::from(staged);
    std::fs::write(&staged, text).expect("cannot write the policy");
    let bump = BUMP.fetch_add(1, Ordering::Relaxed);
    std::fs::File::options()
        .write(true)
        .open(&staged)
        .and_then(|f| f.set_modified(SystemTime::now() + Duration::from_secs(bump)))
        .expect("cannot set the policy's modification time");
    std::fs::rename(&staged, path).expect("cannot install the policy");
}

/// A path as a flag's value.
pub fn path_arg(path: &Path) -> String {
    path.to_str().expect("temporary paths are UTF-8").to_owned()
}
