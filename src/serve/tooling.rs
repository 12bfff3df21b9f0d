//! Client tooling on the replica port (no I/O): `CLIENT` (this port's own connections),
//! `COMMAND` (what the port serves), `CONFIG GET` (replication settings with their real values),
//! and the empty but well-formed `LATENCY`, `SLOWLOG` and `MEMORY` answers monitoring tools ask for.

use bytes::Bytes;

use super::commands::{arity, ConnState};
use super::ServeCtx;
use crate::resp::Reply;

use super::tooling_client::lower;
pub use super::tooling_client::{client, valid_client_name};

/// What the port serves: (name, arity, flags, group, summary). Arity as Redis counts it
/// (negative: at least that many).
const SERVED: &[(&str, i64, &[&str], &str, &str)] = &[
    (
        "auth",
        -2,
        &["noscript", "loading", "stale", "fast", "no_auth"],
        "connection",
        "Authenticates the connection.",
    ),
    (
        "client",
        -2,
        &["admin", "noscript", "loading", "stale"],
        "connection",
        "The replica port's own connections: ID, SETNAME, GETNAME, SETINFO, LIST, INFO, KILL.",
    ),
    (
        "command",
        -1,
        &["loading", "stale"],
        "server",
        "What the replica port serves.",
    ),
    (
        "config",
        -2,
        &["admin", "noscript", "loading", "stale"],
        "server",
        "CONFIG GET: the agent's replication settings (read-only).",
    ),
    (
        "echo",
        2,
        &["fast"],
        "connection",
        "Returns the given string.",
    ),
    (
        "hello",
        -1,
        &["noscript", "loading", "stale", "fast", "no_auth"],
        "connection",
        "Handshakes with the port: protocol 2 or 3, optional AUTH and SETNAME.",
    ),
    (
        "info",
        -1,
        &["loading", "stale"],
        "server",
        "Server and replication information, like a chained replica.",
    ),
    (
        "latency",
        -2,
        &["admin", "noscript", "loading", "stale"],
        "server",
        "Latency monitor (always empty here).",
    ),
    (
        "memory",
        -2,
        &["readonly"],
        "server",
        "MEMORY USAGE: the port holds no keys.",
    ),
    ("ping", -1, &["fast"], "connection", "Returns PONG."),
    (
        "psync",
        -3,
        &["admin", "noscript", "no_async_loading", "no_multi"],
        "server",
        "Partial or full resynchronisation from the agent's log.",
    ),
    (
        "quit",
        -1,
        &["noscript", "loading", "stale", "fast", "no_auth"],
        "connection",
        "Closes the connection.",
    ),
    (
        "replconf",
        -1,
        &["admin", "noscript", "loading", "stale"],
        "server",
        "Replication options and acknowledgements.",
    ),
    (
        "role",
        1,
        &["noscript", "loading", "stale", "fast"],
        "server",
        "The port's role: a replica of the agent's upstream.",
    ),
    (
        "select",
        2,
        &["loading", "stale", "fast"],
        "connection",
        "Only database 0 is accepted.",
    ),
    (
        "slowlog",
        -2,
        &["admin", "loading", "stale"],
        "server",
        "Slow log (always empty here).",
    ),
    (
        "sync",
        1,
        &["admin", "noscript", "no_async_loading", "no_multi"],
        "server",
        "Legacy full synchronisation (also redis-cli --rdb).",
    ),
    (
        "time",
        1,
        &["loading", "stale", "fast"],
        "server",
        "The agent's clock.",
    ),
];

