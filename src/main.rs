//! The `georelay` binary: CLI → config → runtime → `app::run`; exit 64 on a bad config.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use georelay::config::Config;

/// Replicate a Redis/Valkey master across datacenters through a durable replication log.
#[derive(Parser)]
#[command(name = "georelay", version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

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
}

/// sysexits.h EX_CONFIG-ish: the usage/config error code operators script against.
const EXIT_CONFIG: u8 = 64;
const EXIT_SOFTWARE: u8 = 70;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Check { config } => match Config::load(&config) {
            Ok(_) => {
                println!("{}: ok", config.display());
                ExitCode::SUCCESS
            }
            Err(e) => config_failure(&e),
        },
        Cmd::Run { config } => {
            init_tracing();
            let cfg = match Config::load(&config) {
                Ok(c) => c,
                Err(e) => return config_failure(&e),
            };
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("georelay: cannot start the runtime: {e}");
                    return ExitCode::from(EXIT_SOFTWARE);
                }
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

fn config_failure(e: &georelay::config::ConfigError) -> ExitCode {
    for line in e.to_string().lines() {
        eprintln!("config error: {line}");
    }
    ExitCode::from(EXIT_CONFIG)
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
