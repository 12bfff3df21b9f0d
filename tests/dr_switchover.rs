//! Integration: `georelay switchover` with real servers. origin → agent A → wan-sim → agent B →
//! two region replicas, a writer doing SET + WAIT 1 throughout (`upstream.ack = "remote"`):
//! nothing acknowledged is lost, writes after the fence failed or are on the new master, 0 full
//! syncs anywhere (agents' counters and every server's `sync_full`), the old origin converges
//! (DEBUG DIGEST); failback is a second switchover, again all partial. On loopback and through
//! wan-sim at 50 ms RTT. (The rollback case is `dr_rollback.rs`.)

mod dr_support;
mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use dr_support::{counter, georelay, info_u64, status, two_sites, Sites};
use support::{frame_text, wait_digests_equal, wait_until, Agent, Client, Redis};

const LONG: Duration = Duration::from_secs(90);

/// One write of the load: whether SET succeeded and whether WAIT 1 saw it acknowledged.
struct Write {
    i: u64,
    set_ok: bool,
    acked: bool,
}

/// SET + WAIT 1 against `port` until `stop` (bounded); every outcome recorded, and counted in
/// `acks` (acknowledged by WAIT) and `refused` (the SET failed).
fn writer(
    port: u16,
    stop: Arc<AtomicBool>,
    acks: Arc<AtomicU64>,
    refused: Arc<AtomicU64>,
) -> thread::JoinHandle<Vec<Write>> {
    thread::spawn(move || {
        let mut c = Client::connect(port);
        let mut out = Vec::new();
        for i in 0..200_000u64 {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let k = format!("w:{i}");
            let set = c.try_cmd(&["SET", &k, &format!("v{i}")]);
            let set_ok = matches!(&set, Ok(f) if frame_text(f) == "OK");
            let acked = set_ok
                && c.try_cmd(&["WAIT", "1", "2000"])
                    .is_ok_and(|f| frame_text(&f).parse::<u64>().is_ok_and(|n| n >= 1));
            if acked {
                acks.fetch_add(1, Ordering::Relaxed);
            }
            if !set_ok {
                refused.fetch_add(1, Ordering::Relaxed);
            }
            if set.is_err() {
                // The connection broke: reconnect (bounded by the loop).
                match Client::try_connect(port) {
                    Some(n) => c = n,
                    None => thread::sleep(Duration::from_millis(10)),
                }
            }
            out.push(Write { i, set_ok, acked });
        }
        out
    })
}

/// Full syncs counted everywhere that matters: agents' upstream and served full syncs, and each
/// server's own `sync_full` (full syncs it served as a master).
fn full_syncs(s: &Sites, servers: &[&Redis]) -> Vec<(String, f64)> {
    let mut v = Vec::new();
    for (name, a) in [("A", &s.a), ("B", &s.b)] {
        v.push((
            format!("{name} upstream"),
            counter(a, "georelay_upstream_full_syncs_total", &[]),
        ));
        v.push((
            format!("{name} served"),
            counter(a, "georelay_served_full_syncs_total", &[]),
        ));
    }
    for r in servers {
        v.push((
            format!("server {} sync_full", r.port),
            info_u64(r, "stats", "sync_full") as f64,
        ));
    }
    v
}

