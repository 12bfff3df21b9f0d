//! Switchover pause: how long `georelay switchover` keeps the origin's writes paused (fence →
//! unpause) and how long the whole command takes, under a SET load, on loopback and through
//! wan-sim at 50 ms RTT. origin → A (ack=remote) → [wan-sim] → B → one region replica.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};

use super::{no_targets, Ctx, Scenario};
use crate::client::Client;
use crate::harness::wait_for;
use crate::results::Results;
use crate::servers::{info_field, Agent, Redis, Up, WanSim};

const SC: &str = "switchover";
const LOOPBACK: &str = "loopback";
const WAN: &str = "wan-sim, 50 ms RTT";
const TOKEN: &str = "bench-switchover-token-0123456789";

fn pause_ms(out: &str) -> Result<f64> {
    out.lines()
        .find_map(|l| l.strip_prefix("writes paused on the origin for "))
        .and_then(|l| l.trim_end_matches(" ms").parse().ok())
        .ok_or_else(|| anyhow!("no pause figure in the switchover output:\n{out}"))
}

fn once(cx: &Ctx<'_>, res: &mut Results, case: &str) -> Result<()> {
    let env = cx.env;
    let tok_dir = env.dir("token");
    let token = tok_dir.join("admin.token");
    std::fs::write(&token, TOKEN)?;
    let log = format!(
        "fsync = \"always\"\n[admin]\ntoken_file = \"{}\"",
        token.display()
    );
    let origin = Redis::start(env, "origin", &["--repl-backlog-size", "64mb"])?;
    let a = Agent::start_with(
        env,
        "site-a",
        Up::Redis(origin.port),
        true,
        "",
        &log,
        "ack = \"remote\"",
    )?;
    let a_quic = a.quic.ok_or_else(|| anyhow!("A has no QUIC port"))?;
    let wan = (case == WAN)
        .then(|| WanSim::start(env, a_quic, &["--delay".into(), "25ms".into()]))
        .transpose()?;
    let up = wan.as_ref().map_or(a_quic, |w| w.port);
    let b = Agent::start(env, "region-b", Up::Agent(up), true, "", &log)?;
    let r1 = Redis::replica_of(env, "r1", b.redis_port)?;
    wait_for(Duration::from_secs(60), Duration::from_millis(20), || {
        info_field(r1.port, "replication", "master_link_status") == "up"
    })
    .ok_or_else(|| anyhow!("{case}: the region replica never came online"))?;
    // Load: SETs until told to stop (bounded), errors ignored (the origin becomes a replica).
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    let port = origin.port;
    let load = std::thread::spawn(move || {
        let Ok(mut c) = Client::connect(port) else {
            return 0u64;
        };
        let mut n = 0;
        while !s2.load(Ordering::Relaxed) && n < 5_000_000 {
            if c.cmd(&["SET", &format!("k:{}", n % 10_000), "v"]).is_err() {
                break;
            }
            n += 1;
        }
        n
    });
    std::thread::sleep(Duration::from_millis(500));
    let t0 = Instant::now();
    let out = Command::new(&env.georelay)
        .args([
            "switchover",
            "--origin",
            &format!("127.0.0.1:{}", origin.port),
            "--site",
            &format!("http://127.0.0.1:{}", a.admin),
            "--region",
            &format!("http://127.0.0.1:{}", b.admin),
            "--promote",
            &format!("127.0.0.1:{}", r1.port),
            "--token-file",
        ])
        .arg(&token)
        .output()?;
    let took = t0.elapsed();
    stop.store(true, Ordering::Relaxed);
    let writes = load.join().map_err(|_| anyhow!("load thread panicked"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "{case}: switchover failed:\n{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    res.rec(
        SC,
        case,
        "writes paused (fence → unpause)",
        "ms",
        pause_ms(&text)?,
    );
    res.rec(SC, case, "whole command", "ms", took.as_secs_f64() * 1e3);
    res.rec(SC, case, "SETs during the run", "count", writes as f64);
    Ok(())
}

fn run(cx: &Ctx<'_>, res: &mut Results) -> Result<()> {
    for run in 0..cx.opts.runs {
        eprintln!("switchover: run {}/{}", run + 1, cx.opts.runs);
        for case in [LOOPBACK, WAN] {
            once(cx, res, case)?;
        }
    }
    Ok(())
}

pub const SCENARIO: Scenario = Scenario {
    name: "switchover",
    title: "11. Switchover pause",
    how: "origin (Redis 7.0) → site agent A (`ack = \"remote\"`, fsync always) → B (fsync always, directly or through `georelay wan-sim --delay 25ms`, 50 ms RTT) → one region replica; one client runs SETs on the origin throughout. `georelay switchover` promotes the region replica; its own figure for how long the origin's writes were paused (CLIENT PAUSE WRITE → CLIENT UNPAUSE) is recorded, with the wall time of the whole command. A fresh topology per run.",
    run,
    targets: no_targets,
};
