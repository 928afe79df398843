//! Observations: what read-only GETs found, reduced to the facts the
//! decisions need. Built from raw ARM JSON by pure functions, so the parsing
//! of instance views (the subtle part: "is the guest really decrypted?") is
//! unit-tested without a network.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::model::ResourceId;
use crate::model::views::{DiskModel, ExtensionModel, InstanceView, VmModel};

/// ADE publisher, compared case-insensitively.
pub const ADE_PUBLISHER: &str = "Microsoft.Azure.Security";
/// ADE extension types (Windows, Linux), compared case-insensitively.
pub const ADE_TYPES: [&str; 2] = ["AzureDiskEncryption", "AzureDiskEncryptionForLinux"];

/// Decryption progress as the guest reports it through the instance view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecryptionState {
    /// Volumes still encrypted and no disable in progress.
    Encrypted,
    /// A disable was accepted; the guest is still decrypting.
    InProgress,
    /// Every volume reports not encrypted and the extension reports success.
    Complete,
    /// The extension reported a failure (message from the guest).
    Failed(String),
    /// Not enough information (e.g. no instance view for a deallocated VM).
    Unknown,
}

/// A VM as observed.
#[derive(Debug, Clone, PartialEq)]
pub struct VmView {
    /// `provisioningState` (`Succeeded`, `Updating`, `Deleting`...).
    pub provisioning_state: String,
    /// `PowerState/x` suffix from the instance view (`running`, `deallocated`...), if known.
    pub power: Option<String>,
    /// ADE extensions found by publisher + type (any resource name): (id, EncryptionOperation).
    pub ade_extensions: Vec<(ResourceId, Option<String>)>,
    /// `securityProfile.encryptionAtHost`.
    pub encryption_at_host: bool,
    /// OS disk id.
    pub os_disk: Option<ResourceId>,
    /// Data disks: LUN → disk id.
    pub data_disks: BTreeMap<i64, ResourceId>,
    /// True when the OS disk, every data disk and every NIC have `deleteOption=Detach`.
    pub all_detach: bool,
    /// Decryption state from the instance view.
    pub decryption: DecryptionState,
    /// `vmId` (a new GUID for every created VM resource).
    pub vm_id: Option<String>,
    /// `tags` verbatim (`Null` when absent).
    pub tags: Value,
    /// The guest agent's state from the instance view (`vmAgent.statuses`):
    /// `Some(true)` when it reports `ProvisioningState/succeeded` / `Ready`,
    /// `None` when the view has no agent status.
    pub vm_agent_ready: Option<bool>,
    /// `deleteOption` of the OS disk (`os`), each data disk (`lun:N`) and
    /// each NIC (`nic:<id, case-folded>`), lowercased; an absent one reads
    /// as `detach` (Azure's default for attached disks and NICs).
    pub delete_options: BTreeMap<String, String>,
}

impl VmView {
    /// Builds a view from a VM GET body (with or without `$expand=instanceView`)
    /// and, optionally, a separately fetched instance view.
    pub fn from_raw(vm: &Value, instance_view: Option<&Value>) -> VmView {
        let model = VmModel::new(vm);
        let props = model.properties();
        let iv = instance_view
            .map(InstanceView::new)
            .or_else(|| props.instance_view());
        let sp = model.storage_profile();
        let os_disk = sp
            .os_disk()
            .and_then(|d| d.managed_disk_id())
            .and_then(|s| ResourceId::parse(s).ok());
        let data_disks = sp
            .data_disks()
            .filter_map(|d| {
                let lun = d.lun()?;
                let id = ResourceId::parse(d.managed_disk_id()?).ok()?;
                Some((lun, id))
            })
            .collect();
        VmView {
            provisioning_state: props
                .provisioning_state()
                .unwrap_or("Succeeded")
                .to_string(),
            power: iv.and_then(power_state),
            ade_extensions: ade_extensions(vm),
            encryption_at_host: props.encryption_at_host().unwrap_or(false),
            os_disk,
            data_disks,
            all_detach: all_detach(vm),
            decryption: iv
                .map(instance_decryption_state)
                .unwrap_or(DecryptionState::Unknown),
            vm_id: props.vm_id().map(str::to_string),
            tags: model.tags().cloned().unwrap_or(Value::Null),
            vm_agent_ready: iv.and_then(vm_agent_ready),
            delete_options: delete_options(vm),
        }
    }

