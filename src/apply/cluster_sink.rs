//! Apply into a cluster target (`target.cluster`): the [`Sink`] that writes full-sync keys
//! and stream batches as per-slot transactions, each ending with that slot's checkpoint
//! (see [`super::slots`] for the rule), moves the lane floor after each batch, and applies
//! keyless commands as barriers on every master.

use bytes::Bytes;

use super::checkpoint::{self, replid_at, Checkpoint};
use super::cluster::{ClusterTarget, Committed, SlotTxn};
use super::conn::{self, Dialer};
use super::keys::Keyless;
use super::rewrite::TargetCaps;
use super::run::{keyspace_keys, probe_caps, ApplyCtx};
use super::sink::{Pending, Sink};
use super::slots::{plan, slot_key, Step};
use super::stream::Batch;
use super::ApplyError;
use crate::cluster::{key_slot, SLOTS};
use crate::config::OnUnknown;
use crate::resp::Frame;

pub(super) struct ClusterSink<'a> {
    ctx: &'a ApplyCtx,
    rt: &'a tokio::runtime::Runtime,
    pub progressed: bool,
    t: ClusterTarget,
    /// `node:lane`, in every checkpoint key of the lane.
    id: String,
    floor_key: Bytes,
    floor_slot: u16,
    /// The floor as last read or written.
    floor: u64,
    /// Each slot's checkpoint as read at the start (0: none), raised as batches commit.
    applied: Vec<u64>,
    /// When the last "unreplicated" warning was logged.
    warned: Option<std::time::Instant>,
}

/// The shortest interval between two "unreplicated" warnings of a lane.
const WARN_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

