//! Read every selected VM (read-only), classify it, and build the initial
//! journal records ([`discover`]); [`classify_all`] does it in parallel
//! chunks for `plan`, turning each record into the plan's view. Sends no
//! mutating request.

use std::collections::{BTreeMap, HashMap};

use futures::StreamExt;
use serde_json::{Value, json};

use crate::cloud::{Cloud, CloudError};
use crate::model::ResourceId;
use crate::model::views::VmModel;
use crate::plan::PlannedVm;
use crate::plan::select::{PlanError, planned};
use crate::step::rebuild::{MigrationPath, RebuildOptions};
use crate::step::{Eligibility, Outcome, PlatformFacts, VmRecord, classify};

/// Why discovery could not produce a plan.
#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    /// A selected VM does not exist (bad input).
    #[error("VM {0} was not found (check the id, subscription and your access)")]
    UnknownVm(ResourceId),
    /// An id is not a VM id (bad input).
    #[error(
        "{0} is not a virtual machine id (expected .../providers/Microsoft.Compute/virtualMachines/NAME)"
    )]
    NotAVm(ResourceId),
    /// Azure kept failing while reading.
    #[error("reading {what} failed: {err}")]
    Cloud { what: String, err: CloudError },
}

/// Transient read failures tolerated per discovery read (a malformed body,
/// throttling or 5xx the client's own retries did not absorb).
const DISCOVERY_RETRIES: u32 = 5;

/// Runs a read, retrying transient failures [`DISCOVERY_RETRIES`] times
/// (waiting the server's `Retry-After`, capped at 30 s, else 200 ms × attempt).
async fn retried<T, Fut>(mut read: impl FnMut() -> Fut) -> Result<T, CloudError>
where
    Fut: std::future::Future<Output = Result<T, CloudError>>,
{
    let mut attempt = 0;
    loop {
        match read().await {
            Err(e) if e.is_transient() && attempt < DISCOVERY_RETRIES => {
                attempt += 1;
                let wait = e
                    .retry_after
                    .unwrap_or(std::time::Duration::from_millis(200 * u64::from(attempt)))
                    .min(std::time::Duration::from_secs(30));
                tracing::info!(attempt, ?wait, error = %e, "retrying a discovery read");
                tokio::time::sleep(wait).await;
            }
            r => return r,
        }
    }
}

/// What discovery does beyond reading: carry role assignments, rebuild
/// Linux OS volumes.
#[derive(Debug, Clone)]
pub struct DiscoverOptions {
    /// Re-create the system-assigned principal's role assignments for the
    /// new principal (`--carry-role-assignments`, the default).
    pub carry_roles: bool,
    /// `--rebuild-linux-os`: Linux VMs whose OS volume is ADE-encrypted are
    /// rebuilt from an image instead of skipped.
    pub rebuild: Option<RebuildOptions>,
}

impl Default for DiscoverOptions {
    fn default() -> Self {
        DiscoverOptions {
            carry_roles: true,
            rebuild: None,
        }
    }
}

/// Reads and classifies `vms`, returning one record per VM (skipped ones
/// carry their reason) plus the migration path label of each. For eligible
/// VMs it also journals what the re-created VM must get back
/// ([`crate::step::reinstall::Carried`]): the extensions and the role
/// assignments of the system-assigned principal (re-created when
/// `opts.carry_roles`).
pub async fn discover(
    cloud: &dyn Cloud,
    vms: &[ResourceId],
    opts: &DiscoverOptions,
) -> Result<Vec<(VmRecord, String)>, DiscoverError> {
    for id in vms {
        if !id.is_type("Microsoft.Compute", "virtualMachines") {
            return Err(DiscoverError::NotAVm(id.clone()));
        }
    }
    let mut features: HashMap<String, bool> = HashMap::new();
    let mut sizes: HashMap<(String, String, String), (Option<bool>, bool)> = HashMap::new();
    let mut out = Vec::new();
    for id in vms {
        let cloud_err = |what: String| move |err| DiscoverError::Cloud { what, err };
        let vm = retried(|| cloud.get_vm_model(id))
            .await
            .map_err(cloud_err(format!("VM {id}")))?
            .ok_or_else(|| DiscoverError::UnknownVm(id.clone()))?;
        let sub = id.subscription().to_string();
        let registered = match features.get(&sub) {
            Some(r) => *r,
            None => {
                let r = retried(|| cloud.eah_feature_registered(&sub))
                    .await
                    .map_err(cloud_err(format!("feature EncryptionAtHost in {sub}")))?;
                features.insert(sub.clone(), r);
                r
            }
        };
        let model = VmModel::new(&vm);
        let location = model.location().unwrap_or_default().to_string();
        let size = model.properties().vm_size().unwrap_or_default().to_string();
        let key = (
            sub.clone(),
            location.to_ascii_lowercase(),
            size.to_ascii_lowercase(),
        );
        let (supports, restricted) = match sizes.get(&key) {
            Some(v) => *v,
            None => {
                let v = retried(|| cloud.size_support(&sub, &location, &size))
                    .await
                    .map_err(cloud_err(format!("resource SKUs in {location}")))?;
                sizes.insert(key, v);
                v
            }
        };
        let mut disks = BTreeMap::new();
        for disk_id in disk_ids(&vm) {
            if let Some(d) = retried(|| cloud.get_disk(&disk_id))
                .await
                .map_err(cloud_err(format!("disk {disk_id}")))?
            {
                disks.insert(disk_id.key(), d);
            }
        }
        let platform = PlatformFacts {
            feature_registered: registered,
            size_supports_eah: supports,
            size_restricted: restricted,
            rebuild_linux_os: opts.rebuild.clone(),
        };
        let mut rec = VmRecord::new(id.clone());
        let path = match classify(&vm, &disks, &platform) {
            Eligibility::Eligible { facts, disks } => {
                let path = crate::step::eligibility::path_label(&facts, &disks).to_string();
                if facts.rebuild.is_some() {
                    rec.path = MigrationPath::RebuildLinuxOs;
                }
                rec.facts = Some(facts);
                rec.disks = disks;
                rec.ade_sequence = Some(uuid::Uuid::new_v4().to_string());
                rec.carried = carried(cloud, id, &vm, opts.carry_roles).await?;
                path
            }
            Eligibility::Skip { path, reason } => {
                rec.outcome = Outcome::Skipped { reason };
                path.to_string()
            }
        };
        // The full original model, captured before anything can change it.
        rec.original_model = Some(vm);
        rec.note(
            crate::journal::now_rfc3339(),
            "discover",
            json!({"path": path}).to_string(),
        );
        out.push((rec, path));
    }
    Ok(out)
}

