//! Carrying out one [`Action`]: the only place that turns decisions into
//! mutating cloud calls. Each function is small and idempotent at the Azure
//! level (PUT of the same body, DELETE of a gone resource, revoke of a
//! revoked disk all succeed), because after a crash it may run again.

use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Value, json};

use super::Engine;
use crate::cloud::{Access, CloudError, CloudResult, Retry};
use crate::failpoint;
use crate::model::ResourceId;
use crate::step::{Action, CreatedKind, Round, Step, VerifyMode, VmRecord, body};

/// Updates the record *before* the intent is journaled, so that resources
/// the action may create and SAS grants it may open are on disk before the
/// call is sent.
pub fn prepare_intent(rec: &mut VmRecord, action: &Action) {
    match action {
        Action::CreateSnapshot { snapshot, .. } => {
            rec.remember_created(CreatedKind::Snapshot, snapshot)
        }
        Action::CreateTargetDisk { target, .. } => {
            rec.remember_created(CreatedKind::TargetDisk, target)
        }
        Action::CreateVm => {
            let id = rec.id.clone();
            rec.remember_created(CreatedKind::Vm, &id);
        }
        Action::CopyDisk { .. } => prepare_round(rec, true),
        Action::CopyRound { offline } => prepare_round(rec, *offline),
        Action::VerifyCopies => {
            for i in 0..rec.disks.len() {
                let d = &rec.disks[i];
                if d.verified {
                    continue;
                }
                let ids: Vec<ResourceId> = std::iter::once(d.target.clone())
                    .chain(d.rounds.iter().rev().take(2).map(|r| r.snapshot.clone()))
                    .collect();
                for id in ids {
                    rec.sas_opened(&id);
                }
            }
        }
        Action::StartVm
        | Action::DisableAde { .. }
        | Action::RemoveExtension { .. }
        | Action::Deallocate
        | Action::SetDetach
        | Action::DeleteTargetDisk { .. }
        | Action::RevokeAccess { .. }
        | Action::DeleteVm => {}
    }
}

/// Opens (or reuses) the round of every disk not yet sealed: the open
/// round if one exists, else a new one named `<source>-eah-r<n>`; records
/// its snapshot as created and every SAS the round will grant.
fn prepare_round(rec: &mut VmRecord, offline: bool) {
    for i in 0..rec.disks.len() {
        if rec.disks[i].copied {
            continue;
        }
        let d = &mut rec.disks[i];
        if d.open_round().is_none() {
            d.rounds_opened = d.rounds_opened.max(d.rounds.len() as u32) + 1;
            let number = d.rounds_opened;
            let name =
                crate::step::eligibility::derived_name(d.source.name(), &format!("-eah-r{number}"));
            let snapshot = d.source.sibling("Microsoft.Compute", "snapshots", &name);
            d.rounds.push(Round::open(number, snapshot, offline));
        }
        let d = &rec.disks[i];
        let mut ids = vec![d.target.clone()];
        ids.extend(d.rounds.iter().rev().take(2).map(|r| r.snapshot.clone()));
        let snap = d.rounds.last().map(|r| r.snapshot.clone());
        for id in ids {
            rec.sas_opened(&id);
        }
        if let Some(snap) = snap {
            rec.remember_created(CreatedKind::Snapshot, &snap);
        }
    }
}

/// Verification calls (4 MiB each) per batch; an expired grant is renewed
/// and only the current batch repeated.
const VERIFY_BATCH: usize = 256;

/// Renewals of an expired SAS within one copy round.
const SAS_RENEWALS: u32 = 20;

/// True for the data plane's answer to an expired or revoked SAS.
fn is_sas_expiry(e: &CloudError) -> bool {
    matches!(
        e.code.as_deref(),
        Some("AuthenticationFailed" | "CannotVerifyCopySource")
    )
}

fn rec_id(shared: &Mutex<VmRecord>) -> ResourceId {
    with_rec(shared, |r| r.id.clone())
}

