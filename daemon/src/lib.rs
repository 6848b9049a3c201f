//! The `hearth` daemon and CLI. A request flows api → auth → (quota) → sched → engine, with `store` keeping
//! users, keys and the request ledger; `config` says how it all is set up. See docs/ARCHITECTURE.md.

pub mod api;
pub mod auth;
pub mod batches;
pub mod config;
pub mod doctor;
pub mod ledger;
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
