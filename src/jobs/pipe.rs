//! Bridges between async byte streams and the blocking RDB code: chunks go
//! through bounded channels, so a slow side slows the other down instead of
//! letting memory grow.

use std::io::{self, Read, Write};

use bytes::{Buf, Bytes, BytesMut};
use tokio::sync::mpsc;

/// Chunks in flight per channel: with 256 KiB chunks, at most a few MiB.
pub const DEPTH: usize = 16;

/// A `Read` over chunks sent from async code. Ends when the sender is gone.
pub struct ChannelReader {
    rx: mpsc::Receiver<Bytes>,
    cur: Bytes,
}

impl ChannelReader {
    pub fn new(rx: mpsc::Receiver<Bytes>) -> Self {
        Self {
            rx,
            cur: Bytes::new(),
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.cur.is_empty() {
            // Not `blocking_recv`: that refuses to run on a thread that
            // drives a runtime of its own, as the restore's slicer does.
            match futures::executor::block_on(self.rx.recv()) {
                Some(b) => self.cur = b,
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.cur.len());
        out[..n].copy_from_slice(&self.cur[..n]);
        self.cur.advance(n);
        Ok(n)
    }
}

/// A `Write` that hands ~`chunk`-sized pieces to async code.
pub struct ChannelWriter {
    tx: mpsc::Sender<Bytes>,
    buf: BytesMut,
    chunk: usize,
}

impl ChannelWriter {
    pub fn new(tx: mpsc::Sender<Bytes>, chunk: usize) -> Self {
        Self {
            tx,
            buf: BytesMut::with_capacity(chunk),
            chunk,
        }
    }

    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let piece = self.buf.split().freeze();
        self.tx
            .blocking_send(piece)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "receiver gone"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= self.chunk {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}
