//! Carrying out one [`Action`]: the only place that turns decisions into
//! mutating cloud calls. Each function is small and idempotent at the Azure
//! level (PUT of the same body, DELETE of a gone resource, revoke of a
//! revoked disk all succeed), because after a crash it may run again.

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};

use super::cloud::{Access, CloudError, CloudResult, Retry};
use super::{Engine, failpoint};
use crate::model::ResourceId;
use crate::step::{Action, CreatedKind, VmRecord, body};

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
        Action::CopyDisk { source, target } => {
            rec.sas_opened(source);
            rec.sas_opened(target);
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
            cloud
                .put_disk(target, &body::target_disk(plan, &facts, engine.run_id()))
                .await
                .map(|_| json!({"disk": target}))
        }
        Action::DeleteTargetDisk { target } => {
            if !rec.created_by_run(target) {
                return Err(internal(format!(
                    "refusing to delete {target}: not created by this run"
                )));
            }
            cloud
                .delete_disk(target)
                .await
                .map(|_| json!({"disk": target}))
        }
        Action::RevokeAccess { disk } => {
            cloud.revoke_access(disk).await?;
            rec.sas_closed(disk);
            Ok(json!({"disk": disk}))
        }
        Action::CopyDisk { source, target } => copy_disk(engine, rec, source, target).await,
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

/// Grants read on the source and write on the target, copies, and revokes
/// both on every path out. The disk is marked copied only when the copy and
/// both revokes succeeded (the target revoke also validates the VHD footer).
async fn copy_disk(
    engine: &Engine,
    rec: &mut VmRecord,
    source: &ResourceId,
    target: &ResourceId,
) -> CloudResult<Value> {
    let cloud = engine.cloud();
    let total = rec
        .disks
        .iter()
        .find(|d| &d.source == source)
        .map(|d| d.source_size_bytes + 512)
        .unwrap_or(0);
    let dur = engine.opts().sas_duration;
    let mut granted = (false, false);
    let result = async {
        let src = cloud.grant_access(source, Access::Read, dur).await?;
        granted.0 = true;
        let dst = cloud.grant_access(target, Access::Write, dur).await?;
        granted.1 = true;
        failpoint::hit("copy:after-grant");
        let done = AtomicU64::new(0);
        let vm = rec.id.clone();
        let name = source.name().to_string();
        let progress = |n: u64| {
            let now = done.fetch_add(n, Ordering::Relaxed) + n;
            engine.progress().copy(&vm, &name, now, total);
        };
        let figures = cloud.copy_blob(&src, &dst, &progress).await?;
        failpoint::hit("copy:after-copy");
        Ok::<_, CloudError>(figures)
    }
    .await;

    // Revoke what this call granted, whatever happened. The source first: it
    // is the customer's data. (A grant whose answer was lost shows up as an
    // open SAS on the next observation and is revoked then.)
    let revoke_src = if granted.0 {
        cloud.revoke_access(source).await
    } else {
        Ok(())
    };
    if revoke_src.is_ok() && granted.0 {
        rec.sas_closed(source);
    }
    let revoke_dst = if granted.1 {
        cloud.revoke_access(target).await
    } else {
        Ok(())
    };
    if revoke_dst.is_ok() && granted.1 {
        rec.sas_closed(target);
    }
    let figures = result?;
    revoke_src?;
    revoke_dst.map_err(|e| CloudError {
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
    })?;
    if let Some(plan) = rec.disk_mut(source) {
        plan.copied = true;
        plan.bytes_copied = figures.bytes_copied;
    }
    engine.journal_write(rec, "copied", json!({"disk": source, "bytes_copied": figures.bytes_copied, "allocated": figures.allocated_bytes, "blob_size": figures.blob_size}))?;
    Ok(
        json!({"bytes_copied": figures.bytes_copied, "allocated": figures.allocated_bytes, "blob_size": figures.blob_size}),
    )
}
