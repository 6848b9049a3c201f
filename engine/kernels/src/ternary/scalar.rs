//! The scalar reference: decodes each code from the packed layout and multiplies-adds in i32.

use super::Kernels;
use crate::ternary::{CHUNK, GROUP};

pub const KERNELS: Kernels = Kernels {
    t1: group::<1>,
    t2: group::<2>,
    t3: group::<3>,
    t4: group::<4>,
    name: "scalar (i2 4-row groups, per-token int8)",
};

pub fn group<const T: usize>(w: &[u8], x: &[&[i8]; T]) -> [[i32; GROUP]; T] {
    let mut out = [[0i32; GROUP]; T];
    for (k, chunk) in w.chunks_exact(CHUNK).enumerate() {
        for i in 0..GROUP {
            let line = &chunk[i * 32..i * 32 + 32];
            for (j, &b) in line.iter().enumerate() {
                for l in 0..4 {
                    let c = ((b >> (2 * l)) & 3) as i32;
                    let col = k * CHUNK + 32 * l + j;
                    for t in 0..T {
                        out[t][i] += c * x[t][col] as i32;
                    }
                }
            }
        }
    }
    out
}
