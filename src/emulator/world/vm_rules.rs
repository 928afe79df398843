//! The platform rules a VM `PUT`/`PATCH` must pass: the create shape,
//! the model (size, disks, NICs, zone, security type, plan, Hyper-V
//! generation) and encryption at host (feature, size, ever-ADE disks,
//! deallocation).

use super::*;

/// Disk and NIC ids referenced by a model.
pub(super) struct Checked {
    pub(super) disks: Vec<String>,
    pub(super) nics: Vec<String>,
}

impl World {
    /// Encryption at host requested by `model` for VM `key` (an update
    /// passes the existing VM): the feature registered for the subscription,
    /// a size that supports it, no disk ever encrypted with ADE, and a
    /// change of the setting only on a deallocated VM.
    pub(super) fn check_eah(
        &self,
        key: &str,
        model: &Value,
        existing: Option<&Vm>,
        ever_ade: bool,
    ) -> Result<(), ArmError> {
        let want = eah_of(model);
        let had = existing.is_some_and(Vm::eah);
        if !want || (existing.is_some() && had) {
            if let Some(vm) = existing
                && want != had
                && vm.power != Power::Deallocated
            {
                return Err(ArmError::conflict(
                    "'securityProfile.encryptionAtHost' can be updated only when VM is in deallocated state",
                ));
            }
            return Ok(());
        }
        if !matches!(self.features.get(sub_of(key)), Some(Feature::Registered)) {
            return Err(ArmError::bad_request(
                "InvalidParameter",
                "The property 'securityProfile.encryptionAtHost' is not valid because the 'Microsoft.Compute/EncryptionAtHost' feature is not enabled for this subscription.",
            )
            .with_target("securityProfile.encryptionAtHost"));
        }
        let size = model
            .pointer("/properties/hardwareProfile/vmSize")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if sku(size).is_some_and(|s| !s.eah) {
            return Err(ArmError::bad_request(
                "BadRequest",
                format!("Encryption at host is not supported for the VM size '{size}'. Use a size with the capability 'EncryptionAtHostSupported'."),
            )
            .with_target("securityProfile.encryptionAtHost"));
        }
        if ever_ade {
            let status = self.eah_refusal_status;
            let code = if status == 409 {
                "OperationNotAllowed"
            } else {
                "BadRequest"
            };
            return Err(ArmError::new(
                status,
                code,
                "Encryption at host is not allowed for a VM having disks that were encrypted with Azure Disk Encryption",
            ));
        }
        if let Some(vm) = existing
            && vm.power != Power::Deallocated
        {
            return Err(ArmError::conflict(
                "'securityProfile.encryptionAtHost' can be updated only when VM is in deallocated state",
            ));
        }
        Ok(())
    }

    /// Validates disks, NICs, size, zone, security type and plan of a model
    /// for VM `key` (an update passes the existing VM).
    pub(super) fn check_model(
        &self,
        key: &str,
        model: &Value,
        existing: Option<&Vm>,
    ) -> Result<Checked, ArmError> {
        let props = model.get("properties").cloned().unwrap_or(Value::Null);
        let (size, s) = self.check_size(&props)?;
        let vm_zone = zone_of(model);
        self.check_size_zone(size, vm_zone.as_deref())?;
        let vm_tl = props
            .pointer("/securityProfile/securityType")
            .and_then(Value::as_str)
            .is_some_and(|s| s.eq_ignore_ascii_case("TrustedLaunch"));
        let entries = disk_entries(&props)?;
        let mut disks = Vec::new();
        for (entry, is_os) in entries {
            let Some(id) = entry.pointer("/managedDisk/id").and_then(Value::as_str) else {
                return Err(ArmError::bad_request(
                    "InvalidParameter",
                    "Only managed disks (managedDisk.id) are supported.",
                )
                .with_target("managedDisk.id"));
            };
            let dk = key_of(id);
            if disks.contains(&dk) {
                return Err(ArmError::bad_request(
                    "InvalidParameter",
                    format!("Disk '{id}' is specified more than once."),
                ));
            }
            let Some(d) = self.disks.get(&dk) else {
                return Err(not_found_id(id));
            };
            self.check_attachable(key, d, &vm_zone)?;
            if is_os {
                check_os_disk(d, model, existing.is_some(), size, s, vm_tl)?;
            }
            disks.push(dk);
        }
        let nics = self.check_nics(key, &props)?;
        Ok(Checked { disks, nics })
    }

