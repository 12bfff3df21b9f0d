//! Integration: a fresh, healthy chain (origin → site agent → region agent → replica) exports
//! every metric name the Grafana dashboard and the Prometheus alerts query, and its labelled
//! counters start at 0 before any event.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use support::prom::{georelay_names, repo_root};
use support::{
    agent_config, agent_config_from_agent, free_udp_port, http_get, start_replica, wait_until,
    Agent, Pki, Redis,
};

const LONG: Duration = Duration::from_secs(60);

/// Metric names the dashboard and alert files query.
fn queried_names() -> BTreeSet<String> {
    let root = repo_root().join("deploy");
    let mut names = BTreeSet::new();
    for dir in ["grafana", "prometheus"] {
        for ent in std::fs::read_dir(root.join(dir)).expect("read deploy dir") {
            let path = ent.expect("dir entry").path();
            let is_query_file = path
                .extension()
                .is_some_and(|e| e == "json" || e == "yml" || e == "yaml");
            if is_query_file {
                let text = std::fs::read_to_string(&path).expect("read deploy file");
                names.extend(georelay_names(&text));
            }
        }
    }
    assert!(names.len() > 10, "found only {names:?} in deploy/");
    names
}

/// Sample names in a strict scrape (it must succeed).
fn sample_names(agent: &Agent) -> (BTreeSet<String>, String) {
    let (code, body) = http_get(agent.admin_port, "/metrics").expect("scrape /metrics");
    assert_eq!(code, 200);
    let names = body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect();
    (names, body)
}

#[test]
fn a_fresh_chain_exports_every_queried_metric_and_counters_start_at_zero() {
    let pki = Pki::new(&["site-a", "region-b"]);
    let origin = Redis::start(&[]);
    let quic = free_udp_port();
    let a = Agent::start(&agent_config(
        &origin.addr(),
        &format!(
            "agent = \"127.0.0.1:{quic}\"\n{}",
            pki.tls_section("site-a", None)
        ),
    ));
    // B also applies into a target (apply mode), so the dashboard's apply panels have data.
    let target = Redis::start(&[]);
    let b = Agent::start(&agent_config_from_agent(
        "region-b",
        &format!("127.0.0.1:{quic}"),
        &format!(
            "{}[target]\nredis = \"{}\"\n",
            pki.tls_section("region-b", Some("site-a")),
            target.addr()
        ),
    ));
    let _replica = start_replica(&b.addr(), &[]);
    wait_until(LONG, "the chain is up: A has B, B has its replica", || {
        let (an, _) = sample_names(&a);
        let (bn, _) = sample_names(&b);
        an.contains("georelay_downstream_agent_lag_bytes")
            && bn.contains("georelay_replica_lag_bytes")
    });
    let (mut have, a_body) = sample_names(&a);
    let (bn, b_body) = sample_names(&b);
    have.extend(bn);
    let missing: Vec<_> = queried_names()
        .into_iter()
        .filter(|n| !have.contains(n))
        .collect();
    assert!(missing.is_empty(), "queried but not exported: {missing:?}");
    let zero = |body: &str, name: &str, label: &str| {
        let l = body
            .lines()
            .find(|l| l.starts_with(name) && l.contains(label))
            .unwrap_or_else(|| panic!("{name} {label} missing"));
        assert!(l.ends_with(" 0"), "{l}");
    };
    zero(
        &b_body,
        "georelay_replicas_dropped_total",
        "reason=\"slow\"",
    );
    zero(
        &a_body,
        "georelay_snapshot_refreshes_total",
        "result=\"error\"",
    );
    zero(
        &a_body,
        "georelay_served_refusals_total",
        "reason=\"max_replicas\"",
    );
    zero(
        &a_body,
        "georelay_served_full_syncs_total",
        "reason=\"corruption\"",
    );
}
