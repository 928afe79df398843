//! The page-blob data plane over HTTP (path-style SAS URLs `/{account}/{container}/abcd?...`).
//! Filled in by the storage owner; see `blob.rs` for the model.
//!
//! Operations (facts §4): `HEAD` (Get Blob Properties), `GET` (ranged read),
//! `GET ?comp=pagelist` (Get Page Ranges, paged, and the managed-disk diff
//! with `x-ms-previous-snapshot-url`), `PUT ?comp=page` (Put Page `update` /
//! `clear`, and Put Page From URL with `x-ms-copy-source`).
//!
//! Decisions:
//! - `x-ms-version` missing means `2025-05-05`. `marker`/`maxresults` need
//!   ≥ 2020-10-02, the diff header ≥ 2019-07-07, Put Page From URL
//!   ≥ 2018-11-09 (the recorded fixture uses 2018-11-09); older gives 400
//!   `InvalidHeaderValue`. Below 2020-10-02 a page list is not paged (as Azure
//!   before paging existed); from 2020-10-02 one answer holds at most
//!   `min(maxresults, 10000, page_list_page_size)` ranges and ends with
//!   `<NextMarker>m</NextMarker>` or `<NextMarker />`.
//! - XML answers start with a UTF-8 BOM and the declaration, as recorded.
//! - Writes are paced per target blob at the Standard HDD bandwidth of its
//!   size (`blob::upload_bandwidth`): the answer is held until the blob's
//!   bandwidth reservation ends, in simulated time. Reads are not paced.
//! - `x-ms-content-crc64` of a Put Page is the real Azure CRC-64 of the body.
//!   For Put Page From URL it is the real CRC-64 when the caller sent
//!   `x-ms-source-content-crc64` (which is verified), else a stand-in derived
//!   from the copied extent descriptors (cheap; equal for equal content).
//! - `Content-MD5` on Put Page is not verified (no MD5 here);
//!   `x-ms-source-content-md5` is refused with 400 like AzCopy refuses MD5 for
//!   managed disks.
//! - An injected `503 ServerBusy` carries a [`StorageFault`] response
//!   extension so the request log can name the fault.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::Response;
use base64::prelude::*;

use super::blob::{AccessError, BlobId, BlobProps, BlobStore, DiffError, PAGE, crc64};

/// Response extension naming an injected fault (for the request log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StorageFault(pub &'static str);

/// `x-ms-version` assumed when the header is missing.
pub const DEFAULT_VERSION: &str = "2025-05-05";
const MIB: u64 = 1 << 20;
/// Largest Put Page / Put Page From URL range.
const MAX_PAGE_WRITE: u64 = 4 * MIB;
/// Most body bytes read (and dropped) before an oversized Put Page is refused.
const DRAIN_LIMIT: usize = 16 * MIB as usize;
/// Largest GET without a range.
const MAX_WHOLE_GET: u64 = 64 * MIB;
/// Largest ranged GET.
const MAX_RANGE_GET: u64 = 256 * MIB;
/// Azure's cap on `maxresults`.
const MAX_RESULTS_CAP: usize = 10_000;

const MSG_AUTH: &str = "Server failed to authenticate the request. Make sure the value of Authorization header is formed correctly including the signature.";
const MSG_PERM: &str =
    "This request is not authorized to perform this operation using this permission.";
const MSG_NOT_FOUND: &str = "The specified blob does not exist.";
const MSG_HEADER: &str = "The value for one of the HTTP headers is not in the correct format.";
const MSG_MISSING: &str = "An HTTP header that's mandatory for this request is not specified.";
const MSG_PAGE_RANGE: &str = "The page range specified is invalid.";
const MSG_RANGE: &str = "The range specified is invalid for the current size of the resource.";
const MSG_TOO_LARGE: &str =
    "The request body is too large and exceeds the maximum permissible limit.";
const MSG_QUERY: &str =
    "Value for one of the query parameters specified in the request URI is invalid.";
const MSG_QUERY_RANGE: &str =
    "One of the query parameters specified in the request URI is outside the permissible range.";

/// An error answer.
#[derive(Debug)]
struct SErr {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// Extra XML elements (`HeaderName`, `AuthenticationErrorDetail`, ...).
    xml: Vec<(&'static str, String)>,
    /// Extra response headers.
    headers: Vec<(&'static str, String)>,
    fault: Option<&'static str>,
}

impl SErr {
    fn new(status: u16, code: &'static str, message: impl Into<String>) -> SErr {
        SErr {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            code,
            message: message.into(),
            xml: Vec::new(),
            headers: Vec::new(),
            fault: None,
        }
    }
    fn xml(mut self, name: &'static str, value: impl Into<String>) -> SErr {
        self.xml.push((name, value.into()));
        self
    }
    fn header(mut self, name: &'static str, value: impl Into<String>) -> SErr {
        self.headers.push((name, value.into()));
        self
    }
    fn bad_header(name: &str, value: &str) -> SErr {
        SErr::new(400, "InvalidHeaderValue", MSG_HEADER)
            .xml("HeaderName", name)
            .xml("HeaderValue", value)
    }
    fn missing(name: &str) -> SErr {
        SErr::new(400, "MissingRequiredHeader", MSG_MISSING).xml("HeaderName", name)
    }
    fn bad_query(name: &str, value: &str) -> SErr {
        SErr::new(400, "InvalidQueryParameterValue", MSG_QUERY)
            .xml("QueryParameterName", name)
            .xml("QueryParameterValue", value)
    }
    fn page_range() -> SErr {
        SErr::new(416, "InvalidPageRange", MSG_PAGE_RANGE)
    }
    fn too_large() -> SErr {
        SErr::new(413, "RequestBodyTooLarge", MSG_TOO_LARGE)
    }
    fn not_found() -> SErr {
        SErr::new(404, "BlobNotFound", MSG_NOT_FOUND)
    }
    fn access(e: AccessError) -> SErr {
        match e {
            AccessError::NotFound => SErr::not_found(),
            AccessError::AuthFailed(d) => {
                SErr::new(403, "AuthenticationFailed", MSG_AUTH).xml("AuthenticationErrorDetail", d)
            }
            AccessError::PermissionMismatch => {
                SErr::new(403, "AuthorizationPermissionMismatch", MSG_PERM)
            }
        }
    }
    /// The source of a Put Page From URL failed: status mirrors the source's.
    fn copy_source(status: u16, code: &'static str, message: &str) -> SErr {
        SErr::new(status, "CannotVerifyCopySource", message)
            .header("x-ms-copy-source-status-code", status.to_string())
            .header("x-ms-copy-source-error-code", code)
    }
    fn copy_source_access(e: AccessError) -> SErr {
        match e {
            AccessError::NotFound => SErr::copy_source(404, "BlobNotFound", MSG_NOT_FOUND),
            AccessError::AuthFailed(_) => SErr::copy_source(403, "AuthenticationFailed", MSG_AUTH),
            AccessError::PermissionMismatch => {
                SErr::copy_source(403, "AuthorizationPermissionMismatch", MSG_PERM)
            }
        }
    }
}

/// Per-request context for the common headers.
struct Ctx {
    store: Arc<BlobStore>,
    version: String,
    request_id: String,
    client_request_id: Option<String>,
    head: bool,
}

impl Ctx {
    fn builder(&self, status: StatusCode) -> axum::http::response::Builder {
        let mut b = Response::builder()
            .status(status)
            .header("x-ms-request-id", &self.request_id)
            .header("x-ms-version", &self.version)
            .header(header::DATE, self.store.http_date(self.store.clock().now()))
            .header(
                header::SERVER,
                "Windows-Azure-Blob/1.0 Microsoft-HTTPAPI/2.0",
            );
        if let Some(c) = &self.client_request_id {
            b = b.header("x-ms-client-request-id", c);
        }
        b
    }

    fn with_props(
        &self,
        b: axum::http::response::Builder,
        p: &BlobProps,
    ) -> axum::http::response::Builder {
        b.header(header::ETAG, &p.etag)
            .header(header::LAST_MODIFIED, self.store.http_date(p.last_modified))
    }

    fn error(&self, e: SErr) -> Response {
        let mut b = self.builder(e.status).header("x-ms-error-code", e.code);
        for (k, v) in &e.headers {
            b = b.header(*k, v);
        }
        let resp = if self.head {
            b.header(header::CONTENT_LENGTH, "0").body(Body::empty())
        } else {
            let mut xml =
                String::from("\u{FEFF}<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>");
            xml.push_str(e.code);
            xml.push_str("</Code><Message>");
            xml.push_str(&xml_escape(&format!(
                "{}\nRequestId:{}\nTime:{}",
                e.message,
                self.request_id,
                self.store.http_date(self.store.clock().now())
            )));
            xml.push_str("</Message>");
            for (k, v) in &e.xml {
                xml.push_str(&format!("<{k}>{}</{k}>", xml_escape(v)));
            }
            xml.push_str("</Error>");
            b.header(header::CONTENT_TYPE, "application/xml")
                .body(Body::from(xml))
        };
        let mut resp = resp.unwrap_or_else(|_| internal());
        if let Some(f) = e.fault {
            resp.extensions_mut().insert(StorageFault(f));
        }
        resp
    }
}

fn internal() -> Response {
    let mut r = Response::new(Body::from("internal error building the response"));
    *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    r
}

fn xml_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            c => o.push(c),
        }
    }
    o
}

