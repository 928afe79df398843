//! Adapter for Azure: the HTTP client for Azure Resource Manager and the
//! managed-disk page-blob API, with credentials, retries, long-running
//! operations and error classification.
//!
//! Contracts:
//! - One choke point for every request ([`ArmClient`] for ARM,
//!   [`StorageClient`] for SAS URLs): auth header, api-version, retries,
//!   statistics and redaction happen there and nowhere else.
//! - Transient vs terminal is decided once, in [`classify`].
//! - `Retry-After` (and `retry-after-ms`) is honoured exactly, with no
//!   minimum sleep above it ([`retry`]).
//! - Secrets (SAS URLs, tokens) travel only in [`crate::model::SasUrl`] and
//!   [`crate::model::BearerToken`]; error texts pass through
//!   [`crate::model::redact`] before they leave this module.
//! - The bearer token is only ever sent to the ARM endpoint's host.

pub mod auth;
pub mod client;
pub mod error;
pub mod inventory;
pub mod permissions;
pub mod retry;
pub mod storage;
pub mod throttle;
pub mod wire;

use std::time::Duration;

pub use auth::{AuthError, AuthMode, TokenSource, token_source};
pub use client::{ArmClient, ClientStats, Fetched, SasAccess};
pub use error::{AzureError, ErrorClass, classify};
pub use storage::{BlobProperties, PageList, StorageClient};

/// An Azure cloud (public, China, US Government): its ARM endpoint and token
/// scope. Not the engine's `Cloud` trait (the port the engine
/// drives), hence the name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AzureCloud {
    /// Azure public cloud.
    Public,
    /// Azure operated by 21Vianet (China).
    China,
    /// Azure US Government.
    UsGov,
}

impl AzureCloud {
    /// The cloud's ARM endpoint.
    pub fn arm_endpoint(self) -> &'static str {
        match self {
            AzureCloud::Public => "https://management.azure.com",
            AzureCloud::China => "https://management.chinacloudapi.cn",
            AzureCloud::UsGov => "https://management.usgovcloudapi.net",
        }
    }

    /// The OAuth scope for ARM tokens in this cloud.
    pub fn arm_scope(self) -> &'static str {
        match self {
            AzureCloud::Public => "https://management.azure.com/.default",
            AzureCloud::China => "https://management.chinacloudapi.cn/.default",
            AzureCloud::UsGov => "https://management.usgovcloudapi.net/.default",
        }
    }

    /// The matching `azure_core` cloud configuration (authority host).
    pub fn configuration(self) -> azure_core::cloud::CloudConfiguration {
        use azure_core::cloud::CloudConfiguration as C;
        match self {
            AzureCloud::Public => C::AzurePublic,
            AzureCloud::China => C::AzureChina,
            AzureCloud::UsGov => C::AzureGovernment,
        }
    }
}

/// API versions sent with each resource family (facts §7.2).
#[derive(Debug, Clone)]
pub struct ApiVersions {
    /// VMs, extensions, compute operations.
    pub compute: String,
    /// Disks, snapshots, disk operations.
    pub disks: String,
    /// Resource SKUs.
    pub skus: String,
    /// Microsoft.Features.
    pub features: String,
    /// Storage data plane `x-ms-version`.
    pub storage: String,
}

impl Default for ApiVersions {
    fn default() -> Self {
        ApiVersions {
            compute: "2024-11-01".into(),
            disks: "2025-01-02".into(),
            skus: "2021-07-01".into(),
            features: "2021-07-01".into(),
            storage: "2025-05-05".into(),
        }
    }
}

/// How the client retries transient failures of one request.
#[derive(Debug, Clone)]
pub struct RetryConfig {
    /// Attempts per request, the first included.
    pub max_attempts: u32,
    /// First backoff when the server gives no delay.
    pub base_delay: Duration,
    /// Longest backoff step.
    pub max_delay: Duration,
    /// A server-requested delay longer than this is not waited out here:
    /// the error goes up (classified transient) so the engine can park.
    pub max_retry_after: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_attempts: 6,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            max_retry_after: Duration::from_secs(3600),
        }
    }
}

/// Everything the client needs to know, resolved from flags.
#[derive(Debug, Clone)]
pub struct AzureConfig {
    /// ARM base URL (no trailing slash needed).
    pub arm_endpoint: url::Url,
    /// Which cloud (token scope, authority host).
    pub cloud: AzureCloud,
    /// Wait between LRO polls when Azure sends no `Retry-After`.
    pub poll_interval: Duration,
    /// Per-request retries.
    pub retry: RetryConfig,
    /// Timeout of one HTTP request.
    pub request_timeout: Duration,
    /// Longest wait for one long-running operation.
    pub lro_timeout: Duration,
    /// API versions.
    pub api: ApiVersions,
    /// Client-side self-throttling (off by default for loopback endpoints:
    /// the emulator's time runs faster; `bench fleet` sets its scale).
    pub throttle: throttle::ClientThrottleConfig,
}

impl AzureConfig {
    /// A configuration for `endpoint` (for example the emulator's URL).
    pub fn new(endpoint: url::Url, cloud: AzureCloud) -> Self {
        AzureConfig {
            cloud,
            poll_interval: Duration::from_secs(15),
            retry: RetryConfig::default(),
            request_timeout: Duration::from_secs(120),
            lro_timeout: Duration::from_secs(4 * 3600),
            api: ApiVersions::default(),
            throttle: throttle::ClientThrottleConfig {
                enabled: !is_loopback_url(&endpoint),
                ..Default::default()
            },
            arm_endpoint: endpoint,
        }
    }

    /// The configuration for a cloud's own ARM endpoint.
    pub fn for_cloud(cloud: AzureCloud) -> Self {
        let url = url::Url::parse(cloud.arm_endpoint()).expect("built-in endpoints are URLs");
        Self::new(url, cloud)
    }

    /// True when the ARM endpoint is a loopback address (the emulator).
    pub fn is_loopback(&self) -> bool {
        is_loopback_url(&self.arm_endpoint)
    }
}

/// True for `http(s)://127.x.x.x`, `[::1]` and `localhost` URLs.
pub fn is_loopback_url(u: &url::Url) -> bool {
    match u.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}
