//! Integration: the replica port speaks to the clients and tools people use. redis-py 8.1 with
//! its default protocol (RESP3), with `protocol=3` and `protocol=2`; `redis-cli -3`; the
//! Debian prometheus-redis-exporter scraping it without an error; CLIENT, CONFIG GET, COMMAND
//! and the refusals, over a real agent replicating a real Redis.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::prom::{require, run_ok};
use support::{agent_config, free_port, http_get, start_replica, wait_until, Agent, Client, Redis};

const LONG: Duration = Duration::from_secs(60);

/// The agent's replica-port INFO field.
fn agent_info(agent: &Agent, section: &str, field: &str) -> String {
    support::info_field(&mut Client::connect(agent.redis_port), section, field)
}

/// A chain origin → agent → one Redis replica, caught up, with the origin's version known.
fn chain() -> (Redis, Agent, Redis) {
    let master = Redis::start(&[]);
    let agent = Agent::start(&agent_config(&master.addr(), ""));
    let replica = start_replica(&agent.addr(), &[]);
    let mut m = master.client();
    m.cmd(&["SET", "k", "v"]);
    wait_until(LONG, "the replica is online behind the agent", || {
        agent_info(&agent, "replication", "connected_slaves") == "1"
            && replica.info_field("replication", "master_link_status") == "up"
    });
    (master, agent, replica)
}

fn python(script: &str) -> String {
    require("python3", "python3");
    run_ok(Command::new("python3").arg("-c").arg(script))
}

#[test]
fn redis_py_default_resp3_and_resp2_and_redis_cli_3() {
    let (master, agent, _replica) = chain();
    let origin_version = master.info_field("server", "redis_version");
    assert!(!origin_version.is_empty());
    let script = format!(
        r#"
import redis
assert redis.__version__.startswith("8.1"), "redis-py 8.1 needed, found " + redis.__version__
port = {port}
for kw in ({{}}, {{"protocol": 3}}, {{"protocol": 2}}):
    r = redis.Redis(port=port, **kw)
    assert r.ping() is True
    repl = r.info("replication")
    assert repl["role"] == "slave", repl
    assert repl["connected_slaves"] == 1, repl
    assert repl["master_link_status"] == "up", repl
    server = r.info("server")
    assert str(server["redis_version"]) == "{ver}", server
    assert "georelay_version" in server, server
    assert r.client_setname("tool") is True
    assert r.client_getname() in ("tool", b"tool")
    assert r.echo("hi") == b"hi"
    assert r.config_get("maxmemory") == {{"maxmemory": "0"}}
    assert isinstance(r.time()[0], int)
    me = r.client_info()
    assert me["name"] == "tool" and me["lib-name"] == "redis-py", me
    assert str(me["resp"]) == str(kw.get("protocol", 3)), me
    try:
        r.get("k")
        raise SystemExit("GET answered")
    except redis.ResponseError as e:
        assert "replica port" in str(e), e
    r.close()
print("ok")
"#,
        port = agent.redis_port,
        ver = origin_version
    );
    assert!(python(&script).contains("ok"));

    require("redis-cli", "redis-tools");
    let port = agent.redis_port.to_string();
    let out = run_ok(Command::new("redis-cli").args(["-3", "-p", &port, "PING"]));
    assert_eq!(out.trim(), "PONG");
    let hello = run_ok(Command::new("redis-cli").args(["-3", "-p", &port, "HELLO", "3"]));
    assert!(hello.contains("proto") && hello.contains('3'), "{hello}");
    assert!(hello.contains(&origin_version), "{hello}");
}

#[test]
fn hello_client_and_config_edge_cases() {
    let (_master, agent, _replica) = chain();
    let mut c = Client::connect(agent.redis_port);
    let text = |f: &georelay::resp::Frame| support::frame_text(f);
    assert!(text(&c.cmd(&["HELLO", "4"])).starts_with("NOPROTO"));
    assert!(text(&c.cmd(&["HELLO", "x"])).contains("not an integer"));
    assert!(text(&c.cmd(&["HELLO", "3", "BOGUS"])).contains("Syntax error"));
    // Still RESP2 after the refusals: a flat array answer.
    let reply = c.cmd(&["HELLO", "2", "SETNAME", "me"]);
    let georelay::resp::Frame::Array(items) = &reply else {
        panic!("HELLO 2 is a flat array: {reply:?}");
    };
    assert_eq!(items.len(), 14, "{reply:?}");
    assert_eq!(c.cmd_str(&["CLIENT", "GETNAME"]), "me");
    assert!(c
        .cmd_str(&["CLIENT", "SETNAME", "a b"])
        .contains("cannot contain spaces"));
    // RESP3 from now on: raw bytes show the map type.
    c.send(&["HELLO", "3"]);
    let _ = c.read_frame().expect("HELLO 3 reply");
    c.send_raw(b"*3\r\n$6\r\nCONFIG\r\n$3\r\nGET\r\n$14\r\nrepl-backlog-*\r\n")
        .expect("send");
    let raw = c.read_frame().expect("CONFIG GET");
    let flat = text(&raw);
    assert!(flat.contains("repl-backlog-size"), "{flat}");
    assert_eq!(c.cmd_str(&["SELECT", "0"]), "OK");
    assert!(c.cmd_str(&["SELECT", "1"]).contains("only SELECT 0"));
    assert!(c.cmd_str(&["DBSIZE"]).contains("replica port"));
    assert!(c.cmd_str(&["SET", "a", "b"]).starts_with("READONLY"));
    assert_eq!(c.cmd_str(&["SLOWLOG", "LEN"]), "0");
    assert_eq!(c.cmd_str(&["LATENCY", "LATEST"]), "");
    assert_eq!(c.cmd_str(&["MEMORY", "USAGE", "k"]), "(nil)");
    let count: usize = c.cmd_str(&["COMMAND", "COUNT"]).parse().expect("a count");
    let georelay::resp::Frame::Array(cmds) = c.cmd(&["COMMAND"]) else {
        panic!("COMMAND is an array");
    };
    assert_eq!(cmds.len(), count);

    // CLIENT KILL reaches another connection of this port, and a replica by TYPE.
    let mut victim = Client::connect(agent.redis_port);
    let victim_id = victim.cmd_str(&["CLIENT", "ID"]);
    assert_eq!(c.cmd_str(&["CLIENT", "KILL", "ID", &victim_id]), "1");
    assert!(
        victim.try_cmd(&["PING"]).is_err(),
        "a killed client is closed"
    );
    let list = c.cmd_str(&["CLIENT", "LIST", "TYPE", "replica"]);
    assert_eq!(list.lines().count(), 1, "{list}");
    assert_eq!(c.cmd_str(&["CLIENT", "KILL", "TYPE", "replica"]), "1");
    wait_until(LONG, "the killed replica is gone and reconnects", || {
        agent_info(&agent, "replication", "connected_slaves") == "1"
    });
}

