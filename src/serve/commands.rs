//! The replica port's command phase as plain logic (no I/O): one command and the connection's
//! state in, one outcome out (a reply in the connection's protocol, a sync request, or close).
//! PING, AUTH, HELLO, REPLCONF, PSYNC/SYNC, INFO, ROLE and the refusals live here; the client
//! tooling commands (CLIENT, COMMAND, CONFIG…) are in [`super::tooling`].

use std::net::SocketAddr;

use bytes::Bytes;

use super::feed::SyncRequest;
use super::{info, tooling, ServeCtx};
use crate::origin::OriginRelease;
use crate::resp::{Proto, Reply};

/// What one connection has said about itself so far.
#[derive(Debug, Clone)]
pub struct ConnState {
    pub id: u64,
    pub peer: SocketAddr,
    pub laddr: Option<SocketAddr>,
    pub proto: Proto,
    pub authed: bool,
    pub user: String,
    pub listening_port: Option<u16>,
    pub announced_ip: Option<String>,
    pub capa_psync2: bool,
    pub rdb_only: bool,
    /// `REPLCONF version` (sent by Valkey 8+).
    pub version: Option<String>,
}

impl ConnState {
    pub fn new(id: u64, peer: SocketAddr, laddr: Option<SocketAddr>, needs_auth: bool) -> Self {
        ConnState {
            id,
            peer,
            laddr,
            proto: Proto::Resp2,
            authed: !needs_auth,
            user: "default".into(),
            listening_port: None,
            announced_ip: None,
            capa_psync2: false,
            rdb_only: false,
            version: None,
        }
    }
}

/// What the shell does after a command.
#[derive(Debug)]
pub enum Outcome {
    Reply(Reply),
    /// PSYNC/SYNC: hand the connection to the feeder.
    Sync(SyncRequest),
    /// Send the reply, then close (QUIT).
    Close(Reply),
    /// Send nothing (REPLCONF ACK/GETACK before PSYNC).
    Nothing,
}

/// Commands that would modify data: answered `-READONLY`, as a replica would.
const WRITE_COMMANDS: &[&str] = &[
    "set",
    "setex",
    "psetex",
    "setnx",
    "mset",
    "msetnx",
    "append",
    "del",
    "unlink",
    "incr",
    "incrby",
    "incrbyfloat",
    "decr",
    "decrby",
    "getset",
    "getdel",
    "getex",
    "expire",
    "pexpire",
    "expireat",
    "pexpireat",
    "persist",
    "rename",
    "renamenx",
    "hset",
    "hsetnx",
    "hmset",
    "hdel",
    "hincrby",
    "hincrbyfloat",
    "lpush",
    "rpush",
    "lpushx",
    "rpushx",
    "lpop",
    "rpop",
    "lset",
    "linsert",
    "lrem",
    "ltrim",
    "lmove",
    "rpoplpush",
    "blpop",
    "brpop",
    "sadd",
    "srem",
    "spop",
    "smove",
    "sinterstore",
    "sunionstore",
    "sdiffstore",
    "zadd",
    "zincrby",
    "zrem",
    "zpopmin",
    "zpopmax",
    "zremrangebyscore",
    "zremrangebyrank",
    "zremrangebylex",
    "zunionstore",
    "zinterstore",
    "xadd",
    "xdel",
    "xtrim",
    "xgroup",
    "xack",
    "xclaim",
    "xautoclaim",
    "setbit",
    "setrange",
    "bitop",
    "pfadd",
    "pfmerge",
    "geoadd",
    "flushdb",
    "flushall",
    "restore",
    "copy",
    "move",
    "swapdb",
    "eval",
    "evalsha",
    "fcall",
    "function",
];

