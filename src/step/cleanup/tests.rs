//! Cleanup selection: unit cases and a property test over generated
//! journals (never deletes what it does not own).

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::step::{DiskRole, Step};

const RUN: &str = "run-1";
const DAY: i64 = 24 * 3600;

fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
}

fn at(secs_ago: i64) -> String {
    (now() - time::Duration::seconds(secs_ago))
        .format(&Rfc3339)
        .unwrap()
}

fn disk(name: &str) -> ResourceId {
    ResourceId::new("s", "rg", "Microsoft.Compute", "disks", name)
}

fn snap(name: &str) -> ResourceId {
    ResourceId::new("s", "rg", "Microsoft.Compute", "snapshots", name)
}

fn plan(src: &str, uid: &str, rounds: usize) -> DiskPlan {
    DiskPlan {
        role: DiskRole::Os,
        source: disk(src),
        source_size_bytes: 1 << 30,
        source_model: json!({"properties": {"uniqueId": uid}}),
        snapshot: snap(&format!("{src}-bak")),
        target: disk(&format!("{src}-eah")),
        copied: true,
        bytes_copied: 0,
        rounds: (1..=rounds)
            .map(|n| Round {
                copied: true,
                ..Round::open(n as u32, snap(&format!("{src}-r{n}")), false)
            })
            .collect(),
        verified: true,
        rounds_opened: rounds as u32,
    }
}

/// A verified record that created everything of one disk with two rounds.
fn verified(age: i64) -> VmRecord {
    let mut r = VmRecord::new(ResourceId::new(
        "s",
        "rg",
        "Microsoft.Compute",
        "virtualMachines",
        "vm",
    ));
    let d = plan("os", "u-os", 2);
    for s in d
        .rounds
        .iter()
        .map(|r| r.snapshot.clone())
        .chain([d.snapshot.clone()])
    {
        r.remember_created(CreatedKind::Snapshot, &s);
    }
    r.remember_created(CreatedKind::TargetDisk, &d.target);
    r.remember_created(CreatedKind::Vm, &r.id.clone());
    r.disks.push(d);
    r.outcome = Outcome::Verified;
    r.step = Step::Done;
    r.history.push(crate::step::HistoryEntry {
        at: at(age),
        step: Step::Done,
        event: VERIFIED_EVENT.into(),
        detail: "{}".into(),
    });
    r
}

fn ours(src: &ResourceId) -> Seen {
    Seen::Present {
        run_tag: Some(RUN.into()),
        source_tag: Some(src.to_string()),
        managed_by: None,
        unique_id: None,
        disk_state: Some("Unattached".into()),
    }
}

fn original(uid: &str) -> Seen {
    Seen::Present {
        run_tag: None,
        source_tag: None,
        managed_by: None,
        unique_id: Some(uid.into()),
        disk_state: Some("Unattached".into()),
    }
}

fn seen_all(rec: &VmRecord) -> impl Fn(&ResourceId) -> Option<Seen> + '_ {
    move |id| {
        let d = &rec.disks[0];
        Some(if id == &d.source {
            original("u-os")
        } else {
            ours(&d.source)
        })
    }
}

#[test]
fn a_verified_vm_past_retention_cleans_rounds_backup_and_source() {
    let rec = verified(8 * DAY);
    let c = select(&rec, seen_all(&rec), RUN, now(), DEFAULT_RETENTION);
    let kinds: Vec<(CleanupKind, &Verdict)> =
        c.items.iter().map(|j| (j.owned.kind, &j.verdict)).collect();
    assert_eq!(
        kinds,
        vec![
            (CleanupKind::RoundSnapshot, &Verdict::Delete),
            (CleanupKind::RoundSnapshot, &Verdict::Delete),
            (CleanupKind::BackupSnapshot, &Verdict::Delete),
            (CleanupKind::SourceDisk, &Verdict::Delete),
        ]
    );
    // The target the VM runs on, and the VM, are never candidates.
    assert!(
        c.items
            .iter()
            .all(|j| j.owned.id != rec.disks[0].target && j.owned.id != rec.id)
    );
}

