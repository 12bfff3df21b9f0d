//! The checkpoint kept in the target and the start decision made from it (pure): where the
//! applied origin offset is recorded, how it is written and read back, and whether a start
//! resumes the stream, resumes or begins a full sync, or must be refused.

use crate::log::{HistoryEntry, PsyncDecision};

use super::ApplyError;

/// The checkpoint key of lane `lane` (database 0 of a standalone target).
pub fn key(lane: &str) -> String {
    format!("georelay:checkpoint:{lane}")
}

/// Which snapshot a full sync loads: the origin stream position it stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotId {
    pub replid: String,
    pub offset: u64,
    pub size: u64,
}

/// What the target holds, as written in the same transaction as the commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checkpoint {
    /// Every origin byte up to and including `offset` (of the stream named `replid`) is applied.
    Stream { replid: String, offset: u64 },
    /// A full sync of `snapshot` is under way; its first `keys_done` items are in the target.
    Loading {
        snapshot: SnapshotId,
        keys_done: u64,
    },
}

impl Checkpoint {
    pub fn encode(&self) -> String {
        match self {
            Checkpoint::Stream { replid, offset } => format!("v1 stream {replid} {offset}"),
            Checkpoint::Loading {
                snapshot: s,
                keys_done,
            } => {
                format!(
                    "v1 loading {} {} {} {keys_done}",
                    s.replid, s.offset, s.size
                )
            }
        }
    }

    /// Reads a checkpoint value; anything else is an error naming the value.
    pub fn parse(text: &[u8]) -> Result<Checkpoint, ApplyError> {
        let bad = || ApplyError::BadCheckpoint(String::from_utf8_lossy(text).into_owned());
        let text = std::str::from_utf8(text).map_err(|_| bad())?;
        let parts: Vec<&str> = text.split(' ').collect();
        let num = |s: &str| s.parse::<u64>().map_err(|_| bad());
        match parts.as_slice() {
            ["v1", "stream", replid, offset] => Ok(Checkpoint::Stream {
                replid: replid.to_string(),
                offset: num(offset)?,
            }),
            ["v1", "loading", replid, offset, size, done] => Ok(Checkpoint::Loading {
                snapshot: SnapshotId {
                    replid: replid.to_string(),
                    offset: num(offset)?,
                    size: num(size)?,
                },
                keys_done: num(done)?,
            }),
            _ => Err(bad()),
        }
    }

    /// The origin offset this checkpoint stands for (a loading snapshot's offset).
    pub fn offset(&self) -> u64 {
        match self {
            Checkpoint::Stream { offset, .. } => *offset,
            Checkpoint::Loading { snapshot, .. } => snapshot.offset,
        }
    }
}

/// The replid naming the stream at offset `n` (the newest switch at or before it).
pub fn replid_at(history: &[HistoryEntry], n: u64) -> Option<&str> {
    history
        .iter()
        .rev()
        .find(|h| h.start <= n)
        .or_else(|| history.first())
        .map(|h| h.replid.as_str())
}

/// How an applier starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// Apply the log from `from` on (the checkpoint's offset + 1).
    Stream { from: u64 },
    /// Load `snapshot`, skipping its first `skip` items; `flush` empties the target first.
    Load {
        snapshot: SnapshotId,
        skip: u64,
        flush: bool,
    },
    /// No snapshot to load yet (the agent's first sync is still running).
    WaitSnapshot,
    /// A full sync must empty a target that holds data, and `allow_flush` is off.
    Refuse(String),
}

/// What the start decision needs to know.
pub struct StartInput<'a> {
    pub checkpoint: Option<&'a Checkpoint>,
    /// The log's answer for "continue after the checkpoint" (PSYNC semantics).
    pub psync: Option<PsyncDecision>,
    /// Keys in the target, the checkpoint key excluded.
    pub target_keys: u64,
    pub allow_flush: bool,
    pub snapshot: Option<SnapshotId>,
}

