//! The downstream side of one lane's link as a sans-IO state machine: frames from the upstream
//! agent (and the current time) in, [`DownAction`]s out — append to the log, write or finish a
//! snapshot, switch replid, acknowledge — with every offset checked. No sockets, files or
//! clocks here; `upstream::agent` is the async shell that does the I/O.

use bytes::Bytes;

use super::{log_payload, Frame, PartialSnapshot, MAX_FRAME, PROTOCOL_VERSION, SNAPSHOT_ONLY};

/// A snapshot transfer being received; kept across links so it can be resumed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transfer {
    pub replid: String,
    pub offset: u64,
    pub size: u64,
    /// Bytes received (and handed to the shell to write) so far.
    pub have: u64,
    pub reason: String,
}

/// What the shell must do, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DownAction {
    /// Send this frame upstream (an Ack).
    Send(Frame),
    /// Start a new snapshot file for this transfer (dropping any held one).
    BeginSnapshot(Transfer),
    /// The held snapshot file continues at byte `from` (a resumed transfer).
    ResumeSnapshot { from: u64 },
    /// Write these bytes at the end of the snapshot file.
    SnapshotData(Bytes),
    /// Verify and store the snapshot: as a new epoch (`refresh = false`) or as a refreshed
    /// snapshot of the current one. `first_sync` tells the full-sync metric's reason.
    FinishSnapshot {
        transfer: Transfer,
        refresh: bool,
        first_sync: bool,
    },
    /// The held partial snapshot is useless now: delete it.
    DropSnapshot,
    /// Append stream bytes (already trimmed to start exactly at the log's head + 1).
    Append { data: Bytes, timestamp_us: u64 },
    /// Record a replid switch at the log's head + 1.
    SwitchReplid { replid: String, start: u64 },
    /// The link is in sync: partially (Continue) or after a full sync.
    Online { full: bool },
    /// The upstream's head and its origin time, as heard (for lag).
    Heard { head: u64, head_timestamp_us: u64 },
    /// The upstream announced a new epoch; a full sync follows.
    NewEpoch { reason: String },
    /// Fsync the log now (a [`Frame::Commit`]: the upstream's master waits for it); the Ack
    /// follows from [`Down::ack`] once the durable offset moves.
    Commit { upto: u64 },
}

/// Why the link must end.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DownError {
    /// The upstream broke the protocol; close with [`super::CloseCode::Protocol`].
    #[error("{0}")]
    Protocol(String),
    /// The upstream refused us (an Error frame) or has nothing newer to give.
    #[error("{0}")]
    Refused(String),
}

fn protocol(msg: String) -> DownError {
    DownError::Protocol(msg)
}

/// What this link is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The streaming link.
    Stream,
    /// A snapshot refresh: only a snapshot newer than offset `ours` is wanted.
    SnapshotOnly { ours: Option<u64> },
}

/// One link's downstream state.
#[derive(Clone, Debug)]
pub struct Down {
    mode: Mode,
    /// (current replid, next offset wanted = head + 1); `None` before the first epoch.
    pos: Option<(String, u64)>,
    transfer: Option<Transfer>,
    /// Set by a Full naming the held transfer: a SnapshotFrom (resume) or the first chunk
    /// (start over) comes next.
    may_resume: bool,
    /// Set between Full and SnapshotEnd.
    receiving: bool,
    last_heard_us: u64,
    /// The upstream speaks protocol 2: Acks carry the received offset too.
    received_acks: bool,
    /// The last Ack sent, as (durable, received).
    last_ack: Option<(u64, Option<u64>)>,
    /// In sync with the upstream's current epoch (after Continue or a whole snapshot): only
    /// then do this log's offsets mean anything to it.
    online: bool,
}

impl Down {
    /// A link for a log at `pos` ((current replid, head) as `Log::current` gives it), holding
    /// `transfer` from an earlier link if one was cut short.
    pub fn new(mode: Mode, pos: Option<(String, u64)>, transfer: Option<Transfer>) -> Down {
        Down {
            mode,
            pos: pos.map(|(r, head)| (r, head + 1)),
            transfer,
            may_resume: false,
            receiving: false,
            last_heard_us: 0,
            received_acks: false,
            last_ack: None,
            online: false,
        }
    }

    /// Acks carry the received offset too (the link negotiated ALPN `georelay/2`).
    pub fn with_received_acks(mut self, on: bool) -> Down {
        self.received_acks = on;
        self
    }

