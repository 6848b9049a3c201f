pub mod accounts;
pub mod bench;
pub mod manpages;
pub mod model_files;
pub mod node;
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
/// `--head`: clap lists `HeadOption::NAMES` as the possible values, so help and parser cannot disagree.
pub fn head_parser(
) -> impl clap::builder::TypedValueParser<Value = hearth_engine::model::HeadOption> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(hearth_engine::model::HeadOption::NAMES).try_map(|s| {
        hearth_engine::model::parse_head(&s).ok_or_else(|| {
            format!(
                "unknown head type '{s}' (use {})",
                hearth_engine::model::HeadOption::NAMES.join(", ")
            )
        })
    })
}
