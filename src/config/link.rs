//! The `[tls]` and `[link]` sections: certificates for QUIC between agents, and link options
//! (compression, bandwidth cap, congestion control, windows, heartbeat).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::problems::Problems;
use crate::link::{Compression, Congestion, TlsFiles, TransportSettings};

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

/// The link defaults: what an empty `[link]` section means. The one place transport and
/// compression defaults are written (in [`validate_link`]); code that wants the defaults
/// without a config file (tests, the bench) takes them from here.
impl Default for LinkSettings {
    fn default() -> Self {
        let mut problems = Problems::default();
        let settings = validate_link(RawLink::default(), &mut problems);
        debug_assert!(problems.is_empty(), "the [link] defaults do not validate");
        settings
    }
}

/// Validates `[tls]`; `needed` says whether a QUIC side is configured. Returns the files and
/// the `server_name` override.
pub(super) fn validate_tls(
    raw: Option<RawTls>,
    needed: bool,
    base: &Path,
    problems: &mut Problems,
) -> (Option<TlsFiles>, Option<String>) {
    let Some(raw) = raw else {
        if needed {
            problems.bad("tls", "the [tls] section (ca, cert, key) is required when upstream.agent or listen.agent is set");
        }
        return (None, None);
    };
    let mut file = |key: &str, v: Option<PathBuf>| -> PathBuf {
        let key = format!("tls.{key}");
        if v.is_none() {
            problems.bad(&key, "is required");
        }
        problems.readable(&key, base, v).unwrap_or_default()
    };
    let files = TlsFiles {
        ca: file("ca", raw.ca),
        cert: file("cert", raw.cert),
        key: file("key", raw.key),
    };
    (Some(files), raw.server_name.filter(|s| !s.is_empty()))
}

/// Validates `[link]`.
pub(super) fn validate_link(raw: RawLink, problems: &mut Problems) -> LinkSettings {
    let compression = match raw
        .compression
        .as_deref()
        .unwrap_or("zstd")
        .parse::<Compression>()
    {
        Ok(c) => c,
        Err(_) => {
            problems.bad(
                "link.compression",
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
        problems.bad(
            "link.zstd_level",
            format!("{zstd_level} must be between 1 and 19"),
        );
    }
    let max_bandwidth = problems.rate("link.max_bandwidth", raw.max_bandwidth.as_deref(), "0");
    let congestion = match raw
        .congestion
        .as_deref()
        .unwrap_or("bbr")
        .parse::<Congestion>()
    {
        Ok(c) => c,
        Err(_) => {
            problems.bad(
                "link.congestion",
                format!(
                    "{:?} must be cubic, newreno or bbr",
                    raw.congestion.unwrap_or_default()
                ),
            );
            Congestion::Cubic
        }
    };
    // 8 MiB covers 640 Mbit/s at 100 ms RTT; 32 MiB cost 40+ MiB of RSS for no measured gain.
    let window = problems.size("link.window", raw.window.as_deref(), "8MiB");
    let socket_buffer = problems.size("link.socket_buffer", raw.socket_buffer.as_deref(), "8MiB");
    let heartbeat = problems.duration("link.heartbeat", raw.heartbeat.as_deref(), "1s");
    let keep_alive = problems.duration("link.keep_alive", raw.keep_alive.as_deref(), "2s");
    let idle_timeout = problems.duration("link.idle_timeout", raw.idle_timeout.as_deref(), "15s");
    if heartbeat.is_zero() || heartbeat > Duration::from_secs(60) {
        problems.bad("link.heartbeat", "must be between 1ms and 60s");
    }
    if !idle_timeout.is_zero() && keep_alive >= idle_timeout {
        problems.bad("link.keep_alive", "must be shorter than link.idle_timeout");
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
