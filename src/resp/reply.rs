//! Replies to clients in the protocol they chose: RESP2 or RESP3 (`HELLO 3`). A [`Reply`] can
//! hold the RESP3 types (map, set, null, double, verbatim, push); under RESP2 they are written
//! the way Redis writes them to a RESP2 client (a map as a flat array, a double as a bulk
//! string, null as `$-1`).

use bytes::{BufMut, Bytes, BytesMut};

use super::encode::{put_bulk, put_header, put_line};

/// The protocol a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Proto {
    #[default]
    Resp2,
    Resp3,
}

impl Proto {
    pub fn number(self) -> i64 {
        match self {
            Proto::Resp2 => 2,
            Proto::Resp3 => 3,
        }
    }
}

/// One reply value.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Integer(i64),
    Bulk(Bytes),
    /// RESP3 `_`; RESP2 `$-1` (null bulk string).
    Null,
    /// RESP3 `_`; RESP2 `*-1` (null array).
    NullArray,
    Array(Vec<Reply>),
    /// RESP3 `%`; RESP2 a flat array key, value, key, value…
    Map(Vec<(Reply, Reply)>),
    /// RESP3 `~`; RESP2 an array.
    Set(Vec<Reply>),
    /// RESP3 `,`; RESP2 a bulk string of the same text.
    Double(f64),
    /// RESP3 `=` with a 3-letter format (`txt`, `mkd`); RESP2 a bulk string of the text.
    Verbatim {
        format: [u8; 3],
        text: Bytes,
    },
    /// RESP3 `>` (out-of-band data); RESP2 an array.
    Push(Vec<Reply>),
}

impl Reply {
    pub fn ok() -> Reply {
        Reply::Simple("OK".into())
    }

    pub fn err(text: impl Into<String>) -> Reply {
        Reply::Error(text.into())
    }

    pub fn bulk(text: impl Into<Bytes>) -> Reply {
        Reply::Bulk(text.into())
    }

    /// Plain text the way Redis returns INFO or CLIENT LIST: verbatim `txt` under RESP3.
    pub fn text(text: impl Into<Bytes>) -> Reply {
        Reply::Verbatim {
            format: *b"txt",
            text: text.into(),
        }
    }

    /// A map with string keys.
    pub fn map(pairs: Vec<(&str, Reply)>) -> Reply {
        Reply::Map(
            pairs
                .into_iter()
                .map(|(k, v)| (Reply::bulk(k.to_string()), v))
                .collect(),
        )
    }

    /// Appends this reply's encoding in `proto` to `out`.
    pub fn encode(&self, proto: Proto, out: &mut BytesMut) {
        let v3 = proto == Proto::Resp3;
        match self {
            Reply::Simple(s) => put_line(out, b'+', s.as_bytes()),
            Reply::Error(s) => put_line(out, b'-', s.as_bytes()),
            Reply::Integer(n) => put_header(out, b':', *n),
            Reply::Bulk(b) => put_bulk(out, b),
            Reply::Null if v3 => out.put_slice(b"_\r\n"),
            Reply::Null => out.put_slice(b"$-1\r\n"),
            Reply::NullArray if v3 => out.put_slice(b"_\r\n"),
            Reply::NullArray => out.put_slice(b"*-1\r\n"),
            Reply::Array(items) => put_items(out, b'*', items, proto),
            Reply::Set(items) => put_items(out, if v3 { b'~' } else { b'*' }, items, proto),
            Reply::Push(items) => put_items(out, if v3 { b'>' } else { b'*' }, items, proto),
            Reply::Map(pairs) => {
                if v3 {
                    put_header(out, b'%', len_i64(pairs.len()));
                } else {
                    put_header(out, b'*', len_i64(pairs.len()).saturating_mul(2));
                }
                for (k, v) in pairs {
                    k.encode(proto, out);
                    v.encode(proto, out);
                }
            }
            Reply::Double(d) => {
                let text = double_text(*d);
                if v3 {
                    put_line(out, b',', text.as_bytes());
                } else {
                    put_bulk(out, text.as_bytes());
                }
            }
            Reply::Verbatim { format, text } => {
                if v3 {
                    put_header(out, b'=', len_i64(text.len() + 4));
                    out.reserve(text.len() + 6);
                    out.put_slice(format);
                    out.put_u8(b':');
                    out.put_slice(text);
                    out.put_slice(b"\r\n");
                } else {
                    put_bulk(out, text);
                }
            }
        }
    }

