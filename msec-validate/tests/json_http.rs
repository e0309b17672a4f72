//! The JSON guard and the JSON Schema layer over real HTTP (axum server, hyper client, loopback).
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::convert::Infallible;

use axum::Router;
use axum::routing::{get, post, put};
use bytes::Bytes;
use common::{get as get_req, post as post_with, post_json, send, serve};
use http::Request;
use http_body::Frame;
use http_body_util::StreamBody;
use msec_validate::guard::{JsonGuardLayer, JsonLimits};
use msec_validate::schema::{JsonSchemaLayer, SchemaSet};
use serde_json::json;

async fn echo(body: Bytes) -> Bytes {
    body
}

async fn guarded() -> String {
    let limits = JsonLimits::default()
        .max_body_bytes(4096)
        .max_depth(4)
        .max_array_len(8)
        .max_object_keys(8)
        .max_string_len(64)
        .max_nodes(64);
    let app = Router::new()
        .route("/echo", post(echo).get(|| async { "no body" }))
        .layer(JsonGuardLayer::new(limits));
    serve(app).await
}

#[tokio::test]
async fn guard_passes_json_and_hands_over_the_bytes() {
    let base = guarded().await;
    let doc = r#"{"a": [1, 2, {"b": "c"}], "d": null}"#;
    let a = send(post_json(&format!("{base}/echo"), doc)).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.text(), doc);
    assert_eq!(a.decisions(), "validate:allow:json_accepted");
    let a = send(post_with(
        &format!("{base}/echo"),
        "application/problem+json; charset=utf-8",
        "[]",
    ))
    .await;
    assert_eq!(a.status, 200);
    // No body: not the guard's business.
    let a = send(get_req(&format!("{base}/echo"))).await;
    assert_eq!((a.status.as_u16(), a.text().as_str()), (200, "no body"));
}

#[tokio::test]
async fn guard_refusals() {
    let base = guarded().await;
    let url = format!("{base}/echo");

    let a = send(post_with(&url, "text/plain", "{}")).await;
    assert_eq!((a.status.as_u16(), a.code().as_str()), (415, "unsupported_media_type"));
    assert_eq!(a.headers["content-type"], "application/problem+json");
    assert_eq!(a.decisions(), "validate:deny:unsupported_media_type");

    let a = send(post_json(&url, vec![b' '; 5000])).await;
    assert_eq!((a.status.as_u16(), a.code().as_str()), (413, "payload_too_large"));

    let a = send(post_json(&url, r#"{"a": tru}"#)).await;
    assert_eq!((a.status.as_u16(), a.code().as_str()), (400, "json_syntax"));
    assert_eq!(a.json()["offset"], 9);

    let mut bad = br#"{"name": "ab"#.to_vec();
    bad.extend_from_slice(&[0xff, b'"', b'}']);
    let a = send(post_json(&url, bad)).await;
    assert_eq!((a.status.as_u16(), a.code().as_str()), (400, "invalid_utf8"));
    assert_eq!(a.json()["offset"], 12);

    let a = send(post_json(&url, "[[[[[1]]]]]")).await;
    assert_eq!((a.status.as_u16(), a.code().as_str()), (400, "json_too_deep"));
    assert_eq!(a.json()["offset"], 4);

    let a = send(post_json(&url, "[1,2,3,4,5,6,7,8,9]")).await;
    assert_eq!((a.status.as_u16(), a.code().as_str()), (413, "json_array_too_long"));
    let a = send(post_json(
        &url,
        format!(
            "{{{}}}",
            (0..9).map(|i| format!("\"k{i}\":{i}")).collect::<Vec<_>>().join(",")
        ),
    ))
    .await;
    assert_eq!((a.status.as_u16(), a.code().as_str()), (413, "json_too_many_keys"));
    let a = send(post_json(&url, format!("\"{}\"", "x".repeat(65)))).await;
    assert_eq!((a.status.as_u16(), a.code().as_str()), (413, "json_string_too_long"));
    let a = send(post_json(&url, format!("[{}]", ["[1,2,3,4,5,6,7]"; 8].join(",")))).await;
    assert_eq!((a.status.as_u16(), a.code().as_str()), (413, "json_too_many_nodes"));
    // Nothing of the document is echoed.
    assert!(!a.text().contains("[1,2"));
}

#[tokio::test]
async fn chunked_body_over_the_limit_is_refused_while_streaming() {
    let base = guarded().await;
    // No content-length: chunked transfer; 100 chunks of 100 bytes of whitespace exceed 4096 bytes.
    let chunks = (0..100).map(|_| Ok::<_, Infallible>(Frame::data(Bytes::from(vec![b' '; 100]))));
    let body = StreamBody::new(futures_util::stream::iter(chunks));
    let req = Request::post(format!("{base}/echo"))
        .header("content-type", "application/json")
        .body(body)
        .unwrap();
    let a = send(req).await;
    assert_eq!((a.status.as_u16(), a.code().as_str()), (413, "payload_too_large"));
}

const ORDER_SCHEMA: &str = r#"{
  "type": "object",
  "required": ["sku", "quantity"],
  "properties": {
    "sku": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{4}$"},
    "quantity": {"type": "integer", "minimum": 1, "maximum": 100},
    "note": {"type": "string", "maxLength": 10},
    "lines": {"type": "array", "items": {"type": "object", "required": ["id"]}}
  },
  "additionalProperties": false
}"#;

async fn with_schemas() -> (String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("order.json");
    std::fs::write(&file, ORDER_SCHEMA).unwrap();
    let schemas = SchemaSet::builder()
        .route("POST /v1/orders", serde_json::from_str(ORDER_SCHEMA).unwrap())
        .route_file("PUT /v1/orders/{id}", &file)
        .build()
        .unwrap();
    let app = Router::new()
        .route("/v1/orders", post(echo))
        .route("/v1/orders/{id}", put(echo))
        .route("/v1/free", post(echo))
        .route("/health", get(|| async { "ok" }))
        .layer(JsonSchemaLayer::new(schemas));
    (serve(app).await, dir)
}

#[tokio::test]
async fn schema_accepts_valid_bodies() {
    let (base, _dir) = with_schemas().await;
    let doc = r#"{"sku": "ABC-1234", "quantity": 2}"#;
    let a = send(post_json(&format!("{base}/v1/orders"), doc)).await;
    assert_eq!((a.status.as_u16(), a.text().as_str()), (200, doc));
    assert_eq!(a.decisions(), "validate:allow:schema_valid");
    let put = Request::put(format!("{base}/v1/orders/7"))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(Bytes::from(doc)))
        .unwrap();
    assert_eq!(send(put).await.status, 200);
    // Routes without a schema pass untouched, whatever they carry.
    let a = send(post_with(&format!("{base}/v1/free"), "text/plain", "anything")).await;
    assert_eq!((a.status.as_u16(), a.text().as_str()), (200, "anything"));
}

