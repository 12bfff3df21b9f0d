//! Opening a log directory: the lock file, `state.json`, clean-up of other epochs and temp
//! files, tail-segment verification and truncation, index rebuild, contiguity checks.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::path::Path;

use super::fsutil::{io_err, remove_file};
use super::segment::{self, Segment};
use super::snapshot;
use super::state::{self, State};
use super::{Inner, LogConfig, LogError};

/// Take `dir/LOCK` for the life of the returned file.
fn take_lock(root: &Path) -> Result<File, LogError> {
    let path = root.join("LOCK");
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io_err(&path))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(TryLockError::WouldBlock) => Err(LogError::Locked {
            path: root.to_path_buf(),
        }),
        Err(TryLockError::Error(e)) => Err(io_err(&path)(e)),
    }
}

/// Delete `*.tmp` files left by interrupted writes.
fn delete_temp_files(dir: &Path) -> Result<(), LogError> {
    for ent in fs::read_dir(dir).map_err(io_err(dir))? {
        let path = ent.map_err(io_err(dir))?.path();
        if path.extension().is_some_and(|e| e == "tmp") {
            tracing::info!(path = %path.display(), "deleting leftover temp file");
            remove_file(&path)?;
        }
    }
    Ok(())
}

/// Segments of `epoch` sorted by first offset; segments of other epochs are deleted.
fn list_segments(dir: &Path, epoch: u64) -> Result<Vec<(u64, std::path::PathBuf)>, LogError> {
    let mut out = Vec::new();
    for ent in fs::read_dir(dir).map_err(io_err(dir))? {
        let path = ent.map_err(io_err(dir))?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let Some((e, first)) = segment::parse_name(&name) else {
            continue;
        };
        if e == epoch {
            out.push((first, path));
        } else {
            tracing::info!(path = %path.display(), epoch = e, current = epoch, "deleting segment of another epoch");
            remove_file(&path)?;
        }
    }
    out.sort();
    Ok(out)
}

/// Truncate `path` to its valid prefix after a scan problem.
fn truncate_tail(
    path: &Path,
    seg: &Segment,
    problem: segment::ScanProblem,
) -> Result<(), LogError> {
    let file_len = fs::metadata(path).map_err(io_err(path))?.len();
    let dropped = file_len.saturating_sub(seg.size);
    tracing::warn!(path = %path.display(), ?problem, bytes = dropped, valid_bytes = seg.size, "truncating bad tail of the last segment");
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io_err(path))?;
    f.set_len(seg.size)
        .and_then(|()| f.sync_all())
        .map_err(io_err(path))
}

/// Scan the segments: full CRC check of the tail (truncating a bad tail), headers only for
/// the rest. A tail with no valid record (created just before a crash) is deleted and the
/// segment before it becomes the tail, so a crash right after rotation loses nothing else.
fn scan_segments(list: &[(u64, std::path::PathBuf)]) -> Result<Vec<Segment>, LogError> {
    let mut list = list.to_vec();
    let mut tail = None;
    while let Some((first, path)) = list.pop() {
        let (seg, problem) = Segment::scan(&path, first, true)?;
        if let Some(problem) = problem {
            truncate_tail(&path, &seg, problem)?;
        }
        if seg.size == 0 && !list.is_empty() {
            tracing::info!(path = %path.display(), "deleting empty tail segment");
            remove_file(&path)?;
            continue;
        }
        tail = Some(seg);
        break;
    }
    let mut segs = Vec::with_capacity(list.len() + 1);
    for (first, path) in &list {
        let (seg, problem) = Segment::scan(path, *first, false)?;
        if let Some(problem) = problem {
            let file_len = fs::metadata(path).map_err(io_err(path))?.len();
            tracing::error!(path = %path.display(), ?problem, bytes = file_len.saturating_sub(seg.size), offset = seg.end, "bad record inside a sealed segment; the bytes after it are not usable");
        }
        segs.push(seg);
    }
    segs.extend(tail);
    Ok(segs)
}

