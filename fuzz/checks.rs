//! Invariant checks shared by the fuzz targets (`fuzz/fuzz_targets/*.rs`) and the corpus replay
//! test (`tests/fuzz_corpus.rs`): each function takes arbitrary bytes, drives one codec, and
//! panics when an invariant does not hold. Chunk splits are derived from the input itself, so a
//! corpus file replays the same way under libFuzzer and under `cargo test`.

use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use georelay::config::{Config, ConfigError};
use georelay::link::{self, frame, Compression};
use georelay::log::record::{self, Decoded, HEADER_LEN};
use georelay::rdb::{self, EofMark, RdbError, RdbVerifier, TransferHeader, EOF_MARK_LEN};
use georelay::resp::{self, Frame, Limits, RespError, StreamScanner};

/// A target's check: panics when an invariant fails on the input.
pub type Check = fn(&[u8]);

/// Every target: its name (the corpus directory `fuzz/corpus/<name>/`) and its check.
pub const TARGETS: &[(&str, Check)] = &[
    ("resp_frame", resp_frame),
    ("resp_command", resp_command),
    ("stream_scanner", stream_scanner),
    ("rdb_transfer", rdb_transfer),
    ("link_frame", link_frame),
    ("log_record", log_record),
    ("config", config),
    ("rdb_objects", rdb_objects),
];

/// Small limits, so that every limit is reachable by short inputs.
const SMALL: Limits = Limits {
    max_bulk: 256,
    max_array: 16,
    max_depth: 4,
    max_inline: 64,
};

/// Limits that never refuse what a smaller limit accepted (used to re-parse encodings).
const ROOMY: Limits = Limits {
    max_bulk: usize::MAX,
    max_array: usize::MAX,
    max_depth: 64,
    max_inline: usize::MAX,
};

// ---------------------------------------------------------------------------------------------
// Input-derived helpers

/// FNV-1a of the input: the seed of every "random" choice, so a replay is deterministic.
fn seed(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// Chunk boundaries for `data`: a mix of 1..4, 1..32, 1..512 and 1..8192-byte pieces.
pub fn chunks(data: &[u8]) -> Vec<Range<usize>> {
    let mut x = seed(data) | 1;
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let r = xorshift(&mut x);
        let size = 1 + match r % 4 {
            0 => (r >> 8) % 4,
            1 => (r >> 8) % 32,
            2 => (r >> 8) % 512,
            _ => (r >> 8) % 8192,
        } as usize;
        let end = pos.saturating_add(size).min(data.len());
        out.push(pos..end);
        pos = end;
    }
    out
}

/// The whole input as one chunk.
fn single(data: &[u8]) -> Vec<Range<usize>> {
    std::iter::once(0..data.len()).collect()
}

/// Prefix lengths worth checking below `n`: all of them for short frames, a spread otherwise.
fn cuts(n: usize) -> Vec<usize> {
    if n <= 256 {
        (0..n).collect()
    } else {
        let mut v: Vec<usize> = (0..64).map(|i| i * n / 64).collect();
        v.extend([n - 2, n - 1]);
        v
    }
}

// ---------------------------------------------------------------------------------------------
// RESP frames

/// `check` and `parse_frame` agree on every frame of the input (with small and default limits);
/// every strict prefix of an accepted frame is "incomplete"; and a parsed frame survives
/// encode → parse (up to the documented RESP3 folding and CR/LF replacement).
pub fn resp_frame(data: &[u8]) {
    for limits in [SMALL, Limits::default()] {
        let mut buf = BytesMut::from(data);
        loop {
            let len = buf.len();
            let checked = resp::check(&buf, &limits);
            let whole = match checked {
                Ok(Some(n)) => buf.get(..n).map(<[u8]>::to_vec),
                _ => None,
            };
            let parsed = resp::parse_frame(&mut buf, &limits);
            match (checked, parsed) {
                (Ok(Some(n)), Ok(Some(frame))) => {
                    assert!(n > 0, "an accepted frame has bytes");
                    assert_eq!(
                        buf.len(),
                        len - n,
                        "parse_frame consumed what check measured"
                    );
                    let whole = whole.unwrap_or_default();
                    for cut in cuts(n) {
                        assert_eq!(
                            resp::check(&whole[..cut], &limits),
                            Ok(None),
                            "prefix {cut} of the {n}-byte frame {whole:?} is not incomplete"
                        );
                    }
                    resp_round_trip(&frame);
                }
                (Ok(None), Ok(None)) => {
                    assert_eq!(buf.len(), len, "incomplete input must not be consumed");
                    break;
                }
                (Err(a), Err(b)) => {
                    assert_eq!(a, b, "check and parse_frame report different errors");
                    break;
                }
                other => panic!("check and parse_frame disagree: {other:?}"),
            }
        }
    }
}

