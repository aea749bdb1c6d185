//! Reading RDB primitives from an in-memory value slice: the same length
//! and string encodings `rdbLoadLenByRef` / `rdbGenericLoadStringObject`
//! read from a stream in `src/rdb.c`, but over `&[u8]` so the value decoder
//! is a pure function of the bytes cut from the file.

use std::borrow::Cow;

use crate::error::RdbError;
use crate::lzf;

/// `RDB_ENC_INT8`, `RDB_ENC_INT16`, `RDB_ENC_INT32`, `RDB_ENC_LZF`.
pub(crate) const ENC_INT8: u8 = 0;
pub(crate) const ENC_INT16: u8 = 1;
pub(crate) const ENC_INT32: u8 = 2;
pub(crate) const ENC_LZF: u8 = 3;

/// A decoded length prefix (`rdbLoadLenByRef`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Len {
    /// A plain length.
    Plain(u64),
    /// `11xxxxxx`: a special string encoding follows (`RDB_ENC_*`).
    Encoded(u8),
}

/// Decode a length from its first byte and a way to get more bytes; shared
/// by the slice cursor and the streaming source.
#[inline]
pub(crate) fn decode_len_first(b: u8) -> LenShape {
    match b >> 6 {
        0 => LenShape::Done(Len::Plain((b & 0x3f) as u64)),
        1 => LenShape::Need14(b & 0x3f),
        3 => LenShape::Done(Len::Encoded(b & 0x3f)),
        _ => match b {
            0x80 => LenShape::Need32,
            0x81 => LenShape::Need64,
            _ => LenShape::Bad,
        },
    }
}

/// What the first byte of a length says about the rest.
pub(crate) enum LenShape {
    Done(Len),
    Need14(u8),
    Need32,
    Need64,
    Bad,
}

/// A position in a value's bytes.
pub(crate) struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Cursor { data, pos: 0 }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }

    fn eof() -> RdbError {
        RdbError::corrupt("value ends early")
    }

    pub(crate) fn u8(&mut self) -> Result<u8, RdbError> {
        let b = *self.data.get(self.pos).ok_or_else(Self::eof)?;
        self.pos += 1;
        Ok(b)
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], RdbError> {
        let end = self.pos.checked_add(n).ok_or_else(Self::eof)?;
        let s = self.data.get(self.pos..end).ok_or_else(Self::eof)?;
        self.pos = end;
        Ok(s)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], RdbError> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    /// An 8-byte little-endian millisecond time (`rdbLoadMillisecondTime`).
    pub(crate) fn millis(&mut self) -> Result<i64, RdbError> {
        Ok(i64::from_le_bytes(self.array::<8>()?))
    }

    /// `rdbLoadBinaryDoubleValue`.
    pub(crate) fn binary_double(&mut self) -> Result<f64, RdbError> {
        Ok(f64::from_le_bytes(self.array::<8>()?))
    }

    /// `rdbLoadDoubleValue`: a length byte (253 nan, 254 +inf, 255 -inf)
    /// then that many ASCII characters.
    pub(crate) fn string_double(&mut self) -> Result<f64, RdbError> {
        let len = self.u8()?;
        match len {
            255 => Ok(f64::NEG_INFINITY),
            254 => Ok(f64::INFINITY),
            253 => Ok(f64::NAN),
            n => parse_double(self.take(n as usize)?),
        }
    }

    pub(crate) fn len_raw(&mut self) -> Result<Len, RdbError> {
        let b = self.u8()?;
        Ok(match decode_len_first(b) {
            LenShape::Done(l) => l,
            LenShape::Need14(hi) => Len::Plain(((hi as u64) << 8) | self.u8()? as u64),
            LenShape::Need32 => Len::Plain(u32::from_be_bytes(self.array()?) as u64),
            LenShape::Need64 => Len::Plain(u64::from_be_bytes(self.array()?)),
            LenShape::Bad => {
                return Err(RdbError::corrupt(format!("unknown length encoding {b:#x}")))
            }
        })
    }

    /// A plain length (`rdbLoadLen` where an encoding is not allowed).
    pub(crate) fn len(&mut self) -> Result<u64, RdbError> {
        match self.len_raw()? {
            Len::Plain(n) => Ok(n),
            Len::Encoded(e) => Err(RdbError::corrupt(format!(
                "string encoding {e} where a length was expected"
            ))),
        }
    }

    /// A length used as an element count: also bounded by the bytes left,
    /// since each element takes at least `min_each` bytes.
    pub(crate) fn count(&mut self, min_each: usize) -> Result<usize, RdbError> {
        let n = self.len()?;
        let max = (self.remaining() / min_each.max(1)) as u64;
        if n > max {
            return Err(RdbError::corrupt(format!(
                "count {n} larger than the data can hold"
            )));
        }
        Ok(n as usize)
    }

    /// `rdbGenericLoadStringObject`: raw, integer-encoded or LZF string.
    pub(crate) fn string(&mut self) -> Result<Cow<'a, [u8]>, RdbError> {
        match self.len_raw()? {
            Len::Plain(n) => {
                let n = usize::try_from(n).map_err(|_| Self::eof())?;
                Ok(Cow::Borrowed(self.take(n)?))
            }
            Len::Encoded(ENC_INT8) => Ok(Cow::Owned(int_to_bytes(self.u8()? as i8 as i64))),
            Len::Encoded(ENC_INT16) => Ok(Cow::Owned(int_to_bytes(
                i16::from_le_bytes(self.array()?) as i64,
            ))),
            Len::Encoded(ENC_INT32) => Ok(Cow::Owned(int_to_bytes(
                i32::from_le_bytes(self.array()?) as i64,
            ))),
            Len::Encoded(ENC_LZF) => {
                let clen = self.len()?;
                let ulen = self.len()?;
                let clen = usize::try_from(clen).map_err(|_| Self::eof())?;
                let ulen =
                    usize::try_from(ulen).map_err(|_| RdbError::corrupt("LZF length too large"))?;
                let comp = self.take(clen)?;
                Ok(Cow::Owned(lzf::decompress(comp, ulen)?))
            }
            Len::Encoded(e) => Err(RdbError::corrupt(format!("unknown string encoding {e}"))),
        }
    }

    pub(crate) fn string_owned(&mut self) -> Result<Vec<u8>, RdbError> {
        Ok(self.string()?.into_owned())
    }
}

