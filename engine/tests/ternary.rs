//! llama.cpp's ternary types against gguf-py (tests/golden/ternary.json, made by scripts/ternary-golden): our
//! quantizers write the same bytes, our dequantizers read the same values, and the dot-product kernels equal
//! dequantize-then-dot. The same fixture holds Q8_0 and Q4_0, the types the `head` load option converts to.

use hearth_engine::quant::{
    dequantize_row, quantize_q4_0, quantize_q8_0, quantize_tq1_0, quantize_tq2_0, GgmlType,
};

type Typed = Vec<(GgmlType, Vec<u8>, Vec<f32>)>;

struct Golden {
    cols: usize,
    input: Vec<f32>,
    /// TQ1_0, TQ2_0.
    types: Typed,
    /// Q8_0, Q4_0.
    heads: Typed,
}

fn golden() -> Golden {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/golden/ternary.json");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json");
    let floats = |v: &serde_json::Value| -> Vec<f32> {
        v.as_array()
            .expect("array")
            .iter()
            .map(|x| x.as_f64().expect("number") as f32)
            .collect()
    };
    let hex = |s: &str| -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    };
    let typed = |names: &[(&str, GgmlType)]| -> Typed {
        names
            .iter()
            .map(|(k, t)| {
                (
                    *t,
                    hex(v[k]["bytes"].as_str().expect("bytes")),
                    floats(&v[k]["values"]),
                )
            })
            .collect()
    };
    Golden {
        cols: v["cols"].as_u64().expect("cols") as usize,
        input: floats(&v["input"]),
        types: typed(&[("tq1_0", GgmlType::TQ1_0), ("tq2_0", GgmlType::TQ2_0)]),
        heads: typed(&[("q8_0", GgmlType::Q8_0), ("q4_0", GgmlType::Q4_0)]),
    }
}

#[test]
fn quantizers_and_dequantizers_match_gguf_py() {
    let g = golden();
    for (ty, bytes, values) in g.types.iter().chain(&g.heads) {
        let ours = match ty {
            GgmlType::TQ1_0 => quantize_tq1_0(&g.input),
            GgmlType::TQ2_0 => quantize_tq2_0(&g.input),
            GgmlType::Q8_0 => quantize_q8_0(&g.input),
            _ => quantize_q4_0(&g.input),
        };
        assert_eq!(&ours, bytes, "{ty} bytes differ from gguf-py's");
        let (elems, block) = ty.block_geometry().expect("geometry");
        let row_bytes = g.cols / elems * block;
        for (r, (src, want)) in bytes
            .chunks(row_bytes)
            .zip(values.chunks(g.cols))
            .enumerate()
        {
            let mut out = vec![0f32; g.cols];
            assert!(dequantize_row(*ty, src, &mut out));
            assert_eq!(&out, want, "{ty} row {r}");
        }
    }
}

