//! The "high-level" settings: flags and environment turned into validated
//! values (cloud, auth, endpoint, poll interval, copy and transfer options,
//! selectors, waves, state directory) before any command runs, as ripgrep
//! turns its low-level args into high-level ones. Every flag error that is
//! not clap's own is found here: exit 2, nothing sent, nothing written.
//!
//! What needs the journal (a resumed run's endpoint and poll interval) or a
//! file (a plan file) is resolved by the command, with the helpers here
//! ([`poll_interval`], [`parse_endpoint`]) so the messages stay the same.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::args::RebuildArgs;
use super::args::{
    AuthArg, BenchCommand, BenchCopyArgs, BenchFleetArgs, CleanupArgs, CloudArg, Command, ConnArgs,
    CopyArgs, DemoArgs, EmulatorCommand, PlanArgs, ResumeArgs, RollbackArgs, RunArgs, ServeArgs,
    TransferArg, TransferArgs, VerifyArg,
};
use super::error::CliError;
use crate::azure::{self, AuthMode};
use crate::copy::CopyOptions;
use crate::emulator::EmulatorConfig;
use crate::model::ResourceId;
use crate::plan::file::PlanOptions;
use crate::plan::select::Selector;
use crate::plan::waves::{Budget, BudgetScope, WaveSpec, parse_duration, parse_waves};
use crate::step::CopyPolicy;
use crate::step::rebuild::RebuildOptions;

pub use super::args::{OutputArg as Output, ReportFormat};

/// Seconds between polls when Azure sends no Retry-After and no
/// `--poll-interval` is given (real Azure; the benchmarks scale it).
pub const DEFAULT_POLL_SECS: f64 = 15.0;

// --- az conventions (issue 14): global options, `permissions`,
// completions, man page, subscriptions by name.

/// The options every command takes, validated.
#[derive(Debug, Clone, Default)]
pub struct GlobalSettings {
    /// `--query` (checked to compile).
    pub query: Option<String>,
    /// stderr log level chosen by `--only-show-errors` / `--verbose` /
    /// `--debug` (`None`: `ADE2EAH_LOG`, else warnings).
    pub console_level: Option<&'static str>,
}

impl GlobalSettings {
    /// Validates the global options.
    pub fn from_args(a: &super::args::GlobalArgs) -> Result<GlobalSettings, CliError> {
        if let Some(q) = &a.query {
            super::output::check_query(q)?;
        }
        let flags = [a.only_show_errors, a.verbose, a.debug];
        if flags.iter().filter(|f| **f).count() > 1 {
            return Err(CliError::BadInput(
                "--only-show-errors, --verbose and --debug exclude each other".into(),
            ));
        }
        let console_level = match flags {
            [true, _, _] => Some("error"),
            [_, true, _] => Some("info"),
            [_, _, true] => Some("debug"),
            _ => None,
        };
        Ok(GlobalSettings {
            query: a.query.clone(),
            console_level,
        })
    }
}

/// Whether `s` is a subscription id (a GUID) rather than a display name.
pub fn is_subscription_id(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                c == '-'
            } else {
                c.is_ascii_hexdigit()
            }
        })
}

/// `permissions`.
#[derive(Debug)]
pub struct PermissionsSettings {
    /// Connection (`--check` and subscription names only).
    pub conn: ConnSettings,
    /// `--subscription` ids or names.
    pub subscriptions: Vec<String>,
    /// `-g` (`RG` or `SUB/RG`).
    pub resource_groups: Vec<String>,
    /// `--scope` ids.
    pub scopes: Vec<String>,
    /// `--plan FILE`.
    pub plan: Option<PathBuf>,
    /// `--state DIR`.
    pub state: Option<PathBuf>,
    /// `--check`.
    pub check: bool,
    /// Output format.
    pub output: Output,
}

impl PermissionsSettings {
    fn from_args(a: super::args::PermissionsArgs) -> Result<PermissionsSettings, CliError> {
        for s in &a.scopes {
            let ok = s.starts_with("/subscriptions/")
                && ResourceId::parse(&format!("{}/providers/X/y/z", s.trim_end_matches('/')))
                    .is_ok();
            if !ok {
                return Err(CliError::BadInput(format!(
                    "--scope {s:?} must be /subscriptions/ID or /subscriptions/ID/resourceGroups/RG"
                )));
            }
        }
        if !a.resource_groups.is_empty() && a.subscriptions.is_empty() {
            let qualified = a.resource_groups.iter().all(|g| g.contains('/'));
            if !qualified {
                return Err(CliError::BadInput(
                    "-g RG needs --subscription (or write SUB/RG)".into(),
                ));
            }
        }
        let mut conn = ConnSettings::from_args(&a.conn)?;
        conn.poll = Some(conn.poll_or(DEFAULT_POLL_SECS)?);
        Ok(PermissionsSettings {
            conn,
            subscriptions: a.subscriptions,
            resource_groups: a.resource_groups,
            scopes: a.scopes,
            plan: a.plan,
            state: a.state,
            check: a.check,
            output: a.output,
        })
    }
}

