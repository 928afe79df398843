//! Discovery selectors other than `-g` and `--vm`: `--tag KEY=VALUE`
//! (all must match), `--name GLOB`, and `--register-feature` (the only
//! write `plan` may send).

use std::collections::BTreeSet;

use ade2eah::emulator::EmulatorConfig;
use ade2eah::emulator::fleetgen::{FleetGen, generate, seed};
use serde_json::Value;

use crate::support::{Rig, TIME_SCALE, bin, text};

async fn plan(rig: &Rig, extra: &[&str]) -> Value {
    let mut a: Vec<String> = vec![
        "plan".into(),
        "--arm-endpoint".into(),
        rig.emu.base_url(),
        "--auth".into(),
        "none".into(),
        "--subscription".into(),
        rig.emu.subscription().to_string(),
        "--output".into(),
        "json".into(),
    ];
    a.extend(extra.iter().map(|s| s.to_string()));
    let out = bin(&a, &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn names(v: &Value) -> BTreeSet<String> {
    v["vms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|vm| {
            vm["id"]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
                .to_string()
        })
        .collect()
}

/// Minimal glob (`*` and `?`) for the expected set.
fn glob(p: &[u8], s: &[u8]) -> bool {
    match (p.first(), s.first()) {
        (None, None) => true,
        (Some(b'*'), _) => glob(&p[1..], s) || (!s.is_empty() && glob(p, &s[1..])),
        (Some(b'?'), Some(_)) => glob(&p[1..], &s[1..]),
        (Some(a), Some(b)) if a.eq_ignore_ascii_case(b) => glob(&p[1..], &s[1..]),
        _ => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_and_name_selectors_pick_exactly_the_matching_vms() {
    let rig = Rig::with_config(EmulatorConfig {
        time_scale: TIME_SCALE,
        ..Default::default()
    })
    .await;
    let fleet = generate(&FleetGen {
        vms: 80,
        resource_groups: 4,
        seed: 11,
        os_disk_gib: 1,
        ..Default::default()
    });
    for g in &fleet {
        seed(&rig.emu, g);
    }
    let tagged = |k: &str, v: &str| -> BTreeSet<String> {
        fleet
            .iter()
            .filter(|g| g.spec.tags.get(k).map(String::as_str) == Some(v))
            .map(|g| g.spec.name.clone())
            .collect()
    };

    let prod = plan(&rig, &["--tag", "env=prod"]).await;
    assert_eq!(names(&prod), tagged("env", "prod"));
    assert!(!names(&prod).is_empty() && names(&prod).len() < fleet.len());

    let both = plan(&rig, &["--tag", "env=prod", "--tag", "app=app-3"]).await;
    let want: BTreeSet<String> = tagged("env", "prod")
        .intersection(&tagged("app", "app-3"))
        .cloned()
        .collect();
    assert_eq!(names(&both), want, "every --tag must match");

    let pattern = "*1?";
    let by_name = plan(&rig, &["--name", pattern]).await;
    let want: BTreeSet<String> = fleet
        .iter()
        .filter(|g| glob(pattern.as_bytes(), g.spec.name.as_bytes()))
        .map(|g| g.spec.name.clone())
        .collect();
    assert!(!want.is_empty() && want.len() < fleet.len(), "{want:?}");
    assert_eq!(names(&by_name), want);
    assert_eq!(rig.mutating_requests(), 0, "selection reads only");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_feature_is_the_only_write_plan_sends() {
    let rig = Rig::with_config(EmulatorConfig {
        time_scale: TIME_SCALE,
        eah_feature_registered: false,
        ..Default::default()
    })
    .await;
    rig.emu.add_vm(crate::support::windows("needs-feature", 0));

    let before = plan(&rig, &[]).await;
    let codes: Vec<&str> = before["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap())
        .collect();
    assert!(codes.contains(&"feature-not-registered"), "{before:#}");
    assert_eq!(before["vms"][0]["eligible"], false);
    assert_eq!(rig.mutating_requests(), 0);

    let after = plan(&rig, &["--register-feature"]).await;
    let writes: Vec<String> = rig
        .emu
        .requests()
        .into_iter()
        .filter(|r| r.mutating)
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert!(
        writes[0].starts_with("POST ")
            && writes[0].ends_with("/providers/Microsoft.Features/providers/Microsoft.Compute/features/EncryptionAtHost/register"),
        "{writes:?}"
    );
    let codes: Vec<&str> = after["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap())
        .collect();
    assert!(
        codes.contains(&"feature-registration-requested"),
        "{after:#}"
    );
}
