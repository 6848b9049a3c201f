//! Attention of one position's query heads over a span of the KV cache, for the heads that share one KV head
//! (grouped-query attention). Each key and value row is loaded once for all the heads of the group, and several
//! (head, key) dot products run side by side: a lone dot product over a 256-wide head is one long chain of
//! dependent adds, which is what made attention ~13% of a Gemma 3 prompt.
//!
//! Every score and every output element is bit-identical to the one-head reference (`attend_reference`: 8-lane
//! products summed lane-wise then lane by lane, values accumulated by FMA in position order), so the fast path
//! changes no result.

use crate::ops;

/// The cached keys and values one KV head reads: rows of `stride` floats, this head's `hd` starting at `offset`.
#[derive(Clone, Copy)]
pub struct KvSpan<'a> {
    pub keys: &'a [f32],
    pub vals: &'a [f32],
    pub stride: usize,
    pub offset: usize,
    pub hd: usize,
}

impl KvSpan<'_> {
    fn key(&self, p: usize) -> &[f32] {
        &self.keys[p * self.stride + self.offset..][..self.hd]
    }
    fn val(&self, p: usize) -> &[f32] {
        &self.vals[p * self.stride + self.offset..][..self.hd]
    }
}

/// `out[h] = softmax_p(q[h] · K[p] × scale) · V[p]` over positions `lo..hi`, for the `q.len() / hd` heads in `q`
/// (contiguous, `hd` each). `scores` holds at least heads × (hi − lo) floats of scratch.
pub fn attend(
    q: &[f32],
    kv: KvSpan<'_>,
    (lo, hi): (usize, usize),
    scale: f32,
    scores: &mut [f32],
    out: &mut [f32],
) {
    let hd = kv.hd;
    let heads = q.len() / hd;
    let n = hi - lo;
    assert!(
        q.len() == heads * hd
            && out.len() >= heads * hd
            && scores.len() >= heads * n
            && (hi == 0
                || (hi - 1) * kv.stride + kv.offset + hd <= kv.keys.len().min(kv.vals.len()))
    );
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: features checked just above; every index stays within the lengths asserted above.
        unsafe { x86::attend(q, kv, (lo, hi), scale, scores, out) };
        return;
    }
    attend_reference(q, kv, (lo, hi), scale, scores, out);
}

