//! Synthetic BitNet b1.58 GGUF files: the real architecture and tensor names at a chosen shape, random ternary
//! matrices in I2_S, TQ2_0 or TQ1_0, and a working BPE tokenizer, so loading, serving and speed are tested at
//! the real shapes without the real weights. The same seed gives the same weights in every format: scales are
//! f16-exact, so an I2_S and a TQ2_0 file of one seed compute the same numbers.

use super::formats::encode_i2s;
use crate::gguf::writer::GgufWriter;
use crate::gguf::{GgufFile, MetaValue};
use crate::quant::{quantize_tq1_0, quantize_tq2_0, GgmlType};
use crate::synth::tokenizer::{builtin_tokenizer, copy_tokenizer, tokenizer_len};
use crate::synth::Rng;

/// bitnet.cpp's architecture name, written with I2_S (its type).
pub const ARCH: &str = "bitnet-b1.58";
/// llama.cpp's name, written with TQ1_0 / TQ2_0 (its types), so llama.cpp loads those files as they are.
pub const ARCH_LLAMA_CPP: &str = "bitnet";

/// The architecture name a file of ternary type `ty` is written with.
pub fn arch_for(ty: GgmlType) -> &'static str {
    if ty == GgmlType::I2S {
        ARCH
    } else {
        ARCH_LLAMA_CPP
    }
}

/// Model shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub d_model: usize,
    pub n_layers: usize,
    pub ffn_dim: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    /// None: the tokenizer's size rounded up to a multiple of 256.
    pub vocab: Option<usize>,
    pub context: usize,
}

impl Shape {
    /// microsoft/bitnet-b1.58-2B-4T.
    pub const B2B4T: Shape = Shape {
        d_model: 2560,
        n_layers: 30,
        ffn_dim: 6912,
        n_heads: 20,
        n_kv_heads: 5,
        vocab: Some(128_256),
        context: 4096,
    };
    /// A few MB, for tests: hidden 256, 2 layers (head dim 64, GQA 2:1).
    pub const TINY: Shape = Shape {
        d_model: 256,
        n_layers: 2,
        ffn_dim: 768,
        n_heads: 4,
        n_kv_heads: 2,
        vocab: None,
        context: 2048,
    };

    /// A draft for `B2B4T` in speculative decoding: the same vocabulary (so the same tokenizer), a tenth of the
    /// width, two layers — about 4% of the target's bytes per token with an int8 head.
    pub const B2B4T_DRAFT: Shape = Shape {
        d_model: 256,
        n_layers: 2,
        ffn_dim: 768,
        n_heads: 4,
        n_kv_heads: 2,
        vocab: Some(128_256),
        context: 4096,
    };

    pub fn preset(name: &str) -> Option<Shape> {
        match name {
            "2b4t" => Some(Shape::B2B4T),
            "2b4t-draft" => Some(Shape::B2B4T_DRAFT),
            "tiny" => Some(Shape::TINY),
            _ => None,
        }
    }
}

/// Which ternary encoding the matrices get.
pub fn parse_format(s: &str) -> Option<GgmlType> {
    match s {
        "i2_s" | "I2_S" => Some(GgmlType::I2S),
        "tq2_0" | "TQ2_0" => Some(GgmlType::TQ2_0),
        "tq1_0" | "TQ1_0" => Some(GgmlType::TQ1_0),
        _ => None,
    }
}

/// Codes for `n` weights: −1 and +1 a quarter each, 0 half the time (real BitNet matrices are 40–50 % zeros).
fn random_codes(rng: &mut Rng, n: usize) -> Vec<u8> {
    const MAP: [u8; 4] = [0, 1, 2, 1];
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let mut v = rng.next();
        for _ in 0..32 {
            if out.len() == n {
                break;
            }
            out.push(MAP[(v & 3) as usize]);
            v >>= 2;
        }
    }
    out
}

/// A ternary matrix [rows × cols] of codes and an f16-exact scale, encoded as `ty`.
pub fn encode_ternary(codes: &[u8], scale: f32, cols: usize, ty: GgmlType) -> Vec<u8> {
    match ty {
        GgmlType::I2S => encode_i2s(codes, scale),
        _ => {
            let mut out = Vec::new();
            let mut row = vec![0f32; cols];
            for c in codes.chunks_exact(cols) {
                for (v, &q) in row.iter_mut().zip(c) {
                    *v = (q as i32 - 1) as f32 * scale;
                }
                out.extend(if ty == GgmlType::TQ1_0 {
                    quantize_tq1_0(&row)
                } else {
                    quantize_tq2_0(&row)
                });
            }
            out
        }
    }
}

/// A BitNet GGUF writer with its architecture and hyper-parameters (`{arch}.*`) set; the architecture name
/// follows the ternary type (`arch_for`).
pub(crate) fn header(
    ty: GgmlType,
    name: &str,
    shape: &Shape,
    vocab: usize,
    rope_theta: f32,
    rms_eps: f32,
) -> GgufWriter {
    let mut w = GgufWriter::default();
    let arch = arch_for(ty);
    let key = |k: &str| format!("{arch}.{k}");
    let u = |n: usize| MetaValue::U32(n as u32);
    w.meta("general.architecture", MetaValue::String(arch.into()))
        .meta("general.name", MetaValue::String(name.into()))
        .meta(&key("context_length"), u(shape.context))
        .meta(&key("embedding_length"), u(shape.d_model))
        .meta(&key("block_count"), u(shape.n_layers))
        .meta(&key("feed_forward_length"), u(shape.ffn_dim))
        .meta(&key("attention.head_count"), u(shape.n_heads))
        .meta(&key("attention.head_count_kv"), u(shape.n_kv_heads))
        .meta(
            &key("rope.dimension_count"),
            u(shape.d_model / shape.n_heads),
        )
        .meta(&key("rope.freq_base"), MetaValue::F32(rope_theta))
        .meta(
            &key("attention.layer_norm_rms_epsilon"),
            MetaValue::F32(rms_eps),
        )
        .meta(&key("vocab_size"), u(vocab));
    w
}

