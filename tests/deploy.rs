//! The deployment kit under `deploy/`, checked with the real tools: every example config
//! passes `georelay check`; the systemd unit verifies; the Prometheus config and alerts pass
//! `promtool` (with unit tests); the Kubernetes manifests pass a schema validator; the
//! dashboard and the README name only metrics a real agent chain exports; and a real
//! Prometheus scraping a chain sees sane lag and alerts when the link is blackholed. The Redis
//! Cluster StatefulSets (pod i takes part i/N) are checked in `deploy/kubernetes_cluster.rs`.
//!
//! External tools come from scripts/install-deps.sh (Debian `prometheus`, PyPI
//! `kubernetes-validate`); a missing one fails its test with an install hint.

mod support;

#[path = "deploy/kubernetes_cluster.rs"]
mod kubernetes_cluster;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::load::{write_mixed, write_sets};
use support::prom::{
    dashboard_exprs, georelay_names, instantiate, metric_families, repo_root, require, run, run_ok,
    Prometheus,
};
use support::{
    agent_config, agent_config_from_agent, free_udp_port, start_replica, wait_digests_equal,
    wait_until, Agent, Client, Pki, Redis, WanSimProc,
};

const LONG: Duration = Duration::from_secs(120);
const LAG_PANEL: &str = "Lag behind origin (seconds) per node";

fn georelay() -> Command {
    Command::new(env!("CARGO_BIN_EXE_georelay"))
}

/// `*.toml` files under `dir`, recursively, sorted.
fn tomls(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("read dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(tomls(&p));
        } else if p.extension().is_some_and(|x| x == "toml") {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// The `georelay.toml: |` blocks embedded in a Kubernetes manifest's ConfigMaps.
fn embedded_tomls(yaml: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut lines = yaml.lines().peekable();
    while let Some(l) = lines.next() {
        if l.trim_end() != "  georelay.toml: |" {
            continue;
        }
        let mut block = String::new();
        let mut indent = None;
        while let Some(next) = lines.peek() {
            if next.trim().is_empty() {
                block.push('\n');
                lines.next();
                continue;
            }
            let n = next.len() - next.trim_start().len();
            let ind = *indent.get_or_insert(n);
            if n < ind || n <= 2 {
                break;
            }
            block.push_str(&next[ind..]);
            block.push('\n');
            lines.next();
        }
        out.push(block);
    }
    out
}

/// Node names whose certificates a config refers to (`/etc/georelay/certs/<name>.pem`).
fn cert_nodes(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.split('"').nth(1))
        .filter_map(|v| v.strip_prefix("/etc/georelay/certs/"))
        .filter_map(|f| f.strip_suffix(".pem"))
        .filter(|n| *n != "ca")
        .map(str::to_string)
        .collect()
}

#[test]
fn example_and_kubernetes_configs_pass_georelay_check() {
    let root = repo_root();
    let mut configs: Vec<(String, String)> = tomls(&root.join("deploy/examples"))
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("read example");
            (p.strip_prefix(&root).unwrap().display().to_string(), text)
        })
        .collect();
    let examples = configs.len();
    assert!(
        examples >= 6,
        "expected the two-site and fan-out examples, found {examples}"
    );
    for f in ["site-a.yaml", "region-b.yaml"] {
        let yaml = std::fs::read_to_string(root.join("deploy/kubernetes").join(f)).unwrap();
        let blocks = embedded_tomls(&yaml);
        assert_eq!(blocks.len(), 1, "{f}: one georelay.toml in its ConfigMap");
        configs.extend(
            blocks
                .into_iter()
                .map(|b| (format!("deploy/kubernetes/{f}"), b)),
        );
    }
    let nodes: BTreeSet<String> = configs.iter().flat_map(|(_, t)| cert_nodes(t)).collect();
    for n in ["site-a", "region-b", "region-c", "region-d"] {
        assert!(nodes.contains(n), "no config uses certificates of {n}");
    }

    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let list = nodes.iter().cloned().collect::<Vec<_>>().join(",");
    run_ok(
        georelay()
            .args(["certs", "init", "--dir"])
            .arg(&certs)
            .args(["--nodes", &list]),
    );
    let mut failures = Vec::new();
    for (i, (origin, text)) in configs.iter().enumerate() {
        let text = text.replace("/etc/georelay/certs/", &format!("{}/", certs.display()));
        let path = dir.path().join(format!("config-{i}.toml"));
        std::fs::write(&path, text).unwrap();
        let out = run(georelay().arg("check").arg("--config").arg(&path));
        if !out.status.success() {
            failures.push(format!(
                "{origin}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "georelay check failed:\n{}",
        failures.join("\n")
    );
    println!(
        "{} configs pass georelay check ({examples} examples)",
        configs.len()
    );
}

#[test]
fn systemd_unit_verifies_and_is_sandboxed() {
    let unit = repo_root().join("deploy/systemd/georelay.service");
    let text = std::fs::read_to_string(&unit).unwrap();
    for key in [
        "User=georelay",
        "StateDirectory=georelay",
        "Restart=on-failure",
        "LimitNOFILE=",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "ExecStart=/usr/local/bin/georelay run --config /etc/georelay/georelay.toml",
    ] {
        assert!(text.contains(key), "georelay.service lacks {key}");
    }
    require("systemd-analyze", "Debian package `systemd`");
    // `verify` wants the ExecStart binaries to exist: point them at the one under test.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("georelay.service");
    std::fs::write(
        &copy,
        text.replace("/usr/local/bin/georelay", env!("CARGO_BIN_EXE_georelay")),
    )
    .unwrap();
    let out = run(Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&copy));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "systemd-analyze verify:\n{said}"
    );
    // Exposure 2.0 or better ("OK" is below 4.0; an unhardened unit rates 9.6).
    run_ok(
        Command::new("systemd-analyze")
            .args(["security", "--offline=yes", "--threshold=20", "--no-pager"])
            .arg(&unit),
    );
}

