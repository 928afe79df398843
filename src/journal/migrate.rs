//! Schema migrations, run by [`super::Journal::open`] before anything else
//! reads the journal.
//!
//! - **v1 → v2** (issue 4): v2 adds the run's Azure-side lease settings, the
//!   `lease` entry of the `meta` tree ([`LeaseMeta`]). A v1 journal (from a
//!   build without leases) gets the default lease entry and its run metadata's
//!   `schema_version` becomes 2; both are written in one sled transaction,
//!   flushed, and an audit line `{"kind":"migrate","from":1,"to":2}` is
//!   appended to `journal.jsonl`. Records and events are unchanged.
//! - **v2 → v3** (journal memory): each record is split into a small core
//!   (tree `vms`) and its bulk (tree `vm_bulk`: original model, history,
//!   source disk models), both deflated ([`super::layout`]); then the run
//!   metadata's `schema_version` becomes 3. Records a v3 build reads are
//!   accepted in either form, so a half-done migration is simply redone.
//! - One audit line `{"kind":"migrate","from":N,"to":3}` per migration.
//! - A journal from a *newer* build is refused ([`super::JournalError::NewerSchema`]).
//! - Migration is idempotent: a crash half-way leaves either v1 (migrated
//!   again on the next open) or v2.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sled::Transactional;

use super::{Journal, JournalError, META_KEY, SCHEMA_VERSION, layout};

/// Key of the lease settings in the `meta` tree (schema v2).
pub(super) const LEASE_KEY: &[u8] = b"lease";

/// The run's Azure-side lease settings (schema v2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaseMeta {
    /// Lifetime of the lease tag in seconds.
    #[serde(default = "default_ttl_secs")]
    pub ttl_secs: u64,
}

/// Lifetime of the Azure-side VM lease tag when a run does not set one
/// (renewed at every destructive step past half of it). Owned here, where
/// the run's lease settings are stored; the engine's lease module uses it.
pub const DEFAULT_LEASE_TTL: std::time::Duration = std::time::Duration::from_secs(12 * 3600);

fn default_ttl_secs() -> u64 {
    DEFAULT_LEASE_TTL.as_secs()
}

impl Default for LeaseMeta {
    fn default() -> Self {
        LeaseMeta {
            ttl_secs: default_ttl_secs(),
        }
    }
}

impl LeaseMeta {
    /// The lease lifetime.
    pub fn ttl(&self) -> Duration {
        Duration::from_secs(self.ttl_secs.max(60))
    }
}

impl Journal {
    /// The lease settings (defaults when the run has none yet).
    pub fn lease_meta(&self) -> Result<LeaseMeta, JournalError> {
        match self.meta.get(LEASE_KEY).map_err(|e| self.corrupt(e))? {
            None => Ok(LeaseMeta::default()),
            Some(raw) => serde_json::from_slice(&raw)
                .map_err(|e| self.corrupt(format!("lease metadata: {e}"))),
        }
    }

    /// Writes the default lease settings (part of starting a v2 run).
    pub(super) fn put_lease_meta(&self) -> Result<(), JournalError> {
        let raw = serde_json::to_vec(&LeaseMeta::default()).map_err(|e| self.corrupt(e))?;
        self.meta
            .insert(LEASE_KEY, raw)
            .map_err(|e| self.corrupt(e))?;
        Ok(())
    }

    /// Brings a journal at schema `found` (< current) up to date, step by
    /// step; one audit line `{"kind":"migrate","from":found,"to":current}`.
    pub(super) fn migrate(
        &self,
        found: u64,
        mut meta: serde_json::Value,
    ) -> Result<(), JournalError> {
        if found < 1 {
            return Err(self.corrupt(format!("unknown schema version {found}")));
        }
        if found == 1 {
            meta["schema_version"] = serde_json::json!(2);
            let meta_raw = serde_json::to_vec(&meta).map_err(|e| self.corrupt(e))?;
            let lease_raw =
                serde_json::to_vec(&LeaseMeta::default()).map_err(|e| self.corrupt(e))?;
            (&self.meta,)
                .transaction(|(m,)| {
                    m.insert(META_KEY, meta_raw.as_slice())?;
                    if m.get(LEASE_KEY)?.is_none() {
                        m.insert(LEASE_KEY, lease_raw.as_slice())?;
                    }
                    Ok::<_, sled::transaction::ConflictableTransactionError<()>>(())
                })
                .map_err(|e| self.corrupt(format!("migrating v1 to v2: {e:?}")))?;
            self.flush()?;
        }
        if found <= 2 {
            self.split_records()?;
            meta["schema_version"] = serde_json::json!(3);
            let meta_raw = serde_json::to_vec(&meta).map_err(|e| self.corrupt(e))?;
            self.meta
                .insert(META_KEY, meta_raw)
                .map_err(|e| self.corrupt(e))?;
            self.flush()?;
        }
        debug_assert_eq!(SCHEMA_VERSION, 3, "add the next migration step here");
        self.audit_line(
            serde_json::json!({"kind": "migrate", "from": found, "to": SCHEMA_VERSION, "at": super::now_rfc3339()})
                .to_string()
                .as_bytes(),
        )
    }

