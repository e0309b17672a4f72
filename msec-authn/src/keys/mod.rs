//! Verification keys: strict JWK parsing with one algorithm per key, static key sets (JWK set, PEM, HMAC), and
//! the remote key store (JWKS URL, OIDC / RFC 8414 discovery) with lock-free reads.
//!
//! # Key selection rules (RFC 8725 §3.1, §3.2)
//!
//! - Every key is bound to exactly one algorithm: its JWK `alg` when present (which must agree with `kty` /
//!   `crv`), otherwise the one `kty`/`crv` implies (`EC P-256` → ES256, `EC P-384` → ES384, `OKP Ed25519` →
//!   EdDSA) or, for RSA keys without `alg`, the issuer's [`rsa_default_alg`](crate::jwt::Issuer::rsa_default_alg)
//!   (RS256 unless set). A token is verified only with a key bound to its header `alg`.
//! - Keys with `use` other than `sig`, or `key_ops` without `verify`, are never used. `oct` (HMAC) keys from a
//!   JWK set are never used: HMAC keys come only from [`hmac_secret`](crate::jwt::Issuer::hmac_secret).
//! - RSA keys shorter than 2048 bits, EC curves other than P-256/P-384 and OKP curves other than Ed25519 are
//!   skipped (and logged). The token headers `jku`, `x5u`, `jwk` and `x5c` are never used to find a key.

pub(crate) mod der;
pub(crate) mod http;
pub(crate) mod store;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};
use serde_json::Value;

use crate::crypto::RingVerifier;

pub use http::HttpConfig;
pub use store::{KeyFetchError, KeyStatus, RefreshConfig};

/// Longest `kid` accepted in a JWK or looked up from a token.
pub(crate) const MAX_KID_LEN: usize = 256;

static NEXT_KEY_ID: AtomicU64 = AtomicU64::new(1);

/// One verification key, bound to one algorithm. Shared as `Arc`; the same `Arc` survives a JWKS refresh that
/// still contains the same key, so cached tokens verified with it stay valid.
pub(crate) struct VerifyingKey {
    /// Process-unique id of this key material (stable across refreshes that keep it).
    pub(crate) id: u64,
    pub(crate) kid: Option<Arc<str>>,
    pub(crate) alg: Algorithm,
    /// SHA-256 over alg, kid and the public material: identity across refreshes.
    fingerprint: [u8; 32],
    pub(crate) verifier: RingVerifier,
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl VerifyingKey {
    fn new(kid: Option<&str>, alg: Algorithm, material: &[u8], key: &DecodingKey) -> Result<Self, String> {
        let verifier = RingVerifier::new(alg, key).map_err(|e| e.to_string())?;
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(alg_name(alg).as_bytes());
        ctx.update(&[0]);
        ctx.update(kid.unwrap_or_default().as_bytes());
        ctx.update(&[0]);
        ctx.update(material);
        let mut fingerprint = [0; 32];
        fingerprint.copy_from_slice(ctx.finish().as_ref());
        Ok(Self {
            id: NEXT_KEY_ID.fetch_add(1, Ordering::Relaxed),
            kid: kid.map(Arc::from),
            alg,
            fingerprint,
            verifier,
        })
    }
}

/// The JWS name of an algorithm.
pub(crate) fn alg_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::EdDSA => "EdDSA",
        _ => "unknown",
    }
}

/// Parses a JWS `alg` name, exactly (case-sensitive). `none` and unknown names are `None`.
pub(crate) fn parse_alg(name: &str) -> Option<Algorithm> {
    Some(match name {
        "HS256" => Algorithm::HS256,
        "HS384" => Algorithm::HS384,
        "HS512" => Algorithm::HS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "EdDSA" => Algorithm::EdDSA,
        _ => return None,
    })
}

/// The asymmetric algorithms msec accepts by default.
pub(crate) const ASYMMETRIC: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// How JWKs are turned into keys for one issuer.
#[derive(Debug, Clone)]
pub(crate) struct JwkRules {
    pub(crate) allowed: Vec<Algorithm>,
    pub(crate) rsa_default_alg: Algorithm,
    pub(crate) max_keys: usize,
}

