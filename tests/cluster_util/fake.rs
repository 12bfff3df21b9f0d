//! A fake cluster node (a TCP server with canned RESP replies), for bad input only.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use georelay::resp::Frame;

use crate::support::frame_text;

/// A fake peer for bad input only: a TCP server answering every RESP command with what
/// `reply` returns for its arguments. Counts connections and keeps the commands it got.
pub struct FakeNode {
    pub port: u16,
    pub connections: Arc<AtomicU64>,
    pub commands: Arc<Mutex<Vec<Vec<String>>>>,
    stop: Arc<AtomicBool>,
}

impl FakeNode {
    pub fn start(reply: impl Fn(&[String]) -> Vec<u8> + Send + Sync + 'static) -> FakeNode {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a fake node");
        let port = listener.local_addr().expect("local addr").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(AtomicU64::new(0));
        let commands = Arc::new(Mutex::new(Vec::new()));
        let reply = Arc::new(reply);
        let (s, n, cmds) = (stop.clone(), connections.clone(), commands.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let Ok((mut conn, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                n.fetch_add(1, Ordering::Relaxed);
                let (reply, cmds, s) = (reply.clone(), cmds.clone(), s.clone());
                std::thread::spawn(move || {
                    use std::io::{Read, Write};
                    let _ = conn.set_nonblocking(false);
                    let _ = conn.set_read_timeout(Some(Duration::from_millis(200)));
                    let mut buf = bytes::BytesMut::new();
                    let limits = georelay::resp::Limits::default();
                    let mut chunk = [0u8; 4096];
                    while !s.load(Ordering::Relaxed) {
                        match conn.read(&mut chunk) {
                            Ok(0) => return,
                            Ok(k) => buf.extend_from_slice(&chunk[..k]),
                            Err(e)
                                if matches!(
                                    e.kind(),
                                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                                ) =>
                            {
                                continue
                            }
                            Err(_) => return,
                        }
                        while let Ok(Some(f)) = georelay::resp::parse_frame(&mut buf, &limits) {
                            let args: Vec<String> = match &f {
                                Frame::Array(items) => items.iter().map(frame_text).collect(),
                                other => vec![frame_text(other)],
                            };
                            let out = reply(&args);
                            cmds.lock().unwrap().push(args);
                            if conn.write_all(&out).is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        FakeNode {
            port,
            connections,
            commands,
            stop,
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for FakeNode {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
