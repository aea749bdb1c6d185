//! Local shim: runs `tests/security/peers.rs` alone until the lead folds it
//! into `tests/security.rs`.

mod common;
#[path = "security/peers.rs"]
mod part;
