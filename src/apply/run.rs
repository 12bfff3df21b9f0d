//! The applier's shell, on its own thread: connect, read the checkpoint, decide how to start
//! (see [`checkpoint::decide_start`]), load or follow the log, and on any target trouble
//! pause, reconnect and decide again from the checkpoint — never skipping a byte.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::watch;

use super::checkpoint::{self, decide_start, Checkpoint, SnapshotId, Start, StartInput};
use super::conn::{self, Conn, Dialer};
use super::follow::follow;
use super::load::load;
use super::rewrite::TargetCaps;
use super::sink::Sink;
use super::txn::{encode_body, judge, Verdict};
use super::{ApplyError, ApplyMetrics, ApplyView};
use crate::config::{TargetConfig, TargetEndpoint};
use crate::log::{Log, PsyncDecision};
use crate::resp::Frame;

/// What an applier needs.
#[derive(Clone)]
pub struct ApplyCtx {
    pub target: TargetConfig,
    /// This agent's name (part of the checkpoint key).
    pub node: String,
    pub lane: String,
    pub log: Log,
    pub metrics: ApplyMetrics,
    pub view: Arc<ApplyView>,
    pub shutdown: watch::Receiver<bool>,
    /// One lane of several (a cluster-mode region): the slot map naming this lane's slots.
    pub slots: Option<watch::Receiver<Option<crate::cluster::SlotMap>>>,
}

const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Starts the applier on a thread of its own (it reads files and blocks on sockets).
pub fn spawn(ctx: ApplyCtx) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("apply-{}", ctx.lane))
        .spawn(move || run(ctx))
}

/// The applier's running state within one session.
pub(super) struct Session<'a> {
    pub ctx: &'a ApplyCtx,
    pub conn: Conn,
    pub key: Bytes,
    pub rt: &'a tokio::runtime::Runtime,
    /// Set once a batch went through (resets the backoff).
    pub progressed: bool,
}

impl ApplyCtx {
    pub(super) fn stopping(&self) -> bool {
        *self.shutdown.borrow()
    }

    pub(super) fn addr(&self) -> String {
        match &self.target.endpoint {
            TargetEndpoint::Redis(a) => a.clone(),
            TargetEndpoint::Cluster(seeds) => seeds.join(","),
        }
    }

    /// Sleeps up to `d`, waking early on shutdown.
    pub(super) fn pause(&self, rt: &tokio::runtime::Runtime, d: Duration) {
        let mut rx = self.shutdown.clone();
        rt.block_on(async {
            let _ = tokio::time::timeout(d, rx.wait_for(|s| *s)).await;
        });
    }

    pub(super) fn set_applied(&self, offset: u64) {
        let head = self.log.status().head;
        let lag = crate::metrics::Metrics::follower_lag_seconds(&self.log, offset);
        let lane = [self.lane.as_str()];
        self.metrics
            .offset
            .with_label_values(&lane)
            .set(offset as i64);
        self.metrics
            .lag_bytes
            .with_label_values(&lane)
            .set(head.saturating_sub(offset) as i64);
        self.metrics.lag_seconds.with_label_values(&lane).set(lag);
        self.view.update(|r| {
            r.applied = offset;
            r.lag_bytes = head.saturating_sub(offset);
            r.lag_seconds = lag;
        });
    }
}