#[test]
fn prometheus_config_and_alert_rules_pass_promtool() {
    require("promtool", "Debian package `prometheus`");
    let dir = repo_root().join("deploy/prometheus");
    run_ok(
        Command::new("promtool")
            .args(["check", "config"])
            .arg(dir.join("prometheus.yml")),
    );
    let rules = run_ok(
        Command::new("promtool")
            .args(["check", "rules"])
            .arg(dir.join("alerts.yml")),
    );
    assert!(rules.contains("SUCCESS"), "{rules}");
    let tests = run_ok(
        Command::new("promtool")
            .args(["test", "rules", "alerts_test.yml"])
            .current_dir(&dir),
    );
    assert!(tests.contains("SUCCESS"), "{tests}");
    // Every alert has a unit test.
    let alerts = std::fs::read_to_string(dir.join("alerts.yml")).unwrap();
    let tested = std::fs::read_to_string(dir.join("alerts_test.yml")).unwrap();
    for name in alerts
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
    {
        assert!(
            tested.contains(&format!("alertname: {name}\n")),
            "alert {name} has no test in alerts_test.yml"
        );
    }
}

#[test]
fn kubernetes_manifests_pass_schema_validation() {
    let python = "python3";
    require(python, "Debian package `python3`");
    let probe = run(Command::new(python).args(["-m", "kubernetes_validate", "--version"]));
    assert!(
        probe.status.success(),
        "the PyPI package kubernetes-validate is not installed for {python}; run \
         scripts/install-deps.sh (python3 -m pip install kubernetes-validate)"
    );
    let dir = repo_root().join("deploy/kubernetes");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "namespace, site and region manifests");
    let out = run_ok(
        Command::new(python)
            .args(["-m", "kubernetes_validate", "--strict"])
            .args(&files),
    );
    for kind in ["statefulset/", "service/", "secret/", "configmap/"] {
        assert!(out.contains(kind), "no {kind} validated:\n{out}");
    }
    for want in [
        "protocol: UDP",
        "path: /healthz",
        "path: /readyz",
        "volumeClaimTemplates",
    ] {
        for f in ["site-a.yaml", "region-b.yaml"] {
            let text = std::fs::read_to_string(dir.join(f)).unwrap();
            assert!(text.contains(want), "{f} lacks {want}");
        }
    }
}

#[test]
fn dockerfile_is_multi_stage_and_runs_unprivileged() {
    // No image registry is reachable here to build it; check its shape instead.
    let text = std::fs::read_to_string(repo_root().join("deploy/docker/Dockerfile")).unwrap();
    let froms = text.lines().filter(|l| l.starts_with("FROM ")).count();
    assert!(froms >= 2, "multi-stage: {froms} FROM lines");
    assert!(
        text.contains("COPY --from=build"),
        "the binary comes from the build stage"
    );
    let user = text
        .lines()
        .filter_map(|l| l.strip_prefix("USER "))
        .next_back()
        .expect("a USER line");
    assert!(
        !user.starts_with('0') && !user.starts_with("root"),
        "runs as {user}"
    );
}

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
    let replid = support::info_field(&mut ri, "replication", "master_replid");
    let offset: u64 = support::info_field(&mut ri, "replication", "master_repl_offset")
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

#[test]
fn fan_out_example_has_a_site_and_three_regions() {
    let mut upstreams = Vec::new();
    for p in tomls(&repo_root().join("deploy/examples/fanout")) {
        let t = std::fs::read_to_string(&p).unwrap();
        let v: toml::Value = t.parse().expect("TOML");
        upstreams.push((
            v["name"].as_str().unwrap().to_string(),
            v["upstream"].get("agent").is_some(),
        ));
    }
    upstreams.sort();
    assert_eq!(
        upstreams,
        vec![
            ("region-b".to_string(), true),
            ("region-c".to_string(), true),
            ("region-d".to_string(), true),
            ("site-a".to_string(), false)
        ]
    );
}
