//! Test helpers: real redis-server processes and georelay agents on free loopback ports, a
//! small blocking RESP client, metrics scraping, and waiting on conditions with deadlines.
#![allow(dead_code)]

pub mod devkit;
pub mod load;
pub mod logfiles;
pub mod prom;
pub mod servers;

pub use devkit::{free_port, free_udp_port, http_get, metric_value, scrape, MetricsError};
pub use servers::ServerKind;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use georelay::resp::{self, Frame, Limits};

/// A test PKI: a CA and a certificate per node in a temp dir.
pub struct Pki {
    pub dir: tempfile::TempDir,
}

impl Pki {
    pub fn new(nodes: &[&str]) -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        georelay::link::certs::make_test_pki(dir.path(), nodes).expect("make test PKI");
        Pki { dir }
    }

    /// The `[tls]` section for `node`.
    pub fn tls_section(&self, node: &str, server_name: Option<&str>) -> String {
        let d = self.dir.path().display();
        let mut s = format!(
            "[tls]\nca = \"{d}/ca.pem\"\ncert = \"{d}/{node}.pem\"\nkey = \"{d}/{node}.key\"\n"
        );
        if let Some(n) = server_name {
            s.push_str(&format!("server_name = \"{n}\"\n"));
        }
        s
    }
}

/// Config of an agent whose upstream is another agent at `upstream` (QUIC).
pub fn agent_config_from_agent(name: &str, upstream: &str, extra: &str) -> String {
    format!(
        "name = \"{name}\"\ndata_dir = \"{{data_dir}}\"\n[upstream]\nagent = \"{upstream}\"\n\
         [listen]\nredis = \"127.0.0.1:{{redis_port}}\"\nadmin = \"127.0.0.1:{{admin_port}}\"\n{extra}"
    )
}

