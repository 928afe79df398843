//! The least-privilege role: one table ([`OPERATIONS`]) mapping every ARM
//! request this client makes (method + path pattern) to the
//! `Microsoft.*` operations Azure authorizes it with, and the custom role
//! definition derived from it ([`role_definition`]). The effective-permission
//! check (`permissions --check`) reads `GET {scope}/providers/Microsoft.Authorization/permissions`
//! ([`ArmClient::effective_permissions`]) and matches the role's actions with
//! [`missing_actions`].
//!
//! Contract: the role's `Actions` are exactly the union of the table's
//! actions; the table has exactly one row per kind of request the client
//! sends. `tests/it/permissions.rs` derives the actions from the emulator's
//! request log of full runs and compares them with the role both ways, so a
//! request added without a row (or a row no scenario sends) fails it.
//!
//! Linked access checks: ARM also authorizes resources a request *refers
//! to*, not only the one in its path. Creating a VM joins its NICs
//! (`Microsoft.Network/networkInterfaces/join/action`) and assigns its
//! user-assigned identities (`Microsoft.ManagedIdentity/userAssignedIdentities/assign/action`);
//! Microsoft documents both as required for `az vm create` with existing
//! NICs and identities (learn.microsoft.com/azure/virtual-machines/linux/create-cli-complete#create-a-virtual-nic,
//! learn.microsoft.com/entra/identity/managed-identities-azure-resources/how-manage-user-assigned-managed-identities).
//! They are listed on the VM PUT row.
//!
//! Data plane: disks and snapshots are read and written through the SAS URLs
//! `beginGetAccess` returns (Put Page From URL, Get Page Ranges), which carry
//! their own authorization, so the role has no `DataActions`.

use serde_json::{Value, json};

use super::{AzureError, client::ArmClient};

/// One kind of ARM request and what Azure authorizes it with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Operation {
    /// HTTP method.
    pub method: &'static str,
    /// Path pattern: `/`-separated segments, `{x}` matches any one segment,
    /// `{scope...}` any number (at least one) of leading segments; literal
    /// segments match case-insensitively (ARM paths are case-insensitive).
    pub pattern: &'static str,
    /// The operations Azure checks: the first is the request's own, the
    /// others linked access checks on resources its body refers to.
    pub actions: &'static [&'static str],
}

const VM: &str =
    "/subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachines/{vm}";

const NIC: &str =
    "/subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.Network/networkInterfaces/{nic}";

macro_rules! op {
    ($m:literal, $p:expr, [$($a:literal),+ $(,)?]) => {
        Operation { method: $m, pattern: $p, actions: &[$($a),+] }
    };
}

