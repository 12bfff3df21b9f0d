//! The processes a scenario starts: redis-server, georelay agents and `georelay wan-sim`.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use georelay::resp::Frame;

use crate::client::Client;
use crate::devkit::{free_port, free_udp_port, http_get, metric_value, scrape};
use crate::harness::{spawn_tied, wait_for, Env, Proc, LINK_EXTRA};

pub struct Redis {
    pub port: u16,
    pub proc: Proc,
    pub dir: PathBuf,
}

impl Redis {
    pub fn start(env: &Env, name: &str, extra: &[&str]) -> Result<Redis> {
        Redis::start_on(env, name, free_port(), extra)
    }
    /// [`Redis::start`] on a given port (cluster nodes need theirs below the ephemeral range).
    pub fn start_on(env: &Env, name: &str, port: u16, extra: &[&str]) -> Result<Redis> {
        let dir = env.dir(name);
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
        let child = spawn_tied(
            Command::new("redis-server")
                .args(&args)
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
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
    pub fn replica_of(env: &Env, name: &str, port: u16) -> Result<Redis> {
        Redis::start(env, name, &["--replicaof", "127.0.0.1", &port.to_string()])
    }
    pub fn offset(&self) -> u64 {
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

pub fn offset(port: u16) -> u64 {
    info_field(port, "replication", "master_repl_offset")
        .parse()
        .unwrap_or(0)
}

pub fn info_field(port: u16, section: &str, field: &str) -> String {
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

pub enum Up {
    Redis(u16),
    Agent(u16),
}

pub struct Agent {
    pub name: String,
    pub admin: u16,
    pub redis_port: u16,
    pub quic: Option<u16>,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub georelay: PathBuf,
    pub proc: Proc,
}

impl Agent {
    /// `node` is "site-a" (upstream: Redis) or "region-b" (upstream: an agent).
    pub fn start(
        env: &Env,
        node: &str,
        up: Up,
        listen_agent: bool,
        link: &str,
        log: &str,
    ) -> Result<Agent> {
        Agent::start_with(env, node, up, listen_agent, link, log, "")
    }

    /// [`Agent::start`] with extra `[upstream]` lines (e.g. `ack = "remote"`).
    pub fn start_with(
        env: &Env,
        node: &str,
        up: Up,
        listen_agent: bool,
        link: &str,
        log: &str,
        upstream: &str,
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
        if !upstream.is_empty() {
            t.push_str(&format!("{upstream}\n"));
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

    pub fn restart(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("agent.log"))?;
        let child = spawn_tied(
            Command::new(&self.georelay)
                .args(["run", "--config"])
                .arg(&self.config)
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(log),
        )
        .context("spawn georelay")?;
        self.proc = Proc { child: Some(child) };
        let admin = self.admin;
        wait_for(Duration::from_secs(20), Duration::from_millis(10), || {
            http_get(admin, "/healthz").is_some_and(|(c, _)| c == 200)
        })
        .ok_or_else(|| anyhow!("agent {} did not become healthy", self.name))?;
        Ok(())
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        // A dead agent or a renamed metric stops the run instead of reading as 0.
        scrape(self.admin)
            .and_then(|text| metric_value(&text, name, labels))
            .unwrap_or_else(|e| panic!("agent {}: {e}", self.name))
    }
    pub fn head(&self) -> u64 {
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

pub struct WanSim {
    pub port: u16,
    pub outage: PathBuf,
    pub proc: Proc,
}

impl WanSim {
    pub fn start(env: &Env, forward: u16, flags: &[String]) -> Result<WanSim> {
        let dir = env.dir("wansim");
        let port = free_udp_port();
        let outage = dir.join("outage");
        let child = spawn_tied(
            Command::new(&env.georelay)
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
                .stderr(std::fs::File::create(dir.join("wansim.log"))?),
        )
        .context("spawn wan-sim")?;
        std::thread::sleep(Duration::from_millis(200));
        Ok(WanSim {
            port,
            outage,
            proc: Proc { child: Some(child) },
        })
    }
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }
    pub fn cut(&self) {
        std::fs::write(&self.outage, b"cut").unwrap();
    }
    pub fn restore(&self) {
        let _ = std::fs::remove_file(&self.outage);
    }
}
