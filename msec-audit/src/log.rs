//! [`AuditLog`]: the bounded queue, the dedicated writer thread, batching, fsync, overflow policies, flush
//! and shutdown.
//!
//! ```text
//!  request tasks ──serialise──► bounded queue (capacity permits) ──► writer thread
//!                                                                    ├─ frame: seq, prev, SHA-256
//!                                                                    ├─ detectors → alert records, hooks
//!                                                                    ├─ gap record for dropped events
//!                                                                    ├─ checkpoints (Ed25519) every N / T
//!                                                                    └─ sink.write(batch) → fsync policy
//! ```
//!
//! Events are serialised by the task that emits them (in parallel); the writer only frames, hashes and writes,
//! in batches. The queue is bounded by a semaphore of `capacity` permits: an event holds one from the moment
//! it is admitted until its batch has been handed to the sink. When none is free, the [`Overflow`] policy
//! decides: wait ([`Overflow::Block`]), drop the event and count it in a `gap` record
//! ([`Overflow::DropAndCount`]), or refuse the work ([`Overflow::FailClosed`]: the audit layer answers 503).
//!
//! If the sink fails, the writer retries the same batch with exponential back-off, forever: records are never
//! discarded. Meanwhile the queue fills and the overflow policy applies. [`AuditLog::flush`] returns when what
//! was queued before it is durable per the [`FsyncPolicy`]; [`AuditLog::shutdown`] drains everything, seals the
//! log with a final checkpoint and has no timeout (wrap it in one if you must).

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use msec_core::clock::{Clock, SharedClock, SystemClock};
use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use crate::chain::{Chain, ChainHead, CheckpointSigner, GENESIS_PREV, Record, RecordKind, valid_log_id};
use crate::detect::{Alert, AlertHook, Detectors};
use crate::event::{IntoEvent, Pending};
use crate::redact::Redactor;
use crate::sink::{Sink, SinkError};
use crate::util::{EventId, Timestamp};

/// What happens when the queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Overflow {
    /// Wait for room (backpressure): nothing is lost, requests slow down with the log. The default.
    Block,
    /// Drop the event and count it: the next record is a `gap` carrying the exact number dropped, so the loss
    /// is visible in the chain and verifiable.
    DropAndCount,
    /// Refuse: `emit` fails with [`EmitError::Full`] and the audit layer answers 503 without running the
    /// request, while the log cannot keep up.
    FailClosed,
}

/// When written records are fsynced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FsyncPolicy {
    /// Never: records reach the OS (they survive a process crash, not a power loss). `flush` returns once
    /// written.
    Never,
    /// After every batch. `flush` returns once fsynced. The default.
    EachBatch,
    /// At most this often while records arrive; `flush` forces one.
    Interval(Duration),
}

/// Why the log could not start, or failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// No checkpoint signer was configured (see [`AuditLogBuilder::signer`]).
    #[error("no checkpoint signer: configure one, or call danger_unsigned_checkpoints()")]
    NoSigner,
    /// The log id is invalid.
    #[error("invalid log id (1-128 characters of A-Z a-z 0-9 . _ : -)")]
    InvalidLogId,
    /// The configured log id differs from the one of the log the sink already holds.
    #[error("the sink holds log `{found}`, not `{configured}`")]
    LogIdMismatch {
        /// The configured id.
        configured: String,
        /// The id in the sink.
        found: String,
    },
    /// The sink could not be opened.
    #[error("cannot open the {sink} sink: {source}")]
    Open {
        /// The sink.
        sink: &'static str,
        /// Why.
        #[source]
        source: SinkError,
    },
    /// The writer thread could not be started.
    #[error("cannot start the writer thread: {0}")]
    Thread(#[source] std::io::Error),
    /// The log was shut down.
    #[error("the audit log is shut down")]
    Closed,
}

/// Why an event was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EmitError {
    /// The queue is full (policy [`Overflow::FailClosed`], or `try_emit` under [`Overflow::Block`]).
    #[error("the audit queue is full")]
    Full,
    /// The queue was full and the event was dropped and counted (policy [`Overflow::DropAndCount`]).
    #[error("the audit queue is full: the event was dropped and counted")]
    Dropped,
    /// The log is shut down.
    #[error("the audit log is shut down")]
    Closed,
}

