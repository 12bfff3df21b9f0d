//! Server-side input: client commands (multibulk or inline) and single reply lines.

use bytes::{Bytes, BytesMut};

use super::frame::{finish, Fail, Walker};
use super::{Limits, RespError};

/// Consumes one client command from the front of `buf`.
///
/// Accepts a RESP array of bulk strings, or (like Redis) an inline command line such as
/// `"SYNC\r\n"` or `"PING\n"`, split on ASCII whitespace. A bare `"\r\n"` or `"\n"` (a replica
/// keepalive) and the empty arrays `*0` / `*-1` give `Some(vec![])`. An array element that is not
/// a bulk string is an error. Returns `None` (consuming nothing) while the command is incomplete.
/// Arguments are zero-copy slices of the consumed bytes.
pub fn parse_command(buf: &mut BytesMut, limits: &Limits) -> Result<Option<Vec<Bytes>>, RespError> {
    match buf.first() {
        None => Ok(None),
        Some(b'*') => parse_multibulk(buf, limits),
        Some(_) => parse_inline(buf, limits),
    }
}

fn parse_multibulk(buf: &mut BytesMut, limits: &Limits) -> Result<Option<Vec<Bytes>>, RespError> {
    let Some(n) = finish(walk_command(&Walker::new(buf, limits, None)))? else {
        return Ok(None);
    };
    let src = buf.split_to(n).freeze();
    match walk_command(&Walker::new(&src, limits, Some(&src))) {
        Ok((args, _)) => Ok(Some(args)),
        // Unreachable: the validating pass accepted exactly these bytes.
        Err(Fail::Incomplete) => Err(RespError::InvalidLength),
        Err(Fail::Bad(e)) => Err(e),
    }
}

/// Walks `*N\r\n` followed by N bulk strings; collects them when the walker has a source.
fn walk_command(w: &Walker<'_>) -> Result<(Vec<Bytes>, usize), Fail> {
    let (n, mut pos) = w.array_len(1)?;
    let n = n.unwrap_or(0);
    let mut args = Vec::new();
    for _ in 0..n {
        match w.byte_at(pos) {
            None => return Err(Fail::Incomplete),
            Some(b'$') => {}
            Some(other) => return Err(RespError::ExpectedBulk(other).into()),
        }
        let (range, next) = w.bulk(pos + 1, false)?;
        if let Some(arg) = range.and_then(|r| w.bulk_bytes(r)) {
            args.push(arg);
        }
        pos = next;
    }
    Ok((args, pos))
}

