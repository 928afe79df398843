//! Serde types for the ARM payloads we read. Tolerant by design: every field
//! is optional or defaulted, unknown fields are ignored and enums are plain
//! strings (Azure marks them `modelAsString`), so a new Azure field or value
//! never breaks parsing. The same types parse Microsoft's example payloads
//! (`../shared/azure/fixtures`) and the emulator's answers (a test checks).
//!
//! For VM, disk, snapshot and extension GETs these types are the shape check
//! at the client boundary (a body that does not parse is `Malformed`); the
//! answer itself is kept verbatim (`Fetched::raw`, journaled as is) and the
//! core reads it through the typed views of [`crate::model::views`], which
//! keep every property these structs drop. A test checks that both read
//! Microsoft's examples alike.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// ARM error envelope `{"error": {...}}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ErrorEnvelope {
    /// The error.
    pub error: Option<ErrorBody>,
}

/// `{code, message, target, details}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ErrorBody {
    /// Error code.
    pub code: Option<String>,
    /// Message.
    pub message: Option<String>,
    /// Target property.
    pub target: Option<String>,
    /// Nested details (the innermost is usually the root cause).
    pub details: Vec<ErrorBody>,
}

/// An Azure-AsyncOperation status body.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct OperationStatus {
    /// Operation id.
    pub name: Option<String>,
    /// `InProgress`, `Succeeded`, `Failed`, `Canceled`...
    pub status: Option<String>,
    /// Error when failed.
    pub error: Option<ErrorBody>,
    /// Output (beginGetAccess: `output.accessSAS`).
    pub properties: Option<Value>,
    /// Start time.
    pub start_time: Option<String>,
    /// End time.
    pub end_time: Option<String>,
}

/// A virtual machine.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct VirtualMachine {
    /// Resource id.
    pub id: Option<String>,
    /// Name.
    pub name: Option<String>,
    /// Region.
    pub location: Option<String>,
    /// Zones.
    pub zones: Vec<String>,
    /// Tags.
    pub tags: Option<Value>,
    /// Managed identities.
    pub identity: Option<Value>,
    /// Marketplace plan.
    pub plan: Option<Value>,
    /// Properties.
    pub properties: Option<VmProperties>,
    /// Child resources (extensions) as returned by GET.
    pub resources: Vec<Extension>,
}

/// VM properties.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct VmProperties {
    /// Unique id of this VM resource (new for every created resource).
    pub vm_id: Option<String>,
    /// Provisioning state.
    pub provisioning_state: Option<String>,
    /// Size.
    pub hardware_profile: Option<HardwareProfile>,
    /// Disks.
    pub storage_profile: Option<StorageProfile>,
    /// NICs.
    pub network_profile: Option<Value>,
    /// EAH, security type, UEFI.
    pub security_profile: Option<SecurityProfile>,
    /// Licence type.
    pub license_type: Option<String>,
    /// Instance view when expanded.
    pub instance_view: Option<InstanceView>,
}

/// `hardwareProfile`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct HardwareProfile {
    /// VM size.
    pub vm_size: Option<String>,
}

/// `securityProfile`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct SecurityProfile {
    /// Encryption at host.
    pub encryption_at_host: Option<bool>,
    /// `TrustedLaunch` / `ConfidentialVM`.
    pub security_type: Option<String>,
    /// UEFI settings.
    pub uefi_settings: Option<Value>,
}

/// `storageProfile`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct StorageProfile {
    /// OS disk.
    pub os_disk: Option<OsDisk>,
    /// Data disks.
    pub data_disks: Vec<DataDisk>,
    /// Image (image-created VMs).
    pub image_reference: Option<Value>,
}

/// `osDisk`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct OsDisk {
    /// `Windows` / `Linux`.
    pub os_type: Option<String>,
    /// Name.
    pub name: Option<String>,
    /// Create option.
    pub create_option: Option<String>,
    /// Caching.
    pub caching: Option<String>,
    /// The managed disk.
    pub managed_disk: Option<ManagedDiskRef>,
    /// `Delete` / `Detach`.
    pub delete_option: Option<String>,
    /// Dual-pass ADE settings.
    pub encryption_settings: Option<Value>,
    /// Ephemeral OS disk settings.
    pub diff_disk_settings: Option<Value>,
}

/// A data disk entry.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct DataDisk {
    /// LUN.
    pub lun: Option<i64>,
    /// Name.
    pub name: Option<String>,
    /// Create option.
    pub create_option: Option<String>,
    /// Caching.
    pub caching: Option<String>,
    /// The managed disk.
    pub managed_disk: Option<ManagedDiskRef>,
    /// `Delete` / `Detach`.
    pub delete_option: Option<String>,
}

/// `managedDisk`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ManagedDiskRef {
    /// Disk id.
    pub id: Option<String>,
    /// Storage account type.
    pub storage_account_type: Option<String>,
}

/// A VM extension (as a child resource in a VM GET, or its own GET).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Extension {
    /// Resource id.
    pub id: Option<String>,
    /// Name (any; match on publisher + type).
    pub name: Option<String>,
    /// Properties.
    pub properties: Option<ExtensionProperties>,
}

