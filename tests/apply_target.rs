//! Apply mode against real servers: a Redis 7.0 origin → an agent with `[target]` → a Redis
//! 6.2 target (which cannot load RDB 10, so keys go as plain commands). The target equals the
//! origin key by key, and INCR counters and list lengths are exact after 20 SIGKILLs of the
//! applying agent; a restart re-applies nothing (counters); a target that needs a flush is
//! refused without `allow_flush`; a read-only target pauses the lane until it takes writes;
//! a command the target does not know stops the lane, naming it.

#[path = "apply/dataset.rs"]
mod dataset;
#[path = "apply/resume.rs"]
mod resume;
mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dataset::Keyspace;
use support::{agent_config, frame_text, http_get, wait_until, Agent, Client, Redis, ServerKind};

const LONG: Duration = Duration::from_secs(90);

fn target_config(origin: &Redis, target: &Redis, extra: &str) -> String {
    agent_config(
        &origin.addr(),
        &format!("[target]\nredis = \"{}\"\n{extra}", target.addr()),
    )
}

/// The agent's `target` row of `/status`.
fn target_row(agent: &Agent) -> Option<serde_json::Value> {
    let (code, body) = http_get(agent.admin_port, "/status")?;
    if code != 200 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    v.get("target")?.get(0).cloned()
}

