//! The three topologies compared: direct replication, the native chain and the agent chain
//! (optionally through a wan-sim), each started fresh and synced.

use std::time::Duration;

use anyhow::{anyhow, Result};

use crate::client::Client;
use crate::harness::{wait_for, Env};
use crate::servers::{info_field, offset, Agent, Redis, Up, WanSim};

#[derive(Clone, Copy, PartialEq)]
pub enum Topo {
    Direct,
    Native,
    Agents,
}

impl Topo {
    pub fn label(self) -> &'static str {
        match self {
            Topo::Direct => "direct master→replica",
            Topo::Native => "native chain master→replica→sub-replica",
            Topo::Agents => "agent chain master→A→QUIC→B→replica",
        }
    }
}

pub struct Setup {
    pub master: Redis,
    pub far: Redis,
    pub _mid: Option<Redis>,
    pub a: Option<Agent>,
    pub b: Option<Agent>,
    pub wan: Option<WanSim>,
}

impl Setup {
    pub fn start(env: &Env, topo: Topo, link: &str, wan_flags: Option<&[String]>) -> Result<Setup> {
        let master = Redis::start(env, "master", &[])?;
        let (far, mid, a, b, wan) = match topo {
            Topo::Direct => (
                Redis::replica_of(env, "replica", master.port)?,
                None,
                None,
                None,
                None,
            ),
            Topo::Native => {
                let mid = Redis::replica_of(env, "replica", master.port)?;
                let far = Redis::replica_of(env, "subreplica", mid.port)?;
                (far, Some(mid), None, None, None)
            }
            Topo::Agents => {
                let a = Agent::start(env, "site-a", Up::Redis(master.port), true, link, "")?;
                let q = a.quic.unwrap();
                let wan = match wan_flags {
                    Some(f) => Some(WanSim::start(env, q, f)?),
                    None => None,
                };
                let up = wan.as_ref().map(|w| w.port).unwrap_or(q);
                let b = Agent::start(env, "region-b", Up::Agent(up), false, link, "")?;
                let far = Redis::replica_of(env, "replica", b.redis_port)?;
                (far, None, Some(a), Some(b), wan)
            }
        };
        let s = Setup {
            master,
            far,
            _mid: mid,
            a,
            b,
            wan,
        };
        s.master.offset();
        Client::connect(s.master.port)?.cmd(&["SET", "bench:init", "1"])?;
        s.wait_far(Duration::from_secs(120))
            .ok_or_else(|| anyhow!("far replica never synced"))?;
        Ok(s)
    }

    /// Waits until the far replica's offset reaches the origin's current offset.
    pub fn wait_far(&self, limit: Duration) -> Option<Duration> {
        let want = self.master.offset();
        let far = self.far.port;
        wait_for(limit, Duration::from_millis(5), || {
            info_field(far, "replication", "master_link_status") == "up" && offset(far) >= want
        })
    }
}
