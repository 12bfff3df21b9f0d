//! A `georelay wan-sim` process for tests, with outages through its control file.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{free_udp_port, wait_until};

/// A `georelay wan-sim` process between two agents; outages through its control file.
pub struct WanSimProc {
    pub port: u16,
    pub outage_file: PathBuf,
    _dir: tempfile::TempDir,
    child: Child,
}

impl WanSimProc {
    /// Relays UDP from a new loopback port to `forward_port` with the given impairment flags.
    pub fn start(forward_port: u16, flags: &[&str]) -> WanSimProc {
        Self::start_on(free_udp_port(), forward_port, flags)
    }

    /// Starts on a given UDP port (to change impairments while clients keep their address).
    pub fn start_on(port: u16, forward_port: u16, flags: &[&str]) -> WanSimProc {
        let dir = tempfile::tempdir().expect("tempdir");
        let outage_file = dir.path().join("outage");
        let log = std::fs::File::create(dir.path().join("wansim.log")).expect("wan-sim log");
        let child = Command::new(env!("CARGO_BIN_EXE_georelay"))
            .arg("wan-sim")
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--forward",
                &format!("127.0.0.1:{forward_port}"),
            ])
            .arg("--outage-file")
            .arg(&outage_file)
            .args(["--duration", "30m"])
            .args(flags)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn wan-sim");
        WanSimProc {
            port,
            outage_file,
            _dir: dir,
            child,
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts an outage and returns once wan-sim has taken it up (it polls its outage file
    /// every 100 ms, and a packet sent before that still gets through).
    pub fn cut(&self) {
        self.toggle(true, "outage started");
    }

    /// Ends the outage and returns once wan-sim relays again.
    pub fn restore(&self) {
        self.toggle(false, "outage ended");
    }

    fn toggle(&self, on: bool, line: &str) {
        if self.outage_file.exists() == on {
            return;
        }
        let seen = self.log().matches(line).count();
        if on {
            std::fs::write(&self.outage_file, b"cut").expect("create outage file");
        } else {
            std::fs::remove_file(&self.outage_file).expect("remove outage file");
        }
        wait_until(Duration::from_secs(10), line, || {
            self.log().matches(line).count() > seen
        });
    }

    /// What wan-sim has logged so far.
    fn log(&self) -> String {
        let path = self._dir.path().join("wansim.log");
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }
}

impl Drop for WanSimProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
