//! The audit event schema (version 1) and the events application code emits.
//!
//! Every record is one JSON object: the chain members (`v`, `seq`, `prev`, `hash`, see [`chain`](crate::chain))
//! around the event members. The full schema is checked into the crate as
//! [`RECORD_SCHEMA`](crate::RECORD_SCHEMA) (`schema/audit-record.v1.json`) and the tests validate every kind of
//! record against it.
//!
//! | `kind`        | written by                  | main members                                                        |
//! |---------------|-----------------------------|---------------------------------------------------------------------|
//! | `request`     | [`AuditLayer`](crate::AuditLayer) | `actor`, `action`, `outcome`, `decisions`, `duration_us`, `request`/`response` captures |
//! | `data_access` | [`DataAccess`] via [`AuditLog::emit`](crate::AuditLog::emit) | `actor`, `access` (operation, resource type and id, fields, purpose) |
//! | `alert`       | the threat [`detect`](crate::detect)ors | `alert` (detector, key, count, threshold, window)             |
//! | `gap`         | the writer                  | `dropped` and `refused` counts                                      |
//! | `checkpoint`  | the writer                  | `log`, `reason`, `chain`, `key`, `sig`                              |

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use msec_core::identity::{AuthMethod, ClientAddr, PeerIdentity, Principal, PrincipalKind};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::chain::RecordKind;
use crate::detect::Observation;
use crate::util::{EventId, Timestamp, bounded};

/// Longest string kept for identity fields taken from credentials (subject, issuer, ...).
pub(crate) const MAX_IDENTITY_LEN: usize = 256;

/// Who acted.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Actor {
    /// The principal's subject.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The token issuer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// `user`, `service` or `api_key`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<PrincipalKind>,
    /// The tenant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The OAuth client id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The token id (`jti`); token replay detection keys on it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_id: Option<String>,
    /// The API key id (never the secret).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key_id: Option<String>,
    /// How the principal authenticated: `jwt`, `api_key`, `introspection`, `mtls` or another name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<String>,
    /// The TLS peer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<PeerActor>,
    /// The client address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<ClientActor>,
}

/// An [`Actor`] borrowed from a principal, for the audit layer's records: serialises exactly as the `Actor`
/// the same principal, peer and client make, without copying the principal's strings.
#[derive(Serialize)]
pub(crate) struct ActorView<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) subject: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    issuer: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<PrincipalKind>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tenant: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_id: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) token_id: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    api_key_id: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    auth: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    peer: Option<PeerActor>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) client: Option<ClientActor>,
}

impl<'a> ActorView<'a> {
    pub(crate) fn new(
        principal: Option<&'a Principal>,
        peer: Option<&PeerIdentity>,
        client: Option<ClientAddr>,
    ) -> Self {
        let b = |s: &'a str| bounded_cow(s, MAX_IDENTITY_LEN);
        let mut v = Self {
            subject: None,
            issuer: None,
            kind: None,
            tenant: None,
            client_id: None,
            token_id: None,
            api_key_id: None,
            auth: None,
            peer: None,
            client: client.map(|addr| ClientActor {
                ip: addr.ip(),
                port: addr.port(),
            }),
        };
        if let Some(p) = principal {
            v.subject = Some(b(&p.subject));
            v.issuer = p.issuer.as_deref().map(b);
            v.kind = Some(p.kind);
            v.tenant = p.tenant.as_deref().map(b);
            v.client_id = p.client_id.as_deref().map(b);
            v.token_id = p.token_id.as_deref().map(b);
            let (auth, key) = match &p.auth {
                AuthMethod::Jwt { .. } => (Cow::Borrowed("jwt"), None),
                AuthMethod::ApiKey { key_id } => (Cow::Borrowed("api_key"), Some(b(key_id))),
                AuthMethod::Introspection => (Cow::Borrowed("introspection"), None),
                AuthMethod::Mtls => (Cow::Borrowed("mtls"), None),
                AuthMethod::Other(name) => (b(name), None),
                _ => (Cow::Borrowed("other"), None),
            };
            v.auth = Some(auth);
            v.api_key_id = key;
        }
        if let Some(peer) = peer {
            let mut a = Actor::default();
            a.set_peer(peer);
            v.peer = a.peer;
        }
        v
    }
}

/// `s` borrowed when it fits in `max` bytes, else cut like [`bounded`].
fn bounded_cow(s: &str, max: usize) -> Cow<'_, str> {
    if s.len() <= max {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(bounded(s, max))
    }
}

/// The TLS peer of a request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct PeerActor {
    /// The SPIFFE ID.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spiffe_id: Option<String>,
    /// The subject DN.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub subject: String,
    /// SHA-256 of the certificate, hex.
    pub fingerprint: String,
}

/// Where the request came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ClientActor {
    /// The client IP.
    pub ip: IpAddr,
    /// The client port, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

