//! The emulator's page-blob store: the bytes behind every managed disk and
//! snapshot, SAS grants, and write-bandwidth pacing.
//!
//! (Interface fixed by the emulator's ARM side; bodies are filled in by the
//! storage owner. See `docs/contracts.md` and `../shared/azure/facts.md` §3-4.)
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

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use base64::prelude::*;
use serde::Serialize;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::clock::SimClock;

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
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            page_list_page_size: 500,
            server_busy_rate: 0.0,
            seed: 1,
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

// ---------------------------------------------------------------------------
// Synthetic data
// ---------------------------------------------------------------------------

/// One page of a blob.
pub(crate) const PAGE: u64 = 512;
const PAGE_USIZE: usize = 512;
const PAT_MAGIC: [u8; 8] = *b"ADE2PAT\x01";
const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;
const MIB: u64 = 1 << 20;
const TIB: u64 = 1 << 40;

fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A small deterministic generator (splitmix64).
#[derive(Debug, Clone)]
struct SplitMix(u64);

impl SplitMix {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GAMMA);
        mix64(self.0)
    }
    /// Uniform in `[0, 1)`.
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform in `[lo, hi]` (inclusive).
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        lo + self.next_u64() % (hi - lo + 1)
    }
}

/// Fills `out` (512 bytes) with pattern page `page` of `seed`.
fn pattern_page(seed: u64, page: u64, out: &mut [u8]) {
    debug_assert_eq!(out.len(), PAGE_USIZE);
    out[0..8].copy_from_slice(&PAT_MAGIC);
    out[8..16].copy_from_slice(&seed.to_le_bytes());
    out[16..24].copy_from_slice(&page.to_le_bytes());
    let key = mix64(seed ^ 0x0ADE_2EAB_5EED_0001);
    let mut state = key.wrapping_add(page.wrapping_mul(64).wrapping_mul(GAMMA));
    for w in 3..64 {
        state = state.wrapping_add(GAMMA);
        out[w * 8..w * 8 + 8].copy_from_slice(&mix64(state).to_le_bytes());
    }
}

/// `Some((seed, page))` when `page_bytes` is exactly a pattern page.
fn recognise_pattern(page_bytes: &[u8]) -> Option<(u64, u64)> {
    if page_bytes.len() != PAGE_USIZE || page_bytes[0..8] != PAT_MAGIC {
        return None;
    }
    let seed = u64::from_le_bytes(page_bytes[8..16].try_into().ok()?);
    let page = u64::from_le_bytes(page_bytes[16..24].try_into().ok()?);
    let mut buf = [0u8; PAGE_USIZE];
    pattern_page(seed, page, &mut buf);
    (buf[..] == *page_bytes).then_some((seed, page))
}

/// Fills `out` with the pattern bytes at pattern offsets `pos..pos+out.len()`.
fn fill_pattern(seed: u64, mut pos: u64, out: &mut [u8]) {
    let mut buf = [0u8; PAGE_USIZE];
    let mut done = 0usize;
    while done < out.len() {
        let page = pos / PAGE;
        let within = (pos % PAGE) as usize;
        let take = (PAGE_USIZE - within).min(out.len() - done);
        if within == 0 && take == PAGE_USIZE {
            pattern_page(seed, page, &mut out[done..done + PAGE_USIZE]);
        } else {
            pattern_page(seed, page, &mut buf);
            out[done..done + take].copy_from_slice(&buf[within..within + take]);
        }
        done += take;
        pos += take as u64;
    }
}

// ---------------------------------------------------------------------------
// Extents
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub(crate) enum Kind {
    /// Pages written with zeros: allocated, read as zeros.
    Zero,
    /// Synthetic data: extent byte `i` is pattern byte `origin + i` of `seed`.
    Pattern { seed: u64, origin: u64 },
    /// Literal bytes `data[off..off + len]`.
    Literal { data: Arc<[u8]>, off: u64 },
}

#[derive(Debug, Clone)]
pub(crate) struct Extent {
    len: u64,
    kind: Kind,
}

impl Extent {
    fn slice(&self, skip: u64, len: u64) -> Extent {
        debug_assert!(skip + len <= self.len);
        let kind = match &self.kind {
            Kind::Zero => Kind::Zero,
            Kind::Pattern { seed, origin } => Kind::Pattern {
                seed: *seed,
                origin: origin + skip,
            },
            Kind::Literal { data, off } => Kind::Literal {
                data: data.clone(),
                off: off + skip,
            },
        };
        Extent { len, kind }
    }

    /// True when `next`, placed right after `self`, continues it (same
    /// descriptor), so the two can be one extent.
    fn continues_with(&self, next: &Extent) -> bool {
        match (&self.kind, &next.kind) {
            (Kind::Zero, Kind::Zero) => true,
            (
                Kind::Pattern {
                    seed: a,
                    origin: oa,
                },
                Kind::Pattern {
                    seed: b,
                    origin: ob,
                },
            ) => a == b && oa + self.len == *ob,
            (Kind::Literal { data: a, off: oa }, Kind::Literal { data: b, off: ob }) => {
                Arc::ptr_eq(a, b) && oa + self.len == *ob
            }
            _ => false,
        }
    }

