//! The hash chain and its signed checkpoints.
//!
//! Every record is one JSON line:
//!
//! ```text
//! {"v":1,"seq":41,"prev":"<64 hex>","kind":"request", ...event fields..., "hash":"<64 hex>"}
//! ```
//!
//! - `seq` counts records from 0 without holes, across file rotation and restarts;
//! - `prev` is the `hash` of record `seq - 1` (64 zeros for the genesis record 0);
//! - `hash` is SHA-256 of the line's bytes up to — not including — the final `,"hash":"…"}` member. Because
//!   `prev` is inside the hashed bytes, each hash covers the whole history before it.
//!
//! A **checkpoint** is a chained record (`"kind":"checkpoint"`) that also carries an Ed25519 signature over
//! the log id, its own sequence number, the chain hash before it (`chain`, equal to `prev`) and its time — the
//! equivalent of a CloudTrail digest or an RFC 6962 signed tree head. Whoever lacks the signing key cannot rewrite
//! history without breaking the next checkpoint's signature. The writer puts one at the start of the log and of
//! every rotated file, every N records or T seconds, and on shutdown. The latest one can also be kept elsewhere
//! (the file sink's `.checkpoint` anchor, the PostgreSQL table) so that truncation becomes detectable.
//!
//! The signed message is the UTF-8 text
//!
//! ```text
//! msec-audit checkpoint v1
//! log:<log id>
//! seq:<seq>
//! chain:<64 hex>
//! time:<RFC 3339 time>
//! ```
//!
//! (each line ended by `\n`).

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use msec_core::secret::SecretString;
use ring::digest;
use ring::signature::{self, Ed25519KeyPair, KeyPair as _};

use crate::util::{Timestamp, hex};

/// The record format version (`"v"`).
pub const RECORD_VERSION: u32 = 1;

/// The `prev` of the genesis record.
pub const GENESIS_PREV: [u8; 32] = [0; 32];

/// The suffix `,"hash":"` + 64 hex + `"}`.
pub(crate) const HASH_SUFFIX_LEN: usize = 9 + 64 + 2;

/// What a record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RecordKind {
    /// One HTTP or gRPC request, written by the audit layer.
    Request,
    /// Application code read or changed a personal-data record.
    DataAccess,
    /// A threat detector fired.
    Alert,
    /// Events were dropped (overflow policy `DropAndCount`) or requests refused (`FailClosed`).
    Gap,
    /// A signed checkpoint.
    Checkpoint,
}

impl RecordKind {
    /// The `kind` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Request => "request",
            Self::DataAccess => "data_access",
            Self::Alert => "alert",
            Self::Gap => "gap",
            Self::Checkpoint => "checkpoint",
        }
    }

    /// Parses a `kind` value.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "request" => Self::Request,
            "data_access" => Self::DataAccess,
            "alert" => Self::Alert,
            "gap" => Self::Gap,
            "checkpoint" => Self::Checkpoint,
            _ => return None,
        })
    }
}

impl fmt::Display for RecordKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One framed, hashed record, as sinks receive it.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Record {
    /// The sequence number.
    pub seq: u64,
    /// What it is.
    pub kind: RecordKind,
    /// When the event happened.
    pub time: SystemTime,
    /// The hash of the previous record.
    pub prev: [u8; 32],
    /// This record's hash.
    pub hash: [u8; 32],
    /// The complete JSON line, without a trailing newline.
    pub line: Vec<u8>,
}

impl fmt::Debug for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Record")
            .field("seq", &self.seq)
            .field("kind", &self.kind)
            .field("hash", &hex(&self.hash[..8]))
            .field("len", &self.line.len())
            .finish()
    }
}

impl Record {
    /// The line as text (records are always UTF-8).
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.line).unwrap_or("")
    }
}

