//! Turning a certificate into a [`PeerIdentity`] (x509-parser), and reading the SPIFFE ID of an X.509-SVID.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use msec_core::spiffe::{SpiffeId, SpiffeIdError};
use msec_core::{PeerIdentity, PeerSource};
use x509_parser::asn1_rs::Tag;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;
use x509_parser::x509::X509Name;

/// Why bytes could not be read as an X.509 certificate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertificateParseError {
    /// The bytes are not a DER X.509 certificate (or have trailing bytes).
    #[error("not a valid DER X.509 certificate")]
    Malformed,
    /// An extension the identity needs (subject alternative names) is malformed or duplicated.
    #[error("the subject alternative name extension is malformed or duplicated")]
    BadSubjectAltName,
}

/// Why a certificate is not a valid leaf X.509-SVID (SPIFFE X509-SVID §2, §4, §5).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SvidError {
    /// The certificate cannot be parsed.
    #[error("the certificate cannot be parsed")]
    Unparseable,
    /// The certificate has no URI SAN.
    #[error("the certificate has no URI SAN")]
    NoUriSan,
    /// The certificate has more than one URI SAN; validators must reject it.
    #[error("the certificate has {0} URI SANs; an SVID has exactly one")]
    MultipleUriSans(usize),
    /// The URI SAN is not a valid SPIFFE ID.
    #[error("the URI SAN is not a valid SPIFFE ID: {0}")]
    InvalidId(SpiffeIdError),
    /// The SPIFFE ID has no path: that names a trust domain, not a workload.
    #[error("a leaf SVID's SPIFFE ID must have a path")]
    RootId,
    /// The certificate is a CA (`cA` = true): signing certificates cannot authenticate.
    #[error("the certificate is a CA certificate")]
    IsCa,
    /// The key usage has `keyCertSign` or `cRLSign`.
    #[error("a leaf SVID must not have the keyCertSign or cRLSign key usage")]
    SigningKeyUsage,
    /// The SPIFFE ID's trust domain has no bundle in this trust.
    #[error("trust domain `{0}` has no bundle")]
    UntrustedDomain(String),
    /// The SPIFFE ID is not one this client accepts for the server.
    #[error("SPIFFE ID `{0}` is not an accepted server identity")]
    NotAccepted(String),
}

impl SvidError {
    /// A stable snake_case name, used as a metric label.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Unparseable => "svid_unparseable",
            Self::NoUriSan => "svid_no_uri_san",
            Self::MultipleUriSans(_) => "svid_multiple_uri_sans",
            Self::InvalidId(_) => "svid_invalid_id",
            Self::RootId => "svid_root_id",
            Self::IsCa => "svid_is_ca",
            Self::SigningKeyUsage => "svid_signing_key_usage",
            Self::UntrustedDomain(_) => "untrusted_trust_domain",
            Self::NotAccepted(_) => "spiffe_id_not_accepted",
        }
    }
}

pub(crate) fn parse(der: &[u8]) -> Result<X509Certificate<'_>, CertificateParseError> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Ok(cert),
        _ => Err(CertificateParseError::Malformed),
    }
}

/// The URI and DNS SANs of a certificate. URI entries that are not valid UTF-8 are counted (as `None`), so a
/// second URI SAN cannot hide by being malformed.
struct Sans<'a> {
    uris: Vec<Option<&'a str>>,
    dns: Vec<&'a str>,
}

fn sans<'a>(cert: &'a X509Certificate<'_>) -> Result<Sans<'a>, CertificateParseError> {
    let mut out = Sans {
        uris: Vec::new(),
        dns: Vec::new(),
    };
    let ext = cert
        .subject_alternative_name()
        .map_err(|_| CertificateParseError::BadSubjectAltName)?;
    if let Some(ext) = ext {
        for name in &ext.value.general_names {
            match name {
                GeneralName::URI(u) => out.uris.push(Some(u)),
                GeneralName::DNSName(d) => out.dns.push(d),
                GeneralName::Invalid(tag, _) if *tag == Tag(6) => out.uris.push(None),
                _ => {}
            }
        }
    }
    Ok(out)
}

