//! Certificate-bound access tokens (RFC 8705 §3): [`CertificateBound`], a [`PostVerify`] hook that holds a token
//! carrying `cnf.x5t#S256` to the TLS client certificate the request came over.
//!
//! A token bound to a certificate is worthless to a thief who lacks the certificate's private key: the resource
//! server compares the SHA-256 thumbprint in the token's `cnf` claim with the thumbprint of the certificate the
//! client authenticated with in the TLS handshake. The peer comes from the `Arc<PeerIdentity>` that msec-tls's
//! serve loop (or its adapters, or a trusted proxy's `x-forwarded-client-cert`) puts in the request extensions.
//!
//! | token                          | peer certificate     | [`Off`](CnfMode::Off) | [`Optional`](CnfMode::Optional) | [`Strict`](CnfMode::Strict) |
//! |--------------------------------|----------------------|-----|-----|-----|
//! | no `cnf.x5t#S256`              | any / none           | passes | passes | 401 `certificate_binding_missing` |
//! | `cnf.x5t#S256` = thumbprint    | that certificate     | passes | passes | passes |
//! | `cnf.x5t#S256` = thumbprint    | another / none       | passes | 401 `certificate_binding_mismatch` | 401 `certificate_binding_mismatch` |
//! | `cnf.x5t#S256` not 32 bytes of base64url | any        | passes | 401 `invalid_claim` | 401 `invalid_claim` |
//!
//! All rejections are RFC 6750 `error="invalid_token"` challenges (gRPC `UNAUTHENTICATED`). The thumbprints are
//! compared in constant time.
//!
//! ```
//! use msec_authn::{AuthnLayer, cnf::CertificateBound, jwt::{Issuer, JwtValidator}};
//! # let key = msec_test_support::TestKey::es256();
//! let validator = JwtValidator::builder()
//!     .issuer(Issuer::new("https://id.example.com").audience("payments")
//!         .pem_key(Some("k1"), jsonwebtoken::Algorithm::ES256, key.public_pem.as_bytes()))
//!     .build()?;
//! // Serve it with msec_tls::serve and ClientAuth::required(..) so every request has its peer certificate.
//! let layer = AuthnLayer::jwt(validator).hook(CertificateBound::strict());
//! # let _ = layer;
//! # Ok::<(), msec_authn::ConfigError>(())
//! ```

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::Extensions;
use msec_core::{PeerIdentity, Principal};
use serde_json::Value;

use crate::authenticator::{Authenticated, AuthnFuture, PostVerify, RequestHead};
use crate::error::{AuthnError, AuthnErrorKind};

/// The confirmation-method member of `cnf` that carries the certificate thumbprint (RFC 8705 §3.1).
pub const X5T_S256: &str = "x5t#S256";

/// How [`CertificateBound`] treats tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum CnfMode {
    /// The binding is not checked (a deployment switch; prefer not adding the hook at all).
    Off,
    /// Tokens that carry `cnf.x5t#S256` must come over a TLS connection authenticated with that certificate;
    /// tokens without it pass. The usual mode while some clients still get unbound tokens.
    #[default]
    Optional,
    /// Every token must carry `cnf.x5t#S256`, and it must match the peer certificate.
    Strict,
}

/// Checks RFC 8705 certificate-bound access tokens against the TLS peer (see the [module docs](self)).
///
/// Add it to an [`AuthnLayer`](crate::AuthnLayer) with [`hook`](crate::AuthnLayer::hook). It runs on every
/// request, cached tokens included, since one token may arrive over several connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CertificateBound {
    mode: CnfMode,
}

impl CertificateBound {
    /// A check in `mode`.
    pub fn new(mode: CnfMode) -> Self {
        Self { mode }
    }

    /// Bound tokens must match the peer; unbound tokens pass.
    pub fn optional() -> Self {
        Self::new(CnfMode::Optional)
    }

    /// Every token must be bound to the peer's certificate.
    pub fn strict() -> Self {
        Self::new(CnfMode::Strict)
    }

    /// The mode.
    pub fn mode(&self) -> CnfMode {
        self.mode
    }

