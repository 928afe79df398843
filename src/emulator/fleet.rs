//! Descriptions of the VMs an emulator starts with ([`VmSpec`]) and the
//! mixed demo fleet.

use std::collections::BTreeMap;

/// Guest operating system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum OsKind {
    /// Windows (ADE handler `AzureDiskEncryption`).
    Windows,
    /// Linux (ADE handler `AzureDiskEncryptionForLinux`).
    Linux,
}

impl OsKind {
    /// `Windows` / `Linux`, as in `osType`.
    pub fn as_str(self) -> &'static str {
        match self {
            OsKind::Windows => "Windows",
            OsKind::Linux => "Linux",
        }
    }
}

/// One managed disk of a [`VmSpec`].
#[derive(Debug, Clone)]
pub struct DiskSpec {
    /// Size in GiB (the blob is this plus the 512-byte footer).
    pub size_gib: u64,
    /// Share of the disk holding data (0..=1), spread over several runs.
    pub allocated_fraction: f64,
    /// LUN for data disks (`None` = next free); ignored for the OS disk.
    pub lun: Option<i32>,
    /// Disk SKU (`Premium_LRS`, `StandardSSD_LRS`, `Premium_ZRS`...; a
    /// `*_ZRS` disk of a zonal VM is seeded without a zone).
    pub sku: String,
    /// Extra disk `properties` the seeded disk has (tier, burstingEnabled,
    /// maxShares, networkAccessPolicy, dataAccessAuthMode...; the emulator's
    /// stored set), an object; `null` for none.
    pub properties: serde_json::Value,
    /// The disk's tags (an object).
    pub tags: serde_json::Value,
}

impl DiskSpec {
    /// A Premium_LRS disk of `size_gib` GiB, 60% allocated.
    pub fn new(size_gib: u64, lun: Option<i32>) -> Self {
        DiskSpec {
            size_gib,
            allocated_fraction: 0.6,
            lun,
            sku: "Premium_LRS".into(),
            properties: serde_json::Value::Null,
            tags: serde_json::json!({}),
        }
    }
}

/// Which volumes ADE encrypted on a VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdeSpec {
    /// No ADE at all (ineligible for migration).
    None,
    /// Windows, OS volume only (`VolumeType: OS`).
    WindowsOs,
    /// Windows, OS and data volumes (`VolumeType: All`).
    WindowsAll,
    /// Linux, data volumes only (`VolumeType: Data`).
    LinuxData,
    /// Linux, OS and data volumes (cannot be disabled: ineligible).
    LinuxOsAndData,
}

/// What deleting the VM does to its disks and NIC (`deleteOption`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteOption {
    /// Deleting the VM deletes the disks and NICs too.
    Delete,
    /// Deleting the VM leaves them, unattached.
    Detach,
}

impl DeleteOption {
    /// `Delete` / `Detach`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeleteOption::Delete => "Delete",
            DeleteOption::Detach => "Detach",
        }
    }
}

