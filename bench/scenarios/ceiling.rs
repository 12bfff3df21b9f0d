//! Relay ceiling and cost: a backlog relayed log → QUIC → log, next to raw quinn.

use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};

use super::{Ctx, Scenario};
use crate::client::Client;
use crate::harness::{cpu_secs, vm_mib, wait_for};
use crate::load::{redis_benchmark, sets_for_mb};
use crate::rawquinn::raw_quinn;
use crate::report::fmt;
use crate::results::{stats, Results, Target};
use crate::servers::{Agent, Redis, Up};
use crate::{GB, MB};

fn run(cx: &Ctx<'_>, res: &mut Results) -> Result<()> {
    let (env, o, rt) = (cx.env, cx.opts, cx.rt);
    let sc = "ceiling";
    let sizes: Vec<u64> = o
        .backlogs_mb
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    for run in 0..o.runs {
        for &mb in &sizes {
            eprintln!("ceiling: run {}/{} backlog {mb} MB", run + 1, o.runs);
            let case_a = format!("agents A→B, {mb} MB backlog");
            let master = Redis::start(env, "master", &[])?;
            let link = "compression = \"none\"";
            let log = "max_bytes = \"32GiB\"";
            let a = Agent::start(env, "site-a", Up::Redis(master.port), true, link, log)?;
            let mut b = Agent::start(
                env,
                "region-b",
                Up::Agent(a.quic.unwrap()),
                false,
                link,
                log,
            )?;
            Client::connect(master.port)?.cmd(&["SET", "bench:init", "1"])?;
            wait_for(Duration::from_secs(60), Duration::from_millis(20), || {
                let h = master.offset();
                h > 0 && b.head() >= h
            })
            .ok_or_else(|| anyhow!("B never synced"))?;
            let b_head0 = b.head();
            b.proc.stop();
            let cpu_a0 = cpu_secs(a.pid());
            let t_ing = Instant::now();
            redis_benchmark(master.port, 1024, sets_for_mb(mb, 1024))?;
            let target = master.offset();
            wait_for(Duration::from_secs(600), Duration::from_millis(20), || {
                a.head() >= target
            })
            .ok_or_else(|| anyhow!("A never ingested the backlog"))?;
            let ing = t_ing.elapsed().as_secs_f64();
            let cpu_a1 = cpu_secs(a.pid());
            let backlog = (target - b_head0) as f64;
            res.rec(
                sc,
                &case_a,
                "origin → A ingest (redis-benchmark 1 KB SETs)",
                "MB/s",
                backlog / ing / MB,
            );
            res.rec(
                sc,
                &case_a,
                "A CPU per GB ingested from Redis",
                "s/GB",
                (cpu_a1 - cpu_a0) / (backlog / GB),
            );
            b.restart()?;
            let t0 = Instant::now();
            let first = wait_for(Duration::from_secs(600), Duration::from_millis(5), || {
                b.head() > b_head0
            });
            let done = wait_for(Duration::from_secs(900), Duration::from_millis(10), || {
                b.head() >= target
            })
            .ok_or_else(|| anyhow!("B never caught up"))?;
            let el = t0.elapsed().as_secs_f64();
            let _ = done;
            let cpu_a = cpu_secs(a.pid()) - cpu_a1;
            let cpu_b = cpu_secs(b.pid());
            res.rec(
                sc,
                &case_a,
                "log→QUIC→log catch-up",
                "MB/s",
                backlog / el / MB,
            );
            res.rec(
                sc,
                &case_a,
                "time to first byte after B starts",
                "s",
                first.map(|d| d.as_secs_f64()).unwrap_or(f64::NAN),
            );
            res.rec(
                sc,
                &case_a,
                "A CPU per GB relayed",
                "s/GB",
                cpu_a / (backlog / GB),
            );
            res.rec(
                sc,
                &case_a,
                "B CPU per GB relayed",
                "s/GB",
                cpu_b / (backlog / GB),
            );
            res.rec(
                sc,
                &case_a,
                "A+B CPU per GB relayed",
                "s/GB",
                (cpu_a + cpu_b) / (backlog / GB),
            );
            res.rec(
                sc,
                &case_a,
                "A peak RSS (VmHWM)",
                "MiB",
                vm_mib(a.pid(), "VmHWM"),
            );
            res.rec(
                sc,
                &case_a,
                "B peak RSS (VmHWM)",
                "MiB",
                vm_mib(b.pid(), "VmHWM"),
            );
            res.rec(sc, &case_a, "A RSS at end", "MiB", vm_mib(a.pid(), "VmRSS"));
            drop(b);
            drop(a);
            drop(master);
            let case_q = format!("raw quinn, one stream, {mb} MB");
            let q = raw_quinn(env, rt, target - b_head0, None)?;
            let (el, cpu) = (q.secs, q.cpu);
            res.rec(
                sc,
                &case_q,
                "log→QUIC→log catch-up",
                "MB/s",
                backlog / el / MB,
            );
            res.rec(
                sc,
                &case_q,
                "A+B CPU per GB relayed",
                "s/GB",
                cpu / (backlog / GB),
            );
        }
    }
    Ok(())
}