/// One command with its validated settings.
#[derive(Debug)]
pub enum Settings {
    /// `permissions`.
    Permissions(PermissionsSettings),
    /// `completions SHELL`.
    Completions(clap_complete::Shell),
    /// `man`.
    Man,
    /// `run` (with or without `--plan`).
    Run(RunSettings),
    /// `resume` (plain or planned run).
    Resume(ResumeSettings),
    /// `status`.
    Status(StatusSettings),
    /// `report`.
    Report(ReportSettings),
    /// `plan`.
    Plan(PlanSettings),
    /// `approve`.
    Approve(ApproveSettings),
    /// `rollback`.
    Rollback(RollbackSettings),
    /// `demo`.
    Demo(DemoSettings),
    /// `emulator serve`.
    Serve(ServeSettings),
    /// `cleanup`.
    Cleanup(CleanupSettings),
    /// `bench fleet`.
    BenchFleet(BenchFleetSettings),
    /// `bench copy`.
    BenchCopy(BenchCopySettings),
}

impl Settings {
    /// Validates the parsed command line (and the environment it reads).
    pub fn from_command(cmd: Command) -> Result<Settings, CliError> {
        Ok(match cmd {
            Command::Permissions(a) => Settings::Permissions(PermissionsSettings::from_args(a)?),
            Command::Completions { shell } => Settings::Completions(shell),
            Command::Man => Settings::Man,
            Command::Run(a) => Settings::Run(RunSettings::from_args(a)?),
            Command::Resume(a) => Settings::Resume(ResumeSettings::from_args(a)?),
            Command::Status(a) => Settings::Status(StatusSettings {
                state: a.state,
                output: a.output,
            }),
            Command::Report(a) => Settings::Report(ReportSettings {
                state: a.state,
                format: a.output,
                html: a.html,
            }),
            Command::Approve(a) => Settings::Approve(ApproveSettings {
                state: a.state,
                wave: a.wave,
            }),
            Command::Rollback(a) => Settings::Rollback(RollbackSettings::from_args(a)?),
            Command::Plan(a) => Settings::Plan(PlanSettings::from_args(a)?),
            Command::Cleanup(a) => Settings::Cleanup(CleanupSettings::from_args(a)?),
            Command::Demo(a) => Settings::Demo(DemoSettings::from_args(a)?),
            Command::Emulator {
                command: EmulatorCommand::Serve(a),
            } => Settings::Serve(ServeSettings::from_args(a)?),
            Command::Bench {
                command: BenchCommand::Fleet(a),
            } => Settings::BenchFleet(BenchFleetSettings::from_args(a)?),
            Command::Bench {
                command: BenchCommand::Copy(a),
            } => Settings::BenchCopy(BenchCopySettings::from_args(a)?),
        })
    }
}

