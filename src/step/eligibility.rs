//! Eligibility: decides from a VM's models, before anything is changed,
//! whether the run may migrate it, and if so fixes the plan for its disks.
//! Pure: the engine reads the models and platform facts; this decides.

use std::collections::BTreeMap;

use serde_json::Value;

use super::observe::{
    DecryptionState, ade_extensions, instance_decryption_state, is_ade_extension,
};
use super::record::{AdeExtension, DiskPlan, DiskRole, OsType, VmFacts};
use crate::model::ResourceId;
use crate::model::views::{DiskModel, VmModel};

/// Longest managed disk / snapshot name Azure accepts.
pub const MAX_DISK_NAME: usize = 80;
/// Suffix of the new Upload disks.
pub const TARGET_SUFFIX: &str = "-eah";
/// Suffix of the backup snapshots.
pub const SNAPSHOT_SUFFIX: &str = "-ade-backup";

/// Subscription- and region-level facts that decide eligibility.
#[derive(Debug, Clone, PartialEq)]
pub struct PlatformFacts {
    /// `Microsoft.Compute/EncryptionAtHost` is `Registered`.
    pub feature_registered: bool,
    /// VM size → does it support EAH in the VM's region (`None`: size unknown to the SKU list).
    pub size_supports_eah: Option<bool>,
    /// The size is restricted for this subscription/region (`NotAvailableForSubscription`).
    pub size_restricted: bool,
    /// The operator's opt-in to rebuild Linux VMs with an ADE OS volume
    /// (`--rebuild-linux-os`); `None`: they are skipped with guidance.
    pub rebuild_linux_os: Option<super::rebuild::RebuildOptions>,
}

/// The outcome of classifying one VM.
// Built once per VM and moved straight into its record: the size of the
// eligible variant costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Eligibility {
    /// The VM can be migrated with this plan.
    Eligible {
        facts: VmFacts,
        disks: Vec<DiskPlan>,
    },
    /// The VM must not be touched; the reason says why and what to do.
    Skip { path: &'static str, reason: String },
}

