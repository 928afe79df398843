//! The Linux rebuild path (`--rebuild-linux-os`): a Linux VM whose OS volume
//! is ADE-encrypted cannot be decrypted (facts §2.5), so its disks cannot be
//! copied usefully. Instead the VM is rebuilt under the same name from its
//! image (`storageProfile.imageReference`, or `--image`) with EAH on, on a
//! fresh OS disk and **new empty data disks** at the same LUNs (same size,
//! SKU, caching), with the original NICs, size, zones, tags, identity and
//! configuration. The original disks are kept (with their backup
//! snapshots) and listed with their key vault secrets so the data can be
//! recovered by hand.
//!
//! It is a path variant of the one state machine ([`MigrationPath`]): the
//! steps and their order are the same; this module decides the steps that
//! differ ([`decide`], [`needs`]) and `decide` falls back to the common rules
//! for the others (snapshot, detach-on-delete, deallocate, re-create's
//! observation, start, verify):
//! - no ADE disable, no extension removal (the VM is deleted with it);
//! - create-targets creates `Empty` data disks (the OS disk is created by
//!   the VM PUT, `FromImage`, under the journaled target name);
//! - no copy rounds, no copy verification;
//! - the VM is deleted once the empty disks exist (every disk and NIC set to
//!   `Detach`, the original model journaled), then created `FromImage`.
//!
//! Credentials: the new OS disk is provisioned from `osProfile`. A VM GET
//! returns the admin user name and SSH public keys but never a password, so
//! a VM without SSH keys (password sign-in only) is refused at plan time
//! unless the operator supplies a public key (`--ssh-public-key`).

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::decide::{Needs, delete_vm_observed, not_ours};
use super::observe::Observation;
use super::record::{DiskPlan, DiskRole, VmFacts, VmRecord};
use super::{Action, Decision, Step};
use crate::model::ResourceId;
use crate::model::views::VmModel;

/// Which variant of the state machine a VM follows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MigrationPath {
    /// Copy every disk into a new `Upload` disk and re-create the VM on them.
    #[default]
    Copy,
    /// Rebuild a Linux VM with an ADE OS volume from its image, on new empty
    /// data disks (this module).
    RebuildLinuxOs,
}

/// The operator's opt-in (`--rebuild-linux-os`, `--image`, `--ssh-public-key`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RebuildOptions {
    /// `--image`: a URN `publisher:offer:sku:version` or an image resource id
    /// (default: the VM's own `imageReference`).
    pub image: Option<String>,
    /// `--ssh-public-key`: public keys added for the admin user.
    pub ssh_public_keys: Vec<String>,
}

/// What the rebuild of one VM will use, fixed at discovery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RebuildSpec {
    /// `imageReference` to create from (read-only properties dropped).
    pub image_reference: Value,
    /// `osProfile` to create with (admin user, computer name, Linux
    /// configuration with SSH public keys; never a password).
    pub os_profile: Value,
    /// What does not carry over, in plain words (shown by `plan`).
    pub not_carried: Vec<String>,
}

/// What a rebuild never carries over (shown by `plan`, README).
pub const NOT_CARRIED: [&str; 5] = [
    "the OS disk's contents (a fresh OS from the image: installed software, configuration and files on it are not carried over)",
    "the data disks' contents (new empty disks at the same LUNs; the originals are kept, with their key vault secrets, for recovery)",
    "passwords (never returned by Azure; sign-in is by the SSH public keys)",
    "custom data / cloud-init given at the original creation",
    "extensions (reinstall what is needed, except ADE); a system-assigned identity gets a new principal",
];

