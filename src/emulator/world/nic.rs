//! Network interfaces: GET, PUT and DELETE, and the reservation a NIC keeps
//! for a deleted VM (a VM PUT naming it is refused with
//! `NicReservedForAnotherVm` until the window ends; facts §5.1, §11).

use super::*;

impl World {
    pub(super) fn nic_body(&self, n: &Nic) -> Value {
        let mut props = json!({
            "provisioningState": n.provisioning,
            "ipConfigurations": [{
                "name": "ipconfig1", "id": format!("{}/ipConfigurations/ipconfig1", n.id),
                "properties": {"privateIPAddress": n.ip, "privateIPAllocationMethod": "Dynamic", "primary": true,
                    "subnet": {"id": n.subnet}}
            }],
            "primary": true,
            "enableAcceleratedNetworking": false,
        });
        if let Some(vm) = n.vm.as_ref().and_then(|k| self.vms.get(k)) {
            props["virtualMachine"] = json!({"id": vm.id});
        }
        let mut body = json!({"id": n.id, "name": n.name, "type": "Microsoft.Network/networkInterfaces", "location": n.location, "properties": props});
        if !n.tags.is_null() {
            body["tags"] = n.tags.clone();
        }
        body
    }

    /// `PUT` NIC (create or update): `location` and a subnet in the first
    /// IP configuration are required; the answer is 201 (new) or 200 with
    /// an `Azure-AsyncOperation` on the Network operations URL (REST docs,
    /// "Network Interfaces - Create Or Update": 200, 201, long-running).
    /// An update keeps the NIC's VM.
    pub(crate) fn nic_put(
        &mut self,
        t: &Target,
        body: &Value,
        inject: bool,
        now: f64,
    ) -> Result<Reply, ArmError> {
        let location = body
            .get("location")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                ArmError::bad_request(
                    "LocationRequired",
                    "The location property is required for this definition.",
                )
            })?
            .to_string();
        let subnet = body
            .pointer("/properties/ipConfigurations/0/properties/subnet/id")
            .and_then(Value::as_str)
            .filter(|s| {
                let l = s.to_ascii_lowercase();
                l.contains("/providers/microsoft.network/virtualnetworks/")
                    && l.contains("/subnets/")
            })
            .ok_or_else(|| {
                ArmError::bad_request(
                    "InvalidRequestFormat",
                    "Cannot parse the request: a network interface needs an IP configuration with a subnet.",
                )
            })?
            .to_string();
        let key = t.key();
        let new = !self.nics.contains_key(&key);
        let n = self.nics.len();
        let nic = self.nics.entry(key.clone()).or_insert_with(|| Nic {
            id: t.id.clone(),
            name: t.name.clone(),
            location: location.clone(),
            vm: None,
            ip: format!("10.0.{}.{}", n / 250, 4 + n % 250),
            subnet: subnet.clone(),
            tags: Value::Null,
            provisioning: "Updating".into(),
        });
        nic.subnet = subnet;
        nic.tags = body.get("tags").cloned().unwrap_or(Value::Null);
        nic.provisioning = "Updating".into();
        let dur = self.draw(SimRange::new(1.0, 4.0));
        let mut lro = self.new_op(
            now,
            OpFamily::Network,
            dur,
            Effect::NicPut {
                key: key.clone(),
                new,
            },
            inject,
            Final::Resource(ResourceKind::Nic, key.clone()),
        );
        lro.location = false;
        let shown = self.nic_body(&self.nics[&key]);
        Ok(Reply {
            status: if new { 201 } else { 200 },
            body: Some(shown),
            lro: Some(lro),
        })
    }

    /// `NicPut` done.
    pub(super) fn apply_nic_put(&mut self, key: &str) -> Result<Option<Value>, ArmError> {
        if let Some(n) = self.nics.get_mut(key) {
            n.provisioning = "Succeeded".into();
        }
        Ok(None)
    }

    /// `NicPut` failed: a new NIC goes, an updated one is `Failed`.
    pub(super) fn undo_nic_put(&mut self, key: &str, new: bool) {
        if new {
            self.nics.remove(key);
        } else if let Some(n) = self.nics.get_mut(key) {
            n.provisioning = "Failed".into();
        }
    }

    /// `DELETE` NIC: refused while a VM uses it (`NicInUse`, the message
    /// Azure gives: "Network Interface ... is used by existing resource
    /// ... In order to delete the network interface, it must be
    /// dissociated from the resource."); 202 with an operation, 204 when
    /// there is none.
    pub(crate) fn nic_delete(
        &mut self,
        t: &Target,
        inject: bool,
        now: f64,
    ) -> Result<Reply, ArmError> {
        let key = t.key();
        let Some(n) = self.nics.get(&key) else {
            return Ok(Reply::no_content());
        };
        if let Some(vm) = n.vm.as_ref().and_then(|k| self.vms.get(k)) {
            return Err(ArmError::bad_request(
                "NicInUse",
                format!(
                    "Network Interface {} is used by existing resource {}. In order to delete the network interface, it must be dissociated from the resource. To learn more, see aka.ms/deletenic.",
                    n.id, vm.id
                ),
            ));
        }
        let dur = self.draw(SimRange::new(1.0, 4.0));
        let lro = self.new_op(
            now,
            OpFamily::Network,
            dur,
            Effect::NicDelete { key: key.clone() },
            inject,
            Final::NoContent,
        );
        if let Some(n) = self.nics.get_mut(&key) {
            n.provisioning = "Deleting".into();
        }
        Ok(Reply::accepted(lro))
    }

    /// `NicDelete` done: the NIC and any reservation of it go.
    pub(super) fn apply_nic_delete(&mut self, key: &str) -> Result<Option<Value>, ArmError> {
        self.nics.remove(key);
        self.nic_reserved.remove(key);
        Ok(None)
    }

    /// `NicDelete` failed: the NIC stays.
    pub(super) fn undo_nic_delete(&mut self, key: &str) {
        if let Some(n) = self.nics.get_mut(key) {
            n.provisioning = "Succeeded".into();
        }
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
    pub(crate) fn nic_reserved_refusal(&self, key: &str) -> Option<ArmError> {
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
