//! The HTTP face of the emulator: one fallback handler that parses ARM paths
//! case-insensitively, checks auth, injects seeded faults, calls the world
//! (lock, compute, unlock; never across an `.await`), adds Azure's headers
//! and records the request log. Storage paths (`/md-...`) go to
//! `storage_routes::handle`; `/_emulator/*` routes serve the test view.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use serde_json::{Value, json};

use super::config::FaultKind;
use super::faults::{self, Fault, RequestClass};
use super::lro::OpFamily;
use super::world::{ArmError, LocationAnswer, LroRef, Reply, Target};
use super::{Inner, RequestLog};

const COMPUTE_API: &str = "2024-11-01";
const DISK_API: &str = "2025-01-02";
const NETWORK_API: &str = "2024-05-01";
const MAX_BODY: usize = 32 * 1024 * 1024;

/// A parsed ARM route.
#[derive(Debug, Clone)]
enum Route {
    Vm(Target, VmSub),
    VmList(Option<String>),
    Disk(Target, bool, DiskSub),
    DiskList(Option<String>, bool),
    Nic(Target),
    Operation(String),
    Feature(String, bool),
    Skus,
    ProviderRegister,
    /// `{scope}/providers/Microsoft.Authorization/locks[/{name}]`.
    Lock(String, Option<String>),
    /// `{scope}/providers/Microsoft.Authorization/roleAssignments[/{name}]`.
    RoleAssignment(String, Option<String>),
    /// `GET .../Microsoft.Compute/locations/{loc}/usages`.
    Usages(String),
    /// `POST .../Microsoft.RecoveryServices/locations/{loc}/backupStatus` (a read).
    BackupStatus,
    /// `.../Microsoft.Compute/diskEncryptionSets/{name}` (world/des.rs).
    Des(Target),
    /// `GET {scope}/providers/Microsoft.Authorization/permissions` (world/permissions.rs).
    Permissions,
    /// `GET /subscriptions` (world/permissions.rs).
    Subscriptions,
}

