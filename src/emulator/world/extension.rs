//! VM extensions: `GET`/`PUT`/`DELETE`, the ADE extension's guest
//! behaviour when a PUT completes (enable, disable, the Linux refusal), and
//! the undo of a failed PUT or DELETE.

use super::*;

impl Ext {
    pub(super) fn publisher(&self) -> &str {
        self.props
            .get("publisher")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }
    pub(super) fn etype(&self) -> &str {
        self.props
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }
    /// `publisher.type`, lower case (the key of a seeded failure).
    pub(super) fn handler_key(&self) -> String {
        format!("{}.{}", self.publisher(), self.etype()).to_ascii_lowercase()
    }
    pub(super) fn is_ade(&self) -> bool {
        self.publisher().eq_ignore_ascii_case(ADE_PUBLISHER)
            && (self.etype().eq_ignore_ascii_case(ADE_WIN)
                || self.etype().eq_ignore_ascii_case(ADE_LINUX))
    }
    pub(super) fn operation(&self) -> String {
        self.props
            .pointer("/settings/EncryptionOperation")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_ascii_lowercase()
    }
    pub(super) fn volume_type(&self) -> String {
        self.props
            .pointer("/settings/VolumeType")
            .and_then(Value::as_str)
            .unwrap_or("All")
            .to_ascii_lowercase()
    }
    pub(super) fn body(&self) -> Value {
        let mut props = self.props.clone();
        props["provisioningState"] = json!(self.provisioning);
        let mut b = json!({
            "id": self.id, "name": self.name, "type": "Microsoft.Compute/virtualMachines/extensions",
            "location": self.location, "properties": props,
        });
        if let Some(t) = &self.tags {
            b["tags"] = t.clone();
        }
        b
    }
}

impl World {
    /// Makes every later PUT of extensions of `publisher`/`etype` fail in the
    /// guest with `message` (`None` clears it): the operation fails with
    /// `VMExtensionProvisioningError` and the extension stays, `Failed`, its
    /// instance view status carrying the message, as Azure leaves an
    /// extension whose handler failed (facts §7.3, the Linux ADE refusal).
    pub(crate) fn set_extension_failure(
        &mut self,
        publisher: &str,
        etype: &str,
        message: Option<String>,
    ) {
        let key = format!("{publisher}.{etype}").to_ascii_lowercase();
        match message {
            Some(m) => self.ext_failures.insert(key, m),
            None => self.ext_failures.remove(&key),
        };
    }

    /// `GET .../extensions/{name}`.
    pub(crate) fn ext_get(&self, vm: &Target, name: &str) -> Result<Value, ArmError> {
        let v = self.vm(vm)?;
        v.extensions
            .get(&name.to_ascii_lowercase())
            .map(Ext::body)
            .ok_or_else(|| {
                not_found(
                    &format!("Microsoft.Compute/virtualMachines/{}/extensions", v.name),
                    name,
                    &vm.rg,
                )
            })
    }

