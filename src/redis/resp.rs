//! RESP2 frames: encoding commands and parsing replies from a buffer.
//!
//! Follows the protocol spec and `networking.c` (`processMultibulkBuffer`,
//! `addReply*`). Parsing is a pure function over a byte slice so it can be
//! tested and fuzzed without sockets: it returns `Ok(None)` until a whole
//! frame is buffered.

use std::fmt;

/// A reply from Redis.
#[derive(Clone, PartialEq, Eq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Simple(s) => write!(f, "+{s}"),
            Self::Error(s) => write!(f, "-{s}"),
            Self::Int(i) => write!(f, ":{i}"),
            Self::Bulk(None) => write!(f, "$nil"),
            Self::Bulk(Some(b)) if b.len() > 64 => write!(f, "${} bytes", b.len()),
            Self::Bulk(Some(b)) => write!(f, "{:?}", String::from_utf8_lossy(b)),
            Self::Array(None) => write!(f, "*nil"),
            Self::Array(Some(a)) => f.debug_list().entries(a).finish(),
        }
    }
}

impl Reply {
    /// The value of a one-parameter `CONFIG GET` reply (`[name, value]`);
    /// `None` for an error, an unknown parameter or another shape.
    pub fn config_value(&self) -> Option<String> {
        match self {
            Self::Array(Some(items)) => items.get(1).and_then(Reply::as_text),
            _ => None,
        }
    }

    /// The reply as text, for simple strings and bulk strings.
    pub fn as_text(&self) -> Option<String> {
        match self {
            Self::Simple(s) => Some(s.clone()),
            Self::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }
}

/// A frame that can never be valid.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("protocol error: {0}")]
pub struct ProtocolError(pub String);

/// Longest simple line accepted (status, error, integer, length header).
const MAX_LINE: usize = 64 * 1024;
const MAX_DEPTH: usize = 16;

/// How large one reply may be. A peer is untrusted: a length it declares
/// is checked against these before anything waits for (or buffers) the
/// bytes, and a connection buffers at most `max_total` bytes for one reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest bulk string.
    pub max_bulk: i64,
    /// Most elements of one array.
    pub max_array: i64,
    /// Most bytes buffered while one reply is incomplete.
    pub max_total: usize,
}

impl Limits {
    /// Control replies (INFO, CLUSTER NODES, ROLE, CONFIG GET, AUTH, …):
    /// a few MiB is far more than any real server answers, and bounds what
    /// a hostile one can make the service hold per connection.
    pub const CONTROL: Limits = Limits {
        max_bulk: 4 * 1024 * 1024,
        max_array: 256 * 1024,
        max_total: 4 * 1024 * 1024 + 64 * 1024,
    };
    /// Bulk data paths (RESTORE pipelines): Redis's own proto-max-bulk-len
    /// default is 512 MB.
    pub const BULK: Limits = Limits {
        max_bulk: 512 * 1024 * 1024,
        max_array: 64 * 1024 * 1024,
        max_total: usize::MAX,
    };
}