/// Builds a synthetic BitNet file with an F16 embedding (tied head), as published. `tokenizer`: a GGUF file whose
/// tokenizer to embed (padded to the vocabulary); None embeds the built-in byte-level one.
pub fn bitnet(
    shape: Shape,
    ty: GgmlType,
    seed: u64,
    tokenizer: Option<&GgufFile>,
) -> Result<GgufWriter, String> {
    bitnet_with_embedding(shape, ty, GgmlType::F16, seed, tokenizer)
}

/// As [`bitnet`], the embedding stored as `embed` (F16, Q8_0 or Q4_0: the same f16 values, quantized): a file for
/// llama.cpp whose tied head has as many bytes as Hearth's `head` load option gives, for a like-for-like
/// comparison.
pub fn bitnet_with_embedding(
    shape: Shape,
    ty: GgmlType,
    embed: GgmlType,
    seed: u64,
    tokenizer: Option<&GgufFile>,
) -> Result<GgufWriter, String> {
    if !matches!(embed, GgmlType::F16 | GgmlType::Q8_0 | GgmlType::Q4_0) {
        return Err(format!(
            "{embed} is not an embedding type synth writes (use f16, q8_0 or q4_0)"
        ));
    }
    if !ty.is_ternary() {
        return Err(format!(
            "{ty} is not a ternary type (use i2_s, tq2_0 or tq1_0)"
        ));
    }
    let block = if ty == GgmlType::I2S { 128 } else { 256 };
    let (d, f) = (shape.d_model, shape.ffn_dim);
    if shape.n_heads == 0
        || shape.n_kv_heads == 0
        || !d.is_multiple_of(shape.n_heads)
        || !shape.n_heads.is_multiple_of(shape.n_kv_heads)
    {
        return Err("heads must divide the width, and KV heads the heads".into());
    }
    let hd = d / shape.n_heads;
    let kv = shape.n_kv_heads * hd;
    for (what, n) in [("width", d), ("FFN width", f)] {
        if !n.is_multiple_of(block) {
            return Err(format!(
                "{what} {n} is not a multiple of {ty}'s block of {block}"
            ));
        }
    }
    let n_tok = tokenizer_len(tokenizer);
    let vocab = shape.vocab.unwrap_or(n_tok.div_ceil(256) * 256);
    if vocab < n_tok {
        return Err(format!(
            "the tokenizer has {n_tok} tokens, more than the vocabulary of {vocab}"
        ));
    }

    let mut w = header(
        ty,
        &format!(
            "synthetic BitNet b1.58 {d}x{} ({ty}, seed {seed})",
            shape.n_layers
        ),
        &shape,
        vocab,
        500_000.0,
        1e-5,
    );
    match tokenizer {
        Some(src) => copy_tokenizer(&mut w, src, vocab)?,
        None => builtin_tokenizer(&mut w, vocab),
    }

    let norm = |w: &mut GgufWriter, name: &str, n: usize| {
        let mut rng = Rng::new(seed, name);
        let v: Vec<f32> = (0..n).map(|_| 1.0 + 0.1 * rng.unit()).collect();
        w.f32_tensor(name, &[n as u64], &v);
    };
    let mut rng = Rng::new(seed, "token_embd.weight");
    let values: Vec<half::f16> = (0..vocab * d)
        .map(|_| half::f16::from_f32(rng.unit()))
        .collect();
    let embd: Vec<u8> = match embed {
        GgmlType::F16 => values
            .iter()
            .flat_map(|v| v.to_bits().to_le_bytes())
            .collect(),
        _ => values
            .chunks_exact(d)
            .flat_map(|row| {
                let row: Vec<f32> = row.iter().map(|v| v.to_f32()).collect();
                if embed == GgmlType::Q8_0 {
                    crate::quant::quantize_q8_0(&row)
                } else {
                    crate::quant::quantize_q4_0(&row)
                }
            })
            .collect(),
    };
    w.tensor("token_embd.weight", &[d as u64, vocab as u64], embed, embd);
    norm(&mut w, "output_norm.weight", d);
    for l in 0..shape.n_layers {
        let p = |s: &str| format!("blk.{l}.{s}");
        norm(&mut w, &p("attn_norm.weight"), d);
        norm(&mut w, &p("attn_sub_norm.weight"), d);
        norm(&mut w, &p("ffn_norm.weight"), d);
        norm(&mut w, &p("ffn_sub_norm.weight"), f);
        for (name, rows, cols) in [
            ("attn_q.weight", d, d),
            ("attn_k.weight", kv, d),
            ("attn_v.weight", kv, d),
            ("attn_output.weight", d, d),
            ("ffn_gate.weight", f, d),
            ("ffn_up.weight", f, d),
            ("ffn_down.weight", d, f),
        ] {
            let name = p(name);
            let mut rng = Rng::new(seed, &name);
            let codes = random_codes(&mut rng, rows * cols);
            // mean |W| of real BitNet matrices is O(1); f16-exact so every format stores the same number.
            let scale = half::f16::from_f32(1.0 + 0.5 * rng.unit()).to_f32();
            let data = encode_ternary(&codes, scale, cols, ty);
            w.tensor(&name, &[cols as u64, rows as u64], ty, data);
        }
    }
    Ok(w)
}
