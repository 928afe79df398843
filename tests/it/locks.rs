//! Management locks, Azure Backup status and Compute usages: the emulator's
//! wire (PUT/GET/list/DELETE of locks at every scope, `ScopeLocked`
//! enforcement), a run refused by a lock parks and finishes on `resume`
//! once the lock is gone, and the plan's quota preflight.

use ade2eah::emulator::LockLevel;
use ade2eah::model::ResourceId;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::*;

const LOCKS_API: &str = "api-version=2016-09-01";

struct Http {
    base: String,
    c: reqwest::Client,
}

impl Http {
    fn new(rig: &Rig) -> Http {
        Http {
            base: rig.emu.base_url(),
            c: reqwest::Client::new(),
        }
    }

    async fn send(
        &self,
        m: reqwest::Method,
        path: &str,
        query: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut r = self
            .c
            .request(m, format!("{}{path}?{query}", self.base))
            .bearer_auth("t");
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

fn rg_of(id: &ResourceId) -> String {
    format!(
        "/subscriptions/{}/resourceGroups/{}",
        id.subscription(),
        id.resource_group()
    )
}

fn names(v: &Value) -> Vec<String> {
    v["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locks_backup_status_and_usages_over_http() {
    let rig = Rig::new().await;
    let vm = rig.emu.add_vm(windows("lk", 0));
    let h = Http::new(&rig);
    let rg = rg_of(&vm);
    let sub = format!("/subscriptions/{}", vm.subscription());
    let lock = format!("{rg}/providers/Microsoft.Authorization/locks/nodelete");
    let body = json!({"properties": {"level": "CanNotDelete", "notes": "prod"}});
    let (s, v) = h
        .send(reqwest::Method::PUT, &lock, LOCKS_API, Some(body.clone()))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["type"], "Microsoft.Authorization/locks");
    assert_eq!(v["properties"]["level"], "CanNotDelete");
    let (s, _) = h
        .send(reqwest::Method::PUT, &lock, LOCKS_API, Some(body))
        .await;
    assert_eq!(s, StatusCode::OK);
    let list = |scope: String| format!("{scope}/providers/Microsoft.Authorization/locks");
    // atScope(): what applies at the VM (inherited); unfiltered: at or below.
    let (_, v) = h
        .send(
            reqwest::Method::GET,
            &list(vm.to_string()),
            "api-version=2020-05-01&$filter=atScope()",
            None,
        )
        .await;
    assert_eq!(names(&v), ["nodelete"]);
    let (_, v) = h
        .send(reqwest::Method::GET, &list(vm.to_string()), LOCKS_API, None)
        .await;
    assert!(names(&v).is_empty(), "{v}");
    let (_, v) = h
        .send(reqwest::Method::GET, &list(sub.clone()), LOCKS_API, None)
        .await;
    assert_eq!(names(&v), ["nodelete"]);

    // CanNotDelete: deletes refused (the VM and its extensions), writes allowed.
    let (s, v) = h
        .send(
            reqwest::Method::DELETE,
            vm.as_str(),
            "api-version=2024-11-01",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"]["code"], "ScopeLocked");
    assert_eq!(
        v["error"]["message"],
        format!(
            "The scope '{vm}' cannot perform delete operation because following scope(s) are locked: '{rg}'. Please remove the lock and try again."
        )
    );
    let (s, _) = h
        .send(
            reqwest::Method::POST,
            &format!("{vm}/powerOff"),
            "api-version=2024-11-01",
            None,
        )
        .await;
    assert!(s.is_success(), "{s}");

    // ReadOnly on the OS disk: grant access and VM updates are refused.
    let state = serde_json::to_value(rig.emu.state()).unwrap();
    let os = disks_of_vm_model(&state, &vm)[0].clone();
    rig.emu.add_lock(os.as_str(), "ro", LockLevel::ReadOnly);
    let (s, v) = h
        .send(
            reqwest::Method::POST,
            &format!("{os}/beginGetAccess"),
            "api-version=2025-01-02",
            Some(json!({"access": "Read", "durationInSeconds": 3600})),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cannot perform write operation"),
        "{v}"
    );
    let (s, v) = h
        .send(
            reqwest::Method::PATCH,
            vm.as_str(),
            "api-version=2024-11-01",
            Some(json!({"tags": {"a": "b"}})),
        )
        .await;
    assert_eq!(
        (s, &v["error"]["code"]),
        (StatusCode::CONFLICT, &json!("ScopeLocked")),
        "{v}"
    );
    assert!(rig.emu.remove_lock(os.as_str(), "ro"));
    let (s, _) = h
        .send(reqwest::Method::DELETE, &lock, LOCKS_API, None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = h.send(reqwest::Method::GET, &lock, LOCKS_API, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Backup status: a POST logged as a read.
    let bs =
        format!("{sub}/providers/Microsoft.RecoveryServices/locations/westeurope/backupStatus");
    let req = json!({"resourceId": vm.as_str(), "resourceType": "VM"});
    let (s, v) = h
        .send(
            reqwest::Method::POST,
            &bs,
            "api-version=2023-04-01",
            Some(req.clone()),
        )
        .await;
    assert_eq!(
        (s, &v["protectionStatus"]),
        (StatusCode::OK, &json!("NotProtected"))
    );
    let vault = format!("{rg}/providers/Microsoft.RecoveryServices/vaults/rsv");
    rig.emu.protect_vm(&vm, &vault, "DailyPolicy");
    let (_, v) = h
        .send(
            reqwest::Method::POST,
            &bs,
            "api-version=2023-04-01",
            Some(req),
        )
        .await;
    assert_eq!(v["protectionStatus"], "Protected");
    assert_eq!(v["vaultId"], json!(vault));
    assert_eq!(v["policyName"], "DailyPolicy");
    let log = rig.emu.requests();
    let last = log.last().unwrap();
    assert!(
        last.path.ends_with("backupStatus") && !last.mutating,
        "{last:?}"
    );

    // Usages: counts of the world's disks, configurable limits.
    rig.emu.set_usage_limit("PremiumDiskCount", 7);
    let (s, v) = h
        .send(
            reqwest::Method::GET,
            &format!("{sub}/providers/Microsoft.Compute/locations/westeurope/usages"),
            "api-version=2024-11-01",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let u = v["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"]["value"] == "PremiumDiskCount")
        .unwrap();
    assert_eq!(
        (u["currentValue"].as_u64(), u["limit"].as_u64()),
        (Some(1), Some(7)),
        "{u}"
    );
    assert_eq!(u["unit"], "Count");
}

/// A lock added behind the tool's back (no plan): the run parks each VM at
/// the refused step, naming the lock's scope, deletes nothing; once the
/// locks are removed, `resume` finishes both VMs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_refusal_parks_the_vm_and_resume_finishes_after_removal() {
    let rig = Rig::new().await;
    let mut a = windows("lk-a", 1);
    a.resource_group = "rg-lock-a".into();
    let mut b = windows("lk-b", 0);
    b.resource_group = "rg-lock-b".into();
    let (a, b) = (rig.emu.add_vm(a), rig.emu.add_vm(b));
    let before_a = source_digests(&rig.emu, &a);
    let before_b = source_digests(&rig.emu, &b);
    rig.emu
        .add_lock(&rg_of(&a), "no-delete", LockLevel::CanNotDelete);
    rig.emu
        .add_lock(&rg_of(&b), "read-only", LockLevel::ReadOnly);

    let out = rig.run(&[a.clone(), b.clone()], &[]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let st = rig.status().await;
    for (vm, scope) in [(&a, rg_of(&a)), (&b, rg_of(&b))] {
        let rec = st["vms"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"].as_str().unwrap().eq_ignore_ascii_case(vm.as_str()))
            .unwrap();
        assert_eq!(rec["outcome"], "parked", "{rec}");
        let all = format!("{} {}", rec["reason"], rec["next_action"]);
        assert!(
            all.contains("ScopeLocked") || all.contains("locked"),
            "{vm}: {all}"
        );
        assert!(
            all.contains(&scope) && all.contains("ade2eah resume"),
            "{vm}: {all}"
        );
    }
    // Nothing destroyed: both VMs and every source disk are still there.
    let state = serde_json::to_value(rig.emu.state()).unwrap();
    for vm in [&a, &b] {
        assert!(find_by_id(&state["vms"], vm).is_some(), "{vm} not deleted");
    }
    for (d, digest) in before_a.iter().chain(&before_b) {
        assert_eq!(
            rig.emu.disk_digest(d).as_deref(),
            Some(digest.as_str()),
            "{d}"
        );
    }

    assert!(rig.emu.remove_lock(&rg_of(&a), "no-delete"));
    assert!(rig.emu.remove_lock(&rg_of(&b), "read-only"));
    let out = rig.resume(&[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let st = rig.status().await;
    for rec in st["vms"].as_array().unwrap() {
        assert_eq!(rec["outcome"], "verified", "{rec}");
    }
    assert_migrated(&rig.emu, &a, &before_a);
    assert_migrated(&rig.emu, &b, &before_b);
}

/// A lock that appears mid-run, just before the VM would be deleted: the
/// delete is refused, the VM parks at delete-vm with the source VM and disks
/// intact, and `resume` after the lock is removed finishes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_added_mid_run_parks_at_delete_and_resume_finishes() {
    let rig = Rig::new().await;
    let vm = rig.emu.add_vm(windows("lk-mid", 1));
    let before = source_digests(&rig.emu, &vm);
    let crashed = rig
        .run(
            std::slice::from_ref(&vm),
            &[("ADE2EAH_FAILPOINTS", "before-intent:delete-vm")],
        )
        .await;
    assert_ne!(crashed.status.code(), Some(0), "{}", text(&crashed));
    rig.emu
        .add_lock(vm.as_str(), "keep", LockLevel::CanNotDelete);
    let parked = rig.resume(&[]).await;
    assert_eq!(parked.status.code(), Some(1), "{}", text(&parked));
    let st = rig.status().await;
    let rec = &st["vms"][0];
    assert_eq!(rec["outcome"], "parked", "{rec}");
    assert_eq!(rec["step"], "delete-vm", "{rec}");
    let reason = rec["reason"].as_str().unwrap();
    assert!(
        reason.contains("ScopeLocked") && reason.contains(&format!("lock on {vm}")),
        "{reason}"
    );
    let state = serde_json::to_value(rig.emu.state()).unwrap();
    assert!(find_by_id(&state["vms"], &vm).is_some(), "VM not deleted");
    for (d, digest) in &before {
        assert_eq!(rig.emu.disk_digest(d).as_deref(), Some(digest.as_str()));
    }
    assert!(rig.emu.remove_lock(vm.as_str(), "keep"));
    let out = rig.resume(&[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(rig.status().await["vms"][0]["outcome"], "verified");
    assert_migrated(&rig.emu, &vm, &before);
}
