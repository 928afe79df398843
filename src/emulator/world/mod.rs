//! The emulated Azure world: VMs, extensions, disks, snapshots, NICs,
//! operations, and the platform rules, as plain synchronous methods that
//! return `Result<_, ArmError>`.
//!
//! Contract: the world advances lazily. [`World::advance`] applies, in
//! simulated-time order, every operation whose completion time has passed,
//! and ticks guest decryption (which only progresses while the VM runs).
//! Callers (the HTTP layer) call it with `SimClock::now()` before each
//! request. Nothing here awaits; callers hold one `std::sync::Mutex`.
//!
//! Layout, by resource; each handler sits next to the effect it makes and
//! that effect's undo: `vm` (VM writes), `vm_rules` (what a VM PUT must
//! pass), `extension`, `disk`, `snapshot` (what sets snapshots apart, and
//! the one disk-or-snapshot accessor), `sas` (grant/revoke access), `nic`
//! (incl. the NIC reservation), `catalog` (SKUs, features), `effects`
//! (operations: the [`Effect`] type, completion, apply/undo dispatch),
//! `guest` (time passing in the guests), `seed` ([`World::add_vm`]), `view`
//! (read side), `governance` (locks, usages). This file holds the shared
//! types and the [`World`] itself.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::{Value, json};

use super::blob::{BlobId, BlobStore, SasAccess};
use super::config::{Durations, EmulatorConfig, SimRange};
use super::fleet::{AdeSpec, DeleteOption, OsKind, VmSpec};
use super::lro::{Final, OpFamily, OpState, Operation, ResourceKind};
use super::rng::Rng;
use crate::model::ResourceId;

mod authorization;
mod catalog;
mod des;
mod disk;
mod effects;
mod extension;
mod governance;
mod guest;
mod nic;
mod permissions;
mod sas;
mod seed;
mod snapshot;
mod view;
mod vm;
mod vm_rules;

use catalog::{Feature, Sku, sku};
pub(crate) use effects::Effect;

const GIB: u64 = 1024 * 1024 * 1024;
const MIB: u64 = 1024 * 1024;
const ADE_PUBLISHER: &str = "Microsoft.Azure.Security";
const ADE_WIN: &str = "AzureDiskEncryption";
const ADE_LINUX: &str = "AzureDiskEncryptionForLinux";
const WIN_ADE_VERSION: &str = "2.2.0.36";

// ---------------------------------------------------------------- errors

/// An ARM error answer: HTTP status plus the `{"error": {...}}` envelope.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ArmError {
    /// HTTP status.
    pub status: u16,
    /// `error.code`.
    pub code: String,
    /// `error.message`.
    pub message: String,
    /// `error.target`.
    pub target: Option<String>,
    /// `error.details`.
    pub details: Option<Value>,
}

impl ArmError {
    /// An error with no target or details.
    pub(crate) fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        ArmError {
            status,
            code: code.into(),
            message: message.into(),
            target: None,
            details: None,
        }
    }

    /// Adds `error.target`.
    pub(crate) fn with_target(mut self, target: &str) -> Self {
        self.target = Some(target.into());
        self
    }

    /// The inner `{code, message, target?, details?}` object.
    pub(crate) fn inner_json(&self) -> Value {
        let mut v = json!({"code": self.code, "message": self.message});
        if let Some(t) = &self.target {
            v["target"] = json!(t);
        }
        if let Some(d) = &self.details {
            v["details"] = d.clone();
        }
        v
    }

    /// The full envelope `{"error": {...}}`.
    pub(crate) fn envelope(&self) -> Value {
        json!({"error": self.inner_json()})
    }

    fn bad_request(code: &str, message: impl Into<String>) -> Self {
        Self::new(400, code, message)
    }

    fn conflict(message: impl Into<String>) -> Self {
        Self::new(409, "OperationNotAllowed", message)
    }

    pub(crate) fn invalid_body(detail: &str) -> Self {
        Self::new(
            400,
            "InvalidRequestContent",
            format!("The request content was invalid and could not be deserialized: {detail}"),
        )
    }
}

fn not_found(rtype: &str, name: &str, rg: &str) -> ArmError {
    ArmError::new(
        404,
        "ResourceNotFound",
        format!("The Resource '{rtype}/{name}' under resource group '{rg}' was not found."),
    )
}

fn not_found_id(id: &str) -> ArmError {
    match ResourceId::parse(id) {
        Ok(r) => not_found(
            &format!("{}/{}", r.namespace(), last_type(&r)),
            r.name(),
            r.resource_group(),
        ),
        Err(_) => ArmError::bad_request(
            "InvalidParameter",
            format!("'{id}' is not a valid resource id."),
        ),
    }
}

