//! The least-privilege role (issue 14): the actions derived from the
//! emulator's request log of full runs equal the role `ade2eah permissions`
//! prints, exactly; `permissions --check` names an action the caller lacks.
//!
//! Adding a scenario (a command run against the emulator) is one line in
//! [`SCENARIOS`]: a name, how the emulator starts and what it holds, and
//! the commands with `{conn}` (endpoint, auth, poll), `{sub}`, `{state}`,
//! `{vm}` (the seeded VMs, each as `--vm ID`) filled in; `KEY=VALUE ` before
//! a command sets its environment; a command `@METHOD PATH` is a request the
//! test itself sends first (set-up, left out of the derivation).

use std::collections::{BTreeMap, BTreeSet};

use ade2eah::azure::permissions::{operation_for, role_actions};
use ade2eah::emulator::{Emulator, EmulatorConfig, RequestLog};
use ade2eah::model::ResourceId;
use serde_json::Value;

use crate::support::{POLL, Rig, TIME_SCALE, bin, linux_data, text, windows};

/// How a scenario's emulator starts.
#[derive(Clone, Copy)]
enum Start {
    Default,
    FeatureUnregistered,
}

/// One scenario: name, emulator, seed, commands (run in order, each must exit 0).
type Scenario = (
    &'static str,
    Start,
    fn(&Emulator) -> Vec<ResourceId>,
    &'static [&'static str],
);

fn win(e: &Emulator) -> Vec<ResourceId> {
    vec![e.add_vm(windows("perm-win", 1))]
}
fn mixed(e: &Emulator) -> Vec<ResourceId> {
    vec![
        e.add_vm(windows("perm-w", 1)),
        e.add_vm(linux_data("perm-l")),
    ]
}
/// A VM with extensions, a system-assigned identity with roles, its OS disk
/// on a disk encryption set and a `DenyAll` data disk.
fn rich(e: &Emulator) -> Vec<ResourceId> {
    let mut spec = windows("perm-rich", 1).with_extensions_and_roles();
    spec.data_disks[0].properties = serde_json::json!({"networkAccessPolicy": "DenyAll"});
    let vm = e.add_vm(spec);
    let des = e.add_des("rg-keys", "des-perm", "westeurope");
    let model = e.vm_get(&vm).expect("the seeded VM");
    let os = model["properties"]["storageProfile"]["osDisk"]["managedDisk"]["id"]
        .as_str()
        .and_then(|id| ResourceId::parse(id).ok())
        .expect("an OS disk id");
    assert!(e.set_disk_encryption_set(&os, &des));
    vec![vm]
}
/// A Linux VM whose OS volume is ADE-encrypted (`--rebuild-linux-os`).
fn linux_os(e: &Emulator) -> Vec<ResourceId> {
    let mut s = linux_data("perm-lin-os");
    s.ade = ade2eah::emulator::AdeSpec::LinuxOsAndData;
    s.system_identity = true;
    vec![e.add_vm(s)]
}
fn named(e: &Emulator) -> Vec<ResourceId> {
    e.set_subscription_name(e.subscription(), "Contoso Prod");
    win(e)
}

