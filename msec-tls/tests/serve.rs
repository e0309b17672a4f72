//! The serve loop's limits and lifecycle: handshake timeout, connection cap, graceful shutdown; and the
//! decisions RequirePeerLayer records.
#![allow(clippy::unwrap_used)]

mod common;

use std::future::IntoFuture;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use common::{Conn, Outcome, Pki, TD_A, attempt};
use msec_core::{Outcome as Decided, ReasonCode, SecurityContext};
use msec_test_support::net;
use msec_tls::{ClientAuth, RequirePeerLayer};
use tokio::io::AsyncReadExt;
use tokio::sync::{Notify, oneshot};

/// Generous upper bounds for things that happen at once; the tests wait for events, not for time.
const BOUND: Duration = Duration::from_secs(10);

#[tokio::test]
async fn silent_clients_are_dropped_after_the_handshake_timeout() {
    let pki = Pki::new();
    let (listener, addr) = net::listener().await;
    let _server = msec_tls::serve(listener, pki.server_tls(ClientAuth::none()), Router::new())
        .handshake_timeout(Duration::from_millis(150))
        .spawn()
        .unwrap();
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 16];
    // The server closes the connection without a byte: EOF (or a reset) instead of waiting forever.
    let n = tokio::time::timeout(BOUND, tcp.read(&mut buf))
        .await
        .expect("closed by the handshake timeout");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    // Well-behaved clients are unaffected.
    assert!(matches!(
        attempt(&pki.client_h1(None), addr, "/").await,
        Outcome::Answered(404, _)
    ));
}

#[tokio::test]
async fn connection_cap_pauses_accepting_until_a_connection_ends() {
    let pki = Pki::new();
    let (listener, addr) = net::listener().await;
    let app = Router::new().route("/", get(|| async { "ok" }));
    let _server = msec_tls::serve(listener, pki.server_tls(ClientAuth::none()), app)
        .max_connections(NonZeroUsize::new(1).unwrap())
        .spawn()
        .unwrap();
    let client = pki.client_h1(None);
    let mut first = Conn::open(&client, addr).await;
    assert_eq!(first.get("/").await.0, 200);

    // The second client's TCP connection waits in the backlog: its handshake does not progress.
    let c2 = client.clone();
    let mut second = tokio::spawn(async move { c2.connect(addr, "localhost").await.map(|_| ()) });
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut second)
            .await
            .is_err(),
        "served beyond the cap"
    );

    // When the first connection ends, the second is served.
    drop(first);
    tokio::time::timeout(BOUND, second)
        .await
        .expect("accepted after the first closed")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_requests_and_refuses_new_ones() {
    let pki = Pki::new();
    let entered = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let (e, r) = (entered.clone(), release.clone());
    let app = Router::new().route(
        "/slow",
        get(move || {
            let (e, r) = (e.clone(), r.clone());
            async move {
                e.notify_one();
                r.notified().await;
                "finished"
            }
        }),
    );
    let (listener, addr) = net::listener().await;
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let server = tokio::spawn(
        msec_tls::serve(listener, pki.server_tls(ClientAuth::none()), app)
            .with_graceful_shutdown(async move {
                let _ = stop_rx.await;
            })
            .into_future(),
    );
    let client = pki.client_h1(None);
    let mut conn = Conn::open(&client, addr).await;
    let in_flight = tokio::spawn(async move {
        let req = http::Request::get("/slow")
            .header("host", "localhost")
            .body(http_body_util::Empty::new())
            .unwrap();
        conn.sender.ready().await.unwrap();
        let resp = conn.sender.send_request(req).await.unwrap();
        let close = resp.headers().get("connection").cloned();
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap()
            .to_bytes();
        (close, body)
    });
    entered.notified().await;

    stop_tx.send(()).unwrap();
    let mut server = server;
    // The request is in flight, so the server keeps running...
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut server)
            .await
            .is_err()
    );
    // ...but no longer accepts connections.
    let refused = tokio::net::TcpStream::connect(addr).await;
    assert!(refused.is_err(), "the listener is closed during shutdown");

    release.notify_one();
    let (close, body) = tokio::time::timeout(BOUND, in_flight).await.unwrap().unwrap();
    assert_eq!(&body[..], b"finished");
    assert_eq!(close.as_ref().map(|v| v.as_bytes()), Some(&b"close"[..]));
    tokio::time::timeout(BOUND, server).await.unwrap().unwrap().unwrap();
}

