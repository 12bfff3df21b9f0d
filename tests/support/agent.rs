//! A georelay agent process for tests: its config, start/stop/restart, logs and metrics.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, http_get, metric_value, scrape, wait_until, MetricsError};

/// Config of an agent whose upstream is another agent at `upstream` (QUIC).
pub fn agent_config_from_agent(name: &str, upstream: &str, extra: &str) -> String {
    format!(
        "name = \"{name}\"\ndata_dir = \"{{data_dir}}\"\n[upstream]\nagent = \"{upstream}\"\n\
         [listen]\nredis = \"127.0.0.1:{{redis_port}}\"\nadmin = \"127.0.0.1:{{admin_port}}\"\n{extra}"
    )
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
    /// A command the agent runs under (e.g. `strace -f -o …`), empty for none.
    wrapper: Vec<String>,
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
        Agent::start_inner(config, Vec::new(), Vec::new())
    }

    /// Starts an agent under `wrapper` (a command and its arguments, e.g. `strace -f -o f`),
    /// which must run `georelay run --config …` as its child. Stop it with
    /// [`Agent::traced_pid`]: signals to the wrapper need not reach the agent.
    pub fn start_wrapped(config: &str, wrapper: &[String]) -> Agent {
        Agent::start_inner(config, Vec::new(), wrapper.to_vec())
    }

    /// The agent process under the wrapper (the wrapper's only child).
    pub fn traced_pid(&self) -> Option<u32> {
        let pid = self.child.as_ref()?.id();
        let kids = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
        kids.split_whitespace().next()?.parse().ok()
    }

    fn start_inner(config: &str, env: Vec<(String, String)>, wrapper: Vec<String>) -> Agent {
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
            wrapper,
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
            Vec::new(),
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
        Self::spawn_env(config_path, log_path, &[], &[])
    }

    fn spawn_env(
        config_path: &Path,
        log_path: &Path,
        env: &[(String, String)],
        wrapper: &[String],
    ) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)
            .expect("agent log file");
        let georelay = env!("CARGO_BIN_EXE_georelay");
        let mut cmd = match wrapper.split_first() {
            Some((w, args)) => {
                let mut c = Command::new(w);
                c.args(args).arg(georelay);
                c
            }
            None => Command::new(georelay),
        };
        cmd.args(["run", "--config"])
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
        let child = Self::spawn_env(
            &self.config_path,
            &self.log_path(),
            &self.env,
            &self.wrapper,
        );
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
