//! The ciphertext format (binary and text) and the per-message sealing every msec ciphertext goes through.
//! The byte-level table is in the crate documentation.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hkdf;
use ring::rand::SystemRandom;
use zeroize::Zeroizing;

use crate::error::Error;
use crate::key::KeyId;
use crate::primitive::{self, Algorithm, KEY_LEN, NONCE_LEN, TAG_LEN};

/// The format version this build writes and reads.
pub const VERSION: u8 = 1;
/// Per-message HKDF salt length.
pub const SALT_LEN: usize = 16;
/// Key commitment length.
pub const COMMIT_LEN: usize = 32;
/// The text prefix of every ciphertext.
pub const TEXT_PREFIX: &str = "msec:v1:";

/// HKDF info labels for the message key and the key commitment: two independent 32-byte expansions. At 15 bytes,
/// label + 34-byte keyring header + HKDF's counter byte fit one SHA-256 block, so each costs two compressions
/// (cheaper than one 64-byte expansion, whose second block re-hashes the first).
const HKDF_KEY_LABEL: &[u8] = b"msec/v1 msg key";
const HKDF_COMMIT_LABEL: &[u8] = b"msec/v1 msg cmt";

/// Derives the message key and the commitment from the root key and the header up to the end of the nonce.
fn derive(prk: &hkdf::Prk, header: &[u8], out: &mut [u8; KEY_LEN + COMMIT_LEN]) -> Result<(), Error> {
    let (key, commit) = out.split_at_mut(KEY_LEN);
    primitive::hkdf_expand(prk, &[HKDF_KEY_LABEL, header], key)?;
    primitive::hkdf_expand(prk, &[HKDF_COMMIT_LABEL, header], commit)
}
/// Bytes after the key reference and before the ciphertext body: salt, nonce, commitment.
const TAIL_HEADER: usize = SALT_LEN + NONCE_LEN + COMMIT_LEN;

const SUITE_AES: u8 = 0x01;
const SUITE_CHACHA: u8 = 0x02;
const SUITE_ENVELOPE: u8 = 0x10;

fn suite_byte(algorithm: Algorithm, envelope: bool) -> Result<u8, Error> {
    let base = match algorithm {
        Algorithm::Aes256Gcm => SUITE_AES,
        Algorithm::ChaCha20Poly1305 => SUITE_CHACHA,
        Algorithm::HmacSha256 => return Err(Error::Keyring("not an AEAD algorithm")),
    };
    Ok(if envelope { base | SUITE_ENVELOPE } else { base })
}

fn suite_algorithm(suite: u8) -> Result<(Algorithm, bool), Error> {
    match suite {
        SUITE_AES => Ok((Algorithm::Aes256Gcm, false)),
        SUITE_CHACHA => Ok((Algorithm::ChaCha20Poly1305, false)),
        s if s == SUITE_AES | SUITE_ENVELOPE => Ok((Algorithm::Aes256Gcm, true)),
        s if s == SUITE_CHACHA | SUITE_ENVELOPE => Ok((Algorithm::ChaCha20Poly1305, true)),
        _ => Err(Error::UnsupportedSuite(suite)),
    }
}

/// Which key decrypts a ciphertext.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRef<'a> {
    /// A key of a keyring, by id.
    Keyring(KeyId),
    /// A data key wrapped by a KMS, carried inside the ciphertext (envelope encryption).
    Envelope(&'a [u8]),
}

/// A parsed, structurally valid msec ciphertext (not yet authenticated). Build one with
/// [`Ciphertext::from_bytes`] or by parsing the text form (`str::parse` / [`Ciphertext::from_text`]); print the
/// text form with `Display` / [`Ciphertext::to_text`].
#[derive(Clone, PartialEq, Eq)]
pub struct Ciphertext {
    bytes: Vec<u8>,
    algorithm: Algorithm,
    /// Offset of the salt (the end of the key reference).
    salt_at: usize,
    envelope: bool,
}

