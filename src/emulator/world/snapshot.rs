//! Snapshots share the disk model (`Disk` with `snapshot: true`) and the
//! handlers of disk.rs; this holds what tells them apart: which map a
//! request addresses, the not-found answer, creation by `Copy` (the snapshot
//! create option, also a disk one), and the one accessor for "a disk or a
//! snapshot" by id.

use super::*;

impl World {
    pub(super) fn disk_map(&self, snapshot: bool) -> &BTreeMap<String, Disk> {
        if snapshot {
            &self.snapshots
        } else {
            &self.disks
        }
    }

    pub(super) fn disk_map_mut(&mut self, snapshot: bool) -> &mut BTreeMap<String, Disk> {
        if snapshot {
            &mut self.snapshots
        } else {
            &mut self.disks
        }
    }

    /// The disk (or snapshot) `t`, or its not-found answer.
    pub(super) fn disk_of(&self, t: &Target, snapshot: bool) -> Result<&Disk, ArmError> {
        self.disk_map(snapshot)
            .get(&t.key())
            .ok_or_else(|| Self::disk_not_found(t, snapshot))
    }

    pub(super) fn disk_not_found(t: &Target, snapshot: bool) -> ArmError {
        not_found(
            if snapshot {
                "Microsoft.Compute/snapshots"
            } else {
                "Microsoft.Compute/disks"
            },
            &t.name,
            &t.rg,
        )
    }

    /// The disk or snapshot with id (or key) `id`: the one lookup for "a
    /// disk or a snapshot" (disks first).
    pub(super) fn disk_or_snapshot(&self, id: &str) -> Option<&Disk> {
        let k = key_of(id);
        self.disks.get(&k).or_else(|| self.snapshots.get(&k))
    }

    /// `createOption: Copy` (the snapshot create option, also one for disks):
    /// the source disk or snapshot's blob cloned, with its size, lineage,
    /// ADE state and OS properties.
    pub(super) fn create_copy(
        &mut self,
        d: &mut Disk,
        creation: &Value,
        snapshot: bool,
    ) -> Result<(), ArmError> {
        let Some(src) = creation.get("sourceResourceId").and_then(Value::as_str) else {
            return Err(ArmError::bad_request(
                "InvalidParameter",
                "Required parameter 'creationData.sourceResourceId' is missing (null).",
            )
            .with_target("sourceResourceId"));
        };
        let Some(source) = self.disk_or_snapshot(src).cloned() else {
            return Err(not_found_id(src));
        };
        if source.provisioning != "Succeeded" && source.provisioning != "Updating" {
            return Err(ArmError::conflict(format!(
                "The source '{src}' is not available (provisioningState '{}').",
                source.provisioning
            )));
        }
        if !snapshot
            && d.security
                .as_ref()
                .and_then(|s| s.get("securityType"))
                .and_then(Value::as_str)
                .is_some_and(|s| s.eq_ignore_ascii_case("TrustedLaunch"))
        {
            return Err(ArmError::bad_request(
                "BadRequest",
                "Security Type 'TrustedLaunch' is not supported for CreateOption 'Copy'. Supported create options are FromImage, Import, ImportSecure, UploadPreparedSecure.",
            ));
        }
        let blob = source.blob.as_ref().and_then(|b| self.blobs.clone_blob(b));
        if blob.is_none() {
            return Err(ArmError::new(
                500,
                "InternalServerError",
                "The source's storage could not be copied.",
            ));
        }
        d.blob = blob;
        d.size_bytes = source.size_bytes;
        d.source_id = Some(source.id.clone());
        d.source_unique = Some(source.unique_id.clone());
        d.ever_ade = source.ever_ade;
        d.ade_enabled = source.ade_enabled;
        d.guest_encrypted = source.guest_encrypted;
        d.key_vault = source.key_vault.clone();
        d.os_type = d.os_type.take().or(source.os_type.clone());
        d.hyper_v = d.hyper_v.take().or(source.hyper_v.clone());
        d.purchase_plan = d.purchase_plan.take().or(source.purchase_plan.clone());
        if snapshot {
            d.security = d.security.take().or(source.security.clone());
        }
        if d.zones.is_none() && !snapshot {
            d.zones = None;
        }
        d.create_option = "Copy".into();
        Ok(())
    }
}
