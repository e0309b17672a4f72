//! JSON Schema validation per route: [`SchemaSet`] compiles one [`jsonschema`] validator per route at
//! construction, and [`JsonSchemaLayer`] checks each request body against the validator of its route, after the
//! JSON guard and before any handler runs.
//!
//! - **Drafts**: 2020-12 unless the builder says otherwise ([`Draft`]); a schema's own `$schema` naming a
//!   known draft wins. An unknown `$schema` is a [`ConfigError::UnknownDraft`] (it is never fetched).
//! - **References**: `$ref` resolves within the schema and against documents registered with
//!   [`SchemaSetBuilder::resource`]. Nothing is ever fetched: jsonschema's default retriever would GET `http(s)`
//!   and read `file` URIs (server-side request forgery and local file disclosure through a schema), so msec builds
//!   it with default features off *and* installs an offline retriever — a reference to anything not registered
//!   is a [`ConfigError::RemoteReference`] at construction, even if another crate in the build enables
//!   jsonschema's `resolve-http` feature. [`SchemaSetBuilder::danger_retriever`] is the explicit opt-in.
//! - **Errors**: a violation is 422 `schema_violation` with `errors: [{pointer, code, message}]`: the JSON
//!   pointer of the offending value, the schema keyword (`required`, `type`, `maxLength`, ...) and a fixed
//!   sentence. The rejected value is never echoed.
//!
//! ```
//! use msec_validate::schema::{JsonSchemaLayer, SchemaSet};
//! use serde_json::json;
//!
//! let schemas = SchemaSet::builder()
//!     .route("POST /v1/orders", json!({
//!         "type": "object",
//!         "required": ["sku", "quantity"],
//!         "properties": {
//!             "sku": {"type": "string", "maxLength": 32},
//!             "quantity": {"type": "integer", "minimum": 1}
//!         },
//!         "additionalProperties": false
//!     }))
//!     .build()?;
//! let layer = JsonSchemaLayer::new(schemas);
//! # let _ = layer;
//! # Ok::<(), msec_validate::ConfigError>(())
//! ```

use std::borrow::Cow;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use http::Method;
use jsonschema::error::ValidationErrorKind;
use jsonschema::{Retrieve, Uri};
use msec_core::Rejection;
use msec_core::route::{RouteSpec, RouteTable};
use serde_json::Value;
use tower_layer::Layer;

use crate::ConfigError;
use crate::codes;
use crate::guard::layer::Config;
use crate::guard::{JsonGuard, JsonGuardLayer, JsonLimits};
use crate::report::{FieldError, MAX_ERRORS, push_pointer_token, violations};

/// The JSON Schema draft a schema is read as when it does not say (`$schema`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Draft {
    /// Draft 4.
    Draft4,
    /// Draft 6.
    Draft6,
    /// Draft 7.
    Draft7,
    /// Draft 2019-09.
    Draft201909,
    /// Draft 2020-12 (the default).
    #[default]
    Draft202012,
}

impl Draft {
    fn to_jsonschema(self) -> jsonschema::Draft {
        match self {
            Self::Draft4 => jsonschema::Draft::Draft4,
            Self::Draft6 => jsonschema::Draft::Draft6,
            Self::Draft7 => jsonschema::Draft::Draft7,
            Self::Draft201909 => jsonschema::Draft::Draft201909,
            Self::Draft202012 => jsonschema::Draft::Draft202012,
        }
    }
}

/// Refuses every retrieval: what msec uses unless a `danger_retriever` is set.
struct Offline;

impl Retrieve for Offline {
    fn retrieve(&self, uri: &Uri<String>) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        Err(format!("msec-validate does not fetch schema references ({uri})").into())
    }
}

struct Shared(Arc<dyn Retrieve>);

impl Retrieve for Shared {
    fn retrieve(&self, uri: &Uri<String>) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        self.0.retrieve(uri)
    }
}

/// One route's compiled schema.
pub struct CompiledSchema {
    route: String,
    validator: jsonschema::Validator,
}

