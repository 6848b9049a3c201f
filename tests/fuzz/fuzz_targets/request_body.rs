//! Request bodies as the HTTP front ends read them: the first byte picks the body (OpenAI chat, OpenAI
//! completion, Ollama chat, Ollama generate), the rest is the body. Invariant: parsing and translating into an
//! inference request either succeed or fail with a 400 naming the problem — never a panic, never a 5xx.
#![no_main]

use hearth::api::bodies::{decode, BodyKind};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let kind = BodyKind::ALL[usize::from(pick) % BodyKind::ALL.len()];
    if let Err(e) = decode(kind, body) {
        assert_eq!(e.status().as_u16(), 400, "{kind:?}: {e}");
    }
});
