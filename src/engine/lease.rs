//! Azure-side lease: one run per VM, whatever journal it uses.
//!
//! The journal lock stops two processes on the *same* journal. Two runs with
//! *different* journals could still pick the same VM; the lease stops that on
//! the Azure side, where both runs look.
//!
//! - The lease is a tag on the VM: `ade2eah-lease: <run_id>;<expiry RFC 3339>`.
//! - [`LeaseKeeper`] is called by the engine before every action that
//!   changes the VM ([`DESTRUCTIVE`]: disable ADE, remove the extension,
//!   deallocate, set deleteOption, delete, re-create, start), before its
//!   intent is journaled. It GETs the VM and reads the tag:
//!   - held by another run and not expired → the call is refused with a
//!     terminal `LeaseHeld` error; the VM parks with the holder, the expiry
//!     and the remedy (wait, or `--break-lease` if that run is dead);
//!   - absent, expired, ours with less than half its life left, or
//!     `--break-lease` → the tag is (re)written with a PATCH carrying the full
//!     tag set (so it works whether Azure merges or replaces tags), then the
//!     call goes ahead.
//! - The first destructive step therefore takes the lease. The VM DELETE
//!   drops it with the VM. While the VM is gone the journal carries it: only
//!   the run that journaled the DELETE reaches `create-vm` (step order), and
//!   right after the re-create succeeds the keeper writes the lease onto the
//!   new VM, so it survives the re-creation.
//! - When a VM ends (verified, rolled back) its lease is *released*: the
//!   tag is removed, so the VM's tags are key for key what they were before
//!   the run. The release happens before the end is journaled: a crash in
//!   between leaves the tag until the next `resume` (or rollback) ends that
//!   VM. A parked VM keeps the lease (it is still mid-migration and another
//!   journal must not pick it up).
//! - The check is not atomic (ARM tags have no compare-and-swap here): two
//!   runs starting within one GET/PATCH round trip could both pass once; the
//!   re-check before the next destructive step then parks the loser. Runs
//!   from one operator are minutes apart in practice.
//! - Time is the local UTC clock; the TTL ([`DEFAULT_TTL`]) is long against
//!   clock skew.

use std::time::Duration;

use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::cloud::{Cloud, CloudError, CloudResult, Retry};
use crate::model::ResourceId;
use crate::model::views::VmModel;

/// The tag carrying the lease (defined with the other tags the core reads).
pub use crate::step::observe::LEASE_TAG;
/// Lease lifetime (renewed at every destructive step past half of it); the
/// journal owns the value because it stores the run's lease settings.
pub const DEFAULT_TTL: Duration = crate::journal::DEFAULT_LEASE_TTL;

/// A parsed lease tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The run holding it.
    pub run_id: String,
    /// When it lapses.
    pub expiry: OffsetDateTime,
}

impl Lease {
    /// Parses `<run_id>;<RFC 3339>`; `None` if malformed.
    pub fn parse(s: &str) -> Option<Lease> {
        let (run, exp) = s.split_once(';')?;
        let run = run.trim();
        if run.is_empty() {
            return None;
        }
        let expiry = OffsetDateTime::parse(exp.trim(), &Rfc3339).ok()?;
        Some(Lease {
            run_id: run.to_string(),
            expiry,
        })
    }

    /// The tag value.
    pub fn value(&self) -> String {
        format!(
            "{};{}",
            self.run_id,
            self.expiry
                .format(&Rfc3339)
                .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
        )
    }
}

/// What to do about a VM's current lease tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Ours with enough life left: go ahead.
    Held,
    /// Absent, expired, ours but ageing, or broken: (re)write it, then go ahead.
    Take,
    /// Someone else's (or unreadable) and live: refuse.
    Refuse(String),
}

/// Pure decision on a lease tag value.
pub fn judge(
    tag: Option<&str>,
    run_id: &str,
    now: OffsetDateTime,
    ttl: Duration,
    break_lease: bool,
) -> Verdict {
    let Some(raw) = tag else {
        return Verdict::Take;
    };
    match Lease::parse(raw) {
        Some(l) if l.run_id == run_id => {
            if l.expiry - now > ttl / 2 {
                Verdict::Held
            } else {
                Verdict::Take
            }
        }
        _ if break_lease => Verdict::Take,
        Some(l) if l.expiry <= now => Verdict::Take,
        Some(l) => Verdict::Refuse(format!(
            "the VM is leased by another ade2eah run {} until {} (tag {LEASE_TAG}); that run uses another journal. Wait for it to finish, or if it is dead pass --break-lease to `ade2eah resume`",
            l.run_id,
            l.expiry.format(&Rfc3339).unwrap_or_default()
        )),
        None => Verdict::Refuse(format!(
            "the VM's {LEASE_TAG} tag is unreadable ({:?}); another tool may be using it. Check, then pass --break-lease to `ade2eah resume` to take it over",
            raw.chars().take(80).collect::<String>()
        )),
    }
}

/// Actions that change the VM itself; the lease is checked before each.
pub const DESTRUCTIVE: [&str; 10] = [
    "disable-ade",
    "remove-extension",
    "deallocate",
    "set-detach",
    "delete-vm",
    "create-vm",
    "start-vm",
    "restore-vm",
    "restore-delete-options",
    "reenable-ade",
];

/// True when `action` (an [`crate::step::Action::name`]) changes the VM.
pub fn is_destructive(action: &str) -> bool {
    DESTRUCTIVE.contains(&action)
}

/// Checks, takes, renews and releases the lease for one run.
#[derive(Debug, Clone)]
pub struct LeaseKeeper {
    run_id: String,
    ttl: Duration,
    break_lease: bool,
}

