//! The admin HTTP listener (axum): `GET /metrics` (Prometheus text), `/status`, `/healthz` and
//! `/readyz`, open to all; `POST /upstream` and `DELETE /upstream` (runtime re-pointing),
//! behind the bearer token from `admin.token_file`, disabled without one.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};

use super::status::{self, NodeState};
use crate::dr::repoint::{RepointCmd, RepointError, RepointRequest};

const MAX_BODY: usize = 64 * 1024;

/// Shared state the admin handlers read.
#[derive(Clone)]
pub struct AdminState {
    pub node: NodeState,
    /// The bearer token mutating endpoints need; `None` disables them.
    pub token: Option<Arc<str>>,
    /// The upstream supervisor's inbox.
    pub repoint: mpsc::Sender<RepointCmd>,
}

/// Serves admin requests until `shutdown` flips to true.
pub async fn serve(listener: TcpListener, state: AdminState, mut shutdown: watch::Receiver<bool>) {
    let app = router(state);
    let stop = async move {
        let _ = shutdown.changed().await;
    };
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await
    {
        tracing::error!("admin listener failed: {e}");
    }
}

fn router(state: AdminState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/status", get(status_doc))
        .route("/healthz", get(healthz))
        .route("/live", get(healthz))
        .route("/readyz", get(readyz))
        .route("/ready", get(readyz))
        .route(
            "/upstream",
            get(upstream_get)
                .post(upstream_post)
                .delete(upstream_delete),
        )
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

fn text(code: StatusCode, body: impl Into<String>) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body.into(),
    )
        .into_response()
}

fn json(code: StatusCode, v: &impl serde::Serialize) -> Response {
    match serde_json::to_vec_pretty(v) {
        Ok(body) => (code, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding: {e}\n"),
        ),
    }
}

async fn metrics(State(st): State<AdminState>) -> Response {
    st.node.metrics.refresh_from_log(&st.node.log);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        st.node.metrics.render(),
    )
        .into_response()
}

async fn status_doc(State(st): State<AdminState>) -> Response {
    json(StatusCode::OK, &status::collect(&st.node))
}

async fn healthz() -> Response {
    text(StatusCode::OK, "ok\n")
}

async fn readyz(State(st): State<AdminState>) -> Response {
    match st.node.health.not_ready_reason() {
        None => text(StatusCode::OK, "ready\n"),
        Some(why) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        ),
    }
}

async fn not_found() -> Response {
    text(
        StatusCode::NOT_FOUND,
        "not found; try /metrics, /status, /healthz, /readyz or /upstream\n",
    )
}

/// The active upstream, as in `/status` (reads stay open).
async fn upstream_get(State(st): State<AdminState>) -> Response {
    json(StatusCode::OK, &status::collect(&st.node).upstream)
}

/// Checks the bearer token; `Some` is the refusal to send.
fn refusal(st: &AdminState, headers: &HeaderMap) -> Option<Response> {
    let Some(want) = &st.token else {
        return Some(text(
            StatusCode::FORBIDDEN,
            "mutating admin endpoints are disabled: set admin.token_file in the agent's config\n",
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        Some(g) if constant_time_eq(g.as_bytes(), want.as_bytes()) => None,
        Some(_) => Some(unauthorized("wrong bearer token\n")),
        None => Some(unauthorized(
            "this endpoint needs \"Authorization: Bearer <token from admin.token_file>\"\n",
        )),
    }
}

fn unauthorized(msg: &str) -> Response {
    let mut r = text(StatusCode::UNAUTHORIZED, msg);
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    r
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn repoint_failure(e: RepointError) -> Response {
    let code = match e {
        RepointError::Request(_) | RepointError::Unusable(_) => StatusCode::BAD_REQUEST,
        RepointError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    text(code, format!("{e}\n"))
}

async fn upstream_post(State(st): State<AdminState>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(r) = refusal(&st, &headers) {
        return r;
    }
    let req = match RepointRequest::parse(&body) {
        Ok(r) => r,
        Err(e) => return repoint_failure(e),
    };
    let (reply, rx) = oneshot::channel();
    let cmd = RepointCmd::Set { req, reply };
    if st.repoint.send(cmd).await.is_err() {
        return repoint_failure(RepointError::ShuttingDown);
    }
    match rx.await {
        Ok(Ok(o)) => json(StatusCode::OK, &o),
        Ok(Err(e)) => repoint_failure(e),
        Err(_) => repoint_failure(RepointError::ShuttingDown),
    }
}

async fn upstream_delete(State(st): State<AdminState>, headers: HeaderMap) -> Response {
    if let Some(r) = refusal(&st, &headers) {
        return r;
    }
    let (reply, rx) = oneshot::channel();
    if st.repoint.send(RepointCmd::Clear { reply }).await.is_err() {
        return repoint_failure(RepointError::ShuttingDown);
    }
    match rx.await {
        Ok(Ok(true)) => text(
            StatusCode::OK,
            "override cleared; the config file's upstream applies again\n",
        ),
        Ok(Ok(false)) => text(StatusCode::OK, "no override was in force\n"),
        Ok(Err(e)) => repoint_failure(e),
        Err(_) => repoint_failure(RepointError::ShuttingDown),
    }
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
    }
}
