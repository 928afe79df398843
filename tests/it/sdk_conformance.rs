//! SDK conformance: Microsoft's own Python SDKs (azure-mgmt-compute on
//! azure-core, azure-storage-blob; versions pinned in tests/sdk/requirements.txt)
//! drive the emulator through tests/sdk/conformance.py. Azure is the judge:
//! where the SDK and the emulator disagree, the emulator is wrong.
//!
//! Two emulators (in-process, port 0) seeded with the demo fleet: one answers
//! long-running operations with `Azure-AsyncOperation` (+ `Location` where
//! Compute sends it) and pages VM listings ([`PAGE`] per page), the other
//! answers them with `Location` only ([`EmulatorConfig::lro_location_only`]).
//! The interpreter is `$ADE2EAH_SDK_PYTHON` (must exist when set; `.ci/run`
//! creates `target/sdk-venv` and sets it), else `target/sdk-venv/bin/python`;
//! without either the test prints a notice and runs only the emulator half
//! (the same wire facts checked over plain HTTP).
//!
//! | check (conformance.py)                                    | SDK call(s)                                             |
//! |-----------------------------------------------------------|---------------------------------------------------------|
//! | `list_vms_paged`                                          | `virtual_machines.list_all().by_page()` (follows `nextLink`), `list(rg)` |
//! | `get_with_instance_view`                                  | `virtual_machines.get(expand="instanceView")`, `instance_view` |
//! | `list_extensions`                                         | `virtual_machine_extensions.list` (with and without `$expand`) |
//! | `error_envelopes`                                         | 404 → `ResourceNotFoundError` code `ResourceNotFound`; 400 → `HttpResponseError` code `BadRequest` |
//! | `extension_put_delete_lro`                                | `begin_create_or_update(...).result()`, `begin_delete(...).result()` |
//! | `eah_refused_on_ever_ade_vm`                              | `begin_update` with `encryptionAtHost` → 400 `BadRequest`, the documented message |
//! | `upload_disk_grant_revoke_page_ops_async_operation`       | Upload disk, `begin_grant_access`/`begin_revoke_access` (Azure-AsyncOperation), `upload_page`, `get_page_ranges`, `upload_pages_from_url`, `download_blob(offset, length)`, footer check at revoke |
//! | `upload_disk_grant_revoke_page_ops_location_only`         | the same against the Location-only emulator             |
//! | `recreate_through_nic_reserved`                           | delete, re-create → `NicReservedForAnotherVm`, wait out the hold, re-create succeeds |

use std::path::PathBuf;
use std::time::Duration;

use ade2eah::emulator::{self, Emulator, EmulatorConfig, demo_fleet};
use serde_json::{Value, json};

/// VMs per page of a listing (the demo fleet has 6: three pages).
const PAGE: usize = 2;
/// Simulated seconds per real second: the 180 s NIC hold lasts 3.6 s, long
/// enough that the re-create right after the delete meets it, short enough
/// to wait out.
const SDK_TIME_SCALE: f64 = 50.0;
/// Simulated seconds a NIC stays reserved (Azure's 180).
const NIC_HOLD_SECS: f64 = 180.0;
/// Every check conformance.py must report as passed, in order.
const CHECKS: [&str; 9] = [
    "list_vms_paged",
    "get_with_instance_view",
    "list_extensions",
    "error_envelopes",
    "extension_put_delete_lro",
    "eah_refused_on_ever_ade_vm",
    "upload_disk_grant_revoke_page_ops_async_operation",
    "upload_disk_grant_revoke_page_ops_location_only",
    "recreate_through_nic_reserved",
];

/// `$ADE2EAH_SDK_PYTHON` (must exist when set), else the venv `.ci/run` makes.
fn sdk_python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ADE2EAH_SDK_PYTHON").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        assert!(
            p.exists(),
            "ADE2EAH_SDK_PYTHON={} does not exist (unset it to skip the SDK half)",
            p.display()
        );
        return Some(p);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/sdk-venv/bin/python");
    venv.exists().then_some(venv)
}

