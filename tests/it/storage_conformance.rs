//! Storage conformance: one suite, written once, run against two page-blob
//! backends — our emulator (`src/emulator/storage_routes/`) and Azurite 3.37.0,
//! Microsoft's own emulator (`../shared/azure/crates.md` §6). Every
//! operation goes through our real [`StorageClient`] (the one the copy
//! engine uses, built by [`ArmClient`]); only the setup (container, page
//! blob, snapshot, SAS) is backend-specific. Where both backends run an
//! operation, the test asserts the same observable result on both
//! (status, error code, merged ranges, bytes) and against a local model.
//!
//! The tests start Azurite themselves (`azurite-blob --inMemoryPersistence
//! --blobHost 127.0.0.1 --blobPort <free> --disableTelemetry`, killed on
//! drop) from `$ADE2EAH_AZURITE`, else from `target/azurite` where `.ci/run`
//! installs it. Without it they print a notice and run the emulator half.
//!
//! | operation (through `StorageClient`)                     | emulator | Azurite | note |
//! |---------------------------------------------------------|----------|---------|------|
//! | create page blob (setup) + length (HEAD)                | yes      | yes     | |
//! | Put Page `update` / `clear`, 512-aligned                | yes      | yes     | |
//! | written zeros stay listed as valid pages                | yes      | yes     | |
//! | Put Page misaligned offset → 416                        | yes      | yes     | same status |
//! | Put Page misaligned length → refused, nothing written   | yes      | yes     | emulator 416 `InvalidPageRange`, Azurite 400 `InvalidOperation` |
//! | Get Page Ranges, full (compared merged)                 | yes      | yes     | Azurite does not coalesce adjacent writes |
//! | Get Page Ranges of a snapshot                           | yes      | yes     | |
//! | ranged GET, holes and cleared pages read as zeros       | yes      | yes     | |
//! | read-only SAS used for a write → 403 `AuthorizationPermissionMismatch` | yes | yes | same code |
//! | no SAS / wrong signature → 403                          | yes      | yes     | emulator `AuthenticationFailed` (Azure's code), Azurite `AuthorizationFailure` |
//! | relay `copy_round` + `verify_calls` (full)              | yes      | yes     | stale target range overwritten |
//! | Put Page From URL, server-side `copy_round`             | yes      | **no**  | Azurite: 500 / 501 (not implemented) |
//! | Get Page Ranges diff + delta `copy_round`               | yes      | **no**  | Azurite ignores the diff, answers the full list |
//! | Put Page > 4 MiB → 413                                  | yes      | **no**  | Azurite accepts 8 MiB |
//! | Get Page Ranges paging (`NextMarker`), `x-ms-range`     | yes      | **no**  | Azurite ignores `maxresults`, never pages |
//!
//! The rows marked **no** have no independent oracle: they are checked
//! against our emulator only, which follows facts §4.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ade2eah::azure::client::ArmClient;
use ade2eah::azure::{
    AzureCloud, AzureConfig, AzureError, RetryConfig, StorageClient, TokenSource,
};
use ade2eah::copy::{CopyOptions, TransferMode, copy_round, verify_calls, verify_plan};
use ade2eah::emulator::blob::{BlobId, SasAccess};
use ade2eah::emulator::{self, Emulator, EmulatorConfig, StorageConfig};
use ade2eah::model::{BearerToken, SasUrl};
use base64::prelude::*;
use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
/// Blob length of every scenario (sparse: a few MiB are written).
const LEN: u64 = 64 * MIB;

// ---------------------------------------------------------------------------
// The scenario and its local model
// ---------------------------------------------------------------------------

/// One write of the sparse scenario.
#[derive(Debug, Clone, Copy)]
enum Op {
    /// Put Page `update` with pseudo-random bytes from `seed`.
    Write(u64, u64, u64),
    /// Put Page `update` with zeros (still valid pages).
    Zeros(u64, u64),
    /// Put Page `clear`.
    Clear(u64, u64),
}

/// Data, a lone page, two adjacent writes (Azurite lists them apart), a
/// range cleared in the middle, written zeros and a footer page.
const SPARSE: &[Op] = &[
    Op::Write(0, 4 * MIB, 1),
    Op::Write(8 * MIB, 512, 2),
    Op::Write(16 * MIB, MIB, 3),
    Op::Write(17 * MIB, MIB, 4),
    Op::Write(32 * MIB, 4 * MIB, 5),
    Op::Clear(33 * MIB, MIB),
    Op::Zeros(40 * MIB, 4 * KIB),
    Op::Write(LEN - 512, 512, 6),
];

