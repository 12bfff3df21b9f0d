//! The test helpers' checks fail when they should: a metrics read against a dead agent, a
//! missing metric family or label, a missing INFO field, and a log segment that is not whole
//! records are errors (or panics), never a plausible 0, "" or "fine".

mod support;

use std::time::Duration;

use support::logfiles;
use support::{agent_config, metric_value, wait_until, Agent, MetricsError, Redis};

#[test]
fn metrics_reads_fail_against_a_closed_admin_port_and_for_missing_families() {
    let master = Redis::start(&[]);
    let mut agent = Agent::start(&agent_config(&master.addr(), ""));
    wait_until(Duration::from_secs(60), "the agent streams", || {
        agent.metric("georelay_upstream_connected", &[]) == 1.0
    });
    // A live agent: counters with known labels read 0 before they count anything.
    assert_eq!(
        agent
            .try_metric("georelay_served_full_syncs_total", &[("kind", "redis")])
            .unwrap(),
        0.0
    );
    // A renamed (or misspelled) family or label key is an error, not 0.
    match agent.try_metric("georelay_served_full_sync_total", &[]) {
        Err(MetricsError::NoFamily(name)) => assert_eq!(name, "georelay_served_full_sync_total"),
        other => panic!("a missing family read as {other:?}"),
    }
    match agent.try_metric("georelay_served_full_syncs_total", &[("knid", "redis")]) {
        Err(MetricsError::NoLabel { label, .. }) => assert_eq!(label, "knid"),
        other => panic!("a missing label read as {other:?}"),
    }
    // The admin port closed: the read is an error, and `metric` fails the test with it.
    agent.kill9();
    match agent.try_metric("georelay_log_corruptions_total", &[]) {
        Err(MetricsError::Scrape { port, .. }) => assert_eq!(port, agent.admin_port),
        other => panic!("a dead agent's metric read as {other:?}"),
    }
    assert!(
        agent.try_metrics().is_err(),
        "a dead agent's /metrics read as text"
    );
    let dead = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        agent.metric("georelay_log_corruptions_total", &[])
    }));
    let msg = dead.expect_err("`== 0.0` passed against a dead agent");
    let msg = msg.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("scraping /metrics"), "unclear failure: {msg}");
}

#[test]
fn metric_values_are_parsed_exactly() {
    let text = "# HELP x_total X.\n# TYPE x_total counter\nx_total{kind=\"a\",reason=\"r\"} 2\n\
                x_total{kind=\"b\",reason=\"r\"} 3\nx_total_other 7\nxkind_total{kind=\"a\"} 9\n";
    assert_eq!(metric_value(text, "x_total", &[]).unwrap(), 5.0);
    assert_eq!(
        metric_value(text, "x_total", &[("kind", "a")]).unwrap(),
        2.0
    );
    // A label value nobody has yet is a 0 sum; an unknown key or family is an error.
    assert_eq!(
        metric_value(text, "x_total", &[("kind", "c")]).unwrap(),
        0.0
    );
    assert!(metric_value(text, "x_total", &[("kin", "a")]).is_err());
    assert!(metric_value(text, "y_total", &[]).is_err());
    assert!(metric_value("", "x_total", &[]).is_err());
}

#[test]
fn a_missing_info_field_fails_instead_of_comparing_equal() {
    let r = Redis::start(&[]);
    assert_eq!(r.info_field("replication", "role"), "master");
    let missing = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        r.info_field("replication", "master_link_status")
    }));
    assert!(
        missing.is_err(),
        "a master's missing master_link_status read as a value"
    );
    assert_eq!(
        support::try_info_field(&mut r.client(), "replication", "master_link_status"),
        None
    );
}

#[test]
fn a_half_written_record_is_caught_by_the_segment_check() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("00000001-00000000000000000001.seg");
    let payload = b"*1\r\n$4\r\nPING\r\n";
    let mut bytes = georelay::log::record::encode_header(payload, 1, 42).to_vec();
    bytes.extend_from_slice(payload);
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(logfiles::whole_records(&path), Ok(1));
    assert_eq!(logfiles::assert_whole_log(dir.path()), 1);
    // Half of a second record: the check names it.
    let mut torn = bytes.clone();
    torn.extend_from_slice(&georelay::log::record::encode_header(payload, 15, 43));
    torn.extend_from_slice(&payload[..5]);
    std::fs::write(&path, &torn).unwrap();
    let e = logfiles::whole_records(&path).unwrap_err();
    assert!(e.contains("half-written"), "{e}");
    // A flipped payload byte fails the CRC.
    let mut bad = bytes;
    let last = bad.len() - 1;
    bad[last] ^= 1;
    std::fs::write(&path, &bad).unwrap();
    assert!(logfiles::whole_records(&path).unwrap_err().contains("CRC"));
    // No segments at all is a failure too.
    let empty = tempfile::tempdir().unwrap();
    assert!(std::panic::catch_unwind(|| logfiles::assert_whole_log(empty.path())).is_err());
}