    /// The Hello that opens the link (`lane = None`: the standalone stream).
    pub fn hello(&self, name: &str, lane: Option<&str>) -> Frame {
        match self.mode {
            Mode::SnapshotOnly { .. } => Frame::Hello {
                version: PROTOCOL_VERSION,
                name: format!("{name}{SNAPSHOT_ONLY}"),
                replid: None,
                next_offset: 0,
                partial: None,
                lane: lane.map(str::to_string),
            },
            Mode::Stream => Frame::Hello {
                version: PROTOCOL_VERSION,
                name: name.to_string(),
                replid: self.pos.as_ref().map(|p| p.0.clone()),
                next_offset: self.pos.as_ref().map_or(0, |p| p.1),
                partial: self.transfer.as_ref().map(|t| PartialSnapshot {
                    replid: t.replid.clone(),
                    offset: t.offset,
                    size: t.size,
                    have: t.have,
                }),
                lane: lane.map(str::to_string),
            },
        }
    }

    /// The next offset the log wants (head + 1), if it has an epoch.
    pub fn next_offset(&self) -> Option<u64> {
        self.pos.as_ref().map(|p| p.1)
    }

    /// The transfer held when the link ends (offered again by the next link's Hello).
    pub fn into_transfer(self) -> Option<Transfer> {
        self.transfer
    }

    /// µs time of the last frame heard from the upstream.
    pub fn last_heard_us(&self) -> u64 {
        self.last_heard_us
    }

    /// The log's head (`received`: written, not yet fsynced) or durable offset moved: the Ack
    /// to send, if it says something the last one did not.
    /// Nothing before the link is in sync: a log of an older epoch has offsets that mean
    /// nothing upstream.
    pub fn ack(&mut self, received: u64, durable: u64) -> Option<DownAction> {
        if !self.online {
            return None;
        }
        // Never below durable, never backwards.
        let last = self.last_ack.and_then(|a| a.1).unwrap_or(0);
        let received = self
            .received_acks
            .then_some(received.max(durable).max(last));
        if self.last_ack == Some((durable, received)) {
            return None;
        }
        self.last_ack = Some((durable, received));
        Some(DownAction::Send(Frame::Ack { durable, received }))
    }

    /// One frame from the upstream at time `now_us`; the actions go to `out`.
    pub fn on_frame(
        &mut self,
        frame: Frame,
        now_us: u64,
        durable: u64,
        out: &mut Vec<DownAction>,
    ) -> Result<(), DownError> {
        self.last_heard_us = now_us;
        if let Mode::SnapshotOnly { ours } = self.mode {
            return self.on_refresh_frame(frame, ours, out);
        }
        match frame {
            Frame::Continue { replid, offset } => {
                let expect = self.next_offset().unwrap_or(0);
                if offset != expect {
                    return Err(protocol(format!(
                        "Continue at {offset}, but this log needs {expect}"
                    )));
                }
                if self.transfer.take().is_some() {
                    out.push(DownAction::DropSnapshot);
                }
                if let Some(p) = self.pos.as_mut() {
                    p.0 = replid;
                }
                out.push(DownAction::Online { full: false });
                // The first Ack of a link always goes out (the upstream waits for none, but
                // it tells where this log stands).
                self.last_ack = None;
                self.online = true;
                let head = self.next_offset().map_or(0, |n| n.saturating_sub(1));
                out.extend(self.ack(head, durable));
            }
            Frame::NewEpoch { reason } => {
                self.online = false;
                out.push(DownAction::NewEpoch { reason })
            }
            Frame::Full {
                replid,
                offset,
                size,
                reason,
                ..
            } => self.on_full(replid, offset, size, reason, out),
            Frame::SnapshotFrom { from } => {
                let have = self.transfer.as_ref().map(|t| t.have);
                if !self.may_resume || have != Some(from) {
                    if self.transfer.take().is_some() {
                        out.push(DownAction::DropSnapshot);
                    }
                    return Err(protocol(format!(
                        "snapshot resumed at byte {from}, but this agent holds {have:?} of it"
                    )));
                }
                self.may_resume = false;
                out.push(DownAction::ResumeSnapshot { from });
            }
            Frame::SnapshotChunk { data } => self.on_chunk(data, out)?,
            Frame::SnapshotEnd => {
                let transfer = self.end_snapshot()?;
                self.pos = Some((transfer.replid.clone(), transfer.offset + 1));
                self.online = true;
                let first_sync = transfer.reason == "first_sync";
                out.push(DownAction::FinishSnapshot {
                    transfer,
                    refresh: false,
                    first_sync,
                });
                out.push(DownAction::Online { full: true });
            }
            Frame::Log {
                offset,
                timestamp_us,
                compressed,
                raw_len,
                data,
            } => {
                let payload = log_payload(compressed, raw_len, &data, MAX_FRAME)
                    .map_err(|e| protocol(format!("log frame at {offset}: {e}")))?;
                self.on_log(offset, timestamp_us, payload, out)?;
            }
            Frame::Heartbeat {
                head,
                head_timestamp_us,
                ..
            } => out.push(DownAction::Heard {
                head,
                head_timestamp_us,
            }),
            Frame::Commit { upto } => {
                // Before the link is in sync the offsets mean nothing here; what is durable
                // already was (or is being) acknowledged.
                if self.online && durable < upto {
                    out.push(DownAction::Commit { upto });
                }
            }
            Frame::ReplidSwitch { replid, start } => {
                let Some(p) = self.pos.as_mut().filter(|p| p.1 == start) else {
                    let next = self.next_offset().unwrap_or(0);
                    return Err(protocol(format!(
                        "replid switch at {start}, but this log is at {next}"
                    )));
                };
                p.0 = replid.clone();
                out.push(DownAction::SwitchReplid { replid, start });
            }
            other => return Err(unexpected(other, "from upstream agent")),
        }
        Ok(())
    }