    /// Writes extent bytes `skip..skip + out.len()` into `out`.
    fn fill(&self, skip: u64, out: &mut [u8]) {
        match &self.kind {
            Kind::Zero => out.fill(0),
            Kind::Pattern { seed, origin } => fill_pattern(*seed, origin + skip, out),
            Kind::Literal { data, off } => {
                let s = (off + skip) as usize;
                out.copy_from_slice(&data[s..s + out.len()]);
            }
        }
    }
}

type Map = BTreeMap<u64, Extent>;

/// Pieces of `map` overlapping `[a, b)`, clipped: `(start, end, extent, extent_start)`.
fn overlapping(map: &Map, a: u64, b: u64) -> impl Iterator<Item = (u64, u64, &Extent, u64)> + '_ {
    let b = b.max(a);
    let first = map
        .range(..a)
        .next_back()
        .filter(move |(s, e)| **s + e.len > a && **s < b);
    first
        .into_iter()
        .chain(map.range(a..b))
        .map(move |(&s, e)| (s.max(a), (s + e.len).min(b), e, s))
}

/// Splits the extent containing `pos` (if any) so that `pos` is a boundary.
fn split_at(map: &mut Map, pos: u64) {
    let hit = map.range(..pos).next_back().map(|(&s, e)| (s, e.len));
    if let Some((s, len)) = hit
        && s + len > pos
    {
        let e = map.get_mut(&s).expect("extent present");
        let tail = e.slice(pos - s, s + len - pos);
        e.len = pos - s;
        map.insert(pos, tail);
    }
}

/// Removes everything in `[a, b)`, splitting extents that straddle the ends.
fn remove_range(map: &mut Map, a: u64, b: u64) {
    if a >= b {
        return;
    }
    split_at(map, a);
    split_at(map, b);
    let keys: Vec<u64> = map.range(a..b).map(|(k, _)| *k).collect();
    for k in keys {
        map.remove(&k);
    }
}

/// Inserts `ext` at `start` (the range must be empty), merging with
/// neighbours that it continues.
fn insert_merge(map: &mut Map, mut start: u64, mut ext: Extent) {
    if ext.len == 0 {
        return;
    }
    if let Some((&ps, pe)) = map.range(..start).next_back()
        && ps + pe.len == start
        && pe.continues_with(&ext)
    {
        let mut pe = map.remove(&ps).expect("predecessor present");
        pe.len += ext.len;
        start = ps;
        ext = pe;
    }
    let next_key = start + ext.len;
    if let Some(ne) = map.get(&next_key)
        && ext.continues_with(ne)
    {
        let ne = map.remove(&next_key).expect("successor present");
        ext.len += ne.len;
    }
    map.insert(start, ext);
}

/// Pieces of `map` inside `[a, a + len)`, relative to `a`.
fn pieces_of(map: &Map, a: u64, len: u64) -> Vec<(u64, Extent)> {
    overlapping(map, a, a + len)
        .map(|(s, e, ext, es)| (s - a, ext.slice(s - es, e - s)))
        .collect()
}

/// Materialises `pieces` (relative to the start of `out`) into `out`.
fn materialise(pieces: &[(u64, Extent)], out: &mut [u8]) {
    out.fill(0);
    for (rel, ext) in pieces {
        let s = *rel as usize;
        ext.fill(0, &mut out[s..s + ext.len as usize]);
    }
}

/// Splits literal bytes (a whole number of pages, to land at a page-aligned
/// offset) into canonical extents relative to their start.
fn classify(data: Arc<[u8]>) -> Vec<(u64, Extent)> {
    debug_assert_eq!(data.len() % PAGE_USIZE, 0);
    let mut out: Vec<(u64, Extent)> = Vec::new();
    for (i, page) in data.chunks(PAGE_USIZE).enumerate() {
        let rel = i as u64 * PAGE;
        let kind = if page.iter().all(|b| *b == 0) {
            Kind::Zero
        } else if let Some((seed, p)) = recognise_pattern(page) {
            Kind::Pattern {
                seed,
                origin: p * PAGE,
            }
        } else {
            Kind::Literal {
                data: data.clone(),
                off: rel,
            }
        };
        let ext = Extent {
            len: page.len() as u64,
            kind,
        };
        if let Some((ls, last)) = out.last_mut()
            && *ls + last.len == rel
            && last.continues_with(&ext)
        {
            last.len += ext.len;
            continue;
        }
        out.push((rel, ext));
    }
    out
}

