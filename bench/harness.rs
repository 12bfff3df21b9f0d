//! The bench harness: child processes, the scratch directory, CPU and RSS from /proc and
//! waiting on a condition with a deadline. Free ports, the HTTP GET and `/metrics` reads come
//! from the dev-only module shared with the tests (`tests/support/devkit.rs`).

use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::atomic::Ordering;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub static START: OnceLock<Instant> = OnceLock::new();
pub static LINK_EXTRA: OnceLock<String> = OnceLock::new();
pub fn now_ns() -> u128 {
    START.get_or_init(Instant::now).elapsed().as_nanos()
}

/// Spawns `cmd` tied to the bench: the child gets SIGKILL when the bench dies, however it dies
/// (a `timeout`, Ctrl-C, a panic), so no redis-server, agent or wan-sim outlives a run.
/// Children are spawned from the main thread, which lives as long as the bench
/// (`PR_SET_PDEATHSIG` fires when the spawning thread exits).
#[allow(unsafe_code)] // pre_exec is unsafe: the closure runs between fork and exec
pub fn spawn_tied(cmd: &mut Command) -> std::io::Result<Child> {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure only calls prctl and getppid, which are async-signal-safe and
    // touch no memory shared with the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The bench died between fork and prctl: do not start an orphan.
            if libc::getppid() == 1 {
                return Err(std::io::Error::other("the bench exited during spawn"));
            }
            Ok(())
        });
    }
    cmd.spawn()
}

pub struct Proc {
    pub child: Option<Child>,
}
impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }
    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status();
    }
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// CPU seconds (user + system) of a process, from /proc/<pid>/stat.
pub fn cpu_secs(pid: u32) -> f64 {
    let path = if pid == 0 {
        "/proc/self/stat".to_string()
    } else {
        format!("/proc/{pid}/stat")
    };
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let Some((_, rest)) = text.rsplit_once(')') else {
        return f64::NAN;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|s| s.parse().ok()).unwrap_or(f64::NAN)
        + f.get(12).and_then(|s| s.parse().ok()).unwrap_or(f64::NAN);
    ticks / 100.0 // CLK_TCK is 100 on Linux
}

/// A `VmXXX:` field of /proc/<pid>/status, in MiB.
pub fn vm_mib(pid: u32, field: &str) -> f64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

pub struct Env {
    pub georelay: PathBuf,
    pub work: PathBuf,
    pub pki: PathBuf,
    pub seq: std::sync::atomic::AtomicU64,
}

impl Env {
    pub fn dir(&self, name: &str) -> PathBuf {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let d = self.work.join(format!("{name}-{n}"));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}

pub fn wait_for(limit: Duration, every: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let t0 = Instant::now();
    loop {
        if f() {
            return Some(t0.elapsed());
        }
        if t0.elapsed() > limit {
            return None;
        }
        std::thread::sleep(every);
    }
}
