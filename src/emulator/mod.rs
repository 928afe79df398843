//! A built-in Azure over HTTP on loopback: the ARM control plane (VMs,
//! extensions, disks, snapshots, NICs, features, SKUs, long-running
//! operations, seeded faults, management locks, Azure Backup status,
//! Compute usages) and the managed-disk page-blob data plane.
//!
//! Contract (see docs/contracts.md): the wire is Azure's own; time is
//! simulated ([`clock::SimClock`]); `/_emulator/state|requests|vms` expose the
//! test view. Start one with [`start`] (127.0.0.1, port 0) or [`start_on`].
//!
//! Layout: [`config`] (knobs), [`fleet`] (VM descriptions, demo fleet),
//! `world/` (state and platform rules by resource, synchronous), `lro`
//! (operations), `faults` (seeded fault choice), `rng` (the one seeded
//! random source), `governance` (locks, backup, usages),
//! `arm_routes` (ARM HTTP handler), [`blob`] and
//! [`storage_routes`] (data-plane HTTP handler).

#![deny(missing_docs)]

pub mod blob;
pub mod clock;
pub mod config;
pub mod fleet;
pub mod fleetgen;
pub mod storage_routes;
pub mod throttle;

mod arm_routes;
mod faults;
mod governance;
mod graph;
mod lro;
mod rng;
mod world;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::http::Method;
use serde::Serialize;
use serde_json::Value;

pub use blob::{BlobStore, GrantInfo, StorageConfig, StorageStats};
pub use clock::SimClock;
pub use config::{
    DEFAULT_SUBSCRIPTION, Durations, EmulatorConfig, FaultConfig, FaultKind, SimRange,
    SubscriptionConfig,
};
pub use fleet::{AdeSpec, DeleteOption, DiskSpec, OsKind, VmSpec, demo_fleet};
pub use governance::LockLevel;

use crate::model::ResourceId;
use world::World;

/// One entry of the request log (no query strings, so never a SAS).
#[derive(Debug, Clone, Serialize)]
pub struct RequestLog {
    /// Order of arrival (0-based).
    pub seq: u64,
    /// HTTP method.
    pub method: String,
    /// Path only, no query.
    pub path: String,
    /// PUT/PATCH/POST/DELETE on ARM (not operation polls), PUT on storage.
    pub mutating: bool,
    /// HTTP status answered (for a dropped connection: the status the
    /// request would have had, or 200 when it was dropped before processing).
    pub status: u16,
    /// The injected fault, if any (`throttle-429`, `drop-connection`, ...).
    pub fault: Option<String>,
}

/// The whole world as JSON-friendly values, for tests and `/_emulator/state`.
/// Each resource entry is `{"id", "model": <its GET body>, "emulator": {...}}`.
#[derive(Debug, Clone, Serialize)]
pub struct StateView {
    /// Simulated seconds since start.
    pub sim_now_secs: f64,
    /// The subscription served.
    pub subscription: String,
    /// VMs; `model` is the GET body with the instance view expanded.
    pub vms: Vec<Value>,
    /// Managed disks.
    pub disks: Vec<Value>,
    /// Snapshots.
    pub snapshots: Vec<Value>,
    /// NICs.
    pub nics: Vec<Value>,
    /// Live SAS grants (never the signature).
    pub active_sas: Vec<GrantInfo>,
    /// Operations created so far.
    pub operations: usize,
    /// Operations still running.
    pub running_operations: usize,
    /// Requests served so far.
    pub requests: usize,
    /// Data-plane counters.
    pub storage: StorageStats,
}

/// Shared state behind the HTTP handler and the [`Emulator`] handle.
pub(crate) struct Inner {
    world: Mutex<World>,
    blobs: Arc<BlobStore>,
    clock: SimClock,
    seed: u64,
    faults: Mutex<FaultConfig>,
    log: Mutex<Vec<RequestLog>>,
    arm_seq: AtomicU64,
    throttle: throttle::Throttler,
    base_url: String,
    subscription: String,
    location: String,
    /// [`EmulatorConfig::lro_location_only`].
    lro_location_only: bool,
    /// [`EmulatorConfig::list_page_size`].
    list_page_size: Option<usize>,
}

