//! The llama-family variants without a packaged model (Qwen2 biases, Qwen3 q/k norms, NeoX vs adjacent-pair rope,
//! GQA, tied and untied heads, Llama 3 rope frequency factors, linear rope scaling), checked against a naive
//! reference forward pass written here from the architecture's definition. Tiny random F32 models, written as
//! real GGUF files.

mod common;

use hearth_engine::gguf::writer::GgufWriter;
use hearth_engine::gguf::MetaValue;
use hearth_engine::kv::KvCache;
use hearth_engine::model::Scratch;
use hearth_engine::threadpool::ThreadPool;
use hearth_engine::{LoadOptions, Model};

const D: usize = 64;
const HEADS: usize = 4;
const KV_HEADS: usize = 2;
const HD: usize = 16;
const FFN: usize = 96;
const VOCAB: usize = 40;
const LAYERS: usize = 2;

#[derive(Clone, Copy)]
struct Variant {
    arch: &'static str,
    biases: bool,
    qk_norm: bool,
    tied: bool,
    freq_factors: bool,
    linear_scale: Option<f32>,
}

struct Rng(u64);
impl Rng {
    fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n)
            .map(|_| {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                ((self.0 >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 2.0 * scale
            })
            .collect()
    }
}

/// Tensors by name, row-major [rows][cols].
type Tensors = std::collections::BTreeMap<String, (Vec<u64>, Vec<f32>)>;

fn build(v: Variant) -> (tempfile::NamedTempFile, Tensors) {
    let mut rng = Rng(0x1234_5678 ^ v.arch.len() as u64);
    let mut t = Tensors::new();
    let mut mat = |t: &mut Tensors, name: &str, rows: usize, cols: usize, scale: f32| {
        t.insert(
            name.into(),
            (vec![cols as u64, rows as u64], rng.vec(rows * cols, scale)),
        );
    };
    mat(&mut t, "token_embd.weight", VOCAB, D, 1.0);
    if !v.tied {
        mat(&mut t, "output.weight", VOCAB, D, 0.3);
    }
    for l in 0..LAYERS {
        let p = |s: &str| format!("blk.{l}.{s}");
        mat(&mut t, &p("attn_q.weight"), HEADS * HD, D, 0.2);
        mat(&mut t, &p("attn_k.weight"), KV_HEADS * HD, D, 0.2);
        mat(&mut t, &p("attn_v.weight"), KV_HEADS * HD, D, 0.2);
        mat(&mut t, &p("attn_output.weight"), D, HEADS * HD, 0.2);
        mat(&mut t, &p("ffn_gate.weight"), FFN, D, 0.2);
        mat(&mut t, &p("ffn_up.weight"), FFN, D, 0.2);
        mat(&mut t, &p("ffn_down.weight"), D, FFN, 0.2);
    }
    let mut rng2 = Rng(99);
    let mut vecs = |t: &mut Tensors, name: String, n: usize, base: f32| {
        let v: Vec<f32> = rng2.vec(n, 0.2).into_iter().map(|x| x + base).collect();
        t.insert(name, (vec![n as u64], v));
    };
    vecs(&mut t, "output_norm.weight".into(), D, 1.0);
    if v.freq_factors {
        vecs(&mut t, "rope_freqs.weight".into(), HD / 2, 2.0);
    }
    for l in 0..LAYERS {
        vecs(&mut t, format!("blk.{l}.attn_norm.weight"), D, 1.0);
        vecs(&mut t, format!("blk.{l}.ffn_norm.weight"), D, 1.0);
        if v.biases {
            vecs(&mut t, format!("blk.{l}.attn_q.bias"), HEADS * HD, 0.0);
            vecs(&mut t, format!("blk.{l}.attn_k.bias"), KV_HEADS * HD, 0.0);
            vecs(&mut t, format!("blk.{l}.attn_v.bias"), KV_HEADS * HD, 0.0);
        }
        if v.qk_norm {
            vecs(&mut t, format!("blk.{l}.attn_q_norm.weight"), HD, 1.0);
            vecs(&mut t, format!("blk.{l}.attn_k_norm.weight"), HD, 1.0);
        }
    }
    let mut w = GgufWriter::default();
    let a = v.arch;
    w.meta("general.architecture", MetaValue::String(a.into()))
        .meta(&format!("{a}.block_count"), MetaValue::U32(LAYERS as u32))
        .meta(&format!("{a}.embedding_length"), MetaValue::U32(D as u32))
        .meta(
            &format!("{a}.feed_forward_length"),
            MetaValue::U32(FFN as u32),
        )
        .meta(
            &format!("{a}.attention.head_count"),
            MetaValue::U32(HEADS as u32),
        )
        .meta(
            &format!("{a}.attention.head_count_kv"),
            MetaValue::U32(KV_HEADS as u32),
        )
        .meta(&format!("{a}.rope.freq_base"), MetaValue::F32(10000.0))
        .meta(
            &format!("{a}.attention.layer_norm_rms_epsilon"),
            MetaValue::F32(1e-6),
        )
        .meta(&format!("{a}.context_length"), MetaValue::U32(128))
        .meta(&format!("{a}.vocab_size"), MetaValue::U32(VOCAB as u32));
    if let Some(f) = v.linear_scale {
        w.meta(
            &format!("{a}.rope.scaling.type"),
            MetaValue::String("linear".into()),
        )
        .meta(&format!("{a}.rope.scaling.factor"), MetaValue::F32(f));
    }
    for (name, (dims, data)) in &t {
        w.f32_tensor(name, dims, data);
    }
    let f = tempfile::NamedTempFile::new().expect("tmp");
    w.write_to(f.path()).expect("write");
    (f, t)
}

