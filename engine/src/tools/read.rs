//! Calls out of generated text, as it streams: text before a call passes through at once (less a tail that may
//! be the start of a call marker), a call is given out whole when its block closes, and what turns out not to
//! be a call is given back as text. The same reader serves streaming and whole answers, so both say the same.

use super::{FunctionCall, ToolFormat};
use crate::schema::Grammar;
use serde_json::Value;
use std::sync::Arc;

/// What the reader gives out, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Text(String),
    Call(FunctionCall),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing but whitespace yet: a call may be the whole answer.
    Start,
    /// Plain text; a marker may still start calls.
    Text,
    /// Inside marked calls.
    Marked,
    /// The answer began as JSON: read whole at the end.
    Whole,
}

/// Reads one answer.
#[derive(Debug, Clone)]
pub struct CallReader {
    format: ToolFormat,
    /// The declared tools, each with the grammar its arguments must satisfy where it has one (strict).
    tools: Vec<(String, Option<Arc<Grammar>>)>,
    /// Several calls may be given out (false: the first only).
    parallel: bool,
    calls_out: usize,
    buf: String,
    state: State,
}

const FENCE: &str = "```";
/// Closes a Hermes block.
const CLOSE: &str = "</tool_call>";

impl CallReader {
    /// A reader for `format` that accepts calls to `tools`; `opening` is text the prompt already wrote as the
    /// start of the answer (a forced call's marker).
    pub fn new(
        format: ToolFormat,
        tools: Vec<(String, Option<Arc<Grammar>>)>,
        parallel: bool,
        opening: &str,
    ) -> CallReader {
        let mut r = CallReader {
            format,
            tools,
            parallel,
            calls_out: 0,
            buf: String::new(),
            state: State::Start,
        };
        let out = r.push(opening);
        debug_assert!(out.is_empty(), "an opening is never text");
        r
    }

    /// Takes the next piece of generated text.
    pub fn push(&mut self, text: &str) -> Vec<Output> {
        self.buf.push_str(text);
        let mut out = Vec::new();
        self.advance(&mut out);
        out
    }

    /// The answer ended: what is held back is read now.
    pub fn finish(&mut self) -> Vec<Output> {
        let mut out = Vec::new();
        let rest = std::mem::take(&mut self.buf);
        match self.state {
            State::Start | State::Text => text(&mut out, rest),
            State::Whole => match self.calls(&rest) {
                Some(calls) => self.give(&mut out, calls),
                None => text(&mut out, rest),
            },
            // Whitespace after the last block is not text.
            State::Marked if rest.trim().is_empty() => {}
            State::Marked => {
                let body = self
                    .format
                    .marker()
                    .and_then(|m| rest.trim_start().strip_prefix(m))
                    .unwrap_or(&rest);
                match self.calls(body) {
                    Some(calls) => self.give(&mut out, calls),
                    None => text(&mut out, rest),
                }
            }
        }
        out
    }

    /// Gives out calls: all of them, or without parallel calls only the answer's first.
    fn give(&mut self, out: &mut Vec<Output>, calls: Vec<FunctionCall>) {
        for c in calls {
            if self.parallel || self.calls_out == 0 {
                out.push(Output::Call(c));
            }
            self.calls_out += 1;
        }
    }

    fn advance(&mut self, out: &mut Vec<Output>) {
        let marker = self.format.marker().unwrap_or(CLOSE);
        loop {
            match self.state {
                State::Start => {
                    let t = self.buf.trim_start();
                    if t.is_empty() {
                        return;
                    }
                    // The marker first: Mistral's begins with `[`, as a JSON list does.
                    if t.starts_with(marker) {
                        self.state = State::Marked;
                    } else if marker.starts_with(t) || FENCE.starts_with(t) {
                        return;
                    } else if t.starts_with('{') || t.starts_with('[') || t.starts_with(FENCE) {
                        self.state = State::Whole;
                    } else {
                        self.state = State::Text;
                    }
                }
                State::Text => {
                    if let Some(i) = self.buf.find(marker) {
                        let before: String = self.buf.drain(..i).collect();
                        text(out, before);
                        self.state = State::Marked;
                        continue;
                    }
                    // Keep back the longest tail that could begin the marker.
                    let keep = (1..marker.len().min(self.buf.len() + 1))
                        .rev()
                        .find(|&k| {
                            self.buf.is_char_boundary(self.buf.len() - k)
                                && marker.starts_with(&self.buf[self.buf.len() - k..])
                        })
                        .unwrap_or(0);
                    let cut = self.buf.len() - keep;
                    let before: String = self.buf.drain(..cut).collect();
                    text(out, before);
                    return;
                }
                State::Marked => {
                    // Only Hermes blocks close; the other formats' calls run to the end of the answer.
                    if self.format != ToolFormat::Hermes && self.format != ToolFormat::Json {
                        return;
                    }
                    let Some(end) = self.buf.find(CLOSE) else {
                        return;
                    };
                    let block: String = self.buf.drain(..end + CLOSE.len()).collect();
                    let body = block
                        .trim_start()
                        .strip_prefix(marker)
                        .and_then(|b| b.strip_suffix(CLOSE))
                        .unwrap_or_default();
                    match self.calls(body) {
                        Some(calls) => self.give(out, calls),
                        None => text(out, block),
                    }
                    let t = self.buf.trim_start();
                    if t.is_empty() || marker.starts_with(t) || t.starts_with(marker) {
                        // More calls may follow; whitespace between blocks is not text.
                        if t.starts_with(marker) {
                            continue;
                        }
                        return;
                    }
                    self.state = State::Text;
                }
                State::Whole => return,
            }
        }
    }

