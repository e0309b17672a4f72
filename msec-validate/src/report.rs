//! [`FieldError`]: one entry of the `errors` member of a 422 problem, and the mappings from validator's and
//! garde's reports to it.

use std::borrow::Cow;
use std::fmt::Write as _;

use msec_core::{ReasonCode, Rejection};
use serde::Serialize;
use serde_json::Value;

/// At most this many entries go into a problem's `errors` member (a document can violate a rule once per
/// element; the client needs the first few, not a response as large as its request).
pub const MAX_ERRORS: usize = 32;

/// One violation: where (an RFC 6901 JSON pointer into the input), which rule (a stable code such as
/// `required`, `length`, `type`), and a fixed, client-safe sentence. The rejected value is never included.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// JSON pointer to the offending member (`""` for the whole document, `/items/0/name`).
    pub pointer: String,
    /// The rule that failed.
    pub code: Cow<'static, str>,
    /// What is wrong, without the value.
    pub message: Cow<'static, str>,
}

impl FieldError {
    /// A field error.
    pub fn new(
        pointer: impl Into<String>,
        code: impl Into<Cow<'static, str>>,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            pointer: pointer.into(),
            code: code.into(),
            message: message.into(),
        }
    }
}

/// Appends one escaped RFC 6901 reference token (`~` → `~0`, `/` → `~1`).
pub fn push_pointer_token(pointer: &mut String, token: &str) {
    pointer.push('/');
    for c in token.chars() {
        match c {
            '~' => pointer.push_str("~0"),
            '/' => pointer.push_str("~1"),
            c => pointer.push(c),
        }
    }
}

/// The 422 rejection listing `errors` (at most [`MAX_ERRORS`]) under `code`.
pub fn violations(code: ReasonCode, detail: &'static str, mut errors: Vec<FieldError>) -> Rejection {
    errors.truncate(MAX_ERRORS);
    let list = serde_json::to_value(&errors).unwrap_or(Value::Array(Vec::new()));
    Rejection::unprocessable(code, detail).with_member("errors", list)
}

/// Maps validator's nested [`ValidationErrors`](validator::ValidationErrors) to field errors with JSON pointers
/// (`/address/zip`, `/items/2/name`; struct-level `__all__` errors point at their struct), sorted by pointer.
///
/// The `code` is validator's (`length`, `range`, `email`, `required`, ... or a custom one), the message is the
/// rule's own message when it has one, or else a fixed sentence built from the rule's bounds (`min`, `max`,
/// `equal`) — never from the `value` parameter, which holds the rejected input.
///
/// ```
/// use validator::Validate;
///
/// #[derive(Validate)]
/// struct Signup {
///     #[validate(length(min = 3, max = 20))]
///     name: String,
///     #[validate(email)]
///     email: String,
/// }
/// let errs = Signup { name: "x".into(), email: "secret-not-an-email".into() }.validate().unwrap_err();
/// let list = msec_validate::report::from_validator(&errs);
/// assert_eq!(list[0].pointer, "/email");
/// assert_eq!(list[0].code, "email");
/// assert_eq!(list[1].pointer, "/name");
/// assert_eq!(list[1].message, "must be between 3 and 20 characters long");
/// assert!(list.iter().all(|e| !e.message.contains("secret")));
/// ```
pub fn from_validator(errors: &validator::ValidationErrors) -> Vec<FieldError> {
    let mut out = Vec::new();
    walk_validator(errors, &mut String::new(), &mut out);
    out.sort_by(|a, b| a.pointer.cmp(&b.pointer).then_with(|| a.code.cmp(&b.code)));
    out
}

fn walk_validator(errors: &validator::ValidationErrors, prefix: &mut String, out: &mut Vec<FieldError>) {
    use validator::ValidationErrorsKind as K;
    for (field, kind) in errors.errors() {
        let len = prefix.len();
        if field != "__all__" {
            push_pointer_token(prefix, field);
        }
        match kind {
            K::Field(list) => {
                for e in list {
                    out.push(FieldError {
                        pointer: prefix.clone(),
                        code: e.code.clone(),
                        message: match &e.message {
                            Some(m) => m.clone(),
                            None => Cow::Owned(validator_message(e)),
                        },
                    });
                }
            }
            K::Struct(inner) => walk_validator(inner, prefix, out),
            K::List(items) => {
                for (i, inner) in items {
                    let l = prefix.len();
                    let _ = write!(prefix, "/{i}");
                    walk_validator(inner, prefix, out);
                    prefix.truncate(l);
                }
            }
        }
        prefix.truncate(len);
    }
}