fn b64(v: Option<&Value>, what: &'static str) -> Result<Vec<u8>, String> {
    let s = v.and_then(Value::as_str).ok_or_else(|| format!("missing `{what}`"))?;
    URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| format!("`{what}` is not base64url without padding"))
}

/// Parses one JWK into a verification key, or says why it is skipped.
pub(crate) fn parse_jwk(jwk: &Value, rules: &JwkRules) -> Result<VerifyingKey, String> {
    let obj = jwk.as_object().ok_or("not a JSON object")?;
    let kty = obj.get("kty").and_then(Value::as_str).ok_or("missing `kty`")?;
    let kid = match obj.get("kid") {
        None => None,
        Some(Value::String(k)) if !k.is_empty() && k.len() <= MAX_KID_LEN => Some(k.as_str()),
        Some(_) => return Err("`kid` is not a string of 1 to 256 bytes".into()),
    };
    match obj.get("use") {
        None => {}
        Some(Value::String(u)) if u == "sig" => {}
        Some(_) => return Err("`use` is not `sig`".into()),
    }
    if let Some(ops) = obj.get("key_ops") {
        let verify = ops
            .as_array()
            .is_some_and(|a| a.iter().any(|o| o.as_str() == Some("verify")));
        if !verify {
            return Err("`key_ops` does not include `verify`".into());
        }
    }
    let declared = match obj.get("alg") {
        None => None,
        Some(Value::String(a)) => Some(parse_alg(a).ok_or_else(|| format!("unsupported `alg` {a:?}"))?),
        Some(_) => return Err("`alg` is not a string".into()),
    };
    let crv = obj.get("crv").and_then(Value::as_str);
    let (implied, material, key): (Option<Algorithm>, Vec<u8>, DecodingKey) = match (kty, crv) {
        ("RSA", _) => {
            let n = b64(obj.get("n"), "n")?;
            let e = b64(obj.get("e"), "e")?;
            let n = strip_zeros(&n);
            let e = strip_zeros(&e);
            let bits = bit_len(n);
            if !(2048..=8192).contains(&bits) {
                return Err(format!("RSA modulus of {bits} bits (2048 to 8192 accepted)"));
            }
            if e.is_empty() || e.len() > 4 {
                return Err("RSA exponent out of range".into());
            }
            let mut material = n.to_vec();
            material.extend_from_slice(e);
            (None, material, DecodingKey::from_rsa_raw_components(n, e))
        }
        ("EC", Some(c @ ("P-256" | "P-384"))) => {
            let (alg, len) = if c == "P-256" {
                (Algorithm::ES256, 32)
            } else {
                (Algorithm::ES384, 48)
            };
            let x = b64(obj.get("x"), "x")?;
            let y = b64(obj.get("y"), "y")?;
            if x.len() != len || y.len() != len {
                return Err(format!("{c} coordinates must be {len} bytes"));
            }
            let mut point = Vec::with_capacity(1 + 2 * len);
            point.push(4);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            let key = DecodingKey::from_ec_der(&point);
            (Some(alg), point, key)
        }
        ("EC", c) => return Err(format!("unsupported EC curve {c:?}")),
        ("OKP", Some("Ed25519")) => {
            let x = b64(obj.get("x"), "x")?;
            if x.len() != 32 {
                return Err("Ed25519 key must be 32 bytes".into());
            }
            let key = DecodingKey::from_ed_der(&x);
            (Some(Algorithm::EdDSA), x, key)
        }
        ("OKP", c) => return Err(format!("unsupported OKP curve {c:?}")),
        ("oct", _) => return Err("symmetric (`oct`) keys are never taken from a JWK set".into()),
        (other, _) => return Err(format!("unsupported `kty` {other:?}")),
    };
    let alg = match (declared, implied) {
        (Some(d), Some(i)) if d != i => {
            return Err(format!("`alg` {} does not match the key type", alg_name(d)));
        }
        (Some(d), _) => d,
        (None, Some(i)) => i,
        (None, None) => rules.rsa_default_alg,
    };
    if kty == "RSA" && alg.family() != AlgorithmFamily::Rsa {
        return Err(format!("`alg` {} does not match an RSA key", alg_name(alg)));
    }
    if !rules.allowed.contains(&alg) {
        return Err(format!("algorithm {} is not allowed for this issuer", alg_name(alg)));
    }
    VerifyingKey::new(kid, alg, &material, &key)
}