/// Forgets everything copied into a disk's target (it was deleted or is new).
fn reset_copy(rec: &mut VmRecord, target: &ResourceId) {
    if let Some(d) = rec.disks.iter_mut().find(|d| &d.target == target) {
        d.rounds.clear();
        d.copied = false;
        d.verified = false;
        d.bytes_copied = 0;
    }
}

/// SAS lifetime for work on a disk of `size` bytes: twice the time a copy
/// takes at 50 MiB/s plus an hour, at least `min`, at most 60 days.
fn sas_lifetime(size: u64, min: Duration) -> Duration {
    let secs = 2 * size / (50 << 20) + 3600;
    Duration::from_secs(secs)
        .max(min)
        .min(Duration::from_secs(5_184_000))
}

fn internal(message: impl Into<String>) -> CloudError {
    CloudError {
        retry: Retry::Terminal,
        code: None,
        message: message.into(),
        retry_after: None,
    }
}

/// Performs `action`; returns a small JSON detail for the journal.
pub async fn perform(engine: &Engine, rec: &mut VmRecord, action: &Action) -> CloudResult<Value> {
    let cloud = engine.cloud();
    let facts = rec
        .facts
        .clone()
        .ok_or_else(|| internal("VM has no discovery facts"))?;
    match action {
        Action::CreateSnapshot { disk, snapshot } => {
            let plan = rec
                .disks
                .iter()
                .find(|d| &d.source == disk)
                .ok_or_else(|| internal("unknown disk"))?;
            cloud
                .put_snapshot(
                    snapshot,
                    &body::snapshot(plan, &facts.location, engine.run_id()),
                )
                .await?;
            Ok(json!({"snapshot": snapshot}))
        }
        Action::StartVm => cloud.start_vm(&rec.id).await.map(|_| json!({})),
        Action::DisableAde {
            extension,
            sequence_version,
            ..
        } => {
            let b = body::disable_ade(&facts, sequence_version)
                .ok_or_else(|| internal("no ADE extension recorded"))?;
            cloud
                .put_extension(extension, &b)
                .await
                .map(|_| json!({"extension": extension}))
        }
        Action::RemoveExtension { extension } => cloud
            .delete_extension(extension)
            .await
            .map(|_| json!({"extension": extension})),
        Action::Deallocate => cloud.deallocate_vm(&rec.id).await.map(|_| json!({})),
        Action::SetDetach => {
            let current = cloud
                .get_vm(&rec.id, false)
                .await?
                .ok_or_else(|| CloudError {
                    retry: Retry::Transient,
                    code: Some("NotFound".into()),
                    message: "the VM was not found while setting deleteOption".into(),
                    retry_after: None,
                })?;
            cloud
                .patch_vm(&rec.id, &body::detach_patch(&current))
                .await
                .map(|_| json!({}))
        }
        Action::CreateTargetDisk { source, target } => {
            let plan = rec
                .disks
                .iter()
                .find(|d| &d.source == source)
                .ok_or_else(|| internal("unknown disk"))?;
            let b = body::target_disk(plan, &facts, engine.run_id());
            cloud.put_disk(target, &b).await?;
            reset_copy(rec, target);
            Ok(json!({"disk": target}))
        }
        Action::DeleteTargetDisk { target } => {
            if !rec.created_by_run(target) {
                return Err(internal(format!(
                    "refusing to delete {target}: not created by this run"
                )));
            }
            cloud.delete_disk(target).await?;
            reset_copy(rec, target);
            Ok(json!({"disk": target}))
        }
        Action::RevokeAccess { disk } => {
            cloud.revoke_access(disk).await?;
            rec.sas_closed(disk);
            Ok(json!({"disk": disk}))
        }
        Action::CopyDisk { .. } => copy_rounds(engine, rec, true).await,
        Action::CopyRound { offline } => copy_rounds(engine, rec, *offline).await,
        Action::VerifyCopies => verify_copies(engine, rec).await,
        Action::DeleteVm => cloud.delete_vm(&rec.id).await.map(|_| json!({})),
        Action::CreateVm => {
            let original = rec
                .original_model
                .as_ref()
                .ok_or_else(|| internal("original model missing"))?;
            cloud
                .put_vm(&rec.id, &body::recreate_vm(original, &rec.disks))
                .await
                .map(|_| json!({}))
        }
    }
}