fn matvec(t: &Tensors, name: &str, x: &[f32]) -> Vec<f32> {
    let (dims, w) = &t[name];
    let cols = dims[0] as usize;
    w.chunks(cols)
        .map(|row| row.iter().zip(x).map(|(a, b)| a * b).sum())
        .collect()
}

fn rmsnorm(x: &[f32], w: &[f32]) -> Vec<f32> {
    let ms = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
    let s = 1.0 / (ms + 1e-6).sqrt();
    x.iter().zip(w).map(|(a, b)| a * s * b).collect()
}

fn rope(x: &mut [f32], pos: usize, v: Variant, t: &Tensors) {
    let neox = v.arch != "llama";
    let half = HD / 2;
    for i in 0..half {
        let mut f = 10000f32.powf(-(2.0 * i as f32) / HD as f32) / v.linear_scale.unwrap_or(1.0);
        if v.freq_factors {
            f /= t["rope_freqs.weight"].1[i];
        }
        let (s, c) = (pos as f32 * f).sin_cos();
        let (a, b) = if neox {
            (i, i + half)
        } else {
            (2 * i, 2 * i + 1)
        };
        let (xa, xb) = (x[a], x[b]);
        x[a] = xa * c - xb * s;
        x[b] = xa * s + xb * c;
    }
}

