//! Verification of audit logs: the hash chain, the sequence, the checkpoint signatures and, given an anchor
//! (the latest signed checkpoint kept elsewhere), truncation.
//!
//! Input is untrusted bytes; nothing here panics on it (the `audit_verify` fuzz target runs this code).
//!
//! ```
//! use msec_audit::{AuditLog, CheckpointSigner, MemorySink, Verifier};
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let signer = CheckpointSigner::ephemeral()?;
//! let public = signer.public_key();
//! let sink = MemorySink::new();
//! let log = AuditLog::builder().signer(signer).start(sink.clone())?;
//! log.emit(msec_audit::DataAccess::read("customer", "c-1")).await?;
//! log.shutdown().await?;
//!
//! let report = Verifier::new([public.clone()]).verify_bytes(&sink.contents())?;
//! assert_eq!(report.records, 3); // start checkpoint, the event, the closing checkpoint
//!
//! let tampered = String::from_utf8(sink.contents())?.replace("c-1", "c-2");
//! let err = Verifier::new([public]).verify_bytes(tampered.as_bytes()).unwrap_err();
//! assert_eq!(err.seq, Some(1));
//! # Ok(()) }
//! ```

use std::borrow::Cow;
use std::fmt;
use std::io::BufRead as _;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

use crate::chain::{GENESIS_PREV, HASH_SUFFIX_LEN, PublicKey, RECORD_VERSION, checkpoint_message, sha256};
use crate::util::{hex, parse_hash};

/// Where a record was read from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Location {
    /// The file, when reading files.
    pub file: Option<String>,
    /// The 1-based line number (or row number) within it.
    pub line: u64,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(file) => write!(f, "{file}:{}", self.line),
            None => write!(f, "line {}", self.line),
        }
    }
}

/// What is wrong with a log.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureKind {
    /// The line is not a well-formed record (what is wrong is named).
    Malformed(&'static str),
    /// The record's bytes do not hash to its `hash`: it was modified.
    Modified,
    /// Another record than the expected one came next: a record was deleted (`found` > expected) or records were
    /// reordered or duplicated (`found` < expected).
    WrongSequence {
        /// The sequence number found instead.
        found: u64,
    },
    /// The record's `prev` is not the previous record's hash: it was replaced or the log was spliced.
    BrokenLink,
    /// The record format version is not supported.
    UnsupportedVersion(u64),
    /// The first record is neither the genesis record nor a checkpoint, so nothing anchors the chain.
    Unanchored,
    /// A checkpoint's signature does not verify.
    BadSignature,
    /// A checkpoint is signed by a key that was not given.
    UnknownKey(String),
    /// A checkpoint carries no signature although keys were given.
    Unsigned,
    /// A checkpoint names another log than the earlier records.
    LogIdMismatch,
    /// A checkpoint's `chain` differs from its `prev`.
    ChainMismatch,
    /// The log ends before the record a signed anchor covers: records were cut off.
    Truncated {
        /// The sequence number of the anchor checkpoint.
        anchor_seq: u64,
    },
    /// The record at the anchor's sequence number differs from the anchor.
    AnchorMismatch,
    /// The anchor itself is not a valid signed checkpoint.
    BadAnchor,
    /// No record at all.
    Empty,
    /// A file could not be read.
    Io(String),
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed(what) => write!(f, "malformed record: {what}"),
            Self::Modified => f.write_str("the record was modified (its hash does not match its content)"),
            Self::WrongSequence { found } => write!(
                f,
                "found record {found} instead (a record was deleted, or records were reordered or duplicated)"
            ),
            Self::BrokenLink => {
                f.write_str("the record does not link to the previous record's hash (replaced or spliced)")
            }
            Self::UnsupportedVersion(v) => write!(f, "unsupported record version {v}"),
            Self::Unanchored => {
                f.write_str("the log starts neither with the genesis record nor with a signed checkpoint")
            }
            Self::BadSignature => f.write_str("the checkpoint signature does not verify"),
            Self::UnknownKey(k) => write!(f, "the checkpoint is signed by unknown key {k}"),
            Self::Unsigned => f.write_str("the checkpoint is not signed"),
            Self::LogIdMismatch => f.write_str("the checkpoint belongs to another log"),
            Self::ChainMismatch => f.write_str("the checkpoint's chain hash differs from its prev"),
            Self::Truncated { anchor_seq } => write!(
                f,
                "the log was truncated: it ends here, but a signed checkpoint covers records up to {anchor_seq}"
            ),
            Self::AnchorMismatch => f.write_str("the record differs from the signed anchor checkpoint"),
            Self::BadAnchor => f.write_str("the anchor is not a valid signed checkpoint"),
            Self::Empty => f.write_str("no records"),
            Self::Io(e) => write!(f, "cannot read: {e}"),
        }
    }
}

