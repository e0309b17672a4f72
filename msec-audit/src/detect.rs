//! Threat detectors over the event stream, with sliding windows on the injected clock.
//!
//! | detector               | counts, per key                                          | default          |
//! |------------------------|----------------------------------------------------------|------------------|
//! | `brute_force`          | authentication failures per client IP, and per subject   | 10 in 60 s       |
//! | `credential_stuffing`  | distinct subjects failing authentication from one client | 5 in 60 s        |
//! | `token_replay`         | distinct client IPs presenting one token id (`jti`)      | 2 in 10 min      |
//! | `scanning`             | 404 / 405 answers per client                             | 20 in 60 s       |
//! | `authz_probing`        | 403 answers per client                                   | 10 in 60 s       |
//! | `rate_limit_storm`     | 429 / `rate_limited` answers per client                  | 50 in 60 s       |
//!
//! A detector that fires for a key stays quiet for that key for one window. Each alert becomes an `alert`
//! record in the same hash chain and is passed to every [`AlertHook`] (e.g. to ban the client in
//! msec-ratelimit's penalty box). Memory is bounded: at most `max_keys` keys per detector; when full, expired
//! keys are swept (at most once per second), and new keys are not tracked until room frees (counted in
//! `msec_audit_detector_untracked_total`).
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use msec_audit::detect::{Detectors, DetectorKind, Observation};
//!
//! let mut d = Detectors::default();
//! let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
//! let ip = "203.0.113.9".parse().unwrap();
//! let mut alerts = Vec::new();
//! for i in 0..10 {
//!     let obs = Observation::new(t0 + Duration::from_secs(i)).client_ip(ip).status(401).authn_failure(true);
//!     alerts.extend(d.observe(&obs));
//! }
//! assert_eq!(alerts.len(), 1);
//! assert_eq!(alerts[0].detector, DetectorKind::BruteForce);
//! ```

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::util::{EventId, Timestamp};

/// What the detectors need to know about one event. The audit layer fills it for each request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Observation {
    /// When the event happened.
    pub time: SystemTime,
    /// The client IP.
    pub client_ip: Option<IpAddr>,
    /// The subject an authentication attempt named (the detectors read it for failures only, and the audit
    /// layer leaves it out of other requests).
    pub subject: Option<String>,
    /// The token id (`jti`).
    pub token_id: Option<String>,
    /// The HTTP status.
    pub status: Option<u16>,
    /// The reason code.
    pub code: Option<String>,
    /// True when authentication failed.
    pub authn_failure: bool,
    /// The event id.
    pub event_id: Option<EventId>,
}

impl Observation {
    /// An observation at `time`.
    pub fn new(time: SystemTime) -> Self {
        Self {
            time,
            client_ip: None,
            subject: None,
            token_id: None,
            status: None,
            code: None,
            authn_failure: false,
            event_id: None,
        }
    }
    /// Sets the client IP.
    #[must_use]
    pub fn client_ip(mut self, ip: IpAddr) -> Self {
        self.client_ip = Some(ip);
        self
    }
    /// Sets the subject.
    #[must_use]
    pub fn subject(mut self, s: impl Into<String>) -> Self {
        self.subject = Some(s.into());
        self
    }
    /// Sets the token id.
    #[must_use]
    pub fn token_id(mut self, jti: impl Into<String>) -> Self {
        self.token_id = Some(jti.into());
        self
    }
    /// Sets the status.
    #[must_use]
    pub fn status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }
    /// Sets the reason code.
    #[must_use]
    pub fn code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }
    /// Marks an authentication failure.
    #[must_use]
    pub fn authn_failure(mut self, failed: bool) -> Self {
        self.authn_failure = failed;
        self
    }
}

/// Which detector fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DetectorKind {
    /// Repeated authentication failures from one client or for one subject.
    BruteForce,
    /// Many subjects failing authentication from one client.
    CredentialStuffing,
    /// One token id from several client addresses.
    TokenReplay,
    /// Bursts of 404 / 405.
    Scanning,
    /// Bursts of 403.
    AuthzProbing,
    /// Bursts of 429.
    RateLimitStorm,
}

impl DetectorKind {
    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BruteForce => "brute_force",
            Self::CredentialStuffing => "credential_stuffing",
            Self::TokenReplay => "token_replay",
            Self::Scanning => "scanning",
            Self::AuthzProbing => "authz_probing",
            Self::RateLimitStorm => "rate_limit_storm",
        }
    }
}

/// What an alert is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
#[non_exhaustive]
pub enum AlertKey {
    /// A client IP.
    Client(IpAddr),
    /// A subject.
    Subject(String),
    /// A token id.
    Token(String),
}

impl fmt::Display for AlertKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Client(ip) => write!(f, "client:{ip}"),
            Self::Subject(s) => write!(f, "subject:{s}"),
            Self::Token(t) => write!(f, "token:{t}"),
        }
    }
}