/// Counters of a running log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Stats {
    /// Records handed to the sink (including checkpoints, gaps and alerts).
    pub written: u64,
    /// Events dropped by [`Overflow::DropAndCount`].
    pub dropped: u64,
    /// Requests or events refused by [`Overflow::FailClosed`].
    pub refused: u64,
    /// Events queued and not yet written.
    pub queued: u64,
    /// Sink failures (each retried).
    pub sink_errors: u64,
    /// Alerts raised by the detectors.
    pub alerts: u64,
    /// The next sequence number.
    pub next_seq: u64,
}

/// While records keep arriving, the writer sleeps this long between batches instead of parking on the queue: a
/// writer blocked on the queue costs every producer a futex wake-up (and the machine an inter-processor
/// interrupt), a sleeping one costs nothing per record. The delay bounds how long a record or a `flush` waits.
const POLL_WHILE_BUSY: Duration = Duration::from_micros(POLL_MICROS);
const POLL_MICROS: u64 = 1000;
/// Empty `try_recv` rounds tolerated while gathering a batch.
const LINGER: usize = 4;
/// Record buffers kept for reuse, and the largest capacity kept: at most 4 MiB held. A buffer travels from the
/// request that serialises an event into it, through the writer that frames it in place, back to the pool, so
/// steady traffic allocates none and no thread frees memory another thread allocated.
const POOL_BUFFERS: usize = 256;
const POOL_BUFFER_MAX: usize = 16 * 1024;

type CheckpointHook = Arc<dyn Fn(&Record) + Send + Sync>;

enum Msg {
    Event(Pending),
    Flush(oneshot::Sender<()>),
    Shutdown(oneshot::Sender<()>),
}

pub(crate) struct Shared {
    sem: Arc<Semaphore>,
    buffers: Mutex<Vec<Vec<u8>>>,
    capacity: usize,
    pub(crate) overflow: Overflow,
    pub(crate) clock: SharedClock,
    pub(crate) redactor: Redactor,
    pub(crate) detecting: bool,
    closed: AtomicBool,
    /// The writer thread is running (cleared when it ends, panics included).
    writer_running: AtomicBool,
    /// The sink's last write, sync or checkpoint hook call failed (the writer is retrying).
    sink_failing: AtomicBool,
    dropped_pending: AtomicU64,
    refused_pending: AtomicU64,
    dropped_total: AtomicU64,
    refused_total: AtomicU64,
    written: AtomicU64,
    sink_errors: AtomicU64,
    alerts: AtomicU64,
    next_seq: AtomicU64,
}

/// A handle to an audit log. Clones share the queue and the writer.
///
/// ```
/// use msec_audit::{AuditLog, CheckpointSigner, DataAccess, FileSink, FsyncPolicy, Overflow};
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// let log = AuditLog::builder()
///     .signer(CheckpointSigner::ephemeral()?)
///     .capacity(4096)
///     .overflow(Overflow::Block)
///     .fsync(FsyncPolicy::EachBatch)
///     .start(FileSink::new(dir.path())?)?;
/// log.emit(DataAccess::read("customer", "c-1")).await?;
/// log.flush().await?; // durable now
/// log.shutdown().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct AuditLog {
    pub(crate) shared: Arc<Shared>,
    // Only handles hold the sender: when the last handle goes, the writer sees the queue disconnect and seals.
    tx: Arc<mpsc::Sender<Msg>>,
}

impl fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditLog")
            .field("capacity", &self.shared.capacity)
            .field("overflow", &self.shared.overflow)
            .field("stats", &self.stats())
            .finish()
    }
}

/// Builder for [`AuditLog`].
#[must_use]
pub struct AuditLogBuilder {
    capacity: usize,
    overflow: Overflow,
    fsync: FsyncPolicy,
    batch: usize,
    checkpoint_records: u64,
    checkpoint_interval: Duration,
    signer: Option<Arc<CheckpointSigner>>,
    unsigned: bool,
    log_id: Option<String>,
    clock: SharedClock,
    detectors: Option<Detectors>,
    hooks: Vec<Arc<dyn AlertHook>>,
    checkpoint_hooks: Vec<CheckpointHook>,
    redactor: Redactor,
    retry_initial: Duration,
    retry_max: Duration,
}

impl fmt::Debug for AuditLogBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditLogBuilder")
            .field("capacity", &self.capacity)
            .field("overflow", &self.overflow)
            .field("fsync", &self.fsync)
            .field("signer", &self.signer)
            .finish_non_exhaustive()
    }
}

