//! Parsing a GGUF file from a memory map.

use super::value::{MetaArray, MetaValue};
use super::{DEFAULT_ALIGNMENT, GGUF_MAGIC};
use crate::error::{EngineError, Result};
use crate::quant::GgmlType;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where one tensor's bytes are, and what they hold.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    pub name: String,
    /// ggml order: `dims[0]` is the innermost (row length).
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    /// Offset from the start of the data section.
    pub offset: u64,
    pub n_bytes: u64,
}

impl TensorInfo {
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }
    /// Row length (innermost dimension).
    pub fn row_len(&self) -> usize {
        self.dims.first().copied().unwrap_or(1) as usize
    }
    /// Number of rows (product of the outer dimensions).
    pub fn n_rows(&self) -> usize {
        self.dims.iter().skip(1).product::<u64>() as usize
    }
}

/// An open GGUF file. Tensor data is borrowed straight from the map (zero-copy).
pub struct GgufFile {
    path: PathBuf,
    map: memmap2::Mmap,
    pub version: u32,
    pub alignment: u64,
    pub metadata: BTreeMap<String, MetaValue>,
    /// In file order.
    pub tensors: Vec<TensorInfo>,
    by_name: BTreeMap<String, usize>,
    data_start: usize,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

/// A parse failure before we know which tensor it belongs to.
type ParseResult<T> = std::result::Result<T, String>;

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> ParseResult<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| {
                format!(
                    "truncated: needed {n} bytes at offset {}, file has {}",
                    self.pos,
                    self.buf.len()
                )
            })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn array<const N: usize>(&mut self) -> ParseResult<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn u8(&mut self) -> ParseResult<u8> {
        Ok(self.array::<1>()?[0])
    }
    fn u16(&mut self) -> ParseResult<u16> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    fn u32(&mut self) -> ParseResult<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> ParseResult<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    /// A count that promises at least `min_item_bytes` per item: reject counts the file cannot hold, so a
    /// corrupt count can never make us allocate terabytes.
    fn count(&mut self, what: &str, min_item_bytes: usize) -> ParseResult<usize> {
        let n = self.u64()?;
        let max = (self.remaining() / min_item_bytes.max(1)) as u64;
        if n > max {
            return Err(format!("{what} count {n} is larger than the file can hold"));
        }
        Ok(n as usize)
    }
    fn string(&mut self) -> ParseResult<String> {
        let n = self.count("string length", 1)?;
        let bytes = self.take(n)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_owned()),
            Err(e) => Err(format!(
                "string at offset {} is not valid UTF-8 ({e})",
                self.pos - n
            )),
        }
    }

    fn value(&mut self, ty: u32, depth: usize) -> ParseResult<MetaValue> {
        Ok(match ty {
            0 => MetaValue::U8(self.u8()?),
            1 => MetaValue::I8(self.u8()? as i8),
            2 => MetaValue::U16(self.u16()?),
            3 => MetaValue::I16(self.u16()? as i16),
            4 => MetaValue::U32(self.u32()?),
            5 => MetaValue::I32(self.u32()? as i32),
            6 => MetaValue::F32(f32::from_bits(self.u32()?)),
            7 => match self.u8()? {
                0 => MetaValue::Bool(false),
                1 => MetaValue::Bool(true),
                b => return Err(format!("bool value {b} is neither 0 nor 1")),
            },
            8 => MetaValue::String(self.string()?),
            9 => MetaValue::Array(self.array_value(depth)?),
            10 => MetaValue::U64(self.u64()?),
            11 => MetaValue::I64(self.u64()? as i64),
            12 => MetaValue::F64(f64::from_bits(self.u64()?)),
            other => return Err(format!("unknown metadata value type {other}")),
        })
    }

    fn array_value(&mut self, depth: usize) -> ParseResult<MetaArray> {
        if depth > 4 {
            return Err("metadata arrays nested too deeply".into());
        }
        let ty = self.u32()?;
        let item_bytes = match ty {
            0 | 1 | 7 => 1,
            2 | 3 => 2,
            4..=6 => 4,
            8 | 10..=12 => 8,
            9 => 12,
            other => return Err(format!("unknown array item type {other}")),
        };
        let n = self.count("array", item_bytes)?;
        macro_rules! collect {
            ($variant:ident, $read:expr) => {{
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push($read(&mut *self)?);
                }
                MetaArray::$variant(v)
            }};
        }
        Ok(match ty {
            0 => MetaArray::U8(self.take(n)?.to_vec()),
            1 => MetaArray::I8(self.take(n)?.iter().map(|&b| b as i8).collect()),
            2 => collect!(U16, |c: &mut Self| c.u16()),
            3 => collect!(I16, |c: &mut Self| c.u16().map(|v| v as i16)),
            4 => collect!(U32, |c: &mut Self| c.u32()),
            5 => collect!(I32, |c: &mut Self| c.u32().map(|v| v as i32)),
            6 => collect!(F32, |c: &mut Self| c.u32().map(f32::from_bits)),
            7 => collect!(Bool, |c: &mut Self| c.u8().map(|b| b != 0)),
            8 => collect!(String, |c: &mut Self| c.string()),
            9 => collect!(Array, |c: &mut Self| c.array_value(depth + 1)),
            10 => collect!(U64, |c: &mut Self| c.u64()),
            11 => collect!(I64, |c: &mut Self| c.u64().map(|v| v as i64)),
            _ => collect!(F64, |c: &mut Self| c.u64().map(f64::from_bits)),
        })
    }
}

