//! Builds the seed corpus of every fuzz target from real traffic (run by `fuzz/make-corpus.sh`).
//!
//! `make_corpus free-port` prints a free loopback TCP port.
//! `make_corpus capture <redis-port> <segments-dir> <repo-root> <corpus-dir>` talks to a running
//! redis-server over raw sockets as replicas and as a client, records the bytes, reads the log
//! records a running `georelay run` wrote to `<segments-dir>`, and writes
//! `<corpus-dir>/<target>/seed-*` files.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow_free::{bail, Result};
use bytes::{Bytes, BytesMut};
use georelay::link::{self, frame::Frame, Compression};
use georelay::log::record::{self, Decoded};
use georelay::rdb::{self, TransferHeader};
use georelay::resp::{self, Limits, StreamScanner};

/// A tiny error type, so the tool needs no extra dependency.
mod anyhow_free {
    pub type Result<T> = std::result::Result<T, String>;
    macro_rules! bail {
        ($($t:tt)*) => { return Err(format!($($t)*)) };
    }
    pub(crate) use bail;
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["free-port"] => free_port().map(|p| println!("{p}")),
        ["capture", port, segments, repo, out] => match port.parse::<u16>() {
            Ok(port) => capture(port, Path::new(segments), Path::new(repo), Path::new(out)),
            Err(e) => Err(format!("bad port {port:?}: {e}")),
        },
        _ => Err("usage: make_corpus free-port | capture <redis-port> <segments-dir> <repo-root> <corpus-dir>".into()),
    };
    if let Err(e) = result {
        eprintln!("make_corpus: {e}");
        std::process::exit(1);
    }
}

fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

/// Seed files per target, by name.
#[derive(Default)]
struct Corpus(BTreeMap<(&'static str, String), Vec<u8>>);

impl Corpus {
    fn add(&mut self, target: &'static str, name: impl Into<String>, data: &[u8]) {
        if !data.is_empty() {
            self.0.insert((target, name.into()), data.to_vec());
        }
    }

    fn write(&self, out: &Path) -> Result<()> {
        for ((target, name), data) in &self.0 {
            let dir = out.join(target);
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            let path = dir.join(format!("seed-{name}"));
            std::fs::write(&path, data).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        Ok(())
    }
}

/// A raw connection that keeps what it has read but not yet used.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Every chunk `read` returned, in order.
    chunks: Vec<Vec<u8>>,
    /// Every byte sent.
    sent: Vec<u8>,
}

impl Conn {
    fn connect(port: u16) -> Result<Conn> {
        let stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        Ok(Conn {
            stream,
            buf: Vec::new(),
            chunks: Vec::new(),
            sent: Vec::new(),
        })
    }

    fn send_raw(&mut self, bytes: &[u8]) -> Result<()> {
        self.sent.extend_from_slice(bytes);
        self.stream.write_all(bytes).map_err(|e| e.to_string())
    }

    fn send(&mut self, args: &[&str]) -> Result<()> {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.send_raw(&resp::command(&args))
    }

    /// Reads one chunk; `false` when nothing arrived within `wait`.
    fn fill(&mut self, wait: Duration) -> Result<bool> {
        self.stream
            .set_read_timeout(Some(wait))
            .map_err(|e| e.to_string())?;
        let mut tmp = vec![0u8; 64 * 1024];
        match self.stream.read(&mut tmp) {
            Ok(0) => bail!("connection closed"),
            Ok(n) => {
                self.buf.extend_from_slice(&tmp[..n]);
                self.chunks.push(tmp[..n].to_vec());
                Ok(true)
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Ok(false),
            Err(e) => bail!("read: {e}"),
        }
    }

    fn fill_or_fail(&mut self, deadline: Instant) -> Result<()> {
        if Instant::now() > deadline {
            bail!("timed out; have {:?}", String::from_utf8_lossy(&self.buf));
        }
        self.fill(Duration::from_millis(200)).map(|_| ())
    }

    /// One whole RESP reply, raw.
    fn frame(&mut self) -> Result<Vec<u8>> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match resp::check(&self.buf, &Limits::default()) {
                Ok(Some(n)) => return Ok(self.buf.drain(..n).collect()),
                Ok(None) => self.fill_or_fail(deadline)?,
                Err(e) => bail!("bad reply {e}: {:?}", String::from_utf8_lossy(&self.buf)),
            }
        }
    }

    /// One line, raw, with its terminator.
    fn line(&mut self) -> Result<Vec<u8>> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(nl) = self.buf.iter().position(|&b| b == b'\n') {
                return Ok(self.buf.drain(..=nl).collect());
            }
            self.fill_or_fail(deadline)?;
        }
    }

    fn exact(&mut self, n: usize) -> Result<Vec<u8>> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.buf.len() < n {
            self.fill_or_fail(deadline)?;
        }
        Ok(self.buf.drain(..n).collect())
    }

    fn until_suffix(&mut self, mark: &[u8]) -> Result<Vec<u8>> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.buf.ends_with(mark) {
            self.fill_or_fail(deadline)?;
        }
        Ok(std::mem::take(&mut self.buf))
    }

    /// Everything that arrives until `quiet` passes without a byte.
    fn drain(&mut self, quiet: Duration) -> Result<Vec<u8>> {
        while self.fill(quiet)? {}
        Ok(std::mem::take(&mut self.buf))
    }

    fn command(&mut self, args: &[&str]) -> Result<Vec<u8>> {
        self.send(args)?;
        self.frame()
    }
}

