//! Emulator configuration: time scale, seed, platform knobs, simulated
//! operation durations and fault injection.

use super::blob::StorageConfig;

/// The default subscription of every emulator (contracts.md).
pub const DEFAULT_SUBSCRIPTION: &str = "00000000-0000-0000-0000-00000000a0de";

/// Everything an emulator instance is started with.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// Simulated seconds per real second (default 1000).
    pub time_scale: f64,
    /// Seed for every random choice (durations, ids, faults); same seed and
    /// same request order give the same answers.
    pub seed: u64,
    /// Fault injection on ARM requests.
    pub faults: FaultConfig,
    /// Page-blob data-plane knobs.
    pub storage: StorageConfig,
    /// The primary subscription this emulator serves (VMs without
    /// [`super::VmSpec::subscription`] live here).
    pub subscription: String,
    /// Further subscriptions served by the same world, each with its own
    /// feature registration state and throttle buckets.
    pub extra_subscriptions: Vec<SubscriptionConfig>,
    /// The one region (default `westeurope`).
    pub location: String,
    /// Whether `Microsoft.Compute/EncryptionAtHost` starts registered (default true).
    pub eah_feature_registered: bool,
    /// HTTP status of the "Encryption at host is not allowed ... Azure Disk
    /// Encryption" refusal (default 400, code `BadRequest`; 409 gives `OperationNotAllowed`).
    pub eah_refusal_status: u16,
    /// Simulated durations of ARM operations.
    pub durations: Durations,
    /// Simulated seconds a NIC stays reserved after its VM is deleted (180).
    pub nic_reservation_secs: f64,
    /// Whether NICs a VM update takes off a VM are reserved for it as a
    /// VM delete reserves its NICs (default false). Whether Azure does so
    /// is undocumented (facts §11, NIC reservation: UNCONFIRMED); `true`
    /// models the pessimistic reading, under which `--nic-swap` gains nothing.
    pub reserve_swapped_nics: bool,
    /// Guest decryption speed per disk in bytes per simulated second (60 MiB/s);
    /// disks decrypt in parallel.
    pub decrypt_bytes_per_sec: f64,
    /// Simulated seconds the Linux ADE daemon waits before decrypting (120).
    pub linux_decrypt_delay_secs: f64,
    /// Simulated seconds BitLocker keeps decrypting a Windows guest after the
    /// ADE extension reported "Disable Encryption completed" (facts §2.4:
    /// the API can report decrypted while BitLocker still runs). Default 0.
    pub windows_bitlocker_lag_secs: f64,
    /// Simulated seconds a feature registration takes (180).
    pub feature_registration_secs: f64,
    /// Throttling token buckets (default: Azure's limits, off).
    pub throttle: super::throttle::ThrottleConfig,
    /// Long-running operations answer with a `Location` header only, no
    /// `Azure-AsyncOperation` (default false: both, as Compute does). ARM
    /// allows either style (azure-core's `LROBasePolling` follows either);
    /// this exercises clients' Location-only polling.
    pub lro_location_only: bool,
    /// Items per page of VM, disk and snapshot listings, followed by a
    /// `nextLink` with `$skiptoken` (default `None`: one page).
    pub list_page_size: Option<usize>,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            time_scale: 1000.0,
            seed: 1,
            faults: FaultConfig::default(),
            storage: StorageConfig::default(),
            subscription: DEFAULT_SUBSCRIPTION.to_string(),
            extra_subscriptions: Vec::new(),
            location: "westeurope".to_string(),
            eah_feature_registered: true,
            eah_refusal_status: 400,
            durations: Durations::default(),
            nic_reservation_secs: 180.0,
            reserve_swapped_nics: false,
            decrypt_bytes_per_sec: 60.0 * 1024.0 * 1024.0,
            linux_decrypt_delay_secs: 120.0,
            windows_bitlocker_lag_secs: 0.0,
            feature_registration_secs: 180.0,
            throttle: Default::default(),
            lro_location_only: false,
            list_page_size: None,
        }
    }
}

/// A further subscription of an emulator ([`EmulatorConfig::extra_subscriptions`]).
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriptionConfig {
    /// Subscription id.
    pub id: String,
    /// Whether `Microsoft.Compute/EncryptionAtHost` starts registered here.
    pub eah_feature_registered: bool,
}

impl SubscriptionConfig {
    /// Subscription `id` with the feature registered.
    pub fn new(id: &str) -> Self {
        SubscriptionConfig {
            id: id.to_string(),
            eah_feature_registered: true,
        }
    }
}

/// A closed range of simulated seconds; each operation draws uniformly from it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimRange {
    /// Shortest duration.
    pub min: f64,
    /// Longest duration.
    pub max: f64,
}

impl SimRange {
    /// `min..=max` simulated seconds.
    pub const fn new(min: f64, max: f64) -> Self {
        SimRange { min, max }
    }
}

/// Simulated durations of every operation kind.
#[derive(Debug, Clone)]
pub struct Durations {
    /// VM create (PUT of a new VM).
    pub vm_create: SimRange,
    /// VM start.
    pub vm_start: SimRange,
    /// VM deallocate.
    pub vm_deallocate: SimRange,
    /// VM power off.
    pub vm_power_off: SimRange,
    /// VM delete.
    pub vm_delete: SimRange,
    /// VM update (PUT of an existing VM, PATCH).
    pub vm_update: SimRange,
    /// Extension create/update.
    pub ext_put: SimRange,
    /// Extension delete.
    pub ext_delete: SimRange,
    /// Disk or snapshot create/update.
    pub disk_create: SimRange,
    /// Disk or snapshot delete.
    pub disk_delete: SimRange,
    /// beginGetAccess / endGetAccess.
    pub access: SimRange,
}

