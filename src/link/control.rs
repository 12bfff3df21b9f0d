//! The control stream of an agent link: beside the lane streams on the same QUIC connection,
//! one stream carries the slot map downstream. Its codec, the two sans-IO state machines
//! ([`ControlServer`] upstream, [`ControlClient`] downstream: frames and time in, actions out)
//! and the thin async shells ([`serve`], [`follow`]) that only do I/O.
//!
//! The stream starts like a lane stream, with a link `Hello` whose lane is [`CONTROL_LANE`];
//! then control frames follow: `u32 LE` body length, `u8` type, the fields. The downstream
//! sends nothing after Hello until it has received the first frame, so the upstream can hand
//! the stream from its Hello reader to [`serve`] without losing buffered bytes.

use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use crate::cluster::slotmap_codec;
use crate::cluster::{SlotMap, SlotMapError};

/// The Hello lane name of the control stream. `:` never appears in a lane name
/// ([`crate::cluster::slotmap::check_name`]), so it cannot collide with a real lane.
pub const CONTROL_LANE: &str = ":control";
/// Largest control frame body (a map of 1024 lanes and 16384 ranges is ~200 KiB).
pub const MAX_CONTROL_FRAME: usize = 1 << 20;

const T_SLOT_MAP: u8 = 1;
const T_KEEPALIVE: u8 = 2;
const T_ACK: u8 = 3;

/// Why the control stream ended or could not go on.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("control frame of {len} bytes exceeds the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("unknown control frame type {0}")]
    UnknownType(u8),
    #[error("control frame {frame} truncated or with trailing bytes ({len} bytes in the body)")]
    BadLength { frame: &'static str, len: usize },
    #[error("slot map from upstream: {0}")]
    SlotMap(#[from] SlotMapError),
    #[error("control protocol: {0}")]
    Protocol(String),
    #[error("control stream silent for {0:?}")]
    Idle(Duration),
    #[error("control stream closed by the peer")]
    Closed,
    #[error("control stream I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// One control frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlFrame {
    /// Upstream → downstream: the whole current slot map.
    SlotMap(SlotMap),
    /// Upstream → downstream: nothing changed; `version` is still the current map.
    Keepalive { version: u64 },
    /// Downstream → upstream: the map of `version` was received.
    Ack { version: u64 },
}

impl ControlFrame {
    pub fn name(&self) -> &'static str {
        match self {
            ControlFrame::SlotMap(_) => "SlotMap",
            ControlFrame::Keepalive { .. } => "Keepalive",
            ControlFrame::Ack { .. } => "Ack",
        }
    }
}

/// Appends the encoding of `frame` to `out`.
pub fn encode(frame: &ControlFrame, out: &mut BytesMut) {
    let (ty, body) = match frame {
        ControlFrame::SlotMap(m) => (T_SLOT_MAP, slotmap_codec::encode(m)),
        ControlFrame::Keepalive { version } => (T_KEEPALIVE, version.to_le_bytes().to_vec()),
        ControlFrame::Ack { version } => (T_ACK, version.to_le_bytes().to_vec()),
    };
    out.put_u32_le(u32::try_from(body.len() + 1).unwrap_or(u32::MAX));
    out.put_u8(ty);
    out.put_slice(&body);
}

/// Decodes one frame from the front of `buf`: `Ok(None)` when more bytes are needed (nothing
/// consumed). A bad frame is an error; the stream is expected to close.
pub fn decode(buf: &mut BytesMut) -> Result<Option<ControlFrame>, ControlError> {
    let Some(head) = buf.get(..4) else {
        return Ok(None);
    };
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
    if len > MAX_CONTROL_FRAME {
        return Err(ControlError::TooLarge {
            len,
            max: MAX_CONTROL_FRAME,
        });
    }
    if buf.len() < 4 + len {
        return Ok(None);
    }
    buf.advance(4);
    let body = buf.split_to(len);
    let Some((&ty, rest)) = body.split_first() else {
        return Err(ControlError::BadLength {
            frame: "(empty)",
            len: 0,
        });
    };
    let version = |frame| {
        <[u8; 8]>::try_from(rest)
            .map(u64::from_le_bytes)
            .map_err(|_| ControlError::BadLength { frame, len })
    };
    Ok(Some(match ty {
        T_SLOT_MAP => ControlFrame::SlotMap(slotmap_codec::decode(rest)?),
        T_KEEPALIVE => ControlFrame::Keepalive {
            version: version("Keepalive")?,
        },
        T_ACK => ControlFrame::Ack {
            version: version("Ack")?,
        },
        other => return Err(ControlError::UnknownType(other)),
    }))
}

