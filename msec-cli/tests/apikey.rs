//! `msec apikey new` end to end on the built binary: the key comes once on stderr, the record on stdout; the
//! record loaded into a `MemoryApiKeyStore` accepts that key (and only it) through the `ApiKeyAuthenticator`.
#![allow(clippy::unwrap_used, missing_docs)]

use std::process::{Command, Output};

use msec_authn::apikey::{ApiKeyAuthenticator, ApiKeyRecord, KeyHasher, MemoryApiKeyStore, parse_key};
use msec_authn::{Attempt, Authenticator, AuthnResult, RequestHead};
use msec_core::secret::SecretBytes;

fn msec(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_msec")).args(args).output().unwrap()
}

/// Runs `msec apikey new ..`: (the key from stderr, the record line from stdout).
fn new_key(args: &[&str]) -> (String, String) {
    let mut all = vec!["apikey", "new"];
    all.extend_from_slice(args);
    let out = msec(&all);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "msec {all:?}: {stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "stdout is exactly the record: {stdout}");
    assert!(stderr.contains("shown only now"), "{stderr}");
    let keys: Vec<&str> = stderr.lines().filter(|l| parse_key(l.trim()).is_ok()).collect();
    assert_eq!(keys.len(), 1, "the key appears once: {stderr}");
    let key = keys[0].trim().to_owned();
    assert!(!stdout.contains(&key), "the record never holds the key");
    (key, stdout.trim().to_owned())
}

