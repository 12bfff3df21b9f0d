//! Decoding of agent-to-agent frames ([`super::frame`] owns the types and the encoder):
//! bounds-checked reads of one frame body, every field checked, no I/O.

use bytes::{Buf, Bytes, BytesMut};

use super::frame::*;
use super::proto::is_lane_name;
use super::FrameError;

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
