//! The transformer forward pass over a set of entries (one token of one sequence each). Entries of different
//! sequences share every matmul — that is what makes continuous batching pay: the weights are read once per step.

use super::config::{Activation, Rope};
use super::{Layer, Model};
use crate::attention::{self, KvSpan};
use crate::kv::KvCache;
use crate::ops;
use crate::quant::{quantize_acts_as, QActs};
use crate::ternary::{quantize_per_token, rms_norm_quantize};
use crate::threadpool::{split_range, SharedMut, ThreadPool};
use crate::weights::{act_format, matmul, Weight};

/// One token to run: sequence slot, its position, and whether its logits are needed.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    pub slot: usize,
    pub pos: usize,
    pub token: u32,
    pub want_logits: bool,
}

/// Buffers reused across steps so a decode step allocates nothing once warmed up.
#[derive(Default)]
pub struct Scratch {
    x: Vec<f32>,
    xb: Vec<f32>,
    xq: QActs,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    att: Vec<f32>,
    tmp: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
    cs_global: Vec<(f32, f32)>,
    cs_local: Vec<(f32, f32)>,
    scores: Vec<Vec<f32>>,
    /// The step's prompt tiles (`prompt_tiles`), the same for every layer.
    tiles: Vec<std::ops::Range<usize>>,
    xo: Vec<f32>,
    outs: Vec<usize>,
    /// Logits of the entries that asked for them, in entry order: [n_out × vocab].
    pub logits: Vec<f32>,
    rescore: super::rescore::RescoreScratch,
}

fn fill_rope(rope: &Rope, entries: &[Entry], out: &mut Vec<(f32, f32)>) {
    let half = rope.dims / 2;
    out.resize(entries.len() * half, (1.0, 0.0));
    for (e, chunk) in entries.iter().zip(out.chunks_exact_mut(half.max(1))) {
        for (i, cs) in chunk.iter_mut().enumerate().take(half) {
            let (s, c) = (e.pos as f32 * rope.inv_freq[i]).sin_cos();
            *cs = (c, s);
        }
    }
}

/// Floats of queries a prompt tile holds (rows × the group's heads × head width): 32 KiB, beside the key pair
/// and the value block in L1/L2.
const TILE_FLOATS: usize = 8192;

/// Entries split into tiles: runs of consecutive positions of one sequence (a prompt chunk), at most `max` long;
/// a generating sequence's lone entry is a tile of one.
fn prompt_tiles(entries: &[Entry], max: usize, tiles: &mut Vec<std::ops::Range<usize>>) {
    tiles.clear();
    for (i, e) in entries.iter().enumerate() {
        match tiles.last_mut() {
            Some(t)
                if t.len() < max
                    && entries[t.end - 1].slot == e.slot
                    && entries[t.end - 1].pos + 1 == e.pos =>
            {
                t.end = i + 1
            }
            _ => tiles.push(i..i + 1),
        }
    }
}

/// One scores buffer per thread, each at least `need` floats.
fn score_buffers(s: &mut Scratch, threads: usize, need: usize) {
    s.scores.resize_with(threads, Vec::new);
    for sc in &mut s.scores {
        if sc.len() < need {
            sc.resize(need, 0.0);
        }
    }
}

/// KV head `g`'s cache in `layer` for positions 0..n_pos, as attention reads it.
fn kv_span(
    kv: &KvCache,
    slot: usize,
    layer: usize,
    g: usize,
    hd: usize,
    n_pos: usize,
) -> KvSpan<'_> {
    let head = kv.head(slot, layer, g, hd, n_pos);
    KvSpan {
        keys: head.keys,
        vals: head.vals,
        stride: head.stride,
        offset: head.offset,
        hd,
    }
}

/// Runs `f` over `0..n` split across the pool.
fn par_for(pool: &ThreadPool, n: usize, f: &(dyn Fn(std::ops::Range<usize>) + Sync)) {
    if n < 2 {
        f(0..n);
        return;
    }
    pool.run(&|ti, nt| f(split_range(n, nt, ti)));
}

