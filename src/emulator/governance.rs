//! Management locks (`Microsoft.Authorization/locks`), Azure Backup
//! protection (`.../Microsoft.RecoveryServices/locations/{loc}/backupStatus`)
//! and regional Compute usages (`.../Microsoft.Compute/locations/{loc}/usages`).
//!
//! Locks, as Azure applies them (Azure docs "Lock your resources"): a lock at a
//! scope applies to that scope and everything under it. `CanNotDelete`
//! refuses DELETE; `ReadOnly` refuses DELETE and every write (PUT, PATCH and
//! POST actions such as start, deallocate, beginGetAccess). The refusal is
//! 409 `ScopeLocked` with the message seen in public reports
//! (Azure/azure-cli#20232, Azure/apiops#606, terraform-provider-azurerm#17478):
//! "The scope '<target>' cannot perform delete operation because following
//! scope(s) are locked: '<lock scope>'. Please remove the lock and try again."
//! (`write operation` for writes). INFERRED: several locked scopes are listed
//! as `'a','b'`; the lock scope is given as stored.
//!
//! INFERRED (not in a source read): a VM create, update or delete is also a
//! write on the disks and NICs it attaches or detaches (a ReadOnly lock on
//! one refuses it), and a VM delete is a delete of the disks and NICs whose
//! `deleteOption` is `Delete` (any lock on one refuses it); VM power actions
//! are writes on the VM only.
//!
//! Listing (`GET {scope}/providers/Microsoft.Authorization/locks`): without a
//! filter, every lock at the scope or below it; with `$filter=atScope()`,
//! every lock that applies at the scope (at it or above it, i.e. inherited
//! from the resource group and subscription). INFERRED from the spec's
//! operation descriptions ("for a resource or any level below") and the
//! filter's name; not checked against a live subscription.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::world::ArmError;

/// Lock level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockLevel {
    /// Refuses deletes.
    CanNotDelete,
    /// Refuses deletes and writes.
    ReadOnly,
}

impl LockLevel {
    /// `CanNotDelete` / `ReadOnly`.
    pub fn as_str(self) -> &'static str {
        match self {
            LockLevel::CanNotDelete => "CanNotDelete",
            LockLevel::ReadOnly => "ReadOnly",
        }
    }

    /// Parses a level (case-insensitive).
    pub fn parse(s: &str) -> Option<LockLevel> {
        match s.to_ascii_lowercase().as_str() {
            "cannotdelete" => Some(LockLevel::CanNotDelete),
            "readonly" => Some(LockLevel::ReadOnly),
            _ => None,
        }
    }
}

/// What a request does to its target, for lock checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LockOp {
    /// PUT / PATCH / POST action.
    Write,
    /// DELETE.
    Delete,
}

#[derive(Debug, Clone)]
struct Lock {
    id: String,
    scope: String,
    name: String,
    level: LockLevel,
    notes: Option<String>,
}

impl Lock {
    fn body(&self) -> Value {
        let mut props = json!({"level": self.level.as_str()});
        if let Some(n) = &self.notes {
            props["notes"] = json!(n);
        }
        json!({"id": self.id, "type": "Microsoft.Authorization/locks", "name": self.name, "properties": props})
    }
}

/// Backup protection of one VM.
#[derive(Debug, Clone)]
struct Protection {
    vault_id: String,
    policy: String,
    rg: String,
    vm: String,
}

/// Default regional limits of the managed-disk and snapshot usages (Azure's
/// documented defaults: 50,000 managed disks per type, 75,000 snapshots).
const DEFAULT_LIMITS: &[(&str, &str, u64)] = &[
    (
        "StandardDiskCount",
        "Standard Storage Managed Disks",
        50_000,
    ),
    ("StandardSSDDiskCount", "StandardSSDStorageDisks", 50_000),
    ("PremiumDiskCount", "Premium Storage Managed Disks", 50_000),
    ("UltraSSDDiskCount", "UltraSSDStorageDisks", 1_000),
    ("StandardSnapshotCount", "StandardStorageSnapshots", 75_000),
    ("PremiumSnapshotCount", "PremiumStorageSnapshots", 75_000),
    ("ZRSSnapshotCount", "ZRSStorageSnapshots", 75_000),
];

