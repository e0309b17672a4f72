//! The msec tour: starts secured services on loopback, sends scripted good and bad requests, and prints what
//! happened to each (request → status → reason code). Self-contained; exits 0 when every answer is the expected one.
//!
//! Run: `cargo run --example tour`
#![allow(clippy::print_stdout, clippy::unwrap_used, missing_docs, unreachable_pub)]

mod apikey;
mod audit;
mod authn;
mod authz;
mod crypto;
mod ratelimit;
mod revocation;
mod service_token;
mod tls;
mod validate;

use std::fmt::Write as _;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// One line of the table.
struct Row {
    section: &'static str,
    request: String,
    status: String,
    code: String,
    ok: bool,
}

/// What the sections share: an HTTP client and the table.
pub struct Tour {
    client: Client<HttpConnector, Full<Bytes>>,
    rows: Vec<Row>,
}

/// A response as the tour reports it.
pub struct Answer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Answer {
    /// The problem+json `code`, or `-` for a success without one.
    pub fn code(&self) -> String {
        serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v.get("code").and_then(|c| c.as_str()).map(str::to_owned))
            .unwrap_or_else(|| "-".into())
    }
}

impl Tour {
    fn new() -> Self {
        Self {
            client: Client::builder(TokioExecutor::new()).build_http(),
            rows: Vec::new(),
        }
    }

    /// Sends `req` over plain HTTP.
    pub async fn send(&self, req: Request<Full<Bytes>>) -> Result<Answer, BoxError> {
        let resp: Response<_> = self.client.request(req).await?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(Answer {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        })
    }

    /// Records a line: `what` was sent, `answer` came back, `expected` status and code were wanted.
    pub fn record(&mut self, section: &'static str, what: &str, answer: &Answer, expected: (u16, &str)) {
        let code = answer.code();
        let ok = answer.status == expected.0 && code == expected.1;
        self.rows.push(Row {
            section,
            request: what.to_owned(),
            status: answer.status.to_string(),
            code,
            ok,
        });
    }

    /// Records a line that is not an HTTP exchange (a gRPC call, a CLI step).
    pub fn note(&mut self, section: &'static str, what: &str, status: &str, code: &str, ok: bool) {
        self.rows.push(Row {
            section,
            request: what.to_owned(),
            status: status.to_owned(),
            code: code.to_owned(),
            ok,
        });
    }

    fn print(&self) -> bool {
        let w0 = self.rows.iter().map(|r| r.section.len()).max().unwrap_or(0).max(7);
        let w1 = self.rows.iter().map(|r| r.request.len()).max().unwrap_or(0).max(7);
        let w2 = self.rows.iter().map(|r| r.status.len()).max().unwrap_or(0).max(6);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:w0$}  {:w1$}  {:w2$}  reason code",
            "section", "request", "status"
        );
        let _ = writeln!(out, "{}", "-".repeat(w0 + w1 + w2 + 20));
        for r in &self.rows {
            let mark = if r.ok { "" } else { "   <-- UNEXPECTED" };
            let _ = writeln!(
                out,
                "{:w0$}  {:w1$}  {:w2$}  {}{mark}",
                r.section, r.request, r.status, r.code
            );
        }
        print!("{out}");
        self.rows.iter().all(|r| r.ok)
    }
}

/// A GET request to `url` with optional headers.
pub fn get(url: &str, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut b = Request::get(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Full::new(Bytes::new())).unwrap()
}

/// A POST request with a JSON body.
pub fn post_json(url: &str, headers: &[(&str, &str)], body: &str) -> Request<Full<Bytes>> {
    let mut b = Request::post(url).header("content-type", "application/json");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Full::new(Bytes::from(body.to_owned()))).unwrap()
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let mut tour = Tour::new();
    println!("msec tour: every request below goes over real HTTP on 127.0.0.1\n");
    authz::run(&mut tour).await?;
    crypto::run(&mut tour).await?;
    validate::run(&mut tour).await?;
    ratelimit::run(&mut tour).await?;
    authn::run(&mut tour).await?;
    revocation::run(&mut tour).await?;
    service_token::run(&mut tour).await?;
    apikey::run(&mut tour).await?;
    audit::run(&mut tour).await?;
    tls::run(&mut tour).await?;
    println!();
    if tour.print() {
        println!("\nevery answer was the expected one.");
        Ok(())
    } else {
        Err("some answers were not the expected ones (marked above)".into())
    }
}
