//! The caller's effective permissions and the subscriptions it can see.
//!
//! - `GET {scope}/providers/Microsoft.Authorization/permissions` (Permissions -
//!   List For Resource Group / For Resource, api-version 2022-04-01,
//!   learn.microsoft.com/rest/api/authorization/permissions) answers
//!   `{"value": [{"actions", "notActions", "dataActions", "notDataActions"}]}`,
//!   one entry per role the caller holds at or above the scope. The emulator's
//!   caller holds one role: `actions: ["*"]` minus the actions a test denied
//!   ([`Access::deny`]) as `notActions`.
//! - `GET /subscriptions` (Subscriptions - List, api-version 2022-12-01,
//!   learn.microsoft.com/rest/api/resources/subscriptions/list) answers
//!   `{"value": [{"id", "subscriptionId", "displayName", "state", "tenantId"}]}`
//!   for every subscription served; display names are `ade2eah-emulator`
//!   for the primary one and `ade2eah-emulator-N` for the N-th further one
//!   unless a test renamed them ([`Access::rename`]).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::World;

/// The tenant every emulated subscription is in.
const TENANT: &str = "00000000-0000-0000-0000-0000000000ad";

/// Denied actions and subscription names.
#[derive(Debug, Default)]
pub(crate) struct Access {
    denied: BTreeSet<String>,
    names: BTreeMap<String, String>,
}

impl Access {
    /// Takes `action` out of the caller's permissions (as a `notActions` entry).
    pub(crate) fn deny(&mut self, action: &str) {
        self.denied.insert(action.to_string());
    }

    /// Sets the display name of subscription `id`.
    pub(crate) fn rename(&mut self, id: &str, name: &str) {
        self.names.insert(id.to_ascii_lowercase(), name.to_string());
    }
}

impl World {
    /// The permissions list at any scope of the world.
    pub(crate) fn permissions(&self) -> Value {
        json!({"value": [{
            "actions": ["*"],
            "notActions": self.access.denied.iter().collect::<Vec<_>>(),
            "dataActions": [],
            "notDataActions": [],
        }]})
    }

    /// `GET /subscriptions`: every subscription served, the primary first.
    pub(crate) fn subscription_list(&self) -> Value {
        let primary = self.subscription.to_ascii_lowercase();
        let mut ids: Vec<&String> = self.features.keys().collect();
        ids.sort_by_key(|k| **k != primary);
        let value: Vec<Value> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let name = self.access.names.get(*id).cloned().unwrap_or_else(|| {
                    if i == 0 {
                        "ade2eah-emulator".to_string()
                    } else {
                        format!("ade2eah-emulator-{i}")
                    }
                });
                json!({
                    "id": format!("/subscriptions/{id}"),
                    "subscriptionId": id,
                    "displayName": name,
                    "state": "Enabled",
                    "tenantId": TENANT,
                })
            })
            .collect();
        json!({ "value": value })
    }
}
