//! Prometheus-side test helpers: metric names from `/metrics` text, the metric names a
//! dashboard or README names, a real `prometheus` server process with its HTTP API, and the
//! external tools the deploy checks need (with a clear failure when one is missing).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use super::{free_port, http_get, wait_until};

/// The repository root (where Cargo.toml is).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Whether `tool` can be run (found on PATH).
pub fn have(tool: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|d| {
            let p = d.join(tool);
            p.is_file()
                && std::fs::metadata(&p).is_ok_and(|m| {
                    use std::os::unix::fs::PermissionsExt;
                    m.permissions().mode() & 0o111 != 0
                })
        })
    })
}

/// Fails the test with an install hint when `tool` is missing: CI must not pass silently.
pub fn require(tool: &str, install_hint: &str) {
    assert!(
        have(tool),
        "`{tool}` is not installed; run scripts/install-deps.sh ({install_hint})"
    );
}

/// Runs a command, returning its output; panics when it cannot be started.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Runs a command and fails the test with its stdout and stderr unless it exits 0.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{text}",
        out.status
    );
    text
}

/// Metric family names in Prometheus text (from `# TYPE` lines), with their types.
pub fn metric_families(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?.to_string(), it.next()?.to_string()))
        })
        .collect()
}

/// Every `georelay_*` identifier in `text` (queries, markdown).
pub fn georelay_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let b = text.as_bytes();
    let mut i = 0;
    while let Some(pos) = text[i..].find("georelay_") {
        let start = i + pos;
        let before_ok =
            start == 0 || !(b[start - 1].is_ascii_alphanumeric() || b[start - 1] == b'_');
        let mut end = start;
        while end < b.len() && (b[end].is_ascii_alphanumeric() || b[end] == b'_') {
            end += 1;
        }
        if before_ok {
            out.insert(text[start..end].to_string());
        }
        i = end;
    }
    out
}

/// The `expr` of every target of every panel (rows' nested panels too) of a Grafana
/// dashboard, with its panel title.
pub fn dashboard_exprs(dash: &serde_json::Value) -> Vec<(String, String)> {
    fn walk(panels: &serde_json::Value, out: &mut Vec<(String, String)>) {
        for p in panels.as_array().into_iter().flatten() {
            let title = p["title"].as_str().unwrap_or("").to_string();
            for t in p["targets"].as_array().into_iter().flatten() {
                if let Some(e) = t["expr"].as_str() {
                    out.push((title.clone(), e.to_string()));
                }
            }
            walk(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dash["panels"], &mut out);
    out
}

/// A dashboard query made runnable outside Grafana: template variables match everything.
pub fn instantiate(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$__interval", "15s")
        .replace("$instance", ".*")
        .replace("$node", ".*")
        .replace("$peer", ".*")
        .replace("$shard", ".*")
}

/// Percent-encodes a query string value.
pub fn url_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A real Prometheus server (the `prometheus` binary) on a free loopback port, with its own
/// TSDB in a temp dir; killed on drop (its log is printed if the test is failing).
pub struct Prometheus {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Child,
}

impl Prometheus {
    /// Starts `prometheus` with `config` (YAML text) and waits until `/-/ready` answers 200.
    pub fn start(config: &str) -> Prometheus {
        require("prometheus", "Debian package `prometheus`");
        let dir = tempfile::tempdir().expect("tempdir");
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).expect("write prometheus.yml");
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log file");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--storage.tsdb.retention.time=1h")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn prometheus");
        let mut p = Prometheus { port, dir, child };
        wait_until(
            Duration::from_secs(60),
            "prometheus /-/ready answers 200",
            || {
                if let Ok(Some(status)) = p.child.try_wait() {
                    panic!("prometheus exited with {status}; log:\n{}", p.log_text());
                }
                http_get(port, "/-/ready").is_some_and(|(code, _)| code == 200)
            },
        );
        p
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// GET an API path; the parsed JSON body (any status).
    pub fn api(&self, path_and_query: &str) -> serde_json::Value {
        let (_, body) = http_get(self.port, path_and_query)
            .unwrap_or_else(|| panic!("prometheus GET {path_and_query}: no answer"));
        let body = dechunk(&body);
        serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("prometheus GET {path_and_query}: {e}: {body}"))
    }

    /// An instant query: the whole API answer (`status`, `data`, or `error`).
    pub fn query(&self, promql: &str) -> serde_json::Value {
        self.api(&format!("/api/v1/query?query={}", url_encode(promql)))
    }

    /// An instant query's vector result as (labels, value) pairs; panics on an API error.
    pub fn query_vector(&self, promql: &str) -> Vec<(serde_json::Value, f64)> {
        let v = self.query(promql);
        assert_eq!(v["status"], "success", "query {promql} failed: {v}");
        v["data"]["result"]
            .as_array()
            .unwrap_or_else(|| panic!("query {promql}: no result vector in {v}"))
            .iter()
            .map(|s| {
                let val = s["value"][1]
                    .as_str()
                    .and_then(|x| x.parse::<f64>().ok())
                    .unwrap_or(f64::NAN);
                (s["metric"].clone(), val)
            })
            .collect()
    }

    /// The active alerts (pending or firing): (alertname, state, labels).
    pub fn alerts(&self) -> Vec<(String, String, serde_json::Value)> {
        let v = self.api("/api/v1/alerts");
        assert_eq!(v["status"], "success", "GET /api/v1/alerts failed: {v}");
        let field = |a: &serde_json::Value, f: &str| -> String {
            let x = if f == "alertname" {
                &a["labels"][f]
            } else {
                &a[f]
            };
            x.as_str()
                .unwrap_or_else(|| panic!("alert without {f}: {a}"))
                .to_string()
        };
        v["data"]["alerts"]
            .as_array()
            .unwrap_or_else(|| panic!("/api/v1/alerts: no alerts list in {v}"))
            .iter()
            .map(|a| {
                (
                    field(a, "alertname"),
                    field(a, "state"),
                    a["labels"].clone(),
                )
            })
            .collect()
    }

    /// The scrape targets' health: (scrapeUrl, health, lastError).
    pub fn targets(&self) -> Vec<(String, String, String)> {
        let v = self.api("/api/v1/targets");
        assert_eq!(v["status"], "success", "GET /api/v1/targets failed: {v}");
        v["data"]["activeTargets"]
            .as_array()
            .unwrap_or_else(|| panic!("/api/v1/targets: no activeTargets list in {v}"))
            .iter()
            .map(|t| {
                (
                    t["scrapeUrl"].as_str().unwrap_or("").to_string(),
                    t["health"].as_str().unwrap_or("").to_string(),
                    t["lastError"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = self.log_text();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!(
                "--- prometheus log ---\n{}",
                lines[lines.len().saturating_sub(40)..].join("\n")
            );
        }
    }
}

/// Undoes HTTP/1.1 chunked transfer encoding if the body looks chunked.
fn dechunk(body: &str) -> String {
    let trimmed = body.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        return body.to_string();
    }
    let mut out = String::new();
    let mut rest = body;
    while let Some((size_line, after)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size_line.trim(), 16) else {
            break;
        };
        if size == 0 || after.len() < size {
            break;
        }
        out.push_str(&after[..size]);
        rest = after[size..].strip_prefix("\r\n").unwrap_or(&after[size..]);
    }
    out
}
