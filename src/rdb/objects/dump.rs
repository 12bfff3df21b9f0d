//! DUMP/RESTORE payloads (`createDumpPayload`/`verifyDumpPayload`, cluster.c): the type byte,
//! the serialized object, the RDB version as 2 bytes little endian, and a CRC-64 of all that.

use super::Entry;
use crate::rdb::{Crc64, RdbHeader};

/// The payload `RESTORE` accepts for `entry`, stamped with RDB version `version`.
pub fn dump_payload(entry: &Entry, version: u16) -> Vec<u8> {
    let mut p = Vec::with_capacity(entry.raw.len() + 11);
    p.push(entry.rdb_type);
    p.extend_from_slice(&entry.raw);
    p.extend_from_slice(&version.to_le_bytes());
    let mut crc = Crc64::new();
    crc.update(&p);
    p.extend_from_slice(&crc.finish().to_le_bytes());
    p
}

/// The version a payload cut from an RDB with this header must carry: the RDB's own.
pub fn dump_version_for(header: RdbHeader) -> u16 {
    u16::try_from(header.version).unwrap_or(u16::MAX)
}
