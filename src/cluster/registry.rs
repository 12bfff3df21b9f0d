//! The persisted lane registry (`data_dir/lanes/registry.json`) and the pure assignment of a
//! freshly read topology to lanes: replid lineage first, then shard id, then node ids.

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::topology::{ReplInfo, Shard};
use crate::config::{LanePart, PortRange};
use crate::log::HistoryEntry;

/// Why the registry could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("lane registry {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("lane registry {path} is not valid: {why}")]
    Corrupt { path: String, why: String },
}

/// One lane, for life. Never removed from the registry: a retired lane keeps its port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaneRecord {
    pub name: String,
    pub alias: String,
    /// Its replica port; None when another agent takes it (`upstream.lanes`) or the
    /// `listen.shard_ports` range had no port left.
    pub port: Option<u16>,
    /// Whether this agent follows the lane (`upstream.lanes = "i/n"`).
    pub taken: bool,
    /// The shard id the server reported, if any.
    pub shard_id: Option<String>,
    /// Every node id seen in the lane's shard (masters and replicas).
    pub nodes: Vec<String>,
    #[serde(default)]
    pub retired: bool,
}

/// Every lane this agent has seen, in creation order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registry {
    pub lanes: Vec<LaneRecord>,
}

pub const FILE: &str = "registry.json";

impl Registry {
    /// Reads `dir/registry.json`; an absent file is an empty registry. Blocking.
    pub fn load(dir: &Path) -> Result<Registry, RegistryError> {
        let path = dir.join(FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| RegistryError::Corrupt {
                path: path.display().to_string(),
                why: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Registry::default()),
            Err(source) => Err(RegistryError::Io {
                path: path.display().to_string(),
                source,
            }),
        }
    }

    /// Writes it atomically (temp file, fsync, rename, fsync of the directory). Blocking.
    pub fn save(&self, dir: &Path) -> Result<(), RegistryError> {
        let path = dir.join(FILE);
        let io = |source| RegistryError::Io {
            path: path.display().to_string(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let tmp = dir.join(format!("{FILE}.tmp"));
        let body = serde_json::to_vec_pretty(self).map_err(|e| RegistryError::Corrupt {
            path: path.display().to_string(),
            why: e.to_string(),
        })?;
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp).map_err(io)?;
            f.write_all(&body).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, &path).map_err(io)?;
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io)
    }

    /// Applies `part` (`upstream.lanes`, read at start) to the lanes of an earlier run, so a
    /// changed `i/n` hands lanes over between agents: a lane that is now this agent's is
    /// followed (with the next free port if it never had one), and one that is now another
    /// agent's is not (its log and its port stay, for the day it comes back). Returns the
    /// lanes whose `taken` changed. Pure.
    pub fn repartition(&mut self, part: Option<LanePart>, ports: PortRange) -> Vec<usize> {
        let mut changed = Vec::new();
        for i in 0..self.lanes.len() {
            let taken = part.is_none_or(|p| p.takes(&self.lanes[i].name));
            if self.lanes[i].retired || taken == self.lanes[i].taken {
                continue;
            }
            if taken && self.lanes[i].port.is_none() {
                self.lanes[i].port = self.next_port(ports);
            }
            self.lanes[i].taken = taken;
            changed.push(i);
        }
        changed
    }

    fn next_port(&self, range: PortRange) -> Option<u16> {
        let used = self.lanes.iter().filter(|l| l.port.is_some()).count();
        u16::try_from(used)
            .ok()
            .and_then(|u| range.first.checked_add(u))
            .filter(|p| *p <= range.last)
    }
}

/// A shard as discovery saw it, with its master's replication identity when it was read.
#[derive(Debug, Clone)]
pub struct Seen {
    pub shard: Shard,
    pub repl: Option<ReplInfo>,
}

/// What the topology means for the lanes: which shard each lane follows now.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Assignment {
    /// lane index → shard index.
    pub lanes: HashMap<usize, usize>,
    /// Lanes created by this assignment (indexes into the registry).
    pub created: Vec<usize>,
    /// Lanes none of whose nodes the cluster lists any more: they left.
    pub gone: Vec<usize>,
}