/// A VM to create with [`super::Emulator::add_vm`]: the VM (running,
/// created from a marketplace image, so it has `osProfile` and
/// `imageReference`), one NIC, its disks filled with synthetic data, and the
/// ADE extension and encryption state `ade` describes.
#[derive(Debug, Clone)]
pub struct VmSpec {
    /// VM name.
    pub name: String,
    /// Resource group.
    pub resource_group: String,
    /// Guest OS.
    pub os: OsKind,
    /// VM size (default `Standard_D4s_v5`).
    pub size: String,
    /// Availability zone (`None` = regional).
    pub zone: Option<String>,
    /// The OS disk.
    pub os_disk: DiskSpec,
    /// Data disks.
    pub data_disks: Vec<DiskSpec>,
    /// ADE state.
    pub ade: AdeSpec,
    /// deleteOption of the OS disk, every data disk and the NIC.
    pub delete_option: DeleteOption,
    /// Trusted Launch (securityType on the VM and its OS disk).
    pub trusted_launch: bool,
    /// Resource tags.
    pub tags: BTreeMap<String, String>,
    /// `licenseType` (e.g. `Windows_Server`).
    pub license_type: Option<String>,
    /// Resource name of the ADE extension (default: the handler's type name).
    pub custom_extension_name: Option<String>,
    /// `hyperVGeneration` of the OS disk (default `V2`).
    pub hyper_v_generation: String,
    /// A system-assigned identity on the VM.
    pub system_identity: bool,
    /// Guest writes while the VM runs, in simulated bytes per second, spread
    /// over its disks (about a tenth of it as TRIMs), so a copy that misses a
    /// delta is caught by the byte comparison. 0 = an idle guest.
    pub churn_bytes_per_sec: f64,
    /// Extra VM model merged over the seeded one (objects merge, anything
    /// else replaces): property families such as `userData`,
    /// `applicationProfile`, `virtualMachineScaleSet` + `platformFaultDomain`,
    /// `storageProfile.diskControllerType`, `identity`, `plan`... An object;
    /// `null` for none.
    pub model: serde_json::Value,
    /// Subscription the VM lives in (`None`: the emulator's primary one;
    /// else one of its [`super::EmulatorConfig::extra_subscriptions`]; an id
    /// not configured is served from then on, with the feature registered).
    pub subscription: Option<String>,
    /// Extensions other than ADE, each as its PUT body `{"name", "tags"?,
    /// "properties"}` (protected settings accepted and dropped, as a PUT
    /// does). None by default.
    pub extensions: Vec<serde_json::Value>,
    /// Role assignments of the system-assigned principal, `(roleDefinitionId,
    /// scope)` (needs [`VmSpec::system_identity`]); `{subscription}` in
    /// either stands for the VM's subscription. None by default.
    pub role_assignments: Vec<(String, String)>,
}

impl VmSpec {
    fn base(name: &str, rg: &str, os: OsKind, ade: AdeSpec) -> Self {
        VmSpec {
            name: name.into(),
            resource_group: rg.into(),
            os,
            size: "Standard_D4s_v5".into(),
            zone: None,
            os_disk: DiskSpec::new(128, None),
            data_disks: Vec::new(),
            ade,
            delete_option: DeleteOption::Detach,
            trusted_launch: false,
            tags: BTreeMap::new(),
            license_type: None,
            custom_extension_name: None,
            hyper_v_generation: "V2".into(),
            system_identity: false,
            churn_bytes_per_sec: 0.0,
            model: serde_json::Value::Null,
            subscription: None,
            extensions: Vec::new(),
            role_assignments: Vec::new(),
        }
    }

    /// A Windows VM: 128 GiB Premium OS disk, ADE on the OS volume.
    pub fn windows(name: &str, resource_group: &str) -> Self {
        Self::base(name, resource_group, OsKind::Windows, AdeSpec::WindowsOs)
    }

    /// A Linux VM: 128 GiB Premium OS disk, ADE on data volumes.
    pub fn linux(name: &str, resource_group: &str) -> Self {
        Self::base(name, resource_group, OsKind::Linux, AdeSpec::LinuxData)
    }

    /// The same VM in subscription `sub` (see [`VmSpec::subscription`]).
    pub fn in_subscription(mut self, sub: &str) -> Self {
        self.subscription = Some(sub.to_string());
        self
    }

