#![doc = include_str!("docs/overview.md")]
#![forbid(unsafe_code)]

mod blind;
mod context;
mod envelope;
mod error;
mod format;
mod key;
mod keyring;
mod kms;
mod pseudo;
mod value;

pub mod batch;
#[doc(hidden)]
pub mod fuzzing;
pub mod mask;
#[cfg(feature = "postgres")]
mod postgres;
pub mod primitive;

pub use blind::{BlindIndex, BlindIndexOptions, BlindIndexValue};
pub use context::Context;
pub use envelope::{DataKeyPolicy, EnvelopeAead, EnvelopeStats};
pub use error::{Error, KmsError, reason};
pub use format::{COMMIT_LEN, Ciphertext, KeyRef, SALT_LEN, TEXT_PREFIX, VERSION};
pub use key::{KeyId, KeyInfo, KeyStatus};
pub use keyring::{FILE_FORMAT, Keyring, KeyringFileInfo, PLAINTEXT_FILE_FORMAT};
pub use kms::{Kms, KmsFuture, LOCAL_KMS_FORMAT, LocalKms};
pub use primitive::Algorithm;
pub use pseudo::Pseudonymizer;
pub use value::{Encrypted, FieldValue, Json};
