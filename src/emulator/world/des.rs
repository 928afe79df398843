//! Disk encryption sets (`Microsoft.Compute/diskEncryptionSets/{name}`,
//! DiskRP 2025-01-02): `GET`/`PUT`, and the rule a disk create with
//! customer-managed keys must pass.
//!
//! Facts: a DES holds `location`, `properties.encryptionType`
//! (`EncryptionAtRestWithCustomerKey` / `...PlatformAndCustomerKeys`) and
//! `properties.activeKey` (`sourceVault.id`, `keyUrl`) (facts §8, Compute
//! spec `DiskEncryptionSet`); a disk with `encryption.type` CMK names one in
//! `encryption.diskEncryptionSetId` (facts §1.3, §3.3). Microsoft docs
//! (`disk-encryption.md`, "Restrictions"): the DES, the disks and the VM
//! must be in the same region. The exact error texts are not documented:
//! the codes below (`NotFound`-style `InvalidParameter`, `BadRequest`) are
//! [INFERRED] from the Compute error list (facts §7.3).

use super::*;

/// A disk encryption set.
#[derive(Debug, Clone)]
pub(crate) struct Des {
    id: String,
    name: String,
    location: String,
    encryption_type: String,
    key_vault: String,
    tags: Value,
    /// False: every read is refused with 403 (the caller lacks
    /// `Microsoft.Compute/diskEncryptionSets/read`), for tests.
    readable: bool,
}

impl Des {
    fn body(&self) -> Value {
        let kv_name = self.key_vault.rsplit('/').next().unwrap_or("kv");
        json!({
            "id": self.id, "name": self.name, "type": "Microsoft.Compute/diskEncryptionSets",
            "location": self.location, "tags": self.tags,
            "identity": {"type": "SystemAssigned"},
            "properties": {
                "encryptionType": self.encryption_type,
                "activeKey": {"sourceVault": {"id": self.key_vault},
                              "keyUrl": format!("https://{kv_name}.vault.azure.net/keys/disk-key/0123456789abcdef")},
                "rotationToLatestKeyVersionEnabled": false,
                "provisioningState": "Succeeded",
            }
        })
    }
}

