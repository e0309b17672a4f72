//! The keyring: keys with ids and statuses, one primary, encryption, decryption, rewrap, and the keyring file.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use msec_core::clock::{SharedClock, SystemClock};
use ring::rand::SystemRandom;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::blind::{BlindIndex, BlindIndexOptions};
use crate::context::Context;
use crate::error::{Error, KmsError};
use crate::format::{self, Ciphertext, KeyRef};
use crate::key::{KeyId, KeyInfo, KeyMaterial, KeyStatus};
use crate::kms::{Kms, KmsFuture};
use crate::primitive::{self, Algorithm};
use crate::pseudo::Pseudonymizer;

/// The `format` of a keyring file whose key material is wrapped by a KMS.
pub const FILE_FORMAT: &str = "msec-keyring/v1";
/// The `format` of a plaintext keyring file (tests only; see [`Keyring::danger_to_plaintext_json`]).
pub const PLAINTEXT_FILE_FORMAT: &str = "msec-keyring/v1+danger-plaintext";

const KMS_WRAP_LABEL: &[u8] = b"msec-kms-wrap/v1";

#[derive(Clone)]
struct Entry {
    algorithm: Algorithm,
    status: KeyStatus,
    created_at: u64,
    material: Arc<KeyMaterial>,
}

/// A set of keys with 32-bit ids, one of which (the primary) encrypts.
///
/// Rotation is two-phase, as in Tink: [`add_key`](Keyring::add_key) (ship the keyring to every replica so all of
/// them can decrypt the new key), then [`promote`](Keyring::promote) it. Old keys keep decrypting until they are
/// set to [`KeyStatus::Disabled`]; [`rewrap`](Keyring::rewrap) moves a ciphertext to the primary without handing
/// its plaintext to the caller.
///
/// Cloning is cheap (key material is shared and reference-counted). A keyring is immutable while shared: to
/// rotate in a running service, build the new keyring and swap it in (e.g. with `arc_swap::ArcSwap`).
///
/// ```
/// use msec_crypto::{Algorithm, Context, Error, Keyring, KeyStatus};
///
/// let mut keyring = Keyring::generate(Algorithm::Aes256Gcm)?;
/// let ctx = Context::new("users", "email", "42");
/// let old = keyring.encrypt(b"alice@example.org", &ctx)?;
///
/// let new_key = keyring.add_key(Algorithm::Aes256Gcm)?; // phase 1: every replica learns the key
/// let old_key = keyring.primary().unwrap();
/// keyring.promote(new_key)?;                              // phase 2: it starts encrypting
/// assert_eq!(&*keyring.decrypt(&old, &ctx)?, b"alice@example.org");
///
/// let moved = keyring.rewrap(&old, &ctx)?;               // no plaintext in the caller's hands
/// assert_eq!(moved.key_id(), Some(new_key));
/// keyring.set_status(old_key, KeyStatus::Disabled)?;
/// assert!(matches!(keyring.decrypt(&old, &ctx), Err(Error::KeyDisabled(_))));
/// assert!(matches!(keyring.decrypt(&old, &Context::new("users", "email", "43")), Err(Error::KeyDisabled(_))));
/// assert_eq!(&*keyring.decrypt(&moved, &ctx)?, b"alice@example.org");
/// # Ok::<(), msec_crypto::Error>(())
/// ```
#[derive(Clone)]
pub struct Keyring {
    keys: BTreeMap<KeyId, Entry>,
    primary: Option<KeyId>,
    rng: SystemRandom,
    clock: SharedClock,
}

impl Default for Keyring {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("primary", &self.primary)
            .field("keys", &self.keys())
            .finish()
    }
}

impl Keyring {
    /// An empty keyring (it cannot encrypt until a key is added).
    pub fn new() -> Self {
        Self {
            keys: BTreeMap::new(),
            primary: None,
            rng: SystemRandom::new(),
            clock: Arc::new(SystemClock),
        }
    }

    /// A keyring with one fresh primary key of `algorithm`.
    pub fn generate(algorithm: Algorithm) -> Result<Self, Error> {
        let mut k = Self::new();
        k.add_key(algorithm)?;
        Ok(k)
    }

    /// Uses `clock` for key creation times.
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    fn fresh_id(&self) -> Result<KeyId, Error> {
        loop {
            let mut b = [0u8; 4];
            primitive::fill_random(&self.rng, &mut b)?;
            let id = KeyId(u32::from_be_bytes(b));
            if id.0 != 0 && !self.keys.contains_key(&id) {
                return Ok(id);
            }
        }
    }

