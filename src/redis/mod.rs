//! Talking to Redis, as a client and as a replica or master: RESP frames
//! (`resp`), connections that check the target policy and log in
//! (`client`, `targets`), topology discovery and server facts
//! (`topology`), snapshots taken as a replica (`replication`), the
//! replication listener restores feed targets from (`feed`), pipelined
//! writers with `MOVED`/`ASK` resending (`pipeline`) and cluster slots
//! (`cluster`). Nothing here knows the catalog or what a job is.

pub mod client;
pub mod cluster;
pub mod feed;
pub mod pipeline;
pub mod replication;
pub mod resp;
pub mod stream;
pub mod targets;
pub mod topology;

pub use client::{Conn, ConnectOptions, Info, RedisError, TlsSettings};
pub use resp::Reply;
pub use targets::{Cidr, TargetPolicy};
pub use topology::discover;

/// Longest piece of peer text kept in a log line or a job's failure detail.
pub const PEER_TEXT_MAX: usize = 200;

/// Text a peer sent, made safe to log or store: at most
/// [`PEER_TEXT_MAX`] characters, control characters escaped, and `…`
/// when cut. API responses never carry peer text at all.
pub fn peer_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(PEER_TEXT_MAX + 8));
    for (n, c) in s.chars().enumerate() {
        if n >= PEER_TEXT_MAX {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn peer_text_is_bounded_and_escaped() {
        let long = "x".repeat(10_000);
        assert!(super::peer_text(&long).chars().count() <= super::PEER_TEXT_MAX + 1);
        assert_eq!(super::peer_text("a\r\nb\u{1b}"), "a\\r\\nb\\u{1b}");
    }
}
