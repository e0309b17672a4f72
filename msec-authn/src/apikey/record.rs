//! [`ApiKeyRecord`]: what a store keeps per key; [`ApiKeySpec`]: how a key and its record are made.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::ApiKeyError;
use super::digest::{DigestAlg, KeyDigest, KeyHasher};
use super::format::{ApiKey, valid_key_id, valid_prefix};

/// What a store keeps for one key: never the key, only its digest. Serialises as one JSON object (the line
/// `msec apikey new` prints), times in Unix seconds:
///
/// ```json
/// {"key_id":"3kTMd9XqPzA","prefix":"sk_live","digest_alg":"sha256","digest":"q1b...","subject":"billing-bot",
///  "scopes":["orders:read"],"tenant":null,"created_at":1760000000,"expires_at":1767776000,"revoked":false}
/// ```
///
/// A principal may hold several active keys (one record each, same `subject`), so keys rotate without downtime.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ApiKeyRecord {
    /// The public key id embedded in the key.
    pub key_id: String,
    /// The key's prefix (`sk_live`).
    pub prefix: String,
    /// How [`digest`](Self::digest) was computed.
    pub digest_alg: DigestAlg,
    /// The digest of the whole key.
    pub digest: KeyDigest,
    /// Who the key acts for: the principal's subject.
    pub subject: String,
    /// Scopes granted to the key.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Tenant, for multi-tenant services.
    #[serde(default)]
    pub tenant: Option<String>,
    /// When the key was made (Unix seconds).
    pub created_at: u64,
    /// When the key stops working (Unix seconds), if it does.
    #[serde(default)]
    pub expires_at: Option<u64>,
    /// True once revoked.
    #[serde(default)]
    pub revoked: bool,
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl ApiKeyRecord {
    /// Checks the record's fields: key id and prefix shapes, a non-empty subject.
    pub fn validate(&self) -> Result<(), ApiKeyError> {
        if !valid_key_id(&self.key_id) {
            return Err(ApiKeyError::InvalidRecord(format!(
                "key_id {:?} is not 11 base62 characters",
                self.key_id
            )));
        }
        if !valid_prefix(&self.prefix) {
            return Err(ApiKeyError::InvalidRecord(format!(
                "key {}: invalid prefix",
                self.key_id
            )));
        }
        if self.subject.is_empty() {
            return Err(ApiKeyError::InvalidRecord(format!(
                "key {}: empty subject",
                self.key_id
            )));
        }
        Ok(())
    }

    /// The record as one line of JSON.
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// True when the key has expired at `now`.
    pub fn is_expired_at(&self, now: SystemTime) -> bool {
        self.expires_at.is_some_and(|e| unix(now) >= e)
    }
}

/// A new key and the record to store for it. Show the key to its owner once; store only the record.
#[derive(Debug)]
#[non_exhaustive]
pub struct IssuedApiKey {
    /// The key (secret).
    pub key: ApiKey,
    /// The record (no secret).
    pub record: ApiKeyRecord,
}

/// What a new key is for: prefix, subject, scopes, tenant, expiry.
///
/// ```
/// use msec_authn::apikey::{ApiKeySpec, KeyHasher};
/// use std::time::{Duration, SystemTime};
///
/// let issued = ApiKeySpec::new("sk_live")
///     .subject("billing-bot")
///     .scopes(["orders:read", "orders:write"])
///     .expires_in(Duration::from_secs(90 * 86_400))
///     .issue(&KeyHasher::sha256(), SystemTime::now())?;
/// assert_eq!(issued.record.key_id, issued.key.key_id());
/// assert!(!issued.record.to_json_line().contains(issued.key.expose_secret()));
/// # Ok::<(), msec_authn::apikey::ApiKeyError>(())
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct ApiKeySpec {
    prefix: String,
    subject: Option<String>,
    scopes: Vec<String>,
    tenant: Option<String>,
    expires_in: Option<Duration>,
}

impl ApiKeySpec {
    /// A key with `prefix` (subject defaults to the key id, no scopes, no expiry).
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
            subject: None,
            scopes: Vec::new(),
            tenant: None,
            expires_in: None,
        }
    }

    /// The principal's subject.
    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    /// The scopes (sorted and de-duplicated in the record).
    pub fn scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// The tenant.
    pub fn tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }

    /// The key expires this long after it is issued.
    pub fn expires_in(mut self, d: Duration) -> Self {
        self.expires_in = Some(d);
        self
    }

    /// Generates the key and its record, digested with `hasher`, created at `now`.
    pub fn issue(self, hasher: &KeyHasher, now: SystemTime) -> Result<IssuedApiKey, ApiKeyError> {
        let key = ApiKey::generate(&self.prefix)?;
        if self.subject.as_deref() == Some("") {
            return Err(ApiKeyError::InvalidRecord("empty subject".into()));
        }
        if let Some(s) = self
            .scopes
            .iter()
            .find(|s| s.is_empty() || s.contains(char::is_whitespace))
        {
            return Err(ApiKeyError::InvalidRecord(format!("invalid scope {s:?}")));
        }
        let mut scopes = self.scopes;
        scopes.sort_unstable();
        scopes.dedup();
        let created_at = unix(now);
        let expires_at = match self.expires_in {
            None => None,
            Some(d) => Some(
                created_at
                    .checked_add(d.as_secs())
                    .ok_or_else(|| ApiKeyError::InvalidRecord("expiry out of range".into()))?,
            ),
        };
        let record = ApiKeyRecord {
            key_id: key.key_id().to_owned(),
            prefix: self.prefix,
            digest_alg: hasher.alg(),
            digest: hasher.digest(key.expose_secret()),
            subject: self.subject.unwrap_or_else(|| key.key_id().to_owned()),
            scopes,
            tenant: self.tenant,
            created_at,
            expires_at,
            revoked: false,
        };
        Ok(IssuedApiKey { key, record })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips_as_json() {
        let issued = ApiKeySpec::new("sk_test")
            .subject("bot")
            .scopes(["b", "a", "a"])
            .tenant("t1")
            .expires_in(Duration::from_secs(60))
            .issue(&KeyHasher::sha256(), SystemTime::UNIX_EPOCH + Duration::from_secs(1000))
            .unwrap_or_else(|e| panic!("{e}"));
        let line = issued.record.to_json_line();
        let back: ApiKeyRecord = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, issued.record);
        assert_eq!(back.scopes, ["a", "b"]);
        assert_eq!(back.expires_at, Some(1060));
        assert!(back.validate().is_ok());
        assert!(back.is_expired_at(SystemTime::UNIX_EPOCH + Duration::from_secs(1060)));
        assert!(!back.is_expired_at(SystemTime::UNIX_EPOCH + Duration::from_secs(1059)));
        assert!(
            ApiKeySpec::new("sk")
                .scopes(["a b"])
                .issue(&KeyHasher::sha256(), SystemTime::now())
                .is_err()
        );
    }
}