#[derive(Debug, Clone, PartialEq)]
enum VmSub {
    Model,
    InstanceView,
    Action(String),
    Ext(String),
    /// `GET .../extensions` (VirtualMachineExtensions_List).
    ExtList,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum DiskSub {
    Model,
    Grant,
    Revoke,
}

impl Route {
    /// Name of the VM (or resource) for fault messages.
    fn resource_name(&self) -> String {
        match self {
            Route::Vm(t, _) | Route::Disk(t, _, _) | Route::Nic(t) => t.name.clone(),
            _ => String::new(),
        }
    }
}

fn not_found_path(path: &str) -> ArmError {
    ArmError::new(
        404,
        "NotFound",
        format!("No HTTP resource was found that matches the request URI '{path}'."),
    )
}

/// Parses an ARM path; `Err` is the answer for unknown paths or subscriptions.
fn parse_route(path: &str, subscription: &str) -> Result<Route, ArmError> {
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let low: Vec<String> = segs.iter().map(|s| s.to_ascii_lowercase()).collect();
    let l = |i: usize| low.get(i).map(String::as_str).unwrap_or("");
    if l(0) == "subscriptions" && segs.len() == 1 {
        return Ok(Route::Subscriptions);
    }
    if l(0) != "subscriptions" || segs.len() < 3 {
        return Err(not_found_path(path));
    }
    if !segs[1].eq_ignore_ascii_case(subscription) {
        return Err(ArmError::new(
            404,
            "SubscriptionNotFound",
            format!("The subscription '{}' could not be found.", segs[1]),
        ));
    }
    if let Some(i) = (2..segs.len()).find(|&i| {
        l(i) == "providers" && l(i + 1) == "microsoft.authorization" && l(i + 2) == "locks"
    }) && (segs.len() == i + 3 || segs.len() == i + 4)
    {
        let scope = format!("/{}", segs[..i].join("/"));
        return Ok(Route::Lock(scope, segs.get(i + 3).map(|s| s.to_string())));
    }
    if let Some(i) = (2..segs.len()).find(|&i| {
        l(i) == "providers"
            && l(i + 1) == "microsoft.authorization"
            && l(i + 2) == "roleassignments"
    }) && (segs.len() == i + 3 || segs.len() == i + 4)
    {
        let scope = format!("/{}", segs[..i].join("/"));
        return Ok(Route::RoleAssignment(
            scope,
            segs.get(i + 3).map(|s| s.to_string()),
        ));
    }
    if segs.len() >= 4
        && l(segs.len() - 3) == "providers"
        && l(segs.len() - 2) == "microsoft.authorization"
        && l(segs.len() - 1) == "permissions"
    {
        return Ok(Route::Permissions);
    }
    if l(2) == "providers" {
        return match (l(3), segs.len()) {
            ("microsoft.compute", 7) if l(4) == "locations" && l(6) == "usages" => {
                Ok(Route::Usages(segs[5].to_string()))
            }
            ("microsoft.recoveryservices", 7) if l(4) == "locations" && l(6) == "backupstatus" => {
                Ok(Route::BackupStatus)
            }
            ("microsoft.compute", 8)
                if l(4) == "locations" && (l(6) == "operations" || l(6) == "diskoperations") =>
            {
                Ok(Route::Operation(segs[7].to_string()))
            }
            ("microsoft.network", 8) if l(4) == "locations" && l(6) == "operations" => {
                Ok(Route::Operation(segs[7].to_string()))
            }
            ("microsoft.compute", 5) if l(4) == "skus" => Ok(Route::Skus),
            ("microsoft.compute", 5) if l(4) == "register" => Ok(Route::ProviderRegister),
            ("microsoft.compute", 5) if l(4) == "virtualmachines" => Ok(Route::VmList(None)),
            ("microsoft.features", 8)
                if l(4) == "providers" && l(5) == "microsoft.compute" && l(6) == "features" =>
            {
                Ok(Route::Feature(segs[7].to_string(), false))
            }
            ("microsoft.features", 9)
                if l(4) == "providers"
                    && l(5) == "microsoft.compute"
                    && l(6) == "features"
                    && l(8) == "register" =>
            {
                Ok(Route::Feature(segs[7].to_string(), true))
            }
            _ => Err(not_found_path(path)),
        };
    }
    if l(2) != "resourcegroups" || l(4) != "providers" || segs.len() < 7 {
        return Err(not_found_path(path));
    }
    let rg = segs[3].to_string();
    let target = || Target {
        id: format!("/{}", segs[..8].join("/")),
        rg: rg.clone(),
        name: segs[7].to_string(),
    };
    match (l(5), l(6), segs.len()) {
        ("microsoft.compute", "virtualmachines", 7) => Ok(Route::VmList(Some(rg))),
        ("microsoft.compute", "disks", 7) => Ok(Route::DiskList(Some(rg), false)),
        ("microsoft.compute", "snapshots", 7) => Ok(Route::DiskList(Some(rg), true)),
        ("microsoft.compute", "virtualmachines", 8) => Ok(Route::Vm(target(), VmSub::Model)),
        ("microsoft.compute", "virtualmachines", 9) => match l(8) {
            "instanceview" => Ok(Route::Vm(target(), VmSub::InstanceView)),
            "extensions" => Ok(Route::Vm(target(), VmSub::ExtList)),
            a @ ("deallocate" | "start" | "poweroff" | "runcommand") => {
                Ok(Route::Vm(target(), VmSub::Action(a.to_string())))
            }
            _ => Err(not_found_path(path)),
        },
        ("microsoft.compute", "virtualmachines", 10) if l(8) == "extensions" => {
            Ok(Route::Vm(target(), VmSub::Ext(segs[9].to_string())))
        }
        ("microsoft.compute", kind @ ("disks" | "snapshots"), 8) => {
            Ok(Route::Disk(target(), kind == "snapshots", DiskSub::Model))
        }
        ("microsoft.compute", kind @ ("disks" | "snapshots"), 9) => match l(8) {
            "begingetaccess" => Ok(Route::Disk(target(), kind == "snapshots", DiskSub::Grant)),
            "endgetaccess" => Ok(Route::Disk(target(), kind == "snapshots", DiskSub::Revoke)),
            _ => Err(not_found_path(path)),
        },
        ("microsoft.network", "networkinterfaces", 8) => Ok(Route::Nic(target())),
        ("microsoft.compute", "diskencryptionsets", 8) => Ok(Route::Des(target())),
        _ => Err(not_found_path(path)),
    }
}

fn query_has(query: &str, key: &str, value: &str) -> bool {
    url::form_urlencoded::parse(query.as_bytes()).any(|(k, v)| {
        k.eq_ignore_ascii_case(key) && (value.is_empty() || v.trim().eq_ignore_ascii_case(value))
    })
}

/// What a dispatched request produced.
enum Outcome {
    Reply(Reply),
    Status(Value, Option<f64>),
    Location(LocationAnswer),
}

/// The fallback handler for every request. ARM answers every request with
/// an `x-ms-request-id` of its own and the `x-ms-correlation-request-id` the
/// client sent (a new one when it sent none): the resource provider
/// contract's common API details
/// (github.com/cloud-and-ai-microsoft/resource-provider-contract/blob/master/v1.0/common-api-details.md,
/// "Client Request Headers" / "Response Headers"); Azure support traces a
/// request by these two.
pub(crate) async fn handle(state: State<Arc<Inner>>, req: Request) -> Response {
    let storage = req
        .uri()
        .path()
        .trim_start_matches('/')
        .get(..3)
        .is_some_and(|p| p.eq_ignore_ascii_case("md-"));
    let correlation = req
        .headers()
        .get("x-ms-correlation-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut resp = handle_arm(state, req).await;
    if !storage {
        let h = resp.headers_mut();
        if !h.contains_key("x-ms-request-id") {
            set(h, "x-ms-request-id", &uuid::Uuid::new_v4().to_string());
        }
        match correlation {
            Some(c) => set(h, "x-ms-correlation-request-id", &c),
            None if !h.contains_key("x-ms-correlation-request-id") => set(
                h,
                "x-ms-correlation-request-id",
                &uuid::Uuid::new_v4().to_string(),
            ),
            None => {}
        }
    }
    resp
}

async fn handle_arm(State(inner): State<Arc<Inner>>, req: Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();

    if path.starts_with("/_emulator/") || path == "/_emulator" {
        let resp = emulator_route(&inner, &path);
        inner.record(&method, &path, false, resp.status().as_u16(), None);
        return resp;
    }
    if super::graph::is_graph_path(&path) {
        return super::graph::handle(inner, req).await;
    }
    let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
    if first.to_ascii_lowercase().starts_with("md-") {
        let mutating = method == Method::PUT;
        let resp = super::storage_routes::handle(inner.blobs.clone(), req).await;
        inner.record(&method, &path, mutating, resp.status().as_u16(), None);
        return resp;
    }

    let mutating = method != Method::GET && method != Method::HEAD;
    let authed = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.len() > 7 && v[..7].eq_ignore_ascii_case("bearer "));
    if !authed {
        let e = ArmError::new(
            401,
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is missing or not a Bearer token.",
        );
        let resp = error_response(&e, &method, "");
        inner.record(&method, &path, mutating, 401, None);
        return resp;
    }

    let bytes = match axum::body::to_bytes(req.into_body(), MAX_BODY).await {
        Ok(b) => b,
        Err(e) => {
            let err = ArmError::invalid_body(&e.to_string());
            inner.record(&method, &path, mutating, 400, None);
            return error_response(&err, &method, "");
        }
    };

    // The request's subscription when the world serves it (each has its own
    // features and throttle buckets), else the primary one (answered 404).
    let sub = {
        let seg = path.trim_matches('/').split('/').nth(1).unwrap_or("");
        let w = inner.world.lock().unwrap_or_else(|p| p.into_inner());
        if w.serves(seg) {
            seg.to_string()
        } else {
            inner.subscription.clone()
        }
    };
    let loc = inner.location.clone();
    let route = match parse_route(&path, &sub) {
        Ok(r) => r,
        Err(e) => {
            inner.record(&method, &path, mutating, e.status, None);
            return error_response(&e, &method, "");
        }
    };
    // backupStatus is a POST that only reads.
    let mutating = mutating && !matches!(route, Route::BackupStatus);
    let class = match (&route, mutating) {
        (Route::Operation(_), _) => RequestClass::Poll,
        (_, true) => RequestClass::Mutating,
        (_, false) => RequestClass::Read,
    };
    let seq = inner.next_arm_seq();
    let shape = request_shape(&inner, &route, &method, &bytes);
    let fault = {
        let cfg = inner.faults.lock().unwrap_or_else(|p| p.into_inner());
        faults::decide(&cfg, inner.seed, seq, class, &shape)
    };
    // The expired-token 401 is sent once per emulator.
    let fault = fault.filter(|f| {
        f.kind != FaultKind::ExpiredToken || {
            let mut w = inner.world.lock().unwrap_or_else(|p| p.into_inner());
            !std::mem::replace(&mut w.hooks.token_expired_sent, true)
        }
    });
    let mutating = class == RequestClass::Mutating;
    let policy = policy_header(&route, &method);

    if let Some(f) = fault {
        let early = match f.kind {
            FaultKind::Conflict
            | FaultKind::Throttle
            | FaultKind::ServerError
            | FaultKind::Unavailable => Some(fault_response(&inner, &f, &route, &method)),
            FaultKind::SubscriptionThrottle
            | FaultKind::SkuNotAvailable
            | FaultKind::ExpiredToken => Some(extra_fault_response(
                &inner, &f, &path, &method, &bytes, &policy,
            )),
            FaultKind::DropConnection if !(mutating && f.drop_after_apply()) => {
                Some(drop_response())
            }
            _ => None,
        };
        if let Some(resp) = early {
            inner.record(
                &method,
                &path,
                mutating,
                resp.status().as_u16(),
                Some(f.kind.label().to_string()),
            );
            return resp;
        }
    }
    let vm_key = match &route {
        Route::Vm(t, _) => Some(t.id.to_ascii_lowercase()),
        _ => None,
    };
    let admitted = match inner.throttle.admit(
        &sub,
        inner.clock.now(),
        method.as_str(),
        &policy,
        vm_key.as_deref(),
    ) {
        Ok(a) => a,
        Err(r) => {
            let resp = super::throttle::too_many(&inner.clock, &r, method.as_str());
            inner.record(&method, &path, mutating, 429, Some("throttled".into()));
            return resp;
        }
    };
    let inject = fault.is_some_and(|f| {
        matches!(
            f.kind,
            FaultKind::FailedOperation
                | FaultKind::AllocationFailed
                | FaultKind::ZonalAllocationFailed
        )
    });

    let mut body: Value =
        if bytes.is_empty() || !matches!(method, Method::PUT | Method::PATCH | Method::POST) {
            Value::Null
        } else {
            match serde_json::from_slice(&bytes) {
                Ok(v) => v,
                Err(e) => {
                    let err = ArmError::invalid_body(&e.to_string());
                    inner.record(
                        &method,
                        &path,
                        mutating,
                        400,
                        fault.map(|f| f.kind.label().to_string()),
                    );
                    return error_response(&err, &method, &policy);
                }
            }
        };

    if let Some(f) = fault
        && f.kind == FaultKind::SasExpiresEarly
        && let Some(m) = body.as_object_mut()
    {
        m.insert("durationInSeconds".into(), json!(f.short_sas_secs()));
    }

    let now = inner.clock.now();
    let outcome = {
        let mut w = inner.world.lock().unwrap_or_else(|p| p.into_inner());
        w.advance(now);
        if let Some(f) = fault {
            arm_hooks(&mut w, &f, &route);
        }
        let o = match lock_refusal(&w, &route, &method, &body)
            .or_else(|| policy_refusal(&w, &route, &method, &body))
        {
            Some(e) => Err(e),
            None => dispatch(&mut w, &sub, &route, &method, &query, body, inject, now),
        };
        w.hooks.lro_error = None;
        o
    };
    let malformed = match (&fault, &outcome) {
        (Some(f), Ok(Outcome::Reply(r))) if f.kind == FaultKind::Malformed && r.status == 200 => r
            .body
            .as_ref()
            .map(|v| malformed_response(f, v, &method, &policy)),
        _ => None,
    };
    let outcome = match (&route, inner.list_page_size) {
        (Route::VmList(_) | Route::DiskList(..), Some(n)) => {
            outcome.map(|o| page_of(&inner.base_url, &path, &query, n, o))
        }
        _ => outcome,
    };
    let mut resp = match outcome {
        Ok(o) => outcome_response(&inner, o, &sub, &loc, &policy, &method),
        Err(e) => error_response(&e, &method, &policy),
    };
    if let Some(a) = &admitted {
        a.apply(resp.headers_mut());
    }
    if let Some(m) = malformed {
        resp = m;
    }
    let status = resp.status().as_u16();
    if let Some(f) = fault
        && f.kind == FaultKind::DropConnection
    {
        resp = drop_response();
    }
    inner.record(
        &method,
        &path,
        mutating,
        status,
        fault.map(|f| f.kind.label().to_string()),
    );
    resp
}

#[allow(clippy::too_many_arguments)]
fn dispatch(
    w: &mut super::world::World,
    sub: &str,
    route: &Route,
    method: &Method,
    query: &str,
    body: Value,
    inject: bool,
    now: f64,
) -> Result<Outcome, ArmError> {
    let reply = |v: Value| {
        Ok(Outcome::Reply(Reply {
            status: 200,
            body: Some(v),
            lro: None,
        }))
    };
    let m = method.as_str();
    match (route, m) {
        (Route::Vm(t, VmSub::Model), "GET") => {
            if query_has(query, "$expand", "userData") {
                reply(w.vm_get_user_data(t)?)
            } else {
                reply(w.vm_get(t, query_has(query, "$expand", "instanceView"))?)
            }
        }
        (Route::Vm(t, VmSub::Model), "PUT") => Ok(Outcome::Reply(w.vm_put(t, body, inject, now)?)),
        (Route::Vm(t, VmSub::Model), "PATCH") => {
            Ok(Outcome::Reply(w.vm_patch(t, body, inject, now)?))
        }
        (Route::Vm(t, VmSub::Model), "DELETE") => Ok(Outcome::Reply(w.vm_delete(t, inject, now)?)),
        (Route::Vm(t, VmSub::InstanceView), "GET") => reply(w.vm_instance_view(t)?),
        (Route::Vm(t, VmSub::Action(a)), "POST") if a == "runcommand" => {
            Ok(Outcome::Reply(w.run_command(t, &body, inject, now)?))
        }
        (Route::Vm(t, VmSub::Action(a)), "POST") => {
            Ok(Outcome::Reply(w.vm_action(t, a, inject, now)?))
        }
        (Route::Des(t), "GET") => reply(w.des_get(t)?),
        (Route::Des(t), "PUT") => Ok(Outcome::Reply(w.des_put(t, &body)?)),
        (Route::Vm(t, VmSub::Ext(n)), "GET") => reply(w.ext_get(t, n)?),
        (Route::Vm(t, VmSub::ExtList), "GET") => {
            reply(w.ext_list(t, query_has(query, "$expand", "instanceView"))?)
        }
        (Route::Vm(t, VmSub::Ext(n)), "PUT") => {
            Ok(Outcome::Reply(w.ext_put(t, n, body, inject, now)?))
        }
        (Route::Vm(t, VmSub::Ext(n)), "DELETE") => {
            Ok(Outcome::Reply(w.ext_delete(t, n, inject, now)?))
        }
        (Route::VmList(rg), "GET") => reply(w.vm_list(Some(sub), rg.as_deref())),
        (Route::Disk(t, s, DiskSub::Model), "GET") => reply(w.disk_get(t, *s)?),
        (Route::Disk(t, s, DiskSub::Model), "PUT") => {
            Ok(Outcome::Reply(w.disk_put(t, body, *s, inject, now)?))
        }
        (Route::Disk(t, s, DiskSub::Model), "PATCH") => {
            Ok(Outcome::Reply(w.disk_patch(t, body, *s, inject, now)?))
        }
        (Route::Disk(t, s, DiskSub::Model), "DELETE") => {
            Ok(Outcome::Reply(w.disk_delete(t, *s, inject, now)?))
        }
        (Route::Disk(t, s, DiskSub::Grant), "POST") => {
            Ok(Outcome::Reply(w.grant(t, body, *s, inject, now)?))
        }
        (Route::Disk(t, s, DiskSub::Revoke), "POST") => {
            Ok(Outcome::Reply(w.revoke(t, *s, inject, now)?))
        }
        (Route::DiskList(rg, s), "GET") => reply(w.disk_list(sub, rg.as_deref(), *s)),
        (Route::Nic(t), "GET") => reply(w.nic_get(t)?),
        (Route::Nic(t), "PUT") => Ok(Outcome::Reply(w.nic_put(t, &body, inject, now)?)),
        (Route::Nic(t), "DELETE") => Ok(Outcome::Reply(w.nic_delete(t, inject, now)?)),
        (Route::Operation(id), "GET") => {
            if query_has(query, "monitor", "true") {
                Ok(Outcome::Location(w.op_location(id, now)?))
            } else {
                let (v, retry) = w.op_status(id, now)?;
                Ok(Outcome::Status(v, retry))
            }
        }
        (Route::Feature(name, false), "GET") => reply(w.feature_get(sub, name)?),
        (Route::Feature(name, true), "POST") => reply(w.feature_register(sub, name, now)?),
        (Route::Skus, "GET") => reply(w.skus()),
        (Route::ProviderRegister, "POST") => {
            reply(json!({"namespace": "Microsoft.Compute", "registrationState": "Registered"}))
        }
        (Route::Lock(scope, None), "GET") => reply(
            w.gov
                .lock_list(scope, query_has(query, "$filter", "atScope()")),
        ),
        (Route::Lock(scope, Some(n)), "GET") => reply(w.gov.lock_get(scope, n)?),
        (Route::Lock(scope, Some(n)), "PUT") => {
            let (status, v) = w.gov.lock_put(scope, n, &body)?;
            Ok(Outcome::Reply(Reply {
                status,
                body: Some(v),
                lro: None,
            }))
        }
        (Route::Lock(scope, Some(n)), "DELETE") => Ok(Outcome::Reply(Reply {
            status: w.gov.lock_delete(scope, n),
            body: None,
            lro: None,
        })),
        (Route::RoleAssignment(scope, None), "GET") => {
            let filter = url::form_urlencoded::parse(query.as_bytes())
                .find(|(k, _)| k.eq_ignore_ascii_case("$filter"))
                .map(|(_, v)| v.into_owned());
            reply(w.role_assignment_list(scope, filter.as_deref()))
        }
        (Route::RoleAssignment(scope, Some(n)), "GET") => reply(w.role_assignment_get(scope, n)?),
        (Route::RoleAssignment(scope, Some(n)), "PUT") => {
            let (status, v) = w.role_assignment_put(scope, n, &body, now)?;
            Ok(Outcome::Reply(Reply {
                status,
                body: Some(v),
                lro: None,
            }))
        }
        (Route::RoleAssignment(scope, Some(n)), "DELETE") => {
            let (status, body) = w.role_assignment_delete(scope, n);
            Ok(Outcome::Reply(Reply {
                status,
                body,
                lro: None,
            }))
        }
        (Route::Usages(loc), "GET") => {
            let current = w.usage_counts(loc);
            reply(w.gov.usages(&current))
        }
        (Route::BackupStatus, "POST") => reply(w.gov.backup_status(&body)?),
        (Route::Permissions, "GET") => reply(w.permissions()),
        (Route::Subscriptions, "GET") => reply(w.subscription_list()),
        _ => Err(ArmError::new(
            405,
            "MethodNotAllowed",
            format!("The requested resource does not support http method '{m}'."),
        )),
    }
}

/// One page of `n` items of a listing reply, from `$skiptoken` (an item
/// offset here; opaque to clients), with a `nextLink` (same path and query,
/// next `$skiptoken`) while items remain ([`super::EmulatorConfig::list_page_size`]).
fn page_of(base: &str, path: &str, query: &str, n: usize, o: Outcome) -> Outcome {
    let Outcome::Reply(mut r) = o else { return o };
    let Some(Value::Array(all)) = r
        .body
        .as_mut()
        .and_then(|b| b.get_mut("value"))
        .map(Value::take)
    else {
        return Outcome::Reply(r);
    };
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .filter(|(k, _)| !k.eq_ignore_ascii_case("$skiptoken"))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let skip: usize = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k.eq_ignore_ascii_case("$skiptoken"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let n = n.max(1);
    let total = all.len();
    let page: Vec<Value> = all.into_iter().skip(skip).take(n).collect();
    let mut body = json!({ "value": page });
    if skip + n < total {
        let q = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .append_pair("$skiptoken", &(skip + n).to_string())
            .finish();
        body["nextLink"] = json!(format!("{base}{path}?{q}"));
    }
    r.body = Some(body);
    Outcome::Reply(r)
}

/// The `RequestDisallowedByPolicy` refusal of a VM PUT or PATCH whose body
/// a deny policy assignment matches (see `governance`).
fn policy_refusal(
    w: &super::world::World,
    route: &Route,
    method: &Method,
    body: &Value,
) -> Option<ArmError> {
    match (route, method.as_str()) {
        (Route::Vm(t, VmSub::Model), "PUT" | "PATCH") => w.gov.policy_check(&t.id, &t.name, body),
        // A deny assignment covers every resource type in its scope.
        (Route::Nic(t), "PUT") => w.gov.policy_check(&t.id, &t.name, body),
        _ => None,
    }
}

/// The `ScopeLocked` refusal of a mutating request, if a management lock
/// forbids it (see `governance`). Lock routes themselves, feature and
/// provider registration and read-only POSTs are not checked.
fn lock_refusal(
    w: &super::world::World,
    route: &Route,
    method: &Method,
    body: &Value,
) -> Option<ArmError> {
    use super::governance::LockOp;
    let op = match method.as_str() {
        "DELETE" => LockOp::Delete,
        "PUT" | "PATCH" | "POST" => LockOp::Write,
        _ => return None,
    };
    match route {
        Route::Vm(t, VmSub::Model) => {
            let b = (op == LockOp::Write).then_some(body);
            w.lock_check(&t.id, op, b, true)
        }
        Route::Vm(t, VmSub::Action(_)) => w.lock_check(&t.id, op, None, false),
        Route::Vm(t, VmSub::Ext(n)) => {
            w.lock_check(&format!("{}/extensions/{n}", t.id), op, None, false)
        }
        Route::Disk(t, _, _) => w.lock_check(&t.id, op, None, false),
        _ => None,
    }
}

fn json_body(status: u16, v: Option<&Value>) -> Response {
    let mut b = Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR));
    let body = match v {
        Some(v) => {
            b = b.header(header::CONTENT_TYPE, "application/json; charset=utf-8");
            Body::from(serde_json::to_vec(v).unwrap_or_default())
        }
        None => Body::empty(),
    };
    b.body(body)
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

fn set(h: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(name, v);
    }
}

