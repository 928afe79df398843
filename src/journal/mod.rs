//! The durable journal of a run, over sled.
//!
//! Layout in `--state DIR`:
//! - `DIR/db/`: the sled database (trees `meta`, `vms` (record cores),
//!   `vm_bulk` (original models, histories, source disk models; see
//!   [`layout`]), `events`);
//! - `DIR/journal.jsonl`: an append-only, fsync'd audit copy of every event,
//!   human-readable and a recovery source if sled ever refuses to open;
//! - `DIR/owner`: pid of the process holding the journal (for the lock message);
//! - the other files of the state folder (frozen plan, wave progress,
//!   approvals, live view): [`state_dir`], the owner of every path in it.
//!
//! Contracts:
//! - **Write-ahead.** [`Journal::write`] stores the VM record and its event in
//!   one sled transaction and flushes to disk before returning. The engine calls
//!   it with the intent before every mutating Azure call and with the result
//!   after, so a crash never loses a fact the next run needs.
//! - **Exclusive.** Only one process opens a journal; a second gets
//!   [`JournalError::Locked`] at once.
//! - **Versioned.** `meta.schema_version` is checked on open: newer →
//!   [`JournalError::NewerSchema`]; unreadable → [`JournalError::Corrupt`].
//! - **Read-only refusal.** A `--state` path that is not a journal (a file,
//!   random bytes where sled's files should be) is
//!   [`JournalError::NotAJournal`] before sled opens it (sled would
//!   "recover" it by rewriting it); nothing is created or changed (see
//!   [`inspect`]).
//! - **No secrets.** Only `Serialize` types go in, and secret types are not
//!   `Serialize`.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use sled::Transactional;

use crate::model::ResourceId;
use crate::step::{RecordSummary, Step, VmEntry, VmRecord};

pub mod inspect;
mod layout;
pub mod log_file;
mod migrate;
pub mod state_dir;

pub use migrate::{DEFAULT_LEASE_TTL, LeaseMeta};

/// Schema version written by this build (v2: lease settings; v3: records
/// split into a small core and a bulk, deflated; see [`migrate`], [`layout`]).
pub const SCHEMA_VERSION: u32 = 3;

/// Why a journal could not be used.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// Another process holds the journal.
    #[error("journal {dir} is in use by another ade2eah process{}; wait for it to finish or stop it", pid.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    Locked { dir: PathBuf, pid: Option<u32> },
    /// The journal was written by a newer ade2eah.
    #[error(
        "journal {dir} has schema version {found}, newer than this ade2eah supports ({SCHEMA_VERSION}); use a newer ade2eah"
    )]
    NewerSchema { dir: PathBuf, found: u32 },
    /// The journal cannot be read.
    #[error(
        "journal {dir} is corrupt or unreadable: {detail}; the audit copy journal.jsonl in that directory holds every event"
    )]
    Corrupt { dir: PathBuf, detail: String },
    /// The path is not a journal (checked read-only before sled opens it).
    #[error(
        "{dir} is not an ade2eah journal: {what}; nothing was changed; pass --state DIR of a run"
    )]
    NotAJournal { dir: PathBuf, what: String },
    /// `resume`/`status` on a directory with no run.
    #[error("no run found in journal {dir}; start one with `ade2eah run`")]
    NoRun { dir: PathBuf },
    /// `run` on a directory that already holds a run.
    #[error("journal {dir} already holds run {run_id}; continue it with `ade2eah resume --state {}` or use another --state directory", dir.display())]
    RunExists { dir: PathBuf, run_id: String },
    /// File-system error (disk full, permissions...).
    #[error("journal {dir}: {source}")]
    Io {
        dir: PathBuf,
        source: std::io::Error,
    },
}