/// The INFO fields Redis Sentinel parses from a replica (`sentinelRefreshInstanceInfo` in
/// sentinel.c) are there and truthful, and the agent is never a promotion candidate.
#[test]
fn sentinel_reads_a_replica_it_will_never_promote() {
    let (master, agent, _replica) = chain();
    let run_id = agent_info(&agent, "server", "run_id");
    assert_eq!(run_id.len(), 40, "{run_id}");
    assert!(run_id.bytes().all(|b| b.is_ascii_hexdigit()), "{run_id}");
    assert_eq!(agent_info(&agent, "replication", "role"), "slave");
    assert_eq!(
        agent_info(&agent, "replication", "master_host"),
        "127.0.0.1"
    );
    assert_eq!(
        agent_info(&agent, "replication", "master_port"),
        master.port.to_string()
    );
    assert_eq!(
        agent_info(&agent, "replication", "master_link_status"),
        "up"
    );
    let offset: u64 = agent_info(&agent, "replication", "slave_repl_offset")
        .parse()
        .expect("slave_repl_offset is a number");
    assert!(offset > 0);
    assert_eq!(agent_info(&agent, "replication", "slave_priority"), "0");
    assert_eq!(agent_info(&agent, "replication", "replica_announced"), "1");
    let slave0 = agent_info(&agent, "replication", "slave0");
    for part in ["ip=127.0.0.1", "port=", "state=online", "offset="] {
        assert!(slave0.contains(part), "{slave0}");
    }
    let mut c = Client::connect(agent.redis_port);
    let georelay::resp::Frame::Array(kv) = c.cmd(&["CONFIG", "GET", "replica-priority"]) else {
        panic!("CONFIG GET answers an array");
    };
    assert_eq!(support::frame_text(&kv[1]), "0");
}

struct Exporter(Child);

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn prometheus_redis_exporter_scrapes_the_agent_without_errors() {
    require(
        "prometheus-redis-exporter",
        "apt-get install prometheus-redis-exporter",
    );
    let (master, agent, _replica) = chain();
    let origin_version = master.info_field("server", "redis_version");
    let port = free_port();
    let work = tempfile::tempdir().expect("tempdir");
    let log_path = work.path().join("exporter.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let child = Command::new("prometheus-redis-exporter")
        .arg(format!(
            "--redis.addr=redis://127.0.0.1:{}",
            agent.redis_port
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start the exporter");
    let _exporter = Exporter(child);
    let mut body = String::new();
    wait_until(LONG, "the exporter serves /metrics", || {
        match http_get(port, "/metrics") {
            Some((200, b)) if b.contains("redis_up") => {
                body = b;
                true
            }
            _ => false,
        }
    });
    let value = |name: &str| -> f64 {
        body.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from the exporter's output:\n{body}"))
    };
    assert_eq!(value("redis_up"), 1.0);
    assert_eq!(value("redis_connected_slaves"), 1.0);
    assert_eq!(value("redis_exporter_last_scrape_error"), 0.0);
    let head = agent_info(&agent, "replication", "master_repl_offset");
    let head: f64 = head.parse().expect("offset");
    assert!(value("redis_master_repl_offset") > 0.0);
    assert!(value("redis_slave_repl_offset") <= head);
    assert!(
        body.contains("redis_connected_slave_offset_bytes"),
        "{body}"
    );
    assert!(
        body.contains(&format!("redis_version=\"{origin_version}\"")),
        "the origin's version is exported:\n{body}"
    );
    let log = std::fs::read_to_string(&log_path).expect("exporter log");
    assert!(
        !log.contains("level=error") && !log.contains("level=warn"),
        "the exporter logged a problem:\n{log}"
    );
}
