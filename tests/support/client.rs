//! A small blocking RESP client for tests, and reading `INFO` fields with it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::BytesMut;
use georelay::resp::{self, Frame, Limits};

/// `INFO section` field value; panics (failing the test) when the server does not report the
/// field, so two missing fields never compare equal.
pub fn info_field(c: &mut Client, section: &str, field: &str) -> String {
    let text = c.cmd_str(&["INFO", section]);
    info_line(&text, field)
        .unwrap_or_else(|| panic!("INFO {section} has no field {field:?}:\n{text}"))
}

/// `INFO section` field value, `None` while the server does not report it (e.g. `slave0`
/// before a replica registers).
pub fn try_info_field(c: &mut Client, section: &str, field: &str) -> Option<String> {
    info_line(&c.cmd_str(&["INFO", section]), field)
}

fn info_line(text: &str, field: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .map(|v| v.trim().to_string())
}

/// A blocking RESP client for tests.
pub struct Client {
    sock: TcpStream,
    buf: BytesMut,
}

impl Client {
    pub fn try_connect(port: u16) -> Option<Client> {
        let sock = TcpStream::connect(("127.0.0.1", port)).ok()?;
        sock.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
        Some(Client {
            sock,
            buf: BytesMut::new(),
        })
    }

    pub fn connect(port: u16) -> Client {
        Self::try_connect(port).unwrap_or_else(|| panic!("connect to 127.0.0.1:{port}"))
    }

    pub fn raw(&self) -> &TcpStream {
        &self.sock
    }

    pub fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.sock.write_all(bytes)
    }

    pub fn send(&mut self, args: &[&str]) {
        let a: Vec<&[u8]> = args.iter().map(|s| s.as_bytes()).collect();
        self.send_raw(&resp::command(&a)).expect("send command");
    }

    pub fn read_frame(&mut self) -> std::io::Result<Frame> {
        let limits = Limits {
            max_bulk: 1 << 30,
            ..Limits::default()
        };
        loop {
            match resp::parse_frame(&mut self.buf, &limits) {
                Ok(Some(f)) => return Ok(f),
                Ok(None) => {}
                Err(e) => return Err(std::io::Error::other(e.to_string())),
            }
            let mut tmp = [0u8; 64 * 1024];
            let n = self.sock.read(&mut tmp)?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "connection closed",
                ));
            }
            self.buf.extend_from_slice(&tmp[..n]);
        }
    }

    pub fn try_cmd(&mut self, args: &[&str]) -> std::io::Result<Frame> {
        let a: Vec<&[u8]> = args.iter().map(|s| s.as_bytes()).collect();
        self.send_raw(&resp::command(&a))?;
        self.read_frame()
    }

    pub fn cmd(&mut self, args: &[&str]) -> Frame {
        self.try_cmd(args)
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    /// Runs a command and renders its reply as text (bulk/simple/error/integer).
    pub fn cmd_str(&mut self, args: &[&str]) -> String {
        frame_text(&self.cmd(args))
    }

    /// Reads raw bytes until the connection closes or `limit` passes.
    pub fn read_until_close(&mut self, limit: Duration) -> Vec<u8> {
        let mut out = self.buf.split().to_vec();
        let _ = self.sock.set_read_timeout(Some(limit));
        let mut tmp = [0u8; 64 * 1024];
        while let Ok(n) = self.sock.read(&mut tmp) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&tmp[..n]);
        }
        out
    }
}

pub fn frame_text(f: &Frame) -> String {
    match f {
        Frame::Simple(s) | Frame::Error(s) => s.clone(),
        Frame::Bulk(b) => String::from_utf8_lossy(b).into_owned(),
        Frame::Integer(i) => i.to_string(),
        Frame::Null | Frame::NullArray => "(nil)".into(),
        Frame::Array(items) => items.iter().map(frame_text).collect::<Vec<_>>().join(" "),
    }
}
