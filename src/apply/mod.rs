//! Apply mode (`[target]`): an applier is one more reader of the agent's log that writes the
//! stream, as a client, into a Redis that cannot be a replica — exactly once, because the
//! applied origin offset is written in the same `MULTI … EXEC` as the commands it covers.
//!
//! Pure parts: [`checkpoint`] (the start decision), [`stream`] (log bytes → batches),
//! [`rewrite`] (snapshot keys → commands), [`txn`] (a batch as a transaction and the verdict
//! on its replies), [`keys`] (a command's slot, splits), [`slots`] (per-slot checkpoints,
//! the target's slot map, batch → per-slot steps). I/O: [`conn`] (a blocking target
//! connection), [`cluster`] (a cluster target's connections and routing) and [`run`] (the
//! applier's own thread).

pub mod checkpoint;
pub mod cluster;
mod cluster_flush;
mod cluster_sink;
mod cluster_wait;
pub mod conn;
mod follow;
pub mod keys;
pub mod lanes;
mod load;
pub mod rewrite;
pub mod run;
mod sink;
pub mod slots;
pub mod status;
pub mod stream;
pub mod txn;

pub use lanes::LaneApply;
pub use run::{spawn, start, ApplyCtx};
pub use status::{ApplyMetrics, ApplyView, ApplyViews, TargetRow};

/// The lane name of a standalone upstream (the `shard` label of its apply series).
pub const MAIN_LANE: &str = "main";

/// Everything that stops or pauses an applier.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("target {addr} unreachable: {message}")]
    TargetDown { addr: String, message: String },
    /// The target refuses writes for now (`reason` is the metric label).
    #[error("target refuses writes ({reason}): {message}")]
    Refused {
        reason: &'static str,
        message: String,
    },
    #[error("target answered {command} with an error: {message}")]
    Command { command: String, message: String },
    #[error("the target does not accept {command} (origin offset {offset}): {message}; the lane is stopped (target.on_unknown = \"skip\" skips such commands)")]
    Unknown {
        command: String,
        offset: u64,
        message: String,
    },
    #[error("refusing to flush the target: {0}")]
    FlushRefused(String),
    #[error("the checkpoint in the target is not one georelay wrote: {0:?}")]
    BadCheckpoint(String),
    #[error("log bytes at offset {got} do not follow offset {expected}")]
    Gap { expected: u64, got: u64 },
    #[error("the stream at origin offset {offset} is not a command: {message}")]
    Stream { offset: u64, message: String },
    #[error("database {db} (origin offset {offset}) cannot be applied: {why}")]
    Database { db: u32, why: String, offset: u64 },
    #[error("the stream at origin offset {offset} cannot go to a cluster target: {message}; the lane is stopped")]
    CrossSlot { offset: u64, message: String },
    #[error("snapshot {path}: {message}")]
    Snapshot { path: String, message: String },
    /// A snapshot key of a module type: no target can take it without the module.
    #[error("the snapshot's key {key:?} has a type of module {module:?}, which georelay cannot apply; the lane is stopped (remove the key in the origin, or load the module in the target and replicate instead)")]
    ModuleKey { key: String, module: String },
    #[error("{0}")]
    Log(#[from] crate::log::LogError),
}

impl ApplyError {
    /// The `georelay_apply_errors_total` reason, and whether the lane stops for good (until
    /// a restart) rather than pausing and retrying.
    pub fn reason(&self) -> (&'static str, bool) {
        match self {
            ApplyError::TargetDown { .. } => ("target_down", false),
            ApplyError::Refused { reason, .. } => (reason, false),
            ApplyError::Command { .. } => ("command", false),
            ApplyError::Unknown { .. } => ("unknown_command", true),
            ApplyError::FlushRefused(_) => ("flush_refused", false),
            ApplyError::BadCheckpoint(_)
            | ApplyError::Database { .. }
            | ApplyError::CrossSlot { .. } => ("stopped", true),
            ApplyError::Gap { .. } | ApplyError::Stream { .. } | ApplyError::Snapshot { .. } => {
                ("stopped", false)
            }
            ApplyError::Log(_) => ("stopped", false),
            ApplyError::ModuleKey { .. } => ("module", true),
        }
    }
}