/// Replaces `[at, at + len)` of `map` with `pieces` (relative to `at`).
fn write_pieces(map: &mut Map, at: u64, len: u64, pieces: Vec<(u64, Extent)>) {
    remove_range(map, at, at + len);
    for (rel, ext) in pieces {
        insert_merge(map, at + rel, ext);
    }
}

fn page_floor(x: u64) -> u64 {
    x / PAGE * PAGE
}

fn page_ceil(x: u64) -> u64 {
    x.div_ceil(PAGE) * PAGE
}

// ---------------------------------------------------------------------------
// Page listings
// ---------------------------------------------------------------------------

/// One entry of a page list (`end` exclusive here; the XML is inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ListedRange {
    /// `true` for a `ClearRange` (diff only).
    pub clear: bool,
    pub start: u64,
    pub end: u64,
}

/// Collects ranges, merging adjacent ones of the same type, and stops after
/// `max` entries, remembering where the next page starts.
struct Coalescer {
    out: Vec<ListedRange>,
    cur: Option<ListedRange>,
    max: usize,
    next: Option<u64>,
}

impl Coalescer {
    fn new(max: usize) -> Self {
        Coalescer {
            out: Vec::new(),
            cur: None,
            max: max.max(1),
            next: None,
        }
    }

    /// Adds `[start, end)`; false once the page is full (stop walking).
    fn push(&mut self, clear: bool, start: u64, end: u64) -> bool {
        if start >= end {
            return true;
        }
        if let Some(c) = &mut self.cur {
            if c.clear == clear && c.end == start {
                c.end = end;
                return true;
            }
            let c = self.cur.take().expect("current range");
            self.out.push(c);
        }
        if self.out.len() >= self.max {
            self.next = Some(start);
            return false;
        }
        self.cur = Some(ListedRange { clear, start, end });
        true
    }

    fn finish(mut self) -> (Vec<ListedRange>, Option<u64>) {
        if let Some(c) = self.cur.take() {
            self.out.push(c);
        }
        (self.out, self.next)
    }
}

fn list_walk(map: &Map, a: u64, b: u64, co: &mut Coalescer) {
    for (s, e, _, _) in overlapping(map, a, b) {
        if !co.push(false, s, e) {
            return;
        }
    }
}

fn diff_walk(new: &Map, old: &Map, a: u64, b: u64, co: &mut Coalescer) {
    let mut ni = overlapping(new, a, b).peekable();
    let mut oi = overlapping(old, a, b).peekable();
    let mut pos = a;
    loop {
        while ni.peek().is_some_and(|x| x.1 <= pos) {
            ni.next();
        }
        while oi.peek().is_some_and(|y| y.1 <= pos) {
            oi.next();
        }
        let n = ni.peek().copied();
        let o = oi.peek().copied();
        let start = match (n, o) {
            (None, None) => return,
            (Some(x), None) => x.0.max(pos),
            (None, Some(y)) => y.0.max(pos),
            (Some(x), Some(y)) => x.0.max(pos).min(y.0.max(pos)),
        };
        let n_act = n.filter(|x| x.0.max(pos) <= start);
        let o_act = o.filter(|y| y.0.max(pos) <= start);
        let mut end = b;
        for (piece, active) in [(n, n_act.is_some()), (o, o_act.is_some())] {
            if let Some(p) = piece {
                end = end.min(if active { p.1 } else { p.0.max(pos) });
            }
        }
        let keep_going = match (n_act, o_act) {
            (Some(x), Some(y)) => {
                let (xe, xs) = (x.2, start - x.3);
                let (ye, ys) = (y.2, start - y.3);
                match (&xe.kind, &ye.kind) {
                    (Kind::Zero, Kind::Zero) => true,
                    (
                        Kind::Pattern {
                            seed: s1,
                            origin: o1,
                        },
                        Kind::Pattern {
                            seed: s2,
                            origin: o2,
                        },
                    ) => {
                        if s1 == s2 && o1 + xs == o2 + ys {
                            true
                        } else {
                            co.push(false, start, end)
                        }
                    }
                    (Kind::Literal { data: d1, off: f1 }, Kind::Literal { data: d2, off: f2 }) => {
                        let mut go = true;
                        let mut p = start;
                        while p < end && go {
                            let q = (p + PAGE).min(end);
                            let a1 = (f1 + xs + (p - start)) as usize;
                            let a2 = (f2 + ys + (p - start)) as usize;
                            let l = (q - p) as usize;
                            if d1[a1..a1 + l] != d2[a2..a2 + l] {
                                go = co.push(false, p, q);
                            }
                            p = q;
                        }
                        go
                    }
                    _ => co.push(false, start, end),
                }
            }
            (Some(_), None) => co.push(false, start, end),
            (None, Some(_)) => co.push(true, start, end),
            (None, None) => true,
        };
        if !keep_going {
            return;
        }
        pos = end;
        if pos >= b {
            return;
        }
    }
}

// ---------------------------------------------------------------------------
// VHD footer
// ---------------------------------------------------------------------------

