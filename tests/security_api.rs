//! Local entry for the API's security tests until `tests/security.rs`
//! gathers every part.
mod common;
#[path = "security/api.rs"]
mod part;
