//! CRC-64 in Azure Storage's flavour (`x-ms-content-crc64`).

pub(super) const CRC64_POLY: u64 = 0x9A6C_9329_AC4B_C9B5;

pub(super) fn crc64_tables() -> &'static [[u64; 256]; 8] {
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
