//! LZF decompression, as `lzf_decompress` in Redis's `src/lzf_d.c` (with
//! `CHECK_INPUT`), used for `RDB_ENC_LZF` strings (`rdbLoadLzfStringObject`
//! in `src/rdb.c`).
//!
//! The output is bounded by the declared uncompressed length, and that length
//! is itself bounded by what the compressed bytes can expand to, so hostile
//! input can never make us allocate more than a small multiple of its size.

use crate::error::RdbError;

/// The largest expansion LZF can achieve: a 3-byte back reference yields at
/// most 264 bytes (ratio 88); a literal run never expands.
pub const MAX_EXPANSION: u64 = 88;

/// Decompress `input` into exactly `out_len` bytes.
///
/// Errors when the data is malformed (a reference before the start of the
/// output, a run past the end of the input or of the output) or when it does
/// not produce exactly `out_len` bytes, the check `rdbLoadLzfStringObject`
/// makes.
pub fn decompress(input: &[u8], out_len: usize) -> Result<Vec<u8>, RdbError> {
    let mut out = Vec::new();
    decompress_into(input, out_len, &mut out)?;
    Ok(out)
}

/// Like [`decompress`] but appends to `out` (which may already hold data; the
/// back references only look at what this call produced).
pub fn decompress_into(input: &[u8], out_len: usize, out: &mut Vec<u8>) -> Result<(), RdbError> {
    if (out_len as u64) > (input.len() as u64).saturating_mul(MAX_EXPANSION) {
        return Err(RdbError::corrupt(
            "LZF declared length larger than the data can expand to",
        ));
    }
    let base = out.len();
    out.reserve(out_len);
    let end = base + out_len;
    let mut ip = 0usize;
    while ip < input.len() {
        let ctrl = input[ip] as usize;
        ip += 1;
        if ctrl < 32 {
            let run = ctrl + 1;
            if out.len() + run > end {
                return Err(RdbError::corrupt("LZF literal run past declared length"));
            }
            let lit = input
                .get(ip..ip + run)
                .ok_or_else(|| RdbError::corrupt("LZF literal run past end of input"))?;
            out.extend_from_slice(lit);
            ip += run;
        } else {
            let mut len = ctrl >> 5;
            let mut back = (ctrl & 0x1f) << 8;
            if len == 7 {
                let extra = *input
                    .get(ip)
                    .ok_or_else(|| RdbError::corrupt("LZF truncated back reference"))?;
                len += extra as usize;
                ip += 1;
            }
            let low = *input
                .get(ip)
                .ok_or_else(|| RdbError::corrupt("LZF truncated back reference"))?;
            ip += 1;
            back += low as usize + 1;
            let len = len + 2;
            if out.len() + len > end {
                return Err(RdbError::corrupt("LZF back reference past declared length"));
            }
            let produced = out.len() - base;
            if back > produced {
                return Err(RdbError::corrupt(
                    "LZF back reference before start of output",
                ));
            }
            let start = out.len() - back;
            if back >= len {
                out.extend_from_within(start..start + len);
            } else {
                // Overlapping copy: byte by byte, as lzf_d.c does.
                for i in 0..len {
                    let b = out[start + i];
                    out.push(b);
                }
            }
        }
    }
    if out.len() != end {
        return Err(RdbError::corrupt("LZF output shorter than declared length"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_and_backrefs() {
        // "aaaaaaaaaa": literal 'a', then back ref distance 1, length 9.
        // ctrl: len field (9-2=7 -> long form, extra 0), off high 0; low 0.
        let data = [0x00, b'a', 0xe0, 0x00, 0x00];
        assert_eq!(decompress(&data, 10).unwrap(), b"aaaaaaaaaa");
        // Short form: literal "abc", then copy 3 from distance 3.
        let data = [0x02, b'a', b'b', b'c', 0x20, 0x02];
        assert_eq!(decompress(&data, 6).unwrap(), b"abcabc");
    }

    #[test]
    fn malformed_inputs_are_errors() {
        assert!(decompress(&[0x05, b'a'], 6).is_err()); // literal past input
        assert!(decompress(&[0x20, 0x00], 3).is_err()); // ref before start
        assert!(decompress(&[0x00, b'a'], 2).is_err()); // short output
        assert!(decompress(&[0x01, b'a', b'b'], 1).is_err()); // long output
        assert!(decompress(&[0x00, b'a', 0xe0], 10).is_err()); // truncated ref
        assert!(decompress(&[0x00, b'a'], 1 << 40).is_err()); // absurd length
    }
}