/// Runs one copy round (online or offline) on every disk not yet sealed,
/// all disks in parallel. Checkpoints are journaled as the copy advances;
/// the round of a disk is marked copied only when all its ranges are in;
/// an offline round then seals the target (revoke, which validates the VHD
/// footer) and marks the disk copied.
async fn copy_rounds(engine: &Engine, rec: &mut VmRecord, offline: bool) -> CloudResult<Value> {
    let shared = Mutex::new(std::mem::replace(rec, VmRecord::new(rec.id.clone())));
    let todo: Vec<usize> = {
        let r = shared.lock().unwrap_or_else(|p| p.into_inner());
        (0..r.disks.len())
            .filter(|&i| !r.disks[i].copied && r.disks[i].open_round().is_some())
            .collect()
    };
    let results =
        futures::future::join_all(todo.iter().map(|&i| copy_one(engine, &shared, i, offline)))
            .await;
    *rec = shared.into_inner().unwrap_or_else(|p| p.into_inner());
    let mut moved = 0;
    for r in results {
        moved += r?;
    }
    Ok(json!({"offline": offline, "disks": todo.len(), "bytes": moved}))
}

fn with_rec<T>(shared: &Mutex<VmRecord>, f: impl FnOnce(&mut VmRecord) -> T) -> T {
    let mut g = shared.lock().unwrap_or_else(|p| p.into_inner());
    f(&mut g)
}

