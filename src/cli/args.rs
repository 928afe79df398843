//! Command-line arguments exactly as the user typed them: every clap type of
//! the CLI, and nothing else (the "low-level" flags). They are turned into
//! validated settings by [`super::settings`] before any command runs.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::model::ResourceId;

/// Move Azure VMs off Azure Disk Encryption onto encryption at host.
#[derive(Debug, Parser)]
#[command(name = "ade2eah", version, about, long_about = None)]
pub struct Cli {
    /// The command.
    #[command(subcommand)]
    pub command: Command,
    /// Options every command takes (az conventions).
    #[command(flatten)]
    pub global: GlobalArgs,
}

// --- az conventions (issue 14): global options, `-o` formats,
// completions, man page, `permissions`.

/// Options every command takes, as `az` has them.
#[derive(Debug, Clone, Default, Args)]
pub struct GlobalArgs {
    /// JMESPath query applied to the JSON output before it is formatted
    /// (`--query "vms[?outcome=='parked'].name"`; http://jmespath.org).
    #[arg(long, global = true, value_name = "JMESPATH")]
    pub query: Option<String>,
    /// Only show errors on stderr (no warnings).
    #[arg(long, global = true)]
    pub only_show_errors: bool,
    /// More log lines on stderr (info).
    #[arg(long, global = true)]
    pub verbose: bool,
    /// Full debug logs on stderr (every Azure request with its ids).
    #[arg(long, global = true)]
    pub debug: bool,
}

/// `permissions`: the least-privilege custom role, or a check of the caller's.
#[derive(Debug, Args)]
pub struct PermissionsArgs {
    /// Connection (only `--check` sends anything).
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Subscription (id or name) whose id is an assignable scope (repeatable).
    #[arg(
        long = "subscription",
        value_name = "SUB",
        env = "AZURE_SUBSCRIPTION_ID"
    )]
    pub subscriptions: Vec<String>,
    /// Resource group to scope the role to (`RG` in each --subscription, or `SUB/RG`; repeatable).
    #[arg(short = 'g', long = "resource-group", value_name = "RG")]
    pub resource_groups: Vec<String>,
    /// Assignable scope, a full id (`/subscriptions/ID[/resourceGroups/RG]`; repeatable).
    #[arg(long = "scope", value_name = "ID")]
    pub scopes: Vec<String>,
    /// Scopes from this plan file's subscriptions.
    #[arg(long, value_name = "FILE")]
    pub plan: Option<PathBuf>,
    /// Scopes from the subscriptions of the run journaled here.
    #[arg(long, value_name = "DIR")]
    pub state: Option<PathBuf>,
    /// Ask Azure for the caller's effective permissions on each scope and
    /// name the role's actions missing there (exit 2 if any is).
    #[arg(long)]
    pub check: bool,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "json")]
    pub output: OutputArg,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start migrating the given VMs (journaled; resumable).
    Run(RunArgs),
    /// Continue the run journaled in --state (parked VMs are retried).
    Resume(ResumeArgs),
    /// Show the state of the run journaled in --state.
    Status(StatusArgs),
    /// The built-in Azure emulator.
    Emulator {
        /// Emulator command.
        #[command(subcommand)]
        command: EmulatorCommand,
    },
    /// Migrate a small mixed fleet in the built-in emulator, with progress bars.
    Demo(DemoArgs),
    /// Dry run: discover, classify and preflight VMs; print or save a plan (changes nothing).
    Plan(PlanArgs),
    /// Report on the run journaled in --state (table, JSON or Markdown).
    Report(ReportArgs),
    /// Open an approval gate of a planned run, then `resume`.
    Approve(ApproveArgs),
    /// Bring VMs of the run in --state back to their original VM on their original disks.
    Rollback(RollbackArgs),
    /// Delete what verified VMs no longer need (round and backup snapshots,
    /// original disks) after the retention; a dry run unless --yes.
    Cleanup(CleanupArgs),
    /// Print the least-privilege custom role (JSON for `az role definition
    /// create`), or check the caller's permissions with --check.
    Permissions(PermissionsArgs),
    /// Print a shell completion script (bash, zsh, fish, powershell, elvish).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), generated from these flags.
    Man,
    /// Benchmarks in the built-in emulator.
    Bench {
        /// Benchmark.
        #[command(subcommand)]
        command: BenchCommand,
    },
}

