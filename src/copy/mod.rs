//! The page-range copy engine: fills an `Upload` target disk from a source
//! disk (or snapshot) over their SAS URLs.
//!
//! Contract of [`copy_disk`]:
//! - the source and target blobs must have exactly the same length (AzCopy's
//!   rule for managed-disk targets, facts §4.4); otherwise nothing is written;
//! - only allocated source ranges are moved, plus any range the target
//!   already holds data in (left by an interrupted earlier attempt), which is
//!   overwritten from the source so stale bytes cannot survive;
//! - every call moves at most `chunk_bytes` (≤ 4 MiB), 512-aligned, at the
//!   same offset in both blobs; calls run `parallel` at a time;
//! - the final 512 bytes (the VHD footer, which the revoke validates) are
//!   written last, after every other range succeeded;
//! - SAS grants are the caller's: this module never grants or revokes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::{StreamExt, TryStreamExt};
use tokio::sync::Semaphore;

use crate::azure::storage::merge;
use crate::azure::{AzureError, StorageClient};
use crate::model::SasUrl;

/// Most bytes one Put Page (From URL) call may move (facts §4.2).
pub const MAX_CHUNK: u64 = 4 << 20;
/// Page size.
pub const PAGE: u64 = 512;

/// How bytes move.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TransferMode {
    /// Put Page From URL: storage copies server side (default).
    #[default]
    ServerSide,
    /// The tool reads each range from the source and writes it with Put Page
    /// (for targets that cannot reach the source).
    Relay,
}

/// Copy tuning.
///
/// Contract: at most `parallel` data calls (copy writes or verification
/// reads) are in flight per disk, and, when `global` is set, at most its
/// permit count across every disk and VM of the process that shares these
/// options (clones share the same semaphore).
#[derive(Debug, Clone)]
pub struct CopyOptions {
    /// Bytes per call (a multiple of 512, at most 4 MiB).
    pub chunk_bytes: u64,
    /// Calls in flight per disk.
    pub parallel: usize,
    /// Server-side or relay.
    pub mode: TransferMode,
    /// Calls in flight in the whole process (all disks, all VMs).
    pub global: Option<Arc<Semaphore>>,
    /// Shortest lifetime requested for a disk SAS grant (`--sas-hours`).
    pub sas_min: std::time::Duration,
}

/// Default calls in flight per disk.
pub const DEFAULT_PARALLEL: usize = 16;
/// Default shortest SAS grant lifetime (`--sas-hours`).
pub const DEFAULT_SAS_MIN: std::time::Duration = std::time::Duration::from_secs(6 * 3600);
/// Default calls in flight across the process.
pub const DEFAULT_GLOBAL_PARALLEL: usize = 64;

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions::new(
            TransferMode::ServerSide,
            DEFAULT_PARALLEL,
            DEFAULT_GLOBAL_PARALLEL,
        )
    }
}

impl CopyOptions {
    /// Options with `per_disk` calls per disk and `total` (at least 2: a
    /// verification call holds two reads) across the process.
    pub fn new(mode: TransferMode, per_disk: usize, total: usize) -> Self {
        CopyOptions {
            chunk_bytes: MAX_CHUNK,
            parallel: per_disk.max(1),
            mode,
            global: Some(Arc::new(Semaphore::new(total.max(2)))),
            sas_min: DEFAULT_SAS_MIN,
        }
    }

    /// Waits for `n` process-wide slots, one per HTTP data call the caller
    /// will have in flight (none when there is no global cap).
    async fn slots(&self, n: u32) -> Option<tokio::sync::SemaphorePermit<'_>> {
        match &self.global {
            // The semaphore is never closed.
            Some(s) => s.acquire_many(n).await.ok(),
            None => None,
        }
    }
}

