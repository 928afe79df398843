//! Validate before delete ([`super::Step::Validate`]): everything the
//! re-create needs that can be checked while the VM still exists and runs,
//! from fresh reads, so that a refusal parks the VM before any downtime.
//!
//! The checks are pure functions over plain answers; `plan`'s preflight
//! ([`crate::plan::preflight`]) calls the same ones at planning time.
//!
//! What Azure would refuse, and the fact each check stands on:
//! - the size not offered in the region or zone for the subscription
//!   (resource SKU `restrictions`, `NotAvailableForSubscription` of type
//!   `Location` or `Zone`: `SkuNotAvailable` at create; facts §6.2, §7.3);
//! - the size without `EncryptionAtHostSupported = True` (facts §6.2);
//! - a DES that is missing, unreadable, in another region, or of another
//!   encryption type than the disks need (Microsoft docs
//!   `disks-enable-customer-managed-keys-portal.md` / `disk-encryption.md`
//!   restrictions: the DES, the disks and the VM in one region; facts §3.3);
//! - a target disk whose zone does not fit the VM (zonal disk in another zone,
//!   zone on a `*_ZRS` disk; facts §5.3, §11);
//! - too little snapshot quota for the final copy round (Compute usages);
//! - a management lock that refuses the delete or the re-create (any lock on
//!   the VM or above it; `ReadOnly` on a disk or NIC).

use serde_json::Value;

use super::encryption::{DiskEncryption, expected};
use super::observe::{Observation, VmView};
use super::record::VmRecord;
use super::{Decision, Step};
use crate::model::ResourceId;
use crate::model::usage::snapshot_usage_name;
use crate::model::views::{DesModel, LockModel, SkuModel, UsageModel, VmModel};

/// A DES as read.
#[derive(Debug, Clone, PartialEq)]
pub enum DesRead {
    /// The GET body.
    Found(Value),
    /// 404.
    Missing,
    /// The read was refused (e.g. 403): the message.
    Unreadable(String),
}

/// The fresh reads of the validate step.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ValidationReads {
    /// The VM size's resource SKU in the VM's region (`None`: not offered).
    pub sku: Option<Value>,
    /// Every DES the new disks use, as read.
    pub des: Vec<(ResourceId, DesRead)>,
    /// The region's Compute usages (`None`: the API answered 404).
    pub usages: Option<Vec<Value>>,
    /// Every lock at and below the subscription (`None`: 404).
    pub locks: Option<Vec<Value>>,
    /// Reads Azure refused (missing permission): their checks were not
    /// made (`sku` is then meaningless), the messages say which.
    pub unread: Vec<String>,
}

/// The name [`ValidationReads::unread`] gives a refused SKU read.
pub const SKU_UNREAD: &str = "resource SKUs";

/// Why the VM size cannot be used in `location` / `zone`, if it cannot.
pub fn size_problems(
    sku: Option<&Value>,
    size: &str,
    location: &str,
    zone: Option<&str>,
) -> Vec<String> {
    let Some(sku) = sku else {
        return vec![format!(
            "VM size {size} is not offered in {location} (resource SKUs); the re-create would be refused"
        )];
    };
    let sku = SkuModel::new(sku);
    let mut out = Vec::new();
    for (kind, reason, zones) in sku.restrictions() {
        if kind.eq_ignore_ascii_case("Location") {
            out.push(format!(
                "VM size {size} is restricted in {location} ({reason}): the re-create would be refused with SkuNotAvailable"
            ));
        } else if kind.eq_ignore_ascii_case("Zone")
            && let Some(z) = zone
            && zones.iter().any(|x| x.eq_ignore_ascii_case(z))
        {
            out.push(format!(
                "VM size {size} is not available in zone {z} of {location} ({reason}): the re-create would be refused with SkuNotAvailable"
            ));
        }
    }
    if !sku
        .capability("EncryptionAtHostSupported")
        .is_some_and(|v| v.eq_ignore_ascii_case("True"))
    {
        out.push(format!(
            "VM size {size} does not support encryption at host (capability EncryptionAtHostSupported)"
        ));
    }
    out
}

