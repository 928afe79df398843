//! Estimates per VM and per wave. Deliberately simple and documented
//! (docs/performance.md): disks decrypt and copy in parallel, so a VM's
//! time is set by its largest disk.
//!
//! - decryption: largest ADE-encrypted disk ÷ 60 MiB/s (guest BitLocker/dm-crypt);
//! - copy: largest disk ÷ 100 MiB/s (provisioned ranges; allocated share unknown before the run, so an upper bound);
//! - downtime: deallocate → copy → delete → re-create → start: copy + 6 min fixed;
//! - extra storage: a new disk and a snapshot per source disk (2 × size);
//! - ARM writes: 8 per VM + 6 per disk (snapshot, create, 2 grants, 2 revokes).

use serde::Serialize;

use crate::step::VmRecord;

const GIB: u64 = 1 << 30;
const DECRYPT_BPS: f64 = 60.0 * 1024.0 * 1024.0;
const COPY_BPS: f64 = 100.0 * 1024.0 * 1024.0;
const FIXED_DOWNTIME_SECS: u64 = 360;

/// Estimated figures (sums for waves and plans; durations of a wave are
/// sums too, an upper bound for a wave that runs VMs in parallel).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Estimate {
    /// Guest decryption seconds.
    pub decrypt_secs: u64,
    /// Downtime seconds (VM deallocated until running again).
    pub downtime_secs: u64,
    /// Bytes to copy (upper bound: provisioned size).
    pub bytes_to_copy: u64,
    /// Extra storage during the run (new disks + snapshots), GiB.
    pub extra_storage_gib: u64,
    /// Mutating ARM calls.
    pub arm_writes: u64,
}

impl Estimate {
    /// Estimate for an eligible record (zero otherwise).
    pub fn of(rec: &VmRecord) -> Estimate {
        if rec.disks.is_empty() {
            return Estimate::default();
        }
        let largest = rec
            .disks
            .iter()
            .map(|d| d.source_size_bytes)
            .max()
            .unwrap_or(0);
        let total: u64 = rec.disks.iter().map(|d| d.source_size_bytes).sum();
        let copy = (largest as f64 / COPY_BPS).ceil() as u64;
        Estimate {
            decrypt_secs: (largest as f64 / DECRYPT_BPS).ceil() as u64,
            downtime_secs: copy + FIXED_DOWNTIME_SECS,
            bytes_to_copy: total,
            extra_storage_gib: 2 * total.div_ceil(GIB),
            arm_writes: 8 + 6 * rec.disks.len() as u64,
        }
    }

    /// Adds `o` into `self`.
    pub fn add(&mut self, o: &Estimate) {
        self.decrypt_secs += o.decrypt_secs;
        self.downtime_secs += o.downtime_secs;
        self.bytes_to_copy += o.bytes_to_copy;
        self.extra_storage_gib += o.extra_storage_gib;
        self.arm_writes += o.arm_writes;
    }
}