/// Figures of one copy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyStats {
    /// Bytes written into the target.
    pub bytes_copied: u64,
    /// Bytes allocated in the source.
    pub allocated_bytes: u64,
    /// Blob length (disk size + 512).
    pub blob_size: u64,
    /// Write calls made.
    pub calls: u64,
    /// Bytes of the round's whole work list (what a run without resume moves).
    pub work_bytes: u64,
    /// The whole work list, merged (a delta round: the source's changed
    /// ranges, written or cleared).
    pub work: Vec<(u64, u64)>,
}

/// Why a copy stopped.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// A storage call failed (after its retries).
    #[error("{0}")]
    Storage(#[from] AzureError),
    /// The blobs differ in length: the target was created with the wrong size.
    #[error(
        "source is {source_len} bytes but the target is {target_len} bytes; the target disk must be re-created with uploadSizeBytes = source size"
    )]
    SizeMismatch {
        /// Source length.
        source_len: u64,
        /// Target length.
        target_len: u64,
    },
    /// A length that no page blob can have.
    #[error("blob length {0} is not a multiple of 512")]
    Misaligned(u64),
}

impl From<CopyError> for AzureError {
    fn from(e: CopyError) -> Self {
        match e {
            CopyError::Storage(e) => e,
            other => AzureError::Copy {
                message: other.to_string(),
            },
        }
    }
}

/// Splits `[start, end)` ranges into calls of at most `chunk` bytes, cut at
/// multiples of `chunk` so calls stay aligned; ranges are assumed merged.
pub fn chunks(ranges: &[(u64, u64)], chunk: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for &(s, e) in ranges {
        let mut at = s;
        while at < e {
            let next = ((at / chunk) + 1) * chunk;
            let end = next.min(e);
            out.push((at, end - at));
            at = end;
        }
    }
    out
}

/// Copies `src` into `dst` (see the module contract). `progress` receives
/// `(done, total)` bytes of the round after every finished call.
pub async fn copy_disk(
    storage: &StorageClient,
    src: &SasUrl,
    dst: &SasUrl,
    opts: &CopyOptions,
    progress: &(dyn Fn(u64, u64) + Send + Sync),
) -> Result<CopyStats, CopyError> {
    copy_round(storage, src, None, dst, opts, 0, progress, &|_| {}).await
}

/// How many bytes between two journaled checkpoints of a round.
pub const CHECKPOINT_BYTES: u64 = 256 << 20;

