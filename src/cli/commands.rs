//! The commands: resolve settings, open the journal, drive the engine.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::args::{
    AuthArg, CloudArg, Command, ConnArgs, DemoArgs, EmulatorCommand, OutputArg, ResumeArgs,
    RunArgs, ServeArgs, StatusArgs,
};
use super::output::{Bars, status_table, status_table_of, write_status_json};
use super::{CliError, Exit};
use crate::azure::{self, ArmClient, AuthMode, AzureConfig};
use crate::discovery::{DiscoverError, discover};
use crate::engine::arm::ArmCloud;
use crate::engine::{Engine, EngineOptions, NoProgress, Progress};
use crate::journal::{Journal, RunMeta, SCHEMA_VERSION, now_rfc3339};
use crate::model::ResourceId;
use crate::step::{Outcome, VmEntry, VmRecord};

/// Default poll interval against real Azure.
const DEFAULT_POLL_SECS: f64 = 15.0;

/// Runs one command.
pub async fn dispatch(cmd: Command) -> Result<Exit, CliError> {
    match cmd {
        Command::Run(a) if a.plan.is_some() => super::plan_cmd::run_plan(a).await,
        Command::Run(a) => run(a).await,
        Command::Resume(a) if super::plan_cmd::is_plan_run(&a.state) => {
            super::plan_cmd::resume_plan(a).await
        }
        Command::Resume(a) => resume(a).await,
        Command::Status(a) => status(a),
        Command::Emulator {
            command: EmulatorCommand::Serve(a),
        } => serve(a).await,
        Command::Demo(a) => demo(a).await,
        Command::Plan(a) => super::plan_cmd::plan(a).await,
        Command::Report(a) => super::plan_cmd::report(a),
        Command::Approve(a) => super::plan_cmd::approve(a),
        Command::Bench {
            command: super::args::BenchCommand::Fleet(a),
        } => super::plan_cmd::bench_fleet(a).await,
        Command::Bench {
            command: super::args::BenchCommand::Copy(a),
        } => super::bench_copy::bench_copy(a).await,
    }
}

fn cloud_of(c: CloudArg) -> azure::AzureCloud {
    match c {
        CloudArg::Public => azure::AzureCloud::Public,
        CloudArg::China => azure::AzureCloud::China,
        CloudArg::Usgov => azure::AzureCloud::UsGov,
    }
}

pub(super) fn cloud_name(c: CloudArg) -> &'static str {
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

pub(super) fn poll_interval(secs: Option<f64>, fallback: f64) -> Result<Duration, CliError> {
    let s = secs.unwrap_or(fallback);
    if !(s.is_finite() && s > 0.0 && s <= 3600.0) {
        return Err(CliError::BadInput(format!(
            "--poll-interval must be a number of seconds between 0 and 3600, got {s}"
        )));
    }
    Ok(Duration::from_secs_f64(s))
}

/// Builds the HTTP client and its cloud adapter. Bad endpoints and
/// credentials are bad input: nothing has been sent yet.
pub(super) async fn connect(
    conn: &ConnArgs,
    endpoint: Option<&str>,
    poll: Duration,
) -> Result<ArmCloud, CliError> {
    let cloud = cloud_of(conn.cloud);
    let mut cfg = match endpoint.or(conn.arm_endpoint.as_deref()) {
        Some(e) => {
            let url = url::Url::parse(e).map_err(|err| {
                CliError::BadInput(format!("--arm-endpoint {e:?} is not a URL: {err}"))
            })?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(CliError::BadInput(format!(
                    "--arm-endpoint must be http(s), got {e:?}"
                )));
            }
            AzureConfig::new(url, cloud)
        }
        None => AzureConfig::for_cloud(cloud),
    };
    cfg.poll_interval = poll;
    cfg.retry.base_delay = cfg.retry.base_delay.min(poll);
    let tokens = azure::token_source(auth_mode(conn.auth), &cfg)
        .await
        .map_err(|e| CliError::BadInput(e.to_string()))?;
    let client = ArmClient::new(cfg, tokens).map_err(|e| CliError::BadInput(e.to_string()))?;
    Ok(ArmCloud::new(client))
}

