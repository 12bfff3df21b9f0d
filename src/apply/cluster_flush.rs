//! Emptying one lane's slots in a cluster target: what a `FLUSHALL`/`FLUSHDB` of one origin
//! shard, or a full sync of one lane, means when several lanes write into the same target.

use bytes::Bytes;

use super::cluster::ClusterTarget;
use super::conn;
use super::ApplyError;
use crate::resp::Frame;

/// Keys listed per `CLUSTER GETKEYSINSLOT` round.
const ROUND: usize = 1000;

/// The prefix of every georelay checkpoint key; these stay (the caller rewrites its own).
const CHECKPOINT_PREFIX: &[u8] = b"georelay:checkpoint:";

impl ClusterTarget {
    /// Deletes every key in `slots` except georelay's checkpoint keys, slot by slot on the
    /// slot's master (following redirections); returns how many keys went. Running it again
    /// after a crash deletes what is left, so it is safe to replay.
    pub fn delete_in(&mut self, slots: &[u16]) -> Result<u64, ApplyError> {
        let mut deleted = 0u64;
        let count = ROUND.to_string();
        for &slot in slots {
            let n = slot.to_string();
            loop {
                let args: &[&[u8]] =
                    &[b"CLUSTER", b"GETKEYSINSLOT", n.as_bytes(), count.as_bytes()];
                let keys = match self.call_slot(slot, args)? {
                    Frame::Array(keys) => keys,
                    Frame::Error(e) => return Err(conn::refusal(&e, args)),
                    other => {
                        return Err(ApplyError::Refused {
                            reason: "protocol",
                            message: format!("CLUSTER GETKEYSINSLOT {slot} answered {other:?}"),
                        })
                    }
                };
                let data: Vec<Bytes> = keys
                    .iter()
                    .filter_map(conn::text)
                    .filter(|k| !k.starts_with(CHECKPOINT_PREFIX))
                    .collect();
                if data.is_empty() {
                    break;
                }
                let mut del: Vec<&[u8]> = vec![b"UNLINK"];
                del.extend(data.iter().map(|k| k.as_ref()));
                if let Frame::Error(e) = self.call_slot(slot, &del)? {
                    return Err(conn::refusal(&e, &del));
                }
                deleted += data.len() as u64;
            }
        }
        Ok(deleted)
    }
}
