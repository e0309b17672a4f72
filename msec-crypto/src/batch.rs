//! Batch re-encryption: move every ciphertext of a table to the primary key after a rotation.
//!
//! [`rewrap_stream`] takes a stream of records (from a database cursor, a file, a channel), rewraps those not
//! yet under the primary key, yields one [`RewrapOutcome`] per record for the caller to write back, and reports
//! [`Progress`] after each. Plaintext never leaves the keyring.
//!
//! ```
//! # futures_util::FutureExt::now_or_never(async {
//! use futures_util::{stream, StreamExt};
//! use msec_crypto::batch::{rewrap_stream, RewrapRecord};
//! use msec_crypto::{Algorithm, Context, Keyring};
//!
//! let mut keyring = Keyring::generate(Algorithm::Aes256Gcm)?;
//! let records: Vec<_> = (0..10)
//!     .map(|i| {
//!         let ctx = Context::new("users", "email", i.to_string());
//!         let ct = keyring.encrypt(b"x@example.org", &ctx).unwrap();
//!         RewrapRecord { id: i, context: ctx, ciphertext: ct }
//!     })
//!     .collect();
//! let new_key = keyring.add_key(Algorithm::Aes256Gcm)?;
//! keyring.promote(new_key)?;
//!
//! let mut last = None;
//! let out: Vec<_> = rewrap_stream(&keyring, stream::iter(records), |p| last = Some(*p)).collect().await;
//! assert!(out.iter().all(|o| o.result.as_ref().is_ok_and(|c| c.as_ref().is_some_and(|c| c.key_id() == Some(new_key)))));
//! assert_eq!(last.unwrap().rewrapped, 10);
//! # Ok::<(), msec_crypto::Error>(())
//! # }).unwrap()?;
//! # Ok::<(), msec_crypto::Error>(())
//! ```

use futures_util::{Stream, StreamExt};

use crate::context::Context;
use crate::error::Error;
use crate::format::Ciphertext;
use crate::keyring::Keyring;

/// One record to rewrap: the caller's id for it, its context, its ciphertext.
#[derive(Debug, Clone)]
pub struct RewrapRecord<I> {
    /// The caller's id (primary key) used to write the result back.
    pub id: I,
    /// The context the ciphertext was sealed for.
    pub context: Context,
    /// The stored ciphertext.
    pub ciphertext: Ciphertext,
}

/// What happened to one record.
#[derive(Debug)]
pub struct RewrapOutcome<I> {
    /// The record's id.
    pub id: I,
    /// `Ok(Some(ct))`: write `ct` back; `Ok(None)`: already under the primary key, nothing to write; `Err`: the
    /// record could not be rewrapped (unknown or disabled key, failed authentication).
    pub result: Result<Option<Ciphertext>, Error>,
}

/// Counts so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Records seen.
    pub processed: u64,
    /// Records re-encrypted under the primary key.
    pub rewrapped: u64,
    /// Records already under the primary key.
    pub unchanged: u64,
    /// Records that failed.
    pub failed: u64,
}

/// Rewraps one record.
pub fn rewrap_record<I>(keyring: &Keyring, record: RewrapRecord<I>) -> RewrapOutcome<I> {
    let result = if keyring.needs_rewrap(&record.ciphertext) {
        keyring.rewrap(&record.ciphertext, &record.context).map(Some)
    } else {
        Ok(None)
    };
    RewrapOutcome { id: record.id, result }
}

/// Rewraps a stream of records, calling `on_progress` after each one.
pub fn rewrap_stream<'a, I, S, F>(
    keyring: &'a Keyring,
    records: S,
    mut on_progress: F,
) -> impl Stream<Item = RewrapOutcome<I>> + 'a
where
    S: Stream<Item = RewrapRecord<I>> + 'a,
    F: FnMut(&Progress) + 'a,
    I: 'a,
{
    let mut progress = Progress::default();
    records.map(move |record| {
        let outcome = rewrap_record(keyring, record);
        progress.processed += 1;
        match &outcome.result {
            Ok(Some(_)) => progress.rewrapped += 1,
            Ok(None) => progress.unchanged += 1,
            Err(e) => {
                progress.failed += 1;
                tracing::warn!(code = e.code(), "msec-crypto: record could not be rewrapped");
            }
        }
        on_progress(&progress);
        outcome
    })
}