/// Commands that read the dataset (or its size), which the agent does not hold.
const DATA_COMMANDS: &[&str] = &[
    "dbsize",
    "get",
    "mget",
    "exists",
    "keys",
    "scan",
    "type",
    "ttl",
    "pttl",
    "expiretime",
    "pexpiretime",
    "strlen",
    "getrange",
    "substr",
    "hget",
    "hmget",
    "hgetall",
    "hkeys",
    "hvals",
    "hlen",
    "hexists",
    "hscan",
    "hstrlen",
    "hrandfield",
    "lrange",
    "lindex",
    "llen",
    "lpos",
    "smembers",
    "sismember",
    "smismember",
    "scard",
    "srandmember",
    "sscan",
    "sinter",
    "sunion",
    "sdiff",
    "sintercard",
    "zrange",
    "zrangebyscore",
    "zrangebylex",
    "zrevrange",
    "zrevrangebyscore",
    "zrevrangebylex",
    "zscore",
    "zmscore",
    "zrank",
    "zrevrank",
    "zcard",
    "zcount",
    "zlexcount",
    "zscan",
    "zrandmember",
    "xrange",
    "xrevrange",
    "xlen",
    "xread",
    "xinfo",
    "xpending",
    "getbit",
    "bitcount",
    "bitpos",
    "bitfield_ro",
    "pfcount",
    "geopos",
    "geodist",
    "geohash",
    "geosearch",
    "georadius_ro",
    "georadiusbymember_ro",
    "dump",
    "object",
    "randomkey",
    "touch",
    "lcs",
    "sort_ro",
    "eval_ro",
    "evalsha_ro",
    "fcall_ro",
];

/// Handles one command of the command phase.
pub fn handle(
    st: &mut ConnState,
    ctx: &ServeCtx,
    origin: Option<&OriginRelease>,
    args: &[Bytes],
) -> Outcome {
    let name = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
    if !st.authed && !matches!(name.as_str(), "auth" | "quit" | "hello") {
        return Outcome::Reply(Reply::err("NOAUTH Authentication required."));
    }
    let reply = match name.as_str() {
        "ping" => match args.len() {
            1 => Reply::Simple("PONG".into()),
            2 => Reply::Bulk(args[1].clone()),
            _ => arity("ping"),
        },
        "echo" if args.len() == 2 => Reply::Bulk(args[1].clone()),
        "echo" => arity("echo"),
        "quit" => return Outcome::Close(Reply::ok()),
        "auth" => auth(st, ctx, &args[1..]),
        "hello" => hello(st, ctx, origin, &args[1..]),
        "replconf" => match replconf(st, args) {
            Some(r) => r,
            // ACK/GETACK/FACK are never answered.
            None => return Outcome::Nothing,
        },
        "psync" => {
            if args.len() != 3 {
                return Outcome::Reply(arity("psync"));
            }
            let replid = String::from_utf8_lossy(&args[1]).into_owned();
            let Some(offset) = std::str::from_utf8(&args[2])
                .ok()
                .and_then(|s| s.parse::<i64>().ok())
            else {
                return Outcome::Reply(Reply::err("ERR value is not an integer or out of range"));
            };
            return Outcome::Sync(SyncRequest::Psync { replid, offset });
        }
        "sync" => return Outcome::Sync(SyncRequest::Sync),
        "info" => {
            let sections: Vec<String> = args[1..]
                .iter()
                .map(|s| String::from_utf8_lossy(s).to_ascii_lowercase())
                .collect();
            let port = st.laddr.map(|a| a.port()).unwrap_or(0);
            Reply::text(info::info(ctx, origin, port, &sections))
        }
        "role" => info::role(ctx),
        "select" => match args.get(1).map(|a| &a[..]) {
            Some(b"0") if args.len() == 2 => Reply::ok(),
            Some(_) if args.len() == 2 => {
                Reply::err("ERR georelay's replica port serves no data; only SELECT 0 is accepted")
            }
            _ => arity("select"),
        },
        "time" => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            Reply::Array(vec![
                Reply::bulk(now.as_secs().to_string()),
                Reply::bulk(now.subsec_micros().to_string()),
            ])
        }
        "client" => tooling::client(st, ctx, &args[1..]),
        "command" => tooling::command(&args[1..]),
        "config" => tooling::config(ctx, st, &args[1..]),
        "latency" => tooling::latency(&args[1..]),
        "slowlog" => tooling::slowlog(&args[1..]),
        "memory" => tooling::memory(&args[1..]),
        n if WRITE_COMMANDS.contains(&n) => {
            Reply::err("READONLY You can't write against a read only replica.")
        }
        n if DATA_COMMANDS.contains(&n) => Reply::err(format!(
            "ERR '{n}' is not served here: this is georelay's replica port (role: replica of {}), \
             a replication endpoint that holds no data; read from a Redis replica of this agent",
            ctx.upstream
        )),
        _ => {
            let shown: String = name.chars().take(64).collect();
            Reply::err(format!(
                "ERR unknown command '{shown}': georelay's replica port serves replication and \
                 client tooling only (see COMMAND)"
            ))
        }
    };
    Outcome::Reply(reply)
}

