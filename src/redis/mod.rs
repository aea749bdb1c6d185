//! Talking to Redis: RESP frames, authenticated connections and topology
//! discovery. Later: the replication snapshotter and RESTORE pipelining.

pub mod client;
pub mod cluster;
pub mod feed;
pub mod pipeline;
pub mod replication;
pub mod resp;
pub mod topology;

pub use client::{Conn, ConnectOptions, Info, RedisError, TlsSettings};
pub use resp::Reply;
pub use topology::discover;
