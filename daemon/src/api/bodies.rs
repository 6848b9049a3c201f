//! The inference request bodies of both front ends, decoded from bytes exactly as their handlers decode them
//! (`extract::parse_json`, then the front end's translation). One entry point for the request-body fuzz target
//! (tests/fuzz) and for tests that need no server.

use super::error::ApiError;
use super::extract::parse_json;
use super::{ollama, openai};
use crate::inference::Request;

/// Which body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// `POST /v1/chat/completions`
    OpenAiChat,
    /// `POST /v1/completions`
    OpenAiCompletion,
    /// `POST /api/chat`
    OllamaChat,
    /// `POST /api/generate`
    OllamaGenerate,
}

impl BodyKind {
    pub const ALL: [BodyKind; 4] = [
        BodyKind::OpenAiChat,
        BodyKind::OpenAiCompletion,
        BodyKind::OllamaChat,
        BodyKind::OllamaGenerate,
    ];
}

/// The inference request a body asks for; `None` for Ollama's load/unload call (no prompt). Every failure is
/// the client's (a 400 naming the field).
pub fn decode(kind: BodyKind, body: &[u8]) -> Result<Option<Request>, ApiError> {
    let ollama = |call| match call {
        ollama::Call::Generate(r) => Some(*r),
        ollama::Call::Load(_) => None,
    };
    Ok(match kind {
        BodyKind::OpenAiChat => Some(openai::chat_request(&parse_json(body)?, "chat")?),
        BodyKind::OpenAiCompletion => Some(openai::completion_request(
            &parse_json(body)?,
            "completions",
        )?),
        BodyKind::OllamaChat => ollama(ollama::chat_call(&parse_json(body)?)?),
        BodyKind::OllamaGenerate => ollama(ollama::generate_call(&parse_json(body)?)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(kind: BodyKind, body: &str) -> (u16, String) {
        match decode(kind, body.as_bytes()) {
            Ok(r) => panic!("accepted {body}: {:?}", r.map(|r| r.model)),
            Err(e) => (e.status().as_u16(), e.to_string()),
        }
    }

    #[test]
    fn each_front_end_decodes_its_body() {
        let chat = r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":4}"#;
        let r = decode(BodyKind::OpenAiChat, chat.as_bytes()).expect("chat");
        assert_eq!(
            r.map(|r| (r.model, r.max_tokens)),
            Some(("m".into(), Some(4)))
        );
        let gen = r#"{"model":"m","prompt":"hi","options":{"num_predict":3}}"#;
        let r = decode(BodyKind::OllamaGenerate, gen.as_bytes()).expect("generate");
        assert_eq!(r.and_then(|r| r.max_tokens), Some(3));
        // Ollama's load call: no prompt, no generation.
        let load = decode(BodyKind::OllamaChat, br#"{"model":"m"}"#).expect("load");
        assert!(load.is_none());
    }

    /// `Duration::from_secs_f64` panics past its range: a member's `"keep_alive": 1e300` took down an HTTP worker.
    #[test]
    fn a_keep_alive_past_any_duration_is_forever() {
        let body =
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"keep_alive":1e300}"#;
        let r = decode(BodyKind::OllamaChat, body.as_bytes()).expect("decoded");
        assert_eq!(r.and_then(|r| r.keep_alive), Some(std::time::Duration::MAX));
    }

    #[test]
    fn bad_bodies_are_400s_that_name_the_problem() {
        let (status, m) = refusal(BodyKind::OpenAiCompletion, "[null, null]");
        assert_eq!(
            (status, m.as_str()),
            (400, "the request body must be a JSON object")
        );
        let (status, m) = refusal(
            BodyKind::OllamaChat,
            r#"{"model":"m","messages":[{"role":"wizard","content":"x"}]}"#,
        );
        assert_eq!(status, 400);
        assert!(m.contains("messages[0].role"), "{m}");
    }

    fn param(kind: BodyKind, body: &str) -> String {
        match decode(kind, body.as_bytes()) {
            Ok(_) => panic!("accepted {body}"),
            Err(e) => {
                assert_eq!(e.status().as_u16(), 400, "{e}");
                let p = e.param().unwrap_or_default().to_owned();
                assert!(e.to_string().contains(&p), "{e} names {p}");
                p
            }
        }
    }

    /// No silent drops: a member no field takes is a 400 naming it, at any depth, in both front ends.
    #[test]
    fn fields_not_acted_on_are_refused_by_name() {
        let msgs = r#""messages":[{"role":"user","content":"hi"}]"#;
        let cases = [
            (
                BodyKind::OpenAiChat,
                format!(r#"{{"model":"m",{msgs},"tools":[{{"type":"function","function":{{"name":"f","examples":[]}}}}]}}"#),
                "tools[0].function.examples",
            ),
            (
                BodyKind::OpenAiChat,
                format!(r#"{{"model":"m",{msgs},"prediction":{{"type":"content","content":"x"}}}}"#),
                "prediction",
            ),
            (
                BodyKind::OpenAiChat,
                format!(r#"{{"model":"m",{msgs},"top_logprobs":3}}"#),
                "top_logprobs",
            ),
            // `null` means "not given" only for members the body has.
            (
                BodyKind::OpenAiChat,
                format!(r#"{{"model":"m",{msgs},"frobnicate":null}}"#),
                "frobnicate",
            ),
            (
                BodyKind::OpenAiChat,
                r#"{"model":"m","messages":[{"role":"user","content":"hi","audio":null}]}"#.into(),
                "messages[0].audio",
            ),
            (
                BodyKind::OllamaGenerate,
                r#"{"model":"m","prompt":"x","options":{"mirostat":null}}"#.into(),
                "options.mirostat",
            ),
            (
                BodyKind::OpenAiCompletion,
                r#"{"model":"m","prompt":"x","":null}"#.into(),
                "",
            ),
            (
                BodyKind::OpenAiChat,
                format!(r#"{{"model":"m",{msgs},"logprobs":true,"top_logprobs":21}}"#),
                "top_logprobs",
            ),
            (
                BodyKind::OpenAiCompletion,
                r#"{"model":"m","prompt":"x","logprobs":30}"#.into(),
                "logprobs",
            ),
            (
                BodyKind::OllamaGenerate,
                r#"{"model":"m","prompt":"x","top_logprobs":2}"#.into(),
                "top_logprobs",
            ),
            (
                BodyKind::OpenAiChat,
                r#"{"model":"m","messages":[{"role":"user","content":"hi","audio":{}}]}"#.into(),
                "messages[0].audio",
            ),
            (
                BodyKind::OpenAiChat,
                format!(
                    r#"{{"model":"m",{msgs},"stream_options":{{"include_obfuscation":true}}}}"#
                ),
                "stream_options.include_obfuscation",
            ),
            (
                BodyKind::OpenAiCompletion,
                r#"{"model":"m","prompt":"x","echo":true}"#.into(),
                "echo",
            ),
            (
                BodyKind::OpenAiCompletion,
                r#"{"model":"m","prompt":"x","suffix":"y"}"#.into(),
                "suffix",
            ),
            (
                BodyKind::OllamaChat,
                r#"{"model":"m","messages":[{"role":"user","content":"hi","images":["AA=="]}]}"#
                    .into(),
                "messages[0].images",
            ),
            (
                BodyKind::OllamaChat,
                r#"{"model":"m","messages":[{"role":"tool","content":"1","tool_name":"f","id":"x"}]}"#
                    .into(),
                "messages[0].id",
            ),
            (
                BodyKind::OllamaGenerate,
                r#"{"model":"m","prompt":"x","raw":true,"think":true}"#.into(),
                "think",
            ),
            (
                BodyKind::OllamaGenerate,
                r#"{"model":"m","prompt":"x","options":{"mirostat":1}}"#.into(),
                "options.mirostat",
            ),
            (
                BodyKind::OllamaGenerate,
                r#"{"model":"m","prompt":"x","template":"{{ .Prompt }}"}"#.into(),
                "template",
            ),
        ];
        for (kind, body, field) in cases {
            assert_eq!(param(kind, &body), field, "{body}");
        }
        let m = refusal(
            BodyKind::OllamaChat,
            &format!(r#"{{"model":"m",{msgs},"options":{{"num_thread":4}}}}"#),
        )
        .1;
        assert!(m.contains("docs/configuration.md"), "{m}");
    }

    /// `null` is "not given" (generated SDKs send every optional field), and `think: false` is what every model
    /// here does: both accepted.
    #[test]
    fn nulls_and_defaults_are_accepted() {
        let chat = r#"{"model":"m","messages":[{"role":"user","content":"hi","name":null}],"tools":null,
            "temperature":null,"user":"u-1"}"#;
        let r = decode(BodyKind::OpenAiChat, chat.as_bytes())
            .expect("chat")
            .expect("a request");
        assert_eq!(r.client_user.as_deref(), Some("u-1"));
        // Ollama's client sends `tools: []` with every chat: no tools, nothing dropped.
        let empty = r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"tools":[]}"#;
        assert!(decode(BodyKind::OllamaChat, empty.as_bytes()).is_ok());
        assert!(decode(BodyKind::OpenAiChat, empty.as_bytes()).is_ok());
        let ol = r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"think":false,"format":null}"#;
        assert!(decode(BodyKind::OllamaChat, ol.as_bytes()).is_ok());
    }

    #[test]
    fn num_ctx_is_the_request_window() {
        let body = r#"{"model":"m","prompt":"x","options":{"num_ctx":512}}"#;
        let r = decode(BodyKind::OllamaGenerate, body.as_bytes())
            .expect("generate")
            .expect("a request");
        assert_eq!(r.context, Some(512));
        assert_eq!(
            param(
                BodyKind::OllamaGenerate,
                r#"{"model":"m","prompt":"x","options":{"num_ctx":0}}"#
            ),
            "options.num_ctx"
        );
    }
}
