//! The emulated Azure world: VMs, extensions, disks, snapshots, NICs,
//! operations, and the platform rules, as plain synchronous methods that
//! return `Result<_, ArmError>`.
//!
//! Contract: the world advances lazily. [`World::advance`] applies, in
//! simulated-time order, every operation whose completion time has passed,
//! and ticks guest decryption (which only progresses while the VM runs).
//! Callers (the HTTP layer) call it with `SimClock::now()` before each
//! request. Nothing here awaits; callers hold one `std::sync::Mutex`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::{Value, json};

use super::blob::{BlobId, BlobStore, SasAccess};
use super::config::{Durations, EmulatorConfig, SimRange};
use super::faults::Rng;
use super::fleet::{AdeSpec, DeleteOption, OsKind, VmSpec};
use super::lro::{Final, OpFamily, OpState, Operation, ResourceKind};
use crate::model::ResourceId;

const GIB: u64 = 1024 * 1024 * 1024;
const MIB: u64 = 1024 * 1024;
const MAX_SAS_SECS: u64 = 5_184_000;
const MIN_UPLOAD: u64 = 20_972_032;
const MAX_UPLOAD: u64 = 35_183_298_347_520;
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
}

impl Ext {
    fn publisher(&self) -> &str {
        self.props
            .get("publisher")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }
    fn etype(&self) -> &str {
        self.props
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }
    fn is_ade(&self) -> bool {
        self.publisher().eq_ignore_ascii_case(ADE_PUBLISHER)
            && (self.etype().eq_ignore_ascii_case(ADE_WIN)
                || self.etype().eq_ignore_ascii_case(ADE_LINUX))
    }
    fn operation(&self) -> String {
        self.props
            .pointer("/settings/EncryptionOperation")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_ascii_lowercase()
    }
    fn volume_type(&self) -> String {
        self.props
            .pointer("/settings/VolumeType")
            .and_then(Value::as_str)
            .unwrap_or("All")
            .to_ascii_lowercase()
    }
    fn body(&self) -> Value {
        let mut props = self.props.clone();
        props["provisioningState"] = json!(self.provisioning);
        json!({
            "id": self.id, "name": self.name, "type": "Microsoft.Compute/virtualMachines/extensions",
            "location": self.location, "properties": props,
        })
    }
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
}

/// A network interface.
#[derive(Debug, Clone)]
pub(crate) struct Nic {
    id: String,
    name: String,
    location: String,
    vm: Option<String>,
    ip: String,
}

/// What an operation does when it completes.
#[derive(Debug, Clone)]
pub(crate) enum Effect {
    VmCreate {
        vm: String,
    },
    VmUpdate {
        vm: String,
        model: Value,
        added_disks: Vec<String>,
        added_nics: Vec<String>,
    },
    VmDelete {
        vm: String,
    },
    VmPower {
        vm: String,
        target: Power,
        prev: Power,
    },
    ExtPut {
        vm: String,
        name: String,
        prev: Option<Ext>,
    },
    ExtDelete {
        vm: String,
        name: String,
    },
    DiskCreate {
        key: String,
        snapshot: bool,
        new: bool,
    },
    DiskDelete {
        key: String,
        snapshot: bool,
    },
    Grant {
        key: String,
        snapshot: bool,
        access: SasAccess,
        duration: f64,
    },
    Revoke {
        key: String,
        snapshot: bool,
    },
}

struct Sku {
    name: &'static str,
    family: &'static str,
    eah: bool,
    hyperv: &'static str,
    vcpus: u32,
    mem_gb: u32,
    restricted: bool,
}

const SKUS: &[Sku] = &[
    Sku {
        name: "Standard_D2s_v3",
        family: "standardDSv3Family",
        eah: true,
        hyperv: "V1,V2",
        vcpus: 2,
        mem_gb: 8,
        restricted: false,
    },
    Sku {
        name: "Standard_D4s_v5",
        family: "standardDSv5Family",
        eah: true,
        hyperv: "V1,V2",
        vcpus: 4,
        mem_gb: 16,
        restricted: false,
    },
    Sku {
        name: "Standard_D8s_v5",
        family: "standardDSv5Family",
        eah: true,
        hyperv: "V1,V2",
        vcpus: 8,
        mem_gb: 32,
        restricted: false,
    },
    Sku {
        name: "Standard_E8s_v5",
        family: "standardESv5Family",
        eah: true,
        hyperv: "V1,V2",
        vcpus: 8,
        mem_gb: 64,
        restricted: false,
    },
    Sku {
        name: "Standard_DS1_v2",
        family: "standardDSv2Family",
        eah: true,
        hyperv: "V1,V2",
        vcpus: 1,
        mem_gb: 3,
        restricted: false,
    },
    Sku {
        name: "Standard_A2_v2",
        family: "standardAv2Family",
        eah: false,
        hyperv: "V1",
        vcpus: 2,
        mem_gb: 4,
        restricted: false,
    },
    Sku {
        name: "Standard_M416ms_v2",
        family: "standardMSv2Family",
        eah: true,
        hyperv: "V1,V2",
        vcpus: 416,
        mem_gb: 11400,
        restricted: true,
    },
];

fn sku(name: &str) -> Option<&'static Sku> {
    SKUS.iter().find(|s| s.name.eq_ignore_ascii_case(name))
}

/// Feature registration state.
#[derive(Debug, Clone, Copy)]
enum Feature {
    NotRegistered,
    Registering(f64),
    Registered,
}

// ---------------------------------------------------------------- world

