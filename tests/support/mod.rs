//! Test helpers: real redis-server processes and georelay agents on free loopback ports, a
//! small blocking RESP client, metrics scraping, and waiting on conditions with deadlines.
#![allow(dead_code)]

pub mod agent;
pub mod client;
pub mod devkit;
pub mod load;
pub mod logfiles;
pub mod prom;
pub mod servers;
pub mod wansim;

// Re-exported for the test binaries; each uses only some of them.
#[allow(unused_imports)]
pub use agent::{agent_config, agent_config_from_agent, Agent};
#[allow(unused_imports)]
pub use client::{frame_text, info_field, try_info_field, Client};
#[allow(unused_imports)]
pub use devkit::{free_port, free_udp_port, http_get, metric_value, scrape, MetricsError};
#[allow(unused_imports)]
pub use servers::ServerKind;
#[allow(unused_imports)]
pub use wansim::WanSimProc;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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
