//! What peers are verified against: plain CA roots, or SPIFFE bundles with one bundle per trust domain.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use msec_core::spiffe::{SpiffeId, TrustDomain};
use rustls::{CertificateError, DistinguishedName, OtherError};
use rustls_pki_types::{
    CertificateDer, CertificateRevocationListDer, SignatureVerificationAlgorithm, TrustAnchor, UnixTime,
};
use webpki::{
    CertRevocationList, EndEntityCert, ExpirationPolicy, KeyUsage, OwnedCertRevocationList, RevocationCheckDepth,
    RevocationOptionsBuilder, UnknownStatusPolicy,
};

use crate::error::TlsConfigError;
use crate::identity::{self, SvidError};
use crate::pem;
use crate::reload::{ReloadStatus, Slot};

/// Marker: a [`TrustBuilder`] of plain CA roots.
#[derive(Debug, Clone, Copy)]
pub struct Roots;

/// Marker: a [`TrustBuilder`] of SPIFFE bundles, one per trust domain.
#[derive(Debug, Clone, Copy)]
pub struct Spiffe;

#[derive(Clone)]
enum CertSrc {
    Der(Vec<CertificateDer<'static>>),
    Pem(Arc<[u8]>),
    PemFile(PathBuf),
    Json(Arc<[u8]>),
    JsonFile(PathBuf),
}

impl CertSrc {
    fn path(&self) -> Option<&Path> {
        match self {
            Self::PemFile(p) | Self::JsonFile(p) => Some(p),
            _ => None,
        }
    }
}

#[derive(Clone)]
enum CrlSrc {
    Der(Vec<CertificateRevocationListDer<'static>>),
    Pem(Arc<[u8]>),
    PemFile(PathBuf),
}

#[derive(Debug, Clone, Copy, Default)]
struct Revocation {
    end_entity_only: bool,
    allow_unknown: bool,
    enforce_expiration: bool,
}

#[derive(Clone)]
enum Kind {
    Roots(Vec<CertSrc>),
    Spiffe(Vec<(TrustDomain, CertSrc)>),
}

#[derive(Clone)]
pub(crate) struct TrustSpec {
    kind: Kind,
    crls: Vec<CrlSrc>,
    revocation: Revocation,
}

/// Builds a [`Trust`] (fixed) or a [`ReloadingTrust`] (re-read from its files on demand).
///
/// Sources are certificates in memory, PEM bytes, or PEM files; for SPIFFE, also SPIFFE bundle documents (a
/// JWKS whose `x509-svid` keys carry the CA in `x5c`). CRLs apply to every chain the trust verifies; by default
/// the whole chain is checked and a certificate whose revocation status is unknown (no CRL from its issuer) is
/// refused — rustls' defaults.
///
/// ```
/// use msec_tls::Trust;
/// let a = msec_test_support::TestCa::new("a.example");
/// let b = msec_test_support::TestCa::new("b.example");
/// let trust = Trust::spiffe()
///     .bundle("a.example".parse()?, [a.cert()])
///     .bundle_pem("b.example".parse()?, b.cert_pem().as_bytes())
///     .build()?;
/// assert!(trust.is_spiffe());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use]
pub struct TrustBuilder<K> {
    spec: TrustSpec,
    _kind: PhantomData<K>,
}

impl<K> fmt::Debug for TrustBuilder<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustBuilder").finish_non_exhaustive()
    }
}

impl TrustBuilder<Roots> {
    fn push(mut self, src: CertSrc) -> Self {
        if let Kind::Roots(v) = &mut self.spec.kind {
            v.push(src);
        }
        self
    }
    /// Adds one CA certificate.
    pub fn cert(self, cert: CertificateDer<'static>) -> Self {
        self.push(CertSrc::Der(vec![cert]))
    }
    /// Adds CA certificates.
    pub fn certs(self, certs: impl IntoIterator<Item = CertificateDer<'static>>) -> Self {
        self.push(CertSrc::Der(certs.into_iter().collect()))
    }
    /// Adds every certificate of a PEM document.
    pub fn pem(self, pem: &[u8]) -> Self {
        self.push(CertSrc::Pem(Arc::from(pem)))
    }
    /// Adds every certificate of a PEM file (re-read by [`ReloadingTrust`]).
    pub fn pem_file(self, path: impl Into<PathBuf>) -> Self {
        self.push(CertSrc::PemFile(path.into()))
    }
}

