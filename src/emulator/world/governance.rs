//! The world's side of governance (`crate::emulator::governance`): which
//! resources a write touches, for management locks, and the managed disks
//! and snapshots counted against Compute usages.

use super::*;

impl World {
    /// The `ScopeLocked` refusal of `op` on `target` (a VM, extension, disk
    /// or snapshot id), if a management lock forbids it. For VM writes
    /// (`vm_model`: the request body of a PUT/PATCH, or `None`), the disks and
    /// NICs of the current model and of the body count as written too (a
    /// create/update/delete attaches or detaches them); with `delete`, those
    /// whose deleteOption is `Delete` count as deleted.
    pub(crate) fn lock_check(
        &self,
        target: &str,
        op: crate::emulator::governance::LockOp,
        vm_body: Option<&Value>,
        vm_linked: bool,
    ) -> Option<ArmError> {
        let mut linked: Vec<(String, bool)> = Vec::new();
        if vm_linked {
            let deleting = op == crate::emulator::governance::LockOp::Delete;
            let current = self.vms.get(&key_of(target)).map(|v| &v.model);
            for m in current.into_iter().chain(vm_body) {
                let os = m.pointer("/properties/storageProfile/osDisk");
                let data = m
                    .pointer("/properties/storageProfile/dataDisks")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten();
                for d in os.into_iter().chain(data) {
                    if let Some(id) = d.pointer("/managedDisk/id").and_then(Value::as_str) {
                        let del = d
                            .get("deleteOption")
                            .and_then(Value::as_str)
                            .is_some_and(|x| x.eq_ignore_ascii_case("Delete"));
                        linked.push((id.to_string(), deleting && del));
                    }
                }
                for n in m
                    .pointer("/properties/networkProfile/networkInterfaces")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if let Some(id) = n.get("id").and_then(Value::as_str) {
                        let del = n
                            .pointer("/properties/deleteOption")
                            .and_then(Value::as_str)
                            .is_some_and(|x| x.eq_ignore_ascii_case("Delete"));
                        linked.push((id.to_string(), deleting && del));
                    }
                }
            }
        }
        self.gov.check(target, op, &linked)
    }

    /// Managed disks and snapshots in use per Compute usage name.
    pub(crate) fn usage_counts(&self, location: &str) -> BTreeMap<String, u64> {
        let mut out: BTreeMap<String, u64> = BTreeMap::new();
        let here = |d: &&Disk| d.location.eq_ignore_ascii_case(location);
        for d in self.disks.values().filter(here) {
            if let Some(n) = crate::model::usage::disk_usage_name(&d.sku) {
                *out.entry(n.to_string()).or_default() += 1;
            }
        }
        for d in self.snapshots.values().filter(here) {
            let n = crate::model::usage::snapshot_usage_name(&d.sku);
            *out.entry(n.to_string()).or_default() += 1;
        }
        out
    }
}
