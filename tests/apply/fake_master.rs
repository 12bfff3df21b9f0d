//! A fake upstream master, for bad input only: it answers the replica handshake (PING, AUTH,
//! REPLCONF) and every PSYNC with `+FULLRESYNC` and a given RDB, then keeps the link open.
//! Also builds the RDBs it serves (a module-typed key, which no real server here can write).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::BytesMut;
use georelay::resp::{parse_command, Limits};

/// The replication id the fake announces.
pub const REPLID: &str = "0123456789abcdef0123456789abcdef01234567";
/// The offset of its `+FULLRESYNC`.
pub const OFFSET: u64 = 1000;

pub struct FakeMaster {
    pub port: u16,
    /// PSYNCs answered with the RDB.
    pub full_syncs: Arc<AtomicU64>,
}

impl FakeMaster {
    pub fn start(rdb: Vec<u8>) -> FakeMaster {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fake master");
        let port = listener.local_addr().expect("fake master address").port();
        let full_syncs = Arc::new(AtomicU64::new(0));
        let (rdb, syncs) = (Arc::new(rdb), full_syncs.clone());
        // The accept thread lives as long as the test process.
        std::thread::spawn(move || {
            for sock in listener.incoming().flatten() {
                let (rdb, syncs) = (rdb.clone(), syncs.clone());
                std::thread::spawn(move || serve(sock, &rdb, &syncs));
            }
        });
        FakeMaster { port, full_syncs }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// One replica connection, until it closes.
fn serve(mut sock: TcpStream, rdb: &[u8], syncs: &AtomicU64) {
    let mut buf = BytesMut::new();
    let mut chunk = [0u8; 4096];
    loop {
        let cmd = match parse_command(&mut buf, &Limits::default()) {
            Ok(Some(c)) => c,
            Ok(None) => match sock.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    continue;
                }
            },
            Err(_) => return,
        };
        let name = cmd
            .first()
            .map(|a| String::from_utf8_lossy(a).to_ascii_uppercase())
            .unwrap_or_default();
        let sub = cmd
            .get(1)
            .map(|a| String::from_utf8_lossy(a).to_ascii_uppercase())
            .unwrap_or_default();
        let reply: Vec<u8> = match (name.as_str(), sub.as_str()) {
            ("PING", _) => b"+PONG\r\n".to_vec(),
            ("REPLCONF", "ACK") => continue,
            ("REPLCONF", _) | ("AUTH", _) => b"+OK\r\n".to_vec(),
            ("PSYNC", _) | ("SYNC", _) => {
                syncs.fetch_add(1, Ordering::Relaxed);
                let mut r =
                    format!("+FULLRESYNC {REPLID} {OFFSET}\r\n${}\r\n", rdb.len()).into_bytes();
                r.extend_from_slice(rdb);
                r
            }
            _ => format!("-ERR unknown command '{name}'\r\n").into_bytes(),
        };
        if sock.write_all(&reply).is_err() {
            return;
        }
    }
}

/// An RDB string (length-prefixed, short).
fn s(b: &[u8]) -> Vec<u8> {
    assert!(b.len() < 64);
    let mut v = vec![b.len() as u8];
    v.extend_from_slice(b);
    v
}

/// A module type id for `name` (9 characters) and encoding version `ver`, as
/// `moduleTypeEncodeId` (module.c) makes it: 9 × 6 bits of name above a 10-bit version.
pub fn module_id(name: &str, ver: u64) -> u64 {
    const CSET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    assert_eq!(name.len(), 9, "module type names have 9 characters");
    let mut id = 0u64;
    for ch in name.bytes() {
        let i = CSET
            .iter()
            .position(|&c| c == ch)
            .expect("a module name character");
        id = id << 6 | i as u64;
    }
    id << 10 | ver
}

/// An RDB 10 (Redis 7.0) of database 0: string `before` = "1", then `key` of module type
/// `module` (`RDB_TYPE_MODULE_2`: the id as a 64-bit length, one string opcode, EOF), then
/// string `after` = "2"; the CRC-64 trailer.
pub fn rdb_with_module_key(key: &str, module: &str) -> Vec<u8> {
    let mut v = b"REDIS0010".to_vec();
    v.push(0xfa); // AUX
    v.extend(s(b"redis-ver"));
    v.extend(s(b"7.0.15"));
    v.extend([0xfe, 0x00]); // SELECTDB 0
    v.extend([0xfb, 0x03, 0x00]); // RESIZEDB 3 keys, 0 with expiry
    v.push(0x00); // string
    v.extend(s(b"before"));
    v.extend(s(b"1"));
    v.push(0x07); // RDB_TYPE_MODULE_2
    v.extend(s(key.as_bytes()));
    v.push(0x81); // RDB_64BITLEN, then the id big-endian
    v.extend(module_id(module, 3).to_be_bytes());
    v.push(0x05); // RDB_MODULE_OPCODE_STRING
    v.extend(s(b"{\"a\":1}"));
    v.push(0x00); // RDB_MODULE_OPCODE_EOF
    v.push(0x00);
    v.extend(s(b"after"));
    v.extend(s(b"2"));
    v.push(0xff);
    let mut crc = georelay::rdb::Crc64::new();
    crc.update(&v);
    v.extend_from_slice(&crc.finish().to_le_bytes());
    v
}
