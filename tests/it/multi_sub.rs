//! Fleets across several subscriptions (issue 6): one emulator world serving
//! three subscriptions, one without the EncryptionAtHost feature.

use std::collections::BTreeSet;

use ade2eah::emulator::fleetgen::{FleetGen, GeneratedVm, generate, rg_name};
use ade2eah::emulator::{DEFAULT_SUBSCRIPTION, EmulatorConfig, SubscriptionConfig};
use ade2eah::model::ResourceId;
use serde_json::Value;

use crate::support::{POLL, Rig, bin, text};

/// Registered.
const A: &str = DEFAULT_SUBSCRIPTION;
/// Without the EncryptionAtHost feature.
const B: &str = "00000000-0000-0000-0000-0000000000bb";
/// Registered.
const C: &str = "00000000-0000-0000-0000-0000000000cc";

async fn rig(n: usize) -> (Rig, Vec<(ResourceId, GeneratedVm)>) {
    let rig = Rig::with_config(EmulatorConfig {
        time_scale: crate::support::TIME_SCALE,
        extra_subscriptions: vec![
            SubscriptionConfig {
                id: B.into(),
                eah_feature_registered: false,
            },
            SubscriptionConfig::new(C),
        ],
        ..Default::default()
    })
    .await;
    let fleet = generate(&FleetGen {
        vms: n,
        resource_groups: 2,
        seed: 11,
        os_disk_gib: 1,
        subscriptions: vec![A.into(), B.into(), C.into()],
    })
    .into_iter()
    .map(|g| (rig.emu.add_vm(g.spec.clone()), g))
    .collect();
    (rig, fleet)
}

