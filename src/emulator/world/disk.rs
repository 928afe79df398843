//! Managed disks (and snapshots, which share the model): the disk state,
//! the GET body, `PUT` (create per createOption, or update), `PATCH`,
//! `DELETE`, and the effects they make with their undo. Grant/revoke access
//! is in sas.rs; what tells a snapshot apart is in snapshot.rs.

use super::*;

/// Disk `properties` the emulator models itself (dedicated fields, the
/// creation, the ADE stamp, encryption) or that are output only; every other
/// property a create or update sends (tier, bursting, shares, provisioned
/// performance, access settings...) is stored as sent and returned by GET,
/// as Azure does for settable properties (DiskProperties, DiskRP
/// 2025-01-02). A disk that never set an access setting shows Azure's
/// defaults (`AllowAll`, `Enabled`).
const MODELLED_OR_OUTPUT: [&str; 14] = [
    "creationData",
    "diskSizeGB",
    "osType",
    "hyperVGeneration",
    "securityProfile",
    "purchasePlan",
    "incremental",
    "encryption",
    "encryptionSettingsCollection",
    "diskSizeBytes",
    "diskState",
    "provisioningState",
    "timeCreated",
    "uniqueId",
];

/// The stored properties of a create or update body's `properties`.
fn stored_of(props: &Value) -> serde_json::Map<String, Value> {
    props
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, v)| !v.is_null() && !MODELLED_OR_OUTPUT.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

const MIN_UPLOAD: u64 = 20_972_032;
const MAX_UPLOAD: u64 = 35_183_298_347_520;

