//! The full sync into the target: the log's snapshot decoded key by key and written in
//! batches, each batch one transaction that also moves the loading marker (how many items
//! are in), so a crash resumes the same snapshot where it stopped; the last one writes the
//! stream checkpoint at the snapshot's offset.

use std::io::Read;

use bytes::Bytes;

use super::checkpoint::{replid_at, Checkpoint, SnapshotId};
use super::rewrite::{key_commands, TargetCaps};
use super::run::Session;
use super::sink::{Pending, Sink};
use super::txn::{Refusal, Verdict};
use super::ApplyError;
use crate::log::SnapshotMeta;
use crate::rdb::objects::{dump_version_for, Item, ObjectError, RdbDecoder};

const BATCH_COMMANDS: usize = 512;
const BATCH_BYTES: usize = 4 << 20;
const READ_CHUNK: usize = 1 << 20;

/// Loads `meta` (skipping its first `skip` items; flushing first if `flush`), returns the
/// first stream offset to apply.
pub(super) fn load(
    s: &mut impl Sink,
    meta: &SnapshotMeta,
    skip: u64,
    flush: bool,
) -> Result<u64, ApplyError> {
    let ctx = s.ctx().clone();
    let ctx = &ctx;
    let snap_err = |m: String| ApplyError::Snapshot {
        path: meta.path.display().to_string(),
        message: m,
    };
    let mut file = std::fs::File::open(&meta.path).map_err(|e| snap_err(e.to_string()))?;
    let id = SnapshotId {
        replid: meta.replid.clone(),
        offset: meta.offset,
        size: meta.size,
    };
    let marker = |done: u64| Checkpoint::Loading {
        snapshot: id.clone(),
        keys_done: done,
    };
    if flush {
        tracing::warn!(lane = %ctx.lane, "apply: flushing the target for a full sync (target.allow_flush = true)");
        s.flush_target(&marker(0))?;
    }
    tracing::info!(lane = %ctx.lane, offset = meta.offset, bytes = meta.size, skip, "apply: full sync from the snapshot");
    ctx.view.update(|r| r.state = "full_sync".into());
    ctx.metrics.full_syncs.with_label_values(&[&ctx.lane]).inc();
    let mut dec = RdbDecoder::new();
    let mut caps: Option<TargetCaps> = None;
    let mut index: u64 = 0;
    let mut pend = Pending::default();
    let mut buf = vec![0u8; READ_CHUNK];
    let mut eof = false;
    loop {
        if ctx.stopping() {
            return Ok(meta.offset + 1);
        }
        let item = if eof {
            dec.finish_item()
        } else {
            dec.next_item()
        }
        .map_err(|e| match e {
            ObjectError::ModuleKey { key, module } => ApplyError::ModuleKey { key, module },
            other => snap_err(other.to_string()),
        })?;
        let Some(item) = item else {
            if eof {
                return Err(snap_err("ended without its EOF marker".into()));
            }
            let n = file.read(&mut buf).map_err(|e| snap_err(e.to_string()))?;
            if n == 0 {
                eof = true;
            } else {
                dec.feed(&buf[..n]);
            }
            continue;
        };
        if caps.is_none() {
            if let Some(h) = dec.header() {
                let c = s.caps(dump_version_for(h))?;
                tracing::info!(lane = %ctx.lane, rdb = h.version, restore = c.restore_version.is_some(), "apply: target {} the source's RDB version; keys go as {}", if c.restore_version.is_some() { "loads" } else { "cannot load" }, if c.restore_version.is_some() { "RESTORE … ABSTTL REPLACE" } else { "plain commands" });
                caps = Some(c);
            }
        }
        let caps = caps.unwrap_or(TargetCaps {
            restore_version: None,
            stream_v2: true,
        });
        let (cmds, name) = match item {
            Item::Key(e) => {
                let db = ctx.target.map_db(e.db);
                check_db(ctx, e.db, db)?;
                let mut c = vec![vec![
                    Bytes::from_static(b"SELECT"),
                    Bytes::from(db.to_string()),
                ]];
                c.extend(key_commands(&e, caps));
                pend.keys.extend(std::iter::repeat_n(
                    Some(Bytes::from(e.key.clone())),
                    c.len(),
                ));
                (
                    c,
                    format!("key {:?} (db {})", String::from_utf8_lossy(&e.key), e.db),
                )
            }
            Item::Function { code } => {
                pend.keys.push(None);
                (
                    vec![vec![
                        Bytes::from_static(b"FUNCTION"),
                        Bytes::from_static(b"LOAD"),
                        Bytes::from_static(b"REPLACE"),
                        Bytes::from(code),
                    ]],
                    "a function library".to_string(),
                )
            }
            Item::End {
                checksum_ok: Some(false),
            } => return Err(snap_err("CRC-64 mismatch".into())),
            Item::End { .. } => break,
            Item::Aux { .. } | Item::ModuleAux { .. } => continue,
        };
        index += 1;
        if index <= skip {
            pend.keys.truncate(pend.commands.len());
            continue;
        }
        pend.bytes += cmds.iter().flatten().map(|a| a.len() + 8).sum::<usize>();
        pend.owner.extend(std::iter::repeat_n(name, cmds.len()));
        pend.commands.extend(cmds);
        if pend.commands.len() >= BATCH_COMMANDS || pend.bytes >= BATCH_BYTES {
            flush_pending(s, &mut pend, &marker(index))?;
        }
    }
    let done = Checkpoint::Stream {
        replid: replid_at(&ctx.log.history().1, meta.offset + 1)
            .unwrap_or(&meta.replid)
            .to_string(),
        offset: meta.offset,
    };
    flush_pending(s, &mut pend, &done)?;
    tracing::info!(lane = %ctx.lane, keys = index, "apply: full sync done; following the stream from offset {}", meta.offset + 1);
    ctx.set_applied(meta.offset);
    Ok(meta.offset + 1)
}

