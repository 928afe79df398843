//! Estimates per VM and per wave, modelling the engine that will run
//! (pure: [`Estimate::model`] is a function of the VM's disk sizes and the
//! [`Assumptions`]; docs/performance.md, "Plan estimates").
//!
//! Disks copy in parallel, so a VM's copy time is set by its largest disk:
//!
//! - **decryption**: largest ADE-encrypted disk ÷ 60 MiB/s (guest
//!   BitLocker/dm-crypt), while the VM runs;
//! - **pre-copy** (online, the VM runs): round 1 copies the whole largest
//!   disk (provisioned size: the allocated share is unknown before the run,
//!   so an upper bound) at the copy rate; each later round copies what the
//!   guest wrote during the previous round (`churn × previous round`, at
//!   most the disk) plus a fixed round overhead (snapshot, grants,
//!   revokes). Rounds stop as the engine stops them: the simulated rounds
//!   are journaled on a record and the engine's time rule
//!   ([`crate::step::precopy::verdict`]) decides, with its caps;
//! - **downtime** (deallocate → running): deallocate + final snapshot +
//!   grants + the final delta (what the guest wrote during the last online
//!   round, or the whole disk when there are no online rounds) + seal and
//!   revokes + sample verification (fixed part + reading the delta back) +
//!   delete + NIC hold + create + start;
//! - **extra storage**: a new disk and a snapshot per source disk (2 × size);
//! - **ARM writes**: 8 per VM + 6 per disk (snapshot, create, 2 grants, 2 revokes).

use serde::Serialize;

use crate::step::{CopyPolicy, DiskPlan, DiskRole, Round, VmRecord};

const GIB: u64 = 1 << 30;
const MIB: f64 = (1u64 << 20) as f64;
const DECRYPT_BPS: f64 = 60.0 * MIB;
/// Bytes one copy call moves at most (Put Page From URL, 4 MiB).
const CALL_BYTES: f64 = 4.0 * MIB;

/// What the estimates assume (printed with every plan).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Assumptions {
    /// Guest write rate while the VM runs, MiB/s (`plan --assume-churn`);
    /// every byte written is assumed to land on a page not yet written in
    /// the round (an upper bound on the delta).
    pub churn_mib_s: f64,
    /// Copy rate per disk, MiB/s (the Upload disk's write cap, facts §9).
    pub copy_mib_s: f64,
    /// Most online rounds (the engine's `--precopy-rounds`; 0 = the whole
    /// copy while deallocated).
    pub max_online_rounds: u32,
    /// Online rounds stop once a round moved at most this many bytes.
    pub offline_target_bytes: u64,
    /// Per round: its snapshot, grants and revokes, seconds.
    pub round_overhead_secs: f64,
    /// Deallocation, seconds.
    pub deallocate_secs: f64,
    /// Final snapshot, seconds.
    pub final_snapshot_secs: f64,
    /// SAS grants and revokes (incl. the seal) of the final round, seconds.
    pub grants_revokes_secs: f64,
    /// Fixed part of the sample verification, seconds.
    pub verify_secs: f64,
    /// VM delete, seconds.
    pub delete_secs: f64,
    /// Azure's NIC reservation after a VM delete (facts §5.1), seconds.
    pub nic_hold_secs: f64,
    /// VM create, seconds.
    pub create_secs: f64,
    /// VM start, seconds.
    pub start_secs: f64,
}

impl Default for Assumptions {
    /// The engine's defaults and the mean platform durations measured in
    /// docs/performance.md (the emulator's defaults, facts §4 and §5).
    fn default() -> Self {
        let policy = CopyPolicy::default();
        Assumptions {
            churn_mib_s: 1.0,
            copy_mib_s: 60.0,
            max_online_rounds: policy.max_online_rounds,
            offline_target_bytes: policy.offline_target_bytes,
            round_overhead_secs: 17.0,
            deallocate_secs: 90.0,
            final_snapshot_secs: 10.0,
            grants_revokes_secs: 7.0,
            verify_secs: 2.0,
            delete_secs: 45.0,
            nic_hold_secs: 180.0,
            create_secs: 75.0,
            start_secs: 45.0,
        }
    }
}

impl Assumptions {
    /// The fixed platform steps of the downtime, seconds.
    pub fn fixed_downtime_secs(&self) -> f64 {
        self.deallocate_secs
            + self.final_snapshot_secs
            + self.grants_revokes_secs
            + self.verify_secs
            + self.delete_secs
            + self.nic_hold_secs
            + self.create_secs
            + self.start_secs
    }