/// Redis's wrong-arity error.
pub fn arity(cmd: &str) -> Reply {
    Reply::err(format!("ERR wrong number of arguments for '{cmd}' command"))
}

/// `AUTH [user] pass`: the serve.requirepass for serve.username.
fn auth(st: &mut ConnState, ctx: &ServeCtx, args: &[Bytes]) -> Reply {
    let (user, pass) = match args {
        [pass] => (&b"default"[..], pass),
        [user, pass] => (&user[..], pass),
        _ => return arity("auth"),
    };
    check_auth(st, ctx, user, pass).unwrap_or_else(|e| e)
}

fn check_auth(
    st: &mut ConnState,
    ctx: &ServeCtx,
    user: &[u8],
    pass: &[u8],
) -> Result<Reply, Reply> {
    match password_check(ctx.requirepass.as_deref(), &ctx.username, user, pass) {
        Ok(()) => {
            st.authed = true;
            st.user = ctx.username.clone();
            Ok(Reply::ok())
        }
        Err(e) => {
            tracing::warn!(peer = %st.peer, "AUTH failed on the replica port (wrong masterauth?)");
            Err(e)
        }
    }
}

/// `AUTH user pass` against `requirepass` for `username`, with Redis's errors.
pub fn password_check(
    requirepass: Option<&str>,
    username: &str,
    user: &[u8],
    pass: &[u8],
) -> Result<(), Reply> {
    let Some(expected) = requirepass else {
        return Err(Reply::err(
            "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
        ));
    };
    if user == username.as_bytes() && pass == expected.as_bytes() {
        Ok(())
    } else {
        Err(Reply::err(
            "WRONGPASS invalid username-password pair or user is disabled.",
        ))
    }
}

/// What a `HELLO [protover [AUTH user pass] [SETNAME name]]` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// `None`: keep the connection's protocol.
    pub proto: Option<Proto>,
    pub auth: Option<(Bytes, Bytes)>,
    pub name: Option<Bytes>,
}

/// Redis's reply to a HELLO on a connection that is not authenticated.
pub const HELLO_NOAUTH: &str = "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time";

/// Parses HELLO's arguments (after the command name), with Redis's errors.
pub fn parse_hello(args: &[Bytes]) -> Result<Hello, Reply> {
    let mut proto = None;
    let mut rest = args;
    if let Some(ver) = args.first() {
        let Some(v) = std::str::from_utf8(ver)
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
        else {
            return Err(Reply::err(
                "ERR Protocol version is not an integer or out of range",
            ));
        };
        proto = Some(match v {
            2 => Proto::Resp2,
            3 => Proto::Resp3,
            _ => return Err(Reply::err("NOPROTO unsupported protocol version")),
        });
        rest = &args[1..];
    }
    let mut hello = Hello {
        proto,
        auth: None,
        name: None,
    };
    let mut i = 0;
    while i < rest.len() {
        let opt = String::from_utf8_lossy(&rest[i]).to_ascii_lowercase();
        match opt.as_str() {
            "auth" if i + 2 < rest.len() => {
                hello.auth = Some((rest[i + 1].clone(), rest[i + 2].clone()));
                i += 3;
            }
            "setname" if i + 1 < rest.len() => {
                hello.name = Some(rest[i + 1].clone());
                i += 2;
            }
            _ => {
                let shown: String = opt.chars().take(64).collect();
                return Err(Reply::err(format!(
                    "ERR Syntax error in HELLO option '{shown}'"
                )));
            }
        }
    }
    Ok(hello)
}

