//! RDB transfer framing: the `$<len>` / `$EOF:<mark>` header line and end-of-RDB mark detection.

use super::RdbError;

/// Length of the diskless-transfer end mark (40 random hex characters).
pub const EOF_MARK_LEN: usize = 40;

/// How the master delimits the RDB payload that follows the header line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransferHeader {
    /// Disk mode: exactly this many bytes follow, with no trailing CRLF.
    Len(u64),
    /// Diskless mode: the payload ends with this 40-byte mark.
    Eof([u8; EOF_MARK_LEN]),
}

/// Parses the line that announces the RDB payload, without its line terminator (a single
/// trailing `\r` is tolerated): `$12345` or `$EOF:<40 bytes>`. A `-…` line is the master's
/// error and gives [`RdbError::MasterError`] with the text after the `-`.
pub fn parse_transfer_header(line: &[u8]) -> Result<TransferHeader, RdbError> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let bad = |reason| RdbError::InvalidTransferHeader {
        line: String::from_utf8_lossy(line).into_owned(),
        reason,
    };
    match line.split_first() {
        Some((b'-', text)) => Err(RdbError::MasterError(
            String::from_utf8_lossy(text).into_owned(),
        )),
        Some((b'$', rest)) => {
            if let Some(mark) = rest.strip_prefix(b"EOF:") {
                return <[u8; EOF_MARK_LEN]>::try_from(mark)
                    .map(TransferHeader::Eof)
                    .map_err(|_| bad("EOF mark must be exactly 40 bytes"));
            }
            match rest.first() {
                None => return Err(bad("missing length")),
                Some(b'-') => return Err(bad("negative length")),
                _ => {}
            }
            let mut len: u64 = 0;
            for &d in rest {
                if !d.is_ascii_digit() {
                    return Err(bad("length is not a decimal number"));
                }
                len = len
                    .checked_mul(10)
                    .and_then(|l| l.checked_add(u64::from(d - b'0')))
                    .ok_or_else(|| bad("length overflows u64"))?;
            }
            Ok(TransferHeader::Len(len))
        }
        Some(_) => Err(bad("expected '$' or '-'")),
        None => Err(bad("empty line")),
    }
}

/// Detects the end of a diskless RDB transfer: whether the bytes fed so far end with the mark.
///
/// Keeps only the last 40 bytes seen, so the mark may be split across any number of chunks.
#[derive(Clone, Debug)]
pub struct EofMark {
    mark: [u8; EOF_MARK_LEN],
    tail: [u8; EOF_MARK_LEN],
    seen: u64,
}

impl EofMark {
    pub fn new(mark: [u8; EOF_MARK_LEN]) -> Self {
        EofMark {
            mark,
            tail: [0; EOF_MARK_LEN],
            seen: 0,
        }
    }

    /// The mark being searched for.
    pub fn mark(&self) -> &[u8; EOF_MARK_LEN] {
        &self.mark
    }

    /// Feeds the next chunk; returns true if all bytes fed so far end with the mark.
    pub fn feed(&mut self, chunk: &[u8]) -> bool {
        let n = chunk.len();
        if n >= EOF_MARK_LEN {
            let last = chunk.get(n - EOF_MARK_LEN..).unwrap_or(&[]);
            self.tail.copy_from_slice(last);
        } else if n > 0 {
            self.tail.copy_within(n.., 0);
            if let Some(dst) = self.tail.get_mut(EOF_MARK_LEN - n..) {
                dst.copy_from_slice(chunk);
            }
        }
        self.seen = self.seen.saturating_add(n as u64);
        self.seen >= EOF_MARK_LEN as u64 && self.tail == self.mark
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MARK: &[u8; 40] = b"0123456789abcdef0123456789abcdef01234567";

    fn bad(line: &[u8]) -> &'static str {
        match parse_transfer_header(line) {
            Err(RdbError::InvalidTransferHeader { reason, .. }) => reason,
            other => panic!("{line:?}: {other:?}"),
        }
    }

    #[test]
    fn transfer_headers() {
        assert_eq!(parse_transfer_header(b"$0"), Ok(TransferHeader::Len(0)));
        assert_eq!(
            parse_transfer_header(b"$12345\r"),
            Ok(TransferHeader::Len(12345))
        );
        assert_eq!(
            parse_transfer_header(b"$18446744073709551615"),
            Ok(TransferHeader::Len(u64::MAX))
        );
        assert_eq!(
            parse_transfer_header(b"$5368709120"),
            Ok(TransferHeader::Len(5 << 30))
        );
        let mut eof = b"$EOF:".to_vec();
        eof.extend_from_slice(MARK);
        assert_eq!(parse_transfer_header(&eof), Ok(TransferHeader::Eof(*MARK)));
        assert_eq!(
            parse_transfer_header(b"-ERR no sync for you"),
            Err(RdbError::MasterError("ERR no sync for you".into()))
        );
    }

    #[test]
    fn transfer_header_errors() {
        assert_eq!(bad(b"$-1"), "negative length");
        assert_eq!(bad(b"$18446744073709551616"), "length overflows u64");
        assert_eq!(bad(b"$12x"), "length is not a decimal number");
        assert_eq!(bad(b"$ 12"), "length is not a decimal number");
        assert_eq!(bad(b"$+12"), "length is not a decimal number");
        assert_eq!(bad(b"$"), "missing length");
        assert_eq!(bad(b""), "empty line");
        assert_eq!(bad(b"\r"), "empty line");
        assert_eq!(bad(b"+FULLRESYNC x 0"), "expected '$' or '-'");
        assert_eq!(bad(b"$EOF:abc"), "EOF mark must be exactly 40 bytes");
        let mut long = b"$EOF:".to_vec();
        long.extend_from_slice(MARK);
        long.push(b'x');
        assert_eq!(bad(&long), "EOF mark must be exactly 40 bytes");
    }

    #[test]
    fn eof_mark_split_at_every_position() {
        let mut stream = b"REDIS0011 some rdb payload bytes".to_vec();
        stream.extend_from_slice(MARK);
        for p in 0..=stream.len() {
            for q in p..=stream.len() {
                let mut m = EofMark::new(*MARK);
                let r1 = m.feed(&stream[..p]);
                let r2 = m.feed(&stream[p..q]);
                let r3 = m.feed(&stream[q..]);
                assert!(!r1 || p == stream.len(), "{p} {q}");
                assert_eq!(r2, q == stream.len(), "{p} {q}");
                assert!(r3, "{p} {q}");
            }
        }
        let mut m = EofMark::new(*MARK);
        let hits: Vec<bool> = stream.iter().map(|b| m.feed(&[*b])).collect();
        assert_eq!(hits.iter().filter(|h| **h).count(), 1);
        assert_eq!(hits.last(), Some(&true));
        // A byte after the mark means we are no longer at its end.
        assert!(!m.feed(b"x"));
    }

    #[test]
    fn eof_mark_needs_40_bytes_seen() {
        let zero = [0u8; 40];
        let mut m = EofMark::new(zero);
        assert!(!m.feed(b""));
        assert!(!m.feed(&[0; 39]));
        assert!(m.feed(&[0]));
        assert!(m.feed(b""));
        assert_eq!(m.mark(), &zero);
    }
}
