//! `--nic-swap` (opt-in): take the VM's own NICs off it before it is
//! deleted, so the re-create may find them free instead of reserved for
//! 180 s (`NicReservedForAnotherVm`). Pure decisions, no I/O.
//!
//! Azure keeps a NIC reserved for 180 s after the VM it was attached to is
//! deleted (facts §5.1, §11). Whether a NIC detached from a *deallocated*
//! VM before the delete escapes that reservation is documented nowhere
//! (facts §11: UNCONFIRMED); this module builds the attempt and relies on
//! the ordinary wait when Azure reserves the NICs anyway (the re-create's
//! `NicReservedForAnotherVm` is a [`crate::cloud::Retry::Held`] answer).
//!
//! Contract, per VM with `VmFacts::nic_swap`:
//! - [`Step::CreateTargets`](super::Step::CreateTargets) (the VM still
//!   runs): a placeholder NIC ([`placeholder_id`], tagged with the run) is
//!   created in the subnet of the VM's primary NIC.
//! - [`Step::DeleteVm`](super::Step::DeleteVm) (the VM deallocated): one
//!   PATCH puts the placeholder in place of every NIC of the VM, with
//!   `deleteOption: Detach` ([`swap_patch`]); the delete follows. A
//!   placeholder that is missing or not ours is no reason to stop: the VM
//!   is deleted with its own NICs and the re-create waits out the hold.
//! - The re-create names the original NICs (from the journaled model), as
//!   without the swap.
//! - [`Step::Verify`](super::Step::Verify) (the new VM runs, downtime is
//!   over): the placeholder, once attached to nothing, is deleted; the
//!   ordinary step retries cover a refused or failed delete.
//! - A rollback PATCHes the original NIC list back
//!   ([`super::body::restore_delete_options_patch`]) and then deletes the
//!   placeholder.

use serde_json::{Value, json};

use super::observe::{Observation, RUN_TAG, VmView};
use super::record::VmRecord;
use super::{Action, Decision};
use crate::model::ResourceId;
use crate::model::views::VmModel;

/// Tag naming the VM a placeholder NIC stands in for.
pub const PLACEHOLDER_TAG: &str = "ade2eah-placeholder-for";

/// Longest NIC name Azure accepts (Microsoft.Network naming rules: 1-80).
const NIC_NAME_MAX: usize = 80;

/// A placeholder NIC as a GET shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NicView {
    /// `ade2eah-run` tag.
    pub run_tag: Option<String>,
    /// `properties.virtualMachine.id`, when attached.
    pub vm: Option<String>,
    /// `provisioningState`.
    pub provisioning_state: String,
}

impl NicView {
    /// Builds a view from a NIC GET body.
    pub fn from_raw(v: &Value) -> NicView {
        let props = v.get("properties").cloned().unwrap_or(Value::Null);
        NicView {
            run_tag: v
                .pointer(&format!("/tags/{RUN_TAG}"))
                .and_then(Value::as_str)
                .map(str::to_string),
            vm: props
                .pointer("/virtualMachine/id")
                .and_then(Value::as_str)
                .map(str::to_string),
            provisioning_state: props
                .get("provisioningState")
                .and_then(Value::as_str)
                .unwrap_or("Succeeded")
                .to_string(),
        }
    }
}

/// True when `rec` asked for the swap.
pub fn enabled(rec: &VmRecord) -> bool {
    rec.facts.as_ref().is_some_and(|f| f.nic_swap)
}

/// True when Azure refused the placeholder or the swap for good
/// ([`give_up`]): the migration goes on without the swap.
pub fn refused(rec: &VmRecord) -> bool {
    rec.facts.as_ref().is_some_and(|f| f.nic_swap_refused)
}

/// Records that Azure refused the placeholder or the swap (a terminal
/// answer, `reason`): the swap is an optimisation, so the VM is neither
/// parked nor kept down for it; the detail journaled with the result.
pub fn give_up(rec: &mut VmRecord, reason: &str) -> Value {
    if let Some(f) = rec.facts.as_mut() {
        f.nic_swap_refused = true;
    }
    json!({
        "nic_swap": "refused",
        "reason": reason,
        "then": "the VM is deleted with its own NICs; the re-create waits out the NIC hold",
    })
}

/// The VM's NICs in the journaled original model, primary first.
pub fn original_nics(rec: &VmRecord) -> Vec<ResourceId> {
    let Some(model) = rec.original_model.as_ref() else {
        return Vec::new();
    };
    let vm = VmModel::new(model);
    let mut nics: Vec<(bool, ResourceId)> = vm
        .properties()
        .network_interfaces()
        .filter_map(|n| {
            let id = n.id_value().as_str()?.parse::<ResourceId>().ok()?;
            let primary = n
                .properties()
                .and_then(|p| p.get("primary"))
                .and_then(Value::as_bool)
                .unwrap_or(false);
            Some((primary, id))
        })
        .collect();
    nics.sort_by_key(|(p, _)| !*p);
    nics.into_iter().map(|(_, id)| id).collect()
}

