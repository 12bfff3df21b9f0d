//! Human-readable sizes ("64MiB", "10GB", "200Mbit") and durations ("7d", "1h30m", "250ms").

use std::time::Duration;

/// Parses a byte size: a number with an optional unit (B, KB, MB, GB, TB = powers of 1000;
/// KiB, MiB, GiB, TiB = powers of 1024; K, M, G, T as in Redis = powers of 1024).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let (num, unit) = split_number(text)?;
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        other => {
            return Err(format!(
            "unknown size unit {other:?} in {text:?} (use B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)"
        ))
        }
    };
    scale(num, mult as f64, text)
}

/// Parses a bandwidth in bits or bytes per second: "200Mbit", "1Gbit", "50MB" (bytes/s), "0".
/// Returns bytes per second.
pub fn parse_rate(text: &str) -> Result<u64, String> {
    let (num, unit) = split_number(text)?;
    let lower = unit.to_ascii_lowercase();
    let bits: Option<f64> = match lower.as_str() {
        "bit" | "bps" => Some(1.0),
        "kbit" | "kbps" => Some(1e3),
        "mbit" | "mbps" => Some(1e6),
        "gbit" | "gbps" => Some(1e9),
        _ => None,
    };
    match bits {
        Some(m) => scale(num, m / 8.0, text),
        None => parse_size(text),
    }
}

/// Parses a duration made of one or more `<number><unit>` parts, units ms, s, m, h, d, w.
/// A bare "0" is zero.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    if t.is_empty() {
        return Err("empty duration".into());
    }
    let mut total = Duration::ZERO;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("duration {text:?} needs a unit (ms, s, m, h, d, w)"))?;
        if digits == 0 {
            return Err(format!("invalid duration {text:?}"));
        }
        let num: f64 = rest[..digits]
            .parse()
            .map_err(|_| format!("invalid number in duration {text:?}"))?;
        let after = &rest[digits..];
        let unit_len = after
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(after.len());
        let secs = match &after[..unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" | "min" => 60.0,
            "h" => 3600.0,
            "d" => 86_400.0,
            "w" => 604_800.0,
            other => {
                return Err(format!(
                    "unknown duration unit {other:?} in {text:?} (use ms, s, m, h, d, w)"
                ))
            }
        };
        let part = Duration::try_from_secs_f64(num * secs).ok();
        total = part
            .and_then(|p| total.checked_add(p))
            .ok_or_else(|| format!("duration {text:?} is out of range"))?;
        rest = &after[unit_len..];
    }
    Ok(total)
}

fn split_number(text: &str) -> Result<(f64, &str), String> {
    let t = text.trim();
    let end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    if end == 0 {
        return Err(format!("{text:?} does not start with a number"));
    }
    let num: f64 = t[..end]
        .parse()
        .map_err(|_| format!("invalid number in {text:?}"))?;
    Ok((num, t[end..].trim()))
}

fn scale(num: f64, mult: f64, text: &str) -> Result<u64, String> {
    let v = num * mult;
    if !v.is_finite() || v < 0.0 || v > u64::MAX as f64 {
        return Err(format!("{text:?} is out of range"));
    }
    Ok(v as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_size("10GiB").unwrap(), 10 << 30);
        assert_eq!(parse_size("1mb").unwrap(), 1_000_000);
        assert_eq!(parse_size("1.5KiB").unwrap(), 1536);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("ten").is_err());
        assert!(parse_size("10 parsecs").is_err());
        assert!(parse_size("").is_err());
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("200Mbit").unwrap(), 25_000_000);
        assert_eq!(parse_rate("0").unwrap(), 0);
        assert_eq!(parse_rate("1MiB").unwrap(), 1 << 20);
    }

    #[test]
    fn durations() {
        assert_eq!(
            parse_duration("7d").unwrap(),
            Duration::from_secs(7 * 86_400)
        );
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5 years").is_err());
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn huge_durations_are_errors_not_panics() {
        // Found by fuzzing (config): `max_age = "7555…5d"` panicked in Duration::from_secs_f64.
        let huge = format!("7{}d", "5".repeat(100));
        assert!(parse_duration(&huge).unwrap_err().contains("out of range"));
        assert!(parse_duration("99999999999999999999w").is_err());
        // Each part fits, the sum does not.
        let w = "30000000000000w";
        assert!(parse_duration(w).is_ok());
        assert!(parse_duration(&w.repeat(2))
            .unwrap_err()
            .contains("out of range"));
        assert!(parse_duration("1e400s").is_err());
    }
}
