//! Element-wise and row operations of the forward pass (norms, activations, rotary embeddings, softmax).
//! Written as plain loops over fixed-width chunks so the compiler vectorises them; the heavy lifting is in
//! `quant::dot`.

/// Dot product (attention scores). AVX2+FMA when the CPU has it (the crate is built for baseline x86-64).
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: features checked just above.
        return unsafe { x86::dot(a, b) };
    }
    dot_portable(a, b)
}

/// Eight independent accumulators: the compiler vectorises this without reassociating a single sum.
fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let ca = a.chunks_exact(8);
    let cb = b.chunks_exact(8);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut s = acc.iter().sum::<f32>();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// y += a * x
#[inline]
pub fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: features checked just above.
        return unsafe { x86::axpy(y, a, x) };
    }
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += a * xi;
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    // The same loops as the portable versions, compiled with AVX2 and FMA enabled.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
        super::dot_portable(a, b)
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
        for (yi, xi) in y.iter_mut().zip(x) {
            *yi = a.mul_add(*xi, *yi);
        }
    }
}

/// out = x / rms(x) * w (RMSNorm).
pub fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let ss = dot(x, x) / x.len() as f32;
    let scale = 1.0 / (ss + eps).sqrt();
    for ((o, xi), wi) in out.iter_mut().zip(x).zip(w) {
        *o = xi * scale * wi;
    }
}

/// RMSNorm in place.
pub fn rms_norm_inplace(x: &mut [f32], w: &[f32], eps: f32) {
    let ss = dot(x, x) / x.len() as f32;
    let scale = 1.0 / (ss + eps).sqrt();
    for (xi, wi) in x.iter_mut().zip(w) {
        *xi = *xi * scale * wi;
    }
}

/// Weights below f32's normal range are stored as zero: they add nothing an output of normal magnitude can hold, and
/// x86 takes a microcode assist (~100 cycles) for every multiply that meets a subnormal — over a long, peaked
/// attention span those weights made the value pass 50x slower.
pub fn softmax_inplace(x: &mut [f32]) {
    let max = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let flush = |v: f32| if v < f32::MIN_POSITIVE { 0.0 } else { v };
    let mut sum = 0.0;
    for v in x.iter_mut() {
        *v = flush((*v - max).exp());
        sum += *v;
    }
    let inv = 1.0 / sum;
    for v in x.iter_mut() {
        *v = flush(*v * inv);
    }
}

#[inline]
pub fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// GELU, tanh approximation (what Gemma uses and what ggml's `gelu` computes), written with the identity
/// 0.5·(1 + tanh(z)) = sigmoid(2z): one `exp` instead of a `tanh`.
#[inline]
pub fn gelu_tanh(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    let z = SQRT_2_OVER_PI * x * (1.0 + 0.044715 * x * x);
    x / (1.0 + (-2.0 * z).exp())
}

/// Rotary embedding of one head in place. `cs` holds (cos, sin) for each rotated pair.
/// `neox`: pairs are (i, i + d/2); otherwise adjacent (2i, 2i+1) as in GGUF llama files.
#[inline]
pub fn rope_head(x: &mut [f32], cs: &[(f32, f32)], neox: bool) {
    let half = cs.len();
    if neox {
        for (i, &(c, s)) in cs.iter().enumerate() {
            let (a, b) = (x[i], x[i + half]);
            x[i] = a * c - b * s;
            x[i + half] = a * s + b * c;
        }
    } else {
        for (i, &(c, s)) in cs.iter().enumerate() {
            let (a, b) = (x[2 * i], x[2 * i + 1]);
            x[2 * i] = a * c - b * s;
            x[2 * i + 1] = a * s + b * c;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rms_norm_of_constant_is_weight() {
        let mut out = [0.0; 4];
        rms_norm(&[2.0; 4], &[1.0, 2.0, 3.0, 4.0], 0.0, &mut out);
        assert_eq!(out, [1.0, 2.0, 3.0, 4.0]);
    }

    #[test]
    fn softmax_sums_to_one_and_is_stable() {
        let mut x = [1000.0, 1001.0, 1002.0];
        softmax_inplace(&mut x);
        assert!((x.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(x[2] > x[1] && x[1] > x[0]);
    }

    #[test]
    fn rope_rotates_pairs_by_angle() {
        let a = std::f32::consts::FRAC_PI_2;
        let mut x = [1.0, 0.0, 0.0, 1.0];
        rope_head(&mut x, &[(a.cos(), a.sin()), (1.0, 0.0)], false);
        assert!((x[0]).abs() < 1e-6 && (x[1] - 1.0).abs() < 1e-6);
        let mut y = [1.0, 0.0, 0.0, 1.0];
        rope_head(&mut y, &[(a.cos(), a.sin()), (1.0, 0.0)], true);
        // neox pairs (0,2) and (1,3): (1,0) rotated by 90° → (0,1).
        assert!(
            y[0].abs() < 1e-6
                && (y[2] - 1.0).abs() < 1e-6
                && (y[1]).abs() < 1e-6
                && (y[3] - 1.0).abs() < 1e-6
        );
    }

    #[test]
    fn gelu_matches_known_values() {
        assert!((gelu_tanh(1.0) - 0.841_192).abs() < 1e-5);
        for x in [-6.0f32, -1.5, -0.1, 0.0, 0.3, 2.0, 9.0] {
            let tanh_form = 0.5 * x * (1.0 + (0.797_884_6 * x * (1.0 + 0.044715 * x * x)).tanh());
            assert!((gelu_tanh(x) - tanh_form).abs() < 1e-5, "{x}");
        }
        let a: Vec<f32> = (0..37).map(|i| i as f32 * 0.25).collect();
        let b: Vec<f32> = (0..37).map(|i| 1.0 - i as f32 * 0.1).collect();
        let want: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot(&a, &b) - want).abs() < 1e-3);
        let mut y = vec![1.0f32; 37];
        axpy(&mut y, 2.0, &a);
        assert_eq!(y[4], 3.0);
        assert!((silu(1.0) - 0.731_058_6).abs() < 1e-6);
    }
}