/// A poll interval of `secs` seconds, if it is one.
pub fn poll_interval(secs: f64) -> Result<Duration, CliError> {
    if !(secs.is_finite() && secs > 0.0 && secs <= 3600.0) {
        return Err(CliError::BadInput(format!(
            "--poll-interval must be a number of seconds between 0 and 3600, got {secs}"
        )));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// An ARM endpoint URL (from `--arm-endpoint` or a journal), if it is one.
pub fn parse_endpoint(e: &str) -> Result<url::Url, CliError> {
    let url = url::Url::parse(e)
        .map_err(|err| CliError::BadInput(format!("--arm-endpoint {e:?} is not a URL: {err}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(CliError::BadInput(format!(
            "--arm-endpoint must be http(s), got {e:?}"
        )));
    }
    Ok(url)
}

/// The client's self-throttling, when a command sets it (`bench fleet`).
#[derive(Debug, Clone, Copy)]
pub struct ClientThrottle {
    /// Simulated seconds per real second of the emulator.
    pub time_scale: f64,
    /// Self-throttle at all.
    pub enabled: bool,
}

/// How to reach Azure (or the emulator): the connection settings.
#[derive(Debug, Clone)]
pub struct ConnSettings {
    /// The cloud.
    pub cloud: azure::AzureCloud,
    /// Its name as journaled (`public`, `china`, `usgov`).
    pub cloud_name: &'static str,
    /// How to authenticate (`--auth auto` resolved from the environment).
    pub auth: AuthMode,
    /// The `--auth` value as journaled (`auto`, `cli`, `none`...).
    pub auth_name: String,
    /// `--arm-endpoint` (default: the cloud's, or a resumed run's).
    pub endpoint: Option<url::Url>,
    /// `--poll-interval`, if given.
    pub poll: Option<Duration>,
    /// Self-throttling override (default: on against Azure, off on loopback).
    pub throttle: Option<ClientThrottle>,
}

impl ConnSettings {
    fn from_args(a: &ConnArgs) -> Result<ConnSettings, CliError> {
        let poll = a.poll_interval.map(poll_interval).transpose()?;
        let endpoint = a.arm_endpoint.as_deref().map(parse_endpoint).transpose()?;
        Ok(ConnSettings {
            cloud: cloud_of(a.cloud),
            cloud_name: cloud_name(a.cloud),
            auth: auth_mode(a.auth),
            auth_name: format!("{:?}", a.auth).to_ascii_lowercase(),
            endpoint,
            poll,
            throttle: None,
        })
    }

    /// The connection of an in-process run against the emulator at `base`
    /// (`demo`, `bench`): public cloud, no credentials.
    pub fn emulator(base: &str, poll: Duration) -> Result<ConnSettings, CliError> {
        Ok(ConnSettings {
            endpoint: Some(parse_endpoint(base)?),
            poll: Some(poll),
            ..ConnSettings::journaled()
        })
    }

    /// `--auth none` and nothing else: public cloud, endpoint and poll
    /// interval from the journal of the run resumed (the journal probe of
    /// `bench fleet`).
    pub fn journaled() -> ConnSettings {
        ConnSettings {
            cloud: azure::AzureCloud::Public,
            cloud_name: cloud_name(CloudArg::Public),
            auth: AuthMode::None,
            auth_name: "none".into(),
            endpoint: None,
            poll: None,
            throttle: None,
        }
    }

    /// `--poll-interval`, else `fallback` seconds (validated alike).
    pub fn poll_or(&self, fallback: f64) -> Result<Duration, CliError> {
        match self.poll {
            Some(p) => Ok(p),
            None => poll_interval(fallback),
        }
    }
}

fn cloud_of(c: CloudArg) -> azure::AzureCloud {
    match c {
        CloudArg::Public => azure::AzureCloud::Public,
        CloudArg::China => azure::AzureCloud::China,
        CloudArg::Usgov => azure::AzureCloud::UsGov,
    }
}

fn cloud_name(c: CloudArg) -> &'static str {
    match c {
        CloudArg::Public => "public",
        CloudArg::China => "china",
        CloudArg::Usgov => "usgov",
    }
}

fn auth_mode(a: AuthArg) -> AuthMode {
    let set = |v: &str| std::env::var_os(v).is_some_and(|s| !s.is_empty());
    match a {
        AuthArg::Cli => AuthMode::Cli,
        AuthArg::Msi => AuthMode::ManagedIdentity,
        AuthArg::Workload => AuthMode::Workload,
        AuthArg::Sp => AuthMode::ServicePrincipal,
        AuthArg::None => AuthMode::None,
        AuthArg::Auto if set("AZURE_CLIENT_SECRET") => AuthMode::ServicePrincipal,
        AuthArg::Auto if set("AZURE_FEDERATED_TOKEN_FILE") => AuthMode::Workload,
        AuthArg::Auto if set("IDENTITY_ENDPOINT") || set("MSI_ENDPOINT") => {
            AuthMode::ManagedIdentity
        }
        AuthArg::Auto => AuthMode::Cli,
    }
}

/// The journaled copy policy for `--precopy-rounds` / `--verify`.
pub fn copy_policy(a: &CopyArgs) -> CopyPolicy {
    CopyPolicy {
        max_online_rounds: a.precopy_rounds,
        verify: match a.verify {
            VerifyArg::Full => crate::step::VerifyMode::Full,
            VerifyArg::Sample => crate::step::VerifyMode::Sample,
            VerifyArg::None => crate::step::VerifyMode::None,
        },
        ..Default::default()
    }
}

// Target encryption.
/// `--disk-encryption-set` / `--platform-keys` (`None`: neither given);
/// both together are bad input.
pub fn target_encryption(
    a: &crate::cli::args::TargetArgs,
) -> Result<Option<crate::step::encryption::TargetEncryption>, CliError> {
    use crate::step::encryption::TargetEncryption;
    match (&a.disk_encryption_set, a.platform_keys) {
        (Some(_), true) => Err(CliError::BadInput(
            "--disk-encryption-set and --platform-keys conflict: choose customer-managed keys on a DES, or platform keys".into(),
        )),
        (Some(id), false) => {
            if !id.is_type("Microsoft.Compute", "diskEncryptionSets") {
                return Err(CliError::BadInput(format!(
                    "--disk-encryption-set {id} is not a Microsoft.Compute/diskEncryptionSets id"
                )));
            }
            Ok(Some(TargetEncryption::DiskEncryptionSet {
                id: Box::new(id.clone()),
            }))
        }
        (None, true) => Ok(Some(TargetEncryption::PlatformKeys)),
        (None, false) => Ok(None),
    }
}

