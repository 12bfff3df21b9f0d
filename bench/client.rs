//! A small blocking RESP client for commands, pipelines and the lag probe's SUBSCRIBE.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{bail, Result};
use bytes::BytesMut;
use georelay::resp::{self, Frame, Limits};

pub struct Client {
    pub sock: TcpStream,
    pub buf: BytesMut,
}

pub fn limits() -> Limits {
    Limits {
        max_bulk: 1 << 30,
        ..Limits::default()
    }
}

impl Client {
    pub fn connect(port: u16) -> Result<Client> {
        let sock = TcpStream::connect(("127.0.0.1", port))?;
        sock.set_read_timeout(Some(Duration::from_secs(120)))?;
        sock.set_nodelay(true)?;
        Ok(Client {
            sock,
            buf: BytesMut::with_capacity(1 << 16),
        })
    }
    pub fn read_frame(&mut self) -> Result<Frame> {
        let l = limits();
        loop {
            if let Some(f) = resp::parse_frame(&mut self.buf, &l)? {
                return Ok(f);
            }
            let mut tmp = [0u8; 64 * 1024];
            let n = self.sock.read(&mut tmp)?;
            if n == 0 {
                bail!("connection closed");
            }
            self.buf.extend_from_slice(&tmp[..n]);
        }
    }
    pub fn cmd(&mut self, args: &[&str]) -> Result<Frame> {
        let a: Vec<&[u8]> = args.iter().map(|s| s.as_bytes()).collect();
        self.sock.write_all(&resp::command(&a))?;
        let f = self.read_frame()?;
        if let Frame::Error(e) = &f {
            bail!("{args:?}: {e}");
        }
        Ok(f)
    }
    /// Writes pre-encoded commands and reads `n` replies.
    pub fn pipeline(&mut self, out: &[u8], n: usize) -> Result<()> {
        self.sock.write_all(out)?;
        for _ in 0..n {
            if let Frame::Error(e) = self.read_frame()? {
                bail!("pipeline error: {e}");
            }
        }
        Ok(())
    }
}