/// Why the DES `id` cannot hold disks of `kind` for a VM in `location`, if
/// it cannot.
pub fn des_problem(id: &ResourceId, read: &DesRead, location: &str, kind: &str) -> Option<String> {
    let name = id.name();
    match read {
        DesRead::Missing => Some(format!("disk encryption set {name} does not exist ({id})")),
        DesRead::Unreadable(e) => Some(format!(
            "disk encryption set {name} cannot be read by this tool ({e}); grant it Reader on {id} (Microsoft.Compute/diskEncryptionSets/read)"
        )),
        DesRead::Found(v) => {
            let des = DesModel::new(v);
            if let Some(l) = des.location()
                && !same_region(l, location)
            {
                return Some(format!(
                    "disk encryption set {name} is in {l} but the VM is in {location}: Azure needs the DES in the disks' region"
                ));
            }
            if let Some(t) = des.encryption_type()
                && !t.eq_ignore_ascii_case(kind)
            {
                return Some(format!(
                    "disk encryption set {name} has encryptionType {t} but the new disks need {kind}"
                ));
            }
            match des.provisioning_state() {
                Some(p) if !p.eq_ignore_ascii_case("Succeeded") => {
                    Some(format!("disk encryption set {name} is {p}, not Succeeded"))
                }
                _ => None,
            }
        }
    }
}

/// Region names compare without case and spaces (`West Europe` = `westeurope`).
pub fn same_region(a: &str, b: &str) -> bool {
    let n = |s: &str| s.replace(' ', "").to_ascii_lowercase();
    n(a) == n(b)
}

/// `(limit, currentValue)` of usage `name` in a usages listing.
pub fn usage_of(usages: &[Value], name: &str) -> Option<(u64, u64)> {
    usages
        .iter()
        .map(UsageModel::new)
        .find(|x| x.name().is_some_and(|n| n.eq_ignore_ascii_case(name)))
        .and_then(|x| Some((x.limit()?, x.current_value()?)))
}

/// Why a target disk cannot be attached to a VM in `vm_zone`, if it cannot.
pub fn zone_problem(
    name: &str,
    sku: Option<&str>,
    zones: &[String],
    vm_zone: Option<&str>,
) -> Option<String> {
    let zrs = sku.is_some_and(|s| s.to_ascii_uppercase().ends_with("_ZRS"));
    match (zones.first(), vm_zone) {
        (Some(z), _) if zrs => Some(format!(
            "target disk {name} is zone-redundant ({}) but has zone {z}: Azure refuses a ZRS disk in a zone",
            sku.unwrap_or_default()
        )),
        (Some(z), Some(v)) if z != v => Some(format!(
            "target disk {name} is in zone {z} but the VM is in zone {v}"
        )),
        (Some(z), None) => Some(format!(
            "target disk {name} is in zone {z} but the VM is regional"
        )),
        _ => None,
    }
}

/// A management lock, parsed (shared with `plan`'s lock preflight).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lock {
    /// Lock id.
    pub id: String,
    /// Lock name.
    pub name: String,
    /// The scope it sits on (the id before `/providers/Microsoft.Authorization/locks/`).
    pub scope: String,
    /// `CanNotDelete` / `ReadOnly`.
    pub level: String,
}

fn norm(s: &str) -> String {
    s.trim().trim_end_matches('/').to_ascii_lowercase()
}

impl Lock {
    /// Parses a lock listing entry (`None` without an id at a lock path).
    pub fn parse(v: &Value) -> Option<Lock> {
        let lock = LockModel::new(v);
        let id = lock.id()?.to_string();
        let at = id
            .to_ascii_lowercase()
            .find("/providers/microsoft.authorization/locks/")?;
        Some(Lock {
            scope: id[..at].to_string(),
            name: lock
                .name()
                .map(str::to_string)
                .unwrap_or_else(|| id.rsplit('/').next().unwrap_or_default().to_string()),
            level: lock.level().unwrap_or("NotSpecified").to_string(),
            id,
        })
    }

    /// True for `ReadOnly`.
    pub fn read_only(&self) -> bool {
        self.level.eq_ignore_ascii_case("ReadOnly")
    }

    /// True when the lock's scope is `id` or one of its ancestors.
    pub fn covers(&self, id: &str) -> bool {
        let (s, i) = (norm(&self.scope), norm(id));
        i == s || i.starts_with(&format!("{s}/"))
    }

    /// What the operator does about it.
    pub fn remedy(&self) -> String {
        format!(
            "remove lock {} on {} for the migration window, re-add it after (`az lock delete --ids {}`; re-create it with `az lock create --name {} --lock-type {} --scope {}` once the VM is verified)",
            self.name, self.scope, self.id, self.name, self.level, self.scope
        )
    }
}