/// Every ARM request the client sends (storage data-plane calls go to SAS
/// URLs and need no role). The role is derived from this table alone.
pub const OPERATIONS: &[Operation] = &[
    // Subscriptions by name (`--subscription NAME`).
    op!(
        "GET",
        "/subscriptions",
        ["Microsoft.Resources/subscriptions/read"]
    ),
    // Effective permissions (`permissions --check`).
    op!(
        "GET",
        "{scope...}/providers/Microsoft.Authorization/permissions",
        ["Microsoft.Authorization/permissions/read"]
    ),
    // Discovery and preflight (`plan`, `run --plan`).
    op!(
        "POST",
        "/providers/Microsoft.ResourceGraph/resources",
        ["Microsoft.ResourceGraph/resources/read"]
    ),
    op!(
        "GET",
        "/subscriptions/{s}/providers/Microsoft.Compute/virtualMachines",
        ["Microsoft.Compute/virtualMachines/read"]
    ),
    op!(
        "GET",
        "/subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachines",
        ["Microsoft.Compute/virtualMachines/read"]
    ),
    op!(
        "GET",
        "{scope...}/providers/Microsoft.Authorization/locks",
        ["Microsoft.Authorization/locks/read"]
    ),
    op!(
        "POST",
        "/subscriptions/{s}/providers/Microsoft.RecoveryServices/locations/{loc}/backupStatus",
        ["Microsoft.RecoveryServices/locations/backupStatus/action"]
    ),
    op!(
        "GET",
        "/subscriptions/{s}/providers/Microsoft.Compute/locations/{loc}/usages",
        ["Microsoft.Compute/locations/usages/read"]
    ),
    op!(
        "GET",
        "/subscriptions/{s}/providers/Microsoft.Compute/skus",
        ["Microsoft.Compute/skus/read"]
    ),
    op!(
        "GET",
        "/subscriptions/{s}/providers/Microsoft.Features/providers/Microsoft.Compute/features/{f}",
        ["Microsoft.Features/features/read"]
    ),
    op!(
        "POST",
        "/subscriptions/{s}/providers/Microsoft.Features/providers/Microsoft.Compute/features/{f}/register",
        ["Microsoft.Features/providers/features/register/action"]
    ),
    // The VM (read with `$expand=instanceView`: one read, no instanceView/read).
    op!("GET", VM, ["Microsoft.Compute/virtualMachines/read"]),
    op!(
        "PUT",
        VM,
        [
            "Microsoft.Compute/virtualMachines/write",
            "Microsoft.Network/networkInterfaces/join/action",
            "Microsoft.ManagedIdentity/userAssignedIdentities/assign/action",
        ]
    ),
    // A PATCH that names a NIC the VM does not have yet (`--nic-swap`'s
    // placeholder) joins it, as a create does.
    op!(
        "PATCH",
        VM,
        [
            "Microsoft.Compute/virtualMachines/write",
            "Microsoft.Network/networkInterfaces/join/action",
        ]
    ),
    // `--nic-swap`: the VM's primary NIC (its subnet) and the placeholder
    // NIC, created in that subnet (a linked check on the subnet, as for
    // `az network nic create`) and deleted once the new VM runs.
    op!("GET", NIC, ["Microsoft.Network/networkInterfaces/read"]),
    op!(
        "PUT",
        NIC,
        [
            "Microsoft.Network/networkInterfaces/write",
            "Microsoft.Network/virtualNetworks/subnets/join/action",
        ]
    ),
    op!(
        "DELETE",
        NIC,
        ["Microsoft.Network/networkInterfaces/delete"]
    ),
    // The instance view, read apart from a model read with `$expand=userData`.
    op!(
        "GET",
        "/subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachines/{vm}/instanceView",
        ["Microsoft.Compute/virtualMachines/instanceView/read"]
    ),
    // `--guest-check`: Run Command in the guest.
    op!(
        "POST",
        "/subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachines/{vm}/runCommand",
        ["Microsoft.Compute/virtualMachines/runCommand/action"]
    ),
    op!("DELETE", VM, ["Microsoft.Compute/virtualMachines/delete"]),
    op!(
        "POST",
        "/subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachines/{vm}/deallocate",
        ["Microsoft.Compute/virtualMachines/deallocate/action"]
    ),
    op!(
        "POST",
        "/subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachines/{vm}/start",
        ["Microsoft.Compute/virtualMachines/start/action"]
    ),
    // Its extensions (ADE disable and removal; read through the VM's instance view).
    op!(
        "PUT",
        "/subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachines/{vm}/extensions/{e}",
        ["Microsoft.Compute/virtualMachines/extensions/write"]
    ),
    op!(
        "DELETE",
        "/subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachines/{vm}/extensions/{e}",
        ["Microsoft.Compute/virtualMachines/extensions/delete"]
    ),
    // Disks: sources read, targets created, written through SAS, sealed;
    // a target this run created is deleted only when its content is not trusted.
    op!(
        "GET",
        "/subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.Compute/disks/{d}",
        ["Microsoft.Compute/disks/read"]
    ),
    op!(
        "PUT",
        "/subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.Compute/disks/{d}",
        ["Microsoft.Compute/disks/write"]
    ),
    // A sealed target gets the source's access settings back.
    op!(
        "PATCH",
        "/subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.Compute/disks/{d}",
        ["Microsoft.Compute/disks/write"]
    ),
    op!(
        "DELETE",
        "/subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.Compute/disks/{d}",
        ["Microsoft.Compute/disks/delete"]
    ),
    op!(
        "POST",
        "/subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.Compute/disks/{d}/beginGetAccess",
        ["Microsoft.Compute/disks/beginGetAccess/action"]
    ),
    op!(
        "POST",
        "/subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.Compute/disks/{d}/endGetAccess",
        ["Microsoft.Compute/disks/endGetAccess/action"]
    ),
    // Snapshots: backups and copy rounds.
    op!(
        "GET",
        "/subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.Compute/snapshots/{d}",
        ["Microsoft.Compute/snapshots/read"]
    ),
    op!(
        "PUT",
        "/subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.Compute/snapshots/{d}",
        ["Microsoft.Compute/snapshots/write"]
    ),
    op!(
        "POST",
        "/subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.Compute/snapshots/{d}/beginGetAccess",
        ["Microsoft.Compute/snapshots/beginGetAccess/action"]
    ),
    op!(
        "POST",
        "/subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.Compute/snapshots/{d}/endGetAccess",
        ["Microsoft.Compute/snapshots/endGetAccess/action"]
    ),
    // `cleanup --yes`: round and backup snapshots past the retention.
    op!(
        "DELETE",
        "/subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.Compute/snapshots/{d}",
        ["Microsoft.Compute/snapshots/delete"]
    ),
    // Disk encryption sets the new disks use (validate-before-delete).
    op!(
        "GET",
        "/subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.Compute/diskEncryptionSets/{d}",
        ["Microsoft.Compute/diskEncryptionSets/read"]
    ),
    // The system-assigned principal's role assignments: read at discovery,
    // granted to the new principal after the re-create.
    op!(
        "GET",
        "{scope...}/providers/Microsoft.Authorization/roleAssignments",
        ["Microsoft.Authorization/roleAssignments/read"]
    ),
    op!(
        "PUT",
        "{scope...}/providers/Microsoft.Authorization/roleAssignments/{a}",
        ["Microsoft.Authorization/roleAssignments/write"]
    ),
    // Long-running operation status (Azure-AsyncOperation and Location URLs).
    op!(
        "GET",
        "/subscriptions/{s}/providers/Microsoft.Compute/locations/{loc}/operations/{id}",
        ["Microsoft.Compute/locations/operations/read"]
    ),
    op!(
        "GET",
        "/subscriptions/{s}/providers/Microsoft.Compute/locations/{loc}/DiskOperations/{id}",
        ["Microsoft.Compute/locations/DiskOperations/read"]
    ),
    op!(
        "GET",
        "/subscriptions/{s}/providers/Microsoft.Network/locations/{loc}/operations/{id}",
        ["Microsoft.Network/locations/operations/read"]
    ),
];

