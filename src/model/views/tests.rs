//! Unit tests of the views: each accessor reads its property, tolerant of
//! odd shapes, and every level hands back its JSON verbatim (unknown
//! properties and explicit `null`s included).

use serde_json::{Value, json};

use super::*;

const RG: &str = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute";

fn vm() -> Value {
    json!({
        "id": format!("{RG}/virtualMachines/v"), "name": "v", "location": "westeurope",
        "zones": ["3"], "tags": {"app": "erp", "n": 1}, "plan": null, "unknownTop": {"a": 1},
        "identity": {"type": "SystemAssigned", "principalId": "p", "userAssignedIdentities": {"/u/1": {}}},
        "resources": [{"id": format!("{RG}/virtualMachines/v/extensions/e"), "name": "e",
            "properties": {"publisher": "Microsoft.Azure.Security", "type": "AzureDiskEncryption",
                "typeHandlerVersion": "2.2", "provisioningState": "Succeeded",
                "settings": {"EncryptionOperation": "EnableEncryption", "VolumeType": "All"}}}],
        "properties": {
            "vmId": "g", "provisioningState": "Succeeded", "unknownProp": [1],
            "hardwareProfile": {"vmSize": "Standard_D2s_v5"},
            "securityProfile": {"encryptionAtHost": false, "securityType": "TrustedLaunch"},
            "availabilitySet": null, "licenseType": "Windows_Server",
            "storageProfile": {
                "unknownStorage": "x",
                "osDisk": {"osType": "Windows", "deleteOption": "Delete", "caching": null, "unknownOs": 1,
                           "managedDisk": {"id": format!("{RG}/disks/os")}, "encryptionSettings": {"enabled": true}},
                "dataDisks": [
                    {"lun": 2, "deleteOption": "Detach", "unknownData": true, "managedDisk": {"id": format!("{RG}/disks/d2")}},
                    {"lun": "1", "managedDisk": {"id": 7}}
                ]
            },
            "networkProfile": {"networkInterfaces": [
                {"id": "/nic/a", "properties": {"primary": true, "deleteOption": "Delete", "unknownNic": 1}},
                {"properties": null}
            ]},
            "instanceView": {"statuses": [{"code": "ProvisioningState/succeeded"}, {"code": "PowerState/running"}],
                "disks": [{"name": "os", "statuses": [{"code": "EncryptionState/encrypted"}]}],
                "extensions": [{"name": "e", "type": "Microsoft.Azure.Security.AzureDiskEncryption",
                    "statuses": [{"code": "ProvisioningState/succeeded", "level": "Info", "message": "m"}],
                    "substatuses": [{"code": "s", "message": "{}"}]}]}
        }
    })
}

#[test]
fn vm_accessors_read_their_properties() {
    let raw = vm();
    let v = VmModel::new(&raw);
    assert_eq!(v.name(), Some("v"));
    assert_eq!(v.location(), Some("westeurope"));
    assert_eq!(v.zone(), Some("3"));
    assert_eq!(v.tag("app"), Some("erp"));
    assert_eq!(v.tag("n"), None, "a non-string tag value reads as absent");
    assert_eq!(v.plan(), None, "an explicit null reads as not set");
    let id = v.identity().unwrap();
    assert_eq!(id.kind(), Some("SystemAssigned"));
    assert_eq!(id.principal_id(), Some("p"));
    assert_eq!(id.user_assigned().unwrap().len(), 1);
    let p = v.properties();
    assert_eq!(p.vm_id(), Some("g"));
    assert_eq!(p.vm_size(), Some("Standard_D2s_v5"));
    assert_eq!(p.encryption_at_host(), Some(false));
    assert_eq!(p.security_type(), Some("TrustedLaunch"));
    assert_eq!(p.availability_set(), None);
    assert_eq!(p.license_type(), Some(&json!("Windows_Server")));
    let os = v.storage_profile().os_disk().unwrap();
    assert_eq!(os.os_type(), Some("Windows"));
    assert_eq!(os.delete_option(), Some("Delete"));
    assert_eq!(os.caching(), None);
    assert!(os.encryption_settings().is_some());
    assert!(os.diff_disk_settings().is_none());
    let data: Vec<_> = v.storage_profile().data_disks().collect();
    assert_eq!(data[0].lun(), Some(2));
    assert_eq!(
        data[1].lun(),
        None,
        "a string LUN reads as absent, as before"
    );
    assert_eq!(data[1].lun_value(), Some(&json!("1")));
    assert_eq!(data[1].managed_disk_id(), None);
    assert_eq!(
        v.storage_profile().data_disk(2).unwrap().delete_option(),
        Some("Detach")
    );
    assert_eq!(
        v.attached_disk_ids(),
        vec![format!("{RG}/disks/os"), format!("{RG}/disks/d2")]
    );
    let nics: Vec<_> = p.network_interfaces().collect();
    assert_eq!(nics[0].id(), Some("/nic/a"));
    assert_eq!(nics[0].primary(), Some(&json!(true)));
    assert_eq!(nics[0].delete_option(), Some("Delete"));
    assert_eq!(nics[1].id_value(), &Value::Null);
    assert_eq!(nics[1].properties(), None);
    let ext = v.extensions().next().unwrap();
    assert_eq!(ext.publisher(), Some("Microsoft.Azure.Security"));
    assert_eq!(ext.handler_type(), Some("AzureDiskEncryption"));
    assert_eq!(ext.type_handler_version(), Some("2.2"));
    assert_eq!(ext.encryption_operation(), Some("EnableEncryption"));
    assert_eq!(ext.volume_type(), Some("All"));
    let iv = p.instance_view().unwrap();
    assert!(iv.has_statuses());
    assert_eq!(iv.power_state(), Some("running"));
    let d = iv.disks().next().unwrap();
    assert_eq!(d.name(), Some("os"));
    assert_eq!(
        d.statuses().next().unwrap().code(),
        Some("EncryptionState/encrypted")
    );
    let e = iv.extensions().next().unwrap();
    assert_eq!(e.statuses().next().unwrap().level(), Some("Info"));
    assert_eq!(e.substatuses().next().unwrap().message(), Some("{}"));
}