fn last_type(r: &ResourceId) -> String {
    r.resource_type()
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_string()
}

// ---------------------------------------------------------------- replies

/// A successful answer of a world method.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    /// HTTP status.
    pub status: u16,
    /// JSON body (none for 202/204 without body).
    pub body: Option<Value>,
    /// The operation to advertise in `Azure-AsyncOperation` (and `Location`).
    pub lro: Option<LroRef>,
}

impl Reply {
    /// 202 Accepted with no body, advertising operation `lro`.
    pub(crate) fn accepted(lro: LroRef) -> Reply {
        Reply {
            status: 202,
            body: None,
            lro: Some(lro),
        }
    }

    /// 204 No Content (nothing to do: the resource is already gone).
    pub(crate) fn no_content() -> Reply {
        Reply {
            status: 204,
            body: None,
            lro: None,
        }
    }
}

/// Operation headers of a reply.
#[derive(Debug, Clone)]
pub(crate) struct LroRef {
    /// Operation id.
    pub id: String,
    /// URL family.
    pub family: OpFamily,
    /// Also send a `Location` header.
    pub location: bool,
    /// Suggested simulated delay before the first poll.
    pub retry_after: f64,
}

/// Answer of a `Location` poll.
#[derive(Debug, Clone)]
pub(crate) enum LocationAnswer {
    /// 202, poll again after this many simulated seconds.
    Running(f64),
    /// 200 with this body.
    Done(Value),
    /// 204.
    NoContent,
    /// Failed: error envelope with this status.
    Failed(ArmError),
}

/// Target of a resource request, as parsed from the path.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// The id as the client sent it (no trailing slash, no query).
    pub id: String,
    /// Resource group as sent.
    pub rg: String,
    /// Resource name as sent.
    pub name: String,
}

impl Target {
    /// Case-folded key.
    pub(crate) fn key(&self) -> String {
        self.id.to_ascii_lowercase()
    }
}

fn key_of(id: &str) -> String {
    id.trim().trim_end_matches('/').to_ascii_lowercase()
}

/// The subscription segment of an ARM id (`/subscriptions/{sub}/...`).
pub(crate) fn sub_of(id: &str) -> &str {
    id.trim_start_matches('/').split('/').nth(1).unwrap_or("")
}

// ---------------------------------------------------------------- resources

/// VM power state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Power {
    Running,
    Starting,
    Stopping,
    Stopped,
    Deallocating,
    Deallocated,
}

impl Power {
    fn code(self) -> &'static str {
        match self {
            Power::Running => "running",
            Power::Starting => "starting",
            Power::Stopping => "stopping",
            Power::Stopped => "stopped",
            Power::Deallocating => "deallocating",
            Power::Deallocated => "deallocated",
        }
    }

    fn display(self) -> &'static str {
        match self {
            Power::Running => "VM running",
            Power::Starting => "VM starting",
            Power::Stopping => "VM stopping",
            Power::Stopped => "VM stopped",
            Power::Deallocating => "VM deallocating",
            Power::Deallocated => "VM deallocated",
        }
    }
}

/// What the ADE guest agent reports.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum AdeGuest {
    /// Volumes encrypted (or the extension reports an enable).
    Encrypted,
    /// Disable accepted; waiting `delay` then decrypting for `remaining` simulated seconds.
    Decrypting {
        delay: f64,
        remaining: f64,
        disks: Vec<String>,
    },
    /// Decryption finished.
    Decrypted,
    /// The handler reported an error.
    Failed(String),
}

/// A VM extension.
#[derive(Debug, Clone)]
pub(crate) struct Ext {
    id: String,
    name: String,
    location: String,
    /// `properties` as last PUT (no provisioningState, no protectedSettings).
    props: Value,
    provisioning: String,
    /// The handler's failure message, when it failed (instance view status).
    error: Option<String>,
    /// Resource `tags`, as last PUT.
    tags: Option<Value>,
}

/// A VM.
#[derive(Debug, Clone)]
pub(crate) struct Vm {
    id: String,
    name: String,
    rg: String,
    /// The stored model: location, zones, tags, identity, plan, properties (no read-only fields).
    model: Value,
    vm_id: String,
    principal_id: Option<String>,
    provisioning: String,
    power: Power,
    ever_ade: bool,
    extensions: BTreeMap<String, Ext>,
    ade: Option<AdeGuest>,
    busy: Option<String>,
    deleting: bool,
    time_created: f64,
}

impl Vm {
    fn os(&self) -> OsKind {
        match self
            .model
            .pointer("/properties/storageProfile/osDisk/osType")
            .and_then(Value::as_str)
        {
            Some(s) if s.eq_ignore_ascii_case("linux") => OsKind::Linux,
            _ => OsKind::Windows,
        }
    }
    fn eah(&self) -> bool {
        eah_of(&self.model)
    }
}

