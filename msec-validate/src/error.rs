//! [`ConfigError`]: what can be wrong with a configuration, reported when it is built.

use std::path::PathBuf;

/// A configuration that cannot be built. Returned by builders at construction time, never on a request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A route spec does not parse.
    #[error(transparent)]
    Route(#[from] msec_core::route::RouteError),
    /// A schema file cannot be read.
    #[error("cannot read schema file {path}: {source}")]
    SchemaFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A schema file is not JSON.
    #[error("schema file {path} is not JSON: {source}")]
    SchemaJson {
        /// The file.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
    /// A schema references a document that is not registered locally, and fetching is not allowed.
    #[error(
        "the schema for `{route}` references `{uri}`, which is not registered with `SchemaSet::builder().resource(..)`; \
         remote references are never fetched unless `danger_retriever` is set"
    )]
    RemoteReference {
        /// The route whose schema it is.
        route: String,
        /// The unresolved reference.
        uri: String,
    },
    /// A schema declares a `$schema` meta-schema that is not a known draft.
    #[error("the schema for `{route}` declares an unknown meta-schema `{uri}`")]
    UnknownDraft {
        /// The route whose schema it is.
        route: String,
        /// The `$schema` value.
        uri: String,
    },
    /// A schema is not a valid JSON Schema.
    #[error("the schema for `{route}` is invalid: {message}")]
    InvalidSchema {
        /// The route whose schema it is (or the resource URI).
        route: String,
        /// What the schema compiler said.
        message: String,
    },
    /// A firewall setting is invalid.
    #[error("invalid firewall setting: {0}")]
    Firewall(&'static str),
}