impl TrustBuilder<Spiffe> {
    fn push(mut self, td: TrustDomain, src: CertSrc) -> Self {
        if let Kind::Spiffe(v) = &mut self.spec.kind {
            v.push((td, src));
        }
        self
    }
    /// Adds CA certificates to the bundle of `trust_domain`.
    pub fn bundle(self, trust_domain: TrustDomain, certs: impl IntoIterator<Item = CertificateDer<'static>>) -> Self {
        self.push(trust_domain, CertSrc::Der(certs.into_iter().collect()))
    }
    /// Adds every certificate of a PEM document to the bundle of `trust_domain`.
    pub fn bundle_pem(self, trust_domain: TrustDomain, pem: &[u8]) -> Self {
        self.push(trust_domain, CertSrc::Pem(Arc::from(pem)))
    }
    /// Adds every certificate of a PEM file to the bundle of `trust_domain` (re-read by [`ReloadingTrust`]).
    pub fn bundle_pem_file(self, trust_domain: TrustDomain, path: impl Into<PathBuf>) -> Self {
        self.push(trust_domain, CertSrc::PemFile(path.into()))
    }
    /// Adds the X.509 authorities of a SPIFFE bundle document (SPIFFE Trust Domain and Bundle §4: a JWKS whose
    /// keys with `"use": "x509-svid"` carry one CA certificate in `x5c`).
    pub fn bundle_json(self, trust_domain: TrustDomain, json: &[u8]) -> Self {
        self.push(trust_domain, CertSrc::Json(Arc::from(json)))
    }
    /// Like [`bundle_json`](Self::bundle_json), from a file (re-read by [`ReloadingTrust`]).
    pub fn bundle_json_file(self, trust_domain: TrustDomain, path: impl Into<PathBuf>) -> Self {
        self.push(trust_domain, CertSrc::JsonFile(path.into()))
    }
}

impl<K> TrustBuilder<K> {
    /// Adds certificate revocation lists.
    pub fn crls(mut self, crls: impl IntoIterator<Item = CertificateRevocationListDer<'static>>) -> Self {
        self.spec.crls.push(CrlSrc::Der(crls.into_iter().collect()));
        self
    }
    /// Adds the CRLs of a PEM document (`X509 CRL` blocks).
    pub fn crl_pem(mut self, pem: &[u8]) -> Self {
        self.spec.crls.push(CrlSrc::Pem(Arc::from(pem)));
        self
    }
    /// Adds the CRLs of a PEM file (re-read by [`ReloadingTrust`]: publish a new CRL by rewriting the file).
    pub fn crl_pem_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.spec.crls.push(CrlSrc::PemFile(path.into()));
        self
    }
    /// Checks revocation of the end-entity certificate only, not of intermediates.
    pub fn only_check_end_entity_revocation(mut self) -> Self {
        self.spec.revocation.end_entity_only = true;
        self
    }
    /// Accepts certificates for which no CRL is authoritative (by default they are refused when CRLs are set).
    pub fn allow_unknown_revocation_status(mut self) -> Self {
        self.spec.revocation.allow_unknown = true;
        self
    }
    /// Refuses certificates when the applicable CRL is past its `nextUpdate`.
    pub fn enforce_revocation_expiration(mut self) -> Self {
        self.spec.revocation.enforce_expiration = true;
        self
    }

    /// Loads everything now into a fixed trust.
    pub fn build(self) -> Result<Trust, TlsConfigError> {
        let files = self.spec.read_files()?;
        let material = self.spec.build(&files)?;
        Ok(Trust {
            inner: TrustInner::Static(Arc::new(material)),
        })
    }

    /// Loads everything now into a trust that re-reads its files on [`ReloadingTrust::poll`] /
    /// [`reload`](ReloadingTrust::reload) (or from a [`Watcher`](crate::Watcher)). In-memory sources stay as
    /// they are.
    pub fn build_reloading(self) -> Result<ReloadingTrust, TlsConfigError> {
        let files = self.spec.read_files()?;
        let material = self.spec.build(&files)?;
        let name = self.spec.name();
        Ok(ReloadingTrust {
            inner: Arc::new(ReloadingTrustInner {
                spec: self.spec,
                slot: Slot::new("trust", name, material, files.digest),
            }),
        })
    }
}

/// The bytes of every file source, in order, and their digest.
pub(crate) struct Files {
    bytes: Vec<Vec<u8>>,
    pub(crate) digest: [u8; 32],
}

