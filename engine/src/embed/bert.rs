//! BERT's encoder (as in sentence-transformers' MiniLM and similar): learned absolute positions, post-norm
//! layers with bidirectional attention, exact (erf) GELU. Weights as the Hugging Face checkpoint names them.

use crate::error::{EngineError, Result};
use crate::ops::dot;

/// Where BERT's weights come from, asked for by their Hugging Face names (`encoder.layer.0.attention.self.query
/// .weight`) and PyTorch shapes ([out, in]): a safetensors checkpoint, or a GGUF file that names them as
/// llama.cpp does (`embed::gguf`).
pub trait Tensors {
    /// The tensor as f32, checked to have `shape`.
    fn tensor(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>>;
    /// Whether the source has a tensor of that name.
    fn has(&self, name: &str) -> bool;
}

impl Tensors for super::safetensors::SafeTensors {
    fn tensor(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        Ok(self.get(name, shape)?.data)
    }
    fn has(&self, name: &str) -> bool {
        self.names().any(|n| n == name)
    }
}

/// The Hugging Face names of every tensor the encoder reads, with their shapes.
pub fn tensor_names(c: &BertConfig) -> Vec<(String, Vec<usize>)> {
    let (h, i) = (c.hidden, c.intermediate);
    let mut out = vec![
        ("embeddings.word_embeddings.weight".into(), vec![c.vocab, h]),
        (
            "embeddings.position_embeddings.weight".into(),
            vec![c.positions, h],
        ),
        (
            "embeddings.token_type_embeddings.weight".into(),
            vec![c.type_vocab, h],
        ),
        ("embeddings.LayerNorm.weight".into(), vec![h]),
        ("embeddings.LayerNorm.bias".into(), vec![h]),
    ];
    for l in 0..c.layers {
        for (part, o, n) in [
            ("attention.self.query", h, h),
            ("attention.self.key", h, h),
            ("attention.self.value", h, h),
            ("attention.output.dense", h, h),
            ("intermediate.dense", i, h),
            ("output.dense", h, i),
        ] {
            out.push((format!("encoder.layer.{l}.{part}.weight"), vec![o, n]));
            out.push((format!("encoder.layer.{l}.{part}.bias"), vec![o]));
        }
        for part in ["attention.output.LayerNorm", "output.LayerNorm"] {
            out.push((format!("encoder.layer.{l}.{part}.weight"), vec![h]));
            out.push((format!("encoder.layer.{l}.{part}.bias"), vec![h]));
        }
    }
    out
}

#[derive(Debug, Clone)]
pub struct BertConfig {
    pub vocab: usize,
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub intermediate: usize,
    pub positions: usize,
    pub type_vocab: usize,
    pub eps: f32,
}

impl BertConfig {
    /// From a checkpoint's config.json (`model_type: bert`, GELU activation).
    pub fn from_json(v: &serde_json::Value) -> Result<BertConfig> {
        let bad = |m: String| EngineError::Metadata(format!("config.json: {m}"));
        if v["model_type"] != "bert" {
            return Err(EngineError::UnsupportedArchitecture(
                v["model_type"].as_str().unwrap_or("?").to_owned(),
            ));
        }
        if v["hidden_act"].as_str().is_some_and(|a| a != "gelu") {
            return Err(bad(format!(
                "hidden_act {} is not supported (gelu)",
                v["hidden_act"]
            )));
        }
        let n = |k: &str| {
            v[k].as_u64()
                .filter(|&x| x > 0 && x < 1 << 24)
                .map(|x| x as usize)
                .ok_or_else(|| bad(format!("'{k}' is missing or out of range")))
        };
        let c = BertConfig {
            vocab: n("vocab_size")?,
            hidden: n("hidden_size")?,
            layers: n("num_hidden_layers")?,
            heads: n("num_attention_heads")?,
            intermediate: n("intermediate_size")?,
            positions: n("max_position_embeddings")?,
            type_vocab: n("type_vocab_size").unwrap_or(2),
            eps: v["layer_norm_eps"].as_f64().unwrap_or(1e-12) as f32,
        };
        if !(c.hidden.is_multiple_of(c.heads) && c.eps > 0.0 && c.eps < 1.0) {
            return Err(bad(
                "hidden_size must divide into the heads, layer_norm_eps in (0, 1)".into(),
            ));
        }
        Ok(c)
    }
}

/// A linear layer, weight rows = outputs (PyTorch's layout).
struct Linear {
    w: Vec<f32>,
    b: Vec<f32>,
    inp: usize,
    out: usize,
}

impl Linear {
    fn load(st: &dyn Tensors, name: &str, out: usize, inp: usize) -> Result<Linear> {
        Ok(Linear {
            w: st.tensor(&format!("{name}.weight"), &[out, inp])?,
            b: st.tensor(&format!("{name}.bias"), &[out])?,
            inp,
            out,
        })
    }

