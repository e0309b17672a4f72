#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::sync::{Arc, Condvar, Mutex};

use msec_audit::chain::ChainHead;
use msec_audit::{MemorySink, PublicKey, Record, Sink, SinkError};
use serde_json::Value;

/// The JSON Schema validator for records.
pub fn schema() -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(msec_audit::RECORD_SCHEMA).unwrap();
    jsonschema::validator_for(&schema).unwrap()
}

/// Asserts every line is a schema-valid record.
pub fn assert_schema_valid(lines: &[u8]) {
    let v = schema();
    for line in lines.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let value: Value = serde_json::from_slice(line).unwrap();
        let errors: Vec<String> = v
            .iter_errors(&value)
            .map(|e| format!("{e} at {}", e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "record does not match the schema: {errors:?}\n{}",
            String::from_utf8_lossy(line)
        );
    }
}

/// A sink that can be closed like a gate: writes block while it is closed. Records go to a MemorySink.
#[derive(Clone, Default)]
pub struct GateSink {
    pub mem: MemorySink,
    gate: Arc<(Mutex<bool>, Condvar)>,
}

impl GateSink {
    pub fn new() -> Self {
        let s = Self::default();
        s.set_open(true);
        s
    }
    pub fn set_open(&self, open: bool) {
        let (m, c) = &*self.gate;
        *m.lock().unwrap() = open;
        c.notify_all();
    }
}

impl Sink for GateSink {
    fn name(&self) -> &'static str {
        "gate"
    }
    fn open(&mut self) -> Result<Option<ChainHead>, SinkError> {
        self.mem.open()
    }
    fn write(&mut self, records: &[Record]) -> Result<(), SinkError> {
        let (m, c) = &*self.gate;
        let mut open = m.lock().unwrap();
        while !*open {
            open = c.wait(open).unwrap();
        }
        drop(open);
        self.mem.write(records)
    }
    fn sync(&mut self) -> Result<(), SinkError> {
        self.mem.sync()
    }
}

/// Parsed records of a kind.
pub fn of_kind(values: &[Value], kind: &str) -> Vec<Value> {
    values.iter().filter(|v| v["kind"] == kind).cloned().collect()
}

pub fn key_pair() -> (msec_audit::CheckpointSigner, PublicKey) {
    let s = msec_audit::CheckpointSigner::ephemeral().unwrap();
    let p = s.public_key();
    (s, p)
}
