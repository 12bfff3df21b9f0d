//! RDB codec (pure, no I/O): transfer framing (`$len` / `$EOF:<mark>`), header and version,
//! AUX fields, and the CRC-64 trailer.

mod aux;
mod crc64;
mod header;
mod transfer;
mod verify;

pub mod objects;

pub use aux::aux_fields;
pub(crate) use aux::lzf_decompress;
pub use crc64::{check_trailer, Crc64, TrailerCheck};
pub use header::{max_rdb_version_for, parse_header, RdbFlavor, RdbHeader};
pub use transfer::{parse_transfer_header, EofMark, TransferHeader, EOF_MARK_LEN};
pub use verify::RdbVerifier;

/// Everything that can go wrong while decoding RDB framing and metadata.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum RdbError {
    /// The master answered the sync with an error line (`-ERR…`); carries the text after `-`.
    #[error("master aborted replication with an error: {0}")]
    MasterError(String),
    /// The bulk header line is neither `$<len>` nor `$EOF:<40-byte mark>`.
    #[error("invalid RDB transfer header {line:?}: {reason}")]
    InvalidTransferHeader { line: String, reason: &'static str },
    /// Fewer bytes than needed were given.
    #[error("truncated RDB data: need {needed} bytes, got {got}")]
    Truncated { needed: usize, got: usize },
    /// The file does not start with `REDIS<4 digits>` or `VALKEY<3 digits>`.
    #[error("invalid RDB magic {0:?}")]
    BadMagic(String),
    /// The 9-byte trailer does not start with the EOF opcode 0xFF.
    #[error("expected RDB EOF opcode 0xff, found 0x{0:02x}")]
    MissingEofOpcode(u8),
    /// The stored CRC-64 differs from the computed one.
    #[error("RDB checksum mismatch: stored {stored:#018x}, computed {computed:#018x}")]
    ChecksumMismatch { stored: u64, computed: u64 },
    /// An RDB length byte uses an undefined `10xxxxxx` form.
    #[error("invalid RDB length encoding byte 0x{0:02x}")]
    InvalidLengthEncoding(u8),
    /// A string uses an undefined special encoding (`11xxxxxx`).
    #[error("unsupported RDB string encoding {0}")]
    UnsupportedEncoding(u8),
    /// An LZF-compressed string does not decompress to its declared length.
    #[error("corrupt LZF-compressed string")]
    CorruptLzf,
    /// A metadata string is larger than we are willing to hold in memory.
    #[error("RDB metadata string of {len} bytes exceeds the limit of {max}")]
    StringTooLarge { len: u64, max: usize },
}