    /// True when no operation is running on the VM.
    pub fn is_settled(&self) -> bool {
        matches!(
            self.provisioning_state.to_ascii_lowercase().as_str(),
            "succeeded" | "failed" | "canceled"
        ) && !matches!(
            self.power.as_deref(),
            Some("starting" | "stopping" | "deallocating")
        )
    }
}

/// The `PowerState/x` suffix of an instance view, lowercased, if present.
pub fn power_state(iv: InstanceView<'_>) -> Option<String> {
    iv.power_state().map(str::to_ascii_lowercase)
}

/// `Some(true)` when the instance view's guest agent status says ready
/// (`ProvisioningState/succeeded` with display status `Ready`), `Some(false)`
/// for any other status, `None` without one.
pub fn vm_agent_ready(iv: InstanceView<'_>) -> Option<bool> {
    let mut any = false;
    let mut ready = false;
    for s in iv.vm_agent_statuses() {
        any = true;
        let code_ok = s
            .code()
            .is_some_and(|c| c.eq_ignore_ascii_case("ProvisioningState/succeeded"));
        let display_ok = s
            .display_status()
            .is_none_or(|d| d.eq_ignore_ascii_case("Ready"));
        ready |= code_ok && display_ok;
    }
    any.then_some(ready)
}

/// ADE extensions of a VM model (`resources[]`), matched on publisher + type.
pub fn ade_extensions(vm: &Value) -> Vec<(ResourceId, Option<String>)> {
    VmModel::new(vm)
        .extensions()
        .filter(is_ade_extension)
        .filter_map(|r| {
            let id = ResourceId::parse(r.id()?).ok()?;
            Some((id, r.encryption_operation().map(str::to_string)))
        })
        .collect()
}

/// True when an extension resource is ADE, whatever its name.
pub fn is_ade_extension(ext: &ExtensionModel<'_>) -> bool {
    let publisher = ext.publisher().unwrap_or_default();
    let etype = ext.handler_type().unwrap_or_default();
    publisher.eq_ignore_ascii_case(ADE_PUBLISHER)
        && ADE_TYPES.iter().any(|t| t.eq_ignore_ascii_case(etype))
}

/// See [`VmView::delete_options`].
pub fn delete_options(vm: &Value) -> BTreeMap<String, String> {
    let norm = |v: Option<&str>| v.unwrap_or("Detach").to_ascii_lowercase();
    let model = VmModel::new(vm);
    let sp = model.storage_profile();
    let mut out = BTreeMap::new();
    if let Some(d) = sp.os_disk() {
        out.insert("os".to_string(), norm(d.delete_option()));
    }
    for d in sp.data_disks() {
        if let Some(lun) = d.lun() {
            out.insert(format!("lun:{lun}"), norm(d.delete_option()));
        }
    }
    for n in model.properties().network_interfaces() {
        let id = n
            .id_value()
            .as_str()
            .unwrap_or_default()
            .to_ascii_lowercase();
        out.insert(format!("nic:{id}"), norm(n.delete_option()));
    }
    out
}

fn all_detach(vm: &Value) -> bool {
    let detach = |v: Option<&str>| v.is_some_and(|s| s.eq_ignore_ascii_case("Detach"));
    let model = VmModel::new(vm);
    let sp = model.storage_profile();
    let os_ok = sp.os_disk().is_none_or(|d| detach(d.delete_option()));
    let data_ok = sp.data_disks().all(|d| detach(d.delete_option()));
    let nic_ok = model
        .properties()
        .network_interfaces()
        .all(|n| detach(n.delete_option()));
    os_ok && data_ok && nic_ok
}