fn parse_inline(buf: &mut BytesMut, limits: &Limits) -> Result<Option<Vec<Bytes>>, RespError> {
    let Some(line) = read_line(buf, limits.max_inline)? else {
        return Ok(None);
    };
    let mut args = Vec::new();
    let mut start = None;
    for (i, b) in line.iter().enumerate() {
        match (b.is_ascii_whitespace(), start) {
            (true, Some(s)) => {
                args.push(line.slice(s..i));
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        args.push(line.slice(s..));
    }
    Ok(Some(args))
}

/// Consumes one line ending in `"\n"` from the front of `buf` and returns it without its
/// `"\r\n"` or `"\n"` terminator (zero-copy). Returns `None` while no newline has arrived, and
/// `InlineTooLong` once more than `max` content bytes are buffered without one.
pub fn read_line(buf: &mut BytesMut, max: usize) -> Result<Option<Bytes>, RespError> {
    let window = buf.get(..max.saturating_add(2)).unwrap_or(buf);
    let Some(nl) = window.iter().position(|&b| b == b'\n') else {
        let cr_pending = buf.len() == max.saturating_add(1) && buf.last() == Some(&b'\r');
        if buf.len() > max && !cr_pending {
            return Err(RespError::InlineTooLong { max });
        }
        return Ok(None);
    };
    let content = if nl > 0 && window.get(nl - 1) == Some(&b'\r') {
        nl - 1
    } else {
        nl
    };
    if content > max {
        return Err(RespError::InlineTooLong { max });
    }
    let mut line = buf.split_to(nl + 1).freeze();
    line.truncate(content);
    Ok(Some(line))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &[u8]) -> BytesMut {
        BytesMut::from(s)
    }

    fn args(v: &[&[u8]]) -> Vec<Bytes> {
        v.iter().map(|a| Bytes::copy_from_slice(a)).collect()
    }

    #[test]
    fn multibulk_command() {
        let l = Limits::default();
        let mut buf = b(b"*3\r\n$8\r\nREPLCONF\r\n$3\r\nACK\r\n$3\r\n100\r\n*1\r\n$4\r\nPING\r\n");
        let cmd = parse_command(&mut buf, &l).unwrap().unwrap();
        assert_eq!(cmd, args(&[b"REPLCONF", b"ACK", b"100"]));
        let cmd = parse_command(&mut buf, &l).unwrap().unwrap();
        assert_eq!(cmd, args(&[b"PING"]));
        assert!(buf.is_empty());
        assert_eq!(parse_command(&mut buf, &l), Ok(None));
    }

    #[test]
    fn multibulk_incomplete_at_every_split() {
        let l = Limits::default();
        let full: &[u8] = b"*2\r\n$5\r\nPSYNC\r\n$0\r\n\r\n";
        for cut in 0..full.len() {
            let mut buf = b(&full[..cut]);
            assert_eq!(parse_command(&mut buf, &l), Ok(None), "cut {cut}");
            assert_eq!(buf.len(), cut);
        }
        let mut buf = b(full);
        assert_eq!(
            parse_command(&mut buf, &l).unwrap().unwrap(),
            args(&[b"PSYNC", b""])
        );
    }

    #[test]
    fn empty_arrays_are_no_ops() {
        let l = Limits::default();
        let mut buf = b(b"*0\r\n*-1\r\n");
        assert_eq!(parse_command(&mut buf, &l), Ok(Some(vec![])));
        assert_eq!(parse_command(&mut buf, &l), Ok(Some(vec![])));
        assert!(buf.is_empty());
    }

    #[test]
    fn multibulk_errors() {
        let l = Limits::default();
        let cases: &[(&[u8], RespError)] = &[
            (b"*1\r\n:1\r\n", RespError::ExpectedBulk(b':')),
            (b"*2\r\n$1\r\na\r\n*1\r\n", RespError::ExpectedBulk(b'*')),
            (b"*1\r\n$-1\r\n", RespError::InvalidLength),
            (b"*-2\r\n", RespError::InvalidLength),
            (b"*x\r\n", RespError::InvalidLength),
            (b"*1\r\n$1\r\nab\r\n", RespError::MissingCrlf),
            (b"*1\n", RespError::MissingCrlf),
        ];
        for (input, err) in cases {
            assert_eq!(
                parse_command(&mut b(input), &l),
                Err(err.clone()),
                "{input:?}"
            );
        }
        let small = Limits {
            max_array: 2,
            max_bulk: 3,
            ..Limits::default()
        };
        assert_eq!(
            parse_command(&mut b(b"*3\r\n"), &small),
            Err(RespError::ArrayTooLarge { len: 3, max: 2 })
        );
        assert_eq!(
            parse_command(&mut b(b"*1\r\n$4\r\n"), &small),
            Err(RespError::BulkTooLarge { len: 4, max: 3 })
        );
    }

    #[test]
    fn inline_commands() {
        let l = Limits::default();
        let mut buf = b(b"SYNC\r\nPING\n\n\r\n  replconf \t ack  7 \r\n");
        assert_eq!(parse_command(&mut buf, &l), Ok(Some(args(&[b"SYNC"]))));
        assert_eq!(parse_command(&mut buf, &l), Ok(Some(args(&[b"PING"]))));
        assert_eq!(parse_command(&mut buf, &l), Ok(Some(vec![])));
        assert_eq!(parse_command(&mut buf, &l), Ok(Some(vec![])));
        assert_eq!(
            parse_command(&mut buf, &l),
            Ok(Some(args(&[b"replconf", b"ack", b"7"])))
        );
        assert!(buf.is_empty());
        let mut partial = b(b"PIN");
        assert_eq!(parse_command(&mut partial, &l), Ok(None));
        assert_eq!(&partial[..], b"PIN");
    }

    #[test]
    fn inline_too_long() {
        let l = Limits {
            max_inline: 4,
            ..Limits::default()
        };
        assert_eq!(parse_command(&mut b(b"PING"), &l), Ok(None));
        assert_eq!(
            parse_command(&mut b(b"PINGX"), &l),
            Err(RespError::InlineTooLong { max: 4 })
        );
        assert_eq!(
            parse_command(&mut b(b"PING\r\n"), &l),
            Ok(Some(args(&[b"PING"])))
        );
    }

    #[test]
    fn read_line_variants() {
        let mut buf = b(b"+FULLRESYNC abc 0\r\n\n$12\nrest");
        assert_eq!(
            read_line(&mut buf, 64),
            Ok(Some(Bytes::from_static(b"+FULLRESYNC abc 0")))
        );
        assert_eq!(read_line(&mut buf, 64), Ok(Some(Bytes::new())));
        assert_eq!(
            read_line(&mut buf, 64),
            Ok(Some(Bytes::from_static(b"$12")))
        );
        assert_eq!(read_line(&mut buf, 64), Ok(None));
        assert_eq!(&buf[..], b"rest");

        // Exactly max content bytes, with either terminator, arriving in pieces.
        assert_eq!(read_line(&mut b(b"abc"), 3), Ok(None));
        assert_eq!(read_line(&mut b(b"abc\r"), 3), Ok(None));
        assert_eq!(
            read_line(&mut b(b"abc\r\n"), 3),
            Ok(Some(Bytes::from_static(b"abc")))
        );
        assert_eq!(
            read_line(&mut b(b"abc\n"), 3),
            Ok(Some(Bytes::from_static(b"abc")))
        );
        let too_long = Err(RespError::InlineTooLong { max: 3 });
        assert_eq!(read_line(&mut b(b"abcd"), 3), too_long);
        assert_eq!(read_line(&mut b(b"abcd\n"), 3), too_long);
        assert_eq!(read_line(&mut b(b"abcde\r\n"), 3), too_long);
        assert_eq!(read_line(&mut b(b""), 0), Ok(None));
        assert_eq!(read_line(&mut b(b"\r\n"), 0), Ok(Some(Bytes::new())));
        assert_eq!(read_line(&mut b(b"\r"), 0), Ok(None));
    }
}
