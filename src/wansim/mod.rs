//! `georelay wan-sim`: a user-space UDP impairment relay on loopback for tests, demos and
//! benchmarks of the QUIC link (there is no `tc netem` here).

mod clients;
mod error;
mod link;
mod options;
mod stats;

pub use error::WanSimError;
pub use options::{WanSimOptions, USAGE};
pub use stats::WanSimStats;