/// Config keys CONFIG GET answers, with their values from the agent's configuration.
fn config_pairs(ctx: &ServeCtx, st: &ConnState) -> Vec<(&'static str, String)> {
    let (host, port) = ctx
        .upstream
        .rsplit_once(':')
        .unwrap_or((ctx.upstream.as_str(), "0"));
    let timeout = ctx.timeout.as_secs().max(1).to_string();
    vec![
        ("replicaof", format!("{host} {port}")),
        ("slaveof", format!("{host} {port}")),
        ("port", st.laddr.map(|a| a.port()).unwrap_or(0).to_string()),
        ("repl-backlog-size", ctx.log.max_bytes().to_string()),
        ("repl-backlog-ttl", "0".into()),
        ("repl-timeout", timeout),
        ("repl-diskless-sync", "no".into()),
        ("repl-diskless-sync-delay", "0".into()),
        ("repl-diskless-load", "disabled".into()),
        ("repl-ping-replica-period", "10".into()),
        ("replica-read-only", "yes".into()),
        ("slave-read-only", "yes".into()),
        ("replica-serve-stale-data", "yes".into()),
        ("replica-priority", "0".into()),
        ("replica-announced", "yes".into()),
        ("min-replicas-to-write", "0".into()),
        ("min-replicas-max-lag", "10".into()),
        ("maxmemory", "0".into()),
        ("maxmemory-policy", "noeviction".into()),
        ("maxclients", ctx.max_connections.to_string()),
        ("databases", "1".into()),
        ("appendonly", "no".into()),
        ("save", String::new()),
    ]
}

fn command_info(c: &(&str, i64, &[&str], &str, &str)) -> Reply {
    let (name, arity, flags, _, _) = *c;
    Reply::Array(vec![
        Reply::bulk(name.to_string()),
        Reply::Integer(arity),
        Reply::Set(flags.iter().map(|f| Reply::Simple(f.to_string())).collect()),
        Reply::Integer(0),
        Reply::Integer(0),
        Reply::Integer(0),
        Reply::Set(Vec::new()),
        Reply::Set(Vec::new()),
        Reply::Array(Vec::new()),
        Reply::Array(Vec::new()),
    ])
}

fn find(
    name: &Bytes,
) -> Option<&'static (
    &'static str,
    i64,
    &'static [&'static str],
    &'static str,
    &'static str,
)> {
    let n = lower(name);
    SERVED.iter().find(|c| c.0 == n)
}

/// `COMMAND`, `COMMAND COUNT|LIST|INFO|DOCS`.
pub fn command(args: &[Bytes]) -> Reply {
    let Some(sub) = args.first().map(lower) else {
        return Reply::Array(SERVED.iter().map(command_info).collect());
    };
    match sub.as_str() {
        "count" => Reply::Integer(SERVED.len() as i64),
        "list" => Reply::Array(
            SERVED
                .iter()
                .map(|c| Reply::bulk(c.0.to_string()))
                .collect(),
        ),
        "info" if args.len() == 1 => Reply::Array(SERVED.iter().map(command_info).collect()),
        "info" => Reply::Array(
            args[1..]
                .iter()
                .map(|n| find(n).map(command_info).unwrap_or(Reply::NullArray))
                .collect(),
        ),
        "docs" => {
            let chosen: Vec<_> = if args.len() == 1 {
                SERVED.iter().collect()
            } else {
                args[1..].iter().filter_map(find).collect()
            };
            Reply::Map(
                chosen
                    .into_iter()
                    .map(|(name, _, _, group, summary)| {
                        (
                            Reply::bulk(name.to_string()),
                            Reply::map(vec![
                                ("summary", Reply::bulk(summary.to_string())),
                                ("since", Reply::bulk("1.0.0")),
                                ("group", Reply::bulk(group.to_string())),
                            ]),
                        )
                    })
                    .collect(),
            )
        }
        _ => Reply::err(format!(
            "ERR unknown subcommand '{}'. Try COMMAND HELP.",
            sub.chars().take(64).collect::<String>()
        )),
    }
}

/// Redis-style glob match (`*`, `?`), case-insensitive, as CONFIG GET uses.
fn glob(pat: &[u8], s: &[u8]) -> bool {
    match (pat.first(), s.first()) {
        (None, None) => true,
        (Some(b'*'), _) => glob(&pat[1..], s) || (!s.is_empty() && glob(pat, &s[1..])),
        (Some(b'?'), Some(_)) => glob(&pat[1..], &s[1..]),
        (Some(p), Some(c)) if p.eq_ignore_ascii_case(c) => glob(&pat[1..], &s[1..]),
        _ => false,
    }
}