/// Logits at every position, straight from the definition (no cache, no batching, no quantization).
fn reference(v: Variant, t: &Tensors, tokens: &[u32]) -> Vec<Vec<f32>> {
    let n = tokens.len();
    let mut xs: Vec<Vec<f32>> = tokens
        .iter()
        .map(|&tok| t["token_embd.weight"].1[tok as usize * D..][..D].to_vec())
        .collect();
    for l in 0..LAYERS {
        let p = |s: &str| format!("blk.{l}.{s}");
        let (mut qs, mut ks, mut vs) = (vec![], vec![], vec![]);
        for (pos, x) in xs.iter().enumerate() {
            let h = rmsnorm(x, &t[&p("attn_norm.weight")].1);
            let (mut q, mut k, mut vv) = (
                matvec(t, &p("attn_q.weight"), &h),
                matvec(t, &p("attn_k.weight"), &h),
                matvec(t, &p("attn_v.weight"), &h),
            );
            if v.biases {
                for (buf, b) in [
                    (&mut q, "attn_q.bias"),
                    (&mut k, "attn_k.bias"),
                    (&mut vv, "attn_v.bias"),
                ] {
                    buf.iter_mut().zip(&t[&p(b)].1).for_each(|(a, c)| *a += c);
                }
            }
            for (buf, norm) in [
                (&mut q, "attn_q_norm.weight"),
                (&mut k, "attn_k_norm.weight"),
            ] {
                for head in buf.chunks_mut(HD) {
                    if v.qk_norm {
                        let nh = rmsnorm(head, &t[&p(norm)].1);
                        head.copy_from_slice(&nh);
                    }
                    rope(head, pos, v, t);
                }
            }
            qs.push(q);
            ks.push(k);
            vs.push(vv);
        }
        for i in 0..n {
            let mut att = vec![0f32; HEADS * HD];
            for h in 0..HEADS {
                let g = h / (HEADS / KV_HEADS);
                let q = &qs[i][h * HD..(h + 1) * HD];
                let scores: Vec<f32> = (0..=i)
                    .map(|j| {
                        q.iter()
                            .zip(&ks[j][g * HD..(g + 1) * HD])
                            .map(|(a, b)| a * b)
                            .sum::<f32>()
                            / (HD as f32).sqrt()
                    })
                    .collect();
                let m = scores.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                let e: Vec<f32> = scores.iter().map(|s| (s - m).exp()).collect();
                let z: f32 = e.iter().sum();
                for j in 0..=i {
                    for d in 0..HD {
                        att[h * HD + d] += e[j] / z * vs[j][g * HD + d];
                    }
                }
            }
            let o = matvec(t, &p("attn_output.weight"), &att);
            xs[i].iter_mut().zip(o).for_each(|(a, b)| *a += b);
            let h2 = rmsnorm(&xs[i], &t[&p("ffn_norm.weight")].1);
            let g = matvec(t, &p("ffn_gate.weight"), &h2);
            let u = matvec(t, &p("ffn_up.weight"), &h2);
            let a: Vec<f32> = g
                .iter()
                .zip(&u)
                .map(|(g, u)| g / (1.0 + (-g).exp()) * u)
                .collect();
            let down = matvec(t, &p("ffn_down.weight"), &a);
            xs[i].iter_mut().zip(down).for_each(|(a, b)| *a += b);
        }
    }
    let head = if v.tied {
        "token_embd.weight"
    } else {
        "output.weight"
    };
    xs.iter()
        .map(|x| matvec(t, head, &rmsnorm(x, &t["output_norm.weight"].1)))
        .collect()
}

fn check(v: Variant) {
    let (file, tensors) = build(v);
    let model = Model::load(file.path(), &LoadOptions::default()).expect("load");
    let tokens: Vec<u32> = (0..11).map(|i| (i * 7 + 3) % VOCAB as u32).collect();
    let want = reference(v, &tensors, &tokens);
    let pool = ThreadPool::new(2).expect("threads");
    let mut kv = KvCache::new(LAYERS, KV_HEADS * HD, 1);
    kv.reserve(0, tokens.len());
    let mut scratch = Scratch::default();
    // A 6-token prompt chunk, then one token at a time, as generation runs.
    let mut got = Vec::new();
    let entries = common::positions(&tokens);
    model.forward(&pool, &mut kv, &entries[..6], &mut scratch);
    got.extend(scratch.logits.chunks(VOCAB).map(<[f32]>::to_vec));
    for e in &entries[6..] {
        model.forward(&pool, &mut kv, std::slice::from_ref(e), &mut scratch);
        got.push(scratch.logits.clone());
    }
    for (pos, (g, w)) in got.iter().zip(&want).enumerate() {
        let diff = g
            .iter()
            .zip(w)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(diff < 2e-3, "{}: position {pos} differs by {diff}", v.arch);
    }
}

const BASE: Variant = Variant {
    arch: "llama",
    biases: false,
    qk_norm: false,
    tied: true,
    freq_factors: false,
    linear_scale: None,
};

#[test]
fn llama_gqa_adjacent_pair_rope_tied_head() {
    check(BASE);
}

