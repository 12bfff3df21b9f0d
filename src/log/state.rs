//! Durable log state (`state.json`): epoch number, replid history, corruption barrier;
//! and the pure PSYNC acceptance rules over that history.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::fsutil::{io_err, write_atomic};
use super::{FullReason, HistoryEntry, LogError, PsyncDecision};

pub(crate) const STATE_FILE: &str = "state.json";
/// How many replids of ended epochs are remembered (to answer `new_epoch`).
const PAST_REPLIDS_KEPT: usize = 64;

/// What `state.json` holds.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct State {
    /// 0 = no epoch yet.
    pub epoch: u64,
    pub history: Vec<HistoryEntry>,
    /// Lowest offset that may be served, raised by corruption (0 = none).
    #[serde(default)]
    pub barrier: u64,
    /// Replids of earlier epochs (newest last), so their PSYNCs get `new_epoch`.
    #[serde(default)]
    pub past_replids: Vec<String>,
}

impl State {
    /// Load `dir/state.json`; `Ok(None)` if it does not exist.
    pub fn load(dir: &Path) -> Result<Option<State>, LogError> {
        let path = dir.join(STATE_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&path)(e)),
        };
        let st: State = serde_json::from_slice(&bytes).map_err(|e| LogError::BadState {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        if st.epoch > 0 && st.history.is_empty() {
            return Err(LogError::BadState {
                path,
                detail: format!("epoch {} has an empty replid history", st.epoch),
            });
        }
        if st.history.windows(2).any(|w| w[1].start < w[0].start) {
            return Err(LogError::BadState {
                path,
                detail: "replid history start offsets go backwards".into(),
            });
        }
        Ok(Some(st))
    }

    /// Write atomically (tmp + fsync + rename + dir fsync).
    pub fn save(&self, dir: &Path) -> Result<(), LogError> {
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| LogError::BadState {
            path: dir.join(STATE_FILE),
            detail: e.to_string(),
        })?;
        write_atomic(dir, STATE_FILE, &bytes).map(|_| ())
    }

    pub fn has_epoch(&self) -> bool {
        self.epoch > 0 && !self.history.is_empty()
    }

    /// First offset of the epoch (snapshot offset + 1).
    pub fn epoch_start(&self) -> u64 {
        self.history.first().map(|h| h.start).unwrap_or(1)
    }

    /// The state after a new epoch begins with a snapshot at `offset`.
    pub fn next_epoch(&self, replid: &str, offset: u64) -> State {
        let mut past = self.past_replids.clone();
        past.extend(self.history.iter().map(|h| h.replid.clone()));
        if past.len() > PAST_REPLIDS_KEPT {
            past.drain(..past.len() - PAST_REPLIDS_KEPT);
        }
        State {
            epoch: self.epoch + 1,
            history: vec![HistoryEntry {
                replid: replid.to_string(),
                start: offset + 1,
            }],
            barrier: offset + 1,
            past_replids: past,
        }
    }
}

/// Highest PSYNC offset for which `history[i]` is a valid replid, ignoring what the log holds:
/// an old id is valid up to the start of the next entry, the current id has no upper bound.
fn id_upper_bound(history: &[HistoryEntry], i: usize) -> u64 {
    history
        .get(i + 1)
        .map(|next| next.start)
        .unwrap_or(u64::MAX)
}

/// Is `replid` a valid name for the stream position `n` (the next byte wanted)?
pub(crate) fn replid_valid_at(history: &[HistoryEntry], replid: &str, n: u64) -> bool {
    history
        .iter()
        .enumerate()
        .any(|(i, h)| h.replid.eq_ignore_ascii_case(replid) && n <= id_upper_bound(history, i))
}

/// Range information the decision needs besides the history.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Range {
    pub first_valid: u64,
    pub head: u64,
    /// `first_valid` when it was last raised by corruption (0 = never).
    pub corrupt_floor: u64,
}

