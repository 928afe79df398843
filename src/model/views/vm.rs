//! The VM model (`Microsoft.Compute/virtualMachines`, ComputeRP 2024-11-01):
//! the parts the core reads, each level keeping its JSON verbatim.

use serde_json::{Map, Value};

use super::{
    ExtensionModel, InstanceView, NULL, array, object, present, raw_fields, str_fields, string,
};

/// A VM GET body (with or without `$expand=instanceView`), or the journaled
/// original model.
#[derive(Debug, Clone, Copy)]
pub struct VmModel<'a>(&'a Value);

impl<'a> VmModel<'a> {
    /// A view of `raw` (any JSON; a non-object reads as an empty model).
    pub fn new(raw: &'a Value) -> Self {
        VmModel(raw)
    }

    /// The model exactly as read, unknown properties included.
    pub fn raw(&self) -> &'a Value {
        self.0
    }

    str_fields! {
        /// Resource id (as written, not parsed).
        id => "id";
        /// Resource name.
        name => "name";
        /// Region.
        location => "location";
    }

    raw_fields! {
        /// `zones` verbatim.
        zones => "zones";
        /// `tags` verbatim.
        tags => "tags";
        /// Marketplace `plan` verbatim.
        plan => "plan";
        /// `extendedLocation` (edge zones) verbatim.
        extended_location => "extendedLocation";
    }

    /// `location` verbatim (`null` when absent).
    pub fn location_value(&self) -> &'a Value {
        object(self.0, "location")
    }

    /// `tags`, when it is an object.
    pub fn tag_map(&self) -> Option<&'a Map<String, Value>> {
        self.0.get("tags").and_then(Value::as_object)
    }

    /// The value of tag `key` (exact key), when it is a string.
    pub fn tag(&self, key: &str) -> Option<&'a str> {
        string(object(self.0, "tags"), key)
    }

    /// The first zone, if the VM is zonal.
    pub fn zone(&self) -> Option<&'a str> {
        self.zones()
            .and_then(Value::as_array)
            .and_then(|z| z.first())
            .and_then(Value::as_str)
    }

    /// `identity`, when it is an object.
    pub fn identity(&self) -> Option<Identity<'a>> {
        self.0
            .get("identity")
            .filter(|v| v.is_object())
            .map(Identity)
    }

    /// `properties`.
    pub fn properties(&self) -> VmProperties<'a> {
        VmProperties(object(self.0, "properties"))
    }

    /// Shorthand for `properties().storage_profile()`.
    pub fn storage_profile(&self) -> StorageProfile<'a> {
        self.properties().storage_profile()
    }

    /// The extensions listed as child resources (`resources[]`), in order.
    pub fn extensions(&self) -> impl Iterator<Item = ExtensionModel<'a>> + use<'a> {
        array(self.0, "resources").iter().map(ExtensionModel::new)
    }

    /// The managed-disk ids the model attaches: the OS disk first, then the
    /// data disks in model order (ids as written, not parsed).
    pub fn attached_disk_ids(&self) -> Vec<&'a str> {
        let sp = self.storage_profile();
        let os = sp.os_disk().and_then(|d| d.managed_disk_id());
        os.into_iter()
            .chain(sp.data_disks().filter_map(|d| d.managed_disk_id()))
            .collect()
    }
}

/// `identity`.
#[derive(Debug, Clone, Copy)]
pub struct Identity<'a>(&'a Value);

impl<'a> Identity<'a> {
    str_fields! {
        /// `SystemAssigned`, `UserAssigned`, `SystemAssigned, UserAssigned`, `None`.
        kind => "type";
        /// The system-assigned principal.
        principal_id => "principalId";
    }

    /// `type` verbatim (`null` when absent).
    pub fn kind_value(&self) -> &'a Value {
        object(self.0, "type")
    }

    /// `userAssignedIdentities` (resource id → ids), when it is an object.
    pub fn user_assigned(&self) -> Option<&'a Map<String, Value>> {
        self.0
            .get("userAssignedIdentities")
            .and_then(Value::as_object)
    }
}

/// The VM's `properties`.
#[derive(Debug, Clone, Copy)]
pub struct VmProperties<'a>(&'a Value);

