//! The one way config validation reports a problem: `key: message` lines collected in
//! [`Problems`], plus the value parsers every section shares (sizes, durations, rates,
//! socket addresses, readable files), each of which reports under the key it is given.

use std::fmt::Display;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::units::{parse_duration, parse_rate, parse_size};

/// Every problem found in a config, in the order found; each line starts with its key.
#[derive(Debug, Default)]
pub(super) struct Problems(Vec<String>);

impl Problems {
    /// Records `key: message`.
    pub(super) fn bad(&mut self, key: &str, message: impl Display) {
        self.0.push(format!("{key}: {message}"));
    }

    pub(super) fn into_lines(self) -> Vec<String> {
        self.0
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A byte size such as `64MiB` (`default` when unset); 0 after a problem.
    pub(super) fn size(&mut self, key: &str, v: Option<&str>, default: &str) -> u64 {
        parse_size(v.unwrap_or(default)).unwrap_or_else(|e| {
            self.bad(key, e);
            0
        })
    }

    /// A duration such as `60s` (`default` when unset); zero after a problem.
    pub(super) fn duration(&mut self, key: &str, v: Option<&str>, default: &str) -> Duration {
        parse_duration(v.unwrap_or(default)).unwrap_or_else(|e| {
            self.bad(key, e);
            Duration::ZERO
        })
    }

    /// A rate such as `100Mbit` (`default` when unset); 0 after a problem.
    pub(super) fn rate(&mut self, key: &str, v: Option<&str>, default: &str) -> u64 {
        parse_rate(v.unwrap_or(default)).unwrap_or_else(|e| {
            self.bad(key, e);
            0
        })
    }

    /// An `ip:port` socket address (`default` when unset); `127.0.0.1:0` after a problem.
    pub(super) fn socket_addr(&mut self, key: &str, v: Option<&str>, default: &str) -> SocketAddr {
        let text = v.unwrap_or(default);
        text.parse().unwrap_or_else(|_| {
            self.bad(key, format!("{text:?} is not an ip:port socket address"));
            SocketAddr::from(([127, 0, 0, 1], 0))
        })
    }

    /// A file path anchored at `base` that must be readable now; `None` when unset.
    pub(super) fn readable(
        &mut self,
        key: &str,
        base: &Path,
        p: Option<PathBuf>,
    ) -> Option<PathBuf> {
        let p = base.join(p?);
        if let Err(e) = std::fs::File::open(&p) {
            self.bad(key, format!("cannot read {}: {e}", p.display()));
        }
        Some(p)
    }
}

/// Whether `v` looks like `host:port` (any non-empty host, a u16 port).
pub(super) fn is_host_port(v: &str) -> bool {
    v.rsplit_once(':')
        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
}

/// The host part of `host:port`, without IPv6 brackets (empty when there is no port).
pub(super) fn host_of(addr: &str) -> String {
    addr.rsplit_once(':')
        .map(|(h, _)| h.trim_matches(['[', ']']).to_string())
        .unwrap_or_default()
}