/// Decides from an instance view whether the guest finished decrypting.
///
/// Rules (facts §1.4, §2.4): the ADE extension's status must not be an error
/// and must not say decryption is running (`DecryptionInProgress`, "started",
/// "in progress"); every disk that reports an `EncryptionState/*` status must
/// report `notEncrypted` as its *last* such status; and there must be positive
/// evidence of completion (either such disk statuses or the extension's
/// "Disable Encryption completed successfully" / "Decryption succeeded").
pub fn decryption_state(iv: &Value) -> DecryptionState {
    instance_decryption_state(InstanceView::new(iv))
}

/// [`decryption_state`] of a typed instance view.
pub fn instance_decryption_state(iv: InstanceView<'_>) -> DecryptionState {
    let ext = iv.extensions().find(|e| {
        let etype = e.handler_type().unwrap_or_default();
        ADE_TYPES
            .iter()
            .any(|t| etype.eq_ignore_ascii_case(&format!("{ADE_PUBLISHER}.{t}")))
            || ADE_TYPES
                .iter()
                .any(|t| e.name().is_some_and(|n| n.eq_ignore_ascii_case(t)))
    });
    let mut ext_text = String::new();
    if let Some(ext) = ext {
        for s in ext.statuses().chain(ext.substatuses()) {
            let code = s.code().unwrap_or_default().to_ascii_lowercase();
            let level = s.level().unwrap_or_default().to_ascii_lowercase();
            let message = s.message().unwrap_or_default();
            if level == "error" || code.ends_with("/failed") || code.ends_with("/error") {
                return DecryptionState::Failed(if message.is_empty() {
                    code
                } else {
                    message.to_string()
                });
            }
            ext_text.push_str(&message.to_ascii_lowercase());
            ext_text.push('\n');
        }
    }
    let in_progress = ext_text.contains("decryptioninprogress")
        || ext_text.contains("decryption started")
        || ext_text.contains("in progress")
        || ext_text.contains("encryptioninprogress");
    let ext_done = ext_text.contains("disable encryption completed successfully")
        || ext_text.contains("decryption succeeded");

    let disk_states: Vec<String> = iv
        .disks()
        .filter_map(|d| {
            d.statuses()
                .filter_map(|s| s.code())
                .filter(|c| c.starts_with("EncryptionState/"))
                .last()
                .map(|c| c.to_ascii_lowercase())
        })
        .collect();
    let any_encrypted = disk_states
        .iter()
        .any(|s| s != "encryptionstate/notencrypted");
    if in_progress {
        return DecryptionState::InProgress;
    }
    if any_encrypted {
        return DecryptionState::Encrypted;
    }
    if !disk_states.is_empty() || ext_done {
        return DecryptionState::Complete;
    }
    DecryptionState::Unknown
}

/// A disk (or snapshot) as observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskView {
    /// `diskState` (`Unattached`, `Reserved`, `ActiveSAS`, `ActiveUpload`...).
    pub state: String,
    /// `provisioningState`.
    pub provisioning_state: String,
    /// `creationData.createOption`.
    pub create_option: String,
    /// `diskSizeBytes`.
    pub size_bytes: Option<u64>,
    /// `creationData.uploadSizeBytes` (Upload disks).
    pub upload_size_bytes: Option<u64>,
    /// The run id tag we put on resources we create, if present.
    pub run_tag: Option<String>,
    /// The access settings as read (`networkAccessPolicy`, `diskAccessId`,
    /// `publicNetworkAccess`, `dataAccessAuthMode`; see
    /// [`super::body::TARGET_DEFERRED_ACCESS`]), an object.
    pub access: Value,
    /// At-rest encryption (`encryption.type`, `diskEncryptionSetId`).
    pub encryption: super::encryption::DiskEncryption,
    /// `zones` (empty when regional).
    pub zones: Vec<String>,
    /// `sku.name`.
    pub sku: Option<String>,
}