fn conn(rig: &Rig) -> Vec<String> {
    ["--arm-endpoint", &rig.emu.base_url(), "--auth", "none"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

async fn plan(rig: &Rig, subs: &[&str], extra: &[&str]) -> std::process::Output {
    let mut a = vec!["plan".to_string()];
    a.extend(conn(rig));
    for s in subs {
        a.extend(["--subscription".into(), s.to_string()]);
    }
    a.extend(extra.iter().map(|s| s.to_string()));
    bin(&a, &[]).await
}

fn json_of(out: &std::process::Output) -> Value {
    assert_eq!(out.status.code(), Some(0), "{}", text(out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(out)))
}

fn ids_of(v: &Value) -> BTreeSet<String> {
    v["vms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_str().unwrap().to_ascii_lowercase())
        .collect()
}

fn in_subs(fleet: &[(ResourceId, GeneratedVm)], subs: &[&str]) -> BTreeSet<String> {
    fleet
        .iter()
        .filter(|(id, _)| {
            subs.iter()
                .any(|s| id.subscription().eq_ignore_ascii_case(s))
        })
        .map(|(id, _)| id.key())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_over_two_of_three_subscriptions_lists_exactly_theirs_with_per_subscription_features()
{
    let (rig, fleet) = rig(36).await;
    // Ground truth: the generator spread the fleet over the three subscriptions.
    for s in [A, B, C] {
        assert_eq!(in_subs(&fleet, &[s]).len(), 12, "{s}");
    }
    let before = rig.emu.requests().len();
    let out = plan(&rig, &[A, B], &["--waves", "1,100%", "--output", "json"]).await;
    let v = json_of(&out);
    assert_eq!(
        ids_of(&v),
        in_subs(&fleet, &[A, B]),
        "exactly A's and B's VMs"
    );
    assert_eq!(v["subscriptions"], serde_json::json!([A, B]));
    let by_id: std::collections::BTreeMap<String, &Value> = v["vms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| (x["id"].as_str().unwrap().to_ascii_lowercase(), x))
        .collect();
    for (id, g) in fleet.iter().filter(|(id, _)| id.subscription() != C) {
        let got = by_id[&id.key()];
        if id.subscription() == A {
            assert_eq!(got["path"], g.path, "{id}: {got}");
            assert_eq!(got["eligible"], g.eligible, "{id}");
        } else {
            // B has no EncryptionAtHost: nothing there migrates, and what
            // would have is blocked by the feature.
            assert_eq!(got["eligible"], false, "{id}: {got}");
            if g.eligible {
                assert_eq!(got["path"], "feature-not-registered", "{id}: {got}");
            }
        }
    }
    let features: Vec<&Value> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["code"] == "feature-not-registered")
        .collect();
    assert_eq!(features.len(), 1, "{}", v["findings"]);
    let msg = features[0]["message"].as_str().unwrap();
    assert!(msg.contains(B) && !msg.contains(A), "{msg}");
    let log = &rig.emu.requests()[before..];
    assert!(log.iter().all(|r| !r.mutating), "dry run sent writes");
    assert!(
        log.iter().any(|r| r.path.contains("ResourceGraph")),
        "a whole-subscription scope goes through Resource Graph"
    );
    assert!(
        !log.iter().any(|r| r.path.to_ascii_lowercase().contains(C)),
        "nothing read in the unlisted subscription"
    );

    // `-g RG` resolves in every listed subscription; `SUB/RG` pins one.
    let out = plan(&rig, &[A, C], &["-g", &rg_name(1), "--output", "json"]).await;
    let want: BTreeSet<String> = fleet
        .iter()
        .filter(|(id, g)| id.subscription() != B && g.spec.resource_group == rg_name(1))
        .map(|(id, _)| id.key())
        .collect();
    assert_eq!(ids_of(&json_of(&out)), want);
    let pinned = format!("{C}/{}", rg_name(0));
    let out = plan(&rig, &[A, C], &["-g", &pinned, "--output", "json"]).await;
    let want: BTreeSet<String> = fleet
        .iter()
        .filter(|(id, g)| id.subscription() == C && g.spec.resource_group == rg_name(0))
        .map(|(id, _)| id.key())
        .collect();
    assert!(!want.is_empty());
    assert_eq!(ids_of(&json_of(&out)), want);

    // --register-feature registers in B only.
    let out = plan(&rig, &[A, B], &["--register-feature", "--output", "json"]).await;
    json_of(&out);
    let regs: Vec<String> = rig
        .emu
        .requests()
        .iter()
        .filter(|r| r.mutating)
        .map(|r| r.path.clone())
        .collect();
    assert_eq!(regs.len(), 1, "{regs:?}");
    assert!(
        regs[0].contains(B) && regs[0].ends_with("/register"),
        "{regs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_file_over_two_subscriptions_migrates_every_eligible_vm() {
    let (rig, fleet) = rig(15).await;
    let file = rig
        .state
        .path()
        .parent()
        .unwrap()
        .join(format!("plan-multi-{}.toml", std::process::id()));
    let out = plan(
        &rig,
        &[A, C],
        &[
            "--waves",
            "1,100%",
            "--out",
            file.to_str().unwrap(),
            "--output",
            "json",
        ],
    )
    .await;
    json_of(&out);
    let toml = std::fs::read_to_string(&file).unwrap();
    assert!(
        toml.contains(&format!("subscriptions = [\"{A}\", \"{C}\"]")),
        "{toml}"
    );
    assert_eq!(rig.mutating_requests(), 0);

    // --subscription must be one of the plan's.
    let state = rig.state_dir().display().to_string();
    let mut a = vec!["run".to_string()];
    a.extend(conn(&rig));
    a.extend([
        "--plan".into(),
        file.display().to_string(),
        "--state".into(),
        state,
    ]);
    a.extend(["--yes".into(), "--poll-interval".into(), POLL.into()]);
    let mut wrong = a.clone();
    wrong.extend(["--subscription".into(), B.into()]);
    let out = bin(&wrong, &[]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_eq!(rig.mutating_requests(), 0);

    let started = std::time::Instant::now();
    let mut right = a.clone();
    right.extend(["--subscription".into(), C.into()]);
    let out = bin(&right, &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    eprintln!(
        "run over two subscriptions: {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let r = json_of(&rig.state_json("report").await);
    assert_eq!(r["subscriptions"], serde_json::json!([A, C]));
    let planned = in_subs(&fleet, &[A, C]);
    let eligible = fleet
        .iter()
        .filter(|(id, g)| g.eligible && planned.contains(&id.key()))
        .count();
    assert!(
        eligible >= 4,
        "the fleet has eligible VMs in both ({eligible})"
    );
    assert_eq!(r["summary"]["verified"], eligible, "{r}");
    assert_eq!(r["summary"]["total"], planned.len());
    // Both subscriptions saw writes; B none.
    let writes: Vec<String> = rig
        .emu
        .requests()
        .iter()
        .filter(|r| r.mutating && r.path.starts_with("/subscriptions/"))
        .map(|r| r.path.to_ascii_lowercase())
        .collect();
    assert!(writes.iter().any(|p| p.contains(A)) && writes.iter().any(|p| p.contains(C)));
    assert!(!writes.iter().any(|p| p.contains(B)));
    let _ = std::fs::remove_file(&file);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vm_outside_every_listed_subscription_is_bad_input_and_sends_nothing() {
    let (rig, fleet) = rig(6).await;
    let outside = fleet
        .iter()
        .find(|(id, _)| id.subscription() == C)
        .unwrap()
        .0
        .clone();
    let before = rig.emu.requests().len();
    let out = plan(
        &rig,
        &[A, B],
        &["--vm", outside.as_str(), "--output", "json"],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains(C), "{}", text(&out));
    assert_eq!(rig.mutating_requests(), 0);
    assert_eq!(rig.emu.requests().len(), before, "nothing sent");
    // A pinned group in an unlisted subscription is bad input too.
    let pinned = format!("{C}/{}", rg_name(0));
    let out = plan(&rig, &[A, B], &["-g", &pinned, "--output", "json"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_eq!(rig.emu.requests().len(), before, "nothing sent");
}
