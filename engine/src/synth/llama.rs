//! Synthetic Llama 3 files: Llama 3.2 1B / 3B and Llama 3.1 8B shapes (`llama` architecture, GQA 4:1, rope base
//! 500 000, 128 256-token vocabulary) in the quantisations users download. Which tensor gets which type follows
//! llama.cpp's `llama-quantize` for that file type, so a synthetic Q4_K_M file reads the same bytes per token as a
//! real one: Q4_K_M keeps `attn_v` and `ffn_down` in Q6_K on the layers `use_more_bits` picks and the head in
//! Q6_K; Q4_0 keeps the head in Q6_K; a tied embedding (1B, 3B) is the head, so it takes the head's type.
//!
//! Weights are random blocks, not quantised floats: the quants are uniform random bytes and each block's scales
//! are chosen so a weight's spread is about 0.02 (real Llama matrices are 0.01–0.05), which keeps activations
//! finite through every layer. Writing 8B takes seconds, not the minutes quantising 8 G floats would.

use super::tokenizer::{builtin_tokenizer, copy_tokenizer, tokenizer_len};
use super::Rng;
use crate::gguf::writer::GgufWriter;
use crate::gguf::{GgufFile, MetaValue};
use crate::quant::GgmlType;

/// A Llama 3 shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub d_model: usize,
    pub n_layers: usize,
    pub ffn_dim: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub vocab: usize,
    /// The output head is the embedding (Llama 3.2 1B and 3B) rather than a tensor of its own (3.1 8B).
    pub tied: bool,
}

impl Shape {
    /// meta-llama/Llama-3.2-1B(-Instruct).
    pub const B1: Shape = Shape {
        d_model: 2048,
        n_layers: 16,
        ffn_dim: 8192,
        n_heads: 32,
        n_kv_heads: 8,
        vocab: 128_256,
        tied: true,
    };
    /// meta-llama/Llama-3.2-3B(-Instruct).
    pub const B3: Shape = Shape {
        d_model: 3072,
        n_layers: 28,
        ffn_dim: 8192,
        n_heads: 24,
        n_kv_heads: 8,
        vocab: 128_256,
        tied: true,
    };
    /// meta-llama/Llama-3.1-8B(-Instruct).
    pub const B8: Shape = Shape {
        d_model: 4096,
        n_layers: 32,
        ffn_dim: 14_336,
        n_heads: 32,
        n_kv_heads: 8,
        vocab: 128_256,
        tied: false,
    };
    /// A few MB, for tests: the 1B's structure (GQA 4:1, head dim 64, tied) at width 256, 2 layers, the tokenizer's
    /// own vocabulary.
    pub const TINY: Shape = Shape {
        d_model: 256,
        n_layers: 2,
        ffn_dim: 768,
        n_heads: 4,
        n_kv_heads: 1,
        vocab: 0,
        tied: true,
    };

    pub fn preset(name: &str) -> Option<Shape> {
        match name {
            "1b" => Some(Shape::B1),
            "3b" => Some(Shape::B3),
            "8b" => Some(Shape::B8),
            "tiny" => Some(Shape::TINY),
            _ => None,
        }
    }

    pub const PRESETS: &'static str = "1b, 3b, 8b or tiny";
}

/// A file type as `llama-quantize` names it: the type most matrices get, and the exceptions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileType {
    Q4KM,
    Q4_0,
    Q8_0,
    Q6K,
}

impl FileType {
    pub fn parse(s: &str) -> Option<FileType> {
        match s.to_ascii_lowercase().as_str() {
            "q4_k_m" => Some(FileType::Q4KM),
            "q4_0" => Some(FileType::Q4_0),
            "q8_0" => Some(FileType::Q8_0),
            "q6_k" => Some(FileType::Q6K),
            _ => None,
        }
    }

    pub const NAMES: &'static str = "q4_k_m, q4_0, q8_0 or q6_k";

