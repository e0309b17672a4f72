//! The validated axum extractors over real HTTP: `Valid<Json|Query|Path|Form<T>>` (validator) and
//! `Garde<Json<T>>` (garde).
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use axum::extract::{Form, Path, Query};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use common::{get as get_req, post as post_with, post_json, send, serve};
use msec_validate::Valid;
use msec_validate::guard::{JsonGuardLayer, JsonLimits};
use serde::Deserialize;
use serde_json::json;
use validator::Validate;

#[derive(Debug, Deserialize, Validate)]
struct Address {
    #[validate(length(min = 5, max = 5))]
    zip: String,
}

#[derive(Debug, Deserialize, Validate)]
struct Item {
    #[validate(range(min = 1, max = 10))]
    qty: u32,
}

#[derive(Debug, Deserialize, Validate)]
struct Signup {
    #[validate(length(min = 3, max = 20))]
    name: String,
    #[validate(email)]
    email: String,
    #[validate(nested)]
    address: Address,
    #[validate(nested)]
    items: Vec<Item>,
}

#[derive(Debug, Deserialize, Validate)]
struct Search {
    #[validate(length(min = 2))]
    q: String,
    #[validate(range(max = 100))]
    limit: Option<u32>,
}

#[derive(Debug, Deserialize, Validate)]
struct OrderPath {
    #[validate(range(min = 1))]
    id: u64,
}

#[derive(Debug, Deserialize, garde::Validate)]
struct GardeUser {
    #[garde(length(min = 3))]
    name: String,
    #[garde(dive)]
    tags: Vec<GardeTag>,
}

#[derive(Debug, Deserialize, garde::Validate)]
struct GardeTag {
    #[garde(length(max = 4))]
    label: String,
}

async fn app() -> String {
    let app = Router::new()
        .route(
            "/signup",
            post(|Valid(Json(s)): Valid<Json<Signup>>| async move { format!("hi {}", s.name) }),
        )
        .route(
            "/search",
            get(|Valid(Query(s)): Valid<Query<Search>>| async move { format!("q={}", s.q) }),
        )
        .route(
            "/orders/{id}",
            get(|Valid(Path(p)): Valid<Path<OrderPath>>| async move { format!("order {}", p.id) }),
        )
        .route(
            "/form",
            post(|Valid(Form(s)): Valid<Form<Search>>| async move { format!("form q={}", s.q) })
                .get(|Valid(Form(s)): Valid<Form<Search>>| async move { format!("form q={}", s.q) }),
        )
        .route(
            "/garde",
            post(|msec_validate::Garde(Json(u)): msec_validate::Garde<Json<GardeUser>>| async move { u.name }),
        );
    serve(app).await
}

fn errors(a: &common::Answer) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = a.json()["errors"]
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
    v.sort();
    v
}

#[tokio::test]
async fn valid_json() {
    let base = app().await;
    let good = json!({"name": "alice", "email": "a@example.com", "address": {"zip": "12345"}, "items": [{"qty": 1}]});
    let a = send(post_json(&format!("{base}/signup"), good.to_string())).await;
    assert_eq!((a.status.as_u16(), a.text().as_str()), (200, "hi alice"));
    assert_eq!(a.decisions(), "validate:allow:input_valid");

    let bad = json!({
        "name": "al",
        "email": "secret-value-not-an-email",
        "address": {"zip": "private-zip"},
        "items": [{"qty": 1}, {"qty": 99}]
    });
    let a = send(post_json(&format!("{base}/signup"), bad.to_string())).await;
    assert_eq!((a.status.as_u16(), a.code().as_str()), (422, "validation_failed"));
    assert_eq!(a.headers["content-type"], "application/problem+json");
    assert_eq!(
        errors(&a),
        [
            ("/address/zip".into(), "length".into()),
            ("/email".into(), "email".into()),
            ("/items/1/qty".into(), "range".into()),
            ("/name".into(), "length".into()),
        ]
    );
    let messages: Vec<String> = a.json()["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        messages.contains(&"must be between 3 and 20 characters long".to_owned()),
        "{messages:?}"
    );
    assert!(
        messages.contains(&"must be between 1 and 10".to_owned()),
        "{messages:?}"
    );
    for secret in ["secret-value", "private-zip", "99", "\"al\""] {
        assert!(!a.text().contains(secret), "{secret} echoed: {}", a.text());
    }
    assert_eq!(a.decisions(), "validate:deny:validation_failed");
}

#[tokio::test]
async fn json_deserialisation_errors_point_without_echoing() {
    let base = app().await;
    let a = send(post_json(
        &format!("{base}/signup"),
        r#"{"name": "alice", "email": "a@b.c", "items": []}"#,
    ))
    .await;
    assert_eq!(a.status, 422);
    assert_eq!(errors(&a), [("/address".into(), "required".into())]);

    let a = send(post_json(
        &format!("{base}/signup"),
        r#"{"name": "alice", "email": "a@b.c", "address": {"zip": "12345"}, "items": [{"qty": "secret-qty"}]}"#,
    ))
    .await;
    assert_eq!(a.status, 422);
    assert_eq!(errors(&a), [("/items/0/qty".into(), "invalid_type".into())]);
    assert!(!a.text().contains("secret-qty"));

    // The guard runs inside the extractor when no guard layer did.
    let a = send(post_json(&format!("{base}/signup"), "{\"name\": ")).await;
    assert_eq!((a.status.as_u16(), a.code().as_str()), (400, "json_syntax"));
    let a = send(post_with(&format!("{base}/signup"), "text/plain", "{}")).await;
    assert_eq!((a.status.as_u16(), a.code().as_str()), (415, "unsupported_media_type"));
    let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
    let a = send(post_json(&format!("{base}/signup"), deep)).await;
    assert_eq!((a.status.as_u16(), a.code().as_str()), (400, "json_too_deep"));
}

