//! gRPC validation (feature `tonic`): validate decoded prost messages with `validator::Validate` and answer
//! `INVALID_ARGUMENT` with a `google.rpc.BadRequest` listing the field violations (in `grpc-status-details-bin`,
//! readable with `tonic_types::StatusExt::get_details_bad_request`).
//!
//! prost generates the message types; have it derive `Validate` too, with validation rules per field:
//!
//! ```ignore
//! // build.rs
//! tonic_prost_build::configure()
//!     .type_attribute("shop.v1.CreateOrder", "#[derive(validator::Validate)]")
//!     .field_attribute("shop.v1.CreateOrder.sku", "#[validate(length(min = 1, max = 32))]")
//!     .compile_protos(&["proto/shop.proto"], &["proto"])?;
//! ```
//!
//! and validate at the top of the handler:
//!
//! ```
//! use msec_validate::grpc::ValidateRequest;
//! # #[derive(validator::Validate)] struct CreateOrder { #[validate(length(min = 1))] sku: String }
//! # struct Reply;
//!
//! async fn create(request: tonic::Request<CreateOrder>) -> Result<tonic::Response<Reply>, tonic::Status> {
//!     let order = request.validated()?.into_inner();
//!     # let _ = order;
//!     Ok(tonic::Response::new(Reply))
//! }
//! ```
//!
//! Field paths follow `google.rpc.BadRequest`'s convention (`items[2].sku`); each violation carries validator's
//! code, upper-cased, as its `reason` (`LENGTH`, `RANGE`, `EMAIL`) and a fixed description. The rejected values are
//! never echoed. A `validate` [`Decision`](msec_core::Decision) is recorded in the request's security context.

use msec_core::context::{self, Outcome};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

use crate::codes;
use crate::report::{self, FieldError, MAX_ERRORS};

/// The `grpc-message` of a validation failure.
pub const MESSAGE: &str = "validation_failed: the request message is invalid";

/// Converts a JSON pointer (`/items/2/sku`) to a protobuf field path (`items[2].sku`).
pub fn field_path(pointer: &str) -> String {
    let mut out = String::with_capacity(pointer.len());
    for token in pointer.split('/').skip(1) {
        let token = token.replace("~1", "/").replace("~0", "~");
        if !token.is_empty() && token.bytes().all(|b| b.is_ascii_digit()) {
            out.push('[');
            out.push_str(&token);
            out.push(']');
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&token);
        }
    }
    out
}

/// The `INVALID_ARGUMENT` status for `errors`, with a `google.rpc.BadRequest` detail.
pub fn status(errors: &[FieldError]) -> Status {
    let violations: Vec<FieldViolation> = errors
        .iter()
        .take(MAX_ERRORS)
        .map(|e| {
            let mut v = FieldViolation::new(field_path(&e.pointer), e.message.clone());
            v.reason = e.code.to_ascii_uppercase();
            v
        })
        .collect();
    Status::with_error_details(
        Code::InvalidArgument,
        MESSAGE,
        ErrorDetails::with_bad_request(violations),
    )
}

/// Validates a decoded message: `Ok(())`, or the `INVALID_ARGUMENT` status listing the violations.
///
/// ```
/// use validator::Validate;
/// #[derive(Validate)]
/// struct Say { #[validate(length(min = 1))] message: String }
///
/// let status = msec_validate::grpc::validate(&Say { message: String::new() }).unwrap_err();
/// assert_eq!(status.code(), tonic::Code::InvalidArgument);
/// ```
pub fn validate<T: validator::Validate>(message: &T) -> Result<(), Status> {
    message.validate().map_err(|e| status(&report::from_validator(&e)))
}

/// Validation of a received `tonic::Request`.
pub trait ValidateRequest: Sized {
    /// Validates the message: the request back, or `INVALID_ARGUMENT` with field violations. Records a
    /// `validate` decision in the request's security context.
    fn validated(self) -> Result<Self, Status>;
}

impl<T: validator::Validate> ValidateRequest for tonic::Request<T> {
    fn validated(self) -> Result<Self, Status> {
        match self.get_ref().validate() {
            Ok(()) => {
                context::record_with(self.extensions(), "validate", Outcome::Allow, codes::INPUT_VALID, |d| {
                    d.detail("input", "grpc");
                });
                Ok(self)
            }
            Err(e) => {
                let errors = report::from_validator(&e);
                context::record_with(
                    self.extensions(),
                    "validate",
                    Outcome::Deny,
                    codes::VALIDATION_FAILED,
                    |d| {
                        d.detail("input", "grpc");
                        d.detail("errors", errors.len().to_string());
                    },
                );
                Err(status(&errors))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(field_path(""), "");
        assert_eq!(field_path("/sku"), "sku");
        assert_eq!(field_path("/items/2/sku"), "items[2].sku");
        assert_eq!(field_path("/a~1b/c"), "a/b.c");
    }
}