/// A detector fired.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Alert {
    /// Which detector.
    pub detector: DetectorKind,
    /// About what.
    pub key: AlertKey,
    /// How many matching events (or distinct subjects / addresses) were in the window.
    pub count: u64,
    /// The threshold.
    pub threshold: u64,
    /// The window, in seconds.
    pub window_secs: u64,
    /// When it fired.
    #[serde(skip)]
    pub time: SystemTime,
    /// The client addresses involved (token replay), at most 16.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub clients: Vec<IpAddr>,
    /// The event that tipped it over.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trigger_event: Option<String>,
    /// The sequence number of that event's record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trigger_seq: Option<u64>,
    /// The sequence number of the alert record (set once it is in the chain).
    #[serde(skip)]
    pub seq: Option<u64>,
}

impl Alert {
    /// When it fired, RFC 3339.
    pub fn time_rfc3339(&self) -> String {
        Timestamp(self.time).to_rfc3339()
    }
}

/// Receives alerts. Runs on the log's writer thread: return quickly (spawn async work on a runtime handle).
pub trait AlertHook: Send + Sync + 'static {
    /// Called once per alert.
    fn on_alert(&self, alert: &Alert);
}

impl<F: Fn(&Alert) + Send + Sync + 'static> AlertHook for F {
    fn on_alert(&self, alert: &Alert) {
        self(alert);
    }
}

/// A threshold within a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// Fires when this many are seen…
    pub threshold: u32,
    /// …within this window.
    pub window: Duration,
}

impl Rule {
    /// `threshold` within `window` (threshold at least 1).
    pub fn new(threshold: u32, window: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            window,
        }
    }
}

/// The set of detectors, each with its rule (`None` disables it).
#[derive(Debug, Clone)]
pub struct Detectors {
    /// Authentication failures per client / subject.
    pub brute_force: Option<Rule>,
    /// Distinct failing subjects per client.
    pub credential_stuffing: Option<Rule>,
    /// Distinct client IPs per token id.
    pub token_replay: Option<Rule>,
    /// 404 / 405 per client.
    pub scanning: Option<Rule>,
    /// 403 per client.
    pub authz_probing: Option<Rule>,
    /// 429 per client.
    pub rate_limit_storm: Option<Rule>,
    /// Keys tracked per detector at most.
    pub max_keys: usize,
    state: State,
}

impl Default for Detectors {
    fn default() -> Self {
        let m = Duration::from_secs(60);
        Self {
            brute_force: Some(Rule::new(10, m)),
            credential_stuffing: Some(Rule::new(5, m)),
            token_replay: Some(Rule::new(2, Duration::from_secs(600))),
            scanning: Some(Rule::new(20, m)),
            authz_probing: Some(Rule::new(10, m)),
            rate_limit_storm: Some(Rule::new(50, m)),
            max_keys: 100_000,
            state: State::default(),
        }
    }
}

#[derive(Debug, Clone, Default)]
struct State {
    counters: HashMap<(DetectorKind, AlertKey), Window>,
    distinct: HashMap<(DetectorKind, AlertKey), Distinct>,
    last_sweep: u64,
}

#[derive(Debug, Clone, Default)]
struct Window {
    times: VecDeque<u64>,
    quiet_until: u64,
}

#[derive(Debug, Clone, Default)]
struct Distinct {
    seen: VecDeque<(u64, u64)>,
    ips: VecDeque<IpAddr>,
    quiet_until: u64,
}

fn micros(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

fn hash_of<T: Hash>(t: &T) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    t.hash(&mut h);
    h.finish()
}

impl Detectors {
    /// Every detector off; enable the ones you want by setting their rule.
    pub fn none() -> Self {
        Self {
            brute_force: None,
            credential_stuffing: None,
            token_replay: None,
            scanning: None,
            authz_probing: None,
            rate_limit_storm: None,
            max_keys: 100_000,
            state: State::default(),
        }
    }

    /// Feeds one event; returns the alerts it triggers.
    pub fn observe(&mut self, o: &Observation) -> Vec<Alert> {
        let now = micros(o.time);
        let mut out = Vec::new();
        self.maybe_sweep(now);
        if o.authn_failure {
            if let Some(rule) = self.brute_force {
                if let Some(ip) = o.client_ip {
                    self.count(DetectorKind::BruteForce, AlertKey::Client(ip), rule, now, o, &mut out);
                }
                if let Some(s) = &o.subject {
                    self.count(
                        DetectorKind::BruteForce,
                        AlertKey::Subject(s.clone()),
                        rule,
                        now,
                        o,
                        &mut out,
                    );
                }
            }
            if let (Some(rule), Some(ip), Some(s)) = (self.credential_stuffing, o.client_ip, &o.subject) {
                self.distinct(
                    DetectorKind::CredentialStuffing,
                    AlertKey::Client(ip),
                    hash_of(s),
                    None,
                    rule,
                    now,
                    o,
                    &mut out,
                );
            }
        }
        if let (Some(rule), Some(jti), Some(ip)) = (self.token_replay, &o.token_id, o.client_ip)
            && !o.authn_failure
        {
            self.distinct(
                DetectorKind::TokenReplay,
                AlertKey::Token(jti.clone()),
                hash_of(&ip),
                Some(ip),
                rule,
                now,
                o,
                &mut out,
            );
        }
        if let Some(ip) = o.client_ip {
            let status = o.status.unwrap_or(0);
            if matches!(status, 404 | 405)
                && let Some(rule) = self.scanning
            {
                self.count(DetectorKind::Scanning, AlertKey::Client(ip), rule, now, o, &mut out);
            }
            if status == 403
                && let Some(rule) = self.authz_probing
            {
                self.count(DetectorKind::AuthzProbing, AlertKey::Client(ip), rule, now, o, &mut out);
            }
            if (status == 429 || o.code.as_deref() == Some("rate_limited"))
                && let Some(rule) = self.rate_limit_storm
            {
                self.count(
                    DetectorKind::RateLimitStorm,
                    AlertKey::Client(ip),
                    rule,
                    now,
                    o,
                    &mut out,
                );
            }
        }
        out
    }

