//! Fleet selection for `plan`, pure: what to select ([`Selector`]), the
//! filters a listed VM must pass ([`matches_filters`]), how a discovered
//! record becomes a [`PlannedVm`] with its findings, fingerprint and
//! estimate ([`planned`]), and size suggestions from resource SKUs
//! ([`suggest_sizes`]). The reads (listings, Resource Graph, the VMs, the
//! SKUs) are the discovery adapter's ([`crate::discovery`]).

use std::collections::BTreeMap;

use serde_json::Value;

use super::findings::{self, Finding, Severity};
use super::{Estimate, PlannedVm, fingerprint};
use crate::azure::wire::ResourceSku;
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

/// True when the listed `vm` passes `sel`'s name and tag filters.
pub fn matches_filters(sel: &Selector, vm: &Value) -> bool {
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

/// The plan's view of one discovered VM (`path` is its migration path label):
/// findings, fingerprint and estimate added.
pub fn planned(rec: crate::step::VmRecord, path: String) -> PlannedVm {
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
    if let Some(spec) = rec.facts.as_ref().and_then(|x| x.rebuild.as_ref()) {
        f.push(Finding::new(
            "linux-rebuild",
            findings::Severity::Warning,
            format!(
                "rebuilt from image {} with EAH on new empty disks (--rebuild-linux-os); NOT carried over: {}. \
                 The original disks and backup snapshots are kept for recovery.",
                spec.image_reference,
                spec.not_carried.join("; ")
            ),
        ));
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
/// not restricted, else any such size with the same vCPU count. `skus` are
/// the resource SKUs per [`sku_region`] of the VMs [`wants_size`] picks
/// (a region missing from the map has no SKUs).
pub fn suggest_sizes(vms: &mut [PlannedVm], skus: &BTreeMap<(String, String), Vec<ResourceSku>>) {
    let none = Vec::new();
    for v in vms.iter_mut().filter(|v| wants_size(v)) {
        let skus = skus.get(&sku_region(v)).unwrap_or(&none);
        let cur = skus.iter().find(|s| {
            s.name
                .as_deref()
                .is_some_and(|n| n.eq_ignore_ascii_case(&v.size))
        });
        let family = Some(family_of(&v.size));
        let vcpus = |s: &ResourceSku| {
            s.capability("vCPUs")
                .and_then(|c| c.parse::<i64>().ok())
                .unwrap_or(0)
        };
        let want = cur.map(vcpus).unwrap_or(0);
        let ok = |s: &&ResourceSku| {
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

/// True for VMs whose size blocks the migration (a size suggestion helps).
pub fn wants_size(v: &PlannedVm) -> bool {
    v.path == "size-unsupported" || v.path == "size-unavailable"
}

/// The key SKUs are read under for `v`: (subscription, region), lower-cased.
pub fn sku_region(v: &PlannedVm) -> (String, String) {
    (
        v.id.subscription().to_ascii_lowercase(),
        v.location.to_ascii_lowercase(),
    )
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
