//! Keyed pseudonymisation (GDPR art. 4(5)): a stable token per value that cannot be linked back to the value
//! without the key. Analytics can join on pseudonyms; deleting the key anonymises every pseudonym at once.
//!
//! ```
//! use msec_crypto::{Algorithm, Keyring};
//!
//! let mut keyring = Keyring::new();
//! let key = keyring.add_key(Algorithm::HmacSha256)?;
//! let p = keyring.pseudonymizer(key)?;
//! let a = p.pseudonym("user", "alice@example.org");
//! assert_eq!(a, p.pseudonym("user", "alice@example.org"));     // stable
//! assert_ne!(a, p.pseudonym("customer", "alice@example.org")); // one namespace per purpose
//! assert!(a.starts_with("ps_") && a.len() == 3 + 22);
//! # Ok::<(), msec_crypto::Error>(())
//! ```

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;

use crate::error::Error;

const LABEL: &[u8] = b"msec-pseudonym/v1";

/// Maps values to keyed pseudonyms: HMAC-SHA256 over (namespace, value), 128 bits, base64url with a `ps_` prefix.
#[derive(Clone)]
pub struct Pseudonymizer {
    key: hmac::Key,
}

impl fmt::Debug for Pseudonymizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pseudonymizer([REDACTED])")
    }
}

impl Pseudonymizer {
    /// A pseudonymiser under a 32-byte key.
    pub fn new(key: &msec_core::secret::SecretBytes) -> Result<Self, Error> {
        if key.len() != crate::primitive::KEY_LEN {
            return Err(Error::Keyring("pseudonymisation key must be 32 bytes"));
        }
        Ok(Self::from_ring_key(hmac::Key::new(
            hmac::HMAC_SHA256,
            key.expose_secret(),
        )))
    }

    pub(crate) fn from_ring_key(key: hmac::Key) -> Self {
        Self { key }
    }

    /// The full 256-bit pseudonym of `value` in `namespace`.
    pub fn pseudonym_bytes(&self, namespace: &str, value: &[u8]) -> [u8; 32] {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(LABEL);
        ctx.update(&u32::try_from(namespace.len()).unwrap_or(u32::MAX).to_be_bytes());
        ctx.update(namespace.as_bytes());
        ctx.update(value);
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.sign().as_ref());
        out
    }

    /// The text pseudonym of `value` in `namespace`: `ps_` and 128 bits in base64url (25 characters).
    pub fn pseudonym(&self, namespace: &str, value: &str) -> String {
        let b = self.pseudonym_bytes(namespace, value.as_bytes());
        format!("ps_{}", URL_SAFE_NO_PAD.encode(&b[..16]))
    }
}