impl Inner {
    fn next_arm_seq(&self) -> u64 {
        self.arm_seq.fetch_add(1, Ordering::SeqCst)
    }

    fn record(
        &self,
        method: &Method,
        path: &str,
        mutating: bool,
        status: u16,
        fault: Option<String>,
    ) {
        let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        let seq = log.len() as u64;
        log.push(RequestLog {
            seq,
            method: method.to_string(),
            path: path.to_string(),
            mutating,
            status,
            fault,
        });
    }

    fn requests(&self) -> Vec<RequestLog> {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn state_view(&self) -> StateView {
        let now = self.clock.now();
        let (vms, disks, snapshots, nics, operations, running_operations) = {
            let mut w = self.world.lock().unwrap_or_else(|p| p.into_inner());
            w.advance(now);
            w.snapshot_view()
        };
        StateView {
            sim_now_secs: now,
            subscription: self.subscription.clone(),
            vms,
            disks,
            snapshots,
            nics,
            active_sas: self.blobs.active_grants(),
            operations,
            running_operations,
            requests: self.log.lock().unwrap_or_else(|p| p.into_inner()).len(),
            storage: self.blobs.stats(),
        }
    }
}

/// A running emulator. Cheap to clone; every clone talks to the same world.
#[derive(Clone)]
pub struct Emulator {
    inner: Arc<Inner>,
    server: Arc<Mutex<Option<Server>>>,
}

struct Server {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator")
            .field("base_url", &self.inner.base_url)
            .finish()
    }
}

/// Starts an emulator on `127.0.0.1`, on a free port.
pub async fn start(cfg: EmulatorConfig) -> std::io::Result<Emulator> {
    start_on(SocketAddr::from(([127, 0, 0, 1], 0)), cfg).await
}

/// Starts an emulator listening on `addr`; serves until [`Emulator::shutdown`].
pub async fn start_on(addr: SocketAddr, cfg: EmulatorConfig) -> std::io::Result<Emulator> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let host = if local.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        local.ip().to_string()
    };
    let base_url = format!("http://{host}:{}", local.port());
    let clock = SimClock::new(cfg.time_scale);
    let blobs = BlobStore::new(clock, cfg.storage.clone());
    blobs.set_base_url(&base_url);
    let mut world = World::new(&cfg, blobs.clone());
    world.set_base_url(&base_url);
    let inner = Arc::new(Inner {
        subscription: world.subscription().to_string(),
        location: world.location().to_string(),
        world: Mutex::new(world),
        blobs,
        clock,
        seed: cfg.seed,
        faults: Mutex::new(cfg.faults.clone()),
        log: Mutex::new(Vec::new()),
        arm_seq: AtomicU64::new(0),
        throttle: throttle::Throttler::new(cfg.throttle.clone()),
        base_url,
        lro_location_only: cfg.lro_location_only,
        list_page_size: cfg.list_page_size,
    });
    let app = axum::Router::new()
        .fallback(arm_routes::handle)
        .with_state(inner.clone());
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            })
            .await;
    });
    Ok(Emulator {
        inner,
        server: Arc::new(Mutex::new(Some(Server { stop, task }))),
    })
}

impl Emulator {
    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn base_url(&self) -> String {
        self.inner.base_url.clone()
    }

    /// The subscription id served.
    pub fn subscription(&self) -> &str {
        &self.inner.subscription
    }

    /// Creates a running VM from `spec` (NIC, disks with content, ADE
    /// extension and encryption state) and returns its id.
    pub fn add_vm(&self, spec: VmSpec) -> ResourceId {
        let now = self.inner.clock.now();
        let mut w = self.inner.world.lock().unwrap_or_else(|p| p.into_inner());
        w.advance(now);
        w.add_vm(&spec, now)
    }

    /// The whole world now.
    pub fn state(&self) -> StateView {
        self.inner.state_view()
    }

    /// Digest of the blob of a disk or snapshot (equal iff bytes are equal).
    pub fn disk_digest(&self, id: &ResourceId) -> Option<String> {
        let blob = self.world_now(|w| w.blob_of(id.as_str()))?;
        self.inner.blobs.digest(&blob)
    }

    /// Simulated seconds the VM `id` (by name, across its re-creation) has not
    /// been running since it was added: its downtime so far.
    pub fn vm_offline_secs(&self, id: &ResourceId) -> Option<f64> {
        self.world_now(|w| w.offline_secs(id.as_str()))
    }

