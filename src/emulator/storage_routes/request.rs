//! Request side of the data plane: error answers (`SErr`), the request
//! context, header/query/range parsing, SAS authorisation and conditional
//! headers.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;

use super::*;

pub(super) const MSG_AUTH: &str = "Server failed to authenticate the request. Make sure the value of Authorization header is formed correctly including the signature.";
pub(super) const MSG_PERM: &str =
    "This request is not authorized to perform this operation using this permission.";
pub(super) const MSG_NOT_FOUND: &str = "The specified blob does not exist.";
pub(super) const MSG_HEADER: &str =
    "The value for one of the HTTP headers is not in the correct format.";
pub(super) const MSG_MISSING: &str =
    "An HTTP header that's mandatory for this request is not specified.";
pub(super) const MSG_PAGE_RANGE: &str = "The page range specified is invalid.";
pub(super) const MSG_RANGE: &str =
    "The range specified is invalid for the current size of the resource.";
pub(super) const MSG_TOO_LARGE: &str =
    "The request body is too large and exceeds the maximum permissible limit.";
pub(super) const MSG_QUERY: &str =
    "Value for one of the query parameters specified in the request URI is invalid.";
pub(super) const MSG_QUERY_RANGE: &str =
    "One of the query parameters specified in the request URI is outside the permissible range.";

