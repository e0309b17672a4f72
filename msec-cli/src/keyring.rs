//! `msec keyring`: create, rotate, promote, inspect and rewrap msec-crypto keyrings.
//!
//! The keyring file's key material is wrapped by a local master key file (`--master-key`);
//! `show` reads only the file's metadata and needs no master key.
//!
//! `rewrap` reads JSON lines `{"id": .., "table": .., "column": .., "record": .., "ciphertext": "msec:v1:.."}` and
//! writes the same lines with `ciphertext` re-encrypted under the primary key and a `status` of `rewrapped`,
//! `unchanged` or `failed` (with an `error` code). Plaintext never appears in its output.

use std::io::{BufRead as _, BufReader, BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use futures_util::FutureExt as _;
use indicatif::{ProgressBar, ProgressStyle};
use msec_crypto::batch::{RewrapRecord, rewrap_record};
use msec_crypto::{Algorithm, Ciphertext, Context, KeyId, KeyStatus, Keyring, LocalKms};

#[derive(Args)]
pub(crate) struct Files {
    /// The keyring file (JSON).
    #[arg(long, short = 'k')]
    keyring: PathBuf,
    /// The local master key file that wraps the keyring's key material.
    #[arg(long, short = 'm')]
    master_key: PathBuf,
}

#[derive(Subcommand)]
pub(crate) enum KeyringCmd {
    /// Creates a keyring with one primary key (and the master key file, with --create-master-key).
    New {
        #[command(flatten)]
        files: Files,
        /// aes-256-gcm or chacha20-poly1305.
        #[arg(long, default_value = "aes-256-gcm")]
        algorithm: String,
        /// Also add an HMAC-SHA256 key for blind indexes and pseudonyms.
        #[arg(long)]
        with_index_key: bool,
        /// Generate the master key file if it does not exist (mode 0600).
        #[arg(long)]
        create_master_key: bool,
    },
    /// Adds a new key, not yet primary (phase 1 of a rotation; deploy, then `promote`).
    Rotate {
        #[command(flatten)]
        files: Files,
        /// aes-256-gcm, chacha20-poly1305 or hmac-sha256.
        #[arg(long, default_value = "aes-256-gcm")]
        algorithm: String,
        /// Promote it at once (single-phase: only when every reader already has the new keyring).
        #[arg(long)]
        promote: bool,
    },
    /// Makes a key the primary (phase 2 of a rotation).
    Promote {
        #[command(flatten)]
        files: Files,
        /// The key id (8 hex digits).
        id: String,
        /// Set the previous primary to decrypt-only.
        #[arg(long)]
        retire_previous: bool,
    },
    /// Sets a key's status: enabled, decrypt-only or disabled.
    SetStatus {
        #[command(flatten)]
        files: Files,
        /// The key id (8 hex digits).
        id: String,
        /// enabled, decrypt-only or disabled.
        status: String,
    },
    /// Lists the keys: id, algorithm, status, primary, creation time. Never prints key material.
    Show {
        /// The keyring file.
        #[arg(long, short = 'k')]
        keyring: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Re-encrypts ciphertexts (JSON lines) under the primary key, with a progress bar.
    Rewrap {
        #[command(flatten)]
        files: Files,
        /// Input JSON lines.
        #[arg(long, short = 'i')]
        input: PathBuf,
        /// Output JSON lines.
        #[arg(long, short = 'o')]
        output: PathBuf,
        /// No progress bar.
        #[arg(long, short = 'q')]
        quiet: bool,
    },
}

type CliResult = Result<(), String>;

pub(crate) fn run(cmd: KeyringCmd) -> ExitCode {
    let r = match cmd {
        KeyringCmd::New {
            files,
            algorithm,
            with_index_key,
            create_master_key,
        } => new(&files, &algorithm, with_index_key, create_master_key),
        KeyringCmd::Rotate {
            files,
            algorithm,
            promote,
        } => rotate(&files, &algorithm, promote),
        KeyringCmd::Promote {
            files,
            id,
            retire_previous,
        } => promote(&files, &id, retire_previous),
        KeyringCmd::SetStatus { files, id, status } => set_status(&files, &id, &status),
        KeyringCmd::Show { keyring, json } => show(&keyring, json),
        KeyringCmd::Rewrap {
            files,
            input,
            output,
            quiet,
        } => rewrap(&files, &input, &output, quiet),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn algorithm(name: &str) -> Result<Algorithm, String> {
    Algorithm::from_name(name)
        .ok_or_else(|| format!("unknown algorithm {name:?} (aes-256-gcm, chacha20-poly1305, hmac-sha256)"))
}

fn key_id(s: &str) -> Result<KeyId, String> {
    s.parse().map_err(|_| format!("{s:?} is not a key id (8 hex digits)"))
}

/// The local KMS answers at once; a pending future would mean a KMS this CLI does not drive.
fn ready<T>(f: impl std::future::Future<Output = Result<T, msec_crypto::Error>>) -> Result<T, String> {
    f.now_or_never()
        .ok_or("the KMS did not answer synchronously")?
        .map_err(|e| e.to_string())
}

fn load(files: &Files) -> Result<(Keyring, LocalKms), String> {
    let kms = LocalKms::load(&files.master_key).map_err(|e| e.to_string())?;
    let json =
        std::fs::read_to_string(&files.keyring).map_err(|e| format!("cannot read {}: {e}", files.keyring.display()))?;
    let keyring = ready(Keyring::from_json(&json, &kms))?;
    Ok((keyring, kms))
}

/// Writes the keyring atomically (temporary file, then rename).
fn save(files: &Files, keyring: &Keyring, kms: &LocalKms, create: bool) -> CliResult {
    let json = ready(keyring.to_json(kms))?;
    let path = &files.keyring;
    if create && path.exists() {
        return Err(format!("{} exists; refusing to overwrite a keyring", path.display()));
    }
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, json).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("cannot replace {}: {e}", path.display()))
}

#[allow(clippy::print_stdout)]
fn new(files: &Files, alg: &str, with_index_key: bool, create_master_key: bool) -> CliResult {
    let alg = algorithm(alg)?;
    if !alg.is_aead() {
        return Err("the primary key must be aes-256-gcm or chacha20-poly1305".into());
    }
    if files.keyring.exists() {
        return Err(format!(
            "{} exists; refusing to overwrite a keyring",
            files.keyring.display()
        ));
    }
    let kms = if create_master_key && !files.master_key.exists() {
        let kms = LocalKms::generate().map_err(|e| e.to_string())?;
        kms.save_new(&files.master_key).map_err(|e| e.to_string())?;
        println!(
            "created master key file {} (mode 0600; keep it secret)",
            files.master_key.display()
        );
        kms
    } else {
        LocalKms::load(&files.master_key).map_err(|e| e.to_string())?
    };
    let mut keyring = Keyring::generate(alg).map_err(|e| e.to_string())?;
    if with_index_key {
        keyring.add_key(Algorithm::HmacSha256).map_err(|e| e.to_string())?;
    }
    save(files, &keyring, &kms, true)?;
    let primary = keyring.primary().map(|p| p.to_string()).unwrap_or_default();
    println!(
        "created keyring {} with primary key {primary} ({alg})",
        files.keyring.display()
    );
    Ok(())
}

#[allow(clippy::print_stdout)]
fn rotate(files: &Files, alg: &str, promote: bool) -> CliResult {
    let alg = algorithm(alg)?;
    let (mut keyring, kms) = load(files)?;
    let id = keyring.add_key(alg).map_err(|e| e.to_string())?;
    if promote {
        keyring.promote(id).map_err(|e| e.to_string())?;
    }
    save(files, &keyring, &kms, false)?;
    if promote {
        println!("added key {id} ({alg}) and made it primary");
    } else if alg.is_aead() {
        println!("added key {id} ({alg}); deploy this keyring everywhere, then run `msec keyring promote {id}`");
    } else {
        println!("added key {id} ({alg})");
    }
    Ok(())
}

#[allow(clippy::print_stdout)]
fn promote(files: &Files, id: &str, retire_previous: bool) -> CliResult {
    let id = key_id(id)?;
    let (mut keyring, kms) = load(files)?;
    let previous = keyring.primary();
    keyring.promote(id).map_err(|e| e.to_string())?;
    if let Some(p) = previous.filter(|p| retire_previous && *p != id) {
        keyring
            .set_status(p, KeyStatus::DecryptOnly)
            .map_err(|e| e.to_string())?;
    }
    save(files, &keyring, &kms, false)?;
    println!("key {id} is now primary");
    Ok(())
}

#[allow(clippy::print_stdout)]
fn set_status(files: &Files, id: &str, status: &str) -> CliResult {
    let id = key_id(id)?;
    let status = KeyStatus::from_name(status)
        .ok_or_else(|| format!("unknown status {status:?} (enabled, decrypt-only, disabled)"))?;
    let (mut keyring, kms) = load(files)?;
    keyring.set_status(id, status).map_err(|e| e.to_string())?;
    save(files, &keyring, &kms, false)?;
    println!("key {id} is now {status}");
    Ok(())
}

#[allow(clippy::print_stdout)]
fn show(path: &Path, json: bool) -> CliResult {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let info = Keyring::inspect_file(&text).map_err(|e| e.to_string())?;
    if json {
        println!("{}", serde_json::to_string_pretty(&info).map_err(|e| e.to_string())?);
        return Ok(());
    }
    println!(
        "{} ({}, kms {})",
        path.display(),
        info.format,
        info.kms.as_deref().unwrap_or("none")
    );
    println!(
        "{:<8}  {:<17}  {:<12}  {:<7}  created (unix)",
        "id", "algorithm", "status", "primary"
    );
    for k in &info.keys {
        let primary = if k.primary { "*" } else { "" };
        println!(
            "{:<8}  {:<17}  {:<12}  {:<7}  {}",
            k.id, k.algorithm, k.status, primary, k.created_at
        );
    }
    Ok(())
}

#[derive(serde::Deserialize, serde::Serialize)]
struct Line {
    id: serde_json::Value,
    table: String,
    column: String,
    record: String,
    ciphertext: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[allow(clippy::print_stdout)]
fn rewrap(files: &Files, input: &Path, output: &Path, quiet: bool) -> CliResult {
    let (keyring, _kms) = load(files)?;
    let total = {
        let f = std::fs::File::open(input).map_err(|e| format!("cannot read {}: {e}", input.display()))?;
        BufReader::new(f).lines().count() as u64
    };
    let f = std::fs::File::open(input).map_err(|e| format!("cannot read {}: {e}", input.display()))?;
    let out = std::fs::File::create(output).map_err(|e| format!("cannot create {}: {e}", output.display()))?;
    let mut out = BufWriter::new(out);
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(total)
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} rewrap [{bar:40}] {pos}/{len} {per_sec} eta {eta} {msg}")
            .map_err(|e| e.to_string())?
            .progress_chars("=> "),
    );
    let (mut rewrapped, mut unchanged, mut failed) = (0u64, 0u64, 0u64);
    for (n, line) in BufReader::new(f).lines().enumerate() {
        let line = line.map_err(|e| format!("{}: {e}", input.display()))?;
        if line.trim().is_empty() {
            bar.inc(1);
            continue;
        }
        let mut rec: Line = serde_json::from_str(&line).map_err(|e| format!("{}:{}: {e}", input.display(), n + 1))?;
        let context = Context::new(&rec.table, &rec.column, rec.record.as_bytes());
        let outcome = Ciphertext::from_text(&rec.ciphertext)
            .map(|ciphertext| {
                rewrap_record(
                    &keyring,
                    RewrapRecord {
                        id: (),
                        context,
                        ciphertext,
                    },
                )
                .result
            })
            .unwrap_or_else(Err);
        match outcome {
            Ok(Some(ct)) => {
                rec.ciphertext = ct.to_text();
                rec.status = Some("rewrapped".into());
                rewrapped += 1;
            }
            Ok(None) => {
                rec.status = Some("unchanged".into());
                unchanged += 1;
            }
            Err(e) => {
                rec.status = Some("failed".into());
                rec.error = Some(e.code().into());
                failed += 1;
            }
        }
        let text = serde_json::to_string(&rec).map_err(|e| e.to_string())?;
        writeln!(out, "{text}").map_err(|e| format!("{}: {e}", output.display()))?;
        bar.inc(1);
        if failed > 0 {
            bar.set_message(format!("{failed} failed"));
        }
    }
    out.flush().map_err(|e| format!("{}: {e}", output.display()))?;
    bar.finish_and_clear();
    println!(
        "rewrapped {rewrapped}, unchanged {unchanged}, failed {failed} -> {}",
        output.display()
    );
    if failed > 0 {
        Err(format!(
            "{failed} records could not be rewrapped (see `error` in the output)"
        ))
    } else {
        Ok(())
    }
}
