//! Fleet discovery for `plan`: select VMs (subscription, resource groups,
//! tags, name pattern, explicit ids), re-read every one from ARM (listings and
//! Resource Graph lag), classify, and add findings, fingerprints and estimates.
//! Only GETs (and the read-only Resource Graph POST), except the opt-in
//! feature registration.

use std::collections::{BTreeMap, BTreeSet};

use futures::StreamExt;
use serde_json::Value;

use super::findings::{self, Finding, Severity};
use super::{Estimate, PlannedVm, fingerprint};
use crate::azure::ArmClient;
use crate::engine::arm::ArmCloud;
use crate::engine::discover::{DiscoverError, discover};
use crate::model::ResourceId;
use crate::model::views::VmModel;
use crate::step::Outcome;

/// What to select.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selector {
    /// Subscriptions (one or more).
    pub subscriptions: Vec<String>,
    /// Resource groups (case-insensitive): `RG` is looked up in every
    /// subscription, `SUB/RG` only in `SUB`; empty = the whole subscriptions
    /// unless `vms` is set.
    pub resource_groups: Vec<String>,
    /// Explicit VM ids (always selected, filters do not apply).
    pub vms: Vec<ResourceId>,
    /// `KEY=VALUE` tags every listed VM must have.
    pub tags: BTreeMap<String, String>,
    /// Glob (`*`, `?`) on the VM name, case-insensitive.
    pub name: Option<String>,
}

/// How VMs were listed (for the report).
#[derive(Debug, Clone, Default)]
pub struct DiscoveryStats {
    /// VMs from listings before filters.
    pub listed: usize,
    /// Listing source (`arm`, `resource-graph`).
    pub source: String,
}

/// Discovery failed.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// Bad input (unknown VM, bad id).
    #[error("{0}")]
    BadInput(String),
    /// Azure failed.
    #[error("{0}")]
    Failed(String),
}

fn map_discover(e: DiscoverError) -> PlanError {
    match e {
        DiscoverError::UnknownVm(_) | DiscoverError::NotAVm(_) => {
            PlanError::BadInput(e.to_string())
        }
        DiscoverError::Cloud { .. } => PlanError::Failed(e.to_string()),
    }
}

/// `*` / `?` glob, case-insensitive.
pub fn glob(pattern: &str, s: &str) -> bool {
    let p: Vec<char> = pattern.to_ascii_lowercase().chars().collect();
    let s: Vec<char> = s.to_ascii_lowercase().chars().collect();
    let (mut pi, mut si, mut star, mut mark) = (0, 0, None, 0);
    while si < s.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            pi += 1;
            mark = si;
        } else if let Some(st) = star {
            pi = st + 1;
            mark += 1;
            si = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

fn matches_filters(sel: &Selector, vm: &Value) -> bool {
    let name = VmModel::new(vm).name().unwrap_or_default();
    if let Some(p) = &sel.name
        && !glob(p, name)
    {
        return false;
    }
    sel.tags.iter().all(|(k, v)| {
        VmModel::new(vm)
            .tag_map()
            .and_then(|t| t.iter().find(|(tk, _)| tk.eq_ignore_ascii_case(k)))
            .and_then(|(_, tv)| tv.as_str())
            .is_some_and(|tv| tv == v)
    })
}

/// The ids selected, sorted, without duplicates.
pub async fn select(
    client: &ArmClient,
    sel: &Selector,
    stats: &mut DiscoveryStats,
) -> Result<Vec<ResourceId>, PlanError> {
    let mut ids: BTreeMap<String, ResourceId> = BTreeMap::new();
    for id in &sel.vms {
        ids.insert(id.key(), id.clone());
    }
    let mut listed: Vec<Value> = Vec::new();
    let fail = |e: crate::azure::AzureError| PlanError::Failed(format!("listing VMs failed: {e}"));
    if !sel.resource_groups.is_empty() {
        stats.source = "arm".into();
        let uniq: BTreeSet<(String, String)> = sel
            .resource_groups
            .iter()
            .flat_map(|g| match g.split_once('/') {
                Some((sub, rg)) => vec![(sub.to_string(), rg.to_string())],
                None => sel
                    .subscriptions
                    .iter()
                    .map(|sub| (sub.clone(), g.clone()))
                    .collect(),
            })
            .map(|(s, g)| (s.to_ascii_lowercase(), g.to_ascii_lowercase()))
            .collect();
        for (sub, rg) in uniq {
            listed.extend(client.list_vms(&sub, Some(&rg)).await.map_err(fail)?);
        }
    } else if sel.vms.is_empty() {
        // Whole subscription: Resource Graph first (one paged query), ARM listing
        // as the fallback. Either way every VM is re-read below.
        let q = "Resources | where type =~ 'microsoft.compute/virtualmachines' | project id, name, resourceGroup, tags";
        match client.resource_graph(&sel.subscriptions, q).await {
            Ok(rows) => {
                stats.source = "resource-graph".into();
                listed = rows;
            }
            Err(e) => {
                tracing::info!(error = %e, "Resource Graph unavailable; listing VMs through ARM");
                stats.source = "arm".into();
                listed.clear();
                for sub in &sel.subscriptions {
                    listed.extend(client.list_vms(sub, None).await.map_err(fail)?);
                }
            }
        }
    }
    stats.listed = listed.len();
    for vm in listed {
        if !matches_filters(sel, &vm) {
            continue;
        }
        if let Some(id) = VmModel::new(&vm)
            .id()
            .and_then(|s| ResourceId::parse(s).ok())
        {
            ids.insert(id.key(), id);
        }
    }
    Ok(ids.into_values().collect())
}

/// Re-reads and classifies `ids` (chunks in parallel). Ids that no longer
/// exist are returned in the second list when `allow_missing`, else bad input.
pub async fn classify_all(
    cloud: &ArmCloud,
    ids: &[ResourceId],
    allow_missing: bool,
) -> Result<(Vec<PlannedVm>, Vec<ResourceId>), PlanError> {
    const CHUNK: usize = 16;
    let chunks: Vec<Vec<ResourceId>> = ids.chunks(CHUNK).map(<[ResourceId]>::to_vec).collect();
    let results: Vec<Result<(Vec<PlannedVm>, Vec<ResourceId>), PlanError>> =
        futures::stream::iter(chunks.into_iter().map(|mut chunk| async move {
            let mut missing = Vec::new();
            loop {
                match discover(cloud, &chunk).await {
                    Ok(found) => {
                        let vms = found
                            .into_iter()
                            .map(|(rec, path)| planned(rec, path))
                            .collect();
                        return Ok((vms, missing));
                    }
                    Err(DiscoverError::UnknownVm(id)) if allow_missing => {
                        chunk.retain(|c| c.key() != id.key());
                        missing.push(id);
                    }
                    Err(e) => return Err(map_discover(e)),
                }
            }
        }))
        .buffer_unordered(8)
        .collect()
        .await;
    let mut vms = Vec::new();
    let mut missing = Vec::new();
    for r in results {
        let (v, m) = r?;
        vms.extend(v);
        missing.extend(m);
    }
    vms.sort_by_key(|v| v.id.key());
    Ok((vms, missing))
}

fn planned(rec: crate::step::VmRecord, path: String) -> PlannedVm {
    let raw = rec.original_model.clone().unwrap_or(Value::Null);
    let vm = VmModel::new(&raw);
    let eligible = rec.is_active();
    let mut f: Vec<Finding> = Vec::new();
    if let Outcome::Skipped { reason } = &rec.outcome {
        f.push(findings::for_skip(&path, reason));
    }
    if path != "not-ade" && path != "already-eah" {
        f.extend(findings::advisories(&rec));
    }
    f.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.code.cmp(&b.code)));
    let fp = fingerprint::of_vm(&rec, &path, eligible);
    PlannedVm {
        name: rec.id.name().to_string(),
        resource_group: rec.id.resource_group().to_string(),
        eligible,
        path,
        wave: None,
        size: vm.properties().vm_size().unwrap_or_default().to_string(),
        os: vm
            .storage_profile()
            .os_disk()
            .and_then(|d| d.os_type())
            .unwrap_or_default()
            .to_string(),
        location: vm.location().unwrap_or_default().to_string(),
        power_state: findings::power_state(&raw),
        findings: f,
        fingerprint: fp,
        estimate: Estimate::of(&rec),
        id: rec.id.clone(),
        record: rec,
    }
}