/// The rebuild spec of a Linux VM with an ADE OS volume, or why it cannot
/// be rebuilt (the operator's remedy included).
pub fn rebuild_spec(vm: &Value, opts: &RebuildOptions) -> Result<RebuildSpec, String> {
    let model = VmModel::new(vm);
    let sp = model.storage_profile();
    let image = match &opts.image {
        Some(s) => parse_image(s)?,
        None => {
            let Some(r) = sp.image_reference() else {
                return Err(
                    "the VM has no imageReference (created from a disk, not an image); \
                            pass --image publisher:offer:sku:version (or an image id) to rebuild it"
                        .into(),
                );
            };
            let mut r = r.clone();
            if let Some(o) = r.as_object_mut() {
                // Read-only (REST docs, ImageReference.exactVersion).
                o.remove("exactVersion");
            }
            r
        }
    };
    let profile = model.properties().os_profile();
    let Some(user) = profile
        .and_then(|p| p.get("adminUsername"))
        .and_then(Value::as_str)
    else {
        return Err(
            "the VM model has no osProfile.adminUsername (created from a disk); \
                    it cannot be rebuilt from an image without one"
                .into(),
        );
    };
    let computer = profile
        .and_then(|p| p.get("computerName"))
        .and_then(Value::as_str)
        .unwrap_or(model.name().unwrap_or_default());
    let linux = profile
        .and_then(|p| p.get("linuxConfiguration"))
        .filter(|v| v.is_object())
        .cloned()
        .unwrap_or_else(|| json!({}));
    let mut keys: Vec<Value> = linux
        .pointer("/ssh/publicKeys")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let path = format!("/home/{user}/.ssh/authorized_keys");
    for k in &opts.ssh_public_keys {
        let k = k.trim();
        if !keys
            .iter()
            .any(|x| x.get("keyData").and_then(Value::as_str) == Some(k))
        {
            keys.push(json!({"path": path, "keyData": k}));
        }
    }
    if keys.is_empty() {
        return Err(format!(
            "the VM signs in by password only (no SSH public key in its model) and Azure never returns a password: \
             pass --ssh-public-key FILE with a public key for {user} to rebuild it"
        ));
    }
    let mut linux = linux;
    linux["ssh"] = json!({"publicKeys": keys});
    linux["disablePasswordAuthentication"] = json!(true);
    Ok(RebuildSpec {
        image_reference: image,
        os_profile: json!({"computerName": computer, "adminUsername": user, "linuxConfiguration": linux}),
        not_carried: NOT_CARRIED.iter().map(|s| s.to_string()).collect(),
    })
}

/// `publisher:offer:sku:version` → `{publisher, offer, sku, version}`; an
/// ARM id (`/subscriptions/...`) → `{id}`.
pub fn parse_image(s: &str) -> Result<Value, String> {
    let s = s.trim();
    if s.starts_with('/') {
        return ResourceId::parse(s)
            .map(|id| json!({"id": id.as_str()}))
            .map_err(|e| format!("--image {s:?} is not an image resource id: {e}"));
    }
    let parts: Vec<&str> = s.split(':').collect();
    match parts.as_slice() {
        [p, o, k, v] if parts.iter().all(|x| !x.is_empty()) => {
            Ok(json!({"publisher": p, "offer": o, "sku": k, "version": v}))
        }
        _ => Err(format!(
            "--image {s:?} is neither publisher:offer:sku:version nor an image resource id"
        )),
    }
}

/// The OS disk the rebuilt VM gets: the journaled OS target's name, in the
/// VM's resource group (Azure creates a `FromImage` OS disk there).
pub fn os_target(vm: &ResourceId, source: &ResourceId) -> ResourceId {
    let name = super::eligibility::derived_name(source.name(), super::eligibility::TARGET_SUFFIX);
    ResourceId::new(
        vm.subscription(),
        vm.resource_group(),
        "Microsoft.Compute",
        "disks",
        &name,
    )
}

/// The reads the rebuild needs at the steps it decides itself (`None`:
/// the common rule's reads).
pub fn needs(rec: &VmRecord) -> Option<Needs> {
    match rec.step {
        Step::CreateTargets => Some(Needs {
            disks: data_disks(rec).map(|d| d.target.clone()).collect(),
            ..Needs::default()
        }),
        Step::DisableAde
        | Step::AwaitDecrypted
        | Step::RemoveExtension
        | Step::PreCopy
        | Step::FinalCopy
        | Step::VerifyCopy => Some(Needs::default()),
        _ => None,
    }
}

fn data_disks(rec: &VmRecord) -> impl Iterator<Item = &DiskPlan> {
    rec.disks.iter().filter(|d| d.role != DiskRole::Os)
}

