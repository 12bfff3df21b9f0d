//! The streaming RDB decoder: bytes in (any chunking), items out. Holds only the bytes of the
//! item being decoded; checks the version, the opcodes of `rdbLoadRio` and the CRC-64.

use super::cursor::{Cursor, Res, Short};
use super::types::{decode, is_object_type};
use super::{module_name, Entry, ObjectError};
use crate::rdb::{parse_header, Crc64, RdbFlavor, RdbHeader};

const OP_SLOT_IMPORT: u8 = 243;
const OP_SLOT_INFO: u8 = 244;
const OP_FUNCTION2: u8 = 245;
const OP_FUNCTION_PRE_GA: u8 = 246;
const OP_MODULE_AUX: u8 = 247;
const OP_IDLE: u8 = 248;
const OP_FREQ: u8 = 249;
const OP_AUX: u8 = 250;
const OP_RESIZEDB: u8 = 251;
const OP_EXPIRETIME_MS: u8 = 252;
const OP_EXPIRETIME: u8 = 253;
const OP_SELECTDB: u8 = 254;
const OP_EOF: u8 = 255;

/// Default limit on one object (and one string), like Redis's `proto-max-bulk-len`.
pub const DEFAULT_MAX_OBJECT: usize = 512 << 20;

/// What the RDB holds, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Aux {
        key: Vec<u8>,
        value: Vec<u8>,
    },
    /// A function library (`FUNCTION2`): its code, as for `FUNCTION LOAD`.
    Function {
        code: Vec<u8>,
    },
    /// Module data outside the keyspace (`MODULE_AUX`), skipped.
    ModuleAux {
        module: String,
    },
    Key(Entry),
    /// The end marker; `checksum_ok` is `None` when the RDB was saved without a checksum.
    End {
        checksum_ok: Option<bool>,
    },
}

enum Step {
    Skip,
    Item(Item),
    Eof { stored: u64 },
}

#[derive(Default)]
struct State {
    header: Option<RdbHeader>,
    db: u32,
    expire: Option<i64>,
}

pub struct RdbDecoder {
    buf: Vec<u8>,
    /// Next unparsed byte in `buf`; `buf[..pos]` is parsed but not yet in the CRC.
    pos: usize,
    /// Absolute RDB offset of `buf[0]`.
    base: u64,
    crc: Crc64,
    st: State,
    /// Don't parse again until this many unparsed bytes are buffered (amortises retries of a
    /// large object fed in small chunks).
    want: usize,
    max_object: usize,
    done: bool,
    failed: Option<ObjectError>,
}

impl Default for RdbDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl RdbDecoder {
    pub fn new() -> Self {
        Self::with_limit(DEFAULT_MAX_OBJECT)
    }

    /// A decoder that refuses any single object or string larger than `max_object` bytes.
    pub fn with_limit(max_object: usize) -> Self {
        RdbDecoder {
            buf: Vec::new(),
            pos: 0,
            base: 0,
            crc: Crc64::new(),
            st: State::default(),
            want: 0,
            max_object,
            done: false,
            failed: None,
        }
    }

    pub fn feed(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The RDB header, once its 9 bytes were decoded.
    pub fn header(&self) -> Option<RdbHeader> {
        self.st.header
    }

    /// Absolute offset of the next byte to decode.
    pub fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The next item, `Ok(None)` when more bytes are needed (or after the end).
    pub fn next_item(&mut self) -> Result<Option<Item>, ObjectError> {
        self.advance(false)
    }

    /// Call when the input has ended: the remaining items, then an error if the RDB is cut.
    pub fn finish_item(&mut self) -> Result<Option<Item>, ObjectError> {
        self.advance(true)
    }

    fn advance(&mut self, at_end: bool) -> Result<Option<Item>, ObjectError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        loop {
            let unparsed = self.buf.len() - self.pos;
            if self.done {
                if unparsed > 0 {
                    return Err(self.fail(ObjectError::TrailingBytes));
                }
                return Ok(None);
            }
            if unparsed < self.want && !at_end {
                return Ok(None);
            }
            let mut c = Cursor::new(&self.buf[self.pos..], self.offset(), self.max_object);
            let step = step(&mut self.st, &mut c);
            let used = c.pos;
            match step {
                Ok(Step::Skip) => self.pos += used,
                Ok(Step::Item(item)) => {
                    self.pos += used;
                    self.want = 0;
                    self.compact();
                    return Ok(Some(item));
                }
                Ok(Step::Eof { stored }) => {
                    self.crc.update(&self.buf[..self.pos + used - 8]);
                    self.pos += used;
                    self.done = true;
                    let computed = self.crc.finish();
                    if stored != 0 && stored != computed {
                        return Err(self.fail(ObjectError::Checksum { stored, computed }));
                    }
                    return Ok(Some(Item::End {
                        checksum_ok: (stored != 0).then_some(true),
                    }));
                }
                Err(Short::Need) if at_end => {
                    let offset = self.offset();
                    return Err(self.fail(ObjectError::Truncated { offset }));
                }
                Err(Short::Need) => {
                    self.want = unparsed.saturating_mul(2).max(unparsed + 1);
                    return Ok(None);
                }
                Err(Short::Bad(e)) => return Err(self.fail(e)),
            }
        }
    }

