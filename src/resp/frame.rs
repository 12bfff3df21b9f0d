//! RESP frames: the `Frame` type, decoding limits, and the check-then-parse frame decoder.

use bytes::{Bytes, BytesMut};

use super::lex::{find_line, parse_i64, MAX_NUMBER_LINE};
use super::RespError;

/// One RESP value.
///
/// RESP3 types are tolerated and folded into these variants: `_` → `Null`, `#t`/`#f` →
/// `Integer(1/0)`, `,` doubles and `(` big numbers → `Simple` (their text), `!` blob errors →
/// `Error`, `=` verbatim strings → `Bulk` (without the `xxx:` format prefix), and `%` maps,
/// `~` sets and `>` pushes → `Array` (a map is flattened to key, value, key, value…).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    Simple(String),
    Error(String),
    Integer(i64),
    Bulk(Bytes),
    /// The null bulk string `$-1\r\n` (or RESP3 `_\r\n`).
    Null,
    Array(Vec<Frame>),
    /// The null array `*-1\r\n`.
    NullArray,
}

/// Bounds applied while decoding untrusted input.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest accepted bulk string payload, in bytes.
    pub max_bulk: usize,
    /// Largest accepted number of array elements.
    pub max_array: usize,
    /// Deepest accepted array nesting (a flat array has depth 1).
    pub max_depth: usize,
    /// Longest accepted simple string / error / inline command line, in bytes.
    pub max_inline: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bulk: 512 * 1024 * 1024,
            max_array: 1 << 20,
            max_depth: 8,
            max_inline: 64 * 1024,
        }
    }
}

/// Checks whether `buf` starts with a complete frame, without allocating.
///
/// Returns `Some(n)` when a complete frame occupies `buf[..n]`, `None` when more bytes are needed.
pub fn check(buf: &[u8], limits: &Limits) -> Result<Option<usize>, RespError> {
    finish(Walker::new(buf, limits, None).frame(0, 0))
}

/// Consumes and returns one frame from the front of `buf`, or `None` (consuming nothing) if the
/// frame is still incomplete. Bulk payloads are zero-copy slices of the consumed bytes.
pub fn parse_frame(buf: &mut BytesMut, limits: &Limits) -> Result<Option<Frame>, RespError> {
    let Some(n) = check(buf, limits)? else {
        return Ok(None);
    };
    let src = buf.split_to(n).freeze();
    match Walker::new(&src, limits, Some(&src)).frame(0, 0) {
        Ok((Some(frame), _)) => Ok(Some(frame)),
        // Unreachable: `check` accepted exactly these bytes with the same limits.
        Ok((None, _)) | Err(Fail::Incomplete) => Err(RespError::InvalidLength),
        Err(Fail::Bad(e)) => Err(e),
    }
}

/// Internal parse outcome: "need more bytes" travels as an error so `?` can propagate it.
pub(crate) enum Fail {
    Incomplete,
    Bad(RespError),
}

impl From<RespError> for Fail {
    fn from(e: RespError) -> Self {
        Fail::Bad(e)
    }
}

/// Maps a walker result to the public `Ok(Some(n)) / Ok(None) / Err` convention.
pub(crate) fn finish<T>(r: Result<(T, usize), Fail>) -> Result<Option<usize>, RespError> {
    match r {
        Ok((_, n)) => Ok(Some(n)),
        Err(Fail::Incomplete) => Ok(None),
        Err(Fail::Bad(e)) => Err(e),
    }
}

/// A position-based decoder over a byte slice. When `src` is set (it must be the same bytes as
/// `buf`), it also builds frames whose bulks are slices of `src`; otherwise it only validates.
pub(crate) struct Walker<'a> {
    buf: &'a [u8],
    limits: &'a Limits,
    src: Option<&'a Bytes>,
}

impl<'a> Walker<'a> {
    pub(crate) fn new(buf: &'a [u8], limits: &'a Limits, src: Option<&'a Bytes>) -> Self {
        Walker { buf, limits, src }
    }

    fn byte(&self, pos: usize) -> Result<u8, Fail> {
        self.byte_at(pos).ok_or(Fail::Incomplete)
    }

    pub(crate) fn byte_at(&self, pos: usize) -> Option<u8> {
        self.buf.get(pos).copied()
    }

