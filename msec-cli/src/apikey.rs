//! `msec apikey`: make, list and revoke API keys.
//!
//! ```text
//! msec apikey new --prefix sk_live --scopes orders:read,orders:write --subject billing-bot --expires-in 90d \
//!     >> api-keys.jsonl
//! msec apikey list --file api-keys.jsonl [--subject billing-bot] [--json]
//! msec apikey revoke 3kTMd9XqPzA --file api-keys.jsonl
//! MSEC_APIKEY_POSTGRES="host=db user=ops dbname=app" msec apikey new --prefix sk_live --subject ci \
//!     --postgres-table msec_api_keys
//! MSEC_APIKEY_POSTGRES="host=db user=ops dbname=app" msec apikey list --postgres-table msec_api_keys
//! ```
//!
//! `new` prints the key once (stderr) and the record to store (stdout, one JSON line). The record holds only the
//! key's digest (SHA-256, or HMAC-SHA256 under `--pepper-file`); the service loads such lines with
//! `MemoryApiKeyStore::from_file` (and `watch_file` follows later changes) or keeps them in its PostgreSQL store.
//!
//! `list` and `revoke` work on either store: a records file (`--file`; `revoke` rewrites it atomically, every other
//! line byte for byte) or a PostgreSQL table (the connection string comes from `MSEC_APIKEY_POSTGRES`, never
//! the command line, where other users of the machine could read it in the process list).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::{Args, Subcommand};
use msec_authn::apikey::{ApiKeyRecord, ApiKeySpec, ApiKeyStore as _, KeyHasher, MIN_PEPPER_LEN, PgApiKeyStore};
use msec_core::secret::SecretBytes;

#[derive(Subcommand)]
pub(crate) enum ApiKeyCmd {
    /// Makes a key: prints the key once on stderr and its record (JSON, one line) on stdout.
    New {
        /// The key prefix (1-32 characters of a-z, 0-9, _), e.g. sk_live or sk_test.
        #[arg(long)]
        prefix: String,
        /// Comma-separated scopes granted to the key.
        #[arg(long, value_delimiter = ',')]
        scopes: Vec<String>,
        /// The principal's subject (default: the key id).
        #[arg(long)]
        subject: Option<String>,
        /// The tenant, for multi-tenant services.
        #[arg(long)]
        tenant: Option<String>,
        /// Lifetime: a number with a unit s, m, h, d or w (e.g. 90d). Default: no expiry.
        #[arg(long)]
        expires_in: Option<String>,
        /// A file of at least 32 bytes (raw) used as the HMAC-SHA256 pepper; without it the digest is SHA-256.
        #[arg(long)]
        pepper_file: Option<PathBuf>,
        /// Also store the record in this PostgreSQL table (created if absent; the connection string is read
        /// from MSEC_APIKEY_POSTGRES). The key is shown only once the record is stored.
        #[arg(long)]
        postgres_table: Option<String>,
    },
    /// Lists keys: id, prefix, subject, tenant, status (active, expired, revoked), expiry and scopes. Never
    /// prints a key (the store has none) nor, without --json, a digest.
    List {
        #[command(flatten)]
        store: StoreArgs,
        /// Only the keys of this subject.
        #[arg(long)]
        subject: Option<String>,
        /// Print the records as JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revokes a key by its id (the 11 characters after the prefix; `list` shows them). Exit status 1 when
    /// the store has no such key.
    Revoke {
        /// The key id.
        key_id: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// Where the records are: a file or a PostgreSQL table.
#[derive(Args)]
#[group(required = true, multiple = false)]
pub(crate) struct StoreArgs {
    /// A file of records, one JSON object per line (as `new` prints them).
    #[arg(long)]
    file: Option<PathBuf>,
    /// A PostgreSQL table of records (`PgApiKeyStore`); the connection string is read from MSEC_APIKEY_POSTGRES.
    #[arg(long)]
    postgres_table: Option<String>,
}

/// The environment variable holding the PostgreSQL connection string.
const PG_ENV: &str = "MSEC_APIKEY_POSTGRES";

/// The most rows `list` reads from PostgreSQL.
const PG_LIST_LIMIT: usize = 100_000;

/// Parses `90d`, `12h`, `30m`, `3600s`, `2w`.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?}: expected a number and a unit (s, m, h, d, w), e.g. 90d"))?;
    let secs_per = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use s, m, h, d or w)")),
    };
    if n == 0 {
        return Err(format!("{s:?}: the lifetime must be positive"));
    }
    n.checked_mul(secs_per)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{s:?}: too long"))
}