    /// One line for plan outputs.
    pub fn describe(&self) -> String {
        format!(
            "estimates assume: guest writes {} MiB/s (--assume-churn), copy {} MiB/s per disk, up to {} pre-copy round(s) \
             (another only while it is predicted to shrink the offline data part by ≥ {}% and ≥ {} round overheads), \
             provisioned size copied in round 1; downtime = deallocate {} s \
             + final snapshot {} s + grants/revokes {} s + final delta + verification {} s + delete {} s + NIC hold {} s \
             + create {} s + start {} s",
            self.churn_mib_s,
            self.copy_mib_s,
            self.max_online_rounds,
            CopyPolicy::default().min_gain_fraction * 100.0,
            CopyPolicy::default().min_gain_overheads,
            self.deallocate_secs,
            self.final_snapshot_secs,
            self.grants_revokes_secs,
            self.verify_secs,
            self.delete_secs,
            self.nic_hold_secs,
            self.create_secs,
            self.start_secs
        )
    }
}

/// Estimated figures (sums for waves and plans; durations of a wave are
/// sums too, an upper bound for a wave that runs VMs in parallel).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Estimate {
    /// Guest decryption seconds.
    pub decrypt_secs: u64,
    /// Downtime seconds (VM deallocated until running again).
    pub downtime_secs: u64,
    /// Seconds of online copy rounds (the VM runs).
    pub precopy_secs: u64,
    /// Online copy rounds.
    pub online_rounds: u64,
    /// Bytes copied while the VM is deallocated (largest disk).
    pub offline_bytes: u64,
    /// Bytes to copy (upper bound: provisioned size).
    pub bytes_to_copy: u64,
    /// Extra storage during the run (new disks + snapshots), GiB.
    pub extra_storage_gib: u64,
    /// Mutating ARM calls.
    pub arm_writes: u64,
}

/// The copy phase of one VM whose largest disk holds `largest` bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
struct CopyModel {
    online_rounds: u32,
    precopy_secs: f64,
    offline_bytes: f64,
}

/// Rounds as the engine runs them: each simulated round is journaled on a
/// one-disk record as the engine would journal it (start, snapshot, copy
/// start and end, bytes, calls) and the engine's own stop rule
/// ([`crate::step::precopy::verdict`]) decides whether another follows.
/// A round's snapshot and grants split [`Assumptions::round_overhead_secs`]
/// (snapshot 10/17, grants 7/17, the measured means); what the guest
/// writes from a round's snapshot to the end of its copy is the next
/// round's delta (an upper bound: every byte on a new page).
fn copy_model(largest: f64, a: &Assumptions, policy: &CopyPolicy) -> CopyModel {
    let rate = a.copy_mib_s * MIB;
    let churn = a.churn_mib_s * MIB;
    if a.max_online_rounds == 0 || rate <= 0.0 {
        return CopyModel {
            online_rounds: 0,
            precopy_secs: 0.0,
            offline_bytes: largest,
        };
    }
    let id = |n: &str| crate::model::ResourceId::new("s", "rg", "Microsoft.Compute", "disks", n);
    let mut rec = VmRecord::new(crate::model::ResourceId::new(
        "s",
        "rg",
        "Microsoft.Compute",
        "virtualMachines",
        "estimate",
    ));
    rec.copy_policy = CopyPolicy {
        max_online_rounds: a.max_online_rounds,
        offline_target_bytes: a.offline_target_bytes,
        ..*policy
    };
    rec.disks.push(DiskPlan {
        role: DiskRole::Os,
        source: id("d"),
        source_size_bytes: largest as u64,
        source_model: serde_json::Value::Null,
        snapshot: id("s"),
        target: id("t"),
        copied: false,
        bytes_copied: 0,
        rounds: Vec::new(),
        rounds_opened: 0,
        verified: false,
    });
    let snapshot_secs = a.round_overhead_secs * 10.0 / 17.0;
    let grant_secs = a.round_overhead_secs - snapshot_secs;
    // The engine's clock starts at 1 (0 reads as "not measured").
    let mut now = 1.0;
    let mut bytes = largest;
    loop {
        let number = rec.disks[0].rounds.len() as u32 + 1;
        let mut r = Round::open(number, id(&format!("r{number}")), false);
        r.started_at = now;
        r.snapshot_at = now + snapshot_secs;
        r.copy_started_at = r.snapshot_at + grant_secs;
        r.copy_ended_at = r.copy_started_at + bytes / rate;
        r.bytes = bytes as u64;
        r.done_upto = r.bytes;
        r.calls = (bytes / CALL_BYTES).ceil() as u64;
        r.copied = true;
        now = r.copy_ended_at;
        let next = (churn * (r.copy_ended_at - r.snapshot_at)).min(largest);
        rec.disks[0].rounds.push(r);
        rec.disks[0].rounds_opened = number;
        if !crate::step::precopy::verdict(&rec).is_continue() {
            return CopyModel {
                online_rounds: number,
                precopy_secs: now - 1.0,
                offline_bytes: next,
            };
        }
        bytes = next;
    }
}

impl Estimate {
    /// Estimate for an eligible record with the default [`Assumptions`]
    /// (zero for a record without disks).
    pub fn of(rec: &VmRecord) -> Estimate {
        Estimate::model(rec, &Assumptions::default())
    }

