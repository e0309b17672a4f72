//! JSON Schema configuration: drafts, local references, and proof that remote references are refused at
//! construction without any fetch.
#![allow(clippy::unwrap_used, missing_docs)]

use std::io::ErrorKind;
use std::net::TcpListener;

use http::Method;
use msec_validate::ConfigError;
use msec_validate::schema::{Draft, SchemaSet};
use serde_json::{Value, json};

/// A loopback listener that would see any fetch attempt, checked without waiting: a connection made during
/// `build()` is in the accept queue when `build()` returns.
struct Tripwire(TcpListener);

impl Tripwire {
    fn new() -> Self {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        Self(l)
    }
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.0.local_addr().unwrap())
    }
    fn untouched(&self) -> bool {
        matches!(self.0.accept(), Err(e) if e.kind() == ErrorKind::WouldBlock)
    }
}

fn one(route: &str, schema: Value) -> Result<SchemaSet, ConfigError> {
    SchemaSet::builder().route(route, schema).build()
}

fn violations(set: &SchemaSet, path: &str, doc: &Value) -> Vec<String> {
    let (_, s) = set.find(&Method::POST, path).unwrap();
    s.violations(doc)
        .into_iter()
        .map(|e| format!("{}:{}", e.pointer, e.code))
        .collect()
}

#[test]
fn the_tripwire_detects_a_connection() {
    let t = Tripwire::new();
    let _c = std::net::TcpStream::connect(t.0.local_addr().unwrap()).unwrap();
    assert!(!t.untouched());
}

#[test]
fn remote_ref_is_a_construction_error_not_a_fetch() {
    let t = Tripwire::new();
    let url = t.url("/schema.json");
    let err = one("POST /x", json!({"$ref": url})).unwrap_err();
    match &err {
        ConfigError::RemoteReference { route, uri } => {
            assert_eq!(route, "POST /x");
            assert_eq!(uri, &url);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.to_string().contains("never fetched"));
    assert!(t.untouched(), "the schema compiler connected to the remote reference");

    // Nested inside properties, and through $defs.
    let nested = json!({"type": "object", "properties": {"a": {"$ref": t.url("/a.json#/defs/x")}}});
    assert!(matches!(
        one("POST /x", nested),
        Err(ConfigError::RemoteReference { .. })
    ));
    assert!(t.untouched());
}

#[test]
fn file_refs_are_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("defs.json");
    std::fs::write(&path, r#"{"type": "string"}"#).unwrap();
    let err = one("POST /x", json!({"$ref": format!("file://{}", path.display())})).unwrap_err();
    assert!(matches!(err, ConfigError::RemoteReference { .. }), "{err:?}");
}

#[test]
fn unknown_meta_schema_is_not_fetched() {
    let t = Tripwire::new();
    let err = one("POST /x", json!({"$schema": t.url("/meta"), "type": "object"})).unwrap_err();
    assert!(matches!(err, ConfigError::UnknownDraft { .. }), "{err:?}");
    assert!(t.untouched());
}

#[test]
fn registered_resources_resolve_locally() {
    let set = SchemaSet::builder()
        .resource(
            "https://schemas.example.com/common.json",
            json!({"$defs": {"sku": {"type": "string", "maxLength": 4}}}),
        )
        .route(
            "POST /x",
            json!({"properties": {"sku": {"$ref": "https://schemas.example.com/common.json#/$defs/sku"}}}),
        )
        .build()
        .unwrap();
    assert!(violations(&set, "/x", &json!({"sku": "ABCD"})).is_empty());
    assert_eq!(violations(&set, "/x", &json!({"sku": "ABCDE"})), ["/sku:maxLength"]);
}

#[test]
fn local_refs_within_a_schema_work() {
    let set = one(
        "POST /x",
        json!({"$defs": {"n": {"type": "integer"}}, "items": {"$ref": "#/$defs/n"}}),
    )
    .unwrap();
    assert_eq!(violations(&set, "/x", &json!([1, "a", 3])), ["/1:type"]);
}

#[test]
fn danger_retriever_is_the_explicit_opt_in() {
    struct InMemory;
    impl jsonschema::Retrieve for InMemory {
        fn retrieve(&self, uri: &jsonschema::Uri<String>) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
            assert_eq!(uri.as_str(), "https://schemas.example.com/id.json");
            Ok(json!({"type": "integer"}))
        }
    }
    let set = SchemaSet::builder()
        .danger_retriever(InMemory)
        .route(
            "POST /x",
            json!({"properties": {"id": {"$ref": "https://schemas.example.com/id.json"}}}),
        )
        .build()
        .unwrap();
    assert_eq!(violations(&set, "/x", &json!({"id": "x"})), ["/id:type"]);
}

#[test]
fn drafts() {
    // Draft 4's boolean exclusiveMaximum.
    let d4 = json!({"maximum": 10, "exclusiveMaximum": true});
    let set = SchemaSet::builder()
        .draft(Draft::Draft4)
        .route("POST /x", d4.clone())
        .build()
        .unwrap();
    assert!(violations(&set, "/x", &json!(9)).is_empty());
    assert_eq!(violations(&set, "/x", &json!(10)), [":exclusiveMaximum"]);

    // 2020-12 (the default): `prefixItems` is a keyword; under draft 7 it is not.
    let tuple = json!({"prefixItems": [{"type": "integer"}]});
    let set = one("POST /x", tuple.clone()).unwrap();
    assert_eq!(violations(&set, "/x", &json!(["a"])), ["/0:type"]);
    let set = SchemaSet::builder()
        .draft(Draft::Draft7)
        .route("POST /x", tuple)
        .build()
        .unwrap();
    assert!(violations(&set, "/x", &json!(["a"])).is_empty());

    // A schema's own `$schema` wins over the builder's draft.
    let d7 = json!({"$schema": "http://json-schema.org/draft-07/schema#", "items": [{"type": "integer"}]});
    let set = one("POST /x", d7).unwrap();
    assert_eq!(violations(&set, "/x", &json!(["a"])), ["/0:type"]);
}

#[test]
fn configuration_errors() {
    assert!(matches!(
        one("POST /x", json!({"type": "no-such-type"})),
        Err(ConfigError::InvalidSchema { .. })
    ));
    assert!(matches!(one("post /x", json!({})), Err(ConfigError::Route(_))));
    let missing = SchemaSet::builder()
        .route_file("POST /x", "/nonexistent/schema.json")
        .build();
    assert!(matches!(missing, Err(ConfigError::SchemaFile { .. })));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.json");
    std::fs::write(&path, "{ not json").unwrap();
    let bad = SchemaSet::builder().route_file("POST /x", &path).build();
    assert!(matches!(bad, Err(ConfigError::SchemaJson { .. })));
}

#[test]
fn most_specific_route_wins() {
    let set = SchemaSet::builder()
        .route("POST /v1/{*rest}", json!({"type": "object"}))
        .route("POST /v1/orders", json!({"type": "array"}))
        .build()
        .unwrap();
    assert_eq!(
        set.find(&Method::POST, "/v1/orders").unwrap().1.route(),
        "POST /v1/orders"
    );
    assert_eq!(
        set.find(&Method::POST, "/v1/other").unwrap().1.route(),
        "POST /v1/{*rest}"
    );
    assert!(set.find(&Method::GET, "/v1/orders").is_none());
}