    pub fn name(self) -> &'static str {
        match self {
            FileType::Q4KM => "Q4_K_M",
            FileType::Q4_0 => "Q4_0",
            FileType::Q8_0 => "Q8_0",
            FileType::Q6K => "Q6_K",
        }
    }

    /// `general.file_type` (llama.cpp's `llama_ftype`).
    fn id(self) -> u32 {
        match self {
            FileType::Q4_0 => 2,
            FileType::Q8_0 => 7,
            FileType::Q4KM => 15,
            FileType::Q6K => 18,
        }
    }

    fn base(self) -> GgmlType {
        match self {
            FileType::Q4KM => GgmlType::Q4K,
            FileType::Q4_0 => GgmlType::Q4_0,
            FileType::Q8_0 => GgmlType::Q8_0,
            FileType::Q6K => GgmlType::Q6K,
        }
    }

    /// The output head's type (and a tied embedding's): Q6_K unless the file is Q8_0.
    fn head(self) -> GgmlType {
        match self {
            FileType::Q8_0 => GgmlType::Q8_0,
            _ => GgmlType::Q6K,
        }
    }

    /// `attn_v` and `ffn_down` of layer `i` of `n`: Q4_K_M gives the layers `use_more_bits` picks Q6_K.
    fn more_bits(self, i: usize, n: usize) -> GgmlType {
        // llama.cpp's use_more_bits: the first and last eighth of the layers, and every third in between.
        let more = i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
        if self == FileType::Q4KM && more {
            GgmlType::Q6K
        } else {
            self.base()
        }
    }
}

/// Bytes of random blocks of `ty` for a [rows × cols] matrix (`cols` a multiple of the block size), each block's
/// scale fields set so the weights spread about ±0.02.
fn random_blocks(ty: GgmlType, rows: usize, cols: usize, rng: &mut Rng) -> Vec<u8> {
    let (bs, bytes) = ty
        .block_geometry()
        .expect("the four synth types have a block geometry");
    let n = rows * cols / bs;
    let mut out = vec![0u8; n * bytes];
    for chunk in out.chunks_mut(8) {
        let r = rng.next().to_le_bytes();
        chunk.copy_from_slice(&r[..chunk.len()]);
    }
    let f16 = |v: f32| half::f16::from_f32(v).to_bits().to_le_bytes();
    for blk in out.chunks_exact_mut(bytes) {
        // A per-block jitter of the scale (0.75–1.25×), as real blocks differ.
        let j = 1.0 + 0.25 * rng.unit();
        match ty {
            // d · (q − 8), q uniform in 0..16: spread 4.6 d.
            GgmlType::Q4_0 => blk[..2].copy_from_slice(&f16(0.0043 * j)),
            // d · q, q uniform i8: spread 74 d.
            GgmlType::Q8_0 => blk[..2].copy_from_slice(&f16(0.00027 * j)),
            // d · sc · q − dmin · m (6-bit sc, m; 4-bit q): dmin ≈ 7.5 d centres the sub-blocks.
            GgmlType::Q4K => {
                blk[..2].copy_from_slice(&f16(0.00014 * j));
                blk[2..4].copy_from_slice(&f16(0.001 * j));
            }
            // d · sc · (q − 32), q 6-bit, sc int8 kept to ±32: spread ≈ 18.5 · 18.5 d.
            GgmlType::Q6K => {
                for s in &mut blk[192..208] {
                    *s = ((*s as i8) / 4) as u8;
                }
                blk[208..210].copy_from_slice(&f16(0.00006 * j));
            }
            _ => unreachable!("random_blocks is called with the four synth types only"),
        }
    }
    out
}

