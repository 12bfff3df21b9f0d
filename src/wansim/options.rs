//! wan-sim options: the clap-free options struct, its CLI-style parser and validation.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::WanSimError;
use crate::units::{parse_duration, parse_rate, parse_size};

/// Longest delay or jitter accepted (a typo guard, not a technical limit).
const MAX_DELAY: Duration = Duration::from_secs(3600);
/// Smallest queue (bytes) the rate limiter may be given.
const MIN_QUEUE: u64 = 1500;

/// Help text for the `wan-sim` subcommand, one flag a line.
pub const USAGE: &str = "\
--listen ADDR        loopback address clients send to (port 0 = any free port)
--forward ADDR       loopback address of the real server (required)
--delay DUR          one-way delay, applied in each direction (RTT ~ 2 x delay) [0]
--jitter DUR         uniform jitter in [-jitter, +jitter] per packet [0]
--loss PCT           random loss per packet and direction, \"2%\" or \"0.02\" [0]
--reorder PCT        share of packets held back by delay/2 + 1ms [0]
--rate RATE          rate limit per direction, e.g. 100Mbit or 10MB (bytes/s) [0 = none]
--queue SIZE         rate-limiter queue per direction, e.g. 256KiB [1 BDP, 64KiB..4MiB]
--outage-file PATH   drop everything while PATH exists
--outage-after DUR   start a timed outage DUR after start (with --outage-for)
--outage-for DUR     length of the timed outage
--duration DUR       stop by itself after DUR
--seed N             seed for loss/jitter/reorder draws (default: random)";

/// Everything `wan-sim` needs, without clap. Fill it directly, with [`WanSimOptions::from_args`],
/// or flag by flag with [`WanSimOptions::set_flag`]; [`super::WanSim::start`] validates it.
#[derive(Clone, Debug)]
pub struct WanSimOptions {
    /// Where clients send to; must be loopback. Port 0 picks a free port.
    pub listen: SocketAddr,
    /// The real server; must be loopback with a non-zero port.
    pub forward: SocketAddr,
    /// One-way delay, applied in both directions, so the round trip gains about `2 * delay`.
    pub delay: Duration,
    /// Uniform jitter in `[-jitter, +jitter]` added to each packet's delay (clamped at 0).
    pub jitter: Duration,
    /// Loss probability per packet and direction, `0.0..=1.0`.
    pub loss: f64,
    /// Probability that a packet is held back an extra `delay / 2 + 1ms`, `0.0..=1.0`.
    pub reorder: f64,
    /// Rate limit per direction in bytes per second; 0 = unlimited.
    pub rate_bytes_per_sec: u64,
    /// Rate-limiter queue per direction in bytes; `None` = 1 BDP (rate x 2 x delay),
    /// clamped to 64 KiB ..= 4 MiB. Packets that do not fit are tail-dropped.
    pub queue_bytes: Option<u64>,
    /// Drop everything, both directions, while this file exists (checked every 100 ms).
    pub outage_file: Option<PathBuf>,
    /// Start of a timed outage, counted from start-up. Needs `outage_for`.
    pub outage_after: Option<Duration>,
    /// Length of the timed outage. Needs `outage_after`.
    pub outage_for: Option<Duration>,
    /// Stop by itself after this long.
    pub duration: Option<Duration>,
    /// Seed for the random draws; `None` = a random seed.
    pub seed: Option<u64>,
}

impl Default for WanSimOptions {
    /// A transparent relay on `127.0.0.1:0`; `forward` must still be set (port 0 fails validation).
    fn default() -> Self {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        WanSimOptions {
            listen: any,
            forward: any,
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            loss: 0.0,
            reorder: 0.0,
            rate_bytes_per_sec: 0,
            queue_bytes: None,
            outage_file: None,
            outage_after: None,
            outage_for: None,
            duration: None,
            seed: None,
        }
    }
}