fn common_headers(h: &mut HeaderMap, method: &Method, policy: &str) {
    // (`handle` replaces the correlation id with the client's, if it sent one.)
    set(h, "x-ms-request-id", &uuid::Uuid::new_v4().to_string());
    set(
        h,
        "x-ms-correlation-request-id",
        &uuid::Uuid::new_v4().to_string(),
    );
    if method == Method::GET {
        set(h, "x-ms-ratelimit-remaining-subscription-reads", "249");
    } else if method == Method::DELETE {
        set(h, "x-ms-ratelimit-remaining-subscription-deletes", "199");
        set(h, "x-ms-ratelimit-remaining-subscription-writes", "199");
    } else {
        set(h, "x-ms-ratelimit-remaining-subscription-writes", "199");
    }
    if !policy.is_empty() {
        set(h, "x-ms-ratelimit-remaining-resource", policy);
    }
    set(h, "x-ms-request-charge", "1");
}

fn retry_headers(inner: &Inner, h: &mut HeaderMap, sim_secs: f64) {
    let (secs, ms) = inner.clock.retry_after_headers(sim_secs);
    set(h, "retry-after", &secs);
    set(h, "retry-after-ms", &ms);
}

fn error_response(e: &ArmError, method: &Method, policy: &str) -> Response {
    let mut r = json_body(e.status, Some(&e.envelope()));
    common_headers(r.headers_mut(), method, policy);
    set(r.headers_mut(), "x-ms-error-code", &e.code);
    r
}

