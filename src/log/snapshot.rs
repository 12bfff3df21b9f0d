//! Snapshot (RDB) files and their `.json` sidecars: the streaming writer (temp file, fsync,
//! rename, directory fsync) and loading what is on disk.

use std::fs::{self, File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::fsutil::{io_err, remove_file, sync_dir, write_atomic};
use super::{LogError, SnapshotMeta};

pub(crate) fn stem(epoch: u64, offset: u64) -> String {
    format!("{epoch:08}-{offset:020}")
}

/// Parse `<epoch:08>-<offset:020>.json`.
pub(crate) fn parse_meta_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(".json")?;
    let (e, o) = stem.split_once('-')?;
    if e.len() != 8 || o.len() != 20 {
        return None;
    }
    Some((e.parse().ok()?, o.parse().ok()?))
}

/// Write the sidecar for `meta` (atomically) next to `meta.path`.
pub(crate) fn write_meta(dir: &Path, meta: &SnapshotMeta) -> Result<(), LogError> {
    let name = format!("{}.json", stem(meta.epoch, meta.offset));
    let bytes = serde_json::to_vec_pretty(meta).map_err(|e| LogError::BadState {
        path: dir.join(&name),
        detail: e.to_string(),
    })?;
    write_atomic(dir, &name, &bytes).map(|_| ())
}

/// Delete a snapshot's RDB and sidecar.
pub(crate) fn delete(dir: &Path, meta: &SnapshotMeta) -> Result<(), LogError> {
    remove_file(&dir.join(format!("{}.json", stem(meta.epoch, meta.offset))))?;
    remove_file(&meta.path)
}

/// Load every snapshot with a readable sidecar and an RDB of the recorded size.
/// Inconsistent pairs are deleted (`tracing::warn!`). Sorted by (epoch, offset).
pub(crate) fn load_all(dir: &Path) -> Result<Vec<SnapshotMeta>, LogError> {
    let mut out = Vec::new();
    for ent in fs::read_dir(dir).map_err(io_err(dir))? {
        let ent = ent.map_err(io_err(dir))?;
        let name = ent.file_name().to_string_lossy().into_owned();
        let Some((epoch, offset)) = parse_meta_name(&name) else {
            continue;
        };
        let json = ent.path();
        let rdb = dir.join(format!("{}.rdb", stem(epoch, offset)));
        let meta = fs::read(&json)
            .ok()
            .and_then(|b| serde_json::from_slice::<SnapshotMeta>(&b).ok());
        let rdb_len = fs::metadata(&rdb).map(|m| m.len()).ok();
        match meta {
            Some(mut m) if m.epoch == epoch && m.offset == offset && rdb_len == Some(m.size) => {
                m.path = rdb;
                out.push(m);
            }
            _ => {
                tracing::warn!(path = %json.display(), "deleting inconsistent snapshot (sidecar unreadable or RDB size differs)");
                remove_file(&json)?;
                remove_file(&rdb)?;
            }
        }
    }
    // RDB files without a sidecar are unusable leftovers.
    for ent in fs::read_dir(dir).map_err(io_err(dir))? {
        let ent = ent.map_err(io_err(dir))?;
        let path = ent.path();
        if path.extension().is_some_and(|e| e == "rdb") && !path.with_extension("json").exists() {
            tracing::warn!(path = %path.display(), "deleting snapshot without sidecar");
            remove_file(&path)?;
        }
    }
    out.sort_by_key(|m| (m.epoch, m.offset));
    Ok(out)
}

/// Streams an RDB into a temp file; [`SnapshotWriter::finish`] makes it a snapshot.
/// Dropping it unfinished deletes the temp file.
pub struct SnapshotWriter {
    dir: PathBuf,
    tmp: PathBuf,
    file: Option<File>,
    epoch: u64,
    written: u64,
}

impl SnapshotWriter {
    pub(crate) fn create(dir: &Path, epoch: u64) -> Result<SnapshotWriter, LogError> {
        let tmp = dir.join(format!(
            "incoming-{}-{:016x}.rdb.tmp",
            std::process::id(),
            rand::random::<u64>()
        ));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(io_err(&tmp))?;
        Ok(SnapshotWriter {
            dir: dir.to_path_buf(),
            tmp,
            file: Some(file),
            epoch,
            written: 0,
        })
    }

