//! The primitive layer: the only place that calls ring's AEAD, HKDF and HMAC. The keyring, the envelope
//! encryptor and the local KMS all go through these functions, and the Wycheproof tests exercise them directly.
//!
//! ring supports 96-bit nonces and 128-bit tags only, and AES with 128- or 256-bit keys; msec uses 256-bit keys
//! for both AEADs.

use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::Error;

/// Length of every msec key (AEAD root keys, data keys, HMAC keys): 256 bits.
pub const KEY_LEN: usize = 32;
/// AEAD nonce length (ring supports only 96-bit nonces).
pub const NONCE_LEN: usize = 12;
/// AEAD tag length.
pub const TAG_LEN: usize = 16;

/// What a key is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Algorithm {
    /// AES-256-GCM with a per-message key derived by HKDF-SHA256 (the default).
    #[serde(rename = "aes-256-gcm")]
    Aes256Gcm,
    /// ChaCha20-Poly1305 with a per-message key derived by HKDF-SHA256 (fast without AES hardware).
    #[serde(rename = "chacha20-poly1305")]
    ChaCha20Poly1305,
    /// HMAC-SHA256: blind indexes and pseudonyms; never encrypts.
    #[serde(rename = "hmac-sha256")]
    HmacSha256,
}

impl Algorithm {
    /// True for the two encryption algorithms.
    pub fn is_aead(self) -> bool {
        matches!(self, Algorithm::Aes256Gcm | Algorithm::ChaCha20Poly1305)
    }

    /// The name used in keyring files and the CLI.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Aes256Gcm => "aes-256-gcm",
            Algorithm::ChaCha20Poly1305 => "chacha20-poly1305",
            Algorithm::HmacSha256 => "hmac-sha256",
        }
    }

    /// Parses [`Algorithm::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        [Algorithm::Aes256Gcm, Algorithm::ChaCha20Poly1305, Algorithm::HmacSha256]
            .into_iter()
            .find(|a| a.name() == name)
    }

    fn ring_aead(self) -> Option<&'static aead::Algorithm> {
        match self {
            Algorithm::Aes256Gcm => Some(&aead::AES_256_GCM),
            Algorithm::ChaCha20Poly1305 => Some(&aead::CHACHA20_POLY1305),
            Algorithm::HmacSha256 => None,
        }
    }
}

impl std::fmt::Display for Algorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The ring AEAD algorithm behind an msec [`Algorithm`] (`None` for HMAC).
pub fn ring_algorithm(algorithm: Algorithm) -> Option<&'static aead::Algorithm> {
    algorithm.ring_aead()
}

/// Encrypts `in_out` in place and returns the tag. This is the raw AEAD call (no key derivation): the nonce must
/// never repeat under `key`. The keyring only calls it with a fresh per-message key.
pub fn seal(
    algorithm: Algorithm,
    key: &[u8],
    nonce: [u8; NONCE_LEN],
    aad: &[u8],
    in_out: &mut [u8],
) -> Result<[u8; TAG_LEN], Error> {
    let alg = algorithm.ring_aead().ok_or(Error::Keyring("not an AEAD algorithm"))?;
    seal_with(alg, key, nonce, aad, in_out)
}

/// [`seal`] over any ring AEAD algorithm (the Wycheproof tests also run AES-128-GCM vectors through it).
pub fn seal_with(
    algorithm: &'static aead::Algorithm,
    key: &[u8],
    nonce: [u8; NONCE_LEN],
    aad: &[u8],
    in_out: &mut [u8],
) -> Result<[u8; TAG_LEN], Error> {
    let unbound = UnboundKey::new(algorithm, key).map_err(|_| Error::Keyring("invalid AEAD key length"))?;
    let key = LessSafeKey::new(unbound);
    let tag = key
        .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), in_out)
        .map_err(|_| Error::Decrypt)?;
    let mut out = [0u8; TAG_LEN];
    out.copy_from_slice(tag.as_ref());
    Ok(out)
}

/// Decrypts `in_out` in place after checking `tag`; on failure the error is [`Error::Decrypt`] and the buffer
/// must be discarded.
pub fn open(
    algorithm: Algorithm,
    key: &[u8],
    nonce: [u8; NONCE_LEN],
    aad: &[u8],
    in_out: &mut [u8],
    tag: &[u8; TAG_LEN],
) -> Result<(), Error> {
    let alg = algorithm.ring_aead().ok_or(Error::Keyring("not an AEAD algorithm"))?;
    open_with(alg, key, nonce, aad, in_out, tag)
}

/// [`open`] over any ring AEAD algorithm.
pub fn open_with(
    algorithm: &'static aead::Algorithm,
    key: &[u8],
    nonce: [u8; NONCE_LEN],
    aad: &[u8],
    in_out: &mut [u8],
    tag: &[u8; TAG_LEN],
) -> Result<(), Error> {
    let unbound = UnboundKey::new(algorithm, key).map_err(|_| Error::Keyring("invalid AEAD key length"))?;
    let key = LessSafeKey::new(unbound);
    key.open_in_place_separate_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(aad),
        aead::Tag::from(*tag),
        in_out,
        0..,
    )
    .map(|_| ())
    .map_err(|_| Error::Decrypt)
}

struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// HKDF-SHA256-Expand with `prk` (a uniformly random 32-byte key, so the extract step is not needed: RFC 5869
/// §3.3) and `info` into `out` (at most 255 × 32 bytes).
pub(crate) fn hkdf_expand(prk: &hkdf::Prk, info: &[&[u8]], out: &mut [u8]) -> Result<(), Error> {
    prk.expand(info, Len(out.len()))
        .and_then(|okm| okm.fill(out))
        .map_err(|_| Error::Keyring("HKDF output too long"))
}

/// The HKDF PRK of a root key.
pub(crate) fn prk(key: &[u8]) -> hkdf::Prk {
    hkdf::Prk::new_less_safe(hkdf::HKDF_SHA256, key)
}

/// Fills `out` from the operating system's CSPRNG.
pub(crate) fn fill_random(rng: &SystemRandom, out: &mut [u8]) -> Result<(), Error> {
    rng.fill(out).map_err(|_| Error::Rng)
}

/// A fresh random 256-bit key.
pub(crate) fn random_key(rng: &SystemRandom) -> Result<Zeroizing<[u8; KEY_LEN]>, Error> {
    let mut k = Zeroizing::new([0u8; KEY_LEN]);
    fill_random(rng, k.as_mut())?;
    Ok(k)
}