pub(crate) fn run(cmd: ApiKeyCmd) -> ExitCode {
    let result = match cmd {
        ApiKeyCmd::New {
            prefix,
            scopes,
            subject,
            tenant,
            expires_in,
            pepper_file,
            postgres_table,
        } => new(prefix, scopes, subject, tenant, expires_in, pepper_file, postgres_table).map(|()| ExitCode::SUCCESS),
        ApiKeyCmd::List { store, subject, json } => list(&store, subject.as_deref(), json).map(|()| ExitCode::SUCCESS),
        ApiKeyCmd::Revoke { key_id, store } => revoke(&store, &key_id),
    };
    result.unwrap_or_else(|e| {
        eprintln!("error: {e}");
        ExitCode::from(2)
    })
}

/// Runs `f` with the PostgreSQL store named by `table` and MSEC_APIKEY_POSTGRES, on a one-thread runtime.
fn with_pg<T>(table: &str, f: impl AsyncFnOnce(&PgApiKeyStore) -> Result<T, String>) -> Result<T, String> {
    let conn = std::env::var(PG_ENV).map_err(|_| {
        format!("--postgres-table needs the connection string in {PG_ENV} (e.g. \"host=db user=ops dbname=app\")")
    })?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))?;
    rt.block_on(async {
        let store = PgApiKeyStore::new(&conn, table)
            .map_err(|e| e.to_string())?
            .timeout(std::time::Duration::from_secs(10));
        f(&store).await
    })
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn status(r: &ApiKeyRecord, now: u64) -> &'static str {
    if r.revoked {
        "revoked"
    } else if r.expires_at.is_some_and(|e| e <= now) {
        "expired"
    } else {
        "active"
    }
}

/// `2026-11-24T09:12:25Z` for Unix seconds.
fn date(secs: u64) -> String {
    let t = msec_audit::Timestamp(SystemTime::UNIX_EPOCH + Duration::from_secs(secs)).to_rfc3339();
    // Whole seconds: drop the microseconds.
    match t.split_once('.') {
        Some((head, _)) => format!("{head}Z"),
        None => t,
    }
}

fn read_file_records(path: &std::path::Path) -> Result<Vec<ApiKeyRecord>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let r: ApiKeyRecord = serde_json::from_str(t).map_err(|e| format!("{} line {}: {e}", path.display(), n + 1))?;
        out.push(r);
    }
    Ok(out)
}

#[allow(clippy::print_stdout)]
fn list(store: &StoreArgs, subject: Option<&str>, json: bool) -> Result<(), String> {
    let mut records = match (&store.file, &store.postgres_table) {
        (Some(path), _) => read_file_records(path)?,
        (None, Some(table)) => with_pg(table, async |pg| match subject {
            Some(s) => pg.keys_of(s).await.map_err(|e| e.to_string()),
            None => pg.list(PG_LIST_LIMIT).await.map_err(|e| e.to_string()),
        })?,
        (None, None) => return Err("give --file or --postgres-table".into()),
    };
    if let Some(s) = subject {
        records.retain(|r| r.subject == s);
    }
    records.sort_by(|a, b| (a.created_at, &a.key_id).cmp(&(b.created_at, &b.key_id)));
    if json {
        for r in &records {
            println!("{}", r.to_json_line());
        }
        return Ok(());
    }
    let now = unix_now();
    let rows: Vec<[String; 7]> = records
        .iter()
        .map(|r| {
            [
                r.key_id.clone(),
                r.prefix.clone(),
                r.subject.clone(),
                r.tenant.clone().unwrap_or_else(|| "-".into()),
                status(r, now).to_owned(),
                r.expires_at.map_or_else(|| "never".into(), date),
                if r.scopes.is_empty() {
                    "-".into()
                } else {
                    r.scopes.join(",")
                },
            ]
        })
        .collect();
    let head = ["KEY_ID", "PREFIX", "SUBJECT", "TENANT", "STATUS", "EXPIRES", "SCOPES"];
    let mut width = head.map(str::len);
    for row in &rows {
        for (w, cell) in width.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[&str]| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  ", w = width[i]));
            }
        }
        s
    };
    println!("{}", line(&head));
    for row in &rows {
        println!("{}", line(&row.each_ref().map(String::as_str)));
    }
    eprintln!("{} key(s)", rows.len());
    Ok(())
}

