//! A [ring](https://docs.rs/ring)-backed [`CryptoProvider`] for `jsonwebtoken` 11.
//!
//! jsonwebtoken 11 decouples its cryptography behind a process-global `CryptoProvider` and ships backends only
//! for aws-lc-rs and RustCrypto. msec uses ring everywhere (rustls with ring, ring AEAD/HMAC), so this module
//! provides [`RING_PROVIDER`]: signer and verifier factories for every JWS algorithm jsonwebtoken knows
//! (HS256/384/512, RS256/384/512, PS256/384/512, ES256, ES384, EdDSA) and the `KeyUtils` JWK helpers.
//!
//! # No install call needed, and no panic when another provider is installed
//!
//! msec-authn never reads or writes jsonwebtoken's process-global provider: its validator builds every
//! verifier through [`RING_PROVIDER`] directly (`(RING_PROVIDER.verifier_factory)(..)`). So
//!
//! - a service using msec-authn does not have to remember an install call, and
//! - if the application (or another library) installed a different provider first, msec keeps verifying with
//!   ring and nothing panics; the other provider keeps serving the application's own `jsonwebtoken` calls.
//!
//! Only when the application *also* calls `jsonwebtoken::decode` / `encode` itself does the global matter. It
//! can then call [`install_default`], which installs ring if no provider is installed yet and otherwise reports
//! what is there, never panicking. (jsonwebtoken, built without its `aws_lc_rs` / `rust_crypto` features as in
//! msec, has no usable provider of its own: its first `decode` would panic without an install.)
//!
//! ```
//! use msec_authn::crypto::{self, ProviderStatus};
//! use jsonwebtoken::{Algorithm, EncodingKey, DecodingKey, Header, Validation};
//!
//! // Only needed because this example calls jsonwebtoken directly.
//! assert!(matches!(crypto::install_default(), ProviderStatus::Installed | ProviderStatus::AlreadyInstalled));
//! let key = b"an example HMAC secret of at least 32 bytes!";
//! let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &serde_json::json!({"sub": "a", "exp": 4102444800u64}),
//!     &EncodingKey::from_secret(key))?;
//! let data = jsonwebtoken::decode::<serde_json::Value>(&token, &DecodingKey::from_secret(key), &Validation::new(Algorithm::HS256))?;
//! assert_eq!(data.claims["sub"], "a");
//! # Ok::<(), jsonwebtoken::errors::Error>(())
//! ```

use std::sync::atomic::{AtomicBool, Ordering};

use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{Error, ErrorKind};
use jsonwebtoken::jwk::{EllipticCurve, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind, EncodingKey};
use ring::rand::SystemRandom;
use ring::signature::{self as sig, KeyPair as _};
use signature::{Signer, Verifier};

/// The ring-backed provider. Pass it to `jsonwebtoken::crypto::CryptoProvider::install_default`, or let
/// [`install_default`] do it.
pub static RING_PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: new_signer,
    verifier_factory: new_verifier,
    key_utils: KeyUtils {
        rsa_pub_components_from_private_key: rsa_components_from_private_key,
        rsa_pub_components_from_public_key: rsa_components_from_public_key,
        ec_pub_components_from_private_key: ec_components_from_private_key,
        ed_pub_components_from_private_key,
        compute_digest,
    },
};

/// What [`install_default`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProviderStatus {
    /// This call installed [`RING_PROVIDER`] as jsonwebtoken's process default.
    Installed,
    /// An earlier call of [`install_default`] installed [`RING_PROVIDER`].
    AlreadyInstalled,
    /// The process default was already set by something else: another provider installed by the application or
    /// a library, jsonwebtoken's own feature-based choice made by an earlier `decode`, or `RING_PROVIDER`
    /// installed directly through `CryptoProvider::install_default` (jsonwebtoken does not say which).
    /// msec-authn is unaffected; the application's own `jsonwebtoken` calls use that provider.
    OtherProviderInstalled,
}

static INSTALLED_BY_US: AtomicBool = AtomicBool::new(false);