fn check_db(ctx: &super::ApplyCtx, source: u32, target: u32) -> Result<(), ApplyError> {
    if target != 0
        && matches!(
            ctx.target.endpoint,
            crate::config::TargetEndpoint::Cluster(_)
        )
    {
        return Err(ApplyError::Database {
            db: source,
            why: "a cluster target has database 0 only (map it with target.databases)".into(),
            offset: 0,
        });
    }
    Ok(())
}

fn flush_pending(s: &mut impl Sink, p: &mut Pending, ckpt: &Checkpoint) -> Result<(), ApplyError> {
    let keys = p
        .owner
        .iter()
        .fold((0u64, None::<&String>), |(n, last), o| {
            if last != Some(o) {
                (n + 1, Some(o))
            } else {
                (n, last)
            }
        })
        .0;
    s.put(p, ckpt)?;
    let ctx = s.ctx();
    ctx.metrics
        .keys_loaded
        .with_label_values(&[&ctx.lane])
        .inc_by(keys);
    p.commands.clear();
    p.owner.clear();
    p.keys.clear();
    p.bytes = 0;
    s.mark_progress();
    Ok(())
}

impl Session<'_> {
    /// Commits, turning a refusal into an error that names the key it came from (or, with
    /// `target.on_unknown = "skip"`, dropping the refused command and committing the rest).
    pub(super) fn expect_applied(
        &mut self,
        commands: &[Vec<Bytes>],
        ckpt: &Checkpoint,
        owner: &[String],
    ) -> Result<(), ApplyError> {
        let mut commands = commands.to_vec();
        let mut owner = owner.to_vec();
        loop {
            if crate::failpoint::hit("apply_load_slow") {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            match self.try_applied(&commands, ckpt, &owner)? {
                None => return Ok(()),
                Some(i) => {
                    commands.remove(i);
                    owner.remove(i);
                }
            }
        }
    }

    /// `Ok(Some(i))`: command `i` was refused as unknown and is to be skipped.
    fn try_applied(
        &mut self,
        commands: &[Vec<Bytes>],
        ckpt: &Checkpoint,
        owner: &[String],
    ) -> Result<Option<usize>, ApplyError> {
        let name = |i: usize| -> (String, String) {
            let cmd = commands
                .get(i)
                .and_then(|c| c.first())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .unwrap_or_else(|| "the checkpoint".into());
            (cmd, owner.get(i).cloned().unwrap_or_default())
        };
        match self.commit(commands, ckpt)? {
            Verdict::Applied { errors } => {
                for (i, e) in errors {
                    let (cmd, who) = name(i);
                    self.ctx
                        .metrics
                        .errors
                        .with_label_values(&["command"])
                        .inc();
                    tracing::warn!(lane = %self.ctx.lane, "apply: {cmd} for {who} failed in the target: {e}");
                }
                Ok(None)
            }
            Verdict::Refused(Refusal::Pause { reason, message }) => {
                Err(ApplyError::Refused { reason, message })
            }
            Verdict::Refused(
                Refusal::Unknown { index, message } | Refusal::Redirect { index, message },
            ) => {
                let (cmd, who) = name(index);
                let skip = self.ctx.target.on_unknown == crate::config::OnUnknown::Skip;
                if skip && index < owner.len() {
                    self.ctx
                        .metrics
                        .errors
                        .with_label_values(&["unknown_command"])
                        .inc();
                    tracing::warn!(lane = %self.ctx.lane, "apply: skipping {cmd} for {who} of the snapshot, which the target refuses: {message} (target.on_unknown = \"skip\")");
                    return Ok(Some(index));
                }
                Err(ApplyError::Unknown {
                    command: format!("{cmd} (for {who} of the snapshot)"),
                    offset: ckpt.offset(),
                    message,
                })
            }
        }
    }
}