/// PSYNC acceptance, Redis semantics generalised to a full history.
pub(crate) fn decide(st: &State, range: Range, replid: &str, n: u64) -> PsyncDecision {
    let full = |reason| PsyncDecision::Full { reason };
    if replid == "?" {
        return full(FullReason::FirstSync);
    }
    let Some(current) = st.history.last().filter(|_| st.has_epoch()) else {
        return full(FullReason::NoHistory);
    };
    if !st
        .history
        .iter()
        .any(|h| h.replid.eq_ignore_ascii_case(replid))
    {
        if st
            .past_replids
            .iter()
            .any(|r| r.eq_ignore_ascii_case(replid))
        {
            return full(FullReason::NewEpoch);
        }
        return full(FullReason::NoHistory);
    }
    if !replid_valid_at(&st.history, replid, n) {
        // Known id, but the stream switched away from it before `n`.
        return full(FullReason::NoHistory);
    }
    if n > range.head.saturating_add(1) {
        return full(FullReason::OffsetOutOfRange);
    }
    if n < range.first_valid {
        if range.corrupt_floor != 0 && range.corrupt_floor == range.first_valid {
            return full(FullReason::Corruption);
        }
        return full(FullReason::OffsetOutOfRange);
    }
    PsyncDecision::Continue {
        replid: current.replid.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st() -> State {
        State {
            epoch: 1,
            history: vec![
                HistoryEntry {
                    replid: "aaaa".into(),
                    start: 101,
                },
                HistoryEntry {
                    replid: "bbbb".into(),
                    start: 501,
                },
            ],
            barrier: 0,
            past_replids: vec!["zzzz".into()],
        }
    }

    const R: Range = Range {
        first_valid: 101,
        head: 900,
        corrupt_floor: 0,
    };

    fn cont() -> PsyncDecision {
        PsyncDecision::Continue {
            replid: "bbbb".into(),
        }
    }

    fn full(reason: FullReason) -> PsyncDecision {
        PsyncDecision::Full { reason }
    }

    #[test]
    fn current_id_valid_over_whole_range() {
        let s = st();
        assert_eq!(decide(&s, R, "bbbb", 101), cont());
        assert_eq!(decide(&s, R, "BBBB", 600), cont());
        assert_eq!(decide(&s, R, "bbbb", 901), cont(), "head+1 is valid");
        assert_eq!(
            decide(&s, R, "bbbb", 902),
            full(FullReason::OffsetOutOfRange)
        );
        assert_eq!(
            decide(&s, R, "bbbb", 100),
            full(FullReason::OffsetOutOfRange)
        );
    }

    #[test]
    fn old_id_only_up_to_switch_point() {
        let s = st();
        assert_eq!(decide(&s, R, "aaaa", 101), cont());
        assert_eq!(decide(&s, R, "aaaa", 501), cont());
        assert_eq!(decide(&s, R, "aaaa", 502), full(FullReason::NoHistory));
    }

    #[test]
    fn unknown_question_and_past_epoch() {
        let s = st();
        assert_eq!(decide(&s, R, "?", 1), full(FullReason::FirstSync));
        assert_eq!(decide(&s, R, "cccc", 200), full(FullReason::NoHistory));
        assert_eq!(decide(&s, R, "zzzz", 200), full(FullReason::NewEpoch));
        assert_eq!(
            decide(&State::default(), R, "aaaa", 200),
            full(FullReason::NoHistory)
        );
    }

    #[test]
    fn corruption_barrier() {
        let s = st();
        let r = Range {
            first_valid: 300,
            head: 900,
            corrupt_floor: 300,
        };
        assert_eq!(decide(&s, r, "bbbb", 200), full(FullReason::Corruption));
        assert_eq!(decide(&s, r, "bbbb", 300), cont());
    }

    #[test]
    fn save_load_and_next_epoch() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(State::load(dir.path()).expect("load"), None);
        let s = st();
        s.save(dir.path()).expect("save");
        assert_eq!(State::load(dir.path()).expect("load"), Some(s.clone()));
        let n = s.next_epoch("cccc", 1000);
        assert_eq!(n.epoch, 2);
        assert_eq!(n.history.len(), 1);
        assert_eq!(n.epoch_start(), 1001);
        assert!(n.past_replids.iter().any(|r| r == "bbbb"));
        std::fs::write(dir.path().join(STATE_FILE), b"{not json").expect("write");
        assert!(matches!(
            State::load(dir.path()),
            Err(LogError::BadState { .. })
        ));
    }
}