#[test]
fn retention_unverified_attached_foreign_and_done_are_kept() {
    let rec = verified(6 * DAY);
    let c = select(&rec, seen_all(&rec), RUN, now(), DEFAULT_RETENTION);
    assert!(matches!(c.eligibility, VmEligibility::NotYet { .. }));
    assert!(
        c.items
            .iter()
            .all(|j| matches!(j.verdict, Verdict::Keep(_)))
    );

    let mut parked = verified(30 * DAY);
    parked.outcome = Outcome::Parked {
        reason: "r".into(),
        next_action: "n".into(),
    };
    let c = select(&parked, seen_all(&parked), RUN, now(), DEFAULT_RETENTION);
    assert!(
        c.items
            .iter()
            .all(|j| matches!(j.verdict, Verdict::Keep(_)))
    );

    let rec = verified(30 * DAY);
    let o = owned(&rec.disks, &rec.created);
    let src = o
        .iter()
        .find(|o| o.kind == CleanupKind::SourceDisk)
        .unwrap();
    let attached = Seen::Present {
        run_tag: None,
        source_tag: None,
        managed_by: Some("/subscriptions/s/vm".into()),
        unique_id: Some("u-os".into()),
        disk_state: Some("Attached".into()),
    };
    assert!(matches!(judge(src, None, &attached, RUN), Verdict::Keep(_)));
    assert!(matches!(
        judge(src, None, &original("other"), RUN),
        Verdict::Keep(_)
    ));
    assert_eq!(judge(src, None, &Seen::Gone, RUN), Verdict::AlreadyGone);
    assert_eq!(
        judge(src, Some(CleanupState::Deleted), &original("u-os"), RUN),
        Verdict::Done
    );
    assert_eq!(
        judge(src, Some(CleanupState::Deleting), &original("u-os"), RUN),
        Verdict::Delete,
        "an intent without result is repeated"
    );
    let bak = o
        .iter()
        .find(|o| o.kind == CleanupKind::BackupSnapshot)
        .unwrap();
    let foreign = Seen::Present {
        run_tag: Some("other-run".into()),
        source_tag: Some(bak.source.to_string()),
        managed_by: None,
        unique_id: None,
        disk_state: None,
    };
    assert!(matches!(judge(bak, None, &foreign, RUN), Verdict::Keep(_)));
}

#[test]
fn snapshots_not_created_by_the_run_are_not_owned() {
    let mut rec = verified(30 * DAY);
    rec.created.retain(|c| c.kind != CreatedKind::Snapshot);
    let o = owned(&rec.disks, &rec.created);
    assert_eq!(o.len(), 1);
    assert_eq!(o[0].kind, CleanupKind::SourceDisk);
    // No target created: the source was not replaced, so it is not owned.
    rec.created.clear();
    assert!(owned(&rec.disks, &rec.created).is_empty());
}

#[test]
fn ade_keys_come_from_the_journaled_extension_and_disk_models() {
    let mut rec = verified(0);
    rec.original_model = Some(json!({"resources": [{"properties": {
        "publisher": "Microsoft.Azure.Security", "type": "AzureDiskEncryption",
        "settings": {"KeyVaultURL": "https://kv.vault.azure.net/", "KeyVaultResourceId": "/kv",
                     "KeyEncryptionKeyURL": "https://kv.vault.azure.net/keys/kek/1"}}}]}));
    rec.disks[0].source_model = json!({"properties": {"encryptionSettingsCollection": {"enabled": true,
        "encryptionSettings": [{"diskEncryptionKey": {"sourceVault": {"id": "/kv"},
                                "secretUrl": "https://kv.vault.azure.net/secrets/s/1"}}]}}});
    let k = ade_keys(&rec);
    assert_eq!(k.vaults, vec!["/kv".to_string()]);
    assert_eq!(
        k.vault_urls,
        vec!["https://kv.vault.azure.net/".to_string()]
    );
    assert_eq!(
        k.kek_urls,
        vec!["https://kv.vault.azure.net/keys/kek/1".to_string()]
    );
    assert_eq!(
        k.disk_secrets,
        vec![(
            disk("os"),
            "https://kv.vault.azure.net/secrets/s/1".to_string()
        )]
    );
}

// ---- property test over generated journals ----

/// How a generated resource looks on its fresh GET.
#[derive(Debug, Clone)]
struct GenSeen {
    gone: bool,
    tag: u8, // 0 this run, 1 other run, 2 none
    source_ok: bool,
    attached: bool,
    uid_ok: bool,
    sas: bool,
}

