//! Integration: crash consistency. The agent is killed with SIGKILL at many random points of a
//! mixed workload — initial sync, segment rotation, retention deletes, snapshot refreshes,
//! serving full syncs — and restarted each time. Every byte it had acknowledged to the origin
//! (with `fsync = "always"`) must still be in its log after recovery, and the final data must
//! equal the origin's. `GEORELAY_CRASH_KILLS` raises the kill count for a longer local run.

mod support;

use std::time::Duration;

use support::load::write_mixed;
use support::{agent_config, start_replica, wait_digests_equal, wait_until, Agent, Redis};

const LONG: Duration = Duration::from_secs(180);

/// The offset the origin last heard the agent acknowledge (its online replica line); `None`
/// when the agent is not an online replica of the origin right now.
fn acked_by_origin(master: &Redis, agent_port: u16) -> Option<u64> {
    let info = master.client().cmd_str(&["INFO", "replication"]);
    info.lines()
        .filter(|l| {
            l.starts_with("slave")
                && l.contains(&format!("port={agent_port},"))
                && l.contains("state=online")
        })
        .filter_map(|l| {
            l.split("offset=")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .max()
}

/// The head the agent recovered at its latest start, from its own log line.
fn recovered_head(agent: &Agent) -> Option<u64> {
    let text = agent.log_text();
    let line = text
        .lines()
        .rfind(|l| l.contains("replication log opened") && l.contains("segments="))?;
    line.split("head=")
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[test]
fn sigkill_at_random_points_loses_no_acknowledged_byte() {
    let kills: u32 = std::env::var("GEORELAY_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let master = Redis::start(&["--repl-backlog-size", "512mb"]);
    master
        .client()
        .cmd(&["DEBUG", "POPULATE", "100000", "pop", "100"]);
    let mut agent = Agent::start(&agent_config(
        &master.addr(),
        "[log]\nfsync = \"always\"\nsegment_bytes = \"256KiB\"\nmax_bytes = \"6MiB\"\nsnapshot_after = \"2MiB\"\n",
    ));
    let replica = start_replica(&agent.addr(), &[]);
    let port = master.port;
    // The writer runs until the kills are over (so every kill lands on a streaming agent that
    // acknowledges), bounded by a total it cannot exceed.
    let cap = 160_000 * u64::from(kills.max(10)) / 10;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop_w = std::sync::Arc::clone(&stop);
    let writer = std::thread::spawn(move || {
        let step = 2_000;
        let total = cap;
        let mut i = 0;
        while i < total && !stop_w.load(std::sync::atomic::Ordering::Relaxed) {
            write_mixed(port, i, (i + step).min(total), "crash");
            i += step;
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let mut rng = 0x2545f4914f6cdd1du64;
    let mut extra_replicas = Vec::new();
    let mut checked = 0;
    for k in 0..kills {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(Duration::from_millis(30 + rng % 400));
        if k % 10 == 5 {
            // Serving a full sync is one of the states a kill should land in.
            extra_replicas.push(start_replica(&agent.addr(), &[]));
        }
        let acked = acked_by_origin(&master, agent.redis_port);
        agent.kill9();
        agent.restart();
        let head = recovered_head(&agent).expect("the restarted agent logged its recovered head");
        if let Some(acked) = acked {
            checked += 1;
            assert!(head >= acked, "kill {k}: the origin saw offset {acked} acknowledged, but the log recovered only up to {head}");
        }
        if extra_replicas.len() > 2 {
            extra_replicas.remove(0);
        }
    }
    assert!(
        checked >= kills / 2,
        "only {checked} of {kills} kills had an acknowledged offset to check"
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().expect("writer");
    wait_until(LONG, "the agent streams again", || {
        agent.metric("georelay_upstream_connected", &[]) == 1.0
    });
    let mut all = vec![&replica];
    all.extend(extra_replicas.iter());
    wait_digests_equal(&master, &all, LONG);
    assert_eq!(agent.metric("georelay_log_corruptions_total", &[]), 0.0);
}