    /// Checks `principal`'s token against the peer in `extensions` (`Arc<PeerIdentity>`), synchronously.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use msec_authn::cnf::CertificateBound;
    /// use msec_core::{PeerIdentity, Principal};
    /// use serde_json::json;
    ///
    /// let fingerprint = [7u8; 32];
    /// let claims = json!({"cnf": {"x5t#S256": "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc"}});
    /// let principal = Principal::builder("svc").claims(claims.as_object().unwrap().clone()).build();
    /// let mut ext = http::Extensions::new();
    /// ext.insert(Arc::new(PeerIdentity::builder().fingerprint_sha256(fingerprint).build()));
    /// assert!(CertificateBound::strict().verify(&principal, &ext).is_ok());
    /// let other = http::Extensions::new();
    /// let e = CertificateBound::strict().verify(&principal, &other).unwrap_err();
    /// assert_eq!(e.code().as_str(), "certificate_binding_mismatch");
    /// ```
    pub fn verify(&self, principal: &Principal, extensions: &Extensions) -> Result<(), AuthnError> {
        if self.mode == CnfMode::Off {
            return Ok(());
        }
        let Some(claimed) = thumbprint_claim(principal)? else {
            return match self.mode {
                CnfMode::Strict => Err(AuthnError::new(
                    AuthnErrorKind::CertificateBindingMissing,
                    "the token has no cnf.x5t#S256 and certificate binding is strict",
                )),
                _ => Ok(()),
            };
        };
        let Some(peer) = extensions.get::<Arc<PeerIdentity>>() else {
            return Err(AuthnError::new(
                AuthnErrorKind::CertificateBindingMismatch,
                "the token is certificate-bound but the request has no TLS client certificate",
            ));
        };
        if msec_core::secret::ct_eq(&claimed, &peer.fingerprint_sha256) {
            Ok(())
        } else {
            Err(AuthnError::new(
                AuthnErrorKind::CertificateBindingMismatch,
                format!(
                    "cnf.x5t#S256 does not match the client certificate (peer fingerprint {})",
                    peer.fingerprint_hex()
                ),
            ))
        }
    }
}

/// The decoded `cnf.x5t#S256` of the token: `None` when absent, an `invalid_claim` error when malformed.
fn thumbprint_claim(principal: &Principal) -> Result<Option<[u8; 32]>, AuthnError> {
    let invalid = |why: &'static str| AuthnError::new(AuthnErrorKind::InvalidClaim, why);
    let Some(cnf) = principal.claims.get("cnf") else {
        return Ok(None);
    };
    let Value::Object(cnf) = cnf else {
        return Err(invalid("cnf is not a JSON object"));
    };
    let Some(x5t) = cnf.get(X5T_S256) else {
        // Another confirmation method (DPoP's `jkt`, ...): not bound to a certificate.
        return Ok(None);
    };
    let Value::String(x5t) = x5t else {
        return Err(invalid("cnf.x5t#S256 is not a string"));
    };
    // 32 bytes are exactly 43 base64url characters without padding; check the length before decoding.
    if x5t.len() != 43 {
        return Err(invalid("cnf.x5t#S256 is not a base64url SHA-256 thumbprint"));
    }
    let mut out = [0u8; 32];
    match URL_SAFE_NO_PAD.decode_slice(x5t.as_bytes(), &mut out) {
        Ok(32) => Ok(Some(out)),
        _ => Err(invalid("cnf.x5t#S256 is not a base64url SHA-256 thumbprint")),
    }
}

impl PostVerify for CertificateBound {
    fn check(&self, auth: &Authenticated, head: &RequestHead<'_>) -> AuthnFuture<Result<(), AuthnError>> {
        AuthnFuture::ready(self.verify(&auth.principal, head.extensions))
    }
}

/// The RFC 8705 thumbprint of a DER certificate: base64url (no padding) of its SHA-256, the value an
/// authorization server puts in `cnf.x5t#S256`.
///
/// ```
/// let t = msec_authn::cnf::thumbprint(b"not really a certificate");
/// assert_eq!(t.len(), 43);
/// ```
pub fn thumbprint(cert_der: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA256, cert_der))
}