    /// y = x·Wᵀ + b for each of the rows of x.
    fn forward(&self, x: &[f32]) -> Vec<f32> {
        let rows = x.len() / self.inp;
        let mut y = vec![0f32; rows * self.out];
        let work = |(chunk, out): (usize, &mut [f32])| {
            let r = chunk;
            let xr = &x[r * self.inp..(r + 1) * self.inp];
            for (o, y) in out.iter_mut().enumerate() {
                *y = dot(xr, &self.w[o * self.inp..(o + 1) * self.inp]) + self.b[o];
            }
        };
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        if rows < 2 || threads < 2 {
            y.chunks_mut(self.out).enumerate().for_each(work);
        } else {
            let per = rows.div_ceil(threads);
            std::thread::scope(|s| {
                for (i, part) in y.chunks_mut(per * self.out).enumerate() {
                    s.spawn(move || {
                        part.chunks_mut(self.out)
                            .enumerate()
                            .for_each(|(j, out)| work((i * per + j, out)));
                    });
                }
            });
        }
        y
    }
}

struct Norm {
    w: Vec<f32>,
    b: Vec<f32>,
}

impl Norm {
    fn load(st: &dyn Tensors, name: &str, n: usize) -> Result<Norm> {
        Ok(Norm {
            w: st.tensor(&format!("{name}.weight"), &[n])?,
            b: st.tensor(&format!("{name}.bias"), &[n])?,
        })
    }