impl LeaseKeeper {
    /// The keeper of run `run_id`.
    pub fn new(run_id: &str, ttl: Duration, break_lease: bool) -> Self {
        LeaseKeeper {
            run_id: run_id.to_string(),
            ttl,
            break_lease,
        }
    }

    fn fresh(&self) -> Lease {
        Lease {
            run_id: self.run_id.clone(),
            expiry: OffsetDateTime::now_utc() + self.ttl,
        }
    }

    /// Checks the lease of `vm` and takes or renews it. `Ok` means the caller
    /// may mutate the VM. A VM that does not exist (between our DELETE and
    /// re-create: the step order guarantees only the run that deleted it
    /// reaches `create-vm`) passes; the lease is taken again on the new VM by
    /// [`LeaseKeeper::after`].
    pub async fn ensure(&self, cloud: &dyn Cloud, vm: &ResourceId) -> CloudResult<()> {
        let Some(model) = cloud.get_vm(vm, false).await? else {
            return Ok(());
        };
        let tag = VmModel::new(&model).tag(LEASE_TAG);
        match judge(
            tag,
            &self.run_id,
            OffsetDateTime::now_utc(),
            self.ttl,
            self.break_lease,
        ) {
            Verdict::Held => Ok(()),
            Verdict::Refuse(message) => Err(CloudError {
                retry: Retry::Terminal,
                code: Some("LeaseHeld".into()),
                message,
                retry_after: None,
            }),
            Verdict::Take => {
                let mut tags = VmModel::new(&model)
                    .tag_map()
                    .cloned()
                    .map_or_else(|| json!({}), Value::Object);
                tags[LEASE_TAG] = Value::String(self.fresh().value());
                cloud.patch_vm(vm, &json!({ "tags": tags })).await
            }
        }
    }

    /// Before an action: checks the lease when the action is destructive.
    pub async fn before(
        &self,
        cloud: &dyn Cloud,
        vm: &ResourceId,
        action: &str,
    ) -> CloudResult<()> {
        if is_destructive(action) {
            self.ensure(cloud, vm).await
        } else {
            Ok(())
        }
    }

    /// After a successful re-create: puts the lease on the new VM (best
    /// effort; the next destructive step would take it anyway).
    pub async fn after(&self, cloud: &dyn Cloud, vm: &ResourceId, action: &str) {
        if action == "create-vm"
            && let Err(e) = self.ensure(cloud, vm).await
        {
            tracing::warn!("re-taking the lease on {vm} after re-create failed: {e}");
        }
    }

    /// Removes this run's lease tag from `vm`, leaving every other tag as it
    /// is (PATCH with the full tag set minus [`LEASE_TAG`]; a PATCH's tags
    /// replace the VM's). Called when the VM ends (verified here, rolled
    /// back by the rollback runner) *before* that end is journaled, so a
    /// crash in between leaves the tag only until the next `resume` ends the
    /// VM again. A tag that is absent or held by another run is left alone.
    /// The VM's tags are then key for key what they were before the run
    /// (the re-create body carries the original tags, without the lease).
    pub async fn release_one(&self, cloud: &dyn Cloud, vm: &ResourceId) -> CloudResult<()> {
        let Some(model) = cloud.get_vm(vm, false).await? else {
            return Ok(());
        };
        let view = VmModel::new(&model);
        let ours = view
            .tag(LEASE_TAG)
            .and_then(Lease::parse)
            .is_some_and(|l| l.run_id == self.run_id);
        if !ours {
            return Ok(());
        }
        let mut tags = view.tag_map().cloned().unwrap_or_default();
        tags.remove(LEASE_TAG);
        cloud
            .patch_vm(vm, &json!({ "tags": Value::Object(tags) }))
            .await
    }

    /// [`LeaseKeeper::release_one`] for each VM, best effort (failures are
    /// logged).
    pub async fn release(&self, cloud: &dyn Cloud, vms: &[ResourceId]) {
        for vm in vms {
            if let Err(e) = self.release_one(cloud, vm).await {
                tracing::warn!("releasing the lease on {vm} failed: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-09-01 12:00 UTC);
    const TTL: Duration = Duration::from_secs(12 * 3600);

    #[test]
    fn lease_tag_round_trips_and_rejects_garbage() {
        let l = Lease {
            run_id: "r1".into(),
            expiry: NOW,
        };
        assert_eq!(l.value(), "r1;2026-09-01T12:00:00Z");
        assert_eq!(Lease::parse(&l.value()), Some(l));
        for bad in ["", ";", "r1", "r1;", ";2026-09-01T12:00:00Z", "r1;tomorrow"] {
            assert_eq!(Lease::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn judge_covers_every_case() {
        let live = "other;2026-09-01T20:00:00Z";
        let dead = "other;2026-09-01T11:00:00Z";
        let mine_fresh = "me;2026-09-01T23:00:00Z";
        let mine_old = "me;2026-09-01T13:00:00Z";
        assert_eq!(judge(None, "me", NOW, TTL, false), Verdict::Take);
        assert_eq!(
            judge(Some(mine_fresh), "me", NOW, TTL, false),
            Verdict::Held
        );
        assert_eq!(judge(Some(mine_old), "me", NOW, TTL, false), Verdict::Take);
        assert_eq!(judge(Some(dead), "me", NOW, TTL, false), Verdict::Take);
        assert!(
            matches!(judge(Some(live), "me", NOW, TTL, false), Verdict::Refuse(m) if m.contains("other") && m.contains("--break-lease"))
        );
        assert_eq!(judge(Some(live), "me", NOW, TTL, true), Verdict::Take);
        assert!(matches!(
            judge(Some("garbage"), "me", NOW, TTL, false),
            Verdict::Refuse(_)
        ));
        assert_eq!(judge(Some("garbage"), "me", NOW, TTL, true), Verdict::Take);
    }
}
