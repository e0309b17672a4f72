//! Errors. Every failure is a value: decrypting with a keyring that lacks the key is [`Error::UnknownKey`], a key
//! that was switched off is [`Error::KeyDisabled`], anything that fails authentication (a tampered byte, another
//! record's context, a wrong key) is the deliberately uninformative [`Error::Decrypt`].

use crate::key::KeyId;

/// Why an operation on a keyring, a ciphertext or a KMS failed.
///
/// [`Error::code`] gives a stable `snake_case` code for logs, metrics and API problem documents; the `Display`
/// text is for operators and never contains key material or plaintext.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The ciphertext names a key id this keyring does not hold.
    #[error("unknown key {0}")]
    UnknownKey(KeyId),
    /// The ciphertext's key is in the keyring but disabled.
    #[error("key {0} is disabled")]
    KeyDisabled(KeyId),
    /// Authentication failed: the ciphertext, its key id or its context was changed, or it was encrypted for
    /// another record or column. Carries no detail on purpose.
    #[error("decryption failed")]
    Decrypt,
    /// The bytes or text are not an msec ciphertext (truncated, wrong prefix, bad base64, inconsistent fields).
    #[error("malformed ciphertext: {0}")]
    Malformed(&'static str),
    /// The ciphertext was written by a newer format version than this build understands.
    #[error("unsupported ciphertext version {0}")]
    UnsupportedVersion(u8),
    /// The ciphertext names an algorithm suite this build does not know.
    #[error("unsupported algorithm suite {0:#04x}")]
    UnsupportedSuite(u8),
    /// The keyring has no primary key, so it cannot encrypt.
    #[error("the keyring has no primary key")]
    NoPrimary,
    /// The key exists but is of the wrong kind for the operation (an HMAC key used to encrypt, an AEAD key used for
    /// a blind index).
    #[error("key {0} cannot be used for this operation")]
    WrongKeyKind(KeyId),
    /// A keyring change that would break an invariant (see the message).
    #[error("keyring: {0}")]
    Keyring(&'static str),
    /// The keyring file could not be read or written.
    #[error("keyring file: {0}")]
    KeyringFile(String),
    /// The KMS failed to wrap or unwrap a key.
    #[error(transparent)]
    Kms(#[from] KmsError),
    /// A typed value could not be encoded to, or decoded from, its plaintext bytes.
    #[error("value encoding: {0}")]
    Value(String),
    /// The operating system's random number generator failed.
    #[error("random number generator failure")]
    Rng,
}

/// Stable reason codes for [`Error::code`], as [`ReasonCode`](msec_core::context::ReasonCode)s (for a `Rejection` or a
/// `Decision`).
pub mod reason {
    use msec_core::context::ReasonCode;

    /// [`Error::UnknownKey`](crate::Error::UnknownKey).
    pub const UNKNOWN_KEY: ReasonCode = ReasonCode::new("unknown_key");
    /// [`Error::KeyDisabled`](crate::Error::KeyDisabled).
    pub const KEY_DISABLED: ReasonCode = ReasonCode::new("key_disabled");
    /// [`Error::Decrypt`](crate::Error::Decrypt).
    pub const DECRYPT_FAILED: ReasonCode = ReasonCode::new("decrypt_failed");
    /// [`Error::Malformed`](crate::Error::Malformed).
    pub const MALFORMED_CIPHERTEXT: ReasonCode = ReasonCode::new("malformed_ciphertext");
    /// [`Error::UnsupportedVersion`](crate::Error::UnsupportedVersion).
    pub const UNSUPPORTED_VERSION: ReasonCode = ReasonCode::new("unsupported_version");
    /// [`Error::UnsupportedSuite`](crate::Error::UnsupportedSuite).
    pub const UNSUPPORTED_SUITE: ReasonCode = ReasonCode::new("unsupported_suite");
    /// [`Error::NoPrimary`](crate::Error::NoPrimary).
    pub const NO_PRIMARY_KEY: ReasonCode = ReasonCode::new("no_primary_key");
    /// [`Error::WrongKeyKind`](crate::Error::WrongKeyKind).
    pub const WRONG_KEY_KIND: ReasonCode = ReasonCode::new("wrong_key_kind");
    /// [`Error::Keyring`](crate::Error::Keyring).
    pub const KEYRING_INVALID: ReasonCode = ReasonCode::new("keyring_invalid");
    /// [`Error::KeyringFile`](crate::Error::KeyringFile).
    pub const KEYRING_FILE: ReasonCode = ReasonCode::new("keyring_file");
    /// [`Error::Kms`](crate::Error::Kms).
    pub const KMS_ERROR: ReasonCode = ReasonCode::new("kms_error");
    /// [`Error::Value`](crate::Error::Value).
    pub const VALUE_ENCODING: ReasonCode = ReasonCode::new("value_encoding");
    /// [`Error::Rng`](crate::Error::Rng).
    pub const RNG_FAILURE: ReasonCode = ReasonCode::new("rng_failure");
}

impl Error {
    /// The stable code as a [`ReasonCode`](msec_core::context::ReasonCode) (one of the [`reason`] constants).
    pub fn reason_code(&self) -> msec_core::context::ReasonCode {
        msec_core::context::ReasonCode::new(self.code())
    }

    /// A stable machine code: `unknown_key`, `key_disabled`, `decrypt_failed`, `malformed_ciphertext`,
    /// `unsupported_version`, `unsupported_suite`, `no_primary_key`, `wrong_key_kind`, `keyring_invalid`,
    /// `keyring_file`, `kms_error`, `value_encoding`, `rng_failure`.
    pub fn code(&self) -> &'static str {
        match self {
            Error::UnknownKey(_) => "unknown_key",
            Error::KeyDisabled(_) => "key_disabled",
            Error::Decrypt => "decrypt_failed",
            Error::Malformed(_) => "malformed_ciphertext",
            Error::UnsupportedVersion(_) => "unsupported_version",
            Error::UnsupportedSuite(_) => "unsupported_suite",
            Error::NoPrimary => "no_primary_key",
            Error::WrongKeyKind(_) => "wrong_key_kind",
            Error::Keyring(_) => "keyring_invalid",
            Error::KeyringFile(_) => "keyring_file",
            Error::Kms(_) => "kms_error",
            Error::Value(_) => "value_encoding",
            Error::Rng => "rng_failure",
        }
    }
}

/// A KMS failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KmsError {
    /// The wrapped key did not authenticate (wrong master key, tampered blob, wrong associated data).
    #[error("the KMS could not unwrap the key")]
    Unwrap,
    /// The KMS refused or could not serve the request (network, permissions, throttling).
    #[error("KMS unavailable: {0}")]
    Unavailable(String),
    /// Any other failure, with a message safe to log.
    #[error("KMS: {0}")]
    Other(String),
}
