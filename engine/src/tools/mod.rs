//! Tool calling: the functions a chat offers the model, the format the model's template writes calls in, the
//! grammar that forces a well-formed call (`tool_choice: required` or a named function), and the reader that
//! takes calls out of the generated text (`read`).
//!
//! A template that takes `tools` is given them as Hugging Face's transformers gives them (a list of
//! `{"type": "function", "function": {name, description, parameters}}`), and its family decides how calls are
//! read: Hermes/Qwen `<tool_call>` blocks, Llama 3 JSON, Mistral `[TOOL_CALLS]`, or JSON alone. A template that
//! takes none gets Hearth's own instructions in the system message (the Hermes format), so every model can call.

mod read;

pub use read::{CallReader, Output};

use crate::schema::{Grammar, SchemaError};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::sync::Arc;

/// A function the model may call.
#[derive(Debug, Clone, PartialEq)]
pub struct Tool {
    pub name: String,
    pub description: Option<String>,
    /// A JSON Schema of its arguments (an object); `{"type": "object", "properties": {}, "additionalProperties": false}`
    /// when it takes none.
    pub parameters: Value,
    /// Its calls' arguments always validate: compiled like a forced call's, and a call the model wrote freely
    /// whose arguments do not validate stays text.
    pub strict: bool,
}

impl Tool {
    /// The shape chat templates iterate over (`tool.function.name`, `tool | tojson`).
    pub fn template_value(&self) -> Value {
        let mut f = json!({"name": self.name});
        if let Some(d) = &self.description {
            f["description"] = json!(d);
        }
        f["parameters"] = self.parameters.clone();
        json!({"type": "function", "function": f})
    }
}

/// Whether and which call the model must make.
#[derive(Debug, Clone, PartialEq)]
pub enum ToolChoice {
    /// The model decides between text and calls.
    Auto,
    /// One call to one of the tools, forced by the grammar.
    Required,
    /// One call to this tool, forced by the grammar.
    Function(String),
}

/// The tools of one request and the choice, with the argument grammars a forced call needs.
#[derive(Debug, Clone)]
pub struct ToolUse {
    pub tools: Vec<Tool>,
    pub choice: ToolChoice,
    /// Several calls in one answer (false: the first call only).
    pub parallel: bool,
    /// Per tool, its parameters compiled (where the choice forces a call to it, or the tool is strict).
    grammars: Vec<Option<Arc<Grammar>>>,
}

/// Why a request's tools cannot be used: the index of the tool, or None for the choice.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ToolError {
    #[error("tools[{index}].function.parameters: {error}")]
    Parameters { index: usize, error: SchemaError },
    #[error("tools[{0}].function.name: '{1}' is declared twice")]
    Duplicate(usize, String),
    #[error("tools[{0}].function.name must be 1-64 letters, digits, '_', '-' or '.'")]
    Name(usize),
    #[error("tool_choice names '{0}', which is not among the tools")]
    UnknownChoice(String),
}

