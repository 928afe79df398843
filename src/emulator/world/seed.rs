//! Seeding: [`World::add_vm`] creates a running VM from a [`VmSpec`] with
//! its NIC, disks (synthetic content), ADE extension and encryption state,
//! as if it had been deployed and encrypted long ago.
//!
//! Contract: the seeded random draws happen in a fixed order (name suffix,
//! each disk's content seed and unique id, the principal id, the extension's
//! sequence version, the vmId), so a seed reproduces the same world.

use super::*;
use crate::emulator::fleet::DiskSpec;

/// What every resource of one seeded VM shares.
struct Seeding<'a> {
    spec: &'a VmSpec,
    sub: String,
    rg: String,
    loc: String,
    vm_key: String,
    zones: Option<Value>,
    has_ade: bool,
    /// The ADE key vault id.
    kv: String,
    now: f64,
}

impl World {
    /// Creates a running VM with NIC, disks (synthetic content), ADE
    /// extension and encryption state from `spec`; returns its id.
    pub(crate) fn add_vm(&mut self, spec: &VmSpec, now: f64) -> ResourceId {
        let sub = spec
            .subscription
            .clone()
            .unwrap_or_else(|| self.subscription.clone());
        self.features
            .entry(sub.to_ascii_lowercase())
            .or_insert(Feature::Registered);
        let rg = spec.resource_group.clone();
        let loc = self.location.clone();
        let vm_id = ResourceId::new(
            &sub,
            &rg,
            "Microsoft.Compute",
            "virtualMachines",
            &spec.name,
        );
        let vm_key = key_of(vm_id.as_str());
        let del = spec.delete_option.as_str();
        let kv = format!(
            "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.KeyVault/vaults/kv-ade-{}",
            rg.trim_start_matches("rg-")
        );
        let has_ade = spec.ade != AdeSpec::None;
        let (os_enc, data_enc) = match spec.ade {
            AdeSpec::None => (false, false),
            AdeSpec::WindowsOs => (true, false),
            AdeSpec::WindowsAll | AdeSpec::LinuxOsAndData => (true, true),
            AdeSpec::LinuxData => (false, true),
        };
        let at = Seeding {
            spec,
            sub,
            rg,
            loc,
            vm_key: vm_key.clone(),
            zones: spec.zone.as_ref().map(|z| json!([z])),
            has_ade,
            kv,
            now,
        };
        let suffix = format!(
            "{:032x}",
            (self.rng.next_u64() as u128) << 64 | self.rng.next_u64() as u128
        );
        let os_name = format!("{}_OsDisk_1_{suffix}", spec.name);
        let os_id = self.seed_disk(&at, os_name.clone(), &spec.os_disk, true, os_enc);
        let mut data = Vec::new();
        let mut next_lun = 0;
        for ds in &spec.data_disks {
            let lun = ds.lun.unwrap_or(next_lun);
            next_lun = lun + 1;
            let name = format!("{}_DataDisk_{lun}", spec.name);
            let id = self.seed_disk(&at, name.clone(), ds, false, data_enc);
            data.push(json!({
                "lun": lun, "name": name, "createOption": "Attach", "caching": "ReadOnly",
                "writeAcceleratorEnabled": false, "managedDisk": {"id": id, "storageAccountType": ds.sku},
                "deleteOption": del, "diskSizeGB": ds.size_gib, "toBeDetached": false,
            }));
        }
        let nic_id = self.seed_nic(&at);
        let mut model = seed_model(&at, &os_name, &os_id, data, &nic_id);
        let principal_id = if spec.system_identity {
            model["identity"] = json!({"type": "SystemAssigned"});
            Some(self.rng.uuid())
        } else {
            None
        };
        if spec.model.is_object() {
            super::vm::merge(&mut model, spec.model.clone());
        }
        let extensions = self.seed_extensions(&at, &vm_id);
        let vm = Vm {
            id: vm_id.to_string(),
            name: spec.name.clone(),
            rg: at.rg.clone(),
            model,
            vm_id: self.rng.uuid(),
            principal_id,
            provisioning: "Succeeded".into(),
            power: Power::Running,
            ever_ade: has_ade,
            extensions,
            ade: has_ade.then_some(AdeGuest::Encrypted),
            busy: None,
            deleting: false,
            time_created: now,
        };
        self.offline.insert(vm_key.clone(), 0.0);
        if spec.churn_bytes_per_sec > 0.0 {
            self.churn.insert(
                vm_key.clone(),
                (spec.churn_bytes_per_sec, 0.0, vm.vm_id.clone()),
            );
        }
        let principal = vm.principal_id.clone();
        self.vms.insert(vm_key, vm);
        if let Some(p) = principal {
            let fill = |s: &str| s.replace("{subscription}", &at.sub);
            for (role, scope) in &spec.role_assignments {
                self.seed_role_assignment(&fill(scope), &fill(role), &p, now);
            }
        }
        vm_id
    }

