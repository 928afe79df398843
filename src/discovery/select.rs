//! Which VMs a [`Selector`] names: explicit ids, the resource groups' ARM
//! listings, or a whole subscription through Azure Resource Graph (ARM
//! listing as the fallback). Reads only; the filters are the plan's
//! ([`crate::plan::select::matches_filters`]).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::azure::ArmClient;
use crate::model::ResourceId;
use crate::model::views::VmModel;
use crate::plan::select::{DiscoveryStats, PlanError, Selector, matches_filters};

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