/// The run-level facts: options and endpoint, never credentials.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunMeta {
    /// Schema version of this journal.
    pub schema_version: u32,
    /// Unique id of the run; tags every resource it creates.
    pub run_id: String,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// ade2eah version that started the run.
    pub tool_version: String,
    /// ARM endpoint URL.
    pub arm_endpoint: String,
    /// Cloud name (`public`, `china`, `usgov`).
    pub cloud: String,
    /// Subscriptions of the run (`--subscription`, or every subscription of
    /// the plan). Journals written before multi-subscription plans store one
    /// string under `subscription`; it reads as a one-element list.
    #[serde(alias = "subscription", deserialize_with = "one_or_many")]
    pub subscriptions: Vec<String>,
    /// Authentication mode name (never a secret).
    pub auth: String,
    /// Poll interval in seconds.
    pub poll_interval_secs: f64,
    /// Most VMs migrated at once.
    pub max_parallel: usize,
    /// VMs selected, in order.
    pub vms: Vec<ResourceId>,
}

impl RunMeta {
    /// The metadata of a new run started now by this build: a fresh run id
    /// (UUID v7), the creation time and this version, with the run's
    /// endpoint, cloud and auth names, subscriptions, options and VMs.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        arm_endpoint: impl Into<String>,
        cloud: &str,
        auth: &str,
        subscriptions: Vec<String>,
        poll_interval: std::time::Duration,
        max_parallel: usize,
        vms: Vec<ResourceId>,
    ) -> RunMeta {
        RunMeta {
            schema_version: SCHEMA_VERSION,
            run_id: uuid::Uuid::now_v7().to_string(),
            created_at: now_rfc3339(),
            tool_version: env!("CARGO_PKG_VERSION").into(),
            arm_endpoint: arm_endpoint.into(),
            cloud: cloud.into(),
            subscriptions,
            auth: auth.into(),
            poll_interval_secs: poll_interval.as_secs_f64(),
            max_parallel,
            vms,
        }
    }
}

/// A string or a list of strings, as a list.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) if s.is_empty() => Vec::new(),
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

/// One append-only journal event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Monotonic sequence number (sled `generate_id`).
    pub seq: u64,
    /// RFC 3339 UTC.
    pub at: String,
    /// The VM.
    pub vm: ResourceId,
    /// Step at the time of the event.
    pub step: Step,
    /// `intent`, `result`, `error`, `advance`, `park`, `skip`, `discover`...
    pub kind: String,
    /// Details (action, error text, observation summary); never secrets.
    pub detail: serde_json::Value,
}

/// An open journal. Cheap to share behind an `Arc`.
pub struct Journal {
    dir: PathBuf,
    db: sled::Db,
    meta: sled::Tree,
    vms: sled::Tree,
    bulk: sled::Tree,
    events: sled::Tree,
    audit: Mutex<File>,
    /// The writer's lock ([`state_dir::WRITER_LOCK_FILE`]), held while open;
    /// `None` for a reader.
    _writer_lock: Option<File>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Journal({})", self.dir.display())
    }
}

const META_KEY: &[u8] = b"run";

/// How long a writer waits out a reader's hold on sled's lock, in steps.
const READER_WAIT_STEP: std::time::Duration = std::time::Duration::from_millis(20);
/// At most (a reader holds it for one read of the journal).
const READER_WAIT_MAX: std::time::Duration = std::time::Duration::from_secs(120);

/// sled's page cache (its default is 1 GiB). sled 0.34 only starts evicting
/// after ~16,000 page reads (256 shards that each act on 64 queued reads),
/// so this bounds long runs; what one pass over the journal keeps resident
/// is kept small by the layout instead (see [`layout`]).
const CACHE_BYTES: u64 = 8 << 20;

/// Records written per batch (one sled transaction, one flush, one fsync of
/// the audit copy) by [`Journal::write_batch`] callers that touch many VMs.
pub const BATCH: usize = 64;

impl Journal {
    /// Opens (creating if needed) the journal in `dir` to write it, takes
    /// the locks and checks the schema version.
    ///
    /// Two locks, so that a reader can never make a writer fail: the writer
    /// holds [`state_dir::WRITER_LOCK_FILE`] (exclusive) for as long as the
    /// journal is open, and a second writer is refused at once
    /// ([`JournalError::Locked`]); sled's own lock may then still be held
    /// for a moment by a reader (`status`, `report`) that opened the journal
    /// just before, which the writer waits out.
    pub fn open(dir: &Path) -> Result<Journal, JournalError> {
        Journal::open_as(dir, true, false)
    }

