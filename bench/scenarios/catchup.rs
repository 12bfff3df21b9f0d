//! Catch-up of the far replica after an outage, next to a paused direct replica.

use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};

use super::{no_targets, Ctx, Scenario};
use crate::harness::{cpu_secs, vm_mib, wait_for};
use crate::load::{redis_benchmark, sets_for_mb};
use crate::results::Results;
use crate::servers::offset;
use crate::topo::{Setup, Topo};
use crate::{GB, MB};

fn run(cx: &Ctx<'_>, res: &mut Results) -> Result<()> {
    let (env, o) = (cx.env, cx.opts);
    let sc = "catchup";
    let mb = o.catchup_mb;
    for run in 0..o.runs {
        eprintln!("catchup: run {}/{} ({mb} MB)", run + 1, o.runs);
        // baseline: a direct replica paused (SIGSTOP) while the backlog is written; the master
        // keeps it in the replica's output buffer.
        {
            let case = format!("direct replica paused, {mb} MB");
            let s = Setup::start(env, Topo::Direct, "", None)?;
            s.far.proc.signal("STOP");
            redis_benchmark(s.master.port, 1024, sets_for_mb(mb, 1024))?;
            let target = s.master.offset();
            s.far.proc.signal("CONT");
            let t0 = Instant::now();
            wait_for(Duration::from_secs(600), Duration::from_millis(10), || {
                offset(s.far.port) >= target
            })
            .ok_or_else(|| anyhow!("direct replica never caught up"))?;
            let el = t0.elapsed().as_secs_f64();
            res.rec(sc, &case, "far replica caught up after", "s", el);
            res.rec(sc, &case, "catch-up rate", "MB/s", mb as f64 * MB / el / MB);
        }
        {
            // B is stopped for the outage (no wan-sim: this row measures the relay alone; the
            // lossy scenario goes through it). The far replica stays up and reconnects to B by
            // itself (Redis retries once a second).
            let case = format!("agent chain, B down during the outage, {mb} MB");
            let link = "compression = \"none\"";
            let mut s = Setup::start(env, Topo::Agents, link, None)?;
            let b_head0 = s.b.as_ref().unwrap().head();
            s.b.as_mut().unwrap().proc.stop();
            redis_benchmark(s.master.port, 1024, sets_for_mb(mb, 1024))?;
            let target = s.master.offset();
            let a = s.a.as_ref().unwrap();
            wait_for(Duration::from_secs(600), Duration::from_millis(20), || {
                a.head() >= target
            })
            .ok_or_else(|| anyhow!("A never ingested"))?;
            let cpu_a1 = cpu_secs(a.pid());
            s.b.as_mut().unwrap().restart()?;
            let t0 = Instant::now();
            let (a, b) = (s.a.as_ref().unwrap(), s.b.as_ref().unwrap());
            let tb = wait_for(Duration::from_secs(900), Duration::from_millis(10), || {
                b.head() >= target
            })
            .ok_or_else(|| anyhow!("B never caught up"))?;
            let tr = wait_for(Duration::from_secs(900), Duration::from_millis(10), || {
                offset(s.far.port) >= target
            })
            .ok_or_else(|| anyhow!("far replica never caught up"))?;
            let el = t0.elapsed().as_secs_f64();
            let _ = tr;
            let backlog = (target - b_head0) as f64;
            res.rec(sc, &case, "far replica caught up after", "s", el);
            res.rec(sc, &case, "catch-up rate", "MB/s", backlog / el / MB);
            res.rec(sc, &case, "B's log caught up after", "s", tb.as_secs_f64());
            res.rec(
                sc,
                &case,
                "A CPU per GB relayed",
                "s/GB",
                (cpu_secs(a.pid()) - cpu_a1) / (backlog / GB),
            );
            res.rec(
                sc,
                &case,
                "B CPU per GB (relay + serving the replica)",
                "s/GB",
                cpu_secs(b.pid()) / (backlog / GB),
            );
            res.rec(
                sc,
                &case,
                "A peak RSS (VmHWM)",
                "MiB",
                vm_mib(a.pid(), "VmHWM"),
            );
            res.rec(
                sc,
                &case,
                "B peak RSS (VmHWM)",
                "MiB",
                vm_mib(b.pid(), "VmHWM"),
            );
        }
    }
    Ok(())
}

pub const SCENARIO: Scenario = Scenario {
    name: "catchup",
    title: "4. Catch-up to the far replica after an outage",
    how: "Baseline: a direct replica is SIGSTOPped while the backlog is written (the master holds it in the replica output buffer), then SIGCONTed. Agent chain: agent B is stopped (SIGTERM) while the backlog is written into A, then started; its Redis replica stays up and reconnects by itself (Redis retries once a second). Timed from B's start until the far replica's offset reaches the origin's. (No wan-sim in this row: it measures the relay alone; scenario 6 goes through wan-sim, and scenario 8 measures wan-sim's own ceiling.)",
    run,
    targets: no_targets,
};
