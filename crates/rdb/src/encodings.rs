//! The compact encodings Redis stores inside one RDB string: listpack
//! (`src/listpack.c`), ziplist (`src/ziplist.c`), intset (`src/intset.c`) and
//! zipmap (`src/zipmap.c`). Each parser validates as it walks and returns the
//! elements; none trusts a header count or a length without checking it
//! against the bytes actually present.

use crate::bytes::int_to_bytes;
use crate::error::RdbError;

/// One element of a listpack or ziplist: bytes, or an integer stored in one
/// of the integer encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Elem<'a> {
    /// A string element.
    Str(&'a [u8]),
    /// An integer element.
    Int(i64),
}

impl Elem<'_> {
    /// The element as Redis would return it to a client: integers in decimal.
    pub fn to_vec(&self) -> Vec<u8> {
        match self {
            Elem::Str(s) => s.to_vec(),
            Elem::Int(i) => int_to_bytes(*i),
        }
    }

    /// The element as an integer (streams store their metadata this way).
    pub fn as_int(&self) -> Result<i64, RdbError> {
        match self {
            Elem::Int(i) => Ok(*i),
            Elem::Str(s) => std::str::from_utf8(s)
                .ok()
                .and_then(|t| t.parse::<i64>().ok())
                .ok_or_else(|| RdbError::corrupt("expected an integer element")),
        }
    }
}

fn bad(what: &str) -> RdbError {
    RdbError::corrupt(what.to_string())
}

fn get<'a>(data: &'a [u8], from: usize, n: usize, what: &str) -> Result<&'a [u8], RdbError> {
    from.checked_add(n)
        .and_then(|end| data.get(from..end))
        .ok_or_else(|| bad(what))
}

fn sign_extend(v: u64, bits: u32) -> i64 {
    let shift = 64 - bits;
    ((v << shift) as i64) >> shift
}

/// Number of bytes `lpEncodeBacklen` uses for an entry of `l` bytes.
fn backlen_size(l: usize) -> usize {
    match l {
        0..=127 => 1,
        128..=16382 => 2,
        16383..=2097150 => 3,
        2097151..=268435454 => 4,
        _ => 5,
    }
}

/// Decode the backlen that ends at `end` (exclusive), as `lpDecodeBacklen`.
fn decode_backlen(data: &[u8], start: usize, end: usize) -> Option<u64> {
    let mut val: u64 = 0;
    let mut shift = 0;
    let mut p = end;
    while p > start {
        p -= 1;
        let b = data[p];
        val |= ((b & 127) as u64) << shift;
        if b & 128 == 0 {
            return if p == start { Some(val) } else { None };
        }
        shift += 7;
    }
    None
}

