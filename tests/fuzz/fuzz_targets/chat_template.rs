//! The chat-template renderer on arbitrary templates (a model file's `tokenizer.chat_template` is untrusted
//! input) and arbitrary messages. Input: template, NUL, then role NUL content NUL … Invariant: compiling and
//! rendering return text or an error — no panic, no hang (the fuzzer's timeout catches runaway loops).
#![no_main]

use hearth_engine::{ChatMessage, ChatTemplate};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\0');
    let source = parts.next().unwrap_or_default();
    let rest: Vec<&str> = parts.collect();
    let messages: Vec<ChatMessage> = rest
        .chunks(2)
        .map(|c| ChatMessage::new(c[0], c.get(1).copied().unwrap_or("")))
        .collect();
    let Ok(template) = ChatTemplate::new(source, "<s>", "</s>") else {
        return;
    };
    let _ = template.render(&messages, true);
    let _ = template.render(&messages, false);
});
