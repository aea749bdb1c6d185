//! Point-in-time recovery: capture of every master's replication stream
//! into checksummed log segments (`capture`, `segment`), the restorable
//! periods they and the bases make (`periods`), retention (`retention`)
//! and the replay a restore to an instant ends with (`replay`).
//!
//! Sits beside `jobs`: it uses the catalog, the store, the replication
//! client and the backup's snapshot writer, and knows no DCS field name.

pub mod capture;
pub mod periods;
pub mod replay;
pub mod retention;
pub mod segment;
