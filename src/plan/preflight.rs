//! Preflight checks beyond a VM's own model, all reads: management locks on
//! the VM, its disks, NICs, resource group and subscription; Azure Backup
//! protection; regional managed-disk and snapshot quotas for what the plan
//! creates. Blockers take the VM out of the plan (and change its
//! fingerprint, so a plan made before a lock was added or removed is stale).
//!
//! Requests: one unfiltered lock listing of the subscription (every lock at
//! and below it, paged), one `backupStatus` read per VM (a POST that only
//! reads; per-VM rather than a Resource Graph `RecoveryServicesResources`
//! query because it is authoritative for the VM id and not near-real-time),
//! one usages listing per region.
//!
//! This module is pure: it gets those answers as plain data. The reads, and
//! the order they are made in, are the discovery adapter's
//! ([`crate::discovery::preflight`]).

use std::collections::BTreeMap;

use serde_json::Value;

use super::findings::{Finding, Severity};
use super::{Estimate, PlannedVm, fingerprint};
use crate::model::ResourceId;
use crate::model::usage::{disk_usage_name, snapshot_usage_name};
use crate::model::views::{BackupStatus, DesModel, DiskModel, VmModel};
use crate::step::validate::{self, DesRead, Lock as LockInfo};
use crate::step::{CopyPolicy, Outcome, encryption};

/// A lock that blocks the migration (on the VM, its resource group or
/// subscription; or ReadOnly on a disk or NIC).
pub const LOCK: &str = "management-lock";
/// A lock that does not block it (CanNotDelete on a disk or NIC).
pub const LOCK_INFO: &str = "management-lock-info";
/// The VM is protected by Azure Backup.
pub const BACKUP: &str = "backup-protected";
/// Regional managed-disk / snapshot quota.
pub const QUOTA: &str = "disk-quota";
/// A preflight read failed: the check was not made.
pub const UNREAD: &str = "preflight-unread";
/// The encryption the new disks get (info).
pub const TARGET_ENCRYPTION: &str = "target-encryption";
/// A disk encryption set the new disks need cannot be used.
pub const DES: &str = "disk-encryption-set";
/// Defender for Cloud's agentless scanner needs key access for CMK disks.
pub const DEFENDER_CMK: &str = "defender-cmk-scan";

/// The Defender for Cloud Servers Scanner Resource Provider application
/// (facts §8): its service principal needs key access to scan CMK disks.
pub const DEFENDER_SCANNER_APP_ID: &str = "0c7668b5-3260-4ad0-9f53-34ed54fa19b2";

/// Usage share above which the plan warns.
const QUOTA_WARN: f64 = 0.8;

fn relevant(v: &PlannedVm) -> bool {
    v.path != "not-ade" && v.path != "already-eah"
}

fn norm(s: &str) -> String {
    s.trim().trim_end_matches('/').to_ascii_lowercase()
}

/// Adds a blocker: the VM leaves the plan (skipped with the finding's message).
fn block(v: &mut PlannedVm, f: Finding) {
    if v.eligible {
        v.eligible = false;
        v.estimate = Estimate::default();
        v.record.outcome = Outcome::Skipped {
            reason: format!("{}: {}", f.code, f.message),
        };
    }
    v.findings.push(f);
}

/// After the checks: sorts each VM's findings (most severe first) and
/// refreshes its fingerprint (a blocker changes it).
pub fn finish(vms: &mut [PlannedVm]) {
    for v in vms.iter_mut() {
        v.findings
            .sort_by(|a, b| b.severity.cmp(&a.severity).then(a.code.cmp(&b.code)));
        v.fingerprint = fingerprint::of_vm(&v.record, &v.path, v.eligible);
    }
}

fn scope_label(scope: &str, vm_id: &str) -> String {
    let segs: Vec<&str> = scope.trim_matches('/').split('/').collect();
    if norm(scope) == norm(vm_id) {
        "the VM".into()
    } else if segs.len() == 2 {
        format!("subscription {}", segs[1])
    } else if segs.len() == 4 {
        format!("resource group {}", segs[3])
    } else {
        format!("resource {}", segs.last().unwrap_or(&""))
    }
}

fn linked(vm: &Value) -> (Vec<String>, Vec<String>) {
    let vm = VmModel::new(vm);
    let disks = vm
        .attached_disk_ids()
        .into_iter()
        .map(str::to_string)
        .collect();
    let nics = vm
        .properties()
        .network_interfaces()
        .filter_map(|n| n.id())
        .map(str::to_string)
        .collect();
    (disks, nics)
}

