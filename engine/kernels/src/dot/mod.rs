//! Row · activation dot products. `scalar` is the reference; `x86` holds AVX2 and AVX-512 VNNI versions that are
//! selected once at run time (`Isa::detect`), `kquant` the K-quants' AVX2 kernels on Q8_K activations (one
//! scale per 256, as llama.cpp pairs them). Every SIMD kernel is tested against the scalar one. On AArch64 the
//! `NeonDot` path has SIMD kernels for the ternary back end (packed ternary matrices and int8 rows); the GGUF
//! block formats use the scalar kernels there.

/// The x86 multi-token entries' dispatch: `out[..n] = $call` with the token count `n` (2..=8) as the const
/// generic the call's `_` stands for.
#[cfg(target_arch = "x86_64")]
macro_rules! tokens {
    ($n:expr, $out:expr, $f:ident::<$F:ty, _>($($arg:expr),*)) => {
        match $n {
            2 => $out[..2].copy_from_slice(&$f::<$F, 2>($($arg),*)),
            3 => $out[..3].copy_from_slice(&$f::<$F, 3>($($arg),*)),
            4 => $out[..4].copy_from_slice(&$f::<$F, 4>($($arg),*)),
            5 => $out[..5].copy_from_slice(&$f::<$F, 5>($($arg),*)),
            6 => $out[..6].copy_from_slice(&$f::<$F, 6>($($arg),*)),
            7 => $out[..7].copy_from_slice(&$f::<$F, 7>($($arg),*)),
            _ => $out[..8].copy_from_slice(&$f::<$F, 8>($($arg),*)),
        }
    };
}

#[cfg(target_arch = "x86_64")]
mod float_tile;
#[cfg(target_arch = "x86_64")]
mod kquant;
#[cfg(target_arch = "x86_64")]
pub(crate) mod lanes;
pub mod scalar;
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86;

use super::{GgmlType, QGroup, QRow};

/// Which instruction-set path the kernels use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Isa {
    Scalar,
    Avx2,
    Avx512Vnni,
    /// AVX2 with AVX-VNNI (`vpdpbusd` on 256-bit registers without AVX-512: Intel Alder Lake and later client
    /// CPUs, AMD Zen 5). The ternary kernels use it; the GGUF block formats run their AVX2 kernels.
    AvxVnni,
    /// AArch64 NEON with the dot-product extension (`sdot`).
    NeonDot,
}

impl Isa {
    /// The best path this CPU supports; `HEARTH_ISA=scalar|avx2` caps it (for tests and comparisons).
    pub fn detect() -> Isa {
        let best = Self::best_supported();
        match std::env::var("HEARTH_ISA").ok().as_deref() {
            Some("scalar") => Isa::Scalar,
            Some("avx2") if matches!(best, Isa::Avx2 | Isa::AvxVnni | Isa::Avx512Vnni) => Isa::Avx2,
            _ => best,
        }
    }

    pub fn best_supported() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx2")
                && std::is_x86_feature_detected!("fma")
                && std::is_x86_feature_detected!("f16c")
            {
                if std::is_x86_feature_detected!("avx512vnni")
                    && std::is_x86_feature_detected!("avx512vl")
                {
                    return Isa::Avx512Vnni;
                }
                if std::is_x86_feature_detected!("avxvnni") {
                    return Isa::AvxVnni;
                }
                return Isa::Avx2;
            }
        }
        #[cfg(target_arch = "aarch64")]
        if std::arch::is_aarch64_feature_detected!("neon")
            && std::arch::is_aarch64_feature_detected!("dotprod")
        {
            return Isa::NeonDot;
        }
        Isa::Scalar
    }

    /// Every path this CPU can run, the scalar reference first (tests compare each with it). A CPU with AVX-512
    /// VNNI and AVX-VNNI (Sapphire Rapids and later) runs both VNNI paths.
    pub fn runnable() -> Vec<Isa> {
        let mut v = vec![Isa::Scalar];
        #[cfg(target_arch = "x86_64")]
        if Self::best_supported() != Isa::Scalar {
            v.push(Isa::Avx2);
            if std::is_x86_feature_detected!("avxvnni") {
                v.push(Isa::AvxVnni);
            }
            if Self::best_supported() == Isa::Avx512Vnni {
                v.push(Isa::Avx512Vnni);
            }
        }
        #[cfg(target_arch = "aarch64")]
        if Self::best_supported() == Isa::NeonDot {
            v.push(Isa::NeonDot);
        }
        v
    }

    /// Whether this CPU can run the path (a value made by hand may name one it lacks).
    pub fn supported(self) -> bool {
        match self {
            Isa::Scalar => true,
            Isa::Avx2 => Self::best_supported() != Isa::Scalar && cfg!(target_arch = "x86_64"),
            Isa::Avx512Vnni => Self::best_supported() == Isa::Avx512Vnni,
            Isa::AvxVnni => {
                #[cfg(target_arch = "x86_64")]
                {
                    Self::best_supported() != Isa::Scalar
                        && std::is_x86_feature_detected!("avxvnni")
                }
                #[cfg(not(target_arch = "x86_64"))]
                false
            }
            Isa::NeonDot => Self::best_supported() == Isa::NeonDot,
        }
    }

    /// This path if the CPU has it, else the scalar reference: every kernel handed out is safe to call.
    pub fn or_scalar(self) -> Isa {
        if self.supported() {
            self
        } else {
            Isa::Scalar
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512Vnni => "avx512vnni",
            Isa::AvxVnni => "avxvnni",
            Isa::NeonDot => "neon-dotprod",
        }
    }
}