/// Tag we put on every resource the run creates.
pub const RUN_TAG: &str = "ade2eah-run";

/// Tag carrying a run's Azure-side lease on a VM (`crate::engine::lease`);
/// removed when the VM ends, never carried into a re-created VM.
pub const LEASE_TAG: &str = "ade2eah-lease";

impl DiskView {
    /// Builds a view from a disk or snapshot GET body.
    pub fn from_raw(d: &Value) -> DiskView {
        let model = DiskModel::new(d);
        let props = model.properties();
        DiskView {
            state: props.disk_state().unwrap_or_default().to_string(),
            provisioning_state: props
                .provisioning_state()
                .unwrap_or("Succeeded")
                .to_string(),
            create_option: props.create_option().unwrap_or_default().to_string(),
            size_bytes: props.disk_size_bytes(),
            upload_size_bytes: props.upload_size_bytes(),
            run_tag: model.tag(RUN_TAG).map(str::to_string),
            access: Value::Object(
                super::body::TARGET_DEFERRED_ACCESS
                    .iter()
                    .filter_map(|k| props.raw().get(*k).map(|v| (k.to_string(), v.clone())))
                    .collect(),
            ),
            encryption: super::encryption::DiskEncryption::of_disk(d),
            zones: model
                .zones()
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
            sku: model.sku_name().map(str::to_string),
        }
    }

    /// True when a SAS grant is live on it.
    pub fn has_open_sas(&self) -> bool {
        matches!(
            self.state.as_str(),
            "ActiveSAS" | "ActiveSASFrozen" | "ActiveUpload"
        )
    }
}

/// What one round of read-only GETs found. Absent map entries mean "not read
/// this round"; `Some(None)` means "read, and it does not exist (404)".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observation {
    /// The VM, if read: `Some(None)` when it does not exist.
    pub vm: Option<Option<VmView>>,
    /// Disks and snapshots read this round, by case-folded id.
    pub disks: BTreeMap<String, Option<DiskView>>,
    /// The validate-before-delete reads (at [`super::Step::Validate`] only).
    pub validation: Option<super::validate::ValidationReads>,
    /// The in-guest check's report (`--guest-check`), when it was made;
    /// `Some(None)` when the command ran but reported no volume.
    pub guest: Option<Option<super::guest::GuestReport>>,
    /// Extensions, principal and its role assignments of the VM, when read
    /// (steps `reinstall` and `verify`).
    pub carried: Option<super::reinstall::CarriedView>,
    /// The `--nic-swap` placeholder NIC, when read (`Some(None)`: 404).
    pub placeholder_nic: Option<Option<super::nic_swap::NicView>>,
}