pub(super) fn ctrl_c_channel() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!(
                "ade2eah: interrupted; finishing the current calls, then stopping (run `ade2eah resume` to continue)"
            );
            let _ = tx.send(true);
        }
    });
    rx
}

pub(super) fn progress_for(output: OutputArg) -> Arc<dyn Progress> {
    if output == OutputArg::Table && std::io::stderr().is_terminal() {
        Arc::new(Bars::new())
    } else {
        Arc::new(NoProgress)
    }
}

async fn run(a: RunArgs) -> Result<Exit, CliError> {
    let poll = poll_interval(a.conn.poll_interval, DEFAULT_POLL_SECS)?;
    if a.max_parallel == 0 {
        return Err(CliError::BadInput(
            "--max-parallel must be at least 1".into(),
        ));
    }
    let subscription = a.subscription.clone().unwrap_or_default();
    for vm in &a.vms {
        if !vm.subscription().eq_ignore_ascii_case(&subscription) {
            return Err(CliError::BadInput(format!(
                "VM {vm} is in subscription {}, not --subscription {}",
                vm.subscription(),
                subscription
            )));
        }
    }
    let mut vms: Vec<ResourceId> = Vec::new();
    for vm in &a.vms {
        if !vms.contains(vm) {
            vms.push(vm.clone());
        }
    }
    let cloud = connect(&a.conn, None, poll)
        .await?
        .with_copy(copy_options(&a.transfer));
    let journal = Arc::new(Journal::open(&a.state)?);
    if let Some(existing) = journal.meta()? {
        return Err(crate::journal::JournalError::RunExists {
            dir: a.state.clone(),
            run_id: existing.run_id,
        }
        .into());
    }
    let discovered = discover(&cloud, &vms).await.map_err(|e| match e {
        DiscoverError::UnknownVm(_) | DiscoverError::NotAVm(_) => CliError::BadInput(e.to_string()),
        DiscoverError::Cloud { .. } => CliError::Failed(e.to_string()),
    })?;
    for (rec, path) in &discovered {
        if let Outcome::Skipped { reason } = &rec.outcome {
            eprintln!("skip {} ({path}): {reason}", rec.id.name());
        }
    }
    if !a.yes && !confirm(&discovered)? {
        return Err(CliError::BadInput(
            "not confirmed; nothing was changed (pass --yes to run without asking)".into(),
        ));
    }
    let meta = RunMeta {
        schema_version: SCHEMA_VERSION,
        run_id: uuid::Uuid::now_v7().to_string(),
        created_at: now_rfc3339(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        arm_endpoint: cloud.client().arm_endpoint().to_string(),
        cloud: cloud_name(a.conn.cloud).into(),
        subscriptions: vec![subscription]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect(),
        auth: format!("{:?}", a.conn.auth).to_ascii_lowercase(),
        poll_interval_secs: poll.as_secs_f64(),
        max_parallel: a.max_parallel,
        vms: vms.clone(),
    };
    let policy = copy_policy(&a.copy);
    let records: Vec<VmRecord> = discovered
        .into_iter()
        .map(|(mut r, _)| {
            r.copy_policy = policy;
            r
        })
        .collect();
    journal.init_run(&meta, &records)?;
    let entries: Vec<VmEntry> = records.iter().map(VmEntry::of).collect();
    drop(records);
    execute(
        cloud,
        journal,
        &meta,
        entries,
        poll,
        a.max_parallel,
        a.output,
        a.break_lease,
    )
    .await
}

fn confirm(discovered: &[(VmRecord, String)]) -> Result<bool, CliError> {
    if !std::io::stdin().is_terminal() {
        return Err(CliError::BadInput(
            "refusing to change VMs without confirmation: pass --yes (stdin is not a terminal)"
                .into(),
        ));
    }
    let eligible = discovered.iter().filter(|(r, _)| r.is_active()).count();
    eprint!(
        "Migrate {eligible} VM(s) to encryption at host? Each will be deallocated, deleted and re-created. [y/N] "
    );
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| CliError::Failed(e.to_string()))?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes"))
}

