//! RDB AUX fields (opcode 0xFA) after the magic: RDB length and string encodings, including LZF.

use super::header::{parse_header, HEADER_LEN};
use super::RdbError;

const OPCODE_AUX: u8 = 0xfa;
/// Largest decompressed LZF aux string we accept (aux values are short metadata).
const MAX_LZF_LEN: usize = 1 << 20;

/// Parses the AUX fields that follow the 9-byte magic, up to the first non-AUX opcode or the end
/// of `prefix`. A field cut off by the end of `prefix` is left out: the fields complete so far
/// are returned. Integer-encoded values are returned as decimal strings, LZF-compressed strings
/// are decompressed, and non-UTF-8 bytes are replaced (lossy).
pub fn aux_fields(prefix: &[u8]) -> Result<Vec<(String, String)>, RdbError> {
    parse_header(prefix)?;
    let mut r = Reader {
        buf: prefix,
        pos: HEADER_LEN,
    };
    let mut fields = Vec::new();
    while r.peek() == Some(OPCODE_AUX) {
        r.pos += 1;
        let field = r.string().and_then(|k| Ok((k, r.string()?)));
        match field {
            Ok(kv) => fields.push(kv),
            Err(Short::Truncated) => break,
            Err(Short::Bad(e)) => return Err(e),
        }
    }
    Ok(fields)
}

/// Internal failure: running out of input is not an error for a prefix.
enum Short {
    Truncated,
    Bad(RdbError),
}

impl From<RdbError> for Short {
    fn from(e: RdbError) -> Self {
        Short::Bad(e)
    }
}

