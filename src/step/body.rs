//! Request bodies for every mutating call, built purely from the journaled
//! models (read through the typed views of [`crate::model::views`]; what is
//! copied verbatim comes from the views' raw JSON, so nothing the model holds
//! is altered on the way). Keeping them here makes "what exactly do we send to
//! Azure" one reviewable, unit-tested place.

use serde_json::{Map, Value, json};

use super::observe::{LEASE_TAG, RUN_TAG};
use super::record::{DiskPlan, DiskRole, VmFacts};
use crate::model::views::{DiskModel, VmModel};

/// Tag naming the source disk on every target disk and snapshot.
pub const SOURCE_TAG: &str = "ade2eah-source";

fn run_tags(run_id: &str, source: &str) -> Value {
    json!({ RUN_TAG: run_id, SOURCE_TAG: source })
}

/// Incremental snapshot of a source disk (the backup).
pub fn snapshot(plan: &DiskPlan, location: &str, run_id: &str) -> Value {
    json!({
        "location": location,
        "tags": run_tags(run_id, plan.source.as_str()),
        "properties": {
            "incremental": true,
            "creationData": { "createOption": "Copy", "sourceResourceId": plan.source.as_str() }
        }
    })
}

/// The ADE extension PUT that disables encryption (facts §2.2), sent to the
/// resource name actually found, with the installed handler version.
pub fn disable_ade(facts: &VmFacts, sequence_version: &str) -> Option<Value> {
    ade_extension_put(
        facts,
        json!({
            "VolumeType": facts.volume_type,
            "EncryptionOperation": "DisableEncryption",
            "SequenceVersion": sequence_version
        }),
    )
}

/// An ADE extension PUT with `settings`, to the extension found, with the
/// installed handler version.
fn ade_extension_put(facts: &VmFacts, settings: Value) -> Option<Value> {
    let ext = facts.ade_extension.as_ref()?;
    Some(json!({
        "location": facts.location,
        "properties": {
            "publisher": "Microsoft.Azure.Security",
            "type": ext.handler_type,
            "typeHandlerVersion": ext.handler_version,
            "autoUpgradeMinorVersion": true,
            "settings": settings
        }
    }))
}

/// PATCH body that sets `deleteOption=Detach` on the OS disk, every data disk
/// and every NIC of the *current* VM model. Arrays are sent whole because ARM
/// PATCH replaces arrays.
pub fn detach_patch(current_vm: &Value) -> Value {
    let vm = VmModel::new(current_vm);
    let data_disks: Vec<Value> = vm
        .storage_profile()
        .data_disks()
        .map(|d| {
            let mut d = d.raw().clone();
            d["deleteOption"] = json!("Detach");
            d
        })
        .collect();
    let nics: Vec<Value> = vm
        .properties()
        .network_interfaces()
        .map(|n| {
            let mut props = n.properties().cloned().unwrap_or_else(|| json!({}));
            props["deleteOption"] = json!("Detach");
            json!({ "id": n.id_value(), "properties": props })
        })
        .collect();
    json!({
        "properties": {
            "storageProfile": { "osDisk": { "deleteOption": "Detach" }, "dataDisks": data_disks },
            "networkProfile": { "networkInterfaces": nics }
        }
    })
}

/// Source-disk properties the target disk carries verbatim at create time
/// (docs/preservation.md, "Managed disk"): the shape the guest and the VM
/// need (OS type, generation, plan, capabilities, security type) and the
/// performance and sharing settings (tier, bursting, shares, provisioned
/// IOPS/throughput, hibernation, frequent attach, availability policy).
/// `encryption` is not here: the target's encryption is decided separately.
pub const TARGET_CARRIED: [&str; 14] = [
    "osType",
    "hyperVGeneration",
    "purchasePlan",
    "supportedCapabilities",
    "tier",
    "burstingEnabled",
    "maxShares",
    "diskIOPSReadWrite",
    "diskMBpsReadWrite",
    "diskIOPSReadOnly",
    "diskMBpsReadOnly",
    "supportsHibernation",
    "optimizedForFrequentAttach",
    "availabilityPolicy",
];

/// Source-disk access settings the target gets only once it is sealed
/// ([`target_access`]): a target created with `networkAccessPolicy`
/// `DenyAll`/`AllowPrivate` (+ `diskAccessId`), `publicNetworkAccess`
/// `Disabled` or `dataAccessAuthMode` `AzureActiveDirectory` refuses or
/// restricts the SAS grants and page writes the copy makes (INFERRED from
/// the properties' documented meaning: they govern import/export through
/// SAS). So the target is created with the defaults (all omitted) and the
/// source's values are PATCHed onto it after the final copy is sealed and
/// verified, before the VM is re-created.
pub const TARGET_DEFERRED_ACCESS: [&str; 4] = [
    "networkAccessPolicy",
    "diskAccessId",
    "publicNetworkAccess",
    "dataAccessAuthMode",
];

