//! Disk and snapshot access: `beginGetAccess` (grant a read or upload SAS)
//! and `endGetAccess` (revoke, which also ends an upload), with the effects
//! they make.

use super::*;

const MAX_SAS_SECS: u64 = 5_184_000;

impl World {
    /// `POST .../beginGetAccess`.
    pub(crate) fn grant(
        &mut self,
        t: &Target,
        body: Value,
        snapshot: bool,
        inject: bool,
        now: f64,
    ) -> Result<Reply, ArmError> {
        let key = t.key();
        let d = self.disk_of(t, snapshot)?;
        let access = body
            .get("access")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_ascii_lowercase();
        let access = match access.as_str() {
            "read" => SasAccess::Read,
            "write" => SasAccess::Write,
            _ => {
                return Err(ArmError::bad_request(
                    "InvalidParameter",
                    "The value of parameter 'access' must be 'Read' or 'Write'.",
                )
                .with_target("access"));
            }
        };
        let Some(secs) = body
            .get("durationInSeconds")
            .and_then(Value::as_u64)
            .filter(|s| *s > 0)
        else {
            return Err(ArmError::bad_request(
                "InvalidParameter",
                "Required parameter 'durationInSeconds' is missing or not a positive integer.",
            )
            .with_target("durationInSeconds"));
        };
        if secs > MAX_SAS_SECS {
            return Err(ArmError::bad_request(
                "InvalidParameter",
                format!("The value {secs} of parameter 'durationInSeconds' is out of range. The maximum SAS duration is {MAX_SAS_SECS} seconds (60 days)."),
            )
            .with_target("durationInSeconds"));
        }
        if d.provisioning != "Succeeded" {
            return Err(ArmError::conflict(format!(
                "Access cannot be granted on '{}' while its provisioning state is '{}'.",
                d.name, d.provisioning
            )));
        }
        // A disk whose network access policy is `DenyAll` cannot be
        // exported or imported through a SAS, and one with `AllowPrivate`
        // only through a private endpoint of its disk access, which a client
        // of this emulator never is (DiskRP `NetworkAccessPolicy` enum
        // descriptions; that the grant itself is refused is INFERRED, the
        // wording is the emulator's).
        if let Some(policy) = d
            .stored
            .get("networkAccessPolicy")
            .and_then(Value::as_str)
            .filter(|p| p.eq_ignore_ascii_case("DenyAll") || p.eq_ignore_ascii_case("AllowPrivate"))
        {
            return Err(ArmError::new(
                403,
                "AuthorizationFailed",
                format!(
                    "Access to '{}' through a SAS is not permitted by its networkAccessPolicy '{policy}'.",
                    d.name
                ),
            ));
        }
        match access {
            SasAccess::Read => {
                if d.upload.is_some() {
                    return Err(ArmError::conflict(format!(
                        "Read access is not permitted on disk {} in state '{}'.",
                        d.name,
                        self.disk_state(d)
                    )));
                }
                if let Some(vm) = d.managed_by.as_ref().and_then(|k| self.vms.get(k))
                    && vm.power != Power::Deallocated
                {
                    return Err(ArmError::new(
                        409,
                        "Conflict",
                        format!(
                            "Access not permitted because disk {} is currently attached to running VM {}.",
                            d.name, vm.id
                        ),
                    ));
                }
            }
            SasAccess::Write => {
                if snapshot || d.upload.is_none() {
                    return Err(ArmError::conflict(format!(
                        "Write access can be granted only on a disk created with createOption 'Upload' in state ReadyToUpload or ActiveUpload; '{}' is in state '{}'.",
                        d.name,
                        self.disk_state(d)
                    )));
                }
            }
        }
        let dur = self.draw(self.durations.access);
        let lro = self.new_op(
            now,
            OpFamily::Disk,
            dur,
            Effect::Grant {
                key,
                snapshot,
                access,
                duration: secs as f64,
            },
            inject,
            Final::NoContent,
        );
        Ok(Reply::accepted(lro))
    }

    /// `POST .../endGetAccess`.
    pub(crate) fn revoke(
        &mut self,
        t: &Target,
        snapshot: bool,
        inject: bool,
        now: f64,
    ) -> Result<Reply, ArmError> {
        let key = t.key();
        self.disk_of(t, snapshot)?;
        let dur = self.draw(self.durations.access);
        let lro = self.new_op(
            now,
            OpFamily::Disk,
            dur,
            Effect::Revoke { key, snapshot },
            inject,
            Final::NoContent,
        );
        Ok(Reply::accepted(lro))
    }

    /// `Grant` done: a SAS on the blob (write access starts the upload).
    pub(super) fn apply_grant(
        &mut self,
        key: &str,
        snapshot: bool,
        access: SasAccess,
        duration: f64,
    ) -> Result<Option<Value>, ArmError> {
        let map = if snapshot {
            &mut self.snapshots
        } else {
            &mut self.disks
        };
        let Some(d) = map.get_mut(key) else {
            return Err(ArmError::new(
                404,
                "ResourceNotFound",
                "The disk was deleted while access was being granted.",
            ));
        };
        let Some(blob) = d.blob.clone() else {
            return Err(ArmError::new(
                500,
                "InternalOperationError",
                "The disk has no storage.",
            ));
        };
        let Some(sas) = self.blobs.grant(&blob, access, duration) else {
            return Err(ArmError::new(
                500,
                "InternalOperationError",
                "The disk's storage is not available.",
            ));
        };
        match access {
            SasAccess::Write => d.upload = Some(UploadPhase::Active),
            SasAccess::Read => d.access = Some(SasAccess::Read),
        }
        Ok(Some(json!({"accessSAS": sas})))
    }

    /// `Revoke` done: every SAS ends; an upload ends too, and is refused
    /// (`InvalidVhd`) unless the blob ends with a valid VHD footer.
    pub(super) fn apply_revoke(
        &mut self,
        key: &str,
        snapshot: bool,
    ) -> Result<Option<Value>, ArmError> {
        let base = self.base_url.clone();
        let map = if snapshot {
            &mut self.snapshots
        } else {
            &mut self.disks
        };
        let Some(d) = map.get_mut(key) else {
            return Ok(None);
        };
        if let Some(b) = &d.blob {
            self.blobs.revoke_all(b);
        }
        d.access = None;
        if d.upload == Some(UploadPhase::Active) {
            // An injected invalid VHD (`../faults.rs`) applies to disks only.
            let ok = d.blob.as_ref().is_some_and(|b| self.blobs.footer_valid(b))
                && (snapshot || !self.hooks.take_invalid_vhd(key));
            if !ok {
                let acct = d.blob.as_ref().map(|b| b.0.clone()).unwrap_or_default();
                return Err(ArmError::new(
                    400,
                    "InvalidVhd",
                    format!(
                        "The specified cookie value in VHD footer indicates that disk 'abcd' with blob {base}/{acct}/abcd is not a supported VHD. Disk is expected to have cookie value 'conectix'."
                    ),
                ));
            }
            d.upload = None;
        }
        Ok(None)
    }
}