/// The lock check over the subscription's unfiltered lock listing
/// (`Ok(None)`: the locks API answered 404; `Err`: the read failed).
pub fn locks(
    listing: Result<Option<Vec<Value>>, String>,
    vms: &mut [PlannedVm],
    out: &mut Vec<Finding>,
) {
    let all = match listing {
        Ok(Some(v)) => v,
        Ok(None) => {
            out.push(Finding::new(UNREAD, Severity::Warning,
                "management locks could not be listed (the locks API answered 404); check `az lock list` for locks on the VMs, disks, NICs, resource groups and subscription before running"));
            return;
        }
        Err(e) => {
            out.push(Finding::new(UNREAD, Severity::Warning, format!(
                "management locks could not be listed ({e}); check `az lock list` for locks on the VMs, disks, NICs, resource groups and subscription before running (reading locks needs Microsoft.Authorization/locks/read)")));
            return;
        }
    };
    let locks: Vec<LockInfo> = all.iter().filter_map(LockInfo::parse).collect();
    if locks.is_empty() {
        return;
    }
    for v in vms.iter_mut().filter(|v| relevant(v)) {
        let vm_id = v.id.as_str().to_string();
        let model = v.record.original_model.clone().unwrap_or(Value::Null);
        let (disks, nics) = linked(&model);
        for l in &locks {
            if l.covers(&vm_id) {
                let ro = if l.read_only() {
                    " (ReadOnly also refuses deallocate, start, the extension changes and every update)"
                } else {
                    ""
                };
                let msg = format!(
                    "{} lock '{}' on {} ({}) blocks the migration: the VM must be deleted and re-created{ro}; {}",
                    l.level,
                    l.name,
                    scope_label(&l.scope, &vm_id),
                    l.scope,
                    l.remedy()
                );
                block(v, Finding::new(LOCK, Severity::Blocker, msg));
                continue;
            }
            let hit = |ids: &[String]| ids.iter().find(|d| l.covers(d)).cloned();
            let (what, id) = match (hit(&disks), hit(&nics)) {
                (Some(d), _) => ("disk", d),
                (None, Some(n)) => ("NIC", n),
                (None, None) => continue,
            };
            let rname = id.rsplit('/').next().unwrap_or_default().to_string();
            if l.read_only() {
                let why = if what == "disk" {
                    "the run snapshots it, opens read access (beginGetAccess, a write) and the VM update and re-creation write it"
                } else {
                    "the VM update, delete and re-creation detach and attach it (writes)"
                };
                let msg = format!(
                    "ReadOnly lock '{}' on {what} {rname} ({}) blocks the migration: {why}; {}",
                    l.name,
                    l.scope,
                    l.remedy()
                );
                block(v, Finding::new(LOCK, Severity::Blocker, msg));
            } else {
                let msg = format!(
                    "{} lock '{}' on {what} {rname} ({}): no effect on the migration, which never deletes source {what}s (deleteOption is set to Detach before the VM is deleted)",
                    l.level, l.name, l.scope
                );
                v.findings
                    .push(Finding::new(LOCK_INFO, Severity::Info, msg));
            }
        }
    }
}

/// The VMs whose Azure Backup status is read: (index in `vms`, region, id).
pub fn backup_targets(vms: &[PlannedVm]) -> Vec<(usize, String, String)> {
    vms.iter()
        .enumerate()
        .filter(|(_, v)| relevant(v) && !v.location.is_empty())
        .map(|(i, v)| (i, v.location.clone(), v.id.as_str().to_string()))
        .collect()
}

/// The backup check over the status answers of [`backup_targets`] (index in
/// `vms`, the `backupStatus` body or the read's error).
pub fn backup(
    answers: Vec<(usize, Result<Value, String>)>,
    vms: &mut [PlannedVm],
    out: &mut Vec<Finding>,
) {
    let mut failed = 0usize;
    let mut first_err = None;
    for (i, a) in answers {
        let s = match a {
            Ok(s) => s,
            Err(e) => {
                failed += 1;
                first_err.get_or_insert(e);
                continue;
            }
        };
        let backup = BackupStatus::new(&s);
        let status = backup.protection_status().unwrap_or_default();
        if matches!(
            status.to_ascii_lowercase().as_str(),
            "" | "notprotected" | "invalid"
        ) {
            continue;
        }
        let vault = backup.vault_id().unwrap_or("?");
        let policy = backup.policy_name().unwrap_or("?");
        let vault_name = vault.rsplit('/').next().unwrap_or(vault);
        let vault_rg = vault.split('/').nth(4).unwrap_or("<vault resource group>");
        let v = &mut vms[i];
        let msg = format!(
            "protected by Azure Backup (vault {vault}, policy {policy}, status {status}): the VM is re-created with a new vmId, so after migration check its backup item in vault {vault_name} and run an on-demand backup (`az backup protection backup-now`); if the item reports errors, re-protect it (`az backup protection enable-for-vm --vault-name {vault_name} -g {vault_rg} --vm {} --policy-name {policy}`). Restore points taken before the migration are of the ADE-era disks: restoring one brings back ADE-encrypted disks, not an encryption-at-host VM",
            v.id
        );
        v.findings
            .push(Finding::new(BACKUP, Severity::Warning, msg));
    }
    if failed > 0 {
        out.push(Finding::new(UNREAD, Severity::Warning, format!(
            "Azure Backup status could not be read for {failed} VM(s) (first error: {}); check their protection in the Recovery Services vaults before running",
            first_err.unwrap_or_default()
        )));
    }
}