/// The new `Upload` disk for one source disk (facts §3.3): same SKU, OS
/// type, Hyper-V generation, security type, purchase plan and every
/// property of [`TARGET_CARRIED`]; size + 512. Zone: the source's zones,
/// else the VM's zone, except for a `*_ZRS` SKU, which takes no zone
/// (facts §11: Azure refuses a ZRS disk with `zones`). Tags: the source
/// disk's tags plus the run's ownership tags ([`RUN_TAG`], [`SOURCE_TAG`],
/// which win on a clash): the target becomes the VM's disk for good, so it
/// keeps the source's tags, and the ownership tags let a resume, a rollback
/// or a cleanup tell it apart as created by this run. The access settings
/// of [`TARGET_DEFERRED_ACCESS`] are left at their defaults here and
/// restored by [`target_access`].
pub fn target_disk(plan: &DiskPlan, facts: &VmFacts, run_id: &str) -> Value {
    let src = DiskModel::new(&plan.source_model);
    let sp = src.properties();
    let mut props = Map::new();
    props.insert(
        "creationData".into(),
        json!({ "createOption": "Upload", "uploadSizeBytes": plan.source_size_bytes + 512 }),
    );
    for key in TARGET_CARRIED {
        if let Some(v) = sp.raw().get(key).filter(|v| !v.is_null()) {
            props.insert(key.into(), v.clone());
        }
    }
    if let Some(st) = sp.security_type() {
        props.insert("securityProfile".into(), json!({ "securityType": st }));
    }
    // Target encryption: the source's DES carried, or the DES /
    // platform keys the operator chose (`super::encryption::expected`).
    // Platform keys are the service default and stay implicit.
    let encryption = super::encryption::expected(&facts.target_encryption, &plan.source_model);
    if encryption.uses_customer_key() {
        props.insert("encryption".into(), encryption.body());
    }
    let mut tags = src.tag_map().cloned().unwrap_or_default();
    if let Value::Object(own) = run_tags(run_id, plan.source.as_str()) {
        tags.extend(own);
    }
    let mut body = json!({
        "location": src.location().unwrap_or(&facts.location),
        "sku": src.sku_value().cloned().unwrap_or_else(|| json!({"name": "Standard_LRS"})),
        "tags": Value::Object(tags),
        "properties": Value::Object(props),
    });
    if src
        .sku_name()
        .is_some_and(crate::model::usage::is_zone_redundant)
    {
        // Zone-redundant: no `zones` (facts §11).
    } else if let Some(z) = src
        .zones()
        .filter(|z| z.as_array().is_some_and(|a| !a.is_empty()))
    {
        body["zones"] = z.clone();
    } else if let Some(z) = &facts.zone {
        body["zones"] = json!([z]);
    }
    body
}

/// The source disk's access settings ([`TARGET_DEFERRED_ACCESS`]) that
/// differ from a new disk's defaults (`AllowAll`, no disk access,
/// `publicNetworkAccess` `Enabled`, `dataAccessAuthMode` `None`), as the
/// `properties` of the PATCH that restores them on the sealed target;
/// `None` when the source uses the defaults (nothing to restore).
pub fn target_access(source_model: &Value) -> Option<Value> {
    let sp = DiskModel::new(source_model).properties();
    let defaults = [
        ("networkAccessPolicy", "AllowAll"),
        ("publicNetworkAccess", "Enabled"),
        ("dataAccessAuthMode", "None"),
    ];
    let mut want = Map::new();
    for key in TARGET_DEFERRED_ACCESS {
        let Some(v) = sp.raw().get(key).filter(|v| !v.is_null()) else {
            continue;
        };
        let default = defaults.iter().find(|(k, _)| *k == key).map(|(_, d)| *d);
        if v.as_str()
            .zip(default)
            .is_some_and(|(a, b)| a.eq_ignore_ascii_case(b))
        {
            continue;
        }
        want.insert(key.into(), v.clone());
    }
    if want.is_empty() {
        return None;
    }
    Some(Value::Object(want))
}

/// True when the disk `properties` read from Azure already hold every
/// setting of `want` (a [`target_access`] value); strings compare without
/// case (ARM echoes enum values and ids in its own case).
pub fn access_in_place(want: &Value, props: &Value) -> bool {
    want.as_object().is_none_or(|w| {
        w.iter().all(|(k, v)| match (v, props.get(k)) {
            (Value::String(a), Some(Value::String(b))) => a.eq_ignore_ascii_case(b),
            (a, b) => b == Some(a),
        })
    })
}

/// Top-level keys of a VM GET that are output only (never sent on create).
pub const VM_READ_ONLY: [&str; 7] = [
    "id",
    "name",
    "type",
    "etag",
    "resources",
    "managedBy",
    "systemData",
];

/// Keys of `properties` that are output only.
pub const VM_PROPERTIES_READ_ONLY: [&str; 4] =
    ["vmId", "provisioningState", "instanceView", "timeCreated"];

/// Keys of `properties` that a create from attached disks must not carry
/// (facts §5.2: `osProfile` goes only with an image).
pub const VM_NOT_ON_ATTACH: [&str; 1] = ["osProfile"];

/// Keys of a disk entry (`osDisk`, `dataDisks[]`) that are output only,
/// belong to an image-based create, or are ADE leftovers; `managedDisk` and
/// `createOption` are rewritten (`Attach` of a disk by id).
pub const DISK_ENTRY_DROPPED: [&str; 11] = [
    "encryptionSettings",
    "image",
    "vhd",
    "diffDiskSettings",
    "diskSizeGB",
    "toBeDetached",
    "detachOption",
    "diskIOPSReadWrite",
    "diskMBpsReadWrite",
    "sourceResource",
    "managedDisk",
];

