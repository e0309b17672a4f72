//! `msec audit keygen | verify | tail` on a real log.
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::Path;
use std::process::Command;

use msec_audit::sink::file::log_files;
use msec_audit::{AuditLog, CheckpointSigner, DataAccess, FileSink};

fn msec(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_msec")).args(args).output().unwrap();
    (
        out.status.code().unwrap(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn write_log(dir: &Path, key: &Path) {
    let pem = std::fs::read_to_string(key).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let log = AuditLog::builder()
            .signer(CheckpointSigner::from_pkcs8_pem(&pem).unwrap())
            .start(FileSink::new(dir).unwrap())
            .unwrap();
        for i in 0..20 {
            log.emit(DataAccess::read("customer", format!("c-{i}"))).await.unwrap();
        }
        log.emit(DataAccess::read("customer", "evil\u{1b}[2J\nline"))
            .await
            .unwrap();
        log.shutdown().await.unwrap();
    });
}

#[test]
fn keygen_verify_tamper_tail() {
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("audit.key.pem");
    let public = tmp.path().join("audit.pub.pem");
    let (code, out) = msec(&[
        "audit",
        "keygen",
        "--out",
        key.to_str().unwrap(),
        "--public-out",
        public.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}");
    let logs = tmp.path().join("logs");
    write_log(&logs, &key);

    let (code, out) = msec(&[
        "audit",
        "verify",
        logs.to_str().unwrap(),
        "--public-key",
        public.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("OK: 1 files, 23 records (seq 0..22)"), "{out}");
    assert!(out.contains("anchor at seq 22 matched"), "{out}");

    // Tamper: one byte of record 5.
    let file = log_files(&logs, "audit").unwrap().remove(0);
    let data = std::fs::read_to_string(&file).unwrap();
    let tampered = data.replacen("\"c-4\"", "\"c-X\"", 1);
    std::fs::write(&file, tampered).unwrap();
    let (code, out) = msec(&[
        "audit",
        "verify",
        file.to_str().unwrap(),
        "--public-key",
        public.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FAILED: first bad record: record 5"), "{out}");
    assert!(out.contains("modified"), "{out}");

    // Truncated after a checkpoint: the anchor in the directory catches it.
    std::fs::write(
        &file,
        data.lines().take(10).map(|l| format!("{l}\n")).collect::<String>(),
    )
    .unwrap();
    let (code, out) = msec(&[
        "audit",
        "verify",
        logs.to_str().unwrap(),
        "--public-key",
        public.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("record 10") && out.contains("truncated"), "{out}");
    std::fs::write(&file, &data).unwrap();

    // Wrong key.
    let other = tmp.path().join("other.pem");
    std::fs::write(&other, CheckpointSigner::ephemeral().unwrap().public_key().to_pem()).unwrap();
    let (code, out) = msec(&[
        "audit",
        "verify",
        logs.to_str().unwrap(),
        "--public-key",
        other.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{out}");

    let (code, out) = msec(&[
        "audit",
        "tail",
        logs.to_str().unwrap(),
        "-n",
        "3",
        "--kind",
        "data_access",
    ]);
    assert_eq!(code, 0, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[0].contains("read customer/c-18"), "{out}");
    assert!(
        lines[2].contains(r"evil\x1b[2J\x0aline"),
        "control characters neutralised: {out}"
    );
    assert!(!out.contains('\u{1b}'));
    let (code, out) = msec(&[
        "audit",
        "tail",
        logs.to_str().unwrap(),
        "--kind",
        "checkpoint",
        "--json",
    ]);
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 2, "{out}");
}
