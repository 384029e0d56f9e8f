//! Gathered writes: one `write` to the socket for what the HTTP/2 layer flushes in one turn.
//!
//! The HTTP/2 encoder (`h2`) does not copy a DATA payload of 256 bytes or more into its
//! buffer: it hands the frame's head and the payload to the socket as two slices of one
//! vectored write, and must flush them before it can encode the next frame. A unary gRPC
//! answer is a HEADERS frame, one DATA frame and a HEADERS frame of trailers (`grpc-status`),
//! so every receipt left the node as two writes: two system calls, two TCP segments, and two
//! wake-ups of the client, which reads each one separately.
//!
//! [`Gathered`] keeps such a write and lets the flush that follows it pass; the next flush
//! writes everything kept in one system call. The encoder always flushes again before its
//! turn ends (it encodes the trailers, then flushes), so an answer whose trailers were queued
//! before the connection's turn leaves as one write. That is the usual case, not a promise:
//! on a multi-thread runtime the connection can take its turn between the handler's DATA
//! and its trailers, and that answer leaves in two writes, as before.
//! Two guards make sure nothing kept is ever left behind by a writer that did not flush
//! again: the task is woken when a flush is let pass (its next turn flushes or reads), and a
//! read writes whatever is kept first (a writer never waits for the peer on bytes it holds).
//!
//! What is kept is copied: every write of two or more slices (the encoder's chained DATA
//! frames, up to 16 KiB each at the default frame size), and any write made while bytes are
//! kept. At most [`KEEP_MAX`] bytes are kept: what is kept is written out before it would
//! grow past that, and a write larger than that goes straight through. So a large streamed
//! answer leaves in writes of up to 64 KiB. A single slice with nothing kept goes straight
//! through, uncopied. The node
//! gathers only plain-text gRPC connections, whose one writer is the HTTP/2 encoder (tonic
//! serves them HTTP/2 only); a TLS connection is written as it was.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The most bytes kept for a later flush; a larger vectored write is written through.
pub const KEEP_MAX: usize = 64 * 1024;

/// A stream whose vectored writes are gathered until the next flush (see the module docs).
#[derive(Debug)]
pub struct Gathered<S> {
    inner: S,
    /// Bytes accepted but not yet written to `inner`.
    kept: Vec<u8>,
    /// The next flush may pass without writing `kept`.
    let_pass: bool,
    /// Off: every write goes straight through.
    enabled: bool,
}

impl<S> Gathered<S> {
    pub fn new(inner: S) -> Self {
        Gathered {
            inner,
            kept: Vec::new(),
            let_pass: false,
            enabled: true,
        }
    }

