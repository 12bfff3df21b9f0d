//! The slot map a site agent sends downstream: lanes (name, alias) → slot ranges, versioned,
//! with its validation. The binary codec is in [`codec`](super::slotmap_codec); no I/O here.

use serde::Serialize;

use super::slot::SLOTS;

/// Most lanes a map may name (a cluster has far fewer shards).
pub const MAX_LANES: usize = 1024;
/// Longest lane name or alias, in bytes.
pub const MAX_NAME: usize = 64;

/// A malformed slot map (from the wire, a file or a caller); every message names the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlotMapError {
    #[error("slot map truncated in {field}: needs {need} bytes, {have} left")]
    Truncated {
        field: &'static str,
        need: usize,
        have: usize,
    },
    #[error("not a slot map (bad magic bytes)")]
    BadMagic,
    #[error("slot map format {0} is not supported (this agent reads format {FORMAT})")]
    UnknownFormat(u8),
    #[error("{0} trailing bytes after the slot map")]
    TrailingBytes(usize),
    #[error("{field} {got:?} is invalid: use 1-{MAX_NAME} letters, digits, '-', '_' or '.', not starting with '.'")]
    BadName { field: &'static str, got: String },
    #[error("lane {0:?} appears twice in the slot map")]
    DuplicateLane(String),
    #[error("lane {lane:?}: slot range {first}-{last} is invalid (0 ≤ first ≤ last ≤ 16383)")]
    BadRange { lane: String, first: u16, last: u16 },
    #[error("lane {lane:?}: slot ranges are not in ascending order at {first}-{last}")]
    Unordered { lane: String, first: u16, last: u16 },
    #[error("slot {slot} is owned by both lane {a:?} and lane {b:?}")]
    Overlap { slot: u16, a: String, b: String },
    #[error("too many {what}: {n} (at most {max})")]
    TooMany {
        what: &'static str,
        n: usize,
        max: usize,
    },
}

/// Version of the binary encoding (not the map's own `version`).
pub const FORMAT: u8 = 1;

/// An inclusive range of hash slots; serialises as `[first, last]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(into = "[u16; 2]")]
pub struct SlotRange {
    pub first: u16,
    pub last: u16,
}

impl From<SlotRange> for [u16; 2] {
    fn from(r: SlotRange) -> [u16; 2] {
        [r.first, r.last]
    }
}

impl SlotRange {
    pub fn new(first: u16, last: u16) -> SlotRange {
        SlotRange { first, last }
    }

    pub fn contains(&self, slot: u16) -> bool {
        self.first <= slot && slot <= self.last
    }

    /// Number of slots in the range.
    pub fn len(&self) -> usize {
        usize::from(self.last.saturating_sub(self.first)) + 1
    }

    pub fn is_empty(&self) -> bool {
        false
    }
}

/// One lane of the map: its permanent name, a short alias for people, and its slots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LaneSlots {
    pub name: String,
    pub alias: String,
    /// Ascending, non-overlapping; may be empty (a lane that is draining or owns no slots yet).
    pub ranges: Vec<SlotRange>,
}

/// Lane → slot ranges, as the site agent last read the cluster. `version` grows with every
/// change the site sends, so a region keeps the newest it has seen.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct SlotMap {
    pub version: u64,
    pub lanes: Vec<LaneSlots>,
}

/// Checks a lane name or alias: it becomes a directory name under `data_dir/lanes/`.
pub fn check_name(field: &'static str, s: &str) -> Result<(), SlotMapError> {
    let ok = !s.is_empty()
        && s.len() <= MAX_NAME
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(SlotMapError::BadName {
            field,
            got: s.chars().take(MAX_NAME + 8).collect(),
        })
    }
}

/// Sorts slots into the fewest inclusive ranges (duplicates and slots ≥ 16384 dropped).
pub fn ranges_of(slots: impl IntoIterator<Item = u16>) -> Vec<SlotRange> {
    let mut v: Vec<u16> = slots.into_iter().filter(|&s| s < SLOTS).collect();
    v.sort_unstable();
    v.dedup();
    let mut out: Vec<SlotRange> = Vec::new();
    for s in v {
        match out.last_mut() {
            Some(r) if r.last + 1 == s => r.last = s,
            _ => out.push(SlotRange::new(s, s)),
        }
    }
    out
}

impl SlotMap {
    /// A checked map: names valid and unique, ranges in order, no slot owned twice.
    pub fn new(version: u64, lanes: Vec<LaneSlots>) -> Result<SlotMap, SlotMapError> {
        let map = SlotMap { version, lanes };
        map.validate()?;
        Ok(map)
    }

    /// The checks of [`SlotMap::new`], for a map built field by field.
    pub fn validate(&self) -> Result<(), SlotMapError> {
        if self.lanes.len() > MAX_LANES {
            return Err(SlotMapError::TooMany {
                what: "lanes",
                n: self.lanes.len(),
                max: MAX_LANES,
            });
        }
        let ranges: usize = self.lanes.iter().map(|l| l.ranges.len()).sum();
        if ranges > usize::from(SLOTS) {
            return Err(SlotMapError::TooMany {
                what: "slot ranges",
                n: ranges,
                max: usize::from(SLOTS),
            });
        }
        // owner[slot] = index + 1 of the lane owning it.
        let mut owner = vec![0u16; usize::from(SLOTS)];
        for (i, lane) in self.lanes.iter().enumerate() {
            check_name("lane name", &lane.name)?;
            check_name("lane alias", &lane.alias)?;
            if self.lanes[..i].iter().any(|l| l.name == lane.name) {
                return Err(SlotMapError::DuplicateLane(lane.name.clone()));
            }
            let mut prev: Option<SlotRange> = None;
            for r in &lane.ranges {
                if r.first > r.last || r.last >= SLOTS {
                    return Err(SlotMapError::BadRange {
                        lane: lane.name.clone(),
                        first: r.first,
                        last: r.last,
                    });
                }
                if prev.is_some_and(|p| p.last >= r.first) {
                    return Err(SlotMapError::Unordered {
                        lane: lane.name.clone(),
                        first: r.first,
                        last: r.last,
                    });
                }
                prev = Some(*r);
                for slot in r.first..=r.last {
                    let o = &mut owner[usize::from(slot)];
                    if *o != 0 {
                        return Err(SlotMapError::Overlap {
                            slot,
                            a: self.lanes[usize::from(*o - 1)].name.clone(),
                            b: lane.name.clone(),
                        });
                    }
                    // i < MAX_LANES ≤ u16::MAX, checked above.
                    *o = (i + 1) as u16;
                }
            }
        }
        Ok(())
    }

