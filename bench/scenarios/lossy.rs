//! Lossy WAN: the agents and raw quinn through the same wan-sim, 50 ms RTT, with loss.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use super::{Ctx, Scenario};
use crate::harness::wait_for;
use crate::load::{redis_benchmark, sets_for_mb};
use crate::probe::Prober;
use crate::rawquinn::raw_quinn_window;
use crate::report::fmt;
use crate::results::{rec_lag, stats, Results, Target};
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
    // Controllers to compare (`--set lossy.cc=bbr` for BBR alone); with cubic in the list, BBR
    // runs only the lossy cases.
    let ccs: String = o.param("lossy.cc", "cubic,bbr".to_string())?;
    let ccs: Vec<&str> = ccs.split(',').map(str::trim).collect();
    if let Some(bad) = ccs.iter().find(|c| !["cubic", "bbr"].contains(c)) {
        bail!("--set lossy.cc: unknown controller {bad} (cubic, bbr)");
    }
    // The links' receive window (`link.window`) for agents and raw quinn alike: at 1–5% loss a
    // lost packet holds the stream window until its retransmission arrives (~1.5 RTT), so the
    // window, not the controller, bounds the rate near window ÷ (RTT + recovery).
    let lwin: String = o.param("lossy.window", "16MiB".to_string())?;
    let lwin_bytes = georelay::units::parse_size(&lwin)
        .map_err(|e| anyhow::anyhow!("--set lossy.window={lwin}: {e}"))?;
    let mut cases: Vec<(f64, &str)> = Vec::new();
    for &cc in &ccs {
        let skip_clean = cc == "bbr" && ccs.contains(&"cubic");
        cases.extend(
            losses
                .iter()
                .filter(|l| !(skip_clean && **l == 0.0))
                .map(|l| (*l, cc)),
        );
    }
    res.note(sc, format!("windows in every case: `link.window = \"{lwin}\"` for the agents, the same stream, connection and send windows for raw quinn"));
    for run in 0..o.runs {
        for &(loss, cc) in &cases {
            eprintln!("lossy: run {}/{} loss {loss}% {cc}", run + 1, o.runs);
            let mut flags = vec!["--delay".to_string(), "25ms".to_string()];
            if loss > 0.0 {
                flags.extend(["--loss".to_string(), format!("{loss}%")]);
            }
            let case = format!("agents, {loss}% loss, {cc}");
            let link =
                format!("compression = \"none\"\ncongestion = \"{cc}\"\nwindow = \"{lwin}\"");
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
            // sustained: a burst of 1 KB SETs; rate = far replica progress from the start of
            // the burst until it caught up or one window after the burst ended. When the link
            // is faster than the origin takes the burst, this is the origin's rate (the ingest
            // row says so); the catch-up row below is the link's own rate.
            let off0 = offset(s.far.port);
            let m0 = s.master.offset();
            let t0 = Instant::now();
            redis_benchmark(s.master.port, 1024, sets_for_mb(o.lossy_mb, 1024))?;
            let ingest = (s.master.offset() - m0) as f64 / t0.elapsed().as_secs_f64() / MB;
            let caught_up = s.wait_far(window).is_some();
            let sustained = (offset(s.far.port) - off0) as f64 / t0.elapsed().as_secs_f64() / MB;
            res.rec(
                sc,
                &case,
                "origin ingest during the burst (redis-benchmark 1 KB SETs)",
                "MB/s",
                ingest,
            );
            res.rec(
                sc,
                &case,
                "sustained to the far replica during the burst",
                "MB/s",
                sustained,
            );
            res.rec(
                sc,
                &case,
                "far replica kept up with the burst (caught up ≤ 1 window after it)",
                "yes=1",
                if caught_up { 1.0 } else { 0.0 },
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
            let link_rate = (h2 - h1) as f64 / t1.elapsed().as_secs_f64() / MB;
            res.rec(sc, &case, LINK_RATE, "MB/s", link_rate);
            drop(s);
            let qcase = format!("raw quinn, same wan-sim, {loss}% loss, {cc}");
            let q = raw_quinn_window(env, rt, window, &flags, cc, lwin_bytes)?;
            res.rec(sc, &qcase, LINK_RATE, "MB/s", q);
            if loss > 0.0 {
                let tcp = mathis_mb_s(loss);
                if run == 0 && cc == ccs[0] {
                    res.note(sc, format!("at {loss}% loss and 50 ms RTT a loss-based TCP flow (native replication) is capped near {tcp:.2} MB/s (Mathis: MSS / RTT × 1.22 / √p, MSS 1460)"));
                }
                res.rec(
                    sc,
                    &case,
                    "saturated link rate ÷ a loss-based TCP flow's Mathis ceiling",
                    "×",
                    link_rate / tcp,
                );
            }
        }
    }
    Ok(())
}

