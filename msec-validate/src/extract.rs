//! axum extractors that deserialise and validate (feature `axum`): [`Valid<Json<T>>`](Valid),
//! `Valid<Query<T>>`, `Valid<Path<T>>`, `Valid<Form<T>>` over [`validator::Validate`], and the same four as
//! [`Garde<..>`](Garde) over [`garde::Validate`] (feature `garde`).
//!
//! ```
//! use axum::{routing::post, Json, Router};
//! use msec_validate::Valid;
//! use serde::Deserialize;
//! use validator::Validate;
//!
//! #[derive(Deserialize, Validate)]
//! struct NewUser {
//!     #[validate(length(min = 3, max = 32))]
//!     name: String,
//!     #[validate(email)]
//!     email: String,
//! }
//!
//! async fn create(Valid(Json(user)): Valid<Json<NewUser>>) -> String {
//!     format!("hello {}", user.name)
//! }
//! let app: Router = Router::new().route("/users", post(create));
//! # let _ = app;
//! ```
//!
//! What a client gets when its input is refused (all msec-core [`Rejection`]s):
//!
//! - 415 `unsupported_media_type` for a body that is not `application/json` / `+json` (`Json`) or
//!   `application/x-www-form-urlencoded` (`Form`);
//! - the JSON guard's 400 / 413 answers for `Json` bodies ([`crate::guard`]): the extractor runs the guard
//!   itself, with the [`JsonLimits`] found in the request extensions (or the defaults), unless a
//!   [`JsonGuardLayer`](crate::JsonGuardLayer) already checked the body;
//! - 422 `validation_failed` with `errors: [{pointer, code, message}]` when the input does not deserialise into
//!   `T` (`required`, `invalid_type`, `unknown_field`, ...) or breaks a validation rule (validator's codes:
//!   `length`, `range`, `email`, ...). Pointers are JSON pointers into the body, or `/<name>` for query, form and
//!   path parameters. Rejected values are never echoed — not in the message, not in the pointer's place.

use std::ops::{Deref, DerefMut};

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Form, FromRequest, FromRequestParts, Path, Query, Request};
use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::request::Parts;
use http::{Method, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use msec_core::context::{self, Outcome};
use msec_core::{ReasonCode, Rejection};
use serde::de::DeserializeOwned;

use crate::codes;
use crate::guard::{self, JsonChecked, JsonLimits};
use crate::report::{self, FieldError, violations};

/// A validated extractor over `validator::Validate`: `Valid<Json<T>>`, `Valid<Query<T>>`, `Valid<Path<T>>`,
/// `Valid<Form<T>>`. See the [module docs](self).
#[derive(Debug, Clone, Copy, Default)]
pub struct Valid<E>(pub E);

impl<E> Deref for Valid<E> {
    type Target = E;
    fn deref(&self) -> &E {
        &self.0
    }
}

impl<E> DerefMut for Valid<E> {
    fn deref_mut(&mut self) -> &mut E {
        &mut self.0
    }
}

/// A validated extractor over `garde::Validate` (feature `garde`): `Garde<Json<T>>`, `Garde<Query<T>>`,
/// `Garde<Path<T>>`, `Garde<Form<T>>`. `T::Context` must implement `Default`.
#[cfg(feature = "garde")]
#[derive(Debug, Clone, Copy, Default)]
pub struct Garde<E>(pub E);

#[cfg(feature = "garde")]
impl<E> Deref for Garde<E> {
    type Target = E;
    fn deref(&self) -> &E {
        &self.0
    }
}

#[cfg(feature = "garde")]
impl<E> DerefMut for Garde<E> {
    fn deref_mut(&mut self) -> &mut E {
        &mut self.0
    }
}

const DETAIL: &str = "the request input is invalid";

fn deny(ext: &http::Extensions, source: &'static str, r: Rejection) -> Rejection {
    context::record_with(ext, "validate", Outcome::Deny, r.code(), |d| {
        d.detail("input", source);
        if let Some(n) = r.members().get("errors").and_then(|e| e.as_array()).map(Vec::len) {
            d.detail("errors", n.to_string());
        }
    });
    r
}

fn allow(ext: &http::Extensions, source: &'static str) {
    context::record_with(ext, "validate", Outcome::Allow, codes::INPUT_VALID, |d| {
        d.detail("input", source);
    });
}

fn failed(errors: Vec<FieldError>) -> Rejection {
    violations(codes::VALIDATION_FAILED, DETAIL, errors)
}

fn validate_with_validator<T: validator::Validate>(value: &T) -> Result<(), Rejection> {
    value.validate().map_err(|e| failed(report::from_validator(&e)))
}

#[cfg(feature = "garde")]
fn validate_with_garde<T>(value: &T) -> Result<(), Rejection>
where
    T: garde::Validate,
    T::Context: Default,
{
    value.validate().map_err(|e| failed(report::from_garde(&e)))
}

/// Deserialises a checked JSON document, mapping a failure to a pointer without echoing the input.
///
/// The fast path is a plain `serde_json::from_slice`; only a document that fails is deserialised again with
/// path tracking, to find the pointer (tracking costs about as much as the guard on every request otherwise).
fn from_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Rejection> {
    if let Ok(v) = serde_json::from_slice(bytes) {
        return Ok(v);
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        use serde_json::error::Category;
        match e.inner().classify() {
            Category::Data => failed(vec![report::from_serde_path(e.path(), &e.inner().to_string())]),
            _ if e.inner().to_string().starts_with("number out of range") => Rejection::bad_request(
                codes::JSON_NUMBER_OUT_OF_RANGE,
                "a number in the request body is out of range",
            ),
            _ => Rejection::bad_request(codes::JSON_SYNTAX, "the request body is not valid JSON"),
        }
    })?;
    de.end()
        .map_err(|_| Rejection::bad_request(codes::JSON_SYNTAX, "the request body is not valid JSON"))?;
    Ok(value)
}