/// Where a chain stands: the next record's sequence number and the previous record's hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHead {
    /// The log id.
    pub log_id: Arc<str>,
    /// The next sequence number.
    pub next_seq: u64,
    /// The hash of record `next_seq - 1` ([`GENESIS_PREV`] for an empty log).
    pub prev: [u8; 32],
}

/// Checks a log id: 1 to 128 characters of `A-Z a-z 0-9 . _ : -`.
pub fn valid_log_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// SHA-256 of `bytes`.
pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Frames records: assigns sequence numbers and links hashes.
pub(crate) struct Chain {
    pub(crate) head: ChainHead,
    signer: Option<Arc<CheckpointSigner>>,
}

impl Chain {
    pub(crate) fn new(head: ChainHead, signer: Option<Arc<CheckpointSigner>>) -> Self {
        Self { head, signer }
    }

    /// Frames `body` like [`append`](Self::append), in its own buffer: the line is built in place (one
    /// memmove), without a copy. A body that is not a `{…}` object frames as `{}`.
    pub(crate) fn append_owned(&mut self, kind: RecordKind, time: SystemTime, mut body: Vec<u8>) -> Record {
        if body.len() < 2 || body.first() != Some(&b'{') || body.last() != Some(&b'}') {
            body.clear();
            body.extend_from_slice(b"{}");
        }
        let seq = self.head.next_seq;
        let prev = self.head.prev;
        // `{"v":1,"seq":N,"prev":"<hex>"` + `,` in place of the body's own `{` (or nothing for `{}`).
        let mut prefix = [0u8; 13 + 20 + 9 + 64 + 2];
        let mut n = 0;
        let mut put = |b: &[u8]| {
            prefix[n..n + b.len()].copy_from_slice(b);
            n += b.len();
        };
        put(b"{\"v\":1,\"seq\":");
        let mut digits = [0u8; 20];
        put(msec_core::text::decimal(&mut digits, seq));
        put(b",\"prev\":\"");
        let mut hexbuf = [0u8; 64];
        crate::util::hex_into(&prev, &mut hexbuf);
        put(&hexbuf);
        put(b"\"");
        body.pop(); // the closing `}`
        if body.len() > 1 {
            put(b",");
        }
        // Shift the body right by `n - 1` (one memmove) and write the prefix over its `{`.
        let len = body.len();
        body.reserve(n - 1 + HASH_SUFFIX_LEN);
        body.resize(len + n - 1, 0);
        body.copy_within(1..len, n);
        body[..n].copy_from_slice(&prefix[..n]);
        let hash = sha256(&body);
        body.extend_from_slice(b",\"hash\":\"");
        crate::util::hex_into(&hash, &mut hexbuf);
        body.extend_from_slice(&hexbuf);
        body.extend_from_slice(b"\"}");
        self.head.next_seq = seq + 1;
        self.head.prev = hash;
        Record {
            seq,
            kind,
            time,
            prev,
            hash,
            line: body,
        }
    }

    /// Frames `body` (a JSON object starting with `{"kind":…`) as the next record.
    pub(crate) fn append(&mut self, kind: RecordKind, time: SystemTime, body: &[u8]) -> Record {
        self.append_owned(kind, time, body.to_vec())
    }

    /// Frames a signed checkpoint (unsigned — `key`/`sig` null — when no signer is configured).
    pub(crate) fn checkpoint(&mut self, reason: &str, now: SystemTime) -> Record {
        let time = Timestamp(now).to_rfc3339();
        let chain = hex(&self.head.prev);
        let seq = self.head.next_seq;
        let (key, sig) = match &self.signer {
            Some(s) => {
                let msg = checkpoint_message(&self.head.log_id, seq, &chain, &time);
                (
                    Some(s.key_id().to_owned()),
                    Some(URL_SAFE_NO_PAD.encode(s.sign(msg.as_bytes()))),
                )
            }
            None => (None, None),
        };
        let body = CheckpointBody {
            kind: "checkpoint",
            time: &time,
            log: &self.head.log_id,
            reason,
            chain: &chain,
            key,
            sig,
        };
        // Serialising a struct of strings into a Vec cannot fail.
        let b = serde_json::to_vec(&body).unwrap_or_default();
        self.append(RecordKind::Checkpoint, now, &b)
    }
}

