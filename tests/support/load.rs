//! Bounded write loads for tests: a mixed-type workload (strings, hashes, lists, sets, zsets,
//! streams, expiring keys, several DBs), pipelined in batches.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use georelay::resp;

/// One command of the mixed workload for key number `i`.
pub fn mixed_command(i: u64, tag: &str) -> Vec<Vec<u8>> {
    let key = format!("{tag}:{i}");
    let val = format!("v{}-{}", i, i.wrapping_mul(2654435761) % 100_000);
    let parts: Vec<String> = match i % 8 {
        0 => vec!["SET".into(), key, val],
        1 => vec![
            "HSET".into(),
            format!("h:{tag}:{}", i % 5000),
            format!("f{i}"),
            val,
        ],
        2 => vec!["RPUSH".into(), format!("l:{tag}:{}", i % 2000), val],
        3 => vec!["SADD".into(), format!("s:{tag}:{}", i % 3000), val],
        4 => vec![
            "ZADD".into(),
            format!("z:{tag}:{}", i % 3000),
            (i % 977).to_string(),
            val,
        ],
        5 => vec![
            "XADD".into(),
            format!("x:{tag}:{}", i % 500),
            "*".into(),
            "f".into(),
            val,
        ],
        6 => vec!["SET".into(), key, val, "EX".into(), "36000".into()],
        _ => vec![
            "INCRBY".into(),
            format!("c:{tag}:{}", i % 1000),
            (i % 7 + 1).to_string(),
        ],
    };
    parts.into_iter().map(String::into_bytes).collect()
}

/// Writes keys `from..to` of the mixed workload to the server on `port`, spreading batches
/// over databases 0..4, pipelining `batch` commands at a time. Returns the number written.
pub fn write_mixed(port: u16, from: u64, to: u64, tag: &str) -> u64 {
    let mut sock = TcpStream::connect(("127.0.0.1", port)).expect("connect for load");
    sock.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let batch = 1000u64;
    let mut i = from;
    while i < to {
        let end = (i + batch).min(to);
        let db = ((i / batch) % 4).to_string();
        let mut out = resp::command(&[b"SELECT", db.as_bytes()]).to_vec();
        for k in i..end {
            let cmd = mixed_command(k, tag);
            let args: Vec<&[u8]> = cmd.iter().map(|a| a.as_slice()).collect();
            out.extend_from_slice(&resp::command(&args));
        }
        sock.write_all(&out).expect("write load");
        read_replies(&mut sock, (end - i + 1) as usize);
        i = end;
    }
    to - from
}

/// Trims the lists and streams of the mixed workload's `tag` in every database it uses (to 100
/// elements each), so a long-running load keeps a bounded dataset. Returns the commands sent.
#[allow(dead_code)]
pub fn trim_mixed(port: u16, tag: &str) -> u64 {
    let mut sock = TcpStream::connect(("127.0.0.1", port)).expect("connect for trim");
    sock.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let mut sent = 0u64;
    for db in 0..4u8 {
        let db = db.to_string();
        let mut out = resp::command(&[b"SELECT", db.as_bytes()]).to_vec();
        for k in 0..2000 {
            let key = format!("l:{tag}:{k}");
            out.extend_from_slice(&resp::command(&[b"LTRIM", key.as_bytes(), b"-100", b"-1"]));
        }
        for k in 0..500 {
            let key = format!("x:{tag}:{k}");
            out.extend_from_slice(&resp::command(&[
                b"XTRIM",
                key.as_bytes(),
                b"MAXLEN",
                b"100",
            ]));
        }
        sock.write_all(&out).expect("write trim");
        read_replies(&mut sock, 1 + 2000 + 500);
        sent += 1 + 2000 + 500;
    }
    sent
}

/// Writes `count` SETs of `value_size` bytes with keys `tag:N` to db 0, pipelined.
pub fn write_sets(port: u16, count: u64, value_size: usize, tag: &str) {
    let mut sock = TcpStream::connect(("127.0.0.1", port)).expect("connect for load");
    sock.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let value = vec![b'x'; value_size];
    let mut i = 0;
    while i < count {
        let end = (i + 500).min(count);
        let mut out = Vec::new();
        for k in i..end {
            let key = format!("{tag}:{k}");
            out.extend_from_slice(&resp::command(&[b"SET", key.as_bytes(), &value]));
        }
        sock.write_all(&out).expect("write load");
        read_replies(&mut sock, (end - i) as usize);
        i = end;
    }
}

/// Reads `n` replies, failing on any error reply.
fn read_replies(sock: &mut TcpStream, n: usize) {
    let mut buf = bytes::BytesMut::new();
    let limits = resp::Limits::default();
    let mut got = 0;
    while got < n {
        match resp::parse_frame(&mut buf, &limits).expect("parse reply") {
            Some(resp::Frame::Error(e)) => panic!("load command failed: {e}"),
            Some(_) => got += 1,
            None => {
                let mut tmp = [0u8; 64 * 1024];
                let r = sock.read(&mut tmp).expect("read replies");
                assert!(r > 0, "server closed the load connection");
                buf.extend_from_slice(&tmp[..r]);
            }
        }
    }
}
