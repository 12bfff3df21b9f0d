//! The link between agents: the frame codec (sans-IO), zstd payloads, QUIC endpoints with mutual TLS, and dev certificates.
//!
//! - [`proto`]: the wire constants — ALPN, version, frame bound, [`CloseCode`]s, the
//!   snapshot-only Hello suffix, lane names.
//! - [`frame`]: length-prefixed, versioned frames on a byte buffer; no I/O, fuzzable.
//! - [`down`] and [`up`]: the two sides of one lane's link as sans-IO state machines (frames
//!   and time in, actions out); `upstream::agent` and `serve::agent` are their async shells.
//! - [`client`]: the downstream's shared connection ([`client::LinkConn`]) and
//!   [`client::open_lane`].
//! - [`compress`]: zstd for log payloads with bounded output.
//! - [`quic`] and [`tls`]: quinn endpoints; every peer presents a certificate of the deployment CA.
//! - [`stream`]: frames over a QUIC stream (read and write halves).
//! - [`control`]: the control stream (slot map downstream), codec and sans-IO state machines.
//! - [`certs`]: `georelay certs init`, a dev CA and node certificates.
//!
//! Errors: [`FrameError`] for malformed wire data (frames and compressed payloads),
//! [`LinkError`] for everything that touches files, sockets, TLS and QUIC.

use std::net::SocketAddr;
use std::path::PathBuf;

pub mod certs;
pub mod client;
pub mod compress;
pub mod control;
pub mod down;
pub mod frame;
mod frame_decode;
pub mod proto;
pub mod quic;
pub mod stream;
pub mod tls;
pub mod up;

pub use compress::{compress, decompress, log_frame, log_payload, Compression};
pub use frame::{decode, encode, encode_head, Frame, PartialSnapshot};
pub use proto::{CloseCode, ALPN, ALPN_V2, ALPN_V3, MAX_FRAME, PROTOCOL_VERSION, SNAPSHOT_ONLY};
pub use quic::{
    client_endpoint, connect, negotiated_alpn, peer_name, server_endpoint, Congestion,
    TransportSettings,
};
pub use stream::{FrameReader, FrameWriter};
pub use tls::TlsFiles;

/// Malformed agent-to-agent wire data: a bad frame or a bad compressed payload.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame body of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("unknown frame type {0}")]
    UnknownType(u8),
    #[error("frame truncated in {field}: needs {need} bytes, {have} left in the body")]
    Truncated {
        field: &'static str,
        need: usize,
        have: usize,
    },
    #[error("{extra} trailing bytes after a {frame} frame")]
    TrailingBytes { frame: &'static str, extra: usize },
    #[error("{field} is not valid UTF-8")]
    BadUtf8 { field: &'static str },
    #[error("{field} is not a replication id (40 hex characters): {got:?}")]
    BadReplid { field: &'static str, got: String },
    #[error("{field} has invalid value {value}")]
    BadFlag { field: &'static str, value: u8 },
    #[error("Hello names an invalid lane {0:?} (1 to 64 characters of A-Z a-z 0-9 . _ - :)")]
    BadLane(String),
    #[error("Ack says {received} bytes received but {durable} fsynced (received < durable)")]
    AckOrder { received: u64, durable: u64 },
    #[error("Hello offers {have} bytes of a {size}-byte snapshot")]
    PartialTooLong { have: u64, size: u64 },
    #[error("uncompressed Log frame says raw_len {raw_len} but carries {data_len} bytes")]
    LengthMismatch { raw_len: u32, data_len: usize },
    #[error("compressed payload claims {raw_len} bytes, above the limit of {max}")]
    RawTooLarge { raw_len: usize, max: usize },
    #[error("compressed payload inflates to {got} bytes, expected {expected}")]
    RawMismatch { expected: usize, got: usize },
    #[error("zstd decompression failed: {0}")]
    Decompress(String),
    #[error("zstd compression failed: {0}")]
    Compress(String),
}

/// Failures of the link's I/O side: files, sockets, TLS, QUIC and certificate generation.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("cannot read {path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    WriteFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {detail}")]
    Pem { path: PathBuf, detail: String },
    #[error("{path} already exists (use --force to overwrite)")]
    Exists { path: PathBuf },
    #[error("invalid node name {0:?}: use letters, digits, '-' and '.', starting with a letter or digit")]
    BadNodeName(String),
    #[error("certificate generation failed: {0}")]
    Certgen(#[from] rcgen::Error),
    #[error("TLS configuration: {0}")]
    Tls(String),
    #[error("invalid transport setting: {0}")]
    Settings(String),
    #[error("invalid server name {0:?}")]
    BadServerName(String),
    #[error("UDP socket on {addr}: {source}")]
    Socket {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: quinn::ConnectError,
    },
    #[error("connection with {addr}: {source}")]
    Connection {
        addr: SocketAddr,
        source: quinn::ConnectionError,
    },
    #[error("stream read: {}", chain(.0))]
    Read(#[from] std::io::Error),
    #[error("stream write: {}", chain(.0))]
    Write(#[from] quinn::WriteError),
    #[error("stream closed: {0}")]
    ClosedStream(#[from] quinn::ClosedStream),
    #[error("peer closed the stream in the middle of a frame ({0} bytes buffered)")]
    UnexpectedEof(usize),
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("injected by failpoint {0}")]
    Injected(&'static str),
}

/// An error and its sources, e.g. "connection lost: timed out", so the cause of a lost stream
/// reaches the log.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}
