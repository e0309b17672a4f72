//! The handshake comparison of `handshake.rs`, measured in pairs: every round opens one connection (full mTLS
//! handshake + one HTTP/1.1 request) to each of the four servers in turn, starting with a different one each
//! round, so all four see the same machine load. Prints medians and the ratios that matter:
//!
//! - identity extraction = (c) raw loop + extraction vs (b) the same loop without;
//! - serve loop = (d) `msec_tls::serve` vs (c);
//! - SPIFFE verifier = (b) vs (a) rustls' WebPkiClientVerifier.
//!
//! Run: `cargo bench -p msec-tls --bench handshake_paired` (`MSEC_BENCH_ROUNDS`, default 600).
#![allow(missing_docs, clippy::unwrap_used, clippy::print_stdout)]

mod support;

use std::time::{Duration, Instant};

fn median(v: &mut [Duration]) -> Duration {
    v.sort_unstable();
    v[v.len() / 2]
}

fn quartiles(v: &[Duration]) -> (Duration, Duration) {
    (v[v.len() / 4], v[v.len() * 3 / 4])
}

fn main() {
    // `cargo bench` passes `--bench`; any other filter argument that does not match skips this target.
    if std::env::args()
        .skip(1)
        .any(|a| !a.starts_with('-') && !"handshake_paired".contains(a.as_str()))
    {
        return;
    }
    let rounds: usize = std::env::var("MSEC_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(600);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let samples = rt.block_on(async {
        let (servers, client) = support::setup().await;
        for _ in 0..30 {
            for addr in &servers {
                support::first_request(&client, *addr).await;
            }
        }
        let mut samples: [Vec<Duration>; 4] = Default::default();
        for round in 0..rounds {
            for k in 0..4 {
                let i = (round + k) % 4;
                let start = Instant::now();
                support::first_request(&client, servers[i]).await;
                samples[i].push(start.elapsed());
            }
        }
        samples
    });
    let mut medians = [Duration::ZERO; 4];
    println!("handshake_first_request, paired ({rounds} rounds):");
    for (i, mut s) in samples.into_iter().enumerate() {
        medians[i] = median(&mut s);
        let (q1, q3) = quartiles(&s);
        println!(
            "  ({}) {:<72} median {:>8.3} ms  (IQR {:.3}–{:.3} ms)",
            ["a", "b", "c", "d"][i],
            support::NAMES[i],
            medians[i].as_secs_f64() * 1e3,
            q1.as_secs_f64() * 1e3,
            q3.as_secs_f64() * 1e3
        );
    }
    let pct = |x: Duration, y: Duration| (x.as_secs_f64() / y.as_secs_f64() - 1.0) * 100.0;
    println!("  identity extraction (c vs b): {:+.1} %", pct(medians[2], medians[1]));
    println!("  serve loop extras   (d vs c): {:+.1} %", pct(medians[3], medians[2]));
    println!("  SPIFFE verifier     (b vs a): {:+.1} %", pct(medians[1], medians[0]));
    println!(
        "  msec serve vs rustls raw (d vs a): {:+.1} %",
        pct(medians[3], medians[0])
    );
}
