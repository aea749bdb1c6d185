//! CRC-64 as Redis computes it (`src/crc64.c`): the Jones polynomial
//! (0xad93d23594c935a9), reflected input and output, initial value 0 and no
//! final xor. Redis uses it for the RDB trailer and for DUMP payloads.
//!
//! Implemented with slicing-by-16 tables built at compile time, so a whole
//! multi-gigabyte snapshot can be checked at memory speed without `unsafe`.

/// The reflected form of the Jones polynomial used by `src/crc64.c`.
const POLY_REFLECTED: u64 = 0x95ac_9329_ac4b_c9b5;

const fn build_tables() -> [[u64; 256]; 16] {
    let mut t = [[0u64; 256]; 16];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u64;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ POLY_REFLECTED
            } else {
                crc >> 1
            };
            bit += 1;
        }
        t[0][i] = crc;
        i += 1;
    }
    let mut k = 1;
    while k < 16 {
        let mut i = 0;
        while i < 256 {
            let prev = t[k - 1][i];
            t[k][i] = (prev >> 8) ^ t[0][(prev & 0xff) as usize];
            i += 1;
        }
        k += 1;
    }
    t
}

static TABLES: [[u64; 256]; 16] = build_tables();

/// Continue a Redis CRC-64 from `seed` over `data` (`crc64(seed, s, l)` in
/// `src/crc64.c`). Start a new checksum with seed 0. Computed with the
/// carry-less-multiply folding of `crc-fast` (CRC-64/REDIS parameters:
/// Jones polynomial, reflected, init 0, no final xor); short inputs use
/// the tables below.
pub fn crc64(seed: u64, data: &[u8]) -> u64 {
    if data.len() < 64 {
        return crc64_tables(seed, data);
    }
    let mut d = crc_fast::Digest::new_with_init_state(crc_fast::CrcAlgorithm::Crc64Redis, seed);
    d.update(data);
    d.finalize()
}

/// The table-driven (slicing-by-16) form, for short inputs and as the
/// reference the fast path is tested against.
pub fn crc64_tables(seed: u64, data: &[u8]) -> u64 {
    let t = &TABLES;
    let mut crc = seed;
    let mut chunks = data.chunks_exact(16);
    for c in &mut chunks {
        let lo = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) ^ crc;
        crc = t[15][(lo & 0xff) as usize]
            ^ t[14][((lo >> 8) & 0xff) as usize]
            ^ t[13][((lo >> 16) & 0xff) as usize]
            ^ t[12][((lo >> 24) & 0xff) as usize]
            ^ t[11][((lo >> 32) & 0xff) as usize]
            ^ t[10][((lo >> 40) & 0xff) as usize]
            ^ t[9][((lo >> 48) & 0xff) as usize]
            ^ t[8][(lo >> 56) as usize]
            ^ t[7][c[8] as usize]
            ^ t[6][c[9] as usize]
            ^ t[5][c[10] as usize]
            ^ t[4][c[11] as usize]
            ^ t[3][c[12] as usize]
            ^ t[2][c[13] as usize]
            ^ t[1][c[14] as usize]
            ^ t[0][c[15] as usize];
    }
    for &b in chunks.remainder() {
        crc = t[0][((crc ^ b as u64) & 0xff) as usize] ^ (crc >> 8);
    }
    crc
}

/// Incremental Redis CRC-64 (`src/crc64.c`), for data that arrives in pieces.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Crc64 {
    crc: u64,
}

impl Crc64 {
    /// A fresh checksum (seed 0, as Redis starts every RDB and DUMP payload).
    pub fn new() -> Self {
        Crc64 { crc: 0 }
    }

    /// Feed more bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.crc = crc64(self.crc, data);
    }

    /// The checksum of everything fed so far.
    pub fn value(&self) -> u64 {
        self.crc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_path_equals_tables_at_every_length_and_seed() {
        let data: Vec<u8> = (0..5000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for len in [0, 1, 15, 63, 64, 65, 127, 128, 1000, 4096, 5000] {
            for seed in [0u64, 1, 0xe9c6_d914_c4b8_d9ca] {
                assert_eq!(
                    crc64(seed, &data[..len]),
                    crc64_tables(seed, &data[..len]),
                    "len {len} seed {seed}"
                );
            }
        }
        let (a, b) = data.split_at(1777);
        assert_eq!(crc64(crc64(0, a), b), crc64(0, &data));
    }

    fn bitwise(data: &[u8]) -> u64 {
        let mut crc = 0u64;
        for &b in data {
            crc ^= b as u64;
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ POLY_REFLECTED
                } else {
                    crc >> 1
                };
            }
        }
        crc
    }

    #[test]
    fn check_value_from_crc64_c() {
        assert_eq!(crc64(0, b"123456789"), 0xe9c6d914c4b8d9ca);
        let mut c = Crc64::new();
        c.update(b"1234");
        c.update(b"56789");
        assert_eq!(c.value(), 0xe9c6d914c4b8d9ca);
    }

    #[test]
    fn redis_test_vector() {
        // The second vector of crc64Test() in src/crc64.c; `sizeof(li)`
        // there counts the terminating NUL.
        let li = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed \
do eiusmod tempor incididunt ut labore et dolore magna \
aliqua. Ut enim ad minim veniam, quis nostrud exercitation \
ullamco laboris nisi ut aliquip ex ea commodo consequat. Duis \
aute irure dolor in reprehenderit in voluptate velit esse \
cillum dolore eu fugiat nulla pariatur. Excepteur sint \
occaecat cupidatat non proident, sunt in culpa qui officia \
deserunt mollit anim id est laborum.\0";
        assert_eq!(crc64(0, li), 0xc7794709e69683b3);
    }

    #[test]
    fn matches_bitwise_on_all_lengths_and_splits() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 + i / 3) as u8).collect();
        for len in 0..200 {
            assert_eq!(crc64(0, &data[..len]), bitwise(&data[..len]), "len {len}");
        }
        let whole = crc64(0, &data);
        for split in [0, 1, 15, 16, 17, 333, 999, 1000] {
            let mut c = Crc64::new();
            c.update(&data[..split]);
            c.update(&data[split..]);
            assert_eq!(c.value(), whole);
        }
    }
}