    /// Opens the journal of an existing run in `dir` to read it (`status`,
    /// `report`): never holds the writer's lock, and answers
    /// [`JournalError::Locked`] while a writer has it; creates nothing.
    pub fn open_to_read(dir: &Path) -> Result<Journal, JournalError> {
        Journal::open_as(dir, false, true)
    }

    /// Inspects `dir` once (refusing what is not a journal), then opens it
    /// as a writer or a reader; `must_exist`: a directory without a journal
    /// is [`JournalError::NoRun`] and nothing is created.
    fn open_as(dir: &Path, writer: bool, must_exist: bool) -> Result<Journal, JournalError> {
        let io = |source| JournalError::Io {
            dir: dir.to_path_buf(),
            source,
        };
        let locked = || JournalError::Locked {
            dir: dir.to_path_buf(),
            pid: std::fs::read_to_string(state_dir::owner_path(dir))
                .ok()
                .and_then(|s| s.trim().parse().ok()),
        };
        if inspect::inspect(dir)? == inspect::StateDir::Empty && must_exist {
            return Err(JournalError::NoRun {
                dir: dir.to_path_buf(),
            });
        }
        let writer_lock = if writer {
            std::fs::create_dir_all(dir).map_err(io)?;
            let f = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(state_dir::writer_lock_path(dir))
                .map_err(io)?;
            match f.try_lock() {
                Ok(()) => Some(f),
                Err(std::fs::TryLockError::WouldBlock) => return Err(locked()),
                Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
            }
        } else {
            // A writer holds it: the journal is in use (the live view instead).
            if let Ok(f) = File::open(state_dir::writer_lock_path(dir))
                && let Err(std::fs::TryLockError::WouldBlock) = f.try_lock_shared()
            {
                return Err(locked());
            }
            None
        };
        // Holding the writer's lock, a held sled lock can only be a reader's:
        // it lets go within its one read, so wait (bounded, generously).
        let mut waited = std::time::Duration::ZERO;
        let db = loop {
            match sled::Config::new()
                .path(state_dir::db_path(dir))
                .mode(sled::Mode::LowSpace)
                .cache_capacity(CACHE_BYTES)
                .open()
            {
                Ok(db) => break db,
                Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") => {
                    if !writer || waited >= READER_WAIT_MAX {
                        return Err(locked());
                    }
                    std::thread::sleep(READER_WAIT_STEP);
                    waited += READER_WAIT_STEP;
                }
                Err(sled::Error::Io(e)) => return Err(io(e)),
                Err(e) => {
                    return Err(JournalError::Corrupt {
                        dir: dir.to_path_buf(),
                        detail: e.to_string(),
                    });
                }
            }
        };
        let corrupt = |e: sled::Error| JournalError::Corrupt {
            dir: dir.to_path_buf(),
            detail: e.to_string(),
        };
        let meta = db.open_tree("meta").map_err(corrupt)?;
        let vms = db.open_tree("vms").map_err(corrupt)?;
        let bulk = db.open_tree("vm_bulk").map_err(corrupt)?;
        let events = db.open_tree("events").map_err(corrupt)?;
        if writer {
            std::fs::write(state_dir::owner_path(dir), std::process::id().to_string())
                .map_err(io)?;
        }
        let audit = OpenOptions::new()
            .create(true)
            .append(true)
            .open(state_dir::audit_path(dir))
            .map_err(io)?;
        let j = Journal {
            dir: dir.to_path_buf(),
            db,
            meta,
            vms,
            bulk,
            events,
            audit: Mutex::new(audit),
            _writer_lock: writer_lock,
        };
        j.check_schema()?;
        Ok(j)
    }

    /// Opens the journal of an existing run in `dir` ([`Journal::open`]);
    /// creates nothing: a directory without one is [`JournalError::NoRun`].
    pub fn open_existing(dir: &Path) -> Result<Journal, JournalError> {
        Journal::open_as(dir, true, true)
    }

    /// The journal directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn corrupt(&self, detail: impl std::fmt::Display) -> JournalError {
        JournalError::Corrupt {
            dir: self.dir.clone(),
            detail: detail.to_string(),
        }
    }

    fn check_schema(&self) -> Result<(), JournalError> {
        let Some(raw) = self.meta.get(META_KEY).map_err(|e| self.corrupt(e))? else {
            return Ok(());
        };
        let v: serde_json::Value =
            serde_json::from_slice(&raw).map_err(|e| self.corrupt(format!("run metadata: {e}")))?;
        let found = v
            .get("schema_version")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| self.corrupt("run metadata has no schema_version"))?;
        if found > u64::from(SCHEMA_VERSION) {
            return Err(JournalError::NewerSchema {
                dir: self.dir.clone(),
                found: found.min(u64::from(u32::MAX)) as u32,
            });
        }
        if found < u64::from(SCHEMA_VERSION) {
            self.migrate(found, v)?;
        }
        Ok(())
    }

    /// The run metadata, if a run was started here.
    pub fn meta(&self) -> Result<Option<RunMeta>, JournalError> {
        let Some(raw) = self.meta.get(META_KEY).map_err(|e| self.corrupt(e))? else {
            return Ok(None);
        };
        serde_json::from_slice(&raw)
            .map(Some)
            .map_err(|e| self.corrupt(format!("run metadata: {e}")))
    }

    /// The run metadata, or [`JournalError::NoRun`].
    pub fn require_meta(&self) -> Result<RunMeta, JournalError> {
        self.meta()?.ok_or_else(|| JournalError::NoRun {
            dir: self.dir.clone(),
        })
    }

    /// Starts a run: stores `meta` and the initial records, flushed. Fails if
    /// the journal already holds a run.
    /// The records are written one at a time, as the iterator yields them.
    pub fn init_run(
        &self,
        meta: &RunMeta,
        records: impl IntoIterator<Item = impl std::borrow::Borrow<VmRecord>>,
    ) -> Result<(), JournalError> {
        if let Some(existing) = self.meta()? {
            return Err(JournalError::RunExists {
                dir: self.dir.clone(),
                run_id: existing.run_id,
            });
        }
        for r in records {
            self.put_record(r.borrow())?;
        }
        self.put_lease_meta()?;
        let raw = serde_json::to_vec(meta).map_err(|e| self.corrupt(e))?;
        self.meta
            .insert(META_KEY, raw)
            .map_err(|e| self.corrupt(e))?;
        self.flush()
    }

    fn put_record(&self, r: &VmRecord) -> Result<(), JournalError> {
        let (core, bulk) = layout::store(r).map_err(|e| self.corrupt(e))?;
        let key = r.id.key();
        self.bulk
            .insert(key.as_bytes(), bulk)
            .map_err(|e| self.corrupt(e))?;
        self.vms
            .insert(key.as_bytes(), core)
            .map_err(|e| self.corrupt(e))?;
        Ok(())
    }

    /// Position of each VM key in the run's order (`meta.vms`).
    fn run_order(&self) -> Result<HashMap<String, usize>, JournalError> {
        let mut order = HashMap::new();
        if let Some(m) = self.meta()? {
            for (i, id) in m.vms.iter().enumerate() {
                order.entry(id.key()).or_insert(i);
            }
        }
        Ok(order)
    }

    /// Reads every record's core once, one at a time, with `parse`, and
    /// returns the results in the order the run listed the VMs (records the
    /// run did not list last, in key order). Only the parsed values are kept.
    fn scan<T>(
        &self,
        mut parse: impl FnMut(&[u8]) -> Result<T, serde_json::Error>,
        id_of: impl Fn(&T) -> &ResourceId,
    ) -> Result<Vec<T>, JournalError> {
        let order = self.run_order()?;
        let mut out: Vec<(usize, T)> = Vec::new();
        for item in self.vms.iter() {
            let (_, v) = item.map_err(|e| self.corrupt(e))?;
            let json = layout::decode(&v).map_err(|e| self.corrupt(format!("VM record: {e}")))?;
            let t = parse(&json).map_err(|e| self.corrupt(format!("VM record: {e}")))?;
            let pos = order.get(&id_of(&t).key()).copied().unwrap_or(usize::MAX);
            out.push((pos, t));
        }
        out.sort_by_key(|(pos, _)| *pos);
        Ok(out.into_iter().map(|(_, t)| t).collect())
    }

    /// Every VM record, in the order the run listed them. Holds every full
    /// record: for small runs and tests; large runs use [`Journal::index`]
    /// and [`Journal::get`].
    pub fn records(&self) -> Result<Vec<VmRecord>, JournalError> {
        self.index()?.iter().map(|e| self.get(&e.id)).collect()
    }

    /// The index line of every VM, in run order. Every record's core is read
    /// and checked as far as `status` and `report` need it (a record that
    /// cannot be read is [`JournalError::Corrupt`]); only the index is kept,
    /// and the large parts of the records (`vm_bulk`) are not read at all.
    pub fn index(&self) -> Result<Vec<VmEntry>, JournalError> {
        self.scan(
            |raw| serde_json::from_slice::<RecordSummary>(raw).map(|s| VmEntry::from(&s)),
            |e: &VmEntry| &e.id,
        )
    }

    fn core_json(&self, id: &ResourceId) -> Result<Vec<u8>, JournalError> {
        let raw = self
            .vms
            .get(id.key().as_bytes())
            .map_err(|e| self.corrupt(e))?
            .ok_or_else(|| self.corrupt(format!("VM record of {id} is missing")))?;
        layout::decode(&raw)
            .map(|c| c.into_owned())
            .map_err(|e| self.corrupt(format!("VM record: {e}")))
    }

    /// The full record of one VM ([`JournalError::Corrupt`] if it has none).
    pub fn get(&self, id: &ResourceId) -> Result<VmRecord, JournalError> {
        let bad = |e: &dyn std::fmt::Display| self.corrupt(format!("VM record: {e}"));
        let core: serde_json::Value =
            serde_json::from_slice(&self.core_json(id)?).map_err(|e| bad(&e))?;
        let whole = if layout::is_whole(&core) {
            core
        } else {
            let bulk = match self
                .bulk
                .get(id.key().as_bytes())
                .map_err(|e| self.corrupt(e))?
            {
                Some(raw) => serde_json::from_slice(&layout::decode(&raw).map_err(|e| bad(&e))?)
                    .map_err(|e| bad(&e))?,
                None => layout::no_bulk(),
            };
            layout::join(core, bulk)
        };
        serde_json::from_value(whole).map_err(|e| bad(&e))
    }

    /// What `status` and `report` show of one VM, read from its core alone.
    pub fn summary(&self, id: &ResourceId) -> Result<RecordSummary, JournalError> {
        serde_json::from_slice(&self.core_json(id)?)
            .map_err(|e| self.corrupt(format!("VM record: {e}")))
    }

    /// Durably stores `rec` together with one event about it, then flushes.
    /// Returns only once both are on disk (sled flush + fsync'd audit line).
    pub fn write(
        &self,
        rec: &VmRecord,
        kind: &str,
        detail: serde_json::Value,
    ) -> Result<Event, JournalError> {
        let mut events = self.write_batch(&[(rec, kind, detail)])?;
        Ok(events.remove(0))
    }

    /// [`Journal::write`] for several records at once: one sled transaction,
    /// one flush and one fsync of the audit copy for the whole batch (keep
    /// batches to about [`BATCH`] records).
    pub fn write_batch(
        &self,
        items: &[(&VmRecord, &str, serde_json::Value)],
    ) -> Result<Vec<Event>, JournalError> {
        let mut events = Vec::with_capacity(items.len());
        // (key, core, bulk, seq, event) per record, written in one transaction.
        type Raw = (String, Vec<u8>, Vec<u8>, u64, Vec<u8>);
        let mut raws: Vec<Raw> = Vec::with_capacity(items.len());
        for (rec, kind, detail) in items {
            let seq = self.db.generate_id().map_err(|e| self.corrupt(e))?;
            let event = Event {
                seq,
                at: now_rfc3339(),
                vm: rec.id.clone(),
                step: rec.step,
                kind: kind.to_string(),
                detail: detail.clone(),
            };
            let (core, bulk) = layout::store(rec).map_err(|e| self.corrupt(e))?;
            let ev_raw = serde_json::to_vec(&event).map_err(|e| self.corrupt(e))?;
            raws.push((rec.id.key(), core, bulk, seq, ev_raw));
            events.push(event);
        }
        (&self.vms, &self.bulk, &self.events)
            .transaction(|(vms, bulk, evs)| {
                for (key, core, blk, seq, ev_raw) in &raws {
                    vms.insert(key.as_bytes(), core.as_slice())?;
                    bulk.insert(key.as_bytes(), blk.as_slice())?;
                    evs.insert(&seq.to_be_bytes(), ev_raw.as_slice())?;
                }
                Ok::<_, sled::transaction::ConflictableTransactionError<()>>(())
            })
            .map_err(|e| self.corrupt(format!("{e:?}")))?;
        self.flush()?;
        self.audit_lines(raws.iter().map(|(_, _, _, _, ev)| ev.as_slice()))?;
        Ok(events)
    }

    fn audit_line(&self, line: &[u8]) -> Result<(), JournalError> {
        self.audit_lines(std::iter::once(line))
    }

    fn audit_lines<'a>(&self, lines: impl Iterator<Item = &'a [u8]>) -> Result<(), JournalError> {
        let mut f = self.audit.lock().unwrap_or_else(|p| p.into_inner());
        let io = |source| JournalError::Io {
            dir: self.dir.clone(),
            source,
        };
        let mut buf = Vec::new();
        for line in lines {
            buf.extend_from_slice(line);
            buf.push(b'\n');
        }
        f.write_all(&buf).map_err(io)?;
        f.sync_data().map_err(io)
    }

    /// Flushes and fsyncs everything written so far.
    pub fn flush(&self) -> Result<(), JournalError> {
        self.db.flush().map(|_| ()).map_err(|e| match e {
            sled::Error::Io(source) => JournalError::Io {
                dir: self.dir.clone(),
                source,
            },
            other => self.corrupt(other),
        })
    }

    /// All events, oldest first.
    pub fn events(&self) -> Result<Vec<Event>, JournalError> {
        self.events
            .iter()
            .map(|item| {
                let (_, v) = item.map_err(|e| self.corrupt(e))?;
                serde_json::from_slice(&v).map_err(|e| self.corrupt(format!("event: {e}")))
            })
            .collect()
    }
}

