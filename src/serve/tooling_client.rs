//! `CLIENT` on the replica port: this port's own connections (SETNAME/GETNAME/SETINFO/ID/
//! LIST/INFO/KILL) and the client-name check; no I/O.

use std::time::Instant;

use bytes::Bytes;

use super::clients::KillFilter;
use super::commands::{arity, ConnState};
use super::ServeCtx;
use crate::resp::Reply;

/// Redis's rule for client names: no spaces, newlines or other special characters.
pub fn valid_client_name(name: &[u8]) -> Result<(), Reply> {
    if name.iter().all(|&c| (b'!'..=b'~').contains(&c)) {
        Ok(())
    } else {
        Err(Reply::err(
            "ERR Client names cannot contain spaces, newlines or special characters.",
        ))
    }
}

pub(super) fn lower(b: &Bytes) -> String {
    String::from_utf8_lossy(b).to_ascii_lowercase()
}

fn text(b: &Bytes) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `CLIENT <subcommand>`.
pub fn client(st: &mut ConnState, ctx: &ServeCtx, args: &[Bytes]) -> Reply {
    let Some(sub) = args.first().map(lower) else {
        return arity("client");
    };
    let clients = &ctx.port.clients;
    match (sub.as_str(), args.len()) {
        ("id", 1) => Reply::Integer(i64::try_from(st.id).unwrap_or(i64::MAX)),
        ("getname", 1) => match clients.get(st.id).map(|e| e.name) {
            Some(n) if !n.is_empty() => Reply::bulk(n),
            _ => Reply::Null,
        },
        ("setname", 2) => match valid_client_name(&args[1]) {
            Ok(()) => {
                let n = text(&args[1]);
                clients.update(st.id, |e| e.name = n);
                Reply::ok()
            }
            Err(e) => e,
        },
        ("setinfo", 3) => {
            let attr = lower(&args[1]);
            let val = text(&args[2]);
            if val.chars().any(|c| !('!'..='~').contains(&c)) {
                return Reply::err(format!(
                    "ERR {attr} cannot contain spaces, newlines or special characters."
                ));
            }
            match attr.as_str() {
                "lib-name" => clients.update(st.id, |e| e.lib_name = val),
                "lib-ver" => clients.update(st.id, |e| e.lib_ver = val),
                _ => {
                    return Reply::err(format!(
                        "ERR Unrecognized option '{}'",
                        text(&args[1]).chars().take(64).collect::<String>()
                    ))
                }
            }
            Reply::ok()
        }
        ("info", 1) => {
            let line = clients.get(st.id).map(|e| e.line(Instant::now()));
            Reply::text(format!("{}\n", line.unwrap_or_default()))
        }
        ("list", _) => client_list(ctx, &args[1..]),
        ("kill", n) if n >= 2 => client_kill(st, ctx, &args[1..]),
        ("no-evict" | "no-touch", 2) => Reply::ok(),
        ("help", 1) => Reply::Array(
            [
                "CLIENT <subcommand> [<arg> ...]. Subcommands on georelay's replica port:",
                "ID, GETNAME, SETNAME <name>, SETINFO <LIB-NAME|LIB-VER> <value>, INFO,",
                "LIST [TYPE normal|replica] [ID id ...], KILL <ip:port> | KILL <filter> <value> ...",
            ]
            .iter()
            .map(|s| Reply::Simple(s.to_string()))
            .collect(),
        ),
        ("id" | "getname" | "setname" | "setinfo" | "info" | "kill" | "no-evict" | "no-touch", _) => {
            Reply::err(format!("ERR wrong number of arguments for 'client|{sub}' command"))
        }
        _ => Reply::err(format!(
            "ERR unknown subcommand '{}'. Try CLIENT HELP.",
            sub.chars().take(64).collect::<String>()
        )),
    }
}

fn client_list(ctx: &ServeCtx, args: &[Bytes]) -> Reply {
    let mut want_type = None;
    let mut ids: Option<Vec<u64>> = None;
    let mut i = 0;
    while i < args.len() {
        match lower(&args[i]).as_str() {
            "type" if i + 1 < args.len() => {
                want_type = Some(match lower(&args[i + 1]).as_str() {
                    "normal" => false,
                    "replica" | "slave" => true,
                    other => return Reply::err(format!("ERR Unknown client type '{other}'")),
                });
                i += 2;
            }
            "id" if i + 1 < args.len() => {
                let mut got = Vec::new();
                for a in &args[i + 1..] {
                    match std::str::from_utf8(a).ok().and_then(|s| s.parse().ok()) {
                        Some(id) => got.push(id),
                        None => return Reply::err("ERR Invalid client ID"),
                    }
                }
                ids = Some(got);
                i = args.len();
            }
            _ => return Reply::err("ERR syntax error"),
        }
    }
    let now = Instant::now();
    let mut out = String::new();
    for e in ctx.port.clients.list() {
        if want_type.is_some_and(|r| r != e.replica) {
            continue;
        }
        if ids.as_ref().is_some_and(|ids| !ids.contains(&e.id)) {
            continue;
        }
        out.push_str(&e.line(now));
        out.push('\n');
    }
    Reply::text(out)
}

/// `CLIENT KILL ip:port` (old form: +OK or an error) or `CLIENT KILL <filter> <value> …`
/// (ID, ADDR, LADDR, TYPE, USER, SKIPME, MAXAGE: the number killed).
fn client_kill(st: &ConnState, ctx: &ServeCtx, args: &[Bytes]) -> Reply {
    if args.len() == 1 {
        let f = KillFilter {
            addr: Some(text(&args[0])),
            ..Default::default()
        };
        return match ctx.port.clients.kill(&f) {
            0 => Reply::err("ERR No such client"),
            _ => Reply::ok(),
        };
    }
    if !args.len().is_multiple_of(2) {
        return Reply::err("ERR syntax error");
    }
    let mut f = KillFilter {
        skip: Some(st.id),
        ..Default::default()
    };
    for pair in args.chunks(2) {
        let val = text(&pair[1]);
        match lower(&pair[0]).as_str() {
            "id" => match val.parse() {
                Ok(id) => f.id = Some(id),
                Err(_) => return Reply::err("ERR client-id should be greater than 0"),
            },
            "addr" => f.addr = Some(val),
            "laddr" => f.laddr = Some(val),
            "user" => f.user = Some(val),
            "type" => {
                f.replica = Some(match val.to_ascii_lowercase().as_str() {
                    "normal" => false,
                    "replica" | "slave" => true,
                    "master" | "pubsub" => return Reply::Integer(0),
                    other => return Reply::err(format!("ERR Unknown client type '{other}'")),
                })
            }
            "skipme" => match val.to_ascii_lowercase().as_str() {
                "yes" => f.skip = Some(st.id),
                "no" => f.skip = None,
                _ => return Reply::err("ERR syntax error"),
            },
            "maxage" => match val.parse() {
                Ok(age) => f.max_age = Some(age),
                Err(_) => return Reply::err("ERR syntax error"),
            },
            _ => return Reply::err("ERR syntax error"),
        }
    }
    Reply::Integer(i64::try_from(ctx.port.clients.kill(&f)).unwrap_or(i64::MAX))
}
