//! The encryption context: where a value lives (table, column, record id). It is authenticated as associated data,
//! never stored in the ciphertext, so a ciphertext copied to another record or column fails to decrypt.

use std::fmt;

const LABEL: &[u8] = b"msec-ctx/v1";

/// Where a value lives. Every encryption and decryption takes one; the two must be equal.
///
/// The associated data is `"msec-ctx/v1"` followed by each part as a 4-byte big-endian length and its bytes, so
/// `("ab", "c")` and `("a", "bc")` differ.
///
/// ```
/// use msec_crypto::Context;
///
/// let a = Context::new("users", "email", "42");
/// let b = Context::new("users", "email", "43");
/// assert_ne!(a.aad(), b.aad());
/// assert_eq!(a.to_string(), "users.email[42]");
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Context {
    aad: Vec<u8>,
    table_len: usize,
    column_len: usize,
}

impl Context {
    /// The context of `table.column` in the record `record` (a primary key, a UUID, a tenant-qualified id).
    pub fn new(table: &str, column: &str, record: impl AsRef<[u8]>) -> Self {
        let record = record.as_ref();
        let mut aad = Vec::with_capacity(LABEL.len() + 12 + table.len() + column.len() + record.len());
        aad.extend_from_slice(LABEL);
        for part in [table.as_bytes(), column.as_bytes(), record] {
            // Lengths above u32::MAX cannot be allocated as one Context on any realistic system; saturate anyway.
            let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
            aad.extend_from_slice(&len.to_be_bytes());
            aad.extend_from_slice(part);
        }
        Self {
            aad,
            table_len: table.len(),
            column_len: column.len(),
        }
    }

    /// The context of a value that is not stored per record (a configuration secret): `table.column` with an
    /// empty record id.
    pub fn column(table: &str, column: &str) -> Self {
        Self::new(table, column, [])
    }

    /// The associated data this context contributes.
    pub fn aad(&self) -> &[u8] {
        &self.aad
    }

    fn part(&self, n: usize) -> &[u8] {
        let mut at = LABEL.len();
        for _ in 0..n {
            let len = self.len_at(at);
            at += 4 + len;
        }
        let len = self.len_at(at);
        &self.aad[at + 4..at + 4 + len]
    }

    fn len_at(&self, at: usize) -> usize {
        let mut b = [0u8; 4];
        b.copy_from_slice(&self.aad[at..at + 4]);
        u32::from_be_bytes(b) as usize
    }

    /// The table.
    pub fn table(&self) -> &str {
        std::str::from_utf8(&self.aad[LABEL.len() + 4..LABEL.len() + 4 + self.table_len]).unwrap_or_default()
    }

    /// The column.
    pub fn column_name(&self) -> &str {
        let start = LABEL.len() + 8 + self.table_len;
        std::str::from_utf8(&self.aad[start..start + self.column_len]).unwrap_or_default()
    }

    /// The record id bytes.
    pub fn record(&self) -> &[u8] {
        self.part(2)
    }
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{}[{}]",
            self.table(),
            self.column_name(),
            String::from_utf8_lossy(self.record())
        )
    }
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Context({self})")
    }
}