/// Walk a listpack (`src/listpack.c`): 4-byte total size, 2-byte count,
/// entries each followed by their back-length, and the 0xFF terminator.
pub fn listpack(data: &[u8]) -> Result<Vec<Elem<'_>>, RdbError> {
    if data.len() < 7 {
        return Err(bad("listpack too short"));
    }
    let total = u32::from_le_bytes([data[0], data[1], data[2], data[3]]) as usize;
    if total != data.len() {
        return Err(bad("listpack size header does not match its length"));
    }
    let count = u16::from_le_bytes([data[4], data[5]]) as usize;
    let mut out = Vec::with_capacity(count.min(data.len()));
    let mut p = 6;
    loop {
        let b = *data
            .get(p)
            .ok_or_else(|| bad("listpack missing terminator"))?;
        if b == 0xff {
            if p + 1 != data.len() {
                return Err(bad("listpack terminator before its end"));
            }
            break;
        }
        let (elem, size) = if b & 0x80 == 0 {
            (Elem::Int((b & 0x7f) as i64), 1)
        } else if b & 0xc0 == 0x80 {
            let len = (b & 0x3f) as usize;
            (
                Elem::Str(get(data, p + 1, len, "listpack string past end")?),
                1 + len,
            )
        } else if b & 0xe0 == 0xc0 {
            let lo = *get(data, p + 1, 1, "listpack int past end")?
                .first()
                .unwrap_or(&0);
            let v = (((b & 0x1f) as u64) << 8) | lo as u64;
            (Elem::Int(sign_extend(v, 13)), 2)
        } else if b & 0xf0 == 0xe0 {
            let lo = *get(data, p + 1, 1, "listpack length past end")?
                .first()
                .unwrap_or(&0);
            let len = (((b & 0x0f) as usize) << 8) | lo as usize;
            (
                Elem::Str(get(data, p + 2, len, "listpack string past end")?),
                2 + len,
            )
        } else {
            match b {
                0xf0 => {
                    let l = get(data, p + 1, 4, "listpack length past end")?;
                    let len = u32::from_le_bytes([l[0], l[1], l[2], l[3]]) as usize;
                    (
                        Elem::Str(get(data, p + 5, len, "listpack string past end")?),
                        5 + len,
                    )
                }
                0xf1 => {
                    let v = get(data, p + 1, 2, "listpack int past end")?;
                    (Elem::Int(i16::from_le_bytes([v[0], v[1]]) as i64), 3)
                }
                0xf2 => {
                    let v = get(data, p + 1, 3, "listpack int past end")?;
                    let u = v[0] as u64 | (v[1] as u64) << 8 | (v[2] as u64) << 16;
                    (Elem::Int(sign_extend(u, 24)), 4)
                }
                0xf3 => {
                    let v = get(data, p + 1, 4, "listpack int past end")?;
                    (
                        Elem::Int(i32::from_le_bytes([v[0], v[1], v[2], v[3]]) as i64),
                        5,
                    )
                }
                0xf4 => {
                    let v = get(data, p + 1, 8, "listpack int past end")?;
                    let mut a = [0u8; 8];
                    a.copy_from_slice(v);
                    (Elem::Int(i64::from_le_bytes(a)), 9)
                }
                _ => return Err(bad("invalid listpack encoding byte")),
            }
        };
        let bl = backlen_size(size);
        let entry_end = p + size;
        let back_end = entry_end
            .checked_add(bl)
            .ok_or_else(|| bad("listpack overflow"))?;
        if back_end > data.len() - 1 {
            return Err(bad("listpack entry past end"));
        }
        if decode_backlen(data, entry_end, back_end) != Some(size as u64) {
            return Err(bad("listpack back-length mismatch"));
        }
        out.push(elem);
        p = back_end;
    }
    if count != 0xffff && count != out.len() {
        return Err(bad("listpack count header does not match its entries"));
    }
    Ok(out)
}

