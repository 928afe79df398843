//! [`ArmClient`]: every ARM request goes through [`ArmClient::send`], which
//! adds the bearer token and a client request id, retries what
//! [`super::retry`] allows, counts requests, and turns error answers into
//! [`AzureError`]s with redacted text. Long-running operations are awaited by
//! one poller ([`ArmClient::wait`]) for both `Azure-AsyncOperation` and
//! `Location` styles.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use url::Url;

use super::error::AzureError;
use super::retry::{Attempt, retry_after, with_retries};
use super::storage::StorageClient;
use super::wire;
use super::{AzureConfig, TokenSource};
use crate::model::{ResourceId, SasUrl, redact};

/// `Microsoft.Network` API version (network interfaces, `--nic-swap`).
pub const NETWORK_API: &str = "2024-05-01";

/// SAS access to request with `beginGetAccess`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SasAccess {
    /// Read (export a disk or snapshot).
    Read,
    /// Write (fill an `Upload` disk).
    Write,
}

/// A GET answer: the raw JSON (journaled as is) and its parsed form.
#[derive(Debug, Clone)]
pub struct Fetched<T> {
    /// The body exactly as Azure sent it.
    pub raw: Value,
    /// The body parsed with the tolerant wire types.
    pub parsed: T,
}

/// Request counters (for benchmarks, the demo line and throttling reports).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// ARM requests sent (every attempt, polls included).
    pub arm_requests: u64,
    /// Of those, mutating (PUT/PATCH/POST/DELETE).
    pub arm_writes: u64,
    /// Operation-status polls.
    pub lro_polls: u64,
    /// 429 answers received.
    pub throttled: u64,
    /// Retries made.
    pub retries: u64,
}

#[derive(Debug, Default)]
struct Counters {
    arm_requests: AtomicU64,
    arm_writes: AtomicU64,
    lro_polls: AtomicU64,
    throttled: AtomicU64,
    retries: AtomicU64,
}

/// One HTTP answer, read whole.
#[derive(Debug)]
struct Raw {
    status: u16,
    headers: HeaderMap,
    body: Bytes,
    /// The `x-ms-correlation-request-id` sent (one per operation: a
    /// long-running operation's polls reuse its first request's).
    correlation: String,
}

/// Logs one ARM answer for Azure support: method, path (never the query,
/// which may hold a `$skipToken`), status, duration, and the ids Azure
/// traces a request by: the `x-ms-correlation-request-id` this client sent
/// and Azure echoed, and the `x-ms-request-id` Azure assigned
/// (learn.microsoft.com/azure/azure-resource-manager/management/request-limits-and-throttling
/// and the resource provider contract's common API details list both as the
/// ids support asks for).
fn log_answer(
    method: &Method,
    path: &str,
    status: u16,
    started: std::time::Instant,
    sent: &str,
    h: &HeaderMap,
) {
    let header = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
    tracing::info!(
        target: "ade2eah::arm",
        %method,
        path,
        status,
        duration_ms = started.elapsed().as_millis() as u64,
        correlation_id = sent,
        x_ms_correlation_request_id = header("x-ms-correlation-request-id"),
        x_ms_request_id = header("x-ms-request-id"),
        "arm request"
    );
}

/// The ARM client. Cheap to clone (shared inside).
#[derive(Clone)]
pub struct ArmClient {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: AzureConfig,
    http: reqwest::Client,
    tokens: TokenSource,
    counters: Counters,
    storage: StorageClient,
    throttle: super::throttle::ClientThrottle,
}

impl std::fmt::Debug for ArmClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ArmClient({})", self.inner.cfg.arm_endpoint)
    }
}

/// Builds a reqwest client with our timeouts (no proxy for loopback).
pub(crate) fn http_client(cfg: &AzureConfig, storage: bool) -> Result<reqwest::Client, AzureError> {
    let mut b = reqwest::Client::builder()
        .timeout(cfg.request_timeout)
        .connect_timeout(Duration::from_secs(20))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("ade2eah/", env!("CARGO_PKG_VERSION")));
    if cfg.is_loopback() {
        b = b.no_proxy();
    }
    if storage {
        b = b.pool_max_idle_per_host(64);
    }
    b.build().map_err(|e| AzureError::Transport {
        message: format!("cannot build the HTTP client: {e}"),
        timeout: false,
    })
}

fn is_retryable_status(s: u16) -> bool {
    matches!(s, 408 | 429 | 500 | 502 | 503 | 504)
}