impl<'a> ClusterSink<'a> {
    pub fn connect(
        ctx: &'a ApplyCtx,
        dialer: &Dialer,
        seeds: &[String],
        rt: &'a tokio::runtime::Runtime,
    ) -> Result<ClusterSink<'a>, ApplyError> {
        let t = ClusterTarget::connect(dialer, seeds)?;
        let id = format!("{}:{}", ctx.node, ctx.lane);
        let floor_key = Bytes::from(checkpoint::key(&id));
        ctx.view.update(|r| r.addr = t.addr());
        Ok(ClusterSink {
            ctx,
            rt,
            progressed: false,
            floor_slot: key_slot(&floor_key),
            floor_key,
            t,
            id,
            floor: 0,
            applied: vec![0; usize::from(SLOTS)],
            warned: None,
        })
    }

    /// Moves the lane floor: once a replica of every master written since the last move
    /// has those writes (see [`ClusterTarget::settle`]), and replicated in its turn, so a
    /// master lost in a failover can take neither applied commands nor a floor move with it.
    fn set_floor(&mut self, ckpt: &Checkpoint) -> Result<(), ApplyError> {
        self.settle()?;
        let value = ckpt.encode();
        let args: &[&[u8]] = &[b"SET", &self.floor_key, value.as_bytes()];
        if let Frame::Error(e) = self.t.call_slot(self.floor_slot, args)? {
            return Err(conn::refusal(&e, args));
        }
        self.settle()?;
        if let Checkpoint::Stream { offset, .. } = ckpt {
            self.floor = *offset;
        }
        Ok(())
    }

    /// [`ClusterTarget::settle`], counting and (at most every 10 s) logging masters whose
    /// replicas did not acknowledge in time: their writes stand, unreplicated.
    fn settle(&mut self) -> Result<(), ApplyError> {
        let short = self.t.settle()?;
        if short.is_empty() {
            return Ok(());
        }
        self.count_error("unreplicated");
        let now = std::time::Instant::now();
        if self
            .warned
            .is_none_or(|w| now.duration_since(w) >= WARN_EVERY)
        {
            self.warned = Some(now);
            tracing::warn!(lane = %self.ctx.lane, masters = %short.join(","), "apply: no replica of these target masters acknowledged the applied writes within {} ms (WAIT 1); going on — if such a master is lost before its replica catches up, those writes are lost with it", super::cluster_wait::WAIT_MS);
        }
        Ok(())
    }

    /// A keyless command on every master (or one), as a barrier.
    fn barrier(&mut self, kind: Keyless, cmd: &[Bytes], at: u64) -> Result<(), ApplyError> {
        let flush = cmd.first().is_some_and(|n| {
            n.eq_ignore_ascii_case(b"FLUSHALL") || n.eq_ignore_ascii_case(b"FLUSHDB")
        });
        if flush {
            if let Some(slots) = self.lane_slots()? {
                // A FLUSHALL/FLUSHDB on one origin shard emptied that shard's slots only.
                let n = self.t.delete_in(&slots)?;
                tracing::info!(lane = %self.ctx.lane, offset = at, keys = n, "apply: {} of one origin shard: emptied this lane's slots in the target", cmd_name(cmd));
                return Ok(());
            }
        }
        let replies = match kind {
            Keyless::AllMasters => self.t.on_masters(cmd)?,
            Keyless::OneMaster => {
                let args: Vec<&[u8]> = cmd.iter().map(|a| a.as_ref()).collect();
                vec![(String::new(), self.t.call_slot(self.floor_slot, &args)?)]
            }
        };
        let name = cmd_name(cmd);
        for (addr, f) in replies {
            let Frame::Error(e) = f else { continue };
            match super::txn::classify(0, &e) {
                super::txn::Refusal::Pause { reason, message } => {
                    return Err(ApplyError::Refused {
                        reason,
                        message: format!("{addr}: {name}: {message}"),
                    })
                }
                _ if e.starts_with("ERR unknown command") => {
                    if self.ctx.target.on_unknown == OnUnknown::Stop {
                        return Err(ApplyError::Unknown {
                            command: name,
                            offset: at,
                            message: e,
                        });
                    }
                    self.count_error("unknown_command");
                }
                _ => {
                    // A replayed barrier (FUNCTION DELETE of a deleted library…).
                    self.count_error("command");
                    tracing::warn!(lane = %self.ctx.lane, offset = at, "apply: {name} on {addr} failed in the target: {e}");
                }
            }
        }
        Ok(())
    }

    /// The slots of this lane when it is one lane of several (a cluster origin), as the
    /// origin's slot map has them now; `None` for a standalone origin (one lane owns all).
    fn lane_slots(&self) -> Result<Option<Vec<u16>>, ApplyError> {
        let Some(map) = &self.ctx.slots else {
            return Ok(None);
        };
        let slots: Option<Vec<u16>> = map.borrow().as_ref().and_then(|m| {
            m.lane(&self.ctx.lane)
                .map(|l| l.ranges.iter().flat_map(|r| r.first..=r.last).collect())
        });
        match slots {
            Some(s) => Ok(Some(s)),
            None => Err(ApplyError::Refused {
                reason: "busy",
                message: format!("lane {} is not in the slot map yet", self.ctx.lane),
            }),
        }
    }

    fn count_error(&self, reason: &str) {
        self.ctx.metrics.errors.with_label_values(&[reason]).inc();
    }

    /// Commits `txns`; a refused command stops the lane, or with `on_unknown = "skip"` is
    /// dropped and its transaction committed without it.
    fn commit(&mut self, mut txns: Vec<SlotTxn>) -> Result<(), ApplyError> {
        loop {
            let Committed { errors, unknown } = self.t.commit(&txns)?;
            for (i, j, e) in errors {
                self.count_error("command");
                let (cmd, (offset, what)) = describe(&txns[i], j);
                tracing::warn!(lane = %self.ctx.lane, offset, "apply: {cmd}{what} failed in the target: {e}");
            }
            if unknown.is_empty() {
                return Ok(());
            }
            let mut again = Vec::new();
            for u in unknown {
                let mut t = txns[u.txn].clone();
                let (cmd, (offset, what)) = describe(&t, u.index);
                if self.ctx.target.on_unknown == OnUnknown::Stop || u.index >= t.cmds.len() {
                    return Err(ApplyError::Unknown {
                        command: format!("{cmd}{what}"),
                        offset,
                        message: u.message,
                    });
                }
                self.count_error("unknown_command");
                tracing::warn!(lane = %self.ctx.lane, offset, "apply: skipping {cmd}{what}, which the target refuses: {} (target.on_unknown = \"skip\")", u.message);
                t.cmds.remove(u.index);
                t.from.remove(u.index);
                again.push(t);
            }
            txns = again;
        }
    }
}

