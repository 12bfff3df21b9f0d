//! Disaster recovery: runtime re-pointing of an agent's upstream (the agent side), and the
//! `georelay switchover` / `georelay failover` orchestrating clients.

pub mod failover;
pub mod http;
pub mod plan;
pub mod redis;
pub mod repoint;
pub mod supervisor;
pub mod switchover;
