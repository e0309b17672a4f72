//! Shared helpers for msec-validate's integration tests: serve an axum app on loopback, send real HTTP
//! requests, read problem documents and recorded decisions.
#![allow(dead_code, clippy::unwrap_used, unreachable_pub)]

use std::sync::Arc;

use axum::Router;
use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use msec_core::SecurityContext;
use serde_json::Value;

/// Serves `app` on 127.0.0.1 with an outer middleware that puts a `SecurityContext` in every request and
/// copies the recorded decisions into an `x-decisions` response header (`layer:outcome:code;...`).
pub async fn serve(app: Router) -> String {
    let app = app.layer(axum::middleware::from_fn(with_context));
    let (listener, addr) = msec_test_support::net::listener().await;
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

async fn with_context(mut req: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    let ctx: Arc<SecurityContext> = SecurityContext::new();
    req.extensions_mut().insert(ctx.clone());
    let mut resp = next.run(req).await;
    let d: Vec<String> = ctx
        .decisions()
        .iter()
        .map(|d| format!("{}:{}:{}", d.layer, d.outcome.as_str(), d.code))
        .collect();
    if let Ok(v) = d.join(";").parse() {
        resp.headers_mut().insert("x-decisions", v);
    }
    resp
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    pub fn code(&self) -> String {
        self.json()["code"].as_str().unwrap_or("-").to_owned()
    }
    pub fn decisions(&self) -> String {
        self.headers
            .get("x-decisions")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub async fn send<B>(req: Request<B>) -> Answer
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let client = Client::builder(TokioExecutor::new()).build_http::<B>();
    let resp = client.request(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

pub fn post(url: &str, content_type: &str, body: impl Into<Bytes>) -> Request<Full<Bytes>> {
    Request::post(url)
        .header("content-type", content_type)
        .body(Full::new(body.into()))
        .unwrap()
}

pub fn post_json(url: &str, body: impl Into<Bytes>) -> Request<Full<Bytes>> {
    post(url, "application/json", body)
}

pub fn get(url: &str) -> Request<Full<Bytes>> {
    Request::get(url).body(Full::new(Bytes::new())).unwrap()
}