/// The placeholder NIC of `rec` (in the primary NIC's resource group, named
/// after the VM), when the swap was asked for and the VM has a NIC.
pub fn placeholder_id(rec: &VmRecord) -> Option<ResourceId> {
    if !enabled(rec) {
        return None;
    }
    let primary = original_nics(rec).into_iter().next()?;
    let vm = rec.id.name();
    let suffix = "-ade2eah-swap";
    let mut cut = vm.len().min(NIC_NAME_MAX - suffix.len());
    while !vm.is_char_boundary(cut) {
        cut -= 1;
    }
    let name = format!("{}{suffix}", &vm[..cut]);
    Some(primary.sibling("Microsoft.Network", "networkInterfaces", &name))
}

/// The placeholder's create body: the location of the VM, the subnet of its
/// primary NIC (`primary_nic`: that NIC's GET body), dynamic private IP, the
/// run's tags. `None` when the primary NIC names no subnet.
pub fn placeholder_body(rec: &VmRecord, primary_nic: &Value, run_id: &str) -> Option<Value> {
    let subnet = primary_nic
        .pointer("/properties/ipConfigurations")
        .and_then(Value::as_array)?
        .iter()
        .find_map(|c| c.pointer("/properties/subnet/id").and_then(Value::as_str))?;
    let location = primary_nic
        .get("location")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| rec.facts.as_ref().map(|f| f.location.clone()))?;
    Some(json!({
        "location": location,
        "tags": { RUN_TAG: run_id, PLACEHOLDER_TAG: rec.id.as_str() },
        "properties": {
            "ipConfigurations": [{
                "name": "ipconfig1",
                "properties": {
                    "subnet": { "id": subnet },
                    "privateIPAllocationMethod": "Dynamic",
                    "primary": true
                }
            }]
        }
    }))
}

/// The one VM PATCH of the swap: the placeholder as the only (primary) NIC,
/// `deleteOption: Detach` (the VM's other NICs leave the VM with it).
pub fn swap_patch(placeholder: &ResourceId) -> Value {
    json!({
        "properties": {
            "networkProfile": {
                "networkInterfaces": [{
                    "id": placeholder.as_str(),
                    "properties": { "primary": true, "deleteOption": "Detach" }
                }]
            }
        }
    })
}

/// The NIC ids of a VM view (case-folded), from its delete options.
fn vm_nics(vm: &VmView) -> Vec<&str> {
    vm.delete_options
        .keys()
        .filter_map(|k| k.strip_prefix("nic:"))
        .collect()
}

/// At `CreateTargets`: the placeholder to create or wait for, or `None`
/// when there is nothing to do (no swap, or the placeholder is ready).
pub fn before_downtime(rec: &VmRecord, obs: &Observation, run_id: &str) -> Option<Decision> {
    if refused(rec) {
        return None;
    }
    let id = placeholder_id(rec)?;
    match &obs.placeholder_nic {
        None => Some(Decision::Wait {
            reason: format!("NIC {} not observed", id.name()),
        }),
        Some(None) => Some(Decision::Act(Action::CreatePlaceholderNic { nic: id })),
        // Not ours: the swap is skipped at the delete (ordinary NIC hold).
        Some(Some(n)) if n.run_tag.as_deref() != Some(run_id) => None,
        Some(Some(n)) if !n.provisioning_state.eq_ignore_ascii_case("Succeeded") => {
            Some(Decision::Wait {
                reason: format!("NIC {} is {}", id.name(), n.provisioning_state),
            })
        }
        Some(Some(_)) => None,
    }
}

/// At `DeleteVm`, on the deallocated original VM whose disks and NICs are
/// all `Detach`: the swap PATCH when the placeholder is ours, ready, free
/// and the VM still has other NICs; `None` otherwise (delete as usual).
pub fn before_delete(
    rec: &VmRecord,
    obs: &Observation,
    vm: &VmView,
    run_id: &str,
) -> Option<Decision> {
    if refused(rec) {
        return None;
    }
    let id = placeholder_id(rec)?;
    let Some(Some(n)) = &obs.placeholder_nic else {
        return None;
    };
    let ours = n.run_tag.as_deref() == Some(run_id)
        && n.provisioning_state.eq_ignore_ascii_case("Succeeded");
    let on_vm = vm_nics(vm);
    let only_placeholder = on_vm.len() == 1 && on_vm[0] == id.key();
    let free = n.vm.is_none();
    (ours && free && !only_placeholder).then_some(Decision::Act(Action::SwapNics { nic: id }))
}