/// Polls `cond` until it returns true, failing with `what` after `limit`.
pub fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > limit {
            panic!("timed out after {limit:?} waiting for: {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A real server process (Redis or Valkey), killed on drop.
pub struct Redis {
    pub port: u16,
    pub kind: ServerKind,
    pub dir: tempfile::TempDir,
    child: Child,
}

impl Redis {
    /// A Redis 7.0 server (the default kind; `$REDIS_SERVER` or `redis-server` on PATH).
    pub fn start(extra: &[&str]) -> Redis {
        Self::start_on(free_port(), extra)
    }

    /// Starts on a given port (to restart a server where its clients expect it).
    pub fn start_on(port: u16, extra: &[&str]) -> Redis {
        Self::spawn(
            ServerKind::Redis70,
            ServerKind::Redis70.binary(),
            port,
            extra,
        )
    }

    /// A server of `kind` (its binary checked to be that release).
    pub fn start_kind(kind: ServerKind, extra: &[&str]) -> Redis {
        Self::start_kind_on(kind, free_port(), extra)
    }

    pub fn start_kind_on(kind: ServerKind, port: u16, extra: &[&str]) -> Redis {
        Self::spawn(kind, kind.checked_binary(), port, extra)
    }

    fn spawn(kind: ServerKind, binary: String, port: u16, extra: &[&str]) -> Redis {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut args: Vec<String> = [
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--repl-diskless-sync-delay",
            "0",
            "--daemonize",
            "no",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(kind.quirk_args().iter().map(|s| s.to_string()));
        args.push("--dir".into());
        args.push(dir.path().display().to_string());
        args.push("--logfile".into());
        args.push(dir.path().join("redis.log").display().to_string());
        args.extend(extra.iter().map(|s| s.to_string()));
        let child = Command::new(&binary)
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {} ({binary}): {e}", kind.name()));
        let mut r = Redis {
            port,
            kind,
            dir,
            child,
        };
        let start = Instant::now();
        let answers =
            || Client::try_connect(port).is_some_and(|mut c| c.try_cmd(&["PING"]).is_ok());
        while !answers() {
            if let Ok(Some(status)) = r.child.try_wait() {
                panic!(
                    "{} ({binary}) exited with {status}; log:\n{}",
                    kind.name(),
                    std::fs::read_to_string(r.dir.path().join("redis.log")).unwrap_or_default()
                );
            }
            if start.elapsed() > Duration::from_secs(10) {
                panic!("{} on port {port} never answered PING", kind.name());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        r
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn client(&self) -> Client {
        Client::connect(self.port)
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// `INFO` field value, e.g. `info_field("stats", "sync_full")`.
    pub fn info_field(&self, section: &str, field: &str) -> String {
        info_field(&mut self.client(), section, field)
    }

    pub fn digest(&self) -> String {
        self.client().cmd_str(&["DEBUG", "DIGEST"])
    }

    /// The server's log; an unreadable log fails the test (absence checks rely on it).
    pub fn log_text(&self) -> String {
        let path = self.dir.path().join("redis.log");
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

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

/// A georelay agent process with its own data dir and ports.
pub struct Agent {
    pub redis_port: u16,
    pub admin_port: u16,
    pub data_dir: PathBuf,
    pub config_path: PathBuf,
    pub work: tempfile::TempDir,
    child: Option<Child>,
    pub starts: u32,
    /// Extra environment for the process (cleared with `clear_env`).
    env: Vec<(String, String)>,
}

/// The agent's config body after the listen section; `{data_dir}`, `{redis_port}`,
/// `{admin_port}` are filled in.
pub fn agent_config(upstream: &str, extra: &str) -> String {
    format!(
        "name = \"test-agent\"\ndata_dir = \"{{data_dir}}\"\n[upstream]\nredis = \"{upstream}\"\n\
         [listen]\nredis = \"127.0.0.1:{{redis_port}}\"\nadmin = \"127.0.0.1:{{admin_port}}\"\n{extra}"
    )
}

impl Agent {
    /// Starts an agent with `config` (see [`agent_config`]) and waits for its admin port.
    pub fn start(config: &str) -> Agent {
        Agent::start_inner(config, Vec::new())
    }

    fn start_inner(config: &str, env: Vec<(String, String)>) -> Agent {
        let work = tempfile::tempdir().expect("tempdir");
        let data_dir = work.path().join("data");
        let mut a = Agent {
            redis_port: free_port(),
            admin_port: free_port(),
            data_dir,
            config_path: work.path().join("georelay.toml"),
            work,
            child: None,
            starts: 0,
            env,
        };
        let text = config
            .replace("{data_dir}", &a.data_dir.display().to_string())
            .replace("{redis_port}", &a.redis_port.to_string())
            .replace("{admin_port}", &a.admin_port.to_string());
        std::fs::write(&a.config_path, text).expect("write config");
        a.restart();
        a
    }

    /// Starts an agent with extra environment variables (e.g. `GEORELAY_FAILPOINTS`).
    pub fn start_env(config: &str, env: &[(&str, &str)]) -> Agent {
        Agent::start_inner(
            config,
            env.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Drops the extra environment for later restarts.
    pub fn clear_env(&mut self) {
        self.env.clear();
    }

    pub fn spawn_raw(config_path: &Path, log_path: &Path) -> Child {
        Self::spawn_env(config_path, log_path, &[])
    }

    fn spawn_env(config_path: &Path, log_path: &Path, env: &[(String, String)]) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)
            .expect("agent log file");
        Command::new(env!("CARGO_BIN_EXE_georelay"))
            .args(["run", "--config"])
            .arg(config_path)
            .env(
                "RUST_LOG",
                std::env::var("GEORELAY_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn georelay")
    }

    pub fn log_path(&self) -> PathBuf {
        self.work.path().join("agent.log")
    }

    /// (Re)starts the process on the same data dir and waits until /healthz answers. A process
    /// still running is killed first (callers stop it the way they want before).
    pub fn restart(&mut self) {
        self.kill9();
        self.starts += 1;
        let child = Self::spawn_env(&self.config_path, &self.log_path(), &self.env);
        self.child = Some(child);
        let port = self.admin_port;
        let log = self.log_path();
        wait_until(Duration::from_secs(20), "agent /healthz answers", || {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    panic!(
                        "agent exited early with {status}; log:\n{}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    );
                }
            }
            http_get(port, "/healthz").is_some_and(|(code, _)| code == 200)
        });
    }

    /// Rewrites `upstream.redis` in the config file (takes effect on the next restart).
    pub fn set_upstream(&self, addr: &str) {
        let text = std::fs::read_to_string(&self.config_path).expect("read config");
        let mut out = String::new();
        let mut section = String::new();
        for line in text.lines() {
            if line.starts_with('[') {
                section = line.to_string();
            }
            if section == "[upstream]" && line.starts_with("redis = ") {
                out.push_str(&format!("redis = \"{addr}\"\n"));
            } else {
                out.push_str(line);
                out.push('\n');
            }
        }
        std::fs::write(&self.config_path, out).expect("write config");
    }

    /// The running process's pid.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Peak resident memory (VmHWM, KiB) of the running process.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        self.signal("-TERM")
    }

    /// Sends SIGINT (Ctrl-C) and waits for the exit status.
    pub fn interrupt(&mut self) -> Option<std::process::ExitStatus> {
        self.signal("-INT")
    }

    fn signal(&mut self, sig: &str) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        let _ = Command::new("kill")
            .args([sig, &c.id().to_string()])
            .status();
        c.wait().ok()
    }

    /// The agent's log; an unreadable log fails the test (absence checks rely on it).
    pub fn log_text(&self) -> String {
        let path = self.log_path();
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
    }

    /// The `/metrics` text, or why it could not be scraped.
    pub fn try_metrics(&self) -> Result<String, MetricsError> {
        scrape(self.admin_port)
    }

    /// The `/metrics` text; a failed scrape fails the test.
    pub fn metrics(&self) -> String {
        self.try_metrics().unwrap_or_else(|e| panic!("{e}"))
    }

    /// Sum of the samples of `name` whose labels contain every `k="v"` in `labels`, or an
    /// error when the scrape fails or the agent exports no family `name`.
    pub fn try_metric(&self, name: &str, labels: &[(&str, &str)]) -> Result<f64, MetricsError> {
        metric_value(&self.try_metrics()?, name, labels)
    }

    /// [`Agent::try_metric`]; an error fails the test (a dead agent or a renamed metric never
    /// reads as 0).
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.try_metric(name, labels)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Waits until `ok` holds for [`Agent::try_metric`]; a failed read counts as "not yet" and
    /// the last value or error is in the failure message.
    pub fn wait_metric(
        &self,
        name: &str,
        labels: &[(&str, &str)],
        limit: Duration,
        ok: impl Fn(f64) -> bool,
    ) -> f64 {
        let start = Instant::now();
        loop {
            let got = self.try_metric(name, labels);
            match got {
                Ok(v) if ok(v) => return v,
                _ if start.elapsed() > limit => {
                    panic!(
                        "timed out after {limit:?} waiting on {name}{labels:?}: last read {got:?}"
                    )
                }
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.redis_port)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!(
                "--- agent log ({}) ---\n{}",
                self.log_path().display(),
                tail(
                    &std::fs::read_to_string(self.log_path()).unwrap_or_default(),
                    60
                )
            );
        }
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A Redis 7.0 replica of `master_addr` (another process), with `masterauth` if given.
pub fn start_replica(master_addr: &str, extra: &[&str]) -> Redis {
    start_replica_kind(ServerKind::Redis70, master_addr, extra)
}

/// A replica of `kind` of `master_addr`; it saves the RDB to disk before loading it.
pub fn start_replica_kind(kind: ServerKind, master_addr: &str, extra: &[&str]) -> Redis {
    let (host, port) = master_addr.rsplit_once(':').expect("host:port");
    let mut args = vec![
        "--replicaof",
        host,
        port,
        "--repl-diskless-load",
        "disabled",
    ];
    args.extend_from_slice(extra);
    if kind == ServerKind::Redis70 {
        Redis::start(&args)
    } else {
        Redis::start_kind(kind, &args)
    }
}

/// Waits until every server's DEBUG DIGEST equals the master's, with a clear failure message.
pub fn wait_digests_equal(master: &Redis, replicas: &[&Redis], limit: Duration) {
    let start = Instant::now();
    // A replica busy loading a large RDB may not answer in time: that is "not yet", not a failure.
    let digest = |r: &Redis| {
        Client::try_connect(r.port)
            .and_then(|mut c| c.try_cmd(&["DEBUG", "DIGEST"]).ok())
            .map(|f| frame_text(&f))
            .unwrap_or_else(|| "(no answer)".into())
    };
    loop {
        let want = digest(master);
        let got: Vec<String> = replicas.iter().map(|r| digest(r)).collect();
        if want != "(no answer)" && got.iter().all(|g| *g == want) {
            return;
        }
        if start.elapsed() > limit {
            panic!("digests never converged within {limit:?}: master {want}, replicas {got:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A `georelay wan-sim` process between two agents; outages through its control file.
pub struct WanSimProc {
    pub port: u16,
    pub outage_file: PathBuf,
    _dir: tempfile::TempDir,
    child: Child,
}

impl WanSimProc {
    /// Relays UDP from a new loopback port to `forward_port` with the given impairment flags.
    pub fn start(forward_port: u16, flags: &[&str]) -> WanSimProc {
        Self::start_on(free_udp_port(), forward_port, flags)
    }

    /// Starts on a given UDP port (to change impairments while clients keep their address).
    pub fn start_on(port: u16, forward_port: u16, flags: &[&str]) -> WanSimProc {
        let dir = tempfile::tempdir().expect("tempdir");
        let outage_file = dir.path().join("outage");
        let log = std::fs::File::create(dir.path().join("wansim.log")).expect("wan-sim log");
        let child = Command::new(env!("CARGO_BIN_EXE_georelay"))
            .arg("wan-sim")
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--forward",
                &format!("127.0.0.1:{forward_port}"),
            ])
            .arg("--outage-file")
            .arg(&outage_file)
            .args(["--duration", "30m"])
            .args(flags)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn wan-sim");
        WanSimProc {
            port,
            outage_file,
            _dir: dir,
            child,
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn cut(&self) {
        std::fs::write(&self.outage_file, b"cut").expect("create outage file");
    }

    pub fn restore(&self) {
        let _ = std::fs::remove_file(&self.outage_file);
    }
}

impl Drop for WanSimProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
