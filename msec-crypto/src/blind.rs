//! Blind indexes: equality search on encrypted columns.
//!
//! A blind index is HMAC-SHA256, under a key separate from the encryption keys, of a normalised value and the
//! column it belongs to, truncated to a chosen number of bits. Store it in a column next to the ciphertext and
//! query `WHERE email_idx = $1`; then decrypt the (few) candidate rows and compare, because a truncated index has
//! false positives by design.
//!
//! Choosing the bits: with `n` distinct values and `b` bits, each index value is shared by about
//! `max(1, n / 2^b)` values. Fewer bits leak less (an attacker who guesses a value learns only a bucket) but return
//! more false positives; more bits make lookups exact but let an attacker with a candidate list confirm guesses.
//! CipherSweet's guidance applies: aim for a few false positives per lookup at the expected row count.
//!
//! ```
//! use msec_crypto::{Algorithm, BlindIndexOptions, Keyring};
//!
//! let mut keyring = Keyring::generate(Algorithm::Aes256Gcm)?;
//! let idx_key = keyring.add_key(Algorithm::HmacSha256)?;
//! let idx = keyring.blind_index(idx_key, BlindIndexOptions::new("users.email").bits(32)?.trim().lowercase())?;
//! assert_eq!(idx.compute("Alice@Example.org "), idx.compute("alice@example.org"));
//! assert_eq!(idx.compute("alice@example.org").to_hex().len(), 8);
//! # Ok::<(), msec_crypto::Error>(())
//! ```

use std::fmt;

use ring::hmac;
use serde::{Serialize, Serializer};

use crate::error::Error;

const LABEL: &[u8] = b"msec-blind-index/v1";

/// How values are normalised before indexing, the column domain, and the output size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlindIndexOptions {
    domain: String,
    bits: u16,
    trim: bool,
    lowercase: bool,
    collapse_whitespace: bool,
    digits_only: bool,
}

impl BlindIndexOptions {
    /// Options for the column `domain` (e.g. `"users.email"`; the same value in two domains gets unrelated
    /// indexes), 32 bits, no normalisation.
    pub fn new(domain: impl Into<String>) -> Self {
        Self {
            domain: domain.into(),
            bits: 32,
            trim: false,
            lowercase: false,
            collapse_whitespace: false,
            digits_only: false,
        }
    }

    /// Truncates the index to `bits` (1 to 256).
    pub fn bits(mut self, bits: u16) -> Result<Self, Error> {
        if !(1..=256).contains(&bits) {
            return Err(Error::Keyring("blind index bits must be between 1 and 256"));
        }
        self.bits = bits;
        Ok(self)
    }

    /// Removes leading and trailing whitespace.
    pub fn trim(mut self) -> Self {
        self.trim = true;
        self
    }

    /// Lowercases (Unicode lowercase).
    pub fn lowercase(mut self) -> Self {
        self.lowercase = true;
        self
    }

    /// Turns every run of whitespace into one space.
    pub fn collapse_whitespace(mut self) -> Self {
        self.collapse_whitespace = true;
        self
    }

    /// Keeps only ASCII digits (phone numbers, card numbers, national ids written with separators).
    pub fn digits_only(mut self) -> Self {
        self.digits_only = true;
        self
    }

    /// The number of output bits.
    pub fn output_bits(&self) -> u16 {
        self.bits
    }

    /// Applies the normalisation.
    pub fn normalize(&self, value: &str) -> String {
        let mut v: String = if self.trim {
            value.trim().to_owned()
        } else {
            value.to_owned()
        };
        if self.collapse_whitespace {
            v = v.split_whitespace().collect::<Vec<_>>().join(" ");
        }
        if self.lowercase {
            v = v.to_lowercase();
        }
        if self.digits_only {
            v.retain(|c| c.is_ascii_digit());
        }
        v
    }
}

/// Computes blind indexes for one column. Build with [`Keyring::blind_index`](crate::Keyring::blind_index) or
/// [`BlindIndex::new`].
#[derive(Clone)]
pub struct BlindIndex {
    key: hmac::Key,
    options: BlindIndexOptions,
}

impl fmt::Debug for BlindIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlindIndex")
            .field("key", &"[REDACTED]")
            .field("options", &self.options)
            .finish()
    }
}

impl BlindIndex {
    /// A blind index under a 32-byte HMAC key.
    pub fn new(key: &msec_core::secret::SecretBytes, options: BlindIndexOptions) -> Result<Self, Error> {
        if key.len() != crate::primitive::KEY_LEN {
            return Err(Error::Keyring("blind index key must be 32 bytes"));
        }
        Ok(Self::from_ring_key(
            hmac::Key::new(hmac::HMAC_SHA256, key.expose_secret()),
            options,
        ))
    }

    pub(crate) fn from_ring_key(key: hmac::Key, options: BlindIndexOptions) -> Self {
        Self { key, options }
    }

    /// The options.
    pub fn options(&self) -> &BlindIndexOptions {
        &self.options
    }

    /// The index of `value` after normalisation.
    pub fn compute(&self, value: &str) -> BlindIndexValue {
        let normalized = zeroize::Zeroizing::new(self.options.normalize(value));
        self.compute_bytes(normalized.as_bytes())
    }

    /// The index of raw bytes (no normalisation).
    pub fn compute_bytes(&self, value: &[u8]) -> BlindIndexValue {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(LABEL);
        let domain = self.options.domain.as_bytes();
        ctx.update(&u32::try_from(domain.len()).unwrap_or(u32::MAX).to_be_bytes());
        ctx.update(domain);
        ctx.update(value);
        let tag = ctx.sign();
        let bits = usize::from(self.options.bits);
        let mut bytes = tag.as_ref()[..bits.div_ceil(8)].to_vec();
        let spare = bytes.len() * 8 - bits;
        if let Some(last) = bytes.last_mut() {
            *last &= 0xffu8 << spare;
        }
        BlindIndexValue {
            bytes,
            bits: self.options.bits,
        }
    }
}

/// A truncated blind index. Serialises as lowercase hex.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct BlindIndexValue {
    bytes: Vec<u8>,
    bits: u16,
}

impl BlindIndexValue {
    /// The index bytes (`ceil(bits / 8)` of them; unused low bits of the last byte are zero).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The number of significant bits.
    pub fn bits(&self) -> u16 {
        self.bits
    }

    /// Lowercase hex (for TEXT columns).
    pub fn to_hex(&self) -> String {
        self.bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The index as a signed 64-bit integer for a BIGINT column, when it has at most 64 bits (big-endian, the
    /// significant bits in the low end).
    pub fn to_i64(&self) -> Option<i64> {
        if self.bits > 64 {
            return None;
        }
        let mut v: u64 = 0;
        for b in &self.bytes {
            v = (v << 8) | u64::from(*b);
        }
        let spare = self.bytes.len() * 8 - usize::from(self.bits);
        Some((v >> spare) as i64)
    }
}

impl fmt::Debug for BlindIndexValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlindIndexValue({}/{})", self.to_hex(), self.bits)
    }
}

impl fmt::Display for BlindIndexValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Serialize for BlindIndexValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}