impl GgufFile {
    pub fn open(path: impl AsRef<Path>) -> Result<GgufFile> {
        let path = path.as_ref().to_path_buf();
        let io = |source| EngineError::Io {
            path: path.clone(),
            source,
        };
        let file = std::fs::File::open(&path).map_err(io)?;
        // SAFETY: the map is read-only; the file is a model the admin installed. If another process truncates it
        // while we run, reads may fault — the same contract as llama.cpp and every mmap-based loader.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        Self::parse(path, map)
    }

    fn parse(path: PathBuf, map: memmap2::Mmap) -> Result<GgufFile> {
        let bad = |reason: String| EngineError::BadGguf {
            path: path.clone(),
            reason,
        };
        let mut c = Cursor { buf: &map, pos: 0 };
        let magic = c
            .array::<4>()
            .map_err(|_| bad("file is shorter than the GGUF header".into()))?;
        if &magic != GGUF_MAGIC {
            // The bytes are not echoed: the file may be anything (an admin pointing at /etc/shadow, say).
            return Err(bad(
                "bad magic: not a GGUF file (it does not start with \"GGUF\")".into(),
            ));
        }
        let version = c.u32().map_err(&bad)?;
        if !(2..=3).contains(&version) {
            return Err(bad(format!(
                "unsupported GGUF version {version} (supported: 2, 3)"
            )));
        }
        let n_tensors = c.count("tensor", 24).map_err(&bad)?;
        let n_kv = c.count("metadata", 13).map_err(&bad)?;

        let mut metadata = BTreeMap::new();
        for i in 0..n_kv {
            let key = c
                .string()
                .map_err(|e| bad(format!("metadata entry {i}: {e}")))?;
            let ty = c.u32().map_err(|e| bad(format!("metadata '{key}': {e}")))?;
            let value = c
                .value(ty, 0)
                .map_err(|e| bad(format!("metadata '{key}': {e}")))?;
            metadata.insert(key, value);
        }
        let alignment = match metadata.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(v) => match v.as_u64() {
                Some(a) if a > 0 && a.is_power_of_two() && a <= 1 << 20 => a,
                _ => {
                    return Err(bad(format!(
                        "general.alignment {v:?} is not a power of two"
                    )))
                }
            },
        };

        let mut raw = Vec::with_capacity(n_tensors);
        for i in 0..n_tensors {
            let name = c.string().map_err(|e| bad(format!("tensor {i}: {e}")))?;
            let tensor_err = |reason: String| EngineError::BadTensor {
                path: path.clone(),
                tensor: name.clone(),
                reason,
            };
            let n_dims = c.u32().map_err(&tensor_err)?;
            if n_dims == 0 || n_dims > 4 {
                return Err(tensor_err(format!("{n_dims} dimensions (1 to 4 allowed)")));
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                dims.push(c.u64().map_err(&tensor_err)?);
            }
            let ty = c.u32().map_err(&tensor_err)?;
            let offset = c.u64().map_err(&tensor_err)?;
            raw.push((name, dims, ty, offset));
        }
        let data_start = (c.pos as u64).div_ceil(alignment) * alignment;
        let data_len = (map.len() as u64).saturating_sub(data_start);