fn gen_seen() -> impl Strategy<Value = GenSeen> {
    (
        prop::bool::weighted(0.15),
        0u8..3,
        prop::bool::weighted(0.8),
        prop::bool::weighted(0.25),
        prop::bool::weighted(0.8),
        prop::bool::weighted(0.1),
    )
        .prop_map(|(gone, tag, source_ok, attached, uid_ok, sas)| GenSeen {
            gone,
            tag,
            source_ok,
            attached,
            uid_ok,
            sas,
        })
}

#[derive(Debug, Clone)]
struct GenDisk {
    src: u8,
    tgt: u8,
    rounds: u8,
    created_rounds: Vec<bool>,
    created_backup: bool,
    created_target: bool,
}

#[derive(Debug, Clone)]
struct GenVm {
    outcome: u8, // 0 verified, 1 parked, 2 skipped, 3 in progress
    age_days: Option<i64>,
    disks: Vec<GenDisk>,
    done: Vec<u8>,
}

fn gen_disk() -> impl Strategy<Value = GenDisk> {
    (
        0u8..6,
        0u8..6,
        0u8..4,
        prop::collection::vec(any::<bool>(), 4),
        any::<bool>(),
        prop::bool::weighted(0.8),
    )
        .prop_map(
            |(src, tgt, rounds, created_rounds, created_backup, created_target)| GenDisk {
                src,
                tgt,
                rounds,
                created_rounds,
                created_backup,
                created_target,
            },
        )
}

fn gen_vm() -> impl Strategy<Value = GenVm> {
    (
        0u8..4,
        prop::option::weighted(0.9, 0i64..20),
        prop::collection::vec(gen_disk(), 1..4),
        prop::collection::vec(0u8..12, 0..3),
    )
        .prop_map(|(outcome, age_days, disks, done)| GenVm {
            outcome,
            age_days,
            disks,
            done,
        })
}

/// Pool names collide on purpose: a source of one VM may be a target of
/// another, a round snapshot may share a backup's name.
fn build(v: &GenVm, k: usize) -> VmRecord {
    let mut r = VmRecord::new(ResourceId::new(
        "s",
        "rg",
        "Microsoft.Compute",
        "virtualMachines",
        &format!("vm{k}"),
    ));
    for g in &v.disks {
        let mut d = plan(
            &format!("d{}", g.src),
            &format!("u{}", g.src),
            g.rounds as usize,
        );
        d.target = disk(&format!("d{}", g.tgt));
        d.snapshot = snap(&format!("s{}", g.src));
        for (i, round) in d.rounds.iter_mut().enumerate() {
            round.snapshot = snap(&format!("s{}", (g.src as usize + i + 1) % 6));
            if g.created_rounds[i] {
                r.remember_created(CreatedKind::Snapshot, &round.snapshot);
            }
        }
        if g.created_backup {
            r.remember_created(CreatedKind::Snapshot, &d.snapshot);
        }
        if g.created_target {
            r.remember_created(CreatedKind::TargetDisk, &d.target);
        }
        r.disks.push(d);
    }
    r.outcome = match v.outcome {
        0 => Outcome::Verified,
        1 => Outcome::Parked {
            reason: "r".into(),
            next_action: "n".into(),
        },
        2 => Outcome::Skipped { reason: "s".into() },
        _ => Outcome::InProgress,
    };
    if let Some(days) = v.age_days {
        r.history.push(crate::step::HistoryEntry {
            at: at(days * DAY),
            step: Step::Done,
            // A VM verified once and later parked or rolled back keeps the line.
            event: VERIFIED_EVENT.into(),
            detail: "{}".into(),
        });
    }
    let ids: Vec<ResourceId> = (0..6)
        .map(|i| disk(&format!("d{i}")))
        .chain((0..6).map(|i| snap(&format!("s{i}"))))
        .collect();
    for &i in &v.done {
        let id = &ids[i as usize];
        r.cleanup.push(CleanupEntry {
            kind: CleanupKind::SourceDisk,
            id: id.clone(),
            state: CleanupState::Deleted,
            at: at(0),
        });
    }
    r
}

