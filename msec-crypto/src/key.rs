//! Key ids, statuses and key material.

use std::fmt;
use std::str::FromStr;

use ring::hkdf;
use ring::hmac;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::primitive::{self, Algorithm, KEY_LEN};

/// A 32-bit key id, printed as 8 lowercase hex digits (`0a1b2c3d`). Ids are random, so a ciphertext from another
/// keyring (staging, another tenant) meets [`Error::UnknownKey`](crate::Error::UnknownKey) rather than a wrong key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId(pub u32);

impl Serialize for KeyId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for KeyId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl KeyId {
    /// The id as a number.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({:08x})", self.0)
    }
}

impl FromStr for KeyId {
    type Err = crate::Error;
    /// Parses 8 hex digits (what `Display` prints).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 8 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(crate::Error::Malformed("key id is not 8 hex digits"));
        }
        u32::from_str_radix(s, 16)
            .map(KeyId)
            .map_err(|_| crate::Error::Malformed("key id is not 8 hex digits"))
    }
}

/// What a key may still do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyStatus {
    /// Decrypts, and may be (or become) the primary that encrypts.
    Enabled,
    /// Decrypts old ciphertexts only; cannot be promoted. The state of a retired key while its data is rewrapped.
    DecryptOnly,
    /// Neither encrypts nor decrypts: its ciphertexts fail with [`Error::KeyDisabled`](crate::Error::KeyDisabled).
    /// Reversible (set it back to `DecryptOnly`), unlike removing the key.
    Disabled,
}

impl KeyStatus {
    /// The name used in files and the CLI: `enabled`, `decrypt-only`, `disabled`.
    pub fn name(self) -> &'static str {
        match self {
            KeyStatus::Enabled => "enabled",
            KeyStatus::DecryptOnly => "decrypt-only",
            KeyStatus::Disabled => "disabled",
        }
    }

    /// Parses [`KeyStatus::name`].
    pub fn from_name(s: &str) -> Option<Self> {
        [KeyStatus::Enabled, KeyStatus::DecryptOnly, KeyStatus::Disabled]
            .into_iter()
            .find(|k| k.name() == s)
    }
}

impl fmt::Display for KeyStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// 256 bits of key material plus the precomputed ring state derived from it. The raw bytes are zeroized on drop
/// and never printed. (ring's own expanded HMAC state is not zeroized by ring; it lives exactly as long as this.)
pub(crate) struct KeyMaterial {
    bytes: Zeroizing<[u8; KEY_LEN]>,
    derive: Derive,
}

enum Derive {
    Prk(hkdf::Prk),
    Hmac(hmac::Key),
}

impl KeyMaterial {
    pub(crate) fn new(algorithm: Algorithm, bytes: Zeroizing<[u8; KEY_LEN]>) -> Self {
        let derive = if algorithm.is_aead() {
            Derive::Prk(primitive::prk(bytes.as_ref()))
        } else {
            Derive::Hmac(hmac::Key::new(hmac::HMAC_SHA256, bytes.as_ref()))
        };
        Self { bytes, derive }
    }

    pub(crate) fn from_slice(algorithm: Algorithm, bytes: &[u8]) -> Result<Self, crate::Error> {
        if bytes.len() != KEY_LEN {
            return Err(crate::Error::Keyring("key material must be 32 bytes"));
        }
        let mut k = Zeroizing::new([0u8; KEY_LEN]);
        k.copy_from_slice(bytes);
        Ok(Self::new(algorithm, k))
    }

    pub(crate) fn expose_secret(&self) -> &[u8; KEY_LEN] {
        &self.bytes
    }

    pub(crate) fn prk(&self) -> Option<&hkdf::Prk> {
        match &self.derive {
            Derive::Prk(p) => Some(p),
            Derive::Hmac(_) => None,
        }
    }

    pub(crate) fn hmac(&self) -> Option<&hmac::Key> {
        match &self.derive {
            Derive::Hmac(k) => Some(k),
            Derive::Prk(_) => None,
        }
    }
}

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyMaterial([REDACTED])")
    }
}

/// What can be said about a key without revealing it (what `msec keyring show` prints).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyInfo {
    /// The key id.
    pub id: KeyId,
    /// The algorithm.
    pub algorithm: Algorithm,
    /// Its status.
    pub status: KeyStatus,
    /// True for the keyring's primary key.
    pub primary: bool,
    /// Creation time, Unix seconds.
    pub created_at: u64,
}