/// An Azure Policy assignment with the `deny` effect on VM writes whose
/// request body has `value` at JSON pointer `field` (issue 13: the refusal
/// that makes a re-create fail terminally, for the automatic rollback).
///
/// Azure Policy evaluates a create or update request against the assigned
/// definitions in scope and refuses a match of a `deny` policy with HTTP 403
/// `RequestDisallowedByPolicy`, "Resource '<name>' was disallowed by
/// policy. Policy identifiers: ..." (Microsoft docs, "Resolve errors for
/// request disallowed by policy", learn.microsoft.com/azure/azure-resource-
/// manager/troubleshooting/error-policy-requestdisallowedbypolicy).
/// INFERRED simplification: only the request body is matched (Azure
/// evaluates the resulting resource), and only one field per assignment.
#[derive(Debug, Clone)]
struct PolicyDeny {
    scope: String,
    name: String,
    field: String,
    value: Value,
}

/// Locks, backup protection and usage limits of one emulator.
#[derive(Debug, Clone)]
pub(crate) struct Governance {
    locks: BTreeMap<String, Lock>,
    policies: Vec<PolicyDeny>,
    backup: BTreeMap<String, Protection>,
    limits: BTreeMap<String, (String, u64)>,
}

impl Default for Governance {
    fn default() -> Self {
        Governance {
            locks: BTreeMap::new(),
            policies: Vec::new(),
            backup: BTreeMap::new(),
            limits: DEFAULT_LIMITS
                .iter()
                .map(|(n, l, v)| (n.to_string(), (l.to_string(), *v)))
                .collect(),
        }
    }
}

fn norm(s: &str) -> String {
    s.trim().trim_end_matches('/').to_ascii_lowercase()
}

/// True when `scope` is `id` or one of its ancestors.
pub(crate) fn covers(scope: &str, id: &str) -> bool {
    let (s, i) = (norm(scope), norm(id));
    i == s || i.starts_with(&format!("{s}/"))
}

fn lock_id(scope: &str, name: &str) -> String {
    format!(
        "{}/providers/Microsoft.Authorization/locks/{name}",
        scope.trim_end_matches('/')
    )
}

/// The 409 `ScopeLocked` answer.
pub(crate) fn scope_locked(target: &str, op: LockOp, scopes: &[String]) -> ArmError {
    let op = match op {
        LockOp::Write => "write",
        LockOp::Delete => "delete",
    };
    ArmError::new(
        409,
        "ScopeLocked",
        format!(
            "The scope '{target}' cannot perform {op} operation because following scope(s) are locked: '{}'. Please remove the lock and try again.",
            scopes.join("','")
        ),
    )
}

impl Governance {
    /// Adds or replaces a lock; true when it was new.
    pub(crate) fn add_lock(
        &mut self,
        scope: &str,
        name: &str,
        level: LockLevel,
        notes: Option<String>,
    ) -> bool {
        let scope = scope.trim_end_matches('/').to_string();
        let id = lock_id(&scope, name);
        self.locks
            .insert(
                norm(&id),
                Lock {
                    id,
                    scope,
                    name: name.to_string(),
                    level,
                    notes,
                },
            )
            .is_none()
    }

    /// Removes a lock; true when it existed.
    pub(crate) fn remove_lock(&mut self, scope: &str, name: &str) -> bool {
        self.locks.remove(&norm(&lock_id(scope, name))).is_some()
    }

    /// `PUT {scope}/providers/Microsoft.Authorization/locks/{name}`.
    pub(crate) fn lock_put(
        &mut self,
        scope: &str,
        name: &str,
        body: &Value,
    ) -> Result<(u16, Value), ArmError> {
        let level = body
            .pointer("/properties/level")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let Some(level) = LockLevel::parse(level) else {
            return Err(ArmError::new(
                400,
                "InvalidLockLevel",
                format!(
                    "The lock level '{level}' is invalid. Valid values are 'CanNotDelete' and 'ReadOnly'."
                ),
            ));
        };
        let notes = body
            .pointer("/properties/notes")
            .and_then(Value::as_str)
            .map(str::to_string);
        let created = self.add_lock(scope, name, level, notes);
        let v = self.lock_get(scope, name)?;
        Ok((if created { 201 } else { 200 }, v))
    }

    /// `GET` one lock.
    pub(crate) fn lock_get(&self, scope: &str, name: &str) -> Result<Value, ArmError> {
        self.locks
            .get(&norm(&lock_id(scope, name)))
            .map(Lock::body)
            .ok_or_else(|| {
                ArmError::new(
                    404,
                    "LockNotFound",
                    format!("The lock '{name}' could not be found."),
                )
            })
    }

