//! [`Step::Reinstall`](super::Step::Reinstall): what deleting the VM lost and
//! the run puts back after the start, and the checks `verify` adds for it.
//!
//! Deleting a VM deletes its extensions (child resources), and a re-created
//! VM gets a new system-assigned principal with no role assignments (facts
//! §5.3, §0 fact 11). Before anything changes, discovery journals
//! ([`Carried`]): every extension other than ADE as a PUT body built from
//! the original model (publisher, type, `typeHandlerVersion`,
//! `autoUpgradeMinorVersion`, `enableAutomaticUpgrade`, public `settings`,
//! `suppressFailures`, `provisionAfterExtensions`,
//! `protectedSettingsFromKeyVault`, tags); the extensions it cannot
//! reinstall (protected settings, see [`protected_settings_reason`]) for the
//! operator; and the role assignments of the old principal.
//!
//! The rules here are pure: [`decide`] observes the re-created VM (its
//! `resources[]`, instance view and the role assignments of its principal)
//! and either finds each effect in place or asks for the one call that makes
//! it, so a crash between any two calls is repeated without duplicates.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::observe::{VmView, is_ade_extension};
use super::record::VmRecord;
use super::{Action, Decision};
use crate::model::views::{ExtensionModel, InstanceView, VmModel};

/// Everything the run carries to the re-created VM besides its model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Carried {
    /// Extensions other than ADE, reinstalled in this order.
    #[serde(default)]
    pub extensions: Vec<CarriedExtension>,
    /// Extensions the tool does not reinstall, for the operator.
    #[serde(default)]
    pub manual: Vec<ManualExtension>,
    /// The original system-assigned principal, if any.
    #[serde(default)]
    pub old_principal: Option<String>,
    /// Role assignments of the old principal, read before the delete.
    #[serde(default)]
    pub roles: Vec<RoleGrant>,
    /// Re-create [`Carried::roles`] for the new principal
    /// (`--carry-role-assignments`, on by default).
    #[serde(default = "yes")]
    pub carry_roles: bool,
    /// Why the old principal's role assignments could not be read, if so
    /// (then none are carried and the operator is told).
    #[serde(default)]
    pub roles_unread: Option<String>,
}

fn yes() -> bool {
    true
}

impl Default for Carried {
    fn default() -> Self {
        Carried {
            extensions: Vec::new(),
            manual: Vec::new(),
            old_principal: None,
            roles: Vec::new(),
            carry_roles: true,
            roles_unread: None,
        }
    }
}

impl Carried {
    /// True when role assignments are to be re-created (and so observed).
    pub fn grants_roles(&self) -> bool {
        self.carry_roles && !self.roles.is_empty()
    }

    /// What the operator must do by hand after the run, one line each.
    pub fn operator_actions(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .manual
            .iter()
            .map(|m| {
                format!(
                    "extension {} ({}.{}) not reinstalled: {}; {}",
                    m.name, m.publisher, m.handler_type, m.reason, m.remedy
                )
            })
            .collect();
        if !self.carry_roles {
            for r in &self.roles {
                out.push(format!(
                    "role assignment not carried (--no-carry-role-assignments): grant role {} at {} to the new principal",
                    r.role_definition_id, r.scope
                ));
            }
        }
        if let Some(why) = &self.roles_unread {
            out.push(format!(
                "role assignments of the old principal could not be read ({why}); list them with `az role assignment list --assignee {} --all` and grant them to the new principal",
                self.old_principal.as_deref().unwrap_or("?")
            ));
        }
        out
    }
}

/// One extension to reinstall.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CarriedExtension {
    /// Resource name (kept).
    pub name: String,
    /// `publisher`.
    pub publisher: String,
    /// `type` (the handler type).
    pub handler_type: String,
    /// The PUT body (location, tags, properties), never with a secret:
    /// ARM does not return `protectedSettings`.
    pub body: Value,
}

/// An extension left to the operator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManualExtension {
    /// Resource name.
    pub name: String,
    /// `publisher`.
    pub publisher: String,
    /// `type`.
    pub handler_type: String,
    /// Why the tool does not reinstall it.
    pub reason: String,
    /// What the operator does.
    pub remedy: String,
}