/// Reads a JSON body through the guard (unless a guard layer already did).
async fn json_body(parts: &Parts, body: axum::body::Body) -> Result<Bytes, Rejection> {
    if parts.extensions.get::<JsonChecked>().is_some() {
        // Already read and checked by JsonGuardLayer: the body is the checked bytes.
        return body
            .collect()
            .await
            .map(|c| c.to_bytes())
            .map_err(|_| Rejection::bad_request(codes::BODY_READ_FAILED, "the request body could not be read"));
    }
    let limits = parts.extensions.get::<JsonLimits>().copied().unwrap_or_default();
    guard::check_head(&parts.headers, &limits)?;
    let (bytes, _) = guard::read_json(body, &limits).await?;
    Ok(bytes)
}

async fn extract_json<T: DeserializeOwned>(
    req: Request,
    check: impl FnOnce(&T) -> Result<(), Rejection>,
) -> Result<T, Rejection> {
    let (parts, body) = req.into_parts();
    let run = async {
        let bytes = json_body(&parts, body).await?;
        let value: T = from_json(&bytes)?;
        check(&value)?;
        Ok(value)
    };
    match run.await {
        Ok(v) => {
            allow(&parts.extensions, "json");
            Ok(v)
        }
        Err(r) => Err(deny(&parts.extensions, "json", r)),
    }
}

fn from_urlencoded<T: DeserializeOwned>(input: &[u8]) -> Result<T, Rejection> {
    let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(input));
    serde_path_to_error::deserialize(de)
        .map_err(|e| failed(vec![report::from_serde_path(e.path(), &e.inner().to_string())]))
}

fn extract_query<T: DeserializeOwned>(
    parts: &Parts,
    check: impl FnOnce(&T) -> Result<(), Rejection>,
) -> Result<T, Rejection> {
    let q = parts.uri.query().unwrap_or("");
    let res = from_urlencoded::<T>(q.as_bytes()).and_then(|v| check(&v).map(|()| v));
    match res {
        Ok(v) => {
            allow(&parts.extensions, "query");
            Ok(v)
        }
        Err(r) => Err(deny(&parts.extensions, "query", r)),
    }
}

fn is_form(headers: &http::HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"))
}

