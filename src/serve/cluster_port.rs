//! `listen.redis` of a cluster-mode agent: the cluster endpoint's listener. Each connection
//! gets the connect-time commands a cluster client sends (PING, AUTH, HELLO 2, CLIENT
//! SETNAME/SETINFO, SELECT 0, COMMAND, INFO) and the cluster commands of [`super::cluster`];
//! a command with a key is redirected with `-MOVED` to a replica of the lane owning its slot.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::cluster::{self, ClusterView};
use super::commands;
use super::Replicas;
use crate::cluster::{key_slot, SlotMap};
use crate::resp::{self, Limits, Proto, Reply};

/// What HELLO and INFO report before any lane holds a snapshot naming the origin's release.
const UNKNOWN_VERSION: &str = "0.0.0";

const LIMITS: Limits = Limits {
    max_bulk: 64 * 1024,
    max_array: 1024,
    max_depth: 1,
    max_inline: 64 * 1024,
};

/// What one client connection of the endpoint has said so far.
#[derive(Debug, Clone, Copy)]
pub struct EpConn {
    pub authed: bool,
    pub proto: Proto,
}

/// The lanes' replica registries, by lane name (filled as lanes start).
pub type LaneReplicas = Arc<RwLock<HashMap<String, Arc<Replicas>>>>;

/// What the endpoint reads its answers from.
#[derive(Clone)]
pub struct ClusterEndpoint {
    pub my_id: String,
    pub my_addr: (String, u16),
    pub map: watch::Receiver<Option<SlotMap>>,
    pub lanes: LaneReplicas,
    pub requirepass: Option<String>,
    pub timeout: Duration,
    /// Where the origin's release is read from (the lanes' snapshots), when known.
    pub origin: Option<OriginSource>,
}

/// The lanes' logs and a cache of the release their snapshots name: HELLO and INFO on the
/// endpoint report the origin's `redis_version`, as the replica port does.
#[derive(Clone)]
pub struct OriginSource {
    pub lanes: crate::serve::peers::LaneMap,
    pub cache: Arc<crate::origin::OriginCache>,
}

impl OriginSource {
    /// The version the first lane (by name) that holds a snapshot names.
    async fn version(&self) -> Option<String> {
        let mut names = self.lanes.names();
        names.sort();
        for name in names {
            if let Some(lane) = self.lanes.get(&name) {
                if let Some(rel) = self.cache.get(&lane.log).await {
                    return Some(rel.redis_version().to_string());
                }
            }
        }
        None
    }
}

impl ClusterEndpoint {
    /// The view as of now.
    pub fn view(&self) -> ClusterView {
        let map = self.map.borrow().clone();
        let lanes = self.lanes.read().unwrap_or_else(|p| p.into_inner());
        ClusterView::build(
            self.my_id.clone(),
            self.my_addr.clone(),
            map.as_ref(),
            |lane| lanes.get(lane).map(|r| r.snapshot()).unwrap_or_default(),
        )
    }
}