impl AuditLog {
    /// A builder: capacity 65 536, [`Overflow::Block`], [`FsyncPolicy::EachBatch`], batches of up to 1024,
    /// a checkpoint every 100 000 records or 60 s, the system clock, no detectors.
    pub fn builder() -> AuditLogBuilder {
        AuditLogBuilder {
            capacity: 65_536,
            overflow: Overflow::Block,
            fsync: FsyncPolicy::EachBatch,
            batch: 1024,
            checkpoint_records: 100_000,
            checkpoint_interval: Duration::from_secs(60),
            signer: None,
            unsigned: false,
            log_id: None,
            clock: Arc::new(SystemClock),
            detectors: None,
            hooks: Vec::new(),
            checkpoint_hooks: Vec::new(),
            redactor: Redactor::new(),
            retry_initial: Duration::from_millis(50),
            retry_max: Duration::from_secs(5),
        }
    }
}

impl AuditLogBuilder {
    /// The queue capacity in events (at least 1).
    pub fn capacity(mut self, n: usize) -> Self {
        self.capacity = n.clamp(1, Semaphore::MAX_PERMITS);
        self
    }
    /// The overflow policy.
    pub fn overflow(mut self, o: Overflow) -> Self {
        self.overflow = o;
        self
    }
    /// The fsync policy.
    pub fn fsync(mut self, f: FsyncPolicy) -> Self {
        self.fsync = f;
        self
    }
    /// The largest batch handed to the sink at once.
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch = n.max(1);
        self
    }
    /// A checkpoint every `records` records and every `interval` (whichever comes first, while records arrive).
    pub fn checkpoint_every(mut self, records: u64, interval: Duration) -> Self {
        self.checkpoint_records = records.max(1);
        self.checkpoint_interval = interval;
        self
    }
    /// The key that signs checkpoints. Required (or [`danger_unsigned_checkpoints`](Self::danger_unsigned_checkpoints)).
    pub fn signer(mut self, signer: CheckpointSigner) -> Self {
        self.signer = Some(Arc::new(signer));
        self
    }
    /// Writes checkpoints without signatures: the chain then proves nothing against someone who can rewrite
    /// the whole log.
    pub fn danger_unsigned_checkpoints(mut self) -> Self {
        self.unsigned = true;
        self
    }
    /// The log id (default: the one the sink already holds, else a new UUIDv7).
    pub fn log_id(mut self, id: impl Into<String>) -> Self {
        self.log_id = Some(id.into());
        self
    }
    /// The clock for timestamps, rotation by age and checkpoint intervals.
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }
    /// Runs threat detectors over the events.
    pub fn detectors(mut self, d: Detectors) -> Self {
        self.detectors = Some(d);
        self
    }
    /// Calls `hook` for every alert (on the writer thread: do not block; spawn async work).
    pub fn on_alert(mut self, hook: impl AlertHook) -> Self {
        self.hooks.push(Arc::new(hook));
        self
    }
    /// Calls `f` with every checkpoint once it is durable — to ship it off-host as an anchor.
    pub fn on_checkpoint(mut self, f: impl Fn(&Record) + Send + Sync + 'static) -> Self {
        self.checkpoint_hooks.push(Arc::new(f));
        self
    }
    /// The redactor for attributes and captured bodies (default [`Redactor::new`]).
    pub fn redactor(mut self, r: Redactor) -> Self {
        self.redactor = r;
        self
    }
    /// The sink retry back-off: starts at `initial`, doubles up to `max`.
    pub fn retry_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.retry_initial = initial;
        self.retry_max = max.max(initial);
        self
    }

    /// Opens `sink`, continues its chain (or starts one with a signed genesis checkpoint) and starts the
    /// writer thread.
    pub fn start<S: Sink>(self, mut sink: S) -> Result<AuditLog, AuditError> {
        if self.signer.is_none() && !self.unsigned {
            return Err(AuditError::NoSigner);
        }
        if let Some(id) = &self.log_id
            && !valid_log_id(id)
        {
            return Err(AuditError::InvalidLogId);
        }
        let (tx, rx) = mpsc::channel();
        let sem = Arc::new(Semaphore::new(self.capacity));
        let shared = Arc::new(Shared {
            sem: sem.clone(),
            buffers: Mutex::new(Vec::with_capacity(POOL_BUFFERS)),
            capacity: self.capacity,
            overflow: self.overflow,
            clock: self.clock.clone(),
            redactor: self.redactor.clone(),
            detecting: self.detectors.is_some(),
            closed: AtomicBool::new(false),
            writer_running: AtomicBool::new(false),
            sink_failing: AtomicBool::new(false),
            dropped_pending: AtomicU64::new(0),
            refused_pending: AtomicU64::new(0),
            dropped_total: AtomicU64::new(0),
            refused_total: AtomicU64::new(0),
            written: AtomicU64::new(0),
            sink_errors: AtomicU64::new(0),
            alerts: AtomicU64::new(0),
            next_seq: AtomicU64::new(0),
        });
        let mut writer = Writer {
            shared: shared.clone(),
            sink: Box::new(NoSink),
            chain: Chain::new(
                ChainHead {
                    log_id: "".into(),
                    next_seq: 0,
                    prev: GENESIS_PREV,
                },
                self.signer.clone(),
            ),
            fsync: self.fsync,
            batch: self.batch,
            checkpoint_records: self.checkpoint_records,
            checkpoint_interval: self.checkpoint_interval,
            since_checkpoint: 0,
            last_checkpoint_at: self.clock.monotonic(),
            last_sync_at: self.clock.monotonic(),
            unsynced: false,
            detectors: self.detectors,
            hooks: self.hooks,
            checkpoint_hooks: self.checkpoint_hooks,
            retry_initial: self.retry_initial,
            retry_max: self.retry_max,
            records: Vec::with_capacity(self.batch + 8),
        };
        // Every series exists from the start (at zero), so dashboards and alerts see it before the first event.
        metrics::counter!("msec_audit_dropped_total").increment(0);
        metrics::counter!("msec_audit_refused_total").increment(0);
        metrics::counter!("msec_audit_sink_errors_total", "sink" => sink.name()).increment(0);
        metrics::counter!("msec_audit_records_written_total").increment(0);
        metrics::gauge!("msec_audit_queue_depth").set(0.0);
        let (ready_tx, ready_rx) = mpsc::sync_channel::<Result<(), AuditError>>(1);
        let log_id = self.log_id.clone();
        let clock = self.clock.clone();
        std::thread::Builder::new()
            .name("msec-audit-writer".into())
            .spawn(move || {
                // The sink is opened on the writer thread: it may block, or run a runtime of its own.
                match open_sink(&mut sink, log_id, &*clock) {
                    Ok(head) => {
                        let _running = RunningGuard::start(writer.shared.clone());
                        writer.shared.next_seq.store(head.next_seq, Ordering::Relaxed);
                        writer.chain.head = head;
                        writer.sink = Box::new(sink);
                        let _ = ready_tx.send(Ok(()));
                        writer.run(rx);
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            })
            .map_err(AuditError::Thread)?;
        ready_rx.recv().map_err(|_| AuditError::Closed)??;
        Ok(AuditLog {
            shared,
            tx: Arc::new(tx),
        })
    }
}

/// Marks the writer thread as running for as long as it lives (a panic unwinding through it counts as an end).
struct RunningGuard(Arc<Shared>);

impl RunningGuard {
    fn start(shared: Arc<Shared>) -> Self {
        shared.writer_running.store(true, Ordering::Release);
        Self(shared)
    }
}

impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.0.writer_running.store(false, Ordering::Release);
    }
}