#[tokio::test]
async fn running_handle_shuts_down() {
    let pki = Pki::new();
    let (listener, addr) = net::listener().await;
    let server = msec_tls::serve(listener, pki.server_tls(ClientAuth::none()), Router::new())
        .spawn()
        .unwrap();
    assert_eq!(server.local_addr(), addr);
    tokio::time::timeout(BOUND, server.shutdown()).await.unwrap().unwrap();
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn require_peer_layer_records_tls_decisions() {
    let pki = Pki::new();
    let contexts: Arc<Mutex<Vec<Arc<SecurityContext>>>> = Arc::default();
    let cx = contexts.clone();
    let frontend = format!("spiffe://{TD_A}/ns/prod/sa/frontend");
    let app = Router::new()
        .route(
            "/strict",
            get(|| async { "ok" }).route_layer(RequirePeerLayer::spiffe_id(frontend.parse().unwrap())),
        )
        .route(
            "/shadow",
            get(|| async { "ok" }).route_layer(RequirePeerLayer::spiffe_id(frontend.parse().unwrap()).shadow()),
        )
        .layer(axum::middleware::map_request(move |mut req: axum::extract::Request| {
            let cx = cx.clone();
            async move {
                let ctx = SecurityContext::new();
                cx.lock().unwrap().push(ctx.clone());
                req.extensions_mut().insert(ctx);
                req
            }
        }));
    let (listener, addr) = net::listener().await;
    let _server = msec_tls::serve(listener, pki.server_tls(ClientAuth::optional(pki.spiffe_trust())), app)
        .spawn()
        .unwrap();
    let last = || {
        let c = contexts.lock().unwrap();
        let d = c.last().unwrap().decisions();
        assert_eq!(d.len(), 1, "{d:?}");
        d.into_iter().next().unwrap()
    };

    let ok = pki.svid_a("/ns/prod/sa/frontend");
    assert!(matches!(
        attempt(&pki.client_h1(Some(&ok)), addr, "/strict").await,
        Outcome::Answered(200, _)
    ));
    let d = last();
    assert_eq!(
        (d.layer, d.outcome, d.code),
        ("tls", Decided::Allow, msec_tls::PEER_ALLOWED)
    );
    assert_eq!(d.get_detail("peer"), Some(frontend.as_str()));

    let batch = pki.svid_a("/ns/prod/sa/batch");
    match attempt(&pki.client_h1(Some(&batch)), addr, "/strict").await {
        Outcome::Answered(403, body) => {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["code"], "peer_not_allowed");
            assert_eq!(v["type"], "urn:msec:problem:peer_not_allowed");
        }
        other => panic!("{other:?}"),
    }
    let d = last();
    assert_eq!((d.outcome, d.code), (Decided::Deny, ReasonCode::PEER_NOT_ALLOWED));
    assert_eq!(d.get_detail("peer"), Some("spiffe://example.org/ns/prod/sa/batch"));

    assert!(matches!(
        attempt(&pki.client_h1(None), addr, "/strict").await,
        Outcome::Answered(403, _)
    ));
    let d = last();
    assert_eq!((d.outcome, d.code), (Decided::Deny, ReasonCode::MISSING_PEER_IDENTITY));
    assert_eq!(d.get_detail("peer"), Some("none"));

    // Shadow mode records and lets the request through.
    assert!(matches!(
        attempt(&pki.client_h1(Some(&batch)), addr, "/shadow").await,
        Outcome::Answered(200, _)
    ));
    let d = last();
    assert_eq!((d.outcome, d.code), (Decided::ShadowDeny, ReasonCode::PEER_NOT_ALLOWED));
}