/// The original VM model reduced to what Azure accepts when the VM is
/// created again on existing disks: every property is kept verbatim,
/// properties the tool does not know included (they are the VM's), except
///
/// - the output-only ones ([`VM_READ_ONLY`], [`VM_PROPERTIES_READ_ONLY`]);
/// - what a create from attached disks forbids ([`VM_NOT_ON_ATTACH`],
///   `storageProfile.imageReference`) and the NIC creation settings
///   (`networkProfile.networkInterfaceConfigurations`, `networkApiVersion`);
///   the NICs themselves are kept by id, each reference verbatim (a
///   reference without an id is dropped);
/// - per disk entry, [`DISK_ENTRY_DROPPED`]; the entry becomes
///   `createOption: Attach` of its *original* disk (`managedDisk: {id}`)
///   with its `deleteOption` (default `Detach`); data disk entries without
///   a managed disk id are dropped;
/// - `identity`: its type and the user-assigned identity ids with `{}`
///   values (principal and tenant ids are Azure's, a system-assigned
///   identity comes back as a new principal);
/// - the run's lease tag ([`LEASE_TAG`]), should the model carry one.
///
/// The result re-creates the original VM on its original disks, EAH as it
/// was: [`recreate_vm`] swaps in the target disks and turns EAH on; a
/// rollback can PUT it as it is. Pure; `original` is the journaled model.
/// See docs/preservation.md for every property and why.
pub fn carried_model(original: &Value) -> Value {
    let mut m = original.as_object().cloned().unwrap_or_default();
    for k in VM_READ_ONLY {
        m.remove(k);
    }
    if let Some(Value::Object(tags)) = m.get_mut("tags") {
        tags.remove(LEASE_TAG);
    }
    if let Some(identity) = VmModel::new(original).identity() {
        let mut id = json!({ "type": identity.kind_value() });
        if let Some(uai) = identity.user_assigned() {
            id["userAssignedIdentities"] =
                Value::Object(uai.keys().map(|k| (k.clone(), json!({}))).collect());
        }
        m.insert("identity".into(), id);
    }
    let mut props = match m.remove("properties") {
        Some(Value::Object(p)) => p,
        _ => Map::new(),
    };
    for k in VM_PROPERTIES_READ_ONLY.into_iter().chain(VM_NOT_ON_ATTACH) {
        props.remove(k);
    }
    if let Some(Value::Object(sp)) = props.get_mut("storageProfile") {
        sp.remove("imageReference");
        if let Some(os) = sp.get_mut("osDisk").filter(|d| d.is_object()) {
            *os = attach_entry(os);
        }
        if let Some(Value::Array(data)) = sp.get_mut("dataDisks") {
            data.retain(|d| d.pointer("/managedDisk/id").is_some_and(Value::is_string));
            for d in data.iter_mut() {
                *d = attach_entry(d);
            }
        }
    }
    if let Some(Value::Object(np)) = props.get_mut("networkProfile") {
        np.remove("networkInterfaceConfigurations");
        np.remove("networkApiVersion");
        if let Some(Value::Array(nics)) = np.get_mut("networkInterfaces") {
            nics.retain(|n| n.get("id").is_some_and(Value::is_string));
        }
    }
    m.insert("properties".into(), Value::Object(props));
    Value::Object(m)
}

/// A disk entry of the model as an `Attach` of the disk it names.
fn attach_entry(entry: &Value) -> Value {
    let mut e = entry.as_object().cloned().unwrap_or_default();
    let id = entry.pointer("/managedDisk/id").cloned();
    for k in DISK_ENTRY_DROPPED {
        e.remove(k);
    }
    e.insert("createOption".into(), json!("Attach"));
    e.insert("managedDisk".into(), json!({ "id": id }));
    if e.get("deleteOption").is_none_or(Value::is_null) {
        e.insert("deleteOption".into(), json!("Detach"));
    }
    Value::Object(e)
}

/// The PUT body that re-creates the VM on the target disks with EAH on:
/// [`carried_model`] of the original, with the OS disk entry pointing at
/// the OS target, the data disk entries those of the planned disks (by
/// LUN, in plan order, each the original entry verbatim as carried, on its
/// target), and `securityProfile.encryptionAtHost: true`.
pub fn recreate_vm(original: &Value, disks: &[DiskPlan]) -> Value {
    let mut body = carried_model(original);
    let carried = body.clone();
    let carried_sp = &carried["properties"]["storageProfile"];
    if body.get("location").is_none_or(Value::is_null) {
        body["location"] = Value::Null;
    }
    let props = &mut body["properties"];
    let mut security = props
        .get("securityProfile")
        .filter(|v| v.is_object())
        .cloned()
        .unwrap_or_else(|| json!({}));
    security["encryptionAtHost"] = json!(true);
    props["securityProfile"] = security;

    let os_plan = disks.iter().find(|d| d.role == DiskRole::Os);
    let mut os_disk = carried_sp
        .get("osDisk")
        .filter(|d| d.is_object())
        .cloned()
        .unwrap_or_else(|| attach_entry(&json!({})));
    if os_disk.get("osType").is_none() {
        os_disk["osType"] = Value::Null;
    }
    os_disk["managedDisk"] = json!({ "id": os_plan.map(|d| d.target.as_str()) });
    if let Some(p) = os_plan {
        os_disk["name"] = json!(p.target.name());
    }
    let data_disks: Vec<Value> = disks
        .iter()
        .filter_map(|p| match p.role {
            DiskRole::Data { lun } => Some((lun, p)),
            DiskRole::Os => None,
        })
        .map(|(lun, p)| {
            let orig = carried_sp
                .get("dataDisks")
                .and_then(Value::as_array)
                .and_then(|a| {
                    a.iter()
                        .find(|d| d.get("lun").and_then(Value::as_i64) == Some(lun))
                });
            let mut d = orig.cloned().unwrap_or_else(|| attach_entry(&json!({})));
            d["lun"] = json!(lun);
            d["name"] = json!(p.target.name());
            d["managedDisk"] = json!({ "id": p.target.as_str() });
            d
        })
        .collect();
    let mut sp = carried_sp.as_object().cloned().unwrap_or_default();
    sp.insert("osDisk".into(), os_disk);
    sp.insert("dataDisks".into(), Value::Array(data_disks));
    props["storageProfile"] = Value::Object(sp);
    if props.get("networkProfile").is_none_or(|n| !n.is_object()) {
        props["networkProfile"] = json!({ "networkInterfaces": [] });
    }
    body
}