/// A placeholder until the real sink is opened on the writer thread.
struct NoSink;

impl Sink for NoSink {
    fn name(&self) -> &'static str {
        "none"
    }
    fn open(&mut self) -> Result<Option<ChainHead>, SinkError> {
        Ok(None)
    }
    fn write(&mut self, _: &[Record]) -> Result<(), SinkError> {
        Err(SinkError::new("no sink"))
    }
}

fn open_sink<S: Sink>(sink: &mut S, log_id: Option<String>, clock: &dyn Clock) -> Result<ChainHead, AuditError> {
    let resumed = sink.open().map_err(|source| AuditError::Open {
        sink: sink.name(),
        source,
    })?;
    Ok(match resumed {
        Some(h) => {
            if let Some(id) = &log_id
                && **id != *h.log_id
            {
                return Err(AuditError::LogIdMismatch {
                    configured: id.clone(),
                    found: h.log_id.to_string(),
                });
            }
            h
        }
        None => ChainHead {
            log_id: log_id
                .unwrap_or_else(|| EventId::new(clock.now()).to_hyphenated())
                .into(),
            next_seq: 0,
            prev: GENESIS_PREV,
        },
    })
}

impl AuditLog {
    /// Queues an event, waiting for room under [`Overflow::Block`].
    pub async fn emit(&self, event: impl IntoEvent) -> Result<(), EmitError> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(EmitError::Closed);
        }
        let permit = match self.shared.overflow {
            Overflow::Block => self
                .shared
                .sem
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| EmitError::Closed)?,
            _ => self.admit()?,
        };
        let pending = event.into_pending(self.shared.clock.now(), &self.shared.redactor, self.buffer(512));
        self.send(pending, permit)
    }

    /// Queues an event without waiting: under [`Overflow::Block`] a full queue gives [`EmitError::Full`] and
    /// nothing is counted (retry, or use [`emit`](Self::emit)).
    pub fn try_emit(&self, event: impl IntoEvent) -> Result<(), EmitError> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(EmitError::Closed);
        }
        let permit = match self.shared.overflow {
            Overflow::Block => self
                .shared
                .sem
                .clone()
                .try_acquire_owned()
                .map_err(|_| EmitError::Full)?,
            _ => self.admit()?,
        };
        let pending = event.into_pending(self.shared.clock.now(), &self.shared.redactor, self.buffer(512));
        self.send(pending, permit)
    }

    /// Takes a queue slot under the non-blocking policies, counting a drop or a refusal when there is none.
    fn admit(&self) -> Result<OwnedSemaphorePermit, EmitError> {
        match self.shared.sem.clone().try_acquire_owned() {
            Ok(p) => Ok(p),
            Err(tokio::sync::TryAcquireError::Closed) => Err(EmitError::Closed),
            Err(tokio::sync::TryAcquireError::NoPermits) => match self.shared.overflow {
                Overflow::DropAndCount => {
                    self.count_dropped();
                    Err(EmitError::Dropped)
                }
                _ => {
                    self.count_refused();
                    Err(EmitError::Full)
                }
            },
        }
    }

    /// An empty buffer for an event's JSON: a recycled one, or a new one of `capacity`.
    pub(crate) fn buffer(&self, capacity: usize) -> Vec<u8> {
        let pooled = self.shared.buffers.lock().unwrap_or_else(|e| e.into_inner()).pop();
        pooled.unwrap_or_else(|| Vec::with_capacity(capacity))
    }

    pub(crate) fn try_permit(&self) -> Option<OwnedSemaphorePermit> {
        self.shared.sem.clone().try_acquire_owned().ok()
    }

    pub(crate) fn semaphore(&self) -> &Arc<Semaphore> {
        &self.shared.sem
    }

    pub(crate) fn count_dropped(&self) {
        self.shared.dropped_pending.fetch_add(1, Ordering::AcqRel);
        self.shared.dropped_total.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("msec_audit_dropped_total").increment(1);
    }

    pub(crate) fn count_refused(&self) {
        self.shared.refused_pending.fetch_add(1, Ordering::AcqRel);
        self.shared.refused_total.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("msec_audit_refused_total").increment(1);
    }

    /// Sends an event that holds a queue slot.
    pub(crate) fn send(&self, pending: Pending, permit: OwnedSemaphorePermit) -> Result<(), EmitError> {
        // The writer gives the slot back once the event's batch is in the sink.
        permit.forget();
        if self.tx.send(Msg::Event(pending)).is_err() {
            self.shared.sem.add_permits(1);
            return Err(EmitError::Closed);
        }
        Ok(())
    }

    /// Returns when every event queued before this call is durable per the [`FsyncPolicy`] (written for
    /// `Never`, fsynced otherwise). Waits as long as the sink needs — there is no timeout.
    pub async fn flush(&self) -> Result<(), AuditError> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Msg::Flush(tx)).map_err(|_| AuditError::Closed)?;
        rx.await.map_err(|_| AuditError::Closed)
    }

    /// Stops accepting events, writes everything queued, seals the log with a final checkpoint, syncs and
    /// closes the sink. No timeout. Shut the server down (drain its requests) first, so their events are in.
    pub async fn shutdown(&self) -> Result<(), AuditError> {
        self.shared.closed.store(true, Ordering::Release);
        let (tx, rx) = oneshot::channel();
        self.tx.send(Msg::Shutdown(tx)).map_err(|_| AuditError::Closed)?;
        rx.await.map_err(|_| AuditError::Closed)
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        let s = &self.shared;
        Stats {
            written: s.written.load(Ordering::Relaxed),
            dropped: s.dropped_total.load(Ordering::Relaxed),
            refused: s.refused_total.load(Ordering::Relaxed),
            queued: (s.capacity - s.sem.available_permits().min(s.capacity)) as u64,
            sink_errors: s.sink_errors.load(Ordering::Relaxed),
            alerts: s.alerts.load(Ordering::Relaxed),
            next_seq: s.next_seq.load(Ordering::Relaxed),
        }
    }

    /// True while the log can make records durable: the writer thread is running, the log is not shut down,
    /// and the sink's last operation succeeded (a failing sink is retried forever, so this turns true again by
    /// itself when it recovers). For readiness probes.
    ///
    /// ```
    /// use msec_audit::{AuditLog, CheckpointSigner, MemorySink};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let log = AuditLog::builder().signer(CheckpointSigner::ephemeral()?).start(MemorySink::new())?;
    /// assert!(log.is_healthy());
    /// log.shutdown().await?;
    /// assert!(!log.is_healthy());
    /// # Ok(()) }
    /// ```
    pub fn is_healthy(&self) -> bool {
        let s = &self.shared;
        s.writer_running.load(Ordering::Acquire)
            && !s.closed.load(Ordering::Acquire)
            && !s.sink_failing.load(Ordering::Acquire)
    }

    /// The overflow policy.
    pub fn overflow(&self) -> Overflow {
        self.shared.overflow
    }

    /// True when detectors run (the audit layer then attaches what they need to each event).
    pub fn detecting(&self) -> bool {
        self.shared.detecting
    }

    /// The log's clock.
    pub fn clock(&self) -> &SharedClock {
        &self.shared.clock
    }

    /// The log's redactor.
    pub fn redactor(&self) -> &Redactor {
        &self.shared.redactor
    }
}

