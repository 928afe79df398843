//! The read side: VM lookups, the VM GET body (with the storage and network
//! defaults Azure fills in), the instance view with the ADE extension's
//! statuses, and the whole-world state view for tests.

use super::*;

impl World {
    pub(super) fn vm(&self, t: &Target) -> Result<&Vm, ArmError> {
        self.vms
            .get(&t.key())
            .ok_or_else(|| not_found("Microsoft.Compute/virtualMachines", &t.name, &t.rg))
    }

    /// `GET` VM (optionally with `$expand=instanceView`).
    pub(crate) fn vm_get(&self, t: &Target, expand: bool) -> Result<Value, ArmError> {
        Ok(self.vm_body(self.vm(t)?, expand))
    }

    /// `GET` VM with `$expand=userData`: the only read that returns
    /// `properties.userData` (facts §11; VirtualMachines_Get `$expand` enum).
    pub(crate) fn vm_get_user_data(&self, t: &Target) -> Result<Value, ArmError> {
        let vm = self.vm(t)?;
        let mut body = self.vm_body(vm, false);
        if let Some(u) = vm.model.pointer("/properties/userData") {
            body["properties"]["userData"] = u.clone();
        }
        Ok(body)
    }

    /// `GET .../instanceView`.
    pub(crate) fn vm_instance_view(&self, t: &Target) -> Result<Value, ArmError> {
        Ok(self.instance_view(self.vm(t)?))
    }

    /// VMs of a subscription (or all) and resource group (or all).
    pub(crate) fn vm_list(&self, sub: Option<&str>, rg: Option<&str>) -> Value {
        let value: Vec<Value> = self
            .vms
            .values()
            .filter(|v| sub.is_none_or(|s| sub_of(&v.id).eq_ignore_ascii_case(s)))
            .filter(|v| rg.is_none_or(|rg| v.rg.eq_ignore_ascii_case(rg)))
            .map(|v| self.vm_body(v, false))
            .collect();
        json!({"value": value})
    }

    /// Ids of every VM.
    pub(crate) fn vm_ids(&self) -> Vec<String> {
        self.vms.values().map(|v| v.id.clone()).collect()
    }

    pub(super) fn vm_body(&self, vm: &Vm, expand: bool) -> Value {
        let mut body = vm.model.clone();
        // `userData` is stored but returned only by `$expand=userData`
        // ([`World::vm_get_user_data`]; facts §11).
        if let Some(p) = body.get_mut("properties").and_then(Value::as_object_mut) {
            p.remove("userData");
        }
        body["id"] = json!(vm.id);
        body["name"] = json!(vm.name);
        body["type"] = json!("Microsoft.Compute/virtualMachines");
        if body.get("tags").is_none_or(Value::is_null) {
            body["tags"] = json!({});
        }
        if let (Some(p), Some(identity)) = (&vm.principal_id, body.get_mut("identity")) {
            identity["principalId"] = json!(p);
            identity["tenantId"] = json!("72f988bf-86f1-41af-91ab-2d7cd011db47");
        }
        self.decorate_props(&mut body, vm);
        if expand {
            body["properties"]["instanceView"] = self.instance_view(vm);
        }
        if !vm.extensions.is_empty() {
            body["resources"] = Value::Array(vm.extensions.values().map(Ext::body).collect());
        }
        body
    }

    pub(super) fn decorate_props(&self, body: &mut Value, vm: &Vm) {
        let props = &mut body["properties"];
        props["provisioningState"] = json!(vm.provisioning);
        props["vmId"] = json!(vm.vm_id);
        props["timeCreated"] = json!(self.fmt_time(vm.time_created));
        self.decorate_storage(props);
    }

    pub(super) fn decorate_storage(&self, props: &mut Value) {
        let disks = &self.disks;
        let fill = |d: &mut Value, default_caching: &str| {
            if d.get("deleteOption").is_none_or(Value::is_null) {
                d["deleteOption"] = json!("Detach");
            }
            if d.get("caching").is_none_or(Value::is_null) {
                d["caching"] = json!(default_caching);
            }
            if let Some(disk) = d
                .pointer("/managedDisk/id")
                .and_then(Value::as_str)
                .and_then(|id| disks.get(&key_of(id)))
            {
                d["name"] = json!(disk.name);
                d["diskSizeGB"] = json!(disk.size_bytes.div_ceil(GIB));
                if d["managedDisk"]
                    .get("storageAccountType")
                    .is_none_or(Value::is_null)
                {
                    d["managedDisk"]["storageAccountType"] = json!(disk.sku);
                }
            }
        };
        if let Some(os) = props.pointer_mut("/storageProfile/osDisk") {
            fill(os, "ReadWrite");
        }
        if let Some(arr) = props
            .pointer_mut("/storageProfile/dataDisks")
            .and_then(Value::as_array_mut)
        {
            for d in arr.iter_mut() {
                fill(d, "None");
                if d.get("createOption").is_none_or(Value::is_null) {
                    d["createOption"] = json!("Attach");
                }
            }
        } else if props.get("storageProfile").is_some() {
            props["storageProfile"]["dataDisks"] = json!([]);
        }
        if let Some(arr) = props
            .pointer_mut("/networkProfile/networkInterfaces")
            .and_then(Value::as_array_mut)
        {
            let n = arr.len();
            for (i, nic) in arr.iter_mut().enumerate() {
                if nic.get("properties").is_none_or(Value::is_null) {
                    nic["properties"] = json!({});
                }
                if nic["properties"]
                    .get("deleteOption")
                    .is_none_or(Value::is_null)
                {
                    nic["properties"]["deleteOption"] = json!("Detach");
                }
                if nic["properties"].get("primary").is_none_or(Value::is_null) && n == 1 && i == 0 {
                    nic["properties"]["primary"] = json!(true);
                }
            }
        }
    }

