//! axum extractors (feature `axum`): [`Principal`], `Option<Principal>`, [`PeerIdentity`] and [`ClientAddr`].
//!
//! ```
//! use axum::{routing::get, Router};
//! use msec_core::{ClientAddr, Principal};
//!
//! async fn me(p: Principal, from: Option<ClientAddr>) -> String {
//!     format!("{} from {:?}", p.subject, from.map(|a| a.ip()))
//! }
//! let app: Router = Router::new().route("/me", get(me));
//! # let _ = app;
//! ```
//!
//! A missing principal answers 401 `missing_credentials` (problem+json with a Bearer challenge) and a missing
//! peer identity 403 `missing_peer_identity`. `ClientAddr` falls back to axum's `ConnectInfo<SocketAddr>`; when
//! neither is present it answers 400 `client_addr_unknown` — use `Option<ClientAddr>` where the address is
//! optional. [`Rejection`] itself implements `IntoResponse` (problem+json).

use std::sync::Arc;

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::response::{IntoResponse, Response};
use http::request::Parts;

use crate::context::ReasonCode;
use crate::identity::{ClientAddr, PeerIdentity, Principal};
use crate::rejection::Rejection;

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        self.into_http_response::<axum::body::Body>().map(axum::body::Body::new)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = Rejection;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Rejection> {
        parts
            .extensions
            .get::<Arc<Principal>>()
            .map(|p| Principal::clone(p))
            .ok_or_else(Rejection::missing_credentials)
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for Principal {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Arc<Principal>>().map(|p| Principal::clone(p)))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for PeerIdentity {
    type Rejection = Rejection;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Rejection> {
        parts
            .extensions
            .get::<Arc<PeerIdentity>>()
            .map(|p| PeerIdentity::clone(p))
            .ok_or_else(|| {
                Rejection::forbidden(
                    ReasonCode::MISSING_PEER_IDENTITY,
                    "this resource requires a client certificate",
                )
            })
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for PeerIdentity {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<Arc<PeerIdentity>>()
            .map(|p| PeerIdentity::clone(p)))
    }
}

/// The reason code when a handler asks for a [`ClientAddr`] that no layer provided.
pub const CLIENT_ADDR_UNKNOWN: ReasonCode = ReasonCode::new("client_addr_unknown");

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = Rejection;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Rejection> {
        ClientAddr::from_extensions(&parts.extensions)
            .ok_or_else(|| Rejection::bad_request(CLIENT_ADDR_UNKNOWN, "the client address is unknown"))
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
        Ok(ClientAddr::from_extensions(&parts.extensions))
    }
}