#[derive(Serialize)]
struct GapBody {
    kind: &'static str,
    id: EventId,
    time: Timestamp,
    dropped: u64,
    refused: u64,
}

#[derive(Serialize)]
struct AlertBody<'a> {
    kind: &'static str,
    id: EventId,
    time: Timestamp,
    alert: &'a Alert,
}

struct Writer {
    shared: Arc<Shared>,
    sink: Box<dyn Sink>,
    chain: Chain,
    fsync: FsyncPolicy,
    batch: usize,
    checkpoint_records: u64,
    checkpoint_interval: Duration,
    since_checkpoint: u64,
    last_checkpoint_at: Duration,
    last_sync_at: Duration,
    unsynced: bool,
    detectors: Option<Detectors>,
    hooks: Vec<Arc<dyn AlertHook>>,
    checkpoint_hooks: Vec<CheckpointHook>,
    retry_initial: Duration,
    retry_max: Duration,
    records: Vec<Record>,
}

impl Writer {
    fn now(&self) -> SystemTime {
        self.shared.clock.now()
    }

    fn mono(&self) -> Duration {
        self.shared.clock.monotonic()
    }

    fn run(mut self, rx: mpsc::Receiver<Msg>) {
        let reason = if self.chain.head.next_seq == 0 {
            "genesis"
        } else {
            "start"
        };
        let now = self.now();
        let cp = self.chain.checkpoint(reason, now);
        self.records.push(cp);
        self.commit(0, true);
        let mut msgs: Vec<Msg> = Vec::with_capacity(self.batch);
        let mut busy = false;
        // The last batch stopped at the batch size, not at an empty queue: go on without sleeping.
        let mut backlog = false;
        loop {
            // Under load, sleep briefly and then drain (see `POLL_WHILE_BUSY`); park on the queue only once a poll
            // finds it empty.
            let mut first = None;
            if busy {
                if !backlog {
                    std::thread::sleep(POLL_WHILE_BUSY);
                }
                match rx.try_recv() {
                    Ok(m) => first = Some(m),
                    Err(TryRecvError::Empty) => {}
                    Err(TryRecvError::Disconnected) => {
                        self.finish(&rx, None);
                        return;
                    }
                }
            }
            if first.is_none() {
                let wait = self.next_wakeup();
                first = match rx.recv_timeout(wait) {
                    Ok(m) => Some(m),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => {
                        // Every handle is gone without a shutdown: seal what we have.
                        self.finish(&rx, None);
                        return;
                    }
                };
            }
            busy = first.is_some();
            msgs.extend(first);
            // Gather a batch; linger a little while records keep coming.
            let mut idle = 0;
            while msgs.len() < self.batch && idle < LINGER {
                match rx.try_recv() {
                    Ok(m) => {
                        msgs.push(m);
                        idle = 0;
                    }
                    Err(TryRecvError::Empty) => {
                        if msgs.iter().any(|m| !matches!(m, Msg::Event(_))) {
                            break;
                        }
                        idle += 1;
                        std::thread::yield_now();
                    }
                    Err(TryRecvError::Disconnected) => break,
                }
            }
            backlog = msgs.len() >= self.batch;
            let mut flushes = Vec::new();
            let mut shutdown = None;
            let mut events = 0usize;
            self.begin_batch();
            for m in msgs.drain(..) {
                match m {
                    Msg::Event(p) => {
                        events += 1;
                        self.frame_event(p);
                    }
                    Msg::Flush(tx) => flushes.push(tx),
                    Msg::Shutdown(tx) => shutdown = Some(tx),
                }
            }
            self.timers();
            let force_sync = !flushes.is_empty() && self.fsync != FsyncPolicy::Never;
            self.commit(events, force_sync);
            for f in flushes {
                let _ = f.send(());
            }
            if let Some(tx) = shutdown {
                self.finish(&rx, Some(tx));
                return;
            }
        }
    }