impl Model {
    /// Runs the entries through the model, writing their keys/values into `kv` and the logits of the entries
    /// with `want_logits` into `scratch.logits`. Slots must have room (`KvCache::reserve`) for every position.
    pub fn forward(&self, pool: &ThreadPool, kv: &mut KvCache, entries: &[Entry], s: &mut Scratch) {
        let c = &self.config;
        let n = entries.len();
        let d = c.d_model;
        let (hd, nh, nkv) = (c.head_dim, c.n_heads, c.n_kv_heads);
        let (q_dim, kv_dim) = (nh * hd, nkv * hd);
        s.x.resize(n * d, 0.0);
        s.xb.resize(n * d, 0.0);
        s.q.resize(n * q_dim, 0.0);
        s.k.resize(n * kv_dim, 0.0);
        s.v.resize(n * kv_dim, 0.0);
        s.att.resize(n * q_dim, 0.0);
        s.tmp.resize(n * d, 0.0);
        s.gate.resize(n * c.ffn_dim, 0.0);
        s.up.resize(n * c.ffn_dim, 0.0);

        for (e, row) in entries.iter().zip(s.x.chunks_exact_mut(d)) {
            self.embed.dequantize_row(e.token as usize, row);
            if let Some(scale) = c.embed_scale {
                row.iter_mut().for_each(|v| *v *= scale);
            }
        }
        fill_rope(&c.rope_global, entries, &mut s.cs_global);
        fill_rope(&c.rope_local, entries, &mut s.cs_local);
        prompt_tiles(
            entries,
            (TILE_FLOATS / (nh / nkv * hd)).clamp(2, 16),
            &mut s.tiles,
        );

        for (l, layer) in self.layers.iter().enumerate() {
            self.attention_block(pool, kv, entries, l, layer, s);
            self.ffn_block(pool, n, layer, s);
        }

        // Output head, only for entries that need logits.
        s.outs.clear();
        s.outs.extend((0..n).filter(|&i| entries[i].want_logits));
        let n_out = s.outs.len();
        s.xo.resize(n_out * d, 0.0);
        for (j, &i) in s.outs.iter().enumerate() {
            ops::rms_norm(
                &s.x[i * d..(i + 1) * d],
                &self.output_norm,
                c.rms_eps,
                &mut s.xo[j * d..(j + 1) * d],
            );
        }
        s.logits.resize(n_out * c.vocab_size, 0.0);
        if n_out > 0 {
            use super::rescore::{rescore, Scoring};
            // A head that reads quantized activations has the rows that can hold the maximum scored again from
            // the f32 activations: the top of the distribution (what greedy decoding, `top_logprobs` and
            // speculative verification look at) without the activations' rounding, for a few dozen rows a token
            // (Gemma 3: top-1 agreement with llama.cpp's f32 reference 94.4 % -> 95.8 %). After the int4 pass of
            // a head that does not, its own kernel rescores them, bit for bit.
            let quantized = self.output.uses_int8_acts() || self.output.wants_per_token();
            let again = if quantized {
                Some(Scoring::Exact)
            } else {
                self.coarse_head.as_ref().map(|_| Scoring::Kernel)
            };
            if let Some(coarse) = &self.coarse_head {
                quantize_per_token(&s.xo, d, &mut s.xq);
                coarse.matmul(pool, &s.xq, n_out, &mut s.rescore, &mut s.logits);
            } else {
                if self.output.wants_per_token() {
                    quantize_per_token(&s.xo, d, &mut s.xq);
                } else {
                    quantize_acts_as(self.output.act_format(), &s.xo, d, &mut s.xq);
                }
                matmul(
                    pool,
                    &mut [(&self.output, &mut s.logits)],
                    &s.xo,
                    &s.xq,
                    n_out,
                );
            }
            if let Some(how) = again {
                let v = c.vocab_size;
                for j in 0..n_out {
                    rescore(
                        &self.output,
                        how,
                        &s.xo[j * d..(j + 1) * d],
                        &mut s.logits[j * v..(j + 1) * v],
                        &mut s.rescore,
                    );
                }
            }
            if let Some(cap) = c.final_logit_softcap {
                s.logits
                    .iter_mut()
                    .for_each(|v| *v = (*v / cap).tanh() * cap);
            }
        }
    }

