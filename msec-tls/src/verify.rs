//! The rustls verifiers: client certificates (server side) and server certificates by DNS name or SPIFFE ID
//! (client side). Chains are checked with webpki against the [`Trust`] in force at handshake time.

use std::fmt;
use std::sync::Arc;

use http::{HeaderMap, Method};
use msec_core::PeerIdentity;
use msec_core::policy::{RequestFacts, Requirement};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::cert::provider;
use crate::identity::SvidError;
use crate::trust::{Trust, Usage, svid_error};

fn algs() -> WebPkiSupportedAlgorithms {
    provider().signature_verification_algorithms
}

/// Verifies client certificates against a [`Trust`] (server side).
pub(crate) struct ClientVerifier {
    trust: Trust,
    mandatory: bool,
    hints: Vec<DistinguishedName>,
    algs: WebPkiSupportedAlgorithms,
}

impl fmt::Debug for ClientVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientVerifier")
            .field("trust", &self.trust)
            .field("mandatory", &self.mandatory)
            .finish()
    }
}

impl ClientVerifier {
    pub(crate) fn new(trust: Trust, mandatory: bool) -> Self {
        Self {
            hints: trust.fixed_hints(),
            trust,
            mandatory,
            algs: algs(),
        }
    }
}

impl ClientCertVerifier for ClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.trust
            .current()
            .verify(end_entity, intermediates, now, Usage::Client, false, self.algs.all)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// What a client accepts as the server's identity.
#[derive(Debug, Clone)]
pub(crate) enum Expect {
    /// The DNS name / IP address the client connects to (classic WebPKI).
    Dns,
    /// A SPIFFE ID satisfying this requirement (built from msec-core's peer requirements).
    Spiffe(Requirement),
}

/// Verifies the server certificate (client side).
pub(crate) struct ServerVerifier {
    trust: Trust,
    expect: Expect,
    algs: WebPkiSupportedAlgorithms,
}

impl fmt::Debug for ServerVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerVerifier")
            .field("trust", &self.trust)
            .field("expect", &self.expect)
            .finish()
    }
}

impl ServerVerifier {
    pub(crate) fn new(trust: Trust, expect: Expect) -> Self {
        Self {
            trust,
            expect,
            algs: algs(),
        }
    }
}

/// True when `requirement` holds for a peer with SPIFFE ID `id`.
pub(crate) fn spiffe_requirement_holds(requirement: &Requirement, peer: &PeerIdentity) -> bool {
    let method = Method::GET;
    let headers = HeaderMap::new();
    requirement.holds(&RequestFacts::new(&method, "/", &headers).with_peer(peer))
}

impl ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let material = self.trust.current();
        match &self.expect {
            Expect::Dns => {
                material.verify(end_entity, intermediates, now, Usage::Server, false, self.algs.all)?;
                let parsed = rustls::server::ParsedCertificate::try_from(end_entity)?;
                rustls::client::verify_server_name(&parsed, server_name)?;
            }
            Expect::Spiffe(requirement) => {
                let verified = material.verify(end_entity, intermediates, now, Usage::Server, true, self.algs.all)?;
                let Some(id) = verified.spiffe_id else {
                    return Err(svid_error(SvidError::NoUriSan));
                };
                let peer = PeerIdentity::builder().spiffe_id(id.clone()).build();
                if !spiffe_requirement_holds(requirement, &peer) {
                    return Err(svid_error(SvidError::NotAccepted(id.to_string())));
                }
            }
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// An `Arc<dyn ...>` of the client verifier.
pub(crate) fn client_verifier(trust: Trust, mandatory: bool) -> Arc<dyn ClientCertVerifier> {
    Arc::new(ClientVerifier::new(trust, mandatory))
}