/// Verification failed: the first bad record, where it is and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("record {}{}: {kind}", seq.map_or_else(|| "?".to_owned(), |s| s.to_string()), location.as_ref().map(|l| format!(" ({l})")).unwrap_or_default())]
#[non_exhaustive]
pub struct VerifyError {
    /// The sequence number of the first bad record (the one expected at that position).
    pub seq: Option<u64>,
    /// Where it was read.
    pub location: Option<Location>,
    /// What is wrong.
    pub kind: FailureKind,
    /// How many records verified before it.
    pub verified: u64,
}

/// A torn final line: a record cut off mid-write (a crash), tolerated at the end of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// Where it is.
    pub location: Location,
    /// Its length in bytes.
    pub bytes: usize,
}

/// What a successful verification found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Report {
    /// Records verified.
    pub records: u64,
    /// The log id (from the checkpoints).
    pub log_id: Option<String>,
    /// The first sequence number.
    pub first_seq: Option<u64>,
    /// The last sequence number.
    pub last_seq: Option<u64>,
    /// The hash of the last record.
    pub last_hash: Option<[u8; 32]>,
    /// Signed checkpoints verified.
    pub checkpoints: u64,
    /// The sequence number of the last checkpoint.
    pub last_checkpoint: Option<u64>,
    /// Records after the last checkpoint (chained, but not yet covered by a signature).
    pub unsigned_tail: u64,
    /// Events the log admits were dropped (sum of `gap` records).
    pub dropped: u64,
    /// Requests the log admits were refused while it could not keep up (sum of `gap` records).
    pub refused: u64,
    /// Alerts recorded.
    pub alerts: u64,
    /// Torn final lines (crash), ignored.
    pub torn_tails: Vec<TornTail>,
    /// The sequence number of the anchor that was checked, if one was given.
    pub anchor_seq: Option<u64>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} records (seq {}..{}) of log {}, {} signed checkpoints",
            self.records,
            self.first_seq.unwrap_or(0),
            self.last_seq.unwrap_or(0),
            self.log_id.as_deref().unwrap_or("?"),
            self.checkpoints
        )?;
        if let Some(c) = self.last_checkpoint {
            write!(f, " (last at seq {c})")?;
        }
        if self.unsigned_tail > 0 {
            write!(
                f,
                "; {} records after the last checkpoint are not yet signed",
                self.unsigned_tail
            )?;
        }
        if self.dropped > 0 || self.refused > 0 {
            write!(
                f,
                "; the log admits {} dropped events and {} refused requests",
                self.dropped, self.refused
            )?;
        }
        if let Some(a) = self.anchor_seq {
            write!(f, "; anchor at seq {a} matched")?;
        }
        for t in &self.torn_tails {
            write!(f, "; ignored a torn final line of {} bytes at {}", t.bytes, t.location)?;
        }
        Ok(())
    }
}

#[derive(Deserialize)]
struct Head<'a> {
    v: u64,
    seq: u64,
    #[serde(borrow)]
    prev: Cow<'a, str>,
    #[serde(borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    hash: Cow<'a, str>,
    #[serde(borrow, default)]
    time: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    log: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    chain: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    key: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    sig: Option<Cow<'a, str>>,
    #[serde(default)]
    dropped: Option<u64>,
    #[serde(default)]
    refused: Option<u64>,
}

#[derive(Clone)]
struct Anchor {
    seq: u64,
    hash: [u8; 32],
    log_id: String,
}

/// Verifies logs against a set of public keys.
#[derive(Clone)]
pub struct Verifier {
    keys: Vec<PublicKey>,
    anchor: Option<Anchor>,
    check_signatures: bool,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("keys", &self.keys)
            .field("anchor_seq", &self.anchor.as_ref().map(|a| a.seq))
            .field("check_signatures", &self.check_signatures)
            .finish()
    }
}