/// What a state machine asks its shell to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Send(ControlFrame),
    /// Downstream: this map is now the one to follow (persist it, create its lanes).
    Apply(SlotMap),
    /// End the stream with this reason.
    Close(CloseReason),
}

/// Why a state machine ends the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer broke the protocol.
    Protocol(String),
    /// Nothing heard for this long.
    Idle(Duration),
}

impl From<CloseReason> for ControlError {
    fn from(r: CloseReason) -> ControlError {
        match r {
            CloseReason::Protocol(m) => ControlError::Protocol(m),
            CloseReason::Idle(d) => ControlError::Idle(d),
        }
    }
}

fn protocol(msg: String) -> Vec<Action> {
    vec![Action::Close(CloseReason::Protocol(msg))]
}

/// The upstream side: sends each new map, keepalives when idle, checks the acks.
#[derive(Debug)]
pub struct ControlServer {
    keepalive: Duration,
    sent: Option<u64>,
    acked: Option<u64>,
    last_sent: Instant,
}

impl ControlServer {
    pub fn new(keepalive: Duration, now: Instant) -> ControlServer {
        ControlServer {
            keepalive,
            sent: None,
            acked: None,
            last_sent: now,
        }
    }

    /// The current map (at stream start and whenever it changes); `None`: not known yet.
    pub fn on_map(&mut self, map: Option<&SlotMap>, now: Instant) -> Vec<Action> {
        match map {
            Some(m) if self.sent != Some(m.version) => {
                if self.sent.is_some_and(|s| m.version < s) {
                    // Versions only grow on one stream; a regression is a bug upstream.
                    return protocol(format!(
                        "slot map version went back from {} to {}",
                        self.sent.unwrap_or(0),
                        m.version
                    ));
                }
                self.sent = Some(m.version);
                self.last_sent = now;
                vec![Action::Send(ControlFrame::SlotMap(m.clone()))]
            }
            _ => Vec::new(),
        }
    }

    pub fn on_frame(&mut self, frame: ControlFrame) -> Vec<Action> {
        match frame {
            ControlFrame::Ack { version } if self.sent.is_some_and(|s| version <= s) => {
                self.acked = Some(version);
                Vec::new()
            }
            ControlFrame::Ack { version } => protocol(format!(
                "downstream acknowledged slot map version {version}, which was never sent"
            )),
            other => protocol(format!("unexpected {} frame from downstream", other.name())),
        }
    }

    /// Sends a keepalive once the stream has been quiet for the keepalive interval.
    pub fn on_tick(&mut self, now: Instant) -> Vec<Action> {
        if now < self.deadline() {
            return Vec::new();
        }
        self.last_sent = now;
        vec![Action::Send(ControlFrame::Keepalive {
            version: self.sent.unwrap_or(0),
        })]
    }

    /// When [`ControlServer::on_tick`] has something to do next.
    pub fn deadline(&self) -> Instant {
        self.last_sent + self.keepalive
    }

    /// The last version the downstream acknowledged.
    pub fn acked(&self) -> Option<u64> {
        self.acked
    }
}

/// The downstream side: applies maps whose version did not go back, acks them, and gives up
/// on a stream silent for longer than `idle`.
#[derive(Debug)]
pub struct ControlClient {
    idle: Duration,
    current: Option<u64>,
    last_heard: Instant,
}

impl ControlClient {
    pub fn new(idle: Duration, now: Instant) -> ControlClient {
        ControlClient {
            idle,
            current: None,
            last_heard: now,
        }
    }

    pub fn on_frame(&mut self, frame: ControlFrame, now: Instant) -> Vec<Action> {
        self.last_heard = now;
        match frame {
            ControlFrame::SlotMap(map) => {
                if let Some(cur) = self.current.filter(|&c| map.version < c) {
                    return protocol(format!(
                        "slot map version went back from {cur} to {} on one stream",
                        map.version
                    ));
                }
                self.current = Some(map.version);
                let ack = ControlFrame::Ack {
                    version: map.version,
                };
                // The first map of a stream is applied whatever its version: a restarted
                // upstream knows the cluster as it is now.
                vec![Action::Apply(map), Action::Send(ack)]
            }
            ControlFrame::Keepalive { .. } => Vec::new(),
            other => protocol(format!("unexpected {} frame from upstream", other.name())),
        }
    }

