use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::*;
use crate::model::ResourceId;
use crate::step::observe::DecryptionState;
use crate::step::{Action, Decision, Step, VmRecord};

const VM: &str =
    "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm";
const OWNER: &str = "/subscriptions/s/providers/Microsoft.Authorization/roleDefinitions/owner";
const READER: &str = "/subscriptions/s/providers/Microsoft.Authorization/roleDefinitions/reader";

fn original() -> Value {
    json!({
        "name": "vm", "location": "westeurope",
        "identity": {"type": "SystemAssigned", "principalId": "old"},
        "resources": [
            {"id": format!("{VM}/extensions/ade"), "name": "ade", "location": "westeurope",
             "properties": {"publisher": "Microsoft.Azure.Security", "type": "AzureDiskEncryption",
                            "typeHandlerVersion": "2.2", "settings": {"EncryptionOperation": "EnableEncryption"}}},
            {"id": format!("{VM}/extensions/ama"), "name": "ama", "location": "westeurope", "tags": {"team": "ops"},
             "properties": {"publisher": "Microsoft.Azure.Monitor", "type": "AzureMonitorWindowsAgent",
                            "typeHandlerVersion": "1.0", "autoUpgradeMinorVersion": true, "enableAutomaticUpgrade": true,
                            "settings": {"authentication": {"managedIdentity": {"identifier-name": "mi_res_id"}}},
                            "provisioningState": "Succeeded", "suppressFailures": false}},
            {"id": format!("{VM}/extensions/cse"), "name": "cse",
             "properties": {"publisher": "Microsoft.Compute", "type": "CustomScriptExtension",
                            "typeHandlerVersion": "1.10", "settings": {"fileUris": ["https://x/y.ps1"]}}},
            {"id": format!("{VM}/extensions/cse2"), "name": "cse2",
             "properties": {"publisher": "Microsoft.Azure.Extensions", "type": "CustomScript",
                            "typeHandlerVersion": "2.1", "settings": {"commandToExecute": "echo hi"}}},
            {"id": format!("{VM}/extensions/mma"), "name": "mma",
             "properties": {"publisher": "Microsoft.EnterpriseCloud.Monitoring", "type": "MicrosoftMonitoringAgent",
                            "typeHandlerVersion": "1.0", "settings": {"workspaceId": "w"},
                            "protectedSettingsFromKeyVault": {"secretUrl": "https://kv/secrets/s", "sourceVault": {"id": "kv"}}}},
        ]
    })
}

fn record() -> VmRecord {
    let mut r = VmRecord::new(ResourceId::parse(VM).unwrap());
    r.step = Step::Reinstall;
    r.original_model = Some(original());
    let (e, m) = plan_extensions(&original(), None);
    r.carried.extensions = e;
    r.carried.manual = m;
    r.carried.old_principal = Some("old".into());
    r.carried.roles = vec![
        grant(OWNER, "/subscriptions/s/resourceGroups/rg"),
        grant(READER, "/subscriptions/s"),
    ];
    r
}

fn grant(role: &str, scope: &str) -> RoleGrant {
    RoleGrant {
        id: format!(
            "{scope}/providers/Microsoft.Authorization/roleAssignments/old-{}",
            role.len()
        ),
        role_definition_id: role.into(),
        scope: scope.into(),
        condition: None,
        condition_version: None,
        description: Some("kept".into()),
    }
}

fn vm(power: &str) -> VmView {
    VmView {
        provisioning_state: "Succeeded".into(),
        power: Some(power.into()),
        ade_extensions: Vec::new(),
        encryption_at_host: true,
        os_disk: None,
        data_disks: BTreeMap::new(),
        all_detach: true,
        decryption: DecryptionState::Unknown,
        vm_id: Some("new".into()),
        tags: serde_json::json!({}),
        vm_agent_ready: Some(true),
        delete_options: BTreeMap::new(),
    }
}