/// Seconds from 2000-01-01 to 2024-01-01 (VHD timestamps count from 2000).
const VHD_2024: u32 = 757_382_400;

fn chs_geometry(size: u64) -> (u16, u8, u8) {
    let mut total = size / 512;
    if total > 65535 * 16 * 255 {
        total = 65535 * 16 * 255;
    }
    let (spt, heads, cth);
    if total >= 65535 * 16 * 63 {
        spt = 255u64;
        heads = 16u64;
        cth = total / spt;
    } else {
        let mut s = 17u64;
        let mut c = total / s;
        let mut h = c.div_ceil(1024);
        if h < 4 {
            h = 4;
        }
        if c >= h * 1024 || h > 16 {
            s = 31;
            h = 16;
            c = total / s;
        }
        if c >= h * 1024 {
            s = 63;
            h = 16;
            c = total / s;
        }
        spt = s;
        heads = h;
        cth = c;
    }
    let cylinders = (cth / heads).min(u16::MAX as u64);
    (cylinders as u16, heads as u8, spt as u8)
}

fn vhd_checksum(footer: &[u8]) -> u32 {
    let sum: u32 = footer
        .iter()
        .enumerate()
        .filter(|(i, _)| !(64..68).contains(i))
        .fold(0u32, |acc, (_, b)| acc.wrapping_add(*b as u32));
    !sum
}

/// A fixed-VHD footer for a disk of `disk_size` bytes (blob length − 512).
fn vhd_footer(disk_size: u64, seed: u64) -> [u8; 512] {
    let mut f = [0u8; 512];
    f[0..8].copy_from_slice(b"conectix");
    f[8..12].copy_from_slice(&2u32.to_be_bytes());
    f[12..16].copy_from_slice(&0x0001_0000u32.to_be_bytes());
    f[16..24].copy_from_slice(&u64::MAX.to_be_bytes());
    let ts = VHD_2024.wrapping_add((seed % 31_536_000) as u32);
    f[24..28].copy_from_slice(&ts.to_be_bytes());
    f[28..32].copy_from_slice(b"ade2");
    f[32..36].copy_from_slice(&0x0001_0000u32.to_be_bytes());
    f[36..40].copy_from_slice(b"Wi2k");
    f[40..48].copy_from_slice(&disk_size.to_be_bytes());
    f[48..56].copy_from_slice(&disk_size.to_be_bytes());
    let (c, h, s) = chs_geometry(disk_size);
    f[56..58].copy_from_slice(&c.to_be_bytes());
    f[58] = h;
    f[59] = s;
    f[60..64].copy_from_slice(&2u32.to_be_bytes());
    let mut rng = SplitMix(seed ^ 0x7668_D15C_0000_0001);
    let mut id = [0u8; 16];
    id[0..8].copy_from_slice(&rng.next_u64().to_le_bytes());
    id[8..16].copy_from_slice(&rng.next_u64().to_le_bytes());
    id[6] = (id[6] & 0x0F) | 0x40;
    id[8] = (id[8] & 0x3F) | 0x80;
    f[68..84].copy_from_slice(&id);
    f[84] = 0;
    let sum = vhd_checksum(&f);
    f[64..68].copy_from_slice(&sum.to_be_bytes());
    f
}

/// Cookie, disk type "fixed" and checksum of a 512-byte footer.
fn footer_ok(f: &[u8]) -> bool {
    if f.len() != 512 || &f[0..8] != b"conectix" {
        return false;
    }
    let disk_type = u32::from_be_bytes(f[60..64].try_into().expect("4 bytes"));
    let stored = u32::from_be_bytes(f[64..68].try_into().expect("4 bytes"));
    disk_type == 2 && stored == vhd_checksum(f)
}

// ---------------------------------------------------------------------------
// CRC64 (Azure Storage flavour)
// ---------------------------------------------------------------------------

const CRC64_POLY: u64 = 0x9A6C_9329_AC4B_C9B5;

fn crc64_tables() -> &'static [[u64; 256]; 8] {
    static TABLES: std::sync::OnceLock<Box<[[u64; 256]; 8]>> = std::sync::OnceLock::new();
    TABLES.get_or_init(|| {
        let mut t = Box::new([[0u64; 256]; 8]);
        for i in 0..256u64 {
            let mut c = i;
            for _ in 0..8 {
                c = if c & 1 == 1 {
                    (c >> 1) ^ CRC64_POLY
                } else {
                    c >> 1
                };
            }
            t[0][i as usize] = c;
        }
        for i in 0..256 {
            for k in 1..8 {
                let prev = t[k - 1][i];
                t[k][i] = (prev >> 8) ^ t[0][(prev & 0xFF) as usize];
            }
        }
        t
    })
}

