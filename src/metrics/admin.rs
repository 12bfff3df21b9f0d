//! The admin HTTP listener: `GET /metrics` (Prometheus text), `/healthz` and `/readyz`.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::{Health, Metrics};
use crate::log::Log;

const MAX_REQUEST: usize = 8 * 1024;

/// Shared state the admin handlers read.
#[derive(Clone)]
pub struct AdminState {
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    pub log: Log,
    pub node: String,
    /// "redis" or "agent".
    pub upstream_kind: &'static str,
    pub upstream_addr: String,
    pub replicas: Arc<crate::serve::Replicas>,
    pub peers: Arc<crate::serve::peers::Peers>,
    /// The lanes, in cluster mode (`upstream.cluster`).
    pub cluster: Option<crate::cluster::run::Lanes>,
}

/// Serves admin requests until `shutdown` flips to true.
pub async fn serve(listener: TcpListener, state: AdminState, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok((sock, _)) => {
                    let st = state.clone();
                    tokio::spawn(async move {
                        let _ = tokio::time::timeout(Duration::from_secs(10), handle(sock, st)).await;
                    });
                }
                Err(e) => {
                    tracing::warn!("admin accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

async fn handle(mut sock: TcpStream, state: AdminState) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut tmp = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && !buf.windows(2).any(|w| w == b"\n\n") {
        let n = sock.read(&mut tmp).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&tmp[..n]);
        if buf.len() > MAX_REQUEST {
            return respond(&mut sock, 431, "text/plain", b"request header too large\n").await;
        }
    }
    let line = buf.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if method != "GET" && method != "HEAD" {
        return respond(&mut sock, 405, "text/plain", b"only GET is supported\n").await;
    }
    match path.split('?').next().unwrap_or("") {
        "/metrics" => {
            state.metrics.refresh_from_log(&state.log);
            let body = state.metrics.render();
            respond(&mut sock, 200, "text/plain; version=0.0.4", &body).await
        }
        "/status" => {
            let body =
                serde_json::to_vec_pretty(&super::status::collect(&state)).unwrap_or_default();
            respond(&mut sock, 200, "application/json", &body).await
        }
        "/healthz" | "/live" => respond(&mut sock, 200, "text/plain", b"ok\n").await,
        "/readyz" | "/ready" => match state.health.not_ready_reason() {
            None => respond(&mut sock, 200, "text/plain", b"ready\n").await,
            Some(why) => {
                respond(
                    &mut sock,
                    503,
                    "text/plain",
                    format!("not ready: {why}\n").as_bytes(),
                )
                .await
            }
        },
        _ => {
            respond(
                &mut sock,
                404,
                "text/plain",
                b"not found; try /metrics, /status, /healthz or /readyz\n",
            )
            .await
        }
    }
}

async fn respond(sock: &mut TcpStream, code: u16, ctype: &str, body: &[u8]) -> std::io::Result<()> {
    let reason = match code {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Service Unavailable",
    };
    let head = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    sock.write_all(head.as_bytes()).await?;
    sock.write_all(body).await?;
    sock.shutdown().await
}