    pub(super) fn instance_view(&self, vm: &Vm) -> Value {
        let prov = vm.provisioning.to_ascii_lowercase();
        let statuses = json!([
            {"code": format!("ProvisioningState/{prov}"), "level": "Info", "displayStatus": format!("Provisioning {prov}"), "time": self.fmt_time(self.last_tick)},
            {"code": format!("PowerState/{}", vm.power.code()), "level": "Info", "displayStatus": vm.power.display()},
        ]);
        let (os, data, _) = model_refs(&vm.model);
        let has_ade_ext = vm.extensions.values().any(Ext::is_ade);
        let mut disks = Vec::new();
        for k in os
            .iter()
            .map(|(k, _)| k)
            .chain(data.iter().map(|(_, k, _)| k))
        {
            let Some(d) = self.disks.get(k) else { continue };
            let mut st = vec![
                json!({"code": "ProvisioningState/succeeded", "level": "Info", "displayStatus": "Provisioning succeeded", "time": self.fmt_time(d.time_created)}),
            ];
            let mut entry = json!({"name": d.name});
            if d.ever_ade || has_ade_ext {
                if d.guest_encrypted {
                    st.push(json!({"code": "EncryptionState/encrypted", "level": "Info", "displayStatus": "Encryption is enabled on disk"}));
                } else {
                    st.push(json!({"code": "EncryptionState/notEncrypted", "level": "Info", "displayStatus": "Disk is not encrypted"}));
                }
                if d.ever_ade {
                    entry["encryptionSettings"] = json!([{"enabled": d.ade_enabled}]);
                }
            }
            entry["statuses"] = Value::Array(st);
            disks.push(entry);
        }
        let mut extensions = Vec::new();
        for x in vm.extensions.values() {
            let full_type = format!("{}.{}", x.publisher(), x.etype());
            let ver = x
                .props
                .get("typeHandlerVersion")
                .and_then(Value::as_str)
                .unwrap_or("1.0");
            let mut e = json!({"name": x.name, "type": full_type, "typeHandlerVersion": ver});
            if x.is_ade() {
                let linux = x.etype().eq_ignore_ascii_case(ADE_LINUX);
                let (level, code, msg, sub) = self.ade_status(vm, linux, &os, &data);
                let display = if level == "Error" {
                    "Provisioning failed"
                } else {
                    "Provisioning succeeded"
                };
                e["typeHandlerVersion"] = json!(if linux { "1.1.0.28" } else { WIN_ADE_VERSION });
                e["statuses"] = json!([{"code": code, "level": level, "displayStatus": display, "message": msg}]);
                if let Some(sub) = sub {
                    e["substatuses"] = json!([{"code": format!("ComponentStatus/{full_type}/succeeded"), "level": "Info", "displayStatus": "Provisioning succeeded", "message": sub}]);
                }
            } else {
                let p = x.provisioning.to_ascii_lowercase();
                e["statuses"] = match &x.error {
                    Some(msg) => {
                        json!([{"code": format!("ProvisioningState/{p}"), "level": "Error", "displayStatus": "Provisioning failed", "message": msg}])
                    }
                    None => {
                        json!([{"code": format!("ProvisioningState/{p}"), "level": "Info", "displayStatus": format!("Provisioning {p}"), "message": "Extension is running"}])
                    }
                };
            }
            extensions.push(e);
        }
        let mut iv = json!({
            "computerName": vm.name,
            "osName": match vm.os() { OsKind::Windows => "Windows Server 2022 Datacenter Azure Edition", OsKind::Linux => "ubuntu" },
            "disks": disks,
            "hyperVGeneration": os.as_ref().and_then(|(k, _)| self.disks.get(k)).and_then(|d| d.hyper_v.clone()).unwrap_or_else(|| "V2".into()),
            "statuses": statuses,
        });
        if !extensions.is_empty() {
            iv["extensions"] = Value::Array(extensions);
        }
        if vm.power == Power::Running {
            iv["vmAgent"] = json!({"vmAgentVersion": "2.7.41491.1102", "statuses": [{"code": "ProvisioningState/succeeded", "level": "Info", "displayStatus": "Ready", "message": "GuestAgent is running and processing the extensions."}]});
        }
        iv
    }