/// The merged ranges `SPARSE` leaves allocated.
fn sparse_ranges() -> Vec<(u64, u64)> {
    vec![
        (0, 4 * MIB),
        (8 * MIB, 8 * MIB + 512),
        (16 * MIB, 18 * MIB),
        (32 * MIB, 33 * MIB),
        (34 * MIB, 36 * MIB),
        (40 * MIB, 40 * MIB + 4 * KIB),
        (LEN - 512, LEN),
    ]
}

/// Deterministic bytes without zero pages (splitmix64).
fn pattern(seed: u64, len: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len as usize);
    while (out.len() as u64) < len {
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        out.extend_from_slice(&(z | 1).to_le_bytes());
    }
    out.truncate(len as usize);
    out
}

/// Applies `ops` to a blob through the client and to the local model.
async fn apply(s: &StorageClient, blob: &SasUrl, ops: &[Op], model: &mut [u8]) {
    for op in ops {
        match *op {
            Op::Write(at, len, seed) => {
                let data = pattern(seed, len);
                model[at as usize..(at + len) as usize].copy_from_slice(&data);
                put(s, blob, at, data).await;
            }
            Op::Zeros(at, len) => {
                model[at as usize..(at + len) as usize].fill(0);
                put(s, blob, at, vec![0; len as usize]).await;
            }
            Op::Clear(at, len) => {
                model[at as usize..(at + len) as usize].fill(0);
                s.clear_pages(blob, at, len)
                    .await
                    .unwrap_or_else(|e| panic!("clear {at}+{len}: {e}"));
            }
        }
    }
}

async fn put(s: &StorageClient, blob: &SasUrl, at: u64, data: Vec<u8>) {
    let len = data.len();
    s.put_page(blob, at, Bytes::from(data))
        .await
        .unwrap_or_else(|e| panic!("put page {at}+{len}: {e}"));
}

/// The whole blob, read back in 4 MiB ranged GETs.
async fn read_all(s: &StorageClient, blob: &SasUrl) -> Vec<u8> {
    let len = s.properties(blob).await.expect("properties").content_length;
    let mut out = Vec::with_capacity(len as usize);
    let mut at = 0;
    while at < len {
        let n = (4 * MIB).min(len - at);
        out.extend_from_slice(&s.read_range(blob, at, n).await.expect("ranged read"));
        at += n;
    }
    out
}

/// Where two byte strings first differ (for assertion messages: never the bytes).
fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    if a == b {
        return None;
    }
    if a.len() != b.len() {
        return Some(a.len().min(b.len()));
    }
    a.iter().zip(b).position(|(x, y)| x != y)
}

