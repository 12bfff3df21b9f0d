//! RDB version safety on the replica port: a replica is never sent a snapshot it cannot load
//! (it would flush its dataset first, fail on the header, reconnect and do it again forever).
//!
//! What a replica can load is learnt from `REPLCONF version` (Valkey 8+), else from
//! `INFO server` asked of its own server, else from its behaviour: a replica that asks for a
//! full sync again without ever acknowledging the snapshot it was sent is refused.
//!
//! The `INFO server` probe never lets a client steer the agent: it connects to the replica
//! connection's real TCP peer IP (never a `REPLCONF ip-address`), on the port announced with
//! `REPLCONF listening-port`, and sends no credentials there.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::rdb::{self, max_rdb_version_for, RdbFlavor, RdbHeader};
use crate::resp;

/// How long a replica that did not acknowledge its snapshot is refused that same snapshot.
/// Bounded, so a replica that merely died while loading is served again later.
pub const UNACKED_HOLD: Duration = Duration::from_secs(600);

/// Deadline for the whole `INFO server` probe of a replica's own server.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The highest `REDIS00xx` version a Valkey release loads: Valkey 9 keeps 12–79 for
/// "foreign" (Redis 7.4+) formats and refuses them.
const VALKEY_MAX_REDIS_FLAVOR: u32 = 11;

/// A replica's server release, as far as it is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    pub version: String,
    pub valkey: bool,
    /// A georelay agent stores snapshots without loading them: it takes any version.
    pub georelay: bool,
}

impl Release {
    pub fn describe(&self) -> String {
        if self.georelay {
            "a georelay agent".to_string()
        } else if self.valkey {
            format!("Valkey {}", self.version)
        } else {
            format!("Redis {}", self.version)
        }
    }
}

/// Whether a release can load a snapshot with this header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Loads,
    /// It cannot; `max` is the highest version it loads of the snapshot's flavor (0: none).
    CannotLoad {
        max: u32,
    },
    /// The release is not in the table (older than Redis 5, or unparseable).
    Unknown,
}

/// Decides from the release table in [`crate::rdb::max_rdb_version_for`].
pub fn verdict(header: RdbHeader, release: &Release) -> Verdict {
    if release.georelay {
        return Verdict::Loads;
    }
    let Some(max) = max_rdb_version_for(&release.version, release.valkey) else {
        return if newer_than_table(&release.version, release.valkey) {
            Verdict::Loads // releases load the formats of the releases before them
        } else {
            Verdict::Unknown
        };
    };
    let max_same_flavor = match (header.flavor, release.valkey) {
        (RdbFlavor::Redis, false) | (RdbFlavor::Valkey, true) => max,
        // A Valkey magic is a "wrong signature" to every Redis.
        (RdbFlavor::Valkey, false) => 0,
        (RdbFlavor::Redis, true) => max.min(VALKEY_MAX_REDIS_FLAVOR),
    };
    if header.version <= max_same_flavor {
        Verdict::Loads
    } else {
        Verdict::CannotLoad {
            max: max_same_flavor,
        }
    }
}

/// True for a major version above every one in the table (Redis 9+, Valkey 10+).
fn newer_than_table(version: &str, valkey: bool) -> bool {
    let major = version
        .trim()
        .split('.')
        .next()
        .and_then(|m| m.parse::<u32>().ok());
    match major {
        Some(m) if valkey => m >= 10,
        Some(m) => m >= 9,
        None => false,
    }
}

/// True when every release georelay supports as a replica (Redis 5.0+, Valkey 7.2+) loads it,
/// so there is nothing to check.
pub fn universally_loadable(header: RdbHeader) -> bool {
    header.flavor == RdbFlavor::Redis && header.version <= 9
}

/// `REDIS0011` / `VALKEY080`, as the header is written.
pub fn header_text(header: RdbHeader) -> String {
    match header.flavor {
        RdbFlavor::Redis => format!("REDIS{:04}", header.version),
        RdbFlavor::Valkey => format!("VALKEY{:03}", header.version),
    }
}

/// Reads the 9-byte header of a stored snapshot.
pub async fn read_header(path: &Path) -> std::io::Result<RdbHeader> {
    let path = path.to_path_buf();
    let head = crate::log::blocking(move || {
        use std::io::Read;
        let mut head = [0u8; 9];
        std::fs::File::open(&path)?.read_exact(&mut head)?;
        Ok::<_, std::io::Error>(head)
    })
    .await
    .map_err(|e| std::io::Error::other(e.to_string()))??;
    rdb::parse_header(&head)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))
}