    fn fail(&mut self, e: ObjectError) -> ObjectError {
        self.failed = Some(e.clone());
        e
    }

    fn compact(&mut self) {
        if self.pos >= 64 << 10 || self.pos * 2 >= self.buf.len() {
            self.crc.update(&self.buf[..self.pos]);
            self.buf.drain(..self.pos);
            self.base += self.pos as u64;
            self.pos = 0;
        }
    }
}

fn step(st: &mut State, c: &mut Cursor<'_>) -> Res<Step> {
    let Some(header) = st.header else {
        let head = c.take(9)?;
        let h = parse_header(head).map_err(|e| ObjectError::Header(e.to_string()))?;
        let ok = match h.flavor {
            RdbFlavor::Redis => (9..=12).contains(&h.version),
            RdbFlavor::Valkey => (80..=81).contains(&h.version),
        };
        if !ok {
            return Err(ObjectError::Version { version: h.version }.into());
        }
        st.header = Some(h);
        return Ok(Step::Skip);
    };
    let at = c.offset();
    let op = c.u8()?;
    match op {
        OP_EOF => Ok(Step::Eof {
            stored: u64::from_le_bytes(c.array()?),
        }),
        OP_SELECTDB => {
            st.db = u32::try_from(c.len()?).map_err(|_| c.bad("database number out of range"))?;
            Ok(Step::Skip)
        }
        OP_EXPIRETIME => {
            st.expire = Some(i64::from(i32::from_le_bytes(c.array()?)) * 1000);
            Ok(Step::Skip)
        }
        OP_EXPIRETIME_MS => {
            st.expire = Some(c.millis()?);
            Ok(Step::Skip)
        }
        OP_RESIZEDB => {
            c.len()?;
            c.len()?;
            Ok(Step::Skip)
        }
        OP_SLOT_INFO => {
            for _ in 0..3 {
                c.len()?;
            }
            Ok(Step::Skip)
        }
        OP_SLOT_IMPORT if header.flavor == RdbFlavor::Valkey => {
            c.string()?;
            let ranges = c.count(2)?;
            for _ in 0..ranges {
                c.len()?;
                c.len()?;
            }
            Ok(Step::Skip)
        }
        OP_FREQ => {
            c.u8()?;
            Ok(Step::Skip)
        }
        OP_IDLE => {
            c.len()?;
            Ok(Step::Skip)
        }
        OP_AUX => {
            let key = c.string()?;
            let value = c.string()?;
            Ok(Step::Item(Item::Aux { key, value }))
        }
        OP_FUNCTION2 => Ok(Step::Item(Item::Function { code: c.string()? })),
        OP_FUNCTION_PRE_GA => Err(c.bad("pre-release (7.0 RC) function format is not supported")),
        OP_MODULE_AUX => {
            let id = c.len()?;
            let when_opcode = c.len()?;
            c.len()?;
            if when_opcode != 2 {
                return Err(c.bad("module aux data without its 'when' field"));
            }
            skip_module_value(c)?;
            Ok(Step::Item(Item::ModuleAux {
                module: module_name(id),
            }))
        }
        t if is_object_type(t, header.flavor) => {
            let key = c.string()?;
            let start = c.pos;
            let value = match decode(c, t, header.flavor, &key) {
                Ok(v) => v,
                Err(Short::Bad(e)) => return Err(in_key(e, &key, at).into()),
                Err(Short::Need) => return Err(Short::Need),
            };
            let raw = c.raw_since(start).to_vec();
            Ok(Step::Item(Item::Key(Entry {
                db: st.db,
                key,
                expire_ms: st.expire.take(),
                rdb_type: t,
                value,
                raw,
            })))
        }
        other => Err(Short::Bad(ObjectError::Corrupt {
            offset: at,
            what: format!("unknown RDB opcode or type {other}"),
        })),
    }
}

/// Names the key in an error met while decoding its value.
fn in_key(e: ObjectError, key: &[u8], at: u64) -> ObjectError {
    let key_text = || String::from_utf8_lossy(key).into_owned();
    match e {
        ObjectError::Corrupt { offset, what } => ObjectError::InKey {
            key: key_text(),
            offset,
            what,
        },
        ObjectError::TooLarge { len, max, .. } => ObjectError::InKey {
            key: key_text(),
            offset: at,
            what: format!("object of {len} bytes exceeds the limit of {max} bytes"),
        },
        other => other,
    }
}

/// Skips a module value in its annotated form (`rdbLoadCheckModuleValue`).
fn skip_module_value(c: &mut Cursor<'_>) -> Res<()> {
    loop {
        match c.len()? {
            0 => return Ok(()),
            1 | 2 => {
                c.len()?;
            }
            3 => {
                c.take(4)?;
            }
            4 => {
                c.take(8)?;
            }
            5 => {
                c.string()?;
            }
            other => return Err(c.bad(format!("unknown module value opcode {other}"))),
        }
    }
}