    /// Activations entering the matrices `ws`: per token (BitNet's reference), or in the form their kernels read
    /// (`act_format`).
    fn quantize(&self, ws: &[&Weight], x: &[f32], cols: usize, xq: &mut QActs) {
        if self.config.per_token_acts {
            quantize_per_token(x, cols, xq);
        } else {
            quantize_acts_as(act_format(ws), x, cols, xq);
        }
    }

    /// RMSNorm of each row of `x` into `xb` and its quantized form for `ws` into `xq` (one fused pass per token
    /// when quantizing per token).
    fn norm_quantize(&self, ws: &[&Weight], x: &[f32], w: &[f32], xb: &mut [f32], xq: &mut QActs) {
        let c = &self.config;
        if c.per_token_acts {
            rms_norm_quantize(x, w, c.rms_eps, xb, xq);
        } else {
            for (x, xb) in x
                .chunks_exact(c.d_model)
                .zip(xb.chunks_exact_mut(c.d_model))
            {
                ops::rms_norm(x, w, c.rms_eps, xb);
            }
            quantize_acts_as(act_format(ws), xb, c.d_model, xq);
        }
    }

    fn attention_block(
        &self,
        pool: &ThreadPool,
        kv: &mut KvCache,
        entries: &[Entry],
        l: usize,
        layer: &Layer,
        s: &mut Scratch,
    ) {
        let c = &self.config;
        let n = entries.len();
        let d = c.d_model;
        let (hd, nh, nkv) = (c.head_dim, c.n_heads, c.n_kv_heads);
        let (q_dim, kv_dim) = (nh * hd, nkv * hd);

        let qkv = [&layer.wq, &layer.wk, &layer.wv];
        self.norm_quantize(&qkv, &s.x, &layer.attn_norm, &mut s.xb, &mut s.xq);
        matmul(
            pool,
            &mut [
                (&layer.wq, &mut s.q[..]),
                (&layer.wk, &mut s.k[..]),
                (&layer.wv, &mut s.v[..]),
            ],
            &s.xb,
            &s.xq,
            n,
        );
        for (buf, bias) in [
            (&mut s.q, &layer.bq),
            (&mut s.k, &layer.bk),
            (&mut s.v, &layer.bv),
        ] {
            if let Some(b) = bias {
                for row in buf.chunks_exact_mut(b.len()) {
                    row.iter_mut().zip(b).for_each(|(v, bi)| *v += bi);
                }
            }
        }
        if let Some(w) = &layer.q_norm {
            s.q.chunks_exact_mut(hd)
                .for_each(|h| ops::rms_norm_inplace(h, w, c.rms_eps));
        }
        if let Some(w) = &layer.k_norm {
            s.k.chunks_exact_mut(hd)
                .for_each(|h| ops::rms_norm_inplace(h, w, c.rms_eps));
        }
        let swa = c.layer_is_swa[l];
        let (rope, cs) = if swa {
            (&c.rope_local, &s.cs_local)
        } else {
            (&c.rope_global, &s.cs_global)
        };
        let half = rope.dims / 2;
        for (i, e) in entries.iter().enumerate() {
            let cs_e = &cs[i * half..(i + 1) * half];
            for h in s.q[i * q_dim..(i + 1) * q_dim].chunks_exact_mut(hd) {
                ops::rope_head(&mut h[..rope.dims], cs_e, rope.neox);
            }
            for h in s.k[i * kv_dim..(i + 1) * kv_dim].chunks_exact_mut(hd) {
                ops::rope_head(&mut h[..rope.dims], cs_e, rope.neox);
            }
            kv.write(
                e.slot,
                l,
                e.pos,
                &s.k[i * kv_dim..(i + 1) * kv_dim],
                &s.v[i * kv_dim..(i + 1) * kv_dim],
            );
        }

        let window = if swa { c.sliding_window } else { None };
        if s.tiles.len() < n {
            // Taken out for the call (it reads them while writing the rest of the scratch), then put back.
            let tiles = std::mem::take(&mut s.tiles);
            self.attend_tiles(pool, kv, entries, &tiles, l, window, s);
            s.tiles = tiles;
        } else {
            self.attend_entries(pool, kv, entries, l, window, s);
        }

        if let Some(w) = &layer.attn_sub_norm {
            s.att
                .chunks_exact_mut(q_dim)
                .for_each(|r| ops::rms_norm_inplace(r, w, c.rms_eps));
        }
        self.quantize(&[&layer.wo], &s.att, q_dim, &mut s.xq);
        matmul(pool, &mut [(&layer.wo, &mut s.tmp[..])], &s.att, &s.xq, n);
        if let Some(w) = &layer.post_attn_norm {
            s.tmp
                .chunks_exact_mut(d)
                .for_each(|r| ops::rms_norm_inplace(r, w, c.rms_eps));
        }
        s.x.iter_mut().zip(&s.tmp).for_each(|(x, t)| *x += t);
    }

