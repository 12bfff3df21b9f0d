//! Record framing for log segments: a pure codec (no I/O).
//!
//! Layout, all little-endian:
//! `len: u32 | crc32c: u32 | first_offset: u64 | timestamp_us: u64 | payload[len]`.
//! The CRC covers the header bytes after the CRC field (offset and timestamp) and the payload,
//! so a flipped offset or timestamp is detected as well as a flipped payload byte.

/// Bytes in a record header.
pub const HEADER_LEN: usize = 24;
/// Largest payload a reader or recovery accepts; anything larger is an implausible length.
pub const MAX_PAYLOAD: u32 = 64 * 1024 * 1024;
/// Appends larger than this are split into several records (keeps reader buffers bounded).
pub const MAX_APPEND: usize = 8 * 1024 * 1024;

/// A decoded record header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    pub len: u32,
    pub crc: u32,
    pub first_offset: u64,
    pub timestamp_us: u64,
}

impl RecordHeader {
    /// Total bytes on disk (header + payload).
    pub fn total_len(&self) -> u64 {
        HEADER_LEN as u64 + u64::from(self.len)
    }

    /// Offset just past the last payload byte (the next record's first offset). Saturates at
    /// `u64::MAX`: a corrupt header read from disk must not overflow.
    pub fn end_offset(&self) -> u64 {
        self.first_offset.saturating_add(u64::from(self.len))
    }
}

/// What decoding a buffer that should start with a record yields.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A whole, CRC-valid record; `total` bytes of the buffer were used.
    Complete {
        header: RecordHeader,
        payload: &'a [u8],
        total: usize,
    },
    /// The buffer ends before the record does; `needed` bytes in total would be required.
    Torn { needed: usize },
    /// The record is whole but its checksum does not match.
    CrcMismatch { header: RecordHeader },
    /// The length field is zero or larger than [`MAX_PAYLOAD`].
    BadLength { len: u32 },
}

/// CRC32C over (first_offset, timestamp) and the payload.
pub fn checksum(first_offset: u64, timestamp_us: u64, payload: &[u8]) -> u32 {
    let mut meta = [0u8; 16];
    meta[..8].copy_from_slice(&first_offset.to_le_bytes());
    meta[8..].copy_from_slice(&timestamp_us.to_le_bytes());
    crc32c::crc32c_append(crc32c::crc32c(&meta), payload)
}

/// Encode the header for `payload`. Panics never; the caller keeps payloads ≤ [`MAX_APPEND`].
pub fn encode_header(payload: &[u8], first_offset: u64, timestamp_us: u64) -> [u8; HEADER_LEN] {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let mut h = [0u8; HEADER_LEN];
    h[0..4].copy_from_slice(&len.to_le_bytes());
    h[4..8].copy_from_slice(&checksum(first_offset, timestamp_us, payload).to_le_bytes());
    h[8..16].copy_from_slice(&first_offset.to_le_bytes());
    h[16..24].copy_from_slice(&timestamp_us.to_le_bytes());
    h
}

fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

/// Parse a header from the first [`HEADER_LEN`] bytes; `None` if the buffer is shorter.
/// Does not judge plausibility; see [`plausible`].
pub fn decode_header(buf: &[u8]) -> Option<RecordHeader> {
    if buf.len() < HEADER_LEN {
        return None;
    }
    Some(RecordHeader {
        len: le_u32(&buf[0..4]),
        crc: le_u32(&buf[4..8]),
        first_offset: le_u64(&buf[8..16]),
        timestamp_us: le_u64(&buf[16..24]),
    })
}

/// A length the writer could have produced.
pub fn plausible(len: u32) -> bool {
    len > 0 && len <= MAX_PAYLOAD
}

/// Decode one record at the start of `buf`.
pub fn decode(buf: &[u8]) -> Decoded<'_> {
    let Some(header) = decode_header(buf) else {
        return Decoded::Torn { needed: HEADER_LEN };
    };
    if !plausible(header.len) {
        return Decoded::BadLength { len: header.len };
    }
    let total = HEADER_LEN + header.len as usize;
    if buf.len() < total {
        return Decoded::Torn { needed: total };
    }
    let payload = &buf[HEADER_LEN..total];
    if checksum(header.first_offset, header.timestamp_us, payload) != header.crc {
        return Decoded::CrcMismatch { header };
    }
    Decoded::Complete {
        header,
        payload,
        total,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(payload: &[u8], off: u64, ts: u64) -> Vec<u8> {
        let mut v = encode_header(payload, off, ts).to_vec();
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn round_trip() {
        let buf = encode(b"*1\r\n$4\r\nping\r\n", 1001, 42);
        match decode(&buf) {
            Decoded::Complete {
                header,
                payload,
                total,
            } => {
                assert_eq!(header.first_offset, 1001);
                assert_eq!(header.timestamp_us, 42);
                assert_eq!(header.end_offset(), 1015);
                assert_eq!(payload, b"*1\r\n$4\r\nping\r\n");
                assert_eq!(total, buf.len());
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn two_records_back_to_back() {
        let mut buf = encode(b"abc", 1, 7);
        buf.extend(encode(b"de", 4, 8));
        let Decoded::Complete { total, .. } = decode(&buf) else {
            panic!("first record")
        };
        let Decoded::Complete {
            header, payload, ..
        } = decode(&buf[total..])
        else {
            panic!("second record")
        };
        assert_eq!((header.first_offset, payload), (4, &b"de"[..]));
    }

    #[test]
    fn torn_header_and_payload() {
        let buf = encode(b"hello world", 5, 1);
        assert_eq!(decode(&buf[..10]), Decoded::Torn { needed: HEADER_LEN });
        assert_eq!(
            decode(&buf[..buf.len() - 1]),
            Decoded::Torn { needed: buf.len() }
        );
        assert_eq!(decode(&[]), Decoded::Torn { needed: HEADER_LEN });
    }

    #[test]
    fn crc_flip_anywhere_is_detected() {
        let buf = encode(b"hello world", 5, 1);
        for i in 4..buf.len() {
            let mut b = buf.clone();
            b[i] ^= 0x20;
            assert!(
                matches!(decode(&b), Decoded::CrcMismatch { .. }),
                "flip at byte {i} not detected"
            );
        }
    }

    #[test]
    fn end_offset_of_a_corrupt_header_does_not_overflow() {
        // Found by fuzzing (log_record): a plausible length after a first offset near u64::MAX
        // overflowed (a panic in debug builds, a wrapped offset in release builds).
        let mut buf = encode(b"0123", u64::MAX - 1, 7);
        let h = decode_header(&buf).expect("24 bytes");
        assert!(plausible(h.len));
        assert_eq!(h.end_offset(), u64::MAX);
        assert!(matches!(
            decode(&buf),
            Decoded::Complete { header, .. } if header.end_offset() == u64::MAX
        ));
        buf[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(
            decode(&buf),
            Decoded::CrcMismatch { header } if header.end_offset() == u64::MAX
        ));
    }

    #[test]
    fn implausible_length() {
        let mut buf = encode(b"x", 5, 1);
        buf[0..4].copy_from_slice(&0u32.to_le_bytes());
        assert_eq!(decode(&buf), Decoded::BadLength { len: 0 });
        buf[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode(&buf), Decoded::BadLength { len: u32::MAX });
    }
}
