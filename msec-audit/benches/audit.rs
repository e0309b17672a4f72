//! Throughput of the audit writer (chain + queue + writer thread + file) beside bare serde_json + write of the
//! same events, and the latency the AuditLayer adds to a request.
//!
//! Run: `cargo bench -p msec-audit --bench audit -- --warm-up-time 1 --measurement-time 3`
#![allow(missing_docs, clippy::unwrap_used, clippy::print_stdout)]

use std::convert::Infallible;
use std::hint::black_box;
use std::io::Write as _;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use msec_audit::chain::ChainHead;
use msec_audit::{AuditLayer, AuditLog, CheckpointSigner, DataAccess, FileSink, FsyncPolicy, Record, Sink, SinkError};
use msec_core::Principal;
use serde::Serialize;
use tower::{Service, ServiceBuilder, ServiceExt};

const N: usize = 20_000;

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

/// The same content as `event`, as a plain serde struct: the baseline.
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

fn writer_throughput(c: &mut Criterion) {
    let mut g = c.benchmark_group("audit_write_events");
    g.throughput(Throughput::Elements(N as u64));
    g.sample_size(10);
    let p = principal();

    let dir = tempfile::tempdir().unwrap();
    g.bench_function("baseline serde_json + write (BufWriter<File>)", |b| {
        let f = std::fs::File::create(dir.path().join("plain.jsonl")).unwrap();
        let mut w = std::io::BufWriter::with_capacity(1 << 16, f);
        b.iter(|| {
            for i in 0..N {
                let e = Plain {
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
                };
                serde_json::to_writer(&mut w, &e).unwrap();
                w.write_all(b"\n").unwrap();
            }
            w.flush().unwrap();
        });
    });

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for (name, fsync) in [
        ("msec AuditLog chain + writer + file, fsync never", FsyncPolicy::Never),
        (
            "msec AuditLog chain + writer + file, fsync each batch",
            FsyncPolicy::EachBatch,
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::builder()
            .signer(CheckpointSigner::ephemeral().unwrap())
            .fsync(fsync)
            .capacity(65_536)
            .start(FileSink::new(dir.path()).unwrap())
            .unwrap();
        g.bench_function(name, |b| {
            b.iter(|| {
                rt.block_on(async {
                    for i in 0..N {
                        log.emit(event(i, &p)).await.unwrap();
                    }
                    log.flush().await.unwrap();
                });
            });
        });
        rt.block_on(log.shutdown()).unwrap();
    }
    g.finish();
}

/// Discards records: the layer benchmark measures the request path, not the disk.
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

fn layer_log() -> AuditLog {
    AuditLog::builder()
        .danger_unsigned_checkpoints()
        .fsync(FsyncPolicy::Never)
        .capacity(1 << 20)
        .start(NullSink)
        .unwrap()
}

fn layer_latency(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("audit_layer_request");
    let bare = tower::service_fn(handler);
    g.bench_function("baseline handler (call + collect body)", |b| {
        b.iter(|| {
            rt.block_on(async {
                let resp = bare.oneshot(request()).await.unwrap();
                black_box(resp.into_body().collect().await.unwrap());
            });
        });
    });
    let log = layer_log();
    let audited = ServiceBuilder::new()
        .layer(AuditLayer::new(log.clone()))
        .service_fn(handler);
    g.bench_function("msec AuditLayer + handler (event queued)", |b| {
        b.iter(|| {
            rt.block_on(async {
                let resp = audited.clone().oneshot(request()).await.unwrap();
                black_box(resp.into_body().collect().await.unwrap());
            });
        });
    });
    g.finish();
    rt.block_on(log.shutdown()).unwrap();
}

/// Per-request latency percentiles (criterion reports means and medians, not p99).
fn percentiles() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let log = layer_log();
    let mut bare = tower::service_fn(handler);
    let mut audited = ServiceBuilder::new()
        .layer(AuditLayer::new(log.clone()))
        .service_fn(handler);
    let rounds = 200_000;
    let mut tb = Vec::with_capacity(rounds);
    let mut ta = Vec::with_capacity(rounds);
    rt.block_on(async {
        for _ in 0..rounds {
            let t = Instant::now();
            let resp = bare.ready().await.unwrap().call(request()).await.unwrap();
            black_box(resp.into_body().collect().await.unwrap());
            tb.push(t.elapsed());
            let t = Instant::now();
            let resp = audited.ready().await.unwrap().call(request()).await.unwrap();
            black_box(resp.into_body().collect().await.unwrap());
            ta.push(t.elapsed());
        }
    });
    rt.block_on(log.shutdown()).unwrap();
    tb.sort();
    ta.sort();
    let pct = |v: &[Duration], p: f64| v[((v.len() as f64 - 1.0) * p) as usize];
    println!("\naudit_layer_request percentiles over {rounds} requests (interleaved):");
    for (name, p) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99)] {
        let (b, a) = (pct(&tb, p), pct(&ta, p));
        println!(
            "  {name}: baseline {:>7.0} ns, with AuditLayer {:>7.0} ns, added {:>7.0} ns",
            b.as_nanos() as f64,
            a.as_nanos() as f64,
            a.as_nanos() as f64 - b.as_nanos() as f64
        );
    }
}

criterion_group!(benches, writer_throughput, layer_latency);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    percentiles();
}