    /// Attention for entries one at a time (generation): one task per (entry, KV head, run of its query heads) —
    /// each key and value row is read once for all the heads of a task. A run is the whole group unless that
    /// leaves the threads short of work (one sequence generating: one task per head then).
    #[allow(clippy::too_many_arguments)] // the layer's state, as attention_block holds it
    fn attend_entries(
        &self,
        pool: &ThreadPool,
        kv: &KvCache,
        entries: &[Entry],
        l: usize,
        window: Option<usize>,
        s: &mut Scratch,
    ) {
        let c = &self.config;
        let n = entries.len();
        let (hd, nh, nkv) = (c.head_dim, c.n_heads, c.n_kv_heads);
        let q_dim = nh * hd;
        let max_pos = entries.iter().map(|e| e.pos + 1).max().unwrap_or(0);
        let group = nh / nkv;
        let mut run_len = group;
        while run_len > 1 && n * nkv * group.div_ceil(run_len) < 2 * pool.n_threads() {
            run_len = run_len.div_ceil(2);
        }
        let runs = group.div_ceil(run_len);
        score_buffers(s, pool.n_threads(), run_len * max_pos);
        let scores = SharedMut(s.scores.as_mut_ptr());
        let att = SharedMut(s.att.as_mut_ptr());
        let q = &s.q;
        let scale = c.attn_scale;
        let task = |ti: usize, range: std::iter::StepBy<std::ops::Range<usize>>| {
            // SAFETY: thread `ti` owns scores[ti]; each task writes only its own heads' slice of `att`.
            let sc_buf = unsafe { &mut *scores.ptr().add(ti) };
            for t in range {
                let (i, g, r) = (t / (nkv * runs), t / runs % nkv, t % runs);
                let e = entries[i];
                let n_pos = e.pos + 1;
                let lo = window.map_or(0, |w| n_pos.saturating_sub(w));
                let span = kv_span(kv, e.slot, l, g, hd, n_pos);
                let h0 = g * group + r * run_len;
                let h1 = (h0 + run_len).min((g + 1) * group);
                let qs = &q[i * q_dim + h0 * hd..i * q_dim + h1 * hd];
                let out = unsafe {
                    std::slice::from_raw_parts_mut(
                        att.ptr().add(i * q_dim + h0 * hd),
                        (h1 - h0) * hd,
                    )
                };
                attention::attend(qs, span, (lo, n_pos), scale, sc_buf, out);
            }
        };
        let n_tasks = n * nkv * runs;
        if n_tasks < 2 || n_tasks * max_pos < 512 {
            task(0, (0..n_tasks).step_by(1));
        } else {
            // Strided, not contiguous: in a prompt chunk later entries attend to more positions (causal
            // triangle), so contiguous ranges would leave one thread with most of the work.
            pool.run(&|ti, nt| task(ti, (ti..n_tasks).step_by(nt)));
        }
    }

