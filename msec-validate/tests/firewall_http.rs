//! Every firewall rule, with a request it refuses and a request it lets through, over real HTTP; and every
//! rule turned off on its own. Requests that hyper's client cannot express go over a raw TCP socket.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::net::SocketAddr;

use axum::Router;
use bytes::Bytes;
use http::{Method, Request};
use http_body_util::Full;
use msec_validate::firewall::{FirewallLayer, Rule};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A request as the test sends it.
#[derive(Clone)]
enum Req {
    /// Through hyper's client: method, path and query, extra headers.
    Hyper(&'static str, String, Vec<(&'static str, String)>),
    /// Raw bytes on a socket (the request line and headers; `Connection: close` is added).
    Raw(String),
}

fn get(target: &str) -> Req {
    Req::Hyper("GET", target.to_owned(), Vec::new())
}

fn with_headers(n: usize, size: usize) -> Req {
    Req::Hyper(
        "GET",
        "/ok".into(),
        (0..n).map(|i| (HEADER_NAMES[i], "v".repeat(size))).collect(),
    )
}

const HEADER_NAMES: [&str; 16] = [
    "x-h0", "x-h1", "x-h2", "x-h3", "x-h4", "x-h5", "x-h6", "x-h7", "x-h8", "x-h9", "x-h10", "x-h11", "x-h12", "x-h13",
    "x-h14", "x-h15",
];

fn firewall() -> FirewallLayer {
    FirewallLayer::strict()
        .max_uri_len(256)
        .max_headers(12)
        .max_header_bytes(200)
        .max_total_header_bytes(700)
}

async fn start(layer: FirewallLayer) -> SocketAddr {
    let app = Router::new().fallback(|| async { "ok" }).layer(layer);
    let base = common::serve(app).await;
    base.trim_start_matches("http://").parse().unwrap()
}

