//! Long-running operations and their effects. An [`Effect`] is what an
//! operation does when it completes: the handler records it with
//! [`World::new_op`], [`World::advance`] completes due operations in
//! simulated-time order, and the effect is applied (or, for an injected
//! failure, undone) by the `apply_*`/`undo_*` methods that sit next to the
//! handler that made it (vm.rs, extension.rs, disk.rs, sas.rs).

use super::*;

/// What an operation does when it completes.
#[derive(Debug, Clone)]
pub(crate) enum Effect {
    VmCreate {
        vm: String,
    },
    VmUpdate {
        vm: String,
        model: Value,
        added_disks: Vec<String>,
        added_nics: Vec<String>,
    },
    VmDelete {
        vm: String,
    },
    VmPower {
        vm: String,
        target: Power,
        prev: Power,
    },
    ExtPut {
        vm: String,
        name: String,
        prev: Option<Ext>,
    },
    ExtDelete {
        vm: String,
        name: String,
    },
    DiskCreate {
        key: String,
        snapshot: bool,
        new: bool,
    },
    DiskDelete {
        key: String,
        snapshot: bool,
    },
    Grant {
        key: String,
        snapshot: bool,
        access: SasAccess,
        duration: f64,
    },
    Revoke {
        key: String,
        snapshot: bool,
    },
    /// A NIC PUT (nic.rs): the NIC is `Succeeded` at completion.
    NicPut {
        key: String,
        new: bool,
    },
    /// A NIC DELETE (nic.rs): the NIC goes at completion.
    NicDelete {
        key: String,
    },
    /// Run Command on a VM (guest.rs): the output is computed at completion.
    RunCommand {
        vm: String,
        script: String,
    },
}

impl World {
    /// Applies every operation due by `now` (in time order) and ticks guests.
    pub(crate) fn advance(&mut self, now: f64) {
        loop {
            let next = self
                .ops
                .values()
                .filter(|o| o.running() && o.done_at <= now)
                .min_by(|a, b| {
                    a.done_at
                        .total_cmp(&b.done_at)
                        .then_with(|| a.start.total_cmp(&b.start))
                })
                .map(|o| (o.id.clone(), o.done_at));
            let Some((id, at)) = next else { break };
            self.tick(at);
            self.complete(&id, at);
        }
        self.tick(now);
        for f in self.features.values_mut() {
            if let Feature::Registering(at) = *f
                && at <= now
            {
                *f = Feature::Registered;
            }
        }
        self.expire_nic_reservations(now);
    }

    pub(super) fn new_op(
        &mut self,
        now: f64,
        family: OpFamily,
        dur: f64,
        effect: Effect,
        inject: bool,
        final_body: Final,
    ) -> LroRef {
        let id = self.rng.uuid();
        self.ops.insert(
            id.clone(),
            Operation {
                id: id.clone(),
                start: now,
                done_at: now + dur,
                end: None,
                state: OpState::InProgress,
                effect: Some(effect),
                inject_failure: inject,
                output: None,
                final_body,
            },
        );
        if inject && let Some(e) = self.hooks.lro_error.take() {
            self.hooks.op_errors.insert(id.clone(), e);
        }
        LroRef {
            id,
            family,
            location: true,
            retry_after: dur.clamp(1.0, 60.0),
        }
    }

    pub(super) fn complete(&mut self, id: &str, at: f64) {
        let Some(op) = self.ops.get_mut(id) else {
            return;
        };
        let effect = op.effect.take();
        let inject = op.inject_failure;
        let result = match effect {
            None => Ok(None),
            Some(e) if inject => {
                self.rollback(e);
                Err(self.hooks.op_errors.remove(id).unwrap_or_else(|| {
                    ArmError::new(
                        500,
                        "InternalOperationError",
                        "An internal execution error occurred. Please retry later.",
                    )
                }))
            }
            Some(e) => self.apply(e, at),
        };
        if let Some(op) = self.ops.get_mut(id) {
            op.end = Some(at);
            match result {
                Ok(out) => {
                    if let Some(out) = out {
                        op.final_body = Final::Body(out.clone());
                        op.output = Some(out);
                    }
                    op.state = OpState::Succeeded;
                }
                Err(e) => op.state = OpState::Failed(e),
            }
        }
    }

