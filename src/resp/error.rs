//! The RESP codec error type, shared by frame parsing, command parsing and the stream scanner.

/// Everything that can go wrong while decoding RESP.
///
/// "Incomplete input" is never an error: the parsing functions return `Ok(None)` for it.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum RespError {
    /// The first byte of a frame is not a known RESP type marker.
    #[error("protocol error: invalid frame type byte 0x{0:02x}")]
    InvalidType(u8),
    /// A `$` or `*` length header is not a valid length.
    #[error("protocol error: invalid length")]
    InvalidLength,
    /// An `:` integer frame does not hold a valid signed 64-bit integer.
    #[error("protocol error: invalid integer")]
    InvalidInteger,
    /// A bulk string declares more bytes than the configured limit.
    #[error("protocol error: bulk length {len} exceeds the limit of {max} bytes")]
    BulkTooLarge { len: u64, max: usize },
    /// An array declares more elements than the configured limit.
    #[error("protocol error: array length {len} exceeds the limit of {max} elements")]
    ArrayTooLarge { len: u64, max: usize },
    /// Arrays are nested deeper than the configured limit.
    #[error("protocol error: arrays nested deeper than {max} levels")]
    TooDeep { max: usize },
    /// An inline command (or simple string / error line) is longer than the limit.
    #[error("protocol error: line longer than {max} bytes")]
    InlineTooLong { max: usize },
    /// A `*`/`$` header line in the replication stream is longer than the scanner accepts.
    #[error("protocol error: header line longer than {max} bytes")]
    HeaderTooLong { max: usize },
    /// A line or bulk payload is not terminated by `\r\n`.
    #[error("protocol error: expected CRLF")]
    MissingCrlf,
    /// An element of a command array is not a bulk string (`$`).
    #[error("protocol error: expected '$' (bulk string) in command array, got byte 0x{0:02x}")]
    ExpectedBulk(u8),
}