fn targets(res: &Results) -> Vec<Target> {
    let mut t = Vec::new();
    let g = |sc: &str, case: &str, m: &str| res.med(sc, case, m).unwrap_or(f64::NAN);
    let sizes: Vec<String> = res
        .rows
        .iter()
        .filter(|r| r.0 == "ceiling" && r.1.starts_with("agents"))
        .map(|r| r.1.clone())
        .fold(Vec::new(), |mut v, c| {
            if !v.contains(&c) {
                v.push(c)
            }
            v
        });
    if !sizes.is_empty() {
        let mut cpu_ratios = Vec::new();
        let mut tp_ratios = Vec::new();
        let mut rss = Vec::new();
        for c in &sizes {
            let q = c
                .replace("agents A→B, ", "raw quinn, one stream, ")
                .replace(" backlog", "");
            cpu_ratios.push(
                g("ceiling", c, "A+B CPU per GB relayed")
                    / g("ceiling", &q, "A+B CPU per GB relayed"),
            );
            tp_ratios.push(
                g("ceiling", c, "log→QUIC→log catch-up")
                    / g("ceiling", &q, "log→QUIC→log catch-up"),
            );
            let max_rss = |m: &str| {
                res.rows
                    .iter()
                    .find(|r| r.0 == "ceiling" && r.1 == *c && r.2 == m)
                    .map(|r| stats(&r.4).2)
                    .unwrap_or(f64::NAN)
            };
            rss.push(max_rss("A peak RSS (VmHWM)").max(max_rss("B peak RSS (VmHWM)")));
        }
        t.push(Target {
            target: "CPU: agent (A+B) CPU ≤ 1.5× raw quinn's for the same bytes".into(),
            measured: format!(
                "{} × ({})",
                cpu_ratios
                    .iter()
                    .map(|x| fmt(*x))
                    .collect::<Vec<_>>()
                    .join(" / "),
                sizes.join(" / ")
            ),
            met: cpu_ratios.iter().all(|x| *x <= 1.5),
        });
        t.push(Target {
            target: "Relay ceiling ≥ 70% of raw quinn throughput".into(),
            measured: format!(
                "{} ({})",
                tp_ratios
                    .iter()
                    .map(|x| format!("{:.0}%", x * 100.0))
                    .collect::<Vec<_>>()
                    .join(" / "),
                sizes.join(" / ")
            ),
            met: tp_ratios.iter().all(|x| *x >= 0.7),
        });
        let flat = rss.last().copied().unwrap_or(f64::NAN)
            <= rss.first().copied().unwrap_or(f64::NAN) * 1.15 + 4.0;
        t.push(Target {
            target: "Memory: agent peak RSS ≤ 64 MiB, flat from the small to the large backlog"
                .into(),
            measured: format!(
                "max of A, B over runs: {} MiB ({})",
                rss.iter().map(|x| fmt(*x)).collect::<Vec<_>>().join(" / "),
                sizes.join(" / ")
            ),
            met: rss.iter().all(|x| *x <= 64.0) && flat,
        });
    }
    t
}

pub const SCENARIO: Scenario = Scenario {
    name: "ceiling",
    title: "2–3. Cost and relay ceiling (log → QUIC → log, no Redis in the loop)",
    how: "B is stopped (SIGTERM), the backlog is written into A with 1 KB SETs, B is started and timed until its `georelay_log_head_offset` reaches A's. `link.compression = \"none\"` so both rows move the same bytes. The raw quinn row sends the same number of bytes on one stream with the agents' default transport settings (BBR, 8 MiB windows, 8 MiB socket buffers), both ends in the bench process.",
    run,
    targets,
};