fn op_urls(sub: &str, loc: &str, base: &str, lro: &LroRef) -> (String, String) {
    let (seg, api) = match lro.family {
        OpFamily::Compute => ("operations", COMPUTE_API),
        OpFamily::Disk => ("DiskOperations", DISK_API),
        OpFamily::Network => ("operations", NETWORK_API),
    };
    let provider = match lro.family {
        OpFamily::Network => "Microsoft.Network",
        OpFamily::Compute | OpFamily::Disk => "Microsoft.Compute",
    };
    let async_url = format!(
        "{base}/subscriptions/{sub}/providers/{provider}/locations/{loc}/{seg}/{}?api-version={api}",
        lro.id
    );
    let location = format!("{async_url}&monitor=true");
    (async_url, location)
}

fn outcome_response(
    inner: &Inner,
    o: Outcome,
    sub: &str,
    loc: &str,
    policy: &str,
    method: &Method,
) -> Response {
    match o {
        Outcome::Reply(r) => {
            let mut resp = json_body(r.status, r.body.as_ref());
            let h = resp.headers_mut();
            common_headers(h, method, policy);
            if let Some(lro) = &r.lro {
                let (a, l) = op_urls(sub, loc, &inner.base_url, lro);
                if !inner.lro_location_only {
                    set(h, "azure-asyncoperation", &a);
                }
                if lro.location || inner.lro_location_only {
                    set(h, "location", &l);
                }
                retry_headers(inner, h, lro.retry_after);
            }
            resp
        }
        Outcome::Status(v, retry) => {
            let mut resp = json_body(200, Some(&v));
            common_headers(resp.headers_mut(), method, policy);
            if let Some(s) = retry {
                retry_headers(inner, resp.headers_mut(), s);
            }
            resp
        }
        Outcome::Location(a) => {
            let mut resp = match &a {
                LocationAnswer::Running(_) => json_body(202, None),
                LocationAnswer::Done(v) => json_body(200, Some(v)),
                LocationAnswer::NoContent => json_body(204, None),
                LocationAnswer::Failed(e) => json_body(e.status, Some(&e.envelope())),
            };
            common_headers(resp.headers_mut(), method, policy);
            if let LocationAnswer::Running(s) = a {
                retry_headers(inner, resp.headers_mut(), s);
            }
            resp
        }
    }
}

