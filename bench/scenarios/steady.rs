//! Steady load: idle and loaded lag, keeping up, CPU and RSS, for the three topologies.

use std::time::Duration;

use anyhow::Result;

use super::{Ctx, Scenario};
use crate::harness::{cpu_secs, vm_mib};
use crate::load::redis_benchmark;
use crate::probe::Prober;
use crate::report::fmt;
use crate::results::{rec_lag, Results, Target};
use crate::servers::offset;
use crate::topo::{Setup, Topo};
use crate::{GB, MB};

fn run(cx: &Ctx<'_>, res: &mut Results) -> Result<()> {
    let (env, o) = (cx.env, cx.opts);
    let sc = "steady";
    for run in 0..o.runs {
        eprintln!("steady: run {}/{}", run + 1, o.runs);
        for topo in [Topo::Direct, Topo::Native, Topo::Agents] {
            let case = topo.label();
            let s = Setup::start(env, topo, "", None)?;
            std::thread::sleep(Duration::from_millis(300));
            let p = Prober::start(s.master.port, s.far.port, Duration::from_millis(5))?;
            std::thread::sleep(Duration::from_millis(1500));
            let (lags, _) = p.finish(Duration::from_millis(500));
            rec_lag(res, sc, case, "idle", &lags);
            for (label, value, n) in [("100 B", 100usize, o.n100), ("1 KB", 1024, o.n1k)] {
                let pids: Vec<u32> = [&s.a, &s.b]
                    .iter()
                    .filter_map(|x| x.as_ref().map(|a| a.pid()))
                    .collect();
                let cpu0: Vec<f64> = pids.iter().map(|p| cpu_secs(*p)).collect();
                let off0 = s.master.offset();
                let p = Prober::start(s.master.port, s.far.port, Duration::from_millis(5))?;
                let el = redis_benchmark(s.master.port, value, n)?;
                let off1 = s.master.offset();
                let far_at_end = offset(s.far.port);
                let drain = s.wait_far(Duration::from_secs(120));
                let (lags, missing) = p.finish(Duration::from_secs(2));
                let bytes = (off1 - off0) as f64;
                res.rec(
                    sc,
                    case,
                    &format!("{label}: SET/s at the origin"),
                    "k/s",
                    n as f64 / el.as_secs_f64() / 1e3,
                );
                res.rec(
                    sc,
                    case,
                    &format!("{label}: origin stream"),
                    "MB/s",
                    bytes / el.as_secs_f64() / MB,
                );
                res.rec(
                    sc,
                    case,
                    &format!("{label}: far replica behind at load end"),
                    "MB",
                    off1.saturating_sub(far_at_end) as f64 / MB,
                );
                let d = drain.map(|d| d.as_secs_f64()).unwrap_or(f64::INFINITY);
                res.rec(
                    sc,
                    case,
                    &format!("{label}: far replica drain after load"),
                    "s",
                    d,
                );
                res.rec(
                    sc,
                    case,
                    &format!("{label}: far replica keeps up (drain ≤ 1 s)"),
                    "yes=1",
                    if d <= 1.0 { 1.0 } else { 0.0 },
                );
                rec_lag(res, sc, case, &format!("{label}: loaded"), &lags);
                if missing > 0 {
                    res.note(sc, format!("run {}: {case} {label}: {missing} probe messages did not arrive in time", run + 1));
                }
                for (i, pid) in pids.iter().enumerate() {
                    let who = if i == 0 { "A" } else { "B" };
                    res.rec(
                        sc,
                        case,
                        &format!("{label}: agent {who} CPU per GB of stream"),
                        "s/GB",
                        (cpu_secs(*pid) - cpu0[i]) / (bytes / GB),
                    );
                }
                if let (Some(a), Some(b)) = (&s.a, &s.b) {
                    res.rec(
                        sc,
                        case,
                        &format!("{label}: agent A peak RSS"),
                        "MiB",
                        vm_mib(a.pid(), "VmHWM"),
                    );
                    res.rec(
                        sc,
                        case,
                        &format!("{label}: agent B peak RSS"),
                        "MiB",
                        vm_mib(b.pid(), "VmHWM"),
                    );
                }
            }
        }
    }
    Ok(())
}

fn targets(res: &Results) -> Vec<Target> {
    let mut t = Vec::new();
    let g = |sc: &str, case: &str, m: &str| res.med(sc, case, m).unwrap_or(f64::NAN);
    let (d, n, a) = (
        Topo::Direct.label(),
        Topo::Native.label(),
        Topo::Agents.label(),
    );
    let (ad, dd) = (
        g("steady", a, "idle lag p99"),
        g("steady", d, "idle lag p99"),
    );
    t.push(Target {
        target: "Lag: agent-chain idle p99 ≤ direct p99 + 1 ms".into(),
        measured: format!("{} ms vs {} ms + 1", fmt(ad), fmt(dd)),
        met: ad <= dd + 1.0,
    });
    let (al, nl) = (
        g("steady", a, "100 B: loaded lag p99"),
        g("steady", n, "100 B: loaded lag p99"),
    );
    t.push(Target {
        target: "Lag: agent-chain p99 under the 100 B load ≤ native chain p99".into(),
        measured: format!("{} ms vs {} ms", fmt(al), fmt(nl)),
        met: al <= nl,
    });
    let k = "100 B: far replica keeps up (drain ≤ 1 s)";
    let runs = |case: &str| {
        res.rows
            .iter()
            .find(|r| r.0 == "steady" && r.1 == case && r.2 == k)
            .map(|r| r.4.clone())
            .unwrap_or_default()
    };
    let (ak, nk) = (runs(a), runs(n));
    let met = ak.iter().zip(nk.iter()).all(|(x, y)| *x >= *y);
    t.push(Target {
        target:
            "Keeping up: far replica keeps up with the 100 B load whenever the native chain does"
                .into(),
        measured: format!("runs kept up: agents {:?}, native {:?}", ak, nk),
        met,
    });
    t
}

pub const SCENARIO: Scenario = Scenario {
    name: "steady",
    title: "1. Steady load",
    how: "redis-benchmark `-t set -P 16 -c 50 -r 100000`, 100 B then 1 KB values, against each topology started fresh per run; lag = PUBLISH on the origin → message on a SUBSCRIBE at the far replica, one probe every 5 ms (idle: 1.5 s of probes; loaded: during the load and until the far replica drained). CPU/RSS from /proc of each agent (default link config: zstd level 1).",
    run,
    targets,
};
