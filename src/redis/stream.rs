//! Finding the commands in a master's replication stream without holding
//! them: a push scanner over the bytes as they arrive.
//!
//! A master propagates every write as a RESP array of bulk strings
//! (`replication.c`, `feedReplicationBuffer`; `networking.c`,
//! `processMultibulkBuffer` is the reader this mirrors). The scanner keeps
//! only a header line (≤ [`MAX_LINE`] bytes), the command's name and its
//! first argument (≤ [`KEPT`] bytes each), so a value of any size costs no
//! memory: its bytes only count down. A byte that is not where RESP puts
//! it is an error (the master is untrusted); so is a declared length
//! beyond [`MAX_BULK`] or an element count beyond [`MAX_ELEMENTS`].

use super::resp::ProtocolError;

/// Longest `*<n>` / `$<n>` line.
pub const MAX_LINE: usize = 32;
/// Bytes kept of a command's name and first argument (enough for every
/// command name and for a `SELECT` or `REPLCONF` argument).
pub const KEPT: usize = 24;
/// Largest bulk string accepted (Redis's `proto-max-bulk-len` maximum is
/// far above its 512 MB default; 4 GiB is past any sane setting).
pub const MAX_BULK: u64 = 4 << 30;
/// Most elements in one command.
pub const MAX_ELEMENTS: u64 = 1 << 31;

/// One complete command of the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    /// Stream offsets of its first byte and one past its last.
    pub start: u64,
    pub end: u64,
    /// Its name, upper-cased (at most [`KEPT`] bytes).
    pub name: Vec<u8>,
    /// Its first argument (at most [`KEPT`] bytes).
    pub arg1: Vec<u8>,
    pub args: u64,
}

impl Command {
    pub fn is(&self, name: &str) -> bool {
        self.name == name.as_bytes()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Expecting `*<n>\r\n` (bare `\n` keepalives are skipped).
    Array,
    /// Expecting `$<n>\r\n`.
    Bulk,
    /// Inside a bulk string's bytes and its `\r\n`.
    Body,
}

/// The scanner: feed it bytes in order, it reports each command whole.
#[derive(Debug)]
pub struct Scanner {
    state: State,
    line: Vec<u8>,
    /// Offset of the next byte fed.
    pos: u64,
    start: u64,
    args: u64,
    left_args: u64,
    /// Bytes of the current bulk still to come, its `\r\n` included.
    left_bytes: u64,
    arg_index: u64,
    name: Vec<u8>,
    arg1: Vec<u8>,
}

impl Scanner {
    /// A scanner whose first byte is at stream offset `pos`.
    pub fn new(pos: u64) -> Self {
        Self {
            state: State::Array,
            line: Vec::with_capacity(MAX_LINE),
            pos,
            start: pos,
            args: 0,
            left_args: 0,
            left_bytes: 0,
            arg_index: 0,
            name: Vec::with_capacity(KEPT),
            arg1: Vec::with_capacity(KEPT),
        }
    }

    /// Offset of the next byte.
    pub fn pos(&self) -> u64 {
        self.pos
    }

    /// Whether the scanner stands between two commands.
    pub fn at_boundary(&self) -> bool {
        self.state == State::Array && self.line.is_empty()
    }

