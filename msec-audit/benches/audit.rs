//! Throughput of the audit writer (chain + queue + writer thread + file) beside bare serde_json + write of the
//! same events, and the latency the AuditLayer adds to a request.
//!
//! Run: `cargo bench -p msec-audit --bench audit -- --warm-up-time 1 --measurement-time 3`
#![allow(missing_docs, clippy::unwrap_used, clippy::print_stdout)]

use std::hint::black_box;
use std::io::Write as _;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group};
use http_body_util::BodyExt;
use msec_audit::{AuditLayer, AuditLog, CheckpointSigner, FileSink, FsyncPolicy};
use tower::{Service, ServiceBuilder, ServiceExt};

mod support;

use support::{NullSink, event, handler, plain, principal, request};

const N: usize = 20_000;

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
                let e = plain(i, &p);
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