/// Sends `req`; returns the status and the problem code (`-` when there is none).
async fn send(addr: SocketAddr, req: &Req) -> (u16, String) {
    match req {
        Req::Hyper(method, target, headers) => {
            let mut b = Request::builder()
                .method(Method::from_bytes(method.as_bytes()).unwrap())
                .uri(format!("http://{addr}{target}"));
            for (k, v) in headers {
                b = b.header(*k, v);
            }
            let a = common::send(b.body(Full::new(Bytes::new())).unwrap()).await;
            (a.status.as_u16(), a.code())
        }
        Req::Raw(head) => {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(format!("{head}Host: {addr}\r\nConnection: close\r\n\r\n").as_bytes())
                .await
                .unwrap();
            let mut out = Vec::new();
            s.read_to_end(&mut out).await.unwrap();
            let text = String::from_utf8_lossy(&out);
            let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
            let code = text
                .split("\"code\":\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap_or("-")
                .to_owned();
            (status, code)
        }
    }
}

/// (rule, requests it refuses, requests it lets through)
fn cases() -> Vec<(Rule, Vec<Req>, Vec<Req>)> {
    vec![
        (
            Rule::EncodedSlash,
            vec![get("/a%2Fb"), get("/a%2fb/c")],
            vec![get("/a/b"), get("/a?x=%2F")],
        ),
        (
            Rule::Backslash,
            vec![
                get("/a%5Cb"),
                get("/a%5c..%5cetc"),
                Req::Raw("GET /a\\b HTTP/1.1\r\n".into()),
            ],
            vec![get("/a/b"), get("/a?x=%5C")],
        ),
        (
            Rule::DotSegment,
            vec![
                get("/a/../b"),
                get("/a/./b"),
                get("/a/%2e%2e/b"),
                get("/a/%2E%2e/b"),
                get("/a/.%2e/b"),
                get("/a/%2e"),
                get("/.."),
            ],
            vec![
                get("/a/..b/c"),
                get("/.well-known/x"),
                get("/a/b.c"),
                get("/a?path=../x"),
            ],
        ),
        (
            Rule::Semicolon,
            vec![get("/a;jsessionid=1"), get("/a%3bb"), get("/a%3Bb")],
            vec![get("/a?x=1;2")],
        ),
        (
            Rule::EncodedPercent,
            vec![get("/a%252e%252e/b"), get("/a%25")],
            vec![get("/a%20b"), get("/a?x=%25")],
        ),
        (
            Rule::DoubleSlash,
            vec![get("/a//b"), get("//a")],
            vec![get("/a/b/"), get("/")],
        ),
        (
            Rule::NullByte,
            vec![get("/a%00b"), get("/a?q=x%00y")],
            vec![get("/a%20b"), get("/a?q=x%20y")],
        ),
        (
            Rule::ControlCharacter,
            vec![
                get("/a%0d%0aSet-Cookie:x"),
                get("/a%7f"),
                get("/a?q=line%0Abreak"),
                get("/a?q=%09"),
                Req::Raw("GET /a HTTP/1.1\r\nX-Note: tab\there\r\n".into()),
            ],
            vec![
                get("/a?q=%20"),
                Req::Raw("GET /a HTTP/1.1\r\nX-Note: plain words\r\n".into()),
            ],
        ),
        (
            Rule::UriTooLong,
            vec![get(&format!("/{}", "a".repeat(300)))],
            vec![get(&format!("/{}", "a".repeat(200)))],
        ),
        (
            Rule::TooManyHeaders,
            vec![with_headers(12, 4)],
            vec![with_headers(11, 4)],
        ),
        (
            Rule::HeaderTooLarge,
            vec![with_headers(1, 250)],
            vec![with_headers(1, 150)],
        ),
        (
            Rule::HeadersTooLarge,
            vec![with_headers(5, 150)],
            vec![with_headers(4, 150)],
        ),
        (
            Rule::UnknownMethod,
            vec![
                Req::Hyper("TRACE", "/a".into(), vec![]),
                Req::Hyper("PROPFIND", "/a".into(), vec![]),
            ],
            vec![
                Req::Hyper("GET", "/a".into(), vec![]),
                Req::Hyper("DELETE", "/a".into(), vec![]),
            ],
        ),
    ]
}

#[tokio::test]
async fn every_rule_refuses_and_lets_through() {
    let strict = start(firewall()).await;
    let all = cases();
    assert_eq!(all.len(), Rule::ALL.len(), "every rule has cases");
    for (rule, refused, passed) in all {
        for r in &refused {
            assert_eq!(
                send(strict, r).await,
                (400, rule.code().as_str().to_owned()),
                "{rule:?} should refuse"
            );
        }
        for r in &passed {
            assert_eq!(send(strict, r).await, (200, "-".to_owned()), "{rule:?} should pass");
        }
    }
}

#[tokio::test]
async fn every_rule_can_be_turned_off() {
    for (rule, refused, _) in cases() {
        let layer = firewall().allow(rule);
        assert!(!layer.is_enabled(rule));
        let addr = start(layer).await;
        for r in &refused {
            let (status, code) = send(addr, r).await;
            assert_ne!(code, rule.code().as_str(), "{rule:?} is off but still refused");
            assert_eq!(status, 200, "{rule:?} off: {code}");
        }
    }
}

#[tokio::test]
async fn refusals_are_recorded_and_grpc_aware() {
    let addr = start(firewall()).await;
    let a = common::send(
        Request::get(format!("http://{addr}/a/%2e%2e/etc/passwd"))
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!(a.status, 400);
    assert_eq!(a.headers["content-type"], "application/problem+json");
    assert_eq!(a.decisions(), "validate:deny:dot_segment");
    assert!(!a.text().contains("passwd"), "the target is not echoed");
    let a = common::send(
        Request::get(format!("http://{addr}/fine"))
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!(a.decisions(), "validate:allow:request_clean");

    let grpc = Request::post(format!("http://{addr}/pkg.Svc/%2e%2e"))
        .header("content-type", "application/grpc")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let a = common::send(grpc).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.headers["grpc-status"], "3");
    assert!(a.headers["grpc-message"].to_str().unwrap().starts_with("dot_segment"));
}