    /// Drains the queue, writes the final gap and checkpoint, closes the sink.
    fn finish(&mut self, rx: &mpsc::Receiver<Msg>, reply: Option<oneshot::Sender<()>>) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.sem.close();
        let mut replies: Vec<oneshot::Sender<()>> = reply.into_iter().collect();
        loop {
            self.begin_batch();
            let mut events = 0;
            let mut any = false;
            while events < self.batch {
                match rx.try_recv() {
                    Ok(Msg::Event(p)) => {
                        events += 1;
                        any = true;
                        self.frame_event(p);
                    }
                    Ok(Msg::Flush(tx) | Msg::Shutdown(tx)) => {
                        any = true;
                        replies.push(tx);
                    }
                    Err(_) => break,
                }
            }
            if !any {
                break;
            }
            self.commit(events, false);
        }
        self.begin_batch();
        let now = self.now();
        let cp = self.chain.checkpoint("close", now);
        self.records.push(cp);
        self.commit(0, true);
        self.retry(|s| s.sink.close());
        for r in replies {
            let _ = r.send(());
        }
    }

    fn next_wakeup(&self) -> Duration {
        let now = self.mono();
        let mut wait = self
            .checkpoint_interval
            .saturating_sub(now.saturating_sub(self.last_checkpoint_at));
        if let FsyncPolicy::Interval(i) = self.fsync
            && self.unsynced
        {
            wait = wait.min(i.saturating_sub(now.saturating_sub(self.last_sync_at)));
        }
        wait.clamp(Duration::from_millis(1), Duration::from_secs(1))
    }

    /// Before framing a batch: rotate when due, account for dropped and refused events.
    fn begin_batch(&mut self) {
        let now = self.now();
        if self.sink.rotation_due(now) {
            self.retry(|s| s.sink.rotate());
            let cp = self.chain.checkpoint("rotate", now);
            self.records.push(cp);
            self.since_checkpoint = 0;
            self.last_checkpoint_at = self.mono();
        }
        let dropped = self.shared.dropped_pending.swap(0, Ordering::AcqRel);
        let refused = self.shared.refused_pending.swap(0, Ordering::AcqRel);
        if dropped > 0 || refused > 0 {
            let body = GapBody {
                kind: "gap",
                id: EventId::new(now),
                time: Timestamp(now),
                dropped,
                refused,
            };
            let b = serde_json::to_vec(&body).unwrap_or_default();
            let r = self.chain.append(RecordKind::Gap, now, &b);
            self.records.push(r);
            self.since_checkpoint += 1;
        }
    }

    fn frame_event(&mut self, p: Pending) {
        let r = self.chain.append_owned(p.kind, p.time, p.body);
        let trigger = r.seq;
        self.records.push(r);
        self.since_checkpoint += 1;
        if let (Some(d), Some(obs)) = (self.detectors.as_mut(), p.observation) {
            let alerts = d.observe(&obs);
            for mut a in alerts {
                a.trigger_seq = Some(trigger);
                let now = a.time;
                let body = AlertBody {
                    kind: "alert",
                    id: EventId::new(now),
                    time: Timestamp(now),
                    alert: &a,
                };
                let b = serde_json::to_vec(&body).unwrap_or_default();
                let r = self.chain.append(RecordKind::Alert, now, &b);
                a.seq = Some(r.seq);
                self.records.push(r);
                self.since_checkpoint += 1;
                self.shared.alerts.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("msec_audit_alerts_total", "detector" => a.detector.as_str()).increment(1);
                tracing::warn!(target: "msec_audit", detector = a.detector.as_str(), key = %a.key, count = a.count, "audit alert");
                for h in &self.hooks {
                    h.on_alert(&a);
                }
            }
        }
    }

    /// Checkpoint when due.
    fn timers(&mut self) {
        let mono = self.mono();
        let due_time = mono.saturating_sub(self.last_checkpoint_at) >= self.checkpoint_interval;
        if self.since_checkpoint >= self.checkpoint_records || (due_time && self.since_checkpoint > 0) {
            let now = self.now();
            let cp = self.chain.checkpoint(if due_time { "interval" } else { "count" }, now);
            self.records.push(cp);
        }
    }

    /// Calls `f` until it succeeds, backing off; never gives up (records are never discarded).
    fn retry(&mut self, mut f: impl FnMut(&mut Self) -> Result<(), SinkError>) {
        let mut backoff = self.retry_initial;
        loop {
            match f(self) {
                Ok(()) => {
                    self.shared.sink_failing.store(false, Ordering::Release);
                    return;
                }
                Err(e) => {
                    self.shared.sink_failing.store(true, Ordering::Release);
                    self.shared.sink_errors.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!("msec_audit_sink_errors_total", "sink" => self.sink.name()).increment(1);
                    tracing::error!(target: "msec_audit", sink = self.sink.name(), error = %e, retry_in = ?backoff, "audit sink failed; retrying");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(self.retry_max);
                }
            }
        }
    }

    /// Writes the framed records, releases their queue slots, syncs per policy and keeps anchors.
    fn commit(&mut self, events: usize, force_sync: bool) {
        let records = std::mem::take(&mut self.records);
        let started = std::time::Instant::now();
        if !records.is_empty() {
            self.retry(|s| s.sink.write(&records));
            self.unsynced = true;
            self.shared.written.fetch_add(records.len() as u64, Ordering::Relaxed);
            self.shared.next_seq.store(self.chain.head.next_seq, Ordering::Relaxed);
            metrics::counter!("msec_audit_records_written_total").increment(records.len() as u64);
        }
        if events > 0 {
            self.shared.sem.add_permits(events);
        }
        let mono = self.mono();
        let sync = self.unsynced
            && match self.fsync {
                FsyncPolicy::Never => false,
                FsyncPolicy::EachBatch => true,
                FsyncPolicy::Interval(i) => force_sync || mono.saturating_sub(self.last_sync_at) >= i,
            };
        let checkpoints: Vec<&Record> = records.iter().filter(|r| r.kind == RecordKind::Checkpoint).collect();
        let sync = sync || (!checkpoints.is_empty() && self.fsync != FsyncPolicy::Never);
        if sync {
            self.retry(|s| s.sink.sync());
            self.unsynced = false;
            self.last_sync_at = mono;
        }
        if !records.is_empty() {
            metrics::histogram!("msec_audit_batch_write_seconds").record(started.elapsed().as_secs_f64());
            metrics::gauge!("msec_audit_queue_depth")
                .set((self.shared.capacity - self.shared.sem.available_permits().min(self.shared.capacity)) as f64);
        }
        if let Some(last) = checkpoints.last() {
            self.since_checkpoint = 0;
            self.last_checkpoint_at = mono;
            let last = (*last).clone();
            self.retry(|s| s.sink.checkpointed(&last));
            for h in &self.checkpoint_hooks {
                h(&last);
            }
        }
        let mut records = records;
        self.recycle(&mut records);
        records.clear();
        self.records = records;
    }

    /// Gives the written records' buffers back to the pool.
    fn recycle(&self, records: &mut [Record]) {
        let mut pool = self.shared.buffers.lock().unwrap_or_else(|e| e.into_inner());
        for r in records {
            if pool.len() >= POOL_BUFFERS {
                break;
            }
            if r.line.capacity() <= POOL_BUFFER_MAX {
                let mut line = std::mem::take(&mut r.line);
                line.clear();
                pool.push(line);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DataAccess, MemorySink};

    #[tokio::test]
    async fn record_buffers_are_recycled_within_the_bound() {
        let sink = MemorySink::new();
        let log = AuditLog::builder()
            .danger_unsigned_checkpoints()
            .start(sink.clone())
            .unwrap_or_else(|e| panic!("{e}"));
        for i in 0..(POOL_BUFFERS * 3) {
            log.emit(DataAccess::read("t", i.to_string()))
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        log.flush().await.unwrap_or_else(|e| panic!("{e}"));
        let pooled = log.shared.buffers.lock().unwrap_or_else(|e| e.into_inner()).len();
        assert!(pooled > 0 && pooled <= POOL_BUFFERS, "{pooled} buffers pooled");
        let b = log.buffer(10);
        assert!(b.is_empty() && b.capacity() > 10, "a recycled buffer comes back empty");
        // What the sink received is intact: recycling happens after the write.
        let lines = sink.contents();
        let text = String::from_utf8_lossy(&lines);
        assert_eq!(text.matches(r#""kind":"data_access""#).count(), POOL_BUFFERS * 3);
        log.shutdown().await.unwrap_or_else(|e| panic!("{e}"));
    }
}