fn zone_of(model: &Value) -> Option<String> {
    model
        .get("zones")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .and_then(Value::as_str)
        .map(str::to_string)
}

fn eah_of(model: &Value) -> bool {
    model
        .pointer("/properties/securityProfile/encryptionAtHost")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// Upload phase of an `Upload` disk not yet finalized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UploadPhase {
    Ready,
    Active,
}

/// A managed disk or snapshot.
#[derive(Debug, Clone)]
pub(crate) struct Disk {
    id: String,
    name: String,
    rg: String,
    location: String,
    zones: Option<Value>,
    sku: String,
    tags: Value,
    size_bytes: u64,
    blob: Option<BlobId>,
    create_option: String,
    upload_size: Option<u64>,
    source_id: Option<String>,
    source_unique: Option<String>,
    os_type: Option<String>,
    hyper_v: Option<String>,
    security: Option<Value>,
    purchase_plan: Option<Value>,
    incremental: Option<bool>,
    unique_id: String,
    time_created: f64,
    managed_by: Option<String>,
    access: Option<SasAccess>,
    upload: Option<UploadPhase>,
    provisioning: String,
    ever_ade: bool,
    ade_enabled: bool,
    guest_encrypted: bool,
    key_vault: Option<String>,
    snapshot: bool,
    /// The settable properties the emulator stores as sent and returns
    /// verbatim (performance, sharing, access; see disk.rs).
    stored: serde_json::Map<String, Value>,
    /// `encryption` as created (`None`: platform keys, the default).
    encryption: Option<Value>,
}

/// A network interface.
#[derive(Debug, Clone)]
pub(crate) struct Nic {
    id: String,
    name: String,
    location: String,
    vm: Option<String>,
    ip: String,
    /// `ipConfigurations[0].properties.subnet.id`.
    subnet: String,
    /// `tags` as sent (`Null` when none).
    tags: Value,
    /// `provisioningState`.
    provisioning: String,
}

// ---------------------------------------------------------------- world

/// All control-plane state of one emulator.
pub(crate) struct World {
    subscription: String,
    location: String,
    eah_refusal_status: u16,
    durations: Durations,
    nic_reservation_secs: f64,
    reserve_swapped_nics: bool,
    decrypt_rate: f64,
    linux_delay: f64,
    feature_secs: f64,
    base_url: String,
    blobs: Arc<BlobStore>,
    rng: Rng,
    start_wall: time::OffsetDateTime,
    last_tick: f64,
    vms: BTreeMap<String, Vm>,
    disks: BTreeMap<String, Disk>,
    snapshots: BTreeMap<String, Disk>,
    nics: BTreeMap<String, Nic>,
    /// NIC key → (reserving VM's vmId-bearing id, until).
    nic_reserved: BTreeMap<String, (String, f64)>,
    ops: BTreeMap<String, Operation>,
    /// Lower-case subscription id → its EncryptionAtHost feature state
    /// (every subscription served has an entry).
    features: BTreeMap<String, Feature>,
    /// VM key → guest write rate (simulated bytes/s) and the bytes owed.
    /// (and the `vmId` of the VM resource it applies to: a re-created VM
    /// under the same name starts idle, so tests can compare its disks)
    churn: BTreeMap<String, (f64, f64, String)>,
    /// VM key → simulated seconds the VM (by name, across re-creation) was
    /// not running since it was added: its downtime.
    offline: BTreeMap<String, f64>,
    /// State of the delayed and one-time injected faults (`../faults.rs`).
    pub(crate) hooks: super::faults::Hooks,
    /// Management locks, backup protection, usage limits.
    pub(crate) gov: super::governance::Governance,
    /// Disk encryption sets by key (des.rs).
    des: BTreeMap<String, des::Des>,
    /// Lower-case VM size → zones where it is restricted for the
    /// subscription (catalog.rs).
    zone_restrictions: BTreeMap<String, BTreeSet<String>>,
    /// Simulated seconds BitLocker keeps decrypting a Windows guest after
    /// ADE reported the volumes decrypted (guest.rs).
    bitlocker_lag: f64,
    /// VM key → simulated running seconds BitLocker still needs in its
    /// guest after ADE reported decrypted (guest.rs).
    bitlocker_left: BTreeMap<String, f64>,
    /// Role assignments by case-folded id (authorization.rs).
    role_assignments: BTreeMap<String, authorization::RoleAssignment>,
    /// `publisher.type` (lower case) → the message its handler fails with
    /// (a seeded extension failure, extension.rs).
    ext_failures: BTreeMap<String, String>,
    /// Denied actions and subscription names (`permissions.rs`).
    pub(crate) access: permissions::Access,
}

