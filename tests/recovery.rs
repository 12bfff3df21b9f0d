//! Integration: the log's recovery against real Redis: a torn tail is truncated and
//! re-fetched; a corrupt record in the middle is never served and forces a full sync.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::load::write_mixed;
use support::{agent_config, start_replica, wait_digests_equal, wait_until, Agent, Redis};

const LONG: Duration = Duration::from_secs(120);

fn segments(data_dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(data_dir.join("segments"))
        .expect("segments dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    v.sort();
    v
}

fn caught_up(agent: &Agent, master: &Redis) -> bool {
    agent.metric("georelay_log_head_offset", &[]).to_string()
        == master.info_field("replication", "master_repl_offset")
}

#[test]
fn torn_tail_is_truncated_and_refetched() {
    let master = Redis::start(&[]);
    let mut agent = Agent::start(&agent_config(
        &master.addr(),
        "[log]\nsegment_bytes = \"1MiB\"\nfsync = \"always\"\n",
    ));
    let replica = start_replica(&agent.addr(), &[]);
    write_mixed(master.port, 0, 30_000, "t");
    wait_until(LONG, "the agent holds the whole stream", || {
        caught_up(&agent, &master)
    });
    agent.kill9();

    let last = segments(&agent.data_dir)
        .pop()
        .expect("at least one segment");
    let len = std::fs::metadata(&last).unwrap().len();
    assert!(len > 100, "last segment too small to tear: {len}");
    let f = std::fs::OpenOptions::new().write(true).open(&last).unwrap();
    f.set_len(len - 7).unwrap(); // mid-record: a record's payload loses its last bytes
    drop(f);

    write_mixed(master.port, 30_000, 35_000, "t");
    agent.restart();
    wait_digests_equal(&master, &[&replica], LONG);
    assert_eq!(
        agent.metric("georelay_upstream_full_syncs_total", &[]),
        0.0,
        "the torn tail caused a full sync"
    );
    assert_eq!(
        agent.metric("georelay_upstream_partial_syncs_total", &[]),
        1.0
    );
    assert!(
        agent.log_text().contains("trunc"),
        "the truncation was not logged"
    );
    assert_eq!(master.info_field("stats", "sync_full"), "1");
}

#[test]
fn corrupt_middle_is_never_served() {
    let master = Redis::start(&[]);
    let mut agent = Agent::start(&agent_config(
        &master.addr(),
        "[log]\nsegment_bytes = \"64KiB\"\nmax_bytes = \"1GiB\"\n",
    ));
    wait_until(LONG, "the agent has its first snapshot", || {
        agent.metric("georelay_upstream_connected", &[]) == 1.0
    });
    write_mixed(master.port, 0, 40_000, "c");
    wait_until(LONG, "the agent holds the whole stream", || {
        caught_up(&agent, &master)
    });
    agent.terminate();

    let segs = segments(&agent.data_dir);
    assert!(
        segs.len() >= 6,
        "expected several segments, got {}",
        segs.len()
    );
    let victim = &segs[segs.len() / 2];
    let mut bytes = std::fs::read(victim).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x5a;
    std::fs::write(victim, bytes).unwrap();

    agent.restart();
    // A new replica full-syncs from the first snapshot and needs the corrupt range.
    let replica = start_replica(&agent.addr(), &[]);
    write_mixed(master.port, 40_000, 41_000, "c");
    wait_digests_equal(&master, &[&replica], LONG);
    assert_eq!(
        agent.metric("georelay_log_corruptions_total", &[]),
        1.0,
        "the corruption was not counted"
    );
    assert!(
        agent.metric(
            "georelay_served_full_syncs_total",
            &[("reason", "corruption")]
        ) >= 1.0,
        "the replica needing the corrupt range did not get a full sync"
    );
    assert!(
        agent.log_text().contains("corrupt"),
        "the corruption was not logged"
    );
}