async fn execute(
    cloud: ArmCloud,
    journal: Arc<Journal>,
    meta: &RunMeta,
    entries: Vec<VmEntry>,
    poll: Duration,
    max_parallel: usize,
    output: OutputArg,
    break_lease: bool,
) -> Result<Exit, CliError> {
    let mut opts = EngineOptions::new(poll);
    opts.max_parallel = max_parallel;
    opts.lease_ttl = journal.lease_meta()?.ttl();
    opts.break_lease = break_lease;
    let live = super::live::Live::start(journal.dir(), progress_for(output));
    let engine = Engine::new(
        Arc::new(cloud),
        journal.clone(),
        meta.run_id.clone(),
        opts,
        live.clone(),
        ctrl_c_channel(),
    );
    // (Each VM's lease is released by the engine when it is verified.)
    let done = engine.run(entries).await?;
    live.finish();
    journal.flush()?;
    print_summary(meta, &journal, output)?;
    Ok(exit_for(&done))
}

/// 0 iff every VM that was not skipped is verified.
pub fn exit_for(records: &[VmEntry]) -> Exit {
    if records
        .iter()
        .all(|r| matches!(r.outcome, Outcome::Verified | Outcome::Skipped { .. }))
    {
        Exit::Done
    } else {
        Exit::Incomplete
    }
}

/// Prints the run's state as `status` does, read from the journal one
/// record at a time.
pub(super) fn print_summary(
    meta: &RunMeta,
    journal: &Journal,
    output: OutputArg,
) -> Result<(), CliError> {
    use std::io::Write;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(64 << 10, stdout.lock());
    match output {
        OutputArg::Json => write_status_json(&mut out, meta, journal)?,
        OutputArg::Table => writeln!(out, "{}", status_table_of(journal)?)
            .map_err(|e| CliError::Failed(format!("cannot write the output: {e}")))?,
    }
    out.flush()
        .map_err(|e| CliError::Failed(format!("cannot write the output: {e}")))
}

/// What every resume (plain or planned) starts from.
pub(super) struct Reopened {
    pub journal: Arc<Journal>,
    pub meta: RunMeta,
    pub poll: Duration,
    pub cloud: ArmCloud,
    /// The index after [`unpark_all`].
    pub entries: Vec<VmEntry>,
}

/// Opens the journal of `a.state`, connects (endpoint defaults to the
/// journaled run's; transfer options are this process's) and unparks.
pub(super) async fn reopen(a: &ResumeArgs) -> Result<Reopened, CliError> {
    let journal = Arc::new(Journal::open(&a.state)?);
    let meta = journal.require_meta()?;
    let poll = poll_interval(a.conn.poll_interval, meta.poll_interval_secs)?;
    let cloud = connect(
        &a.conn,
        a.conn
            .arm_endpoint
            .is_none()
            .then_some(meta.arm_endpoint.as_str()),
        poll,
    )
    .await?
    .with_copy(copy_options(&a.transfer));
    let entries = unpark_all(&journal)?;
    Ok(Reopened {
        journal,
        meta,
        poll,
        cloud,
        entries,
    })
}

async fn resume(a: ResumeArgs) -> Result<Exit, CliError> {
    let Reopened {
        journal,
        meta,
        poll,
        cloud,
        entries,
    } = reopen(&a).await?;
    let max_parallel = a.max_parallel.unwrap_or(meta.max_parallel).max(1);
    execute(
        cloud,
        journal,
        &meta,
        entries,
        poll,
        max_parallel,
        a.output,
        a.break_lease,
    )
    .await
}

fn status(a: StatusArgs) -> Result<Exit, CliError> {
    if !crate::journal::state_dir::has_journal(&a.state) {
        return Err(CliError::BadInput(format!(
            "no journal in {}; pass --state DIR of a run",
            a.state.display()
        )));
    }
    let journal = match Journal::open(&a.state) {
        Ok(j) => j,
        // A live run holds the journal: show its live view instead.
        Err(e @ crate::journal::JournalError::Locked { .. }) => {
            let Some(view) = super::live::read(&a.state).filter(|v| !v.finished) else {
                return Err(e.into());
            };
            match a.output {
                OutputArg::Json => println!("{}", serde_json::json!({"live": true, "run": view})),
                OutputArg::Table => print!("{}", super::live::table(&view)),
            }
            return Ok(Exit::Done);
        }
        Err(e) => return Err(e.into()),
    };
    let meta = journal.require_meta()?;
    print_summary(&meta, &journal, a.output)?;
    Ok(Exit::Done)
}

