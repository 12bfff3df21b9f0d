//! RESP encoding: frames and commands to wire bytes.

use bytes::{BufMut, Bytes, BytesMut};

use super::Frame;

/// Appends the RESP2 encoding of `frame` to `out`.
///
/// `\r` and `\n` inside `Simple`/`Error` text are replaced by spaces (as Redis does for error
/// replies) so the output is always a single well-formed frame.
pub fn encode(frame: &Frame, out: &mut BytesMut) {
    match frame {
        Frame::Simple(s) => put_line(out, b'+', s.as_bytes()),
        Frame::Error(s) => put_line(out, b'-', s.as_bytes()),
        Frame::Integer(n) => put_header(out, b':', *n),
        Frame::Bulk(b) => put_bulk(out, b),
        Frame::Null => out.put_slice(b"$-1\r\n"),
        Frame::NullArray => out.put_slice(b"*-1\r\n"),
        Frame::Array(items) => {
            put_header(out, b'*', len_i64(items.len()));
            for item in items {
                encode(item, out);
            }
        }
    }
}

/// Encodes a command as a RESP array of bulk strings, e.g. `command(&[b"PING"])`.
pub fn command(args: &[&[u8]]) -> Bytes {
    let size = args.iter().map(|a| a.len() + 16).sum::<usize>() + 16;
    let mut out = BytesMut::with_capacity(size);
    put_header(&mut out, b'*', len_i64(args.len()));
    for arg in args {
        put_bulk(&mut out, arg);
    }
    out.freeze()
}

fn len_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub(super) fn put_line(out: &mut BytesMut, ty: u8, text: &[u8]) {
    out.reserve(text.len() + 3);
    out.put_u8(ty);
    for &c in text {
        out.put_u8(if c == b'\r' || c == b'\n' { b' ' } else { c });
    }
    out.put_slice(b"\r\n");
}

pub(super) fn put_bulk(out: &mut BytesMut, data: &[u8]) {
    put_header(out, b'$', len_i64(data.len()));
    out.reserve(data.len() + 2);
    out.put_slice(data);
    out.put_slice(b"\r\n");
}

/// Writes `<ty><decimal n>\r\n` without going through `fmt`.
pub(super) fn put_header(out: &mut BytesMut, ty: u8, n: i64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut v = n.unsigned_abs();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.reserve(24);
    out.put_u8(ty);
    if n < 0 {
        out.put_u8(b'-');
    }
    out.put_slice(&digits[i..]);
    out.put_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resp::{parse_frame, Limits};

    fn enc(f: &Frame) -> Vec<u8> {
        let mut out = BytesMut::new();
        encode(f, &mut out);
        out.to_vec()
    }

    #[test]
    fn encodes_every_variant() {
        assert_eq!(enc(&Frame::Simple("OK".into())), b"+OK\r\n");
        assert_eq!(enc(&Frame::Error("ERR x\r\ny".into())), b"-ERR x  y\r\n");
        assert_eq!(enc(&Frame::Integer(0)), b":0\r\n");
        assert_eq!(enc(&Frame::Integer(-42)), b":-42\r\n");
        assert_eq!(enc(&Frame::Integer(i64::MIN)), b":-9223372036854775808\r\n");
        assert_eq!(enc(&Frame::Integer(i64::MAX)), b":9223372036854775807\r\n");
        assert_eq!(
            enc(&Frame::Bulk(Bytes::from_static(b"a\r\nb"))),
            b"$4\r\na\r\nb\r\n"
        );
        assert_eq!(enc(&Frame::Bulk(Bytes::new())), b"$0\r\n\r\n");
        assert_eq!(enc(&Frame::Null), b"$-1\r\n");
        assert_eq!(enc(&Frame::NullArray), b"*-1\r\n");
        assert_eq!(enc(&Frame::Array(vec![])), b"*0\r\n");
        let nested = Frame::Array(vec![Frame::Integer(1), Frame::Array(vec![Frame::Null])]);
        assert_eq!(enc(&nested), b"*2\r\n:1\r\n*1\r\n$-1\r\n");
    }

    #[test]
    fn command_matches_redis_wire_format() {
        let capa: &[&[u8]] = &[b"REPLCONF", b"capa", b"eof", b"capa", b"psync2"];
        assert_eq!(
            &command(capa)[..],
            b"*5\r\n$8\r\nREPLCONF\r\n$4\r\ncapa\r\n$3\r\neof\r\n$4\r\ncapa\r\n$6\r\npsync2\r\n"
        );
        assert_eq!(&command(&[b"PING"])[..], b"*1\r\n$4\r\nPING\r\n");
        assert_eq!(&command(&[])[..], b"*0\r\n");
    }

    #[test]
    fn round_trip() {
        let frame = Frame::Array(vec![
            Frame::Simple("OK".into()),
            Frame::Error("ERR no".into()),
            Frame::Integer(-7),
            Frame::Bulk(Bytes::from_static(b"\x00\xffbin")),
            Frame::Null,
            Frame::NullArray,
            Frame::Array(vec![Frame::Bulk(Bytes::new())]),
        ]);
        let mut buf = BytesMut::new();
        encode(&frame, &mut buf);
        let parsed = parse_frame(&mut buf, &Limits::default()).unwrap();
        assert_eq!(parsed, Some(frame));
        assert!(buf.is_empty());
    }
}