fn lineage_matches(repl: &ReplInfo, history: &[HistoryEntry]) -> bool {
    history.iter().any(|h| {
        repl.replid.eq_ignore_ascii_case(&h.replid)
            || (repl
                .replid2
                .as_deref()
                .is_some_and(|r| r.eq_ignore_ascii_case(&h.replid))
                && repl.second_offset.is_some_and(|s| h.start <= s))
    })
}

/// Matches the shards to the lanes and creates lanes for new shards (with a healthy master).
/// `history` holds each taken lane's replid history (from its log). Pure.
pub fn assign(
    reg: &mut Registry,
    seen: &[Seen],
    history: &HashMap<String, Vec<HistoryEntry>>,
    part: Option<LanePart>,
    ports: PortRange,
) -> Assignment {
    let mut out = Assignment::default();
    let mut shard_taken = vec![false; seen.len()];
    let live: Vec<usize> = (0..reg.lanes.len())
        .filter(|&i| !reg.lanes[i].retired)
        .collect();
    // Pass 0: replid lineage. 1: shard id. 2: node ids, in a shard with a healthy master.
    // 3: node ids in a shard without one (the lane waits for a replacement).
    for pass in 0..4 {
        for &li in &live {
            if out.lanes.contains_key(&li) {
                continue;
            }
            let lane = &reg.lanes[li];
            let found = seen.iter().enumerate().find(|(si, s)| {
                !shard_taken[*si]
                    && match pass {
                        0 => s.repl.as_ref().is_some_and(|r| {
                            history
                                .get(&lane.name)
                                .is_some_and(|h| lineage_matches(r, h))
                        }),
                        1 => lane.shard_id.is_some() && s.shard.id == lane.shard_id,
                        _ => {
                            (pass == 3 || s.shard.master().is_some())
                                && s.shard.nodes.iter().any(|n| lane.nodes.contains(&n.id))
                        }
                    }
            });
            if let Some((si, _)) = found {
                shard_taken[si] = true;
                out.lanes.insert(li, si);
            }
        }
    }
    // New shards: only those with a healthy master that owns slots and says it is a master
    // (a failed master listed alone, or a node still joining as a replica, is not one).
    for (si, s) in seen.iter().enumerate() {
        if shard_taken[si] || s.shard.slots.is_empty() || s.repl.is_none() {
            continue;
        }
        let Some(master) = s.shard.master() else {
            continue;
        };
        let name = s.shard.id.clone().unwrap_or_else(|| master.id.clone());
        if let Some(li) = reg.lanes.iter().position(|l| l.name == name) {
            // A retired lane's shard came back under the same name: not a new lane.
            if !reg.lanes[li].retired {
                out.lanes.insert(li, si);
            }
            continue;
        }
        let taken = part.is_none_or(|p| p.takes(&name));
        let port = if taken { reg.next_port(ports) } else { None };
        let alias = format!("shard-{}", reg.lanes.len());
        reg.lanes.push(LaneRecord {
            name,
            alias,
            port,
            taken,
            shard_id: s.shard.id.clone(),
            nodes: Vec::new(),
            retired: false,
        });
        let li = reg.lanes.len() - 1;
        out.created.push(li);
        out.lanes.insert(li, si);
    }
    // Remember every node of each lane's shard, so a replica promoted before the first sync
    // still continues the lane.
    for (&li, &si) in &out.lanes {
        for n in &seen[si].shard.nodes {
            if !reg.lanes[li].nodes.contains(&n.id) {
                reg.lanes[li].nodes.push(n.id.clone());
            }
        }
    }
    let listed: Vec<&str> = seen
        .iter()
        .flat_map(|s| s.shard.nodes.iter().map(|n| n.id.as_str()))
        .collect();
    for &li in &live {
        if !out.lanes.contains_key(&li)
            && !reg.lanes[li].nodes.is_empty()
            && !reg.lanes[li]
                .nodes
                .iter()
                .any(|n| listed.contains(&n.as_str()))
        {
            out.gone.push(li);
        }
    }
    out
}

#[cfg(test)]
#[path = "registry_tests.rs"]
mod tests;
