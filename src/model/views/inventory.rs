//! The inventory answers `plan`'s preflight reads: management locks,
//! Azure Backup protection status and Compute usages.

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