    /// Adds a fresh random key, enabled. The first encryption key of an empty keyring becomes the primary; any
    /// later one waits for [`promote`](Keyring::promote).
    pub fn add_key(&mut self, algorithm: Algorithm) -> Result<KeyId, Error> {
        let id = self.fresh_id()?;
        let material = KeyMaterial::new(algorithm, primitive::random_key(&self.rng)?);
        self.insert(id, algorithm, KeyStatus::Enabled, self.clock.unix_secs(), material)?;
        tracing::info!(key = %id, %algorithm, "msec-crypto: key added");
        Ok(id)
    }

    /// Adds a key with caller-chosen id and material (known-answer tests, migrations from another system).
    /// Dangerous: material that is not 32 uniformly random secret bytes breaks every guarantee of this crate.
    pub fn danger_import_key(
        &mut self,
        id: KeyId,
        algorithm: Algorithm,
        material: &[u8],
        status: KeyStatus,
    ) -> Result<(), Error> {
        let material = KeyMaterial::from_slice(algorithm, material)?;
        self.insert(id, algorithm, status, self.clock.unix_secs(), material)
    }

    fn insert(
        &mut self,
        id: KeyId,
        algorithm: Algorithm,
        status: KeyStatus,
        created_at: u64,
        material: KeyMaterial,
    ) -> Result<(), Error> {
        if self.keys.contains_key(&id) {
            return Err(Error::Keyring("duplicate key id"));
        }
        self.keys.insert(
            id,
            Entry {
                algorithm,
                status,
                created_at,
                material: Arc::new(material),
            },
        );
        if self.primary.is_none() && algorithm.is_aead() && status == KeyStatus::Enabled {
            self.primary = Some(id);
        }
        Ok(())
    }

    /// Makes `id` the primary: it encrypts from now on. It must be an enabled encryption key.
    pub fn promote(&mut self, id: KeyId) -> Result<(), Error> {
        let e = self.keys.get(&id).ok_or(Error::UnknownKey(id))?;
        if !e.algorithm.is_aead() {
            return Err(Error::WrongKeyKind(id));
        }
        if e.status != KeyStatus::Enabled {
            return Err(Error::Keyring("only an enabled key can become primary"));
        }
        let previous = self.primary.replace(id);
        tracing::info!(key = %id, previous = ?previous, "msec-crypto: key promoted to primary");
        metrics::counter!("msec_crypto_key_promotions_total").increment(1);
        Ok(())
    }

    /// Changes a key's status. The primary must stay enabled (promote another key first).
    pub fn set_status(&mut self, id: KeyId, status: KeyStatus) -> Result<(), Error> {
        if self.primary == Some(id) && status != KeyStatus::Enabled {
            return Err(Error::Keyring(
                "the primary key must stay enabled; promote another key first",
            ));
        }
        let e = self.keys.get_mut(&id).ok_or(Error::UnknownKey(id))?;
        e.status = status;
        tracing::info!(key = %id, %status, "msec-crypto: key status changed");
        Ok(())
    }

    /// Removes a disabled key for good: its ciphertexts then fail with [`Error::UnknownKey`].
    pub fn remove(&mut self, id: KeyId) -> Result<(), Error> {
        let e = self.keys.get(&id).ok_or(Error::UnknownKey(id))?;
        if e.status != KeyStatus::Disabled {
            return Err(Error::Keyring("only a disabled key can be removed"));
        }
        self.keys.remove(&id);
        tracing::info!(key = %id, "msec-crypto: key removed");
        Ok(())
    }

    /// The primary key's id.
    pub fn primary(&self) -> Option<KeyId> {
        self.primary
    }

    /// What is known about key `id` (no secrets).
    pub fn key(&self, id: KeyId) -> Option<KeyInfo> {
        self.keys.get(&id).map(|e| self.info(id, e))
    }

    fn info(&self, id: KeyId, e: &Entry) -> KeyInfo {
        KeyInfo {
            id,
            algorithm: e.algorithm,
            status: e.status,
            primary: self.primary == Some(id),
            created_at: e.created_at,
        }
    }

    /// Every key, by id (no secrets).
    pub fn keys(&self) -> Vec<KeyInfo> {
        self.keys.iter().map(|(id, e)| self.info(*id, e)).collect()
    }

    fn primary_entry(&self) -> Result<(KeyId, &Entry), Error> {
        let id = self.primary.ok_or(Error::NoPrimary)?;
        let e = self.keys.get(&id).ok_or(Error::NoPrimary)?;
        Ok((id, e))
    }