impl Files {
    pub(crate) fn read(paths: &[&Path]) -> Result<Self, TlsConfigError> {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        let mut bytes = Vec::with_capacity(paths.len());
        for p in paths {
            let b = pem::read(p)?;
            ctx.update(&(b.len() as u64).to_be_bytes());
            ctx.update(&b);
            bytes.push(b);
        }
        let mut digest = [0u8; 32];
        digest.copy_from_slice(ctx.finish().as_ref());
        Ok(Self { bytes, digest })
    }

    pub(crate) fn get(&self, i: usize) -> &[u8] {
        self.bytes.get(i).map_or(&[], Vec::as_slice)
    }
}

impl TrustSpec {
    fn name(&self) -> String {
        let paths: Vec<String> = self.paths().iter().map(|p| pem::describe(p)).collect();
        if paths.is_empty() {
            "in-memory trust".into()
        } else {
            paths.join(", ")
        }
    }

    fn paths(&self) -> Vec<&Path> {
        let mut v: Vec<&Path> = match &self.kind {
            Kind::Roots(srcs) => srcs.iter().filter_map(CertSrc::path).collect(),
            Kind::Spiffe(srcs) => srcs.iter().filter_map(|(_, s)| s.path()).collect(),
        };
        v.extend(self.crls.iter().filter_map(|c| match c {
            CrlSrc::PemFile(p) => Some(p.as_path()),
            _ => None,
        }));
        v
    }

    pub(crate) fn read_files(&self) -> Result<Files, TlsConfigError> {
        Files::read(&self.paths())
    }

    pub(crate) fn build(&self, files: &Files) -> Result<TrustMaterial, TlsConfigError> {
        let mut next_file = 0usize;
        let mut load = |src: &CertSrc| -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
            match src {
                CertSrc::Der(v) => Ok(v.clone()),
                CertSrc::Pem(b) => pem::certs(b, "in-memory CA PEM"),
                CertSrc::Json(b) => spiffe_bundle(b, "in-memory SPIFFE bundle"),
                CertSrc::PemFile(p) => {
                    let b = files.get(next_file);
                    next_file += 1;
                    pem::certs(b, &pem::describe(p))
                }
                CertSrc::JsonFile(p) => {
                    let b = files.get(next_file);
                    next_file += 1;
                    spiffe_bundle(b, &pem::describe(p))
                }
            }
        };
        let mut hints = Vec::new();
        let anchors = match &self.kind {
            Kind::Roots(srcs) => {
                let mut anchors = Vec::new();
                for src in srcs {
                    for c in load(src)? {
                        anchors.push(anchor(&c, "CA certificate")?);
                    }
                }
                if anchors.is_empty() {
                    return Err(TlsConfigError::EmptyTrust);
                }
                hints.extend(
                    anchors
                        .iter()
                        .map(|a| DistinguishedName::in_sequence(a.subject.as_ref())),
                );
                Anchors::Roots(anchors)
            }
            Kind::Spiffe(srcs) => {
                let mut map: BTreeMap<String, Vec<TrustAnchor<'static>>> = BTreeMap::new();
                for (td, src) in srcs {
                    let certs = load(src)?;
                    let entry = map.entry(td.as_str().to_owned()).or_default();
                    for c in certs {
                        let a = anchor(&c, td.as_str())?;
                        hints.push(DistinguishedName::in_sequence(a.subject.as_ref()));
                        entry.push(a);
                    }
                }
                if map.is_empty() || map.values().any(Vec::is_empty) {
                    return Err(TlsConfigError::EmptyTrust);
                }
                Anchors::Spiffe(map)
            }
        };
        let mut crls = Vec::new();
        for src in &self.crls {
            let (ders, what) = match src {
                CrlSrc::Der(v) => (v.clone(), "in-memory CRL".to_owned()),
                CrlSrc::Pem(b) => (pem::crls(b, "in-memory CRL PEM")?, "in-memory CRL PEM".to_owned()),
                CrlSrc::PemFile(p) => {
                    let b = files.get(next_file);
                    next_file += 1;
                    let what = pem::describe(p);
                    (pem::crls(b, &what)?, what)
                }
            };
            for der in ders {
                let crl = OwnedCertRevocationList::from_der(der.as_ref()).map_err(|e| TlsConfigError::InvalidCrl {
                    what: what.clone(),
                    message: e.to_string(),
                })?;
                crls.push(CertRevocationList::Owned(crl));
            }
        }
        Ok(TrustMaterial {
            anchors,
            crls,
            revocation: self.revocation,
            hints,
        })
    }
}

