//! TEMPORARY API stub of the replication log; replaced by the real implementation on merge.
#![allow(unused_variables, dead_code)]
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsyncPolicy {
    Always,
    EverySec,
    No,
}
#[derive(Clone, Debug)]
pub struct LogConfig {
    pub dir: PathBuf,
    pub segment_bytes: u64,
    pub max_bytes: u64,
    pub max_age: Duration,
    pub fsync: FsyncPolicy,
    pub snapshot_after_bytes: u64,
}
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub replid: String,
    pub start: u64,
}
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SnapshotMeta {
    pub epoch: u64,
    pub replid: String,
    pub offset: u64,
    pub rdb_version: u32,
    pub size: u64,
    pub crc_ok: Option<bool>,
    pub created_unix: u64,
    #[serde(skip)]
    pub path: PathBuf,
}
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FullReason {
    FirstSync,
    NoHistory,
    OffsetOutOfRange,
    Corruption,
    NewEpoch,
}
impl FullReason {
    pub fn as_str(&self) -> &'static str {
        "x"
    }
}
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PsyncDecision {
    Continue { replid: String },
    Full { reason: FullReason },
}
#[derive(Clone, Debug)]
pub struct LogStatus {
    pub epoch: u64,
    pub history: Vec<HistoryEntry>,
    pub first_valid: u64,
    pub head: u64,
    pub durable: u64,
    pub disk_bytes: u64,
    pub segment_count: usize,
    pub newest_snapshot: Option<SnapshotMeta>,
    pub corruptions_total: u64,
    pub head_timestamp_us: u64,
}
pub struct Chunk {
    pub offset: u64,
    pub timestamp_us: u64,
    pub data: bytes::Bytes,
}
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("io {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("locked {path}")]
    Locked { path: PathBuf },
    #[error("corrupt {offset} {path}")]
    Corrupt { offset: u64, path: PathBuf },
    #[error("gone {offset}")]
    Gone { offset: u64 },
    #[error("no epoch")]
    NoEpoch,
    #[error("bad state")]
    BadState { path: PathBuf, detail: String },
    #[error("replid invalid")]
    ReplidInvalid,
}
#[derive(Clone)]
pub struct Log {}
impl Log {
    pub fn open(cfg: LogConfig) -> Result<Log, LogError> {
        todo!()
    }
    pub fn status(&self) -> LogStatus {
        todo!()
    }
    pub fn current(&self) -> Option<(String, u64)> {
        todo!()
    }
    pub fn timestamp_at(&self, offset: u64) -> Option<u64> {
        todo!()
    }
    pub fn begin_snapshot(&self) -> Result<SnapshotWriter, LogError> {
        todo!()
    }
    pub fn start_epoch(&self, snap: SnapshotMeta) -> Result<(), LogError> {
        todo!()
    }
    pub fn add_snapshot(&self, snap: SnapshotMeta) -> Result<(), LogError> {
        todo!()
    }
    pub fn switch_replid(&self, new_replid: &str) -> Result<(), LogError> {
        todo!()
    }
    pub fn append(&self, data: bytes::Bytes, timestamp_us: u64) -> Result<(), LogError> {
        todo!()
    }
    pub fn request_sync(&self) {
        todo!()
    }
    pub fn subscribe_head(&self) -> tokio::sync::watch::Receiver<u64> {
        todo!()
    }
    pub fn subscribe_durable(&self) -> tokio::sync::watch::Receiver<u64> {
        todo!()
    }
    pub fn subscribe_epoch(&self) -> tokio::sync::watch::Receiver<u64> {
        todo!()
    }
    pub fn maintain(&self) -> Result<(), LogError> {
        todo!()
    }
    pub fn needs_snapshot(&self) -> bool {
        todo!()
    }
    pub fn close(&self) -> Result<(), LogError> {
        todo!()
    }
    pub fn decide(&self, replid: &str, offset: u64) -> PsyncDecision {
        todo!()
    }
    pub fn snapshot_for_full_sync(&self) -> Option<SnapshotMeta> {
        todo!()
    }
    pub fn reader(&self, from: u64) -> Result<LogReader, LogError> {
        todo!()
    }
}
pub struct SnapshotWriter {}
impl SnapshotWriter {
    pub fn write(&mut self, data: &[u8]) -> Result<(), LogError> {
        todo!()
    }
    pub fn truncate_tail(&mut self, n: u64) -> Result<(), LogError> {
        todo!()
    }
    pub fn written(&self) -> u64 {
        todo!()
    }
    pub fn finish(
        self,
        replid: &str,
        offset: u64,
        rdb_version: u32,
        crc_ok: Option<bool>,
    ) -> Result<SnapshotMeta, LogError> {
        todo!()
    }
}
pub struct LogReader {}
impl LogReader {
    pub async fn next(&mut self, max: usize) -> Result<Chunk, LogError> {
        todo!()
    }
    pub fn try_next(&mut self, max: usize) -> Result<Option<Chunk>, LogError> {
        todo!()
    }
    pub fn position(&self) -> u64 {
        todo!()
    }
}