fn bound(e: &validator::ValidationError, name: &str) -> Option<String> {
    match e.params.get(name)? {
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A sentence for a validator error from its code and bounds only.
fn validator_message(e: &validator::ValidationError) -> String {
    let (min, max, equal) = (bound(e, "min"), bound(e, "max"), bound(e, "equal"));
    match &*e.code {
        "length" => match (equal, min, max) {
            (Some(eq), _, _) => format!("must be exactly {eq} long"),
            (None, Some(a), Some(b)) => format!("must be between {a} and {b} characters long"),
            (None, Some(a), None) => format!("must be at least {a} long"),
            (None, None, Some(b)) => format!("must be at most {b} long"),
            _ => "has an invalid length".into(),
        },
        "range" => match (min, max) {
            (Some(a), Some(b)) => format!("must be between {a} and {b}"),
            (Some(a), None) => format!("must be at least {a}"),
            (None, Some(b)) => format!("must be at most {b}"),
            _ => "is out of range".into(),
        },
        "email" => "must be an email address".into(),
        "url" => "must be a URL".into(),
        "required" => "is required".into(),
        "regex" => "has an invalid format".into(),
        "contains" => "does not contain the required text".into(),
        "does_not_contain" => "contains forbidden text".into(),
        "must_match" => "does not match the other field".into(),
        "credit_card" => "must be a credit card number".into(),
        "non_control_character" => "must not contain control characters".into(),
        "ip" | "ipv4" | "ipv6" => "must be an IP address".into(),
        _ => "is invalid".into(),
    }
}

/// Maps a serde deserialisation error (with its path) to a field error: a missing field points at the field
/// (`required`), everything else at the value that did not fit (`invalid_type`, `unknown_field`). The serde
/// message is not echoed: it may quote the input.
pub fn from_serde_path(path: &serde_path_to_error::Path, message: &str) -> FieldError {
    let mut pointer = String::new();
    for seg in path.iter() {
        use serde_path_to_error::Segment as S;
        match seg {
            S::Seq { index } => {
                let _ = write!(pointer, "/{index}");
            }
            S::Map { key } => push_pointer_token(&mut pointer, key),
            S::Enum { variant } => push_pointer_token(&mut pointer, variant),
            S::Unknown => {}
        }
    }
    if let Some(rest) = message.strip_prefix("missing field `") {
        if let Some(field) = rest.split('`').next() {
            push_pointer_token(&mut pointer, field);
        }
        return FieldError::new(pointer, "required", "is required");
    }
    if message.starts_with("unknown field") {
        return FieldError::new(pointer, "unknown_field", "is not an accepted field");
    }
    if message.starts_with("unknown variant") {
        return FieldError::new(pointer, "unknown_variant", "is not one of the accepted values");
    }
    FieldError::new(pointer, "invalid_type", "does not have the expected type or format")
}

/// Maps a garde [`Report`](garde::Report) to field errors. garde has no error codes: every entry gets the code
/// `invalid` and garde's message (its built-in messages name the rule's bounds, not the value; keep custom
/// rules' messages free of the input too).
#[cfg(feature = "garde")]
pub fn from_garde(report: &garde::Report) -> Vec<FieldError> {
    let mut out: Vec<FieldError> = report
        .iter()
        .map(|(path, error)| {
            let mut pointer = String::new();
            for (kind, component) in path.__iter().rev() {
                match kind {
                    garde::error::Kind::None => {}
                    garde::error::Kind::Key | garde::error::Kind::Index => {
                        push_pointer_token(&mut pointer, component.as_str());
                    }
                }
            }
            FieldError::new(pointer, "invalid", error.message().to_owned())
        })
        .collect();
    out.sort_by(|a, b| a.pointer.cmp(&b.pointer));
    out
}
