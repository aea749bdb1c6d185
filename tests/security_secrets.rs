//! Local shim so the secrets security tests build and run on their own;
//! the lead folds them into `tests/security.rs`.
mod common;
#[path = "security/secrets.rs"]
mod part;
