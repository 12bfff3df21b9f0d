//! Reading an agent's Prometheus `/metrics`: a scrape that fails is an error, and so is a
//! metric family or label key that is not there, so no check reads a dead agent or a renamed
//! metric as 0.

use super::http_get;

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
