//! The slot map's binary codec (pure, fuzzable): bytes → [`SlotMap`] or one clear error.
//!
//! Layout (integers little-endian): `b"GRSM"`, `u8` format ([`FORMAT`]), `u64` version,
//! `u16` lane count, then per lane: `u8` name length + name, `u8` alias length + alias,
//! `u16` range count, and per range `u16 first`, `u16 last` (inclusive). Nothing may follow.
//! Decoding validates the map exactly as [`SlotMap::new`] does.

use super::slot::SLOTS;
use super::slotmap::{LaneSlots, SlotMap, SlotMapError, SlotRange, FORMAT, MAX_LANES};

const MAGIC: &[u8; 4] = b"GRSM";

/// Encodes a map (names longer than 255 bytes cannot be valid and are cut by validation first).
pub fn encode(map: &SlotMap) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + map.lanes.len() * 80);
    out.extend_from_slice(MAGIC);
    out.push(FORMAT);
    out.extend_from_slice(&map.version.to_le_bytes());
    out.extend_from_slice(&len16(map.lanes.len()).to_le_bytes());
    for lane in &map.lanes {
        put_str(&mut out, &lane.name);
        put_str(&mut out, &lane.alias);
        out.extend_from_slice(&len16(lane.ranges.len()).to_le_bytes());
        for r in &lane.ranges {
            out.extend_from_slice(&r.first.to_le_bytes());
            out.extend_from_slice(&r.last.to_le_bytes());
        }
    }
    out
}

/// Decodes and validates a map; never panics, whatever the input.
pub fn decode(bytes: &[u8]) -> Result<SlotMap, SlotMapError> {
    let mut r = Reader { rest: bytes };
    if r.take(4, "magic")? != MAGIC {
        return Err(SlotMapError::BadMagic);
    }
    let format = r.u8("format")?;
    if format != FORMAT {
        return Err(SlotMapError::UnknownFormat(format));
    }
    let version = r.u64("version")?;
    let n = usize::from(r.u16("lane count")?);
    if n > MAX_LANES {
        return Err(SlotMapError::TooMany {
            what: "lanes",
            n,
            max: MAX_LANES,
        });
    }
    let mut lanes = Vec::with_capacity(n);
    let mut total_ranges = 0usize;
    for _ in 0..n {
        let name = r.string("lane name")?;
        let alias = r.string("lane alias")?;
        let count = usize::from(r.u16("range count")?);
        total_ranges += count;
        if total_ranges > usize::from(SLOTS) {
            return Err(SlotMapError::TooMany {
                what: "slot ranges",
                n: total_ranges,
                max: usize::from(SLOTS),
            });
        }
        // Each range is 4 bytes: refuse a count the input cannot hold before allocating.
        if r.rest.len() < count * 4 {
            return Err(SlotMapError::Truncated {
                field: "slot ranges",
                need: count * 4,
                have: r.rest.len(),
            });
        }
        let mut ranges = Vec::with_capacity(count);
        for _ in 0..count {
            let first = r.u16("range first")?;
            let last = r.u16("range last")?;
            ranges.push(SlotRange { first, last });
        }
        lanes.push(LaneSlots {
            name,
            alias,
            ranges,
        });
    }
    if !r.rest.is_empty() {
        return Err(SlotMapError::TrailingBytes(r.rest.len()));
    }
    SlotMap::new(version, lanes)
}

fn len16(n: usize) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    let b = &s.as_bytes()[..s.len().min(255)];
    out.push(b.len() as u8);
    out.extend_from_slice(b);
}

struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], SlotMapError> {
        if self.rest.len() < n {
            return Err(SlotMapError::Truncated {
                field,
                need: n,
                have: self.rest.len(),
            });
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], SlotMapError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, field)?);
        Ok(a)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, SlotMapError> {
        Ok(self.array::<1>(field)?[0])
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, SlotMapError> {
        Ok(u16::from_le_bytes(self.array(field)?))
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, SlotMapError> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }

    fn string(&mut self, field: &'static str) -> Result<String, SlotMapError> {
        let n = usize::from(self.u8(field)?);
        let b = self.take(n, field)?;
        String::from_utf8(b.to_vec()).map_err(|_| SlotMapError::BadName {
            field,
            got: String::from_utf8_lossy(b).into_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SlotMap {
        let lane = |name: &str, alias: &str, ranges: &[(u16, u16)]| LaneSlots {
            name: name.into(),
            alias: alias.into(),
            ranges: ranges.iter().map(|&(a, b)| SlotRange::new(a, b)).collect(),
        };
        SlotMap::new(
            42,
            vec![
                lane("3f1e0c1d2b", "shard-0", &[(0, 5460), (16000, 16100)]),
                lane("b7a9", "shard-1", &[(5461, 10922)]),
                lane("c0ffee", "shard-2", &[]),
            ],
        )
        .unwrap()
    }

    #[test]
    fn round_trip() {
        let m = sample();
        let bytes = encode(&m);
        assert_eq!(decode(&bytes).unwrap(), m);
        let empty = SlotMap::default();
        assert_eq!(decode(&encode(&empty)).unwrap(), empty);
    }

    #[test]
    fn every_truncation_is_a_clear_error_never_a_panic() {
        let bytes = encode(&sample());
        for cut in 0..bytes.len() {
            let e = decode(&bytes[..cut]).unwrap_err();
            assert!(
                matches!(e, SlotMapError::Truncated { .. }),
                "cut at {cut}: {e}"
            );
        }
    }

    #[test]
    fn malformed_inputs_name_the_problem() {
        let good = encode(&sample());
        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(
            decode(&trailing).unwrap_err().to_string(),
            "1 trailing bytes after the slot map"
        );
        let mut magic = good.clone();
        magic[0] = b'X';
        assert_eq!(decode(&magic).unwrap_err(), SlotMapError::BadMagic);
        let mut fmt = good.clone();
        fmt[4] = 9;
        assert!(decode(&fmt)
            .unwrap_err()
            .to_string()
            .contains("slot map format 9 is not supported"));
        // Overlap introduced on the wire is refused like a bad map from a caller.
        let mut m = sample();
        m.lanes[1].ranges[0].first = 5000;
        let e = decode(&encode(&m)).unwrap_err().to_string();
        assert!(e.contains("slot 5000 is owned by both"), "{e}");
        // A huge range count with no bytes behind it.
        let mut huge = good[..15].to_vec();
        huge.extend_from_slice(&[1, b'a', 1, b'a', 0xff, 0xff]);
        assert!(matches!(
            decode(&huge).unwrap_err(),
            SlotMapError::TooMany { .. } | SlotMapError::Truncated { .. }
        ));
        // Not UTF-8 in a name.
        let mut bad = good[..15].to_vec();
        bad.extend_from_slice(&[1, 0xff, 1, b'a', 0, 0]);
        assert!(decode(&bad).unwrap_err().to_string().contains("lane name"));
    }

    #[test]
    fn random_bytes_never_panic() {
        // A deterministic xorshift over mutations of a valid map and plain noise.
        let good = encode(&sample());
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..20_000 {
            let mut b = good.clone();
            let flips = (next() % 4) as usize + 1;
            for _ in 0..flips {
                let i = (next() as usize) % b.len();
                b[i] = next() as u8;
            }
            let _ = decode(&b);
            let noise: Vec<u8> = (0..(next() % 64)).map(|_| next() as u8).collect();
            let _ = decode(&noise);
        }
    }
}
