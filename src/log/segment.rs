//! Segment files: naming, creation, appending records, the sparse offset index, and scanning
//! an existing file (full CRC check for the tail, headers only for the rest).

use std::fs::{File, OpenOptions};
use std::io::{BufReader, ErrorKind, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::fsutil::{io_err, sync_dir};
use super::record::{self, RecordHeader, HEADER_LEN};
use super::LogError;

/// One index entry roughly every this many file bytes.
pub(crate) const INDEX_EVERY: u64 = 256 * 1024;

/// Index point: the record starting at file position `pos` has first offset `offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    pub offset: u64,
    pub pos: u64,
    pub ts: u64,
}

/// In-memory description of one segment file.
#[derive(Debug)]
pub(crate) struct Segment {
    /// First offset (from the file name).
    pub first: u64,
    /// Offset just after the last valid record (== `first` when empty).
    pub end: u64,
    /// File bytes holding valid records.
    pub size: u64,
    pub path: PathBuf,
    pub index: Vec<IndexEntry>,
    /// Origin timestamp of the newest record (0 when empty).
    pub last_ts: u64,
}

/// Why a scan stopped before the end of the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ScanProblem {
    Torn,
    Crc,
    BadHeader,
}

pub(crate) fn file_name(epoch: u64, first: u64) -> String {
    format!("{epoch:08}-{first:020}.seg")
}

/// Parse `<epoch:08>-<first:020>.seg`.
pub(crate) fn parse_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(".seg")?;
    let (e, f) = stem.split_once('-')?;
    if e.len() != 8 || f.len() != 20 {
        return None;
    }
    Some((e.parse().ok()?, f.parse().ok()?))
}

impl Segment {
    fn empty(first: u64, path: PathBuf) -> Segment {
        Segment {
            first,
            end: first,
            size: 0,
            path,
            index: Vec::new(),
            last_ts: 0,
        }
    }

