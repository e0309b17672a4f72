//! Configuration and backend errors.

/// A configuration mistake, reported when the limiter, a rule or the client-IP resolver is built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A quota or burst of zero units.
    #[error("a quota needs a positive count and burst")]
    ZeroQuota,
    /// A zero period, or one shorter than a nanosecond per unit.
    #[error("a quota period must be at least one nanosecond per unit")]
    InvalidPeriod,
    /// A quota string that does not parse.
    #[error("invalid quota `{0}` (expected e.g. `100/minute burst 20`)")]
    InvalidQuota(String),
    /// A key spec string that does not parse.
    #[error("invalid key `{0}` (expected ip, ip/56, subject, api_key, tenant, header:<name>, route, global)")]
    InvalidKey(String),
    /// A rule name that is empty, too long, or not printable ASCII.
    #[error("invalid rule name `{0}`: use 1-64 printable ASCII characters without `\"` or `\\`")]
    InvalidRuleName(String),
    /// Two rules with one name.
    #[error("duplicate rule name `{0}`")]
    DuplicateRule(String),
    /// A route spec that does not parse.
    #[error("rule `{rule}`: {source}")]
    Route {
        /// The rule.
        rule: String,
        /// The route error.
        #[source]
        source: msec_core::route::RouteError,
    },
    /// A rule's cost exceeds its burst: no request could ever pass.
    #[error("rule `{0}`: the cost exceeds the burst, so no request could ever pass")]
    CostExceedsBurst(String),
    /// More rules than one layer supports.
    #[error("at most {0} rules per limiter")]
    TooManyRules(usize),
    /// A CIDR that does not parse.
    #[error("invalid CIDR `{0}`")]
    InvalidCidr(String),
    /// A bound (max keys, penalty threshold, ...) of zero.
    #[error("`{0}` must be positive")]
    ZeroBound(&'static str),
    /// A Redis URL that does not parse, or Redis support used outside a Tokio runtime.
    #[error("redis: {0}")]
    Redis(String),
    /// A configuration file that does not parse.
    #[error("config: {0}")]
    Parse(String),
}

/// A backend (Redis) call that failed. What the limiter does then is its
/// [`FailurePolicy`](crate::FailurePolicy).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// The call took longer than the configured timeout.
    #[error("the backend did not answer in time")]
    Timeout,
    /// The backend was recently unreachable; the limiter did not try again yet.
    #[error("the backend is marked down after a recent failure")]
    CircuitOpen,
    /// The backend answered with an error, or the connection failed.
    #[error("backend error: {0}")]
    Backend(String),
    /// The backend answered something the limiter does not understand.
    #[error("unexpected backend reply")]
    Protocol,
}

impl BackendError {
    /// A short stable label for metrics and decisions: `timeout`, `circuit_open`, `error`, `protocol`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::CircuitOpen => "circuit_open",
            Self::Backend(_) => "error",
            Self::Protocol => "protocol",
        }
    }
}