/// Current UTC time as RFC 3339 (the journal's only clock read).
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_meta_reads_one_subscription_of_old_journals_as_a_list() {
        let mut v = serde_json::to_value(meta(vec![])).unwrap();
        assert_eq!(v["subscriptions"], serde_json::json!(["s"]));
        let o = v.as_object_mut().unwrap();
        o.remove("subscriptions");
        o.insert("subscription".into(), "old".into());
        let m: RunMeta = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(m.subscriptions, vec!["old"]);
        let o = v.as_object_mut().unwrap();
        o.remove("subscription");
        o.insert("subscriptions".into(), serde_json::json!(["a", "b"]));
        let m: RunMeta = serde_json::from_value(v).unwrap();
        assert_eq!(m.subscriptions, vec!["a", "b"]);
    }

    fn meta(vms: Vec<ResourceId>) -> RunMeta {
        RunMeta {
            run_id: "run-1".into(),
            tool_version: "test".into(),
            ..RunMeta::new(
                "http://127.0.0.1:1",
                "public",
                "none",
                vec!["s".into()],
                std::time::Duration::from_secs(1),
                4,
                vms,
            )
        }
    }

    fn vm(n: &str) -> ResourceId {
        ResourceId::new("s", "rg", "Microsoft.Compute", "virtualMachines", n)
    }

    #[test]
    fn write_then_reopen_keeps_records_and_events_in_order() {
        let dir = tempfile::tempdir().unwrap();
        {
            let j = Journal::open(dir.path()).unwrap();
            let recs = vec![VmRecord::new(vm("b")), VmRecord::new(vm("a"))];
            j.init_run(&meta(vec![vm("b"), vm("a")]), &recs).unwrap();
            let mut r = recs[1].clone();
            r.step = Step::DisableAde;
            j.write(&r, "advance", serde_json::json!({"to": "disable-ade"}))
                .unwrap();
            j.write(&r, "intent", serde_json::json!({"action": "disable-ade"}))
                .unwrap();
        }
        let j = Journal::open(dir.path()).unwrap();
        let recs = j.records().unwrap();
        assert_eq!(
            recs.iter()
                .map(|r| r.id.name().to_string())
                .collect::<Vec<_>>(),
            ["b", "a"]
        );
        assert_eq!(recs[1].step, Step::DisableAde);
        let ev = j.events().unwrap();
        assert_eq!(ev.len(), 2);
        assert!(ev[0].seq < ev[1].seq);
        assert_eq!(ev[1].kind, "intent");
        let audit = std::fs::read_to_string(dir.path().join("journal.jsonl")).unwrap();
        assert_eq!(audit.lines().count(), 2);
    }

    #[test]
    fn a_reader_never_makes_a_writer_fail_and_sees_a_writer_as_locked() {
        let dir = tempfile::tempdir().unwrap();
        Journal::open(dir.path())
            .unwrap()
            .init_run(&meta(vec![vm("a")]), &[VmRecord::new(vm("a"))])
            .unwrap();
        // A reader holds sled's lock while a writer starts: the writer waits
        // it out instead of failing as "in use".
        let reader = Journal::open_to_read(dir.path()).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let path = dir.path().to_path_buf();
        let writer = std::thread::spawn(move || {
            let r = Journal::open(&path);
            tx.send(()).unwrap();
            r
        });
        // The writer is still waiting while the reader has the journal.
        assert!(
            rx.recv_timeout(std::time::Duration::from_millis(200))
                .is_err()
        );
        drop(reader);
        let w = writer
            .join()
            .unwrap()
            .expect("the writer opens once the reader is done");
        // While the writer has it, a reader is told it is in use (live view),
        // and a second writer is refused at once.
        assert!(matches!(
            Journal::open_to_read(dir.path()).unwrap_err(),
            JournalError::Locked { .. }
        ));
        assert!(matches!(
            Journal::open(dir.path()).unwrap_err(),
            JournalError::Locked { .. }
        ));
        drop(w);
        assert!(Journal::open_to_read(dir.path()).is_ok());
    }

    #[test]
    fn second_open_is_refused_with_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let _j = Journal::open(dir.path()).unwrap();
        let err = Journal::open(dir.path()).unwrap_err();
        assert!(matches!(err, JournalError::Locked { .. }), "{err}");
        assert!(
            err.to_string()
                .contains("in use by another ade2eah process")
        );
    }

    #[test]
    fn newer_schema_and_second_run_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let j = Journal::open(dir.path()).unwrap();
            let mut m = meta(vec![]);
            j.init_run(&m, Vec::<VmRecord>::new()).unwrap();
            m.run_id = "run-2".into();
            assert!(matches!(
                j.init_run(&m, Vec::<VmRecord>::new()),
                Err(JournalError::RunExists { .. })
            ));
            m.schema_version = SCHEMA_VERSION + 1;
            j.meta
                .insert(META_KEY, serde_json::to_vec(&m).unwrap())
                .unwrap();
            j.flush().unwrap();
        }
        let err = Journal::open(dir.path()).unwrap_err();
        assert!(
            matches!(err, JournalError::NewerSchema { found, .. } if found == SCHEMA_VERSION + 1),
            "{err}"
        );
    }
}