/// The copy engine's options from `--transfer`, `--copy-parallel`,
/// `--copy-parallel-total` and `--sas-hours`.
pub fn copy_options(a: &TransferArgs) -> CopyOptions {
    let mode = match a.transfer {
        TransferArg::ServerSide => crate::copy::TransferMode::ServerSide,
        TransferArg::Relay => crate::copy::TransferMode::Relay,
    };
    let mut o = CopyOptions::new(mode, a.copy_parallel, a.copy_parallel_total);
    o.sas_min = Duration::from_secs(a.sas_hours * 3600);
    o
}

/// The copy options when no flag chose any (the defaults of `--transfer`,
/// `--copy-parallel`, `--copy-parallel-total`).
pub fn default_copy_options() -> CopyOptions {
    CopyOptions::new(
        crate::copy::TransferMode::ServerSide,
        crate::copy::DEFAULT_PARALLEL,
        crate::copy::DEFAULT_GLOBAL_PARALLEL,
    )
}

/// `run`.
#[derive(Debug)]
pub struct RunSettings {
    /// Connection.
    pub conn: ConnSettings,
    /// `--subscription` (checked against every `--vm`).
    pub subscription: Option<String>,
    /// `--vm`, first occurrence of each kept, in order.
    pub vms: Vec<ResourceId>,
    /// `--plan FILE` (read and checked by the command).
    pub plan: Option<PathBuf>,
    /// Journal directory.
    pub state: PathBuf,
    /// `--yes`.
    pub yes: bool,
    /// Most VMs at once (at least 1).
    pub max_parallel: usize,
    /// `--break-lease`.
    pub break_lease: bool,
    /// `--check-permissions`.
    pub check_permissions: bool,
    /// Journaled copy policy (plain runs).
    pub copy_policy: CopyPolicy,
    /// Transfer options (not journaled).
    pub copy: CopyOptions,
    /// `--disk-encryption-set` / `--platform-keys` (journaled per VM).
    pub target_encryption: Option<crate::step::encryption::TargetEncryption>,
    /// `--guest-check` (journaled per VM).
    pub guest_check: bool,
    /// `--nic-swap` (journaled per VM).
    pub nic_swap: bool,
    /// `--rebuild-linux-os` (with `--image`, `--ssh-public-key`).
    pub rebuild: Option<RebuildOptions>,
    /// Output of the final summary.
    pub output: Output,
    // Extensions and identity (issue 12):
    /// `--carry-role-assignments` (default) / `--no-carry-role-assignments`.
    pub carry_role_assignments: bool,
    /// Automatic rollback policy (issue 13), journaled per VM.
    pub rollback_policy: crate::step::RollbackPolicy,
}

impl RunSettings {
    fn from_args(a: RunArgs) -> Result<RunSettings, CliError> {
        let poll = a.conn.poll_interval.unwrap_or(DEFAULT_POLL_SECS);
        poll_interval(poll)?;
        if a.plan.is_none() {
            if a.max_parallel == 0 {
                return Err(CliError::BadInput(
                    "--max-parallel must be at least 1".into(),
                ));
            }
            let subscription = a.subscription.clone().unwrap_or_default();
            // (A subscription name is resolved, and checked, by the command.)
            let named = !subscription.is_empty() && !is_subscription_id(&subscription);
            for vm in a.vms.iter().filter(|_| !named) {
                if !vm.subscription().eq_ignore_ascii_case(&subscription) {
                    return Err(CliError::BadInput(format!(
                        "VM {vm} is in subscription {}, not --subscription {}",
                        vm.subscription(),
                        subscription
                    )));
                }
            }
        }
        let mut vms: Vec<ResourceId> = Vec::new();
        for vm in a.vms {
            if !vms.contains(&vm) {
                vms.push(vm);
            }
        }
        let mut conn = ConnSettings::from_args(&a.conn)?;
        conn.poll = Some(conn.poll_or(DEFAULT_POLL_SECS)?);
        Ok(RunSettings {
            conn,
            subscription: a.subscription,
            vms,
            plan: a.plan,
            state: a.state,
            yes: a.yes,
            max_parallel: a.max_parallel,
            break_lease: a.break_lease,
            check_permissions: a.check_permissions,
            copy_policy: copy_policy(&a.copy),
            copy: copy_options(&a.transfer),
            target_encryption: target_encryption(&a.target)?,
            guest_check: a.guest_check,
            nic_swap: a.nic_swap,
            rebuild: rebuild_options(&a.rebuild)?,
            output: a.output,
            carry_role_assignments: !a.no_carry_role_assignments,
            rollback_policy: crate::step::RollbackPolicy {
                auto: !a.no_auto_rollback,
                on_verify_failure: a.rollback_on_verify_failure,
            },
        })
    }