    /// The calls a piece of text holds, if it is nothing but calls to declared tools.
    fn calls(&self, body: &str) -> Option<Vec<FunctionCall>> {
        let mut t = body.trim();
        t = t.strip_prefix("<|python_tag|>").unwrap_or(t).trim();
        if let Some(inner) = t.strip_prefix(FENCE) {
            let inner = inner.strip_prefix("json").unwrap_or(inner);
            t = inner.strip_suffix(FENCE)?.trim();
        }
        if self.format == ToolFormat::Mistral && !t.starts_with(['[', '{']) {
            return self.mistral_calls(t);
        }
        // One value, a list, or several values separated by whitespace or `;` (Llama 3's parallel calls).
        let mut values = Vec::new();
        let mut rest = t;
        while !rest.is_empty() {
            let mut it = serde_json::Deserializer::from_str(rest).into_iter::<Value>();
            let v = it.next()?.ok()?;
            rest = rest[it.byte_offset()..].trim_start();
            rest = rest.strip_prefix(';').unwrap_or(rest).trim_start();
            values.push(v);
        }
        let mut calls = Vec::new();
        for v in values {
            match v {
                Value::Array(items) if !items.is_empty() => {
                    for item in items {
                        calls.push(self.call(item)?);
                    }
                }
                v => calls.push(self.call(v)?),
            }
        }
        (!calls.is_empty()).then_some(calls)
    }

    /// Mistral's newer form: `name[ARGS]{…}`, repeated after further `[TOOL_CALLS]`.
    fn mistral_calls(&self, t: &str) -> Option<Vec<FunctionCall>> {
        let mut calls = Vec::new();
        for part in t.split("[TOOL_CALLS]").filter(|p| !p.trim().is_empty()) {
            let (name, args) = part.split_once("[ARGS]")?;
            let name = name.trim();
            let arguments: Value = serde_json::from_str(args.trim()).ok()?;
            if !self.admits(name, &arguments) {
                return None;
            }
            calls.push(FunctionCall {
                name: name.to_owned(),
                arguments,
            });
        }
        (!calls.is_empty()).then_some(calls)
    }

    /// One call object: a declared name and an object of arguments (`arguments` or `parameters`, maybe as a
    /// JSON string; absent: none).
    fn call(&self, v: Value) -> Option<FunctionCall> {
        let Value::Object(mut o) = v else {
            return None;
        };
        let name = o.get("name")?.as_str()?.to_owned();
        let args = o
            .remove("arguments")
            .or_else(|| o.remove("parameters"))
            .unwrap_or_else(|| Value::Object(Default::default()));
        let arguments = match args {
            Value::String(s) => serde_json::from_str(&s).ok()?,
            v => v,
        };
        self.admits(&name, &arguments)
            .then_some(FunctionCall { name, arguments })
    }

    /// A declared tool, and arguments that are an object (and validate, for a strict tool).
    fn admits(&self, name: &str, arguments: &Value) -> bool {
        arguments.is_object()
            && self
                .tools
                .iter()
                .any(|(n, g)| n == name && g.as_ref().is_none_or(|g| g.admits(arguments)))
    }
}

