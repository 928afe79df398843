//! The inventory answers `plan`'s preflight reads (and the run's
//! validate-before-delete reads): management locks, Azure Backup protection
//! status, Compute usages, disk encryption sets and resource SKUs.

use serde_json::Value;

use super::{object, str_fields, string};

/// A management lock (`Microsoft.Authorization/locks`).
#[derive(Debug, Clone, Copy)]
pub struct LockModel<'a>(&'a Value);

impl<'a> LockModel<'a> {
    /// A view of `raw`.
    pub fn new(raw: &'a Value) -> Self {
        LockModel(raw)
    }

    str_fields! {
        /// Lock id (its scope followed by `/providers/Microsoft.Authorization/locks/{name}`).
        id => "id";
        /// Lock name.
        name => "name";
    }

    /// `properties.level` (`CanNotDelete`, `ReadOnly`).
    pub fn level(&self) -> Option<&'a str> {
        string(object(self.0, "properties"), "level")
    }
}

/// A `backupStatus` answer (Recovery Services).
#[derive(Debug, Clone, Copy)]
pub struct BackupStatus<'a>(&'a Value);

impl<'a> BackupStatus<'a> {
    /// A view of `raw`.
    pub fn new(raw: &'a Value) -> Self {
        BackupStatus(raw)
    }

    str_fields! {
        /// `Protected`, `NotProtected`, `Invalid`...
        protection_status => "protectionStatus";
        /// Recovery Services vault id.
        vault_id => "vaultId";
        /// Backup policy name.
        policy_name => "policyName";
    }
}

/// One Compute usage (`locations/{loc}/usages`).
#[derive(Debug, Clone, Copy)]
pub struct UsageModel<'a>(&'a Value);

impl<'a> UsageModel<'a> {
    /// A view of `raw`.
    pub fn new(raw: &'a Value) -> Self {
        UsageModel(raw)
    }

    /// `name.value` (e.g. `PremiumDiskCount`).
    pub fn name(&self) -> Option<&'a str> {
        string(object(self.0, "name"), "value")
    }

    /// `limit` (a number; a fractional one is floored, a negative one is 0).
    pub fn limit(&self) -> Option<u64> {
        num(self.0, "limit")
    }

    /// `currentValue` (as `limit`).
    pub fn current_value(&self) -> Option<u64> {
        num(self.0, "currentValue")
    }
}

fn num(v: &Value, key: &str) -> Option<u64> {
    let x = v.get(key)?;
    x.as_u64().or_else(|| x.as_f64().map(|f| f.max(0.0) as u64))
}

/// A disk encryption set (`Microsoft.Compute/diskEncryptionSets`, DiskRP 2025-01-02).
#[derive(Debug, Clone, Copy)]
pub struct DesModel<'a>(&'a Value);

impl<'a> DesModel<'a> {
    /// A view of `raw`.
    pub fn new(raw: &'a Value) -> Self {
        DesModel(raw)
    }

    str_fields! {
        /// Resource id.
        id => "id";
        /// Region.
        location => "location";
    }

    /// `properties.encryptionType` (`EncryptionAtRestWithCustomerKey`, ...).
    pub fn encryption_type(&self) -> Option<&'a str> {
        string(object(self.0, "properties"), "encryptionType")
    }

    /// `properties.provisioningState`.
    pub fn provisioning_state(&self) -> Option<&'a str> {
        string(object(self.0, "properties"), "provisioningState")
    }

    /// `properties.activeKey.sourceVault.id` (the key vault holding the key).
    pub fn key_vault_id(&self) -> Option<&'a str> {
        string(
            object(
                object(object(self.0, "properties"), "activeKey"),
                "sourceVault",
            ),
            "id",
        )
    }
}

/// A resource SKU (`Microsoft.Compute/skus`, one VM size).
#[derive(Debug, Clone, Copy)]
pub struct SkuModel<'a>(&'a Value);

impl<'a> SkuModel<'a> {
    /// A view of `raw`.
    pub fn new(raw: &'a Value) -> Self {
        SkuModel(raw)
    }

    str_fields! {
        /// Size name.
        name => "name";
    }

    /// The value of capability `name` (values are strings, even booleans).
    pub fn capability(&self, name: &str) -> Option<&'a str> {
        self.0
            .get("capabilities")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|c| {
                c.get("name")
                    .and_then(Value::as_str)
                    .is_some_and(|n| n.eq_ignore_ascii_case(name))
            })
            .and_then(|c| c.get("value").and_then(Value::as_str))
    }

    /// `restrictions[]` as (type, reasonCode, zones of `restrictionInfo`).
    pub fn restrictions(&self) -> Vec<(&'a str, &'a str, Vec<&'a str>)> {
        self.0
            .get("restrictions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|r| {
                let zones = object(r, "restrictionInfo")
                    .get("zones")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                (
                    string(r, "type").unwrap_or_default(),
                    string(r, "reasonCode").unwrap_or_default(),
                    zones,
                )
            })
            .collect()
    }
}
