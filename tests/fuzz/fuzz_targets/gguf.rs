//! A model file as the admin's import reads it: the GGUF reader, then the checks `hearth model import` runs
//! (`Model::from_gguf`, `Tokenizer::from_gguf`). Invariant: any bytes are refused with an error or accepted;
//! a file that is accepted must also run — a chat prompt through one forward step — without a panic.
#![no_main]

use hearth_engine::gguf::GgufFile;
use hearth_engine::{
    ChatMessage, GenerateRequest, LoadOptions, LoadedModel, Model, SamplingParams, Tokenizer,
};
use libfuzzer_sys::fuzz_target;
use std::sync::Arc;

fn scratch() -> std::path::PathBuf {
    let dir = if std::path::Path::new("/dev/shm").is_dir() {
        "/dev/shm".into()
    } else {
        std::env::temp_dir()
    };
    dir.join(format!("hearth-fuzz-gguf-{}.gguf", std::process::id()))
}

fuzz_target!(|data: &[u8]| {
    let path = scratch();
    std::fs::write(&path, data).expect("write the scratch file");
    let Ok(gguf) = GgufFile::open(&path) else {
        return;
    };
    let gguf = Arc::new(gguf);
    let _ = gguf.type_counts();
    for t in &gguf.tensors {
        let _ = gguf.tensor_data(t);
    }
    if gguf.architecture().is_err() {
        return;
    }
    let (Ok(_), Ok(_)) = (
        Model::from_gguf(gguf.clone(), &LoadOptions::default()),
        Tokenizer::from_gguf(&gguf),
    ) else {
        return;
    };
    // Accepted at import: it must also serve.
    let Ok(lm) = LoadedModel::load(&path, &LoadOptions::default(), 1) else {
        return;
    };
    let Ok(prompt) = lm.chat_prompt(&[ChatMessage::new("user", "Hi")]) else {
        return;
    };
    let mut batch = lm.new_batch(1, 64);
    let request = GenerateRequest {
        prompt,
        max_tokens: 2,
        sampling: SamplingParams::greedy(),
        ..Default::default()
    };
    if batch.add(request).is_ok() {
        let _ = batch.run_to_completion();
    }
});