pub(crate) fn recover(cfg: &LogConfig) -> Result<Inner, LogError> {
    let root = cfg.dir.clone();
    let seg_dir = root.join("segments");
    let snap_dir = root.join("snapshots");
    for d in [&root, &seg_dir, &snap_dir] {
        fs::create_dir_all(d).map_err(io_err(d))?;
    }
    let lock = take_lock(&root)?;
    let _ = fs::remove_file(root.join(format!("{}.tmp", state::STATE_FILE)));
    let st = State::load(&root)?.unwrap_or_default();
    delete_temp_files(&seg_dir)?;
    delete_temp_files(&snap_dir)?;

    let mut snapshots = Vec::new();
    for m in snapshot::load_all(&snap_dir)? {
        let keep = st.has_epoch()
            && m.epoch == st.epoch
            && m.offset + 1 >= st.epoch_start()
            && state::replid_valid_at(&st.history, &m.replid, m.offset + 1);
        if keep {
            snapshots.push(m);
        } else {
            if m.epoch > st.epoch {
                tracing::warn!(path = %m.path.display(), "deleting snapshot of an unfinished epoch switch");
            } else {
                tracing::info!(path = %m.path.display(), "deleting snapshot not valid in the current epoch");
            }
            snapshot::delete(&snap_dir, &m)?;
        }
    }

    let epoch_for_segments = if st.has_epoch() { st.epoch } else { u64::MAX };
    let list = list_segments(&seg_dir, epoch_for_segments)?;
    let start = st.epoch_start();
    let (list, before): (Vec<_>, Vec<_>) = list.into_iter().partition(|(f, _)| *f >= start);
    for (_, p) in before {
        tracing::warn!(path = %p.display(), "deleting segment that starts before its epoch");
        remove_file(&p)?;
    }
    let segments = scan_segments(&list)?;

    let mut corruptions = 0;
    let mut first_valid = segments
        .first()
        .map(|s| s.first)
        .unwrap_or(start)
        .max(start);
    let mut corrupt_floor = if st.barrier > start { st.barrier } else { 0 };
    for w in segments.windows(2) {
        if w[1].first != w[0].end {
            tracing::error!(path = %w[1].path.display(), expected = w[0].end, found = w[1].first, "offset gap between segments; the log before it is not usable");
            corruptions += 1;
            first_valid = first_valid.max(w[1].first);
            corrupt_floor = first_valid;
        }
    }
    let head = match segments.last() {
        Some(s) => s.end.max(start) - 1,
        None => start - 1,
    };
    first_valid = first_valid.max(st.barrier).min(head + 1);
    if corrupt_floor > first_valid {
        corrupt_floor = first_valid;
    }
    let head_ts = segments
        .iter()
        .rev()
        .find(|s| s.end > s.first)
        .map(|s| s.last_ts)
        .unwrap_or(0);
    // Whatever survived is made durable now (cheap for files with no dirty pages).
    for seg in &segments {
        File::open(&seg.path)
            .and_then(|f| f.sync_data())
            .map_err(io_err(&seg.path))?;
    }
    tracing::info!(dir = %root.display(), epoch = st.epoch, first_valid, head, segments = segments.len(), snapshots = snapshots.len(), "replication log opened");
    Ok(Inner {
        _lock: lock,
        root,
        seg_dir,
        snap_dir,
        state: st,
        segments,
        active: None,
        snapshots,
        first_valid,
        corrupt_floor,
        head,
        head_ts,
        corruptions_total: corruptions,
        recent: Default::default(),
        force_rotate: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_dir_opens_empty_and_lock_is_exclusive() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = crate::log::tests::cfg(dir.path());
        let inner = recover(&cfg).expect("recover");
        assert_eq!((inner.head, inner.state.epoch), (0, 0));
        assert!(matches!(recover(&cfg), Err(LogError::Locked { ref path }) if path == dir.path()));
        drop(inner);
        recover(&cfg).expect("lock released on drop");
    }

    #[test]
    fn leftovers_and_other_epochs_are_deleted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = crate::log::tests::cfg(dir.path());
        drop(recover(&cfg).expect("recover"));
        let segs = dir.path().join("segments");
        fs::write(segs.join(segment::file_name(7, 1)), b"junk").expect("write");
        fs::write(segs.join("x.seg.tmp"), b"junk").expect("write");
        drop(recover(&cfg).expect("recover"));
        assert_eq!(fs::read_dir(&segs).expect("ls").count(), 0);
    }

    #[test]
    fn empty_tail_after_rotation_is_dropped_and_previous_tail_verified() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut s1, f1) = Segment::create(dir.path(), 1, 1, false).expect("create");
        s1.append(&f1, b"hello", 1, 1).expect("append");
        s1.append(&f1, b"world", 6, 1).expect("append");
        let torn = s1.size - 2;
        f1.set_len(torn).expect("tear");
        let (s2, _) = Segment::create(dir.path(), 1, 11, false).expect("create");
        let segs = scan_segments(&[(1, s1.path.clone()), (11, s2.path.clone())]).expect("scan");
        assert_eq!(segs.len(), 1);
        assert_eq!(segs[0].end, 6);
        assert!(!s2.path.exists());
    }

    #[test]
    fn scan_problem_is_reported_for_tail_only_as_truncation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut seg, f) = Segment::create(dir.path(), 1, 1, false).expect("create");
        seg.append(&f, b"hello", 1, 1).expect("append");
        std::os::unix::fs::FileExt::write_all_at(&f, b"garbage", seg.size).expect("write");
        let segs = scan_segments(&[(1, seg.path.clone())]).expect("scan");
        assert_eq!(segs[0].end, 6);
        assert_eq!(fs::metadata(&seg.path).expect("stat").len(), seg.size);
    }
}
