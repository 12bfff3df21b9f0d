//! Integration: faults on the agent's disk. A full disk (a real, small tmpfs) stops appends
//! without losing or half-writing anything; the agent reports not-ready, keeps serving what it
//! has, and resumes by itself when space returns. Needs root (CI runs as root) to mount tmpfs.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::load::write_sets;
use support::{http_get, start_replica, wait_digests_equal, wait_until, Agent, Redis};

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
    let held = agent.metric("georelay_log_head_offset", &[]);
    // It keeps serving what it has: the replica reaches the agent's head, up to the command
    // the full disk cut in two (a replica acknowledges whole commands only; one read chunk).
    wait_until(
        LONG,
        "the replica is served everything the agent holds",
        || agent.metric("georelay_replica_ack_offset", &[]) >= held - 300_000.0,
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