/// An RDB length: a plain length, or the special string encoding from an `11xxxxxx` byte.
enum Length {
    Plain(u64),
    Encoded(u8),
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    fn take(&mut self, n: usize) -> Result<&[u8], Short> {
        let end = self.pos.checked_add(n).ok_or(Short::Truncated)?;
        let bytes = self.buf.get(self.pos..end).ok_or(Short::Truncated)?;
        self.pos = end;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Short> {
        <[u8; N]>::try_from(self.take(N)?).map_err(|_| Short::Truncated)
    }

    fn length(&mut self) -> Result<Length, Short> {
        let [b] = self.array::<1>()?;
        Ok(match b >> 6 {
            0 => Length::Plain(u64::from(b & 0x3f)),
            1 => {
                let [next] = self.array::<1>()?;
                Length::Plain(u64::from(b & 0x3f) << 8 | u64::from(next))
            }
            3 => Length::Encoded(b & 0x3f),
            _ => match b {
                0x80 => Length::Plain(u64::from(u32::from_be_bytes(self.array()?))),
                0x81 => Length::Plain(u64::from_be_bytes(self.array()?)),
                _ => return Err(RdbError::InvalidLengthEncoding(b).into()),
            },
        })
    }

    fn plain_length(&mut self) -> Result<usize, Short> {
        match self.length()? {
            Length::Plain(n) => usize::try_from(n).map_err(|_| Short::Truncated),
            Length::Encoded(e) => Err(RdbError::UnsupportedEncoding(e).into()),
        }
    }

    fn string(&mut self) -> Result<String, Short> {
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        match self.length()? {
            Length::Plain(n) => {
                // A length beyond the prefix can only mean the field is cut off.
                let n = usize::try_from(n).map_err(|_| Short::Truncated)?;
                Ok(text(self.take(n)?))
            }
            Length::Encoded(0) => Ok(i8::from_le_bytes(self.array()?).to_string()),
            Length::Encoded(1) => Ok(i16::from_le_bytes(self.array()?).to_string()),
            Length::Encoded(2) => Ok(i32::from_le_bytes(self.array()?).to_string()),
            Length::Encoded(3) => {
                let clen = self.plain_length()?;
                let ulen = self.plain_length()?;
                let compressed = self.take(clen)?;
                if ulen > MAX_LZF_LEN {
                    return Err(RdbError::StringTooLarge {
                        len: ulen as u64,
                        max: MAX_LZF_LEN,
                    }
                    .into());
                }
                Ok(text(&lzf_decompress(compressed, ulen)?))
            }
            Length::Encoded(e) => Err(RdbError::UnsupportedEncoding(e).into()),
        }
    }
}

/// Decompresses LZF data (liblzf format, as written by Redis) that must expand to exactly `ulen`
/// bytes. Every read and back-reference is bounds-checked.
pub(crate) fn lzf_decompress(input: &[u8], ulen: usize) -> Result<Vec<u8>, RdbError> {
    let mut out = Vec::with_capacity(ulen);
    let mut ip = input.iter().copied();
    while let Some(ctrl) = ip.next() {
        if ctrl < 32 {
            // Literal run of ctrl + 1 bytes.
            for _ in 0..=ctrl {
                out.push(ip.next().ok_or(RdbError::CorruptLzf)?);
            }
        } else {
            // Back reference: length (ctrl >> 5) + 2, distance ((ctrl & 0x1f) << 8 | next) + 1.
            let mut len = usize::from(ctrl >> 5);
            if len == 7 {
                len += usize::from(ip.next().ok_or(RdbError::CorruptLzf)?);
            }
            let low = usize::from(ip.next().ok_or(RdbError::CorruptLzf)?);
            let dist = (usize::from(ctrl & 0x1f) << 8 | low) + 1;
            let start = out.len().checked_sub(dist).ok_or(RdbError::CorruptLzf)?;
            for i in start..start + len + 2 {
                let b = out.get(i).copied().ok_or(RdbError::CorruptLzf)?;
                out.push(b);
            }
        }
        if out.len() > ulen {
            return Err(RdbError::CorruptLzf);
        }
    }
    if out.len() == ulen {
        Ok(out)
    } else {
        Err(RdbError::CorruptLzf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real `SAVE` from redis-server 7.0.15 (two keys: `foo`=`bar`, `n`=12345), 109 bytes.
    pub(crate) const REAL_RDB: &[u8] = b"REDIS0010\xfa\x09redis-ver\x067.0.15\xfa\x0aredis-bits\
        \xc0@\xfa\x05ctime\xc2<\x05\x07k\xfa\x08used-mem\xc2PU\x0e\x00\xfa\x08aof-base\xc0\x00\
        \xfe\x00\xfb\x02\x00\x00\x01n\xc190\x00\x03foo\x03bar\xff\x87\xdc\x88\xaexK\xb2<";

    fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn real_redis_rdb_aux_and_crc() {
        assert_eq!(
            aux_fields(REAL_RDB),
            Ok(kv(&[
                ("redis-ver", "7.0.15"),
                ("redis-bits", "64"),
                ("ctime", &i32::from_le_bytes(*b"<\x05\x07k").to_string()),
                ("used-mem", "939344"),
                ("aof-base", "0"),
            ]))
        );
        let (body, last8) = REAL_RDB.split_at(REAL_RDB.len() - 8);
        let mut crc = crate::rdb::Crc64::new();
        crc.update(body);
        let last9 = &REAL_RDB[REAL_RDB.len() - 9..];
        assert_eq!(last8.len(), 8);
        assert_eq!(
            crate::rdb::check_trailer(crc.finish(), last9),
            Ok(crate::rdb::TrailerCheck::Valid)
        );
    }

    /// `REDIS0010` + hand-built AUX fields covering every length and string encoding.
    fn hand_built() -> Vec<u8> {
        let mut v = b"REDIS0010".to_vec();
        let mut aux = |k: &[u8], val: &[u8]| {
            v.push(0xfa);
            v.push(k.len() as u8);
            v.extend_from_slice(k);
            v.extend_from_slice(val);
        };
        aux(b"redis-ver", b"\x067.0.15");
        aux(b"redis-bits", b"\xc0\x40");
        aux(b"neg8", b"\xc0\xff");
        aux(b"int16", b"\xc1\x39\x30");
        aux(b"ctime", b"\xc2\x00\xca\x9a\x3b");
        aux(b"repl-id", b"\x2823c5f3fa8a2bdd7e1b94c4a89d0e0ab4ee8d0c9f");
        aux(b"len14", b"\x40\x03abc");
        aux(b"len32", b"\x80\x00\x00\x00\x02hi");
        aux(b"len64", b"\x81\x00\x00\x00\x00\x00\x00\x00\x01!");
        // LZF: literal "abc" (ctrl 2) then a back reference of 6 bytes at distance 3.
        aux(b"lzf", b"\xc3\x06\x09\x02abc\x80\x02");
        v.extend_from_slice(b"\xfe\x00");
        v
    }

    #[test]
    fn hand_built_prefix_every_encoding() {
        let want = kv(&[
            ("redis-ver", "7.0.15"),
            ("redis-bits", "64"),
            ("neg8", "-1"),
            ("int16", "12345"),
            ("ctime", "1000000000"),
            ("repl-id", "23c5f3fa8a2bdd7e1b94c4a89d0e0ab4ee8d0c9f"),
            ("len14", "abc"),
            ("len32", "hi"),
            ("len64", "!"),
            ("lzf", "abcabcabc"),
        ]);
        assert_eq!(aux_fields(&hand_built()), Ok(want));
    }

    #[test]
    fn truncated_prefixes_never_panic_and_only_grow() {
        for rdb in [hand_built(), REAL_RDB.to_vec()] {
            let full = aux_fields(&rdb).unwrap();
            let mut prev = 0;
            for n in 0..=rdb.len() {
                match aux_fields(&rdb[..n]) {
                    Ok(fields) => {
                        assert!(n >= 9);
                        assert!(fields.len() >= prev, "prefix {n}");
                        assert_eq!(fields[..], full[..fields.len()], "prefix {n}");
                        prev = fields.len();
                    }
                    Err(e) => assert!(n < 9, "prefix {n}: {e}"),
                }
            }
            assert_eq!(prev, full.len());
        }
    }

    #[test]
    fn encoding_errors() {
        let with = |tail: &[u8]| {
            let mut v = b"REDIS0011\xfa\x01k".to_vec();
            v.extend_from_slice(tail);
            aux_fields(&v)
        };
        assert_eq!(with(b"\x82"), Err(RdbError::InvalidLengthEncoding(0x82)));
        assert_eq!(with(b"\xc4"), Err(RdbError::UnsupportedEncoding(4)));
        assert_eq!(
            with(b"\xc3\xc0\x00\x01"),
            Err(RdbError::UnsupportedEncoding(0))
        );
        // Back reference before the start of the output.
        assert_eq!(with(b"\xc3\x02\x03\x20\x05"), Err(RdbError::CorruptLzf));
        // Decompresses to fewer / more bytes than declared.
        assert_eq!(with(b"\xc3\x02\x05\x00a"), Err(RdbError::CorruptLzf));
        assert_eq!(with(b"\xc3\x03\x01\x01ab"), Err(RdbError::CorruptLzf));
        assert!(matches!(
            with(b"\xc3\x01\x80\x7f\xff\xff\xff\x00"),
            Err(RdbError::StringTooLarge { .. })
        ));
        assert!(matches!(
            aux_fields(b"RDB"),
            Err(RdbError::Truncated { .. })
        ));
        assert!(matches!(
            aux_fields(b"NOTREDIS0"),
            Err(RdbError::BadMagic(_))
        ));
        // Huge declared lengths are a truncation, never an allocation.
        assert_eq!(with(b"\x81\xff\xff\xff\xff\xff\xff\xff\xff"), Ok(vec![]));
        assert_eq!(aux_fields(b"VALKEY080\xf7"), Ok(vec![]));
    }
}
