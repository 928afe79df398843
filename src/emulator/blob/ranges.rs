//! Page-range listing (Get Page Ranges) and diff (`x-ms-previous-snapshot-url`)
//! over extent maps, coalesced and paginated.

use super::PAGE;
use super::extent::{Kind, Map, overlapping};

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
pub(super) struct Coalescer {
    pub(super) out: Vec<ListedRange>,
    pub(super) cur: Option<ListedRange>,
    pub(super) max: usize,
    pub(super) next: Option<u64>,
}

impl Coalescer {
    pub(super) fn new(max: usize) -> Self {
        Coalescer {
            out: Vec::new(),
            cur: None,
            max: max.max(1),
            next: None,
        }
    }

    /// Adds `[start, end)`; false once the page is full (stop walking).
    pub(super) fn push(&mut self, clear: bool, start: u64, end: u64) -> bool {
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

    pub(super) fn finish(mut self) -> (Vec<ListedRange>, Option<u64>) {
        if let Some(c) = self.cur.take() {
            self.out.push(c);
        }
        (self.out, self.next)
    }
}

pub(super) fn list_walk(map: &Map, a: u64, b: u64, co: &mut Coalescer) {
    for (s, e, _, _) in overlapping(map, a, b) {
        if !co.push(false, s, e) {
            return;
        }
    }
}

pub(super) fn diff_walk(new: &Map, old: &Map, a: u64, b: u64, co: &mut Coalescer) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    use crate::emulator::blob::sas::AccessError;
    use crate::emulator::blob::test_util::*;
    use crate::emulator::blob::{BlobStore, DiffError, MIB, Need, SasAccess, StorageConfig};
    use crate::emulator::clock::SimClock;

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
        let auth = |need: Need| {
            s.authorize(
                segs[0],
                segs[1],
                segs[2],
                q.get("sig").map(|x| x.as_str()),
                q.get("si").map(|x| x.as_str()),
                need,
            )
        };
        assert_eq!(auth(Need::Meta), Ok(id.clone()));
        assert_eq!(auth(Need::Data), Ok(id.clone()));
        assert_eq!(auth(Need::Write), Err(AccessError::PermissionMismatch));
        assert!(s.has_active_grant(&id));
        assert_eq!(s.active_grants().len(), 1);
        assert!(matches!(
            s.authorize(segs[0], segs[1], segs[2], Some("bogus"), None, Need::Meta),
            Err(AccessError::AuthFailed(_))
        ));
        assert_eq!(
            s.authorize(
                segs[0],
                "other",
                segs[2],
                q.get("sig").map(|x| x.as_str()),
                None,
                Need::Meta
            ),
            Err(AccessError::NotFound)
        );
        // 100 simulated seconds = 10 real seconds at scale 10.
        tokio::time::advance(std::time::Duration::from_secs(11)).await;
        assert!(matches!(auth(Need::Meta), Err(AccessError::AuthFailed(_))));
        assert!(!s.has_active_grant(&id));
        assert!(s.active_grants().is_empty());
        // Revocation.
        let w = s.grant(&id, SasAccess::Write, 1000.0).unwrap();
        let wq: HashMap<String, String> = url::Url::parse(&w)
            .unwrap()
            .query_pairs()
            .into_owned()
            .collect();
        let wauth = |need: Need| {
            s.authorize(
                segs[0],
                segs[1],
                segs[2],
                wq.get("sig").map(|x| x.as_str()),
                None,
                need,
            )
        };
        assert_eq!(wauth(Need::Write), Ok(id.clone()));
        assert_eq!(wauth(Need::Meta), Ok(id.clone()));
        // An upload grant reads its blob's data too (the default reading of
        // facts §3.4; `write_grant_reads_data = false` is the other).
        assert_eq!(wauth(Need::Data), Ok(id.clone()));
        s.revoke_all(&id);
        assert!(matches!(
            wauth(Need::Write),
            Err(AccessError::AuthFailed(_))
        ));
        assert!(!s.has_active_grant(&id));
        s.delete(&id);
        assert_eq!(s.size(&id), None);
        assert!(s.grant(&id, SasAccess::Read, 10.0).is_none());
    }
}