/// What a frame looks like after one encode → parse: `\r`/`\n` in text become spaces.
fn resp_normalize(frame: &Frame) -> Frame {
    let clean = |s: &str| s.replace(['\r', '\n'], " ");
    match frame {
        Frame::Simple(s) => Frame::Simple(clean(s)),
        Frame::Error(s) => Frame::Error(clean(s)),
        Frame::Array(items) => Frame::Array(items.iter().map(resp_normalize).collect()),
        other => other.clone(),
    }
}

fn resp_round_trip(frame: &Frame) {
    let mut wire = BytesMut::new();
    resp::encode(frame, &mut wire);
    let encoded = wire.clone().freeze();
    assert_eq!(resp::check(&wire, &ROOMY), Ok(Some(encoded.len())));
    let again = resp::parse_frame(&mut wire, &ROOMY);
    assert_eq!(
        again,
        Ok(Some(resp_normalize(frame))),
        "encode → parse of {frame:?}"
    );
    assert!(wire.is_empty(), "the encoding is exactly one frame");
    if let Ok(Some(again)) = again {
        let mut twice = BytesMut::new();
        resp::encode(&again, &mut twice);
        assert_eq!(
            twice.freeze(),
            encoded,
            "encoding is a fixed point after one round"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// RESP client commands

/// Commands parsed from the whole buffer and from arbitrary chunk splits are the same; every
/// command consumes bytes; multibulk commands survive `resp::command` → parse; inline commands
/// are one line split on ASCII whitespace.
pub fn resp_command(data: &[u8]) {
    let whole = drive_commands(data, &single(data), &SMALL);
    let split = drive_commands(data, &chunks(data), &SMALL);
    assert_eq!(whole, split, "chunking changed the parsed commands");
    let mut start = 0;
    for (args, end) in &whole.commands {
        let src = &data[start..*end];
        assert!(!src.is_empty(), "a command consumes bytes");
        if src.first() == Some(&b'*') {
            let refs: Vec<&[u8]> = args.iter().map(|a| &a[..]).collect();
            let mut wire = BytesMut::from(&resp::command(&refs)[..]);
            assert_eq!(
                resp::parse_command(&mut wire, &SMALL),
                Ok(Some(args.clone()))
            );
            assert!(wire.is_empty());
        } else {
            let (&last, line) = src.split_last().unwrap_or((&0, &[][..]));
            assert_eq!(last, b'\n', "an inline command ends with LF");
            assert!(!line.contains(&b'\n'), "an inline command is one line");
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let want: Vec<&[u8]> = line
                .split(u8::is_ascii_whitespace)
                .filter(|a| !a.is_empty())
                .collect();
            let got: Vec<&[u8]> = args.iter().map(|a| &a[..]).collect();
            assert_eq!(got, want, "inline command split");
        }
        start = *end;
    }
}

#[derive(Debug, PartialEq)]
struct Commands {
    /// Each command and the input index just after it.
    commands: Vec<(Vec<Bytes>, usize)>,
    error: Option<RespError>,
    /// Input bytes consumed by the commands (up to the error, if any).
    consumed: usize,
}

fn drive_commands(data: &[u8], pieces: &[Range<usize>], limits: &Limits) -> Commands {
    let mut buf = BytesMut::new();
    let mut out = Commands {
        commands: Vec::new(),
        error: None,
        consumed: 0,
    };
    let mut consumed = 0;
    for piece in pieces {
        buf.extend_from_slice(&data[piece.clone()]);
        loop {
            let before = buf.len();
            match resp::parse_command(&mut buf, limits) {
                Ok(Some(args)) => {
                    consumed += before - buf.len();
                    out.commands.push((args, consumed));
                }
                Ok(None) => {
                    assert_eq!(buf.len(), before, "incomplete command consumed bytes");
                    break;
                }
                Err(e) => {
                    out.error = Some(e);
                    out.consumed = consumed;
                    return out;
                }
            }
        }
    }
    out.consumed = consumed;
    out
}

// ---------------------------------------------------------------------------------------------
// Replication-stream scanner

/// Byte-at-a-time scanning is the reference: any chunking reports the same errors, boundaries
/// and (last-per-chunk) GETACK ends, in strict and tolerant mode. A stream that `parse_command`
/// reads completely as multibulk commands and keepalives is accepted by the strict scanner,
/// which finds exactly its `REPLCONF GETACK` commands; and the tolerant scanner then never
/// resynchronises.
pub fn stream_scanner(data: &[u8]) {
    let pieces = chunks(data);
    let strict = scan_bytewise(data, StreamScanner::new());
    replay_scan(data, &pieces, StreamScanner::new(), &strict);
    replay_scan(data, &single(data), StreamScanner::new(), &strict);
    let tolerant = scan_bytewise(data, StreamScanner::tolerant());
    assert!(tolerant.error.is_none(), "the tolerant scanner never fails");
    replay_scan(data, &pieces, StreamScanner::tolerant(), &tolerant);
    replay_scan(data, &single(data), StreamScanner::tolerant(), &tolerant);
    if strict.error.is_none() {
        assert_eq!(
            tolerant.acks, strict.acks,
            "tolerant mode on a clean stream"
        );
        assert_eq!(
            tolerant.resyncs, 0,
            "tolerant mode resynced on a clean stream"
        );
    }
    if let Some(acks) = reference_getacks(data) {
        assert_eq!(
            strict.error, None,
            "the scanner refused a stream parse_command reads"
        );
        assert_eq!(
            strict.boundaries.last(),
            Some(&data.len()),
            "stream ends at a boundary"
        );
        assert_eq!(strict.acks, acks, "GETACK ends");
    }
}

struct Scan {
    /// Input index just after the end of each GETACK command.
    acks: Vec<usize>,
    /// Input lengths after which the scanner is at a command boundary.
    boundaries: Vec<usize>,
    /// Index of the byte that failed, and the error.
    error: Option<(usize, RespError)>,
    resyncs: u64,
}

fn scan_bytewise(data: &[u8], mut s: StreamScanner) -> Scan {
    let mut scan = Scan {
        acks: Vec::new(),
        boundaries: Vec::new(),
        error: None,
        resyncs: 0,
    };
    if s.at_boundary() {
        scan.boundaries.push(0);
    }
    for (i, byte) in data.iter().enumerate() {
        match s.feed(std::slice::from_ref(byte)) {
            Ok(r) => {
                assert!(
                    matches!(r.getack, None | Some(1)),
                    "getack {r:?} in a 1-byte chunk"
                );
                if r.getack.is_some() {
                    scan.acks.push(i + 1);
                }
                if s.at_boundary() {
                    scan.boundaries.push(i + 1);
                }
            }
            Err(e) => {
                assert!(!s.at_boundary(), "a failed scanner is not at a boundary");
                assert_eq!(s.feed(b"*"), Err(e.clone()), "errors are sticky");
                scan.error = Some((i, e));
                break;
            }
        }
    }
    scan.resyncs = s.resyncs();
    scan
}

fn replay_scan(data: &[u8], pieces: &[Range<usize>], mut s: StreamScanner, want: &Scan) {
    for piece in pieces {
        let result = s.feed(&data[piece.clone()]);
        match &want.error {
            Some((at, e)) if *at < piece.end => {
                assert_eq!(
                    result,
                    Err(e.clone()),
                    "error at byte {at} in chunk {piece:?}"
                );
                return;
            }
            _ => {}
        }
        let r = match result {
            Ok(r) => r,
            Err(e) => panic!("chunk {piece:?} failed with {e:?}, byte-at-a-time did not"),
        };
        let last_ack = want
            .acks
            .iter()
            .rev()
            .find(|&&a| a > piece.start && a <= piece.end)
            .map(|&a| a - piece.start);
        assert_eq!(r.getack, last_ack, "GETACK in chunk {piece:?}");
        assert_eq!(
            s.at_boundary(),
            want.boundaries.contains(&piece.end),
            "boundary after chunk {piece:?}"
        );
    }
    assert_eq!(
        s.resyncs(),
        want.resyncs,
        "resync count depends on chunking"
    );
}

/// When `parse_command` reads the whole input as multibulk commands and bare `\n` / `\r\n`
/// keepalives, the ends of its `REPLCONF GETACK` commands (odd argument count ≥ 3, as Redis
/// answers them); `None` for any other input.
fn reference_getacks(data: &[u8]) -> Option<Vec<usize>> {
    let mut buf = BytesMut::from(data);
    let mut acks = Vec::new();
    let mut pos = 0;
    while !buf.is_empty() {
        let first = buf.first().copied();
        let before = buf.len();
        let args = resp::parse_command(&mut buf, &ROOMY).ok()??;
        let used = before - buf.len();
        let src = &data[pos..pos + used];
        pos += used;
        if first != Some(b'*') && src != b"\n" && src != b"\r\n" {
            return None;
        }
        let is = |i: usize, word: &[u8]| args.get(i).is_some_and(|a| a.eq_ignore_ascii_case(word));
        if args.len() >= 3 && args.len() % 2 == 1 && is(0, b"REPLCONF") && is(1, b"GETACK") {
            acks.push(pos);
        }
    }
    Some(acks)
}

// ---------------------------------------------------------------------------------------------
// RDB transfer

/// The input is read twice: as the bytes that follow `+FULLRESYNC` (a transfer header line,
/// then the payload) and as a bare RDB. Checks the header grammar, EOF-mark detection at every
/// chunk end, the streaming verifier against a one-shot reference (also after dropping the
/// mark), and that AUX fields of a prefix are a prefix of the AUX fields of the whole.
pub fn rdb_transfer(data: &[u8]) {
    check_rdb(data);
    let Some(nl) = data.iter().position(|&b| b == b'\n') else {
        return;
    };
    let (line, payload) = (&data[..nl], &data[nl + 1..]);
    match rdb::parse_transfer_header(line) {
        Ok(TransferHeader::Len(n)) => {
            let digits = line
                .strip_suffix(b"\r")
                .unwrap_or(line)
                .get(1..)
                .unwrap_or(&[]);
            let text = std::str::from_utf8(digits).unwrap_or("");
            assert!(!digits.is_empty() && digits.iter().all(u8::is_ascii_digit));
            assert_eq!(text.parse::<u64>(), Ok(n), "length of {line:?}");
            let canonical = format!("${n}");
            assert_eq!(
                rdb::parse_transfer_header(canonical.as_bytes()),
                Ok(TransferHeader::Len(n))
            );
            let take = usize::try_from(n).map_or(payload.len(), |n| n.min(payload.len()));
            check_rdb(&payload[..take]);
        }
        Ok(TransferHeader::Eof(mark)) => {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            assert_eq!(line.get(..5), Some(&b"$EOF:"[..]));
            assert_eq!(line.get(5..), Some(&mark[..]));
            check_eof_transfer(payload, mark);
        }
        Err(RdbError::MasterError(text)) => {
            assert_eq!(line.first(), Some(&b'-'));
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            assert_eq!(text, String::from_utf8_lossy(&line[1..]));
        }
        Err(RdbError::InvalidTransferHeader { .. }) => {
            assert_ne!(line.first(), Some(&b'-'));
        }
        Err(other) => panic!("unexpected transfer header error {other:?}"),
    }
}

/// `EofMark::feed` says "the bytes so far end with the mark" after every chunk; the verifier fed
/// up to the first mark, minus the mark, judges the RDB like the one-shot reference.
fn check_eof_transfer(payload: &[u8], mark: [u8; EOF_MARK_LEN]) {
    let mut detector = EofMark::new(mark);
    assert_eq!(detector.mark(), &mark);
    for piece in chunks(payload) {
        let so_far = &payload[..piece.end];
        assert_eq!(
            detector.feed(&payload[piece.clone()]),
            so_far.ends_with(&mark),
            "EOF mark after {} bytes",
            piece.end
        );
    }
    // The transfer ends at the first chunk that ends with the mark; use the first occurrence.
    let Some(at) = payload.windows(EOF_MARK_LEN).position(|w| w == mark) else {
        return;
    };
    let end = at + EOF_MARK_LEN;
    let mut verifier = RdbVerifier::new();
    for piece in chunks(&payload[..end]) {
        verifier.feed(&payload[piece]);
    }
    verifier.drop_last(EOF_MARK_LEN);
    assert_eq!(
        verifier.verdict(),
        reference_verdict(&payload[..at]),
        "after the EOF mark"
    );
}

/// Header, AUX fields (and their prefixes) and the streaming verifier on a would-be RDB.
fn check_rdb(rdb: &[u8]) {
    let header = rdb::parse_header(rdb);
    let full = rdb::aux_fields(rdb);
    match (&header, &full) {
        (Err(h), Err(a)) => assert_eq!(h, a, "aux_fields reports the header error"),
        (Ok(_), _) => {}
        (Err(h), Ok(_)) => panic!("aux_fields accepted an RDB whose header fails: {h:?}"),
    }
    for cut in cuts(rdb.len()) {
        match (rdb::aux_fields(&rdb[..cut]), &full) {
            (Ok(part), Ok(all)) => {
                assert!(part.len() <= all.len(), "prefix {cut} has more fields");
                assert_eq!(part[..], all[..part.len()], "prefix {cut} fields");
            }
            (Ok(_), Err(_)) => {}
            (Err(e), _) if cut < 9 => assert!(matches!(e, RdbError::Truncated { .. })),
            (Err(e), Ok(_)) => panic!("prefix {cut} fails ({e:?}), the whole does not"),
            (Err(e), Err(f)) => assert_eq!(&e, f, "prefix {cut} fails differently"),
        }
    }
    let want = reference_verdict(rdb);
    let mut verifier = RdbVerifier::new();
    for piece in chunks(rdb) {
        verifier.feed(&rdb[piece]);
    }
    assert_eq!(verifier.verdict(), want, "streaming verifier");
    let mut verifier = RdbVerifier::new();
    verifier.feed(rdb);
    assert_eq!(verifier.verdict(), want, "one-shot verifier");
}

/// What `RdbVerifier` must conclude about `rdb`: its version, and the CRC status of its last 9
/// bytes (`Some(true)` valid, `None` disabled, `Some(false)` otherwise).
fn reference_verdict(rdb: &[u8]) -> Result<(u32, Option<bool>), RdbError> {
    let header = rdb::parse_header(rdb)?;
    let split = rdb.len() - 9;
    let mut crc = rdb::Crc64::new();
    crc.update(&rdb[..=split]);
    let ok = match rdb::check_trailer(crc.finish(), &rdb[split..]) {
        Ok(rdb::TrailerCheck::Valid) => Some(true),
        Ok(rdb::TrailerCheck::Disabled) => None,
        Err(_) => Some(false),
    };
    Ok((header.version, ok))
}

// ---------------------------------------------------------------------------------------------
// Link frames

const LINK_MAX: usize = 4096;
const LINK_RAW_MAX: usize = 64 * 1024;

/// Frames decoded from the whole buffer and from arbitrary chunk splits are the same, and each
/// re-encodes to exactly the bytes it was decoded from. The input is also parsed as one frame
/// body, which must agree with `decode` of the same body behind a length header.
pub fn link_frame(data: &[u8]) {
    let whole = drive_frames(data, &single(data));
    let split = drive_frames(data, &chunks(data));
    assert_eq!(whole, split, "chunking changed the decoded frames");
    let body = frame::parse_body(Bytes::copy_from_slice(data));
    let Ok(len) = u32::try_from(data.len()) else {
        return;
    };
    let mut framed = BytesMut::from(&len.to_le_bytes()[..]);
    framed.extend_from_slice(data);
    let wire = framed.clone().freeze();
    let decoded = frame::decode(&mut framed, data.len());
    match (&body, decoded) {
        (Ok(a), Ok(Some(b))) => {
            assert_eq!(a, &b);
            check_link_frame(&b, &wire);
        }
        (Err(a), Err(b)) => assert_eq!(format!("{a:?}"), format!("{b:?}")),
        (a, b) => panic!("parse_body {a:?} and decode {b:?} disagree"),
    }
}

#[derive(Debug, PartialEq)]
struct Frames {
    frames: Vec<frame::Frame>,
    error: Option<String>,
    consumed: usize,
}

fn drive_frames(data: &[u8], pieces: &[Range<usize>]) -> Frames {
    let mut buf = BytesMut::new();
    let mut out = Frames {
        frames: Vec::new(),
        error: None,
        consumed: 0,
    };
    for piece in pieces {
        buf.extend_from_slice(&data[piece.clone()]);
        loop {
            let before = buf.len();
            match frame::decode(&mut buf, LINK_MAX) {
                Ok(Some(f)) => {
                    let used = before - buf.len();
                    assert!((frame::HEADER_LEN + 1..=frame::HEADER_LEN + LINK_MAX).contains(&used));
                    check_link_frame(&f, &data[out.consumed..out.consumed + used]);
                    out.consumed += used;
                    out.frames.push(f);
                }
                Ok(None) => {
                    assert_eq!(buf.len(), before, "an incomplete frame consumed bytes");
                    break;
                }
                Err(e) => {
                    if let link::FrameError::TooLarge { len, max } = e {
                        assert!(len > max && max == LINK_MAX);
                    }
                    out.error = Some(format!("{e:?}"));
                    return out;
                }
            }
        }
    }
    out
}

/// A decoded frame: canonical encoding (byte for byte), valid replids, and for log frames a
/// payload that inflates to `raw_len` bytes and survives compress → inflate.
fn check_link_frame(f: &frame::Frame, wire: &[u8]) {
    let mut out = BytesMut::new();
    frame::encode(f, &mut out);
    assert_eq!(&out[..], wire, "encode(decode(x)) == x for {}", f.name());
    let mut head = BytesMut::new();
    if let Some(payload) = frame::encode_head(f, &mut head) {
        head.extend_from_slice(&payload);
    }
    assert_eq!(&head[..], wire, "encode_head + payload == encode");
    match f {
        frame::Frame::Hello { replid, .. } => {
            assert!(replid.as_deref().is_none_or(frame::is_replid));
        }
        frame::Frame::Continue { replid, .. }
        | frame::Frame::Full { replid, .. }
        | frame::Frame::ReplidSwitch { replid, .. } => assert!(frame::is_replid(replid)),
        frame::Frame::Log {
            offset,
            timestamp_us,
            compressed,
            raw_len,
            data,
        } => {
            let payload = link::log_payload(*compressed, *raw_len, data, LINK_RAW_MAX);
            if !compressed {
                assert_eq!(
                    payload.as_ref().ok(),
                    Some(data),
                    "uncompressed payload as is"
                );
            }
            if let Ok(raw) = payload {
                assert_eq!(raw.len(), *raw_len as usize, "payload inflates to raw_len");
                let again =
                    link::log_frame(*offset, *timestamp_us, raw.clone(), Compression::Zstd, 1);
                let back = match again {
                    Ok(frame::Frame::Log {
                        compressed,
                        raw_len,
                        data,
                        ..
                    }) => link::log_payload(compressed, raw_len, &data, LINK_RAW_MAX),
                    other => panic!("log_frame gave {other:?}"),
                };
                assert_eq!(back.ok(), Some(raw), "compress → inflate");
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// Log records

/// Decoding a record (and the records after it) classifies it consistently; the input as a
/// payload makes a record that decodes to itself, and whose every flipped byte after the length
/// field is caught by the CRC.
pub fn log_record(data: &[u8]) {
    let mut pos = 0;
    while let Some(total) = check_record(&data[pos..]) {
        pos += total;
    }
    let Ok(len) = u32::try_from(data.len()) else {
        return;
    };
    if !record::plausible(len) {
        return;
    }
    let h = seed(data);
    let (first_offset, timestamp_us) = (h >> 1, h.rotate_left(17));
    let mut rec = record::encode_header(data, first_offset, timestamp_us).to_vec();
    rec.extend_from_slice(data);
    match record::decode(&rec) {
        Decoded::Complete {
            header,
            payload,
            total,
        } => {
            assert_eq!(
                (header.first_offset, header.timestamp_us),
                (first_offset, timestamp_us)
            );
            assert_eq!((payload, total), (data, rec.len()));
        }
        other => panic!("a fresh record decodes as {other:?}"),
    }
    assert_eq!(
        record::decode(&rec[..rec.len() - 1]),
        Decoded::Torn { needed: rec.len() }
    );
    let at = 4 + (h as usize) % (rec.len() - 4);
    let bit = 1u8 << ((h >> 40) % 8);
    rec[at] ^= bit;
    assert!(
        matches!(record::decode(&rec), Decoded::CrcMismatch { .. }),
        "flip of bit {bit:#x} at byte {at} not detected"
    );
}

/// Checks `decode` on `buf` against its header; returns the record size when it is complete.
fn check_record(buf: &[u8]) -> Option<usize> {
    let decoded = record::decode(buf);
    let Some(h) = record::decode_header(buf) else {
        assert!(buf.len() < HEADER_LEN);
        assert_eq!(decoded, Decoded::Torn { needed: HEADER_LEN });
        return None;
    };
    if !record::plausible(h.len) {
        assert_eq!(decoded, Decoded::BadLength { len: h.len });
        return None;
    }
    // A plausible header is what segment scans and readers trust for the next offset.
    assert_eq!(
        h.end_offset(),
        h.first_offset.saturating_add(u64::from(h.len))
    );
    let total = HEADER_LEN + h.len as usize;
    assert_eq!(h.total_len(), total as u64);
    if buf.len() < total {
        assert_eq!(decoded, Decoded::Torn { needed: total });
        return None;
    }
    let crc = record::checksum(h.first_offset, h.timestamp_us, &buf[HEADER_LEN..total]);
    match decoded {
        Decoded::Complete {
            header,
            payload,
            total: t,
        } => {
            assert_eq!(crc, h.crc);
            assert_eq!((header, payload, t), (h, &buf[HEADER_LEN..total], total));
            let again = record::encode_header(payload, h.first_offset, h.timestamp_us);
            assert_eq!(&again[..], &buf[..HEADER_LEN], "header re-encodes");
            Some(total)
        }
        Decoded::CrcMismatch { header } => {
            assert_ne!(crc, h.crc);
            assert_eq!(header, h);
            None
        }
        other => panic!("a whole plausible record decodes as {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Config

/// `Config::parse` on any UTF-8 text returns a config that passed validation, or errors that
/// say something; it never panics.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // A directory that does not exist: relative password/cert files are never found.
    let origin = Path::new("/nonexistent/georelay-fuzz/georelay.toml");
    match Config::parse(text, origin) {
        Ok(c) => {
            assert!(!c.name.is_empty());
            assert!(c.log.segment_bytes >= 4096);
            assert!(c.log.max_bytes >= c.log.segment_bytes.saturating_mul(2));
            assert!(c.serve_timeout >= Duration::from_secs(1));
            assert!(c.max_replicas >= 1);
            assert!(c.log.snapshot_after > 0);
        }
        Err(ConfigError::Invalid(problems)) => {
            assert!(!problems.is_empty());
            assert!(problems.iter().all(|p| !p.is_empty()));
        }
        Err(ConfigError::Syntax { message, .. }) => assert!(!message.is_empty()),
        Err(e @ ConfigError::Read { .. }) => panic!("parse does not read the file: {e}"),
    }
}

// ---------------------------------------------------------------------------------------------
// RDB objects

/// Headers an input without its own magic is decoded under (picked by its first byte).
const RDB_HEADS: [&[u8]; 4] = [b"REDIS0009", b"REDIS0010", b"REDIS0012", b"VALKEY080"];

/// All items of `rdb` fed in `parts`, and the error that stopped it, if any.
fn rdb_items(
    rdb: &[u8],
    parts: &[Range<usize>],
) -> (Vec<rdb::objects::Item>, Option<rdb::objects::ObjectError>) {
    let mut d = rdb::objects::RdbDecoder::with_limit(1 << 20);
    let mut items = Vec::new();
    for r in parts {
        d.feed(&rdb[r.clone()]);
        loop {
            match d.next_item() {
                Ok(Some(item)) => items.push(item),
                Ok(None) => break,
                Err(e) => return (items, Some(e)),
            }
        }
    }
    loop {
        match d.finish_item() {
            Ok(Some(item)) => items.push(item),
            Ok(None) => return (items, None),
            Err(e) => return (items, Some(e)),
        }
    }
}

/// The object decoder never panics; any chunk split gives the same items and error as the
/// whole input; errors name something; every decoded key re-decodes from its own raw bytes
/// (so DUMP payloads cut from `raw` are exact), and its DUMP payload has the documented
/// footer.
pub fn rdb_objects(data: &[u8]) {
    let owned;
    let input = if data.starts_with(b"REDIS") || data.starts_with(b"VALKEY") {
        data
    } else {
        let head = RDB_HEADS[usize::from(data.first().copied().unwrap_or(0)) % RDB_HEADS.len()];
        owned = [head, data.get(1..).unwrap_or(&[])].concat();
        &owned
    };
    let (items, err) = rdb_items(input, &single(input));
    let (chunked, chunked_err) = rdb_items(input, &chunks(input));
    assert_eq!(items, chunked, "items differ by chunking");
    assert_eq!(err, chunked_err, "error differs by chunking");
    if let Some(e) = &err {
        assert!(!e.to_string().is_empty());
    }
    // An input shorter than a header decodes to no keys (found by the fuzzer: "REDISS0").
    let Some(head) = input.get(..9) else {
        assert!(items.is_empty());
        return;
    };
    let version = rdb::parse_header(head).map_or(0, |h| h.version);
    for item in &items {
        let rdb::objects::Item::Key(e) = item else {
            continue;
        };
        let mut one = head.to_vec();
        one.push(e.rdb_type);
        one.push(0x80);
        one.extend_from_slice(&(e.key.len() as u32).to_be_bytes());
        one.extend_from_slice(&e.key);
        one.extend_from_slice(&e.raw);
        one.push(0xff);
        one.extend_from_slice(&[0; 8]);
        let (again, again_err) = rdb_items(&one, &single(&one));
        assert_eq!(again_err, None, "raw bytes of {:?} do not re-decode", e.key);
        match again.first() {
            Some(rdb::objects::Item::Key(back)) => {
                assert_eq!(back.value, e.value);
                assert_eq!(back.raw, e.raw);
            }
            other => panic!("re-decoded {other:?}"),
        }
        let payload = rdb::objects::dump_payload(e, version as u16);
        assert_eq!(payload.len(), e.raw.len() + 11);
        assert_eq!(payload[0], e.rdb_type);
    }
}