/// Managed disks and snapshots one eligible VM's migration creates, per
/// Compute usage name: one Upload disk per source disk (same SKU), and per
/// source disk a backup snapshot plus one per copy round (at most
/// `max_online_rounds` online rounds and the offline one), incremental
/// `Standard_LRS` snapshots. None are deleted by the run.
fn needs(v: &PlannedVm, policy: &CopyPolicy) -> BTreeMap<&'static str, u64> {
    let mut n: BTreeMap<&'static str, u64> = BTreeMap::new();
    for d in &v.record.disks {
        let sku = DiskModel::new(&d.source_model)
            .sku_name()
            .unwrap_or("Standard_LRS");
        if let Some(u) = disk_usage_name(sku) {
            *n.entry(u).or_default() += 1;
        }
        *n.entry(snapshot_usage_name("Standard_LRS")).or_default() +=
            2 + u64::from(policy.max_online_rounds);
    }
    n
}

/// The regions of the eligible VMs (lower-cased key → the spelling of the
/// first VM): one Compute usages read each.
pub fn quota_regions(vms: &[PlannedVm]) -> BTreeMap<String, String> {
    let mut regions: BTreeMap<String, String> = BTreeMap::new();
    for v in vms.iter().filter(|v| v.eligible) {
        regions
            .entry(v.location.to_ascii_lowercase())
            .or_insert_with(|| v.location.clone());
    }
    regions
}

/// The quota check over the Compute usages of each of [`quota_regions`]
/// (by lower-cased region; `None` or a missing region: the read failed or
/// answered 404).
pub fn quota(
    usages: &BTreeMap<String, Option<Vec<Value>>>,
    vms: &mut [PlannedVm],
    policy: &CopyPolicy,
    out: &mut Vec<Finding>,
) {
    for (key, loc) in quota_regions(vms) {
        let usages = match usages.get(&key).cloned().flatten() {
            Some(u) => u,
            None => {
                out.push(Finding::new(UNREAD, Severity::Warning, format!(
                    "the Compute usages of {loc} could not be read; check the managed-disk and snapshot quotas (`az vm list-usage -l {loc}`) before running")));
                continue;
            }
        };
        // (limit, current) per usage name.
        let mut quota: BTreeMap<&'static str, Option<(u64, u64)>> = BTreeMap::new();
        let idx: Vec<usize> = (0..vms.len())
            .filter(|&i| vms[i].eligible && vms[i].location.eq_ignore_ascii_case(&key))
            .collect();
        let mut total: BTreeMap<&'static str, u64> = BTreeMap::new();
        for &i in &idx {
            for (u, c) in needs(&vms[i], policy) {
                *total.entry(u).or_default() += c;
                quota
                    .entry(u)
                    .or_insert_with(|| validate::usage_of(&usages, u));
            }
        }
        let mut used: BTreeMap<&'static str, u64> = BTreeMap::new();
        let mut left_out = 0usize;
        for &i in &idx {
            let need = needs(&vms[i], policy);
            let short: Vec<String> = need
                .iter()
                .filter_map(|(u, c)| {
                    let (limit, cur) = quota.get(u).copied().flatten()?;
                    let remaining = limit.saturating_sub(cur);
                    (used.get(u).copied().unwrap_or(0) + c > remaining).then(|| {
                        format!("{u} ({cur} of {limit} in use, the plan's earlier VMs take {}, this VM needs {c})", used.get(u).copied().unwrap_or(0))
                    })
                })
                .collect();
            if short.is_empty() {
                for (u, c) in need {
                    *used.entry(u).or_default() += c;
                }
            } else {
                left_out += 1;
                let msg = format!(
                    "not enough regional quota in {loc} for this VM's temporary disks and snapshots: {}; request a quota increase (portal: Quotas, or `az quota update`), or migrate in smaller plans, then plan again",
                    short.join("; ")
                );
                block(&mut vms[i], Finding::new(QUOTA, Severity::Blocker, msg));
            }
        }
        for (u, need) in total {
            let Some(q) = quota.get(u).copied() else {
                continue;
            };
            let Some((limit, cur)) = q else {
                out.push(Finding::new(QUOTA, Severity::Info, format!(
                    "{loc} reports no usage {u}; the {need} disks/snapshots of that kind the plan creates were not checked against a quota")));
                continue;
            };
            let remaining = limit.saturating_sub(cur);
            if need > remaining {
                out.push(Finding::new(QUOTA, Severity::Blocker, format!(
                    "the plan needs {need} new {u} in {loc} but only {remaining} are left ({cur} of {limit} in use): {left_out} VM(s) were taken out of the plan (finding {QUOTA} on each); request a quota increase (portal: Quotas, or `az quota update`) or migrate in smaller plans, then plan again")));
            } else if (cur + need) as f64 > QUOTA_WARN * limit as f64 {
                out.push(Finding::new(QUOTA, Severity::Warning, format!(
                    "the plan brings {u} in {loc} to {} of {limit} ({:.0}%, above {:.0}%): other deployments may hit the quota during the migration; consider a quota increase, and delete the run's snapshots and the old disks once migrated VMs are verified",
                    cur + need,
                    100.0 * (cur + need) as f64 / limit.max(1) as f64,
                    100.0 * QUOTA_WARN
                )));
            }
        }
    }
}

