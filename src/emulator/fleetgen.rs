//! Generated fleets of hundreds to thousands of VMs of mixed kinds and sizes
//! across resource groups, each with the migration path a correct planner
//! must find (the generated truth).

use super::fleet::{AdeSpec, DeleteOption, DiskSpec, VmSpec};
use super::rng::splitmix64;
use super::{Emulator, LockLevel};
use crate::model::ResourceId;

/// Where a generated management lock sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockOn {
    /// The VM resource.
    Vm,
    /// The VM's OS disk.
    OsDisk,
    /// The VM's NIC.
    Nic,
    /// The VM's resource group ([`LOCKED_RG`], which holds only such VMs).
    ResourceGroup,
}

/// A generated management lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GeneratedLock {
    /// Where.
    pub on: LockOn,
    /// Level.
    pub level: LockLevel,
}

impl GeneratedLock {
    /// True when the lock keeps the VM out of the plan: any lock on the VM
    /// or its resource group (the VM is deleted and re-created), a ReadOnly
    /// one on a disk or NIC (the re-creation writes them).
    pub fn blocks(&self) -> bool {
        matches!(self.on, LockOn::Vm | LockOn::ResourceGroup) || self.level == LockLevel::ReadOnly
    }

    /// The lock's name (`lock-vm-cannotdelete`, ...).
    pub fn name(&self) -> String {
        let on = match self.on {
            LockOn::Vm => "vm",
            LockOn::OsDisk => "osdisk",
            LockOn::Nic => "nic",
            LockOn::ResourceGroup => "rg",
        };
        format!("lock-{on}-{}", self.level.as_str().to_ascii_lowercase())
    }
}

/// The resource group of generated VMs whose resource group is locked
/// (`CanNotDelete`).
pub const LOCKED_RG: &str = "rg-fleet-locked";

/// Policy name of generated backup protection.
pub const BACKUP_POLICY: &str = "DefaultPolicy";

/// One generated VM and what `plan` must say about it (its subscription is
/// `spec.subscription`: `None` = the emulator's primary one).
#[derive(Debug, Clone)]
pub struct GeneratedVm {
    /// The VM to add.
    pub spec: VmSpec,
    /// Expected path label (`windows-os`, `linux-os-volume`, `size-unsupported`, ...).
    pub path: &'static str,
    /// Expected to be eligible (false too when `lock` blocks it).
    pub eligible: bool,
    /// A management lock to add with the VM ([`seed`] adds it).
    pub lock: Option<GeneratedLock>,
    /// Protected by Azure Backup ([`seed`] marks it).
    pub backup: bool,
}

/// Adds `g`'s VM to `emu` with its lock and backup protection; returns its id.
pub fn seed(emu: &Emulator, g: &GeneratedVm) -> ResourceId {
    let id = emu.add_vm(g.spec.clone());
    if let Some(l) = &g.lock {
        let scope = match l.on {
            LockOn::Vm => id.as_str().to_string(),
            LockOn::ResourceGroup => format!(
                "/subscriptions/{}/resourceGroups/{}",
                id.subscription(),
                id.resource_group()
            ),
            LockOn::OsDisk | LockOn::Nic => {
                let vm = emu
                    .state()
                    .vms
                    .into_iter()
                    .find(|v| {
                        v["id"]
                            .as_str()
                            .is_some_and(|s| s.eq_ignore_ascii_case(id.as_str()))
                    })
                    .map(|v| v["model"].clone())
                    .unwrap_or_default();
                let p = if l.on == LockOn::OsDisk {
                    "/properties/storageProfile/osDisk/managedDisk/id"
                } else {
                    "/properties/networkProfile/networkInterfaces/0/id"
                };
                vm.pointer(p)
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_string()
            }
        };
        emu.add_lock(&scope, &l.name(), l.level);
    }
    if g.backup {
        let vault = format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.RecoveryServices/vaults/rsv-fleet",
            id.subscription(),
            id.resource_group()
        );
        emu.protect_vm(&id, &vault, BACKUP_POLICY);
    }
    id
}

/// Fleet generator knobs.
#[derive(Debug, Clone)]
pub struct FleetGen {
    /// VMs.
    pub vms: usize,
    /// Resource groups (`rg-fleet-00`, ...).
    pub resource_groups: usize,
    /// Seed.
    pub seed: u64,
    /// OS disk size, GiB (data disks are 1 GiB).
    pub os_disk_gib: u64,
    /// Subscriptions to spread the fleet over (VM `i` goes to
    /// `subscriptions[i % len]`); empty = the emulator's primary one.
    pub subscriptions: Vec<String>,
}

impl Default for FleetGen {
    fn default() -> Self {
        FleetGen {
            vms: 300,
            resource_groups: 10,
            seed: 1,
            os_disk_gib: 2,
            subscriptions: Vec::new(),
        }
    }
}

/// Resource group name `i`.
pub fn rg_name(i: usize) -> String {
    format!("rg-fleet-{i:02}")
}

