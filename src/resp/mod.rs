//! TEMPORARY API stub of the RESP codec; replaced on merge.
#![allow(unused_variables, dead_code)]
use bytes::{Bytes, BytesMut};
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Simple(String),
    Error(String),
    Integer(i64),
    Bulk(Bytes),
    Null,
    Array(Vec<Frame>),
    NullArray,
}
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_bulk: usize,
    pub max_array: usize,
    pub max_depth: usize,
    pub max_inline: usize,
}
impl Default for Limits {
    fn default() -> Self {
        todo!()
    }
}
#[derive(thiserror::Error, Debug)]
pub enum RespError {
    #[error("x")]
    X,
}
pub fn check(buf: &[u8], limits: &Limits) -> Result<Option<usize>, RespError> {
    todo!()
}
pub fn parse_frame(buf: &mut BytesMut, limits: &Limits) -> Result<Option<Frame>, RespError> {
    todo!()
}
pub fn parse_command(buf: &mut BytesMut, limits: &Limits) -> Result<Option<Vec<Bytes>>, RespError> {
    todo!()
}
pub fn encode(frame: &Frame, out: &mut BytesMut) {
    todo!()
}
pub fn command(args: &[&[u8]]) -> Bytes {
    todo!()
}
pub fn read_line(buf: &mut BytesMut, max: usize) -> Result<Option<Bytes>, RespError> {
    todo!()
}
pub struct StreamScanner {}
pub struct ScanResult {
    pub getack: Option<usize>,
}
impl StreamScanner {
    pub fn new() -> Self {
        todo!()
    }
    pub fn feed(&mut self, chunk: &[u8]) -> Result<ScanResult, RespError> {
        todo!()
    }
    pub fn at_boundary(&self) -> bool {
        todo!()
    }
}