    /// `DELETE` one lock: 200 if it existed, 204 if not.
    pub(crate) fn lock_delete(&mut self, scope: &str, name: &str) -> u16 {
        if self.remove_lock(scope, name) {
            200
        } else {
            204
        }
    }

    /// `GET {scope}/providers/Microsoft.Authorization/locks[?$filter=atScope()]`.
    pub(crate) fn lock_list(&self, scope: &str, at_scope: bool) -> Value {
        let value: Vec<Value> = self
            .locks
            .values()
            .filter(|l| {
                if at_scope {
                    covers(&l.scope, scope)
                } else {
                    covers(scope, &l.scope)
                }
            })
            .map(Lock::body)
            .collect();
        json!({ "value": value })
    }

    /// The `ScopeLocked` refusal of `op` on `target`, if a lock forbids it.
    /// `linked` are resources the request also writes (the disks and NICs a
    /// VM create/update/delete attaches or detaches): a `ReadOnly` lock on
    /// them refuses it too; `(id, true)` entries are deleted with the target
    /// (deleteOption=Delete), so any lock on them refuses it.
    pub(crate) fn check(
        &self,
        target: &str,
        op: LockOp,
        linked: &[(String, bool)],
    ) -> Option<ArmError> {
        let blocking = |id: &str, op: LockOp| -> Vec<String> {
            let mut s: Vec<String> = self
                .locks
                .values()
                .filter(|l| covers(&l.scope, id))
                .filter(|l| op == LockOp::Delete || l.level == LockLevel::ReadOnly)
                .map(|l| l.scope.clone())
                .collect();
            s.dedup();
            s
        };
        let own = blocking(target, op);
        if !own.is_empty() {
            return Some(scope_locked(target, op, &own));
        }
        for (id, deleted) in linked {
            let lop = if *deleted {
                LockOp::Delete
            } else {
                LockOp::Write
            };
            let s = blocking(id, lop);
            if !s.is_empty() {
                return Some(scope_locked(id, lop, &s));
            }
        }
        None
    }

    /// Assigns a deny policy `name` at `scope`: VM writes whose body has
    /// `value` at JSON pointer `field` are refused.
    pub(crate) fn add_policy_deny(&mut self, scope: &str, name: &str, field: &str, value: Value) {
        self.policies
            .retain(|p| p.name != name || norm(&p.scope) != norm(scope));
        self.policies.push(PolicyDeny {
            scope: scope.trim_end_matches('/').to_string(),
            name: name.to_string(),
            field: field.to_string(),
            value,
        });
    }

    /// The 403 `RequestDisallowedByPolicy` refusal of a write of `target`
    /// (named `name`) with `body`, if a deny assignment in scope matches.
    pub(crate) fn policy_check(&self, target: &str, name: &str, body: &Value) -> Option<ArmError> {
        let p = self
            .policies
            .iter()
            .find(|p| covers(&p.scope, target) && body.pointer(&p.field) == Some(&p.value))?;
        let id = format!(
            "{}/providers/Microsoft.Authorization/policyAssignments/{}",
            p.scope, p.name
        );
        Some(ArmError::new(
            403,
            "RequestDisallowedByPolicy",
            format!(
                "Resource '{name}' was disallowed by policy. Policy identifiers: '[{{\"policyAssignment\":{{\"name\":\"{}\",\"id\":\"{id}\"}}}}]'.",
                p.name
            ),
        ))
    }

    /// Marks VM `vm_id` protected by Azure Backup in `vault_id` with `policy`.
    pub(crate) fn protect(&mut self, vm_id: &str, vault_id: &str, policy: &str) {
        let segs: Vec<&str> = vm_id.trim_matches('/').split('/').collect();
        let rg = segs.get(3).copied().unwrap_or_default().to_string();
        let vm = segs.last().copied().unwrap_or_default().to_string();
        self.backup.insert(
            norm(vm_id),
            Protection {
                vault_id: vault_id.to_string(),
                policy: policy.to_string(),
                rg,
                vm,
            },
        );
    }

    /// Stops protection of `vm_id`.
    pub(crate) fn unprotect(&mut self, vm_id: &str) -> bool {
        self.backup.remove(&norm(vm_id)).is_some()
    }