/// The SPIFFE ID of a parsed certificate, when it is a valid leaf X.509-SVID: exactly one URI SAN, a valid
/// SPIFFE ID with a path, not a CA, no `keyCertSign` / `cRLSign`.
pub(crate) fn svid_id_of(cert: &X509Certificate<'_>) -> Result<SpiffeId, SvidError> {
    let sans = sans(cert).map_err(|_| SvidError::Unparseable)?;
    let uri = match sans.uris.as_slice() {
        [] => return Err(SvidError::NoUriSan),
        [one] => one.ok_or(SvidError::InvalidId(SpiffeIdError::BadScheme))?,
        many => return Err(SvidError::MultipleUriSans(many.len())),
    };
    let id = SpiffeId::parse(uri).map_err(SvidError::InvalidId)?;
    if id.path().is_empty() {
        return Err(SvidError::RootId);
    }
    match cert.basic_constraints() {
        Ok(Some(bc)) if bc.value.ca => return Err(SvidError::IsCa),
        Ok(_) => {}
        Err(_) => return Err(SvidError::Unparseable),
    }
    match cert.key_usage() {
        Ok(Some(ku)) if ku.value.key_cert_sign() || ku.value.crl_sign() => return Err(SvidError::SigningKeyUsage),
        Ok(_) => {}
        Err(_) => return Err(SvidError::Unparseable),
    }
    Ok(id)
}

/// The SPIFFE ID of a DER certificate, when it is a valid leaf X.509-SVID.
///
/// This checks the SVID's *shape* only (exactly one URI SAN, a SPIFFE ID with a path, a leaf certificate);
/// it does not verify the chain. The verifiers of this crate do both.
///
/// ```
/// let ca = msec_test_support::TestCa::new("example.org");
/// let svid = ca.svid("/ns/prod/sa/web");
/// let id = msec_tls::svid_spiffe_id(&svid.cert_der)?;
/// assert_eq!(id.as_str(), "spiffe://example.org/ns/prod/sa/web");
/// # Ok::<(), msec_tls::SvidError>(())
/// ```
pub fn svid_spiffe_id(der: &[u8]) -> Result<SpiffeId, SvidError> {
    let cert = parse(der).map_err(|_| SvidError::Unparseable)?;
    svid_id_of(&cert)
}

/// Parses a DER certificate into a [`PeerIdentity`] with the given source.
///
/// The SPIFFE ID is set only when the certificate is a valid leaf X.509-SVID ([`svid_spiffe_id`]); a
/// certificate with two URI SANs keeps both in `uris` but has no SPIFFE ID, so SPIFFE allowlists refuse it.
/// The subject and issuer are in RFC 4514 form (most specific RDN first), the serial is lowercase hex, and the
/// fingerprint is the SHA-256 of the DER bytes.
///
/// The serve loop calls this once per connection; adapters call it for certificates that another component
/// verified. It does **not** verify anything.
///
/// ```
/// use msec_core::PeerSource;
/// let ca = msec_test_support::TestCa::new("example.org");
/// let svid = ca.svid("/ns/prod/sa/web");
/// let peer = msec_tls::peer_identity_from_der(&svid.cert_der, PeerSource::Handshake)?;
/// assert_eq!(peer.trust_domain(), Some("example.org"));
/// assert_eq!(peer.subject, "CN=spiffe://example.org/ns/prod/sa/web");
/// # Ok::<(), msec_tls::CertificateParseError>(())
/// ```
pub fn peer_identity_from_der(der: &[u8], source: PeerSource) -> Result<PeerIdentity, CertificateParseError> {
    let cert = parse(der)?;
    let sans = sans(&cert)?;
    let spiffe_id = svid_id_of(&cert).ok();
    let mut fp = [0u8; 32];
    fp.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, der).as_ref());
    let validity = cert.validity();
    let mut b = PeerIdentity::builder();
    if let Some(id) = spiffe_id {
        b = b.spiffe_id(id);
    }
    Ok(b.uris(sans.uris.iter().flatten().map(|u| (*u).to_owned()).collect())
        .dns_names(sans.dns.iter().map(|d| (*d).to_owned()).collect())
        .subject(rfc4514(cert.subject()))
        .issuer(rfc4514(cert.issuer()))
        .serial(serial_hex(cert.raw_serial()))
        .fingerprint_sha256(fp)
        .validity(
            unix_time(validity.not_before.timestamp()),
            unix_time(validity.not_after.timestamp()),
        )
        .source(source)
        .build())
}

