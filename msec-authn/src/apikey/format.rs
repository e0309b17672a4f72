//! The key format: `<prefix>_<key id><secret><checksum>`, all base62 after the last `_`.

use std::fmt;

use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

use super::ApiKeyError;

/// The base62 alphabet (digits, upper case, lower case).
pub(crate) const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// Characters of the key id.
pub const KEY_ID_LEN: usize = 11;
/// Characters of the secret: 33 base62 characters, about 196 bits from the operating system's CSPRNG.
pub const SECRET_LEN: usize = 33;
/// Characters of the checksum (a CRC-32 in fixed-width base62).
pub const CHECKSUM_LEN: usize = 6;
/// Characters after the prefix's `_`.
pub const BODY_LEN: usize = KEY_ID_LEN + SECRET_LEN + CHECKSUM_LEN;
/// The longest prefix accepted.
pub const MAX_PREFIX_LEN: usize = 32;
/// The longest key: anything longer is refused before any other work.
pub const MAX_KEY_LEN: usize = MAX_PREFIX_LEN + 1 + BODY_LEN;

/// Why a string is not an API key. Found without any store lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyFormatError {
    /// Longer than [`MAX_KEY_LEN`].
    TooLong,
    /// No `_` separating a prefix from the body.
    NoPrefix,
    /// The prefix is empty, too long, or has characters other than `a-z`, `0-9`, `_`.
    BadPrefix,
    /// The body is not [`BODY_LEN`] characters.
    BadLength,
    /// The body has a character outside base62.
    BadCharacter,
    /// The checksum does not match (a typo, a truncated copy, or a made-up key).
    BadChecksum,
}

impl KeyFormatError {
    /// A short stable name for audit details (`bad_checksum`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TooLong => "too_long",
            Self::NoPrefix => "no_prefix",
            Self::BadPrefix => "bad_prefix",
            Self::BadLength => "bad_length",
            Self::BadCharacter => "bad_character",
            Self::BadChecksum => "bad_checksum",
        }
    }
}

impl fmt::Display for KeyFormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::TooLong => "the API key is too long",
            Self::NoPrefix => "the API key has no `<prefix>_`",
            Self::BadPrefix => "the API key's prefix is not 1-32 characters of a-z, 0-9 and _",
            Self::BadLength => "the API key's body has the wrong length",
            Self::BadCharacter => "the API key's body is not base62",
            Self::BadChecksum => "the API key's checksum does not match",
        })
    }
}

impl std::error::Error for KeyFormatError {}

/// True when `prefix` is a valid key prefix: 1–32 characters of `a-z`, `0-9`, `_`, starting with a letter and
/// not ending with `_`.
pub fn valid_prefix(prefix: &str) -> bool {
    let b = prefix.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_PREFIX_LEN
        && b[0].is_ascii_lowercase()
        && b[b.len() - 1] != b'_'
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
}

/// True when `id` has the shape of a key id (11 base62 characters).
pub fn valid_key_id(id: &str) -> bool {
    id.len() == KEY_ID_LEN && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Slice-by-8 tables for CRC-32 (IEEE): table 0 is the classic byte table, table `k` advances `k` more bytes.
const CRC_TABLES: [[u32; 256]; 8] = {
    let mut t = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            k += 1;
        }
        t[0][i] = c;
        i += 1;
    }
    let mut i = 0;
    while i < 256 {
        let mut k = 1;
        while k < 8 {
            let prev = t[k - 1][i];
            t[k][i] = (prev >> 8) ^ t[0][(prev & 0xff) as usize];
            k += 1;
        }
        i += 1;
    }
    t
};