/// HELLO's reply: a map under RESP3, a flat array under RESP2.
pub fn hello_reply(proto: Proto, id: u64, version: &str, mode: &str, role: &str) -> Reply {
    Reply::map(vec![
        ("server", Reply::bulk("redis")),
        ("version", Reply::bulk(version.to_string())),
        ("proto", Reply::Integer(proto.number())),
        ("id", Reply::Integer(i64::try_from(id).unwrap_or(i64::MAX))),
        ("mode", Reply::bulk(mode.to_string())),
        ("role", Reply::bulk(role.to_string())),
        ("modules", Reply::Array(Vec::new())),
    ])
}

/// `HELLO [protover [AUTH user pass] [SETNAME name]]`.
fn hello(
    st: &mut ConnState,
    ctx: &ServeCtx,
    origin: Option<&OriginRelease>,
    args: &[Bytes],
) -> Reply {
    let h = match parse_hello(args) {
        Ok(h) => h,
        Err(e) => return e,
    };
    if let Some((user, pass)) = h.auth {
        if let Err(e) = check_auth(st, ctx, &user, &pass) {
            return e;
        }
    }
    if !st.authed {
        return Reply::err(HELLO_NOAUTH);
    }
    if let Some(n) = h.name {
        if let Err(e) = tooling::valid_client_name(&n) {
            return e;
        }
        let n = String::from_utf8_lossy(&n).into_owned();
        ctx.port.clients.update(st.id, |e| e.name = n);
    }
    let proto = h.proto.unwrap_or(st.proto);
    st.proto = proto;
    ctx.port.clients.update(st.id, |e| e.proto = proto.number());
    hello_reply(
        proto,
        st.id,
        info::origin_version(origin),
        "standalone",
        "replica",
    )
}

/// `REPLCONF <option> <value> …`; None for ACK/GETACK/FACK, which are never answered.
fn replconf(st: &mut ConnState, args: &[Bytes]) -> Option<Reply> {
    if args.len().is_multiple_of(2) {
        return Some(Reply::err("ERR syntax error"));
    }
    for pair in args[1..].chunks(2) {
        let opt = String::from_utf8_lossy(&pair[0]).to_ascii_lowercase();
        let val = String::from_utf8_lossy(&pair[1]).into_owned();
        match opt.as_str() {
            "listening-port" => st.listening_port = val.parse().ok(),
            "ip-address" => st.announced_ip = Some(val),
            "capa" => st.capa_psync2 |= val.eq_ignore_ascii_case("psync2"),
            "rdb-only" => st.rdb_only = val == "1",
            "version" => st.version = Some(val),
            "rdb-filter-only" if !val.is_empty() => {
                return Some(Reply::err(
                    "ERR georelay does not support filtered RDBs (rdb-filter-only)",
                ));
            }
            // Before PSYNC they carry nothing we need.
            "ack" | "getack" | "fack" => return None,
            // capa values (eof, psync2, dual-channel, skip-rdb-checksum, rdb-channel-repl),
            // rdb-channel, set-rdb-client-id, …: accepted; we never answer
            // +DUALCHANNELSYNC/+RDBCHANNELSYNC, so such replicas fall back to one channel.
            _ => {}
        }
    }
    Some(Reply::ok())
}
