//! Integration: no tokio thread touches a log file. A site agent (origin → A) and a region
//! agent (A → B), each under `strace -f`, relay a write load with small segments, so segments
//! rotate and are fsynced, retention deletes, B refreshes its snapshot from A, and B serves a
//! Redis replica a full sync and the stream. Every traced syscall on a file in either log
//! directory must come from one of georelay's own threads (the log writer, the reader pool,
//! group commit, or the main thread at start and stop), never from a tokio worker or tokio's
//! blocking pool (which tokio names like its workers).

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use support::{agent_config_from_agent, free_udp_port, wait_until, Agent, Pki, Redis};

const LONG: Duration = Duration::from_secs(90);
const SYSCALLS: &str = "trace=openat,read,pread64,preadv,write,pwrite64,pwritev,pwritev2,\
                        fsync,fdatasync,unlink,unlinkat,rename,renameat,renameat2,ftruncate,\
                        fallocate,fadvise64,prctl";
const SMALL_LOG: &str = "[log]\nfsync = \"always\"\nsegment_bytes = \"256KiB\"\n\
                         max_bytes = \"2MiB\"\nsnapshot_after = \"1MiB\"\n";

fn strace(out: &Path) -> Vec<String> {
    ["strace", "-f", "-qq", "-y", "-e", SYSCALLS, "-o"]
        .iter()
        .map(|s| s.to_string())
        .chain([out.display().to_string()])
        .collect()
}

/// One traced syscall: the thread's id and the line.
struct Call {
    tid: u32,
    line: String,
}

fn calls(trace: &Path) -> Vec<Call> {
    let text = std::fs::read_to_string(trace)
        .unwrap_or_else(|e| panic!("strace output {}: {e}", trace.display()));
    text.lines()
        .filter_map(|l| {
            let (tid, rest) = l.split_once(' ')?;
            Some(Call {
                tid: tid.parse().ok()?,
                line: rest.trim_start().to_string(),
            })
        })
        .collect()
}

/// Thread names by id, from the `prctl(PR_SET_NAME, "…")` every named thread makes.
fn names(calls: &[Call]) -> HashMap<u32, String> {
    calls
        .iter()
        .filter_map(|c| {
            let rest = c.line.strip_prefix("prctl(PR_SET_NAME, \"")?;
            Some((c.tid, rest.split('"').next()?.to_string()))
        })
        .collect()
}

/// The log files' syscalls of one agent, checked; returns counts of (syscall, thread name).
fn check(agent: &str, trace: &Path, data_dir: &Path) -> HashMap<(String, String), usize> {
    let calls = calls(trace);
    let names = names(&calls);
    assert!(
        names.values().any(|n| n.starts_with("tokio")),
        "{agent}: no tokio thread seen; is the trace complete? ({} calls, threads {names:?}, first lines:\n{})",
        calls.len(),
        calls.iter().take(10).map(|c| format!("{} {}", c.tid, c.line)).collect::<Vec<_>>().join("\n")
    );
    let dir = data_dir.display().to_string();
    let mut counts = HashMap::new();
    let mut bad = Vec::new();
    for c in &calls {
        let log_file = ["/segments/", "/snapshots/", "/state.json"]
            .iter()
            .any(|p| c.line.contains(&format!("{dir}{p}")));
        if !log_file {
            continue;
        }
        let name = names.get(&c.tid).cloned().unwrap_or_else(|| "main".into());
        if name.starts_with("tokio") {
            bad.push(format!("{name} [{}]: {}", c.tid, c.line));
        }
        let syscall = c.line.split('(').next().unwrap_or("").to_string();
        *counts.entry((syscall, name)).or_insert(0) += 1;
    }
    assert!(
        bad.is_empty(),
        "{agent}: {} log-file syscalls on tokio threads, e.g.:\n{}",
        bad.len(),
        bad.iter().take(20).cloned().collect::<Vec<_>>().join("\n")
    );
    counts
}

fn count(counts: &HashMap<(String, String), usize>, syscall: &str, thread: &str) -> usize {
    counts
        .iter()
        .filter(|((s, t), _)| s == syscall && t.starts_with(thread))
        .map(|(_, n)| n)
        .sum()
}

/// Stops a traced agent: SIGTERM to the agent itself (strace would only detach), then waits.
fn stop_traced(agent: &mut Agent) {
    let pid = agent.traced_pid().expect("the traced agent's pid");
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(ok.success());
    agent
        .wait_exit(Duration::from_secs(30))
        .expect("the traced agent exits after SIGTERM");
}

#[test]
fn log_files_are_touched_only_by_georelay_threads_never_by_tokio() {
    let work = tempfile::tempdir().expect("tempdir");
    let (trace_a, trace_b): (PathBuf, PathBuf) =
        (work.path().join("a.trace"), work.path().join("b.trace"));
    let pki = Pki::new(&["site-a", "region-b"]);
    let origin = Redis::start(&[]);
    let quic = free_udp_port();
    let mut a = Agent::start_wrapped(
        &format!(
            "name = \"site-a\"\ndata_dir = \"{{data_dir}}\"\n[upstream]\nredis = \"{}\"\n\
             [listen]\nredis = \"127.0.0.1:{{redis_port}}\"\nadmin = \"127.0.0.1:{{admin_port}}\"\n\
             agent = \"127.0.0.1:{quic}\"\n{}{SMALL_LOG}",
            origin.addr(),
            pki.tls_section("site-a", None)
        ),
        &strace(&trace_a),
    );
    let mut b = Agent::start_wrapped(
        &format!(
            "{}{SMALL_LOG}",
            agent_config_from_agent(
                "region-b",
                &format!("127.0.0.1:{quic}"),
                &pki.tls_section("region-b", Some("site-a")),
            )
        ),
        &strace(&trace_b),
    );
    let replica = Redis::start(&["--replicaof", "127.0.0.1", &b.redis_port.to_string()]);
    for round in 0..8u64 {
        support::load::write_sets(origin.port, 2_000, 1024, &format!("io{round}"));
    }
    wait_until(LONG, "B refreshes its snapshot from A", || {
        b.try_metric("georelay_snapshot_refreshes_total", &[("result", "ok")])
            .is_ok_and(|v| v >= 1.0)
    });
    support::wait_digests_equal(&origin, &[&replica], LONG);
    stop_traced(&mut b);
    stop_traced(&mut a);

    let ca = check("site agent", &trace_a, &a.data_dir);
    let cb = check("region agent", &trace_b, &b.data_dir);
    eprintln!("site agent: {ca:?}\nregion agent: {cb:?}");
    // The trace saw the work it is about (so the check above cannot pass on an empty trace).
    for (agent, c) in [("site", &ca), ("region", &cb)] {
        assert!(
            count(c, "pwritev", "georelay-log-w") > 0,
            "{agent}: appends"
        );
        assert!(
            count(c, "fdatasync", "georelay-log-s") > 0,
            "{agent}: group commit"
        );
        assert!(count(c, "pread64", "georelay-log-r") > 0, "{agent}: reads");
        assert!(
            count(c, "unlink", "georelay-log-w") > 0,
            "{agent}: retention"
        );
    }
    assert!(
        count(&cb, "write", "georelay-log-w") > 0,
        "region: the snapshot refresh is written on the log writer"
    );
    assert!(
        count(&ca, "read", "georelay-log-r") > 0,
        "site: the snapshot sent to B is read on the reader pool"
    );
}