#[tokio::test]
async fn schema_violations_are_422_with_pointers_and_no_values() {
    let (base, _dir) = with_schemas().await;
    let doc = json!({
        "sku": "secret-SKU-value",
        "quantity": 1000,
        "note": "hunter2-hunter2",
        "lines": [{"id": 1}, {"x": "private"}],
        "extra": "personal@example.com"
    });
    for url in [format!("{base}/v1/orders"), format!("{base}/v1/orders/9")] {
        let req = if url.ends_with("/9") {
            Request::put(&url)
                .header("content-type", "application/json")
                .body(http_body_util::Full::new(Bytes::from(doc.to_string())))
                .unwrap()
        } else {
            post_json(&url, doc.to_string())
        };
        let a = send(req).await;
        assert_eq!(a.status, 422);
        assert_eq!(a.code(), "schema_violation");
        let mut errors: Vec<(String, String)> = a.json()["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["pointer"].as_str().unwrap().to_owned(),
                    e["code"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        errors.sort();
        assert_eq!(
            errors,
            [
                ("".into(), "additionalProperties".into()),
                ("/lines/1/id".into(), "required".into()),
                ("/note".into(), "maxLength".into()),
                ("/quantity".into(), "maximum".into()),
                ("/sku".into(), "pattern".into()),
            ]
        );
        let text = a.text();
        for secret in ["secret-SKU", "hunter2", "private", "personal@example.com", "1000"] {
            assert!(!text.contains(secret), "{secret} echoed in {text}");
        }
        assert_eq!(a.decisions(), "validate:deny:schema_violation");
    }
    // The guard still runs first on schema routes.
    let a = send(post_json(&format!("{base}/v1/orders"), "{")).await;
    assert_eq!((a.status.as_u16(), a.code().as_str()), (400, "json_syntax"));
    let a = send(post_with(&format!("{base}/v1/orders"), "text/plain", "{}")).await;
    assert_eq!(a.status, 415);
}

#[tokio::test]
async fn grpc_requests_get_trailers_only_invalid_argument() {
    let (base, _dir) = with_schemas().await;
    let req = Request::post(format!("{base}/v1/orders"))
        .header("content-type", "application/grpc")
        .body(http_body_util::Full::new(Bytes::from_static(b"\0\0\0\0\0")))
        .unwrap();
    let a = send(req).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.headers["grpc-status"], "3");
    assert!(
        a.headers["grpc-message"]
            .to_str()
            .unwrap()
            .starts_with("unsupported_media_type")
    );
}