fn row_field(agent: &Agent, field: &str) -> Option<String> {
    let r = target_row(agent)?;
    match r.get(field)? {
        serde_json::Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn origin_offset(origin: &Redis) -> u64 {
    origin
        .info_field("replication", "master_repl_offset")
        .parse()
        .expect("master_repl_offset is a number")
}

/// Waits until the target holds everything the origin has written so far.
fn wait_applied(agent: &Agent, origin: &Redis) {
    // The origin's offset means something only once the agent replicates it, and the
    // applier streams only after its full sync.
    wait_until(LONG, "the applier streams", || {
        row_field(agent, "state").as_deref() == Some("streaming")
    });
    let want = origin_offset(origin) as f64;
    agent.wait_metric("georelay_apply_offset", &[("shard", "main")], LONG, |v| {
        v >= want
    });
}

/// The target's keyspace without georelay's own checkpoint keys.
fn user_keys(c: &mut Client, dbs: &[u32]) -> Keyspace {
    let mut ks = dataset::read_server(c, dbs, false);
    ks.retain(|(_, k), _| !k.starts_with(b"georelay:"));
    ks
}

fn int(c: &mut Client, args: &[&str]) -> i64 {
    frame_text(&c.cmd(args))
        .parse()
        .unwrap_or_else(|_| panic!("{args:?} is not an integer"))
}

/// Writes only INCR / INCRBY / LPUSH on 16 counters and 16 lists until `stop` (or 20000
/// commands); returns the counters' and lists' expected values.
fn writer(port: u16, stop: Arc<AtomicBool>) -> (Vec<i64>, Vec<i64>) {
    let mut c = Client::connect(port);
    let mut send = |args: &[&str]| {
        if let georelay::resp::Frame::Error(e) = c.cmd(args) {
            panic!("{args:?} into the origin: {e}");
        }
    };
    let (mut counters, mut lists) = (vec![0i64; 16], vec![0i64; 16]);
    for n in 0..20_000u64 {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let k = (n % 16) as usize;
        match n % 3 {
            0 => {
                send(&["INCR", &format!("cnt:{k}")]);
                counters[k] += 1;
            }
            1 => {
                send(&["INCRBY", &format!("cnt:{k}"), "3"]);
                counters[k] += 3;
            }
            _ => {
                send(&["LPUSH", &format!("q:{k}"), &n.to_string()]);
                lists[k] += 1;
            }
        }
        if n % 20 == 0 {
            // Pacing: spread the writes over the kill loop.
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    (counters, lists)
}

#[test]
fn redis70_into_redis62_is_exact_after_20_kills_and_a_restart_reapplies_nothing() {
    let origin = Redis::start(&[]);
    let target = Redis::start_kind(ServerKind::Redis62, &[]);
    let mut oc = origin.client();
    dataset::populate(&mut oc, ServerKind::Redis70, "t");
    support::load::write_sets(origin.port, 20_000, 32, "bulk");
    // 50 ms per full-sync batch: a load takes seconds, so kills land in it.
    let mut agent = Agent::start_env(
        &target_config(&origin, &target, "on_unknown = \"skip\"\n"),
        &[("GEORELAY_FAILPOINTS", "apply_load_slow")],
    );
    let stop = Arc::new(AtomicBool::new(false));
    let w = {
        let stop = stop.clone();
        let port = origin.port;
        std::thread::spawn(move || writer(port, stop))
    };
    let mut states = std::collections::BTreeMap::<String, u32>::new();
    for i in 0..20u64 {
        std::thread::sleep(Duration::from_millis(150 + (i * 137) % 450));
        let state = row_field(&agent, "state").unwrap_or_else(|| "unknown".into());
        *states.entry(state).or_default() += 1;
        agent.kill9();
        agent.restart();
    }
    eprintln!("applier state at each of the 20 SIGKILLs: {states:?}");
    stop.store(true, Ordering::Relaxed);
    let (counters, lists) = w.join().expect("writer");
    agent.clear_env();
    wait_applied(&agent, &origin);

    let mut tc = target.client();
    let want = user_keys(&mut oc, &[0, 2]);
    let got = user_keys(&mut tc, &[0, 2]);
    dataset::assert_same(&want, &got, 1000);
    for k in 0..16 {
        let (cnt, q) = (format!("cnt:{k}"), format!("q:{k}"));
        assert_eq!(int(&mut tc, &["GET", &cnt]), counters[k], "{cnt}");
        assert_eq!(int(&mut tc, &["LLEN", &q]), lists[k], "{q}");
    }
    assert!(
        want.len() > 20_000,
        "the dataset was written ({} keys)",
        want.len()
    );

    // A restart with the target intact re-applies nothing: no full sync, no key loaded, no
    // command applied until the origin writes again — then exactly those.
    agent.restart();
    agent.wait_metric("georelay_apply_offset", &[("shard", "main")], LONG, |v| {
        v >= origin_offset(&origin) as f64
    });
    wait_until(LONG, "the applier streams", || {
        row_field(&agent, "state").as_deref() == Some("streaming")
    });
    resume::assert_nothing_reapplied(&agent, "main");
    resume::assert_applies_exactly(
        &agent,
        "main",
        5.0,
        LONG,
        || {
            for _ in 0..5 {
                oc.cmd(&["INCR", "cnt:0"]);
            }
        },
        || wait_applied(&agent, &origin),
    );
    assert_eq!(int(&mut tc, &["GET", "cnt:0"]), counters[0] + 5);
    assert_eq!(
        agent.metric("georelay_apply_errors_total", &[("reason", "command")]),
        0.0
    );
}

#[test]
fn a_flush_needs_consent_and_a_read_only_target_pauses_the_lane() {
    let origin = Redis::start(&[]);
    let target = Redis::start(&[]);
    let other = Redis::start(&[]);
    let mut oc = origin.client();
    oc.cmd(&["SET", "a", "1"]);
    oc.cmd(&["INCR", "cnt"]);
    let mut tc = target.client();
    tc.cmd(&["SET", "foreign", "x"]);
    let mut agent = Agent::start(&target_config(&origin, &target, ""));
    wait_until(LONG, "the applier refuses to flush", || {
        row_field(&agent, "error").is_some_and(|e| e.contains("target.allow_flush"))
    });
    let error = row_field(&agent, "error").expect("the stopped lane's row has an error");
    assert!(error.contains("holds 1 keys"), "{error}");
    assert_eq!(row_field(&agent, "state").as_deref(), Some("stopped"));
    assert!(
        agent.metric(
            "georelay_apply_errors_total",
            &[("reason", "flush_refused")]
        ) >= 1.0
    );
    assert!(agent.log_text().contains("target.allow_flush"));
    assert_eq!(int(&mut tc, &["DBSIZE"]), 1, "nothing written");
    assert_eq!(frame_text(&tc.cmd(&["GET", "foreign"])), "x");

    // With consent the full sync empties the target first.
    let mut text = std::fs::read_to_string(&agent.config_path).expect("config");
    text.push_str("allow_flush = true\n");
    std::fs::write(&agent.config_path, text).expect("config");
    agent.restart();
    wait_applied(&agent, &origin);
    dataset::assert_same(&user_keys(&mut oc, &[0]), &user_keys(&mut tc, &[0]), 1000);
    assert_eq!(
        agent.metric("georelay_apply_full_syncs_total", &[("shard", "main")]),
        1.0
    );

    // A read-only target: the lane pauses with the target's message, skips nothing, and
    // resumes once the target takes writes again.
    tc.cmd(&["REPLICAOF", "127.0.0.1", &other.port.to_string()]);
    wait_until(LONG, "the target is a replica", || {
        support::try_info_field(&mut target.client(), "replication", "master_link_status")
            .is_some_and(|s| s == "up")
    });
    oc.cmd(&["INCR", "cnt"]);
    agent.wait_metric(
        "georelay_apply_errors_total",
        &[("reason", "readonly")],
        LONG,
        |v| v >= 1.0,
    );
    wait_until(LONG, "status shows the pause", || {
        row_field(&agent, "state").as_deref() == Some("paused")
            && row_field(&agent, "error").is_some_and(|e| e.contains("READONLY"))
    });
    tc.cmd(&["REPLICAOF", "NO", "ONE"]);
    wait_applied(&agent, &origin);
    let mut tc = target.client();
    dataset::assert_same(&user_keys(&mut oc, &[0]), &user_keys(&mut tc, &[0]), 1000);
    assert_eq!(frame_text(&tc.cmd(&["GET", "cnt"])), "2");
}

#[test]
fn a_command_the_target_does_not_know_stops_the_lane_naming_it() {
    let origin = Redis::start(&[]);
    let target = Redis::start_kind(ServerKind::Redis62, &[]);
    let mut oc = origin.client();
    oc.cmd(&["SET", "a", "1"]);
    let agent = Agent::start(&target_config(&origin, &target, ""));
    wait_applied(&agent, &origin);
    let code = "#!lua name=georelaytest\nredis.register_function('f', function() return 1 end)";
    oc.cmd(&["FUNCTION", "LOAD", code]);
    oc.cmd(&["SET", "b", "2"]);
    wait_until(LONG, "the lane stops", || {
        row_field(&agent, "state").as_deref() == Some("stopped")
    });
    let error = row_field(&agent, "error").expect("the stopped lane's row has an error");
    assert!(
        error.contains("FUNCTION") && error.contains("origin offset"),
        "{error}"
    );
    assert_eq!(
        agent.metric(
            "georelay_apply_errors_total",
            &[("reason", "unknown_command")]
        ),
        1.0
    );
    let mut tc = target.client();
    assert_eq!(
        frame_text(&tc.cmd(&["GET", "b"])),
        "(nil)",
        "nothing after it is applied"
    );
}

#[test]
fn an_oom_or_unreachable_target_pauses_the_lane_and_loses_nothing() {
    let origin = Redis::start(&[]);
    let mut target = Redis::start(&[]);
    let port = target.port;
    let mut oc = origin.client();
    oc.cmd(&["INCR", "cnt"]);
    let agent = Agent::start(&target_config(&origin, &target, "allow_flush = true\n"));
    wait_applied(&agent, &origin);

    // OOM: writes are refused at queue time, the transaction is discarded, the lane pauses.
    let mut tc = target.client();
    assert_eq!(
        frame_text(&tc.cmd(&["CONFIG", "SET", "maxmemory", "1"])),
        "OK"
    );
    oc.cmd(&["INCR", "cnt"]);
    agent.wait_metric(
        "georelay_apply_errors_total",
        &[("reason", "oom")],
        LONG,
        |v| v >= 1.0,
    );
    wait_until(LONG, "status shows the OOM pause", || {
        row_field(&agent, "state").as_deref() == Some("paused")
            && row_field(&agent, "error").is_some_and(|e| e.contains("OOM"))
    });
    assert_eq!(
        frame_text(&tc.cmd(&["GET", "cnt"])),
        "1",
        "nothing half-applied"
    );
    assert_eq!(
        frame_text(&tc.cmd(&["CONFIG", "SET", "maxmemory", "0"])),
        "OK"
    );
    wait_applied(&agent, &origin);
    assert_eq!(frame_text(&tc.cmd(&["GET", "cnt"])), "2");

    // Unreachable: the lane pauses with "unreachable" and, once a server answers again on
    // the port (empty: no persistence), starts over from the snapshot — nothing lost.
    target.kill();
    oc.cmd(&["INCR", "cnt"]);
    agent.wait_metric(
        "georelay_apply_errors_total",
        &[("reason", "target_down")],
        LONG,
        |v| v >= 1.0,
    );
    wait_until(LONG, "status shows the target down", || {
        row_field(&agent, "error").is_some_and(|e| e.contains("unreachable"))
    });
    let target = Redis::start_on(port, &[]);
    wait_applied(&agent, &origin);
    let mut tc = target.client();
    assert_eq!(frame_text(&tc.cmd(&["GET", "cnt"])), "3");
    dataset::assert_same(&user_keys(&mut oc, &[0]), &user_keys(&mut tc, &[0]), 1000);
}