/// A replica's full sync: handshake replies, the `+FULLRESYNC` line, the transfer (header line
/// and payload), and the replid/offset.
struct Sync {
    conn: Conn,
    replies: Vec<Vec<u8>>,
    fullresync: Vec<u8>,
    transfer: Vec<u8>,
    rdb: Vec<u8>,
    replid: String,
    offset: u64,
}

fn full_sync(port: u16, listening_port: &str, eof: bool) -> Result<Sync> {
    let mut conn = Conn::connect(port)?;
    let mut replies = Vec::new();
    replies.push(conn.command(&["PING"])?);
    replies.push(conn.command(&["REPLCONF", "listening-port", listening_port])?);
    let capa: &[&str] = if eof {
        &["REPLCONF", "capa", "eof", "capa", "psync2"]
    } else {
        &["REPLCONF", "capa", "psync2"]
    };
    replies.push(conn.command(capa)?);
    conn.send(&["PSYNC", "?", "-1"])?;
    let fullresync = conn.line()?;
    let text = String::from_utf8_lossy(&fullresync).trim_end().to_string();
    let mut words = text.split(' ');
    let (Some("+FULLRESYNC"), Some(replid), Some(offset)) =
        (words.next(), words.next(), words.next())
    else {
        bail!("unexpected PSYNC reply {text:?}");
    };
    let replid = replid.to_string();
    let offset: u64 = offset
        .parse()
        .map_err(|e| format!("offset {offset:?}: {e}"))?;
    let mut transfer = Vec::new();
    let header = loop {
        let line = conn.line()?;
        transfer.extend_from_slice(&line);
        if line != b"\n" {
            break line;
        }
    };
    let header = header.strip_suffix(b"\n").unwrap_or(&header);
    let rdb = match rdb::parse_transfer_header(header).map_err(|e| e.to_string())? {
        TransferHeader::Len(n) => conn.exact(n as usize)?,
        TransferHeader::Eof(mark) => {
            let mut body = conn.until_suffix(&mark)?;
            transfer.extend_from_slice(&body);
            body.truncate(body.len() - mark.len());
            return Ok(Sync {
                conn,
                replies,
                fullresync,
                transfer,
                rdb: body,
                replid,
                offset,
            });
        }
    };
    transfer.extend_from_slice(&rdb);
    Ok(Sync {
        conn,
        replies,
        fullresync,
        transfer,
        rdb,
        replid,
        offset,
    })
}