/// The bit length of a big-endian unsigned integer without leading zero bytes (0 for empty).
fn bit_len(n: &[u8]) -> usize {
    match n.first() {
        None => 0,
        Some(first) => n.len() * 8 - first.leading_zeros() as usize,
    }
}

fn strip_zeros(b: &[u8]) -> &[u8] {
    let z = b.iter().take_while(|x| **x == 0).count();
    &b[z..]
}

/// Builds a key from a PEM public key (SPKI `PUBLIC KEY`, or `RSA PUBLIC KEY`) for `alg`.
pub(crate) fn pem_key(kid: Option<&str>, alg: Algorithm, pem: &[u8]) -> Result<VerifyingKey, String> {
    if kid.is_some_and(|k| k.is_empty() || k.len() > MAX_KID_LEN) {
        return Err("`kid` must be 1 to 256 bytes".into());
    }
    let key = match alg.family() {
        AlgorithmFamily::Rsa => DecodingKey::from_rsa_pem(pem),
        AlgorithmFamily::Ec => DecodingKey::from_ec_pem(pem),
        AlgorithmFamily::Ed => DecodingKey::from_ed_pem(pem),
        AlgorithmFamily::Hmac => return Err("HMAC keys are configured with `hmac_secret`".into()),
    }
    .map_err(|e| format!("not a {} public key PEM: {e}", alg_name(alg)))?;
    let material = key.try_get_as_bytes().map_err(|e| e.to_string())?.to_vec();
    match alg {
        Algorithm::ES256 if material.len() != 65 || material[0] != 4 => return Err("not a P-256 key".into()),
        Algorithm::ES384 if material.len() != 97 || material[0] != 4 => return Err("not a P-384 key".into()),
        Algorithm::EdDSA if material.len() != 32 => return Err("not an Ed25519 key".into()),
        _ if alg.family() == AlgorithmFamily::Rsa => {
            let (n, _) = der::rsa_public_key(&material).ok_or("not an RSA public key")?;
            let bits = bit_len(strip_zeros(n));
            if !(2048..=8192).contains(&bits) {
                return Err(format!("RSA modulus of {bits} bits (2048 to 8192 accepted)"));
            }
        }
        _ => {}
    }
    VerifyingKey::new(kid, alg, &material, &key)
}

/// Builds an HMAC key. The secret must be at least 32 bytes (RFC 7518 §3.2 asks for at least the hash size for
/// HS256; msec asks it of every HS algorithm).
pub(crate) fn hmac_key(kid: Option<&str>, alg: Algorithm, secret: &[u8]) -> Result<VerifyingKey, &'static str> {
    if alg.family() != AlgorithmFamily::Hmac {
        return Err("the algorithm must be HS256, HS384 or HS512");
    }
    if secret.len() < 32 {
        return Err("an HMAC secret must be at least 32 bytes");
    }
    if kid.is_some_and(|k| k.is_empty() || k.len() > MAX_KID_LEN) {
        return Err("`kid` must be 1 to 256 bytes");
    }
    let key = DecodingKey::from_secret(secret);
    // The fingerprint of a secret must not reveal it: hash it once more under a fixed label.
    let material = ring::digest::digest(&ring::digest::SHA256, secret);
    VerifyingKey::new(kid, alg, material.as_ref(), &key).map_err(|_| "invalid HMAC key")
}

