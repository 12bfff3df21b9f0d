//! The upstream Redis replica session as plain logic (no I/O, no clock of its own): what to do
//! with the PSYNC reply, how long to back off after a failure, and the streaming phase, which
//! takes stream bytes, durable offsets and the time, and returns actions (append, send an ACK,
//! ask for a group commit). The async shell in [`super::redis`] only does the I/O.
//!
//! ACK semantics (Redis's own since 7.2): `REPLCONF ACK <off>` is what was *received and
//! written to the log* (what `WAIT` counts); `FACK <off>` is what is *durable* (what `WAITAOF`
//! counts). With `ack = "remote"` both come from the slowest streaming downstream agent: ACK
//! is what it has received (written to its log), FACK what it has fsynced.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::handshake::PsyncReply;
pub use crate::link::up::Acked;
use crate::resp::{self, RespError, StreamScanner};

/// The periodic ACK Redis replicas send (`replicationCron`).
pub const ACK_PERIOD: Duration = Duration::from_secs(1);

/// What the shell must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Append these stream bytes to the log (they start at the previous head + 1).
    Append(Bytes),
    /// Write these bytes to the master.
    Send(Bytes),
    /// Ask the log for a group commit now (a GETACK waits on the durable offset).
    RequestSync,
    /// Ask the downstream agents to fsync up to this offset now (`ack = "remote"`: a GETACK
    /// waits on their durable offset).
    RequestRemoteSync(u64),
}

/// Where the ACK values come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckSource {
    /// `ack = "durable"`: received here / fsynced here.
    Local,
    /// `ack = "remote"`: the slowest streaming downstream agent's offsets: ACK what it has
    /// received, FACK what it has fsynced (a first-version agent reports only the latter, so
    /// its ACK is that too).
    Remote,
}

/// The streaming phase of one upstream session.
pub struct Streamer {
    scanner: StreamScanner,
    source: AckSource,
    /// Whether the master understands `FACK` (Redis 7.2+, Valkey).
    fack: bool,
    /// Last offset appended to the log.
    head: u64,
    /// Local durable offset.
    durable: u64,
    /// Slowest downstream agent's acknowledged offsets (ack = "remote").
    remote: Acked,
    /// Offset a GETACK asked for whose answer is not complete yet.
    pending: Option<u64>,
    last_sent: Option<(u64, Option<u64>)>,
    last_ack_at: Option<Instant>,
}

impl Streamer {
    pub fn new(head: u64, durable: u64, remote: Acked, source: AckSource, fack: bool) -> Self {
        Streamer {
            // A partial resync may start mid-command: the scanner only finds GETACKs, so it
            // resynchronises instead of ending the link.
            scanner: StreamScanner::tolerant(),
            source,
            fack,
            head,
            durable,
            remote,
            pending: None,
            last_sent: None,
            last_ack_at: None,
        }
    }

    /// (ACK, FACK) to report now.
    pub fn values(&self) -> (u64, Option<u64>) {
        match self.source {
            AckSource::Local => (self.head, self.fack.then_some(self.durable.min(self.head))),
            AckSource::Remote => (
                self.remote.received.min(self.head),
                self.fack
                    .then_some(self.remote.durable.min(self.remote.received).min(self.head)),
            ),
        }
    }

    pub fn head(&self) -> u64 {
        self.head
    }

    /// An ACK right now (after a `$EOF` RDB the master waits for it before streaming).
    pub fn ack_now(&mut self, now: Instant) -> Vec<Action> {
        vec![self.send(now)]
    }

    /// Stream bytes from the master.
    pub fn on_data(&mut self, chunk: Bytes, now: Instant) -> Result<Vec<Action>, RespError> {
        let scan = self.scanner.feed(&chunk)?;
        let start = self.head + 1;
        self.head += chunk.len() as u64;
        let mut out = vec![Action::Append(chunk)];
        if let Some(end) = scan.getack {
            // The GETACK's own bytes included: what was written before it is covered.
            let target = start + end as u64 - 1;
            self.pending = Some(self.pending.map_or(target, |p| p.max(target)));
            if self.fack && self.source == AckSource::Local && self.durable < target {
                out.push(Action::RequestSync);
            }
            if self.fack && self.source == AckSource::Remote && self.remote.durable < target {
                out.push(Action::RequestRemoteSync(target));
            }
            out.extend(self.answer_pending(now));
        }
        Ok(out)
    }

    /// The log's durable offset moved.
    pub fn on_durable(&mut self, durable: u64, now: Instant) -> Vec<Action> {
        self.durable = self.durable.max(durable);
        self.answer_pending(now)
    }

    /// The slowest downstream agent's offsets moved (ack = "remote").
    pub fn on_remote(&mut self, remote: Acked, now: Instant) -> Vec<Action> {
        self.remote.received = self.remote.received.max(remote.received);
        self.remote.durable = self.remote.durable.max(remote.durable);
        self.answer_pending(now)
    }