    /// The poll interval (`--poll-interval` or [`DEFAULT_POLL_SECS`]).
    pub fn poll(&self) -> Duration {
        self.conn
            .poll
            .unwrap_or(Duration::from_secs_f64(DEFAULT_POLL_SECS))
    }
}

/// `resume`.
#[derive(Debug)]
pub struct ResumeSettings {
    /// Connection (endpoint and poll interval default to the journaled run's).
    pub conn: ConnSettings,
    /// Journal directory.
    pub state: PathBuf,
    /// `--max-parallel` (default: the journaled run's).
    pub max_parallel: Option<usize>,
    /// `--break-lease`.
    pub break_lease: bool,
    /// Transfer options (this process's).
    pub copy: CopyOptions,
    /// Output of the final summary.
    pub output: Output,
}

impl ResumeSettings {
    fn from_args(a: ResumeArgs) -> Result<ResumeSettings, CliError> {
        Ok(ResumeSettings {
            conn: ConnSettings::from_args(&a.conn)?,
            state: a.state,
            max_parallel: a.max_parallel,
            break_lease: a.break_lease,
            copy: copy_options(&a.transfer),
            output: a.output,
        })
    }
}

/// `rollback` (issue 13).
#[derive(Debug)]
pub struct RollbackSettings {
    /// Connection and journal, as for `resume` (nothing else is unparked).
    pub resume: ResumeSettings,
    /// `--vm`, first occurrence of each kept.
    pub vms: Vec<ResourceId>,
    /// `--wave N` (checked against the plan by the command).
    pub wave: Option<usize>,
    /// `--yes`.
    pub yes: bool,
    /// `--force` and `--reenable-ade`.
    pub request: crate::step::rollback::Request,
}

impl RollbackSettings {
    fn from_args(a: RollbackArgs) -> Result<RollbackSettings, CliError> {
        if a.wave == Some(0) {
            return Err(CliError::BadInput("--wave is 1-based".into()));
        }
        let mut vms: Vec<ResourceId> = Vec::new();
        for vm in a.vms {
            if !vms.contains(&vm) {
                vms.push(vm);
            }
        }
        Ok(RollbackSettings {
            resume: ResumeSettings {
                conn: ConnSettings::from_args(&a.conn)?,
                state: a.state,
                max_parallel: None,
                break_lease: false,
                copy: default_copy_options(),
                output: a.output,
            },
            vms,
            wave: a.wave,
            yes: a.yes,
            request: crate::step::rollback::Request {
                force: a.force,
                reenable_ade: a.reenable_ade,
            },
        })
    }
}

// ---- Linux rebuild and cleanup (issue 13) ----

/// `--rebuild-linux-os`, `--image` (checked) and the SSH public keys read
/// from the `--ssh-public-key` files (one key per non-empty line); `None`
/// when the rebuild is off.
fn rebuild_options(a: &RebuildArgs) -> Result<Option<RebuildOptions>, CliError> {
    if !a.rebuild_linux_os {
        return Ok(None);
    }
    if let Some(i) = &a.image {
        crate::step::rebuild::parse_image(i).map_err(CliError::BadInput)?;
    }
    let mut keys = Vec::new();
    for f in &a.ssh_public_keys {
        let text = std::fs::read_to_string(f)
            .map_err(|e| CliError::BadInput(format!("--ssh-public-key {}: {e}", f.display())))?;
        let found: Vec<String> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_string)
            .collect();
        if found.is_empty()
            || found
                .iter()
                .any(|k| !k.starts_with("ssh-") && !k.starts_with("ecdsa-"))
        {
            return Err(CliError::BadInput(format!(
                "--ssh-public-key {}: expected OpenSSH public keys (ssh-rsa, ssh-ed25519, ecdsa-...), one per line",
                f.display()
            )));
        }
        keys.extend(found);
    }
    Ok(Some(RebuildOptions {
        image: a.image.clone(),
        ssh_public_keys: keys,
    }))
}

/// `cleanup`.
#[derive(Debug)]
pub struct CleanupSettings {
    /// Connection (endpoint and poll interval default to the journaled run's).
    pub conn: ConnSettings,
    /// Journal directory.
    pub state: PathBuf,
    /// `--older-than`.
    pub retention: Duration,
    /// `--yes`: delete (else dry run).
    pub delete: bool,
    /// Output format.
    pub output: Output,
}

impl CleanupSettings {
    fn from_args(a: CleanupArgs) -> Result<CleanupSettings, CliError> {
        let secs = crate::plan::waves::parse_duration(&a.older_than)
            .map_err(|m| CliError::BadInput(format!("--older-than: {m}")))?;
        Ok(CleanupSettings {
            conn: ConnSettings::from_args(&a.conn)?,
            state: a.state,
            retention: Duration::from_secs(secs),
            delete: a.yes,
            output: a.output,
        })
    }
}

