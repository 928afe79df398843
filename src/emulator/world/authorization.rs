//! Role assignments (`Microsoft.Authorization/roleAssignments`, api-version
//! 2022-04-01): `PUT`/`GET`/`DELETE {scope}/providers/Microsoft.Authorization/
//! roleAssignments/{name}` and the listing at a scope with `$filter`.
//!
//! Sources: Azure/azure-rest-api-specs
//! `specification/authorization/resource-manager/Microsoft.Authorization/stable/2022-04-01/authorization-RoleAssignmentsCalls.json`
//! [CONFIRMED]: the name "can be any valid GUID"; PUT answers 201 (new) or
//! 200 with the assignment, no long-running operation; DELETE answers 200
//! with the deleted assignment or 204 when it does not exist; `$filter=atScope()`
//! lists the assignments at or above the scope, `$filter=principalId eq
//! '{id}'` those "at, above or below the scope for the specified
//! principal"; `scope` is read-only (the path gives it). `assignedTo('{id}')`
//! is answered as `principalId eq` (the emulator has no groups).
//! [INFERRED] from public reports (terraform-provider-azurerm, azure-cli
//! issues): a second assignment of the same principal, role and scope under
//! another name is 409 `RoleAssignmentExists` ("The role assignment already
//! exists."); changing the principal, role or scope of an existing name is
//! 400 `RoleAssignmentUpdateNotPermitted`; a name that is not a GUID is 400
//! `InvalidRoleAssignmentId`; a principal the directory does not know is
//! 400 `PrincipalNotFound`. A system-assigned principal exists while its VM
//! does (facts §5.3: it is tied to the resource's lifecycle), so an
//! assignment for the principal of a deleted VM is refused; assignments
//! already made for it stay, as Azure keeps them ("Identity not found") until
//! someone deletes them. A listing without a filter answers every assignment
//! at, above or below the scope [INFERRED from the operation's description,
//! "that apply to a scope", and from `az role assignment list --all`].

use serde_json::Map;

use super::*;

/// One role assignment.
#[derive(Debug, Clone)]
pub(crate) struct RoleAssignment {
    id: String,
    name: String,
    scope: String,
    role: String,
    principal: String,
    principal_type: String,
    rest: Map<String, Value>,
    created: f64,
}

/// `a` is `b` or an ancestor of it (path segments, case-insensitive).
fn covers(a: &str, b: &str) -> bool {
    let (a, b) = (key_of(a), key_of(b));
    b == a || b.starts_with(&format!("{a}/"))
}

/// The principal id of `principalId eq '{id}'` / `assignedTo('{id}')`.
fn principal_filter(filter: &str) -> Option<String> {
    let f = filter.trim();
    let low = f.to_ascii_lowercase();
    let quoted = |s: &str| {
        let s = s.trim();
        let s = s.strip_prefix('\'').unwrap_or(s);
        s.split('\'').next().map(str::to_string)
    };
    if let Some(rest) = low.strip_prefix("principalid eq") {
        return quoted(&f[f.len() - rest.len()..]);
    }
    if low.starts_with("assignedto(") {
        return quoted(&f["assignedTo(".len()..]);
    }
    None
}

impl RoleAssignment {
    fn body(&self, w: &World) -> Value {
        let mut p = self.rest.clone();
        p.insert("scope".into(), json!(self.scope));
        p.insert("roleDefinitionId".into(), json!(self.role));
        p.insert("principalId".into(), json!(self.principal));
        p.insert("principalType".into(), json!(self.principal_type));
        p.insert("createdOn".into(), json!(w.fmt_time(self.created)));
        p.insert("updatedOn".into(), json!(w.fmt_time(self.created)));
        json!({
            "id": self.id, "name": self.name,
            "type": "Microsoft.Authorization/roleAssignments",
            "properties": p,
        })
    }
}

impl World {
    /// True when `principal` exists in the emulated directory: the
    /// system-assigned principal of a VM that exists.
    fn principal_exists(&self, principal: &str) -> bool {
        self.vms.values().any(|v| {
            v.principal_id
                .as_deref()
                .is_some_and(|p| p.eq_ignore_ascii_case(principal))
        })
    }

