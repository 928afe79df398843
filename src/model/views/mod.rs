//! Typed views of the ARM payloads the core reads: the VM model
//! ([`VmModel`]), a managed disk or snapshot ([`DiskModel`]), a VM extension
//! ([`ExtensionModel`]), an instance view ([`InstanceView`]) and the few
//! inventory answers `plan` reads (locks, backup status, usages).
//!
//! A view is a `Copy` handle over the JSON exactly as Azure sent it (the body
//! the client keeps as `Fetched::raw`, the model the journal stores). Each
//! accessor names one property once, here, so a typo in a property name is a
//! compile error at the call site instead of a silent `None`; the property
//! names are tested against Microsoft's example payloads.
//!
//! Why views over the raw JSON rather than owned structs: nothing is lost.
//! Every property the tool does not know about stays in the JSON verbatim
//! (reachable through `raw()` at every level the re-create and target-disk
//! bodies need: VM, `properties`, `storageProfile`, `osDisk`, each data disk,
//! each NIC reference, the disk and its `properties`), explicit `null`s
//! included, and the journaled model is the same bytes as before. Reads keep
//! the tolerant semantics of the wire types: a property of an unexpected
//! JSON type reads as absent, it never fails the whole model.
//!
//! Conventions: `Option<&str>` / `Option<bool>` / `Option<i64>` accessors
//! read a property of that JSON type; accessors returning `Option<&Value>`
//! give a property verbatim for the body builders and treat an explicit
//! `null` as absent (ARM's "not set").

mod disk;
mod extension;
mod instance_view;
mod inventory;
mod vm;

pub use disk::{DiskModel, SnapshotModel};
pub use extension::{CARRIED_PROPERTIES, ExtensionModel};
pub use instance_view::{DiskStatusView, ExtensionStatusView, InstanceView, StatusView};
pub use inventory::{BackupStatus, DesModel, LockModel, SkuModel, UsageModel};
pub use vm::{DataDisk, Identity, NicRef, OsDisk, StorageProfile, VmModel, VmProperties};

use serde_json::Value;

/// The `null` a missing sub-object reads as: accessors on it return `None`.
static NULL: Value = Value::Null;

/// `v[key]` when present and not `null`.
fn present<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.get(key).filter(|x| !x.is_null())
}

/// `v[key]` as a string.
fn string<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// `v[key]` as an object view (the `null` view when absent).
fn object<'a>(v: &'a Value, key: &str) -> &'a Value {
    v.get(key).unwrap_or(&NULL)
}

/// `v[key]` as a slice of array elements (empty when absent or not an array).
fn array<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// Accessors returning a property verbatim (non-null), one per line:
/// `fn_name => "jsonName";`.
macro_rules! raw_fields {
    ($($(#[$doc:meta])* $name:ident => $key:literal;)*) => {
        $(
            $(#[$doc])*
            pub fn $name(&self) -> Option<&'a Value> {
                super::present(self.0, $key)
            }
        )*
    };
}

/// Accessors returning a string property, one per line: `fn_name => "jsonName";`.
macro_rules! str_fields {
    ($($(#[$doc:meta])* $name:ident => $key:literal;)*) => {
        $(
            $(#[$doc])*
            pub fn $name(&self) -> Option<&'a str> {
                super::string(self.0, $key)
            }
        )*
    };
}

pub(crate) use raw_fields;
pub(crate) use str_fields;

#[cfg(test)]
mod tests;