/// Writes of many kinds, so the stream and the RDB carry every common encoding.
const WRITES: &[&[&str]] = &[
    &["SET", "greeting", "hello world"],
    &["SET", "counter", "41"],
    &["INCR", "counter"],
    &["SET", "session:7", "x", "EX", "3600"],
    &["SET", "bin", "line1\r\nline2\r\n*3\r\n$3\r\nnot a command"],
    &["LPUSH", "queue", "a", "b", "c", "12345", "-7"],
    &["RPOP", "queue"],
    &["HSET", "user:1", "name", "Ada", "age", "36", "lang", "fr"],
    &["SADD", "ids", "1", "2", "3", "500"],
    &["SADD", "tags", "red", "green", "blue"],
    &[
        "ZADD", "board", "1.5", "alice", "2", "bob", "-3.25", "carol",
    ],
    &["EXPIRE", "greeting", "86400"],
    &["SELECT", "3"],
    &["SET", "db3key", "in db 3"],
    &["SELECT", "0"],
    &["MULTI"],
    &["INCRBY", "counter", "100"],
    &["DEL", "session:7"],
    &["EXEC"],
    &[
        "EVAL",
        "redis.call('set', KEYS[1], ARGV[1]) return 1",
        "1",
        "lua:key",
        "lua value",
    ],
    &["XADD", "events", "*", "kind", "login", "user", "ada"],
    &["SETRANGE", "greeting", "6", "there"],
    &["APPEND", "bin", "+more"],
    &["PEXPIREAT", "bin", "4102444800000"],
];

