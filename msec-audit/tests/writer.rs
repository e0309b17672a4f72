//! The writer: overflow policies, flush durability, shutdown drain, sink retries, and a SIGKILL mid-load.
#![allow(clippy::unwrap_used, clippy::print_stdout, missing_docs)]

mod common;

use std::io::BufRead as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::GateSink;
use msec_audit::chain::ChainHead;
use msec_audit::sink::file::log_files;
use msec_audit::{
    AuditLog, DataAccess, EmitError, FileSink, FsyncPolicy, MemorySink, Overflow, Record, Sink, SinkError, Verifier,
};

async fn wait_until(mut f: impl FnMut() -> bool) {
    // Polls a condition that another thread makes true; the deadline only guards against a hang.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(std::time::Instant::now() < deadline, "condition not reached");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn flush_returns_after_the_records_are_synced() {
    let sink = MemorySink::new();
    let (signer, public) = common::key_pair();
    let log = AuditLog::builder()
        .signer(signer)
        .fsync(FsyncPolicy::EachBatch)
        .start(sink.clone())
        .unwrap();
    for i in 0..500 {
        log.emit(DataAccess::read("t", i.to_string())).await.unwrap();
    }
    log.flush().await.unwrap();
    let events = common::of_kind(&sink.values(), "data_access").len();
    assert_eq!(events, 500);
    assert_eq!(sink.synced(), sink.len(), "everything before the flush is synced");
    log.shutdown().await.unwrap();
    let report = Verifier::new([public]).verify_bytes(&sink.contents()).unwrap();
    assert_eq!(report.unsigned_tail, 0);
    assert!(matches!(
        log.emit(DataAccess::read("t", "late")).await,
        Err(EmitError::Closed)
    ));
}

#[tokio::test]
async fn interval_fsync_still_makes_flush_durable() {
    let sink = MemorySink::new();
    let (signer, _) = common::key_pair();
    let log = AuditLog::builder()
        .signer(signer)
        .fsync(FsyncPolicy::Interval(Duration::from_secs(3600)))
        .start(sink.clone())
        .unwrap();
    log.emit(DataAccess::read("t", "1")).await.unwrap();
    log.flush().await.unwrap();
    assert_eq!(sink.synced(), sink.len());
    log.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_waits_and_loses_nothing() {
    let gate = GateSink::new();
    let (signer, public) = common::key_pair();
    let log = AuditLog::builder()
        .signer(signer)
        .capacity(4)
        .overflow(Overflow::Block)
        .start(gate.clone())
        .unwrap();
    log.flush().await.unwrap();
    gate.set_open(false);
    let done = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..50 {
        let log = log.clone();
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            log.emit(DataAccess::read("t", i.to_string())).await.unwrap();
            done.fetch_add(1, Ordering::SeqCst);
        }));
    }
    wait_until(|| log.stats().queued == 4).await;
    assert_eq!(
        done.load(Ordering::SeqCst),
        4,
        "only the queue's capacity got in; the rest wait"
    );
    assert!(matches!(log.try_emit(DataAccess::read("t", "x")), Err(EmitError::Full)));
    gate.set_open(true);
    for t in tasks {
        t.await.unwrap();
    }
    log.shutdown().await.unwrap();
    let values = gate.mem.values();
    assert_eq!(common::of_kind(&values, "data_access").len(), 50);
    assert!(common::of_kind(&values, "gap").is_empty());
    assert_eq!(log.stats().dropped, 0);
    Verifier::new([public]).verify_bytes(&gate.mem.contents()).unwrap();
}

#[tokio::test]
async fn drop_and_count_records_the_exact_number_dropped() {
    let gate = GateSink::new();
    let (signer, public) = common::key_pair();
    let log = AuditLog::builder()
        .signer(signer)
        .capacity(8)
        .overflow(Overflow::DropAndCount)
        .start(gate.clone())
        .unwrap();
    log.flush().await.unwrap();
    let mut accepted = 0u64;
    let mut dropped = 0u64;
    for round in 0..3 {
        gate.set_open(false);
        for i in 0..200 {
            match log.try_emit(DataAccess::read("t", format!("{round}-{i}"))) {
                Ok(()) => accepted += 1,
                Err(EmitError::Dropped) => dropped += 1,
                Err(e) => panic!("{e}"),
            }
        }
        gate.set_open(true);
        log.flush().await.unwrap();
    }
    log.shutdown().await.unwrap();
    assert!(dropped > 500, "dropped {dropped}");
    assert_eq!(log.stats().dropped, dropped);
    let values = gate.mem.values();
    let gaps: u64 = common::of_kind(&values, "gap")
        .iter()
        .map(|g| g["dropped"].as_u64().unwrap())
        .sum();
    assert_eq!(gaps, dropped, "the gap records carry exactly the dropped count");
    assert_eq!(common::of_kind(&values, "data_access").len() as u64, accepted);
    let report = Verifier::new([public]).verify_bytes(&gate.mem.contents()).unwrap();
    assert_eq!(report.dropped, dropped);
}