#[test]
fn missing_levels_read_as_absent() {
    for raw in [
        json!(null),
        json!({}),
        json!({"properties": null}),
        json!([1, 2]),
        json!("x"),
    ] {
        let v = VmModel::new(&raw);
        assert_eq!(v.properties().vm_size(), None);
        assert!(v.storage_profile().os_disk().is_none());
        assert_eq!(v.storage_profile().data_disks().count(), 0);
        assert_eq!(v.properties().network_interfaces().count(), 0);
        assert!(v.properties().instance_view().is_none());
        assert!(v.identity().is_none());
        assert_eq!(v.extensions().count(), 0);
        assert!(v.attached_disk_ids().is_empty());
        let d = DiskModel::new(&raw);
        assert_eq!(d.properties().disk_size_bytes(), None);
        assert_eq!(d.sku_name(), None);
    }
}

/// Every level the re-create and target-disk bodies read keeps what the tool
/// does not know about: the view's raw JSON at VM, `properties`,
/// `storageProfile`, `osDisk`, data disk, NIC reference, disk and disk
/// `properties` level is the input, unknown properties and `null`s included.
#[test]
fn unknown_properties_survive_at_every_level() {
    let raw = vm();
    let v = VmModel::new(&raw);
    assert_eq!(v.raw(), &raw);
    assert_eq!(v.raw()["unknownTop"], json!({"a": 1}));
    assert_eq!(v.properties().raw()["unknownProp"], json!([1]));
    let sp = v.storage_profile();
    assert_eq!(sp.raw()["unknownStorage"], "x");
    let os = sp.os_disk().unwrap();
    assert_eq!(os.raw()["unknownOs"], 1);
    assert_eq!(
        os.raw().get("caching"),
        Some(&Value::Null),
        "explicit null kept"
    );
    assert_eq!(sp.data_disks().next().unwrap().raw()["unknownData"], true);
    let nic = v.properties().network_interfaces().next().unwrap();
    assert_eq!(nic.properties().unwrap()["unknownNic"], 1);

    let disk = json!({"name": "d", "unknownDiskTop": 1, "sku": {"name": "Premium_ZRS", "tier": "Premium"},
        "tags": {"ade2eah-run": "r"},
        "properties": {"diskSizeBytes": 4096, "unknownDiskProp": {"b": 2}, "tier": "P30",
            "creationData": {"createOption": "Upload", "uploadSizeBytes": 4608},
            "encryptionSettingsCollection": {"enabled": false}, "maxShares": 3,
            "diskState": "ActiveUpload", "securityProfile": {"securityType": "TrustedLaunch"}}});
    let d = DiskModel::new(&disk);
    assert_eq!(d.raw(), &disk);
    assert_eq!(d.raw()["unknownDiskTop"], 1);
    assert_eq!(
        d.sku_value(),
        Some(&json!({"name": "Premium_ZRS", "tier": "Premium"}))
    );
    let p = d.properties();
    assert_eq!(p.raw()["unknownDiskProp"], json!({"b": 2}));
    assert_eq!(d.sku_name(), Some("Premium_ZRS"));
    assert_eq!(d.tag("ade2eah-run"), Some("r"));
    assert_eq!(p.disk_size_bytes(), Some(4096));
    assert_eq!(p.create_option(), Some("Upload"));
    assert_eq!(p.upload_size_bytes(), Some(4608));
    assert_eq!(p.ade_enabled(), Some(false));
    assert!(p.encryption_settings_collection().is_some());
    assert_eq!(p.max_shares(), Some(3));
    assert_eq!(p.disk_state(), Some("ActiveUpload"));
    assert_eq!(p.security_type(), Some("TrustedLaunch"));
}

#[test]
fn inventory_views_read_their_properties() {
    let lock = json!({"id": "/subscriptions/s/providers/Microsoft.Authorization/locks/l", "name": "l",
        "properties": {"level": "ReadOnly"}});
    let l = LockModel::new(&lock);
    assert_eq!(l.name(), Some("l"));
    assert_eq!(l.level(), Some("ReadOnly"));
    let b = json!({"protectionStatus": "Protected", "vaultId": "/v", "policyName": "p"});
    let b = BackupStatus::new(&b);
    assert_eq!(b.protection_status(), Some("Protected"));
    assert_eq!(b.vault_id(), Some("/v"));
    assert_eq!(b.policy_name(), Some("p"));
    let u = json!({"name": {"value": "PremiumDiskCount"}, "limit": 10.7, "currentValue": -1});
    let u = UsageModel::new(&u);
    assert_eq!(u.name(), Some("PremiumDiskCount"));
    assert_eq!(u.limit(), Some(10));
    assert_eq!(u.current_value(), Some(0));
}
