//! The safetensors format, read whole: an 8-byte little-endian header length, a JSON header naming each tensor's
//! dtype, shape and byte range, then the data. Tensors come out as f32 (F32, F16 and BF16 are read).

use crate::error::{EngineError, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

pub struct SafeTensors {
    path: PathBuf,
    bytes: Vec<u8>,
    /// Name → (dtype, shape, start, end) relative to the data section.
    index: HashMap<String, (String, Vec<usize>, usize, usize)>,
    data_start: usize,
}

fn bad(path: &Path, reason: impl Into<String>) -> EngineError {
    EngineError::BadGguf {
        path: path.to_path_buf(),
        reason: format!("safetensors: {}", reason.into()),
    }
}

impl SafeTensors {
    pub fn open(path: &Path) -> Result<SafeTensors> {
        let bytes = std::fs::read(path).map_err(|source| EngineError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let len = bytes
            .get(..8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as usize)
            .ok_or_else(|| bad(path, "shorter than its header length"))?;
        let header = bytes
            .get(8..8usize.saturating_add(len))
            .ok_or_else(|| bad(path, "header runs past the end"))?;
        let header: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(header).map_err(|e| bad(path, format!("header: {e}")))?;
        let data_start = 8 + len;
        let mut index = HashMap::new();
        for (name, v) in header {
            if name == "__metadata__" {
                continue;
            }
            let dtype = v["dtype"].as_str().unwrap_or_default().to_owned();
            let shape: Vec<usize> = v["shape"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|d| d.as_u64())
                        .map(|d| d as usize)
                        .collect()
                })
                .unwrap_or_default();
            let offs: Vec<usize> = v["data_offsets"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|d| d.as_u64())
                        .map(|d| d as usize)
                        .collect()
                })
                .unwrap_or_default();
            let [start, end] = offs[..] else {
                return Err(bad(path, format!("tensor '{name}' has no data_offsets")));
            };
            // Every dtype's size is checked; only float ones are read (`get`).
            let width = match dtype.as_str() {
                "F64" | "I64" | "U64" => 8,
                "F32" | "I32" | "U32" => 4,
                "F16" | "BF16" | "I16" | "U16" => 2,
                "I8" | "U8" | "BOOL" | "F8_E4M3" | "F8_E5M2" => 1,
                other => return Err(bad(path, format!("tensor '{name}': unknown dtype {other}"))),
            };
            let n: usize = shape.iter().product();
            if end < start
                || end - start != n * width
                || data_start.checked_add(end).is_none_or(|e| e > bytes.len())
            {
                return Err(bad(
                    path,
                    format!("tensor '{name}': its bytes do not match its shape"),
                ));
            }
            index.insert(name, (dtype, shape, start, end));
        }
        Ok(SafeTensors {
            path: path.to_path_buf(),
            bytes,
            index,
            data_start,
        })
    }

    /// A tensor by name, as f32, with its shape checked.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let (dtype, got, start, end) = self
            .index
            .get(name)
            .ok_or_else(|| bad(&self.path, format!("tensor '{name}' is missing")))?;
        if got != shape {
            return Err(bad(
                &self.path,
                format!("tensor '{name}' has shape {got:?}, expected {shape:?}"),
            ));
        }
        let raw = &self.bytes[self.data_start + start..self.data_start + end];
        if !matches!(dtype.as_str(), "F32" | "F16" | "BF16") {
            return Err(bad(
                &self.path,
                format!("tensor '{name}': dtype {dtype} is not read (F32, F16, BF16)"),
            ));
        }
        let data = match dtype.as_str() {
            "F32" => raw
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            "F16" => raw
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            _ => raw
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
        };
        Ok(Tensor {
            shape: got.clone(),
            data,
        })
    }

    /// Tensors per dtype, and the elements of all tensors (the model's parameter count).
    pub fn summary(&self) -> (std::collections::BTreeMap<String, usize>, u64) {
        let mut types = std::collections::BTreeMap::new();
        let mut elements = 0u64;
        for (dtype, shape, _, _) in self.index.values() {
            *types.entry(dtype.clone()).or_insert(0) += 1;
            elements += shape.iter().product::<usize>() as u64;
        }
        (types, elements)
    }

    /// Names of the tensors held.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.index.keys().map(String::as_str)
    }
}
