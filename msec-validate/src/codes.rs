//! The stable reason codes of msec-validate. They appear as the problem+json `code`, in `grpc-message`, and in
//! the `validate` [`Decision`](msec_core::Decision)s; they are never renamed.

use msec_core::ReasonCode;

// --- JSON guard -------------------------------------------------------------------------------------------

/// 400: the body is not JSON (RFC 8259), is empty, or ends early. The problem carries the byte `offset`.
pub const JSON_SYNTAX: ReasonCode = ReasonCode::new("json_syntax");
/// 400: a JSON string is not UTF-8. The problem carries the byte `offset` of the bad sequence.
pub const INVALID_UTF8: ReasonCode = ReasonCode::new("invalid_utf8");
/// 400: containers are nested deeper than the limit.
pub const JSON_TOO_DEEP: ReasonCode = ReasonCode::new("json_too_deep");
/// 413: an object has more members than the limit.
pub const JSON_TOO_MANY_KEYS: ReasonCode = ReasonCode::new("json_too_many_keys");
/// 413: an array has more elements than the limit.
pub const JSON_ARRAY_TOO_LONG: ReasonCode = ReasonCode::new("json_array_too_long");
/// 413: a string or member name is longer than the limit.
pub const JSON_STRING_TOO_LONG: ReasonCode = ReasonCode::new("json_string_too_long");
/// 413: the document has more values than the limit.
pub const JSON_TOO_MANY_NODES: ReasonCode = ReasonCode::new("json_too_many_nodes");
/// 400: a number does not fit the deserialiser's types (`1e400`).
pub const JSON_NUMBER_OUT_OF_RANGE: ReasonCode = ReasonCode::new("json_number_out_of_range");
/// 400: the request body could not be read (the client went away or sent a broken body).
pub const BODY_READ_FAILED: ReasonCode = ReasonCode::new("body_read_failed");
/// 413: the body is larger than the limit (msec-core's code).
pub const PAYLOAD_TOO_LARGE: ReasonCode = ReasonCode::PAYLOAD_TOO_LARGE;
/// 415: the body is not `application/json` or `application/*+json` (msec-core's code).
pub const UNSUPPORTED_MEDIA_TYPE: ReasonCode = ReasonCode::UNSUPPORTED_MEDIA_TYPE;
/// Allow: the body passed the JSON guard.
pub const JSON_ACCEPTED: ReasonCode = ReasonCode::new("json_accepted");

// --- schemas and extractors -------------------------------------------------------------------------------

/// 422: the body violates the route's JSON Schema. The problem carries `errors: [{pointer, code, message}]`.
pub const SCHEMA_VIOLATION: ReasonCode = ReasonCode::new("schema_violation");
/// Allow: the body satisfies the route's JSON Schema.
pub const SCHEMA_VALID: ReasonCode = ReasonCode::new("schema_valid");
/// 422: the input does not deserialise into the handler's type, or fails its `Validate` rules. The problem
/// carries `errors: [{pointer, code, message}]` (msec-core's code).
pub const VALIDATION_FAILED: ReasonCode = ReasonCode::VALIDATION_FAILED;
/// Allow: the input deserialised and passed its `Validate` rules.
pub const INPUT_VALID: ReasonCode = ReasonCode::new("input_valid");
/// 500: a `Valid<Path<T>>` extractor is used on a route without path parameters (a programming error).
pub const PATH_PARAMS_MISSING: ReasonCode = ReasonCode::new("path_params_missing");

// --- request firewall -------------------------------------------------------------------------------------

/// 400: the path contains an encoded slash (`%2F`).
pub const ENCODED_SLASH: ReasonCode = ReasonCode::new("encoded_slash");
/// 400: the path contains a backslash, raw or encoded (`%5C`).
pub const BACKSLASH: ReasonCode = ReasonCode::new("backslash");
/// 400: the path has a `.` or `..` segment, raw or percent-encoded in any case mix (`%2e%2E`, `.%2e`).
pub const DOT_SEGMENT: ReasonCode = ReasonCode::new("dot_segment");
/// 400: the path contains `;` (raw or `%3B`): matrix parameters hide path content from route matching.
pub const SEMICOLON: ReasonCode = ReasonCode::new("semicolon");
/// 400: the path contains an encoded percent sign (`%25`), the mark of double encoding.
pub const ENCODED_PERCENT: ReasonCode = ReasonCode::new("encoded_percent");
/// 400: the path has an empty segment (`//`).
pub const DOUBLE_SLASH: ReasonCode = ReasonCode::new("double_slash");
/// 400: a NUL byte (`%00`) in the path or query.
pub const NULL_BYTE: ReasonCode = ReasonCode::new("null_byte");
/// 400: a control character (CR, LF, TAB, DEL, ...) in the path or query (percent-decoded) or in a header
/// value.
pub const CONTROL_CHARACTER: ReasonCode = ReasonCode::new("control_character");
/// 400: the request target is longer than the limit.
pub const URI_TOO_LONG: ReasonCode = ReasonCode::new("uri_too_long");
/// 400: the request has more header fields than the limit.
pub const TOO_MANY_HEADERS: ReasonCode = ReasonCode::new("too_many_headers");
/// 400: one header field (name + value) is larger than the limit.
pub const HEADER_TOO_LARGE: ReasonCode = ReasonCode::new("header_too_large");
/// 400: the header fields together are larger than the limit.
pub const HEADERS_TOO_LARGE: ReasonCode = ReasonCode::new("headers_too_large");
/// 400: the method is not one of the allowed methods.
pub const UNKNOWN_METHOD: ReasonCode = ReasonCode::new("unknown_method");
/// Allow: the request passed every firewall rule.
pub const REQUEST_CLEAN: ReasonCode = ReasonCode::new("request_clean");