#[derive(serde::Serialize)]
struct CheckpointBody<'a> {
    kind: &'static str,
    time: &'a str,
    log: &'a str,
    reason: &'a str,
    chain: &'a str,
    key: Option<String>,
    sig: Option<String>,
}

/// The message a checkpoint signs.
pub fn checkpoint_message(log_id: &str, seq: u64, chain_hex: &str, time: &str) -> String {
    format!("msec-audit checkpoint v1\nlog:{log_id}\nseq:{seq}\nchain:{chain_hex}\ntime:{time}\n")
}

/// Why a key could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The private key is not an Ed25519 PKCS#8 document.
    #[error("not an Ed25519 PKCS#8 private key")]
    InvalidPrivateKey,
    /// The public key is not a PEM `PUBLIC KEY`, base64 or hex encoding of a 32-byte Ed25519 key.
    #[error("not an Ed25519 public key (PEM SubjectPublicKeyInfo, or 32 bytes as base64 or hex)")]
    InvalidPublicKey,
    /// The system random generator failed.
    #[error("the system random generator failed")]
    Random,
}

/// Signs checkpoints with an Ed25519 key (ring).
///
/// `Debug` shows only the key id.
///
/// ```
/// use msec_audit::CheckpointSigner;
/// let pem = CheckpointSigner::generate_pkcs8_pem()?;
/// let signer = CheckpointSigner::from_pkcs8_pem(pem.expose_secret())?;
/// let public = signer.public_key();
/// assert_eq!(public.key_id(), signer.key_id());
/// assert!(public.to_pem().starts_with("-----BEGIN PUBLIC KEY-----"));
/// # Ok::<(), msec_audit::KeyError>(())
/// ```
pub struct CheckpointSigner {
    key: Ed25519KeyPair,
    key_id: String,
}

impl fmt::Debug for CheckpointSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckpointSigner")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl CheckpointSigner {
    /// Loads a PKCS#8 DER private key (v1 as written by OpenSSL, or v2 as written by ring).
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, KeyError> {
        let key = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(|_| KeyError::InvalidPrivateKey)?;
        let key_id = PublicKey::from_raw(key.public_key().as_ref())
            .map(|p| p.key_id().to_owned())
            .ok_or(KeyError::InvalidPrivateKey)?;
        Ok(Self { key, key_id })
    }

    /// Loads a PEM `PRIVATE KEY` (PKCS#8).
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, KeyError> {
        let der = pem_decode(pem, "PRIVATE KEY").ok_or(KeyError::InvalidPrivateKey)?;
        let der = zeroize::Zeroizing::new(der);
        Self::from_pkcs8_der(&der)
    }

    /// Generates a new key and returns it as a PEM `PRIVATE KEY`, to store in your secret manager.
    pub fn generate_pkcs8_pem() -> Result<SecretString, KeyError> {
        let rng = ring::rand::SystemRandom::new();
        let doc = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| KeyError::Random)?;
        Ok(SecretString::new(pem_encode(doc.as_ref(), "PRIVATE KEY")))
    }

    /// A fresh key that lives only in this process — for tests and demos. Keep its [`public_key`](Self::public_key)
    /// if you want to verify the log later.
    pub fn ephemeral() -> Result<Self, KeyError> {
        let rng = ring::rand::SystemRandom::new();
        let doc = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| KeyError::Random)?;
        Self::from_pkcs8_der(doc.as_ref())
    }

    /// The public key.
    pub fn public_key(&self) -> PublicKey {
        let mut raw = [0u8; 32];
        raw.copy_from_slice(self.key.public_key().as_ref());
        PublicKey::new(raw)
    }

    /// The key id: the first 8 bytes of SHA-256 of the public key, in hex.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub(crate) fn sign(&self, msg: &[u8]) -> Vec<u8> {
        self.key.sign(msg).as_ref().to_vec()
    }
}

