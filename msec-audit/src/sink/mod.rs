//! Where records go: the [`Sink`] trait and the sinks msec ships.
//!
//! - [`FileSink`]: JSON lines with size and time rotation, and a `.checkpoint` anchor (the default for embedded
//!   use);
//! - [`StdoutSink`]: JSON lines on standard output, for the platform's log collector;
//! - [`TracingSink`]: one `tracing` event per record (target `msec_audit`);
//! - `PostgresSink` (feature `postgres`): batched inserts, sequence and hashes as columns;
//! - [`MemorySink`]: in memory, for tests and demos.

use std::fmt;
use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::chain::{ChainHead, Record};

pub mod file;
#[cfg(feature = "postgres")]
pub mod postgres;

pub use file::{FileSink, FileSinkBuilder};
#[cfg(feature = "postgres")]
pub use postgres::PostgresSink;

/// Why a sink failed. The writer retries the same batch until the sink accepts it.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct SinkError {
    message: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl SinkError {
    /// An error with a message.
    pub fn new(message: impl fmt::Display) -> Self {
        Self {
            message: message.to_string(),
            source: None,
        }
    }

    /// An error with a message and a cause.
    pub fn with_source(message: impl fmt::Display, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self {
            message: format!("{message}: {source}"),
            source: Some(Box::new(source)),
        }
    }
}

impl From<std::io::Error> for SinkError {
    fn from(e: std::io::Error) -> Self {
        Self::with_source("I/O error", e)
    }
}

/// A destination for records. Runs on the log's dedicated writer thread, so it may block.
///
/// Contract: [`write`](Self::write) is all-or-nothing as far as the writer can tell — when it returns an error
/// the writer calls it again with the same records (after a back-off), so the sink must not leave a partial copy
/// that the retry would duplicate (the file sink truncates back; the PostgreSQL sink inserts in one
/// transaction and ignores rows it already has).
pub trait Sink: Send + 'static {
    /// A short name for logs and metrics.
    fn name(&self) -> &'static str;

    /// Prepares the sink. Returns where an existing log stands so the chain continues from it (a head with
    /// `next_seq` 0 names the id of a new log), or `None` for a new log with an id of the writer's choosing.
    fn open(&mut self) -> Result<Option<ChainHead>, SinkError>;

    /// Writes records (in sequence order, after those already written).
    fn write(&mut self, records: &[Record]) -> Result<(), SinkError>;

    /// Makes everything written so far durable (fsync or commit).
    fn sync(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    /// True when the sink wants to start a new segment (file) before the next write.
    fn rotation_due(&mut self, now: SystemTime) -> bool {
        let _ = now;
        false
    }

    /// Starts a new segment: the next write goes to it. The writer then begins it with a checkpoint.
    fn rotate(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    /// Called after a batch containing `checkpoint` was written and synced, to keep it as an anchor.
    fn checkpointed(&mut self, checkpoint: &Record) -> Result<(), SinkError> {
        let _ = checkpoint;
        Ok(())
    }

    /// Called once when the log shuts down, after the last write.
    fn close(&mut self) -> Result<(), SinkError> {
        self.sync()
    }
}

impl<S: Sink + ?Sized> Sink for Box<S> {
    fn name(&self) -> &'static str {
        (**self).name()
    }
    fn open(&mut self) -> Result<Option<ChainHead>, SinkError> {
        (**self).open()
    }
    fn write(&mut self, records: &[Record]) -> Result<(), SinkError> {
        (**self).write(records)
    }
    fn sync(&mut self) -> Result<(), SinkError> {
        (**self).sync()
    }
    fn rotation_due(&mut self, now: SystemTime) -> bool {
        (**self).rotation_due(now)
    }
    fn rotate(&mut self) -> Result<(), SinkError> {
        (**self).rotate()
    }
    fn checkpointed(&mut self, checkpoint: &Record) -> Result<(), SinkError> {
        (**self).checkpointed(checkpoint)
    }
    fn close(&mut self) -> Result<(), SinkError> {
        (**self).close()
    }
}