    /// Changes the guest write rate of a VM (simulated bytes per second; 0 stops it).
    pub fn set_churn(&self, id: &ResourceId, bytes_per_sec: f64) {
        self.world_now(|w| w.set_churn(id.as_str(), bytes_per_sec))
    }

    /// Adds (or replaces) management lock `name` at `scope` (a subscription,
    /// resource-group or resource id), as `PUT .../Microsoft.Authorization/locks/{name}` would.
    pub fn add_lock(&self, scope: &str, name: &str, level: LockLevel) {
        self.world_now(|w| {
            w.gov.add_lock(scope, name, level, None);
        })
    }

    /// Assigns an Azure Policy `deny` at `scope`: a VM PUT or PATCH whose
    /// body has `value` at JSON pointer `field` is refused with 403
    /// `RequestDisallowedByPolicy` (see `governance`).
    pub fn add_policy_deny(&self, scope: &str, name: &str, field: &str, value: serde_json::Value) {
        self.world_now(|w| w.gov.add_policy_deny(scope, name, field, value))
    }

    /// Removes management lock `name` at `scope`; false if there was none.
    pub fn remove_lock(&self, scope: &str, name: &str) -> bool {
        self.world_now(|w| w.gov.remove_lock(scope, name))
    }

    /// Marks VM `vm` protected by Azure Backup (vault id, policy name), as the
    /// `backupStatus` API then reports it.
    pub fn protect_vm(&self, vm: &ResourceId, vault_id: &str, policy: &str) {
        self.world_now(|w| w.gov.protect(vm.as_str(), vault_id, policy))
    }

    /// Stops backup protection of `vm`; false if it was not protected.
    pub fn unprotect_vm(&self, vm: &ResourceId) -> bool {
        self.world_now(|w| w.gov.unprotect(vm.as_str()))
    }

    /// Sets the regional limit of a Compute usage (`PremiumDiskCount`,
    /// `StandardSnapshotCount`, ...) served by `.../locations/{loc}/usages`.
    pub fn set_usage_limit(&self, name: &str, limit: u64) {
        self.world_now(|w| w.gov.set_limit(name, limit))
    }

    /// Adds a disk encryption set `name` in resource group `rg` and
    /// `location` (encryption type `EncryptionAtRestWithCustomerKey`).
    pub fn add_des(&self, rg: &str, name: &str, location: &str) -> ResourceId {
        let id = format!(
            "/subscriptions/{}/resourceGroups/{rg}/providers/Microsoft.Compute/diskEncryptionSets/{name}",
            self.subscription()
        );
        self.world_now(|w| w.add_des(&id, location, "EncryptionAtRestWithCustomerKey"));
        ResourceId::parse(&id).expect("a DES id")
    }

    /// Refuses (403) or allows again every read of DES `id`.
    pub fn set_des_readable(&self, id: &ResourceId, readable: bool) {
        self.world_now(|w| w.set_des_readable(id.as_str(), readable))
    }

    /// Puts existing disk `disk` on DES `des` (customer-managed keys), as if
    /// it had been created so; false when the disk or the DES is unknown.
    pub fn set_disk_encryption_set(&self, disk: &ResourceId, des: &ResourceId) -> bool {
        self.world_now(|w| w.set_disk_des(disk.as_str(), des.as_str()))
    }

    /// Restricts VM size `size` in availability zone `zone` for the
    /// subscription (a `Zone` restriction in the resource SKUs; creates there
    /// are refused with `SkuNotAvailable`).
    pub fn restrict_size_in_zone(&self, size: &str, zone: &str) {
        self.world_now(|w| w.restrict_size_in_zone(size, zone))
    }

    /// The VM's GET body with its instance view, as ARM answers it
    /// (`identity.principalId`, `resources[]`), or `None` if it does not exist.
    pub fn vm_get(&self, vm: &ResourceId) -> Option<serde_json::Value> {
        let t = world::Target {
            id: vm.to_string(),
            rg: vm.resource_group().to_string(),
            name: vm.name().to_string(),
        };
        self.world_now(|w| w.vm_get(&t, true).ok())
    }