/// Classifies a VM. `vm` is the VM GET body (ideally with the instance view),
/// `disks` the GET bodies of its managed disks by case-folded id.
pub fn classify(
    vm: &Value,
    disks: &BTreeMap<String, Value>,
    platform: &PlatformFacts,
) -> Eligibility {
    let skip = |path, reason: String| Eligibility::Skip { path, reason };
    let model = VmModel::new(vm);
    let props = model.properties();
    let os_entry = props.storage_profile().os_disk();
    let os = match os_entry
        .and_then(|d| d.os_type())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("windows") => OsType::Windows,
        Some("linux") => OsType::Linux,
        other => {
            return skip(
                "unknown",
                format!("the OS disk's osType is {other:?}; expected Windows or Linux"),
            );
        }
    };
    let size = props.vm_size().unwrap_or_default().to_string();
    let location = model.location().unwrap_or_default().to_string();
    let zone = model.zone().map(str::to_string);

    if props.encryption_at_host() == Some(true) {
        return skip(
            "already-eah",
            "encryption at host is already on; nothing to migrate".into(),
        );
    }
    let ext = ade_extension(vm);
    let dual_pass = os_entry.is_some_and(|d| d.encryption_settings().is_some());
    let stamped: Vec<&str> = disks
        .values()
        .map(DiskModel::new)
        .filter(|d| d.properties().encryption_settings_collection().is_some())
        .filter_map(|d| d.name())
        .collect();
    if ext.is_none() && !dual_pass && stamped.is_empty() {
        return skip("not-ade", "no Azure Disk Encryption found (no ADE extension, no encryption settings on the VM or its disks)".into());
    }

    // Disk inventory: managed disks only, ephemeral OS disks cannot be copied.
    if os_entry.is_some_and(|d| d.diff_disk_settings().is_some()) {
        return skip(
            "unsupported",
            "the OS disk is ephemeral; it cannot be copied to a new managed disk".into(),
        );
    }
    let Some(os_disk_id) = os_entry
        .and_then(|d| d.managed_disk_id())
        .and_then(|s| ResourceId::parse(s).ok())
    else {
        return skip(
            "unsupported",
            "the OS disk is not a managed disk (unmanaged VHD); migrate it to managed disks first"
                .into(),
        );
    };
    let mut roles = vec![(DiskRole::Os, os_disk_id)];
    for d in props.storage_profile().data_disks() {
        let lun = d.lun().unwrap_or(-1);
        match d.managed_disk_id().and_then(|s| ResourceId::parse(s).ok()) {
            Some(id) => roles.push((DiskRole::Data { lun }, id)),
            None => {
                return skip(
                    "unsupported",
                    format!(
                        "the data disk at LUN {lun} is not a managed disk; migrate it to managed disks first"
                    ),
                );
            }
        }
    }

    let volume_type = match os {
        OsType::Windows => "All",
        OsType::Linux => "Data",
    };
    let mut rebuild = None;
    if os == OsType::Linux && linux_os_volume_encrypted(vm, disks, &roles[0].1) {
        let Some(opts) = &platform.rebuild_linux_os else {
            return skip(
                "linux-os-volume",
                "Linux VM with an ADE-encrypted OS volume: Azure cannot disable ADE on a Linux OS volume. \
                 Rebuild it from its image with encryption at host and new empty data disks with \
                 --rebuild-linux-os (originals kept), or by hand (see README, 'Linux OS volumes')"
                    .into(),
            );
        };
        match super::rebuild::rebuild_spec(vm, opts) {
            Ok(spec) => rebuild = Some(Box::new(spec)),
            Err(why) => return skip("linux-os-volume", format!("cannot rebuild: {why}")),
        }
    }
    // (A rebuild decrypts nothing: whether the guest finished is moot.)
    if ext.is_none() && rebuild.is_none() {
        // Ever-ADE VM whose extension is gone: only safe if the guest says every
        // volume is decrypted; otherwise copying would carry encrypted volumes.
        let iv = props.instance_view();
        if iv.map(instance_decryption_state) != Some(DecryptionState::Complete) {
            return skip(
                "ade-extension-missing",
                "the disks carry ADE settings but the ADE extension is gone and the guest does not report its volumes decrypted; \
                 reinstall the ADE extension, disable encryption, and run again"
                    .into(),
            );
        }
    }
    if !platform.feature_registered {
        return skip(
            "feature-not-registered",
            "the subscription feature Microsoft.Compute/EncryptionAtHost is not registered: run \
             `az feature register --namespace Microsoft.Compute --name EncryptionAtHost`, wait for Registered, \
             then `az provider register -n Microsoft.Compute`"
                .into(),
        );
    }
    if platform.size_restricted {
        return skip(
            "size-unavailable",
            format!(
                "VM size {size} is restricted for this subscription in {location}; resize it first"
            ),
        );
    }
    match platform.size_supports_eah {
        Some(true) => {}
        Some(false) => {
            return skip(
                "size-unsupported",
                format!(
                    "VM size {size} does not support encryption at host in {location}; resize to a supported size first"
                ),
            );
        }
        None => {
            return skip(
                "size-unknown",
                format!(
                    "VM size {size} is not listed in {location}'s resource SKUs; cannot confirm encryption-at-host support"
                ),
            );
        }
    }

    let model_id = model.id().and_then(|s| ResourceId::parse(s).ok());
    let mut plans = Vec::new();
    for (role, id) in roles {
        let Some(model) = disks.get(&id.key()) else {
            return skip("unsupported", format!("disk {id} could not be read"));
        };
        let disk = DiskModel::new(model);
        let sku = disk.sku_name().unwrap_or_default();
        if sku.eq_ignore_ascii_case("UltraSSD_LRS") || sku.eq_ignore_ascii_case("PremiumV2_LRS") {
            return skip(
                "unsupported",
                format!(
                    "disk {} is {sku}; Upload disks of that type are not supported by this tool yet",
                    id.name()
                ),
            );
        }
        let Some(size_bytes) = disk.properties().disk_size_bytes() else {
            return skip(
                "unsupported",
                format!("disk {} has no diskSizeBytes", id.name()),
            );
        };
        let target = match (&rebuild, role, model_id.as_ref()) {
            (Some(_), DiskRole::Os, Some(vm_id)) => super::rebuild::os_target(vm_id, &id),
            _ => id.sibling(
                "Microsoft.Compute",
                "disks",
                &derived_name(id.name(), TARGET_SUFFIX),
            ),
        };
        plans.push(DiskPlan {
            role,
            source_size_bytes: size_bytes,
            source_model: model.clone(),
            snapshot: id.sibling(
                "Microsoft.Compute",
                "snapshots",
                &derived_name(id.name(), SNAPSHOT_SUFFIX),
            ),
            target,
            source: id,
            copied: false,
            bytes_copied: 0,
            rounds: Vec::new(),
            verified: false,
            rounds_opened: 0,
        });
    }
    Eligibility::Eligible {
        facts: VmFacts {
            os,
            location,
            zone,
            size,
            ade_extension: ext,
            dual_pass,
            volume_type: volume_type.into(),
            target_encryption: Default::default(),
            guest_check: false,
            nic_swap: false,
            nic_swap_refused: false,
            rebuild,
        },
        disks: plans,
    }
}

