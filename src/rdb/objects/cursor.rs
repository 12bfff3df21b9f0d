//! A bounds-checked reader over a byte slice: RDB lengths, strings (raw, int, LZF), times and
//! doubles. Running out of bytes is `Short::Need`, never an error of the data.

use super::ObjectError;

/// Why a read stopped: more bytes are needed, or the data is bad.
#[derive(Debug)]
pub(crate) enum Short {
    /// The buffer ends before the item does.
    Need,
    Bad(ObjectError),
}

impl From<ObjectError> for Short {
    fn from(e: ObjectError) -> Self {
        Short::Bad(e)
    }
}

pub(crate) type Res<T> = Result<T, Short>;

/// An RDB length: a plain length, or the special string encoding of an `11xxxxxx` byte.
pub(crate) enum Length {
    Plain(u64),
    Encoded(u8),
}

pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
    pub(crate) pos: usize,
    /// Absolute RDB offset of `buf[0]`, for error messages.
    base: u64,
    /// Largest string or object accepted.
    pub(crate) max: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(buf: &'a [u8], base: u64, max: usize) -> Self {
        Cursor {
            buf,
            pos: 0,
            base,
            max,
        }
    }

    /// Absolute RDB offset of the next byte.
    pub(crate) fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    pub(crate) fn bad(&self, what: impl Into<String>) -> Short {
        Short::Bad(ObjectError::Corrupt {
            offset: self.offset(),
            what: what.into(),
        })
    }

    /// The bytes read since position `start`.
    pub(crate) fn raw_since(&self, start: usize) -> &'a [u8] {
        self.buf.get(start..self.pos).unwrap_or_default()
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(crate) fn take(&mut self, n: usize) -> Res<&'a [u8]> {
        if n > self.max {
            return Err(Short::Bad(ObjectError::TooLarge {
                offset: self.offset(),
                len: n as u64,
                max: self.max,
            }));
        }
        let end = self.pos.checked_add(n).ok_or(Short::Need)?;
        let bytes = self.buf.get(self.pos..end).ok_or(Short::Need)?;
        self.pos = end;
        Ok(bytes)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Res<[u8; N]> {
        <[u8; N]>::try_from(self.take(N)?).map_err(|_| Short::Need)
    }

    pub(crate) fn u8(&mut self) -> Res<u8> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn length_or_encoding(&mut self) -> Res<Length> {
        let b = self.u8()?;
        Ok(match b >> 6 {
            0 => Length::Plain(u64::from(b & 0x3f)),
            1 => Length::Plain(u64::from(b & 0x3f) << 8 | u64::from(self.u8()?)),
            3 => Length::Encoded(b & 0x3f),
            _ => match b {
                0x80 => Length::Plain(u64::from(u32::from_be_bytes(self.array()?))),
                0x81 => Length::Plain(u64::from_be_bytes(self.array()?)),
                _ => return Err(self.bad(format!("invalid length encoding byte 0x{b:02x}"))),
            },
        })
    }

    /// A plain RDB length (no special string encoding allowed).
    pub(crate) fn len(&mut self) -> Res<u64> {
        match self.length_or_encoding()? {
            Length::Plain(n) => Ok(n),
            Length::Encoded(e) => {
                Err(self.bad(format!("string encoding {e} where a length belongs")))
            }
        }
    }

    /// A length used as an element count: bounded by the bytes left (each element takes at
    /// least `min_each` bytes), so a corrupt count never drives an allocation.
    pub(crate) fn count(&mut self, min_each: usize) -> Res<usize> {
        let n = self.len()?;
        let n = usize::try_from(n).map_err(|_| self.bad("count out of range"))?;
        if n.saturating_mul(min_each.max(1)) > self.max {
            return Err(self.bad(format!("count {n} is larger than any object we accept")));
        }
        Ok(n)
    }

    /// An RDB string: raw, an 8/16/32-bit integer (as decimal text), or LZF-compressed.
    pub(crate) fn string(&mut self) -> Res<Vec<u8>> {
        match self.length_or_encoding()? {
            Length::Plain(n) => {
                let n = usize::try_from(n).unwrap_or(usize::MAX);
                Ok(self.take(n)?.to_vec())
            }
            Length::Encoded(0) => Ok(i8::from_le_bytes(self.array()?).to_string().into_bytes()),
            Length::Encoded(1) => Ok(i16::from_le_bytes(self.array()?).to_string().into_bytes()),
            Length::Encoded(2) => Ok(i32::from_le_bytes(self.array()?).to_string().into_bytes()),
            Length::Encoded(3) => {
                let clen = usize::try_from(self.len()?).unwrap_or(usize::MAX);
                let ulen = usize::try_from(self.len()?).unwrap_or(usize::MAX);
                if ulen > self.max {
                    return Err(Short::Bad(ObjectError::TooLarge {
                        offset: self.offset(),
                        len: ulen as u64,
                        max: self.max,
                    }));
                }
                let at = self.offset();
                let compressed = self.take(clen)?;
                crate::rdb::lzf_decompress(compressed, ulen).map_err(|_| {
                    Short::Bad(ObjectError::Corrupt {
                        offset: at,
                        what: "corrupt LZF-compressed string".into(),
                    })
                })
            }
            Length::Encoded(e) => Err(self.bad(format!("unknown string encoding {e}"))),
        }
    }

    pub(crate) fn millis(&mut self) -> Res<i64> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    pub(crate) fn binary_double(&mut self) -> Res<f64> {
        Ok(f64::from_le_bytes(self.array()?))
    }

    /// The RDB 'old' double: a length byte, 253 NaN, 254 +inf, 255 -inf, else ASCII.
    pub(crate) fn text_double(&mut self) -> Res<f64> {
        match self.u8()? {
            255 => Ok(f64::NEG_INFINITY),
            254 => Ok(f64::INFINITY),
            253 => Ok(f64::NAN),
            n => {
                let text = self.take(usize::from(n))?;
                parse_f64(text).ok_or_else(|| self.bad("bad text-encoded double"))
            }
        }
    }
}

/// Parses a score as Redis writes it (`%.17g`, `inf`, `-inf`).
pub(crate) fn parse_f64(text: &[u8]) -> Option<f64> {
    std::str::from_utf8(text).ok()?.trim().parse().ok()
}

/// Parses a decimal integer element.
pub(crate) fn parse_i64(text: &[u8]) -> Option<i64> {
    std::str::from_utf8(text).ok()?.parse().ok()
}
