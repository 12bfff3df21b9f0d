//! RESP codec (pure, no I/O): frames, client commands, reply lines and the replication-stream scanner.
//!
//! Decoding follows a check-then-parse model: the functions look at a buffer, and return
//! `Ok(None)` (consuming nothing) when the input is still incomplete, so the caller reads more
//! bytes and tries again. Every length taken from the input is bounded by [`Limits`].

mod command;
mod encode;
mod error;
mod frame;
mod lex;

pub use command::{parse_command, read_line};
pub use encode::{command, encode};
pub use error::RespError;
pub use frame::{check, parse_frame, Frame, Limits};