    /// Attention for prompt chunks: one task per (tile of consecutive positions of one sequence, KV head), every
    /// query head of the group and every row of the tile read each key and value row once
    /// (`attention::attend_rows`); the result is bit-identical to `attend_entries`.
    #[allow(clippy::too_many_arguments)] // the layer's state, as attention_block holds it
    fn attend_tiles(
        &self,
        pool: &ThreadPool,
        kv: &KvCache,
        entries: &[Entry],
        tiles: &[std::ops::Range<usize>],
        l: usize,
        window: Option<usize>,
        s: &mut Scratch,
    ) {
        let c = &self.config;
        let (hd, nh, nkv) = (c.head_dim, c.n_heads, c.n_kv_heads);
        let (q_dim, group) = (nh * hd, nh / nkv);
        let need = tiles
            .iter()
            .map(|t| t.len() * group * (entries[t.end - 1].pos + 1))
            .max()
            .unwrap_or(0);
        score_buffers(s, pool.n_threads(), need);
        let scores = SharedMut(s.scores.as_mut_ptr());
        let att = SharedMut(s.att.as_mut_ptr());
        let q = &s.q;
        let scale = c.attn_scale;
        let task = |ti: usize, range: std::iter::StepBy<std::ops::Range<usize>>| {
            // SAFETY: thread `ti` owns scores[ti]; each task writes only its own rows' heads of `att`.
            let sc_buf = unsafe { &mut *scores.ptr().add(ti) };
            for t in range {
                let (tile, g) = (&tiles[t / nkv], t % nkv);
                let last = entries[tile.end - 1];
                let span = kv_span(kv, last.slot, l, g, hd, last.pos + 1);
                let mut rows: Vec<attention::Row<'_>> = tile
                    .clone()
                    .map(|i| {
                        let n_pos = entries[i].pos + 1;
                        let at = i * q_dim + g * group * hd;
                        attention::Row {
                            q: &q[at..at + group * hd],
                            span: (window.map_or(0, |w| n_pos.saturating_sub(w)), n_pos),
                            out: unsafe {
                                std::slice::from_raw_parts_mut(att.ptr().add(at), group * hd)
                            },
                        }
                    })
                    .collect();
                attention::attend_rows(&mut rows, span, scale, sc_buf);
            }
        };
        let n_tasks = tiles.len() * nkv;
        let max_pos = entries.iter().map(|e| e.pos + 1).max().unwrap_or(0);
        if n_tasks < 2 || n_tasks * max_pos < 512 {
            task(0, (0..n_tasks).step_by(1));
        } else {
            // Strided: later tiles of a prompt attend to more positions (causal triangle).
            pool.run(&|ti, nt| task(ti, (ti..n_tasks).step_by(nt)));
        }
    }

    fn ffn_block(&self, pool: &ThreadPool, n: usize, layer: &Layer, s: &mut Scratch) {
        let c = &self.config;
        let d = c.d_model;
        let f = c.ffn_dim;
        let gate_up = [&layer.w_gate, &layer.w_up];
        self.norm_quantize(&gate_up, &s.x, &layer.ffn_norm, &mut s.xb, &mut s.xq);
        matmul(
            pool,
            &mut [
                (&layer.w_gate, &mut s.gate[..]),
                (&layer.w_up, &mut s.up[..]),
            ],
            &s.xb,
            &s.xq,
            n,
        );
        let gate = SharedMut(s.gate.as_mut_ptr());
        let up = &s.up;
        let act = c.activation;
        par_for(pool, n, &|range| {
            for i in range {
                // SAFETY: each thread owns rows `range` of gate.
                let g = unsafe { std::slice::from_raw_parts_mut(gate.ptr().add(i * f), f) };
                let u = &up[i * f..(i + 1) * f];
                match act {
                    Activation::Silu => g
                        .iter_mut()
                        .zip(u)
                        .for_each(|(g, u)| *g = ops::silu(*g) * u),
                    Activation::GeluTanh => g
                        .iter_mut()
                        .zip(u)
                        .for_each(|(g, u)| *g = ops::gelu_tanh(*g) * u),
                    Activation::ReluSquared => g.iter_mut().zip(u).for_each(|(g, u)| {
                        let r = g.max(0.0);
                        *g = r * r * u
                    }),
                }
            }
        });
        if let Some(w) = &layer.ffn_sub_norm {
            s.gate
                .chunks_exact_mut(f)
                .for_each(|r| ops::rms_norm_inplace(r, w, c.rms_eps));
        }
        self.quantize(&[&layer.w_down], &s.gate, f, &mut s.xq);
        matmul(
            pool,
            &mut [(&layer.w_down, &mut s.tmp[..])],
            &s.gate,
            &s.xq,
            n,
        );
        if let Some(w) = &layer.post_ffn_norm {
            s.tmp
                .chunks_exact_mut(d)
                .for_each(|r| ops::rms_norm_inplace(r, w, c.rms_eps));
        }
        s.x.iter_mut().zip(&s.tmp).for_each(|(x, t)| *x += t);
    }
}