async fn copy_one(
    engine: &Engine,
    shared: &Mutex<VmRecord>,
    i: usize,
    offline: bool,
) -> CloudResult<u64> {
    let cloud = engine.cloud();
    let (plan, round, previous, location) = with_rec(shared, |r| {
        let d = r.disks[i].clone();
        let round = d
            .rounds
            .last()
            .cloned()
            .expect("prepare_round opened a round");
        let previous = d.last_copied_round().map(|p| p.snapshot.clone());
        (
            d,
            round,
            previous,
            r.facts
                .as_ref()
                .map(|f| f.location.clone())
                .unwrap_or_default(),
        )
    });
    // Observe first: a target already sealed after a finished offline round
    // only lacks the journal line.
    let target_view = cloud
        .get_disk(&plan.target)
        .await?
        .map(|v| crate::step::DiskView::from_raw(&v));
    if round.offline
        && round.copied
        && target_view
            .as_ref()
            .is_some_and(|t| !matches!(t.state.as_str(), "ReadyToUpload" | "ActiveUpload"))
    {
        with_rec(shared, |r| {
            r.disks[i].copied = true;
            r.sas_closed(&plan.target);
        });
        return Ok(0);
    }
    // The round's snapshot: create it unless it exists (and is ours).
    match cloud.get_disk(&round.snapshot).await? {
        None => {
            let b = body::snapshot(&plan, &location, engine.run_id());
            cloud.put_snapshot(&round.snapshot, &b).await?;
        }
        Some(v)
            if crate::step::DiskView::from_raw(&v).run_tag.as_deref() != Some(engine.run_id()) =>
        {
            return Err(internal(format!(
                "snapshot {} exists but was not created by this run; rename or remove it, then run `ade2eah resume`",
                round.snapshot.name()
            )));
        }
        Some(_) => {}
    }
    failpoint::hit(&format!(
        "copy:round-{}:after-snapshot",
        if offline { "offline" } else { "online" }
    ));
    let dur = sas_lifetime(plan.source_size_bytes, engine.opts().sas_duration);
    // A grant that expires mid-round (a slow copy) is renewed and the round
    // goes on from its last checkpoint; that is not a failure of the step.
    let mut attempt = 0;
    let figures = loop {
        let skip_below = with_rec(shared, |r| {
            r.disks[i].rounds.last().map_or(0, |l| l.done_upto)
        });
        let mut granted: Vec<ResourceId> = Vec::new();
        let result = async {
            let src = cloud
                .grant_access(&round.snapshot, Access::Read, dur)
                .await?;
            granted.push(round.snapshot.clone());
            let prev = match &previous {
                Some(p) => {
                    let s = cloud.grant_access(p, Access::Read, dur).await?;
                    granted.push(p.clone());
                    Some(s)
                }
                None => None,
            };
            let dst = cloud.grant_access(&plan.target, Access::Write, dur).await?;
            failpoint::hit("copy:after-grant");
            let vm = rec_id(shared);
            let name = plan.source.name().to_string();
            let progress = |done: u64, total: u64| {
                engine.progress().copy(&vm, &name, done, total);
            };
            let checkpoint = |w: u64| {
                with_rec(shared, |r| {
                    if let Some(last) = r.disks[i].rounds.last_mut() {
                        last.done_upto = last.done_upto.max(w);
                    }
                    let detail =
                        json!({"disk": plan.source, "round": round.number, "done_upto": w});
                    let _ = engine.journal_write(r, "checkpoint", detail);
                })
            };
            let figures = cloud
                .copy_round(
                    &src,
                    prev.as_ref(),
                    &dst,
                    skip_below,
                    &progress,
                    &checkpoint,
                )
                .await?;
            failpoint::hit("copy:after-copy");
            Ok::<_, CloudError>(figures)
        }
        .await;
        // Revoke the snapshot grants whatever happened (the target stays
        // open between online rounds: an Upload disk cannot be written once
        // sealed).
        // Concurrently: each revoke is an LRO, and offline they are downtime.
        let mut revoke_err = None;
        let revoked =
            futures::future::join_all(granted.iter().map(|id| cloud.revoke_access(id))).await;
        for (id, r) in granted.iter().zip(revoked) {
            match r {
                Ok(()) => with_rec(shared, |r| r.sas_closed(id)),
                Err(e) => revoke_err = Some(e),
            }
        }
        match result {
            Err(e) if is_sas_expiry(&e) && attempt < SAS_RENEWALS => {
                attempt += 1;
                tracing::info!(disk = %plan.source.name(), attempt, "SAS expired mid-round; renewing");
                continue;
            }
            Err(e) => return Err(e),
            Ok(f) => {
                if let Some(e) = revoke_err {
                    return Err(e);
                }
                break f;
            }
        }
    };
    with_rec(shared, |r| {
        let d = &mut r.disks[i];
        if let Some(last) = d.rounds.last_mut() {
            last.copied = true;
            last.bytes = figures.work_bytes;
            last.done_upto = figures.blob_size;
        }
        d.bytes_copied += figures.bytes_copied;
        let detail = json!({"disk": plan.source, "round": round.number, "offline": offline, "bytes": figures.bytes_copied, "allocated": figures.allocated_bytes, "blob_size": figures.blob_size});
        engine.journal_write(r, "round-copied", detail)
    })?;
    if offline {
        cloud
            .revoke_access(&plan.target)
            .await
            .map_err(|e| CloudError {
                retry: if e.code.as_deref() == Some("InvalidVhd") {
                    Retry::Terminal
                } else {
                    e.retry
                },
                message: format!(
                    "sealing target disk {} failed after the copy: {}",
                    plan.target.name(),
                    e.message
                ),
                ..e
            })?;
        with_rec(shared, |r| {
            r.disks[i].copied = true;
            r.sas_closed(&plan.target);
        });
    }
    Ok(figures.bytes_copied)
}