impl Ciphertext {
    /// Parses the binary form.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, Error> {
        let (&version, rest) = bytes.split_first().ok_or(Error::Malformed("empty"))?;
        if version != VERSION {
            return Err(Error::UnsupportedVersion(version));
        }
        let (&suite, _) = rest.split_first().ok_or(Error::Malformed("truncated header"))?;
        let (algorithm, envelope) = suite_algorithm(suite)?;
        let salt_at = if envelope {
            let len = bytes.get(2..4).ok_or(Error::Malformed("truncated header"))?;
            let w = usize::from(u16::from_be_bytes([len[0], len[1]]));
            if w == 0 {
                return Err(Error::Malformed("empty wrapped data key"));
            }
            4 + w
        } else {
            6
        };
        if bytes.len() < salt_at + TAIL_HEADER + TAG_LEN {
            return Err(Error::Malformed("truncated"));
        }
        Ok(Self {
            bytes,
            algorithm,
            salt_at,
            envelope,
        })
    }

    /// Parses the text form `msec:v1:<key id>:<base64url>` or `msec:v1:env:<base64url>`.
    pub fn from_text(text: &str) -> Result<Self, Error> {
        let rest = text
            .strip_prefix("msec:")
            .ok_or(Error::Malformed("missing msec: prefix"))?;
        let (version, rest) = rest.split_once(':').ok_or(Error::Malformed("missing version"))?;
        if version != "v1" {
            return match version.strip_prefix('v').and_then(|v| v.parse::<u8>().ok()) {
                Some(v) => Err(Error::UnsupportedVersion(v)),
                None => Err(Error::Malformed("bad version")),
            };
        }
        let (key, b64) = rest.split_once(':').ok_or(Error::Malformed("missing key reference"))?;
        let bytes = URL_SAFE_NO_PAD
            .decode(b64)
            .map_err(|_| Error::Malformed("bad base64url"))?;
        let ct = Self::from_bytes(bytes)?;
        let consistent = match ct.key_ref() {
            KeyRef::Envelope(_) => key == "env",
            // Canonical form only (lowercase hex), so the text form has exactly one spelling.
            KeyRef::Keyring(id) => key == id.to_string(),
        };
        if !consistent {
            return Err(Error::Malformed("key reference in text does not match the ciphertext"));
        }
        Ok(ct)
    }

    /// The text form for database columns.
    pub fn to_text(&self) -> String {
        let mut s = String::with_capacity(TEXT_PREFIX.len() + 9 + self.bytes.len().div_ceil(3) * 4);
        s.push_str(TEXT_PREFIX);
        match self.key_ref() {
            KeyRef::Keyring(id) => s.push_str(&id.to_string()),
            KeyRef::Envelope(_) => s.push_str("env"),
        }
        s.push(':');
        URL_SAFE_NO_PAD.encode_string(&self.bytes, &mut s);
        s
    }

    /// The binary form.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The binary form, by value.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// The algorithm that sealed it.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The key that decrypts it.
    pub fn key_ref(&self) -> KeyRef<'_> {
        if self.envelope {
            KeyRef::Envelope(&self.bytes[4..self.salt_at])
        } else {
            let mut id = [0u8; 4];
            id.copy_from_slice(&self.bytes[2..6]);
            KeyRef::Keyring(KeyId(u32::from_be_bytes(id)))
        }
    }

    /// The keyring key id, or `None` for an envelope ciphertext.
    pub fn key_id(&self) -> Option<KeyId> {
        match self.key_ref() {
            KeyRef::Keyring(id) => Some(id),
            KeyRef::Envelope(_) => None,
        }
    }

    /// Length of the plaintext it holds.
    pub fn plaintext_len(&self) -> usize {
        self.bytes.len() - self.salt_at - TAIL_HEADER - TAG_LEN
    }
}

impl fmt::Display for Ciphertext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