/// The locks that refuse the delete and re-create of `vm`: any lock on the
/// VM or above it, `ReadOnly` on one of `linked` (disks, NICs).
pub fn lock_problems(locks: &[Value], vm: &str, linked: &[String]) -> Vec<String> {
    locks
        .iter()
        .filter_map(Lock::parse)
        .filter_map(|l| {
            if l.covers(vm) {
                Some(format!(
                    "the VM is locked: {} lock '{}' on {} refuses deleting and re-creating it; {}",
                    l.level,
                    l.name,
                    l.scope,
                    l.remedy()
                ))
            } else if l.read_only() && linked.iter().any(|d| l.covers(d)) {
                Some(format!(
                    "a disk or NIC of the VM is locked: ReadOnly lock '{}' on {} refuses the writes the re-create makes to it; {}",
                    l.name,
                    l.scope,
                    l.remedy()
                ))
            } else {
                None
            }
        })
        .collect()
}

/// The new disks' encryption, checked against what the VM's choice
/// expects: (source name, expected, observed target) for each mismatch.
fn encryption_mismatches<'a>(
    rec: &'a VmRecord,
    obs: &'a Observation,
) -> impl Iterator<Item = String> + 'a {
    let choice = super::encryption::choice_of(rec);
    rec.disks.iter().filter_map(move |d| {
        let want = expected(&choice, &d.source_model);
        let Some(Some(t)) = obs.disk(&d.target) else {
            return None;
        };
        (!want.matches(&t.encryption)).then(|| {
            format!(
                "target disk {} has {} but must have {} (delete that disk, created by this run; it is created again for the final copy)",
                d.target.name(),
                t.encryption.describe(),
                want.describe()
            )
        })
    })
}

/// Every reason Azure would refuse the re-create of `rec`'s VM.
pub fn problems(rec: &VmRecord, obs: &Observation, reads: &ValidationReads) -> Vec<String> {
    let Some(facts) = rec.facts.as_ref() else {
        return vec!["the VM has no discovery facts".into()];
    };
    let mut out = if reads.unread.iter().any(|u| u.starts_with(SKU_UNREAD)) {
        Vec::new()
    } else {
        size_problems(
            reads.sku.as_ref(),
            &facts.size,
            &facts.location,
            facts.zone.as_deref(),
        )
    };
    for (id, read) in &reads.des {
        let kind = rec
            .disks
            .iter()
            .map(|d| expected(&facts.target_encryption, &d.source_model))
            .find(|e| e.des.as_ref().is_some_and(|x| x.key() == id.key()))
            .map_or_else(|| DiskEncryption::platform().kind, |e| e.kind);
        out.extend(des_problem(id, read, &facts.location, &kind));
    }
    for d in &rec.disks {
        if let Some(Some(t)) = obs.disk(&d.target) {
            out.extend(zone_problem(
                d.target.name(),
                t.sku.as_deref(),
                &t.zones,
                facts.zone.as_deref(),
            ));
        }
    }
    out.extend(encryption_mismatches(rec, obs));
    if let Some(usages) = &reads.usages {
        let need = rec.disks.iter().filter(|d| !d.copied).count() as u64;
        let name = snapshot_usage_name("Standard_LRS");
        if let Some((limit, cur)) = usage_of(usages, name)
            && need > limit.saturating_sub(cur)
        {
            out.push(format!(
                "the final copy needs {need} more {name} in {} but only {} are left ({cur} of {limit} in use); request a quota increase (portal: Quotas)",
                facts.location,
                limit.saturating_sub(cur)
            ));
        }
    }
    if let Some(locks) = &reads.locks {
        let model = rec.original_model.clone().unwrap_or(Value::Null);
        let vm = VmModel::new(&model);
        let mut linked: Vec<String> = vm
            .attached_disk_ids()
            .into_iter()
            .map(str::to_string)
            .collect();
        linked.extend(rec.disks.iter().map(|d| d.target.as_str().to_string()));
        linked.extend(
            vm.properties()
                .network_interfaces()
                .filter_map(|n| n.id())
                .map(str::to_string),
        );
        out.extend(lock_problems(locks, rec.id.as_str(), &linked));
    }
    out
}

/// The decision at [`Step::Validate`]: advance when nothing would refuse
/// the re-create, else park while the VM still exists.
pub fn decide(rec: &VmRecord, obs: &Observation, vm: &VmView) -> Decision {
    debug_assert_eq!(rec.step, Step::Validate);
    let Some(reads) = &obs.validation else {
        return Decision::Wait {
            reason: "validation reads not made".into(),
        };
    };
    for d in &rec.disks {
        if obs.disk(&d.target).is_none() {
            return Decision::Wait {
                reason: format!("disk {} not observed", d.target.name()),
            };
        }
    }
    let state = vm.power.as_deref().unwrap_or("unknown");
    refusal(
        problems(rec, obs, reads),
        &format!("nothing was deleted and the VM is still {state}"),
    )
    .unwrap_or(Decision::Advance)
}