impl Actor {
    /// The actor of a principal.
    pub fn from_principal(p: &Principal) -> Self {
        let mut a = Self::default();
        a.set_principal(p);
        a
    }

    pub(crate) fn set_principal(&mut self, p: &Principal) {
        let b = |s: &str| bounded(s, MAX_IDENTITY_LEN);
        self.subject = Some(b(&p.subject));
        self.issuer = p.issuer.as_deref().map(b);
        self.kind = Some(p.kind);
        self.tenant = p.tenant.as_deref().map(b);
        self.client_id = p.client_id.as_deref().map(b);
        self.token_id = p.token_id.as_deref().map(b);
        let (auth, key) = match &p.auth {
            AuthMethod::Jwt { .. } => ("jwt".to_owned(), None),
            AuthMethod::ApiKey { key_id } => ("api_key".to_owned(), Some(b(key_id))),
            AuthMethod::Introspection => ("introspection".to_owned(), None),
            AuthMethod::Mtls => ("mtls".to_owned(), None),
            AuthMethod::Other(name) => (b(name), None),
            _ => ("other".to_owned(), None),
        };
        self.auth = Some(auth);
        self.api_key_id = key;
    }

    /// Sets the TLS peer.
    pub fn set_peer(&mut self, peer: &PeerIdentity) {
        self.peer = Some(PeerActor {
            spiffe_id: peer.spiffe_id.as_ref().map(|s| s.as_str().to_owned()),
            subject: bounded(&peer.subject, MAX_IDENTITY_LEN),
            fingerprint: peer.fingerprint_hex(),
        });
    }

    /// Sets the client address.
    pub fn set_client(&mut self, addr: ClientAddr) {
        self.client = Some(ClientActor {
            ip: addr.ip(),
            port: addr.port(),
        });
    }

    /// The actor of a request, from what the msec layers put in its extensions: the `SecurityContext`'s
    /// principal and client address, else `Arc<Principal>` and `ClientAddr` extensions; `Arc<PeerIdentity>`.
    pub fn from_extensions(ext: &http::Extensions) -> Self {
        let mut a = Self::default();
        let ctx = msec_core::SecurityContext::get(ext);
        let principal = ctx
            .and_then(|c| c.principal())
            .or_else(|| ext.get::<Arc<Principal>>().cloned());
        if let Some(p) = principal {
            a.set_principal(&p);
        }
        if let Some(peer) = ext.get::<Arc<PeerIdentity>>() {
            a.set_peer(peer);
        }
        if let Some(c) = ctx
            .and_then(|c| c.client_addr())
            .or_else(|| ClientAddr::from_extensions(ext))
        {
            a.set_client(c);
        }
        a
    }
}

/// What a data access did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AccessOperation {
    /// Read a record.
    Read,
    /// Searched or listed records.
    Search,
    /// Exported records.
    Export,
    /// Created a record.
    Create,
    /// Changed a record.
    Update,
    /// Deleted a record.
    Delete,
}

/// A data-access event: who read or changed which personal-data record, and why.
///
/// ```
/// use msec_audit::DataAccess;
/// use msec_core::Principal;
///
/// let who = Principal::builder("agent-7").build();
/// let event = DataAccess::read("customer", "c-1042")
///     .actor_principal(&who)
///     .fields(["email", "phone"])
///     .purpose("support ticket 5512");
/// # let _ = event;
/// ```
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub struct DataAccess {
    actor: Actor,
    operation: AccessOperation,
    resource_type: String,
    resource_id: String,
    fields: Vec<String>,
    purpose: Option<String>,
    request_id: Option<String>,
    attributes: Map<String, Value>,
}

impl DataAccess {
    /// An access of `operation` to the record `resource_id` of type `resource_type`.
    pub fn new(operation: AccessOperation, resource_type: impl Into<String>, resource_id: impl Into<String>) -> Self {
        Self {
            actor: Actor::default(),
            operation,
            resource_type: bounded(&resource_type.into(), MAX_IDENTITY_LEN),
            resource_id: bounded(&resource_id.into(), MAX_IDENTITY_LEN),
            fields: Vec::new(),
            purpose: None,
            request_id: None,
            attributes: Map::new(),
        }
    }

    /// A read.
    pub fn read(resource_type: impl Into<String>, resource_id: impl Into<String>) -> Self {
        Self::new(AccessOperation::Read, resource_type, resource_id)
    }

    /// A change.
    pub fn update(resource_type: impl Into<String>, resource_id: impl Into<String>) -> Self {
        Self::new(AccessOperation::Update, resource_type, resource_id)
    }

    /// Sets the actor.
    pub fn actor(mut self, actor: Actor) -> Self {
        self.actor = actor;
        self
    }

    /// Sets the actor from a principal.
    pub fn actor_principal(mut self, p: &Principal) -> Self {
        self.actor.set_principal(p);
        self
    }

