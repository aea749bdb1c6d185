//! The security suite: hostile peers and clients against the real service
//! (issue "Safe to expose"). Each module is one surface.

mod common;

#[path = "security/feed.rs"]
mod feed;

#[path = "security/api.rs"]
mod api;

#[path = "security/secrets.rs"]
mod secrets;

#[path = "security/peers.rs"]
mod peers;
