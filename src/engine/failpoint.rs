//! Named crash points for the crash tests.
//!
//! Inert unless the environment variable `ADE2EAH_FAILPOINTS` is set when the
//! process starts. Its value is a comma-separated list of `name` or `name@N`
//! (abort at the N-th hit, default 1). A hit aborts the process on the spot
//! (`std::process::abort`): no destructors, no flush, exactly like a kill.
//!
//! Names used by the engine:
//! - `before-intent:<action>`, `after-intent:<action>`: around the journal
//!   write of an action's intent;
//! - `after-act:<action>`: after the Azure call returned, before its result is
//!   journaled;
//! - `after-journal:<kind>:<step>`: after any journal write;
//! - `copy:after-grant`, `copy:after-copy`: inside the disk copy action.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

/// Environment variable that arms failpoints.
pub const ENV: &str = "ADE2EAH_FAILPOINTS";

struct Armed {
    targets: HashMap<String, u64>,
    hits: Mutex<HashMap<String, u64>>,
}

fn armed() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let spec = std::env::var(ENV).ok().filter(|s| !s.trim().is_empty())?;
            let targets = spec
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
            })
        })
        .as_ref()
}

/// Marks a crash point. Aborts the process if `name` is armed and this is
/// the configured hit; otherwise does nothing.
pub fn hit(name: &str) {
    let Some(a) = armed() else { return };
    let Some(&target) = a.targets.get(name) else {
        return;
    };
    let mut hits = a.hits.lock().unwrap_or_else(|p| p.into_inner());
    let n = hits.entry(name.to_string()).or_insert(0);
    *n += 1;
    if *n == target {
        eprintln!("ade2eah: failpoint {name} hit; aborting");
        std::process::abort();
    }
}
