//! The one path of an inference request, whatever front end it came through — OpenAI's `/v1`, Ollama's `/api`
//! or a line of a batch file. The front ends translate their shapes into a `Request` and the `Piece`s back out;
//! everything between happens once, here: resolve the model (not found) → the key's model scope (forbidden) →
//! the user's limits (model not allowed, over the per-request cap; the cap becomes the default max_tokens) → the
//! model's worker tokenizes and validates (bad request, context overflow, full queue) → quota admission reserves
//! prompt + max_tokens in one store transaction (rate limited, exhausted) → only then does the job run. Nothing is
//! computed for a request refused on the way, and every admitted request gets its ledger row. Nothing here knows
//! HTTP: errors are `InferenceError`s, rendered by `api::error`.

mod embed;
mod error;
pub mod label;

pub use embed::{EmbedInput, EmbedRequest, Embedded};

pub use error::InferenceError;

use crate::auth::Principal;
use crate::ledger::Ledger;
use crate::quota::{Quota, RateHeaders};
use crate::sched::{Admitted, Gate, JobEvent, JobSpec, Owner, Priority, Prompt, Scheduler};
use futures_util::Stream;
use hearth_engine::logprobs::TokenLogprob;
use hearth_engine::think::Part;
use hearth_engine::tools::{FunctionCall, Output, ToolUse};
use hearth_engine::{FinishReason, SamplingParams, Usage};
use std::sync::Arc;
use std::time::Duration;

/// What a front end asks for, in no API's shape.
#[derive(Clone)]
pub struct Request {
    /// As the caller named it (`name:latest` is accepted).
    pub model: String,
    /// The ledger's name for the entry point (`chat`, `completions`, `ollama_chat`, `ollama_generate`, `batch`).
    pub endpoint: &'static str,
    /// The `user` an OpenAI client sent, stored on the ledger row.
    pub client_user: Option<String>,
    pub prompt: Prompt,
    /// None: the user's per-request cap, else until the context is full.
    pub max_tokens: Option<usize>,
    pub sampling: SamplingParams,
    pub stop: Vec<String>,
    /// Constrain the output to one JSON object.
    pub json: bool,
    /// Constrain the output to a value of this schema (structured outputs).
    pub schema: Option<Arc<hearth_engine::schema::Grammar>>,
    /// Tools a chat offers the model, and whether it must call one.
    pub tools: Option<Arc<ToolUse>>,
    /// The template's thinking switch (Ollama's `think`); None: the template's default.
    pub think: Option<bool>,
    /// Speculative decoding where the model has it configured.
    pub speculative: bool,
    /// Each generated token's log-probability with this many alternatives; None: none.
    pub logprobs: Option<usize>,
    /// This request's context window (Ollama's `num_ctx`), bounded by the loaded model's; None: the model's.
    pub context: Option<usize>,
    /// How long the model stays loaded afterwards (None: the configured default).
    pub keep_alive: Option<Duration>,
    pub priority: Priority,
}

/// The services a request passes through.
#[derive(Clone)]
pub struct Inference {
    sched: Arc<Scheduler>,
    quota: Arc<Quota>,
    ledger: Ledger,
    embedders: Arc<embed::Embedders>,
}

/// A request that passed every check and holds its quota reservation; its output follows.
pub struct Started {
    /// The imported model's name.
    pub model: String,
    /// The x-ratelimit-* figures of its admission.
    pub rate: RateHeaders,
    /// The ledger row's id (`GET /v1/me/requests/{id}` reads its energy).
    pub request_id: String,
    pub prompt_tokens: usize,
    /// Time spent loading the model for this request (zero when it was loaded).
    pub load_duration: Duration,
    /// Whether the request asked for log-probabilities.
    logprobs: bool,
    admitted: Admitted,
}

/// A whole completion (non-streaming answers).
pub struct Completion {
    /// The answer's text, less its tool calls.
    pub text: String,
    /// The calls the model made (only where the request offered tools).
    pub calls: Vec<FunctionCall>,
    /// A thinking model's thoughts (empty for others, or with thinking off).
    pub thoughts: String,
    pub reason: FinishReason,
    pub usage: Usage,
    /// Every generated token's log-probability, in order, where the request asked for them.
    pub logprobs: Option<Vec<TokenLogprob>>,
}