    fn file(&mut self) -> Result<&mut File, LogError> {
        let tmp = self.tmp.clone();
        self.file.as_mut().ok_or_else(|| LogError::BadState {
            path: tmp,
            detail: "snapshot writer already finished".into(),
        })
    }

    /// Append bytes of the RDB.
    pub fn write(&mut self, data: &[u8]) -> Result<(), LogError> {
        let tmp = self.tmp.clone();
        self.file()?.write_all(data).map_err(io_err(&tmp))?;
        self.written += data.len() as u64;
        Ok(())
    }

    /// Drop the last `n` bytes written (used to strip a `$EOF` mark).
    pub fn truncate_tail(&mut self, n: u64) -> Result<(), LogError> {
        let tmp = self.tmp.clone();
        let Some(keep) = self.written.checked_sub(n) else {
            return Err(LogError::BadState {
                path: tmp,
                detail: format!("cannot drop {n} bytes: only {} written", self.written),
            });
        };
        let f = self.file()?;
        f.set_len(keep)
            .and_then(|()| f.seek(SeekFrom::Start(keep)).map(|_| ()))
            .map_err(io_err(&tmp))?;
        self.written = keep;
        Ok(())
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// fsync, rename to `<epoch>-<offset>.rdb`, write the sidecar, fsync the directory.
    /// The snapshot is named with the epoch current when the writer began;
    /// [`super::Log::start_epoch`] renames it into the new epoch.
    pub fn finish(
        mut self,
        replid: &str,
        offset: u64,
        rdb_version: u32,
        crc_ok: Option<bool>,
    ) -> Result<SnapshotMeta, LogError> {
        let tmp = self.tmp.clone();
        let file = self.file.take().ok_or_else(|| LogError::BadState {
            path: tmp.clone(),
            detail: "snapshot writer already finished".into(),
        })?;
        file.sync_all().map_err(io_err(&tmp))?;
        drop(file);
        let path = self.dir.join(format!("{}.rdb", stem(self.epoch, offset)));
        super::fsutil::rename(&tmp, &path)?;
        let meta = SnapshotMeta {
            epoch: self.epoch,
            replid: replid.to_string(),
            offset,
            rdb_version,
            size: self.written,
            crc_ok,
            created_unix: super::fsutil::now_us() / 1_000_000,
            path,
        };
        write_meta(&self.dir, &meta)?;
        sync_dir(&self.dir)?;
        Ok(meta)
    }
}

impl Drop for SnapshotWriter {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            if let Err(e) = fs::remove_file(&self.tmp) {
                tracing::warn!(path = %self.tmp.display(), error = %e, "could not delete unfinished snapshot");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_truncate_finish_load() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut w = SnapshotWriter::create(dir.path(), 2).expect("create");
        w.write(b"REDIS0011....").expect("write");
        w.write(&[b'm'; 40]).expect("write");
        w.truncate_tail(40).expect("truncate");
        assert_eq!(w.written(), 13);
        assert!(w.truncate_tail(14).is_err());
        w.write(b"!").expect("write");
        let meta = w.finish("abcd", 500, 11, Some(true)).expect("finish");
        assert_eq!(fs::read(&meta.path).expect("read"), b"REDIS0011....!");
        let all = load_all(dir.path()).expect("load");
        assert_eq!(all.len(), 1);
        assert_eq!((all[0].epoch, all[0].offset, all[0].size), (2, 500, 14));
        assert_eq!(all[0].path, meta.path);
    }

    #[test]
    fn drop_deletes_temp_and_inconsistent_pairs_go() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let mut w = SnapshotWriter::create(dir.path(), 1).expect("create");
            w.write(b"partial").expect("write");
        }
        assert_eq!(fs::read_dir(dir.path()).expect("ls").count(), 0);
        let w = SnapshotWriter::create(dir.path(), 1).expect("create");
        let meta = w.finish("x", 9, 11, None).expect("finish");
        fs::write(&meta.path, b"grown").expect("write");
        assert!(load_all(dir.path()).expect("load").is_empty());
        assert_eq!(fs::read_dir(dir.path()).expect("ls").count(), 0);
    }
}