/// Installs [`RING_PROVIDER`] as jsonwebtoken's process-wide default if none is installed yet. Idempotent,
/// never panics. msec-authn itself does not need this (see the [module docs](self)).
pub fn install_default() -> ProviderStatus {
    // jsonwebtoken's `install_default` returns the provider it was given, not the one installed, on failure:
    // remember our own success instead of comparing pointers.
    match RING_PROVIDER.install_default() {
        Ok(()) => {
            INSTALLED_BY_US.store(true, Ordering::Release);
            ProviderStatus::Installed
        }
        Err(_) if INSTALLED_BY_US.load(Ordering::Acquire) => ProviderStatus::AlreadyInstalled,
        Err(_) => ProviderStatus::OtherProviderInstalled,
    }
}

/// The provider msec-authn verifies with (always [`RING_PROVIDER`]).
pub fn provider() -> &'static CryptoProvider {
    &RING_PROVIDER
}

fn sig_err<E: std::fmt::Display>(e: E) -> signature::Error {
    // ring errors carry no detail (by design); keep it that way.
    let _ = e;
    signature::Error::new()
}

fn wrong_key() -> Error {
    ErrorKind::InvalidKeyFormat.into()
}

// ---------------------------------------------------------------------------------------------------------------
// Verifiers
// ---------------------------------------------------------------------------------------------------------------

/// RSA public key material in the form ring verifies with.
enum RsaPublic {
    /// DER `RSAPublicKey` (PKCS#1), as PEM / DER keys give it.
    Der(Vec<u8>),
    /// Big-endian modulus and exponent, as JWKs give them.
    Components { n: Vec<u8>, e: Vec<u8> },
}

enum VerifierKind {
    Rsa {
        params: &'static sig::RsaParameters,
        key: RsaPublic,
    },
    /// ECDSA (fixed-length P1363 signatures, as JWS uses) and Ed25519 over the raw public key (uncompressed point,
    /// or the 32-byte Ed25519 key).
    Raw {
        ring_alg: &'static dyn sig::VerificationAlgorithm,
        key: Vec<u8>,
    },
    /// HMAC, verified with ring's constant-time `hmac::verify`.
    Hmac(ring::hmac::Key),
}

/// A ring verifier for one algorithm and one key: what [`RING_PROVIDER`]'s `verifier_factory` returns (boxed),
/// and what msec-authn's key store keeps per key (unboxed, `Send + Sync`, built once per key).
pub struct RingVerifier {
    alg: Algorithm,
    kind: VerifierKind,
}