/// What a streaming front end renders, in order: `Start`, any number of `Text` and `Call`, one `End`.
pub enum Piece {
    Start,
    Text(String),
    /// A whole tool call (given out when its block closes).
    Call(FunctionCall),
    /// A thinking model's thoughts, before its answer.
    Thought(String),
    /// The log-probabilities of the tokens of the text that follows (or of the last ones, before `End`).
    Logprobs(Vec<TokenLogprob>),
    End(FinishReason, Usage),
}

impl Inference {
    pub fn new(sched: Arc<Scheduler>, quota: Arc<Quota>, ledger: Ledger) -> Inference {
        Inference {
            sched,
            quota,
            ledger,
            embedders: Arc::default(),
        }
    }

    /// What a derived model changes of the one it was made from (None for others, or a name not found: `start`
    /// reports that).
    pub fn derived(&self, model: &str) -> Option<crate::models::Derived> {
        self.sched.resolve_model(model).ok().and_then(|m| m.derived)
    }

    /// Runs every check in order and starts the job; on any refusal nothing was computed.
    pub async fn start(&self, who: &Principal, req: Request) -> Result<Started, InferenceError> {
        let manifest = self.sched.resolve_model(&req.model)?;
        let model = manifest.name.clone();
        label::note(&model);
        if !who.may_use(&model) {
            return Err(InferenceError::KeyScope(model));
        }
        if manifest.is_embedding() {
            return Err(InferenceError::NotForGeneration(model));
        }
        let limits = self
            .quota
            .limits(&who.user_id, who.role, who.key_id.as_deref())
            .await?;
        let max_tokens = self.quota.plan(&limits, &model, req.max_tokens)?;
        let request_id = crate::auth::secrets::random_token(20)
            .map_err(|e| InferenceError::Internal(e.to_string()))?;
        let gate = Gate::default();
        let spec = JobSpec {
            prompt: with_derived(req.prompt, manifest.derived.as_ref()),
            max_tokens,
            sampling: req.sampling,
            stop: req.stop,
            json: req.json,
            schema: req.schema,
            tools: req.tools,
            think: req.think,
            speculative: req.speculative,
            logprobs: req.logprobs,
            context: req.context,
            keep_alive: req.keep_alive,
            on_finish: Some(self.ledger.on_finish(request_id.clone())),
            gate: Some(gate.clone()),
            owner: Some(Owner {
                user: who.user_id.clone(),
                name: who.user_name.clone(),
                weight: limits.weight.unwrap_or(1),
            }),
            priority: req.priority,
        };
        let admitted = self.sched.submit(&model, spec).await?;
        let admission = self
            .quota
            .admit(
                who,
                &limits,
                &request_id,
                &model,
                crate::quota::Entry {
                    endpoint: req.endpoint,
                    client_user: req.client_user.as_deref(),
                },
                admitted.prompt_tokens,
                admitted.max_tokens,
            )
            .await;
        match admission {
            Ok(rate) => {
                gate.open();
                Ok(Started {
                    logprobs: req.logprobs.is_some(),
                    model,
                    rate,
                    request_id,
                    prompt_tokens: admitted.prompt_tokens,
                    load_duration: admitted.load_duration,
                    admitted,
                })
            }
            Err(e) => {
                gate.refuse();
                Err(e.into())
            }
        }
    }
}

impl Started {
    /// The usage of a job the worker ended without a final event (it only does so when shutting down).
    fn cut_short(&self) -> Usage {
        Usage {
            prompt_tokens: self.prompt_tokens,
            ..Default::default()
        }
    }

