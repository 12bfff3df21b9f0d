//! The dashboard, the README's metrics table and real Prometheus against a real agent chain
//! (site agent → wan-sim → region agent → replica): every queried metric is exported, and
//! Prometheus sees sane lag and alerts when the link is blackholed.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::support::load::{write_mixed, write_sets};
use crate::support::prom::{
    dashboard_exprs, georelay_names, instantiate, metric_families, repo_root, require, Prometheus,
};
use crate::support::{
    agent_config, agent_config_from_agent, free_udp_port, start_replica, wait_digests_equal,
    wait_until, Agent, Client, Pki, Redis, WanSimProc,
};

const LONG: Duration = Duration::from_secs(120);
const LAG_PANEL: &str = "Lag behind origin (seconds) per node";

/// A site agent (upstream: a real master) → wan-sim → region agent → replica, driven until
/// every labelled metric vector has a value: snapshot refresh at the site; at the region a
/// partial sync served, a refusal (max_replicas) and a replica dropped for silence.
struct Chain {
    master: Redis,
    site: Agent,
    region: Agent,
    wan: WanSimProc,
    replica: Redis,
    _pki: Pki,
}

fn chain(site_extra: &str, region_extra: &str) -> Chain {
    let pki = Pki::new(&["site-a", "region-b"]);
    let master = Redis::start(&[]);
    let quic = free_udp_port();
    let site = Agent::start(&agent_config(
        &master.addr(),
        &format!(
            "agent = \"127.0.0.1:{quic}\"\n{}{site_extra}",
            pki.tls_section("site-a", None)
        ),
    ));
    let wan = WanSimProc::start(quic, &[]);
    let region = Agent::start(&agent_config_from_agent(
        "region-b",
        &wan.addr(),
        &format!(
            "{region_extra}{}",
            pki.tls_section("region-b", Some("site-a"))
        ),
    ));
    let replica = start_replica(&region.addr(), &[]);
    write_mixed(master.port, 0, 5_000, "d");
    wait_digests_equal(&master, &[&replica], LONG);
    Chain {
        master,
        site,
        region,
        wan,
        replica,
        _pki: pki,
    }
}

/// The chain with every labelled vector populated; returns the union of both agents'
/// metric families (name → type).
fn full_chain_metrics() -> std::collections::BTreeMap<String, String> {
    // The region also applies into a target (apply mode), so the dashboard's apply panels
    // query metrics this chain exports.
    let target = Redis::start(&[]);
    let c = chain(
        "[log]\nsnapshot_after = \"256KiB\"\n",
        &format!(
            "[serve]\ntimeout = \"3s\"\nmax_replicas = 2\n[target]\nredis = \"{}\"\n",
            target.addr()
        ),
    );
    // Snapshot refresh at the site: more than snapshot_after of stream.
    write_sets(c.master.port, 2_000, 1024, "snap");
    wait_until(LONG, "the site refreshes its snapshot", || {
        c.site.metric("georelay_snapshot_refreshes_total", &[]) >= 1.0
    });
    wait_digests_equal(&c.master, &[&c.replica], LONG);

    // A partial sync served by the region: PSYNC at the replica's own position.
    let mut ri = c.replica.client();
    let replid = crate::support::info_field(&mut ri, "replication", "master_replid");
    let offset: u64 = crate::support::info_field(&mut ri, "replication", "master_repl_offset")
        .parse()
        .expect("replica offset");
    let mut partial = Client::connect(c.region.redis_port);
    partial.cmd(&["REPLCONF", "listening-port", "1"]);
    let reply = partial.cmd_str(&["PSYNC", &replid, &(offset + 1).to_string()]);
    assert!(
        reply.starts_with("CONTINUE"),
        "PSYNC at the replica's offset: {reply}"
    );
    // Two replicas now (max_replicas = 2): a third is refused.
    let mut third = Client::connect(c.region.redis_port);
    let reply = third.cmd_str(&["PSYNC", "?", "-1"]);
    assert!(
        reply.contains("max number of replicas"),
        "third replica: {reply}"
    );
    // The partial client never ACKs: dropped after serve.timeout.
    wait_until(LONG, "the silent replica is dropped", || {
        c.region
            .metric("georelay_replicas_dropped_total", &[("reason", "timeout")])
            >= 1.0
    });
    drop(partial);
    wait_until(LONG, "the region reports its replica's lag", || {
        c.region.metrics().contains("georelay_replica_ack_offset{")
            && c.site
                .metrics()
                .contains("georelay_downstream_agent_ack_offset{")
    });
    let mut names = std::collections::BTreeMap::new();
    for text in [c.site.metrics(), c.region.metrics()] {
        names.extend(metric_families(&text));
    }
    names
}

/// `name` as exported: histogram series suffixes map to their family.
fn family_of<'a>(name: &'a str, families: &std::collections::BTreeMap<String, String>) -> &'a str {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if families.get(base).is_some_and(|t| t == "histogram") {
                return base;
            }
        }
    }
    name
}