fn hdr<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn valid_version(v: &str) -> bool {
    let b = v.as_bytes();
    b.len() == 10
        && b.iter().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                *c == b'-'
            } else {
                c.is_ascii_digit()
            }
        })
}

/// `bytes=a-b` or `bytes=a-` → `(a, Some(b) | None)`.
fn parse_range(v: &str) -> Option<(u64, Option<u64>)> {
    let r = v.trim().strip_prefix("bytes=")?;
    if r.contains(',') {
        return None;
    }
    let (a, b) = r.split_once('-')?;
    let a: u64 = a.trim().parse().ok()?;
    let b = b.trim();
    if b.is_empty() {
        return Some((a, None));
    }
    let b: u64 = b.parse().ok()?;
    (b >= a).then_some((a, Some(b)))
}

/// The range header of a request: `x-ms-range` wins over `Range`.
fn range_header(h: &HeaderMap) -> Option<(&'static str, &str)> {
    if let Some(v) = hdr(h, "x-ms-range") {
        return Some(("x-ms-range", v));
    }
    hdr(h, "range").map(|v| ("Range", v))
}

/// A page-aligned `bytes=a-b` range, as `(start, len)`.
fn page_range(name: &str, v: &str) -> Result<(u64, u64), SErr> {
    let (a, b) = parse_range(v).ok_or_else(|| SErr::bad_header(name, v))?;
    let b = b.ok_or_else(|| SErr::bad_header(name, v))?;
    if a % PAGE != 0 || (b + 1) % PAGE != 0 {
        return Err(SErr::page_range());
    }
    Ok((a, b - a + 1))
}

fn encode_marker(off: u64) -> String {
    BASE64_STANDARD.encode(format!("ade2!{off}"))
}

fn decode_marker(m: &str) -> Option<u64> {
    let raw = BASE64_STANDARD.decode(m.trim().replace(' ', "+")).ok()?;
    let s = String::from_utf8(raw).ok()?;
    s.strip_prefix("ade2!")?.parse().ok()
}

/// `(account, container, blob)` of a path-style blob URL path.
fn split_path(path: &str) -> Option<(String, String, String)> {
    let mut it = path.trim_start_matches('/').splitn(3, '/');
    let a = it.next()?.to_string();
    let c = it.next()?.to_string();
    let b = it.next()?.to_string();
    (!a.is_empty() && !c.is_empty() && !b.is_empty()).then_some((a, c, b))
}

