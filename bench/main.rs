//! georelay-bench: throughput, lag, cost and catch-up of georelay against direct and native
//! chained Redis replication, measured side by side in one run on loopback.
//!
//! `scripts/bench.sh` builds it and runs it; it writes `docs/BENCHMARKS.md` (the generated part,
//! above the `<!-- analysis -->` marker, which keeps the hand-written analysis below it) and
//! `docs/benchmarks.json`. Every scenario runs `--runs` times (default 3) and reports the
//! median with min and max. See `--help` for the sizes.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::{Bytes, BytesMut};
use clap::Parser;
use georelay::link::quic::{self, TransportSettings};
use georelay::link::tls::TlsFiles;
use georelay::resp::{self, Frame, Limits};
use rand::{Rng, RngCore, SeedableRng};
use serde::Serialize;

const MB: f64 = 1e6;
const GB: f64 = 1e9;
const MIB: u64 = 1 << 20;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "georelay-bench",
    about = "georelay benchmarks against direct and native chained Redis replication"
)]
struct Opts {
    /// Runs per scenario (medians with min and max are reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Comma-separated scenarios: steady,ceiling,catchup,fullsync,lossy,wanbytes (default: all).
    #[arg(long, default_value = "steady,ceiling,catchup,fullsync,lossy,wanbytes")]
    only: String,
    /// SETs per run of the 100-byte steady load.
    #[arg(long, default_value_t = 1_000_000)]
    n100: u64,
    /// SETs per run of the 1 KB steady load.
    #[arg(long, default_value_t = 300_000)]
    n1k: u64,
    /// Backlog sizes (MB of replication stream) for the relay-ceiling / memory scenario.
    #[arg(long, default_value = "1000,10000")]
    backlogs_mb: String,
    /// Backlog (MB) for the catch-up-to-the-far-replica scenario.
    #[arg(long, default_value_t = 2000)]
    catchup_mb: u64,
    /// Keys of the full-sync dataset (100-byte random values).
    #[arg(long, default_value_t = 1_000_000)]
    keys: u64,
    /// Loss percentages for the lossy-WAN scenario (50 ms RTT).
    #[arg(long, default_value = "0,1,5")]
    losses: String,
    /// Stream MB written for the lossy-WAN burst and outage backlog (more than a window carries).
    #[arg(long, default_value_t = 150)]
    lossy_mb: u64,
    /// Seconds over which lossy-WAN rates are measured.
    #[arg(long, default_value_t = 3.0)]
    lossy_window: f64,
    /// Commands of the realistic mix for the WAN-bytes scenario.
    #[arg(long, default_value_t = 300_000)]
    mix_commands: u64,
    /// Extra `[link]` lines for every agent (e.g. `window = "8MiB"`), to try settings.
    #[arg(long, default_value = "")]
    link_extra: String,
    /// Where to write BENCHMARKS.md and benchmarks.json.
    #[arg(long, default_value = "docs")]
    out_dir: PathBuf,
    /// Scratch directory for servers and logs (removed at the end).
    #[arg(long, default_value = "/tmp/georelay-bench")]
    work: PathBuf,
    /// Write the results but do not touch docs/ (prints the Markdown instead).
    #[arg(long)]
    dry: bool,
}

// ---------------------------------------------------------------- results

#[derive(Serialize, Clone)]
struct Row {
    scenario: String,
    case: String,
    metric: String,
    unit: String,
    values: Vec<f64>,
    median: f64,
    min: f64,
    max: f64,
    rerun: String,
}

#[derive(Serialize)]
struct Target {
    target: String,
    measured: String,
    met: bool,
}

#[derive(Default)]
struct Results {
    // (scenario, metric order, case order) preserved by insertion index
    rows: Vec<(String, String, String, String, Vec<f64>)>,
    notes: BTreeMap<String, Vec<String>>,
}

impl Results {
    fn rec(&mut self, scenario: &str, case: &str, metric: &str, unit: &str, v: f64) {
        if let Some(r) = self
            .rows
            .iter_mut()
            .find(|r| r.0 == scenario && r.1 == case && r.2 == metric)
        {
            r.4.push(v);
        } else {
            self.rows.push((
                scenario.into(),
                case.into(),
                metric.into(),
                unit.into(),
                vec![v],
            ));
        }
        eprintln!("  [{scenario}] {case} / {metric}: {v:.3} {unit}");
    }

    fn note(&mut self, scenario: &str, text: String) {
        eprintln!("  [{scenario}] note: {text}");
        self.notes.entry(scenario.into()).or_default().push(text);
    }

    fn med(&self, scenario: &str, case: &str, metric: &str) -> Option<f64> {
        self.rows
            .iter()
            .find(|r| r.0 == scenario && r.1 == case && r.2 == metric)
            .map(|r| stats(&r.4).0)
    }
}

/// (median, min, max); NaN-free input expected.
fn stats(v: &[f64]) -> (f64, f64, f64) {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if s.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = s.len();
    let med = if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    };
    (med, s[0], s[n - 1])
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

// ---------------------------------------------------------------- processes

static START: OnceLock<Instant> = OnceLock::new();
static LINK_EXTRA: OnceLock<String> = OnceLock::new();
fn now_ns() -> u128 {
    START.get_or_init(Instant::now).elapsed().as_nanos()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Proc {
    child: Option<Child>,
}
impl Proc {
    fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }
    fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status();
    }
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// CPU seconds (user + system) of a process, from /proc/<pid>/stat.
fn cpu_secs(pid: u32) -> f64 {
    let path = if pid == 0 {
        "/proc/self/stat".to_string()
    } else {
        format!("/proc/{pid}/stat")
    };
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let Some((_, rest)) = text.rsplit_once(')') else {
        return f64::NAN;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|s| s.parse().ok()).unwrap_or(f64::NAN)
        + f.get(12).and_then(|s| s.parse().ok()).unwrap_or(f64::NAN);
    ticks / 100.0 // CLK_TCK is 100 on Linux
}

/// A `VmXXX:` field of /proc/<pid>/status, in MiB.
fn vm_mib(pid: u32, field: &str) -> f64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

struct Env {
    georelay: PathBuf,
    work: PathBuf,
    pki: PathBuf,
    seq: std::sync::atomic::AtomicU64,
}

