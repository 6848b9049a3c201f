//! SentencePiece vocabularies (`tokenizer.ggml.model = llama`) as a `tokenizers` BPE.

use super::TokenType;
use std::collections::HashMap;
use tokenizers::models::bpe::BPE;

/// Builds a BPE whose merges reproduce score-driven SentencePiece merging: for every piece that splits into two
/// pieces of the vocabulary, a merge ranked by the merged piece's score (higher first). Byte tokens (`<0x41>`)
/// serve as fallback for characters outside the vocabulary.
pub fn build_bpe(
    texts: &[String],
    types: &[TokenType],
    scores: &[f32],
    unk: Option<String>,
) -> Result<BPE, String> {
    let ids: HashMap<&str, u32> = texts
        .iter()
        .zip(types)
        .enumerate()
        .filter(|(_, (_, ty))| **ty != TokenType::Byte)
        .map(|(i, (t, _))| (t.as_str(), i as u32))
        .collect();
    let mut merges: Vec<(f32, u32, u32, &str, &str)> = Vec::new();
    for (i, (t, ty)) in texts.iter().zip(types).enumerate() {
        if *ty == TokenType::Byte || t.chars().nth(1).is_none() {
            continue;
        }
        for (pos, _) in t.char_indices().skip(1) {
            let (l, r) = t.split_at(pos);
            if let (Some(&li), Some(&ri)) = (ids.get(l), ids.get(r)) {
                merges.push((scores[i], li, ri, l, r));
            }
        }
    }
    // Higher score first; ties broken by the ids of the parts for a stable order.
    merges.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    let merges: Vec<(String, String)> = merges
        .into_iter()
        .map(|(_, _, _, l, r)| (l.to_owned(), r.to_owned()))
        .collect();
    let vocab: tokenizers::models::bpe::Vocab = texts
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect();
    let mut b = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .byte_fallback(true);
    if let Some(u) = unk {
        b = b.unk_token(u);
    }
    b.build().map_err(|e| e.to_string())
}

/// What a SentencePiece token contributes to text: `▁` is a space, `<0xAB>` is one byte, control tokens nothing.
pub fn piece_bytes(text: &str, ty: TokenType) -> Vec<u8> {
    match ty {
        TokenType::Control => Vec::new(),
        TokenType::Byte => {
            let hex = text.strip_prefix("<0x").and_then(|s| s.strip_suffix('>'));
            match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                Some(b) => vec![b],
                None => text.as_bytes().to_vec(),
            }
        }
        _ => text.replace('▁', " ").into_bytes(),
    }
}