/// `x-ms-ratelimit-remaining-resource` value for a route.
fn policy_header(route: &Route, method: &Method) -> String {
    let m = method.as_str();
    let p = match (route, m) {
        (Route::Operation(_), _) => "GetOperation",
        (Route::Vm(..) | Route::VmList(_), "GET") => "LowCostGet",
        (Route::Vm(_, VmSub::Model), "PUT") => "PutVM",
        (Route::Vm(_, VmSub::Model), "DELETE") => "DeleteVM",
        (Route::Vm(_, VmSub::Action(a)), _) if a == "deallocate" => "DeleteVM",
        (Route::Vm(..), _) => "UpdateVM",
        (Route::Disk(..) | Route::DiskList(..), "GET") => "GetDisk",
        (Route::Disk(..), "DELETE") => "DeleteDisks",
        (Route::Disk(..), _) => "CreateUpdateDisks",
        _ => return String::new(),
    };
    format!("Microsoft.Compute/{p}3Min;239,Microsoft.Compute/{p}30Min;1199")
}

fn fault_response(inner: &Inner, f: &Fault, route: &Route, method: &Method) -> Response {
    let policy = policy_header(route, method);
    match f.kind {
        FaultKind::Conflict => {
            let name = route.resource_name();
            let op = match (route, method.as_str()) {
                (Route::Vm(_, VmSub::Action(a)), _) => a.clone(),
                (Route::Vm(_, VmSub::Ext(_)), _) => "extensionCreateOrUpdate".into(),
                (_, "DELETE") => "delete".into(),
                (_, "PATCH") => "update".into(),
                _ => "createOrUpdate".into(),
            };
            let code = if f.conflict_code_another() {
                "AnotherOperationInProgress"
            } else {
                "OperationNotAllowed"
            };
            let e = ArmError::new(
                409,
                code,
                format!(
                    "Operation '{op}' is not allowed on VM '{name}' since another operation is in progress."
                ),
            );
            error_response(&e, method, &policy)
        }
        FaultKind::Throttle => {
            let secs = f.retry_after_secs();
            let group = match policy
                .split('/')
                .nth(1)
                .and_then(|s| s.split("3Min").next())
            {
                Some(p) if !p.is_empty() => format!("{p}30Min"),
                _ => "HighCostGet30Min".into(),
            };
            let detail = json!({"operationGroup": group, "startTime": "2026-01-01T00:00:00+00:00", "endTime": "2026-01-01T00:30:00+00:00", "allowedRequestCount": 800, "measuredRequestCount": 1238}).to_string();
            let mut e = ArmError::new(
                429,
                "OperationNotAllowed",
                "The server rejected the request because too many requests have been received for this subscription.",
            );
            e.details =
                Some(json!([{"code": "TooManyRequests", "target": group, "message": detail}]));
            let mut r = error_response(&e, method, "");
            let h = r.headers_mut();
            set(
                h,
                "x-ms-ratelimit-remaining-resource",
                &format!("Microsoft.Compute/{g};0", g = group),
            );
            retry_headers(inner, h, secs);
            r
        }
        FaultKind::ServerError => {
            let e = ArmError::new(
                500,
                "InternalServerError",
                "Encountered internal server error. Diagnostic information: timestamp '', subscription id '', tracking id '', request correlation id ''.",
            );
            error_response(&e, method, &policy)
        }
        _ => {
            let e = ArmError::new(
                503,
                "ServiceUnavailable",
                "The service is temporarily unavailable. Please try again later.",
            );
            let mut r = error_response(&e, method, &policy);
            retry_headers(inner, r.headers_mut(), 10.0);
            r
        }
    }
}