    /// Sets the actor (and the request id, when the audit layer assigned one) from a request's extensions.
    pub fn from_request(mut self, ext: &http::Extensions) -> Self {
        self.actor = Actor::from_extensions(ext);
        if let Some(r) = ext.get::<crate::layer::RequestAudit>() {
            self.request_id = r.request_id().map(str::to_owned);
        }
        self
    }

    /// Names the fields accessed.
    pub fn fields<I, S>(mut self, fields: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.fields = fields.into_iter().take(64).map(|f| bounded(&f.into(), 128)).collect();
        self
    }

    /// Why (a ticket, a legal basis).
    pub fn purpose(mut self, purpose: impl Into<String>) -> Self {
        self.purpose = Some(bounded(&purpose.into(), 512));
        self
    }

    /// Sets the request id.
    pub fn request_id(mut self, id: impl Into<String>) -> Self {
        self.request_id = Some(bounded(&id.into(), 128));
        self
    }

    /// Adds an attribute (redacted by the log's [`Redactor`](crate::Redactor) when written).
    pub fn attribute(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        if self.attributes.len() < 64 {
            self.attributes.insert(bounded(&name.into(), 128), value.into());
        }
        self
    }
}

#[derive(Serialize)]
struct DataAccessBody<'a> {
    kind: &'static str,
    id: EventId,
    time: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
    actor: &'a Actor,
    access: AccessBody<'a>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    attributes: &'a Map<String, Value>,
}

#[derive(Serialize)]
struct AccessBody<'a> {
    operation: AccessOperation,
    resource_type: &'a str,
    resource_id: &'a str,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    fields: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    purpose: Option<&'a str>,
}

/// An event serialised and ready for the queue. Built by [`IntoEvent`].
#[derive(Debug)]
pub struct Pending {
    pub(crate) kind: RecordKind,
    pub(crate) time: SystemTime,
    pub(crate) body: Vec<u8>,
    pub(crate) observation: Option<Box<Observation>>,
}

mod sealed {
    pub trait Sealed {}
}

/// Events [`AuditLog::emit`](crate::AuditLog::emit) accepts. Sealed: the schema is fixed; put your own data
/// in attributes.
pub trait IntoEvent: sealed::Sealed + Send {
    /// Serialises the event, stamped with `now`.
    #[doc(hidden)]
    fn into_pending(self, now: SystemTime, redactor: &crate::redact::Redactor, buf: Vec<u8>) -> Pending;
}

impl sealed::Sealed for DataAccess {}

impl IntoEvent for DataAccess {
    fn into_pending(mut self, now: SystemTime, redactor: &crate::redact::Redactor, mut buf: Vec<u8>) -> Pending {
        redactor.redact_map(&mut self.attributes);
        let body = DataAccessBody {
            kind: "data_access",
            id: EventId::new(now),
            time: Timestamp(now),
            request_id: self.request_id.as_deref(),
            actor: &self.actor,
            access: AccessBody {
                operation: self.operation,
                resource_type: &self.resource_type,
                resource_id: &self.resource_id,
                fields: &self.fields,
                purpose: self.purpose.as_deref(),
            },
            attributes: &self.attributes,
        };
        buf.clear();
        if serde_json::to_writer(&mut buf, &body).is_err() {
            buf.clear();
        }
        Pending {
            kind: RecordKind::DataAccess,
            time: now,
            body: buf,
            observation: None,
        }
    }
}

impl sealed::Sealed for Pending {}

impl IntoEvent for Pending {
    fn into_pending(self, _now: SystemTime, _redactor: &crate::redact::Redactor, _buf: Vec<u8>) -> Pending {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_borrowed_actor_serialises_like_the_owned_one() {
        let long = "s".repeat(MAX_IDENTITY_LEN + 10);
        let principals = [
            Principal::builder("alice")
                .issuer("https://idp.example")
                .token_id("jti-1")
                .tenant("t1")
                .client_id("web")
                .auth(AuthMethod::Jwt {
                    alg: "ES256".into(),
                    kid: Some("k1".into()),
                })
                .build(),
            Principal::builder(long.as_str())
                .kind(PrincipalKind::Service)
                .auth(AuthMethod::ApiKey { key_id: long.clone() })
                .build(),
            Principal::builder("bob").auth(AuthMethod::Other(long.clone())).build(),
            Principal::builder("svc").auth(AuthMethod::Mtls).build(),
        ];
        let client = ClientAddr::from_socket("203.0.113.7:4242".parse().unwrap_or_else(|e| panic!("{e}")));
        for p in &principals {
            for c in [None, Some(client)] {
                let mut owned = Actor::default();
                owned.set_principal(p);
                if let Some(c) = c {
                    owned.set_client(c);
                }
                let view = ActorView::new(Some(p), None, c);
                assert_eq!(serde_json::to_string(&view).ok(), serde_json::to_string(&owned).ok());
            }
        }
        let empty = ActorView::new(None, None, None);
        assert_eq!(serde_json::to_string(&empty).ok(), Some("{}".to_owned()));
    }
}
