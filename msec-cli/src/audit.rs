//! `msec audit`: verify tamper-evident audit logs, follow them, make checkpoint keys.

use std::io::{BufRead as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use msec_audit::sink::file::{anchor_path, log_files};
use msec_audit::tail::Filter;
use msec_audit::{CheckpointSigner, PublicKey, Verifier};

#[derive(Subcommand)]
pub(crate) enum AuditCmd {
    /// Verifies audit log files: the hash chain, the sequence, the checkpoint signatures and, with an anchor,
    /// truncation. Reports the first bad record and exits 1.
    Verify {
        /// Log files in order (oldest first), or directories of `<prefix>-*.jsonl` files (their
        /// `<prefix>.checkpoint` anchor is used when present).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// An Ed25519 public key file (PEM, or the raw key as base64 / hex). Repeat for rotated keys.
        #[arg(long = "public-key", required = true)]
        public_key: Vec<PathBuf>,
        /// The latest signed checkpoint, kept elsewhere: the log must reach it.
        #[arg(long)]
        anchor: Option<PathBuf>,
        /// File name prefix inside directories.
        #[arg(long, default_value = "audit")]
        prefix: String,
    },
    /// Prints records one per line, safely (control characters and ANSI escapes neutralised).
    Tail {
        /// Log files or directories.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// How many of the last matching records to print first.
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: usize,
        /// Keep printing new records as they are written.
        #[arg(short, long)]
        follow: bool,
        /// Only records whose actor (subject, API key id, SPIFFE ID, client IP) contains this.
        #[arg(long)]
        actor: Option<String>,
        /// Only records with this outcome: allowed, denied, error.
        #[arg(long)]
        outcome: Option<String>,
        /// Only records with this reason code.
        #[arg(long)]
        code: Option<String>,
        /// Only records of this kind: request, data_access, alert, gap, checkpoint.
        #[arg(long)]
        kind: Option<String>,
        /// Print the JSON records instead of one-line summaries.
        #[arg(long)]
        json: bool,
        /// File name prefix inside directories.
        #[arg(long, default_value = "audit")]
        prefix: String,
    },
    /// Generates an Ed25519 checkpoint signing key (PKCS#8 PEM, mode 0600) and prints its public key.
    Keygen {
        /// Where to write the private key.
        #[arg(long)]
        out: PathBuf,
        /// Where to write the public key (default: print it).
        #[arg(long)]
        public_out: Option<PathBuf>,
    },
}

pub(crate) fn run(cmd: AuditCmd) -> ExitCode {
    match cmd {
        AuditCmd::Verify {
            files,
            public_key,
            anchor,
            prefix,
        } => verify(&files, &public_key, anchor.as_deref(), &prefix),
        AuditCmd::Tail {
            files,
            lines,
            follow,
            actor,
            outcome,
            code,
            kind,
            json,
            prefix,
        } => {
            let mut filter = Filter::default();
            filter.actor = actor;
            filter.outcome = outcome;
            filter.code = code;
            filter.kind = kind;
            tail(&files, lines, follow, &filter, json, &prefix)
        }
        AuditCmd::Keygen { out, public_out } => keygen(&out, public_out.as_deref()),
    }
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(2)
}

/// Expands directories into their log files; returns the files and the anchor found in a directory.
fn expand(paths: &[PathBuf], prefix: &str) -> Result<(Vec<PathBuf>, Option<PathBuf>), String> {
    let mut files = Vec::new();
    let mut anchor = None;
    for p in paths {
        if p.is_dir() {
            let found = log_files(p, prefix).map_err(|e| format!("cannot list {}: {e}", p.display()))?;
            if found.is_empty() {
                return Err(format!("no {prefix}-*.jsonl files in {}", p.display()));
            }
            files.extend(found);
            let a = anchor_path(p, prefix);
            if a.exists() {
                anchor = Some(a);
            }
        } else {
            files.push(p.clone());
        }
    }
    Ok((files, anchor))
}

#[allow(clippy::print_stdout)]
fn verify(paths: &[PathBuf], keys: &[PathBuf], anchor: Option<&Path>, prefix: &str) -> ExitCode {
    let mut public = Vec::new();
    for k in keys {
        let text = match std::fs::read_to_string(k) {
            Ok(t) => t,
            Err(e) => return fail(format_args!("cannot read {}: {e}", k.display())),
        };
        match PublicKey::parse(&text) {
            Ok(p) => public.push(p),
            Err(e) => return fail(format_args!("{}: {e}", k.display())),
        }
    }
    let (files, dir_anchor) = match expand(paths, prefix) {
        Ok(x) => x,
        Err(e) => return fail(e),
    };
    let mut verifier = Verifier::new(public);
    let anchor = anchor.map(Path::to_path_buf).or(dir_anchor);
    if let Some(a) = &anchor {
        let bytes = match std::fs::read(a) {
            Ok(b) => b,
            Err(e) => return fail(format_args!("cannot read {}: {e}", a.display())),
        };
        verifier = match verifier.with_anchor(&bytes) {
            Ok(v) => v,
            Err(e) => {
                println!("FAILED: anchor {}: {}", a.display(), e.kind);
                return ExitCode::FAILURE;
            }
        };
    }
    match verifier.verify_files(&files) {
        Ok(report) => {
            println!("OK: {} files, {report}", files.len());
            if anchor.is_none() {
                println!("note: no anchor given: truncation after the last checkpoint cannot be detected");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("FAILED: first bad record: {e}");
            println!("        {} records verified before it", e.verified);
            ExitCode::FAILURE
        }
    }
}

fn print_record(out: &mut impl std::io::Write, v: &serde_json::Value, json: bool) -> std::io::Result<()> {
    if json {
        // serde_json escapes every control character: safe for a terminal as is.
        writeln!(out, "{v}")
    } else {
        writeln!(out, "{}", msec_audit::tail::render(v))
    }
}

fn tail(paths: &[PathBuf], n: usize, follow: bool, filter: &Filter, json: bool, prefix: &str) -> ExitCode {
    let (files, _) = match expand(paths, prefix) {
        Ok(x) => x,
        Err(e) => return fail(e),
    };
    let mut last: std::collections::VecDeque<serde_json::Value> = std::collections::VecDeque::new();
    for f in &files {
        let file = match std::fs::File::open(f) {
            Ok(x) => x,
            Err(e) => return fail(format_args!("cannot open {}: {e}", f.display())),
        };
        for line in std::io::BufReader::new(file).split(b'\n') {
            let Ok(line) = line else { break };
            let Ok(v) = serde_json::from_slice::<serde_json::Value>(&line) else {
                continue;
            };
            if filter.matches(&v) {
                last.push_back(v);
                if last.len() > n {
                    last.pop_front();
                }
            }
        }
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for v in &last {
        if print_record(&mut out, v, json).is_err() {
            return ExitCode::SUCCESS;
        }
    }
    let _ = out.flush();
    drop(out);
    if !follow {
        return ExitCode::SUCCESS;
    }
    follow_files(&files, paths, filter, json, prefix)
}

/// Polls the newest file for appended records, and the directories for new (rotated) files.
fn follow_files(files: &[PathBuf], paths: &[PathBuf], filter: &Filter, json: bool, prefix: &str) -> ExitCode {
    let Some(mut current) = files.last().cloned() else {
        return ExitCode::SUCCESS;
    };
    let mut pos = std::fs::metadata(&current).map(|m| m.len()).unwrap_or(0);
    let mut pending = Vec::new();
    loop {
        if let Ok(mut f) = std::fs::File::open(&current)
            && f.seek(SeekFrom::Start(pos)).is_ok()
        {
            let mut buf = Vec::new();
            if let Ok(n) = std::io::Read::read_to_end(&mut f, &mut buf) {
                pos += n as u64;
                pending.extend_from_slice(&buf);
            }
        }
        while let Some(i) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=i).collect();
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&line)
                && filter.matches(&v)
            {
                let mut out = std::io::stdout().lock();
                if print_record(&mut out, &v, json).and_then(|()| out.flush()).is_err() {
                    return ExitCode::SUCCESS;
                }
            }
        }
        if let Ok((now, _)) = expand(paths, prefix)
            && let Some(newest) = now.last()
            && *newest != current
            && pending.is_empty()
        {
            current = newest.clone();
            pos = 0;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}

#[allow(clippy::print_stdout)]
fn keygen(out: &Path, public_out: Option<&Path>) -> ExitCode {
    let pem = match CheckpointSigner::generate_pkcs8_pem() {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    let signer = match CheckpointSigner::from_pkcs8_pem(pem.expose_secret()) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let written = opts
        .open(out)
        .and_then(|mut f| f.write_all(pem.expose_secret().as_bytes()));
    if let Err(e) = written {
        return fail(format_args!("cannot write {}: {e}", out.display()));
    }
    let public = signer.public_key().to_pem();
    match public_out {
        Some(p) => {
            if let Err(e) = std::fs::write(p, &public) {
                return fail(format_args!("cannot write {}: {e}", p.display()));
            }
            println!(
                "wrote {} (private, 0600) and {} (key id {})",
                out.display(),
                p.display(),
                signer.key_id()
            );
        }
        None => {
            println!("wrote {} (private, 0600); key id {}", out.display(), signer.key_id());
            print!("{public}");
        }
    }
    ExitCode::SUCCESS
}