impl World {
    pub(super) fn disk_state(&self, d: &Disk) -> &'static str {
        if d.upload == Some(UploadPhase::Active) {
            return "ActiveUpload";
        }
        if d.access.is_some()
            && d.blob
                .as_ref()
                .is_some_and(|b| self.blobs.has_active_grant(b))
        {
            // An expired read SAS no longer holds the disk (Azure frees it at expiry).
            return "ActiveSAS";
        }
        if d.upload == Some(UploadPhase::Ready) {
            return "ReadyToUpload";
        }
        if let Some(vm) = d.managed_by.as_ref().and_then(|k| self.vms.get(k)) {
            return if vm.power == Power::Deallocated {
                "Reserved"
            } else {
                "Attached"
            };
        }
        "Unattached"
    }

    pub(super) fn disk_body(&self, d: &Disk) -> Value {
        let mut creation = json!({"createOption": d.create_option});
        if let Some(u) = d.upload_size {
            creation["uploadSizeBytes"] = json!(u);
        }
        if let Some(s) = &d.source_id {
            creation["sourceResourceId"] = json!(s);
        }
        if let Some(s) = &d.source_unique {
            creation["sourceUniqueId"] = json!(s);
        }
        let mut props = json!({
            "diskSizeGB": d.size_bytes.div_ceil(GIB),
            "diskSizeBytes": d.size_bytes,
            "diskState": self.disk_state(d),
            "provisioningState": d.provisioning,
            "timeCreated": self.fmt_time(d.time_created),
            "uniqueId": d.unique_id,
            "creationData": creation,
            // Platform keys unless created with a DES (des.rs).
            "encryption": d.encryption.clone().unwrap_or_else(|| json!({"type": "EncryptionAtRestWithPlatformKey"})),
            "networkAccessPolicy": "AllowAll",
            "publicNetworkAccess": "Enabled",
        });
        if let Some(v) = &d.os_type {
            props["osType"] = json!(v);
        }
        if let Some(v) = &d.hyper_v {
            props["hyperVGeneration"] = json!(v);
        }
        if let Some(v) = &d.security {
            props["securityProfile"] = v.clone();
        }
        if let Some(v) = &d.purchase_plan {
            props["purchasePlan"] = v.clone();
        }
        if let Some(v) = d.incremental {
            props["incremental"] = json!(v);
        }
        for (k, v) in &d.stored {
            props[k.as_str()] = v.clone();
        }
        if d.ever_ade {
            let kv = d.key_vault.clone().unwrap_or_default();
            let kv_name = kv.rsplit('/').next().unwrap_or("kv").to_string();
            props["encryptionSettingsCollection"] = json!({
                "enabled": d.ade_enabled,
                "encryptionSettings": [{
                    "diskEncryptionKey": {"sourceVault": {"id": kv}, "secretUrl": format!("https://{kv_name}.vault.azure.net/secrets/{}/0123456789abcdef", d.unique_id)},
                }],
                "encryptionSettingsVersion": "1.1",
            });
        }
        let mut body = json!({
            "id": d.id, "name": d.name,
            "type": if d.snapshot { "Microsoft.Compute/snapshots" } else { "Microsoft.Compute/disks" },
            "location": d.location, "tags": d.tags,
            "sku": {"name": d.sku, "tier": if d.sku.starts_with("Premium") { "Premium" } else { "Standard" }},
            "properties": props,
        });
        if let Some(z) = &d.zones {
            body["zones"] = z.clone();
        }
        if let Some(vm) = d.managed_by.as_ref().and_then(|k| self.vms.get(k)) {
            body["managedBy"] = json!(vm.id);
        }
        body
    }

    /// `GET` disk or snapshot.
    pub(crate) fn disk_get(&self, t: &Target, snapshot: bool) -> Result<Value, ArmError> {
        self.disk_map(snapshot)
            .get(&t.key())
            .map(|d| self.disk_body(d))
            .ok_or_else(|| Self::disk_not_found(t, snapshot))
    }

    /// Disks or snapshots of a subscription and resource group.
    pub(crate) fn disk_list(&self, sub: &str, rg: Option<&str>, snapshot: bool) -> Value {
        let value: Vec<Value> = self
            .disk_map(snapshot)
            .values()
            .filter(|d| sub_of(&d.id).eq_ignore_ascii_case(sub))
            .filter(|d| rg.is_none_or(|rg| d.rg.eq_ignore_ascii_case(rg)))
            .map(|d| self.disk_body(d))
            .collect();
        json!({"value": value})
    }

    /// `PUT` disk or snapshot (create, or update of tags/sku/properties).
    pub(crate) fn disk_put(
        &mut self,
        t: &Target,
        body: Value,
        snapshot: bool,
        inject: bool,
        now: f64,
    ) -> Result<Reply, ArmError> {
        if !body.is_object() {
            return Err(ArmError::invalid_body("expected a JSON object"));
        }
        let key = t.key();
        let creation = body
            .pointer("/properties/creationData")
            .cloned()
            .unwrap_or(Value::Null);
        let option = creation
            .get("createOption")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if let Some(existing) = self.disk_map(snapshot).get(&key) {
            if !option.is_empty() && !option.eq_ignore_ascii_case(&existing.create_option) {
                return Err(ArmError::new(
                    409,
                    "PropertyChangeNotAllowed",
                    "Changing property 'creationData.createOption' is not allowed.",
                )
                .with_target("creationData.createOption"));
            }
            if existing.provisioning == "Deleting" {
                return Err(ArmError::conflict(format!(
                    "Disk '{}' is being deleted.",
                    existing.name
                )));
            }
            return self.disk_update(t, body, snapshot, inject, now, 200);
        }
        let props = body.get("properties").cloned().unwrap_or(json!({}));
        let mut d = self.new_disk(t, &body, &props, snapshot, now);
        self.check_quota(&d)?;
        // A zone-redundant disk has no zone: Azure refuses `zones` with a
        // `*_ZRS` SKU (facts §11; Azure/terraform-azurerm-avm-res-compute-virtualmachine#236,
        // Azure/bicep-registry-modules#3850: "A disk with sku 'Premium_ZRS'
        // cannot be created in an availability zone." (Code:OperationNotAllowed)).
        if !snapshot
            && crate::model::usage::is_zone_redundant(&d.sku)
            && d.zones
                .as_ref()
                .and_then(Value::as_array)
                .is_some_and(|z| !z.is_empty())
        {
            return Err(ArmError::conflict(format!(
                "A disk with sku '{}' cannot be created in an availability zone.",
                d.sku
            )));
        }
        // Customer-managed keys: the DES must exist in the disk's region (des.rs).
        d.encryption = self.check_disk_encryption(&props, &d.location)?;
        match option.to_ascii_lowercase().as_str() {
            "upload" if !snapshot => self.create_upload(&mut d, &creation)?,
            "copy" => self.create_copy(&mut d, &creation, snapshot)?,
            "empty" if !snapshot => self.create_empty(&mut d, &props)?,
            "" => {
                return Err(ArmError::bad_request(
                    "InvalidParameter",
                    "Required parameter 'creationData.createOption' is missing (null).",
                )
                .with_target("creationData.createOption"));
            }
            other => {
                return Err(ArmError::bad_request(
                    "InvalidParameter",
                    format!(
                        "createOption '{other}' is not supported by the emulator for {}.",
                        if snapshot {
                            "snapshots (use Copy)"
                        } else {
                            "disks (use Upload, Copy or Empty)"
                        }
                    ),
                )
                .with_target("creationData.createOption"));
            }
        }
        let body = self.disk_body(&d);
        self.disk_map_mut(snapshot).insert(key.clone(), d);
        let dur = self.draw(self.durations.disk_create);
        let kind = if snapshot {
            ResourceKind::Snapshot
        } else {
            ResourceKind::Disk
        };
        let lro = self.new_op(
            now,
            OpFamily::Disk,
            dur,
            Effect::DiskCreate {
                key: key.clone(),
                snapshot,
                new: true,
            },
            inject,
            Final::Resource(kind, key),
        );
        Ok(Reply {
            status: 202,
            body: Some(body),
            lro: Some(lro),
        })
    }

    /// A disk or snapshot as the body describes it, before its creation
    /// option fills in size, storage and source.
    pub(super) fn new_disk(
        &mut self,
        t: &Target,
        body: &Value,
        props: &Value,
        snapshot: bool,
        now: f64,
    ) -> Disk {
        let location = body
            .get("location")
            .and_then(Value::as_str)
            .unwrap_or(&self.location)
            .to_string();
        let sku = body
            .pointer("/sku/name")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| "Standard_LRS".into());
        Disk {
            id: t.id.clone(),
            name: t.name.clone(),
            rg: t.rg.clone(),
            location,
            zones: body.get("zones").filter(|z| z.is_array()).cloned(),
            sku,
            tags: body
                .get("tags")
                .filter(|v| v.is_object())
                .cloned()
                .unwrap_or(json!({})),
            size_bytes: 0,
            blob: None,
            create_option: String::new(),
            upload_size: None,
            source_id: None,
            source_unique: None,
            os_type: props
                .get("osType")
                .and_then(Value::as_str)
                .map(str::to_string),
            hyper_v: props
                .get("hyperVGeneration")
                .and_then(Value::as_str)
                .map(str::to_string),
            security: props
                .get("securityProfile")
                .filter(|v| v.is_object())
                .cloned(),
            purchase_plan: props.get("purchasePlan").filter(|v| v.is_object()).cloned(),
            incremental: if snapshot {
                Some(
                    props
                        .get("incremental")
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                )
            } else {
                None
            },
            unique_id: self.rng.uuid(),
            time_created: now,
            managed_by: None,
            access: None,
            upload: None,
            provisioning: "Updating".into(),
            ever_ade: false,
            ade_enabled: false,
            guest_encrypted: false,
            key_vault: None,
            snapshot,
            stored: if snapshot {
                serde_json::Map::new()
            } else {
                stored_of(props)
            },
            encryption: None,
        }
    }

    /// The regional usage a new disk or snapshot counts against must have
    /// room for it. Azure refuses a create beyond a quota with
    /// `OperationNotAllowed` "Operation could not be completed as it results
    /// in exceeding approved ... quota" (the regional cores quota message of
    /// the common VM error list; that disk and snapshot counts answer in the
    /// same form is INFERRED).
    fn check_quota(&self, d: &Disk) -> Result<(), ArmError> {
        let name = if d.snapshot {
            Some(crate::model::usage::snapshot_usage_name(&d.sku))
        } else {
            crate::model::usage::disk_usage_name(&d.sku)
        };
        let Some(name) = name else { return Ok(()) };
        let Some(limit) = self.gov.limit(name) else {
            return Ok(());
        };
        let used = self
            .usage_counts(&d.location)
            .get(name)
            .copied()
            .unwrap_or(0);
        if used < limit {
            return Ok(());
        }
        Err(ArmError::conflict(format!(
            "Operation could not be completed as it results in exceeding approved {name} quota. Additional details - Location: {}, Current Limit: {limit}, Current Usage: {used}, Additional Required: 1, (Minimum) New Limit Required: {}.",
            d.location,
            used + 1
        )))
    }

    /// `createOption: Upload`: an empty blob of `uploadSizeBytes` (in range,
    /// a MiB multiple plus the 512-byte footer), ready to upload.
    pub(super) fn create_upload(&mut self, d: &mut Disk, creation: &Value) -> Result<(), ArmError> {
        let Some(n) = creation.get("uploadSizeBytes").and_then(Value::as_u64) else {
            return Err(ArmError::bad_request(
                "InvalidParameter",
                "Required parameter 'creationData.uploadSizeBytes' is missing (null).",
            )
            .with_target("uploadSizeBytes"));
        };
        if !(MIN_UPLOAD..=MAX_UPLOAD).contains(&n) {
            return Err(ArmError::bad_request(
                "BadRequest",
                format!(
                    "The upload size in bytes {n} is out of range. It must be between {MIN_UPLOAD} and {MAX_UPLOAD} bytes."
                ),
            ));
        }
        if (n - 512) % MIB != 0 {
            return Err(ArmError::bad_request(
                "BadRequest",
                format!(
                    "The upload size in bytes {n} - 512 bytes for the VHD footer ({} in this case) must be a multiple of MiB.",
                    n - 512
                ),
            ));
        }
        d.blob = Some(self.blobs.create_upload(n));
        d.size_bytes = n - 512;
        d.upload_size = Some(n);
        d.upload = Some(UploadPhase::Ready);
        d.create_option = "Upload".into();
        Ok(())
    }

    /// `createOption: Empty`: a zeroed blob of `diskSizeGB`.
    pub(super) fn create_empty(&mut self, d: &mut Disk, props: &Value) -> Result<(), ArmError> {
        let Some(gb) = props
            .get("diskSizeGB")
            .and_then(Value::as_u64)
            .filter(|g| *g > 0)
        else {
            return Err(ArmError::bad_request(
                "InvalidParameter",
                "Required parameter 'diskSizeGB' is missing (null).",
            )
            .with_target("diskSizeGB"));
        };
        d.size_bytes = gb * GIB;
        d.blob = Some(self.blobs.create_upload(gb * GIB + 512));
        d.create_option = "Empty".into();
        Ok(())
    }

    pub(super) fn disk_update(
        &mut self,
        t: &Target,
        body: Value,
        snapshot: bool,
        inject: bool,
        now: f64,
        status: u16,
    ) -> Result<Reply, ArmError> {
        let key = t.key();
        let d = self
            .disk_map_mut(snapshot)
            .get_mut(&key)
            .ok_or_else(|| Self::disk_not_found(t, snapshot))?;
        if let Some(tags) = body.get("tags").filter(|v| v.is_object()) {
            d.tags = tags.clone();
        }
        if let Some(s) = body.pointer("/sku/name").and_then(Value::as_str) {
            d.sku = s.to_string();
        }
        if let Some(p) = body.get("properties") {
            if let Some(v) = p.get("osType").and_then(Value::as_str) {
                d.os_type = Some(v.to_string());
            }
            if let Some(v) = p.get("hyperVGeneration").and_then(Value::as_str) {
                d.hyper_v = Some(v.to_string());
            }
            if let Some(v) = p.get("purchasePlan").filter(|v| v.is_object()) {
                d.purchase_plan = Some(v.clone());
            }
            if let Some(v) = p.get("securityProfile").filter(|v| v.is_object()) {
                d.security = Some(v.clone());
            }
            if !snapshot {
                d.stored.extend(stored_of(p));
            }
        }
        let was = d.provisioning.clone();
        d.provisioning = "Updating".into();
        let d = self.disk_map(snapshot)[&key].clone();
        let body = self.disk_body(&d);
        let dur = self.draw(self.durations.disk_create);
        let kind = if snapshot {
            ResourceKind::Snapshot
        } else {
            ResourceKind::Disk
        };
        // A re-PUT during creation keeps the creation semantics on failure.
        let new = was != "Succeeded" && self.ops.values().any(|o| o.running() && matches!(&o.effect, Some(Effect::DiskCreate { key: k, new: true, .. }) if *k == key));
        let _ = new;
        let lro = self.new_op(
            now,
            OpFamily::Disk,
            dur,
            Effect::DiskCreate {
                key: key.clone(),
                snapshot,
                new: false,
            },
            inject,
            Final::Resource(kind, key),
        );
        Ok(Reply {
            status,
            body: Some(body),
            lro: Some(lro),
        })
    }

    /// `PATCH` disk or snapshot (tags, sku, a few properties).
    pub(crate) fn disk_patch(
        &mut self,
        t: &Target,
        body: Value,
        snapshot: bool,
        inject: bool,
        now: f64,
    ) -> Result<Reply, ArmError> {
        self.disk_of(t, snapshot)?;
        self.disk_update(t, body, snapshot, inject, now, 200)
    }

    /// `DELETE` disk or snapshot.
    pub(crate) fn disk_delete(
        &mut self,
        t: &Target,
        snapshot: bool,
        inject: bool,
        now: f64,
    ) -> Result<Reply, ArmError> {
        let key = t.key();
        let Some(d) = self.disk_map(snapshot).get(&key) else {
            return Ok(Reply::no_content());
        };
        if let Some(vm) = d.managed_by.as_ref().and_then(|k| self.vms.get(k)) {
            return Err(ArmError::conflict(format!(
                "Disk {} is attached to VM {}.",
                d.name, vm.id
            )));
        }
        let state = self.disk_state(d);
        if matches!(state, "ActiveSAS" | "ActiveUpload") {
            return Err(ArmError::conflict(format!(
                "Disk {} cannot be deleted while it is in state '{state}'. Call endGetAccess first.",
                d.name
            )));
        }
        let dur = self.draw(self.durations.disk_delete);
        let lro = self.new_op(
            now,
            OpFamily::Disk,
            dur,
            Effect::DiskDelete {
                key: key.clone(),
                snapshot,
            },
            inject,
            Final::NoContent,
        );
        if let Some(d) = self.disk_map_mut(snapshot).get_mut(&key) {
            d.provisioning = "Deleting".into();
        }
        Ok(Reply::accepted(lro))
    }

    /// `DiskCreate` done: provisioned.
    pub(super) fn apply_disk_create(
        &mut self,
        key: &str,
        snapshot: bool,
    ) -> Result<Option<Value>, ArmError> {
        if let Some(d) = self.disk_map_mut(snapshot).get_mut(key) {
            d.provisioning = "Succeeded".into();
        }
        Ok(None)
    }

    /// `DiskCreate` failed: a new disk goes (with its blob), an updated one
    /// is back to `Succeeded`.
    pub(super) fn undo_disk_create(&mut self, key: &str, snapshot: bool, new: bool) {
        let map = if snapshot {
            &mut self.snapshots
        } else {
            &mut self.disks
        };
        if new {
            if let Some(d) = map.remove(key)
                && let Some(b) = d.blob
            {
                self.blobs.delete(&b);
            }
        } else if let Some(d) = map.get_mut(key) {
            d.provisioning = "Succeeded".into();
        }
    }

    /// `DiskDelete` done: the disk and its blob go.
    pub(super) fn apply_disk_delete(
        &mut self,
        key: &str,
        snapshot: bool,
    ) -> Result<Option<Value>, ArmError> {
        let map = if snapshot {
            &mut self.snapshots
        } else {
            &mut self.disks
        };
        if let Some(d) = map.remove(key)
            && let Some(b) = d.blob
        {
            self.blobs.delete(&b);
        }
        Ok(None)
    }

    /// `DiskDelete` failed: the disk stays.
    pub(super) fn undo_disk_delete(&mut self, key: &str, snapshot: bool) {
        if let Some(d) = self.disk_map_mut(snapshot).get_mut(key) {
            d.provisioning = "Succeeded".into();
        }
    }
}