/// `status`.
#[derive(Debug)]
pub struct StatusSettings {
    /// Journal directory.
    pub state: PathBuf,
    /// Output format.
    pub output: Output,
}

/// `report`.
#[derive(Debug)]
pub struct ReportSettings {
    /// Journal directory.
    pub state: PathBuf,
    /// Output format.
    pub format: ReportFormat,
    /// `--html FILE` (issue 14): write the HTML timeline there.
    pub html: Option<PathBuf>,
}

/// `approve`.
#[derive(Debug)]
pub struct ApproveSettings {
    /// Journal directory of the run.
    pub state: PathBuf,
    /// The wave (1-based; checked against the plan by the command).
    pub wave: usize,
}

/// `plan`.
#[derive(Debug)]
pub struct PlanSettings {
    /// Connection.
    pub conn: ConnSettings,
    /// Which VMs.
    pub selector: Selector,
    /// Plan options (parallelism, failure budget, soak).
    pub options: PlanOptions,
    /// Wave targets, soaks and approval gates.
    pub waves: Vec<WaveSpec>,
    /// `--register-feature`.
    pub register_feature: bool,
    /// `--rebuild-linux-os` (with `--image`, `--ssh-public-key`).
    pub rebuild: Option<RebuildOptions>,
    /// Output format on stdout.
    pub output: ReportFormat,
    /// `--out FILE`.
    pub out: Option<PathBuf>,
    /// What the estimates assume (issue 14: `--assume-churn`).
    pub assumptions: crate::plan::Assumptions,
}

impl PlanSettings {
    fn from_args(a: PlanArgs) -> Result<PlanSettings, CliError> {
        let mut conn = ConnSettings::from_args(&a.conn)?;
        conn.poll = Some(conn.poll_or(DEFAULT_POLL_SECS)?);
        let selector = selector_of(&a)?;
        let (options, waves) = options_of(&a)?;
        // issue 14: the estimate's assumed guest write rate.
        if !(a.assume_churn.is_finite() && a.assume_churn >= 0.0) {
            return Err(CliError::BadInput(format!(
                "--assume-churn {} must be a number of MiB/s, 0 or more",
                a.assume_churn
            )));
        }
        Ok(PlanSettings {
            conn,
            selector,
            options,
            waves,
            register_feature: a.register_feature,
            rebuild: rebuild_options(&a.rebuild)?,
            output: a.output,
            out: a.out,
            assumptions: crate::plan::Assumptions {
                churn_mib_s: a.assume_churn,
                ..Default::default()
            },
        })
    }
}

fn selector_of(a: &PlanArgs) -> Result<Selector, CliError> {
    let mut tags = BTreeMap::new();
    for t in &a.tags {
        let (k, v) = t
            .split_once('=')
            .ok_or_else(|| CliError::BadInput(format!("--tag {t:?} must be KEY=VALUE")))?;
        tags.insert(k.to_string(), v.to_string());
    }
    let mut subs: Vec<String> = Vec::new();
    for s in &a.subscriptions {
        let s = s.trim();
        if s.is_empty() || s.contains('/') {
            return Err(CliError::BadInput(format!(
                "--subscription {s:?} is not a subscription id"
            )));
        }
        if !subs.iter().any(|o| o.eq_ignore_ascii_case(s)) {
            subs.push(s.to_string());
        }
    }
    let sel = Selector {
        subscriptions: subs,
        resource_groups: a.resource_groups.clone(),
        vms: a.vms.clone(),
        tags,
        name: a.name.clone(),
    };
    // Subscription names are resolved by the command, which checks then.
    if sel.subscriptions.iter().all(|s| is_subscription_id(s)) {
        check_selector(&sel)?;
    }
    Ok(sel)
}

/// Every `--vm` and `-g SUB/RG` is in one of the selector's subscriptions.
pub fn check_selector(sel: &Selector) -> Result<(), CliError> {
    let (subs, a) = (&sel.subscriptions, sel);
    let listed = |sub: &str| subs.iter().any(|s| s.eq_ignore_ascii_case(sub));
    for vm in &a.vms {
        if !listed(vm.subscription()) {
            return Err(CliError::BadInput(format!(
                "VM {vm} is in subscription {}, not in --subscription {}",
                vm.subscription(),
                subs.join(", ")
            )));
        }
    }
    for g in &a.resource_groups {
        if let Some((sub, rg)) = g.split_once('/')
            && (!listed(sub) || rg.is_empty() || rg.contains('/'))
        {
            return Err(CliError::BadInput(format!(
                "-g {g:?}: expected RG or SUB/RG with SUB one of --subscription {}",
                subs.join(", ")
            )));
        }
    }
    Ok(())
}