    /// `GET .../extensions` (VirtualMachineExtensions_List): `{"value": [...]}`
    /// (VirtualMachineExtensionsListResult, one page, no `nextLink`), each item
    /// as [`World::ext_get`] answers it; with `$expand=instanceView` each item
    /// carries `properties.instanceView` (name, type, typeHandlerVersion,
    /// statuses), the VM instance view's entry for that extension. A missing
    /// VM is 404 `ResourceNotFound` for the VM, as for a single extension.
    /// Source: Azure/azure-rest-api-specs
    /// `specification/compute/resource-manager/Microsoft.Compute/ComputeRP/stable/2024-11-01/virtualMachine.json`
    /// (operationId `VirtualMachineExtensions_List`, optional `$expand`) and
    /// its example `VirtualMachineExtension_List_MaximumSet_Gen.json`
    /// [CONFIRMED]; the 404 code for an absent VM is [INFERRED] from the
    /// single-extension GET.
    pub(crate) fn ext_list(&self, vm: &Target, expand: bool) -> Result<Value, ArmError> {
        let v = self.vm(vm)?;
        let views: Vec<Value> = if expand {
            self.instance_view(v)["extensions"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        let value: Vec<Value> = v
            .extensions
            .values()
            .map(|x| {
                let mut body = x.body();
                if let Some(iv) = views.iter().find(|iv| iv["name"] == json!(x.name)) {
                    body["properties"]["instanceView"] = iv.clone();
                }
                body
            })
            .collect();
        Ok(json!({ "value": value }))
    }

    /// `PUT .../extensions/{name}`.
    pub(crate) fn ext_put(
        &mut self,
        vmt: &Target,
        name: &str,
        body: Value,
        inject: bool,
        now: f64,
    ) -> Result<Reply, ArmError> {
        let key = vmt.key();
        let vm = self.vm(vmt)?;
        self.vm_gate(vm, "extensionCreateOrUpdate")?;
        if vm.power != Power::Running {
            return Err(ArmError::conflict(
                "Cannot modify extensions in the VM when the VM is not running.",
            ));
        }
        let Some(props) = body.get("properties").filter(|p| p.is_object()).cloned() else {
            return Err(ArmError::bad_request(
                "InvalidParameter",
                "Required parameter 'properties' is missing (null).",
            )
            .with_target("properties"));
        };
        let mut props = props;
        if let Some(m) = props.as_object_mut() {
            m.remove("provisioningState");
            // Protected settings are accepted and never returned: they are
            // encrypted for the guest only (Compute spec 2024-11-01,
            // VirtualMachineExtensionProperties.protectedSettings; Microsoft
            // docs "Custom Script Extension for Windows": protected settings
            // "are encrypted and decrypted only on the target virtual
            // machine"; `az vm extension show` never shows them). Any
            // publisher and type is accepted (the handler is fetched by the
            // guest agent, not validated by ARM at PUT time).
            m.remove("protectedSettings");
            m.remove("instanceView");
        }
        let ext = Ext {
            id: format!("{}/extensions/{name}", vm.id),
            name: name.to_string(),
            location: body
                .get("location")
                .and_then(Value::as_str)
                .unwrap_or(&self.location)
                .to_string(),
            props,
            provisioning: String::new(),
            error: None,
            tags: body.get("tags").filter(|t| !t.is_null()).cloned(),
        };
        if ext.publisher().is_empty() || ext.etype().is_empty() {
            return Err(ArmError::bad_request(
                "InvalidParameter",
                "Required parameters 'publisher' and 'type' are missing.",
            )
            .with_target("properties.type"));
        }
        let lname = name.to_ascii_lowercase();
        if ext.is_ade()
            && vm.os() == OsKind::Windows
            && let Some(other) = vm
                .extensions
                .values()
                .find(|x| x.is_ade() && !x.name.eq_ignore_ascii_case(name))
        {
            let _ = other;
            return Err(ArmError::bad_request(
                "BadRequest",
                format!(
                    "Multiple VMExtensions per handler not supported for OS type 'Windows'. VMExtension '{name}' with handler 'Microsoft.Azure.Security.AzureDiskEncryption' already added or specified in input."
                ),
            ));
        }
        let prev = vm.extensions.get(&lname).cloned();
        let existed = prev.is_some();
        let mut ext = ext;
        if let Some(p) = &prev {
            ext.name = p.name.clone();
            ext.id = p.id.clone();
        }
        ext.provisioning = if existed {
            "Updating".into()
        } else {
            "Creating".into()
        };
        let body = ext.body();
        let dur = self.draw(self.durations.ext_put);
        let effect = Effect::ExtPut {
            vm: key.clone(),
            name: lname.clone(),
            prev,
        };
        let mut lro = self.new_op(
            now,
            OpFamily::Compute,
            dur,
            effect,
            inject,
            Final::Resource(ResourceKind::Extension, format!("{key}/extensions/{lname}")),
        );
        lro.location = false;
        let vm = self.vms.get_mut(&key).expect("exists");
        vm.extensions.insert(lname, ext);
        vm.busy = Some(lro.id.clone());
        Ok(Reply {
            status: if existed { 200 } else { 201 },
            body: Some(body),
            lro: Some(lro),
        })
    }

    /// `DELETE .../extensions/{name}`.
    pub(crate) fn ext_delete(
        &mut self,
        vmt: &Target,
        name: &str,
        inject: bool,
        now: f64,
    ) -> Result<Reply, ArmError> {
        let key = vmt.key();
        let lname = name.to_ascii_lowercase();
        let Some(vm) = self.vms.get(&key) else {
            return Ok(Reply::no_content());
        };
        let Some(ext) = vm.extensions.get(&lname) else {
            return Ok(Reply::no_content());
        };
        self.vm_gate(vm, "extensionDelete")?;
        if vm.power != Power::Running {
            return Err(ArmError::conflict(
                "Cannot modify extensions in the VM when the VM is not running.",
            ));
        }
        if ext.is_ade() && matches!(vm.ade, Some(AdeGuest::Decrypting { .. })) {
            return Err(ArmError::conflict(format!(
                "Cannot delete extension '{}' while Azure Disk Encryption is decrypting the VM's volumes (DecryptionInProgress). Wait until the extension reports that decryption completed.",
                ext.name
            )));
        }
        let dur = self.draw(self.durations.ext_delete);
        let lro = self.new_op(
            now,
            OpFamily::Compute,
            dur,
            Effect::ExtDelete {
                vm: key.clone(),
                name: lname.clone(),
            },
            inject,
            Final::NoContent,
        );
        let vm = self.vms.get_mut(&key).expect("exists");
        if let Some(x) = vm.extensions.get_mut(&lname) {
            x.provisioning = "Deleting".into();
        }
        vm.busy = Some(lro.id.clone());
        Ok(Reply::accepted(lro))
    }

    /// `ExtPut` done: a non-ADE extension just succeeds; the ADE extension
    /// runs its `EncryptionOperation` in the guest (disable: decrypt, or the
    /// Linux refusal while the OS volume is encrypted; enable: encrypt).
    pub(super) fn apply_ext_put(
        &mut self,
        vm_key: &str,
        name: &str,
    ) -> Result<Option<Value>, ArmError> {
        self.free_vm(vm_key);
        let Some(vm) = self.vms.get(vm_key) else {
            return Ok(None);
        };
        let Some(ext) = vm.extensions.get(name) else {
            return Ok(None);
        };
        if !ext.is_ade() {
            let failure = self.ext_failures.get(&ext.handler_key()).cloned();
            let err = failure.as_ref().map(|msg| {
                ArmError::new(
                    400,
                    "VMExtensionProvisioningError",
                    format!(
                        "VM has reported a failure when processing extension '{}' (publisher '{}' and type '{}'). Error message: '{msg}'.",
                        ext.name,
                        ext.publisher(),
                        ext.etype()
                    ),
                )
            });
            if let Some(x) = self
                .vms
                .get_mut(vm_key)
                .and_then(|v| v.extensions.get_mut(name))
            {
                x.provisioning = if failure.is_some() {
                    "Failed"
                } else {
                    "Succeeded"
                }
                .into();
                x.error = failure;
            }
            return err.map_or(Ok(None), Err);
        }
        let op = ext.operation();
        let vt = ext.volume_type();
        let kv = ext
            .props
            .pointer("/settings/KeyVaultResourceId")
            .and_then(Value::as_str)
            .map(str::to_string);
        let (os_disk, data, _) = model_refs(&vm.model);
        let os_key = os_disk.map(|(k, _)| k);
        let data_keys: Vec<String> = data.into_iter().map(|(_, k, _)| k).collect();
        let outcome = match op.as_str() {
            "disableencryption" => {
                self.ade_disable(vm, &ext.name, &vt, os_key.as_ref(), &data_keys)
            }
            o if o.starts_with("enableencryption") => {
                self.ade_enable(kv, &vt, os_key.as_ref(), &data_keys);
                Ok(AdeGuest::Encrypted)
            }
            _ => Ok(vm.ade.clone().unwrap_or(AdeGuest::Encrypted)),
        };
        self.ade_outcome(vm_key, name, outcome)
    }

    /// The guest's answer to `DisableEncryption`: the Linux refusal while the
    /// OS volume is encrypted, decrypting the targeted encrypted volumes
    /// (Linux starts after a delay), or decrypted when none is encrypted.
    pub(super) fn ade_disable(
        &self,
        vm: &Vm,
        ext_name: &str,
        vt: &str,
        os_key: Option<&String>,
        data_keys: &[String],
    ) -> Result<AdeGuest, ArmError> {
        let os = vm.os();
        let os_encrypted = os_key
            .and_then(|k| self.disks.get(k))
            .is_some_and(|d| d.guest_encrypted);
        if os == OsKind::Linux && os_encrypted {
            let msg = "Failed to disable the extension with error: Disabling encryption is not supported when OS volume is encrypted, stack trace: Traceback (most recent call last):\n  File \"/var/lib/waagent/Microsoft.Azure.Security.AzureDiskEncryptionForLinux-1.1.0.28/main/handle.py\", line 445, in disable_encryption\n    raise Exception(\"Disabling encryption is not supported when OS volume is encrypted\")";
            return Err(ArmError::new(
                400,
                "VMExtensionProvisioningError",
                format!(
                    "VM has reported a failure when processing extension '{ext_name}'. Error message: \"{msg}\"."
                ),
            ));
        }
        if matches!(vm.ade, Some(AdeGuest::Decrypting { .. })) {
            // A re-run while decrypting keeps decrypting.
            return Ok(vm.ade.clone().unwrap_or(AdeGuest::Encrypted));
        }
        let targets: Vec<String> = ade_targets(vt, os_key, data_keys)
            .into_iter()
            .filter(|k| self.disks.get(k).is_some_and(|d| d.guest_encrypted))
            .collect();
        if targets.is_empty() {
            return Ok(AdeGuest::Decrypted);
        }
        let biggest = targets
            .iter()
            .filter_map(|k| self.disks.get(k))
            .map(|d| d.size_bytes)
            .max()
            .unwrap_or(0);
        let delay = if os == OsKind::Linux {
            self.linux_delay
        } else {
            0.0
        };
        Ok(AdeGuest::Decrypting {
            delay,
            remaining: biggest as f64 / self.decrypt_rate,
            disks: targets,
        })
    }

    /// `EnableEncryption`: every disk of the VM is marked ever-ADE (with the
    /// key vault), the targeted ones encrypted.
    pub(super) fn ade_enable(
        &mut self,
        kv: Option<String>,
        vt: &str,
        os_key: Option<&String>,
        data_keys: &[String],
    ) {
        let targets = ade_targets(vt, os_key, data_keys);
        for k in os_key.into_iter().chain(data_keys.iter()) {
            if let Some(d) = self.disks.get_mut(k) {
                d.ever_ade = true;
                d.key_vault = d.key_vault.clone().or(kv.clone());
                if targets.contains(k) {
                    d.guest_encrypted = true;
                    d.ade_enabled = true;
                }
            }
        }
    }

    /// Records the guest's outcome on the VM (now ever-ADE) and the extension.
    pub(super) fn ade_outcome(
        &mut self,
        vm_key: &str,
        name: &str,
        outcome: Result<AdeGuest, ArmError>,
    ) -> Result<Option<Value>, ArmError> {
        let vm = self.vms.get_mut(vm_key).expect("checked by apply_ext_put");
        vm.ever_ade = true;
        match outcome {
            Ok(state) => {
                vm.ade = Some(state);
                if let Some(x) = vm.extensions.get_mut(name) {
                    x.provisioning = "Succeeded".into();
                }
                Ok(None)
            }
            Err(e) => {
                let guest = e.message.clone();
                vm.ade = Some(AdeGuest::Failed(guest));
                if let Some(x) = vm.extensions.get_mut(name) {
                    x.provisioning = "Failed".into();
                }
                Err(e)
            }
        }
    }

    /// `ExtPut` failed: the previous extension (or none) is back.
    pub(super) fn undo_ext_put(&mut self, vm: &str, name: String, prev: Option<Ext>) {
        if let Some(v) = self.vms.get_mut(vm) {
            match prev {
                Some(p) => {
                    v.extensions.insert(name, p);
                }
                None => {
                    v.extensions.remove(&name);
                }
            }
        }
        self.free_vm(vm);
    }

    /// `ExtDelete` done: the extension goes.
    pub(super) fn apply_ext_delete(
        &mut self,
        vm: &str,
        name: &str,
    ) -> Result<Option<Value>, ArmError> {
        if let Some(v) = self.vms.get_mut(vm) {
            v.extensions.remove(name);
        }
        self.free_vm(vm);
        Ok(None)
    }

    /// `ExtDelete` failed: the extension stays.
    pub(super) fn undo_ext_delete(&mut self, vm: &str, name: &str) {
        if let Some(x) = self
            .vms
            .get_mut(vm)
            .and_then(|v| v.extensions.get_mut(name))
        {
            x.provisioning = "Succeeded".into();
        }
        self.free_vm(vm);
    }
}

/// The disks `VolumeType` targets: the OS disk unless `data`, the data
/// disks unless `os`.
pub(super) fn ade_targets(vt: &str, os_key: Option<&String>, data_keys: &[String]) -> Vec<String> {
    let mut targets: Vec<String> = Vec::new();
    if vt != "data" {
        targets.extend(os_key.cloned());
    }
    if vt != "os" {
        targets.extend(data_keys.iter().cloned());
    }
    targets
}
