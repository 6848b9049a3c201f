//! Chat templates: `tokenizer.chat_template` rendered with minijinja the way Hugging Face's transformers does
//! (trim_blocks, lstrip_blocks, `raise_exception`, Python string methods). Files without a template get one
//! matching their family (Gemma's turn format) or ChatML.

use crate::error::{EngineError, Result};
use crate::tools::{self, Tool, ToolCall, ToolFormat};
use minijinja::{Environment, ErrorKind, Value};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
    /// The participant's name (OpenAI's `name`), for templates that render it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// An assistant message's calls, in Hugging Face's shape (arguments as an object).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// A tool message: the call it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl ChatMessage {
    pub fn new(role: &str, content: &str) -> ChatMessage {
        ChatMessage {
            role: role.into(),
            content: content.into(),
            ..ChatMessage::default()
        }
    }
}

pub const CHATML: &str = "{%- for message in messages -%}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{%- endfor -%}{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\n' }}{%- endif -%}";

/// Gemma's turn format: a system message is folded into the first user turn; the assistant is "model".
pub const GEMMA: &str = "{{ bos_token }}{%- if messages[0]['role'] == 'system' -%}{%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}{%- set loop_messages = messages[1:] -%}{%- else -%}{%- set first_user_prefix = '' -%}{%- set loop_messages = messages -%}{%- endif -%}{%- for message in loop_messages -%}{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{%- endif -%}{%- if message['role'] == 'assistant' -%}{%- set role = 'model' -%}{%- else -%}{%- set role = message['role'] -%}{%- endif -%}{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') }}{{ message['content'] | trim }}{{ '<end_of_turn>\n' }}{%- endfor -%}{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}";

pub struct ChatTemplate {
    env: Environment<'static>,
    pub source: String,
    /// Whether the template renders a message's `name`; where it does not, the name is written before the
    /// content so that it still reaches the model.
    renders_name: bool,
    /// How the template writes tool calls, where it takes `tools` itself.
    tools: Option<ToolFormat>,
    bos: String,
    eos: String,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("len", &self.source.len())
            .finish()
    }
}

fn raise_exception(msg: String) -> std::result::Result<Value, minijinja::Error> {
    Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
}

