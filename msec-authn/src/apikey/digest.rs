//! How keys are stored: [`KeyHasher`] (SHA-256, or HMAC-SHA256 with a server-side pepper) and [`KeyDigest`].

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use msec_core::secret::SecretBytes;
use ring::{digest, hmac};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::ApiKeyError;

/// The digest algorithm a record was made with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum DigestAlg {
    /// SHA-256 of the whole key.
    #[serde(rename = "sha256")]
    Sha256,
    /// HMAC-SHA256 of the whole key under a server-side pepper (a stolen table alone cannot be checked
    /// against candidate keys).
    #[serde(rename = "hmac-sha256")]
    HmacSha256,
}

impl DigestAlg {
    /// `sha256` or `hmac-sha256`, as in records and the PostgreSQL table.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sha256 => "sha256",
            Self::HmacSha256 => "hmac-sha256",
        }
    }

    /// The algorithm named `s`.
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "sha256" => Some(Self::Sha256),
            "hmac-sha256" => Some(Self::HmacSha256),
            _ => None,
        }
    }
}

/// The stored form of a key: 32 bytes, serialised as unpadded base64url. Compared in constant time only.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyDigest([u8; 32]);

impl KeyDigest {
    /// A digest from its bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// A digest from a byte slice (exactly 32 bytes).
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; 32]>::try_from(bytes).ok().map(Self)
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Constant-time equality.
    pub fn ct_eq(&self, other: &KeyDigest) -> bool {
        msec_core::secret::ct_eq(&self.0, &other.0)
    }
}

impl fmt::Debug for KeyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not a secret, but nothing a log needs either: enough to tell two apart.
        write!(f, "KeyDigest({}..)", &URL_SAFE_NO_PAD.encode(&self.0[..4]))
    }
}

impl Serialize for KeyDigest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&URL_SAFE_NO_PAD.encode(self.0))
    }
}

impl<'de> Deserialize<'de> for KeyDigest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let bytes = URL_SAFE_NO_PAD
            .decode(s.as_bytes())
            .map_err(|_| serde::de::Error::custom("digest is not unpadded base64url"))?;
        Self::from_slice(&bytes).ok_or_else(|| serde::de::Error::custom("digest is not 32 bytes"))
    }
}

#[derive(Clone)]
enum Inner {
    Sha256,
    Hmac(hmac::Key),
}

/// Turns keys into [`KeyDigest`]s. The same hasher must make records ([`ApiKeySpec::issue`]) and check them
/// ([`ApiKeyAuthenticator`]).
///
/// [`ApiKeySpec::issue`]: super::ApiKeySpec::issue
/// [`ApiKeyAuthenticator`]: super::ApiKeyAuthenticator
///
/// ```
/// use msec_authn::apikey::{DigestAlg, KeyHasher};
/// use msec_core::secret::SecretBytes;
/// let plain = KeyHasher::sha256();
/// let peppered = KeyHasher::hmac_sha256(&SecretBytes::new(vec![7; 32]))?;
/// assert_eq!(peppered.alg(), DigestAlg::HmacSha256);
/// assert_ne!(plain.digest("sk_x"), peppered.digest("sk_x"));
/// assert_eq!(format!("{peppered:?}"), "KeyHasher(hmac-sha256, pepper: [REDACTED])");
/// # Ok::<(), msec_authn::apikey::ApiKeyError>(())
/// ```
#[derive(Clone)]
pub struct KeyHasher(Inner);

impl fmt::Debug for KeyHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Inner::Sha256 => f.write_str("KeyHasher(sha256)"),
            Inner::Hmac(_) => f.write_str("KeyHasher(hmac-sha256, pepper: [REDACTED])"),
        }
    }
}

/// The shortest pepper accepted.
pub const MIN_PEPPER_LEN: usize = 32;

impl KeyHasher {
    /// SHA-256 of the key. Keys carry ~196 random bits, so a plain hash cannot be brute-forced; a pepper adds
    /// that a copy of the table alone cannot even confirm a leaked key.
    pub fn sha256() -> Self {
        Self(Inner::Sha256)
    }

    /// HMAC-SHA256 keyed with `pepper` (at least 32 bytes, kept outside the key store).
    pub fn hmac_sha256(pepper: &SecretBytes) -> Result<Self, ApiKeyError> {
        if pepper.len() < MIN_PEPPER_LEN {
            return Err(ApiKeyError::ShortPepper(pepper.len()));
        }
        Ok(Self(Inner::Hmac(hmac::Key::new(
            hmac::HMAC_SHA256,
            pepper.expose_secret(),
        ))))
    }

    /// The algorithm.
    pub fn alg(&self) -> DigestAlg {
        match self.0 {
            Inner::Sha256 => DigestAlg::Sha256,
            Inner::Hmac(_) => DigestAlg::HmacSha256,
        }
    }

    /// The digest of a whole key (prefix, key id, secret and checksum).
    pub fn digest(&self, key: &str) -> KeyDigest {
        let mut out = [0u8; 32];
        match &self.0 {
            Inner::Sha256 => out.copy_from_slice(digest::digest(&digest::SHA256, key.as_bytes()).as_ref()),
            Inner::Hmac(k) => out.copy_from_slice(hmac::sign(k, key.as_bytes()).as_ref()),
        }
        KeyDigest(out)
    }
}