impl Env {
    fn dir(&self, name: &str) -> PathBuf {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let d = self.work.join(format!("{name}-{n}"));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}

struct Redis {
    port: u16,
    proc: Proc,
    dir: PathBuf,
}

impl Redis {
    fn start(env: &Env, name: &str, extra: &[&str]) -> Result<Redis> {
        let dir = env.dir(name);
        let port = free_port();
        let mut args: Vec<String> = vec![
            "--port".into(),
            port.to_string(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--save".into(),
            "".into(),
            "--appendonly".into(),
            "no".into(),
            "--enable-debug-command".into(),
            "yes".into(),
            "--repl-diskless-sync".into(),
            "yes".into(),
            "--repl-diskless-sync-delay".into(),
            "0".into(),
            "--repl-diskless-load".into(),
            "disabled".into(),
            // a replica that falls behind is never dropped: we measure whether it keeps up
            "--client-output-buffer-limit".into(),
            "replica 0 0 0".into(),
            "--repl-backlog-size".into(),
            "64mb".into(),
            "--dir".into(),
            dir.display().to_string(),
            "--logfile".into(),
            dir.join("redis.log").display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let child = Command::new("redis-server")
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start redis-server")?;
        let r = Redis {
            port,
            proc: Proc { child: Some(child) },
            dir,
        };
        wait_for(Duration::from_secs(10), Duration::from_millis(20), || {
            Client::connect(port)
                .and_then(|mut c| c.cmd(&["PING"]))
                .is_ok()
        })
        .ok_or_else(|| anyhow!("redis-server on {port} did not answer"))?;
        Ok(r)
    }
    fn replica_of(env: &Env, name: &str, port: u16) -> Result<Redis> {
        Redis::start(env, name, &["--replicaof", "127.0.0.1", &port.to_string()])
    }
    fn offset(&self) -> u64 {
        offset(self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(mut c) = self.proc.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn offset(port: u16) -> u64 {
    info_field(port, "replication", "master_repl_offset")
        .parse()
        .unwrap_or(0)
}

fn info_field(port: u16, section: &str, field: &str) -> String {
    let Ok(mut c) = Client::connect(port) else {
        return String::new();
    };
    let Ok(Frame::Bulk(b)) = c.cmd(&["INFO", section]) else {
        return String::new();
    };
    String::from_utf8_lossy(&b)
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

enum Up {
    Redis(u16),
    Agent(u16),
}

struct Agent {
    name: String,
    admin: u16,
    redis_port: u16,
    quic: Option<u16>,
    dir: PathBuf,
    config: PathBuf,
    georelay: PathBuf,
    proc: Proc,
}

impl Agent {
    /// `node` is "site-a" (upstream: Redis) or "region-b" (upstream: an agent).
    fn start(
        env: &Env,
        node: &str,
        up: Up,
        listen_agent: bool,
        link: &str,
        log: &str,
    ) -> Result<Agent> {
        let dir = env.dir(node);
        let admin = free_port();
        let redis_port = free_port();
        let quic = listen_agent.then(free_udp_port);
        let d = env.pki.display();
        let mut t = format!(
            "name = \"{node}\"\ndata_dir = \"{}\"\n[upstream]\n",
            dir.join("data").display()
        );
        match up {
            Up::Redis(p) => t.push_str(&format!("redis = \"127.0.0.1:{p}\"\n")),
            Up::Agent(p) => t.push_str(&format!("agent = \"127.0.0.1:{p}\"\n")),
        }
        t.push_str(&format!(
            "[listen]\nredis = \"127.0.0.1:{redis_port}\"\nadmin = \"127.0.0.1:{admin}\"\n"
        ));
        if let Some(q) = quic {
            t.push_str(&format!("agent = \"127.0.0.1:{q}\"\n"));
        }
        t.push_str(&format!(
            "[tls]\nca = \"{d}/ca.pem\"\ncert = \"{d}/{node}.pem\"\nkey = \"{d}/{node}.key\"\n"
        ));
        if matches!(up, Up::Agent(_)) {
            t.push_str("server_name = \"site-a\"\n");
        }
        let extra = LINK_EXTRA.get().map(String::as_str).unwrap_or("");
        if !link.is_empty() || !extra.is_empty() {
            t.push_str(&format!("[link]\n{link}\n{extra}\n"));
        }
        if !log.is_empty() {
            t.push_str(&format!("[log]\n{log}\n"));
        }
        let config = dir.join("georelay.toml");
        std::fs::write(&config, t)?;
        let mut a = Agent {
            name: node.into(),
            admin,
            redis_port,
            quic,
            dir,
            config,
            georelay: env.georelay.clone(),
            proc: Proc { child: None },
        };
        a.restart()?;
        Ok(a)
    }

    fn restart(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("agent.log"))?;
        let child = Command::new(&self.georelay)
            .args(["run", "--config"])
            .arg(&self.config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("spawn georelay")?;
        self.proc = Proc { child: Some(child) };
        let admin = self.admin;
        wait_for(Duration::from_secs(20), Duration::from_millis(10), || {
            http_get(admin, "/healthz").is_some_and(|(c, _)| c == 200)
        })
        .ok_or_else(|| anyhow!("agent {} did not become healthy", self.name))?;
        Ok(())
    }

    fn pid(&self) -> u32 {
        self.proc.pid()
    }
    fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let text = http_get(self.admin, "/metrics")
            .map(|x| x.1)
            .unwrap_or_default();
        metric_value(&text, name, labels)
    }
    fn head(&self) -> u64 {
        self.metric("georelay_log_head_offset", &[]) as u64
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut c) = self.proc.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

struct WanSim {
    port: u16,
    outage: PathBuf,
    _proc: Proc,
}

impl WanSim {
    fn start(env: &Env, forward: u16, flags: &[String]) -> Result<WanSim> {
        let dir = env.dir("wansim");
        let port = free_udp_port();
        let outage = dir.join("outage");
        let child = Command::new(&env.georelay)
            .arg("wan-sim")
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--forward",
                &format!("127.0.0.1:{forward}"),
                "--duration",
                "60m",
            ])
            .arg("--outage-file")
            .arg(&outage)
            .args(flags)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("wansim.log"))?)
            .spawn()
            .context("spawn wan-sim")?;
        std::thread::sleep(Duration::from_millis(200));
        Ok(WanSim {
            port,
            outage,
            _proc: Proc { child: Some(child) },
        })
    }
    fn cut(&self) {
        std::fs::write(&self.outage, b"cut").unwrap();
    }
    fn restore(&self) {
        let _ = std::fs::remove_file(&self.outage);
    }
}

fn wait_for(limit: Duration, every: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let t0 = Instant::now();
    loop {
        if f() {
            return Some(t0.elapsed());
        }
        if t0.elapsed() > limit {
            return None;
        }
        std::thread::sleep(every);
    }
}

fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((code, body))
}

fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.starts_with(name) && matches!(l.as_bytes().get(name.len()), Some(b'{') | Some(b' '))
        })
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

// ---------------------------------------------------------------- RESP client

struct Client {
    sock: TcpStream,
    buf: BytesMut,
}

fn limits() -> Limits {
    Limits {
        max_bulk: 1 << 30,
        ..Limits::default()
    }
}