    pub fn on_tick(&mut self, now: Instant) -> Vec<Action> {
        if now >= self.deadline() {
            vec![Action::Close(CloseReason::Idle(now - self.last_heard))]
        } else {
            Vec::new()
        }
    }

    pub fn deadline(&self) -> Instant {
        self.last_heard + self.idle
    }

    /// The version of the map last applied on this stream.
    pub fn current(&self) -> Option<u64> {
        self.current
    }
}

/// Reads control frames from a byte stream.
struct Reader<R> {
    inner: R,
    buf: BytesMut,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    /// The next frame; cancel-safe (a partly read frame stays buffered).
    async fn next(&mut self) -> Result<ControlFrame, ControlError> {
        loop {
            if let Some(f) = decode(&mut self.buf)? {
                return Ok(f);
            }
            self.buf.reserve(16 << 10);
            if self.inner.read_buf(&mut self.buf).await? == 0 {
                return Err(ControlError::Closed);
            }
        }
    }
}

async fn send<W: AsyncWrite + Unpin>(w: &mut W, frame: &ControlFrame) -> Result<(), ControlError> {
    let mut out = BytesMut::new();
    encode(frame, &mut out);
    w.write_all(&out).await?;
    w.flush().await?;
    Ok(())
}

/// Upstream shell: serves the control stream after its Hello, sending `maps` as it changes,
/// until the peer finishes the stream or shutdown (`Ok`), or an error.
pub async fn serve<R, W>(
    recv: R,
    mut send_half: W,
    mut maps: watch::Receiver<Option<SlotMap>>,
    keepalive: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ControlError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut reader = Reader {
        inner: recv,
        buf: BytesMut::new(),
    };
    let mut sm = ControlServer::new(keepalive, Instant::now());
    let first = maps.borrow_and_update().clone();
    let mut actions = sm.on_map(first.as_ref(), Instant::now());
    loop {
        for a in actions.drain(..) {
            match a {
                Action::Send(f) => send(&mut send_half, &f).await?,
                Action::Close(reason) => return Err(reason.into()),
                Action::Apply(_) => {}
            }
        }
        let deadline = tokio::time::Instant::from_std(sm.deadline());
        actions = tokio::select! {
            r = maps.changed() => {
                if r.is_err() {
                    return Ok(());
                }
                let m = maps.borrow_and_update().clone();
                sm.on_map(m.as_ref(), Instant::now())
            }
            f = reader.next() => match f {
                Ok(f) => sm.on_frame(f),
                // The downstream went away: the stream's work is over.
                Err(ControlError::Closed) => return Ok(()),
                Err(e) => return Err(e),
            },
            _ = tokio::time::sleep_until(deadline) => sm.on_tick(Instant::now()),
            _ = shutdown.changed() => return Ok(()),
        };
    }
}

/// Downstream shell: follows the control stream after its Hello, publishing each applied map
/// on `maps`, until the stream fails (an error: the caller reconnects) or shutdown (`Ok`).
pub async fn follow<R, W>(
    recv: R,
    mut send_half: W,
    maps: &watch::Sender<Option<SlotMap>>,
    idle: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ControlError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut reader = Reader {
        inner: recv,
        buf: BytesMut::new(),
    };
    let mut sm = ControlClient::new(idle, Instant::now());
    loop {
        let deadline = tokio::time::Instant::from_std(sm.deadline());
        let actions = tokio::select! {
            f = reader.next() => sm.on_frame(f?, Instant::now()),
            _ = tokio::time::sleep_until(deadline) => sm.on_tick(Instant::now()),
            _ = shutdown.changed() => return Ok(()),
        };
        for a in actions {
            match a {
                Action::Send(f) => send(&mut send_half, &f).await?,
                Action::Apply(m) => {
                    maps.send_if_modified(|cur| {
                        let changed = cur.as_ref() != Some(&m);
                        *cur = Some(m.clone());
                        changed
                    });
                }
                Action::Close(reason) => return Err(reason.into()),
            }
        }
    }
}

#[cfg(test)]
#[path = "control_tests.rs"]
mod tests;