fn anchor(cert: &CertificateDer<'_>, what: &str) -> Result<TrustAnchor<'static>, TlsConfigError> {
    webpki::anchor_from_trusted_cert(cert)
        .map(|a| a.to_owned())
        .map_err(|e| TlsConfigError::InvalidTrustAnchor {
            what: what.to_owned(),
            message: e.to_string(),
        })
}

/// The X.509 authorities of a SPIFFE bundle document.
fn spiffe_bundle(json: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let bad = |message: &str| TlsConfigError::InvalidBundle {
        what: what.to_owned(),
        message: message.to_owned(),
    };
    let doc: serde_json::Value = serde_json::from_slice(json).map_err(|_| bad("not JSON"))?;
    let keys = doc
        .get("keys")
        .and_then(|k| k.as_array())
        .ok_or_else(|| bad("no `keys` array"))?;
    let mut out = Vec::new();
    for key in keys {
        if key.get("use").and_then(|u| u.as_str()) != Some("x509-svid") {
            continue;
        }
        // §4.2.1: entries without x5c are ignored; only the first x5c value counts.
        let Some(first) = key.get("x5c").and_then(|x| x.as_array()).and_then(|a| a.first()) else {
            continue;
        };
        let b64 = first.as_str().ok_or_else(|| bad("`x5c` value is not a string"))?;
        let der = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| bad("`x5c` value is not base64"))?;
        out.push(CertificateDer::from(der));
    }
    if out.is_empty() {
        return Err(bad("no x509-svid authorities"));
    }
    Ok(out)
}

enum Anchors {
    Roots(Vec<TrustAnchor<'static>>),
    Spiffe(BTreeMap<String, Vec<TrustAnchor<'static>>>),
}

/// Loaded trust: anchors, parsed CRLs, revocation options.
pub(crate) struct TrustMaterial {
    anchors: Anchors,
    crls: Vec<CertRevocationList<'static>>,
    revocation: Revocation,
    hints: Vec<DistinguishedName>,
}

impl fmt::Debug for TrustMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("TrustMaterial");
        match &self.anchors {
            Anchors::Roots(a) => d.field("roots", &a.len()),
            Anchors::Spiffe(m) => d.field(
                "spiffe_bundles",
                &m.iter().map(|(k, v)| (k.as_str(), v.len())).collect::<Vec<_>>(),
            ),
        };
        d.field("crls", &self.crls.len()).finish()
    }
}

/// Which certificate purpose a chain is verified for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Usage {
    Client,
    Server,
}

/// A successfully verified peer chain.
#[derive(Debug)]
pub(crate) struct Verified {
    pub(crate) spiffe_id: Option<SpiffeId>,
}

pub(crate) fn svid_error(e: SvidError) -> rustls::Error {
    metrics::counter!("msec_tls_peer_rejected_total", "reason" => e.as_str()).increment(1);
    tracing::debug!(reason = e.as_str(), error = %e, "peer certificate rejected");
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(e))))
}

impl TrustMaterial {
    pub(crate) fn is_spiffe(&self) -> bool {
        matches!(self.anchors, Anchors::Spiffe(_))
    }

    pub(crate) fn hints(&self) -> &[DistinguishedName] {
        &self.hints
    }

    /// Verifies `end_entity` for `usage`. With SPIFFE bundles (or when `require_svid`), the certificate must be
    /// a leaf X.509-SVID, and with SPIFFE bundles it must chain to the bundle of its own trust domain.
    pub(crate) fn verify(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        usage: Usage,
        require_svid: bool,
        algs: &[&dyn SignatureVerificationAlgorithm],
    ) -> Result<Verified, rustls::Error> {
        let spiffe_id = if require_svid || self.is_spiffe() {
            let cert = identity::parse(end_entity.as_ref()).map_err(|_| {
                count_rejection("bad_encoding");
                rustls::Error::InvalidCertificate(CertificateError::BadEncoding)
            })?;
            Some(identity::svid_id_of(&cert).map_err(svid_error)?)
        } else {
            None
        };
        let anchors: &[TrustAnchor<'static>] = match (&self.anchors, &spiffe_id) {
            (Anchors::Roots(a), _) => a,
            (Anchors::Spiffe(map), Some(id)) => match map.get(id.trust_domain_name()) {
                Some(a) => a,
                None => {
                    // Counted and logged as an SVID problem, answered as what it is on the wire: unknown CA.
                    let _ = svid_error(SvidError::UntrustedDomain(id.trust_domain_name().to_owned()));
                    return Err(CertificateError::UnknownIssuer.into());
                }
            },
            (Anchors::Spiffe(_), None) => return Err(svid_error(SvidError::NoUriSan)),
        };
        let ee = EndEntityCert::try_from(end_entity).map_err(|e| pki_error(&e))?;
        let crl_refs: Vec<&CertRevocationList<'static>> = self.crls.iter().collect();
        let revocation = RevocationOptionsBuilder::new(&crl_refs).ok().map(|b| {
            b.with_depth(if self.revocation.end_entity_only {
                RevocationCheckDepth::EndEntity
            } else {
                RevocationCheckDepth::Chain
            })
            .with_status_policy(if self.revocation.allow_unknown {
                UnknownStatusPolicy::Allow
            } else {
                UnknownStatusPolicy::Deny
            })
            .with_expiration_policy(if self.revocation.enforce_expiration {
                ExpirationPolicy::Enforce
            } else {
                ExpirationPolicy::Ignore
            })
            .build()
        });
        let eku = match usage {
            Usage::Client => KeyUsage::client_auth(),
            Usage::Server => KeyUsage::server_auth(),
        };
        ee.verify_for_usage(algs, anchors, intermediates, now, eku, revocation, None)
            .map_err(|e| pki_error(&e))?;
        Ok(Verified { spiffe_id })
    }
}