/// The decision at the steps the rebuild path decides itself (`None`: the
/// common rule decides).
pub fn decide(rec: &VmRecord, obs: &Observation, run_id: &str) -> Option<Decision> {
    Some(match rec.step {
        // No ADE disable on a Linux OS volume (facts §2.5); the extension
        // goes with the VM; nothing is copied.
        Step::DisableAde
        | Step::AwaitDecrypted
        | Step::RemoveExtension
        | Step::PreCopy
        | Step::FinalCopy
        | Step::VerifyCopy => Decision::Advance,
        Step::CreateTargets => create_empty_disks(rec, obs, run_id),
        Step::DeleteVm => delete_vm_observed(rec, obs, run_id),
        _ => return None,
    })
}

fn create_empty_disks(rec: &VmRecord, obs: &Observation, run_id: &str) -> Decision {
    for d in data_disks(rec) {
        match obs.disk(&d.target) {
            None => {
                return Decision::Wait {
                    reason: format!("disk {} not observed", d.target.name()),
                };
            }
            Some(None) => {
                return Decision::Act(Action::CreateEmptyDisk {
                    source: d.source.clone(),
                    target: d.target.clone(),
                });
            }
            Some(Some(t)) if t.run_tag.as_deref() != Some(run_id) => return not_ours(&d.target),
            Some(Some(t)) if !t.create_option.eq_ignore_ascii_case("Empty") => {
                return Decision::park(
                    format!(
                        "disk {} was created with {} instead of Empty",
                        d.target.name(),
                        t.create_option
                    ),
                    "delete that disk (it was created by this run), then run `ade2eah resume`",
                );
            }
            Some(Some(t)) if !t.provisioning_state.eq_ignore_ascii_case("Succeeded") => {
                return Decision::Wait {
                    reason: format!("disk {} is {}", d.target.name(), t.provisioning_state),
                };
            }
            Some(Some(_)) => {}
        }
    }
    Decision::Advance
}

/// The new empty data disk for one source data disk: the target-disk body
/// (same SKU, zone, tags of the run) created `Empty` with the source's size
/// in GiB (rounded up).
pub fn empty_disk(plan: &DiskPlan, facts: &VmFacts, run_id: &str) -> Value {
    let mut body = super::body::target_disk(plan, facts, run_id);
    let gib = plan.source_size_bytes.div_ceil(1 << 30).max(1);
    if let Some(p) = body["properties"].as_object_mut() {
        for k in [
            "osType",
            "hyperVGeneration",
            "purchasePlan",
            "securityProfile",
        ] {
            p.remove(k);
        }
        p.insert("creationData".into(), json!({"createOption": "Empty"}));
        p.insert("diskSizeGB".into(), json!(gib));
    }
    body
}

/// The PUT body of the rebuilt VM: the re-create body (size, zones, tags,
/// identity, NICs, LUNs, caching, security profile with EAH on...), with
/// the OS disk created `FromImage` under the journaled target name (same
/// SKU, size and caching as the original) and the image and OS profile of
/// the spec.
pub fn vm_body(original: &Value, disks: &[DiskPlan], spec: &RebuildSpec) -> Value {
    let mut body = super::body::recreate_vm(original, disks);
    let os_plan = disks.iter().find(|d| d.role == DiskRole::Os);
    let orig_os = VmModel::new(original).storage_profile().os_disk();
    let os = &mut body["properties"]["storageProfile"]["osDisk"];
    os["createOption"] = json!("FromImage");
    if let Some(o) = os.as_object_mut() {
        o.remove("managedDisk");
    }
    if let Some(p) = os_plan {
        os["diskSizeGB"] = json!(p.source_size_bytes.div_ceil(1 << 30).max(1));
        if let Some(sku) = crate::model::views::DiskModel::new(&p.source_model).sku_name() {
            os["managedDisk"] = json!({"storageAccountType": sku});
        }
    }
    if orig_os.is_none() {
        os["osType"] = json!("Linux");
    }
    body["properties"]["storageProfile"]["imageReference"] = spec.image_reference.clone();
    body["properties"]["osProfile"] = spec.os_profile.clone();
    body
}

#[cfg(test)]
mod tests;