/// One copy round. With `previous` (the older snapshot of the same disk
/// that the target already equals), only the ranges that changed since it
/// are copied from `src`, cleared ranges included (copying a hole from the
/// source clears it in the target). Without it, a full copy as
/// [`copy_disk`] describes, footer last.
///
/// Ranges are taken in offset order; `checkpoint(w)` is called (at most
/// every [`CHECKPOINT_BYTES`]) with a watermark `w` below which every range
/// is in the target, and a later call with `skip_below = w` skips them. A
/// range in flight at a crash is above the watermark and is copied again,
/// never trusted. `503 ServerBusy` slows a call down (backoff, retried up to
/// [`BUSY_RETRIES`] times); it does not fail the copy.
#[allow(clippy::too_many_arguments)]
pub async fn copy_round(
    storage: &StorageClient,
    src: &SasUrl,
    previous: Option<&SasUrl>,
    dst: &SasUrl,
    opts: &CopyOptions,
    skip_below: u64,
    progress: &(dyn Fn(u64, u64) + Send + Sync),
    checkpoint: &(dyn Fn(u64) + Send + Sync),
) -> Result<CopyStats, CopyError> {
    let chunk = (opts.chunk_bytes.clamp(PAGE, MAX_CHUNK) / PAGE) * PAGE;
    let source_len = storage.properties(src).await?.content_length;
    let target_len = storage.properties(dst).await?.content_length;
    if source_len != target_len {
        return Err(CopyError::SizeMismatch {
            source_len,
            target_len,
        });
    }
    if source_len % PAGE != 0 || source_len < PAGE {
        return Err(CopyError::Misaligned(source_len));
    }
    let (work, allocated) = match previous {
        Some(prev) => {
            let diff = storage.all_page_ranges(src, Some(prev)).await?;
            let allocated = diff.ranges.iter().map(|(s, e)| e - s).sum();
            (
                merge(diff.ranges.into_iter().chain(diff.clear).collect()),
                allocated,
            )
        }
        None => {
            let source_ranges = storage.all_page_ranges(src, None).await?.ranges;
            let stale = storage.all_page_ranges(dst, None).await?.ranges;
            let allocated = source_ranges.iter().map(|(s, e)| e - s).sum();
            let footer = (source_len - PAGE, source_len);
            (
                merge(
                    source_ranges
                        .into_iter()
                        .chain(stale)
                        .chain([footer])
                        .collect(),
                ),
                allocated,
            )
        }
    };
    let work: Vec<(u64, u64)> = work
        .into_iter()
        .filter(|(s, e)| s < e && *e <= source_len)
        .collect();
    let work_bytes = work.iter().map(|(s, e)| e - s).sum();
    let calls: Vec<(u64, u64)> = chunks(&work, chunk)
        .into_iter()
        .filter(|(o, l)| o + l > skip_below)
        .collect();
    let (head, last) = match previous {
        // A full round writes the footer chunk last.
        None => {
            let mut c = calls;
            let last = c.pop();
            (c, last)
        }
        Some(_) => (calls, None),
    };
    let written = AtomicU64::new(0);
    let count = AtomicU64::new(0);
    // Progress is of the round's work list; what a resume skips counts as done.
    let todo: u64 = head.iter().chain(last.iter()).map(|(_, l)| l).sum();
    let done = AtomicU64::new(work_bytes - todo.min(work_bytes));
    let advance = |len: u64| {
        let d = done.fetch_add(len, Ordering::Relaxed) + len;
        progress(d.min(work_bytes), work_bytes);
    };
    let marks = Watermark::new(&head, skip_below);
    let one = |idx: usize, (offset, len): (u64, u64)| {
        let written = &written;
        let count = &count;
        let marks = &marks;
        let advance = &advance;
        async move {
            let slot = opts.slots(1).await;
            put_with_pacing(storage, src, dst, offset, len, opts.mode).await?;
            drop(slot);
            written.fetch_add(len, Ordering::Relaxed);
            count.fetch_add(1, Ordering::Relaxed);
            advance(len);
            if let Some(w) = marks.done(idx) {
                checkpoint(w);
            }
            crate::failpoint::hit("copy:chunk");
            Ok::<_, AzureError>(())
        }
    };
    let mut stream =
        futures::stream::iter(head.iter().copied().enumerate().map(|(i, c)| one(i, c)))
            .buffer_unordered(opts.parallel.max(1));
    while let Some(r) = stream.next().await {
        r?;
    }
    drop(stream);
    if let Some(c) = last {
        let _slot = opts.slots(1).await;
        put_with_pacing(storage, src, dst, c.0, c.1, opts.mode).await?;
        written.fetch_add(c.1, Ordering::Relaxed);
        count.fetch_add(1, Ordering::Relaxed);
        advance(c.1);
    }
    checkpoint(source_len);
    Ok(CopyStats {
        bytes_copied: written.into_inner(),
        allocated_bytes: allocated,
        blob_size: source_len,
        calls: count.into_inner(),
        work_bytes,
        work,
    })
}

/// Retries of one call on `503 ServerBusy` before the copy gives up.
pub const BUSY_RETRIES: u32 = 40;

fn is_busy(e: &AzureError) -> bool {
    matches!(e, AzureError::Storage { status: 503, .. })
        || e.code()
            .is_some_and(|c| c.eq_ignore_ascii_case("ServerBusy"))
}

async fn put_with_pacing(
    storage: &StorageClient,
    src: &SasUrl,
    dst: &SasUrl,
    offset: u64,
    len: u64,
    mode: TransferMode,
) -> Result<(), AzureError> {
    let mut delay = std::time::Duration::from_millis(20);
    for attempt in 0.. {
        let r = match mode {
            TransferMode::ServerSide => storage.put_page_from_url(dst, src, offset, len).await,
            TransferMode::Relay => match storage.read_range(src, offset, len).await {
                Ok(data) => storage.put_page(dst, offset, data).await,
                Err(e) => Err(e),
            },
        };
        match r {
            Err(e) if is_busy(&e) && attempt < BUSY_RETRIES => {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(std::time::Duration::from_secs(5));
            }
            other => return other,
        }
    }
    unreachable!("the loop returns")
}

