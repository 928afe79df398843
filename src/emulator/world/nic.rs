//! Network interfaces: the GET body, and the reservation a NIC keeps for a
//! deleted VM (a VM PUT naming it is refused with `NicReservedForAnotherVm`
//! until the window ends).

use super::*;

impl World {
    pub(super) fn nic_body(&self, n: &Nic) -> Value {
        let mut props = json!({
            "provisioningState": "Succeeded",
            "ipConfigurations": [{
                "name": "ipconfig1", "id": format!("{}/ipConfigurations/ipconfig1", n.id),
                "properties": {"privateIPAddress": n.ip, "privateIPAllocationMethod": "Dynamic", "primary": true,
                    "subnet": {"id": format!("{}/providers/Microsoft.Network/virtualNetworks/vnet-emu/subnets/default", self.rg_id("rg-network"))}}
            }],
            "primary": true,
            "enableAcceleratedNetworking": false,
        });
        if let Some(vm) = n.vm.as_ref().and_then(|k| self.vms.get(k)) {
            props["virtualMachine"] = json!({"id": vm.id});
        }
        json!({"id": n.id, "name": n.name, "type": "Microsoft.Network/networkInterfaces", "location": n.location, "properties": props})
    }

    /// `GET` NIC.
    pub(crate) fn nic_get(&self, t: &Target) -> Result<Value, ArmError> {
        self.nics
            .get(&t.key())
            .map(|n| self.nic_body(n))
            .ok_or_else(|| not_found("Microsoft.Network/networkInterfaces", &t.name, &t.rg))
    }

    /// Keeps NIC `key` reserved for the deleted VM `vm_id` (the id of the
    /// VM resource, with its vmId) for the reservation window from `at`.
    pub(super) fn reserve_nic(&mut self, key: String, vm_id: String, at: f64) {
        self.nic_reserved
            .insert(key, (vm_id, at + self.nic_reservation_secs));
    }

    /// The `NicReservedForAnotherVm` refusal of NIC `key`, while reserved.
    pub(super) fn nic_reserved_refusal(&self, key: &str) -> Option<ArmError> {
        let (vm, _) = self.nic_reserved.get(key)?;
        Some(ArmError::bad_request(
            "NicReservedForAnotherVm",
            format!(
                "Nic(s) in request is reserved for another Virtual Machine for 180 seconds. Please provide another nic(s) or retry after 180 seconds. Reserved VM: {vm}"
            ),
        ))
    }

    /// Ends the reservations whose window is over by `now`.
    pub(super) fn expire_nic_reservations(&mut self, now: f64) {
        self.nic_reserved.retain(|_, (_, until)| *until > now);
    }
}