#[tokio::test]
async fn fail_closed_refuses_and_says_so() {
    let gate = GateSink::new();
    let (signer, _) = common::key_pair();
    let log = AuditLog::builder()
        .signer(signer)
        .capacity(2)
        .overflow(Overflow::FailClosed)
        .start(gate.clone())
        .unwrap();
    log.flush().await.unwrap();
    gate.set_open(false);
    let results: Vec<_> = (0..10)
        .map(|i| log.try_emit(DataAccess::read("t", i.to_string())))
        .collect();
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 2);
    assert!(results.iter().skip(2).all(|r| *r == Err(EmitError::Full)));
    assert_eq!(log.emit(DataAccess::read("t", "async")).await, Err(EmitError::Full));
    gate.set_open(true);
    log.flush().await.unwrap();
    assert!(log.emit(DataAccess::read("t", "after")).await.is_ok());
    log.shutdown().await.unwrap();
    let values = gate.mem.values();
    let refused: u64 = common::of_kind(&values, "gap")
        .iter()
        .map(|g| g["refused"].as_u64().unwrap())
        .sum();
    assert_eq!(refused, 9);
    assert_eq!(log.stats().refused, 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_everything_without_a_timeout() {
    let gate = GateSink::new();
    let (signer, public) = common::key_pair();
    let log = AuditLog::builder()
        .signer(signer)
        .capacity(100_000)
        .start(gate.clone())
        .unwrap();
    log.flush().await.unwrap();
    gate.set_open(false);
    for i in 0..20_000 {
        log.emit(DataAccess::read("t", i.to_string())).await.unwrap();
    }
    let shutdown = tokio::spawn({
        let log = log.clone();
        async move { log.shutdown().await }
    });
    // The sink is stuck; shutdown waits for it however long it takes.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!shutdown.is_finished());
    gate.set_open(true);
    shutdown.await.unwrap().unwrap();
    let values = gate.mem.values();
    assert_eq!(common::of_kind(&values, "data_access").len(), 20_000);
    assert_eq!(values.last().unwrap()["reason"], "close");
    Verifier::new([public]).verify_bytes(&gate.mem.contents()).unwrap();
}

/// Fails its first `n` writes (after writing half of the batch, like a full disk would).
struct FlakySink {
    mem: MemorySink,
    failures: Arc<AtomicUsize>,
}

impl Sink for FlakySink {
    fn name(&self) -> &'static str {
        "flaky"
    }
    fn open(&mut self) -> Result<Option<ChainHead>, SinkError> {
        Ok(None)
    }
    fn write(&mut self, records: &[Record]) -> Result<(), SinkError> {
        if self.failures.load(Ordering::SeqCst) > 0 {
            self.failures.fetch_sub(1, Ordering::SeqCst);
            return Err(SinkError::new("disk full"));
        }
        self.mem.write(records)
    }
}

#[tokio::test]
async fn a_failing_sink_is_retried_until_it_accepts() {
    let mem = MemorySink::new();
    let failures = Arc::new(AtomicUsize::new(0));
    let (signer, public) = common::key_pair();
    let log = AuditLog::builder()
        .signer(signer)
        .retry_backoff(Duration::from_millis(1), Duration::from_millis(4))
        .start(FlakySink {
            mem: mem.clone(),
            failures: failures.clone(),
        })
        .unwrap();
    log.flush().await.unwrap();
    failures.store(5, Ordering::SeqCst);
    for i in 0..100 {
        log.emit(DataAccess::read("t", i.to_string())).await.unwrap();
    }
    log.shutdown().await.unwrap();
    assert_eq!(log.stats().sink_errors, 5);
    assert_eq!(common::of_kind(&mem.values(), "data_access").len(), 100);
    Verifier::new([public]).verify_bytes(&mem.contents()).unwrap();
}

const CHILD_ENV: &str = "MSEC_AUDIT_SIGKILL_CHILD_DIR";

/// The child half of `sigkill_mid_load_loses_nothing_flushed`: writes under load until killed, reporting on
/// stdout how many of its sequentially numbered events a returned `flush()` covered.
#[test]
fn sigkill_child_writer() {
    let Ok(dir) = std::env::var(CHILD_ENV) else { return };
    let pem = std::fs::read_to_string(format!("{dir}/key.pem")).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let log = AuditLog::builder()
            .signer(msec_audit::CheckpointSigner::from_pkcs8_pem(&pem).unwrap())
            .fsync(FsyncPolicy::EachBatch)
            .checkpoint_every(500, Duration::from_secs(1))
            .start(FileSink::builder(&dir).max_bytes(256 * 1024).build().unwrap())
            .unwrap();
        // Background load that is never flushed.
        for _ in 0..2 {
            let log = log.clone();
            tokio::spawn(async move {
                loop {
                    log.emit(DataAccess::read("noise", "n")).await.unwrap();
                    tokio::task::yield_now().await;
                }
            });
        }
        let mut n = 0u64;
        loop {
            for _ in 0..50 {
                log.emit(DataAccess::read("seq", n.to_string())).await.unwrap();
                n += 1;
            }
            log.flush().await.unwrap();
            println!("durable {n}");
            std::io::Write::flush(&mut std::io::stdout()).unwrap();
        }
    });
}