/// The request's shape, for the fault kinds that apply only to some requests.
fn request_shape(inner: &Inner, route: &Route, method: &Method, bytes: &[u8]) -> faults::Shape {
    let mut s = faults::Shape::default();
    match (route, method.as_str()) {
        (Route::Vm(t, VmSub::Model), "PUT") => {
            let w = inner.world.lock().unwrap_or_else(|p| p.into_inner());
            s.vm_create = w.vm_get(t, false).is_err();
        }
        (Route::Vm(_, VmSub::Action(a)), "POST") => s.vm_start = a.eq_ignore_ascii_case("start"),
        (Route::Vm(_, VmSub::Ext(_)), "PUT") => {
            s.ade_disable = String::from_utf8_lossy(bytes)
                .to_ascii_lowercase()
                .contains("disableencryption");
        }
        (Route::Disk(_, _, DiskSub::Grant), "POST") => s.grant = true,
        (Route::Disk(_, false, DiskSub::Revoke), "POST") => s.revoke = true,
        (Route::Vm(_, VmSub::Model) | Route::Disk(_, _, DiskSub::Model), "GET") => {
            s.resource_get = true;
        }
        _ => {}
    }
    s
}

/// Arms the faults that act when the operation completes.
fn arm_hooks(w: &mut super::world::World, f: &Fault, route: &Route) {
    match (f.kind, route) {
        (FaultKind::AllocationFailed | FaultKind::ZonalAllocationFailed, _) => {
            let (code, scope) = if f.kind == FaultKind::AllocationFailed {
                ("AllocationFailed", "region")
            } else {
                ("ZonalAllocationFailed", "zone")
            };
            w.hooks.lro_error = Some(ArmError::new(
                409,
                code,
                format!(
                    "Allocation failed. We do not have sufficient capacity for the requested VM size in this {scope}. Read more about improving likelihood of allocation success at http://aka.ms/allocation-guidance"
                ),
            ));
        }
        (FaultKind::InvalidVhd, Route::Disk(t, false, DiskSub::Revoke)) => {
            w.hooks.arm_invalid_vhd(t.key());
        }
        (FaultKind::DecryptionFailed, Route::Vm(t, VmSub::Ext(_))) => {
            w.hooks.decrypt_fail.insert(t.key());
        }
        _ => {}
    }
}

