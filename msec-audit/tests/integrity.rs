//! Tampering, truncation, rotation and restarts: the verifier finds the first bad record.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use msec_audit::chain::ChainHead;
use msec_audit::sink::file::{anchor_path, log_files};
use msec_audit::{AuditLog, DataAccess, FailureKind, FileSink, MemorySink, PublicKey, Verifier};
use msec_test_support::FakeClock;
use proptest::prelude::*;

async fn write_log(dir: &Path, events: usize, checkpoint_every: u64) -> PublicKey {
    let (signer, public) = common::key_pair();
    let log = AuditLog::builder()
        .signer(signer)
        .checkpoint_every(checkpoint_every, Duration::from_secs(3600))
        .start(FileSink::new(dir).unwrap())
        .unwrap();
    for i in 0..events {
        log.emit(DataAccess::read("customer", format!("c-{i}")).purpose("test"))
            .await
            .unwrap();
        if i % 7 == 0 {
            log.flush().await.unwrap();
        }
    }
    log.shutdown().await.unwrap();
    public
}

fn lines(path: &Path) -> Vec<Vec<u8>> {
    let data = std::fs::read(path).unwrap();
    data.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

fn join(lines: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for l in lines {
        out.extend_from_slice(l);
        out.push(b'\n');
    }
    out
}

fn seq_of(line: &[u8]) -> u64 {
    serde_json::from_slice::<serde_json::Value>(line).unwrap()["seq"]
        .as_u64()
        .unwrap()
}

fn is_checkpoint(line: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(line).unwrap()["kind"] == "checkpoint"
}

fn only_file(dir: &Path) -> PathBuf {
    let files = log_files(dir, "audit").unwrap();
    assert_eq!(files.len(), 1);
    files[0].clone()
}

#[tokio::test]
async fn intact_log_verifies_and_matches_the_schema() {
    let dir = tempfile::tempdir().unwrap();
    let public = write_log(dir.path(), 40, 10).await;
    let file = only_file(dir.path());
    let anchor = std::fs::read(anchor_path(dir.path(), "audit")).unwrap();
    let report = Verifier::new([public])
        .with_anchor(&anchor)
        .unwrap()
        .verify_files(&[&file])
        .unwrap();
    // genesis + 40 events + checkpoints every 10 records + the closing checkpoint
    assert_eq!(report.first_seq, Some(0));
    assert!(report.checkpoints >= 5, "{report}");
    assert_eq!(report.unsigned_tail, 0, "the closing checkpoint covers everything");
    assert_eq!(report.anchor_seq, report.last_seq);
    common::assert_schema_valid(&std::fs::read(&file).unwrap());
}

#[tokio::test]
async fn flipping_any_byte_fails_at_that_record() {
    let dir = tempfile::tempdir().unwrap();
    let public = write_log(dir.path(), 40, 10).await;
    let ls = lines(&only_file(dir.path()));
    let v = Verifier::new([public]);
    let target = ls.iter().position(|l| seq_of(l) == 17).unwrap();
    for pos in (0..ls[target].len()).step_by(3) {
        let mut t = ls.clone();
        t[target][pos] ^= 0x01;
        let err = v.verify_bytes(&join(&t)).unwrap_err();
        assert_eq!(err.seq, Some(17), "byte {pos}: {err}");
        assert_eq!(err.verified, 17);
    }
    // The content change a reader would care about.
    let mut t = ls.clone();
    let s = String::from_utf8(t[target].clone())
        .unwrap()
        .replace("\"purpose\":\"test\"", "\"purpose\":\"tEst\"");
    t[target] = s.into_bytes();
    let err = v.verify_bytes(&join(&t)).unwrap_err();
    assert_eq!((err.seq, err.kind), (Some(17), FailureKind::Modified));
}

#[tokio::test]
async fn deleting_or_swapping_lines_fails_at_the_right_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let public = write_log(dir.path(), 40, 10).await;
    let ls = lines(&only_file(dir.path()));
    let v = Verifier::new([public]);

    let mut deleted = ls.clone();
    deleted.remove(23);
    let err = v.verify_bytes(&join(&deleted)).unwrap_err();
    assert_eq!(
        (err.seq, err.kind.clone()),
        (Some(23), FailureKind::WrongSequence { found: 24 }),
        "{err}"
    );
    assert!(err.to_string().starts_with("record 23"), "{err}");

    let mut swapped = ls.clone();
    swapped.swap(30, 31);
    let err = v.verify_bytes(&join(&swapped)).unwrap_err();
    assert_eq!(
        (err.seq, err.kind),
        (Some(30), FailureKind::WrongSequence { found: 31 })
    );

    let mut first_deleted = ls.clone();
    first_deleted.remove(0);
    let err = v.verify_bytes(&join(&first_deleted)).unwrap_err();
    assert_eq!((err.seq, err.kind), (Some(1), FailureKind::Unanchored));
}