/// `(status, code)` of a storage error; panics on success or other errors.
fn refusal<T: std::fmt::Debug>(what: &str, r: Result<T, AzureError>) -> (u16, String) {
    match r {
        Err(AzureError::Storage { status, code, .. }) => (status, code),
        other => panic!("{what}: expected a storage error, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// Backends
// ---------------------------------------------------------------------------

/// A page blob on some backend: a read-write and a read-only SAS URL.
struct TestBlob {
    rw: SasUrl,
    ro: SasUrl,
}

enum Kind {
    Emulator(Emulator),
    Azurite(Azurite),
}

/// One backend and a [`StorageClient`] pointed at it.
struct Backend {
    name: &'static str,
    storage: StorageClient,
    kind: Kind,
}

/// Our production client: `ArmClient`'s data-plane client, with the default
/// `x-ms-version` and short retries.
fn storage_client(base: &str) -> StorageClient {
    let mut cfg = AzureConfig::new(url::Url::parse(base).expect("base URL"), AzureCloud::Public);
    cfg.retry = RetryConfig {
        max_attempts: 2,
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(100),
        max_retry_after: Duration::from_secs(1),
    };
    cfg.request_timeout = Duration::from_secs(30);
    ArmClient::new(cfg, TokenSource::fixed(BearerToken::new("unused")))
        .expect("client")
        .storage()
}

async fn emulator_backend(storage: StorageConfig) -> Backend {
    let emu = emulator::start(EmulatorConfig {
        time_scale: crate::support::TIME_SCALE,
        storage,
        ..Default::default()
    })
    .await
    .expect("emulator starts");
    Backend {
        name: "emulator",
        storage: storage_client(&emu.base_url()),
        kind: Kind::Emulator(emu),
    }
}

/// The emulator, then Azurite when it is installed (with a notice otherwise).
async fn backends(test: &str) -> Vec<Backend> {
    let mut out = vec![emulator_backend(StorageConfig::default()).await];
    match Azurite::start() {
        Some(a) => out.push(Backend {
            name: "azurite",
            storage: storage_client(&a.endpoint()),
            kind: Kind::Azurite(a),
        }),
        None => eprintln!(
            "NOTICE {test}: Azurite not found (set ADE2EAH_AZURITE or run .ci/run, which installs \
             azurite@{AZURITE_VERSION} into target/azurite); only the emulator half ran"
        ),
    }
    out
}

/// Simulated seconds an emulator SAS grant lives (the whole test).
const GRANT_SECS: f64 = 1e9;

impl Backend {
    /// A new page blob of `len` zero bytes.
    async fn create(&self, len: u64) -> TestBlob {
        match &self.kind {
            Kind::Emulator(emu) => {
                let id = emu.blobs().create_upload(len);
                emu_blob(emu, &id)
            }
            Kind::Azurite(a) => a.create_page_blob(len).await,
        }
    }

    /// A read-only SAS URL of a snapshot of `blob` taken now.
    async fn snapshot(&self, blob: &TestBlob) -> SasUrl {
        match &self.kind {
            Kind::Emulator(emu) => {
                let id = emu_id(&blob.rw);
                let snap = emu.blobs().clone_blob(&id).expect("blob exists");
                sas(&emu
                    .blobs()
                    .grant(&snap, SasAccess::Read, GRANT_SECS)
                    .unwrap())
            }
            Kind::Azurite(a) => a.snapshot(blob).await,
        }
    }
}

fn sas(s: &str) -> SasUrl {
    SasUrl::parse(s).expect("SAS URL")
}

fn emu_blob(emu: &Emulator, id: &BlobId) -> TestBlob {
    let grant = |access| {
        sas(&emu
            .blobs()
            .grant(id, access, GRANT_SECS)
            .expect("blob exists"))
    };
    TestBlob {
        rw: grant(SasAccess::Write),
        ro: grant(SasAccess::Read),
    }
}

/// The emulator's blob id is the account (first path segment) of its SAS URL.
fn emu_id(u: &SasUrl) -> BlobId {
    let seg = u.expose_url().path_segments().and_then(|mut s| s.next());
    BlobId(seg.expect("path").to_string())
}

/// `u` without its query (no SAS at all).
fn unsigned(u: &SasUrl) -> SasUrl {
    sas(&u.without_query())
}

/// `u` with a well-formed signature that is not the right one.
fn wrong_signature(u: &SasUrl) -> SasUrl {
    let mut v = u.expose_url().clone();
    let pairs: Vec<(String, String)> = v
        .query_pairs()
        .map(|(k, val)| {
            let val = if k == "sig" {
                BASE64_STANDARD.encode([7u8; 32])
            } else {
                val.into_owned()
            };
            (k.into_owned(), val)
        })
        .collect();
    v.query_pairs_mut().clear().extend_pairs(pairs);
    sas(v.as_str())
}

// ---------------------------------------------------------------------------
// Azurite
// ---------------------------------------------------------------------------

const AZURITE_VERSION: &str = "3.37.0";
const ACCOUNT: &str = "devstoreaccount1";
/// Azurite's well-known development key (public; never printed here).
const ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
/// `sv` of every SAS signed here (and the setup calls' `x-ms-version`).
const SAS_VERSION: &str = "2025-05-05";
const CONTAINER: &str = "conformance";

/// A running `azurite-blob`, killed on drop.
struct Azurite {
    child: Child,
    port: u16,
    http: reqwest::Client,
    next: AtomicU64,
    _dir: tempfile::TempDir,
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `$ADE2EAH_AZURITE` (must exist when set), else `target/azurite`.
fn azurite_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ADE2EAH_AZURITE").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        assert!(
            p.exists(),
            "ADE2EAH_AZURITE={} does not exist (unset it to skip the Azurite half)",
            p.display()
        );
        return Some(p);
    }
    let cached = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target/azurite/node_modules/.bin/azurite-blob");
    cached.exists().then_some(cached)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl Azurite {
    /// Starts Azurite on a free loopback port and creates the container;
    /// `None` when it is not installed.
    fn start() -> Option<Azurite> {
        let bin = azurite_binary()?;
        let mut last = String::new();
        for _attempt in 0..3 {
            let dir = tempfile::tempdir().expect("temp dir");
            let port = free_port();
            let log = std::fs::File::create(dir.path().join("azurite.log")).expect("log file");
            let child = Command::new(&bin)
                .args(["--inMemoryPersistence", "--disableTelemetry"])
                .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
                .current_dir(dir.path())
                .env_remove("AZURITE_ACCOUNTS")
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log file"))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
            let mut a = Azurite {
                child,
                port,
                http: reqwest::Client::builder()
                    .no_proxy()
                    .timeout(Duration::from_secs(30))
                    .build()
                    .expect("http client"),
                next: AtomicU64::new(0),
                _dir: dir,
            };
            if a.wait_listening(Duration::from_secs(60)) {
                return Some(a);
            }
            last = std::fs::read_to_string(a._dir.path().join("azurite.log")).unwrap_or_default();
        }
        panic!("Azurite did not start listening; its log:\n{last}");
    }

    fn wait_listening(&mut self, limit: Duration) -> bool {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let t = Instant::now();
        while t.elapsed() < limit {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    /// `http://127.0.0.1:PORT/devstoreaccount1`.
    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/{ACCOUNT}", self.port)
    }

    fn sign(string_to_sign: &str) -> String {
        let key = BASE64_STANDARD.decode(ACCOUNT_KEY).expect("key");
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).expect("any key length");
        mac.update(string_to_sign.as_bytes());
        BASE64_STANDARD.encode(mac.finalize().into_bytes())
    }

    fn expiry() -> String {
        let t = time::OffsetDateTime::now_utc() + time::Duration::hours(2);
        t.replace_nanosecond(0)
            .expect("0 ns")
            .format(&time::format_description::well_known::Rfc3339)
            .expect("RFC 3339")
    }

    /// Account SAS for setup (container, blob creation, snapshots).
    fn account_sas() -> String {
        let (sp, ss, srt, se) = ("rwdlac", "b", "sco", Self::expiry());
        let sig = Self::sign(&format!(
            "{ACCOUNT}\n{sp}\n{ss}\n{srt}\n\n{se}\n\n\n{SAS_VERSION}\n\n"
        ));
        url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs([
                ("sv", SAS_VERSION),
                ("ss", ss),
                ("srt", srt),
                ("sp", sp),
                ("se", &se),
                ("sig", &sig),
            ])
            .finish()
    }

    /// Service SAS (version 2020-12-06+ string-to-sign) for one blob or snapshot.
    fn blob_sas(&self, blob: &str, sp: &str, snapshot: Option<&str>) -> SasUrl {
        let se = Self::expiry();
        let sr = if snapshot.is_some() { "bs" } else { "b" };
        let snap = snapshot.unwrap_or("");
        let canonical = format!("/blob/{ACCOUNT}/{CONTAINER}/{blob}");
        let sig = Self::sign(&format!(
            "{sp}\n\n{se}\n{canonical}\n\n\n\n{SAS_VERSION}\n{sr}\n{snap}\n\n\n\n\n\n"
        ));
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        if let Some(s) = snapshot {
            q.append_pair("snapshot", s);
        }
        q.extend_pairs([
            ("sv", SAS_VERSION),
            ("sr", sr),
            ("sp", sp),
            ("se", &se),
            ("sig", &sig),
        ]);
        sas(&format!(
            "{}/{CONTAINER}/{blob}?{}",
            self.endpoint(),
            q.finish()
        ))
    }

    /// One setup call with the account SAS; panics (without the URL) unless `want`.
    async fn setup(
        &self,
        method: reqwest::Method,
        path_query: &str,
        headers: &[(&str, String)],
        want: u16,
    ) -> reqwest::Response {
        let sep = if path_query.contains('?') { '&' } else { '?' };
        let url = format!(
            "{}/{path_query}{sep}{}",
            self.endpoint(),
            Self::account_sas()
        );
        let mut rb = self
            .http
            .request(method.clone(), url)
            .header("x-ms-version", SAS_VERSION)
            .header("content-length", "0");
        for (k, v) in headers {
            rb = rb.header(*k, v);
        }
        let r = rb
            .send()
            .await
            .map_err(|e| e.without_url())
            .unwrap_or_else(|e| panic!("Azurite setup {method} failed: {e}"));
        let path = path_query.split('?').next().unwrap_or_default().to_string();
        assert_eq!(
            r.status().as_u16(),
            want,
            "Azurite setup {method} /{path}: {:?}",
            r.headers().get("x-ms-error-code")
        );
        r
    }

    async fn create_page_blob(&self, len: u64) -> TestBlob {
        if self.next.fetch_add(1, Ordering::SeqCst) == 0 {
            self.setup(
                reqwest::Method::PUT,
                &format!("{CONTAINER}?restype=container"),
                &[],
                201,
            )
            .await;
        }
        let name = format!("disk{}", self.next.load(Ordering::SeqCst));
        self.setup(
            reqwest::Method::PUT,
            &format!("{CONTAINER}/{name}"),
            &[
                ("x-ms-blob-type", "PageBlob".into()),
                ("x-ms-blob-content-length", len.to_string()),
            ],
            201,
        )
        .await;
        TestBlob {
            rw: self.blob_sas(&name, "rw", None),
            ro: self.blob_sas(&name, "r", None),
        }
    }

    async fn snapshot(&self, blob: &TestBlob) -> SasUrl {
        let name = blob
            .rw
            .expose_url()
            .path_segments()
            .and_then(|mut s| s.next_back())
            .expect("blob name")
            .to_string();
        let r = self
            .setup(
                reqwest::Method::PUT,
                &format!("{CONTAINER}/{name}?comp=snapshot"),
                &[],
                201,
            )
            .await;
        let ts = r
            .headers()
            .get("x-ms-snapshot")
            .and_then(|v| v.to_str().ok())
            .expect("x-ms-snapshot")
            .to_string();
        self.blob_sas(&name, "r", Some(&ts))
    }
}

// ---------------------------------------------------------------------------
// Shared operations: both backends, same observable result
// ---------------------------------------------------------------------------

/// What one backend showed in [`storage_conformance_writes_ranges_snapshots_and_reads`].
#[derive(Debug, PartialEq, Eq)]
struct WriteObservation {
    length: u64,
    ranges: Vec<(u64, u64)>,
    snapshot_ranges: Vec<(u64, u64)>,
    ranges_after_snapshot: Vec<(u64, u64)>,
    bytes_equal_model: bool,
    snapshot_bytes_equal_model: bool,
    hole_reads_zero: bool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_conformance_writes_ranges_snapshots_and_reads() {
    let mut seen = Vec::new();
    for b in backends("writes_ranges_snapshots_and_reads").await {
        let t = Instant::now();
        let s = &b.storage;
        let blob = b.create(LEN).await;
        let length = s.properties(&blob.ro).await.expect("HEAD").content_length;
        assert_eq!(
            s.all_page_ranges(&blob.ro, None).await.unwrap().ranges,
            vec![],
            "{}: a new page blob has no valid pages",
            b.name
        );
        let mut model = vec![0u8; LEN as usize];
        apply(s, &blob.rw, SPARSE, &mut model).await;
        // One raw page of the listing, merged here, equals the client's merged list.
        let raw = s.page_ranges(&blob.ro, None, None, None).await.unwrap();
        assert!(
            raw.next_marker.is_none() && raw.clear.is_empty(),
            "{}: {raw:?}",
            b.name
        );
        let ranges = s.all_page_ranges(&blob.ro, None).await.unwrap().ranges;
        assert_eq!(
            ade2eah::azure::storage::merge(raw.ranges.clone()),
            ranges,
            "{}",
            b.name
        );
        let snap = b.snapshot(&blob).await;
        let snap_model = model.clone();
        // Later writes change the blob, not the snapshot.
        apply(
            s,
            &blob.rw,
            &[Op::Write(48 * MIB, MIB, 7), Op::Clear(0, MIB)],
            &mut model,
        )
        .await;
        let snapshot_ranges = s.all_page_ranges(&snap, None).await.unwrap().ranges;
        let ranges_after_snapshot = s.all_page_ranges(&blob.ro, None).await.unwrap().ranges;
        let bytes = read_all(s, &blob.ro).await;
        let snap_bytes = read_all(s, &snap).await;
        if let Some(at) = first_difference(&bytes, &model) {
            eprintln!("{}: blob differs from the model at byte {at}", b.name);
        }
        // Reads across a hole, a cleared range and partial pages.
        let hole = s
            .read_range(&blob.ro, 4 * MIB - 512, 8 * KIB)
            .await
            .unwrap();
        let cleared = s.read_range(&blob.ro, 33 * MIB + 100, 1000).await.unwrap();
        let hole_reads_zero = hole[..512] == model[(4 * MIB - 512) as usize..(4 * MIB) as usize]
            && hole[512..].iter().all(|&x| x == 0)
            && cleared.iter().all(|&x| x == 0);
        eprintln!(
            "writes_ranges_snapshots_and_reads on {}: {:?}",
            b.name,
            t.elapsed()
        );
        seen.push((
            b.name,
            WriteObservation {
                length,
                ranges,
                snapshot_ranges,
                ranges_after_snapshot,
                bytes_equal_model: bytes == model,
                snapshot_bytes_equal_model: snap_bytes == snap_model,
                hole_reads_zero,
            },
        ));
    }
    let mut after = sparse_ranges();
    after[0] = (MIB, 4 * MIB);
    after.insert(6, (48 * MIB, 49 * MIB));
    let want = WriteObservation {
        length: LEN,
        ranges: sparse_ranges(),
        snapshot_ranges: sparse_ranges(),
        ranges_after_snapshot: after,
        bytes_equal_model: true,
        snapshot_bytes_equal_model: true,
        hole_reads_zero: true,
    };
    for (name, o) in &seen {
        assert_eq!(o, &want, "{name}");
    }
}

/// What one backend answered in [`storage_conformance_refusals`].
#[derive(Debug, PartialEq, Eq)]
struct RefusalObservation {
    misaligned_offset: (u16, String),
    misaligned_length_status: u16,
    ranges_after_misaligned: Vec<(u64, u64)>,
    read_only_write: (u16, String),
    read_only_clear: (u16, String),
    no_sas_read: u16,
    no_sas_write: u16,
    wrong_sig_read: u16,
    wrong_sig_write: u16,
    ranges_after_refusals: Vec<(u64, u64)>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_conformance_refusals() {
    let mut seen = Vec::new();
    for b in backends("refusals").await {
        let s = &b.storage;
        let blob = b.create(LEN).await;
        put(s, &blob.rw, 0, pattern(1, 4 * KIB)).await;
        let misaligned_offset = refusal(
            "misaligned offset",
            s.put_page(&blob.rw, 100, Bytes::from(pattern(2, 512)))
                .await,
        );
        let (misaligned_length_status, ml_code) = refusal(
            "misaligned length",
            s.put_page(&blob.rw, 8 * KIB, Bytes::from(pattern(3, 100)))
                .await,
        );
        eprintln!(
            "{}: misaligned length answered {misaligned_length_status} {ml_code}",
            b.name
        );
        let ranges_after_misaligned = s.all_page_ranges(&blob.ro, None).await.unwrap().ranges;
        let read_only_write = refusal(
            "read-only SAS write",
            s.put_page(&blob.ro, 0, Bytes::from(pattern(4, 512))).await,
        );
        let read_only_clear = refusal("read-only SAS clear", s.clear_pages(&blob.ro, 0, 512).await);
        let status = |what: &str, r: Result<(), AzureError>| refusal(what, r).0;
        let no_sas_read = status(
            "no SAS read",
            s.read_range(&unsigned(&blob.ro), 0, 512).await.map(|_| ()),
        );
        let no_sas_write = status(
            "no SAS write",
            s.put_page(&unsigned(&blob.rw), 0, Bytes::from(pattern(5, 512)))
                .await,
        );
        let wrong_sig_read = status(
            "wrong signature read",
            s.read_range(&wrong_signature(&blob.ro), 0, 512)
                .await
                .map(|_| ()),
        );
        let wrong_sig_write = status(
            "wrong signature write",
            s.put_page(&wrong_signature(&blob.rw), 0, Bytes::from(pattern(6, 512)))
                .await,
        );
        // Nothing refused was written: the first 4 KiB are still pattern 1.
        assert_eq!(
            s.read_range(&blob.ro, 0, 4 * KIB).await.unwrap().to_vec(),
            pattern(1, 4 * KIB),
            "{}: a refused write changed bytes",
            b.name
        );
        let ranges_after_refusals = s.all_page_ranges(&blob.ro, None).await.unwrap().ranges;
        seen.push((
            b.name,
            RefusalObservation {
                misaligned_offset,
                misaligned_length_status,
                ranges_after_misaligned,
                read_only_write,
                read_only_clear,
                no_sas_read,
                no_sas_write,
                wrong_sig_read,
                wrong_sig_write,
                ranges_after_refusals,
            },
        ));
    }
    let mismatch = (403, "AuthorizationPermissionMismatch".to_string());
    for (name, o) in &mut seen {
        // Known divergence (see the table): a misaligned *length* is 416
        // InvalidPageRange here, 400 InvalidOperation in Azurite. Both refuse.
        assert!(
            matches!(o.misaligned_length_status, 400 | 416),
            "{name}: misaligned length answered {}",
            o.misaligned_length_status
        );
        o.misaligned_length_status = 0;
        // Azurite's 416 carries no proper error code; compare the status.
        assert_eq!(o.misaligned_offset.0, 416, "{name}: {o:?}");
        o.misaligned_offset.1.clear();
        let want = RefusalObservation {
            misaligned_offset: (416, String::new()),
            misaligned_length_status: 0,
            ranges_after_misaligned: vec![(0, 4 * KIB)],
            read_only_write: mismatch.clone(),
            read_only_clear: mismatch.clone(),
            no_sas_read: 403,
            no_sas_write: 403,
            wrong_sig_read: 403,
            wrong_sig_write: 403,
            ranges_after_refusals: vec![(0, 4 * KIB)],
        };
        assert_eq!(o, &want, "{name}");
    }
}

/// What one backend showed in [`storage_conformance_relay_copy_round`].
#[derive(Debug, PartialEq, Eq)]
struct RelayObservation {
    bytes_equal: bool,
    target_ranges: Vec<(u64, u64)>,
    allocated_bytes: u64,
    work_equals_copied: bool,
    verified_bytes: u64,
    mismatches: Vec<(u64, u64)>,
    /// After clearing one copied page of the target (a dropped range).
    mismatches_after_drop: Vec<(u64, u64)>,
    bytes_equal_after_drop: bool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_conformance_relay_copy_round() {
    let mut seen = Vec::new();
    for b in backends("relay_copy_round").await {
        let t = Instant::now();
        let s = &b.storage;
        let src = b.create(LEN).await;
        let mut model = vec![0u8; LEN as usize];
        apply(s, &src.rw, SPARSE, &mut model).await;
        let dst = b.create(LEN).await;
        // A stale range on the target where the source has a hole (an
        // interrupted earlier attempt): the copy must overwrite it.
        let mut stale = vec![0u8; LEN as usize];
        apply(s, &dst.rw, &[Op::Write(24 * MIB, 64 * KIB, 9)], &mut stale).await;
        let opts = CopyOptions::new(TransferMode::Relay, 4, 8);
        let stats = copy_round(s, &src.ro, None, &dst.rw, &opts, 0, &|_, _| {}, &|_| {})
            .await
            .unwrap_or_else(|e| panic!("{}: relay copy: {e}", b.name));
        let target = read_all(s, &dst.ro).await;
        let source = read_all(s, &src.ro).await;
        assert_eq!(source.len(), model.len());
        assert!(
            source == model,
            "{}: the source is not what was written",
            b.name
        );
        if let Some(at) = first_difference(&source, &target) {
            eprintln!("{}: target differs from source at byte {at}", b.name);
        }
        let plan = verify_plan(s, &src.ro, &dst.ro, true, &[], 0, 0)
            .await
            .unwrap();
        let report = verify_calls(s, &src.ro, &dst.ro, &plan, &opts)
            .await
            .unwrap();
        let target_ranges = s.all_page_ranges(&dst.ro, None).await.unwrap().ranges;
        // Negative control: drop one copied page; the same checks must see it.
        s.clear_pages(&dst.rw, 17 * MIB, 512).await.unwrap();
        let dropped = verify_calls(s, &src.ro, &dst.ro, &plan, &opts)
            .await
            .unwrap();
        let target_after = read_all(s, &dst.ro).await;
        eprintln!("relay_copy_round on {}: {:?}", b.name, t.elapsed());
        seen.push((
            b.name,
            RelayObservation {
                bytes_equal: source == target,
                target_ranges,
                allocated_bytes: stats.allocated_bytes,
                work_equals_copied: stats.work_bytes == stats.bytes_copied,
                verified_bytes: report.compared_bytes,
                mismatches: report.mismatches,
                mismatches_after_drop: dropped.mismatches,
                bytes_equal_after_drop: source == target_after,
            },
        ));
    }
    let src_ranges = sparse_ranges();
    let allocated: u64 = src_ranges.iter().map(|(s, e)| e - s).sum();
    let mut target_ranges = src_ranges.clone();
    target_ranges.insert(3, (24 * MIB, 24 * MIB + 64 * KIB));
    let want = RelayObservation {
        bytes_equal: true,
        target_ranges,
        allocated_bytes: allocated,
        work_equals_copied: true,
        verified_bytes: allocated + 64 * KIB,
        mismatches: vec![],
        mismatches_after_drop: vec![(16 * MIB, 18 * MIB)],
        bytes_equal_after_drop: false,
    };
    for (name, o) in &seen {
        assert_eq!(o, &want, "{name}");
    }
}

// ---------------------------------------------------------------------------
// Emulator only: Azurite does not implement these (crates.md §6.2)
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_conformance_emulator_only_server_side_copy_and_size_caps() {
    let b = emulator_backend(StorageConfig::default()).await;
    let s = &b.storage;
    let src = b.create(LEN).await;
    let mut model = vec![0u8; LEN as usize];
    apply(s, &src.rw, SPARSE, &mut model).await;
    let dst = b.create(LEN).await;

    // Put Page and Put Page From URL move at most 4 MiB per call (413).
    let too_big = refusal(
        "8 MiB Put Page",
        s.put_page(&dst.rw, 0, Bytes::from(vec![1u8; (8 * MIB) as usize]))
            .await,
    );
    assert_eq!(too_big, (413, "RequestBodyTooLarge".into()));
    let too_big = refusal(
        "8 MiB Put Page From URL",
        s.put_page_from_url(&dst.rw, &src.ro, 0, 8 * MIB).await,
    );
    assert_eq!(too_big, (413, "RequestBodyTooLarge".into()));
    // A read-only source grant is enough, a read-only target is not.
    let denied = refusal(
        "From URL into a read-only target",
        s.put_page_from_url(&dst.ro, &src.ro, 0, 512).await,
    );
    assert_eq!(denied, (403, "AuthorizationPermissionMismatch".into()));
    assert_eq!(
        s.all_page_ranges(&dst.ro, None).await.unwrap().ranges,
        vec![]
    );

    let opts = CopyOptions::new(TransferMode::ServerSide, 4, 8);
    copy_round(s, &src.ro, None, &dst.rw, &opts, 0, &|_, _| {}, &|_| {})
        .await
        .expect("server-side copy");
    let target = read_all(s, &dst.ro).await;
    assert_eq!(
        first_difference(&model, &target),
        None,
        "server-side copy is byte-exact"
    );
    assert_eq!(
        s.all_page_ranges(&dst.ro, None).await.unwrap().ranges,
        sparse_ranges(),
        "Put Page From URL copies the allocation, holes stay holes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_conformance_emulator_only_diff_and_delta_copy() {
    let b = emulator_backend(StorageConfig::default()).await;
    let s = &b.storage;
    let disk = b.create(LEN).await;
    let mut model = vec![0u8; LEN as usize];
    apply(s, &disk.rw, SPARSE, &mut model).await;
    let s1 = b.snapshot(&disk).await;
    apply(
        s,
        &disk.rw,
        &[
            Op::Write(0, 512, 11),        // changed
            Op::Write(20 * MIB, MIB, 12), // new
            Op::Clear(16 * MIB, MIB),     // cleared
            Op::Write(8 * MIB, 512, 2),   // rewritten with the same bytes
        ],
        &mut model,
    )
    .await;
    let s2 = b.snapshot(&disk).await;
    let diff = s.all_page_ranges(&s2, Some(&s1)).await.unwrap();
    assert_eq!(diff.ranges, vec![(0, 512), (20 * MIB, 21 * MIB)]);
    assert_eq!(diff.clear, vec![(16 * MIB, 17 * MIB)]);

    // The delta round brings a copy of s1 to s2 exactly.
    let target = b.create(LEN).await;
    let full = CopyOptions::new(TransferMode::ServerSide, 4, 8);
    copy_round(s, &s1, None, &target.rw, &full, 0, &|_, _| {}, &|_| {})
        .await
        .expect("full round");
    let stats = copy_round(s, &s2, Some(&s1), &target.rw, &full, 0, &|_, _| {}, &|_| {})
        .await
        .expect("delta round");
    assert_eq!(stats.bytes_copied, 512 + MIB + MIB, "only the delta moved");
    let got = read_all(s, &target.ro).await;
    assert_eq!(first_difference(&model, &got), None, "target equals s2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_conformance_emulator_only_range_paging_and_window() {
    let b = emulator_backend(StorageConfig {
        page_list_page_size: 2,
        ..Default::default()
    })
    .await;
    let s = &b.storage;
    let blob = b.create(LEN).await;
    let mut model = vec![0u8; LEN as usize];
    apply(s, &blob.rw, SPARSE, &mut model).await;
    let mut pages = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let p = s
            .page_ranges(&blob.ro, None, None, marker.as_deref())
            .await
            .unwrap();
        assert!(
            p.ranges.len() <= 2,
            "a page holds at most page_list_page_size ranges"
        );
        pages.push(p.ranges);
        match p.next_marker {
            Some(m) => marker = Some(m),
            None => break,
        }
    }
    assert_eq!(pages.len(), 4, "7 ranges in pages of 2: {pages:?}");
    assert_eq!(pages.concat(), sparse_ranges());
    assert_eq!(
        s.all_page_ranges(&blob.ro, None).await.unwrap().ranges,
        sparse_ranges()
    );
    let window = s
        .page_ranges(&blob.ro, None, Some((8 * MIB, 18 * MIB)), None)
        .await
        .unwrap();
    assert_eq!(
        window.ranges,
        vec![(8 * MIB, 8 * MIB + 512), (16 * MIB, 18 * MIB)]
    );
}

#[test]
fn storage_conformance_sas_signing_is_hmac_sha256() {
    // RFC 4231 test case 2 (key "Jefe"), through the same HMAC as the SAS.
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"Jefe").unwrap();
    mac.update(b"what do ya want for nothing?");
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        hex,
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}
