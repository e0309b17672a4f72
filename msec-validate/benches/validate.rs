//! Guard + validated extraction vs bare `serde_json::from_slice` + `validate()`, for a 1 KiB and a 64 KiB
//! document. Run: `cargo bench -p msec-validate --bench validate --all-features -- --warm-up-time 1 --measurement-time 3`
#![allow(missing_docs, clippy::unwrap_used)]

use axum::Json;
use axum::extract::FromRequest;
use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use msec_validate::Valid;
use msec_validate::guard::{JsonLimits, check_json};
use serde::{Deserialize, Serialize};
use std::hint::black_box;
use validator::Validate;

#[derive(Debug, Serialize, Deserialize, Validate)]
struct Order {
    #[validate(length(min = 1, max = 64))]
    customer: String,
    #[validate(email)]
    email: String,
    #[validate(length(max = 200))]
    note: String,
    #[validate(nested)]
    items: Vec<Item>,
}

#[derive(Debug, Serialize, Deserialize, Validate)]
struct Item {
    #[validate(length(min = 3, max = 32))]
    sku: String,
    #[validate(range(min = 1, max = 1000))]
    quantity: u32,
    price: f64,
    tags: Vec<String>,
}

/// An order document of about `target` bytes.
fn document(target: usize) -> Bytes {
    let mut order = Order {
        customer: "Ada Lovelace".into(),
        email: "ada@example.com".into(),
        note: "leave at the door, ring twice \u{1F6AA}".into(),
        items: Vec::new(),
    };
    let mut i = 0;
    while serde_json::to_vec(&order).unwrap().len() < target {
        order.items.push(Item {
            sku: format!("SKU-{i:06}"),
            quantity: (i % 9 + 1) as u32,
            price: 12.5 + i as f64,
            tags: vec!["blue".into(), "cotton".into()],
        });
        i += 1;
    }
    order.items.pop();
    Bytes::from(serde_json::to_vec(&order).unwrap())
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let limits = JsonLimits::default();
    for (name, size) in [("1KiB", 1024), ("64KiB", 64 * 1024)] {
        let doc = document(size);
        let mut g = c.benchmark_group(format!("validate/{name}"));
        g.throughput(Throughput::Bytes(doc.len() as u64));
        g.bench_function(BenchmarkId::new("serde_from_slice+validate", doc.len()), |b| {
            b.iter(|| {
                let o: Order = serde_json::from_slice(black_box(&doc)).unwrap();
                o.validate().unwrap();
                o
            });
        });
        g.bench_function(BenchmarkId::new("guard_scan", doc.len()), |b| {
            b.iter(|| check_json(black_box(&doc), &limits).unwrap());
        });
        g.bench_function(BenchmarkId::new("serde_value", doc.len()), |b| {
            b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(&doc)).unwrap());
        });
        g.bench_function(BenchmarkId::new("guard+from_slice+validate", doc.len()), |b| {
            b.iter(|| {
                check_json(black_box(&doc), &limits).unwrap();
                let o: Order = serde_json::from_slice(&doc).unwrap();
                o.validate().unwrap();
                o
            });
        });
        g.bench_function(BenchmarkId::new("Valid<Json<T>>_extractor", doc.len()), |b| {
            b.iter(|| {
                let req = http::Request::post("/orders")
                    .header("content-type", "application/json")
                    .body(axum::body::Body::from(doc.clone()))
                    .unwrap();
                let Valid(Json(o)) = rt.block_on(Valid::<Json<Order>>::from_request(req, &())).unwrap();
                o
            });
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