impl Client {
    fn connect(port: u16) -> Result<Client> {
        let sock = TcpStream::connect(("127.0.0.1", port))?;
        sock.set_read_timeout(Some(Duration::from_secs(120)))?;
        sock.set_nodelay(true)?;
        Ok(Client {
            sock,
            buf: BytesMut::with_capacity(1 << 16),
        })
    }
    fn read_frame(&mut self) -> Result<Frame> {
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
    fn cmd(&mut self, args: &[&str]) -> Result<Frame> {
        let a: Vec<&[u8]> = args.iter().map(|s| s.as_bytes()).collect();
        self.sock.write_all(&resp::command(&a))?;
        let f = self.read_frame()?;
        if let Frame::Error(e) = &f {
            bail!("{args:?}: {e}");
        }
        Ok(f)
    }
    /// Writes pre-encoded commands and reads `n` replies.
    fn pipeline(&mut self, out: &[u8], n: usize) -> Result<()> {
        self.sock.write_all(out)?;
        for _ in 0..n {
            if let Frame::Error(e) = self.read_frame()? {
                bail!("pipeline error: {e}");
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------- load

fn redis_benchmark(port: u16, value: usize, n: u64) -> Result<Duration> {
    let t0 = Instant::now();
    let out = Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args([
            "-t",
            "set",
            "-d",
            &value.to_string(),
            "-P",
            "16",
            "-c",
            "50",
        ])
        .args(["-n", &n.to_string(), "-r", "100000", "-q"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .context("redis-benchmark")?;
    if !out.status.success() {
        bail!(
            "redis-benchmark failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(t0.elapsed())
}

/// Stream bytes per SET of `value` bytes with redis-benchmark's keys (≈ value + 44).
fn sets_for_mb(mb: u64, value: usize) -> u64 {
    mb * 1_000_000 / (value as u64 + 44)
}

/// A realistic write mix: JSON-like documents, counters, small hashes, a leaderboard.
fn write_mix(port: u16, n: u64, seed: u64) -> Result<()> {
    const WORDS: &[&str] = &[
        "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india",
        "juliet", "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra",
        "tango", "uniform", "victor", "whiskey", "xray", "yankee", "zulu", "order", "cart",
        "checkout", "shipped", "pending", "refund", "premium", "basic", "mobile", "desktop",
        "berlin", "paris", "tokyo", "lagos", "lima", "sydney", "red", "green", "blue", "small",
        "large",
    ];
    const FIRST: &[&str] = &[
        "anna", "ben", "chloe", "dmitri", "emma", "felix", "grace", "hiro", "ines", "jamal",
        "kofi", "lea",
    ];
    const LAST: &[&str] = &[
        "smith", "mueller", "rossi", "tanaka", "garcia", "okafor", "dubois", "kim", "nowak",
        "silva",
    ];
    const CC: &[&str] = &["DE", "FR", "JP", "NG", "PE", "AU", "US", "BR", "IN", "GB"];
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut c = Client::connect(port)?;
    let batch = 1000;
    let mut i = 0;
    let mut out = Vec::with_capacity(1 << 20);
    while i < n {
        out.clear();
        let end = (i + batch).min(n);
        for _ in i..end {
            let kind = rng.random_range(0..100);
            let args: Vec<String> = if kind < 45 {
                let id = rng.random_range(0..200_000u32);
                let f = FIRST[rng.random_range(0..FIRST.len())];
                let l = LAST[rng.random_range(0..LAST.len())];
                let nt = rng.random_range(1..5);
                let tags: Vec<String> = (0..nt)
                    .map(|_| format!("\"{}\"", WORDS[rng.random_range(0..WORDS.len())]))
                    .collect();
                let nb = rng.random_range(4..20);
                let bio: Vec<&str> = (0..nb)
                    .map(|_| WORDS[rng.random_range(0..WORDS.len())])
                    .collect();
                let doc = format!(
                    "{{\"id\":{id},\"name\":\"{f} {l}\",\"email\":\"{f}.{l}{}@example.com\",\"age\":{},\"country\":\"{}\",\"tags\":[{}],\"score\":{:.2},\"active\":{},\"created\":\"2026-{:02}-{:02}T{:02}:{:02}:{:02}Z\",\"bio\":\"{}\",\"orders\":{}}}",
                    rng.random_range(0..1000),
                    rng.random_range(18..90),
                    CC[rng.random_range(0..CC.len())],
                    tags.join(","),
                    rng.random_range(0.0..1000.0f64),
                    rng.random_bool(0.7),
                    rng.random_range(1..13),
                    rng.random_range(1..29),
                    rng.random_range(0..24),
                    rng.random_range(0..60),
                    rng.random_range(0..60),
                    bio.join(" "),
                    rng.random_range(0..500),
                );
                vec!["SET".into(), format!("user:{id}"), doc]
            } else if kind < 75 {
                let page = rng.random_range(0..5000);
                if rng.random_bool(0.5) {
                    vec![
                        "INCR".into(),
                        format!("views:page:{page}:2026-{:02}", rng.random_range(1..13)),
                    ]
                } else {
                    vec![
                        "INCRBY".into(),
                        format!("stock:sku:{page}"),
                        rng.random_range(-5..20i32).to_string(),
                    ]
                }
            } else if kind < 95 {
                let s = rng.random_range(0..50_000);
                vec![
                    "HSET".into(),
                    format!("session:{s:08x}"),
                    "user".into(),
                    rng.random_range(0..200_000).to_string(),
                    "ip".into(),
                    format!(
                        "10.{}.{}.{}",
                        rng.random_range(0..256),
                        rng.random_range(0..256),
                        rng.random_range(0..256)
                    ),
                    "ua".into(),
                    [
                        "Mozilla/5.0 (X11; Linux x86_64)",
                        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0)",
                        "curl/8.5.0",
                    ][rng.random_range(0..3)]
                    .into(),
                    "last_seen".into(),
                    (1_790_000_000u64 + rng.random_range(0..10_000_000)).to_string(),
                ]
            } else {
                vec![
                    "ZADD".into(),
                    "leaderboard".into(),
                    rng.random_range(0..1_000_000).to_string(),
                    format!("player:{}", rng.random_range(0..100_000)),
                ]
            };
            let a: Vec<&[u8]> = args.iter().map(|s| s.as_bytes()).collect();
            out.extend_from_slice(&resp::command(&a));
        }
        c.pipeline(&out, (end - i) as usize)?;
        i = end;
    }
    Ok(())
}

/// `keys` SETs with 100 random bytes each (the full-sync dataset), pipelined.
fn write_random_keys(port: u16, keys: u64) -> Result<()> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let mut c = Client::connect(port)?;
    let mut out = Vec::with_capacity(1 << 20);
    let mut val = [0u8; 100];
    let mut i = 0;
    while i < keys {
        out.clear();
        let end = (i + 2000).min(keys);
        for k in i..end {
            rng.fill_bytes(&mut val);
            let key = format!("key:{k:010}");
            out.extend_from_slice(&resp::command(&[b"SET", key.as_bytes(), &val]));
        }
        c.pipeline(&out, (end - i) as usize)?;
        i = end;
    }
    Ok(())
}

// ---------------------------------------------------------------- lag probe

/// PUBLISH on the origin every `every`, SUBSCRIBE on the far replica; lag per message.
struct Prober {
    stop: Arc<AtomicBool>,
    publisher: std::thread::JoinHandle<u64>,
    subscriber: std::thread::JoinHandle<Vec<(u64, f64)>>,
    done: Arc<AtomicBool>,
}

impl Prober {
    fn start(origin: u16, far: u16, every: Duration) -> Result<Prober> {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicBool::new(false));
        let mut sub = Client::connect(far)?;
        sub.cmd(&["SUBSCRIBE", "bench-lag"])?;
        sub.sock
            .set_read_timeout(Some(Duration::from_millis(100)))?;
        let mut publ = Client::connect(origin)?;
        let st = stop.clone();
        let publisher = std::thread::spawn(move || {
            let mut seq = 0u64;
            while !st.load(Ordering::Relaxed) {
                let msg = format!("{seq}:{}", now_ns());
                if publ.cmd(&["PUBLISH", "bench-lag", &msg]).is_err() {
                    break;
                }
                seq += 1;
                std::thread::sleep(every);
            }
            seq
        });
        let dn = done.clone();
        let subscriber = std::thread::spawn(move || {
            let mut got = Vec::new();
            while !dn.load(Ordering::Relaxed) {
                match sub.read_frame() {
                    Ok(Frame::Array(items)) => {
                        let now = now_ns();
                        if let Some(Frame::Bulk(p)) = items.get(2) {
                            let s = String::from_utf8_lossy(p);
                            if let Some((seq, t)) = s.split_once(':') {
                                let (seq, t): (u64, u128) =
                                    (seq.parse().unwrap_or(0), t.parse().unwrap_or(0));
                                got.push((seq, (now - t) as f64 / 1e6));
                            }
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let timeout = e.downcast_ref::<std::io::Error>().is_some_and(|e| {
                            matches!(
                                e.kind(),
                                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                            )
                        });
                        if !timeout {
                            break;
                        }
                    }
                }
            }
            got
        });
        Ok(Prober {
            stop,
            publisher,
            subscriber,
            done,
        })
    }

    /// Stops publishing, waits up to `grace` for the last messages; lag samples in ms, sorted,
    /// and how many never arrived.
    fn finish(self, grace: Duration) -> (Vec<f64>, u64) {
        self.stop.store(true, Ordering::Relaxed);
        let sent = self.publisher.join().unwrap_or(0);
        std::thread::sleep(Duration::from_millis(50));
        let t0 = Instant::now();
        // the subscriber keeps reading until done; give in-flight messages time
        while t0.elapsed() < grace && !self.subscriber.is_finished() {
            std::thread::sleep(Duration::from_millis(20));
            // we cannot peek at its count; just wait the grace unless it is short
            if t0.elapsed() > Duration::from_millis(300) {
                break;
            }
        }
        self.done.store(true, Ordering::Relaxed);
        let got = self.subscriber.join().unwrap_or_default();
        let mut lags: Vec<f64> = got.iter().map(|x| x.1).collect();
        lags.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let missing = sent.saturating_sub(got.len() as u64);
        (lags, missing)
    }
}

fn rec_lag(res: &mut Results, sc: &str, case: &str, prefix: &str, lags: &[f64]) {
    res.rec(
        sc,
        case,
        &format!("{prefix} lag p50"),
        "ms",
        pct(lags, 50.0),
    );
    res.rec(
        sc,
        case,
        &format!("{prefix} lag p99"),
        "ms",
        pct(lags, 99.0),
    );
    res.rec(
        sc,
        case,
        &format!("{prefix} lag max"),
        "ms",
        lags.last().copied().unwrap_or(f64::NAN),
    );
}

// ---------------------------------------------------------------- topologies

#[derive(Clone, Copy, PartialEq)]
enum Topo {
    Direct,
    Native,
    Agents,
}

impl Topo {
    fn label(self) -> &'static str {
        match self {
            Topo::Direct => "direct master→replica",
            Topo::Native => "native chain master→replica→sub-replica",
            Topo::Agents => "agent chain master→A→QUIC→B→replica",
        }
    }
}

struct Setup {
    master: Redis,
    far: Redis,
    _mid: Option<Redis>,
    a: Option<Agent>,
    b: Option<Agent>,
    wan: Option<WanSim>,
}

impl Setup {
    fn start(env: &Env, topo: Topo, link: &str, wan_flags: Option<&[String]>) -> Result<Setup> {
        let master = Redis::start(env, "master", &[])?;
        let (far, mid, a, b, wan) = match topo {
            Topo::Direct => (
                Redis::replica_of(env, "replica", master.port)?,
                None,
                None,
                None,
                None,
            ),
            Topo::Native => {
                let mid = Redis::replica_of(env, "replica", master.port)?;
                let far = Redis::replica_of(env, "subreplica", mid.port)?;
                (far, Some(mid), None, None, None)
            }
            Topo::Agents => {
                let a = Agent::start(env, "site-a", Up::Redis(master.port), true, link, "")?;
                let q = a.quic.unwrap();
                let wan = match wan_flags {
                    Some(f) => Some(WanSim::start(env, q, f)?),
                    None => None,
                };
                let up = wan.as_ref().map(|w| w.port).unwrap_or(q);
                let b = Agent::start(env, "region-b", Up::Agent(up), false, link, "")?;
                let far = Redis::replica_of(env, "replica", b.redis_port)?;
                (far, None, Some(a), Some(b), wan)
            }
        };
        let s = Setup {
            master,
            far,
            _mid: mid,
            a,
            b,
            wan,
        };
        s.master.offset();
        Client::connect(s.master.port)?.cmd(&["SET", "bench:init", "1"])?;
        s.wait_far(Duration::from_secs(120))
            .ok_or_else(|| anyhow!("far replica never synced"))?;
        Ok(s)
    }

    /// Waits until the far replica's offset reaches the origin's current offset.
    fn wait_far(&self, limit: Duration) -> Option<Duration> {
        let want = self.master.offset();
        let far = self.far.port;
        wait_for(limit, Duration::from_millis(5), || {
            info_field(far, "replication", "master_link_status") == "up" && offset(far) >= want
        })
    }
}

// ---------------------------------------------------------------- scenarios

fn steady(env: &Env, o: &Opts, res: &mut Results) -> Result<()> {
    let sc = "steady";
    for run in 0..o.runs {
        eprintln!("steady: run {}/{}", run + 1, o.runs);
        for topo in [Topo::Direct, Topo::Native, Topo::Agents] {
            let case = topo.label();
            let s = Setup::start(env, topo, "", None)?;
            std::thread::sleep(Duration::from_millis(300));
            let p = Prober::start(s.master.port, s.far.port, Duration::from_millis(5))?;
            std::thread::sleep(Duration::from_millis(1500));
            let (lags, _) = p.finish(Duration::from_millis(500));
            rec_lag(res, sc, case, "idle", &lags);
            for (label, value, n) in [("100 B", 100usize, o.n100), ("1 KB", 1024, o.n1k)] {
                let pids: Vec<u32> = [&s.a, &s.b]
                    .iter()
                    .filter_map(|x| x.as_ref().map(|a| a.pid()))
                    .collect();
                let cpu0: Vec<f64> = pids.iter().map(|p| cpu_secs(*p)).collect();
                let off0 = s.master.offset();
                let p = Prober::start(s.master.port, s.far.port, Duration::from_millis(5))?;
                let el = redis_benchmark(s.master.port, value, n)?;
                let off1 = s.master.offset();
                let far_at_end = offset(s.far.port);
                let drain = s.wait_far(Duration::from_secs(120));
                let (lags, missing) = p.finish(Duration::from_secs(2));
                let bytes = (off1 - off0) as f64;
                res.rec(
                    sc,
                    case,
                    &format!("{label}: SET/s at the origin"),
                    "k/s",
                    n as f64 / el.as_secs_f64() / 1e3,
                );
                res.rec(
                    sc,
                    case,
                    &format!("{label}: origin stream"),
                    "MB/s",
                    bytes / el.as_secs_f64() / MB,
                );
                res.rec(
                    sc,
                    case,
                    &format!("{label}: far replica behind at load end"),
                    "MB",
                    off1.saturating_sub(far_at_end) as f64 / MB,
                );
                let d = drain.map(|d| d.as_secs_f64()).unwrap_or(f64::INFINITY);
                res.rec(
                    sc,
                    case,
                    &format!("{label}: far replica drain after load"),
                    "s",
                    d,
                );
                res.rec(
                    sc,
                    case,
                    &format!("{label}: far replica keeps up (drain ≤ 1 s)"),
                    "yes=1",
                    if d <= 1.0 { 1.0 } else { 0.0 },
                );
                rec_lag(res, sc, case, &format!("{label}: loaded"), &lags);
                if missing > 0 {
                    res.note(sc, format!("run {}: {case} {label}: {missing} probe messages did not arrive in time", run + 1));
                }
                for (i, pid) in pids.iter().enumerate() {
                    let who = if i == 0 { "A" } else { "B" };
                    res.rec(
                        sc,
                        case,
                        &format!("{label}: agent {who} CPU per GB of stream"),
                        "s/GB",
                        (cpu_secs(*pid) - cpu0[i]) / (bytes / GB),
                    );
                }
                if let (Some(a), Some(b)) = (&s.a, &s.b) {
                    res.rec(
                        sc,
                        case,
                        &format!("{label}: agent A peak RSS"),
                        "MiB",
                        vm_mib(a.pid(), "VmHWM"),
                    );
                    res.rec(
                        sc,
                        case,
                        &format!("{label}: agent B peak RSS"),
                        "MiB",
                        vm_mib(b.pid(), "VmHWM"),
                    );
                }
            }
        }
    }
    Ok(())
}

/// A raw quinn single-stream transfer of `bytes` (server sends, like the site agent), with the
/// agents' default transport settings; optionally through a wan-sim with `flags`.
/// Returns (seconds, CPU seconds of this process = both ends).
fn raw_quinn(
    env: &Env,
    rt: &tokio::runtime::Runtime,
    bytes: u64,
    wan: Option<&[String]>,
) -> Result<(f64, f64)> {
    let pki = env.pki.clone();
    rt.block_on(async move {
        let ts = TransportSettings::default();
        let server = quic::server_endpoint(
            "127.0.0.1:0".parse()?,
            &TlsFiles::in_dir(&pki, "site-a"),
            &ts,
        )?;
        let saddr = server.local_addr()?;
        let wansim = match wan {
            Some(f) => Some(WanSim::start(env, saddr.port(), f)?),
            None => None,
        };
        let target: SocketAddr = match &wansim {
            Some(w) => format!("127.0.0.1:{}", w.port).parse()?,
            None => saddr,
        };
        let srv = tokio::spawn(async move {
            let inc = server
                .accept()
                .await
                .ok_or_else(|| anyhow!("no incoming"))?;
            let conn = quic::accept(inc).await?;
            let mut s = conn.open_uni().await?;
            let chunk = Bytes::from(vec![0x5au8; MIB as usize]);
            let mut left = bytes;
            while left > 0 {
                let n = left.min(MIB);
                s.write_chunk(chunk.slice(..n as usize)).await?;
                left -= n;
            }
            s.finish()?;
            let _ = s.stopped().await;
            conn.closed().await;
            anyhow::Ok(())
        });
        let client = quic::client_endpoint(&TlsFiles::in_dir(&pki, "region-b"), &ts)?;
        let conn = quic::connect(&client, target, "site-a").await?;
        let cpu0 = cpu_secs(0);
        let t0 = Instant::now();
        let mut r = conn.accept_uni().await?;
        let mut got = 0u64;
        while let Some(c) = r.read_chunk(usize::MAX, true).await? {
            got += c.bytes.len() as u64;
        }
        let el = t0.elapsed().as_secs_f64();
        let cpu = cpu_secs(0) - cpu0;
        conn.close(0u32.into(), b"done");
        let _ = tokio::time::timeout(Duration::from_secs(5), srv).await;
        drop(wansim);
        if got != bytes {
            bail!("raw quinn: got {got} of {bytes}");
        }
        Ok((el, cpu))
    })
}

fn ceiling(env: &Env, o: &Opts, res: &mut Results, rt: &tokio::runtime::Runtime) -> Result<()> {
    let sc = "ceiling";
    let sizes: Vec<u64> = o
        .backlogs_mb
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    for run in 0..o.runs {
        for &mb in &sizes {
            eprintln!("ceiling: run {}/{} backlog {mb} MB", run + 1, o.runs);
            let case_a = format!("agents A→B, {mb} MB backlog");
            let master = Redis::start(env, "master", &[])?;
            let link = "compression = \"none\"";
            let log = "max_bytes = \"32GiB\"";
            let a = Agent::start(env, "site-a", Up::Redis(master.port), true, link, log)?;
            let mut b = Agent::start(
                env,
                "region-b",
                Up::Agent(a.quic.unwrap()),
                false,
                link,
                log,
            )?;
            Client::connect(master.port)?.cmd(&["SET", "bench:init", "1"])?;
            wait_for(Duration::from_secs(60), Duration::from_millis(20), || {
                let h = master.offset();
                h > 0 && b.head() >= h
            })
            .ok_or_else(|| anyhow!("B never synced"))?;
            let b_head0 = b.head();
            b.proc.stop();
            let cpu_a0 = cpu_secs(a.pid());
            let t_ing = Instant::now();
            redis_benchmark(master.port, 1024, sets_for_mb(mb, 1024))?;
            let target = master.offset();
            wait_for(Duration::from_secs(600), Duration::from_millis(20), || {
                a.head() >= target
            })
            .ok_or_else(|| anyhow!("A never ingested the backlog"))?;
            let ing = t_ing.elapsed().as_secs_f64();
            let cpu_a1 = cpu_secs(a.pid());
            let backlog = (target - b_head0) as f64;
            res.rec(
                sc,
                &case_a,
                "origin → A ingest (redis-benchmark 1 KB SETs)",
                "MB/s",
                backlog / ing / MB,
            );
            res.rec(
                sc,
                &case_a,
                "A CPU per GB ingested from Redis",
                "s/GB",
                (cpu_a1 - cpu_a0) / (backlog / GB),
            );
            b.restart()?;
            let t0 = Instant::now();
            let first = wait_for(Duration::from_secs(600), Duration::from_millis(5), || {
                b.head() > b_head0
            });
            let done = wait_for(Duration::from_secs(900), Duration::from_millis(10), || {
                b.head() >= target
            })
            .ok_or_else(|| anyhow!("B never caught up"))?;
            let el = t0.elapsed().as_secs_f64();
            let _ = done;
            let cpu_a = cpu_secs(a.pid()) - cpu_a1;
            let cpu_b = cpu_secs(b.pid());
            res.rec(
                sc,
                &case_a,
                "log→QUIC→log catch-up",
                "MB/s",
                backlog / el / MB,
            );
            res.rec(
                sc,
                &case_a,
                "time to first byte after B starts",
                "s",
                first.map(|d| d.as_secs_f64()).unwrap_or(f64::NAN),
            );
            res.rec(
                sc,
                &case_a,
                "A CPU per GB relayed",
                "s/GB",
                cpu_a / (backlog / GB),
            );
            res.rec(
                sc,
                &case_a,
                "B CPU per GB relayed",
                "s/GB",
                cpu_b / (backlog / GB),
            );
            res.rec(
                sc,
                &case_a,
                "A+B CPU per GB relayed",
                "s/GB",
                (cpu_a + cpu_b) / (backlog / GB),
            );
            res.rec(
                sc,
                &case_a,
                "A peak RSS (VmHWM)",
                "MiB",
                vm_mib(a.pid(), "VmHWM"),
            );
            res.rec(
                sc,
                &case_a,
                "B peak RSS (VmHWM)",
                "MiB",
                vm_mib(b.pid(), "VmHWM"),
            );
            res.rec(sc, &case_a, "A RSS at end", "MiB", vm_mib(a.pid(), "VmRSS"));
            drop(b);
            drop(a);
            drop(master);
            let case_q = format!("raw quinn, one stream, {mb} MB");
            let (el, cpu) = raw_quinn(env, rt, target - b_head0, None)?;
            res.rec(
                sc,
                &case_q,
                "log→QUIC→log catch-up",
                "MB/s",
                backlog / el / MB,
            );
            res.rec(
                sc,
                &case_q,
                "A+B CPU per GB relayed",
                "s/GB",
                cpu / (backlog / GB),
            );
        }
    }
    Ok(())
}

fn catchup(env: &Env, o: &Opts, res: &mut Results) -> Result<()> {
    let sc = "catchup";
    let mb = o.catchup_mb;
    for run in 0..o.runs {
        eprintln!("catchup: run {}/{} ({mb} MB)", run + 1, o.runs);
        // baseline: a direct replica paused (SIGSTOP) while the backlog is written; the master
        // keeps it in the replica's output buffer.
        {
            let case = format!("direct replica paused, {mb} MB");
            let s = Setup::start(env, Topo::Direct, "", None)?;
            s.far.proc.signal("STOP");
            redis_benchmark(s.master.port, 1024, sets_for_mb(mb, 1024))?;
            let target = s.master.offset();
            s.far.proc.signal("CONT");
            let t0 = Instant::now();
            wait_for(Duration::from_secs(600), Duration::from_millis(10), || {
                offset(s.far.port) >= target
            })
            .ok_or_else(|| anyhow!("direct replica never caught up"))?;
            let el = t0.elapsed().as_secs_f64();
            res.rec(sc, &case, "far replica caught up after", "s", el);
            res.rec(sc, &case, "catch-up rate", "MB/s", mb as f64 * MB / el / MB);
        }
        {
            // B is stopped for the outage (wan-sim's user-space relay tops out near 40 MB/s on
            // this machine, below the link; the lossy scenario measures through it). The far
            // replica stays up and reconnects to B by itself (Redis retries once a second).
            let case = format!("agent chain, B down during the outage, {mb} MB");
            let link = "compression = \"none\"";
            let mut s = Setup::start(env, Topo::Agents, link, None)?;
            let b_head0 = s.b.as_ref().unwrap().head();
            s.b.as_mut().unwrap().proc.stop();
            redis_benchmark(s.master.port, 1024, sets_for_mb(mb, 1024))?;
            let target = s.master.offset();
            let a = s.a.as_ref().unwrap();
            wait_for(Duration::from_secs(600), Duration::from_millis(20), || {
                a.head() >= target
            })
            .ok_or_else(|| anyhow!("A never ingested"))?;
            let cpu_a1 = cpu_secs(a.pid());
            s.b.as_mut().unwrap().restart()?;
            let t0 = Instant::now();
            let (a, b) = (s.a.as_ref().unwrap(), s.b.as_ref().unwrap());
            let tb = wait_for(Duration::from_secs(900), Duration::from_millis(10), || {
                b.head() >= target
            })
            .ok_or_else(|| anyhow!("B never caught up"))?;
            let tr = wait_for(Duration::from_secs(900), Duration::from_millis(10), || {
                offset(s.far.port) >= target
            })
            .ok_or_else(|| anyhow!("far replica never caught up"))?;
            let el = t0.elapsed().as_secs_f64();
            let _ = tr;
            let backlog = (target - b_head0) as f64;
            res.rec(sc, &case, "far replica caught up after", "s", el);
            res.rec(sc, &case, "catch-up rate", "MB/s", backlog / el / MB);
            res.rec(sc, &case, "B's log caught up after", "s", tb.as_secs_f64());
            res.rec(
                sc,
                &case,
                "A CPU per GB relayed",
                "s/GB",
                (cpu_secs(a.pid()) - cpu_a1) / (backlog / GB),
            );
            res.rec(
                sc,
                &case,
                "B CPU per GB (relay + serving the replica)",
                "s/GB",
                cpu_secs(b.pid()) / (backlog / GB),
            );
            res.rec(
                sc,
                &case,
                "A peak RSS (VmHWM)",
                "MiB",
                vm_mib(a.pid(), "VmHWM"),
            );
            res.rec(
                sc,
                &case,
                "B peak RSS (VmHWM)",
                "MiB",
                vm_mib(b.pid(), "VmHWM"),
            );
        }
    }
    Ok(())
}

fn fullsync(env: &Env, o: &Opts, res: &mut Results) -> Result<()> {
    let sc = "fullsync";
    eprintln!("fullsync: loading {} keys", o.keys);
    let master = Redis::start(env, "master", &[])?;
    write_random_keys(master.port, o.keys)?;
    let a = Agent::start(env, "site-a", Up::Redis(master.port), true, "", "")?;
    let b = Agent::start(env, "region-b", Up::Agent(a.quic.unwrap()), false, "", "")?;
    Client::connect(master.port)?.cmd(&["SET", "bench:init", "1"])?;
    wait_for(Duration::from_secs(300), Duration::from_millis(50), || {
        b.metric("georelay_upstream_full_syncs_total", &[]) >= 1.0 && b.head() >= master.offset()
    })
    .ok_or_else(|| anyhow!("B never got a snapshot"))?;
    let rdb_mb = b.metric("georelay_log_disk_bytes", &[]) / MB;
    res.note(
        sc,
        format!(
            "dataset: {} keys, 100 B random values; B's snapshot + log on disk: {rdb_mb:.0} MB",
            o.keys
        ),
    );
    let forks = |m: &Redis| {
        info_field(m.port, "stats", "sync_full")
            .parse::<f64>()
            .unwrap_or(f64::NAN)
    };
    let sync_time = |port: u16| -> Result<f64> {
        let r = Redis::start(env, "newreplica", &[])?;
        let mut c = Client::connect(r.port)?;
        let t0 = Instant::now();
        c.cmd(&["REPLICAOF", "127.0.0.1", &port.to_string()])?;
        let rp = r.port;
        wait_for(Duration::from_secs(300), Duration::from_millis(5), || {
            info_field(rp, "replication", "master_link_status") == "up"
        })
        .ok_or_else(|| anyhow!("replica never synced"))?;
        let el = t0.elapsed().as_secs_f64();
        let dbsize = match Client::connect(rp)?.cmd(&["DBSIZE"])? {
            Frame::Integer(n) => n as u64,
            _ => 0,
        };
        if dbsize < o.keys {
            bail!("replica has {dbsize} keys, expected ≥ {}", o.keys);
        }
        Ok(el)
    };
    for run in 0..o.runs {
        eprintln!("fullsync: run {}/{}", run + 1, o.runs);
        let f0 = forks(&master);
        let t = sync_time(master.port)?;
        let f1 = forks(&master);
        res.rec(sc, "direct from the master", "full sync time", "s", t);
        res.rec(
            sc,
            "direct from the master",
            "origin forks (sync_full delta)",
            "count",
            f1 - f0,
        );
        let t = sync_time(b.redis_port)?;
        let f2 = forks(&master);
        res.rec(
            sc,
            "far replica from B's snapshot",
            "full sync time",
            "s",
            t,
        );
        res.rec(
            sc,
            "far replica from B's snapshot",
            "origin forks (sync_full delta)",
            "count",
            f2 - f1,
        );
    }
    Ok(())
}

fn lossy(env: &Env, o: &Opts, res: &mut Results, rt: &tokio::runtime::Runtime) -> Result<()> {
    let sc = "lossy";
    let losses: Vec<f64> = o
        .losses
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let window = Duration::from_secs_f64(o.lossy_window);
    let mut cases: Vec<(f64, &str)> = losses.iter().map(|l| (*l, "cubic")).collect();
    cases.extend(losses.iter().filter(|l| **l > 0.0).map(|l| (*l, "bbr")));
    for run in 0..o.runs {
        for &(loss, cc) in &cases {
            eprintln!("lossy: run {}/{} loss {loss}% {cc}", run + 1, o.runs);
            let mut flags = vec!["--delay".to_string(), "25ms".to_string()];
            if loss > 0.0 {
                flags.extend(["--loss".to_string(), format!("{loss}%")]);
            }
            let case = format!("agents, {loss}% loss, {cc}");
            let link = format!("compression = \"none\"\ncongestion = \"{cc}\"");
            let s = Setup::start(env, Topo::Agents, &link, Some(&flags))?;
            let (a, b, wan) = (
                s.a.as_ref().unwrap(),
                s.b.as_ref().unwrap(),
                s.wan.as_ref().unwrap(),
            );
            let p = Prober::start(s.master.port, s.far.port, Duration::from_millis(10))?;
            std::thread::sleep(Duration::from_secs(2));
            let (lags, _) = p.finish(Duration::from_millis(500));
            rec_lag(res, sc, &case, "idle", &lags);
            // sustained: a burst of 1 KB SETs larger than the link carries in the window;
            // rate = far replica offset progress over the window
            let off0 = offset(s.far.port);
            redis_benchmark(s.master.port, 1024, sets_for_mb(o.lossy_mb, 1024))?;
            let t0 = Instant::now();
            let f0 = offset(s.far.port);
            std::thread::sleep(window);
            let f1 = offset(s.far.port);
            let _ = off0;
            res.rec(
                sc,
                &case,
                "sustained to the far replica (saturated)",
                "MB/s",
                (f1 - f0) as f64 / t0.elapsed().as_secs_f64() / MB,
            );
            s.wait_far(Duration::from_secs(1)); // not required to finish
                                                // catch-up after an outage: B's log progress over the window after the first byte
            wan.cut();
            std::thread::sleep(Duration::from_millis(200));
            redis_benchmark(s.master.port, 1024, sets_for_mb(o.lossy_mb, 1024))?;
            let target = s.master.offset();
            wait_for(Duration::from_secs(300), Duration::from_millis(20), || {
                a.head() >= target
            });
            let h0 = b.head();
            wan.restore();
            let tr = Instant::now();
            let first = wait_for(Duration::from_secs(60), Duration::from_millis(5), || {
                b.head() > h0
            });
            res.rec(
                sc,
                &case,
                "outage over: first byte after",
                "s",
                first
                    .map(|_| tr.elapsed().as_secs_f64())
                    .unwrap_or(f64::NAN),
            );
            let h1 = b.head();
            let t1 = Instant::now();
            std::thread::sleep(window);
            let h2 = b.head();
            res.rec(
                sc,
                &case,
                "catch-up rate after an outage (A log → B log)",
                "MB/s",
                (h2 - h1) as f64 / t1.elapsed().as_secs_f64() / MB,
            );
            drop(s);
            let qcase = format!("raw quinn, same wan-sim, {loss}% loss, {cc}");
            let q = raw_quinn_window(env, rt, window, &flags, cc)?;
            res.rec(
                sc,
                &qcase,
                "catch-up rate after an outage (A log → B log)",
                "MB/s",
                q,
            );
            if run == 0 && loss > 0.0 && cc == "cubic" {
                let p = loss / 100.0;
                let mathis = 1460.0 / 0.050 * 1.22 / p.sqrt() / MB;
                res.note(sc, format!("at {loss}% loss and 50 ms RTT a loss-based TCP flow (native replication) is capped near {mathis:.2} MB/s (Mathis, MSS 1460)"));
            }
        }
    }
    Ok(())
}

/// Raw quinn through a wan-sim with `flags`: MB/s received over `window` (after the first byte).
fn raw_quinn_window(
    env: &Env,
    rt: &tokio::runtime::Runtime,
    window: Duration,
    flags: &[String],
    cc: &str,
) -> Result<f64> {
    let pki = env.pki.clone();
    rt.block_on(async move {
        let ts = TransportSettings {
            congestion: cc.parse().map_err(|e: String| anyhow!(e))?,
            ..TransportSettings::default()
        };
        let server = quic::server_endpoint(
            "127.0.0.1:0".parse()?,
            &TlsFiles::in_dir(&pki, "site-a"),
            &ts,
        )?;
        let saddr = server.local_addr()?;
        let wansim = WanSim::start(env, saddr.port(), flags)?;
        let target: SocketAddr = format!("127.0.0.1:{}", wansim.port).parse()?;
        let srv = tokio::spawn(async move {
            let inc = server
                .accept()
                .await
                .ok_or_else(|| anyhow!("no incoming"))?;
            let conn = quic::accept(inc).await?;
            let mut s = conn.open_uni().await?;
            let chunk = Bytes::from(vec![0x5au8; MIB as usize]);
            loop {
                if s.write_chunk(chunk.clone()).await.is_err() {
                    break;
                }
            }
            anyhow::Ok(())
        });
        let client = quic::client_endpoint(&TlsFiles::in_dir(&pki, "region-b"), &ts)?;
        let conn = quic::connect(&client, target, "site-a").await?;
        let mut r = conn.accept_uni().await?;
        let mut got = 0u64;
        let first = r.read_chunk(usize::MAX, true).await?;
        let t0 = Instant::now();
        let _ = first;
        while t0.elapsed() < window {
            match tokio::time::timeout(
                window.saturating_sub(t0.elapsed()),
                r.read_chunk(usize::MAX, true),
            )
            .await
            {
                Ok(Ok(Some(c))) => got += c.bytes.len() as u64,
                _ => break,
            }
        }
        let el = t0.elapsed().as_secs_f64();
        conn.close(0u32.into(), b"done");
        srv.abort();
        drop(wansim);
        Ok(got as f64 / el / MB)
    })
}

fn wanbytes(env: &Env, o: &Opts, res: &mut Results) -> Result<()> {
    let sc = "wanbytes";
    for run in 0..o.runs {
        for comp in ["none", "zstd"] {
            eprintln!("wanbytes: run {}/{} compression {comp}", run + 1, o.runs);
            let case = format!("link.compression = \"{comp}\"");
            let link = format!("compression = \"{comp}\"");
            let s = Setup::start(env, Topo::Agents, &link, None)?;
            let (a, b) = (s.a.as_ref().unwrap(), s.b.as_ref().unwrap());
            let sent = |x: &Agent| x.metric("georelay_link_bytes_total", &[("direction", "sent")]);
            let (a0, b0, off0) = (sent(a), sent(b), s.master.offset());
            let cpu_a0 = cpu_secs(a.pid());
            let t0 = Instant::now();
            write_mix(s.master.port, o.mix_commands, 7 + run as u64)?;
            let load = t0.elapsed().as_secs_f64();
            s.wait_far(Duration::from_secs(300))
                .ok_or_else(|| anyhow!("never caught up"))?;
            let off1 = s.master.offset();
            wait_for(Duration::from_secs(30), Duration::from_millis(20), || {
                b.head() >= off1
            });
            // link byte counters are updated once a second
            std::thread::sleep(Duration::from_millis(2200));
            let stream = (off1 - off0) as f64;
            res.rec(sc, &case, "origin stream written", "MB", stream / MB);
            res.rec(
                sc,
                &case,
                "origin stream rate (realistic mix)",
                "MB/s",
                stream / load / MB,
            );
            res.rec(
                sc,
                &case,
                "A→B link bytes per stream byte",
                "ratio",
                (sent(a) - a0) / stream,
            );
            res.rec(
                sc,
                &case,
                "link bytes both ways per stream byte",
                "ratio",
                (sent(a) - a0 + sent(b) - b0) / stream,
            );
            res.rec(
                sc,
                &case,
                "A CPU per GB of stream",
                "s/GB",
                (cpu_secs(a.pid()) - cpu_a0) / (stream / GB),
            );
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- report

fn sh(cmd: &str) -> String {
    Command::new("sh")
        .args(["-c", cmd])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn machine() -> BTreeMap<&'static str, String> {
    let mut m = BTreeMap::new();
    m.insert("date", sh("date -u +%Y-%m-%dT%H:%M:%SZ"));
    m.insert("nproc", sh("nproc"));
    m.insert(
        "cpu",
        sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"),
    );
    m.insert("memory", sh("free -h | awk '/Mem:/{print $2}'"));
    m.insert("kernel", sh("uname -sr"));
    m.insert("redis", sh("redis-server --version"));
    m.insert("georelay", sh("git rev-parse --short HEAD"));
    m.insert("loadavg_start", sh("cat /proc/loadavg"));
    m.insert("rmem_max", sh("cat /proc/sys/net/core/rmem_max"));
    m
}

fn fmt(v: f64) -> String {
    if !v.is_finite() {
        return if v.is_infinite() {
            "∞ (timeout)".into()
        } else {
            "–".into()
        };
    }
    let a = v.abs();
    if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

const SCENARIOS: &[(&str, &str, &str)] = &[
    ("steady", "1. Steady load", "redis-benchmark `-t set -P 16 -c 50 -r 100000`, 100 B then 1 KB values, against each topology started fresh per run; lag = PUBLISH on the origin → message on a SUBSCRIBE at the far replica, one probe every 5 ms (idle: 1.5 s of probes; loaded: during the load and until the far replica drained). CPU/RSS from /proc of each agent (default link config: zstd level 1)."),
    ("ceiling", "2–3. Cost and relay ceiling (log → QUIC → log, no Redis in the loop)", "B is stopped (SIGTERM), the backlog is written into A with 1 KB SETs, B is started and timed until its `georelay_log_head_offset` reaches A's. `link.compression = \"none\"` so both rows move the same bytes. The raw quinn row sends the same number of bytes on one stream with the agents' default transport settings (BBR, 8 MiB windows, 8 MiB socket buffers), both ends in the bench process."),
    ("catchup", "4. Catch-up to the far replica after an outage", "Baseline: a direct replica is SIGSTOPped while the backlog is written (the master holds it in the replica output buffer), then SIGCONTed. Agent chain: agent B is stopped (SIGTERM) while the backlog is written into A, then started; its Redis replica stays up and reconnects by itself (Redis retries once a second). Timed from B's start until the far replica's offset reaches the origin's. (wan-sim's user-space relay tops out near 40 MB/s here, below the link, so it is not used for this row; scenario 6 goes through it.)"),
    ("fullsync", "5. Full sync of a new far replica", "1M keys with 100 random bytes each, loaded before the agents start. A new empty redis-server gets `REPLICAOF`; timed until `master_link_status:up`. Origin forks = delta of the origin's `sync_full`."),
    ("lossy", "6. Lossy WAN (wan-sim, 25 ms each way = 50 ms RTT)", "Agent chain through wan-sim with the given loss and congestion controller (`link.congestion`); `link.compression = \"none\"`. Idle lag: probes every 10 ms for 2 s. Sustained = far replica offset progress over a fixed window while a 1 KB SET burst larger than the link carries is queued (the link is saturated). Catch-up = B's log progress over the same window after an outage (cut with the outage file, a backlog written, restored), counted from the first byte. Raw quinn = one stream through an identical wan-sim with the same controller, over the same window. The windows are time-bounded because a lossy link moves only a fraction of a MB/s."),
    ("wanbytes", "7. WAN bytes on a realistic mix", "Generated mix: 45% JSON user documents (~300 B), 30% counters (INCR/INCRBY), 20% session hashes (4 fields), 5% leaderboard ZADD, pipelined 1000 at a time. Link bytes = `georelay_link_bytes_total` (UDP payload incl. QUIC overhead) / origin `master_repl_offset` delta."),
];

fn render(
    res: &Results,
    m: &BTreeMap<&str, String>,
    targets: &[Target],
    o: &Opts,
    wall: f64,
) -> (String, Vec<Row>) {
    let mut rows = Vec::new();
    let mut md = String::new();
    md.push_str("# georelay benchmarks\n\n");
    md.push_str("Generated by `scripts/bench.sh` (the `georelay-bench` runner in `bench/main.rs`); everything above the analysis marker is rewritten on every run.\n\n");
    md.push_str("## Machine\n\n| | |\n|---|---|\n");
    for (k, v) in m {
        md.push_str(&format!("| {k} | {v} |\n"));
    }
    md.push_str(&format!(
        "| runs per scenario | {} |\n| bench wall time | {:.0} s |\n\n",
        o.runs, wall
    ));
    md.push_str("The machine is shared with other work (2 cores): absolute numbers are noisy, compare the ratios within one run — every table puts the baseline next to georelay, measured in the same run. Cells are `median [min – max]` over the runs.\n\n");
    md.push_str(
        "## Targets (from issue 5)\n\n| target | measured (medians) | met |\n|---|---|---|\n",
    );
    for t in targets {
        md.push_str(&format!(
            "| {} | {} | {} |\n",
            t.target,
            t.measured,
            if t.met { "met" } else { "**missed**" }
        ));
    }
    md.push('\n');
    for (sc, title, how) in SCENARIOS {
        let srows: Vec<_> = res.rows.iter().filter(|r| r.0 == *sc).collect();
        if srows.is_empty() {
            continue;
        }
        let rerun = format!("scripts/bench.sh --only {sc} --runs {}", o.runs);
        md.push_str(&format!("## {title}\n\n{how}\n\nRerun: `{rerun}`\n\n"));
        let mut cases: Vec<&str> = Vec::new();
        let mut metrics: Vec<(&str, &str)> = Vec::new();
        for r in &srows {
            if !cases.contains(&r.1.as_str()) {
                cases.push(&r.1);
            }
            if !metrics.iter().any(|m| m.0 == r.2) {
                metrics.push((&r.2, &r.3));
            }
        }
        md.push_str("| metric | unit |");
        for c in &cases {
            md.push_str(&format!(" {c} |"));
        }
        md.push_str("\n|---|---|");
        for _ in &cases {
            md.push_str("---|");
        }
        md.push('\n');
        for (metric, unit) in &metrics {
            md.push_str(&format!("| {metric} | {unit} |"));
            for c in &cases {
                match srows.iter().find(|r| r.1 == *c && r.2 == *metric) {
                    Some(r) => {
                        let (med, lo, hi) = stats(&r.4);
                        md.push_str(&format!(" {} [{} – {}] |", fmt(med), fmt(lo), fmt(hi)));
                    }
                    None => md.push_str(" |"),
                }
            }
            md.push('\n');
        }
        if let Some(notes) = res.notes.get(*sc) {
            md.push('\n');
            for n in notes {
                md.push_str(&format!("- {n}\n"));
            }
        }
        md.push('\n');
        for r in srows {
            let (median, min, max) = stats(&r.4);
            rows.push(Row {
                scenario: r.0.clone(),
                case: r.1.clone(),
                metric: r.2.clone(),
                unit: r.3.clone(),
                values: r.4.clone(),
                median,
                min,
                max,
                rerun: rerun.clone(),
            });
        }
    }
    (md, rows)
}

fn targets(res: &Results) -> Vec<Target> {
    let mut t = Vec::new();
    let g = |sc: &str, case: &str, m: &str| res.med(sc, case, m).unwrap_or(f64::NAN);
    let (d, n, a) = (
        Topo::Direct.label(),
        Topo::Native.label(),
        Topo::Agents.label(),
    );
    if res.rows.iter().any(|r| r.0 == "steady") {
        let (ad, dd) = (
            g("steady", a, "idle lag p99"),
            g("steady", d, "idle lag p99"),
        );
        t.push(Target {
            target: "Lag: agent-chain idle p99 ≤ direct p99 + 1 ms".into(),
            measured: format!("{} ms vs {} ms + 1", fmt(ad), fmt(dd)),
            met: ad <= dd + 1.0,
        });
        let (al, nl) = (
            g("steady", a, "100 B: loaded lag p99"),
            g("steady", n, "100 B: loaded lag p99"),
        );
        t.push(Target {
            target: "Lag: agent-chain p99 under the 100 B load ≤ native chain p99".into(),
            measured: format!("{} ms vs {} ms", fmt(al), fmt(nl)),
            met: al <= nl,
        });
        let k = "100 B: far replica keeps up (drain ≤ 1 s)";
        let runs = |case: &str| {
            res.rows
                .iter()
                .find(|r| r.0 == "steady" && r.1 == case && r.2 == k)
                .map(|r| r.4.clone())
                .unwrap_or_default()
        };
        let (ak, nk) = (runs(a), runs(n));
        let met = ak.iter().zip(nk.iter()).all(|(x, y)| *x >= *y);
        t.push(Target { target: "Keeping up: far replica keeps up with the 100 B load whenever the native chain does".into(), measured: format!("runs kept up: agents {:?}, native {:?}", ak, nk), met });
    }
    let sizes: Vec<String> = res
        .rows
        .iter()
        .filter(|r| r.0 == "ceiling" && r.1.starts_with("agents"))
        .map(|r| r.1.clone())
        .fold(Vec::new(), |mut v, c| {
            if !v.contains(&c) {
                v.push(c)
            }
            v
        });
    if !sizes.is_empty() {
        let mut cpu_ratios = Vec::new();
        let mut tp_ratios = Vec::new();
        let mut rss = Vec::new();
        for c in &sizes {
            let q = c
                .replace("agents A→B, ", "raw quinn, one stream, ")
                .replace(" backlog", "");
            cpu_ratios.push(
                g("ceiling", c, "A+B CPU per GB relayed")
                    / g("ceiling", &q, "A+B CPU per GB relayed"),
            );
            tp_ratios.push(
                g("ceiling", c, "log→QUIC→log catch-up")
                    / g("ceiling", &q, "log→QUIC→log catch-up"),
            );
            let max_rss = |m: &str| {
                res.rows
                    .iter()
                    .find(|r| r.0 == "ceiling" && r.1 == *c && r.2 == m)
                    .map(|r| stats(&r.4).2)
                    .unwrap_or(f64::NAN)
            };
            rss.push(max_rss("A peak RSS (VmHWM)").max(max_rss("B peak RSS (VmHWM)")));
        }
        t.push(Target {
            target: "CPU: agent (A+B) CPU ≤ 1.5× raw quinn's for the same bytes".into(),
            measured: format!(
                "{} × ({})",
                cpu_ratios
                    .iter()
                    .map(|x| fmt(*x))
                    .collect::<Vec<_>>()
                    .join(" / "),
                sizes.join(" / ")
            ),
            met: cpu_ratios.iter().all(|x| *x <= 1.5),
        });
        t.push(Target {
            target: "Relay ceiling ≥ 70% of raw quinn throughput".into(),
            measured: format!(
                "{} ({})",
                tp_ratios
                    .iter()
                    .map(|x| format!("{:.0}%", x * 100.0))
                    .collect::<Vec<_>>()
                    .join(" / "),
                sizes.join(" / ")
            ),
            met: tp_ratios.iter().all(|x| *x >= 0.7),
        });
        let flat = rss.last().copied().unwrap_or(f64::NAN)
            <= rss.first().copied().unwrap_or(f64::NAN) * 1.15 + 4.0;
        t.push(Target {
            target: "Memory: agent peak RSS ≤ 64 MiB, flat from the small to the large backlog"
                .into(),
            measured: format!(
                "max of A, B over runs: {} MiB ({})",
                rss.iter().map(|x| fmt(*x)).collect::<Vec<_>>().join(" / "),
                sizes.join(" / ")
            ),
            met: rss.iter().all(|x| *x <= 64.0) && flat,
        });
    }
    if res.rows.iter().any(|r| r.0 == "fullsync") {
        let (f, dd) = (
            g(
                "fullsync",
                "far replica from B's snapshot",
                "full sync time",
            ),
            g("fullsync", "direct from the master", "full sync time"),
        );
        let forks = res
            .rows
            .iter()
            .find(|r| {
                r.0 == "fullsync" && r.1.starts_with("far") && r.2.starts_with("origin forks")
            })
            .map(|r| r.4.iter().sum::<f64>())
            .unwrap_or(f64::NAN);
        t.push(Target {
            target: "Full sync: far ≤ 1.2× direct, 0 origin forks".into(),
            measured: format!(
                "{} s vs {} s ({:.2}×), forks {}",
                fmt(f),
                fmt(dd),
                f / dd,
                forks
            ),
            met: f <= 1.2 * dd && forks == 0.0,
        });
    }
    if res.rows.iter().any(|r| r.0 == "wanbytes") {
        let z = g(
            "wanbytes",
            "link.compression = \"zstd\"",
            "A→B link bytes per stream byte",
        );
        t.push(Target {
            target: "Compression: ≤ 0.5 link bytes per stream byte with zstd (realistic mix)"
                .into(),
            measured: format!(
                "{} (none: {})",
                fmt(z),
                fmt(g(
                    "wanbytes",
                    "link.compression = \"none\"",
                    "A→B link bytes per stream byte"
                ))
            ),
            met: z <= 0.5,
        });
    }
    t
}

fn main() -> Result<()> {
    let o = Opts::parse();
    START.get_or_init(Instant::now);
    LINK_EXTRA.get_or_init(|| o.link_extra.replace("\\n", "\n"));
    let wall0 = Instant::now();
    let exe = std::env::current_exe()?;
    let georelay = exe.with_file_name("georelay");
    if !georelay.exists() {
        bail!(
            "{} not found: build with `cargo build --release`",
            georelay.display()
        );
    }
    let _ = std::fs::remove_dir_all(&o.work);
    std::fs::create_dir_all(&o.work)?;
    let pki = o.work.join("pki");
    std::fs::create_dir_all(&pki)?;
    georelay::link::certs::make_test_pki(&pki, &["site-a", "region-b"])?;
    let env = Env {
        georelay,
        work: o.work.clone(),
        pki,
        seq: Default::default(),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let m = machine();
    let mut res = Results::default();
    let only: Vec<&str> = o.only.split(',').map(|s| s.trim()).collect();
    for sc in &only {
        let t = Instant::now();
        let r = match *sc {
            "steady" => steady(&env, &o, &mut res),
            "ceiling" => ceiling(&env, &o, &mut res, &rt),
            "catchup" => catchup(&env, &o, &mut res),
            "fullsync" => fullsync(&env, &o, &mut res),
            "lossy" => lossy(&env, &o, &mut res, &rt),
            "wanbytes" => wanbytes(&env, &o, &mut res),
            other => bail!("unknown scenario {other}"),
        };
        if let Err(e) = r {
            res.note(sc, format!("scenario failed: {e:#}"));
        }
        eprintln!("== {sc} took {:.0} s", t.elapsed().as_secs_f64());
    }
    let mut m = m;
    m.insert("loadavg_end", sh("cat /proc/loadavg"));
    let tg = targets(&res);
    let (md, rows) = render(&res, &m, &tg, &o, wall0.elapsed().as_secs_f64());
    let json = serde_json::json!({ "machine": m, "options": format!("{o:?}"), "targets": tg, "rows": rows, "notes": res.notes });
    if o.dry {
        println!("{md}");
    } else {
        std::fs::create_dir_all(&o.out_dir)?;
        let path = o.out_dir.join("BENCHMARKS.md");
        let marker = "<!-- analysis -->";
        let keep = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| t.find(marker).map(|i| t[i..].to_string()))
            .unwrap_or_else(|| format!("{marker}\n\n## Analysis\n\n(not written yet)\n"));
        std::fs::write(&path, format!("{md}{keep}"))?;
        std::fs::write(
            o.out_dir.join("benchmarks.json"),
            serde_json::to_string_pretty(&json)? + "\n",
        )?;
        eprintln!("wrote {} and benchmarks.json", path.display());
    }
    let _ = std::fs::remove_dir_all(&o.work);
    Ok(())
}
