//! The PostgreSQL sink against the real server, through a TCP proxy the test takes down and brings back.
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use msec_audit::sink::PostgresSink;
use msec_audit::{AuditLog, DataAccess, Verifier};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A TCP proxy to PostgreSQL that can be switched off (cutting live connections, refusing new ones) and on.
struct Proxy {
    port: u16,
    up: Arc<AtomicBool>,
    cut: watch::Sender<u64>,
}

impl Proxy {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let (cut, _) = watch::channel(0u64);
        let (u, c) = (up.clone(), cut.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                if !u.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let mut cut_rx = c.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect("127.0.0.1:5432").await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut_rx.changed() => {}
                    }
                });
            }
        });
        Self { port, up, cut }
    }

    fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cut.send_modify(|n| *n += 1);
    }

    fn up(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

async fn rows(table: &str, log_id: &str) -> Vec<String> {
    let cfg = msec_test_support::services::postgres_config().await.unwrap();
    let (client, conn) = tokio_postgres::connect(&cfg, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    client
        .query(
            &format!("SELECT record FROM {table} WHERE log_id = $1 ORDER BY seq"),
            &[&log_id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect()
}

async fn drop_table(table: &str) {
    let cfg = msec_test_support::services::postgres_config().await.unwrap();
    let (client, conn) = tokio_postgres::connect(&cfg, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    client
        .batch_execute(&format!("DROP TABLE IF EXISTS {table}"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_down_then_back_loses_nothing() {
    let Some(_) = msec_test_support::services::postgres_config().await else {
        return;
    };
    let unique = format!(
        "{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
            % 1_000_000_000
    );
    let table = format!("msec_audit_test_{unique}");
    let log_id = format!("pg-test-{unique}");
    let proxy = Proxy::start().await;
    let cfg = format!("host=127.0.0.1 port={} user=postgres dbname=test", proxy.port);
    let pem = msec_audit::CheckpointSigner::generate_pkcs8_pem().unwrap();
    let signer = || msec_audit::CheckpointSigner::from_pkcs8_pem(pem.expose_secret()).unwrap();
    let public = signer().public_key();

    let sink = PostgresSink::new(cfg.clone(), &table)
        .unwrap()
        .log_id(&log_id)
        .timeout(Duration::from_secs(2));
    let log = AuditLog::builder()
        .signer(signer())
        .retry_backoff(Duration::from_millis(10), Duration::from_millis(100))
        .start(sink)
        .unwrap();
    for i in 0..50 {
        log.emit(DataAccess::read("customer", i.to_string())).await.unwrap();
    }
    log.flush().await.unwrap();
    assert_eq!(rows(&table, &log_id).await.len(), 51);

    proxy.down();
    for i in 50..100 {
        log.emit(DataAccess::read("customer", i.to_string())).await.unwrap();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while log.stats().sink_errors == 0 {
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        rows(&table, &log_id).await.len(),
        51,
        "nothing written while PostgreSQL is unreachable"
    );
    proxy.up();
    log.flush().await.unwrap();
    log.shutdown().await.unwrap();

    let lines = rows(&table, &log_id).await;
    let report = Verifier::new([public.clone()])
        .verify_lines(lines.iter().map(|l| l.as_bytes()))
        .unwrap();
    let events = lines.iter().filter(|l| l.contains("\"kind\":\"data_access\"")).count();
    assert_eq!(events, 100, "every queued record arrived, once");
    assert_eq!(report.records as usize, lines.len());

    // A restart with the same log id continues the chain in the table.
    let sink = PostgresSink::new(cfg, &table).unwrap().log_id(&log_id);
    let log = AuditLog::builder().signer(signer()).start(sink).unwrap();
    log.emit(DataAccess::read("customer", "after-restart")).await.unwrap();
    log.shutdown().await.unwrap();
    let lines = rows(&table, &log_id).await;
    let after = Verifier::new([public])
        .verify_lines(lines.iter().map(|l| l.as_bytes()))
        .unwrap();
    assert!(after.last_seq > report.last_seq);
    common::assert_schema_valid(lines.join("\n").as_bytes());
    drop_table(&table).await;
}

/// The sink over TLS to the local server (Debian's snakeoil certificate for `localhost`, pinned as the only
/// root): records arrive over an encrypted session; a CA that did not sign the server's certificate fails to
/// open (never a plain connection). Skipped with a notice when the server offers no TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_sessions_are_verified() {
    use msec_audit::sink::Sink as _;
    use msec_core::postgres::PgTls;
    let Some(cfg) = msec_test_support::services::postgres_config().await else {
        return;
    };
    let (plain, conn) = tokio_postgres::connect(&cfg, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let show = async |what: &str| -> String { plain.query_one(&format!("SHOW {what}"), &[]).await.unwrap().get(0) };
    let (ssl, cert_file) = (show("ssl").await, show("ssl_cert_file").await);
    let cert_pem = match std::fs::read(&cert_file) {
        Ok(pem) if ssl == "on" => pem,
        _ => {
            eprintln!("NOTICE: PostgreSQL offers no TLS (ssl={ssl}, cert {cert_file:?}); TLS test skipped");
            return;
        }
    };
    let unique = format!("{}_{}", std::process::id(), uuid_like());
    let table = format!("msec_audit_tls_{unique}");
    let app = format!("msec_audit_tls_{unique}");
    let localhost = format!(
        "{} application_name={app}",
        cfg.replace("host=127.0.0.1", "host=localhost")
    );

    let other = msec_test_support::TestCa::new("other.test");
    let mut wrong = PostgresSink::new(localhost.clone(), &table)
        .unwrap()
        .tls(PgTls::from_pem_roots(other.cert_pem().as_bytes()).unwrap());
    let e = tokio::task::spawn_blocking(move || wrong.open().unwrap_err())
        .await
        .unwrap();
    let mut chain = e.to_string();
    let mut cur = std::error::Error::source(&e);
    while let Some(c) = cur {
        chain.push_str(&format!(": {c}"));
        cur = c.source();
    }
    assert!(chain.contains("invalid peer certificate: UnknownIssuer"), "{chain}");

    let sink = PostgresSink::new(localhost, &table)
        .unwrap()
        .log_id(&app)
        .tls(PgTls::from_pem_roots(&cert_pem).unwrap());
    assert!(format!("{sink:?}").contains("tls: true"));
    let log = AuditLog::builder()
        .signer(
            msec_audit::CheckpointSigner::from_pkcs8_pem(
                msec_audit::CheckpointSigner::generate_pkcs8_pem()
                    .unwrap()
                    .expose_secret(),
            )
            .unwrap(),
        )
        .start(sink)
        .unwrap();
    for i in 0..3 {
        log.emit(DataAccess::read("customer", i.to_string())).await.unwrap();
    }
    log.flush().await.unwrap();
    let encrypted: Vec<bool> = plain
        .query(
            "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.application_name = $1",
            &[&app],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(encrypted, [true], "the sink's one session is TLS");
    log.shutdown().await.unwrap();
    let lines = rows(&table, &app).await;
    let events = lines.iter().filter(|l| l.contains("\"kind\":\"data_access\"")).count();
    assert_eq!(
        (events, lines.len()),
        (3, 5),
        "three events between the opening and closing checkpoints"
    );
    drop_table(&table).await;
}

fn uuid_like() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
        % 1_000_000_000
}
