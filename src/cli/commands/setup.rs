//! Setting up what commands run on: the connection ([`connect`]), a new
//! run's journal ([`start_run`], [`NewRun::begin`]), a resumed run
//! ([`reopen`], [`unpark_all`]), Ctrl-C and the progress display.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::azure::{self, ArmClient, AzureConfig};
use crate::cli::error::CliError;
use crate::cli::output::Bars;
use crate::cli::settings::{ConnSettings, Output, ResumeSettings, parse_endpoint};
use crate::engine::arm::ArmCloud;
use crate::engine::{NoProgress, Progress};
use crate::journal::{Journal, JournalError, RunMeta, now_rfc3339};
use crate::model::ResourceId;
use crate::step::{Outcome, VmEntry, VmRecord};

/// Builds the HTTP client and its cloud adapter for `conn`, polling every
/// `poll`; `endpoint` (a resumed run's) is used when `conn` names none.
/// Bad endpoints and credentials are bad input: nothing has been sent yet.
pub async fn connect(
    conn: &ConnSettings,
    endpoint: Option<&str>,
    poll: Duration,
) -> Result<ArmCloud, CliError> {
    let url = match (&conn.endpoint, endpoint) {
        (Some(u), _) => Some(u.clone()),
        (None, Some(e)) => Some(parse_endpoint(e)?),
        (None, None) => None,
    };
    let mut cfg = match url {
        Some(u) => AzureConfig::new(u, conn.cloud),
        None => AzureConfig::for_cloud(conn.cloud),
    };
    cfg.poll_interval = poll;
    cfg.retry.base_delay = cfg.retry.base_delay.min(poll);
    if let Some(t) = conn.throttle {
        cfg.throttle.time_scale = t.time_scale;
        cfg.throttle.enabled = t.enabled;
    }
    let tokens = azure::token_source(conn.auth, &cfg)
        .await
        .map_err(|e| CliError::BadInput(e.to_string()))?;
    let client = ArmClient::new(cfg, tokens).map_err(|e| CliError::BadInput(e.to_string()))?;
    Ok(ArmCloud::new(client))
}

/// Starts the log file in the state folder `dir` of the journal this
/// process now holds as writer (`journal::log_file`); a log that cannot be
/// opened is a warning, not a reason to stop.
pub fn attach_log(dir: &Path) {
    match crate::journal::log_file::attach(dir) {
        Ok(()) => tracing::info!(
            version = env!("CARGO_PKG_VERSION"),
            pid = std::process::id(),
            args = ?std::env::args().skip(1).collect::<Vec<_>>(),
            "ade2eah started"
        ),
        Err(e) => tracing::warn!("cannot open the log file in {}: {e}", dir.display()),
    }
}

/// The journal of a new run, opened and found empty, not yet written.
pub struct NewRun {
    journal: Arc<Journal>,
}

/// Opens the journal in `state` for a new run (`run`, `run --plan`, `demo`,
/// the benchmarks); one that already holds a run is refused (exit 2)
/// before anything is discovered or sent.
pub fn start_run(state: &Path) -> Result<NewRun, CliError> {
    let journal = Arc::new(Journal::open(state)?);
    if let Some(existing) = journal.meta()? {
        return Err(JournalError::RunExists {
            dir: state.to_path_buf(),
            run_id: existing.run_id,
        }
        .into());
    }
    attach_log(state);
    Ok(NewRun { journal })
}

impl NewRun {
    /// The journal (for what a command stores beside the run, such as its plan).
    pub fn journal(&self) -> &Arc<Journal> {
        &self.journal
    }

    /// Journals `meta` and the initial `records`; returns the journal and
    /// the index the engine starts from.
    pub fn begin(
        self,
        meta: &RunMeta,
        records: &[VmRecord],
    ) -> Result<(Arc<Journal>, Vec<VmEntry>), CliError> {
        self.journal.init_run(meta, records)?;
        let entries = records.iter().map(VmEntry::of).collect();
        Ok((self.journal, entries))
    }
}

/// The run metadata of a run against an in-process emulator (`demo`, `bench`).
pub fn emulator_run_meta(
    emu: &crate::emulator::Emulator,
    poll: Duration,
    max_parallel: usize,
    vms: Vec<ResourceId>,
) -> RunMeta {
    RunMeta::new(
        emu.base_url(),
        "public",
        "none",
        vec![emu.subscription().to_string()],
        poll,
        max_parallel,
        vms,
    )
}