    /// `PUT {scope}/providers/Microsoft.Authorization/roleAssignments/{name}`:
    /// `(status, body)`.
    pub(crate) fn role_assignment_put(
        &mut self,
        scope: &str,
        name: &str,
        body: &Value,
        now: f64,
    ) -> Result<(u16, Value), ArmError> {
        if uuid::Uuid::parse_str(name).is_err() {
            return Err(ArmError::bad_request(
                "InvalidRoleAssignmentId",
                format!(
                    "The role assignment ID '{name}' is not valid. The role assignment ID must be a GUID."
                ),
            ));
        }
        let Some(props) = body.get("properties").and_then(Value::as_object) else {
            return Err(ArmError::invalid_body("'properties' is required"));
        };
        let s = |k: &str| props.get(k).and_then(Value::as_str).map(str::to_string);
        let (Some(role), Some(principal)) = (s("roleDefinitionId"), s("principalId")) else {
            return Err(ArmError::bad_request(
                "InvalidRequestContent",
                "The request content was invalid: 'roleDefinitionId' and 'principalId' are required.",
            ));
        };
        if !self.principal_exists(&principal) {
            return Err(ArmError::bad_request(
                "PrincipalNotFound",
                format!(
                    "Principal {} does not exist in the directory 72f988bf-86f1-41af-91ab-2d7cd011db47. Check that you have the correct principal ID.",
                    principal.replace('-', "")
                ),
            ));
        }
        let id = format!(
            "{}/providers/Microsoft.Authorization/roleAssignments/{name}",
            scope.trim_end_matches('/')
        );
        let key = key_of(&id);
        if let Some(old) = self.role_assignments.get(&key) {
            let same = old.role.eq_ignore_ascii_case(&role)
                && old.principal.eq_ignore_ascii_case(&principal);
            if !same {
                return Err(ArmError::bad_request(
                    "RoleAssignmentUpdateNotPermitted",
                    "Tenant ID, application ID, principal ID, and scope are not allowed to be updated.",
                ));
            }
            let b = old.body(self);
            return Ok((200, b));
        }
        if self.role_assignments.values().any(|a| {
            key_of(&a.scope) == key_of(scope)
                && a.role.eq_ignore_ascii_case(&role)
                && a.principal.eq_ignore_ascii_case(&principal)
        }) {
            return Err(ArmError::new(
                409,
                "RoleAssignmentExists",
                "The role assignment already exists.",
            ));
        }
        let mut rest = props.clone();
        for k in [
            "scope",
            "roleDefinitionId",
            "principalId",
            "principalType",
            "createdOn",
            "updatedOn",
            "createdBy",
            "updatedBy",
        ] {
            rest.remove(k);
        }
        let a = RoleAssignment {
            id: id.clone(),
            name: name.to_string(),
            scope: scope.trim_end_matches('/').to_string(),
            role,
            principal,
            principal_type: s("principalType").unwrap_or_else(|| "User".into()),
            rest,
            created: now,
        };
        let b = a.body(self);
        self.role_assignments.insert(key, a);
        Ok((201, b))
    }

    /// `GET` one role assignment.
    pub(crate) fn role_assignment_get(&self, scope: &str, name: &str) -> Result<Value, ArmError> {
        let id = format!(
            "{}/providers/Microsoft.Authorization/roleAssignments/{name}",
            scope.trim_end_matches('/')
        );
        self.role_assignments
            .get(&key_of(&id))
            .map(|a| a.body(self))
            .ok_or_else(|| {
                ArmError::new(
                    404,
                    "RoleAssignmentNotFound",
                    format!("The role assignment '{name}' is not found."),
                )
            })
    }

    /// `DELETE` one role assignment: `(status, body)`.
    pub(crate) fn role_assignment_delete(
        &mut self,
        scope: &str,
        name: &str,
    ) -> (u16, Option<Value>) {
        let id = format!(
            "{}/providers/Microsoft.Authorization/roleAssignments/{name}",
            scope.trim_end_matches('/')
        );
        match self.role_assignments.remove(&key_of(&id)) {
            Some(a) => (200, Some(a.body(self))),
            None => (204, None),
        }
    }

    /// `GET {scope}/providers/Microsoft.Authorization/roleAssignments[?$filter=...]`.
    pub(crate) fn role_assignment_list(&self, scope: &str, filter: Option<&str>) -> Value {
        let at_scope = filter.is_some_and(|f| f.trim().eq_ignore_ascii_case("atScope()"));
        let principal = filter.and_then(principal_filter);
        let value: Vec<Value> = self
            .role_assignments
            .values()
            .filter(|a| {
                let above = covers(&a.scope, scope);
                let below = covers(scope, &a.scope);
                if at_scope { above } else { above || below }
            })
            .filter(|a| {
                principal
                    .as_deref()
                    .is_none_or(|p| a.principal.eq_ignore_ascii_case(p))
            })
            .map(|a| a.body(self))
            .collect();
        json!({ "value": value })
    }

    /// Seeds a role assignment (test and fleet set-up): `role` at `scope`
    /// for `principal`, under a fresh GUID name from the seeded RNG.
    pub(crate) fn seed_role_assignment(
        &mut self,
        scope: &str,
        role: &str,
        principal: &str,
        now: f64,
    ) -> String {
        let name = self.rng.uuid();
        let body = json!({"properties": {"roleDefinitionId": role, "principalId": principal, "principalType": "ServicePrincipal"}});
        match self.role_assignment_put(scope, &name, &body, now) {
            Ok((_, b)) => b["id"].as_str().unwrap_or_default().to_string(),
            Err(_) => String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_read_the_principal() {
        assert_eq!(
            principal_filter("principalId eq 'AbC'").as_deref(),
            Some("AbC")
        );
        assert_eq!(
            principal_filter("assignedTo('x-1')").as_deref(),
            Some("x-1")
        );
        assert_eq!(principal_filter("atScope()"), None);
        assert!(covers(
            "/subscriptions/s",
            "/subscriptions/S/resourceGroups/rg"
        ));
        assert!(!covers(
            "/subscriptions/s/resourceGroups/rg",
            "/subscriptions/s/resourceGroups/rg2"
        ));
    }
}
