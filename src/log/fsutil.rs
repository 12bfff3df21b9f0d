//! Small filesystem helpers for the log: atomic writes, directory fsync, error mapping.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::LogError;

/// Wrap an `io::Error` with the path it concerns.
pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> LogError + '_ {
    move |source| LogError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Ask the kernel to write back and drop `file`'s cached pages (best effort: a sealed segment
/// is read again only by a lagging reader, and then from disk). Errors are only logged.
pub(crate) fn drop_page_cache(file: &File) {
    use std::os::fd::AsRawFd;
    // SAFETY: posix_fadvise only reads the descriptor, which `file` keeps open.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    if rc != 0 {
        tracing::debug!(
            errno = rc,
            "posix_fadvise(DONTNEED) on a log segment failed"
        );
    }
}

/// `fs::rename`, with the `rename` failpoint.
pub(crate) fn rename(from: &Path, to: &Path) -> Result<(), LogError> {
    if crate::failpoint::hit("rename") {
        return Err(io_err(to)(crate::failpoint::io_error("rename")));
    }
    fs::rename(from, to).map_err(io_err(to))
}

/// fsync a directory so that creates, renames and deletes in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), LogError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// Write `bytes` to `dir/name` atomically: temp file, fsync, rename, directory fsync.
pub(crate) fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf, LogError> {
    let tmp = dir.join(format!("{name}.tmp"));
    let dst = dir.join(name);
    {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(io_err(&tmp))?;
        f.write_all(bytes).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
    }
    rename(&tmp, &dst)?;
    sync_dir(dir)?;
    Ok(dst)
}

/// Remove a file; a file that is already gone is not an error.
pub(crate) fn remove_file(path: &Path) -> Result<(), LogError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(LogError::Io {
            path: path.to_path_buf(),
            source: e,
        }),
    }
}

/// Microseconds since the Unix epoch (0 if the clock is before 1970).
pub(crate) fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
