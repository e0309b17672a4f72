//! Configuration errors.

use std::path::PathBuf;

use msec_core::spiffe::SpiffeIdError;

/// Why TLS material or a configuration could not be loaded or built.
///
/// Returned at construction and by [`reload`](crate::ReloadingCert::reload): a bad file never replaces material
/// that works. Messages name the file or source and never include key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsConfigError {
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A PEM document is malformed.
    #[error("{what}: invalid PEM ({message})")]
    Pem {
        /// Where the PEM came from.
        what: String,
        /// What is wrong (never the content).
        message: String,
    },
    /// A PEM document holds no certificate.
    #[error("{what}: no certificate found")]
    NoCertificates {
        /// Where the PEM came from.
        what: String,
    },
    /// A PEM document holds no private key.
    #[error("{what}: no private key found")]
    NoPrivateKey {
        /// Where the PEM came from.
        what: String,
    },
    /// The private key is not usable with the ring provider.
    #[error("{what}: unsupported or invalid private key")]
    InvalidKey {
        /// Where the key came from.
        what: String,
    },
    /// The private key does not belong to the certificate.
    #[error("{what}: the private key does not match the certificate")]
    KeyMismatch {
        /// Where the certificate came from.
        what: String,
    },
    /// A certificate could not be used as a trust anchor.
    #[error("{what}: invalid trust anchor ({message})")]
    InvalidTrustAnchor {
        /// Where the certificate came from.
        what: String,
        /// What is wrong.
        message: String,
    },
    /// A certificate revocation list is malformed.
    #[error("{what}: invalid CRL ({message})")]
    InvalidCrl {
        /// Where the CRL came from.
        what: String,
        /// What is wrong.
        message: String,
    },
    /// A SPIFFE bundle document (JWKS with `x509-svid` keys) is malformed.
    #[error("{what}: invalid SPIFFE bundle ({message})")]
    InvalidBundle {
        /// Where the bundle came from.
        what: String,
        /// What is wrong.
        message: String,
    },
    /// The trust holds no CA certificate at all.
    #[error("the trust has no CA certificates")]
    EmptyTrust,
    /// A trust domain name is invalid.
    #[error("invalid trust domain: {0}")]
    TrustDomain(#[from] SpiffeIdError),
    /// The configuration is contradictory.
    #[error("invalid TLS configuration: {0}")]
    Invalid(&'static str),
    /// rustls refused the configuration.
    #[error("rustls: {0}")]
    Rustls(#[from] rustls::Error),
}
