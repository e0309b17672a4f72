//! Reading certificates, keys and CRLs from PEM (rustls-pki-types' parser).

use std::path::Path;

use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

use crate::error::TlsConfigError;

/// Reads a whole file.
pub(crate) fn read(path: &Path) -> Result<Vec<u8>, TlsConfigError> {
    std::fs::read(path).map_err(|source| TlsConfigError::Read {
        path: path.to_owned(),
        source,
    })
}

fn pem_error(what: &str, e: &pem::Error) -> TlsConfigError {
    TlsConfigError::Pem {
        what: what.to_owned(),
        message: e.to_string(),
    }
}

/// Every `CERTIFICATE` block of `pem`; at least one.
pub(crate) fn certs(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(what, &e))?;
    if certs.is_empty() {
        return Err(TlsConfigError::NoCertificates { what: what.to_owned() });
    }
    Ok(certs)
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) of `pem`.
pub(crate) fn key(pem: &[u8], what: &str) -> Result<PrivateKeyDer<'static>, TlsConfigError> {
    match PrivateKeyDer::from_pem_slice(pem) {
        Ok(key) => Ok(key),
        Err(pem::Error::NoItemsFound) => Err(TlsConfigError::NoPrivateKey { what: what.to_owned() }),
        // The parser's own messages could echo fragments of the key: say only that the PEM is invalid.
        Err(_) => Err(TlsConfigError::Pem {
            what: what.to_owned(),
            message: "malformed PEM".into(),
        }),
    }
}

/// Every `X509 CRL` block of `pem`.
pub(crate) fn crls(pem: &[u8], what: &str) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsConfigError> {
    let crls = CertificateRevocationListDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(what, &e))?;
    if crls.is_empty() {
        return Err(TlsConfigError::InvalidCrl {
            what: what.to_owned(),
            message: "no X509 CRL block found".into(),
        });
    }
    Ok(crls)
}

/// A short description of a file source for messages.
pub(crate) fn describe(path: &Path) -> String {
    path.display().to_string()
}
