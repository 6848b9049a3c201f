//! Ternary kernel micro-benchmarks at BitNet b1.58 2B4T's shapes: `cargo bench -p hearth-engine --bench ternary
//! [-- --threads N --isa scalar|avx2|avx512vnni]`. For each matrix and token count: time per product, weights × tokens
//! per second, and weight bytes streamed per second (the bound for one token: memory bandwidth). `--only
//! matrices,long,copies,t1,layers,head` picks sections (default all).

use hearth_engine::quant::dot::Isa;
use hearth_engine::quant::{quantize_acts_as, GgmlType, QActs};
use hearth_engine::ternary::kernels::Group1Fn;
use hearth_engine::ternary::{quantize_per_token, Packed};
use hearth_engine::threadpool::ThreadPool;
use hearth_engine::weights::{matmul, Weight};
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Instant;

fn arg(name: &str) -> Option<String> {
    let a: Vec<String> = std::env::args().collect();
    a.iter()
        .position(|x| x == name)
        .and_then(|i| a.get(i + 1).cloned())
}

/// One result row: label, tokens, seconds, weights multiplied (per token × tokens), bytes of weights read.
fn report(label: &str, tokens: usize, s: f64, weights: usize, bytes: usize) {
    println!(
        "{:>32} {:>6} {:>10.3} {:>10.1} {:>8.1}",
        label,
        tokens,
        s * 1e3,
        weights as f64 / s / 1e9,
        bytes as f64 / s / 1e9
    );
}

/// A packed ternary matrix [n × k] with pseudo-random codes (`salt` varies copies of one shape).
fn ternary_weight(k: usize, n: usize, salt: usize, isa: Isa) -> Weight {
    let p = Packed::from_rows(n, k, 1.0, |r, out| {
        for (c, o) in out.iter_mut().enumerate() {
            *o = ((salt + r * 7919 + c * 104_729) % 3) as u8;
        }
        Ok(())
    })
    .expect("pack");
    Weight::from_packed("bench", GgmlType::I2S, p, isa)
}

/// `t` tokens of `k` activations in [-1, 1] and their per-token int8 form.
fn token_acts(k: usize, t: usize, rnd: &mut impl FnMut() -> u64) -> (Vec<f32>, QActs) {
    let x: Vec<f32> = (0..t * k)
        .map(|_| (rnd() % 2001) as f32 / 1000.0 - 1.0)
        .collect();
    let mut xq = QActs::default();
    quantize_per_token(&x, k, &mut xq);
    (x, xq)
}

fn packed_of(w: &Weight) -> &Packed {
    w.packed().expect("a packed ternary matrix").0
}

/// One token through `t1` over every group of `p`, the groups claimed by the pool's threads as `matmul` does; the
/// sum of all group sums, so two kernels can be checked against each other.
fn t1_pass(pool: &ThreadPool, p: &Packed, x: &[i8], t1: Group1Fn) -> i64 {
    let total = AtomicI64::new(0);
    pool.run_chunks(p.n_groups(), 4, 16, &|groups| {
        let s: i64 = groups
            .map(|g| {
                t1(p.group(g), &[x])[0]
                    .iter()
                    .map(|&v| i64::from(v))
                    .sum::<i64>()
            })
            .sum();
        total.fetch_add(s, Ordering::Relaxed);
    });
    total.into_inner()
}

/// The one-token kernels this CPU runs: the row passes of each ISA and the chunk-ordered ones that replace them
/// (the scalar reference left out: it is far slower and not what any CPU here runs).
fn t1_kernels() -> Vec<(&'static str, Group1Fn)> {
    hearth_engine::ternary::kernels::one_token_variants()
        .into_iter()
        .filter(|(name, _)| *name != "scalar")
        .collect()
}

fn time<F: FnMut()>(mut f: F, min_secs: f64) -> f64 {
    f();
    let mut best = f64::MAX;
    let start = Instant::now();
    let mut n = 0;
    while n < 3 || start.elapsed().as_secs_f64() < min_secs {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64());
        n += 1;
    }
    best
}