    /// `POST .../locations/{loc}/backupStatus` with `{"resourceId", "resourceType": "VM"}`
    /// (spec example `AzureIaasVm/GetBackupStatus.json`, BackupStatusResponse).
    pub(crate) fn backup_status(&self, body: &Value) -> Result<Value, ArmError> {
        let Some(id) = body.get("resourceId").and_then(Value::as_str) else {
            return Err(ArmError::new(
                400,
                "BadRequest",
                "The request body must contain 'resourceId'.",
            ));
        };
        Ok(match self.backup.get(&norm(id)) {
            Some(p) => json!({
                "protectionStatus": "Protected",
                "vaultId": p.vault_id,
                "fabricName": "Azure",
                "containerName": format!("iaasvmcontainer;iaasvmcontainerv2;{};{}", p.rg, p.vm),
                "protectedItemName": format!("vm;iaasvmcontainerv2;{};{}", p.rg, p.vm),
                "policyName": p.policy,
            }),
            None => json!({"protectionStatus": "NotProtected", "fabricName": "Invalid"}),
        })
    }

    /// Sets the limit of usage `name` (adds it if unknown).
    pub(crate) fn set_limit(&mut self, name: &str, limit: u64) {
        let key = self
            .limits
            .keys()
            .find(|k| k.eq_ignore_ascii_case(name))
            .cloned()
            .unwrap_or_else(|| name.to_string());
        let label = self
            .limits
            .get(&key)
            .map(|(l, _)| l.clone())
            .unwrap_or_else(|| name.to_string());
        self.limits.insert(key, (label, limit));
    }

    /// The limit of usage `name`, if it is tracked.
    pub(crate) fn limit(&self, name: &str) -> Option<u64> {
        self.limits
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, (_, l))| *l)
    }

    /// `GET .../locations/{loc}/usages`: `current` gives the counts in use.
    pub(crate) fn usages(&self, current: &BTreeMap<String, u64>) -> Value {
        let value: Vec<Value> = self
            .limits
            .iter()
            .map(|(name, (label, limit))| {
                json!({
                    "unit": "Count",
                    "currentValue": current.get(name).copied().unwrap_or(0),
                    "limit": limit,
                    "name": {"value": name, "localizedValue": label},
                })
            })
            .collect();
        json!({ "value": value })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RG: &str = "/subscriptions/s/resourceGroups/rg-a";

    #[test]
    fn locks_cover_children_and_levels_differ() {
        let mut g = Governance::default();
        g.add_lock(RG, "nodelete", LockLevel::CanNotDelete, None);
        let vm = format!("{RG}/providers/Microsoft.Compute/virtualMachines/vm1");
        assert!(g.check(&vm, LockOp::Write, &[]).is_none());
        let e = g.check(&vm, LockOp::Delete, &[]).unwrap();
        assert_eq!((e.status, e.code.as_str()), (409, "ScopeLocked"));
        assert_eq!(
            e.message,
            format!(
                "The scope '{vm}' cannot perform delete operation because following scope(s) are locked: '{RG}'. Please remove the lock and try again."
            )
        );
        // rg-ab is not under rg-a.
        assert!(
            g.check(
                "/subscriptions/s/resourceGroups/rg-ab/x",
                LockOp::Delete,
                &[]
            )
            .is_none()
        );
        let disk = format!("{RG}x/providers/Microsoft.Compute/disks/d");
        g.add_lock(&disk, "ro", LockLevel::ReadOnly, None);
        let other =
            "/subscriptions/s/resourceGroups/rg-b/providers/Microsoft.Compute/virtualMachines/v";
        let e = g
            .check(other, LockOp::Write, &[(disk.clone(), false)])
            .unwrap();
        assert!(
            e.message.contains("cannot perform write operation"),
            "{e:?}"
        );
        // List semantics: below without filter, above with atScope().
        assert_eq!(
            g.lock_list("/subscriptions/s", false)["value"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        assert_eq!(g.lock_list(&vm, true)["value"].as_array().unwrap().len(), 1);
        assert_eq!(
            g.lock_list(&vm, false)["value"].as_array().unwrap().len(),
            0
        );
        assert_eq!(g.lock_delete(RG, "nodelete"), 200);
        assert_eq!(g.lock_delete(RG, "nodelete"), 204);
        assert!(g.check(&vm, LockOp::Delete, &[]).is_none());
    }
}