const SCENARIOS: &[Scenario] = &[
    (
        "migrate",
        Start::Default,
        mixed,
        &["run {conn} --subscription {sub} {vm} --state {state} --yes"],
    ),
    (
        "plan",
        Start::Default,
        mixed,
        &["plan {conn} --subscription {sub} -o json"],
    ),
    (
        "plan -g",
        Start::Default,
        win,
        &["plan {conn} --subscription {sub} -g rg-test -o json"],
    ),
    (
        "plan --register-feature",
        Start::FeatureUnregistered,
        win,
        &["plan {conn} --subscription {sub} --register-feature -o json"],
    ),
    (
        "crash after the offline round, resume",
        Start::Default,
        win,
        &[
            "ADE2EAH_FAILPOINTS=after-act:copy-round-offline run {conn} --subscription {sub} {vm} --state {state} --yes",
            "resume {conn} --state {state}",
        ],
    ),
    (
        "a deallocated VM is started",
        Start::Default,
        win,
        &[
            "@POST {vmid}/deallocate",
            "run {conn} --subscription {sub} {vm} --state {state} --yes",
        ],
    ),
    (
        "subscription by name, --check",
        Start::Default,
        named,
        &["permissions --check {conn} --subscription \"Contoso Prod\""],
    ),
    (
        "extensions, roles, a DES, a DenyAll disk, --guest-check",
        Start::Default,
        rich,
        &["run {conn} --subscription {sub} {vm} --state {state} --yes --guest-check"],
    ),
    (
        "crash after the delete, rollback with ADE re-enabled",
        Start::Default,
        win,
        &[
            "ADE2EAH_FAILPOINTS=after-act:delete-vm run {conn} --subscription {sub} {vm} --state {state} --yes",
            "rollback {conn} --state {state} {vm} --yes --reenable-ade",
        ],
    ),
    (
        "cleanup after the retention",
        Start::Default,
        win,
        &[
            "run {conn} --subscription {sub} {vm} --state {state} --yes",
            "cleanup {conn} --state {state} --older-than 0s --yes",
        ],
    ),
    (
        "--nic-swap",
        Start::Default,
        win,
        &["run {conn} --subscription {sub} {vm} --state {state} --yes --nic-swap"],
    ),
    (
        "Linux OS volume rebuilt",
        Start::Default,
        linux_os,
        &["run {conn} --subscription {sub} {vm} --state {state} --yes --rebuild-linux-os"],
    ),
];