/// Tracks which calls (in offset order) are done and reports the highest
/// offset below which all are, every [`CHECKPOINT_BYTES`].
struct Watermark {
    ends: Vec<u64>,
    state: std::sync::Mutex<(Vec<bool>, usize, u64)>,
}

impl Watermark {
    fn new(calls: &[(u64, u64)], start: u64) -> Self {
        Watermark {
            ends: calls.iter().map(|(o, l)| o + l).collect(),
            state: std::sync::Mutex::new((vec![false; calls.len()], 0, start)),
        }
    }

    /// Marks call `idx` done; returns a new watermark worth journaling.
    fn done(&self, idx: usize) -> Option<u64> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (flags, next, last) = &mut *st;
        flags[idx] = true;
        while *next < flags.len() && flags[*next] {
            *next += 1;
        }
        let w = if *next == 0 {
            return None;
        } else {
            self.ends[*next - 1]
        };
        if w >= *last + CHECKPOINT_BYTES {
            *last = w;
            Some(w)
        } else {
            None
        }
    }
}

/// What a verification compared and found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Bytes read back from each side and compared.
    pub compared_bytes: u64,
    /// Ranges whose bytes differ, `[start, end)`.
    pub mismatches: Vec<(u64, u64)>,
}

/// Calls (4 MiB each) of the seeded spot check in sample mode, on top of the
/// ranges that must be compared: a fixed count, so sample verification costs
/// the same whatever the disk size.
pub const SAMPLE_CALLS: usize = 32;

/// The calls a verification makes: every allocated range of either blob
/// when `full`; otherwise every range where the allocation maps differ,
/// every range in `must` (what the offline round wrote), the footer, and
/// `spot_checks` (at most) more calls chosen by `seed`. Sorted by offset.
pub async fn verify_plan(
    storage: &StorageClient,
    src: &SasUrl,
    dst: &SasUrl,
    full: bool,
    must: &[(u64, u64)],
    spot_checks: usize,
    seed: u64,
) -> Result<Vec<(u64, u64)>, CopyError> {
    let len = storage.properties(src).await?.content_length;
    let target_len = storage.properties(dst).await?.content_length;
    if len != target_len {
        return Err(CopyError::SizeMismatch {
            source_len: len,
            target_len,
        });
    }
    let a = storage.all_page_ranges(src, None).await?.ranges;
    let b = storage.all_page_ranges(dst, None).await?.ranges;
    let union = merge(
        a.iter()
            .chain(b.iter())
            .copied()
            .chain([(len - PAGE, len)])
            .collect(),
    );
    let all = chunks(&union, MAX_CHUNK);
    if full {
        return Ok(all);
    }
    let differ = if a == b {
        Vec::new()
    } else {
        symmetric_difference(&a, &b)
    };
    let forced = merge(
        differ
            .into_iter()
            .chain(must.iter().copied())
            .chain([(len - PAGE, len)])
            .collect(),
    );
    let rate = spot_checks.min(all.len());
    let mut x = seed | 1;
    let sampled = all.iter().copied().filter(|_| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % (all.len().max(1) as u64)) < rate as u64
    });
    Ok(merge_calls(
        chunks(&forced, MAX_CHUNK)
            .into_iter()
            .chain(sampled)
            .collect(),
    ))
}

