//! Snapshot refresh: when the log since the newest snapshot grows past `log.snapshot_after`
//! (or corruption made the snapshot unusable), fetch a fresh RDB — over a second, rdb-only
//! replication connection from a Redis master, or the upstream agent's newer snapshot — so
//! that full syncs served downstream stay short and old segments can go.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::watch;

use super::conn::Conn;
use super::handshake::{self, PsyncReply};
use super::redis::{UpstreamCtx, STREAM_IDLE_TIMEOUT};
use super::UpstreamError;

const CHECK_EVERY: Duration = Duration::from_secs(2);
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(30);

/// Watches the log and refreshes its snapshot from a Redis master when needed.
pub async fn run(ctx: UpstreamCtx, shutdown: watch::Receiver<bool>) {
    let c = ctx.clone();
    run_with(
        ctx.log.clone(),
        ctx.metrics.clone(),
        ctx.health.clone(),
        shutdown,
        move || {
            let c = c.clone();
            async move { refresh_once(&c).await }
        },
    )
    .await
}

/// Watches the log and calls `fetch` (which stores a new snapshot and returns its offset)
/// when the log needs one, until `shutdown` flips.
pub async fn run_with<F, Fut>(
    log: crate::log::Log,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
    health: std::sync::Arc<crate::metrics::Health>,
    mut shutdown: watch::Receiver<bool>,
    fetch: F,
) where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<u64, UpstreamError>>,
{
    struct Ctx {
        log: crate::log::Log,
        metrics: std::sync::Arc<crate::metrics::Metrics>,
        health: std::sync::Arc<crate::metrics::Health>,
    }
    let ctx = Ctx {
        log,
        metrics,
        health,
    };
    let mut ticker = tokio::time::interval(CHECK_EVERY);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.changed() => return,
        }
        let up = ctx.health.upstream_up.load(Ordering::Relaxed);
        if !up || ctx.log.current().is_none() || !ctx.log.needs_snapshot() {
            continue;
        }
        let result = tokio::select! {
            r = fetch() => r,
            _ = shutdown.changed() => return,
        };
        match result {
            Ok(offset) => {
                ctx.metrics
                    .snapshot_refreshes
                    .with_label_values(&["ok"])
                    .inc();
                tracing::info!("snapshot refreshed at offset {offset}");
                if let Err(e) = ctx.log.maintain_async().await {
                    tracing::warn!("retention after snapshot refresh failed: {e}");
                }
            }
            Err(e) => {
                ctx.metrics
                    .snapshot_refreshes
                    .with_label_values(&["error"])
                    .inc();
                tracing::warn!(
                    "snapshot refresh failed: {e}; retrying in {}s",
                    RETRY_AFTER_FAILURE.as_secs()
                );
                tokio::select! {
                    _ = tokio::time::sleep(RETRY_AFTER_FAILURE) => {}
                    _ = shutdown.changed() => return,
                }
            }
        }
    }
}

/// One rdb-only sync: returns the new snapshot's offset.
pub async fn refresh_once(ctx: &UpstreamCtx) -> Result<u64, UpstreamError> {
    tracing::info!(
        "fetching a fresh snapshot from {} (rdb-only)",
        ctx.cfg.redis
    );
    let mut conn = Conn::connect(&ctx.cfg.redis, Duration::from_secs(5), ctx.tls.as_ref()).await?;
    handshake::handshake(&mut conn, &ctx.cfg, ctx.listening_port, true).await?;
    let (replid, offset) = match handshake::psync(&mut conn, None).await? {
        PsyncReply::Full { replid, offset } => (replid, offset),
        PsyncReply::Continue { .. } => {
            return Err(UpstreamError::Protocol(
                "rdb-only PSYNC ? -1 answered +CONTINUE".into(),
            ))
        }
    };
    let rdb = handshake::receive_rdb(&mut conn, &ctx.log, STREAM_IDLE_TIMEOUT).await?;
    let meta = handshake::finish(rdb, &replid, offset).await?;
    ctx.log.add_snapshot_async(meta).await?;
    Ok(offset)
}
