//! Recorded samples per (scenario, case, metric), their medians, and the target rows.

use std::collections::BTreeMap;

use serde::Serialize;

#[derive(Serialize, Clone)]
pub struct Row {
    pub scenario: String,
    pub case: String,
    pub metric: String,
    pub unit: String,
    pub values: Vec<f64>,
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub rerun: String,
    /// For a scenario not rerun: the run its numbers come from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
}

#[derive(Serialize)]
pub struct Target {
    pub target: String,
    pub measured: String,
    pub met: bool,
}

#[derive(Default)]
pub struct Results {
    // (scenario, metric order, case order) preserved by insertion index
    pub rows: Vec<(String, String, String, String, Vec<f64>)>,
    pub notes: BTreeMap<String, Vec<String>>,
    /// Scenarios not run this time whose rows come from the previous benchmarks.json:
    /// scenario -> (its `Rerun:` command, where the numbers come from).
    pub carried: BTreeMap<String, (String, String)>,
}

impl Results {
    pub fn rec(&mut self, scenario: &str, case: &str, metric: &str, unit: &str, v: f64) {
        if let Some(r) = self
            .rows
            .iter_mut()
            .find(|r| r.0 == scenario && r.1 == case && r.2 == metric)
        {
            r.4.push(v);
        } else {
            self.rows.push((
                scenario.into(),
                case.into(),
                metric.into(),
                unit.into(),
                vec![v],
            ));
        }
        eprintln!("  [{scenario}] {case} / {metric}: {v:.3} {unit}");
    }

    pub fn note(&mut self, scenario: &str, text: String) {
        eprintln!("  [{scenario}] note: {text}");
        self.notes.entry(scenario.into()).or_default().push(text);
    }

    pub fn med(&self, scenario: &str, case: &str, metric: &str) -> Option<f64> {
        self.rows
            .iter()
            .find(|r| r.0 == scenario && r.1 == case && r.2 == metric)
            .map(|r| stats(&r.4).0)
    }
}

/// (median, min, max); NaN-free input expected.
pub fn stats(v: &[f64]) -> (f64, f64, f64) {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if s.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = s.len();
    let med = if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    };
    (med, s[0], s[n - 1])
}

pub fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

pub fn rec_lag(res: &mut Results, sc: &str, case: &str, prefix: &str, lags: &[f64]) {
    res.rec(
        sc,
        case,
        &format!("{prefix} lag p50"),
        "ms",
        pct(lags, 50.0),
    );
    res.rec(
        sc,
        case,
        &format!("{prefix} lag p99"),
        "ms",
        pct(lags, 99.0),
    );
    res.rec(
        sc,
        case,
        &format!("{prefix} lag max"),
        "ms",
        lags.last().copied().unwrap_or(f64::NAN),
    );
}
