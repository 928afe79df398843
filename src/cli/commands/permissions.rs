//! `ade2eah permissions`: the least-privilege custom role (derived from
//! the request table in `azure::permissions`), and with `--check` the
//! caller's effective permissions on each scope compared with it.
//!
//! Exit codes: 0 printed (with `--check`: every action granted on every
//! scope); 2 bad input, or `--check` found actions missing (nothing was
//! changed; the message names each missing action and scope).

use serde_json::{Value, json};

use super::setup::{connect, resolve_subscriptions};
use crate::azure::permissions::{missing_actions, role_actions, role_definition};
use crate::cli::error::{CliError, Exit};
use crate::cli::settings::{DEFAULT_POLL_SECS, PermissionsSettings};

/// The assignable scope written when none is known.
pub const PLACEHOLDER_SCOPE: &str = "/subscriptions/{subscriptionId}";

/// `ade2eah permissions`.
pub async fn permissions(s: PermissionsSettings) -> Result<Exit, CliError> {
    let mut subs: Vec<String> = s
        .subscriptions
        .iter()
        .filter(|x| !x.trim().is_empty())
        .cloned()
        .collect();
    if let Some(path) = &s.plan {
        let text = std::fs::read_to_string(path).map_err(|e| {
            CliError::BadInput(format!("cannot read plan file {}: {e}", path.display()))
        })?;
        let file = crate::plan::file::parse(&path.display().to_string(), &text)
            .map_err(|e| CliError::BadInput(e.to_string()))?;
        subs.extend(file.subscriptions);
    }
    if let Some(dir) = &s.state {
        let journal = crate::journal::Journal::open_to_read(dir)?;
        subs.extend(journal.require_meta()?.subscriptions);
    }
    let needs_arm = s.check
        || subs
            .iter()
            .any(|x| !crate::cli::settings::is_subscription_id(x));
    let cloud = if needs_arm {
        let poll = s.conn.poll_or(DEFAULT_POLL_SECS)?;
        Some(connect(&s.conn, None, poll).await?)
    } else {
        None
    };
    if let Some(c) = &cloud {
        resolve_subscriptions(c.client(), &mut subs).await?;
    }
    let scopes = scopes_of(&s, &subs)?;
    if !s.check {
        if scopes.is_empty() {
            eprintln!(
                "ade2eah: no --subscription, --scope, --plan or --state: AssignableScopes is {PLACEHOLDER_SCOPE}; replace it"
            );
        }
        let shown = if scopes.is_empty() {
            vec![PLACEHOLDER_SCOPE.to_string()]
        } else {
            scopes
        };
        crate::cli::output::print_value(s.output, &role_definition(&shown))?;
        return Ok(Exit::Done);
    }
    if scopes.is_empty() {
        return Err(CliError::BadInput(
            "--check needs a scope: --subscription, -g, --scope, --plan or --state".into(),
        ));
    }
    let client = cloud
        .as_ref()
        .map(|c| c.client())
        .ok_or_else(|| CliError::Failed("internal: --check without a connection".into()))?;
    let (report, refusal) = check_scopes(client, &scopes).await?;
    crate::cli::output::print_value(s.output, &report)?;
    match refusal {
        None => Ok(Exit::Done),
        Some(e) => Err(e),
    }
}

/// Compares the caller's effective permissions on each scope with the
/// role: the report (`{"role", "ok", "scopes": [{"scope", "missing"}]}`)
/// and, when an action is missing anywhere, the bad-input error naming each
/// (exit 2: nothing was changed).
pub async fn check_scopes(
    client: &crate::azure::ArmClient,
    scopes: &[String],
) -> Result<(Value, Option<CliError>), CliError> {
    let wanted = role_actions();
    let mut results: Vec<Value> = Vec::new();
    let mut problems: Vec<String> = Vec::new();
    for scope in scopes {
        let granted = client.effective_permissions(scope).await.map_err(|e| {
            CliError::Failed(format!("cannot read the permissions on {scope}: {e}"))
        })?;
        let missing = missing_actions(&granted, &wanted);
        for m in &missing {
            problems.push(format!("{m} on {scope}"));
        }
        results.push(json!({"scope": scope, "missing": missing}));
    }
    let report = json!({"role": crate::azure::permissions::ROLE_NAME, "ok": problems.is_empty(), "scopes": results});
    let refusal = (!problems.is_empty()).then(|| {
        CliError::BadInput(format!(
            "the caller lacks {} permission(s) the run needs; nothing was changed. Assign the role `ade2eah permissions` prints (or add these actions):\n  {}",
            problems.len(),
            problems.join("\n  ")
        ))
    });
    Ok((report, refusal))
}

/// The scopes: `--scope`, then each subscription (or its `-g` groups).
fn scopes_of(s: &PermissionsSettings, subs: &[String]) -> Result<Vec<String>, CliError> {
    let mut out: Vec<String> = s
        .scopes
        .iter()
        .map(|x| x.trim_end_matches('/').to_string())
        .collect();
    let mut push = |x: String| {
        if !out.iter().any(|o| o.eq_ignore_ascii_case(&x)) {
            out.push(x);
        }
    };
    if s.resource_groups.is_empty() {
        for sub in subs {
            push(format!("/subscriptions/{sub}"));
        }
    }
    for g in &s.resource_groups {
        match g.split_once('/') {
            Some((sub, rg)) if !rg.is_empty() && !rg.contains('/') => {
                push(format!("/subscriptions/{sub}/resourceGroups/{rg}"))
            }
            Some(_) => {
                return Err(CliError::BadInput(format!(
                    "-g {g:?}: expected RG or SUB/RG"
                )));
            }
            None => {
                for sub in subs {
                    push(format!("/subscriptions/{sub}/resourceGroups/{g}"));
                }
            }
        }
    }
    Ok(out)
}