/// Azure Storage CRC-64 (reflected, polynomial `0x9A6C9329AC4BC9B5`, initial
/// value and final XOR all ones), as the `x-ms-content-crc64` value: the
/// 8 bytes little-endian.
pub(crate) fn crc64(data: &[u8]) -> [u8; 8] {
    let t = crc64_tables();
    let mut crc = !0u64;
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let v = crc ^ u64::from_le_bytes(c.try_into().expect("8 bytes"));
        crc = t[7][(v & 0xFF) as usize]
            ^ t[6][((v >> 8) & 0xFF) as usize]
            ^ t[5][((v >> 16) & 0xFF) as usize]
            ^ t[4][((v >> 24) & 0xFF) as usize]
            ^ t[3][((v >> 32) & 0xFF) as usize]
            ^ t[2][((v >> 40) & 0xFF) as usize]
            ^ t[1][((v >> 48) & 0xFF) as usize]
            ^ t[0][(v >> 56) as usize];
    }
    for b in chunks.remainder() {
        crc = t[0][((crc ^ *b as u64) & 0xFF) as usize] ^ (crc >> 8);
    }
    (!crc).to_le_bytes()
}

// ---------------------------------------------------------------------------
// The store
// ---------------------------------------------------------------------------

#[derive(Debug)]
struct Blob {
    len: u64,
    map: Map,
    container: String,
    /// Lineage: a blob and its clones share a family (diff needs it).
    family: u64,
    etag: u64,
    modified: f64,
    busy_until: f64,
}

#[derive(Debug, Clone)]
struct Grant {
    blob: BlobId,
    si: String,
    access: SasAccess,
    expires_at: f64,
    revoked: bool,
}

#[derive(Debug)]
struct Inner {
    base: String,
    blobs: HashMap<BlobId, Blob>,
    /// By signature.
    grants: HashMap<String, Grant>,
    stats: StorageStats,
    id_rng: SplitMix,
    busy_rng: SplitMix,
    next_family: u64,
    etag_counter: u64,
}

