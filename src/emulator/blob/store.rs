//! The blob store: blobs by id, their content operations (create, clone,
//! read, write, copy, digest), pacing of writes, and the data plane's
//! counters. SAS grants are in [`super::sas`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::extent::*;
use super::ranges::*;
use super::sas::Grant;
use super::vhd::*;
use super::*;
use crate::emulator::clock::SimClock;
use crate::emulator::rng::{GAMMA, Rng, mix64};

#[derive(Debug)]
pub(super) struct Blob {
    pub(super) len: u64,
    pub(super) map: Map,
    pub(super) container: String,
    /// Lineage: a blob and its clones share a family (diff needs it).
    pub(super) family: u64,
    pub(super) etag: u64,
    pub(super) modified: f64,
    pub(super) busy_until: f64,
}

#[derive(Debug)]
pub(super) struct Inner {
    pub(super) base: String,
    pub(super) blobs: HashMap<BlobId, Blob>,
    /// By signature.
    pub(super) grants: HashMap<String, Grant>,
    pub(super) stats: StorageStats,
    pub(super) id_rng: Rng,
    pub(super) busy_rng: Rng,
    pub(super) next_family: u64,
    pub(super) etag_counter: u64,
}

/// Properties shown in response headers.
#[derive(Debug, Clone)]
pub(crate) struct BlobProps {
    pub len: u64,
    pub etag: String,
    pub last_modified: f64,
}

/// One page of a Get Page Ranges answer.
#[derive(Debug, Clone)]
pub(crate) struct PageListing {
    pub props: BlobProps,
    pub ranges: Vec<ListedRange>,
    /// Offset where the next page starts (`None` when done).
    pub next: Option<u64>,
}

/// Why a diff was refused (besides SAS errors on the previous snapshot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DiffError {
    /// The blob itself is gone.
    NotFound,
    /// The previous snapshot is not part of the same disk's lineage.
    NotSameLineage,
}

/// Source pieces of a Put Page From URL, captured at one instant.
#[derive(Debug, Clone)]
pub(crate) struct SourceRange {
    pub(super) pieces: Vec<(u64, Extent)>,
    pub(super) len: u64,
}

impl SourceRange {
    /// The bytes (zeros where unallocated).
    pub fn materialise(&self) -> Vec<u8> {
        let mut out = vec![0u8; self.len as usize];
        materialise(&self.pieces, &mut out);
        out
    }

    /// A cheap stand-in for the range's CRC-64 (8 bytes of a SHA-256 over
    /// the canonical descriptors; equal content gives equal values).
    pub fn fingerprint(&self) -> [u8; 8] {
        let mut h = Sha256::new();
        h.update(self.len.to_le_bytes());
        hash_runs(&mut h, self.pieces.iter().map(|(r, e)| (*r, e)));
        let d = h.finalize();
        let mut out = [0u8; 8];
        out.copy_from_slice(&d[..8]);
        out
    }
}

/// Outcome of a write: headers and the pacing delay (simulated seconds).
#[derive(Debug, Clone)]
pub(crate) struct WriteDone {
    pub props: BlobProps,
    pub delay: f64,
}

/// Upload bandwidth (bytes per simulated second) into a blob of `len`
/// bytes: the Standard HDD tier of the disk's size (facts §9).
pub(crate) fn upload_bandwidth(len: u64) -> f64 {
    let disk = len.saturating_sub(PAGE);
    let mib_s = if disk <= 4 * TIB {
        60.0
    } else if disk <= 8 * TIB {
        300.0
    } else {
        500.0
    };
    mib_s * MIB as f64
}