    /// Role assignments at, above or below `scope` (of `principal` only,
    /// when given), as `GET {scope}/providers/Microsoft.Authorization/roleAssignments` lists them.
    pub fn role_assignments(&self, scope: &str, principal: Option<&str>) -> Vec<serde_json::Value> {
        let filter = principal.map(|p| format!("principalId eq '{p}'"));
        self.world_now(|w| {
            w.role_assignment_list(scope, filter.as_deref())["value"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
    }

    /// Grants `role` (a role definition id) at `scope` to `principal`, as a
    /// role assignment PUT would; returns its id (empty if refused).
    pub fn add_role_assignment(&self, scope: &str, role: &str, principal: &str) -> String {
        let now = self.inner.clock.now();
        self.world_now(|w| w.seed_role_assignment(scope, role, principal, now))
    }

    /// Makes the handler of `publisher`/`etype` extensions fail with
    /// `message` on every later PUT (`None`: succeed again).
    pub fn fail_extension(&self, publisher: &str, etype: &str, message: Option<&str>) {
        self.world_now(|w| w.set_extension_failure(publisher, etype, message.map(str::to_string)))
    }

    /// Denies `action` (`Microsoft.Compute/disks/delete`) to the caller: the
    /// permissions API then lists it in `notActions` (requests are still
    /// served; only `permissions --check` sees it).
    pub fn deny_action(&self, action: &str) {
        self.world_now(|w| w.access.deny(action))
    }

    /// Sets the display name `GET /subscriptions` reports for subscription `id`.
    pub fn set_subscription_name(&self, id: &str, name: &str) {
        self.world_now(|w| w.access.rename(id, name))
    }

    /// Runs `f` on the world brought up to the current simulated time.
    fn world_now<T>(&self, f: impl FnOnce(&mut world::World) -> T) -> T {
        let now = self.inner.clock.now();
        let mut w = self.inner.world.lock().unwrap_or_else(|p| p.into_inner());
        w.advance(now);
        f(&mut w)
    }

    /// Bytes in allocated ranges of a disk's or snapshot's blob.
    pub fn disk_allocated_bytes(&self, id: &ResourceId) -> Option<u64> {
        let blob = self.world_now(|w| w.blob_of(id.as_str()))?;
        self.inner.blobs.allocated_bytes(&blob)
    }

    /// Flips the bytes of `[offset, offset + len)` of a disk's or snapshot's
    /// blob (a corrupted copy, for verification tests). False if unknown.
    pub fn corrupt_disk(&self, id: &ResourceId, offset: u64, len: u64) -> bool {
        let blob = self.world_now(|w| w.blob_of(id.as_str()));
        match blob {
            Some(b) => {
                self.inner.blobs.corrupt(&b, offset, len);
                true
            }
            None => false,
        }
    }

    /// Live SAS grants.
    pub fn active_sas(&self) -> Vec<GrantInfo> {
        self.inner.blobs.active_grants()
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<RequestLog> {
        self.inner.requests()
    }

    /// Simulated seconds since start.
    pub fn sim_now_secs(&self) -> f64 {
        self.inner.clock.now()
    }

    /// The simulated clock.
    pub fn clock(&self) -> SimClock {
        self.inner.clock
    }

    /// The page-blob store.
    pub fn blobs(&self) -> Arc<BlobStore> {
        self.inner.blobs.clone()
    }

    /// Replaces the throttling limits (and refills every bucket).
    pub fn set_throttle(&self, cfg: throttle::ThrottleConfig) {
        self.inner.throttle.set_config(cfg);
    }

    /// 429s answered by the throttling buckets so far (not injected faults).
    pub fn throttled(&self) -> u64 {
        self.inner.throttle.refused()
    }

    /// Replaces the fault configuration from the next request on.
    pub fn set_faults(&self, faults: FaultConfig) {
        *self.inner.faults.lock().unwrap_or_else(|p| p.into_inner()) = faults;
    }

    /// Stops listening and waits (up to 5 s) for open connections to finish.
    pub async fn shutdown(self) {
        let server = self.server.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(Server { stop, mut task }) = server {
            let _ = stop.send(());
            if tokio::time::timeout(std::time::Duration::from_secs(5), &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
    }
}

#[cfg(test)]
mod tests;