fn seen_of(g: &GenSeen, id: &ResourceId, source: Option<&ResourceId>) -> Seen {
    if g.gone {
        return Seen::Gone;
    }
    let uid = id.name().trim_start_matches('d');
    Seen::Present {
        run_tag: match g.tag {
            0 => Some(RUN.into()),
            1 => Some("other".into()),
            _ => None,
        },
        source_tag: source
            .filter(|_| g.source_ok)
            .map(|s| s.to_string())
            .or(Some("/elsewhere".into())),
        managed_by: g.attached.then(|| "/vm/x".to_string()),
        unique_id: Some(if g.uid_ok {
            format!("u{uid}")
        } else {
            "u-other".into()
        }),
        disk_state: Some(
            if g.sas {
                "ActiveSAS"
            } else if g.attached {
                "Attached"
            } else {
                "Unattached"
            }
            .into(),
        ),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Whatever the journal holds and Azure shows, a `Delete` verdict is only
    /// ever given for a resource this journal owns, of a verified VM past
    /// its retention, found detached, not in use and with this run's marks
    /// (snapshots) or the journaled identity (original disks).
    #[test]
    fn cleanup_never_deletes_what_it_does_not_own(
        vms in prop::collection::vec(gen_vm(), 1..5),
        seen in prop::collection::vec(gen_seen(), 12),
        retention_days in 0u64..10,
    ) {
        let records: Vec<VmRecord> = vms.iter().enumerate().map(|(k, v)| build(v, k)).collect();
        let pool: Vec<ResourceId> = (0..6).map(|i| disk(&format!("d{i}"))).chain((0..6).map(|i| snap(&format!("s{i}")))).collect();
        let retention = Duration::from_secs(retention_days * DAY as u64);
        for rec in &records {
            let source_of: BTreeMap<String, ResourceId> = rec
                .disks
                .iter()
                .flat_map(|d| {
                    d.rounds.iter().map(|r| (r.snapshot.key(), d.source.clone()))
                        .chain([(d.snapshot.key(), d.source.clone())])
                })
                .collect();
            let look = |id: &ResourceId| {
                let i = pool.iter().position(|p| p == id)?;
                Some(seen_of(&seen[i], id, source_of.get(&id.key())))
            };
            let c = select(rec, look, RUN, now(), retention);
            for j in &c.items {
                let id = &j.owned.id;
                let i = pool.iter().position(|p| p == id).unwrap();
                let g = &seen[i];
                let created = |kind| rec.created.iter().any(|c| c.kind == kind && &c.id == id);
                match &j.verdict {
                    Verdict::Delete => {
                        // A verified VM, past its retention.
                        prop_assert_eq!(&rec.outcome, &Outcome::Verified);
                        let days = vms[records.iter().position(|r| r.id == rec.id).unwrap()].age_days;
                        prop_assert!(days.is_some_and(|d| d as u64 * DAY as u64 >= retention.as_secs()));
                        // Never what the VM runs on, never the VM.
                        prop_assert!(rec.disks.iter().all(|d| &d.target != id));
                        prop_assert!(!created(CreatedKind::TargetDisk) && !created(CreatedKind::Vm));
                        // Not already cleaned.
                        prop_assert!(!rec.cleanup.iter().any(|e| &e.id == id && e.state.is_done()));
                        // Present, detached, no SAS.
                        prop_assert!(!g.gone && !g.attached && !g.sas);
                        if id.is_type("Microsoft.Compute", "snapshots") {
                            // A snapshot this journal created, tagged by this run, of its source.
                            prop_assert!(created(CreatedKind::Snapshot));
                            prop_assert!(g.tag == 0 && g.source_ok);
                        } else {
                            // An original disk the run replaced: a source whose target it created.
                            prop_assert!(rec.disks.iter().any(|d| &d.source == id
                                && rec.created.iter().any(|c| c.kind == CreatedKind::TargetDisk && c.id == d.target)));
                            prop_assert!(g.uid_ok && g.tag == 2);
                        }
                    }
                    Verdict::AlreadyGone => prop_assert!(g.gone && c.eligibility.allows()),
                    Verdict::Done => prop_assert!(rec.cleanup.iter().any(|e| &e.id == id && e.state.is_done())),
                    Verdict::Keep(_) => {}
                }
            }
        }
    }
}
