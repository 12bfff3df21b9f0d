//! Integration: faults on the agents' disks. A full disk (a real, small tmpfs, on the site or the
//! region agent) stops appends without losing or half-writing anything; the agent reports
//! not-ready, keeps serving what it has, and resumes by itself when space returns. Needs root
//! (CI runs as root) to mount tmpfs.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::load::write_sets;
use support::{
    agent_config, free_udp_port, http_get, start_replica, wait_digests_equal, wait_until, Agent,
    Pki, Redis,
};

const LONG: Duration = Duration::from_secs(120);

/// A tmpfs mount of a given size, unmounted on drop.
struct Tmpfs {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("mnt");
        std::fs::create_dir(&path).expect("mountpoint");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "this test needs root to mount a small tmpfs (CI runs as root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { _dir: dir, path }
    }

    fn resize(&self, size: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.path)
            .status()
            .expect("run mount -o remount")
            .success();
        assert!(ok, "remount of the tmpfs failed");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

fn config_on(data_dir: &Path, master: &Redis) -> String {
    format!(
        "name = \"full-disk\"\ndata_dir = \"{}\"\n[upstream]\nredis = \"{}\"\n[listen]\nredis = \"127.0.0.1:{{redis_port}}\"\n\
         admin = \"127.0.0.1:{{admin_port}}\"\n[log]\nsegment_bytes = \"1MiB\"\nmax_bytes = \"1GiB\"\nsnapshot_after = \"1GiB\"\n",
        data_dir.display(),
        master.addr()
    )
}

/// Waits until `agent` reports its full disk (the log says so, `/readyz` answers 503), and
/// checks that it is still alive (`/healthz` 200).
fn wait_reports_full_disk(agent: &Agent) {
    wait_until(
        LONG,
        "the agent reports the full disk and turns not-ready",
        || {
            agent.log_text().contains("No space left on device")
                && http_get(agent.admin_port, "/readyz").is_some_and(|r| r.0 == 503)
        },
    );
    assert_eq!(
        http_get(agent.admin_port, "/healthz").map(|r| r.0),
        Some(200),
        "the agent died on a full disk"
    );
}

#[test]
fn a_full_disk_pauses_appends_and_resumes_when_space_returns() {
    let disk = Tmpfs::mount("12m");
    let master = Redis::start(&["--repl-backlog-size", "256mb"]);
    let agent = Agent::start(&config_on(&disk.path.join("data"), &master));
    let replica = start_replica(&agent.addr(), &[]);
    write_sets(master.port, 2_000, 1024, "before");
    wait_digests_equal(&master, &[&replica], LONG);

    // ~30 MB more than the 12 MB disk holds.
    write_sets(master.port, 30_000, 1024, "fill");
    wait_reports_full_disk(&agent);
    let held = agent.metric("georelay_log_head_offset", &[]);
    // It keeps serving what it has: the replica reaches the agent's head, up to the command
    // the full disk cut in two (a replica acknowledges whole commands only; one read chunk).
    wait_until(
        LONG,
        "the replica is served everything the agent holds",
        // The per-replica family is absent while the replica reconnects: "not yet".
        || {
            agent
                .try_metric("georelay_replica_ack_offset", &[])
                .is_ok_and(|v| v >= held - 300_000.0)
        },
    );

    disk.resize("256m");
    wait_until(LONG, "the agent is ready again once space returns", || {
        http_get(agent.admin_port, "/readyz").is_some_and(|r| r.0 == 200)
    });
    wait_digests_equal(&master, &[&replica], LONG);
    assert_eq!(
        agent.metric("georelay_upstream_full_syncs_total", &[]),
        1.0,
        "the full disk cost a full sync"
    );
    assert_eq!(agent.metric("georelay_log_corruptions_total", &[]), 0.0);
    assert_eq!(master.info_field("stats", "sync_full"), "1");
}

