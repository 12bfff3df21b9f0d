//! The `[tls]` and `[link]` sections: certificates for QUIC between agents, and link options
//! (compression, bandwidth cap, congestion control, windows, heartbeat).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::link::{Compression, Congestion, TlsFiles, TransportSettings};
use crate::units::{parse_duration, parse_rate, parse_size};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    ca: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    server_name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLink {
    compression: Option<String>,
    zstd_level: Option<i32>,
    max_bandwidth: Option<String>,
    congestion: Option<String>,
    window: Option<String>,
    socket_buffer: Option<String>,
    heartbeat: Option<String>,
    keep_alive: Option<String>,
    idle_timeout: Option<String>,
}

/// Link options between agents.
#[derive(Debug, Clone)]
pub struct LinkSettings {
    pub compression: Compression,
    pub zstd_level: i32,
    /// Bytes per second of stream payload sent to each downstream agent; 0 = unlimited.
    pub max_bandwidth: u64,
    pub heartbeat: Duration,
    pub transport: TransportSettings,
}

/// Validates `[tls]`; `needed` says whether a QUIC side is configured. Returns the files and
/// the `server_name` override.
pub(super) fn tls(
    raw: Option<RawTls>,
    needed: bool,
    base: &Path,
    problems: &mut Vec<String>,
) -> (Option<TlsFiles>, Option<String>) {
    let Some(raw) = raw else {
        if needed {
            problems.push("tls: the [tls] section (ca, cert, key) is required when upstream.agent or listen.agent is set".into());
        }
        return (None, None);
    };
    let mut file = |key: &str, v: Option<PathBuf>| -> PathBuf {
        match v {
            None => {
                problems.push(format!("tls.{key}: is required"));
                PathBuf::new()
            }
            Some(p) => {
                let p = base.join(p);
                if let Err(e) = std::fs::File::open(&p) {
                    problems.push(format!("tls.{key}: cannot read {}: {e}", p.display()));
                }
                p
            }
        }
    };
    let files = TlsFiles {
        ca: file("ca", raw.ca),
        cert: file("cert", raw.cert),
        key: file("key", raw.key),
    };
    (Some(files), raw.server_name.filter(|s| !s.is_empty()))
}

pub(super) fn link(raw: RawLink, problems: &mut Vec<String>) -> LinkSettings {
    let mut bad = |key: &str, msg: String| problems.push(format!("link.{key}: {msg}"));
    let compression = match raw
        .compression
        .as_deref()
        .unwrap_or("zstd")
        .parse::<Compression>()
    {
        Ok(c) => c,
        Err(_) => {
            bad(
                "compression",
                format!(
                    "{:?} must be zstd or none",
                    raw.compression.unwrap_or_default()
                ),
            );
            Compression::Zstd
        }
    };
    let zstd_level = raw.zstd_level.unwrap_or(1);
    if !(1..=19).contains(&zstd_level) {
        bad(
            "zstd_level",
            format!("{zstd_level} must be between 1 and 19"),
        );
    }
    let max_bandwidth =
        parse_rate(raw.max_bandwidth.as_deref().unwrap_or("0")).unwrap_or_else(|e| {
            bad("max_bandwidth", e);
            0
        });
    let congestion = match raw
        .congestion
        .as_deref()
        .unwrap_or("bbr")
        .parse::<Congestion>()
    {
        Ok(c) => c,
        Err(_) => {
            bad(
                "congestion",
                format!(
                    "{:?} must be cubic, newreno or bbr",
                    raw.congestion.unwrap_or_default()
                ),
            );
            Congestion::Cubic
        }
    };
    let mut size = |key: &str, v: Option<String>, default: &str| -> u64 {
        parse_size(v.as_deref().unwrap_or(default)).unwrap_or_else(|e| {
            bad(key, e);
            0
        })
    };
    // 8 MiB covers 640 Mbit/s at 100 ms RTT; 32 MiB cost 40+ MiB of RSS for no measured gain.
    let window = size("window", raw.window, "8MiB");
    let socket_buffer = size("socket_buffer", raw.socket_buffer, "8MiB");
    let mut dur = |key: &str, v: Option<String>, default: &str| -> Duration {
        parse_duration(v.as_deref().unwrap_or(default)).unwrap_or_else(|e| {
            problems.push(format!("link.{key}: {e}"));
            Duration::ZERO
        })
    };
    let heartbeat = dur("heartbeat", raw.heartbeat, "1s");
    let keep_alive = dur("keep_alive", raw.keep_alive, "2s");
    let idle_timeout = dur("idle_timeout", raw.idle_timeout, "15s");
    if heartbeat.is_zero() || heartbeat > Duration::from_secs(60) {
        problems.push("link.heartbeat: must be between 1ms and 60s".into());
    }
    if !idle_timeout.is_zero() && keep_alive >= idle_timeout {
        problems.push("link.keep_alive: must be shorter than link.idle_timeout".into());
    }
    LinkSettings {
        compression,
        zstd_level,
        max_bandwidth,
        heartbeat,
        transport: TransportSettings {
            congestion,
            stream_window: window,
            conn_window: window,
            send_window: window,
            keep_alive,
            idle_timeout,
            socket_buffer: socket_buffer as usize,
        },
    }
}