    /// Applies the effect of an operation completing at `at`: each effect's
    /// `apply_*` sits next to its handler. `Some(body)` is the operation's
    /// output (the SAS of a grant).
    pub(super) fn apply(&mut self, e: Effect, at: f64) -> Result<Option<Value>, ArmError> {
        match e {
            Effect::VmCreate { vm } => self.apply_vm_create(&vm),
            Effect::VmUpdate { vm, model, .. } => self.apply_vm_update(&vm, model, at),
            Effect::VmDelete { vm } => self.apply_vm_delete(&vm, at),
            Effect::VmPower { vm, target, .. } => self.apply_vm_power(&vm, target),
            Effect::ExtPut { vm, name, .. } => self.apply_ext_put(&vm, &name),
            Effect::ExtDelete { vm, name } => self.apply_ext_delete(&vm, &name),
            Effect::DiskCreate { key, snapshot, .. } => self.apply_disk_create(&key, snapshot),
            Effect::DiskDelete { key, snapshot } => self.apply_disk_delete(&key, snapshot),
            Effect::Grant {
                key,
                snapshot,
                access,
                duration,
            } => self.apply_grant(&key, snapshot, access, duration),
            Effect::Revoke { key, snapshot } => self.apply_revoke(&key, snapshot),
            Effect::RunCommand { vm, script } => self.apply_run_command(&vm, &script),
            Effect::NicPut { key, .. } => self.apply_nic_put(&key),
            Effect::NicDelete { key } => self.apply_nic_delete(&key),
        }
    }

    /// Undoes what the handler did up front for an operation that failed
    /// (an injected failure): each effect's `undo_*` sits next to its handler.
    pub(super) fn rollback(&mut self, e: Effect) {
        match e {
            Effect::VmCreate { vm } => self.undo_vm_create(&vm),
            Effect::VmUpdate {
                vm,
                added_disks,
                added_nics,
                ..
            } => self.undo_vm_update(&vm, &added_disks, &added_nics),
            Effect::VmDelete { vm } => self.undo_vm_delete(&vm),
            Effect::VmPower { vm, prev, .. } => self.undo_vm_power(&vm, prev),
            Effect::ExtPut { vm, name, prev } => self.undo_ext_put(&vm, name, prev),
            Effect::ExtDelete { vm, name } => self.undo_ext_delete(&vm, &name),
            Effect::DiskCreate { key, snapshot, new } => self.undo_disk_create(&key, snapshot, new),
            Effect::DiskDelete { key, snapshot } => self.undo_disk_delete(&key, snapshot),
            Effect::NicPut { key, new } => self.undo_nic_put(&key, new),
            Effect::NicDelete { key } => self.undo_nic_delete(&key),
            Effect::Grant { .. } | Effect::Revoke { .. } | Effect::RunCommand { .. } => {}
        }
    }

    /// Operation `id` (exact, else case-insensitive), or 404 `NotFound`.
    fn op(&self, id: &str) -> Result<&Operation, ArmError> {
        self.ops
            .get(id)
            .or_else(|| self.ops.values().find(|o| o.id.eq_ignore_ascii_case(id)))
            .ok_or_else(|| {
                ArmError::new(
                    404,
                    "NotFound",
                    format!("The operation '{id}' was not found."),
                )
            })
    }

    /// `GET Azure-AsyncOperation`: (body, simulated Retry-After while running).
    pub(crate) fn op_status(&self, id: &str, now: f64) -> Result<(Value, Option<f64>), ArmError> {
        let op = self.op(id)?;
        let retry = op.running().then(|| (op.done_at - now).clamp(1.0, 60.0));
        Ok((op.status_body(|t| self.fmt_time(t)), retry))
    }

    /// `GET Location`.
    pub(crate) fn op_location(&self, id: &str, now: f64) -> Result<LocationAnswer, ArmError> {
        let op = self.op(id)?;
        Ok(match &op.state {
            OpState::InProgress => LocationAnswer::Running((op.done_at - now).clamp(1.0, 60.0)),
            OpState::Failed(e) => LocationAnswer::Failed(e.clone()),
            OpState::Succeeded => match &op.final_body {
                Final::NoContent => LocationAnswer::NoContent,
                Final::Body(b) => LocationAnswer::Done(b.clone()),
                Final::Resource(kind, key) => {
                    let body = match kind {
                        ResourceKind::Vm => self.vms.get(key).map(|v| self.vm_body(v, false)),
                        ResourceKind::Disk => self.disks.get(key).map(|d| self.disk_body(d)),
                        ResourceKind::Snapshot => {
                            self.snapshots.get(key).map(|d| self.disk_body(d))
                        }
                        ResourceKind::Extension => key
                            .split_once("/extensions/")
                            .and_then(|(vm, x)| self.vms.get(vm).and_then(|v| v.extensions.get(x)))
                            .map(Ext::body),
                        ResourceKind::Nic => self.nics.get(key).map(|n| self.nic_body(n)),
                    };
                    match body {
                        Some(b) => LocationAnswer::Done(b),
                        None => LocationAnswer::NoContent,
                    }
                }
            },
        })
    }
}