    fn apply(&self, x: &mut [f32], eps: f32) {
        for row in x.chunks_mut(self.w.len()) {
            let n = row.len() as f32;
            let mean = row.iter().sum::<f32>() / n;
            let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
            let inv = 1.0 / (var + eps).sqrt();
            for ((v, w), b) in row.iter_mut().zip(&self.w).zip(&self.b) {
                *v = (*v - mean) * inv * w + b;
            }
        }
    }
}

struct Layer {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    attn_norm: Norm,
    up: Linear,
    down: Linear,
    out_norm: Norm,
}

pub struct Bert {
    pub config: BertConfig,
    words: Vec<f32>,
    positions: Vec<f32>,
    types: Vec<f32>,
    emb_norm: Norm,
    layers: Vec<Layer>,
}

/// erf, Abramowitz & Stegun 7.1.26 refined (|error| < 1.2e-7): the exact GELU BERT was trained with.
fn erf(x: f32) -> f32 {
    let x = x as f64;
    let t = 1.0 / (1.0 + 0.5 * x.abs());
    let y = 1.0
        - t * (-x * x - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    (if x >= 0.0 { y } else { -y }) as f32
}

fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

impl Bert {
    pub fn load(st: &dyn Tensors, config: BertConfig) -> Result<Bert> {
        // Some checkpoints prefix every name with `bert.` (BertModel inside a task model).
        let p = if st.has("bert.embeddings.word_embeddings.weight") {
            "bert."
        } else {
            ""
        };
        let (h, i) = (config.hidden, config.intermediate);
        let mut layers = Vec::with_capacity(config.layers);
        for l in 0..config.layers {
            let at = |s: &str| format!("{p}encoder.layer.{l}.{s}");
            layers.push(Layer {
                q: Linear::load(st, &at("attention.self.query"), h, h)?,
                k: Linear::load(st, &at("attention.self.key"), h, h)?,
                v: Linear::load(st, &at("attention.self.value"), h, h)?,
                o: Linear::load(st, &at("attention.output.dense"), h, h)?,
                attn_norm: Norm::load(st, &at("attention.output.LayerNorm"), h)?,
                up: Linear::load(st, &at("intermediate.dense"), i, h)?,
                down: Linear::load(st, &at("output.dense"), h, i)?,
                out_norm: Norm::load(st, &at("output.LayerNorm"), h)?,
            });
        }
        Ok(Bert {
            words: st.tensor(
                &format!("{p}embeddings.word_embeddings.weight"),
                &[config.vocab, h],
            )?,
            positions: st.tensor(
                &format!("{p}embeddings.position_embeddings.weight"),
                &[config.positions, h],
            )?,
            types: st.tensor(
                &format!("{p}embeddings.token_type_embeddings.weight"),
                &[config.type_vocab, h],
            )?,
            emb_norm: Norm::load(st, &format!("{p}embeddings.LayerNorm"), h)?,
            layers,
            config,
        })
    }

    /// The last hidden states of several sequences in one pass: every linear layer runs over all their tokens
    /// at once, attention within each sequence (`ids` within the vocabulary and the position table).
    pub fn forward(&self, seqs: &[&[u32]]) -> Vec<Vec<f32>> {
        let c = &self.config;
        let h = c.hidden;
        let total: usize = seqs.iter().map(|s| s.len()).sum();
        let mut x = vec![0f32; total * h];
        let mut starts = Vec::with_capacity(seqs.len());
        let mut row = 0;
        for ids in seqs {
            starts.push(row);
            for (t, &id) in ids.iter().enumerate() {
                let out = &mut x[(row + t) * h..(row + t + 1) * h];
                let w = &self.words[id as usize * h..(id as usize + 1) * h];
                let p = &self.positions[t * h..(t + 1) * h];
                for j in 0..h {
                    out[j] = w[j] + p[j] + self.types[j];
                }
            }
            row += ids.len();
        }
        self.emb_norm.apply(&mut x, c.eps);
        let d = h / c.heads;
        let scale = 1.0 / (d as f32).sqrt();
        for layer in &self.layers {
            let (q, k, v) = (
                layer.q.forward(&x),
                layer.k.forward(&x),
                layer.v.forward(&x),
            );
            let mut ctx = vec![0f32; total * h];
            for (ids, &s0) in seqs.iter().zip(&starts) {
                let n = ids.len();
                let mut scores = vec![0f32; n];
                for head in 0..c.heads {
                    let off = head * d;
                    for i in s0..s0 + n {
                        let qi = &q[i * h + off..i * h + off + d];
                        for (j, s) in scores.iter_mut().enumerate() {
                            let kj = (s0 + j) * h + off;
                            *s = dot(qi, &k[kj..kj + d]) * scale;
                        }
                        crate::ops::softmax_inplace(&mut scores);
                        let out = &mut ctx[i * h + off..i * h + off + d];
                        for (j, &s) in scores.iter().enumerate() {
                            let vj = (s0 + j) * h + off;
                            crate::ops::axpy(out, s, &v[vj..vj + d]);
                        }
                    }
                }
            }
            let mut a = layer.o.forward(&ctx);
            a.iter_mut().zip(&x).for_each(|(a, x)| *a += x);
            layer.attn_norm.apply(&mut a, c.eps);
            let mut up = layer.up.forward(&a);
            up.iter_mut().for_each(|u| *u = gelu(*u));
            let mut out = layer.down.forward(&up);
            out.iter_mut().zip(&a).for_each(|(o, a)| *o += a);
            layer.out_norm.apply(&mut out, c.eps);
            x = out;
        }
        seqs.iter()
            .zip(&starts)
            .map(|(ids, &s0)| x[s0 * h..(s0 + ids.len()) * h].to_vec())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn erf_matches_known_values() {
        for (x, want) in [
            (0.0f32, 0.0f32),
            (0.5, 0.520_499_9),
            (1.0, 0.842_700_8),
            (-2.0, -0.995_322_3),
            (3.5, 0.999_999_3),
        ] {
            assert!((super::erf(x) - want).abs() < 1e-6, "erf({x})");
        }
    }
}
