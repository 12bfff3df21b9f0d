//! `georelay failover`: the unplanned move of the master to region B when site A is gone.
//! check → wait (the promote target has all B has) → promote → re-point B at it with a fence
//! (B records what the site had and B never got) → report the RPO. The decisions are in
//! [`super::plan`]; this file only does the I/O.

use std::time::{Duration, Instant};

use serde_json::json;

use super::http::Admin;
use super::plan::{self, Rpo, StepRow};
use super::redis::{Auth, RedisConn};
use super::repoint::Override;
use super::switchover::SwitchoverError;

/// How long the promote target's offset must stay put before the wait accepts it short of
/// B's head (B's log ends inside a command the target cannot apply).
const STILL: Duration = Duration::from_secs(1);

/// Everything `georelay failover` takes on its command line.
#[derive(Debug, Clone)]
pub struct FailoverArgs {
    pub region: String,
    pub promote: String,
    pub token: String,
    pub promote_auth: Auth,
    pub timeout: Duration,
}

/// The result: the rows done, the RPO, and on failure the step, the reason and what to do.
pub struct FailoverOutcome {
    pub rows: Vec<StepRow>,
    pub rpo: Option<Rpo>,
    pub failed: Option<(&'static str, String, String)>,
    pub new_master: Option<String>,
    /// B's former upstream (the site agent), for the "when the site comes back" advice.
    pub site: Option<String>,
    /// B's QUIC address and name (what the site agent must be re-pointed at).
    pub region_agent: Option<(String, String)>,
}

impl FailoverOutcome {
    /// The text `georelay failover` prints.
    pub fn render(&self, args: &FailoverArgs) -> String {
        let mut out = plan::render(&self.rows);
        if let Some(r) = &self.rpo {
            out.push_str(&r.render());
        }
        match &self.failed {
            None => {
                let m = self.new_master.as_deref().unwrap_or(&args.promote);
                out.push_str(&format!(
                    "failover done. new master: {m}\nmove the application's writes to {m} now.\n"
                ));
                let site = self.site.as_deref().unwrap_or("the site agent");
                let (agent, name) = self
                    .region_agent
                    .clone()
                    .unwrap_or(("<B's listen.agent>".into(), "<B's name>".into()));
                out.push_str(&format!(
                    "site {site} is fenced: B will not take its history again. When the site comes back, before its origin takes writes:\n  \
                     curl -fsS -X POST -H \"Authorization: Bearer $(cat TOKEN_FILE)\" -d '{{\"agent\": \"{agent}\", \"server_name\": \"{name}\"}}' http://<A-admin>/upstream   # agent A full-syncs from B\n  \
                     redis-cli -h <old origin> REPLICAOF <A's replica host> <port>   # the old origin takes the new history\n"
                ));
            }
            Some((step, why, then)) => {
                out.push_str(&format!("failover FAILED at step {step}: {why}\n{then}\n"));
            }
        }
        out
    }
}

/// Runs the failover. Never panics; the outcome says what happened.
pub async fn run(args: &FailoverArgs) -> FailoverOutcome {
    let mut out = FailoverOutcome {
        rows: vec![],
        rpo: None,
        failed: None,
        new_master: None,
        site: None,
        region_agent: None,
    };
    let mut step = "check";
    let mut promoted = false;
    if let Err(e) = steps(args, &mut out, &mut step, &mut promoted).await {
        let then = if promoted {
            format!(
                "{} is already the new master (promoted). To finish, re-point B with a fence:\n  \
                 curl -fsS -X POST -H \"Authorization: Bearer $(cat TOKEN_FILE)\" -d '{{\"redis\": \"{}\", \"fence\": true}}' {}/upstream",
                args.promote, args.promote, args.region
            )
        } else {
            "nothing was changed".into()
        };
        out.failed = Some((step, e.to_string(), then));
    } else {
        out.new_master = Some(args.promote.clone());
    }
    out
}

fn row(rows: &mut Vec<StepRow>, step: &'static str, t: Instant, detail: String) {
    rows.push(StepRow {
        step,
        took: t.elapsed(),
        detail,
    });
}

async fn steps(
    a: &FailoverArgs,
    out: &mut FailoverOutcome,
    step: &mut &'static str,
    promoted: &mut bool,
) -> Result<(), SwitchoverError> {
    // 1. Check.
    let t = Instant::now();
    let region = Admin::new(&a.region)?;
    let (_, b) = region.status().await?;
    let mut target = RedisConn::connect(&a.promote, &a.promote_auth).await?;
    let tr = target.replication().await?;
    let replid = plan::check_failover(&b, region.base(), &tr).map_err(SwitchoverError::Refused)?;
    region
        .repoint(
            &a.token,
            &json!({"redis": a.promote, "fence": true, "dry_run": true}),
        )
        .await?;
    out.site = Some(b.upstream.addr.clone());
    out.region_agent = b
        .agent_addr
        .as_deref()
        .map(|x| (plan::reachable(x, region.base()), b.node.clone()));
    let link = if b.upstream.connected {
        "B's link to the site is still up: it is cut off now"
    } else {
        "B's link to the site is down"
    };
    row(
        &mut out.rows,
        "check",
        t,
        format!(
            "B ({}) on replid {replid} head {}, site {} last heard at head {}; {link}",
            b.node, b.log.head, b.upstream.addr, b.upstream.upstream_head
        ),
    );
    // 2. Wait: the target must hold all B holds. A Redis replica counts only whole commands,
    // so when B's log ends inside a command (the site vanished mid-transfer) the target stops
    // just before it: once it has not moved for STILL, that is as far as it gets.
    *step = "wait";
    let t = Instant::now();
    let deadline = t + a.timeout;
    let (mut head, mut toff);
    let mut moved = (Instant::now(), u64::MAX);
    loop {
        head = region.status().await?.1.log.head;
        let now_off = target.replication().await?.offset;
        if now_off != moved.1 {
            moved = (Instant::now(), now_off);
        }
        toff = now_off;
        if toff >= head || (toff > 0 && moved.0.elapsed() >= STILL) {
            break;
        }
        if Instant::now() >= deadline {
            return Err(SwitchoverError::Refused(format!(
                "the promote target did not reach B's head within {:?}: B head {head}, target {toff}",
                a.timeout
            )));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let tail = if toff < head {
        format!(
            "; B's last {} bytes are an incomplete command (lost; B will full-sync from the new master)",
            head - toff
        )
    } else {
        String::new()
    };
    row(
        &mut out.rows,
        "wait",
        t,
        format!("B head {head}, target {toff}{tail}"),
    );
    // 3. Promote.
    *step = "promote";
    let t = Instant::now();
    target.ok(&["REPLICAOF", "NO", "ONE"]).await?;
    *promoted = true;
    let p = target.replication().await?;
    plan::promoted_ok(&p, &replid, toff.min(head)).map_err(SwitchoverError::Refused)?;
    row(
        &mut out.rows,
        "promote",
        t,
        plan::promoted_detail(&a.promote, &p),
    );
    // 4. Re-point B with a fence: it stops taking the site's stream and records what it missed.
    *step = "repoint";
    let t = Instant::now();
    let body = region
        .repoint(&a.token, &json!({"redis": a.promote, "fence": true}))
        .await?;
    let o: Override = serde_json::from_str(&body).map_err(|e| {
        SwitchoverError::Refused(format!("B answered an unexpected body ({e}): {body}"))
    })?;
    let f = o.fenced.ok_or_else(|| {
        SwitchoverError::Refused("B did not record the fence; check GET /status".into())
    })?;
    out.rpo = Some(Rpo::of(&f, toff));
    row(
        &mut out.rows,
        "repoint",
        t,
        format!(
            "B upstream = redis {}; site {} fenced at B head {} (site head {})",
            a.promote, f.site, f.head, f.site_head
        ),
    );
    Ok(())
}