/// An immutable set of keys, indexed by `kid`.
#[derive(Debug, Default)]
pub(crate) struct KeySet {
    by_kid: HashMap<Arc<str>, Vec<Arc<VerifyingKey>>>,
    all: Vec<Arc<VerifyingKey>>,
}

impl KeySet {
    pub(crate) fn new(keys: Vec<Arc<VerifyingKey>>) -> Self {
        let mut by_kid: HashMap<Arc<str>, Vec<Arc<VerifyingKey>>> = HashMap::new();
        for k in &keys {
            if let Some(kid) = &k.kid {
                by_kid.entry(kid.clone()).or_default().push(k.clone());
            }
        }
        Self { by_kid, all: keys }
    }

    /// Parses a JWK set document (`{"keys": [...]}`), skipping unusable keys (each logged).
    pub(crate) fn from_jwks(doc: &Value, rules: &JwkRules, previous: Option<&KeySet>) -> Result<(Self, usize), String> {
        let keys = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or("not a JWK set: no `keys` array")?;
        let mut out: Vec<Arc<VerifyingKey>> = Vec::new();
        let mut skipped = 0;
        for jwk in keys {
            if out.len() >= rules.max_keys {
                skipped += 1;
                continue;
            }
            match parse_jwk(jwk, rules) {
                Ok(k) => {
                    // Keep the same Arc (and id) for a key we already had, so cached tokens stay valid.
                    let reused = previous.and_then(|p| p.all.iter().find(|o| o.fingerprint == k.fingerprint).cloned());
                    let k = reused.unwrap_or_else(|| Arc::new(k));
                    if !out.iter().any(|o| o.fingerprint == k.fingerprint) {
                        out.push(k);
                    }
                }
                Err(why) => {
                    skipped += 1;
                    let kid = jwk.get("kid").and_then(Value::as_str).map(crate::util::sanitize);
                    tracing::debug!(kid = ?kid, reason = %why, "msec-authn: JWK skipped");
                }
            }
        }
        Ok((Self::new(out), skipped))
    }

