//! georelay-bench: throughput, lag, cost and catch-up of georelay against direct and native
//! chained Redis replication, measured side by side in one run on loopback.
//!
//! `scripts/bench.sh` builds it and runs it; it writes `docs/BENCHMARKS.md` (the generated part,
//! above the `<!-- analysis -->` marker, which keeps the hand-written analysis below it) and
//! `docs/benchmarks.json`. Every scenario runs `--runs` times (default 3) and reports the
//! median with min and max. See `--help` for the sizes.
//!
//! Layout:
//! - `opts.rs`: the command line; `results.rs`: recorded samples, medians, targets;
//! - harness: `harness.rs` (processes, ports, /proc, HTTP, waiting), `servers.rs` (redis-server,
//!   agents, wan-sim), `client.rs` (a blocking RESP client), `topo.rs` (the three topologies),
//!   `rawquinn.rs` (the raw quinn baselines);
//! - load generators: `load.rs` (redis-benchmark, the realistic mix, random keys), `probe.rs`
//!   (the PUBLISH → SUBSCRIBE lag probe);
//! - `scenarios/`: one file per scenario, registered in `scenarios/mod.rs` (how to add one is
//!   documented there);
//! - `report.rs`: the machine facts, the Markdown tables and the JSON.

mod client;
#[path = "../tests/support/devkit.rs"]
mod devkit;
mod harness;
mod load;
mod opts;
mod probe;
mod rawquinn;
mod report;
mod results;
mod scenarios;
mod servers;
mod topo;
mod udpblast;

use std::time::Instant;

use anyhow::{bail, Result};
use clap::Parser;

use harness::{Env, LINK_EXTRA, START};
use opts::Opts;
use results::Results;
use scenarios::Ctx;

pub const MB: f64 = 1e6;
pub const GB: f64 = 1e9;
pub const MIB: u64 = 1 << 20;

fn main() -> Result<()> {
    let o = Opts::parse();
    START.get_or_init(Instant::now);
    LINK_EXTRA.get_or_init(|| o.link_extra.replace("\\n", "\n"));
    let wall0 = Instant::now();
    let selected = scenarios::select(o.only.as_deref())?;
    if let Some(bad) = o.set.iter().find(|kv| !kv.contains('=')) {
        bail!("--set {bad}: expected KEY=VALUE");
    }
    let exe = std::env::current_exe()?;
    let georelay = exe.with_file_name("georelay");
    if !georelay.exists() {
        bail!(
            "{} not found: build with `cargo build --release`",
            georelay.display()
        );
    }
    // One run at a time on this machine: two at once would share its 2 cores (and the default
    // scratch directory, which each run clears), so both would measure each other.
    let lock_path = std::env::temp_dir().join("georelay-bench.lock");
    let lock = std::fs::File::create(&lock_path)?;
    if lock.try_lock().is_err() {
        eprintln!(
            "another georelay-bench run holds {}: waiting for it to end",
            lock_path.display()
        );
        lock.lock()?;
    }
    let _ = std::fs::remove_dir_all(&o.work);
    std::fs::create_dir_all(&o.work)?;
    let pki = o.work.join("pki");
    std::fs::create_dir_all(&pki)?;
    georelay::link::certs::make_test_pki(&pki, &["site-a", "region-b"])?;
    let env = Env {
        georelay,
        work: o.work.clone(),
        pki,
        seq: Default::default(),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let ctx = Ctx {
        env: &env,
        opts: &o,
        rt: &rt,
    };
    let mut m = report::machine();
    let mut res = Results::default();
    for sc in &selected {
        let t = Instant::now();
        if let Err(e) = (sc.run)(&ctx, &mut res) {
            res.note(sc.name, format!("scenario failed: {e:#}"));
        }
        eprintln!("== {} took {:.0} s", sc.name, t.elapsed().as_secs_f64());
    }
    m.insert("loadavg_end", report::sh("cat /proc/loadavg"));
    let ran: Vec<&str> = selected.iter().map(|s| s.name).collect();
    report::carry_over(&mut res, &o, &ran)?;
    report::write(&res, &m, &o, wall0.elapsed().as_secs_f64())?;
    let _ = std::fs::remove_dir_all(&o.work);
    Ok(())
}
