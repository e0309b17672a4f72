//! The identity provider for `perf/run.sh`: mints access tokens with the committed test keys and serves their
//! JWKS over plain HTTP on loopback, so that msec's `axum_api` and the peer stack verify the same tokens.
//!
//! ```text
//! perf-issuer <rs256|es256> <port> <tokens file> <count>
//! ```
//!
//! Writes `count` distinct tokens (one per line; `jti` differs, scope `hello:read`, one hour of life,
//! `iss` = `http://127.0.0.1:<port>`, `aud` = `orders-api`) to the file, prints `ready` and then answers every
//! HTTP request with the JWKS until killed. Not a test fixture server for anything but load tests.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::Write as _;
use std::time::Duration;

use msec_test_support::TestKey;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, alg, port, out, count] = &args[..] else {
        eprintln!("usage: perf-issuer <rs256|es256> <port> <tokens file> <count>");
        std::process::exit(2);
    };
    let key = match alg.as_str() {
        "rs256" => TestKey::rs256(),
        "es256" => TestKey::es256(),
        other => {
            eprintln!("unknown algorithm {other}");
            std::process::exit(2);
        }
    };
    let count: usize = count.parse().expect("count");
    let issuer = format!("http://127.0.0.1:{port}");
    let mut file = std::io::BufWriter::new(std::fs::File::create(out).expect("tokens file"));
    // Minted on every core: RS256 signing is the slow part of a run's set-up.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per = count.div_ceil(threads);
    let chunks: Vec<Vec<String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (key, issuer) = (&key, &issuer);
                s.spawn(move || {
                    (t * per..((t + 1) * per).min(count))
                        .map(|i| {
                            key.token()
                                .iss(issuer)
                                .aud("orders-api")
                                .sub(&format!("load-{}", i % 64))
                                .scope("hello:read")
                                .jti(&format!("perf-{i}"))
                                .expires_in(Duration::from_secs(3600))
                                .sign()
                        })
                        .collect()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("minting thread")).collect()
    });
    for token in chunks.iter().flatten() {
        writeln!(file, "{token}").unwrap();
    }
    file.flush().unwrap();
    let body = msec_test_support::keys::jwks(&[&key]).to_string();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port.parse::<u16>().expect("port")))
        .await
        .expect("bind");
    println!("ready");
    loop {
        let (mut stream, _) = listener.accept().await.expect("accept");
        let body = body.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf).await;
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncache-control: max-age=3600\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}