/// Walk a ziplist (`src/ziplist.c`): 4-byte size, 4-byte tail offset, 2-byte
/// count, entries `<prevlen><encoding><data>`, and the 0xFF terminator.
pub fn ziplist(data: &[u8]) -> Result<Vec<Elem<'_>>, RdbError> {
    if data.len() < 11 {
        return Err(bad("ziplist too short"));
    }
    let total = u32::from_le_bytes([data[0], data[1], data[2], data[3]]) as usize;
    if total != data.len() {
        return Err(bad("ziplist size header does not match its length"));
    }
    let tail = u32::from_le_bytes([data[4], data[5], data[6], data[7]]) as usize;
    let count = u16::from_le_bytes([data[8], data[9]]) as usize;
    if data[total - 1] != 0xff {
        return Err(bad("ziplist missing terminator"));
    }
    let mut out = Vec::with_capacity(count.min(data.len()));
    let mut p = 10;
    let mut prev_size = 0usize;
    let mut last_start = 10;
    loop {
        let b = *data.get(p).ok_or_else(|| bad("ziplist entry past end"))?;
        if b == 0xff {
            if p + 1 != data.len() {
                return Err(bad("ziplist terminator before its end"));
            }
            break;
        }
        let start = p;
        let prevlen = if b < 254 {
            p += 1;
            b as usize
        } else if b == 254 {
            let v = get(data, p + 1, 4, "ziplist prevlen past end")?;
            p += 5;
            u32::from_le_bytes([v[0], v[1], v[2], v[3]]) as usize
        } else {
            return Err(bad("invalid ziplist prevlen"));
        };
        if prevlen != prev_size {
            return Err(bad("ziplist prevlen mismatch"));
        }
        let e = *data.get(p).ok_or_else(|| bad("ziplist entry past end"))?;
        let elem = match e >> 6 {
            0 => {
                let len = (e & 0x3f) as usize;
                let s = get(data, p + 1, len, "ziplist string past end")?;
                p += 1 + len;
                Elem::Str(s)
            }
            1 => {
                let lo = get(data, p + 1, 1, "ziplist length past end")?[0];
                let len = (((e & 0x3f) as usize) << 8) | lo as usize;
                let s = get(data, p + 2, len, "ziplist string past end")?;
                p += 2 + len;
                Elem::Str(s)
            }
            2 => {
                let l = get(data, p + 1, 4, "ziplist length past end")?;
                let len = u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize;
                let s = get(data, p + 5, len, "ziplist string past end")?;
                p = p
                    .checked_add(5 + len)
                    .ok_or_else(|| bad("ziplist overflow"))?;
                Elem::Str(s)
            }
            _ => {
                let (v, n) = match e {
                    0xc0 => {
                        let v = get(data, p + 1, 2, "ziplist int past end")?;
                        (i16::from_le_bytes([v[0], v[1]]) as i64, 2)
                    }
                    0xd0 => {
                        let v = get(data, p + 1, 4, "ziplist int past end")?;
                        (i32::from_le_bytes([v[0], v[1], v[2], v[3]]) as i64, 4)
                    }
                    0xe0 => {
                        let v = get(data, p + 1, 8, "ziplist int past end")?;
                        let mut a = [0u8; 8];
                        a.copy_from_slice(v);
                        (i64::from_le_bytes(a), 8)
                    }
                    0xf0 => {
                        let v = get(data, p + 1, 3, "ziplist int past end")?;
                        let u = v[0] as u64 | (v[1] as u64) << 8 | (v[2] as u64) << 16;
                        (sign_extend(u, 24), 3)
                    }
                    0xfe => {
                        let v = get(data, p + 1, 1, "ziplist int past end")?;
                        (v[0] as i8 as i64, 1)
                    }
                    0xf1..=0xfd => (((e & 0x0f) as i64) - 1, 0),
                    _ => return Err(bad("invalid ziplist encoding byte")),
                };
                p += 1 + n;
                Elem::Int(v)
            }
        };
        prev_size = p - start;
        last_start = start;
        out.push(elem);
    }
    if !out.is_empty() && tail != last_start {
        return Err(bad("ziplist tail offset mismatch"));
    }
    if count != 0xffff && count != out.len() {
        return Err(bad("ziplist count header does not match its entries"));
    }
    Ok(out)
}

/// Decode an intset (`src/intset.c`): 4-byte encoding (2, 4 or 8), 4-byte
/// length, then the sorted little-endian integers.
pub fn intset(data: &[u8]) -> Result<Vec<i64>, RdbError> {
    if data.len() < 8 {
        return Err(bad("intset too short"));
    }
    let enc = u32::from_le_bytes([data[0], data[1], data[2], data[3]]) as usize;
    let len = u32::from_le_bytes([data[4], data[5], data[6], data[7]]) as usize;
    if !matches!(enc, 2 | 4 | 8) {
        return Err(bad("invalid intset encoding"));
    }
    let body = &data[8..];
    if (body.len() as u64) != (len as u64) * (enc as u64) {
        return Err(bad("intset length does not match its size"));
    }
    let mut out = Vec::with_capacity(len);
    for c in body.chunks_exact(enc) {
        let v = match enc {
            2 => i16::from_le_bytes([c[0], c[1]]) as i64,
            4 => i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64,
            _ => i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]),
        };
        if let Some(&last) = out.last() {
            if v <= last {
                return Err(bad("intset not sorted or has duplicates"));
            }
        }
        out.push(v);
    }
    Ok(out)
}

/// A zipmap field and its value.
pub type FieldValue<'a> = (&'a [u8], &'a [u8]);

fn zipmap_len(data: &[u8], p: &mut usize) -> Result<Option<usize>, RdbError> {
    let b = *data.get(*p).ok_or_else(|| bad("zipmap past end"))?;
    match b {
        255 => {
            *p += 1;
            Ok(None)
        }
        254 => {
            let v = get(data, *p + 1, 4, "zipmap length past end")?;
            *p += 5;
            Ok(Some(u32::from_le_bytes([v[0], v[1], v[2], v[3]]) as usize))
        }
        n => {
            *p += 1;
            Ok(Some(n as usize))
        }
    }
}