    fn room(&mut self, exists: bool, len: usize) -> bool {
        if exists || len < self.max_keys {
            return true;
        }
        metrics::counter!("msec_audit_detector_untracked_total").increment(1);
        false
    }

    /// Drops keys whose windows have expired, at most once per second and only when a map is full.
    fn maybe_sweep(&mut self, now: u64) {
        let full = self.state.counters.len() >= self.max_keys || self.state.distinct.len() >= self.max_keys;
        if !full || now.saturating_sub(self.state.last_sweep) < 1_000_000 {
            return;
        }
        self.state.last_sweep = now;
        let horizon = self.longest_window();
        self.state
            .counters
            .retain(|_, w| w.times.back().is_some_and(|&t| now.saturating_sub(t) <= horizon) || w.quiet_until > now);
        self.state.distinct.retain(|_, d| {
            d.seen.back().is_some_and(|&(t, _)| now.saturating_sub(t) <= horizon) || d.quiet_until > now
        });
    }

    fn longest_window(&self) -> u64 {
        [
            self.brute_force,
            self.credential_stuffing,
            self.token_replay,
            self.scanning,
            self.authz_probing,
            self.rate_limit_storm,
        ]
        .iter()
        .flatten()
        .map(|r| r.window.as_micros() as u64)
        .max()
        .unwrap_or(0)
    }

    fn count(
        &mut self,
        kind: DetectorKind,
        key: AlertKey,
        rule: Rule,
        now: u64,
        o: &Observation,
        out: &mut Vec<Alert>,
    ) {
        let k = (kind, key);
        let exists = self.state.counters.contains_key(&k);
        let len = self.state.counters.len();
        if !self.room(exists, len) {
            return;
        }
        let window = rule.window.as_micros() as u64;
        let w = self.state.counters.entry(k.clone()).or_default();
        w.times.push_back(now);
        while w.times.front().is_some_and(|&t| now.saturating_sub(t) > window) {
            w.times.pop_front();
        }
        while w.times.len() > rule.threshold as usize {
            w.times.pop_front();
        }
        if w.times.len() >= rule.threshold as usize && now >= w.quiet_until {
            w.quiet_until = now.saturating_add(window);
            out.push(alert(kind, k.1, w.times.len() as u64, rule, o, Vec::new()));
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn distinct(
        &mut self,
        kind: DetectorKind,
        key: AlertKey,
        item: u64,
        ip: Option<IpAddr>,
        rule: Rule,
        now: u64,
        o: &Observation,
        out: &mut Vec<Alert>,
    ) {
        let k = (kind, key);
        let exists = self.state.distinct.contains_key(&k);
        let len = self.state.distinct.len();
        if !self.room(exists, len) {
            return;
        }
        let window = rule.window.as_micros() as u64;
        let d = self.state.distinct.entry(k.clone()).or_default();
        d.seen.retain(|&(t, h)| now.saturating_sub(t) <= window && h != item);
        d.seen.push_back((now, item));
        if let Some(ip) = ip {
            d.ips.retain(|x| *x != ip);
            d.ips.push_back(ip);
            while d.ips.len() > 16 {
                d.ips.pop_front();
            }
        }
        while d.seen.len() > rule.threshold as usize {
            d.seen.pop_front();
        }
        if d.seen.len() >= rule.threshold as usize && now >= d.quiet_until {
            d.quiet_until = now.saturating_add(window);
            let ips = if ip.is_some() {
                d.ips.iter().copied().collect()
            } else {
                Vec::new()
            };
            out.push(alert(kind, k.1, d.seen.len() as u64, rule, o, ips));
        }
    }
}

fn alert(kind: DetectorKind, key: AlertKey, count: u64, rule: Rule, o: &Observation, clients: Vec<IpAddr>) -> Alert {
    Alert {
        detector: kind,
        key,
        count,
        threshold: u64::from(rule.threshold),
        window_secs: rule.window.as_secs(),
        time: o.time,
        clients,
        trigger_event: o.event_id.map(|e| e.to_hyphenated()),
        trigger_seq: None,
        seq: None,
    }
}