fn segments(p: &str) -> Vec<&str> {
    p.split('/').filter(|s| !s.is_empty()).collect()
}

fn seg_matches(pattern: &str, seg: &str) -> bool {
    (pattern.starts_with('{') && pattern.ends_with('}')) || pattern.eq_ignore_ascii_case(seg)
}

impl Operation {
    /// Whether a request `method path` (path without query) is this row's.
    pub fn matches(&self, method: &str, path: &str) -> bool {
        if !self.method.eq_ignore_ascii_case(method) {
            return false;
        }
        let pat = segments(self.pattern);
        let segs = segments(path);
        match pat.first() {
            Some(&"{scope...}") => {
                let rest = &pat[1..];
                segs.len() > rest.len()
                    && rest
                        .iter()
                        .zip(&segs[segs.len() - rest.len()..])
                        .all(|(p, s)| seg_matches(p, s))
            }
            _ => pat.len() == segs.len() && pat.iter().zip(&segs).all(|(p, s)| seg_matches(p, s)),
        }
    }
}

/// The table row of a request, if the client is meant to send it.
pub fn operation_for(method: &str, path: &str) -> Option<&'static Operation> {
    OPERATIONS.iter().find(|o| o.matches(method, path))
}

/// The role's actions: every action of the table, sorted, once each.
pub fn role_actions() -> Vec<&'static str> {
    let mut v: Vec<&'static str> = OPERATIONS
        .iter()
        .flat_map(|o| o.actions.iter().copied())
        .collect();
    v.sort_unstable_by_key(|a| a.to_ascii_lowercase());
    v.dedup_by(|a, b| a.eq_ignore_ascii_case(b));
    v
}

/// Name of the custom role.
pub const ROLE_NAME: &str = "ADE to EAH Migrator (ade2eah)";

/// The custom role as `az role definition create --role-definition` takes
/// it, assignable at `scopes` (subscription or resource-group ids).
pub fn role_definition(scopes: &[String]) -> Value {
    json!({
        "Name": ROLE_NAME,
        "IsCustom": true,
        "Description": "Least privilege for ade2eah (moves VMs off Azure Disk Encryption onto encryption at host): \
            exactly the ARM operations it sends. Disk and snapshot bytes are copied through the SAS URLs \
            beginGetAccess returns, so no storage DataActions are needed.",
        "Actions": role_actions(),
        "NotActions": [],
        "DataActions": [],
        "NotDataActions": [],
        "AssignableScopes": scopes,
    })
}

/// The effective permissions of a caller at a scope: one entry per role
/// assignment, each `actions` minus `notActions` (wildcards `*`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permission {
    /// Allowed action patterns.
    pub actions: Vec<String>,
    /// Patterns excluded from `actions` of the same entry.
    pub not_actions: Vec<String>,
}

/// Whether `pattern` (an action with `*` wildcards) covers `action`,
/// case-insensitively (Azure RBAC compares operations case-insensitively).
pub fn action_matches(pattern: &str, action: &str) -> bool {
    fn go(p: &[u8], a: &[u8]) -> bool {
        match p.split_first() {
            None => a.is_empty(),
            Some((b'*', rest)) => (0..=a.len()).any(|i| go(rest, &a[i..])),
            Some((c, rest)) => a
                .split_first()
                .is_some_and(|(d, tail)| c.eq_ignore_ascii_case(d) && go(rest, tail)),
        }
    }
    go(pattern.as_bytes(), action.as_bytes())
}

