//! Threat detectors: each fires on its pattern, stays quiet on normal traffic, and lands in the chain.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use msec_audit::detect::{AlertKey, DetectorKind, Detectors, Observation, Rule};
use msec_audit::{Alert, AuditLayer, AuditLog, MemorySink, Verifier};
use msec_test_support::FakeClock;

fn t0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

fn ip(n: u8) -> IpAddr {
    IpAddr::from([203, 0, 113, n])
}

fn run(d: &mut Detectors, obs: impl IntoIterator<Item = Observation>) -> Vec<Alert> {
    obs.into_iter().flat_map(|o| d.observe(&o)).collect()
}

/// A day of ordinary traffic: 40 clients, each with its own user and token, mostly 200s, a few 404s, 403s,
/// 401s (typos) and 429s, well spread out.
fn normal_traffic() -> Vec<Observation> {
    let mut out = Vec::new();
    for i in 0..4000u64 {
        let c = (i % 40) as u8;
        let t = t0() + Duration::from_secs(i * 3);
        let mut o = Observation::new(t)
            .client_ip(ip(c))
            .subject(format!("user{c}"))
            .token_id(format!("jti-{c}"));
        o = match i % 97 {
            0 => o.status(404),
            1 => o.status(403),
            2 => o.status(401).authn_failure(true),
            3 => o.status(429).code("rate_limited"),
            _ => o.status(200),
        };
        out.push(o);
    }
    out
}

#[test]
fn quiet_on_normal_traffic() {
    let mut d = Detectors::default();
    let alerts = run(&mut d, normal_traffic());
    assert!(alerts.is_empty(), "{alerts:?}");
}

#[test]
fn brute_force_per_client_and_per_subject() {
    let mut d = Detectors::default();
    let fail = |i: u64, c: u8, sub: &str| {
        Observation::new(t0() + Duration::from_secs(i))
            .client_ip(ip(c))
            .subject(sub)
            .status(401)
            .authn_failure(true)
    };
    // 9 failures in the window: quiet. The 10th: one alert for the client, one for the subject.
    let alerts = run(&mut d, (0..9).map(|i| fail(i, 1, "admin")));
    assert!(alerts.is_empty());
    let alerts = run(&mut d, [fail(9, 1, "admin")]);
    let kinds: Vec<_> = alerts.iter().map(|a| (a.detector, a.key.clone())).collect();
    assert!(kinds.contains(&(DetectorKind::BruteForce, AlertKey::Client(ip(1)))));
    assert!(kinds.contains(&(DetectorKind::BruteForce, AlertKey::Subject("admin".into()))));
    // No repeat within the window.
    assert!(run(&mut d, (10..20).map(|i| fail(i, 1, "admin"))).is_empty());
    // The same subject attacked from many clients: per-subject brute force only.
    let mut d = Detectors::default();
    let alerts = run(&mut d, (0..10).map(|i| fail(i, i as u8, "root")));
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].key, AlertKey::Subject("root".into()));
    // Failures spread beyond the window do not add up.
    let mut d = Detectors::default();
    assert!(run(&mut d, (0..30).map(|i| fail(i * 7, 2, "slow"))).is_empty());
}

#[test]
fn credential_stuffing_many_subjects_from_one_client() {
    let mut d = Detectors::default();
    d.brute_force = None;
    let alerts = run(
        &mut d,
        (0..5).map(|i| {
            Observation::new(t0() + Duration::from_secs(i))
                .client_ip(ip(9))
                .subject(format!("victim{i}"))
                .status(401)
                .authn_failure(true)
        }),
    );
    assert_eq!(alerts.len(), 1);
    assert_eq!(
        (alerts[0].detector, alerts[0].count),
        (DetectorKind::CredentialStuffing, 5)
    );
    // The same subject retried is not stuffing.
    let mut d = Detectors::default();
    d.brute_force = None;
    let same = (0..20).map(|i| {
        Observation::new(t0() + Duration::from_secs(i))
            .client_ip(ip(9))
            .subject("ann")
            .status(401)
            .authn_failure(true)
    });
    assert!(run(&mut d, same).is_empty());
}

#[test]
fn token_replay_one_jti_from_two_addresses() {
    let mut d = Detectors::default();
    let use_token = |i: u64, c: u8| {
        Observation::new(t0() + Duration::from_secs(i))
            .client_ip(ip(c))
            .subject("svc")
            .token_id("jti-1")
            .status(200)
    };
    assert!(run(&mut d, (0..50).map(|i| use_token(i, 1))).is_empty());
    let alerts = run(&mut d, [use_token(60, 2)]);
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].detector, DetectorKind::TokenReplay);
    assert_eq!(alerts[0].key, AlertKey::Token("jti-1".into()));
    assert_eq!(alerts[0].clients, vec![ip(1), ip(2)]);
}

