//! Weight matrices (borrowed from the memory map, or owned when converted at load) and the parallel
//! matrix × activations product built on `quant::dot`.

use crate::error::{EngineError, Result};
use crate::gguf::GgufFile;
use crate::quant::dot::{self, DotFn, DotManyFn, DotNFFn, DotR4Fn, FloatTileFn, Isa, TILE_ROWS};
use crate::quant::rows_i8::{matmul_rows_i8, RowsI8};
use crate::quant::{
    balanced_groups, dequantize_row, token_groups, ActFormat, GgmlType, QActs, GROUP,
};
use crate::ternary::kernels::Kernels;
use crate::ternary::{formats, matmul_packed, Packed};
use crate::threadpool::{SharedMut, ThreadPool};
use hearth_kernels::rows_i8::I8Path;
use std::sync::Arc;

enum Storage {
    Mapped {
        file: Arc<GgufFile>,
        index: usize,
    },
    Owned(Vec<u8>),
    /// Ternary weights repacked for the ternary back end (`ternary::Packed`), with its kernels.
    Packed(Packed, Kernels),
    /// Int8 rows with per-row scales (`head = "i8"`); the flag: AVX2 kernels.
    RowsI8(RowsI8, I8Path),
}

/// A [rows × cols] matrix; row r is `cols` elements of `ty`, contiguous.
pub struct Weight {
    pub name: String,
    pub ty: GgmlType,
    pub rows: usize,
    pub cols: usize,
    row_bytes: usize,
    storage: Storage,
    /// None only for packed ternary weights, which `matmul` runs through `ternary::matmul_packed`.
    kernel: Option<DotFn>,
    /// Two to eight tokens at once (int8 formats): prompts, batches and speculative verification decode each
    /// weight block once for all of them.
    kernel_many: Option<DotManyFn>,
    /// One to four tokens at once on f32 activations (F16 weights): prompts, batches and speculative
    /// verification convert each weight vector once for all of them.
    kernel_nf: Option<DotNFFn>,
    /// The same, three rows at a time (AVX-512): each activation vector loaded once per three rows.
    kernel_tile: Option<FloatTileFn>,
    kernel_r4: Option<DotR4Fn>,
}

impl std::fmt::Debug for Weight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Weight({} {} [{}x{}])",
            self.name, self.ty, self.rows, self.cols
        )
    }
}

impl Weight {
    /// A 2-D tensor of the file as a matrix, checked to have a kernel.
    pub fn from_file(file: &Arc<GgufFile>, name: &str, isa: Isa) -> Result<Weight> {
        let bad = |reason: String| EngineError::BadTensor {
            path: file.path().to_path_buf(),
            tensor: name.to_owned(),
            reason,
        };
        let index = file
            .tensor_index(name)
            .ok_or_else(|| bad("required tensor is missing".into()))?;
        let info = &file.tensors[index];
        if info.dims.len() > 2 {
            return Err(bad(format!(
                "expected a matrix, found dimensions {:?}",
                info.dims
            )));
        }
        if !info.ty.is_supported_weight() {
            return Err(EngineError::UnsupportedTensorType {
                path: file.path().to_path_buf(),
                tensor: name.to_owned(),
                ty: info.ty.name(),
            });
        }
        let cols = info.row_len();
        if !cols.is_multiple_of(32) {
            return Err(bad(format!("row length {cols} is not a multiple of 32")));
        }
        if info.ty == GgmlType::I2S {
            // I2_S has one scale per tensor, so rows cannot be read alone: it is always repacked.
            let packed = formats::pack(info.ty, file.tensor_data(info), info.n_rows(), cols)
                .map_err(bad)?
                .ok_or_else(|| bad("cannot repack I2_S data".into()))?;
            return Ok(Self::from_packed(name, info.ty, packed, isa));
        }
        let kernel =
            dot::kernel(info.ty, isa).ok_or_else(|| bad(format!("no kernel for {}", info.ty)))?;
        let (be, bb) = info.ty.block_geometry().unwrap_or((1, 4));
        Ok(Weight {
            name: name.to_owned(),
            ty: info.ty,
            rows: info.n_rows(),
            cols,
            row_bytes: cols / be * bb,
            storage: Storage::Mapped {
                file: file.clone(),
                index,
            },
            kernel: Some(kernel),
            kernel_many: dot::kernel_many(info.ty, isa),
            kernel_nf: dot::kernel_float_n(info.ty, isa),
            kernel_tile: dot::kernel_float_tile(info.ty, isa),
            kernel_r4: dot::kernel_r4(info.ty, isa),
        })
    }