/// The PUT body that restores the original VM (rollback) on its original
/// disks: [`carried_model`] as it is (same name, NICs and primary flag, LUNs,
/// caching, size, zones, tags without the lease tag, identities, userData,
/// every disk `Attach` with its `deleteOption` as it was, the ADE leftover
/// `osDisk.encryptionSettings` dropped: the disks were decrypted in place).
/// Encryption at host stays as it was (off).
pub fn restore_vm(original: &Value) -> Value {
    carried_model(original)
}

/// PATCH body that puts back the `deleteOption` the original model had on
/// the OS disk and each data disk (by LUN) of the *current* VM model, and
/// the original model's NICs (with their properties; the `--nic-swap`
/// placeholder leaves); an entry the original left unset becomes `Detach`
/// (Azure's default for attached disks and NICs). Arrays are sent whole
/// because ARM PATCH replaces arrays.
pub fn restore_delete_options_patch(current_vm: &Value, original: &Value) -> Value {
    let orig = VmModel::new(original);
    let osp = orig.storage_profile();
    let or_detach = |v: Option<&Value>| v.cloned().unwrap_or_else(|| json!("Detach"));
    let os_opt = or_detach(osp.os_disk().and_then(|d| d.delete_option_value()));
    let vm = VmModel::new(current_vm);
    let data_disks: Vec<Value> = vm
        .storage_profile()
        .data_disks()
        .map(|d| {
            let mut raw = d.raw().clone();
            let o = d
                .lun()
                .and_then(|l| osp.data_disk(l))
                .and_then(|o| o.delete_option_value());
            raw["deleteOption"] = or_detach(o);
            raw
        })
        .collect();
    // The original NICs, not the current ones: after a `--nic-swap` the
    // VM holds the placeholder, and this PATCH swaps the originals back.
    let nics: Vec<Value> = orig
        .properties()
        .network_interfaces()
        .map(|n| {
            let mut props = n.properties().cloned().unwrap_or_else(|| json!({}));
            props["deleteOption"] = or_detach(n.delete_option_value());
            json!({ "id": n.id_value(), "properties": props })
        })
        .collect();
    json!({
        "properties": {
            "storageProfile": { "osDisk": { "deleteOption": os_opt }, "dataDisks": data_disks },
            "networkProfile": { "networkInterfaces": nics }
        }
    })
}

