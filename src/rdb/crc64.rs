//! CRC-64/Jones as used by RDB files (reflected, init 0, no final xor), and the trailer check.

use super::RdbError;

/// The Jones polynomial 0xad93d23594c935a9, bit-reversed for the reflected algorithm.
const POLY_REFLECTED: u64 = 0xad93_d235_94c9_35a9_u64.reverse_bits();

/// Slicing-by-8 tables: `TABLES[0]` is the classic byte table, `TABLES[k]` advances a byte that
/// sits `k` positions further back in an 8-byte word.
static TABLES: [[u64; 256]; 8] = build_tables();

const fn build_tables() -> [[u64; 256]; 8] {
    let mut t = [[0u64; 256]; 8];
    let mut n = 0;
    while n < 256 {
        let mut crc = n as u64;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ POLY_REFLECTED
            } else {
                crc >> 1
            };
            bit += 1;
        }
        t[0][n] = crc;
        n += 1;
    }
    let mut k = 1;
    while k < 8 {
        let mut n = 0;
        while n < 256 {
            let prev = t[k - 1][n];
            t[k][n] = (prev >> 8) ^ t[0][(prev & 0xff) as usize];
            n += 1;
        }
        k += 1;
    }
    t
}

/// Incremental CRC-64 of an RDB: `crc64(b"123456789") == 0xe9c6d914c4b8d9ca`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Crc64(u64);

impl Crc64 {
    pub fn new() -> Self {
        Crc64(0)
    }

    pub fn update(&mut self, data: &[u8]) {
        let t = &TABLES;
        let mut crc = self.0;
        let (words, rest) = data.as_chunks::<8>();
        for word in words {
            let v = crc ^ u64::from_le_bytes(*word);
            let byte = |shift: u32| ((v >> shift) & 0xff) as usize;
            crc = t[7][byte(0)]
                ^ t[6][byte(8)]
                ^ t[5][byte(16)]
                ^ t[4][byte(24)]
                ^ t[3][byte(32)]
                ^ t[2][byte(40)]
                ^ t[1][byte(48)]
                ^ t[0][byte(56)];
        }
        for &b in rest {
            crc = t[0][((crc ^ u64::from(b)) & 0xff) as usize] ^ (crc >> 8);
        }
        self.0 = crc;
    }

    pub fn finish(&self) -> u64 {
        self.0
    }
}

/// Result of a successful trailer check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrailerCheck {
    /// The stored checksum matches.
    Valid,
    /// The stored checksum is 0: the master had `rdbchecksum no`, nothing to verify.
    Disabled,
}

/// Checks the end of an RDB. `last_9` is the EOF opcode `0xFF` followed by the stored CRC-64
/// (8 bytes, little-endian); `crc_of_all_but_last_8` is the CRC of every byte from the magic
/// through that `0xFF` (the CRC covers the opcode but not itself).
pub fn check_trailer(crc_of_all_but_last_8: u64, last_9: &[u8]) -> Result<TrailerCheck, RdbError> {
    let (&opcode, stored) =
        last_9
            .split_first()
            .filter(|_| last_9.len() == 9)
            .ok_or(RdbError::Truncated {
                needed: 9,
                got: last_9.len(),
            })?;
    if opcode != 0xff {
        return Err(RdbError::MissingEofOpcode(opcode));
    }
    let stored = <[u8; 8]>::try_from(stored).map_or(0, u64::from_le_bytes);
    if stored == 0 {
        Ok(TrailerCheck::Disabled)
    } else if stored == crc_of_all_but_last_8 {
        Ok(TrailerCheck::Valid)
    } else {
        Err(RdbError::ChecksumMismatch {
            stored,
            computed: crc_of_all_but_last_8,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bit-at-a-time reference implementation.
    fn slow(data: &[u8]) -> u64 {
        let mut crc = 0u64;
        for &b in data {
            crc ^= u64::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ POLY_REFLECTED
                } else {
                    crc >> 1
                };
            }
        }
        crc
    }

    fn crc(data: &[u8]) -> u64 {
        let mut c = Crc64::new();
        c.update(data);
        c.finish()
    }

    #[test]
    fn known_vector() {
        assert_eq!(crc(b"123456789"), 0xe9c6_d914_c4b8_d9ca);
        assert_eq!(crc(b""), 0);
        assert_eq!(Crc64::default().finish(), 0);
    }

    #[test]
    fn matches_bitwise_reference_and_is_incremental() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        assert_eq!(crc(&data), slow(&data));
        for split in 0..data.len() {
            let mut c = Crc64::new();
            c.update(&data[..split]);
            c.update(&data[split..]);
            assert_eq!(c.finish(), slow(&data), "split {split}");
        }
        for len in 0..40 {
            assert_eq!(crc(&data[3..3 + len]), slow(&data[3..3 + len]), "len {len}");
        }
    }

    #[test]
    fn trailer() {
        let mut t = vec![0xff];
        t.extend_from_slice(&0x1234u64.to_le_bytes());
        assert_eq!(check_trailer(0x1234, &t), Ok(TrailerCheck::Valid));
        assert_eq!(
            check_trailer(0x1235, &t),
            Err(RdbError::ChecksumMismatch {
                stored: 0x1234,
                computed: 0x1235
            })
        );
        let disabled = [0xff, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(check_trailer(99, &disabled), Ok(TrailerCheck::Disabled));
        t[0] = 0xfe;
        assert_eq!(
            check_trailer(0x1234, &t),
            Err(RdbError::MissingEofOpcode(0xfe))
        );
        assert!(matches!(
            check_trailer(0, &t[..8]),
            Err(RdbError::Truncated { .. })
        ));
        assert!(matches!(
            check_trailer(0, &[]),
            Err(RdbError::Truncated { .. })
        ));
        assert!(check_trailer(0, &[0xff; 10]).is_err());
    }
}