fn main() {
    let threads: usize = arg("--threads").and_then(|s| s.parse().ok()).unwrap_or(2);
    let isa = match arg("--isa").as_deref() {
        Some("scalar") => Isa::Scalar,
        Some("avx2") => Isa::Avx2,
        _ => Isa::detect(),
    };
    let tokens: Vec<usize> = arg("--tokens")
        .map(|s| s.split(',').filter_map(|t| t.parse().ok()).collect())
        .unwrap_or(vec![1, 32, 128, 512]);
    let only = arg("--only");
    let section = |name: &str| {
        only.as_deref()
            .is_none_or(|o| o.split(',').any(|x| x == name))
    };
    let pool = ThreadPool::new(threads).expect("thread pool");
    println!("threads {threads}, isa {}", isa.name());
    println!(
        "{:>32} {:>6} {:>10} {:>10} {:>8}",
        "K -> N", "tokens", "ms", "Gw/s", "GB/s"
    );
    let shapes = [
        (2560, 640),
        (2560, 2560),
        (2560, 3840),
        (2560, 6912),
        (2560, 13824),
        (6912, 2560),
    ];
    let mut seed = 0x1234_5678_u64;
    let mut rnd = move || -> u64 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for (k, n) in shapes.into_iter().filter(|_| section("matrices")) {
        let w = ternary_weight(k, n, 0, isa);
        for &t in &tokens {
            let (x, xq) = token_acts(k, t, &mut rnd);
            let mut out = vec![0f32; t * n];
            let s = time(|| matmul(&pool, &mut [(&w, &mut out)], &x, &xq, t), 0.5);
            report(&format!("{k} -> {n}"), t, s, n * k * t, w.n_bytes());
        }
    }
    // One matrix far beyond the caches (84 MB): the rate of one long stream, to set against the 210 short ones.
    if section("long") {
        let (k, n) = (2560, 131_072);
        let w = ternary_weight(k, n, 0, isa);
        let (x, xq) = token_acts(k, 1, &mut rnd);
        let mut out = vec![0f32; n];
        let s = time(|| matmul(&pool, &mut [(&w, &mut out)], &x, &xq, 1), 1.0);
        report(&format!("{k} -> {n} (DRAM)"), 1, s, n * k, w.n_bytes());
    }
    // Each shape alone, copied until the copies far exceed the caches: which matrices stream slowly from DRAM.
    if section("copies") {
        for (k, n) in shapes {
            let copies = (256 << 20) / (k * n / 4);
            let ws: Vec<Weight> = (0..copies).map(|i| ternary_weight(k, n, i, isa)).collect();
            let (x, xq) = token_acts(k, 1, &mut rnd);
            let mut out = vec![0f32; n];
            let s = time(
                || {
                    for w in &ws {
                        matmul(&pool, &mut [(w, &mut out)], &x, &xq, 1);
                    }
                },
                1.0,
            );
            let bytes: usize = ws.iter().map(|w| w.n_bytes()).sum();
            report(
                &format!("{copies}x {k} -> {n}"),
                1,
                s,
                copies * n * k,
                bytes,
            );
        }
    }
    // The one-token kernels side by side: one matrix in cache, then the 30 layers' matrices from DRAM.
    if section("t1") {
        // Each layer's seven matrices as rows over K = 2560 (down's 2560 × 6912 taken as 6912 rows: the same
        // bytes), so one activation vector serves all.
        let rows = [2560, 640, 640, 2560, 6912, 6912, 6912];
        let layers: Vec<Weight> = (0..210)
            .map(|i| ternary_weight(2560, rows[i % 7], i, isa))
            .collect();
        let cached = ternary_weight(2560, 2560, 0, isa);
        let (_, xq) = token_acts(2560, 1, &mut rnd);
        let kernels = t1_kernels();
        let sets: [(&str, Vec<&Packed>); 2] = [
            ("2560 -> 2560", vec![packed_of(&cached)]),
            ("30 layers (DRAM)", layers.iter().map(packed_of).collect()),
        ];
        for (label, ps) in &sets {
            let bytes: usize = ps.iter().map(|p| p.n_bytes()).sum();
            let weights: usize = ps.iter().map(|p| p.n_groups() * 4 * 2560).sum();
            let mut want = None;
            // Alternate the kernels, best of three rounds each, so drift on a shared host hits both.
            let mut best = vec![f64::MAX; kernels.len()];
            for _ in 0..3 {
                for (j, &(name, k)) in kernels.iter().enumerate() {
                    let mut sum = 0;
                    let s = time(
                        || sum = ps.iter().map(|p| t1_pass(&pool, p, &xq.q, k)).sum(),
                        0.5,
                    );
                    assert_eq!(*want.get_or_insert(sum), sum, "{name} disagrees");
                    best[j] = best[j].min(s);
                }
            }
            for ((name, _), s) in kernels.iter().zip(best) {
                report(&format!("t1 {name}: {label}"), 1, s, weights, bytes);
            }
        }
    }
    if section("layers") {
        // All 30 layers' matrices (520 MB, far beyond the caches): one decode step's ternary work streamed from DRAM.
        let layer_shapes = [
            (2560, 2560),
            (2560, 640),
            (2560, 640),
            (2560, 2560),
            (2560, 6912),
            (2560, 6912),
            (6912, 2560),
        ];
        let layers: Vec<Weight> = (0..30)
            .flat_map(|_| layer_shapes)
            .enumerate()
            .map(|(i, (k, n))| ternary_weight(k, n, i, isa))
            .collect();
        let total: usize = layers.iter().map(|w| w.n_bytes()).sum();
        let xs = [2560, 6912].map(|k| token_acts(k, 1, &mut rnd));
        let mut out = vec![0f32; 6912];
        let s = time(
            || {
                for w in &layers {
                    let (x, xq) = &xs[usize::from(w.cols != 2560)];
                    matmul(&pool, &mut [(w, &mut out[..w.rows])], x, xq, 1);
                }
            },
            2.0,
        );
        let weights = layers.iter().map(|w| w.rows * w.cols).sum::<usize>();
        report("30 layers (DRAM)", 1, s, weights, total);
        drop(layers);
    }
    if !section("head") {
        return;
    }
    // The tied head: F16 as published, at 1 token (generation) and a few.
    let (k, n) = (2560, 128_256);
    let data: Vec<u8> = (0..n * k)
        .flat_map(|_| {
            half::f16::from_f32((rnd() % 2001) as f32 / 1000.0 - 1.0)
                .to_bits()
                .to_le_bytes()
        })
        .collect();
    let mut gw = hearth_engine::gguf::writer::GgufWriter::default();
    gw.tensor("head", &[k as u64, n as u64], GgmlType::F16, data);
    let dir = std::env::temp_dir().join(format!("hearth-bench-head-{}.gguf", std::process::id()));
    gw.write_to(&dir).expect("write head");
    let f = std::sync::Arc::new(hearth_engine::gguf::GgufFile::open(&dir).expect("open head"));
    let f16_head = Weight::from_file(&f, "head", isa).expect("head");
    let q8_head = f16_head.converted(GgmlType::Q8_0, isa).expect("q8_0 head");
    let i8_head = f16_head.to_rows_i8(isa);
    let q4_head = f16_head.converted(GgmlType::Q4_0, isa).expect("q4_0 head");
    for (head, t) in tokens
        .iter()
        .filter(|&&t| t <= 32)
        .flat_map(|&t| [(&f16_head, t), (&q8_head, t), (&i8_head, t), (&q4_head, t)])
    {
        let x: Vec<f32> = (0..t * k)
            .map(|_| (rnd() % 2001) as f32 / 1000.0 - 1.0)
            .collect();
        let mut xq = QActs::default();
        if head.wants_per_token() {
            quantize_per_token(&x, k, &mut xq);
        } else {
            quantize_acts_as(head.act_format(), &x, k, &mut xq);
        }
        let mut out = vec![0f32; t * n];
        let s = time(|| matmul(&pool, &mut [(head, &mut out)], &x, &xq, t), 1.0);
        report(
            &format!("head {} {k} -> {n}", head.ty),
            t,
            s,
            n * k * t,
            head.n_bytes(),
        );
    }
    // The coarse pass of `head = "i4-rescored"` (int4, 8-bit block scales; the rescoring of ~70 rows after it
    // reads 0.3 MB of the F16 head).
    let coarse = hearth_engine::model::rescore::CoarseHead::new(&f16_head, isa).expect("int4 head");
    for &t in tokens.iter().filter(|&&t| t <= 32) {
        let (_, xq) = token_acts(k, t, &mut rnd);
        let mut out = vec![0f32; t * n];
        let mut scratch = hearth_engine::model::rescore::RescoreScratch::default();
        let s = time(|| coarse.matmul(&pool, &xq, t, &mut scratch, &mut out), 1.0);
        report(
            &format!("head I4 coarse {k} -> {n}"),
            t,
            s,
            n * k * t,
            coarse.n_bytes(),
        );
    }
    let _ = std::fs::remove_file(&dir);
}
