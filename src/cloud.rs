//! The seam between the core and Azure (a port: a trait and plain types,
//! no I/O of its own; it imports only [`crate::model`]).
//!
//! The engine only knows this trait; the read-only discovery adapter
//! ([`crate::discovery`]) reads VMs, disks, the feature and size support
//! through it too. The production implementation
//! ([`crate::engine::arm::ArmCloud`]) wraps the HTTP client, which talks to real
//! ARM or to the built-in emulator: there is no shortcut around the wire.
//! Errors arrive already classified (transient vs terminal) by the client's
//! single classification function; the engine only reads the verdict.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use crate::model::{ResourceId, SasUrl};

/// How the engine should treat a failed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Try again later (conflicts, throttling, 5xx, timeouts, capacity).
    Transient,
    /// Azure holds a resource for a stated time (the NIC reservation after
    /// a VM delete): retry at a steady pace until the hold has passed.
    Held(Duration),
    /// Will not succeed by retrying; the message tells the operator what to do.
    Terminal,
}

/// A failed cloud call, classified, with a message free of secrets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CloudError {
    /// Transient or terminal.
    pub retry: Retry,
    /// Azure error code, when there is one.
    pub code: Option<String>,
    /// Operator-facing message (redacted), including the remedy for terminal errors.
    pub message: String,
    /// A server-requested delay, when one was given.
    pub retry_after: Option<Duration>,
}

impl CloudError {
    /// True when retrying may help.
    pub fn is_transient(&self) -> bool {
        matches!(self.retry, Retry::Transient | Retry::Held(_))
    }
}

/// Result alias for cloud calls.
pub type CloudResult<T> = Result<T, CloudError>;

/// SAS access level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read (source disks).
    Read,
    /// Write (Upload target disks).
    Write,
}

/// Figures from one disk copy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyFigures {
    /// Bytes moved.
    pub bytes_copied: u64,
    /// Bytes the source had allocated.
    pub allocated_bytes: u64,
    /// Blob size (disk size + 512).
    pub blob_size: u64,
    /// Bytes the round had to move in all (its ranges), resumed parts included.
    pub work_bytes: u64,
    /// Write calls made (ranges, split at 4 MiB).
    pub calls: u64,
    /// The round's work list, merged: for a delta round, every range its
    /// source changed since the previous snapshot (written or cleared),
    /// resumed parts included; what a verification must read back.
    pub work: Vec<(u64, u64)>,
}

/// What a verification compared and found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyFigures {
    /// Bytes read back from each side.
    pub compared_bytes: u64,
    /// Differing ranges `[start, end)`.
    pub mismatches: Vec<(u64, u64)>,
}

