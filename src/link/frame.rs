//! The agent-to-agent frame codec: length-prefixed, versioned frames on a byte buffer (no I/O).
//!
//! Envelope: `u32 LE body length`, then the body: `u8 frame type` and the fields. Integers are
//! little-endian; strings and byte strings are a `u32 LE` length and the bytes. For
//! [`Frame::SnapshotChunk`] and [`Frame::Log`] the payload is the last field, so a sender can
//! write the head with [`encode_head`] and hand the payload `Bytes` to the transport uncopied,
//! and [`decode`] ([`super::frame_decode`]) returns payloads as slices of the received buffer
//! (no copy).

use bytes::{BufMut, Bytes, BytesMut};

pub use super::frame_decode::{decode, parse_body};
pub use super::proto::{ALPN, MAX_FRAME, PROTOCOL_VERSION};
/// Length of the envelope header (the `u32` body length).
pub const HEADER_LEN: usize = 4;

pub(super) const T_HELLO: u8 = 1;
pub(super) const T_CONTINUE: u8 = 2;
pub(super) const T_FULL: u8 = 3;
pub(super) const T_SNAPSHOT_CHUNK: u8 = 4;
pub(super) const T_SNAPSHOT_END: u8 = 5;
pub(super) const T_LOG: u8 = 6;
pub(super) const T_HEARTBEAT: u8 = 7;
pub(super) const T_ACK: u8 = 8;
pub(super) const T_REPLID_SWITCH: u8 = 9;
pub(super) const T_NEW_EPOCH: u8 = 10;
pub(super) const T_ERROR: u8 = 11;
pub(super) const T_SNAPSHOT_FROM: u8 = 12;
pub(super) const T_COMMIT: u8 = 13;

/// Tags of Hello's optional tail fields (each at most once, in this order).
pub(super) const HELLO_PARTIAL: u8 = 1;
pub(super) const HELLO_LANE: u8 = 2;
/// Tag of Ack's optional tail field: the received offset (protocol 2, ALPN `georelay/2`).
pub(super) const ACK_RECEIVED: u8 = 1;

/// A snapshot transfer a downstream agent holds in part, offered for resumption in
/// [`Frame::Hello`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartialSnapshot {
    pub replid: String,
    pub offset: u64,
    pub size: u64,
    /// Bytes of it already received (the transfer resumes at this byte).
    pub have: u64,
}

