//! Our own certificate and key: fixed ([`CertSource`]) or re-read from files ([`ReloadingCert`]).

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{Error as RustlsError, InconsistentKeys, SignatureScheme};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::TlsConfigError;
use crate::pem;
use crate::reload::{Digest, Reload, ReloadStatus, Slot};
use crate::trust::Files;

/// The ring crypto provider every config of this crate uses.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// Builds a certified key, checking that the key belongs to the certificate.
pub(crate) fn certified_key(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    what: &str,
) -> Result<CertifiedKey, TlsConfigError> {
    if chain.is_empty() {
        return Err(TlsConfigError::NoCertificates { what: what.to_owned() });
    }
    let signing = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|_| TlsConfigError::InvalidKey { what: what.to_owned() })?;
    let ck = CertifiedKey::new(chain, signing);
    match ck.keys_match() {
        Ok(()) | Err(RustlsError::InconsistentKeys(InconsistentKeys::Unknown)) => Ok(ck),
        Err(RustlsError::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
            Err(TlsConfigError::KeyMismatch { what: what.to_owned() })
        }
        Err(e) => Err(TlsConfigError::Rustls(e)),
    }
}

#[derive(Clone)]
enum Inner {
    Static(Arc<CertifiedKey>),
    Reloading(ReloadingCert),
}

/// Where a server's (or an mTLS client's) certificate chain and private key come from: PEM files or memory,
/// loaded once, or a [`ReloadingCert`] that follows the files.
///
/// ```
/// use msec_tls::CertSource;
/// let ca = msec_test_support::TestCa::new("example.org");
/// let svid = ca.svid("/ns/prod/sa/web");
/// let source = CertSource::pem(svid.cert_pem.as_bytes(), svid.key_pem.as_bytes())?;
/// # let _ = source;
/// # Ok::<(), msec_tls::TlsConfigError>(())
/// ```
#[derive(Clone)]
pub struct CertSource {
    inner: Inner,
}

impl fmt::Debug for CertSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            Inner::Static(ck) => f.debug_struct("CertSource").field("chain_len", &ck.cert.len()).finish(),
            Inner::Reloading(r) => f.debug_tuple("CertSource").field(r).finish(),
        }
    }
}

impl CertSource {
    /// Loads a PEM certificate chain (leaf first) and a PEM private key (PKCS#8, PKCS#1 or SEC1) from files,
    /// once.
    pub fn pem_files(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Result<Self, TlsConfigError> {
        let (cert, key) = (cert.into(), key.into());
        let ck = load_files(&cert, &key, &Files::read(&[&cert, &key])?)?;
        Ok(Self::from_certified(ck))
    }

    /// Loads a PEM certificate chain and private key from memory.
    pub fn pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, TlsConfigError> {
        let chain = pem::certs(cert_pem, "in-memory certificate")?;
        let key = pem::key(key_pem, "in-memory private key")?;
        Ok(Self::from_certified(certified_key(
            chain,
            key,
            "in-memory certificate",
        )?))
    }

    /// Uses a DER certificate chain (leaf first) and private key.
    pub fn der(chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> Result<Self, TlsConfigError> {
        Ok(Self::from_certified(certified_key(
            chain,
            key,
            "in-memory certificate",
        )?))
    }

    /// Uses a reloading certificate (same as `CertSource::from(cert.clone())`).
    pub fn reloading(cert: &ReloadingCert) -> Self {
        Self {
            inner: Inner::Reloading(cert.clone()),
        }
    }

    fn from_certified(ck: CertifiedKey) -> Self {
        Self {
            inner: Inner::Static(Arc::new(ck)),
        }
    }

    pub(crate) fn resolver(&self) -> Arc<CertResolver> {
        Arc::new(CertResolver { source: self.clone() })
    }

    fn current(&self) -> Arc<CertifiedKey> {
        match &self.inner {
            Inner::Static(ck) => ck.clone(),
            Inner::Reloading(r) => r.current(),
        }
    }
}

impl From<ReloadingCert> for CertSource {
    fn from(cert: ReloadingCert) -> Self {
        Self {
            inner: Inner::Reloading(cert),
        }
    }
}

/// The rustls resolver (server and client side) over a [`CertSource`].
#[derive(Debug)]
pub(crate) struct CertResolver {
    source: CertSource,
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.source.current())
    }
}

