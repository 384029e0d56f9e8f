//! Admission and rate limits: who may declare themselves, and how fast one connection or one
//! key may submit. Limits protect the node's two cores from a flood, so that reads keep being
//! served while abusive writes are refused early and cheaply.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Instant;

use fairtrail_client::envelope::Envelope;
use fairtrail_client::keys::PublicKey;
use fairtrail_client::proto::statement::Body;
use fairtrail_client::statement::Statement;

/// Who may declare themselves a participant.
#[derive(Clone, Debug, PartialEq, Eq, Default, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Admission {
    /// Anyone may declare themselves.
    #[default]
    Open,
    /// A declaration must also be signed by one of the network's operator keys.
    Endorsed,
}

/// The admission policy in force.
#[derive(Clone, Debug, Default)]
pub struct AdmissionPolicy {
    pub mode: Admission,
    pub operators: Vec<PublicKey>,
}

impl AdmissionPolicy {
    /// `Err` with a message a person can act on when the statement may not enter.
    pub fn check(&self, envelope: &Envelope, statement: &Statement) -> Result<(), String> {
        if self.mode == Admission::Open
            || !matches!(statement.body, Body::ParticipantDeclaration(_))
        {
            return Ok(());
        }
        let endorsed = envelope
            .signers()
            .any(|k| k != statement.issuer && self.operators.contains(&k));
        if endorsed {
            Ok(())
        } else {
            let keys: Vec<String> = self.operators.iter().map(|k| k.to_string()).collect();
            Err(format!(
                "this network admits participants endorsed by an operator: have one of [{}] co-sign \
                 your declaration (`fairtrail declare --out FILE`, then `fairtrail cosign FILE`, then \
                 `fairtrail submit FILE`)",
                keys.join(", ")
            ))
        }
    }
}

/// A token bucket per key: `rate` tokens a second, at most `burst` saved up.
pub struct RateLimiter<K> {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<K, (f64, Instant)>>,
}

/// Buckets kept before idle ones are dropped: bounds memory under a flood of distinct keys.
const MAX_BUCKETS: usize = 100_000;

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    /// `rate` per second; 0 means unlimited.
    pub fn new(rate: u32, burst: u32) -> Self {
        RateLimiter {
            rate: f64::from(rate),
            burst: f64::from(burst.max(rate).max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    pub fn unlimited(&self) -> bool {
        self.rate == 0.0
    }

    /// Takes `n` tokens for `key`; false when the key is over its rate.
    pub fn allow(&self, key: &K, n: u32) -> bool {
        if self.unlimited() {
            return true;
        }
        let now = Instant::now();
        let Ok(mut buckets) = self.buckets.lock() else {
            return true;
        };
        if buckets.len() >= MAX_BUCKETS {
            let burst = self.burst;
            let rate = self.rate;
            // Drop the buckets that have refilled: they hold no state worth keeping.
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * rate < burst
            });
        }
        let (tokens, at) = buckets.entry(key.clone()).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(self.burst);
        *at = now;
        if *tokens >= f64::from(n) {
            *tokens -= f64::from(n);
            true
        } else {
            false
        }
    }

    /// Forgets a key (a connection that closed).
    pub fn forget(&self, key: &K) {
        if let Ok(mut buckets) = self.buckets.lock() {
            buckets.remove(key);
        }
    }
}

/// A connection that holds one of the node's connection slots for as long as it lives.
/// On plain-text connections its writes are gathered ([`crate::gather`]): a unary answer
/// leaves in one write.
pub struct LimitedStream {
    inner: crate::gather::Gathered<tokio::net::TcpStream>,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl tokio::io::AsyncRead for LimitedStream {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for LimitedStream {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl tonic::transport::server::Connected for LimitedStream {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.get_ref().connect_info()
    }
}

/// Accepts connections from `listener`, at most `max` open at once: the next waits in the
/// kernel's backlog until one closes, so a flood of connections cannot exhaust the node.
/// With `gather`, each connection's writes are gathered ([`crate::gather`]; plain text only).
pub fn limit_connections(
    listener: tokio::net::TcpListener,
    max: usize,
    gather: bool,
) -> tokio_stream::wrappers::ReceiverStream<std::io::Result<LimitedStream>> {
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(max.max(1)));
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        loop {
            let Ok(slot) = slots.clone().acquire_owned().await else {
                return;
            };
            let accepted = tokio::select! {
                a = listener.accept() => a,
                () = tx.closed() => return,
            };
            match accepted {
                Ok((inner, _)) => {
                    let _ = inner.set_nodelay(true);
                    if tx
                        .send(Ok(LimitedStream {
                            inner: if gather {
                                crate::gather::Gathered::new(inner)
                            } else {
                                crate::gather::Gathered::straight(inner)
                            },
                            _slot: slot,
                        }))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Err(e) => {
                    // Out of file descriptors and the like: wait, rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let limiter = RateLimiter::new(10, 20);
        let allowed = (0..100).filter(|_| limiter.allow(&"a", 1)).count();
        assert!((20..=22).contains(&allowed), "{allowed}");
        assert!(limiter.allow(&"b", 1), "keys have their own buckets");
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert!(limiter.allow(&"a", 1), "the bucket refills");
    }

    #[test]
    fn zero_means_unlimited() {
        let limiter = RateLimiter::new(0, 0);
        assert!((0..10_000).all(|_| limiter.allow(&1u8, 1)));
    }
}
