//! Input validation (msec-validate): a request firewall, the streaming JSON guard and per-route JSON Schemas.

use axum::Router;
use axum::routing::{get, post};
use msec::validate::guard::JsonLimits;
use msec::validate::{FirewallLayer, JsonSchemaLayer, SchemaSet};
use tower::ServiceBuilder;

use crate::{BoxError, Tour};

const ORDER_SCHEMA: &str = r#"{
  "type": "object",
  "required": ["sku", "quantity"],
  "properties": {
    "sku": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{4}$"},
    "quantity": {"type": "integer", "minimum": 1, "maximum": 100}
  },
  "additionalProperties": false
}"#;

pub(crate) async fn run(tour: &mut Tour) -> Result<(), BoxError> {
    let schemas = SchemaSet::builder()
        .route("POST /v1/orders", serde_json::from_str(ORDER_SCHEMA)?)
        .build()?;
    let app = Router::new()
        .route("/v1/orders", post(|| async { "created" }))
        .route("/files/{*path}", get(|| async { "a file" }))
        .layer(
            ServiceBuilder::new()
                .layer(FirewallLayer::strict())
                .layer(JsonSchemaLayer::new(schemas).limits(JsonLimits::default().max_depth(16))),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });

    let s = "validate";
    let orders = format!("{base}/v1/orders");
    let a = tour
        .send(crate::post_json(&orders, &[], r#"{"sku": "ABC-1234", "quantity": 2}"#))
        .await?;
    tour.record(s, "POST /v1/orders, valid body", &a, (200, "-"));
    let a = tour
        .send(crate::post_json(
            &orders,
            &[],
            r#"{"sku": "abc", "quantity": 0, "card": "4111..."}"#,
        ))
        .await?;
    tour.record(
        s,
        "POST /v1/orders, body breaks the schema",
        &a,
        (422, "schema_violation"),
    );
    let bomb = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let a = tour.send(crate::post_json(&orders, &[], &bomb)).await?;
    tour.record(s, "POST /v1/orders, 10 000 nested arrays", &a, (400, "json_too_deep"));
    let a = tour.send(crate::get(&format!("{base}/files/report.pdf"), &[])).await?;
    tour.record(s, "GET /files/report.pdf", &a, (200, "-"));
    let a = tour
        .send(crate::get(&format!("{base}/files/%2e%2e/%2e%2e/etc/passwd"), &[]))
        .await?;
    tour.record(s, "GET /files/%2e%2e/%2e%2e/etc/passwd", &a, (400, "dot_segment"));
    Ok(())
}