/// Keeps records in memory. Clones share the contents.
#[derive(Debug, Clone, Default)]
pub struct MemorySink {
    inner: Arc<Mutex<MemInner>>,
}

#[derive(Debug, Default)]
struct MemInner {
    records: Vec<Record>,
    synced: usize,
}

impl MemorySink {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The records written so far.
    pub fn records(&self) -> Vec<Record> {
        self.lock().records.clone()
    }

    /// How many records were written.
    pub fn len(&self) -> usize {
        self.lock().records.len()
    }

    /// True when nothing was written.
    pub fn is_empty(&self) -> bool {
        self.lock().records.is_empty()
    }

    /// How many records were synced.
    pub fn synced(&self) -> usize {
        self.lock().synced
    }

    /// The records as JSON lines.
    pub fn contents(&self) -> Vec<u8> {
        let g = self.lock();
        let mut out = Vec::new();
        for r in &g.records {
            out.extend_from_slice(&r.line);
            out.push(b'\n');
        }
        out
    }

    /// The records parsed as JSON.
    pub fn values(&self) -> Vec<serde_json::Value> {
        self.lock()
            .records
            .iter()
            .filter_map(|r| serde_json::from_slice(&r.line).ok())
            .collect()
    }
}

impl Sink for MemorySink {
    fn name(&self) -> &'static str {
        "memory"
    }
    fn open(&mut self) -> Result<Option<ChainHead>, SinkError> {
        let g = self.lock();
        Ok(g.records.last().map(|r| ChainHead {
            log_id: log_id_of(&g.records).unwrap_or_else(|| "memory".into()),
            next_seq: r.seq + 1,
            prev: r.hash,
        }))
    }
    fn write(&mut self, records: &[Record]) -> Result<(), SinkError> {
        self.lock().records.extend_from_slice(records);
        Ok(())
    }
    fn sync(&mut self) -> Result<(), SinkError> {
        let mut g = self.lock();
        g.synced = g.records.len();
        Ok(())
    }
}

fn log_id_of(records: &[Record]) -> Option<Arc<str>> {
    records.iter().rev().find_map(|r| {
        (r.kind == crate::RecordKind::Checkpoint)
            .then(|| serde_json::from_slice::<serde_json::Value>(&r.line).ok())
            .flatten()
            .and_then(|v| v.get("log").and_then(|l| l.as_str()).map(Arc::from))
    })
}

/// Writes JSON lines to standard output, for a log collector. `sync` flushes stdout.
#[derive(Debug, Default)]
pub struct StdoutSink {
    buf: Vec<u8>,
}

impl StdoutSink {
    /// A stdout sink.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Sink for StdoutSink {
    fn name(&self) -> &'static str {
        "stdout"
    }
    fn open(&mut self) -> Result<Option<ChainHead>, SinkError> {
        Ok(None)
    }
    fn write(&mut self, records: &[Record]) -> Result<(), SinkError> {
        self.buf.clear();
        for r in records {
            self.buf.extend_from_slice(&r.line);
            self.buf.push(b'\n');
        }
        let mut out = std::io::stdout().lock();
        out.write_all(&self.buf)?;
        Ok(())
    }
    fn sync(&mut self) -> Result<(), SinkError> {
        std::io::stdout().lock().flush()?;
        Ok(())
    }
}

/// Emits every record as a `tracing` event (target `msec_audit`, level INFO, fields `seq`, `kind` and
/// `record` — the complete JSON line). Durability is the subscriber's business.
#[derive(Debug, Default)]
pub struct TracingSink;

impl TracingSink {
    /// A tracing sink.
    pub fn new() -> Self {
        Self
    }
}

impl Sink for TracingSink {
    fn name(&self) -> &'static str {
        "tracing"
    }
    fn open(&mut self) -> Result<Option<ChainHead>, SinkError> {
        Ok(None)
    }
    fn write(&mut self, records: &[Record]) -> Result<(), SinkError> {
        for r in records {
            tracing::info!(target: "msec_audit", seq = r.seq, kind = r.kind.as_str(), record = r.as_str());
        }
        Ok(())
    }
}
