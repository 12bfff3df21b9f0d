//! The `georelay` binary: CLI → config → runtime → `app::run`; exit 64 on a bad config.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use georelay::config::Config;

mod dr_cli;

/// Replicate a Redis/Valkey master across datacenters through a durable replication log.
#[derive(Parser)]
#[command(name = "georelay", version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

/// Parsed once at start-up, so the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Cmd {
    /// Run an agent.
    Run {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a config file: exit 0, or 64 with one line per problem.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Show an agent's links and replicas (role, peer, state, offsets, lag, last sync type).
    /// Exits 1 when any lag exceeds --max-lag, 2 when the agent cannot be reached.
    Status {
        /// The agent's admin listener.
        #[arg(long, default_value = "http://127.0.0.1:9187")]
        admin: String,
        /// Print the JSON document instead of a table.
        #[arg(long)]
        json: bool,
        /// Fail (exit 1) when any lag in seconds exceeds this, e.g. "10s".
        #[arg(long)]
        max_lag: Option<String>,
    },
    /// Planned switchover, zero loss: move the master from site A's origin to a replica of
    /// region B (check → fence with CLIENT PAUSE WRITE → wait → promote → re-point B and A →
    /// demote the old origin → unpause). Exit 0 with the new master, or non-zero naming the
    /// failed step. Cluster upstreams: per-lane switchover is not supported yet; this moves one
    /// (non-cluster) master.
    Switchover {
        /// The current master (host:port).
        #[arg(long)]
        origin: String,
        /// Agent A's admin listener (its upstream is the origin), e.g. http://10.0.0.1:9187.
        #[arg(long)]
        site: String,
        /// Agent B's admin listener (its upstream is agent A).
        #[arg(long)]
        region: String,
        /// The replica of agent B to promote (host:port).
        #[arg(long)]
        promote: String,
        /// The agents' admin token (admin.token_file).
        #[arg(long)]
        token_file: PathBuf,
        #[command(flatten)]
        origin_auth: OriginAuthArgs,
        #[command(flatten)]
        promote_auth: PromoteAuthArgs,
        /// Budget for the whole switchover; also the CLIENT PAUSE length.
        #[arg(long, default_value = "10s")]
        timeout: String,
    },
    /// Unplanned failover (site A is unreachable): promote a replica of region B and re-point
    /// B at it with a fence, then report the RPO (stream bytes and seconds of origin time the
    /// site had, as last heard by B in a heartbeat, and B never got). The old site must then
    /// be re-pointed at B (its agent full-syncs; its origin becomes a replica of its agent).
    /// Cluster upstreams: per-lane failover is not supported yet.
    Failover {
        /// Agent B's admin listener (its upstream is the lost site's agent).
        #[arg(long)]
        region: String,
        /// The replica of agent B to promote (host:port).
        #[arg(long)]
        promote: String,
        /// The agents' admin token (admin.token_file).
        #[arg(long)]
        token_file: PathBuf,
        #[command(flatten)]
        promote_auth: PromoteAuthArgs,
        /// How long to wait for the promote target to hold everything B holds.
        #[arg(long, default_value = "10s")]
        timeout: String,
    },
    /// Development certificates for the QUIC links between agents.
    Certs {
        #[command(subcommand)]
        cmd: CertsCmd,
    },
    /// A UDP impairment relay (delay, jitter, loss, reorder, rate, outages) for tests and demos;
    /// loopback only. Run `georelay wan-sim --help-flags` for its flags.
    WanSim {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

/// Redis credentials for the origin (switchover).
#[derive(clap::Args, Debug, Clone, Default)]
struct OriginAuthArgs {
    /// ACL user on the origin (with --origin-password or --origin-password-file).
    #[arg(long)]
    origin_user: Option<String>,
    #[arg(long)]
    origin_password: Option<String>,
    #[arg(long)]
    origin_password_file: Option<PathBuf>,
}

/// Redis credentials for the promote target (switchover, failover).
#[derive(clap::Args, Debug, Clone, Default)]
struct PromoteAuthArgs {
    /// ACL user on the promote target.
    #[arg(long)]
    promote_user: Option<String>,
    #[arg(long)]
    promote_password: Option<String>,
    #[arg(long)]
    promote_password_file: Option<PathBuf>,
}

#[derive(Subcommand)]
enum CertsCmd {
    /// Make a CA (or reuse the one in --dir) and a certificate + key per node.
    Init {
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
        /// Comma-separated node names, e.g. site-a,region-b.
        #[arg(long, value_delimiter = ',')]
        nodes: Vec<String>,
        /// Overwrite existing node files (the CA is kept).
        #[arg(long)]
        force: bool,
    },
}

/// sysexits.h EX_CONFIG-ish: the usage/config error code operators script against.
const EXIT_CONFIG: u8 = 64;
const EXIT_SOFTWARE: u8 = 70;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Certs {
            cmd: CertsCmd::Init { dir, nodes, force },
        } => {
            if nodes.is_empty() {
                eprintln!("georelay certs init: --nodes needs at least one name");
                return ExitCode::from(EXIT_CONFIG);
            }
            match georelay::link::certs::init(&dir, &nodes, force) {
                Ok(files) => {
                    for f in files {
                        println!("wrote {}", f.display());
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("georelay certs init: {e}");
                    ExitCode::from(EXIT_SOFTWARE)
                }
            }
        }
        Cmd::WanSim { args } => wan_sim(args),
        Cmd::Switchover {
            origin,
            site,
            region,
            promote,
            token_file,
            origin_auth,
            promote_auth,
            timeout,
        } => dr_cli::switchover(dr_cli::Switch {
            origin,
            site,
            region,
            promote,
            token_file,
            origin_auth: (
                origin_auth.origin_user,
                origin_auth.origin_password,
                origin_auth.origin_password_file,
            ),
            promote_auth: (
                promote_auth.promote_user,
                promote_auth.promote_password,
                promote_auth.promote_password_file,
            ),
            timeout,
        }),
        Cmd::Failover {
            region,
            promote,
            token_file,
            promote_auth,
            timeout,
        } => dr_cli::failover(dr_cli::Fail {
            region,
            promote,
            token_file,
            promote_auth: (
                promote_auth.promote_user,
                promote_auth.promote_password,
                promote_auth.promote_password_file,
            ),
            timeout,
        }),
        Cmd::Status {
            admin,
            json,
            max_lag,
        } => status(&admin, json, max_lag.as_deref()),
        Cmd::Check { config } => match Config::load(&config) {
            Ok(cfg) => check_override(&config, &cfg),
            Err(e) => config_failure(&e),
        },
        Cmd::Run { config } => {
            init_tracing();
            let cfg = match Config::load(&config) {
                Ok(c) => c,
                Err(e) => return config_failure(&e),
            };
            let rt = match runtime() {
                Ok(rt) => rt,
                Err(code) => return code,
            };
            match rt.block_on(georelay::app::run(cfg)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e}");
                    eprintln!("georelay: {e}");
                    ExitCode::from(EXIT_SOFTWARE)
                }
            }
        }
    }
}

