//! Bytes the typed clients refuse to send: a gRPC call whose request body is any bytes at all
//! (not protobuf, cut short, invalid UTF-8 in a string field), an HTTP/1.1 request written
//! byte for byte (a path that is not UTF-8, a header too large to parse), and surgery on
//! encoded protobuf (a placeholder replaced by bytes of the same length, so every enclosing
//! length stays right).

use std::net::SocketAddr;

use bytes::{Buf, BufMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;

use super::CALL_TIMEOUT;

/// A gRPC codec that sends and receives message bodies as they are.
#[derive(Clone, Copy, Debug, Default)]
pub struct RawCodec;

/// The encoder and decoder of [`RawCodec`].
#[derive(Clone, Copy, Debug, Default)]
pub struct RawBytes;

impl Encoder for RawBytes {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawBytes {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawBytes;
    type Decoder = RawBytes;

    fn encoder(&mut self) -> RawBytes {
        RawBytes
    }

    fn decoder(&mut self) -> RawBytes {
        RawBytes
    }
}

/// A unary call of `method` (such as `/fairtrail.v1.LedgerService/Submit`) whose request
/// message is `body`, byte for byte; the answer's message bytes, or its status.
pub async fn unary(
    channel: &Channel,
    method: &'static str,
    body: Vec<u8>,
) -> Result<Vec<u8>, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(format!("the channel is not ready: {e}")))?;
    grpc.unary(
        tonic::Request::new(body),
        PathAndQuery::from_static(method),
        RawCodec,
    )
    .await
    .map(tonic::Response::into_inner)
}

/// An HTTP response read off a raw connection.
pub struct RawResponse {
    pub status: u16,
    /// Everything after the status line: headers and body, as received.
    pub rest: Vec<u8>,
}

impl RawResponse {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.rest).into_owned()
    }
}

impl std::fmt::Debug for RawResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text: String = self.text().chars().take(2000).collect();
        write!(f, "HTTP {} {text:?}", self.status)
    }
}

/// Sends `request` (a whole HTTP/1.1 request, byte for byte) on a new connection and reads
/// the answer until the server closes it. The server may answer and close before it has
/// read everything (a header too large): a failed write is not an error, a missing answer
/// is. Bounded by [`CALL_TIMEOUT`].
pub async fn http(addr: SocketAddr, request: &[u8]) -> Result<RawResponse, String> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let _ = stream.write_all(request).await;
        let mut raw = Vec::new();
        // A reset after the answer (the server closed with our request unread) still leaves
        // the answer in `raw`.
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => raw.extend_from_slice(&chunk[..n]),
            }
        }
        let line_end = raw
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| format!("no status line in {:?}", String::from_utf8_lossy(&raw)))?;
        let line = String::from_utf8_lossy(&raw[..line_end]).into_owned();
        let status = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad status line {line:?}"))?;
        Ok(RawResponse {
            status,
            rest: raw[line_end + 2..].to_vec(),
        })
    };
    timeout(CALL_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("no answer within {CALL_TIMEOUT:?}"))?
}

/// `bytes` with the one occurrence of `placeholder` replaced by `replacement`, which must
/// have the same length: in encoded protobuf, every length prefix stays right.
#[track_caller]
pub fn splice(bytes: &[u8], placeholder: &[u8], replacement: &[u8]) -> Vec<u8> {
    assert_eq!(
        placeholder.len(),
        replacement.len(),
        "a splice keeps the length"
    );
    let found: Vec<usize> = bytes
        .windows(placeholder.len())
        .enumerate()
        .filter(|(_, w)| *w == placeholder)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "the placeholder {:?} occurs {} times",
        String::from_utf8_lossy(placeholder),
        found.len()
    );
    let mut out = bytes.to_vec();
    out[found[0]..found[0] + placeholder.len()].copy_from_slice(replacement);
    out
}

/// A streaming call of `method` (such as `/fairtrail.v1.LedgerService/SubmitStream`) whose
/// one request message is `body`, byte for byte; the first answer's bytes (`None` when the
/// stream ends without one), or the call's status.
pub async fn streaming(
    channel: &Channel,
    method: &'static str,
    body: Vec<u8>,
) -> Result<Option<Vec<u8>>, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(format!("the channel is not ready: {e}")))?;
    let mut answers = grpc
        .streaming(
            tonic::Request::new(tokio_stream::iter([body])),
            PathAndQuery::from_static(method),
            RawCodec,
        )
        .await?
        .into_inner();
    answers.message().await
}