/// The ADE extension PUT that re-enables encryption after a rollback, as
/// `az vm encryption enable` sends it (facts §1.2): the journaled
/// extension's own settings (key vault URL and resource id, KEK URL and
/// vault, algorithm, VolumeType) with `EncryptionOperation`
/// `EnableEncryption` and a new `SequenceVersion`.
pub fn reenable_ade(original: &Value, facts: &VmFacts, sequence_version: &str) -> Option<Value> {
    let mut settings = VmModel::new(original)
        .extensions()
        .find(super::observe::is_ade_extension)
        .and_then(|e| e.raw().pointer("/properties/settings").cloned())
        .filter(Value::is_object)?;
    settings["EncryptionOperation"] = json!("EnableEncryption");
    settings["SequenceVersion"] = json!(sequence_version);
    ade_extension_put(facts, settings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ResourceId;

    const RG: &str = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute";

    fn plan(role: DiskRole, name: &str) -> DiskPlan {
        let source = ResourceId::parse(&format!("{RG}/disks/{name}")).unwrap();
        DiskPlan {
            role,
            target: source.sibling("Microsoft.Compute", "disks", &format!("{name}-eah")),
            snapshot: source.sibling(
                "Microsoft.Compute",
                "snapshots",
                &format!("{name}-ade-backup"),
            ),
            source,
            source_size_bytes: 128 << 30,
            source_model: json!({"location": "westeurope", "zones": ["2"], "sku": {"name": "Premium_LRS"},
                "properties": {"osType": "Windows", "hyperVGeneration": "V2", "securityProfile": {"securityType": "TrustedLaunch"}, "diskSizeBytes": 128u64 << 30}}),
            copied: false,
            bytes_copied: 0,
            rounds: Vec::new(),
            verified: false,
            rounds_opened: 0,
        }
    }

    /// Facts of a Windows VM in zone 2 of westeurope.
    fn zonal_facts() -> VmFacts {
        VmFacts {
            os: super::super::record::OsType::Windows,
            location: "westeurope".into(),
            zone: Some("2".into()),
            size: "Standard_D4s_v5".into(),
            ade_extension: None,
            dual_pass: false,
            volume_type: "All".into(),
            target_encryption: Default::default(),
            guest_check: false,
            nic_swap: false,
            nic_swap_refused: false,
            rebuild: None,
        }
    }

    fn original() -> Value {
        json!({
            "location": "westeurope", "zones": ["2"], "tags": {"app": "erp"},
            "identity": {"type": "SystemAssigned, UserAssigned", "principalId": "p", "tenantId": "t",
                         "userAssignedIdentities": {"/x/uami": {"principalId": "q", "clientId": "c"}}},
            "properties": {
                "vmId": "old", "provisioningState": "Succeeded",
                "hardwareProfile": {"vmSize": "Standard_D4s_v5"},
                "licenseType": "Windows_Server",
                "diagnosticsProfile": {"bootDiagnostics": {"enabled": true}},
                "securityProfile": {"securityType": "TrustedLaunch", "uefiSettings": {"secureBootEnabled": true, "vTpmEnabled": true}},
                "osProfile": {"computerName": "x", "adminUsername": "a"},
                "storageProfile": {
                    "imageReference": {"publisher": "MicrosoftWindowsServer"},
                    "osDisk": {"osType": "Windows", "caching": "ReadWrite", "deleteOption": "Delete",
                               "managedDisk": {"id": format!("{RG}/disks/os")}, "encryptionSettings": {"enabled": true}},
                    "dataDisks": [{"lun": 3, "caching": "ReadOnly", "writeAcceleratorEnabled": false, "deleteOption": "Detach",
                                   "managedDisk": {"id": format!("{RG}/disks/d3")}}]
                },
                "networkProfile": {"networkInterfaces": [
                    {"id": "/nic/a", "properties": {"primary": false, "deleteOption": "Delete"}},
                    {"id": "/nic/b", "properties": {"primary": true}}]}
            }
        })
    }

    #[test]
    fn recreate_carries_configuration_and_turns_on_eah() {
        let disks = vec![
            plan(DiskRole::Os, "os"),
            plan(DiskRole::Data { lun: 3 }, "d3"),
        ];
        let b = recreate_vm(&original(), &disks);
        assert_eq!(
            b["properties"]["securityProfile"]["encryptionAtHost"],
            json!(true)
        );
        assert_eq!(
            b["properties"]["securityProfile"]["uefiSettings"]["vTpmEnabled"],
            json!(true)
        );
        assert_eq!(b["zones"], json!(["2"]));
        assert_eq!(b["tags"]["app"], "erp");
        assert_eq!(b["properties"]["licenseType"], "Windows_Server");
        assert_eq!(
            b["properties"]["hardwareProfile"]["vmSize"],
            "Standard_D4s_v5"
        );
        let os = &b["properties"]["storageProfile"]["osDisk"];
        assert_eq!(os["createOption"], "Attach");
        assert!(
            os["managedDisk"]["id"]
                .as_str()
                .unwrap()
                .ends_with("/disks/os-eah")
        );
        assert_eq!(
            os["deleteOption"], "Delete",
            "original deleteOption restored on the new VM"
        );
        assert!(
            os.get("encryptionSettings").is_none(),
            "ADE leftovers dropped"
        );
        let d = &b["properties"]["storageProfile"]["dataDisks"][0];
        assert_eq!(d["lun"], 3);
        assert_eq!(d["caching"], "ReadOnly");
        assert!(
            d["managedDisk"]["id"]
                .as_str()
                .unwrap()
                .ends_with("/disks/d3-eah")
        );
        let nics = b["properties"]["networkProfile"]["networkInterfaces"]
            .as_array()
            .unwrap();
        assert_eq!(nics[1]["properties"]["primary"], true);
        assert!(b["properties"].get("osProfile").is_none());
        assert!(
            b["properties"]["storageProfile"]
                .get("imageReference")
                .is_none()
        );
        assert!(b["properties"].get("vmId").is_none());
        assert_eq!(
            b["identity"]["userAssignedIdentities"]["/x/uami"],
            json!({})
        );
        assert!(b["identity"].get("principalId").is_none());
    }

    #[test]
    fn target_disk_matches_source_shape() {
        let p = plan(DiskRole::Os, "os");
        let facts = zonal_facts();
        let b = target_disk(&p, &facts, "run1");
        assert_eq!(
            b["properties"]["creationData"]["uploadSizeBytes"],
            json!((128u64 << 30) + 512)
        );
        assert_eq!(b["sku"]["name"], "Premium_LRS");
        assert_eq!(b["zones"], json!(["2"]));
        assert_eq!(b["properties"]["hyperVGeneration"], "V2");
        assert_eq!(
            b["properties"]["securityProfile"]["securityType"],
            "TrustedLaunch"
        );
        assert_eq!(b["tags"][RUN_TAG], "run1");
    }

    #[test]
    fn detach_patch_sends_whole_arrays() {
        let p = detach_patch(&original());
        assert_eq!(
            p["properties"]["storageProfile"]["osDisk"]["deleteOption"],
            "Detach"
        );
        assert_eq!(p["properties"]["storageProfile"]["dataDisks"][0]["lun"], 3);
        assert_eq!(
            p["properties"]["storageProfile"]["dataDisks"][0]["deleteOption"],
            "Detach"
        );
        let nics = p["properties"]["networkProfile"]["networkInterfaces"]
            .as_array()
            .unwrap();
        assert_eq!(nics.len(), 2);
        assert!(
            nics.iter()
                .all(|n| n["properties"]["deleteOption"] == "Detach")
        );
        assert_eq!(nics[1]["properties"]["primary"], true);
    }

    #[test]
    fn carried_model_keeps_everything_azure_accepts_and_nothing_else() {
        let vm = rich_vm();
        let c = carried_model(&vm);
        for k in VM_READ_ONLY {
            assert!(c.get(k).is_none(), "{k} is output only");
        }
        let p = &c["properties"];
        for k in VM_PROPERTIES_READ_ONLY.into_iter().chain(VM_NOT_ON_ATTACH) {
            assert!(p.get(k).is_none(), "{k} not carried");
        }
        // Carried verbatim, known or not.
        for k in [
            "applicationProfile",
            "virtualMachineScaleSet",
            "platformFaultDomain",
            "extensionsTimeBudget",
            "scheduledEventsPolicy",
            "userData",
            "futureProperty",
            "hardwareProfile",
            "capacityReservation",
        ] {
            assert_eq!(p[k], vm["properties"][k], "{k}");
        }
        assert_eq!(c["futureTopLevel"], vm["futureTopLevel"]);
        assert_eq!(p["storageProfile"]["diskControllerType"], "NVMe");
        assert!(p["storageProfile"].get("imageReference").is_none());
        let os = &p["storageProfile"]["osDisk"];
        assert_eq!(
            os["managedDisk"],
            json!({"id": format!("{RG}/disks/os")}),
            "original disk, by id"
        );
        assert_eq!(os["createOption"], "Attach");
        assert_eq!(os["futureOsDiskField"], "keep");
        assert!(os.get("encryptionSettings").is_none() && os.get("diskSizeGB").is_none());
        let data = p["storageProfile"]["dataDisks"].as_array().unwrap();
        assert_eq!(data.len(), 2, "the entry without a managed disk is dropped");
        assert!(data[0].get("toBeDetached").is_none());
        assert_eq!(data[1]["deleteOption"], "Detach", "default deleteOption");
        let np = &p["networkProfile"];
        assert!(
            np.get("networkInterfaceConfigurations").is_none()
                && np.get("networkApiVersion").is_none()
        );
        assert_eq!(np["networkInterfaces"].as_array().unwrap().len(), 3);
        assert_eq!(
            np["networkInterfaces"][0],
            vm["properties"]["networkProfile"]["networkInterfaces"][0]
        );
        assert_eq!(
            c["identity"],
            json!({"type": "SystemAssigned, UserAssigned",
            "userAssignedIdentities": {"/x/uami": {}, "/x/uami2": {}}})
        );
        assert_eq!(c["tags"], vm["tags"]);
        // A stale lease tag is never carried; the other tags are.
        let mut leased = vm.clone();
        leased["tags"][LEASE_TAG] = json!("r;2026-01-01T00:00:00Z");
        assert_eq!(carried_model(&leased)["tags"], vm["tags"]);
        // EAH stays as it was: the rollback body is the original VM.
        assert!(p["securityProfile"].get("encryptionAtHost").is_none());
    }

    #[test]
    fn a_zrs_target_has_no_zone_even_on_a_zonal_vm() {
        let mut p = plan(DiskRole::Os, "os");
        p.source_model["sku"] = json!({"name": "Premium_ZRS"});
        p.source_model.as_object_mut().unwrap().remove("zones");
        let facts = zonal_facts();
        let b = target_disk(&p, &facts, "run1");
        assert!(b.get("zones").is_none(), "{b}");
        assert_eq!(b["sku"]["name"], "Premium_ZRS");
        p.source_model["sku"] = json!({"name": "Premium_LRS"});
        assert_eq!(target_disk(&p, &facts, "run1")["zones"], json!(["2"]));
    }

    #[test]
    fn target_disk_carries_performance_and_defers_access_settings() {
        let mut p = plan(DiskRole::Data { lun: 0 }, "d0");
        p.source_model = rich_disk("d0", json!(["2"]), Some("westeurope"));
        p.source_model["properties"]["networkAccessPolicy"] = json!("AllowPrivate");
        p.source_model["properties"]["diskAccessId"] = json!("/da/1");
        p.source_model["properties"]["dataAccessAuthMode"] = json!("AzureActiveDirectory");
        let facts = zonal_facts();
        let b = target_disk(&p, &facts, "run1");
        let props = &b["properties"];
        for k in [
            "tier",
            "burstingEnabled",
            "maxShares",
            "supportedCapabilities",
        ] {
            assert_eq!(props[k], p.source_model["properties"][k], "{k}");
        }
        for k in TARGET_DEFERRED_ACCESS {
            assert!(props.get(k).is_none(), "{k} is restored after the seal");
        }
        assert!(props.get("encryption").is_none());
        assert_eq!(b["tags"]["owner"], "x", "source tags kept");
        assert_eq!(b["tags"][RUN_TAG], "run1");
        let want = target_access(&p.source_model).unwrap();
        assert_eq!(
            want,
            json!({"networkAccessPolicy": "AllowPrivate", "diskAccessId": "/da/1", "dataAccessAuthMode": "AzureActiveDirectory"})
        );
        let defaults = json!({"networkAccessPolicy": "AllowAll", "publicNetworkAccess": "Enabled"});
        assert!(!access_in_place(&want, &defaults));
        let now = json!({"networkAccessPolicy": "allowprivate", "diskAccessId": "/DA/1", "dataAccessAuthMode": "AzureActiveDirectory"});
        assert!(access_in_place(&want, &now));
        assert_eq!(
            target_access(&rich_disk("x", json!([]), None)),
            None,
            "defaults: nothing to restore"
        );
    }

    /// A VM model with every carried property, unknown properties at every
    /// level, explicit `null`s and odd shapes (the before/after input of the
    /// golden body test).
    fn rich_vm() -> Value {
        let storage_profile = json!({
            "imageReference": {"publisher": "MicrosoftWindowsServer"},
            "diskControllerType": "NVMe",
            "osDisk": {"osType": "Windows", "name": "os", "caching": "ReadWrite", "deleteOption": "Delete",
                       "writeAcceleratorEnabled": null, "diskSizeGB": 128, "futureOsDiskField": "keep",
                       "managedDisk": {"id": format!("{RG}/disks/os"), "storageAccountType": "Premium_LRS"},
                       "encryptionSettings": {"enabled": true}},
            "dataDisks": [
                {"lun": 3, "name": "d3", "caching": "ReadOnly", "writeAcceleratorEnabled": true, "deleteOption": "Detach",
                 "toBeDetached": false, "futureDataDiskField": [1, 2],
                 "managedDisk": {"id": format!("{RG}/disks/d3")}},
                {"lun": 0, "name": "d0", "caching": null,
                 "managedDisk": {"id": format!("{RG}/disks/d0")}},
                {"lun": "7", "name": "odd"}
            ]
        });
        let network_profile = json!({"networkApiVersion": "2020-11-01", "networkInterfaceConfigurations": [{"name": "cfg"}],
                    "networkInterfaces": [
                    {"id": "/nic/a", "properties": {"primary": false, "deleteOption": "Delete", "futureNicField": 1}},
                    {"id": "/nic/b", "properties": {"primary": true}},
                    {"properties": null},
                    {"id": "/nic/d"}]});
        let mut vm = json!({
            "id": format!("{RG}/virtualMachines/rich"), "name": "rich", "type": "Microsoft.Compute/virtualMachines",
            "location": "westeurope", "zones": ["2"], "tags": {"app": "erp", "cost": "42"},
            "plan": {"name": "p", "publisher": "pub", "product": "prod"},
            "extendedLocation": {"type": "EdgeZone", "name": "ez"},
            "etag": "\"7\"", "futureTopLevel": {"x": 1},
            "identity": {"type": "SystemAssigned, UserAssigned", "principalId": "p", "tenantId": "t",
                         "userAssignedIdentities": {"/x/uami": {"principalId": "q", "clientId": "c"}, "/x/uami2": {}}},
            "properties": {
                "vmId": "old", "provisioningState": "Succeeded", "timeCreated": "2025-01-01T00:00:00Z",
                "futureProperty": {"enabled": true},
                "hardwareProfile": {"vmSize": "Standard_D4s_v5", "vmSizeProperties": {"vCPUsAvailable": 2}},
                "licenseType": "Windows_Server",
                "diagnosticsProfile": {"bootDiagnostics": {"enabled": true}},
                "availabilitySet": {"id": "/as/1"},
                "proximityPlacementGroup": {"id": "/ppg/1"},
                "priority": "Spot", "evictionPolicy": "Deallocate", "billingProfile": {"maxPrice": -1},
                "additionalCapabilities": {"ultraSSDEnabled": false, "hibernationEnabled": true},
                "host": null, "hostGroup": {"id": "/hg/1"},
                "capacityReservation": {"capacityReservationGroup": {"id": "/crg/1"}},
                "scheduledEventsProfile": {"terminateNotificationProfile": {"enable": true}},
                "userData": "dXNlcg==",
                "applicationProfile": {"galleryApplications": []},

                "securityProfile": {"securityType": "TrustedLaunch", "uefiSettings": {"secureBootEnabled": true, "vTpmEnabled": true},
                                    "futureSecurity": 1},
                "osProfile": {"computerName": "x", "adminUsername": "a"},
                "instanceView": {"statuses": [{"code": "PowerState/running"}]},
                "storageProfile": storage_profile,
                "networkProfile": network_profile
            },
            "resources": [{"id": format!("{RG}/virtualMachines/rich/extensions/ade"), "name": "ade",
                           "properties": {"publisher": "Microsoft.Azure.Security", "type": "AzureDiskEncryption"}}]
        });
        let more = json!({
            "virtualMachineScaleSet": {"id": "/vmss/flex"}, "platformFaultDomain": 1,
            "extensionsTimeBudget": "PT1H30M",
            "scheduledEventsPolicy": {"scheduledEventsAdditionalPublishingTargets": {"eventGridAndResourceGraph": {"enable": true}}}
        });
        for (k, v) in more.as_object().unwrap() {
            vm["properties"][k] = v.clone();
        }
        vm
    }

    /// A disk model with every carried property, unknown ones and a `null`.
    fn rich_disk(name: &str, zones: Value, location: Option<&str>) -> Value {
        let mut d = json!({
            "id": format!("{RG}/disks/{name}"), "name": name, "zones": zones,
            "sku": {"name": "Premium_LRS", "tier": "Premium"}, "tags": {"owner": "x"},
            "managedBy": format!("{RG}/virtualMachines/rich"), "futureDiskTop": true,
            "properties": {"osType": "Windows", "hyperVGeneration": "V2", "diskSizeBytes": 1u64 << 30,
                "purchasePlan": {"name": "p", "publisher": "pub", "product": "prod"},
                "supportedCapabilities": {"architecture": "x64", "diskControllerTypes": "SCSI, NVMe"},
                "networkAccessPolicy": "AllowAll", "diskAccessId": null, "publicNetworkAccess": "Enabled",
                "securityProfile": {"securityType": "TrustedLaunch"},
                "tier": "P10", "burstingEnabled": true, "maxShares": 1, "dataAccessAuthMode": "None",
                "encryption": {"type": "EncryptionAtRestWithPlatformKey"},
                "encryptionSettingsCollection": {"enabled": true},
                "futureDiskField": {"a": 1}}
        });
        if let Some(l) = location {
            d["location"] = json!(l);
        }
        d
    }

    fn rich_bodies() -> Value {
        let vm = rich_vm();
        let mut os = plan(DiskRole::Os, "os");
        os.source_model = rich_disk("os", json!(["2"]), Some("westeurope"));
        let mut d3 = plan(DiskRole::Data { lun: 3 }, "d3");
        d3.source_model = rich_disk("d3", json!([]), None);
        let mut d9 = plan(DiskRole::Data { lun: 9 }, "d9");
        d9.source_model = json!({"sku": null, "properties": {"osType": null}});
        let facts = VmFacts {
            os: super::super::record::OsType::Windows,
            location: "northeurope".into(),
            zone: Some("1".into()),
            size: "Standard_D4s_v5".into(),
            ade_extension: None,
            dual_pass: true,
            volume_type: "All".into(),
            target_encryption: Default::default(),
            guest_check: false,
            nic_swap: false,
            nic_swap_refused: false,
            rebuild: None,
        };
        json!({
            "detach_patch": detach_patch(&vm),
            "recreate_vm": recreate_vm(&vm, &[os.clone(), d3.clone(), d9.clone()]),
            "recreate_vm_bare": recreate_vm(&json!({}), &[os.clone()]),
            "detach_patch_bare": detach_patch(&json!({"properties": {"storageProfile": null}})),
            "target_disk_os": target_disk(&os, &facts, "run1"),
            "target_disk_d3": target_disk(&d3, &facts, "run1"),
            "target_disk_d9": target_disk(&d9, &facts, "run1"),
        })
    }

    /// The bodies for a rich model are exactly the reviewed golden ones
    /// (first recorded from the dotted-path implementation; re-recorded when
    /// the bodies started carrying every property, docs/preservation.md).
    #[test]
    fn bodies_for_a_rich_model_are_unchanged() {
        let golden: Value =
            serde_json::from_str(include_str!("testdata/rich_bodies.json")).unwrap();
        let now = rich_bodies();
        for key in golden.as_object().unwrap().keys() {
            assert_eq!(now[key], golden[key], "{key} changed");
        }
        assert_eq!(now, golden);
    }

    /// The detach PATCH sends the data disk entries and NIC references whole,
    /// so properties the tool does not know about survive into that body
    /// verbatim; the re-create and target-disk bodies carry exactly what they
    /// carried before (see `bodies_for_a_rich_model_are_unchanged`).
    #[test]
    fn detach_patch_keeps_unknown_properties_verbatim() {
        let p = detach_patch(&rich_vm());
        let d = &p["properties"]["storageProfile"]["dataDisks"];
        assert_eq!(d[0]["futureDataDiskField"], json!([1, 2]));
        assert_eq!(d[0]["toBeDetached"], false);
        assert_eq!(d[1]["caching"], Value::Null, "explicit null kept");
        assert_eq!(d[2]["lun"], "7", "odd shapes sent as read");
        let n = &p["properties"]["networkProfile"]["networkInterfaces"];
        assert_eq!(n[0]["properties"]["futureNicField"], 1);
        assert_eq!(n[0]["properties"]["deleteOption"], "Detach");
    }

    #[test]
    fn restore_keeps_the_original_verbatim_on_its_own_disks() {
        let orig = rich_vm();
        let b = restore_vm(&orig);
        for gone in ["id", "name", "type", "etag", "resources"] {
            assert!(b.get(gone).is_none(), "{gone} is read-only");
        }
        let p = &b["properties"];
        for gone in [
            "vmId",
            "provisioningState",
            "timeCreated",
            "instanceView",
            "osProfile",
        ] {
            assert!(p.get(gone).is_none(), "{gone} dropped");
        }
        assert!(p["storageProfile"].get("imageReference").is_none());
        let os = &p["storageProfile"]["osDisk"];
        assert_eq!(os["createOption"], "Attach");
        assert!(
            os.get("encryptionSettings").is_none(),
            "ADE leftover dropped"
        );
        assert_eq!(
            os["managedDisk"]["id"],
            orig["properties"]["storageProfile"]["osDisk"]["managedDisk"]["id"]
        );
        assert_eq!(os["deleteOption"], "Delete");
        assert_eq!(os["futureOsDiskField"], "keep");
        let data = p["storageProfile"]["dataDisks"].as_array().unwrap();
        assert!(data.iter().all(|d| d["createOption"] == "Attach"));
        assert_eq!(data[0]["caching"], "ReadOnly");
        assert_eq!(data[0]["managedDisk"]["id"], format!("{RG}/disks/d3"));
        // The NICs by id, each reference verbatim; the NIC creation settings
        // and a reference without an id are dropped (`carried_model`).
        let nics: Vec<&Value> = orig["properties"]["networkProfile"]["networkInterfaces"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n.get("id").is_some())
            .collect();
        let got: Vec<&Value> = p["networkProfile"]["networkInterfaces"]
            .as_array()
            .unwrap()
            .iter()
            .collect();
        assert_eq!(got, nics);
        for k in [
            "tags",
            "zones",
            "plan",
            "extendedLocation",
            "futureTopLevel",
            "location",
        ] {
            assert_eq!(b[k], orig[k], "{k} verbatim");
        }
        for k in [
            "userData",
            "hardwareProfile",
            "securityProfile",
            "futureProperty",
            "licenseType",
        ] {
            assert_eq!(p[k], orig["properties"][k], "{k} verbatim");
        }
        assert!(
            p["securityProfile"].get("encryptionAtHost").is_none(),
            "EAH stays as it was"
        );
        let id = &b["identity"];
        assert_eq!(id["type"], "SystemAssigned, UserAssigned");
        assert!(id.get("principalId").is_none() && id.get("tenantId").is_none());
        assert_eq!(id["userAssignedIdentities"]["/x/uami"], json!({}));
    }

    #[test]
    fn restore_delete_options_puts_back_each_original_option() {
        let orig = rich_vm();
        let current = detach_patch(&orig);
        let mut now = orig.clone();
        now["properties"]["storageProfile"] = current["properties"]["storageProfile"].clone();
        now["properties"]["networkProfile"] = current["properties"]["networkProfile"].clone();
        let p = restore_delete_options_patch(&now, &orig);
        let sp = &p["properties"]["storageProfile"];
        assert_eq!(sp["osDisk"]["deleteOption"], "Delete");
        let data = sp["dataDisks"].as_array().unwrap();
        assert_eq!(data[0]["deleteOption"], "Detach");
        assert_eq!(data[0]["futureDataDiskField"], json!([1, 2]));
        assert_eq!(
            data[1]["deleteOption"], "Detach",
            "unset reads as Azure's default"
        );
        let nics = p["properties"]["networkProfile"]["networkInterfaces"]
            .as_array()
            .unwrap();
        assert_eq!(nics[0]["properties"]["deleteOption"], "Delete");
        assert_eq!(nics[0]["properties"]["futureNicField"], 1);
        assert_eq!(nics[1]["properties"]["deleteOption"], "Detach");
    }
}