/// Every DES the new disks of the relevant VMs use (distinct).
pub fn des_targets(vms: &[PlannedVm]) -> Vec<ResourceId> {
    let mut out: Vec<ResourceId> = Vec::new();
    for v in vms.iter().filter(|v| relevant(v) && v.eligible) {
        for id in vm_des(v) {
            if !out.iter().any(|o| o.key() == id.key()) {
                out.push(id);
            }
        }
    }
    out
}

fn vm_des(v: &PlannedVm) -> Vec<ResourceId> {
    let choice = encryption::choice_of(&v.record);
    encryption::des_ids(&choice, v.record.disks.iter().map(|d| &d.source_model))
}

/// The target-encryption checks: an info finding naming each new disk's
/// encryption; a blocker per DES that is missing, unreadable, in another
/// region or of another type ([`validate::des_problem`], the check the
/// run repeats before deleting the VM); and, for VMs whose new disks use a
/// DES, the Defender for Cloud agentless-scanning grant to check (facts §8:
/// the scanner reads CMK disks only with Get/WrapKey/UnwrapKey on the key,
/// role Key Vault Crypto Service Encryption User on RBAC vaults).
pub fn des(answers: &[(ResourceId, DesRead)], vms: &mut [PlannedVm]) {
    for v in vms.iter_mut().filter(|v| relevant(v) && v.eligible) {
        let choice = encryption::choice_of(&v.record);
        let disks: Vec<String> = v
            .record
            .disks
            .iter()
            .map(|d| {
                format!(
                    "{} {}",
                    d.target.name(),
                    encryption::expected(&choice, &d.source_model).describe()
                )
            })
            .collect();
        v.findings.push(Finding::new(
            TARGET_ENCRYPTION,
            Severity::Info,
            format!("new disks ({}): {}", choice.label(), disks.join(", ")),
        ));
        let location = v.location.clone();
        let mut vaults = Vec::new();
        for id in vm_des(v) {
            let kind = v
                .record
                .disks
                .iter()
                .map(|d| encryption::expected(&choice, &d.source_model))
                .find(|e| e.des.as_ref().is_some_and(|x| x.key() == id.key()))
                .map(|e| e.kind)
                .unwrap_or_default();
            let Some((_, read)) = answers.iter().find(|(a, _)| a.key() == id.key()) else {
                continue;
            };
            if let DesRead::Found(d) = read
                && let Some(kv) = DesModel::new(d).key_vault_id()
            {
                vaults.push((id.name().to_string(), kv.to_string()));
            }
            if let Some(p) = validate::des_problem(&id, read, &location, &kind) {
                block(
                    v,
                    Finding::new(
                        DES,
                        Severity::Blocker,
                        format!(
                            "{p}; fix the DES (or choose another with --disk-encryption-set, or --platform-keys), then plan again"
                        ),
                    ),
                );
            }
        }
        if !vm_des(v).is_empty() {
            let at = if vaults.is_empty() {
                "the DES's key vault".to_string()
            } else {
                vaults
                    .iter()
                    .map(|(d, kv)| format!("{kv} (DES {d})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            v.findings.push(Finding::new(DEFENDER_CMK, Severity::Warning, format!(
                "the new disks use customer-managed keys: Defender for Cloud's agentless scanner reads them only if its service principal (app {DEFENDER_SCANNER_APP_ID}, \"Microsoft Defender for Cloud Servers Scanner Resource Provider\") has Get, WrapKey and UnwrapKey on the key in {at}: role Key Vault Crypto Service Encryption User (e147488a-f6f5-4113-8e2d-b22465e65bf6) on RBAC vaults, an access policy otherwise; this tool does not read that grant (it needs Microsoft Graph): check with `az role assignment list --assignee $(az ad sp show --id {DEFENDER_SCANNER_APP_ID} --query id -o tsv) --all`, or scanning of this VM stops silently"
            )));
        }
    }
}
