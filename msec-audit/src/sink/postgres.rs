//! The PostgreSQL sink (feature `postgres`): batched inserts, sequence and hashes as columns, reconnection
//! without losing queued records.
//!
//! Table (created when missing):
//!
//! ```sql
//! CREATE TABLE IF NOT EXISTS <table> (
//!     log_id    text        NOT NULL,
//!     seq       bigint      NOT NULL,
//!     time      timestamptz NOT NULL,
//!     kind      text        NOT NULL,
//!     prev_hash bytea       NOT NULL,
//!     hash      bytea       NOT NULL,
//!     record    text        NOT NULL,  -- the exact JSON line: verify with `SELECT record ... ORDER BY seq`
//!     PRIMARY KEY (log_id, seq)
//! )
//! ```
//!
//! Each batch is one `INSERT … SELECT FROM unnest(…) ON CONFLICT (log_id, seq) DO NOTHING` statement: atomic,
//! and idempotent when the writer retries a batch whose acknowledgement was lost. On any error (or a statement
//! taking longer than the timeout) the connection is dropped; the writer retries the batch with back-off and the
//! sink reconnects. Meanwhile records wait in the log's queue, under its overflow policy — none is discarded.
//!
//! TLS follows [`msec_core::postgres`]: with [`tls`](PostgresSink::tls), or `sslmode=require` in the connection
//! string, the connection is TLS with a verified certificate and host name (never downgraded to plain TCP).
//!
//! Several replicas can share a table: each writes its own log id. Give each replica a stable
//! [`log_id`](PostgresSink::log_id) so that a restart continues its chain.

use std::fmt;
use std::time::{Duration, UNIX_EPOCH};

use msec_core::postgres::PgTls;
use tokio_postgres::Client;

use crate::chain::{ChainHead, Record, RecordKind};
use crate::sink::{Sink, SinkError};
use crate::util::parse_hash;

/// Writes records to a PostgreSQL table. See the [module docs](self).
pub struct PostgresSink {
    config: String,
    table: String,
    log_id: Option<String>,
    timeout: Duration,
    tls: Option<PgTls>,
    rt: Option<tokio::runtime::Runtime>,
    client: Option<Client>,
}

impl fmt::Debug for PostgresSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The connection string may hold a password.
        f.debug_struct("PostgresSink")
            .field("table", &self.table)
            .field("log_id", &self.log_id)
            .field("tls", &self.tls.is_some())
            .field("connected", &self.client.is_some())
            .finish_non_exhaustive()
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

impl PostgresSink {
    /// A sink writing into `table` (`name` or `schema.name`: letters, digits, `_`) of the database at
    /// `config` (a tokio-postgres connection string, e.g. `host=127.0.0.1 user=postgres dbname=audit`).
    /// Nothing connects until the log starts.
    pub fn new(config: impl Into<String>, table: &str) -> Result<Self, SinkError> {
        if !valid_ident(table) {
            return Err(SinkError::new(
                "the table name must be `name` or `schema.name` of letters, digits and `_`",
            ));
        }
        let config = config.into();
        config
            .parse::<tokio_postgres::Config>()
            .map_err(|e| SinkError::with_source("invalid PostgreSQL connection string", e))?;
        Ok(Self {
            config,
            table: table.to_owned(),
            log_id: None,
            timeout: Duration::from_secs(10),
            tls: None,
            rt: None,
            client: None,
        })
    }

    /// The log id this process writes: the chain continues from this log's last row on restart. Without it,
    /// each start begins a new log.
    #[must_use]
    pub fn log_id(mut self, id: impl Into<String>) -> Self {
        self.log_id = Some(id.into());
        self
    }

    /// How long a connection attempt or a statement may take before the connection is dropped and the batch
    /// retried (default 10 s).
    #[must_use]
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    /// Connects over TLS verified against `tls`'s roots (`sslmode=require` is forced: a server without TLS, or
    /// with a certificate that does not verify, is a failed write the log retries, never a plain connection).
    ///
    /// ```no_run
    /// # fn f() -> Result<(), Box<dyn std::error::Error>> {
    /// use msec_audit::sink::postgres::PostgresSink;
    /// use msec_core::postgres::PgTls;
    /// let ca = std::fs::read("/etc/msec/db-ca.pem")?;
    /// let sink = PostgresSink::new("host=db.internal user=audit dbname=audit", "audit_log")?
    ///     .tls(PgTls::from_pem_roots(&ca)?);
    /// # let _ = sink; Ok(()) }
    /// ```
    #[must_use]
    pub fn tls(mut self, tls: PgTls) -> Self {
        self.tls = Some(tls);
        self
    }