impl ChatTemplate {
    /// Compiles a template; a syntax error is reported with its line.
    pub fn new(source: &str, bos: &str, eos: &str) -> Result<ChatTemplate> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        minijinja_contrib::add_to_environment(&mut env);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", |fmt: String| -> String {
            strftime_utc(&fmt, unix_now())
        });
        env.add_template_owned("chat", source.to_owned())
            .map_err(|e| EngineError::Template(describe(&e)))?;
        let renders_name = ["message.name", "message['name']", "message[\"name\"]"]
            .iter()
            .any(|p| source.contains(p));
        Ok(ChatTemplate {
            env,
            renders_name,
            tools: ToolFormat::of_template(source),
            source: source.to_owned(),
            bos: bos.to_owned(),
            eos: eos.to_owned(),
        })
    }

    /// The template of a model file, or the family fallback.
    pub fn for_model(
        template: Option<&str>,
        architecture: &str,
        bos: &str,
        eos: &str,
    ) -> Result<ChatTemplate> {
        match template {
            Some(t) => ChatTemplate::new(t, bos, eos),
            None if architecture.starts_with("gemma") => ChatTemplate::new(GEMMA, bos, eos),
            None => ChatTemplate::new(CHATML, bos, eos),
        }
    }

    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        self.render_tools(messages, &[], add_generation_prompt)
    }

    /// The format of tool calls written for this template: its own where it takes `tools`, else Hermes (Hearth's
    /// instructions).
    pub fn tool_format(&self) -> ToolFormat {
        self.tools.unwrap_or(ToolFormat::Hermes)
    }

    /// Whether the template renders tools itself (Ollama's `tools` capability).
    pub fn takes_tools(&self) -> bool {
        self.tools.is_some()
    }

    /// Renders a chat offering `tools`. A template that takes no tools gets them as Hearth's instructions in the
    /// system message, and the history's calls and results as text (a call block in the assistant's message,
    /// results as a user message), so that nothing in the conversation is lost on it.
    pub fn render_tools(
        &self,
        messages: &[ChatMessage],
        tools: &[Tool],
        add_generation_prompt: bool,
    ) -> Result<String> {
        self.render_with(messages, tools, None, add_generation_prompt)
    }

    /// Whether the model reasons in a `<think>` block before answering (Ollama's `thinking` capability).
    pub fn thinks(&self) -> bool {
        crate::think::template_thinks(&self.source)
    }

    /// `render_tools` with the template's thinking switch (`enable_thinking`, as Qwen3's and SmolLM3's
    /// templates read it) set where the request says.
    pub fn render_with(
        &self,
        messages: &[ChatMessage],
        tools: &[Tool],
        thinking: Option<bool>,
        add_generation_prompt: bool,
    ) -> Result<String> {
        if messages.is_empty() {
            return Err(EngineError::InvalidRequest(
                "messages must not be empty".into(),
            ));
        }
        let tmpl = self
            .env
            .get_template("chat")
            .map_err(|e| EngineError::Template(describe(&e)))?;
        let folded;
        let messages = if self.tools.is_none()
            && (!tools.is_empty()
                || messages
                    .iter()
                    .any(|m| m.role == "tool" || !m.tool_calls.is_empty()))
        {
            folded = fold_tools(messages, tools);
            &folded[..]
        } else {
            messages
        };
        let named;
        let messages = if self.renders_name || messages.iter().all(|m| m.name.is_none()) {
            messages
        } else {
            named = messages
                .iter()
                .map(|m| match &m.name {
                    Some(n) => ChatMessage {
                        content: format!("{n}: {}", m.content),
                        name: None,
                        ..m.clone()
                    },
                    None => m.clone(),
                })
                .collect::<Vec<_>>();
            &named[..]
        };
        // As transformers does: `tools` is none (not undefined) without tools, so `tools is not none` holds.
        let tools = (self.tools.is_some() && !tools.is_empty())
            .then(|| tools.iter().map(Tool::template_value).collect::<Vec<_>>());
        tmpl.render(minijinja::context! {
            messages => messages,
            tools => tools,
            enable_thinking => thinking,
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos,
            eos_token => self.eos,
        })
        .map_err(|e| EngineError::Template(describe(&e)))
    }
}