fn switchover(origin: &str, site: &Agent, region: &Agent, promote: &str, s: &Sites) -> String {
    let token = s.token.path.display().to_string();
    let site = format!("http://127.0.0.1:{}", site.admin_port);
    let region = format!("http://127.0.0.1:{}", region.admin_port);
    let out = georelay(&[
        "switchover",
        "--origin",
        origin,
        "--site",
        &site,
        "--region",
        &region,
        "--promote",
        promote,
        "--token-file",
        &token,
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "switchover failed:\n{stdout}{stderr}");
    assert!(
        stdout.contains(&format!("new master: {promote}")),
        "{stdout}"
    );
    for step in ["check", "fence", "wait", "promote", "repoint", "demote"] {
        assert!(stdout.contains(step), "step {step} missing:\n{stdout}");
    }
    eprintln!("{stdout}");
    stdout
}

fn paused_ms(out: &str) -> f64 {
    out.lines()
        .find_map(|l| l.strip_prefix("writes paused on the origin for "))
        .and_then(|l| l.trim_end_matches(" ms").parse().ok())
        .unwrap_or_else(|| panic!("no pause figure in:\n{out}"))
}

fn planned_switchover_and_failback(wan_flags: &[&str]) {
    let s = two_sites(wan_flags);
    support::load::write_sets(s.origin.port, 2000, 128, "warm");
    wait_digests_equal(&s.origin, &[&s.r1, &s.r2], LONG);
    let servers = [&s.origin, &s.r1, &s.r2];
    let before = full_syncs(&s, &servers);
    assert!(
        before.iter().any(|(n, v)| n == "B served" && *v >= 2.0),
        "B served the two replicas' first syncs: {before:?}"
    );

    let stop = Arc::new(AtomicBool::new(false));
    let acks = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let load = writer(s.origin.port, stop.clone(), acks.clone(), refused.clone());
    wait_until(LONG, "200 writes acknowledged by WAIT", || {
        acks.load(Ordering::Relaxed) >= 200
    });
    let out = switchover(&s.origin.addr(), &s.a, &s.b, &s.r1.addr(), &s);
    let pause = paused_ms(&out);
    // A few more writes hit the demoted origin (refused: it is a replica now).
    let refused_before = refused.load(Ordering::Relaxed);
    wait_until(LONG, "three writes refused by the demoted origin", || {
        refused.load(Ordering::Relaxed) >= refused_before + 3
    });
    stop.store(true, Ordering::Relaxed);
    let writes = load.join().expect("writer");
    let acked: Vec<&Write> = writes.iter().filter(|w| w.acked).collect();
    let landed: Vec<&Write> = writes.iter().filter(|w| w.set_ok).collect();
    assert!(acked.len() > 100, "the load ran: {} acked", acked.len());
    assert!(
        writes.iter().rev().take(3).all(|w| !w.set_ok),
        "writes to the demoted origin fail"
    );
    let mut m = s.r1.client();
    for w in &landed {
        let got = frame_text(&m.cmd(&["GET", &format!("w:{}", w.i)]));
        assert_eq!(
            got,
            format!("v{}", w.i),
            "write {} (acked {})",
            w.i,
            w.acked
        );
    }
    eprintln!(
        "switchover under load: {} writes, {} acknowledged, {} refused, writes paused {pause} ms",
        writes.len(),
        acked.len(),
        writes.len() - landed.len()
    );
    support::load::write_sets(s.r1.port, 500, 64, "after");
    wait_digests_equal(&s.r1, &[&s.origin, &s.r2], LONG);
    assert_eq!(s.origin.info_field("replication", "role"), "slave");
    let st = status(&s.b);
    assert_eq!(st["upstream"]["kind"], "redis");
    assert_eq!(st["upstream"]["override_in_force"], true);
    assert_eq!(status(&s.a)["upstream"]["kind"], "agent");
    let after = full_syncs(&s, &servers);
    assert_eq!(before, after, "a full sync happened during the switchover");

    // Failback: the same command the other way round.
    let out = switchover(&s.r1.addr(), &s.b, &s.a, &s.origin.addr(), &s);
    support::load::write_sets(s.origin.port, 500, 64, "back");
    wait_digests_equal(&s.origin, &[&s.r1, &s.r2], LONG);
    assert_eq!(s.r1.info_field("replication", "role"), "slave");
    assert_eq!(status(&s.a)["upstream"]["kind"], "redis");
    assert_eq!(
        full_syncs(&s, &servers),
        before,
        "a full sync happened in the failback"
    );
    eprintln!("failback: writes paused {} ms", paused_ms(&out));
}

#[test]
fn planned_switchover_under_load_loses_nothing_then_fails_back_all_partial() {
    planned_switchover_and_failback(&[]);
}

#[test]
fn planned_switchover_through_a_50ms_rtt_wan() {
    planned_switchover_and_failback(&["--delay", "25ms"]);
}