fn verify(authn: &ApiKeyAuthenticator, key: &str) -> AuthnResult {
    let req = http::Request::builder().header("x-api-key", key).body(()).unwrap();
    match authn.authenticate(&RequestHead::from_request(&req)) {
        Attempt::Claimed(f) => f.into_ready().unwrap(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn new_key_verifies_against_its_record() {
    let (key, line) = new_key(&[
        "--prefix",
        "sk_live",
        "--scopes",
        "orders:read,orders:write",
        "--subject",
        "billing-bot",
        "--tenant",
        "acme",
        "--expires-in",
        "90d",
    ]);
    assert!(key.starts_with("sk_live_"));
    let record: ApiKeyRecord = serde_json::from_str(&line).unwrap();
    assert_eq!(record.subject, "billing-bot");
    assert_eq!(record.scopes, ["orders:read", "orders:write"]);
    assert_eq!(record.tenant.as_deref(), Some("acme"));
    assert_eq!(record.digest_alg.as_str(), "sha256");
    assert_eq!(record.expires_at, Some(record.created_at + 90 * 86_400));
    assert_eq!(record.key_id, parse_key(&key).unwrap().key_id());

    let store = MemoryApiKeyStore::from_json_lines(&line).unwrap();
    let authn = ApiKeyAuthenticator::new(store, KeyHasher::sha256());
    let p = verify(&authn, &key).unwrap().principal;
    assert_eq!((p.subject.as_str(), p.tenant.as_deref()), ("billing-bot", Some("acme")));
    assert!(p.has_scope("orders:write"));
    // Another key from the same command is not in this store.
    let (other, _) = new_key(&["--prefix", "sk_live"]);
    assert_eq!(verify(&authn, &other).unwrap_err().code().as_str(), "invalid_api_key");
}

#[test]
fn peppered_records_need_the_pepper() {
    let dir = tempfile::tempdir().unwrap();
    let pepper = dir.path().join("pepper");
    std::fs::write(&pepper, [5u8; 32]).unwrap();
    let (key, line) = new_key(&["--prefix", "sk_test", "--pepper-file", pepper.to_str().unwrap()]);
    let record: ApiKeyRecord = serde_json::from_str(&line).unwrap();
    assert_eq!(record.digest_alg.as_str(), "hmac-sha256");
    assert_eq!(record.subject, record.key_id, "the subject defaults to the key id");
    let store = MemoryApiKeyStore::from_json_lines(&line).unwrap();
    let hasher = KeyHasher::hmac_sha256(&SecretBytes::new(vec![5; 32])).unwrap();
    assert!(verify(&ApiKeyAuthenticator::new(store.clone(), hasher), &key).is_ok());
    let plain = ApiKeyAuthenticator::new(store, KeyHasher::sha256());
    assert_eq!(verify(&plain, &key).unwrap_err().code().as_str(), "invalid_api_key");
}

#[test]
fn bad_arguments_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let short = dir.path().join("short");
    std::fs::write(&short, b"too short").unwrap();
    for (args, expect) in [
        (vec!["--prefix", "SK"], "invalid API key prefix"),
        (vec!["--prefix", "sk", "--expires-in", "5y"], "--expires-in"),
        (
            vec!["--prefix", "sk", "--pepper-file", short.to_str().unwrap()],
            "at least 32",
        ),
        (
            vec!["--prefix", "sk", "--pepper-file", "/nonexistent/pepper"],
            "/nonexistent/pepper",
        ),
        (vec!["--prefix", "sk", "--scopes", "a b"], "invalid scope"),
    ] {
        let mut all = vec!["apikey", "new"];
        all.extend_from_slice(&args);
        let out = msec(&all);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr.contains(expect), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "no record on failure");
    }
}

/// `msec apikey list` / `revoke` on a records file: the table shows every key with its status and no secret;
/// `revoke` marks exactly one line (every other line, comments included, stays byte for byte), is idempotent,
/// answers 1 for an unknown id, and the rewritten file is what the authenticator then refuses.
#[test]
fn list_and_revoke_in_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys.jsonl");
    let (key_a, line_a) = new_key(&[
        "--prefix",
        "sk_live",
        "--subject",
        "bot",
        "--scopes",
        "orders:read",
        "--expires-in",
        "1d",
    ]);
    let (key_b, line_b) = new_key(&["--prefix", "sk_live", "--subject", "other", "--tenant", "acme"]);
    let text = format!("# API keys of the orders service\n{line_a}\n\n{line_b}\n");
    std::fs::write(&file, &text).unwrap();
    let f = file.to_str().unwrap();
    let id_a = parse_key(&key_a).unwrap().key_id().to_owned();
    let id_b = parse_key(&key_b).unwrap().key_id().to_owned();

    let out = msec(&["apikey", "list", "--file", f]);
    assert!(out.status.success());
    let table = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(lines[0].starts_with("KEY_ID") && lines[0].contains("STATUS"), "{table}");
    let row_a = lines.iter().find(|l| l.starts_with(&id_a)).unwrap();
    assert!(
        row_a.contains(" bot ") && row_a.contains(" active ") && row_a.ends_with("orders:read"),
        "{row_a}"
    );
    let row_b = lines.iter().find(|l| l.starts_with(&id_b)).unwrap();
    assert!(row_b.contains(" acme ") && row_b.contains(" never "), "{row_b}");
    let digest_a: ApiKeyRecord = serde_json::from_str(&line_a).unwrap();
    assert!(
        !table.contains(&key_a) && !table.contains(&serde_json::to_string(&digest_a.digest).unwrap().replace('"', ""))
    );

    // --subject filters; --json prints the records themselves.
    let out = msec(&["apikey", "list", "--file", f, "--subject", "other", "--json"]);
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), line_b);

    let out = msec(&["apikey", "revoke", &id_a, "--file", f]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), format!("revoked {id_a}"));
    let after = std::fs::read_to_string(&file).unwrap();
    let changed: Vec<(&str, &str)> = text.lines().zip(after.lines()).filter(|(x, y)| x != y).collect();
    assert_eq!(after.lines().count(), text.lines().count());
    assert_eq!(changed.len(), 1, "only the revoked key's line changes: {after}");
    let mut expect: ApiKeyRecord = serde_json::from_str(&line_a).unwrap();
    expect.revoked = true;
    assert_eq!(serde_json::from_str::<ApiKeyRecord>(changed[0].1).unwrap(), expect);

    // Idempotent; an unknown id is exit status 1 and leaves the file alone.
    let again = msec(&["apikey", "revoke", &id_a, "--file", f]);
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stdout).contains("already"));
    let missing = msec(&["apikey", "revoke", "AAAAAAAAAAA", "--file", f]);
    assert_eq!(missing.status.code(), Some(1));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), after);
    let table = String::from_utf8(msec(&["apikey", "list", "--file", f]).stdout).unwrap();
    assert!(
        table.lines().any(|l| l.starts_with(&id_a) && l.contains(" revoked ")),
        "{table}"
    );

    // The service loading the file refuses the revoked key and still accepts the other.
    let store = MemoryApiKeyStore::from_file(&file).unwrap();
    let authn = ApiKeyAuthenticator::new(store, KeyHasher::sha256());
    assert_eq!(verify(&authn, &key_a).unwrap_err().code().as_str(), "api_key_revoked");
    assert!(verify(&authn, &key_b).is_ok());

    // No store named, or a broken file: exit status 2 with the reason.
    assert_eq!(msec(&["apikey", "list"]).status.code(), Some(2));
    std::fs::write(&file, "{\"key_id\":\n").unwrap();
    let broken = msec(&["apikey", "revoke", &id_b, "--file", f]);
    assert_eq!(broken.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&broken.stderr).contains("line 1"));
}