/// Reads every call's range from both blobs and compares the bytes.
pub async fn verify_calls(
    storage: &StorageClient,
    src: &SasUrl,
    dst: &SasUrl,
    calls: &[(u64, u64)],
    opts: &CopyOptions,
) -> Result<VerifyReport, CopyError> {
    let compared = AtomicU64::new(0);
    let bad = std::sync::Mutex::new(Vec::new());
    futures::stream::iter(calls.iter().copied().map(|(o, l)| {
        let compared = &compared;
        let bad = &bad;
        async move {
            // Both reads are in flight at once.
            let slot = opts.slots(2).await;
            let (x, y) =
                futures::try_join!(storage.read_range(src, o, l), storage.read_range(dst, o, l))?;
            drop(slot);
            compared.fetch_add(l, Ordering::Relaxed);
            if x != y {
                bad.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((o, o + l));
            }
            Ok::<_, AzureError>(())
        }
    }))
    .buffer_unordered(opts.parallel.max(1))
    .try_collect::<Vec<()>>()
    .await?;
    Ok(VerifyReport {
        compared_bytes: compared.into_inner(),
        mismatches: merge(bad.into_inner().unwrap_or_else(|p| p.into_inner())),
    })
}

/// Ranges covered by exactly one of two merged range lists.
fn symmetric_difference(a: &[(u64, u64)], b: &[(u64, u64)]) -> Vec<(u64, u64)> {
    // Sweep over the edges of both lists: +1/-1 per list; emit where exactly one is inside.
    let mut events: Vec<(u64, i32, i32)> = a
        .iter()
        .flat_map(|&(s, e)| [(s, 1, 0), (e, -1, 0)])
        .chain(b.iter().flat_map(|&(s, e)| [(s, 0, 1), (e, 0, -1)]))
        .collect();
    events.sort_unstable();
    let (mut ia, mut ib) = (0i32, 0i32);
    let mut out = Vec::new();
    let mut k = 0;
    while k < events.len() {
        let pos = events[k].0;
        while k < events.len() && events[k].0 == pos {
            ia += events[k].1;
            ib += events[k].2;
            k += 1;
        }
        if let Some(&(next, _, _)) = events.get(k)
            && (ia > 0) != (ib > 0)
            && next > pos
        {
            out.push((pos, next));
        }
    }
    merge(out)
}

/// Dedupes calls (sorted by offset, exact duplicates removed).
fn merge_calls(mut calls: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    calls.sort_unstable();
    calls.dedup();
    calls
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn chunks_are_aligned_and_bounded() {
        let c = chunks(&[(0, 512), (3 << 20, 9 << 20)], MAX_CHUNK);
        assert_eq!(
            c,
            vec![
                (0, 512),
                (3 << 20, 1 << 20),
                (4 << 20, 4 << 20),
                (8 << 20, 1 << 20)
            ]
        );
    }

    proptest! {
        #[test]
        fn chunks_cover_ranges_exactly(raw in proptest::collection::vec((0u64..4096, 1u64..40_000), 0..30)) {
            let ranges = merge(raw.into_iter().map(|(s, l)| (s * 512, (s * 512) + l * 512)).collect());
            let c = chunks(&ranges, MAX_CHUNK);
            let total: u64 = c.iter().map(|(_, l)| l).sum();
            let want: u64 = ranges.iter().map(|(s, e)| e - s).sum();
            prop_assert_eq!(total, want);
            for (o, l) in &c {
                prop_assert!(*l <= MAX_CHUNK && *l > 0 && o % 512 == 0 && l % 512 == 0);
                prop_assert!(o / MAX_CHUNK == (o + l - 1) / MAX_CHUNK, "a call never crosses a 4 MiB boundary");
            }
            prop_assert_eq!(merge(c.iter().map(|(o, l)| (*o, o + l)).collect()), ranges);
        }
    }
}

#[cfg(test)]
mod symmetric_tests {
    use super::*;

    #[test]
    fn symmetric_difference_is_exact() {
        assert_eq!(
            symmetric_difference(&[(0, 10), (20, 30)], &[(5, 10), (20, 40)]),
            vec![(0, 5), (30, 40)]
        );
        assert_eq!(symmetric_difference(&[(0, 10)], &[(0, 10)]), vec![]);
        assert_eq!(symmetric_difference(&[], &[(3, 4)]), vec![(3, 4)]);
    }
}