/// All control-plane state of one emulator.
pub(crate) struct World {
    subscription: String,
    location: String,
    eah_refusal_status: u16,
    durations: Durations,
    nic_reservation_secs: f64,
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
    /// State of the delayed and one-time injected faults (`faults.rs`).
    pub(crate) hooks: super::faults::Hooks,
    /// Management locks, backup protection, usage limits.
    pub(crate) gov: super::governance::Governance,
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
        }
    }

    /// Simulated seconds the VM `key` has not been running since it was added.
    pub(crate) fn offline_secs(&self, id: &str) -> Option<f64> {
        self.offline.get(&key_of(id)).copied()
    }

    /// Sets the guest write rate of VM `id` (simulated bytes per second).
    pub(crate) fn set_churn(&mut self, id: &str, bytes_per_sec: f64) {
        let key = key_of(id);
        if bytes_per_sec > 0.0 {
            let vm_id = self
                .vms
                .get(&key)
                .map(|v| v.vm_id.clone())
                .unwrap_or_default();
            self.churn.insert(key, (bytes_per_sec, 0.0, vm_id));
        } else {
            self.churn.remove(&key);
        }
    }

    /// Applies `dt` seconds of guest writes to every running VM with churn:
    /// 1 MiB-or-larger writes (about one in ten a TRIM) at seeded random
    /// page-aligned offsets of its attached disks, footer excluded.
    fn churn_tick(&mut self, dt: f64) {
        const MIB: u64 = 1 << 20;
        let mut due: Vec<(Vec<(BlobId, u64)>, u64)> = Vec::new();
        for (key, (rate, owed, vm_id)) in self.churn.iter_mut() {
            let Some(vm) = self.vms.get(key) else {
                continue;
            };
            if vm.power != Power::Running || vm.deleting || &vm.vm_id != vm_id {
                continue;
            }
            *owed += *rate * dt;
            let bytes = (*owed as u64 / MIB) * MIB;
            if bytes == 0 {
                continue;
            }
            *owed -= bytes as f64;
            let sp = vm.model.pointer("/properties/storageProfile");
            let ids = sp
                .and_then(|s| s.pointer("/osDisk/managedDisk/id"))
                .into_iter()
                .chain(
                    sp.and_then(|s| s.get("dataDisks"))
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(|d| d.pointer("/managedDisk/id")),
                )
                .filter_map(Value::as_str);
            let targets: Vec<(BlobId, u64)> = ids
                .filter_map(|id| self.disks.get(&key_of(id)))
                .filter_map(|d| d.blob.clone().map(|b| (b, d.size_bytes)))
                .filter(|(_, size)| *size > 2 * MIB)
                .collect();
            if !targets.is_empty() {
                due.push((targets, bytes));
            }
        }
        for (targets, bytes) in due {
            let unit = (bytes / 64).max(MIB).div_ceil(MIB) * MIB;
            let mut left = bytes;
            while left > 0 {
                let len = unit.min(left);
                left -= len;
                let (blob, size) = &targets[(self.rng.next_u64() % targets.len() as u64) as usize];
                let span = size.saturating_sub(len) / 512;
                let off = (self.rng.next_u64() % span.max(1)) * 512;
                let seed = self.rng.next_u64();
                if seed.is_multiple_of(10) {
                    self.blobs.guest_trim(blob, off, len);
                } else {
                    self.blobs.guest_write(blob, off, len, seed);
                }
            }
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

    // ------------------------------------------------------------ time

    /// Applies every operation due by `now` (in time order) and ticks guests.
    pub(crate) fn advance(&mut self, now: f64) {
        loop {
            let next = self
                .ops
                .values()
                .filter(|o| o.running() && o.done_at <= now)
                .min_by(|a, b| {
                    a.done_at
                        .total_cmp(&b.done_at)
                        .then_with(|| a.start.total_cmp(&b.start))
                })
                .map(|o| (o.id.clone(), o.done_at));
            let Some((id, at)) = next else { break };
            self.tick(at);
            self.complete(&id, at);
        }
        self.tick(now);
        for f in self.features.values_mut() {
            if let Feature::Registering(at) = *f
                && at <= now
            {
                *f = Feature::Registered;
            }
        }
        self.nic_reserved.retain(|_, (_, until)| *until > now);
    }

    fn tick(&mut self, to: f64) {
        let dt = to - self.last_tick;
        if dt <= 0.0 {
            return;
        }
        self.last_tick = to;
        for (key, secs) in self.offline.iter_mut() {
            let running = self
                .vms
                .get(key)
                .is_some_and(|v| v.power == Power::Running && !v.deleting);
            if !running {
                *secs += dt;
            }
        }
        self.churn_tick(dt);
        let mut finished = Vec::new();
        for (key, vm) in self.vms.iter_mut() {
            if vm.power != Power::Running {
                continue;
            }
            if let Some(AdeGuest::Decrypting {
                delay,
                remaining,
                disks,
            }) = &mut vm.ade
            {
                let mut left = dt;
                let used = left.min(*delay);
                *delay -= used;
                left -= used;
                *remaining -= left;
                if *delay <= 0.0 && *remaining <= 0.0 {
                    finished.push((key.clone(), disks.clone()));
                }
            }
        }
        for (key, disks) in finished {
            if self.hooks.decrypt_fail.remove(&key) {
                if let Some(vm) = self.vms.get_mut(&key) {
                    let dev = if vm.os() == OsKind::Linux {
                        "/dev/sdc"
                    } else {
                        "volume D:"
                    };
                    vm.ade = Some(AdeGuest::Failed(format!(
                        "Decryption failed for {dev}: the volume could not be unlocked for decryption (injected)."
                    )));
                }
                continue;
            }
            for d in disks {
                if let Some(disk) = self.disks.get_mut(&d) {
                    disk.guest_encrypted = false;
                    disk.ade_enabled = false;
                }
            }
            if let Some(vm) = self.vms.get_mut(&key) {
                vm.ade = Some(AdeGuest::Decrypted);
            }
        }
    }

    fn new_op(
        &mut self,
        now: f64,
        family: OpFamily,
        dur: f64,
        effect: Effect,
        inject: bool,
        final_body: Final,
    ) -> LroRef {
        let id = self.rng.uuid();
        self.ops.insert(
            id.clone(),
            Operation {
                id: id.clone(),
                start: now,
                done_at: now + dur,
                end: None,
                state: OpState::InProgress,
                effect: Some(effect),
                inject_failure: inject,
                output: None,
                final_body,
            },
        );
        if inject && let Some(e) = self.hooks.lro_error.take() {
            self.hooks.op_errors.insert(id.clone(), e);
        }
        LroRef {
            id,
            family,
            location: true,
            retry_after: dur.clamp(1.0, 60.0),
        }
    }

    fn complete(&mut self, id: &str, at: f64) {
        let Some(op) = self.ops.get_mut(id) else {
            return;
        };
        let effect = op.effect.take();
        let inject = op.inject_failure;
        let result = match effect {
            None => Ok(None),
            Some(e) if inject => {
                self.rollback(e);
                Err(self.hooks.op_errors.remove(id).unwrap_or_else(|| {
                    ArmError::new(
                        500,
                        "InternalOperationError",
                        "An internal execution error occurred. Please retry later.",
                    )
                }))
            }
            Some(e) => self.apply(e, at),
        };
        if let Some(op) = self.ops.get_mut(id) {
            op.end = Some(at);
            match result {
                Ok(out) => {
                    if let Some(out) = out {
                        op.final_body = Final::Body(out.clone());
                        op.output = Some(out);
                    }
                    op.state = OpState::Succeeded;
                }
                Err(e) => op.state = OpState::Failed(e),
            }
        }
    }

    fn free_vm(&mut self, vm: &str) {
        if let Some(v) = self.vms.get_mut(vm) {
            v.busy = None;
            if !v.deleting {
                v.provisioning = "Succeeded".into();
            }
        }
    }

    fn rollback(&mut self, e: Effect) {
        match e {
            Effect::VmCreate { vm } => {
                self.vms.remove(&vm);
                self.release_all(&vm);
            }
            Effect::VmUpdate {
                vm,
                added_disks,
                added_nics,
                ..
            } => {
                for d in added_disks {
                    if let Some(disk) = self.disks.get_mut(&d) {
                        disk.managed_by = None;
                    }
                }
                for n in added_nics {
                    if let Some(nic) = self.nics.get_mut(&n) {
                        nic.vm = None;
                    }
                }
                self.free_vm(&vm);
            }
            Effect::VmDelete { vm } => {
                if let Some(v) = self.vms.get_mut(&vm) {
                    v.deleting = false;
                }
                self.free_vm(&vm);
            }
            Effect::VmPower { vm, prev, .. } => {
                if let Some(v) = self.vms.get_mut(&vm) {
                    v.power = prev;
                }
                self.free_vm(&vm);
            }
            Effect::ExtPut { vm, name, prev } => {
                if let Some(v) = self.vms.get_mut(&vm) {
                    match prev {
                        Some(p) => {
                            v.extensions.insert(name, p);
                        }
                        None => {
                            v.extensions.remove(&name);
                        }
                    }
                }
                self.free_vm(&vm);
            }
            Effect::ExtDelete { vm, name } => {
                if let Some(x) = self
                    .vms
                    .get_mut(&vm)
                    .and_then(|v| v.extensions.get_mut(&name))
                {
                    x.provisioning = "Succeeded".into();
                }
                self.free_vm(&vm);
            }
            Effect::DiskCreate { key, snapshot, new } => {
                let map = if snapshot {
                    &mut self.snapshots
                } else {
                    &mut self.disks
                };
                if new {
                    if let Some(d) = map.remove(&key)
                        && let Some(b) = d.blob
                    {
                        self.blobs.delete(&b);
                    }
                } else if let Some(d) = map.get_mut(&key) {
                    d.provisioning = "Succeeded".into();
                }
            }
            Effect::DiskDelete { key, snapshot } => {
                let map = if snapshot {
                    &mut self.snapshots
                } else {
                    &mut self.disks
                };
                if let Some(d) = map.get_mut(&key) {
                    d.provisioning = "Succeeded".into();
                }
            }
            Effect::Grant { .. } | Effect::Revoke { .. } => {}
        }
    }

    /// Releases every disk and NIC owned by `vm` (no reservation).
    fn release_all(&mut self, vm: &str) {
        for d in self.disks.values_mut() {
            if d.managed_by.as_deref() == Some(vm) {
                d.managed_by = None;
            }
        }
        for n in self.nics.values_mut() {
            if n.vm.as_deref() == Some(vm) {
                n.vm = None;
            }
        }
    }

    fn apply(&mut self, e: Effect, at: f64) -> Result<Option<Value>, ArmError> {
        match e {
            Effect::VmCreate { vm } => {
                if let Some(v) = self.vms.get_mut(&vm) {
                    v.power = Power::Running;
                }
                self.free_vm(&vm);
                Ok(None)
            }
            Effect::VmUpdate { vm, model, .. } => {
                let (os, data, nics) = model_refs(&model);
                let keep: BTreeSet<String> = os
                    .iter()
                    .map(|(k, _)| k.clone())
                    .chain(data.iter().map(|(_, k, _)| k.clone()))
                    .collect();
                let keep_nics: BTreeSet<String> = nics.iter().map(|(k, _)| k.clone()).collect();
                for d in self.disks.values_mut() {
                    if d.managed_by.as_deref() == Some(vm.as_str())
                        && !keep.contains(&key_of(&d.id))
                    {
                        d.managed_by = None;
                    }
                }
                for n in self.nics.values_mut() {
                    if n.vm.as_deref() == Some(vm.as_str()) && !keep_nics.contains(&key_of(&n.id)) {
                        n.vm = None;
                    }
                }
                if let Some(v) = self.vms.get_mut(&vm) {
                    v.model = model;
                }
                self.free_vm(&vm);
                Ok(None)
            }
            Effect::VmDelete { vm } => {
                let Some(v) = self.vms.remove(&vm) else {
                    return Ok(None);
                };
                let (os, data, nics) = model_refs(&v.model);
                for (k, opt) in os
                    .into_iter()
                    .chain(data.into_iter().map(|(_, k, o)| (k, o)))
                {
                    if opt == DeleteOption::Delete {
                        if let Some(d) = self.disks.remove(&k)
                            && let Some(b) = d.blob
                        {
                            self.blobs.delete(&b);
                        }
                    } else if let Some(d) = self.disks.get_mut(&k) {
                        d.managed_by = None;
                        d.access = None;
                    }
                }
                for (k, opt) in nics {
                    if opt == DeleteOption::Delete {
                        self.nics.remove(&k);
                    } else {
                        if let Some(n) = self.nics.get_mut(&k) {
                            n.vm = None;
                        }
                        self.nic_reserved
                            .insert(k, (v.id.clone(), at + self.nic_reservation_secs));
                    }
                }
                Ok(None)
            }
            Effect::VmPower { vm, target, .. } => {
                if let Some(v) = self.vms.get_mut(&vm) {
                    v.power = target;
                }
                self.free_vm(&vm);
                Ok(None)
            }
            Effect::ExtPut { vm, name, .. } => {
                self.free_vm(&vm);
                self.ext_put_effect(&vm, &name)
            }
            Effect::ExtDelete { vm, name } => {
                if let Some(v) = self.vms.get_mut(&vm) {
                    v.extensions.remove(&name);
                }
                self.free_vm(&vm);
                Ok(None)
            }
            Effect::DiskCreate { key, snapshot, .. } => {
                let map = if snapshot {
                    &mut self.snapshots
                } else {
                    &mut self.disks
                };
                if let Some(d) = map.get_mut(&key) {
                    d.provisioning = "Succeeded".into();
                }
                Ok(None)
            }
            Effect::DiskDelete { key, snapshot } => {
                let map = if snapshot {
                    &mut self.snapshots
                } else {
                    &mut self.disks
                };
                if let Some(d) = map.remove(&key)
                    && let Some(b) = d.blob
                {
                    self.blobs.delete(&b);
                }
                Ok(None)
            }
            Effect::Grant {
                key,
                snapshot,
                access,
                duration,
            } => {
                let map = if snapshot {
                    &mut self.snapshots
                } else {
                    &mut self.disks
                };
                let Some(d) = map.get_mut(&key) else {
                    return Err(ArmError::new(
                        404,
                        "ResourceNotFound",
                        "The disk was deleted while access was being granted.",
                    ));
                };
                let Some(blob) = d.blob.clone() else {
                    return Err(ArmError::new(
                        500,
                        "InternalOperationError",
                        "The disk has no storage.",
                    ));
                };
                let Some(sas) = self.blobs.grant(&blob, access, duration) else {
                    return Err(ArmError::new(
                        500,
                        "InternalOperationError",
                        "The disk's storage is not available.",
                    ));
                };
                match access {
                    SasAccess::Write => d.upload = Some(UploadPhase::Active),
                    SasAccess::Read => d.access = Some(SasAccess::Read),
                }
                Ok(Some(json!({"accessSAS": sas})))
            }
            Effect::Revoke { key, snapshot } => {
                let base = self.base_url.clone();
                let map = if snapshot {
                    &mut self.snapshots
                } else {
                    &mut self.disks
                };
                let Some(d) = map.get_mut(&key) else {
                    return Ok(None);
                };
                if let Some(b) = &d.blob {
                    self.blobs.revoke_all(b);
                }
                d.access = None;
                if d.upload == Some(UploadPhase::Active) {
                    let ok = d.blob.as_ref().is_some_and(|b| self.blobs.footer_valid(b))
                        && !(!snapshot && self.hooks.take_invalid_vhd(&key));
                    if !ok {
                        let acct = d.blob.as_ref().map(|b| b.0.clone()).unwrap_or_default();
                        return Err(ArmError::new(
                            400,
                            "InvalidVhd",
                            format!(
                                "The specified cookie value in VHD footer indicates that disk 'abcd' with blob {base}/{acct}/abcd is not a supported VHD. Disk is expected to have cookie value 'conectix'."
                            ),
                        ));
                    }
                    d.upload = None;
                }
                Ok(None)
            }
        }
    }

    fn ext_put_effect(&mut self, vm_key: &str, name: &str) -> Result<Option<Value>, ArmError> {
        let Some(vm) = self.vms.get(vm_key) else {
            return Ok(None);
        };
        let Some(ext) = vm.extensions.get(name) else {
            return Ok(None);
        };
        if !ext.is_ade() {
            if let Some(x) = self
                .vms
                .get_mut(vm_key)
                .and_then(|v| v.extensions.get_mut(name))
            {
                x.provisioning = "Succeeded".into();
            }
            return Ok(None);
        }
        let op = ext.operation();
        let vt = ext.volume_type();
        let ext_name = ext.name.clone();
        let os = vm.os();
        let (os_disk, data, _) = model_refs(&vm.model);
        let os_key = os_disk.map(|(k, _)| k);
        let data_keys: Vec<String> = data.into_iter().map(|(_, k, _)| k).collect();
        let mut outcome: Result<AdeGuest, ArmError> =
            Ok(vm.ade.clone().unwrap_or(AdeGuest::Encrypted));
        match op.as_str() {
            "disableencryption" => {
                let os_encrypted = os_key
                    .as_ref()
                    .and_then(|k| self.disks.get(k))
                    .is_some_and(|d| d.guest_encrypted);
                if os == OsKind::Linux && os_encrypted {
                    let msg = "Failed to disable the extension with error: Disabling encryption is not supported when OS volume is encrypted, stack trace: Traceback (most recent call last):\n  File \"/var/lib/waagent/Microsoft.Azure.Security.AzureDiskEncryptionForLinux-1.1.0.28/main/handle.py\", line 445, in disable_encryption\n    raise Exception(\"Disabling encryption is not supported when OS volume is encrypted\")";
                    outcome = Err(ArmError::new(
                        400,
                        "VMExtensionProvisioningError",
                        format!(
                            "VM has reported a failure when processing extension '{ext_name}'. Error message: \"{msg}\"."
                        ),
                    ));
                } else if matches!(vm.ade, Some(AdeGuest::Decrypting { .. })) {
                    // A re-run while decrypting keeps decrypting.
                } else {
                    let mut targets: Vec<String> = Vec::new();
                    if vt != "data" {
                        targets.extend(os_key.clone());
                    }
                    if vt != "os" {
                        targets.extend(data_keys.iter().cloned());
                    }
                    let targets: Vec<String> = targets
                        .into_iter()
                        .filter(|k| self.disks.get(k).is_some_and(|d| d.guest_encrypted))
                        .collect();
                    if targets.is_empty() {
                        outcome = Ok(AdeGuest::Decrypted);
                    } else {
                        let biggest = targets
                            .iter()
                            .filter_map(|k| self.disks.get(k))
                            .map(|d| d.size_bytes)
                            .max()
                            .unwrap_or(0);
                        let delay = if os == OsKind::Linux {
                            self.linux_delay
                        } else {
                            0.0
                        };
                        outcome = Ok(AdeGuest::Decrypting {
                            delay,
                            remaining: biggest as f64 / self.decrypt_rate,
                            disks: targets,
                        });
                    }
                }
            }
            o if o.starts_with("enableencryption") => {
                let mut targets: Vec<String> = Vec::new();
                if vt != "data" {
                    targets.extend(os_key.clone());
                }
                if vt != "os" {
                    targets.extend(data_keys.iter().cloned());
                }
                let kv = ext
                    .props
                    .pointer("/settings/KeyVaultResourceId")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                for k in os_key.iter().chain(data_keys.iter()) {
                    if let Some(d) = self.disks.get_mut(k) {
                        d.ever_ade = true;
                        d.key_vault = d.key_vault.clone().or(kv.clone());
                        if targets.contains(k) {
                            d.guest_encrypted = true;
                            d.ade_enabled = true;
                        }
                    }
                }
                outcome = Ok(AdeGuest::Encrypted);
            }
            _ => {}
        }
        let vm = self.vms.get_mut(vm_key).expect("checked above");
        vm.ever_ade = true;
        match outcome {
            Ok(state) => {
                vm.ade = Some(state);
                if let Some(x) = vm.extensions.get_mut(name) {
                    x.provisioning = "Succeeded".into();
                }
                Ok(None)
            }
            Err(e) => {
                let guest = e.message.clone();
                vm.ade = Some(AdeGuest::Failed(guest));
                if let Some(x) = vm.extensions.get_mut(name) {
                    x.provisioning = "Failed".into();
                }
                Err(e)
            }
        }
    }

    // ------------------------------------------------------------ seeding

    /// Creates a running VM with NIC, disks (synthetic content), ADE
    /// extension and encryption state from `spec`; returns its id.
    pub(crate) fn add_vm(&mut self, spec: &VmSpec, now: f64) -> ResourceId {
        let sub = spec
            .subscription
            .clone()
            .unwrap_or_else(|| self.subscription.clone());
        self.features
            .entry(sub.to_ascii_lowercase())
            .or_insert(Feature::Registered);
        let rg = spec.resource_group.clone();
        let loc = self.location.clone();
        let vm_id = ResourceId::new(
            &sub,
            &rg,
            "Microsoft.Compute",
            "virtualMachines",
            &spec.name,
        );
        let vm_key = key_of(vm_id.as_str());
        let del = spec.delete_option.as_str();
        let kv = format!(
            "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.KeyVault/vaults/kv-ade-{}",
            rg.trim_start_matches("rg-")
        );
        let has_ade = spec.ade != AdeSpec::None;
        let (os_enc, data_enc) = match spec.ade {
            AdeSpec::None => (false, false),
            AdeSpec::WindowsOs => (true, false),
            AdeSpec::WindowsAll | AdeSpec::LinuxOsAndData => (true, true),
            AdeSpec::LinuxData => (false, true),
        };
        let zones = spec.zone.as_ref().map(|z| json!([z]));
        let tl = spec.trusted_launch;
        let make_disk = |w: &mut World,
                         name: String,
                         ds: &super::fleet::DiskSpec,
                         os: bool,
                         enc: bool|
         -> String {
            let id = ResourceId::new(&sub, &rg, "Microsoft.Compute", "disks", &name);
            let size = ds.size_gib.max(1) * GIB;
            let seed = w.rng.next_u64();
            let blob =
                w.blobs
                    .create_source(size + 512, ds.allocated_fraction.clamp(0.0, 1.0), seed);
            let unique_id = w.rng.uuid();
            let d = Disk {
                id: id.to_string(),
                name,
                rg: rg.clone(),
                location: loc.clone(),
                zones: zones.clone(),
                sku: ds.sku.clone(),
                tags: json!({}),
                size_bytes: size,
                blob: Some(blob),
                create_option: if os {
                    "FromImage".into()
                } else {
                    "Empty".into()
                },
                upload_size: None,
                source_id: None,
                source_unique: None,
                os_type: os.then(|| spec.os.as_str().to_string()),
                hyper_v: os.then(|| spec.hyper_v_generation.clone()),
                security: (os && tl).then(|| json!({"securityType": "TrustedLaunch"})),
                purchase_plan: None,
                incremental: None,
                unique_id,
                time_created: now,
                managed_by: Some(vm_key.clone()),
                access: None,
                upload: None,
                provisioning: "Succeeded".into(),
                ever_ade: has_ade,
                ade_enabled: has_ade && enc,
                guest_encrypted: has_ade && enc,
                key_vault: has_ade.then(|| kv.clone()),
                snapshot: false,
            };
            let key = key_of(&d.id);
            w.disks.insert(key, d);
            id.to_string()
        };
        let suffix = format!(
            "{:032x}",
            (self.rng.next_u64() as u128) << 64 | self.rng.next_u64() as u128
        );
        let os_name = format!("{}_OsDisk_1_{suffix}", spec.name);
        let os_id = make_disk(self, os_name.clone(), &spec.os_disk, true, os_enc);
        let mut data = Vec::new();
        let mut next_lun = 0;
        for ds in &spec.data_disks {
            let lun = ds.lun.unwrap_or(next_lun);
            next_lun = lun + 1;
            let name = format!("{}_DataDisk_{lun}", spec.name);
            let id = make_disk(self, name.clone(), ds, false, data_enc);
            data.push(json!({
                "lun": lun, "name": name, "createOption": "Attach", "caching": "ReadOnly",
                "writeAcceleratorEnabled": false, "managedDisk": {"id": id, "storageAccountType": ds.sku},
                "deleteOption": del, "diskSizeGB": ds.size_gib, "toBeDetached": false,
            }));
        }
        let nic_name = format!("{}-nic", spec.name);
        let nic_id = ResourceId::new(
            &sub,
            &rg,
            "Microsoft.Network",
            "networkInterfaces",
            &nic_name,
        )
        .to_string();
        let n = self.nics.len();
        self.nics.insert(
            key_of(&nic_id),
            Nic {
                id: nic_id.clone(),
                name: nic_name,
                location: loc.clone(),
                vm: Some(vm_key.clone()),
                ip: format!("10.0.{}.{}", n / 250, 4 + n % 250),
            },
        );
        let (publisher, offer, sku_name, version) = match spec.os {
            OsKind::Windows => (
                "MicrosoftWindowsServer",
                "WindowsServer",
                "2022-datacenter-azure-edition",
                "latest",
            ),
            OsKind::Linux => (
                "Canonical",
                "0001-com-ubuntu-server-jammy",
                "22_04-lts-gen2",
                "latest",
            ),
        };
        let mut os_profile = json!({"computerName": spec.name, "adminUsername": "azureuser", "secrets": [], "allowExtensionOperations": true, "requireGuestProvisionSignal": true});
        match spec.os {
            OsKind::Windows => {
                os_profile["windowsConfiguration"] =
                    json!({"provisionVMAgent": true, "enableAutomaticUpdates": true})
            }
            OsKind::Linux => {
                os_profile["linuxConfiguration"] =
                    json!({"disablePasswordAuthentication": true, "provisionVMAgent": true})
            }
        }
        let mut security = json!({});
        if tl {
            security = json!({"securityType": "TrustedLaunch", "uefiSettings": {"secureBootEnabled": true, "vTpmEnabled": true}});
        }
        let mut props = json!({
            "hardwareProfile": {"vmSize": spec.size},
            "storageProfile": {
                "imageReference": {"publisher": publisher, "offer": offer, "sku": sku_name, "version": version, "exactVersion": "20348.2582.240703"},
                "osDisk": {
                    "osType": spec.os.as_str(), "name": os_name, "createOption": "FromImage", "caching": "ReadWrite",
                    "managedDisk": {"id": os_id, "storageAccountType": spec.os_disk.sku}, "deleteOption": del, "diskSizeGB": spec.os_disk.size_gib,
                },
                "dataDisks": data,
                "diskControllerType": "SCSI",
            },
            "osProfile": os_profile,
            "networkProfile": {"networkInterfaces": [{"id": nic_id, "properties": {"primary": true, "deleteOption": del}}]},
            "diagnosticsProfile": {"bootDiagnostics": {"enabled": true}},
        });
        if tl {
            props["securityProfile"] = security;
        }
        if let Some(l) = &spec.license_type {
            props["licenseType"] = json!(l);
        }
        let mut model = json!({"location": loc, "tags": spec.tags, "properties": props});
        if let Some(z) = &zones {
            model["zones"] = z.clone();
        }
        let principal_id = if spec.system_identity {
            model["identity"] = json!({"type": "SystemAssigned"});
            Some(self.rng.uuid())
        } else {
            None
        };
        let mut extensions = BTreeMap::new();
        if has_ade {
            let (etype, ver) = match spec.os {
                OsKind::Windows => (ADE_WIN, "2.2"),
                OsKind::Linux => (ADE_LINUX, "1.1"),
            };
            let name = spec
                .custom_extension_name
                .clone()
                .unwrap_or_else(|| etype.to_string());
            let vt = match spec.ade {
                AdeSpec::WindowsOs => "OS",
                AdeSpec::LinuxData => "Data",
                _ => "All",
            };
            let kv_name = kv.rsplit('/').next().unwrap_or("kv").to_string();
            let ext = Ext {
                id: format!("{}/extensions/{name}", vm_id),
                name: name.clone(),
                location: loc.clone(),
                props: json!({
                    "publisher": ADE_PUBLISHER, "type": etype, "typeHandlerVersion": ver, "autoUpgradeMinorVersion": true,
                    "settings": {
                        "EncryptionOperation": "EnableEncryption", "KeyVaultURL": format!("https://{kv_name}.vault.azure.net/"),
                        "KeyVaultResourceId": kv, "KeyEncryptionAlgorithm": "RSA-OAEP", "VolumeType": vt,
                        "SequenceVersion": self.rng.uuid(),
                    },
                }),
                provisioning: "Succeeded".into(),
            };
            extensions.insert(name.to_ascii_lowercase(), ext);
        }
        let vm = Vm {
            id: vm_id.to_string(),
            name: spec.name.clone(),
            rg: rg.clone(),
            model,
            vm_id: self.rng.uuid(),
            principal_id,
            provisioning: "Succeeded".into(),
            power: Power::Running,
            ever_ade: has_ade,
            extensions,
            ade: has_ade.then_some(AdeGuest::Encrypted),
            busy: None,
            deleting: false,
            time_created: now,
        };
        self.offline.insert(vm_key.clone(), 0.0);
        if spec.churn_bytes_per_sec > 0.0 {
            self.churn.insert(
                vm_key.clone(),
                (spec.churn_bytes_per_sec, 0.0, vm.vm_id.clone()),
            );
        }
        self.vms.insert(vm_key, vm);
        vm_id
    }

    // ------------------------------------------------------------ VM reads

    fn vm(&self, t: &Target) -> Result<&Vm, ArmError> {
        self.vms
            .get(&t.key())
            .ok_or_else(|| not_found("Microsoft.Compute/virtualMachines", &t.name, &t.rg))
    }

    /// `GET` VM (optionally with `$expand=instanceView`).
    pub(crate) fn vm_get(&self, t: &Target, expand: bool) -> Result<Value, ArmError> {
        Ok(self.vm_body(self.vm(t)?, expand))
    }

    /// `GET .../instanceView`.
    pub(crate) fn vm_instance_view(&self, t: &Target) -> Result<Value, ArmError> {
        Ok(self.instance_view(self.vm(t)?))
    }

    /// VMs of a subscription (or all) and resource group (or all).
    pub(crate) fn vm_list(&self, sub: Option<&str>, rg: Option<&str>) -> Value {
        let value: Vec<Value> = self
            .vms
            .values()
            .filter(|v| sub.is_none_or(|s| sub_of(&v.id).eq_ignore_ascii_case(s)))
            .filter(|v| rg.is_none_or(|rg| v.rg.eq_ignore_ascii_case(rg)))
            .map(|v| self.vm_body(v, false))
            .collect();
        json!({"value": value})
    }

    /// Ids of every VM.
    pub(crate) fn vm_ids(&self) -> Vec<String> {
        self.vms.values().map(|v| v.id.clone()).collect()
    }

    fn vm_body(&self, vm: &Vm, expand: bool) -> Value {
        let mut body = vm.model.clone();
        body["id"] = json!(vm.id);
        body["name"] = json!(vm.name);
        body["type"] = json!("Microsoft.Compute/virtualMachines");
        if body.get("tags").is_none_or(Value::is_null) {
            body["tags"] = json!({});
        }
        if let (Some(p), Some(identity)) = (&vm.principal_id, body.get_mut("identity")) {
            identity["principalId"] = json!(p);
            identity["tenantId"] = json!("72f988bf-86f1-41af-91ab-2d7cd011db47");
        }
        self.decorate_props(&mut body, vm);
        if expand {
            body["properties"]["instanceView"] = self.instance_view(vm);
        }
        if !vm.extensions.is_empty() {
            body["resources"] = Value::Array(vm.extensions.values().map(Ext::body).collect());
        }
        body
    }

    fn decorate_props(&self, body: &mut Value, vm: &Vm) {
        let props = &mut body["properties"];
        props["provisioningState"] = json!(vm.provisioning);
        props["vmId"] = json!(vm.vm_id);
        props["timeCreated"] = json!(self.fmt_time(vm.time_created));
        self.decorate_storage(props);
    }

    fn decorate_storage(&self, props: &mut Value) {
        let disks = &self.disks;
        let fill = |d: &mut Value, default_caching: &str| {
            if d.get("deleteOption").is_none_or(Value::is_null) {
                d["deleteOption"] = json!("Detach");
            }
            if d.get("caching").is_none_or(Value::is_null) {
                d["caching"] = json!(default_caching);
            }
            if let Some(disk) = d
                .pointer("/managedDisk/id")
                .and_then(Value::as_str)
                .and_then(|id| disks.get(&key_of(id)))
            {
                d["name"] = json!(disk.name);
                d["diskSizeGB"] = json!(disk.size_bytes.div_ceil(GIB));
                if d["managedDisk"]
                    .get("storageAccountType")
                    .is_none_or(Value::is_null)
                {
                    d["managedDisk"]["storageAccountType"] = json!(disk.sku);
                }
            }
        };
        if let Some(os) = props.pointer_mut("/storageProfile/osDisk") {
            fill(os, "ReadWrite");
        }
        if let Some(arr) = props
            .pointer_mut("/storageProfile/dataDisks")
            .and_then(Value::as_array_mut)
        {
            for d in arr.iter_mut() {
                fill(d, "None");
                if d.get("createOption").is_none_or(Value::is_null) {
                    d["createOption"] = json!("Attach");
                }
            }
        } else if props.get("storageProfile").is_some() {
            props["storageProfile"]["dataDisks"] = json!([]);
        }
        if let Some(arr) = props
            .pointer_mut("/networkProfile/networkInterfaces")
            .and_then(Value::as_array_mut)
        {
            let n = arr.len();
            for (i, nic) in arr.iter_mut().enumerate() {
                if nic.get("properties").is_none_or(Value::is_null) {
                    nic["properties"] = json!({});
                }
                if nic["properties"]
                    .get("deleteOption")
                    .is_none_or(Value::is_null)
                {
                    nic["properties"]["deleteOption"] = json!("Detach");
                }
                if nic["properties"].get("primary").is_none_or(Value::is_null) && n == 1 && i == 0 {
                    nic["properties"]["primary"] = json!(true);
                }
            }
        }
    }

    fn instance_view(&self, vm: &Vm) -> Value {
        let prov = vm.provisioning.to_ascii_lowercase();
        let statuses = json!([
            {"code": format!("ProvisioningState/{prov}"), "level": "Info", "displayStatus": format!("Provisioning {prov}"), "time": self.fmt_time(self.last_tick)},
            {"code": format!("PowerState/{}", vm.power.code()), "level": "Info", "displayStatus": vm.power.display()},
        ]);
        let (os, data, _) = model_refs(&vm.model);
        let has_ade_ext = vm.extensions.values().any(Ext::is_ade);
        let mut disks = Vec::new();
        for k in os
            .iter()
            .map(|(k, _)| k)
            .chain(data.iter().map(|(_, k, _)| k))
        {
            let Some(d) = self.disks.get(k) else { continue };
            let mut st = vec![
                json!({"code": "ProvisioningState/succeeded", "level": "Info", "displayStatus": "Provisioning succeeded", "time": self.fmt_time(d.time_created)}),
            ];
            let mut entry = json!({"name": d.name});
            if d.ever_ade || has_ade_ext {
                if d.guest_encrypted {
                    st.push(json!({"code": "EncryptionState/encrypted", "level": "Info", "displayStatus": "Encryption is enabled on disk"}));
                } else {
                    st.push(json!({"code": "EncryptionState/notEncrypted", "level": "Info", "displayStatus": "Disk is not encrypted"}));
                }
                if d.ever_ade {
                    entry["encryptionSettings"] = json!([{"enabled": d.ade_enabled}]);
                }
            }
            entry["statuses"] = Value::Array(st);
            disks.push(entry);
        }
        let mut extensions = Vec::new();
        for x in vm.extensions.values() {
            let full_type = format!("{}.{}", x.publisher(), x.etype());
            let ver = x
                .props
                .get("typeHandlerVersion")
                .and_then(Value::as_str)
                .unwrap_or("1.0");
            let mut e = json!({"name": x.name, "type": full_type, "typeHandlerVersion": ver});
            if x.is_ade() {
                let linux = x.etype().eq_ignore_ascii_case(ADE_LINUX);
                let (level, code, msg, sub) = self.ade_status(vm, linux, &os, &data);
                let display = if level == "Error" {
                    "Provisioning failed"
                } else {
                    "Provisioning succeeded"
                };
                e["typeHandlerVersion"] = json!(if linux { "1.1.0.28" } else { WIN_ADE_VERSION });
                e["statuses"] = json!([{"code": code, "level": level, "displayStatus": display, "message": msg}]);
                if let Some(sub) = sub {
                    e["substatuses"] = json!([{"code": format!("ComponentStatus/{full_type}/succeeded"), "level": "Info", "displayStatus": "Provisioning succeeded", "message": sub}]);
                }
            } else {
                let p = x.provisioning.to_ascii_lowercase();
                e["statuses"] = json!([{"code": format!("ProvisioningState/{p}"), "level": "Info", "displayStatus": format!("Provisioning {p}"), "message": "Extension is running"}]);
            }
            extensions.push(e);
        }
        let mut iv = json!({
            "computerName": vm.name,
            "osName": match vm.os() { OsKind::Windows => "Windows Server 2022 Datacenter Azure Edition", OsKind::Linux => "ubuntu" },
            "disks": disks,
            "hyperVGeneration": os.as_ref().and_then(|(k, _)| self.disks.get(k)).and_then(|d| d.hyper_v.clone()).unwrap_or_else(|| "V2".into()),
            "statuses": statuses,
        });
        if !extensions.is_empty() {
            iv["extensions"] = Value::Array(extensions);
        }
        if vm.power == Power::Running {
            iv["vmAgent"] = json!({"vmAgentVersion": "2.7.41491.1102", "statuses": [{"code": "ProvisioningState/succeeded", "level": "Info", "displayStatus": "Ready", "message": "GuestAgent is running and processing the extensions."}]});
        }
        iv
    }

    /// (level, code, message, Linux substatus JSON) of the ADE extension.
    fn ade_status(
        &self,
        vm: &Vm,
        linux: bool,
        os: &Option<(String, DeleteOption)>,
        data: &[(i64, String, DeleteOption)],
    ) -> (&'static str, &'static str, String, Option<String>) {
        let ok = "ProvisioningState/succeeded";
        let os_enc = os
            .as_ref()
            .and_then(|(k, _)| self.disks.get(k))
            .is_some_and(|d| d.guest_encrypted);
        let data_enc = data
            .iter()
            .any(|(_, k, _)| self.disks.get(k).is_some_and(|d| d.guest_encrypted));
        let os_s = if os_enc { "Encrypted" } else { "NotEncrypted" };
        match vm.ade.clone().unwrap_or(AdeGuest::Encrypted) {
            AdeGuest::Failed(m) => ("Error", "ProvisioningState/failed", m, None),
            AdeGuest::Decrypting { .. } => {
                if linux {
                    (
                        "Info",
                        ok,
                        "Decryption started".into(),
                        Some(format!(
                            "{{\"os\": \"{os_s}\", \"data\": \"DecryptionInProgress\"}}"
                        )),
                    )
                } else {
                    (
                        "Info",
                        ok,
                        format!("[{WIN_ADE_VERSION}] Disable Encryption in progress"),
                        None,
                    )
                }
            }
            AdeGuest::Decrypted => {
                if linux {
                    (
                        "Info",
                        ok,
                        "Decryption succeeded".into(),
                        Some(format!(
                            "{{\"os\": \"{os_s}\", \"data\": \"NotEncrypted\"}}"
                        )),
                    )
                } else {
                    (
                        "Info",
                        ok,
                        format!("[{WIN_ADE_VERSION}] Disable Encryption completed successfully"),
                        None,
                    )
                }
            }
            AdeGuest::Encrypted => {
                if linux {
                    let data_s = if data.is_empty() {
                        "NotMounted"
                    } else if data_enc {
                        "Encrypted"
                    } else {
                        "NotEncrypted"
                    };
                    let msg = if os_enc {
                        "Encryption succeeded for all volumes"
                    } else {
                        "Encryption succeeded for data volumes"
                    };
                    (
                        "Info",
                        ok,
                        msg.into(),
                        Some(format!("{{\"os\": \"{os_s}\", \"data\": \"{data_s}\"}}")),
                    )
                } else {
                    (
                        "Info",
                        ok,
                        format!("[{WIN_ADE_VERSION}] Enable Encryption completed successfully"),
                        None,
                    )
                }
            }
        }
    }

    // ------------------------------------------------------------ VM writes

    fn vm_gate(&self, vm: &Vm, op: &str) -> Result<(), ArmError> {
        if vm.deleting {
            return Err(ArmError::conflict(format!(
                "Operation '{op}' is not allowed on VM '{}' since the VM is marked for deletion. You can only retry the Delete operation (or wait for an ongoing one to complete).",
                vm.name
            )));
        }
        if vm.busy.is_some() {
            return Err(ArmError::conflict(format!(
                "Operation '{op}' is not allowed on VM '{}' since another operation is in progress.",
                vm.name
            )));
        }
        Ok(())
    }

    /// `PUT` VM: create (201) or full update (200).
    pub(crate) fn vm_put(
        &mut self,
        t: &Target,
        body: Value,
        inject: bool,
        now: f64,
    ) -> Result<Reply, ArmError> {
        let model = clean_model(body, &self.location)?;
        if self.vms.contains_key(&t.key()) {
            self.vm_update(t, model, "createOrUpdate", inject, now)
        } else {
            self.vm_create(t, model, inject, now)
        }
    }

    /// `PATCH` VM: objects merge, arrays replace.
    pub(crate) fn vm_patch(
        &mut self,
        t: &Target,
        body: Value,
        inject: bool,
        now: f64,
    ) -> Result<Reply, ArmError> {
        let vm = self.vm(t)?;
        let mut model = vm.model.clone();
        let patch = clean_model(body, &self.location)?;
        merge(&mut model, patch);
        self.vm_update(t, model, "update", inject, now)
    }

    fn vm_create(
        &mut self,
        t: &Target,
        model: Value,
        inject: bool,
        now: f64,
    ) -> Result<Reply, ArmError> {
        let key = t.key();
        let os_disk = model
            .pointer("/properties/storageProfile/osDisk")
            .cloned()
            .unwrap_or(Value::Null);
        if os_disk.is_null() {
            return Err(ArmError::bad_request(
                "InvalidParameter",
                "Required parameter 'osDisk' is missing (null).",
            )
            .with_target("osDisk"));
        }
        let attach = os_disk
            .get("createOption")
            .and_then(Value::as_str)
            .is_some_and(|c| c.eq_ignore_ascii_case("Attach"));
        if !attach {
            return Err(ArmError::bad_request(
                "InvalidParameter",
                "The emulator creates VMs only from existing managed disks (osDisk.createOption 'Attach').",
            )
            .with_target("osDisk.createOption"));
        }
        if model
            .pointer("/properties/storageProfile/imageReference")
            .is_some_and(|v| !v.is_null())
            || model
                .pointer("/properties/osProfile")
                .is_some_and(|v| !v.is_null())
        {
            return Err(ArmError::bad_request(
                "InvalidParameter",
                "Cannot attach an existing OS disk if the VM is created from a platform or user image.",
            ));
        }
        if os_disk.get("osType").and_then(Value::as_str).is_none() {
            return Err(ArmError::bad_request(
                "InvalidParameter",
                "Required parameter 'osDisk.osType' is missing (null).",
            )
            .with_target("osDisk.osType"));
        }
        let checked = self.check_model(&key, &model, None)?;
        let ever_ade = checked
            .disks
            .iter()
            .any(|k| self.disks.get(k).is_some_and(|d| d.ever_ade));
        self.check_eah(&key, &model, None, ever_ade)?;
        for d in &checked.disks {
            if let Some(disk) = self.disks.get_mut(d) {
                disk.managed_by = Some(key.clone());
            }
        }
        for n in &checked.nics {
            if let Some(nic) = self.nics.get_mut(n) {
                nic.vm = Some(key.clone());
            }
        }
        let principal_id = model
            .pointer("/identity/type")
            .and_then(Value::as_str)
            .is_some_and(|s| s.to_ascii_lowercase().contains("systemassigned"))
            .then(|| self.rng.uuid());
        let vm = Vm {
            id: t.id.clone(),
            name: t.name.clone(),
            rg: t.rg.clone(),
            model,
            vm_id: self.rng.uuid(),
            principal_id,
            provisioning: "Creating".into(),
            power: Power::Starting,
            ever_ade,
            extensions: BTreeMap::new(),
            ade: None,
            busy: None,
            deleting: false,
            time_created: now,
        };
        self.vms.insert(key.clone(), vm);
        let dur = self.draw(self.durations.vm_create);
        let mut lro = self.new_op(
            now,
            OpFamily::Compute,
            dur,
            Effect::VmCreate { vm: key.clone() },
            inject,
            Final::Resource(ResourceKind::Vm, key.clone()),
        );
        lro.location = false;
        let vm = self.vms.get_mut(&key).expect("inserted");
        vm.busy = Some(lro.id.clone());
        let body = self.vm_body(&self.vms[&key], false);
        Ok(Reply {
            status: 201,
            body: Some(body),
            lro: Some(lro),
        })
    }

    fn vm_update(
        &mut self,
        t: &Target,
        model: Value,
        op: &str,
        inject: bool,
        now: f64,
    ) -> Result<Reply, ArmError> {
        let key = t.key();
        let vm = self.vm(t)?;
        self.vm_gate(vm, op)?;
        let old_os = model_refs(&vm.model).0.map(|(k, _)| k);
        let new_os = model_refs(&model).0.map(|(k, _)| k);
        if new_os.is_none() {
            return Err(ArmError::bad_request(
                "InvalidParameter",
                "Required parameter 'osDisk' is missing (null).",
            )
            .with_target("osDisk"));
        }
        if old_os != new_os && vm.power != Power::Deallocated {
            return Err(ArmError::conflict(format!(
                "Operation '{op}' is not allowed on VM '{}' since the VM is not deallocated. The OS disk can be swapped only on a deallocated VM.",
                vm.name
            )));
        }
        let checked = self.check_model(&key, &model, Some(vm))?;
        let vm = self.vm(t)?;
        let ever_ade = vm.ever_ade
            || checked
                .disks
                .iter()
                .any(|k| self.disks.get(k).is_some_and(|d| d.ever_ade));
        self.check_eah(&key, &model, Some(vm), ever_ade)?;
        let added_disks: Vec<String> = checked
            .disks
            .iter()
            .filter(|k| self.disks.get(*k).is_some_and(|d| d.managed_by.is_none()))
            .cloned()
            .collect();
        let added_nics: Vec<String> = checked
            .nics
            .iter()
            .filter(|k| self.nics.get(*k).is_some_and(|n| n.vm.is_none()))
            .cloned()
            .collect();
        for d in &added_disks {
            if let Some(disk) = self.disks.get_mut(d) {
                disk.managed_by = Some(key.clone());
            }
        }
        for n in &added_nics {
            if let Some(nic) = self.nics.get_mut(n) {
                nic.vm = Some(key.clone());
            }
        }
        let dur = self.draw(self.durations.vm_update);
        let effect = Effect::VmUpdate {
            vm: key.clone(),
            model: model.clone(),
            added_disks,
            added_nics,
        };
        let mut lro = self.new_op(
            now,
            OpFamily::Compute,
            dur,
            effect,
            inject,
            Final::Resource(ResourceKind::Vm, key.clone()),
        );
        lro.location = false;
        let vm = self.vms.get_mut(&key).expect("exists");
        vm.busy = Some(lro.id.clone());
        vm.provisioning = "Updating".into();
        vm.ever_ade = ever_ade;
        // The answer shows the requested model.
        let mut shown = vm.clone();
        shown.model = model;
        let body = self.vm_body(&shown, false);
        Ok(Reply {
            status: 200,
            body: Some(body),
            lro: Some(lro),
        })
    }

    fn check_eah(
        &self,
        key: &str,
        model: &Value,
        existing: Option<&Vm>,
        ever_ade: bool,
    ) -> Result<(), ArmError> {
        let want = eah_of(model);
        let had = existing.is_some_and(Vm::eah);
        if !want || (existing.is_some() && had) {
            if let Some(vm) = existing
                && want != had
                && vm.power != Power::Deallocated
            {
                return Err(ArmError::conflict(
                    "'securityProfile.encryptionAtHost' can be updated only when VM is in deallocated state",
                ));
            }
            return Ok(());
        }
        if !matches!(self.features.get(sub_of(key)), Some(Feature::Registered)) {
            return Err(ArmError::bad_request(
                "InvalidParameter",
                "The property 'securityProfile.encryptionAtHost' is not valid because the 'Microsoft.Compute/EncryptionAtHost' feature is not enabled for this subscription.",
            )
            .with_target("securityProfile.encryptionAtHost"));
        }
        let size = model
            .pointer("/properties/hardwareProfile/vmSize")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if sku(size).is_some_and(|s| !s.eah) {
            return Err(ArmError::bad_request(
                "BadRequest",
                format!("Encryption at host is not supported for the VM size '{size}'. Use a size with the capability 'EncryptionAtHostSupported'."),
            )
            .with_target("securityProfile.encryptionAtHost"));
        }
        if ever_ade {
            let status = self.eah_refusal_status;
            let code = if status == 409 {
                "OperationNotAllowed"
            } else {
                "BadRequest"
            };
            return Err(ArmError::new(
                status,
                code,
                "Encryption at host is not allowed for a VM having disks that were encrypted with Azure Disk Encryption",
            ));
        }
        if let Some(vm) = existing
            && vm.power != Power::Deallocated
        {
            return Err(ArmError::conflict(
                "'securityProfile.encryptionAtHost' can be updated only when VM is in deallocated state",
            ));
        }
        Ok(())
    }

    /// Validates disks, NICs, size, zone, security type and plan of a model
    /// for VM `key` (an update passes the existing VM).
    fn check_model(
        &self,
        key: &str,
        model: &Value,
        existing: Option<&Vm>,
    ) -> Result<Checked, ArmError> {
        let props = model.get("properties").cloned().unwrap_or(Value::Null);
        let size = props
            .pointer("/hardwareProfile/vmSize")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if size.is_empty() {
            return Err(ArmError::bad_request(
                "InvalidParameter",
                "Required parameter 'hardwareProfile.vmSize' is missing (null).",
            )
            .with_target("hardwareProfile.vmSize"));
        }
        let Some(s) = sku(size) else {
            return Err(ArmError::bad_request(
                "InvalidParameter",
                format!("The value {size} provided for the VM size is not valid."),
            )
            .with_target("vmSize"));
        };
        if s.restricted {
            return Err(ArmError::new(
                409,
                "SkuNotAvailable",
                format!(
                    "The requested VM size for resource 'Following SKUs have failed for Capacity Restrictions: {size}' is currently not available in location '{}'. Please try another size or deploy to a different location or different zone. See https://aka.ms/azureskunotavailable for details.",
                    self.location
                ),
            ));
        }
        let vm_zone = zone_of(model);
        let vm_tl = props
            .pointer("/securityProfile/securityType")
            .and_then(Value::as_str)
            .is_some_and(|s| s.eq_ignore_ascii_case("TrustedLaunch"));
        let mut disks = Vec::new();
        let mut luns = BTreeSet::new();
        let mut entries: Vec<(Value, bool)> = Vec::new();
        if let Some(os) = props.pointer("/storageProfile/osDisk") {
            entries.push((os.clone(), true));
        }
        for d in props
            .pointer("/storageProfile/dataDisks")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let lun = d.get("lun").and_then(Value::as_i64).ok_or_else(|| {
                ArmError::bad_request(
                    "InvalidParameter",
                    "Required parameter 'dataDisk.lun' is missing (null).",
                )
                .with_target("dataDisk.lun")
            })?;
            if !luns.insert(lun) {
                return Err(ArmError::bad_request(
                    "InvalidParameter",
                    format!("A disk at LUN {lun} already exists."),
                )
                .with_target("dataDisks"));
            }
            entries.push((d.clone(), false));
        }
        for (entry, is_os) in entries {
            let Some(id) = entry.pointer("/managedDisk/id").and_then(Value::as_str) else {
                return Err(ArmError::bad_request(
                    "InvalidParameter",
                    "Only managed disks (managedDisk.id) are supported.",
                )
                .with_target("managedDisk.id"));
            };
            let dk = key_of(id);
            if disks.contains(&dk) {
                return Err(ArmError::bad_request(
                    "InvalidParameter",
                    format!("Disk '{id}' is specified more than once."),
                ));
            }
            let Some(d) = self.disks.get(&dk) else {
                return Err(not_found_id(id));
            };
            match &d.managed_by {
                Some(owner) if owner != key => {
                    let owner_id = self
                        .vms
                        .get(owner)
                        .map(|v| v.id.clone())
                        .unwrap_or_else(|| owner.clone());
                    return Err(ArmError::new(
                        409,
                        "ConflictingUserInput",
                        format!(
                            "Disk '{}' cannot be attached as the disk is already owned by VM '{owner_id}'.",
                            d.name
                        ),
                    ));
                }
                Some(_) => {}
                None => {
                    if d.provisioning != "Succeeded" {
                        return Err(ArmError::conflict(format!(
                            "Disk '{}' cannot be attached while its provisioning state is '{}'.",
                            d.name, d.provisioning
                        )));
                    }
                    let state = self.disk_state(d);
                    if matches!(state, "ActiveSAS" | "ActiveUpload" | "ReadyToUpload") {
                        return Err(ArmError::conflict(format!(
                            "Disk '{}' cannot be attached to a VM because it is in state '{state}'. Finish the upload and call endGetAccess on the disk first.",
                            d.name
                        )));
                    }
                    let dz = d
                        .zones
                        .as_ref()
                        .and_then(|z| z.get(0))
                        .and_then(Value::as_str)
                        .map(str::to_string);
                    if dz != vm_zone {
                        return Err(ArmError::bad_request(
                            "BadRequest",
                            format!(
                                "Disk {} cannot be attached to the VM because it is not in the same zone as the VM. VM zone: '{}'. Disk zone: '{}'.",
                                d.id,
                                vm_zone.clone().unwrap_or_default(),
                                dz.unwrap_or_default()
                            ),
                        ));
                    }
                }
            }
            if is_os {
                let disk_tl = d
                    .security
                    .as_ref()
                    .and_then(|s| s.get("securityType"))
                    .and_then(Value::as_str)
                    .is_some_and(|s| s.to_ascii_lowercase().contains("trustedlaunch"));
                if disk_tl != vm_tl {
                    return Err(ArmError::bad_request(
                        "BadRequest",
                        "Security type of VM is not compatible with the security type of attached OS Disk.",
                    ));
                }
                let plan = model.get("plan").is_some_and(|p| !p.is_null());
                if d.purchase_plan.is_some() && !plan {
                    return Err(ArmError::bad_request(
                        "VMMarketplaceInvalidInput",
                        format!(
                            "Creating a virtual machine from Marketplace image requires Plan information in the request. OS disk name is {}.",
                            d.name
                        ),
                    ));
                }
                if d.purchase_plan.is_none() && plan && existing.is_none() {
                    return Err(ArmError::bad_request(
                        "VMMarketplaceInvalidInput",
                        format!(
                            "Creating a virtual machine from a non Marketplace image does not need Plan information, please remove the Plan information in the request. OS disk name is {}.",
                            d.name
                        ),
                    ));
                }
                if d.hyper_v
                    .as_deref()
                    .is_some_and(|g| g.eq_ignore_ascii_case("V2"))
                    && !s.hyperv.contains("V2")
                {
                    return Err(ArmError::bad_request(
                        "BadRequest",
                        format!(
                            "The selected VM size '{size}' cannot boot Hypervisor Generation '2'. If this was a Create operation please check that the Hypervisor Generation of the Image matches the Hypervisor Generation of the selected VM Size."
                        ),
                    ));
                }
            }
            disks.push(dk);
        }
        let mut nics = Vec::new();
        let list = props
            .pointer("/networkProfile/networkInterfaces")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if list.is_empty() {
            return Err(ArmError::bad_request(
                "InvalidParameter",
                "At least one network interface is required (networkProfile.networkInterfaces).",
            )
            .with_target("networkProfile"));
        }
        for n in list {
            let Some(id) = n.get("id").and_then(Value::as_str) else {
                return Err(ArmError::bad_request(
                    "InvalidParameter",
                    "Network interface id is missing.",
                )
                .with_target("networkInterfaces.id"));
            };
            let nk = key_of(id);
            let Some(nic) = self.nics.get(&nk) else {
                return Err(not_found_id(id));
            };
            if let Some(owner) = &nic.vm {
                if owner != key {
                    let owner_id = self
                        .vms
                        .get(owner)
                        .map(|v| v.id.clone())
                        .unwrap_or_else(|| owner.clone());
                    return Err(ArmError::bad_request(
                        "NicInUse",
                        format!(
                            "Network interface {} is used by existing VM {owner_id}.",
                            nic.id
                        ),
                    ));
                }
            } else if let Some((vm, _)) = self.nic_reserved.get(&nk) {
                return Err(ArmError::bad_request(
                    "NicReservedForAnotherVm",
                    format!(
                        "Nic(s) in request is reserved for another Virtual Machine for 180 seconds. Please provide another nic(s) or retry after 180 seconds. Reserved VM: {vm}"
                    ),
                ));
            }
            nics.push(nk);
        }
        Ok(Checked { disks, nics })
    }

    /// `DELETE` VM.
    pub(crate) fn vm_delete(
        &mut self,
        t: &Target,
        inject: bool,
        now: f64,
    ) -> Result<Reply, ArmError> {
        let key = t.key();
        let Some(vm) = self.vms.get(&key) else {
            return Ok(Reply {
                status: 204,
                body: None,
                lro: None,
            });
        };
        if vm.deleting
            && let Some(op) = vm.busy.clone()
        {
            let retry = self
                .ops
                .get(&op)
                .map(|o| (o.done_at - now).clamp(1.0, 60.0))
                .unwrap_or(1.0);
            return Ok(Reply {
                status: 202,
                body: None,
                lro: Some(LroRef {
                    id: op,
                    family: OpFamily::Compute,
                    location: true,
                    retry_after: retry,
                }),
            });
        }
        self.vm_gate(vm, "delete")?;
        let dur = self.draw(self.durations.vm_delete);
        let lro = self.new_op(
            now,
            OpFamily::Compute,
            dur,
            Effect::VmDelete { vm: key.clone() },
            inject,
            Final::NoContent,
        );
        let vm = self.vms.get_mut(&key).expect("exists");
        vm.deleting = true;
        vm.provisioning = "Deleting".into();
        vm.busy = Some(lro.id.clone());
        Ok(Reply {
            status: 202,
            body: None,
            lro: Some(lro),
        })
    }

    /// `POST .../deallocate|start|powerOff`.
    pub(crate) fn vm_action(
        &mut self,
        t: &Target,
        action: &str,
        inject: bool,
        now: f64,
    ) -> Result<Reply, ArmError> {
        let key = t.key();
        let vm = self.vm(t)?;
        let label = match action {
            "deallocate" => "deallocate",
            "start" => "start",
            _ => "powerOff",
        };
        self.vm_gate(vm, label)?;
        let prev = vm.power;
        let (transit, target, range) = match label {
            "deallocate" => (
                Power::Deallocating,
                Power::Deallocated,
                self.durations.vm_deallocate,
            ),
            "start" => (Power::Starting, Power::Running, self.durations.vm_start),
            _ => (Power::Stopping, Power::Stopped, self.durations.vm_power_off),
        };
        if label == "start" {
            let (os, data, _) = model_refs(&vm.model);
            for k in os
                .iter()
                .map(|(k, _)| k)
                .chain(data.iter().map(|(_, k, _)| k))
            {
                if let Some(d) = self.disks.get(k) {
                    let st = self.disk_state(d);
                    if matches!(st, "ActiveSAS" | "ActiveUpload" | "ReadyToUpload") {
                        return Err(ArmError::conflict(format!(
                            "Operation 'start' is not allowed on VM '{}' since disk '{}' is in state '{st}'. Call endGetAccess on the disk first.",
                            vm.name, d.name
                        )));
                    }
                }
            }
        }
        let dur = if prev == target {
            self.draw(SimRange::new(1.0, 3.0))
        } else {
            self.draw(range)
        };
        let lro = self.new_op(
            now,
            OpFamily::Compute,
            dur,
            Effect::VmPower {
                vm: key.clone(),
                target,
                prev,
            },
            inject,
            Final::NoContent,
        );
        let vm = self.vms.get_mut(&key).expect("exists");
        if prev != target {
            vm.power = transit;
            vm.provisioning = "Updating".into();
        }
        vm.busy = Some(lro.id.clone());
        Ok(Reply {
            status: 202,
            body: None,
            lro: Some(lro),
        })
    }

    // ------------------------------------------------------------ extensions

    /// `GET .../extensions/{name}`.
    pub(crate) fn ext_get(&self, vm: &Target, name: &str) -> Result<Value, ArmError> {
        let v = self.vm(vm)?;
        v.extensions
            .get(&name.to_ascii_lowercase())
            .map(Ext::body)
            .ok_or_else(|| {
                not_found(
                    &format!("Microsoft.Compute/virtualMachines/{}/extensions", v.name),
                    name,
                    &vm.rg,
                )
            })
    }

    /// `PUT .../extensions/{name}`.
    pub(crate) fn ext_put(
        &mut self,
        vmt: &Target,
        name: &str,
        body: Value,
        inject: bool,
        now: f64,
    ) -> Result<Reply, ArmError> {
        let key = vmt.key();
        let vm = self.vm(vmt)?;
        self.vm_gate(vm, "extensionCreateOrUpdate")?;
        if vm.power != Power::Running {
            return Err(ArmError::conflict(
                "Cannot modify extensions in the VM when the VM is not running.",
            ));
        }
        let Some(props) = body.get("properties").filter(|p| p.is_object()).cloned() else {
            return Err(ArmError::bad_request(
                "InvalidParameter",
                "Required parameter 'properties' is missing (null).",
            )
            .with_target("properties"));
        };
        let mut props = props;
        if let Some(m) = props.as_object_mut() {
            m.remove("provisioningState");
            m.remove("protectedSettings");
            m.remove("instanceView");
        }
        let ext = Ext {
            id: format!("{}/extensions/{name}", vm.id),
            name: name.to_string(),
            location: body
                .get("location")
                .and_then(Value::as_str)
                .unwrap_or(&self.location)
                .to_string(),
            props,
            provisioning: String::new(),
        };
        if ext.publisher().is_empty() || ext.etype().is_empty() {
            return Err(ArmError::bad_request(
                "InvalidParameter",
                "Required parameters 'publisher' and 'type' are missing.",
            )
            .with_target("properties.type"));
        }
        let lname = name.to_ascii_lowercase();
        if ext.is_ade()
            && vm.os() == OsKind::Windows
            && let Some(other) = vm
                .extensions
                .values()
                .find(|x| x.is_ade() && !x.name.eq_ignore_ascii_case(name))
        {
            let _ = other;
            return Err(ArmError::bad_request(
                "BadRequest",
                format!(
                    "Multiple VMExtensions per handler not supported for OS type 'Windows'. VMExtension '{name}' with handler 'Microsoft.Azure.Security.AzureDiskEncryption' already added or specified in input."
                ),
            ));
        }
        let prev = vm.extensions.get(&lname).cloned();
        let existed = prev.is_some();
        let mut ext = ext;
        if let Some(p) = &prev {
            ext.name = p.name.clone();
            ext.id = p.id.clone();
        }
        ext.provisioning = if existed {
            "Updating".into()
        } else {
            "Creating".into()
        };
        let body = ext.body();
        let dur = self.draw(self.durations.ext_put);
        let effect = Effect::ExtPut {
            vm: key.clone(),
            name: lname.clone(),
            prev,
        };
        let mut lro = self.new_op(
            now,
            OpFamily::Compute,
            dur,
            effect,
            inject,
            Final::Resource(ResourceKind::Extension, format!("{key}/extensions/{lname}")),
        );
        lro.location = false;
        let vm = self.vms.get_mut(&key).expect("exists");
        vm.extensions.insert(lname, ext);
        vm.busy = Some(lro.id.clone());
        Ok(Reply {
            status: if existed { 200 } else { 201 },
            body: Some(body),
            lro: Some(lro),
        })
    }

    /// `DELETE .../extensions/{name}`.
    pub(crate) fn ext_delete(
        &mut self,
        vmt: &Target,
        name: &str,
        inject: bool,
        now: f64,
    ) -> Result<Reply, ArmError> {
        let key = vmt.key();
        let lname = name.to_ascii_lowercase();
        let Some(vm) = self.vms.get(&key) else {
            return Ok(Reply {
                status: 204,
                body: None,
                lro: None,
            });
        };
        let Some(ext) = vm.extensions.get(&lname) else {
            return Ok(Reply {
                status: 204,
                body: None,
                lro: None,
            });
        };
        self.vm_gate(vm, "extensionDelete")?;
        if vm.power != Power::Running {
            return Err(ArmError::conflict(
                "Cannot modify extensions in the VM when the VM is not running.",
            ));
        }
        if ext.is_ade() && matches!(vm.ade, Some(AdeGuest::Decrypting { .. })) {
            return Err(ArmError::conflict(format!(
                "Cannot delete extension '{}' while Azure Disk Encryption is decrypting the VM's volumes (DecryptionInProgress). Wait until the extension reports that decryption completed.",
                ext.name
            )));
        }
        let dur = self.draw(self.durations.ext_delete);
        let lro = self.new_op(
            now,
            OpFamily::Compute,
            dur,
            Effect::ExtDelete {
                vm: key.clone(),
                name: lname.clone(),
            },
            inject,
            Final::NoContent,
        );
        let vm = self.vms.get_mut(&key).expect("exists");
        if let Some(x) = vm.extensions.get_mut(&lname) {
            x.provisioning = "Deleting".into();
        }
        vm.busy = Some(lro.id.clone());
        Ok(Reply {
            status: 202,
            body: None,
            lro: Some(lro),
        })
    }

    // ------------------------------------------------------------ disks

    fn disk_map(&self, snapshot: bool) -> &BTreeMap<String, Disk> {
        if snapshot {
            &self.snapshots
        } else {
            &self.disks
        }
    }

    fn disk_map_mut(&mut self, snapshot: bool) -> &mut BTreeMap<String, Disk> {
        if snapshot {
            &mut self.snapshots
        } else {
            &mut self.disks
        }
    }

    fn disk_not_found(t: &Target, snapshot: bool) -> ArmError {
        not_found(
            if snapshot {
                "Microsoft.Compute/snapshots"
            } else {
                "Microsoft.Compute/disks"
            },
            &t.name,
            &t.rg,
        )
    }

    fn disk_state(&self, d: &Disk) -> &'static str {
        if d.upload == Some(UploadPhase::Active) {
            return "ActiveUpload";
        }
        if d.access.is_some()
            && d.blob
                .as_ref()
                .is_some_and(|b| self.blobs.has_active_grant(b))
        {
            // An expired read SAS no longer holds the disk (Azure frees it at expiry).
            return "ActiveSAS";
        }
        if d.upload == Some(UploadPhase::Ready) {
            return "ReadyToUpload";
        }
        if let Some(vm) = d.managed_by.as_ref().and_then(|k| self.vms.get(k)) {
            return if vm.power == Power::Deallocated {
                "Reserved"
            } else {
                "Attached"
            };
        }
        "Unattached"
    }

    fn disk_body(&self, d: &Disk) -> Value {
        let mut creation = json!({"createOption": d.create_option});
        if let Some(u) = d.upload_size {
            creation["uploadSizeBytes"] = json!(u);
        }
        if let Some(s) = &d.source_id {
            creation["sourceResourceId"] = json!(s);
        }
        if let Some(s) = &d.source_unique {
            creation["sourceUniqueId"] = json!(s);
        }
        let mut props = json!({
            "diskSizeGB": d.size_bytes.div_ceil(GIB),
            "diskSizeBytes": d.size_bytes,
            "diskState": self.disk_state(d),
            "provisioningState": d.provisioning,
            "timeCreated": self.fmt_time(d.time_created),
            "uniqueId": d.unique_id,
            "creationData": creation,
            "encryption": {"type": "EncryptionAtRestWithPlatformKey"},
            "networkAccessPolicy": "AllowAll",
            "publicNetworkAccess": "Enabled",
        });
        if let Some(v) = &d.os_type {
            props["osType"] = json!(v);
        }
        if let Some(v) = &d.hyper_v {
            props["hyperVGeneration"] = json!(v);
        }
        if let Some(v) = &d.security {
            props["securityProfile"] = v.clone();
        }
        if let Some(v) = &d.purchase_plan {
            props["purchasePlan"] = v.clone();
        }
        if let Some(v) = d.incremental {
            props["incremental"] = json!(v);
        }
        if d.ever_ade {
            let kv = d.key_vault.clone().unwrap_or_default();
            let kv_name = kv.rsplit('/').next().unwrap_or("kv").to_string();
            props["encryptionSettingsCollection"] = json!({
                "enabled": d.ade_enabled,
                "encryptionSettings": [{
                    "diskEncryptionKey": {"sourceVault": {"id": kv}, "secretUrl": format!("https://{kv_name}.vault.azure.net/secrets/{}/0123456789abcdef", d.unique_id)},
                }],
                "encryptionSettingsVersion": "1.1",
            });
        }
        let mut body = json!({
            "id": d.id, "name": d.name,
            "type": if d.snapshot { "Microsoft.Compute/snapshots" } else { "Microsoft.Compute/disks" },
            "location": d.location, "tags": d.tags,
            "sku": {"name": d.sku, "tier": if d.sku.starts_with("Premium") { "Premium" } else { "Standard" }},
            "properties": props,
        });
        if let Some(z) = &d.zones {
            body["zones"] = z.clone();
        }
        if let Some(vm) = d.managed_by.as_ref().and_then(|k| self.vms.get(k)) {
            body["managedBy"] = json!(vm.id);
        }
        body
    }

    /// `GET` disk or snapshot.
    pub(crate) fn disk_get(&self, t: &Target, snapshot: bool) -> Result<Value, ArmError> {
        self.disk_map(snapshot)
            .get(&t.key())
            .map(|d| self.disk_body(d))
            .ok_or_else(|| Self::disk_not_found(t, snapshot))
    }

    /// Disks or snapshots of a subscription and resource group.
    pub(crate) fn disk_list(&self, sub: &str, rg: Option<&str>, snapshot: bool) -> Value {
        let value: Vec<Value> = self
            .disk_map(snapshot)
            .values()
            .filter(|d| sub_of(&d.id).eq_ignore_ascii_case(sub))
            .filter(|d| rg.is_none_or(|rg| d.rg.eq_ignore_ascii_case(rg)))
            .map(|d| self.disk_body(d))
            .collect();
        json!({"value": value})
    }

    /// `PUT` disk or snapshot (create, or update of tags/sku/properties).
    pub(crate) fn disk_put(
        &mut self,
        t: &Target,
        body: Value,
        snapshot: bool,
        inject: bool,
        now: f64,
    ) -> Result<Reply, ArmError> {
        if !body.is_object() {
            return Err(ArmError::invalid_body("expected a JSON object"));
        }
        let key = t.key();
        let creation = body
            .pointer("/properties/creationData")
            .cloned()
            .unwrap_or(Value::Null);
        let option = creation
            .get("createOption")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if let Some(existing) = self.disk_map(snapshot).get(&key) {
            if !option.is_empty() && !option.eq_ignore_ascii_case(&existing.create_option) {
                return Err(ArmError::new(
                    409,
                    "PropertyChangeNotAllowed",
                    "Changing property 'creationData.createOption' is not allowed.",
                )
                .with_target("creationData.createOption"));
            }
            if existing.provisioning == "Deleting" {
                return Err(ArmError::conflict(format!(
                    "Disk '{}' is being deleted.",
                    existing.name
                )));
            }
            return self.disk_update(t, body, snapshot, inject, now, 200);
        }
        let location = body
            .get("location")
            .and_then(Value::as_str)
            .unwrap_or(&self.location)
            .to_string();
        let props = body.get("properties").cloned().unwrap_or(json!({}));
        let sku = body
            .pointer("/sku/name")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| "Standard_LRS".into());
        let mut d = Disk {
            id: t.id.clone(),
            name: t.name.clone(),
            rg: t.rg.clone(),
            location,
            zones: body.get("zones").filter(|z| z.is_array()).cloned(),
            sku,
            tags: body
                .get("tags")
                .filter(|v| v.is_object())
                .cloned()
                .unwrap_or(json!({})),
            size_bytes: 0,
            blob: None,
            create_option: String::new(),
            upload_size: None,
            source_id: None,
            source_unique: None,
            os_type: props
                .get("osType")
                .and_then(Value::as_str)
                .map(str::to_string),
            hyper_v: props
                .get("hyperVGeneration")
                .and_then(Value::as_str)
                .map(str::to_string),
            security: props
                .get("securityProfile")
                .filter(|v| v.is_object())
                .cloned(),
            purchase_plan: props.get("purchasePlan").filter(|v| v.is_object()).cloned(),
            incremental: if snapshot {
                Some(
                    props
                        .get("incremental")
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                )
            } else {
                None
            },
            unique_id: self.rng.uuid(),
            time_created: now,
            managed_by: None,
            access: None,
            upload: None,
            provisioning: "Updating".into(),
            ever_ade: false,
            ade_enabled: false,
            guest_encrypted: false,
            key_vault: None,
            snapshot,
        };
        match option.to_ascii_lowercase().as_str() {
            "upload" if !snapshot => {
                let Some(n) = creation.get("uploadSizeBytes").and_then(Value::as_u64) else {
                    return Err(ArmError::bad_request(
                        "InvalidParameter",
                        "Required parameter 'creationData.uploadSizeBytes' is missing (null).",
                    )
                    .with_target("uploadSizeBytes"));
                };
                if !(MIN_UPLOAD..=MAX_UPLOAD).contains(&n) {
                    return Err(ArmError::bad_request(
                        "BadRequest",
                        format!(
                            "The upload size in bytes {n} is out of range. It must be between {MIN_UPLOAD} and {MAX_UPLOAD} bytes."
                        ),
                    ));
                }
                if (n - 512) % MIB != 0 {
                    return Err(ArmError::bad_request(
                        "BadRequest",
                        format!(
                            "The upload size in bytes {n} - 512 bytes for the VHD footer ({} in this case) must be a multiple of MiB.",
                            n - 512
                        ),
                    ));
                }
                d.blob = Some(self.blobs.create_upload(n));
                d.size_bytes = n - 512;
                d.upload_size = Some(n);
                d.upload = Some(UploadPhase::Ready);
                d.create_option = "Upload".into();
            }
            "copy" => {
                let Some(src) = creation.get("sourceResourceId").and_then(Value::as_str) else {
                    return Err(ArmError::bad_request(
                        "InvalidParameter",
                        "Required parameter 'creationData.sourceResourceId' is missing (null).",
                    )
                    .with_target("sourceResourceId"));
                };
                let sk = key_of(src);
                let Some(source) = self
                    .disks
                    .get(&sk)
                    .or_else(|| self.snapshots.get(&sk))
                    .cloned()
                else {
                    return Err(not_found_id(src));
                };
                if source.provisioning != "Succeeded" && source.provisioning != "Updating" {
                    return Err(ArmError::conflict(format!(
                        "The source '{src}' is not available (provisioningState '{}').",
                        source.provisioning
                    )));
                }
                if !snapshot
                    && d.security
                        .as_ref()
                        .and_then(|s| s.get("securityType"))
                        .and_then(Value::as_str)
                        .is_some_and(|s| s.eq_ignore_ascii_case("TrustedLaunch"))
                {
                    return Err(ArmError::bad_request(
                        "BadRequest",
                        "Security Type 'TrustedLaunch' is not supported for CreateOption 'Copy'. Supported create options are FromImage, Import, ImportSecure, UploadPreparedSecure.",
                    ));
                }
                let blob = source.blob.as_ref().and_then(|b| self.blobs.clone_blob(b));
                if blob.is_none() {
                    return Err(ArmError::new(
                        500,
                        "InternalServerError",
                        "The source's storage could not be copied.",
                    ));
                }
                d.blob = blob;
                d.size_bytes = source.size_bytes;
                d.source_id = Some(source.id.clone());
                d.source_unique = Some(source.unique_id.clone());
                d.ever_ade = source.ever_ade;
                d.ade_enabled = source.ade_enabled;
                d.guest_encrypted = source.guest_encrypted;
                d.key_vault = source.key_vault.clone();
                d.os_type = d.os_type.or(source.os_type.clone());
                d.hyper_v = d.hyper_v.or(source.hyper_v.clone());
                d.purchase_plan = d.purchase_plan.or(source.purchase_plan.clone());
                if snapshot {
                    d.security = d.security.or(source.security.clone());
                }
                if d.zones.is_none() && !snapshot {
                    d.zones = None;
                }
                d.create_option = "Copy".into();
            }
            "empty" if !snapshot => {
                let Some(gb) = props
                    .get("diskSizeGB")
                    .and_then(Value::as_u64)
                    .filter(|g| *g > 0)
                else {
                    return Err(ArmError::bad_request(
                        "InvalidParameter",
                        "Required parameter 'diskSizeGB' is missing (null).",
                    )
                    .with_target("diskSizeGB"));
                };
                d.size_bytes = gb * GIB;
                d.blob = Some(self.blobs.create_upload(gb * GIB + 512));
                d.create_option = "Empty".into();
            }
            "" => {
                return Err(ArmError::bad_request(
                    "InvalidParameter",
                    "Required parameter 'creationData.createOption' is missing (null).",
                )
                .with_target("creationData.createOption"));
            }
            other => {
                return Err(ArmError::bad_request(
                    "InvalidParameter",
                    format!(
                        "createOption '{other}' is not supported by the emulator for {}.",
                        if snapshot {
                            "snapshots (use Copy)"
                        } else {
                            "disks (use Upload, Copy or Empty)"
                        }
                    ),
                )
                .with_target("creationData.createOption"));
            }
        }
        let body = self.disk_body(&d);
        self.disk_map_mut(snapshot).insert(key.clone(), d);
        let dur = self.draw(self.durations.disk_create);
        let kind = if snapshot {
            ResourceKind::Snapshot
        } else {
            ResourceKind::Disk
        };
        let lro = self.new_op(
            now,
            OpFamily::Disk,
            dur,
            Effect::DiskCreate {
                key: key.clone(),
                snapshot,
                new: true,
            },
            inject,
            Final::Resource(kind, key),
        );
        Ok(Reply {
            status: 202,
            body: Some(body),
            lro: Some(lro),
        })
    }

    fn disk_update(
        &mut self,
        t: &Target,
        body: Value,
        snapshot: bool,
        inject: bool,
        now: f64,
        status: u16,
    ) -> Result<Reply, ArmError> {
        let key = t.key();
        let d = self
            .disk_map_mut(snapshot)
            .get_mut(&key)
            .ok_or_else(|| Self::disk_not_found(t, snapshot))?;
        if let Some(tags) = body.get("tags").filter(|v| v.is_object()) {
            d.tags = tags.clone();
        }
        if let Some(s) = body.pointer("/sku/name").and_then(Value::as_str) {
            d.sku = s.to_string();
        }
        if let Some(p) = body.get("properties") {
            if let Some(v) = p.get("osType").and_then(Value::as_str) {
                d.os_type = Some(v.to_string());
            }
            if let Some(v) = p.get("hyperVGeneration").and_then(Value::as_str) {
                d.hyper_v = Some(v.to_string());
            }
            if let Some(v) = p.get("purchasePlan").filter(|v| v.is_object()) {
                d.purchase_plan = Some(v.clone());
            }
            if let Some(v) = p.get("securityProfile").filter(|v| v.is_object()) {
                d.security = Some(v.clone());
            }
        }
        let was = d.provisioning.clone();
        d.provisioning = "Updating".into();
        let d = self.disk_map(snapshot)[&key].clone();
        let body = self.disk_body(&d);
        let dur = self.draw(self.durations.disk_create);
        let kind = if snapshot {
            ResourceKind::Snapshot
        } else {
            ResourceKind::Disk
        };
        // A re-PUT during creation keeps the creation semantics on failure.
        let new = was != "Succeeded" && self.ops.values().any(|o| o.running() && matches!(&o.effect, Some(Effect::DiskCreate { key: k, new: true, .. }) if *k == key));
        let _ = new;
        let lro = self.new_op(
            now,
            OpFamily::Disk,
            dur,
            Effect::DiskCreate {
                key: key.clone(),
                snapshot,
                new: false,
            },
            inject,
            Final::Resource(kind, key),
        );
        Ok(Reply {
            status,
            body: Some(body),
            lro: Some(lro),
        })
    }

    /// `PATCH` disk or snapshot (tags, sku, a few properties).
    pub(crate) fn disk_patch(
        &mut self,
        t: &Target,
        body: Value,
        snapshot: bool,
        inject: bool,
        now: f64,
    ) -> Result<Reply, ArmError> {
        if !self.disk_map(snapshot).contains_key(&t.key()) {
            return Err(Self::disk_not_found(t, snapshot));
        }
        self.disk_update(t, body, snapshot, inject, now, 200)
    }

    /// `DELETE` disk or snapshot.
    pub(crate) fn disk_delete(
        &mut self,
        t: &Target,
        snapshot: bool,
        inject: bool,
        now: f64,
    ) -> Result<Reply, ArmError> {
        let key = t.key();
        let Some(d) = self.disk_map(snapshot).get(&key) else {
            return Ok(Reply {
                status: 204,
                body: None,
                lro: None,
            });
        };
        if let Some(vm) = d.managed_by.as_ref().and_then(|k| self.vms.get(k)) {
            return Err(ArmError::conflict(format!(
                "Disk {} is attached to VM {}.",
                d.name, vm.id
            )));
        }
        let state = self.disk_state(d);
        if matches!(state, "ActiveSAS" | "ActiveUpload") {
            return Err(ArmError::conflict(format!(
                "Disk {} cannot be deleted while it is in state '{state}'. Call endGetAccess first.",
                d.name
            )));
        }
        let dur = self.draw(self.durations.disk_delete);
        let lro = self.new_op(
            now,
            OpFamily::Disk,
            dur,
            Effect::DiskDelete {
                key: key.clone(),
                snapshot,
            },
            inject,
            Final::NoContent,
        );
        if let Some(d) = self.disk_map_mut(snapshot).get_mut(&key) {
            d.provisioning = "Deleting".into();
        }
        Ok(Reply {
            status: 202,
            body: None,
            lro: Some(lro),
        })
    }

    /// `POST .../beginGetAccess`.
    pub(crate) fn grant(
        &mut self,
        t: &Target,
        body: Value,
        snapshot: bool,
        inject: bool,
        now: f64,
    ) -> Result<Reply, ArmError> {
        let key = t.key();
        let d = self
            .disk_map(snapshot)
            .get(&key)
            .ok_or_else(|| Self::disk_not_found(t, snapshot))?;
        let access = body
            .get("access")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_ascii_lowercase();
        let access = match access.as_str() {
            "read" => SasAccess::Read,
            "write" => SasAccess::Write,
            _ => {
                return Err(ArmError::bad_request(
                    "InvalidParameter",
                    "The value of parameter 'access' must be 'Read' or 'Write'.",
                )
                .with_target("access"));
            }
        };
        let Some(secs) = body
            .get("durationInSeconds")
            .and_then(Value::as_u64)
            .filter(|s| *s > 0)
        else {
            return Err(ArmError::bad_request(
                "InvalidParameter",
                "Required parameter 'durationInSeconds' is missing or not a positive integer.",
            )
            .with_target("durationInSeconds"));
        };
        if secs > MAX_SAS_SECS {
            return Err(ArmError::bad_request(
                "InvalidParameter",
                format!("The value {secs} of parameter 'durationInSeconds' is out of range. The maximum SAS duration is {MAX_SAS_SECS} seconds (60 days)."),
            )
            .with_target("durationInSeconds"));
        }
        if d.provisioning != "Succeeded" {
            return Err(ArmError::conflict(format!(
                "Access cannot be granted on '{}' while its provisioning state is '{}'.",
                d.name, d.provisioning
            )));
        }
        match access {
            SasAccess::Read => {
                if d.upload.is_some() {
                    return Err(ArmError::conflict(format!(
                        "Read access is not permitted on disk {} in state '{}'.",
                        d.name,
                        self.disk_state(d)
                    )));
                }
                if let Some(vm) = d.managed_by.as_ref().and_then(|k| self.vms.get(k))
                    && vm.power != Power::Deallocated
                {
                    return Err(ArmError::new(
                        409,
                        "Conflict",
                        format!(
                            "Access not permitted because disk {} is currently attached to running VM {}.",
                            d.name, vm.id
                        ),
                    ));
                }
            }
            SasAccess::Write => {
                if snapshot || d.upload.is_none() {
                    return Err(ArmError::conflict(format!(
                        "Write access can be granted only on a disk created with createOption 'Upload' in state ReadyToUpload or ActiveUpload; '{}' is in state '{}'.",
                        d.name,
                        self.disk_state(d)
                    )));
                }
            }
        }
        let dur = self.draw(self.durations.access);
        let lro = self.new_op(
            now,
            OpFamily::Disk,
            dur,
            Effect::Grant {
                key,
                snapshot,
                access,
                duration: secs as f64,
            },
            inject,
            Final::NoContent,
        );
        Ok(Reply {
            status: 202,
            body: None,
            lro: Some(lro),
        })
    }

    /// `POST .../endGetAccess`.
    pub(crate) fn revoke(
        &mut self,
        t: &Target,
        snapshot: bool,
        inject: bool,
        now: f64,
    ) -> Result<Reply, ArmError> {
        let key = t.key();
        if !self.disk_map(snapshot).contains_key(&key) {
            return Err(Self::disk_not_found(t, snapshot));
        }
        let dur = self.draw(self.durations.access);
        let lro = self.new_op(
            now,
            OpFamily::Disk,
            dur,
            Effect::Revoke { key, snapshot },
            inject,
            Final::NoContent,
        );
        Ok(Reply {
            status: 202,
            body: None,
            lro: Some(lro),
        })
    }

    // ------------------------------------------------------------ NICs, features, SKUs

    fn nic_body(&self, n: &Nic) -> Value {
        let mut props = json!({
            "provisioningState": "Succeeded",
            "ipConfigurations": [{
                "name": "ipconfig1", "id": format!("{}/ipConfigurations/ipconfig1", n.id),
                "properties": {"privateIPAddress": n.ip, "privateIPAllocationMethod": "Dynamic", "primary": true,
                    "subnet": {"id": format!("{}/providers/Microsoft.Network/virtualNetworks/vnet-emu/subnets/default", self.rg_id("rg-network"))}}
            }],
            "primary": true,
            "enableAcceleratedNetworking": false,
        });
        if let Some(vm) = n.vm.as_ref().and_then(|k| self.vms.get(k)) {
            props["virtualMachine"] = json!({"id": vm.id});
        }
        json!({"id": n.id, "name": n.name, "type": "Microsoft.Network/networkInterfaces", "location": n.location, "properties": props})
    }

    /// `GET` NIC.
    pub(crate) fn nic_get(&self, t: &Target) -> Result<Value, ArmError> {
        self.nics
            .get(&t.key())
            .map(|n| self.nic_body(n))
            .ok_or_else(|| not_found("Microsoft.Network/networkInterfaces", &t.name, &t.rg))
    }

    fn feature_body(&self, sub: &str) -> Value {
        let state = match self
            .features
            .get(&sub.to_ascii_lowercase())
            .copied()
            .unwrap_or(Feature::NotRegistered)
        {
            Feature::NotRegistered => "NotRegistered",
            Feature::Registering(_) => "Registering",
            Feature::Registered => "Registered",
        };
        json!({
            "name": "Microsoft.Compute/EncryptionAtHost",
            "id": format!("/subscriptions/{}/providers/Microsoft.Features/providers/Microsoft.Compute/features/EncryptionAtHost", sub),
            "type": "Microsoft.Features/providers/features",
            "properties": {"state": state},
        })
    }

    /// `GET` a feature (only `EncryptionAtHost` exists).
    pub(crate) fn feature_get(&self, sub: &str, name: &str) -> Result<Value, ArmError> {
        if !name.eq_ignore_ascii_case("EncryptionAtHost") {
            return Err(ArmError::new(
                404,
                "FeatureNotFound",
                format!("The feature '{name}' could not be found."),
            ));
        }
        Ok(self.feature_body(sub))
    }

    /// `POST .../register` of a feature.
    pub(crate) fn feature_register(
        &mut self,
        sub: &str,
        name: &str,
        now: f64,
    ) -> Result<Value, ArmError> {
        self.feature_get(sub, name)?;
        let f = self
            .features
            .entry(sub.to_ascii_lowercase())
            .or_insert(Feature::NotRegistered);
        if matches!(f, Feature::NotRegistered) {
            *f = Feature::Registering(now + self.feature_secs);
        }
        Ok(self.feature_body(sub))
    }

    /// `GET .../providers/Microsoft.Compute/skus`.
    pub(crate) fn skus(&self) -> Value {
        let loc = &self.location;
        let value: Vec<Value> = SKUS
            .iter()
            .map(|s| {
                let restrictions = if s.restricted {
                    json!([{"type": "Location", "values": [loc], "restrictionInfo": {"locations": [loc]}, "reasonCode": "NotAvailableForSubscription"}])
                } else {
                    json!([])
                };
                json!({
                    "resourceType": "virtualMachines", "name": s.name, "tier": "Standard",
                    "size": s.name.trim_start_matches("Standard_"), "family": s.family,
                    "locations": [loc], "locationInfo": [{"location": loc, "zones": ["1", "2", "3"], "zoneDetails": []}],
                    "capabilities": [
                        {"name": "vCPUs", "value": s.vcpus.to_string()},
                        {"name": "MemoryGB", "value": s.mem_gb.to_string()},
                        {"name": "HyperVGenerations", "value": s.hyperv},
                        {"name": "PremiumIO", "value": if s.name.contains('s') { "True" } else { "False" }},
                        {"name": "EncryptionAtHostSupported", "value": if s.eah { "True" } else { "False" }},
                        {"name": "TrustedLaunchDisabled", "value": "False"},
                    ],
                    "restrictions": restrictions,
                })
            })
            .collect();
        json!({"value": value})
    }

    // ------------------------------------------------------------ operations

    /// `GET Azure-AsyncOperation`: (body, simulated Retry-After while running).
    pub(crate) fn op_status(&self, id: &str, now: f64) -> Result<(Value, Option<f64>), ArmError> {
        let op = self
            .ops
            .get(id)
            .or_else(|| self.ops.values().find(|o| o.id.eq_ignore_ascii_case(id)))
            .ok_or_else(|| {
                ArmError::new(
                    404,
                    "NotFound",
                    format!("The operation '{id}' was not found."),
                )
            })?;
        let retry = op.running().then(|| (op.done_at - now).clamp(1.0, 60.0));
        Ok((op.status_body(|t| self.fmt_time(t)), retry))
    }

    /// `GET Location`.
    pub(crate) fn op_location(&self, id: &str, now: f64) -> Result<LocationAnswer, ArmError> {
        let op = self
            .ops
            .get(id)
            .or_else(|| self.ops.values().find(|o| o.id.eq_ignore_ascii_case(id)))
            .ok_or_else(|| {
                ArmError::new(
                    404,
                    "NotFound",
                    format!("The operation '{id}' was not found."),
                )
            })?;
        Ok(match &op.state {
            OpState::InProgress => LocationAnswer::Running((op.done_at - now).clamp(1.0, 60.0)),
            OpState::Failed(e) => LocationAnswer::Failed(e.clone()),
            OpState::Succeeded => match &op.final_body {
                Final::NoContent => LocationAnswer::NoContent,
                Final::Body(b) => LocationAnswer::Done(b.clone()),
                Final::Resource(kind, key) => {
                    let body = match kind {
                        ResourceKind::Vm => self.vms.get(key).map(|v| self.vm_body(v, false)),
                        ResourceKind::Disk => self.disks.get(key).map(|d| self.disk_body(d)),
                        ResourceKind::Snapshot => {
                            self.snapshots.get(key).map(|d| self.disk_body(d))
                        }
                        ResourceKind::Extension => key
                            .split_once("/extensions/")
                            .and_then(|(vm, x)| self.vms.get(vm).and_then(|v| v.extensions.get(x)))
                            .map(Ext::body),
                    };
                    match body {
                        Some(b) => LocationAnswer::Done(b),
                        None => LocationAnswer::NoContent,
                    }
                }
            },
        })
    }

    // ------------------------------------------------------------ test view

    /// The blob behind a disk or snapshot id.
    pub(crate) fn blob_of(&self, id: &str) -> Option<BlobId> {
        let k = key_of(id);
        self.disks
            .get(&k)
            .or_else(|| self.snapshots.get(&k))
            .and_then(|d| d.blob.clone())
    }

    /// The `ScopeLocked` refusal of `op` on `target` (a VM, extension, disk
    /// or snapshot id), if a management lock forbids it. For VM writes
    /// (`vm_model`: the request body of a PUT/PATCH, or `None`), the disks and
    /// NICs of the current model and of the body count as written too (a
    /// create/update/delete attaches or detaches them); with `delete`, those
    /// whose deleteOption is `Delete` count as deleted.
    pub(crate) fn lock_check(
        &self,
        target: &str,
        op: super::governance::LockOp,
        vm_body: Option<&Value>,
        vm_linked: bool,
    ) -> Option<ArmError> {
        let mut linked: Vec<(String, bool)> = Vec::new();
        if vm_linked {
            let deleting = op == super::governance::LockOp::Delete;
            let current = self.vms.get(&key_of(target)).map(|v| &v.model);
            for m in current.into_iter().chain(vm_body) {
                let os = m.pointer("/properties/storageProfile/osDisk");
                let data = m
                    .pointer("/properties/storageProfile/dataDisks")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten();
                for d in os.into_iter().chain(data) {
                    if let Some(id) = d.pointer("/managedDisk/id").and_then(Value::as_str) {
                        let del = d
                            .get("deleteOption")
                            .and_then(Value::as_str)
                            .is_some_and(|x| x.eq_ignore_ascii_case("Delete"));
                        linked.push((id.to_string(), deleting && del));
                    }
                }
                for n in m
                    .pointer("/properties/networkProfile/networkInterfaces")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if let Some(id) = n.get("id").and_then(Value::as_str) {
                        let del = n
                            .pointer("/properties/deleteOption")
                            .and_then(Value::as_str)
                            .is_some_and(|x| x.eq_ignore_ascii_case("Delete"));
                        linked.push((id.to_string(), deleting && del));
                    }
                }
            }
        }
        self.gov.check(target, op, &linked)
    }

    /// Managed disks and snapshots in use per Compute usage name.
    pub(crate) fn usage_counts(&self, location: &str) -> BTreeMap<String, u64> {
        let mut out: BTreeMap<String, u64> = BTreeMap::new();
        let here = |d: &&Disk| d.location.eq_ignore_ascii_case(location);
        for d in self.disks.values().filter(here) {
            if let Some(n) = crate::model::usage::disk_usage_name(&d.sku) {
                *out.entry(n.to_string()).or_default() += 1;
            }
        }
        for d in self.snapshots.values().filter(here) {
            let n = crate::model::usage::snapshot_usage_name(&d.sku);
            *out.entry(n.to_string()).or_default() += 1;
        }
        out
    }

    /// (vms, disks, snapshots, nics, operations, running operations) for the state view.
    pub(crate) fn snapshot_view(
        &self,
    ) -> (Vec<Value>, Vec<Value>, Vec<Value>, Vec<Value>, usize, usize) {
        let vms = self
            .vms
            .values()
            .map(|v| {
                json!({
                    "id": v.id, "model": self.vm_body(v, true),
                    "emulator": {"everAde": v.ever_ade, "power": v.power.code(), "busy": v.busy.is_some(), "deleting": v.deleting,
                                 "ade": v.ade.as_ref().map(|a| match a { AdeGuest::Encrypted => "encrypted".to_string(), AdeGuest::Decrypting { delay, remaining, .. } => format!("decrypting (wait {delay:.0} s, then {remaining:.0} s)"), AdeGuest::Decrypted => "decrypted".to_string(), AdeGuest::Failed(m) => format!("failed: {m}") })},
                })
            })
            .collect();
        let disk_entry = |d: &Disk| json!({"id": d.id, "model": self.disk_body(d), "emulator": {"blob": d.blob.as_ref().map(|b| b.0.clone()), "everAde": d.ever_ade, "guestEncrypted": d.guest_encrypted}});
        let disks = self.disks.values().map(disk_entry).collect();
        let snaps = self.snapshots.values().map(disk_entry).collect();
        let nics = self
            .nics
            .values()
            .map(|n| json!({"id": n.id, "model": self.nic_body(n)}))
            .collect();
        let running = self.ops.values().filter(|o| o.running()).count();
        (vms, disks, snaps, nics, self.ops.len(), running)
    }
}