fn unix_time(secs: i64) -> SystemTime {
    if secs >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs())
    } else {
        SystemTime::UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    }
}

/// Lowercase hex of the serial's magnitude (no leading zero bytes, at least one digit pair).
fn serial_hex(raw: &[u8]) -> String {
    let start = raw.iter().position(|b| *b != 0).unwrap_or(raw.len().saturating_sub(1));
    let mut s = String::with_capacity(raw.len() * 2);
    for b in &raw[start.min(raw.len())..] {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// RFC 4514 attribute type names; anything else is written as a dotted OID.
fn short_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.6" => "C",
        "2.5.4.9" => "STREET",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        _ => return None,
    })
}

/// The RFC 4514 string of a distinguished name: RDNs from last to first, `,`-separated, multi-valued RDNs
/// joined by `+`, special characters escaped, non-string values as `#` + hex of their DER.
pub(crate) fn rfc4514(name: &X509Name<'_>) -> String {
    let rdns: Vec<_> = name.iter_rdn().collect();
    let mut out = String::new();
    for (i, rdn) in rdns.iter().rev().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for (j, atv) in rdn.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            let oid = atv.attr_type().to_id_string();
            match short_name(&oid) {
                Some(n) => out.push_str(n),
                None => out.push_str(&oid),
            }
            out.push('=');
            match atv.as_str() {
                Ok(v) => escape_value(&mut out, v),
                Err(_) => {
                    out.push('#');
                    let v = atv.attr_value();
                    // Tag and definite length, then the content: the value's DER.
                    let data = v.data;
                    let _ = write!(out, "{:02x}", v.tag().0 as u8);
                    push_der_len(&mut out, data.len());
                    for b in data {
                        let _ = write!(out, "{b:02x}");
                    }
                }
            }
        }
    }
    out
}

fn push_der_len(out: &mut String, len: usize) {
    if len < 0x80 {
        let _ = write!(out, "{len:02x}");
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        let _ = write!(out, "{:02x}", 0x80 | (bytes.len() - skip));
        for b in &bytes[skip..] {
            let _ = write!(out, "{b:02x}");
        }
    }
}

fn escape_value(out: &mut String, v: &str) {
    let last = v.chars().count().saturating_sub(1);
    for (i, c) in v.chars().enumerate() {
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            '\0' => out.push_str("\\00"),
            c if c.is_control() => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    let _ = write!(out, "\\{b:02x}");
                }
            }
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_hex_strips_sign_byte() {
        assert_eq!(serial_hex(&[0x00, 0x8f, 0x01]), "8f01");
        assert_eq!(serial_hex(&[0x0a]), "0a");
        assert_eq!(serial_hex(&[0x00]), "00");
        assert_eq!(serial_hex(&[]), "");
    }

    #[test]
    fn escaping() {
        let mut s = String::new();
        escape_value(&mut s, " a,b+c\"#");
        assert_eq!(s, "\\ a\\,b\\+c\\\"#");
        let mut s = String::new();
        escape_value(&mut s, "#x ");
        assert_eq!(s, "\\#x\\ ");
    }

    #[test]
    fn garbage_is_an_error() {
        assert_eq!(
            peer_identity_from_der(b"not a cert", PeerSource::Handshake),
            Err(CertificateParseError::Malformed)
        );
        assert_eq!(svid_spiffe_id(b""), Err(SvidError::Unparseable));
    }
}