    fn runtime(&mut self) -> Result<&tokio::runtime::Runtime, SinkError> {
        if self.rt.is_none() {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| SinkError::with_source("cannot start the PostgreSQL runtime", e))?;
            self.rt = Some(rt);
        }
        self.rt.as_ref().ok_or_else(|| SinkError::new("no runtime"))
    }

    /// Connects if needed.
    fn connect(&mut self) -> Result<(), SinkError> {
        if self.client.as_ref().is_some_and(|c| !c.is_closed()) {
            return Ok(());
        }
        self.client = None;
        let config = self.config.clone();
        let timeout = self.timeout;
        let table = self.table.clone();
        let tls = self.tls.clone();
        let rt = self.runtime()?;
        let client = rt.block_on(async move {
            let config: tokio_postgres::Config = config
                .parse()
                .map_err(|e| SinkError::with_source("invalid PostgreSQL connection string", e))?;
            let client = tokio::time::timeout(timeout, msec_core::postgres::connect(&config, tls.as_ref()))
                .await
                .map_err(|_| SinkError::new("timed out connecting to PostgreSQL"))?
                .map_err(|e| SinkError::with_source("cannot connect to PostgreSQL", e))?;
            let ddl = format!(
                "CREATE TABLE IF NOT EXISTS {table} (log_id text NOT NULL, seq bigint NOT NULL, \
                 time timestamptz NOT NULL, kind text NOT NULL, prev_hash bytea NOT NULL, hash bytea NOT NULL, \
                 record text NOT NULL, PRIMARY KEY (log_id, seq))"
            );
            tokio::time::timeout(timeout, client.batch_execute(&ddl))
                .await
                .map_err(|_| SinkError::new("timed out creating the audit table"))?
                .map_err(|e| SinkError::with_source("cannot create the audit table", e))?;
            Ok::<_, SinkError>(client)
        })?;
        self.client = Some(client);
        Ok(())
    }
}

fn log_id_from(records: &[Record]) -> Option<String> {
    records.iter().find(|r| r.kind == RecordKind::Checkpoint).and_then(|r| {
        serde_json::from_slice::<serde_json::Value>(&r.line)
            .ok()?
            .get("log")?
            .as_str()
            .map(str::to_owned)
    })
}

impl Sink for PostgresSink {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn open(&mut self) -> Result<Option<ChainHead>, SinkError> {
        self.connect()?;
        let Some(log_id) = self.log_id.clone() else {
            return Ok(None);
        };
        let sql = format!(
            "SELECT seq, hash FROM {} WHERE log_id = $1 ORDER BY seq DESC LIMIT 1",
            self.table
        );
        let timeout = self.timeout;
        let client = self.client.take().ok_or_else(|| SinkError::new("not connected"))?;
        let rt = self.runtime()?;
        let row = rt.block_on(async {
            tokio::time::timeout(timeout, client.query_opt(&sql, &[&log_id]))
                .await
                .map_err(|_| SinkError::new("timed out reading the log head"))?
                .map_err(|e| SinkError::with_source("cannot read the log head", e))
        });
        self.client = Some(client);
        let Some(row) = row? else {
            // A new log under the configured id.
            return Ok(Some(ChainHead {
                log_id: log_id.into(),
                next_seq: 0,
                prev: crate::chain::GENESIS_PREV,
            }));
        };
        let seq: i64 = row.get(0);
        let hash: Vec<u8> = row.get(1);
        let prev = parse_hash(crate::util::hex(&hash).as_bytes()).ok_or_else(|| SinkError::new("bad hash column"))?;
        Ok(Some(ChainHead {
            log_id: log_id.into(),
            next_seq: u64::try_from(seq).unwrap_or(0) + 1,
            prev,
        }))
    }

    fn write(&mut self, records: &[Record]) -> Result<(), SinkError> {
        if records.is_empty() {
            return Ok(());
        }
        if self.log_id.is_none() {
            self.log_id = log_id_from(records);
        }
        let log_id = self.log_id.clone().ok_or_else(|| SinkError::new("unknown log id"))?;
        self.connect()?;
        let mut seqs = Vec::with_capacity(records.len());
        let mut times = Vec::with_capacity(records.len());
        let mut kinds = Vec::with_capacity(records.len());
        let mut prevs = Vec::with_capacity(records.len());
        let mut hashes = Vec::with_capacity(records.len());
        let mut lines = Vec::with_capacity(records.len());
        for r in records {
            seqs.push(i64::try_from(r.seq).unwrap_or(i64::MAX));
            times.push(r.time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64));
            kinds.push(r.kind.as_str().to_owned());
            prevs.push(r.prev.to_vec());
            hashes.push(r.hash.to_vec());
            lines.push(r.as_str().to_owned());
        }
        let sql = format!(
            "INSERT INTO {} (log_id, seq, time, kind, prev_hash, hash, record) \
             SELECT $1, s, to_timestamp(m::double precision / 1000000.0), k, p, h, r \
             FROM unnest($2::bigint[], $3::bigint[], $4::text[], $5::bytea[], $6::bytea[], $7::text[]) AS u(s, m, k, p, h, r) \
             ON CONFLICT (log_id, seq) DO NOTHING",
            self.table
        );
        let timeout = self.timeout;
        let client = self.client.take().ok_or_else(|| SinkError::new("not connected"))?;
        let rt = self.runtime()?;
        let result = rt.block_on(async {
            tokio::time::timeout(
                timeout,
                client.execute(&sql, &[&log_id, &seqs, &times, &kinds, &prevs, &hashes, &lines]),
            )
            .await
            .map_err(|_| SinkError::new("timed out inserting audit records"))?
            .map_err(|e| SinkError::with_source("cannot insert audit records", e))
        });
        match result {
            Ok(_) => {
                self.client = Some(client);
                Ok(())
            }
            // Drop the connection: the retry reconnects.
            Err(e) => Err(e),
        }
    }

    fn close(&mut self) -> Result<(), SinkError> {
        self.client = None;
        Ok(())
    }
}
