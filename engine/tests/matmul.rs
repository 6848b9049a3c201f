//! `weights::matmul` against a plain dequantize-then-dot reference, for every way it splits work: token counts
//! 1–11 (one token, multi-token groups, their remainders), row counts that are not multiples of the tiles, one
//! and two threads, each kernel path this CPU has. And the batching invariant the speculative verifier relies on:
//! a token's outputs are bit-identical whatever else shares the pass.
#![allow(clippy::unwrap_used)]

use hearth_engine::gguf::writer::GgufWriter;
use hearth_engine::gguf::GgufFile;
use hearth_engine::quant::dot::Isa;
use hearth_engine::quant::{quantize_acts_as, quantize_q8_0, GgmlType, QActs};
use hearth_engine::threadpool::ThreadPool;
use hearth_engine::weights::{matmul, Weight};
use std::sync::Arc;

const ROWS: usize = 37;
const COLS: usize = 256;

fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 2.0
        })
        .collect()
}

/// A Q8_0 matrix in a real GGUF file; the F16 and F32 forms come from `Weight::converted`, as `dtype` does.
fn weights(isa: Isa) -> (tempfile::NamedTempFile, Vec<Weight>) {
    let w = values(ROWS * COLS, 7);
    let mut g = GgufWriter::default();
    g.tensor(
        "w",
        &[COLS as u64, ROWS as u64],
        GgmlType::Q8_0,
        quantize_q8_0(&w),
    );
    let f = tempfile::NamedTempFile::new().unwrap();
    g.write_to(f.path()).unwrap();
    let file = Arc::new(GgufFile::open(f.path()).unwrap());
    let q8 = Weight::from_file(&file, "w", isa).unwrap();
    let f16 = q8.converted(GgmlType::F16, isa).unwrap();
    let f32w = q8.converted(GgmlType::F32, isa).unwrap();
    (f, vec![q8, f16, f32w])
}

fn reference(w: &Weight, x: &[f32], xq: &QActs, n_tok: usize) -> Vec<f32> {
    let mut row = vec![0f32; COLS];
    let mut out = vec![0f32; n_tok * ROWS];
    for r in 0..ROWS {
        w.dequantize_row(r, &mut row);
        for t in 0..n_tok {
            // Integer kernels see the int8 activations; float kernels the f32 ones.
            out[t * ROWS + r] = (0..COLS)
                .map(|i| {
                    let xi = if w.uses_int8_acts() {
                        xq.q[t * COLS + i] as f32 * xq.d[(t * COLS + i) / 32]
                    } else {
                        x[t * COLS + i]
                    };
                    row[i] * xi
                })
                .sum();
        }
    }
    out
}

fn product(pool: &ThreadPool, w: &Weight, x: &[f32], n_tok: usize) -> Vec<f32> {
    let mut xq = QActs::default();
    if w.uses_int8_acts() {
        quantize_acts_as(w.act_format(), x, COLS, &mut xq);
    }
    let mut out = vec![0f32; n_tok * ROWS];
    matmul(pool, &mut [(w, &mut out[..])], x, &xq, n_tok);
    out
}

#[test]
fn matmul_equals_the_reference_for_every_token_count_and_thread_count() {
    let mut isas = vec![Isa::Scalar];
    if Isa::best_supported() != Isa::Scalar {
        isas.push(Isa::Avx2);
    }
    if Isa::best_supported() == Isa::Avx512Vnni {
        isas.push(Isa::Avx512Vnni);
    }
    for isa in isas {
        let (_file, ws) = weights(isa);
        for threads in [1, 2] {
            let pool = ThreadPool::new(threads).unwrap();
            for n_tok in 1..=11 {
                let x = values(n_tok * COLS, 100 + n_tok as u64);
                for w in &ws {
                    let mut xq = QActs::default();
                    quantize_acts_as(w.act_format(), &x, COLS, &mut xq);
                    let want = reference(w, &x, &xq, n_tok);
                    let got = product(&pool, w, &x, n_tok);
                    for (i, (g, r)) in got.iter().zip(&want).enumerate() {
                        assert!(
                            (g - r).abs() <= 1e-3 * r.abs().max(1.0),
                            "{isa:?} {} {threads} threads {n_tok} tokens: out[{i}] = {g}, reference {r}",
                            w.ty
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn a_tokens_outputs_do_not_depend_on_the_other_tokens_in_the_pass() {
    let isa = Isa::detect();
    let (_file, ws) = weights(isa);
    let pool = ThreadPool::new(2).unwrap();
    let x = values(11 * COLS, 5);
    for w in &ws {
        let alone = product(&pool, w, &x[..COLS], 1);
        for n_tok in 2..=11 {
            let all = product(&pool, w, &x[..n_tok * COLS], n_tok);
            assert!(
                all[..ROWS]
                    .iter()
                    .zip(&alone)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{}: token 0 of {n_tok} differs from token 0 alone",
                w.ty
            );
        }
    }
}