impl fmt::Debug for Ciphertext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Ciphertext");
        d.field("algorithm", &self.algorithm);
        match self.key_ref() {
            KeyRef::Keyring(id) => d.field("key", &id),
            KeyRef::Envelope(w) => d.field("wrapped_key_len", &w.len()),
        };
        d.field("len", &self.bytes.len()).finish()
    }
}

impl FromStr for Ciphertext {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::from_text(s)
    }
}

/// Seals `plaintext` under the root key `prk` with a fresh per-message key.
pub(crate) fn seal(
    rng: &SystemRandom,
    prk: &hkdf::Prk,
    algorithm: Algorithm,
    key: KeyRef<'_>,
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Ciphertext, Error> {
    let envelope = matches!(key, KeyRef::Envelope(_));
    let suite = suite_byte(algorithm, envelope)?;
    let key_len = match key {
        KeyRef::Keyring(_) => 4,
        KeyRef::Envelope(w) => 2 + w.len(),
    };
    let mut out = Vec::with_capacity(2 + key_len + TAIL_HEADER + plaintext.len() + TAG_LEN);
    out.push(VERSION);
    out.push(suite);
    match key {
        KeyRef::Keyring(id) => out.extend_from_slice(&id.0.to_be_bytes()),
        KeyRef::Envelope(w) => {
            let len = u16::try_from(w.len())
                .map_err(|_| Error::Kms(crate::KmsError::Other("wrapped key too long".into())))?;
            if len == 0 {
                return Err(Error::Kms(crate::KmsError::Other("empty wrapped key".into())));
            }
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(w);
        }
    }
    let salt_at = out.len();
    let mut random = [0u8; SALT_LEN + NONCE_LEN];
    primitive::fill_random(rng, &mut random)?;
    out.extend_from_slice(&random);
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&random[SALT_LEN..]);

    let mut derived = Zeroizing::new([0u8; KEY_LEN + COMMIT_LEN]);
    derive(prk, &out, &mut derived)?;
    out.extend_from_slice(&derived[KEY_LEN..]);
    let body_at = out.len();

    let mut full_aad = Vec::with_capacity(body_at + aad.len());
    full_aad.extend_from_slice(&out);
    full_aad.extend_from_slice(aad);

    out.extend_from_slice(plaintext);
    let tag = primitive::seal(algorithm, &derived[..KEY_LEN], nonce, &full_aad, &mut out[body_at..])?;
    out.extend_from_slice(&tag);
    Ok(Ciphertext {
        bytes: out,
        algorithm,
        salt_at,
        envelope,
    })
}

/// Opens `ct` with the root key `prk`: re-derives the message key, checks the key commitment in constant time,
/// then authenticates and decrypts.
pub(crate) fn open(prk: &hkdf::Prk, ct: &Ciphertext, aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
    let nonce_at = ct.salt_at + SALT_LEN;
    let commit_at = nonce_at + NONCE_LEN;
    let body_at = commit_at + COMMIT_LEN;
    let tag_at = ct.bytes.len() - TAG_LEN;

    let mut derived = Zeroizing::new([0u8; KEY_LEN + COMMIT_LEN]);
    derive(prk, &ct.bytes[..commit_at], &mut derived)?;
    if !msec_core::secret::ct_eq(&derived[KEY_LEN..], &ct.bytes[commit_at..body_at]) {
        return Err(Error::Decrypt);
    }
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&ct.bytes[nonce_at..commit_at]);
    let mut tag = [0u8; TAG_LEN];
    tag.copy_from_slice(&ct.bytes[tag_at..]);

    let mut full_aad = Vec::with_capacity(body_at + aad.len());
    full_aad.extend_from_slice(&ct.bytes[..body_at]);
    full_aad.extend_from_slice(aad);

    let mut buf = Zeroizing::new(ct.bytes[body_at..tag_at].to_vec());
    primitive::open(ct.algorithm, &derived[..KEY_LEN], nonce, &full_aad, &mut buf, &tag)?;
    Ok(buf)
}
