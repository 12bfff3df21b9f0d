//! Integration: Redis's own tools against the agent, and bad input: configs, passwords,
//! garbage on the replica port, a second agent on the same data dir.

mod support;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::load::write_mixed;
use support::{agent_config, start_replica, wait_digests_equal, wait_until, Agent, Client, Redis};

const LONG: Duration = Duration::from_secs(120);

#[test]
fn redis_cli_rdb_and_replica_work_against_the_agent() {
    let master = Redis::start(&[]);
    let agent = Agent::start(&agent_config(&master.addr(), ""));
    write_mixed(master.port, 0, 5_000, "r");
    wait_until(LONG, "the agent has a snapshot", || {
        agent.metric("georelay_upstream_connected", &[]) == 1.0
    });

    let out = tempfile::tempdir().unwrap();
    let rdb = out.path().join("dump.rdb");
    let status = Command::new("redis-cli")
        .args(["-p", &agent.redis_port.to_string(), "--rdb"])
        .arg(&rdb)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run redis-cli --rdb");
    assert!(status.success(), "redis-cli --rdb failed: {status}");
    let check = Command::new("redis-check-rdb")
        .arg(&rdb)
        .output()
        .expect("run redis-check-rdb");
    assert!(
        check.status.success(),
        "redis-check-rdb rejected the agent's RDB: {}",
        String::from_utf8_lossy(&check.stdout)
    );

    let mut cli = Command::new("redis-cli")
        .args(["-p", &agent.redis_port.to_string(), "--replica"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run redis-cli --replica");
    let mut stdout = cli.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let mut seen = String::new();
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            if seen.contains("hello-from-the-origin") {
                let _ = tx.send(seen.clone());
                break;
            }
        }
    });
    let mut got = None;
    for _ in 0..100 {
        master.client().cmd(&["SET", "hello-from-the-origin", "1"]);
        if let Ok(s) = rx.recv_timeout(Duration::from_millis(300)) {
            got = Some(s);
            break;
        }
    }
    let _ = cli.kill();
    let _ = cli.wait();
    assert!(
        got.is_some(),
        "redis-cli --replica never printed the live stream"
    );
}

#[test]
fn bad_config_exits_64_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "data_dir = \"d\"\n[upstream]\nredis = \"127.0.0.1:6379\"\n[log]\nfsync = \"sometimes\"\n",
    )
    .unwrap();
    for sub in ["check", "run"] {
        let out = Command::new(env!("CARGO_BIN_EXE_georelay"))
            .args([sub, "--config"])
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(64), "{sub}: wrong exit status");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("log.fsync"),
            "{sub}: message does not name the key: {err}"
        );
    }
    std::fs::write(
        &path,
        "data_dir = \"d\"\n[upstream]\nredis = \"127.0.0.1:6379\"\nbogus = 1\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_georelay"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("bogus"),
        "unknown key not named"
    );
}

#[test]
fn replica_port_auth_and_garbage() {
    let master = Redis::start(&[]);
    let agent = Agent::start(&agent_config(
        &master.addr(),
        "[serve]\nrequirepass = \"s3cret\"\n",
    ));
    let good = start_replica(&agent.addr(), &["--masterauth", "s3cret"]);
    write_mixed(master.port, 0, 5_000, "g");
    wait_digests_equal(&master, &[&good], LONG);

    let mut c = Client::connect(agent.redis_port);
    let r = c.cmd_str(&["PSYNC", "?", "-1"]);
    assert!(r.starts_with("NOAUTH"), "PSYNC without AUTH: {r}");
    let r = c.cmd_str(&["AUTH", "wrong"]);
    assert!(
        r.starts_with("WRONGPASS"),
        "AUTH with a wrong password: {r}"
    );
    let r = c.cmd_str(&["AUTH", "s3cret"]);
    assert_eq!(r, "OK");
    let r = c.cmd_str(&["SET", "k", "v"]);
    assert!(r.starts_with("READONLY"), "a write got {r}");
    let r = c.cmd_str(&["FROBNICATE"]);
    assert!(
        r.starts_with("ERR unknown command"),
        "unknown command got {r}"
    );

    // A real replica with the wrong masterauth never syncs.
    let bad = start_replica(&agent.addr(), &["--masterauth", "nope"]);
    // Garbage and oversize bulk lengths: an error reply and a closed connection.
    let long_line = vec![b'A'; 100 * 1024];
    for junk in [
        &b"*1\r\n$999999999999\r\n"[..],
        b"*2\r\n$4\r\nPING\r\n:oops\r\n",
        b"*abc\r\n",
        &long_line,
    ] {
        let mut g = Client::connect(agent.redis_port);
        g.send_raw(junk).unwrap();
        let reply =
            String::from_utf8_lossy(&g.read_until_close(Duration::from_secs(10))).into_owned();
        assert!(
            reply.starts_with("-ERR Protocol error"),
            "garbage {:?} got {reply:?}",
            &junk[..junk.len().min(40)]
        );
    }
    write_mixed(master.port, 5_000, 10_000, "g");
    wait_digests_equal(&master, &[&good], LONG);
    assert_eq!(
        bad.info_field("replication", "master_link_status"),
        "down",
        "a replica with a wrong masterauth synced"
    );
    wait_until(
        LONG,
        "the wrong-password replica reports the refused AUTH",
        || bad.log_text().contains("WRONGPASS"),
    );
    wait_until(LONG, "the agent logs the failed AUTH", || {
        agent.log_text().contains("AUTH failed")
    });
    assert_eq!(
        support::http_get(agent.admin_port, "/healthz").map(|r| r.0),
        Some(200)
    );
}

#[test]
fn a_second_agent_on_the_same_data_dir_refuses_to_start() {
    let master = Redis::start(&[]);
    let agent = Agent::start(&agent_config(&master.addr(), ""));
    let text = std::fs::read_to_string(&agent.config_path)
        .unwrap()
        .replace(
            &agent.redis_port.to_string(),
            &support::free_port().to_string(),
        )
        .replace(
            &agent.admin_port.to_string(),
            &support::free_port().to_string(),
        );
    let second = agent.work.path().join("second.toml");
    std::fs::write(&second, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_georelay"))
        .args(["run", "--config"])
        .arg(&second)
        .output()
        .expect("run a second agent");
    assert!(
        !out.status.success(),
        "a second agent started on the same data dir"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("another georelay agent"),
        "unclear refusal: {err}"
    );
}
