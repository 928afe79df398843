//! The fixed-VHD footer: the last 512 bytes of every disk blob (cookie
//! `conectix`, CHS geometry, checksum), written for seeded source disks and
//! checked when an upload ends.

use crate::emulator::rng::Rng;

/// Seconds from 2000-01-01 to 2024-01-01 (VHD timestamps count from 2000).
pub(super) const VHD_2024: u32 = 757_382_400;

pub(super) fn chs_geometry(size: u64) -> (u16, u8, u8) {
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

pub(super) fn vhd_checksum(footer: &[u8]) -> u32 {
    let sum: u32 = footer
        .iter()
        .enumerate()
        .filter(|(i, _)| !(64..68).contains(i))
        .fold(0u32, |acc, (_, b)| acc.wrapping_add(*b as u32));
    !sum
}

/// A fixed-VHD footer for a disk of `disk_size` bytes (blob length − 512).
pub(super) fn vhd_footer(disk_size: u64, seed: u64) -> [u8; 512] {
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
    let mut rng = Rng::from_state(seed ^ 0x7668_D15C_0000_0001);
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
pub(super) fn footer_ok(f: &[u8]) -> bool {
    if f.len() != 512 || &f[0..8] != b"conectix" {
        return false;
    }
    let disk_type = u32::from_be_bytes(f[60..64].try_into().expect("4 bytes"));
    let stored = u32::from_be_bytes(f[64..68].try_into().expect("4 bytes"));
    disk_type == 2 && stored == vhd_checksum(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::blob::test_util::*;
    use crate::emulator::blob::{BlobId, MIB, PAGE};

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
}