/// The same on a PostgreSQL table (`PgApiKeyStore`), the connection string from `MSEC_APIKEY_POSTGRES`.
#[test]
fn list_and_revoke_in_postgres() {
    use msec_authn::apikey::{ApiKeyStore as _, PgApiKeyStore};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let Some(conn) = rt.block_on(msec_test_support::services::postgres_config()) else {
        return;
    };
    let table = format!("msec_cli_test_{}", std::process::id());
    let store = PgApiKeyStore::new(&conn, &table).unwrap();
    let (key_a, line_a) = new_key(&["--prefix", "sk_live", "--subject", "bot"]);
    rt.block_on(async {
        store.migrate().await.unwrap();
        store.insert(serde_json::from_str(&line_a).unwrap()).await.unwrap();
    });
    // `new --postgres-table` stores the record itself (the key is shown only after it is stored).
    let out = Command::new(env!("CARGO_BIN_EXE_msec"))
        .args([
            "apikey",
            "new",
            "--prefix",
            "sk_live",
            "--subject",
            "other",
            "--postgres-table",
            &table,
        ])
        .env("MSEC_APIKEY_POSTGRES", &conn)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let line_b = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let record_b: ApiKeyRecord = serde_json::from_str(&line_b).unwrap();
    let stored = rt.block_on(store.get(&record_b.key_id)).unwrap().unwrap();
    assert_eq!(*stored, record_b);
    // Without the connection string, no key is shown.
    let out = msec(&["apikey", "new", "--prefix", "sk_live", "--postgres-table", &table]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("shown only now"));
    let id_a = parse_key(&key_a).unwrap().key_id().to_owned();
    let pg = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_msec"))
            .args(args)
            .env("MSEC_APIKEY_POSTGRES", &conn)
            .output()
            .unwrap()
    };
    let table_out = String::from_utf8(pg(&["apikey", "list", "--postgres-table", &table]).stdout).unwrap();
    assert_eq!(table_out.lines().count(), 3, "{table_out}");
    let only = String::from_utf8(
        pg(&[
            "apikey",
            "list",
            "--postgres-table",
            &table,
            "--subject",
            "bot",
            "--json",
        ])
        .stdout,
    )
    .unwrap();
    assert_eq!(
        serde_json::from_str::<ApiKeyRecord>(only.trim()).unwrap(),
        serde_json::from_str::<ApiKeyRecord>(&line_a).unwrap()
    );
    assert!(
        pg(&["apikey", "revoke", &id_a, "--postgres-table", &table])
            .status
            .success()
    );
    assert_eq!(
        pg(&["apikey", "revoke", "AAAAAAAAAAA", "--postgres-table", &table])
            .status
            .code(),
        Some(1)
    );
    let got = rt.block_on(store.get(&id_a)).unwrap().unwrap();
    assert!(got.revoked);
    // Without the environment variable: a clear refusal, not a connection attempt.
    let out = msec(&["apikey", "list", "--postgres-table", &table]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("MSEC_APIKEY_POSTGRES"));
    rt.block_on(async {
        let (client, c) = tokio_postgres::connect(&conn, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(c);
        client.batch_execute(&format!("DROP TABLE {table}")).await.unwrap();
    });
}
