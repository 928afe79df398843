//! `ade2eah demo`: a small mixed fleet migrated in the built-in emulator,
//! with progress bars and a summary line.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::execute::exit_for;
use super::setup::{connect, ctrl_c_channel, emulator_run_meta, start_run};
use crate::cli::error::{CliError, Exit};
use crate::cli::output::{Bars, human_bytes, status_table};
use crate::cli::settings::{ConnSettings, DemoSettings};
use crate::discovery::discover;
use crate::engine::{Engine, EngineOptions, Progress};
use crate::model::ResourceId;
use crate::step::{Outcome, VmRecord};

/// The demo's poll interval (the emulator runs 1000x faster than Azure).
const DEMO_POLL_SECS: f64 = 0.2;

/// `ade2eah demo`.
pub async fn demo(a: DemoSettings) -> Result<Exit, CliError> {
    let started = Instant::now();
    let emu = crate::emulator::start(a.emulator.clone())
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
        a.emulator.time_scale,
        vms.len()
    );
    let poll = Duration::from_secs_f64(DEMO_POLL_SECS);
    let conn = ConnSettings::emulator(&emu.base_url(), poll)?;
    let cloud = connect(&conn, None, poll).await?.with_copy(a.copy.clone());
    let client = cloud.client().clone();
    let new = start_run(state)?;
    let discovered = discover(&cloud, &vms, &Default::default())
        .await
        .map_err(|e| CliError::Failed(e.to_string()))?;
    let meta = emulator_run_meta(&emu, poll, 8, vms.clone());
    let records: Vec<VmRecord> = discovered.into_iter().map(|(r, _)| r).collect();
    let (journal, entries) = new.begin(&meta, &records)?;
    let bars: Arc<dyn Progress> = Arc::new(Bars::new());
    let opts = EngineOptions::for_cloud(poll, &cloud);
    let engine = Engine::new(
        Arc::new(cloud),
        journal.clone(),
        meta.run_id.clone(),
        opts,
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
        human_bytes(copied),
        human_bytes(size),
        if size > 0 {
            copied as f64 * 100.0 / size as f64
        } else {
            0.0
        },
    );
    emu.shutdown().await;
    Ok(exit_for(&entries))
}
