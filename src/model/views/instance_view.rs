//! A VM instance view (`properties.instanceView` with
//! `$expand=instanceView`, or the `instanceView` GET).

use serde_json::Value;

use super::{array, str_fields};

/// A VM instance view.
#[derive(Debug, Clone, Copy)]
pub struct InstanceView<'a>(&'a Value);

impl<'a> InstanceView<'a> {
    /// A view of `raw`.
    pub fn new(raw: &'a Value) -> Self {
        InstanceView(raw)
    }

    /// True when the view has a `statuses` key.
    pub fn has_statuses(&self) -> bool {
        self.0.get("statuses").is_some()
    }

    /// VM statuses (`ProvisioningState/*`, `PowerState/*`).
    pub fn statuses(&self) -> impl Iterator<Item = StatusView<'a>> + use<'a> {
        array(self.0, "statuses").iter().map(StatusView)
    }

    /// Per-disk entries (`EncryptionState/*` statuses).
    pub fn disks(&self) -> impl Iterator<Item = DiskStatusView<'a>> + use<'a> {
        array(self.0, "disks").iter().map(DiskStatusView)
    }

    /// Per-extension entries.
    pub fn extensions(&self) -> impl Iterator<Item = ExtensionStatusView<'a>> + use<'a> {
        array(self.0, "extensions").iter().map(ExtensionStatusView)
    }

    /// `vmAgent.statuses` (`ProvisioningState/succeeded` + display status
    /// `Ready` when the guest agent runs).
    pub fn vm_agent_statuses(&self) -> impl Iterator<Item = StatusView<'a>> + use<'a> {
        array(super::object(self.0, "vmAgent"), "statuses")
            .iter()
            .map(StatusView)
    }

    /// The `PowerState/x` suffix as written (`running`, `deallocated`...), if any.
    pub fn power_state(&self) -> Option<&'a str> {
        self.statuses()
            .filter_map(|s| s.code())
            .find_map(|c| c.strip_prefix("PowerState/"))
    }
}

/// One status entry.
#[derive(Debug, Clone, Copy)]
pub struct StatusView<'a>(&'a Value);

impl<'a> StatusView<'a> {
    str_fields! {
        /// Code such as `PowerState/running`.
        code => "code";
        /// `Info` / `Warning` / `Error`.
        level => "level";
        /// Long text.
        message => "message";
        /// Short text (`Ready`, `Provisioning succeeded`).
        display_status => "displayStatus";
    }
}

/// A disk in the instance view.
#[derive(Debug, Clone, Copy)]
pub struct DiskStatusView<'a>(&'a Value);

impl<'a> DiskStatusView<'a> {
    str_fields! {
        /// Disk name.
        name => "name";
    }

    /// Statuses (`EncryptionState/*`), in order.
    pub fn statuses(&self) -> impl Iterator<Item = StatusView<'a>> + use<'a> {
        array(self.0, "statuses").iter().map(StatusView)
    }
}

/// An extension in the instance view.
#[derive(Debug, Clone, Copy)]
pub struct ExtensionStatusView<'a>(&'a Value);

impl<'a> ExtensionStatusView<'a> {
    str_fields! {
        /// Extension name.
        name => "name";
        /// `publisher.type`.
        handler_type => "type";
    }

    /// Statuses, in order.
    pub fn statuses(&self) -> impl Iterator<Item = StatusView<'a>> + use<'a> {
        array(self.0, "statuses").iter().map(StatusView)
    }

    /// Sub-statuses, in order.
    pub fn substatuses(&self) -> impl Iterator<Item = StatusView<'a>> + use<'a> {
        array(self.0, "substatuses").iter().map(StatusView)
    }
}