/// An Ed25519 public key that verifies checkpoints.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    raw: [u8; 32],
    key_id: String,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.key_id)
    }
}

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410).
const SPKI_PREFIX: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];

impl PublicKey {
    fn new(raw: [u8; 32]) -> Self {
        let key_id = hex(&sha256(&raw)[..8]);
        Self { raw, key_id }
    }

    /// From the raw 32 bytes.
    pub fn from_raw(raw: &[u8]) -> Option<Self> {
        raw.try_into().ok().map(Self::new)
    }

    /// Parses a PEM `PUBLIC KEY` (SubjectPublicKeyInfo), or the 32 raw bytes as base64 / base64url / hex.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let t = text.trim();
        if t.starts_with("-----BEGIN") {
            let der = pem_decode(t, "PUBLIC KEY").ok_or(KeyError::InvalidPublicKey)?;
            return der
                .strip_prefix(&SPKI_PREFIX[..])
                .and_then(Self::from_raw)
                .ok_or(KeyError::InvalidPublicKey);
        }
        if t.len() == 64
            && let Some(raw) = crate::util::parse_hash(t.to_ascii_lowercase().as_bytes())
        {
            return Ok(Self::new(raw));
        }
        let bytes = STANDARD
            .decode(t)
            .or_else(|_| URL_SAFE_NO_PAD.decode(t.trim_end_matches('=')))
            .map_err(|_| KeyError::InvalidPublicKey)?;
        let bytes = bytes.strip_prefix(&SPKI_PREFIX[..]).unwrap_or(&bytes);
        Self::from_raw(bytes).ok_or(KeyError::InvalidPublicKey)
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.raw
    }

    /// The key id (first 8 bytes of SHA-256 of the key, hex).
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// PEM `PUBLIC KEY` (SubjectPublicKeyInfo), as OpenSSL writes it.
    pub fn to_pem(&self) -> String {
        let mut der = SPKI_PREFIX.to_vec();
        der.extend_from_slice(&self.raw);
        pem_encode(&der, "PUBLIC KEY")
    }

    /// Verifies an Ed25519 signature.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        signature::UnparsedPublicKey::new(&signature::ED25519, &self.raw)
            .verify(msg, sig)
            .is_ok()
    }
}

fn pem_encode(der: &[u8], label: &str) -> String {
    let b64 = STANDARD.encode(der);
    let mut s = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        s.push('\n');
    }
    s.push_str(&format!("-----END {label}-----\n"));
    s
}

