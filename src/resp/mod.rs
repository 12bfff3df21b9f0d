//! RESP codec (pure, no I/O): frames, client commands, RESP2/RESP3 replies, reply lines and the
//! replication-stream scanner.
//!
//! Decoding follows a check-then-parse model: the functions look at a buffer, and return
//! `Ok(None)` (consuming nothing) when the input is still incomplete, so the caller reads more
//! bytes and tries again. Every length taken from the input is bounded by [`Limits`].

mod command;
mod encode;
mod error;
mod frame;
mod lex;
mod reply;
pub mod scan;

pub use command::{parse_command, read_line};
pub use encode::{command, encode};
pub use error::RespError;
pub use frame::{check, parse_frame, Frame, Limits};
pub use reply::{Proto, Reply};
pub use scan::{ScanResult, StreamScanner};

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    #[test]
    fn arbitrary_bytes_never_panic() {
        // Deterministic xorshift noise biased towards RESP syntax bytes.
        let alphabet = b"*$+-:_#,(!=%~>\r\n0123456789-ab";
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let limits = Limits {
            max_bulk: 64,
            max_array: 8,
            max_depth: 3,
            max_inline: 16,
        };
        for _ in 0..20_000 {
            let mut input = Vec::new();
            for _ in 0..(x % 24) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                input.push(alphabet[(x % alphabet.len() as u64) as usize]);
            }
            let checked = check(&input, &limits);
            let mut buf = BytesMut::from(&input[..]);
            let parsed = parse_frame(&mut buf, &limits);
            match (checked, parsed) {
                (Ok(Some(n)), Ok(Some(_))) => assert_eq!(buf.len(), input.len() - n),
                (Ok(None), Ok(None)) | (Err(_), Err(_)) => {}
                other => panic!("check/parse disagree on {input:?}: {other:?}"),
            }
            let _ = parse_command(&mut BytesMut::from(&input[..]), &limits);
            let _ = StreamScanner::new().feed(&input);
        }
    }
}
