//! Inventory fingerprints: a VM's identity (id, `vmId`), size, disks (ids,
//! sizes, SKUs), ADE state (extension, settings, dual-pass, EAH flag) and
//! migration path, hashed. `run --plan` refuses a plan whose VMs' fingerprints
//! changed (like Terraform's stale saved plans). Power state is not part of
//! it: a VM deallocated since planning is still the same plan.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::model::ResourceId;
use crate::step::VmRecord;
use crate::step::observe::{jget, jstr};

/// The inputs of a VM's fingerprint, readable (shown when a plan is stale).
pub fn inputs(rec: &VmRecord, path: &str, eligible: bool) -> Value {
    let vm = rec.original_model.as_ref().cloned().unwrap_or(Value::Null);
    let mut disks: Vec<Value> = Vec::new();
    let os = jget(&vm, "properties.storageProfile.osDisk");
    let data = jget(&vm, "properties.storageProfile.dataDisks")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for d in os.into_iter().chain(data.iter()) {
        let id = jstr(d, "managedDisk.id")
            .unwrap_or_default()
            .to_ascii_lowercase();
        let planned = rec.disks.iter().find(|p| p.source.key() == id);
        disks.push(json!({
            "id": id,
            "lun": d.get("lun"),
            "size_gb": d.get("diskSizeGB"),
            "size_bytes": planned.map(|p| p.source_size_bytes),
            "sku": planned.and_then(|p| jstr(&p.source_model, "sku.name")).map(str::to_ascii_lowercase),
        }));
    }
    let ade: Vec<Value> = vm
        .get("resources")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|r| crate::step::observe::is_ade_extension(r))
        .map(|r| {
            json!({
                "name": jstr(r, "name").or_else(|| jstr(r, "id")).map(str::to_ascii_lowercase),
                "type": jstr(r, "properties.type"),
                "operation": jstr(r, "properties.settings.EncryptionOperation"),
                "volume_type": jstr(r, "properties.settings.VolumeType"),
            })
        })
        .collect();
    json!({
        "id": rec.id.key(),
        "vm_id": jstr(&vm, "properties.vmId"),
        "size": jstr(&vm, "properties.hardwareProfile.vmSize").map(str::to_ascii_lowercase),
        "disks": disks,
        "ade_extensions": ade,
        "dual_pass": jget(&vm, "properties.storageProfile.osDisk.encryptionSettings").is_some_and(|v| !v.is_null()),
        "encryption_at_host": jget(&vm, "properties.securityProfile.encryptionAtHost").and_then(Value::as_bool).unwrap_or(false),
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
