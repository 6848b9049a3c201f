//! The demo models' tokenizers on arbitrary text: SmolLM2's byte-level BPE and Gemma 3's SentencePiece.
//! Invariants: encoding never panics, every id is in the vocabulary, and byte-level BPE decodes back to exactly
//! the text it encoded, less what it cannot represent: a character the vocabulary has no bytes for (SmolLM2 lacks
//! six control characters) and text that spells a control token (`<|im_end|>` becomes that token, whose decoded
//! text is empty).
#![no_main]

use hearth_engine::gguf::GgufFile;
use hearth_engine::Tokenizer;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn load(file: &str) -> Tokenizer {
    let dir = std::env::var_os("HEARTH_FUZZ_MODELS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(std::env::var("HOME").unwrap_or_default())
                .join(".cache/hearth/models")
        });
    let gguf = GgufFile::open(dir.join(file)).expect("the demo model (scripts/fetch-models)");
    Tokenizer::from_gguf(&gguf).expect("its tokenizer")
}

fn tokenizers() -> &'static [Tokenizer; 2] {
    static T: OnceLock<[Tokenizer; 2]> = OnceLock::new();
    T.get_or_init(|| {
        [
            load("SmolLM2-135M-Instruct-Q4_1.gguf"),
            load("gemma-3-270m-Q4_K_M.gguf"),
        ]
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let bpe = pick % 2 == 0;
    let tok = &tokenizers()[usize::from(!bpe)];
    for add_special in [false, true] {
        let Ok(ids) = tok.encode(&text, add_special) else {
            continue;
        };
        assert!(
            ids.iter().all(|&id| (id as usize) < tok.vocab_size()),
            "id outside the vocabulary"
        );
        let back = tok.decode(&ids);
        let plain = ids.iter().all(|&id| !tok.token_bytes(id).is_empty());
        if bpe && !add_special && plain {
            let representable: String = text
                .chars()
                .filter(|c| {
                    tok.encode(c.encode_utf8(&mut [0; 4]), false)
                        .is_ok_and(|ids| !ids.is_empty())
                })
                .collect();
            assert_eq!(back, representable, "byte-level BPE must round-trip");
        }
    }
});