/// Benchmarks.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Fleet makespan, ARM requests and memory for a generated fleet.
    Fleet(BenchFleetArgs),
    /// Downtime of one large disk, ours (pre-copy + delta) vs the baseline
    /// (full copy while deallocated), bytes moved, throughput vs the cap.
    Copy(BenchCopyArgs),
}

/// Emulator commands.
#[derive(Debug, Subcommand)]
pub enum EmulatorCommand {
    /// Serve the emulator on 127.0.0.1 until interrupted.
    Serve(ServeArgs),
}

/// Which Azure cloud.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum CloudArg {
    /// Azure public cloud.
    Public,
    /// Azure China (21Vianet).
    China,
    /// Azure US Government.
    Usgov,
}

/// How to authenticate.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum AuthArg {
    /// Service principal if AZURE_CLIENT_SECRET is set, workload identity if
    /// AZURE_FEDERATED_TOKEN_FILE is set, managed identity if IDENTITY_ENDPOINT
    /// is set, otherwise the Azure CLI login.
    Auto,
    /// Azure CLI (`az login`).
    Cli,
    /// Managed identity (AZURE_CLIENT_ID selects a user-assigned one).
    Msi,
    /// Workload identity (AKS federated token).
    Workload,
    /// Service principal from AZURE_TENANT_ID / AZURE_CLIENT_ID / AZURE_CLIENT_SECRET.
    Sp,
    /// No credentials; only for loopback endpoints (the emulator).
    None,
}

/// Connection options shared by commands that talk to Azure.
#[derive(Debug, Clone, Args)]
pub struct ConnArgs {
    /// ARM endpoint (default: the cloud's; the emulator's URL for rehearsals).
    #[arg(long, value_name = "URL")]
    pub arm_endpoint: Option<String>,
    /// Azure cloud.
    #[arg(long, value_enum, default_value = "public")]
    pub cloud: CloudArg,
    /// Authentication.
    #[arg(long, value_enum, default_value = "auto")]
    pub auth: AuthArg,
    /// Seconds between polls when Azure sends no Retry-After (fractions allowed).
    #[arg(long, value_name = "SECONDS")]
    pub poll_interval: Option<f64>,
}

/// `run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Connection.
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Subscription the VMs belong to.
    #[arg(long, env = "AZURE_SUBSCRIPTION_ID", required_unless_present = "plan")]
    pub subscription: Option<String>,
    /// Full ARM resource id of a VM to migrate (repeatable).
    #[arg(long = "vm", value_name = "RESOURCE_ID", required_unless_present = "plan", conflicts_with = "plan", value_parser = parse_id)]
    pub vms: Vec<ResourceId>,
    /// Plan file from `ade2eah plan --out` (waves, budgets; refused if stale).
    #[arg(long, value_name = "FILE")]
    pub plan: Option<PathBuf>,
    /// Journal directory.
    #[arg(long, default_value = "state")]
    pub state: PathBuf,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub yes: bool,
    /// Most VMs migrated at once.
    #[arg(long, default_value_t = 8)]
    pub max_parallel: usize,
    /// Take over the Azure-side lease (tag `ade2eah-lease`) of VMs leased by
    /// another run; only when that run is known to be dead.
    #[arg(long)]
    pub break_lease: bool,
    // Extensions and identity (issue 12):
    /// Grant the re-created VM's new system-assigned principal the role
    /// assignments of the old one (the default).
    #[arg(long, overrides_with = "no_carry_role_assignments")]
    pub carry_role_assignments: bool,
    /// Do not re-create role assignments; they are listed for the operator.
    #[arg(long, overrides_with = "carry_role_assignments")]
    pub no_carry_role_assignments: bool,
    /// First ask Azure for the caller's effective permissions on the run's
    /// subscriptions and refuse (exit 2, naming each missing action) unless
    /// every action of `ade2eah permissions` is granted (az conventions).
    #[arg(long)]
    pub check_permissions: bool,
    /// Copy rounds and verification.
    #[command(flatten)]
    pub copy: CopyArgs,
    /// Transfer mode and parallelism.
    #[command(flatten)]
    pub transfer: TransferArgs,
    /// Target encryption (overrides the plan file's).
    #[command(flatten)]
    pub target: TargetArgs,
    /// Also check inside the guest through Run Command (volumes seen,
    /// BitLocker / dm-crypt off); on Windows also before the copy.
    #[arg(long)]
    pub guest_check: bool,
    /// Before deleting each VM, swap a placeholder NIC (created on the same
    /// subnet while the VM still runs) in place of its own NICs, so the
    /// re-create may find them free rather than reserved for 180 s. Whether
    /// Azure skips the reservation then is unconfirmed: a reserved NIC is
    /// waited out as without the swap. The placeholder is deleted once the
    /// new VM runs.
    #[arg(long)]
    pub nic_swap: bool,
    /// Linux VMs with an ADE OS volume.
    #[command(flatten)]
    pub rebuild: RebuildArgs,
    /// Output of the final summary.
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    pub output: OutputArg,
    // Rollback (issue 13): automatic rollback policy, journaled per VM.
    /// Leave a VM whose re-create is refused after its delete parked
    /// (deleted) for the operator, instead of bringing the original back.
    #[arg(long)]
    pub no_auto_rollback: bool,
    /// Also roll back a VM whose verification after start fails.
    #[arg(long)]
    pub rollback_on_verify_failure: bool,
}