/// A role assignment of the old principal, to be granted to the new one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoleGrant {
    /// The old assignment's id (for the audit trail).
    pub id: String,
    /// `roleDefinitionId`.
    pub role_definition_id: String,
    /// `scope`.
    pub scope: String,
    /// `condition` (ABAC), carried verbatim.
    #[serde(default)]
    pub condition: Option<String>,
    /// `conditionVersion`.
    #[serde(default)]
    pub condition_version: Option<String>,
    /// `description`.
    #[serde(default)]
    pub description: Option<String>,
}

impl RoleGrant {
    /// Reads one item of a role assignment listing (`None` if it lacks a
    /// role or a scope).
    pub fn from_raw(v: &Value) -> Option<RoleGrant> {
        let p = v.get("properties")?;
        let s = |k: &str| p.get(k).and_then(Value::as_str).map(str::to_string);
        Some(RoleGrant {
            id: v.get("id").and_then(Value::as_str)?.to_string(),
            role_definition_id: s("roleDefinitionId")?,
            scope: s("scope")?,
            condition: s("condition"),
            condition_version: s("conditionVersion"),
            description: s("description"),
        })
    }

    /// True when `a` grants the same role at the same scope (ARM compares ids
    /// case-insensitively).
    pub fn is_granted_by(&self, a: &RoleAssignmentView) -> bool {
        a.role_definition_id
            .eq_ignore_ascii_case(&self.role_definition_id)
            && a.scope
                .trim_end_matches('/')
                .eq_ignore_ascii_case(self.scope.trim_end_matches('/'))
    }

    /// The create body for `principal` (RoleAssignmentCreateParameters,
    /// authorization 2022-04-01): `principalType: ServicePrincipal` so that a
    /// principal created moments ago is accepted before directory
    /// replication (Microsoft docs, "Assign Azure roles using the REST API").
    pub fn body(&self, principal: &str) -> Value {
        let mut p = json!({
            "roleDefinitionId": self.role_definition_id,
            "principalId": principal,
            "principalType": "ServicePrincipal",
        });
        for (k, v) in [
            ("condition", &self.condition),
            ("conditionVersion", &self.condition_version),
            ("description", &self.description),
        ] {
            if let Some(v) = v {
                p[k] = json!(v);
            }
        }
        json!({ "properties": p })
    }
}

/// A role assignment as observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleAssignmentView {
    /// `roleDefinitionId`.
    pub role_definition_id: String,
    /// `scope`.
    pub scope: String,
    /// `principalId`.
    pub principal_id: String,
}

impl RoleAssignmentView {
    /// From one listing item.
    pub fn from_raw(v: &Value) -> Option<Self> {
        let p = v.get("properties")?;
        let s = |k: &str| p.get(k).and_then(Value::as_str).map(str::to_string);
        Some(RoleAssignmentView {
            role_definition_id: s("roleDefinitionId")?,
            scope: s("scope")?,
            principal_id: s("principalId").unwrap_or_default(),
        })
    }
}

/// Known handlers whose configuration lives in protected settings, which
/// ARM never returns (VirtualMachineExtensionProperties: `protectedSettings`
/// is write-only), so a reinstall from the model cannot be complete.
/// `(publisher, type, public key that, when present, shows the
/// configuration is public after all, what the protected settings hold)`.
const NEEDS_PROTECTED: [(&str, &str, Option<&str>, &str); 9] = [
    (
        "Microsoft.Compute",
        "CustomScriptExtension",
        Some("commandToExecute"),
        "the command (and any storage key) is in protected settings",
    ),
    (
        "Microsoft.Azure.Extensions",
        "CustomScript",
        Some("commandToExecute"),
        "the command or script (and any storage key) is in protected settings",
    ),
    (
        "Microsoft.OSTCExtensions",
        "CustomScriptForLinux",
        Some("commandToExecute"),
        "the command (and any storage key) is in protected settings",
    ),
    (
        "Microsoft.EnterpriseCloud.Monitoring",
        "MicrosoftMonitoringAgent",
        None,
        "the workspace key is a protected setting",
    ),
    (
        "Microsoft.EnterpriseCloud.Monitoring",
        "OmsAgentForLinux",
        None,
        "the workspace key is a protected setting",
    ),
    (
        "Microsoft.Azure.Diagnostics",
        "IaaSDiagnostics",
        None,
        "the storage account key or SAS is a protected setting",
    ),
    (
        "Microsoft.Azure.Diagnostics",
        "LinuxDiagnostic",
        None,
        "the storage account SAS is a protected setting",
    ),
    (
        "Microsoft.Compute",
        "VMAccessAgent",
        None,
        "credentials are protected settings",
    ),
    (
        "Microsoft.Compute",
        "JsonADDomainExtension",
        None,
        "the domain join password is a protected setting",
    ),
];