#[allow(clippy::print_stdout)]
fn revoke(store: &StoreArgs, key_id: &str) -> Result<ExitCode, String> {
    let found = match (&store.file, &store.postgres_table) {
        (Some(path), _) => revoke_in_file(path, key_id)?,
        (None, Some(table)) => {
            with_pg(table, async |pg| pg.revoke(key_id).await.map_err(|e| e.to_string()))?.then_some(Revoked::Now)
        }
        (None, None) => return Err("give --file or --postgres-table".into()),
    };
    match found {
        Some(Revoked::Now) => {
            println!("revoked {key_id}");
            Ok(ExitCode::SUCCESS)
        }
        Some(Revoked::Already) => {
            println!("{key_id} was revoked already");
            Ok(ExitCode::SUCCESS)
        }
        None => {
            eprintln!("error: no key {key_id} in the store");
            Ok(ExitCode::from(1))
        }
    }
}

enum Revoked {
    Now,
    Already,
}

/// Marks `key_id` revoked in the records file: the file is rewritten through a temporary file in the same
/// directory (same permissions, synced, then renamed over it), every other line unchanged.
fn revoke_in_file(path: &std::path::Path, key_id: &str) -> Result<Option<Revoked>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = String::with_capacity(text.len() + 8);
    let mut found = None;
    for (n, line) in text.split_inclusive('\n').enumerate() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            out.push_str(line);
            continue;
        }
        let mut r: ApiKeyRecord =
            serde_json::from_str(t).map_err(|e| format!("{} line {}: {e}", path.display(), n + 1))?;
        if r.key_id != key_id {
            out.push_str(line);
            continue;
        }
        if found.is_some() {
            return Err(format!("{}: key id {key_id} appears twice", path.display()));
        }
        if r.revoked {
            found = Some(Revoked::Already);
            out.push_str(line);
        } else {
            found = Some(Revoked::Now);
            r.revoked = true;
            out.push_str(&r.to_json_line());
            // The line's own ending (LF, CRLF, or none on a last line) stays.
            out.push_str(&line[line.trim_end_matches(['\r', '\n']).len()..]);
        }
    }
    if matches!(found, Some(Revoked::Now)) {
        replace_file(path, out.as_bytes()).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(found)
}

