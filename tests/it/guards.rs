//! Concurrency guards: the journal lock, the Azure-side VM lease with
//! `--break-lease`, and journal schema versions (issue 4).

use ade2eah::journal::Journal;

use crate::support::*;

const LEASE_TAG: &str = "ade2eah-lease";

fn lease_of(rig: &Rig, vm: &ade2eah::model::ResourceId) -> Option<String> {
    let st = serde_json::to_value(rig.emu.state()).unwrap();
    let v = find_by_id(&st["vms"], vm)?;
    let m = v.get("model").unwrap_or(v);
    m["tags"][LEASE_TAG].as_str().map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_process_on_the_same_journal_is_refused() {
    let rig = Rig::new().await;
    let vm = rig.emu.add_vm(windows("lock-vm", 0));
    let _held = Journal::open(rig.state_dir()).unwrap();
    let out = rig.run(&[vm], &[]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("in use by another ade2eah process"),
        "{}",
        text(&out)
    );
    assert_eq!(rig.mutating_requests(), 0);
}

/// A VM leased by another (dead) run: the run parks at its first
/// destructive step with a reason naming the holder and `--break-lease`,
/// without changing the VM; `resume --break-lease` takes over and finishes;
/// the lease survives the delete/re-create and is released at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vm_leased_by_another_run_parks_until_break_lease() {
    let rig = Rig::new().await;
    let mut spec = windows("lease-vm", 1);
    let expiry = (time::OffsetDateTime::now_utc() + time::Duration::hours(6))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    spec.tags
        .insert(LEASE_TAG.into(), format!("other-run;{expiry}"));
    let vm = rig.emu.add_vm(spec);
    let before = source_digests(&rig.emu, &vm);

    let b = rig.run(std::slice::from_ref(&vm), &[]).await;
    assert_eq!(b.status.code(), Some(1), "{}", text(&b));
    let st = rig.status().await;
    let rec = &st["vms"][0];
    assert_eq!(rec["outcome"], "parked", "{rec}");
    let reason = rec["reason"].as_str().unwrap();
    assert!(
        reason.contains("other-run") && reason.contains("--break-lease"),
        "{reason}"
    );
    assert!(rec["next_action"].as_str().is_some_and(|s| !s.is_empty()));
    assert_eq!(
        lease_of(&rig, &vm),
        Some(format!("other-run;{expiry}")),
        "the lease was not touched"
    );
    let vm_mutations = rig
        .emu
        .requests()
        .iter()
        .filter(|r| {
            r.mutating
                && r.path
                    .to_ascii_lowercase()
                    .starts_with(&vm.as_str().to_ascii_lowercase())
        })
        .count();
    assert_eq!(
        vm_mutations, 0,
        "nothing changed the leased VM or its extensions"
    );

    // Without --break-lease a resume parks again.
    let again = rig.resume(&[]).await;
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));

    let taken = rig.resume_with(&["--break-lease"], &[]).await;
    assert_eq!(taken.status.code(), Some(0), "{}", text(&taken));
    assert_migrated(&rig.emu, &vm, &before);
    // The lease survived the re-create (taken again on the new VM by a
    // PATCH right after its PUT) and was released at
    // the end by removing the tag: no trace of either run's lease is left
    // (the dead run's lease was broken on purpose).
    let vm_path = vm.as_str().to_ascii_lowercase();
    let reqs = rig.emu.requests();
    let on_vm = |r: &&ade2eah::emulator::RequestLog, m: &str| {
        r.method == m && r.status < 300 && r.path.to_ascii_lowercase() == vm_path
    };
    let create = reqs
        .iter()
        .rposition(|r| on_vm(&r, "PUT"))
        .expect("re-create PUT");
    let patches: Vec<u64> = reqs[create..]
        .iter()
        .filter(|r| on_vm(r, "PATCH"))
        .map(|r| r.seq)
        .collect();
    assert_eq!(
        patches.len(),
        2,
        "after the re-create: the lease taken on the new VM, then released: {patches:?}"
    );
    assert_eq!(lease_of(&rig, &vm), None, "released: the tag is gone");
    let st = serde_json::to_value(rig.emu.state()).unwrap();
    let m = find_by_id(&st["vms"], &vm).unwrap();
    assert_eq!(m["model"]["tags"], serde_json::json!({}), "no tag added");
    assert_no_secrets(rig.state_dir(), &[&b, &again, &taken]);
}

/// Two journals on one VM: the second run is refused before it changes the
/// VM (its backup snapshot collides with the first run's, or the lease stops
/// it), and the first run then finishes with exactly one re-create.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_journals_on_one_vm_never_migrate_it_twice() {
    let rig = Rig::new().await;
    let vm = rig.emu.add_vm(windows("two-journals", 1));
    let before = source_digests(&rig.emu, &vm);
    let a = rig
        .run(
            std::slice::from_ref(&vm),
            &[("ADE2EAH_FAILPOINTS", "after-act:deallocate")],
        )
        .await;
    assert_ne!(a.status.code(), Some(0), "{}", text(&a));
    let a_run = rig.status().await["run_id"].as_str().unwrap().to_string();
    assert!(
        lease_of(&rig, &vm)
            .unwrap()
            .starts_with(&format!("{a_run};"))
    );

    let other = tempfile::tempdir().unwrap();
    let b = bin(
        &[
            "run".into(),
            "--arm-endpoint".into(),
            rig.emu.base_url(),
            "--auth".into(),
            "none".into(),
            "--subscription".into(),
            rig.emu.subscription().into(),
            "--vm".into(),
            vm.to_string(),
            "--state".into(),
            other.path().display().to_string(),
            "--yes".into(),
            "--poll-interval".into(),
            POLL.into(),
        ],
        &[],
    )
    .await;
    assert_ne!(b.status.code(), Some(0), "{}", text(&b));
    let r = rig.resume(&[]).await;
    assert_eq!(r.status.code(), Some(0), "{}", text(&r));
    assert_migrated(&rig.emu, &vm, &before);
    let creates = rig
        .emu
        .requests()
        .iter()
        .filter(|r| {
            r.method == "PUT"
                && r.path.eq_ignore_ascii_case(vm.as_str())
                && (200..300).contains(&r.status)
        })
        .count();
    assert_eq!(creates, 1, "exactly one re-create");
    assert_no_secrets(other.path(), &[&a, &b, &r]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v1_journal_is_migrated_and_resumes() {
    let rig = Rig::new().await;
    let vm = rig.emu.add_vm(windows("v1-vm", 0));
    let before = source_digests(&rig.emu, &vm);
    // Start a run and stop it at once, then rewrite it as a v1 journal
    // (v1 had no lease entry).
    let out = rig
        .run(
            std::slice::from_ref(&vm),
            &[("ADE2EAH_FAILPOINTS", "after-journal:advance:disable-ade")],
        )
        .await;
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    {
        let db = sled::open(rig.state_dir().join("db")).unwrap();
        let meta = db.open_tree("meta").unwrap();
        let mut m: serde_json::Value =
            serde_json::from_slice(&meta.get("run").unwrap().unwrap()).unwrap();
        m["schema_version"] = 1.into();
        meta.insert("run", serde_json::to_vec(&m).unwrap()).unwrap();
        meta.remove("lease").unwrap();
        db.flush().unwrap();
    }
    let r = rig.resume(&[]).await;
    assert_eq!(r.status.code(), Some(0), "{}", text(&r));
    assert_migrated(&rig.emu, &vm, &before);
    let audit = std::fs::read_to_string(rig.state_dir().join("journal.jsonl")).unwrap();
    assert!(audit.contains("\"migrate\""), "migration audited");
}