    /// A disk of the seeded VM (attached, synthetic content, ADE state);
    /// returns its id.
    fn seed_disk(
        &mut self,
        at: &Seeding<'_>,
        name: String,
        ds: &DiskSpec,
        os: bool,
        enc: bool,
    ) -> String {
        let spec = at.spec;
        let has_ade = at.has_ade;
        let id = ResourceId::new(&at.sub, &at.rg, "Microsoft.Compute", "disks", &name);
        let size = ds.size_gib.max(1) * GIB;
        let seed = self.rng.next_u64();
        let blob =
            self.blobs
                .create_source(size + 512, ds.allocated_fraction.clamp(0.0, 1.0), seed);
        let unique_id = self.rng.uuid();
        let d = Disk {
            id: id.to_string(),
            name,
            rg: at.rg.clone(),
            location: at.loc.clone(),
            // A zone-redundant disk has no zone (facts §11).
            zones: at
                .zones
                .clone()
                .filter(|_| !crate::model::usage::is_zone_redundant(&ds.sku)),
            sku: ds.sku.clone(),
            tags: ds.tags.clone(),
            size_bytes: size,
            blob: Some(blob),
            create_option: if os {
                "FromImage".into()
            } else {
                "Empty".into()
            },
            upload_size: None,
            source_id: None,
            source_unique: None,
            os_type: os.then(|| spec.os.as_str().to_string()),
            hyper_v: os.then(|| spec.hyper_v_generation.clone()),
            security: (os && spec.trusted_launch).then(|| json!({"securityType": "TrustedLaunch"})),
            purchase_plan: None,
            incremental: None,
            unique_id,
            time_created: at.now,
            managed_by: Some(at.vm_key.clone()),
            access: None,
            upload: None,
            provisioning: "Succeeded".into(),
            ever_ade: has_ade,
            ade_enabled: has_ade && enc,
            guest_encrypted: has_ade && enc,
            encryption: None,
            key_vault: has_ade.then(|| at.kv.clone()),
            snapshot: false,
            stored: ds.properties.as_object().cloned().unwrap_or_default(),
        };
        let key = key_of(&d.id);
        self.disks.insert(key, d);
        id.to_string()
    }

    /// The NIC of the seeded VM; returns its id.
    fn seed_nic(&mut self, at: &Seeding<'_>) -> String {
        let nic_name = format!("{}-nic", at.spec.name);
        let nic_id = ResourceId::new(
            &at.sub,
            &at.rg,
            "Microsoft.Network",
            "networkInterfaces",
            &nic_name,
        )
        .to_string();
        let n = self.nics.len();
        let subnet = format!(
            "{}/providers/Microsoft.Network/virtualNetworks/vnet-emu/subnets/default",
            self.rg_id("rg-network")
        );
        self.nics.insert(
            key_of(&nic_id),
            Nic {
                id: nic_id.clone(),
                name: nic_name,
                location: at.loc.clone(),
                vm: Some(at.vm_key.clone()),
                ip: format!("10.0.{}.{}", n / 250, 4 + n % 250),
                subnet,
                tags: Value::Null,
                provisioning: "Succeeded".into(),
            },
        );
        nic_id
    }