impl ResolvesClientCert for CertResolver {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.source.current())
    }
    fn has_certs(&self) -> bool {
        true
    }
}

fn load_files(cert: &std::path::Path, key: &std::path::Path, files: &Files) -> Result<CertifiedKey, TlsConfigError> {
    let what = pem::describe(cert);
    let chain = pem::certs(files.get(0), &what)?;
    let key = pem::key(files.get(1), &pem::describe(key))?;
    certified_key(chain, key, &what)
}

struct ReloadingCertInner {
    cert: PathBuf,
    key: PathBuf,
    slot: Slot<CertifiedKey>,
}

/// A certificate chain and key re-read from PEM files on [`poll`](Self::poll) / [`reload`](Self::reload), or
/// periodically by a [`Watcher`](crate::Watcher).
///
/// New handshakes present the new certificate at once; established connections keep theirs. Material that does
/// not load — unreadable or malformed files, or a key that does not match the certificate (as while a rotation
/// has written the certificate but not yet the key) — leaves the previous certificate in force and is reported
/// through `tracing` (warn) and `msec_tls_reloads_total{kind="certificate",result="error"}`.
///
/// Use it for a server ([`CertSource::reloading`]) and for an outbound mTLS client alike. Clones share.
#[derive(Clone)]
pub struct ReloadingCert {
    inner: Arc<ReloadingCertInner>,
}

impl fmt::Debug for ReloadingCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingCert")
            .field("cert", &self.inner.cert)
            .field("key", &self.inner.key)
            .field("generation", &self.inner.slot.status().generation)
            .finish()
    }
}

impl ReloadingCert {
    /// Loads the certificate chain and key now (this first load must succeed).
    pub fn from_pem_files(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Result<Self, TlsConfigError> {
        let (cert, key) = (cert.into(), key.into());
        let files = Files::read(&[&cert, &key])?;
        let ck = load_files(&cert, &key, &files)?;
        let name = format!("{}, {}", pem::describe(&cert), pem::describe(&key));
        Ok(Self {
            inner: Arc::new(ReloadingCertInner {
                slot: Slot::new("certificate", name, ck, files.digest()),
                cert,
                key,
            }),
        })
    }

    fn update(&self, force: bool) -> Result<bool, TlsConfigError> {
        let i = &*self.inner;
        i.slot.update(
            force,
            || Files::read(&[&i.cert, &i.key]),
            |f| load_files(&i.cert, &i.key, f),
        )
    }

    /// Re-reads the files and, when they changed and load, swaps the new certificate in. `Ok(true)` when the
    /// new certificate is in force.
    pub fn poll(&self) -> Result<bool, TlsConfigError> {
        self.update(false)
    }

    /// Re-reads and re-loads the files even when they did not change.
    pub fn reload(&self) -> Result<(), TlsConfigError> {
        self.update(true).map(|_| ())
    }

    /// Reload counters and the last error.
    pub fn status(&self) -> ReloadStatus {
        self.inner.slot.status()
    }

    /// The certificate chain in force (leaf first).
    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        self.current().cert.clone()
    }

    fn current(&self) -> Arc<CertifiedKey> {
        self.inner.slot.load()
    }
}

impl Reload for ReloadingCert {
    fn poll(&self) -> Result<bool, TlsConfigError> {
        ReloadingCert::poll(self)
    }
    fn status(&self) -> ReloadStatus {
        ReloadingCert::status(self)
    }
    fn name(&self) -> String {
        format!("certificate ({})", self.inner.slot.name())
    }
}