impl fmt::Debug for CompiledSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompiledSchema")
            .field("route", &self.route)
            .finish_non_exhaustive()
    }
}

impl CompiledSchema {
    /// The route spec this schema was registered for.
    pub fn route(&self) -> &str {
        &self.route
    }

    /// Validates a parsed document: the violations (at most [`MAX_ERRORS`]), empty when valid.
    pub fn violations(&self, instance: &Value) -> Vec<FieldError> {
        self.validator
            .iter_errors(instance)
            .take(MAX_ERRORS)
            .map(|e| field_error(e.instance_path().as_str(), e.kind()))
            .collect()
    }

    /// Parses `bytes` (already checked by the guard) and validates them: 422 `schema_violation` listing the
    /// violations, or 400 when the document does not parse.
    pub fn check(&self, bytes: &[u8]) -> Result<(), Rejection> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| {
            if e.is_data() || e.to_string().starts_with("number out of range") {
                Rejection::bad_request(
                    codes::JSON_NUMBER_OUT_OF_RANGE,
                    "a number in the request body is out of range",
                )
            } else {
                Rejection::bad_request(codes::JSON_SYNTAX, "the request body is not valid JSON")
            }
        })?;
        let errors = self.violations(&value);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(violations(
                codes::SCHEMA_VIOLATION,
                "the request body does not match its schema",
                errors,
            ))
        }
    }
}

/// The field error for a schema violation at `instance_path`, from the keyword alone (never the value).
fn field_error(instance_path: &str, kind: &ValidationErrorKind) -> FieldError {
    use ValidationErrorKind as K;
    let mut pointer = instance_path.to_owned();
    let message: Cow<'static, str> = match kind {
        K::Required { property } => {
            if let Some(p) = property.as_str() {
                push_pointer_token(&mut pointer, p);
            }
            "is required".into()
        }
        K::Type { .. } => "has the wrong type".into(),
        K::AdditionalProperties { .. } | K::UnevaluatedProperties { .. } => {
            "has properties that are not allowed".into()
        }
        K::AdditionalItems { .. } | K::UnevaluatedItems { .. } => "has items that are not allowed".into(),
        K::MaxLength { limit } => format!("must be at most {limit} characters long").into(),
        K::MinLength { limit } => format!("must be at least {limit} characters long").into(),
        K::MaxItems { limit } => format!("must have at most {limit} items").into(),
        K::MinItems { limit } => format!("must have at least {limit} items").into(),
        K::MaxProperties { limit } => format!("must have at most {limit} properties").into(),
        K::MinProperties { limit } => format!("must have at least {limit} properties").into(),
        K::Maximum { limit } => format!("must be at most {limit}").into(),
        K::Minimum { limit } => format!("must be at least {limit}").into(),
        K::ExclusiveMaximum { limit } => format!("must be less than {limit}").into(),
        K::ExclusiveMinimum { limit } => format!("must be greater than {limit}").into(),
        K::MultipleOf { .. } => "is not an allowed multiple".into(),
        K::Enum { .. } => "is not one of the allowed values".into(),
        K::Constant { .. } => "is not the required value".into(),
        K::Pattern { .. } => "does not match the required pattern".into(),
        K::Format { format } => format!("is not a valid {format}").into(),
        K::UniqueItems => "has duplicate items".into(),
        K::Contains => "does not contain a required item".into(),
        K::PropertyNames { .. } => "has a property name that is not allowed".into(),
        K::AnyOf { .. } | K::OneOfNotValid { .. } => "matches none of the allowed shapes".into(),
        K::OneOfMultipleValid { .. } => "matches more than one of the allowed shapes".into(),
        K::Not { .. } => "matches a shape that is not allowed".into(),
        K::FalseSchema => "is not allowed".into(),
        _ => "is invalid".into(),
    };
    FieldError::new(pointer, kind.keyword().to_owned(), message)
}