/// One head at a time through `ops::dot` and `ops::axpy`: the definition the fast path must equal.
pub fn attend_reference(
    q: &[f32],
    kv: KvSpan<'_>,
    (lo, hi): (usize, usize),
    scale: f32,
    scores: &mut [f32],
    out: &mut [f32],
) {
    let hd = kv.hd;
    let n = hi - lo;
    for (h, qh) in q.chunks_exact(hd).enumerate() {
        let sc = &mut scores[h * n..(h + 1) * n];
        for (p, sv) in (lo..hi).zip(sc.iter_mut()) {
            *sv = ops::dot(qh, kv.key(p)) * scale;
        }
        ops::softmax_inplace(sc);
        let o = &mut out[h * hd..(h + 1) * hd];
        o.fill(0.0);
        for (p, &w) in (lo..hi).zip(sc.iter()) {
            ops::axpy(o, w, kv.val(p));
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::KvSpan;
    use crate::ops;
    use std::arch::x86_64::*;

    /// Heads per register block: 4 heads × 2 keys of 8-lane accumulators for the scores, 4 heads × 16 outputs for
    /// the values — eight accumulators either way, inside AVX2's sixteen registers.
    const HEADS: usize = 4;

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn attend(
        q: &[f32],
        kv: KvSpan<'_>,
        (lo, hi): (usize, usize),
        scale: f32,
        scores: &mut [f32],
        out: &mut [f32],
    ) {
        let heads = q.len() / kv.hd;
        let mut h0 = 0;
        while h0 < heads {
            let m = (heads - h0).min(HEADS);
            unsafe {
                match m {
                    4 => block::<4>(q, kv, (lo, hi), scale, scores, out, h0),
                    3 => block::<3>(q, kv, (lo, hi), scale, scores, out, h0),
                    2 => block::<2>(q, kv, (lo, hi), scale, scores, out, h0),
                    _ => block::<1>(q, kv, (lo, hi), scale, scores, out, h0),
                }
            }
            h0 += m;
        }
    }

    /// Heads h0..h0+M.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn block<const M: usize>(
        q: &[f32],
        kv: KvSpan<'_>,
        (lo, hi): (usize, usize),
        scale: f32,
        scores: &mut [f32],
        out: &mut [f32],
        h0: usize,
    ) {
        let hd = kv.hd;
        let n = hi - lo;
        let chunks = hd / 8;
        let qp: [*const f32; M] = std::array::from_fn(|i| q[(h0 + i) * hd..].as_ptr());
        let sp = scores.as_mut_ptr();
        unsafe {
            // Scores, two keys at a time. Each (head, key) sum keeps one accumulator, so its order is the
            // reference's: products added lane-wise in chunk order, then the lanes in order, then the tail.
            let mut p = lo;
            while p < hi {
                let two = p + 1 < hi;
                let k0 = kv.key(p).as_ptr();
                let k1 = if two { kv.key(p + 1).as_ptr() } else { k0 };
                let mut a = [[_mm256_setzero_ps(); 2]; M];
                for c in 0..chunks {
                    let kv0 = _mm256_loadu_ps(k0.add(8 * c));
                    let kv1 = _mm256_loadu_ps(k1.add(8 * c));
                    for i in 0..M {
                        let qv = _mm256_loadu_ps(qp[i].add(8 * c));
                        a[i][0] = _mm256_add_ps(a[i][0], _mm256_mul_ps(qv, kv0));
                        a[i][1] = _mm256_add_ps(a[i][1], _mm256_mul_ps(qv, kv1));
                    }
                }
                for (i, ai) in a.iter().enumerate() {
                    for (j, &acc) in ai.iter().enumerate().take(1 + usize::from(two)) {
                        let kp = if j == 0 { k0 } else { k1 };
                        let mut s = lanes_in_order(acc);
                        for e in 8 * chunks..hd {
                            s += *qp[i].add(e) * *kp.add(e);
                        }
                        *sp.add((h0 + i) * n + p - lo + j) = s * scale;
                    }
                }
                p += 2;
            }
            for i in 0..M {
                ops::softmax_inplace(&mut scores[(h0 + i) * n..(h0 + i + 1) * n]);
            }
            // Values: out[h][e] = Σ_p w[h][p] · V[p][e] by FMA in position order from zero, as the reference's
            // axpy sequence; 16 elements of each head per pass over the span.
            let sp = scores.as_ptr();
            let op = out.as_mut_ptr();
            let mut e = 0;
            while e + 16 <= hd {
                let mut a = [[_mm256_setzero_ps(); 2]; M];
                for p in lo..hi {
                    let v = kv.val(p).as_ptr().add(e);
                    let (v0, v1) = (_mm256_loadu_ps(v), _mm256_loadu_ps(v.add(8)));
                    for (i, ai) in a.iter_mut().enumerate() {
                        let w = _mm256_broadcast_ss(&*sp.add((h0 + i) * n + p - lo));
                        ai[0] = _mm256_fmadd_ps(w, v0, ai[0]);
                        ai[1] = _mm256_fmadd_ps(w, v1, ai[1]);
                    }
                }
                for (i, ai) in a.iter().enumerate() {
                    _mm256_storeu_ps(op.add((h0 + i) * hd + e), ai[0]);
                    _mm256_storeu_ps(op.add((h0 + i) * hd + e + 8), ai[1]);
                }
                e += 16;
            }
            for e in e..hd {
                for i in 0..M {
                    let mut s = 0f32;
                    for p in lo..hi {
                        s = (*sp.add((h0 + i) * n + p - lo)).mul_add(kv.val(p)[e], s);
                    }
                    *op.add((h0 + i) * hd + e) = s;
                }
            }
        }
    }

    /// a0 + a1 + … + a7, left to right (the reference's `iter().sum()` over its eight lanes).
    #[inline(always)]
    unsafe fn lanes_in_order(v: __m256) -> f32 {
        let mut l = [0f32; 8];
        unsafe { _mm256_storeu_ps(l.as_mut_ptr(), v) };
        l.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn the_fast_path_equals_the_reference_bit_for_bit() {
        // Head widths with 16-, 8- and 1-element tails; groups of 1–9 heads (blocks of 4 and every remainder);
        // odd and even spans, with and without a window start.
        for (hd, heads, n_kv, (lo, hi)) in [
            (256, 4, 1, (0, 37)),
            (64, 3, 3, (5, 6)),
            (64, 9, 3, (0, 64)),
            (128, 7, 2, (11, 50)),
            (72, 2, 1, (0, 9)),
            (41, 5, 1, (3, 20)),
            (8, 1, 1, (0, 1)),
        ] {
            let stride = n_kv * hd;
            let keys = data(hi * stride, 7 + hd as u32);
            let vals = data(hi * stride, 11 + heads as u32);
            let q = data(heads * hd, 13);
            for g in 0..n_kv {
                let kv = KvSpan {
                    keys: &keys,
                    vals: &vals,
                    stride,
                    offset: g * hd,
                    hd,
                };
                let n = hi - lo;
                let (mut s1, mut s2) = (vec![0f32; heads * n], vec![0f32; heads * n]);
                let (mut o1, mut o2) = (vec![1f32; heads * hd], vec![2f32; heads * hd]);
                attend(&q, kv, (lo, hi), 0.125, &mut s1, &mut o1);
                attend_reference(&q, kv, (lo, hi), 0.125, &mut s2, &mut o2);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&s1), bits(&s2), "scores, hd {hd} heads {heads}");
                assert_eq!(bits(&o1), bits(&o2), "outputs, hd {hd} heads {heads}");
            }
        }
    }

    #[test]
    fn attention_weights_a_single_matching_key() {
        // One key aligned with the query and scaled up dominates: the output is (almost exactly) its value.
        let hd = 16;
        let mut keys = vec![0f32; 3 * hd];
        keys[hd..2 * hd].fill(4.0);
        let vals: Vec<f32> = (0..3 * hd).map(|i| (i / hd) as f32).collect();
        let q = vec![1f32; hd];
        let kv = KvSpan {
            keys: &keys,
            vals: &vals,
            stride: hd,
            offset: 0,
            hd,
        };
        let (mut s, mut o) = (vec![0f32; 3], vec![0f32; hd]);
        attend(&q, kv, (0, 3), 1.0, &mut s, &mut o);
        assert!(s[1] > 0.999 && (s.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(o.iter().all(|&v| (v - 1.0).abs() < 1e-3));
    }
}