/// Everything the engine needs from Azure. Reads return raw ARM JSON so the
/// full original model can be journaled; `Ok(None)` means 404.
#[async_trait]
pub trait Cloud: Send + Sync {
    /// GET a VM, optionally with `$expand=instanceView`.
    async fn get_vm(&self, id: &ResourceId, instance_view: bool) -> CloudResult<Option<Value>>;
    /// GET the full VM model to journal: `$expand=userData` plus the
    /// instance view at `properties.instanceView` (two reads).
    async fn get_vm_model(&self, id: &ResourceId) -> CloudResult<Option<Value>>;
    /// GET a managed disk or a snapshot (by the id's type).
    async fn get_disk(&self, id: &ResourceId) -> CloudResult<Option<Value>>;
    /// Is `Microsoft.Compute/EncryptionAtHost` registered on the subscription?
    async fn eah_feature_registered(&self, subscription: &str) -> CloudResult<bool>;
    /// Does `size` support EAH in `location` (`None` = unknown size), and is it restricted?
    async fn size_support(
        &self,
        subscription: &str,
        location: &str,
        size: &str,
    ) -> CloudResult<(Option<bool>, bool)>;
    /// GET a disk encryption set (`Ok(None)`: 404).
    async fn get_disk_encryption_set(&self, id: &ResourceId) -> CloudResult<Option<Value>>;
    /// The resource SKU of VM size `size` in `location`, as JSON
    /// (`name`, `capabilities`, `restrictions`); `None` when not offered.
    async fn vm_sku(
        &self,
        subscription: &str,
        location: &str,
        size: &str,
    ) -> CloudResult<Option<Value>>;
    /// The Compute usages of `location` (`Ok(None)`: 404).
    async fn compute_usages(
        &self,
        subscription: &str,
        location: &str,
    ) -> CloudResult<Option<Vec<Value>>>;
    /// Every management lock at and below the subscription (`Ok(None)`: 404).
    async fn list_locks(&self, subscription: &str) -> CloudResult<Option<Vec<Value>>>;
    /// Run Command on a VM (a read of the guest; waits): the operation's output.
    async fn run_command(&self, vm: &ResourceId, body: &Value) -> CloudResult<Value>;
    /// PUT a VM (create or full update); waits for the operation.
    async fn put_vm(&self, id: &ResourceId, body: &Value) -> CloudResult<()>;
    /// PATCH a VM; waits for the operation.
    async fn patch_vm(&self, id: &ResourceId, body: &Value) -> CloudResult<()>;
    /// DELETE a VM; waits for the operation.
    async fn delete_vm(&self, id: &ResourceId) -> CloudResult<()>;
    /// POST deallocate; waits.
    async fn deallocate_vm(&self, id: &ResourceId) -> CloudResult<()>;
    /// POST start; waits.
    async fn start_vm(&self, id: &ResourceId) -> CloudResult<()>;
    /// PUT a VM extension; waits.
    async fn put_extension(&self, id: &ResourceId, body: &Value) -> CloudResult<()>;
    /// DELETE a VM extension; waits.
    async fn delete_extension(&self, id: &ResourceId) -> CloudResult<()>;
    /// GET the VM's extensions (VirtualMachineExtensions_List, `value[]`).
    async fn list_extensions(&self, vm: &ResourceId) -> CloudResult<Vec<Value>>;
    /// Role assignments of `principal` at, above or below the subscription
    /// (`$filter=principalId eq '{principal}'`), every page.
    async fn list_role_assignments(
        &self,
        subscription: &str,
        principal: &str,
    ) -> CloudResult<Vec<Value>>;
    /// PUT a role assignment by its full id (`{scope}/providers/
    /// Microsoft.Authorization/roleAssignments/{guid}`); synchronous.
    async fn put_role_assignment(&self, id: &str, body: &Value) -> CloudResult<()>;
    /// GET a network interface (`Ok(None)`: 404).
    async fn get_nic(&self, id: &ResourceId) -> CloudResult<Option<Value>>;
    /// PUT a network interface; waits.
    async fn put_nic(&self, id: &ResourceId, body: &Value) -> CloudResult<()>;
    /// DELETE a network interface; waits (a missing one counts as deleted).
    async fn delete_nic(&self, id: &ResourceId) -> CloudResult<()>;
    /// PUT a disk; waits.
    async fn put_disk(&self, id: &ResourceId, body: &Value) -> CloudResult<()>;
    /// PATCH a disk (properties merge); waits.
    async fn patch_disk(&self, id: &ResourceId, body: &Value) -> CloudResult<()>;
    /// DELETE a disk; waits.
    async fn delete_disk(&self, id: &ResourceId) -> CloudResult<()>;
    /// PUT a snapshot; waits.
    async fn put_snapshot(&self, id: &ResourceId, body: &Value) -> CloudResult<()>;
    /// beginGetAccess; returns the SAS URL (never persisted).
    async fn grant_access(
        &self,
        id: &ResourceId,
        access: Access,
        duration: Duration,
    ) -> CloudResult<SasUrl>;
    /// endGetAccess.
    async fn revoke_access(&self, id: &ResourceId) -> CloudResult<()>;
    /// One copy round (`crate::copy::copy_round`): everything allocated in
    /// `src`, or only what changed since `previous`; ranges below
    /// `skip_below` are already in `dst`. `progress` gets `(done, total)`
    /// bytes of the round's work.
    async fn copy_round(
        &self,
        src: &SasUrl,
        previous: Option<&SasUrl>,
        dst: &SasUrl,
        skip_below: u64,
        progress: &(dyn Fn(u64, u64) + Send + Sync),
        checkpoint: &(dyn Fn(u64) + Send + Sync),
    ) -> CloudResult<CopyFigures>;
    /// Ranges (written or cleared) that differ between two snapshots of one disk.
    async fn changed_ranges(&self, newer: &SasUrl, older: &SasUrl) -> CloudResult<Vec<(u64, u64)>>;
    /// The ranges a verification compares (`crate::copy::verify_plan`).
    async fn verify_plan(
        &self,
        src: &SasUrl,
        dst: &SasUrl,
        full: bool,
        must: &[(u64, u64)],
        spot_checks: usize,
        seed: u64,
    ) -> CloudResult<Vec<(u64, u64)>>;
    /// Compares `dst` with `src` over `calls` (`crate::copy::verify_calls`).
    async fn verify_calls(
        &self,
        src: &SasUrl,
        dst: &SasUrl,
        calls: &[(u64, u64)],
    ) -> CloudResult<VerifyFigures>;
}
