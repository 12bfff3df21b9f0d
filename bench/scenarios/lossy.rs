//! Lossy WAN: the agents and raw quinn through the same wan-sim, 50 ms RTT, with loss.

use std::time::{Duration, Instant};

use anyhow::Result;

use super::{no_targets, Ctx, Scenario};
use crate::harness::wait_for;
use crate::load::{redis_benchmark, sets_for_mb};
use crate::probe::Prober;
use crate::rawquinn::raw_quinn_window;
use crate::results::{rec_lag, Results};
use crate::servers::offset;
use crate::topo::{Setup, Topo};
use crate::MB;

fn run(cx: &Ctx<'_>, res: &mut Results) -> Result<()> {
    let (env, o, rt) = (cx.env, cx.opts, cx.rt);
    let sc = "lossy";
    let losses: Vec<f64> = o
        .losses
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let window = Duration::from_secs_f64(o.lossy_window);
    let mut cases: Vec<(f64, &str)> = losses.iter().map(|l| (*l, "cubic")).collect();
    cases.extend(losses.iter().filter(|l| **l > 0.0).map(|l| (*l, "bbr")));
    for run in 0..o.runs {
        for &(loss, cc) in &cases {
            eprintln!("lossy: run {}/{} loss {loss}% {cc}", run + 1, o.runs);
            let mut flags = vec!["--delay".to_string(), "25ms".to_string()];
            if loss > 0.0 {
                flags.extend(["--loss".to_string(), format!("{loss}%")]);
            }
            let case = format!("agents, {loss}% loss, {cc}");
            let link = format!("compression = \"none\"\ncongestion = \"{cc}\"");
            let s = Setup::start(env, Topo::Agents, &link, Some(&flags))?;
            let (a, b, wan) = (
                s.a.as_ref().unwrap(),
                s.b.as_ref().unwrap(),
                s.wan.as_ref().unwrap(),
            );
            let p = Prober::start(s.master.port, s.far.port, Duration::from_millis(10))?;
            std::thread::sleep(Duration::from_secs(2));
            let (lags, _) = p.finish(Duration::from_millis(500));
            rec_lag(res, sc, &case, "idle", &lags);
            // sustained: a burst of 1 KB SETs larger than the link carries in the window;
            // rate = far replica offset progress over the window
            let off0 = offset(s.far.port);
            redis_benchmark(s.master.port, 1024, sets_for_mb(o.lossy_mb, 1024))?;
            let t0 = Instant::now();
            let f0 = offset(s.far.port);
            std::thread::sleep(window);
            let f1 = offset(s.far.port);
            let _ = off0;
            res.rec(
                sc,
                &case,
                "sustained to the far replica (saturated)",
                "MB/s",
                (f1 - f0) as f64 / t0.elapsed().as_secs_f64() / MB,
            );
            s.wait_far(Duration::from_secs(1)); // not required to finish
                                                // catch-up after an outage: B's log progress over the window after the first byte
            wan.cut();
            std::thread::sleep(Duration::from_millis(200));
            redis_benchmark(s.master.port, 1024, sets_for_mb(o.lossy_mb, 1024))?;
            let target = s.master.offset();
            wait_for(Duration::from_secs(300), Duration::from_millis(20), || {
                a.head() >= target
            });
            let h0 = b.head();
            wan.restore();
            let tr = Instant::now();
            let first = wait_for(Duration::from_secs(60), Duration::from_millis(5), || {
                b.head() > h0
            });
            res.rec(
                sc,
                &case,
                "outage over: first byte after",
                "s",
                first
                    .map(|_| tr.elapsed().as_secs_f64())
                    .unwrap_or(f64::NAN),
            );
            let h1 = b.head();
            let t1 = Instant::now();
            std::thread::sleep(window);
            let h2 = b.head();
            res.rec(
                sc,
                &case,
                "catch-up rate after an outage (A log → B log)",
                "MB/s",
                (h2 - h1) as f64 / t1.elapsed().as_secs_f64() / MB,
            );
            drop(s);
            let qcase = format!("raw quinn, same wan-sim, {loss}% loss, {cc}");
            let q = raw_quinn_window(env, rt, window, &flags, cc)?;
            res.rec(
                sc,
                &qcase,
                "catch-up rate after an outage (A log → B log)",
                "MB/s",
                q,
            );
            if run == 0 && loss > 0.0 && cc == "cubic" {
                let p = loss / 100.0;
                let mathis = 1460.0 / 0.050 * 1.22 / p.sqrt() / MB;
                res.note(sc, format!("at {loss}% loss and 50 ms RTT a loss-based TCP flow (native replication) is capped near {mathis:.2} MB/s (Mathis, MSS 1460)"));
            }
        }
    }
    Ok(())
}

pub const SCENARIO: Scenario = Scenario {
    name: "lossy",
    title: "6. Lossy WAN (wan-sim, 25 ms each way = 50 ms RTT)",
    how: "Agent chain through wan-sim with the given loss and congestion controller (`link.congestion`); `link.compression = \"none\"`. Idle lag: probes every 10 ms for 2 s. Sustained = far replica offset progress over a fixed window while a 1 KB SET burst larger than the link carries is queued (the link is saturated). Catch-up = B's log progress over the same window after an outage (cut with the outage file, a backlog written, restored), counted from the first byte. Raw quinn = one stream through an identical wan-sim with the same controller, over the same window. The windows are time-bounded because a lossy link moves only a fraction of a MB/s.",
    run,
    targets: no_targets,
};