fn invalid(flag: &str, value: &str, reason: impl Into<String>) -> WanSimError {
    WanSimError::InvalidValue {
        flag: flag.to_string(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

impl WanSimOptions {
    /// Parses a probability: `"2%"` -> 0.02, `"0.02"` -> 0.02, `"1"` -> 1.0.
    /// A bare number above 1 is refused (write `"2%"`), as is anything outside 0..=100%.
    pub fn parse_percent(s: &str) -> Result<f64, WanSimError> {
        let t = s.trim();
        let (num, scale) = match t.strip_suffix('%') {
            Some(n) => (n.trim(), 100.0),
            None => (t, 1.0),
        };
        let v: f64 = num
            .parse()
            .map_err(|_| invalid("percentage", s, "expected e.g. \"2%\" or \"0.02\""))?;
        if !v.is_finite() {
            return Err(invalid("percentage", s, "not a finite number"));
        }
        let p = v / scale;
        if !(0.0..=1.0).contains(&p) {
            return Err(invalid(
                "percentage",
                s,
                "must be within 0..=100% (a bare number is a fraction, 0..=1)",
            ));
        }
        Ok(p)
    }

    /// Parses CLI-style arguments (`--flag value` or `--flag=value`, flags as in [`USAGE`]),
    /// starting from the defaults. `--forward` is required; the result is validated.
    pub fn from_args<I, S>(args: I) -> Result<WanSimOptions, WanSimError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut opts = WanSimOptions::default();
        let mut forward_set = false;
        let mut it = args.into_iter();
        while let Some(arg) = it.next() {
            let arg = arg.as_ref();
            let (flag, value) = match arg.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f.to_string(), v.to_string()),
                _ => {
                    let value = it
                        .next()
                        .ok_or_else(|| WanSimError::MissingValue(arg.to_string()))?;
                    (arg.to_string(), value.as_ref().to_string())
                }
            };
            opts.set_flag(&flag, &value)?;
            forward_set |= flag.trim_start_matches('-') == "forward";
        }
        if !forward_set {
            return Err(WanSimError::MissingOption("--forward"));
        }
        opts.validate()?;
        Ok(opts)
    }

    /// Sets one option from its CLI name (with or without leading dashes) and textual value,
    /// e.g. `set_flag("delay", "40ms")`. Useful to fill the struct from any argument parser.
    pub fn set_flag(&mut self, flag: &str, value: &str) -> Result<(), WanSimError> {
        let name = flag.trim_start_matches('-');
        let dur = |v: &str| parse_duration(v).map_err(|e| invalid(name, v, e));
        let pct = |v: &str| {
            Self::parse_percent(v).map_err(|e| match e {
                WanSimError::InvalidValue { reason, .. } => invalid(name, v, reason),
                other => other,
            })
        };
        match name {
            "listen" => self.listen = parse_addr(name, value)?,
            "forward" => self.forward = parse_addr(name, value)?,
            "delay" => self.delay = dur(value)?,
            "jitter" => self.jitter = dur(value)?,
            "loss" => self.loss = pct(value)?,
            "reorder" => self.reorder = pct(value)?,
            "rate" => {
                self.rate_bytes_per_sec = parse_rate(value).map_err(|e| invalid(name, value, e))?
            }
            "queue" => {
                self.queue_bytes = Some(parse_size(value).map_err(|e| invalid(name, value, e))?)
            }
            "outage-file" => self.outage_file = Some(PathBuf::from(value)),
            "outage-after" => self.outage_after = Some(dur(value)?),
            "outage-for" => self.outage_for = Some(dur(value)?),
            "duration" => self.duration = Some(dur(value)?),
            "seed" => {
                let seed = value
                    .trim()
                    .parse()
                    .map_err(|_| invalid(name, value, "expected an unsigned integer"))?;
                self.seed = Some(seed);
            }
            _ => return Err(WanSimError::UnknownFlag(flag.to_string())),
        }
        Ok(())
    }

    /// Checks the loopback-only policy, ranges and option pairs.
    pub fn validate(&self) -> Result<(), WanSimError> {
        check_loopback("listen", self.listen)?;
        check_loopback("forward", self.forward)?;
        if self.forward.port() == 0 {
            return Err(WanSimError::Invalid(
                "--forward needs a non-zero port".into(),
            ));
        }
        if self.listen == self.forward {
            return Err(WanSimError::Invalid(
                "--listen and --forward are the same address".into(),
            ));
        }
        for (name, p) in [("loss", self.loss), ("reorder", self.reorder)] {
            if !(0.0..=1.0).contains(&p) {
                return Err(WanSimError::Invalid(format!(
                    "--{name} {p} is outside 0..=1"
                )));
            }
        }
        for (name, d) in [("delay", self.delay), ("jitter", self.jitter)] {
            if d > MAX_DELAY {
                return Err(WanSimError::Invalid(format!(
                    "--{name} {d:?} is longer than {MAX_DELAY:?}"
                )));
            }
        }
        if let Some(q) = self.queue_bytes {
            if q < MIN_QUEUE {
                return Err(WanSimError::Invalid(format!(
                    "--queue {q} is below {MIN_QUEUE} bytes"
                )));
            }
        }
        match (self.outage_after, self.outage_for) {
            (Some(_), None) | (None, Some(_)) => {
                return Err(WanSimError::Invalid(
                    "--outage-after and --outage-for go together".into(),
                ))
            }
            _ => {}
        }
        if self.duration == Some(Duration::ZERO) {
            return Err(WanSimError::Invalid("--duration must be above 0".into()));
        }
        Ok(())
    }

    /// The rate limiter's queue in bytes: `queue_bytes`, or 1 BDP clamped to 64 KiB ..= 4 MiB.
    pub(crate) fn effective_queue(&self) -> u64 {
        self.queue_bytes.unwrap_or_else(|| {
            let rtt = 2.0 * self.delay.as_secs_f64();
            let bdp = (self.rate_bytes_per_sec as f64 * rtt) as u64;
            bdp.clamp(64 << 10, 4 << 20)
        })
    }
}