impl Observation {
    /// The observed disk or snapshot `id`: `None` = not read, `Some(None)` = 404.
    pub fn disk(&self, id: &ResourceId) -> Option<Option<&DiskView>> {
        self.disks.get(&id.key()).map(Option::as_ref)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn iv(ext_statuses: Value, substatuses: Value, disks: Value) -> Value {
        json!({
            "statuses": [{"code": "ProvisioningState/succeeded"}, {"code": "PowerState/running"}],
            "disks": disks,
            "extensions": [{"name": "my-ade", "type": "Microsoft.Azure.Security.AzureDiskEncryptionForLinux",
                            "statuses": ext_statuses, "substatuses": substatuses}]
        })
    }

    fn disk(states: &[&str]) -> Value {
        json!({"name": "d", "statuses": states.iter().map(|s| json!({"code": s})).collect::<Vec<_>>()})
    }

    #[test]
    fn decryption_in_progress_is_not_complete_even_when_provisioning_succeeded() {
        let v = iv(
            json!([{"code": "ProvisioningState/succeeded", "level": "Info", "message": "Decryption started"}]),
            json!([{"code": "ComponentStatus/x/succeeded", "level": "Info", "message": "{\"os\": \"NotEncrypted\", \"data\": \"DecryptionInProgress\"}"}]),
            json!([disk(&[
                "ProvisioningState/succeeded",
                "EncryptionState/encrypted"
            ])]),
        );
        assert_eq!(decryption_state(&v), DecryptionState::InProgress);
    }

    #[test]
    fn last_encryption_status_wins() {
        let v = iv(
            json!([{"code": "ProvisioningState/succeeded", "message": "Decryption succeeded"}]),
            json!([]),
            json!([
                disk(&["EncryptionState/encrypted", "EncryptionState/notEncrypted"]),
                disk(&["EncryptionState/notEncrypted"])
            ]),
        );
        assert_eq!(decryption_state(&v), DecryptionState::Complete);
        let v = iv(
            json!([{"code": "ProvisioningState/succeeded", "message": "Decryption succeeded"}]),
            json!([]),
            json!([disk(&[
                "EncryptionState/notEncrypted",
                "EncryptionState/encrypted"
            ])]),
        );
        assert_eq!(decryption_state(&v), DecryptionState::Encrypted);
    }

    #[test]
    fn extension_error_is_failure_with_guest_message() {
        let v = iv(
            json!([{"code": "ProvisioningState/failed", "level": "Error", "message": "Decryption failed for /dev/sdc"}]),
            json!([]),
            json!([]),
        );
        assert_eq!(
            decryption_state(&v),
            DecryptionState::Failed("Decryption failed for /dev/sdc".into())
        );
    }

    #[test]
    fn no_evidence_is_unknown() {
        assert_eq!(
            decryption_state(&json!({"statuses": []})),
            DecryptionState::Unknown
        );
    }

    #[test]
    fn windows_completion_message_counts() {
        let v = json!({"extensions": [{"name": "AzureDiskEncryption", "type": "Microsoft.Azure.Security.AzureDiskEncryption",
            "statuses": [{"code": "ProvisioningState/succeeded", "message": "[2.2.0.36] Disable Encryption completed successfully"}]}]});
        assert_eq!(decryption_state(&v), DecryptionState::Complete);
    }

    #[test]
    fn finds_ade_extension_under_any_name() {
        let vm = json!({"resources": [
            {"id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/v/extensions/tf-ade",
             "properties": {"publisher": "microsoft.azure.security", "type": "azurediskencryption", "settings": {"EncryptionOperation": "EnableEncryption"}}},
            {"id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/v/extensions/AzureDiskEncryption",
             "properties": {"publisher": "Contoso", "type": "AzureDiskEncryption"}}
        ]});
        let found = ade_extensions(&vm);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0.name(), "tf-ade");
        assert_eq!(found[0].1.as_deref(), Some("EnableEncryption"));
    }

    #[test]
    fn detach_requires_every_disk_and_nic() {
        let mut vm = json!({"properties": {
            "storageProfile": {"osDisk": {"deleteOption": "Detach"}, "dataDisks": [{"lun": 0, "deleteOption": "Detach"}]},
            "networkProfile": {"networkInterfaces": [{"id": "x", "properties": {"deleteOption": "Delete"}}]}}});
        assert!(!all_detach(&vm));
        vm["properties"]["networkProfile"]["networkInterfaces"][0]["properties"]["deleteOption"] =
            json!("Detach");
        assert!(all_detach(&vm));
        vm["properties"]["storageProfile"]["dataDisks"][0]
            .as_object_mut()
            .unwrap()
            .remove("deleteOption");
        assert!(
            !all_detach(&vm),
            "a missing deleteOption on a data disk is not proof of Detach"
        );
    }
}
