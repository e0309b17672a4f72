//! JSON bombs are refused without large allocations, and without reading the body beyond the first excess.
//!
//! A dedicated test binary with one test, so that the counting global allocator (stats_alloc: the counting
//! is its own code, nothing `unsafe` here) sees only this test's thread. The bodies are endless streams of
//! one shared 64 KiB chunk (cloning `Bytes` does not allocate), so every byte counted is the guard's.
#![allow(clippy::unwrap_used, clippy::print_stdout, missing_docs)]

use std::alloc::System;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::FutureExt;
use http::{Request, Response};
use http_body::{Body, Frame};
use http_body_util::Full;
use msec_validate::guard::{JsonGuardLayer, JsonLimits, read_json};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use tower::{Layer, ServiceExt};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const CHUNK: usize = 64 * 1024;

/// An endless body: `head`, then `unit` repeated forever, in chunks of about 64 KiB.
struct Bomb {
    head: Option<Bytes>,
    rest: Bytes,
    pulled: Arc<AtomicUsize>,
}

impl Bomb {
    fn new(head: &str, unit: &str, pulled: &Arc<AtomicUsize>) -> Self {
        let rest = Bytes::from(unit.repeat(CHUNK / unit.len()));
        let _ = rest.clone(); // make the buffer shared now, so later clones are reference counts only
        Self {
            head: Some(Bytes::from(head.to_owned())),
            rest,
            pulled: pulled.clone(),
        }
    }
}

impl Body for Bomb {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let chunk = match self.head.take() {
            Some(h) => h,
            None => self.rest.clone(),
        };
        self.pulled.fetch_add(chunk.len(), Ordering::Relaxed);
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }
}

struct Case {
    name: &'static str,
    head: &'static str,
    unit: &'static str,
    limits: JsonLimits,
    code: &'static str,
    /// Bytes of the body up to and including the first excess.
    violation_at: usize,
}

fn cases() -> Vec<Case> {
    let d = JsonLimits::default();
    vec![
        Case {
            name: "deep nesting",
            head: "",
            unit: "[",
            limits: d,
            code: "json_too_deep",
            violation_at: 33,
        },
        Case {
            name: "huge array",
            head: "[",
            unit: "0,",
            limits: d,
            code: "json_array_too_long",
            violation_at: 1 + 2 * 10_000,
        },
        Case {
            name: "long string",
            head: "\"",
            unit: "a",
            limits: d,
            code: "json_string_too_long",
            violation_at: 1 + 65_537,
        },
        Case {
            name: "many keys",
            head: "{",
            unit: "\"k\":0,",
            limits: d,
            code: "json_too_many_keys",
            violation_at: 1 + 6 * 1_000 + 1,
        },
        Case {
            name: "many values",
            head: "[",
            unit: "0,",
            limits: d.max_array_len(usize::MAX),
            code: "json_too_many_nodes",
            violation_at: 1 + 2 * 100_000,
        },
        Case {
            name: "endless whitespace",
            head: "",
            unit: " ",
            limits: d,
            code: "payload_too_large",
            violation_at: 1024 * 1024 + 1,
        },
    ]
}

#[test]
fn bombs_are_refused_without_large_allocations() {
    // Everything the runtime-free polling below needs is created before counting starts.
    let pulled = Arc::new(AtomicUsize::new(0));
    let inner = tower::service_fn(|_req: Request<msec_validate::GuardedBody<Bomb>>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"reached the handler"))))
    });

    for case in cases() {
        // 1. The guard's reader alone.
        pulled.store(0, Ordering::Relaxed);
        let body = Bomb::new(case.head, case.unit, &pulled);
        let region = Region::new(GLOBAL);
        let res = read_json(body, &case.limits)
            .now_or_never()
            .expect("an endless ready body is refused at once");
        let reader_alloc = region.change().bytes_allocated;
        let rejection = res.unwrap_err();
        assert_eq!(rejection.code().as_str(), case.code, "{}", case.name);
        let read = pulled.load(Ordering::Relaxed);
        // Read no further than the chunk that holds the excess.
        assert!(read < case.violation_at + CHUNK, "{}: read {read} bytes", case.name);
        // The guard's own state is O(depth): no allocation grows with the document.
        assert!(
            reader_alloc < 16 * 1024,
            "{}: {reader_alloc} bytes allocated",
            case.name
        );

        // 2. The whole layer, answering with a problem document.
        pulled.store(0, Ordering::Relaxed);
        let svc = JsonGuardLayer::new(case.limits).layer(inner);
        let req = Request::post("/bomb")
            .header("content-type", "application/json")
            .body(Bomb::new(case.head, case.unit, &pulled))
            .unwrap();
        let region = Region::new(GLOBAL);
        let resp = svc.oneshot(req).now_or_never().unwrap().unwrap();
        let layer_alloc = region.change().bytes_allocated;
        let rejection = resp.extensions().get::<msec_core::Rejection>().unwrap();
        assert_eq!(rejection.code().as_str(), case.code, "{}", case.name);
        assert!(pulled.load(Ordering::Relaxed) < case.violation_at + CHUNK);
        assert!(
            layer_alloc < 32 * 1024,
            "{}: layer allocated {layer_alloc} bytes",
            case.name
        );
        println!(
            "{:20} refused with {:22} after reading {read:>8} bytes; allocated: reader {reader_alloc:>5} B, layer {layer_alloc:>5} B",
            case.name, case.code
        );
    }

    // For scale: what a tree-building parser allocates for the first 200 KB of the "huge array" bomb.
    let doc = format!("[{}0]", "0,".repeat(100_000));
    let region = Region::new(GLOBAL);
    let v: serde_json::Value = serde_json::from_slice(doc.as_bytes()).unwrap();
    let tree = region.change().bytes_allocated;
    drop(v);
    println!("for scale: serde_json::Value of a 200 KB array allocates {tree} bytes");
    assert!(tree > 1024 * 1024, "serde_json::Value allocated {tree} bytes");
}