    /// The same VM with what a production VM carries besides ADE: an Azure
    /// Monitor agent and a dependency agent with public settings, a custom
    /// script whose command is in protected settings, a system-assigned
    /// identity with two role assignments (Reader on its resource group,
    /// Monitoring Metrics Publisher on the subscription).
    pub fn with_extensions_and_roles(mut self) -> Self {
        let win = self.os == OsKind::Windows;
        // `{subscription}` is the VM's subscription, filled in when seeded.
        let sub = "{subscription}";
        let (ama, cse_pub, cse_type, cse_ver) = if win {
            (
                "AzureMonitorWindowsAgent",
                "Microsoft.Compute",
                "CustomScriptExtension",
                "1.10",
            )
        } else {
            (
                "AzureMonitorLinuxAgent",
                "Microsoft.Azure.Extensions",
                "CustomScript",
                "2.1",
            )
        };
        self.extensions = vec![
            serde_json::json!({"name": "AzureMonitorAgent", "tags": {"owner": "observability"},
                "properties": {"publisher": "Microsoft.Azure.Monitor", "type": ama, "typeHandlerVersion": "1.22",
                    "autoUpgradeMinorVersion": true, "enableAutomaticUpgrade": true,
                    "settings": {"authentication": {"managedIdentity": {"identifier-name": "object_id", "identifier-value": "system"}}}}}),
            serde_json::json!({"name": "DependencyAgent",
                "properties": {"publisher": "Microsoft.Azure.Monitoring.DependencyAgent",
                    "type": if win { "DependencyAgentWindows" } else { "DependencyAgentLinux" },
                    "typeHandlerVersion": "9.10", "autoUpgradeMinorVersion": true, "suppressFailures": true,
                    "provisionAfterExtensions": ["AzureMonitorAgent"], "settings": {"enableAMA": "true"}}}),
            serde_json::json!({"name": "bootstrap",
                "properties": {"publisher": cse_pub, "type": cse_type, "typeHandlerVersion": cse_ver,
                    "autoUpgradeMinorVersion": true, "settings": {"fileUris": ["https://example.invalid/bootstrap.ps1"]},
                    "protectedSettings": {"commandToExecute": "powershell -File bootstrap.ps1 -Token s3cret"}}}),
        ];
        self.system_identity = true;
        let role = |guid: &str| {
            format!("/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{guid}")
        };
        self.role_assignments = vec![
            // Reader
            (
                role("acdd72a7-3385-48ef-bd42-f606fba81ae7"),
                format!(
                    "/subscriptions/{sub}/resourceGroups/{}",
                    self.resource_group
                ),
            ),
            // Monitoring Metrics Publisher
            (
                role("3913510d-42f4-4e42-8a64-420c390055eb"),
                format!("/subscriptions/{sub}"),
            ),
        ];
        self
    }

    /// Adds a data disk at the next LUN.
    pub fn with_data_disk(mut self, size_gib: u64, allocated_fraction: f64) -> Self {
        let lun = self.data_disks.len() as i32;
        let mut d = DiskSpec::new(size_gib, Some(lun));
        d.allocated_fraction = allocated_fraction;
        self.data_disks.push(d);
        self
    }
}

/// A small mixed fleet (resource group `rg-demo`) for `ade2eah demo`:
/// Windows OS-only, zonal Windows OS + 2 data disks, Linux data-only with
/// the extension named `ade-tf`, Linux with an encrypted OS volume
/// (ineligible), a VM without ADE (ineligible), and a VM whose disks and NIC
/// have `deleteOption=Delete`.
pub fn demo_fleet() -> Vec<VmSpec> {
    let rg = "rg-demo";
    let mut out = Vec::new();

    let mut w = VmSpec::windows("web-win-01", rg);
    w.os_disk.size_gib = 64;
    w.os_disk.allocated_fraction = 0.5;
    w.license_type = Some("Windows_Server".into());
    w.tags.insert("app".into(), "web".into());
    out.push(w);

    let mut w = VmSpec::windows("sql-win-01", rg)
        .with_data_disk(128, 0.25)
        .with_data_disk(32, 0.5);
    w.os_disk.size_gib = 64;
    w.os_disk.allocated_fraction = 0.5;
    w.ade = AdeSpec::WindowsAll;
    w.zone = Some("1".into());
    w.size = "Standard_E8s_v5".into();
    w.system_identity = true;
    w.tags.insert("app".into(), "sql".into());
    out.push(w);

    let mut l = VmSpec::linux("app-lin-01", rg).with_data_disk(128, 0.2);
    l.os_disk.size_gib = 32;
    l.custom_extension_name = Some("ade-tf".into());
    out.push(l);

    let mut l = VmSpec::linux("db-lin-osenc", rg).with_data_disk(64, 0.3);
    l.os_disk.size_gib = 64;
    l.ade = AdeSpec::LinuxOsAndData;
    out.push(l);

    let mut p = VmSpec::linux("plain-lin-01", rg);
    p.os_disk.size_gib = 32;
    p.ade = AdeSpec::None;
    out.push(p);

    let mut d = VmSpec::windows("ops-win-del", rg).with_data_disk(32, 0.4);
    d.os_disk.size_gib = 32;
    d.ade = AdeSpec::WindowsAll;
    d.delete_option = DeleteOption::Delete;
    out.push(d);
    out
}
