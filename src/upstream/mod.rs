//! The agent's upstream side: acting as a replica of a Redis master (the streaming link and
//! the rdb-only snapshot refresh).

pub mod agent;
pub mod conn;
pub mod handshake;
pub mod redis;
pub mod refresh;
pub mod replica;

use crate::log::LogError;

/// Why an upstream connection ended.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("network: {0}")]
    Io(String),
    #[error("timeout: {0}")]
    Timeout(String),
    #[error("upstream closed the connection ({0})")]
    Closed(String),
    #[error("authentication failed: {0}")]
    Auth(String),
    #[error("upstream not ready, will retry: {0}")]
    Retry(String),
    #[error("upstream refused: {0}")]
    Refused(String),
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("log: {0}")]
    Log(#[from] LogError),
}

impl UpstreamError {
    /// A fatal log error (disk) must stop the link rather than retry forever silently.
    pub fn is_log(&self) -> bool {
        matches!(self, UpstreamError::Log(_))
    }
}
