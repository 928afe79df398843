//! Preflight findings: each with a stable code, a severity and what to do.
//! The codes are part of the JSON schema (docs/plan-schema.md); never
//! rename one, add new ones.

use serde::Serialize;
use serde_json::Value;

use crate::model::views::{DiskModel, VmModel};
use crate::step::VmRecord;
use crate::step::observe::is_ade_extension;

/// How much a finding matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Context only.
    Info,
    /// Migration goes ahead; the operator has something to check or redo.
    Warning,
    /// The VM is not migrated (ineligible) until this is fixed.
    Blocker,
}

impl Severity {
    /// `info` / `warning` / `blocker`.
    pub fn label(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Blocker => "blocker",
        }
    }
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// Stable code (`linux-os-volume`, `system-identity`, ...).
    pub code: String,
    /// Severity.
    pub severity: Severity,
    /// What was found and what to do.
    pub message: String,
}

impl Finding {
    /// A finding.
    pub fn new(code: &str, severity: Severity, message: impl Into<String>) -> Self {
        Finding {
            code: code.into(),
            severity,
            message: message.into(),
        }
    }
}

/// The finding for an ineligible VM's path (its skip reason). VMs that are
/// not ADE or already EAH are `info`: nothing is wrong, nothing to do.
pub fn for_skip(path: &str, reason: &str) -> Finding {
    let sev = match path {
        "not-ade" | "already-eah" => Severity::Info,
        _ => Severity::Blocker,
    };
    Finding::new(path, sev, reason)
}

/// Advisory findings from the VM model (and, for eligible VMs, its disks).
pub fn advisories(rec: &VmRecord) -> Vec<Finding> {
    let Some(vm) = rec.original_model.as_ref() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let w = Severity::Warning;
    let i = Severity::Info;
    let vm = VmModel::new(vm);
    let props = vm.properties();
    let sp = props.storage_profile();
    let is_delete = |d: Option<&str>| d.is_some_and(|x| x.eq_ignore_ascii_case("Delete"));
    let mut deletes = Vec::new();
    if sp.os_disk().is_some_and(|d| is_delete(d.delete_option())) {
        deletes.push("OS disk".to_string());
    }
    for d in sp.data_disks() {
        if is_delete(d.delete_option()) {
            deletes.push(format!(
                "data disk LUN {}",
                d.lun_value().unwrap_or(&Value::Null)
            ));
        }
    }
    for n in props.network_interfaces() {
        if is_delete(n.delete_option()) {
            deletes.push("NIC".into());
        }
    }
    if !deletes.is_empty() {
        out.push(Finding::new("delete-option-delete", w, format!(
            "deleteOption=Delete on {}; the run switches them to Detach before deleting the VM and restores the original values on the re-created VM",
            deletes.join(", ")
        )));
    }
    match props.security_type().map(str::to_ascii_lowercase).as_deref() {
        Some("trustedlaunch") => out.push(Finding::new("trusted-launch", i,
            "Trusted Launch VM: the new disks keep securityType and the VM is re-created with the same secure boot / vTPM settings; vTPM state is not carried over")),
        Some("confidentialvm") => out.push(Finding::new("confidential-vm", Severity::Warning,
            "confidential VM: check that encryption at host is wanted alongside confidential disk encryption before migrating")),
        _ => {}
    }
    if vm.plan().is_some() {
        out.push(Finding::new("marketplace-plan", i,
            "marketplace plan on the VM: it is re-created with the same plan; the plan's terms must still be accepted on the subscription"));
    }
    if let Some(identity) = vm.identity()
        && let Some(t) = identity.kind()
        && t.to_ascii_lowercase().contains("systemassigned")
    {
        let principal = identity.principal_id().unwrap_or("?");
        let c = &rec.carried;
        if c.old_principal.is_some() && c.carry_roles && c.roles_unread.is_none() {
            out.push(Finding::new("system-identity", i, format!(
                "system-assigned identity (principal {principal}): the re-created VM gets a NEW principal; the run grants it the {} role assignment(s) of the old one (`--no-carry-role-assignments` to leave them out); Key Vault access policies and grants outside Azure RBAC must still be redone by hand",
                c.roles.len()
            )));
        } else {
            out.push(Finding::new("system-identity", w, format!(
                "system-assigned identity (principal {principal}): the re-created VM gets a NEW principal; list its role assignments now with `az role assignment list --assignee {principal} --all` and re-grant them after migration"
            )));
        }
    }
    let c = &rec.carried;
    let others: Vec<String> = if !c.extensions.is_empty() || !c.manual.is_empty() {
        // Read at discovery: only those the run reinstalls (the others have
        // their own `extension-protected-settings` finding).
        c.extensions.iter().map(|e| e.name.clone()).collect()
    } else {
        vm.extensions()
            .filter(|r| !is_ade_extension(r))
            .filter_map(|r| {
                r.name()
                    .or_else(|| r.id().and_then(|s| s.rsplit('/').next()))
            })
            .map(str::to_string)
            .collect()
    };
    if !others.is_empty() {
        out.push(Finding::new("other-extensions", i, format!(
            "other extensions ({}) are re-installed on the re-created VM from the original model",
            others.join(", ")
        )));
    }
    out.extend(carried(rec));
    if let Some(z) = vm.zone() {
        out.push(Finding::new(
            "zone",
            i,
            format!("zonal VM (zone {z}): new disks are created in the same zone"),
        ));
    }
    if props.availability_set().is_some() {
        out.push(Finding::new("availability-set", i,
            "in an availability set: the VM is re-created in the same set (the set's fault/update domains may change)"));
    }
    if props.proximity_placement_group().is_some() {
        out.push(Finding::new("proximity-placement-group", w,
            "in a proximity placement group: re-creation can fail with allocation errors if the group is full; plan a maintenance window"));
    }
    for d in &rec.disks {
        if DiskModel::new(&d.source_model)
            .properties()
            .max_shares()
            .unwrap_or(1)
            > 1
        {
            out.push(Finding::new(
                "shared-disk",
                w,
                format!(
                    "disk {} is a shared disk (maxShares > 1): detach it from the other VMs first",
                    d.source.name()
                ),
            ));
        }
    }
    if props.instance_view().is_some_and(|iv| iv.has_statuses()) {
        let power = power_state(vm.raw());
        if power == "deallocated" || power == "stopped" {
            out.push(Finding::new("not-running", i, format!(
                "the VM is {power}; it is included in the plan (the ADE disable step needs the guest agent, so expect the run to start it)")));
        }
    }
    out
}

