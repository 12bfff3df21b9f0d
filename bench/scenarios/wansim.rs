//! The wan-sim ceiling: raw quinn through `georelay wan-sim` with no impairment and with 25 ms
//! each way, next to raw quinn without it, so the lossy rows are known to measure the link and
//! not the simulator.

use anyhow::Result;

use super::{no_targets, Ctx, Scenario};
use crate::rawquinn::raw_quinn;
use crate::results::Results;
use crate::{GB, MB};

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
    }
    Ok(())
}

pub const SCENARIO: Scenario = Scenario {
    name: "wansim",
    title: "8. wan-sim ceiling (raw quinn through the simulator)",
    how: "One quinn stream (agents' default transport settings: BBR, 8 MiB windows) carries the given bytes from a server endpoint to a client endpoint in the bench process, directly and through `georelay wan-sim` (no impairment; then `--delay 25ms`, 50 ms RTT). The wan-sim CPU is the simulator process's whole life (start to stop) per GB carried. Size: `--set wansim.mb=N`.",
    run,
    targets: no_targets,
};