fn capture(port: u16, segments: &Path, repo: &Path, out: &Path) -> Result<()> {
    let mut c = Corpus::default();

    // Replica A: diskless ($EOF:) full sync of the nearly empty dataset, then the stream.
    let mut a = full_sync(port, "6399", true)?;
    let ack = format!("{}", a.offset);
    a.conn.send(&["REPLCONF", "ACK", &ack])?;

    // A client writes; replica A reads the stream and answers GETACKs so WAIT returns.
    let mut client = Conn::connect(port)?;
    let mut resp2 = Vec::new();
    let big = "v".repeat(3000);
    let mut stream = Vec::new();
    let mut scanner = StreamScanner::new();
    let mut writes: Vec<Vec<&str>> = WRITES.iter().map(|w| w.to_vec()).collect();
    writes.insert(6, vec!["SET", "big", &big]);
    for (i, w) in writes.iter().enumerate() {
        resp2.push(client.command(w)?);
        if i % 5 == 4 {
            // Like a real replica: ACK what it has (the first ACK also starts the stream).
            let acked = format!("{}", a.offset + stream.len() as u64);
            a.conn.send(&["REPLCONF", "ACK", &acked])?;
            resp2.push(client.command(&["WAIT", "1", "300"])?);
            let got = a.conn.drain(Duration::from_millis(150))?;
            let found = scanner.feed(&got).map_err(|e| e.to_string())?;
            stream.extend_from_slice(&got);
            if found.getack.is_some() {
                let acked = format!("{}", a.offset + stream.len() as u64);
                a.conn.send(&["REPLCONF", "ACK", &acked])?;
            }
        }
    }
    // The master's own PINGs (repl-ping-replica-period 1).
    std::thread::sleep(Duration::from_millis(1200));
    stream.extend_from_slice(&a.conn.drain(Duration::from_millis(300))?);
    // The stream chunks exactly as they were read (after the transfer).
    let stream_chunks: Vec<Vec<u8>> = {
        let mut skip =
            a.replies.iter().map(Vec::len).sum::<usize>() + a.fullresync.len() + a.transfer.len();
        let mut out = Vec::new();
        for chunk in &a.conn.chunks {
            if skip >= chunk.len() {
                skip -= chunk.len();
                continue;
            }
            out.push(chunk[skip..].to_vec());
            skip = 0;
        }
        out
    };
    // Error replies and RESP3 replies, on the same client.
    for cmd in [
        &["GET", "missing"][..],
        &["INCR", "greeting"],
        &["LPUSH", "greeting", "x"],
        &["NOSUCHCOMMAND", "arg"],
        &["REPLCONF", "nonsense", "1"],
        &["MGET", "counter", "missing", "db3key"],
        &["LRANGE", "queue", "0", "-1"],
        &["XRANGE", "events", "-", "+"],
        &["ZRANGE", "board", "0", "-1", "WITHSCORES"],
    ] {
        resp2.push(client.command(cmd)?);
    }
    let mut resp3 = Vec::new();
    for cmd in [
        &["HELLO", "3"][..],
        &["HGETALL", "user:1"],
        &["SMEMBERS", "tags"],
        &["ZSCORE", "board", "alice"],
        &["ZRANGE", "board", "0", "-1", "WITHSCORES"],
        &["GET", "missing"],
        &["EVAL", "return true", "0"],
        &["EVAL", "redis.setresp(3) return {double=3.14}", "0"],
        &[
            "EVAL",
            "redis.setresp(3) return {big_number='123456789012345678901234567890'}",
            "0",
        ],
        &["CONFIG", "GET", "repl-*"],
        &["CLIENT", "INFO"],
        &["XINFO", "STREAM", "events"],
        &["CLIENT", "TRACKING", "on"],
        &["GET", "counter"],
    ] {
        resp3.push(client.command(cmd)?);
    }
    // An invalidation push, caused by another client's write.
    let mut other = Conn::connect(port)?;
    other.command(&["SET", "counter", "0"])?;
    resp3.push(client.frame()?);

    // Replica B: disk-based ($len) full sync of the populated dataset.
    let b = full_sync(port, "6398", false)?;
    // Replica C: a partial resync joined in the middle of a command.
    let mut cont = Conn::connect(port)?;
    cont.command(&["REPLCONF", "capa", "eof", "capa", "psync2"])?;
    let from = format!("{}", a.offset + 1 + 7);
    cont.send(&["PSYNC", &a.replid, &from])?;
    let continued = cont.drain(Duration::from_millis(400))?;
    // A real error line where a transfer header is expected.
    let mut bad = Conn::connect(port)?;
    let psync_error = bad.command(&["PSYNC"])?;

    // --- resp_frame: every reply, one frame per file, and the sequences.
    for (i, r) in a.replies.iter().chain(&b.replies).enumerate() {
        c.add("resp_frame", format!("handshake-{i}"), r);
    }
    c.add("resp_frame", "fullresync", &a.fullresync);
    c.add("resp_frame", "psync-error", &psync_error);
    for (i, r) in resp2.iter().enumerate() {
        c.add("resp_frame", format!("resp2-{i:02}"), r);
    }
    for (i, r) in resp3.iter().enumerate() {
        c.add("resp_frame", format!("resp3-{i:02}"), r);
    }
    c.add("resp_frame", "resp2-all", &resp2.concat());
    c.add("resp_frame", "resp3-all", &resp3.concat());
    c.add("resp_frame", "stream", &stream);

    // --- resp_command: what replicas and clients sent, and inline forms.
    c.add("resp_command", "replica-a", &a.conn.sent);
    c.add("resp_command", "replica-b", &b.conn.sent);
    c.add("resp_command", "client", &client.sent);
    c.add("resp_command", "stream", &stream);
    c.add(
        "resp_command",
        "inline",
        b"PING\r\nSYNC\r\n\n\r\n  REPLCONF  ack 1234\t\r\nPING\n",
    );
    for (i, cmd) in split_commands(&a.conn.sent).iter().enumerate() {
        c.add("resp_command", format!("replica-a-{i}"), cmd);
    }

    // --- stream_scanner: the chunks as read, the whole stream, and a join mid-command.
    for (i, chunk) in stream_chunks.iter().enumerate().take(40) {
        c.add("stream_scanner", format!("chunk-{i:02}"), chunk);
    }
    c.add("stream_scanner", "stream", &stream);
    c.add("stream_scanner", "continue", &continued);
    if let Some(nl) = continued.iter().position(|&b| b == b'\n') {
        c.add("stream_scanner", "joined-mid-command", &continued[nl + 1..]);
    }
    let mut b_stream = b.conn.buf.clone();
    b_stream.extend_from_slice(&stream);
    c.add("stream_scanner", "replica-b-tail", &b_stream);

    // --- rdb_transfer: both transfer kinds, the bare RDBs, and an error line.
    c.add("rdb_transfer", "eof-transfer", &a.transfer);
    c.add("rdb_transfer", "len-transfer", &b.transfer);
    c.add("rdb_transfer", "rdb-empty", &a.rdb);
    c.add("rdb_transfer", "rdb-full", &b.rdb);
    c.add("rdb_transfer", "psync-error", &psync_error);
    let mut after_fullresync = b.fullresync.clone();
    after_fullresync.extend_from_slice(&b.transfer);
    c.add("rdb_transfer", "fullresync-and-transfer", &after_fullresync);

    // --- link_frame: every variant, with contents from this capture.
    let frames = link_frames(&a, &b, &stream)?;
    let mut session = BytesMut::new();
    for (name, f) in &frames {
        let mut one = BytesMut::new();
        link::encode(f, &mut one);
        c.add("link_frame", name.clone(), &one);
        link::encode(f, &mut session);
    }
    c.add("link_frame", "session", &session);

    // --- log_record: records the agent wrote.
    log_records(segments, &mut c)?;

    // --- config: the examples, and broken ones.
    for name in ["site-a", "region-b"] {
        let path = repo.join("deploy/examples").join(format!("{name}.toml"));
        let text = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        c.add("config", format!("example-{name}"), &text);
    }
    for (name, text) in BROKEN_CONFIGS {
        c.add("config", *name, text.as_bytes());
    }

    c.write(out)?;
    eprintln!(
        "make_corpus: {} seed files from replid {} (stream {} bytes, RDB {} bytes)",
        c.0.len(),
        a.replid,
        stream.len(),
        b.rdb.len()
    );
    Ok(())
}