impl Default for Durations {
    fn default() -> Self {
        Durations {
            vm_create: SimRange::new(60.0, 90.0),
            vm_start: SimRange::new(30.0, 60.0),
            vm_deallocate: SimRange::new(60.0, 120.0),
            vm_power_off: SimRange::new(20.0, 40.0),
            vm_delete: SimRange::new(30.0, 60.0),
            vm_update: SimRange::new(10.0, 20.0),
            ext_put: SimRange::new(30.0, 60.0),
            ext_delete: SimRange::new(20.0, 40.0),
            disk_create: SimRange::new(5.0, 15.0),
            disk_delete: SimRange::new(5.0, 15.0),
            access: SimRange::new(2.0, 5.0),
        }
    }
}

/// One kind of injected ARM fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// 409 `OperationNotAllowed` / `AnotherOperationInProgress` (mutating requests only).
    Conflict,
    /// 429 with `Retry-After`, `retry-after-ms` and the Compute throttling body.
    Throttle,
    /// 500 `InternalServerError`.
    ServerError,
    /// 503 `ServiceUnavailable`.
    Unavailable,
    /// The connection is dropped before an answer arrives; for mutating
    /// requests half of these drop *after* the effect was applied.
    DropConnection,
    /// The call is accepted but its long-running operation ends `Failed`
    /// (`InternalOperationError`), effect not applied (mutating LRO calls only).
    FailedOperation,
    /// VM start or VM create accepted, its long-running operation ends
    /// `Failed` with `AllocationFailed` (no capacity in the region); effect
    /// not applied. Not in [`FaultKind::ALL`].
    AllocationFailed,
    /// As [`FaultKind::AllocationFailed`], code `ZonalAllocationFailed` ("in this zone").
    ZonalAllocationFailed,
    /// 409 `SkuNotAvailable` on VM create (capacity restriction of the size).
    SkuNotAvailable,
    /// ARM-level 429 `SubscriptionRequestsThrottled` with a long `Retry-After`
    /// (simulated seconds), on any ARM request.
    SubscriptionThrottle,
    /// beginGetAccess succeeds but the SAS lives only a few simulated seconds.
    SasExpiresEarly,
    /// An ADE disable is accepted, then the guest reports `Decryption failed
    /// for ...` in the instance view (status level `Error`); volumes stay encrypted.
    DecryptionFailed,
    /// endGetAccess of an Upload disk fails `InvalidVhd` (once per disk name):
    /// the SAS is revoked, the upload stays active.
    InvalidVhd,
    /// One 401 `ExpiredAuthenticationToken` (once per emulator) on an ARM request.
    ExpiredToken,
    /// A GET of a VM or disk answers 200 with truncated JSON or a body
    /// missing `properties`.
    Malformed,
}

impl FaultKind {
    /// The original kinds, in a fixed order (the default set; [`FaultKind::EXTRA`] are off by default).
    pub const ALL: [FaultKind; 6] = [
        FaultKind::Conflict,
        FaultKind::Throttle,
        FaultKind::ServerError,
        FaultKind::Unavailable,
        FaultKind::DropConnection,
        FaultKind::FailedOperation,
    ];

    /// The kinds off by default (select them in [`FaultConfig::kinds`]).
    pub const EXTRA: [FaultKind; 9] = [
        FaultKind::AllocationFailed,
        FaultKind::ZonalAllocationFailed,
        FaultKind::SkuNotAvailable,
        FaultKind::SubscriptionThrottle,
        FaultKind::SasExpiresEarly,
        FaultKind::DecryptionFailed,
        FaultKind::InvalidVhd,
        FaultKind::ExpiredToken,
        FaultKind::Malformed,
    ];

    /// Short name used in the request log (`fault` field).
    pub fn label(self) -> &'static str {
        match self {
            FaultKind::Conflict => "conflict-409",
            FaultKind::Throttle => "throttle-429",
            FaultKind::ServerError => "internal-500",
            FaultKind::Unavailable => "unavailable-503",
            FaultKind::DropConnection => "drop-connection",
            FaultKind::FailedOperation => "failed-operation",
            FaultKind::AllocationFailed => "allocation-failed",
            FaultKind::ZonalAllocationFailed => "zonal-allocation-failed",
            FaultKind::SkuNotAvailable => "sku-not-available-409",
            FaultKind::SubscriptionThrottle => "subscription-throttle-429",
            FaultKind::SasExpiresEarly => "sas-expires-early",
            FaultKind::DecryptionFailed => "decryption-failed",
            FaultKind::InvalidVhd => "invalid-vhd",
            FaultKind::ExpiredToken => "expired-token-401",
            FaultKind::Malformed => "malformed-body",
        }
    }
}

/// Seeded fault injection on ARM requests (never on `/_emulator/*` or
/// storage paths). Each ARM request `n` is faulted with probability `rate`,
/// decided by a pure function of (emulator seed, `n`), so runs replay.
#[derive(Debug, Clone)]
pub struct FaultConfig {
    /// Share of ARM requests that get a fault (0 = none).
    pub rate: f64,
    /// Kinds that may be picked (uniformly among those applicable to the
    /// request); default: all of [`FaultKind::ALL`].
    pub kinds: Vec<FaultKind>,
}

impl Default for FaultConfig {
    fn default() -> Self {
        FaultConfig {
            rate: 0.0,
            kinds: FaultKind::ALL.to_vec(),
        }
    }
}