fn options_of(a: &PlanArgs) -> Result<(PlanOptions, Vec<WaveSpec>), CliError> {
    let bad = CliError::BadInput;
    if a.max_parallel == 0 {
        return Err(bad("--max-parallel must be at least 1".into()));
    }
    let mut o = PlanOptions {
        max_parallel: a.max_parallel,
        target_encryption: target_encryption(&a.target)?,
        carry_role_assignments: !a.no_carry_role_assignments,
        ..Default::default()
    };
    if let Some(b) = &a.failure_budget {
        o.failure_budget =
            Some(Budget::parse(b).map_err(|m| bad(format!("--failure-budget: {m}")))?);
    }
    o.failure_scope = match a.failure_scope.as_str() {
        "cumulative" => BudgetScope::Cumulative,
        "per-wave" => BudgetScope::PerWave,
        s => {
            return Err(bad(format!(
                "--failure-scope must be cumulative or per-wave, got {s:?}"
            )));
        }
    };
    o.soak_secs = parse_duration(&a.soak).map_err(|m| bad(format!("--soak: {m}")))?;
    let mut waves = parse_waves(&a.waves).map_err(|m| bad(format!("--waves: {m}")))?;
    for w in &mut waves {
        w.soak_secs = o.soak_secs;
    }
    if let Some(g) = &a.approval_gates {
        for p in g.split(',') {
            let n: usize = p
                .trim()
                .parse()
                .map_err(|_| bad(format!("--approval-gates: {p:?} is not a wave number")))?;
            if n == 0 || n > waves.len() {
                return Err(bad(format!(
                    "--approval-gates: wave {n} does not exist ({} waves)",
                    waves.len()
                )));
            }
            waves[n - 1].approval = true;
        }
    }
    Ok((o, waves))
}

/// The emulator's configuration for `--time-scale`, a seed and `--fault-rate`.
pub fn emulator_config(
    time_scale: f64,
    seed: u64,
    fault_rate: f64,
) -> Result<EmulatorConfig, CliError> {
    if !(time_scale.is_finite() && time_scale > 0.0) {
        return Err(CliError::BadInput(format!(
            "--time-scale must be positive, got {time_scale}"
        )));
    }
    if !(0.0..=1.0).contains(&fault_rate) {
        return Err(CliError::BadInput(format!(
            "--fault-rate must be between 0 and 1, got {fault_rate}"
        )));
    }
    let mut cfg = EmulatorConfig {
        time_scale,
        seed,
        ..Default::default()
    };
    cfg.faults.rate = fault_rate;
    Ok(cfg)
}

/// The seed of the demo's emulator.
const DEMO_SEED: u64 = 7;

/// `demo`.
#[derive(Debug)]
pub struct DemoSettings {
    /// The emulator (time scale, fault rate).
    pub emulator: EmulatorConfig,
    /// `--state` (default: a temporary directory).
    pub state: Option<PathBuf>,
    /// Transfer options.
    pub copy: CopyOptions,
}

impl DemoSettings {
    fn from_args(a: DemoArgs) -> Result<DemoSettings, CliError> {
        Ok(DemoSettings {
            emulator: emulator_config(a.time_scale, DEMO_SEED, a.fault_rate)?,
            state: a.state,
            copy: copy_options(&a.transfer),
        })
    }
}

/// The fleet `emulator serve` seeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServeFleet {
    /// The demo fleet.
    Demo,
    /// No VMs.
    None,
}

/// `emulator serve`.
#[derive(Debug)]
pub struct ServeSettings {
    /// The emulator.
    pub emulator: EmulatorConfig,
    /// Port on 127.0.0.1 (0 = any free port).
    pub port: u16,
    /// Fleet to seed.
    pub fleet: ServeFleet,
}

impl ServeSettings {
    fn from_args(a: ServeArgs) -> Result<ServeSettings, CliError> {
        let emulator = emulator_config(a.time_scale, a.seed, a.fault_rate)?;
        let fleet = match a.fleet.as_str() {
            "demo" => ServeFleet::Demo,
            "none" => ServeFleet::None,
            other => {
                return Err(CliError::BadInput(format!(
                    "--fleet must be demo or none, got {other:?}"
                )));
            }
        };
        Ok(ServeSettings {
            emulator,
            port: a.port,
            fleet,
        })
    }
}

/// What a journal probe runs (`bench fleet --journal-probe DIR --probe WHAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JournalProbe {
    /// Open the journal only.
    Open,
    /// Open and read the index.
    Index,
    /// `status --output json`.
    StatusJson,
    /// `report --output markdown`.
    ReportMarkdown,
    /// `report --output json`.
    ReportJson,
    /// `resume --auth none --output json`.
    Resume,
}

/// The probes `bench fleet` measures, by name.
pub const PROBES: [&str; 3] = ["status-json", "report-markdown", "resume"];