fn parse_addr(flag: &str, value: &str) -> Result<SocketAddr, WanSimError> {
    let addr: SocketAddr = value.trim().parse().map_err(|_| {
        invalid(
            flag,
            value,
            "expected IP:PORT, e.g. 127.0.0.1:7500 or [::1]:7500",
        )
    })?;
    Ok(addr)
}

fn check_loopback(what: &'static str, addr: SocketAddr) -> Result<(), WanSimError> {
    if addr.ip().is_loopback() {
        Ok(())
    } else {
        Err(WanSimError::NotLoopback { what, addr })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages() {
        let p = |s| WanSimOptions::parse_percent(s);
        assert!((p("2%").unwrap() - 0.02).abs() < 1e-12);
        assert!((p("0.02").unwrap() - 0.02).abs() < 1e-12);
        assert_eq!(p("100%").unwrap(), 1.0);
        assert_eq!(p("1").unwrap(), 1.0);
        assert_eq!(p(" 0 ").unwrap(), 0.0);
        for bad in ["2", "101%", "-1%", "abc", "", "%", "NaN", "inf%"] {
            assert!(p(bad).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn full_command_line() {
        let args = "--listen 127.0.0.1:7500 --forward 127.0.0.1:7443 --delay 40ms --jitter 5ms \
                    --loss 2% --reorder 1% --rate 100Mbit --outage-file /tmp/x \
                    --outage-after 10s --outage-for 60s --duration 10m --seed 7";
        let o = WanSimOptions::from_args(args.split_whitespace()).unwrap();
        assert_eq!(o.listen, "127.0.0.1:7500".parse().unwrap());
        assert_eq!(o.forward, "127.0.0.1:7443".parse().unwrap());
        assert_eq!(o.delay, Duration::from_millis(40));
        assert_eq!(o.jitter, Duration::from_millis(5));
        assert!((o.loss - 0.02).abs() < 1e-12);
        assert!((o.reorder - 0.01).abs() < 1e-12);
        assert_eq!(o.rate_bytes_per_sec, 12_500_000);
        assert_eq!(o.outage_file, Some(PathBuf::from("/tmp/x")));
        assert_eq!(o.outage_after, Some(Duration::from_secs(10)));
        assert_eq!(o.outage_for, Some(Duration::from_secs(60)));
        assert_eq!(o.duration, Some(Duration::from_secs(600)));
        assert_eq!(o.seed, Some(7));
        // 12.5 MB/s x 80 ms = 1 MB
        assert_eq!(o.effective_queue(), 1_000_000);
    }

    #[test]
    fn equals_form_ipv6_and_queue() {
        let o = WanSimOptions::from_args(["--forward=[::1]:9", "--queue=4KiB"]).unwrap();
        assert_eq!(o.forward, "[::1]:9".parse().unwrap());
        assert_eq!(o.effective_queue(), 4096);
        assert_eq!(WanSimOptions::default().effective_queue(), 64 << 10);
    }

    #[test]
    fn cli_errors() {
        let e = |args: &[&str]| WanSimOptions::from_args(args.iter()).unwrap_err();
        assert!(matches!(e(&["--bogus", "1"]), WanSimError::UnknownFlag(_)));
        assert!(matches!(
            e(&["--forward", "127.0.0.1:1", "--delay"]),
            WanSimError::MissingValue(_)
        ));
        assert!(matches!(
            e(&["--delay", "5ms"]),
            WanSimError::MissingOption(_)
        ));
        let err = e(&["--forward", "127.0.0.1:1", "--delay", "5 parsecs"]);
        assert!(err.to_string().starts_with("delay:"), "{err}");
        let err = e(&["--forward", "127.0.0.1:1", "--loss", "5"]);
        assert!(err.to_string().starts_with("loss:"), "{err}");
        assert!(matches!(
            e(&["--forward", "localhost:1"]),
            WanSimError::InvalidValue { .. }
        ));
        assert!(matches!(
            e(&["--seed", "-1"]),
            WanSimError::InvalidValue { .. }
        ));
    }

    #[test]
    fn loopback_only() {
        for (listen, forward) in [
            ("0.0.0.0:0", "127.0.0.1:9"),
            ("127.0.0.1:0", "10.0.0.1:9"),
            ("127.0.0.1:0", "192.168.1.1:9"),
            ("[::]:0", "127.0.0.1:9"),
            ("127.0.0.1:0", "[2001:db8::1]:9"),
            ("127.0.0.1:0", "[::ffff:127.0.0.1]:9"),
        ] {
            let err =
                WanSimOptions::from_args(["--listen", listen, "--forward", forward]).unwrap_err();
            assert!(matches!(err, WanSimError::NotLoopback { .. }), "{err}");
        }
        let ok = ["--listen", "127.3.2.1:0", "--forward", "[::1]:9"];
        assert!(WanSimOptions::from_args(ok).is_ok());
    }

    #[test]
    fn validation() {
        let base = WanSimOptions {
            forward: "127.0.0.1:9".parse().unwrap(),
            ..WanSimOptions::default()
        };
        assert!(base.validate().is_ok());
        let bad = |f: &dyn Fn(&mut WanSimOptions)| {
            let mut o = base.clone();
            f(&mut o);
            o.validate().is_err()
        };
        assert!(bad(&|o| o.forward.set_port(0)));
        assert!(bad(&|o| o.listen = o.forward));
        assert!(bad(&|o| o.loss = 1.5));
        assert!(bad(&|o| o.reorder = f64::NAN));
        assert!(bad(&|o| o.delay = Duration::from_secs(7200)));
        assert!(bad(&|o| o.queue_bytes = Some(10)));
        assert!(bad(&|o| o.outage_after = Some(Duration::ZERO)));
        assert!(bad(&|o| o.outage_for = Some(Duration::ZERO)));
        assert!(bad(&|o| o.duration = Some(Duration::ZERO)));
        assert!(!bad(&|o| {
            o.outage_after = Some(Duration::ZERO);
            o.outage_for = Some(Duration::from_secs(1));
        }));
    }
}
