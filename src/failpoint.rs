//! Named crash points for the crash tests.
//!
//! Inert unless the environment variable `ADE2EAH_FAILPOINTS` is set when the
//! process starts. Its value is a comma-separated list of `name` or `name@N`
//! (abort at the N-th hit, default 1). A hit aborts the process on the spot
//! (`std::process::abort`): no destructors, no flush, exactly like a kill.
//!
//! A crate-root module that imports nothing of the crate, so every layer
//! (engine, copy) can name its crash points.
//!
//! Names used by the engine:
//! - `before-intent:<action>`, `after-intent:<action>`: around the journal
//!   write of an action's intent;
//! - `after-act:<action>`: after the Azure call returned, before its result is
//!   journaled;
//! - `after-journal:<kind>:<step>`: after any journal write;
//! - `copy:after-grant`, `copy:after-copy`: inside the disk copy action.
//!
//! Tracing: with `ADE2EAH_FAILPOINTS_TRACE=<file>` every hit is appended to
//! `<file>` as one line `name@N` (N = the hit's count for that name), so a
//! test can enumerate every crash point of a run and arm each one.
//!
//! Cost: failpoints are compiled into every build, release included (the
//! crash sweep drives the real binary), and are **inert** when neither
//! variable is set: [`hit`] is then one initialised-`OnceLock` load and a
//! `None` check. The only other cost is the caller's `format!` of the name,
//! once per journal write or action (microseconds, next to an fsync and an
//! HTTP round trip). The variables are read once, at the first hit.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

/// Environment variable that arms failpoints.
pub const ENV: &str = "ADE2EAH_FAILPOINTS";
/// Environment variable naming a file to which every hit is appended.
pub const TRACE_ENV: &str = "ADE2EAH_FAILPOINTS_TRACE";

struct Armed {
    targets: HashMap<String, u64>,
    hits: Mutex<HashMap<String, u64>>,
    trace: Option<Mutex<std::fs::File>>,
}

fn armed() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let spec = std::env::var(ENV).ok().filter(|s| !s.trim().is_empty());
            let trace = std::env::var_os(TRACE_ENV)
                .filter(|s| !s.is_empty())
                .and_then(|p| {
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(p)
                        .ok()
                });
            if spec.is_none() && trace.is_none() {
                return None;
            }
            let targets = spec
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| match s.rsplit_once('@') {
                    Some((name, n)) => (name.to_string(), n.parse().unwrap_or(1)),
                    None => (s.to_string(), 1),
                })
                .collect();
            Some(Armed {
                targets,
                hits: Mutex::new(HashMap::new()),
                trace: trace.map(Mutex::new),
            })
        })
        .as_ref()
}

/// Marks a crash point. Aborts the process if `name` is armed and this is
/// the configured hit; otherwise does nothing.
pub fn hit(name: &str) {
    let Some(a) = armed() else { return };
    let target = a.targets.get(name).copied();
    if target.is_none() && a.trace.is_none() {
        return;
    }
    let mut hits = a.hits.lock().unwrap_or_else(|p| p.into_inner());
    let n = hits.entry(name.to_string()).or_insert(0);
    *n += 1;
    if let Some(f) = &a.trace {
        use std::io::Write;
        let mut f = f.lock().unwrap_or_else(|p| p.into_inner());
        let _ = writeln!(f, "{name}@{n}");
        let _ = f.flush();
    }
    if Some(*n) == target {
        eprintln!("ade2eah: failpoint {name} hit; aborting");
        std::process::abort();
    }
}