/// Accepts clients until shutdown.
pub async fn run(listener: TcpListener, ep: ClusterEndpoint, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            a = listener.accept() => match a {
                Ok((sock, peer)) => {
                    let ep = ep.clone();
                    let stop = shutdown.clone();
                    tokio::spawn(async move {
                        if let Err(e) = serve_client(sock, &ep, stop).await {
                            tracing::debug!(%peer, "cluster endpoint client: {e}");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!("cluster endpoint accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

async fn serve_client(
    mut sock: TcpStream,
    ep: &ClusterEndpoint,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let _ = sock.set_nodelay(true);
    let mut buf = BytesMut::with_capacity(4096);
    let mut st = EpConn {
        authed: ep.requirepass.is_none(),
        proto: Proto::Resp2,
    };
    let mut out = BytesMut::new();
    loop {
        let args = match resp::parse_command(&mut buf, &LIMITS) {
            Ok(Some(a)) => a,
            Ok(None) => {
                let n = tokio::select! {
                    n = tokio::time::timeout(ep.timeout, sock.read_buf(&mut buf)) => match n {
                        Ok(n) => n?,
                        Err(_) => return Ok(()),
                    },
                    _ = shutdown.changed() => return Ok(()),
                };
                if n == 0 {
                    return Ok(());
                }
                continue;
            }
            Err(e) => {
                let msg = format!("-ERR Protocol error: {e}\r\n");
                return sock.write_all(msg.as_bytes()).await;
            }
        };
        if args.is_empty() {
            continue;
        }
        let name = args[0].to_ascii_lowercase();
        let version = match &ep.origin {
            Some(o) if name == b"hello" || name == b"info" => o.version().await,
            _ => None,
        };
        let (reply, close) = command_as(ep, &mut st, &args, version.as_deref());
        out.clear();
        reply.encode(st.proto, &mut out);
        sock.write_all(&out).await?;
        if close {
            return Ok(());
        }
    }
}

/// One command on the cluster port: the reply, and whether to close after it.
pub fn command(ep: &ClusterEndpoint, st: &mut EpConn, args: &[Bytes]) -> (Reply, bool) {
    command_as(ep, st, args, None)
}

/// [`command`], with the origin's `redis_version` for HELLO and INFO when it is known.
pub fn command_as(
    ep: &ClusterEndpoint,
    st: &mut EpConn,
    args: &[Bytes],
    version: Option<&str>,
) -> (Reply, bool) {
    let version = version.unwrap_or(UNKNOWN_VERSION);
    let name = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
    if !st.authed && !matches!(name.as_str(), "auth" | "quit" | "hello") {
        return (Reply::err("NOAUTH Authentication required."), false);
    }
    let ok = Reply::ok;
    let reply = match name.as_str() {
        "ping" => match args.get(1) {
            Some(m) => Reply::Bulk(m.clone()),
            None => Reply::Simple("PONG".into()),
        },
        "echo" if args.len() == 2 => Reply::Bulk(args[1].clone()),
        "quit" => return (ok(), true),
        "auth" => auth(ep, st, &args[1..]),
        "hello" => hello(ep, st, &args[1..], version),
        "select" if args.get(1).is_some_and(|d| &d[..] == b"0") => ok(),
        "select" => Reply::err("ERR SELECT is not allowed in cluster mode"),
        "client" => match args.get(1).map(|s| s.to_ascii_lowercase()) {
            Some(s) if s == b"setname" || s == b"setinfo" => ok(),
            Some(s) if s == b"getname" => Reply::Null,
            _ => Reply::err("ERR only CLIENT SETNAME/SETINFO/GETNAME on the cluster endpoint"),
        },
        // No command table here: clients read it from the replicas the slots point to.
        "command" => match args.get(1).map(|s| s.to_ascii_lowercase()) {
            Some(s) if s == b"count" => Reply::Integer(0),
            _ => Reply::Array(Vec::new()),
        },
        "info" => Reply::text(Bytes::from(format!(
            "# Server\r\nredis_version:{version}\r\nredis_mode:cluster\r\ngeorelay_version:{}\r\ngeorelay:cluster-endpoint\r\n\r\n# Cluster\r\ncluster_enabled:1\r\n",
            env!("CARGO_PKG_VERSION")
        ))),
        _ => {
            let view = ep.view();
            match cluster::handle(&view, args) {
                Some(r) => r,
                None => redirect(&view, &name, args),
            }
        }
    };
    (reply, false)
}

/// A keyed command sent here goes to the lane's reported master: `-MOVED slot ip:port`.
fn redirect(view: &ClusterView, name: &str, args: &[Bytes]) -> Reply {
    let Some(key) = args.get(1) else {
        let shown: String = name.chars().take(64).collect();
        return Reply::err(format!(
            "ERR unknown command '{shown}': georelay's cluster endpoint answers CLUSTER, READONLY and connection commands; read keys from the nodes CLUSTER SLOTS lists"
        ));
    };
    let slot = key_slot(key);
    let node = view
        .shards
        .iter()
        .find(|s| s.ranges.iter().any(|r| r.contains(slot)))
        .and_then(|s| s.nodes.first());
    match node {
        Some(n) => Reply::err(format!("MOVED {slot} {}:{}", n.ip, n.port)),
        None => Reply::err(format!(
            "CLUSTERDOWN Hash slot {slot} is not served: no region replica of its lane is connected"
        )),
    }
}

fn auth(ep: &ClusterEndpoint, st: &mut EpConn, args: &[Bytes]) -> Reply {
    let (user, pass) = match args {
        [pass] => (&b"default"[..], pass),
        [user, pass] => (&user[..], pass),
        _ => return commands::arity("auth"),
    };
    match commands::password_check(ep.requirepass.as_deref(), "default", user, pass) {
        Ok(()) => {
            st.authed = true;
            Reply::ok()
        }
        Err(e) => e,
    }
}

/// `HELLO [protover [AUTH user pass] [SETNAME name]]`, RESP2 or RESP3, as on the replica port.
fn hello(ep: &ClusterEndpoint, st: &mut EpConn, args: &[Bytes], version: &str) -> Reply {
    let h = match commands::parse_hello(args) {
        Ok(h) => h,
        Err(e) => return e,
    };
    if let Some((user, pass)) = h.auth {
        if let e @ Reply::Error(_) = auth(ep, st, &[user, pass]) {
            return e;
        }
    }
    if !st.authed {
        return Reply::err(commands::HELLO_NOAUTH);
    }
    if let Some(p) = h.proto {
        st.proto = p;
    }
    commands::hello_reply(st.proto, 0, version, "cluster", "master")
}

/// The endpoint's own address as reported in `CLUSTER NODES`.
pub fn my_addr(listen: SocketAddr) -> (String, u16) {
    (listen.ip().to_string(), listen.port())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{LaneSlots, SlotRange};

    fn endpoint(pass: Option<&str>) -> ClusterEndpoint {
        let map = SlotMap::new(
            1,
            vec![LaneSlots {
                name: "l0".into(),
                alias: "shard-0".into(),
                ranges: vec![SlotRange::new(0, 16383)],
            }],
        )
        .unwrap();
        ClusterEndpoint {
            my_id: cluster::node_id("a"),
            my_addr: ("127.0.0.1".into(), 1),
            map: watch::channel(Some(map)).1,
            lanes: Arc::default(),
            requirepass: pass.map(str::to_string),
            timeout: Duration::from_secs(5),
            origin: None,
        }
    }

    fn run(ep: &ClusterEndpoint, authed: &mut bool, words: &[&str]) -> Reply {
        let args: Vec<Bytes> = words.iter().map(|w| Bytes::from(w.to_string())).collect();
        let mut st = EpConn {
            authed: *authed,
            proto: Proto::Resp2,
        };
        let r = command(ep, &mut st, &args).0;
        *authed = st.authed;
        r
    }

    #[test]
    fn auth_gates_everything_but_auth_and_hello() {
        let ep = endpoint(Some("pw"));
        let mut authed = false;
        assert!(
            matches!(run(&ep, &mut authed, &["cluster", "slots"]), Reply::Error(m) if m.starts_with("NOAUTH"))
        );
        assert!(
            matches!(run(&ep, &mut authed, &["auth", "no"]), Reply::Error(m) if m.starts_with("WRONGPASS"))
        );
        assert!(matches!(
            run(&ep, &mut authed, &["hello", "2", "auth", "default", "pw"]),
            Reply::Map(_)
        ));
        assert!(authed);
        assert!(matches!(
            run(&ep, &mut authed, &["cluster", "slots"]),
            Reply::Array(_)
        ));
    }

    #[test]
    fn connect_time_commands_and_redirects() {
        let ep = endpoint(None);
        let mut a = true;
        assert_eq!(run(&ep, &mut a, &["PING"]), Reply::Simple("PONG".into()));
        assert_eq!(
            run(&ep, &mut a, &["client", "setinfo", "lib-name", "x"]),
            Reply::Simple("OK".into())
        );
        assert_eq!(
            run(&ep, &mut a, &["select", "0"]),
            Reply::Simple("OK".into())
        );
        assert!(
            matches!(run(&ep, &mut a, &["hello", "4"]), Reply::Error(m) if m.starts_with("NOPROTO"))
        );
        // No replica connected yet: a keyed command gets CLUSTERDOWN, not a hang or a crash.
        assert!(
            matches!(run(&ep, &mut a, &["get", "foo"]), Reply::Error(m) if m.starts_with("CLUSTERDOWN Hash slot 12182"))
        );
        assert!(
            matches!(run(&ep, &mut a, &["flushall"]), Reply::Error(m) if m.starts_with("ERR unknown command"))
        );
        let r = Arc::new(Replicas::default());
        r.insert(crate::serve::ReplicaInfo {
            ip: "127.0.0.5".into(),
            port: 7001,
            state: crate::serve::ReplicaState::Online,
            ack_offset: 1,
            fack_offset: 0,
            last_ack: std::time::Instant::now(),
            last_sync: "full",
        });
        ep.lanes.write().unwrap().insert("l0".into(), r);
        assert_eq!(
            run(&ep, &mut a, &["get", "foo"]),
            Reply::Error("MOVED 12182 127.0.0.5:7001".into())
        );
        let mut st = EpConn {
            authed: true,
            proto: Proto::Resp2,
        };
        assert!(command(&ep, &mut st, &[Bytes::from("quit")]).1);
        // HELLO 3 switches the connection to RESP3: CLUSTER SHARDS comes as maps.
        let args: Vec<Bytes> = ["hello", "3"].iter().map(|w| Bytes::from(*w)).collect();
        assert!(matches!(command(&ep, &mut st, &args).0, Reply::Map(_)));
        let info = command_as(&ep, &mut st, &[Bytes::from("info")], Some("7.2.4")).0;
        assert!(
            matches!(&info, Reply::Verbatim { text, .. } if String::from_utf8_lossy(text).contains("redis_version:7.2.4")),
            "{info:?}"
        );
        assert_eq!(st.proto, Proto::Resp3);
    }
}