impl JournalProbe {
    /// The probe named `s`.
    pub fn parse(s: &str) -> Result<JournalProbe, CliError> {
        Ok(match s {
            "open" => JournalProbe::Open,
            "index" => JournalProbe::Index,
            "status-json" => JournalProbe::StatusJson,
            "report-markdown" => JournalProbe::ReportMarkdown,
            "report-json" => JournalProbe::ReportJson,
            "resume" => JournalProbe::Resume,
            other => {
                return Err(CliError::BadInput(format!(
                    "--probe must be one of {PROBES:?}, got {other:?}"
                )));
            }
        })
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            JournalProbe::Open => "open",
            JournalProbe::Index => "index",
            JournalProbe::StatusJson => "status-json",
            JournalProbe::ReportMarkdown => "report-markdown",
            JournalProbe::ReportJson => "report-json",
            JournalProbe::Resume => "resume",
        }
    }
}

/// `bench fleet`.
#[derive(Debug)]
pub enum BenchFleetSettings {
    /// The child side of the journal measurement.
    Probe {
        /// The journal.
        dir: PathBuf,
        /// What to run on it.
        probe: JournalProbe,
    },
    /// The benchmark.
    Run(FleetBench),
}

/// The fleet benchmark's settings (see [`BenchFleetArgs`]).
#[derive(Debug, Clone)]
pub struct FleetBench {
    /// VMs in the generated fleet (at least 1).
    pub vms: usize,
    /// Global concurrency cap (at least 1).
    pub max_parallel: usize,
    /// Simulated seconds per real second (positive).
    pub time_scale: f64,
    /// Seed of the fleet generator.
    pub seed: u64,
    /// Records of the journal measurement (0 = skip).
    pub journal_records: usize,
    /// Share of each disk holding data.
    pub allocated_fraction: f64,
    /// One JSON object instead of summary lines.
    pub json: bool,
    /// Emulator without Azure's throttling limits.
    pub no_throttle: bool,
    /// No client self-throttling.
    pub no_client_throttle: bool,
}

impl BenchFleetSettings {
    fn from_args(a: BenchFleetArgs) -> Result<BenchFleetSettings, CliError> {
        if let Some(dir) = a.journal_probe {
            return Ok(BenchFleetSettings::Probe {
                dir,
                probe: JournalProbe::parse(&a.probe)?,
            });
        }
        let bad = CliError::BadInput;
        if a.vms == 0 || a.max_parallel == 0 {
            return Err(bad("--vms and --max-parallel must be at least 1".into()));
        }
        if !(a.time_scale.is_finite() && a.time_scale > 0.0) {
            return Err(bad("--time-scale must be positive".into()));
        }
        Ok(BenchFleetSettings::Run(FleetBench {
            vms: a.vms,
            max_parallel: a.max_parallel,
            time_scale: a.time_scale,
            seed: a.seed,
            journal_records: a.journal_records,
            allocated_fraction: a.allocated_fraction,
            json: a.json,
            no_throttle: a.no_throttle,
            no_client_throttle: a.no_client_throttle,
        }))
    }
}

/// `bench copy` (see [`BenchCopyArgs`]).
#[derive(Debug, Clone)]
pub struct BenchCopySettings {
    /// Size of the VM's disk in GiB (at least 1).
    pub disk_gib: u64,
    /// Allocated share of the disk, in (0, 1].
    pub allocated: f64,
    /// GiB the guest writes during the online phase.
    pub churn_gib: f64,
    /// Simulated seconds per real second (positive).
    pub time_scale: f64,
    /// One JSON object instead of a table.
    pub json: bool,
    // issue 15
    /// `--matrix` with these disk sizes (GiB, each at least 1), or empty.
    pub matrix_sizes: Vec<u64>,
    /// `--small-disks`.
    pub small_disks: bool,
    /// `--nic-swap` for our VMs.
    pub nic_swap: bool,
}

impl BenchCopySettings {
    fn from_args(a: BenchCopyArgs) -> Result<BenchCopySettings, CliError> {
        // (NaN fails every comparison: refused too.)
        let positive = a.time_scale > 0.0;
        if !(a.allocated > 0.0 && a.allocated <= 1.0) || a.disk_gib < 1 || !positive {
            return Err(CliError::BadInput(
                "--allocated must be in (0, 1], --disk-gib at least 1, --time-scale positive"
                    .into(),
            ));
        }
        Ok(BenchCopySettings {
            disk_gib: a.disk_gib,
            allocated: a.allocated,
            churn_gib: a.churn_gib,
            time_scale: a.time_scale,
            json: a.json,
            matrix_sizes: if a.matrix {
                if a.matrix_sizes.is_empty() || a.matrix_sizes.contains(&0) {
                    return Err(CliError::BadInput(
                        "--matrix-sizes must list sizes of at least 1 GiB".into(),
                    ));
                }
                a.matrix_sizes
            } else {
                Vec::new()
            },
            small_disks: a.small_disks,
            nic_swap: a.nic_swap,
        })
    }
}