/// Decode a zipmap (`src/zipmap.c`, Redis ≤ 2.4 small hashes):
/// `<zmlen>(<len>key<len><free>value<free bytes>)*<255>`.
pub fn zipmap(data: &[u8]) -> Result<Vec<FieldValue<'_>>, RdbError> {
    if data.len() < 2 {
        return Err(bad("zipmap too short"));
    }
    let mut p = 1;
    let mut out = Vec::new();
    loop {
        let klen = match zipmap_len(data, &mut p)? {
            None => break,
            Some(l) => l,
        };
        let key = get(data, p, klen, "zipmap key past end")?;
        p += klen;
        let vlen = zipmap_len(data, &mut p)?.ok_or_else(|| bad("zipmap ends after a key"))?;
        let free = *data.get(p).ok_or_else(|| bad("zipmap past end"))? as usize;
        p += 1;
        let val = get(data, p, vlen, "zipmap value past end")?;
        p = p
            .checked_add(vlen + free)
            .filter(|&q| q <= data.len())
            .ok_or_else(|| bad("zipmap value past end"))?;
        out.push((key, val));
    }
    if p != data.len() {
        return Err(bad("zipmap terminator before its end"));
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Build a listpack from already-encoded entries (encoding + data).
    pub(crate) fn lp_build(entries: &[Vec<u8>]) -> Vec<u8> {
        let mut body = Vec::new();
        for e in entries {
            body.extend_from_slice(e);
            let l = e.len();
            // lpEncodeBacklen
            match backlen_size(l) {
                1 => body.push(l as u8),
                2 => {
                    body.push((l >> 7) as u8);
                    body.push((l & 127) as u8 | 128);
                }
                3 => {
                    body.push((l >> 14) as u8);
                    body.push(((l >> 7) & 127) as u8 | 128);
                    body.push((l & 127) as u8 | 128);
                }
                _ => unreachable!("test entries are small"),
            }
        }
        let total = 6 + body.len() + 1;
        let mut lp = Vec::new();
        lp.extend_from_slice(&(total as u32).to_le_bytes());
        lp.extend_from_slice(&(entries.len() as u16).to_le_bytes());
        lp.extend_from_slice(&body);
        lp.push(0xff);
        lp
    }

    /// Encode an integer the way `lpEncodeIntegerGetType` chooses.
    pub(crate) fn lp_int(v: i64) -> Vec<u8> {
        if (0..=127).contains(&v) {
            vec![v as u8]
        } else if (-4096..=4095).contains(&v) {
            let u = (v as u64) & 0x1fff;
            vec![0xc0 | (u >> 8) as u8, u as u8]
        } else if (-32768..=32767).contains(&v) {
            let mut e = vec![0xf1];
            e.extend_from_slice(&(v as i16).to_le_bytes());
            e
        } else if (-8388608..=8388607).contains(&v) {
            let b = (v as i32).to_le_bytes();
            vec![0xf2, b[0], b[1], b[2]]
        } else if (i32::MIN as i64..=i32::MAX as i64).contains(&v) {
            let mut e = vec![0xf3];
            e.extend_from_slice(&(v as i32).to_le_bytes());
            e
        } else {
            let mut e = vec![0xf4];
            e.extend_from_slice(&v.to_le_bytes());
            e
        }
    }

    pub(crate) fn lp_str(s: &[u8]) -> Vec<u8> {
        let mut e = Vec::new();
        if s.len() < 64 {
            e.push(0x80 | s.len() as u8);
        } else if s.len() < 4096 {
            e.push(0xe0 | (s.len() >> 8) as u8);
            e.push(s.len() as u8);
        } else {
            e.push(0xf0);
            e.extend_from_slice(&(s.len() as u32).to_le_bytes());
        }
        e.extend_from_slice(s);
        e
    }

    #[test]
    fn listpack_every_integer_encoding() {
        let values = [
            0,
            127,
            128,
            -1,
            -4096,
            4095,
            4096,
            -4097,
            32767,
            -32768,
            32768,
            -8388608,
            8388607,
            8388608,
            i32::MIN as i64,
            i32::MAX as i64,
            i32::MAX as i64 + 1,
            i64::MIN,
            i64::MAX,
        ];
        let entries: Vec<Vec<u8>> = values.iter().map(|&v| lp_int(v)).collect();
        let lp = lp_build(&entries);
        let got: Vec<i64> = listpack(&lp)
            .unwrap()
            .iter()
            .map(|e| e.as_int().unwrap())
            .collect();
        assert_eq!(got, values);
    }

    #[test]
    fn listpack_strings_and_backlens() {
        let s200 = vec![b'x'; 200];
        let s5000 = vec![b'y'; 5000];
        let lp = lp_build(&[lp_str(b""), lp_str(b"abc"), lp_str(&s200), lp_str(&s5000)]);
        let got = listpack(&lp).unwrap();
        assert_eq!(
            got,
            vec![
                Elem::Str(b""),
                Elem::Str(b"abc"),
                Elem::Str(&s200),
                Elem::Str(&s5000)
            ]
        );
        // Every truncation or single corruption is an error, never a panic.
        for cut in 0..lp.len() {
            assert!(listpack(&lp[..cut]).is_err());
        }
        for i in 0..lp.len().min(300) {
            let mut bad = lp.clone();
            bad[i] ^= 0x5a;
            let _ = listpack(&bad);
        }
    }

    fn zl_build(entries: &[Vec<u8>]) -> Vec<u8> {
        let mut body = Vec::new();
        let mut prev = 0usize;
        let mut tail = 10;
        for e in entries {
            tail = 10 + body.len();
            let start = body.len();
            if prev < 254 {
                body.push(prev as u8);
            } else {
                body.push(254);
                body.extend_from_slice(&(prev as u32).to_le_bytes());
            }
            body.extend_from_slice(e);
            prev = body.len() - start;
        }
        let total = 10 + body.len() + 1;
        let mut zl = Vec::new();
        zl.extend_from_slice(&(total as u32).to_le_bytes());
        zl.extend_from_slice(&(tail as u32).to_le_bytes());
        zl.extend_from_slice(&(entries.len() as u16).to_le_bytes());
        zl.extend_from_slice(&body);
        zl.push(0xff);
        zl
    }

    #[test]
    fn ziplist_every_integer_encoding() {
        let mut entries = vec![
            vec![0xfe, 0x80],                      // int8 -128
            vec![0xc0, 0x00, 0x80],                // int16 -32768
            vec![0xf0, 0xff, 0xff, 0x7f],          // int24 8388607
            vec![0xf0, 0x00, 0x00, 0x80],          // int24 -8388608
            vec![0xd0, 0xff, 0xff, 0xff, 0x7f],    // int32 max
            vec![0xe0, 0, 0, 0, 0, 0, 0, 0, 0x80], // int64 min
            vec![0xf1],                            // imm 0
            vec![0xfd],                            // imm 12
        ];
        let long = vec![b'z'; 300];
        let mut e14 = vec![0x40 | (300 >> 8) as u8, (300 & 0xff) as u8];
        e14.extend_from_slice(&long);
        entries.push(e14);
        entries.push(vec![0x03, b'a', b'b', b'c']);
        let mut e32 = vec![0x80, 0, 0, 0, 2, b'h', b'i'];
        e32.truncate(7);
        entries.push(e32);
        entries.push(vec![0x01, b'q']); // after a 300+ byte entry: 5-byte prevlen
        let zl = zl_build(&entries);
        let got = ziplist(&zl).unwrap();
        let ints: Vec<i64> = got[..8].iter().map(|e| e.as_int().unwrap()).collect();
        assert_eq!(
            ints,
            vec![
                -128,
                -32768,
                8388607,
                -8388608,
                i32::MAX as i64,
                i64::MIN,
                0,
                12
            ]
        );
        assert_eq!(got[8], Elem::Str(&long));
        assert_eq!(got[9], Elem::Str(b"abc"));
        assert_eq!(got[10], Elem::Str(b"hi"));
        assert_eq!(got[11], Elem::Str(b"q"));
        for cut in 0..zl.len() {
            assert!(ziplist(&zl[..cut]).is_err());
        }
    }

    #[test]
    fn intset_and_zipmap() {
        let mut is = vec![2, 0, 0, 0, 3, 0, 0, 0];
        for v in [-5i16, 1, 300] {
            is.extend_from_slice(&v.to_le_bytes());
        }
        assert_eq!(intset(&is).unwrap(), vec![-5, 1, 300]);
        assert!(intset(&is[..11]).is_err());
        let zm = b"\x02\x03foo\x03\x00bar\x05hello\x05\x02world!!\xff";
        let got = zipmap(zm).unwrap();
        assert_eq!(
            got,
            vec![(&b"foo"[..], &b"bar"[..]), (&b"hello"[..], &b"world"[..])]
        );
        for cut in 0..zm.len() {
            assert!(zipmap(&zm[..cut]).is_err());
        }
    }
}