    /// The entry that decrypts `id`, or the reason it cannot.
    fn decrypting_entry(&self, id: KeyId) -> Result<&Entry, Error> {
        let e = self.keys.get(&id).ok_or(Error::UnknownKey(id))?;
        if e.status == KeyStatus::Disabled {
            return Err(Error::KeyDisabled(id));
        }
        Ok(e)
    }

    pub(crate) fn seal_aad(&self, plaintext: &[u8], aad: &[u8]) -> Result<Ciphertext, Error> {
        let (id, e) = self.primary_entry()?;
        let prk = e.material.prk().ok_or(Error::WrongKeyKind(id))?;
        format::seal(&self.rng, prk, e.algorithm, KeyRef::Keyring(id), aad, plaintext)
    }

    pub(crate) fn open_aad(&self, ct: &Ciphertext, aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
        let id = match ct.key_ref() {
            KeyRef::Keyring(id) => id,
            KeyRef::Envelope(_) => {
                return Err(Error::Malformed("envelope ciphertext: decrypt it with EnvelopeAead"));
            }
        };
        let result = self.decrypting_entry(id).and_then(|e| {
            if e.algorithm != ct.algorithm() {
                // The suite byte was changed, or the id collides with a key of another algorithm.
                return Err(Error::Decrypt);
            }
            let prk = e.material.prk().ok_or(Error::WrongKeyKind(id))?;
            format::open(prk, ct, aad)
        });
        if let Err(e) = &result {
            metrics::counter!("msec_crypto_decrypt_failures_total", "reason" => e.code()).increment(1);
            tracing::debug!(key = %id, code = e.code(), "msec-crypto: decryption failed");
        }
        result
    }

    /// Encrypts `plaintext` for `context` under the primary key.
    pub fn encrypt(&self, plaintext: &[u8], context: &Context) -> Result<Ciphertext, Error> {
        self.seal_aad(plaintext, context.aad())
    }

    /// Decrypts `ciphertext`, which must have been encrypted for the same `context`. Fails with
    /// [`Error::UnknownKey`], [`Error::KeyDisabled`] or [`Error::Decrypt`]; never panics.
    pub fn decrypt(&self, ciphertext: &Ciphertext, context: &Context) -> Result<Zeroizing<Vec<u8>>, Error> {
        self.open_aad(ciphertext, context.aad())
    }

    /// Parses the text form and decrypts it.
    pub fn decrypt_text(&self, text: &str, context: &Context) -> Result<Zeroizing<Vec<u8>>, Error> {
        self.decrypt(&Ciphertext::from_text(text)?, context)
    }

    /// True when `ciphertext` is not under the current primary key (so [`rewrap`](Keyring::rewrap) would move it).
    pub fn needs_rewrap(&self, ciphertext: &Ciphertext) -> bool {
        ciphertext.key_id() != self.primary
    }

    /// Re-encrypts `ciphertext` under the primary key (Vault's `rewrap`): the plaintext exists only inside this
    /// call, in a buffer that is zeroized before it returns.
    pub fn rewrap(&self, ciphertext: &Ciphertext, context: &Context) -> Result<Ciphertext, Error> {
        let plaintext = self.decrypt(ciphertext, context)?;
        let out = self.encrypt(&plaintext, context)?;
        metrics::counter!("msec_crypto_rewraps_total").increment(1);
        Ok(out)
    }

    fn hmac_key(&self, id: KeyId) -> Result<&KeyMaterial, Error> {
        let e = self.decrypting_entry(id)?;
        if e.algorithm != Algorithm::HmacSha256 {
            return Err(Error::WrongKeyKind(id));
        }
        Ok(&e.material)
    }

    /// A blind index over the HMAC-SHA256 key `id` (add one with `add_key(Algorithm::HmacSha256)`).
    pub fn blind_index(&self, id: KeyId, options: BlindIndexOptions) -> Result<BlindIndex, Error> {
        let k = self.hmac_key(id)?;
        k.hmac()
            .map(|h| BlindIndex::from_ring_key(h.clone(), options))
            .ok_or(Error::WrongKeyKind(id))
    }

    /// A keyed pseudonymiser over the HMAC-SHA256 key `id`.
    pub fn pseudonymizer(&self, id: KeyId) -> Result<Pseudonymizer, Error> {
        let k = self.hmac_key(id)?;
        k.hmac()
            .map(|h| Pseudonymizer::from_ring_key(h.clone()))
            .ok_or(Error::WrongKeyKind(id))
    }