    /// The ADE extension of the seeded VM (none without ADE), keyed by
    /// lower-case name.
    fn seed_extensions(&mut self, at: &Seeding<'_>, vm_id: &ResourceId) -> BTreeMap<String, Ext> {
        let spec = at.spec;
        let mut extensions = BTreeMap::new();
        if at.has_ade {
            let (etype, ver) = match spec.os {
                OsKind::Windows => (ADE_WIN, "2.2"),
                OsKind::Linux => (ADE_LINUX, "1.1"),
            };
            let name = spec
                .custom_extension_name
                .clone()
                .unwrap_or_else(|| etype.to_string());
            let vt = match spec.ade {
                AdeSpec::WindowsOs => "OS",
                AdeSpec::LinuxData => "Data",
                _ => "All",
            };
            let kv = &at.kv;
            let kv_name = kv.rsplit('/').next().unwrap_or("kv").to_string();
            let ext = Ext {
                id: format!("{}/extensions/{name}", vm_id),
                name: name.clone(),
                location: at.loc.clone(),
                props: json!({
                    "publisher": ADE_PUBLISHER, "type": etype, "typeHandlerVersion": ver, "autoUpgradeMinorVersion": true,
                    "settings": {
                        "EncryptionOperation": "EnableEncryption", "KeyVaultURL": format!("https://{kv_name}.vault.azure.net/"),
                        "KeyVaultResourceId": kv, "KeyEncryptionAlgorithm": "RSA-OAEP", "VolumeType": vt,
                        "SequenceVersion": self.rng.uuid(),
                    },
                }),
                provisioning: "Succeeded".into(),
                error: None,
                tags: None,
            };
            extensions.insert(name.to_ascii_lowercase(), ext);
        }
        for body in &spec.extensions {
            let Some(name) = body.get("name").and_then(Value::as_str) else {
                continue;
            };
            let mut props = body.get("properties").cloned().unwrap_or(json!({}));
            if let Some(m) = props.as_object_mut() {
                // Accepted at deployment, never stored where a GET returns it.
                m.remove("protectedSettings");
                m.remove("provisioningState");
            }
            let ext = Ext {
                id: format!("{vm_id}/extensions/{name}"),
                name: name.to_string(),
                location: at.loc.clone(),
                props,
                provisioning: "Succeeded".into(),
                error: None,
                tags: body.get("tags").filter(|t| !t.is_null()).cloned(),
            };
            extensions.insert(name.to_ascii_lowercase(), ext);
        }
        extensions
    }
}

/// The stored model of the seeded VM: a marketplace image's OS profile,
/// the disks and NIC, Trusted Launch and license as the spec says.
fn seed_model(
    at: &Seeding<'_>,
    os_name: &str,
    os_id: &str,
    data: Vec<Value>,
    nic_id: &str,
) -> Value {
    let spec = at.spec;
    let del = spec.delete_option.as_str();
    let tl = spec.trusted_launch;
    let (publisher, offer, sku_name, version) = match spec.os {
        OsKind::Windows => (
            "MicrosoftWindowsServer",
            "WindowsServer",
            "2022-datacenter-azure-edition",
            "latest",
        ),
        OsKind::Linux => (
            "Canonical",
            "0001-com-ubuntu-server-jammy",
            "22_04-lts-gen2",
            "latest",
        ),
    };
    let mut os_profile = json!({"computerName": spec.name, "adminUsername": "azureuser", "secrets": [], "allowExtensionOperations": true, "requireGuestProvisionSignal": true});
    match spec.os {
        OsKind::Windows => {
            os_profile["windowsConfiguration"] =
                json!({"provisionVMAgent": true, "enableAutomaticUpdates": true})
        }
        OsKind::Linux => {
            // Password sign-in off implies SSH keys: a VM GET returns them
            // (REST docs, LinuxConfiguration.ssh.publicKeys), never a password.
            os_profile["linuxConfiguration"] = json!({"disablePasswordAuthentication": true, "provisionVMAgent": true,
                "ssh": {"publicKeys": [{"path": "/home/azureuser/.ssh/authorized_keys",
                                        "keyData": format!("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEmulator {}", spec.name)}]}})
        }
    }
    let mut security = json!({});
    if tl {
        security = json!({"securityType": "TrustedLaunch", "uefiSettings": {"secureBootEnabled": true, "vTpmEnabled": true}});
    }
    let mut props = json!({
        "hardwareProfile": {"vmSize": spec.size},
        "storageProfile": {
            "imageReference": {"publisher": publisher, "offer": offer, "sku": sku_name, "version": version, "exactVersion": "20348.2582.240703"},
            "osDisk": {
                "osType": spec.os.as_str(), "name": os_name, "createOption": "FromImage", "caching": "ReadWrite",
                "managedDisk": {"id": os_id, "storageAccountType": spec.os_disk.sku}, "deleteOption": del, "diskSizeGB": spec.os_disk.size_gib,
            },
            "dataDisks": data,
            "diskControllerType": "SCSI",
        },
        "osProfile": os_profile,
        "networkProfile": {"networkInterfaces": [{"id": nic_id, "properties": {"primary": true, "deleteOption": del}}]},
        "diagnosticsProfile": {"bootDiagnostics": {"enabled": true}},
    });
    if tl {
        props["securityProfile"] = security;
    }
    if let Some(l) = &spec.license_type {
        props["licenseType"] = json!(l);
    }
    let mut model = json!({"location": at.loc, "tags": spec.tags, "properties": props});
    if let Some(z) = &at.zones {
        model["zones"] = z.clone();
    }
    model
}
