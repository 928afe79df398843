//! Inventory fingerprints: a VM's identity (id, `vmId`), size, disks (ids,
//! sizes, SKUs), ADE state (extension, settings, dual-pass, EAH flag) and
//! migration path, hashed. `run --plan` refuses a plan whose VMs' fingerprints
//! changed (like Terraform's stale saved plans). Power state is not part of
//! it: a VM deallocated since planning is still the same plan.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::model::ResourceId;
use crate::model::views::{DiskModel, VmModel};
use crate::step::VmRecord;
use crate::step::observe::is_ade_extension;

/// The inputs of a VM's fingerprint, readable (shown when a plan is stale).
pub fn inputs(rec: &VmRecord, path: &str, eligible: bool) -> Value {
    let vm = VmModel::new(rec.original_model.as_ref().unwrap_or(&Value::Null));
    let props = vm.properties();
    let sp = props.storage_profile();
    let disk = |id: Option<&str>, lun: Option<&Value>, size_gb: Option<&Value>| {
        let id = id.unwrap_or_default().to_ascii_lowercase();
        let planned = rec.disks.iter().find(|p| p.source.key() == id);
        json!({
            "id": id,
            "lun": lun,
            "size_gb": size_gb,
            "size_bytes": planned.map(|p| p.source_size_bytes),
            "sku": planned.and_then(|p| DiskModel::new(&p.source_model).sku_name()).map(str::to_ascii_lowercase),
        })
    };
    // The OS disk entry has no `lun` (ComputeRP's OSDisk schema).
    let disks: Vec<Value> = sp
        .os_disk()
        .map(|d| disk(d.managed_disk_id(), None, d.disk_size_gb()))
        .into_iter()
        .chain(
            sp.data_disks()
                .map(|d| disk(d.managed_disk_id(), d.lun_value(), d.disk_size_gb())),
        )
        .collect();
    let ade: Vec<Value> = vm
        .extensions()
        .filter(is_ade_extension)
        .map(|r| {
            json!({
                "name": r.name().or_else(|| r.id()).map(str::to_ascii_lowercase),
                "type": r.handler_type(),
                "operation": r.encryption_operation(),
                "volume_type": r.volume_type(),
            })
        })
        .collect();
    let os_disk = sp.os_disk();
    json!({
        "id": rec.id.key(),
        "vm_id": props.vm_id(),
        "size": props.vm_size().map(str::to_ascii_lowercase),
        "disks": disks,
        "ade_extensions": ade,
        "dual_pass": os_disk.is_some_and(|d| d.encryption_settings().is_some()),
        "encryption_at_host": props.encryption_at_host().unwrap_or(false),
        "path": path,
        "eligible": eligible,
    })
}

/// `sha256:` + hex of the canonical JSON of `v`.
pub fn hash(v: &Value) -> String {
    let bytes = serde_json::to_vec(v).unwrap_or_default();
    format!("sha256:{}", hex(&Sha256::digest(&bytes)))
}

/// The fingerprint of one VM.
pub fn of_vm(rec: &VmRecord, path: &str, eligible: bool) -> String {
    hash(&inputs(rec, path, eligible))
}

/// The fingerprint of a whole plan: every VM's, sorted by id.
pub fn of_plan<'a>(vms: impl Iterator<Item = (&'a ResourceId, &'a str)>) -> String {
    let mut lines: Vec<String> = vms.map(|(id, fp)| format!("{} {fp}", id.key())).collect();
    lines.sort();
    let mut h = Sha256::new();
    for l in &lines {
        h.update(l.as_bytes());
        h.update(b"\n");
    }
    format!("sha256:{}", hex(&h.finalize()))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