/// Adds `suggest a size` to size findings, from the region's resource SKUs:
/// the nearest size of the same family (by vCPUs) that supports EAH and is
/// not restricted, else any such size with the same vCPU count. SKUs are
/// read per subscription and region of the VM.
pub async fn suggest_sizes(client: &ArmClient, vms: &mut [PlannedVm]) {
    let mut by_loc: BTreeMap<(String, String), Vec<crate::azure::wire::ResourceSku>> =
        BTreeMap::new();
    for v in vms
        .iter_mut()
        .filter(|v| v.path == "size-unsupported" || v.path == "size-unavailable")
    {
        let loc = (
            v.id.subscription().to_ascii_lowercase(),
            v.location.to_ascii_lowercase(),
        );
        if !by_loc.contains_key(&loc) {
            let skus = client
                .list_vm_skus(v.id.subscription(), &v.location)
                .await
                .unwrap_or_default();
            by_loc.insert(loc.clone(), skus);
        }
        let skus = &by_loc[&loc];
        let cur = skus.iter().find(|s| {
            s.name
                .as_deref()
                .is_some_and(|n| n.eq_ignore_ascii_case(&v.size))
        });
        let family = Some(family_of(&v.size));
        let vcpus = |s: &crate::azure::wire::ResourceSku| {
            s.capability("vCPUs")
                .and_then(|c| c.parse::<i64>().ok())
                .unwrap_or(0)
        };
        let want = cur.map(vcpus).unwrap_or(0);
        let ok = |s: &&crate::azure::wire::ResourceSku| {
            s.capability("EncryptionAtHostSupported")
                .is_some_and(|c| c.eq_ignore_ascii_case("true"))
                && s.restrictions.as_ref().is_none_or(|r| r.is_empty())
        };
        let best = skus
            .iter()
            .filter(ok)
            .min_by_key(|s| {
                let same_family = s.name.as_deref().map(family_of) == family;
                (!same_family, (vcpus(s) - want).abs(), s.name.clone())
            })
            .and_then(|s| s.name.clone());
        if let Some(best) = best {
            v.findings.push(Finding::new(
                "size-suggestion",
                Severity::Info,
                format!("nearest size supporting encryption at host in {}: {best} (resize, then plan again)", v.location),
            ));
        }
    }
}

/// `Standard_D4s_v5` → `ds_v5`: the size name without its core count.
fn family_of(size: &str) -> String {
    let s = size.to_ascii_lowercase();
    let s = s.strip_prefix("standard_").unwrap_or(&s);
    s.chars()
        .filter(|c| !c.is_ascii_digit())
        .collect::<String>()
        + &s.split_once('_')
            .map(|(_, v)| format!("#{v}"))
            .unwrap_or_default()
}
