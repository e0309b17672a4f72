//! Hot reload: the shared slot behind [`ReloadingCert`](crate::ReloadingCert) and
//! [`ReloadingTrust`](crate::ReloadingTrust), the [`Reload`] trait, and a background [`Watcher`].
//!
//! Reloading is explicit and synchronous — `poll()` reads the files, and swaps new material in when their
//! content changed and loads — so a test drives it without sleeping. The [`Watcher`] only calls `poll()` on an
//! interval. Change detection compares a SHA-256 of the file contents, not modification times (which have a
//! coarse granularity and miss same-second rewrites).

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::error::TlsConfigError;

/// Reload counters of a reloading source.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReloadStatus {
    /// How many times material was loaded (1 after construction; +1 per successful change).
    pub generation: u64,
    /// How many reload attempts failed (the previous material stayed in force each time).
    pub failures: u64,
    /// The most recent failure, if the last attempt failed (cleared by the next success).
    pub last_error: Option<String>,
}

/// Something that can be re-read from its files: [`ReloadingCert`](crate::ReloadingCert) or
/// [`ReloadingTrust`](crate::ReloadingTrust).
pub trait Reload: Send + Sync + 'static {
    /// Re-reads the files and swaps new material in when they changed and load. `Ok(true)` when new material
    /// is in force; an error leaves the previous material in force.
    fn poll(&self) -> Result<bool, TlsConfigError>;
    /// The reload counters.
    fn status(&self) -> ReloadStatus;
    /// A human-readable name (the files), for logs.
    fn name(&self) -> String;
}

struct State {
    digest: [u8; 32],
    generation: u64,
    failures: u64,
    last_error: Option<String>,
}

/// The current material of a reloading source and its reload bookkeeping.
pub(crate) struct Slot<T> {
    kind: &'static str,
    name: String,
    current: ArcSwap<T>,
    state: Mutex<State>,
}

impl<T> Slot<T> {
    pub(crate) fn new(kind: &'static str, name: String, initial: T, digest: [u8; 32]) -> Self {
        Self {
            kind,
            name,
            current: ArcSwap::from_pointee(initial),
            state: Mutex::new(State {
                digest,
                generation: 1,
                failures: 0,
                last_error: None,
            }),
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn load(&self) -> Arc<T> {
        self.current.load_full()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Each critical section assigns plain fields; a poisoned lock holds consistent data.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn status(&self) -> ReloadStatus {
        let s = self.lock();
        ReloadStatus {
            generation: s.generation,
            failures: s.failures,
            last_error: s.last_error.clone(),
        }
    }

    /// Reads (`read`), and when forced or the digest changed, builds (`build`) and swaps. Serialised by the
    /// state lock, so two concurrent polls cannot interleave their swaps.
    pub(crate) fn update<F>(
        &self,
        force: bool,
        read: impl FnOnce() -> Result<F, TlsConfigError>,
        build: impl FnOnce(&F) -> Result<T, TlsConfigError>,
    ) -> Result<bool, TlsConfigError>
    where
        F: Digest,
    {
        let mut state = self.lock();
        let result = read().and_then(|files| {
            if !force && files.digest() == state.digest {
                return Ok(None);
            }
            let material = build(&files)?;
            Ok(Some((material, files.digest())))
        });
        match result {
            Ok(None) => {
                metrics::counter!("msec_tls_reloads_total", "kind" => self.kind, "result" => "unchanged").increment(1);
                Ok(false)
            }
            Ok(Some((material, digest))) => {
                self.current.store(Arc::new(material));
                state.digest = digest;
                state.generation += 1;
                state.last_error = None;
                metrics::counter!("msec_tls_reloads_total", "kind" => self.kind, "result" => "changed").increment(1);
                tracing::info!(kind = self.kind, source = %self.name, generation = state.generation, "TLS material reloaded");
                Ok(true)
            }
            Err(e) => {
                state.failures += 1;
                state.last_error = Some(e.to_string());
                metrics::counter!("msec_tls_reloads_total", "kind" => self.kind, "result" => "error").increment(1);
                tracing::warn!(kind = self.kind, source = %self.name, error = %e, "TLS reload failed; keeping the previous material");
                Err(e)
            }
        }
    }
}

/// The content digest of what a reload read.
pub(crate) trait Digest {
    fn digest(&self) -> [u8; 32];
}

impl Digest for crate::trust::Files {
    fn digest(&self) -> [u8; 32] {
        self.digest
    }
}

/// Polls reloading sources on an interval in a background task.
///
/// SPIFFE SVIDs live about an hour and are rotated well before they expire; polling every few seconds makes
/// rotation routine. Dropping the returned [`WatcherHandle`] stops the task.
///
/// ```no_run
/// # async fn f() -> Result<(), msec_tls::TlsConfigError> {
/// use std::time::Duration;
/// use msec_tls::{ReloadingCert, Trust, Watcher};
///
/// let cert = ReloadingCert::from_pem_files("/run/spire/svid.pem", "/run/spire/svid_key.pem")?;
/// let trust = Trust::spiffe().bundle_pem_file("example.org".parse()?, "/run/spire/bundle.pem").build_reloading()?;
/// let _watcher = Watcher::new(Duration::from_secs(5)).watch(cert.clone()).watch(trust.clone()).spawn();
/// # Ok(()) }
/// ```
#[must_use]
pub struct Watcher {
    every: Duration,
    items: Vec<Arc<dyn Reload>>,
}

impl fmt::Debug for Watcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watcher")
            .field("every", &self.every)
            .field("items", &self.items.iter().map(|i| i.name()).collect::<Vec<_>>())
            .finish()
    }
}

impl Watcher {
    /// A watcher polling every `every` (at least one millisecond).
    pub fn new(every: Duration) -> Self {
        Self {
            every: every.max(Duration::from_millis(1)),
            items: Vec::new(),
        }
    }

    /// Adds a source to poll.
    pub fn watch(mut self, item: impl Reload) -> Self {
        self.items.push(Arc::new(item));
        self
    }

    /// Polls every source once now (what the background task does on each tick).
    pub fn poll_all(&self) -> usize {
        poll_all(&self.items)
    }

    /// Spawns the polling task on the current tokio runtime. The file reads run on the blocking pool.
    pub fn spawn(self) -> WatcherHandle {
        let items = Arc::new(self.items);
        let every = self.every;
        // The schedule starts now (not when the task is first polled): the first poll is one interval away, as
        // the material was just loaded.
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let task = tokio::spawn(async move {
            loop {
                tick.tick().await;
                let items = items.clone();
                if tokio::task::spawn_blocking(move || poll_all(&items)).await.is_err() {
                    tracing::error!("TLS reload poll panicked");
                }
            }
        });
        WatcherHandle { task }
    }
}

/// Polls each item; returns how many changed. Errors are already logged and counted by the item.
fn poll_all(items: &[Arc<dyn Reload>]) -> usize {
    items.iter().filter(|i| matches!(i.poll(), Ok(true))).count()
}

/// Stops the [`Watcher`] task when dropped (or on [`stop`](Self::stop)).
#[derive(Debug)]
pub struct WatcherHandle {
    task: tokio::task::JoinHandle<()>,
}

impl WatcherHandle {
    /// Stops polling.
    pub fn stop(self) {
        self.task.abort();
    }
}

impl Drop for WatcherHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}