    /// The same matrix converted to F32, F16, Q8_0 or Q4_0 and owned (the `dtype = "f16"` load option;
    /// `head = "q8_0"` / `"q4_0"`).
    pub fn converted(&self, ty: GgmlType, isa: Isa) -> Result<Weight> {
        let row_bytes = match ty {
            GgmlType::F32 => self.cols * 4,
            GgmlType::F16 => self.cols * 2,
            GgmlType::Q8_0 if self.cols.is_multiple_of(32) => {
                self.cols / 32 * crate::quant::blocks::Q8_0_BYTES
            }
            GgmlType::Q4_0 if self.cols.is_multiple_of(32) => {
                self.cols / 32 * crate::quant::blocks::Q4_0_BYTES
            }
            other => {
                return Err(EngineError::InvalidRequest(format!(
                    "cannot convert weights to {other}"
                )))
            }
        };
        let mut data = Vec::with_capacity(self.rows * row_bytes);
        let mut row = vec![0f32; self.cols];
        for r in 0..self.rows {
            self.dequantize_row(r, &mut row);
            match ty {
                GgmlType::F32 => row
                    .iter()
                    .for_each(|v| data.extend_from_slice(&v.to_le_bytes())),
                GgmlType::F16 => row.iter().for_each(|v| {
                    data.extend_from_slice(&half::f16::from_f32(*v).to_bits().to_le_bytes())
                }),
                GgmlType::Q8_0 => data.extend(crate::quant::quantize_q8_0(&row)),
                _ => data.extend(crate::quant::quantize_q4_0(&row)),
            }
        }
        Ok(Weight {
            name: self.name.clone(),
            ty,
            rows: self.rows,
            cols: self.cols,
            row_bytes,
            storage: Storage::Owned(data),
            kernel: Some(
                dot::kernel(ty, isa)
                    .ok_or_else(|| EngineError::InvalidRequest(format!("no kernel for {ty}")))?,
            ),
            kernel_many: dot::kernel_many(ty, isa),
            kernel_nf: dot::kernel_float_n(ty, isa),
            kernel_tile: dot::kernel_float_tile(ty, isa),
            kernel_r4: dot::kernel_r4(ty, isa),
        })
    }

    /// A repacked ternary matrix as a weight (`ty`: the file type it came from).
    pub fn from_packed(name: &str, ty: GgmlType, packed: Packed, isa: Isa) -> Weight {
        Weight {
            name: name.to_owned(),
            ty,
            rows: packed.rows,
            cols: packed.cols,
            row_bytes: packed.cols / 4,
            storage: Storage::Packed(packed, Kernels::for_isa(isa)),
            kernel: None,
            kernel_many: None,
            kernel_nf: None,
            kernel_tile: None,
            kernel_r4: None,
        }
    }

