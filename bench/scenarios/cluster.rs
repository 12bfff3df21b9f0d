//! Cluster lanes: a real Redis Cluster of 3 masters relayed by one site agent and one region
//! agent (one lane per shard over one QUIC connection), next to one standalone stream in the
//! same run: aggregate relay throughput, CPU per GB, RSS and per-lane lag under load; then the
//! flow-control case, one lane catching up a large backlog while another gets a trickle.

use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};

use super::cluster_flow::{flow_control, FlowOpts, FLOW};
use super::cluster_probe::{sorted_lags, KeyProber};
use super::cluster_setup::{cluster_benchmark, lane_head, ClusterSetup};
use super::{Ctx, Scenario};
use crate::client::Client;
use crate::harness::{cpu_secs, vm_mib, wait_for};
use crate::load::redis_benchmark;
use crate::report::fmt;
use crate::results::{rec_lag, Results, Target};
use crate::servers::{info_field, offset};
use crate::topo::{Setup, Topo};
use crate::{GB, MB};

pub(super) const SC: &str = "cluster";
pub(super) const PROBE_EVERY: Duration = Duration::from_millis(5);

/// What one case measures under load: the lanes (master, hash tag, far replica) and the agents.
struct Under<'a> {
    lanes: Vec<(u16, String, u16)>,
    a: &'a crate::servers::Agent,
    b: &'a crate::servers::Agent,
    origin: Box<dyn Fn() -> u64 + 'a>,
    wait_far: Box<dyn Fn(Duration) -> Option<Duration> + 'a>,
    load: Box<dyn Fn() -> Result<Duration> + 'a>,
    /// Whether agent A's log holds the origin's stream up to now (every lane).
    ingested: Box<dyn Fn() -> bool + 'a>,
}

pub(super) fn load1() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

