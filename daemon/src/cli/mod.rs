pub mod accounts;
pub mod bench;
pub mod model_files;
pub mod run;
pub mod schedule;
pub mod usage;

use hearth_engine::quant::GgmlType;

/// `--dtype f16|f32`: load matrices converted to that type.
pub fn parse_dtype(s: &str) -> Result<GgmlType, String> {
    match s {
        "f16" => Ok(GgmlType::F16),
        "f32" => Ok(GgmlType::F32),
        other => Err(format!("unknown dtype '{other}' (use f16 or f32)")),
    }
}
