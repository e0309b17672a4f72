//! The JSON-lines file sink with size and time rotation.
//!
//! Files are named `<prefix>-<first seq, 20 digits>.jsonl`, so they sort in chain order; each starts with a
//! signed checkpoint, so a file verifies on its own once older ones are archived. The chain continues from one
//! file into the next and across restarts: on open, the sink reads the last complete record of the newest file
//! and the writer continues from it — in a new file, so that a record torn by a crash is never followed by
//! another in the same file.
//!
//! After each checkpoint is durably written, the sink also replaces `<prefix>.checkpoint` (write, fsync,
//! rename) with that checkpoint's line: the anchor `msec audit verify --anchor` uses to detect truncation. Copy it
//! off-host for that to hold against someone who can write the log directory.

use std::fs::{self, File, OpenOptions};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::chain::{ChainHead, Record};
use crate::sink::{Sink, SinkError};
use crate::util::parse_hash;

/// Builder for [`FileSink`].
#[derive(Debug, Clone)]
#[must_use]
pub struct FileSinkBuilder {
    dir: PathBuf,
    prefix: String,
    max_bytes: u64,
    max_age: Option<Duration>,
    anchor: bool,
}

impl FileSinkBuilder {
    /// File names start with `prefix` (default `audit`; letters, digits, `-`, `_`, `.`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Rotates when a file reaches `bytes` (default 128 MiB; checked between batches, so a file may exceed it
    /// by one batch).
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.max_bytes = bytes.max(1);
        self
    }

    /// Rotates when a file is older than `age` by the log's clock (default: never by age).
    pub fn max_age(mut self, age: Duration) -> Self {
        self.max_age = Some(age);
        self
    }

    /// Whether to keep the `<prefix>.checkpoint` anchor file (default true).
    pub fn anchor_file(mut self, keep: bool) -> Self {
        self.anchor = keep;
        self
    }

    /// Builds the sink. The directory is created when the log starts.
    pub fn build(self) -> Result<FileSink, SinkError> {
        if self.prefix.is_empty()
            || !self
                .prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return Err(SinkError::new(
                "the file prefix must be letters, digits, `-`, `_` or `.`",
            ));
        }
        Ok(FileSink {
            cfg: self,
            current: None,
            current_len: 0,
            opened_at: None,
            new_file_unsynced: false,
            buf: Vec::with_capacity(1 << 16),
        })
    }
}

/// JSON lines in rotating files. See the [module docs](self).
#[derive(Debug)]
pub struct FileSink {
    cfg: FileSinkBuilder,
    current: Option<(File, PathBuf)>,
    current_len: u64,
    opened_at: Option<SystemTime>,
    new_file_unsynced: bool,
    buf: Vec<u8>,
}

impl FileSink {
    /// A builder writing into `dir`.
    pub fn builder(dir: impl Into<PathBuf>) -> FileSinkBuilder {
        FileSinkBuilder {
            dir: dir.into(),
            prefix: "audit".into(),
            max_bytes: 128 << 20,
            max_age: None,
            anchor: true,
        }
    }

    /// A sink with the defaults writing into `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self, SinkError> {
        Self::builder(dir).build()
    }

    /// The anchor file's path.
    pub fn anchor_path(&self) -> PathBuf {
        anchor_path(&self.cfg.dir, &self.cfg.prefix)
    }

    /// The current file, if one is open.
    pub fn current_file(&self) -> Option<&Path> {
        self.current.as_ref().map(|(_, p)| p.as_path())
    }
}

/// The anchor file of the logs with `prefix` in `dir`.
pub fn anchor_path(dir: &Path, prefix: &str) -> PathBuf {
    dir.join(format!("{prefix}.checkpoint"))
}

/// The log files with `prefix` in `dir`, oldest first.
pub fn log_files(dir: &Path, prefix: &str) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let start = format!("{prefix}-");
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(num) = name.strip_prefix(&start).and_then(|n| n.strip_suffix(".jsonl"))
            && num.len() == 20
            && num.bytes().all(|b| b.is_ascii_digit())
        {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

#[derive(serde::Deserialize)]
struct Tail<'a> {
    seq: u64,
    #[serde(borrow)]
    hash: std::borrow::Cow<'a, str>,
    #[serde(borrow, default)]
    log: Option<std::borrow::Cow<'a, str>>,
}

/// The last complete line of a file (reads at most the final 1 MiB).
fn last_complete_line(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    let mut f = File::open(path)?;
    let len = f.metadata()?.len();
    let start = len.saturating_sub(1 << 20);
    f.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::with_capacity((len - start) as usize);
    f.read_to_end(&mut buf)?;
    let Some(end) = buf.iter().rposition(|&b| b == b'\n') else {
        return Ok(None);
    };
    let body = &buf[..end];
    let begin = body.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    Ok(Some(body[begin..].to_vec()))
}