/// Early answers of the ARM-level 429, the 409 `SkuNotAvailable` and the 401.
fn extra_fault_response(
    inner: &Inner,
    f: &Fault,
    path: &str,
    method: &Method,
    bytes: &[u8],
    policy: &str,
) -> Response {
    match f.kind {
        FaultKind::SubscriptionThrottle => {
            let secs = f.retry_after_secs();
            let e = ArmError::new(
                429,
                "SubscriptionRequestsThrottled",
                format!(
                    "Number of requests for subscription '{}' and operation '{}{}' exceeded the backend storage limit. Please try again after '{}' seconds.",
                    inner.subscription,
                    method,
                    path.to_ascii_uppercase(),
                    secs.round()
                ),
            );
            let mut r = error_response(&e, method, "");
            retry_headers(inner, r.headers_mut(), secs);
            r
        }
        FaultKind::SkuNotAvailable => {
            let size = serde_json::from_slice::<Value>(bytes)
                .ok()
                .and_then(|v| {
                    v.pointer("/properties/hardwareProfile/vmSize")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                })
                .unwrap_or_else(|| "Standard_D2s_v5".into());
            let e = ArmError::new(
                409,
                "SkuNotAvailable",
                format!(
                    "The requested VM size for resource 'Following SKUs have failed for Capacity Restrictions: {size}' is currently not available in location '{}'. Please try another size or deploy to a different location or different zone. See https://aka.ms/azureskunotavailable for details.",
                    inner.location
                ),
            );
            error_response(&e, method, policy)
        }
        _ => {
            let e = ArmError::new(
                401,
                "ExpiredAuthenticationToken",
                "The access token expiry UTC time '2026-01-01T00:00:00.0000000Z' is earlier than current UTC time '2026-01-01T00:05:00.0000000Z'.",
            );
            let mut r = error_response(&e, method, "");
            set(
                r.headers_mut(),
                "www-authenticate",
                "Bearer authorization_uri=\"https://login.microsoftonline.com/common\", error=\"invalid_token\", error_description=\"The access token has expired.\"",
            );
            r
        }
    }
}