#[test]
fn scanning_authz_probing_and_rate_limit_storms() {
    let burst = |status: u16, n: u64, code: Option<&str>| {
        let mut d = Detectors::default();
        let obs = (0..n).map(|i| {
            let o = Observation::new(t0() + Duration::from_millis(i * 100))
                .client_ip(ip(5))
                .status(status);
            match code {
                Some(c) => o.code(c),
                None => o,
            }
        });
        run(&mut d, obs)
    };
    let a = burst(404, 20, None);
    assert_eq!((a.len(), a[0].detector), (1, DetectorKind::Scanning));
    assert_eq!(burst(405, 20, None)[0].detector, DetectorKind::Scanning);
    assert!(burst(404, 19, None).is_empty());
    let a = burst(403, 10, Some("insufficient_scope"));
    assert_eq!((a.len(), a[0].detector), (1, DetectorKind::AuthzProbing));
    assert!(burst(403, 9, None).is_empty());
    let a = burst(429, 50, Some("rate_limited"));
    assert_eq!((a.len(), a[0].detector), (1, DetectorKind::RateLimitStorm));
    assert!(burst(429, 49, Some("rate_limited")).is_empty());
}

#[test]
fn memory_stays_bounded_under_a_key_spray() {
    let mut d = Detectors::default();
    d.max_keys = 1000;
    for i in 0..50_000u32 {
        let o = Observation::new(t0() + Duration::from_millis(u64::from(i)))
            .client_ip(IpAddr::from(i.to_be_bytes()))
            .status(404);
        d.observe(&o);
    }
    // Still works for a new attacker once old keys expire.
    let later = t0() + Duration::from_secs(3600);
    let alerts = run(
        &mut d,
        (0..20).map(|i| {
            Observation::new(later + Duration::from_millis(i))
                .client_ip(ip(77))
                .status(404)
        }),
    );
    assert_eq!(alerts.len(), 1);
    let _ = Rule::new(1, Duration::from_secs(1));
}

/// End to end: 401s over real HTTP become an `alert` record in the chain and a hook call.
#[tokio::test]
async fn alerts_are_chained_and_hooks_called() {
    let sink = MemorySink::new();
    let clock = FakeClock::new(t0());
    let hooked: Arc<Mutex<Vec<Alert>>> = Arc::default();
    let h = hooked.clone();
    let (signer, public) = common::key_pair();
    let log = AuditLog::builder()
        .signer(signer)
        .clock(Arc::new(clock.clone()))
        .detectors(Detectors::default())
        .on_alert(move |a: &Alert| h.lock().unwrap().push(a.clone()))
        .start(sink.clone())
        .unwrap();
    let app = Router::new()
        .route("/login", get(|| async { http::StatusCode::UNAUTHORIZED }))
        .layer(AuditLayer::new(log.clone()));
    let (listener, addr) = msec_test_support::net::listener().await;
    tokio::spawn(async move {
        axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
            .await
            .unwrap();
    });
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    for _ in 0..12 {
        let resp = client
            .get(format!("http://{addr}/login").parse().unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
        resp.into_body().collect().await.unwrap();
        clock.advance(Duration::from_secs(1));
    }
    log.shutdown().await.unwrap();
    let alerts = hooked.lock().unwrap().clone();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].detector, DetectorKind::BruteForce);
    assert_eq!(alerts[0].key, AlertKey::Client("127.0.0.1".parse().unwrap()));
    let values = sink.values();
    let records = common::of_kind(&values, "alert");
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["alert"]["detector"], "brute_force");
    assert_eq!(
        records[0]["alert"]["key"],
        serde_json::json!({"type": "client", "value": "127.0.0.1"})
    );
    // The alert follows the request that tipped it over, in the same chain.
    let trigger = records[0]["alert"]["trigger_seq"].as_u64().unwrap();
    assert_eq!(records[0]["seq"].as_u64().unwrap(), trigger + 1);
    assert_eq!(alerts[0].seq, Some(trigger + 1));
    common::assert_schema_valid(&sink.contents());
    let report = Verifier::new([public]).verify_bytes(&sink.contents()).unwrap();
    assert_eq!(report.alerts, 1);
}