async fn extract_form<T: DeserializeOwned>(
    req: Request,
    check: impl FnOnce(&T) -> Result<(), Rejection>,
) -> Result<T, Rejection> {
    let (parts, body) = req.into_parts();
    if parts.method == Method::GET || parts.method == Method::HEAD {
        return extract_query(&parts, check);
    }
    let run = async {
        if !is_form(&parts.headers) {
            return Err(Rejection::unsupported_media_type(
                "the request body must be application/x-www-form-urlencoded",
            ));
        }
        let limit = parts
            .extensions
            .get::<JsonLimits>()
            .copied()
            .unwrap_or_default()
            .max_body_bytes;
        let bytes = Limited::new(body, limit)
            .collect()
            .await
            .map(|c| c.to_bytes())
            .map_err(|e| {
                if e.downcast_ref::<LengthLimitError>().is_some() {
                    guard::too_large()
                } else {
                    Rejection::bad_request(codes::BODY_READ_FAILED, "the request body could not be read")
                }
            })?;
        let value: T = from_urlencoded(&bytes)?;
        check(&value)?;
        Ok(value)
    };
    match run.await {
        Ok(v) => {
            allow(&parts.extensions, "form");
            Ok(v)
        }
        Err(r) => Err(deny(&parts.extensions, "form", r)),
    }
}

fn path_rejection(r: &PathRejection) -> Rejection {
    use axum::extract::path::ErrorKind as K;
    match r {
        PathRejection::FailedToDeserializePathParams(e) => {
            let mut pointer = String::new();
            match e.kind() {
                K::ParseErrorAtKey { key, .. }
                | K::InvalidUtf8InPathParam { key }
                | K::DeserializeError { key, .. } => report::push_pointer_token(&mut pointer, key),
                K::ParseErrorAtIndex { index, .. } => report::push_pointer_token(&mut pointer, &index.to_string()),
                _ => {}
            }
            failed(vec![FieldError::new(
                pointer,
                "invalid_type",
                "does not have the expected type or format",
            )])
        }
        _ => Rejection::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            codes::PATH_PARAMS_MISSING,
            "the request could not be processed",
        ),
    }
}

async fn extract_path<T, S>(
    parts: &mut Parts,
    state: &S,
    check: impl FnOnce(&T) -> Result<(), Rejection>,
) -> Result<T, Rejection>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    let res = match Path::<T>::from_request_parts(parts, state).await {
        Ok(Path(v)) => check(&v).map(|()| v),
        Err(r) => Err(path_rejection(&r)),
    };
    match res {
        Ok(v) => {
            allow(&parts.extensions, "path");
            Ok(v)
        }
        Err(r) => Err(deny(&parts.extensions, "path", r)),
    }
}

macro_rules! extractors {
    ($wrapper:ident, $check:ident, [$($bound:tt)+]) => {
        impl<T, S> FromRequest<S> for $wrapper<Json<T>>
        where
            T: DeserializeOwned + $($bound)+,
            S: Send + Sync,
        {
            type Rejection = Rejection;
            async fn from_request(req: Request, _state: &S) -> Result<Self, Rejection> {
                extract_json(req, $check::<T>).await.map(|v| $wrapper(Json(v)))
            }
        }

        impl<T, S> FromRequest<S> for $wrapper<Form<T>>
        where
            T: DeserializeOwned + $($bound)+,
            S: Send + Sync,
        {
            type Rejection = Rejection;
            async fn from_request(req: Request, _state: &S) -> Result<Self, Rejection> {
                extract_form(req, $check::<T>).await.map(|v| $wrapper(Form(v)))
            }
        }

        impl<T, S> FromRequestParts<S> for $wrapper<Query<T>>
        where
            T: DeserializeOwned + $($bound)+,
            S: Send + Sync,
        {
            type Rejection = Rejection;
            async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Rejection> {
                extract_query(parts, $check::<T>).map(|v| $wrapper(Query(v)))
            }
        }

        impl<T, S> FromRequestParts<S> for $wrapper<Path<T>>
        where
            T: DeserializeOwned + Send + $($bound)+,
            S: Send + Sync,
        {
            type Rejection = Rejection;
            async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Rejection> {
                extract_path(parts, state, $check::<T>).await.map(|v| $wrapper(Path(v)))
            }
        }
    };
}

extractors!(Valid, validate_with_validator, [validator::Validate]);

#[cfg(feature = "garde")]
extractors!(Garde, validate_with_garde, [garde::Validate<Context: Default>]);

/// The reason code of a rejection produced by these extractors, for matching in tests and handlers.
pub fn is_validation_failure(r: &Rejection) -> bool {
    r.code() == ReasonCode::VALIDATION_FAILED
}