    /// Scans `data`, calling `each` for every command it completes (lent:
    /// the scanner reuses its buffers for the next).
    pub fn feed(
        &mut self,
        mut data: &[u8],
        mut each: impl FnMut(&Command),
    ) -> Result<(), ProtocolError> {
        while !data.is_empty() {
            match self.state {
                State::Array | State::Bulk => {
                    if self.state == State::Array && self.line.is_empty() && data[0] == b'\n' {
                        // A keepalive newline between commands.
                        data = &data[1..];
                        self.pos += 1;
                        self.start = self.pos;
                        continue;
                    }
                    let (take, done) = match data.iter().position(|&b| b == b'\n') {
                        Some(i) => (i + 1, true),
                        None => (data.len(), false),
                    };
                    if self.line.len() + take > MAX_LINE {
                        return Err(bad("header line too long"));
                    }
                    self.line.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    self.pos += take as u64;
                    if done {
                        self.header()?;
                        if self.state == State::Array && self.left_args == 0 && self.args == 0 {
                            // `*0`: nothing to run.
                            self.start = self.pos;
                        }
                    }
                }
                State::Body => {
                    let take = (data.len() as u64).min(self.left_bytes) as usize;
                    let piece = &data[..take];
                    // The last two bytes of a bulk are its `\r\n`.
                    let content = self.left_bytes.saturating_sub(2).min(take as u64) as usize;
                    let keep = match self.arg_index {
                        0 => Some(&mut self.name),
                        1 => Some(&mut self.arg1),
                        _ => None,
                    };
                    if let Some(k) = keep {
                        let room = KEPT.saturating_sub(k.len());
                        k.extend_from_slice(&piece[..content.min(room)]);
                    }
                    for (i, &b) in piece.iter().enumerate().skip(content) {
                        let want = if self.left_bytes - i as u64 == 2 {
                            b'\r'
                        } else {
                            b'\n'
                        };
                        if b != want {
                            return Err(bad("bulk string not followed by CRLF"));
                        }
                    }
                    self.left_bytes -= take as u64;
                    self.pos += take as u64;
                    data = &data[take..];
                    if self.left_bytes == 0 {
                        self.arg_index += 1;
                        self.left_args -= 1;
                        if self.left_args == 0 {
                            self.name.make_ascii_uppercase();
                            // Lent to `each`, then taken back: no
                            // allocation per command.
                            let c = Command {
                                start: self.start,
                                end: self.pos,
                                name: std::mem::take(&mut self.name),
                                arg1: std::mem::take(&mut self.arg1),
                                args: self.args,
                            };
                            each(&c);
                            self.name = c.name;
                            self.arg1 = c.arg1;
                            self.state = State::Array;
                            self.start = self.pos;
                        } else {
                            self.state = State::Bulk;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn header(&mut self) -> Result<(), ProtocolError> {
        let line = std::mem::take(&mut self.line);
        let text = line
            .strip_suffix(b"\r\n")
            .ok_or_else(|| bad("header line without CRLF"))?;
        let (kind, num) = text.split_first().ok_or_else(|| bad("empty header"))?;
        let n: u64 = std::str::from_utf8(num)
            .ok()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("bad length in header"))?;
        match (self.state, kind) {
            (State::Array, b'*') => {
                if n > MAX_ELEMENTS {
                    return Err(bad("too many elements"));
                }
                self.args = n;
                self.left_args = n;
                self.arg_index = 0;
                self.name.clear();
                self.arg1.clear();
                if n > 0 {
                    self.state = State::Bulk;
                }
            }
            (State::Bulk, b'$') => {
                if n > MAX_BULK {
                    return Err(bad("bulk string too long"));
                }
                self.left_bytes = n + 2;
                self.state = State::Body;
            }
            _ => return Err(bad("unexpected byte where a header belongs")),
        }
        self.line = line;
        self.line.clear();
        Ok(())
    }
}

fn bad(why: &str) -> ProtocolError {
    ProtocolError(format!("replication stream: {why}"))
}

/// The database a `SELECT` argument names, if it is one.
pub fn select_db(arg: &[u8]) -> Option<i64> {
    std::str::from_utf8(arg)
        .ok()
        .filter(|s| !s.is_empty() && s.len() <= 10 && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis::resp::encode_command;

    fn scan_all(data: &[u8], step: usize) -> Vec<Command> {
        let mut s = Scanner::new(100);
        let mut out = Vec::new();
        for piece in data.chunks(step) {
            s.feed(piece, |c| out.push(c.clone())).unwrap();
        }
        assert!(s.at_boundary());
        out
    }

    #[test]
    fn commands_are_found_whatever_the_chunking() {
        let mut data = Vec::new();
        encode_command(&mut data, &["select", "3"]);
        data.push(b'\n');
        encode_command(&mut data, &["SET", "k", "a value\r\nwith CRLF"]);
        encode_command(&mut data, &["PING"]);
        let big = vec![b'x'; 70_000];
        encode_command(&mut data, &[b"SET".as_slice(), b"big", &big]);
        for step in [1, 2, 3, 7, 64, 4096, data.len()] {
            let cmds = scan_all(&data, step);
            assert_eq!(cmds.len(), 4, "step {step}");
            assert_eq!(cmds[0].name, b"SELECT");
            assert_eq!(select_db(&cmds[0].arg1), Some(3));
            assert_eq!(cmds[0].start, 100);
            assert_eq!(cmds[1].start, cmds[0].end + 1);
            assert_eq!(cmds[1].arg1, b"k");
            assert_eq!(cmds[2].name, b"PING");
            assert_eq!(cmds[3].arg1, b"big");
            assert_eq!(cmds[3].end, 100 + data.len() as u64);
        }
    }

    #[test]
    fn malformed_streams_are_refused() {
        for bad in [
            &b"+OK\r\n"[..],
            b"*1\r\n:5\r\n",
            b"*1\r\n$3\r\nSETxx",
            b"*99999999999999999999\r\n",
            b"*1\r\n$5000000000\r\n",
            b"*1\r\n$-1\r\n",
            b"*111111111111111111111111111111111111",
        ] {
            let mut s = Scanner::new(0);
            assert!(s.feed(bad, |_| {}).is_err(), "{bad:?}");
        }
    }
}