fn count_rejection(reason: &'static str) {
    metrics::counter!("msec_tls_peer_rejected_total", "reason" => reason).increment(1);
}

/// Maps webpki's errors to rustls' (the same mapping rustls' own verifiers use for the common cases).
fn pki_error(e: &webpki::Error) -> rustls::Error {
    use webpki::Error as W;
    let (reason, err): (&'static str, rustls::Error) = match e {
        W::BadDer | W::BadDerTime | W::TrailingData(_) => ("bad_encoding", CertificateError::BadEncoding.into()),
        W::CertNotValidYet { time, not_before } => (
            "not_yet_valid",
            CertificateError::NotValidYetContext {
                time: *time,
                not_before: *not_before,
            }
            .into(),
        ),
        W::CertExpired { time, not_after } => (
            "expired",
            CertificateError::ExpiredContext {
                time: *time,
                not_after: *not_after,
            }
            .into(),
        ),
        W::InvalidCertValidity => ("expired", CertificateError::Expired.into()),
        W::UnknownIssuer => ("unknown_issuer", CertificateError::UnknownIssuer.into()),
        W::CertRevoked => ("revoked", CertificateError::Revoked.into()),
        W::UnknownRevocationStatus => (
            "unknown_revocation_status",
            CertificateError::UnknownRevocationStatus.into(),
        ),
        W::CrlExpired { .. } => ("crl_expired", CertificateError::ExpiredRevocationList.into()),
        W::InvalidSignatureForPublicKey => ("bad_signature", CertificateError::BadSignature.into()),
        #[allow(deprecated)]
        W::RequiredEkuNotFound | W::RequiredEkuNotFoundContext(_) => {
            ("wrong_key_purpose", CertificateError::InvalidPurpose.into())
        }
        W::CaUsedAsEndEntity | W::EndEntityUsedAsCa => ("not_a_leaf", CertificateError::BadEncoding.into()),
        other => (
            "other",
            CertificateError::Other(OtherError(Arc::new(other.clone()))).into(),
        ),
    };
    count_rejection(reason);
    tracing::debug!(reason, error = %e, "peer certificate rejected");
    err
}

#[derive(Clone)]
enum TrustInner {
    Static(Arc<TrustMaterial>),
    Reloading(ReloadingTrust),
}

/// What peer certificates are verified against: plain CA roots ([`Trust::roots`]) or SPIFFE bundles, one per
/// trust domain ([`Trust::spiffe`]), with optional CRLs. Fixed ([`TrustBuilder::build`]) or reloading
/// ([`ReloadingTrust`], which converts into a `Trust`).
///
/// With SPIFFE bundles a peer certificate must be a leaf X.509-SVID (exactly one URI SAN, a SPIFFE ID with a
/// path, not a CA) and must chain to the bundle of **its own** trust domain: domain A's CA cannot vouch for an
/// ID in domain B, even when both domains are trusted.
///
/// Cheap to clone (shared).
#[derive(Clone)]
pub struct Trust {
    inner: TrustInner,
}

impl fmt::Debug for Trust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            TrustInner::Static(m) => f.debug_tuple("Trust").field(&**m).finish(),
            TrustInner::Reloading(r) => f.debug_tuple("Trust").field(r).finish(),
        }
    }
}

