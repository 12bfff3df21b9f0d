//! The agent-to-agent frame codec: length-prefixed, versioned frames on a byte buffer (no I/O).
//!
//! Envelope: `u32 LE body length`, then the body: `u8 frame type` and the fields. Integers are
//! little-endian; strings and byte strings are a `u32 LE` length and the bytes. For
//! [`Frame::SnapshotChunk`] and [`Frame::Log`] the payload is the last field, so a sender can
//! write the head with [`encode_head`] and hand the payload `Bytes` to the transport uncopied,
//! and [`decode`] returns payloads as slices of the received buffer (no copy).

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::proto::is_lane_name;
pub use super::proto::{ALPN, MAX_FRAME, PROTOCOL_VERSION};
use super::FrameError;
/// Length of the envelope header (the `u32` body length).
pub const HEADER_LEN: usize = 4;

const T_HELLO: u8 = 1;
const T_CONTINUE: u8 = 2;
const T_FULL: u8 = 3;
const T_SNAPSHOT_CHUNK: u8 = 4;
const T_SNAPSHOT_END: u8 = 5;
const T_LOG: u8 = 6;
const T_HEARTBEAT: u8 = 7;
const T_ACK: u8 = 8;
const T_REPLID_SWITCH: u8 = 9;
const T_NEW_EPOCH: u8 = 10;
const T_ERROR: u8 = 11;
const T_SNAPSHOT_FROM: u8 = 12;
const T_COMMIT: u8 = 13;

/// Tags of Hello's optional tail fields (each at most once, in this order).
const HELLO_PARTIAL: u8 = 1;
const HELLO_LANE: u8 = 2;
/// Tag of Ack's optional tail field: the received offset (protocol 2, ALPN `georelay/2`).
const ACK_RECEIVED: u8 = 1;

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

/// Decodes one frame from the front of `buf`.
///
/// `Ok(None)`: not a whole frame yet, nothing consumed (read more). `Ok(Some(frame))`: exactly
/// that frame's bytes were consumed. A body longer than `max_body` is refused from its header
/// alone, before it is buffered. On any other error the bad frame has been consumed; the link is
/// expected to close.
pub fn decode(buf: &mut BytesMut, max_body: usize) -> Result<Option<Frame>, FrameError> {
    let Some(header) = buf.get(..HEADER_LEN) else {
        return Ok(None);
    };
    let mut len_bytes = [0u8; HEADER_LEN];
    len_bytes.copy_from_slice(header);
    let len = u32::from_le_bytes(len_bytes) as usize;
    if len > max_body {
        return Err(FrameError::TooLarge { len, max: max_body });
    }
    if buf.len() < HEADER_LEN + len {
        buf.reserve(HEADER_LEN + len - buf.len());
        return Ok(None);
    }
    buf.advance(HEADER_LEN);
    let body = buf.split_to(len).freeze();
    parse_body(body).map(Some)
}