impl World {
    /// An empty world.
    pub(crate) fn new(cfg: &EmulatorConfig, blobs: Arc<BlobStore>) -> World {
        World {
            subscription: cfg.subscription.clone(),
            location: cfg.location.clone(),
            eah_refusal_status: cfg.eah_refusal_status,
            durations: cfg.durations.clone(),
            nic_reservation_secs: cfg.nic_reservation_secs,
            reserve_swapped_nics: cfg.reserve_swapped_nics,
            decrypt_rate: cfg.decrypt_bytes_per_sec.max(1.0),
            linux_delay: cfg.linux_decrypt_delay_secs,
            feature_secs: cfg.feature_registration_secs,
            base_url: String::new(),
            blobs,
            rng: Rng::new(cfg.seed),
            start_wall: time::OffsetDateTime::now_utc(),
            last_tick: 0.0,
            vms: BTreeMap::new(),
            disks: BTreeMap::new(),
            snapshots: BTreeMap::new(),
            nics: BTreeMap::new(),
            nic_reserved: BTreeMap::new(),
            ops: BTreeMap::new(),
            features: std::iter::once((&cfg.subscription, cfg.eah_feature_registered))
                .chain(
                    cfg.extra_subscriptions
                        .iter()
                        .map(|s| (&s.id, s.eah_feature_registered)),
                )
                .map(|(id, on)| {
                    let state = if on {
                        Feature::Registered
                    } else {
                        Feature::NotRegistered
                    };
                    (id.to_ascii_lowercase(), state)
                })
                .collect(),
            churn: BTreeMap::new(),
            offline: BTreeMap::new(),
            hooks: Default::default(),
            gov: Default::default(),
            des: BTreeMap::new(),
            zone_restrictions: BTreeMap::new(),
            bitlocker_lag: cfg.windows_bitlocker_lag_secs.max(0.0),
            bitlocker_left: BTreeMap::new(),
            role_assignments: BTreeMap::new(),
            ext_failures: BTreeMap::new(),
            access: Default::default(),
        }
    }

    /// Sets the listener's base URL (used in messages).
    pub(crate) fn set_base_url(&mut self, base: &str) {
        self.base_url = base.to_string();
    }

    /// The subscription served.
    pub(crate) fn subscription(&self) -> &str {
        &self.subscription
    }

    /// Whether subscription `sub` is served (case-insensitive).
    pub(crate) fn serves(&self, sub: &str) -> bool {
        self.features.contains_key(&sub.to_ascii_lowercase())
    }

    /// The region served.
    pub(crate) fn location(&self) -> &str {
        &self.location
    }

    /// RFC 3339 wall-clock rendering of simulated time `t`.
    pub(crate) fn fmt_time(&self, t: f64) -> String {
        let at = self.start_wall + time::Duration::seconds_f64(t.max(0.0));
        at.format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    }

    fn draw(&mut self, r: SimRange) -> f64 {
        self.rng.range(r.min, r.max)
    }

    fn rg_id(&self, rg: &str) -> String {
        format!("/subscriptions/{}/resourceGroups/{rg}", self.subscription)
    }

    /// The blob behind a disk or snapshot id.
    pub(crate) fn blob_of(&self, id: &str) -> Option<BlobId> {
        self.disk_or_snapshot(id).and_then(|d| d.blob.clone())
    }
}

fn delete_opt(v: Option<&Value>) -> DeleteOption {
    match v.and_then(Value::as_str) {
        Some(s) if s.eq_ignore_ascii_case("Delete") => DeleteOption::Delete,
        _ => DeleteOption::Detach,
    }
}

/// (OS disk, data disks, NICs) keys with their delete options.
#[allow(clippy::type_complexity)]
fn model_refs(
    model: &Value,
) -> (
    Option<(String, DeleteOption)>,
    Vec<(i64, String, DeleteOption)>,
    Vec<(String, DeleteOption)>,
) {
    let sp = model.pointer("/properties/storageProfile");
    let os = sp.and_then(|s| s.get("osDisk")).and_then(|o| {
        o.pointer("/managedDisk/id")
            .and_then(Value::as_str)
            .map(|id| (key_of(id), delete_opt(o.get("deleteOption"))))
    });
    let data = sp
        .and_then(|s| s.get("dataDisks"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|d| {
                    Some((
                        d.get("lun").and_then(Value::as_i64).unwrap_or(-1),
                        key_of(d.pointer("/managedDisk/id")?.as_str()?),
                        delete_opt(d.get("deleteOption")),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    let nics = model
        .pointer("/properties/networkProfile/networkInterfaces")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|n| {
                    Some((
                        key_of(n.get("id")?.as_str()?),
                        delete_opt(n.pointer("/properties/deleteOption")),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    (os, data, nics)
}