/// Builds a synthetic Llama 3 file. `tokenizer`: a GGUF file whose tokenizer to embed (padded to the vocabulary);
/// None embeds the built-in byte-level one with Llama 3's special tokens and chat template. A vocabulary of 0 (the
/// tiny preset) is the tokenizer's size rounded up to 256.
pub fn llama(
    shape: Shape,
    ft: FileType,
    seed: u64,
    tokenizer: Option<&GgufFile>,
) -> Result<GgufWriter, String> {
    let (d, f) = (shape.d_model, shape.ffn_dim);
    if shape.n_heads == 0
        || shape.n_kv_heads == 0
        || !d.is_multiple_of(shape.n_heads)
        || !shape.n_heads.is_multiple_of(shape.n_kv_heads)
    {
        return Err("heads must divide the width, and KV heads the heads".into());
    }
    for (what, n) in [("width", d), ("FFN width", f)] {
        if !n.is_multiple_of(256) {
            return Err(format!(
                "{what} {n} is not a multiple of 256 (the K-quant block)"
            ));
        }
    }
    let hd = d / shape.n_heads;
    let kv = shape.n_kv_heads * hd;
    let n_tok = tokenizer_len(tokenizer);
    let vocab = match shape.vocab {
        0 => n_tok.div_ceil(256) * 256,
        v => v,
    };
    if vocab < n_tok {
        return Err(format!(
            "the tokenizer has {n_tok} tokens, more than the vocabulary of {vocab}"
        ));
    }

    let mut w = GgufWriter::default();
    let u = |n: usize| MetaValue::U32(n as u32);
    w.meta("general.architecture", MetaValue::String("llama".into()))
        .meta(
            "general.name",
            MetaValue::String(format!(
                "synthetic Llama 3 {d}x{} ({}, seed {seed})",
                shape.n_layers,
                ft.name()
            )),
        )
        .meta("general.file_type", MetaValue::U32(ft.id()))
        .meta("llama.context_length", u(131_072))
        .meta("llama.embedding_length", u(d))
        .meta("llama.block_count", u(shape.n_layers))
        .meta("llama.feed_forward_length", u(f))
        .meta("llama.attention.head_count", u(shape.n_heads))
        .meta("llama.attention.head_count_kv", u(shape.n_kv_heads))
        .meta("llama.rope.dimension_count", u(hd))
        .meta("llama.rope.freq_base", MetaValue::F32(500_000.0))
        .meta(
            "llama.attention.layer_norm_rms_epsilon",
            MetaValue::F32(1e-5),
        )
        .meta("llama.vocab_size", u(vocab));
    match tokenizer {
        Some(src) => copy_tokenizer(&mut w, src, vocab)?,
        None => builtin_tokenizer(&mut w, vocab),
    }

    let matrix = |w: &mut GgufWriter, name: &str, ty: GgmlType, rows: usize, cols: usize| {
        let mut rng = Rng::new(seed, name);
        let data = random_blocks(ty, rows, cols, &mut rng);
        w.tensor(name, &[cols as u64, rows as u64], ty, data);
    };
    let norm = |w: &mut GgufWriter, name: &str, n: usize| {
        let mut rng = Rng::new(seed, name);
        let v: Vec<f32> = (0..n).map(|_| 1.0 + 0.1 * rng.unit()).collect();
        w.f32_tensor(name, &[n as u64], &v);
    };
    let embd = if shape.tied { ft.head() } else { ft.base() };
    matrix(&mut w, "token_embd.weight", embd, vocab, d);
    norm(&mut w, "output_norm.weight", d);
    if !shape.tied {
        matrix(&mut w, "output.weight", ft.head(), vocab, d);
    }
    let n = shape.n_layers;
    for l in 0..n {
        let p = |s: &str| format!("blk.{l}.{s}");
        norm(&mut w, &p("attn_norm.weight"), d);
        norm(&mut w, &p("ffn_norm.weight"), d);
        for (name, ty, rows, cols) in [
            ("attn_q.weight", ft.base(), d, d),
            ("attn_k.weight", ft.base(), kv, d),
            ("attn_v.weight", ft.more_bits(l, n), kv, d),
            ("attn_output.weight", ft.base(), d, d),
            ("ffn_gate.weight", ft.base(), f, d),
            ("ffn_up.weight", ft.base(), f, d),
            ("ffn_down.weight", ft.more_bits(l, n), d, f),
        ] {
            matrix(&mut w, &p(name), ty, rows, cols);
        }
    }
    Ok(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q4_k_m_gives_llama_quantize_s_layers_more_bits() {
        // Llama 3.1 8B Q4_K_M as llama-quantize writes it: 32 layers, Q6_K on 0–3, 28–31 and every third between.
        let six: Vec<usize> = (0..32)
            .filter(|&i| FileType::Q4KM.more_bits(i, 32) == GgmlType::Q6K)
            .collect();
        assert_eq!(
            six,
            vec![0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31]
        );
        assert_eq!(FileType::Q4_0.more_bits(0, 32), GgmlType::Q4_0);
        assert_eq!(FileType::Q4_0.head(), GgmlType::Q6K);
        assert_eq!(FileType::Q8_0.head(), GgmlType::Q8_0);
    }

    #[test]
    fn the_same_seed_writes_the_same_bytes_and_another_seed_others() {
        let a = llama(Shape::TINY, FileType::Q4KM, 7, None)
            .unwrap()
            .to_bytes();
        let b = llama(Shape::TINY, FileType::Q4KM, 7, None)
            .unwrap()
            .to_bytes();
        let c = llama(Shape::TINY, FileType::Q4KM, 8, None)
            .unwrap()
            .to_bytes();
        assert_eq!(a, b);
        assert_eq!(a.len(), c.len());
        assert_ne!(a, c);
    }

    #[test]
    fn shapes_that_do_not_divide_are_refused() {
        let mut s = Shape::TINY;
        s.d_model = 200;
        assert!(llama(s, FileType::Q4_0, 1, None)
            .unwrap_err()
            .contains("multiple of 256"));
        let mut s = Shape::TINY;
        s.n_kv_heads = 3;
        assert!(llama(s, FileType::Q4_0, 1, None)
            .unwrap_err()
            .contains("KV heads"));
        assert!(FileType::parse("q5_k_m").is_none());
        assert_eq!(FileType::parse("Q4_K_M"), Some(FileType::Q4KM));
    }
}