    fn file_header(&self, format: &str, kms: Option<String>) -> KeyringFile {
        KeyringFile {
            format: format.to_owned(),
            kms,
            primary: self.primary,
            keys: Vec::new(),
        }
    }

    /// The keyring file (JSON) with every key's material wrapped by `kms`. The associated data of each wrap binds
    /// the key id and algorithm, so wrapped material moved to another entry does not load.
    pub async fn to_json(&self, kms: &dyn Kms) -> Result<String, Error> {
        let mut file = self.file_header(FILE_FORMAT, Some(kms.key_uri()));
        for (id, e) in &self.keys {
            let wrapped = kms
                .wrap_key(e.material.expose_secret(), &wrap_aad(*id, e.algorithm))
                .await?;
            file.keys.push(FileKey {
                id: *id,
                algorithm: e.algorithm,
                status: e.status,
                created_at: e.created_at,
                wrapped: Some(URL_SAFE_NO_PAD.encode(wrapped)),
                danger_plaintext: None,
            });
        }
        serde_json::to_string_pretty(&file).map_err(|e| Error::KeyringFile(e.to_string()))
    }

    /// Loads a keyring file written by [`to_json`](Keyring::to_json), unwrapping each key with `kms`.
    pub async fn from_json(json: &str, kms: &dyn Kms) -> Result<Self, Error> {
        let file: KeyringFile = serde_json::from_str(json).map_err(|e| Error::KeyringFile(e.to_string()))?;
        if file.format != FILE_FORMAT {
            return Err(Error::KeyringFile(format!(
                "format is {:?}, expected {FILE_FORMAT:?} (plaintext keyrings load only with danger_from_plaintext_json)",
                file.format
            )));
        }
        let mut k = Self::new();
        for fk in &file.keys {
            let wrapped = fk
                .wrapped
                .as_deref()
                .ok_or_else(|| Error::KeyringFile(format!("key {} has no wrapped material", fk.id)))?;
            let wrapped = URL_SAFE_NO_PAD
                .decode(wrapped)
                .map_err(|_| Error::KeyringFile(format!("key {}: bad base64url", fk.id)))?;
            let material = kms.unwrap_key(&wrapped, &wrap_aad(fk.id, fk.algorithm)).await?;
            let material = KeyMaterial::from_slice(fk.algorithm, material.expose_secret())?;
            k.insert(fk.id, fk.algorithm, fk.status, fk.created_at, material)?;
        }
        k.primary = None;
        k.set_primary_from_file(file.primary)?;
        Ok(k)
    }

    fn set_primary_from_file(&mut self, primary: Option<KeyId>) -> Result<(), Error> {
        if let Some(p) = primary {
            let e = self
                .keys
                .get(&p)
                .ok_or(Error::KeyringFile(format!("primary {p} is not in the file")))?;
            if !e.algorithm.is_aead() || e.status != KeyStatus::Enabled {
                return Err(Error::KeyringFile(format!(
                    "primary {p} is not an enabled encryption key"
                )));
            }
        }
        self.primary = primary;
        Ok(())
    }

    /// The keyring as JSON with the key material in plaintext. For tests and fixtures only: anyone who reads
    /// the output can decrypt everything.
    pub fn danger_to_plaintext_json(&self) -> String {
        self.plaintext_json(PLAINTEXT_FILE_FORMAT)
    }

    pub(crate) fn plaintext_json(&self, format: &str) -> String {
        let mut file = self.file_header(format, None);
        for (id, e) in &self.keys {
            file.keys.push(FileKey {
                id: *id,
                algorithm: e.algorithm,
                status: e.status,
                created_at: e.created_at,
                wrapped: None,
                danger_plaintext: Some(URL_SAFE_NO_PAD.encode(e.material.expose_secret())),
            });
        }
        // Serialising plain strings and numbers cannot fail.
        serde_json::to_string_pretty(&file).unwrap_or_default()
    }

    /// Loads [`danger_to_plaintext_json`](Keyring::danger_to_plaintext_json) output. For tests only.
    pub fn danger_from_plaintext_json(json: &str) -> Result<Self, Error> {
        Self::from_plaintext_json(json, PLAINTEXT_FILE_FORMAT)
    }

