//! The resource SKUs of the regions whose VMs need another size, for the
//! plan's size suggestions ([`crate::plan::select::suggest_sizes`]).

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use crate::azure::ArmClient;
use crate::plan::PlannedVm;
use crate::plan::select::{self, sku_region, wants_size};

/// Adds `suggest a size` to size findings: reads the resource SKUs once per
/// subscription and region of the VMs whose size blocks them (a failed read
/// counts as no SKUs), then lets the plan pick ([`select::suggest_sizes`]).
pub async fn suggest_sizes(client: &ArmClient, vms: &mut [PlannedVm]) {
    let mut by_loc = BTreeMap::new();
    for v in vms.iter().filter(|v| wants_size(v)) {
        if let Entry::Vacant(e) = by_loc.entry(sku_region(v)) {
            let skus = client
                .list_vm_skus(v.id.subscription(), &v.location)
                .await
                .unwrap_or_default();
            e.insert(skus);
        }
    }
    select::suggest_sizes(vms, &by_loc);
}