/// CRC-32 (IEEE 802.3, the one of zlib and GitHub's token checksums), eight bytes per step.
pub(crate) fn crc32(data: &[u8]) -> u32 {
    let t = &CRC_TABLES;
    let mut c = !0u32;
    let mut chunks = data.chunks_exact(8);
    for b in &mut chunks {
        let lo = c ^ u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        c = t[7][(lo & 0xff) as usize]
            ^ t[6][((lo >> 8) & 0xff) as usize]
            ^ t[5][((lo >> 16) & 0xff) as usize]
            ^ t[4][(lo >> 24) as usize]
            ^ t[3][usize::from(b[4])]
            ^ t[2][usize::from(b[5])]
            ^ t[1][usize::from(b[6])]
            ^ t[0][usize::from(b[7])];
    }
    for b in chunks.remainder() {
        c = t[0][((c ^ u32::from(*b)) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

fn encode_checksum(mut v: u32) -> [u8; CHECKSUM_LEN] {
    let mut out = [b'0'; CHECKSUM_LEN];
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[(v % 62) as usize];
        v /= 62;
    }
    out
}

fn digit(b: u8) -> Option<u64> {
    match b {
        b'0'..=b'9' => Some(u64::from(b - b'0')),
        b'A'..=b'Z' => Some(u64::from(b - b'A') + 10),
        b'a'..=b'z' => Some(u64::from(b - b'a') + 36),
        _ => None,
    }
}

fn decode_checksum(s: &[u8]) -> Option<u32> {
    let mut v = 0u64;
    for b in s {
        v = v * 62 + digit(*b)?;
    }
    u32::try_from(v).ok()
}

/// A parsed API key, borrowed from the string it was found in. Its `Debug` shows the prefix and key id only.
#[derive(Clone, Copy)]
pub struct ParsedKey<'a> {
    full: &'a str,
    prefix_len: usize,
}

impl fmt::Debug for ParsedKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParsedKey")
            .field("prefix", &self.prefix())
            .field("key_id", &self.key_id())
            .field("secret", &"[REDACTED]")
            .finish()
    }
}

impl<'a> ParsedKey<'a> {
    /// The prefix (`sk_live`).
    pub fn prefix(&self) -> &'a str {
        &self.full[..self.prefix_len]
    }

    /// The key id: public, used to find the key's record and shown in audit logs.
    pub fn key_id(&self) -> &'a str {
        let start = self.prefix_len + 1;
        &self.full[start..start + KEY_ID_LEN]
    }

    /// The whole key (what is digested).
    pub fn expose_secret(&self) -> &'a str {
        self.full
    }
}

/// Parses `key` and checks its checksum: a typo or a made-up key is refused here, without any store lookup.
///
/// ```
/// use msec_authn::apikey::{ApiKey, KeyFormatError, parse_key};
/// let key = ApiKey::generate("sk_live")?;
/// let parsed = parse_key(key.expose_secret())?;
/// assert_eq!(parsed.prefix(), "sk_live");
/// assert_eq!(parsed.key_id(), key.key_id());
///
/// // One character changed: the checksum catches it.
/// let mut typo = key.expose_secret().to_owned();
/// let last = typo.pop().unwrap();
/// typo.push(if last == 'a' { 'b' } else { 'a' });
/// assert_eq!(parse_key(&typo).unwrap_err(), KeyFormatError::BadChecksum);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn parse_key(key: &str) -> Result<ParsedKey<'_>, KeyFormatError> {
    if key.len() > MAX_KEY_LEN {
        return Err(KeyFormatError::TooLong);
    }
    let Some(sep) = key.rfind('_') else {
        return Err(KeyFormatError::NoPrefix);
    };
    let (prefix, body) = (&key[..sep], &key.as_bytes()[sep + 1..]);
    if !valid_prefix(prefix) {
        return Err(KeyFormatError::BadPrefix);
    }
    if body.len() != BODY_LEN {
        return Err(KeyFormatError::BadLength);
    }
    if !body.iter().all(u8::is_ascii_alphanumeric) {
        return Err(KeyFormatError::BadCharacter);
    }
    let (signed, check) = key.as_bytes().split_at(key.len() - CHECKSUM_LEN);
    if decode_checksum(check) != Some(crc32(signed)) {
        return Err(KeyFormatError::BadChecksum);
    }
    Ok(ParsedKey {
        full: key,
        prefix_len: sep,
    })
}

/// An API key: the secret a client presents. Zeroized on drop; `Debug` shows the prefix and key id only; the
/// key itself is read through [`expose_secret`](Self::expose_secret).
///
/// ```
/// use msec_authn::apikey::ApiKey;
/// let key = ApiKey::generate("sk_live")?;
/// assert!(key.expose_secret().starts_with("sk_live_"));
/// assert!(!format!("{key:?}").contains(key.expose_secret()));
/// # Ok::<(), msec_authn::apikey::ApiKeyError>(())
/// ```
#[derive(Clone)]
pub struct ApiKey {
    key: Zeroizing<String>,
    prefix_len: usize,
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKey")
            .field("prefix", &self.prefix())
            .field("key_id", &self.key_id())
            .field("secret", &"[REDACTED]")
            .finish()
    }
}

/// Fills `out` with uniformly random base62 characters (rejection sampling over CSPRNG bytes).
fn random_base62(rng: &SystemRandom, out: &mut [u8]) -> Result<(), ApiKeyError> {
    let mut pool = Zeroizing::new([0u8; 64]);
    let mut i = 0;
    while i < out.len() {
        rng.fill(pool.as_mut_slice()).map_err(|_| ApiKeyError::Random)?;
        for b in pool.iter() {
            // 248 = 4 × 62: bytes at or above it would bias the first symbols.
            if *b < 248 {
                out[i] = ALPHABET[usize::from(*b % 62)];
                i += 1;
                if i == out.len() {
                    break;
                }
            }
        }
    }
    Ok(())
}