/// The compiled schemas of a service, by route. Build with [`SchemaSet::builder`].
#[derive(Debug, Clone)]
pub struct SchemaSet {
    table: RouteTable<Arc<CompiledSchema>>,
}

impl SchemaSet {
    /// A builder (draft 2020-12, no fetching).
    pub fn builder() -> SchemaSetBuilder {
        SchemaSetBuilder::default()
    }

    /// The schema of the most specific route matching `method` and `path`, with its spec.
    pub fn find<'a>(&'a self, method: &'a Method, path: &'a str) -> Option<(&'a RouteSpec, &'a Arc<CompiledSchema>)> {
        self.table.best_match(method, path).map(|e| (&e.spec, &e.value))
    }

    /// Number of routes with a schema.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// True when no route has a schema.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }
}

enum Source {
    Inline(Value),
    File(PathBuf),
}

/// Builds a [`SchemaSet`]; every problem surfaces from [`build`](Self::build) as a [`ConfigError`].
#[derive(Default)]
pub struct SchemaSetBuilder {
    draft: Draft,
    routes: Vec<(String, Source)>,
    resources: Vec<(String, Value)>,
    retriever: Option<Arc<dyn Retrieve>>,
    validate_formats: bool,
}

impl fmt::Debug for SchemaSetBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SchemaSetBuilder")
            .field("draft", &self.draft)
            .field("routes", &self.routes.iter().map(|(r, _)| r).collect::<Vec<_>>())
            .field("resources", &self.resources.iter().map(|(u, _)| u).collect::<Vec<_>>())
            .field("retriever", &self.retriever.is_some())
            .finish()
    }
}

impl SchemaSetBuilder {
    /// The draft for schemas without a `$schema` keyword (default: 2020-12).
    #[must_use]
    pub fn draft(mut self, draft: Draft) -> Self {
        self.draft = draft;
        self
    }

    /// Checks `format` (`email`, `date-time`, `uuid`, ...) as an assertion, not just an annotation (off by
    /// default, as in drafts 2019-09 and 2020-12).
    #[must_use]
    pub fn validate_formats(mut self, yes: bool) -> Self {
        self.validate_formats = yes;
        self
    }

    /// The schema for requests matching `route` (a msec-core [`RouteSpec`]: `POST /v1/orders`,
    /// `PUT /v1/orders/{id}`).
    #[must_use]
    pub fn route(mut self, route: impl Into<String>, schema: Value) -> Self {
        self.routes.push((route.into(), Source::Inline(schema)));
        self
    }

    /// The schema for `route`, read from a JSON file when [`build`](Self::build) runs.
    #[must_use]
    pub fn route_file(mut self, route: impl Into<String>, path: impl AsRef<Path>) -> Self {
        self.routes.push((route.into(), Source::File(path.as_ref().to_owned())));
        self
    }

    /// Registers a document that schemas may `$ref` by `uri` (shared definitions), without fetching it.
    #[must_use]
    pub fn resource(mut self, uri: impl Into<String>, document: Value) -> Self {
        self.resources.push((uri.into(), document));
        self
    }

    /// **Dangerous**: resolves references that are not registered with `retriever` — which may fetch over the
    /// network or read files, at construction time, with whatever URI a schema names. Only for schemas you
    /// fully control; prefer [`resource`](Self::resource).
    #[must_use]
    pub fn danger_retriever(mut self, retriever: impl Retrieve + 'static) -> Self {
        self.retriever = Some(Arc::new(retriever));
        self
    }