/// The migration path label for a VM that is eligible.
pub fn path_label(facts: &VmFacts, disks: &[DiskPlan]) -> &'static str {
    if facts.rebuild.is_some() {
        return "linux-rebuild";
    }
    match (facts.os, disks.len() > 1) {
        (OsType::Windows, false) => "windows-os",
        (OsType::Windows, true) => "windows-all-volumes",
        (OsType::Linux, _) => "linux-data",
    }
}

fn ade_extension(vm: &Value) -> Option<AdeExtension> {
    let found = ade_extensions(vm);
    let (id, _) = found.first()?;
    let ext = VmModel::new(vm)
        .extensions()
        .find(|r| is_ade_extension(r) && r.id() == Some(id.as_str()))?;
    Some(AdeExtension {
        id: id.clone(),
        handler_type: ext.handler_type().unwrap_or_default().to_string(),
        handler_version: ext.type_handler_version().unwrap_or_default().to_string(),
    })
}

/// A Linux OS volume counts as encrypted when the extension was asked to
/// encrypt the OS (VolumeType All/OS), the OS disk carries enabled ADE
/// settings, or the guest reports `"os": "Encrypted"`.
fn linux_os_volume_encrypted(
    vm: &Value,
    disks: &BTreeMap<String, Value>,
    os_disk: &ResourceId,
) -> bool {
    let model = VmModel::new(vm);
    let by_settings = model
        .extensions()
        .filter(is_ade_extension)
        .filter(|r| {
            r.encryption_operation()
                .is_some_and(|o| o.to_ascii_lowercase().starts_with("enableencryption"))
        })
        .filter_map(|r| r.volume_type())
        .any(|v| matches!(v.to_ascii_lowercase().as_str(), "all" | "os"));
    let by_disk = disks
        .get(&os_disk.key())
        .and_then(|d| DiskModel::new(d).properties().ade_enabled())
        .unwrap_or(false);
    // The guest's per-volume report is a JSON document inside a substatus message.
    let by_guest = model
        .properties()
        .instance_view()
        .into_iter()
        .flat_map(|iv| iv.extensions())
        .flat_map(|e| e.substatuses())
        .filter_map(|s| s.message())
        .filter_map(|m| serde_json::from_str::<Value>(m).ok())
        .any(|m| {
            m.get("os")
                .and_then(Value::as_str)
                .is_some_and(|s| s.eq_ignore_ascii_case("Encrypted"))
        });
    by_settings || by_disk || by_guest
}

