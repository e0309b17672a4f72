//! API keys: a recognisable, checksummed key format, digest-only storage, and the [`ApiKeyAuthenticator`].
//!
//! # The key
//!
//! `<prefix>_<key id><secret><checksum>`, e.g. `sk_live_3kTMd9XqPzAb0Vw...`:
//!
//! - `prefix`: 1–32 characters of `a-z`, `0-9`, `_` (`sk_live`, `sk_test`, `acme_ci`), so secret scanners and
//!   humans recognise the key and a service can accept only its environment's keys;
//! - then 50 base62 characters: an 11-character **key id** (public; the record is looked up by it and the audit
//!   log names it), a 33-character **secret** (~196 bits from the operating system's CSPRNG via
//!   `ring::rand::SystemRandom`), and a 6-character **CRC-32** of everything before it (as GitHub's tokens do),
//!   so a typo or a made-up key is refused before any store lookup.
//!
//! # The record
//!
//! A store keeps an [`ApiKeyRecord`] per key: the digest of the whole key ([`KeyHasher`]: SHA-256, or
//! HMAC-SHA256 with a server-side pepper), the principal's subject, scopes, tenant, creation and expiry times
//! and a revoked flag. Never the key. A principal may have several active keys, for rotation.
//!
//! # Checking a key
//!
//! Checksum → accepted prefix → digest → lookup by key id → constant-time digest comparison → revoked? →
//! expired? The [`ApiKeyAuthenticator`] does this for requests; an in-memory store answers synchronously, so
//! the layer needs no allocation for the future and no await.
//!
//! | failure                                                         | code                           | HTTP |
//! |-----------------------------------------------------------------|--------------------------------|------|
//! | bad format or checksum, prefix not accepted, unknown key id, wrong secret | `invalid_api_key` | 401  |
//! | revoked                                                         | `api_key_revoked`              | 401  |
//! | expired                                                         | `api_key_expired`              | 401  |
//! | the store is down or failing                                    | `credential_store_unavailable` | 503  |
//!
//! ```
//! use msec_authn::apikey::{ApiKeyAuthenticator, ApiKeySpec, ApiKeyStore, KeyHasher, MemoryApiKeyStore};
//! use msec_authn::{Attempt, Authenticator, RequestHead};
//! use std::time::SystemTime;
//!
//! let hasher = KeyHasher::sha256();
//! let issued = ApiKeySpec::new("sk_live").subject("billing-bot").scopes(["orders:read"])
//!     .issue(&hasher, SystemTime::now())?;
//! let store = MemoryApiKeyStore::from_records([issued.record])?;
//! let authn = ApiKeyAuthenticator::new(store, hasher);
//!
//! let req = http::Request::builder().header("x-api-key", issued.key.expose_secret()).body(())?;
//! let Attempt::Claimed(verdict) = authn.authenticate(&RequestHead::from_request(&req)) else { panic!() };
//! let principal = verdict.into_ready().ok().and_then(Result::ok).map(|a| a.principal);
//! assert_eq!(principal.map(|p| p.subject.clone()).as_deref(), Some("billing-bot"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod authenticator;
mod digest;
mod format;
#[cfg(feature = "postgres")]
mod postgres;
mod record;
mod store;

pub use authenticator::{ApiKeyAuthenticator, DEFAULT_HEADER};
pub use digest::{DigestAlg, KeyDigest, KeyHasher, MIN_PEPPER_LEN};
pub use format::{
    ApiKey, BODY_LEN, CHECKSUM_LEN, KEY_ID_LEN, KeyFormatError, MAX_KEY_LEN, MAX_PREFIX_LEN, ParsedKey, SECRET_LEN,
    parse_key, valid_key_id, valid_prefix,
};
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use postgres::PgApiKeyStore;
pub use record::{ApiKeyRecord, ApiKeySpec, IssuedApiKey};
pub use store::{ApiKeyStore, MemoryApiKeyStore, StoreError, StoreErrorKind, StoreFuture};

/// Why an API key, record, store or authenticator could not be made. Returned at construction or load time,
/// never per request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApiKeyError {
    /// A prefix is not 1–32 characters of `a-z`, `0-9`, `_` starting with a letter.
    #[error("invalid API key prefix {0:?}: expected 1-32 characters of a-z, 0-9 and _, starting with a letter")]
    InvalidPrefix(String),
    /// The operating system's random number generator failed.
    #[error("the system random number generator failed")]
    Random,
    /// A pepper is shorter than [`MIN_PEPPER_LEN`] bytes.
    #[error("the pepper is {0} bytes; at least 32 are required")]
    ShortPepper(usize),
    /// A record is invalid or a records file does not parse.
    #[error("invalid API key record: {0}")]
    InvalidRecord(String),
    /// A file could not be read.
    #[error("cannot read API key records: {0}")]
    Io(String),
    /// A setting is invalid (header name, table name, connection string).
    #[error("API key configuration: {0}")]
    Config(String),
}
