//! A buffered byte source over any `Read` that keeps the running CRC-64 of
//! everything consumed, the byte offset, and can copy what it consumes into
//! a capture buffer (to cut a value's exact bytes out of the stream).
//!
//! CRC and capture work on whole buffer ranges, not per byte, so skipping a
//! value costs little more than the checksum itself.

use std::io::{self, Read};

use crate::bytes::{decode_len_first, Len, LenShape, ENC_INT16, ENC_INT32, ENC_INT8, ENC_LZF};
use crate::crc64::Crc64;
use crate::error::RdbError;

const BUF_SIZE: usize = 256 * 1024;

pub(crate) struct Source<R> {
    inner: R,
    buf: Box<[u8]>,
    pos: usize,
    end: usize,
    /// File offset of `buf[0]`.
    base: u64,
    crc: Crc64,
    /// Start of the not-yet-checksummed part of the buffer.
    crc_from: usize,
    crc_on: bool,
    /// Start of the not-yet-captured part of the buffer, when capturing.
    cap_from: Option<usize>,
    cap: Vec<u8>,
    /// Logical bytes of every string read or skipped (LZF strings at their
    /// uncompressed size): what the data takes once loaded.
    expanded: u64,
    /// Longest string accepted (declared length).
    pub(crate) max_string: u64,
}

impl<R: Read> Source<R> {
    pub(crate) fn new(inner: R) -> Self {
        Source {
            inner,
            buf: vec![0u8; BUF_SIZE].into_boxed_slice(),
            pos: 0,
            end: 0,
            base: 0,
            crc: Crc64::new(),
            crc_from: 0,
            crc_on: true,
            cap_from: None,
            cap: Vec::new(),
            expanded: 0,
            max_string: crate::DEFAULT_MAX_STRING,
        }
    }

    /// Logical bytes of the strings seen so far (see `expanded`).
    pub(crate) fn expanded(&self) -> u64 {
        self.expanded
    }

    /// Bytes consumed so far.
    #[inline]
    pub(crate) fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    fn flush_pending(&mut self) {
        if self.crc_on && self.crc_from < self.pos {
            self.crc.update(&self.buf[self.crc_from..self.pos]);
        }
        self.crc_from = self.pos;
        if let Some(from) = self.cap_from {
            if from < self.pos {
                self.cap.extend_from_slice(&self.buf[from..self.pos]);
            }
            self.cap_from = Some(self.pos);
        }
    }

    /// Refill an exhausted buffer. Returns false at end of input.
    #[cold]
    fn fill(&mut self) -> Result<bool, RdbError> {
        debug_assert!(self.pos == self.end);
        self.flush_pending();
        self.base += self.end as u64;
        self.pos = 0;
        self.end = 0;
        self.crc_from = 0;
        if self.cap_from.is_some() {
            self.cap_from = Some(0);
        }
        loop {
            match self.inner.read(&mut self.buf) {
                Ok(n) => {
                    self.end = n;
                    return Ok(n > 0);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(RdbError::Io(e)),
            }
        }
    }

    fn eof(&self) -> RdbError {
        RdbError::UnexpectedEof {
            offset: self.offset(),
        }
    }

    /// The CRC of everything consumed so far.
    pub(crate) fn crc(&mut self) -> u64 {
        self.flush_pending();
        self.crc.value()
    }

    /// Stop checksumming (before reading the trailer).
    pub(crate) fn stop_crc(&mut self) {
        self.flush_pending();
        self.crc_on = false;
    }

    pub(crate) fn start_capture(&mut self) {
        self.cap.clear();
        self.cap_from = Some(self.pos);
    }

    pub(crate) fn take_capture(&mut self) -> Vec<u8> {
        self.flush_pending();
        self.cap_from = None;
        std::mem::take(&mut self.cap)
    }

    /// True when no byte is left (used to detect trailing data).
    pub(crate) fn at_eof(&mut self) -> Result<bool, RdbError> {
        if self.pos < self.end {
            return Ok(false);
        }
        Ok(!self.fill()?)
    }

    #[inline]
    pub(crate) fn u8(&mut self) -> Result<u8, RdbError> {
        if self.pos == self.end && !self.fill()? {
            return Err(self.eof());
        }
        let b = self.buf[self.pos];
        self.pos += 1;
        Ok(b)
    }

    #[inline]
    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], RdbError> {
        let mut a = [0u8; N];
        if self.end - self.pos >= N {
            a.copy_from_slice(&self.buf[self.pos..self.pos + N]);
            self.pos += N;
        } else {
            for slot in a.iter_mut() {
                *slot = self.u8()?;
            }
        }
        Ok(a)
    }

    /// Consume `n` bytes without keeping them (they still feed CRC and
    /// capture).
    pub(crate) fn skip(&mut self, mut n: u64) -> Result<(), RdbError> {
        loop {
            let avail = (self.end - self.pos) as u64;
            if n <= avail {
                self.pos += n as usize;
                return Ok(());
            }
            n -= avail;
            self.pos = self.end;
            if !self.fill()? {
                return Err(self.eof());
            }
        }
    }