/// What the re-created VM must get back, read before anything changes:
/// the extensions from the model's `resources[]` (or, when the model has
/// none, from the extension list), and the role assignments of its
/// system-assigned principal. A refused role-assignment read (no
/// `roleAssignments/read`) is recorded for the operator, not fatal.
async fn carried(
    cloud: &dyn Cloud,
    id: &ResourceId,
    vm: &Value,
    carry_roles: bool,
) -> Result<crate::step::reinstall::Carried, DiscoverError> {
    use crate::step::reinstall::{Carried, RoleGrant, plan_extensions};
    let listed =
        if vm.get("resources").is_none() {
            Some(retried(|| cloud.list_extensions(id)).await.map_err(|err| {
                DiscoverError::Cloud {
                    what: format!("extensions of {id}"),
                    err,
                }
            })?)
        } else {
            None
        };
    let (extensions, manual) = plan_extensions(vm, listed.as_deref());
    let mut out = Carried {
        extensions,
        manual,
        carry_roles,
        ..Carried::default()
    };
    let model = VmModel::new(vm);
    let principal = model
        .identity()
        .filter(|i| {
            i.kind()
                .is_some_and(|k| k.to_ascii_lowercase().contains("systemassigned"))
        })
        .and_then(|i| i.principal_id())
        .map(str::to_string);
    if let Some(p) = &principal {
        match retried(|| cloud.list_role_assignments(id.subscription(), p)).await {
            Ok(list) => {
                out.roles = list
                    .iter()
                    .filter(|a| {
                        a.pointer("/properties/principalId")
                            .and_then(Value::as_str)
                            .is_some_and(|x| x.eq_ignore_ascii_case(p))
                    })
                    .filter_map(RoleGrant::from_raw)
                    .collect();
            }
            Err(e) => out.roles_unread = Some(e.message),
        }
    }
    out.old_principal = principal;
    Ok(out)
}

fn disk_ids(vm: &Value) -> Vec<ResourceId> {
    VmModel::new(vm)
        .attached_disk_ids()
        .into_iter()
        .filter_map(|s| ResourceId::parse(s).ok())
        .collect()
}

fn map_discover(e: DiscoverError) -> PlanError {
    match e {
        DiscoverError::UnknownVm(_) | DiscoverError::NotAVm(_) => {
            PlanError::BadInput(e.to_string())
        }
        DiscoverError::Cloud { .. } => PlanError::Failed(e.to_string()),
    }
}

/// What [`classify_all`] answers: the planned VMs and the ids not found.
pub type Classified = Result<(Vec<PlannedVm>, Vec<ResourceId>), PlanError>;

/// Re-reads and classifies `ids` (chunks in parallel). Ids that no longer
/// exist are returned in the second list when `allow_missing`, else bad input.
pub async fn classify_all(
    cloud: &dyn Cloud,
    ids: &[ResourceId],
    allow_missing: bool,
    opts: &DiscoverOptions,
) -> Classified {
    const CHUNK: usize = 16;
    let chunks: Vec<Vec<ResourceId>> = ids.chunks(CHUNK).map(<[ResourceId]>::to_vec).collect();
    let results: Vec<Classified> =
        futures::stream::iter(chunks.into_iter().map(|mut chunk| async move {
            let mut missing = Vec::new();
            loop {
                match discover(cloud, &chunk, opts).await {
                    Ok(found) => {
                        let vms = found
                            .into_iter()
                            .map(|(rec, path)| planned(rec, path))
                            .collect();
                        return Ok((vms, missing));
                    }
                    Err(DiscoverError::UnknownVm(id)) if allow_missing => {
                        chunk.retain(|c| c.key() != id.key());
                        missing.push(id);
                    }
                    Err(e) => return Err(map_discover(e)),
                }
            }
        }))
        .buffer_unordered(8)
        .collect()
        .await;
    let mut vms = Vec::new();
    let mut missing = Vec::new();
    for r in results {
        let (v, m) = r?;
        vms.extend(v);
        missing.extend(m);
    }
    vms.sort_by_key(|v| v.id.key());
    Ok((vms, missing))
}
