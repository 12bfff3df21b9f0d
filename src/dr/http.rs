//! A small HTTP/1.1 client (hyper) for agents' admin listeners: `GET /status`, and the
//! token-guarded `POST`/`DELETE /upstream`. Used by `georelay status`, `switchover` and
//! `failover`.

use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::metrics::status::Status;

const TIMEOUT: Duration = Duration::from_secs(10);

/// Why an admin request failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{0:?} is not an http://host:port address")]
    Url(String),
    #[error("cannot reach {url}: {detail}")]
    Unreachable { url: String, detail: String },
    #[error("{url}: no answer within {0:?}", TIMEOUT)]
    Timeout { url: String },
    #[error("{url}: HTTP {code}: {body}")]
    Status {
        url: String,
        code: u16,
        body: String,
    },
    #[error("{url}: not a georelay status document: {detail}")]
    Decode { url: String, detail: String },
}

/// One admin listener, e.g. `http://127.0.0.1:9187`.
#[derive(Clone)]
pub struct Admin {
    base: String,
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
}

impl Admin {
    pub fn new(base: &str) -> Result<Admin, HttpError> {
        let base = base.trim_end_matches('/');
        let rest = base
            .strip_prefix("http://")
            .ok_or_else(|| HttpError::Url(base.into()))?;
        if rest.is_empty() || rest.contains('/') {
            return Err(HttpError::Url(base.into()));
        }
        Ok(Admin {
            base: base.to_string(),
            client: Client::builder(TokioExecutor::new()).build_http(),
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends a request; returns the body of a 2xx answer.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Result<String, HttpError> {
        let url = format!("{}{path}", self.base);
        let mut req = Request::builder().method(method).uri(&url);
        if let Some(t) = token {
            req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        if body.is_some() {
            req = req.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|_| HttpError::Url(url.clone()))?;
        let fut = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| HttpError::Unreachable {
                    url: url.clone(),
                    detail: error_chain(&e),
                })?;
            let code = resp.status();
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| HttpError::Unreachable {
                    url: url.clone(),
                    detail: e.to_string(),
                })?
                .to_bytes();
            Ok::<_, HttpError>((code, String::from_utf8_lossy(&bytes).into_owned()))
        };
        let (code, text) = tokio::time::timeout(TIMEOUT, fut)
            .await
            .map_err(|_| HttpError::Timeout { url: url.clone() })??;
        if code != StatusCode::OK {
            return Err(HttpError::Status {
                url,
                code: code.as_u16(),
                body: text.trim().to_string(),
            });
        }
        Ok(text)
    }

    /// `GET /status`: the raw text and the parsed document.
    pub async fn status(&self) -> Result<(String, Status), HttpError> {
        let text = self.request(Method::GET, "/status", None, None).await?;
        let s = serde_json::from_str(&text).map_err(|e| HttpError::Decode {
            url: format!("{}/status", self.base),
            detail: e.to_string(),
        })?;
        Ok((text, s))
    }

    /// `POST /upstream` with a JSON body.
    pub async fn repoint(
        &self,
        token: &str,
        body: &serde_json::Value,
    ) -> Result<String, HttpError> {
        self.request(
            Method::POST,
            "/upstream",
            Some(token),
            Some(body.to_string().into_bytes()),
        )
        .await
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_urls() {
        assert!(Admin::new("http://127.0.0.1:9187/").is_ok());
        for bad in [
            "127.0.0.1:9187",
            "https://x:1",
            "http://",
            "http://x:1/status",
        ] {
            assert!(matches!(Admin::new(bad), Err(HttpError::Url(_))), "{bad}");
        }
    }
}
