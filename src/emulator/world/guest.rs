//! The guests in simulated time: downtime accounting, guest writes (churn)
//! on running VMs' disks, ADE decryption progressing while a VM runs,
//! BitLocker finishing after the API already reports decrypted (Windows),
//! and Run Command answered from that state.

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
        for (key, left) in self.bitlocker_left.iter_mut() {
            if self.vms.get(key).is_some_and(|v| v.power == Power::Running) {
                *left -= dt;
            }
        }
        self.bitlocker_left.retain(|_, left| *left > 0.0);
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
                // Facts §2.4 (MicrosoftDocs `disk-encryption-migrate.md`):
                // on Windows the API reports decrypted while BitLocker keeps
                // decrypting in the background; `manage-bde -status` shows
                // it until "Fully Decrypted".
                if vm.os() == OsKind::Windows && self.bitlocker_lag > 0.0 {
                    self.bitlocker_left.insert(key.clone(), self.bitlocker_lag);
                }
            }
        }
    }

    /// `POST .../virtualMachines/{vm}/runCommand` (Compute REST spec
    /// `runCommandExamples/VirtualMachineRunCommand.json`; azure-cli `vm
    /// run-command invoke`): a long-running operation whose output is the
    /// script's streams. Needs the VM running with its agent (the command
    /// is run by the guest agent) [status/code of the refusal INFERRED];
    /// counts as a VM update (facts §7.4 table: run command).
    pub(crate) fn run_command(
        &mut self,
        t: &Target,
        body: &Value,
        inject: bool,
        now: f64,
    ) -> Result<Reply, ArmError> {
        let vm = self.vm(t)?;
        let Some(cmd) = body.get("commandId").and_then(Value::as_str) else {
            return Err(ArmError::bad_request(
                "InvalidParameter",
                "Required parameter 'commandId' is missing (null).",
            )
            .with_target("commandId"));
        };
        let wanted = match vm.os() {
            OsKind::Windows => "RunPowerShellScript",
            OsKind::Linux => "RunShellScript",
        };
        if !cmd.eq_ignore_ascii_case(wanted) {
            return Err(ArmError::bad_request(
                "InvalidParameter",
                format!(
                    "Command '{cmd}' is not supported for the {} VM '{}'.",
                    vm.os().as_str(),
                    vm.name
                ),
            )
            .with_target("commandId"));
        }
        if vm.power != Power::Running {
            return Err(ArmError::conflict(format!(
                "Operation 'RunCommand' is not allowed on VM '{}' since the VM is {}: the command needs the VM running.",
                vm.name,
                vm.power.code()
            )));
        }
        let script = body
            .get("script")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join("\n");
        let dur = self.draw(self.durations.vm_update);
        let lro = self.new_op(
            now,
            OpFamily::Compute,
            dur,
            Effect::RunCommand {
                vm: t.key(),
                script,
            },
            inject,
            Final::NoContent,
        );
        Ok(Reply::accepted(lro))
    }

    /// The output of a Run Command script on VM `key`, at completion. The
    /// guest model answers the two scripts the tool sends (BitLocker's
    /// per-volume status on Windows, `lsblk` on Linux) as they would print
    /// on a real guest; any other script prints nothing.
    pub(super) fn apply_run_command(
        &self,
        key: &str,
        script: &str,
    ) -> Result<Option<Value>, ArmError> {
        let Some(vm) = self.vms.get(key) else {
            return Err(not_found_id(key));
        };
        let (os, data, _) = model_refs(&vm.model);
        let disks: Vec<&Disk> = os
            .iter()
            .map(|(k, _)| k)
            .chain(data.iter().map(|(_, k, _)| k))
            .filter_map(|k| self.disks.get(k))
            .collect();
        let mut out = String::new();
        match vm.os() {
            OsKind::Windows if script.contains("Get-BitLockerVolume") => {
                let left = self.bitlocker_left.get(key).copied().unwrap_or(0.0);
                for (i, d) in disks.iter().enumerate() {
                    let letter = if i == 0 {
                        'C'
                    } else {
                        (b'E' + i as u8) as char
                    };
                    let (status, pct) = if d.guest_encrypted {
                        ("FullyEncrypted", 100)
                    } else if left > 0.0 && d.ever_ade {
                        let pct = (100.0 * left / self.bitlocker_lag.max(1.0)).ceil() as u32;
                        ("DecryptionInProgress", pct.clamp(1, 99))
                    } else {
                        ("FullyDecrypted", 0)
                    };
                    out.push_str(&format!("ade2eah-volume {letter}: {status} {pct}\n"));
                }
                Ok(Some(json!({"value": [
                    {"code": "ComponentStatus/StdOut/succeeded", "level": "Info", "displayStatus": "Provisioning succeeded", "message": out},
                    {"code": "ComponentStatus/StdErr/succeeded", "level": "Info", "displayStatus": "Provisioning succeeded", "message": ""}
                ]})))
            }
            OsKind::Linux if script.contains("lsblk") => {
                for (i, d) in disks.iter().enumerate() {
                    let dev = format!(
                        "sd{}",
                        (b'a' + if i == 0 { 0 } else { i as u8 + 1 }) as char
                    );
                    if d.guest_encrypted {
                        out.push_str(&format!("ade2eah-volume /dev/{dev} disk crypto_LUKS\n"));
                        out.push_str(&format!(
                            "ade2eah-volume /dev/mapper/{dev}-crypt crypt ext4\n"
                        ));
                    } else {
                        out.push_str(&format!("ade2eah-volume /dev/{dev} disk ext4\n"));
                    }
                }
                Ok(Some(run_output_linux(&out)))
            }
            OsKind::Linux => Ok(Some(run_output_linux(""))),
            OsKind::Windows => Ok(Some(json!({"value": [
                {"code": "ComponentStatus/StdOut/succeeded", "level": "Info", "displayStatus": "Provisioning succeeded", "message": ""},
                {"code": "ComponentStatus/StdErr/succeeded", "level": "Info", "displayStatus": "Provisioning succeeded", "message": ""}
            ]}))),
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

/// The Linux agent's single-message Run Command answer.
fn run_output_linux(stdout: &str) -> Value {
    json!({"value": [{"code": "ProvisioningState/succeeded", "level": "Info", "displayStatus": "Provisioning succeeded",
        "message": format!("Enable succeeded: \n[stdout]\n{stdout}\n[stderr]\n")}]})
}