    /// Waits for the whole completion.
    pub async fn collect(&mut self) -> Completion {
        let mut text = String::new();
        let mut calls = Vec::new();
        let mut thoughts = String::new();
        let mut logprobs = self.logprobs.then(Vec::new);
        let mut end = None;
        while let Some(ev) = self.admitted.events.recv().await {
            match ev {
                JobEvent::Logprobs(l) => logprobs.get_or_insert_with(Vec::new).extend(l),
                JobEvent::Text(t) => {
                    for piece in self.read(t) {
                        match piece {
                            Piece::Text(t) => text.push_str(&t),
                            Piece::Call(c) => calls.push(c),
                            Piece::Thought(t) => thoughts.push_str(&t),
                            _ => {}
                        }
                    }
                }
                JobEvent::Done { reason, usage } => {
                    end = Some((reason, usage));
                    break;
                }
            }
        }
        for piece in self.read_rest() {
            match piece {
                Piece::Text(t) => text.push_str(&t),
                Piece::Call(c) => calls.push(c),
                Piece::Thought(t) => thoughts.push_str(&t),
                _ => {}
            }
        }
        let (reason, usage) = end.unwrap_or_else(|| (FinishReason::Cancelled, self.cut_short()));
        Completion {
            text,
            calls,
            thoughts,
            reason,
            usage,
            logprobs,
        }
    }

    /// Generated text as pieces: thoughts split off where the model thinks, the answer through the call
    /// reader where the request offered tools.
    fn read(&mut self, text: String) -> Vec<Piece> {
        let parts = match &mut self.admitted.thoughts {
            None => vec![Part::Answer(text)],
            Some(s) => s.push(&text),
        };
        self.answer(parts)
    }

    /// What the readers held back when the output ended.
    fn read_rest(&mut self) -> Vec<Piece> {
        let parts = match &mut self.admitted.thoughts {
            None => Vec::new(),
            Some(s) => s.finish(),
        };
        let mut out = self.answer(parts);
        if let Some(r) = &mut self.admitted.calls {
            out.extend(r.finish().into_iter().map(piece));
        }
        out
    }

    fn answer(&mut self, parts: Vec<Part>) -> Vec<Piece> {
        let mut out = Vec::new();
        for p in parts {
            match (p, &mut self.admitted.calls) {
                (Part::Thought(t), _) => out.push(Piece::Thought(t)),
                (Part::Answer(a), None) => out.push(Piece::Text(a)),
                (Part::Answer(a), Some(r)) => out.extend(r.push(&a).into_iter().map(piece)),
            }
        }
        out
    }

    /// The job's output as it comes. Dropping the stream (a client that went away) cancels the job at the
    /// worker's next step.
    pub fn pieces(self) -> impl Stream<Item = Piece> {
        use futures_util::StreamExt;
        futures_util::stream::unfold((self, 0u8), |(mut job, phase)| async move {
            let pieces = match phase {
                0 => vec![Piece::Start],
                1 => match job.admitted.events.recv().await {
                    Some(JobEvent::Text(t)) => job.read(t),
                    Some(JobEvent::Logprobs(l)) => vec![Piece::Logprobs(l)],
                    Some(JobEvent::Done { reason, usage }) => {
                        let mut p = job.read_rest();
                        p.push(Piece::End(reason, usage));
                        p
                    }
                    None => {
                        let mut p = job.read_rest();
                        p.push(Piece::End(FinishReason::Cancelled, job.cut_short()));
                        p
                    }
                },
                _ => return None,
            };
            let next = if matches!(pieces.last(), Some(Piece::End(..))) {
                2
            } else {
                1
            };
            Some((futures_util::stream::iter(pieces), (job, next)))
        })
        .flatten()
    }
}

/// A derived model's chat: its system message where the conversation has none, and its messages before the
/// conversation's own (after the conversation's system message). A raw prompt is taken as given.
fn with_derived(prompt: Prompt, derived: Option<&crate::models::Derived>) -> Prompt {
    let (Some(d), Prompt::Chat(msgs)) = (derived, &prompt) else {
        return prompt;
    };
    let own_system = msgs.first().is_some_and(|m| m.role == "system");
    let mut out = Vec::with_capacity(msgs.len() + d.messages.len() + 1);
    let mut rest = msgs.iter();
    if own_system {
        out.extend(rest.next().cloned());
    } else if let Some(s) = &d.system {
        out.push(hearth_engine::ChatMessage::new("system", s));
    }
    out.extend(
        d.messages
            .iter()
            .map(|m| hearth_engine::ChatMessage::new(&m.role, &m.content)),
    );
    out.extend(rest.cloned());
    Prompt::Chat(out)
}

fn piece(o: Output) -> Piece {
    match o {
        Output::Text(t) => Piece::Text(t),
        Output::Call(c) => Piece::Call(c),
    }
}
