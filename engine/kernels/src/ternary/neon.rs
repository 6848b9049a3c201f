//! The AArch64 group kernel (NEON + the dot-product extension, `sdot`). Per 32-byte line (128 weights of one
//! row) two 16-byte halves; each byte's four 2-bit codes come out with byte shifts and one mask (NEON shifts
//! bytes, so no ×4 trick is needed as on AVX2), and each quarter multiplies 16 int8 activations with `sdot`
//! into 32-bit lanes: codes 0..2 and |x| ≤ 127 make it exact with no widening step.
//!
//! `sdot`'s intrinsic (`vdotq_s32`) is not stable Rust yet, so the instruction is written as inline assembly;
//! the function enabling `dotprod` is chosen only after run-time detection.

use super::Kernels;
use crate::ternary::{CHUNK, GROUP};
use std::arch::aarch64::*;

/// acc += Σ of four byte products per 32-bit lane (signed × signed).
#[inline]
#[target_feature(enable = "neon,dotprod")]
unsafe fn sdot(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    let mut acc = acc;
    // SAFETY: registers only; callers are compiled with `dotprod` and selected after detection.
    unsafe {
        std::arch::asm!(
            "sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b",
            acc = inout(vreg) acc,
            a = in(vreg) a,
            b = in(vreg) b,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    acc
}

/// How many 128-byte chunks ahead to prefetch (as on x86: one decode step streams the whole model).
const PREFETCH: usize = 64;

#[target_feature(enable = "neon,dotprod")]
#[allow(clippy::needless_range_loop)] // i is a row of every token's output and a line of the chunk
unsafe fn group_impl<const T: usize>(w: &[u8], x: &[&[i8]; T]) -> [[i32; GROUP]; T] {
    unsafe {
        let n_chunks = w.len() / CHUNK;
        for xt in x {
            debug_assert!(xt.len() >= n_chunks * CHUNK);
        }
        let m = vdupq_n_u8(0b11);
        let mut out = [[0i32; GROUP]; T];
        for i in 0..GROUP {
            let mut acc = [vdupq_n_s32(0); T];
            for k in 0..n_chunks {
                let base = w.as_ptr().add(k * CHUNK);
                if i < 2 {
                    let ahead = base.wrapping_add(PREFETCH * CHUNK + 64 * i);
                    std::arch::asm!(
                        "prfm pldl1keep, [{p}]",
                        p = in(reg) ahead,
                        options(nostack, preserves_flags, readonly)
                    );
                }
                for h in 0..2 {
                    let v = vld1q_u8(base.add(i * 32 + 16 * h));
                    // Quarter l of byte j is column 128k + 32l + j; this half holds j = 16h..16h+16.
                    let q = [
                        vreinterpretq_s8_u8(vandq_u8(v, m)),
                        vreinterpretq_s8_u8(vandq_u8(vshrq_n_u8::<2>(v), m)),
                        vreinterpretq_s8_u8(vandq_u8(vshrq_n_u8::<4>(v), m)),
                        vreinterpretq_s8_u8(vshrq_n_u8::<6>(v)),
                    ];
                    for t in 0..T {
                        let xp = x[t].as_ptr().add(k * CHUNK + 16 * h);
                        for (l, ql) in q.iter().enumerate() {
                            acc[t] = sdot(acc[t], *ql, vld1q_s8(xp.add(32 * l)));
                        }
                    }
                }
            }
            for t in 0..T {
                out[t][i] = vaddvq_s32(acc[t]);
            }
        }
        out
    }
}

group_entry_points!();

pub const DOTPROD: Kernels = Kernels {
    t1,
    t2,
    t3,
    t4,
    name: "neon dotprod (sdot, i2 4-row groups, per-token int8)",
};
