//! Apply mode's throughput into a standalone and into a 3-master cluster target: keys/s of
//! the full sync and MB/s of the stream, each next to that target's own `redis-benchmark`
//! write ceiling (`--cluster` for the cluster) measured in the same run.
//! (RedisShake is in no package registry this machine may use, so it is not compared.)

#[path = "apply_cluster.rs"]
mod cluster;

use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};

use super::{no_targets, Ctx, Scenario};
use crate::client::Client;
use crate::harness::{wait_for, Env};
use crate::load::{redis_benchmark, sets_for_mb, write_random_keys};
use crate::results::Results;
use crate::servers::{Agent, Redis, Up};
use crate::MB;
use cluster::TargetCluster;

const SC: &str = "apply";
const CLUSTER_MASTERS: u16 = 3;

fn dbsize(port: u16) -> Result<f64> {
    match Client::connect(port)?.cmd(&["DBSIZE"])? {
        georelay::resp::Frame::Integer(n) => Ok(n as f64),
        other => Err(anyhow!("DBSIZE answered {other:?}")),
    }
}

enum Target {
    Standalone(Redis),
    Cluster(TargetCluster),
}

impl Target {
    fn section(&self) -> String {
        match self {
            Target::Standalone(r) => format!("[target]\nredis = \"127.0.0.1:{}\"", r.port),
            Target::Cluster(c) => c.section(),
        }
    }

    /// The keys it holds besides georelay's checkpoints.
    fn user_keys(&self) -> Result<f64> {
        match self {
            Target::Standalone(r) => Ok(dbsize(r.port)? - 1.0), // the checkpoint key
            Target::Cluster(c) => c.keys().map(|(all, ours)| all - ours),
        }
    }

    /// Its own write ceiling for `sets` SETs of 1 KiB.
    fn ceiling(&self, sets: u64) -> Result<Duration> {
        match self {
            Target::Standalone(r) => redis_benchmark(r.port, 1024, sets),
            Target::Cluster(c) => c.ceiling(1024, sets),
        }
    }
}

/// One pass: an origin with `keys` keys, an agent applying into `target`, `mb` MB of stream.
fn pass(
    env: &Env,
    res: &mut Results,
    case: &str,
    target: Target,
    keys: u64,
    mb: u64,
) -> Result<()> {
    let origin = Redis::start(env, "origin", &[])?;
    write_random_keys(origin.port, keys)?;
    let n = dbsize(origin.port)?;
    // The bench's agent helper has no hook for extra sections: [target] follows [log].
    let log = format!("fsync = \"everysec\"\n{}", target.section());
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
    .ok_or_else(|| anyhow!("{case}: the full sync into the target never finished"))?;
    let loaded = target.user_keys()?;
    if loaded < n {
        return Err(anyhow!("{case}: target holds {loaded} keys, origin {n}"));
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
    let wrote = redis_benchmark(origin.port, 1024, sets)?;
    let end = origin.offset() as f64;
    let tail = wait_for(Duration::from_secs(600), Duration::from_millis(10), || {
        a.metric("georelay_apply_offset", &[("shard", "main")]) >= end
    })
    .ok_or_else(|| anyhow!("{case}: the stream was never applied"))?;
    let el = t1.elapsed().as_secs_f64();
    res.rec(
        SC,
        case,
        "origin's redis-benchmark write (agent attached), SETs/s",
        "ops/s",
        sets as f64 / wrote.as_secs_f64(),
    );
    res.rec(
        SC,
        case,
        "applier's tail after the writes ended",
        "s",
        tail.as_secs_f64(),
    );
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
    drop(a);

    // The target's own ceiling for the same SETs (50 clients, pipeline 16).
    let took = target.ceiling(sets)?;
    res.rec(
        SC,
        case,
        "target's own redis-benchmark ceiling, SETs/s",
        "ops/s",
        sets as f64 / took.as_secs_f64(),
    );
    Ok(())
}

fn run(cx: &Ctx<'_>, res: &mut Results) -> Result<()> {
    let (env, o) = (cx.env, cx.opts);
    let keys: u64 = o.param("apply.keys", 200_000)?;
    let mb: u64 = o.param("apply.mb", 200)?;
    for run in 0..o.runs {
        eprintln!(
            "apply: run {}/{} ({keys} keys, {mb} MB of stream; standalone, then a {CLUSTER_MASTERS}-master cluster target)",
            run + 1,
            o.runs
        );
        let target = Target::Standalone(Redis::start(env, "target", &[])?);
        pass(
            env,
            res,
            "Redis 7.0 → agent → Redis 7.0 target (RESTORE)",
            target,
            keys,
            mb,
        )?;
        let target = Target::Cluster(TargetCluster::start(env, CLUSTER_MASTERS)?);
        pass(
            env,
            res,
            "Redis 7.0 → agent → 3-master Redis 7.0 cluster target (RESTORE)",
            target,
            keys,
            mb,
        )?;
    }
    Ok(())
}

pub const SCENARIO: Scenario = Scenario {
    name: "apply",
    title: "10. Apply into a standalone and a cluster target",
    how: "A Redis 7.0 origin with `--set apply.keys=N` random 100 B keys (default 200000); a site agent with `[target]` pointing at an empty Redis 7.0 (so keys go as `RESTORE … ABSTTL REPLACE`), then, in the same run, a fresh origin and agent with `target.cluster` pointing at an empty 3-master Redis 7.0 cluster (no replicas, slots split evenly; one transaction per slot touched, each with its slot's checkpoint key). Full sync: from the agent's start until the target holds the snapshot and the checkpoint(s) (includes the agent's own sync from the origin). Stream: `redis-benchmark` writes `--set apply.mb=M` MB (default 200) of 1 KiB SETs to the origin (50 clients, pipeline 16, 100000 random keys); timed until the target's checkpoint reaches the origin's offset; the rows also give the origin's own write rate with the agent attached and how long the applier still needed after the writes ended (near 0: the applier kept up, and the stream row is the origin's rate, not the applier's limit). Then the same `redis-benchmark` straight at the target (`redis-benchmark --cluster` for the cluster): its own write ceiling. RedisShake is not compared (it is in none of the package registries this machine may use).",
    run,
    targets: no_targets,
};