impl ToolUse {
    /// Checks the tools and compiles the parameters of each tool a forced call may use (a keyword the grammar
    /// does not enforce is refused there, as in structured outputs).
    pub fn new(tools: Vec<Tool>, choice: ToolChoice, parallel: bool) -> Result<ToolUse, ToolError> {
        for (i, t) in tools.iter().enumerate() {
            let ok = !t.name.is_empty()
                && t.name.len() <= 64
                && t.name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
            if !ok {
                return Err(ToolError::Name(i));
            }
            if tools[..i].iter().any(|o| o.name == t.name) {
                return Err(ToolError::Duplicate(i, t.name.clone()));
            }
        }
        if let ToolChoice::Function(n) = &choice {
            if !tools.iter().any(|t| &t.name == n) {
                return Err(ToolError::UnknownChoice(n.clone()));
            }
        }
        let grammars = tools
            .iter()
            .enumerate()
            .map(|(index, t)| {
                let forced = match &choice {
                    ToolChoice::Auto => false,
                    ToolChoice::Required => true,
                    ToolChoice::Function(n) => n == &t.name,
                };
                if !forced && !t.strict {
                    return Ok(None);
                }
                Grammar::compile(&t.parameters)
                    .map(|g| Some(Arc::new(g)))
                    .map_err(|error| ToolError::Parameters { index, error })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ToolUse {
            tools,
            choice,
            parallel,
            grammars,
        })
    }

    /// The reader of an answer in `format` that began with `opening`.
    pub fn reader(&self, format: ToolFormat, opening: &str) -> CallReader {
        let tools = self
            .tools
            .iter()
            .zip(&self.grammars)
            .map(|(t, g)| (t.name.clone(), g.clone()))
            .collect();
        CallReader::new(format, tools, self.parallel, opening)
    }

    /// The grammar of the forced call in `format` (None under `auto`): the call's JSON, which the model writes
    /// right after the format's opening text (put at the end of the prompt).
    pub fn forced(&self, format: ToolFormat) -> Option<Grammar> {
        let candidates: Vec<(&str, &Grammar)> = self
            .tools
            .iter()
            .zip(&self.grammars)
            .filter(|(t, _)| match &self.choice {
                ToolChoice::Auto => false,
                ToolChoice::Required => true,
                ToolChoice::Function(n) => n == &t.name,
            })
            .filter_map(|(t, g)| g.as_deref().map(|g| (t.name.as_str(), g)))
            .collect();
        if candidates.is_empty() {
            return None;
        }
        Some(Grammar::tool_call(
            format.arguments_key(),
            &candidates,
            format == ToolFormat::Mistral,
        ))
    }
}

/// How a model writes its calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolFormat {
    /// `<tool_call>\n{"name": …, "arguments": {…}}\n</tool_call>`, one block per call (Hermes, Qwen 2/2.5/3,
    /// SmolLM3, and Hearth's own instructions for templates without tools).
    Hermes,
    /// `{"name": …, "parameters": {…}}` as the whole answer, maybe after `<|python_tag|>` (Llama 3.1–3.3).
    Llama3,
    /// `[TOOL_CALLS] [{"name": …, "arguments": {…}}, …]` (Mistral, Mixtral, Ministral).
    Mistral,
    /// Any other template that takes tools: a call object (or a list) as the whole answer.
    Json,
}

impl ToolFormat {
    /// The format of a template that renders `tools` itself; None when it does not.
    pub fn of_template(source: &str) -> Option<ToolFormat> {
        if !source.contains("tools") {
            return None;
        }
        Some(if source.contains("<tool_call>") {
            ToolFormat::Hermes
        } else if source.contains("[TOOL_CALLS]") {
            ToolFormat::Mistral
        } else if source.contains("<|python_tag|>") || source.contains("<|start_header_id|>") {
            ToolFormat::Llama3
        } else {
            ToolFormat::Json
        })
    }

    /// The member that holds a call's arguments in this format.
    pub fn arguments_key(self) -> &'static str {
        match self {
            ToolFormat::Llama3 => "parameters",
            _ => "arguments",
        }
    }

    /// The text a forced call starts with, written at the end of the prompt so that the model continues inside
    /// the call.
    pub fn opening(self) -> &'static str {
        match self {
            ToolFormat::Hermes => "<tool_call>\n",
            ToolFormat::Mistral => "[TOOL_CALLS]",
            ToolFormat::Llama3 | ToolFormat::Json => "",
        }
    }

    /// The text that starts a call in free text (None: a call is the whole answer).
    pub(crate) fn marker(self) -> Option<&'static str> {
        match self {
            ToolFormat::Hermes | ToolFormat::Json => Some("<tool_call>"),
            ToolFormat::Mistral => Some("[TOOL_CALLS]"),
            ToolFormat::Llama3 => Some("<|python_tag|>"),
        }
    }
}

/// A call as chat templates and both APIs carry it (arguments: a JSON object).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FunctionCall {
    pub name: String,
    pub arguments: Value,
}

/// A call in a chat's history, in Hugging Face's shape (`{"id", "type": "function", "function": {…}}`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ToolCall {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub function: FunctionCall,
}

