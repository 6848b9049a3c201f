//! The `hearth` daemon and CLI. A request flows api → auth → (quota) → sched → engine, with `store` keeping
//! users, keys and the request ledger; `config` says how it all is set up. See docs/ARCHITECTURE.md.

pub mod api;
pub mod auth;
pub mod batch_api;
pub mod cluster;
pub mod config;
pub mod doctor;
pub mod housekeeping;
pub mod inference;
pub mod ledger;
pub mod limits;
pub mod metrics;
pub mod models;
pub mod paths;
pub mod pull;
pub mod quota;
pub mod report;
pub mod sched;
pub mod sd_notify;
pub mod server;
pub mod store;