/// `georelay check` on a valid file: says whether a runtime upstream override in `data_dir`
/// wins over the file's upstream.
fn check_override(path: &std::path::Path, cfg: &Config) -> ExitCode {
    use georelay::dr::repoint;
    match repoint::load(&cfg.data_dir) {
        Ok(None) => {
            println!("{}: ok", path.display());
            ExitCode::SUCCESS
        }
        Ok(Some(o)) => {
            println!("{}: ok", path.display());
            println!(
                "upstream override in force: {} (from {}; it wins over the config file until cleared with DELETE /upstream)",
                o.upstream,
                repoint::override_path(&cfg.data_dir).display()
            );
            if let Some(f) = &o.fenced {
                println!(
                    "fenced: former upstream {} cut off at offset {} ({} bytes it had were never received)",
                    f.site,
                    f.head,
                    f.rpo_bytes()
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("config error: {e}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

fn status(admin: &str, json: bool, max_lag: Option<&str>) -> ExitCode {
    use georelay::metrics::status::{max_lag_seconds, render_table, Status};
    let limit = match max_lag.map(georelay::units::parse_duration).transpose() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("georelay status: --max-lag: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let fetched = rt.block_on(async { georelay::dr::http::Admin::new(admin)?.status().await });
    let (body, status): (String, Status) = match fetched {
        Ok(b) => b,
        Err(e) => {
            eprintln!("georelay status: {e}");
            return ExitCode::from(2);
        }
    };
    if json {
        println!("{body}");
    } else {
        print!("{}", render_table(&status));
    }
    let worst = max_lag_seconds(&status);
    match limit {
        Some(l) if worst > l.as_secs_f64() => {
            eprintln!(
                "georelay status: lag {worst:.3}s exceeds --max-lag {}s",
                l.as_secs_f64()
            );
            ExitCode::from(1)
        }
        _ => ExitCode::SUCCESS,
    }
}

fn wan_sim(args: Vec<String>) -> ExitCode {
    use georelay::wansim::{WanSim, WanSimOptions, USAGE};
    if args
        .iter()
        .any(|a| a == "--help-flags" || a == "-h" || a == "--help")
    {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    init_tracing();
    let opts = match WanSimOptions::from_args(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("georelay wan-sim: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    rt.block_on(async move {
        let sim = match WanSim::start(opts).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("georelay wan-sim: {e}");
                return ExitCode::from(EXIT_SOFTWARE);
            }
        };
        let handle = sim.shutdown_handle();
        tokio::spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            if let Ok(mut term) = signal(SignalKind::terminate()) {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            handle.shutdown();
        });
        let stats = sim.run_until_done().await;
        eprintln!("wan-sim: {stats}");
        ExitCode::SUCCESS
    })
}

/// The multi-threaded tokio runtime, or the exit code after saying why it failed.
fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("georelay: cannot start the runtime: {e}");
            ExitCode::from(EXIT_SOFTWARE)
        })
}

fn config_failure(e: &georelay::config::ConfigError) -> ExitCode {
    for line in e.to_string().lines() {
        eprintln!("config error: {line}");
    }
    ExitCode::from(EXIT_CONFIG)
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}
