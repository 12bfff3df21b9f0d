//! RDB object decoder (pure, no I/O): feed the bytes of an RDB (9–12, Valkey 80/81) and get
//! its keys one by one — database, key, value, absolute expiry — plus functions and AUX
//! fields. Memory is bounded by the largest single object, never the whole RDB.
//!
//! Types, checked against `rdb.c`/`rdb.h` of redis/redis (7.4) and valkey-io/valkey (9.x):
//! strings (raw/int/LZF); lists (1, ziplist 10, quicklist 14, quicklist2 18 with plain
//! nodes); sets (2, intset 11, listpack 20); sorted sets (3, ZSET_2 5, ziplist 12,
//! listpack 17); hashes (4, ziplist 13, listpack 16, Redis HASH_METADATA 24 / LISTPACK_EX 25
//! and their pre-GA 22/23, Valkey HASH_2 22); streams (15/19/21) with consumer groups;
//! module values (6/7) are refused naming the key and the module.

mod cursor;
mod decoder;
mod dump;
mod packed;
mod stream;
mod types;

#[cfg(test)]
mod tests;

pub use decoder::{Item, RdbDecoder};
pub use dump::{dump_payload, dump_version_for};

/// One key of the RDB.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub db: u32,
    pub key: Vec<u8>,
    /// Absolute expiry in Unix milliseconds.
    pub expire_ms: Option<i64>,
    /// The RDB type byte as stored.
    pub rdb_type: u8,
    pub value: Value,
    /// The serialized object exactly as in the RDB (without the type byte), for DUMP payloads.
    pub raw: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    String(Vec<u8>),
    /// Head to tail.
    List(Vec<Vec<u8>>),
    Set(Vec<Vec<u8>>),
    /// Member and score, in the stored order.
    ZSet(Vec<(Vec<u8>, f64)>),
    Hash(Vec<HashField>),
    Stream(Box<Stream>),
}

impl Value {
    /// The Redis type name (`TYPE` command).
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::String(_) => "string",
            Value::List(_) => "list",
            Value::Set(_) => "set",
            Value::ZSet(_) => "zset",
            Value::Hash(_) => "hash",
            Value::Stream(_) => "stream",
        }
    }

    /// Whether the value uses a feature that plain commands can only express with
    /// hash-field TTLs (`HPEXPIREAT`).
    pub fn has_field_ttls(&self) -> bool {
        matches!(self, Value::Hash(f) if f.iter().any(|f| f.expire_ms.is_some()))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct HashField {
    pub field: Vec<u8>,
    pub value: Vec<u8>,
    /// Absolute field expiry in Unix milliseconds.
    pub expire_ms: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct StreamId {
    pub ms: u64,
    pub seq: u64,
}

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Stream {
    /// Live (not deleted) entries in ID order.
    pub entries: Vec<StreamEntry>,
    pub length: u64,
    pub last_id: StreamId,
    /// RDB stream types 19/21 only.
    pub first_id: Option<StreamId>,
    pub max_deleted_id: Option<StreamId>,
    pub entries_added: Option<u64>,
    pub groups: Vec<ConsumerGroup>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StreamEntry {
    pub id: StreamId,
    pub fields: Vec<(Vec<u8>, Vec<u8>)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ConsumerGroup {
    pub name: Vec<u8>,
    pub last_id: StreamId,
    /// RDB stream types 19/21 only.
    pub entries_read: Option<u64>,
    pub pending: Vec<PendingEntry>,
    pub consumers: Vec<Consumer>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PendingEntry {
    pub id: StreamId,
    pub delivery_time_ms: i64,
    pub delivery_count: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Consumer {
    pub name: Vec<u8>,
    pub seen_time_ms: i64,
    /// RDB stream type 21 only.
    pub active_time_ms: Option<i64>,
    /// IDs of the group's pending entries owned by this consumer.
    pub pending: Vec<StreamId>,
}

/// Everything that can go wrong decoding an RDB's objects. Offsets are bytes from the start
/// of the RDB.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum ObjectError {
    #[error("bad RDB header: {0}")]
    Header(String),
    #[error("RDB version {version} is not supported (Redis RDB 9–12, Valkey 80–81)")]
    Version { version: u32 },
    #[error("corrupt RDB at byte {offset}: {what}")]
    Corrupt { offset: u64, what: String },
    #[error("key {key:?} (at byte {offset}): {what}")]
    InKey {
        key: String,
        offset: u64,
        what: String,
    },
    #[error("key {key:?} has a module type of module {module:?}, which cannot be applied")]
    ModuleKey { key: String, module: String },
    #[error("object at byte {offset} of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { offset: u64, len: u64, max: usize },
    #[error("RDB checksum mismatch: stored {stored:#018x}, computed {computed:#018x}")]
    Checksum { stored: u64, computed: u64 },
    #[error("RDB ends at byte {offset} before its end marker and checksum")]
    Truncated { offset: u64 },
    #[error("bytes after the RDB's checksum")]
    TrailingBytes,
}

/// Module type name from a 64-bit module type id (`moduleTypeNameByID`, module.c): 9
/// characters of 6 bits each above a 10-bit encoding version.
pub fn module_name(id: u64) -> String {
    const CSET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut id = id >> 10;
    let mut name = [0u8; 9];
    for slot in name.iter_mut().rev() {
        *slot = CSET[(id & 63) as usize];
        id >>= 6;
    }
    String::from_utf8_lossy(&name).into_owned()
}