#[test]
fn sigkill_mid_load_loses_nothing_flushed() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pem = msec_audit::CheckpointSigner::generate_pkcs8_pem().unwrap();
    std::fs::write(dir.path().join("key.pem"), pem.expose_secret()).unwrap();
    let public = msec_audit::CheckpointSigner::from_pkcs8_pem(pem.expose_secret())
        .unwrap()
        .public_key();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["sigkill_child_writer", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut durable = 0u64;
    let mut reports = 0;
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(n) = line.strip_prefix("durable ") {
            durable = n.parse().unwrap();
            reports += 1;
            if reports == 40 {
                break;
            }
        }
    }
    // SIGKILL, mid-load: no destructor, no flush, no shutdown.
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(durable >= 2000);

    let files = log_files(dir.path(), "audit").unwrap();
    assert!(!files.is_empty());
    let report = Verifier::new([public.clone()]).verify_files(&files).unwrap();
    let mut seen = std::collections::HashSet::new();
    for f in &files {
        let data = std::fs::read(f).unwrap();
        for line in data.split(|&b| b == b'\n') {
            let Ok(v) = serde_json::from_slice::<serde_json::Value>(line) else {
                continue;
            };
            if v["access"]["resource_type"] == "seq" {
                seen.insert(v["access"]["resource_id"].as_str().unwrap().parse::<u64>().unwrap());
            }
        }
    }
    let missing: Vec<u64> = (0..durable).filter(|n| !seen.contains(n)).collect();
    assert!(
        missing.is_empty(),
        "{} flushed events missing, first {:?}",
        missing.len(),
        missing.first()
    );
    println!("killed after {durable} flushed events; {report}");

    // The log continues after the crash: a new process picks up the chain (in a new file).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let log = AuditLog::builder()
            .signer(msec_audit::CheckpointSigner::from_pkcs8_pem(pem.expose_secret()).unwrap())
            .start(FileSink::new(dir.path()).unwrap())
            .unwrap();
        log.emit(DataAccess::read("after", "restart")).await.unwrap();
        log.shutdown().await.unwrap();
    });
    let files = log_files(dir.path(), "audit").unwrap();
    let after = Verifier::new([public]).verify_files(&files).unwrap();
    assert!(after.last_seq > report.last_seq);
}

#[tokio::test]
async fn health_follows_the_writer_and_the_sink() {
    let mem = MemorySink::new();
    let failures = Arc::new(AtomicUsize::new(0));
    let (signer, public) = common::key_pair();
    let log = AuditLog::builder()
        .signer(signer)
        .retry_backoff(Duration::from_millis(20), Duration::from_millis(20))
        .start(FlakySink {
            mem: mem.clone(),
            failures: failures.clone(),
        })
        .unwrap();
    assert!(log.is_healthy(), "a started log is healthy");
    log.flush().await.unwrap();
    // The sink fails for a while: unhealthy while the writer retries, healthy again once it accepts.
    failures.store(usize::MAX, Ordering::SeqCst);
    log.emit(DataAccess::read("t", "1")).await.unwrap();
    wait_until(|| !log.is_healthy()).await;
    failures.store(0, Ordering::SeqCst);
    log.flush().await.unwrap();
    assert!(log.is_healthy(), "healthy again after the sink recovered");
    log.shutdown().await.unwrap();
    assert!(!log.is_healthy(), "a shut-down log is not healthy");
    assert_eq!(common::of_kind(&mem.values(), "data_access").len(), 1);
    Verifier::new([public]).verify_bytes(&mem.contents()).unwrap();
}

/// Records the names of the metrics registered through it.
#[derive(Default, Clone)]
struct Registered(Arc<std::sync::Mutex<Vec<String>>>);

impl Registered {
    fn push(&self, key: &metrics::Key) {
        self.0.lock().unwrap().push(key.name().to_owned());
    }
}

impl metrics::Recorder for Registered {
    fn describe_counter(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn describe_gauge(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn describe_histogram(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        self.push(key);
        metrics::Counter::noop()
    }
    fn register_gauge(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        self.push(key);
        metrics::Gauge::noop()
    }
    fn register_histogram(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Histogram {
        self.push(key);
        metrics::Histogram::noop()
    }
}

#[test]
fn loss_and_failure_series_exist_from_the_start() {
    let seen = Registered::default();
    let (signer, _) = common::key_pair();
    let log = metrics::with_local_recorder(&seen, || {
        AuditLog::builder().signer(signer).start(MemorySink::new()).unwrap()
    });
    let names = seen.0.lock().unwrap().clone();
    for name in [
        "msec_audit_dropped_total",
        "msec_audit_refused_total",
        "msec_audit_sink_errors_total",
        "msec_audit_queue_depth",
    ] {
        assert!(names.iter().any(|n| n == name), "{name} registered at start: {names:?}");
    }
    drop(log);
}
