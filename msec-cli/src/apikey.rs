//! `msec apikey new`: makes an API key, prints it once (stderr) and the record to store (stdout, one JSON line).
//!
//! ```text
//! msec apikey new --prefix sk_live --scopes orders:read,orders:write --subject billing-bot --expires-in 90d \
//!     >> api-keys.jsonl
//! ```
//!
//! The record holds only the key's digest (SHA-256, or HMAC-SHA256 under `--pepper-file`); the service loads
//! such lines with `MemoryApiKeyStore::from_file` or inserts them into its PostgreSQL store.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::Subcommand;
use msec_authn::apikey::{ApiKeySpec, KeyHasher, MIN_PEPPER_LEN};
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
    },
}

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
    match cmd {
        ApiKeyCmd::New {
            prefix,
            scopes,
            subject,
            tenant,
            expires_in,
            pepper_file,
        } => match new(prefix, scopes, subject, tenant, expires_in, pepper_file) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
    }
}

#[allow(clippy::print_stdout)]
fn new(
    prefix: String,
    scopes: Vec<String>,
    subject: Option<String>,
    tenant: Option<String>,
    expires_in: Option<String>,
    pepper_file: Option<PathBuf>,
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
}