/// `rollback` (issue 13).
#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// Connection (endpoint and cloud default to the journaled run's).
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Journal directory of the run.
    #[arg(long, default_value = "state")]
    pub state: PathBuf,
    /// VM to roll back (repeatable; full ARM resource id).
    #[arg(long = "vm", value_name = "RESOURCE_ID", value_parser = parse_id, required_unless_present = "wave")]
    pub vms: Vec<ResourceId>,
    /// Roll back every VM of this wave of a planned run (1-based).
    #[arg(long, value_name = "N")]
    pub wave: Option<usize>,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub yes: bool,
    /// Also roll back VMs verified on their new disks (writes made since
    /// the migration stay on the new disks).
    #[arg(long)]
    pub force: bool,
    /// Re-enable ADE on the restored VM with the journaled key vault settings.
    #[arg(long)]
    pub reenable_ade: bool,
    /// Output of the final summary.
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    pub output: OutputArg,
}

// Target encryption, validate-before-delete and verification.
/// Encryption of the new disks (`run`, `plan`).
#[derive(Debug, Clone, Args)]
pub struct TargetArgs {
    /// Put every new disk on this disk encryption set (customer-managed
    /// keys); default: each new disk keeps its source disk's encryption.
    #[arg(long, value_name = "DES_ID", value_parser = parse_id)]
    pub disk_encryption_set: Option<ResourceId>,
    /// Put every new disk on platform-managed keys, even where the source
    /// used a disk encryption set.
    #[arg(long)]
    pub platform_keys: bool,
}

// ---- Linux rebuild (issue 13) ----

/// Linux VMs whose OS volume is ADE-encrypted (`run`, `plan`).
#[derive(Debug, Clone, Args)]
pub struct RebuildArgs {
    /// Rebuild Linux VMs with an ADE-encrypted OS volume from their image,
    /// with EAH, on a new OS disk and new EMPTY data disks (the original
    /// disks are kept; their data is not carried over). Off: they are skipped.
    #[arg(long)]
    pub rebuild_linux_os: bool,
    /// Image to rebuild from (`publisher:offer:sku:version` or an image
    /// resource id; default: the VM's own imageReference).
    #[arg(long, value_name = "URN_OR_ID", requires = "rebuild_linux_os")]
    pub image: Option<String>,
    /// File holding an SSH public key for the admin user of rebuilt VMs
    /// (repeatable; needed for VMs that sign in by password only).
    #[arg(
        long = "ssh-public-key",
        value_name = "FILE",
        requires = "rebuild_linux_os"
    )]
    pub ssh_public_keys: Vec<PathBuf>,
}

