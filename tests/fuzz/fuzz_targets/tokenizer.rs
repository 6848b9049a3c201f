//! The demo models' tokenizers on arbitrary text: SmolLM2's byte-level BPE and Gemma 3's SentencePiece.
//! Invariants: encoding never panics, every id is in the vocabulary, and byte-level BPE decodes back to exactly
//! the text it encoded, less what it cannot represent: the bytes its vocabulary lacks (SmolLM2 lacks six control
//! characters and the lead bytes 0xF1 and 0xF2 of 4-byte characters, besides bytes UTF-8 never uses) and text that
//! spells a control token (`<|im_end|>` becomes that token, whose decoded text is empty).
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
            // Byte-level BPE drops the bytes its vocabulary lacks, one by one, wherever they stand: a character
            // keeps in context exactly the bytes it keeps alone (a 4-byte character may lose its lead byte and
            // leave its continuation bytes, which decode as U+FFFD).
            let mut kept = Vec::new();
            for c in text.chars() {
                if let Ok(ids) = tok.encode(c.encode_utf8(&mut [0; 4]), false) {
                    ids.iter()
                        .for_each(|&id| kept.extend_from_slice(tok.token_bytes(id)));
                }
            }
            assert_eq!(
                back,
                String::from_utf8_lossy(&kept),
                "byte-level BPE must round-trip"
            );
        }
    }
});