/// Parses an `INFO server` text: Valkey reports `valkey_version` (and a fixed
/// `redis_version:7.2.4`), Redis only `redis_version`, georelay `georelay_version`.
pub fn parse_info_server(text: &str) -> Option<Release> {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .map(|v| v.trim().to_string())
    };
    if let Some(v) = field("georelay_version") {
        return Some(Release {
            version: v,
            valkey: false,
            georelay: true,
        });
    }
    if let Some(v) = field("valkey_version") {
        return Some(Release {
            version: v,
            valkey: true,
            georelay: false,
        });
    }
    field("redis_version").map(|v| Release {
        version: v,
        valkey: false,
        georelay: false,
    })
}

/// Asks the replica's own server for `INFO server` at `peer_ip`, the replica connection's
/// real TCP peer address (never an address the client announced), on `port`, the port it
/// announced with `REPLCONF listening-port`. No `AUTH` is sent: the port is the client's
/// choice, so the agent's password never goes there. A replica server that requires AUTH
/// answers `-NOAUTH` and the release stays unknown. None when it cannot be reached, does not
/// answer in time, or answers something else.
pub async fn probe(peer_ip: IpAddr, port: u16) -> Option<Release> {
    let work = async {
        let mut sock = TcpStream::connect(SocketAddr::new(peer_ip, port))
            .await
            .ok()?;
        sock.write_all(&resp::command(&[b"INFO", b"server"]))
            .await
            .ok()?;
        let limits = resp::Limits {
            max_bulk: 1 << 20,
            ..resp::Limits::default()
        };
        let mut buf = bytes::BytesMut::new();
        loop {
            match resp::parse_frame(&mut buf, &limits) {
                Ok(Some(resp::Frame::Bulk(b))) => {
                    return parse_info_server(&String::from_utf8_lossy(&b))
                }
                Ok(Some(_)) | Err(_) => return None,
                Ok(None) => {
                    if sock.read_buf(&mut buf).await.ok()? == 0 {
                        return None;
                    }
                }
            }
        }
    };
    timeout(PROBE_TIMEOUT, work).await.ok().flatten()
}

/// Which snapshot a replica was sent, and when.
#[derive(Debug, Clone)]
struct Sent {
    snapshot: (u64, u64),
    header: RdbHeader,
    at: Instant,
}

/// Full syncs sent but not yet acknowledged, by the replica's real peer IP and listening port
/// (never an address it announced).
#[derive(Default)]
pub struct Unacked {
    map: Mutex<HashMap<String, Sent>>,
}

impl Unacked {
    /// Records that `replica` was sent the whole snapshot `(epoch, offset)`.
    pub fn sent(&self, replica: &str, snapshot: (u64, u64), header: RdbHeader) {
        let mut map = self.lock();
        map.retain(|_, s| s.at.elapsed() < UNACKED_HOLD);
        map.insert(
            replica.to_string(),
            Sent {
                snapshot,
                header,
                at: Instant::now(),
            },
        );
    }

    /// The replica acknowledged an offset: it loaded what it was sent.
    pub fn acked(&self, replica: &str) {
        self.lock().remove(replica);
    }

