//! The wan-sim ceiling: raw quinn through `georelay wan-sim` with no impairment and with 25 ms
//! each way, next to raw quinn without it, so the lossy rows are known to measure the link and
//! not the simulator.

use anyhow::Result;

use super::{Ctx, Scenario};
use crate::rawquinn::raw_quinn;
use crate::report::fmt;
use crate::results::{Results, Target};
use crate::udpblast::blast;
use crate::{GB, MB};

const BLAST: &str = "UDP datagrams (GSO, no QUIC) through wan-sim, no impairment";

fn run(cx: &Ctx<'_>, res: &mut Results) -> Result<()> {
    let sc = "wansim";
    let mb: u64 = cx.opts.param("wansim.mb", 1000)?;
    let bytes = mb * 1_000_000;
    let delay = ["--delay".to_string(), "25ms".to_string()];
    let cases: [(&str, Option<&[String]>); 3] = [
        ("raw quinn, no wan-sim", None),
        ("raw quinn through wan-sim, no impairment", Some(&[])),
        ("raw quinn through wan-sim, 25 ms each way", Some(&delay)),
    ];
    for run in 0..cx.opts.runs {
        for (case, flags) in cases {
            eprintln!("wansim: run {}/{} {case}", run + 1, cx.opts.runs);
            let q = raw_quinn(cx.env, cx.rt, bytes, flags)?;
            let gb = bytes as f64 / GB;
            res.rec(
                sc,
                case,
                &format!("{mb} MB on one stream"),
                "MB/s",
                bytes as f64 / q.secs / MB,
            );
            res.rec(sc, case, "quinn CPU (both ends) per GB", "s/GB", q.cpu / gb);
            if let Some(w) = q.wansim_cpu {
                res.rec(sc, case, "wan-sim CPU per GB", "s/GB", w / gb);
            }
        }
        eprintln!("wansim: run {}/{} {BLAST}", run + 1, cx.opts.runs);
        let b = blast(cx.env, bytes, &[])?;
        res.rec(
            sc,
            BLAST,
            &format!("{mb} MB on one stream"),
            "MB/s",
            b.delivered_mbps,
        );
        res.rec(sc, BLAST, "offered by the sender", "MB/s", b.offered_mbps);
        res.rec(sc, BLAST, "datagrams delivered", "share", b.delivered_share);
        res.rec(
            sc,
            BLAST,
            "wan-sim CPU per GB",
            "s/GB",
            b.wansim_cpu / (b.bytes as f64 / GB),
        );
    }
    Ok(())
}

fn targets(res: &Results) -> Vec<Target> {
    let m = res
        .rows
        .iter()
        .find(|r| r.0 == "wansim" && r.1 == BLAST && r.2.ends_with("MB on one stream"))
        .map(|r| crate::results::stats(&r.4).0)
        .unwrap_or(f64::NAN);
    vec![Target {
        target: "wan-sim carries ≥ 200 MB/s clean (plain UDP datagrams, no impairment)".into(),
        measured: format!("{} MB/s delivered", fmt(m)),
        met: m >= 200.0,
    }]
}

pub const SCENARIO: Scenario = Scenario {
    name: "wansim",
    title: "8. wan-sim ceiling (raw quinn and plain UDP through the simulator)",
    how: "One quinn stream (agents' default transport settings: BBR, 8 MiB windows) carries the given bytes from a server endpoint to a client endpoint in the bench process, directly and through `georelay wan-sim` (no impairment; then `--delay 25ms`, 50 ms RTT). The wan-sim CPU is the simulator process's whole life (start to stop) per GB carried. The simulator's own ceiling: the bench sends the same bytes as 1200-byte UDP datagrams, 40 per GSO send, as fast as it can through wan-sim to a GRO receiver (no QUIC, no congestion control); delivered = payload that arrived over the time from its first to its last datagram. Size: `--set wansim.mb=N`.",
    run,
    targets,
};
