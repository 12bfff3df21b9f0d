//! The flow-control case of the cluster scenario: one lane catching up a large backlog while
//! another lane gets a trickle; the trickle's lag then vs idle, where the CPU goes, and the
//! diagnostics that located the tail (time series, a control probe that crosses no agent).

use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};

use super::cluster::{load1, PROBE_EVERY, SC};
use super::cluster_probe::{sorted_lags, KeyProber, Sample};
use super::cluster_setup::{lane_head, shard_benchmark, ClusterSetup};
use crate::harness::{cpu_secs, wait_for};
use crate::load::sets_for_mb;
use crate::results::{pct, rec_lag, Results};
use crate::servers::offset;
use crate::MB;

pub const FLOW: &str = "flow control: one lane catching up, one lane with a trickle";

/// Lane 1 gets a `mb` MB backlog while agent B is stopped (SIGSTOP: its replicas and the QUIC
/// connection stay); on SIGCONT, lane 2's probe (a write every 5 ms, the trickle) runs until
/// lane 1's far replica has caught up. Its lag p99 then vs its idle p99 just before.
pub fn flow_control(res: &mut Results, s: &ClusterSetup, mb: u64, fo: &FlowOpts) -> Result<()> {
    let (l1, l2) = (&s.lanes[0], &s.lanes[1]);
    let idle_ns = crate::harness::now_ns();
    // The control probe (`cluster.flow_ctl=1`): writes on lane 3's master, read back on that
    // master itself, so it crosses no agent: what the machine's load alone does to a probe.
    let ctl = |on: bool| -> Result<Option<KeyProber>> {
        match s.lanes.get(2).filter(|_| on) {
            Some(l) => Ok(Some(KeyProber::start(
                l.master,
                &l.tag,
                l.master,
                PROBE_EVERY,
            )?)),
            None => Ok(None),
        }
    };
    let c = ctl(fo.ctl)?;
    // Where the trickle queues (`cluster.flow_diag=1`): the most its stream was behind its
    // master at A's log, at B's log and at its far replica (bytes, sampled every 10 ms). Off by
    // default: polling both agents' `/status` and three INFOs every 10 ms loads the machine
    // and inflated the p99 it was meant to explain. The idle window and the catch-up run the
    // same loop (with or without the sampling), so both are measured the same way.
    let sample = |behind: &mut [u64; 3]| {
        if !fo.diag {
            return;
        }
        let m = offset(l2.master);
        let at_a = lane_head(s.site.admin, &l2.name).unwrap_or(0);
        let at_b = lane_head(s.region.admin, &l2.name).unwrap_or(0);
        let far = offset(l2.far.port);
        for (k, (hi, lo)) in [(m, at_a), (m, at_b), (m, far)].into_iter().enumerate() {
            behind[k] = behind[k].max(hi.saturating_sub(lo));
        }
    };
    let p = KeyProber::start(l2.master, &l2.tag, l2.far.port, PROBE_EVERY)?;
    let mut idle_behind = [0u64; 3];
    let t_idle = Instant::now();
    wait_for(Duration::from_secs(3), Duration::from_millis(10), || {
        sample(&mut idle_behind);
        // The same INFO the catch-up loop polls.
        let _ = offset(l1.far.port);
        t_idle.elapsed() >= Duration::from_secs(3)
    });
    let (idle_s, _) = p.finish(Duration::from_millis(300))?;
    let idle = sorted_lags(&idle_s);
    let ctl_idle = match c {
        Some(c) => c.finish(Duration::from_millis(300))?.0,
        None => Vec::new(),
    };
    s.region.proc.signal("STOP");
    let t_stop = Instant::now();
    let wrote = shard_benchmark(l1.master, &l1.tag, 1024, sets_for_mb(mb, 1024));
    let target = offset(l1.master);
    let ingested = wait_for(Duration::from_secs(300), Duration::from_millis(20), || {
        lane_head(s.site.admin, &l1.name).is_ok_and(|h| h >= target)
    });
    let stopped = t_stop.elapsed();
    // Who uses the CPU while lane 1 catches up (cores, SIGCONT → lane 1's far replica caught
    // up): the agents, lane 1's far replica (it applies the whole backlog) and everything else.
    let far1 = l1.far.proc.pid();
    if let Some(n) = fo.nice_far {
        // Experiment only: lane 1's far replica at a lower CPU priority, as if it had its
        // own host.
        let _ = std::process::Command::new("renice")
            .args(["-n", &n.to_string(), "-p", &far1.to_string()])
            .stdout(std::process::Stdio::null())
            .status();
    }
    let cpu_pids = [s.site.pid(), s.region.pid(), far1, l2.far.proc.pid()];
    let cpu0: Vec<f64> = cpu_pids.iter().map(|p| cpu_secs(*p)).collect();
    let busy0 = machine_busy_secs();
    s.region.proc.signal("CONT");
    let cont_ns = crate::harness::now_ns();
    wrote?;
    ingested.ok_or_else(|| anyhow!("the site never ingested lane 1's backlog"))?;
    let backlog = target.saturating_sub(offset(l1.far.port));
    let t0 = Instant::now();
    let c = ctl(fo.ctl)?;
    let p = KeyProber::start(l2.master, &l2.tag, l2.far.port, PROBE_EVERY)?;
    let mut behind = [0u64; 3];
    let caught = wait_for(Duration::from_secs(600), Duration::from_millis(10), || {
        sample(&mut behind);
        offset(l1.far.port) >= target
    });
    let el = t0.elapsed();
    let caught_ns = crate::harness::now_ns();
    let cpu: Vec<f64> = cpu_pids
        .iter()
        .zip(&cpu0)
        .map(|(p, c0)| cpu_secs(*p) - c0)
        .collect();
    let busy = machine_busy_secs() - busy0;
    let (during, missing) = p.finish(Duration::from_millis(500))?;
    caught.ok_or_else(|| anyhow!("lane 1's far replica never caught up"))?;
    // Only the probes written while lane 1 was still catching up.
    let during: Vec<_> = during.into_iter().filter(|s| s.0 <= caught_ns).collect();
    let lags = sorted_lags(&during);
    let ctl_during: Vec<_> = match c {
        Some(c) => c.finish(Duration::from_millis(300))?.0,
        None => Vec::new(),
    };
    let ctl_during: Vec<_> = ctl_during
        .into_iter()
        .filter(|s| s.0 <= caught_ns)
        .collect();
    if !ctl_during.is_empty() {
        rec_lag(
            res,
            SC,
            FLOW,
            "control probe (no agent): idle",
            &sorted_lags(&ctl_idle),
        );
        rec_lag(
            res,
            SC,
            FLOW,
            "control probe (no agent): during the catch-up",
            &sorted_lags(&ctl_during),
        );
    }
    if let Some(path) = &fo.series {
        let phases: [(&str, u128, &[Sample]); 4] = [
            ("idle", idle_ns, &idle_s),
            ("during", cont_ns, &during),
            ("ctl_idle", idle_ns, &ctl_idle),
            ("ctl_during", cont_ns, &ctl_during),
        ];
        write_series(path, cont_ns, caught_ns, &phases)?;
        // The agents' own logs (warnings) of the run, next to the series.
        let mut logs = String::new();
        for a in [&s.site, &s.region] {
            let text = std::fs::read_to_string(a.dir.join("agent.log")).unwrap_or_default();
            logs.push_str(&format!("=== {} (run at {cont_ns})\n{text}", a.name));
        }
        use std::io::Write;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(format!("{path}.agents.log"))?
            .write_all(logs.as_bytes())?;
    }
    rec_lag(res, SC, FLOW, "trickle lane: idle", &idle);
    rec_lag(res, SC, FLOW, "trickle lane: during the catch-up", &lags);
    res.rec(
        SC,
        FLOW,
        "trickle lane: probes during the catch-up",
        "n",
        lags.len() as f64,
    );
    res.rec(
        SC,
        FLOW,
        "trickle lane: p99 during the catch-up / idle p99",
        "×",
        pct(&lags, 99.0) / pct(&idle, 99.0),
    );
    for (k, at) in ["A's log", "B's log", "its far replica"]
        .iter()
        .enumerate()
        .filter(|_| fo.diag)
    {
        res.rec(
            SC,
            FLOW,
            &format!("trickle lane: most behind its master at {at}"),
            "KB",
            behind[k] as f64 / 1e3,
        );
        res.rec(
            SC,
            FLOW,
            &format!("trickle lane, idle: most behind its master at {at}"),
            "KB",
            idle_behind[k] as f64 / 1e3,
        );
    }
    let secs = caught_ns.saturating_sub(cont_ns) as f64 / 1e9;
    for (who, c) in [
        "agent A",
        "agent B",
        "lane 1's far replica",
        "lane 2's far replica",
    ]
    .iter()
    .zip(&cpu)
    {
        res.rec(
            SC,
            FLOW,
            &format!("during the catch-up: {who} CPU"),
            "cores",
            c / secs,
        );
    }
    res.rec(
        SC,
        FLOW,
        "during the catch-up: the whole machine's CPU busy",
        "cores",
        busy / secs,
    );
    res.rec(
        SC,
        FLOW,
        "catching-up lane: backlog",
        "MB",
        backlog as f64 / MB,
    );
    res.rec(
        SC,
        FLOW,
        "catching-up lane: caught up after",
        "s",
        el.as_secs_f64(),
    );
    res.rec(
        SC,
        FLOW,
        "catching-up lane: rate",
        "MB/s",
        backlog as f64 / el.as_secs_f64() / MB,
    );
    res.rec(
        SC,
        FLOW,
        "agent B stopped while the backlog was written",
        "s",
        stopped.as_secs_f64(),
    );
    res.rec(
        SC,
        FLOW,
        "load average (1 min) after the catch-up",
        "",
        load1(),
    );
    if missing > 0 {
        res.note(
            SC,
            format!("flow control: {missing} trickle probes did not arrive in time"),
        );
    }
    Ok(())
}

