//! [`Cloud`] over the real HTTP client ([`crate::azure::ArmClient`]).
//! Error classification is the client's (`crate::azure::classify`); this
//! adapter only translates the verdict into the engine's terms.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use crate::azure::{self, ArmClient, AzureError, ErrorClass, SasAccess};
use crate::cloud::{Access, Cloud, CloudError, CloudResult, CopyFigures, Retry, VerifyFigures};
use crate::copy::{self, CopyOptions};
use crate::model::{ResourceId, SasUrl};

/// The production cloud: ARM + storage over HTTP.
#[derive(Clone)]
pub struct ArmCloud {
    client: ArmClient,
    copy: CopyOptions,
}

impl ArmCloud {
    /// Wraps a client.
    pub fn new(client: ArmClient) -> Self {
        ArmCloud {
            client,
            copy: CopyOptions::default(),
        }
    }

    /// The same cloud copying with `copy` (transfer mode and parallelism).
    pub fn with_copy(mut self, copy: CopyOptions) -> Self {
        self.copy = copy;
        self
    }

    /// The copy options in force.
    pub fn copy_options(&self) -> &CopyOptions {
        &self.copy
    }

    /// The underlying client (for statistics).
    pub fn client(&self) -> &ArmClient {
        &self.client
    }
}

/// Translates a classified Azure error for the engine.
pub fn to_cloud_error(e: AzureError) -> CloudError {
    let code = e.code().map(str::to_string);
    let message = crate::model::redact(&e.to_string());
    match azure::classify(&e) {
        ErrorClass::Transient { retry_after } | ErrorClass::Throttled { retry_after } => {
            CloudError {
                retry: Retry::Transient,
                code,
                message,
                retry_after,
            }
        }
        ErrorClass::Held { hold } => CloudError {
            retry: Retry::Held(hold),
            code,
            message,
            retry_after: None,
        },
        ErrorClass::Terminal { remedy } => CloudError {
            retry: Retry::Terminal,
            code,
            message: format!("{message}. {remedy}"),
            retry_after: None,
        },
    }
}

fn map<T>(r: Result<T, AzureError>) -> CloudResult<T> {
    r.map_err(to_cloud_error)
}

#[async_trait]
impl Cloud for ArmCloud {
    async fn list_extensions(&self, vm: &ResourceId) -> CloudResult<Vec<Value>> {
        map(self.client.list_extensions(vm).await)
    }

    async fn list_role_assignments(
        &self,
        subscription: &str,
        principal: &str,
    ) -> CloudResult<Vec<Value>> {
        map(self
            .client
            .list_role_assignments(subscription, principal)
            .await)
    }

    async fn put_role_assignment(&self, id: &str, body: &Value) -> CloudResult<()> {
        map(self.client.put_role_assignment(id, body).await)
    }

    async fn get_vm(&self, id: &ResourceId, instance_view: bool) -> CloudResult<Option<Value>> {
        map(self.client.get_vm(id, instance_view).await).map(|o| o.map(|f| f.raw))
    }

    async fn get_vm_model(&self, id: &ResourceId) -> CloudResult<Option<Value>> {
        map(self.client.get_vm_model(id).await)
    }

    async fn get_disk(&self, id: &ResourceId) -> CloudResult<Option<Value>> {
        if id.is_type("Microsoft.Compute", "snapshots") {
            map(self.client.get_snapshot(id).await).map(|o| o.map(|f| f.raw))
        } else {
            map(self.client.get_disk(id).await).map(|o| o.map(|f| f.raw))
        }
    }

    async fn eah_feature_registered(&self, subscription: &str) -> CloudResult<bool> {
        let f = map(self
            .client
            .get_feature(subscription, "Microsoft.Compute", "EncryptionAtHost")
            .await)?;
        Ok(f.and_then(|f| f.properties.and_then(|p| p.state))
            .is_some_and(|s| s.eq_ignore_ascii_case("Registered")))
    }

    async fn size_support(
        &self,
        subscription: &str,
        location: &str,
        size: &str,
    ) -> CloudResult<(Option<bool>, bool)> {
        let skus = map(self.client.list_vm_skus(subscription, location).await)?;
        let Some(sku) = skus.iter().find(|s| {
            s.name
                .as_deref()
                .is_some_and(|n| n.eq_ignore_ascii_case(size))
        }) else {
            return Ok((None, false));
        };
        let supports = sku
            .capability("EncryptionAtHostSupported")
            .is_some_and(|v| v.eq_ignore_ascii_case("True"));
        let restricted = sku.restrictions.as_ref().is_some_and(|r| {
            r.iter().any(|x| {
                x.get("reasonCode")
                    .and_then(Value::as_str)
                    .is_some_and(|c| c.eq_ignore_ascii_case("NotAvailableForSubscription"))
                    && x.get("type")
                        .and_then(Value::as_str)
                        .is_some_and(|t| t.eq_ignore_ascii_case("Location"))
            })
        });
        Ok((Some(supports), restricted))
    }

    async fn get_disk_encryption_set(&self, id: &ResourceId) -> CloudResult<Option<Value>> {
        map(self.client.get_disk_encryption_set(id).await)
    }

    async fn vm_sku(
        &self,
        subscription: &str,
        location: &str,
        size: &str,
    ) -> CloudResult<Option<Value>> {
        let skus = map(self.client.list_vm_skus(subscription, location).await)?;
        Ok(skus
            .into_iter()
            .find(|s| {
                s.name
                    .as_deref()
                    .is_some_and(|n| n.eq_ignore_ascii_case(size))
            })
            .and_then(|s| serde_json::to_value(s).ok()))
    }