fn text(out: &mut Vec<Output>, s: String) {
    if s.is_empty() {
        return;
    }
    match out.last_mut() {
        Some(Output::Text(t)) => t.push_str(&s),
        _ => out.push(Output::Text(s)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn names() -> Vec<(String, Option<Arc<Grammar>>)> {
        let strict = json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                            "additionalProperties": false});
        vec![
            (
                "get_weather".into(),
                Some(Arc::new(Grammar::compile(&strict).expect("compiles"))),
            ),
            ("ping".into(), None),
        ]
    }

    /// The whole answer at once, and the same answer split at every byte boundary, read the same.
    fn read(format: ToolFormat, text: &str) -> (String, Vec<FunctionCall>) {
        let whole = collect(format, &[text]);
        for cut in 1..text.len() {
            if !text.is_char_boundary(cut) {
                continue;
            }
            let (a, b) = text.split_at(cut);
            assert_eq!(collect(format, &[a, b]), whole, "split at {cut}: {text:?}");
        }
        let chars: Vec<String> = text.chars().map(String::from).collect();
        let pieces: Vec<&str> = chars.iter().map(String::as_str).collect();
        assert_eq!(collect(format, &pieces), whole, "char by char: {text:?}");
        whole
    }

    fn collect(format: ToolFormat, pieces: &[&str]) -> (String, Vec<FunctionCall>) {
        let mut r = CallReader::new(format, names(), true, "");
        let mut out = Vec::new();
        for p in pieces {
            out.extend(r.push(p));
        }
        out.extend(r.finish());
        let mut text = String::new();
        let mut calls = Vec::new();
        for o in out {
            match o {
                Output::Text(t) => text.push_str(&t),
                Output::Call(c) => calls.push(c),
            }
        }
        (text, calls)
    }

    fn call(name: &str, arguments: Value) -> FunctionCall {
        FunctionCall {
            name: name.into(),
            arguments,
        }
    }

    #[test]
    fn hermes_blocks_are_calls_and_the_text_before_is_content() {
        let (text, calls) = read(
            ToolFormat::Hermes,
            "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"ping\", \"arguments\": {}}\n</tool_call>",
        );
        assert_eq!(text, "Let me check.\n");
        assert_eq!(
            calls,
            vec![
                call("get_weather", json!({"city": "Oslo"})),
                call("ping", json!({}))
            ]
        );
        // An unclosed last block (the answer ended at end-of-generation) still counts.
        let (text, calls) = read(
            ToolFormat::Hermes,
            "<tool_call>\n{\"name\": \"ping\", \"arguments\": \"{}\"}",
        );
        assert_eq!((text.as_str(), calls), ("", vec![call("ping", json!({}))]));
    }

    #[test]
    fn what_is_not_a_call_stays_text() {
        for t in [
            "Plain answer with a < sign and <tool_ without a call.",
            "<tool_call>\n{\"name\": \"unknown\", \"arguments\": {}}\n</tool_call>",
            "<tool_call>{not json}</tool_call> after",
            "{\"name\": \"get_weather\", \"arguments\": [1]}",
            // A strict tool's arguments that do not validate.
            "{\"name\": \"get_weather\", \"arguments\": {\"town\": \"Oslo\"}}",
            "{\"answer\": 42}",
            "[]",
            "```python\nprint(1)\n```",
        ] {
            let (text, calls) = read(ToolFormat::Hermes, t);
            assert_eq!((text.as_str(), calls.len()), (t, 0), "{t}");
        }
    }

    #[test]
    fn whole_answer_json_in_each_family() {
        let (text, calls) = read(
            ToolFormat::Llama3,
            "<|python_tag|>{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Rome\"}}; {\"name\": \"ping\", \"parameters\": {}}",
        );
        assert_eq!(text, "");
        assert_eq!(
            calls,
            vec![
                call("get_weather", json!({"city": "Rome"})),
                call("ping", json!({}))
            ]
        );
        let (_, calls) = read(
            ToolFormat::Json,
            "```json\n[{\"name\": \"ping\", \"arguments\": {}}]\n```",
        );
        assert_eq!(calls, vec![call("ping", json!({}))]);
        let (text, calls) = read(
            ToolFormat::Mistral,
            "[TOOL_CALLS] [{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Lyon\"}}]",
        );
        assert_eq!(
            (text.as_str(), calls),
            ("", vec![call("get_weather", json!({"city": "Lyon"}))])
        );
        let (_, calls) = read(
            ToolFormat::Mistral,
            "[TOOL_CALLS]get_weather[ARGS]{\"city\": \"Nice\"}[TOOL_CALLS]ping[ARGS]{}",
        );
        assert_eq!(
            calls,
            vec![
                call("get_weather", json!({"city": "Nice"})),
                call("ping", json!({}))
            ]
        );
    }

    #[test]
    fn a_forced_opening_is_part_of_the_answer() {
        let mut r = CallReader::new(ToolFormat::Hermes, names(), true, "<tool_call>\n");
        assert!(r.push("{\"name\": \"ping\", ").is_empty());
        assert!(r.push("\"arguments\": {}}").is_empty());
        assert_eq!(r.finish(), vec![Output::Call(call("ping", json!({})))]);
        let mut r = CallReader::new(ToolFormat::Mistral, names(), true, "[TOOL_CALLS]");
        r.push("[{\"name\": \"ping\", \"arguments\": {}}]");
        assert_eq!(r.finish(), vec![Output::Call(call("ping", json!({})))]);
    }

    #[test]
    fn text_streams_before_the_answer_ends() {
        let mut r = CallReader::new(ToolFormat::Hermes, names(), true, "");
        assert_eq!(r.push("Hello"), vec![Output::Text("Hello".into())]);
        // A tail that may begin the marker waits; once it cannot, it goes out.
        assert_eq!(r.push(" <tool"), vec![Output::Text(" ".into())]);
        assert_eq!(r.push("s are"), vec![Output::Text("<tools are".into())]);
    }

    #[test]
    fn without_parallel_calls_only_the_first_is_given() {
        let mut r = CallReader::new(ToolFormat::Hermes, vec![("ping".into(), None)], false, "");
        let mut out = r.push("<tool_call>{\"name\": \"ping\"}</tool_call><tool_call>{\"name\": \"ping\", \"arguments\": {\"n\": 2}}</tool_call>");
        out.extend(r.finish());
        assert_eq!(
            out,
            vec![Output::Call(FunctionCall {
                name: "ping".into(),
                arguments: serde_json::json!({})
            })]
        );
    }
}