fn replace_file(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.msec-{}.tmp", std::process::id()));
    let perms = std::fs::metadata(path)?.permissions();
    let result = (|| {
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        f.set_permissions(perms)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[allow(clippy::print_stdout)]
fn new(
    prefix: String,
    scopes: Vec<String>,
    subject: Option<String>,
    tenant: Option<String>,
    expires_in: Option<String>,
    pepper_file: Option<PathBuf>,
    postgres_table: Option<String>,
) -> Result<(), String> {
    let hasher = match &pepper_file {
        None => KeyHasher::sha256(),
        Some(path) => {
            let bytes = SecretBytes::new(std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?);
            if bytes.len() < MIN_PEPPER_LEN {
                return Err(format!(
                    "{}: the pepper is {} bytes; at least {MIN_PEPPER_LEN} are required \
                     (e.g. head -c 32 /dev/urandom > pepper)",
                    path.display(),
                    bytes.len()
                ));
            }
            KeyHasher::hmac_sha256(&bytes).map_err(|e| e.to_string())?
        }
    };
    let mut spec = ApiKeySpec::new(prefix).scopes(scopes.into_iter().map(|s| s.trim().to_owned()));
    if let Some(s) = subject {
        spec = spec.subject(s);
    }
    if let Some(t) = tenant {
        spec = spec.tenant(t);
    }
    if let Some(d) = expires_in {
        spec = spec.expires_in(parse_duration(&d).map_err(|e| format!("--expires-in {e}"))?);
    }
    let issued = spec.issue(&hasher, SystemTime::now()).map_err(|e| e.to_string())?;
    if let Some(table) = &postgres_table {
        let record = issued.record.clone();
        with_pg(table, async |pg| {
            pg.migrate().await.map_err(|e| e.to_string())?;
            pg.insert(record).await.map_err(|e| e.to_string())
        })?;
        eprintln!("Stored in PostgreSQL table {table}.");
    }
    eprintln!("API key (shown only now; give it to its owner, it cannot be recovered from the record):");
    eprintln!("{}", issued.key.expose_secret());
    eprintln!(
        "Record to store (stdout, one JSON line; holds only the key's {} digest):",
        hasher.alg().as_str()
    );
    println!("{}", issued.record.to_json_line());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90d"), Ok(Duration::from_secs(90 * 86_400)));
        assert_eq!(parse_duration("2w"), Ok(Duration::from_secs(14 * 86_400)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert!(parse_duration("0d").is_err());
        assert!(parse_duration("d").is_err());
        assert!(parse_duration("5y").is_err());
        assert!(parse_duration("99999999999999999999w").is_err());
    }

    use proptest::prelude::*;

    /// A records file: records (some already revoked), comments, blank lines, CRLF or LF endings, and maybe no
    /// final newline.
    fn file() -> impl Strategy<Value = (Vec<String>, Vec<ApiKeyRecord>, bool)> {
        let hasher = KeyHasher::sha256();
        let line = prop_oneof![
            3 => (any::<bool>(), "[a-z]{1,8}").prop_map(move |(revoked, subject)| {
                let mut r = ApiKeySpec::new("sk_live")
                    .subject(subject)
                    .issue(&hasher, SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000))
                    .map(|i| i.record)
                    .unwrap_or_else(|_| unreachable!());
                r.revoked = revoked;
                Some(r)
            }),
            1 => Just(None),
        ];
        (
            prop::collection::vec((line, "(# [ -~]{0,20})?", any::<bool>()), 1..12),
            any::<bool>(),
        )
            .prop_map(|(items, final_newline)| {
                let mut lines = Vec::new();
                let mut records = Vec::new();
                for (record, comment, crlf) in items {
                    let text = match &record {
                        Some(r) => r.to_json_line(),
                        None => comment,
                    };
                    lines.push(format!("{text}{}", if crlf { "\r\n" } else { "\n" }));
                    records.extend(record);
                }
                (lines, records, final_newline)
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Revoking one key changes exactly its line (to the same record, revoked) and leaves every other byte
        /// of the file as it was; revoking it again, or an unknown id, changes nothing.
        #[test]
        fn revoke_touches_one_line((lines, records, final_newline) in file(), pick in any::<prop::sample::Index>()) {
            let dir = tempfile::tempdir().unwrap_or_else(|_| unreachable!());
            let path = dir.path().join("keys.jsonl");
            let mut text = lines.concat();
            if !final_newline {
                text.truncate(text.trim_end_matches(['\r', '\n']).len());
            }
            std::fs::write(&path, &text).unwrap_or_else(|_| unreachable!());
            let missing = revoke_in_file(&path, "AAAAAAAAAAA").map_err(TestCaseError::fail)?;
            prop_assert!(missing.is_none());
            prop_assert_eq!(std::fs::read_to_string(&path).ok(), Some(text.clone()));
            if records.is_empty() {
                return Ok(());
            }
            let target = pick.get(&records).clone();
            let outcome = revoke_in_file(&path, &target.key_id).map_err(TestCaseError::fail)?;
            let after = std::fs::read_to_string(&path).unwrap_or_default();
            let before_lines: Vec<&str> = text.split_inclusive('\n').collect();
            let after_lines: Vec<&str> = after.split_inclusive('\n').collect();
            prop_assert_eq!(before_lines.len(), after_lines.len());
            for (b, a) in before_lines.iter().zip(&after_lines) {
                let was: Option<ApiKeyRecord> = serde_json::from_str(b.trim()).ok();
                if was.as_ref().is_some_and(|r| r.key_id == target.key_id) && !target.revoked {
                    let mut expect = target.clone();
                    expect.revoked = true;
                    prop_assert_eq!(serde_json::from_str::<ApiKeyRecord>(a.trim()).ok(), Some(expect));
                    let ending = |l: &str| l[l.trim_end_matches(['\r', '\n']).len()..].to_owned();
                    prop_assert_eq!(ending(b), ending(a), "the line keeps its ending");
                } else {
                    prop_assert_eq!(b, a);
                }
            }
            prop_assert_eq!(matches!(outcome, Some(Revoked::Already)), target.revoked);
            let again = revoke_in_file(&path, &target.key_id).map_err(TestCaseError::fail)?;
            prop_assert!(matches!(again, Some(Revoked::Already)));
            prop_assert_eq!(std::fs::read_to_string(&path).ok(), Some(after));
        }
    }
}