fn run(ctx: ApplyCtx) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("apply: cannot build its timer: {e}");
            return;
        }
    };
    let dialer = match dialer(&ctx.target) {
        Ok(d) => d,
        Err(e) => {
            tracing::error!("apply: {e}");
            ctx.view.update(|r| {
                r.state = "stopped".into();
                r.error = e.to_string();
            });
            return;
        }
    };
    let mut backoff = Duration::from_millis(100);
    let mut last_message = String::new();
    while !ctx.stopping() {
        let mut progressed = false;
        let result = session(&ctx, &dialer, &rt, &mut progressed);
        if progressed {
            backoff = Duration::from_millis(100);
        }
        let e = match result {
            Ok(()) => continue,
            Err(e) => e,
        };
        if ctx.stopping() {
            break;
        }
        let (reason, fatal) = e.reason();
        ctx.metrics.errors.with_label_values(&[reason]).inc();
        let message = e.to_string();
        let state = if fatal || reason == "flush_refused" {
            "stopped"
        } else {
            "paused"
        };
        ctx.view.update(|r| {
            r.state = state.into();
            r.error = message.clone();
        });
        if fatal {
            tracing::error!(lane = %ctx.lane, "apply stopped: {message}");
            ctx.pause(&rt, Duration::MAX);
            break;
        }
        if message != last_message {
            tracing::warn!(lane = %ctx.lane, "apply paused, retrying: {message}");
            last_message = message;
        }
        ctx.pause(&rt, backoff);
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

fn dialer(t: &TargetConfig) -> Result<Dialer, ApplyError> {
    let tls = match &t.tls {
        Some(c) => Some(
            crate::redistls::client_config(c).map_err(|e| ApplyError::TargetDown {
                addr: String::new(),
                message: format!("TLS setup: {e}"),
            })?,
        ),
        None => None,
    };
    Ok(Dialer {
        username: t.username.clone(),
        password: t.password.clone(),
        tls,
        timeout: Duration::from_secs(10),
    })
}

/// One connection's life: decide how to start from the checkpoint, then load and/or follow.
fn session(
    ctx: &ApplyCtx,
    dialer: &Dialer,
    rt: &tokio::runtime::Runtime,
    progressed: &mut bool,
) -> Result<(), ApplyError> {
    let addr = match &ctx.target.endpoint {
        TargetEndpoint::Redis(addr) => addr,
        TargetEndpoint::Cluster(seeds) => {
            ctx.view.update(|r| r.state = "connecting".into());
            let mut c = super::cluster_sink::ClusterSink::connect(ctx, dialer, seeds, rt)?;
            let result = begin(&mut c);
            *progressed |= c.progressed;
            return result;
        }
    };
    ctx.view.update(|r| {
        r.addr = addr.clone();
        r.state = "connecting".into();
    });
    let conn = dialer.connect(addr)?;
    let key = Bytes::from(checkpoint::key(&format!("{}:{}", ctx.node, ctx.lane)));
    let mut s = Session {
        ctx,
        conn,
        key,
        rt,
        progressed: false,
    };
    let result = begin(&mut s);
    *progressed |= s.progressed;
    result
}

/// Decides how to start from the target's checkpoint, then loads and/or follows.
pub(super) fn begin(s: &mut impl Sink) -> Result<(), ApplyError> {
    let ctx = s.ctx().clone();
    let ckpt = s.checkpoint()?;
    let keys = s.data_keys(ckpt.is_some())?;
    let psync: Option<PsyncDecision> = match &ckpt {
        Some(Checkpoint::Stream { replid, offset }) => Some(ctx.log.decide(replid, offset + 1)),
        _ => None,
    };
    let meta = ctx.log.snapshot_for_full_sync();
    let snapshot = meta.as_ref().map(|m| SnapshotId {
        replid: m.replid.clone(),
        offset: m.offset,
        size: m.size,
    });
    let start = decide_start(StartInput {
        checkpoint: ckpt.as_ref(),
        psync,
        target_keys: keys,
        allow_flush: ctx.target.allow_flush,
        snapshot,
    });
    match (start, meta) {
        (Start::Stream { from }, _) => {
            tracing::info!(lane = %ctx.lane, from, "apply resumes the stream from the target's checkpoint");
            ctx.set_applied(from - 1);
            s.resume(from - 1)?;
            follow(s, from)
        }
        (Start::Load { skip, flush, .. }, Some(meta)) => {
            let next = load(s, &meta, skip, flush)?;
            follow(s, next)
        }
        (Start::Refuse(why), _) => Err(ApplyError::FlushRefused(why)),
        (Start::WaitSnapshot, _) | (Start::Load { .. }, None) => {
            ctx.view
                .update(|r| r.state = "waiting for a snapshot".into());
            ctx.pause(s.rt(), Duration::from_millis(500));
            Ok(())
        }
    }
}

impl Session<'_> {
    pub(super) fn read_checkpoint(&mut self) -> Result<Option<Checkpoint>, ApplyError> {
        self.conn.call_ok(&[b"SELECT", b"0"])?;
        let key = self.key.clone();
        match self.conn.call_ok(&[b"GET", &key])? {
            Frame::Null => Ok(None),
            f => match conn::text(&f) {
                Some(v) => Checkpoint::parse(&v).map(Some),
                None => Err(ApplyError::BadCheckpoint(format!("{f:?}"))),
            },
        }
    }

    /// Keys in the target (every database), from `INFO keyspace`.
    pub(super) fn count_keys(&mut self) -> Result<u64, ApplyError> {
        let f = self.conn.call_ok(&[b"INFO", b"keyspace"])?;
        Ok(keyspace_keys(&f))
    }

    pub(super) fn caps(&mut self, source_rdb: u16) -> Result<TargetCaps, ApplyError> {
        let probe_key = [self.key.as_ref(), b":probe"].concat();
        let conn = &mut self.conn;
        probe_caps(|args| conn.call(args), &probe_key, source_rdb)
    }

    /// Applies `commands` and the checkpoint `ckpt` as one transaction (in database 0 at the
    /// end). `Ok(verdict)` only when the target answered every reply.
    pub(super) fn commit(
        &mut self,
        commands: &[Vec<Bytes>],
        ckpt: &Checkpoint,
    ) -> Result<Verdict, ApplyError> {
        match self.conn.call(&[b"MULTI"])? {
            Frame::Error(e) => return Err(conn::refusal(&e, &[b"MULTI"])),
            Frame::Simple(s) if s == "OK" => {}
            other => {
                return Err(ApplyError::Refused {
                    reason: "protocol",
                    message: format!("MULTI answered {other:?}"),
                })
            }
        }
        let mut all: Vec<Vec<Bytes>> = Vec::with_capacity(commands.len() + 2);
        all.extend_from_slice(commands);
        all.push(vec![
            Bytes::from_static(b"SELECT"),
            Bytes::from_static(b"0"),
        ]);
        all.push(vec![
            Bytes::from_static(b"SET"),
            self.key.clone(),
            Bytes::from(ckpt.encode()),
        ]);
        let mut out = BytesMut::new();
        encode_body(&all, &mut out);
        self.conn.send(&out)?;
        let mut replies = Vec::with_capacity(all.len() + 1);
        for _ in 0..=all.len() {
            replies.push(self.conn.read()?);
        }
        Ok(judge(&replies, all.len()))
    }
}

