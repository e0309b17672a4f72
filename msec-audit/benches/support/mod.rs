//! What `audit.rs` (criterion) and `insns.rs` (callgrind) share: the same events, the same plain-serde baseline,
//! the same request and handler, so wall-clock and instruction counts measure the same work.
#![allow(dead_code)]

use std::convert::Infallible;
use std::hint::black_box;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use msec_audit::chain::ChainHead;
use msec_audit::{DataAccess, Record, Sink, SinkError};
use msec_core::Principal;
use serde::Serialize;

pub(crate) fn principal() -> Principal {
    Principal::builder("user-4711@example.com")
        .issuer("https://id.example.com")
        .token_id("b1946ac9-2e5d-4f3e-9c1e-7c1f0a3c2d11")
        .build()
}

pub(crate) fn event(i: usize, p: &Principal) -> DataAccess {
    DataAccess::read("customer", format!("c-{i}"))
        .actor_principal(p)
        .fields(["email", "phone", "address"])
        .purpose("support ticket 5512")
        .request_id("req-0f8fad5b-d9cb-469f-a165-70867728950e")
}

/// The same content as `event`, as a plain serde struct: the baseline.
#[derive(Serialize)]
pub(crate) struct Plain<'a> {
    kind: &'static str,
    id: String,
    time: String,
    request_id: &'a str,
    actor: PlainActor<'a>,
    access: PlainAccess,
}
#[derive(Serialize)]
pub(crate) struct PlainActor<'a> {
    subject: &'a str,
    issuer: &'a str,
    kind: &'static str,
    token_id: &'a str,
    auth: &'static str,
}
#[derive(Serialize)]
pub(crate) struct PlainAccess {
    operation: &'static str,
    resource_type: &'static str,
    resource_id: String,
    fields: [&'static str; 3],
    purpose: &'static str,
}

pub(crate) fn plain(i: usize, p: &Principal) -> Plain<'_> {
    Plain {
        kind: "data_access",
        id: msec_audit::EventId::new(std::time::SystemTime::now()).to_hyphenated(),
        time: msec_audit::Timestamp(std::time::SystemTime::now()).to_rfc3339(),
        request_id: "req-0f8fad5b-d9cb-469f-a165-70867728950e",
        actor: PlainActor {
            subject: &p.subject,
            issuer: "https://id.example.com",
            kind: "user",
            token_id: "b1946ac9-2e5d-4f3e-9c1e-7c1f0a3c2d11",
            auth: "unspecified",
        },
        access: PlainAccess {
            operation: "read",
            resource_type: "customer",
            resource_id: format!("c-{i}"),
            fields: ["email", "phone", "address"],
            purpose: "support ticket 5512",
        },
    }
}

/// Discards records: the layer benchmarks measure the request path, not the disk.
pub(crate) struct NullSink;

impl Sink for NullSink {
    fn name(&self) -> &'static str {
        "null"
    }
    fn open(&mut self) -> Result<Option<ChainHead>, SinkError> {
        Ok(None)
    }
    fn write(&mut self, records: &[Record]) -> Result<(), SinkError> {
        black_box(records.len());
        Ok(())
    }
}

pub(crate) fn request() -> Request<Full<Bytes>> {
    Request::get("/v1/orders/7")
        .header("user-agent", "bench/1.0")
        .header("x-request-id", "req-0f8fad5b-d9cb-469f-a165-70867728950e")
        .header("authorization", "Bearer xyz")
        .body(Full::new(Bytes::new()))
        .unwrap()
}

pub(crate) async fn handler(_req: Request<Full<Bytes>>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(b"order 7"))))
}
