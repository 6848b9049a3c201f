//! Our quantized matmul against candle-core's, side by side in one run, on a real GGUF: every layer matrix of the
//! model (q, k, v, o, gate, up, down of each block — what one decode or prefill step multiplies), read from the
//! same file by both libraries, times 1 and more tokens. The design's rule is "candle-core tensors plus our own
//! SIMD kernels where they beat candle's, measured": this is the measurement. It also checks that both compute the
//! same product: each library's error against the exact product of the file's weights (f32), so the times compare
//! like with like.
//!
//! `cargo bench -p hearth-engine --features candle-peer --bench candle -- --model M.gguf [--threads 2]
//!  [--tokens 1,4,16] [--reps 5]` (`scripts/bench-candle` fetches the model and runs it).

use candle_core::quantized::{gguf_file, QMatMul};
use candle_core::{Device, Module, Tensor};
use hearth_engine::gguf::GgufFile;
use hearth_engine::quant::dot::Isa;
use hearth_engine::quant::{quantize_acts_as, GgmlType, QActs};
use hearth_engine::sampling::Rng;
use hearth_engine::threadpool::ThreadPool;
use hearth_engine::weights::{matmul, Weight};
use std::sync::Arc;
use std::time::Instant;

fn arg(name: &str) -> Option<String> {
    let a: Vec<String> = std::env::args().collect();
    a.iter()
        .position(|x| x == name)
        .and_then(|i| a.get(i + 1))
        .cloned()
}

const LAYER_MATRICES: [&str; 7] = [
    "attn_q",
    "attn_k",
    "attn_v",
    "attn_output",
    "ffn_gate",
    "ffn_up",
    "ffn_down",
];

/// Deterministic activations in [-1, 1).
fn acts(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    (0..n).map(|_| 2.0 * rng.next_f32() - 1.0).collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let model = arg("--model")
        .or_else(|| std::env::var("HEARTH_MODEL").ok())
        .ok_or("--model PATH.gguf (or HEARTH_MODEL) is required")?;
    let threads: usize = arg("--threads").map_or(Ok(2), |s| s.parse())?;
    let reps: usize = arg("--reps").map_or(Ok(5), |s| s.parse())?.max(1);
    let tokens: Vec<usize> = arg("--tokens")
        .unwrap_or_else(|| "1,4,16".into())
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    // candle's CPU pool reads RAYON_NUM_THREADS when first used; nothing has started a thread yet.
    std::env::set_var("RAYON_NUM_THREADS", threads.to_string());

    let isa = Isa::detect();
    let file = Arc::new(GgufFile::open(&model)?);
    let mut reader = std::fs::File::open(&model)?;
    let content = gguf_file::Content::read(&mut reader)?;
    let mut names = Vec::new();
    for blk in 0.. {
        let of_blk: Vec<String> = LAYER_MATRICES
            .iter()
            .map(|m| format!("blk.{blk}.{m}.weight"))
            .filter(|n| file.tensor_info(n).is_some())
            .collect();
        if of_blk.is_empty() {
            break;
        }
        names.extend(of_blk);
    }
    if names.is_empty() {
        return Err(format!("{model}: no blk.N.{{attn_q,…,ffn_down}}.weight tensors").into());
    }
    let ours: Vec<Weight> = names
        .iter()
        .map(|n| Weight::from_file(&file, n, isa))
        .collect::<Result<_, _>>()?;
    let theirs: Vec<QMatMul> = names
        .iter()
        .map(|n| QMatMul::from_qtensor(content.tensor(&mut reader, n, &Device::Cpu)?))
        .collect::<Result<_, candle_core::Error>>()?;
    let weights: usize = ours.iter().map(|w| w.rows * w.cols).sum();
    let bytes: usize = ours.iter().map(Weight::n_bytes).sum();
    let mut types: Vec<GgmlType> = ours.iter().map(|w| w.ty).collect();
    types.sort();
    types.dedup();
    let type_names: Vec<String> = types.iter().map(GgmlType::to_string).collect();
    println!(
        "{model}\n{} matrices ({}; {:.1} M weights, {:.1} MB), {threads} threads, our kernels {isa:?}, medians of {reps}",
        names.len(),
        type_names.join(", "),
        weights as f64 / 1e6,
        bytes as f64 / 1e6
    );
    println!(" tokens   hearth ms   candle ms   hearth / candle speed   hearth err   candle err");

    let pool = ThreadPool::new(threads)?;
    let all: Vec<usize> = (0..ours.len()).collect();
    for &n_tok in &tokens {
        let r = compare(&pool, &ours, &theirs, &all, n_tok, reps)?;
        println!(
            "{n_tok:>7} {:>11.2} {:>11.2} {:>22.2}x {:>12.1e} {:>12.1e}",
            r.ours_ms,
            r.theirs_ms,
            r.theirs_ms / r.ours_ms,
            r.ours_err,
            r.theirs_err
        );
    }
    if types.len() > 1 {
        println!(" by type, {} token(s):", tokens[0]);
        for &ty in &types {
            let some: Vec<usize> = all.iter().copied().filter(|&i| ours[i].ty == ty).collect();
            let r = compare(&pool, &ours, &theirs, &some, tokens[0], reps)?;
            println!(
                "{:>7} {:>11.2} {:>11.2} {:>22.2}x {:>12.1e} {:>12.1e}   ({} matrices)",
                ty.to_string(),
                r.ours_ms,
                r.theirs_ms,
                r.theirs_ms / r.ours_ms,
                r.ours_err,
                r.theirs_err,
                some.len()
            );
        }
    }
    Ok(())
}

