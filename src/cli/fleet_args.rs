//! Arguments of the fleet commands: `plan`, `report`, `approve`, `bench fleet`.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::args::ConnArgs;
use crate::model::ResourceId;

/// Report formats.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ReportFormat {
    /// Human table.
    Table,
    /// One JSON object (docs/plan-schema.md, docs/report-schema.md).
    Json,
    /// Markdown for change tickets.
    Markdown,
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
    /// Output format on stdout.
    #[arg(long, value_enum, default_value = "table")]
    pub output: ReportFormat,
    /// Also write the plan file (TOML) here.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// `report`: the state of a run (during or after).
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Journal directory.
    #[arg(long, default_value = "state")]
    pub state: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub output: ReportFormat,
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

fn parse_id(s: &str) -> Result<ResourceId, String> {
    ResourceId::parse(s).map_err(|e| e.to_string())
}