/// One frame between two agents. Offsets are Redis replication offsets of the origin's stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// Downstream → upstream, the first frame: who I am and what I hold. `replid` is `None`
    /// with an empty log; `next_offset` is the first stream byte wanted (head + 1); `partial`
    /// is a snapshot transfer cut short, which the upstream may resume; `lane` names the lane
    /// this stream carries (`None`: the standalone stream). `partial` and `lane` are optional
    /// tagged tail fields, so a Hello without them is byte-identical to the first version's.
    Hello {
        version: u16,
        name: String,
        replid: Option<String>,
        next_offset: u64,
        partial: Option<PartialSnapshot>,
        lane: Option<String>,
    },
    /// Upstream → downstream: the stream continues under `replid`; `offset` is the first byte
    /// that will follow.
    Continue { replid: String, offset: u64 },
    /// Upstream → downstream: a snapshot covering bytes ≤ `offset` follows as
    /// [`Frame::SnapshotChunk`]s of `size` bytes in total, then [`Frame::SnapshotEnd`], then
    /// log frames from `offset + 1`.
    Full {
        replid: String,
        offset: u64,
        rdb_version: u32,
        size: u64,
        reason: String,
    },
    /// Right after [`Frame::Full`] when the upstream resumes the downstream's
    /// [`PartialSnapshot`]: the chunks that follow start at byte `from` of the snapshot.
    SnapshotFrom { from: u64 },
    /// A piece of the RDB snapshot announced by [`Frame::Full`].
    SnapshotChunk { data: Bytes },
    /// The snapshot is complete.
    SnapshotEnd,
    /// Stream bytes `offset .. offset + raw_len`, stamped with the origin time of the record.
    /// When `compressed`, `data` is one zstd frame that inflates to exactly `raw_len` bytes;
    /// otherwise `data.len() == raw_len` (checked by [`decode`]).
    Log {
        offset: u64,
        timestamp_us: u64,
        compressed: bool,
        raw_len: u32,
        data: Bytes,
    },
    /// Upstream → downstream: the upstream's head offset and its origin time, and its clock.
    Heartbeat {
        head: u64,
        head_timestamp_us: u64,
        now_us: u64,
    },
    /// Downstream → upstream: everything before and at `durable` is on the downstream's disk,
    /// and everything before and at `received` is written to its log (not yet fsynced).
    /// `received` is an optional tagged tail field, sent only to an upstream that negotiated
    /// ALPN [`super::proto::ALPN_V2`]; without it (a first-version agent) the upstream takes
    /// `received = durable`. `received < durable` is malformed.
    Ack { durable: u64, received: Option<u64> },
    /// Upstream → downstream: the history gains `(replid, start)`.
    ReplidSwitch { replid: String, start: u64 },
    /// Upstream → downstream: a new epoch began; a [`Frame::Full`] follows.
    NewEpoch { reason: String },
    /// Either way: a fatal error; the sender closes the link after it.
    Error { code: u32, message: String },
    /// Upstream → downstream, protocol 3 only (ALPN [`super::proto::ALPN_V3`]): the
    /// upstream's master asked for an ACK (`REPLCONF GETACK`); fsync what is written up to
    /// `upto` now, without waiting for the periodic fsync, and Ack once it is durable. Sent
    /// after the log frames that carry `upto`.
    Commit { upto: u64 },
}

impl Frame {
    /// An [`Frame::Ack`] of the first protocol version (durable only).
    pub fn ack(durable: u64) -> Frame {
        Frame::Ack {
            durable,
            received: None,
        }
    }

    /// Frame name for logs and error messages.
    pub fn name(&self) -> &'static str {
        match self {
            Frame::Hello { .. } => "Hello",
            Frame::Continue { .. } => "Continue",
            Frame::Full { .. } => "Full",
            Frame::SnapshotFrom { .. } => "SnapshotFrom",
            Frame::SnapshotChunk { .. } => "SnapshotChunk",
            Frame::SnapshotEnd => "SnapshotEnd",
            Frame::Log { .. } => "Log",
            Frame::Heartbeat { .. } => "Heartbeat",
            Frame::Ack { .. } => "Ack",
            Frame::ReplidSwitch { .. } => "ReplidSwitch",
            Frame::NewEpoch { .. } => "NewEpoch",
            Frame::Error { .. } => "Error",
            Frame::Commit { .. } => "Commit",
        }
    }

    /// Builds an uncompressed [`Frame::Log`] (`raw_len` from `data`, saturating at `u32::MAX`).
    pub fn log(offset: u64, timestamp_us: u64, data: Bytes) -> Frame {
        let raw_len = u32::try_from(data.len()).unwrap_or(u32::MAX);
        Frame::Log {
            offset,
            timestamp_us,
            compressed: false,
            raw_len,
            data,
        }
    }
}

