//! ARM long-running operations: their record, status body and `Location`
//! answer, exactly as docs/contracts.md fixes them.

use serde_json::{Value, json};

use super::world::{ArmError, Effect};

/// Which polling URL family an operation uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpFamily {
    /// `.../locations/{loc}/operations/{id}` (VMs, extensions).
    Compute,
    /// `.../locations/{loc}/DiskOperations/{id}` (disks, snapshots).
    Disk,
    /// `Microsoft.Network/locations/{loc}/operations/{id}` (NICs).
    Network,
}

/// What a finished operation's `Location` poll returns.
#[derive(Debug, Clone)]
pub(crate) enum Final {
    /// 200 with the resource's current GET body (by kind and key).
    Resource(ResourceKind, String),
    /// 200 with this body.
    Body(Value),
    /// 204.
    NoContent,
}

/// Resource kinds that can be a final body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResourceKind {
    /// A VM.
    Vm,
    /// A VM extension (key = `vmkey/extensions/name`).
    Extension,
    /// A disk.
    Disk,
    /// A snapshot.
    Snapshot,
    /// A network interface.
    Nic,
}

/// State of an operation.
#[derive(Debug, Clone)]
pub(crate) enum OpState {
    /// Still running.
    InProgress,
    /// Done, effect applied.
    Succeeded,
    /// Done, effect not applied (or partly, as the facts describe).
    Failed(ArmError),
}

/// One long-running operation.
#[derive(Debug)]
pub(crate) struct Operation {
    /// Operation id (a GUID).
    pub id: String,
    /// Simulated start time.
    pub start: f64,
    /// Simulated completion time.
    pub done_at: f64,
    /// Simulated end time once finished.
    pub end: Option<f64>,
    /// Current state.
    pub state: OpState,
    /// The effect applied at `done_at` (taken when applied).
    pub effect: Option<Effect>,
    /// Injected fault: end `Failed` with `InternalOperationError`.
    pub inject_failure: bool,
    /// `properties.output` of the status body (beginGetAccess: `accessSAS`).
    pub output: Option<Value>,
    /// What `Location` returns once succeeded.
    pub final_body: Final,
}

impl Operation {
    /// True when still running.
    pub(crate) fn running(&self) -> bool {
        matches!(self.state, OpState::InProgress)
    }

    /// The `Azure-AsyncOperation` status body.
    pub(crate) fn status_body(&self, fmt_time: impl Fn(f64) -> String) -> Value {
        let mut v = json!({
            "name": self.id,
            "status": match self.state {
                OpState::InProgress => "InProgress",
                OpState::Succeeded => "Succeeded",
                OpState::Failed(_) => "Failed",
            },
            "startTime": fmt_time(self.start),
        });
        if let Some(end) = self.end {
            v["endTime"] = json!(fmt_time(end));
        }
        if let OpState::Failed(e) = &self.state {
            v["error"] = e.inner_json();
        }
        if let (OpState::Succeeded, Some(out)) = (&self.state, &self.output) {
            v["properties"] = json!({ "output": out });
        }
        v
    }
}
