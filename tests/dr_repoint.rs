//! Integration: runtime re-pointing (`POST`/`DELETE /upstream` behind `admin.token_file`,
//! persisted in `data_dir`, shown by `georelay check` and `status`), and `/readyz` recovering by
//! itself after failed retention passes (the `retention` failpoint). Real redis-server processes.

mod dr_support;
mod support;

use std::time::Duration;

use dr_support::{counter, georelay, http, info_u64, status, token_file, TOKEN};
use support::{agent_config, start_replica, wait_digests_equal, wait_until, Agent, Redis};

const LONG: Duration = Duration::from_secs(60);

#[test]
fn mutating_endpoints_need_the_token_and_are_disabled_without_one() {
    let master = Redis::start(&[]);
    let open = Agent::start(&agent_config(&master.addr(), ""));
    let body = r#"{"redis": "127.0.0.1:1"}"#;
    let (code, text) = http(open.admin_port, "POST", "/upstream", None, Some(body));
    assert_eq!(code, 403, "{text}");
    assert!(text.contains("admin.token_file"), "{text}");
    let (code, _) = http(open.admin_port, "GET", "/upstream", None, None);
    assert_eq!(code, 200, "reads stay open");

    let tok = token_file();
    let guarded = Agent::start(&agent_config(
        &master.addr(),
        &format!("[admin]\ntoken_file = \"{}\"\n", tok.path.display()),
    ));
    let p = guarded.admin_port;
    for (token, what) in [
        (None, "no token"),
        (Some("wrong-token-000000000"), "wrong token"),
    ] {
        let (code, text) = http(p, "POST", "/upstream", token, Some(body));
        assert_eq!(code, 401, "{what}: {text}");
        let (code, _) = http(p, "DELETE", "/upstream", token, None);
        assert_eq!(code, 401, "{what} on DELETE");
    }
    let s = status(&guarded);
    assert_eq!(
        s["upstream"]["addr"],
        master.addr(),
        "a refused request changed nothing"
    );
    assert_eq!(s["upstream"]["override_in_force"], false);
    for bad in [
        r#"{"redis": "nope"}"#,
        r#"{"agent": "127.0.0.1:5"}"#,
        "{",
        r#"{"x": 1}"#,
    ] {
        let (code, text) = http(p, "POST", "/upstream", Some(TOKEN), Some(bad));
        assert_eq!(code, 400, "{bad}: {text}");
        assert!(text.starts_with("bad request: "), "{text}");
    }
    // An agent upstream needs [tls]: refused with the reason, nothing persisted.
    let (code, text) = http(
        p,
        "POST",
        "/upstream",
        Some(TOKEN),
        Some(r#"{"agent": "127.0.0.1:5", "server_name": "x"}"#),
    );
    assert_eq!(code, 400, "{text}");
    assert!(text.contains("[tls]"), "{text}");
    assert!(!guarded.data_dir.join("upstream-override.json").exists());
}

/// The upstream moves to a promoted replica while the process runs: a partial resync (replid
/// switch), persisted across a restart, shown by check and status, and cleared by DELETE.
#[test]
fn repoint_to_a_promoted_replica_without_restart_then_persisted_and_cleared() {
    let master = Redis::start(&["--repl-backlog-size", "16mb"]);
    let promoted = start_replica(&master.addr(), &[]);
    let tok = token_file();
    let mut agent = Agent::start(&agent_config(
        &master.addr(),
        &format!("[admin]\ntoken_file = \"{}\"\n", tok.path.display()),
    ));
    let replica = start_replica(&agent.addr(), &[]);
    support::load::write_sets(master.port, 2000, 64, "before");
    wait_digests_equal(&master, &[&promoted, &replica], LONG);
    let pid = agent.pid();
    let full_before = counter(&agent, "georelay_upstream_full_syncs_total", &[]);

    assert_eq!(promoted.client().cmd_str(&["REPLICAOF", "NO", "ONE"]), "OK");
    let body = format!(r#"{{"redis": "{}"}}"#, promoted.addr());
    let (code, text) = http(
        agent.admin_port,
        "POST",
        "/upstream",
        Some(TOKEN),
        Some(&body),
    );
    assert_eq!(code, 200, "{text}");
    support::load::write_sets(promoted.port, 2000, 64, "after");
    wait_digests_equal(&promoted, &[&replica], LONG);
    assert_eq!(agent.pid(), pid, "the process was not restarted");
    assert_eq!(
        counter(&agent, "georelay_upstream_full_syncs_total", &[]),
        full_before,
        "re-pointing cost a full sync"
    );
    assert!(counter(&agent, "georelay_upstream_replid_switches_total", &[]) >= 1.0);
    assert_eq!(info_u64(&promoted, "stats", "sync_full"), 0);
    let s = status(&agent);
    assert_eq!(s["upstream"]["addr"], promoted.addr());
    assert_eq!(s["upstream"]["override_in_force"], true);
    assert_eq!(s["upstream"]["connected"], true);

    let cfg = agent.config_path.display().to_string();
    let out = georelay(&["check", "--config", &cfg]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("upstream override in force: redis ") && text.contains(&promoted.addr()),
        "{text}"
    );
    let admin = format!("http://127.0.0.1:{}", agent.admin_port);
    let out = georelay(&["status", "--admin", &admin]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("upstream (redis, override)"), "{text}");

    // The override wins over the config file after a restart.
    agent.terminate();
    agent.restart();
    wait_until(LONG, "upstream reconnected after restart", || {
        status(&agent)["upstream"]["connected"] == true
    });
    assert_eq!(status(&agent)["upstream"]["addr"], promoted.addr());

    // Cleared: back to the config file's upstream (the old master, now on another history: the
    // agent's log is ahead of it, so it full-syncs from it; that is the operator's choice).
    let (code, text) = http(agent.admin_port, "DELETE", "/upstream", Some(TOKEN), None);
    assert_eq!(code, 200, "{text}");
    assert!(text.contains("override cleared"), "{text}");
    let s = status(&agent);
    assert_eq!(s["upstream"]["addr"], master.addr());
    assert_eq!(s["upstream"]["override_in_force"], false);
    let out = georelay(&["check", "--config", &cfg]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("override"));
}

/// Failed retention passes make `/readyz` 503; it recovers by itself once a pass succeeds, with
/// no upstream reconnect.
#[test]
fn readyz_recovers_by_itself_after_retention_failures() {
    let master = Redis::start(&[]);
    let agent = Agent::start_env(
        &agent_config(&master.addr(), ""),
        &[("GEORELAY_FAILPOINTS", "retention@1:3")],
    );
    let ready = || http(agent.admin_port, "GET", "/readyz", None, None);
    wait_until(LONG, "/readyz 200 once the upstream is up", || {
        ready().0 == 200
    });
    let reconnects = counter(&agent, "georelay_upstream_reconnects_total", &[]);
    wait_until(LONG, "/readyz 503 after a failed retention pass", || {
        let (code, body) = ready();
        code == 503 && body.contains("log is not writable")
    });
    wait_until(LONG, "/readyz 200 again without a reconnect", || {
        ready().0 == 200
    });
    assert_eq!(
        agent
            .log_text()
            .matches("injected by failpoint retention")
            .count(),
        3,
        "the three armed failures happened"
    );
    assert!(agent.log_text().contains("log retention succeeded again"));
    assert_eq!(
        counter(&agent, "georelay_upstream_reconnects_total", &[]),
        reconnects,
        "readiness came back without an upstream reconnect"
    );
}
