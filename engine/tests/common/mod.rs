//! Shared helpers for the engine's integration tests: the demo models (from scripts/fetch-models' cache) and the
//! llama.cpp reference fixtures in tests/golden/.

#![allow(dead_code)]

use std::path::PathBuf;

pub fn models_dir() -> PathBuf {
    std::env::var_os("HEARTH_MODELS_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/hearth/models")
        })
}

/// A demo model's path; panics with the command to run when it is missing (tests never skip silently).
pub fn model(file: &str) -> PathBuf {
    let p = models_dir().join(file);
    assert!(
        p.is_file(),
        "{} is missing: run scripts/fetch-models (make test does)",
        p.display()
    );
    p
}

pub const SMOLLM2: &str = "SmolLM2-135M-Instruct-Q4_1.gguf";
pub const GEMMA3: &str = "gemma-3-270m-Q4_K_M.gguf";

pub fn golden(key: &str) -> serde_json::Value {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/golden")
        .join(format!("{key}.json"));
    let s = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&s).expect("golden JSON")
}

pub fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}

/// Every position of `tokens` in slot 0, each wanting its logits: a teacher-forced pass over a known text.
pub fn positions(tokens: &[u32]) -> Vec<hearth_engine::model::Entry> {
    tokens
        .iter()
        .enumerate()
        .map(|(pos, &token)| hearth_engine::model::Entry {
            slot: 0,
            pos,
            token,
            want_logits: true,
        })
        .collect()
}
