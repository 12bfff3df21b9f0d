//! The scenario registry: every benchmark scenario is one file in this directory and one line
//! in [`ALL`].
//!
//! **Adding a scenario** (e.g. `bench/scenarios/cluster.rs`):
//! 1. In the new file, write `pub fn run(cx: &Ctx<'_>, res: &mut Results) -> Result<()>` that
//!    starts what it needs (`crate::servers`, `crate::topo::Setup`, `crate::load`, …), repeats
//!    `cx.opts.runs` times and records samples with `res.rec(scenario, case, metric, unit, v)`
//!    (cases become table columns, metrics rows; cells show median [min – max]). Scenario-own
//!    sizes come from `cx.opts.param("cluster.keys", 100_000)?` (set with
//!    `--set cluster.keys=5000`), so the CLI needs no new flag. Then declare
//!    `pub const SCENARIO: Scenario = Scenario { name, title, how, run, targets: no_targets };`
//!    (or a `targets` function that turns the recorded medians into [`Target`] rows).
//! 2. Here: `mod cluster;` and `cluster::SCENARIO,` in [`ALL`].
//!
//! `--only name,name` selects scenarios (default: all of [`ALL`], in its order); the report
//! writes one section per scenario that recorded rows, with its `Rerun:` command.

mod apply;
mod catchup;
mod ceiling;
mod cluster;
mod cluster_flow;
mod cluster_probe;
mod cluster_setup;
mod fullsync;
mod lossy;
mod steady;
mod switchover;
mod wait;
mod wanbytes;
mod wansim;

use anyhow::{bail, Result};

use crate::harness::Env;
use crate::opts::Opts;
use crate::results::{Results, Target};

/// What a scenario gets: the scratch environment, the options and a tokio runtime for the
/// in-process raw quinn baselines.
pub struct Ctx<'a> {
    pub env: &'a Env,
    pub opts: &'a Opts,
    pub rt: &'a tokio::runtime::Runtime,
}

/// One benchmark scenario: its `--only` name, its section title and method text in
/// BENCHMARKS.md, the run, and the targets computed from its medians.
pub struct Scenario {
    pub name: &'static str,
    pub title: &'static str,
    pub how: &'static str,
    pub run: fn(&Ctx<'_>, &mut Results) -> Result<()>,
    pub targets: fn(&Results) -> Vec<Target>,
}

/// For scenarios without a target row.
pub fn no_targets(_: &Results) -> Vec<Target> {
    Vec::new()
}

/// Every scenario, in report order.
pub const ALL: &[Scenario] = &[
    steady::SCENARIO,
    ceiling::SCENARIO,
    catchup::SCENARIO,
    fullsync::SCENARIO,
    lossy::SCENARIO,
    wanbytes::SCENARIO,
    wansim::SCENARIO,
    wait::SCENARIO,
    apply::SCENARIO,
    switchover::SCENARIO,
    cluster::SCENARIO,
];

/// The scenarios `--only` names, in the order given (all of them without `--only`).
pub fn select(only: Option<&str>) -> Result<Vec<&'static Scenario>> {
    let Some(only) = only else {
        return Ok(ALL.iter().collect());
    };
    let mut out = Vec::new();
    for name in only.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match ALL.iter().find(|s| s.name == name) {
            Some(s) => out.push(s),
            None => bail!(
                "unknown scenario {name} (known: {})",
                ALL.iter().map(|s| s.name).collect::<Vec<_>>().join(",")
            ),
        }
    }
    Ok(out)
}