/// `base` + `suffix`, with `base` shortened so the result fits Azure's limit.
pub fn derived_name(base: &str, suffix: &str) -> String {
    let keep = MAX_DISK_NAME.saturating_sub(suffix.len());
    let base: String = base.chars().take(keep).collect();
    format!("{base}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const RG: &str = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute";

    fn vm(os: &str, volume: &str, data: usize) -> (Value, BTreeMap<String, Value>) {
        let data_disks: Vec<Value> = (0..data)
            .map(|i| json!({"lun": i, "managedDisk": {"id": format!("{RG}/disks/data{i}")}, "deleteOption": "Detach"}))
            .collect();
        let vm = json!({
            "location": "westeurope",
            "properties": {
                "hardwareProfile": {"vmSize": "Standard_D4s_v5"},
                "storageProfile": {"osDisk": {"osType": os, "managedDisk": {"id": format!("{RG}/disks/os")}}, "dataDisks": data_disks},
            },
            "resources": [{"id": format!("{RG}/virtualMachines/v/extensions/ade"),
                "properties": {"publisher": "Microsoft.Azure.Security", "type": if os == "Linux" {"AzureDiskEncryptionForLinux"} else {"AzureDiskEncryption"},
                "typeHandlerVersion": "2.2", "settings": {"EncryptionOperation": "EnableEncryption", "VolumeType": volume}}}]
        });
        let mut disks = BTreeMap::new();
        for name in std::iter::once("os".to_string()).chain((0..data).map(|i| format!("data{i}"))) {
            let id = format!("{RG}/disks/{name}");
            disks.insert(id.to_ascii_lowercase(), json!({"id": id, "name": name, "sku": {"name": "Premium_LRS"}, "properties": {"diskSizeBytes": 1u64 << 30}}));
        }
        (vm, disks)
    }

    fn ok_platform() -> PlatformFacts {
        PlatformFacts {
            feature_registered: true,
            size_supports_eah: Some(true),
            size_restricted: false,
            rebuild_linux_os: None,
        }
    }

    #[test]
    fn windows_all_volumes_is_eligible_with_plans() {
        let (v, d) = vm("Windows", "All", 2);
        let Eligibility::Eligible { facts, disks } = classify(&v, &d, &ok_platform()) else {
            panic!()
        };
        assert_eq!(facts.volume_type, "All");
        assert_eq!(facts.ade_extension.unwrap().id.name(), "ade");
        assert_eq!(disks.len(), 3);
        assert_eq!(disks[0].role, DiskRole::Os);
        assert_eq!(disks[2].role, DiskRole::Data { lun: 1 });
        assert_eq!(disks[1].target.name(), "data0-eah");
        assert_eq!(disks[1].snapshot.name(), "data0-ade-backup");
        assert_eq!(path_label(&facts_of(&v, &d), &disks), "windows-all-volumes");
    }

    fn facts_of(v: &Value, d: &BTreeMap<String, Value>) -> VmFacts {
        match classify(v, d, &ok_platform()) {
            Eligibility::Eligible { facts, .. } => facts,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn linux_data_only_is_eligible_linux_os_is_not() {
        let (v, d) = vm("Linux", "Data", 1);
        assert!(matches!(
            classify(&v, &d, &ok_platform()),
            Eligibility::Eligible { .. }
        ));
        let (v, d) = vm("Linux", "All", 1);
        assert!(matches!(
            classify(&v, &d, &ok_platform()),
            Eligibility::Skip {
                path: "linux-os-volume",
                ..
            }
        ));
    }

    #[test]
    fn platform_gaps_skip_with_guidance() {
        let (v, d) = vm("Windows", "All", 0);
        let mut p = ok_platform();
        p.feature_registered = false;
        let Eligibility::Skip { reason, .. } = classify(&v, &d, &p) else {
            panic!()
        };
        assert!(reason.contains("az feature register"));
        let mut p = ok_platform();
        p.size_supports_eah = Some(false);
        assert!(matches!(
            classify(&v, &d, &p),
            Eligibility::Skip {
                path: "size-unsupported",
                ..
            }
        ));
    }

    #[test]
    fn non_ade_and_already_eah_are_skipped() {
        let (mut v, d) = vm("Windows", "All", 0);
        v["resources"] = json!([]);
        let plain: BTreeMap<String, Value> = d.clone();
        assert!(matches!(
            classify(&v, &plain, &ok_platform()),
            Eligibility::Skip {
                path: "not-ade",
                ..
            }
        ));
        let (mut v, d) = vm("Windows", "All", 0);
        v["properties"]["securityProfile"] = json!({"encryptionAtHost": true});
        assert!(matches!(
            classify(&v, &d, &ok_platform()),
            Eligibility::Skip {
                path: "already-eah",
                ..
            }
        ));
    }

    #[test]
    fn derived_names_fit_azure_limit() {
        let long = "x".repeat(90);
        assert_eq!(derived_name(&long, TARGET_SUFFIX).len(), MAX_DISK_NAME);
        assert_eq!(derived_name("os", SNAPSHOT_SUFFIX), "os-ade-backup");
    }
}