        let mut tensors = Vec::with_capacity(raw.len());
        let mut by_name = BTreeMap::new();
        for (name, dims, ty_id, offset) in raw {
            let tensor_err = |reason: String| EngineError::BadTensor {
                path: path.clone(),
                tensor: name.clone(),
                reason,
            };
            let ty = GgmlType::from_id(ty_id);
            let (block_elems, block_bytes) =
                ty.block_geometry()
                    .ok_or_else(|| EngineError::UnsupportedTensorType {
                        path: path.clone(),
                        tensor: name.clone(),
                        ty: ty.name(),
                    })?;
            let n_elements = dims
                .iter()
                .try_fold(1u64, |acc, &d| acc.checked_mul(d))
                .filter(|&n| n > 0)
                .ok_or_else(|| tensor_err(format!("dimensions {dims:?} are zero or overflow")))?;
            if dims[0] % block_elems as u64 != 0 {
                return Err(tensor_err(format!(
                    "row length {} is not a multiple of the {} block size {block_elems}",
                    dims[0],
                    ty.name()
                )));
            }
            let n_bytes = (n_elements / block_elems as u64)
                .checked_mul(block_bytes as u64)
                .and_then(|n| n.checked_add(ty.trailer_bytes() as u64))
                .ok_or_else(|| tensor_err(format!("dimensions {dims:?} overflow")))?;
            if offset % alignment != 0 {
                return Err(tensor_err(format!(
                    "offset {offset} is not aligned to {alignment}"
                )));
            }
            if offset.checked_add(n_bytes).is_none_or(|end| end > data_len) {
                return Err(tensor_err(format!(
                    "data [{offset}, {offset}+{n_bytes}) lies outside the file's {data_len}-byte data section (truncated file?)"
                )));
            }
            if by_name.insert(name.clone(), tensors.len()).is_some() {
                return Err(tensor_err("duplicate tensor name".into()));
            }
            tensors.push(TensorInfo {
                name,
                dims,
                ty,
                offset,
                n_bytes,
            });
        }
        // Types that make two tensors' data overlap describe no model (one of them is wrong), and loading would
        // read one tensor's bytes as another's: refuse, naming both.
        let mut by_offset: Vec<&TensorInfo> = tensors.iter().collect();
        by_offset.sort_by_key(|t| t.offset);
        for pair in by_offset.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            if a.offset + a.n_bytes > b.offset {
                return Err(EngineError::BadTensor {
                    path: path.clone(),
                    tensor: b.name.clone(),
                    reason: format!(
                        "data [{}, {}) overlaps tensor '{}' [{}, {})",
                        b.offset,
                        b.offset + b.n_bytes,
                        a.name,
                        a.offset,
                        a.offset + a.n_bytes
                    ),
                });
            }
        }

        Ok(GgufFile {
            path,
            map,
            version,
            alignment,
            metadata,
            tensors,
            by_name,
            data_start: data_start as usize,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn file_size(&self) -> u64 {
        self.map.len() as u64
    }

    pub fn tensor_index(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    pub fn tensor_info(&self, name: &str) -> Option<&TensorInfo> {
        self.by_name.get(name).map(|&i| &self.tensors[i])
    }

    /// The raw bytes of a tensor (bounds were checked at open).
    pub fn tensor_data(&self, info: &TensorInfo) -> &[u8] {
        let start = self.data_start + info.offset as usize;
        &self.map[start..start + info.n_bytes as usize]
    }

    pub fn get(&self, key: &str) -> Option<&MetaValue> {
        self.metadata.get(key)
    }

    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(MetaValue::as_str)
    }

    pub fn get_u64(&self, key: &str) -> Option<u64> {
        self.get(key).and_then(MetaValue::as_u64)
    }

    pub fn get_f64(&self, key: &str) -> Option<f64> {
        self.get(key).and_then(MetaValue::as_f64)
    }

    pub fn get_bool(&self, key: &str) -> Option<bool> {
        self.get(key).and_then(MetaValue::as_bool)
    }

    pub fn architecture(&self) -> Result<&str> {
        self.get_str("general.architecture").ok_or_else(|| {
            EngineError::Metadata(format!(
                "{}: general.architecture is missing",
                self.path.display()
            ))
        })
    }

    /// Counts of tensor types, e.g. {Q4_1: 210, F32: 61, Q8_0: 1}.
    pub fn type_counts(&self) -> BTreeMap<GgmlType, usize> {
        let mut m = BTreeMap::new();
        for t in &self.tensors {
            *m.entry(t.ty).or_insert(0) += 1;
        }
        m
    }
}
