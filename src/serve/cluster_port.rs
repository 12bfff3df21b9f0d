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
use super::Replicas;
use crate::cluster::{key_slot, SlotMap};
use crate::resp::{self, Frame, Limits};

const LIMITS: Limits = Limits {
    max_bulk: 64 * 1024,
    max_array: 1024,
    max_depth: 1,
    max_inline: 64 * 1024,
};

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
    let mut authed = ep.requirepass.is_none();
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
        let (reply, close) = command(ep, &mut authed, &args);
        out.clear();
        resp::encode(&reply, &mut out);
        sock.write_all(&out).await?;
        if close {
            return Ok(());
        }
    }
}

/// One command on the cluster port: the reply, and whether to close after it.
pub fn command(ep: &ClusterEndpoint, authed: &mut bool, args: &[Bytes]) -> (Frame, bool) {
    let name = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
    if !*authed && !matches!(name.as_str(), "auth" | "quit" | "hello") {
        return (
            Frame::Error("NOAUTH Authentication required.".into()),
            false,
        );
    }
    let ok = || Frame::Simple("OK".into());
    let reply = match name.as_str() {
        "ping" => match args.get(1) {
            Some(m) => Frame::Bulk(m.clone()),
            None => Frame::Simple("PONG".into()),
        },
        "echo" if args.len() == 2 => Frame::Bulk(args[1].clone()),
        "quit" => return (ok(), true),
        "auth" => auth(ep, authed, &args[1..]),
        "hello" => hello(ep, authed, &args[1..]),
        "select" if args.get(1).is_some_and(|d| &d[..] == b"0") => ok(),
        "select" => Frame::Error("ERR SELECT is not allowed in cluster mode".into()),
        "client" => match args.get(1).map(|s| s.to_ascii_lowercase()) {
            Some(s) if s == b"setname" || s == b"setinfo" => ok(),
            Some(s) if s == b"getname" => Frame::Null,
            _ => Frame::Error("ERR only CLIENT SETNAME/SETINFO/GETNAME on the cluster endpoint".into()),
        },
        // No command table here: clients read it from the replicas the slots point to.
        "command" => match args.get(1).map(|s| s.to_ascii_lowercase()) {
            Some(s) if s == b"count" => Frame::Integer(0),
            _ => Frame::Array(Vec::new()),
        },
        "info" => Frame::Bulk(Bytes::from(
            "# Server\r\nredis_mode:cluster\r\ngeorelay:cluster-endpoint\r\n\r\n# Cluster\r\ncluster_enabled:1\r\n",
        )),
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
fn redirect(view: &ClusterView, name: &str, args: &[Bytes]) -> Frame {
    let Some(key) = args.get(1) else {
        let shown: String = name.chars().take(64).collect();
        return Frame::Error(format!(
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
        Some(n) => Frame::Error(format!("MOVED {slot} {}:{}", n.ip, n.port)),
        None => Frame::Error(format!(
            "CLUSTERDOWN Hash slot {slot} is not served: no region replica of its lane is connected"
        )),
    }
}

fn auth(ep: &ClusterEndpoint, authed: &mut bool, args: &[Bytes]) -> Frame {
    let Some(expected) = &ep.requirepass else {
        return Frame::Error("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?".into());
    };
    let pass = match args {
        [p] => p,
        [user, p] if &user[..] == b"default" => p,
        [_, _] => {
            return Frame::Error(
                "WRONGPASS invalid username-password pair or user is disabled.".into(),
            )
        }
        _ => return Frame::Error("ERR wrong number of arguments for 'auth' command".into()),
    };
    if &pass[..] == expected.as_bytes() {
        *authed = true;
        Frame::Simple("OK".into())
    } else {
        Frame::Error("WRONGPASS invalid username-password pair or user is disabled.".into())
    }
}

/// `HELLO [2 [AUTH user pass] [SETNAME n]]`: RESP2 only on this port.
fn hello(ep: &ClusterEndpoint, authed: &mut bool, args: &[Bytes]) -> Frame {
    if args.first().is_some_and(|v| &v[..] != b"2") {
        return Frame::Error("NOPROTO this cluster endpoint speaks RESP2 only".into());
    }
    if let Some(i) = args.iter().position(|a| a.eq_ignore_ascii_case(b"auth")) {
        match args.get(i + 1..i + 3) {
            Some(creds) => {
                if let e @ Frame::Error(_) = auth(ep, authed, creds) {
                    return e;
                }
            }
            None => return Frame::Error("ERR syntax error in HELLO".into()),
        }
    }
    if !*authed {
        return Frame::Error("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time".into());
    }
    let kv = |k: &str, v: Frame| [Frame::Bulk(Bytes::from(k.to_string())), v];
    let b = |s: &str| Frame::Bulk(Bytes::from(s.to_string()));
    Frame::Array(
        [
            kv("server", b("redis")),
            kv("version", b("7.0.0")),
            kv("proto", Frame::Integer(2)),
            kv("id", Frame::Integer(0)),
            kv("mode", b("cluster")),
            kv("role", b("master")),
            kv("modules", Frame::Array(Vec::new())),
        ]
        .into_iter()
        .flatten()
        .collect(),
    )
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
        }
    }

    fn run(ep: &ClusterEndpoint, authed: &mut bool, words: &[&str]) -> Frame {
        let args: Vec<Bytes> = words.iter().map(|w| Bytes::from(w.to_string())).collect();
        command(ep, authed, &args).0
    }

    #[test]
    fn auth_gates_everything_but_auth_and_hello() {
        let ep = endpoint(Some("pw"));
        let mut authed = false;
        assert!(
            matches!(run(&ep, &mut authed, &["cluster", "slots"]), Frame::Error(m) if m.starts_with("NOAUTH"))
        );
        assert!(
            matches!(run(&ep, &mut authed, &["auth", "no"]), Frame::Error(m) if m.starts_with("WRONGPASS"))
        );
        assert!(matches!(
            run(&ep, &mut authed, &["hello", "2", "auth", "default", "pw"]),
            Frame::Array(_)
        ));
        assert!(authed);
        assert!(matches!(
            run(&ep, &mut authed, &["cluster", "slots"]),
            Frame::Array(_)
        ));
    }

    #[test]
    fn connect_time_commands_and_redirects() {
        let ep = endpoint(None);
        let mut a = true;
        assert_eq!(run(&ep, &mut a, &["PING"]), Frame::Simple("PONG".into()));
        assert_eq!(
            run(&ep, &mut a, &["client", "setinfo", "lib-name", "x"]),
            Frame::Simple("OK".into())
        );
        assert_eq!(
            run(&ep, &mut a, &["select", "0"]),
            Frame::Simple("OK".into())
        );
        assert!(
            matches!(run(&ep, &mut a, &["hello", "3"]), Frame::Error(m) if m.starts_with("NOPROTO"))
        );
        // No replica connected yet: a keyed command gets CLUSTERDOWN, not a hang or a crash.
        assert!(
            matches!(run(&ep, &mut a, &["get", "foo"]), Frame::Error(m) if m.starts_with("CLUSTERDOWN Hash slot 12182"))
        );
        assert!(
            matches!(run(&ep, &mut a, &["flushall"]), Frame::Error(m) if m.starts_with("ERR unknown command"))
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
            Frame::Error("MOVED 12182 127.0.0.5:7001".into())
        );
        assert!(command(&ep, &mut a, &[Bytes::from("quit")]).1);
    }
}