    /// Estimate for an eligible record under `a` (zero for a record
    /// without disks). Pure.
    pub fn model(rec: &VmRecord, a: &Assumptions) -> Estimate {
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
        let c = copy_model(largest as f64, a, &rec.copy_policy);
        let rate = a.copy_mib_s * MIB;
        // The final delta is copied, then read back by the verification.
        let offline = 2.0 * c.offline_bytes / rate;
        Estimate {
            decrypt_secs: (largest as f64 / DECRYPT_BPS).ceil() as u64,
            downtime_secs: (a.fixed_downtime_secs() + offline).ceil() as u64,
            precopy_secs: c.precopy_secs.ceil() as u64,
            online_rounds: u64::from(c.online_rounds),
            offline_bytes: c.offline_bytes.ceil() as u64,
            bytes_to_copy: total,
            extra_storage_gib: 2 * total.div_ceil(GIB),
            arm_writes: 8 + 6 * rec.disks.len() as u64,
        }
    }

    /// Adds `o` into `self`.
    pub fn add(&mut self, o: &Estimate) {
        self.decrypt_secs += o.decrypt_secs;
        self.downtime_secs += o.downtime_secs;
        self.precopy_secs += o.precopy_secs;
        self.online_rounds += o.online_rounds;
        self.offline_bytes += o.offline_bytes;
        self.bytes_to_copy += o.bytes_to_copy;
        self.extra_storage_gib += o.extra_storage_gib;
        self.arm_writes += o.arm_writes;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ResourceId;
    use crate::step::{DiskPlan, DiskRole};

    fn vm(gib: &[u64]) -> VmRecord {
        let id = |n: &str| ResourceId::new("s", "rg", "Microsoft.Compute", "disks", n);
        let mut r = VmRecord::new(ResourceId::new(
            "s",
            "rg",
            "Microsoft.Compute",
            "virtualMachines",
            "v",
        ));
        for (i, g) in gib.iter().enumerate() {
            r.disks.push(DiskPlan {
                role: DiskRole::Data { lun: i as i64 },
                source: id(&format!("d{i}")),
                source_size_bytes: g << 30,
                source_model: serde_json::Value::Null,
                snapshot: id(&format!("s{i}")),
                target: id(&format!("t{i}")),
                copied: false,
                bytes_copied: 0,
                rounds: Vec::new(),
                rounds_opened: 0,
                verified: false,
            });
        }
        r
    }

    fn with(churn: f64, rounds: u32) -> Assumptions {
        Assumptions {
            churn_mib_s: churn,
            max_online_rounds: rounds,
            ..Assumptions::default()
        }
    }

    #[test]
    fn more_churn_means_longer_downtime() {
        let r = vm(&[160, 32]);
        let mut last = 0;
        for churn in [0.0, 1.0, 5.0, 20.0, 50.0] {
            let e = Estimate::model(&r, &with(churn, 4));
            assert!(e.downtime_secs > last || churn == 0.0, "{churn}: {e:?}");
            last = e.downtime_secs;
        }
        // No churn: only the fixed platform steps remain.
        let quiet = Estimate::model(&r, &with(0.0, 4));
        let a = Assumptions::default();
        assert_eq!(quiet.downtime_secs, a.fixed_downtime_secs().ceil() as u64);
        assert_eq!(quiet.offline_bytes, 0);
    }

    #[test]
    fn zero_precopy_rounds_copies_everything_offline() {
        let r = vm(&[160, 32]);
        let e = Estimate::model(&r, &with(1.0, 0));
        assert_eq!(e.online_rounds, 0);
        assert_eq!(e.precopy_secs, 0);
        assert_eq!(e.offline_bytes, 160 << 30);
        let a = Assumptions::default();
        // Copy and read back 160 GiB at 60 MiB/s.
        let want = a.fixed_downtime_secs() + 2.0 * (160.0 * 1024.0) / 60.0;
        assert_eq!(e.downtime_secs, want.ceil() as u64);
        // The example: a 160 GiB VM is down for minutes, not the
        // best part of an hour, with pre-copy.
        let pre = Estimate::model(&r, &with(1.0, 4));
        assert!(pre.downtime_secs < 15 * 60, "{pre:?}");
        assert!(e.downtime_secs > 3 * pre.downtime_secs, "{e:?} vs {pre:?}");
    }

    #[test]
    fn rounds_stop_as_the_engine_stops_them() {
        // Quiet guest: round 2's delta is tiny, below the offline target.
        let e = Estimate::model(&vm(&[64]), &with(0.5, 4));
        assert_eq!(e.online_rounds, 2, "{e:?}");
        // Heavy writer: the delta does not halve, so rounds stop at 2.
        let e = Estimate::model(&vm(&[64]), &with(200.0, 4));
        assert_eq!(e.online_rounds, 2, "{e:?}");
        assert_eq!(e.offline_bytes, 64 << 30);
        // The cap.
        let e = Estimate::model(&vm(&[64]), &with(0.5, 1));
        assert_eq!(e.online_rounds, 1);
        assert_eq!(
            Estimate::model(&vm(&[]), &with(1.0, 4)),
            Estimate::default()
        );
    }
}
