//! VM writes: `PUT`/`PATCH`/`DELETE` and the power actions, the effects
//! they make (`apply_vm_*`) and their undo (`undo_vm_*`). The rules a model
//! must pass are in vm_rules.rs; the read side is in view.rs.

use super::vm_rules::check_create_shape;
use super::*;

impl World {
    pub(super) fn vm_gate(&self, vm: &Vm, op: &str) -> Result<(), ArmError> {
        if vm.deleting {
            return Err(ArmError::conflict(format!(
                "Operation '{op}' is not allowed on VM '{}' since the VM is marked for deletion. You can only retry the Delete operation (or wait for an ongoing one to complete).",
                vm.name
            )));
        }
        if vm.busy.is_some() {
            return Err(ArmError::conflict(format!(
                "Operation '{op}' is not allowed on VM '{}' since another operation is in progress.",
                vm.name
            )));
        }
        Ok(())
    }

    /// `PUT` VM: create (201) or full update (200).
    pub(crate) fn vm_put(
        &mut self,
        t: &Target,
        body: Value,
        inject: bool,
        now: f64,
    ) -> Result<Reply, ArmError> {
        let model = clean_model(body, &self.location)?;
        if self.vms.contains_key(&t.key()) {
            self.vm_update(t, model, "createOrUpdate", inject, now)
        } else {
            self.vm_create(t, model, inject, now)
        }
    }

    /// `PATCH` VM: objects merge, arrays replace; `tags` replace as a whole
    /// (the tags of a resource PATCH are the new tag set: removing a key by
    /// PATCH is how Terraform's azurerm provider drops a VM tag through
    /// `VirtualMachines_Update`; INFERRED, no Microsoft text states it).
    pub(crate) fn vm_patch(
        &mut self,
        t: &Target,
        body: Value,
        inject: bool,
        now: f64,
    ) -> Result<Reply, ArmError> {
        let vm = self.vm(t)?;
        let mut model = vm.model.clone();
        let patch = clean_model(body, &self.location)?;
        let tags = patch.get("tags").filter(|t| t.is_object()).cloned();
        merge(&mut model, patch);
        if let Some(tags) = tags {
            model["tags"] = tags;
        }
        self.vm_update(t, model, "update", inject, now)
    }

    pub(super) fn vm_create(
        &mut self,
        t: &Target,
        model: Value,
        inject: bool,
        now: f64,
    ) -> Result<Reply, ArmError> {
        let key = t.key();
        let mut model = model;
        let from_image = check_create_shape(&model)?;
        let os_from_image = if from_image {
            Some(self.os_disk_from_image(t, &mut model, now))
        } else {
            None
        };
        let checked = match self.check_model(&key, &model, None) {
            Ok(c) => c,
            Err(e) => {
                if let Some(k) = os_from_image {
                    self.disks.remove(&k);
                }
                return Err(e);
            }
        };
        let ever_ade = checked
            .disks
            .iter()
            .any(|k| self.disks.get(k).is_some_and(|d| d.ever_ade));
        self.check_eah(&key, &model, None, ever_ade)?;
        self.attach_all(&key, &checked.disks, &checked.nics);
        let principal_id = model
            .pointer("/identity/type")
            .and_then(Value::as_str)
            .is_some_and(|s| s.to_ascii_lowercase().contains("systemassigned"))
            .then(|| self.rng.uuid());
        let vm = Vm {
            id: t.id.clone(),
            name: t.name.clone(),
            rg: t.rg.clone(),
            model,
            vm_id: self.rng.uuid(),
            principal_id,
            provisioning: "Creating".into(),
            power: Power::Starting,
            ever_ade,
            extensions: BTreeMap::new(),
            ade: None,
            busy: None,
            deleting: false,
            time_created: now,
        };
        self.vms.insert(key.clone(), vm);
        let dur = self.draw(self.durations.vm_create);
        let mut lro = self.new_op(
            now,
            OpFamily::Compute,
            dur,
            Effect::VmCreate { vm: key.clone() },
            inject,
            Final::Resource(ResourceKind::Vm, key.clone()),
        );
        lro.location = false;
        let vm = self.vms.get_mut(&key).expect("inserted");
        vm.busy = Some(lro.id.clone());
        let body = self.vm_body(&self.vms[&key], false);
        Ok(Reply {
            status: 201,
            body: Some(body),
            lro: Some(lro),
        })
    }

