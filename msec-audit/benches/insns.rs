//! A fixed-work driver for instruction counting with `valgrind --tool=callgrind` (wall-clock timing on the
//! shared, loaded machine is noisy; instruction counts are not).
//!
//! `insns <scenario> <n>` runs `n` operations of one scenario after a warm-up; `benches/callgrind.sh` runs it
//! under callgrind and prints instructions per operation:
//!
//! ```text
//! cargo bench -p msec-audit --bench insns --no-run
//! msec-audit/benches/callgrind.sh <path to the insns binary> baseline emit_file layer bare
//! ```
//!
//! Scenarios:
//! - `baseline`: the criterion baseline — a plain serde struct with the same content as the data-access event
//!   (id and timestamp generated the same way), `serde_json::to_writer` into a 64 KiB `BufWriter<File>`.
//! - `build`: only building the `DataAccess` value the emit scenarios send (the application's part).
//! - `emit_file`: `AuditLog::emit` of the same events, chain + writer thread + `FileSink` (fsync never), then
//!   `flush` — every thread of the process counted (the script subtracts a run with fewer events).
//! - `emit_null`: the same into a sink that discards records.
//! - `bare` / `layer`: one request through a bare handler / through `AuditLayer` (metadata level, default header
//!   allowlist, event queued to a discarding sink), body collected: only the request's thread is counted
//!   (the writer thread's work is the `emit_*` scenarios' subject).
#![allow(missing_docs, clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

use std::convert::Infallible;
use std::hint::black_box;
use std::io::Write as _;

use bytes::Bytes;
use futures_util::FutureExt;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use msec_audit::chain::ChainHead;
use msec_audit::{AuditLayer, AuditLog, CheckpointSigner, DataAccess, FileSink, FsyncPolicy, Record, Sink, SinkError};
use msec_core::Principal;
use serde::Serialize;
use tower::{Layer, Service, ServiceExt};

const WARMUP: usize = 2000;

fn principal() -> Principal {
    Principal::builder("user-4711@example.com")
        .issuer("https://id.example.com")
        .token_id("b1946ac9-2e5d-4f3e-9c1e-7c1f0a3c2d11")
        .build()
}

fn event(i: usize, p: &Principal) -> DataAccess {
    DataAccess::read("customer", format!("c-{i}"))
        .actor_principal(p)
        .fields(["email", "phone", "address"])
        .purpose("support ticket 5512")
        .request_id("req-0f8fad5b-d9cb-469f-a165-70867728950e")
}

#[derive(Serialize)]
struct Plain<'a> {
    kind: &'static str,
    id: String,
    time: String,
    request_id: &'a str,
    actor: PlainActor<'a>,
    access: PlainAccess,
}
#[derive(Serialize)]
struct PlainActor<'a> {
    subject: &'a str,
    issuer: &'a str,
    kind: &'static str,
    token_id: &'a str,
    auth: &'static str,
}
#[derive(Serialize)]
struct PlainAccess {
    operation: &'static str,
    resource_type: &'static str,
    resource_id: String,
    fields: [&'static str; 3],
    purpose: &'static str,
}

fn plain(i: usize, p: &Principal) -> Plain<'_> {
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

/// Discards records.
struct NullSink;

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

fn request() -> Request<Full<Bytes>> {
    Request::get("/v1/orders/7")
        .header("user-agent", "bench/1.0")
        .header("x-request-id", "req-0f8fad5b-d9cb-469f-a165-70867728950e")
        .header("authorization", "Bearer xyz")
        .body(Full::new(Bytes::new()))
        .unwrap()
}

async fn handler(_req: Request<Full<Bytes>>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(b"order 7"))))
}

/// One request through `svc`, body collected; everything completes without suspending.
fn one<S, B>(svc: &mut S)
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let resp = svc
        .ready()
        .now_or_never()
        .unwrap()
        .unwrap()
        .call(request())
        .now_or_never()
        .unwrap()
        .unwrap();
    black_box(resp.into_body().collect().now_or_never().unwrap().unwrap());
}

/// The counted region for the single-threaded scenarios (`callgrind.sh` toggles collection on it).
#[inline(never)]
fn measured(n: usize, op: &mut dyn FnMut(usize)) {
    for i in 0..n {
        op(WARMUP + i);
    }
}

fn run(n: usize, mut op: impl FnMut(usize)) {
    for i in 0..WARMUP {
        op(i);
    }
    measured(n, &mut op);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let (Some(scenario), Some(n)) = (args.first(), args.get(1).and_then(|n| n.parse::<usize>().ok())) else {
        eprintln!("usage: insns <scenario> <n>  (see the source for scenarios); nothing to do");
        return;
    };
    let p = principal();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    match scenario.as_str() {
        "baseline" => {
            let dir = tempfile::tempdir().unwrap();
            let f = std::fs::File::create(dir.path().join("plain.jsonl")).unwrap();
            let mut w = std::io::BufWriter::with_capacity(1 << 16, f);
            run(n, |i| {
                serde_json::to_writer(&mut w, &plain(i, &p)).unwrap();
                w.write_all(b"\n").unwrap();
            });
            w.flush().unwrap();
        }
        "build" => run(n, |i| {
            let _ = black_box(event(i, &p));
        }),
        "emit_file" | "emit_null" => {
            let dir = tempfile::tempdir().unwrap();
            let b = AuditLog::builder()
                .signer(CheckpointSigner::ephemeral().unwrap())
                .fsync(FsyncPolicy::Never)
                .capacity(65_536);
            let log = if scenario == "emit_file" {
                b.start(FileSink::new(dir.path()).unwrap()).unwrap()
            } else {
                b.start(NullSink).unwrap()
            };
            rt.block_on(async {
                for i in 0..WARMUP + n {
                    log.emit(event(i, &p)).await.unwrap();
                }
                log.flush().await.unwrap();
            });
            rt.block_on(log.shutdown()).unwrap();
        }
        "bare" => {
            let mut svc = tower::service_fn(handler);
            run(n, |_| one(&mut svc));
        }
        "layer" => {
            let log = AuditLog::builder()
                .danger_unsigned_checkpoints()
                .fsync(FsyncPolicy::Never)
                .capacity(1 << 20)
                .start(NullSink)
                .unwrap();
            let mut svc = AuditLayer::new(log.clone()).layer(tower::service_fn(handler));
            run(n, |_| one(&mut svc));
            rt.block_on(log.shutdown()).unwrap();
        }
        other => eprintln!("unknown scenario `{other}`"),
    }
}
