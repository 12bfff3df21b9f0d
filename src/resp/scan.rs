//! Incremental master→replica replication-stream scanner: command boundaries and GETACK detection.
//!
//! The stream is a sequence of RESP multibulk commands (`*N\r\n$len\r\n…\r\n`) plus bare `\n`
//! or `\r\n` no-op lines. The scanner is a byte-level state machine: it buffers only the small
//! `*N` / `$len` header lines (at most [`MAX_HEADER_LINE`] bytes), counts bulk payloads without
//! copying them, and inspects only the first two arguments (when at most 16 bytes long).
//! It never allocates.

use super::lex::parse_i64;
use super::RespError;

/// Longest `*N` / `$len` header line (after the type byte, including the `\r`).
pub const MAX_HEADER_LINE: usize = 64;
/// Arguments longer than this are skipped without looking at their contents.
const MAX_INSPECT: usize = 16;

/// What one [`StreamScanner::feed`] call found in its chunk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScanResult {
    /// `Some(end)`: a complete `REPLCONF GETACK <x>` command (case-insensitive) ended in this
    /// chunk, and `end` is the chunk index just after its last byte (the last such command if
    /// there were several).
    pub getack: Option<usize>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Looking for the start of a command (a `*` at the start of a line), after starting in the
    /// middle of the stream or after a parse error in tolerant mode.
    Resync { after_lf: bool },
    /// Between commands.
    Boundary,
    /// Saw `\r` between commands; a `\n` must follow.
    InlineLf,
    /// Inside the `*N` line, after the `*`.
    ArrayHeader,
    /// Expecting the `$` of the next argument.
    BulkType,
    /// Inside the `$len` line, after the `$`.
    BulkHeader,
    /// Inside a bulk payload with `left` bytes to go.
    BulkBody { left: u64 },
    /// Expecting the `\r` after a bulk payload.
    BulkCr,
    /// Expecting the `\n` after a bulk payload.
    BulkLf,
}

/// Tracks RESP command boundaries across arbitrary chunk splits of a replication stream.
///
/// After `feed` returns an error the stream is corrupt: every later `feed` returns that error.
#[derive(Clone, Debug)]
pub struct StreamScanner {
    state: State,
    failed: Option<RespError>,
    line: [u8; MAX_HEADER_LINE],
    line_len: usize,
    /// Number of arguments of the current command.
    argc: u64,
    /// Index of the argument being read.
    argi: u64,
    /// Length of the bulk being read.
    bulk_len: u64,
    /// Contents of the first two arguments, when short enough.
    args: [[u8; MAX_INSPECT]; 2],
    /// Lengths of the first two arguments (`None`: too long to inspect).
    arg_lens: [Option<usize>; 2],
    /// Tolerant mode: a parse error resynchronises instead of failing.
    tolerant: bool,
    resyncs: u64,
}

impl Default for StreamScanner {
    fn default() -> Self {
        Self::new()
    }
}

impl StreamScanner {
    pub fn new() -> Self {
        StreamScanner {
            state: State::Boundary,
            failed: None,
            line: [0; MAX_HEADER_LINE],
            line_len: 0,
            argc: 0,
            argi: 0,
            bulk_len: 0,
            args: [[0; MAX_INSPECT]; 2],
            arg_lens: [None; 2],
            tolerant: false,
            resyncs: 0,
        }
    }

    /// A scanner for a stream joined at an arbitrary byte (a partial resync can start in the
    /// middle of a command): it first looks for a line starting with `*`, and any later parse
    /// error makes it look again instead of failing. It may then miss or misread a command
    /// until it is aligned again, which only matters for GETACK detection.
    pub fn tolerant() -> Self {
        StreamScanner {
            state: State::Resync { after_lf: true },
            tolerant: true,
            ..Self::new()
        }
    }

    /// How many times a tolerant scanner had to resynchronise.
    pub fn resyncs(&self) -> u64 {
        self.resyncs
    }

    /// True when all bytes fed so far end exactly at a command boundary (also before any input).
    pub fn at_boundary(&self) -> bool {
        self.failed.is_none() && self.state == State::Boundary
    }

