//! The engine's side of a rollback ([`crate::step::rollback`]): the one VM
//! loop of [`Engine`] runs a record's rollback steps instead of its forward
//! steps while the record carries a rollback, with the same observe →
//! decide → journal intent → act → journal result cycle, the same failpoints
//! (named `rollback-<step>` where the forward ones name the step), retries
//! and parking. Here: the dispatch between the two state machines, the
//! switch to an automatic rollback, and the operator's request.

use serde_json::{Value, json};

use super::Engine;
use crate::journal::{Journal, JournalError};
use crate::model::ResourceId;
use crate::step::rollback::{self, Begin, Request, RollbackStep, Trigger};
use crate::step::{Decision, Needs, Observation, VmRecord, decide, needs};

/// The name of where `rec` stands: its forward step, or `rollback-<step>`
/// while it rolls back (failpoints, NIC-hold windows).
pub fn phase(rec: &VmRecord) -> String {
    match &rec.rollback {
        Some(rb) => format!("rollback-{}", rb.step.name()),
        None => rec.step.name().to_string(),
    }
}

/// The reads the current step needs (forward or rollback).
pub fn needs_of(rec: &VmRecord) -> Needs {
    if rec.rollback.is_some() {
        rollback::needs(rec)
    } else {
        needs(rec)
    }
}

/// The decision at the current step (forward or rollback).
pub fn decide_of(rec: &VmRecord, obs: &Observation, run_id: &str) -> Decision {
    if rec.rollback.is_some() {
        rollback::decide_rollback(rec, obs, run_id)
    } else {
        decide(rec, obs, run_id)
    }
}

/// Moves `rec` to its next step (forward or rollback); returns the
/// journal detail of the advance.
pub fn advance(rec: &mut VmRecord) -> Value {
    rec.attempts = 0;
    if let Some(rb) = rec.rollback.as_mut() {
        let from = rb.step;
        rb.step = rb.step.next();
        return json!({"rollback": true, "from": from, "to": rb.step});
    }
    let from = rec.step;
    rec.step = rec.step.next();
    json!({"from": from, "to": rec.step})
}

/// The reason of a rollback that reached its end, if `rec`'s has.
pub fn finished(rec: &VmRecord) -> Option<String> {
    rec.rollback
        .as_ref()
        .filter(|rb| rb.step == RollbackStep::Done)
        .map(|rb| rb.reason.clone())
}

impl Engine {
    /// Starts a rollback instead of parking `rec` when its policy asks for
    /// one ([`rollback::auto_rollback`]); journals the switch. Returns true
    /// when the VM now rolls back.
    pub(super) fn roll_back_instead(
        &self,
        rec: &mut VmRecord,
        trigger: Trigger,
        reason: &str,
    ) -> Result<bool, JournalError> {
        let reason = crate::model::redact(reason);
        if !rollback::auto_rollback(rec, trigger, &reason) {
            return Ok(false);
        }
        tracing::warn!(vm = %rec.id, %reason, "rolling back automatically");
        self.record(
            rec,
            "rollback",
            json!({"automatic": true, "reason": reason, "from": rec.step}),
        )?;
        Ok(true)
    }
}

/// Puts each of `vms` into rollback as the operator asked (`ade2eah
/// rollback`) and journals the request; returns what happened to each.
/// If any is [`Begin::Refused`], nothing is written at all.
pub fn request(
    journal: &Journal,
    vms: &[ResourceId],
    req: &Request,
) -> Result<Vec<(ResourceId, Begin)>, JournalError> {
    let mut records = Vec::with_capacity(vms.len());
    for id in vms {
        records.push(journal.get(id)?);
    }
    let begun: Vec<Begin> = records
        .iter_mut()
        .map(|rec| rollback::begin(rec, "rollback requested by the operator", req))
        .collect();
    if !begun.iter().any(|b| matches!(b, Begin::Refused(_))) {
        for (rec, b) in records.iter_mut().zip(&begun) {
            if *b == Begin::Started {
                let detail = json!({"automatic": false, "force": req.force, "reenable_ade": req.reenable_ade, "from": rec.step});
                rec.note(
                    crate::journal::now_rfc3339(),
                    "rollback",
                    detail.to_string(),
                );
                journal.write(rec, "rollback", detail)?;
            }
        }
    }
    Ok(records.into_iter().map(|r| r.id).zip(begun).collect())
}