fn measure(res: &mut Results, case: &str, u: &Under<'_>) -> Result<()> {
    // Idle lag, every lane at once.
    let probes = u
        .lanes
        .iter()
        .map(|(m, tag, far)| KeyProber::start(*m, tag, *far, PROBE_EVERY))
        .collect::<Result<Vec<_>>>()?;
    std::thread::sleep(Duration::from_millis(2000));
    for (i, p) in probes.into_iter().enumerate() {
        let (s, _) = p.finish(Duration::from_millis(300))?;
        rec_lag(
            res,
            SC,
            case,
            &format!("lane {}: idle", i + 1),
            &sorted_lags(&s),
        );
    }
    let (pa, pb) = (u.a.pid(), u.b.pid());
    let (ca0, cb0) = (cpu_secs(pa), cpu_secs(pb));
    let off0 = (u.origin)();
    let probes = u
        .lanes
        .iter()
        .map(|(m, tag, far)| KeyProber::start(*m, tag, *far, PROBE_EVERY))
        .collect::<Result<Vec<_>>>()?;
    let t0 = Instant::now();
    let el = (u.load)()?;
    let off1 = (u.origin)();
    let far_end: u64 = u.lanes.iter().map(|l| offset(l.2)).sum();
    let drain = (u.wait_far)(Duration::from_secs(300));
    let total = t0.elapsed();
    let mut missing = 0;
    for (i, p) in probes.into_iter().enumerate() {
        let (s, m) = p.finish(Duration::from_millis(500))?;
        missing += m;
        rec_lag(
            res,
            SC,
            case,
            &format!("lane {}: loaded", i + 1),
            &sorted_lags(&s),
        );
    }
    let bytes = (off1 - off0) as f64;
    let (ca, cb) = (cpu_secs(pa) - ca0, cpu_secs(pb) - cb0);
    res.rec(SC, case, "lanes", "n", u.lanes.len() as f64);
    res.rec(
        SC,
        case,
        "origin stream (all lanes)",
        "MB/s",
        bytes / el.as_secs_f64() / MB,
    );
    let d = drain.map_or(f64::INFINITY, |d| d.as_secs_f64());
    res.rec(
        SC,
        case,
        "relayed to the far replicas (load start → all caught up)",
        "MB/s",
        if drain.is_some() {
            bytes / total.as_secs_f64() / MB
        } else {
            0.0
        },
    );
    res.rec(
        SC,
        case,
        "far replicas behind at load end",
        "MB",
        off1.saturating_sub(far_end) as f64 / MB,
    );
    res.rec(SC, case, "far replicas drain after load", "s", d);
    res.rec(
        SC,
        case,
        "agent A CPU per GB of stream",
        "s/GB",
        ca / (bytes / GB),
    );
    res.rec(
        SC,
        case,
        "agent B CPU per GB of stream",
        "s/GB",
        cb / (bytes / GB),
    );
    res.rec(
        SC,
        case,
        "agent A CPU while loaded",
        "cores",
        ca / total.as_secs_f64(),
    );
    res.rec(
        SC,
        case,
        "agent B CPU while loaded",
        "cores",
        cb / total.as_secs_f64(),
    );
    res.rec(SC, case, "agent A peak RSS", "MiB", vm_mib(pa, "VmHWM"));
    res.rec(SC, case, "agent B peak RSS", "MiB", vm_mib(pb, "VmHWM"));
    res.rec(SC, case, "load average (1 min) after the load", "", load1());
    if missing > 0 {
        res.note(
            SC,
            format!("{case}: {missing} probe writes did not arrive in time"),
        );
    }
    // The relay ceiling: B paused (SIGSTOP) while the same load is written, then every lane
    // catches up at once.
    u.b.proc.signal("STOP");
    let off0 = (u.origin)();
    let wrote = (u.load)();
    let ingested = wait_for(Duration::from_secs(300), Duration::from_millis(20), || {
        (u.ingested)()
    });
    let off1 = (u.origin)();
    let (ca0, cb0) = (cpu_secs(pa), cpu_secs(pb));
    u.b.proc.signal("CONT");
    wrote?;
    ingested.ok_or_else(|| anyhow!("{case}: agent A never ingested the load"))?;
    let t0 = Instant::now();
    (u.wait_far)(Duration::from_secs(600))
        .ok_or_else(|| anyhow!("{case}: the far replicas never caught up"))?;
    let el = t0.elapsed().as_secs_f64();
    let bytes = (off1 - off0) as f64;
    let (ca, cb) = (cpu_secs(pa) - ca0, cpu_secs(pb) - cb0);
    let p = "catch-up after B was paused for the load";
    res.rec(
        SC,
        case,
        &format!("{p}: backlog (all lanes)"),
        "MB",
        bytes / MB,
    );
    res.rec(
        SC,
        case,
        &format!("{p}: relay rate to the far replicas"),
        "MB/s",
        bytes / el / MB,
    );
    res.rec(
        SC,
        case,
        &format!("{p}: agent A CPU per GB"),
        "s/GB",
        ca / (bytes / GB),
    );
    res.rec(
        SC,
        case,
        &format!("{p}: agent B CPU per GB"),
        "s/GB",
        cb / (bytes / GB),
    );
    res.rec(SC, case, &format!("{p}: agent A CPU"), "cores", ca / el);
    res.rec(SC, case, &format!("{p}: agent B CPU"), "cores", cb / el);
    res.rec(
        SC,
        case,
        &format!("{p}: agent B peak RSS"),
        "MiB",
        vm_mib(pb, "VmHWM"),
    );
    Ok(())
}

fn run(cx: &Ctx<'_>, res: &mut Results) -> Result<()> {
    let (env, o) = (cx.env, cx.opts);
    let shards: u16 = o.param("cluster.shards", 3)?;
    let value: usize = o.param("cluster.value", 1024)?;
    let n: u64 = o.param("cluster.sets", 300_000)?;
    let backlog_mb: u64 = o.param("cluster.backlog_mb", 500)?;
    // `--set cluster.flow_only=1`: only the flow-control case (a quicker look at it).
    let flow_only = o.param("cluster.flow_only", 0u8)? != 0;
    let series: String = o.param("cluster.flow_series", String::new())?;
    let fo = FlowOpts {
        diag: o.param("cluster.flow_diag", 0u8)? != 0,
        ctl: o.param("cluster.flow_ctl", 0u8)? != 0,
        nice_far: match o.param("cluster.flow_nice_far", 0i32)? {
            0 => None,
            n => Some(n),
        },
        series: (!series.is_empty()).then_some(series),
    };
    for run in 0..o.runs {
        eprintln!("cluster: run {}/{}", run + 1, o.runs);
        if !flow_only {
            let s = Setup::start(env, Topo::Agents, "", None)?;
            let (a, b) = (s.a.as_ref().unwrap(), s.b.as_ref().unwrap());
            let u = Under {
                lanes: vec![(s.master.port, String::new(), s.far.port)],
                a,
                b,
                origin: Box::new(|| s.master.offset()),
                wait_far: Box::new(|l| s.wait_far(l)),
                load: Box::new(|| redis_benchmark(s.master.port, value, n)),
                ingested: Box::new(|| a.head() >= s.master.offset()),
            };
            measure(res, "one standalone stream", &u)?;
        }
        let s = ClusterSetup::start(env, shards)?;
        let u = Under {
            lanes: s
                .lanes
                .iter()
                .map(|l| (l.master, l.tag.clone(), l.far.port))
                .collect(),
            a: &s.site,
            b: &s.region,
            origin: Box::new(|| s.origin_offset()),
            wait_far: Box::new(|l| s.wait_far(l)),
            load: Box::new(|| cluster_benchmark(s.lanes[0].master, value, n)),
            ingested: Box::new(|| {
                s.lanes
                    .iter()
                    .all(|l| lane_head(s.site.admin, &l.name).is_ok_and(|h| h >= offset(l.master)))
            }),
        };
        if !flow_only {
            measure(res, &format!("cluster, {shards} lanes"), &u)?;
        }
        drop(u);
        if shards >= 2 {
            flow_control(res, &s, backlog_mb, &fo)?;
        }
        // The far replicas hold every lane's keys (a cheap sanity check of the relay).
        for l in &s.lanes {
            let (m, f) = (dbsize(l.master)?, dbsize(l.far.port)?);
            if m != f || info_field(l.far.port, "replication", "master_link_status") != "up" {
                res.note(
                    SC,
                    format!("lane {}: master has {m} keys, far replica {f}", l.name),
                );
            }
        }
    }
    Ok(())
}

