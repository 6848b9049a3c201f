pub mod accounts;
pub mod bench;
pub mod manpages;
pub mod model_files;
pub mod run;
pub mod schedule;
pub mod service_user;
pub mod spec_bench;
pub mod usage;

use hearth_engine::quant::GgmlType;

/// `--dtype f16|f32`: load matrices converted to that type.
pub fn parse_dtype(s: &str) -> Result<GgmlType, String> {
    hearth_engine::model::parse_dtype(s)
        .ok_or_else(|| format!("unknown dtype '{s}' (use f16 or f32)"))
}

/// `--head i8|q8_0|q4_0|q4_0-rescored|f16`: how to read the output head.
pub fn parse_head(s: &str) -> Result<hearth_engine::model::HeadOption, String> {
    hearth_engine::model::parse_head(s).ok_or_else(|| {
        format!(
            "unknown head type '{s}' (use {})",
            hearth_engine::model::HeadOption::NAMES
        )
    })
}
