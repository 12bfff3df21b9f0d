//! What the full-sync and stream loops ([`super::load`], [`super::follow`]) need from a
//! target, standalone ([`super::run::Session`]) or cluster ([`super::cluster_sink`]): its
//! capabilities, a flush, and "apply these commands with this checkpoint".

use bytes::Bytes;

use super::checkpoint::Checkpoint;
use super::rewrite::TargetCaps;
use super::run::{ApplyCtx, Session};
use super::stream::Batch;
use super::ApplyError;

/// A full-sync batch in the making.
#[derive(Default)]
pub(super) struct Pending {
    pub commands: Vec<Vec<Bytes>>,
    pub bytes: usize,
    /// Which item each command belongs to (for naming a refused key).
    pub owner: Vec<String>,
    /// The key each command is for (`None`: a function library).
    pub keys: Vec<Option<Bytes>>,
}

pub(super) trait Sink {
    fn ctx(&self) -> &ApplyCtx;
    fn rt(&self) -> &tokio::runtime::Runtime;
    /// A batch went through (resets the backoff).
    fn mark_progress(&mut self);
    /// What the target can load (a probe `RESTORE` stamped with `source_rdb`).
    fn caps(&mut self, source_rdb: u16) -> Result<TargetCaps, ApplyError>;
    /// Empties the target and leaves the loading marker `marker`.
    fn flush_target(&mut self, marker: &Checkpoint) -> Result<(), ApplyError>;
    /// Writes a full-sync batch and then (or with it) the checkpoint `ckpt`.
    fn put(&mut self, p: &Pending, ckpt: &Checkpoint) -> Result<(), ApplyError>;
    /// Applies a stream batch and moves the checkpoint(s) to its end.
    fn apply(&mut self, batch: Batch) -> Result<(), ApplyError>;
    /// The lane's checkpoint in the target (the floor, on a cluster target).
    fn checkpoint(&mut self) -> Result<Option<Checkpoint>, ApplyError>;
    /// Keys in the target that georelay did not write as checkpoints (`has_ckpt`: the lane's
    /// checkpoint exists).
    fn data_keys(&mut self, has_ckpt: bool) -> Result<u64, ApplyError>;
    /// The stream resumes after `applied` (the checkpoint's offset).
    fn resume(&mut self, _applied: u64) -> Result<(), ApplyError> {
        Ok(())
    }
}

impl Sink for Session<'_> {
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
        Session::caps(self, source_rdb)
    }
    fn flush_target(&mut self, marker: &Checkpoint) -> Result<(), ApplyError> {
        self.expect_applied(&[vec![Bytes::from_static(b"FLUSHALL")]], marker, &[])
    }
    fn put(&mut self, p: &Pending, ckpt: &Checkpoint) -> Result<(), ApplyError> {
        self.expect_applied(&p.commands, ckpt, &p.owner)
    }
    fn apply(&mut self, batch: Batch) -> Result<(), ApplyError> {
        self.apply_batch(batch)
    }
    fn checkpoint(&mut self) -> Result<Option<Checkpoint>, ApplyError> {
        self.read_checkpoint()
    }
    fn data_keys(&mut self, has_ckpt: bool) -> Result<u64, ApplyError> {
        Ok(self.count_keys()?.saturating_sub(has_ckpt as u64))
    }
}