/// What the run carries to the re-created VM and what it leaves to the
/// operator ([`crate::step::reinstall::Carried`], read at discovery).
pub fn carried(rec: &VmRecord) -> Vec<Finding> {
    let c = &rec.carried;
    let mut out = Vec::new();
    for m in &c.manual {
        out.push(Finding::new(
            "extension-protected-settings",
            Severity::Warning,
            format!(
                "extension {} ({}.{}) is not reinstalled: {}; {}",
                m.name, m.publisher, m.handler_type, m.reason, m.remedy
            ),
        ));
    }
    let grants: Vec<String> = c
        .roles
        .iter()
        .map(|r| format!("{} at {}", r.role_definition_id, r.scope))
        .collect();
    if !grants.is_empty() && c.carry_roles {
        out.push(Finding::new(
            "role-assignments-carried",
            Severity::Info,
            format!(
                "role assignments granted to the new principal after the re-create: {}",
                grants.join("; ")
            ),
        ));
    } else if !grants.is_empty() {
        out.push(Finding::new(
            "role-assignments-not-carried",
            Severity::Warning,
            format!(
                "--no-carry-role-assignments: these role assignments are NOT re-created; grant them to the new principal after the run: {}",
                grants.join("; ")
            ),
        ));
    }
    if let Some(why) = &c.roles_unread {
        out.push(Finding::new(
            "role-assignments-unread",
            Severity::Warning,
            format!(
                "the role assignments of the system-assigned principal could not be read ({why}); grant `Microsoft.Authorization/roleAssignments/read` or re-grant them by hand after the run"
            ),
        ));
    }
    out
}

/// `running`, `deallocated`, ... from the instance view (`""` if unknown).
pub fn power_state(vm: &Value) -> String {
    VmModel::new(vm)
        .properties()
        .instance_view()
        .and_then(|iv| iv.power_state())
        .unwrap_or("")
        .to_string()
}