#[tokio::test]
async fn truncation_after_a_checkpoint_is_caught_by_the_anchor() {
    let dir = tempfile::tempdir().unwrap();
    let public = write_log(dir.path(), 40, 10).await;
    let file = only_file(dir.path());
    let ls = lines(&file);
    let anchor = std::fs::read(anchor_path(dir.path(), "audit")).unwrap();
    let anchor_seq = seq_of(&anchor);
    assert_eq!(
        anchor_seq,
        seq_of(ls.last().unwrap()),
        "the anchor is the closing checkpoint"
    );

    // Cut the file right after an earlier checkpoint: the tail, closing checkpoint included, is gone.
    let cp = ls
        .iter()
        .rposition(|l| is_checkpoint(l) && seq_of(l) < anchor_seq)
        .unwrap();
    let cut = join(&ls[..=cp]);
    let cut_seq = seq_of(&ls[cp]);
    let v = Verifier::new([public.clone()]).with_anchor(&anchor).unwrap();
    let err = v.verify_bytes(&cut).unwrap_err();
    assert_eq!(
        (err.seq, err.kind),
        (Some(cut_seq + 1), FailureKind::Truncated { anchor_seq })
    );

    // Without the anchor the cut is invisible: that is what the anchor is for.
    assert!(Verifier::new([public.clone()]).verify_bytes(&cut).is_ok());

    // Cut mid-line: the torn tail is tolerated, the anchor still catches the truncation.
    let mut torn = join(&ls[..=cp]);
    torn.extend_from_slice(&ls[cp + 1][..20]);
    let err = v.verify_bytes(&torn).unwrap_err();
    assert_eq!(err.seq, Some(cut_seq + 1));

    // A rewritten anchor (another log's checkpoint, or a forged one) is refused.
    let mut bad_anchor = anchor.clone();
    let n = bad_anchor.len();
    bad_anchor[n - 10] ^= 1;
    assert!(Verifier::new([public]).with_anchor(&bad_anchor).is_err());
}

/// Someone without the key rewrites record 12 and recomputes every later hash: the chain is consistent
/// again, but the next checkpoint's signature no longer verifies.
#[tokio::test]
async fn a_consistent_rewrite_without_the_key_fails_at_the_next_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let public = write_log(dir.path(), 40, 10).await;
    let ls = lines(&only_file(dir.path()));
    let sha = |b: &[u8]| {
        let d = ring::digest::digest(&ring::digest::SHA256, b);
        d.as_ref().iter().map(|x| format!("{x:02x}")).collect::<String>()
    };
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut prev = String::new();
    for (i, l) in ls.iter().enumerate() {
        let mut s = String::from_utf8(l.clone()).unwrap();
        let body_end = s.len() - 75;
        s.truncate(body_end);
        if i > 12 {
            let old_prev = &s[s.find("\"prev\":\"").unwrap() + 8..][..64].to_owned();
            s = s.replace(old_prev, &prev);
        }
        if i == 12 {
            s = s.replace("c-11", "c-99");
        }
        let h = sha(s.as_bytes());
        s.push_str(&format!(",\"hash\":\"{h}\"}}"));
        prev = h;
        out.push(s.into_bytes());
    }
    let v = Verifier::new([public]);
    let err = v.verify_bytes(&join(&out)).unwrap_err();
    let next_cp = ls
        .iter()
        .skip(13)
        .find(|l| is_checkpoint(l))
        .map(|l| seq_of(l))
        .unwrap();
    assert_eq!((err.seq, err.kind), (Some(next_cp), FailureKind::BadSignature));
    // The chain-only check, which proves nothing against a deliberate attacker, passes.
    assert!(Verifier::danger_chain_only().verify_bytes(&join(&out)).is_ok());
}

#[tokio::test]
async fn an_unknown_key_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), 3, 10).await;
    let (_, other) = common::key_pair();
    let err = Verifier::new([other])
        .verify_files(&[only_file(dir.path())])
        .unwrap_err();
    assert_eq!(err.seq, Some(0));
    assert!(matches!(err.kind, FailureKind::UnknownKey(_)));
}