    /// Scans the next chunk of the stream.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<ScanResult, RespError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let mut result = ScanResult::default();
        let mut i = 0;
        loop {
            match self.scan(chunk, &mut i, &mut result) {
                Ok(()) => return Ok(result),
                Err(_) if self.tolerant => {
                    self.resyncs += 1;
                    let after_lf = i > 0 && chunk.get(i - 1) == Some(&b'\n');
                    self.state = State::Resync { after_lf };
                }
                Err(e) => {
                    self.failed = Some(e.clone());
                    return Err(e);
                }
            }
        }
    }

    fn scan(
        &mut self,
        chunk: &[u8],
        pos: &mut usize,
        result: &mut ScanResult,
    ) -> Result<(), RespError> {
        let mut i = *pos;
        while let Some(&b) = chunk.get(i) {
            i += 1;
            *pos = i;
            match self.state {
                State::Resync { after_lf } => {
                    if after_lf && b == b'*' {
                        self.line_len = 0;
                        self.state = State::ArrayHeader;
                    } else {
                        self.state = State::Resync {
                            after_lf: b == b'\n',
                        };
                    }
                }
                State::Boundary => match b {
                    b'*' => {
                        self.line_len = 0;
                        self.state = State::ArrayHeader;
                    }
                    b'\n' => {}
                    b'\r' => self.state = State::InlineLf,
                    other => return Err(RespError::InvalidType(other)),
                },
                State::InlineLf => match b {
                    b'\n' => self.state = State::Boundary,
                    _ => return Err(RespError::MissingCrlf),
                },
                State::ArrayHeader => {
                    if let Some(argc) = self.header_byte(b)? {
                        if argc > i64::from(i32::MAX) {
                            return Err(RespError::InvalidLength);
                        }
                        match u64::try_from(argc) {
                            // `*0` and negative counts are empty commands (Redis ignores them).
                            Ok(0) | Err(_) => self.state = State::Boundary,
                            Ok(n) => {
                                self.argc = n;
                                self.argi = 0;
                                self.arg_lens = [None; 2];
                                self.state = State::BulkType;
                            }
                        }
                    }
                }
                State::BulkType => match b {
                    b'$' => {
                        self.line_len = 0;
                        self.state = State::BulkHeader;
                    }
                    other => return Err(RespError::ExpectedBulk(other)),
                },
                State::BulkHeader => {
                    if let Some(len) = self.header_byte(b)? {
                        let len = u64::try_from(len).map_err(|_| RespError::InvalidLength)?;
                        self.bulk_len = len;
                        self.state = if len == 0 {
                            State::BulkCr
                        } else {
                            State::BulkBody { left: len }
                        };
                    }
                }
                State::BulkBody { left } => {
                    // `b` is the first payload byte of this step; take as many more as we can.
                    let start = i - 1;
                    let avail = chunk.len() - start;
                    let take = usize::try_from(left).map_or(avail, |l| l.min(avail));
                    let data = chunk.get(start..start + take).unwrap_or(&[]);
                    self.capture(data, left);
                    i = start + take;
                    *pos = i;
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        State::BulkCr
                    } else {
                        State::BulkBody { left }
                    };
                }
                State::BulkCr => match b {
                    b'\r' => self.state = State::BulkLf,
                    _ => return Err(RespError::MissingCrlf),
                },
                State::BulkLf => {
                    if b != b'\n' {
                        return Err(RespError::MissingCrlf);
                    }
                    self.argi += 1;
                    if self.argi < self.argc {
                        self.state = State::BulkType;
                    } else {
                        if self.is_getack() {
                            result.getack = Some(i);
                        }
                        self.state = State::Boundary;
                    }
                }
            }
        }
        Ok(())
    }

    /// Adds one byte to the header line; returns the parsed number once the line is complete.
    fn header_byte(&mut self, b: u8) -> Result<Option<i64>, RespError> {
        if b != b'\n' {
            let slot = self
                .line
                .get_mut(self.line_len)
                .ok_or(RespError::HeaderTooLong {
                    max: MAX_HEADER_LINE,
                })?;
            *slot = b;
            self.line_len += 1;
            return Ok(None);
        }
        let line = self.line.get(..self.line_len).unwrap_or(&[]);
        let Some((b'\r', digits)) = line.split_last() else {
            return Err(RespError::MissingCrlf);
        };
        parse_i64(digits).map(Some).ok_or(RespError::InvalidLength)
    }

    /// Records payload bytes of the first two arguments when they are short enough to inspect.
    fn capture(&mut self, data: &[u8], left: u64) {
        let (Ok(idx), Ok(len)) = (usize::try_from(self.argi), usize::try_from(self.bulk_len))
        else {
            return;
        };
        if len > MAX_INSPECT {
            return;
        }
        let (Some(buf), Some(slot)) = (self.args.get_mut(idx), self.arg_lens.get_mut(idx)) else {
            return;
        };
        // `left` ≤ `len` ≤ MAX_INSPECT here, so the conversions and the range are in bounds.
        let offset = len - usize::try_from(left).unwrap_or(len);
        if let Some(dst) = buf.get_mut(offset..offset + data.len()) {
            dst.copy_from_slice(data);
        }
        *slot = Some(len);
    }

    /// Whether the command just completed is `REPLCONF GETACK <x> [...]` with an odd argument
    /// count, which is when Redis answers it (`replconfCommand` rejects even counts).
    fn is_getack(&self) -> bool {
        let arg = |idx: usize| match (
            self.arg_lens.get(idx).copied().flatten(),
            self.args.get(idx),
        ) {
            (Some(len), Some(buf)) => buf.get(..len),
            _ => None,
        };
        self.argc >= 3
            && self.argc % 2 == 1
            && arg(0).is_some_and(|a| a.eq_ignore_ascii_case(b"REPLCONF"))
            && arg(1).is_some_and(|a| a.eq_ignore_ascii_case(b"GETACK"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GETACK: &[u8] = b"*3\r\n$8\r\nREPLCONF\r\n$6\r\nGETACK\r\n$1\r\n*\r\n";

    fn cmd(args: &[&[u8]]) -> Vec<u8> {
        crate::resp::command(args).to_vec()
    }

    /// A realistic stream as (bytes, boundaries after each piece, GETACK end offsets).
    fn stream(big: usize) -> (Vec<u8>, Vec<usize>, Vec<usize>) {
        let value = vec![b'v'; big];
        let pieces: Vec<(Vec<u8>, bool)> = vec![
            (cmd(&[b"SELECT", b"0"]), false),
            (cmd(&[b"SET", b"key", b"value"]), false),
            (GETACK.to_vec(), true),
            (b"\n".to_vec(), false),
            (cmd(&[b"MULTI"]), false),
            (cmd(&[b"SET", b"big", &value]), false),
            (cmd(&[b"EXEC"]), false),
            (b"\r\n".to_vec(), false),
            (b"*1\r\n$4\r\nping\r\n".to_vec(), false),
            (cmd(&[b"replconf", b"getack", b"*"]), true),
            (cmd(&[b"REPLCONF", b"GETACK"]), false),
            (cmd(&[b"REPLCONF", b"ACK", b"5"]), false),
            (cmd(&[b"DEL", b""]), false),
            (cmd(&[b"REPLCONFX", b"GETACK", b"*"]), false),
        ];
        let (mut out, mut bounds, mut acks) = (Vec::new(), vec![0], Vec::new());
        for (bytes, is_ack) in pieces {
            out.extend_from_slice(&bytes);
            bounds.push(out.len());
            if is_ack {
                acks.push(out.len());
            }
        }
        (out, bounds, acks)
    }

    fn last_ack_in(acks: &[usize], from: usize, to: usize) -> Option<usize> {
        acks.iter()
            .rev()
            .find(|&&a| a > from && a <= to)
            .map(|&a| a - from)
    }

    #[test]
    fn single_getack() {
        let mut s = StreamScanner::new();
        assert!(s.at_boundary());
        assert_eq!(s.feed(GETACK).unwrap().getack, Some(37));
        assert!(s.at_boundary());
        assert_eq!(s.feed(b"").unwrap().getack, None);
    }

    #[test]
    fn every_two_way_split_with_a_1mb_bulk() {
        let (data, bounds, acks) = stream(1 << 20);
        for p in 0..=data.len() {
            let mut s = StreamScanner::new();
            let (a, b) = data.split_at(p);
            let r1 = s.feed(a).unwrap();
            assert_eq!(r1.getack, last_ack_in(&acks, 0, p), "split {p}");
            assert_eq!(s.at_boundary(), bounds.contains(&p), "split {p}");
            let r2 = s.feed(b).unwrap();
            assert_eq!(r2.getack, last_ack_in(&acks, p, data.len()), "split {p}");
            assert!(s.at_boundary());
        }
    }

    #[test]
    fn every_three_way_split_and_byte_by_byte() {
        let (data, bounds, acks) = stream(40);
        for p in 0..=data.len() {
            for q in p..=data.len() {
                let mut s = StreamScanner::new();
                let mut seen = Vec::new();
                for (start, end) in [(0, p), (p, q), (q, data.len())] {
                    let r = s.feed(&data[start..end]).unwrap();
                    seen.push(r.getack.map(|e| e + start));
                    assert_eq!(s.at_boundary(), bounds.contains(&end), "{p} {q}");
                }
                let want: Vec<_> = [(0, p), (p, q), (q, data.len())]
                    .iter()
                    .map(|&(a, b)| last_ack_in(&acks, a, b).map(|e| e + a))
                    .collect();
                assert_eq!(seen, want, "{p} {q}");
            }
        }
        let mut s = StreamScanner::new();
        let mut found = Vec::new();
        for (i, byte) in data.iter().enumerate() {
            if s.feed(std::slice::from_ref(byte)).unwrap().getack == Some(1) {
                found.push(i + 1);
            }
            assert_eq!(s.at_boundary(), bounds.contains(&(i + 1)));
        }
        assert_eq!(found, acks);
    }

    #[test]
    fn several_getacks_in_one_chunk_reports_the_last() {
        let mut data = GETACK.to_vec();
        data.extend_from_slice(GETACK);
        data.extend_from_slice(b"*1\r\n$4\r\nPING\r\n");
        let mut s = StreamScanner::new();
        assert_eq!(s.feed(&data).unwrap().getack, Some(74));
    }

    #[test]
    fn empty_and_null_arrays_are_boundaries() {
        let mut s = StreamScanner::new();
        s.feed(b"*0\r\n*-1\r\n").unwrap();
        assert!(s.at_boundary());
    }

    #[test]
    fn errors_are_reported_and_sticky() {
        let cases: &[(&[u8], RespError)] = &[
            (b"SET k v\r\n", RespError::InvalidType(b'S')),
            (b"\rx", RespError::MissingCrlf),
            (b"*1\r\n:1\r\n", RespError::ExpectedBulk(b':')),
            (b"*1\n", RespError::MissingCrlf),
            (b"*x\r\n", RespError::InvalidLength),
            (b"*1\r\n$-1\r\n", RespError::InvalidLength),
            (b"*1\r\n$1\r\nab", RespError::MissingCrlf),
            (b"*1\r\n$1\r\na\rx", RespError::MissingCrlf),
            (b"*3000000000\r\n", RespError::InvalidLength),
        ];
        for (input, err) in cases {
            let mut s = StreamScanner::new();
            assert_eq!(s.feed(input), Err(err.clone()), "{input:?}");
            assert!(!s.at_boundary());
            assert_eq!(s.feed(b"\n"), Err(err.clone()));
        }
    }

    #[test]
    fn header_lines_are_bounded() {
        let mut s = StreamScanner::new();
        s.feed(b"*1\r\n$").unwrap();
        s.feed(&[b'0'; MAX_HEADER_LINE]).unwrap();
        assert_eq!(
            s.feed(b"0"),
            Err(RespError::HeaderTooLong {
                max: MAX_HEADER_LINE
            })
        );
        // 63 digits + '\r' fit exactly (leading zeros are still a valid number).
        let mut s = StreamScanner::new();
        s.feed(b"*1\r\n$").unwrap();
        s.feed(&[b'0'; MAX_HEADER_LINE - 2]).unwrap();
        s.feed(b"1\r\nx\r\n").unwrap();
        assert!(s.at_boundary());
    }

    #[test]
    fn tolerant_scanner_joins_mid_command_and_survives_garbage() {
        let mut stream = cmd(&[b"SET", b"key", b"a value with\r\n*3 inside"]);
        stream.extend_from_slice(&cmd(&[b"SET", b"k2", b"v2"]));
        stream.extend_from_slice(GETACK);
        for start in 0..stream.len() {
            let mut s = StreamScanner::tolerant();
            let r = s.feed(&stream[start..]).expect("tolerant never fails");
            if start <= stream.len() - GETACK.len() {
                assert_eq!(r.getack, Some(stream.len() - start), "joined at {start}");
                assert!(s.at_boundary());
            }
        }
        let mut s = StreamScanner::tolerant();
        s.feed(b"\r\n*2\r\n$x garbage\n").unwrap();
        assert!(s.resyncs() >= 1);
        assert_eq!(s.feed(GETACK).unwrap().getack, Some(GETACK.len()));
    }
}
