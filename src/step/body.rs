//! Request bodies for every mutating call, built purely from the journaled
//! models (read through the typed views of [`crate::model::views`]; what is
//! copied verbatim comes from the views' raw JSON, so nothing the model holds
//! is altered on the way). Keeping them here makes "what exactly do we send to
//! Azure" one reviewable, unit-tested place.

use serde_json::{Map, Value, json};

use super::observe::RUN_TAG;
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
    let ext = facts.ade_extension.as_ref()?;
    Some(json!({
        "location": facts.location,
        "properties": {
            "publisher": "Microsoft.Azure.Security",
            "type": ext.handler_type,
            "typeHandlerVersion": ext.handler_version,
            "autoUpgradeMinorVersion": true,
            "settings": {
                "VolumeType": facts.volume_type,
                "EncryptionOperation": "DisableEncryption",
                "SequenceVersion": sequence_version
            }
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

/// The new `Upload` disk for one source disk (facts §3.3): same SKU, zone,
/// OS type, Hyper-V generation, security type and purchase plan; size + 512.
pub fn target_disk(plan: &DiskPlan, facts: &VmFacts, run_id: &str) -> Value {
    let src = DiskModel::new(&plan.source_model);
    let sp = src.properties();
    let mut props = Map::new();
    props.insert(
        "creationData".into(),
        json!({ "createOption": "Upload", "uploadSizeBytes": plan.source_size_bytes + 512 }),
    );
    let carried = [
        ("osType", sp.os_type()),
        ("hyperVGeneration", sp.hyper_v_generation()),
        ("purchasePlan", sp.purchase_plan()),
        ("supportedCapabilities", sp.supported_capabilities()),
        ("networkAccessPolicy", sp.network_access_policy()),
        ("diskAccessId", sp.disk_access_id()),
        ("publicNetworkAccess", sp.public_network_access()),
    ];
    for (key, v) in carried {
        if let Some(v) = v {
            props.insert(key.into(), v.clone());
        }
    }
    if let Some(st) = sp.security_type() {
        props.insert("securityProfile".into(), json!({ "securityType": st }));
    }
    let mut body = json!({
        "location": src.location().unwrap_or(&facts.location),
        "sku": src.sku_value().cloned().unwrap_or_else(|| json!({"name": "Standard_LRS"})),
        "tags": run_tags(run_id, plan.source.as_str()),
        "properties": Value::Object(props),
    });
    if let Some(z) = src
        .zones()
        .filter(|z| z.as_array().is_some_and(|a| !a.is_empty()))
    {
        body["zones"] = z.clone();
    } else if let Some(z) = &facts.zone {
        body["zones"] = json!([z]);
    }
    body
}

/// The PUT body that re-creates the VM on the target disks with EAH on.
///
/// Carries over: location, zones, tags, identity (user-assigned ids; a
/// system-assigned identity is re-requested and will be a new principal),
/// plan, size, boot diagnostics, licence type, availability set, PPG,
/// priority/eviction/billing, capabilities, host, capacity reservation,
/// security profile (security type, UEFI), NICs with their primary flag and
/// original `deleteOption`, LUNs, caching and write accelerator, and each
/// disk's original `deleteOption`. Drops what `Attach` forbids (`osProfile`,
/// `imageReference`) and ADE leftovers (`osDisk.encryptionSettings`).
pub fn recreate_vm(original: &Value, disks: &[DiskPlan]) -> Value {
    let vm = VmModel::new(original);
    let props = vm.properties();
    // Top-level VM properties carried over verbatim when they are present.
    let carried = [
        ("hardwareProfile", props.hardware_profile()),
        ("diagnosticsProfile", props.diagnostics_profile()),
        ("licenseType", props.license_type()),
        ("availabilitySet", props.availability_set()),
        ("proximityPlacementGroup", props.proximity_placement_group()),
        ("priority", props.priority()),
        ("evictionPolicy", props.eviction_policy()),
        ("billingProfile", props.billing_profile()),
        ("additionalCapabilities", props.additional_capabilities()),
        ("host", props.host()),
        ("hostGroup", props.host_group()),
        ("capacityReservation", props.capacity_reservation()),
        ("scheduledEventsProfile", props.scheduled_events_profile()),
        ("userData", props.user_data()),
    ];
    let mut new_props = Map::new();
    for (key, v) in carried {
        if let Some(v) = v {
            new_props.insert(key.into(), v.clone());
        }
    }
    let mut security = props
        .security_profile()
        .cloned()
        .unwrap_or_else(|| json!({}));
    security["encryptionAtHost"] = json!(true);
    new_props.insert("securityProfile".into(), security);

    let sp = props.storage_profile();
    let orig_os = sp.os_disk();
    let os_plan = disks.iter().find(|d| d.role == DiskRole::Os);
    let mut os_disk = json!({
        "osType": orig_os.map_or(&Value::Null, |d| d.os_type_value()),
        "createOption": "Attach",
        "managedDisk": { "id": os_plan.map(|d| d.target.as_str()) },
        "deleteOption": orig_os.and_then(|d| d.delete_option_value()).cloned().unwrap_or_else(|| json!("Detach")),
    });
    if let Some(orig) = orig_os {
        copy_present(
            &mut os_disk,
            [
                ("caching", orig.caching()),
                ("writeAcceleratorEnabled", orig.write_accelerator_enabled()),
            ],
        );
    }
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
            let orig = sp.data_disk(lun);
            let mut d = json!({
                "lun": lun,
                "name": p.target.name(),
                "createOption": "Attach",
                "managedDisk": { "id": p.target.as_str() },
                "deleteOption": orig.and_then(|o| o.delete_option_value()).cloned().unwrap_or_else(|| json!("Detach")),
            });
            if let Some(orig) = orig {
                copy_present(
                    &mut d,
                    [
                        ("caching", orig.caching()),
                        ("writeAcceleratorEnabled", orig.write_accelerator_enabled()),
                    ],
                );
            }
            d
        })
        .collect();
    new_props.insert(
        "storageProfile".into(),
        json!({ "osDisk": os_disk, "dataDisks": data_disks }),
    );

    let nics: Vec<Value> = props
        .network_interfaces()
        .map(|n| {
            let mut p = json!({});
            copy_present(
                &mut p,
                [
                    ("primary", n.primary()),
                    ("deleteOption", n.delete_option_value()),
                ],
            );
            json!({ "id": n.id_value(), "properties": p })
        })
        .collect();
    new_props.insert(
        "networkProfile".into(),
        json!({ "networkInterfaces": nics }),
    );

    let mut body = json!({
        "location": vm.location_value(),
        "properties": Value::Object(new_props),
    });
    copy_present(
        &mut body,
        [
            ("zones", vm.zones()),
            ("tags", vm.tags()),
            ("plan", vm.plan()),
            ("extendedLocation", vm.extended_location()),
        ],
    );
    if let Some(identity) = vm.identity() {
        let mut id = json!({ "type": identity.kind_value() });
        if let Some(uai) = identity.user_assigned() {
            id["userAssignedIdentities"] =
                Value::Object(uai.keys().map(|k| (k.clone(), json!({}))).collect());
        }
        body["identity"] = id;
    }
    body
}

/// Sets each `(key, value)` whose value is present on `to`.
fn copy_present<const N: usize>(to: &mut Value, fields: [(&str, Option<&Value>); N]) {
    for (k, v) in fields {
        if let Some(v) = v {
            to[k] = v.clone();
        }
    }
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
        let facts = VmFacts {
            os: super::super::record::OsType::Windows,
            location: "westeurope".into(),
            zone: Some("2".into()),
            size: "Standard_D4s_v5".into(),
            ade_extension: None,
            dual_pass: false,
            volume_type: "All".into(),
            rebuild: None,
        };
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
        let network_profile = json!({"networkInterfaces": [
                    {"id": "/nic/a", "properties": {"primary": false, "deleteOption": "Delete", "futureNicField": 1}},
                    {"id": "/nic/b", "properties": {"primary": true}},
                    {"properties": null},
                    {"id": "/nic/d"}]});
        json!({
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
        })
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

    /// The bodies for a rich model are exactly those the code sent before the
    /// typed views (golden recorded from the dotted-path implementation).
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
}