impl Trust {
    /// Starts a trust of plain CA roots.
    pub fn roots() -> TrustBuilder<Roots> {
        TrustBuilder {
            spec: TrustSpec {
                kind: Kind::Roots(Vec::new()),
                crls: Vec::new(),
                revocation: Revocation::default(),
            },
            _kind: PhantomData,
        }
    }

    /// Starts a trust of SPIFFE bundles, one per trust domain.
    pub fn spiffe() -> TrustBuilder<Spiffe> {
        TrustBuilder {
            spec: TrustSpec {
                kind: Kind::Spiffe(Vec::new()),
                crls: Vec::new(),
                revocation: Revocation::default(),
            },
            _kind: PhantomData,
        }
    }

    /// True for SPIFFE bundles.
    pub fn is_spiffe(&self) -> bool {
        self.current().is_spiffe()
    }

    /// The trust domains with a bundle (empty for plain roots).
    pub fn trust_domains(&self) -> Vec<String> {
        match &self.current().anchors {
            Anchors::Roots(_) => Vec::new(),
            Anchors::Spiffe(m) => m.keys().cloned().collect(),
        }
    }

    /// The material in force now.
    pub(crate) fn current(&self) -> Arc<TrustMaterial> {
        match &self.inner {
            TrustInner::Static(m) => m.clone(),
            TrustInner::Reloading(r) => r.inner.slot.load(),
        }
    }

    /// The root hints to send in a CertificateRequest: the anchors' subjects for a fixed trust, none for a
    /// reloading one (hints borrowed from the verifier cannot follow a reload; clients then send whatever
    /// certificate they have).
    pub(crate) fn fixed_hints(&self) -> Vec<DistinguishedName> {
        match &self.inner {
            TrustInner::Static(m) => m.hints().to_vec(),
            TrustInner::Reloading(_) => Vec::new(),
        }
    }
}

impl From<ReloadingTrust> for Trust {
    fn from(r: ReloadingTrust) -> Self {
        Self {
            inner: TrustInner::Reloading(r),
        }
    }
}

impl From<&ReloadingTrust> for Trust {
    fn from(r: &ReloadingTrust) -> Self {
        Self::from(r.clone())
    }
}

struct ReloadingTrustInner {
    spec: TrustSpec,
    slot: Slot<TrustMaterial>,
}

/// A [`Trust`] re-read from its files when you call [`poll`](Self::poll) or [`reload`](Self::reload), or
/// periodically by a [`Watcher`](crate::Watcher).
///
/// New handshakes use the new bundles and CRLs at once; connections already established are untouched. A file
/// that does not load (unreadable, malformed, empty bundle) leaves the previous material in force, and is
/// reported through `tracing` (warn) and the `msec_tls_reloads_total{kind="trust",result="error"}` counter.
///
/// Clones share the same material.
#[derive(Clone)]
pub struct ReloadingTrust {
    inner: Arc<ReloadingTrustInner>,
}

impl fmt::Debug for ReloadingTrust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingTrust")
            .field("source", &self.inner.slot.name())
            .field("current", &*self.inner.slot.load())
            .finish()
    }
}

impl ReloadingTrust {
    /// Re-reads the files and, when their content changed and loads, swaps the material in. `Ok(true)` when
    /// new material is in force.
    pub fn poll(&self) -> Result<bool, TlsConfigError> {
        self.inner
            .slot
            .update(false, || self.inner.spec.read_files(), |f| self.inner.spec.build(f))
    }

    /// Re-reads and re-loads the files even when they did not change.
    pub fn reload(&self) -> Result<(), TlsConfigError> {
        self.inner
            .slot
            .update(true, || self.inner.spec.read_files(), |f| self.inner.spec.build(f))
            .map(|_| ())
    }

    /// Reload counters and the last error.
    pub fn status(&self) -> ReloadStatus {
        self.inner.slot.status()
    }

    /// A fixed-or-reloading [`Trust`] view of this (same as `Trust::from(self.clone())`).
    pub fn trust(&self) -> Trust {
        Trust::from(self.clone())
    }
}

impl crate::reload::Reload for ReloadingTrust {
    fn poll(&self) -> Result<bool, TlsConfigError> {
        ReloadingTrust::poll(self)
    }
    fn status(&self) -> ReloadStatus {
        ReloadingTrust::status(self)
    }
    fn name(&self) -> String {
        format!("trust ({})", self.inner.slot.name())
    }
}
