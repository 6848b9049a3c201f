//! GGUF files: metadata, tensor directory and memory-mapped tensor data.
//!
//! Every length, count and offset read from the file is checked against the bytes that are really there, so a
//! corrupt or truncated file is an error naming the file (and the tensor), never a panic or an out-of-bounds read.

mod reader;
mod value;
pub mod writer;

pub use reader::{GgufFile, TensorInfo};
pub use value::{MetaArray, MetaValue};

pub const GGUF_MAGIC: &[u8; 4] = b"GGUF";
pub const DEFAULT_ALIGNMENT: u64 = 32;
