//! F16 kernels alone, one thread: the row kernel (`kernel_float_n`, one row × 1–4 tokens) against
//! the row tile (`kernel_float_tile`, TILE_ROWS rows × 1–4 tokens) over a matrix larger than the caches, as the
//! weights stream from memory in a real pass. GFLOP/s, best of 15 sweeps, both measured in the same run.
//! `cargo bench -p hearth-engine --bench float_kernels [-- --cols 576 --mib 96]`.

use hearth_engine::quant::dot::{self, Isa, TILE_ROWS};
use hearth_engine::quant::GgmlType;
use std::time::Instant;

fn arg(name: &str, default: usize) -> usize {
    let a: Vec<String> = std::env::args().collect();
    a.iter()
        .position(|x| x == name)
        .and_then(|i| a.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let cols = arg("--cols", 576);
    let mib = arg("--mib", 96);
    let isa = Isa::detect();
    let ty = GgmlType::F16;
    let (Some(kn), Some(kt)) = (
        dot::kernel_float_n(ty, isa),
        dot::kernel_float_tile(ty, isa),
    ) else {
        println!("no row tile on this CPU ({isa:?}): it needs AVX-512F");
        return;
    };
    let bytes = 2;
    let rows = (mib << 20) / (bytes * cols) / TILE_ROWS * TILE_ROWS;
    let w: Vec<u8> = (0..rows * cols)
        .flat_map(|i| {
            half::f16::from_f32(((i * 37 % 113) as f32 - 56.0) / 97.0)
                .to_bits()
                .to_le_bytes()
        })
        .collect();
    let xs: Vec<Vec<f32>> = (0..4)
        .map(|t| (0..cols).map(|i| ((i + t) % 7) as f32 - 3.0).collect())
        .collect();
    let row = |r: usize| &w[r * cols * bytes..(r + 1) * cols * bytes];
    println!("{ty}, {rows} rows × {cols}, {isa:?}, one thread");
    println!(
        "{:>7} {:>14} {:>14} {:>7}",
        "tokens", "row GFLOP/s", "tile GFLOP/s", "ratio"
    );
    for m in 1..=4 {
        let x: Vec<&[f32]> = xs[..m].iter().map(|v| &v[..]).collect();
        let flop = (2 * rows * cols * m) as f64;
        let (mut best_row, mut best_tile) = (f64::MAX, f64::MAX);
        let mut sink = 0f32;
        for _ in 0..15 {
            let t = Instant::now();
            let mut v = [0f32; 4];
            for r in 0..rows {
                kn(row(r), &x, &mut v);
                sink += v[0];
            }
            best_row = best_row.min(t.elapsed().as_secs_f64());
            let t = Instant::now();
            let mut v = [[0f32; 4]; TILE_ROWS];
            for r in (0..rows).step_by(TILE_ROWS) {
                kt(&std::array::from_fn(|i| row(r + i)), &x, &mut v);
                sink += v[0][0];
            }
            best_tile = best_tile.min(t.elapsed().as_secs_f64());
        }
        std::hint::black_box(sink);
        println!(
            "{m:>7} {:>14.1} {:>14.1} {:>6.2}x",
            flop / best_row / 1e9,
            flop / best_tile / 1e9,
            best_row / best_tile
        );
    }
}
