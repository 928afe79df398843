//! The state folder (`--state DIR`): the one owner of its file names and of
//! every write into it. Other layers (the wave executor, the CLI's live
//! view, `approve`) call these functions rather than touching the folder.
//!
//! Contents:
//! - [`DB_DIR`]: the sled database (written only through [`super::Journal`]);
//! - [`AUDIT_FILE`]: the append-only, fsync'd JSONL audit copy (same);
//! - [`OWNER_FILE`]: pid of the process holding the journal lock;
//! - [`PLAN_FILE`]: the frozen plan of a planned run (`run --plan`);
//! - [`PROGRESS_FILE`]: when each wave ended (for the soak time);
//! - [`APPROVALS_FILE`]: waves approved by `ade2eah approve` (a separate
//!   file so approving never contends for the journal lock);
//! - [`LIVE_FILE`]: the live view a running run writes for `status`.
//!
//! Every file other than the journal's is written whole and atomically
//! ([`write_atomic`]: a temporary file, then a rename), so a reader never
//! sees half a file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::plan::FrozenPlan;

/// The sled database directory.
pub const DB_DIR: &str = "db";
/// The JSONL audit copy of every journal event.
pub const AUDIT_FILE: &str = "journal.jsonl";
/// Pid of the journal's holder.
pub const OWNER_FILE: &str = "owner";
/// Held (an exclusive file lock) by the one process that writes the journal,
/// for as long as it has it open; readers (`status`, `report`) never hold it.
pub const WRITER_LOCK_FILE: &str = "writer.lock";
/// The frozen plan of a planned run.
pub const PLAN_FILE: &str = "fleet-plan.json";
/// Wave end times.
pub const PROGRESS_FILE: &str = "fleet-progress.json";
/// Approved waves.
pub const APPROVALS_FILE: &str = "approvals.json";
/// The live view of a running run.
pub const LIVE_FILE: &str = "live.json";
/// Structured logs (JSON lines) of the processes that wrote the journal,
/// rotated by size into `ade2eah.log.1` .. `ade2eah.log.N` (`super::log_file`).
pub const LOG_FILE: &str = "ade2eah.log";

/// Path of the log file in `dir`; `n > 0` names its n-th rotated copy.
pub fn log_path(dir: &Path, n: usize) -> PathBuf {
    if n == 0 {
        dir.join(LOG_FILE)
    } else {
        dir.join(format!("{LOG_FILE}.{n}"))
    }
}

/// Path of the sled database in `dir`.
pub fn db_path(dir: &Path) -> PathBuf {
    dir.join(DB_DIR)
}

/// Path of the audit copy in `dir`.
pub fn audit_path(dir: &Path) -> PathBuf {
    dir.join(AUDIT_FILE)
}

/// Path of the owner file in `dir`.
pub fn owner_path(dir: &Path) -> PathBuf {
    dir.join(OWNER_FILE)
}

/// Path of the writer's lock file in `dir`.
pub fn writer_lock_path(dir: &Path) -> PathBuf {
    dir.join(WRITER_LOCK_FILE)
}

/// True when `dir` holds a journal (a run was started there).
pub fn has_journal(dir: &Path) -> bool {
    db_path(dir).exists()
}

/// Writes `body` to `path` atomically: to `<path>.tmp`, then renamed over
/// `path`.
pub fn write_atomic(path: &Path, body: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, body)?;
    std::fs::rename(tmp, path)
}

fn read_json<T: for<'de> Deserialize<'de> + Default>(p: &Path) -> T {
    std::fs::read(p)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn write_json<T: Serialize>(p: &Path, v: &T) -> std::io::Result<()> {
    write_atomic(p, &serde_json::to_vec_pretty(v).unwrap_or_default())
}

/// Saves the frozen plan into `dir`.
pub fn save_plan(dir: &Path, plan: &FrozenPlan) -> std::io::Result<()> {
    write_json(&dir.join(PLAN_FILE), plan)
}

/// Loads the frozen plan from `dir` (`None` if this is not a planned run).
pub fn load_plan(dir: &Path) -> Option<FrozenPlan> {
    let b = std::fs::read(dir.join(PLAN_FILE)).ok()?;
    serde_json::from_slice(&b).ok()
}

/// True when `dir` holds a frozen plan.
pub fn has_plan(dir: &Path) -> bool {
    dir.join(PLAN_FILE).exists()
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct ProgressFile {
    /// wave → unix seconds it ended.
    #[serde(default)]
    ended_at: BTreeMap<usize, f64>,
}

/// When each wave of `dir`'s run ended (1-based wave → unix seconds).
pub fn wave_ends(dir: &Path) -> BTreeMap<usize, f64> {
    read_json::<ProgressFile>(&dir.join(PROGRESS_FILE)).ended_at
}

/// Saves when each wave ended.
pub fn save_wave_ends(dir: &Path, ended_at: &BTreeMap<usize, f64>) -> std::io::Result<()> {
    write_json(
        &dir.join(PROGRESS_FILE),
        &ProgressFile {
            ended_at: ended_at.clone(),
        },
    )
}

/// Waves approved so far in `dir`.
pub fn approvals(dir: &Path) -> BTreeSet<usize> {
    read_json::<Vec<usize>>(&dir.join(APPROVALS_FILE))
        .into_iter()
        .collect()
}

/// Approves wave `n` in `dir`.
pub fn approve(dir: &Path, n: usize) -> std::io::Result<()> {
    let mut a = approvals(dir);
    a.insert(n);
    write_json(
        &dir.join(APPROVALS_FILE),
        &a.into_iter().collect::<Vec<_>>(),
    )
}

/// Writes the live view's bytes into `dir` (atomically).
pub fn write_live(dir: &Path, body: &[u8]) -> std::io::Result<()> {
    write_atomic(&dir.join(LIVE_FILE), body)
}

/// The live view's bytes in `dir`, if a run wrote one.
pub fn read_live(dir: &Path) -> Option<Vec<u8>> {
    std::fs::read(dir.join(LIVE_FILE)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_writes_leave_no_temporary_file_and_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        approve(dir.path(), 2).unwrap();
        approve(dir.path(), 1).unwrap();
        assert_eq!(approvals(dir.path()), BTreeSet::from([1, 2]));
        let ends = BTreeMap::from([(1usize, 12.5f64)]);
        save_wave_ends(dir.path(), &ends).unwrap();
        assert_eq!(wave_ends(dir.path()), ends);
        write_live(dir.path(), b"{}").unwrap();
        assert_eq!(read_live(dir.path()).as_deref(), Some(&b"{}"[..]));
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
        assert!(!has_journal(dir.path()) && !has_plan(dir.path()));
    }
}