async fn start(location_only: bool) -> Emulator {
    let emu = emulator::start(EmulatorConfig {
        time_scale: SDK_TIME_SCALE,
        nic_reservation_secs: NIC_HOLD_SECS,
        lro_location_only: location_only,
        list_page_size: Some(PAGE),
        ..Default::default()
    })
    .await
    .expect("emulator starts");
    for spec in demo_fleet() {
        emu.add_vm(spec);
    }
    emu
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_conformance_microsoft_python_sdks_drive_the_emulator() {
    let both = start(false).await;
    let loc_only = start(true).await;
    emulator_half(&both, &loc_only).await;

    let Some(python) = sdk_python() else {
        eprintln!(
            "NOTICE sdk_conformance: no SDK venv (set ADE2EAH_SDK_PYTHON or run .ci/run, which \
             creates target/sdk-venv from tests/sdk/requirements.txt); only the emulator half ran"
        );
        return;
    };
    let vms: Vec<String> = demo_fleet().iter().map(|s| s.name.clone()).collect();
    let cfg = json!({
        "endpoint": both.base_url(),
        "endpoint_location_only": loc_only.base_url(),
        "subscription": both.subscription(),
        "resource_group": "rg-demo",
        "location": "westeurope",
        "vms": vms,
        "page_size": PAGE,
        "time_scale": SDK_TIME_SCALE,
        "nic_hold_secs": NIC_HOLD_SECS,
    });
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/conformance.py");
    let mut cmd = tokio::process::Command::new(&python);
    cmd.kill_on_drop(true)
        .arg(&script)
        .arg(cfg.to_string())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1")
        .env_remove("PYTHONPATH");
    let out = cmd.output().await.expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report = || {
        format!(
            "exit {:?}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
            out.status
        )
    };
    assert!(out.status.success(), "conformance.py failed: {}", report());
    let passed: Value = stdout
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("SDK-CONFORMANCE "))
        .and_then(|j| serde_json::from_str(j).ok())
        .unwrap_or_else(|| panic!("no SDK-CONFORMANCE line: {}", report()));
    assert_eq!(passed["passed"], json!(CHECKS), "checks run: {}", report());
    // The run left its marks in both emulators (the script really ran against them).
    assert!(
        both.requests()
            .iter()
            .any(|r| r.path.ends_with("/extensions"))
    );
    assert!(
        loc_only
            .requests()
            .iter()
            .any(|r| r.path.ends_with("/beginGetAccess"))
    );
    // Neither SAS nor token on the script's output.
    for (name, s) in [("stdout", &stdout), ("stderr", &stderr)] {
        let hits = crate::support::secret_hits(name, s.as_bytes())
            .into_iter()
            .filter(|h| !h.contains("sdk-conformance-fake"))
            .collect::<Vec<_>>();
        assert!(hits.is_empty(), "secrets printed: {hits:#?}");
    }
}

/// The wire facts the SDK half relies on, over plain HTTP (always runs).
async fn emulator_half(both: &Emulator, loc_only: &Emulator) {
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("http client");
    let arm = |e: &Emulator, p: &str| {
        format!(
            "{}/subscriptions/{}/resourceGroups/rg-demo/providers/Microsoft.Compute/{p}",
            e.base_url(),
            e.subscription()
        )
    };
    let get = |url: String| {
        let http = http.clone();
        async move {
            let r = http.get(url).bearer_auth("t").send().await.expect("GET");
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };

    // VirtualMachineExtensions_List, with and without $expand, and for a missing VM.
    let (s, v) = get(arm(
        both,
        "virtualMachines/app-lin-01/extensions?api-version=2024-11-01",
    ))
    .await;
    assert_eq!(s, 200, "{v}");
    let items = v["value"].as_array().expect("value[]");
    assert_eq!(items.len(), 1, "{v}");
    assert_eq!(items[0]["name"], "ade-tf");
    assert_eq!(
        items[0]["type"],
        "Microsoft.Compute/virtualMachines/extensions"
    );
    assert!(items[0]["properties"].get("instanceView").is_none());
    let (s, v) = get(arm(
        both,
        "virtualMachines/app-lin-01/extensions?api-version=2024-11-01&$expand=instanceView",
    ))
    .await;
    assert_eq!(s, 200);
    let iv = &v["value"][0]["properties"]["instanceView"];
    assert_eq!(iv["name"], "ade-tf", "{v}");
    assert!(iv["statuses"][0]["code"].is_string(), "{v}");
    let (s, v) = get(arm(
        both,
        "virtualMachines/no-such-vm/extensions?api-version=2024-11-01",
    ))
    .await;
    assert_eq!((s, &v["error"]["code"]), (404, &json!("ResourceNotFound")));

    // Paged VM listing: nextLink until every VM was seen once.
    let mut url = arm(both, "virtualMachines?api-version=2024-11-01");
    let mut names = Vec::new();
    let mut pages = 0;
    loop {
        let (s, v) = get(url).await;
        assert_eq!(s, 200, "{v}");
        pages += 1;
        let page = v["value"].as_array().expect("value[]");
        assert!(page.len() <= PAGE);
        names.extend(
            page.iter()
                .map(|vm| vm["name"].as_str().unwrap().to_string()),
        );
        match v["nextLink"].as_str() {
            Some(next) => url = next.to_string(),
            None => break,
        }
    }
    let mut want: Vec<String> = demo_fleet().iter().map(|s| s.name.clone()).collect();
    want.sort();
    names.sort();
    assert_eq!(names, want);
    assert_eq!(pages, want.len().div_ceil(PAGE));

    // LRO answer styles: Azure-AsyncOperation (+ Location) vs Location only.
    for (emu, location_only) in [(both, false), (loc_only, true)] {
        let url = arm(emu, "disks/sdk-half-upload?api-version=2025-01-02");
        let body = json!({"location": "westeurope", "properties": {"creationData": {
            "createOption": "Upload", "uploadSizeBytes": 20 * 1024 * 1024 + 512}}});
        let r = http
            .put(&url)
            .bearer_auth("t")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
        let grant = arm(
            emu,
            "disks/sdk-half-upload/beginGetAccess?api-version=2025-01-02",
        );
        // The disk PUT is itself an LRO; retry the grant until the disk is ready.
        let mut tries = 0;
        let r = loop {
            let r = http
                .post(&grant)
                .bearer_auth("t")
                .json(&json!({"access": "Write", "durationInSeconds": 3600}))
                .send()
                .await
                .unwrap();
            tries += 1;
            if r.status() == 202 || tries > 100 {
                break r;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(r.status(), 202);
        let h = r.headers();
        assert!(h.contains_key("location"), "Location on beginGetAccess");
        assert_eq!(
            h.contains_key("azure-asyncoperation"),
            !location_only,
            "Azure-AsyncOperation iff not Location-only"
        );
    }
}