/// How disks are copied (`run`, `demo`).
#[derive(Debug, Clone, Args)]
pub struct CopyArgs {
    /// Most copy rounds while the VM still runs (the first copies
    /// everything, later ones the delta); 0 copies everything while the VM
    /// is deallocated (longest downtime).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(0..=20))]
    pub precopy_rounds: u32,
    /// Compare each sealed target with its final snapshot: `full` reads
    /// back every allocated range, `sample` the allocation maps, every range
    /// written while offline, the footer and 32 seeded 4 MiB spot checks, `none` only the
    /// footer check Azure does when the target is sealed.
    #[arg(long, value_enum, default_value = "sample")]
    pub verify: VerifyArg,
}

/// How bytes move and how many calls run at once (`run`, `resume`, `demo`).
/// Not journaled: a resume may choose differently (for example relay after a
/// network change).
#[derive(Debug, Clone, Args)]
pub struct TransferArgs {
    /// `server-side`: storage copies with Put Page From URL (default);
    /// `relay`: this tool reads each range from the source SAS and writes
    /// it with Put Page, for targets that cannot reach the source (private
    /// access, firewalls).
    #[arg(long, value_enum, default_value = "server-side")]
    pub transfer: TransferArg,
    /// Copy or verification calls in flight per disk.
    #[arg(long, default_value_t = crate::copy::DEFAULT_PARALLEL,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=256))]
    pub copy_parallel: usize,
    /// Storage data calls in flight across all disks and VMs (at least 2:
    /// a verification call reads source and target at once).
    #[arg(long, default_value_t = crate::copy::DEFAULT_GLOBAL_PARALLEL,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(2..=4096))]
    pub copy_parallel_total: usize,
    /// Shortest lifetime, in hours, of each disk SAS grant (big disks get
    /// longer: 1 h + 2 s per 50 MiB, at most 60 days). Every grant is revoked
    /// when its step ends; one that expires mid-copy is granted again and
    /// the copy goes on from its last checkpoint.
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u64).range(1..=1440))]
    pub sas_hours: u64,
}

/// `--transfer` values.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum TransferArg {
    /// Put Page From URL (storage to storage).
    ServerSide,
    /// Read through this tool, write with Put Page.
    Relay,
}

/// `--verify` values.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum VerifyArg {
    /// Every allocated range.
    Full,
    /// Allocation maps, offline ranges, footer, 32 spot checks (run online
    /// after the last pre-copy round when the upload grant reads).
    Sample,
    /// No read-back.
    None,
}

/// `resume`.
#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// Connection (endpoint and cloud default to the journaled run's).
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Journal directory.
    #[arg(long, default_value = "state")]
    pub state: PathBuf,
    /// Most VMs migrated at once (default: the journaled run's).
    #[arg(long)]
    pub max_parallel: Option<usize>,
    /// Take over the Azure-side lease (tag `ade2eah-lease`) of VMs leased by
    /// another run; only when that run is known to be dead.
    #[arg(long)]
    pub break_lease: bool,
    /// Transfer mode and parallelism.
    #[command(flatten)]
    pub transfer: TransferArgs,
    /// Output of the final summary.
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    pub output: OutputArg,
}

// ---- cleanup (issue 13) ----

/// `cleanup`.
#[derive(Debug, Args)]
pub struct CleanupArgs {
    /// Connection (endpoint and poll interval default to the journaled run's).
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Journal directory of the run.
    #[arg(long, default_value = "state")]
    pub state: PathBuf,
    /// Keep everything of a VM verified more recently than this (`7d`, `12h`, `30m`, `0s`).
    #[arg(long, default_value = "7d", value_name = "DURATION")]
    pub older_than: String,
    /// Delete; without it, only list what would be deleted (dry run).
    #[arg(long)]
    pub yes: bool,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    pub output: OutputArg,
}

/// Output formats (`-o`, as az has them).
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum OutputArg {
    /// Human table.
    Table,
    /// One JSON object.
    Json,
    /// JSON, indented.
    Jsonc,
    /// Tab-separated values: one line per list item, scalar fields only.
    Tsv,
    /// YAML.
    Yaml,
    /// Markdown.
    Markdown,
}

/// Report formats: the same as every command's.
pub type ReportFormat = OutputArg;

/// `status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Journal directory.
    #[arg(long, default_value = "state")]
    pub state: PathBuf,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    pub output: OutputArg,
}