/// `w_row` (one weight row of type `ty`) · activations. `xq` is the int8 form, `xf` the f32 form of the same row
/// (types without an integer kernel use `xf`).
pub type DotFn = fn(w_row: &[u8], xq: QRow<'_>, xf: &[f32]) -> f32;

/// Two to `quant::GROUP` (eight) activation rows at once (int8 formats): `out[t] = w_row · g.rows[t]`, bit-identical to `DotFn`
/// on each row alone.
pub type DotManyFn = fn(w_row: &[u8], g: &QGroup<'_>, out: &mut [f32]);

/// One to four f32 activation rows at once, for float weights: `out[t] = w_row · xf[t]`, bit-identical to `DotFn`
/// on each row alone.
pub type DotNFFn = fn(w_row: &[u8], xf: &[&[f32]], out: &mut [f32]);

/// Weight rows per float tile call (`FloatTileFn`).
pub const TILE_ROWS: usize = 3;

/// [`TILE_ROWS`] F16 weight rows against one to four f32 activation rows: `out[r][t] = w_rows[r] · xf[t]`,
/// bit-identical to `DotFn` on each pair alone.
pub type FloatTileFn =
    fn(w_rows: &[&[u8]; TILE_ROWS], xf: &[&[f32]], out: &mut [[f32; 4]; TILE_ROWS]);

/// Four weight rows against one activation row: `out[r] = w_rows[r] · xq`, bit-identical to `DotFn` on each row.
pub type DotR4Fn = fn(w_rows: &[&[u8]; 4], xq: QRow<'_>) -> [f32; 4];

/// Whether the 512-bit integer kernels may run: the AVX-512 path on a CPU with AVX-512BW (every VNNI CPU has it).
#[cfg(target_arch = "x86_64")]
fn wide_ints(isa: Isa) -> bool {
    isa == Isa::Avx512Vnni && std::is_x86_feature_detected!("avx512bw")
}

/// The four-row kernel for a weight type, where one exists (generation: one token, many rows).
pub fn kernel_r4(ty: GgmlType, isa: Isa) -> Option<DotR4Fn> {
    let isa = isa.or_scalar();
    #[cfg(target_arch = "x86_64")]
    if isa != Isa::Scalar {
        if let Some((_, r4, _)) = kquant::kernels(ty, wide_ints(isa)) {
            return Some(r4);
        }
        return x86::kernel_r4(ty, isa == Isa::Avx512Vnni);
    }
    let _ = (ty, isa);
    None
}

/// The two-to-eight-token kernel for a weight type (int8 formats on x86), where one exists.
pub fn kernel_many(ty: GgmlType, isa: Isa) -> Option<DotManyFn> {
    let isa = isa.or_scalar();
    #[cfg(target_arch = "x86_64")]
    if isa != Isa::Scalar {
        if let Some((_, _, many)) = kquant::kernels(ty, wide_ints(isa)) {
            return Some(many);
        }
        return x86::kernel_many(ty, isa == Isa::Avx512Vnni, wide_ints(isa));
    }
    let _ = (ty, isa);
    None
}

/// The one-to-four-token kernel for a float weight type (F16 on x86), where one exists.
pub fn kernel_float_n(ty: GgmlType, isa: Isa) -> Option<DotNFFn> {
    let isa = isa.or_scalar();
    #[cfg(target_arch = "x86_64")]
    if isa != Isa::Scalar {
        return x86::kernel_float_n(ty, isa == Isa::Avx512Vnni);
    }
    let _ = (ty, isa);
    None
}

/// The row-tiled F16 kernel (AVX-512F), where one exists; capped like the rest by `HEARTH_ISA`.
pub fn kernel_float_tile(ty: GgmlType, isa: Isa) -> Option<FloatTileFn> {
    let isa = isa.or_scalar();
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx512Vnni {
        return float_tile::kernel(ty);
    }
    let _ = (ty, isa);
    None
}

/// The kernel for a weight type on a given ISA.
pub fn kernel(ty: GgmlType, isa: Isa) -> Option<DotFn> {
    let isa = isa.or_scalar();
    #[cfg(target_arch = "x86_64")]
    if isa != Isa::Scalar {
        if let Some((one, _, _)) = kquant::kernels(ty, wide_ints(isa)) {
            return Some(one);
        }
        if let Some(k) = x86::kernel(ty, isa == Isa::Avx512Vnni) {
            return Some(k);
        }
    }
    let _ = isa;
    scalar::kernel(ty)
}

/// The activation form a type's integer kernel reads: Q8_K (one scale per 256) for the K-quants, as llama.cpp's
/// `vec_dot_type` has it, Q8 (one per 32) for the rest.
pub fn act_format(ty: GgmlType) -> crate::ActFormat {
    match ty {
        GgmlType::Q4K | GgmlType::Q5K | GgmlType::Q6K => crate::ActFormat::Q8K,
        _ => crate::ActFormat::Q8,
    }
}

/// Whether a type's kernel reads the int8 activations (then callers must quantize them first).
pub fn uses_int8_acts(ty: GgmlType) -> bool {
    matches!(
        ty,
        GgmlType::Q4_0
            | GgmlType::Q4_1
            | GgmlType::Q5_0
            | GgmlType::Q5_1
            | GgmlType::Q8_0
            | GgmlType::Q4K
            | GgmlType::Q5K
            | GgmlType::Q6K
            | GgmlType::TQ2_0
    )
}