fn query_map(q: Option<&str>) -> HashMap<String, String> {
    url::form_urlencoded::parse(q.unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

/// A SAS URL of this emulator (`x-ms-copy-source`, `x-ms-previous-snapshot-url`):
/// `(account, container, blob, query)`. The host is not checked: the random
/// signature already ties the URL to this store.
fn parse_sas_url(u: &str) -> Option<(String, String, String, HashMap<String, String>)> {
    let url = url::Url::parse(u.trim()).ok()?;
    let (a, c, b) = split_path(url.path())?;
    Some((a, c, b, query_map(url.query())))
}

fn authorize_url(store: &BlobStore, u: &str, write: bool) -> Result<BlobId, Option<AccessError>> {
    let (a, c, b, q) = parse_sas_url(u).ok_or(None)?;
    store
        .authorize(
            &a,
            &c,
            &b,
            q.get("sig").map(String::as_str),
            q.get("si").map(String::as_str),
            write,
        )
        .map_err(Some)
}

/// `If-Match`, `If-None-Match`, sequence-number conditions and leases on writes.
fn check_conditions(h: &HeaderMap, p: &BlobProps) -> Result<(), SErr> {
    let cond = || {
        SErr::new(
            412,
            "ConditionNotMet",
            "The condition specified using HTTP conditional header(s) is not met.",
        )
    };
    if let Some(m) = hdr(h, "if-match")
        && m.trim() != "*"
        && !m.split(',').any(|e| e.trim() == p.etag)
    {
        return Err(cond());
    }
    if let Some(m) = hdr(h, "if-none-match")
        && (m.trim() == "*" || m.split(',').any(|e| e.trim() == p.etag))
    {
        return Err(cond());
    }
    let seq = |name: &str, ok: fn(u64) -> bool| -> Result<(), SErr> {
        match hdr(h, name) {
            None => Ok(()),
            Some(v) => match v.trim().parse::<u64>() {
                Ok(n) if ok(n) => Ok(()),
                Ok(_) => Err(SErr::new(
                    412,
                    "SequenceNumberConditionNotMet",
                    "The sequence number condition specified was not met.",
                )),
                Err(_) => Err(SErr::bad_header(name, v)),
            },
        }
    };
    // The sequence number is always 0.
    seq("x-ms-if-sequence-number-le", |_| true)?;
    seq("x-ms-if-sequence-number-lt", |n| n > 0)?;
    seq("x-ms-if-sequence-number-eq", |n| n == 0)?;
    if hdr(h, "x-ms-lease-id").is_some() {
        return Err(SErr::new(
            412,
            "LeaseNotPresentWithBlobOperation",
            "There is currently no lease on the blob.",
        ));
    }
    Ok(())
}

/// Answers one data-plane request (HEAD, GET, `comp=pagelist`, `comp=page`).
pub async fn handle(store: Arc<BlobStore>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let mut ctx = Ctx {
        store: store.clone(),
        version: DEFAULT_VERSION.to_string(),
        request_id: uuid::Uuid::new_v4().to_string(),
        client_request_id: hdr(&parts.headers, "x-ms-client-request-id").map(str::to_string),
        head: parts.method == Method::HEAD,
    };
    if store.roll_server_busy() {
        let msg = if parts.method == Method::PUT {
            "Ingress is over the account limit."
        } else {
            "The server is busy."
        };
        let mut e = SErr::new(503, "ServerBusy", msg);
        e.fault = Some("server_busy");
        return ctx.error(e);
    }
    if let Some(v) = hdr(&parts.headers, "x-ms-version") {
        if !valid_version(v) {
            return ctx.error(SErr::bad_header("x-ms-version", v));
        }
        ctx.version = v.to_string();
    }
    let data_call = parts.method == Method::PUT
        || (parts.method == Method::GET && !parts.uri.query().unwrap_or("").contains("comp="));
    let _gauge = data_call.then(|| InFlight::enter(&store));
    match route(&ctx, &parts, body).await {
        Ok(r) => r,
        Err(e) => ctx.error(e),
    }
}

/// Counts a data call in flight for as long as it lives.
struct InFlight(Arc<BlobStore>);

impl InFlight {
    fn enter(store: &Arc<BlobStore>) -> InFlight {
        store.count(|s| {
            s.data_in_flight += 1;
            s.data_in_flight_max = s.data_in_flight_max.max(s.data_in_flight);
        });
        InFlight(store.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0
            .count(|s| s.data_in_flight = s.data_in_flight.saturating_sub(1));
    }
}

async fn route(
    ctx: &Ctx,
    parts: &axum::http::request::Parts,
    body: Body,
) -> Result<Response, SErr> {
    let Some((account, container, blob)) = split_path(parts.uri.path()) else {
        return Err(SErr::new(
            400,
            "InvalidUri",
            "The requested URI does not represent any resource on the server.",
        ));
    };
    let q = query_map(parts.uri.query());
    let comp = q.get("comp").map(|c| c.to_ascii_lowercase());
    let auth = |write: bool| {
        ctx.store
            .authorize(
                &account,
                &container,
                &blob,
                q.get("sig").map(String::as_str),
                q.get("si").map(String::as_str),
                write,
            )
            .map_err(SErr::access)
    };
    match (&parts.method, comp.as_deref()) {
        (&Method::HEAD, None) => get_properties(ctx, auth(false)?),
        (&Method::GET, None) => get_blob(ctx, &parts.headers, auth(false)?).await,
        (&Method::GET, Some("pagelist")) => {
            let id = auth(false)?;
            get_page_ranges(ctx, &parts.headers, &q, id)
        }
        (&Method::PUT, Some("page")) => {
            let id = auth(true)?;
            if parts.headers.contains_key("x-ms-copy-source") {
                put_page_from_url(ctx, &parts.headers, body, id).await
            } else {
                put_page(ctx, &parts.headers, body, id).await
            }
        }
        (&Method::HEAD | &Method::GET | &Method::PUT, Some(c)) => Err(SErr::bad_query("comp", c)),
        (&Method::PUT, None) => Err(SErr::new(
            409,
            "OperationNotAllowedOnManagedDisk",
            "This operation is not permitted on a managed disk import/export blob; the blob already exists.",
        )),
        _ => Err(SErr::new(
            405,
            "UnsupportedHttpVerb",
            "The resource doesn't support specified Http Verb.",
        )),
    }
}

fn get_properties(ctx: &Ctx, id: BlobId) -> Result<Response, SErr> {
    let p = ctx.store.props(&id).ok_or_else(SErr::not_found)?;
    ctx.with_props(ctx.builder(StatusCode::OK), &p)
        .header(header::CONTENT_LENGTH, p.len.to_string())
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::ACCEPT_RANGES, "bytes")
        .header("x-ms-blob-type", "PageBlob")
        .header("x-ms-blob-sequence-number", "0")
        .header("x-ms-server-encrypted", "true")
        .header("x-ms-lease-status", "unlocked")
        .header("x-ms-lease-state", "available")
        .body(Body::empty())
        .map_err(|_| SErr::new(500, "InternalError", "response"))
}

async fn get_blob(ctx: &Ctx, h: &HeaderMap, id: BlobId) -> Result<Response, SErr> {
    let p = ctx.store.props(&id).ok_or_else(SErr::not_found)?;
    let (start, len, partial) = match range_header(h) {
        None => {
            if p.len > MAX_WHOLE_GET {
                return Err(SErr::new(
                    400,
                    "OutOfRangeInput",
                    format!(
                        "The emulator serves a GET without a Range only for blobs up to {MAX_WHOLE_GET} bytes; this blob has {} bytes. Send x-ms-range.",
                        p.len
                    ),
                ));
            }
            (0, p.len, false)
        }
        Some((name, v)) => {
            let (a, b) = parse_range(v).ok_or_else(|| SErr::bad_header(name, v))?;
            if a >= p.len {
                return Err(SErr::new(416, "InvalidRange", MSG_RANGE)
                    .header("content-range", format!("bytes */{}", p.len)));
            }
            let end = b.unwrap_or(p.len - 1).min(p.len - 1);
            (a, end - a + 1, true)
        }
    };
    if len > MAX_RANGE_GET {
        return Err(SErr::new(
            400,
            "OutOfRangeInput",
            format!("The emulator serves at most {MAX_RANGE_GET} bytes per ranged GET."),
        ));
    }
    let want_crc =
        hdr(h, "x-ms-range-get-content-crc64").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let want_md5 =
        hdr(h, "x-ms-range-get-content-md5").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    if want_crc && want_md5 {
        return Err(SErr::bad_header("x-ms-range-get-content-crc64", "true"));
    }
    if (want_crc || want_md5) && len > MAX_PAGE_WRITE {
        return Err(SErr::new(
            400,
            "OutOfRangeInput",
            "One of the request inputs is out of range.",
        ));
    }
    let src = ctx
        .store
        .source_range(&id, start, len)
        .ok_or_else(SErr::not_found)?;
    let (bytes, crc) = tokio::task::spawn_blocking(move || {
        let b = src.materialise();
        let c = want_crc.then(|| crc64(&b));
        (b, c)
    })
    .await
    .map_err(|_| SErr::new(500, "InternalError", "read failed"))?;
    ctx.store.count(|s| s.bytes_read += len);
    let mut b = ctx
        .with_props(
            ctx.builder(if partial {
                StatusCode::PARTIAL_CONTENT
            } else {
                StatusCode::OK
            }),
            &p,
        )
        .header(header::CONTENT_LENGTH, len.to_string())
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::ACCEPT_RANGES, "bytes")
        .header("x-ms-blob-type", "PageBlob")
        .header("x-ms-blob-sequence-number", "0")
        .header("x-ms-server-encrypted", "true");
    if partial {
        b = b.header(
            header::CONTENT_RANGE,
            format!("bytes {}-{}/{}", start, start + len - 1, p.len),
        );
    }
    if let Some(c) = crc {
        b = b.header("x-ms-content-crc64", BASE64_STANDARD.encode(c));
    }
    b.body(Body::from(bytes))
        .map_err(|_| SErr::new(500, "InternalError", "response"))
}

fn get_page_ranges(
    ctx: &Ctx,
    h: &HeaderMap,
    q: &HashMap<String, String>,
    id: BlobId,
) -> Result<Response, SErr> {
    let v = ctx.version.as_str();
    if let Some(ps) = q.get("prevsnapshot") {
        return Err(SErr::bad_query("prevsnapshot", ps).xml(
            "Reason",
            "Managed disk snapshots are diffed with the x-ms-previous-snapshot-url header.",
        ));
    }
    let paging = q.contains_key("marker") || q.contains_key("maxresults");
    if paging && v < "2020-10-02" {
        return Err(SErr::bad_header("x-ms-version", v));
    }
    let prev = match hdr(h, "x-ms-previous-snapshot-url") {
        None => None,
        Some(u) => {
            if v < "2019-07-07" {
                return Err(SErr::bad_header("x-ms-version", v));
            }
            match authorize_url(&ctx.store, u, false) {
                Ok(p) => Some(p),
                Err(None) => return Err(SErr::bad_header("x-ms-previous-snapshot-url", u)),
                Err(Some(AccessError::NotFound)) => {
                    return Err(SErr::new(
                        409,
                        "PreviousSnapshotNotFound",
                        "The previous snapshot is not found.",
                    ));
                }
                Err(Some(e)) => return Err(SErr::access(e)),
            }
        }
    };
    let p = ctx.store.props(&id).ok_or_else(SErr::not_found)?;
    let (from, to) = match range_header(h) {
        None => (0, p.len),
        Some((name, rv)) => {
            let (a, b) = parse_range(rv).ok_or_else(|| SErr::bad_header(name, rv))?;
            if a >= p.len {
                return Err(SErr::new(416, "InvalidRange", MSG_RANGE));
            }
            (a, b.map_or(p.len, |b| b.saturating_add(1)).min(p.len))
        }
    };
    let from = match q.get("marker").filter(|m| !m.is_empty()) {
        None => from,
        Some(m) => match decode_marker(m) {
            Some(off) if off >= from && off <= to => off,
            _ => return Err(SErr::bad_query("marker", m)),
        },
    };
    let max = if v >= "2020-10-02" {
        let requested = match q.get("maxresults") {
            None => MAX_RESULTS_CAP,
            Some(m) => match m.trim().parse::<i64>() {
                Ok(n) if n <= 0 => {
                    return Err(
                        SErr::new(400, "OutOfRangeQueryParameterValue", MSG_QUERY_RANGE)
                            .xml("QueryParameterName", "maxresults")
                            .xml("QueryParameterValue", m.as_str())
                            .xml("MinimumAllowed", "1")
                            .xml("MaximumAllowed", "2147483647"),
                    );
                }
                Ok(n) => usize::try_from(n).unwrap_or(usize::MAX),
                Err(_) => return Err(SErr::bad_query("maxresults", m)),
            },
        };
        requested
            .min(MAX_RESULTS_CAP)
            .min(ctx.store.config().page_list_page_size.max(1))
    } else {
        usize::MAX
    };
    let listing = ctx
        .store
        .page_list(&id, prev.as_ref(), from, to, max)
        .map_err(|e| match e {
            DiffError::NotFound => SErr::not_found(),
            DiffError::NotSameLineage => SErr::new(
                409,
                "PreviousSnapshotNotFound",
                "The previous snapshot is not found (it is not a snapshot of the same disk).",
            ),
        })?;
    ctx.store.count(|s| s.page_list_calls += 1);
    let mut xml = String::with_capacity(64 + listing.ranges.len() * 64);
    xml.push_str("\u{FEFF}<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<PageList>");
    for r in &listing.ranges {
        let tag = if r.clear { "ClearRange" } else { "PageRange" };
        xml.push_str(&format!(
            "<{tag}><Start>{}</Start><End>{}</End></{tag}>",
            r.start,
            r.end - 1
        ));
    }
    match listing.next {
        Some(n) => xml.push_str(&format!("<NextMarker>{}</NextMarker>", encode_marker(n))),
        None if v >= "2020-10-02" => xml.push_str("<NextMarker />"),
        None => {}
    }
    xml.push_str("</PageList>");
    ctx.with_props(ctx.builder(StatusCode::OK), &listing.props)
        .header(header::CONTENT_TYPE, "application/xml")
        .header("x-ms-blob-content-length", listing.props.len.to_string())
        .body(Body::from(xml))
        .map_err(|_| SErr::new(500, "InternalError", "response"))
}

/// The 201 answer of both page writes.
fn page_written(ctx: &Ctx, p: &BlobProps, crc: Option<[u8; 8]>) -> Result<Response, SErr> {
    let mut b = ctx
        .with_props(ctx.builder(StatusCode::CREATED), p)
        .header(header::CONTENT_LENGTH, "0")
        .header("x-ms-blob-sequence-number", "0")
        .header("x-ms-request-server-encrypted", "true");
    if let Some(c) = crc {
        b = b.header("x-ms-content-crc64", BASE64_STANDARD.encode(c));
    }
    b.body(Body::empty())
        .map_err(|_| SErr::new(500, "InternalError", "response"))
}

fn content_length(h: &HeaderMap) -> Result<Option<u64>, SErr> {
    match hdr(h, "content-length") {
        None => Ok(None),
        Some(v) => v
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| SErr::bad_header("Content-Length", v)),
    }
}

