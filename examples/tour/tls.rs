//! mTLS (msec-tls): a service that accepts SPIFFE identities of its trust domain, hands each request its peer's
//! identity, and allows one route to one calling service only. The calls below are real mTLS handshakes with
//! certificates made by a test CA; the client verifies the server by SPIFFE ID, not by DNS name.

use std::sync::Arc;

use axum::{Router, routing::get};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use msec::prelude::*;
use msec::tls::{CertSource, ClientAuth, ClientTls, RequirePeerLayer, ServerAuth, ServerTls, Trust, rustls};
use msec_test_support::{LeafSpec, TestCa, TestCert};

use crate::{Answer, BoxError, Tour};

const SECTION: &str = "tls";
const DOMAIN: &str = "example.org";

fn source(c: &TestCert) -> Result<CertSource, BoxError> {
    Ok(CertSource::pem(c.cert_pem.as_bytes(), c.key_pem.as_bytes())?)
}

/// A client presenting `me`, expecting the server to be `spiffe://example.org/ns/prod/sa/orders`.
fn client(ca: &TestCa, me: &TestCert) -> Result<ClientTls, BoxError> {
    let trust = Trust::spiffe().bundle(DOMAIN.parse()?, [ca.cert()]).build()?;
    Ok(ClientTls::builder()
        .server_auth(ServerAuth::spiffe_id(
            trust,
            format!("spiffe://{DOMAIN}/ns/prod/sa/orders").parse()?,
        ))
        .client_cert(source(me)?)
        .build()?)
}

/// GET over mTLS; a refused handshake is reported as `Err` with the TLS alert.
async fn call(tls: &ClientTls, url: &str) -> Result<Result<Answer, String>, BoxError> {
    let client = Client::builder(TokioExecutor::new()).build::<_, Empty<Bytes>>(tls.connector());
    match client.get(url.parse()?).await {
        Ok(resp) => {
            let (parts, body) = resp.into_parts();
            let body = body.collect().await?.to_bytes();
            Ok(Ok(Answer {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body,
            }))
        }
        Err(e) => {
            // The alert arrives as the first read of the connection fails: find it in the error chain.
            let mut source: Option<&dyn std::error::Error> = Some(&e);
            let mut alert = String::from("handshake refused");
            while let Some(err) = source {
                if let Some(rustls::Error::AlertReceived(a)) = err.downcast_ref::<rustls::Error>() {
                    alert = format!("{a:?}");
                } else if let Some(a) = err.to_string().split("received fatal alert: ").nth(1) {
                    alert = a.to_owned();
                }
                source = err.source();
            }
            Ok(Err(alert))
        }
    }
}

pub(crate) async fn run(tour: &mut Tour) -> Result<(), BoxError> {
    let ca = TestCa::new(DOMAIN);
    let trust = Trust::spiffe().bundle(DOMAIN.parse()?, [ca.cert()]).build()?;
    let tls = ServerTls::builder()
        .client_auth(ClientAuth::required(trust))
        .certificate(source(&ca.svid("/ns/prod/sa/orders"))?)
        .build()?;
    let frontend = format!("spiffe://{DOMAIN}/ns/prod/sa/frontend");
    let app = Router::new()
        .route(
            "/v1/orders/{id}",
            get(|peer: PeerIdentity| async move {
                format!(
                    "order 7 for {}",
                    peer.spiffe_id.map(|id| id.to_string()).unwrap_or_default()
                )
            })
            .route_layer(RequirePeerLayer::spiffe_id(frontend.parse()?)),
        )
        .route(
            "/whoami",
            get(|peer: axum::Extension<Arc<PeerIdentity>>| async move { peer.subject.clone() }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    // The client checks the server's SPIFFE ID, not a host name.
    let base = format!("https://127.0.0.1:{}", listener.local_addr()?.port());
    let server = msec::tls::serve(listener, tls, app).spawn()?;

    let allowed = client(&ca, &ca.svid("/ns/prod/sa/frontend"))?;
    let a = call(&allowed, &format!("{base}/v1/orders/7"))
        .await?
        .map_err(|e| format!("unexpected: {e}"))?;
    tour.record(
        SECTION,
        "mTLS GET /v1/orders/7 as spiffe://example.org/ns/prod/sa/frontend",
        &a,
        (200, "-"),
    );

    let other = client(&ca, &ca.svid("/ns/prod/sa/batch"))?;
    let a = call(&other, &format!("{base}/v1/orders/7"))
        .await?
        .map_err(|e| format!("unexpected: {e}"))?;
    tour.record(
        SECTION,
        "mTLS GET /v1/orders/7 as spiffe://example.org/ns/prod/sa/batch",
        &a,
        (403, "peer_not_allowed"),
    );

    // Another CA mints an ID of this trust domain: the handshake itself fails.
    let rogue = TestCa::new("rogue.example");
    let forged = rogue.issue(&LeafSpec::new("forged").uri(&frontend));
    let r = call(&client(&ca, &forged)?, &format!("{base}/whoami")).await?;
    // In TLS 1.3 the client has finished its side of the handshake when the server checks its certificate, so
    // the refusal reaches the client either as the server's `UnknownCA` alert or, when the server closes first,
    // as a closed connection: both mean the request never reached the service.
    let refused = r.is_err();
    let alert = r.err().unwrap_or_else(|| "accepted".into());
    tour.note(
        SECTION,
        "mTLS as frontend, SVID signed by an untrusted CA",
        "TLS alert",
        &alert,
        refused,
    );

    server.shutdown().await?;
    Ok(())
}