/// Compares every unverified target with its final snapshot. A mismatch
/// un-trusts that target (its rounds are forgotten, the step goes back to
/// the final copy) and parks the VM before anything is deleted.
async fn verify_copies(engine: &Engine, rec: &mut VmRecord) -> CloudResult<Value> {
    let cloud = engine.cloud();
    let mode = rec.copy_policy.verify;
    let mut report = Vec::new();
    let mut failed = Vec::new();
    for i in 0..rec.disks.len() {
        if rec.disks[i].verified {
            continue;
        }
        if mode == VerifyMode::None {
            rec.disks[i].verified = true;
            continue;
        }
        let d = rec.disks[i].clone();
        let Some(last) = d.rounds.last().filter(|r| r.copied && r.offline).cloned() else {
            return Err(internal(format!(
                "disk {} has no finished final copy to verify against",
                d.source.name()
            )));
        };
        let prev = d
            .rounds
            .iter()
            .rev()
            .nth(1)
            .filter(|r| r.copied)
            .map(|r| r.snapshot.clone());
        let dur = sas_lifetime(d.source_size_bytes, engine.opts().sas_duration);
        let mut granted = Vec::new();
        let result = async {
            let a = cloud
                .grant_access(&last.snapshot, Access::Read, dur)
                .await?;
            granted.push(last.snapshot.clone());
            let b = cloud.grant_access(&d.target, Access::Read, dur).await?;
            granted.push(d.target.clone());
            let must = match &prev {
                Some(p) => {
                    let ps = cloud.grant_access(p, Access::Read, dur).await?;
                    granted.push(p.clone());
                    cloud.changed_ranges(&a, &ps).await?
                }
                None => Vec::new(),
            };
            // Batch by batch, renewing both grants if they expire (a slow
            // read-back must not fail verification).
            let (mut a, mut b) = (a, b);
            let calls = cloud
                .verify_plan(&a, &b, mode == VerifyMode::Full, &must, seed_of(&d.source))
                .await?;
            let mut total = crate::engine::VerifyFigures::default();
            let mut at = 0;
            let mut renewals = 0;
            while at < calls.len() {
                let batch = &calls[at..(at + VERIFY_BATCH).min(calls.len())];
                match cloud.verify_calls(&a, &b, batch).await {
                    Ok(f) => {
                        total.compared_bytes += f.compared_bytes;
                        total.mismatches.extend(f.mismatches);
                        at += batch.len();
                    }
                    Err(e) if is_sas_expiry(&e) && renewals < SAS_RENEWALS => {
                        renewals += 1;
                        a = cloud
                            .grant_access(&last.snapshot, Access::Read, dur)
                            .await?;
                        b = cloud.grant_access(&d.target, Access::Read, dur).await?;
                    }
                    Err(e) => return Err(e),
                }
            }
            Ok::<_, CloudError>(total)
        }
        .await;
        for id in &granted {
            cloud.revoke_access(id).await?;
            rec.sas_closed(id);
        }
        let fig = result?;
        report.push(json!({"disk": d.source, "compared_bytes": fig.compared_bytes, "mismatches": fig.mismatches.len()}));
        if fig.mismatches.is_empty() {
            rec.disks[i].verified = true;
        } else {
            failed.push((
                d.target.name().to_string(),
                fig.mismatches.len(),
                fig.mismatches[0].0,
            ));
            let t = d.target.clone();
            reset_copy(rec, &t);
        }
    }
    if let Some((disk, n, at)) = failed.first() {
        rec.step = Step::FinalCopy;
        engine.journal_write(rec, "verify-mismatch", json!({"report": report}))?;
        return Err(internal(format!(
            "verification found {n} range(s) of target disk {disk} that differ from the source (first at byte {at}); the source VM is untouched. `ade2eah resume` deletes that target (created by this run) and copies it again"
        )));
    }
    Ok(json!({"mode": mode, "disks": report}))
}

fn seed_of(id: &ResourceId) -> u64 {
    id.key().bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x1000_0000_01b3)
    })
}
