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

use std::hint::black_box;
use std::io::Write as _;

use bytes::Bytes;
use futures_util::FutureExt;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use msec_audit::{AuditLayer, AuditLog, CheckpointSigner, FileSink, FsyncPolicy};
use tower::{Layer, Service, ServiceExt};

mod support;

use support::{NullSink, event, handler, plain, principal, request};

const WARMUP: usize = 2000;

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
