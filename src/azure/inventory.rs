//! Read-only inventory calls used by `ade2eah plan`: VM listing (ARM, paged
//! by `nextLink`), Azure Resource Graph (paged by `$skipToken`), management
//! locks, Azure Backup status, Compute usages (quotas), and the one opt-in
//! write, feature registration.

use serde_json::{Value, json};

use super::{AzureError, client::ArmClient};

/// API version of `Microsoft.ResourceGraph/resources`.
pub const RESOURCE_GRAPH_API: &str = "2024-04-01";
/// API version of `Microsoft.Authorization/locks`.
pub const LOCKS_API: &str = "2016-09-01";
/// API version of `Microsoft.RecoveryServices/locations/backupStatus`
/// (spec `recoveryservicesbackup/.../stable/2023-04-01`, example `AzureIaasVm/GetBackupStatus.json`).
pub const BACKUP_API: &str = "2023-04-01";

/// API version of `Microsoft.Authorization/roleAssignments` (spec
/// `authorization/.../stable/2022-04-01/authorization-RoleAssignmentsCalls.json`).
pub const ROLE_ASSIGNMENTS_API: &str = "2022-04-01";

/// API version of `GET /subscriptions` (Subscriptions - List).
pub const SUBSCRIPTIONS_API: &str = "2022-12-01";

/// Most pages followed in one listing (a guard against a looping `nextLink`).
const MAX_PAGES: usize = 10_000;

impl ArmClient {
    /// Every VM of a subscription, or of one resource group, via ARM listing.
    pub async fn list_vms(
        &self,
        subscription: &str,
        resource_group: Option<&str>,
    ) -> Result<Vec<Value>, AzureError> {
        let path = match resource_group {
            Some(rg) => format!(
                "/subscriptions/{subscription}/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachines"
            ),
            None => {
                format!("/subscriptions/{subscription}/providers/Microsoft.Compute/virtualMachines")
            }
        };
        let api = self.config().api.compute.clone();
        // A resource group that is gone has nothing to list.
        Ok(self.get_pages(path, &api).await?.unwrap_or_default())
    }

    /// Every `value[]` item of a listing, following `nextLink` (at most
    /// `MAX_PAGES` pages). `Ok(None)` when the first page is 404.
    pub(crate) async fn get_pages(
        &self,
        first: String,
        api: &str,
    ) -> Result<Option<Vec<Value>>, AzureError> {
        let mut next = first;
        let mut out = Vec::new();
        for page_no in 0..MAX_PAGES {
            let Some(page) = self.get_value(&next, api, &[]).await? else {
                return Ok((page_no > 0).then_some(out));
            };
            if let Some(v) = page.get("value").and_then(Value::as_array) {
                out.extend(v.iter().cloned());
            }
            match page.get("nextLink").and_then(Value::as_str) {
                Some(n) if !n.is_empty() => next = n.to_string(),
                _ => break,
            }
        }
        Ok(Some(out))
    }