    /// Repacks a TQ2_0 / TQ1_0 matrix for the ternary back end when every block shares one scale (BitNet models
    /// converted by llama.cpp do); returns whether it did. The caller must then feed per-token activations.
    pub fn repack_ternary(&mut self, isa: Isa) -> std::result::Result<bool, String> {
        if !matches!(self.ty, GgmlType::TQ2_0 | GgmlType::TQ1_0)
            || matches!(self.storage, Storage::Packed(..))
        {
            return Ok(matches!(self.storage, Storage::Packed(..)));
        }
        match formats::pack(self.ty, self.bytes(), self.rows, self.cols)? {
            Some(p) => {
                *self = Self::from_packed(&self.name, self.ty, p, isa);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// The same matrix as int8 rows with per-row scales (`head = "i8"`); it then needs per-token activations.
    pub fn to_rows_i8(&self, isa: Isa) -> Weight {
        let m = RowsI8::quantize(self.rows, self.cols, |r, buf| self.dequantize_row(r, buf));
        Weight {
            name: self.name.clone(),
            ty: GgmlType::I8,
            rows: self.rows,
            cols: self.cols,
            row_bytes: self.cols,
            storage: Storage::RowsI8(m, I8Path::for_isa(isa)),
            kernel: None,
            kernel_many: None,
            kernel_nf: None,
            kernel_tile: None,
            kernel_r4: None,
        }
    }

    /// Whether `matmul` needs this weight's activations quantized per token (ternary and int8-row weights).
    pub fn wants_per_token(&self) -> bool {
        matches!(self.storage, Storage::Packed(..) | Storage::RowsI8(..))
    }

    /// The per-matrix scale of a repacked ternary weight, to fold a separate scale tensor into.
    pub fn packed_scale_mut(&mut self) -> Option<&mut f32> {
        match &mut self.storage {
            Storage::Packed(p, _) => Some(&mut p.scale),
            _ => None,
        }
    }

    /// Whether `dot_row` can score single rows (weights with a one-row kernel: not repacked or int8-row ones).
    pub fn has_row_kernel(&self) -> bool {
        self.kernel.is_some()
    }

    /// Row r · one token with the one-row kernel: the value `matmul` gives that row and token (every kernel shape
    /// is bit-identical to it). `xq` must be quantized as `matmul` would be fed for this weight.
    pub fn dot_row(&self, r: usize, xq: crate::quant::QRow<'_>, xf: &[f32]) -> Option<f32> {
        self.kernel.map(|k| k(self.row(r), xq, xf))
    }

    /// The repacked ternary form, when this weight has one.
    pub fn packed(&self) -> Option<(&Packed, &Kernels)> {
        match &self.storage {
            Storage::Packed(p, k) => Some((p, k)),
            _ => None,
        }
    }

    fn bytes(&self) -> &[u8] {
        match &self.storage {
            Storage::Mapped { file, index } => file.tensor_data(&file.tensors[*index]),
            Storage::Owned(v) => v,
            Storage::Packed(..) | Storage::RowsI8(..) => &[],
        }
    }

    pub fn row(&self, r: usize) -> &[u8] {
        &self.bytes()[r * self.row_bytes..(r + 1) * self.row_bytes]
    }

    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        match &self.storage {
            Storage::Packed(p, _) => p.dequantize_row(r, out),
            Storage::RowsI8(m, _) => m.dequantize_row(r, out),
            _ => {
                dequantize_row(self.ty, self.row(r), out);
            }
        }
    }

    pub fn n_bytes(&self) -> usize {
        match &self.storage {
            Storage::Packed(p, _) => p.n_bytes(),
            Storage::RowsI8(m, _) => m.n_bytes(),
            _ => self.rows * self.row_bytes,
        }
    }

    pub fn uses_int8_acts(&self) -> bool {
        dot::uses_int8_acts(self.ty)
    }

    /// The activation form this weight's kernels read (per-token weights aside: `wants_per_token`).
    pub fn act_format(&self) -> ActFormat {
        dot::act_format(self.ty)
    }
}

/// The activation form for weights that share one input: Q8_K as soon as one of them is a K-quant (its kernels
/// need it; the others then read it as 32-blocks that share a scale), else Q8.
pub fn act_format(ws: &[&Weight]) -> ActFormat {
    if ws.iter().any(|w| w.act_format() == ActFormat::Q8K) {
        ActFormat::Q8K
    } else {
        ActFormat::Q8
    }
}

/// The most weights one `matmul` call multiplies with the same input (q, k and v).
pub const MAX_JOBS: usize = 3;

/// Row chunks threads claim in `matmul` start at multiples of this (the packed ternary group and the four-row
/// kernels) and hold at least `CLAIM_MIN` rows (≥ 40 KB of 2-bit weights at 2560 columns), so a claim costs far
/// less than the rows it hands out.
const CLAIM_ALIGN: usize = 16;
const CLAIM_MIN: usize = 64;

/// Rows handled per inner tile: the tile's weight bytes stay in L1/L2 while every token is multiplied by them.
const ROW_TILE: usize = 16;

/// The same for row-tiled float kernels: a whole number of their tiles (18 F16 rows of 576 = 20 KiB, in L1).
const FLOAT_ROW_TILE: usize = 6 * TILE_ROWS;

/// For each (weight, out) pair: out[t * w.rows + r] = w.row(r) · x[t] for every token t. All weights share the
/// input (`x`, `n_tok` rows of `cols`, and its int8 form `xq`). Rows of all pairs are split across the pool's threads
/// in one parallel region.
pub fn matmul(
    pool: &ThreadPool,
    jobs: &mut [(&Weight, &mut [f32])],
    x: &[f32],
    xq: &QActs,
    n_tok: usize,
) {
    let total_rows: usize = jobs.iter().map(|(w, _)| w.rows).sum();
    let cols = jobs.first().map(|(w, _)| w.cols).unwrap_or(0);
    debug_assert!(jobs
        .iter()
        .all(|(w, out)| w.cols == cols && out.len() >= n_tok * w.rows));
    debug_assert!(x.len() >= n_tok * cols);
    // At most MAX_JOBS pairs (q/k/v): a fixed array, so a decode step allocates nothing here.
    assert!(
        jobs.len() <= MAX_JOBS,
        "matmul takes at most {MAX_JOBS} weights at once"
    );
    let mut slots: [Option<(&Weight, SharedMut<f32>)>; MAX_JOBS] = [None; MAX_JOBS];
    for (slot, (w, o)) in slots.iter_mut().zip(jobs.iter_mut()) {
        *slot = Some((&**w, SharedMut(o.as_mut_ptr())));
    }
    let targets = &slots;
    // Multi-token integer kernels need the group scale layout `quantize_acts` builds for exactly these tokens.
    let grouped = n_tok > 1 && xq.cols == cols && xq.rows() == n_tok;
    pool.run_chunks(total_rows, CLAIM_ALIGN, CLAIM_MIN, &|range| {
        let mut base = 0;
        for (w, out) in targets.iter().flatten() {
            let (lo, hi) = (range.start.max(base), range.end.min(base + w.rows));
            if lo < hi {
                let (lo, hi) = (lo - base, hi - base);
                if let Some((p, k)) = w.packed() {
                    // SAFETY: this thread owns rows lo..hi of `out`, which holds n_tok × w.rows floats.
                    unsafe { matmul_packed(p, k, lo, hi, xq, n_tok, *out, w.rows) };
                    base += w.rows;
                    continue;
                }
                if let Storage::RowsI8(m, path) = &w.storage {
                    // SAFETY: as above.
                    unsafe { matmul_rows_i8(m, *path, (lo, hi), xq, n_tok, *out) };
                    base += w.rows;
                    continue;
                }
                let Some(kernel) = w.kernel else {
                    base += w.rows;
                    continue;
                };
                let data = w.bytes();
                let mut r0 = lo;
                while r0 < hi {
                    let step = if w.kernel_tile.is_some() && n_tok > 1 {
                        FLOAT_ROW_TILE
                    } else {
                        ROW_TILE
                    };
                    let r1 = (r0 + step).min(hi);
                    let mut t0 = 0;
                    if let (Some(km), true) = (w.kernel_many, grouped) {
                        // Every token, in the balanced groups `quantize_acts` laid the scales out for: each group
                        // decodes the tile's weights once.
                        let mut v = [0f32; GROUP];
                        let mut rows = [xq.row(0); GROUP];
                        for (g, (first, m)) in token_groups(n_tok).enumerate() {
                            for (k, row) in rows[..m].iter_mut().enumerate() {
                                *row = xq.row(first + k);
                            }
                            let group = xq.group(g, &rows[..m]);
                            for r in r0..r1 {
                                km(
                                    &data[r * w.row_bytes..(r + 1) * w.row_bytes],
                                    &group,
                                    &mut v,
                                );
                                for (k, vk) in v[..m].iter().enumerate() {
                                    // SAFETY: row ranges are disjoint between threads; the index is within `out`.
                                    unsafe { *out.ptr().add((first + k) * w.rows + r) = *vk };
                                }
                            }
                        }
                        t0 = n_tok;
                    } else if let (Some(kn), true) = (w.kernel_nf, n_tok > 1) {
                        // Tokens in balanced groups of at most four (a verification pass of 5 is 3 + 2).
                        let mut v = [0f32; 4];
                        for (first, m) in balanced_groups(n_tok, 4) {
                            let xr = |t: usize| &x[(first + t) * cols..(first + t + 1) * cols];
                            let toks =
                                [xr(0), xr(1.min(m - 1)), xr(2.min(m - 1)), xr(3.min(m - 1))];
                            let row = |r: usize| &data[r * w.row_bytes..(r + 1) * w.row_bytes];
                            let mut r_start = r0;
                            if let Some(kt) = w.kernel_tile {
                                let mut vt = [[0f32; 4]; TILE_ROWS];
                                while r_start + TILE_ROWS <= r1 {
                                    let rows = std::array::from_fn(|i| row(r_start + i));
                                    kt(&rows, &toks[..m], &mut vt);
                                    for (i, vr) in vt.iter().enumerate() {
                                        for (k, vk) in vr[..m].iter().enumerate() {
                                            // SAFETY: as above.
                                            unsafe {
                                                *out.ptr().add((first + k) * w.rows + r_start + i) =
                                                    *vk
                                            };
                                        }
                                    }
                                    r_start += TILE_ROWS;
                                }
                            }
                            for r in r_start..r1 {
                                kn(row(r), &toks[..m], &mut v);
                                for (k, vk) in v[..m].iter().enumerate() {
                                    // SAFETY: as above.
                                    unsafe { *out.ptr().add((first + k) * w.rows + r) = *vk };
                                }
                            }
                        }
                        t0 = n_tok;
                    }
                    for t in t0..n_tok {
                        let xr = xq_row_or_empty(xq, t);
                        let xf = &x[t * cols..(t + 1) * cols];
                        let mut r_start = r0;
                        if let (Some(kr), true) = (w.kernel_r4, xq.cols == cols) {
                            let row = |r: usize| &data[r * w.row_bytes..(r + 1) * w.row_bytes];
                            while r_start + 4 <= r1 {
                                let r = r_start;
                                let v = kr(&[row(r), row(r + 1), row(r + 2), row(r + 3)], xr);
                                for (k, vk) in v.iter().enumerate() {
                                    // SAFETY: as above.
                                    unsafe { *out.ptr().add(t * w.rows + r + k) = *vk };
                                }
                                r_start += 4;
                            }
                        }
                        for r in r_start..r1 {
                            let v = kernel(&data[r * w.row_bytes..(r + 1) * w.row_bytes], xr, xf);
                            // SAFETY: as above.
                            unsafe { *out.ptr().add(t * w.rows + r) = v };
                        }
                    }
                    r0 = r1;
                }
            }
            base += w.rows;
        }
    });
}

fn xq_row_or_empty(xq: &QActs, t: usize) -> crate::quant::QRow<'_> {
    if xq.cols == 0 || xq.q.len() < (t + 1) * xq.cols {
        crate::quant::QRow::EMPTY
    } else {
        xq.row(t)
    }
}