impl<'a> VmProperties<'a> {
    /// `properties` exactly as read.
    pub fn raw(&self) -> &'a Value {
        self.0
    }

    str_fields! {
        /// `vmId` (a new GUID for every created VM resource).
        vm_id => "vmId";
        /// `provisioningState`.
        provisioning_state => "provisioningState";
    }

    raw_fields! {
        /// `hardwareProfile` verbatim.
        hardware_profile => "hardwareProfile";
        /// `diagnosticsProfile` verbatim.
        diagnostics_profile => "diagnosticsProfile";
        /// `licenseType` verbatim.
        license_type => "licenseType";
        /// `availabilitySet` verbatim.
        availability_set => "availabilitySet";
        /// `proximityPlacementGroup` verbatim.
        proximity_placement_group => "proximityPlacementGroup";
        /// `priority` verbatim.
        priority => "priority";
        /// `evictionPolicy` verbatim.
        eviction_policy => "evictionPolicy";
        /// `billingProfile` verbatim.
        billing_profile => "billingProfile";
        /// `additionalCapabilities` verbatim.
        additional_capabilities => "additionalCapabilities";
        /// `host` verbatim.
        host => "host";
        /// `hostGroup` verbatim.
        host_group => "hostGroup";
        /// `capacityReservation` verbatim.
        capacity_reservation => "capacityReservation";
        /// `scheduledEventsProfile` verbatim.
        scheduled_events_profile => "scheduledEventsProfile";
        /// `userData` verbatim.
        user_data => "userData";
        /// `osProfile` verbatim (VMs created from an image; never a password).
        os_profile => "osProfile";
    }

    /// `hardwareProfile.vmSize`.
    pub fn vm_size(&self) -> Option<&'a str> {
        string(object(self.0, "hardwareProfile"), "vmSize")
    }

    /// `securityProfile` verbatim, when it is an object.
    pub fn security_profile(&self) -> Option<&'a Value> {
        self.0.get("securityProfile").filter(|v| v.is_object())
    }

    /// `securityProfile.encryptionAtHost`.
    pub fn encryption_at_host(&self) -> Option<bool> {
        object(self.0, "securityProfile")
            .get("encryptionAtHost")
            .and_then(Value::as_bool)
    }

    /// `securityProfile.securityType` (`TrustedLaunch`, `ConfidentialVM`).
    pub fn security_type(&self) -> Option<&'a str> {
        string(object(self.0, "securityProfile"), "securityType")
    }

    /// `storageProfile`.
    pub fn storage_profile(&self) -> StorageProfile<'a> {
        StorageProfile(object(self.0, "storageProfile"))
    }

    /// `networkProfile.networkInterfaces[]`, in order.
    pub fn network_interfaces(&self) -> impl Iterator<Item = NicRef<'a>> + use<'a> {
        array(object(self.0, "networkProfile"), "networkInterfaces")
            .iter()
            .map(NicRef)
    }

    /// `instanceView` (present with `$expand=instanceView`).
    pub fn instance_view(&self) -> Option<InstanceView<'a>> {
        present(self.0, "instanceView").map(InstanceView::new)
    }
}

/// `storageProfile`.
#[derive(Debug, Clone, Copy)]
pub struct StorageProfile<'a>(&'a Value);

impl<'a> StorageProfile<'a> {
    /// `storageProfile` exactly as read.
    pub fn raw(&self) -> &'a Value {
        self.0
    }

    /// `imageReference` verbatim (VMs created from an image).
    pub fn image_reference(&self) -> Option<&'a Value> {
        super::present(self.0, "imageReference")
    }

    /// `osDisk`, when the key is there.
    pub fn os_disk(&self) -> Option<OsDisk<'a>> {
        self.0.get("osDisk").map(OsDisk)
    }

    /// `dataDisks[]`, in model order.
    pub fn data_disks(&self) -> impl Iterator<Item = DataDisk<'a>> + use<'a> {
        array(self.0, "dataDisks").iter().map(DataDisk)
    }

    /// The data disk at `lun`, if any.
    pub fn data_disk(&self, lun: i64) -> Option<DataDisk<'a>> {
        self.data_disks().find(|d| d.lun() == Some(lun))
    }
}

