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

/// One query row of a tile: its heads' queries (`hd` each, contiguous), the positions it attends (`lo..hi`), and
/// where its heads' outputs go.
pub struct Row<'a> {
    pub q: &'a [f32],
    pub span: (usize, usize),
    pub out: &'a mut [f32],
}

/// Scratch floats `attend_rows` needs for `rows`: each row's heads × its span.
pub fn tile_scores_len(rows: &[Row<'_>], hd: usize) -> usize {
    rows.iter()
        .map(|r| r.q.len() / hd * (r.span.1 - r.span.0))
        .sum()
}

/// [`attend`] for several query rows over one KV span — consecutive positions of a prompt, the heads of one KV
/// group. Each key and value row is read once for the whole tile instead of once per row: a few thousand
/// positions of cache no longer fit the CPU's caches, and reading them per row made long prompts wait on memory.
/// Every score and output is bit-identical to [`attend`] of that row alone (the same sums in the same order; only
/// the loops around them are exchanged).
pub fn attend_rows(rows: &mut [Row<'_>], kv: KvSpan<'_>, scale: f32, scores: &mut [f32]) {
    let hd = kv.hd;
    let heads = rows.first().map_or(0, |r| r.q.len() / hd);
    assert!(
        hd > 0
            && scores.len() >= tile_scores_len(rows, hd)
            && rows.iter().all(|r| {
                let (lo, hi) = r.span;
                r.q.len() == heads * hd
                    && r.out.len() >= heads * hd
                    && lo < hi
                    && (hi - 1) * kv.stride + kv.offset + hd <= kv.keys.len().min(kv.vals.len())
            })
    );
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: features checked just above; every index stays within the lengths asserted above.
        unsafe { x86::attend_rows(rows, kv, scale, scores) };
        return;
    }
    let mut at = 0;
    for r in rows.iter_mut() {
        let n = heads * (r.span.1 - r.span.0);
        attend(r.q, kv, r.span, scale, &mut scores[at..at + n], r.out);
        at += n;
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
        let qp: [*const f32; M] = std::array::from_fn(|i| q[(h0 + i) * hd..].as_ptr());
        let sp = scores.as_mut_ptr();
        unsafe {
            // Scores: each (head, key) sum in the reference's order (`score_keys`).
            for (i, &qi) in qp.iter().enumerate() {
                score_keys(qi, kv, (lo, hi), scale, sp.add((h0 + i) * n));
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

    /// Keys per block in `attend_rows`' scores: 64 keys of up to 128 floats (32 KiB) stay in L1/L2 while every
    /// query row of the tile reads them.
    const KEY_BLOCK: usize = 64;

    /// out[p − from] = (q · K[p]) × scale for p in from..to, eight keys at a time. Each sum is the reference's
    /// (`ops::dot`): products added lane-wise in chunk order, the eight lanes then added left to right, then the
    /// tail — the eight keys' lane sums run side by side through a transpose instead of one by one.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn score_keys(
        q: *const f32,
        kv: KvSpan<'_>,
        (from, to): (usize, usize),
        scale: f32,
        out: *mut f32,
    ) {
        let hd = kv.hd;
        let chunks = hd / 8;
        // The identity `f32::sum` folds from (−0.0 in current Rust), so a lane sum of −0.0 keeps its sign as there.
        let start = _mm256_set1_ps([0f32; 0].iter().sum::<f32>());
        let mut p = from;
        unsafe {
            while p < to {
                let m = (to - p).min(8);
                let k: [*const f32; 8] = std::array::from_fn(|j| kv.key(p + j.min(m - 1)).as_ptr());
                let mut a = [_mm256_setzero_ps(); 8];
                for c in 0..chunks {
                    let qv = _mm256_loadu_ps(q.add(8 * c));
                    for j in 0..8 {
                        a[j] = _mm256_add_ps(
                            a[j],
                            _mm256_mul_ps(qv, _mm256_loadu_ps(k[j].add(8 * c))),
                        );
                    }
                }
                let t = transpose8(a);
                let mut sum = _mm256_add_ps(start, t[0]);
                for tj in &t[1..] {
                    sum = _mm256_add_ps(sum, *tj);
                }
                let mut l = [0f32; 8];
                _mm256_storeu_ps(l.as_mut_ptr(), sum);
                for (j, s) in l.iter_mut().enumerate().take(m) {
                    for e in 8 * chunks..hd {
                        *s += *q.add(e) * *k[j].add(e);
                    }
                    *out.add(p - from + j) = *s * scale;
                }
                p += m;
            }
        }
    }

    /// Lane j of result i = lane i of a[j].
    #[inline(always)]
    unsafe fn transpose8(a: [__m256; 8]) -> [__m256; 8] {
        unsafe {
            let t0 = _mm256_unpacklo_ps(a[0], a[1]);
            let t1 = _mm256_unpackhi_ps(a[0], a[1]);
            let t2 = _mm256_unpacklo_ps(a[2], a[3]);
            let t3 = _mm256_unpackhi_ps(a[2], a[3]);
            let t4 = _mm256_unpacklo_ps(a[4], a[5]);
            let t5 = _mm256_unpackhi_ps(a[4], a[5]);
            let t6 = _mm256_unpacklo_ps(a[6], a[7]);
            let t7 = _mm256_unpackhi_ps(a[6], a[7]);
            let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
            let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
            let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
            let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
            let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
            let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
            let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
            let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
            [
                _mm256_permute2f128_ps::<0x20>(u0, u4),
                _mm256_permute2f128_ps::<0x20>(u1, u5),
                _mm256_permute2f128_ps::<0x20>(u2, u6),
                _mm256_permute2f128_ps::<0x20>(u3, u7),
                _mm256_permute2f128_ps::<0x31>(u0, u4),
                _mm256_permute2f128_ps::<0x31>(u1, u5),
                _mm256_permute2f128_ps::<0x31>(u2, u6),
                _mm256_permute2f128_ps::<0x31>(u3, u7),
            ]
        }
    }

    /// Positions per value block in `attend_rows`: 128 rows of 16 floats (8 KiB) stay in L1 while every query
    /// row of the tile reads them.
    const VALUE_BLOCK: usize = 128;

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn attend_rows(
        rows: &mut [super::Row<'_>],
        kv: KvSpan<'_>,
        scale: f32,
        scores: &mut [f32],
    ) {
        let heads = rows[0].q.len() / kv.hd;
        let mut offs = Vec::with_capacity(rows.len());
        let mut at = 0;
        for r in rows.iter() {
            offs.push(at);
            at += heads * (r.span.1 - r.span.0);
        }
        let mut h0 = 0;
        while h0 < heads {
            let m = (heads - h0).min(HEADS);
            unsafe {
                match m {
                    4 => tile::<4>(rows, kv, scale, scores, &offs, h0),
                    3 => tile::<3>(rows, kv, scale, scores, &offs, h0),
                    2 => tile::<2>(rows, kv, scale, scores, &offs, h0),
                    _ => tile::<1>(rows, kv, scale, scores, &offs, h0),
                }
            }
            h0 += m;
        }
    }

    /// Heads h0..h0+M of every row: `block`'s arithmetic with the key (then value) loop outside the row loop.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn tile<const M: usize>(
        rows: &mut [super::Row<'_>],
        kv: KvSpan<'_>,
        scale: f32,
        scores: &mut [f32],
        offs: &[usize],
        h0: usize,
    ) {
        let hd = kv.hd;
        let lo_all = rows.iter().map(|r| r.span.0).min().unwrap_or(0);
        let hi_all = rows.iter().map(|r| r.span.1).max().unwrap_or(0);
        let sp = scores.as_mut_ptr();
        unsafe {
            // Scores, a block of keys at a time, each block then read by every row that attends to it.
            let mut b0 = lo_all;
            while b0 < hi_all {
                let b1 = (b0 + KEY_BLOCK).min(hi_all);
                for (r, &off) in rows.iter().zip(offs) {
                    let (lo, hi) = r.span;
                    let (from, to) = (lo.max(b0), hi.min(b1));
                    if from >= to {
                        continue;
                    }
                    let n = hi - lo;
                    for i in 0..M {
                        let q = r.q[(h0 + i) * hd..].as_ptr();
                        score_keys(
                            q,
                            kv,
                            (from, to),
                            scale,
                            sp.add(off + (h0 + i) * n + from - lo),
                        );
                    }
                }
                b0 = b1;
            }
            for (r, &off) in rows.iter().zip(offs) {
                let n = r.span.1 - r.span.0;
                for i in 0..M {
                    let at = off + (h0 + i) * n;
                    ops::softmax_inplace(&mut scores[at..at + n]);
                }
            }
            // Values: each row's sum runs by FMA in position order from zero, as `block`'s, carried in the output
            // between value blocks (a stored and reloaded f32 is the same f32).
            let sp = scores.as_ptr();
            let mut e = 0;
            while e + 16 <= hd {
                let mut b0 = lo_all;
                while b0 < hi_all {
                    let b1 = (b0 + VALUE_BLOCK).min(hi_all);
                    for (r, &off) in rows.iter_mut().zip(offs) {
                        let (lo, hi) = r.span;
                        let (from, to) = (lo.max(b0), hi.min(b1));
                        if from >= to {
                            continue;
                        }
                        let n = hi - lo;
                        let op = r.out.as_mut_ptr();
                        let mut a = [[_mm256_setzero_ps(); 2]; M];
                        if from > lo {
                            for (i, ai) in a.iter_mut().enumerate() {
                                ai[0] = _mm256_loadu_ps(op.add((h0 + i) * hd + e));
                                ai[1] = _mm256_loadu_ps(op.add((h0 + i) * hd + e + 8));
                            }
                        }
                        for p in from..to {
                            let v = kv.val(p).as_ptr().add(e);
                            let (v0, v1) = (_mm256_loadu_ps(v), _mm256_loadu_ps(v.add(8)));
                            for (i, ai) in a.iter_mut().enumerate() {
                                let w = _mm256_broadcast_ss(&*sp.add(off + (h0 + i) * n + p - lo));
                                ai[0] = _mm256_fmadd_ps(w, v0, ai[0]);
                                ai[1] = _mm256_fmadd_ps(w, v1, ai[1]);
                            }
                        }
                        for (i, ai) in a.iter().enumerate() {
                            _mm256_storeu_ps(op.add((h0 + i) * hd + e), ai[0]);
                            _mm256_storeu_ps(op.add((h0 + i) * hd + e + 8), ai[1]);
                        }
                    }
                    b0 = b1;
                }
                e += 16;
            }
            for (r, &off) in rows.iter_mut().zip(offs) {
                let (lo, hi) = r.span;
                let n = hi - lo;
                for e in e..hd {
                    for i in 0..M {
                        let mut s = 0f32;
                        for p in lo..hi {
                            s = (*sp.add(off + (h0 + i) * n + p - lo)).mul_add(kv.val(p)[e], s);
                        }
                        r.out[(h0 + i) * hd + e] = s;
                    }
                }
            }
        }
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
    fn a_tile_of_rows_equals_each_row_alone_bit_for_bit() {
        // Causal prompt rows (row t attends 0..=p0+t), with and without a window, across value blocks (spans past
        // 128), head counts 1–6 and widths with 16-, 8- and 1-element tails.
        for (hd, heads, rows, p0, window) in [
            (64, 4, 16, 0, None),
            (64, 4, 7, 300, None),
            (128, 3, 5, 130, Some(100)),
            (256, 1, 4, 9, None),
            (72, 6, 3, 2, Some(2)),
            (41, 2, 9, 140, None),
        ] {
            let n_kv = 2;
            let stride = n_kv * hd;
            let hi_all = p0 + rows;
            let keys = data(hi_all * stride, 5 + hd as u32);
            let vals = data(hi_all * stride, 9 + heads as u32);
            let q = data(rows * heads * hd, 17);
            let kv = KvSpan {
                keys: &keys,
                vals: &vals,
                stride,
                offset: hd,
                hd,
            };
            let span = |t: usize| {
                let hi = p0 + t + 1;
                (window.map_or(0, |w: usize| hi.saturating_sub(w)), hi)
            };
            let mut want = vec![0f32; rows * heads * hd];
            for (t, o) in want.chunks_exact_mut(heads * hd).enumerate() {
                let (lo, hi) = span(t);
                let mut sc = vec![0f32; heads * (hi - lo)];
                attend(
                    &q[t * heads * hd..][..heads * hd],
                    kv,
                    (lo, hi),
                    0.1,
                    &mut sc,
                    o,
                );
            }
            let mut got = vec![3f32; rows * heads * hd];
            let mut tile: Vec<Row<'_>> = got
                .chunks_exact_mut(heads * hd)
                .enumerate()
                .map(|(t, out)| Row {
                    q: &q[t * heads * hd..][..heads * hd],
                    span: span(t),
                    out,
                })
                .collect();
            let mut scores = vec![0f32; tile_scores_len(&tile, hd)];
            attend_rows(&mut tile, kv, 0.1, &mut scores);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&want), "hd {hd} heads {heads} rows {rows}");
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