    /// Returns (content end, next position) of the CRLF-terminated line starting at `pos`.
    fn line(&self, pos: usize, max: usize, too_long: RespError) -> Result<(usize, usize), Fail> {
        match find_line(self.buf, pos, max, too_long)? {
            Some(end) => Ok((end, end + 2)),
            None => Err(Fail::Incomplete),
        }
    }

    fn text(&self, start: usize, end: usize) -> Option<String> {
        self.src
            .map(|_| String::from_utf8_lossy(self.buf.get(start..end).unwrap_or(&[])).into_owned())
    }

    /// Reads a number line (after the type byte); `bad` is the error for a malformed number.
    fn number(&self, pos: usize, bad: RespError) -> Result<(i64, usize), Fail> {
        let (end, next) = self.line(pos, MAX_NUMBER_LINE, bad.clone())?;
        let n = self.buf.get(pos..end).and_then(parse_i64).ok_or(bad)?;
        Ok((n, next))
    }

    /// Reads a length-prefixed payload whose `$len` line starts at `pos` (after the type byte).
    /// Returns the payload range (`None` for a `-1` null) and the next position.
    pub(crate) fn bulk(
        &self,
        pos: usize,
        allow_null: bool,
    ) -> Result<(Option<(usize, usize)>, usize), Fail> {
        let (len, next) = self.number(pos, RespError::InvalidLength)?;
        if len == -1 && allow_null {
            return Ok((None, next));
        }
        let len = u64::try_from(len).map_err(|_| RespError::InvalidLength)?;
        let max = self.limits.max_bulk;
        let ulen = usize::try_from(len)
            .ok()
            .filter(|&l| l <= max)
            .ok_or(RespError::BulkTooLarge { len, max })?;
        let end = next.checked_add(ulen).ok_or(RespError::InvalidLength)?;
        match self.buf.get(end..end.saturating_add(2)) {
            Some(b"\r\n") => Ok((Some((next, end)), end + 2)),
            Some(_) => Err(RespError::MissingCrlf.into()),
            None if self.buf.len() > end && self.buf.get(end) != Some(&b'\r') => {
                Err(RespError::MissingCrlf.into())
            }
            None => Err(Fail::Incomplete),
        }
    }

    /// Reads an aggregate length line and enforces the element limit (`-1` gives `None`).
    pub(crate) fn array_len(&self, pos: usize) -> Result<(Option<usize>, usize), Fail> {
        let (n, next) = self.number(pos, RespError::InvalidLength)?;
        if n == -1 {
            return Ok((None, next));
        }
        let n = u64::try_from(n).map_err(|_| RespError::InvalidLength)?;
        let max = self.limits.max_array;
        let n = usize::try_from(n)
            .ok()
            .filter(|&l| l <= max)
            .ok_or(RespError::ArrayTooLarge { len: n, max })?;
        Ok((Some(n), next))
    }

    fn slice(&self, start: usize, end: usize) -> Option<Bytes> {
        // In range: `bulk` only returns ranges it found inside `buf`, and `src` is `buf`.
        self.src.map(|s| s.slice(start..end))
    }

    pub(crate) fn bulk_bytes(&self, range: (usize, usize)) -> Option<Bytes> {
        self.slice(range.0, range.1)
    }

