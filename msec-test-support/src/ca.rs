//! A test certificate authority (rcgen) that issues server certificates and SPIFFE client SVIDs.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::OffsetDateTime;

/// A certificate and its private key.
#[derive(Clone)]
pub struct TestCert {
    /// Certificate PEM.
    pub cert_pem: String,
    /// Certificate DER.
    pub cert_der: Vec<u8>,
    /// Private key PEM (PKCS#8).
    pub key_pem: String,
    /// Private key DER (PKCS#8).
    pub key_der: Vec<u8>,
}

impl std::fmt::Debug for TestCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCert")
            .field("cert_der_len", &self.cert_der.len())
            .finish()
    }
}

impl TestCert {
    /// The certificate as rustls wants it.
    pub fn cert(&self) -> CertificateDer<'static> {
        CertificateDer::from(self.cert_der.clone())
    }
    /// The key as rustls wants it.
    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }
    /// Writes `<name>.crt` and `<name>.key` into `dir`, returning their paths.
    pub fn write_to(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let c = dir.join(format!("{name}.crt"));
        let k = dir.join(format!("{name}.key"));
        std::fs::write(&c, &self.cert_pem).expect("write cert");
        std::fs::write(&k, &self.key_pem).expect("write key");
        (c, k)
    }
}

/// What to put in a leaf certificate.
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct LeafSpec {
    common_name: String,
    dns: Vec<String>,
    ips: Vec<IpAddr>,
    uris: Vec<String>,
    /// Offsets from now: (not_before, not_after), negative = in the past.
    validity: Option<(i64, i64)>,
    server: bool,
    client: bool,
    serial: Option<u64>,
}

impl LeafSpec {
    /// A leaf with common name `cn`, valid from an hour ago for a day, usable as client and server.
    pub fn new(cn: &str) -> Self {
        Self {
            common_name: cn.to_owned(),
            server: true,
            client: true,
            ..Self::default()
        }
    }
    /// A server certificate for `localhost` and 127.0.0.1 / ::1.
    pub fn localhost() -> Self {
        Self::new("localhost")
            .dns("localhost")
            .ip("127.0.0.1".parse().expect("ip"))
            .ip("::1".parse().expect("ip"))
    }
    /// Adds a DNS SAN.
    pub fn dns(mut self, name: &str) -> Self {
        self.dns.push(name.to_owned());
        self
    }
    /// Adds an IP SAN.
    pub fn ip(mut self, ip: IpAddr) -> Self {
        self.ips.push(ip);
        self
    }
    /// Adds a URI SAN (e.g. a SPIFFE ID).
    pub fn uri(mut self, uri: &str) -> Self {
        self.uris.push(uri.to_owned());
        self
    }
    /// Validity relative to now, in seconds (negative = past).
    pub fn validity_secs(mut self, not_before: i64, not_after: i64) -> Self {
        self.validity = Some((not_before, not_after));
        self
    }
    /// Expired an hour ago.
    pub fn expired(self) -> Self {
        self.validity_secs(-86_400, -3_600)
    }
    /// Valid only from tomorrow.
    pub fn not_yet_valid(self) -> Self {
        self.validity_secs(86_400, 2 * 86_400)
    }
    /// Sets the serial number (otherwise rcgen picks a random one), e.g. to revoke it in a [`TestCa::crl_pem`].
    pub fn serial(mut self, serial: u64) -> Self {
        self.serial = Some(serial);
        self
    }
    /// Usable for client authentication only (no serverAuth extended key usage).
    pub fn client_only(mut self) -> Self {
        self.server = false;
        self.client = true;
        self
    }
}

/// A self-signed root CA for one trust domain.
pub struct TestCa {
    trust_domain: String,
    cert_pem: String,
    cert_der: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa")
            .field("trust_domain", &self.trust_domain)
            .finish()
    }
}

fn at(offset_secs: i64) -> OffsetDateTime {
    OffsetDateTime::now_utc() + time::Duration::seconds(offset_secs)
}