/// The metric the lossy-WAN goal is read from: a backlog saturates the link.
const LINK_RATE: &str =
    "saturated link rate (agents: A log → B log catching up after an outage; raw quinn: one stream)";

/// The Mathis et al. ceiling of a loss-based TCP flow at `loss_pct` % loss and 50 ms RTT, MB/s.
fn mathis_mb_s(loss_pct: f64) -> f64 {
    1460.0 / 0.050 * 1.22 / (loss_pct / 100.0).sqrt() / MB
}

/// Issue 11's lossy-WAN goal: BBR carries ≥ 50 MB/s to the far replica at every lossy case.
fn targets(res: &Results) -> Vec<Target> {
    let rows: Vec<(String, f64)> = res
        .rows
        .iter()
        .filter(|r| {
            r.0 == "lossy"
                && r.1.starts_with("agents")
                && r.1.ends_with("bbr")
                && !r.1.contains(" 0% loss")
                && r.2 == LINK_RATE
        })
        .map(|r| (r.1.clone(), stats(&r.4).0))
        .collect();
    if rows.is_empty() {
        return Vec::new();
    }
    let measured = rows
        .iter()
        .map(|(c, v)| format!("{} MB/s ({})", fmt(*v), c.trim_start_matches("agents, ")))
        .collect::<Vec<_>>()
        .join(" / ");
    vec![Target {
        target: "Lossy WAN: BBR carries ≥ 50 MB/s A log → B log (saturated by a backlog) at 1% and 5% loss, 50 ms RTT".into(),
        measured,
        met: rows.iter().all(|(_, v)| *v >= 50.0),
    }]
}

pub const SCENARIO: Scenario = Scenario {
    name: "lossy",
    title: "6. Lossy WAN (wan-sim, 25 ms each way = 50 ms RTT)",
    how: "Agent chain through wan-sim with the given loss and congestion controller (`link.congestion`); `link.compression = \"none\"`. Idle lag: probes every 10 ms for 2 s. During the burst = far replica progress from the start of a 1 KB SET burst (`--lossy-mb`) until it caught up or one window (`--lossy-window`) after the burst, next to the origin's ingest rate: when the replica kept up, the origin was the limit, not the link. Saturated link rate = B's log progress over one window after an outage (cut with the outage file, a backlog written, restored), counted from the first byte; for raw quinn, one stream through an identical wan-sim with the same controller, over the same window. The lossy-WAN target and the ratio to a loss-based TCP flow's Mathis ceiling are read from that row. Controllers: `--set lossy.cc=cubic,bbr` (default; BBR only on the lossy cases then). Windows: `link.window = \"16MiB\"` for the agents and the same windows for raw quinn (`--set lossy.window=SIZE`; the product default is 8 MiB): at 1–5% loss a lost packet holds the stream window until its retransmission arrives, so the window bounds the rate near window ÷ (RTT + recovery), about 8 MiB ÷ 125 ms ≈ 67 MB/s at the default.",
    run,
    targets,
};
