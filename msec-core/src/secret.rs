//! Secrets that cannot leak by accident: zeroized on drop, `[REDACTED]` in `Debug`, read only through a greppable
//! `expose_secret()`, compared in constant time.
//!
//! ```
//! use msec_core::secret::SecretString;
//!
//! let s = SecretString::new("hunter2-hunter2".to_string());
//! assert_eq!(format!("{s:?}"), "SecretString([REDACTED])");
//! assert!(s.ct_eq("hunter2-hunter2"));
//! assert_eq!(s.expose_secret(), "hunter2-hunter2");
//! ```

use std::fmt;

use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// Compares two byte strings in time that depends only on their lengths.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// Secret bytes (keys, peppers, client secrets).
#[derive(Clone)]
pub struct SecretBytes(Zeroizing<Vec<u8>>);

impl SecretBytes {
    /// Wraps `bytes`.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }
    /// Reads the secret. Every call site is a place a secret is used: keep them few and greppable.
    pub fn expose_secret(&self) -> &[u8] {
        &self.0
    }
    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// Constant-time equality with `other`.
    pub fn ct_eq(&self, other: &[u8]) -> bool {
        ct_eq(&self.0, other)
    }
}

impl From<Vec<u8>> for SecretBytes {
    fn from(v: Vec<u8>) -> Self {
        Self::new(v)
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretBytes([REDACTED])")
    }
}

/// A secret string (passwords, client secrets, API keys in transit).
#[derive(Clone)]
pub struct SecretString(Zeroizing<String>);

impl SecretString {
    /// Wraps `s`.
    pub fn new(s: String) -> Self {
        Self(Zeroizing::new(s))
    }
    /// Reads the secret.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
    /// Constant-time equality with `other`.
    pub fn ct_eq(&self, other: &str) -> bool {
        ct_eq(self.0.as_bytes(), other.as_bytes())
    }
}

impl From<String> for SecretString {
    fn from(s: String) -> Self {
        Self::new(s)
    }
}

impl From<&str> for SecretString {
    fn from(s: &str) -> Self {
        Self::new(s.to_owned())
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString([REDACTED])")
    }
}
