//! Making a cluster target's applied writes outlive its masters: before the lane floor (kept
//! on one master) moves past a batch, every master the batch wrote must have a replica
//! acknowledging it (`WAIT 1`), so a master lost right after — SIGKILLed, its replica
//! promoted — cannot take applied commands and their slot checkpoints with it while the
//! floor, elsewhere, says they are in.

use std::time::{Duration, Instant};

use super::cluster::ClusterTarget;
use super::conn;
use super::ApplyError;
use crate::resp::{command, Frame};

/// How long one `WAIT` blocks for a replica's acknowledgement.
pub const WAIT_MS: u64 = 1000;
/// How long a master's replica count (and a timed-out `WAIT`'s 0) is trusted.
pub const RECHECK: Duration = Duration::from_secs(5);

impl ClusterTarget {
    /// Waits until a replica of every master written since the last call acknowledges those
    /// writes (masters without replicas are skipped). Returns the masters whose replicas did
    /// not acknowledge within [`WAIT_MS`]: their writes are applied but not yet replicated.
    pub fn settle(&mut self) -> Result<Vec<String>, ApplyError> {
        let dirty = std::mem::take(&mut self.dirty);
        let mut list = Vec::new();
        for m in dirty {
            if self.replica_count(&m)? > 0 {
                list.push(m);
            }
        }
        if list.is_empty() {
            return Ok(Vec::new());
        }
        let ms = WAIT_MS.to_string();
        let wait = command(&[b"WAIT", b"1", ms.as_bytes()]);
        // Every master's WAIT goes out before any reply is read: they wait side by side.
        for (n, m) in list.iter().enumerate() {
            if let Err(e) = self.on(m, |c| c.send(&wait)) {
                self.drop_owing(list[..n].iter());
                return Err(e);
            }
        }
        let mut short = Vec::new();
        for (n, m) in list.iter().enumerate() {
            let reply = match self.on(m, |c| c.read()) {
                Ok(f) => f,
                Err(e) => {
                    self.drop_owing(list[n + 1..].iter());
                    return Err(e);
                }
            };
            match reply {
                Frame::Integer(acked) if acked >= 1 => {}
                Frame::Integer(_) => {
                    // Not waited for again until the count is asked again.
                    self.replicas.insert(m.clone(), (0, Instant::now()));
                    short.push(m.clone());
                }
                // A master demoted under the applier (a failover): whether its replica had
                // everything is settled by the checkpoints the new master holds.
                Frame::Error(e) => {
                    self.drop_owing(list[n + 1..].iter());
                    return Err(ApplyError::Refused {
                        reason: "busy",
                        message: format!("{m} answered WAIT with {e:?} (a failover in the target?); reading its slots and checkpoints again"),
                    });
                }
                other => {
                    self.drop_owing(list[n + 1..].iter());
                    return Err(ApplyError::Refused {
                        reason: "protocol",
                        message: format!("{m} answered WAIT with {other:?}"),
                    });
                }
            }
        }
        Ok(short)
    }

    /// How many replicas master `m` has, as it reports them itself (the cluster's gossip can
    /// be stale), asked at most every [`RECHECK`].
    fn replica_count(&mut self, m: &str) -> Result<usize, ApplyError> {
        if let Some((n, at)) = self.replicas.get(m) {
            if at.elapsed() < RECHECK {
                return Ok(*n);
            }
        }
        let args: &[&[u8]] = &[b"INFO", b"replication"];
        let f = self.on(m, |c| c.call(args))?;
        if let Frame::Error(e) = &f {
            return Err(conn::refusal(&format!("{m}: {e}"), args));
        }
        let n = conn::text(&f).map_or(0, |t| connected_replicas(&t));
        self.replicas.insert(m.to_string(), (n, Instant::now()));
        Ok(n)
    }
}

/// `connected_slaves:N` of an `INFO replication` reply (0 when absent: a replica, or no
/// replicas).
fn connected_replicas(info: &[u8]) -> usize {
    String::from_utf8_lossy(info)
        .lines()
        .find_map(|l| l.trim().strip_prefix("connected_slaves:"))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_replica_count_is_what_the_master_reports() {
        let info = b"# Replication\r\nrole:master\r\nconnected_slaves:2\r\nslave0:ip=127.0.0.1,port=7004,state=online,offset=14,lag=0\r\n";
        assert_eq!(connected_replicas(info), 2);
        assert_eq!(connected_replicas(b"# Replication\r\nrole:slave\r\n"), 0);
        assert_eq!(connected_replicas(b"connected_slaves:x\r\n"), 0);
    }
}
