//! SAS grants the engine keeps between copy rounds of one VM, in memory
//! only (a SAS URL is a secret: it is never journaled).
//!
//! Why: every grant and revoke is a long-running operation (seconds), and
//! in the offline window they are downtime. A read grant on the last
//! online round's snapshot and the write grant on the target are reused by
//! the offline round instead of being revoked and granted again across the
//! deallocate. That is valid on Azure because neither depends on the VM's
//! power state: only a read grant on a disk *attached to a running VM* is
//! refused (facts §3.3 step 4), a snapshot is a separate resource (facts
//! §4.5: usable at once, at most 5 snapshot grants per disk family), and
//! the target is an unattached `Upload` disk whose write grant lasts until
//! it is revoked (§3.3 steps 3 and 6, §3.4).
//!
//! Contract: an entry exists only while its resource is in the record's
//! `open_sas`; the record lists the kept ones in `kept_sas`. A process
//! that takes up a record without the entry (a resume after a crash)
//! drops the id from `kept_sas`, so the rules revoke it as a leftover.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::cloud::Access;
use crate::model::{ResourceId, SasUrl};

/// The grants held, by resource key.
#[derive(Default)]
pub struct Grants {
    held: Mutex<HashMap<String, (Access, SasUrl)>>,
}

impl Grants {
    /// The grant held on `id` with `access`, if any.
    pub fn get(&self, id: &ResourceId, access: Access) -> Option<SasUrl> {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.get(&id.key())
            .filter(|(a, _)| *a == access)
            .map(|(_, s)| s.clone())
    }

    /// Remembers a fresh grant on `id`.
    pub fn put(&self, id: &ResourceId, access: Access, sas: SasUrl) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.insert(id.key(), (access, sas));
    }

    /// Forgets the grant on `id` (revoked, expired or replaced).
    pub fn forget(&self, id: &ResourceId) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.remove(&id.key());
    }

    /// True when a grant on `id` is held.
    pub fn holds(&self, id: &ResourceId) -> bool {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.contains_key(&id.key())
    }
}