    /// Keys for `kid` bound to `alg`; without a `kid`, every key bound to `alg`.
    pub(crate) fn candidates<'a>(
        &'a self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> (bool, impl Iterator<Item = &'a Arc<VerifyingKey>> + 'a) {
        let list: &'a [Arc<VerifyingKey>] = match kid {
            Some(k) => self.by_kid.get(k).map_or(&[], Vec::as_slice),
            None => &self.all,
        };
        let kid_known = kid.is_none() || !list.is_empty();
        (kid_known, list.iter().filter(move |k| k.alg == alg))
    }

    /// True when the key with this id is in the set.
    pub(crate) fn contains_id(&self, id: u64) -> bool {
        self.all.iter().any(|k| k.id == id)
    }

    /// Number of keys.
    pub(crate) fn len(&self) -> usize {
        self.all.len()
    }

    /// The key ids (`kid`) in the set.
    pub(crate) fn kids(&self) -> Vec<String> {
        self.all
            .iter()
            .filter_map(|k| k.kid.as_deref().map(str::to_owned))
            .collect()
    }

    /// Ids of keys in `self` that are not in `next`.
    pub(crate) fn removed_ids(&self, next: &KeySet) -> Vec<u64> {
        self.all
            .iter()
            .filter(|k| !next.contains_id(k.id))
            .map(|k| k.id)
            .collect()
    }

    /// All keys.
    pub(crate) fn keys(&self) -> &[Arc<VerifyingKey>] {
        &self.all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use msec_test_support::{Alg, TestKey};
    use serde_json::json;

    fn rules() -> JwkRules {
        JwkRules {
            allowed: ASYMMETRIC.to_vec(),
            rsa_default_alg: Algorithm::RS256,
            max_keys: 100,
        }
    }

    #[test]
    fn every_fixture_jwk_parses_bound_to_its_alg() {
        for a in Alg::ASYMMETRIC {
            let k = TestKey::for_alg(a);
            let vk = parse_jwk(&k.public_jwk(), &rules()).unwrap();
            assert_eq!(alg_name(vk.alg), a.name());
            assert_eq!(vk.kid.as_deref(), Some(k.kid.as_str()));
        }
    }

    #[test]
    fn refusals() {
        let rsa = TestKey::rs256().public_jwk();
        let with = |f: &dyn Fn(&mut serde_json::Map<String, Value>)| {
            let mut j = rsa.clone();
            f(j.as_object_mut().unwrap());
            parse_jwk(&j, &rules()).err().unwrap_or_default()
        };
        assert!(
            with(&|m| {
                m.insert("use".into(), json!("enc"));
            })
            .contains("use")
        );
        assert!(
            with(&|m| {
                m.insert("key_ops".into(), json!(["sign"]));
            })
            .contains("key_ops")
        );
        assert!(
            with(&|m| {
                m.insert("alg".into(), json!("ES256"));
            })
            .contains("RSA")
        );
        assert!(
            with(&|m| {
                m.insert("alg".into(), json!("none"));
            })
            .contains("unsupported")
        );
        assert!(
            with(&|m| {
                m.insert("n".into(), json!("AQAB"));
            })
            .contains("bits")
        );
        assert!(
            with(&|m| {
                m.insert("kid".into(), json!("k".repeat(300)));
            })
            .contains("kid")
        );
        assert!(
            with(&|m| {
                m.insert("n".into(), json!("a+b/"));
            })
            .contains("base64url")
        );
        let hs = TestKey::hs256().public_jwk();
        assert!(parse_jwk(&hs, &rules()).err().unwrap().contains("oct"));
        let ec = TestKey::es256().public_jwk();
        let mut ec2 = ec.clone();
        ec2["alg"] = json!("ES384");
        assert!(parse_jwk(&ec2, &rules()).err().unwrap().contains("does not match"));
        let mut r = rules();
        r.allowed = vec![Algorithm::RS256];
        assert!(parse_jwk(&ec, &r).err().unwrap().contains("not allowed"));
    }

    #[test]
    fn rsa_without_alg_takes_the_default() {
        let mut j = TestKey::rs256().public_jwk();
        j.as_object_mut().unwrap().remove("alg");
        let mut r = rules();
        r.rsa_default_alg = Algorithm::PS256;
        assert_eq!(parse_jwk(&j, &r).unwrap().alg, Algorithm::PS256);
    }

    #[test]
    fn refresh_keeps_identical_keys() {
        let doc = msec_test_support::keys::jwks(&[&TestKey::rs256(), &TestKey::es256()]);
        let (a, skipped) = KeySet::from_jwks(&doc, &rules(), None).unwrap();
        assert_eq!((a.len(), skipped), (2, 0));
        let doc2 = msec_test_support::keys::jwks(&[&TestKey::es256(), &TestKey::rs256_second()]);
        let (b, _) = KeySet::from_jwks(&doc2, &rules(), Some(&a)).unwrap();
        let es_a = a.keys().iter().find(|k| k.alg == Algorithm::ES256).unwrap();
        assert!(b.contains_id(es_a.id));
        assert_eq!(a.removed_ids(&b).len(), 1);
    }

    #[test]
    fn pem_and_hmac() {
        for a in Alg::ASYMMETRIC {
            let k = TestKey::for_alg(a);
            let alg = parse_alg(a.name()).unwrap();
            pem_key(Some("k"), alg, k.public_pem.as_bytes()).unwrap();
        }
        assert!(pem_key(None, Algorithm::ES384, TestKey::es256().public_pem.as_bytes()).is_err());
        assert!(pem_key(None, Algorithm::ES256, TestKey::rs256().public_pem.as_bytes()).is_err());
        assert!(hmac_key(None, Algorithm::HS256, &[7; 31]).is_err());
        assert!(hmac_key(None, Algorithm::RS256, &[7; 32]).is_err());
        hmac_key(Some("h"), Algorithm::HS512, &[7; 32]).unwrap();
    }
}