    /// The encoding as one buffer.
    pub fn to_bytes(&self, proto: Proto) -> BytesMut {
        let mut out = BytesMut::new();
        self.encode(proto, &mut out);
        out
    }
}

fn put_items(out: &mut BytesMut, ty: u8, items: &[Reply], proto: Proto) {
    put_header(out, ty, len_i64(items.len()));
    for item in items {
        item.encode(proto, out);
    }
}

fn len_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Redis's spelling of a double: `inf`, `-inf`, `nan`, else the shortest exact decimal.
fn double_text(d: f64) -> String {
    if d.is_nan() {
        "nan".into()
    } else if d.is_infinite() {
        if d > 0.0 { "inf" } else { "-inf" }.into()
    } else {
        format!("{d}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn both(r: &Reply) -> (String, String) {
        let a = r.to_bytes(Proto::Resp2);
        let b = r.to_bytes(Proto::Resp3);
        (
            String::from_utf8_lossy(&a).into_owned(),
            String::from_utf8_lossy(&b).into_owned(),
        )
    }

    #[test]
    fn resp3_types_and_their_resp2_downgrades() {
        let m = Reply::map(vec![("proto", Reply::Integer(3)), ("x", Reply::Null)]);
        assert_eq!(
            both(&m),
            (
                "*4\r\n$5\r\nproto\r\n:3\r\n$1\r\nx\r\n$-1\r\n".into(),
                "%2\r\n$5\r\nproto\r\n:3\r\n$1\r\nx\r\n_\r\n".into()
            )
        );
        let s = Reply::Set(vec![Reply::Integer(1)]);
        assert_eq!(both(&s), ("*1\r\n:1\r\n".into(), "~1\r\n:1\r\n".into()));
        let p = Reply::Push(vec![Reply::bulk("a")]);
        assert_eq!(both(&p).1, ">1\r\n$1\r\na\r\n");
        assert_eq!(
            both(&Reply::Double(1.5)),
            ("$3\r\n1.5\r\n".into(), ",1.5\r\n".into())
        );
        assert_eq!(both(&Reply::Double(f64::INFINITY)).1, ",inf\r\n");
        assert_eq!(both(&Reply::Double(f64::NEG_INFINITY)).1, ",-inf\r\n");
        assert_eq!(both(&Reply::Double(f64::NAN)).1, ",nan\r\n");
        assert_eq!(
            both(&Reply::text("a:b\r\n")),
            ("$5\r\na:b\r\n\r\n".into(), "=9\r\ntxt:a:b\r\n\r\n".into())
        );
        assert_eq!(both(&Reply::NullArray), ("*-1\r\n".into(), "_\r\n".into()));
        assert_eq!(
            both(&Reply::err("ERR a\r\nb")).0,
            "-ERR a  b\r\n",
            "an error stays one line"
        );
    }

    #[test]
    fn resp2_output_parses_with_our_decoder() {
        use crate::resp::{parse_frame, Frame, Limits};
        let r = Reply::Array(vec![
            Reply::map(vec![("k", Reply::Double(2.0))]),
            Reply::Set(vec![]),
            Reply::text("hi"),
        ]);
        let mut buf = r.to_bytes(Proto::Resp2);
        let f = parse_frame(&mut buf, &Limits::default()).unwrap().unwrap();
        assert_eq!(
            f,
            Frame::Array(vec![
                Frame::Array(vec![
                    Frame::Bulk(Bytes::from_static(b"k")),
                    Frame::Bulk(Bytes::from_static(b"2"))
                ]),
                Frame::Array(vec![]),
                Frame::Bulk(Bytes::from_static(b"hi")),
            ])
        );
        // The RESP3 form is folded back by the tolerant decoder (map → flat array).
        let mut buf = r.to_bytes(Proto::Resp3);
        assert!(parse_frame(&mut buf, &Limits::default()).unwrap().is_some());
        assert!(buf.is_empty());
    }
}