/// The int8 kernels (scalar reference, and every SIMD path this CPU runs) equal the dot product of the
/// dequantized weights with the dequantized activations, for both ternary types.
#[test]
fn ternary_kernels_equal_dequantize_then_dot() {
    use hearth_engine::quant::dot::{kernel, Isa};
    use hearth_engine::quant::{quantize_acts, QActs};
    let g = golden();
    let mut acts = QActs::default();
    // Activations with outliers, negative runs and exact zeros.
    let x: Vec<f32> = (0..g.cols)
        .map(|i| match i % 37 {
            0 => 40.0,
            5 => 0.0,
            _ => ((i * 7919) % 1000) as f32 / 250.0 - 2.0,
        })
        .collect();
    quantize_acts(&x, g.cols, &mut acts);
    let xq = acts.row(0);
    let xd: Vec<f64> = (0..g.cols)
        .map(|i| f64::from(xq.q[i]) * f64::from(xq.d[i / 32]))
        .collect();
    let mut isas = vec![Isa::Scalar];
    if Isa::best_supported() != Isa::Scalar {
        isas.push(Isa::Avx2);
    }
    if Isa::best_supported() == Isa::Avx512Vnni {
        isas.push(Isa::Avx512Vnni);
    }
    for (ty, bytes, values) in &g.types {
        let (elems, block) = ty.block_geometry().expect("geometry");
        let row_bytes = g.cols / elems * block;
        for (row, w) in bytes.chunks(row_bytes).zip(values.chunks(g.cols)) {
            let want: f64 = w.iter().zip(&xd).map(|(a, b)| f64::from(*a) * b).sum();
            let scalar = kernel(*ty, Isa::Scalar).expect("kernel")(row, xq, &x);
            for isa in &isas {
                let got = kernel(*ty, *isa).expect("kernel")(row, xq, &x);
                if *ty == GgmlType::TQ2_0 {
                    // SIMD paths associate the float sums differently: equal to rounding.
                    assert!(
                        (got - scalar).abs() <= 1e-4 * scalar.abs().max(1.0),
                        "{ty} {isa:?}: {got} vs scalar {scalar}"
                    );
                    assert!(
                        (f64::from(got) - want).abs() <= 1e-4 * want.abs().max(1.0),
                        "{ty} {isa:?}: {got} vs {want}"
                    );
                } else {
                    // TQ1_0 has no integer kernel yet: dequantize, then an f32 dot with the float activations.
                    let wantf: f64 = w
                        .iter()
                        .zip(&x)
                        .map(|(a, b)| f64::from(*a) * f64::from(*b))
                        .sum();
                    assert!(
                        (f64::from(got) - wantf).abs() <= 1e-3 * wantf.abs().max(1.0),
                        "{ty}: {got} vs {wantf}"
                    );
                }
            }
        }
    }
}

/// TQ2_0's four-row (generation) and multi-token (prompt, batch) kernels equal the single-row one.
#[test]
fn tq2_0_multi_row_and_multi_token_kernels() {
    use hearth_engine::quant::dot::{kernel, kernel_many, kernel_r4, Isa};
    use hearth_engine::quant::{interleave_scales, quantize_acts, QActs, QGroup, GROUP};
    let isa = Isa::best_supported();
    let (Some(r4), Some(k4)) = (
        kernel_r4(GgmlType::TQ2_0, isa),
        kernel_many(GgmlType::TQ2_0, isa),
    ) else {
        assert_eq!(isa, Isa::Scalar, "SIMD CPUs have the multi-row kernels");
        return;
    };
    let g = golden();
    let rows: Vec<&[u8]> = g.types[1].1.chunks(g.cols / 256 * 66).collect();
    let x: Vec<f32> = (0..4 * g.cols)
        .map(|i| ((i * 53 % 97) as f32 - 48.0) / 9.0)
        .collect();
    let mut acts = QActs::default();
    quantize_acts(&x, g.cols, &mut acts);
    let one = kernel(GgmlType::TQ2_0, isa).expect("kernel");
    let close = |a: f32, b: f32| (a - b).abs() <= 1e-4 * b.abs().max(1.0);
    let got = r4(&[rows[0], rows[1], rows[2], rows[3]], acts.row(0));
    for (r, v) in got.iter().enumerate() {
        assert!(close(*v, one(rows[r], acts.row(0), &x)), "r4 row {r}");
    }
    let toks = [acts.row(0), acts.row(1), acts.row(2), acts.row(3)];
    for m in 2..=4 {
        let mut got = [0f32; 4];
        let n = g.cols / 32 * GROUP;
        let (mut d, mut dsum) = (vec![0f32; n], vec![0f32; n]);
        interleave_scales(&toks[..m], &mut d, &mut dsum);
        let group = QGroup {
            rows: &toks[..m],
            d: &d,
            dsum: &dsum,
            sum: &[],
        };
        k4(rows[0], &group, &mut got);
        for (t, v) in got[..m].iter().enumerate() {
            assert!(
                close(*v, one(rows[0], toks[t], &x)),
                "{m} tokens: token {t}"
            );
        }
    }
}