struct Comparison {
    ours_ms: f64,
    theirs_ms: f64,
    /// The largest error of any first-token output against the exact product, relative to that matrix's largest
    /// output.
    ours_err: f32,
    theirs_err: f32,
}

/// Matrices `which` times `n_tok` tokens through both libraries: medians of `reps` passes that alternate which
/// goes first, after one warm-up pass of each whose outputs are compared.
fn compare(
    pool: &ThreadPool,
    ours: &[Weight],
    theirs: &[QMatMul],
    which: &[usize],
    n_tok: usize,
    reps: usize,
) -> candle_core::Result<Comparison> {
    // Each matrix gets its own input (cols differ between down and the rest).
    let inputs: Vec<Vec<f32>> = which
        .iter()
        .map(|&i| acts(n_tok * ours[i].cols, i as u64 + 1))
        .collect();
    let tensors: Vec<Tensor> = which
        .iter()
        .zip(&inputs)
        .map(|(&i, x)| Tensor::from_slice(x, (n_tok, ours[i].cols), &Device::Cpu))
        .collect::<Result<_, _>>()?;
    let mut outs: Vec<Vec<f32>> = which
        .iter()
        .map(|&i| vec![0f32; n_tok * ours[i].rows])
        .collect();
    let mut xq = QActs::default();
    let mut run_ours = |outs: &mut [Vec<f32>]| {
        for ((&i, x), out) in which.iter().zip(&inputs).zip(outs.iter_mut()) {
            let w = &ours[i];
            // Quantizing the activations is part of our product (candle's matmul does it inside).
            if w.uses_int8_acts() {
                quantize_acts_as(w.act_format(), x, w.cols, &mut xq);
            }
            matmul(pool, &mut [(w, &mut out[..])], x, &xq, n_tok);
        }
    };
    let run_theirs = || -> candle_core::Result<Vec<Tensor>> {
        which
            .iter()
            .zip(&tensors)
            .map(|(&i, x)| theirs[i].forward(x))
            .collect()
    };
    run_ours(&mut outs);
    let got = run_theirs()?;
    // Both quantize the activations (differently), so each is compared with the exact product of the file's
    // weights and the f32 activations, for the first token of every matrix.
    let (mut ours_err, mut theirs_err) = (0f32, 0f32);
    let mut row = Vec::new();
    for ((&i, x), (o, t)) in which.iter().zip(&inputs).zip(outs.iter().zip(&got)) {
        let w = &ours[i];
        let t = t.flatten_all()?.to_vec1::<f32>()?;
        row.resize(w.cols, 0f32);
        let exact: Vec<f32> = (0..w.rows)
            .map(|r| {
                w.dequantize_row(r, &mut row);
                row.iter().zip(&x[..w.cols]).map(|(a, b)| a * b).sum()
            })
            .collect();
        let scale = exact.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
        for (r, e) in exact.iter().enumerate() {
            ours_err = ours_err.max((o[r] - e).abs() / scale);
            theirs_err = theirs_err.max((t[r] - e).abs() / scale);
        }
    }
    let (mut h, mut c) = (Vec::new(), Vec::new());
    for rep in 0..reps {
        let mut time_ours = || {
            let t = Instant::now();
            run_ours(&mut outs);
            t.elapsed().as_secs_f64() * 1e3
        };
        let time_theirs = || -> candle_core::Result<f64> {
            let t = Instant::now();
            std::hint::black_box(run_theirs()?);
            Ok(t.elapsed().as_secs_f64() * 1e3)
        };
        if rep % 2 == 0 {
            h.push(time_ours());
            c.push(time_theirs()?);
        } else {
            c.push(time_theirs()?);
            h.push(time_ours());
        }
    }
    Ok(Comparison {
        ours_ms: median(h),
        theirs_ms: median(c),
        ours_err,
        theirs_err,
    })
}
