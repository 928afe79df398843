//! [`StorageClient`]: the managed-disk page-blob data plane over SAS URLs
//! (facts §4). The SAS travels in the URL and in `x-ms-copy-source`; it is
//! never logged (paths are logged without their query) and error texts are
//! redacted.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::HeaderMap;
use reqwest::{Method, RequestBuilder};

use super::RetryConfig;
use super::error::AzureError;
use super::retry::{Attempt, retry_after, with_retries};
use crate::model::{SasUrl, redact};

/// Blob properties from HEAD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobProperties {
    /// Blob length in bytes (disk size + 512 for managed disks).
    pub content_length: u64,
}

/// One page of a Get Page Ranges answer. Ranges are `[start, end)` (end exclusive).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageList {
    /// Allocated (or, in diff mode, changed) ranges.
    pub ranges: Vec<(u64, u64)>,
    /// Ranges cleared since the previous snapshot (diff mode only).
    pub clear: Vec<(u64, u64)>,
    /// Continuation marker; `None` when this was the last page.
    pub next_marker: Option<String>,
}

/// Data-plane counters.
#[derive(Debug, Default)]
pub struct StorageCounters {
    /// Requests sent (every attempt).
    pub requests: AtomicU64,
    /// `503 ServerBusy` answers.
    pub server_busy: AtomicU64,
    /// Retries made.
    pub retries: AtomicU64,
}

/// The page-blob client. Cheap to clone.
#[derive(Debug, Clone)]
pub struct StorageClient {
    http: reqwest::Client,
    retry: RetryConfig,
    version: String,
    counters: Arc<StorageCounters>,
}

struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Bytes,
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// Parses a storage error answer (`<Error><Code>..</Code><Message>..</Message></Error>`).
fn storage_error(a: &Answer) -> AzureError {
    let text = String::from_utf8_lossy(&a.body);
    let tag = |name: &str| {
        let open = format!("<{name}>");
        let close = format!("</{name}>");
        let start = text.find(&open)? + open.len();
        let end = text[start..].find(&close)? + start;
        Some(text[start..end].to_string())
    };
    let code = header(&a.headers, "x-ms-error-code")
        .map(str::to_string)
        .or_else(|| tag("Code"))
        .unwrap_or_else(|| format!("Http{}", a.status));
    // HEAD answers carry no body: say what the status means instead of
    // leaving the operator an empty message.
    let message = tag("Message")
        .filter(|m| !m.trim().is_empty())
        .unwrap_or_else(|| bodiless_message(a.status, &code).to_string());
    let copy_source = header(&a.headers, "x-ms-copy-source-status-code")
        .and_then(|s| s.parse().ok())
        .map(|s| {
            (
                s,
                header(&a.headers, "x-ms-copy-source-error-code")
                    .unwrap_or_default()
                    .to_string(),
            )
        });
    AzureError::Storage {
        status: a.status,
        code,
        message: redact(message.lines().next().unwrap_or_default()),
        retry_after: retry_after(&a.headers),
        copy_source,
    }
}

/// What a storage status means when the answer has no `<Message>`.
fn bodiless_message(status: u16, code: &str) -> &'static str {
    match (status, code) {
        (403, "AuthenticationFailed") | (403, _) => {
            "the SAS was refused (expired, revoked or not granted for this operation)"
        }
        (404, _) => "the blob or snapshot does not exist (or its access was revoked)",
        (409, _) => "the blob is in a state that forbids this operation",
        (412, _) => "a condition of the request did not hold",
        (503, _) | (500, _) => "storage is busy or failing; retry later",
        _ => "storage answered without a message",
    }
}

fn range_header(start: u64, len: u64) -> String {
    format!("bytes={start}-{}", start + len - 1)
}

