//! [`PgApiKeyStore`]: API key records in PostgreSQL (tokio-postgres), for many replicas.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use msec_core::postgres::PgTls;
use tokio_postgres::{Client, Row};

use super::ApiKeyError;
use super::digest::{DigestAlg, KeyDigest};
use super::record::ApiKeyRecord;
use super::store::{ApiKeyStore, StoreError, StoreErrorKind, StoreFuture};
use crate::authenticator::AuthnFuture;

struct Inner {
    config: tokio_postgres::Config,
    table: String,
    timeout: Duration,
    tls: Option<PgTls>,
    client: tokio::sync::Mutex<Option<Arc<Client>>>,
}

/// API key records in a PostgreSQL table (`key_id` primary key, an index on `subject`). Create the table with
/// [`migrate`](Self::migrate), or from the SQL of [`ddl`](Self::ddl).
///
/// The connection is made on first use and remade after it breaks; while the database is unreachable every
/// lookup fails fast (within the timeout) as `credential_store_unavailable` (503), never 500. Clones share the
/// connection. TLS follows [`msec_core::postgres`]: with [`tls`](Self::tls), or `sslmode=require` in the
/// connection string, the connection is TLS with a verified certificate and host name (never downgraded);
/// otherwise it is plain TCP, for a database on a private network or a local socket.
///
/// ```no_run
/// use msec_authn::apikey::{ApiKeyAuthenticator, KeyHasher, PgApiKeyStore};
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// let store = PgApiKeyStore::new("host=127.0.0.1 user=postgres dbname=app", "msec_api_keys")?;
/// store.migrate().await?;
/// let authn = ApiKeyAuthenticator::new(store, KeyHasher::sha256());
/// # let _ = authn; Ok(()) }
/// ```
#[derive(Clone)]
pub struct PgApiKeyStore {
    inner: Arc<Inner>,
}

impl fmt::Debug for PgApiKeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The connection string may hold a password: only the table is shown.
        f.debug_struct("PgApiKeyStore")
            .field("table", &self.inner.table)
            .field("timeout", &self.inner.timeout)
            .field("tls", &self.inner.tls.is_some())
            .finish()
    }
}

fn valid_ident(t: &str) -> bool {
    let part = |p: &str| {
        !p.is_empty()
            && p.len() <= 63
            && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && !p.as_bytes()[0].is_ascii_digit()
    };
    match t.split_once('.') {
        Some((schema, name)) => part(schema) && part(name),
        None => part(t),
    }
}

/// An error with its sources (`error: cause: cause`): a TLS failure shows why the certificate was refused.
struct ErrorChain<'a>(&'a (dyn std::error::Error + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cur = self.0.source();
        while let Some(e) = cur {
            write!(f, ": {e}")?;
            cur = e.source();
        }
        Ok(())
    }
}

fn unavailable(what: &'static str, e: &dyn fmt::Display) -> StoreError {
    StoreError::unavailable(format!("{what}: {e}"))
}

const COLUMNS: &str = "key_id, prefix, digest_alg, digest, subject, scopes, tenant, created_at, expires_at, revoked";

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn record_from(row: &Row) -> Result<ApiKeyRecord, StoreError> {
    let corrupt = |what: &str| StoreError::new(StoreErrorKind::Corrupt, format!("unreadable row: {what}"));
    let get_str = |i: usize, what: &str| row.try_get::<_, String>(i).map_err(|_| corrupt(what));
    let alg = get_str(2, "digest_alg")?;
    let digest: Vec<u8> = row.try_get(3).map_err(|_| corrupt("digest"))?;
    let created: i64 = row.try_get(7).map_err(|_| corrupt("created_at"))?;
    let expires: Option<i64> = row.try_get(8).map_err(|_| corrupt("expires_at"))?;
    let record = ApiKeyRecord {
        key_id: get_str(0, "key_id")?,
        prefix: get_str(1, "prefix")?,
        digest_alg: DigestAlg::from_name(&alg).ok_or_else(|| corrupt("digest_alg"))?,
        digest: KeyDigest::from_slice(&digest).ok_or_else(|| corrupt("digest"))?,
        subject: get_str(4, "subject")?,
        scopes: row.try_get(5).map_err(|_| corrupt("scopes"))?,
        tenant: row.try_get(6).map_err(|_| corrupt("tenant"))?,
        created_at: u64::try_from(created).map_err(|_| corrupt("created_at"))?,
        expires_at: expires
            .map(u64::try_from)
            .transpose()
            .map_err(|_| corrupt("expires_at"))?,
        revoked: row.try_get(9).map_err(|_| corrupt("revoked"))?,
    };
    Ok(record)
}