/// An error answer.
#[derive(Debug)]
pub(super) struct SErr {
    pub(super) status: StatusCode,
    pub(super) code: &'static str,
    pub(super) message: String,
    /// Extra XML elements (`HeaderName`, `AuthenticationErrorDetail`, ...).
    pub(super) xml: Vec<(&'static str, String)>,
    /// Extra response headers.
    pub(super) headers: Vec<(&'static str, String)>,
    pub(super) fault: Option<&'static str>,
}

impl SErr {
    pub(super) fn new(status: u16, code: &'static str, message: impl Into<String>) -> SErr {
        SErr {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            code,
            message: message.into(),
            xml: Vec::new(),
            headers: Vec::new(),
            fault: None,
        }
    }
    pub(super) fn xml(mut self, name: &'static str, value: impl Into<String>) -> SErr {
        self.xml.push((name, value.into()));
        self
    }
    pub(super) fn header(mut self, name: &'static str, value: impl Into<String>) -> SErr {
        self.headers.push((name, value.into()));
        self
    }
    pub(super) fn bad_header(name: &str, value: &str) -> SErr {
        SErr::new(400, "InvalidHeaderValue", MSG_HEADER)
            .xml("HeaderName", name)
            .xml("HeaderValue", value)
    }
    pub(super) fn missing(name: &str) -> SErr {
        SErr::new(400, "MissingRequiredHeader", MSG_MISSING).xml("HeaderName", name)
    }
    pub(super) fn bad_query(name: &str, value: &str) -> SErr {
        SErr::new(400, "InvalidQueryParameterValue", MSG_QUERY)
            .xml("QueryParameterName", name)
            .xml("QueryParameterValue", value)
    }
    pub(super) fn page_range() -> SErr {
        SErr::new(416, "InvalidPageRange", MSG_PAGE_RANGE)
    }
    pub(super) fn too_large() -> SErr {
        SErr::new(413, "RequestBodyTooLarge", MSG_TOO_LARGE)
    }
    pub(super) fn not_found() -> SErr {
        SErr::new(404, "BlobNotFound", MSG_NOT_FOUND)
    }
    pub(super) fn access(e: AccessError) -> SErr {
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
    pub(super) fn copy_source(status: u16, code: &'static str, message: &str) -> SErr {
        SErr::new(status, "CannotVerifyCopySource", message)
            .header("x-ms-copy-source-status-code", status.to_string())
            .header("x-ms-copy-source-error-code", code)
    }
    pub(super) fn copy_source_access(e: AccessError) -> SErr {
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
pub(super) struct Ctx {
    pub(super) store: Arc<BlobStore>,
    pub(super) version: String,
    pub(super) request_id: String,
    pub(super) client_request_id: Option<String>,
    pub(super) head: bool,
}

impl Ctx {
    pub(super) fn builder(&self, status: StatusCode) -> axum::http::response::Builder {
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

    pub(super) fn with_props(
        &self,
        b: axum::http::response::Builder,
        p: &BlobProps,
    ) -> axum::http::response::Builder {
        b.header(header::ETAG, &p.etag)
            .header(header::LAST_MODIFIED, self.store.http_date(p.last_modified))
    }

    pub(super) fn error(&self, e: SErr) -> Response {
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

pub(super) fn internal() -> Response {
    let mut r = Response::new(Body::from("internal error building the response"));
    *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    r
}

pub(super) fn xml_escape(s: &str) -> String {
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

pub(super) fn hdr<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

pub(super) fn valid_version(v: &str) -> bool {
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
pub(super) fn parse_range(v: &str) -> Option<(u64, Option<u64>)> {
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
pub(super) fn range_header(h: &HeaderMap) -> Option<(&'static str, &str)> {
    if let Some(v) = hdr(h, "x-ms-range") {
        return Some(("x-ms-range", v));
    }
    hdr(h, "range").map(|v| ("Range", v))
}

/// A page-aligned `bytes=a-b` range, as `(start, len)`.
pub(super) fn page_range(name: &str, v: &str) -> Result<(u64, u64), SErr> {
    let (a, b) = parse_range(v).ok_or_else(|| SErr::bad_header(name, v))?;
    let b = b.ok_or_else(|| SErr::bad_header(name, v))?;
    if a % PAGE != 0 || (b + 1) % PAGE != 0 {
        return Err(SErr::page_range());
    }
    Ok((a, b - a + 1))
}

pub(super) fn encode_marker(off: u64) -> String {
    BASE64_STANDARD.encode(format!("ade2!{off}"))
}

pub(super) fn decode_marker(m: &str) -> Option<u64> {
    let raw = BASE64_STANDARD.decode(m.trim().replace(' ', "+")).ok()?;
    let s = String::from_utf8(raw).ok()?;
    s.strip_prefix("ade2!")?.parse().ok()
}

/// `(account, container, blob)` of a path-style blob URL path.
pub(super) fn split_path(path: &str) -> Option<(String, String, String)> {
    let mut it = path.trim_start_matches('/').splitn(3, '/');
    let a = it.next()?.to_string();
    let c = it.next()?.to_string();
    let b = it.next()?.to_string();
    (!a.is_empty() && !c.is_empty() && !b.is_empty()).then_some((a, c, b))
}

pub(super) fn query_map(q: Option<&str>) -> HashMap<String, String> {
    url::form_urlencoded::parse(q.unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

/// A SAS URL of this emulator (`x-ms-copy-source`, `x-ms-previous-snapshot-url`):
/// `(account, container, blob, query)`. The host is not checked: the random
/// signature already ties the URL to this store.
pub(super) fn parse_sas_url(u: &str) -> Option<(String, String, String, HashMap<String, String>)> {
    let url = url::Url::parse(u.trim()).ok()?;
    let (a, c, b) = split_path(url.path())?;
    Some((a, c, b, query_map(url.query())))
}

/// Checks the SAS of a URL another request names (a copy source, whose
/// data is read, or a previous snapshot, whose page ranges are).
pub(super) fn authorize_url(
    store: &BlobStore,
    u: &str,
    need: Need,
) -> Result<BlobId, Option<AccessError>> {
    let (a, c, b, q) = parse_sas_url(u).ok_or(None)?;
    let (sig, si) = (
        q.get("sig").map(String::as_str),
        q.get("si").map(String::as_str),
    );
    store.authorize(&a, &c, &b, sig, si, need).map_err(Some)
}

/// `If-Match`, `If-None-Match`, sequence-number conditions and leases on writes.
pub(super) fn check_conditions(h: &HeaderMap, p: &BlobProps) -> Result<(), SErr> {
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