    /// v2 → v3: every whole record in `vms` becomes a core in `vms` and a
    /// bulk in `vm_bulk` ([`super::layout`]). The bulk is written before the
    /// core, so a crash half-way leaves records either whole (split again on
    /// the next open) or split with their bulk; flushed every
    /// [`super::BATCH`] records. A record that cannot be read is left as it
    /// is (reading it later reports it as corrupt).
    fn split_records(&self) -> Result<(), JournalError> {
        let keys: Vec<sled::IVec> = self
            .vms
            .iter()
            .keys()
            .collect::<Result<_, _>>()
            .map_err(|e| self.corrupt(e))?;
        for (i, key) in keys.iter().enumerate() {
            let Some(raw) = self.vms.get(key).map_err(|e| self.corrupt(e))? else {
                continue;
            };
            let Ok(json) = layout::decode(&raw) else {
                continue;
            };
            let Ok(v) = serde_json::from_slice::<serde_json::Value>(&json) else {
                continue;
            };
            if !layout::is_whole(&v) {
                continue;
            }
            let (core, bulk) = layout::split(v);
            let enc = |v: &serde_json::Value| {
                serde_json::to_vec(v)
                    .map(|b| layout::encode(&b))
                    .map_err(|e| self.corrupt(e))
            };
            self.bulk
                .insert(key, enc(&bulk)?)
                .map_err(|e| self.corrupt(e))?;
            self.vms
                .insert(key, enc(&core)?)
                .map_err(|e| self.corrupt(e))?;
            if (i + 1) % super::BATCH == 0 {
                self.flush()?;
            }
        }
        self.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use super::layout;

    #[test]
    fn v1_journal_is_migrated_to_the_current_schema_once() {
        let dir = tempfile::tempdir().unwrap();
        {
            let j = Journal::open(dir.path()).unwrap();
            // A v1 run: v1 metadata and no lease entry.
            let mut m = serde_json::json!({
                "schema_version": 1, "run_id": "old-run", "created_at": "2026-01-01T00:00:00Z",
                "tool_version": "0.0.9", "arm_endpoint": "http://127.0.0.1:1", "cloud": "public",
                "subscription": "s", "auth": "none", "poll_interval_secs": 1.0,
                "max_parallel": 4, "vms": []
            });
            j.meta
                .insert(META_KEY, serde_json::to_vec(&m).unwrap())
                .unwrap();
            j.meta.remove(super::LEASE_KEY).unwrap();
            j.flush().unwrap();
            m["schema_version"] = 2.into();
        }
        let j = Journal::open(dir.path()).unwrap();
        let meta = j.require_meta().unwrap();
        assert_eq!(meta.schema_version, SCHEMA_VERSION);
        assert_eq!(meta.run_id, "old-run");
        assert_eq!(j.lease_meta().unwrap(), super::LeaseMeta::default());
        assert!(j.meta.get(super::LEASE_KEY).unwrap().is_some());
        drop(j);
        let j = Journal::open(dir.path()).unwrap();
        assert_eq!(j.require_meta().unwrap().schema_version, SCHEMA_VERSION);
        let audit = std::fs::read_to_string(dir.path().join("journal.jsonl")).unwrap();
        assert_eq!(audit.matches("\"migrate\"").count(), 1, "{audit}");
    }

    #[test]
    fn v2_journal_with_whole_records_opens_split_and_reads_the_same() {
        use crate::model::ResourceId;
        use crate::step::{Outcome, VmRecord};
        let dir = tempfile::tempdir().unwrap();
        let vm = |n: &str| ResourceId::new("s", "rg", "Microsoft.Compute", "virtualMachines", n);
        let mut a = VmRecord::new(vm("a"));
        a.original_model = Some(serde_json::json!({"big": "x".repeat(3000)}));
        a.note("2026-01-01T00:00:00Z".into(), "advance", "to disable-ade");
        a.outcome = Outcome::Parked {
            reason: "r".into(),
            next_action: "n".into(),
        };
        let b = VmRecord::new(vm("b"));
        {
            // A v2 journal: plain JSON records in `vms`, nothing in `vm_bulk`.
            let j = Journal::open(dir.path()).unwrap();
            let m = serde_json::json!({
                "schema_version": 2, "run_id": "v2-run", "created_at": "2026-01-01T00:00:00Z",
                "tool_version": "0.1.0", "arm_endpoint": "http://127.0.0.1:1", "cloud": "public",
                "subscription": "s", "auth": "none", "poll_interval_secs": 1.0,
                "max_parallel": 4, "vms": [vm("b"), vm("a")]
            });
            j.meta
                .insert(META_KEY, serde_json::to_vec(&m).unwrap())
                .unwrap();
            j.put_lease_meta().unwrap();
            for r in [&a, &b] {
                j.vms
                    .insert(r.id.key().as_bytes(), serde_json::to_vec(r).unwrap())
                    .unwrap();
            }
            j.flush().unwrap();
        }
        let j = Journal::open(dir.path()).unwrap();
        assert_eq!(j.require_meta().unwrap().schema_version, SCHEMA_VERSION);
        assert_eq!(j.records().unwrap(), vec![b.clone(), a.clone()]);
        let core = j.vms.get(a.id.key().as_bytes()).unwrap().unwrap();
        assert_eq!(core[0], layout::DEFLATE, "rewritten deflated");
        assert!(j.bulk.get(a.id.key().as_bytes()).unwrap().is_some());
        let idx = j.index().unwrap();
        assert_eq!(idx[1].history_len, 1);
        assert_eq!(
            j.summary(&a.id).unwrap().history.last_at.as_deref(),
            Some("2026-01-01T00:00:00Z")
        );
        drop(j);
        let j = Journal::open(dir.path()).unwrap();
        assert_eq!(j.records().unwrap(), vec![b, a]);
        let audit = std::fs::read_to_string(dir.path().join("journal.jsonl")).unwrap();
        assert_eq!(audit.matches("\"migrate\"").count(), 1, "{audit}");
        assert!(audit.contains("\"from\":2"), "{audit}");
    }
}
