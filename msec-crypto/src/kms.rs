//! Key management: the [`Kms`] trait (wrap and unwrap data keys under a master key that never leaves the KMS) and
//! [`LocalKms`], a master key kept in a local file.
//!
//! A cloud KMS (AWS KMS, Google Cloud KMS, Vault transit) implements [`Kms`] in a few lines around its client's
//! `Encrypt`/`Decrypt` calls with the associated data as encryption context; msec needs nothing else from it.

use std::fmt;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;

use msec_core::secret::SecretBytes;

use crate::error::{Error, KmsError};
use crate::keyring::Keyring;
use crate::primitive::Algorithm;

/// The future a [`Kms`] returns.
pub type KmsFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, KmsError>> + Send + 'a>>;

/// A key management service: wraps (encrypts) and unwraps data keys under a master key it keeps. `aad` is
/// authenticated with the wrapped key and must be presented again to unwrap it.
pub trait Kms: Send + Sync + fmt::Debug {
    /// Names the master key (recorded in keyring files; shown by `msec keyring show`).
    fn key_uri(&self) -> String;
    /// Wraps `key`.
    fn wrap_key<'a>(&'a self, key: &'a [u8], aad: &'a [u8]) -> KmsFuture<'a, Vec<u8>>;
    /// Unwraps a key produced by [`wrap_key`](Kms::wrap_key) with the same `aad`.
    fn unwrap_key<'a>(&'a self, wrapped: &'a [u8], aad: &'a [u8]) -> KmsFuture<'a, SecretBytes>;
}

impl<K: Kms + ?Sized> Kms for std::sync::Arc<K> {
    fn key_uri(&self) -> String {
        (**self).key_uri()
    }
    fn wrap_key<'a>(&'a self, key: &'a [u8], aad: &'a [u8]) -> KmsFuture<'a, Vec<u8>> {
        (**self).wrap_key(key, aad)
    }
    fn unwrap_key<'a>(&'a self, wrapped: &'a [u8], aad: &'a [u8]) -> KmsFuture<'a, SecretBytes> {
        (**self).unwrap_key(wrapped, aad)
    }
}

/// The `format` of a local KMS master key file.
pub const LOCAL_KMS_FORMAT: &str = "msec-local-kms/v1";

/// A KMS whose master keys live in this process, loaded from a local file (a Kubernetes secret mount, a file
/// readable only by the service user). Its master keys are a [`Keyring`], so they rotate like one: wrapped keys
/// name the master key that wrapped them.
///
/// Protect the master key file like a private key; in production prefer a KMS that never releases its keys.
///
/// ```
/// # tokio_test_block_on(async {
/// use msec_crypto::{Algorithm, Keyring, LocalKms};
///
/// let kms = LocalKms::generate()?;
/// let keyring = Keyring::generate(Algorithm::Aes256Gcm)?;
/// let file = keyring.to_json(&kms).await?;         // key material wrapped by the master key
/// let loaded = Keyring::from_json(&file, &kms).await?;
/// assert_eq!(loaded.primary(), keyring.primary());
/// # Ok::<(), msec_crypto::Error>(())
/// # });
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     futures_util::FutureExt::now_or_never(f).expect("ready")
/// # }
/// ```
#[derive(Clone)]
pub struct LocalKms {
    master: Keyring,
}

impl fmt::Debug for LocalKms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalKms")
            .field("primary", &self.master.primary())
            .finish_non_exhaustive()
    }
}

impl LocalKms {
    /// A KMS with one fresh AES-256-GCM master key.
    pub fn generate() -> Result<Self, Error> {
        Ok(Self {
            master: Keyring::generate(Algorithm::Aes256Gcm)?,
        })
    }

    /// A KMS over the master keys of `keyring`.
    pub fn from_keyring(keyring: Keyring) -> Self {
        Self { master: keyring }
    }

    /// The master keys (to rotate them: add, promote, then rewrap keyring files with `msec keyring rewrap`).
    pub fn master_keyring(&self) -> &Keyring {
        &self.master
    }

    /// Mutable access to the master keys.
    pub fn master_keyring_mut(&mut self) -> &mut Keyring {
        &mut self.master
    }

    /// The master key file contents (JSON; the keys are in plaintext).
    pub fn to_json(&self) -> String {
        self.master.plaintext_json(LOCAL_KMS_FORMAT)
    }

    /// Parses [`to_json`](LocalKms::to_json) output.
    pub fn from_json(json: &str) -> Result<Self, Error> {
        Ok(Self {
            master: Keyring::from_plaintext_json(json, LOCAL_KMS_FORMAT)?,
        })
    }

    /// Reads a master key file.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let json = std::fs::read_to_string(path)
            .map_err(|e| Error::KeyringFile(format!("cannot read {}: {e}", path.display())))?;
        Self::from_json(&json)
    }

    /// Writes the master key file, readable by its owner only (mode 0600 on Unix). Fails if `path` exists.
    pub fn save_new(&self, path: &Path) -> Result<(), Error> {
        use std::io::Write as _;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            opts.mode(0o600);
        }
        let mut f = opts
            .open(path)
            .map_err(|e| Error::KeyringFile(format!("cannot create {}: {e}", path.display())))?;
        f.write_all(self.to_json().as_bytes())
            .map_err(|e| Error::KeyringFile(format!("cannot write {}: {e}", path.display())))
    }
}

impl Kms for LocalKms {
    fn key_uri(&self) -> String {
        match self.master.primary() {
            Some(id) => format!("msec-local:{id}"),
            None => "msec-local:none".to_owned(),
        }
    }
    fn wrap_key<'a>(&'a self, key: &'a [u8], aad: &'a [u8]) -> KmsFuture<'a, Vec<u8>> {
        metrics::counter!("msec_crypto_kms_calls_total", "op" => "wrap").increment(1);
        self.master.wrap_key(key, aad)
    }
    fn unwrap_key<'a>(&'a self, wrapped: &'a [u8], aad: &'a [u8]) -> KmsFuture<'a, SecretBytes> {
        metrics::counter!("msec_crypto_kms_calls_total", "op" => "unwrap").increment(1);
        self.master.unwrap_key(wrapped, aad)
    }
}