#[tokio::test]
async fn extractor_honours_a_guard_layer_and_its_limits() {
    let app = Router::new()
        .route(
            "/signup",
            post(|Valid(Json(s)): Valid<Json<Signup>>| async move { s.name }),
        )
        .layer(JsonGuardLayer::new(JsonLimits::default().max_string_len(8)));
    let base = serve(app).await;
    let good = json!({"name": "alice", "email": "a@b.co", "address": {"zip": "12345"}, "items": []});
    let a = send(post_json(&format!("{base}/signup"), good.to_string())).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.decisions(), "validate:allow:json_accepted;validate:allow:input_valid");
    let long = json!({"name": "alice-the-long", "email": "a@b.co", "address": {"zip": "12345"}, "items": []});
    let a = send(post_json(&format!("{base}/signup"), long.to_string())).await;
    assert_eq!((a.status.as_u16(), a.code().as_str()), (413, "json_string_too_long"));
}

#[tokio::test]
async fn valid_query() {
    let base = app().await;
    let a = send(get_req(&format!("{base}/search?q=rust&limit=10"))).await;
    assert_eq!((a.status.as_u16(), a.text().as_str()), (200, "q=rust"));
    let a = send(get_req(&format!("{base}/search?q=r&limit=1000"))).await;
    assert_eq!(a.status, 422);
    assert_eq!(
        errors(&a),
        [("/limit".into(), "range".into()), ("/q".into(), "length".into())]
    );
    assert!(!a.text().contains("1000"));
    let a = send(get_req(&format!("{base}/search?limit=secret"))).await;
    assert_eq!(a.status, 422);
    assert!(!a.text().contains("secret"));
    let a = send(get_req(&format!("{base}/search?limit=5"))).await;
    assert_eq!(errors(&a), [("/q".into(), "required".into())]);
}

#[tokio::test]
async fn valid_path() {
    let base = app().await;
    let a = send(get_req(&format!("{base}/orders/7"))).await;
    assert_eq!((a.status.as_u16(), a.text().as_str()), (200, "order 7"));
    let a = send(get_req(&format!("{base}/orders/0"))).await;
    assert_eq!(a.status, 422);
    assert_eq!(errors(&a), [("/id".into(), "range".into())]);
    let a = send(get_req(&format!("{base}/orders/secret-id"))).await;
    assert_eq!(a.status, 422);
    assert_eq!(errors(&a), [("/id".into(), "invalid_type".into())]);
    assert!(!a.text().contains("secret-id"));
}

#[tokio::test]
async fn valid_form() {
    let base = app().await;
    let url = format!("{base}/form");
    let a = send(post_with(&url, "application/x-www-form-urlencoded", "q=rust&limit=3")).await;
    assert_eq!((a.status.as_u16(), a.text().as_str()), (200, "form q=rust"));
    let a = send(post_with(&url, "application/x-www-form-urlencoded", "q=x")).await;
    assert_eq!(a.status, 422);
    assert_eq!(errors(&a), [("/q".into(), "length".into())]);
    let a = send(post_with(&url, "application/json", r#"{"q": "rust"}"#)).await;
    assert_eq!((a.status.as_u16(), a.code().as_str()), (415, "unsupported_media_type"));
    let a = send(get_req(&format!("{url}?q=go"))).await;
    assert_eq!((a.status.as_u16(), a.text().as_str()), (200, "form q=go"));
    let big = format!("q={}", "a".repeat(2 * 1024 * 1024));
    let a = send(post_with(&url, "application/x-www-form-urlencoded", Bytes::from(big))).await;
    assert_eq!((a.status.as_u16(), a.code().as_str()), (413, "payload_too_large"));
}

#[tokio::test]
async fn garde_json() {
    let base = app().await;
    let a = send(post_json(
        &format!("{base}/garde"),
        r#"{"name": "alice", "tags": [{"label": "ok"}]}"#,
    ))
    .await;
    assert_eq!((a.status.as_u16(), a.text().as_str()), (200, "alice"));
    let a = send(post_json(
        &format!("{base}/garde"),
        r#"{"name": "al", "tags": [{"label": "ok"}, {"label": "secret"}]}"#,
    ))
    .await;
    assert_eq!((a.status.as_u16(), a.code().as_str()), (422, "validation_failed"));
    assert_eq!(
        errors(&a),
        [
            ("/name".into(), "invalid".into()),
            ("/tags/1/label".into(), "invalid".into())
        ]
    );
    assert!(!a.text().contains("secret"));
}
