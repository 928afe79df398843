//! Golden test: what the core reads from rich VM and disk models
//! (eligibility, observations, findings, fingerprint inputs) is exactly what
//! the dotted-path implementation read before the typed views.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::model::ResourceId;
use crate::step::eligibility::{Eligibility, PlatformFacts, classify};
use crate::step::{DiskView, VmRecord, VmView};

fn reads() -> Value {
    let input: Value = serde_json::from_str(include_str!("testdata/rich_models.json")).unwrap();
    let disks: BTreeMap<String, Value> = input["disks"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let platform = PlatformFacts {
        feature_registered: true,
        size_supports_eah: Some(true),
        size_restricted: false,
        rebuild_linux_os: None,
    };
    let mut out = Vec::new();
    for vm in input["vms"].as_array().unwrap() {
        let id = ResourceId::parse(vm["id"].as_str().unwrap()).unwrap();
        let mut rec = VmRecord::new(id);
        rec.original_model = Some(vm.clone());
        let class = classify(vm, &disks, &platform);
        let (path, eligible) = match &class {
            Eligibility::Eligible { disks, .. } => {
                rec.disks = disks.clone();
                ("eligible", true)
            }
            Eligibility::Skip { path, .. } => (*path, false),
        };
        out.push(json!({
            "classify": format!("{class:?}"),
            "observed": format!("{:?}", VmView::from_raw(vm, None)),
            "observed_with_iv": format!("{:?}", VmView::from_raw(vm, Some(&json!({"statuses": [{"code": "PowerState/Starting"}]})))),
            "advisories": serde_json::to_value(super::findings::advisories(&rec)).unwrap(),
            "power_state": super::findings::power_state(vm),
            "fingerprint_inputs": super::fingerprint::inputs(&rec, path, eligible),
        }));
    }
    for d in disks.values() {
        out.push(json!({ "disk": format!("{:?}", DiskView::from_raw(d)) }));
    }
    Value::Array(out)
}

#[test]
fn reads_of_rich_models_are_unchanged() {
    let now = reads();
    // A deliberate change of what the core reads (a new field in a view):
    // `ADE2EAH_BLESS_GOLDEN=1 cargo test golden` rewrites the golden file,
    // and the diff shows in review exactly what changed.
    if std::env::var_os("ADE2EAH_BLESS_GOLDEN").is_some() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src/plan/testdata/rich_reads.json"
        );
        std::fs::write(path, serde_json::to_string_pretty(&now).unwrap() + "\n").unwrap();
        return;
    }
    let golden: Value = serde_json::from_str(include_str!("testdata/rich_reads.json")).unwrap();
    for (i, (a, b)) in now
        .as_array()
        .unwrap()
        .iter()
        .zip(golden.as_array().unwrap())
        .enumerate()
    {
        assert_eq!(a, b, "entry {i} changed");
    }
    assert_eq!(now, golden);
}