/// A 200 whose body is truncated JSON or lacks `properties`.
fn malformed_response(f: &Fault, v: &Value, method: &Method, policy: &str) -> Response {
    let bytes = if f.malformed_truncate() {
        let mut b = serde_json::to_vec(v).unwrap_or_default();
        b.truncate(b.len() / 2);
        b
    } else {
        let mut v = v.clone();
        if let Some(m) = v.as_object_mut() {
            m.remove("properties");
        }
        serde_json::to_vec(&v).unwrap_or_default()
    };
    let mut r = Response::builder()
        .status(200)
        .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
        .body(Body::from(bytes))
        .unwrap_or_else(|_| Response::new(Body::empty()));
    common_headers(r.headers_mut(), method, policy);
    r
}

/// A response whose body fails at once: the connection is aborted.
fn drop_response() -> Response {
    let stream = futures::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "injected connection drop",
        ))
    });
    Response::builder()
        .status(200)
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

fn emulator_route(inner: &Inner, path: &str) -> Response {
    match path.trim_end_matches('/') {
        "/_emulator/state" => match serde_json::to_value(inner.state_view()) {
            Ok(v) => json_body(200, Some(&v)),
            Err(e) => json_body(
                500,
                Some(&json!({"error": {"code": "InternalServerError", "message": e.to_string()}})),
            ),
        },
        "/_emulator/requests" => {
            let log: Vec<RequestLog> = inner.requests();
            json_body(200, serde_json::to_value(log).ok().as_ref())
        }
        "/_emulator/vms" => {
            let ids = inner
                .world
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .vm_ids();
            json_body(200, Some(&json!(ids)))
        }
        _ => json_body(
            404,
            Some(
                &json!({"error": {"code": "NotFound", "message": format!("unknown emulator route {path}")}}),
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_parse_case_insensitively_and_keep_casing() {
        let sub = "00000000-0000-0000-0000-00000000a0de";
        let p = format!(
            "/subscriptions/{sub}/RESOURCEGROUPS/Rg-X/providers/microsoft.compute/VirtualMachines/MyVm/Extensions/ade-tf"
        );
        match parse_route(&p, sub).unwrap() {
            Route::Vm(t, VmSub::Ext(n)) => {
                assert_eq!(t.name, "MyVm");
                assert_eq!(t.rg, "Rg-X");
                assert!(t.id.ends_with("VirtualMachines/MyVm"));
                assert_eq!(n, "ade-tf");
            }
            r => panic!("{r:?}"),
        }
        let p = format!(
            "/subscriptions/{sub}/providers/Microsoft.Compute/locations/westeurope/DiskOperations/abc"
        );
        assert!(matches!(parse_route(&p, sub).unwrap(), Route::Operation(id) if id == "abc"));
        let p = format!(
            "/subscriptions/{sub}/providers/Microsoft.Features/providers/Microsoft.Compute/features/EncryptionAtHost/register"
        );
        assert!(matches!(
            parse_route(&p, sub).unwrap(),
            Route::Feature(_, true)
        ));
        assert_eq!(
            parse_route("/subscriptions/other/resourceGroups/x", sub)
                .unwrap_err()
                .code,
            "SubscriptionNotFound"
        );
        assert!(query_has(
            "api-version=1&%24expand=instanceView",
            "$expand",
            "instanceview"
        ));
        assert!(query_has("a=1&monitor=true", "monitor", "true"));
    }
}