    /// A stream written exactly as `inner` would be.
    pub fn straight(inner: S) -> Self {
        Gathered {
            enabled: false,
            ..Gathered::new(inner)
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncWrite + Unpin> Gathered<S> {
    /// Writes everything kept, or returns `Pending` (woken when the socket can take more).
    fn write_kept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut done = 0;
        let result = loop {
            let Some(rest) = self.kept.get(done..).filter(|r| !r.is_empty()) else {
                break Poll::Ready(Ok(()));
            };
            match Pin::new(&mut self.inner).poll_write(cx, rest) {
                Poll::Ready(Ok(0)) => break Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => done += n,
                Poll::Ready(Err(e)) => break Poll::Ready(Err(e)),
                Poll::Pending => break Poll::Pending,
            }
        };
        self.kept.drain(..done.min(self.kept.len()));
        result
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Gathered<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.kept.is_empty() {
            self.let_pass = false;
            // A failed write shows again at the next write or flush; the read goes on.
            if let Poll::Ready(Err(e)) = self.write_kept(cx) {
                tracing::debug!(error = %e, "writing gathered bytes before a read failed");
            }
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Gathered<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if !self.kept.is_empty() {
            if self.kept.len() + buf.len() <= KEEP_MAX {
                self.kept.extend_from_slice(buf);
                return Poll::Ready(Ok(buf.len()));
            }
            ready!(self.write_kept(cx))?;
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let len: usize = bufs.iter().map(|b| b.len()).sum();
        let slices = bufs.iter().filter(|b| !b.is_empty()).count();
        if self.kept.len() + len > KEEP_MAX {
            ready!(self.write_kept(cx))?;
        }
        if self.enabled
            && (slices >= 2 || !self.kept.is_empty())
            && self.kept.len() + len <= KEEP_MAX
        {
            for b in bufs {
                self.kept.extend_from_slice(b);
            }
            self.let_pass |= slices >= 2;
            return Poll::Ready(Ok(len));
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if std::mem::take(&mut self.let_pass) && !self.kept.is_empty() {
            // The guard: the task's next turn flushes again, whatever the encoder does.
            cx.waker().wake_by_ref();
            return Poll::Ready(Ok(()));
        }
        ready!(self.write_kept(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.let_pass = false;
        ready!(self.write_kept(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A writer that records each write it is given, and takes at most `limit` bytes a call.
    #[derive(Clone, Default)]
    struct Recorder {
        writes: Arc<Mutex<Vec<Vec<u8>>>>,
        limit: Option<usize>,
        full: Arc<Mutex<bool>>,
    }

    impl Recorder {
        fn writes(&self) -> Vec<Vec<u8>> {
            self.writes.lock().map(|w| w.clone()).unwrap_or_default()
        }
    }

    impl AsyncWrite for Recorder {
        fn poll_write(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            if self.full.lock().map(|f| *f).unwrap_or(false) {
                return Poll::Pending;
            }
            let n = self.limit.map_or(buf.len(), |l| l.min(buf.len()));
            if let Ok(mut w) = self.writes.lock() {
                w.push(buf[..n].to_vec());
            }
            Poll::Ready(Ok(n))
        }

        fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncRead for Recorder {
        fn poll_read(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            _buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Poll::Pending
        }
    }

    /// A waker that counts its wake-ups.
    struct Count(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for Count {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    fn ready<T: std::fmt::Debug>(p: Poll<io::Result<T>>) -> T {
        match p {
            Poll::Ready(Ok(v)) => v,
            other => panic!("expected Ready(Ok), got {other:?}"),
        }
    }

    /// A gathered recorder, polled with a waker that counts its wake-ups.
    struct Rig {
        g: Gathered<Recorder>,
        rec: Recorder,
        wakes: Arc<Count>,
        waker: std::task::Waker,
    }

    impl Rig {
        fn new(rec: Recorder, gather: bool) -> Rig {
            let g = if gather {
                Gathered::new(rec.clone())
            } else {
                Gathered::straight(rec.clone())
            };
            let wakes = Arc::new(Count(0.into()));
            let waker = std::task::Waker::from(wakes.clone());
            Rig {
                g,
                rec,
                wakes,
                waker,
            }
        }

        fn gathered() -> Rig {
            Rig::new(Recorder::default(), true)
        }

        fn vectored(&mut self, parts: &[&[u8]]) -> Poll<io::Result<usize>> {
            let slices: Vec<io::IoSlice<'_>> = parts.iter().map(|p| io::IoSlice::new(p)).collect();
            let mut cx = Context::from_waker(&self.waker);
            Pin::new(&mut self.g).poll_write_vectored(&mut cx, &slices)
        }

        fn write(&mut self, buf: &[u8]) -> Poll<io::Result<usize>> {
            let mut cx = Context::from_waker(&self.waker);
            Pin::new(&mut self.g).poll_write(&mut cx, buf)
        }

        fn flush(&mut self) -> Poll<io::Result<()>> {
            let mut cx = Context::from_waker(&self.waker);
            Pin::new(&mut self.g).poll_flush(&mut cx)
        }

        fn shutdown(&mut self) -> Poll<io::Result<()>> {
            let mut cx = Context::from_waker(&self.waker);
            Pin::new(&mut self.g).poll_shutdown(&mut cx)
        }

        fn read(&mut self) -> Poll<io::Result<()>> {
            let mut cx = Context::from_waker(&self.waker);
            let mut space = [0u8; 8];
            let mut buf = ReadBuf::new(&mut space);
            Pin::new(&mut self.g).poll_read(&mut cx, &mut buf)
        }

        fn set_full(&self, full: bool) {
            if let Ok(mut f) = self.rec.full.lock() {
                *f = full;
            }
        }
    }

    #[test]
    fn a_framed_answer_and_its_trailers_leave_in_one_write() {
        let mut r = Rig::gathered();
        // The encoder's turn: head and payload as two slices, a flush, the trailers, a flush.
        let head = [1u8; 21];
        let payload = [2u8; 900];
        assert_eq!(ready(r.vectored(&[&head, &payload])), 921);
        ready(r.flush());
        assert!(
            r.rec.writes().is_empty(),
            "the first flush lets the frame wait"
        );
        assert_eq!(r.wakes.0.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(ready(r.write(&[3u8; 10])), 10);
        ready(r.flush());
        let writes = r.rec.writes();
        assert_eq!(writes.len(), 1, "one write for the whole answer");
        let mut expected = head.to_vec();
        expected.extend_from_slice(&payload);
        expected.extend_from_slice(&[3u8; 10]);
        assert_eq!(writes[0], expected);
        // The guard's extra turn flushes nothing more.
        ready(r.flush());
        assert_eq!(r.rec.writes().len(), 1);
    }

    #[test]
    fn bytes_let_pass_once_are_written_at_the_next_flush() {
        let mut r = Rig::gathered();
        ready(r.vectored(&[b"ab", b"cd"]));
        ready(r.flush());
        ready(r.flush());
        assert_eq!(r.rec.writes(), vec![b"abcd".to_vec()]);
    }

    #[test]
    fn a_read_first_writes_what_is_kept() {
        let mut r = Rig::gathered();
        ready(r.vectored(&[b"hel", b"lo"]));
        ready(r.flush());
        assert!(r.rec.writes().is_empty());
        assert!(r.read().is_pending());
        assert_eq!(r.rec.writes(), vec![b"hello".to_vec()]);
    }

    #[test]
    fn a_straight_stream_keeps_nothing() {
        let mut r = Rig::new(Recorder::default(), false);
        // The recorder takes the first slice of a vectored write, as a socket may.
        assert_eq!(ready(r.vectored(&[b"ab", b"cd"])), 2);
        assert_eq!(r.rec.writes(), vec![b"ab".to_vec()]);
    }

    #[test]
    fn single_writes_pass_straight_through_and_shutdown_writes_what_is_kept() {
        let mut r = Rig::gathered();
        ready(r.write(b"one"));
        assert_eq!(r.rec.writes(), vec![b"one".to_vec()]);
        ready(r.vectored(&[b"tw", b"o"]));
        ready(r.shutdown());
        assert_eq!(r.rec.writes(), vec![b"one".to_vec(), b"two".to_vec()]);
    }

    #[test]
    fn a_socket_taking_little_at_a_time_gets_every_byte_in_order() {
        let rec = Recorder {
            limit: Some(7),
            ..Recorder::default()
        };
        let mut r = Rig::new(rec, true);
        let mut sent = Vec::new();
        for i in 0..50u8 {
            let a = vec![i; usize::from(i) + 1];
            let b = vec![i ^ 0xff; 3];
            let n = ready(r.vectored(&[&a, &b]));
            let mut both = a.clone();
            both.extend_from_slice(&b);
            sent.extend_from_slice(&both[..n]);
            ready(r.flush());
        }
        ready(r.flush());
        assert_eq!(r.rec.writes().concat(), sent);
        assert!(r.rec.writes().iter().all(|w| w.len() <= 7));
    }

    #[test]
    fn a_full_socket_keeps_the_bytes_until_it_takes_them() {
        let mut r = Rig::gathered();
        ready(r.vectored(&[b"he", b"llo"]));
        ready(r.flush());
        r.set_full(true);
        assert!(r.flush().is_pending());
        // More than the keep limit cannot be accepted while the socket is full.
        let big = vec![0u8; KEEP_MAX];
        assert!(r.vectored(&[&big, b"x"]).is_pending());
        r.set_full(false);
        ready(r.flush());
        assert_eq!(r.rec.writes().concat(), b"hello".to_vec());
    }
}

#[cfg(test)]
mod http2 {
    //! The reason for the module, shown on the real HTTP/2 stack: an answer with trailers (as
    //! every gRPC answer has) leaves the server in two writes, and in one when gathered.

    use super::*;
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use bytes::Bytes;
    use http_body_util::{BodyExt, StreamBody};
    use hyper::body::Frame;

    /// A socket that counts the writes that reach it.
    struct Counted {
        inner: tokio::net::TcpStream,
        writes: Arc<AtomicUsize>,
    }

    impl AsyncRead for Counted {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Pin::new(&mut self.inner).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for Counted {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let r = Pin::new(&mut self.inner).poll_write(cx, buf);
            if matches!(r, Poll::Ready(Ok(_))) {
                self.writes.fetch_add(1, Ordering::SeqCst);
            }
            r
        }

        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            bufs: &[io::IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
            if matches!(r, Poll::Ready(Ok(_))) {
                self.writes.fetch_add(1, Ordering::SeqCst);
            }
            r
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.inner).poll_flush(cx)
        }

        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.inner).poll_shutdown(cx)
        }
    }

    type Frames = tokio_stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>;

    /// An answer shaped like a receipt: 900 bytes of body, then trailers.
    fn answer() -> http::Response<StreamBody<Frames>> {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
        let frames = vec![
            Ok(Frame::data(Bytes::from(vec![7u8; 900]))),
            Ok(Frame::trailers(trailers)),
        ];
        http::Response::new(StreamBody::new(tokio_stream::iter(frames)))
    }

    /// The server's writes for `calls` answers on one connection, after a first call (the
    /// connection's settings), gathered or not.
    async fn server_writes(gathered: bool, calls: usize) -> anyhow::Result<usize> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let writes = Arc::new(AtomicUsize::new(0));
        let counter = writes.clone();
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await?;
            tcp.set_nodelay(true)?;
            let counted = Counted {
                inner: tcp,
                writes: counter,
            };
            let service =
                hyper::service::service_fn(|_req| async { Ok::<_, Infallible>(answer()) });
            let builder =
                hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new());
            if gathered {
                builder
                    .serve_connection(
                        hyper_util::rt::TokioIo::new(Gathered::new(counted)),
                        service,
                    )
                    .await?;
            } else {
                builder
                    .serve_connection(hyper_util::rt::TokioIo::new(counted), service)
                    .await?;
            }
            anyhow::Ok(())
        });
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let (mut client, connection) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tcp),
        )
        .await?;
        tokio::spawn(connection);
        let mut counted = 0;
        for call in 0..=calls {
            if call == 1 {
                // Let the connection's own frames (settings, their acknowledgements) settle.
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                counted = writes.load(Ordering::SeqCst);
            }
            let request = http::Request::post(format!("http://{addr}/"))
                .body(http_body_util::Empty::<Bytes>::new())?;
            let body = client
                .send_request(request)
                .await?
                .into_body()
                .collect()
                .await?;
            anyhow::ensure!(body.trailers().is_some(), "the answer lost its trailers");
            anyhow::ensure!(body.to_bytes().len() == 900, "the answer lost bytes");
        }
        let total = writes.load(Ordering::SeqCst) - counted;
        drop(client);
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), server).await;
        Ok(total)
    }

    #[tokio::test]
    async fn an_answer_with_trailers_leaves_in_one_write_when_gathered() -> anyhow::Result<()> {
        let calls = 20;
        let plain = server_writes(false, calls).await?;
        let gathered = server_writes(true, calls).await?;
        assert_eq!(
            plain,
            2 * calls,
            "the HTTP/2 encoder writes the trailers on their own"
        );
        assert_eq!(gathered, calls, "gathered, each answer is one write");
        Ok(())
    }
}