/// True for a Redis replication id: exactly 40 hexadecimal characters.
pub fn is_replid(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Appends the encoding of `frame` to `out`.
///
/// Lengths above `u32::MAX` cannot be represented; callers keep frames below the peer's
/// `max_body` (≤ [`MAX_FRAME`] by default) anyway, or the peer rejects them.
pub fn encode(frame: &Frame, out: &mut BytesMut) {
    if let Some(payload) = encode_head(frame, out) {
        out.extend_from_slice(&payload);
    }
}

/// Appends the encoding of `frame` to `out`, except a trailing payload (`SnapshotChunk` and
/// `Log` data), which is returned instead: the frame on the wire is `out`'s new bytes followed by
/// the returned bytes. Lets a sender pass payloads to the transport without copying them.
pub fn encode_head(frame: &Frame, out: &mut BytesMut) -> Option<Bytes> {
    let start = out.len();
    out.put_u32_le(0); // body length, patched below
    let mut payload = None;
    match frame {
        Frame::Hello {
            version,
            name,
            replid,
            next_offset,
            partial,
            lane,
        } => {
            out.put_u8(T_HELLO);
            out.put_u16_le(*version);
            put_str(out, name);
            put_str(out, replid.as_deref().unwrap_or(""));
            out.put_u64_le(*next_offset);
            if let Some(p) = partial {
                out.put_u8(HELLO_PARTIAL);
                put_str(out, &p.replid);
                out.put_u64_le(p.offset);
                out.put_u64_le(p.size);
                out.put_u64_le(p.have);
            }
            if let Some(lane) = lane {
                out.put_u8(HELLO_LANE);
                put_str(out, lane);
            }
        }
        Frame::SnapshotFrom { from } => {
            out.put_u8(T_SNAPSHOT_FROM);
            out.put_u64_le(*from);
        }
        Frame::Continue { replid, offset } => {
            out.put_u8(T_CONTINUE);
            put_str(out, replid);
            out.put_u64_le(*offset);
        }
        Frame::Full {
            replid,
            offset,
            rdb_version,
            size,
            reason,
        } => {
            out.put_u8(T_FULL);
            put_str(out, replid);
            out.put_u64_le(*offset);
            out.put_u32_le(*rdb_version);
            out.put_u64_le(*size);
            put_str(out, reason);
        }
        Frame::SnapshotChunk { data } => {
            out.put_u8(T_SNAPSHOT_CHUNK);
            out.put_u32_le(len32(data.len()));
            payload = Some(data.clone());
        }
        Frame::SnapshotEnd => out.put_u8(T_SNAPSHOT_END),
        Frame::Log {
            offset,
            timestamp_us,
            compressed,
            raw_len,
            data,
        } => {
            out.put_u8(T_LOG);
            out.put_u64_le(*offset);
            out.put_u64_le(*timestamp_us);
            out.put_u8(u8::from(*compressed));
            out.put_u32_le(*raw_len);
            out.put_u32_le(len32(data.len()));
            payload = Some(data.clone());
        }
        Frame::Heartbeat {
            head,
            head_timestamp_us,
            now_us,
        } => {
            out.put_u8(T_HEARTBEAT);
            out.put_u64_le(*head);
            out.put_u64_le(*head_timestamp_us);
            out.put_u64_le(*now_us);
        }
        Frame::Ack { durable, received } => {
            out.put_u8(T_ACK);
            out.put_u64_le(*durable);
            if let Some(r) = received {
                out.put_u8(ACK_RECEIVED);
                out.put_u64_le(*r);
            }
        }
        Frame::ReplidSwitch { replid, start: s } => {
            out.put_u8(T_REPLID_SWITCH);
            put_str(out, replid);
            out.put_u64_le(*s);
        }
        Frame::NewEpoch { reason } => {
            out.put_u8(T_NEW_EPOCH);
            put_str(out, reason);
        }
        Frame::Error { code, message } => {
            out.put_u8(T_ERROR);
            out.put_u32_le(*code);
            put_str(out, message);
        }
        Frame::Commit { upto } => {
            out.put_u8(T_COMMIT);
            out.put_u64_le(*upto);
        }
    }
    let tail = payload.as_ref().map_or(0, Bytes::len);
    let body = len32(out.len() - start - HEADER_LEN + tail);
    out[start..start + HEADER_LEN].copy_from_slice(&body.to_le_bytes());
    payload
}

fn len32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn put_str(out: &mut BytesMut, s: &str) {
    out.put_u32_le(len32(s.len()));
    out.put_slice(s.as_bytes());
}

#[cfg(test)]
#[path = "frame_tests.rs"]
mod tests;
