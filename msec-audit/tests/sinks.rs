//! The stdout and tracing sinks carry complete, verifiable records.
#![allow(clippy::unwrap_used, clippy::print_stdout, missing_docs)]

mod common;

use std::sync::{Arc, Mutex};

use msec_audit::{AuditLog, DataAccess, StdoutSink, TracingSink, Verifier};

/// Collects the `record` field of `msec_audit` events.
struct Collect(Arc<Mutex<Vec<String>>>);

struct RecordField(Option<String>);

impl tracing::field::Visit for RecordField {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "record" {
            self.0 = Some(value.to_owned());
        }
    }
    fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
}

impl tracing::Subscriber for Collect {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        if event.metadata().target() == "msec_audit" {
            let mut v = RecordField(None);
            event.record(&mut v);
            if let Some(r) = v.0 {
                self.0.lock().unwrap().push(r);
            }
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[tokio::test]
async fn tracing_sink_emits_verifiable_records() {
    let lines: Arc<Mutex<Vec<String>>> = Arc::default();
    // The writer thread logs through the global subscriber.
    tracing::subscriber::set_global_default(Collect(lines.clone())).unwrap();
    let (signer, public) = common::key_pair();
    let log = AuditLog::builder().signer(signer).start(TracingSink::new()).unwrap();
    for i in 0..5 {
        log.emit(DataAccess::read("t", i.to_string())).await.unwrap();
    }
    log.shutdown().await.unwrap();
    let lines = lines.lock().unwrap().clone();
    assert_eq!(lines.len(), 7);
    Verifier::new([public])
        .verify_lines(lines.iter().map(|l| l.as_bytes()))
        .unwrap();
}

const CHILD: &str = "MSEC_AUDIT_STDOUT_CHILD";

#[test]
fn stdout_child() {
    let Ok(key) = std::env::var(CHILD) else { return };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let log = AuditLog::builder()
            .signer(msec_audit::CheckpointSigner::from_pkcs8_pem(&key).unwrap())
            .start(StdoutSink::new())
            .unwrap();
        for i in 0..5 {
            log.emit(DataAccess::read("t", i.to_string())).await.unwrap();
        }
        log.shutdown().await.unwrap();
    });
}

#[test]
fn stdout_sink_writes_json_lines() {
    if std::env::var(CHILD).is_ok() {
        return;
    }
    let pem = msec_audit::CheckpointSigner::generate_pkcs8_pem().unwrap();
    let public = msec_audit::CheckpointSigner::from_pkcs8_pem(pem.expose_secret())
        .unwrap()
        .public_key();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["stdout_child", "--exact", "--nocapture", "--test-threads=1", "-q"])
        .env(CHILD, pem.expose_secret())
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let records: Vec<&str> = text.lines().filter(|l| l.starts_with("{\"v\":1")).collect();
    assert_eq!(records.len(), 7, "{text}");
    Verifier::new([public])
        .verify_lines(records.iter().map(|l| l.as_bytes()))
        .unwrap();
}