    /// Create a new empty segment file; fsync the directory when `sync` is set.
    pub fn create(
        dir: &Path,
        epoch: u64,
        first: u64,
        sync: bool,
    ) -> Result<(Segment, File), LogError> {
        let path = dir.join(file_name(epoch, first));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io_err(&path))?;
        if sync {
            sync_dir(dir)?;
        }
        Ok((Segment::empty(first, path), file))
    }

    /// Open an existing segment for appending at `self.size`.
    pub fn open_for_append(&self) -> Result<File, LogError> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.path)
            .map_err(io_err(&self.path))
    }

    /// Account for a record written at `self.size`.
    pub fn note_record(&mut self, h: &RecordHeader) {
        let due = match self.index.last() {
            None => true,
            Some(last) => self.size - last.pos >= INDEX_EVERY,
        };
        if due {
            self.index.push(IndexEntry {
                offset: h.first_offset,
                pos: self.size,
                ts: h.timestamp_us,
            });
        }
        self.size += h.total_len();
        self.end = h.end_offset();
        self.last_ts = h.timestamp_us;
    }

    /// Append one record (header, then payload) to `file` at the current end.
    pub fn append(
        &mut self,
        file: &File,
        payload: &[u8],
        offset: u64,
        ts: u64,
    ) -> Result<(), LogError> {
        let hdr = record::encode_header(payload, offset, ts);
        let written = if crate::failpoint::hit("write") {
            Err(crate::failpoint::io_error("write"))
        } else {
            write_all_at2(file, &hdr, payload, self.size)
        };
        if let Err(e) = written {
            // Best effort: do not leave a partial record behind the valid end.
            let _ = file.set_len(self.size);
            return Err(io_err(&self.path)(e));
        }
        let before = self.size;
        if let Some(h) = record::decode_header(&hdr) {
            self.note_record(&h);
        }
        start_writeback(file, before, self.size);
        Ok(())
    }

    /// Does this segment hold `offset`?
    pub fn contains(&self, offset: u64) -> bool {
        self.first <= offset && offset < self.end
    }

    /// Index point at or before `offset`: (file position, first offset, ts) of a record start.
    pub fn locate(&self, offset: u64) -> IndexEntry {
        let i = self.index.partition_point(|e| e.offset <= offset);
        match i.checked_sub(1).and_then(|i| self.index.get(i)) {
            Some(e) => *e,
            None => IndexEntry {
                offset: self.first,
                pos: 0,
                ts: self.last_ts,
            },
        }
    }

    /// Scan an existing segment file. With `verify`, every payload is read and CRC-checked
    /// (for the tail segment); otherwise only headers are read and payloads skipped.
    /// Returns the segment covering the valid prefix and the problem that ended it, if any.
    pub fn scan(
        path: &Path,
        first: u64,
        verify: bool,
    ) -> Result<(Segment, Option<ScanProblem>), LogError> {
        let file = File::open(path).map_err(io_err(path))?;
        let file_len = file.metadata().map_err(io_err(path))?.len();
        let mut rd = BufReader::with_capacity(256 * 1024, file);
        let mut seg = Segment::empty(first, path.to_path_buf());
        let mut hdr = [0u8; HEADER_LEN];
        let mut payload = Vec::new();
        loop {
            if seg.size == file_len {
                return Ok((seg, None));
            }
            if file_len - seg.size < HEADER_LEN as u64 {
                return Ok((seg, Some(ScanProblem::Torn)));
            }
            rd.read_exact(&mut hdr).map_err(io_err(path))?;
            let Some(h) = record::decode_header(&hdr) else {
                return Ok((seg, Some(ScanProblem::Torn)));
            };
            if !record::plausible(h.len) || h.first_offset != seg.end {
                return Ok((seg, Some(ScanProblem::BadHeader)));
            }
            if file_len - seg.size < h.total_len() {
                return Ok((seg, Some(ScanProblem::Torn)));
            }
            if verify {
                payload.resize(h.len as usize, 0);
                rd.read_exact(&mut payload).map_err(io_err(path))?;
                if record::checksum(h.first_offset, h.timestamp_us, &payload) != h.crc {
                    return Ok((seg, Some(ScanProblem::Crc)));
                }
            } else {
                rd.seek_relative(i64::from(h.len)).map_err(io_err(path))?;
            }
            seg.note_record(&h);
        }
    }
}

/// Read exactly `buf.len()` bytes at `pos`, or fewer if the file ends first; returns the count.
/// Writes `a` then `b` at `pos` with as few `pwritev` calls as the kernel allows.
fn write_all_at2(file: &File, a: &[u8], b: &[u8], pos: u64) -> std::io::Result<()> {
    use std::io::IoSlice;
    use std::os::fd::AsRawFd;
    let total = a.len() + b.len();
    let mut done = 0usize;
    while done < total {
        let (x, y) = if done < a.len() {
            (&a[done..], b)
        } else {
            (&b[done - a.len()..], &b[..0])
        };
        let iov = [IoSlice::new(x), IoSlice::new(y)];
        let at = libc::off_t::try_from(pos + done as u64)
            .map_err(|_| std::io::Error::other("segment position out of range"))?;
        // SAFETY: IoSlice is ABI-compatible with iovec; both slices outlive the call.
        #[allow(unsafe_code)]
        let n =
            unsafe { libc::pwritev(file.as_raw_fd(), iov.as_ptr().cast::<libc::iovec>(), 2, at) };
        let Some(n) = syscall_count(n)? else {
            continue;
        };
        if n == 0 {
            return Err(ErrorKind::WriteZero.into());
        }
        done += n;
    }
    Ok(())
}

/// A `pwritev`/`pread` result as a byte count; `None` when interrupted (to retry).
fn syscall_count(n: isize) -> std::io::Result<Option<usize>> {
    match usize::try_from(n) {
        Ok(n) => Ok(Some(n)),
        Err(_) => {
            let e = std::io::Error::last_os_error();
            if e.kind() == ErrorKind::Interrupted {
                Ok(None)
            } else {
                Err(e)
            }
        }
    }
}

/// Bytes of a segment after which their writeback is started (not waited for).
const WRITEBACK_EVERY: u64 = 8 << 20;