/// Splits a byte string of concatenated commands into one slice per command.
fn split_commands(data: &[u8]) -> Vec<Vec<u8>> {
    let mut buf = BytesMut::from(data);
    let mut out = Vec::new();
    let mut pos = 0;
    while let Ok(Some(_)) = resp::parse_command(&mut buf, &Limits::default()) {
        let end = data.len() - buf.len();
        out.push(data[pos..end].to_vec());
        pos = end;
    }
    out
}

fn link_frames(a: &Sync, b: &Sync, stream: &[u8]) -> Result<Vec<(String, Frame)>> {
    let now = 1_767_225_600_000_000u64;
    let head = b.offset + stream.len() as u64;
    let chunk = |n: usize| Bytes::copy_from_slice(&b.rdb[..n.min(b.rdb.len())]);
    let stream_bytes = Bytes::copy_from_slice(stream);
    let zstd = link::log_frame(
        a.offset + 1,
        now,
        stream_bytes.clone(),
        Compression::Zstd,
        3,
    )
    .map_err(|e| e.to_string())?;
    let mut frames = vec![
        (
            "hello-empty".into(),
            Frame::Hello {
                version: link::PROTOCOL_VERSION,
                name: "region-b".into(),
                replid: None,
                next_offset: 0,
                partial: None,
                lane: None,
            },
        ),
        (
            "hello".into(),
            Frame::Hello {
                version: link::PROTOCOL_VERSION,
                name: "region-c".into(),
                replid: Some(a.replid.clone()),
                next_offset: a.offset + 1,
                partial: None,
                lane: None,
            },
        ),
        (
            "hello-partial".into(),
            Frame::Hello {
                version: link::PROTOCOL_VERSION,
                name: "region-d".into(),
                replid: None,
                next_offset: 0,
                partial: Some(link::PartialSnapshot {
                    replid: a.replid.clone(),
                    offset: a.offset,
                    size: 1 << 20,
                    have: 65536,
                }),
                lane: None,
            },
        ),
        ("snapshot-from".into(), Frame::SnapshotFrom { from: 65536 }),
        (
            "continue".into(),
            Frame::Continue {
                replid: a.replid.clone(),
                offset: a.offset + 1,
            },
        ),
        (
            "full".into(),
            Frame::Full {
                replid: b.replid.clone(),
                offset: b.offset,
                rdb_version: 10,
                size: b.rdb.len() as u64,
                reason: "first_sync".into(),
            },
        ),
        (
            "snapshot-chunk".into(),
            Frame::SnapshotChunk { data: chunk(2048) },
        ),
        ("snapshot-end".into(), Frame::SnapshotEnd),
        (
            "log".into(),
            Frame::log(
                a.offset + 1,
                now,
                stream_bytes.slice(..stream.len().min(1500)),
            ),
        ),
        ("log-zstd".into(), zstd),
        (
            "heartbeat".into(),
            Frame::Heartbeat {
                head,
                head_timestamp_us: now,
                now_us: now + 1_250,
            },
        ),
        ("ack".into(), Frame::Ack { durable: head }),
        (
            "replid-switch".into(),
            Frame::ReplidSwitch {
                replid: b.replid.chars().rev().collect(),
                start: head + 1,
            },
        ),
        (
            "new-epoch".into(),
            Frame::NewEpoch {
                reason: "new_epoch".into(),
            },
        ),
        (
            "error".into(),
            Frame::Error {
                code: 2,
                message: "offset 123 is before the log start 456".into(),
            },
        ),
    ];
    // Log frames cut where the stream chunks were read.
    let mut off = a.offset + 1;
    for (i, piece) in stream.chunks(700).enumerate().take(3) {
        frames.push((
            format!("log-{i}"),
            Frame::log(off, now + i as u64, Bytes::copy_from_slice(piece)),
        ));
        off += piece.len() as u64;
    }
    Ok(frames)
}

