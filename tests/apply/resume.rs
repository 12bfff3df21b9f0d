//! The apply tests' resume checks, proved with counters: after a restart with the target
//! intact nothing is re-applied, and new origin writes are applied exactly once.
#![allow(dead_code)]

use std::time::Duration;

use crate::support::Agent;

/// No full sync, no key loaded, no command applied on lane `shard` since the agent started.
pub fn assert_nothing_reapplied(agent: &Agent, shard: &str) {
    for name in [
        "georelay_apply_full_syncs_total",
        "georelay_apply_keys_loaded_total",
        "georelay_apply_commands_total",
    ] {
        assert_eq!(
            agent.metric(name, &[("shard", shard)]),
            0.0,
            "{name} after a restart"
        );
    }
}

/// Runs `write` (which writes `n` commands into the origin), then waits with `caught_up`
/// until the applier has everything: exactly `n` commands applied on lane `shard`, and no
/// command failed in the target.
pub fn assert_applies_exactly(
    agent: &Agent,
    shard: &str,
    n: f64,
    limit: Duration,
    write: impl FnOnce(),
    caught_up: impl FnOnce(),
) {
    write();
    agent.wait_metric(
        "georelay_apply_commands_total",
        &[("shard", shard)],
        limit,
        |v| v >= n,
    );
    caught_up();
    assert_eq!(
        agent.metric("georelay_apply_commands_total", &[("shard", shard)]),
        n
    );
    assert_eq!(
        agent.metric("georelay_apply_errors_total", &[("reason", "command")]),
        0.0
    );
}