/// Appends `args` as a RESP multi-bulk command.
pub fn encode_command<A: AsRef<[u8]>>(out: &mut Vec<u8>, args: &[A]) {
    out.push(b'*');
    out.extend_from_slice(itoa(args.len() as i64).as_bytes());
    out.extend_from_slice(b"\r\n");
    for a in args {
        let a = a.as_ref();
        out.push(b'$');
        out.extend_from_slice(itoa(a.len() as i64).as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

fn itoa(n: i64) -> String {
    n.to_string()
}

/// Finds the end of the line starting at `pos`; returns the line without
/// CRLF and the position after it.
fn line(buf: &[u8], pos: usize) -> Result<Option<(&[u8], usize)>, ProtocolError> {
    let rest = &buf[pos..];
    match rest.windows(2).position(|w| w == b"\r\n") {
        Some(i) => Ok(Some((&rest[..i], pos + i + 2))),
        None if rest.len() > MAX_LINE => Err(ProtocolError("line too long".into())),
        None => Ok(None),
    }
}

fn int(s: &[u8]) -> Result<i64, ProtocolError> {
    std::str::from_utf8(s)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ProtocolError(format!("bad integer {:?}", String::from_utf8_lossy(s))))
}

/// Parses one reply at the start of `buf`. Returns the reply and the number
/// of bytes it used, or `None` if more bytes are needed.
/// Uses the bulk-data [`Limits::BULK`].
pub fn parse_reply(buf: &[u8]) -> Result<Option<(Reply, usize)>, ProtocolError> {
    parse_at(buf, 0, 0, &Limits::BULK)
}

/// [`parse_reply`] under `limits`.
pub fn parse_reply_within(
    buf: &[u8],
    limits: &Limits,
) -> Result<Option<(Reply, usize)>, ProtocolError> {
    parse_at(buf, 0, 0, limits)
}

fn parse_at(
    buf: &[u8],
    pos: usize,
    depth: usize,
    limits: &Limits,
) -> Result<Option<(Reply, usize)>, ProtocolError> {
    if depth > MAX_DEPTH {
        return Err(ProtocolError("nesting too deep".into()));
    }
    let Some(&tag) = buf.get(pos) else {
        return Ok(None);
    };
    let Some((body, next)) = line(buf, pos + 1)? else {
        return Ok(None);
    };
    let text = || String::from_utf8_lossy(body).into_owned();
    match tag {
        b'+' => Ok(Some((Reply::Simple(text()), next))),
        b'-' => Ok(Some((Reply::Error(text()), next))),
        b':' => Ok(Some((Reply::Int(int(body)?), next))),
        b'$' => {
            let len = int(body)?;
            if len < 0 {
                return Ok(Some((Reply::Bulk(None), next)));
            }
            if len > limits.max_bulk {
                return Err(ProtocolError(format!(
                    "reply declares a bulk string of {len} bytes (limit {})",
                    limits.max_bulk
                )));
            }
            let len = len as usize;
            if buf.len() < next + len + 2 {
                return Ok(None);
            }
            if &buf[next + len..next + len + 2] != b"\r\n" {
                return Err(ProtocolError("bulk not terminated by CRLF".into()));
            }
            Ok(Some((
                Reply::Bulk(Some(buf[next..next + len].to_vec())),
                next + len + 2,
            )))
        }
        b'*' => {
            let n = int(body)?;
            if n < 0 {
                return Ok(Some((Reply::Array(None), next)));
            }
            if n > limits.max_array {
                return Err(ProtocolError(format!(
                    "reply declares an array of {n} items (limit {})",
                    limits.max_array
                )));
            }
            // Each element takes at least 3 bytes; do not trust `n` for
            // capacity beyond what the buffer could hold.
            let mut items = Vec::with_capacity((n as usize).min((buf.len() - next) / 3 + 1));
            let mut at = next;
            for _ in 0..n {
                match parse_at(buf, at, depth + 1, limits)? {
                    Some((r, end)) => {
                        items.push(r);
                        at = end;
                    }
                    None => return Ok(None),
                }
            }
            Ok(Some((Reply::Array(Some(items)), at)))
        }
        other => Err(ProtocolError(format!("unexpected byte {other:#04x}"))),
    }
}

/// One command of a stream of commands (an AOF file): its name in upper
/// case, its arguments, and its bytes exactly as they were.
pub struct Command {
    pub name: String,
    pub args: Vec<Reply>,
    pub raw: bytes::BytesMut,
}

/// Why a command stream could not be read.
#[derive(Debug)]
pub enum CommandError {
    /// Reading the input failed.
    Read(std::io::Error),
    /// The input is not a sequence of complete RESP commands.
    Bad(String),
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read(e) => write!(f, "{e}"),
            Self::Bad(why) => f.write_str(why),
        }
    }
}

/// Reads commands one by one from a stream of RESP arrays, buffering at
/// most one read chunk beyond the command being parsed.
pub struct CommandReader<R> {
    input: R,
    buf: bytes::BytesMut,
    chunk: Vec<u8>,
}

