//! Carrying out one [`Action`]: the only place that turns decisions into
//! mutating cloud calls. Each function is small and idempotent at the Azure
//! level (PUT of the same body, DELETE of a gone resource, revoke of a
//! revoked disk all succeed), because after a crash it may run again.

use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Value, json};

use super::Engine;
use crate::cloud::{Access, CloudError, CloudResult, Retry};
use crate::copy::SAMPLE_CALLS;
use crate::failpoint;
use crate::model::{ResourceId, SasUrl};
use crate::step::nic_swap;
use crate::step::rebuild::{self, MigrationPath};
use crate::step::{
    Action, CreatedKind, DiskRole, Phase, Round, Span, SpotCheck, Step, VerifyMode, VmRecord, body,
};

/// Updates the record *before* the intent is journaled, so that resources
/// the action may create and SAS grants it may open are on disk before the
/// call is sent.
pub fn prepare_intent(rec: &mut VmRecord, action: &Action) {
    match action {
        Action::CreateSnapshot { snapshot, .. } => {
            rec.remember_created(CreatedKind::Snapshot, snapshot)
        }
        Action::CreateTargetDisk { target, .. } | Action::CreateEmptyDisk { target, .. } => {
            rec.remember_created(CreatedKind::TargetDisk, target)
        }
        Action::CreateVm => {
            let id = rec.id.clone();
            rec.remember_created(CreatedKind::Vm, &id);
            // The rebuilt VM's PUT creates its OS disk (FromImage).
            if rec.path == MigrationPath::RebuildLinuxOs {
                let os: Vec<ResourceId> = rec
                    .disks
                    .iter()
                    .filter(|d| d.role == DiskRole::Os)
                    .map(|d| d.target.clone())
                    .collect();
                for t in os {
                    rec.remember_created(CreatedKind::TargetDisk, &t);
                }
            }
        }
        Action::CreatePlaceholderNic { nic } => {
            rec.remember_created(CreatedKind::PlaceholderNic, nic)
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
        | Action::SwapNics { .. }
        | Action::DeletePlaceholderNic { .. }
        | Action::DeleteTargetDisk { .. }
        | Action::RevokeAccess { .. }
        | Action::RestoreTargetAccess { .. }
        | Action::ReinstallExtension { .. }
        | Action::GrantRole { .. }
        | Action::DeleteVm
        | Action::RestoreVm
        | Action::RestoreDeleteOptions
        | Action::ReenableAde { .. } => {}
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
        // A finished offline round whose seal is not journaled yet gets no
        // new round: the round action only checks the seal and records it.
        let sealed_pending = d.rounds.last().is_some_and(|r| r.offline && r.copied);
        if d.open_round().is_none() && !sealed_pending {
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

/// The result of a `--nic-swap` call: a terminal refusal is not a failure
/// of the step but the end of the swap for this VM ([`nic_swap::give_up`]):
/// the swap is an optimisation, and a refusal must not keep a VM (maybe
/// already deallocated) down.
fn swap_or_give_up(rec: &mut VmRecord, r: CloudResult<()>) -> CloudResult<Value> {
    match r {
        Ok(()) => Ok(json!({})),
        Err(e) if !e.is_transient() => Ok(nic_swap::give_up(rec, &e.message)),
        Err(e) => Err(e),
    }
}

/// PUTs the `--nic-swap` placeholder `nic` in the subnet of the VM's
/// primary NIC (read as Azure has it now).
async fn create_placeholder(engine: &Engine, rec: &VmRecord, nic: &ResourceId) -> CloudResult<()> {
    let terminal = |message: String| CloudError {
        retry: Retry::Terminal,
        code: None,
        message,
        retry_after: None,
    };
    let primary = nic_swap::original_nics(rec)
        .into_iter()
        .next()
        .ok_or_else(|| terminal("the original model names no NIC".into()))?;
    let body = engine
        .cloud()
        .get_nic(&primary)
        .await?
        .ok_or_else(|| terminal(format!("NIC {} of the VM was not found", primary.name())))?;
    let b = nic_swap::placeholder_body(rec, &body, engine.run_id()).ok_or_else(|| {
        terminal(format!(
            "NIC {} has no subnet to put a placeholder in",
            primary.name()
        ))
    })?;
    engine.cloud().put_nic(nic, &b).await
}

/// The journaled original VM model (every VM past discovery has one).
fn original_model(rec: &VmRecord) -> CloudResult<&Value> {
    rec.original_model
        .as_ref()
        .ok_or_else(|| internal("original model missing"))
}

/// The VM's current model, read just before a PATCH that sends whole arrays.
async fn current_vm(engine: &Engine, id: &ResourceId) -> CloudResult<Value> {
    engine
        .cloud()
        .get_vm(id, false)
        .await?
        .ok_or_else(|| CloudError {
            retry: Retry::Transient,
            code: Some("NotFound".into()),
            message: "the VM was not found while reading it to PATCH deleteOption".into(),
            retry_after: None,
        })
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
        Action::ReinstallExtension { extension } => {
            reinstall_extension(engine, rec, extension).await
        }
        Action::GrantRole {
            principal_id,
            role_definition_id,
            scope,
        } => grant_role(engine, rec, principal_id, role_definition_id, scope).await,
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
            let current = current_vm(engine, &rec.id).await?;
            cloud
                .patch_vm(&rec.id, &body::detach_patch(&current))
                .await
                .map(|_| json!({}))
        }
        Action::CreatePlaceholderNic { nic } => {
            let r = create_placeholder(engine, rec, nic).await;
            swap_or_give_up(rec, r)
        }
        Action::SwapNics { nic } => {
            let r = cloud.patch_vm(&rec.id, &nic_swap::swap_patch(nic)).await;
            swap_or_give_up(rec, r)
        }
        Action::DeletePlaceholderNic { nic } => cloud.delete_nic(nic).await.map(|_| json!({})),
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
        Action::CreateEmptyDisk { source, target } => {
            let plan = rec
                .disks
                .iter()
                .find(|d| &d.source == source)
                .ok_or_else(|| internal("unknown disk"))?;
            let b = rebuild::empty_disk(plan, &facts, engine.run_id());
            cloud.put_disk(target, &b).await?;
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
            match cloud.revoke_access(disk).await {
                Ok(()) => {}
                // Rollback: an upload target whose copy stopped before its
                // footer cannot be sealed; Azure refuses the revoke with
                // `InvalidVhd` and the grant ends (the disk keeps its
                // partial copy, listed to clean).
                Err(e)
                    if e.code.as_deref() == Some("InvalidVhd")
                        && rec.disks.iter().any(|d| &d.target == disk && !d.copied) =>
                {
                    if let Some(rb) = rec.rollback.as_mut() {
                        if !rb.unsealed.contains(disk) {
                            rb.unsealed.push(disk.clone());
                        }
                    } else {
                        return Err(e);
                    }
                }
                Err(e) => return Err(e),
            }
            rec.sas_closed(disk);
            Ok(json!({"disk": disk}))
        }
        Action::CopyDisk { .. } => copy_rounds(engine, rec, true).await,
        Action::CopyRound { offline } => copy_rounds(engine, rec, *offline).await,
        Action::VerifyCopies => verify_copies(engine, rec).await,
        Action::DeleteVm => {
            cloud.delete_vm(&rec.id).await?;
            if let Some(rb) = rec.rollback.as_mut() {
                rb.new_vm_removed = true;
            }
            Ok(json!({}))
        }
        Action::RestoreTargetAccess { disk } => {
            let plan = rec
                .disks
                .iter()
                .find(|d| &d.target == disk)
                .ok_or_else(|| internal("unknown target disk"))?;
            let Some(want) = body::target_access(&plan.source_model) else {
                return Ok(json!({"disk": disk, "restored": false}));
            };
            cloud
                .patch_disk(disk, &json!({ "properties": want }))
                .await?;
            Ok(json!({"disk": disk, "access": want}))
        }
        Action::CreateVm => {
            let original = original_model(rec)?;
            let b = match (rec.path, &facts.rebuild) {
                (MigrationPath::RebuildLinuxOs, Some(spec)) => {
                    rebuild::vm_body(original, &rec.disks, spec)
                }
                (MigrationPath::RebuildLinuxOs, None) => {
                    return Err(internal("rebuild path without a rebuild spec"));
                }
                (MigrationPath::Copy, _) => body::recreate_vm(original, &rec.disks),
            };
            cloud.put_vm(&rec.id, &b).await.map(|_| json!({}))
        }
        Action::RestoreVm => {
            cloud
                .put_vm(&rec.id, &body::restore_vm(original_model(rec)?))
                .await?;
            if let Some(rb) = rec.rollback.as_mut() {
                rb.vm_restored = true;
            }
            Ok(json!({}))
        }
        Action::RestoreDeleteOptions => {
            let current = current_vm(engine, &rec.id).await?;
            cloud
                .patch_vm(
                    &rec.id,
                    &body::restore_delete_options_patch(&current, original_model(rec)?),
                )
                .await
                .map(|_| json!({}))
        }
        Action::ReenableAde {
            extension,
            sequence_version,
        } => {
            let original = original_model(rec)?;
            let b = body::reenable_ade(original, &facts, sequence_version)
                .ok_or_else(|| internal("no ADE extension settings journaled"))?;
            cloud
                .put_extension(extension, &b)
                .await
                .map(|_| json!({"extension": extension}))
        }
    }
}

/// PUTs the journaled body of a carried extension.
async fn reinstall_extension(
    engine: &Engine,
    rec: &VmRecord,
    extension: &ResourceId,
) -> CloudResult<Value> {
    let want = rec
        .carried
        .extensions
        .iter()
        .find(|e| e.name.eq_ignore_ascii_case(extension.name()))
        .ok_or_else(|| internal(format!("extension {} is not journaled", extension.name())))?;
    engine.cloud().put_extension(extension, &want.body).await?;
    Ok(json!({"extension": extension}))
}

/// Creates a role assignment (new GUID name) granting `role` at `scope` to
/// `principal`, with the condition and description of the old one. Azure's
/// `RoleAssignmentExists` (the same principal, role and scope under another
/// name: a grant made before a crash and not yet listed) is the effect
/// already in place.
async fn grant_role(
    engine: &Engine,
    rec: &VmRecord,
    principal: &str,
    role: &str,
    scope: &str,
) -> CloudResult<Value> {
    let grant = rec
        .carried
        .roles
        .iter()
        .find(|g| {
            g.role_definition_id.eq_ignore_ascii_case(role) && g.scope.eq_ignore_ascii_case(scope)
        })
        .ok_or_else(|| internal(format!("role {role} at {scope} is not journaled")))?;
    let id = crate::step::reinstall::role_assignment_id(scope, &uuid::Uuid::new_v4().to_string());
    match engine
        .cloud()
        .put_role_assignment(&id, &grant.body(principal))
        .await
    {
        Ok(()) => Ok(json!({"role_assignment": id})),
        Err(e) if e.code.as_deref() == Some("RoleAssignmentExists") => {
            Ok(json!({"role_assignment": "exists"}))
        }
        Err(e) => Err(e),
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
            .filter(|&i| !r.disks[i].copied && !r.disks[i].rounds.is_empty())
            .collect()
    };
    let results =
        futures::future::join_all(todo.iter().map(|&i| copy_one(engine, &shared, i, offline)))
            .await;
    // An online round leaves each disk's grants open: when it was the last
    // one (the stop rule, asked now that every disk's round is journaled),
    // each target is spot-checked against the round's snapshot through
    // them while the VM still runs; then they are revoked, all at once.
    let last = !offline
        && results.iter().all(Result::is_ok)
        && with_rec(&shared, |r| r.copy_policy.verify == VerifyMode::Sample)
        && !with_rec(&shared, |r| crate::step::precopy::another_round(r));
    let closed =
        futures::future::join_all(results.iter().filter_map(|r| r.as_ref().ok()).filter_map(
            |(_, held)| {
                held.as_ref()
                    .map(|h| close_online(engine, &shared, h, last))
            },
        ))
        .await;
    *rec = shared.into_inner().unwrap_or_else(|p| p.into_inner());
    let mut moved = 0;
    for r in results {
        moved += r?.0;
    }
    for c in closed {
        c?;
    }
    Ok(json!({"offline": offline, "disks": todo.len(), "bytes": moved}))
}

/// What an online round of one disk leaves open for [`close_online`].
struct HeldRound {
    i: usize,
    plan: crate::step::DiskPlan,
    round: Round,
    src: SasUrl,
    dst: SasUrl,
    snapshot_grants: Vec<ResourceId>,
    dur: Duration,
}

/// Ends an online round of one disk: its spot check when `last`, then the
/// revoke of both snapshot grants, at once; the target stays open for
/// writing (an Upload disk is written until it is sealed) and the next
/// round grants it again.
async fn close_online(
    engine: &Engine,
    shared: &Mutex<VmRecord>,
    h: &HeldRound,
    last: bool,
) -> CloudResult<()> {
    if last {
        spot_check(
            engine,
            shared,
            h.i,
            (&h.plan, &h.round),
            (&h.src, &h.dst),
            h.dur,
        )
        .await;
    }
    let t = clock();
    revoke_all(engine, shared, &h.snapshot_grants).await?;
    span(shared, Phase::Revoke, t, h.round.number, false, 0);
    Ok(())
}

fn with_rec<T>(shared: &Mutex<VmRecord>, f: impl FnOnce(&mut VmRecord) -> T) -> T {
    let mut g = shared.lock().unwrap_or_else(|p| p.into_inner());
    f(&mut g)
}

/// Unix seconds of the engine's clock (round measurements and spans).
fn clock() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Records a copy-round sub-phase of disk round `round` that began at `start`.
fn span(shared: &Mutex<VmRecord>, phase: Phase, start: f64, round: u32, offline: bool, bytes: u64) {
    with_rec(shared, |r| {
        r.record_span(Span {
            phase,
            start,
            end: clock().max(start),
            round: Some(round),
            offline,
            bytes,
        })
    });
}

/// Revokes the grants on `ids` all at once (each is a long-running
/// operation); each revoked one leaves `open_sas`. The first error is
/// returned after every revoke was tried.
async fn revoke_all(
    engine: &Engine,
    shared: &Mutex<VmRecord>,
    ids: &[ResourceId],
) -> CloudResult<()> {
    let results =
        futures::future::join_all(ids.iter().map(|id| engine.cloud().revoke_access(id))).await;
    let mut err = None;
    for (id, r) in ids.iter().zip(results) {
        match r {
            Ok(()) => with_rec(shared, |r| r.sas_closed(id)),
            Err(e) => {
                err.get_or_insert(e);
            }
        }
    }
    err.map_or(Ok(()), Err)
}

/// A read grant on `id` when there is one (the previous round's snapshot,
/// absent after a first round), so it can join the round's other grants.
async fn read_grant_if(
    engine: &Engine,
    id: Option<&ResourceId>,
    dur: Duration,
) -> CloudResult<Option<SasUrl>> {
    match id {
        Some(p) => engine
            .cloud()
            .grant_access(p, Access::Read, dur)
            .await
            .map(Some),
        None => Ok(None),
    }
}

async fn copy_one(
    engine: &Engine,
    shared: &Mutex<VmRecord>,
    i: usize,
    offline: bool,
) -> CloudResult<(u64, Option<HeldRound>)> {
    let cloud = engine.cloud();
    let started = clock();
    let (plan, round, previous, location, verify) = with_rec(shared, |r| {
        let d = r.disks[i].clone();
        let round = d
            .rounds
            .last()
            .cloned()
            .expect("prepare_round opened a round");
        let previous = d.delta_base(round.number).map(|p| p.snapshot.clone());
        (
            d,
            round,
            previous,
            r.facts
                .as_ref()
                .map(|f| f.location.clone())
                .unwrap_or_default(),
            r.copy_policy.verify,
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
        return Ok((0, None));
    }
    // The round is measured (for the stop rule) only when it runs in one go.
    let mut measured = round.done_upto == 0;
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
        Some(_) => measured = false,
    }
    let snapshot_at = clock();
    span(
        shared,
        Phase::RoundSnapshot,
        started,
        round.number,
        offline,
        0,
    );
    failpoint::hit(&format!(
        "copy:round-{}:after-snapshot",
        if offline { "offline" } else { "online" }
    ));
    let dur = sas_lifetime(plan.source_size_bytes, engine.opts().sas_duration);
    let snapshot_grants: Vec<ResourceId> = std::iter::once(round.snapshot.clone())
        .chain(previous.clone())
        .collect();
    // A grant that expires mid-round (a slow copy) is renewed and the round
    // goes on from its last checkpoint; that is not a failure of the step.
    let mut attempt = 0;
    let (figures, src, prev, dst, copy_started) = loop {
        let skip_below = with_rec(shared, |r| {
            r.disks[i].rounds.last().map_or(0, |l| l.done_upto)
        });
        if attempt > 0 {
            // A renewal grants again what the failed attempt revoked (and
            // recorded closed): journal them open first, so a crash between
            // the grant and its revoke leaves no grant the journal forgot.
            let mut again = snapshot_grants.clone();
            again.push(plan.target.clone());
            with_rec(shared, |r| {
                for id in &again {
                    r.sas_opened(id);
                }
                engine.journal_write(
                    r,
                    "sas-renew",
                    json!({"disk": plan.source, "attempt": attempt}),
                )
            })?;
        }
        // All grants of the round at once (each is a long-running operation).
        let t_grant = clock();
        let result = async {
            // `join!`, not `try_join!`: a failed grant must not drop the
            // others mid-operation (an abandoned grant can complete on
            // Azure's side after the revokes below, leaving it open).
            let (src, prev, dst) = futures::join!(
                engine
                    .cloud()
                    .grant_access(&round.snapshot, Access::Read, dur),
                read_grant_if(engine, previous.as_ref(), dur),
                engine
                    .cloud()
                    .grant_access(&plan.target, Access::Write, dur),
            );
            let (src, prev, dst) = (src?, prev?, dst?);
            span(shared, Phase::Grant, t_grant, round.number, offline, 0);
            failpoint::hit("copy:after-grant");
            let t_copy = clock();
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
            Ok::<_, CloudError>((figures, src, prev, dst, t_copy))
        }
        .await;
        match result {
            Ok(done) => break done,
            Err(e) => {
                // Revoke the snapshot grants whatever happened (the target
                // stays open: an Upload disk cannot be written once sealed).
                let _ = revoke_all(engine, shared, &snapshot_grants).await;
                if is_sas_expiry(&e) && attempt < SAS_RENEWALS {
                    attempt += 1;
                    measured = false;
                    tracing::info!(disk = %plan.source.name(), attempt, "SAS expired mid-round; renewing");
                    continue;
                }
                return Err(e);
            }
        }
    };
    let copy_ended = clock();
    span(
        shared,
        Phase::Copy,
        copy_started,
        round.number,
        offline,
        figures.bytes_copied,
    );
    with_rec(shared, |r| {
        let d = &mut r.disks[i];
        if let Some(last) = d.rounds.last_mut() {
            last.copied = true;
            last.bytes = figures.work_bytes;
            last.done_upto = figures.blob_size;
            last.calls = figures.calls;
            if measured {
                last.started_at = started;
                last.snapshot_at = snapshot_at;
                last.copy_started_at = copy_started;
                last.copy_ended_at = copy_ended;
            }
        }
        d.bytes_copied += figures.bytes_copied;
        let detail = json!({"disk": plan.source, "round": round.number, "offline": offline, "bytes": figures.bytes_copied, "allocated": figures.allocated_bytes, "blob_size": figures.blob_size, "calls": figures.calls});
        engine.journal_write(r, "round-copied", detail)
    })?;
    if !offline {
        // The target now holds exactly this round's snapshot; the caller
        // spot-checks it if this was the last online round, and revokes.
        let held = HeldRound {
            i,
            plan,
            round,
            src,
            dst,
            snapshot_grants,
            dur,
        };
        return Ok((figures.bytes_copied, Some(held)));
    }
    // A disk whose spot check found a difference is compared in full.
    let verify = plan.verify_mode(verify);
    // Offline, when the last online round passed its spot check and is the
    // one this delta was taken against: compare what this round wrote
    // through the write grant, then seal the target and revoke the
    // snapshot grants all at once. The verification runs while other disks
    // may still copy.
    let checked_against = plan
        .rounds
        .iter()
        .rev()
        .find(|r| !r.offline && r.copied)
        .filter(|r| r.spot_check == SpotCheck::Passed && previous.as_ref() == Some(&r.snapshot));
    // What the verification must read back: every range the delta round
    // changed (its own work list, so the listing is not made twice).
    let must: &[(u64, u64)] = match (&prev, verify) {
        (Some(_), VerifyMode::Sample) => &figures.work,
        _ => &[],
    };
    if let (VerifyMode::Sample, Some(_), Some(_)) = (verify, checked_against, prev.as_ref()) {
        let t = clock();
        let before = compare(
            engine,
            (&round.snapshot, src.clone()),
            (&plan.target, dst.clone(), Access::Write),
            (VerifyMode::Sample, 0),
            must,
            seed_of(&plan.source),
            dur,
        )
        .await;
        match before {
            Ok(fig) => {
                span(shared, Phase::VerifyCopy, t, round.number, offline, 0);
                let t = clock();
                let (sealed, revoked) = futures::join!(
                    seal(engine, &plan.target),
                    revoke_all(engine, shared, &snapshot_grants)
                );
                span(shared, Phase::Revoke, t, round.number, offline, 0);
                sealed?;
                with_rec(shared, |r| {
                    r.disks[i].copied = true;
                    r.sas_closed(&plan.target);
                });
                judge(engine, shared, i, &fig)?;
                revoked?;
                return Ok((figures.bytes_copied, None));
            }
            Err(e) if is_permission_mismatch(&e) => {
                tracing::info!(disk = %plan.source.name(), "the upload grant does not read; verifying after the seal");
            }
            Err(e) => {
                let _ = revoke_all(engine, shared, &snapshot_grants).await;
                return Err(e);
            }
        }
    }
    // Otherwise seal, then verify this disk at once (while other disks may
    // still copy), then revoke everything it holds in one go.
    let mut opened = snapshot_grants.clone();
    let tail = async {
        let t = clock();
        seal(engine, &plan.target).await?;
        span(shared, Phase::Revoke, t, round.number, offline, 0);
        with_rec(shared, |r| r.disks[i].copied = true);
        if verify == VerifyMode::None {
            return Ok(None);
        }
        let t = clock();
        // (The target stays listed in open_sas from the round's intent
        // until the read grant below is revoked.)
        opened.push(plan.target.clone());
        let b = engine
            .cloud()
            .grant_access(&plan.target, Access::Read, dur)
            .await?;
        span(shared, Phase::Grant, t, round.number, offline, 0);
        let t = clock();
        let fig = compare(
            engine,
            (&round.snapshot, src.clone()),
            (&plan.target, b, Access::Read),
            (verify, SAMPLE_CALLS),
            must,
            seed_of(&plan.source),
            dur,
        )
        .await?;
        span(shared, Phase::VerifyCopy, t, round.number, offline, 0);
        Ok::<_, CloudError>(Some(fig))
    }
    .await;
    let t = clock();
    let revoked = revoke_all(engine, shared, &opened).await;
    span(shared, Phase::Revoke, t, round.number, offline, 0);
    if tail.is_ok() {
        with_rec(shared, |r| r.sas_closed(&plan.target));
    }
    match tail? {
        None => with_rec(shared, |r| r.disks[i].verified = true),
        Some(fig) => judge(engine, shared, i, &fig)?,
    }
    revoked?;
    Ok((figures.bytes_copied, None))
}

/// Seals an upload target (its revoke, which validates the VHD footer); an
/// invalid footer is terminal (the copy is wrong, not the platform).
async fn seal(engine: &Engine, target: &ResourceId) -> CloudResult<()> {
    engine
        .cloud()
        .revoke_access(target)
        .await
        .map_err(|e| CloudError {
            retry: if e.code.as_deref() == Some("InvalidVhd") {
                Retry::Terminal
            } else {
                e.retry
            },
            message: format!(
                "sealing target disk {} failed after the copy: {}",
                target.name(),
                e.message
            ),
            ..e
        })
}

/// Storage refused a read through a grant that does not allow it (an
/// upload grant that only writes, should Azure's do so).
fn is_permission_mismatch(e: &CloudError) -> bool {
    e.code.as_deref() == Some("AuthorizationPermissionMismatch")
}

/// The online spot check of disk `i` after round `round` copied `src`
/// (its snapshot's read grant) into `dst` (the target's write grant):
/// [`crate::copy::SAMPLE_CALLS`] seeded calls, the allocation maps and the
/// footer, recorded on the round ([`SpotCheck`]). It never fails the
/// round: the copy is done, and a check that could not run leaves the
/// offline round's verification as it was.
async fn spot_check(
    engine: &Engine,
    shared: &Mutex<VmRecord>,
    i: usize,
    (plan, round): (&crate::step::DiskPlan, &Round),
    (src, dst): (&SasUrl, &SasUrl),
    dur: Duration,
) {
    let t = clock();
    let result = compare(
        engine,
        (&round.snapshot, src.clone()),
        (&plan.target, dst.clone(), Access::Write),
        (VerifyMode::Sample, SAMPLE_CALLS),
        &[],
        seed_of(&plan.source) ^ u64::from(round.number),
        dur,
    )
    .await;
    span(shared, Phase::VerifyCopy, t, round.number, false, 0);
    let outcome = match &result {
        Ok(f) if f.mismatches.is_empty() => SpotCheck::Passed,
        Ok(_) => SpotCheck::Mismatch,
        Err(e) => {
            tracing::info!(disk = %plan.source.name(), round = round.number, error = %e.message, "spot check not run");
            return;
        }
    };
    let _ = with_rec(shared, |r| {
        if let Some(last) = r.disks[i].rounds.last_mut() {
            last.spot_check = outcome;
        }
        let f = result.as_ref().ok();
        let detail = json!({
            "disk": plan.source,
            "round": round.number,
            "compared_bytes": f.map_or(0, |f| f.compared_bytes),
            "mismatches": f.map_or(0, |f| f.mismatches.len()),
        });
        let what = if outcome == SpotCheck::Passed {
            "spot-checked"
        } else {
            tracing::warn!(disk = %plan.source.name(), round = round.number, "the spot check found ranges that differ; the final copy will be compared in full");
            "spot-check-mismatch"
        };
        engine.journal_write(r, what, detail)
    });
}

/// Records a verification's verdict on disk `i`: verified, or (a mismatch)
/// its copy forgotten so the rules delete and copy the target again, and
/// an error that parks the VM before anything is deleted.
fn judge(
    engine: &Engine,
    shared: &Mutex<VmRecord>,
    i: usize,
    fig: &crate::engine::VerifyFigures,
) -> CloudResult<()> {
    with_rec(shared, |r| {
        let d = r.disks[i].clone();
        if fig.mismatches.is_empty() {
            r.disks[i].verified = true;
            return Ok(());
        }
        reset_copy(r, &d.target);
        r.step = Step::FinalCopy;
        let detail = json!({"disk": d.source, "compared_bytes": fig.compared_bytes, "mismatches": fig.mismatches.len()});
        engine.journal_write(r, "verify-mismatch", detail)?;
        Err(internal(format!(
            "verification found {} range(s) of target disk {} that differ from the source (first at byte {}); the source VM is untouched. `ade2eah resume` deletes that target (created by this run) and copies it again",
            fig.mismatches.len(),
            d.target.name(),
            fig.mismatches[0].0
        )))
    })
}

/// Compares `target` (its grant given, of `Access`) with `snapshot` (a
/// read grant given) over the verification plan of `(mode, spot_checks)`,
/// batch by batch, renewing both grants with the same access if they
/// expire (a slow read-back must not fail verification).
async fn compare(
    engine: &Engine,
    snapshot: (&ResourceId, SasUrl),
    target: (&ResourceId, SasUrl, Access),
    (mode, spot_checks): (VerifyMode, usize),
    must: &[(u64, u64)],
    seed: u64,
    dur: Duration,
) -> CloudResult<crate::engine::VerifyFigures> {
    let cloud = engine.cloud();
    let ((snap_id, mut a), (target_id, mut b, access)) = (snapshot, target);
    let calls = cloud
        .verify_plan(&a, &b, mode == VerifyMode::Full, must, spot_checks, seed)
        .await?;
    let mut total = crate::engine::VerifyFigures::default();
    let mut at = 0;
    let mut renewals = 0;
    // A batch that outlives its grants is read again after the renewal, in
    // a quarter of the size: verification always progresses as long as one
    // call fits in a grant's lifetime.
    let mut batch_len = VERIFY_BATCH;
    while at < calls.len() {
        let batch = &calls[at..(at + batch_len).min(calls.len())];
        match cloud.verify_calls(&a, &b, batch).await {
            Ok(f) => {
                total.compared_bytes += f.compared_bytes;
                total.mismatches.extend(f.mismatches);
                at += batch.len();
            }
            Err(e) if is_sas_expiry(&e) && renewals < SAS_RENEWALS => {
                renewals += 1;
                batch_len = (batch_len / 4).max(1);
                // `join!`: neither grant is abandoned mid-operation.
                let (na, nb) = futures::join!(
                    engine.cloud().grant_access(snap_id, Access::Read, dur),
                    engine.cloud().grant_access(target_id, access, dur)
                );
                (a, b) = (na?, nb?);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(total)
}

/// Compares every unverified target with its final snapshot (after a
/// resume: the offline round verifies each disk as soon as it is sealed).
/// A mismatch un-trusts that target (its rounds are forgotten, the step
/// goes back to the final copy) and parks the VM before anything is
/// deleted.
async fn verify_copies(engine: &Engine, rec: &mut VmRecord) -> CloudResult<Value> {
    let mode = rec.copy_policy.verify;
    let shared = Mutex::new(std::mem::replace(rec, VmRecord::new(rec.id.clone())));
    let todo: Vec<usize> = with_rec(&shared, |r| {
        (0..r.disks.len())
            .filter(|&i| !r.disks[i].verified)
            .collect()
    });
    let results =
        futures::future::join_all(todo.iter().map(|&i| verify_one(engine, &shared, i, mode))).await;
    *rec = shared.into_inner().unwrap_or_else(|p| p.into_inner());
    let mut report = Vec::new();
    for r in results {
        report.push(r?);
    }
    Ok(json!({"mode": mode, "disks": report}))
}

async fn verify_one(
    engine: &Engine,
    shared: &Mutex<VmRecord>,
    i: usize,
    mode: VerifyMode,
) -> CloudResult<Value> {
    let cloud = engine.cloud();
    let d = with_rec(shared, |r| r.disks[i].clone());
    let mode = d.verify_mode(mode);
    if mode == VerifyMode::None {
        with_rec(shared, |r| r.disks[i].verified = true);
        return Ok(json!({"disk": d.source, "skipped": true}));
    }
    let Some(last) = d.rounds.last().filter(|r| r.copied && r.offline).cloned() else {
        return Err(internal(format!(
            "disk {} has no finished final copy to verify against",
            d.source.name()
        )));
    };
    let prev = d.delta_base(last.number).map(|r| r.snapshot.clone());
    let dur = sas_lifetime(d.source_size_bytes, engine.opts().sas_duration);
    let opened: Vec<ResourceId> = [
        Some(last.snapshot.clone()),
        Some(d.target.clone()),
        prev.clone(),
    ]
    .into_iter()
    .flatten()
    .collect();
    let t = clock();
    let result = async {
        // All complete before any error is returned (see `copy_one`).
        let (a, b, ps) = futures::join!(
            engine
                .cloud()
                .grant_access(&last.snapshot, Access::Read, dur),
            engine.cloud().grant_access(&d.target, Access::Read, dur),
            read_grant_if(engine, prev.as_ref(), dur),
        );
        let (a, b, ps) = (a?, b?, ps?);
        span(shared, Phase::Grant, t, last.number, true, 0);
        let must = match &ps {
            Some(ps) if mode == VerifyMode::Sample => cloud.changed_ranges(&a, ps).await?,
            _ => Vec::new(),
        };
        let t = clock();
        let fig = compare(
            engine,
            (&last.snapshot, a),
            (&d.target, b, Access::Read),
            (mode, SAMPLE_CALLS),
            &must,
            seed_of(&d.source),
            dur,
        )
        .await?;
        span(shared, Phase::VerifyCopy, t, last.number, true, 0);
        Ok::<_, CloudError>(fig)
    }
    .await;
    let t = clock();
    let revoked = revoke_all(engine, shared, &opened).await;
    span(shared, Phase::Revoke, t, last.number, true, 0);
    let fig = result?;
    revoked?;
    judge(engine, shared, i, &fig)?;
    Ok(
        json!({"disk": d.source, "compared_bytes": fig.compared_bytes, "mismatches": fig.mismatches.len()}),
    )
}

fn seed_of(id: &ResourceId) -> u64 {
    id.key().bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x1000_0000_01b3)
    })
}