    async fn compute_usages(
        &self,
        subscription: &str,
        location: &str,
    ) -> CloudResult<Option<Vec<Value>>> {
        map(self.client.compute_usages(subscription, location).await)
    }

    async fn list_locks(&self, subscription: &str) -> CloudResult<Option<Vec<Value>>> {
        map(self.client.list_subscription_locks(subscription).await)
    }

    async fn run_command(&self, vm: &ResourceId, body: &Value) -> CloudResult<Value> {
        map(self.client.run_command(vm, body).await)
    }

    async fn put_vm(&self, id: &ResourceId, body: &Value) -> CloudResult<()> {
        map(self.client.put_vm(id, body).await).map(|_| ())
    }

    async fn patch_vm(&self, id: &ResourceId, body: &Value) -> CloudResult<()> {
        map(self.client.patch_vm(id, body).await).map(|_| ())
    }

    async fn delete_vm(&self, id: &ResourceId) -> CloudResult<()> {
        map(self.client.delete_vm(id).await)
    }

    async fn deallocate_vm(&self, id: &ResourceId) -> CloudResult<()> {
        map(self.client.deallocate_vm(id).await)
    }

    async fn start_vm(&self, id: &ResourceId) -> CloudResult<()> {
        map(self.client.start_vm(id).await)
    }

    async fn put_extension(&self, id: &ResourceId, body: &Value) -> CloudResult<()> {
        map(self.client.put_extension(id, body).await).map(|_| ())
    }

    async fn delete_extension(&self, id: &ResourceId) -> CloudResult<()> {
        map(self.client.delete_extension(id).await)
    }

    async fn get_nic(&self, id: &ResourceId) -> CloudResult<Option<Value>> {
        map(self.client.get_nic(id).await)
    }

    async fn put_nic(&self, id: &ResourceId, body: &Value) -> CloudResult<()> {
        map(self.client.put_nic(id, body).await)
    }

    async fn delete_nic(&self, id: &ResourceId) -> CloudResult<()> {
        map(self.client.delete_nic(id).await)
    }

    async fn put_disk(&self, id: &ResourceId, body: &Value) -> CloudResult<()> {
        map(self.client.put_disk(id, body).await).map(|_| ())
    }

    async fn patch_disk(&self, id: &ResourceId, body: &Value) -> CloudResult<()> {
        map(self.client.patch_disk(id, body).await).map(|_| ())
    }

    async fn delete_disk(&self, id: &ResourceId) -> CloudResult<()> {
        map(self.client.delete_disk(id).await)
    }

    async fn put_snapshot(&self, id: &ResourceId, body: &Value) -> CloudResult<()> {
        map(self.client.put_snapshot(id, body).await).map(|_| ())
    }

    async fn grant_access(
        &self,
        id: &ResourceId,
        access: Access,
        duration: Duration,
    ) -> CloudResult<SasUrl> {
        let a = match access {
            Access::Read => SasAccess::Read,
            Access::Write => SasAccess::Write,
        };
        map(self.client.grant_access(id, a, duration).await)
    }

    async fn revoke_access(&self, id: &ResourceId) -> CloudResult<()> {
        map(self.client.revoke_access(id).await)
    }

    async fn copy_round(
        &self,
        src: &SasUrl,
        previous: Option<&SasUrl>,
        dst: &SasUrl,
        skip_below: u64,
        progress: &(dyn Fn(u64, u64) + Send + Sync),
        checkpoint: &(dyn Fn(u64) + Send + Sync),
    ) -> CloudResult<CopyFigures> {
        let storage = self.client.storage();
        let stats = copy::copy_round(
            &storage, src, previous, dst, &self.copy, skip_below, progress, checkpoint,
        )
        .await
        .map_err(|e| to_cloud_error(e.into()))?;
        Ok(CopyFigures {
            bytes_copied: stats.bytes_copied,
            allocated_bytes: stats.allocated_bytes,
            blob_size: stats.blob_size,
            work_bytes: stats.work_bytes,
            calls: stats.calls,
            work: stats.work,
        })
    }

    async fn changed_ranges(&self, newer: &SasUrl, older: &SasUrl) -> CloudResult<Vec<(u64, u64)>> {
        let pl = map(self
            .client
            .storage()
            .all_page_ranges(newer, Some(older))
            .await)?;
        Ok(crate::azure::storage::merge(
            pl.ranges.into_iter().chain(pl.clear).collect(),
        ))
    }

    async fn verify_plan(
        &self,
        src: &SasUrl,
        dst: &SasUrl,
        full: bool,
        must: &[(u64, u64)],
        spot_checks: usize,
        seed: u64,
    ) -> CloudResult<Vec<(u64, u64)>> {
        let storage = self.client.storage();
        copy::verify_plan(&storage, src, dst, full, must, spot_checks, seed)
            .await
            .map_err(|e| to_cloud_error(e.into()))
    }

    async fn verify_calls(
        &self,
        src: &SasUrl,
        dst: &SasUrl,
        calls: &[(u64, u64)],
    ) -> CloudResult<VerifyFigures> {
        let storage = self.client.storage();
        let r = copy::verify_calls(&storage, src, dst, calls, &self.copy)
            .await
            .map_err(|e| to_cloud_error(e.into()))?;
        Ok(VerifyFigures {
            compared_bytes: r.compared_bytes,
            mismatches: r.mismatches,
        })
    }
}
