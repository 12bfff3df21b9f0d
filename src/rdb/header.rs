//! RDB header: the 9-byte magic/version, and the highest RDB version each server release loads.

use super::RdbError;

/// Length of the RDB magic plus version digits (`REDIS0011`, `VALKEY080`).
pub const HEADER_LEN: usize = 9;

/// Which magic the RDB starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RdbFlavor {
    /// `REDIS` + 4 digits (written by Redis, and by Valkey before 9.0).
    Redis,
    /// `VALKEY` + 3 digits (Valkey 9.0+).
    Valkey,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RdbHeader {
    pub flavor: RdbFlavor,
    pub version: u32,
}

/// Parses the first 9 bytes of an RDB (extra bytes are ignored).
pub fn parse_header(bytes: &[u8]) -> Result<RdbHeader, RdbError> {
    let head = bytes.get(..HEADER_LEN).ok_or(RdbError::Truncated {
        needed: HEADER_LEN,
        got: bytes.len(),
    })?;
    let parsed = if let Some(digits) = head.strip_prefix(b"REDIS") {
        digits_u32(digits).map(|version| RdbHeader {
            flavor: RdbFlavor::Redis,
            version,
        })
    } else if let Some(digits) = head.strip_prefix(b"VALKEY") {
        digits_u32(digits).map(|version| RdbHeader {
            flavor: RdbFlavor::Valkey,
            version,
        })
    } else {
        None
    };
    parsed.ok_or_else(|| RdbError::BadMagic(String::from_utf8_lossy(head).into_owned()))
}

fn digits_u32(digits: &[u8]) -> Option<u32> {
    digits.iter().try_fold(0u32, |v, &d| {
        d.is_ascii_digit().then(|| v * 10 + u32::from(d - b'0'))
    })
}

/// The highest RDB version a server release can load, from its version string (e.g. `"7.0.15"`,
/// as in INFO `redis_version` / `valkey_version`). `None` for releases not in the table:
///
/// | server | RDB |
/// |---|---|
/// | Redis 5.0–6.2 | 9 |
/// | Redis 7.0 | 10 |
/// | Redis 7.2 | 11 |
/// | Redis 7.4, 8.x | 12 |
/// | Valkey 7.2–8.x | 11 |
/// | Valkey 9.x | 80 |
pub fn max_rdb_version_for(server: &str, valkey: bool) -> Option<u32> {
    let mut parts = server.trim().split('.');
    let major = leading_number(parts.next()?)?;
    let minor = leading_number(parts.next()?)?;
    match (valkey, major, minor) {
        (false, 5 | 6, _) => Some(9),
        (false, 7, 0) => Some(10),
        (false, 7, 2) => Some(11),
        (false, 7, 4) | (false, 8, _) => Some(12),
        (true, 7, 2) | (true, 8, _) => Some(11),
        (true, 9, _) => Some(80),
        _ => None,
    }
}

/// Parses the leading ASCII digits of a version component (`"15-rc1"` → 15).
fn leading_number(s: &str) -> Option<u32> {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    s.get(..end)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_variants() {
        let h = |flavor, version| Ok(RdbHeader { flavor, version });
        assert_eq!(parse_header(b"REDIS0011"), h(RdbFlavor::Redis, 11));
        assert_eq!(parse_header(b"REDIS0009\xfa\x09"), h(RdbFlavor::Redis, 9));
        assert_eq!(parse_header(b"REDIS0012"), h(RdbFlavor::Redis, 12));
        assert_eq!(parse_header(b"VALKEY080"), h(RdbFlavor::Valkey, 80));
        for bad in [
            &b"REDIS001x"[..],
            b"redis0011",
            b"VALKEY08a",
            b"VALKEY8.0",
            b"RDB000011",
        ] {
            assert!(
                matches!(parse_header(bad), Err(RdbError::BadMagic(_))),
                "{bad:?}"
            );
        }
        assert_eq!(
            parse_header(b"REDIS001"),
            Err(RdbError::Truncated { needed: 9, got: 8 })
        );
        assert!(parse_header(b"").is_err());
    }

    #[test]
    fn version_table() {
        let redis = |v| max_rdb_version_for(v, false);
        let valkey = |v| max_rdb_version_for(v, true);
        assert_eq!(redis("5.0.14"), Some(9));
        assert_eq!(redis("6.0.20"), Some(9));
        assert_eq!(redis("6.2.14"), Some(9));
        assert_eq!(redis("7.0.15"), Some(10));
        assert_eq!(redis("7.2.6"), Some(11));
        assert_eq!(redis("7.4.1"), Some(12));
        assert_eq!(redis("8.0.2"), Some(12));
        assert_eq!(redis("8.2.1"), Some(12));
        assert_eq!(redis("4.0.14"), None);
        assert_eq!(redis("9.1.2"), None);
        assert_eq!(redis("7.1.240"), None);
        assert_eq!(valkey("7.2.7"), Some(11));
        assert_eq!(valkey("8.0.1"), Some(11));
        assert_eq!(valkey("8.1.3"), Some(11));
        assert_eq!(valkey("9.0.0"), Some(80));
        assert_eq!(valkey("9.1.2"), Some(80));
        assert_eq!(valkey("7.0.15"), None);
        assert_eq!(valkey("10.0.0"), None);
        assert_eq!(redis(" 7.0.15-rc1 "), Some(10));
        assert_eq!(redis("7"), None);
        assert_eq!(redis(""), None);
        assert_eq!(redis("x.y"), None);
        assert_eq!(redis("99999999999.0"), None);
    }
}
