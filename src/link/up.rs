//! The upstream (serving) side of one lane's link as a sans-IO state machine: the downstream's
//! Hello, the log's psync decision, log pieces and the current time in; frames to send out —
//! Continue or Full (resumed with SnapshotFrom), log frames cut exactly at replid switches,
//! NewEpoch after a stale epoch, heartbeats when due — and acknowledged offsets. No sockets,
//! files or clocks here; `serve::agent` is the async shell that does the I/O.

use std::time::Duration;

use super::proto::{is_snapshot_only, PROTOCOL_VERSION};
use super::{log_frame, CloseCode, Compression, Frame, PartialSnapshot};
use crate::log::{join_pieces, Chunk, HistoryEntry, PsyncDecision};

/// Records below this size are joined with their small neighbours into one frame.
pub const SMALL_PIECE: usize = 32 << 10;

/// How frames are built.
#[derive(Clone, Copy, Debug)]
pub struct UpOptions {
    pub heartbeat: Duration,
    pub compression: Compression,
    pub zstd_level: i32,
}

/// Why the link must end.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpError {
    /// Send `Error { code, message }` (if the link still can), then close with `code`.
    #[error("{message}")]
    Close { code: CloseCode, message: String },
}

fn protocol(message: String) -> UpError {
    UpError::Close {
        code: CloseCode::Protocol,
        message,
    }
}

/// What the downstream's Hello asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Opening {
    /// The stream ended before Hello.
    Closed,
    /// A snapshot refresh: the newest snapshot, then nothing.
    SnapshotOnly,
    /// The streaming link: decide with [`Up::psync_args`], then [`Up::on_decision`].
    Sync,
}

/// The snapshot a full sync sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotOffer {
    /// The current replid (announced in Full).
    pub replid: String,
    pub offset: u64,
    pub size: u64,
    pub rdb_version: u32,
}

/// One link's serving state.
#[derive(Debug)]
pub struct Up {
    opts: UpOptions,
    /// What the downstream holds: its replid (None: nothing) and next offset wanted.
    replid: Option<String>,
    pos: u64,
    partial: Option<PartialSnapshot>,
    /// Epoch and history index of the replid last announced to the downstream.
    epoch: u64,
    sent_idx: usize,
    ack: Acked,
    next_beat_us: u64,
    /// The link speaks protocol 3: it may send [`Frame::Commit`].
    commits: bool,
    /// A Commit asked for and not sent yet: the offset it must cover.
    commit_wanted: Option<u64>,
}

/// What a downstream agent has acknowledged: `received` is written to its log, `durable` is
/// fsynced there (`durable <= received`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Acked {
    pub received: u64,
    pub durable: u64,
}

/// What an upstream Redis session with `ack = "remote"` shares with the links serving its
/// stream: the lowest offsets they acknowledged, and where it asks them to commit now (the
/// offset a `REPLCONF GETACK` covers; each link then sends [`Frame::Commit`]).
#[derive(Clone, Debug)]
pub struct Remote {
    pub acks: tokio::sync::watch::Receiver<Acked>,
    pub commit: tokio::sync::watch::Sender<u64>,
}

impl Up {
    pub fn new(opts: UpOptions) -> Up {
        Up {
            opts,
            replid: None,
            pos: 0,
            partial: None,
            epoch: 0,
            sent_idx: 0,
            ack: Acked::default(),
            next_beat_us: 0,
            commits: false,
            commit_wanted: None,
        }
    }

    /// The link negotiated protocol 3 (ALPN `georelay/3`): it may ask for commits.
    pub fn with_commits(mut self, on: bool) -> Up {
        self.commits = on;
        self
    }

    /// The master asked for an ACK covering `upto`: a [`Frame::Commit`] goes out once the log
    /// frames that carry `upto` are sent ([`Up::poll_commit`]). Nothing on a link below
    /// protocol 3, or when the downstream already acknowledged `upto` as durable.
    pub fn want_commit(&mut self, upto: u64) {
        if self.commits && self.ack.durable < upto {
            self.commit_wanted = Some(self.commit_wanted.map_or(upto, |w| w.max(upto)));
        }
    }