/// The same checks before the run's first change ([`Step::Snapshot`] while
/// the run has created nothing): a refusal known now parks the VM before
/// ADE is even disabled. `None`: nothing found (or not read).
pub fn before_first_change(rec: &VmRecord, obs: &Observation) -> Option<Decision> {
    let reads = obs.validation.as_ref()?;
    refusal(problems(rec, obs, reads), "nothing was changed on the VM")
}

/// The park for `problems` (`None` when there are none).
fn refusal(problems: Vec<String>, state: &str) -> Option<Decision> {
    if problems.is_empty() {
        return None;
    }
    Some(Decision::park(
        format!(
            "validate before delete: the re-create would be refused: {}",
            problems.join("; ")
        ),
        format!(
            "{state}; fix the causes listed, then run `ade2eah resume` (validation runs again before the VM is deallocated)"
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn size_restricted_in_the_zone_or_without_eah_is_a_problem() {
        let sku = json!({"name": "Standard_D4s_v5",
            "capabilities": [{"name": "EncryptionAtHostSupported", "value": "True"}],
            "restrictions": [{"type": "Zone", "reasonCode": "NotAvailableForSubscription",
                              "restrictionInfo": {"locations": ["westeurope"], "zones": ["3"]}}]});
        assert!(size_problems(Some(&sku), "Standard_D4s_v5", "westeurope", Some("1")).is_empty());
        let p = size_problems(Some(&sku), "Standard_D4s_v5", "westeurope", Some("3"));
        assert_eq!(p.len(), 1);
        assert!(p[0].contains("zone 3"), "{p:?}");
        assert_eq!(size_problems(None, "X", "westeurope", None).len(), 1);
        let no_eah = json!({"name": "A", "capabilities": [{"name": "EncryptionAtHostSupported", "value": "False"}]});
        assert!(
            size_problems(Some(&no_eah), "A", "westeurope", None)[0].contains("encryption at host")
        );
    }

    #[test]
    fn des_in_another_region_missing_or_unreadable_is_a_problem() {
        let id = ResourceId::parse(
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/diskEncryptionSets/d",
        )
        .unwrap();
        let k = super::super::encryption::CUSTOMER_KEY;
        let ok = json!({"location": "West Europe", "properties": {"encryptionType": k, "provisioningState": "Succeeded"}});
        assert_eq!(des_problem(&id, &DesRead::Found(ok), "westeurope", k), None);
        let far = json!({"location": "northeurope", "properties": {}});
        assert!(
            des_problem(&id, &DesRead::Found(far), "westeurope", k)
                .unwrap()
                .contains("northeurope")
        );
        assert!(des_problem(&id, &DesRead::Missing, "westeurope", k).is_some());
        assert!(
            des_problem(&id, &DesRead::Unreadable("403".into()), "westeurope", k)
                .unwrap()
                .contains("Reader")
        );
        let double = json!({"location": "westeurope", "properties": {"encryptionType": "EncryptionAtRestWithPlatformAndCustomerKeys"}});
        assert!(des_problem(&id, &DesRead::Found(double), "westeurope", k).is_some());
    }

    #[test]
    fn zones_and_locks() {
        assert!(zone_problem("t", Some("Premium_ZRS"), &["1".into()], Some("1")).is_some());
        assert!(zone_problem("t", Some("Premium_ZRS"), &[], Some("1")).is_none());
        assert!(zone_problem("t", Some("Premium_LRS"), &["2".into()], Some("1")).is_some());
        assert!(zone_problem("t", Some("Premium_LRS"), &["1".into()], Some("1")).is_none());
        let rg = "/subscriptions/s/resourceGroups/rg";
        let locks = vec![
            json!({"id": format!("{rg}/providers/Microsoft.Authorization/locks/nodel"), "name": "nodel", "properties": {"level": "CanNotDelete"}}),
        ];
        let vm = format!("{rg}/providers/Microsoft.Compute/virtualMachines/v");
        assert_eq!(lock_problems(&locks, &vm, &[]).len(), 1);
        assert!(lock_problems(&locks, "/subscriptions/s/resourceGroups/other/x", &[]).is_empty());
    }
}