fn cmd_name(cmd: &[Bytes]) -> String {
    cmd.first()
        .map(|a| String::from_utf8_lossy(a).to_ascii_uppercase())
        .unwrap_or_default()
}

fn describe(t: &SlotTxn, i: usize) -> (String, (u64, String)) {
    match (t.cmds.get(i), t.from.get(i)) {
        (Some(c), Some(f)) => (cmd_name(c), f.clone()),
        _ => ("SET of the checkpoint".into(), (0, String::new())),
    }
}

impl Sink for ClusterSink<'_> {
    fn ctx(&self) -> &ApplyCtx {
        self.ctx
    }

    fn rt(&self) -> &tokio::runtime::Runtime {
        self.rt
    }

    fn mark_progress(&mut self) {
        self.progressed = true;
    }

    fn caps(&mut self, source_rdb: u16) -> Result<TargetCaps, ApplyError> {
        let probe = [self.floor_key.as_ref(), b":probe"].concat();
        let slot = key_slot(&probe);
        let t = &mut self.t;
        probe_caps(|args| t.call_slot(slot, args), &probe, source_rdb)
    }

    fn flush_target(&mut self, marker: &Checkpoint) -> Result<(), ApplyError> {
        if let Some(slots) = self.lane_slots()? {
            // One lane of several: empty this lane's slots only; the others hold other lanes'
            // data.
            let n = self.t.delete_in(&slots)?;
            tracing::info!(lane = %self.ctx.lane, keys = n, slots = slots.len(), "apply: emptied this lane's slots in the target");
        } else {
            self.barrier(Keyless::AllMasters, &[Bytes::from_static(b"FLUSHALL")], 0)?;
        }
        self.applied.iter_mut().for_each(|a| *a = 0);
        self.floor = 0;
        self.set_floor(marker)
    }

    fn put(&mut self, p: &Pending, ckpt: &Checkpoint) -> Result<(), ApplyError> {
        // A key's commands form one transaction in its slot (a replay after a crash
        // rewrites the same key: RESTORE … REPLACE, or DEL and rebuild).
        let mut by_slot: std::collections::BTreeMap<u16, SlotTxn> = Default::default();
        for (i, c) in p.commands.iter().enumerate() {
            if c.first().is_some_and(|n| n.eq_ignore_ascii_case(b"SELECT")) {
                continue;
            }
            let what = p
                .owner
                .get(i)
                .map(|o| format!(" (for {o} of the snapshot)"))
                .unwrap_or_default();
            match p.keys.get(i).cloned().flatten() {
                None => {
                    let route = super::keys::route(c).map_err(|m| ApplyError::Stream {
                        offset: ckpt.offset(),
                        message: m,
                    })?;
                    if let super::keys::Routed::Keyless(kind, cmd) = route {
                        self.barrier(kind, &cmd, ckpt.offset())?;
                    }
                }
                Some(key) => {
                    let slot = key_slot(&key);
                    let t = by_slot.entry(slot).or_insert_with(|| SlotTxn {
                        slot,
                        cmds: Vec::new(),
                        from: Vec::new(),
                        ckpt: None,
                    });
                    t.cmds.push(c.clone());
                    t.from.push((ckpt.offset(), what));
                }
            }
        }
        self.commit(by_slot.into_values().collect())?;
        self.set_floor(ckpt)
    }

    fn apply(&mut self, batch: Batch) -> Result<(), ApplyError> {
        let ctx = self.ctx;
        let history = ctx.log.history().1;
        let floor = self.floor;
        let applied = &self.applied;
        let steps = plan(
            &batch.ops,
            batch.end,
            |s| applied[usize::from(s)].max(floor),
            floor,
        )
        .map_err(|e| ApplyError::CrossSlot {
            offset: e.offset,
            message: e.message,
        })?;
        // Commands applied (not skipped as already in the target; a split one per slot).
        let mut applied_now = 0u64;
        for step in steps {
            let (end, ckpt) = match step {
                Step::Keyless { kind, cmd, end } => {
                    self.barrier(kind, &cmd, end)?;
                    applied_now += 1;
                    (end, None)
                }
                Step::Slots { groups, end } => {
                    let ckpt = Checkpoint::Stream {
                        replid: replid_at(&history, end + 1).unwrap_or("?").to_string(),
                        offset: end,
                    };
                    let value = Bytes::from(ckpt.encode());
                    let slots: Vec<u16> = groups.keys().copied().collect();
                    applied_now += groups.values().map(|g| g.len() as u64).sum::<u64>();
                    let txns = groups
                        .into_iter()
                        .map(|(slot, cmds)| SlotTxn {
                            slot,
                            from: cmds.iter().map(|(_, e)| (*e, String::new())).collect(),
                            cmds: cmds.into_iter().map(|(c, _)| c).collect(),
                            ckpt: Some((slot_key(&self.id, slot), value.clone())),
                        })
                        .collect();
                    self.commit(txns)?;
                    for s in slots {
                        self.applied[usize::from(s)] = end;
                    }
                    (end, Some(ckpt))
                }
            };
            let ckpt = ckpt.unwrap_or_else(|| Checkpoint::Stream {
                replid: replid_at(&history, end + 1).unwrap_or("?").to_string(),
                offset: end,
            });
            self.set_floor(&ckpt)?;
        }
        ctx.metrics
            .commands
            .with_label_values(&[&ctx.lane])
            .inc_by(applied_now);
        ctx.set_applied(batch.end);
        ctx.view.update(|r| {
            r.state = "streaming".into();
            r.error.clear();
        });
        self.progressed = true;
        Ok(())
    }

    fn checkpoint(&mut self) -> Result<Option<Checkpoint>, ApplyError> {
        let key = self.floor_key.clone();
        let f = self.t.call_slot(self.floor_slot, &[b"GET", &key])?;
        let c = match f {
            Frame::Null => None,
            Frame::Error(e) => return Err(conn::refusal(&e, &[b"GET"])),
            f => match conn::text(&f) {
                Some(v) => Some(Checkpoint::parse(&v)?),
                None => return Err(ApplyError::BadCheckpoint(format!("{f:?}"))),
            },
        };
        if let Some(Checkpoint::Stream { offset, .. }) = &c {
            self.floor = *offset;
        }
        // Every slot's checkpoint: what a resumed stream skips.
        let keys: Vec<(u16, Bytes)> = (0..SLOTS).map(|s| (s, slot_key(&self.id, s))).collect();
        let values = self.t.get_many(&keys)?;
        for (s, v) in values.iter().enumerate() {
            self.applied[s] = match v {
                Frame::Null => 0,
                f => match conn::text(f) {
                    Some(t) => Checkpoint::parse(&t)?.offset(),
                    None => return Err(ApplyError::BadCheckpoint(format!("{f:?}"))),
                },
            };
        }
        Ok(c)
    }

    fn data_keys(&mut self, has_ckpt: bool) -> Result<u64, ApplyError> {
        if let Some(slots) = self.lane_slots()? {
            // One lane of several: only this lane's slots count (the others fill the rest).
            return self.t.data_keys_in(&slots);
        }
        let mut keys = 0;
        for (addr, f) in self
            .t
            .on_masters(&[Bytes::from_static(b"INFO"), Bytes::from_static(b"keyspace")])?
        {
            if let Frame::Error(e) = &f {
                return Err(conn::refusal(&format!("{addr}: {e}"), &[b"INFO"]));
            }
            keys += keyspace_keys(&f);
        }
        let ours = self.applied.iter().filter(|a| **a > 0).count() as u64 + has_ckpt as u64;
        Ok(keys.saturating_sub(ours))
    }

    fn resume(&mut self, applied: u64) -> Result<(), ApplyError> {
        self.floor = applied;
        Ok(())
    }
}