impl Verifier {
    /// A verifier accepting checkpoints signed by any of `keys`. Unsigned checkpoints fail.
    pub fn new(keys: impl IntoIterator<Item = PublicKey>) -> Self {
        Self {
            keys: keys.into_iter().collect(),
            anchor: None,
            check_signatures: true,
        }
    }

    /// A verifier that checks the hash chain and the sequence only, not signatures: anyone can forge a
    /// consistent chain, so this proves nothing against a deliberate attacker.
    pub fn danger_chain_only() -> Self {
        Self {
            keys: Vec::new(),
            anchor: None,
            check_signatures: false,
        }
    }

    /// Requires the log to reach, and agree with, `anchor`: a checkpoint record line kept elsewhere (the file
    /// sink's `.checkpoint` file, a row of the PostgreSQL table, a copy shipped off-host). This detects
    /// truncation, which the chain alone cannot.
    pub fn with_anchor(mut self, anchor: &[u8]) -> Result<Self, VerifyError> {
        let bad = |kind| VerifyError {
            seq: None,
            location: None,
            kind,
            verified: 0,
        };
        let line = trim_line(anchor);
        let mut state = State::new(&self);
        // An anchor verifies alone: its hash, its signature. Its prev is taken as given.
        let head = state.check_line(line).map_err(bad)?;
        if head.kind != "checkpoint" || (self.check_signatures && head.sig.is_none()) {
            return Err(bad(FailureKind::BadAnchor));
        }
        state.check_checkpoint(&head).map_err(|_| bad(FailureKind::BadAnchor))?;
        let hash = parse_hash(head.hash.as_bytes()).ok_or_else(|| bad(FailureKind::BadAnchor))?;
        self.anchor = Some(Anchor {
            seq: head.seq,
            hash,
            log_id: head.log.as_deref().unwrap_or_default().to_owned(),
        });
        Ok(self)
    }

    /// An incremental verifier: feed it lines in order.
    pub fn stream(&self) -> ChainVerifier<'_> {
        ChainVerifier {
            state: State::new(self),
            report: Report::default(),
            failed: None,
        }
    }

    /// Verifies one log held in memory (JSON lines; a torn final line is tolerated and reported).
    pub fn verify_bytes(&self, data: &[u8]) -> Result<Report, VerifyError> {
        let mut v = self.stream();
        v.push_chunk(data, None)?;
        v.finish()
    }

    /// Verifies records given one by one (rows read back from a database, say).
    pub fn verify_lines<'a>(&self, lines: impl IntoIterator<Item = &'a [u8]>) -> Result<Report, VerifyError> {
        let mut v = self.stream();
        for (i, line) in lines.into_iter().enumerate() {
            v.push_line(
                line,
                Location {
                    file: None,
                    line: i as u64 + 1,
                },
            )?;
        }
        v.finish()
    }

    /// Verifies files in order (oldest first — the file sink's names sort that way). The chain must continue
    /// from each file into the next.
    pub fn verify_files<P: AsRef<Path>>(&self, paths: &[P]) -> Result<Report, VerifyError> {
        let mut v = self.stream();
        for p in paths {
            let p = p.as_ref();
            let name = p.display().to_string();
            let io = |e: std::io::Error, line| VerifyError {
                seq: None,
                location: Some(Location {
                    file: Some(name.clone()),
                    line,
                }),
                kind: FailureKind::Io(e.to_string()),
                verified: 0,
            };
            let f = std::fs::File::open(p).map_err(|e| io(e, 0))?;
            let mut r = std::io::BufReader::with_capacity(1 << 16, f);
            let mut buf = Vec::with_capacity(1024);
            let mut n = 0u64;
            loop {
                buf.clear();
                let got = r.read_until(b'\n', &mut buf).map_err(|e| io(e, n + 1))?;
                if got == 0 {
                    break;
                }
                n += 1;
                let loc = Location {
                    file: Some(name.clone()),
                    line: n,
                };
                if buf.last() == Some(&b'\n') {
                    buf.pop();
                    v.push_line(&buf, loc)?;
                } else {
                    v.push_tail(&buf, loc)?;
                }
            }
        }
        v.finish()
    }
}

