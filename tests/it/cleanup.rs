//! `ade2eah cleanup` through the emulator: the dry run lists and changes
//! nothing, `--yes` deletes only what the journal owns of verified VMs past
//! the retention, a crash mid-cleanup is finished by a rerun, a second rerun
//! is a no-op, and a foreign, an attached and an unverified VM's resource
//! survive.

use ade2eah::journal::Journal;
use ade2eah::model::ResourceId;
use ade2eah::step::{CreatedKind, Outcome, Round};
use serde_json::{Value, json};

use crate::support::*;

/// `ade2eah cleanup` against the rig, with `extra` flags.
async fn cleanup(rig: &Rig, extra: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut args: Vec<String> = vec![
        "cleanup".into(),
        "--arm-endpoint".into(),
        rig.emu.base_url(),
        "--auth".into(),
        "none".into(),
        "--state".into(),
        rig.state_dir().display().to_string(),
        "--poll-interval".into(),
        POLL.into(),
        "--output".into(),
        "json".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    bin(&args, env).await
}

fn exists(rig: &Rig, id: &ResourceId) -> bool {
    let state = serde_json::to_value(rig.emu.state()).unwrap();
    let coll = if id.is_type("Microsoft.Compute", "snapshots") {
        &state["snapshots"]
    } else {
        &state["disks"]
    };
    find_by_id(coll, id).is_some()
}

fn actions(out: &std::process::Output) -> Vec<(String, String)> {
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("cleanup prints JSON ({e}): {}", text(out)));
    v["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["id"].as_str().unwrap().to_string(),
                l["action"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn action_of(lines: &[(String, String)], id: &ResourceId) -> Option<String> {
    lines
        .iter()
        .find(|(i, _)| i.eq_ignore_ascii_case(id.as_str()))
        .map(|(_, a)| a.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_deletes_only_what_the_journal_owns_and_is_resumable() {
    let rig = Rig::new().await;
    let a = rig.emu.add_vm(windows("clean-a", 1));
    let b = rig.emu.add_vm(windows("clean-b", 0));
    let mut lin_os = linux_data("clean-lin");
    lin_os.ade = ade2eah::emulator::AdeSpec::LinuxOsAndData;
    let c = rig.emu.add_vm(lin_os);
    let out = rig.run(&[a.clone(), b.clone(), c.clone()], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // A foreign snapshot (no run tag) the journal will claim as a round of A.
    let state = serde_json::to_value(rig.emu.state()).unwrap();
    let c_os = disks_of_vm_model(&state, &c)[0].clone();
    let foreign = c_os.sibling("Microsoft.Compute", "snapshots", "foreign-snap");
    let resp = reqwest::Client::new()
        .put(format!(
            "{}{}?api-version=2025-01-02",
            rig.emu.base_url(),
            foreign
        ))
        .bearer_auth("t")
        .json(
            &json!({"location": "westeurope", "properties": {"incremental": true,
               "creationData": {"createOption": "Copy", "sourceResourceId": c_os.as_str()}}}),
        )
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    assert!(exists(&rig, &foreign));

    // Journal edits standing for what cleanup must never delete: B as an
    // unverified VM (parked), and A's journal claiming the foreign snapshot
    // and the skipped Linux VM's attached OS disk as one of its sources.
    let (a_owned, b_owned) = {
        let j = Journal::open(rig.state_dir()).unwrap();
        let mut rb = j.get(&b).unwrap();
        rb.outcome = Outcome::Parked {
            reason: "test: not verified".into(),
            next_action: "none".into(),
        };
        j.write(&rb, "test-edit", json!({})).unwrap();
        let mut ra = j.get(&a).unwrap();
        let mut claimed = ra.disks[0].clone();
        claimed.source = c_os.clone();
        claimed.target = c_os.sibling("Microsoft.Compute", "disks", "claimed-target");
        claimed.snapshot = c_os.sibling("Microsoft.Compute", "snapshots", "claimed-bak");
        claimed.rounds = vec![Round {
            copied: true,
            ..Round::open(1, foreign.clone(), true)
        }];
        ra.remember_created(CreatedKind::TargetDisk, &claimed.target.clone());
        ra.remember_created(CreatedKind::Snapshot, &foreign);
        ra.disks.push(claimed);
        j.write(&ra, "test-edit", json!({})).unwrap();
        let owned = |r: &ade2eah::step::VmRecord| -> Vec<ResourceId> {
            r.disks
                .iter()
                .flat_map(|d| {
                    d.rounds
                        .iter()
                        .map(|r| r.snapshot.clone())
                        .chain([d.snapshot.clone(), d.source.clone()])
                })
                .collect()
        };
        let a_real: Vec<ResourceId> = owned(&ra)
            .into_iter()
            .filter(|id| id != &foreign && id != &c_os && !id.name().starts_with("claimed"))
            .collect();
        (a_real, owned(&rb))
    };
    assert!(
        a_owned.len() >= 6,
        "A has rounds, backups and sources: {a_owned:?}"
    );
    for id in a_owned.iter().chain(&b_owned) {
        assert!(exists(&rig, id), "{id} exists before cleanup");
    }

    // Within the retention (default 7d): nothing would be deleted.
    let before = rig.mutating_requests();
    let out = cleanup(&rig, &[], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        actions(&out).iter().all(|(_, a)| a == "keep"),
        "{}",
        text(&out)
    );

    // Dry run past the retention: lists A's resources, changes nothing.
    let out = cleanup(&rig, &["--older-than", "0s"], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let lines = actions(&out);
    for id in &a_owned {
        assert_eq!(
            action_of(&lines, id).as_deref(),
            Some("would-delete"),
            "{id}: {}",
            text(&out)
        );
    }
    assert_eq!(action_of(&lines, &foreign).as_deref(), Some("keep"));
    assert_eq!(action_of(&lines, &c_os).as_deref(), Some("keep"));
    for id in &b_owned {
        assert_eq!(
            action_of(&lines, id),
            None,
            "nothing of unverified B is listed"
        );
    }
    assert_eq!(
        rig.mutating_requests(),
        before,
        "dry runs send no mutating request"
    );
    let status = rig.status().await;
    let va = find_by_id(&status["vms"], &a).unwrap();
    assert_eq!(
        va["cleanup"]["left"].as_array().unwrap().len(),
        a_owned.len() + 2,
        "status lists what is left to clean (the claimed ones included): {va:#}"
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        !v["keys"].as_array().unwrap().is_empty(),
        "the ADE key material is reported: {v:#}"
    );

    // Crash right after the second deletion's intent, then rerun.
    let out = cleanup(
        &rig,
        &["--older-than", "0s", "--yes"],
        &[("ADE2EAH_FAILPOINTS", "after-intent:cleanup-delete@2")],
    )
    .await;
    assert_ne!(
        out.status.code(),
        Some(0),
        "the crash point fired: {}",
        text(&out)
    );
    let out = cleanup(&rig, &["--older-than", "0s", "--yes"], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    for id in &a_owned {
        assert!(!exists(&rig, id), "{id} deleted");
    }
    // What is foreign, attached, or of an unverified VM survives.
    assert!(exists(&rig, &foreign), "the foreign snapshot survives");
    assert!(exists(&rig, &c_os), "the attached disk survives");
    for id in &b_owned {
        assert!(exists(&rig, id), "{id} of unverified B survives");
    }
    // A still runs on its new disks.
    let state = serde_json::to_value(rig.emu.state()).unwrap();
    for d in disks_of_vm_model(&state, &a) {
        assert!(exists(&rig, &d), "A's disk {d} kept");
    }

    // A rerun is a no-op: nothing sent, everything reported done.
    let before = rig.mutating_requests();
    let out = cleanup(&rig, &["--older-than", "0s", "--yes"], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(rig.mutating_requests(), before, "a rerun deletes nothing");
    let lines = actions(&out);
    for id in &a_owned {
        assert_eq!(action_of(&lines, id).as_deref(), Some("done"), "{id}");
    }
    let status = rig.status().await;
    let va = find_by_id(&status["vms"], &a).unwrap();
    assert_eq!(
        va["cleanup"]["left"].as_array().unwrap().len(),
        2,
        "only the claimed foreign and attached resources are left: {va:#}"
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let keys = v["keys"].as_array().unwrap();
    let kb = keys
        .iter()
        .find(|k| {
            k["vm"]
                .as_str()
                .is_some_and(|s| s.eq_ignore_ascii_case(b.as_str()))
        })
        .unwrap_or_else(|| panic!("B's ADE keys are listed: {v:#}"));
    assert_eq!(
        kb["no_longer_needed"], false,
        "unverified B still needs its keys"
    );
}