    /// The Commit to send now: one is wanted, the downstream has not acknowledged it as
    /// durable yet, and every byte up to it has been sent.
    pub fn poll_commit(&mut self) -> Option<Frame> {
        let upto = self.commit_wanted?;
        if self.ack.durable >= upto {
            self.commit_wanted = None;
            return None;
        }
        if self.pos <= upto {
            return None;
        }
        self.commit_wanted = None;
        Some(Frame::Commit { upto })
    }

    /// The first frame of the stream (`None`: it ended cleanly before one).
    pub fn on_hello(&mut self, frame: Option<Frame>) -> Result<Opening, UpError> {
        match frame {
            None => Ok(Opening::Closed),
            Some(Frame::Hello {
                version,
                name,
                replid,
                next_offset,
                partial,
                ..
            }) => {
                if version != PROTOCOL_VERSION {
                    return Err(protocol(format!("protocol version {version} is not supported (this agent speaks {PROTOCOL_VERSION})")));
                }
                if is_snapshot_only(&name) {
                    return Ok(Opening::SnapshotOnly);
                }
                self.replid = replid;
                self.pos = next_offset;
                self.partial = partial;
                Ok(Opening::Sync)
            }
            Some(other) => Err(protocol(format!("expected Hello, got {}", other.name()))),
        }
    }

    /// The (replid, offset) to decide a partial sync for; `None` means a first full sync.
    pub fn psync_args(&self) -> Option<(&str, u64)> {
        self.replid.as_deref().map(|r| (r, self.pos))
    }

    /// The next offset to send.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// The log's decision (taken at `epoch` with `history`): the Continue frame to send, or
    /// `None` when a full sync is needed ([`Up::full_frames`] next).
    pub fn on_decision(
        &mut self,
        decision: &PsyncDecision,
        epoch: u64,
        history: &[HistoryEntry],
    ) -> Option<Frame> {
        self.epoch = epoch;
        match decision {
            PsyncDecision::Continue { replid } => {
                let asked = self.replid.as_deref().unwrap_or_default();
                self.sent_idx = history
                    .iter()
                    .position(|h| h.replid.eq_ignore_ascii_case(asked))
                    .unwrap_or(history.len().saturating_sub(1));
                Some(Frame::Continue {
                    replid: replid.clone(),
                    offset: self.pos,
                })
            }
            PsyncDecision::Full { .. } => None,
        }
    }

    /// Full (and SnapshotFrom when the downstream holds the start of this very transfer) for
    /// `snap`; returns the frames and the snapshot byte to send from.
    pub fn full_frames(&mut self, snap: &SnapshotOffer, reason: &str) -> (Vec<Frame>, u64) {
        let mut frames = vec![Frame::Full {
            replid: snap.replid.clone(),
            offset: snap.offset,
            rdb_version: snap.rdb_version,
            size: snap.size,
            reason: reason.to_string(),
        }];
        let from = self
            .partial
            .take()
            .filter(|p| {
                p.replid.eq_ignore_ascii_case(&snap.replid)
                    && p.offset == snap.offset
                    && p.size == snap.size
            })
            .map_or(0, |p| p.have);
        if from > 0 {
            frames.push(Frame::SnapshotFrom { from });
        }
        (frames, from)
    }

    /// The snapshot was sent: stream from its offset + 1 under the replid announced, at the
    /// newest entry of the `history` of `epoch`.
    pub fn snapshot_sent(&mut self, snap: &SnapshotOffer, epoch: u64, history: &[HistoryEntry]) {
        // A commit asked for in the old epoch means nothing in this one.
        self.commit_wanted = None;
        self.pos = snap.offset + 1;
        self.replid = Some(snap.replid.clone());
        self.epoch = epoch;
        self.sent_idx = history.len().saturating_sub(1);
    }