/// `CONFIG GET <pattern> …` (a map under RESP3); every other subcommand is refused.
pub fn config(ctx: &ServeCtx, st: &ConnState, args: &[Bytes]) -> Reply {
    let Some(sub) = args.first().map(lower) else {
        return arity("config");
    };
    match sub.as_str() {
        "get" if args.len() >= 2 => {
            let pairs = config_pairs(ctx, st);
            Reply::Map(
                pairs
                    .into_iter()
                    .filter(|(k, _)| args[1..].iter().any(|p| glob(p, k.as_bytes())))
                    .map(|(k, v)| (Reply::bulk(k), Reply::bulk(v)))
                    .collect(),
            )
        }
        "get" => Reply::err("ERR wrong number of arguments for 'config|get' command"),
        "set" | "resetstat" | "rewrite" => Reply::err(
            "ERR georelay's replica port is read-only: change the agent's config file instead",
        ),
        _ => Reply::err(format!(
            "ERR unknown subcommand '{}'. Try CONFIG HELP.",
            sub.chars().take(64).collect::<String>()
        )),
    }
}

/// `LATENCY LATEST|HISTORY|RESET|DOCTOR`: the agent records no latency events.
pub fn latency(args: &[Bytes]) -> Reply {
    match args.first().map(lower).as_deref() {
        Some("latest") => Reply::Array(Vec::new()),
        Some("history") if args.len() == 2 => Reply::Array(Vec::new()),
        Some("reset") => Reply::Integer(0),
        Some("doctor") => Reply::text(
            "georelay's replica port records no latency events; see the agent's /metrics instead.\n",
        ),
        Some(other) => Reply::err(format!(
            "ERR unknown subcommand '{}'. Try LATENCY HELP.",
            other.chars().take(64).collect::<String>()
        )),
        None => arity("latency"),
    }
}

/// `SLOWLOG GET [n]|LEN|RESET`: always empty.
pub fn slowlog(args: &[Bytes]) -> Reply {
    match args.first().map(lower).as_deref() {
        Some("get") if args.len() <= 2 => Reply::Array(Vec::new()),
        Some("len") => Reply::Integer(0),
        Some("reset") => Reply::ok(),
        Some(other) => Reply::err(format!(
            "ERR unknown subcommand or wrong number of arguments for '{}'. Try SLOWLOG HELP.",
            other.chars().take(64).collect::<String>()
        )),
        None => arity("slowlog"),
    }
}

/// `MEMORY USAGE <key>`: no key exists here (null, as for a missing key).
pub fn memory(args: &[Bytes]) -> Reply {
    match args.first().map(lower).as_deref() {
        Some("usage") if args.len() >= 2 => Reply::Null,
        Some(other) => Reply::err(format!(
            "ERR unknown subcommand or wrong number of arguments for '{}'. Try MEMORY HELP.",
            other.chars().take(64).collect::<String>()
        )),
        None => arity("memory"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches_like_config_get() {
        assert!(glob(b"*", b"maxmemory"));
        assert!(glob(b"repl-*", b"repl-timeout"));
        assert!(glob(b"MAXMEMORY", b"maxmemory"));
        assert!(glob(b"max?emory", b"maxmemory"));
        assert!(!glob(b"max", b"maxmemory"));
        assert!(!glob(b"repl-*-x", b"repl-timeout"));
    }

    #[test]
    fn command_count_docs_and_unknowns() {
        assert_eq!(
            command(&[Bytes::from_static(b"COUNT")]),
            Reply::Integer(SERVED.len() as i64)
        );
        let Reply::Map(docs) = command(&[Bytes::from_static(b"docs"), Bytes::from_static(b"ping")])
        else {
            panic!("COMMAND DOCS is a map");
        };
        assert_eq!(docs.len(), 1);
        assert!(matches!(
            command(&[Bytes::from_static(b"nope")]),
            Reply::Error(_)
        ));
        assert_eq!(
            latency(&[Bytes::from_static(b"latest")]),
            Reply::Array(vec![])
        );
        assert_eq!(slowlog(&[Bytes::from_static(b"len")]), Reply::Integer(0));
        assert_eq!(
            memory(&[Bytes::from_static(b"usage"), Bytes::from_static(b"k")]),
            Reply::Null
        );
        assert!(valid_client_name(b"redis_exporter").is_ok());
        assert!(valid_client_name(b"a b").is_err());
    }
}
