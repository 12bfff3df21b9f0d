//! `georelay switchover`: the planned, zero-loss move of the master from site A to region B.
//! check → fence (`CLIENT PAUSE WRITE`) → wait → promote → re-point B and A → demote the old
//! origin and unpause. The decisions are in [`super::plan`]; this file only does the I/O.

use std::time::{Duration, Instant};

use serde_json::json;

use super::http::{Admin, HttpError};
use super::plan::{self, Checked, Step, StepRow};
use super::redis::{Auth, RedisConn, RedisError};

/// Everything `georelay switchover` takes on its command line.
#[derive(Debug, Clone)]
pub struct SwitchoverArgs {
    pub origin: String,
    pub site: String,
    pub region: String,
    pub promote: String,
    pub token: String,
    pub origin_auth: Auth,
    pub promote_auth: Auth,
    pub timeout: Duration,
}

/// How a switchover ended badly.
#[derive(Debug, thiserror::Error)]
pub enum SwitchoverError {
    #[error("{0}")]
    Http(#[from] HttpError),
    #[error("{0}")]
    Redis(#[from] RedisError),
    #[error("{0}")]
    Refused(String),
}

/// The result: the rows done, and on failure the step, the reason and what was done about it.
pub struct Outcome {
    pub rows: Vec<StepRow>,
    pub failed: Option<(Step, String, String)>,
    pub new_master: Option<String>,
    /// From the fence to the unpause.
    pub paused_for: Option<Duration>,
}

impl Outcome {
    /// The text `georelay switchover` prints.
    pub fn render(&self) -> String {
        let mut out = plan::render(&self.rows);
        if let Some(p) = self.paused_for {
            out.push_str(&format!(
                "writes paused on the origin for {:.1} ms\n",
                p.as_secs_f64() * 1e3
            ));
        }
        match &self.failed {
            None => {
                if let Some(m) = &self.new_master {
                    out.push_str(&format!(
                        "switchover done. new master: {m}\nmove the application's writes to {m} now.\n"
                    ));
                }
            }
            Some((step, why, then)) => {
                out.push_str(&format!(
                    "switchover FAILED at step {}: {why}\n{then}\n",
                    step.name()
                ));
            }
        }
        out
    }
}

struct Run<'a> {
    args: &'a SwitchoverArgs,
    site: Admin,
    region: Admin,
    rows: Vec<StepRow>,
    fenced_at: Option<Instant>,
    paused_for: Option<Duration>,
    checked: Option<Checked>,
}

/// Runs the switchover. Never panics; the outcome says what happened.
pub async fn run(args: &SwitchoverArgs) -> Outcome {
    let (site, region) = match (Admin::new(&args.site), Admin::new(&args.region)) {
        (Ok(s), Ok(r)) => (s, r),
        (Err(e), _) | (_, Err(e)) => {
            return Outcome {
                rows: vec![],
                failed: Some((Step::Check, e.to_string(), "nothing was changed".into())),
                new_master: None,
                paused_for: None,
            }
        }
    };
    let mut r = Run {
        args,
        site,
        region,
        rows: vec![],
        fenced_at: None,
        paused_for: None,
        checked: None,
    };
    let mut step = Step::Check;
    let res = r.steps(&mut step).await;
    let failed = match res {
        Ok(()) => None,
        Err(e) => {
            let then = if step.rolls_back() {
                r.roll_back().await
            } else {
                r.finish_by_hand(step)
            };
            Some((step, e.to_string(), then))
        }
    };
    Outcome {
        new_master: failed.is_none().then(|| args.promote.clone()),
        rows: r.rows,
        failed,
        paused_for: r.paused_for,
    }
}

impl Run<'_> {
    fn row(&mut self, step: Step, t: Instant, detail: String) {
        self.rows.push(StepRow {
            step: step.name(),
            took: t.elapsed(),
            detail,
        });
    }