fn first_line(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    let mut f = File::open(path)?;
    let mut buf = vec![0u8; 4096];
    let n = f.read(&mut buf)?;
    buf.truncate(n);
    Ok(buf.iter().position(|&b| b == b'\n').map(|i| buf[..i].to_vec()))
}

impl Sink for FileSink {
    fn name(&self) -> &'static str {
        "file"
    }

    fn open(&mut self) -> Result<Option<ChainHead>, SinkError> {
        fs::create_dir_all(&self.cfg.dir)
            .map_err(|e| SinkError::with_source(format!("cannot create {}", self.cfg.dir.display()), e))?;
        let files = log_files(&self.cfg.dir, &self.cfg.prefix)?;
        // Continue from the newest file that holds a complete record.
        for path in files.iter().rev() {
            let Some(line) = last_complete_line(path)? else {
                continue;
            };
            let tail: Tail<'_> = serde_json::from_slice(&line).map_err(|e| {
                SinkError::with_source(
                    format!(
                        "cannot continue the log: last record of {} is unreadable",
                        path.display()
                    ),
                    e,
                )
            })?;
            let prev = parse_hash(tail.hash.as_bytes())
                .ok_or_else(|| SinkError::new(format!("cannot continue the log: bad hash in {}", path.display())))?;
            let log_id = match first_line(path)? {
                Some(first) => serde_json::from_slice::<Tail<'_>>(&first)
                    .ok()
                    .and_then(|t| t.log.map(|l| Arc::<str>::from(&*l))),
                None => None,
            }
            .or_else(|| tail.log.map(|l| Arc::<str>::from(&*l)))
            .ok_or_else(|| {
                SinkError::new(format!(
                    "cannot continue the log: {} does not start with a checkpoint",
                    path.display()
                ))
            })?;
            return Ok(Some(ChainHead {
                log_id,
                next_seq: tail.seq + 1,
                prev,
            }));
        }
        Ok(None)
    }

    fn write(&mut self, records: &[Record]) -> Result<(), SinkError> {
        let Some(first) = records.first() else { return Ok(()) };
        if self.current.is_none() {
            let path = self
                .cfg
                .dir
                .join(format!("{}-{:020}.jsonl", self.cfg.prefix, first.seq));
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| SinkError::with_source(format!("cannot open {}", path.display()), e))?;
            self.current_len = f.metadata()?.len();
            self.current = Some((f, path));
            self.opened_at = Some(first.time);
            self.new_file_unsynced = true;
        }
        self.buf.clear();
        for r in records {
            self.buf.extend_from_slice(&r.line);
            self.buf.push(b'\n');
        }
        let Some((f, _)) = self.current.as_mut() else {
            return Ok(());
        };
        if let Err(e) = f.write_all(&self.buf) {
            // All or nothing: cut a partial batch off so the retry does not duplicate it.
            let _ = f.set_len(self.current_len);
            return Err(e.into());
        }
        self.current_len += self.buf.len() as u64;
        Ok(())
    }

    fn sync(&mut self) -> Result<(), SinkError> {
        if let Some((f, _)) = &self.current {
            f.sync_data()?;
            if self.new_file_unsynced {
                // Make the new file's directory entry durable too.
                File::open(&self.cfg.dir)?.sync_all()?;
                self.new_file_unsynced = false;
            }
        }
        Ok(())
    }

    fn rotation_due(&mut self, now: SystemTime) -> bool {
        if self.current.is_none() {
            return false;
        }
        self.current_len >= self.cfg.max_bytes
            || match (self.cfg.max_age, self.opened_at) {
                (Some(age), Some(at)) => now.duration_since(at).is_ok_and(|d| d >= age),
                _ => false,
            }
    }

    fn rotate(&mut self) -> Result<(), SinkError> {
        if let Some((f, _)) = self.current.take() {
            f.sync_data()?;
        }
        Ok(())
    }

    fn checkpointed(&mut self, checkpoint: &Record) -> Result<(), SinkError> {
        if !self.cfg.anchor {
            return Ok(());
        }
        let path = self.anchor_path();
        let tmp = path.with_extension("checkpoint.tmp");
        let mut f = File::create(&tmp)?;
        f.write_all(&checkpoint.line)?;
        f.write_all(b"\n")?;
        f.sync_data()?;
        fs::rename(&tmp, &path)?;
        Ok(())
    }

    fn close(&mut self) -> Result<(), SinkError> {
        self.sync()?;
        self.current = None;
        Ok(())
    }
}