impl World {
    /// Adds (or replaces) a DES named by `id` in `location`.
    pub(crate) fn add_des(&mut self, id: &str, location: &str, encryption_type: &str) {
        let rid = ResourceId::parse(id).expect("a DES id");
        let kv = format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.KeyVault/vaults/kv-{}",
            rid.subscription(),
            rid.resource_group(),
            rid.name()
        );
        self.des.insert(
            key_of(id),
            Des {
                id: id.to_string(),
                name: rid.name().to_string(),
                location: location.to_string(),
                encryption_type: encryption_type.to_string(),
                key_vault: kv,
                tags: json!({}),
                readable: true,
            },
        );
    }

    /// Makes reads of DES `id` refused (403), or allowed again.
    pub(crate) fn set_des_readable(&mut self, id: &str, readable: bool) {
        if let Some(d) = self.des.get_mut(&key_of(id)) {
            d.readable = readable;
        }
    }

    /// Seeds disk `disk` as encrypted with DES `des` (its type).
    pub(crate) fn set_disk_des(&mut self, disk: &str, des: &str) -> bool {
        let Some(d) = self.des.get(&key_of(des)) else {
            return false;
        };
        let enc = json!({"type": d.encryption_type, "diskEncryptionSetId": d.id});
        match self.disks.get_mut(&key_of(disk)) {
            Some(x) => {
                x.encryption = Some(enc);
                true
            }
            None => false,
        }
    }

    /// `GET` a DES.
    pub(crate) fn des_get(&self, t: &Target) -> Result<Value, ArmError> {
        let d = self
            .des
            .get(&t.key())
            .ok_or_else(|| not_found("Microsoft.Compute/diskEncryptionSets", &t.name, &t.rg))?;
        if !d.readable {
            return Err(ArmError::new(
                403,
                "AuthorizationFailed",
                format!(
                    "The client does not have authorization to perform action 'Microsoft.Compute/diskEncryptionSets/read' over scope '{}' or the scope is invalid.",
                    d.id
                ),
            ));
        }
        Ok(d.body())
    }

    /// `PUT` a DES (synchronous here; the key vault is not modelled).
    pub(crate) fn des_put(&mut self, t: &Target, body: &Value) -> Result<Reply, ArmError> {
        let location = body
            .get("location")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                ArmError::bad_request(
                    "InvalidParameter",
                    "Required parameter 'location' is missing (null).",
                )
                .with_target("location")
            })?
            .to_string();
        let kind = body
            .pointer("/properties/encryptionType")
            .and_then(Value::as_str)
            .unwrap_or("EncryptionAtRestWithCustomerKey")
            .to_string();
        let existed = self.des.contains_key(&t.key());
        self.add_des(&t.id, &location, &kind);
        if let Some(kv) = body
            .pointer("/properties/activeKey/sourceVault/id")
            .and_then(Value::as_str)
            && let Some(d) = self.des.get_mut(&t.key())
        {
            d.key_vault = kv.to_string();
        }
        if let Some(d) = self.des.get_mut(&t.key()) {
            d.tags = body.get("tags").cloned().unwrap_or(json!({}));
        }
        Ok(Reply {
            status: if existed { 200 } else { 201 },
            body: self.des.get(&t.key()).map(Des::body),
            lro: None,
        })
    }

    /// The `encryption` a disk create asks for, checked: a customer-key
    /// type needs an existing DES of that type in the disk's region; a
    /// platform-key type takes no DES. `None`: no `encryption` given.
    pub(super) fn check_disk_encryption(
        &self,
        props: &Value,
        location: &str,
    ) -> Result<Option<Value>, ArmError> {
        let Some(enc) = props.get("encryption").filter(|e| e.is_object()) else {
            return Ok(None);
        };
        let kind = enc
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("EncryptionAtRestWithPlatformKey");
        let des_id = enc.get("diskEncryptionSetId").and_then(Value::as_str);
        let pmk = kind.eq_ignore_ascii_case("EncryptionAtRestWithPlatformKey");
        match (pmk, des_id) {
            (true, None) => Ok(Some(json!({"type": kind}))),
            (true, Some(_)) => Err(ArmError::bad_request(
                "InvalidParameter",
                "diskEncryptionSetId cannot be set when encryption type is EncryptionAtRestWithPlatformKey.",
            )
            .with_target("encryption.diskEncryptionSetId")),
            (false, None) => Err(ArmError::bad_request(
                "InvalidParameter",
                format!("Required parameter 'encryption.diskEncryptionSetId' is missing (null) for encryption type {kind}."),
            )
            .with_target("encryption.diskEncryptionSetId")),
            (false, Some(id)) => {
                let Some(d) = self.des.get(&key_of(id)) else {
                    return Err(ArmError::bad_request(
                        "InvalidParameter",
                        format!("Disk encryption set '{id}' was not found."),
                    )
                    .with_target("encryption.diskEncryptionSetId"));
                };
                if !d.location.replace(' ', "").eq_ignore_ascii_case(&location.replace(' ', "")) {
                    return Err(ArmError::bad_request(
                        "BadRequest",
                        format!(
                            "Disk encryption set '{}' is in location '{}' but the disk is in '{location}'; they must be in the same region.",
                            d.id, d.location
                        ),
                    ));
                }
                if !d.encryption_type.eq_ignore_ascii_case(kind) {
                    return Err(ArmError::bad_request(
                        "BadRequest",
                        format!(
                            "Encryption type {kind} does not match the encryption type {} of disk encryption set '{}'.",
                            d.encryption_type, d.id
                        ),
                    ));
                }
                Ok(Some(json!({"type": kind, "diskEncryptionSetId": d.id})))
            }
        }
    }
}