impl PgApiKeyStore {
    /// A store in `table` (`name` or `schema.name`: letters, digits, `_`) of the database at `config` (a
    /// tokio-postgres connection string, e.g. `host=127.0.0.1 user=postgres dbname=app`). Nothing connects
    /// until first use.
    pub fn new(config: &str, table: &str) -> Result<Self, ApiKeyError> {
        if !valid_ident(table) {
            return Err(ApiKeyError::Config(format!(
                "table {table:?}: expected `name` or `schema.name` of letters, digits and `_`"
            )));
        }
        let config = config
            .parse::<tokio_postgres::Config>()
            .map_err(|e| ApiKeyError::Config(format!("invalid PostgreSQL connection string: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                table: table.to_owned(),
                timeout: Duration::from_secs(2),
                tls: None,
                client: tokio::sync::Mutex::new(None),
            }),
        })
    }

    /// How long a connection attempt or a statement may take (default 2 s). A lookup that waits longer fails as
    /// `credential_store_unavailable`.
    #[must_use]
    pub fn timeout(self, t: Duration) -> Self {
        self.rebuilt(t, self.inner.tls.clone())
    }

    /// Connects over TLS verified against `tls`'s roots (`sslmode=require` is forced: a server without TLS, or
    /// with a certificate that does not verify, is `credential_store_unavailable`, never a plain connection).
    ///
    /// ```no_run
    /// use msec_authn::apikey::PgApiKeyStore;
    /// use msec_core::postgres::PgTls;
    /// # fn f() -> Result<(), Box<dyn std::error::Error>> {
    /// let ca = std::fs::read("/etc/msec/db-ca.pem")?;
    /// let store = PgApiKeyStore::new("host=db.internal user=app dbname=app", "msec_api_keys")?
    ///     .tls(PgTls::from_pem_roots(&ca)?);
    /// # let _ = store; Ok(()) }
    /// ```
    #[must_use]
    pub fn tls(self, tls: PgTls) -> Self {
        self.rebuilt(self.inner.timeout, Some(tls))
    }

    fn rebuilt(&self, timeout: Duration, tls: Option<PgTls>) -> Self {
        Self {
            inner: Arc::new(Inner {
                config: self.inner.config.clone(),
                table: self.inner.table.clone(),
                timeout,
                tls,
                client: tokio::sync::Mutex::new(None),
            }),
        }
    }

    /// The table name.
    pub fn table(&self) -> &str {
        &self.inner.table
    }

    /// The SQL that creates the table and its subject index (idempotent).
    pub fn ddl(&self) -> String {
        let t = &self.inner.table;
        let index = t.replace('.', "_");
        format!(
            "CREATE TABLE IF NOT EXISTS {t} (\n\
             \x20   key_id     text PRIMARY KEY,\n\
             \x20   prefix     text NOT NULL,\n\
             \x20   digest_alg text NOT NULL,\n\
             \x20   digest     bytea NOT NULL,\n\
             \x20   subject    text NOT NULL,\n\
             \x20   scopes     text[] NOT NULL DEFAULT '{{}}',\n\
             \x20   tenant     text,\n\
             \x20   created_at bigint NOT NULL,\n\
             \x20   expires_at bigint,\n\
             \x20   revoked    boolean NOT NULL DEFAULT false\n\
             );\n\
             CREATE INDEX IF NOT EXISTS {index}_subject ON {t} (subject);"
        )
    }

    /// Up to `limit` records of every subject, oldest first (what `msec apikey list` shows).
    pub async fn list(&self, limit: usize) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM {} ORDER BY created_at, key_id LIMIT $1",
            self.inner.table
        );
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .inner
            .run(|c| async move { c.query(&sql, &[&limit]).await })
            .await?;
        rows.iter().map(record_from).collect()
    }

    /// Creates the table (and index) if absent.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let ddl = self.ddl();
        let inner = Arc::clone(&self.inner);
        inner
            .run(|c| async move { c.batch_execute(&ddl).await.map(|_| ()) })
            .await
    }
}