    pub(crate) fn from_plaintext_json(json: &str, format: &str) -> Result<Self, Error> {
        let file: KeyringFile = serde_json::from_str(json).map_err(|e| Error::KeyringFile(e.to_string()))?;
        if file.format != format {
            return Err(Error::KeyringFile(format!(
                "format is {:?}, expected {format:?}",
                file.format
            )));
        }
        let mut k = Self::new();
        for fk in &file.keys {
            let pt = fk
                .danger_plaintext
                .as_deref()
                .ok_or_else(|| Error::KeyringFile(format!("key {} has no material", fk.id)))?;
            let pt = Zeroizing::new(
                URL_SAFE_NO_PAD
                    .decode(pt)
                    .map_err(|_| Error::KeyringFile(format!("key {}: bad base64url", fk.id)))?,
            );
            k.insert(
                fk.id,
                fk.algorithm,
                fk.status,
                fk.created_at,
                KeyMaterial::from_slice(fk.algorithm, &pt)?,
            )?;
        }
        k.primary = None;
        k.set_primary_from_file(file.primary)?;
        Ok(k)
    }

    /// Describes a keyring file (wrapped or plaintext) without unwrapping anything: what `msec keyring show`
    /// prints. No key material is read.
    pub fn inspect_file(json: &str) -> Result<KeyringFileInfo, Error> {
        let file: KeyringFile = serde_json::from_str(json).map_err(|e| Error::KeyringFile(e.to_string()))?;
        if file.format != FILE_FORMAT && file.format != PLAINTEXT_FILE_FORMAT {
            return Err(Error::KeyringFile(format!("unknown format {:?}", file.format)));
        }
        let keys = file
            .keys
            .iter()
            .map(|k| KeyInfo {
                id: k.id,
                algorithm: k.algorithm,
                status: k.status,
                primary: file.primary == Some(k.id),
                created_at: k.created_at,
            })
            .collect();
        Ok(KeyringFileInfo {
            format: file.format,
            kms: file.kms,
            primary: file.primary,
            keys,
        })
    }
}

/// What a keyring file says about itself, read without the KMS (see [`Keyring::inspect_file`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyringFileInfo {
    /// `msec-keyring/v1` or the plaintext test format.
    pub format: String,
    /// The KMS key that wrapped the material.
    pub kms: Option<String>,
    /// The primary key.
    pub primary: Option<KeyId>,
    /// The keys (no secrets).
    pub keys: Vec<KeyInfo>,
}

fn wrap_aad(id: KeyId, algorithm: Algorithm) -> Vec<u8> {
    let mut aad = b"msec-keyring/v1 key ".to_vec();
    aad.extend_from_slice(&id.0.to_be_bytes());
    aad.extend_from_slice(algorithm.name().as_bytes());
    aad
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyringFile {
    format: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kms: Option<String>,
    primary: Option<KeyId>,
    keys: Vec<FileKey>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileKey {
    id: KeyId,
    algorithm: Algorithm,
    status: KeyStatus,
    created_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    wrapped: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    danger_plaintext: Option<String>,
}

fn kms_aad(aad: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(KMS_WRAP_LABEL.len() + aad.len());
    v.extend_from_slice(KMS_WRAP_LABEL);
    v.extend_from_slice(aad);
    v
}

/// A keyring is a KMS for envelope encryption: data keys are wrapped under its primary key and unwrapped by
/// whichever key wrapped them, so rotating the keyring rotates the key-encryption key.
impl Kms for Keyring {
    fn key_uri(&self) -> String {
        match self.primary {
            Some(id) => format!("msec-keyring:{id}"),
            None => "msec-keyring:none".to_owned(),
        }
    }

    fn wrap_key<'a>(&'a self, key: &'a [u8], aad: &'a [u8]) -> KmsFuture<'a, Vec<u8>> {
        let r = self
            .seal_aad(key, &kms_aad(aad))
            .map(Ciphertext::into_bytes)
            .map_err(|e| KmsError::Other(e.to_string()));
        Box::pin(std::future::ready(r))
    }

    fn unwrap_key<'a>(&'a self, wrapped: &'a [u8], aad: &'a [u8]) -> KmsFuture<'a, msec_core::secret::SecretBytes> {
        let r = Ciphertext::from_bytes(wrapped.to_vec())
            .and_then(|ct| self.open_aad(&ct, &kms_aad(aad)))
            .map(|pt| msec_core::secret::SecretBytes::new(pt.to_vec()))
            .map_err(|e| match e {
                Error::Decrypt => KmsError::Unwrap,
                other => KmsError::Other(other.to_string()),
            });
        Box::pin(std::future::ready(r))
    }
}
