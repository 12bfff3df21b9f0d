//! Integration: `georelay failover` (unplanned) with real servers. origin → A → wan-sim → B →
//! two region replicas; A's link is capped so B lags while it still hears A's heartbeats. The
//! WAN is cut while writes continue at the site, comes back (B learns A's head but is still
//! behind), then site A (origin and agent) is SIGKILLed. The failover promotes a region
//! replica; its RPO in bytes matches what A had and B never got, within one record; the
//! region stays partial; A's agent and origin, brought back, end with the new history and
//! the diverged bytes never reach the region.

mod dr_support;
mod support;

use std::time::Duration;

use dr_support::{counter, georelay, info_u64, status, two_sites_with, TOKEN};
use support::{frame_text, wait_digests_equal, wait_until, Redis};

const LONG: Duration = Duration::from_secs(90);
/// One write of the cut phase: `SET cut:N <VALUE bytes>`, one record at most on A's log.
const VALUE: usize = 1000;
/// About 6 MB: several times the 1 MiB A sends at once before its bandwidth cap makes it wait, so B is
/// still far behind when it hears A's head.
const CUT_WRITES: usize = 6000;

fn u64_of(v: &serde_json::Value, what: &str) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("{what} is not a number: {v}"))
}

fn rpo_bytes(out: &str) -> u64 {
    out.lines()
        .find_map(|l| l.strip_prefix("RPO: "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no RPO line in:\n{out}"))
}

#[test]
fn failover_after_a_wan_cut_reports_the_rpo_and_fences_the_site() {
    let mut s = two_sites_with(
        &[],
        &["--appendonly", "yes"],
        "[link]\nmax_bandwidth = \"8Mbit\"\nheartbeat = \"100ms\"\n",
    );
    support::load::write_sets(s.origin.port, 200, 64, "warm");
    wait_digests_equal(&s.origin, &[&s.r1, &s.r2], LONG);
    let b_upstream_full = counter(&s.b, "georelay_upstream_full_syncs_total", &[]);
    let b_served_full = counter(&s.b, "georelay_served_full_syncs_total", &[]);

    // The WAN is cut; the site keeps taking writes.
    s.wan.cut();
    let value = "x".repeat(VALUE);
    let mut c = s.origin.client();
    for i in 0..CUT_WRITES {
        assert_eq!(c.cmd_str(&["SET", &format!("cut:{i}"), &value]), "OK");
    }
    let origin_offset = info_u64(&s.origin, "replication", "master_repl_offset");
    wait_until(LONG, "A holds every write", || {
        u64_of(&status(&s.a)["log"]["head"], "A log.head") == origin_offset
    });
    let a_head = origin_offset;
    // Back for a moment: B hears A's head in a heartbeat, but its capped link is far behind.
    s.wan.restore();
    wait_until(LONG, "B heard A's head", || {
        u64_of(
            &status(&s.b)["upstream"]["upstream_head"],
            "B upstream_head",
        ) == a_head
    });
    let b_head = u64_of(&status(&s.b)["log"]["head"], "B log.head");
    assert!(
        b_head + 500_000 <= a_head,
        "B must still lag (head {b_head}, A {a_head})"
    );
    // Site A is lost.
    s.a.kill9();
    s.origin.kill();

    let out = georelay(&[
        "failover",
        "--region",
        &format!("http://127.0.0.1:{}", s.b.admin_port),
        "--promote",
        &s.r1.addr(),
        "--token-file",
        &s.token.path.display().to_string(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "failover failed:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{stdout}");
    assert!(
        stdout.contains(&format!("new master: {}", s.r1.addr())),
        "{stdout}"
    );
    for step in ["check", "wait", "promote", "repoint"] {
        assert!(stdout.contains(step), "step {step} missing:\n{stdout}");
    }
    let st = status(&s.b);
    let fenced = &st["upstream"]["fenced"];
    assert_eq!(
        fenced["site"],
        s.wan.addr(),
        "B shows the fenced site: {st}"
    );
    let fork = u64_of(&fenced["head"], "fenced.head");
    assert_eq!(st["upstream"]["kind"], "redis");
    // The new master holds B's log up to its last whole command (a command the site was
    // still sending when it vanished is lost with the rest).
    let promoted = info_u64(&s.r1, "replication", "second_repl_offset") - 1;
    assert!(
        promoted <= fork && fork - promoted <= (VALUE + 64) as u64,
        "promoted at {promoted}, B head {fork}"
    );
    let real = a_head - promoted;
    let reported = rpo_bytes(&stdout);
    assert!(
        reported.abs_diff(real) <= (VALUE + 64) as u64,
        "RPO {reported} bytes, real difference {real} (A head {a_head}, new master at {promoted})"
    );
    assert!(real > 500_000, "the cut left B far behind: {real}");

    // The region carries on from the new master: partial when B's log ended on a whole
    // command; otherwise B (and so its replicas) take one full sync of the new history.
    support::load::write_sets(s.r1.port, 200, 64, "new");
    wait_digests_equal(&s.r1, &[&s.r2], LONG);
    if promoted == fork {
        assert_eq!(
            counter(&s.b, "georelay_upstream_full_syncs_total", &[]),
            b_upstream_full
        );
        assert_eq!(
            counter(&s.b, "georelay_served_full_syncs_total", &[]),
            b_served_full
        );
    }
    let b_upstream_full = counter(&s.b, "georelay_upstream_full_syncs_total", &[]);

    // The site comes back: its agent is re-pointed at B first and full-syncs the new history.
    s.a.restart();
    let body = format!(
        "{{\"agent\": \"127.0.0.1:{}\", \"server_name\": \"region-b\"}}",
        s.b_quic
    );
    let (code, text) = dr_support::http(
        s.a.admin_port,
        "POST",
        "/upstream",
        Some(TOKEN),
        Some(&body),
    );
    assert_eq!(code, 200, "{text}");
    let new_replid = s.r1.info_field("replication", "master_replid");
    wait_until(LONG, "A's log is on the new history", || {
        let a = status(&s.a);
        a["log"]["replid"] == new_replid.as_str() && u64_of(&a["log"]["head"], "A head") >= fork
    });
    assert!(
        counter(&s.a, "georelay_upstream_full_syncs_total", &[]) >= 1.0,
        "A's diverged log cannot resume: it full-syncs from B"
    );
    // The old origin comes back with its diverged data, and is brought to the new history.
    let old_dir = s.origin.dir.path().display().to_string();
    let old = Redis::start_on(s.origin.port, &["--appendonly", "yes", "--dir", &old_dir]);
    let mut oc = old.client();
    wait_until(LONG, "the old origin loaded its AOF", || {
        !frame_text(&oc.cmd(&["PING"])).starts_with("LOADING")
    });
    assert_eq!(
        frame_text(&oc.cmd(&["EXISTS", "cut:5999"])),
        "1",
        "the old origin kept its diverged writes"
    );
    let a_replica = s.a.redis_port.to_string();
    assert_eq!(
        old.client()
            .cmd_str(&["REPLICAOF", "127.0.0.1", &a_replica]),
        "OK"
    );
    wait_digests_equal(&s.r1, &[&old, &s.r2], LONG);
    // B never took anything from the site again: the region has none of the lost writes.
    let mut r2 = s.r2.client();
    assert_eq!(frame_text(&r2.cmd(&["EXISTS", "cut:5999"])), "0");
    assert_eq!(
        counter(&s.b, "georelay_upstream_full_syncs_total", &[]),
        b_upstream_full
    );
}

#[test]
fn failover_with_bad_input_says_why_and_changes_nothing() {
    let token = dr_support::token_file();
    let closed = format!("http://127.0.0.1:{}", support::free_port());
    let tok = token.path.display().to_string();
    let out = georelay(&[
        "failover",
        "--region",
        &closed,
        "--promote",
        "127.0.0.1:1",
        "--token-file",
        &tok,
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("FAILED at step check") && err.contains("nothing was changed"),
        "{err}"
    );
    let out = georelay(&[
        "failover",
        "--region",
        &closed,
        "--promote",
        "127.0.0.1:1",
        "--token-file",
        "/nonexistent/token",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("--token-file") && !err.contains("panicked"),
        "{err}"
    );
}
