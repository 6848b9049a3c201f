//! The `hearth` daemon and CLI. The request path (api → auth → quota → sched → engine) grows here; today it holds
//! the model store and the command-line front ends of the engine.

pub mod models;
pub mod paths;