#[test]
fn llama3_rope_frequency_factors_and_linear_scaling() {
    check(Variant {
        freq_factors: true,
        linear_scale: Some(4.0),
        tied: false,
        ..BASE
    });
}

#[test]
fn qwen2_biases_neox_rope_untied_head() {
    check(Variant {
        arch: "qwen2",
        biases: true,
        tied: false,
        ..BASE
    });
}

#[test]
fn qwen3_qk_norms() {
    check(Variant {
        arch: "qwen3",
        qk_norm: true,
        ..BASE
    });
}

/// `hearth model synth llama`: each file type writes the tensor types llama-quantize would, loads, tokenizes, and
/// generates finite logits; the benchmarks' 1B/3B/8B files are the same code at larger shapes.
#[test]
fn synthetic_llama_files_load_and_generate_in_every_type() {
    use hearth_engine::gguf::GgufFile;
    use hearth_engine::quant::GgmlType;
    use hearth_engine::synth::llama::{llama, FileType, Shape};
    use hearth_engine::{GenerateRequest, LoadedModel, SamplingParams};
    let mut shape = Shape::TINY;
    shape.n_layers = 8; // enough layers for Q4_K_M's per-layer exceptions to show
    for (ft, base, more) in [
        (FileType::Q4KM, GgmlType::Q4K, GgmlType::Q6K),
        (FileType::Q4_0, GgmlType::Q4_0, GgmlType::Q4_0),
        (FileType::Q8_0, GgmlType::Q8_0, GgmlType::Q8_0),
        (FileType::Q6K, GgmlType::Q6K, GgmlType::Q6K),
    ] {
        let file = tempfile::NamedTempFile::new().expect("temp file");
        llama(shape, ft, 3, None)
            .expect("synth")
            .write_to(file.path())
            .expect("write");
        let g = GgufFile::open(file.path()).expect("open");
        let ty = |n: &str| g.tensor_info(n).map(|t| t.ty);
        assert_eq!(ty("blk.1.attn_q.weight"), Some(base), "{ft:?}");
        // use_more_bits(i, 8) picks layer 0 (the first n/8) and not layer 1.
        assert_eq!(ty("blk.0.attn_v.weight"), Some(more), "{ft:?}");
        assert_eq!(ty("blk.0.ffn_down.weight"), Some(more), "{ft:?}");
        assert_eq!(ty("blk.1.ffn_down.weight"), Some(base), "{ft:?}");
        let head = if ft == FileType::Q8_0 {
            GgmlType::Q8_0
        } else {
            GgmlType::Q6K
        };
        assert_eq!(ty("token_embd.weight"), Some(head), "tied: the head's type");
        assert!(ty("output.weight").is_none());

        let lm = LoadedModel::load(file.path(), &LoadOptions::default(), 2).expect("load");
        let text = "Hello, world! ½";
        let ids = lm.tokenizer.encode(text, false).expect("encode");
        assert_eq!(
            lm.tokenizer.decode(&ids),
            text,
            "byte-level BPE round-trips"
        );
        let mut batch = lm.new_batch(1, 64);
        batch
            .add(GenerateRequest {
                prompt: ids,
                max_tokens: 8,
                sampling: SamplingParams::greedy(),
                stop: Vec::new(),
                ignore_eos: true,
                json_object: false,
                schema: None,
                no_speculation: true,
                logprobs: None,
            })
            .expect("add");
        let events = batch.run_to_completion();
        let n = events
            .iter()
            .filter(|e| matches!(e, hearth_engine::Event::Token { .. }))
            .count();
        assert_eq!(n, 8, "{ft:?} generates");
        let pool = ThreadPool::new(2).expect("threads");
        let mut kv = KvCache::new(8, 64, 1);
        kv.reserve(0, 4);
        let mut scratch = Scratch::default();
        lm.model.forward(
            &pool,
            &mut kv,
            &common::positions(&[300, 301, 302, 303]),
            &mut scratch,
        );
        assert!(
            scratch.logits.iter().all(|v| v.is_finite())
                && scratch.logits.iter().any(|&v| v != 0.0),
            "{ft:?}: logits finite and not all zero"
        );
    }
}
