//! Field encryption (msec-crypto): a service stores a patient's diagnosis as `Encrypted<String>` bound to its row,
//! the keyring rotates (add, promote, rewrap, disable), reads keep working, and a ciphertext copied to another
//! row or restored from an old backup fails with a stable code.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router, routing::get};
use bytes::Bytes;
use futures_util::StreamExt as _;
use http_body_util::Full;
use msec::crypto::batch::{RewrapRecord, rewrap_stream};
use msec::crypto::{Algorithm, Context, Encrypted, KeyStatus, Keyring};

use crate::{BoxError, Tour};

/// The "database": patient id → the stored column value (ciphertext text only).
type Table = Arc<Mutex<HashMap<u64, String>>>;

#[derive(Clone)]
struct AppState {
    keyring: Arc<RwLock<Keyring>>,
    table: Table,
}

fn ctx(id: u64) -> Context {
    Context::new("patients", "diagnosis", id.to_string())
}

fn problem(status: StatusCode, e: &msec::crypto::Error) -> Response {
    let r = msec::core::Rejection::new(status, e.reason_code(), "the stored value could not be decrypted");
    (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        r.problem_json(),
    )
        .into_response()
}

async fn put_patient(State(s): State<AppState>, Path(id): Path<u64>, Json(body): Json<serde_json::Value>) -> Response {
    let diagnosis = body["diagnosis"].as_str().unwrap_or_default().to_owned();
    let keyring = s.keyring.read().unwrap().clone();
    match Encrypted::seal(&keyring, &diagnosis, &ctx(id)) {
        Ok(e) => {
            s.table.lock().unwrap().insert(id, e.to_text());
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => problem(StatusCode::INTERNAL_SERVER_ERROR, &e),
    }
}

async fn get_patient(State(s): State<AppState>, Path(id): Path<u64>) -> Response {
    let Some(stored) = s.table.lock().unwrap().get(&id).cloned() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let keyring = s.keyring.read().unwrap().clone();
    let opened = Encrypted::<String>::from_text(&stored).and_then(|e| e.open(&keyring, &ctx(id)).map(|v| (e, v)));
    match opened {
        Ok((e, v)) => {
            let key = e.ciphertext().key_id().map(|k| k.to_string()).unwrap_or_default();
            Json(serde_json::json!({ "diagnosis": v, "key": key })).into_response()
        }
        Err(e) => problem(StatusCode::INTERNAL_SERVER_ERROR, &e),
    }
}

fn put(url: &str, body: &str) -> http::Request<Full<Bytes>> {
    http::Request::put(url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap()
}

pub(crate) async fn run(tour: &mut Tour) -> Result<(), BoxError> {
    let state = AppState {
        keyring: Arc::new(RwLock::new(Keyring::generate(Algorithm::Aes256Gcm)?)),
        table: Arc::new(Mutex::new(HashMap::new())),
    };
    let app = Router::new()
        .route("/v1/patients/{id}", get(get_patient).put(put_patient))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });

    let s = "crypto";
    for (id, d) in [(1, "J45.909 asthma"), (2, "E11.9 diabetes"), (3, "I10 hypertension")] {
        let a = tour
            .send(put(
                &format!("{base}/v1/patients/{id}"),
                &format!(r#"{{"diagnosis":"{d}"}}"#),
            ))
            .await?;
        tour.record(s, &format!("PUT /v1/patients/{id} (stored encrypted)"), &a, (204, "-"));
    }
    let stored = state.table.lock().unwrap()[&1].clone();
    let old_key = state.keyring.read().unwrap().primary().ok_or("no primary")?;
    let ok = stored.starts_with(&format!("msec:v1:{old_key}:")) && !stored.contains("asthma");
    tour.note(s, &format!("row 1 holds {}…", &stored[..24]), "ciphertext", "-", ok);
    let a = tour.send(crate::get(&format!("{base}/v1/patients/1"), &[])).await?;
    tour.record(s, "GET /v1/patients/1", &a, (200, "-"));
    let backup_of_3 = state.table.lock().unwrap()[&3].clone();

    // Rotation, phase 1 and 2: add a key (deployed everywhere), then promote it.
    let new_key = {
        let mut k = state.keyring.write().unwrap();
        let id = k.add_key(Algorithm::Aes256Gcm)?;
        k.promote(id)?;
        id
    };
    tour.note(s, &format!("rotate: add + promote key {new_key}"), "primary", "-", true);
    let a = tour.send(crate::get(&format!("{base}/v1/patients/1"), &[])).await?;
    let read_old = serde_json::from_slice::<serde_json::Value>(&a.body)?["key"] == old_key.to_string();
    tour.record(s, "GET /v1/patients/1 (still under the old key)", &a, (200, "-"));
    tour.note(
        s,
        "  ...decrypted with the old key",
        if read_old { "old key" } else { "?" },
        "-",
        read_old,
    );

    // Rewrap the table with the batch helper: plaintext never leaves the keyring.
    let keyring = state.keyring.read().unwrap().clone();
    let rows: Vec<(u64, String)> = state
        .table
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| (*k, v.clone()))
        .collect();
    let mut records = Vec::new();
    for (id, text) in rows {
        records.push(RewrapRecord {
            id,
            context: ctx(id),
            ciphertext: text.parse()?,
        });
    }
    let mut progress = None;
    let outcomes: Vec<_> = rewrap_stream(&keyring, futures_util::stream::iter(records), |p| progress = Some(*p))
        .collect()
        .await;
    for o in outcomes {
        if let Ok(Some(ct)) = o.result {
            state.table.lock().unwrap().insert(o.id, ct.to_text());
        }
    }
    let p = progress.unwrap_or_default();
    tour.note(
        s,
        &format!("rewrap table: {} rows to key {new_key}", p.rewrapped),
        "rewrapped",
        "-",
        p.rewrapped == 3,
    );

    // Retire the old key.
    state
        .keyring
        .write()
        .unwrap()
        .set_status(old_key, KeyStatus::Disabled)?;
    let a = tour.send(crate::get(&format!("{base}/v1/patients/1"), &[])).await?;
    let read_new = serde_json::from_slice::<serde_json::Value>(&a.body)?["key"] == new_key.to_string();
    tour.record(s, "GET /v1/patients/1 (rewrapped, old key disabled)", &a, (200, "-"));
    tour.note(
        s,
        "  ...decrypted with the new key",
        if read_new { "new key" } else { "?" },
        "-",
        read_new,
    );

    // Someone with database access copies patient 1's diagnosis into patient 2's row.
    let copied = state.table.lock().unwrap()[&1].clone();
    state.table.lock().unwrap().insert(2, copied);
    let a = tour.send(crate::get(&format!("{base}/v1/patients/2"), &[])).await?;
    tour.record(
        s,
        "GET /v1/patients/2 (row 1's ciphertext copied in)",
        &a,
        (500, "decrypt_failed"),
    );

    // An old backup of row 3 (under the now-disabled key) is restored.
    state.table.lock().unwrap().insert(3, backup_of_3);
    let a = tour.send(crate::get(&format!("{base}/v1/patients/3"), &[])).await?;
    tour.record(
        s,
        "GET /v1/patients/3 (restored pre-rotation backup)",
        &a,
        (500, "key_disabled"),
    );
    Ok(())
}