    /// Consume `n` bytes, appending them to `out`. The vector grows only as
    /// bytes actually arrive, so a lying length cannot force a huge
    /// allocation.
    pub(crate) fn read_into(&mut self, mut n: u64, out: &mut Vec<u8>) -> Result<(), RdbError> {
        loop {
            let avail = (self.end - self.pos) as u64;
            let k = n.min(avail) as usize;
            out.extend_from_slice(&self.buf[self.pos..self.pos + k]);
            self.pos += k;
            n -= k as u64;
            if n == 0 {
                return Ok(());
            }
            if !self.fill()? {
                return Err(self.eof());
            }
        }
    }

    #[inline]
    pub(crate) fn len_raw(&mut self) -> Result<Len, RdbError> {
        let b = self.u8()?;
        Ok(match decode_len_first(b) {
            LenShape::Done(l) => l,
            LenShape::Need14(hi) => Len::Plain(((hi as u64) << 8) | self.u8()? as u64),
            LenShape::Need32 => Len::Plain(u32::from_be_bytes(self.array()?) as u64),
            LenShape::Need64 => Len::Plain(u64::from_be_bytes(self.array()?)),
            LenShape::Bad => {
                return Err(RdbError::corrupt(format!("unknown length encoding {b:#x}"))
                    .with_offset(self.offset()))
            }
        })
    }

    #[inline]
    pub(crate) fn len(&mut self) -> Result<u64, RdbError> {
        match self.len_raw()? {
            Len::Plain(n) => Ok(n),
            Len::Encoded(e) => Err(RdbError::corrupt(format!(
                "string encoding {e} where a length was expected"
            ))
            .with_offset(self.offset())),
        }
    }

    /// Refuses a declared length above `limit` before anything is read.
    #[inline]
    fn bounded(&self, n: u64, limit: u64, what: &'static str) -> Result<u64, RdbError> {
        if n > limit {
            return Err(RdbError::TooLarge {
                what,
                len: n,
                limit,
                offset: self.offset(),
            });
        }
        Ok(n)
    }

    /// Skip one RDB string of any encoding.
    #[inline]
    pub(crate) fn skip_string(&mut self) -> Result<(), RdbError> {
        let max = self.max_string;
        match self.len_raw()? {
            Len::Plain(n) => {
                self.expanded = self.expanded.saturating_add(n);
                let n = self.bounded(n, max, "string")?;
                self.skip(n)
            }
            Len::Encoded(ENC_INT8) => self.skip(1),
            Len::Encoded(ENC_INT16) => self.skip(2),
            Len::Encoded(ENC_INT32) => self.skip(4),
            Len::Encoded(ENC_LZF) => {
                let clen = self.len()?;
                let ulen = self.len()?;
                self.expanded = self.expanded.saturating_add(ulen);
                self.bounded(ulen, max, "compressed string")?;
                let clen = self.bounded(clen, max, "compressed string")?;
                self.skip(clen)
            }
            Len::Encoded(e) => Err(RdbError::corrupt(format!("unknown string encoding {e}"))
                .with_offset(self.offset())),
        }
    }

    /// Read one RDB string of any encoding into memory (keys, aux fields,
    /// function code). Integer and LZF forms are expanded.
    pub(crate) fn string(&mut self) -> Result<Vec<u8>, RdbError> {
        self.string_within(self.max_string, "string")
    }

    /// [`Self::string`] with a bound of its own (aux fields).
    pub(crate) fn string_within(
        &mut self,
        max: u64,
        what: &'static str,
    ) -> Result<Vec<u8>, RdbError> {
        match self.len_raw()? {
            Len::Plain(n) => {
                self.expanded = self.expanded.saturating_add(n);
                let n = self.bounded(n, max, what)?;
                let mut v = Vec::new();
                self.read_into(n, &mut v)?;
                Ok(v)
            }
            Len::Encoded(ENC_INT8) => Ok(crate::bytes::int_to_bytes(self.u8()? as i8 as i64)),
            Len::Encoded(ENC_INT16) => Ok(crate::bytes::int_to_bytes(i16::from_le_bytes(
                self.array()?,
            ) as i64)),
            Len::Encoded(ENC_INT32) => Ok(crate::bytes::int_to_bytes(i32::from_le_bytes(
                self.array()?,
            ) as i64)),
            Len::Encoded(ENC_LZF) => {
                let clen = self.len()?;
                let ulen = self.len()?;
                self.expanded = self.expanded.saturating_add(ulen);
                let clen = self.bounded(clen, max, what)?;
                let ulen = self.bounded(ulen, max, what)?;
                let mut comp = Vec::new();
                self.read_into(clen, &mut comp)?;
                let ulen =
                    usize::try_from(ulen).map_err(|_| RdbError::corrupt("LZF length too large"))?;
                crate::lzf::decompress(&comp, ulen).map_err(|e| e.with_offset(self.offset()))
            }
            Len::Encoded(e) => Err(RdbError::corrupt(format!("unknown string encoding {e}"))
                .with_offset(self.offset())),
        }
    }
}
