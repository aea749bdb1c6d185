//! dcs-backup: backup and restore of Redis and Valkey behind the Huawei
//! Cloud DCS backup/restore API. See ARCHITECTURE.md for the map.

pub mod api;
pub mod catalog;
pub mod cli;
pub mod clock;
pub mod config;
pub mod dev;
pub mod glob;
pub mod jobs;
pub mod metrics;
pub mod model;
pub mod pitr;
pub mod redis;
pub mod secrets;
pub mod server;
pub mod signing;
pub mod storage;