impl std::fmt::Debug for RingVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key (an HMAC key is a secret).
        f.debug_struct("RingVerifier")
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl RingVerifier {
    /// Builds a verifier for `alg` over `key`. Fails when the key's family does not match the algorithm.
    pub fn new(alg: Algorithm, key: &DecodingKey) -> Result<Self, Error> {
        if key.family() != alg.family() {
            return Err(ErrorKind::InvalidAlgorithm.into());
        }
        if let Some(h) = hmac_alg(alg) {
            let secret = key.try_get_as_bytes()?;
            return Ok(Self {
                alg,
                kind: VerifierKind::Hmac(ring::hmac::Key::new(h, secret)),
            });
        }
        if let Some((params, _)) = rsa_params(alg) {
            let key = match key.kind() {
                DecodingKeyKind::SecretOrDer(der) => RsaPublic::Der(der.clone()),
                // ring wants minimal big-endian integers: drop leading zero bytes (DER and many JWK
                // producers keep one before a high bit).
                DecodingKeyKind::RsaModulusExponent { n, e } => RsaPublic::Components {
                    n: strip_leading_zeros(n).to_vec(),
                    e: strip_leading_zeros(e).to_vec(),
                },
            };
            return Ok(Self {
                alg,
                kind: VerifierKind::Rsa { params, key },
            });
        }
        let ring_alg: &'static dyn sig::VerificationAlgorithm = match alg {
            Algorithm::ES256 => &sig::ECDSA_P256_SHA256_FIXED,
            Algorithm::ES384 => &sig::ECDSA_P384_SHA384_FIXED,
            Algorithm::EdDSA => &sig::ED25519,
            _ => return Err(ErrorKind::InvalidAlgorithm.into()),
        };
        Ok(Self {
            alg,
            kind: VerifierKind::Raw {
                ring_alg,
                key: key.try_get_as_bytes()?.to_vec(),
            },
        })
    }

    /// The algorithm this verifier is bound to.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// Verifies `signature` over `msg`. Errors carry no detail.
    pub fn verify_bytes(&self, msg: &[u8], signature: &[u8]) -> Result<(), signature::Error> {
        match &self.kind {
            VerifierKind::Rsa {
                params,
                key: RsaPublic::Der(der),
            } => sig::UnparsedPublicKey::new(*params, der)
                .verify(msg, signature)
                .map_err(sig_err),
            VerifierKind::Rsa {
                params,
                key: RsaPublic::Components { n, e },
            } => sig::RsaPublicKeyComponents { n, e }
                .verify(params, msg, signature)
                .map_err(sig_err),
            VerifierKind::Raw { ring_alg, key } => sig::UnparsedPublicKey::new(*ring_alg, key)
                .verify(msg, signature)
                .map_err(sig_err),
            VerifierKind::Hmac(key) => ring::hmac::verify(key, msg, signature).map_err(sig_err),
        }
    }
}

impl Verifier<Vec<u8>> for RingVerifier {
    fn verify(&self, msg: &[u8], signature: &Vec<u8>) -> Result<(), signature::Error> {
        self.verify_bytes(msg, signature)
    }
}