impl TestCa {
    /// A new CA (ECDSA P-256) for `trust_domain`, e.g. `example.org`.
    pub fn new(trust_domain: &str) -> Self {
        let key = KeyPair::generate().expect("generate CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, format!("msec test CA {trust_domain}"));
        dn.push(DnType::OrganizationName, "msec tests");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = at(-86_400);
        params.not_after = at(10 * 365 * 86_400);
        params.subject_alt_names.push(SanType::URI(
            format!("spiffe://{trust_domain}").try_into().expect("uri"),
        ));
        let cert = params.self_signed(&key).expect("self-sign CA");
        Self {
            trust_domain: trust_domain.to_owned(),
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            issuer: Issuer::new(params, key),
        }
    }

    /// The trust domain.
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }
    /// The CA certificate PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }
    /// The CA certificate DER.
    pub fn cert(&self) -> CertificateDer<'static> {
        CertificateDer::from(self.cert_der.clone())
    }

    /// Issues a leaf.
    pub fn issue(&self, spec: &LeafSpec) -> TestCert {
        let key = KeyPair::generate().expect("leaf key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, spec.common_name.clone());
        params.distinguished_name = dn;
        for d in &spec.dns {
            params
                .subject_alt_names
                .push(SanType::DnsName(d.clone().try_into().expect("dns")));
        }
        for ip in &spec.ips {
            params.subject_alt_names.push(SanType::IpAddress(*ip));
        }
        for u in &spec.uris {
            params
                .subject_alt_names
                .push(SanType::URI(u.clone().try_into().expect("uri")));
        }
        let (nb, na) = spec.validity.unwrap_or((-3_600, 86_400));
        params.not_before = at(nb);
        params.not_after = at(na);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        if spec.server {
            params.extended_key_usages.push(ExtendedKeyUsagePurpose::ServerAuth);
        }
        if spec.client {
            params.extended_key_usages.push(ExtendedKeyUsagePurpose::ClientAuth);
        }
        params.use_authority_key_identifier_extension = true;
        if let Some(serial) = spec.serial {
            params.serial_number = Some(rcgen::SerialNumber::from(serial));
        }
        let cert = params.signed_by(&key, &self.issuer).expect("sign leaf");
        TestCert {
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            key_pem: key.serialize_pem(),
            key_der: key.serialize_der(),
        }
    }

    /// An SVID for `spiffe://<trust domain><path>` (one SPIFFE URI SAN), valid for client and server auth.
    pub fn svid(&self, path: &str) -> TestCert {
        let id = format!("spiffe://{}{path}", self.trust_domain);
        self.issue(&LeafSpec::new(&id).uri(&id))
    }

    /// A server certificate for localhost.
    pub fn localhost(&self) -> TestCert {
        self.issue(&LeafSpec::localhost())
    }

    /// A CRL (PEM) signed by this CA revoking the given serial numbers (see [`LeafSpec::serial`]), valid from an
    /// hour ago for a day.
    pub fn crl_pem(&self, revoked_serials: &[u64]) -> String {
        let params = rcgen::CertificateRevocationListParams {
            this_update: at(-3_600),
            next_update: at(86_400),
            crl_number: rcgen::SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: revoked_serials
                .iter()
                .map(|s| rcgen::RevokedCertParams {
                    serial_number: rcgen::SerialNumber::from(*s),
                    revocation_time: at(-60),
                    reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        params
            .signed_by(&self.issuer)
            .expect("sign CRL")
            .pem()
            .expect("CRL PEM")
    }

    /// An intermediate CA for the same trust domain, signed by this CA. Its [`cert_pem`](Self::cert_pem) is the
    /// intermediate certificate; send it after a leaf it issues ([`TestCa::chain_pem`]).
    pub fn intermediate(&self, name: &str) -> TestCa {
        let key = KeyPair::generate().expect("generate intermediate key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, format!("msec test intermediate {name}"));
        dn.push(DnType::OrganizationName, "msec tests");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = at(-86_400);
        params.not_after = at(5 * 365 * 86_400);
        params.use_authority_key_identifier_extension = true;
        params.subject_alt_names.push(SanType::URI(
            format!("spiffe://{}", self.trust_domain).try_into().expect("uri"),
        ));
        let cert = params.signed_by(&key, &self.issuer).expect("sign intermediate");
        TestCa {
            trust_domain: self.trust_domain.clone(),
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            issuer: Issuer::new(params, key),
        }
    }

    /// `leaf`'s certificate followed by this CA's certificate (a chain for a leaf an intermediate issued).
    pub fn chain_pem(&self, leaf: &TestCert) -> String {
        format!("{}{}", leaf.cert_pem, self.cert_pem)
    }
}

/// A duration helper for readability in tests.
pub const HOUR: Duration = Duration::from_secs(3600);
