//! A VM extension (`Microsoft.Compute/virtualMachines/extensions`), as a
//! child resource in a VM GET (`resources[]`) or from its own GET.

use serde_json::Value;

use super::{object, present, raw_fields, str_fields, string};

/// Extension `properties` carried verbatim by a reinstall (the writable
/// ones of VirtualMachineExtensionProperties, 2024-11-01, except
/// `protectedSettings`, which ARM never returns, and `instanceView`).
pub const CARRIED_PROPERTIES: [&str; 8] = [
    "typeHandlerVersion",
    "forceUpdateTag",
    "autoUpgradeMinorVersion",
    "enableAutomaticUpgrade",
    "settings",
    "suppressFailures",
    "provisionAfterExtensions",
    "protectedSettingsFromKeyVault",
];

/// A VM extension model.
#[derive(Debug, Clone, Copy)]
pub struct ExtensionModel<'a>(&'a Value);

impl<'a> ExtensionModel<'a> {
    /// A view of `raw`.
    pub fn new(raw: &'a Value) -> Self {
        ExtensionModel(raw)
    }

    /// The model exactly as read.
    pub fn raw(&self) -> &'a Value {
        self.0
    }

    str_fields! {
        /// Resource id (as written, not parsed).
        id => "id";
        /// Resource name (any: Terraform and templates choose names).
        name => "name";
    }

    raw_fields! {
        /// `location` verbatim.
        location_value => "location";
        /// `tags` verbatim.
        tags_value => "tags";
    }

    fn properties(&self) -> &'a Value {
        object(self.0, "properties")
    }

    /// The `properties` a reinstall carries verbatim besides publisher and
    /// type, as `(name, value)` for those present (non-null).
    pub fn carried_properties(&self) -> impl Iterator<Item = (&'static str, &'a Value)> + use<'a> {
        let props = self.properties();
        CARRIED_PROPERTIES
            .into_iter()
            .filter_map(move |k| present(props, k).map(|v| (k, v)))
    }

    fn settings(&self) -> &'a Value {
        object(self.properties(), "settings")
    }

    /// `properties.settings` (public settings) verbatim.
    pub fn settings_value(&self) -> Option<&'a Value> {
        present(self.properties(), "settings")
    }

    /// `properties.protectedSettingsFromKeyVault` (a Key Vault secret
    /// reference, not a secret), verbatim.
    pub fn protected_settings_from_key_vault(&self) -> Option<&'a Value> {
        present(self.properties(), "protectedSettingsFromKeyVault")
    }

    /// `properties.publisher`.
    pub fn publisher(&self) -> Option<&'a str> {
        string(self.properties(), "publisher")
    }

    /// `properties.type` (the handler type, e.g. `AzureDiskEncryption`).
    pub fn handler_type(&self) -> Option<&'a str> {
        string(self.properties(), "type")
    }

    /// `properties.typeHandlerVersion`.
    pub fn type_handler_version(&self) -> Option<&'a str> {
        string(self.properties(), "typeHandlerVersion")
    }

    /// `properties.provisioningState`.
    pub fn provisioning_state(&self) -> Option<&'a str> {
        string(self.properties(), "provisioningState")
    }

    /// ADE public setting `properties.settings.EncryptionOperation`.
    pub fn encryption_operation(&self) -> Option<&'a str> {
        string(self.settings(), "EncryptionOperation")
    }

    /// A public setting `properties.settings.<key>` as a string (ADE:
    /// `KeyVaultURL`, `KeyVaultResourceId`, `KeyEncryptionKeyURL`,
    /// `KekVaultResourceId`).
    pub fn setting(&self, key: &str) -> Option<&'a str> {
        string(self.settings(), key)
    }

    /// ADE public setting `properties.settings.VolumeType`.
    pub fn volume_type(&self) -> Option<&'a str> {
        string(self.settings(), "VolumeType")
    }
}