/// Splits a command template into (env, args) after filling it in.
fn expand(tpl: &str, rig: &Rig, vms: &[ResourceId]) -> (Vec<(String, String)>, Vec<String>) {
    let conn = format!(
        "--arm-endpoint {} --auth none --poll-interval {POLL}",
        rig.emu.base_url()
    );
    let vm: Vec<String> = vms.iter().map(|v| format!("--vm {v}")).collect();
    let filled = tpl
        .replace("{conn}", &conn)
        .replace("{sub}", rig.emu.subscription())
        .replace("{state}", &rig.state_dir().display().to_string())
        .replace("{vmid}", vms.first().map(|v| v.as_str()).unwrap_or(""))
        .replace("{vm}", &vm.join(" "));
    // Words, with "double quotes" grouping.
    let mut words: Vec<String> = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in filled.chars() {
        match c {
            '"' => quoted = !quoted,
            ' ' if !quoted => {
                if !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    let mut env = Vec::new();
    while let Some((k, v)) = words
        .first()
        .and_then(|w| w.split_once('='))
        .filter(|(k, _)| {
            !k.starts_with('-')
                && k.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        })
    {
        env.push((k.to_string(), v.to_string()));
        words.remove(0);
    }
    (env, words)
}

/// Runs every scenario; returns its request log, by scenario name.
async fn request_logs() -> Vec<(&'static str, Vec<RequestLog>)> {
    let mut out = Vec::new();
    for (name, start, seed, commands) in SCENARIOS {
        let rig = Rig::with_config(EmulatorConfig {
            time_scale: TIME_SCALE,
            eah_feature_registered: !matches!(start, Start::FeatureUnregistered),
            ..Default::default()
        })
        .await;
        let vms = seed(&rig.emu);
        let mut setup_seqs: BTreeSet<u64> = BTreeSet::new();
        for (i, tpl) in commands.iter().enumerate() {
            let (env, args) = expand(tpl, &rig, &vms);
            if let Some(method) = args[0].strip_prefix('@') {
                let before = rig.emu.requests().len() as u64;
                let url = format!("{}{}?api-version=2024-11-01", rig.emu.base_url(), args[1]);
                let r = reqwest::Client::new()
                    .request(method.parse().unwrap(), url)
                    .bearer_auth("test-set-up")
                    .header("content-length", "0")
                    .send()
                    .await
                    .unwrap();
                assert!(r.status().is_success(), "set-up {tpl}: {}", r.status());
                setup_seqs.extend(before..rig.emu.requests().len() as u64);
                continue;
            }
            let env: Vec<(&str, &str)> =
                env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let o = bin(&args, &env).await;
            let crashing = env.iter().any(|(k, _)| *k == "ADE2EAH_FAILPOINTS");
            assert!(
                crashing || o.status.code() == Some(0),
                "scenario {name:?} command {i} ({tpl}): {}",
                text(&o)
            );
        }
        let log = rig.emu.requests();
        out.push((
            *name,
            log.into_iter()
                .filter(|r| !setup_seqs.contains(&r.seq))
                .collect(),
        ));
    }
    out
}

/// ARM requests of a log (not the emulator's own view, not storage SAS calls).
fn arm_requests(log: &[RequestLog]) -> impl Iterator<Item = &RequestLog> {
    log.iter().filter(|r| {
        let first = r
            .path
            .trim_start_matches('/')
            .split('/')
            .next()
            .unwrap_or("");
        !r.path.starts_with("/_emulator") && !first.to_ascii_lowercase().starts_with("md-")
    })
}

/// The actions the logs' requests need, through the table; `Err` names each
/// request without a row.
fn derive_actions(logs: &[(&str, Vec<RequestLog>)]) -> Result<BTreeSet<String>, String> {
    let mut actions = BTreeSet::new();
    let mut unmapped: BTreeMap<String, &str> = BTreeMap::new();
    for (name, log) in logs {
        for r in arm_requests(log) {
            match operation_for(&r.method, &r.path) {
                Some(op) => actions.extend(op.actions.iter().map(|a| a.to_string())),
                None => {
                    unmapped.insert(format!("{} {}", r.method, r.path), name);
                }
            }
        }
    }
    if unmapped.is_empty() {
        Ok(actions)
    } else {
        Err(format!(
            "requests without a row in azure::permissions::OPERATIONS (add one): {unmapped:#?}"
        ))
    }
}

/// Compares derived actions with the role both ways.
fn compare(derived: &BTreeSet<String>, role: &[String]) -> Result<(), String> {
    let role: BTreeSet<String> = role.iter().cloned().collect();
    let extra: Vec<_> = role.difference(derived).collect();
    let missing: Vec<_> = derived.difference(&role).collect();
    if extra.is_empty() && missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "role differs from the requests sent: in the role but never needed {extra:?}; needed but not in the role {missing:?}"
        ))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_role_has_exactly_the_actions_of_the_requests_full_runs_send() {
    // The role as a user gets it: the scripting contract.
    let out = bin(
        &["permissions".to_string()],
        &[("AZURE_SUBSCRIPTION_ID", "")],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let role: Value = serde_json::from_slice(&out.stdout).expect("role JSON on stdout");
    for k in [
        "Name",
        "Description",
        "Actions",
        "NotActions",
        "DataActions",
        "AssignableScopes",
    ] {
        assert!(role.get(k).is_some(), "role has {k}: {role}");
    }
    assert_eq!(role["DataActions"], serde_json::json!([]));
    assert!(role["Description"].as_str().unwrap().contains("SAS"));
    let actions: Vec<String> = role["Actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        actions,
        role_actions()
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
    );

    let mut logs = request_logs().await;
    let derived = derive_actions(&logs).unwrap_or_else(|e| panic!("{e}"));
    compare(&derived, &actions).unwrap_or_else(|e| panic!("{e}"));

    // The check fails both ways: a request the table lacks, a role action
    // no request needs.
    logs[0].1.push(RequestLog {
        seq: 0,
        method: "POST".into(),
        path: format!(
            "/subscriptions/{}/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/v/powerOff",
            ade2eah::emulator::DEFAULT_SUBSCRIPTION
        ),
        mutating: true,
        status: 202,
        fault: None,
    });
    let err = derive_actions(&logs).unwrap_err();
    assert!(err.contains("powerOff"), "{err}");
    let mut fewer = derived.clone();
    fewer.remove("Microsoft.Compute/disks/delete");
    let err = compare(&fewer, &actions).unwrap_err();
    assert!(err.contains("Microsoft.Compute/disks/delete"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_names_the_denied_action_and_exits_2() {
    let rig = Rig::new().await;
    rig.emu
        .deny_action("Microsoft.Compute/disks/beginGetAccess/action");
    rig.emu.deny_action("Microsoft.Network/*/join/action");
    let check = |rig: &Rig| {
        let mut a = crate::support::arm_args(rig, "permissions");
        a.extend(["--check", "--subscription", rig.emu.subscription()].map(String::from));
        a
    };
    let args = check(&rig);
    let out = bin(&args, &[]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Microsoft.Compute/disks/beginGetAccess/action"),
        "{err}"
    );
    assert!(
        err.contains("Microsoft.Network/networkInterfaces/join/action"),
        "{err}"
    );
    // The wildcard denies the subnet join of `--nic-swap`'s placeholder too.
    assert!(
        err.contains("Microsoft.Network/virtualNetworks/subnets/join/action"),
        "{err}"
    );
    assert!(!err.contains("Microsoft.Compute/disks/read"), "{err}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(
        v["scopes"][0]["scope"],
        format!("/subscriptions/{}", rig.emu.subscription())
    );
    assert_eq!(
        v["scopes"][0]["missing"].as_array().unwrap().len(),
        3,
        "{v}"
    );
    // Nothing denied: exit 0.
    let ok = Rig::new().await;
    let out = bin(&check(&ok), &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // The permissions API was asked, on the subscription scope.
    assert!(ok.emu.requests().iter().any(|r| {
        r.method == "GET"
            && r.path
                .ends_with("/providers/Microsoft.Authorization/permissions")
    }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scopes_come_from_flags_and_the_role_is_valid_without_any() {
    let sub = ade2eah::emulator::DEFAULT_SUBSCRIPTION;
    let args = |extra: &[&str]| -> Vec<String> {
        let mut a = vec!["permissions".to_string()];
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let out = bin(
        &args(&["--subscription", sub, "-g", "rg-a", "-g", "rg-b"]),
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["AssignableScopes"],
        serde_json::json!([
            format!("/subscriptions/{sub}/resourceGroups/rg-a"),
            format!("/subscriptions/{sub}/resourceGroups/rg-b")
        ])
    );
    let out = bin(&args(&[]), &[("AZURE_SUBSCRIPTION_ID", sub)]).await;
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["AssignableScopes"],
        serde_json::json!([format!("/subscriptions/{sub}")])
    );
    let out = bin(&args(&["--scope", "not-a-scope"]), &[]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_check_permissions_refuses_before_changing_anything() {
    let rig = Rig::new().await;
    let vm = rig.emu.add_vm(windows("perm-refused", 0));
    rig.emu
        .deny_action("Microsoft.Compute/virtualMachines/delete");
    let mut args = crate::support::arm_args(&rig, "run");
    let state = rig.state_dir().display().to_string();
    args.extend(
        [
            "--subscription",
            rig.emu.subscription(),
            "--vm",
            vm.as_str(),
            "--state",
            &state,
            "--yes",
            "--check-permissions",
        ]
        .map(String::from),
    );
    let out = bin(&args, &[]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("Microsoft.Compute/virtualMachines/delete on /subscriptions/"),
        "{}",
        text(&out)
    );
    assert!(
        rig.emu.requests().iter().all(|r| !r.mutating),
        "nothing sent that changes anything"
    );
}
