//! Dev-only helpers shared by the integration tests (`tests/support`) and the bench
//! (`bench/`), included by path in both so there is one copy: free loopback ports, a minimal
//! HTTP GET, and `/metrics` reads where a failed scrape or a missing metric family or label
//! is an error, never a plausible 0.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

/// A free TCP port on 127.0.0.1 (bound then released).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

/// A free UDP port on 127.0.0.1 (bound then released).
pub fn free_udp_port() -> u16 {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind an ephemeral UDP port");
    s.local_addr().expect("local addr").port()
}

/// A minimal HTTP GET on 127.0.0.1: (status code, body).
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    // A response cut before the end of its headers is no response.
    let (_, body) = text.split_once("\r\n\r\n")?;
    Some((code, body.to_string()))
}

/// Why a metric could not be read: the scrape failed, or the value is not there to read.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("scraping /metrics on 127.0.0.1:{port} failed: {why}")]
    Scrape { port: u16, why: String },
    #[error("/metrics has no metric family {0:?}")]
    NoFamily(String),
    #[error("metric family {name:?} has no label {label:?} (its samples: {samples:?})")]
    NoLabel {
        name: String,
        label: String,
        samples: Vec<String>,
    },
}

/// GETs `/metrics` from the admin port: the body of a 200, else an error.
pub fn scrape(port: u16) -> Result<String, MetricsError> {
    let fail = |why: String| MetricsError::Scrape { port, why };
    match http_get(port, "/metrics") {
        None => Err(fail("no HTTP answer".into())),
        Some((200, body)) => Ok(body),
        Some((code, _)) => Err(fail(format!("HTTP {code}"))),
    }
}

/// Sum of the samples of `name` whose labels contain every `k="v"` in `labels`. The family
/// must be in `text` (a `# TYPE` line or a sample), and every label key asked for must be one
/// of its labels, so a renamed metric or label is an error, not 0. A label *value* that no
/// sample has yet sums to 0 (a counter not yet incremented for it).
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> Result<f64, MetricsError> {
    let samples: Vec<(Labels<'_>, f64)> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| parse_sample(l).filter(|(n, _, _)| *n == name))
        .map(|(_, labels, value)| (labels, value))
        .collect();
    let declared = text.lines().any(|l| {
        l.strip_prefix("# TYPE ")
            .and_then(|t| t.split(' ').next())
            .is_some_and(|family| family == name)
    });
    if samples.is_empty() && !declared {
        return Err(MetricsError::NoFamily(name.to_string()));
    }
    for (k, _) in labels {
        if !samples
            .iter()
            .any(|(ls, _)| ls.iter().any(|(lk, _)| lk == k))
        {
            return Err(MetricsError::NoLabel {
                name: name.to_string(),
                label: k.to_string(),
                samples: samples.iter().map(|s| format!("{s:?}")).collect(),
            });
        }
    }
    Ok(samples
        .iter()
        .filter(|(ls, _)| labels.iter().all(|want| ls.contains(want)))
        .map(|(_, v)| v)
        .sum())
}

/// A sample's labels, as `(key, value)` pairs in exposition order.
type Labels<'a> = Vec<(&'a str, &'a str)>;

/// One exposition line `name{k="v",…} value` → (name, labels, value); `None` if malformed.
fn parse_sample(line: &str) -> Option<(&str, Labels<'_>, f64)> {
    let (head, value) = line.rsplit_once(' ')?;
    let value = value.parse().ok()?;
    let Some((name, rest)) = head.split_once('{') else {
        return Some((head, Vec::new(), value));
    };
    let mut labels = Vec::new();
    let mut rest = rest.strip_suffix('}')?;
    while !rest.is_empty() {
        let (k, after) = rest.split_once("=\"")?;
        let (v, after) = after.split_once('"')?;
        labels.push((k, v));
        rest = after.strip_prefix(',').unwrap_or(after);
    }
    Some((name, labels, value))
}