/// Disk and NIC ids referenced by a model.
struct Checked {
    disks: Vec<String>,
    nics: Vec<String>,
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

/// Strips read-only fields from a VM PUT/PATCH body.
fn clean_model(body: Value, default_location: &str) -> Result<Value, ArmError> {
    let Value::Object(mut m) = body else {
        return Err(ArmError::invalid_body("expected a JSON object"));
    };
    for k in ["id", "name", "type", "resources", "etag", "managedBy"] {
        m.remove(k);
    }
    if !m.contains_key("location") {
        m.insert("location".into(), json!(default_location));
    }
    if let Some(Value::Object(p)) = m.get_mut("properties") {
        for k in ["provisioningState", "vmId", "instanceView", "timeCreated"] {
            p.remove(k);
        }
    } else if m.get("properties").is_some_and(|p| !p.is_null()) {
        return Err(ArmError::invalid_body("'properties' must be an object"));
    }
    if let Some(Value::Object(i)) = m.get_mut("identity") {
        i.remove("principalId");
        i.remove("tenantId");
    }
    Ok(Value::Object(m))
}

/// JSON merge for PATCH: objects merge recursively, everything else replaces.
fn merge(into: &mut Value, patch: Value) {
    match (into, patch) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                if v.is_null() {
                    continue;
                }
                match a.get_mut(&k) {
                    Some(slot) if slot.is_object() && v.is_object() => merge(slot, v),
                    _ => {
                        a.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}