/// Parses one frame body (type byte and fields, without the length header).
pub fn parse_body(body: Bytes) -> Result<Frame, FrameError> {
    let mut r = Reader { body };
    let ty = r.u8("frame type")?;
    let frame = match ty {
        T_HELLO => {
            let version = r.u16("Hello.version")?;
            let name = r.string("Hello.name")?;
            let replid = r.string("Hello.replid")?;
            let replid = if replid.is_empty() {
                None
            } else {
                Some(check_replid("Hello.replid", replid)?)
            };
            let next_offset = r.u64("Hello.next_offset")?;
            let (mut partial, mut lane) = (None, None);
            let mut last_tag = 0;
            while !r.body.is_empty() {
                let tag = r.u8("Hello.tail")?;
                if tag <= last_tag || tag > HELLO_LANE {
                    return Err(FrameError::BadFlag {
                        field: "Hello.tail",
                        value: tag,
                    });
                }
                last_tag = tag;
                if tag == HELLO_PARTIAL {
                    let p = PartialSnapshot {
                        replid: r.replid("Hello.partial.replid")?,
                        offset: r.u64("Hello.partial.offset")?,
                        size: r.u64("Hello.partial.size")?,
                        have: r.u64("Hello.partial.have")?,
                    };
                    if p.have > p.size {
                        return Err(FrameError::PartialTooLong {
                            have: p.have,
                            size: p.size,
                        });
                    }
                    partial = Some(p);
                } else {
                    let name = r.string("Hello.lane")?;
                    if !is_lane_name(&name) {
                        return Err(FrameError::BadLane(name.chars().take(80).collect()));
                    }
                    lane = Some(name);
                }
            }
            Frame::Hello {
                version,
                name,
                replid,
                next_offset,
                partial,
                lane,
            }
        }
        T_SNAPSHOT_FROM => Frame::SnapshotFrom {
            from: r.u64("SnapshotFrom.from")?,
        },
        T_CONTINUE => Frame::Continue {
            replid: r.replid("Continue.replid")?,
            offset: r.u64("Continue.offset")?,
        },
        T_FULL => Frame::Full {
            replid: r.replid("Full.replid")?,
            offset: r.u64("Full.offset")?,
            rdb_version: r.u32("Full.rdb_version")?,
            size: r.u64("Full.size")?,
            reason: r.string("Full.reason")?,
        },
        T_SNAPSHOT_CHUNK => Frame::SnapshotChunk {
            data: r.bytes("SnapshotChunk.data")?,
        },
        T_SNAPSHOT_END => Frame::SnapshotEnd,
        T_LOG => {
            let offset = r.u64("Log.offset")?;
            let timestamp_us = r.u64("Log.timestamp_us")?;
            let compressed = match r.u8("Log.compressed")? {
                0 => false,
                1 => true,
                value => {
                    return Err(FrameError::BadFlag {
                        field: "Log.compressed",
                        value,
                    })
                }
            };
            let raw_len = r.u32("Log.raw_len")?;
            let data = r.bytes("Log.data")?;
            if !compressed && data.len() != raw_len as usize {
                return Err(FrameError::LengthMismatch {
                    raw_len,
                    data_len: data.len(),
                });
            }
            Frame::Log {
                offset,
                timestamp_us,
                compressed,
                raw_len,
                data,
            }
        }
        T_HEARTBEAT => Frame::Heartbeat {
            head: r.u64("Heartbeat.head")?,
            head_timestamp_us: r.u64("Heartbeat.head_timestamp_us")?,
            now_us: r.u64("Heartbeat.now_us")?,
        },
        T_ACK => {
            let durable = r.u64("Ack.durable")?;
            let mut received = None;
            if !r.body.is_empty() {
                match r.u8("Ack.tail")? {
                    ACK_RECEIVED => {
                        let got = r.u64("Ack.received")?;
                        if got < durable {
                            return Err(FrameError::AckOrder {
                                received: got,
                                durable,
                            });
                        }
                        received = Some(got);
                    }
                    value => {
                        return Err(FrameError::BadFlag {
                            field: "Ack.tail",
                            value,
                        })
                    }
                }
            }
            Frame::Ack { durable, received }
        }
        T_REPLID_SWITCH => Frame::ReplidSwitch {
            replid: r.replid("ReplidSwitch.replid")?,
            start: r.u64("ReplidSwitch.start")?,
        },
        T_NEW_EPOCH => Frame::NewEpoch {
            reason: r.string("NewEpoch.reason")?,
        },
        T_ERROR => Frame::Error {
            code: r.u32("Error.code")?,
            message: r.string("Error.message")?,
        },
        T_COMMIT => Frame::Commit {
            upto: r.u64("Commit.upto")?,
        },
        other => return Err(FrameError::UnknownType(other)),
    };
    if !r.body.is_empty() {
        return Err(FrameError::TrailingBytes {
            frame: frame.name(),
            extra: r.body.len(),
        });
    }
    Ok(frame)
}

fn len32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn put_str(out: &mut BytesMut, s: &str) {
    out.put_u32_le(len32(s.len()));
    out.put_slice(s.as_bytes());
}

fn check_replid(field: &'static str, s: String) -> Result<String, FrameError> {
    if is_replid(&s) {
        Ok(s)
    } else {
        Err(FrameError::BadReplid {
            field,
            got: s.chars().take(48).collect(),
        })
    }
}

/// Bounds-checked little-endian reads over a frame body.
struct Reader {
    body: Bytes,
}

impl Reader {
    fn take(&mut self, n: usize, field: &'static str) -> Result<Bytes, FrameError> {
        if self.body.len() < n {
            return Err(FrameError::Truncated {
                field,
                need: n,
                have: self.body.len(),
            });
        }
        Ok(self.body.split_to(n))
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], FrameError> {
        let b = self.take(N, field)?;
        let mut a = [0u8; N];
        a.copy_from_slice(&b);
        Ok(a)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, FrameError> {
        Ok(self.array::<1>(field)?[0])
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, FrameError> {
        Ok(u16::from_le_bytes(self.array(field)?))
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, FrameError> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, FrameError> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }

    fn bytes(&mut self, field: &'static str) -> Result<Bytes, FrameError> {
        let n = self.u32(field)? as usize;
        self.take(n, field)
    }

    fn string(&mut self, field: &'static str) -> Result<String, FrameError> {
        let b = self.bytes(field)?;
        String::from_utf8(b.to_vec()).map_err(|_| FrameError::BadUtf8 { field })
    }

    fn replid(&mut self, field: &'static str) -> Result<String, FrameError> {
        let s = self.string(field)?;
        check_replid(field, s)
    }
}

#[cfg(test)]
#[path = "frame_tests.rs"]
mod tests;
