//! Apply refuses a module-typed key, end to end. No module binary exists here, so a fake
//! upstream master (bad input) answers the handshake and PSYNC with `+FULLRESYNC` and an RDB
//! holding a key of module type `ReJSON-RL` between two plain keys. The agent's `[target]` is
//! a real Redis 7.0: the lane stops with one message naming the key and the module — in the
//! log, in `/status` and in `georelay status` — and the target gets no key from past the
//! refused one and no stream checkpoint; a restart refuses again rather than skip it.

#[path = "apply/fake_master.rs"]
mod fake_master;
mod support;

use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Duration;

use fake_master::{rdb_with_module_key, FakeMaster};
use support::{agent_config, frame_text, http_get, wait_until, Agent, Redis};

const LONG: Duration = Duration::from_secs(60);

/// A field of the agent's `target` row of `/status`, or None while it does not answer.
fn row_field(agent: &Agent, field: &str) -> Option<String> {
    let (code, body) = http_get(agent.admin_port, "/status")?;
    if code != 200 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    match v.get("target")?.get(0)?.get(field)? {
        serde_json::Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn names_both(text: &str) -> bool {
    text.contains("user:42") && text.contains("ReJSON-RL")
}

/// Waits for the lane to stop and checks the one message everywhere it shows (the log, kept
/// across restarts, then holds it `starts` times: once per start).
fn assert_refused(agent: &Agent, starts: usize) {
    wait_until(LONG, "the lane stops on the module key", || {
        row_field(agent, "state").as_deref() == Some("stopped")
    });
    let error = row_field(agent, "error").expect("the stopped lane's row has an error");
    assert!(names_both(&error), "{error}");
    assert!(error.contains("module"), "{error}");
    let out = Command::new(env!("CARGO_BIN_EXE_georelay"))
        .args([
            "status",
            "--admin",
            &format!("http://127.0.0.1:{}", agent.admin_port),
        ])
        .output()
        .expect("run georelay status");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "georelay status: {table}");
    let row = table
        .lines()
        .find(|l| l.starts_with("target (main)"))
        .unwrap_or_else(|| panic!("no target row in georelay status:\n{table}"));
    assert!(row.contains("stopped") && names_both(row), "{row}");
    let log = agent.log_text();
    let lines: Vec<&str> = log.lines().filter(|l| names_both(l)).collect();
    assert_eq!(
        lines.len(),
        starts,
        "one message per start in the log: {lines:#?}"
    );
    assert_eq!(
        agent.metric("georelay_apply_errors_total", &[("reason", "module")]),
        1.0
    );
}

#[test]
fn a_module_typed_key_stops_the_lane_naming_the_key_and_the_module() {
    let master = FakeMaster::start(rdb_with_module_key("user:42", "ReJSON-RL"));
    let target = Redis::start(&[]);
    let config = agent_config(
        &master.addr(),
        &format!("[target]\nredis = \"{}\"\n", target.addr()),
    );
    let mut agent = Agent::start(&config);
    assert_refused(&agent, 1);
    assert!(master.full_syncs.load(Ordering::Relaxed) >= 1);

    // Nothing wrong in the target: neither the refused key nor anything after it, and no
    // checkpoint saying the snapshot is in.
    let mut tc = target.client();
    for key in ["user:42", "after"] {
        assert_eq!(frame_text(&tc.cmd(&["EXISTS", key])), "0", "{key}");
    }
    let keys = match tc.cmd(&["KEYS", "*"]) {
        georelay::resp::Frame::Array(a) => a.iter().map(frame_text).collect::<Vec<_>>(),
        other => panic!("KEYS: {other:?}"),
    };
    for k in &keys {
        if k.starts_with("georelay:checkpoint:") {
            let ckpt = frame_text(&tc.cmd(&["GET", k]));
            assert!(ckpt.starts_with("v1 loading "), "checkpoint {k} = {ckpt:?}");
        } else {
            assert_eq!(k, "before", "a key in the target ({keys:?})");
        }
    }
    assert_eq!(
        agent.metric("georelay_apply_full_syncs_total", &[("shard", "main")]),
        1.0
    );

    // A restart meets the same key and refuses again: it is never skipped.
    agent.restart();
    assert_refused(&agent, 2);
    for key in ["user:42", "after"] {
        assert_eq!(frame_text(&tc.cmd(&["EXISTS", key])), "0", "{key}");
    }
}