    /// The header of the snapshot `replica` was sent and never acknowledged, if that is the
    /// same snapshot it would get now and it was sent within [`UNACKED_HOLD`].
    pub fn pending(&self, replica: &str, snapshot: (u64, u64)) -> Option<RdbHeader> {
        self.lock()
            .get(replica)
            .filter(|s| s.snapshot == snapshot && s.at.elapsed() < UNACKED_HOLD)
            .map(|s| s.header)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Sent>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(v: &str, valkey: bool) -> Release {
        Release {
            version: v.into(),
            valkey,
            georelay: false,
        }
    }

    const fn h(flavor: RdbFlavor, version: u32) -> RdbHeader {
        RdbHeader { flavor, version }
    }
    const R9: RdbHeader = h(RdbFlavor::Redis, 9);
    const R10: RdbHeader = h(RdbFlavor::Redis, 10);
    const R11: RdbHeader = h(RdbFlavor::Redis, 11);
    const R12: RdbHeader = h(RdbFlavor::Redis, 12);
    const V80: RdbHeader = h(RdbFlavor::Valkey, 80);

    #[test]
    fn verdicts() {
        use Verdict::*;
        assert_eq!(verdict(R9, &rel("6.2.14", false)), Loads);
        assert_eq!(verdict(R10, &rel("6.2.14", false)), CannotLoad { max: 9 });
        assert_eq!(verdict(R10, &rel("7.0.15", false)), Loads);
        assert_eq!(verdict(R11, &rel("7.0.15", false)), CannotLoad { max: 10 });
        assert_eq!(verdict(R11, &rel("9.1.2", true)), Loads);
        assert_eq!(verdict(R11, &rel("8.0.1", true)), Loads);
        assert_eq!(verdict(R12, &rel("9.1.2", true)), CannotLoad { max: 11 });
        assert_eq!(verdict(R12, &rel("7.4.1", false)), Loads);
        assert_eq!(verdict(V80, &rel("9.1.2", true)), Loads);
        assert_eq!(verdict(V80, &rel("8.1.0", true)), CannotLoad { max: 11 });
        assert_eq!(verdict(V80, &rel("8.0.2", false)), CannotLoad { max: 0 });
        assert_eq!(verdict(V80, &rel("10.0.0", true)), Loads);
        assert_eq!(verdict(R12, &rel("9.0.0", false)), Loads);
        assert_eq!(verdict(R10, &rel("4.0.14", false)), Unknown);
        assert_eq!(verdict(R10, &rel("garbage", false)), Unknown);
        let agent = Release {
            version: "0.1.0".into(),
            valkey: false,
            georelay: true,
        };
        assert_eq!(verdict(V80, &agent), Loads);
        assert!(universally_loadable(R9));
        assert!(!universally_loadable(R10));
        assert!(!universally_loadable(V80));
        assert_eq!(header_text(R11), "REDIS0011");
        assert_eq!(header_text(V80), "VALKEY080");
    }

    #[test]
    fn info_server_texts() {
        let valkey =
            "# Server\r\nredis_version:7.2.4\r\nserver_name:valkey\r\nvalkey_version:9.1.2\r\n";
        assert_eq!(parse_info_server(valkey), Some(rel("9.1.2", true)));
        let redis = "# Server\r\nredis_version:7.0.15\r\nredis_git_sha1:00000000\r\n";
        assert_eq!(parse_info_server(redis), Some(rel("7.0.15", false)));
        let agent = "# Server\r\nredis_version:7.0.0\r\ngeorelay_version:0.1.0\r\n";
        assert!(parse_info_server(agent).is_some_and(|r| r.georelay));
        assert_eq!(parse_info_server("# Server\r\n"), None);
        assert_eq!(parse_info_server("redis_version_x:1\r\n"), None);
    }

    /// The probe asks `INFO server` and nothing else (no AUTH), and reads the release.
    #[tokio::test]
    async fn probe_sends_only_info_server_and_parses_the_answer() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let want = resp::command(&[b"INFO", b"server"]);
            let mut got = vec![0u8; want.len()];
            s.read_exact(&mut got).await.unwrap();
            let info = b"# Server\r\nredis_version:6.2.14\r\n";
            let mut reply = format!("${}\r\n", info.len()).into_bytes();
            reply.extend_from_slice(info);
            reply.extend_from_slice(b"\r\n");
            s.write_all(&reply).await.unwrap();
            (got == want, got)
        });
        let release = probe(IpAddr::from([127, 0, 0, 1]), port).await;
        assert_eq!(release, Some(rel("6.2.14", false)));
        let (only_info, got) = server.await.unwrap();
        assert!(
            only_info,
            "the probe sent {:?}",
            String::from_utf8_lossy(&got)
        );
        // A server that wants AUTH first: the release stays unknown.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            s.write_all(b"-NOAUTH Authentication required.\r\n")
                .await
                .unwrap();
            let _ = s.read(&mut [0u8; 64]).await;
        });
        assert_eq!(probe(IpAddr::from([127, 0, 0, 1]), port).await, None);
    }

    #[test]
    fn unacked_ledger() {
        let u = Unacked::default();
        assert_eq!(u.pending("1.2.3.4:6379", (1, 100)), None);
        u.sent("1.2.3.4:6379", (1, 100), R11);
        assert_eq!(u.pending("1.2.3.4:6379", (1, 100)), Some(R11));
        assert_eq!(
            u.pending("1.2.3.4:6379", (1, 200)),
            None,
            "a newer snapshot"
        );
        assert_eq!(u.pending("1.2.3.4:6380", (1, 100)), None, "another replica");
        u.acked("1.2.3.4:6379");
        assert_eq!(u.pending("1.2.3.4:6379", (1, 100)), None);
    }
}
