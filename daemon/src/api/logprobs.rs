//! Generated tokens' log-probabilities in the APIs' shapes: OpenAI chat's and Ollama's entries
//! (`{token, logprob, bytes, top_logprobs}`), and the legacy completions' columns (`tokens`, `token_logprobs`,
//! `top_logprobs`, `text_offset`). The engine computes them (`hearth_engine::logprobs`); here they are only asked
//! for and rendered.

use super::error::ApiError;
use hearth_engine::logprobs::{TokenLogprob, MAX_TOP};
use serde_json::{json, Value};

/// What OpenAI reports for a token the model gives no chance (JSON has no infinity).
const FLOOR: f32 = -9999.0;

fn logprob(x: f32) -> f32 {
    if x.is_nan() {
        FLOOR
    } else {
        x.max(FLOOR)
    }
}

/// A token's text: its bytes as UTF-8, a piece of a character as U+FFFD (`bytes` has them exactly).
fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// How many alternatives a request wants, from a `logprobs` switch and a `top_logprobs` count (OpenAI's chat
/// and Ollama's fields); None: no log-probabilities.
pub fn requested(on: Option<bool>, top: Option<i64>) -> Result<Option<usize>, ApiError> {
    match (on.unwrap_or(false), top) {
        (_, Some(k)) if !(0..=MAX_TOP as i64).contains(&k) => Err(ApiError::invalid(
            format!("'top_logprobs' must be between 0 and {MAX_TOP}"),
            Some("top_logprobs"),
        )),
        (false, Some(_)) => Err(ApiError::invalid(
            "'top_logprobs' needs 'logprobs': true",
            Some("top_logprobs"),
        )),
        (false, None) => Ok(None),
        (true, k) => Ok(Some(k.unwrap_or(0) as usize)),
    }
}

/// The legacy completions' `logprobs`: a count of alternatives (0 gives the chosen token's alone).
pub fn requested_count(n: Option<i64>) -> Result<Option<usize>, ApiError> {
    match n {
        Some(k) if !(0..=MAX_TOP as i64).contains(&k) => Err(ApiError::invalid(
            format!("'logprobs' must be between 0 and {MAX_TOP}"),
            Some("logprobs"),
        )),
        k => Ok(k.map(|k| k as usize)),
    }
}

/// One token as OpenAI's chat (`choices[].logprobs.content[]`) and Ollama (`logprobs[]`) give it.
pub fn entry(e: &TokenLogprob) -> Value {
    let top: Vec<Value> = e
        .top
        .iter()
        .map(|a| json!({"token": text(&a.bytes), "logprob": logprob(a.logprob), "bytes": a.bytes}))
        .collect();
    json!({"token": text(&e.bytes), "logprob": logprob(e.logprob), "bytes": e.bytes, "top_logprobs": top})
}

pub fn entries(es: &[TokenLogprob]) -> Vec<Value> {
    es.iter().map(entry).collect()
}

/// OpenAI chat's `logprobs` of a choice (or of a chunk's tokens).
pub fn chat(es: &[TokenLogprob]) -> Value {
    json!({"content": entries(es), "refusal": null})
}

/// The legacy completions' `logprobs` of tokens whose text starts `offset` characters into the choice's text;
/// returns it and the offset after them. Each `top_logprobs` map holds the `k` most likely tokens and the
/// chosen one, as OpenAI's does.
pub fn legacy(es: &[TokenLogprob], mut offset: usize) -> (Value, usize) {
    let (mut tokens, mut lps, mut tops, mut offsets) = (vec![], vec![], vec![], vec![]);
    for e in es {
        let t = text(&e.bytes);
        let mut top = serde_json::Map::new();
        for a in &e.top {
            top.insert(text(&a.bytes), json!(logprob(a.logprob)));
        }
        top.insert(t.clone(), json!(logprob(e.logprob)));
        offsets.push(offset);
        offset += t.chars().count();
        tokens.push(t);
        lps.push(logprob(e.logprob));
        tops.push(Value::Object(top));
    }
    (
        json!({"tokens": tokens, "token_logprobs": lps, "top_logprobs": tops, "text_offset": offsets}),
        offset,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_engine::logprobs::Alternative;

    fn e(bytes: &[u8], lp: f32, top: &[(&[u8], f32)]) -> TokenLogprob {
        TokenLogprob {
            token: 1,
            bytes: bytes.to_vec(),
            logprob: lp,
            top: top
                .iter()
                .map(|(b, l)| Alternative {
                    token: 2,
                    bytes: b.to_vec(),
                    logprob: *l,
                })
                .collect(),
        }
    }

    #[test]
    fn asking_needs_the_switch_and_a_count_in_range() {
        assert_eq!(requested(None, None).unwrap(), None);
        assert_eq!(requested(Some(false), None).unwrap(), None);
        assert_eq!(requested(Some(true), None).unwrap(), Some(0));
        assert_eq!(requested(Some(true), Some(5)).unwrap(), Some(5));
        for bad in [
            (Some(false), Some(2)),
            (None, Some(2)),
            (Some(true), Some(21)),
            (Some(true), Some(-1)),
        ] {
            let err = requested(bad.0, bad.1).unwrap_err();
            assert!(err.to_string().contains("top_logprobs"), "{err}");
        }
        assert_eq!(requested_count(Some(3)).unwrap(), Some(3));
        assert!(requested_count(Some(21)).is_err());
    }

    #[test]
    fn entries_are_finite_and_keep_exact_bytes() {
        let v = entry(&e(&[0xE2, 0x82], f32::NEG_INFINITY, &[(b" a", -0.5)]));
        assert_eq!(v["token"], "\u{FFFD}");
        assert_eq!(v["bytes"], json!([0xE2, 0x82]));
        assert_eq!(v["logprob"], json!(FLOOR));
        assert_eq!(v["top_logprobs"][0]["token"], " a");
    }

    #[test]
    fn legacy_columns_line_up_and_offsets_count_characters() {
        let es = [
            e("é".as_bytes(), -0.25, &[(b"x", -1.0)]),
            e(b"b", -0.5, &[]),
        ];
        let (v, end) = legacy(&es, 3);
        assert_eq!(v["tokens"], json!(["é", "b"]));
        assert_eq!(v["token_logprobs"], json!([-0.25, -0.5]));
        assert_eq!(v["text_offset"], json!([3, 4]));
        assert_eq!(v["top_logprobs"][0], json!({"x": -1.0, "é": -0.25}));
        assert_eq!(end, 5);
    }
}
