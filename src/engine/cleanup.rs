//! The runner of `ade2eah cleanup`: for every verified VM of a journal,
//! observe each resource the journal owns (a fresh GET), ask the pure
//! selection ([`crate::step::cleanup`]) what may go, and delete it:
//! intent journaled (flushed) before the DELETE, result after. A crash
//! leaves at most one intent without result; the next cleanup observes the
//! resource again and deletes it again or finds it gone (success).
//!
//! Without `delete` (the dry run) it sends no mutating request and writes
//! nothing: it lists what a `--yes` run would delete now.

use std::time::Duration;

use serde::Serialize;
use serde_json::json;
use time::OffsetDateTime;

use crate::cloud::Cloud;
use crate::failpoint;
use crate::journal::{Journal, JournalError, now_rfc3339};
use crate::model::ResourceId;
use crate::step::cleanup::{
    AdeKeys, CleanupState, Judged, Seen, Verdict, ade_keys, journaled_state, select, set_state,
};
use crate::step::{Outcome, VmRecord};

/// What one cleanup does.
#[derive(Debug, Clone)]
pub struct CleanupOptions {
    /// The journal's run id (snapshots must carry it as `ade2eah-run`).
    pub run_id: String,
    /// Now (retention is measured against it).
    pub now: OffsetDateTime,
    /// How long after verification resources are kept.
    pub retention: Duration,
    /// Delete (`--yes`); otherwise only list.
    pub delete: bool,
}

/// What happened (or would happen) to one owned resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CleanupLine {
    /// The VM it belongs to.
    pub vm: ResourceId,
    /// `round-snapshot`, `backup-snapshot` or `source-disk`.
    pub kind: &'static str,
    /// The resource.
    pub id: ResourceId,
    /// `would-delete`, `deleted`, `gone`, `done` (cleaned before), `keep`, `error`.
    pub action: &'static str,
    /// Why it is kept, or the error.
    pub reason: Option<String>,
}

/// The ADE key material of one VM and whether it is still needed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyLine {
    /// The VM.
    pub vm: ResourceId,
    /// Its outcome label.
    pub outcome: &'static str,
    /// The journaled key vaults, vault URLs, KEKs and disk secrets.
    pub keys: AdeKeys,
    /// True when nothing of this VM can need them any more: it is verified
    /// and every original disk and backup snapshot of it is gone.
    pub no_longer_needed: bool,
}

/// A whole cleanup.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CleanupReport {
    /// True when deletions were made (`--yes`).
    pub deleted: bool,
    /// One line per owned resource of every verified VM.
    pub lines: Vec<CleanupLine>,
    /// VMs whose resources are never cleaned (not verified), by outcome.
    pub not_verified: usize,
    /// ADE key material of every VM that has some.
    pub keys: Vec<KeyLine>,
    /// Key vaults no VM of this journal needs any more (candidates to
    /// turn `enabledForDiskEncryption` off, if nothing outside the run uses them).
    pub vaults_no_longer_needed: Vec<String>,
}

impl CleanupReport {
    /// Lines that failed.
    pub fn errors(&self) -> usize {
        self.lines.iter().filter(|l| l.action == "error").count()
    }
}

/// Runs a cleanup over every VM of `journal`, one at a time. `journal` must
/// be open for writing when `opts.delete`.
pub async fn run_cleanup(
    cloud: &dyn Cloud,
    journal: &Journal,
    opts: &CleanupOptions,
) -> Result<CleanupReport, JournalError> {
    let mut report = CleanupReport {
        deleted: opts.delete,
        ..Default::default()
    };
    let mut needed_vaults: Vec<String> = Vec::new();
    let mut all_vaults: Vec<String> = Vec::new();
    for entry in journal.index()? {
        let verified = entry.outcome == Outcome::Verified;
        if !verified {
            report.not_verified += 1;
        }
        let mut rec = journal.get(&entry.id)?;
        if verified {
            clean_vm(cloud, journal, opts, &mut rec, &mut report).await?;
        }
        let keys = ade_keys(&rec);
        if keys == AdeKeys::default() {
            continue;
        }
        let no_longer_needed = verified && originals_gone(&rec);
        for v in &keys.vaults {
            if !all_vaults.iter().any(|x| x.eq_ignore_ascii_case(v)) {
                all_vaults.push(v.clone());
            }
            if !no_longer_needed && !needed_vaults.iter().any(|x| x.eq_ignore_ascii_case(v)) {
                needed_vaults.push(v.clone());
            }
        }
        report.keys.push(KeyLine {
            vm: rec.id.clone(),
            outcome: rec.outcome.label(),
            keys,
            no_longer_needed,
        });
    }
    report.vaults_no_longer_needed = all_vaults
        .into_iter()
        .filter(|v| !needed_vaults.iter().any(|x| x.eq_ignore_ascii_case(v)))
        .collect();
    Ok(report)
}

