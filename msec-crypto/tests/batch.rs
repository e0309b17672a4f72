//! The batch re-encryption helper over a stream of records.
#![allow(clippy::unwrap_used, missing_docs)]

use futures_util::{StreamExt, stream};
use msec_crypto::batch::{Progress, RewrapRecord, rewrap_stream};
use msec_crypto::{Algorithm, Context, Error, KeyStatus, Keyring};

#[tokio::test]
async fn rewraps_what_needs_it_and_reports_progress() {
    let mut k = Keyring::generate(Algorithm::Aes256Gcm).unwrap();
    let k1 = k.primary().unwrap();
    let mut records = Vec::new();
    for i in 0..30u32 {
        let ctx = Context::new("t", "c", i.to_string());
        records.push(RewrapRecord {
            id: i,
            ciphertext: k.encrypt(&i.to_be_bytes(), &ctx).unwrap(),
            context: ctx,
        });
    }
    let k2 = k.add_key(Algorithm::Aes256Gcm).unwrap();
    k.promote(k2).unwrap();
    // Ten records are already under the new key; one has a wrong context.
    for r in records.iter_mut().skip(20) {
        r.ciphertext = k.rewrap(&r.ciphertext, &r.context).unwrap();
    }
    records[5].context = Context::new("t", "c", "elsewhere");

    let mut seen = Vec::new();
    let outcomes: Vec<_> = rewrap_stream(&k, stream::iter(records.clone()), |p| seen.push(*p))
        .collect()
        .await;
    assert_eq!(outcomes.len(), 30);
    assert_eq!(seen.len(), 30);
    assert_eq!(
        seen.last().unwrap(),
        &Progress {
            processed: 30,
            rewrapped: 19,
            unchanged: 10,
            failed: 1
        }
    );
    assert!(seen.windows(2).all(|w| w[1].processed == w[0].processed + 1));
    for o in &outcomes {
        match (&o.result, o.id) {
            (Err(Error::Decrypt), 5) => {}
            (Ok(None), id) => assert!(id >= 20),
            (Ok(Some(ct)), id) => {
                assert!(id < 20);
                assert_eq!(ct.key_id(), Some(k2));
                let ctx = Context::new("t", "c", id.to_string());
                assert_eq!(&*k.decrypt(ct, &ctx).unwrap(), &id.to_be_bytes());
            }
            (r, id) => panic!("{id}: {r:?}"),
        }
    }
    // After the rewrap the old key can be disabled without losing anything that was rewrapped.
    k.set_status(k1, KeyStatus::Disabled).unwrap();
    for o in outcomes {
        if let Ok(Some(ct)) = o.result {
            assert!(k.decrypt(&ct, &Context::new("t", "c", o.id.to_string())).is_ok());
        }
    }
}