/// Decimal text of an integer, as Redis's `ll2string`.
pub fn int_to_bytes(v: i64) -> Vec<u8> {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let neg = v < 0;
    let mut u = v.unsigned_abs();
    loop {
        i -= 1;
        buf[i] = b'0' + (u % 10) as u8;
        u /= 10;
        if u == 0 {
            break;
        }
    }
    let mut out = Vec::with_capacity(buf.len() - i + 1);
    if neg {
        out.push(b'-');
    }
    out.extend_from_slice(&buf[i..]);
    out
}

/// Parse a score written as text (old `RDB_TYPE_ZSET`, ziplist/listpack
/// zsets): what `strtod` accepts for the values Redis writes, including
/// `inf`, `-inf` and `nan`.
pub fn parse_double(s: &[u8]) -> Result<f64, RdbError> {
    let text = std::str::from_utf8(s).map_err(|_| RdbError::corrupt("score is not text"))?;
    let t = text.trim();
    match t.to_ascii_lowercase().as_str() {
        "inf" | "+inf" | "infinity" | "+infinity" => return Ok(f64::INFINITY),
        "-inf" | "-infinity" => return Ok(f64::NEG_INFINITY),
        "nan" | "-nan" | "+nan" => return Ok(f64::NAN),
        _ => {}
    }
    t.parse::<f64>()
        .map_err(|_| RdbError::corrupt(format!("bad score {text:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths() {
        let mut c = Cursor::new(&[
            0x05, 0x41, 0x02, 0x80, 0, 1, 0, 0, 0x81, 0, 0, 0, 1, 0, 0, 0, 0, 0xc2,
        ]);
        assert_eq!(c.len().unwrap(), 5);
        assert_eq!(c.len().unwrap(), 0x102);
        assert_eq!(c.len().unwrap(), 0x10000);
        assert_eq!(c.len().unwrap(), 1 << 32);
        assert_eq!(c.len_raw().unwrap(), Len::Encoded(2));
        assert!(Cursor::new(&[0x82]).len().is_err());
        assert!(Cursor::new(&[0x40]).len().is_err());
    }

    #[test]
    fn int_encoded_strings() {
        let mut c = Cursor::new(&[0xc0, 0xfe, 0xc1, 0x39, 0x30, 0xc2, 0x00, 0x00, 0x00, 0x80]);
        assert_eq!(&*c.string().unwrap(), b"-2");
        assert_eq!(&*c.string().unwrap(), b"12345");
        assert_eq!(&*c.string().unwrap(), b"-2147483648");
        assert!(Cursor::new(&[0xc4]).string().is_err());
    }

    #[test]
    fn ints_and_doubles() {
        assert_eq!(int_to_bytes(i64::MIN), b"-9223372036854775808");
        assert_eq!(int_to_bytes(0), b"0");
        assert_eq!(parse_double(b"1.5").unwrap(), 1.5);
        assert_eq!(parse_double(b"-inf").unwrap(), f64::NEG_INFINITY);
        assert!(parse_double(b"x").is_err());
        let mut c = Cursor::new(&[255, 254, 253, 3, b'2', b'.', b'5']);
        assert_eq!(c.string_double().unwrap(), f64::NEG_INFINITY);
        assert_eq!(c.string_double().unwrap(), f64::INFINITY);
        assert!(c.string_double().unwrap().is_nan());
        assert_eq!(c.string_double().unwrap(), 2.5);
    }
}