/// Why a SAS request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AccessError {
    /// No such blob (404 `BlobNotFound`).
    NotFound,
    /// Bad, revoked or expired signature (403 `AuthenticationFailed`), with
    /// Azure's `AuthenticationErrorDetail`.
    AuthFailed(String),
    /// The grant does not allow the operation (403 `AuthorizationPermissionMismatch`).
    PermissionMismatch,
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
    pieces: Vec<(u64, Extent)>,
    len: u64,
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
fn hash_runs<'a>(h: &mut Sha256, pieces: impl Iterator<Item = (u64, &'a Extent)>) {
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
    clock: SimClock,
    cfg: StorageConfig,
    /// Wall-clock time that simulated time 0 maps to (for HTTP dates and `se`).
    wall_start: OffsetDateTime,
    inner: Mutex<Inner>,
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
            id_rng: SplitMix(mix64(cfg.seed ^ 0x1D5_0000_0000_0001)),
            busy_rng: SplitMix(mix64(cfg.seed ^ 0xB05_0000_0000_0002)),
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

    fn lock(&self) -> MutexGuard<'_, Inner> {
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

    fn new_blob(&self, inner: &mut Inner, len: u64, map: Map, family: Option<u64>) -> BlobId {
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
        let mut rng = SplitMix(mix64(seed ^ 0x50C_0000_0000_0003));
        // Run lengths: [max/64, max] with max = data/16 clamped to 64 KiB..64 MiB.
        let max_run = page_floor((data / 16).clamp(64 * 1024, 64 * MIB));
        let min_run = page_floor((max_run / 64).max(4096)).min(max_run);
        let mut runs: Vec<u64> = Vec::new();
        let mut sum = 0u64;
        while sum < target {
            let l = page_floor(rng.range(min_run, max_run))
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

    /// Grants SAS access for `duration` simulated seconds and returns the
    /// full SAS URL (`{base}/{account}/{container}/abcd?sv=..&sr=b&si=..&sp=r|w&se=..&sig=..`).
    ///
    /// `se` is the RFC 3339 (UTC, whole seconds) wall-clock rendering of the
    /// simulated expiry (wall clock at store creation + simulated seconds).
    /// It is informational: authorisation uses the grant found by `sig`
    /// (random 48 bytes, base64) and its stored expiry, so editing `se` or
    /// `sp` in a URL changes nothing.
    pub fn grant(&self, id: &BlobId, access: SasAccess, duration: f64) -> Option<String> {
        let mut inner = self.lock();
        let container = inner.blobs.get(id)?.container.clone();
        let duration = if duration.is_finite() {
            duration.max(0.0)
        } else {
            0.0
        };
        let expires_at = self.clock.now() + duration;
        let si = uuid::Uuid::new_v4().to_string();
        let mut raw = Vec::with_capacity(48);
        for _ in 0..3 {
            raw.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
        }
        let sig = BASE64_STANDARD.encode(&raw);
        let sp = match access {
            SasAccess::Read => "r",
            SasAccess::Write => "w",
        };
        let se = self.rfc3339(expires_at);
        let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let url = format!(
            "{}/{}/{}/abcd?sv=2018-03-28&sr=b&si={}&sp={}&se={}&sig={}",
            inner.base,
            id.0,
            container,
            si,
            sp,
            enc(&se),
            enc(&sig)
        );
        inner.grants.insert(
            sig,
            Grant {
                blob: id.clone(),
                si,
                access,
                expires_at,
                revoked: false,
            },
        );
        Some(url)
    }

    /// Ends every grant on `id`; their URLs answer 403 from now on.
    pub fn revoke_all(&self, id: &BlobId) {
        let mut inner = self.lock();
        for g in inner.grants.values_mut() {
            if &g.blob == id {
                g.revoked = true;
            }
        }
    }

    /// True when `id` has an unexpired, unrevoked grant.
    pub fn has_active_grant(&self, id: &BlobId) -> bool {
        let now = self.clock.now();
        self.lock()
            .grants
            .values()
            .any(|g| &g.blob == id && !g.revoked && now < g.expires_at)
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
    fn read_pieces(&self, id: &BlobId, offset: u64, len: u64) -> Option<Vec<(u64, Extent)>> {
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

    /// Every live grant.
    pub fn active_grants(&self) -> Vec<GrantInfo> {
        let now = self.clock.now();
        let inner = self.lock();
        let mut v: Vec<GrantInfo> = inner
            .grants
            .values()
            .filter(|g| !g.revoked && now < g.expires_at)
            .map(|g| GrantInfo {
                blob: g.blob.clone(),
                access: g.access,
                expires_at: g.expires_at,
            })
            .collect();
        v.sort_by(|a, b| {
            a.blob
                .cmp(&b.blob)
                .then(a.expires_at.total_cmp(&b.expires_at))
        });
        v
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

    fn rfc3339(&self, sim: f64) -> String {
        let t = self
            .wall(sim)
            .replace_nanosecond(0)
            .unwrap_or(self.wall_start);
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    }

    fn wall(&self, sim: f64) -> OffsetDateTime {
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

    /// Checks a SAS (`sig`, `si` from the query) for blob `account` at
    /// `/{account}/{container}/{name}`. A write grant also allows reads of
    /// its own blob (AzCopy reads properties and page ranges of the target).
    pub(crate) fn authorize(
        &self,
        account: &str,
        container: &str,
        name: &str,
        sig: Option<&str>,
        si: Option<&str>,
        write: bool,
    ) -> Result<BlobId, AccessError> {
        let id = BlobId(account.to_string());
        let inner = self.lock();
        let b = inner.blobs.get(&id).ok_or(AccessError::NotFound)?;
        if b.container != container || name != "abcd" {
            return Err(AccessError::NotFound);
        }
        let Some(sig) = sig.filter(|s| !s.is_empty()) else {
            return Err(AccessError::AuthFailed(
                "Signature fields not well formed.".into(),
            ));
        };
        let grant = inner
            .grants
            .get(sig)
            .or_else(|| inner.grants.get(&sig.replace(' ', "+")));
        let Some(g) = grant else {
            return Err(AccessError::AuthFailed("Signature did not match.".into()));
        };
        if g.blob != id || si.is_some_and(|s| s != g.si) || g.revoked {
            return Err(AccessError::AuthFailed("Signature did not match.".into()));
        }
        let now = self.clock.now();
        if now >= g.expires_at {
            return Err(AccessError::AuthFailed(format!(
                "Signature not valid in the specified time frame: Expiry [{}] - Current [{}]",
                self.http_date(g.expires_at),
                self.http_date(now)
            )));
        }
        if write && g.access != SasAccess::Write {
            return Err(AccessError::PermissionMismatch);
        }
        Ok(id)
    }

    /// Length, ETag and Last-Modified.
    pub(crate) fn props(&self, id: &BlobId) -> Option<BlobProps> {
        let inner = self.lock();
        inner.blobs.get(id).map(Self::props_of)
    }

    fn props_of(b: &Blob) -> BlobProps {
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
    fn reserve(&self, b: &mut Blob, n: u64) -> f64 {
        if n == 0 {
            return 0.0;
        }
        let now = self.clock.now();
        let start = b.busy_until.max(now);
        b.busy_until = start + n as f64 / upload_bandwidth(b.len);
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

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    const KIB: u64 = 1024;
    const GIB: u64 = 1 << 30;

    fn store() -> Arc<BlobStore> {
        BlobStore::new(SimClock::new(1.0), StorageConfig::default())
    }

    fn all_ranges(
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

    /// A naive byte model checked against the extent store under random ops.
    #[test]
    fn random_ops_match_a_byte_model() {
        let s = store();
        let len = 256 * KIB + PAGE;
        let id = s.create_upload(len);
        let other = s.create_source(len, 0.6, 7);
        let mut model = vec![0u8; len as usize];
        let other_bytes = s.read(&other, 0, len).unwrap();
        let mut rng = SplitMix(42);
        for step in 0..400 {
            let a = rng.range(0, len / PAGE - 1) * PAGE;
            let l = rng.range(1, ((len - a) / PAGE).min(64)) * PAGE;
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
    fn vhd_footer_fields_and_checksum() {
        let s = store();
        let len = 128 * MIB + PAGE;
        let id = s.create_source(len, 0.5, 5);
        assert!(s.footer_valid(&id));
        let f = s.read(&id, len - PAGE, PAGE).unwrap();
        assert_eq!(&f[0..8], b"conectix");
        assert_eq!(u32::from_be_bytes(f[8..12].try_into().unwrap()), 2);
        assert_eq!(
            u32::from_be_bytes(f[12..16].try_into().unwrap()),
            0x0001_0000
        );
        assert_eq!(u64::from_be_bytes(f[16..24].try_into().unwrap()), u64::MAX);
        assert_eq!(&f[28..32], b"ade2");
        assert_eq!(&f[36..40], b"Wi2k");
        assert_eq!(u64::from_be_bytes(f[40..48].try_into().unwrap()), 128 * MIB);
        assert_eq!(u64::from_be_bytes(f[48..56].try_into().unwrap()), 128 * MIB);
        assert_eq!(u32::from_be_bytes(f[60..64].try_into().unwrap()), 2);
        let sum: u32 = f
            .iter()
            .enumerate()
            .filter(|(i, _)| !(64..68).contains(i))
            .map(|(_, b)| *b as u32)
            .sum();
        assert_eq!(u32::from_be_bytes(f[64..68].try_into().unwrap()), !sum);
        assert_eq!(f[84], 0);
        // CHS per the VHD spec algorithm: 262144 sectors -> 17 spt, 16 heads, 963 cylinders.
        assert_eq!(chs_geometry(128 * MIB), (963, 16, 17));
        assert_eq!(u16::from_be_bytes(f[56..58].try_into().unwrap()), 963);
        assert_eq!((f[58], f[59]), (16, 17));
        assert_eq!(chs_geometry(1 << 40), (65535, 16, 255));
        // Broken footers.
        let up = s.create_upload(len);
        assert!(!s.footer_valid(&up));
        s.corrupt(&id, len - PAGE + 70, 1);
        assert!(!s.footer_valid(&id), "checksum must catch a flipped byte");
        assert!(!s.footer_valid(&BlobId("md-impexp-nope".into())));
    }

    #[test]
    fn pagination_returns_every_range_once() {
        let s = store();
        let len = 512 * MIB + PAGE;
        let id = s.create_source(len, 0.5, 9);
        let full = all_ranges(&s, &id, None, usize::MAX);
        assert!(full.len() > 10, "{} ranges", full.len());
        for w in full.windows(2) {
            assert!(w[0].end < w[1].start, "coalesced, sorted, non-adjacent");
        }
        for max in [1, 3, 7, 500] {
            assert_eq!(all_ranges(&s, &id, None, max), full, "max {max}");
        }
        // A restricted window clips.
        let page = s
            .page_list(&id, None, full[1].start + PAGE, full[2].start + PAGE, 100)
            .unwrap();
        assert_eq!(page.ranges[0].start, full[1].start + PAGE);
        assert_eq!(page.ranges.last().unwrap().end, full[2].start + PAGE);
        assert!(page.next.is_none());
        // Last range is the footer (or ends at the blob end).
        assert_eq!(full.last().unwrap().end, len);
    }

    #[test]
    fn diff_after_guest_write_reports_exactly_the_written_range() {
        let s = store();
        let len = 64 * MIB + PAGE;
        let disk = s.create_source(len, 0.6, 21);
        let s1 = s.clone_blob(&disk).unwrap();
        assert!(all_ranges(&s, &s1, Some(&disk), 10).is_empty());
        s.guest_write(&disk, 10 * MIB, 3 * MIB, 999);
        s.guest_write(&disk, 30 * MIB + 512, 4096, 1000);
        let s2 = s.clone_blob(&disk).unwrap();
        let d = all_ranges(&s, &s2, Some(&s1), 1);
        assert_eq!(
            d,
            vec![
                ListedRange {
                    clear: false,
                    start: 10 * MIB,
                    end: 13 * MIB
                },
                ListedRange {
                    clear: false,
                    start: 30 * MIB + 512,
                    end: 30 * MIB + 4608
                },
            ]
        );
        // Clearing reports a ClearRange only where the old one had data.
        let before = all_ranges(&s, &s2, None, usize::MAX);
        let r = before[0];
        s.apply_write(&disk, r.start, r.end - r.start, vec![], 0)
            .unwrap();
        let s3 = s.clone_blob(&disk).unwrap();
        let d = all_ranges(&s, &s3, Some(&s2), 1000);
        assert_eq!(
            d,
            vec![ListedRange {
                clear: true,
                start: r.start,
                end: r.end
            }]
        );
        // Applying the diff to a copy of s1 reproduces s3 byte for byte.
        let target = s.create_upload(len);
        assert!(s.copy_range(&s1, 0, &target, 0, len));
        for r in all_ranges(&s, &s3, Some(&s1), 2) {
            if r.clear {
                s.apply_write(&target, r.start, r.end - r.start, vec![], 0)
                    .unwrap();
            } else {
                assert!(s.copy_range(&s3, r.start, &target, r.start, r.end - r.start));
            }
        }
        assert_eq!(s.digest(&target), s.digest(&s3));
        // A literal page change is found page-exactly.
        let s4 = s.clone_blob(&disk).unwrap();
        s.corrupt(&disk, 50 * MIB + 700, 10);
        let s5 = s.clone_blob(&disk).unwrap();
        assert_eq!(
            all_ranges(&s, &s5, Some(&s4), 10),
            vec![ListedRange {
                clear: false,
                start: 50 * MIB + 512,
                end: 50 * MIB + 1024
            }]
        );
        // Different lineage is refused.
        let other = s.create_upload(len);
        assert_eq!(
            s.page_list(&s5, Some(&other), 0, len, 10).unwrap_err(),
            DiffError::NotSameLineage
        );
    }

    #[tokio::test(start_paused = true)]
    async fn sas_expiry_and_revocation() {
        let s = BlobStore::new(SimClock::new(10.0), StorageConfig::default());
        s.set_base_url("http://127.0.0.1:1234/");
        let id = s.create_source(32 * MIB + PAGE, 0.3, 1);
        let url = s.grant(&id, SasAccess::Read, 100.0).unwrap();
        assert!(url.starts_with(&format!("http://127.0.0.1:1234/{}/", id.0)));
        assert!(url.contains("/abcd?sv=2018-03-28&sr=b&si=") && url.contains("&sp=r&se="));
        let parsed = url::Url::parse(&url).unwrap();
        let q: HashMap<String, String> = parsed.query_pairs().into_owned().collect();
        let segs: Vec<&str> = parsed.path_segments().unwrap().collect();
        let auth = |write: bool| {
            s.authorize(
                segs[0],
                segs[1],
                segs[2],
                q.get("sig").map(|x| x.as_str()),
                q.get("si").map(|x| x.as_str()),
                write,
            )
        };
        assert_eq!(auth(false), Ok(id.clone()));
        assert_eq!(auth(true), Err(AccessError::PermissionMismatch));
        assert!(s.has_active_grant(&id));
        assert_eq!(s.active_grants().len(), 1);
        assert!(matches!(
            s.authorize(segs[0], segs[1], segs[2], Some("bogus"), None, false),
            Err(AccessError::AuthFailed(_))
        ));
        assert_eq!(
            s.authorize(
                segs[0],
                "other",
                segs[2],
                q.get("sig").map(|x| x.as_str()),
                None,
                false
            ),
            Err(AccessError::NotFound)
        );
        // 100 simulated seconds = 10 real seconds at scale 10.
        tokio::time::advance(std::time::Duration::from_secs(11)).await;
        assert!(matches!(auth(false), Err(AccessError::AuthFailed(_))));
        assert!(!s.has_active_grant(&id));
        assert!(s.active_grants().is_empty());
        // Revocation.
        let w = s.grant(&id, SasAccess::Write, 1000.0).unwrap();
        let wq: HashMap<String, String> = url::Url::parse(&w)
            .unwrap()
            .query_pairs()
            .into_owned()
            .collect();
        assert_eq!(
            s.authorize(
                segs[0],
                segs[1],
                segs[2],
                wq.get("sig").map(|x| x.as_str()),
                None,
                true
            ),
            Ok(id.clone())
        );
        assert_eq!(
            s.authorize(
                segs[0],
                segs[1],
                segs[2],
                wq.get("sig").map(|x| x.as_str()),
                None,
                false
            ),
            Ok(id.clone())
        );
        s.revoke_all(&id);
        assert!(matches!(
            s.authorize(
                segs[0],
                segs[1],
                segs[2],
                wq.get("sig").map(|x| x.as_str()),
                None,
                true
            ),
            Err(AccessError::AuthFailed(_))
        ));
        assert!(!s.has_active_grant(&id));
        s.delete(&id);
        assert_eq!(s.size(&id), None);
        assert!(s.grant(&id, SasAccess::Read, 10.0).is_none());
    }

    #[test]
    fn pattern_pages_are_recognised() {
        let mut p = [0u8; 512];
        pattern_page(77, 12345, &mut p);
        assert_eq!(recognise_pattern(&p), Some((77, 12345)));
        p[400] ^= 1;
        assert_eq!(recognise_pattern(&p), None);
        assert_eq!(recognise_pattern(&[0u8; 512]), None);
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