/// The RFC 8705 thumbprint of a peer's certificate (from its stored SHA-256 fingerprint).
pub fn peer_thumbprint(peer: &PeerIdentity) -> String {
    URL_SAFE_NO_PAD.encode(peer.fingerprint_sha256)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn principal(claims: Value) -> Principal {
        let Value::Object(m) = claims else { unreachable!() };
        Principal::builder("svc").claims(m).build()
    }

    fn with_peer(fp: [u8; 32]) -> Extensions {
        let mut e = Extensions::new();
        e.insert(Arc::new(PeerIdentity::builder().fingerprint_sha256(fp).build()));
        e
    }

    fn code(r: Result<(), AuthnError>) -> String {
        r.map_or_else(|e| e.code().as_str().to_owned(), |()| "ok".to_owned())
    }

    #[test]
    fn modes() {
        let fp = *ring::digest::digest(&ring::digest::SHA256, b"cert")
            .as_ref()
            .first_chunk::<32>()
            .unwrap();
        let bound = principal(json!({"cnf": {"x5t#S256": thumbprint(b"cert")}}));
        let unbound = principal(json!({"sub": "svc"}));
        let dpop = principal(json!({"cnf": {"jkt": "abc"}}));
        let right = with_peer(fp);
        let wrong = with_peer([1; 32]);
        let none = Extensions::new();

        for m in [CertificateBound::optional(), CertificateBound::strict()] {
            assert_eq!(code(m.verify(&bound, &right)), "ok");
            assert_eq!(code(m.verify(&bound, &wrong)), "certificate_binding_mismatch");
            assert_eq!(code(m.verify(&bound, &none)), "certificate_binding_mismatch");
        }
        let opt = CertificateBound::optional();
        assert_eq!(code(opt.verify(&unbound, &none)), "ok");
        assert_eq!(code(opt.verify(&dpop, &right)), "ok");
        let strict = CertificateBound::strict();
        assert_eq!(code(strict.verify(&unbound, &right)), "certificate_binding_missing");
        assert_eq!(code(strict.verify(&dpop, &right)), "certificate_binding_missing");
        let off = CertificateBound::new(CnfMode::Off);
        assert_eq!(code(off.verify(&bound, &wrong)), "ok");
        assert_eq!(code(off.verify(&principal(json!({"cnf": 5})), &none)), "ok");
        assert_eq!(CertificateBound::default().mode(), CnfMode::Optional);
    }

    #[test]
    fn malformed_thumbprints() {
        let right = with_peer([0; 32]);
        let m = CertificateBound::optional();
        for bad in [
            json!({"cnf": "x"}),
            json!({"cnf": {"x5t#S256": 1}}),
            json!({"cnf": {"x5t#S256": ""}}),
            // Padded, standard alphabet, too long, too short, non-canonical last symbol.
            json!({"cnf": {"x5t#S256": format!("{}=", URL_SAFE_NO_PAD.encode([0u8; 32]))}}),
            json!({"cnf": {"x5t#S256": "+".repeat(43)}}),
            json!({"cnf": {"x5t#S256": "A".repeat(44)}}),
            json!({"cnf": {"x5t#S256": "A".repeat(42)}}),
            json!({"cnf": {"x5t#S256": format!("{}B", "A".repeat(42))}}),
        ] {
            assert_eq!(
                code(m.verify(&principal(bad.clone()), &right)),
                "invalid_claim",
                "{bad}"
            );
        }
        let zero = json!({"cnf": {"x5t#S256": "A".repeat(43)}});
        assert_eq!(code(m.verify(&principal(zero), &right)), "ok");
    }

    #[test]
    fn rejection_is_invalid_token() {
        let e = AuthnError::new(AuthnErrorKind::CertificateBindingMismatch, "x");
        let r = e.rejection();
        assert_eq!(r.status(), 401);
        let e = AuthnError::new(AuthnErrorKind::CertificateBindingMissing, "x");
        assert_eq!(e.rejection().status(), 401);
    }

    #[test]
    fn hook_reads_the_request_extensions() {
        let mut req = http::Request::new(());
        req.extensions_mut()
            .insert(Arc::new(PeerIdentity::builder().fingerprint_sha256([9; 32]).build()));
        let auth = Authenticated::new(Arc::new(principal(
            json!({"cnf": {"x5t#S256": URL_SAFE_NO_PAD.encode([9u8; 32])}}),
        )));
        let f = CertificateBound::strict().check(&auth, &RequestHead::from_request(&req));
        assert!(matches!(f.into_ready(), Ok(Ok(()))));
        let peer = PeerIdentity::builder().fingerprint_sha256([9; 32]).build();
        assert_eq!(peer_thumbprint(&peer), URL_SAFE_NO_PAD.encode([9u8; 32]));
    }
}
