//! Byte offsets inside ggml blocks (see ggml-common.h for the C structs these mirror).

/// Q4_0: d f16, qs[16]
pub const Q4_0_BYTES: usize = 18;
/// Q4_1: d f16, m f16, qs[16]
pub const Q4_1_BYTES: usize = 20;
/// Q5_0: d f16, qh u32, qs[16]
pub const Q5_0_BYTES: usize = 22;
/// Q5_1: d f16, m f16, qh u32, qs[16]
pub const Q5_1_BYTES: usize = 24;
/// Q8_0: d f16, qs[32] i8
pub const Q8_0_BYTES: usize = 34;
/// Q2_K: scales[16], qs[64], d f16, dmin f16
pub const Q2_K_BYTES: usize = 84;
/// Q3_K: hmask[32], qs[64], scales[12], d f16
pub const Q3_K_BYTES: usize = 110;
/// Q4_K: d f16, dmin f16, scales[12], qs[128]
pub const Q4_K_BYTES: usize = 144;
/// Q5_K: d f16, dmin f16, scales[12], qh[32], qs[128]
pub const Q5_K_BYTES: usize = 176;
/// Q6_K: ql[128], qh[64], scales[16] i8, d f16
pub const Q6_K_BYTES: usize = 210;
/// TQ1_0: qs[48] (5 base-3 digits per byte), qh[4] (4 digits per byte), d f16
pub const TQ1_0_BYTES: usize = 54;
/// TQ2_0: qs[64] (4 two-bit codes per byte), d f16
pub const TQ2_0_BYTES: usize = 66;
pub const QK_K: usize = 256;

/// The 6-bit scale and min of sub-block `j` (0..8) of a Q4_K / Q5_K super-block (`get_scale_min_k4`).
#[inline]
pub fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}