/// Starts writeback of each completed [`WRITEBACK_EVERY`] window between `before` and `after`,
/// so dirty pages stay few and the fsync at rotation or by policy has little left to do.
fn start_writeback(file: &File, before: u64, after: u64) {
    let (w0, w1) = (before / WRITEBACK_EVERY, after / WRITEBACK_EVERY);
    if w1 == w0 {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let start = (w0 * WRITEBACK_EVERY) as libc::off64_t;
        let len = ((w1 - w0) * WRITEBACK_EVERY) as libc::off64_t;
        // SAFETY: only reads the descriptor, which `file` keeps open.
        #[allow(unsafe_code)]
        let rc = unsafe {
            libc::sync_file_range(file.as_raw_fd(), start, len, libc::SYNC_FILE_RANGE_WRITE)
        };
        if rc != 0 {
            tracing::debug!(error = %std::io::Error::last_os_error(), "sync_file_range failed");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = file;
}

/// Appends up to `len` bytes at `pos` to `buf`, reading into its spare capacity, which is never
/// zeroed first (fewer bytes if the file ends first).
#[allow(unsafe_code)]
pub(crate) fn read_into_spare(
    file: &File,
    buf: &mut bytes::BytesMut,
    len: usize,
    pos: u64,
) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    buf.reserve(len);
    let start = buf.len();
    while buf.len() - start < len {
        let done = buf.len() - start;
        let at = libc::off_t::try_from(pos + done as u64)
            .map_err(|_| std::io::Error::other("segment position out of range"))?;
        let spare = &mut buf.spare_capacity_mut()[..len - done];
        // SAFETY: `pread` writes at most `spare.len()` bytes into the buffer's spare capacity,
        // which it owns and which outlives the call.
        let n = unsafe {
            libc::pread(
                file.as_raw_fd(),
                spare.as_mut_ptr().cast::<libc::c_void>(),
                spare.len(),
                at,
            )
        };
        let Some(n) = syscall_count(n)? else {
            continue;
        };
        if n == 0 {
            break;
        }
        // SAFETY: the kernel initialised the first `n` (≤ spare.len()) bytes past the length.
        unsafe { buf.set_len(buf.len() + n) };
    }
    Ok(())
}

pub(crate) fn read_at_most(file: &File, buf: &mut [u8], pos: u64) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], pos + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let n = file_name(3, 12345);
        assert_eq!(n, "00000003-00000000000000012345.seg");
        assert_eq!(parse_name(&n), Some((3, 12345)));
        assert_eq!(parse_name("3-12345.seg"), None);
        assert_eq!(parse_name("00000003-00000000000000012345.rdb"), None);
    }

    #[test]
    fn append_scan_and_locate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut seg, file) = Segment::create(dir.path(), 1, 100, true).expect("create");
        let big = vec![7u8; 100 * 1024];
        let mut off = 100;
        for i in 0..10u64 {
            seg.append(&file, &big, off, i).expect("append");
            off += big.len() as u64;
        }
        assert_eq!(seg.end, off);
        assert!(
            seg.index.len() >= 3 && seg.index.len() < 10,
            "sparse index: {:?}",
            seg.index.len()
        );
        for verify in [true, false] {
            let (s2, problem) = Segment::scan(&seg.path, 100, verify).expect("scan");
            assert_eq!(problem, None);
            assert_eq!((s2.end, s2.size, s2.last_ts), (seg.end, seg.size, 9));
            assert_eq!(s2.index, seg.index);
        }
        let e = seg.locate(100 + 5 * 100 * 1024 + 17);
        assert!(e.offset <= 100 + 5 * 100 * 1024 && e.offset >= 100 + 2 * 100 * 1024);
        let mut hdr = [0u8; HEADER_LEN];
        assert_eq!(
            read_at_most(&file, &mut hdr, e.pos).expect("read"),
            HEADER_LEN
        );
        let h = record::decode_header(&hdr).expect("header");
        assert_eq!((h.first_offset, h.len as usize), (e.offset, big.len()));
    }
}
