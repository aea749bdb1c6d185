//! The one error type of this crate.

use std::fmt;
use std::io;

/// Everything that can go wrong reading, decoding or converting an RDB.
///
/// Hostile or truncated input always ends in one of these, never in a panic.
#[derive(Debug)]
pub enum RdbError {
    /// The underlying reader or writer failed.
    Io(io::Error),
    /// The input ended before the structure did (a truncated file).
    UnexpectedEof {
        /// Bytes consumed from the input when it ran out.
        offset: u64,
    },
    /// The first 9 bytes are not `REDIS` + 4 digits or `VALKEY` + 3 digits.
    BadMagic([u8; 9]),
    /// A version this crate does not understand.
    UnsupportedVersion(u32),
    /// The structure is inconsistent.
    Corrupt {
        /// What was wrong.
        what: String,
        /// File offset near the problem, when known.
        offset: Option<u64>,
    },
    /// A type byte or opcode that no supported Redis/Valkey writes.
    UnknownType {
        /// The byte.
        type_byte: u8,
        /// Its file offset, when known.
        offset: Option<u64>,
    },
    /// The CRC-64 trailer does not match the content.
    ChecksumMismatch {
        /// The value stored in the file.
        expected: u64,
        /// The value computed over the content.
        computed: u64,
    },
    /// A module value or module aux data, which only the module can decode.
    /// The reader stays usable after this error (the value was consumed).
    Module {
        /// The 9-character module type name decoded from the module id.
        name: String,
    },
    /// A feature that is recognised but deliberately not supported.
    Unsupported(String),
    /// A string declares a length above the reader's bound
    /// ([`crate::RdbReader::max_string`]; aux fields: [`crate::MAX_AUX`]).
    /// Refused before any of it is read or allocated.
    TooLarge {
        /// What kind of string.
        what: &'static str,
        /// The declared length.
        len: u64,
        /// The bound.
        limit: u64,
        /// Offset just after the length.
        offset: u64,
    },
    /// Bytes follow the checksum trailer.
    TrailingData {
        /// Offset of the first byte after the trailer.
        offset: u64,
    },
}

impl RdbError {
    pub(crate) fn corrupt(what: impl Into<String>) -> Self {
        RdbError::Corrupt {
            what: what.into(),
            offset: None,
        }
    }

    pub(crate) fn with_offset(self, off: u64) -> Self {
        match self {
            RdbError::Corrupt { what, offset: None } => RdbError::Corrupt {
                what,
                offset: Some(off),
            },
            RdbError::UnknownType {
                type_byte,
                offset: None,
            } => RdbError::UnknownType {
                type_byte,
                offset: Some(off),
            },
            other => other,
        }
    }
}

impl fmt::Display for RdbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RdbError::Io(e) => write!(f, "I/O error: {e}"),
            RdbError::UnexpectedEof { offset } => {
                write!(f, "unexpected end of RDB data at offset {offset}")
            }
            RdbError::BadMagic(m) => write!(
                f,
                "not an RDB file (magic {:?})",
                String::from_utf8_lossy(m)
            ),
            RdbError::UnsupportedVersion(v) => write!(f, "unsupported RDB version {v}"),
            RdbError::Corrupt {
                what,
                offset: Some(o),
            } => write!(f, "corrupt RDB near offset {o}: {what}"),
            RdbError::Corrupt { what, offset: None } => write!(f, "corrupt RDB: {what}"),
            RdbError::UnknownType {
                type_byte,
                offset: Some(o),
            } => {
                write!(f, "unknown RDB type or opcode {type_byte} at offset {o}")
            }
            RdbError::UnknownType {
                type_byte,
                offset: None,
            } => write!(f, "unknown RDB type or opcode {type_byte}"),
            RdbError::ChecksumMismatch { expected, computed } => {
                write!(
                    f,
                    "RDB checksum mismatch: trailer {expected:016x}, content {computed:016x}"
                )
            }
            RdbError::Module { name } => write!(
                f,
                "RDB holds data of module type '{name}', which only that module can decode"
            ),
            RdbError::Unsupported(what) => write!(f, "unsupported: {what}"),
            RdbError::TooLarge {
                what,
                len,
                limit,
                offset,
            } => write!(
                f,
                "RDB declares a {what} of {len} bytes at offset {offset}, above the limit of {limit} bytes"
            ),
            RdbError::TrailingData { offset } => write!(
                f,
                "unexpected data after the RDB trailer at offset {offset}"
            ),
        }
    }
}

impl std::error::Error for RdbError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RdbError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for RdbError {
    fn from(e: io::Error) -> Self {
        RdbError::Io(e)
    }
}