/// `storageProfile.osDisk`.
#[derive(Debug, Clone, Copy)]
pub struct OsDisk<'a>(&'a Value);

impl<'a> OsDisk<'a> {
    /// The OS disk entry exactly as read.
    pub fn raw(&self) -> &'a Value {
        self.0
    }

    str_fields! {
        /// `Windows` / `Linux`.
        os_type => "osType";
        /// `Delete` / `Detach`.
        delete_option => "deleteOption";
    }

    raw_fields! {
        /// `caching` verbatim.
        caching => "caching";
        /// `writeAcceleratorEnabled` verbatim.
        write_accelerator_enabled => "writeAcceleratorEnabled";
        /// Dual-pass ADE settings (`encryptionSettings`) verbatim.
        encryption_settings => "encryptionSettings";
        /// Ephemeral OS disk settings (`diffDiskSettings`) verbatim.
        diff_disk_settings => "diffDiskSettings";
        /// `diskSizeGB` verbatim.
        disk_size_gb => "diskSizeGB";
    }

    /// `osType` verbatim (`null` when absent).
    pub fn os_type_value(&self) -> &'a Value {
        object(self.0, "osType")
    }

    /// `deleteOption` verbatim (an explicit `null` included).
    pub fn delete_option_value(&self) -> Option<&'a Value> {
        self.0.get("deleteOption")
    }

    /// `managedDisk.id` (as written, not parsed).
    pub fn managed_disk_id(&self) -> Option<&'a str> {
        string(object(self.0, "managedDisk"), "id")
    }
}

/// One entry of `storageProfile.dataDisks[]`.
#[derive(Debug, Clone, Copy)]
pub struct DataDisk<'a>(&'a Value);

impl<'a> DataDisk<'a> {
    /// The data disk entry exactly as read.
    pub fn raw(&self) -> &'a Value {
        self.0
    }

    str_fields! {
        /// `Delete` / `Detach`.
        delete_option => "deleteOption";
    }

    raw_fields! {
        /// `lun` verbatim.
        lun_value => "lun";
        /// `caching` verbatim.
        caching => "caching";
        /// `writeAcceleratorEnabled` verbatim.
        write_accelerator_enabled => "writeAcceleratorEnabled";
        /// `diskSizeGB` verbatim.
        disk_size_gb => "diskSizeGB";
    }

    /// `lun`.
    pub fn lun(&self) -> Option<i64> {
        self.0.get("lun").and_then(Value::as_i64)
    }

    /// `deleteOption` verbatim (an explicit `null` included).
    pub fn delete_option_value(&self) -> Option<&'a Value> {
        self.0.get("deleteOption")
    }

    /// `managedDisk.id` (as written, not parsed).
    pub fn managed_disk_id(&self) -> Option<&'a str> {
        string(object(self.0, "managedDisk"), "id")
    }
}

/// One entry of `networkProfile.networkInterfaces[]` (a reference to a NIC).
#[derive(Debug, Clone, Copy)]
pub struct NicRef<'a>(&'a Value);

impl<'a> NicRef<'a> {
    /// The reference exactly as read.
    pub fn raw(&self) -> &'a Value {
        self.0
    }

    str_fields! {
        /// NIC resource id.
        id => "id";
    }

    /// `id` verbatim (`null` when absent).
    pub fn id_value(&self) -> &'a Value {
        object(self.0, "id")
    }

    /// The reference's `properties` verbatim (`primary`, `deleteOption`, ...).
    pub fn properties(&self) -> Option<&'a Value> {
        present(self.0, "properties")
    }

    /// `properties.primary` verbatim.
    pub fn primary(&self) -> Option<&'a Value> {
        present(self.properties().unwrap_or(&NULL), "primary")
    }

    /// `properties.deleteOption` verbatim.
    pub fn delete_option_value(&self) -> Option<&'a Value> {
        present(self.properties().unwrap_or(&NULL), "deleteOption")
    }

    /// `properties.deleteOption` (`Delete` / `Detach`).
    pub fn delete_option(&self) -> Option<&'a str> {
        string(self.properties().unwrap_or(&NULL), "deleteOption")
    }
}