fn decode_crc_header(h: &HeaderMap, name: &str) -> Result<Option<[u8; 8]>, SErr> {
    match hdr(h, name) {
        None => Ok(None),
        Some(v) => {
            let raw = BASE64_STANDARD
                .decode(v.trim())
                .map_err(|_| SErr::bad_header(name, v))?;
            let arr: [u8; 8] = raw.try_into().map_err(|_| SErr::bad_header(name, v))?;
            Ok(Some(arr))
        }
    }
}

fn crc_mismatch() -> SErr {
    SErr::new(
        400,
        "Crc64Mismatch",
        "The CRC64 value specified in the request did not match with the CRC64 calculated by the server.",
    )
}

async fn put_page(ctx: &Ctx, h: &HeaderMap, body: Body, id: BlobId) -> Result<Response, SErr> {
    let mode = hdr(h, "x-ms-page-write").ok_or_else(|| SErr::missing("x-ms-page-write"))?;
    let (rname, rv) = range_header(h).ok_or_else(|| SErr::missing("x-ms-range"))?;
    let (at, len) = page_range(rname, rv)?;
    let p = ctx.store.props(&id).ok_or_else(SErr::not_found)?;
    if at.checked_add(len).is_none_or(|e| e > p.len) {
        return Err(SErr::page_range());
    }
    let declared = content_length(h)?;
    match mode.trim().to_ascii_lowercase().as_str() {
        "update" => {
            if len > MAX_PAGE_WRITE || declared.is_some_and(|d| d > MAX_PAGE_WRITE) {
                // Read (a bounded amount of) the body first: answering before
                // it arrived closes the connection under the client, which
                // then sees a broken pipe instead of this 413.
                let _ = axum::body::to_bytes(body, DRAIN_LIMIT).await;
                return Err(SErr::too_large());
            }
            if let Some(d) = declared
                && d != len
            {
                return Err(SErr::bad_header("Content-Length", &d.to_string()));
            }
            check_conditions(h, &p)?;
            let bytes = axum::body::to_bytes(body, len as usize + 1)
                .await
                .map_err(|_| SErr::too_large())?;
            if bytes.len() as u64 != len {
                return Err(SErr::bad_header("Content-Length", &bytes.len().to_string()));
            }
            let want = decode_crc_header(h, "x-ms-content-crc64")?;
            let (crc, pieces) = tokio::task::spawn_blocking(move || {
                let crc = crc64(&bytes);
                (crc, BlobStore::classify_body(bytes.to_vec()))
            })
            .await
            .map_err(|_| SErr::new(500, "InternalError", "write failed"))?;
            if want.is_some_and(|w| w != crc) {
                return Err(crc_mismatch());
            }
            let done = ctx
                .store
                .apply_write(&id, at, len, pieces, len)
                .ok_or_else(SErr::not_found)?;
            ctx.store.count(|s| {
                s.put_page += 1;
                s.bytes_written += len;
            });
            ctx.store.clock().sleep(done.delay).await;
            page_written(ctx, &done.props, Some(crc))
        }
        "clear" => {
            if declared.is_some_and(|d| d != 0) {
                return Err(SErr::bad_header(
                    "Content-Length",
                    &declared.unwrap_or(0).to_string(),
                ));
            }
            check_conditions(h, &p)?;
            let bytes = axum::body::to_bytes(body, 1)
                .await
                .map_err(|_| SErr::bad_header("Content-Length", "non-zero"))?;
            if !bytes.is_empty() {
                return Err(SErr::bad_header("Content-Length", &bytes.len().to_string()));
            }
            let done = ctx
                .store
                .apply_write(&id, at, len, Vec::new(), 0)
                .ok_or_else(SErr::not_found)?;
            ctx.store.count(|s| s.put_page += 1);
            page_written(ctx, &done.props, None)
        }
        _ => Err(SErr::bad_header("x-ms-page-write", mode)),
    }
}