fn dbsize(port: u16) -> Result<i64> {
    match Client::connect(port)?.cmd(&["DBSIZE"])? {
        georelay::resp::Frame::Integer(n) => Ok(n),
        f => Err(anyhow!("DBSIZE: {f:?}")),
    }
}

fn targets(res: &Results) -> Vec<Target> {
    let g = |m: &str| res.med(SC, FLOW, m).unwrap_or(f64::NAN);
    let (idle, during) = (
        g("trickle lane: idle lag p99"),
        g("trickle lane: during the catch-up lag p99"),
    );
    if idle.is_nan() {
        return Vec::new();
    }
    vec![Target {
        target: "Flow control: the trickle lane's lag p99 while another lane catches up a 500 MB backlog ≤ 2× its idle p99".into(),
        measured: format!("{} ms vs idle {} ms", fmt(during), fmt(idle)),
        met: during <= 2.0 * idle,
    }]
}

pub const SCENARIO: Scenario = Scenario {
    name: "cluster",
    title: "12. Cluster lanes",
    how: "A real Redis 7.0 cluster of 3 masters (`cluster-enabled yes`, `redis-cli --cluster create`), a cluster-mode site agent A (one lane per shard), a cluster-mode region agent B over one QUIC connection (one stream per lane), and one standalone far replica per region shard port; next to it, in the same run, one standalone master → A → B → replica. Load: `redis-benchmark --cluster -t set -d 1024 -P 16 -c 50 -r 100000` (standalone: the same without `--cluster`), `--set cluster.sets=300000` SETs. Relay rate = origin bytes (all lanes) / time from load start until every far replica reached its master's offset (redis-benchmark bound: the relay keeps up); the relay ceiling = the same load written while B is SIGSTOPped, then the time from SIGCONT until every far replica caught up (every lane at once). Lag per lane = a key write (`HSET {tag}lag:<seq>:<ns>` on the shard's master; PUBLISH goes over the cluster bus, not the stream) → its keyspace event at the far replica, one every 5 ms. Flow control: B is SIGSTOPped, `--set cluster.backlog_mb=500` MB of SETs go to lane 1's shard, B is SIGCONTed, and lane 2's probe runs until lane 1's far replica has caught up; its p99 is compared with its idle p99 measured just before, both windows run the same 10 ms polling loop (an INFO on lane 1's far replica). The \"during the catch-up\" CPU rows are per process from SIGCONT until lane 1's far replica caught up. Diagnostics, off by default: `--set cluster.flow_diag=1` also samples, every 10 ms in both windows, how far the trickle is behind its master at A's log, B's log and its far replica (both agents' `/status` and three INFOs: this load itself raises the tail); `--set cluster.flow_ctl=1` adds a control probe that crosses no agent (a write on lane 3's master read back on that master); `--set cluster.flow_series=PATH` appends every probe (write time since the window's start, lag) and the agents' logs to PATH; `--set cluster.flow_nice_far=N` renices lane 1's far replica before SIGCONT (an experiment: as if it had its own host).",
    run,
    targets,
};