    /// The periodic ACK: once per [`ACK_PERIOD`], whatever happened.
    pub fn on_tick(&mut self, now: Instant) -> Vec<Action> {
        let due = self
            .last_ack_at
            .is_none_or(|t| now.saturating_duration_since(t) >= ACK_PERIOD);
        let mut out = self.answer_pending(now);
        if due && out.is_empty() {
            out.push(self.send(now));
        }
        out
    }

    /// When the next periodic ACK is due.
    pub fn next_tick(&self, now: Instant) -> Instant {
        self.last_ack_at.map_or(now, |t| t + ACK_PERIOD)
    }

    /// Answers a pending GETACK as far as the values allow: an ACK as soon as the asked offset
    /// is received (WAIT), another when it is durable too (WAITAOF).
    fn answer_pending(&mut self, now: Instant) -> Vec<Action> {
        let Some(target) = self.pending else {
            return Vec::new();
        };
        let (ack, fack) = self.values();
        if ack < target {
            return Vec::new();
        }
        let complete = fack.is_none_or(|f| f >= target);
        let redundant = if complete {
            self.pending = None;
            self.last_sent == Some((ack, fack))
        } else {
            // Only the ACK part is ready: send it once; the FACK follows when durable.
            self.last_sent.is_some_and(|(a, _)| a == ack)
        };
        if redundant {
            return Vec::new();
        }
        vec![self.send(now)]
    }

    fn send(&mut self, now: Instant) -> Action {
        let v = self.values();
        self.last_sent = Some(v);
        self.last_ack_at = Some(now);
        Action::Send(ack_command(v.0, v.1))
    }
}

/// `REPLCONF ACK <ack> [FACK <fack>]`.
pub fn ack_command(ack: u64, fack: Option<u64>) -> Bytes {
    let ack = ack.to_string();
    match fack {
        Some(f) => {
            let f = f.to_string();
            resp::command(&[b"REPLCONF", b"ACK", ack.as_bytes(), b"FACK", f.as_bytes()])
        }
        None => resp::command(&[b"REPLCONF", b"ACK", ack.as_bytes()]),
    }
}

/// What a PSYNC reply means for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PsyncPlan {
    /// Receive the RDB that follows and start a new epoch; `reason` labels the metric.
    Full {
        replid: String,
        offset: u64,
        reason: &'static str,
    },
    /// The stream continues; `switch` is a new replid to record at head + 1.
    Continue { switch: Option<String> },
}

/// Decides from the log's position (`(replid, head)`, None when empty) and the reply.
pub fn plan_psync(position: Option<(&str, u64)>, reply: PsyncReply) -> PsyncPlan {
    match reply {
        PsyncReply::Full { replid, offset } => PsyncPlan::Full {
            replid,
            offset,
            reason: if position.is_none() {
                "first_sync"
            } else {
                "new_epoch"
            },
        },
        PsyncReply::Continue { replid } => PsyncPlan::Continue {
            switch: match (replid, position) {
                (Some(new), Some((old, _))) if !new.eq_ignore_ascii_case(old) => Some(new),
                _ => None,
            },
        },
    }
}

/// Why a session ended, as far as the retry policy cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Auth,
    Log,
    /// `-LOADING`, `-NOMASTERLINK`, `-MASTERDOWN`: the master is not ready.
    NotReady,
    Other,
}

/// How far a session got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Handshake,
    FullSync,
    Streaming,
}

/// Backoff counters across sessions.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    pub failures: u32,
    /// Consecutive full syncs that failed before streaming: each one forked the origin.
    pub failed_full_syncs: u32,
}

impl Retry {
    /// Records how a session ended; returns the delay before the next one (before jitter).
    pub fn after(&mut self, phase: Phase, failure: Failure) -> Duration {
        match phase {
            Phase::Streaming => *self = Retry::default(),
            Phase::FullSync => self.failed_full_syncs = self.failed_full_syncs.saturating_add(1),
            Phase::Handshake => {}
        }
        let base = match failure {
            Failure::Auth => Duration::from_secs(10),
            Failure::Log => Duration::from_secs(5),
            Failure::NotReady => Duration::from_secs(1),
            Failure::Other => {
                self.failures = self.failures.saturating_add(1);
                Duration::from_millis((100u64 << self.failures.min(6)).min(5_000))
            }
        };
        if self.failed_full_syncs > 0 && phase == Phase::FullSync {
            base.max(self.full_sync_wait())
        } else {
            base
        }
    }

    /// The wait after repeated failed full syncs: 5 s, 20 s, 80 s, then 300 s.
    pub fn full_sync_wait(&self) -> Duration {
        let n = self.failed_full_syncs.saturating_sub(1).min(4);
        Duration::from_secs((5u64 << (2 * n)).min(300))
    }
}

#[cfg(test)]
#[path = "replica_tests.rs"]
mod tests;