/// `emulator serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Port on 127.0.0.1 (0 = any free port).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Simulated seconds per real second.
    #[arg(long, default_value_t = 1000.0)]
    pub time_scale: f64,
    /// Seed for durations and faults.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Share of ARM requests answered with an injected fault (0 to 1).
    #[arg(long, default_value_t = 0.0)]
    pub fault_rate: f64,
    /// Fleet to seed: `demo` or `none`.
    #[arg(long, default_value = "demo")]
    pub fleet: String,
}

/// `demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Simulated seconds per real second.
    #[arg(long, default_value_t = 1000.0)]
    pub time_scale: f64,
    /// Share of ARM requests answered with an injected fault (0 to 1).
    #[arg(long, default_value_t = 0.0)]
    pub fault_rate: f64,
    /// Keep the journal here instead of a temporary directory.
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// Transfer mode and parallelism.
    #[command(flatten)]
    pub transfer: TransferArgs,
}

/// `plan`: discover, classify, preflight; a dry run that changes nothing.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Connection.
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Subscription to plan in (repeatable: a fleet across subscriptions).
    #[arg(
        long = "subscription",
        value_name = "SUB",
        env = "AZURE_SUBSCRIPTION_ID",
        required = true
    )]
    pub subscriptions: Vec<String>,
    /// Resource group to select (repeatable; default: the whole subscriptions).
    /// `RG` is looked up in every `--subscription`, `SUB/RG` only in `SUB`.
    #[arg(short = 'g', long = "resource-group", value_name = "RG")]
    pub resource_groups: Vec<String>,
    /// Explicit VM id to select (repeatable; filters do not apply to these).
    #[arg(long = "vm", value_name = "RESOURCE_ID", value_parser = parse_id)]
    pub vms: Vec<ResourceId>,
    /// Only VMs with this tag (`KEY=VALUE`, repeatable: all must match).
    #[arg(long = "tag", value_name = "KEY=VALUE")]
    pub tags: Vec<String>,
    /// Only VMs whose name matches this glob (`web-*`).
    #[arg(long, value_name = "GLOB")]
    pub name: Option<String>,
    /// Cumulative wave targets: `1,10%,100%` = canary of 1, up to 10% in all, then the rest.
    #[arg(long, default_value = "100%")]
    pub waves: String,
    /// Global cap on VMs migrated at once.
    #[arg(long, default_value_t = 8)]
    pub max_parallel: usize,
    /// Failure budget written into the plan (`3` or `10%`; halts when exceeded).
    #[arg(long, value_name = "N|P%")]
    pub failure_budget: Option<String>,
    /// Budget scope: `cumulative` or `per-wave`.
    #[arg(long, default_value = "cumulative")]
    pub failure_scope: String,
    /// Soak time between waves (`90s`, `10m`).
    #[arg(long, default_value = "0s")]
    pub soak: String,
    /// Waves (1-based, comma-separated) that need `ade2eah approve` before they start.
    #[arg(long, value_name = "N,...")]
    pub approval_gates: Option<String>,
    /// Register Microsoft.Compute/EncryptionAtHost if it is not (the only write `plan` can send).
    #[arg(long)]
    pub register_feature: bool,
    // Extensions and identity (issue 12):
    /// Grant the re-created VM's new system-assigned principal the role
    /// assignments of the old one (the default).
    #[arg(long, overrides_with = "no_carry_role_assignments")]
    pub carry_role_assignments: bool,
    /// Do not re-create role assignments; they are listed for the operator.
    #[arg(long, overrides_with = "carry_role_assignments")]
    pub no_carry_role_assignments: bool,
    /// Linux VMs with an ADE OS volume.
    #[command(flatten)]
    pub rebuild: RebuildArgs,
    /// Output format on stdout.
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    pub output: ReportFormat,
    /// Also write the plan file (TOML) here.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Target encryption written into the plan.
    #[command(flatten)]
    pub target: TargetArgs,
    // issue 14: what the downtime estimates assume.
    /// Guest write rate assumed while a VM runs, MiB/s: sets how much the
    /// pre-copy rounds leave for the final (offline) delta.
    #[arg(long, value_name = "MIB_PER_S", default_value_t = 1.0)]
    pub assume_churn: f64,
}

