//! The command line of georelay-bench.

use std::path::PathBuf;
use std::str::FromStr;

use anyhow::{anyhow, Result};
use clap::Parser;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "georelay-bench",
    about = "georelay benchmarks against direct and native chained Redis replication"
)]
pub struct Opts {
    /// Runs per scenario (medians with min and max are reported).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Comma-separated scenarios: steady,ceiling,catchup,fullsync,lossy,wanbytes, or any other
    /// registered in bench/scenarios/mod.rs (default: all, in registry order).
    #[arg(long)]
    pub only: Option<String>,
    /// SETs per run of the 100-byte steady load.
    #[arg(long, default_value_t = 1_000_000)]
    pub n100: u64,
    /// SETs per run of the 1 KB steady load.
    #[arg(long, default_value_t = 300_000)]
    pub n1k: u64,
    /// Backlog sizes (MB of replication stream) for the relay-ceiling / memory scenario.
    #[arg(long, default_value = "1000,10000")]
    pub backlogs_mb: String,
    /// Backlog (MB) for the catch-up-to-the-far-replica scenario.
    #[arg(long, default_value_t = 2000)]
    pub catchup_mb: u64,
    /// Keys of the full-sync dataset (100-byte random values).
    #[arg(long, default_value_t = 1_000_000)]
    pub keys: u64,
    /// Loss percentages for the lossy-WAN scenario (50 ms RTT).
    #[arg(long, default_value = "0,1,5")]
    pub losses: String,
    /// Stream MB written for the lossy-WAN burst and outage backlog (more than a window carries).
    #[arg(long, default_value_t = 400)]
    pub lossy_mb: u64,
    /// Seconds over which lossy-WAN rates are measured.
    #[arg(long, default_value_t = 3.0)]
    pub lossy_window: f64,
    /// Commands of the realistic mix for the WAN-bytes scenario.
    #[arg(long, default_value_t = 300_000)]
    pub mix_commands: u64,
    /// Extra `[link]` lines for every agent (e.g. `window = "8MiB"`), to try settings.
    #[arg(long, default_value = "")]
    pub link_extra: String,
    /// Where to write BENCHMARKS.md and benchmarks.json.
    #[arg(long, default_value = "docs")]
    pub out_dir: PathBuf,
    /// Scratch directory for servers and logs (removed at the end).
    #[arg(long, default_value = "/tmp/georelay-bench")]
    pub work: PathBuf,
    /// Write the results but do not touch docs/ (prints the Markdown instead).
    #[arg(long)]
    pub dry: bool,
    /// A scenario's own parameter, `KEY=VALUE` (repeatable), read with [`Opts::param`]; lets a
    /// scenario file have sizes without a new flag here.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

impl Opts {
    /// The value of `--set KEY=VALUE` for `key`, or `default`; a value that does not parse is an
    /// error naming the key.
    pub fn param<T: FromStr>(&self, key: &str, default: T) -> Result<T>
    where
        T::Err: std::fmt::Display,
    {
        let found = self
            .set
            .iter()
            .rev()
            .find_map(|kv| kv.split_once('=').filter(|(k, _)| k.trim() == key));
        match found {
            None => Ok(default),
            Some((_, v)) => v
                .trim()
                .parse()
                .map_err(|e| anyhow!("--set {key}={v}: {e}")),
        }
    }
}
