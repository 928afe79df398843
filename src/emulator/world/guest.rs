//! The guests in simulated time: downtime accounting, guest writes (churn)
//! on running VMs' disks, and ADE decryption progressing while a VM runs.

use super::*;

impl World {
    /// Simulated seconds the VM `key` has not been running since it was added.
    pub(crate) fn offline_secs(&self, id: &str) -> Option<f64> {
        self.offline.get(&key_of(id)).copied()
    }

    /// Sets the guest write rate of VM `id` (simulated bytes per second).
    pub(crate) fn set_churn(&mut self, id: &str, bytes_per_sec: f64) {
        let key = key_of(id);
        if bytes_per_sec > 0.0 {
            let vm_id = self
                .vms
                .get(&key)
                .map(|v| v.vm_id.clone())
                .unwrap_or_default();
            self.churn.insert(key, (bytes_per_sec, 0.0, vm_id));
        } else {
            self.churn.remove(&key);
        }
    }

    /// Advances the guests to simulated time `to`: downtime, churn, and
    /// decryption (which finishes, or fails as injected, on running VMs).
    pub(super) fn tick(&mut self, to: f64) {
        let dt = to - self.last_tick;
        if dt <= 0.0 {
            return;
        }
        self.last_tick = to;
        for (key, secs) in self.offline.iter_mut() {
            let running = self
                .vms
                .get(key)
                .is_some_and(|v| v.power == Power::Running && !v.deleting);
            if !running {
                *secs += dt;
            }
        }
        self.churn_tick(dt);
        let mut finished = Vec::new();
        for (key, vm) in self.vms.iter_mut() {
            if vm.power != Power::Running {
                continue;
            }
            if let Some(AdeGuest::Decrypting {
                delay,
                remaining,
                disks,
            }) = &mut vm.ade
            {
                let mut left = dt;
                let used = left.min(*delay);
                *delay -= used;
                left -= used;
                *remaining -= left;
                if *delay <= 0.0 && *remaining <= 0.0 {
                    finished.push((key.clone(), disks.clone()));
                }
            }
        }
        for (key, disks) in finished {
            if self.hooks.decrypt_fail.remove(&key) {
                if let Some(vm) = self.vms.get_mut(&key) {
                    let dev = if vm.os() == OsKind::Linux {
                        "/dev/sdc"
                    } else {
                        "volume D:"
                    };
                    vm.ade = Some(AdeGuest::Failed(format!(
                        "Decryption failed for {dev}: the volume could not be unlocked for decryption (injected)."
                    )));
                }
                continue;
            }
            for d in disks {
                if let Some(disk) = self.disks.get_mut(&d) {
                    disk.guest_encrypted = false;
                    disk.ade_enabled = false;
                }
            }
            if let Some(vm) = self.vms.get_mut(&key) {
                vm.ade = Some(AdeGuest::Decrypted);
            }
        }
    }

    /// Applies `dt` seconds of guest writes to every running VM with churn:
    /// 1 MiB-or-larger writes (about one in ten a TRIM) at seeded random
    /// page-aligned offsets of its attached disks, footer excluded.
    pub(super) fn churn_tick(&mut self, dt: f64) {
        const MIB: u64 = 1 << 20;
        let mut due: Vec<(Vec<(BlobId, u64)>, u64)> = Vec::new();
        for (key, (rate, owed, vm_id)) in self.churn.iter_mut() {
            let Some(vm) = self.vms.get(key) else {
                continue;
            };
            if vm.power != Power::Running || vm.deleting || &vm.vm_id != vm_id {
                continue;
            }
            *owed += *rate * dt;
            let bytes = (*owed as u64 / MIB) * MIB;
            if bytes == 0 {
                continue;
            }
            *owed -= bytes as f64;
            let sp = vm.model.pointer("/properties/storageProfile");
            let ids = sp
                .and_then(|s| s.pointer("/osDisk/managedDisk/id"))
                .into_iter()
                .chain(
                    sp.and_then(|s| s.get("dataDisks"))
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(|d| d.pointer("/managedDisk/id")),
                )
                .filter_map(Value::as_str);
            let targets: Vec<(BlobId, u64)> = ids
                .filter_map(|id| self.disks.get(&key_of(id)))
                .filter_map(|d| d.blob.clone().map(|b| (b, d.size_bytes)))
                .filter(|(_, size)| *size > 2 * MIB)
                .collect();
            if !targets.is_empty() {
                due.push((targets, bytes));
            }
        }
        for (targets, bytes) in due {
            let unit = (bytes / 64).max(MIB).div_ceil(MIB) * MIB;
            let mut left = bytes;
            while left > 0 {
                let len = unit.min(left);
                left -= len;
                let (blob, size) = &targets[(self.rng.next_u64() % targets.len() as u64) as usize];
                let span = size.saturating_sub(len) / 512;
                let off = (self.rng.next_u64() % span.max(1)) * 512;
                let seed = self.rng.next_u64();
                if seed.is_multiple_of(10) {
                    self.blobs.guest_trim(blob, off, len);
                } else {
                    self.blobs.guest_write(blob, off, len, seed);
                }
            }
        }
    }
}