/// Parses an ARM error answer (with or without the `{"error": ...}` wrapper).
fn http_error(raw: &Raw) -> AzureError {
    let v: Value = serde_json::from_slice(&raw.body).unwrap_or(Value::Null);
    let body = v.get("error").cloned().unwrap_or(v);
    let parsed: wire::ErrorBody = serde_json::from_value(body).unwrap_or_default();
    let code = parsed.code.clone().unwrap_or_else(|| {
        StatusCode::from_u16(raw.status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("Error")
            .replace(' ', "")
    });
    let mut message = parsed.message.clone().unwrap_or_else(|| {
        String::from_utf8_lossy(&raw.body)
            .chars()
            .take(300)
            .collect()
    });
    if let Some(inner) =
        innermost(&parsed).filter(|d| d.message.is_some() && d.message != parsed.message)
    {
        message = format!(
            "{message} ({}: {})",
            inner.code.as_deref().unwrap_or("detail"),
            inner.message.as_deref().unwrap_or("")
        );
    }
    AzureError::Http {
        status: raw.status,
        code,
        message: redact(&message),
        retry_after: retry_after(&raw.headers),
    }
}

fn innermost(e: &wire::ErrorBody) -> Option<&wire::ErrorBody> {
    e.details.last().map(|d| innermost(d).unwrap_or(d))
}

/// Fixes the DiskRP quirk `.../operations/{id}&monitor=true&api-version=...`
/// (a `&` where the `?` belongs; fixtures README).
fn fix_poll_url(u: &str) -> String {
    if !u.contains('?')
        && let Some(i) = u.find('&')
    {
        return format!("{}?{}", &u[..i], &u[i + 1..]);
    }
    u.to_string()
}

impl ArmClient {
    /// A client for `cfg`, authenticating with `tokens`.
    pub fn new(cfg: AzureConfig, tokens: TokenSource) -> Result<ArmClient, AzureError> {
        let http = http_client(&cfg, false)?;
        let storage = StorageClient::new(
            http_client(&cfg, true)?,
            cfg.retry.clone(),
            cfg.api.storage.clone(),
        );
        Ok(ArmClient {
            inner: Arc::new(Inner {
                throttle: super::throttle::ClientThrottle::new(cfg.throttle.clone()),
                cfg,
                http,
                tokens,
                counters: Counters::default(),
                storage,
            }),
        })
    }

    /// The ARM endpoint (no trailing slash).
    pub fn arm_endpoint(&self) -> &str {
        self.inner.cfg.arm_endpoint.as_str().trim_end_matches('/')
    }

    /// The data-plane client (shares nothing secret with ARM).
    pub fn storage(&self) -> StorageClient {
        self.inner.storage.clone()
    }

    /// The configuration.
    pub fn config(&self) -> &AzureConfig {
        &self.inner.cfg
    }

    /// Counters so far.
    pub fn stats(&self) -> ClientStats {
        let c = &self.inner.counters;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ClientStats {
            arm_requests: l(&c.arm_requests),
            arm_writes: l(&c.arm_writes),
            lro_polls: l(&c.lro_polls),
            throttled: l(&c.throttled),
            retries: l(&c.retries),
        }
    }

    fn url(&self, path: &str, api: &str, extra: &[(&str, &str)]) -> Result<Url, AzureError> {
        let mut u = Url::parse(&format!("{}{path}", self.arm_endpoint()))
            .map_err(|e| AzureError::malformed(format!("bad request URL for {path}: {e}")))?;
        {
            let mut q = u.query_pairs_mut();
            q.append_pair("api-version", api);
            for (k, v) in extra {
                q.append_pair(k, v);
            }
        }
        Ok(u)
    }

    /// Refuses to send the token anywhere but the ARM endpoint's host.
    fn check_host(&self, u: &Url) -> Result<(), AzureError> {
        let ep = &self.inner.cfg.arm_endpoint;
        if u.host_str() == ep.host_str()
            && u.port_or_known_default() == ep.port_or_known_default()
            && u.scheme() == ep.scheme()
        {
            Ok(())
        } else {
            Err(AzureError::malformed(format!(
                "Azure pointed to {}://{}, which is not the ARM endpoint; refusing to send credentials there",
                u.scheme(),
                u.host_str().unwrap_or("?")
            )))
        }
    }

    /// Sends one ARM request with retries; returns the first answer that is
    /// not worth retrying (any status), or the last error.
    async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
        poll: bool,
        correlation: Option<&str>,
    ) -> Result<Raw, AzureError> {
        self.check_host(&url)?;
        let inner = &self.inner;
        let path = url.path().to_string();
        let correlation = correlation
            .map(str::to_string)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let correlation = &correlation;
        with_retries(
            &inner.cfg.retry,
            || {
                let method = method.clone();
                let url = url.clone();
                let path = path.clone();
                async move {
                    inner.throttle.acquire(&method, &path).await;
                    inner.counters.arm_requests.fetch_add(1, Ordering::Relaxed);
                    if method != Method::GET {
                        inner.counters.arm_writes.fetch_add(1, Ordering::Relaxed);
                    }
                    if poll {
                        inner.counters.lro_polls.fetch_add(1, Ordering::Relaxed);
                    }
                    let token = match inner.tokens.token().await {
                        Ok(t) => t,
                        Err(e) => return Attempt::Done(Err(e)),
                    };
                    let mut rb = inner
                        .http
                        .request(method.clone(), url)
                        .bearer_auth(token.expose_secret())
                        .header("x-ms-client-request-id", uuid::Uuid::new_v4().to_string())
                        .header("x-ms-correlation-request-id", correlation.as_str());
                    if let Some(b) = body {
                        rb = rb.json(b);
                    }
                    let started = std::time::Instant::now();
                    let resp = match rb.send().await {
                        Ok(r) => r,
                        Err(e) => {
                            let e = AzureError::transport(e);
                            tracing::warn!(target: "ade2eah::arm", %method, path = %path, correlation_id = %correlation, error = %e, "arm request failed");
                            return Attempt::Retry(e, None);
                        }
                    };
                    let status = resp.status().as_u16();
                    let headers = resp.headers().clone();
                    inner.throttle.observe(&method, &path, &headers);
                    let body = match resp.bytes().await {
                        Ok(b) => b,
                        Err(e) => return Attempt::Retry(AzureError::transport(e), None),
                    };
                    log_answer(&method, &path, status, started, correlation, &headers);
                    let raw = Raw {
                        status,
                        headers,
                        body,
                        correlation: correlation.clone(),
                    };
                    if status == 429 {
                        inner.counters.throttled.fetch_add(1, Ordering::Relaxed);
                    }
                    if status == 401 {
                        // An expired token mid-run: fetch a new one and try again.
                        inner.tokens.invalidate().await;
                        return Attempt::Retry(http_error(&raw), Some(Duration::ZERO));
                    }
                    if is_retryable_status(status) {
                        let after = retry_after(&raw.headers);
                        return Attempt::Retry(http_error(&raw), after);
                    }
                    Attempt::Done(Ok(raw))
                }
            },
            |attempt, delay, e| {
                inner.counters.retries.fetch_add(1, Ordering::Relaxed);
                tracing::info!(attempt, ?delay, error = %e, "retrying ARM request");
            },
        )
        .await
    }

    /// Sends and turns any error status into an error.
    async fn send_ok(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
    ) -> Result<Raw, AzureError> {
        let raw = self.send(method, url, body, false, None).await?;
        if raw.status >= 400 {
            Err(http_error(&raw))
        } else {
            Ok(raw)
        }
    }

    async fn get_json<T: DeserializeOwned>(
        &self,
        url: Url,
    ) -> Result<Option<Fetched<T>>, AzureError> {
        let raw = self.send(Method::GET, url, None, false, None).await?;
        if raw.status == 404 {
            return Ok(None);
        }
        if raw.status >= 400 {
            return Err(http_error(&raw));
        }
        let value: Value = serde_json::from_slice(&raw.body)
            .map_err(|e| AzureError::malformed(format!("response is not JSON: {e}")))?;
        // Every ARM resource has `properties`; without it the body cannot say
        // what the resource is (a VM without disks, a disk without a state).
        if value.get("id").is_some() && !value.get("properties").is_some_and(Value::is_object) {
            return Err(AzureError::malformed(
                "response has an unexpected shape: resource without `properties`",
            ));
        }
        let parsed: T = serde_json::from_value(value.clone())
            .map_err(|e| AzureError::malformed(format!("response has an unexpected shape: {e}")))?;
        Ok(Some(Fetched { raw: value, parsed }))
    }

    /// Waits for the operation `first` started. Returns the operation's
    /// output (`properties.output` of an Azure-AsyncOperation, or the final
    /// body of a `Location` poll), if any.
    async fn wait(&self, first: &Raw) -> Result<Option<Value>, AzureError> {
        let header =
            |h: &HeaderMap, name: &str| h.get(name).and_then(|v| v.to_str().ok()).map(fix_poll_url);
        let async_op = header(&first.headers, "azure-asyncoperation");
        let location = header(&first.headers, "location");
        if async_op.is_none() && location.is_none() {
            return Ok(serde_json::from_slice(&first.body).ok());
        }
        let poll = self.inner.cfg.poll_interval;
        let deadline = tokio::time::Instant::now() + self.inner.cfg.lro_timeout;
        let mut delay = retry_after(&first.headers).unwrap_or(poll);
        let parse = |s: &str| {
            Url::parse(s).map_err(|e| AzureError::malformed(format!("bad operation URL: {e}")))
        };
        loop {
            if tokio::time::Instant::now() + delay > deadline {
                return Err(AzureError::Transport {
                    message: format!(
                        "the operation did not finish within {:?}",
                        self.inner.cfg.lro_timeout
                    ),
                    timeout: true,
                });
            }
            tokio::time::sleep(delay).await;
            if let Some(op) = &async_op {
                let raw = self
                    .send(
                        Method::GET,
                        parse(op)?,
                        None,
                        true,
                        Some(&first.correlation),
                    )
                    .await?;
                if raw.status >= 400 {
                    return Err(http_error(&raw));
                }
                let st: wire::OperationStatus = serde_json::from_slice(&raw.body).map_err(|e| {
                    AzureError::malformed(format!("operation status is not JSON: {e}"))
                })?;
                match st.status.as_deref().map(str::to_ascii_lowercase).as_deref() {
                    Some("succeeded") => {
                        let out = st.properties.and_then(|p| p.get("output").cloned());
                        if out.is_none()
                            && let Some(loc) = &location
                        {
                            return self.final_location(parse(loc)?, &first.correlation).await;
                        }
                        return Ok(out);
                    }
                    Some("failed") | Some("canceled") | Some("cancelled") => {
                        let err = st.error.unwrap_or_default();
                        return Err(AzureError::Operation {
                            code: err
                                .code
                                .unwrap_or_else(|| st.status.clone().unwrap_or_default()),
                            message: redact(&err.message.unwrap_or_else(|| "no message".into())),
                        });
                    }
                    None => return Err(AzureError::malformed("operation status has no `status`")),
                    Some(_) => delay = retry_after(&raw.headers).unwrap_or(poll),
                }
            } else if let Some(loc) = &location {
                let raw = self
                    .send(
                        Method::GET,
                        parse(loc)?,
                        None,
                        true,
                        Some(&first.correlation),
                    )
                    .await?;
                match raw.status {
                    202 => delay = retry_after(&raw.headers).unwrap_or(poll),
                    204 => return Ok(None),
                    s if s >= 400 => return Err(http_error(&raw)),
                    _ => return Ok(serde_json::from_slice(&raw.body).ok()),
                }
            }
        }
    }

    async fn final_location(
        &self,
        url: Url,
        correlation: &str,
    ) -> Result<Option<Value>, AzureError> {
        let raw = self
            .send(Method::GET, url, None, true, Some(correlation))
            .await?;
        if raw.status >= 400 {
            return Err(http_error(&raw));
        }
        Ok(serde_json::from_slice(&raw.body).ok())
    }

    /// A mutating call followed by its operation.
    async fn mutate(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
    ) -> Result<Option<Value>, AzureError> {
        let raw = self.send_ok(method, url, body).await?;
        self.wait(&raw).await
    }

    /// DELETE that treats "already gone" as done.
    async fn delete(&self, url: Url) -> Result<(), AzureError> {
        let raw = self.send(Method::DELETE, url, None, false, None).await?;
        match raw.status {
            404 | 204 => Ok(()),
            s if s >= 400 => Err(http_error(&raw)),
            _ => self.wait(&raw).await.map(|_| ()),
        }
    }

    fn compute(&self) -> &str {
        &self.inner.cfg.api.compute
    }

    fn disks(&self) -> &str {
        &self.inner.cfg.api.disks
    }

    /// GET a VM (optionally with its instance view); `None` on 404.
    pub async fn get_vm(
        &self,
        id: &ResourceId,
        instance_view: bool,
    ) -> Result<Option<Fetched<wire::VirtualMachine>>, AzureError> {
        let extra: &[(&str, &str)] = if instance_view {
            &[("$expand", "instanceView")]
        } else {
            &[]
        };
        self.get_json(self.url(id.as_str(), self.compute(), extra)?)
            .await
    }

    /// GET a VM with `$expand=userData` (the only read that returns
    /// `properties.userData`, facts §11; `$expand` takes one value), then its
    /// instance view separately, placed at `properties.instanceView` as
    /// `$expand=instanceView` would; `None` on 404. This is the full model
    /// journaled before anything changes.
    pub async fn get_vm_model(&self, id: &ResourceId) -> Result<Option<Value>, AzureError> {
        let Some(f) = self
            .get_json::<wire::VirtualMachine>(self.url(
                id.as_str(),
                self.compute(),
                &[("$expand", "userData")],
            )?)
            .await?
        else {
            return Ok(None);
        };
        let mut model = f.raw;
        let iv: Option<Fetched<Value>> = self
            .get_json(self.url(&format!("{id}/instanceView"), self.compute(), &[])?)
            .await?;
        if let (Some(iv), Some(props)) = (
            iv,
            model.get_mut("properties").and_then(Value::as_object_mut),
        ) {
            props.insert("instanceView".into(), iv.raw);
        }
        Ok(Some(model))
    }

    /// GET a VM's instance view; `None` on 404.
    pub async fn get_vm_instance_view(
        &self,
        id: &ResourceId,
    ) -> Result<Option<wire::InstanceView>, AzureError> {
        let f: Option<Fetched<wire::InstanceView>> = self
            .get_json(self.url(&format!("{id}/instanceView"), self.compute(), &[])?)
            .await?;
        Ok(f.map(|f| f.parsed))
    }

    /// PUT a VM (create or full update) and wait for it.
    pub async fn put_vm(&self, id: &ResourceId, body: &Value) -> Result<(), AzureError> {
        self.mutate(
            Method::PUT,
            self.url(id.as_str(), self.compute(), &[])?,
            Some(body),
        )
        .await
        .map(|_| ())
    }

    /// PATCH a VM and wait for it.
    pub async fn patch_vm(&self, id: &ResourceId, body: &Value) -> Result<(), AzureError> {
        self.mutate(
            Method::PATCH,
            self.url(id.as_str(), self.compute(), &[])?,
            Some(body),
        )
        .await
        .map(|_| ())
    }

    /// DELETE a VM and wait; a missing VM counts as deleted.
    pub async fn delete_vm(&self, id: &ResourceId) -> Result<(), AzureError> {
        self.delete(self.url(id.as_str(), self.compute(), &[])?)
            .await
    }

    async fn vm_action(&self, id: &ResourceId, action: &str) -> Result<(), AzureError> {
        self.mutate(
            Method::POST,
            self.url(&format!("{id}/{action}"), self.compute(), &[])?,
            None,
        )
        .await
        .map(|_| ())
    }

    /// POST deallocate and wait.
    pub async fn deallocate_vm(&self, id: &ResourceId) -> Result<(), AzureError> {
        self.vm_action(id, "deallocate").await
    }

    /// POST start and wait.
    pub async fn start_vm(&self, id: &ResourceId) -> Result<(), AzureError> {
        self.vm_action(id, "start").await
    }

    /// POST powerOff and wait.
    pub async fn power_off_vm(&self, id: &ResourceId) -> Result<(), AzureError> {
        self.vm_action(id, "powerOff").await
    }

    /// GET an extension; `None` on 404.
    pub async fn get_extension(
        &self,
        id: &ResourceId,
    ) -> Result<Option<Fetched<wire::Extension>>, AzureError> {
        self.get_json(self.url(id.as_str(), self.compute(), &[("$expand", "instanceView")])?)
            .await
    }

    /// PUT an extension and wait.
    pub async fn put_extension(&self, id: &ResourceId, body: &Value) -> Result<(), AzureError> {
        self.mutate(
            Method::PUT,
            self.url(id.as_str(), self.compute(), &[])?,
            Some(body),
        )
        .await
        .map(|_| ())
    }

    /// DELETE an extension and wait; a missing one counts as deleted.
    pub async fn delete_extension(&self, id: &ResourceId) -> Result<(), AzureError> {
        self.delete(self.url(id.as_str(), self.compute(), &[])?)
            .await
    }

    /// GET a managed disk; `None` on 404.
    pub async fn get_disk(
        &self,
        id: &ResourceId,
    ) -> Result<Option<Fetched<wire::Disk>>, AzureError> {
        self.get_json(self.url(id.as_str(), self.disks(), &[])?)
            .await
    }

    /// GET a snapshot; `None` on 404.
    pub async fn get_snapshot(
        &self,
        id: &ResourceId,
    ) -> Result<Option<Fetched<wire::Disk>>, AzureError> {
        self.get_disk(id).await
    }

    /// PUT a disk and wait.
    pub async fn put_disk(&self, id: &ResourceId, body: &Value) -> Result<(), AzureError> {
        self.mutate(
            Method::PUT,
            self.url(id.as_str(), self.disks(), &[])?,
            Some(body),
        )
        .await
        .map(|_| ())
    }

    /// PATCH a disk and wait.
    pub async fn patch_disk(&self, id: &ResourceId, body: &Value) -> Result<(), AzureError> {
        self.mutate(
            Method::PATCH,
            self.url(id.as_str(), self.disks(), &[])?,
            Some(body),
        )
        .await
        .map(|_| ())
    }

    /// PUT a snapshot and wait.
    pub async fn put_snapshot(&self, id: &ResourceId, body: &Value) -> Result<(), AzureError> {
        self.put_disk(id, body).await
    }

    /// DELETE a disk or snapshot and wait; a missing one counts as deleted.
    pub async fn delete_disk(&self, id: &ResourceId) -> Result<(), AzureError> {
        self.delete(self.url(id.as_str(), self.disks(), &[])?).await
    }

    /// GET a network interface; `None` on 404.
    pub async fn get_nic(&self, id: &ResourceId) -> Result<Option<Value>, AzureError> {
        Ok(self
            .get_json::<Value>(self.url(id.as_str(), NETWORK_API, &[])?)
            .await?
            .map(|f| f.raw))
    }

    /// PUT a network interface and wait.
    pub async fn put_nic(&self, id: &ResourceId, body: &Value) -> Result<(), AzureError> {
        self.mutate(
            Method::PUT,
            self.url(id.as_str(), NETWORK_API, &[])?,
            Some(body),
        )
        .await
        .map(|_| ())
    }

    /// DELETE a network interface and wait; a missing one counts as deleted.
    pub async fn delete_nic(&self, id: &ResourceId) -> Result<(), AzureError> {
        self.delete(self.url(id.as_str(), NETWORK_API, &[])?).await
    }

    /// `beginGetAccess` on a disk or snapshot; returns the SAS URL. The SAS
    /// never leaves this function except inside the unprintable [`SasUrl`].
    pub async fn grant_access(
        &self,
        id: &ResourceId,
        access: SasAccess,
        duration: Duration,
    ) -> Result<SasUrl, AzureError> {
        let access = match access {
            SasAccess::Read => "Read",
            SasAccess::Write => "Write",
        };
        let body = json!({ "access": access, "durationInSeconds": duration.as_secs().clamp(60, 5_184_000) });
        let raw = self
            .send_ok(
                Method::POST,
                self.url(&format!("{id}/beginGetAccess"), self.disks(), &[])?,
                Some(&body),
            )
            .await?;
        let immediate: Option<Value> = (raw.status == 200)
            .then(|| serde_json::from_slice(&raw.body).ok())
            .flatten();
        let out = match immediate.filter(|v| v.get("accessSAS").is_some()) {
            Some(v) => Some(v),
            None => self.wait(&raw).await?,
        };
        let sas = out
            .as_ref()
            .and_then(|v| v.get("accessSAS"))
            .and_then(Value::as_str)
            .ok_or_else(|| {
                AzureError::malformed(format!(
                    "beginGetAccess on {} returned no accessSAS",
                    id.name()
                ))
            })?;
        SasUrl::parse(sas).map_err(|_| {
            AzureError::malformed(format!(
                "beginGetAccess on {} returned an accessSAS that is not a URL",
                id.name()
            ))
        })
    }

    /// `endGetAccess` on a disk or snapshot, waited.
    pub async fn revoke_access(&self, id: &ResourceId) -> Result<(), AzureError> {
        self.mutate(
            Method::POST,
            self.url(&format!("{id}/endGetAccess"), self.disks(), &[])?,
            None,
        )
        .await
        .map(|_| ())
    }

    /// GET a subscription feature (`Microsoft.Compute/EncryptionAtHost`).
    pub async fn get_feature(
        &self,
        subscription: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Option<wire::Feature>, AzureError> {
        let path = format!(
            "/subscriptions/{subscription}/providers/Microsoft.Features/providers/{namespace}/features/{name}"
        );
        Ok(self
            .get_json::<wire::Feature>(self.url(&path, &self.inner.cfg.api.features, &[])?)
            .await?
            .map(|f| f.parsed))
    }

    /// GET an ARM path (or an absolute `nextLink`) as raw JSON; `None` on 404.
    /// Used by `azure::inventory`.
    pub(crate) async fn get_value(
        &self,
        path_or_url: &str,
        api: &str,
        extra: &[(&str, &str)],
    ) -> Result<Option<Value>, AzureError> {
        let url = if path_or_url.starts_with("http://") || path_or_url.starts_with("https://") {
            Url::parse(path_or_url)
                .map_err(|e| AzureError::malformed(format!("bad nextLink: {e}")))?
        } else {
            self.url(path_or_url, api, extra)?
        };
        Ok(self.get_json::<Value>(url).await?.map(|f| f.raw))
    }

    /// PUT to an ARM path (waiting for an operation if one is started).
    /// Used by `azure::inventory`.
    pub(crate) async fn put_value(
        &self,
        path: &str,
        api: &str,
        body: &Value,
    ) -> Result<(), AzureError> {
        self.mutate(Method::PUT, self.url(path, api, &[])?, Some(body))
            .await
            .map(|_| ())
    }

    /// POST to an ARM path; returns the JSON body (no long-running operation).
    /// Used by `azure::inventory`.
    pub(crate) async fn post_value(
        &self,
        path: &str,
        api: &str,
        body: Option<&Value>,
    ) -> Result<Value, AzureError> {
        let raw = self
            .send_ok(Method::POST, self.url(path, api, &[])?, body)
            .await?;
        Ok(serde_json::from_slice(&raw.body).unwrap_or(Value::Null))
    }

    /// GET a disk encryption set; `None` on 404.
    pub async fn get_disk_encryption_set(
        &self,
        id: &ResourceId,
    ) -> Result<Option<Value>, AzureError> {
        Ok(self
            .get_json::<Value>(self.url(id.as_str(), self.disks(), &[])?)
            .await?
            .map(|f| f.raw))
    }

    /// POST `runCommand` on a VM (`{"commandId", "script"}`) and wait; returns
    /// the operation's output (`{"value": [{"code", "message"}...]}`).
    pub async fn run_command(&self, vm: &ResourceId, body: &Value) -> Result<Value, AzureError> {
        Ok(self
            .mutate(
                Method::POST,
                self.url(&format!("{vm}/runCommand"), self.compute(), &[])?,
                Some(body),
            )
            .await?
            .unwrap_or(Value::Null))
    }

    /// The VM sizes offered in `location` (resource SKUs), all pages.
    pub async fn list_vm_skus(
        &self,
        subscription: &str,
        location: &str,
    ) -> Result<Vec<wire::ResourceSku>, AzureError> {
        let path = format!("/subscriptions/{subscription}/providers/Microsoft.Compute/skus");
        let filter = format!("location eq '{location}'");
        let mut url = self.url(&path, &self.inner.cfg.api.skus, &[("$filter", &filter)])?;
        let mut out = Vec::new();
        for _ in 0..100 {
            let page: wire::SkuList = self
                .get_json::<wire::SkuList>(url.clone())
                .await?
                .map(|f| f.parsed)
                .unwrap_or_default();
            out.extend(page.value.into_iter().filter(|s| {
                s.resource_type
                    .as_deref()
                    .is_none_or(|t| t.eq_ignore_ascii_case("virtualMachines"))
            }));
            match page.next_link {
                Some(next) => {
                    url = Url::parse(&next)
                        .map_err(|e| AzureError::malformed(format!("bad nextLink: {e}")))?
                }
                None => break,
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_url_quirk_is_fixed() {
        assert_eq!(
            fix_poll_url("https://m/ops/1&monitor=true&api-version=2"),
            "https://m/ops/1?monitor=true&api-version=2"
        );
        assert_eq!(
            fix_poll_url("https://m/ops/1?api-version=2&monitor=true"),
            "https://m/ops/1?api-version=2&monitor=true"
        );
    }

    #[test]
    fn error_envelopes_parse_with_and_without_wrapper() {
        let raw = Raw { status: 429, headers: HeaderMap::new(), body: Bytes::from_static(br#"{"code":"OperationNotAllowed","message":"too many","details":[{"code":"TooManyRequests","message":"HighCostGet30Min"}]}"#), correlation: String::new() };
        let AzureError::Http { code, message, .. } = http_error(&raw) else {
            panic!()
        };
        assert_eq!(code, "OperationNotAllowed");
        assert!(message.contains("TooManyRequests"));
        let raw = Raw {
            status: 502,
            headers: HeaderMap::new(),
            body: Bytes::from_static(b"<html>bad gateway sig=abcdefgh</html>"),
            correlation: String::new(),
        };
        let AzureError::Http { code, message, .. } = http_error(&raw) else {
            panic!()
        };
        assert_eq!(code, "BadGateway");
        assert!(!message.contains("abcdefgh"), "{message}");
    }

    /// A scripted ARM endpoint: Location-only LROs, a 429 with Retry-After,
    /// a dropped token, and an operation that fails.
    async fn scripted() -> (ArmClient, Arc<AtomicU64>) {
        use axum::http::{HeaderMap as H, StatusCode as S};
        use axum::response::IntoResponse;
        let hits = Arc::new(AtomicU64::new(0));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let b = base.clone();
        let h = hits.clone();
        let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
            let base = b.clone();
            let n = h.fetch_add(1, Ordering::Relaxed);
            async move {
                let path = req.uri().path().to_string();
                let mut headers = H::new();
                match (req.method().as_str(), path.as_str()) {
                    ("POST", "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm/start") => {
                        headers.insert("location", format!("{base}/loc/1&monitor=true&api-version=x").parse().unwrap());
                        headers.insert("retry-after", "0".parse().unwrap());
                        (S::ACCEPTED, headers, String::new()).into_response()
                    }
                    ("GET", "/loc/1") if n < 3 => {
                        headers.insert("retry-after-ms", "5".parse().unwrap());
                        (S::ACCEPTED, headers, String::new()).into_response()
                    }
                    ("GET", "/loc/1") => (S::NO_CONTENT, headers, String::new()).into_response(),
                    ("GET", "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/busy") if n < 5 => {
                        headers.insert("retry-after", "0.01".parse().unwrap());
                        (S::TOO_MANY_REQUESTS, headers, r#"{"error":{"code":"OperationNotAllowed","message":"throttled"}}"#.to_string()).into_response()
                    }
                    ("GET", "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/busy") => (S::OK, headers, r#"{"name":"busy","properties":{"vmId":"v"}}"#.to_string()).into_response(),
                    ("POST", "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm/deallocate") => {
                        headers.insert("azure-asyncoperation", format!("{base}/op/2?api-version=x").parse().unwrap());
                        (S::ACCEPTED, headers, String::new()).into_response()
                    }
                    ("GET", "/op/2") => (S::OK, headers, r#"{"status":"Failed","error":{"code":"AllocationFailed","message":"no capacity"}}"#.to_string()).into_response(),
                    ("POST", "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm/powerOff") => {
                        headers.insert("azure-asyncoperation", "https://evil.example/op/3".parse().unwrap());
                        (S::ACCEPTED, headers, String::new()).into_response()
                    }
                    _ => (S::NOT_FOUND, headers, r#"{"error":{"code":"ResourceNotFound","message":"nope"}}"#.to_string()).into_response(),
                }
            }
        });
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let mut cfg =
            AzureConfig::new(Url::parse(&base).unwrap(), super::super::AzureCloud::Public);
        cfg.poll_interval = Duration::from_millis(5);
        cfg.retry.base_delay = Duration::from_millis(5);
        let client =
            ArmClient::new(cfg, TokenSource::fixed(crate::model::BearerToken::new("t"))).unwrap();
        (client, hits)
    }

    fn vm(name: &str) -> ResourceId {
        ResourceId::new("s", "rg", "Microsoft.Compute", "virtualMachines", name)
    }

    #[tokio::test]
    async fn location_style_lro_is_polled_to_completion() {
        let (c, hits) = scripted().await;
        c.start_vm(&vm("vm")).await.unwrap();
        assert_eq!(hits.load(Ordering::Relaxed), 4, "POST + 2 x 202 + 204");
        assert_eq!(c.stats().lro_polls, 3);
    }

    #[tokio::test]
    async fn throttling_is_retried_with_retry_after_and_404_is_none() {
        let (c, _) = scripted().await;
        let got = c.get_vm(&vm("busy"), false).await.unwrap().unwrap();
        assert_eq!(got.parsed.properties.unwrap().vm_id.as_deref(), Some("v"));
        assert_eq!(c.stats().throttled, 5);
        assert!(c.get_vm(&vm("missing"), false).await.unwrap().is_none());
        c.delete_vm(&vm("missing"))
            .await
            .expect("deleting what is gone succeeds");
    }

    #[tokio::test]
    async fn failed_operation_and_foreign_poll_host() {
        let (c, _) = scripted().await;
        let e = c.deallocate_vm(&vm("vm")).await.unwrap_err();
        assert_eq!(
            e,
            AzureError::Operation {
                code: "AllocationFailed".into(),
                message: "no capacity".into()
            }
        );
        let e = c.power_off_vm(&vm("vm")).await.unwrap_err();
        assert!(
            e.to_string().contains("refusing to send credentials"),
            "{e}"
        );
    }
}