/// Why `ext` cannot be reinstalled from its model (its configuration is in
/// protected settings, which ARM never returns), or `None`.
///
/// ARM gives no sign on the model or the instance view that an extension
/// was written with `protectedSettings`; the rule is therefore by handler:
/// the handlers in [`NEEDS_PROTECTED`] keep their configuration there
/// (custom script handlers only when the public settings lack
/// `commandToExecute`). A `protectedSettingsFromKeyVault` reference is
/// returned by ARM and carried, so such an extension is reinstalled. Any
/// other handler is reinstalled with its public settings; one that also had
/// protected settings then fails to provision, which parks the VM with the
/// extension's own message.
pub fn protected_settings_reason(ext: &ExtensionModel<'_>) -> Option<&'static str> {
    if ext.protected_settings_from_key_vault().is_some() {
        return None;
    }
    let publisher = ext.publisher().unwrap_or_default();
    let etype = ext.handler_type().unwrap_or_default();
    NEEDS_PROTECTED
        .iter()
        .find(|(p, t, _, _)| p.eq_ignore_ascii_case(publisher) && t.eq_ignore_ascii_case(etype))
        .filter(|(_, _, public_key, _)| {
            public_key.is_none_or(|k| ext.settings_value().and_then(|s| s.get(k)).is_none())
        })
        .map(|(_, _, _, why)| *why)
}

/// The PUT body that reinstalls `ext` as it was (no read-only fields).
pub fn extension_body(ext: &ExtensionModel<'_>, vm_location: Option<&Value>) -> Value {
    let mut props = Map::new();
    props.insert("publisher".into(), json!(ext.publisher()));
    props.insert("type".into(), json!(ext.handler_type()));
    for (k, v) in ext.carried_properties() {
        props.insert(k.into(), v.clone());
    }
    let mut body = json!({ "properties": props });
    if let Some(l) = ext.location_value().or(vm_location) {
        body["location"] = l.clone();
    }
    if let Some(t) = ext.tags_value() {
        body["tags"] = t.clone();
    }
    body
}

/// Splits the original model's extensions (ADE excluded) into those to
/// reinstall and those left to the operator. `listed` is the extension list
/// read separately when the model has no `resources[]`.
pub fn plan_extensions(
    vm: &Value,
    listed: Option<&[Value]>,
) -> (Vec<CarriedExtension>, Vec<ManualExtension>) {
    let model = VmModel::new(vm);
    let from_model: Vec<ExtensionModel<'_>> = model.extensions().collect();
    let exts: Vec<ExtensionModel<'_>> = match listed {
        Some(l) if from_model.is_empty() => l.iter().map(ExtensionModel::new).collect(),
        _ => from_model,
    };
    let mut carried = Vec::new();
    let mut manual = Vec::new();
    for e in exts.iter().filter(|e| !is_ade_extension(e)) {
        let name = e
            .name()
            .or_else(|| e.id().and_then(|s| s.rsplit('/').next()))
            .unwrap_or_default()
            .to_string();
        let publisher = e.publisher().unwrap_or_default().to_string();
        let handler_type = e.handler_type().unwrap_or_default().to_string();
        if name.is_empty() {
            continue;
        }
        match protected_settings_reason(e) {
            Some(why) => manual.push(ManualExtension {
                remedy: format!(
                    "reinstall it with its protected settings after the run (`az vm extension set --vm-name {} --name {handler_type} --publisher {publisher} --protected-settings @file.json ...`; public settings and version are in the journal: `ade2eah status --output json`)",
                    model.raw().get("name").and_then(Value::as_str).unwrap_or("VM"),
                ),
                name,
                publisher,
                handler_type,
                reason: why.to_string(),
            }),
            None => carried.push(CarriedExtension {
                body: extension_body(e, Some(model.location_value()).filter(|l| !l.is_null())),
                name,
                publisher,
                handler_type,
            }),
        }
    }
    (carried, manual)
}

