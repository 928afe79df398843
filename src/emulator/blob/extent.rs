//! Extent maps: a blob's content as a sorted map of non-overlapping,
//! 512-aligned extents (zeros, synthetic pattern pages, literal bytes), and
//! the pattern pages themselves (see the module doc of [`super`] for the
//! content model).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{PAGE, PAGE_USIZE};
use crate::emulator::rng::{GAMMA, mix64};

const PAT_MAGIC: [u8; 8] = *b"ADE2PAT\x01";

/// Fills `out` (512 bytes) with pattern page `page` of `seed`.
pub(super) fn pattern_page(seed: u64, page: u64, out: &mut [u8]) {
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
pub(super) fn recognise_pattern(page_bytes: &[u8]) -> Option<(u64, u64)> {
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
pub(super) fn fill_pattern(seed: u64, mut pos: u64, out: &mut [u8]) {
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

// ---------------------------------------------------------------- extents

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
    pub(super) len: u64,
    pub(super) kind: Kind,
}

impl Extent {
    pub(super) fn slice(&self, skip: u64, len: u64) -> Extent {
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
    pub(super) fn continues_with(&self, next: &Extent) -> bool {
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
    pub(super) fn fill(&self, skip: u64, out: &mut [u8]) {
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

pub(super) type Map = BTreeMap<u64, Extent>;

/// Pieces of `map` overlapping `[a, b)`, clipped: `(start, end, extent, extent_start)`.
pub(super) fn overlapping(
    map: &Map,
    a: u64,
    b: u64,
) -> impl Iterator<Item = (u64, u64, &Extent, u64)> + '_ {
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
pub(super) fn split_at(map: &mut Map, pos: u64) {
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
pub(super) fn remove_range(map: &mut Map, a: u64, b: u64) {
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
pub(super) fn insert_merge(map: &mut Map, mut start: u64, mut ext: Extent) {
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
pub(super) fn pieces_of(map: &Map, a: u64, len: u64) -> Vec<(u64, Extent)> {
    overlapping(map, a, a + len)
        .map(|(s, e, ext, es)| (s - a, ext.slice(s - es, e - s)))
        .collect()
}

/// Materialises `pieces` (relative to the start of `out`) into `out`.
pub(super) fn materialise(pieces: &[(u64, Extent)], out: &mut [u8]) {
    out.fill(0);
    for (rel, ext) in pieces {
        let s = *rel as usize;
        ext.fill(0, &mut out[s..s + ext.len as usize]);
    }
}

/// Splits literal bytes (a whole number of pages, to land at a page-aligned
/// offset) into canonical extents relative to their start.
pub(super) fn classify(data: Arc<[u8]>) -> Vec<(u64, Extent)> {
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
pub(super) fn write_pieces(map: &mut Map, at: u64, len: u64, pieces: Vec<(u64, Extent)>) {
    remove_range(map, at, at + len);
    for (rel, ext) in pieces {
        insert_merge(map, at + rel, ext);
    }
}

pub(super) fn page_floor(x: u64) -> u64 {
    x / PAGE * PAGE
}

pub(super) fn page_ceil(x: u64) -> u64 {
    x.div_ceil(PAGE) * PAGE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_pages_are_recognised() {
        let mut p = [0u8; 512];
        pattern_page(77, 12345, &mut p);
        assert_eq!(recognise_pattern(&p), Some((77, 12345)));
        p[400] ^= 1;
        assert_eq!(recognise_pattern(&p), None);
        assert_eq!(recognise_pattern(&[0u8; 512]), None);
    }
}