/// Generates the fleet: ~30% Windows OS-only, ~20% Windows all volumes,
/// ~25% Linux data-only, and the rest ineligible in equal parts (Linux OS
/// volume encrypted, no ADE, EAH-unsupported size), plus mixed sizes,
/// zones, deleteOption=Delete, identities and tags; ~11% of VMs get a
/// management lock (VM, OS disk, NIC, or their resource group: those VMs
/// are placed in [`LOCKED_RG`]) and ~10% Azure Backup protection.
pub fn generate(g: &FleetGen) -> Vec<GeneratedVm> {
    let mut out = Vec::with_capacity(g.vms);
    for i in 0..g.vms {
        let r = splitmix64(g.seed.wrapping_mul(1_000_003).wrapping_add(i as u64));
        let rg = rg_name(i % g.resource_groups.max(1));
        let kind = r % 100;
        let name = format!("vm-{i:05}");
        let disk = |gib: u64| {
            let mut d = DiskSpec::new(gib, None);
            d.allocated_fraction = 0.3 + ((r >> 8) % 40) as f64 / 100.0;
            d
        };
        let (mut spec, path, eligible) = match kind {
            0..30 => (VmSpec::windows(&name, &rg), "windows-os", true),
            30..50 => {
                let mut s = VmSpec::windows(&name, &rg);
                s.ade = AdeSpec::WindowsAll;
                (s, "windows-all-volumes", true)
            }
            50..75 => (VmSpec::linux(&name, &rg), "linux-data", true),
            75..84 => {
                let mut s = VmSpec::linux(&name, &rg);
                s.ade = AdeSpec::LinuxOsAndData;
                (s, "linux-os-volume", false)
            }
            84..92 => {
                let mut s = VmSpec::linux(&name, &rg);
                s.ade = AdeSpec::None;
                (s, "not-ade", false)
            }
            _ => {
                let mut s = VmSpec::windows(&name, &rg);
                s.size = "Standard_A2_v2".into();
                (s, "size-unsupported", false)
            }
        };
        spec.os_disk = disk(g.os_disk_gib);
        if !g.subscriptions.is_empty() {
            spec.subscription = Some(g.subscriptions[i % g.subscriptions.len()].clone());
        }
        let needs_data = matches!(
            spec.ade,
            AdeSpec::WindowsAll | AdeSpec::LinuxData | AdeSpec::LinuxOsAndData
        );
        if needs_data || (r >> 16).is_multiple_of(4) {
            let mut d = disk(1);
            d.lun = Some(0);
            spec.data_disks.push(d);
        }
        // A Windows VM with a data disk but ADE only on the OS volume still
        // migrates every disk: the path label counts disks.
        let path = match (path, spec.data_disks.is_empty()) {
            ("windows-os", false) => "windows-all-volumes",
            (p, _) => p,
        };
        if path != "size-unsupported" {
            spec.size = [
                "Standard_D2s_v3",
                "Standard_D4s_v5",
                "Standard_D8s_v5",
                "Standard_E8s_v5",
            ][((r >> 20) % 4) as usize]
                .into();
        }
        if (r >> 24).is_multiple_of(3) {
            spec.zone = Some((((r >> 26) % 3) + 1).to_string());
        }
        if (r >> 28).is_multiple_of(5) {
            spec.delete_option = DeleteOption::Delete;
        }
        spec.system_identity = (r >> 30).is_multiple_of(7);
        spec.tags.insert(
            "env".into(),
            if (r >> 32).is_multiple_of(2) {
                "prod"
            } else {
                "test"
            }
            .into(),
        );
        spec.tags
            .insert("app".into(), format!("app-{}", (r >> 34) % 8));
        let (cnd, ro) = (LockLevel::CanNotDelete, LockLevel::ReadOnly);
        let lock = match (r >> 36) % 100 {
            0..2 => Some((LockOn::Vm, cnd)),
            2..3 => Some((LockOn::Vm, ro)),
            3..5 => Some((LockOn::OsDisk, cnd)),
            5..6 => Some((LockOn::OsDisk, ro)),
            6..8 => Some((LockOn::Nic, cnd)),
            8..9 => Some((LockOn::Nic, ro)),
            9..11 => Some((LockOn::ResourceGroup, cnd)),
            _ => None,
        }
        .map(|(on, level)| GeneratedLock { on, level });
        if lock.is_some_and(|l| l.on == LockOn::ResourceGroup) {
            spec.resource_group = LOCKED_RG.into();
        }
        // Lock findings apply to VMs that would otherwise be planned: not to
        // VMs without ADE or already on EAH.
        let eligible = eligible && !lock.is_some_and(|l| l.blocks());
        out.push(GeneratedVm {
            spec,
            path,
            eligible,
            lock,
            backup: (r >> 44).is_multiple_of(10),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fleets_have_every_kind_of_lock_and_some_backups() {
        // The fleet tests/it/fleet.rs plans.
        let f = generate(&FleetGen {
            vms: 300,
            resource_groups: 10,
            seed: 7,
            os_disk_gib: 1,
            ..Default::default()
        });
        let kinds: std::collections::BTreeSet<String> =
            f.iter().filter_map(|g| g.lock.map(|l| l.name())).collect();
        assert_eq!(kinds.len(), 7, "{kinds:?}");
        let locked = f.iter().filter(|g| g.lock.is_some()).count();
        assert!((15..=60).contains(&locked), "{locked}");
        assert!(f.iter().filter(|g| g.backup).count() >= 15);
        for g in &f {
            let rg_lock = g.lock.is_some_and(|l| l.on == LockOn::ResourceGroup);
            assert_eq!(rg_lock, g.spec.resource_group == LOCKED_RG);
        }
    }
}