fn trim_line(b: &[u8]) -> &[u8] {
    let mut b = b;
    while let Some((last, rest)) = b.split_last() {
        if matches!(last, b'\n' | b'\r' | b' ') {
            b = rest;
        } else {
            break;
        }
    }
    b
}

struct State<'v> {
    verifier: &'v Verifier,
    expected: Option<u64>,
    prev: [u8; 32],
    log_id: Option<String>,
}

impl<'v> State<'v> {
    fn new(verifier: &'v Verifier) -> Self {
        Self {
            verifier,
            expected: None,
            prev: GENESIS_PREV,
            log_id: None,
        }
    }

    /// Checks a line's own integrity (suffix, hash, JSON, version) and parses its head.
    fn check_line<'a>(&self, line: &'a [u8]) -> Result<Head<'a>, FailureKind> {
        if line.len() <= HASH_SUFFIX_LEN || !line.starts_with(b"{") {
            return Err(FailureKind::Malformed("not a record line"));
        }
        let split = line.len() - HASH_SUFFIX_LEN;
        let (prefix, suffix) = line.split_at(split);
        if !suffix.starts_with(b",\"hash\":\"") || !suffix.ends_with(b"\"}") {
            return Err(FailureKind::Malformed("the line does not end with the hash member"));
        }
        let claimed = parse_hash(&suffix[9..73]).ok_or(FailureKind::Malformed("the hash is not 64 hex digits"))?;
        if sha256(prefix) != claimed {
            return Err(FailureKind::Modified);
        }
        let head: Head<'a> =
            serde_json::from_slice(line).map_err(|_| FailureKind::Malformed("not a valid record object"))?;
        if head.v != u64::from(RECORD_VERSION) {
            return Err(FailureKind::UnsupportedVersion(head.v));
        }
        if head.hash.as_bytes() != &suffix[9..73] {
            return Err(FailureKind::Malformed("duplicate hash member"));
        }
        Ok(head)
    }

    fn check_checkpoint(&mut self, head: &Head<'_>) -> Result<(), FailureKind> {
        let log = head
            .log
            .as_deref()
            .ok_or(FailureKind::Malformed("checkpoint without log id"))?;
        match &self.log_id {
            Some(l) if l != log => return Err(FailureKind::LogIdMismatch),
            Some(_) => {}
            None => self.log_id = Some(log.to_owned()),
        }
        let chain = head
            .chain
            .as_deref()
            .ok_or(FailureKind::Malformed("checkpoint without chain hash"))?;
        if chain != head.prev {
            return Err(FailureKind::ChainMismatch);
        }
        if !self.verifier.check_signatures {
            return Ok(());
        }
        let (Some(key_id), Some(sig)) = (head.key.as_deref(), head.sig.as_deref()) else {
            return Err(FailureKind::Unsigned);
        };
        let key = self
            .verifier
            .keys
            .iter()
            .find(|k| k.key_id() == key_id)
            .ok_or_else(|| FailureKind::UnknownKey(crate::util::bounded(key_id, 32)))?;
        let time = head
            .time
            .as_deref()
            .ok_or(FailureKind::Malformed("checkpoint without time"))?;
        let sig = URL_SAFE_NO_PAD.decode(sig).map_err(|_| FailureKind::BadSignature)?;
        let msg = checkpoint_message(log, head.seq, chain, time);
        if key.verify(msg.as_bytes(), &sig) {
            Ok(())
        } else {
            Err(FailureKind::BadSignature)
        }
    }
}

/// An incremental verifier, from [`Verifier::stream`].
pub struct ChainVerifier<'v> {
    state: State<'v>,
    report: Report,
    failed: Option<VerifyError>,
}

impl fmt::Debug for ChainVerifier<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChainVerifier")
            .field("report", &self.report)
            .finish_non_exhaustive()
    }
}