/// CPU time (s) the whole machine spent busy (all cores; `/proc/stat`: not idle, not iowait).
fn machine_busy_secs() -> f64 {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(cpu) = text.lines().next() else {
        return f64::NAN;
    };
    let v: Vec<f64> = cpu
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    if v.len() < 5 {
        return f64::NAN;
    }
    // USER_HZ is 100 on Linux.
    (v.iter().sum::<f64>() - v[3] - v[4]) / 100.0
}

/// Diagnostics of the flow-control case (`--set cluster.flow_diag=0|1`,
/// `--set cluster.flow_series=PATH`).
pub struct FlowOpts {
    /// Sample where the trickle queues (both agents' `/status`, three INFOs) every 10 ms.
    pub diag: bool,
    /// Run the control probe (no agent on its path) next to the trickle.
    pub ctl: bool,
    /// Experiment (`cluster.flow_nice_far=N`): renice lane 1's far replica to N before SIGCONT.
    pub nice_far: Option<i32>,
    /// Append every trickle probe (phase, write time since the phase start, lag) to this CSV.
    pub series: Option<String>,
}

fn write_series(
    path: &str,
    cont_ns: u128,
    caught_ns: u128,
    phases: &[(&str, u128, &[Sample])],
) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let ms = |a: u128, b: u128| a.saturating_sub(b) as f64 / 1e6;
    // The wall clock at SIGCONT, to line the probes up with samples taken outside the bench.
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
        .saturating_sub(crate::harness::now_ns().saturating_sub(cont_ns));
    writeln!(
        f,
        "# run caught_up_ms={:.1} cont_unix_ms={:.1}",
        ms(caught_ns, cont_ns),
        wall as f64 / 1e6
    )?;
    for (name, t0, samples) in phases {
        for (t, lag) in samples.iter() {
            writeln!(f, "{name},{:.3},{lag:.3}", ms(*t, *t0))?;
        }
    }
    Ok(())
}