/// Hashes the canonical run list of `pieces` (sorted, non-overlapping).
pub(super) fn hash_runs<'a>(h: &mut Sha256, pieces: impl Iterator<Item = (u64, &'a Extent)>) {
    enum Run<'a> {
        Pat {
            start: u64,
            len: u64,
            seed: u64,
            origin: u64,
        },
        Lit {
            start: u64,
            len: u64,
            parts: Vec<(&'a Arc<[u8]>, u64, u64)>,
        },
    }
    fn flush(h: &mut Sha256, run: Option<Run<'_>>) {
        match run {
            None => {}
            Some(Run::Pat {
                start,
                len,
                seed,
                origin,
            }) => {
                h.update(b"P");
                h.update(start.to_le_bytes());
                h.update(len.to_le_bytes());
                h.update(seed.to_le_bytes());
                h.update(origin.to_le_bytes());
            }
            Some(Run::Lit { start, len, parts }) => {
                h.update(b"L");
                h.update(start.to_le_bytes());
                h.update(len.to_le_bytes());
                for (d, off, l) in parts {
                    h.update(&d[off as usize..(off + l) as usize]);
                }
            }
        }
    }
    let mut cur: Option<Run<'a>> = None;
    for (start, ext) in pieces {
        match &ext.kind {
            Kind::Zero => {}
            Kind::Pattern { seed, origin } => {
                if let Some(Run::Pat {
                    start: s,
                    len,
                    seed: cs,
                    origin: co,
                }) = &mut cur
                    && *s + *len == start
                    && cs == seed
                    && *co + *len == *origin
                {
                    *len += ext.len;
                    continue;
                }
                flush(h, cur.take());
                cur = Some(Run::Pat {
                    start,
                    len: ext.len,
                    seed: *seed,
                    origin: *origin,
                });
            }
            Kind::Literal { data, off } => {
                if let Some(Run::Lit {
                    start: s,
                    len,
                    parts,
                }) = &mut cur
                    && *s + *len == start
                {
                    *len += ext.len;
                    parts.push((data, *off, ext.len));
                    continue;
                }
                flush(h, cur.take());
                cur = Some(Run::Lit {
                    start,
                    len: ext.len,
                    parts: vec![(data, *off, ext.len)],
                });
            }
        }
    }
    flush(h, cur.take());
}

/// All blobs of one emulator. Thread-safe; shared behind an `Arc`.
#[derive(Debug)]
pub struct BlobStore {
    pub(super) clock: SimClock,
    pub(super) cfg: StorageConfig,
    /// Wall-clock time that simulated time 0 maps to (for HTTP dates and `se`).
    pub(super) wall_start: OffsetDateTime,
    pub(super) inner: Mutex<Inner>,
}

