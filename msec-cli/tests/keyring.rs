//! `msec keyring ...` end to end on the built binary: new, show, rotate, promote, rewrap, set-status.
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use msec_crypto::{Ciphertext, Context, Keyring, LocalKms};

fn msec(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_msec")).args(args).output().unwrap()
}

fn ok(args: &[&str]) -> String {
    let out = msec(args);
    assert!(
        out.status.success(),
        "msec {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn tempdir() -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = std::env::temp_dir().join(format!("msec-cli-keyring-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn load(keyring: &Path, master: &Path) -> Keyring {
    use futures_util::FutureExt as _;
    let kms = LocalKms::load(master).unwrap();
    let json = std::fs::read_to_string(keyring).unwrap();
    Keyring::from_json(&json, &kms).now_or_never().unwrap().unwrap()
}

#[test]
fn keyring_lifecycle() {
    let dir = tempdir();
    let kr = dir.join("keyring.json");
    let mk = dir.join("master.json");
    let (k, m) = (kr.to_str().unwrap(), mk.to_str().unwrap());

    let out = ok(&[
        "keyring",
        "new",
        "-k",
        k,
        "-m",
        m,
        "--create-master-key",
        "--with-index-key",
    ]);
    assert!(
        out.contains("created master key file") && out.contains("with primary key"),
        "{out}"
    );
    // Never overwrites.
    assert!(!msec(&["keyring", "new", "-k", k, "-m", m]).status.success());

    let keyring = load(&kr, &mk);
    let first = keyring.primary().unwrap();
    assert_eq!(keyring.keys().len(), 2);

    // `show` prints metadata without the master key and without secrets.
    let shown = ok(&["keyring", "show", "-k", k]);
    assert!(shown.contains(&first.to_string()) && shown.contains("aes-256-gcm") && shown.contains("hmac-sha256"));
    let plain = keyring.danger_to_plaintext_json();
    let v: serde_json::Value = serde_json::from_str(&plain).unwrap();
    for key in v["keys"].as_array().unwrap() {
        let material = key["danger_plaintext"].as_str().unwrap();
        assert!(!shown.contains(material));
        assert!(
            !std::fs::read_to_string(&kr).unwrap().contains(material),
            "material in the keyring file"
        );
    }
    let json: serde_json::Value = serde_json::from_str(&ok(&["keyring", "show", "-k", k, "--json"])).unwrap();
    assert_eq!(json["primary"], first.to_string());

    // Some records encrypted under the first key.
    let mut lines = String::new();
    for i in 0..200 {
        let ctx = Context::new("users", "email", i.to_string());
        let ct = keyring
            .encrypt(format!("user{i}@example.org").as_bytes(), &ctx)
            .unwrap();
        lines.push_str(&format!(
            "{{\"id\":{i},\"table\":\"users\",\"column\":\"email\",\"record\":\"{i}\",\"ciphertext\":\"{ct}\"}}\n"
        ));
    }
    std::fs::write(dir.join("in.jsonl"), &lines).unwrap();

    // Rotate (phase 1): the new key is not primary.
    let out = ok(&[
        "keyring",
        "rotate",
        "-k",
        k,
        "-m",
        m,
        "--algorithm",
        "chacha20-poly1305",
    ]);
    assert!(out.contains("promote"), "{out}");
    let keyring = load(&kr, &mk);
    assert_eq!(keyring.primary(), Some(first));
    let second = keyring
        .keys()
        .into_iter()
        .find(|i| i.algorithm.name() == "chacha20-poly1305")
        .unwrap()
        .id;

    // Promote (phase 2), retiring the previous primary to decrypt-only.
    ok(&[
        "keyring",
        "promote",
        "-k",
        k,
        "-m",
        m,
        &second.to_string(),
        "--retire-previous",
    ]);
    let keyring = load(&kr, &mk);
    assert_eq!(keyring.primary(), Some(second));
    assert_eq!(keyring.key(first).unwrap().status.name(), "decrypt-only");

    // Rewrap the records.
    let (input, output) = (dir.join("in.jsonl"), dir.join("out.jsonl"));
    let out = ok(&[
        "keyring",
        "rewrap",
        "-k",
        k,
        "-m",
        m,
        "-i",
        input.to_str().unwrap(),
        "-o",
        output.to_str().unwrap(),
        "-q",
    ]);
    assert!(out.contains("rewrapped 200, unchanged 0, failed 0"), "{out}");
    let rewrapped = std::fs::read_to_string(&output).unwrap();
    assert!(!rewrapped.contains("example.org"), "plaintext in rewrap output");
    ok(&[
        "keyring",
        "set-status",
        "-k",
        k,
        "-m",
        m,
        &first.to_string(),
        "disabled",
    ]);
    let keyring = load(&kr, &mk);
    for line in rewrapped.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["status"], "rewrapped");
        let ct: Ciphertext = v["ciphertext"].as_str().unwrap().parse().unwrap();
        assert_eq!(ct.key_id(), Some(second));
        let i = v["id"].as_u64().unwrap();
        let ctx = Context::new("users", "email", i.to_string());
        assert_eq!(
            &*keyring.decrypt(&ct, &ctx).unwrap(),
            format!("user{i}@example.org").as_bytes()
        );
    }

    // Records under the disabled key fail with a code, and the command says so.
    let out = msec(&[
        "keyring",
        "rewrap",
        "-k",
        k,
        "-m",
        m,
        "-i",
        input.to_str().unwrap(),
        "-o",
        output.to_str().unwrap(),
        "-q",
    ]);
    assert!(!out.status.success());
    let failed = std::fs::read_to_string(&output).unwrap();
    assert!(
        failed.lines().all(|l| l.contains("\"error\":\"key_disabled\"")),
        "{failed}"
    );

    // Errors are messages, not panics.
    for args in [
        vec!["keyring", "promote", "-k", k, "-m", m, "nothex!!"],
        vec!["keyring", "promote", "-k", k, "-m", m, "00000000"],
        vec![
            "keyring",
            "set-status",
            "-k",
            k,
            "-m",
            m,
            &second.to_string(),
            "disabled",
        ],
        vec!["keyring", "rotate", "-k", k, "-m", m, "--algorithm", "des"],
        vec!["keyring", "show", "-k", "/nonexistent/keyring.json"],
    ] {
        let out = msec(&args);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.starts_with("error:") && !err.contains("panicked"),
            "{args:?}: {err}"
        );
    }
    // The wrong master key cannot open the keyring.
    let other = dir.join("other.json");
    LocalKms::generate().unwrap().save_new(&other).unwrap();
    assert!(
        !msec(&["keyring", "rotate", "-k", k, "-m", other.to_str().unwrap()])
            .status
            .success()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