/// An extension on the VM as observed.
#[derive(Debug, Clone, PartialEq)]
pub struct ExtensionState {
    /// Resource name.
    pub name: String,
    /// The resource as read (`resources[]` item).
    pub model: Value,
    /// `provisioningState`.
    pub provisioning_state: String,
    /// The error message of its instance view status, if it reports one.
    pub error: Option<String>,
}

/// What [`decide`] and [`verify_problems`] read of the re-created VM.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CarriedView {
    /// `identity.principalId`.
    pub principal_id: Option<String>,
    /// Every extension on the VM.
    pub extensions: Vec<ExtensionState>,
    /// Role assignments of [`CarriedView::principal_id`]; `None` = not read.
    pub roles: Option<Vec<RoleAssignmentView>>,
}

impl CarriedView {
    /// From a VM GET body (with `$expand=instanceView` for the statuses).
    pub fn from_vm(vm: &Value) -> CarriedView {
        let model = VmModel::new(vm);
        let iv: Option<InstanceView<'_>> = model.properties().instance_view();
        let extensions = model
            .extensions()
            .filter_map(|e| {
                let name = e
                    .name()
                    .or_else(|| e.id().and_then(|s| s.rsplit('/').next()))?
                    .to_string();
                let error = iv.and_then(|iv| {
                    iv.extensions()
                        .find(|s| s.name().is_some_and(|n| n.eq_ignore_ascii_case(&name)))
                        .and_then(|s| {
                            s.statuses()
                                .find(|st| {
                                    st.level().is_some_and(|l| l.eq_ignore_ascii_case("error"))
                                        || st.code().is_some_and(|c| {
                                            c.to_ascii_lowercase().ends_with("/failed")
                                        })
                                })
                                .map(|st| {
                                    st.message().or(st.code()).unwrap_or("failed").to_string()
                                })
                        })
                });
                Some(ExtensionState {
                    provisioning_state: e.provisioning_state().unwrap_or("Succeeded").to_string(),
                    model: e.raw().clone(),
                    name,
                    error,
                })
            })
            .collect();
        CarriedView {
            principal_id: model
                .identity()
                .and_then(|i| i.principal_id())
                .map(str::to_string),
            extensions,
            roles: None,
        }
    }

    fn extension(&self, name: &str) -> Option<&ExtensionState> {
        self.extensions
            .iter()
            .find(|e| e.name.eq_ignore_ascii_case(name))
    }
}