    /// Compiles every schema.
    pub fn build(self) -> Result<SchemaSet, ConfigError> {
        let retriever = || -> Box<dyn Retrieve> {
            match &self.retriever {
                Some(r) => Box::new(Shared(r.clone())),
                None => Box::new(Offline),
            }
        };
        let registry = if self.resources.is_empty() {
            None
        } else {
            let mut b = jsonschema::Registry::new().retriever(BoxRetriever(retriever()));
            for (uri, doc) in &self.resources {
                b = b.add(uri, doc.clone()).map_err(|e| ConfigError::InvalidSchema {
                    route: uri.clone(),
                    message: e.to_string(),
                })?;
            }
            Some(b.prepare().map_err(|e| referencing_error("(resources)", &e))?)
        };
        let mut table = RouteTable::new();
        for (route, source) in self.routes {
            let spec = RouteSpec::parse(&route)?;
            let schema = match source {
                Source::Inline(v) => v,
                Source::File(path) => {
                    let text = std::fs::read(&path).map_err(|source| ConfigError::SchemaFile {
                        path: path.clone(),
                        source,
                    })?;
                    serde_json::from_slice(&text).map_err(|source| ConfigError::SchemaJson { path, source })?
                }
            };
            let draft = match schema.get("$schema").and_then(Value::as_str) {
                None => self.draft.to_jsonschema(),
                Some(uri) => match jsonschema::Draft::default().detect(&schema) {
                    d @ (jsonschema::Draft::Draft4
                    | jsonschema::Draft::Draft6
                    | jsonschema::Draft::Draft7
                    | jsonschema::Draft::Draft201909
                    | jsonschema::Draft::Draft202012) => d,
                    _ => {
                        return Err(ConfigError::UnknownDraft {
                            route,
                            uri: uri.chars().take(200).collect(),
                        });
                    }
                },
            };
            let mut options = jsonschema::options()
                .with_draft(draft)
                .should_validate_formats(self.validate_formats)
                .with_retriever(BoxRetriever(retriever()));
            if let Some(r) = &registry {
                options = options.with_registry(r);
            }
            let validator = options.build(&schema).map_err(|e| match e.kind() {
                ValidationErrorKind::Referencing(r) => referencing_error(&route, r),
                _ => ConfigError::InvalidSchema {
                    route: route.clone(),
                    message: e.to_string(),
                },
            })?;
            table.insert(spec, Arc::new(CompiledSchema { route, validator }));
        }
        Ok(SchemaSet { table })
    }
}

struct BoxRetriever(Box<dyn Retrieve>);

impl Retrieve for BoxRetriever {
    fn retrieve(&self, uri: &Uri<String>) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        self.0.retrieve(uri)
    }
}

fn referencing_error(route: &str, e: &jsonschema::ReferencingError) -> ConfigError {
    match e {
        jsonschema::ReferencingError::Unretrievable { uri, .. } => ConfigError::RemoteReference {
            route: route.to_owned(),
            uri: uri.chars().take(200).collect(),
        },
        other => ConfigError::InvalidSchema {
            route: route.to_owned(),
            message: other.to_string(),
        },
    }
}

/// Validates request bodies against per-route JSON Schemas, behind the JSON guard.
///
/// Requests whose route has no schema pass untouched. For the others the body must be JSON (415), pass the
/// guard's [`JsonLimits`] (400/413), and satisfy the schema (422 `schema_violation`). The service is a
/// [`JsonGuard`]; the handler receives the checked bytes.
#[derive(Debug, Clone)]
pub struct JsonSchemaLayer {
    guard: JsonGuardLayer,
    schemas: SchemaSet,
}

impl JsonSchemaLayer {
    /// A layer validating against `schemas`, with the default [`JsonLimits`].
    pub fn new(schemas: SchemaSet) -> Self {
        Self {
            guard: JsonGuardLayer::from_config(Config {
                limits: JsonLimits::default(),
                routes: None,
                schemas: Some(schemas.clone()),
            }),
            schemas,
        }
    }

    /// Sets the guard's limits.
    #[must_use]
    pub fn limits(self, limits: JsonLimits) -> Self {
        Self {
            guard: JsonGuardLayer::from_config(Config {
                limits,
                routes: None,
                schemas: Some(self.schemas.clone()),
            }),
            schemas: self.schemas,
        }
    }
}

impl<S> Layer<S> for JsonSchemaLayer {
    type Service = JsonGuard<S>;
    fn layer(&self, inner: S) -> Self::Service {
        self.guard.layer(inner)
    }
}