fn log_records(segments: &Path, c: &mut Corpus) -> Result<()> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(segments)
        .map_err(|e| format!("{}: {e}", segments.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    files.sort();
    let mut n = 0;
    for file in &files {
        let data = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
        let mut pos = 0;
        let mut first_three = 0;
        let mut records = 0;
        while let Decoded::Complete { total, .. } = record::decode(&data[pos..]) {
            if n < 30 && total <= 16 * 1024 {
                c.add(
                    "log_record",
                    format!("record-{n:02}"),
                    &data[pos..pos + total],
                );
                n += 1;
            }
            records += 1;
            if records <= 3 {
                first_three = pos + total;
            }
            pos += total;
        }
        c.add(
            "log_record",
            "first-records",
            &data[..first_three.min(32 * 1024)],
        );
        if first_three > 5 {
            c.add("log_record", "torn", &data[..first_three - 5]);
        }
    }
    if n == 0 {
        bail!("no log records in {}", segments.display());
    }
    Ok(())
}

const BROKEN_CONFIGS: &[(&str, &str)] = &[
    ("empty", "\n"),
    ("minimal", "data_dir = \"data\"\n[upstream]\nredis = \"127.0.0.1:6379\"\n"),
    (
        "bad-units",
        "data_dir = \"d\"\n[upstream]\nredis = \"h:1\"\n[log]\nmax_bytes = \"10 parsecs\"\nmax_age = \"1h30x\"\nsegment_bytes = \"1KiB\"\nfsync = \"sometimes\"\n",
    ),
    (
        "both-upstreams",
        "data_dir = \"d\"\n[upstream]\nredis = \"h:1\"\nagent = \"h:2\"\npassword = \"p\"\npassword_file = \"pw\"\nack = \"remote\"\n",
    ),
    ("unknown-key", "data_dir = \"d\"\ncolour = \"blue\"\n[upstream]\nredis = \"h:1\"\n"),
    ("syntax", "data_dir = \"d\n[upstream\nredis = 6379\n"),
    (
        "listen-and-serve",
        "name = \"bad name!\"\ndata_dir = \"d\"\n[upstream]\nredis = \"h:1\"\n[listen]\nredis = \"localhost:6380\"\nadmin = \"[::1]:9187\"\n[serve]\ntimeout = \"500ms\"\nmax_replicas = 0\nrequirepass = \"\"\n",
    ),
    (
        "link",
        "data_dir = \"d\"\n[upstream]\nagent = \"[::1]:7443\"\n[tls]\nca = \"ca.pem\"\ncert = \"n.pem\"\nkey = \"n.key\"\n[link]\ncompression = \"lz4\"\nmax_bandwidth = \"200Mbit\"\ncongestion = \"bbr\"\n",
    ),
    (
        "huge-numbers",
        "data_dir = \"d\"\n[upstream]\nredis = \"h:1\"\n[log]\nmax_bytes = \"99999999999999TiB\"\nmax_age = \"5w2d\"\n[serve]\ntimeout = \"1.5s\"\n",
    ),
];