/// The actions of `wanted` no permission entry grants (an entry grants an
/// action when one of its `actions` covers it and none of its `notActions`
/// does; entries add up, as role assignments do).
pub fn missing_actions<'a>(granted: &[Permission], wanted: &[&'a str]) -> Vec<&'a str> {
    wanted
        .iter()
        .copied()
        .filter(|w| {
            !granted.iter().any(|p| {
                p.actions.iter().any(|a| action_matches(a, w))
                    && !p.not_actions.iter().any(|n| action_matches(n, w))
            })
        })
        .collect()
}

/// API version of `Microsoft.Authorization/permissions`.
pub const PERMISSIONS_API: &str = "2022-04-01";

impl ArmClient {
    /// The caller's effective permissions at `scope` (`GET
    /// {scope}/providers/Microsoft.Authorization/permissions`, all pages).
    pub async fn effective_permissions(&self, scope: &str) -> Result<Vec<Permission>, AzureError> {
        let path = format!(
            "{}/providers/Microsoft.Authorization/permissions",
            scope.trim_end_matches('/')
        );
        let items = self
            .get_pages(path, PERMISSIONS_API)
            .await?
            .unwrap_or_default();
        let strings = |v: &Value, k: &str| -> Vec<String> {
            v.get(k)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        };
        Ok(items
            .iter()
            .map(|p| Permission {
                actions: strings(p, "actions"),
                not_actions: strings(p, "notActions"),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_matches_its_own_pattern_and_no_earlier_row_shadows_it() {
        for (i, o) in OPERATIONS.iter().enumerate() {
            let path = o
                .pattern
                .replace("{scope...}", "/subscriptions/s/resourceGroups/rg")
                .split('/')
                .map(|s| if s.starts_with('{') { "x" } else { s })
                .collect::<Vec<_>>()
                .join("/");
            let found = operation_for(o.method, &path).expect("row matches");
            assert_eq!(found, &OPERATIONS[i], "{} {path}", o.method);
        }
    }

    #[test]
    fn paths_match_case_insensitively_and_exactly() {
        let vm = "/subscriptions/S/RESOURCEGROUPS/rg/providers/microsoft.compute/VirtualMachines/v";
        assert_eq!(
            operation_for("PUT", vm).unwrap().actions[0],
            "Microsoft.Compute/virtualMachines/write"
        );
        assert!(operation_for("PUT", &format!("{vm}/nope")).is_none());
        assert!(operation_for("POST", &format!("{vm}/powerOff")).is_none());
        assert_eq!(
            operation_for(
                "GET",
                "/subscriptions/s/providers/Microsoft.Authorization/locks"
            )
            .unwrap()
            .actions,
            ["Microsoft.Authorization/locks/read"]
        );
        assert!(operation_for("GET", "/providers/Microsoft.Authorization/locks").is_none());
    }

    #[test]
    fn wildcards_and_not_actions() {
        assert!(action_matches("*", "Microsoft.Compute/disks/read"));
        assert!(action_matches(
            "microsoft.compute/*",
            "Microsoft.Compute/disks/read"
        ));
        assert!(action_matches("*/read", "Microsoft.Compute/disks/read"));
        assert!(!action_matches(
            "Microsoft.Compute/*/write",
            "Microsoft.Compute/disks/read"
        ));
        let reader = Permission {
            actions: vec!["*/read".into()],
            not_actions: vec![],
        };
        let contributor = Permission {
            actions: vec!["Microsoft.Compute/*".into()],
            not_actions: vec!["Microsoft.Compute/disks/delete".into()],
        };
        let want = [
            "Microsoft.Compute/disks/read",
            "Microsoft.Compute/disks/write",
            "Microsoft.Compute/disks/delete",
            "Microsoft.Network/networkInterfaces/join/action",
        ];
        assert_eq!(
            missing_actions(&[reader, contributor], &want),
            [
                "Microsoft.Compute/disks/delete",
                "Microsoft.Network/networkInterfaces/join/action"
            ]
        );
    }

    #[test]
    fn role_is_the_union_of_the_table() {
        let role = role_definition(&["/subscriptions/s".into()]);
        let actions: Vec<&str> = role["Actions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        for o in OPERATIONS {
            for a in o.actions {
                assert!(actions.contains(a), "{a}");
            }
        }
        assert_eq!(role["DataActions"], json!([]));
        assert_eq!(role["AssignableScopes"], json!(["/subscriptions/s"]));
    }
}
