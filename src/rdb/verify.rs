//! Streaming verification of an RDB as its bytes pass by: the 9-byte header (version) and the
//! CRC-64 trailer, holding back the bytes that may turn out to be the trailer or a `$EOF` mark.

use super::{check_trailer, parse_header, Crc64, RdbError, TrailerCheck};

/// Bytes held back: 9 trailer bytes (0xFF + CRC) plus a 40-byte EOF mark.
const HOLD: usize = 49;

/// Feeds on RDB bytes in any chunking; `verdict()` gives the RDB version and CRC status.
#[derive(Debug, Default)]
pub struct RdbVerifier {
    head: Vec<u8>,
    crc: Crc64,
    hold: Vec<u8>,
    /// Bytes fed so far, less those dropped.
    fed: u64,
}

impl RdbVerifier {
    pub fn new() -> Self {
        RdbVerifier::default()
    }

    pub fn feed(&mut self, data: &[u8]) {
        self.fed = self.fed.saturating_add(data.len() as u64);
        if self.head.len() < 9 {
            let n = (9 - self.head.len()).min(data.len());
            self.head.extend_from_slice(&data[..n]);
        }
        if data.len() >= HOLD {
            self.crc.update(&self.hold);
            self.crc.update(&data[..data.len() - HOLD]);
            self.hold.clear();
            self.hold.extend_from_slice(&data[data.len() - HOLD..]);
        } else {
            self.hold.extend_from_slice(data);
            if self.hold.len() > HOLD {
                let excess = self.hold.len() - HOLD;
                self.crc.update(&self.hold[..excess]);
                self.hold.drain(..excess);
            }
        }
    }

    /// Forgets the last `n` bytes fed (a `$EOF` mark that is not part of the RDB; at most the
    /// 49 bytes held back).
    pub fn drop_last(&mut self, n: usize) {
        let keep = self.hold.len().saturating_sub(n);
        self.hold.truncate(keep);
        // With an RDB shorter than its 9-byte header, the dropped bytes reached the header too.
        self.fed = self.fed.saturating_sub(n as u64);
        if self.fed < self.head.len() as u64 {
            self.head.truncate(self.fed as usize);
        }
    }

    /// (RDB version, CRC status): `Some(true)` valid, `None` checksum disabled (stored 0),
    /// `Some(false)` mismatch or no trailer. A bad magic is an error: never store what is not
    /// an RDB.
    pub fn verdict(mut self) -> Result<(u32, Option<bool>), RdbError> {
        let header = parse_header(&self.head)?;
        if self.hold.len() < 9 {
            return Ok((header.version, Some(false)));
        }
        let split = self.hold.len() - 9;
        self.crc.update(&self.hold[..split]);
        let last9 = &self.hold[split..];
        self.crc.update(&last9[..1]);
        let ok = match check_trailer(self.crc.finish(), last9) {
            Ok(TrailerCheck::Valid) => Some(true),
            Ok(TrailerCheck::Disabled) => None,
            Err(_) => Some(false),
        };
        Ok((header.version, ok))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rdb_with_crc() -> Vec<u8> {
        let mut body = b"REDIS0010\xfa\x09redis-ver\x067.0.15\xfe\x00\xff".to_vec();
        let mut c = Crc64::new();
        c.update(&body);
        body.extend_from_slice(&c.finish().to_le_bytes());
        body
    }

    #[test]
    fn valid_in_any_chunking() {
        let rdb = rdb_with_crc();
        for split in 0..rdb.len() {
            let mut v = RdbVerifier::new();
            v.feed(&rdb[..split]);
            v.feed(&rdb[split..]);
            assert_eq!(v.verdict().unwrap(), (10, Some(true)), "split at {split}");
        }
    }

    #[test]
    fn eof_mark_is_dropped_and_flips_are_caught() {
        let mut rdb = rdb_with_crc();
        let mut v = RdbVerifier::new();
        let mut with_mark = rdb.clone();
        with_mark.extend_from_slice(&[b'a'; 40]);
        v.feed(&with_mark);
        v.drop_last(40);
        assert_eq!(v.verdict().unwrap(), (10, Some(true)));
        rdb[12] ^= 1;
        let mut v = RdbVerifier::new();
        v.feed(&rdb);
        assert_eq!(v.verdict().unwrap(), (10, Some(false)));
        let mut v = RdbVerifier::new();
        v.feed(b"NOTANRDB!");
        assert!(v.verdict().is_err());
    }

    #[test]
    fn dropped_mark_never_counts_as_the_header() {
        // Found by fuzzing (rdb_transfer): a `$EOF:` transfer whose RDB is shorter than 9 bytes
        // was judged by a header made of RDB bytes and mark bytes, e.g. "REDIS" + "0011…" passed
        // as RDB version 11.
        let mark = *b"0011aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        for rdb in [&b"REDIS"[..], b"", b"REDIS001"] {
            let mut wire = rdb.to_vec();
            wire.extend_from_slice(&mark);
            for split in 0..=wire.len() {
                let mut v = RdbVerifier::new();
                v.feed(&wire[..split]);
                v.feed(&wire[split..]);
                v.drop_last(mark.len());
                assert_eq!(
                    v.verdict(),
                    Err(RdbError::Truncated {
                        needed: 9,
                        got: rdb.len()
                    }),
                    "{rdb:?} split at {split}"
                );
            }
        }
        // A 9-byte RDB keeps its header.
        let mut v = RdbVerifier::new();
        v.feed(b"REDIS0011");
        v.feed(&mark);
        v.drop_last(mark.len());
        assert_eq!(v.verdict(), Ok((11, Some(false))));
    }
}
