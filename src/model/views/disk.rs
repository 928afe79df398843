//! A managed disk (`Microsoft.Compute/disks`, DiskRP 2025-01-02) or a
//! snapshot (`Microsoft.Compute/snapshots`): the two share their shape.

use serde_json::Value;

use super::{object, present, raw_fields, str_fields, string};

/// A managed disk or snapshot GET body (or the journaled source model).
#[derive(Debug, Clone, Copy)]
pub struct DiskModel<'a>(&'a Value);

/// A snapshot reads through the same view as a disk.
pub type SnapshotModel<'a> = DiskModel<'a>;

impl<'a> DiskModel<'a> {
    /// A view of `raw`.
    pub fn new(raw: &'a Value) -> Self {
        DiskModel(raw)
    }

    /// The model exactly as read, unknown properties included.
    pub fn raw(&self) -> &'a Value {
        self.0
    }

    str_fields! {
        /// Resource id.
        id => "id";
        /// Name.
        name => "name";
        /// Region.
        location => "location";
        /// `managedBy`: the VM a disk is attached to (absent when detached).
        managed_by => "managedBy";
    }

    raw_fields! {
        /// `zones` verbatim.
        zones => "zones";
    }

    /// `sku` verbatim (an explicit `null` included).
    pub fn sku_value(&self) -> Option<&'a Value> {
        self.0.get("sku")
    }

    /// `sku.name` (`Premium_LRS`, `UltraSSD_LRS`...).
    pub fn sku_name(&self) -> Option<&'a str> {
        string(object(self.0, "sku"), "name")
    }

    /// `tags` as a map (absent when missing or not an object).
    pub fn tag_map(&self) -> Option<&'a serde_json::Map<String, Value>> {
        self.0.get("tags").and_then(Value::as_object)
    }

    /// The value of tag `key`.
    pub fn tag(&self, key: &str) -> Option<&'a str> {
        string(object(self.0, "tags"), key)
    }

    /// `properties`.
    pub fn properties(&self) -> DiskProperties<'a> {
        DiskProperties(object(self.0, "properties"))
    }
}

/// The disk's (or snapshot's) `properties`.
#[derive(Debug, Clone, Copy)]
pub struct DiskProperties<'a>(&'a Value);

impl<'a> DiskProperties<'a> {
    /// `properties` exactly as read.
    pub fn raw(&self) -> &'a Value {
        self.0
    }

    str_fields! {
        /// `Unattached`, `Reserved`, `ActiveSAS`, `ActiveUpload`...
        disk_state => "diskState";
        /// `provisioningState`.
        provisioning_state => "provisioningState";
        /// `uniqueId`: stable for the life of the resource (a disk re-created
        /// under the same name gets a new one).
        unique_id => "uniqueId";
    }

    raw_fields! {
        /// `osType` verbatim.
        os_type => "osType";
        /// `hyperVGeneration` verbatim.
        hyper_v_generation => "hyperVGeneration";
        /// `purchasePlan` verbatim.
        purchase_plan => "purchasePlan";
        /// `supportedCapabilities` verbatim.
        supported_capabilities => "supportedCapabilities";
        /// `networkAccessPolicy` verbatim.
        network_access_policy => "networkAccessPolicy";
        /// `diskAccessId` verbatim.
        disk_access_id => "diskAccessId";
        /// `publicNetworkAccess` verbatim.
        public_network_access => "publicNetworkAccess";
        /// The ADE stamp (`encryptionSettingsCollection`) verbatim.
        encryption_settings_collection => "encryptionSettingsCollection";
    }

    /// `diskSizeBytes` (the SAS blob is 512 bytes longer).
    pub fn disk_size_bytes(&self) -> Option<u64> {
        self.0.get("diskSizeBytes").and_then(Value::as_u64)
    }

    /// `maxShares` (more than 1: a shared disk).
    pub fn max_shares(&self) -> Option<u64> {
        self.0.get("maxShares").and_then(Value::as_u64)
    }

    /// `creationData.createOption` (`Upload`, `Copy`, `FromImage`...).
    pub fn create_option(&self) -> Option<&'a str> {
        string(object(self.0, "creationData"), "createOption")
    }

    /// `creationData.uploadSizeBytes` (Upload disks).
    pub fn upload_size_bytes(&self) -> Option<u64> {
        object(self.0, "creationData")
            .get("uploadSizeBytes")
            .and_then(Value::as_u64)
    }

    /// `encryptionSettingsCollection.enabled`.
    pub fn ade_enabled(&self) -> Option<bool> {
        present(self.0, "encryptionSettingsCollection")
            .and_then(|c| c.get("enabled"))
            .and_then(Value::as_bool)
    }

    /// The key vault references of the ADE stamp: every
    /// `diskEncryptionKey` (`sourceVault.id`, `secretUrl`) and
    /// `keyEncryptionKey` (`sourceVault.id`, `keyUrl`) of
    /// `encryptionSettingsCollection.encryptionSettings[]`, as
    /// `(vault id, secret or key URL)`.
    pub fn ade_key_refs(&self) -> Vec<(Option<&'a str>, &'a str)> {
        let settings = present(self.0, "encryptionSettingsCollection")
            .and_then(|c| c.get("encryptionSettings"))
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let mut out = Vec::new();
        for s in settings {
            for (key, url) in [
                ("diskEncryptionKey", "secretUrl"),
                ("keyEncryptionKey", "keyUrl"),
            ] {
                let k = object(s, key);
                if let Some(u) = string(k, url) {
                    out.push((string(object(k, "sourceVault"), "id"), u));
                }
            }
        }
        out
    }

    /// `securityProfile.securityType` (`TrustedLaunch`...).
    pub fn security_type(&self) -> Option<&'a str> {
        string(object(self.0, "securityProfile"), "securityType")
    }

    /// `encryption.type` (`EncryptionAtRestWithPlatformKey`,
    /// `EncryptionAtRestWithCustomerKey`, `EncryptionAtRestWithPlatformAndCustomerKeys`).
    pub fn encryption_type(&self) -> Option<&'a str> {
        string(object(self.0, "encryption"), "type")
    }

    /// `encryption.diskEncryptionSetId` (customer-managed keys).
    pub fn disk_encryption_set_id(&self) -> Option<&'a str> {
        string(object(self.0, "encryption"), "diskEncryptionSetId")
    }
}