    /// The lane owning `slot`, if any.
    pub fn lane_of(&self, slot: u16) -> Option<&LaneSlots> {
        self.lanes
            .iter()
            .find(|l| l.ranges.iter().any(|r| r.contains(slot)))
    }

    /// The lane named `name`.
    pub fn lane(&self, name: &str) -> Option<&LaneSlots> {
        self.lanes.iter().find(|l| l.name == name)
    }

    /// Slots no lane owns (a cluster with uncovered slots is reported, not refused).
    pub fn uncovered(&self) -> Vec<SlotRange> {
        let mut covered = vec![false; usize::from(SLOTS)];
        for r in self.lanes.iter().flat_map(|l| &l.ranges) {
            for s in r.first..=r.last.min(SLOTS - 1) {
                covered[usize::from(s)] = true;
            }
        }
        ranges_of((0..SLOTS).filter(|&s| !covered[usize::from(s)]))
    }

    /// Number of slots the map covers.
    pub fn covered_slots(&self) -> usize {
        self.lanes
            .iter()
            .flat_map(|l| &l.ranges)
            .map(SlotRange::len)
            .sum()
    }

    /// Same lanes and slots, whatever the version.
    pub fn same_layout(&self, other: &SlotMap) -> bool {
        self.lanes == other.lanes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lane(name: &str, ranges: &[(u16, u16)]) -> LaneSlots {
        LaneSlots {
            name: name.into(),
            alias: format!("a-{name}"),
            ranges: ranges.iter().map(|&(a, b)| SlotRange::new(a, b)).collect(),
        }
    }

    #[test]
    fn a_three_shard_map_is_valid_and_answers_lookups() {
        let m = SlotMap::new(
            3,
            vec![
                lane("s0", &[(0, 5460)]),
                lane("s1", &[(5461, 10922)]),
                lane("s2", &[(10923, 16383)]),
            ],
        )
        .unwrap();
        assert_eq!(m.lane_of(0).unwrap().name, "s0");
        assert_eq!(m.lane_of(5461).unwrap().name, "s1");
        assert_eq!(m.lane_of(16383).unwrap().name, "s2");
        assert!(m.uncovered().is_empty());
        assert_eq!(m.covered_slots(), 16384);
        assert_eq!(m.lane("s1").unwrap().alias, "a-s1");
    }

    #[test]
    fn partial_coverage_is_reported() {
        let m = SlotMap::new(1, vec![lane("s0", &[(0, 99), (200, 16383)])]).unwrap();
        assert_eq!(m.uncovered(), vec![SlotRange::new(100, 199)]);
        assert!(m.lane_of(150).is_none());
        // A lane without slots (draining) is fine.
        SlotMap::new(2, vec![lane("s0", &[])]).unwrap();
    }

    #[test]
    fn bad_maps_get_one_clear_error() {
        let cases: Vec<(Vec<LaneSlots>, &str)> = vec![
            (
                vec![lane("s0", &[(0, 10)]), lane("s1", &[(10, 20)])],
                "slot 10 is owned by both lane \"s0\" and lane \"s1\"",
            ),
            (
                vec![lane("s0", &[(5, 4)])],
                "lane \"s0\": slot range 5-4 is invalid",
            ),
            (
                vec![lane("s0", &[(0, 16384)])],
                "slot range 0-16384 is invalid",
            ),
            (
                vec![lane("s0", &[(10, 20), (0, 5)])],
                "not in ascending order at 0-5",
            ),
            (
                vec![lane("s0", &[]), lane("s0", &[])],
                "lane \"s0\" appears twice",
            ),
            (vec![lane("../etc", &[])], "lane name \"../etc\" is invalid"),
            (vec![lane("", &[])], "lane name \"\" is invalid"),
            (vec![lane(&"x".repeat(65), &[])], "is invalid"),
        ];
        for (lanes, want) in cases {
            let e = SlotMap::new(1, lanes).unwrap_err().to_string();
            assert!(e.contains(want), "{e:?} should contain {want:?}");
        }
    }

    #[test]
    fn ranges_of_compresses_slots() {
        assert_eq!(
            ranges_of([5, 1, 2, 3, 9, 3, 16384, 10]),
            vec![
                SlotRange::new(1, 3),
                SlotRange::new(5, 5),
                SlotRange::new(9, 10)
            ]
        );
        assert!(ranges_of([]).is_empty());
    }

    #[test]
    fn ranges_serialise_as_pairs() {
        let l = lane("s0", &[(0, 1), (7, 7)]);
        let j = serde_json::to_string(&l.ranges).unwrap();
        assert_eq!(j, "[[0,1],[7,7]]");
    }
}