/// The start decision: resume the stream when the log holds what follows the checkpoint,
/// resume a full sync of the same snapshot, start one into an empty target, flush only with
/// consent.
pub fn decide_start(i: StartInput<'_>) -> Start {
    if let (Some(Checkpoint::Stream { .. }), Some(PsyncDecision::Continue { .. })) =
        (i.checkpoint, &i.psync)
    {
        let from = i.checkpoint.map_or(0, |c| c.offset() + 1);
        return Start::Stream { from };
    }
    let Some(snapshot) = i.snapshot else {
        return Start::WaitSnapshot;
    };
    let why = match i.checkpoint {
        Some(Checkpoint::Loading { snapshot: s, keys_done }) if *s == snapshot => {
            return Start::Load {
                snapshot,
                skip: *keys_done,
                flush: false,
            };
        }
        None if i.target_keys == 0 => {
            return Start::Load {
                snapshot,
                skip: 0,
                flush: false,
            };
        }
        None => format!(
            "the target holds {} keys and no georelay checkpoint",
            i.target_keys
        ),
        Some(Checkpoint::Loading { snapshot: s, .. }) => format!(
            "the target holds part of an interrupted full sync (snapshot at offset {}) whose snapshot is gone",
            s.offset
        ),
        Some(Checkpoint::Stream { replid, offset }) => {
            let reason = match &i.psync {
                Some(PsyncDecision::Full { reason }) => reason.as_str(),
                _ => "unknown",
            };
            format!("the target is applied up to offset {offset} of {replid}, which the log no longer continues ({reason})")
        }
    };
    if i.allow_flush {
        Start::Load {
            snapshot,
            skip: 0,
            flush: true,
        }
    } else {
        Start::Refuse(format!(
            "{why}: a full sync must empty the target first; set target.allow_flush = true to allow it"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::FullReason;

    fn snap(offset: u64) -> SnapshotId {
        SnapshotId {
            replid: "r1".into(),
            offset,
            size: 99,
        }
    }

    fn input(
        c: Option<&Checkpoint>,
        psync: Option<PsyncDecision>,
        keys: u64,
        flush: bool,
    ) -> StartInput<'_> {
        StartInput {
            checkpoint: c,
            psync,
            target_keys: keys,
            allow_flush: flush,
            snapshot: Some(snap(100)),
        }
    }

    #[test]
    fn checkpoints_round_trip_and_bad_ones_are_named() {
        for c in [
            Checkpoint::Stream {
                replid: "abc".into(),
                offset: 12,
            },
            Checkpoint::Loading {
                snapshot: snap(7),
                keys_done: 3,
            },
        ] {
            assert_eq!(Checkpoint::parse(c.encode().as_bytes()).unwrap(), c);
        }
        let e = Checkpoint::parse(b"v1 stream x notanumber").unwrap_err();
        assert!(e.to_string().contains("v1 stream x notanumber"), "{e}");
        assert!(Checkpoint::parse(b"\xff").is_err());
        assert!(Checkpoint::parse(b"").is_err());
    }

    #[test]
    fn resume_the_stream_when_the_log_continues() {
        let c = Checkpoint::Stream {
            replid: "r1".into(),
            offset: 500,
        };
        let go = Some(PsyncDecision::Continue {
            replid: "r1".into(),
        });
        assert_eq!(
            decide_start(input(Some(&c), go, 10, false)),
            Start::Stream { from: 501 }
        );
    }

    #[test]
    fn empty_target_loads_without_flush_and_a_loading_marker_resumes() {
        assert_eq!(
            decide_start(input(None, None, 0, false)),
            Start::Load {
                snapshot: snap(100),
                skip: 0,
                flush: false
            }
        );
        let c = Checkpoint::Loading {
            snapshot: snap(100),
            keys_done: 40,
        };
        assert_eq!(
            decide_start(input(Some(&c), None, 40, false)),
            Start::Load {
                snapshot: snap(100),
                skip: 40,
                flush: false
            }
        );
        let mut i = input(None, None, 0, false);
        i.snapshot = None;
        assert_eq!(decide_start(i), Start::WaitSnapshot);
    }

    #[test]
    fn a_flush_needs_consent() {
        let Start::Refuse(m) = decide_start(input(None, None, 3, false)) else {
            panic!()
        };
        assert!(
            m.contains("holds 3 keys") && m.contains("target.allow_flush"),
            "{m}"
        );
        assert_eq!(
            decide_start(input(None, None, 3, true)),
            Start::Load {
                snapshot: snap(100),
                skip: 0,
                flush: true
            }
        );
        let old = Checkpoint::Loading {
            snapshot: snap(50),
            keys_done: 4,
        };
        assert!(matches!(
            decide_start(input(Some(&old), None, 4, false)),
            Start::Refuse(_)
        ));
        let c = Checkpoint::Stream {
            replid: "r0".into(),
            offset: 5,
        };
        let gone = Some(PsyncDecision::Full {
            reason: FullReason::NoHistory,
        });
        let Start::Refuse(m) = decide_start(input(Some(&c), gone.clone(), 1, false)) else {
            panic!()
        };
        assert!(
            m.contains("offset 5 of r0") && m.contains("no_history"),
            "{m}"
        );
        assert!(matches!(
            decide_start(input(Some(&c), gone, 1, true)),
            Start::Load { flush: true, .. }
        ));
    }

    #[test]
    fn replid_at_picks_the_switch_in_effect() {
        let h = vec![
            HistoryEntry {
                replid: "a".into(),
                start: 1,
            },
            HistoryEntry {
                replid: "b".into(),
                start: 100,
            },
        ];
        assert_eq!(replid_at(&h, 50), Some("a"));
        assert_eq!(replid_at(&h, 100), Some("b"));
        assert_eq!(replid_at(&h, 0), Some("a"));
        assert_eq!(replid_at(&[], 0), None);
    }
}