    /// VM ids from Azure Resource Graph for `query` (KQL) over `subscriptions`,
    /// following `$skipToken`. The request is a POST but reads only.
    pub async fn resource_graph(
        &self,
        subscriptions: &[String],
        query: &str,
    ) -> Result<Vec<Value>, AzureError> {
        let path = "/providers/Microsoft.ResourceGraph/resources";
        let mut out = Vec::new();
        let mut skip: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut options = json!({"resultFormat": "objectArray", "$top": 1000});
            if let Some(t) = &skip {
                options["$skipToken"] = json!(t);
            }
            let body = json!({"subscriptions": subscriptions, "query": query, "options": options});
            let page = self
                .post_value(path, RESOURCE_GRAPH_API, Some(&body))
                .await?;
            if let Some(v) = page.get("data").and_then(Value::as_array) {
                out.extend(v.iter().cloned());
            }
            match page.get("$skipToken").and_then(Value::as_str) {
                Some(t) if !t.is_empty() => skip = Some(t.to_string()),
                _ => break,
            }
        }
        Ok(out)
    }

    /// Role assignments of `principal` anywhere in `subscription`
    /// (RoleAssignments_ListForSubscription with `$filter=principalId eq
    /// '{id}'`: "at, above or below the scope for the specified principal"),
    /// following `nextLink`. A 404 reads as none.
    pub async fn list_role_assignments(
        &self,
        subscription: &str,
        principal: &str,
    ) -> Result<Vec<Value>, AzureError> {
        let path = format!(
            "/subscriptions/{subscription}/providers/Microsoft.Authorization/roleAssignments"
        );
        let filter = format!("principalId eq '{principal}'");
        let mut out = Vec::new();
        let mut next: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let page = match &next {
                None => {
                    self.get_value(&path, ROLE_ASSIGNMENTS_API, &[("$filter", &filter)])
                        .await?
                }
                Some(n) => self.get_value(n, ROLE_ASSIGNMENTS_API, &[]).await?,
            };
            let Some(page) = page else { break };
            if let Some(v) = page.get("value").and_then(Value::as_array) {
                out.extend(v.iter().cloned());
            }
            match page.get("nextLink").and_then(Value::as_str) {
                Some(n) if !n.is_empty() => next = Some(n.to_string()),
                _ => break,
            }
        }
        Ok(out)
    }

    /// RoleAssignments_CreateById: PUT `{scope}/providers/Microsoft.Authorization/roleAssignments/{guid}`
    /// (201 new, 200 existing; no long-running operation).
    pub async fn put_role_assignment(&self, id: &str, body: &Value) -> Result<(), AzureError> {
        self.put_value(id, ROLE_ASSIGNMENTS_API, body).await
    }

    /// The extensions of a VM (VirtualMachineExtensions_List, one page).
    pub async fn list_extensions(
        &self,
        vm: &crate::model::ResourceId,
    ) -> Result<Vec<Value>, AzureError> {
        let api = self.config().api.compute.clone();
        let page = self
            .get_value(&format!("{vm}/extensions"), &api, &[])
            .await?;
        Ok(page
            .and_then(|p| p.get("value").and_then(Value::as_array).cloned())
            .unwrap_or_default())
    }

    /// Management locks at or above `scope` (a resource or resource-group id).
    /// `Ok(None)` when the locks API is not available (404).
    pub async fn list_locks(&self, scope: &str) -> Result<Option<Vec<Value>>, AzureError> {
        let path = format!("{scope}/providers/Microsoft.Authorization/locks");
        let Some(page) = self.get_value(&path, LOCKS_API, &[]).await? else {
            return Ok(None);
        };
        Ok(Some(
            page.get("value")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
        ))
    }

    /// Every management lock in `subscription` (at the subscription, its
    /// resource groups and resources: the unfiltered subscription listing),
    /// following `nextLink`. `Ok(None)` when the locks API answers 404.
    pub async fn list_subscription_locks(
        &self,
        subscription: &str,
    ) -> Result<Option<Vec<Value>>, AzureError> {
        self.get_pages(
            format!("/subscriptions/{subscription}/providers/Microsoft.Authorization/locks"),
            LOCKS_API,
        )
        .await
    }

    /// Azure Backup protection of one VM:
    /// `POST /subscriptions/{s}/providers/Microsoft.RecoveryServices/locations/{loc}/backupStatus`
    /// with `{"resourceId", "resourceType": "VM"}` → `{"protectionStatus":
    /// "Protected"|"NotProtected"|"Protecting"|"ProtectionFailed"|"Invalid",
    /// "vaultId", "policyName", "containerName", "protectedItemName", ...}`.
    /// A POST that reads only.
    pub async fn backup_status(
        &self,
        subscription: &str,
        location: &str,
        vm_id: &str,
    ) -> Result<Value, AzureError> {
        let path = format!(
            "/subscriptions/{subscription}/providers/Microsoft.RecoveryServices/locations/{location}/backupStatus"
        );
        let body = json!({"resourceId": vm_id, "resourceType": "VM"});
        self.post_value(&path, BACKUP_API, Some(&body)).await
    }

    /// Compute usages of a region (`GET .../Microsoft.Compute/locations/{loc}/usages`):
    /// `value[]` of `{"name": {"value", "localizedValue"}, "currentValue", "limit", "unit"}`.
    /// `Ok(None)` on 404.
    pub async fn compute_usages(
        &self,
        subscription: &str,
        location: &str,
    ) -> Result<Option<Vec<Value>>, AzureError> {
        let api = self.config().api.compute.clone();
        self.get_pages(
            format!(
                "/subscriptions/{subscription}/providers/Microsoft.Compute/locations/{location}/usages"
            ),
            &api,
        )
        .await
    }

    /// The subscriptions the caller can see, as `(subscriptionId,
    /// displayName)` (`GET /subscriptions`, all pages): how `--subscription
    /// NAME` is resolved.
    pub async fn list_subscriptions(&self) -> Result<Vec<(String, String)>, AzureError> {
        let items = self
            .get_pages("/subscriptions".into(), SUBSCRIPTIONS_API)
            .await?
            .unwrap_or_default();
        let field = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        Ok(items
            .iter()
            .map(|s| (field(s, "subscriptionId"), field(s, "displayName")))
            .filter(|(id, _)| !id.is_empty())
            .collect())
    }

    /// Registers `Microsoft.Compute/EncryptionAtHost` on `subscription`
    /// (mutating; only with `plan --register-feature`). Returns the state.
    pub async fn register_eah_feature(&self, subscription: &str) -> Result<String, AzureError> {
        let path = format!(
            "/subscriptions/{subscription}/providers/Microsoft.Features/providers/Microsoft.Compute/features/EncryptionAtHost/register"
        );
        let api = self.config().api.features.clone();
        let v = self.post_value(&path, &api, None).await?;
        Ok(v.pointer("/properties/state")
            .and_then(Value::as_str)
            .unwrap_or("Unknown")
            .to_string())
    }
}