    /// `osDisk.createOption: FromImage`: a new, empty OS disk (the image's
    /// bytes are not modelled) named `osDisk.name` (else `<vm>_OsDisk_1`) in
    /// the VM's resource group, sized `osDisk.diskSizeGB` (else 30 GiB) with
    /// `osDisk.managedDisk.storageAccountType` (else Premium_LRS), in the
    /// VM's zone; the stored model then names it in `managedDisk.id`, and
    /// `adminPassword` is dropped (REST docs, OSProfile.adminPassword is
    /// write-only: a GET never returns it). Returns the disk's key.
    fn os_disk_from_image(&mut self, t: &Target, model: &mut Value, now: f64) -> String {
        let os = model
            .pointer("/properties/storageProfile/osDisk")
            .cloned()
            .unwrap_or(Value::Null);
        let name = os
            .get("name")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| format!("{}_OsDisk_1", t.name));
        let vm_prefix = t.id.split("/providers/").next().unwrap_or_default();
        let id = format!("{vm_prefix}/providers/Microsoft.Compute/disks/{name}");
        let dt = Target {
            id: id.clone(),
            rg: t.rg.clone(),
            name,
        };
        let gb = os
            .get("diskSizeGB")
            .and_then(Value::as_u64)
            .filter(|g| *g > 0)
            .unwrap_or(30);
        let sku = os
            .pointer("/managedDisk/storageAccountType")
            .and_then(Value::as_str)
            .unwrap_or("Premium_LRS");
        let mut body = json!({"location": model.get("location").cloned().unwrap_or(Value::Null), "sku": {"name": sku}});
        if let Some(z) = model.get("zones").filter(|z| z.is_array()) {
            body["zones"] = z.clone();
        }
        let tl = model
            .pointer("/properties/securityProfile/securityType")
            .cloned()
            .filter(|v| !v.is_null());
        let mut props = json!({"osType": "Linux"});
        if let Some(st) = tl {
            props["securityProfile"] = json!({"securityType": st});
        }
        let mut d = self.new_disk(&dt, &body, &props, false, now);
        // A marketplace image stamps its plan on the OS disk it creates
        // (facts §5.5: the plan then travels with the disk).
        d.purchase_plan = model.get("plan").filter(|p| p.is_object()).cloned();
        d.size_bytes = gb * GIB;
        d.blob = Some(self.blobs.create_upload(gb * GIB + 512));
        d.create_option = "FromImage".into();
        d.provisioning = "Succeeded".into();
        let key = dt.key();
        self.disks.insert(key.clone(), d);
        model["properties"]["storageProfile"]["osDisk"]["managedDisk"]["id"] = json!(id);
        model["properties"]["storageProfile"]["osDisk"]["name"] = json!(dt.name);
        if let Some(p) = model
            .pointer_mut("/properties/osProfile")
            .and_then(Value::as_object_mut)
        {
            p.remove("adminPassword");
        }
        key
    }

    pub(super) fn vm_update(
        &mut self,
        t: &Target,
        model: Value,
        op: &str,
        inject: bool,
        now: f64,
    ) -> Result<Reply, ArmError> {
        let key = t.key();
        let vm = self.vm(t)?;
        self.vm_gate(vm, op)?;
        let old_os = model_refs(&vm.model).0.map(|(k, _)| k);
        let new_os = model_refs(&model).0.map(|(k, _)| k);
        if new_os.is_none() {
            return Err(ArmError::bad_request(
                "InvalidParameter",
                "Required parameter 'osDisk' is missing (null).",
            )
            .with_target("osDisk"));
        }
        if old_os != new_os && vm.power != Power::Deallocated {
            return Err(ArmError::conflict(format!(
                "Operation '{op}' is not allowed on VM '{}' since the VM is not deallocated. The OS disk can be swapped only on a deallocated VM.",
                vm.name
            )));
        }
        // NICs are added to or removed from a VM only while it is
        // deallocated (facts §11, NIC reservation; Microsoft's "Add network
        // interfaces to or remove from virtual machines": the VM must be
        // stopped (deallocated)).
        let nic_set = |m: &Value| -> BTreeSet<String> {
            model_refs(m).2.into_iter().map(|(k, _)| k).collect()
        };
        if nic_set(&vm.model) != nic_set(&model) && vm.power != Power::Deallocated {
            return Err(ArmError::conflict(format!(
                "Operation '{op}' is not allowed on VM '{}' since the VM is not deallocated. Network interfaces can be added or removed only on a deallocated VM.",
                vm.name
            )));
        }
        let checked = self.check_model(&key, &model, Some(vm))?;
        let vm = self.vm(t)?;
        let ever_ade = vm.ever_ade
            || checked
                .disks
                .iter()
                .any(|k| self.disks.get(k).is_some_and(|d| d.ever_ade));
        self.check_eah(&key, &model, Some(vm), ever_ade)?;
        let added_disks: Vec<String> = checked
            .disks
            .iter()
            .filter(|k| self.disks.get(*k).is_some_and(|d| d.managed_by.is_none()))
            .cloned()
            .collect();
        let added_nics: Vec<String> = checked
            .nics
            .iter()
            .filter(|k| self.nics.get(*k).is_some_and(|n| n.vm.is_none()))
            .cloned()
            .collect();
        self.attach_all(&key, &added_disks, &added_nics);
        let dur = self.draw(self.durations.vm_update);
        let effect = Effect::VmUpdate {
            vm: key.clone(),
            model: model.clone(),
            added_disks,
            added_nics,
        };
        let mut lro = self.new_op(
            now,
            OpFamily::Compute,
            dur,
            effect,
            inject,
            Final::Resource(ResourceKind::Vm, key.clone()),
        );
        lro.location = false;
        let vm = self.vms.get_mut(&key).expect("exists");
        vm.busy = Some(lro.id.clone());
        vm.provisioning = "Updating".into();
        vm.ever_ade = ever_ade;
        // The answer shows the requested model.
        let mut shown = vm.clone();
        shown.model = model;
        let body = self.vm_body(&shown, false);
        Ok(Reply {
            status: 200,
            body: Some(body),
            lro: Some(lro),
        })
    }

    /// `DELETE` VM.
    pub(crate) fn vm_delete(
        &mut self,
        t: &Target,
        inject: bool,
        now: f64,
    ) -> Result<Reply, ArmError> {
        let key = t.key();
        let Some(vm) = self.vms.get(&key) else {
            return Ok(Reply::no_content());
        };
        if vm.deleting
            && let Some(op) = vm.busy.clone()
        {
            let retry = self
                .ops
                .get(&op)
                .map(|o| (o.done_at - now).clamp(1.0, 60.0))
                .unwrap_or(1.0);
            return Ok(Reply {
                status: 202,
                body: None,
                lro: Some(LroRef {
                    id: op,
                    family: OpFamily::Compute,
                    location: true,
                    retry_after: retry,
                }),
            });
        }
        self.vm_gate(vm, "delete")?;
        let dur = self.draw(self.durations.vm_delete);
        let lro = self.new_op(
            now,
            OpFamily::Compute,
            dur,
            Effect::VmDelete { vm: key.clone() },
            inject,
            Final::NoContent,
        );
        let vm = self.vms.get_mut(&key).expect("exists");
        vm.deleting = true;
        vm.provisioning = "Deleting".into();
        vm.busy = Some(lro.id.clone());
        Ok(Reply::accepted(lro))
    }

    /// `POST .../deallocate|start|powerOff`.
    pub(crate) fn vm_action(
        &mut self,
        t: &Target,
        action: &str,
        inject: bool,
        now: f64,
    ) -> Result<Reply, ArmError> {
        let key = t.key();
        let vm = self.vm(t)?;
        let label = match action {
            "deallocate" => "deallocate",
            "start" => "start",
            _ => "powerOff",
        };
        self.vm_gate(vm, label)?;
        let prev = vm.power;
        let (transit, target, range) = match label {
            "deallocate" => (
                Power::Deallocating,
                Power::Deallocated,
                self.durations.vm_deallocate,
            ),
            "start" => (Power::Starting, Power::Running, self.durations.vm_start),
            _ => (Power::Stopping, Power::Stopped, self.durations.vm_power_off),
        };
        if label == "start" {
            let (os, data, _) = model_refs(&vm.model);
            for k in os
                .iter()
                .map(|(k, _)| k)
                .chain(data.iter().map(|(_, k, _)| k))
            {
                if let Some(d) = self.disks.get(k) {
                    let st = self.disk_state(d);
                    if matches!(st, "ActiveSAS" | "ActiveUpload" | "ReadyToUpload") {
                        return Err(ArmError::conflict(format!(
                            "Operation 'start' is not allowed on VM '{}' since disk '{}' is in state '{st}'. Call endGetAccess on the disk first.",
                            vm.name, d.name
                        )));
                    }
                }
            }
        }
        let dur = if prev == target {
            self.draw(SimRange::new(1.0, 3.0))
        } else {
            self.draw(range)
        };
        let lro = self.new_op(
            now,
            OpFamily::Compute,
            dur,
            Effect::VmPower {
                vm: key.clone(),
                target,
                prev,
            },
            inject,
            Final::NoContent,
        );
        let vm = self.vms.get_mut(&key).expect("exists");
        if prev != target {
            vm.power = transit;
            vm.provisioning = "Updating".into();
        }
        vm.busy = Some(lro.id.clone());
        Ok(Reply::accepted(lro))
    }

    /// `VmCreate` done: the VM runs.
    pub(super) fn apply_vm_create(&mut self, vm: &str) -> Result<Option<Value>, ArmError> {
        if let Some(v) = self.vms.get_mut(vm) {
            v.power = Power::Running;
        }
        self.free_vm(vm);
        Ok(None)
    }

    /// `VmCreate` failed: the VM goes, its disks and NICs are released.
    pub(super) fn undo_vm_create(&mut self, vm: &str) {
        self.vms.remove(vm);
        self.release_all(vm);
    }

    /// `VmUpdate` done: the new model holds; disks and NICs it no longer
    /// names are released.
    pub(super) fn apply_vm_update(
        &mut self,
        vm: &str,
        model: Value,
        at: f64,
    ) -> Result<Option<Value>, ArmError> {
        let (os, data, nics) = model_refs(&model);
        let keep: BTreeSet<String> = os
            .iter()
            .map(|(k, _)| k.clone())
            .chain(data.iter().map(|(_, k, _)| k.clone()))
            .collect();
        let keep_nics: BTreeSet<String> = nics.iter().map(|(k, _)| k.clone()).collect();
        for d in self.disks.values_mut() {
            if d.managed_by.as_deref() == Some(vm) && !keep.contains(&key_of(&d.id)) {
                d.managed_by = None;
            }
        }
        let mut released = Vec::new();
        for n in self.nics.values_mut() {
            if n.vm.as_deref() == Some(vm) && !keep_nics.contains(&key_of(&n.id)) {
                n.vm = None;
                released.push(key_of(&n.id));
            }
        }
        // The pessimistic reading of an undocumented case (config.rs,
        // `reserve_swapped_nics`): a NIC taken off a VM is reserved for it.
        if self.reserve_swapped_nics
            && let Some(vm_id) = self.vms.get(vm).map(|v| v.id.clone())
        {
            for k in released {
                self.reserve_nic(k, vm_id.clone(), at);
            }
        }
        if let Some(v) = self.vms.get_mut(vm) {
            v.model = model;
        }
        self.free_vm(vm);
        Ok(None)
    }

    /// `VmUpdate` failed: the disks and NICs it attached are released.
    pub(super) fn undo_vm_update(
        &mut self,
        vm: &str,
        added_disks: &[String],
        added_nics: &[String],
    ) {
        for d in added_disks {
            if let Some(disk) = self.disks.get_mut(d) {
                disk.managed_by = None;
            }
        }
        for n in added_nics {
            if let Some(nic) = self.nics.get_mut(n) {
                nic.vm = None;
            }
        }
        self.free_vm(vm);
    }

    /// `VmDelete` done: the VM goes; disks and NICs with deleteOption
    /// `Delete` go with it, the others are detached (a kept NIC is reserved
    /// for the deleted VM, see nic.rs).
    pub(super) fn apply_vm_delete(&mut self, vm: &str, at: f64) -> Result<Option<Value>, ArmError> {
        let Some(v) = self.vms.remove(vm) else {
            return Ok(None);
        };
        let (os, data, nics) = model_refs(&v.model);
        for (k, opt) in os
            .into_iter()
            .chain(data.into_iter().map(|(_, k, o)| (k, o)))
        {
            if opt == DeleteOption::Delete {
                if let Some(d) = self.disks.remove(&k)
                    && let Some(b) = d.blob
                {
                    self.blobs.delete(&b);
                }
            } else if let Some(d) = self.disks.get_mut(&k) {
                d.managed_by = None;
                d.access = None;
            }
        }
        for (k, opt) in nics {
            if opt == DeleteOption::Delete {
                self.nics.remove(&k);
            } else {
                if let Some(n) = self.nics.get_mut(&k) {
                    n.vm = None;
                }
                self.reserve_nic(k, v.id.clone(), at);
            }
        }
        Ok(None)
    }

    /// `VmDelete` failed: the VM stays.
    pub(super) fn undo_vm_delete(&mut self, vm: &str) {
        if let Some(v) = self.vms.get_mut(vm) {
            v.deleting = false;
        }
        self.free_vm(vm);
    }

    /// `VmPower` done: the VM reaches the target power state.
    pub(super) fn apply_vm_power(
        &mut self,
        vm: &str,
        target: Power,
    ) -> Result<Option<Value>, ArmError> {
        if let Some(v) = self.vms.get_mut(vm) {
            v.power = target;
        }
        self.free_vm(vm);
        Ok(None)
    }

    /// `VmPower` failed: the VM is back in its previous power state.
    pub(super) fn undo_vm_power(&mut self, vm: &str, prev: Power) {
        if let Some(v) = self.vms.get_mut(vm) {
            v.power = prev;
        }
        self.free_vm(vm);
    }

    /// Marks disks and NICs as owned by VM `key`.
    pub(super) fn attach_all(&mut self, key: &str, disks: &[String], nics: &[String]) {
        for d in disks {
            if let Some(disk) = self.disks.get_mut(d) {
                disk.managed_by = Some(key.to_string());
            }
        }
        for n in nics {
            if let Some(nic) = self.nics.get_mut(n) {
                nic.vm = Some(key.to_string());
            }
        }
    }

    pub(super) fn free_vm(&mut self, vm: &str) {
        if let Some(v) = self.vms.get_mut(vm) {
            v.busy = None;
            if !v.deleting {
                v.provisioning = "Succeeded".into();
            }
        }
    }

    /// Releases every disk and NIC owned by `vm` (no reservation).
    pub(super) fn release_all(&mut self, vm: &str) {
        for d in self.disks.values_mut() {
            if d.managed_by.as_deref() == Some(vm) {
                d.managed_by = None;
            }
        }
        for n in self.nics.values_mut() {
            if n.vm.as_deref() == Some(vm) {
                n.vm = None;
            }
        }
    }
}