#[test]
fn a_failed_fsync_stops_the_agent_and_loses_no_acknowledged_byte() {
    let master = Redis::start(&["--repl-backlog-size", "256mb"]);
    let config = support::agent_config(
        &master.addr(),
        "[log]\nfsync = \"always\"\nsegment_bytes = \"1MiB\"\n",
    );
    let mut agent = Agent::start_env(&config, &[("GEORELAY_FAILPOINTS", "fsync@300")]);
    let replica = start_replica(&agent.addr(), &[]);
    // Write in small batches, noting what the origin sees acknowledged, until the agent dies.
    let agent_port = agent.redis_port;
    let origin_acked = || -> Option<u64> {
        let info = master.client().cmd_str(&["INFO", "replication"]);
        info.lines()
            .filter(|l| l.contains(&format!("port={agent_port},")) && l.contains("state=online"))
            .filter_map(|l| l.split("offset=").nth(1)?.split(',').next()?.parse().ok())
            .max()
    };
    let mut acked = 0;
    let mut status = None;
    for round in 0..2_000 {
        write_sets(master.port, 100, 512, &format!("fsync{round}"));
        // No online replica line (between reconnects): nothing acknowledged to note.
        if let Some(a) = origin_acked() {
            acked = acked.max(a);
        }
        if let Some(s) = agent.wait_exit(Duration::from_millis(20)) {
            status = Some(s);
            break;
        }
    }
    let status = status.expect("the agent kept running after a failed fsync");
    assert_eq!(status.code(), Some(74), "a failed fsync must exit 74");
    assert!(
        agent.log_text().contains("fsync failed"),
        "no clear message about the failed fsync"
    );
    assert!(
        acked > 0,
        "the agent acknowledged nothing before the failure"
    );
    agent.clear_env();
    agent.restart();
    let text = agent.log_text();
    let head: u64 = text
        .lines()
        .rfind(|l| l.contains("replication log opened") && l.contains("segments="))
        .and_then(|l| {
            l.split("head=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .expect("recovered head logged");
    assert!(head >= acked, "acknowledged {acked}, recovered only {head}");
    wait_digests_equal(&master, &[&replica], LONG);
    assert_eq!(agent.metric("georelay_upstream_full_syncs_total", &[]), 0.0);
}

/// The region agent's disk fills while it relays from the site agent: its link pauses (nothing
/// half-written), it turns not-ready but keeps answering `/metrics` and serving its replica,
/// and once space returns it resumes from its own head, with no new snapshot from A.
#[test]
fn a_full_disk_on_the_region_agent_pauses_the_link_and_resumes_partially() {
    let disk = Tmpfs::mount("12m");
    let pki = Pki::new(&["site-a", "region-b"]);
    let master = Redis::start(&["--repl-backlog-size", "256mb"]);
    let quic = free_udp_port();
    let a = Agent::start(&agent_config(
        &master.addr(),
        &format!(
            "agent = \"127.0.0.1:{quic}\"\n{}[log]\nsegment_bytes = \"1MiB\"\n",
            pki.tls_section("site-a", None)
        ),
    ));
    let b = Agent::start(&format!(
        "name = \"region-b\"\ndata_dir = \"{}\"\n[upstream]\nagent = \"127.0.0.1:{quic}\"\n\
         [listen]\nredis = \"127.0.0.1:{{redis_port}}\"\nadmin = \"127.0.0.1:{{admin_port}}\"\n{}\
         [log]\nsegment_bytes = \"1MiB\"\nmax_bytes = \"1GiB\"\nsnapshot_after = \"1GiB\"\n",
        disk.path.join("data").display(),
        pki.tls_section("region-b", Some("site-a")),
    ));
    let replica = start_replica(&b.addr(), &[]);
    write_sets(master.port, 2_000, 1024, "before");
    wait_digests_equal(&master, &[&replica], LONG);
    let syncs = b.metric("georelay_upstream_full_syncs_total", &[]);

    // ~30 MB more than B's 12 MB disk holds; A's disk has room.
    write_sets(master.port, 30_000, 1024, "fill");
    let full = std::time::Instant::now();
    wait_reports_full_disk(&b);
    let held = b
        .try_metric("georelay_log_head_offset", &[])
        .expect("B answers /metrics on a full disk");
    assert!(
        held < a.metric("georelay_log_head_offset", &[]),
        "B's disk never filled: it holds everything A has"
    );
    wait_until(LONG, "B's replica is served everything B holds", || {
        b.try_metric("georelay_replica_ack_offset", &[])
            .is_ok_and(|v| v >= held - 300_000.0)
    });

    // One message per retry, and a retry every 5 s (not one a few times a second).
    let errors = b
        .log_text()
        .matches("cannot write the replication log")
        .count();
    let limit = full.elapsed().as_secs() as usize / 4 + 2;
    assert!(
        (1..=limit).contains(&errors),
        "{errors} log-write errors in {:?} on a full disk",
        full.elapsed()
    );
    disk.resize("256m");
    wait_until(LONG, "B is ready again once space returns", || {
        http_get(b.admin_port, "/readyz").is_some_and(|r| r.0 == 200)
    });
    wait_digests_equal(&master, &[&replica], LONG);
    assert_eq!(
        b.metric("georelay_upstream_full_syncs_total", &[]),
        syncs,
        "the full disk cost B a new snapshot"
    );
    assert_eq!(b.metric("georelay_log_corruptions_total", &[]), 0.0);
    assert_eq!(a.metric("georelay_upstream_full_syncs_total", &[]), 1.0);
    assert_eq!(master.info_field("stats", "sync_full"), "1");
}
