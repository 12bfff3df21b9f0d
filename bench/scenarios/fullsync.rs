//! Full sync of a new far replica from B's snapshot, next to one from the master.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use georelay::resp::Frame;

use super::{Ctx, Scenario};
use crate::client::Client;
use crate::harness::wait_for;
use crate::load::write_random_keys;
use crate::report::fmt;
use crate::results::{Results, Target};
use crate::servers::{info_field, Agent, Redis, Up};
use crate::MB;

fn run(cx: &Ctx<'_>, res: &mut Results) -> Result<()> {
    let (env, o) = (cx.env, cx.opts);
    let sc = "fullsync";
    eprintln!("fullsync: loading {} keys", o.keys);
    let master = Redis::start(env, "master", &[])?;
    write_random_keys(master.port, o.keys)?;
    let a = Agent::start(env, "site-a", Up::Redis(master.port), true, "", "")?;
    let b = Agent::start(env, "region-b", Up::Agent(a.quic.unwrap()), false, "", "")?;
    Client::connect(master.port)?.cmd(&["SET", "bench:init", "1"])?;
    wait_for(Duration::from_secs(300), Duration::from_millis(50), || {
        b.metric("georelay_upstream_full_syncs_total", &[]) >= 1.0 && b.head() >= master.offset()
    })
    .ok_or_else(|| anyhow!("B never got a snapshot"))?;
    let rdb_mb = b.metric("georelay_log_disk_bytes", &[]) / MB;
    res.note(
        sc,
        format!(
            "dataset: {} keys, 100 B random values; B's snapshot + log on disk: {rdb_mb:.0} MB",
            o.keys
        ),
    );
    let forks = |m: &Redis| {
        info_field(m.port, "stats", "sync_full")
            .parse::<f64>()
            .unwrap_or(f64::NAN)
    };
    let sync_time = |port: u16| -> Result<f64> {
        let r = Redis::start(env, "newreplica", &[])?;
        let mut c = Client::connect(r.port)?;
        let t0 = Instant::now();
        c.cmd(&["REPLICAOF", "127.0.0.1", &port.to_string()])?;
        let rp = r.port;
        wait_for(Duration::from_secs(300), Duration::from_millis(5), || {
            info_field(rp, "replication", "master_link_status") == "up"
        })
        .ok_or_else(|| anyhow!("replica never synced"))?;
        let el = t0.elapsed().as_secs_f64();
        let dbsize = match Client::connect(rp)?.cmd(&["DBSIZE"])? {
            Frame::Integer(n) => n as u64,
            _ => 0,
        };
        if dbsize < o.keys {
            bail!("replica has {dbsize} keys, expected ≥ {}", o.keys);
        }
        Ok(el)
    };
    for run in 0..o.runs {
        eprintln!("fullsync: run {}/{}", run + 1, o.runs);
        let f0 = forks(&master);
        let t = sync_time(master.port)?;
        let f1 = forks(&master);
        res.rec(sc, "direct from the master", "full sync time", "s", t);
        res.rec(
            sc,
            "direct from the master",
            "origin forks (sync_full delta)",
            "count",
            f1 - f0,
        );
        let t = sync_time(b.redis_port)?;
        let f2 = forks(&master);
        res.rec(
            sc,
            "far replica from B's snapshot",
            "full sync time",
            "s",
            t,
        );
        res.rec(
            sc,
            "far replica from B's snapshot",
            "origin forks (sync_full delta)",
            "count",
            f2 - f1,
        );
    }
    Ok(())
}

fn targets(res: &Results) -> Vec<Target> {
    let mut t = Vec::new();
    let g = |sc: &str, case: &str, m: &str| res.med(sc, case, m).unwrap_or(f64::NAN);
    let (f, dd) = (
        g(
            "fullsync",
            "far replica from B's snapshot",
            "full sync time",
        ),
        g("fullsync", "direct from the master", "full sync time"),
    );
    let forks = res
        .rows
        .iter()
        .find(|r| r.0 == "fullsync" && r.1.starts_with("far") && r.2.starts_with("origin forks"))
        .map(|r| r.4.iter().sum::<f64>())
        .unwrap_or(f64::NAN);
    t.push(Target {
        target: "Full sync: far ≤ 1.2× direct, 0 origin forks".into(),
        measured: format!(
            "{} s vs {} s ({:.2}×), forks {}",
            fmt(f),
            fmt(dd),
            f / dd,
            forks
        ),
        met: f <= 1.2 * dd && forks == 0.0,
    });
    t
}

pub const SCENARIO: Scenario = Scenario {
    name: "fullsync",
    title: "5. Full sync of a new far replica",
    how: "1M keys with 100 random bytes each, loaded before the agents start. A new empty redis-server gets `REPLICAOF`; timed until `master_link_status:up`. Origin forks = delta of the origin's `sync_full`.",
    run,
    targets,
};