#[test]
fn dashboard_queries_name_only_metrics_a_real_chain_exports() {
    let path = repo_root().join("deploy/grafana/georelay.json");
    let dash: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).expect("dashboard JSON");
    let vars: Vec<&str> = dash["templating"]["list"]
        .as_array()
        .expect("template variables")
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    for v in ["instance", "node", "peer"] {
        assert!(vars.contains(&v), "dashboard lacks the ${v} variable");
    }
    let exprs = dashboard_exprs(&dash);
    assert!(
        exprs.iter().any(|(t, _)| t == LAG_PANEL),
        "no panel {LAG_PANEL:?}"
    );
    let mut named: BTreeSet<String> = exprs.iter().flat_map(|(_, e)| georelay_names(e)).collect();
    for v in dash["templating"]["list"].as_array().unwrap() {
        named.extend(georelay_names(&v["definition"].to_string()));
    }
    let families = full_chain_metrics();
    let missing: Vec<&String> = named
        .iter()
        .filter(|n| !families.contains_key(family_of(n, &families)))
        .collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries metrics that /metrics does not export: {missing:?}\nexported: {:?}",
        families.keys().collect::<Vec<_>>()
    );
    println!(
        "{} dashboard queries, {} metrics, all exported",
        exprs.len(),
        named.len()
    );
}

#[test]
fn readme_metrics_table_matches_a_real_chain() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let documented: BTreeSet<String> = readme
        .lines()
        .filter(|l| l.starts_with("| `georelay_"))
        .filter_map(|l| l.split('`').nth(1))
        .map(str::to_string)
        .collect();
    assert!(!documented.is_empty(), "README has no metrics table");
    let families = full_chain_metrics();
    let exported: BTreeSet<String> = families
        .keys()
        .filter(|n| n.starts_with("georelay_"))
        .cloned()
        .collect();
    let undocumented: Vec<_> = exported.difference(&documented).collect();
    let phantom: Vec<_> = documented.difference(&exported).collect();
    assert!(
        undocumented.is_empty() && phantom.is_empty(),
        "README metrics table and /metrics differ:\n  exported but not in README: {undocumented:?}\n  \
         in README but not exported: {phantom:?}"
    );
}

#[test]
fn real_prometheus_scrapes_a_chain_and_alerts_when_the_link_is_blackholed() {
    require("prometheus", "Debian package `prometheus`");
    let c = chain("", "");
    let alerts = repo_root().join("deploy/prometheus/alerts.yml");
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
         rule_files:\n  - {}\n\
         scrape_configs:\n  - job_name: georelay\n    static_configs:\n      - targets: \
         [\"127.0.0.1:{}\", \"127.0.0.1:{}\"]\n",
        alerts.display(),
        c.site.admin_port,
        c.region.admin_port
    );
    let prom = Prometheus::start(&config);
    wait_until(LONG, "Prometheus scrapes both agents", || {
        let t = prom.targets();
        t.len() == 2 && t.iter().all(|(_, health, _)| health == "up")
    });

    // The dashboard's lag query through the HTTP API: a number >= 0 per node, ~0 when idle.
    let dash: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("deploy/grafana/georelay.json")).unwrap(),
    )
    .unwrap();
    let exprs = dashboard_exprs(&dash);
    let lag_query = instantiate(&exprs.iter().find(|(t, _)| t == LAG_PANEL).unwrap().1);
    let mut lag = Vec::new();
    wait_until(LONG, "the lag query returns both nodes", || {
        lag = prom.query_vector(&lag_query);
        lag.len() == 2
    });
    for (labels, v) in &lag {
        assert!(v.is_finite() && *v >= 0.0, "lag {v} for {labels}");
    }
    wait_until(LONG, "lag is small on a healthy, idle chain", || {
        let now = prom.query_vector(&lag_query);
        now.len() == 2 && now.iter().all(|(_, v)| *v < 2.0)
    });
    println!("healthy lag: {:?}", prom.query_vector(&lag_query));
    // Every dashboard query is valid PromQL for this Prometheus.
    for (title, e) in &exprs {
        let v = prom.query(&instantiate(e));
        assert_eq!(v["status"], "success", "panel {title:?}: {e}: {v}");
    }
    let link_alerts = ["GeoRelayUpstreamDown", "GeoRelayUpstreamHeartbeatStale"];
    let active = prom.alerts();
    assert!(
        !active
            .iter()
            .any(|(n, _, _)| link_alerts.contains(&n.as_str())),
        "link alerts on a healthy chain: {active:?}"
    );

    // Blackhole the link: the region stops hearing its upstream.
    c.wan.cut();
    let cut = Instant::now();
    let mut seen = None;
    wait_until(
        LONG,
        "a link or heartbeat alert pending or firing for region-b",
        || {
            seen = prom.alerts().into_iter().find(|(name, state, labels)| {
                link_alerts.contains(&name.as_str())
                    && labels["node"] == "region-b"
                    && (state == "pending" || state == "firing")
            });
            seen.is_some()
        },
    );
    let (name, state, _) = seen.unwrap();
    println!(
        "{name} {state} {:.1}s after the cut",
        cut.elapsed().as_secs_f64()
    );
    let age = prom.query_vector("georelay_upstream_heartbeat_age_seconds{node=\"region-b\"}");
    assert!(
        !age.is_empty() && age.iter().all(|(_, v)| *v > 1.0),
        "heartbeat age during the cut: {age:?}"
    );
    c.wan.restore();
}
