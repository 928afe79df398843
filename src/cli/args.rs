//! Command-line arguments exactly as the user typed them (clap derive only;
//! validation and resolution happen in the commands).

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
    Plan(super::fleet_args::PlanArgs),
    /// Report on the run journaled in --state (table, JSON or Markdown).
    Report(super::fleet_args::ReportArgs),
    /// Open an approval gate of a planned run, then `resume`.
    Approve(super::fleet_args::ApproveArgs),
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
    Fleet(super::fleet_args::BenchFleetArgs),
    /// Downtime of one large disk, ours (pre-copy + delta) vs the baseline
    /// (full copy while deallocated), bytes moved, throughput vs the cap.
    Copy(super::bench_copy::BenchCopyArgs),
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
    /// Copy rounds and verification.
    #[command(flatten)]
    pub copy: CopyArgs,
    /// Transfer mode and parallelism.
    #[command(flatten)]
    pub transfer: TransferArgs,
    /// Output of the final summary.
    #[arg(long, value_enum, default_value = "table")]
    pub output: OutputArg,
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
    /// Allocation maps, offline ranges, footer, 32 spot checks.
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
    #[arg(long, value_enum, default_value = "table")]
    pub output: OutputArg,
}

/// Output formats.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum OutputArg {
    /// Human table.
    Table,
    /// One JSON object.
    Json,
}

/// `status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Journal directory.
    #[arg(long, default_value = "state")]
    pub state: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
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

fn parse_id(s: &str) -> Result<ResourceId, String> {
    ResourceId::parse(s).map_err(|e| e.to_string())
}