impl ApiKey {
    /// A new key with `prefix`: a random key id and a secret of about 196 bits, both from the operating system's
    /// CSPRNG (`ring::rand::SystemRandom`), and the checksum.
    pub fn generate(prefix: &str) -> Result<Self, ApiKeyError> {
        if !valid_prefix(prefix) {
            return Err(ApiKeyError::InvalidPrefix(prefix.to_owned()));
        }
        let rng = SystemRandom::new();
        let mut key = Zeroizing::new(Vec::with_capacity(prefix.len() + 1 + BODY_LEN));
        key.extend_from_slice(prefix.as_bytes());
        key.push(b'_');
        let mut random = Zeroizing::new([0u8; KEY_ID_LEN + SECRET_LEN]);
        random_base62(&rng, random.as_mut_slice())?;
        key.extend_from_slice(random.as_slice());
        let check = encode_checksum(crc32(&key));
        key.extend_from_slice(&check);
        let key = Zeroizing::new(String::from_utf8(std::mem::take(&mut *key)).map_err(|_| ApiKeyError::Random)?);
        Ok(Self {
            key,
            prefix_len: prefix.len(),
        })
    }

    /// Parses and checks `key` (see [`parse_key`]), keeping a zeroizing copy.
    pub fn parse(key: &str) -> Result<Self, KeyFormatError> {
        let p = parse_key(key)?;
        Ok(Self {
            key: Zeroizing::new(key.to_owned()),
            prefix_len: p.prefix_len,
        })
    }

    /// The whole key, as the client sends it. Every call site is a place the secret is handled.
    pub fn expose_secret(&self) -> &str {
        &self.key
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.key[..self.prefix_len]
    }

    /// The public key id.
    pub fn key_id(&self) -> &str {
        let start = self.prefix_len + 1;
        &self.key[start..start + KEY_ID_LEN]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_known_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
        // Every length around the 8-byte steps agrees with the bytewise definition.
        let data: Vec<u8> = (0..=40u8).collect();
        for n in 0..data.len() {
            let mut c = !0u32;
            for b in &data[..n] {
                c ^= u32::from(*b);
                for _ in 0..8 {
                    c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
                }
            }
            assert_eq!(crc32(&data[..n]), !c, "length {n}");
        }
        assert_eq!(decode_checksum(&encode_checksum(u32::MAX)), Some(u32::MAX));
        assert_eq!(decode_checksum(&encode_checksum(0)), Some(0));
        assert_eq!(decode_checksum(b"zzzzzz"), None);
    }

    #[test]
    fn generate_and_parse() {
        let k = ApiKey::generate("sk_live").unwrap();
        assert_eq!(k.expose_secret().len(), "sk_live_".len() + BODY_LEN);
        let p = parse_key(k.expose_secret()).unwrap();
        assert_eq!(p.prefix(), "sk_live");
        assert_eq!(p.key_id(), k.key_id());
        assert!(valid_key_id(k.key_id()));
        assert!(!format!("{p:?}").contains(k.expose_secret()));
        assert_ne!(
            ApiKey::generate("x").unwrap().key_id(),
            ApiKey::generate("x").unwrap().key_id()
        );
    }

    #[test]
    fn refusals() {
        let k = ApiKey::generate("sk").unwrap();
        let s = k.expose_secret();
        assert_eq!(parse_key("nounderscore").unwrap_err(), KeyFormatError::NoPrefix);
        assert_eq!(parse_key(&s[..s.len() - 1]).unwrap_err(), KeyFormatError::BadLength);
        assert_eq!(
            parse_key(&s.replacen("sk", "SK", 1)).unwrap_err(),
            KeyFormatError::BadPrefix
        );
        assert_eq!(
            parse_key(&s.replacen("sk", "sl", 1)).unwrap_err(),
            KeyFormatError::BadChecksum
        );
        let mut bad = s.to_owned();
        bad.replace_range(5..6, "-");
        assert_eq!(parse_key(&bad).unwrap_err(), KeyFormatError::BadCharacter);
        assert_eq!(parse_key(&"a".repeat(200)).unwrap_err(), KeyFormatError::TooLong);
        assert!(ApiKey::generate("Bad").is_err());
        assert!(ApiKey::generate("a_").is_err());
        assert!(ApiKey::generate("").is_err());
    }
}