/// Extension properties.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ExtensionProperties {
    /// Publisher.
    pub publisher: Option<String>,
    /// Handler type.
    #[serde(rename = "type")]
    pub handler_type: Option<String>,
    /// Handler version.
    pub type_handler_version: Option<String>,
    /// Public settings.
    pub settings: Option<Value>,
    /// Provisioning state.
    pub provisioning_state: Option<String>,
}

/// A VM instance view.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct InstanceView {
    /// Provisioning and power statuses.
    pub statuses: Vec<Status>,
    /// Per-disk statuses (encryption state).
    pub disks: Vec<DiskInstanceView>,
    /// Per-extension statuses.
    pub extensions: Vec<ExtensionInstanceView>,
}

impl InstanceView {
    /// The `PowerState/x` suffix, if any.
    pub fn power_state(&self) -> Option<&str> {
        self.statuses
            .iter()
            .filter_map(|s| s.code.as_deref())
            .find_map(|c| c.strip_prefix("PowerState/"))
    }
}

/// One status entry.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Status {
    /// Code such as `PowerState/running`.
    pub code: Option<String>,
    /// `Info` / `Warning` / `Error`.
    pub level: Option<String>,
    /// Short text.
    pub display_status: Option<String>,
    /// Long text.
    pub message: Option<String>,
    /// Time.
    pub time: Option<String>,
}

/// A disk in the instance view.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct DiskInstanceView {
    /// Disk name.
    pub name: Option<String>,
    /// ADE settings the guest reports.
    pub encryption_settings: Option<Value>,
    /// Statuses (`EncryptionState/*`).
    pub statuses: Vec<Status>,
}

/// An extension in the instance view.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ExtensionInstanceView {
    /// Extension name.
    pub name: Option<String>,
    /// `publisher.type`.
    #[serde(rename = "type")]
    pub handler_type: Option<String>,
    /// Running handler version.
    pub type_handler_version: Option<String>,
    /// Statuses.
    pub statuses: Vec<Status>,
    /// Sub-statuses.
    pub substatuses: Vec<Status>,
}

/// A managed disk or snapshot.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Disk {
    /// Resource id.
    pub id: Option<String>,
    /// Name.
    pub name: Option<String>,
    /// Region.
    pub location: Option<String>,
    /// Zones.
    pub zones: Vec<String>,
    /// SKU.
    pub sku: Option<Value>,
    /// Tags.
    pub tags: Option<Value>,
    /// The VM it is attached to.
    pub managed_by: Option<String>,
    /// Properties.
    pub properties: Option<DiskProperties>,
}

/// Disk / snapshot properties.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct DiskProperties {
    /// Size in bytes (the SAS blob is 512 longer).
    pub disk_size_bytes: Option<u64>,
    /// Size in GiB.
    #[serde(rename = "diskSizeGB")]
    pub disk_size_gb: Option<u64>,
    /// `Unattached`, `Reserved`, `ActiveSAS`, ...
    pub disk_state: Option<String>,
    /// Provisioning state.
    pub provisioning_state: Option<String>,
    /// OS type (OS disks).
    pub os_type: Option<String>,
    /// `V1` / `V2`.
    pub hyper_v_generation: Option<String>,
    /// How it was created.
    pub creation_data: Option<Value>,
    /// ADE stamp (`encryptionSettingsCollection`).
    pub encryption_settings_collection: Option<Value>,
    /// Server-side encryption.
    pub encryption: Option<Value>,
    /// Security type.
    pub security_profile: Option<Value>,
    /// Unique id (changes when a disk is re-created under the same name).
    pub unique_id: Option<String>,
}

/// `{"accessSAS": "..."}` (beginGetAccess via Location).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct AccessUri {
    /// The SAS URL.
    #[serde(rename = "accessSAS")]
    pub access_sas: Option<String>,
}

/// A subscription feature.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Feature {
    /// `Microsoft.Compute/EncryptionAtHost`.
    pub name: Option<String>,
    /// Properties.
    pub properties: Option<FeatureProperties>,
}

/// Feature properties.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct FeatureProperties {
    /// `Registered`, `NotRegistered`, ... (compare case-insensitively).
    pub state: Option<String>,
}

/// A page of resource SKUs.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct SkuList {
    /// SKUs.
    pub value: Vec<ResourceSku>,
    /// Next page.
    pub next_link: Option<String>,
}

/// One resource SKU.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ResourceSku {
    /// `virtualMachines`, `disks`...
    pub resource_type: Option<String>,
    /// Size name.
    pub name: Option<String>,
    /// Regions.
    pub locations: Vec<String>,
    /// Capabilities (values are strings).
    pub capabilities: Vec<Capability>,
    /// Restrictions.
    pub restrictions: Option<Vec<Value>>,
}

/// A SKU capability.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Capability {
    /// Name.
    pub name: Option<String>,
    /// Value (a string, even for numbers and booleans).
    pub value: Option<String>,
}

impl ResourceSku {
    /// The value of capability `name` (case-insensitive).
    pub fn capability(&self, name: &str) -> Option<&str> {
        self.capabilities
            .iter()
            .find(|c| {
                c.name
                    .as_deref()
                    .is_some_and(|n| n.eq_ignore_ascii_case(name))
            })
            .and_then(|c| c.value.as_deref())
    }
}
