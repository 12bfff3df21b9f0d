//! Apply mode's throughput into a standalone target: keys/s of the full sync and MB/s of the
//! stream, next to the target's own `redis-benchmark` write ceiling in the same run.
//! (RedisShake is in no package registry this machine may use, so it is not compared.)

use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};

use super::{no_targets, Ctx, Scenario};
use crate::client::Client;
use crate::harness::wait_for;
use crate::load::{redis_benchmark, sets_for_mb, write_random_keys};
use crate::results::Results;
use crate::servers::{Agent, Redis, Up};
use crate::MB;

const SC: &str = "apply";

fn dbsize(port: u16) -> Result<f64> {
    match Client::connect(port)?.cmd(&["DBSIZE"])? {
        georelay::resp::Frame::Integer(n) => Ok(n as f64),
        other => Err(anyhow!("DBSIZE answered {other:?}")),
    }
}

fn run(cx: &Ctx<'_>, res: &mut Results) -> Result<()> {
    let (env, o) = (cx.env, cx.opts);
    let keys: u64 = o.param("apply.keys", 200_000)?;
    let mb: u64 = o.param("apply.mb", 200)?;
    let case = "Redis 7.0 → agent → Redis 7.0 target (RESTORE)";
    for run in 0..o.runs {
        eprintln!(
            "apply: run {}/{} ({keys} keys, {mb} MB of stream)",
            run + 1,
            o.runs
        );
        let origin = Redis::start(env, "origin", &[])?;
        let target = Redis::start(env, "target", &[])?;
        write_random_keys(origin.port, keys)?;
        let n = dbsize(origin.port)?;
        // The bench's agent helper has no hook for extra sections: [target] follows [log].
        let log = format!(
            "fsync = \"everysec\"\n[target]\nredis = \"127.0.0.1:{}\"",
            target.port
        );
        let a = Agent::start(env, "site-a", Up::Redis(origin.port), false, "", &log)?;
        // Done when the applier streams (it does so only after the last snapshot batch).
        let streaming = || {
            crate::devkit::http_get(a.admin, "/status")
                .filter(|(c, _)| *c == 200)
                .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(&body).ok())
                .is_some_and(|v| v["target"][0]["state"] == "streaming")
        };
        let full = wait_for(
            Duration::from_secs(600),
            Duration::from_millis(20),
            streaming,
        )
        .ok_or_else(|| anyhow!("the full sync into the target never finished"))?;
        let loaded = dbsize(target.port)? - 1.0; // the checkpoint key
        if loaded < n {
            return Err(anyhow!("target holds {loaded} keys, origin {n}"));
        }
        res.rec(
            SC,
            case,
            "full sync (agent's own sync + load), keys/s",
            "keys/s",
            n / full.as_secs_f64(),
        );
        res.rec(SC, case, "full sync took", "s", full.as_secs_f64());

        // Stream: SETs of 1 KiB written to the origin as fast as redis-benchmark can.
        let start = a.metric("georelay_apply_offset", &[("shard", "main")]);
        let sets = sets_for_mb(mb, 1024);
        let t1 = Instant::now();
        redis_benchmark(origin.port, 1024, sets)?;
        let end = origin.offset() as f64;
        wait_for(Duration::from_secs(600), Duration::from_millis(10), || {
            a.metric("georelay_apply_offset", &[("shard", "main")]) >= end
        })
        .ok_or_else(|| anyhow!("the stream was never applied"))?;
        let el = t1.elapsed().as_secs_f64();
        res.rec(
            SC,
            case,
            "stream applied (write → in target), MB/s",
            "MB/s",
            (end - start) / el / MB,
        );
        res.rec(
            SC,
            case,
            "stream applied, SETs/s",
            "ops/s",
            sets as f64 / el,
        );

        // The target's own ceiling for the same SETs (50 clients, pipeline 16).
        let took = redis_benchmark(target.port, 1024, sets)?;
        res.rec(
            SC,
            case,
            "target's own redis-benchmark ceiling, SETs/s",
            "ops/s",
            sets as f64 / took.as_secs_f64(),
        );
    }
    Ok(())
}

pub const SCENARIO: Scenario = Scenario {
    name: "apply",
    title: "10. Apply into a standalone target",
    how: "A Redis 7.0 origin with `--set apply.keys=N` random 100 B keys (default 200000); a site agent with `[target]` pointing at an empty Redis 7.0 (so keys go as `RESTORE … ABSTTL REPLACE`). Full sync: from the agent's start until the target holds the snapshot and the checkpoint (includes the agent's own sync from the origin). Stream: `redis-benchmark` writes `--set apply.mb=M` MB (default 200) of 1 KiB SETs to the origin (50 clients, pipeline 16); timed until the target's checkpoint reaches the origin's offset. Then the same `redis-benchmark` straight at the target: its own write ceiling. RedisShake is not compared (it is in none of the package registries this machine may use).",
    run,
    targets: no_targets,
};