impl ToolCall {
    pub fn new(id: &str, call: FunctionCall) -> ToolCall {
        ToolCall {
            id: id.to_owned(),
            kind: "function".into(),
            function: call,
        }
    }
}

/// Hearth's instructions for a template that takes no tools: the tools as JSON and the Hermes call format.
pub(crate) fn instructions(tools: &[Tool]) -> String {
    let mut s =
        String::from("You may call functions to answer. The functions, as JSON Schema:\n<tools>\n");
    for t in tools {
        s.push_str(&t.template_value().to_string());
        s.push('\n');
    }
    s.push_str(
        "</tools>\nTo call a function, answer with only this, one block per call:\n<tool_call>\n\
         {\"name\": <function name>, \"arguments\": <arguments as a JSON object>}\n</tool_call>",
    );
    s
}

/// A call written back into a conversation for a template that takes no tools (the Hermes format).
pub(crate) fn call_text(call: &FunctionCall) -> String {
    format!(
        "<tool_call>\n{}\n</tool_call>",
        json!({"name": call.name, "arguments": call.arguments})
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool(name: &str, parameters: Value) -> Tool {
        Tool {
            name: name.into(),
            description: None,
            parameters,
            strict: false,
        }
    }

    #[test]
    fn formats_follow_the_template_family() {
        assert_eq!(ToolFormat::of_template("{{ messages }}"), None);
        let cases = [
            (
                "{% for t in tools %}<tool_call>{% endfor %}",
                ToolFormat::Hermes,
            ),
            (
                "{% if tools %}[AVAILABLE_TOOLS]{% endif %}[TOOL_CALLS]",
                ToolFormat::Mistral,
            ),
            (
                "<|start_header_id|>{{ tools | tojson }}",
                ToolFormat::Llama3,
            ),
            ("{{ tools | tojson }}", ToolFormat::Json),
        ];
        for (src, f) in cases {
            assert_eq!(ToolFormat::of_template(src), Some(f), "{src}");
        }
    }

    #[test]
    fn bad_tools_are_refused_by_place() {
        let obj = json!({"type": "object"});
        let two = vec![tool("a", obj.clone()), tool("a", obj.clone())];
        assert_eq!(
            ToolUse::new(two, ToolChoice::Auto, true).unwrap_err(),
            ToolError::Duplicate(1, "a".into())
        );
        assert_eq!(
            ToolUse::new(vec![tool("a b", obj.clone())], ToolChoice::Auto, true).unwrap_err(),
            ToolError::Name(0)
        );
        assert_eq!(
            ToolUse::new(
                vec![tool("a", obj.clone())],
                ToolChoice::Function("b".into()),
                true
            )
            .unwrap_err(),
            ToolError::UnknownChoice("b".into())
        );
        // Only a forced call compiles the parameters: `pattern` is fine under auto, refused under required.
        let pattern =
            json!({"type": "object", "properties": {"x": {"type": "string", "pattern": "^a"}}});
        assert!(ToolUse::new(vec![tool("a", pattern.clone())], ToolChoice::Auto, true).is_ok());
        let e = ToolUse::new(vec![tool("a", pattern)], ToolChoice::Required, true).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("tools[0].function.parameters: schema #/properties/x/pattern"),
            "{e}"
        );
    }

    #[test]
    fn forced_grammar_exists_only_when_a_call_is_forced() {
        let obj = json!({"type": "object", "properties": {}});
        let tools = vec![tool("a", obj.clone()), tool("b", obj)];
        let auto = ToolUse::new(tools.clone(), ToolChoice::Auto, true).expect("valid");
        assert!(auto.forced(ToolFormat::Hermes).is_none());
        let named = ToolUse::new(tools, ToolChoice::Function("b".into()), true).expect("valid");
        let g = Arc::new(named.forced(ToolFormat::Hermes).expect("forced"));
        let mut s = crate::schema::SchemaState::new(g);
        assert!(!s.accepts(br#"{"name": "a""#));
        assert!(s.feed(br#"{"name": "b", "arguments": {}}"#) && s.is_complete());
    }
}
