//! [`JwtAuthenticator`]: finds a JWT in a request and verifies it with a [`JwtValidator`].

use super::compact::looks_like_jws;
use super::validator::{JwtValidator, Lookup};
use crate::authenticator::{Attempt, Authenticator, AuthnFuture, RequestHead};
use crate::error::{AuthnError, AuthnErrorKind, ConfigError};
use crate::source::{Extracted, TokenSource};

/// Finds a JWT in a request (by default `Authorization: Bearer`) and verifies it.
///
/// A bearer value that is not shaped like a JWS is [declined](Attempt::Declined) as `malformed_token`, so a later
/// authenticator in an [`AuthnChain`](crate::AuthnChain) (API keys) may still claim it.
///
/// ```
/// use msec_authn::{JwtAuthenticator, TokenSource, jwt::{Issuer, JwtValidator}};
/// # let validator = JwtValidator::builder()
/// #     .issuer(Issuer::new("https://id.example.com").audience("api")
/// #         .pem_key(Some("k"), jsonwebtoken::Algorithm::ES256, msec_test_support::TestKey::es256().public_pem.as_bytes()))
/// #     .build()?;
/// let authn = JwtAuthenticator::new(validator).cookie("access_token")?;
/// # let _ = authn;
/// # Ok::<(), msec_authn::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
pub struct JwtAuthenticator {
    validator: JwtValidator,
    sources: Vec<TokenSource>,
}

impl JwtAuthenticator {
    /// Reads `Authorization: Bearer` tokens.
    pub fn new(validator: JwtValidator) -> Self {
        Self {
            validator,
            sources: vec![TokenSource::bearer()],
        }
    }

    /// Replaces the token sources (tried in order; the first that has a value decides).
    #[must_use]
    pub fn sources<I: IntoIterator<Item = TokenSource>>(mut self, sources: I) -> Self {
        self.sources = sources.into_iter().collect();
        self
    }

    /// Also reads tokens from header `name` (whole value).
    pub fn header(mut self, name: &str) -> Result<Self, ConfigError> {
        self.sources.push(TokenSource::header(name)?);
        Ok(self)
    }

    /// Also reads tokens from cookie `name`.
    pub fn cookie(mut self, name: &str) -> Result<Self, ConfigError> {
        self.sources.push(TokenSource::cookie(name)?);
        Ok(self)
    }

    /// **Dangerous**: also reads tokens from query parameter `name` (see
    /// [`TokenSource::danger_query_parameter`]).
    pub fn danger_query_parameter(mut self, name: &str) -> Result<Self, ConfigError> {
        self.sources.push(TokenSource::danger_query_parameter(name)?);
        Ok(self)
    }

    /// The validator.
    pub fn validator(&self) -> &JwtValidator {
        &self.validator
    }
}

impl Authenticator for JwtAuthenticator {
    fn name(&self) -> &'static str {
        "jwt"
    }

    fn authenticate(&self, head: &RequestHead<'_>) -> Attempt {
        for source in &self.sources {
            match source.extract(head) {
                Extracted::None => {}
                Extracted::Malformed(why) => {
                    return Attempt::Declined(AuthnError::new(AuthnErrorKind::MalformedToken, why));
                }
                Extracted::Found(raw) => {
                    // The cache first: a hit needs neither the shape check nor any parsing.
                    let digest = match self.validator.lookup(raw) {
                        Lookup::Hit(a) => return Attempt::Claimed(AuthnFuture::ready(Ok(a))),
                        Lookup::Refused(e) => return Attempt::Declined(e),
                        Lookup::Miss(digest) => digest,
                    };
                    // Only base64url symbols and two dots: ASCII, hence UTF-8.
                    return match std::str::from_utf8(raw) {
                        Ok(token) if looks_like_jws(token) => Attempt::Claimed(self.validator.verify(token, digest)),
                        _ => Attempt::Declined(AuthnError::new(
                            AuthnErrorKind::MalformedToken,
                            "not a compact JWS (three base64url segments)",
                        )),
                    };
                }
            }
        }
        Attempt::Absent
    }
}
