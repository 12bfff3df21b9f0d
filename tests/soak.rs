//! A bounded soak: the two-region chain (origin → A → wan-sim → B → 2 replicas) under a
//! steady write load and a random schedule of WAN cuts, loss bursts, agent kills, replica
//! restarts and one origin failover. At the end the data must be equal everywhere and neither
//! agent may have needed a full sync after its first. CI runs ~2 minutes;
//! `GEORELAY_SOAK_MINUTES=30 GEORELAY_SOAK_REPORT=docs/RELIABILITY-run.md` runs longer and
//! writes the report.

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::load::{trim_mixed, write_mixed};
use support::{
    agent_config, agent_config_from_agent, free_udp_port, start_replica, wait_digests_equal,
    wait_until, Agent, Pki, Redis, WanSimProc,
};

const LONG: Duration = Duration::from_secs(300);
/// Keys of the mixed workload the writer cycles through.
const KEYSPACE: u64 = 400_000;

/// Sync counters of an agent process, added up across restarts.
#[derive(Default, Debug)]
struct Syncs {
    upstream_full: f64,
    upstream_partial: f64,
    served_full: f64,
    served_partial: f64,
}

impl Syncs {
    fn add(&mut self, a: &Agent) {
        self.upstream_full += a.metric("georelay_upstream_full_syncs_total", &[]);
        self.upstream_partial += a.metric("georelay_upstream_partial_syncs_total", &[]);
        self.served_full += a.metric("georelay_served_full_syncs_total", &[]);
        self.served_partial += a.metric("georelay_served_partial_syncs_total", &[]);
    }
}

struct Rng(u64);

impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn soak_two_region_chain_under_random_faults() {
    let minutes: f64 = std::env::var("GEORELAY_SOAK_MINUTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2.0);
    let run_for = Duration::from_secs_f64(minutes * 60.0);
    let seed: u64 = std::env::var("GEORELAY_SOAK_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_2026);
    let mut rng = Rng(seed | 1);
    let pki = Pki::new(&["site-a", "region-b"]);
    let origin = Redis::start(&["--repl-backlog-size", "512mb"]);
    // The standby becomes the origin half-way: its backlog must cover agent restarts too
    // (the first 30-minute run failed on the 1 MB default here).
    let standby = start_replica(&origin.addr(), &["--repl-backlog-size", "512mb"]);
    let quic = free_udp_port();
    let mut a = Agent::start(&agent_config(
        &origin.addr(),
        &format!(
            "agent = \"127.0.0.1:{quic}\"\n{}",
            pki.tls_section("site-a", None)
        ),
    ));
    let wan_port = free_udp_port();
    let mut wan = WanSimProc::start_on(wan_port, quic, &["--delay", "10ms"]);
    let mut b = Agent::start(&agent_config_from_agent(
        "region-b",
        &format!("127.0.0.1:{wan_port}"),
        &pki.tls_section("region-b", Some("site-a")),
    ));
    let mut replicas = [start_replica(&b.addr(), &[]), start_replica(&b.addr(), &[])];

    // The load: mixed writes to whichever server is the origin, paused for the failover.
    let origin_port = Arc::new(AtomicU16::new(origin.port));
    let stop = Arc::new(AtomicBool::new(false));
    let paused = Arc::new(AtomicBool::new(false));
    let idle = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let writer = {
        let (origin_port, stop, paused, idle, written) = (
            origin_port.clone(),
            stop.clone(),
            paused.clone(),
            idle.clone(),
            written.clone(),
        );
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) && i < 50_000_000 {
                if paused.load(Ordering::Relaxed) {
                    idle.store(true, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
                idle.store(false, Ordering::Relaxed);
                // A bounded working set, rewritten over and over (the stream keeps growing,
                // the dataset does not): DEBUG DIGEST stays quick at the end of a long run.
                let port = origin_port.load(Ordering::Relaxed);
                let from = i % KEYSPACE;
                write_mixed(port, from, from + 1_000, "soak");
                i += 1_000;
                if i.is_multiple_of(100_000) {
                    trim_mixed(port, "soak");
                }
                written.store(i, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(30));
            }
        })
    };

    let mut faults: BTreeMap<&str, u32> = BTreeMap::new();
    let (mut a_syncs, mut b_syncs) = (Syncs::default(), Syncs::default());
    let (mut max_lag, mut max_hb, mut peak_a, mut peak_b) = (0f64, 0f64, 0u64, 0u64);
    let mut failed_over: Option<Redis> = None;
    let start = Instant::now();
    let mut sample = |a: &Agent, b: &Agent| {
        max_lag = max_lag.max(b.metric("georelay_lag_seconds", &[]));
        max_hb = max_hb.max(b.metric("georelay_upstream_heartbeat_age_seconds", &[]));
        peak_a = peak_a.max(a.peak_rss_kib().expect("A's VmHWM"));
        peak_b = peak_b.max(b.peak_rss_kib().expect("B's VmHWM"));
    };
    while start.elapsed() < run_for {
        for _ in 0..(3 + rng.next(6)) {
            std::thread::sleep(Duration::from_secs(1));
            sample(&a, &b);
        }
        if failed_over.is_none() && start.elapsed() > run_for / 2 {
            // Origin failover: promote the standby, point A at it.
            paused.store(true, Ordering::Relaxed);
            wait_until(LONG, "the writer pauses", || idle.load(Ordering::Relaxed));
            wait_until(LONG, "the standby catches up with the origin", || {
                standby.info_field("replication", "master_repl_offset")
                    == origin.info_field("replication", "master_repl_offset")
            });
            standby.client().cmd(&["REPLICAOF", "NO", "ONE"]);
            origin_port.store(standby.port, Ordering::Relaxed);
            a_syncs.add(&a);
            a.terminate();
            a.set_upstream(&standby.addr());
            a.restart();
            paused.store(false, Ordering::Relaxed);
            failed_over = Some(Redis::start(&[]));
            *faults.entry("origin failover").or_default() += 1;
            continue;
        }
        match rng.next(5) {
            0 => {
                wan.cut();
                for _ in 0..(3 + rng.next(8)) {
                    std::thread::sleep(Duration::from_secs(1));
                    sample(&a, &b);
                }
                wan.restore();
                *faults.entry("WAN cut").or_default() += 1;
            }
            1 => {
                drop(wan);
                wan = WanSimProc::start_on(wan_port, quic, &["--delay", "10ms", "--loss", "20%"]);
                std::thread::sleep(Duration::from_secs(3 + rng.next(4)));
                drop(wan);
                wan = WanSimProc::start_on(wan_port, quic, &["--delay", "10ms"]);
                *faults.entry("loss burst (20%)").or_default() += 1;
            }
            2 => {
                b_syncs.add(&b);
                b.kill9();
                b.restart();
                *faults.entry("kill -9 region agent B").or_default() += 1;
            }
            3 => {
                a_syncs.add(&a);
                a.kill9();
                a.restart();
                *faults.entry("kill -9 site agent A").or_default() += 1;
            }
            _ => {
                let i = rng.next(2) as usize;
                let port = replicas[i].port;
                replicas[i].kill();
                replicas[i] = Redis::start_on(
                    port,
                    &["--replicaof", "127.0.0.1", &b.redis_port.to_string()],
                );
                *faults.entry("replica restart").or_default() += 1;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("writer");
    let current_origin = if failed_over.is_some() {
        &standby
    } else {
        &origin
    };
    let refs: Vec<&Redis> = replicas.iter().collect();
    wait_digests_equal(current_origin, &refs, LONG);
    sample(&a, &b);
    a_syncs.add(&a);
    b_syncs.add(&b);

    let report = format!(
        "| figure | value |\n|---|---|\n| duration | {:.1} min (seed {seed}) |\n| commands written (mixed types, {KEYSPACE} keys cycled) | {} |\n| stream relayed to region B | {:.0} MB |\n| faults injected | {} |\n{}\
         | site agent A: upstream full / partial syncs | {} / {} |\n| region agent B: upstream full / partial syncs | {} / {} |\n\
         | B: full / partial syncs served to replicas | {} / {} |\n| B: max lag_seconds seen (1 s samples) | {:.2} s |\n\
         | B: max heartbeat age seen | {:.2} s |\n| peak RSS (VmHWM) A / B | {} / {} MiB |\n| final DEBUG DIGEST | equal on origin and both far replicas |\n",
        start.elapsed().as_secs_f64() / 60.0,
        written.load(Ordering::Relaxed),
        b.metric("georelay_log_head_offset", &[]) / 1e6,
        faults.values().sum::<u32>(),
        faults.iter().map(|(k, v)| format!("| — {k} | {v} |\n")).collect::<String>(),
        a_syncs.upstream_full,
        a_syncs.upstream_partial,
        b_syncs.upstream_full,
        b_syncs.upstream_partial,
        b_syncs.served_full,
        b_syncs.served_partial,
        max_lag,
        max_hb,
        peak_a / 1024,
        peak_b / 1024,
    );
    eprintln!("{report}");
    if let Ok(path) = std::env::var("GEORELAY_SOAK_REPORT") {
        std::fs::write(&path, &report).expect("write the soak report");
    }
    assert_eq!(
        a_syncs.upstream_full, 1.0,
        "site agent A needed a full sync after its first:\n{report}"
    );
    assert_eq!(
        b_syncs.upstream_full, 1.0,
        "region agent B needed a full sync after its first:\n{report}"
    );
    drop(failed_over);
}