    /// The VM size of a model's properties: present, known and available here.
    pub(super) fn check_size<'a>(
        &self,
        props: &'a Value,
    ) -> Result<(&'a str, &'static Sku), ArmError> {
        let size = props
            .pointer("/hardwareProfile/vmSize")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if size.is_empty() {
            return Err(ArmError::bad_request(
                "InvalidParameter",
                "Required parameter 'hardwareProfile.vmSize' is missing (null).",
            )
            .with_target("hardwareProfile.vmSize"));
        }
        let Some(s) = sku(size) else {
            return Err(ArmError::bad_request(
                "InvalidParameter",
                format!("The value {size} provided for the VM size is not valid."),
            )
            .with_target("vmSize"));
        };
        if s.restricted {
            return Err(ArmError::new(
                409,
                "SkuNotAvailable",
                format!(
                    "The requested VM size for resource 'Following SKUs have failed for Capacity Restrictions: {size}' is currently not available in location '{}'. Please try another size or deploy to a different location or different zone. See https://aka.ms/azureskunotavailable for details.",
                    self.location
                ),
            ));
        }
        Ok((size, s))
    }

    /// Disk `d` can be attached to VM `key`: not owned by another VM; if
    /// free, provisioned, not in an upload or SAS state, and in the VM's zone.
    pub(super) fn check_attachable(
        &self,
        key: &str,
        d: &Disk,
        vm_zone: &Option<String>,
    ) -> Result<(), ArmError> {
        match &d.managed_by {
            Some(owner) if owner != key => {
                let owner_id = self
                    .vms
                    .get(owner)
                    .map(|v| v.id.clone())
                    .unwrap_or_else(|| owner.clone());
                return Err(ArmError::new(
                    409,
                    "ConflictingUserInput",
                    format!(
                        "Disk '{}' cannot be attached as the disk is already owned by VM '{owner_id}'.",
                        d.name
                    ),
                ));
            }
            Some(_) => {}
            None => {
                if d.provisioning != "Succeeded" {
                    return Err(ArmError::conflict(format!(
                        "Disk '{}' cannot be attached while its provisioning state is '{}'.",
                        d.name, d.provisioning
                    )));
                }
                let state = self.disk_state(d);
                if matches!(state, "ActiveSAS" | "ActiveUpload" | "ReadyToUpload") {
                    return Err(ArmError::conflict(format!(
                        "Disk '{}' cannot be attached to a VM because it is in state '{state}'. Finish the upload and call endGetAccess on the disk first.",
                        d.name
                    )));
                }
                let dz = d
                    .zones
                    .as_ref()
                    .and_then(|z| z.get(0))
                    .and_then(Value::as_str)
                    .map(str::to_string);
                // A zone-redundant disk has no zone and attaches to a VM in
                // any zone (facts §11).
                let zrs = crate::model::usage::is_zone_redundant(&d.sku);
                if dz != *vm_zone && !zrs {
                    return Err(ArmError::bad_request(
                        "BadRequest",
                        format!(
                            "Disk {} cannot be attached to the VM because it is not in the same zone as the VM. VM zone: '{}'. Disk zone: '{}'.",
                            d.id,
                            vm_zone.clone().unwrap_or_default(),
                            dz.unwrap_or_default()
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The NICs of a model's properties: at least one, each existing and
    /// neither used by another VM nor reserved for one (nic.rs).
    pub(super) fn check_nics(&self, key: &str, props: &Value) -> Result<Vec<String>, ArmError> {
        let mut nics = Vec::new();
        let list = props
            .pointer("/networkProfile/networkInterfaces")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if list.is_empty() {
            return Err(ArmError::bad_request(
                "InvalidParameter",
                "At least one network interface is required (networkProfile.networkInterfaces).",
            )
            .with_target("networkProfile"));
        }
        for n in list {
            let Some(id) = n.get("id").and_then(Value::as_str) else {
                return Err(ArmError::bad_request(
                    "InvalidParameter",
                    "Network interface id is missing.",
                )
                .with_target("networkInterfaces.id"));
            };
            let nk = key_of(id);
            let Some(nic) = self.nics.get(&nk) else {
                return Err(not_found_id(id));
            };
            if let Some(owner) = &nic.vm {
                if owner != key {
                    let owner_id = self
                        .vms
                        .get(owner)
                        .map(|v| v.id.clone())
                        .unwrap_or_else(|| owner.clone());
                    return Err(ArmError::bad_request(
                        "NicInUse",
                        format!(
                            "Network interface {} is used by existing VM {owner_id}.",
                            nic.id
                        ),
                    ));
                }
            } else if let Some(e) = self.nic_reserved_refusal(&nk) {
                return Err(e);
            }
            nics.push(nk);
        }
        Ok(nics)
    }
}

/// The shape of a VM create: attach an existing OS disk (`createOption:
/// Attach`, `osType` set, no image or osProfile; facts §5.2), or create one
/// from an image (`createOption: FromImage` with `imageReference` and an
/// `osProfile`; REST docs "Virtual Machines - Create Or Update",
/// `StorageProfile.osDisk.createOption`: "FromImage ... you also use the
/// imageReference element"; a Linux profile needs SSH keys or a password:
/// "Authentication using either SSH or by user name and password must be
/// enabled in Linux profile."). Returns true for FromImage.
pub(super) fn check_create_shape(model: &Value) -> Result<bool, ArmError> {
    let os_disk = model
        .pointer("/properties/storageProfile/osDisk")
        .cloned()
        .unwrap_or(Value::Null);
    if os_disk.is_null() {
        return Err(ArmError::bad_request(
            "InvalidParameter",
            "Required parameter 'osDisk' is missing (null).",
        )
        .with_target("osDisk"));
    }
    let option = os_disk
        .get("createOption")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_ascii_lowercase();
    let image = model
        .pointer("/properties/storageProfile/imageReference")
        .is_some_and(|v| !v.is_null());
    let profile = model
        .pointer("/properties/osProfile")
        .filter(|v| !v.is_null());
    if option == "fromimage" {
        if !image {
            return Err(ArmError::bad_request(
                "InvalidParameter",
                "Required parameter 'imageReference' is missing (null).",
            )
            .with_target("imageReference"));
        }
        let Some(p) = profile else {
            return Err(ArmError::bad_request(
                "InvalidParameter",
                "Required parameter 'osProfile' is missing (null).",
            )
            .with_target("osProfile"));
        };
        if p.get("adminUsername").and_then(Value::as_str).is_none() {
            return Err(ArmError::bad_request(
                "InvalidParameter",
                "Required parameter 'adminUsername' is missing (null).",
            )
            .with_target("adminUsername"));
        }
        let keys = p
            .pointer("/linuxConfiguration/ssh/publicKeys")
            .and_then(Value::as_array)
            .is_some_and(|k| !k.is_empty());
        let password = p.get("adminPassword").and_then(Value::as_str).is_some();
        let no_password = p
            .pointer("/linuxConfiguration/disablePasswordAuthentication")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if !keys && (!password || no_password) {
            return Err(ArmError::bad_request(
                "InvalidParameter",
                "Authentication using either SSH or by user name and password must be enabled in Linux profile.",
            )
            .with_target("linuxConfiguration"));
        }
        if os_disk
            .pointer("/managedDisk/id")
            .is_some_and(|v| !v.is_null())
        {
            return Err(ArmError::bad_request(
                "InvalidParameter",
                "Cannot attach an existing OS disk if the VM is created from a platform or user image.",
            ));
        }
        return Ok(true);
    }
    if option != "attach" {
        return Err(ArmError::bad_request(
            "InvalidParameter",
            "The emulator creates VMs from existing managed disks (osDisk.createOption 'Attach') or from an image ('FromImage').",
        )
        .with_target("osDisk.createOption"));
    }
    if image || profile.is_some() {
        return Err(ArmError::bad_request(
            "InvalidParameter",
            "Cannot attach an existing OS disk if the VM is created from a platform or user image.",
        ));
    }
    if os_disk.get("osType").and_then(Value::as_str).is_none() {
        return Err(ArmError::bad_request(
            "InvalidParameter",
            "Required parameter 'osDisk.osType' is missing (null).",
        )
        .with_target("osDisk.osType"));
    }
    Ok(false)
}

/// The disk entries of a model's properties, OS disk first, as
/// (entry, is the OS disk); LUNs must be present and distinct.
fn disk_entries(props: &Value) -> Result<Vec<(Value, bool)>, ArmError> {
    let mut luns = BTreeSet::new();
    let mut entries: Vec<(Value, bool)> = Vec::new();
    if let Some(os) = props.pointer("/storageProfile/osDisk") {
        entries.push((os.clone(), true));
    }
    for d in props
        .pointer("/storageProfile/dataDisks")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let lun = d.get("lun").and_then(Value::as_i64).ok_or_else(|| {
            ArmError::bad_request(
                "InvalidParameter",
                "Required parameter 'dataDisk.lun' is missing (null).",
            )
            .with_target("dataDisk.lun")
        })?;
        if !luns.insert(lun) {
            return Err(ArmError::bad_request(
                "InvalidParameter",
                format!("A disk at LUN {lun} already exists."),
            )
            .with_target("dataDisks"));
        }
        entries.push((d.clone(), false));
    }
    Ok(entries)
}

/// The OS disk `d` fits the VM model: security type, marketplace plan (a
/// plan is refused on create of a non-marketplace disk) and Hyper-V generation.
fn check_os_disk(
    d: &Disk,
    model: &Value,
    update: bool,
    size: &str,
    s: &Sku,
    vm_tl: bool,
) -> Result<(), ArmError> {
    let disk_tl = d
        .security
        .as_ref()
        .and_then(|s| s.get("securityType"))
        .and_then(Value::as_str)
        .is_some_and(|s| s.to_ascii_lowercase().contains("trustedlaunch"));
    if disk_tl != vm_tl {
        return Err(ArmError::bad_request(
            "BadRequest",
            "Security type of VM is not compatible with the security type of attached OS Disk.",
        ));
    }
    let plan = model.get("plan").is_some_and(|p| !p.is_null());
    if d.purchase_plan.is_some() && !plan {
        return Err(ArmError::bad_request(
            "VMMarketplaceInvalidInput",
            format!(
                "Creating a virtual machine from Marketplace image requires Plan information in the request. OS disk name is {}.",
                d.name
            ),
        ));
    }
    if d.purchase_plan.is_none() && plan && !update {
        return Err(ArmError::bad_request(
            "VMMarketplaceInvalidInput",
            format!(
                "Creating a virtual machine from a non Marketplace image does not need Plan information, please remove the Plan information in the request. OS disk name is {}.",
                d.name
            ),
        ));
    }
    if d.hyper_v
        .as_deref()
        .is_some_and(|g| g.eq_ignore_ascii_case("V2"))
        && !s.hyperv.contains("V2")
    {
        return Err(ArmError::bad_request(
            "BadRequest",
            format!(
                "The selected VM size '{size}' cannot boot Hypervisor Generation '2'. If this was a Create operation please check that the Hypervisor Generation of the Image matches the Hypervisor Generation of the selected VM Size."
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn from_image(linux: Value, password: Option<&str>) -> Value {
        let mut profile = json!({"adminUsername": "u", "linuxConfiguration": linux});
        if let Some(p) = password {
            profile["adminPassword"] = json!(p);
        }
        json!({"properties": {"storageProfile": {
            "imageReference": {"publisher": "p", "offer": "o", "sku": "s", "version": "latest"},
            "osDisk": {"createOption": "FromImage"}}, "osProfile": profile}})
    }

    #[test]
    fn from_image_needs_an_image_a_user_and_a_credential() {
        let keys = json!({"disablePasswordAuthentication": true,
                          "ssh": {"publicKeys": [{"path": "/home/u/.ssh/authorized_keys", "keyData": "ssh-ed25519 A"}]}});
        assert!(check_create_shape(&from_image(keys, None)).unwrap());
        assert!(check_create_shape(&from_image(json!({}), Some("pw"))).unwrap());
        let e = check_create_shape(&from_image(
            json!({"disablePasswordAuthentication": true}),
            Some("pw"),
        ))
        .unwrap_err();
        assert!(
            e.message.contains("Authentication using either SSH"),
            "{}",
            e.message
        );
        let mut no_image = from_image(json!({}), Some("pw"));
        no_image["properties"]["storageProfile"]["imageReference"] = Value::Null;
        assert!(
            check_create_shape(&no_image)
                .unwrap_err()
                .message
                .contains("imageReference")
        );
        let mut attached = from_image(json!({}), Some("pw"));
        attached["properties"]["storageProfile"]["osDisk"]["managedDisk"] = json!({"id": "/x"});
        assert!(
            check_create_shape(&attached)
                .unwrap_err()
                .message
                .contains("Cannot attach")
        );
    }
}
