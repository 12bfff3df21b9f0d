//! The region's persisted lanes (`data_dir/lanes/region.json`): every lane the slot map named,
//! in creation order, with its alias and the replica port it got from `listen.shard_ports`.
//! A lane keeps its port for life. Pure assignment plus blocking load/save.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::cluster::SlotMap;
use crate::config::PortRange;

pub const FILE: &str = "region.json";
/// The last slot map received, as the site sent it (the control stream's codec).
pub const MAP_FILE: &str = "slotmap.bin";

/// One region lane, for life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionLane {
    pub name: String,
    pub alias: String,
    /// `None`: `listen.shard_ports` had no port left when the lane appeared.
    pub port: Option<u16>,
}

/// Every lane this region agent has created, in creation order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionLanes {
    pub lanes: Vec<RegionLane>,
}

impl RegionLanes {
    /// Adds the lanes of `map` not seen before, each with the next free port of `ports`;
    /// returns the new ones (the caller persists the registry before serving them).
    pub fn adopt(&mut self, map: &SlotMap, ports: PortRange) -> Vec<RegionLane> {
        let mut added = Vec::new();
        for lane in &map.lanes {
            if self.lanes.iter().any(|l| l.name == lane.name) {
                continue;
            }
            let port =
                (ports.first..=ports.last).find(|p| !self.lanes.iter().any(|l| l.port == Some(*p)));
            if port.is_none() {
                tracing::warn!(lane = %lane.name, "listen.shard_ports ({}-{}) has no port left: lane {} is not served", ports.first, ports.last, lane.name);
            }
            let rec = RegionLane {
                name: lane.name.clone(),
                alias: lane.alias.clone(),
                port,
            };
            self.lanes.push(rec.clone());
            added.push(rec);
        }
        added
    }

    /// Reads `dir/region.json`; no file is no lanes. Blocking.
    pub fn load(dir: &Path) -> Result<RegionLanes, String> {
        let path = dir.join(FILE);
        match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| format!("{} is not valid: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(RegionLanes::default()),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }

    /// Writes `dir/region.json` atomically. Blocking.
    pub fn save(&self, dir: &Path) -> Result<(), String> {
        let body = serde_json::to_vec_pretty(self).map_err(|e| e.to_string())?;
        write(dir, FILE, &body)
    }
}

/// Creates `dir` and writes `dir/name` atomically. Blocking.
pub fn write(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    crate::log::write_atomic(dir, name, bytes)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// The persisted slot map, if any (a bad file is reported and ignored: the site sends the
/// map again). Blocking.
pub fn load_map(dir: &Path) -> Option<SlotMap> {
    let path = dir.join(MAP_FILE);
    let bytes = std::fs::read(&path).ok()?;
    match crate::cluster::slotmap_codec::decode(&bytes) {
        Ok(m) => Some(m),
        Err(e) => {
            tracing::warn!("ignoring {}: {e}", path.display());
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{LaneSlots, SlotRange};

    fn map(names: &[&str]) -> SlotMap {
        SlotMap {
            version: 1,
            lanes: names
                .iter()
                .enumerate()
                .map(|(i, n)| LaneSlots {
                    name: n.to_string(),
                    alias: format!("shard-{i}"),
                    ranges: vec![SlotRange::new(i as u16, i as u16)],
                })
                .collect(),
        }
    }

    #[test]
    fn ports_go_in_creation_order_and_stay() {
        let ports = PortRange {
            first: 7101,
            last: 7103,
        };
        let mut r = RegionLanes::default();
        let added = r.adopt(&map(&["b", "a"]), ports);
        assert_eq!(
            added
                .iter()
                .map(|l| (l.name.as_str(), l.port))
                .collect::<Vec<_>>(),
            vec![("b", Some(7101)), ("a", Some(7102))]
        );
        // Known lanes keep their ports whatever the map's order; a new one gets the next.
        let added = r.adopt(&map(&["c", "a", "b"]), ports);
        assert_eq!(added.len(), 1);
        assert_eq!(added[0].port, Some(7103));
        // The range is exhausted: the lane is recorded without a port.
        let added = r.adopt(&map(&["d"]), ports);
        assert_eq!(added[0].port, None);
        assert_eq!(r.lanes.len(), 4);
    }

    #[test]
    fn registry_and_map_persist() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("lanes");
        assert_eq!(RegionLanes::load(&d).unwrap(), RegionLanes::default());
        let mut r = RegionLanes::default();
        r.adopt(
            &map(&["x"]),
            PortRange {
                first: 9000,
                last: 9000,
            },
        );
        r.save(&d).unwrap();
        assert_eq!(RegionLanes::load(&d).unwrap(), r);
        let m = SlotMap::new(3, map(&["x", "y"]).lanes).unwrap();
        write(&d, MAP_FILE, &crate::cluster::slotmap_codec::encode(&m)).unwrap();
        assert_eq!(load_map(&d), Some(m));
        std::fs::write(d.join(MAP_FILE), b"junk").unwrap();
        assert_eq!(load_map(&d), None);
        std::fs::write(d.join(FILE), b"{").unwrap();
        assert!(RegionLanes::load(&d).unwrap_err().contains("is not valid"));
    }
}
