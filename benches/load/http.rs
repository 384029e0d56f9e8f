//! HTTP load on the consumer page: a minimal HTTP/1.1 client, one keep-alive connection per
//! client, requests back to back. It reads exactly what a page answer is (a status line,
//! headers with a Content-Length, the body) and fails on anything else.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use crate::report::{histogram, record, Phase};

/// One keep-alive connection.
pub struct Connection {
    stream: BufReader<TcpStream>,
    request: Vec<u8>,
    line: String,
    body: Vec<u8>,
}

impl Connection {
    pub async fn open(addr: &str, path: &str) -> anyhow::Result<Connection> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("cannot connect to {addr}"))?;
        stream.set_nodelay(true)?;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/html\r\nAccept-Language: en\r\n\r\n"
        )
        .into_bytes();
        Ok(Connection {
            stream: BufReader::with_capacity(64 * 1024, stream),
            request,
            line: String::new(),
            body: Vec::new(),
        })
    }

    /// The body of the last answer.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// One request and its whole answer; returns the status and the body's length.
    pub async fn get(&mut self) -> anyhow::Result<(u16, usize)> {
        self.stream.get_mut().write_all(&self.request).await?;
        self.line.clear();
        self.stream.read_line(&mut self.line).await?;
        let status: u16 = self
            .line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow!("not an HTTP status line: {:?}", self.line))?;
        let mut length = None;
        loop {
            self.line.clear();
            if self.stream.read_line(&mut self.line).await? == 0 {
                bail!("the connection closed inside the headers");
            }
            let header = self.line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = Some(value.trim().parse::<usize>()?);
                }
                if name.eq_ignore_ascii_case("transfer-encoding") {
                    bail!("a chunked answer: this client reads Content-Length answers only");
                }
            }
        }
        let length = length.ok_or_else(|| anyhow!("an answer without Content-Length"))?;
        self.body.resize(length, 0);
        self.stream.read_exact(&mut self.body).await?;
        Ok((status, length))
    }
}

/// The node's sequencer counters from `/metrics`: (commits, committed entries, microseconds
/// spent committing).
pub async fn commit_counters(addr: &str) -> anyhow::Result<(f64, f64, f64)> {
    let mut c = Connection::open(addr, "/metrics").await?;
    let (status, _) = c.get().await?;
    if status != 200 {
        bail!("/metrics answered {status}");
    }
    let text = String::from_utf8_lossy(c.body());
    let counter = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
            .ok_or_else(|| anyhow!("/metrics has no {name}"))
    };
    Ok((
        counter("fairtrail_commits_total")?,
        counter("fairtrail_committed_entries_total")?,
        counter("fairtrail_commit_microseconds_total")?,
    ))
}

/// `clients` connections requesting `path` back to back for `time`; every answer must be a
/// 200 with a body.
pub async fn load(addr: &str, path: &str, clients: usize, time: Duration) -> anyhow::Result<Phase> {
    let mut connections = Vec::new();
    for _ in 0..clients.max(1) {
        connections.push(Connection::open(addr, path).await?);
    }
    let started = Instant::now();
    let mut set = JoinSet::new();
    for mut c in connections {
        set.spawn(async move {
            let mut h = histogram();
            let mut n = 0u64;
            while started.elapsed() < time {
                let t = Instant::now();
                let (status, len) = c.get().await?;
                record(&mut h, t.elapsed());
                if status != 200 || len == 0 {
                    bail!("the page answered {status} with {len} bytes");
                }
                n += 1;
            }
            anyhow::Ok((n, h))
        });
    }
    let mut latency = histogram();
    let mut operations = 0;
    while let Some(joined) = set.join_next().await {
        let (n, h) = joined??;
        operations += n;
        latency
            .add(&h)
            .map_err(|e| anyhow!("merging histograms: {e}"))?;
    }
    Ok(Phase {
        operations,
        elapsed: started.elapsed(),
        latency,
    })
}