async fn serve(a: ServeArgs) -> Result<Exit, CliError> {
    let cfg = emulator_config(a.time_scale, a.seed, a.fault_rate)?;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], a.port));
    let emu = crate::emulator::start_on(addr, cfg)
        .await
        .map_err(|e| CliError::BadInput(format!("cannot listen on {addr}: {e}")))?;
    let vms = match a.fleet.as_str() {
        "demo" => crate::emulator::demo_fleet()
            .into_iter()
            .map(|s| emu.add_vm(s))
            .collect::<Vec<_>>(),
        "none" => Vec::new(),
        other => {
            return Err(CliError::BadInput(format!(
                "--fleet must be demo or none, got {other:?}"
            )));
        }
    };
    println!("emulator listening on {}", emu.base_url());
    println!("subscription {}", emu.subscription());
    for vm in &vms {
        println!("vm {vm}");
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = tokio::signal::ctrl_c().await;
    emu.shutdown().await;
    Ok(Exit::Done)
}

pub(super) fn emulator_config(
    time_scale: f64,
    seed: u64,
    fault_rate: f64,
) -> Result<crate::emulator::EmulatorConfig, CliError> {
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
    let mut cfg = crate::emulator::EmulatorConfig {
        time_scale,
        seed,
        ..Default::default()
    };
    cfg.faults.rate = fault_rate;
    Ok(cfg)
}

async fn demo(a: DemoArgs) -> Result<Exit, CliError> {
    let started = Instant::now();
    let emu = crate::emulator::start(emulator_config(a.time_scale, 7, a.fault_rate)?)
        .await
        .map_err(|e| CliError::Failed(e.to_string()))?;
    let vms: Vec<ResourceId> = crate::emulator::demo_fleet()
        .into_iter()
        .map(|s| emu.add_vm(s))
        .collect();
    let tmp;
    let state: &Path = match &a.state {
        Some(p) => p,
        None => {
            tmp = tempfile::tempdir().map_err(|e| CliError::Failed(e.to_string()))?;
            tmp.path()
        }
    };
    eprintln!(
        "ade2eah demo: emulator at {} (time scale {}x), {} VMs",
        emu.base_url(),
        a.time_scale,
        vms.len()
    );
    let conn = ConnArgs {
        arm_endpoint: Some(emu.base_url()),
        cloud: CloudArg::Public,
        auth: AuthArg::None,
        poll_interval: Some(0.2),
    };
    let poll = poll_interval(conn.poll_interval, 0.2)?;
    let cloud = connect(&conn, None, poll)
        .await?
        .with_copy(copy_options(&a.transfer));
    let client = cloud.client().clone();
    let journal = Arc::new(Journal::open(state)?);
    let discovered = discover(&cloud, &vms)
        .await
        .map_err(|e| CliError::Failed(e.to_string()))?;
    let meta = emulator_run_meta(&emu, poll, 8, vms.clone());
    let records: Vec<VmRecord> = discovered.into_iter().map(|(r, _)| r).collect();
    journal.init_run(&meta, &records)?;
    let entries: Vec<VmEntry> = records.iter().map(VmEntry::of).collect();
    let bars: Arc<dyn Progress> = Arc::new(Bars::new());
    let engine = Engine::new(
        Arc::new(cloud),
        journal.clone(),
        meta.run_id.clone(),
        EngineOptions::new(poll),
        bars,
        ctrl_c_channel(),
    );
    let entries = engine.run(entries).await?;
    // The demo fleet is small: its final records are read whole.
    let done = journal.records()?;
    println!("{}", status_table(&done));
    let stats = client.stats();
    let migrated: Vec<&VmRecord> = done
        .iter()
        .filter(|r| r.outcome == Outcome::Verified)
        .collect();
    let copied: u64 = migrated
        .iter()
        .flat_map(|r| &r.disks)
        .map(|d| d.bytes_copied)
        .sum();
    let size: u64 = migrated
        .iter()
        .flat_map(|r| &r.disks)
        .map(|d| d.source_size_bytes + 512)
        .sum();
    println!(
        "wall time {:.1} s (simulated {:.1} h) | {} of {} VMs migrated | ARM requests {} ({:.1} per VM) | copied {} of {} disk bytes ({:.1}%)",
        started.elapsed().as_secs_f64(),
        emu.sim_now_secs() / 3600.0,
        migrated.len(),
        done.len(),
        stats.arm_requests,
        stats.arm_requests as f64 / done.len().max(1) as f64,
        super::output::human_bytes(copied),
        super::output::human_bytes(size),
        if size > 0 {
            copied as f64 * 100.0 / size as f64
        } else {
            0.0
        },
    );
    emu.shutdown().await;
    Ok(exit_for(&entries))
}

