//! Schema migrations, run by [`super::Journal::open`] before anything else
//! reads the journal.
//!
//! - **v1 → v2** (issue 4): v2 adds the run's Azure-side lease settings, the
//!   `lease` entry of the `meta` tree ([`LeaseMeta`]). A v1 journal (from a
//!   build without leases) gets the default lease entry and its run metadata's
//!   `schema_version` becomes 2; both are written in one sled transaction,
//!   flushed, and an audit line `{"kind":"migrate","from":1,"to":2}` is
//!   appended to `journal.jsonl`. Records and events are unchanged.
//! - A journal from a *newer* build is refused ([`super::JournalError::NewerSchema`]).
//! - Migration is idempotent: a crash half-way leaves either v1 (migrated
//!   again on the next open) or v2.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sled::Transactional;

use super::{Journal, JournalError, META_KEY, SCHEMA_VERSION};

/// Key of the lease settings in the `meta` tree (schema v2).
pub(super) const LEASE_KEY: &[u8] = b"lease";

/// The run's Azure-side lease settings (schema v2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaseMeta {
    /// Lifetime of the lease tag in seconds.
    #[serde(default = "default_ttl_secs")]
    pub ttl_secs: u64,
}

fn default_ttl_secs() -> u64 {
    crate::engine::lease::DEFAULT_TTL.as_secs()
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

    /// Brings a journal at schema `found` (< current) up to date.
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
            self.audit_line(
                serde_json::json!({"kind": "migrate", "from": 1, "to": 2, "at": super::now_rfc3339()})
                    .to_string()
                    .as_bytes(),
            )?;
        }
        debug_assert_eq!(SCHEMA_VERSION, 2, "add the next migration step here");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::*;

    #[test]
    fn v1_journal_is_migrated_to_v2_once() {
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
        assert_eq!(meta.schema_version, 2);
        assert_eq!(meta.run_id, "old-run");
        assert_eq!(j.lease_meta().unwrap(), super::LeaseMeta::default());
        assert!(j.meta.get(super::LEASE_KEY).unwrap().is_some());
        drop(j);
        let j = Journal::open(dir.path()).unwrap();
        assert_eq!(j.require_meta().unwrap().schema_version, 2);
        let audit = std::fs::read_to_string(dir.path().join("journal.jsonl")).unwrap();
        assert_eq!(audit.matches("\"migrate\"").count(), 1, "{audit}");
    }
}