/// The fields of `want` (a reinstall body) that `have` (the extension as
/// read) does not match: publisher, type and every carried property, plus
/// tags. An empty list means the extension is the one the run installs.
pub fn differences(want: &Value, have: &Value) -> Vec<String> {
    let wp = &want["properties"];
    let hp = &have["properties"];
    let mut out = Vec::new();
    for k in ["publisher", "type"] {
        let eq = match (wp[k].as_str(), hp[k].as_str()) {
            (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
            _ => false,
        };
        if !eq {
            out.push(k.to_string());
        }
    }
    for k in crate::model::views::CARRIED_PROPERTIES {
        let (a, b) = (&wp[k], &hp[k]);
        if a.is_null() && b.is_null() {
            continue;
        }
        if a != b {
            out.push(k.to_string());
        }
    }
    if !want["tags"].is_null() && want["tags"] != have["tags"] {
        out.push("tags".into());
    }
    out
}

/// `Step::Reinstall`: every carried extension present with its settings and
/// provisioned, every carried role granted to the current principal.
pub fn decide(rec: &VmRecord, vm: &VmView, seen: Option<&CarriedView>) -> Decision {
    let carried = &rec.carried;
    if carried.extensions.is_empty() && !carried.grants_roles() {
        return Decision::Advance;
    }
    let Some(seen) = seen else {
        return Decision::Wait {
            reason: "extensions not observed".into(),
        };
    };
    if !vm.is_settled() {
        return Decision::Wait {
            reason: "an operation is running on the VM".into(),
        };
    }
    if vm.power.as_deref() != Some("running") {
        // Extensions can only be written on a running VM.
        return Decision::Act(Action::StartVm);
    }
    for want in &carried.extensions {
        let id = rec.id.child("extensions", &want.name);
        let Some(have) = seen.extension(&want.name) else {
            return Decision::Act(Action::ReinstallExtension { extension: id });
        };
        let state = have.provisioning_state.to_ascii_lowercase();
        if matches!(state.as_str(), "creating" | "updating" | "deleting") {
            return Decision::Wait {
                reason: format!("extension {} is {}", want.name, have.provisioning_state),
            };
        }
        if !differences(&want.body, &have.model).is_empty() {
            return Decision::Act(Action::ReinstallExtension { extension: id });
        }
        if state == "failed" || have.error.is_some() {
            return Decision::park(
                format!(
                    "extension {} failed to provision on the re-created VM: {}",
                    want.name,
                    have.error.as_deref().unwrap_or("no message")
                ),
                format!(
                    "fix the cause the extension reports, then delete the extension (`az vm extension delete --name {}`) and run `ade2eah resume` to install it again; the VM itself is migrated and running",
                    want.name
                ),
            );
        }
    }
    if !carried.grants_roles() {
        return Decision::Advance;
    }
    let Some(principal) = seen.principal_id.as_deref() else {
        return Decision::park(
            "the re-created VM has no system-assigned principal, so its role assignments cannot be granted",
            "check the VM's identity (it was re-created with the original `identity`); then run `ade2eah resume`",
        );
    };
    let Some(roles) = &seen.roles else {
        return Decision::Wait {
            reason: "role assignments not observed".into(),
        };
    };
    for g in &carried.roles {
        if !roles
            .iter()
            .any(|a| a.principal_id.eq_ignore_ascii_case(principal) && g.is_granted_by(a))
        {
            return Decision::Act(Action::GrantRole {
                principal_id: principal.to_string(),
                role_definition_id: g.role_definition_id.clone(),
                scope: g.scope.clone(),
            });
        }
    }
    Decision::Advance
}

/// The verification of what [`decide`] carried (called by `verify`): every
/// reinstalled extension present, as journaled and provisioned
/// (`Succeeded`), and every carried role granted to the current principal.
pub fn verify_problems(rec: &VmRecord, seen: Option<&CarriedView>) -> Vec<String> {
    let carried = &rec.carried;
    if carried.extensions.is_empty() && !carried.grants_roles() {
        return Vec::new();
    }
    let Some(seen) = seen else {
        return vec!["extensions and role assignments were not observed".into()];
    };
    let mut out = Vec::new();
    for want in &carried.extensions {
        match seen.extension(&want.name) {
            None => out.push(format!("extension {} is missing", want.name)),
            Some(have) => {
                let diff = differences(&want.body, &have.model);
                if !diff.is_empty() {
                    out.push(format!(
                        "extension {} differs from the original in {}",
                        want.name,
                        diff.join(", ")
                    ));
                }
                if !have.provisioning_state.eq_ignore_ascii_case("Succeeded")
                    || have.error.is_some()
                {
                    out.push(format!(
                        "extension {} is {}",
                        want.name, have.provisioning_state
                    ));
                }
            }
        }
    }
    if carried.grants_roles() {
        match (&seen.principal_id, &seen.roles) {
            (Some(p), Some(roles)) => {
                for g in &carried.roles {
                    if !roles
                        .iter()
                        .any(|a| a.principal_id.eq_ignore_ascii_case(p) && g.is_granted_by(a))
                    {
                        out.push(format!(
                            "role {} at {} is not granted to the new principal",
                            g.role_definition_id, g.scope
                        ));
                    }
                }
            }
            (None, _) => out.push("the VM has no system-assigned principal".into()),
            (Some(_), None) => out.push("role assignments were not observed".into()),
        }
    }
    out
}

/// The id of a new role assignment named `name` at `scope`.
pub fn role_assignment_id(scope: &str, name: &str) -> String {
    format!(
        "{}/providers/Microsoft.Authorization/roleAssignments/{name}",
        scope.trim_end_matches('/')
    )
}

#[cfg(test)]
mod tests;