/// The journaled copy policy for `--precopy-rounds` / `--verify`.
pub fn copy_policy(a: &super::args::CopyArgs) -> crate::step::CopyPolicy {
    use super::args::VerifyArg;
    crate::step::CopyPolicy {
        max_online_rounds: a.precopy_rounds,
        verify: match a.verify {
            VerifyArg::Full => crate::step::VerifyMode::Full,
            VerifyArg::Sample => crate::step::VerifyMode::Sample,
            VerifyArg::None => crate::step::VerifyMode::None,
        },
        ..Default::default()
    }
}

/// The copy engine's options from `--transfer`, `--copy-parallel` and
/// `--copy-parallel-total`.
pub fn copy_options(a: &super::args::TransferArgs) -> crate::copy::CopyOptions {
    use super::args::TransferArg;
    let mode = match a.transfer {
        TransferArg::ServerSide => crate::copy::TransferMode::ServerSide,
        TransferArg::Relay => crate::copy::TransferMode::Relay,
    };
    crate::copy::CopyOptions::new(mode, a.copy_parallel, a.copy_parallel_total)
}

/// The run metadata of a run against an in-process emulator (`demo`, `bench`).
pub(super) fn emulator_run_meta(
    emu: &crate::emulator::Emulator,
    poll: Duration,
    max_parallel: usize,
    vms: Vec<ResourceId>,
) -> RunMeta {
    RunMeta {
        schema_version: SCHEMA_VERSION,
        run_id: uuid::Uuid::now_v7().to_string(),
        created_at: now_rfc3339(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        arm_endpoint: emu.base_url(),
        cloud: "public".into(),
        subscriptions: vec![emu.subscription().to_string()],
        auth: "none".into(),
        poll_interval_secs: poll.as_secs_f64(),
        max_parallel,
        vms,
    }
}

/// The journal's index with every parked VM put back in progress (its
/// attempts reset, `on_unpark` applied, the unpark journaled): what both
/// `resume` paths start from. Parked records are loaded, unparked and written
/// [`crate::journal::BATCH`] at a time (one flush and fsync per batch); only
/// the index is kept.
pub(super) fn unpark_all(journal: &Journal) -> Result<Vec<VmEntry>, CliError> {
    let mut entries = journal.index()?;
    let parked: Vec<usize> = (0..entries.len())
        .filter(|&k| matches!(entries[k].outcome, Outcome::Parked { .. }))
        .collect();
    for chunk in parked.chunks(crate::journal::BATCH) {
        let mut batch: Vec<(VmRecord, serde_json::Value)> = Vec::with_capacity(chunk.len());
        for &k in chunk {
            let mut rec = journal.get(&entries[k].id)?;
            let Outcome::Parked { reason, .. } = &rec.outcome else {
                continue;
            };
            let detail = serde_json::json!({"previous_reason": reason});
            let reason = reason.clone();
            crate::step::decide::on_unpark(&mut rec, &reason);
            rec.outcome = Outcome::InProgress;
            rec.attempts = 0;
            rec.note(now_rfc3339(), "unpark", detail.to_string());
            entries[k] = VmEntry::of(&rec);
            batch.push((rec, detail));
        }
        let items: Vec<(&VmRecord, &str, serde_json::Value)> = batch
            .iter()
            .map(|(r, d)| (r, "unpark", d.clone()))
            .collect();
        if !items.is_empty() {
            journal.write_batch(&items)?;
        }
    }
    Ok(entries)
}
