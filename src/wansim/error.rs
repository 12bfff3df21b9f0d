//! The one error type of the wan-sim module: bad options and socket setup failures.

use std::io;
use std::net::SocketAddr;

/// Everything that can go wrong configuring or starting a [`super::WanSim`].
///
/// Once the relay runs, network errors are counted and logged, never returned.
#[derive(Debug, thiserror::Error)]
pub enum WanSimError {
    /// A flag's value does not parse or is out of range.
    #[error("{flag}: invalid value {value:?}: {reason}")]
    InvalidValue {
        flag: String,
        value: String,
        reason: String,
    },
    /// A CLI-style flag that wan-sim does not know.
    #[error("unknown wan-sim option {0:?}")]
    UnknownFlag(String),
    /// A flag given last without its value.
    #[error("wan-sim option {0} needs a value")]
    MissingValue(String),
    /// A required flag that was not given.
    #[error("wan-sim needs {0}")]
    MissingOption(&'static str),
    /// Policy: wan-sim only listens on and forwards to loopback addresses.
    #[error("{what} address {addr} is not loopback (127.0.0.0/8 or ::1); wan-sim relays on loopback only")]
    NotLoopback {
        what: &'static str,
        addr: SocketAddr,
    },
    /// Options that parse but do not make sense together.
    #[error("invalid wan-sim options: {0}")]
    Invalid(String),
    /// Binding a socket failed (port in use, address not available, ...).
    #[error("wan-sim cannot bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    /// Any other socket error during start-up.
    #[error("wan-sim I/O error: {0}")]
    Io(#[from] io::Error),
}
