//! gRPC awareness without a tonic dependency: recognising gRPC requests and mapping HTTP statuses to gRPC
//! status codes for trailers-only rejections.

use http::header::CONTENT_TYPE;
use http::{HeaderMap, StatusCode};

/// The gRPC status codes msec produces (a subset of `google.rpc.Code`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GrpcCode {
    /// 2
    Unknown = 2,
    /// 3
    InvalidArgument = 3,
    /// 4
    DeadlineExceeded = 4,
    /// 5
    NotFound = 5,
    /// 6
    AlreadyExists = 6,
    /// 7
    PermissionDenied = 7,
    /// 8
    ResourceExhausted = 8,
    /// 9
    FailedPrecondition = 9,
    /// 10
    Aborted = 10,
    /// 12
    Unimplemented = 12,
    /// 13
    Internal = 13,
    /// 14
    Unavailable = 14,
    /// 16
    Unauthenticated = 16,
}

impl GrpcCode {
    /// The numeric code.
    pub fn as_i32(self) -> i32 {
        self as i32
    }

    /// The gRPC code for an HTTP status, following the mapping a client would expect for a rejection:
    /// 400/413/415/422 → INVALID_ARGUMENT, 401 → UNAUTHENTICATED, 403 → PERMISSION_DENIED,
    /// 429 → RESOURCE_EXHAUSTED, 503 → UNAVAILABLE, and so on.
    pub fn from_http(status: StatusCode) -> Self {
        match status.as_u16() {
            400 | 411 | 413 | 414 | 415 | 416 | 422 | 431 => Self::InvalidArgument,
            401 => Self::Unauthenticated,
            403 => Self::PermissionDenied,
            404 => Self::NotFound,
            405 | 501 => Self::Unimplemented,
            408 | 504 => Self::DeadlineExceeded,
            409 => Self::Aborted,
            412 | 428 => Self::FailedPrecondition,
            429 => Self::ResourceExhausted,
            502 | 503 => Self::Unavailable,
            500 => Self::Internal,
            _ => Self::Unknown,
        }
    }
}

/// True when the request is gRPC (or gRPC-Web): its `content-type` starts with `application/grpc`.
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .map(|v| {
            let b = v.as_bytes();
            b.len() >= 16 && b[..16].eq_ignore_ascii_case(b"application/grpc")
        })
        .unwrap_or(false)
}

/// Percent-encodes a `grpc-message` value as the gRPC HTTP/2 protocol requires: every byte outside
/// `0x20..=0x7E`, and `%` itself, becomes `%XX`.
pub fn encode_message(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    for &b in msg.as_bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping() {
        assert_eq!(GrpcCode::from_http(StatusCode::UNAUTHORIZED).as_i32(), 16);
        assert_eq!(GrpcCode::from_http(StatusCode::FORBIDDEN).as_i32(), 7);
        assert_eq!(GrpcCode::from_http(StatusCode::TOO_MANY_REQUESTS).as_i32(), 8);
        for s in [400, 413, 415, 422] {
            assert_eq!(GrpcCode::from_http(StatusCode::from_u16(s).unwrap()).as_i32(), 3);
        }
        assert_eq!(GrpcCode::from_http(StatusCode::SERVICE_UNAVAILABLE).as_i32(), 14);
    }

    #[test]
    fn detection() {
        let mut h = HeaderMap::new();
        assert!(!is_grpc(&h));
        h.insert(CONTENT_TYPE, "application/grpc+proto".parse().unwrap());
        assert!(is_grpc(&h));
        h.insert(CONTENT_TYPE, "Application/GRPC".parse().unwrap());
        assert!(is_grpc(&h));
        h.insert(CONTENT_TYPE, "application/json".parse().unwrap());
        assert!(!is_grpc(&h));
    }

    #[test]
    fn message_encoding() {
        assert_eq!(encode_message("100% ok\n"), "100%25 ok%0A");
        assert_eq!(encode_message("café"), "caf%C3%A9");
    }
}