/// The initial records of planned VMs; an ineligible VM not already
/// skipped is skipped with `reason`.
pub fn planned_records(vms: &[crate::plan::PlannedVm], reason: &str) -> Vec<VmRecord> {
    vms.iter()
        .map(|v| {
            let mut r = v.record.clone();
            if !v.eligible && r.is_active() {
                r.outcome = Outcome::Skipped {
                    reason: reason.into(),
                };
            }
            r
        })
        .collect()
}

/// What every resume (plain or planned) starts from.
pub struct Reopened {
    pub journal: Arc<Journal>,
    pub meta: RunMeta,
    pub poll: Duration,
    pub cloud: ArmCloud,
    /// The index after [`unpark_all`].
    pub entries: Vec<VmEntry>,
}

/// Opens the journal of `s.state` (creating nothing), connects (endpoint and
/// poll interval default to the journaled run's; transfer options are this
/// process's) and unparks.
pub async fn reopen(s: &ResumeSettings) -> Result<Reopened, CliError> {
    reopen_with(s, true).await
}

/// [`reopen`], unparking only when `unpark` (a `rollback` unparks nothing:
/// it takes up only the VMs it names).
pub async fn reopen_with(s: &ResumeSettings, unpark: bool) -> Result<Reopened, CliError> {
    let journal = Arc::new(Journal::open_existing(&s.state)?);
    attach_log(&s.state);
    let meta = journal.require_meta()?;
    let poll = s.conn.poll_or(meta.poll_interval_secs)?;
    let cloud = connect(&s.conn, Some(meta.arm_endpoint.as_str()), poll)
        .await?
        .with_copy(s.copy.clone());
    let entries = if unpark {
        unpark_all(&journal)?
    } else {
        journal.index()?
    };
    Ok(Reopened {
        journal,
        meta,
        poll,
        cloud,
        entries,
    })
}

/// The journal's index with every parked VM put back in progress (its
/// attempts reset, `on_unpark` applied, the unpark journaled): what both
/// `resume` paths start from. Parked records are loaded, unparked and written
/// [`crate::journal::BATCH`] at a time (one flush and fsync per batch); only
/// the index is kept.
pub fn unpark_all(journal: &Journal) -> Result<Vec<VmEntry>, CliError> {
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

/// A channel that turns true on the first Ctrl-C (the engine then finishes
/// the calls in flight and stops).
pub fn ctrl_c_channel() -> watch::Receiver<bool> {
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

/// Progress bars on a terminal for table output, nothing otherwise.
pub fn progress_for(output: Output) -> Arc<dyn Progress> {
    if output == Output::Table && std::io::stderr().is_terminal() {
        Arc::new(Bars::new())
    } else {
        Arc::new(NoProgress)
    }
}

/// Replaces every subscription display name in `subs` by its id (`GET
/// /subscriptions`, asked once and only when a name is given), as az's
/// `--subscription` accepts either. A name matching no subscription, or
/// several, is bad input.
pub async fn resolve_subscriptions(
    client: &azure::ArmClient,
    subs: &mut [String],
) -> Result<(), CliError> {
    use crate::cli::settings::is_subscription_id;
    if subs.iter().all(|s| is_subscription_id(s)) {
        return Ok(());
    }
    let listed = client.list_subscriptions().await.map_err(|e| {
        CliError::Failed(format!(
            "cannot list subscriptions to resolve --subscription names: {e}"
        ))
    })?;
    for s in subs.iter_mut().filter(|s| !is_subscription_id(s)) {
        let found: Vec<&(String, String)> = listed
            .iter()
            .filter(|(_, name)| name.eq_ignore_ascii_case(s))
            .collect();
        match found.as_slice() {
            [(id, _)] => *s = id.clone(),
            [] => {
                return Err(CliError::BadInput(format!(
                    "--subscription {s:?} is neither a subscription id nor the name of one you can see ({})",
                    listed
                        .iter()
                        .map(|(id, n)| format!("{n} = {id}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            several => {
                return Err(CliError::BadInput(format!(
                    "--subscription {s:?} names {} subscriptions; pass the id",
                    several.len()
                )));
            }
        }
    }
    Ok(())
}