impl Inner {
    async fn client(&self) -> Result<Arc<Client>, StoreError> {
        let mut slot = self.client.lock().await;
        if let Some(c) = slot.as_ref().filter(|c| !c.is_closed()) {
            return Ok(Arc::clone(c));
        }
        *slot = None;
        let client = tokio::time::timeout(
            self.timeout,
            msec_core::postgres::connect(&self.config, self.tls.as_ref()),
        )
        .await
        .map_err(|_| StoreError::unavailable("timed out connecting to PostgreSQL"))?
        .map_err(|e| unavailable("cannot connect to PostgreSQL", &ErrorChain(&e)))?;
        let client = Arc::new(client);
        *slot = Some(Arc::clone(&client));
        Ok(client)
    }

    /// Runs `f` on a connection within the timeout.
    async fn run<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(Arc<Client>) -> Fut,
        Fut: Future<Output = Result<T, tokio_postgres::Error>>,
    {
        let client = tokio::time::timeout(self.timeout, self.client())
            .await
            .map_err(|_| StoreError::unavailable("timed out waiting for a PostgreSQL connection"))??;
        match tokio::time::timeout(self.timeout, f(client)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(unavailable("PostgreSQL query failed", &e)),
            Err(_) => {
                // A statement that hangs may leave the connection unusable: start afresh next time.
                *self.client.lock().await = None;
                Err(StoreError::unavailable("PostgreSQL query timed out"))
            }
        }
    }
}

impl ApiKeyStore for PgApiKeyStore {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn get(&self, key_id: &str) -> StoreFuture<Option<Arc<ApiKeyRecord>>> {
        let inner = Arc::clone(&self.inner);
        let key_id = key_id.to_owned();
        AuthnFuture::pending(async move {
            let sql = format!("SELECT {COLUMNS} FROM {} WHERE key_id = $1", inner.table);
            let row = inner
                .run(|c| async move { c.query_opt(&sql, &[&key_id]).await })
                .await?;
            row.as_ref().map(record_from).transpose().map(|r| r.map(Arc::new))
        })
    }

    fn insert(&self, record: ApiKeyRecord) -> StoreFuture<()> {
        if let Err(e) = record.validate() {
            return AuthnFuture::ready(Err(StoreError::new(StoreErrorKind::Corrupt, e.to_string())));
        }
        let inner = Arc::clone(&self.inner);
        AuthnFuture::pending(async move {
            let sql = format!(
                "INSERT INTO {} ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                 ON CONFLICT (key_id) DO NOTHING",
                inner.table
            );
            let n = inner
                .run(|c| async move {
                    let digest = record.digest.as_bytes().as_slice();
                    let created = to_i64(record.created_at);
                    let expires = record.expires_at.map(to_i64);
                    c.execute(
                        &sql,
                        &[
                            &record.key_id,
                            &record.prefix,
                            &record.digest_alg.as_str(),
                            &digest,
                            &record.subject,
                            &record.scopes,
                            &record.tenant,
                            &created,
                            &expires,
                            &record.revoked,
                        ],
                    )
                    .await
                })
                .await?;
            if n == 0 {
                return Err(StoreError::new(StoreErrorKind::Conflict, "key id exists"));
            }
            Ok(())
        })
    }

    fn revoke(&self, key_id: &str) -> StoreFuture<bool> {
        let inner = Arc::clone(&self.inner);
        let key_id = key_id.to_owned();
        AuthnFuture::pending(async move {
            let sql = format!("UPDATE {} SET revoked = true WHERE key_id = $1", inner.table);
            let n = inner.run(|c| async move { c.execute(&sql, &[&key_id]).await }).await?;
            Ok(n > 0)
        })
    }

    fn keys_of(&self, subject: &str) -> StoreFuture<Vec<ApiKeyRecord>> {
        let inner = Arc::clone(&self.inner);
        let subject = subject.to_owned();
        AuthnFuture::pending(async move {
            let sql = format!(
                "SELECT {COLUMNS} FROM {} WHERE subject = $1 ORDER BY created_at, key_id",
                inner.table
            );
            let rows = inner.run(|c| async move { c.query(&sql, &[&subject]).await }).await?;
            rows.iter().map(record_from).collect()
        })
    }
}