/// The re-created VM with `exts` installed (each as its reinstall body, Succeeded).
fn seen(rec: &VmRecord, exts: &[&str], roles: &[(&str, &str)]) -> CarriedView {
    CarriedView {
        principal_id: Some("new".into()),
        extensions: rec
            .carried
            .extensions
            .iter()
            .filter(|e| exts.contains(&e.name.as_str()))
            .map(|e| ExtensionState {
                name: e.name.clone(),
                model: e.body.clone(),
                provisioning_state: "Succeeded".into(),
                error: None,
            })
            .collect(),
        roles: Some(
            roles
                .iter()
                .map(|(r, s)| RoleAssignmentView {
                    role_definition_id: r.to_string(),
                    scope: s.to_string(),
                    principal_id: "new".into(),
                })
                .collect(),
        ),
    }
}

#[test]
fn the_model_splits_into_reinstalled_and_operator_extensions() {
    let rec = record();
    let names: Vec<&str> = rec
        .carried
        .extensions
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(
        names,
        ["ama", "cse2", "mma"],
        "ADE never, protected-only handlers not"
    );
    let manual: Vec<&str> = rec.carried.manual.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        manual,
        ["cse"],
        "a custom script without a public command had it in protected settings"
    );
    let ama = &rec.carried.extensions[0].body;
    assert_eq!(ama["location"], "westeurope");
    assert_eq!(ama["tags"], json!({"team": "ops"}));
    assert_eq!(ama["properties"]["enableAutomaticUpgrade"], true);
    assert_eq!(ama["properties"]["suppressFailures"], false);
    assert!(
        ama["properties"].get("provisioningState").is_none(),
        "read-only fields are dropped"
    );
    let mma = &rec.carried.extensions[2].body;
    assert_eq!(
        mma["properties"]["protectedSettingsFromKeyVault"]["secretUrl"],
        "https://kv/secrets/s"
    );
    assert_eq!(
        rec.carried.extensions[1].body["location"], "westeurope",
        "the VM's location by default"
    );
}

#[test]
fn a_listed_extension_set_is_used_when_the_model_has_none() {
    let mut vm = original();
    let listed = vm["resources"].as_array().unwrap().clone();
    vm.as_object_mut().unwrap().remove("resources");
    let (e, m) = plan_extensions(&vm, Some(&listed));
    assert_eq!((e.len(), m.len()), (3, 1));
}

