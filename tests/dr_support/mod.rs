//! Helpers shared by the `dr_*` tests: admin HTTP requests with a bearer token, `/status`
//! reads that fail loudly, and the two-site topology (origin → A → wan-sim → B → replicas).

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use crate::support::{
    agent_config, agent_config_from_agent, free_udp_port, start_replica, wait_until, Agent, Pki,
    Redis, WanSimProc,
};

pub const TOKEN: &str = "dr-test-token-0123456789";

/// One HTTP/1.1 request to 127.0.0.1:`port`: (status code, body). Panics when the agent
/// cannot be reached, so no assertion runs against a dead agent.
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("admin port {port} unreachable: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    let body = body.unwrap_or("");
    req.push_str(&format!(
        "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ));
    s.write_all(req.as_bytes()).expect("send request");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("read response");
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_else(|| panic!("HTTP response without the end of its headers: {text:?}"));
    (code, body)
}

/// The agent's `/status` document (panics when it cannot be read or parsed).
pub fn status(a: &Agent) -> serde_json::Value {
    let (code, body) = http(a.admin_port, "GET", "/status", None, None);
    assert_eq!(code, 200, "/status: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("/status is not JSON ({e}): {body}"))
}

/// A counter from `/metrics` that must exist (the family is present), summed over samples.
pub fn counter(a: &Agent, name: &str, labels: &[(&str, &str)]) -> f64 {
    let (code, text) = http(a.admin_port, "GET", "/metrics", None, None);
    assert_eq!(code, 200, "/metrics answered {code}");
    assert!(
        text.lines()
            .any(|l| l.starts_with(&format!("# TYPE {name} "))),
        "metric family {name} missing from /metrics"
    );
    crate::support::metric_value(&text, name, labels)
        .unwrap_or_else(|e| panic!("{name} on admin port {}: {e}", a.admin_port))
}

/// `INFO` field of a server as a number (panics when missing).
pub fn info_u64(r: &Redis, section: &str, field: &str) -> u64 {
    let v = r.info_field(section, field);
    v.trim()
        .parse()
        .unwrap_or_else(|_| panic!("INFO {section} {field} = {v:?} on port {}", r.port))
}

/// A file holding the admin token, kept for the test's duration.
pub struct TokenFile {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
}

pub fn token_file() -> TokenFile {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("admin.token");
    std::fs::write(&path, format!("{TOKEN}\n")).expect("write token");
    TokenFile { dir, path }
}

/// Runs the `georelay` binary with `args`.
pub fn georelay(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_georelay"))
        .args(args)
        .output()
        .expect("run georelay")
}

/// origin → agent A → wan-sim → agent B → two region replicas, every agent with the admin
/// token, QUIC listeners on both sides (each can be the other's upstream), and
/// `upstream.ack = "remote"` on both (it applies whenever the upstream is a Redis master), and
/// `log.fsync = "always"` on both: under `ack = "remote"` a `WAIT 1` returns once the region
/// has fsynced the write, so with `everysec` each acknowledged write would take up to a second.
pub struct Sites {
    pub pki: Pki,
    pub token: TokenFile,
    pub origin: Redis,
    pub a: Agent,
    pub a_quic: u16,
    pub b: Agent,
    pub b_quic: u16,
    pub wan: WanSimProc,
    pub r1: Redis,
    pub r2: Redis,
}

fn quic_extra(pki: &Pki, node: &str, quic: u16, token: &TokenFile, upstream_name: &str) -> String {
    format!(
        "agent = \"127.0.0.1:{quic}\"\n{tls}[admin]\ntoken_file = \"{}\"\n[log]\nfsync = \"always\"\n",
        token.path.display(),
        tls = pki.tls_section(node, Some(upstream_name)),
    )
}

/// Builds the two sites; `wan_flags` impair A → B (e.g. `["--delay", "25ms"]`).
pub fn two_sites(wan_flags: &[&str]) -> Sites {
    two_sites_with(wan_flags, &[], "")
}

/// [`two_sites`] with extra origin server flags and extra config sections for agent A.
pub fn two_sites_with(wan_flags: &[&str], origin_args: &[&str], a_extra: &str) -> Sites {
    let pki = Pki::new(&["site-a", "region-b"]);
    let token = token_file();
    let mut args = vec!["--repl-backlog-size", "64mb"];
    args.extend_from_slice(origin_args);
    let origin = Redis::start(&args);
    let a_quic = free_udp_port();
    let b_quic = free_udp_port();
    // The config helpers end inside [listen]: `agent = …` there is listen.agent.
    let a_cfg = agent_config(
        &origin.addr(),
        &quic_extra(&pki, "site-a", a_quic, &token, "region-b"),
    )
    .replace("name = \"test-agent\"", "name = \"site-a\"")
    .replace("[upstream]\n", "[upstream]\nack = \"remote\"\n")
        + a_extra;
    let a = Agent::start(&a_cfg);
    let wan = WanSimProc::start(a_quic, wan_flags);
    let b_cfg = agent_config_from_agent(
        "region-b",
        &wan.addr(),
        &quic_extra(&pki, "region-b", b_quic, &token, "site-a"),
    )
    .replace("[upstream]\n", "[upstream]\nack = \"remote\"\n");
    let b = Agent::start(&b_cfg);
    let r1 = start_replica(&b.addr(), &[]);
    let r2 = start_replica(&b.addr(), &[]);
    wait_until(
        Duration::from_secs(60),
        "both region replicas online",
        || {
            [&r1, &r2]
                .iter()
                .all(|r| r.info_field("replication", "master_link_status") == "up")
        },
    );
    Sites {
        pki,
        token,
        origin,
        a,
        a_quic,
        b,
        b_quic,
        wan,
        r1,
        r2,
    }
}
