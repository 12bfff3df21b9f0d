//! Following the log into the target: read what follows the checkpoint, cut it into batches
//! outside source transactions, and commit each with its end offset as the checkpoint.

use std::time::Duration;

use bytes::Bytes;

use super::checkpoint::{replid_at, Checkpoint};
use super::run::Session;
use super::sink::Sink;
use super::stream::{Batch, Batcher, Op};
use super::txn::{Refusal, Verdict};
use super::ApplyError;
use crate::config::{OnUnknown, TargetEndpoint};

const MAX_BATCH_COMMANDS: usize = 1000;
const MAX_BATCH_BYTES: usize = 4 << 20;
const READ_MAX: usize = 256 * 1024;

/// Applies the log from `from` on until shutdown or an error.
pub(super) fn follow(s: &mut impl Sink, from: u64) -> Result<(), ApplyError> {
    let ctx = s.ctx().clone();
    let ctx = &ctx;
    let cluster = matches!(ctx.target.endpoint, TargetEndpoint::Cluster(_));
    let map = ctx.target.databases.clone();
    let mut batcher = Batcher::new(from, move |db| {
        let to = map.get(&db).copied().unwrap_or(db);
        if cluster && to != 0 {
            return Err(ApplyError::Database {
                db,
                why: "a cluster target has database 0 only (map it with target.databases)".into(),
                offset: 0,
            });
        }
        Ok(to)
    });
    let mut reader = ctx.log.reader(from)?;
    let mut head = ctx.log.subscribe_head();
    ctx.view.update(|r| {
        r.state = "streaming".into();
        r.error.clear();
    });
    let mut applied = from.saturating_sub(1);
    let mut last_warning: Option<std::time::Instant> = None;
    while !ctx.stopping() {
        head.borrow_and_update();
        while batcher.pending() < MAX_BATCH_COMMANDS && batcher.pending_bytes() < MAX_BATCH_BYTES {
            match reader.try_next(READ_MAX)? {
                Some(c) => batcher.feed(c.offset, &c.data)?,
                None => break,
            }
        }
        if let Some(batch) = batcher.take() {
            applied = batch.end;
            s.apply(batch)?;
            if let Some(i) = batcher.take_imports() {
                warn_migration(ctx, &i, &mut last_warning);
            }
            continue;
        }
        if batcher.pending() >= MAX_BATCH_COMMANDS || batcher.pending_bytes() >= MAX_BATCH_BYTES {
            // A source transaction larger than a batch: read on until its EXEC.
            if let Some(c) = reader.try_next(READ_MAX)? {
                batcher.feed(c.offset, &c.data)?;
                continue;
            }
        }
        ctx.set_applied(applied);
        let mut shutdown = ctx.shutdown.clone();
        s.rt().block_on(async {
            tokio::select! {
                _ = head.changed() => {}
                _ = shutdown.wait_for(|s| *s) => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        });
    }
    Ok(())
}

impl Session<'_> {
    pub(super) fn apply_batch(&mut self, mut batch: Batch) -> Result<(), ApplyError> {
        let ctx = self.ctx;
        let ckpt = Checkpoint::Stream {
            replid: replid_at(&ctx.log.history().1, batch.end + 1)
                .unwrap_or("?")
                .to_string(),
            offset: batch.end,
        };
        loop {
            let mut cmds = Vec::with_capacity(batch.ops.len() + 1);
            cmds.push(vec![
                Bytes::from_static(b"SELECT"),
                Bytes::from(batch.db.to_string()),
            ]);
            for op in &batch.ops {
                cmds.push(match op {
                    Op::Select(n) => {
                        vec![Bytes::from_static(b"SELECT"), Bytes::from(n.to_string())]
                    }
                    Op::Cmd { args, .. } => args.clone(),
                });
            }
            let op_of = |i: usize| {
                i.checked_sub(1)
                    .and_then(|j| batch.ops.get(j).map(|o| (j, o)))
            };
            match self.commit(&cmds, &ckpt)? {
                Verdict::Applied { errors } => {
                    for (i, e) in errors {
                        ctx.metrics.errors.with_label_values(&["command"]).inc();
                        if let Some((_, Op::Cmd { args, end })) = op_of(i) {
                            tracing::warn!(lane = %ctx.lane, offset = end, "apply: {} failed in the target: {e}", name(args));
                        }
                    }
                    ctx.metrics
                        .commands
                        .with_label_values(&[&ctx.lane])
                        .inc_by(batch.commands() as u64);
                    ctx.set_applied(batch.end);
                    ctx.view.update(|r| {
                        r.state = "streaming".into();
                        r.error.clear();
                    });
                    self.progressed = true;
                    return Ok(());
                }
                Verdict::Refused(Refusal::Pause { reason, message }) => {
                    return Err(ApplyError::Refused { reason, message })
                }
                Verdict::Refused(
                    Refusal::Unknown { index, message } | Refusal::Redirect { index, message },
                ) => {
                    let Some((j, Op::Cmd { args, end })) = op_of(index) else {
                        return Err(ApplyError::Command {
                            command: "SELECT/SET of the checkpoint".into(),
                            message,
                        });
                    };
                    let (command, offset) = (name(args), *end);
                    if ctx.target.on_unknown == OnUnknown::Stop {
                        return Err(ApplyError::Unknown {
                            command,
                            offset,
                            message,
                        });
                    }
                    ctx.metrics
                        .errors
                        .with_label_values(&["unknown_command"])
                        .inc();
                    tracing::warn!(lane = %ctx.lane, offset, "apply: skipping {command}, which the target refuses: {message} (target.on_unknown = \"skip\")");
                    batch.ops.remove(j);
                }
            }
        }
    }
}

/// An origin slot migration seen by a lane applier: counted (`origin_migration`) and logged
/// at most every 10 s. The source lane's `DEL` of a migrated key is not ordered with this
/// lane's `RESTORE` of it, so the key may be lost in the target (README, "From lanes").
fn warn_migration(
    ctx: &super::ApplyCtx,
    i: &super::stream::Imports,
    last: &mut Option<std::time::Instant>,
) {
    if ctx.lane == super::MAIN_LANE {
        return;
    }
    ctx.metrics
        .errors
        .with_label_values(&["origin_migration"])
        .inc_by(i.count);
    if last.is_some_and(|t| t.elapsed() < Duration::from_secs(10)) {
        return;
    }
    *last = Some(std::time::Instant::now());
    tracing::warn!(lane = %ctx.lane, offset = i.first_offset, "apply: {} key(s) migrated into this lane's origin shard (RESTORE-ASKING of {:?} first): lanes are applied unordered, so the source lane's DEL may remove them from the target; resync the target after an origin reshard (README, \"From lanes\")", i.count, String::from_utf8_lossy(&i.first_key));
}

fn name(args: &[Bytes]) -> String {
    args.first()
        .map(|a| String::from_utf8_lossy(a).to_ascii_uppercase())
        .unwrap_or_default()
}