/// Parses a `PageList` XML document.
pub fn parse_page_list(xml: &str) -> Result<PageList, AzureError> {
    use quick_xml::events::Event;
    // Azure (and the recordings) start XML bodies with a UTF-8 BOM.
    let xml = xml.trim_start_matches('\u{feff}');
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut out = PageList::default();
    let mut path: Vec<String> = Vec::new();
    let (mut start, mut end): (Option<u64>, Option<u64>) = (None, None);
    let bad = |what: String| AzureError::malformed(format!("page list: {what}"));
    loop {
        match reader.read_event().map_err(|e| bad(e.to_string()))? {
            Event::Start(e) => path.push(e.name().as_ref().to_string()),
            Event::End(_) => {
                let name = path.pop().unwrap_or_default();
                if name == "PageRange" || name == "ClearRange" {
                    let (Some(s), Some(e)) = (start.take(), end.take()) else {
                        return Err(bad(format!("{name} without Start/End")));
                    };
                    if e < s || s % 512 != 0 || (e + 1) % 512 != 0 {
                        return Err(bad(format!("{name} {s}-{e} is not 512-aligned")));
                    }
                    if name == "PageRange" {
                        out.ranges.push((s, e + 1))
                    } else {
                        out.clear.push((s, e + 1))
                    }
                }
            }
            Event::Text(t) => {
                let v = t.html_content().trim().to_string();
                match path.last().map(String::as_str) {
                    Some("Start") => {
                        start = Some(v.parse().map_err(|_| bad(format!("Start {v:?}")))?)
                    }
                    Some("End") => end = Some(v.parse().map_err(|_| bad(format!("End {v:?}")))?),
                    Some("NextMarker") if !v.is_empty() => out.next_marker = Some(v),
                    _ => {}
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(out)
}

impl StorageClient {
    /// Wraps an HTTP client (the ARM client builds it).
    pub fn new(http: reqwest::Client, retry: RetryConfig, version: String) -> Self {
        StorageClient {
            http,
            retry,
            version,
            counters: Arc::new(StorageCounters::default()),
        }
    }

    /// Counters so far.
    pub fn counters(&self) -> &StorageCounters {
        &self.counters
    }

    /// Sends with retries on 500/503 (`ServerBusy`), timeouts and dropped connections.
    async fn send(&self, build: impl Fn() -> RequestBuilder) -> Result<Answer, AzureError> {
        with_retries(
            &self.retry,
            || {
                let rb = build()
                    .header("x-ms-version", &self.version)
                    .header("x-ms-client-request-id", uuid::Uuid::new_v4().to_string());
                async move {
                    self.counters.requests.fetch_add(1, Ordering::Relaxed);
                    let resp = match rb.send().await {
                        Ok(r) => r,
                        Err(e) => return Attempt::Retry(AzureError::transport(e), None),
                    };
                    let status = resp.status().as_u16();
                    let headers = resp.headers().clone();
                    let body = match resp.bytes().await {
                        Ok(b) => b,
                        Err(e) => return Attempt::Retry(AzureError::transport(e), None),
                    };
                    let a = Answer {
                        status,
                        headers,
                        body,
                    };
                    if status == 503 {
                        self.counters.server_busy.fetch_add(1, Ordering::Relaxed);
                    }
                    if matches!(status, 408 | 500 | 502 | 503 | 504) {
                        return Attempt::Retry(storage_error(&a), retry_after(&a.headers));
                    }
                    if status >= 400 {
                        return Attempt::Done(Err(storage_error(&a)));
                    }
                    Attempt::Done(Ok(a))
                }
            },
            |_, _, _| {
                self.counters.retries.fetch_add(1, Ordering::Relaxed);
            },
        )
        .await
    }

    fn with_query(blob: &SasUrl, pairs: &[(&str, &str)]) -> url::Url {
        let mut u = blob.expose_url().clone();
        {
            let mut q = u.query_pairs_mut();
            for (k, v) in pairs {
                q.append_pair(k, v);
            }
        }
        u
    }

    /// HEAD: the blob's length.
    pub async fn properties(&self, blob: &SasUrl) -> Result<BlobProperties, AzureError> {
        let u = blob.expose_url().clone();
        let a = self
            .send(|| self.http.request(Method::HEAD, u.clone()))
            .await?;
        let len = header(&a.headers, "content-length")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| AzureError::malformed("blob properties without Content-Length"))?;
        Ok(BlobProperties {
            content_length: len,
        })
    }

    /// One page of Get Page Ranges, optionally as a diff against `previous`
    /// (an older snapshot's SAS URL) and restricted to `[start, end)`.
    pub async fn page_ranges(
        &self,
        blob: &SasUrl,
        previous: Option<&SasUrl>,
        within: Option<(u64, u64)>,
        marker: Option<&str>,
    ) -> Result<PageList, AzureError> {
        let mut pairs = vec![("comp", "pagelist")];
        if let Some(m) = marker {
            pairs.push(("marker", m));
        }
        let u = Self::with_query(blob, &pairs);
        let a = self
            .send(|| {
                let mut rb = self.http.get(u.clone());
                if let Some(p) = previous {
                    rb = rb.header("x-ms-previous-snapshot-url", p.expose_secret());
                }
                if let Some((s, e)) = within {
                    rb = rb.header("x-ms-range", range_header(s, e - s));
                }
                rb
            })
            .await?;
        parse_page_list(&String::from_utf8_lossy(&a.body))
    }

    /// Every range of Get Page Ranges (all pages), merged where adjacent.
    pub async fn all_page_ranges(
        &self,
        blob: &SasUrl,
        previous: Option<&SasUrl>,
    ) -> Result<PageList, AzureError> {
        let mut all = PageList::default();
        let mut marker: Option<String> = None;
        for _ in 0..1_000_000 {
            let page = self
                .page_ranges(blob, previous, None, marker.as_deref())
                .await?;
            all.ranges.extend(page.ranges);
            all.clear.extend(page.clear);
            match page.next_marker {
                Some(m) if Some(&m) != marker.as_ref() => marker = Some(m),
                Some(_) => return Err(AzureError::malformed("page list marker did not advance")),
                None => break,
            }
        }
        all.ranges = merge(all.ranges);
        all.clear = merge(all.clear);
        Ok(all)
    }

    /// Put Page From URL: copies `len` bytes (≤ 4 MiB, 512-aligned) from
    /// `src` at `offset` to `dst` at the same offset, server side.
    pub async fn put_page_from_url(
        &self,
        dst: &SasUrl,
        src: &SasUrl,
        offset: u64,
        len: u64,
    ) -> Result<(), AzureError> {
        let u = Self::with_query(dst, &[("comp", "page")]);
        let range = range_header(offset, len);
        self.send(|| {
            self.http
                .put(u.clone())
                .header("x-ms-page-write", "update")
                .header("x-ms-range", &range)
                .header("x-ms-source-range", &range)
                .header("x-ms-copy-source", src.expose_secret())
                .header("content-length", "0")
        })
        .await
        .map(|_| ())
    }

    /// Put Page with a body (relay mode), `data.len()` ≤ 4 MiB, 512-aligned.
    pub async fn put_page(&self, dst: &SasUrl, offset: u64, data: Bytes) -> Result<(), AzureError> {
        let u = Self::with_query(dst, &[("comp", "page")]);
        let range = range_header(offset, data.len() as u64);
        self.send(|| {
            self.http
                .put(u.clone())
                .header("x-ms-page-write", "update")
                .header("x-ms-range", &range)
                .body(data.clone())
        })
        .await
        .map(|_| ())
    }

    /// Put Page `clear` of `[offset, offset + len)` (512-aligned): the pages
    /// become unallocated and read as zeros. The copy engine never clears
    /// (it copies a hole from the source instead, facts §4.5); this is for
    /// the storage conformance suite and tools.
    pub async fn clear_pages(&self, dst: &SasUrl, offset: u64, len: u64) -> Result<(), AzureError> {
        let u = Self::with_query(dst, &[("comp", "page")]);
        let range = range_header(offset, len);
        self.send(|| {
            self.http
                .put(u.clone())
                .header("x-ms-page-write", "clear")
                .header("x-ms-range", &range)
                .header("content-length", "0")
        })
        .await
        .map(|_| ())
    }

    /// Ranged GET of `len` bytes at `offset`.
    pub async fn read_range(
        &self,
        blob: &SasUrl,
        offset: u64,
        len: u64,
    ) -> Result<Bytes, AzureError> {
        let u = blob.expose_url().clone();
        let range = range_header(offset, len);
        let a = self
            .send(|| self.http.get(u.clone()).header("x-ms-range", &range))
            .await?;
        if a.body.len() as u64 != len {
            return Err(AzureError::malformed(format!(
                "ranged read returned {} bytes, expected {len}",
                a.body.len()
            )));
        }
        Ok(a.body)
    }
}

/// Sorts and merges touching or overlapping `[start, end)` ranges.
pub fn merge(mut ranges: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    ranges.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    for (s, e) in ranges {
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

/// Default pause after a burst of `ServerBusy` answers (copy pacing).
pub const BUSY_PAUSE: Duration = Duration::from_millis(50);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_page_lists_with_marker_and_clear_ranges() {
        let xml = r#"<?xml version="1.0" encoding="utf-8"?><PageList><PageRange><Start>0</Start><End>4194303</End></PageRange><ClearRange><Start>8388608</Start><End>8389119</End></ClearRange><NextMarker>abc</NextMarker></PageList>"#;
        let p = parse_page_list(xml).unwrap();
        assert_eq!(p.ranges, vec![(0, 4 << 20)]);
        assert_eq!(p.clear, vec![(8 << 20, (8 << 20) + 512)]);
        assert_eq!(p.next_marker.as_deref(), Some("abc"));
        let done =
            parse_page_list("\u{feff}<?xml version=\"1.0\"?>\n<PageList><NextMarker /></PageList>")
                .unwrap();
        assert_eq!(done, PageList::default());
        assert!(
            parse_page_list(
                "<PageList><PageRange><Start>1</Start><End>511</End></PageRange></PageList>"
            )
            .is_err()
        );
        assert!(
            parse_page_list("<PageList><PageRange><Start>x</Start></PageRange></PageList>")
                .is_err()
        );
    }

    #[test]
    fn merge_coalesces() {
        assert_eq!(
            merge(vec![(512, 1024), (0, 512), (2048, 4096), (3000, 5000)]),
            vec![(0, 1024), (2048, 5000)]
        );
    }
}
