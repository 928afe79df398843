//! The preflight reads for `plan`: one unfiltered lock listing per
//! subscription, one `backupStatus` read per relevant VM (eight at a time),
//! one read of each disk encryption set the new disks use, one Compute
//! usages listing per region of the eligible VMs. Each answer is
//! handed, as plain data, to the pure check of the same name in
//! [`crate::plan::preflight`], in this order: locks (a blocker takes a VM
//! out, so the quota regions are computed after it), backup, DES, quota.

use std::collections::BTreeMap;

use futures::StreamExt;
use serde_json::Value;

use crate::azure::ArmClient;
use crate::plan::preflight;
use crate::plan::{Finding, PlannedVm};
use crate::step::CopyPolicy;
use crate::step::validate::DesRead;

/// [`run`] once per subscription over that subscription's VMs (locks,
/// backup status and usages are per subscription); `vms` keeps every VM,
/// in an order [`crate::plan::Plan::build`] sorts again.
pub async fn run_per_subscription(
    client: &ArmClient,
    subscriptions: &[String],
    vms: &mut Vec<PlannedVm>,
) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut rest = std::mem::take(vms);
    for sub in subscriptions {
        let (mut mine, others): (Vec<_>, Vec<_>) = rest
            .into_iter()
            .partition(|v| v.id.subscription().eq_ignore_ascii_case(sub));
        out.extend(run(client, sub, &mut mine).await);
        vms.extend(mine);
        rest = others;
    }
    vms.extend(rest);
    out
}

/// Runs every preflight check on `vms` (adding VM findings, taking blocked
/// VMs out) and returns the plan-level findings. All `vms` must be in
/// `subscription`.
pub async fn run(client: &ArmClient, subscription: &str, vms: &mut [PlannedVm]) -> Vec<Finding> {
    let mut out = Vec::new();
    let listing = client
        .list_subscription_locks(subscription)
        .await
        .map_err(|e| e.to_string());
    preflight::locks(listing, vms, &mut out);
    let answers = backup_status(client, subscription, preflight::backup_targets(vms)).await;
    preflight::backup(answers, vms, &mut out);
    let mut des = Vec::new();
    for id in preflight::des_targets(vms) {
        let read = match client.get_disk_encryption_set(&id).await {
            Ok(Some(v)) => DesRead::Found(v),
            Ok(None) => DesRead::Missing,
            Err(e) => DesRead::Unreadable(e.to_string()),
        };
        des.push((id, read));
    }
    preflight::des(&des, vms);
    let usages = usages(client, subscription, preflight::quota_regions(vms)).await;
    preflight::quota(&usages, vms, &CopyPolicy::default(), &mut out);
    preflight::finish(vms);
    out
}

/// The `backupStatus` of each target (index, region, VM id), eight at a time.
async fn backup_status(
    client: &ArmClient,
    sub: &str,
    targets: Vec<(usize, String, String)>,
) -> Vec<(usize, Result<Value, String>)> {
    futures::stream::iter(targets.into_iter().map(|(i, loc, id)| async move {
        let answer = client.backup_status(sub, &loc, &id).await;
        (i, answer.map_err(|e| e.to_string()))
    }))
    .buffer_unordered(8)
    .collect()
    .await
}

/// The Compute usages of each region (lower-cased key → spelling); `None`
/// where the read failed or answered 404.
async fn usages(
    client: &ArmClient,
    sub: &str,
    regions: BTreeMap<String, String>,
) -> BTreeMap<String, Option<Vec<Value>>> {
    let mut out = BTreeMap::new();
    for (key, loc) in regions {
        out.insert(key, client.compute_usages(sub, &loc).await.ok().flatten());
    }
    out
}