fn pem_decode(pem: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin)? + begin.len();
    let stop = start + pem[start..].find(&end)?;
    let body: String = pem[start..stop].chars().filter(|c| !c.is_whitespace()).collect();
    STANDARD.decode(body).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::Strategy as _;

    #[test]
    fn framing_links_hashes() {
        let head = ChainHead {
            log_id: "t".into(),
            next_seq: 0,
            prev: GENESIS_PREV,
        };
        let mut c = Chain::new(head, None);
        let a = c.append(
            RecordKind::Gap,
            SystemTime::UNIX_EPOCH,
            br#"{"kind":"gap","dropped":1}"#,
        );
        let b = c.append(
            RecordKind::Gap,
            SystemTime::UNIX_EPOCH,
            br#"{"kind":"gap","dropped":2}"#,
        );
        assert_eq!(a.seq, 0);
        assert_eq!(b.prev, a.hash);
        let s = a.as_str();
        assert!(s.starts_with(r#"{"v":1,"seq":0,"prev":"0000"#), "{s}");
        assert!(s.contains(r#""kind":"gap","dropped":1,"hash":""#), "{s}");
        let v: serde_json::Value = serde_json::from_slice(&b.line).unwrap();
        assert_eq!(v["seq"], 1);
        assert_eq!(sha256(&a.line[..a.line.len() - HASH_SUFFIX_LEN]), a.hash);
    }

    /// The framing as first written (a copy into a new line): the reference the in-place framing must match.
    fn reference_append(c: &mut Chain, kind: RecordKind, time: SystemTime, body: &[u8]) -> Record {
        let seq = c.head.next_seq;
        let prev = c.head.prev;
        let mut line = Vec::with_capacity(body.len() + 100 + HASH_SUFFIX_LEN);
        line.extend_from_slice(b"{\"v\":1,\"seq\":");
        line.extend_from_slice(seq.to_string().as_bytes());
        line.extend_from_slice(b",\"prev\":\"");
        line.extend_from_slice(hex(&prev).as_bytes());
        line.push(b'"');
        let inner = body
            .strip_prefix(b"{")
            .and_then(|b| b.strip_suffix(b"}"))
            .unwrap_or_default();
        if !inner.is_empty() {
            line.push(b',');
            line.extend_from_slice(inner);
        }
        let hash = sha256(&line);
        line.extend_from_slice(b",\"hash\":\"");
        line.extend_from_slice(hex(&hash).as_bytes());
        line.extend_from_slice(b"\"}");
        c.head.next_seq = seq + 1;
        c.head.prev = hash;
        Record {
            seq,
            kind,
            time,
            prev,
            hash,
            line,
        }
    }

    proptest::proptest! {
        /// Framing in place gives the same record, byte for byte, as framing a copy.
        #[test]
        fn framing_in_place_matches_framing_a_copy(
            seq in proptest::prop_oneof![0u64..1000, proptest::strategy::Just(u64::MAX - 1)],
            prev in proptest::array::uniform32(0u8..),
            body in proptest::prop_oneof![
                proptest::strategy::Just(b"{}".to_vec()),
                proptest::strategy::Just(b"{".to_vec()),
                proptest::strategy::Just(Vec::new()),
                "[a-z\"{}:,0-9]{0,64}".prop_map(String::into_bytes),
                "[a-z0-9]{0,40}".prop_map(|s| format!(r#"{{"kind":"request","x":"{s}"}}"#).into_bytes()),
            ],
        ) {
            let head = ChainHead { log_id: "t".into(), next_seq: seq, prev };
            let mut copy = Chain::new(head.clone(), None);
            let mut owned = Chain::new(head, None);
            let a = reference_append(&mut copy, RecordKind::Request, SystemTime::UNIX_EPOCH, &body);
            let b = owned.append_owned(RecordKind::Request, SystemTime::UNIX_EPOCH, body);
            proptest::prop_assert_eq!(a.as_str(), b.as_str());
            proptest::prop_assert_eq!(a.hash, b.hash);
            proptest::prop_assert_eq!(copy.head.next_seq, owned.head.next_seq);
        }
    }

    #[test]
    fn public_key_forms() {
        let s = CheckpointSigner::ephemeral().unwrap();
        let p = s.public_key();
        assert_eq!(PublicKey::parse(&p.to_pem()).unwrap(), p);
        assert_eq!(PublicKey::parse(&hex(p.as_bytes())).unwrap(), p);
        assert_eq!(PublicKey::parse(&STANDARD.encode(p.as_bytes())).unwrap(), p);
        assert_eq!(PublicKey::parse(&URL_SAFE_NO_PAD.encode(p.as_bytes())).unwrap(), p);
        assert!(PublicKey::parse("nope").is_err());
        let sig = s.sign(b"m");
        assert!(p.verify(b"m", &sig));
        assert!(!p.verify(b"n", &sig));
        let pem = CheckpointSigner::generate_pkcs8_pem().unwrap();
        assert!(CheckpointSigner::from_pkcs8_pem(pem.expose_secret()).is_ok());
        assert!(format!("{s:?}").contains(s.key_id()));
    }
}
