//! Generated fleets of hundreds to thousands of VMs of mixed kinds and sizes
//! across resource groups, each with the migration path a correct planner
//! must find (the generated truth).

use super::fleet::{AdeSpec, DeleteOption, DiskSpec, VmSpec};

/// One generated VM and what `plan` must say about it (its subscription is
/// `spec.subscription`: `None` = the emulator's primary one).
#[derive(Debug, Clone)]
pub struct GeneratedVm {
    /// The VM to add.
    pub spec: VmSpec,
    /// Expected path label (`windows-os`, `linux-os-volume`, `size-unsupported`, ...).
    pub path: &'static str,
    /// Expected to be eligible.
    pub eligible: bool,
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

fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Resource group name `i`.
pub fn rg_name(i: usize) -> String {
    format!("rg-fleet-{i:02}")
}

/// Generates the fleet: ~30% Windows OS-only, ~20% Windows all volumes,
/// ~25% Linux data-only, and the rest ineligible in equal parts (Linux OS
/// volume encrypted, no ADE, EAH-unsupported size), plus mixed sizes,
/// zones, deleteOption=Delete, identities and tags.
pub fn generate(g: &FleetGen) -> Vec<GeneratedVm> {
    let mut out = Vec::with_capacity(g.vms);
    for i in 0..g.vms {
        let r = mix(g.seed.wrapping_mul(1_000_003).wrapping_add(i as u64));
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
        if needs_data || (r >> 16) % 4 == 0 {
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
        if (r >> 24) % 3 == 0 {
            spec.zone = Some((((r >> 26) % 3) + 1).to_string());
        }
        if (r >> 28) % 5 == 0 {
            spec.delete_option = DeleteOption::Delete;
        }
        spec.system_identity = (r >> 30) % 7 == 0;
        spec.tags.insert(
            "env".into(),
            if (r >> 32) % 2 == 0 { "prod" } else { "test" }.into(),
        );
        spec.tags
            .insert("app".into(), format!("app-{}", (r >> 34) % 8));
        out.push(GeneratedVm {
            spec,
            path,
            eligible,
        });
    }
    out
}