/// True when every original disk and backup snapshot of `rec` was cleaned.
fn originals_gone(rec: &VmRecord) -> bool {
    rec.disks.iter().all(|d| {
        [&d.source, &d.snapshot]
            .into_iter()
            .all(|id| journaled_state(&rec.cleanup, id).is_some_and(CleanupState::is_done))
    })
}

async fn clean_vm(
    cloud: &dyn Cloud,
    journal: &Journal,
    opts: &CleanupOptions,
    rec: &mut VmRecord,
    report: &mut CleanupReport,
) -> Result<(), JournalError> {
    // Observe first: one fresh GET per candidate not cleaned before (the
    // selection then judges all of them together).
    let plan = select(rec, |_| None, &opts.run_id, opts.now, opts.retention);
    let mut seen = std::collections::BTreeMap::new();
    let mut failed = std::collections::BTreeMap::new();
    if plan.eligibility.allows() {
        for j in &plan.items {
            if j.verdict == Verdict::Done {
                continue;
            }
            match cloud.get_disk(&j.owned.id).await {
                Ok(body) => {
                    seen.insert(j.owned.id.key(), Seen::of(body.as_ref()));
                }
                Err(e) => {
                    failed.insert(j.owned.id.key(), e.message);
                }
            }
        }
    }
    let plan = select(
        rec,
        |id| seen.get(&id.key()).cloned(),
        &opts.run_id,
        opts.now,
        opts.retention,
    );
    for Judged { owned, verdict } in plan.items {
        let line = |action: &'static str, reason: Option<String>| CleanupLine {
            vm: rec.id.clone(),
            kind: owned.kind.label(),
            id: owned.id.clone(),
            action,
            reason,
        };
        if let Some(msg) = failed.get(&owned.id.key()) {
            report.lines.push(line("error", Some(msg.clone())));
            continue;
        }
        match verdict {
            Verdict::Done => report.lines.push(line("done", None)),
            Verdict::Keep(reason) => report.lines.push(line("keep", Some(reason))),
            Verdict::AlreadyGone => {
                if opts.delete {
                    set_state(&mut rec.cleanup, &owned, CleanupState::Gone, now_rfc3339());
                    journal.write(
                        rec,
                        "cleanup-result",
                        json!({"id": owned.id, "kind": owned.kind, "gone": true}),
                    )?;
                }
                report.lines.push(line("gone", None));
            }
            Verdict::Delete if !opts.delete => report.lines.push(line("would-delete", None)),
            Verdict::Delete => {
                set_state(
                    &mut rec.cleanup,
                    &owned,
                    CleanupState::Deleting,
                    now_rfc3339(),
                );
                journal.write(
                    rec,
                    "cleanup-intent",
                    json!({"id": owned.id, "kind": owned.kind}),
                )?;
                failpoint::hit("after-intent:cleanup-delete");
                match cloud.delete_disk(&owned.id).await {
                    Ok(()) => {
                        failpoint::hit("after-act:cleanup-delete");
                        set_state(
                            &mut rec.cleanup,
                            &owned,
                            CleanupState::Deleted,
                            now_rfc3339(),
                        );
                        journal.write(
                            rec,
                            "cleanup-result",
                            json!({"id": owned.id, "kind": owned.kind, "ok": true}),
                        )?;
                        report.lines.push(line("deleted", None));
                    }
                    Err(e) => {
                        journal.write(
                            rec,
                            "cleanup-error",
                            json!({"id": owned.id, "kind": owned.kind, "transient": e.is_transient(), "code": e.code, "message": e.message}),
                        )?;
                        report.lines.push(line("error", Some(e.message)));
                    }
                }
            }
        }
    }
    Ok(())
}
