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

use std::sync::atomic::{AtomicU64, Ordering};

use futures::{StreamExt, TryStreamExt};

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
#[derive(Debug, Clone)]
pub struct CopyOptions {
    /// Bytes per call (a multiple of 512, at most 4 MiB).
    pub chunk_bytes: u64,
    /// Calls in flight per disk.
    pub parallel: usize,
    /// Server-side or relay.
    pub mode: TransferMode,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            chunk_bytes: MAX_CHUNK,
            parallel: 16,
            mode: TransferMode::ServerSide,
        }
    }
}

/// Figures of one copy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CopyStats {
    /// Bytes written into the target.
    pub bytes_copied: u64,
    /// Bytes allocated in the source.
    pub allocated_bytes: u64,
    /// Blob length (disk size + 512).
    pub blob_size: u64,
    /// Write calls made.
    pub calls: u64,
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
/// the bytes of every finished call.
pub async fn copy_disk(
    storage: &StorageClient,
    src: &SasUrl,
    dst: &SasUrl,
    opts: &CopyOptions,
    progress: &(dyn Fn(u64) + Send + Sync),
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
    let source_ranges = storage.all_page_ranges(src, None).await?.ranges;
    let stale = storage.all_page_ranges(dst, None).await?.ranges;
    let allocated: u64 = source_ranges.iter().map(|(s, e)| e - s).sum();
    let footer = (source_len - PAGE, source_len);
    let work = merge(
        source_ranges
            .into_iter()
            .chain(stale)
            .chain([footer])
            .filter(|(s, e)| s < e && *e <= source_len)
            .collect(),
    );
    let mut calls = chunks(&work, chunk);
    // The chunk holding the footer goes last.
    let last = calls.pop().expect("the footer range is always present");
    let written = AtomicU64::new(0);
    let count = AtomicU64::new(0);
    let one = |(offset, len): (u64, u64)| {
        let written = &written;
        let count = &count;
        async move {
            match opts.mode {
                TransferMode::ServerSide => {
                    storage.put_page_from_url(dst, src, offset, len).await?
                }
                TransferMode::Relay => {
                    let data = storage.read_range(src, offset, len).await?;
                    storage.put_page(dst, offset, data).await?
                }
            }
            written.fetch_add(len, Ordering::Relaxed);
            count.fetch_add(1, Ordering::Relaxed);
            progress(len);
            Ok::<_, AzureError>(())
        }
    };
    futures::stream::iter(calls.into_iter().map(one))
        .buffer_unordered(opts.parallel.max(1))
        .try_collect::<Vec<()>>()
        .await?;
    one(last).await?;
    Ok(CopyStats {
        bytes_copied: written.into_inner(),
        allocated_bytes: allocated,
        blob_size: source_len,
        calls: count.into_inner(),
    })
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
