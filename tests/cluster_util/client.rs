//! A tiny blocking cluster client for tests: follows MOVED and ASK, waits out failovers.

use std::collections::BTreeMap;
use std::time::Duration;

use georelay::resp::Frame;

use crate::support::Client;

/// A cluster client that follows MOVED and ASK and waits out failovers (bounded).
pub struct ClusterClient {
    pub seeds: Vec<u16>,
    conns: BTreeMap<u16, Client>,
}

impl ClusterClient {
    pub fn new(seeds: Vec<u16>) -> ClusterClient {
        ClusterClient {
            seeds,
            conns: BTreeMap::new(),
        }
    }

    fn conn(&mut self, port: u16) -> Option<&mut Client> {
        if let std::collections::btree_map::Entry::Vacant(e) = self.conns.entry(port) {
            let c = Client::try_connect(port)?;
            let _ = c.raw().set_read_timeout(Some(Duration::from_secs(5)));
            e.insert(c);
        }
        self.conns.get_mut(&port)
    }

    /// Runs a command; Err after ~60 s of failures.
    pub fn cmd(&mut self, args: &[&str]) -> Result<Frame, String> {
        let mut port = self.seeds[0];
        let mut asking = false;
        let mut last = String::new();
        for attempt in 0..600 {
            let reply = match self.conn(port) {
                Some(c) => {
                    let r = if asking {
                        c.try_cmd(&["ASKING"]).and_then(|_| c.try_cmd(args))
                    } else {
                        c.try_cmd(args)
                    };
                    r.map_err(|e| e.to_string())
                }
                None => Err(format!("connect {port}")),
            };
            asking = false;
            match reply {
                Ok(Frame::Error(e)) if e.starts_with("MOVED ") || e.starts_with("ASK ") => {
                    asking = e.starts_with("ASK ");
                    port = e
                        .rsplit(':')
                        .next()
                        .and_then(|p| p.parse().ok())
                        .unwrap_or(port);
                    continue;
                }
                Ok(Frame::Error(e))
                    if e.starts_with("CLUSTERDOWN")
                        || e.starts_with("TRYAGAIN")
                        || e.starts_with("LOADING") =>
                {
                    last = e;
                }
                Ok(f) => return Ok(f),
                Err(e) => {
                    self.conns.remove(&port);
                    last = e;
                    // Try another seed: the node may be dead.
                    port = self.seeds[attempt % self.seeds.len()];
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!("{args:?}: gave up: {last}"))
    }
}
