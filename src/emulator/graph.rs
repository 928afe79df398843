//! Azure Resource Graph (`POST /providers/Microsoft.ResourceGraph/resources`)
//! over the emulator's VMs: virtual machines only (the query text is not
//! interpreted beyond that), `$top` (default and cap 100 per page here, to
//! exercise paging) and `$skipToken` paging, `x-ms-user-quota-*` headers.
//! A read: logged as not mutating.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{Method, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};

use super::Inner;

/// Rows per page at most.
pub const PAGE_CAP: usize = 100;

/// True for the Resource Graph path.
pub(crate) fn is_graph_path(path: &str) -> bool {
    path.trim_end_matches('/')
        .eq_ignore_ascii_case("/providers/Microsoft.ResourceGraph/resources")
}

fn reply(status: u16, v: &Value) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::OK))
        .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
        .header("x-ms-user-quota-remaining", "14")
        .header("x-ms-user-quota-resets-after", "00:00:05")
        .body(Body::from(serde_json::to_vec(v).unwrap_or_default()))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

/// Serves one Resource Graph query.
pub(crate) async fn handle(inner: Arc<Inner>, req: Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let authed = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.len() > 7 && v[..7].eq_ignore_ascii_case("bearer "));
    let done = |status: u16, v: Value| {
        inner.record(&method, &path, false, status, None);
        reply(status, &v)
    };
    if !authed {
        return done(
            401,
            json!({"error": {"code": "AuthenticationFailed", "message": "missing Bearer token"}}),
        );
    }
    if method != Method::POST {
        return done(
            405,
            json!({"error": {"code": "MethodNotAllowed", "message": "use POST"}}),
        );
    }
    let body: Value = match axum::body::to_bytes(req.into_body(), 1 << 20).await {
        Ok(b) => serde_json::from_slice(&b).unwrap_or(Value::Null),
        Err(_) => Value::Null,
    };
    let Some(query) = body.get("query").and_then(Value::as_str) else {
        return done(
            400,
            json!({"error": {"code": "BadRequest", "message": "the request has no query"}}),
        );
    };
    let subs: Vec<String> = body
        .get("subscriptions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_ascii_lowercase))
        .collect();
    let wants_vms = query
        .to_ascii_lowercase()
        .contains("microsoft.compute/virtualmachines");
    let top = body
        .pointer("/options/$top")
        .and_then(Value::as_u64)
        .map(|t| t as usize)
        .unwrap_or(PAGE_CAP)
        .clamp(1, PAGE_CAP);
    let skip: usize = body
        .pointer("/options/$skipToken")
        .and_then(Value::as_str)
        .and_then(|t| t.strip_prefix("emu-skip-"))
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    // Only VMs of the requested subscriptions (all served when none is named).
    let rows: Vec<Value> = if wants_vms {
        let list = {
            let mut w = inner.world.lock().unwrap_or_else(|p| p.into_inner());
            w.advance(inner.clock.now());
            w.vm_list(None, None)
        };
        list.get("value")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|v| {
                let sub = v
                    .get("id")
                    .and_then(Value::as_str)
                    .map(super::world::sub_of)
                    .unwrap_or("")
                    .to_ascii_lowercase();
                subs.is_empty() || subs.contains(&sub)
            })
            .map(|v| {
                json!({
                    "id": v.get("id"), "name": v.get("name"), "type": "microsoft.compute/virtualmachines",
                    "resourceGroup": v.get("id").and_then(Value::as_str).and_then(|s| s.split('/').nth(4)).map(str::to_ascii_lowercase),
                    "subscriptionId": v.get("id").and_then(Value::as_str).map(super::world::sub_of), "location": v.get("location"), "tags": v.get("tags"),
                })
            })
            .collect()
    } else {
        Vec::new()
    };
    let total = rows.len();
    let page: Vec<Value> = rows.into_iter().skip(skip).take(top).collect();
    let mut out = json!({
        "totalRecords": total, "count": page.len(), "facets": [],
        "resultTruncated": "false", "data": page,
    });
    if skip + top < total {
        out["$skipToken"] = json!(format!("emu-skip-{}", skip + top));
    }
    done(200, out)
}
