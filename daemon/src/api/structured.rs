//! Structured outputs, as both front ends ask for them: the output format of a request (plain text, JSON mode,
//! or a JSON Schema compiled for constrained decoding) and the refusal of a schema (or tools) Hearth would not
//! enforce.

use super::error::ApiError;
use hearth_engine::schema::Grammar;
use std::sync::Arc;

/// What the output must be.
#[derive(Clone, Default)]
pub struct OutputFormat {
    /// One JSON object (`json_object`, Ollama's `"json"`).
    pub json: bool,
    /// A value of this schema.
    pub schema: Option<Arc<Grammar>>,
}

impl OutputFormat {
    pub const TEXT: OutputFormat = OutputFormat {
        json: false,
        schema: None,
    };

    pub fn json_object() -> OutputFormat {
        OutputFormat {
            json: true,
            schema: None,
        }
    }

    /// The format of a schema given in `field`; a schema the compiler refuses is a 400 naming the field and
    /// the place inside the schema.
    pub fn schema(schema: &serde_json::Value, field: &str) -> Result<OutputFormat, ApiError> {
        let g = Grammar::compile(schema)
            .map_err(|e| ApiError::invalid(format!("'{field}': {e}"), Some(field)))?;
        Ok(OutputFormat {
            json: false,
            schema: Some(Arc::new(g)),
        })
    }
}

/// A request's tools that cannot be used, as a 400 naming the field (both front ends use the same shape).
pub fn tool_error(e: hearth_engine::tools::ToolError) -> ApiError {
    use hearth_engine::tools::ToolError;
    let param = match &e {
        ToolError::Parameters { index, .. } => format!("tools[{index}].function.parameters"),
        ToolError::Duplicate(i, _) | ToolError::Name(i) => format!("tools[{i}].function.name"),
        ToolError::UnknownChoice(_) => "tool_choice.function.name".into(),
    };
    ApiError::invalid(e.to_string(), Some(&param))
}