/// At `Verify` (the new VM runs) and at a rollback's `RestorePower` (the
/// original NICs are back): delete the placeholder once it is ours and
/// attached to nothing; `None` when there is none to delete.
pub fn remove_placeholder(rec: &VmRecord, obs: &Observation, run_id: &str) -> Option<Decision> {
    let id = placeholder_id(rec)?;
    match &obs.placeholder_nic {
        Some(Some(n)) if n.run_tag.as_deref() == Some(run_id) && n.vm.is_none() => {
            Some(Decision::Act(Action::DeletePlaceholderNic { nic: id }))
        }
        _ => None,
    }
}

/// True when the placeholder should be read at this step.
pub fn needs_read(rec: &VmRecord) -> bool {
    use super::Step;
    placeholder_id(rec).is_some()
        && matches!(
            rec.step,
            Step::CreateTargets | Step::DeleteVm | Step::Verify
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::step::observe::VmView;
    use crate::step::{Action, Step};

    const RUN: &str = "run-1";
    const SUB: &str = "/subscriptions/s/resourceGroups";

    fn nic(rg: &str, name: &str) -> String {
        format!("{SUB}/{rg}/providers/Microsoft.Network/networkInterfaces/{name}")
    }

    fn original() -> Value {
        json!({"properties": {"vmId": "orig", "networkProfile": {"networkInterfaces": [
            {"id": nic("rg-net", "second"), "properties": {"primary": false, "deleteOption": "Delete"}},
            {"id": nic("rg-net", "first"), "properties": {"primary": true}}
        ]}}})
    }

    fn rec(vm_name: &str, swap: bool) -> VmRecord {
        let id: ResourceId =
            format!("{SUB}/rg-vm/providers/Microsoft.Compute/virtualMachines/{vm_name}")
                .parse()
                .unwrap();
        let mut r = VmRecord::new(id);
        r.original_model = Some(original());
        r.facts = Some(
            serde_json::from_value(json!({"os": "Windows", "location": "westeurope",
                "zone": null, "size": "Standard_D2s_v5", "ade_extension": null,
                "dual_pass": false, "volume_type": "All", "nic_swap": swap}))
            .unwrap(),
        );
        r
    }

    fn seen(run_tag: Option<&str>, vm: Option<&str>, state: &str) -> Observation {
        Observation {
            placeholder_nic: Some(Some(NicView {
                run_tag: run_tag.map(str::to_string),
                vm: vm.map(str::to_string),
                provisioning_state: state.into(),
            })),
            ..Observation::default()
        }
    }

    fn vm_with(nics: &[String]) -> VmView {
        let list: Vec<Value> = nics
            .iter()
            .map(|n| json!({"id": n, "properties": {"deleteOption": "Detach"}}))
            .collect();
        VmView::from_raw(
            &json!({"properties": {"provisioningState": "Succeeded",
                "networkProfile": {"networkInterfaces": list}}}),
            None,
        )
    }

    #[test]
    fn the_placeholder_sits_by_the_primary_nic_named_after_the_vm_within_80_chars() {
        let r = rec("app01", true);
        let p = placeholder_id(&r).unwrap();
        assert_eq!(p.resource_group(), "rg-net");
        assert_eq!(p.name(), "app01-ade2eah-swap");
        assert!(p.is_type("Microsoft.Network", "networkInterfaces"));
        let long = rec(&"v".repeat(75), true);
        assert_eq!(placeholder_id(&long).unwrap().name().len(), 80);
        assert!(
            placeholder_id(&long)
                .unwrap()
                .name()
                .ends_with("-ade2eah-swap")
        );
        assert_eq!(placeholder_id(&rec("app01", false)), None, "off by default");
        assert_eq!(
            original_nics(&r)[0].name(),
            "first",
            "the primary NIC comes first"
        );
    }

    #[test]
    fn before_the_downtime_the_placeholder_is_created_then_waited_for() {
        let mut r = rec("app01", true);
        r.step = Step::CreateTargets;
        assert!(needs_read(&r));
        let missing = Observation {
            placeholder_nic: Some(None),
            ..Observation::default()
        };
        assert!(matches!(
            before_downtime(&r, &missing, RUN),
            Some(Decision::Act(Action::CreatePlaceholderNic { .. }))
        ));
        assert!(matches!(
            before_downtime(&r, &seen(Some(RUN), None, "Updating"), RUN),
            Some(Decision::Wait { .. })
        ));
        assert_eq!(
            before_downtime(&r, &seen(Some(RUN), None, "Succeeded"), RUN),
            None
        );
        assert_eq!(
            before_downtime(&r, &seen(Some("other"), None, "Succeeded"), RUN),
            None,
            "someone else's NIC is not used (nor waited for)"
        );
        assert_eq!(before_downtime(&rec("app01", false), &missing, RUN), None);
    }

    #[test]
    fn the_swap_happens_once_and_only_with_our_free_placeholder() {
        let r = rec("app01", true);
        let p = placeholder_id(&r).unwrap();
        let own = vm_with(&[nic("rg-net", "first"), nic("rg-net", "second")]);
        assert_eq!(
            before_delete(&r, &seen(Some(RUN), None, "Succeeded"), &own, RUN),
            Some(Decision::Act(Action::SwapNics { nic: p.clone() }))
        );
        // Swapped: the placeholder is the VM's only NIC, attached to it.
        let swapped = vm_with(&[p.as_str().to_string()]);
        let attached = seen(Some(RUN), Some("the-vm"), "Succeeded");
        assert_eq!(before_delete(&r, &attached, &swapped, RUN), None);
        // No placeholder, or not ours: delete as usual.
        let gone = Observation {
            placeholder_nic: Some(None),
            ..Observation::default()
        };
        assert_eq!(before_delete(&r, &gone, &own, RUN), None);
        assert_eq!(
            before_delete(&r, &seen(Some("x"), None, "Succeeded"), &own, RUN),
            None
        );
        assert_eq!(
            before_delete(&r, &seen(Some(RUN), None, "Failed"), &own, RUN),
            None
        );
    }

    #[test]
    fn after_a_refusal_there_is_no_swap_but_the_placeholder_still_goes() {
        let mut r = rec("app01", true);
        let detail = give_up(&mut r, "RequestDisallowedByPolicy: denied");
        assert!(refused(&r));
        assert_eq!(detail["nic_swap"], "refused");
        let missing = Observation {
            placeholder_nic: Some(None),
            ..Observation::default()
        };
        assert_eq!(
            before_downtime(&r, &missing, RUN),
            None,
            "not asked for again"
        );
        let own = vm_with(&[nic("rg-net", "first")]);
        assert_eq!(
            before_delete(&r, &seen(Some(RUN), None, "Succeeded"), &own, RUN),
            None,
            "deleted with its own NICs"
        );
        assert!(matches!(
            remove_placeholder(&r, &seen(Some(RUN), None, "Succeeded"), RUN),
            Some(Decision::Act(Action::DeletePlaceholderNic { .. }))
        ));
    }

    #[test]
    fn only_our_detached_placeholder_is_deleted() {
        let r = rec("app01", true);
        let p = placeholder_id(&r).unwrap();
        assert_eq!(
            remove_placeholder(&r, &seen(Some(RUN), None, "Succeeded"), RUN),
            Some(Decision::Act(Action::DeletePlaceholderNic { nic: p }))
        );
        assert_eq!(
            remove_placeholder(&r, &seen(Some(RUN), Some("vm"), "Succeeded"), RUN),
            None
        );
        assert_eq!(
            remove_placeholder(&r, &seen(Some("x"), None, "Succeeded"), RUN),
            None
        );
        let gone = Observation {
            placeholder_nic: Some(None),
            ..Observation::default()
        };
        assert_eq!(remove_placeholder(&r, &gone, RUN), None);
    }

    #[test]
    fn bodies_name_the_subnet_the_placeholder_alone_and_rollback_the_originals() {
        let r = rec("app01", true);
        let primary = json!({"location": "westeurope", "properties": {"ipConfigurations": [
            {"properties": {"subnet": {"id": "/subscriptions/s/resourceGroups/rg-net/providers/Microsoft.Network/virtualNetworks/v/subnets/a"}}}
        ]}});
        let b = placeholder_body(&r, &primary, RUN).unwrap();
        assert_eq!(
            b.pointer("/properties/ipConfigurations/0/properties/subnet/id"),
            primary.pointer("/properties/ipConfigurations/0/properties/subnet/id")
        );
        assert_eq!(b["tags"][RUN_TAG], RUN);
        assert!(placeholder_body(&r, &json!({"properties": {}}), RUN).is_none());
        let p = placeholder_id(&r).unwrap();
        let patch = swap_patch(&p);
        let list = patch["properties"]["networkProfile"]["networkInterfaces"]
            .as_array()
            .unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0]["properties"]["deleteOption"], "Detach");
        // A rollback after the swap names the original NICs with their options.
        let current = json!({"properties": {"networkProfile": {"networkInterfaces": [
            {"id": p.as_str(), "properties": {"primary": true, "deleteOption": "Detach"}}
        ]}}});
        let back = super::super::body::restore_delete_options_patch(&current, &original());
        let nics = back["properties"]["networkProfile"]["networkInterfaces"]
            .as_array()
            .unwrap();
        let ids: Vec<&str> = nics.iter().filter_map(|n| n["id"].as_str()).collect();
        assert_eq!(ids, [nic("rg-net", "second"), nic("rg-net", "first")]);
        assert_eq!(nics[0]["properties"]["deleteOption"], "Delete");
        assert_eq!(nics[1]["properties"]["deleteOption"], "Detach");
    }
}