    async fn steps(&mut self, step: &mut Step) -> Result<(), SwitchoverError> {
        let a = self.args;
        // 1. Check.
        let t = Instant::now();
        let mut origin = RedisConn::connect(&a.origin, &a.origin_auth).await?;
        let o = origin.replication().await?;
        let (_, site) = self.site.status().await?;
        let (_, region) = self.region.status().await?;
        let mut target = RedisConn::connect(&a.promote, &a.promote_auth).await?;
        let tr = target.replication().await?;
        let c: Checked = plan::check(
            &o,
            &site,
            self.site.base(),
            &region,
            self.region.base(),
            &tr,
            a.timeout,
        )
        .map_err(SwitchoverError::Refused)?;
        self.checked = Some(c.clone());
        // The tokens work and both agents accept their new upstreams (dry runs change nothing).
        self.region
            .repoint(&a.token, &json!({"redis": a.promote, "dry_run": true}))
            .await?;
        self.site
            .repoint(
                &a.token,
                &json!({"agent": c.region_agent, "server_name": c.region_name, "dry_run": true}),
            )
            .await?;
        self.row(
            Step::Check,
            t,
            format!(
                "origin {} replid {} offset {}; B durable {}; target offset {}",
                a.origin, c.replid, c.origin_offset, region.upstream.durable, tr.offset
            ),
        );
        // 2. Fence.
        *step = Step::Fence;
        let t = Instant::now();
        let ms = a.timeout.as_millis().max(1).to_string();
        origin.ok(&["CLIENT", "PAUSE", &ms, "WRITE"]).await?;
        self.fenced_at = Some(t);
        let fence_offset = origin.replication().await?.offset;
        self.row(
            Step::Fence,
            t,
            format!("CLIENT PAUSE {ms} WRITE; origin offset {fence_offset}"),
        );
        // 3. Wait.
        *step = Step::Wait;
        let t = Instant::now();
        let deadline = t + a
            .timeout
            .saturating_sub(t.duration_since(self.fenced_at.unwrap_or(t)));
        let (mut durable, mut toff, mut want);
        loop {
            want = origin.replication().await?.offset;
            durable = self.region.status().await?.1.log.durable;
            toff = target.replication().await?.offset;
            if plan::caught_up(want, durable, toff) {
                break;
            }
            if Instant::now() >= deadline {
                return Err(SwitchoverError::Refused(format!(
                    "not caught up within {:?}: origin {want}, B durable {durable}, target {toff}",
                    a.timeout
                )));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        self.row(
            Step::Wait,
            t,
            format!("origin {want}, B durable {durable}, target {toff}"),
        );
        // 4. Promote.
        *step = Step::Promote;
        let t = Instant::now();
        target.ok(&["REPLICAOF", "NO", "ONE"]).await?;
        let p = target.replication().await?;
        plan::promoted_ok(&p, &c.replid, want).map_err(SwitchoverError::Refused)?;
        self.row(Step::Promote, t, plan::promoted_detail(&a.promote, &p));
        // 5. Re-point B, then A.
        *step = Step::Repoint;
        let t = Instant::now();
        self.region
            .repoint(&a.token, &json!({"redis": a.promote}))
            .await?;
        self.site
            .repoint(
                &a.token,
                &json!({"agent": c.region_agent, "server_name": c.region_name}),
            )
            .await?;
        self.row(
            Step::Repoint,
            t,
            format!(
                "B upstream = redis {}; A upstream = agent {} ({})",
                a.promote, c.region_agent, c.region_name
            ),
        );
        // 6. Demote the old origin, then unpause it.
        *step = Step::Demote;
        let t = Instant::now();
        let (host, port) = c
            .site_replica
            .rsplit_once(':')
            .ok_or_else(|| SwitchoverError::Refused("bad replica address".into()))?;
        origin.ok(&["REPLICAOF", host, port]).await?;
        origin.ok(&["CLIENT", "UNPAUSE"]).await?;
        self.paused_for = self.fenced_at.map(|f| f.elapsed());
        self.row(
            Step::Demote,
            t,
            format!(
                "{} is a replica of agent A ({}); unpaused",
                a.origin, c.site_replica
            ),
        );
        Ok(())
    }

    /// Before the promotion: unpause the origin; nothing was re-pointed.
    async fn roll_back(&mut self) -> String {
        if self.fenced_at.is_none() {
            return "rolled back: nothing was changed; the origin keeps accepting writes".into();
        }
        let unpaused = match RedisConn::connect(&self.args.origin, &self.args.origin_auth).await {
            Ok(mut c) => c.ok(&["CLIENT", "UNPAUSE"]).await.map(|_| ()),
            Err(e) => Err(e),
        };
        self.paused_for = self.fenced_at.map(|f| f.elapsed());
        match unpaused {
            Ok(()) => "rolled back: the origin is unpaused and keeps its role; nothing was re-pointed".into(),
            Err(e) => format!(
                "rolling back: CLIENT UNPAUSE failed ({e}); the pause ends by itself within {:?}; nothing was re-pointed",
                self.args.timeout
            ),
        }
    }

    /// After the promotion: say where things stand and what finishes the job.
    fn finish_by_hand(&self, step: Step) -> String {
        let a = self.args;
        let (oh, op) = a.origin.rsplit_once(':').unwrap_or((&a.origin, ""));
        let tok = "Authorization: Bearer $(cat TOKEN_FILE)";
        let (agent, name, replica) = match &self.checked {
            Some(c) => (
                c.region_agent.as_str(),
                c.region_name.as_str(),
                c.site_replica.replacen(':', " ", 1),
            ),
            None => (
                "<B's listen.agent>",
                "<B's name>",
                "<A's replica host> <port>".into(),
            ),
        };
        let mut out = format!(
            "{} is already the new master (promoted). The old origin {} is write-paused until its pause ends ({:?} after the fence), then it accepts writes again: finish now.\nTo finish:\n",
            a.promote, a.origin, a.timeout
        );
        if step <= Step::Repoint {
            out.push_str(&format!(
                "  curl -fsS -X POST -H \"{tok}\" -d '{{\"redis\": \"{}\"}}' {}/upstream\n",
                a.promote, a.region
            ));
            out.push_str(&format!(
                "  curl -fsS -X POST -H \"{tok}\" -d '{{\"agent\": \"{agent}\", \"server_name\": \"{name}\"}}' {}/upstream\n",
                a.site
            ));
        }
        out.push_str(&format!(
            "  redis-cli -h {oh} -p {op} REPLICAOF {replica}\n  redis-cli -h {oh} -p {op} CLIENT UNPAUSE\n"
        ));
        out
    }
}