impl BlobStore {
    /// An empty store.
    pub fn new(clock: SimClock, cfg: StorageConfig) -> Arc<BlobStore> {
        let wall_start = OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let inner = Inner {
            base: "http://127.0.0.1".to_string(),
            blobs: HashMap::new(),
            grants: HashMap::new(),
            stats: StorageStats::default(),
            id_rng: Rng::from_state(mix64(cfg.seed ^ 0x1D5_0000_0000_0001)),
            busy_rng: Rng::from_state(mix64(cfg.seed ^ 0xB05_0000_0000_0002)),
            next_family: 1,
            etag_counter: 0x0DC_0000_0000,
        };
        Arc::new(BlobStore {
            clock,
            cfg,
            wall_start,
            inner: Mutex::new(inner),
        })
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the map half-updated in
        // a way that matters to a test emulator; keep serving.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The clock the store runs on.
    pub fn clock(&self) -> SimClock {
        self.clock
    }

    /// The configuration.
    pub fn config(&self) -> &StorageConfig {
        &self.cfg
    }

    /// Sets the `http://127.0.0.1:PORT` prefix of SAS URLs (known once bound).
    pub fn set_base_url(&self, base: &str) {
        self.lock().base = base.trim_end_matches('/').to_string();
    }

    pub(super) fn new_blob(
        &self,
        inner: &mut Inner,
        len: u64,
        map: Map,
        family: Option<u64>,
    ) -> BlobId {
        let id = loop {
            let cand = BlobId(format!(
                "md-impexp-{:012x}",
                inner.id_rng.next_u64() & 0xFFFF_FFFF_FFFF
            ));
            if !inner.blobs.contains_key(&cand) {
                break cand;
            }
        };
        let container = format!("{:08x}", inner.id_rng.next_u64() & 0xFFFF_FFFF);
        let family = family.unwrap_or_else(|| {
            inner.next_family += 1;
            inner.next_family
        });
        inner.etag_counter += 1;
        let blob = Blob {
            len,
            map,
            container,
            family,
            etag: inner.etag_counter,
            modified: self.clock.now(),
            busy_until: 0.0,
        };
        inner.blobs.insert(id.clone(), blob);
        id
    }

    /// A source disk's blob: `size_bytes` long (disk size + 512), with about
    /// `allocated_fraction` of it filled with synthetic data from `seed` in
    /// several runs (so page-range listings need more than one page on
    /// large disks), and a valid fixed-VHD footer in the last 512 bytes.
    pub fn create_source(&self, size_bytes: u64, allocated_fraction: f64, seed: u64) -> BlobId {
        let len = page_floor(size_bytes).max(PAGE);
        let data = len - PAGE;
        let frac = if allocated_fraction.is_finite() {
            allocated_fraction.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let target = page_floor((data as f64 * frac) as u64).min(data);
        let mut rng = Rng::from_state(mix64(seed ^ 0x50C_0000_0000_0003));
        // Run lengths: [max/64, max] with max = data/16 clamped to 64 KiB..64 MiB.
        let max_run = page_floor((data / 16).clamp(64 * 1024, 64 * MIB));
        let min_run = page_floor((max_run / 64).max(4096)).min(max_run);
        let mut runs: Vec<u64> = Vec::new();
        let mut sum = 0u64;
        while sum < target {
            let l = page_floor(rng.range_u64(min_run, max_run))
                .max(PAGE)
                .min(target - sum);
            runs.push(l);
            sum += l;
        }
        // Gaps: n + 1 of them sharing the unallocated space.
        let free = data - sum;
        let n = runs.len() as u64;
        let mut gaps = vec![0u64; runs.len() + 1];
        if n > 0 && free > 0 {
            let min_gap = if free >= (n + 1) * 8192 { 4096 } else { 0 };
            let spare = free - min_gap * (n.saturating_sub(1));
            let weights: Vec<f64> = (0..=n).map(|_| rng.next_f64() + 0.05).collect();
            let total_w: f64 = weights.iter().sum();
            let mut used = 0u64;
            for (i, w) in weights.iter().enumerate() {
                let interior = i > 0 && i < runs.len();
                let g = page_floor((spare as f64 * w / total_w) as u64)
                    + if interior { min_gap } else { 0 };
                gaps[i] = g;
                used += g;
            }
            // Whatever rounding left over goes to the tail gap (or comes off it).
            let last = gaps.len() - 1;
            if used <= free {
                gaps[last] += free - used;
            } else {
                let over = used - free;
                gaps[last] = gaps[last].saturating_sub(over);
            }
        } else if n == 0 {
            gaps[0] = free;
        }
        let mut map = Map::new();
        let mut pos = 0u64;
        for (i, l) in runs.iter().enumerate() {
            pos += gaps[i];
            if pos + l > data {
                break;
            }
            let run_seed = mix64(seed.wrapping_add((i as u64 + 1).wrapping_mul(GAMMA)));
            insert_merge(
                &mut map,
                pos,
                Extent {
                    len: *l,
                    kind: Kind::Pattern {
                        seed: run_seed,
                        origin: pos,
                    },
                },
            );
            pos += l;
        }
        let footer: Arc<[u8]> = Arc::from(vhd_footer(data, seed).to_vec());
        map.insert(
            data,
            Extent {
                len: PAGE,
                kind: Kind::Literal {
                    data: footer,
                    off: 0,
                },
            },
        );
        let mut inner = self.lock();
        self.new_blob(&mut inner, len, map, None)
    }

    /// An `Upload` disk's blob: `size_bytes` of zeros, no footer.
    pub fn create_upload(&self, size_bytes: u64) -> BlobId {
        let len = page_floor(size_bytes);
        let mut inner = self.lock();
        self.new_blob(&mut inner, len, Map::new(), None)
    }

    /// A copy of `from` (snapshot, `Copy`-created disk); `None` if unknown.
    pub fn clone_blob(&self, from: &BlobId) -> Option<BlobId> {
        let mut inner = self.lock();
        let src = inner.blobs.get(from)?;
        let (len, map, family) = (src.len, src.map.clone(), src.family);
        Some(self.new_blob(&mut inner, len, map, Some(family)))
    }

    /// Forgets a blob and its grants.
    pub fn delete(&self, id: &BlobId) {
        let mut inner = self.lock();
        inner.blobs.remove(id);
        inner.grants.retain(|_, g| &g.blob != id);
    }

    /// Blob length in bytes.
    pub fn size(&self, id: &BlobId) -> Option<u64> {
        self.lock().blobs.get(id).map(|b| b.len)
    }

    /// Bytes in allocated (non-zero-extent) ranges.
    ///
    /// Counts every written page, including pages written with zeros by Put
    /// Page (Azure lists those as valid pages too); cleared and never-written
    /// pages are not counted.
    pub fn allocated_bytes(&self, id: &BlobId) -> Option<u64> {
        self.lock()
            .blobs
            .get(id)
            .map(|b| b.map.values().map(|e| e.len).sum())
    }

    /// Number of extents (memory footprint check for tests).
    pub fn extent_count(&self, id: &BlobId) -> Option<usize> {
        self.lock().blobs.get(id).map(|b| b.map.len())
    }

    /// True when the last 512 bytes are a fixed-VHD footer (cookie `conectix`).
    ///
    /// Also checks the footer checksum and disk type 2 (fixed).
    pub fn footer_valid(&self, id: &BlobId) -> bool {
        let Some(len) = self.size(id) else {
            return false;
        };
        if len < PAGE {
            return false;
        }
        match self.read(id, len - PAGE, PAGE) {
            Some(f) => footer_ok(&f),
            None => false,
        }
    }

    /// A hex SHA-256 that is equal for two blobs iff their bytes are equal.
    ///
    /// Computed from the canonical run list (see the module doc): exact
    /// because every page has one representation decided by its bytes.
    pub fn digest(&self, id: &BlobId) -> Option<String> {
        let (len, map) = {
            let inner = self.lock();
            let b = inner.blobs.get(id)?;
            (b.len, b.map.clone())
        };
        let mut h = Sha256::new();
        h.update(b"ade2eah-blob-v1");
        h.update(len.to_le_bytes());
        hash_runs(&mut h, map.iter().map(|(s, e)| (*s, e)));
        let d = h.finalize();
        Some(d.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// Reads bytes (zeros where unallocated); `None` if out of range or unknown.
    pub fn read(&self, id: &BlobId, offset: u64, len: u64) -> Option<Vec<u8>> {
        let pieces = self.read_pieces(id, offset, len)?;
        let mut out = vec![0u8; usize::try_from(len).ok()?];
        materialise(&pieces, &mut out);
        Some(out)
    }

    /// Descriptors of `[offset, offset + len)` relative to `offset`.
    pub(super) fn read_pieces(
        &self,
        id: &BlobId,
        offset: u64,
        len: u64,
    ) -> Option<Vec<(u64, Extent)>> {
        let inner = self.lock();
        let b = inner.blobs.get(id)?;
        if offset.checked_add(len)? > b.len {
            return None;
        }
        Some(pieces_of(&b.map, offset, len))
    }

    /// A guest write while the VM runs: `len` bytes of new synthetic data at
    /// `offset` (512-aligned), drawn from `seed`.
    ///
    /// An unaligned range is widened to whole pages and clipped to the blob.
    pub fn guest_write(&self, id: &BlobId, offset: u64, len: u64, seed: u64) {
        let mut inner = self.lock();
        let now = self.clock.now();
        inner.etag_counter += 1;
        let etag = inner.etag_counter;
        let Some(b) = inner.blobs.get_mut(id) else {
            return;
        };
        let a = page_floor(offset).min(b.len);
        let e = page_ceil(offset.saturating_add(len)).min(b.len);
        if a >= e {
            return;
        }
        let ext = Extent {
            len: e - a,
            kind: Kind::Pattern { seed, origin: a },
        };
        write_pieces(&mut b.map, a, e - a, vec![(0, ext)]);
        b.etag = etag;
        b.modified = now;
    }

    /// A guest TRIM/discard while the VM runs: the pages in the range become
    /// unallocated (they read as zeros and leave Get Page Ranges).
    ///
    /// An unaligned range is shrunk to the whole pages inside it.
    pub fn guest_trim(&self, id: &BlobId, offset: u64, len: u64) {
        let mut inner = self.lock();
        let now = self.clock.now();
        inner.etag_counter += 1;
        let etag = inner.etag_counter;
        let Some(b) = inner.blobs.get_mut(id) else {
            return;
        };
        let a = page_ceil(offset).min(b.len);
        let e = page_floor(offset.saturating_add(len)).min(b.len.saturating_sub(512));
        if a >= e {
            return;
        }
        remove_range(&mut b.map, a, e);
        b.etag = etag;
        b.modified = now;
    }

    /// Flips bytes in one range (fault injection for verification tests).
    ///
    /// Every byte in the range is XORed with 0xFF (clipped to the blob).
    pub fn corrupt(&self, id: &BlobId, offset: u64, len: u64) {
        let Some(size) = self.size(id) else { return };
        let a = page_floor(offset).min(size);
        let e = page_ceil(offset.saturating_add(len)).min(size);
        if a >= e {
            return;
        }
        let Some(mut bytes) = self.read(id, a, e - a) else {
            return;
        };
        let from = (offset.max(a) - a) as usize;
        let to = (offset.saturating_add(len).min(e) - a) as usize;
        for b in &mut bytes[from..to] {
            *b ^= 0xFF;
        }
        let pieces = classify(Arc::from(bytes));
        let mut inner = self.lock();
        inner.etag_counter += 1;
        let etag = inner.etag_counter;
        let now = self.clock.now();
        if let Some(b) = inner.blobs.get_mut(id) {
            write_pieces(&mut b.map, a, e - a, pieces);
            b.etag = etag;
            b.modified = now;
        }
    }

    /// Data-plane counters so far.
    pub fn stats(&self) -> StorageStats {
        self.lock().stats.clone()
    }

    // -- internal API for the HTTP handler and tests ------------------------

    /// Copies `len` bytes of `src` at `src_off` into `dst` at `dst_off` by
    /// descriptors (no pacing, no SAS). False when out of range or unknown.
    pub fn copy_range(
        &self,
        src: &BlobId,
        src_off: u64,
        dst: &BlobId,
        dst_off: u64,
        len: u64,
    ) -> bool {
        let Some(pieces) = self.read_pieces(src, src_off, len) else {
            return false;
        };
        let mut inner = self.lock();
        inner.etag_counter += 1;
        let etag = inner.etag_counter;
        let now = self.clock.now();
        let Some(b) = inner.blobs.get_mut(dst) else {
            return false;
        };
        if dst_off.checked_add(len).is_none_or(|e| e > b.len) {
            return false;
        }
        write_pieces(&mut b.map, dst_off, len, pieces);
        b.etag = etag;
        b.modified = now;
        true
    }

    /// Simulated time as an HTTP date (`Mon, 13 Jul 2020 19:24:09 GMT`).
    pub(crate) fn http_date(&self, sim: f64) -> String {
        let t = self.wall(sim);
        let fmt = time::macros::format_description!(
            "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
        );
        t.format(&fmt).unwrap_or_default()
    }

    pub(super) fn rfc3339(&self, sim: f64) -> String {
        let t = self
            .wall(sim)
            .replace_nanosecond(0)
            .unwrap_or(self.wall_start);
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    }

    pub(super) fn wall(&self, sim: f64) -> OffsetDateTime {
        let secs = if sim.is_finite() {
            sim.clamp(0.0, 1e11)
        } else {
            0.0
        };
        self.wall_start + time::Duration::seconds_f64(secs)
    }

    /// Draws the `ServerBusy` fault; counts it when it fires.
    pub(crate) fn roll_server_busy(&self) -> bool {
        if self.cfg.server_busy_rate <= 0.0 {
            return false;
        }
        let mut inner = self.lock();
        let hit = inner.busy_rng.next_f64() < self.cfg.server_busy_rate;
        if hit {
            inner.stats.server_busy += 1;
        }
        hit
    }

    /// Updates the counters.
    pub(crate) fn count(&self, f: impl FnOnce(&mut StorageStats)) {
        f(&mut self.lock().stats);
    }

    /// Length, ETag and Last-Modified.
    pub(crate) fn props(&self, id: &BlobId) -> Option<BlobProps> {
        let inner = self.lock();
        inner.blobs.get(id).map(Self::props_of)
    }

    pub(super) fn props_of(b: &Blob) -> BlobProps {
        BlobProps {
            len: b.len,
            etag: format!("\"0x8D{:011X}\"", b.etag),
            last_modified: b.modified,
        }
    }

    /// Descriptors of a source range for Put Page From URL; `None` when out of
    /// range (the caller checked the blob exists).
    pub(crate) fn source_range(&self, id: &BlobId, offset: u64, len: u64) -> Option<SourceRange> {
        self.read_pieces(id, offset, len)
            .map(|pieces| SourceRange { pieces, len })
    }

    /// Reserves write bandwidth for `n` bytes into `b` and returns the delay
    /// (simulated seconds) until the reservation ends.
    pub(super) fn reserve(&self, b: &mut Blob, n: u64) -> f64 {
        if n == 0 {
            return 0.0;
        }
        let now = self.clock.now();
        let start = b.busy_until.max(now);
        let bandwidth = self
            .cfg
            .upload_cap_bytes_per_sec
            .filter(|c| *c > 0.0)
            .unwrap_or_else(|| upload_bandwidth(b.len));
        b.busy_until = start + n as f64 / bandwidth;
        b.busy_until - now
    }

    /// Applies a write of `len` bytes at `at` from `pieces` (relative to
    /// `at`); `paced_bytes` reserve bandwidth. `None` if the blob is gone or
    /// the range is outside it.
    pub(crate) fn apply_write(
        &self,
        id: &BlobId,
        at: u64,
        len: u64,
        pieces: Vec<(u64, Extent)>,
        paced_bytes: u64,
    ) -> Option<WriteDone> {
        let mut inner = self.lock();
        inner.etag_counter += 1;
        let etag = inner.etag_counter;
        let now = self.clock.now();
        let b = inner.blobs.get_mut(id)?;
        if at.checked_add(len)? > b.len {
            return None;
        }
        write_pieces(&mut b.map, at, len, pieces);
        b.etag = etag;
        b.modified = now;
        let delay = self.reserve(b, paced_bytes);
        Some(WriteDone {
            props: Self::props_of(b),
            delay,
        })
    }

    /// Canonical extents for literal page bytes (Put Page bodies).
    pub(crate) fn classify_body(body: Vec<u8>) -> Vec<(u64, Extent)> {
        classify(Arc::from(body))
    }

    /// Pieces of a source range, for `apply_write`.
    pub(crate) fn source_pieces(src: SourceRange) -> Vec<(u64, Extent)> {
        src.pieces
    }

    /// One page of Get Page Ranges over `[from, to)`, or of the diff against
    /// `prev` when given.
    pub(crate) fn page_list(
        &self,
        id: &BlobId,
        prev: Option<&BlobId>,
        from: u64,
        to: u64,
        max: usize,
    ) -> Result<PageListing, DiffError> {
        let inner = self.lock();
        let b = inner.blobs.get(id).ok_or(DiffError::NotFound)?;
        let to = to.min(b.len);
        let mut co = Coalescer::new(max);
        match prev {
            None => list_walk(&b.map, from, to, &mut co),
            Some(p) => {
                let old = inner.blobs.get(p).ok_or(DiffError::NotSameLineage)?;
                if old.family != b.family || old.len != b.len {
                    return Err(DiffError::NotSameLineage);
                }
                diff_walk(&b.map, &old.map, from, to, &mut co);
            }
        }
        let (ranges, next) = co.finish();
        Ok(PageListing {
            props: Self::props_of(b),
            ranges,
            next,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::blob::test_util::*;

    /// A naive byte model checked against the extent store under random ops.
    #[test]
    fn random_ops_match_a_byte_model() {
        let s = store();
        let len = 256 * KIB + PAGE;
        let id = s.create_upload(len);
        let other = s.create_source(len, 0.6, 7);
        let mut model = vec![0u8; len as usize];
        let other_bytes = s.read(&other, 0, len).unwrap();
        let mut rng = Rng::from_state(42);
        for step in 0..400 {
            let a = rng.range_u64(0, len / PAGE - 1) * PAGE;
            let l = rng.range_u64(1, ((len - a) / PAGE).min(64)) * PAGE;
            match rng.next_u64() % 5 {
                0 => {
                    s.guest_write(&id, a, l, step);
                    let mut buf = vec![0u8; l as usize];
                    fill_pattern(step, a, &mut buf);
                    model[a as usize..(a + l) as usize].copy_from_slice(&buf);
                }
                1 => {
                    s.corrupt(&id, a + 3, l - 7);
                    for b in &mut model[(a + 3) as usize..(a + l - 4) as usize] {
                        *b ^= 0xFF;
                    }
                }
                2 => {
                    let pieces = BlobStore::classify_body(vec![0u8; 0]);
                    s.apply_write(&id, a, l, pieces, 0).unwrap();
                    model[a as usize..(a + l) as usize].fill(0);
                }
                3 => {
                    assert!(s.copy_range(&other, a, &id, a, l));
                    model[a as usize..(a + l) as usize]
                        .copy_from_slice(&other_bytes[a as usize..(a + l) as usize]);
                }
                _ => {
                    // A literal write mixing zeros, pattern data and noise.
                    let mut body = s.read(&other, a, l).unwrap();
                    body[0] ^= 1;
                    if l > PAGE {
                        body[PAGE as usize..(2 * PAGE) as usize].fill(0);
                    }
                    model[a as usize..(a + l) as usize].copy_from_slice(&body);
                    s.apply_write(&id, a, l, BlobStore::classify_body(body), 0)
                        .unwrap();
                }
            }
            if step % 50 == 0 {
                assert_eq!(s.read(&id, 0, len).unwrap(), model, "step {step}");
            }
        }
        assert_eq!(s.read(&id, 0, len).unwrap(), model);
        // Unaligned reads.
        assert_eq!(s.read(&id, 1000, 3333).unwrap(), model[1000..4333].to_vec());
        // Extents never overlap and are page aligned.
        let inner = s.lock();
        let mut end = 0;
        for (st, e) in &inner.blobs[&id].map {
            assert!(*st >= end && st % PAGE == 0 && e.len % PAGE == 0 && e.len > 0);
            end = st + e.len;
        }
    }

    #[test]
    fn overwrite_splits_extents() {
        let s = store();
        let id = s.create_upload(64 * KIB);
        s.guest_write(&id, 0, 64 * KIB, 1);
        assert_eq!(s.extent_count(&id), Some(1));
        s.guest_write(&id, 8 * KIB, 4 * KIB, 2);
        assert_eq!(s.extent_count(&id), Some(3));
        s.apply_write(&id, 16 * KIB, 4 * KIB, vec![], 0).unwrap();
        assert_eq!(s.extent_count(&id), Some(4));
        assert_eq!(s.allocated_bytes(&id), Some(60 * KIB));
        // Writing the original pattern back re-merges into one extent.
        let src = s.create_upload(64 * KIB);
        s.guest_write(&src, 0, 64 * KIB, 1);
        assert!(s.copy_range(&src, 0, &id, 0, 64 * KIB));
        assert_eq!(s.extent_count(&id), Some(1));
        assert_eq!(s.digest(&id), s.digest(&src));
    }

    #[test]
    fn copy_then_digest_equal_and_relay_copy_too() {
        let s = store();
        let len = 40 * MIB + PAGE;
        let src = s.create_source(len, 0.7, 3);
        let dst = s.create_upload(len);
        let relay = s.create_upload(len);
        assert_ne!(s.digest(&src), s.digest(&dst));
        let chunk = 4 * MIB;
        let mut off = 0;
        while off < len {
            let l = chunk.min(len - off);
            assert!(s.copy_range(&src, off, &dst, off, l));
            let body = s.read(&src, off, l).unwrap();
            s.apply_write(&relay, off, l, BlobStore::classify_body(body), 0)
                .unwrap();
            off += l;
        }
        assert_eq!(s.digest(&src), s.digest(&dst));
        assert_eq!(s.digest(&src), s.digest(&relay));
        assert!(s.footer_valid(&dst));
        assert!(s.footer_valid(&relay));
        // Descriptors re-merge: the copies are as compact as the source.
        assert!(s.extent_count(&dst).unwrap() <= s.extent_count(&src).unwrap() * 2);
        // One flipped byte changes the digest, flipping back restores it.
        s.corrupt(&dst, 12345, 1);
        assert_ne!(s.digest(&src), s.digest(&dst));
        s.corrupt(&dst, 12345, 1);
        assert_eq!(s.digest(&src), s.digest(&dst));
        // Literal zeros are the same bytes as nothing.
        let z = s.create_upload(len);
        s.apply_write(
            &z,
            0,
            MIB,
            BlobStore::classify_body(vec![0; MIB as usize]),
            0,
        )
        .unwrap();
        assert_eq!(s.digest(&z), s.digest(&s.create_upload(len)));
        assert_eq!(s.allocated_bytes(&z), Some(MIB));
    }

    #[test]
    fn terabyte_disk_costs_kilobytes() {
        let s = store();
        let len = TIB + PAGE;
        let t = std::time::Instant::now();
        let src = s.create_source(len, 0.95, 11);
        let alloc = s.allocated_bytes(&src).unwrap();
        let frac = alloc as f64 / TIB as f64;
        assert!((0.94..0.96).contains(&frac), "allocated fraction {frac}");
        let extents = s.extent_count(&src).unwrap();
        assert!(extents > 1000 && extents < 100_000, "{extents} extents");
        let dst = s.create_upload(len);
        let mut off = 0;
        while off < len {
            let l = GIB.min(len - off);
            assert!(s.copy_range(&src, off, &dst, off, l));
            off += l;
        }
        assert!(s.extent_count(&dst).unwrap() <= extents + 1100);
        assert_eq!(s.digest(&src), s.digest(&dst));
        assert!(s.footer_valid(&dst));
        // Listing needs several pages.
        let ranges = all_ranges(&s, &src, None, 10_000);
        assert!(ranges.len() > 10_000 / 4);
        let listed: u64 = ranges.iter().map(|r| r.end - r.start).sum();
        assert_eq!(listed, alloc);
        assert!(t.elapsed().as_secs() < 60);
    }

    #[test]
    fn bandwidth_tiers() {
        assert_eq!(upload_bandwidth(TIB + PAGE), 60.0 * MIB as f64);
        assert_eq!(upload_bandwidth(4 * TIB + PAGE), 60.0 * MIB as f64);
        assert_eq!(upload_bandwidth(8 * TIB + PAGE), 300.0 * MIB as f64);
        assert_eq!(upload_bandwidth(16 * TIB + PAGE), 500.0 * MIB as f64);
    }

    #[test]
    fn ids_look_like_managed_disk_accounts() {
        let s = store();
        let a = s.create_upload(MIB);
        assert!(a.0.starts_with("md-impexp-") && a.0.len() == "md-impexp-".len() + 12);
        let b = s.clone_blob(&a).unwrap();
        assert_ne!(a, b);
        assert!(s.clone_blob(&BlobId("x".into())).is_none());
    }
}
