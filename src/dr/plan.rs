//! The pure parts of switchover and failover: the steps and their order, the checks made on
//! what the servers and agents report, when the wait is over, and what a failure at each step
//! means (roll back, or finish by hand). No I/O here.

use std::time::Duration;

use crate::metrics::status::{Status, UpstreamKind};

use super::redis::Replication;

/// The steps of a planned switchover, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Step {
    Check,
    Fence,
    Wait,
    Promote,
    Repoint,
    Demote,
}

impl Step {
    pub const ALL: [Step; 6] = [
        Step::Check,
        Step::Fence,
        Step::Wait,
        Step::Promote,
        Step::Repoint,
        Step::Demote,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Step::Check => "check",
            Step::Fence => "fence",
            Step::Wait => "wait",
            Step::Promote => "promote",
            Step::Repoint => "repoint",
            Step::Demote => "demote",
        }
    }

    /// Before the promotion nothing has changed but the pause: a failure rolls back.
    pub fn rolls_back(self) -> bool {
        self < Step::Promote
    }
}

/// One finished step, for the output table.
#[derive(Debug, Clone, PartialEq)]
pub struct StepRow {
    pub step: &'static str,
    pub took: Duration,
    pub detail: String,
}

/// Renders the step table.
pub fn render(rows: &[StepRow]) -> String {
    let w = rows.iter().map(|r| r.step.len()).max().unwrap_or(4).max(4);
    let mut out = format!("{:<w$}  {:>10}  DETAIL\n", "STEP", "DURATION");
    for r in rows {
        out.push_str(&format!(
            "{:<w$}  {:>10}  {}\n",
            r.step,
            format!("{:.1} ms", r.took.as_secs_f64() * 1e3),
            r.detail
        ));
    }
    out
}

/// What the check step found, needed by the later steps.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    pub replid: String,
    pub origin_offset: u64,
    /// Agent B's QUIC address and certificate name (A's new upstream).
    pub region_agent: String,
    pub region_name: String,
    /// Agent A's replica port (the old origin's new master).
    pub site_replica: String,
}

/// A check that failed: the reason, for the operator.
pub type Refusal = String;

/// Replaces an unspecified host (0.0.0.0, ::) in `addr` with the host of the admin URL.
pub fn reachable(addr: &str, admin_base: &str) -> String {
    let host = admin_base
        .trim_start_matches("http://")
        .rsplit_once(':')
        .map(|(h, _)| h)
        .unwrap_or("127.0.0.1");
    match addr.rsplit_once(':') {
        Some((h, p)) if h == "0.0.0.0" || h == "[::]" || h == "::" => format!("{host}:{p}"),
        _ => addr.to_string(),
    }
}

/// Planned switchover, step 1: B streams from A under the origin's replid, the promote target
/// replicates from B and is online, and B's lag is below `max_lag`.
#[allow(clippy::too_many_arguments)]
pub fn check(
    origin: &Replication,
    site: &Status,
    site_base: &str,
    region: &Status,
    region_base: &str,
    target: &Replication,
    max_lag: Duration,
) -> Result<Checked, Refusal> {
    if origin.role != "master" {
        return Err(format!("the origin is not a master (role {})", origin.role));
    }
    streams_from(
        "A",
        site,
        UpstreamKind::Redis,
        "a Redis master",
        &origin.replid,
    )?;
    streams_from("B", region, UpstreamKind::Agent, "an agent", &origin.replid)?;
    if region.upstream.lag_seconds > max_lag.as_secs_f64() {
        return Err(format!(
            "agent B lags {:.3}s behind A (bound {:.3}s)",
            region.upstream.lag_seconds,
            max_lag.as_secs_f64()
        ));
    }
    check_target(target, region, region_base, &origin.replid)?;
    let region_agent = region
        .agent_addr
        .as_deref()
        .map(|a| reachable(a, region_base))
        .ok_or("agent B has no listen.agent: agent A could not stream from it")?;
    if site.replica_addr.is_empty() {
        return Err("agent A reports no replica port".into());
    }
    Ok(Checked {
        replid: origin.replid.clone(),
        origin_offset: origin.offset,
        region_agent,
        region_name: region.node.clone(),
        site_replica: reachable(&site.replica_addr, site_base),
    })
}

/// Agent `who` streams from an upstream of `kind` (`what`, for the message), connected, and
/// its log is on the origin's `replid`.
fn streams_from(
    who: &str,
    agent: &Status,
    kind: UpstreamKind,
    what: &str,
    replid: &str,
) -> Result<(), Refusal> {
    let up = &agent.upstream;
    if up.kind != kind || !up.connected {
        let state = if up.connected { "connected" } else { "down" };
        return Err(format!(
            "agent {who} ({}) does not stream from {what} (upstream {} {}, {state})",
            agent.node,
            up.kind.as_str(),
            up.addr,
        ));
    }
    if agent.log.replid != replid {
        return Err(format!(
            "agent {who}'s log is on replid {}, the origin on {replid}",
            agent.log.replid
        ));
    }
    Ok(())
}