#[tokio::test]
async fn the_chain_continues_across_rotation_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let pem = msec_audit::CheckpointSigner::generate_pkcs8_pem().unwrap();
    let signer = || msec_audit::CheckpointSigner::from_pkcs8_pem(pem.expose_secret()).unwrap();
    let public = signer().public_key();
    for round in 0..2 {
        let sink = FileSink::builder(dir.path()).max_bytes(2_000).build().unwrap();
        let log = AuditLog::builder().signer(signer()).start(sink).unwrap();
        for i in 0..30 {
            log.emit(DataAccess::read("customer", format!("r{round}-{i}")))
                .await
                .unwrap();
            log.flush().await.unwrap();
        }
        log.shutdown().await.unwrap();
    }
    let files = log_files(dir.path(), "audit").unwrap();
    assert!(files.len() > 4, "rotated into {} files", files.len());
    let report = Verifier::new([public.clone()]).verify_files(&files).unwrap();
    assert_eq!(report.records, report.last_seq.unwrap() + 1);
    let log_ids: std::collections::HashSet<_> = files
        .iter()
        .map(|f| {
            let first = lines(f)[0].clone();
            serde_json::from_slice::<serde_json::Value>(&first).unwrap()["log"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(log_ids.len(), 1, "one log id across restarts");
    // Each file starts with a checkpoint, so a later file verifies alone.
    let last = Verifier::new([public.clone()])
        .verify_files(&files[files.len() - 2..])
        .unwrap();
    assert!(last.first_seq.unwrap() > 0);
    // A file removed from the middle is caught at its first record.
    let mut missing = files.clone();
    let removed = missing.remove(2);
    let first_missing = seq_of(&lines(&removed)[0]);
    let err = Verifier::new([public]).verify_files(&missing).unwrap_err();
    assert_eq!(err.seq, Some(first_missing));
}

#[tokio::test]
async fn time_rotation_follows_the_injected_clock() {
    let dir = tempfile::tempdir().unwrap();
    let clock = FakeClock::new(std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000));
    let sink = FileSink::builder(dir.path())
        .max_age(Duration::from_secs(3600))
        .build()
        .unwrap();
    let (signer, public) = common::key_pair();
    let log = AuditLog::builder()
        .signer(signer)
        .clock(Arc::new(clock.clone()))
        .start(sink)
        .unwrap();
    log.emit(DataAccess::read("a", "1")).await.unwrap();
    log.flush().await.unwrap();
    assert_eq!(log_files(dir.path(), "audit").unwrap().len(), 1);
    clock.advance(Duration::from_secs(3599));
    log.emit(DataAccess::read("a", "2")).await.unwrap();
    log.flush().await.unwrap();
    assert_eq!(log_files(dir.path(), "audit").unwrap().len(), 1);
    clock.advance(Duration::from_secs(2));
    log.emit(DataAccess::read("a", "3")).await.unwrap();
    log.flush().await.unwrap();
    log.shutdown().await.unwrap();
    let files = log_files(dir.path(), "audit").unwrap();
    assert_eq!(files.len(), 2);
    let second = lines(&files[1]);
    let first: serde_json::Value = serde_json::from_slice(&second[0]).unwrap();
    assert_eq!(
        (first["kind"].as_str(), first["reason"].as_str()),
        (Some("checkpoint"), Some("rotate"))
    );
    Verifier::new([public]).verify_files(&files).unwrap();
}

#[test]
fn a_log_id_mismatch_refuses_to_start() {
    let mut sink = MemorySink::new();
    let _ = msec_audit::Sink::open(&mut sink);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (s1, _) = common::key_pair();
    let log = AuditLog::builder()
        .signer(s1)
        .log_id("svc-a")
        .start(sink.clone())
        .unwrap();
    rt.block_on(log.shutdown()).unwrap();
    let (s2, _) = common::key_pair();
    let err = AuditLog::builder()
        .signer(s2)
        .log_id("svc-b")
        .start(sink.clone())
        .unwrap_err();
    assert!(matches!(err, msec_audit::AuditError::LogIdMismatch { .. }), "{err}");
    assert!(matches!(
        AuditLog::builder().start(MemorySink::new()).unwrap_err(),
        msec_audit::AuditError::NoSigner
    ));
    let _: Option<ChainHead> = None;
}

/// The body of the `audit_verify` fuzz target: untrusted bytes never panic the verifier.
fn fuzz_body(data: &[u8], public: &PublicKey) {
    let _ = Verifier::danger_chain_only().verify_bytes(data);
    let _ = Verifier::new([public.clone()]).verify_bytes(data);
    if let Ok(v) = Verifier::new([public.clone()]).with_anchor(data) {
        let _ = v.verify_bytes(data);
    }
}

fn sample_log() -> (Vec<u8>, PublicKey, Vec<u8>) {
    static LOG: std::sync::OnceLock<(Vec<u8>, PublicKey, Vec<u8>)> = std::sync::OnceLock::new();
    LOG.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (signer, public) = common::key_pair();
        let sink = MemorySink::new();
        let log = AuditLog::builder()
            .signer(signer)
            .checkpoint_every(4, Duration::from_secs(3600))
            .start(sink.clone())
            .unwrap();
        rt.block_on(async {
            for i in 0..10 {
                log.emit(DataAccess::read("t", i.to_string())).await.unwrap();
            }
            log.shutdown().await.unwrap();
        });
        let data = sink.contents();
        let last = sink.records().last().unwrap().line.clone();
        (data, public, last)
    })
    .clone()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn fuzz_verify_arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let (_, public, _) = sample_log();
        fuzz_body(&data, &public);
    }

    #[test]
    fn fuzz_verify_mutated_logs(pos in any::<prop::sample::Index>(), byte in any::<u8>(), cut in any::<prop::sample::Index>()) {
        let (mut data, public, anchor) = sample_log();
        fuzz_body(&data, &public);
        let i = pos.index(data.len());
        let changed = data[i] != byte;
        data[i] = byte;
        fuzz_body(&data, &public);
        // With the closing checkpoint as anchor, any single changed byte is detected.
        let v = Verifier::new([public.clone()]).with_anchor(&anchor).unwrap();
        if changed {
            prop_assert!(v.verify_bytes(&data).is_err());
        }
        let c = cut.index(data.len());
        fuzz_body(&data[..c], &public);
    }
}