#[test]
fn reinstall_puts_only_what_is_missing_or_different_then_grants_roles() {
    let rec = record();
    let ext = |n: &str| Action::ReinstallExtension {
        extension: ResourceId::parse(VM).unwrap().child("extensions", n),
    };
    let run = |s: &CarriedView| decide(&rec, &vm("running"), Some(s));
    assert_eq!(run(&seen(&rec, &[], &[])), Decision::Act(ext("ama")));
    assert_eq!(run(&seen(&rec, &["ama"], &[])), Decision::Act(ext("cse2")));
    let mut s = seen(&rec, &["ama", "cse2", "mma"], &[]);
    s.extensions[1].model["properties"]["settings"]["commandToExecute"] = json!("echo other");
    assert_eq!(
        run(&s),
        Decision::Act(ext("cse2")),
        "wrong settings are put again"
    );
    s.extensions[1].model = rec.carried.extensions[1].body.clone();
    s.extensions[1].provisioning_state = "Creating".into();
    assert!(matches!(run(&s), Decision::Wait { .. }));
    s.extensions[1].provisioning_state = "Failed".into();
    s.extensions[1].error = Some("Enable failed: exit 1".into());
    match run(&s) {
        Decision::Park { reason, .. } => {
            assert!(reason.contains("Enable failed: exit 1"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    let s = seen(
        &rec,
        &["ama", "cse2", "mma"],
        &[(OWNER, "/subscriptions/s/resourceGroups/RG/")],
    );
    assert_eq!(
        run(&s),
        Decision::Act(Action::GrantRole {
            principal_id: "new".into(),
            role_definition_id: READER.into(),
            scope: "/subscriptions/s".into(),
        }),
        "the owner grant is in place (ids compare case-insensitively)"
    );
    let all = [
        (OWNER, "/subscriptions/s/resourceGroups/rg"),
        (READER, "/subscriptions/s"),
    ];
    let s = seen(&rec, &["ama", "cse2", "mma"], &all);
    assert_eq!(run(&s), Decision::Advance);
    assert!(verify_problems(&rec, Some(&s)).is_empty());
    assert_eq!(
        decide(&rec, &vm("deallocated"), Some(&s)),
        Decision::Act(Action::StartVm)
    );
}

#[test]
fn roles_are_left_alone_when_not_carried_and_listed_for_the_operator() {
    let mut rec = record();
    rec.carried.carry_roles = false;
    let s = seen(&rec, &["ama", "cse2", "mma"], &[]);
    assert_eq!(decide(&rec, &vm("running"), Some(&s)), Decision::Advance);
    assert!(verify_problems(&rec, Some(&s)).is_empty());
    let ops = rec.carried.operator_actions();
    assert_eq!(ops.len(), 3, "{ops:?}");
    assert!(ops[0].contains("cse") && ops[0].contains("protected settings"));
    assert!(ops[1].contains("--no-carry-role-assignments"));
}

#[test]
fn verify_reports_missing_failed_and_ungranted() {
    let rec = record();
    let mut s = seen(
        &rec,
        &["ama", "cse2"],
        &[(OWNER, "/subscriptions/s/resourceGroups/rg")],
    );
    s.extensions[0].provisioning_state = "Failed".into();
    let p = verify_problems(&rec, Some(&s));
    assert_eq!(p.len(), 3, "{p:?}");
    assert!(p.iter().any(|x| x.contains("mma is missing")));
    assert!(p.iter().any(|x| x.contains("ama is Failed")));
    assert!(p.iter().any(|x| x.contains(READER)));
    assert!(!verify_problems(&rec, None).is_empty());
    assert!(verify_problems(&VmRecord::new(rec.id.clone()), None).is_empty());
}

#[test]
fn the_view_reads_extensions_statuses_and_principal() {
    let vm = json!({
        "identity": {"type": "SystemAssigned", "principalId": "p1"},
        "properties": {"instanceView": {"extensions": [
            {"name": "AMA", "statuses": [{"code": "ProvisioningState/failed", "level": "Error", "message": "no workspace"}]}
        ]}},
        "resources": [{"id": format!("{VM}/extensions/ama"), "properties": {"publisher": "p", "type": "t", "provisioningState": "Failed"}}]
    });
    let v = CarriedView::from_vm(&vm);
    assert_eq!(v.principal_id.as_deref(), Some("p1"));
    assert_eq!(
        v.extensions[0].name, "ama",
        "the name from the id when absent"
    );
    assert_eq!(v.extensions[0].error.as_deref(), Some("no workspace"));
    assert_eq!(v.extensions[0].provisioning_state, "Failed");
}

#[test]
fn a_role_body_names_a_service_principal_and_keeps_the_condition() {
    let mut g = grant(OWNER, "/subscriptions/s");
    g.condition = Some("@Resource[x] StringEquals 'y'".into());
    g.condition_version = Some("2.0".into());
    let b = g.body("new");
    assert_eq!(b["properties"]["principalType"], "ServicePrincipal");
    assert_eq!(b["properties"]["principalId"], "new");
    assert_eq!(b["properties"]["conditionVersion"], "2.0");
    assert_eq!(
        role_assignment_id("/subscriptions/s/", "g"),
        "/subscriptions/s/providers/Microsoft.Authorization/roleAssignments/g"
    );
    let listed = json!({"id": "x", "properties": {"roleDefinitionId": OWNER, "scope": "/subscriptions/s", "principalId": "old"}});
    assert_eq!(
        RoleGrant::from_raw(&listed).unwrap().scope,
        "/subscriptions/s"
    );
}