impl<R: std::io::Read> CommandReader<R> {
    pub fn new(input: R) -> Self {
        Self {
            input,
            buf: bytes::BytesMut::with_capacity(1 << 20),
            chunk: vec![0u8; 256 * 1024],
        }
    }

    /// The next command; `None` at the end of a stream that ended cleanly.
    pub fn next_command(&mut self) -> Result<Option<Command>, CommandError> {
        loop {
            match parse_reply(&self.buf).map_err(|e| CommandError::Bad(e.to_string()))? {
                Some((Reply::Array(Some(args)), used)) => {
                    let raw = self.buf.split_to(used);
                    let name = args
                        .first()
                        .and_then(Reply::as_text)
                        .unwrap_or_default()
                        .to_ascii_uppercase();
                    return Ok(Some(Command { name, args, raw }));
                }
                Some((other, _)) => {
                    return Err(CommandError::Bad(format!("not a command: {other:?}")))
                }
                None => {}
            }
            let n = self
                .input
                .read(&mut self.chunk)
                .map_err(CommandError::Read)?;
            if n == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(CommandError::Bad("truncated command at the end".into()))
                };
            }
            self.buf.extend_from_slice(&self.chunk[..n]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_commands() {
        let mut out = Vec::new();
        encode_command(&mut out, &["SET", "k", ""]);
        assert_eq!(out, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n");
    }

    #[test]
    fn parses_every_kind_and_waits_for_more() {
        let buf = b"*4\r\n+OK\r\n:-3\r\n$3\r\na\r\n\r\n$-1\r\n-ERR x\r\n";
        let (r, used) = parse_reply(buf).unwrap().unwrap();
        assert_eq!(
            r,
            Reply::Array(Some(vec![
                Reply::Simple("OK".into()),
                Reply::Int(-3),
                Reply::Bulk(Some(b"a\r\n".to_vec())),
                Reply::Bulk(None),
            ]))
        );
        let (e, _) = parse_reply(&buf[used..]).unwrap().unwrap();
        assert_eq!(e, Reply::Error("ERR x".into()));
        for cut in 0..used {
            assert_eq!(parse_reply(&buf[..cut]).unwrap(), None, "prefix {cut}");
        }
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse_reply(b"?\r\n").is_err());
        assert!(parse_reply(b"$3\r\nabcXY").is_err());
        assert!(parse_reply(b":x\r\n").is_err());
    }

    #[test]
    fn control_limits_refuse_declared_sizes_before_the_bytes() {
        let big = format!("${}\r\n", 300_000_000);
        assert!(
            parse_reply(big.as_bytes()).unwrap().is_none(),
            "bulk path waits"
        );
        let e = parse_reply_within(big.as_bytes(), &Limits::CONTROL).unwrap_err();
        assert!(e.0.contains("300000000"), "{e}");
        assert!(parse_reply_within(b"*1000000\r\n", &Limits::CONTROL).is_err());
    }

    #[test]
    fn a_command_stream_is_read_command_by_command() {
        let aof = b"*2\r\n$6\r\nselect\r\n$1\r\n0\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n";
        // Read a byte at a time: commands split across reads still come whole.
        struct Trickle<'a>(&'a [u8]);
        impl std::io::Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let n = self.0.len().min(1).min(buf.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let mut r = CommandReader::new(Trickle(aof));
        let first = r.next_command().unwrap().unwrap();
        assert_eq!(first.name, "SELECT");
        assert_eq!(&first.raw[..], &aof[..23]);
        let second = r.next_command().unwrap().unwrap();
        assert_eq!((second.name.as_str(), second.args.len()), ("SET", 3));
        assert!(r.next_command().unwrap().is_none());

        let mut cut = CommandReader::new(&aof[..30]);
        cut.next_command().unwrap();
        assert!(matches!(cut.next_command(), Err(CommandError::Bad(_))));
        let mut not_commands = CommandReader::new(&b"+OK\r\n"[..]);
        assert!(matches!(
            not_commands.next_command(),
            Err(CommandError::Bad(_))
        ));
    }
}