    fn on_full(
        &mut self,
        replid: String,
        offset: u64,
        size: u64,
        reason: String,
        out: &mut Vec<DownAction>,
    ) {
        self.receiving = true;
        self.online = false;
        self.may_resume = self.transfer.as_ref().is_some_and(|t| {
            t.replid.eq_ignore_ascii_case(&replid) && t.offset == offset && t.size == size
        });
        if !self.may_resume {
            let t = Transfer {
                replid,
                offset,
                size,
                have: 0,
                reason,
            };
            self.transfer = Some(t.clone());
            out.push(DownAction::BeginSnapshot(t));
        }
    }

    fn on_chunk(&mut self, data: Bytes, out: &mut Vec<DownAction>) -> Result<(), DownError> {
        if std::mem::take(&mut self.may_resume) {
            // The upstream sends the whole snapshot again: start over.
            if let Some(t) = self.transfer.as_mut() {
                t.have = 0;
                out.push(DownAction::BeginSnapshot(t.clone()));
            }
        }
        let Some(t) = self.transfer.as_mut().filter(|_| self.receiving) else {
            return Err(protocol("SnapshotChunk without Full".into()));
        };
        if t.have + data.len() as u64 > t.size {
            self.transfer = None;
            out.push(DownAction::DropSnapshot);
            return Err(protocol("snapshot larger than announced".into()));
        }
        t.have += data.len() as u64;
        out.push(DownAction::SnapshotData(data));
        Ok(())
    }

    fn end_snapshot(&mut self) -> Result<Transfer, DownError> {
        let t = self
            .transfer
            .take()
            .filter(|_| self.receiving)
            .ok_or_else(|| protocol("SnapshotEnd without Full".into()))?;
        self.receiving = false;
        self.may_resume = false;
        if t.have != t.size {
            return Err(protocol(format!(
                "snapshot ended at {} of {} bytes",
                t.have, t.size
            )));
        }
        Ok(t)
    }

    fn on_log(
        &mut self,
        offset: u64,
        timestamp_us: u64,
        mut payload: Bytes,
        out: &mut Vec<DownAction>,
    ) -> Result<(), DownError> {
        let Some(p) = self.pos.as_mut().filter(|_| !self.receiving) else {
            return Err(protocol("log frame before any snapshot".into()));
        };
        let next = p.1;
        let end = offset + payload.len() as u64;
        if offset > next {
            return Err(protocol(format!(
                "log frame at {offset} leaves a gap after {next}"
            )));
        }
        if end <= next {
            return Ok(());
        }
        let data = payload.split_off((next - offset) as usize);
        p.1 = end;
        out.push(DownAction::Append { data, timestamp_us });
        out.push(DownAction::Heard {
            head: end - 1,
            head_timestamp_us: timestamp_us,
        });
        Ok(())
    }

    fn on_refresh_frame(
        &mut self,
        frame: Frame,
        ours: Option<u64>,
        out: &mut Vec<DownAction>,
    ) -> Result<(), DownError> {
        match frame {
            Frame::Heartbeat { .. } => {}
            Frame::Full {
                replid,
                offset,
                size,
                reason,
                ..
            } => {
                if ours.is_some_and(|o| o >= offset) {
                    return Err(DownError::Refused(format!(
                        "the upstream agent's newest snapshot (offset {offset}) is not newer than ours"
                    )));
                }
                self.transfer = None;
                self.on_full(replid, offset, size, reason, out);
            }
            Frame::SnapshotChunk { data } => self.on_chunk(data, out)?,
            Frame::SnapshotEnd => {
                let transfer = self.end_snapshot()?;
                out.push(DownAction::FinishSnapshot {
                    transfer,
                    refresh: true,
                    first_sync: false,
                });
            }
            other => return Err(unexpected(other, "while fetching a snapshot")),
        }
        Ok(())
    }
}

/// An Error frame is the upstream's refusal; any other frame out of place is a protocol error.
fn unexpected(frame: Frame, during: &str) -> DownError {
    match frame {
        Frame::Error { code, message } => {
            DownError::Refused(format!("upstream agent error {code}: {message}"))
        }
        other => protocol(format!("unexpected {} frame {during}", other.name())),
    }
}

#[cfg(test)]
#[path = "down_tests.rs"]
mod tests;
