//! The emulator's page-blob store: the bytes behind every managed disk and
//! snapshot, SAS grants, and write-bandwidth pacing.
//!
//! (Interface fixed by the emulator's ARM side. See `docs/contracts.md` and
//! `../shared/azure/facts.md` §3-4.)
//!
//! Layout: `extent` (extent maps, pattern pages), `ranges` (page-range
//! listing and diff), `vhd` (VHD footer), `crc64`, `store` (the store) and
//! `sas` (grants).
//!
//! Content model: a blob is a length (disk size + 512, a multiple of 512) and
//! a sorted map of non-overlapping, 512-aligned extents. An extent is either
//! deterministic synthetic data (`Pattern { seed, origin }`: the byte at blob
//! offset `o` is a pure function of `seed` and `o - extent_start + origin`)
//! or literal bytes. Absent ranges read as zeros and are not "allocated".
//! Copying a range copies extent descriptors, so terabyte disks cost a few
//! kilobytes while byte-for-byte comparison stays exact.
//!
//! ## Details of the model (storage owner)
//!
//! - Extent kinds: `Zero` (pages written with zeros: allocated, read as
//!   zeros), `Pattern { seed, origin }` and `Literal { data, off }` (a slice of
//!   an `Arc<[u8]>`, so clones and range copies share the bytes).
//! - **Pattern pages describe themselves.** Pattern page number
//!   `p = (o - extent_start + origin) / 512` is: 8 bytes magic `ADE2PAT\x01`,
//!   `seed` (u64 LE), `p` (u64 LE), then 61 pseudo-random words
//!   (splitmix64 of `(seed, p, word)`). Every write of literal bytes (Put Page
//!   bodies, `corrupt`) is classified page by page: an all-zero page becomes
//!   `Zero`, a page that is exactly some pattern page becomes `Pattern`, the
//!   rest stays `Literal`. So each 512-byte page has exactly one
//!   representation decided by its bytes alone. A relay copy (GET the source,
//!   Put Page the bytes) therefore yields the same descriptors as a
//!   server-side copy, and the digest and the diff can work on descriptors
//!   while staying exact.
//! - **Digest**: SHA-256 over the blob length and the canonical run list
//!   (maximal runs of contiguous pattern pages with one seed and consecutive
//!   page numbers, and maximal runs of contiguous literal pages with their
//!   bytes; zero/unallocated pages omitted). Given the per-page canonical
//!   classification above, two blobs get the same digest iff their bytes are
//!   equal (up to SHA-256 collisions).
//! - **Diff** (`x-ms-previous-snapshot-url`): a `PageRange` where the newer
//!   blob is allocated and its content differs from the older one (pattern
//!   against pattern by descriptor, literal against literal page by page,
//!   different kinds always differ, which is exact by the classification), a
//!   `ClearRange` where the older is allocated and the newer is not. Written
//!   zeros over an unallocated range are not reported (the bytes did not
//!   change).
//! - Put Page From URL copies the source's allocation too: an unallocated
//!   source range leaves the destination range unallocated.
//! - Every mutation is widened to whole 512-byte pages (the HTTP layer
//!   rejects unaligned ranges before they get here).

use serde::Serialize;

/// Identifies one blob (one disk or snapshot). Also its SAS account name
/// (`md-impexp-<hex>`), so it appears in SAS URLs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct BlobId(pub String);

/// What a SAS grant allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SasAccess {
    /// Read (export).
    Read,
    /// Write (upload).
    Write,
}

/// Storage behaviour knobs.
#[derive(Debug, Clone)]
pub struct StorageConfig {
    /// Most ranges in one Get Page Ranges answer (Azure: at most 10,000;
    /// it may return fewer, and a small value exercises `NextMarker`).
    pub page_list_page_size: usize,
    /// Share of data-plane requests answered `503 ServerBusy`.
    pub server_busy_rate: f64,
    /// Seed for the storage fault choices.
    pub seed: u64,
    /// Write bandwidth of every target blob in bytes per simulated second,
    /// instead of the Standard HDD tier of its size (`None`, the default).
    /// For benchmarks of a slower path, such as the 4 MiB/s per-disk cap
    /// of issue 15's small-disk setup; Azure's own figures are facts §9.
    pub upload_cap_bytes_per_sec: Option<f64>,
    /// Whether an upload disk's Write grant also reads the blob's data
    /// (`GET`), as it reads its properties and page ranges (default true).
    /// Facts §3.4: AzCopy reads the target's size through the upload SAS,
    /// and a blob SAS that reads properties carries `r`, which covers Get
    /// Blob too [INFERRED]; `false` models the pessimistic reading, under
    /// which the engine's verification before the seal falls back to the
    /// read grant after it.
    pub write_grant_reads_data: bool,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            page_list_page_size: 500,
            server_busy_rate: 0.0,
            seed: 1,
            upload_cap_bytes_per_sec: None,
            write_grant_reads_data: true,
        }
    }
}

/// A live SAS grant, for the test view (never the signature).
#[derive(Debug, Clone, Serialize)]
pub struct GrantInfo {
    /// The blob.
    pub blob: BlobId,
    /// Read or write.
    pub access: SasAccess,
    /// Simulated time at which it expires.
    pub expires_at: f64,
}

/// Data-plane counters.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StorageStats {
    /// Put Page From URL calls that succeeded.
    pub put_page_from_url: u64,
    /// Put Page calls (with a body, or clear) that succeeded.
    pub put_page: u64,
    /// Bytes written into blobs by either call.
    pub bytes_written: u64,
    /// Bytes read back by ranged GETs.
    pub bytes_read: u64,
    /// Get Page Ranges calls.
    pub page_list_calls: u64,
    /// 503 ServerBusy answers injected.
    pub server_busy: u64,
    /// Data calls (Put Page, Put Page From URL, ranged GET) being served now.
    pub data_in_flight: u64,
    /// The most data calls ever served at once (for parallelism caps).
    pub data_in_flight_max: u64,
}

/// One page of a blob.
pub(crate) const PAGE: u64 = 512;
const PAGE_USIZE: usize = 512;
const MIB: u64 = 1 << 20;
const TIB: u64 = 1 << 40;

mod crc64;
mod extent;
mod ranges;
mod sas;
mod store;
mod vhd;

pub(crate) use crc64::crc64;
pub(crate) use sas::{AccessError, Need};
pub use store::BlobStore;
#[cfg(test)]
pub(crate) use store::upload_bandwidth;
pub(crate) use store::{BlobProps, DiffError};

#[cfg(test)]
mod test_util {
    use std::sync::Arc;

    use super::ranges::ListedRange;
    use super::*;
    use crate::emulator::clock::SimClock;

    pub(super) const KIB: u64 = 1024;
    pub(super) const GIB: u64 = 1 << 30;

    pub(super) fn store() -> Arc<BlobStore> {
        BlobStore::new(SimClock::new(1.0), StorageConfig::default())
    }

    pub(super) fn all_ranges(
        s: &BlobStore,
        id: &BlobId,
        prev: Option<&BlobId>,
        max: usize,
    ) -> Vec<ListedRange> {
        let len = s.size(id).unwrap();
        let mut out = Vec::new();
        let mut from = 0;
        loop {
            let page = s.page_list(id, prev, from, len, max).unwrap();
            assert!(page.ranges.len() <= max);
            out.extend(page.ranges);
            match page.next {
                Some(n) => from = n,
                None => break,
            }
        }
        out
    }
}
