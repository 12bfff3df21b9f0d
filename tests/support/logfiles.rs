//! Reads an agent's log segments from disk while the agent is stopped, with the library's own
//! record codec: a positive check that every byte on disk is a whole, CRC-valid record.

use std::path::{Path, PathBuf};

use georelay::log::record::{self, HEADER_LEN};

/// Every `*.seg` file under `dir` (recursively), sorted.
pub fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let entries = std::fs::read_dir(&d).unwrap_or_else(|e| panic!("read {}: {e}", d.display()));
        for e in entries {
            let p = e.expect("directory entry").path();
            if p.is_dir() {
                todo.push(p);
            } else if p.extension().is_some_and(|x| x == "seg") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Walks one segment file record by record: each header decodes, each payload's CRC
/// matches, offsets follow on, and the last record ends exactly at the file's end. Returns
/// the number of records, or where and why the file is not whole records.
pub fn whole_records(path: &Path) -> Result<u64, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("read {}: {e}", path.display()))?;
    let (mut pos, mut records, mut next) = (0usize, 0u64, None);
    while pos < bytes.len() {
        let at = |why: &str| format!("{}: byte {pos} of {}: {why}", path.display(), bytes.len());
        let h = bytes
            .get(pos..pos + HEADER_LEN)
            .and_then(record::decode_header)
            .ok_or_else(|| at("torn or undecodable record header"))?;
        let end = pos + h.total_len() as usize;
        let payload = bytes
            .get(pos + HEADER_LEN..end)
            .ok_or_else(|| at("record runs past the end of the file (half-written)"))?;
        if record::checksum(h.first_offset, h.timestamp_us, payload) != h.crc {
            return Err(at("record CRC mismatch"));
        }
        if next.is_some_and(|n| n != h.first_offset) {
            return Err(at("record offset does not follow the previous record"));
        }
        next = Some(h.end_offset());
        records += 1;
        pos = end;
    }
    Ok(records)
}

/// Asserts that the log under `data_dir` has at least one segment and that every segment
/// is whole records; returns the total record count.
pub fn assert_whole_log(data_dir: &Path) -> u64 {
    let files = segment_files(data_dir);
    assert!(
        !files.is_empty(),
        "no log segments under {}",
        data_dir.display()
    );
    files
        .iter()
        .map(|f| whole_records(f).unwrap_or_else(|e| panic!("{e}")))
        .sum()
}