    /// Log frames for `pieces` (consecutive, starting at [`Up::position`]), with a
    /// ReplidSwitch before the byte where each switch in `history` starts.
    pub fn log_frames(
        &mut self,
        mut pieces: Vec<Chunk>,
        history: &[HistoryEntry],
    ) -> Result<Vec<Frame>, UpError> {
        // zstd wants one buffer (and compresses better across records); uncompressed, large
        // records go out as their own buffers and runs of small ones are joined (a frame per
        // small record costs more than the copy).
        if self.opts.compression != Compression::None && pieces.len() > 1 {
            pieces = vec![join_pieces(pieces)];
        } else if pieces.len() > 1 {
            pieces = coalesce_small(pieces);
        }
        let mut frames = Vec::with_capacity(pieces.len() + 1);
        let mut offset = self.pos;
        for piece in pieces {
            let mut data = piece.data;
            offset = piece.offset;
            while !data.is_empty() {
                // Switches that start at or before this byte go first.
                while let Some(h) = history.get(self.sent_idx + 1).filter(|h| h.start <= offset) {
                    frames.push(Frame::ReplidSwitch {
                        replid: h.replid.clone(),
                        start: h.start,
                    });
                    self.sent_idx += 1;
                }
                let cut = history
                    .get(self.sent_idx + 1)
                    .map(|h| ((h.start - offset) as usize).min(data.len()))
                    .unwrap_or(data.len());
                let part = data.split_to(cut);
                let n = part.len() as u64;
                let frame = log_frame(
                    offset,
                    piece.timestamp_us,
                    part,
                    self.opts.compression,
                    self.opts.zstd_level,
                )
                .map_err(|e| protocol(format!("compressing a log frame: {e}")))?;
                frames.push(frame);
                offset += n;
            }
        }
        self.pos = offset;
        Ok(frames)
    }

    /// The log no longer holds [`Up::position`] (`Gone`): with the log now at `epoch_now`
    /// and `history_now`, returns NewEpoch when the epoch changed under the link (the
    /// downstream's log is stale) and re-aims the next decision at the replid last announced.
    pub fn on_gone(
        &mut self,
        epoch_now: u64,
        history_now: &[HistoryEntry],
        history_then: &[HistoryEntry],
    ) -> Option<Frame> {
        self.replid = history_now
            .get(self.sent_idx)
            .filter(|_| epoch_now == self.epoch)
            .or(history_then.get(self.sent_idx))
            .map(|h| h.replid.clone())
            .or(self.replid.take());
        (epoch_now != self.epoch).then(|| Frame::NewEpoch {
            reason: "upstream started a new epoch (full resync from the origin)".into(),
        })
    }

    /// A frame from the downstream: only Acks are expected. Returns the highest offsets
    /// acknowledged so far (an Ack without `received`, from a first-version agent, counts
    /// as received up to its durable offset).
    pub fn on_frame(&mut self, frame: Frame) -> Result<Acked, UpError> {
        match frame {
            Frame::Ack { durable, received } => {
                self.ack.durable = self.ack.durable.max(durable);
                self.ack.received = self
                    .ack
                    .received
                    .max(received.unwrap_or(durable))
                    .max(self.ack.durable);
                Ok(self.ack)
            }
            other => Err(protocol(format!(
                "unexpected {} frame from a downstream agent",
                other.name()
            ))),
        }
    }

    /// When the next heartbeat is due (µs since the epoch; 0 = now).
    pub fn next_heartbeat_us(&self) -> u64 {
        self.next_beat_us
    }

    /// A heartbeat if one is due at `now_us` (carrying the log's `head` and its origin time);
    /// the next one is then due a heartbeat interval later.
    pub fn poll_heartbeat(&mut self, now_us: u64, head: u64, head_ts_us: u64) -> Option<Frame> {
        if now_us < self.next_beat_us {
            return None;
        }
        let every = u64::try_from(self.opts.heartbeat.as_micros()).unwrap_or(u64::MAX);
        self.next_beat_us = now_us.saturating_add(every.max(1));
        Some(Frame::Heartbeat {
            head,
            head_timestamp_us: head_ts_us,
            now_us,
        })
    }
}

/// Joins each run of consecutive pieces smaller than [`SMALL_PIECE`]; larger pieces stay as
/// they are (uncopied).
pub fn coalesce_small(pieces: Vec<Chunk>) -> Vec<Chunk> {
    let mut out = Vec::with_capacity(pieces.len());
    let mut run: Vec<Chunk> = Vec::new();
    for p in pieces {
        if p.data.len() < SMALL_PIECE {
            run.push(p);
            continue;
        }
        if !run.is_empty() {
            out.push(join_pieces(std::mem::take(&mut run)));
        }
        out.push(p);
    }
    if !run.is_empty() {
        out.push(join_pieces(run));
    }
    out
}

#[cfg(test)]
#[path = "up_tests.rs"]
mod tests;