    /// (level, code, message, Linux substatus JSON) of the ADE extension.
    pub(super) fn ade_status(
        &self,
        vm: &Vm,
        linux: bool,
        os: &Option<(String, DeleteOption)>,
        data: &[(i64, String, DeleteOption)],
    ) -> (&'static str, &'static str, String, Option<String>) {
        let ok = "ProvisioningState/succeeded";
        let os_enc = os
            .as_ref()
            .and_then(|(k, _)| self.disks.get(k))
            .is_some_and(|d| d.guest_encrypted);
        let data_enc = data
            .iter()
            .any(|(_, k, _)| self.disks.get(k).is_some_and(|d| d.guest_encrypted));
        let os_s = if os_enc { "Encrypted" } else { "NotEncrypted" };
        match vm.ade.clone().unwrap_or(AdeGuest::Encrypted) {
            AdeGuest::Failed(m) => ("Error", "ProvisioningState/failed", m, None),
            AdeGuest::Decrypting { .. } => {
                if linux {
                    (
                        "Info",
                        ok,
                        "Decryption started".into(),
                        Some(format!(
                            "{{\"os\": \"{os_s}\", \"data\": \"DecryptionInProgress\"}}"
                        )),
                    )
                } else {
                    (
                        "Info",
                        ok,
                        format!("[{WIN_ADE_VERSION}] Disable Encryption in progress"),
                        None,
                    )
                }
            }
            AdeGuest::Decrypted => {
                if linux {
                    (
                        "Info",
                        ok,
                        "Decryption succeeded".into(),
                        Some(format!(
                            "{{\"os\": \"{os_s}\", \"data\": \"NotEncrypted\"}}"
                        )),
                    )
                } else {
                    (
                        "Info",
                        ok,
                        format!("[{WIN_ADE_VERSION}] Disable Encryption completed successfully"),
                        None,
                    )
                }
            }
            AdeGuest::Encrypted => {
                if linux {
                    let data_s = if data.is_empty() {
                        "NotMounted"
                    } else if data_enc {
                        "Encrypted"
                    } else {
                        "NotEncrypted"
                    };
                    let msg = if os_enc {
                        "Encryption succeeded for all volumes"
                    } else {
                        "Encryption succeeded for data volumes"
                    };
                    (
                        "Info",
                        ok,
                        msg.into(),
                        Some(format!("{{\"os\": \"{os_s}\", \"data\": \"{data_s}\"}}")),
                    )
                } else {
                    (
                        "Info",
                        ok,
                        format!("[{WIN_ADE_VERSION}] Enable Encryption completed successfully"),
                        None,
                    )
                }
            }
        }
    }

    /// (vms, disks, snapshots, nics, operations, running operations) for the state view.
    pub(crate) fn snapshot_view(
        &self,
    ) -> (Vec<Value>, Vec<Value>, Vec<Value>, Vec<Value>, usize, usize) {
        let vms = self
            .vms
            .values()
            .map(|v| {
                json!({
                    "id": v.id, "model": self.vm_body(v, true),
                    "emulator": {"everAde": v.ever_ade, "power": v.power.code(), "busy": v.busy.is_some(), "deleting": v.deleting,
                                 "ade": v.ade.as_ref().map(|a| match a { AdeGuest::Encrypted => "encrypted".to_string(), AdeGuest::Decrypting { delay, remaining, .. } => format!("decrypting (wait {delay:.0} s, then {remaining:.0} s)"), AdeGuest::Decrypted => "decrypted".to_string(), AdeGuest::Failed(m) => format!("failed: {m}") })},
                })
            })
            .collect();
        let disk_entry = |d: &Disk| json!({"id": d.id, "model": self.disk_body(d), "emulator": {"blob": d.blob.as_ref().map(|b| b.0.clone()), "everAde": d.ever_ade, "guestEncrypted": d.guest_encrypted}});
        let disks = self.disks.values().map(disk_entry).collect();
        let snaps = self.snapshots.values().map(disk_entry).collect();
        let nics = self
            .nics
            .values()
            .map(|n| json!({"id": n.id, "model": self.nic_body(n)}))
            .collect();
        let running = self.ops.values().filter(|o| o.running()).count();
        (vms, disks, snaps, nics, self.ops.len(), running)
    }
}
