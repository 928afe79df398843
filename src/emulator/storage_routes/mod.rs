//! The page-blob data plane over HTTP (path-style SAS URLs `/{account}/{container}/abcd?...`).
//! See [`super::blob`] for the model. Request parsing, SAS checks and error
//! answers are in `request`; the tests drive the handler over HTTP.
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

use super::blob::{AccessError, BlobId, BlobProps, BlobStore, DiffError, Need, PAGE, crc64};

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

mod request;

use request::*;

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
    let auth = |need: Need| {
        ctx.store
            .authorize(
                &account,
                &container,
                &blob,
                q.get("sig").map(String::as_str),
                q.get("si").map(String::as_str),
                need,
            )
            .map_err(SErr::access)
    };
    match (&parts.method, comp.as_deref()) {
        (&Method::HEAD, None) => get_properties(ctx, auth(Need::Meta)?),
        (&Method::GET, None) => get_blob(ctx, &parts.headers, auth(Need::Data)?).await,
        (&Method::GET, Some("pagelist")) => {
            let id = auth(Need::Meta)?;
            get_page_ranges(ctx, &parts.headers, &q, id)
        }
        (&Method::PUT, Some("page")) => {
            let id = auth(Need::Write)?;
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
            match authorize_url(&ctx.store, u, Need::Meta) {
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
    let src = match authorize_url(&ctx.store, src_url, Need::Data) {
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
mod tests;
