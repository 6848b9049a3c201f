//! Ollama's request `options` (sampling, window, speculation), which the Ollama bodies carry, a derived model
//! stores as its default `parameters`, and OpenAI's bodies take those defaults from — one type for all three, apart
//! from the front ends that use it.

use super::error::ApiError;
use super::structured::OutputFormat;
use crate::inference::Request;
use crate::sched::{Priority, Prompt};
use hearth_engine::SamplingParams;
use serde::Deserialize;
use serde_json::Value;
use std::time::Duration;
use utoipa::ToSchema;

/// Ollama's `options`. Unlike Ollama, an option Hearth does not act on is refused by name, never ignored.
#[derive(Deserialize, ToSchema, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct Options {
    #[schema(minimum = 0.0, maximum = 10.0)]
    pub temperature: Option<f32>,
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub top_p: Option<f32>,
    #[schema(minimum = 0)]
    pub top_k: Option<i64>,
    pub min_p: Option<f32>,
    pub seed: Option<i64>,
    /// -1: until the context is full (default).
    pub num_predict: Option<i64>,
    pub stop: Option<Vec<String>>,
    pub repeat_penalty: Option<f32>,
    pub repeat_last_n: Option<i64>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    /// This request's context window in tokens (prompt + output): at most the window the model was loaded
    /// with, which bounds it when larger. A prompt that does not fit is refused (context_length_exceeded).
    #[schema(minimum = 1)]
    pub num_ctx: Option<i64>,
    /// Extension: `false` opts this request out of the model's speculative decoding.
    pub speculative: Option<bool>,
}

impl Options {
    /// Refuses values that have no meaning, naming the option.
    pub fn check(&self) -> std::result::Result<(), ApiError> {
        self.sampling().map(drop)
    }

    /// These options over `base` (a derived model's defaults): what these set wins.
    pub fn under(self, base: &Options) -> Options {
        let b = base.clone();
        Options {
            temperature: self.temperature.or(b.temperature),
            top_p: self.top_p.or(b.top_p),
            top_k: self.top_k.or(b.top_k),
            min_p: self.min_p.or(b.min_p),
            seed: self.seed.or(b.seed),
            num_predict: self.num_predict.or(b.num_predict),
            stop: self.stop.or(b.stop),
            repeat_penalty: self.repeat_penalty.or(b.repeat_penalty),
            repeat_last_n: self.repeat_last_n.or(b.repeat_last_n),
            presence_penalty: self.presence_penalty.or(b.presence_penalty),
            frequency_penalty: self.frequency_penalty.or(b.frequency_penalty),
            num_ctx: self.num_ctx.or(b.num_ctx),
            speculative: self.speculative.or(b.speculative),
        }
    }

    fn sampling(&self) -> std::result::Result<SamplingParams, ApiError> {
        let bad = |f: &str, why: &str| {
            Err(ApiError::invalid(
                format!("options.{f}: {why}"),
                Some(&format!("options.{f}")),
            ))
        };
        if self.temperature.is_some_and(|t| !(0.0..=10.0).contains(&t)) {
            return bad("temperature", "must be between 0 and 10");
        }
        if self.top_p.is_some_and(|t| !(0.0..=1.0).contains(&t)) {
            return bad("top_p", "must be between 0 and 1");
        }
        if self.top_k.is_some_and(|k| k < 0) {
            return bad("top_k", "must not be negative");
        }
        if self.num_ctx.is_some_and(|n| n < 1) {
            return bad("num_ctx", "must be at least 1");
        }
        // Ollama's defaults.
        Ok(SamplingParams {
            temperature: self.temperature.unwrap_or(0.8),
            top_p: self.top_p.unwrap_or(0.9),
            top_k: self.top_k.unwrap_or(40) as usize,
            min_p: self.min_p.unwrap_or(0.0),
            repeat_penalty: self.repeat_penalty.unwrap_or(1.1),
            repeat_last_n: self.repeat_last_n.map_or(64, |n| n.max(0) as usize),
            presence_penalty: self.presence_penalty.unwrap_or(0.0),
            frequency_penalty: self.frequency_penalty.unwrap_or(0.0),
            seed: self.seed.map(|s| s as u64),
            logit_bias: Vec::new(),
        })
    }

    /// The request these options describe.
    pub fn request(
        &self,
        model: &str,
        endpoint: &'static str,
        prompt: Prompt,
        format: OutputFormat,
        keep_alive: Option<Duration>,
    ) -> std::result::Result<Request, ApiError> {
        Ok(Request {
            model: model.to_owned(),
            endpoint,
            client_user: None,
            prompt,
            max_tokens: self.max_tokens(),
            sampling: self.sampling()?,
            stop: self.stop.clone().unwrap_or_default(),
            json: format.json,
            schema: format.schema,
            tools: None,
            think: None,
            speculative: self.speculative.unwrap_or(true),
            logprobs: None,
            context: self.num_ctx.map(|n| n as usize),
            keep_alive,
            priority: Priority::Interactive,
        })
    }

    fn max_tokens(&self) -> Option<usize> {
        match self.num_predict {
            Some(n) if n > 0 => Some(n as usize),
            _ => None,
        }
    }
}

/// Default options as a derived model stores them, checked as a request's `options` are.
pub fn options_of(
    parameters: &serde_json::Map<String, Value>,
) -> std::result::Result<Options, String> {
    let o: Options =
        serde_json::from_value(Value::Object(parameters.clone())).map_err(|e| e.to_string())?;
    o.check().map_err(|e| e.to_string())?;
    Ok(o)
}

/// A derived model's default options (its `parameters`), which a request's own options override.
pub fn model_defaults(
    inference: &crate::inference::Inference,
    model: &str,
) -> std::result::Result<Option<Options>, ApiError> {
    inference
        .derived(model)
        .map(|d| options_of(&d.parameters))
        .transpose()
        .map_err(|e| ApiError::Internal(format!("model '{model}': its stored parameters: {e}")))
}