/// Strips read-only fields from a VM PUT/PATCH body.
pub(super) fn clean_model(body: Value, default_location: &str) -> Result<Value, ArmError> {
    let Value::Object(mut m) = body else {
        return Err(ArmError::invalid_body("expected a JSON object"));
    };
    for k in ["id", "name", "type", "resources", "etag", "managedBy"] {
        m.remove(k);
    }
    if !m.contains_key("location") {
        m.insert("location".into(), json!(default_location));
    }
    if let Some(Value::Object(p)) = m.get_mut("properties") {
        for k in ["provisioningState", "vmId", "instanceView", "timeCreated"] {
            p.remove(k);
        }
    } else if m.get("properties").is_some_and(|p| !p.is_null()) {
        return Err(ArmError::invalid_body("'properties' must be an object"));
    }
    if let Some(Value::Object(i)) = m.get_mut("identity") {
        i.remove("principalId");
        i.remove("tenantId");
    }
    Ok(Value::Object(m))
}

/// JSON merge for PATCH: objects merge recursively, everything else replaces.
pub(super) fn merge(into: &mut Value, patch: Value) {
    match (into, patch) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                if v.is_null() {
                    continue;
                }
                match a.get_mut(&k) {
                    Some(slot) if slot.is_object() && v.is_object() => merge(slot, v),
                    _ => {
                        a.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}