impl JwtVerifier for RingVerifier {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

fn strip_leading_zeros(b: &[u8]) -> &[u8] {
    let z = b.iter().take_while(|x| **x == 0).count();
    &b[z..]
}

fn hmac_alg(alg: Algorithm) -> Option<ring::hmac::Algorithm> {
    match alg {
        Algorithm::HS256 => Some(ring::hmac::HMAC_SHA256),
        Algorithm::HS384 => Some(ring::hmac::HMAC_SHA384),
        Algorithm::HS512 => Some(ring::hmac::HMAC_SHA512),
        _ => None,
    }
}

fn rsa_params(alg: Algorithm) -> Option<(&'static sig::RsaParameters, &'static dyn sig::RsaEncoding)> {
    Some(match alg {
        Algorithm::RS256 => (&sig::RSA_PKCS1_2048_8192_SHA256, &sig::RSA_PKCS1_SHA256),
        Algorithm::RS384 => (&sig::RSA_PKCS1_2048_8192_SHA384, &sig::RSA_PKCS1_SHA384),
        Algorithm::RS512 => (&sig::RSA_PKCS1_2048_8192_SHA512, &sig::RSA_PKCS1_SHA512),
        Algorithm::PS256 => (&sig::RSA_PSS_2048_8192_SHA256, &sig::RSA_PSS_SHA256),
        Algorithm::PS384 => (&sig::RSA_PSS_2048_8192_SHA384, &sig::RSA_PSS_SHA384),
        Algorithm::PS512 => (&sig::RSA_PSS_2048_8192_SHA512, &sig::RSA_PSS_SHA512),
        _ => return None,
    })
}

fn new_verifier(alg: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>, Error> {
    Ok(Box::new(RingVerifier::new(*alg, key)?))
}

// ---------------------------------------------------------------------------------------------------------------
// Signers (for tests, tools and outbound tokens; the validator never signs)
// ---------------------------------------------------------------------------------------------------------------

struct RsaSigner {
    alg: Algorithm,
    encoding: &'static dyn sig::RsaEncoding,
    key: sig::RsaKeyPair,
}

impl Signer<Vec<u8>> for RsaSigner {
    fn try_sign(&self, msg: &[u8]) -> Result<Vec<u8>, signature::Error> {
        let mut out = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(self.encoding, &SystemRandom::new(), msg, &mut out)
            .map_err(sig_err)?;
        Ok(out)
    }
}

impl JwtSigner for RsaSigner {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

struct EcdsaSigner {
    alg: Algorithm,
    key: sig::EcdsaKeyPair,
}

impl Signer<Vec<u8>> for EcdsaSigner {
    fn try_sign(&self, msg: &[u8]) -> Result<Vec<u8>, signature::Error> {
        Ok(self
            .key
            .sign(&SystemRandom::new(), msg)
            .map_err(sig_err)?
            .as_ref()
            .to_vec())
    }
}

impl JwtSigner for EcdsaSigner {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

struct Ed25519Signer(sig::Ed25519KeyPair);

impl Signer<Vec<u8>> for Ed25519Signer {
    fn try_sign(&self, msg: &[u8]) -> Result<Vec<u8>, signature::Error> {
        Ok(self.0.sign(msg).as_ref().to_vec())
    }
}

impl JwtSigner for Ed25519Signer {
    fn algorithm(&self) -> Algorithm {
        Algorithm::EdDSA
    }
}

struct HmacSigner {
    alg: Algorithm,
    key: ring::hmac::Key,
}

impl Signer<Vec<u8>> for HmacSigner {
    fn try_sign(&self, msg: &[u8]) -> Result<Vec<u8>, signature::Error> {
        Ok(ring::hmac::sign(&self.key, msg).as_ref().to_vec())
    }
}

impl JwtSigner for HmacSigner {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

/// RSA private keys arrive as PKCS#1 `RSAPrivateKey` from jsonwebtoken's PEM loader (it unwraps PKCS#8), or as
/// whatever DER the caller passed to `EncodingKey::from_rsa_der`: accept both.
fn rsa_key_pair(der: &[u8]) -> Result<sig::RsaKeyPair, Error> {
    sig::RsaKeyPair::from_der(der)
        .or_else(|_| sig::RsaKeyPair::from_pkcs8(der))
        .map_err(|e| ErrorKind::InvalidRsaKey(e.to_string()).into())
}

fn new_signer(alg: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>, Error> {
    let alg = *alg;
    if key.family() != alg.family() {
        return Err(ErrorKind::InvalidAlgorithm.into());
    }
    if let Some(h) = hmac_alg(alg) {
        return Ok(Box::new(HmacSigner {
            alg,
            key: ring::hmac::Key::new(h, key.as_bytes()),
        }));
    }
    if let Some((_, encoding)) = rsa_params(alg) {
        return Ok(Box::new(RsaSigner {
            alg,
            encoding,
            key: rsa_key_pair(key.as_bytes())?,
        }));
    }
    match alg {
        Algorithm::ES256 | Algorithm::ES384 => {
            let signing = if alg == Algorithm::ES256 {
                &sig::ECDSA_P256_SHA256_FIXED_SIGNING
            } else {
                &sig::ECDSA_P384_SHA384_FIXED_SIGNING
            };
            let key = sig::EcdsaKeyPair::from_pkcs8(signing, key.as_bytes(), &SystemRandom::new())
                .map_err(|_| Error::from(ErrorKind::InvalidEcdsaKey))?;
            Ok(Box::new(EcdsaSigner { alg, key }))
        }
        Algorithm::EdDSA => {
            let key = sig::Ed25519KeyPair::from_pkcs8_maybe_unchecked(key.as_bytes())
                .map_err(|_| Error::from(ErrorKind::InvalidEddsaKey))?;
            Ok(Box::new(Ed25519Signer(key)))
        }
        _ => Err(wrong_key()),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// KeyUtils
// ---------------------------------------------------------------------------------------------------------------

fn rsa_components_from_private_key(der: &[u8]) -> Result<(Vec<u8>, Vec<u8>), Error> {
    let kp = rsa_key_pair(der)?;
    rsa_components_from_public_key(kp.public().as_ref())
}

fn rsa_components_from_public_key(der: &[u8]) -> Result<(Vec<u8>, Vec<u8>), Error> {
    let (n, e) = crate::keys::der::rsa_public_key(der)
        .ok_or_else(|| Error::from(ErrorKind::InvalidRsaKey("not a DER RSAPublicKey".into())))?;
    Ok((n.to_vec(), e.to_vec()))
}

fn ec_components_from_private_key(der: &[u8], alg: Algorithm) -> Result<(EllipticCurve, Vec<u8>, Vec<u8>), Error> {
    let (signing, curve, len) = match alg {
        Algorithm::ES256 => (&sig::ECDSA_P256_SHA256_FIXED_SIGNING, EllipticCurve::P256, 32),
        Algorithm::ES384 => (&sig::ECDSA_P384_SHA384_FIXED_SIGNING, EllipticCurve::P384, 48),
        _ => return Err(ErrorKind::InvalidEcdsaKey.into()),
    };
    let kp = sig::EcdsaKeyPair::from_pkcs8(signing, der, &SystemRandom::new())
        .map_err(|_| Error::from(ErrorKind::InvalidEcdsaKey))?;
    let point = kp.public_key().as_ref();
    if point.len() != 1 + 2 * len || point[0] != 4 {
        return Err(ErrorKind::InvalidEcdsaKey.into());
    }
    let (x, y) = point[1..].split_at(len);
    Ok((curve, x.to_vec(), y.to_vec()))
}

fn ed_pub_components_from_private_key(der: &[u8], curve: &EllipticCurve) -> Result<Vec<u8>, Error> {
    match curve {
        EllipticCurve::Ed25519 => Ok(sig::Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
            .map_err(|_| Error::from(ErrorKind::InvalidEddsaKey))?
            .public_key()
            .as_ref()
            .to_vec()),
        _ => Err(ErrorKind::InvalidAlgorithm.into()),
    }
}

fn compute_digest(data: &[u8], hash: ThumbprintHash) -> Result<Vec<u8>, Error> {
    let alg = match hash {
        ThumbprintHash::SHA256 => &ring::digest::SHA256,
        ThumbprintHash::SHA384 => &ring::digest::SHA384,
        ThumbprintHash::SHA512 => &ring::digest::SHA512,
        _ => return Err(ErrorKind::InvalidAlgorithm.into()),
    };
    Ok(ring::digest::digest(alg, data).as_ref().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{Header, Validation};
    use msec_test_support::{Alg, TestKey};
    use serde_json::json;

    fn alg_of(a: Alg) -> Algorithm {
        a.name().parse().unwrap()
    }

    fn decoding_key(k: &TestKey) -> DecodingKey {
        match k.alg {
            Alg::ES256 | Alg::ES384 => DecodingKey::from_ec_pem(k.public_pem.as_bytes()).unwrap(),
            Alg::EdDSA => DecodingKey::from_ed_pem(k.public_pem.as_bytes()).unwrap(),
            Alg::HS256 | Alg::HS384 | Alg::HS512 => DecodingKey::from_secret(&k.private_der),
            _ => DecodingKey::from_rsa_pem(k.public_pem.as_bytes()).unwrap(),
        }
    }

    fn encoding_key(k: &TestKey) -> EncodingKey {
        match k.alg {
            Alg::ES256 | Alg::ES384 => EncodingKey::from_ec_pem(k.private_pem.as_bytes()).unwrap(),
            Alg::EdDSA => EncodingKey::from_ed_pem(k.private_pem.as_bytes()).unwrap(),
            Alg::HS256 | Alg::HS384 | Alg::HS512 => EncodingKey::from_secret(&k.private_der),
            _ => EncodingKey::from_rsa_pem(k.private_pem.as_bytes()).unwrap(),
        }
    }

    const ALL: [Alg; 12] = [
        Alg::RS256,
        Alg::RS384,
        Alg::RS512,
        Alg::PS256,
        Alg::PS384,
        Alg::PS512,
        Alg::ES256,
        Alg::ES384,
        Alg::EdDSA,
        Alg::HS256,
        Alg::HS384,
        Alg::HS512,
    ];

    #[test]
    fn verifies_independently_minted_tokens_for_every_alg() {
        for a in ALL {
            let k = TestKey::for_alg(a);
            let token = k.token().sub("alice").sign();
            let (input, sig64) = token.rsplit_once('.').unwrap();
            let sig = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, sig64).unwrap();
            let v = (RING_PROVIDER.verifier_factory)(&alg_of(a), &decoding_key(&k)).unwrap();
            assert_eq!(v.algorithm(), alg_of(a));
            v.verify(input.as_bytes(), &sig)
                .unwrap_or_else(|_| panic!("{a:?} verifies"));
            let mut bad = sig.clone();
            bad[3] ^= 1;
            assert!(v.verify(input.as_bytes(), &bad).is_err(), "{a:?} rejects a flipped bit");
        }
    }

    #[test]
    fn signs_and_round_trips_through_jsonwebtoken() {
        let _ = install_default();
        for a in ALL {
            let k = TestKey::for_alg(a);
            let alg = alg_of(a);
            let claims = json!({"sub": "bob", "exp": 4_102_444_800u64});
            let token = jsonwebtoken::encode(&Header::new(alg), &claims, &encoding_key(&k)).unwrap();
            let mut v = Validation::new(alg);
            v.required_spec_claims.clear();
            v.validate_aud = false;
            let data = jsonwebtoken::decode::<serde_json::Value>(&token, &decoding_key(&k), &v)
                .unwrap_or_else(|e| panic!("{a:?}: {e}"));
            assert_eq!(data.claims["sub"], "bob");
            // The independent (test-support) signer agrees with ours on the public key.
            let theirs = k.token().sub("x").sign();
            jsonwebtoken::decode::<serde_json::Value>(&theirs, &decoding_key(&k), &v).unwrap();
        }
    }

    #[test]
    fn key_family_must_match_alg() {
        let k = TestKey::rs256();
        assert!((RING_PROVIDER.verifier_factory)(&Algorithm::ES256, &decoding_key(&k)).is_err());
        assert!((RING_PROVIDER.verifier_factory)(&Algorithm::HS256, &decoding_key(&k)).is_err());
        let h = TestKey::hs256();
        assert!((RING_PROVIDER.verifier_factory)(&Algorithm::RS256, &decoding_key(&h)).is_err());
    }

    #[test]
    fn key_utils() {
        let rsa = TestKey::rs256();
        let enc = encoding_key(&rsa);
        let (n, e) = (RING_PROVIDER.key_utils.rsa_pub_components_from_private_key)(enc.as_bytes()).unwrap();
        let jwk = rsa.public_jwk();
        assert_eq!(msec_test_support::keys::b64url(&n), jwk["n"]);
        assert_eq!(msec_test_support::keys::b64url(&e), jwk["e"]);
        let ec = TestKey::es384();
        let (curve, x, _) =
            (RING_PROVIDER.key_utils.ec_pub_components_from_private_key)(&ec.private_der, Algorithm::ES384).unwrap();
        assert_eq!(curve, EllipticCurve::P384);
        assert_eq!(msec_test_support::keys::b64url(&x), ec.public_jwk()["x"]);
        let ed = TestKey::eddsa();
        let x = (RING_PROVIDER.key_utils.ed_pub_components_from_private_key)(&ed.private_der, &EllipticCurve::Ed25519)
            .unwrap();
        assert_eq!(x, ed.public_key_bytes());
        let d = (RING_PROVIDER.key_utils.compute_digest)(b"abc", ThumbprintHash::SHA256).unwrap();
        assert_eq!(d[..4], [0xba, 0x78, 0x16, 0xbf]);
    }

    #[test]
    fn install_default_never_panics() {
        let first = install_default();
        assert!(matches!(
            first,
            ProviderStatus::Installed | ProviderStatus::AlreadyInstalled
        ));
        assert_eq!(install_default(), ProviderStatus::AlreadyInstalled);
    }
}