async fn put_page_from_url(
    ctx: &Ctx,
    h: &HeaderMap,
    body: Body,
    id: BlobId,
) -> Result<Response, SErr> {
    let v = ctx.version.as_str();
    if v < "2018-11-09" {
        return Err(SErr::bad_header("x-ms-version", v));
    }
    let mode = hdr(h, "x-ms-page-write").ok_or_else(|| SErr::missing("x-ms-page-write"))?;
    if !mode.trim().eq_ignore_ascii_case("update") {
        return Err(SErr::bad_header("x-ms-page-write", mode));
    }
    let (rname, rv) = range_header(h).ok_or_else(|| SErr::missing("x-ms-range"))?;
    let srv = hdr(h, "x-ms-source-range").ok_or_else(|| SErr::missing("x-ms-source-range"))?;
    if let Some(d) = content_length(h)?
        && d != 0
    {
        return Err(SErr::bad_header("Content-Length", &d.to_string()));
    }
    let want_crc = decode_crc_header(h, "x-ms-source-content-crc64")?;
    if let Some(md5) = hdr(h, "x-ms-source-content-md5") {
        if want_crc.is_some() {
            return Err(SErr::bad_header("x-ms-source-content-md5", md5));
        }
        return Err(SErr::bad_header("x-ms-source-content-md5", md5).xml(
            "Reason",
            "Content-MD5 is not supported for managed disk uploads.",
        ));
    }
    let (at, len) = page_range(rname, rv)?;
    let (src_at, src_len) = page_range("x-ms-source-range", srv)?;
    if len != src_len {
        return Err(SErr::bad_header("x-ms-source-range", srv));
    }
    if len > MAX_PAGE_WRITE {
        return Err(SErr::too_large());
    }
    let p = ctx.store.props(&id).ok_or_else(SErr::not_found)?;
    if at.checked_add(len).is_none_or(|e| e > p.len) {
        return Err(SErr::page_range());
    }
    check_conditions(h, &p)?;
    let bytes = axum::body::to_bytes(body, 1)
        .await
        .map_err(|_| SErr::bad_header("Content-Length", "non-zero"))?;
    if !bytes.is_empty() {
        return Err(SErr::bad_header("Content-Length", &bytes.len().to_string()));
    }
    let src_url = hdr(h, "x-ms-copy-source").unwrap_or_default();
    let src = match authorize_url(&ctx.store, src_url, false) {
        Ok(s) => s,
        Err(None) => return Err(SErr::bad_header("x-ms-copy-source", src_url)),
        Err(Some(e)) => return Err(SErr::copy_source_access(e)),
    };
    let range = ctx
        .store
        .source_range(&src, src_at, len)
        .ok_or_else(|| SErr::copy_source(416, "InvalidRange", MSG_RANGE))?;
    let crc = match want_crc {
        Some(w) => {
            let r = range.clone();
            let got = tokio::task::spawn_blocking(move || crc64(&r.materialise()))
                .await
                .map_err(|_| SErr::new(500, "InternalError", "crc failed"))?;
            if got != w {
                return Err(crc_mismatch());
            }
            got
        }
        None => range.fingerprint(),
    };
    let done = ctx
        .store
        .apply_write(&id, at, len, BlobStore::source_pieces(range), len)
        .ok_or_else(SErr::not_found)?;
    ctx.store.count(|s| {
        s.put_page_from_url += 1;
        s.bytes_written += len;
    });
    ctx.store.clock().sleep(done.delay).await;
    page_written(ctx, &done.props, Some(crc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::blob::{SasAccess, StorageConfig};
    use crate::emulator::clock::SimClock;

    struct Srv {
        store: Arc<BlobStore>,
        client: reqwest::Client,
        _task: tokio::task::JoinHandle<()>,
    }

    async fn serve(scale: f64, cfg: StorageConfig) -> Srv {
        let store = BlobStore::new(SimClock::new(scale), cfg);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        store.set_base_url(&format!("http://{addr}"));
        let s2 = store.clone();
        let app = axum::Router::new().fallback(move |req: Request| {
            let s = s2.clone();
            async move { handle(s, req).await }
        });
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        Srv {
            store,
            client,
            _task: task,
        }
    }

    fn with(url: &str, extra: &str) -> String {
        format!("{url}&{extra}")
    }

    fn code(r: &reqwest::Response) -> String {
        r.headers()
            .get("x-ms-error-code")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    }

    fn parse_list(xml: &str) -> (Vec<(bool, u64, u64)>, Option<String>) {
        assert!(
            xml.starts_with("\u{FEFF}<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<PageList>"),
            "{xml}"
        );
        let mut out = Vec::new();
        let mut rest = xml;
        while let Some(i) = rest.find("Range><Start>") {
            let clear = rest[..i].ends_with("<Clear");
            let r = &rest[i + 13..];
            let s: u64 = r[..r.find('<').unwrap()].parse().unwrap();
            let e0 = r.find("<End>").unwrap() + 5;
            let e: u64 = r[e0..e0 + r[e0..].find('<').unwrap()].parse().unwrap();
            out.push((clear, s, e));
            rest = &r[e0..];
        }
        let next = xml.find("<NextMarker>").map(|i| {
            let r = &xml[i + 12..];
            r[..r.find('<').unwrap()].to_string()
        });
        (out, next)
    }

    async fn list_all(
        srv: &Srv,
        url: &str,
        prev: Option<&str>,
        maxresults: Option<usize>,
    ) -> Vec<(bool, u64, u64)> {
        let mut out = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let mut u = with(url, "comp=pagelist");
            if let Some(m) = maxresults {
                u = with(&u, &format!("maxresults={m}"));
            }
            if let Some(m) = &marker {
                u = with(
                    &u,
                    &format!(
                        "marker={}",
                        url::form_urlencoded::byte_serialize(m.as_bytes()).collect::<String>()
                    ),
                );
            }
            let mut rq = srv.client.get(&u).header("x-ms-version", "2025-05-05");
            if let Some(p) = prev {
                rq = rq.header("x-ms-previous-snapshot-url", p);
            }
            let r = rq.send().await.unwrap();
            assert_eq!(r.status(), 200);
            assert!(r.headers().contains_key("x-ms-blob-content-length"));
            let (ranges, next) = parse_list(&r.text().await.unwrap());
            out.extend(ranges);
            match next {
                Some(m) => marker = Some(m),
                None => break,
            }
        }
        out
    }

    #[tokio::test]
    async fn crc64_matches_the_recorded_fixture() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/azure/fixtures/storage/GetManagedDiskPageRangesDiffAsync.json"
        );
        let Ok(text) = std::fs::read_to_string(path) else {
            eprintln!("fixture not found at {path}; skipping");
            return;
        };
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let entry = v["Entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["ResponseHeaders"]["x-ms-content-crc64"].is_string())
            .unwrap();
        let body = BASE64_STANDARD
            .decode(entry["RequestBody"].as_str().unwrap())
            .unwrap();
        let want = entry["ResponseHeaders"]["x-ms-content-crc64"]
            .as_str()
            .unwrap();
        assert_eq!(BASE64_STANDARD.encode(crc64(&body)), want);
        assert_eq!(want, "dgpPfh+29o8=");
    }

    #[tokio::test]
    async fn head_get_and_page_list() {
        let srv = serve(
            1.0,
            StorageConfig {
                page_list_page_size: 3,
                ..Default::default()
            },
        )
        .await;
        let len = 256 * MIB + 512;
        let id = srv.store.create_source(len, 0.5, 4);
        let url = srv.store.grant(&id, SasAccess::Read, 1e8).unwrap();
        let r = srv.client.head(&url).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-length"], len.to_string().as_str());
        assert_eq!(r.headers()["x-ms-blob-type"], "PageBlob");
        assert_eq!(r.headers()["x-ms-blob-sequence-number"], "0");
        for h in [
            "x-ms-request-id",
            "x-ms-version",
            "date",
            "etag",
            "last-modified",
        ] {
            assert!(r.headers().contains_key(h), "{h}");
        }
        // Ranged read equals the store's bytes.
        let r = srv
            .client
            .get(&url)
            .header("x-ms-range", "bytes=1000-70000")
            .header("x-ms-range-get-content-crc64", "true")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 206);
        assert_eq!(
            r.headers()["content-range"],
            format!("bytes 1000-70000/{len}").as_str()
        );
        let crc = r.headers()["x-ms-content-crc64"]
            .to_str()
            .unwrap()
            .to_string();
        let got = r.bytes().await.unwrap();
        assert_eq!(got.to_vec(), srv.store.read(&id, 1000, 69001).unwrap());
        assert_eq!(crc, BASE64_STANDARD.encode(crc64(&got)));
        // Out of range.
        let r = srv
            .client
            .get(&url)
            .header("Range", format!("bytes={len}-"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 416);
        assert_eq!(code(&r), "InvalidRange");
        // Whole blob too large without a range.
        let r = srv.client.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 400);
        // Footer readable.
        let r = srv
            .client
            .get(&url)
            .header("x-ms-range", format!("bytes={}-{}", len - 512, len - 1))
            .send()
            .await
            .unwrap();
        assert_eq!(&r.bytes().await.unwrap()[..8], b"conectix");
        // Page list: paged by 3, every range once, matches the store.
        let all = list_all(&srv, &url, None, None).await;
        let want: Vec<(bool, u64, u64)> = {
            let l = srv.store.page_list(&id, None, 0, len, usize::MAX).unwrap();
            l.ranges
                .iter()
                .map(|r| (false, r.start, r.end - 1))
                .collect()
        };
        assert!(want.len() > 3);
        assert_eq!(all, want);
        assert_eq!(list_all(&srv, &url, None, Some(2)).await, want);
        // maxresults <= 0 and bad markers are refused.
        let r = srv
            .client
            .get(with(&url, "comp=pagelist&maxresults=0"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            (r.status().as_u16(), code(&r)),
            (400, "OutOfRangeQueryParameterValue".into())
        );
        let r = srv
            .client
            .get(with(&url, "comp=pagelist&marker=zzz"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        // Old versions cannot page.
        let r = srv
            .client
            .get(with(&url, "comp=pagelist&maxresults=5"))
            .header("x-ms-version", "2019-12-12")
            .send()
            .await
            .unwrap();
        assert_eq!(
            (r.status().as_u16(), code(&r)),
            (400, "InvalidHeaderValue".into())
        );
        // Old version without paging: everything at once, no NextMarker (as recorded).
        let r = srv
            .client
            .get(with(&url, "comp=pagelist"))
            .header("x-ms-version", "2020-02-10")
            .send()
            .await
            .unwrap();
        let body = r.text().await.unwrap();
        assert!(!body.contains("NextMarker"));
        assert_eq!(parse_list(&body).0, want);
        // Restricted by x-ms-range.
        let (s0, e0) = (want[1].1 + 512, want[1].2);
        let r = srv
            .client
            .get(with(&url, "comp=pagelist"))
            .header("x-ms-range", format!("bytes={s0}-{e0}"))
            .send()
            .await
            .unwrap();
        let body = r.text().await.unwrap();
        let tail = format!(
            "<PageList><PageRange><Start>{s0}</Start><End>{e0}</End></PageRange><NextMarker /></PageList>"
        );
        assert!(body.ends_with(&tail), "{body}");
        assert!(srv.store.stats().page_list_calls >= 5);
    }

    #[tokio::test]
    async fn sas_failures() {
        let srv = serve(1000.0, StorageConfig::default()).await;
        let id = srv.store.create_source(32 * MIB + 512, 0.5, 4);
        let url = srv.store.grant(&id, SasAccess::Read, 1e8).unwrap();
        // Tampered signature.
        let bad = url.replace("&sig=", "&sig=x");
        let r = srv.client.head(&bad).send().await.unwrap();
        assert_eq!(
            (r.status().as_u16(), code(&r)),
            (403, "AuthenticationFailed".into())
        );
        let r = srv
            .client
            .get(&bad)
            .header("x-ms-range", "bytes=0-511")
            .send()
            .await
            .unwrap();
        let body = r.text().await.unwrap();
        assert!(body.contains("<Code>AuthenticationFailed</Code><Message>Server failed to authenticate the request."), "{body}");
        // Read SAS cannot write.
        let r = srv
            .client
            .put(with(&url, "comp=page"))
            .header("x-ms-page-write", "update")
            .header("x-ms-range", "bytes=0-511")
            .body(vec![1u8; 512])
            .send()
            .await
            .unwrap();
        assert_eq!(
            (r.status().as_u16(), code(&r)),
            (403, "AuthorizationPermissionMismatch".into())
        );
        // Unknown blob.
        let gone = url.replace(&id.0, "md-impexp-000000000000");
        let r = srv.client.head(&gone).send().await.unwrap();
        assert_eq!(
            (r.status().as_u16(), code(&r)),
            (404, "BlobNotFound".into())
        );
        // Revoked.
        srv.store.revoke_all(&id);
        let r = srv.client.head(&url).send().await.unwrap();
        assert_eq!(
            (r.status().as_u16(), code(&r)),
            (403, "AuthenticationFailed".into())
        );
        // Expired: 10 simulated seconds = 10 ms real at scale 1000.
        let short = srv.store.grant(&id, SasAccess::Read, 10.0).unwrap();
        assert_eq!(srv.client.head(&short).send().await.unwrap().status(), 200);
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        let r = srv.client.head(&short).send().await.unwrap();
        assert_eq!(
            (r.status().as_u16(), code(&r)),
            (403, "AuthenticationFailed".into())
        );
        // Bad version header.
        let ok = srv.store.grant(&id, SasAccess::Read, 1e8).unwrap();
        let r = srv
            .client
            .head(&ok)
            .header("x-ms-version", "yesterday")
            .send()
            .await
            .unwrap();
        assert_eq!(
            (r.status().as_u16(), code(&r)),
            (400, "InvalidHeaderValue".into())
        );
    }

    #[tokio::test]
    async fn put_page_limits_and_clear() {
        let srv = serve(10_000.0, StorageConfig::default()).await;
        let len = 64 * MIB + 512;
        let id = srv.store.create_upload(len);
        let w = srv.store.grant(&id, SasAccess::Write, 1e8).unwrap();
        let put = |range: String, body: Vec<u8>| {
            srv.client
                .put(with(&w, "comp=page"))
                .header("x-ms-version", "2025-05-05")
                .header("x-ms-page-write", "update")
                .header("x-ms-range", range)
                .body(body)
                .send()
        };
        // 4 MiB works, one page more is 413.
        let body: Vec<u8> = (0..4 * MIB).map(|i| (i % 251) as u8).collect();
        let r = put(format!("bytes=0-{}", 4 * MIB - 1), body.clone())
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        assert_eq!(r.headers()["x-ms-request-server-encrypted"], "true");
        assert_eq!(r.headers()["x-ms-blob-sequence-number"], "0");
        assert_eq!(
            r.headers()["x-ms-content-crc64"],
            BASE64_STANDARD.encode(crc64(&body)).as_str()
        );
        assert!(r.headers().contains_key("etag") && r.headers().contains_key("last-modified"));
        let r = put(
            format!("bytes=0-{}", 4 * MIB + 511),
            vec![0u8; (4 * MIB + 512) as usize],
        )
        .await
        .unwrap();
        assert_eq!(
            (r.status().as_u16(), code(&r)),
            (413, "RequestBodyTooLarge".into())
        );
        // Misaligned.
        let r = put("bytes=100-611".into(), vec![0u8; 512]).await.unwrap();
        assert_eq!(
            (r.status().as_u16(), code(&r)),
            (416, "InvalidPageRange".into())
        );
        // Body length differs from the range.
        let r = put("bytes=0-1023".into(), vec![0u8; 512]).await.unwrap();
        assert_eq!(r.status(), 400);
        // Past the end.
        let r = put(format!("bytes={}-{}", len, len + 511), vec![0u8; 512])
            .await
            .unwrap();
        assert_eq!(r.status(), 416);
        // Wrong client CRC.
        let r = srv
            .client
            .put(with(&w, "comp=page"))
            .header("x-ms-page-write", "update")
            .header("x-ms-range", "bytes=0-511")
            .header("x-ms-content-crc64", "AAAAAAAAAAA=")
            .body(vec![7u8; 512])
            .send()
            .await
            .unwrap();
        assert_eq!(
            (r.status().as_u16(), code(&r)),
            (400, "Crc64Mismatch".into())
        );
        assert_eq!(srv.store.read(&id, 0, 4 * MIB).unwrap(), body);
        // Clear may span more than 4 MiB.
        let r = srv
            .client
            .put(with(&w, "comp=page"))
            .header("x-ms-page-write", "clear")
            .header("x-ms-range", format!("bytes=0-{}", 8 * MIB - 1))
            .header("content-length", "0")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        assert_eq!(srv.store.allocated_bytes(&id), Some(0));
        let st = srv.store.stats();
        assert_eq!(st.put_page, 2);
        assert_eq!(st.bytes_written, 4 * MIB);
    }

    #[tokio::test]
    async fn put_page_from_url_copies_and_checks_the_source() {
        let srv = serve(10_000.0, StorageConfig::default()).await;
        let len = 48 * MIB + 512;
        let src = srv.store.create_source(len, 0.6, 8);
        let dst = srv.store.create_upload(len);
        let r_sas = srv.store.grant(&src, SasAccess::Read, 1e8).unwrap();
        let w_sas = srv.store.grant(&dst, SasAccess::Write, 1e8).unwrap();
        let copy = |src_url: String, a: u64, l: u64| {
            srv.client
                .put(with(&w_sas, "comp=page"))
                .header("x-ms-version", "2025-05-05")
                .header("x-ms-page-write", "update")
                .header("x-ms-range", format!("bytes={}-{}", a, a + l - 1))
                .header("x-ms-source-range", format!("bytes={}-{}", a, a + l - 1))
                .header("x-ms-copy-source", src_url)
                .header("content-length", "0")
                .send()
        };
        // Copy the allocated ranges in 4 MiB pieces, as the copy engine would.
        for (_, s, e) in list_all(&srv, &r_sas, None, None).await {
            let mut a = s;
            while a <= e {
                let l = (4 * MIB).min(e + 1 - a);
                let r = copy(r_sas.clone(), a, l).await.unwrap();
                assert_eq!(r.status(), 201, "{:?}", r.text().await);
                a += l;
            }
        }
        assert_eq!(srv.store.digest(&src), srv.store.digest(&dst));
        assert!(srv.store.footer_valid(&dst));
        assert!(srv.store.stats().put_page_from_url > 0);
        // Source CRC given and right / wrong.
        let want = crc64(&srv.store.read(&src, 0, 4 * MIB).unwrap());
        let ok = srv
            .client
            .put(with(&w_sas, "comp=page"))
            .header("x-ms-page-write", "update")
            .header("x-ms-range", "bytes=0-4194303")
            .header("x-ms-source-range", "bytes=0-4194303")
            .header("x-ms-copy-source", &r_sas)
            .header("x-ms-source-content-crc64", BASE64_STANDARD.encode(want))
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), 201);
        assert_eq!(
            ok.headers()["x-ms-content-crc64"],
            BASE64_STANDARD.encode(want).as_str()
        );
        let bad = srv
            .client
            .put(with(&w_sas, "comp=page"))
            .header("x-ms-page-write", "update")
            .header("x-ms-range", "bytes=0-4194303")
            .header("x-ms-source-range", "bytes=0-4194303")
            .header("x-ms-copy-source", &r_sas)
            .header("x-ms-source-content-crc64", "AAAAAAAAAAA=")
            .send()
            .await
            .unwrap();
        assert_eq!(bad.status(), 400);
        // Both hashes.
        let r = srv
            .client
            .put(with(&w_sas, "comp=page"))
            .header("x-ms-page-write", "update")
            .header("x-ms-range", "bytes=0-511")
            .header("x-ms-source-range", "bytes=0-511")
            .header("x-ms-copy-source", &r_sas)
            .header("x-ms-source-content-crc64", "AAAAAAAAAAA=")
            .header("x-ms-source-content-md5", "AAAAAAAAAAAAAAAAAAAAAA==")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        // More than 4 MiB.
        let r = copy(r_sas.clone(), 0, 4 * MIB + 512).await.unwrap();
        assert_eq!(
            (r.status().as_u16(), code(&r)),
            (413, "RequestBodyTooLarge".into())
        );
        // Misaligned, mismatched lengths, non-zero body.
        let r = copy(r_sas.clone(), 512, 1000).await.unwrap();
        assert_eq!(r.status(), 416);
        let r = srv
            .client
            .put(with(&w_sas, "comp=page"))
            .header("x-ms-page-write", "update")
            .header("x-ms-range", "bytes=0-1023")
            .header("x-ms-source-range", "bytes=0-511")
            .header("x-ms-copy-source", &r_sas)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let r = srv
            .client
            .put(with(&w_sas, "comp=page"))
            .header("x-ms-page-write", "update")
            .header("x-ms-range", "bytes=0-511")
            .header("x-ms-source-range", "bytes=0-511")
            .header("x-ms-copy-source", &r_sas)
            .body(vec![0u8; 512])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        // Source beyond its end.
        let r = srv
            .client
            .put(with(&w_sas, "comp=page"))
            .header("x-ms-page-write", "update")
            .header("x-ms-range", "bytes=0-511")
            .header("x-ms-source-range", format!("bytes={}-{}", len, len + 511))
            .header("x-ms-copy-source", &r_sas)
            .send()
            .await
            .unwrap();
        assert_eq!(
            (r.status().as_u16(), code(&r)),
            (416, "CannotVerifyCopySource".into())
        );
        // Revoked source SAS: CannotVerifyCopySource mirroring 403.
        srv.store.revoke_all(&src);
        let r = copy(r_sas.clone(), 0, 512).await.unwrap();
        assert_eq!(
            (r.status().as_u16(), code(&r)),
            (403, "CannotVerifyCopySource".into())
        );
        assert_eq!(r.headers()["x-ms-copy-source-status-code"], "403");
        assert_eq!(
            r.headers()["x-ms-copy-source-error-code"],
            "AuthenticationFailed"
        );
        // Unknown source blob: 404 BlobNotFound.
        let r = copy(r_sas.replace(&src.0, "md-impexp-0000000000ff"), 0, 512)
            .await
            .unwrap();
        assert_eq!(
            (r.status().as_u16(), code(&r)),
            (404, "CannotVerifyCopySource".into())
        );
        assert_eq!(r.headers()["x-ms-copy-source-error-code"], "BlobNotFound");
        // Destination with a read SAS: 403.
        let src2 = srv.store.create_source(len, 0.1, 9);
        let r2 = srv.store.grant(&src2, SasAccess::Read, 1e8).unwrap();
        let r = srv
            .client
            .put(with(&r2, "comp=page"))
            .header("x-ms-page-write", "update")
            .header("x-ms-range", "bytes=0-511")
            .header("x-ms-source-range", "bytes=0-511")
            .header("x-ms-copy-source", &r2)
            .send()
            .await
            .unwrap();
        assert_eq!(
            (r.status().as_u16(), code(&r)),
            (403, "AuthorizationPermissionMismatch".into())
        );
    }

    #[tokio::test]
    async fn diff_over_http() {
        let srv = serve(
            1000.0,
            StorageConfig {
                page_list_page_size: 2,
                ..Default::default()
            },
        )
        .await;
        let len = 32 * MIB + 512;
        let disk = srv.store.create_source(len, 0.5, 3);
        let s1 = srv.store.clone_blob(&disk).unwrap();
        srv.store.guest_write(&disk, 4 * MIB, MIB, 77);
        srv.store.guest_write(&disk, 20 * MIB, 8192, 78);
        srv.store.guest_write(&disk, 30 * MIB, 4096, 79);
        let s2 = srv.store.clone_blob(&disk).unwrap();
        let u1 = srv.store.grant(&s1, SasAccess::Read, 1e8).unwrap();
        let u2 = srv.store.grant(&s2, SasAccess::Read, 1e8).unwrap();
        let d = list_all(&srv, &u2, Some(&u1), None).await;
        assert_eq!(
            d,
            vec![
                (false, 4 * MIB, 5 * MIB - 1),
                (false, 20 * MIB, 20 * MIB + 8191),
                (false, 30 * MIB, 30 * MIB + 4095)
            ]
        );
        // Previous snapshot SAS revoked: 403.
        srv.store.revoke_all(&s1);
        let r = srv
            .client
            .get(with(&u2, "comp=pagelist"))
            .header("x-ms-previous-snapshot-url", &u1)
            .send()
            .await
            .unwrap();
        assert_eq!(
            (r.status().as_u16(), code(&r)),
            (403, "AuthenticationFailed".into())
        );
        // prevsnapshot is refused for managed disks.
        let r = srv
            .client
            .get(with(
                &u2,
                "comp=pagelist&prevsnapshot=2020-07-13T19:24:09.8561552Z",
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        // Another disk's snapshot: 409.
        let other = srv.store.create_source(len, 0.5, 4);
        let uo = srv.store.grant(&other, SasAccess::Read, 1e8).unwrap();
        let r = srv
            .client
            .get(with(&u2, "comp=pagelist"))
            .header("x-ms-previous-snapshot-url", &uo)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 409);
    }

    #[tokio::test]
    async fn server_busy_is_injected() {
        let srv = serve(
            1.0,
            StorageConfig {
                server_busy_rate: 1.0,
                ..Default::default()
            },
        )
        .await;
        let id = srv.store.create_upload(MIB);
        let u = srv.store.grant(&id, SasAccess::Read, 1e8).unwrap();
        let r = srv
            .client
            .get(with(&u, "comp=pagelist"))
            .send()
            .await
            .unwrap();
        assert_eq!((r.status().as_u16(), code(&r)), (503, "ServerBusy".into()));
        assert_eq!(srv.store.stats().server_busy, 1);
        // The fault is visible to the router as a response extension.
        let req = Request::builder()
            .uri("/x/y/abcd")
            .body(Body::empty())
            .unwrap();
        let resp = handle(srv.store.clone(), req).await;
        assert_eq!(
            resp.extensions().get::<StorageFault>(),
            Some(&StorageFault("server_busy"))
        );
    }

    #[tokio::test]
    async fn writes_are_paced_per_target_blob() {
        // Scale 100: 60 MiB/s simulated means 8 x 4 MiB (32 MiB) take >= 0.533 s
        // simulated = 5.3 ms real, whatever the client parallelism.
        let scale = 100.0;
        let srv = serve(scale, StorageConfig::default()).await;
        let len = 64 * MIB + 512;
        let src = srv.store.create_source(len, 1.0, 1);
        let dst = srv.store.create_upload(len);
        let r_sas = srv.store.grant(&src, SasAccess::Read, 1e6).unwrap();
        let w_sas = srv.store.grant(&dst, SasAccess::Write, 1e6).unwrap();
        let t0 = srv.store.clock().now();
        let mut tasks = Vec::new();
        for i in 0..8u64 {
            let (c, w, r) = (srv.client.clone(), w_sas.clone(), r_sas.clone());
            tasks.push(tokio::spawn(async move {
                let a = i * 4 * MIB;
                let rg = format!("bytes={}-{}", a, a + 4 * MIB - 1);
                c.put(with(&w, "comp=page"))
                    .header("x-ms-page-write", "update")
                    .header("x-ms-range", &rg)
                    .header("x-ms-source-range", &rg)
                    .header("x-ms-copy-source", r)
                    .send()
                    .await
                    .unwrap()
                    .status()
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), 201);
        }
        let elapsed = srv.store.clock().now() - t0;
        let expected = 32.0 * MIB as f64 / super::super::blob::upload_bandwidth(len);
        assert!(elapsed >= expected * 0.99, "elapsed {elapsed} < {expected}");
    }
}