    /// Walks one frame at `pos`; `depth` is the number of enclosing arrays.
    pub(crate) fn frame(&self, pos: usize, depth: usize) -> Result<(Option<Frame>, usize), Fail> {
        let ty = self.byte(pos)?;
        let pos = pos + 1;
        let inline_too_long = RespError::InlineTooLong {
            max: self.limits.max_inline,
        };
        match ty {
            b'+' | b'-' | b',' | b'(' => {
                let (end, next) = self.line(pos, self.limits.max_inline, inline_too_long)?;
                let frame = self.text(pos, end).map(|s| match ty {
                    b'-' => Frame::Error(s),
                    _ => Frame::Simple(s),
                });
                Ok((frame, next))
            }
            b':' => {
                let (n, next) = self.number(pos, RespError::InvalidInteger)?;
                Ok((Some(Frame::Integer(n)), next))
            }
            b'#' => {
                let (end, next) = self.line(pos, 1, RespError::InvalidInteger)?;
                match self.buf.get(pos..end) {
                    Some(b"t") => Ok((Some(Frame::Integer(1)), next)),
                    Some(b"f") => Ok((Some(Frame::Integer(0)), next)),
                    _ => Err(RespError::InvalidInteger.into()),
                }
            }
            b'_' => {
                let (_, next) = self.line(pos, 0, RespError::InvalidLength)?;
                Ok((Some(Frame::Null), next))
            }
            b'$' | b'!' | b'=' => match self.bulk(pos, ty == b'$')? {
                (None, next) => Ok((Some(Frame::Null), next)),
                (Some((start, end)), next) => {
                    let frame = match ty {
                        b'!' => self.text(start, end).map(Frame::Error),
                        b'=' => {
                            let start = if end - start >= 4 { start + 4 } else { start };
                            self.slice(start, end).map(Frame::Bulk)
                        }
                        _ => self.slice(start, end).map(Frame::Bulk),
                    };
                    Ok((frame, next))
                }
            },
            b'*' | b'%' | b'~' | b'>' => {
                let (n, mut next) = self.array_len(pos)?;
                let Some(mut n) = n else {
                    return Ok((Some(Frame::NullArray), next));
                };
                if depth >= self.limits.max_depth {
                    return Err(RespError::TooDeep {
                        max: self.limits.max_depth,
                    }
                    .into());
                }
                if ty == b'%' {
                    n = n.checked_mul(2).ok_or(RespError::InvalidLength)?;
                }
                let mut items = self.src.map(|_| Vec::with_capacity(n));
                for _ in 0..n {
                    let (item, after) = self.frame(next, depth + 1)?;
                    if let (Some(items), Some(item)) = (items.as_mut(), item) {
                        items.push(item);
                    }
                    next = after;
                }
                Ok((items.map(Frame::Array), next))
            }
            other => Err(RespError::InvalidType(other).into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(input: &[u8]) -> Result<Option<Frame>, RespError> {
        parse_frame(&mut BytesMut::from(input), &Limits::default())
    }

    fn bulk(s: &'static [u8]) -> Frame {
        Frame::Bulk(Bytes::from_static(s))
    }

    #[test]
    fn parses_resp2_types() {
        assert_eq!(parse(b"+OK\r\n"), Ok(Some(Frame::Simple("OK".into()))));
        assert_eq!(
            parse(b"-ERR bad\r\n"),
            Ok(Some(Frame::Error("ERR bad".into())))
        );
        assert_eq!(parse(b":-12\r\n"), Ok(Some(Frame::Integer(-12))));
        assert_eq!(parse(b"$3\r\na\rb\r\n"), Ok(Some(bulk(b"a\rb"))));
        assert_eq!(parse(b"$0\r\n\r\n"), Ok(Some(bulk(b""))));
        assert_eq!(parse(b"$-1\r\n"), Ok(Some(Frame::Null)));
        assert_eq!(parse(b"*-1\r\n"), Ok(Some(Frame::NullArray)));
        assert_eq!(parse(b"*0\r\n"), Ok(Some(Frame::Array(vec![]))));
        assert_eq!(
            parse(b"*2\r\n*1\r\n:1\r\n$1\r\nx\r\n"),
            Ok(Some(Frame::Array(vec![
                Frame::Array(vec![Frame::Integer(1)]),
                bulk(b"x")
            ])))
        );
    }

    #[test]
    fn tolerates_resp3_types() {
        assert_eq!(parse(b"_\r\n"), Ok(Some(Frame::Null)));
        assert_eq!(parse(b"#t\r\n"), Ok(Some(Frame::Integer(1))));
        assert_eq!(parse(b"#f\r\n"), Ok(Some(Frame::Integer(0))));
        assert_eq!(parse(b",1.5\r\n"), Ok(Some(Frame::Simple("1.5".into()))));
        assert_eq!(parse(b"(123\r\n"), Ok(Some(Frame::Simple("123".into()))));
        assert_eq!(
            parse(b"!3\r\nERR\r\n"),
            Ok(Some(Frame::Error("ERR".into())))
        );
        assert_eq!(parse(b"=7\r\ntxt:abc\r\n"), Ok(Some(bulk(b"abc"))));
        assert_eq!(
            parse(b"%1\r\n+k\r\n:1\r\n"),
            Ok(Some(Frame::Array(vec![
                Frame::Simple("k".into()),
                Frame::Integer(1)
            ])))
        );
        assert_eq!(
            parse(b"~1\r\n_\r\n"),
            Ok(Some(Frame::Array(vec![Frame::Null])))
        );
        assert_eq!(parse(b">0\r\n"), Ok(Some(Frame::Array(vec![]))));
        assert_eq!(parse(b"#x\r\n"), Err(RespError::InvalidInteger));
        assert_eq!(parse(b"_x\r\n"), Err(RespError::InvalidLength));
        assert_eq!(parse(b"!-1\r\n"), Err(RespError::InvalidLength));
    }

    #[test]
    fn incomplete_at_every_split_and_consumes_exactly_one_frame() {
        let full: &[u8] = b"*4\r\n+OK\r\n:7\r\n$5\r\nhello\r\n*1\r\n$-1\r\n";
        let limits = Limits::default();
        for cut in 0..full.len() {
            assert_eq!(check(&full[..cut], &limits), Ok(None), "cut {cut}");
            let mut buf = BytesMut::from(&full[..cut]);
            assert_eq!(parse_frame(&mut buf, &limits), Ok(None));
            assert_eq!(buf.len(), cut, "nothing consumed");
        }
        let mut buf = BytesMut::from(full);
        buf.extend_from_slice(b"+next\r\n");
        assert_eq!(check(&buf, &limits), Ok(Some(full.len())));
        assert!(matches!(
            parse_frame(&mut buf, &limits),
            Ok(Some(Frame::Array(_)))
        ));
        assert_eq!(&buf[..], b"+next\r\n");
    }

    #[test]
    fn bulks_are_zero_copy() {
        let mut buf = BytesMut::from(&b"*1\r\n$5\r\nhello\r\n"[..]);
        let base = buf.as_ptr() as usize;
        let Ok(Some(Frame::Array(items))) = parse_frame(&mut buf, &Limits::default()) else {
            panic!("expected an array");
        };
        let Some(Frame::Bulk(b)) = items.first() else {
            panic!("expected a bulk");
        };
        assert_eq!(b.as_ptr() as usize, base + 8);
    }

    #[test]
    fn protocol_errors() {
        let cases: &[(&[u8], RespError)] = &[
            (b"?\r\n", RespError::InvalidType(b'?')),
            (b":12a\r\n", RespError::InvalidInteger),
            (b":\r\n", RespError::InvalidInteger),
            (b":99999999999999999999\r\n", RespError::InvalidInteger),
            (b":123456789012345678901234", RespError::InvalidInteger),
            (b"$-2\r\n", RespError::InvalidLength),
            (b"$+1\r\n", RespError::InvalidLength),
            (b"*-5\r\n", RespError::InvalidLength),
            (b"+OK\n", RespError::MissingCrlf),
            (b"$1\r\nab", RespError::MissingCrlf),
            (b"$1\r\na\rx", RespError::MissingCrlf),
            (b"$1\r\nax", RespError::MissingCrlf),
        ];
        for (input, err) in cases {
            assert_eq!(
                check(input, &Limits::default()),
                Err(err.clone()),
                "{input:?}"
            );
        }
        // A nested simple string line that never ends.
        let mut endless = b"*1\r\n+".to_vec();
        endless.resize(70_000, b'a');
        assert_eq!(
            check(&endless, &Limits::default()),
            Err(RespError::InlineTooLong { max: 64 * 1024 })
        );
    }

    #[test]
    fn limits_are_enforced() {
        let l = Limits {
            max_bulk: 4,
            max_array: 2,
            max_depth: 2,
            max_inline: 3,
        };
        assert_eq!(check(b"$4\r\nabcd\r\n", &l), Ok(Some(10)));
        assert_eq!(
            check(b"$5\r\n", &l),
            Err(RespError::BulkTooLarge { len: 5, max: 4 })
        );
        assert_eq!(
            check(b"$9223372036854775807\r\n", &l),
            Err(RespError::BulkTooLarge {
                len: i64::MAX as u64,
                max: 4
            })
        );
        assert_eq!(
            check(b"*3\r\n", &l),
            Err(RespError::ArrayTooLarge { len: 3, max: 2 })
        );
        assert_eq!(
            check(b"*1\r\n*1\r\n*0\r\n", &l),
            Err(RespError::TooDeep { max: 2 })
        );
        assert_eq!(check(b"*1\r\n*1\r\n:1\r\n", &l), Ok(Some(12)));
        assert_eq!(check(b"+abc\r\n", &l), Ok(Some(6)));
        assert_eq!(check(b"+abc\r", &l), Ok(None));
        assert_eq!(
            check(b"+abcd", &l),
            Err(RespError::InlineTooLong { max: 3 })
        );
    }
}
