//! [`JsonLimits`]: the bounds the JSON guard enforces.

/// The bounds the JSON guard enforces before anything deserialises a body.
///
/// Every limit is inclusive (a document exactly at a limit passes). The defaults suit a typical JSON API;
/// set each one from what your largest legitimate request needs.
///
/// | limit | default | refused with |
/// |---|---|---|
/// | [`max_body_bytes`](Self::max_body_bytes) | 1 MiB | 413 `payload_too_large` |
/// | [`max_depth`](Self::max_depth) | 32 | 400 `json_too_deep` |
/// | [`max_object_keys`](Self::max_object_keys) (members per object) | 1 000 | 413 `json_too_many_keys` |
/// | [`max_array_len`](Self::max_array_len) (elements per array) | 10 000 | 413 `json_array_too_long` |
/// | [`max_string_len`](Self::max_string_len) (characters, member names included) | 65 536 | 413 `json_string_too_long` |
/// | [`max_nodes`](Self::max_nodes) (values in the document) | 100 000 | 413 `json_too_many_nodes` |
///
/// ```
/// use msec_validate::guard::JsonLimits;
/// let limits = JsonLimits::default().max_body_bytes(64 * 1024).max_depth(8);
/// assert_eq!(limits.max_depth, 8);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct JsonLimits {
    /// Largest body, in bytes.
    pub max_body_bytes: usize,
    /// Deepest nesting of arrays and objects (a scalar document has depth 0, `[]` depth 1).
    pub max_depth: usize,
    /// Most members in one object (duplicate names count each time).
    pub max_object_keys: usize,
    /// Most elements in one array.
    pub max_array_len: usize,
    /// Longest string or member name, in characters (Unicode scalar values, after unescaping).
    pub max_string_len: usize,
    /// Most values in the document: every object, array, string, number, boolean and null.
    pub max_nodes: usize,
}

impl Default for JsonLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            max_depth: 32,
            max_object_keys: 1_000,
            max_array_len: 10_000,
            max_string_len: 65_536,
            max_nodes: 100_000,
        }
    }
}

impl JsonLimits {
    /// No limit at all (`usize::MAX` everywhere): for tests and for measuring a document.
    pub fn unlimited() -> Self {
        Self {
            max_body_bytes: usize::MAX,
            max_depth: usize::MAX,
            max_object_keys: usize::MAX,
            max_array_len: usize::MAX,
            max_string_len: usize::MAX,
            max_nodes: usize::MAX,
        }
    }
    /// Sets [`max_body_bytes`](Self::max_body_bytes).
    #[must_use]
    pub fn max_body_bytes(mut self, n: usize) -> Self {
        self.max_body_bytes = n;
        self
    }
    /// Sets [`max_depth`](Self::max_depth).
    #[must_use]
    pub fn max_depth(mut self, n: usize) -> Self {
        self.max_depth = n;
        self
    }
    /// Sets [`max_object_keys`](Self::max_object_keys).
    #[must_use]
    pub fn max_object_keys(mut self, n: usize) -> Self {
        self.max_object_keys = n;
        self
    }
    /// Sets [`max_array_len`](Self::max_array_len).
    #[must_use]
    pub fn max_array_len(mut self, n: usize) -> Self {
        self.max_array_len = n;
        self
    }
    /// Sets [`max_string_len`](Self::max_string_len).
    #[must_use]
    pub fn max_string_len(mut self, n: usize) -> Self {
        self.max_string_len = n;
        self
    }
    /// Sets [`max_nodes`](Self::max_nodes).
    #[must_use]
    pub fn max_nodes(mut self, n: usize) -> Self {
        self.max_nodes = n;
        self
    }
}
