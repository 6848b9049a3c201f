//! Chat templates: `tokenizer.chat_template` rendered with minijinja the way Hugging Face's transformers does
//! (trim_blocks, lstrip_blocks, `raise_exception`, Python string methods). Files without a template get one
//! matching their family (Gemma's turn format) or ChatML.

use crate::error::{EngineError, Result};
use minijinja::{Environment, ErrorKind, Value};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
    /// The participant's name (OpenAI's `name`), for templates that render it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl ChatMessage {
    pub fn new(role: &str, content: &str) -> ChatMessage {
        ChatMessage {
            role: role.into(),
            content: content.into(),
            name: None,
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
        if messages.is_empty() {
            return Err(EngineError::InvalidRequest(
                "messages must not be empty".into(),
            ));
        }
        let tmpl = self
            .env
            .get_template("chat")
            .map_err(|e| EngineError::Template(describe(&e)))?;
        let named;
        let messages = if self.renders_name || messages.iter().all(|m| m.name.is_none()) {
            messages
        } else {
            named = messages
                .iter()
                .map(|m| match &m.name {
                    Some(n) => ChatMessage::new(&m.role, &format!("{n}: {}", m.content)),
                    None => m.clone(),
                })
                .collect::<Vec<_>>();
            &named[..]
        };
        tmpl.render(minijinja::context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos,
            eos_token => self.eos,
        })
        .map_err(|e| EngineError::Template(describe(&e)))
    }
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
}
