//! WAIT latency: `SET` + `WAIT 1 1000` on an origin whose only replica is a direct Redis
//! replica, the site agent, or a site agent with `ack = "remote"` in front of a region agent.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use georelay::resp::Frame;

use super::{Ctx, Scenario};
use crate::client::Client;
use crate::harness::wait_for;
use crate::report::fmt;
use crate::results::{pct, Results, Target};
use crate::servers::{info_field, Agent, Redis, Up};

const SC: &str = "wait";
const DIRECT: &str = "direct Redis replica";
const DURABLE: &str = "site agent, ack=durable, fsync=everysec";
const REMOTE: &str = "A ack=remote → QUIC → B, fsync=always";

/// What keeps the origin's replica alive for the case; dropped after it.
#[allow(dead_code)] // held only so the processes live as long as the case
enum Chain {
    Direct(Redis),
    Agents(Vec<Agent>),
}

fn start(cx: &Ctx<'_>, case: &str, master: u16) -> Result<Chain> {
    let env = cx.env;
    Ok(match case {
        DIRECT => Chain::Direct(Redis::replica_of(env, "replica", master)?),
        DURABLE => Chain::Agents(vec![Agent::start_with(
            env,
            "site-a",
            Up::Redis(master),
            false,
            "",
            "fsync = \"everysec\"",
            "ack = \"durable\"",
        )?]),
        _ => {
            let a = Agent::start_with(
                env,
                "site-a",
                Up::Redis(master),
                true,
                "",
                "fsync = \"always\"",
                "ack = \"remote\"",
            )?;
            let q = a
                .quic
                .ok_or_else(|| anyhow!("site agent has no QUIC port"))?;
            let b = Agent::start(
                env,
                "region-b",
                Up::Agent(q),
                false,
                "",
                "fsync = \"always\"",
            )?;
            Chain::Agents(vec![a, b])
        }
    })
}

/// `n` rounds of `SET` then `WAIT 1 1000`; returns each WAIT's latency in ms and how many
/// WAITs returned fewer than 1 replica.
fn waits(port: u16, n: u64) -> Result<(Vec<f64>, u64)> {
    let mut c = Client::connect(port)?;
    let mut lat = Vec::with_capacity(n as usize);
    let mut short = 0;
    for i in 0..n {
        let key = format!("wait:{i}");
        c.cmd(&["SET", &key, "v"])?;
        let t0 = Instant::now();
        let got = c.cmd(&["WAIT", "1", "1000"])?;
        lat.push(t0.elapsed().as_secs_f64() * 1e3);
        match got {
            Frame::Integer(k) if k >= 1 => {}
            Frame::Integer(_) => short += 1,
            other => bail!("WAIT answered {other:?}"),
        }
    }
    Ok((lat, short))
}

fn run(cx: &Ctx<'_>, res: &mut Results) -> Result<()> {
    let n: u64 = cx.opts.param("wait.writes", 1000)?;
    for run in 0..cx.opts.runs {
        eprintln!("wait: run {}/{}", run + 1, cx.opts.runs);
        for case in [DIRECT, DURABLE, REMOTE] {
            let master = Redis::start(cx.env, "master", &["--appendfsync", "everysec"])?;
            let _chain = start(cx, case, master.port)?;
            wait_for(Duration::from_secs(60), Duration::from_millis(20), || {
                info_field(master.port, "replication", "connected_slaves") == "1"
                    && info_field(master.port, "replication", "slave0").contains("state=online")
            })
            .ok_or_else(|| anyhow!("{case}: the origin's replica never came online"))?;
            // Warm up: the first WAIT after a sync may wait for the replica's first ACK.
            waits(master.port, 20)?;
            let (mut lat, short) = waits(master.port, n)?;
            lat.sort_by(|a, b| a.total_cmp(b));
            res.rec(SC, case, "WAIT 1 1000: p50", "ms", pct(&lat, 50.0));
            res.rec(SC, case, "WAIT 1 1000: p99", "ms", pct(&lat, 99.0));
            res.rec(
                SC,
                case,
                "WAIT 1 1000: max",
                "ms",
                lat.last().copied().unwrap_or(f64::NAN),
            );
            res.rec(
                SC,
                case,
                "WAITs over 50 ms",
                "count",
                lat.iter().filter(|l| **l > 50.0).count() as f64,
            );
            res.rec(SC, case, "WAITs that returned 0", "count", short as f64);
        }
    }
    Ok(())
}

fn targets(res: &Results) -> Vec<Target> {
    let g = |case: &str, m: &str| res.med(SC, case, m).unwrap_or(f64::NAN);
    let (a, d) = (
        g(DURABLE, "WAIT 1 1000: p99"),
        g(DIRECT, "WAIT 1 1000: p99"),
    );
    // Every run counts, not the median run: one slow WAIT in any run misses the target.
    let all = |case: &str, m: &str| -> Vec<f64> {
        res.rows
            .iter()
            .find(|r| r.0 == SC && r.1 == case && r.2 == m)
            .map(|r| r.4.clone())
            .unwrap_or_default()
    };
    let overs = all(REMOTE, "WAITs over 50 ms");
    let over: f64 = overs.iter().sum();
    let max = all(REMOTE, "WAIT 1 1000: max")
        .into_iter()
        .fold(f64::NAN, f64::max);
    vec![
        Target {
            target: "WAIT: p99 of WAIT 1 1000 with the site agent (fsync=everysec) ≤ direct replica p99 + 1 ms".into(),
            measured: format!("{} ms vs {} ms + 1", fmt(a), fmt(d)),
            met: a <= d + 1.0,
        },
        Target {
            target: "WAIT: ack=remote with fsync=always has no WAIT over 50 ms".into(),
            measured: format!(
                "{} over 50 ms in {} runs; max {} ms",
                fmt(over),
                overs.len(),
                fmt(max)
            ),
            met: !overs.is_empty() && over == 0.0,
        },
    ]
}

pub const SCENARIO: Scenario = Scenario {
    name: "wait",
    title: "9. WAIT latency",
    how: "A Redis 7.0 origin (appendfsync everysec) whose only replica is, per case: a direct Redis replica; the site agent (`ack = \"durable\"`, `log.fsync = \"everysec\"`); or site agent A (`ack = \"remote\"`, fsync always) streaming over loopback QUIC to region agent B (fsync always). One client runs `SET` then `WAIT 1 1000`, `--set wait.writes=N` times (default 1000) after 20 warm-up rounds; the WAIT's round trip is timed.",
    run,
    targets,
};