/// A conversation with tools for a template that takes none: the instructions joined to the system message,
/// calls as Hermes blocks in the assistant's text, consecutive results as one user message.
fn fold_tools(messages: &[ChatMessage], tools: &[Tool]) -> Vec<ChatMessage> {
    let mut out: Vec<ChatMessage> = Vec::with_capacity(messages.len() + 1);
    if !tools.is_empty() {
        let text = tools::instructions(tools);
        match messages.first() {
            Some(m) if m.role == "system" => {}
            _ => out.push(ChatMessage::new("system", &text)),
        }
    }
    let mut last_was_result = false;
    for (i, m) in messages.iter().enumerate() {
        if i == 0 && m.role == "system" && !tools.is_empty() {
            let mut sys = m.clone();
            sys.content = format!("{}\n\n{}", m.content, tools::instructions(tools));
            out.push(sys);
            last_was_result = false;
            continue;
        }
        if m.role == "tool" {
            // The tool's name, where the message has one (Ollama's `tool_name`), goes with its result.
            let result = match &m.name {
                Some(n) => format!("<tool_response>\n{n}: {}\n</tool_response>", m.content),
                None => format!("<tool_response>\n{}\n</tool_response>", m.content),
            };
            match out.last_mut() {
                Some(prev) if last_was_result => {
                    prev.content.push('\n');
                    prev.content.push_str(&result);
                }
                _ => out.push(ChatMessage::new("user", &result)),
            }
            last_was_result = true;
            continue;
        }
        let mut m = m.clone();
        for call in std::mem::take(&mut m.tool_calls) {
            if !m.content.is_empty() {
                m.content.push('\n');
            }
            m.content.push_str(&tools::call_text(&call.function));
        }
        m.tool_call_id = None;
        out.push(m);
        last_was_result = false;
    }
    out
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The subset of strftime that chat templates use for "today's date" (%d %m %Y %y %b %B %H %M %S %%), in UTC.
fn strftime_utc(fmt: &str, secs: u64) -> String {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    // Days → civil date (Howard Hinnant's algorithm).
    let days = (secs / 86400) as i64 + 719_468;
    let era = days.div_euclid(146_097);
    let doe = days - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let tod = secs % 86400;
    let mut out = String::new();
    let mut chars = fmt.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => out.push_str(&format!("{day:02}")),
            Some('m') => out.push_str(&format!("{month:02}")),
            Some('Y') => out.push_str(&year.to_string()),
            Some('y') => out.push_str(&format!("{:02}", year % 100)),
            Some('b') => out.push_str(&MONTHS[(month - 1) as usize][..3]),
            Some('B') => out.push_str(MONTHS[(month - 1) as usize]),
            Some('H') => out.push_str(&format!("{:02}", tod / 3600)),
            Some('M') => out.push_str(&format!("{:02}", tod / 60 % 60)),
            Some('S') => out.push_str(&format!("{:02}", tod % 60)),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

fn describe(e: &minijinja::Error) -> String {
    let mut s = e.to_string();
    if let Some(line) = e.line() {
        if !s.contains("line") {
            s.push_str(&format!(" (line {line})"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chatml_fallback_renders_generation_prompt() {
        let t = ChatTemplate::for_model(None, "llama", "", "").expect("compiles");
        let s = t
            .render(&[ChatMessage::new("user", "Hi")], true)
            .expect("renders");
        assert_eq!(s, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
    }

    #[test]
    fn names_reach_the_template_or_the_content() {
        let mut alice = ChatMessage::new("user", "Hi");
        alice.name = Some("alice".into());
        let plain = ChatTemplate::for_model(None, "llama", "", "").expect("compiles");
        assert_eq!(
            plain.render(&[alice.clone()], false).expect("renders"),
            "<|im_start|>user\nalice: Hi<|im_end|>\n"
        );
        let named = ChatTemplate::new(
            "{% for message in messages %}[{{ message.name }}] {{ message.content }}{% endfor %}",
            "",
            "",
        )
        .expect("compiles");
        assert_eq!(
            named.render(&[alice], false).expect("renders"),
            "[alice] Hi"
        );
    }

    #[test]
    fn gemma_fallback_folds_system_and_checks_alternation() {
        let t = ChatTemplate::for_model(None, "gemma3", "<bos>", "<eos>").expect("compiles");
        let s = t
            .render(
                &[
                    ChatMessage::new("system", "Be brief."),
                    ChatMessage::new("user", " Hi "),
                ],
                true,
            )
            .expect("renders");
        assert_eq!(
            s,
            "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n"
        );
        let err = t
            .render(
                &[ChatMessage::new("user", "a"), ChatMessage::new("user", "b")],
                true,
            )
            .expect_err("roles must alternate");
        assert!(err.to_string().contains("alternate"), "{err}");
    }

    #[test]
    fn syntax_errors_are_template_errors() {
        let err = ChatTemplate::new("{% for m in messages %}", "", "").expect_err("unclosed block");
        assert!(matches!(err, EngineError::Template(_)), "{err}");
    }

    #[test]
    fn strftime_formats_dates() {
        // 2026-11-28 12:34:56 UTC
        assert_eq!(
            strftime_utc("%d %b %Y %H:%M:%S", 1_795_869_296),
            "28 Nov 2026 12:34:56"
        );
        assert_eq!(strftime_utc("%B %m/%y %%", 0), "January 01/70 %");
    }

    #[test]
    fn python_string_methods_work() {
        let t = ChatTemplate::new("{{ messages[0]['content'].strip().upper() }}", "", "")
            .expect("compiles");
        assert_eq!(
            t.render(&[ChatMessage::new("user", "  hi ")], false)
                .expect("renders"),
            "HI"
        );
    }

    fn weather() -> Tool {
        Tool {
            name: "get_weather".into(),
            description: Some("Weather of a city".into()),
            parameters: serde_json::json!({"type": "object", "properties": {"city": {"type": "string"}}}),
            strict: false,
        }
    }

    fn history() -> Vec<ChatMessage> {
        let mut call = ChatMessage::new("assistant", "");
        call.tool_calls = vec![ToolCall::new(
            "call_1",
            crate::tools::FunctionCall {
                name: "get_weather".into(),
                arguments: serde_json::json!({"city": "Oslo"}),
            },
        )];
        let mut result = ChatMessage::new("tool", "{\"c\": 3}");
        result.tool_call_id = Some("call_1".into());
        vec![ChatMessage::new("user", "Weather in Oslo?"), call, result]
    }

    /// A template that takes tools gets them, and the history's calls, as transformers passes them.
    #[test]
    fn templates_that_take_tools_render_them_and_the_calls() {
        let src = "{% if tools is not none %}<tools>{% for t in tools %}{{ t.function.name }}:{{ t | tojson }}{% endfor %}</tools>{% endif %}\
            {% for m in messages %}[{{ m.role }}]{% if m.tool_calls %}{% for c in m.tool_calls %}<tool_call>{{ c.function.name }}{{ c.function.arguments | tojson }}</tool_call>{% endfor %}{% endif %}\
            {% if m.tool_call_id %}({{ m.tool_call_id }}){% endif %}{{ m.content }}{% endfor %}";
        let t = ChatTemplate::new(src, "", "").expect("compiles");
        assert!(t.takes_tools());
        assert_eq!(t.tool_format(), ToolFormat::Hermes);
        let s = t
            .render_tools(&history(), &[weather()], false)
            .expect("renders");
        assert!(s.starts_with("<tools>get_weather:{"), "{s}");
        assert!(s.contains("\"description\":\"Weather of a city\""), "{s}");
        assert!(
            s.ends_with("[user]Weather in Oslo?[assistant]<tool_call>get_weather{\"city\":\"Oslo\"}</tool_call>[tool](call_1){\"c\": 3}"),
            "{s}"
        );
        // Without tools, `tools` is none.
        let s = t
            .render(&[ChatMessage::new("user", "hi")], false)
            .expect("renders");
        assert_eq!(s, "[user]hi");
    }

    /// A template without tools: instructions in the system message, calls and results as text.
    #[test]
    fn templates_without_tools_get_them_as_text() {
        let t = ChatTemplate::for_model(None, "llama", "", "").expect("compiles");
        assert!(!t.takes_tools());
        let s = t
            .render_tools(&history(), &[weather()], true)
            .expect("renders");
        assert!(
            s.starts_with("<|im_start|>system\nYou may call functions"),
            "{s}"
        );
        assert!(s.contains("\"name\":\"get_weather\""), "{s}");
        assert!(
            s.ends_with("<|im_start|>user\nWeather in Oslo?<|im_end|>\n<|im_start|>assistant\n<tool_call>\n{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Oslo\"}}\n</tool_call><|im_end|>\n<|im_start|>user\n<tool_response>\n{\"c\": 3}\n</tool_response><|im_end|>\n<|im_start|>assistant\n"),
            "{s}"
        );
        // Gemma's alternation holds: two results become one user turn; the system text joins the first turn.
        let g = ChatTemplate::for_model(None, "gemma3", "<bos>", "").expect("compiles");
        let mut msgs = history();
        msgs.push(msgs[2].clone());
        let s = g
            .render_tools(&msgs, &[weather()], true)
            .expect("alternates");
        assert!(s.contains("</tool_response>\n<tool_response>"), "{s}");
        assert!(
            s.starts_with("<bos><start_of_turn>user\nYou may call functions"),
            "{s}"
        );
    }
}