/// `report`: the state of a run (during or after).
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Journal directory.
    #[arg(long, default_value = "state")]
    pub state: PathBuf,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    pub output: ReportFormat,
    // issue 14: the HTML timeline.
    /// Write the run's self-contained HTML timeline to FILE (instead of
    /// printing the report).
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
}

/// `approve`: open an approval gate of a planned run.
#[derive(Debug, Args)]
pub struct ApproveArgs {
    /// Journal directory of the run.
    #[arg(long, default_value = "state")]
    pub state: PathBuf,
    /// The wave to approve (1-based).
    #[arg(long)]
    pub wave: usize,
}

/// `bench fleet`: the fleet benchmark in the built-in emulator.
#[derive(Debug, Args)]
pub struct BenchFleetArgs {
    /// VMs in the generated fleet.
    #[arg(long, default_value_t = 1000)]
    pub vms: usize,
    /// Global concurrency cap.
    #[arg(long, default_value_t = 50)]
    pub max_parallel: usize,
    /// Simulated seconds per real second.
    #[arg(long, default_value_t = 20000.0)]
    pub time_scale: f64,
    /// Seed of the fleet generator.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Also fill a journal with this many records (copies of the migrated
    /// ones) and report the peak RSS and time of `status --output json`,
    /// `report --output markdown` and `resume` on it, each in a child process (0 = skip).
    #[arg(long, default_value_t = 10_000)]
    pub journal_records: usize,
    /// Share of each 1 GiB disk holding data (the copy moves these bytes).
    #[arg(long, default_value_t = 0.002)]
    pub allocated_fraction: f64,
    /// Print one JSON object instead of the summary lines.
    #[arg(long)]
    pub json: bool,
    /// Run the emulator without Azure's throttling limits.
    #[arg(long)]
    pub no_throttle: bool,
    /// Do not self-throttle in the client (hammer into 429s instead).
    #[arg(long)]
    pub no_client_throttle: bool,
    /// Internal: run one command (`--probe`) on the journal in DIR in this
    /// process, then print its memory and time as a JSON line.
    #[arg(long, value_name = "DIR", hide = true)]
    pub journal_probe: Option<PathBuf>,
    /// Internal: the command `--journal-probe` runs: status-json,
    /// report-markdown, report-json or resume.
    #[arg(long, value_name = "WHAT", default_value = "status-json", hide = true)]
    pub probe: String,
}

/// `bench copy` flags.
#[derive(Debug, Clone, Args)]
pub struct BenchCopyArgs {
    /// Size of the VM's disk in GiB.
    #[arg(long, default_value_t = 1024)]
    pub disk_gib: u64,
    /// Allocated share of the disk.
    #[arg(long, default_value_t = 0.95)]
    pub allocated: f64,
    /// GiB the guest writes during the online phase.
    #[arg(long, default_value_t = 1.0)]
    pub churn_gib: f64,
    /// Simulated seconds per real second (low enough that the client keeps
    /// up with the simulated bandwidth cap; 1 TiB then takes ~90 s per copy).
    #[arg(long, default_value_t = 200.0)]
    pub time_scale: f64,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    // issue 15: the downtime matrix and the small-disk setup.
    /// Run the matrix instead: disk sizes (`--matrix-sizes`) × allocation
    /// (30%, 95%) × steady guest writes (0.1, 1, 10 MiB/s), each against
    /// the full-copy baseline and the lower bound.
    #[arg(long)]
    pub matrix: bool,
    /// Disk sizes of the matrix, GiB.
    #[arg(long, value_delimiter = ',', default_value = "32,128,1024")]
    pub matrix_sizes: Vec<u64>,
    /// Run issue 15's small-disk setup instead: two VMs with 512 MiB and
    /// 256 MiB of data, 64 KiB/s guest writes per disk, 4 MiB/s write cap.
    #[arg(long, conflicts_with = "matrix")]
    pub small_disks: bool,
    /// Migrate our VMs with `--nic-swap` (the baselines without).
    #[arg(long)]
    pub nic_swap: bool,
}

fn parse_id(s: &str) -> Result<ResourceId, String> {
    ResourceId::parse(s).map_err(|e| e.to_string())
}
