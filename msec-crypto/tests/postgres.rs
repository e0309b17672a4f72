//! On the real PostgreSQL: write encrypted rows (TEXT and BYTEA columns plus a blind index), rotate, rewrap the
//! table with the batch helper, disable the old key, read everything back.
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used, missing_docs)]

use futures_util::{StreamExt, TryStreamExt};
use msec_crypto::batch::{RewrapRecord, rewrap_stream};
use msec_crypto::{Algorithm, BlindIndexOptions, Context, Encrypted, Error, KeyStatus, Keyring};
use tokio_postgres::NoTls;

fn email_of(i: i64) -> String {
    format!("User{i}@Example.org")
}

#[tokio::test]
async fn encrypted_rows_survive_rotation_and_rewrap() {
    let Some(cfg) = msec_test_support::services::postgres_config().await else {
        return;
    };
    let (client, conn) = tokio_postgres::connect(&cfg, NoTls).await.unwrap();
    tokio::spawn(conn);
    let table = format!("msec_crypto_{}", uuid::Uuid::new_v4().simple());
    client
        .batch_execute(&format!(
            "CREATE TABLE {table} (id BIGINT PRIMARY KEY, email TEXT NOT NULL, email_idx BIGINT NOT NULL, salary BYTEA NOT NULL)"
        ))
        .await
        .unwrap();

    let mut keyring = Keyring::generate(Algorithm::Aes256Gcm).unwrap();
    let old_key = keyring.primary().unwrap();
    let idx_key = keyring.add_key(Algorithm::HmacSha256).unwrap();
    let idx = keyring
        .blind_index(
            idx_key,
            BlindIndexOptions::new(format!("{table}.email"))
                .bits(8)
                .unwrap()
                .lowercase(),
        )
        .unwrap();
    let email_ctx = |id: i64| Context::new(&table, "email", id.to_string());
    let salary_ctx = |id: i64| Context::new(&table, "salary", id.to_string());

    let insert = client
        .prepare(&format!("INSERT INTO {table} VALUES ($1, $2, $3, $4)"))
        .await
        .unwrap();
    for id in 0..60i64 {
        let email = Encrypted::seal(&keyring, &email_of(id), &email_ctx(id)).unwrap();
        let salary = Encrypted::seal(&keyring, &(50_000 + id), &salary_ctx(id)).unwrap();
        let i = idx.compute(&email_of(id)).to_i64().unwrap();
        client.execute(&insert, &[&id, &email, &i, &salary]).await.unwrap();
    }
    // What is stored is ciphertext only: the text form in TEXT, the binary form in BYTEA.
    let row = client
        .query_one(&format!("SELECT email, salary FROM {table} WHERE id = 7"), &[])
        .await
        .unwrap();
    let raw_email: String = row.get(0);
    assert!(raw_email.starts_with(&format!("msec:v1:{old_key}:")) && !raw_email.contains("User7"));
    let raw_salary: Vec<u8> = row.get(1);
    assert_eq!(raw_salary[0], 1);

    // Rotate (two-phase), then rewrap the whole table through the batch helper.
    let new_key = keyring.add_key(Algorithm::ChaCha20Poly1305).unwrap();
    keyring.promote(new_key).unwrap();
    let rows = client
        .query_raw(
            &format!("SELECT id, email FROM {table} ORDER BY id"),
            std::iter::empty::<i64>(),
        )
        .await
        .unwrap();
    let records = rows.map(|r| {
        let r = r.unwrap();
        let id: i64 = r.get(0);
        let email: Encrypted<String> = r.get(1);
        RewrapRecord {
            id,
            context: Context::new(&table, "email", id.to_string()),
            ciphertext: email.into_ciphertext(),
        }
    });
    let mut last = None;
    let outcomes: Vec<_> = rewrap_stream(&keyring, records, |p| last = Some(*p)).collect().await;
    assert_eq!(last.unwrap().rewrapped, 60);
    let update = client
        .prepare(&format!("UPDATE {table} SET email = $2 WHERE id = $1"))
        .await
        .unwrap();
    for o in outcomes {
        let ct = Encrypted::<String>::from_ciphertext(o.result.unwrap().unwrap());
        client.execute(&update, &[&o.id, &ct]).await.unwrap();
    }
    // Salaries are rewrapped row by row with Encrypted::rewrap.
    for r in client
        .query(&format!("SELECT id, salary FROM {table}"), &[])
        .await
        .unwrap()
    {
        let id: i64 = r.get(0);
        let s: Encrypted<i64> = r.get(1);
        let s = s.rewrap(&keyring, &salary_ctx(id)).unwrap();
        client
            .execute(&format!("UPDATE {table} SET salary = $2 WHERE id = $1"), &[&id, &s])
            .await
            .unwrap();
    }
    let left: i64 = client
        .query_one(
            &format!("SELECT count(*) FROM {table} WHERE email LIKE 'msec:v1:{old_key}:%'"),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "the text form lets SQL find rows still under the old key");

    // The old key can go: everything reads back.
    keyring.set_status(old_key, KeyStatus::Disabled).unwrap();
    let rows: Vec<_> = client
        .query_raw(
            &format!("SELECT id, email, salary FROM {table}"),
            std::iter::empty::<i64>(),
        )
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(rows.len(), 60);
    for r in &rows {
        let id: i64 = r.get(0);
        let email: Encrypted<String> = r.get(1);
        let salary: Encrypted<i64> = r.get(2);
        assert_eq!(email.ciphertext().key_id(), Some(new_key));
        assert_eq!(email.open(&keyring, &email_ctx(id)).unwrap(), email_of(id));
        assert_eq!(salary.open(&keyring, &salary_ctx(id)).unwrap(), 50_000 + id);
    }

    // Equality search through the blind index: candidates by index, then decrypt to drop false positives.
    let wanted = "user42@example.ORG";
    let candidates = client
        .query(
            &format!("SELECT id, email FROM {table} WHERE email_idx = $1"),
            &[&idx.compute(wanted).to_i64().unwrap()],
        )
        .await
        .unwrap();
    assert!(!candidates.is_empty());
    let hits: Vec<i64> = candidates
        .iter()
        .filter(|r| {
            let id: i64 = r.get(0);
            let e: Encrypted<String> = r.get(1);
            e.open(&keyring, &email_ctx(id)).unwrap().eq_ignore_ascii_case(wanted)
        })
        .map(|r| r.get(0))
        .collect();
    assert_eq!(hits, vec![42]);

    // A ciphertext copied to another row in SQL does not decrypt there.
    client
        .batch_execute(&format!(
            "UPDATE {table} SET email = (SELECT email FROM {table} WHERE id = 1) WHERE id = 2"
        ))
        .await
        .unwrap();
    let r = client
        .query_one(&format!("SELECT email FROM {table} WHERE id = 2"), &[])
        .await
        .unwrap();
    let copied: Encrypted<String> = r.get(0);
    assert!(matches!(copied.open(&keyring, &email_ctx(2)), Err(Error::Decrypt)));
    // A row that is not an msec ciphertext is a conversion error, not a panic.
    client
        .batch_execute(&format!("UPDATE {table} SET email = 'plain text' WHERE id = 3"))
        .await
        .unwrap();
    let r = client
        .query_one(&format!("SELECT email FROM {table} WHERE id = 3"), &[])
        .await
        .unwrap();
    assert!(r.try_get::<_, Encrypted<String>>(0).is_err());

    client.batch_execute(&format!("DROP TABLE {table}")).await.unwrap();
}