/// The promote target is an online replica of agent B under `replid`.
pub fn check_target(
    target: &Replication,
    region: &Status,
    region_base: &str,
    replid: &str,
) -> Result<(), Refusal> {
    let b_port = region.replica_addr.rsplit_once(':').map(|(_, p)| p);
    let t_port = target
        .master
        .as_deref()
        .and_then(|m| m.rsplit_once(':'))
        .map(|(_, p)| p);
    if target.role != "slave" || t_port.is_none() || t_port != b_port {
        return Err(format!(
            "the promote target is not a replica of agent B's replica port {} (role {}, master {})",
            reachable(&region.replica_addr, region_base),
            target.role,
            target.master.as_deref().unwrap_or("none")
        ));
    }
    if !target.link_up {
        return Err("the promote target's link to agent B is down".into());
    }
    if target.replid != replid {
        return Err(format!(
            "the promote target is on replid {}, expected {replid}",
            target.replid
        ));
    }
    Ok(())
}

/// Step 3 is over once B's durable offset and the target's offset reach the origin's.
pub fn caught_up(origin_offset: u64, region_durable: u64, target_offset: u64) -> bool {
    region_durable >= origin_offset && target_offset >= origin_offset
}

/// After `REPLICAOF NO ONE`: the target is a master that kept the old replid as replid2 up
/// to (at least) the offset everyone reached, so every later hop resumes partially.
pub fn promoted_ok(p: &Replication, old_replid: &str, offset: u64) -> Result<(), Refusal> {
    if p.role != "master" {
        return Err(format!("the target still reports role {}", p.role));
    }
    let replid2 = p.fields.get("master_replid2").map(String::as_str);
    let second = p.u64_field("second_repl_offset").unwrap_or(0);
    if replid2 != Some(old_replid) || second < offset + 1 {
        return Err(format!(
            "the target's replid2 is {} up to {second}, expected {old_replid} up to {}",
            replid2.unwrap_or("none"),
            offset + 1
        ));
    }
    Ok(())
}

/// Unplanned failover, step 1: B streams (or streamed) from an agent, has a log, and the
/// promote target is an online replica of B on B's replid. Returns B's replid.
pub fn check_failover(
    region: &Status,
    region_base: &str,
    target: &Replication,
) -> Result<String, Refusal> {
    if region.upstream.kind != UpstreamKind::Agent {
        return Err(format!(
            "agent B ({}) does not stream from a site agent (upstream {} {}): nothing to fail over from",
            region.node,
            region.upstream.kind.as_str(),
            region.upstream.addr
        ));
    }
    if region.log.replid.is_empty() {
        return Err(format!("agent B ({}) has no history yet", region.node));
    }
    check_target(target, region, region_base, &region.log.replid)?;
    Ok(region.log.replid.clone())
}

/// What an unplanned failover lost: what the site had (its head as last heard by B) and B
/// never got, in stream bytes and seconds of origin time.
#[derive(Debug, Clone, PartialEq)]
pub struct Rpo {
    pub bytes: u64,
    pub seconds: f64,
    /// How long before the fence B last heard from the site; writes the site took after that
    /// are not counted (so the figures are a lower bound when this is large).
    pub silent_for: Option<Duration>,
}

impl Rpo {
    /// From B's fence record and the offset the new master was promoted at (it can be short
    /// of B's head by an incomplete command, which is lost too).
    pub fn of(f: &crate::metrics::status::FencedSite, promoted_at: u64) -> Rpo {
        let fence_us = f.at_unix.saturating_mul(1_000_000);
        Rpo {
            bytes: f.site_head.saturating_sub(f.head.min(promoted_at)),
            seconds: f.rpo_seconds(),
            silent_for: (f.heard_us > 0)
                .then(|| Duration::from_micros(fence_us.saturating_sub(f.heard_us))),
        }
    }

    pub fn render(&self) -> String {
        let mut out = format!(
            "RPO: {} bytes of stream, {:.3} s of origin time (the site had them, the new master never got them)\n",
            self.bytes, self.seconds
        );
        match self.silent_for {
            Some(d) => out.push_str(&format!(
                "the site was last heard {:.1} s before the fence; writes it took after that are not counted\n",
                d.as_secs_f64()
            )),
            None => out.push_str("the site was never heard from in a heartbeat; the RPO is unknown beyond B's head\n"),
        }
        out
    }
}

/// The promote row's detail: the new master, its replid and how far its replid2 reaches.
pub fn promoted_detail(addr: &str, p: &Replication) -> String {
    format!(
        "{addr} is master, replid {} (old replid kept up to {})",
        p.replid,
        p.u64_field("second_repl_offset").unwrap_or(0)
    )
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
