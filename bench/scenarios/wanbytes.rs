//! WAN bytes per stream byte on a realistic write mix, with and without zstd.

use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};

use super::{Ctx, Scenario};
use crate::harness::{cpu_secs, wait_for};
use crate::load::write_mix;
use crate::report::fmt;
use crate::results::{Results, Target};
use crate::servers::Agent;
use crate::topo::{Setup, Topo};
use crate::{GB, MB};

fn run(cx: &Ctx<'_>, res: &mut Results) -> Result<()> {
    let (env, o) = (cx.env, cx.opts);
    let sc = "wanbytes";
    for run in 0..o.runs {
        for comp in ["none", "zstd"] {
            eprintln!("wanbytes: run {}/{} compression {comp}", run + 1, o.runs);
            let case = format!("link.compression = \"{comp}\"");
            let link = format!("compression = \"{comp}\"");
            let s = Setup::start(env, Topo::Agents, &link, None)?;
            let (a, b) = (s.a.as_ref().unwrap(), s.b.as_ref().unwrap());
            let sent = |x: &Agent| x.metric("georelay_link_bytes_total", &[("direction", "sent")]);
            let (a0, b0, off0) = (sent(a), sent(b), s.master.offset());
            let cpu_a0 = cpu_secs(a.pid());
            let t0 = Instant::now();
            write_mix(s.master.port, o.mix_commands, 7 + run as u64)?;
            let load = t0.elapsed().as_secs_f64();
            s.wait_far(Duration::from_secs(300))
                .ok_or_else(|| anyhow!("never caught up"))?;
            let off1 = s.master.offset();
            wait_for(Duration::from_secs(30), Duration::from_millis(20), || {
                b.head() >= off1
            });
            // link byte counters are updated once a second
            std::thread::sleep(Duration::from_millis(2200));
            let stream = (off1 - off0) as f64;
            res.rec(sc, &case, "origin stream written", "MB", stream / MB);
            res.rec(
                sc,
                &case,
                "origin stream rate (realistic mix)",
                "MB/s",
                stream / load / MB,
            );
            res.rec(
                sc,
                &case,
                "A→B link bytes per stream byte",
                "ratio",
                (sent(a) - a0) / stream,
            );
            res.rec(
                sc,
                &case,
                "link bytes both ways per stream byte",
                "ratio",
                (sent(a) - a0 + sent(b) - b0) / stream,
            );
            res.rec(
                sc,
                &case,
                "A CPU per GB of stream",
                "s/GB",
                (cpu_secs(a.pid()) - cpu_a0) / (stream / GB),
            );
        }
    }
    Ok(())
}

fn targets(res: &Results) -> Vec<Target> {
    let mut t = Vec::new();
    let g = |sc: &str, case: &str, m: &str| res.med(sc, case, m).unwrap_or(f64::NAN);
    let z = g(
        "wanbytes",
        "link.compression = \"zstd\"",
        "A→B link bytes per stream byte",
    );
    t.push(Target {
        target: "Compression: ≤ 0.5 link bytes per stream byte with zstd (realistic mix)".into(),
        measured: format!(
            "{} (none: {})",
            fmt(z),
            fmt(g(
                "wanbytes",
                "link.compression = \"none\"",
                "A→B link bytes per stream byte"
            ))
        ),
        met: z <= 0.5,
    });
    t
}

pub const SCENARIO: Scenario = Scenario {
    name: "wanbytes",
    title: "7. WAN bytes on a realistic mix",
    how: "Generated mix: 45% JSON user documents (~300 B), 30% counters (INCR/INCRBY), 20% session hashes (4 fields), 5% leaderboard ZADD, pipelined 1000 at a time. Link bytes = `georelay_link_bytes_total` (UDP payload incl. QUIC overhead) / origin `master_repl_offset` delta.",
    run,
    targets,
};