impl ChainVerifier<'_> {
    fn fail(&mut self, kind: FailureKind, seq: Option<u64>, location: Location) -> VerifyError {
        let e = VerifyError {
            seq,
            location: Some(location),
            kind,
            verified: self.report.records,
        };
        self.failed = Some(e.clone());
        e
    }

    /// Feeds one record line (without its newline).
    pub fn push_line(&mut self, line: &[u8], location: Location) -> Result<(), VerifyError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let expected = self.state.expected;
        let head = match self.state.check_line(line) {
            Ok(h) => h,
            Err(e) => return Err(self.fail(e, expected, location)),
        };
        let seq = head.seq;
        let prev = parse_hash(head.prev.as_bytes());
        let hash = parse_hash(head.hash.as_bytes());
        let (Some(prev), Some(hash)) = (prev, hash) else {
            return Err(self.fail(
                FailureKind::Malformed("prev is not 64 hex digits"),
                expected.or(Some(seq)),
                location,
            ));
        };
        match expected {
            None => {
                // The first record anchors the chain: the genesis record, or a signed checkpoint.
                let genesis = seq == 0 && prev == GENESIS_PREV;
                if !genesis && head.kind != "checkpoint" {
                    return Err(self.fail(FailureKind::Unanchored, Some(seq), location));
                }
                self.report.first_seq = Some(seq);
            }
            Some(exp) => {
                if seq != exp {
                    return Err(self.fail(FailureKind::WrongSequence { found: seq }, Some(exp), location));
                }
                if prev != self.state.prev {
                    return Err(self.fail(FailureKind::BrokenLink, Some(exp), location));
                }
            }
        }
        match &*head.kind {
            "checkpoint" => {
                if let Err(k) = self.state.check_checkpoint(&head) {
                    return Err(self.fail(k, Some(seq), location));
                }
                self.report.checkpoints += 1;
                self.report.last_checkpoint = Some(seq);
                self.report.unsigned_tail = 0;
            }
            "gap" => {
                self.report.dropped = self.report.dropped.saturating_add(head.dropped.unwrap_or(0));
                self.report.refused = self.report.refused.saturating_add(head.refused.unwrap_or(0));
                self.report.unsigned_tail += 1;
            }
            "alert" => {
                self.report.alerts += 1;
                self.report.unsigned_tail += 1;
            }
            _ => self.report.unsigned_tail += 1,
        }
        if let Some(a) = &self.state.verifier.anchor
            && a.seq == seq
            && (a.hash != hash || self.state.log_id.as_deref().is_some_and(|l| l != a.log_id))
        {
            return Err(self.fail(FailureKind::AnchorMismatch, Some(seq), location));
        }
        self.state.expected = Some(seq.saturating_add(1));
        self.state.prev = hash;
        self.report.records += 1;
        self.report.last_seq = Some(seq);
        self.report.last_hash = Some(hash);
        Ok(())
    }

    /// Feeds a final line that has no newline: verified if it is a complete record, otherwise recorded as a
    /// torn tail (a crash mid-write).
    pub fn push_tail(&mut self, line: &[u8], location: Location) -> Result<(), VerifyError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if line.is_empty() {
            return Ok(());
        }
        if self.state.check_line(line).is_ok() {
            return self.push_line(line, location);
        }
        self.report.torn_tails.push(TornTail {
            location,
            bytes: line.len(),
        });
        Ok(())
    }

    /// Feeds a chunk of JSON lines; a final piece without newline is treated as a tail.
    pub fn push_chunk(&mut self, data: &[u8], file: Option<&str>) -> Result<(), VerifyError> {
        let mut n = 0u64;
        let mut rest = data;
        while !rest.is_empty() {
            n += 1;
            let loc = Location {
                file: file.map(str::to_owned),
                line: n,
            };
            match rest.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    self.push_line(&rest[..i], loc)?;
                    rest = &rest[i + 1..];
                }
                None => {
                    self.push_tail(rest, loc)?;
                    break;
                }
            }
        }
        Ok(())
    }

    /// Ends verification: checks the anchor was reached and returns the report.
    pub fn finish(mut self) -> Result<Report, VerifyError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let Some(last) = self.report.last_seq else {
            return Err(VerifyError {
                seq: None,
                location: None,
                kind: FailureKind::Empty,
                verified: 0,
            });
        };
        if let Some(a) = &self.state.verifier.anchor {
            if last < a.seq {
                return Err(VerifyError {
                    seq: Some(last + 1),
                    location: None,
                    kind: FailureKind::Truncated { anchor_seq: a.seq },
                    verified: self.report.records,
                });
            }
            self.report.anchor_seq = Some(a.seq);
        }
        self.report.log_id = self.state.log_id.take();
        Ok(self.report)
    }
}

impl Report {
    /// The last record's hash as hex.
    pub fn last_hash_hex(&self) -> Option<String> {
        self.last_hash.map(|h| hex(&h))
    }
}