/// Keys in every database of an `INFO keyspace` reply.
pub(super) fn keyspace_keys(f: &Frame) -> u64 {
    let text = conn::text(f).unwrap_or_default();
    String::from_utf8_lossy(&text)
        .lines()
        .filter(|l| l.starts_with("db"))
        .filter_map(|l| {
            l.split_once("keys=")?
                .1
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

/// What the target can load: a probe `RESTORE` of a one-byte string stamped with the
/// source's RDB version (at `probe_key`, deleted after), and the server version for the
/// stream options. `call` sends one command to the node that owns `probe_key`.
pub(super) fn probe_caps(
    mut call: impl FnMut(&[&[u8]]) -> Result<Frame, ApplyError>,
    probe_key: &[u8],
    source_rdb: u16,
) -> Result<TargetCaps, ApplyError> {
    let args: &[&[u8]] = &[b"INFO", b"server"];
    let f = match call(args)? {
        Frame::Error(e) => return Err(conn::refusal(&e, args)),
        f => f,
    };
    let info = String::from_utf8_lossy(&conn::text(&f).unwrap_or_default()).into_owned();
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':').map(str::to_string))
    };
    let valkey =
        field("valkey_version").is_some() || field("server_name").is_some_and(|s| s == "valkey");
    let major: u32 = field("redis_version")
        .and_then(|v| v.split('.').next()?.parse().ok())
        .unwrap_or(0);
    let entry = crate::rdb::objects::Entry {
        db: 0,
        key: probe_key.to_vec(),
        expire_ms: None,
        rdb_type: 0,
        value: crate::rdb::objects::Value::String(b"x".to_vec()),
        raw: vec![1, b'x'],
    };
    let payload = crate::rdb::objects::dump_payload(&entry, source_rdb);
    let probe = [b"RESTORE".as_slice(), probe_key, b"0", &payload, b"REPLACE"];
    let ok = match call(&probe)? {
        Frame::Error(e) => match conn::refusal(&e, &[b"RESTORE"]) {
            pause @ ApplyError::Refused { .. } => return Err(pause),
            _ => false,
        },
        _ => true,
    };
    if let Frame::Error(e) = call(&[b"DEL", probe_key])? {
        return Err(conn::refusal(&e, &[b"DEL"]));
    }
    Ok(TargetCaps {
        restore_version: ok.then_some(source_rdb),
        stream_v2: valkey || major >= 7,
    })
}

/// Starts apply mode for the agent's one lane (a standalone upstream or an upstream agent):
/// registers its series in `metrics` and returns the view `/status` shows.
pub fn start(
    cfg: &crate::config::Config,
    target: &TargetConfig,
    log: &Log,
    metrics: &crate::metrics::Metrics,
    shutdown: watch::Receiver<bool>,
) -> Result<super::ApplyViews, String> {
    let lane = super::MAIN_LANE.to_string();
    let m = ApplyMetrics::register(metrics.registry(), &lane).map_err(|e| e.to_string())?;
    let ctx = ApplyCtx {
        target: target.clone(),
        node: cfg.name.clone(),
        view: ApplyView::new(&lane, ""),
        lane,
        log: log.clone(),
        metrics: m,
        shutdown,
        slots: None,
    };
    ctx.view.update(|r| r.addr = ctx.addr());
    let views = super::ApplyViews::default();
    views.add(ctx.view.clone());
    spawn(ctx).map_err(|e| format!("cannot start the applier thread: {e}"))?;
    Ok(views)
}
