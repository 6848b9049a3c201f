//! Embedding requests: the same checks as a generation (model, key scope, limits, quota admission, ledger row),
//! then the model's encoder on a blocking thread. Embedding models stay loaded once used (tens of MiB).

use super::{Inference, InferenceError};
use crate::auth::Principal;
use crate::quota::RateHeaders;
use crate::sched::{JobEnd, SchedError};
use hearth_engine::embed::Embedder;
use hearth_engine::{FinishReason, Usage};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One input: text (tokenized with the model's tokenizer, special tokens added) or token ids as given.
pub enum EmbedInput {
    Text(String),
    Ids(Vec<u32>),
}

/// What a front end asks to embed.
pub struct EmbedRequest {
    pub model: String,
    /// The ledger's entry point (`embeddings`, `ollama_embed`).
    pub endpoint: &'static str,
    pub client_user: Option<String>,
    pub inputs: Vec<EmbedInput>,
    /// Cut an input longer than the model takes (Ollama's default); otherwise it is a 400.
    pub truncate: bool,
}

/// The vectors, in input order, with what the response reports.
pub struct Embedded {
    pub model: String,
    pub vectors: Vec<Vec<f32>>,
    pub prompt_tokens: usize,
    pub rate: RateHeaders,
    pub request_id: String,
    pub load_duration: Duration,
    pub total_duration: Duration,
}

/// Loaded embedding models by name.
#[derive(Default)]
pub struct Embedders(Mutex<HashMap<String, Arc<Embedder>>>);

impl Embedders {
    async fn get(
        &self,
        name: &str,
        path: std::path::PathBuf,
    ) -> Result<(Arc<Embedder>, Duration), InferenceError> {
        if let Some(e) = self.0.lock().ok().and_then(|m| m.get(name).cloned()) {
            return Ok((e, Duration::ZERO));
        }
        let started = Instant::now();
        let e = tokio::task::spawn_blocking(move || Embedder::load(&path))
            .await
            .map_err(|e| InferenceError::Internal(e.to_string()))?
            .map_err(|e| {
                InferenceError::Sched(SchedError::Load {
                    model: name.to_owned(),
                    message: e.to_string(),
                })
            })?;
        let e = Arc::new(e);
        if let Ok(mut m) = self.0.lock() {
            m.insert(name.to_owned(), e.clone());
        }
        Ok((e, started.elapsed()))
    }
}

impl Inference {
    /// Checks, admits and embeds; nothing is computed for a request refused on the way.
    pub async fn embed(
        &self,
        who: &Principal,
        req: EmbedRequest,
    ) -> Result<Embedded, InferenceError> {
        let started = Instant::now();
        let manifest = self.sched.resolve_model(&req.model)?;
        let model = manifest.name.clone();
        super::label::note(&model);
        if !who.may_use(&model) {
            return Err(InferenceError::KeyScope(model));
        }
        let store = self.sched.models();
        if !manifest.is_embedding() {
            return Err(InferenceError::NotForEmbeddings(model));
        }
        if req.inputs.is_empty() {
            return Err(InferenceError::Input {
                message: "'input' must hold at least one text".into(),
                param: "input".into(),
            });
        }
        let limits = self
            .quota
            .limits(&who.user_id, who.role, who.key_id.as_deref())
            .await?;
        self.quota.plan(&limits, &model, Some(0))?;
        let (embedder, load_duration) = self
            .embedders
            .get(&model, store.file_path(&manifest))
            .await?;
        let mut batch = Vec::with_capacity(req.inputs.len());
        for (i, input) in req.inputs.into_iter().enumerate() {
            let mut ids = match input {
                EmbedInput::Text(text) => embedder
                    .tokenize(&text)
                    .map_err(|e| InferenceError::Internal(e.to_string()))?,
                EmbedInput::Ids(ids) => {
                    let bad = ids.is_empty()
                        || ids.iter().any(|&id| id as usize >= embedder.vocab_size());
                    if bad {
                        return Err(InferenceError::Input {
                            message: format!(
                                "input[{i}]: token ids must be a non-empty list of ids below {}",
                                embedder.vocab_size()
                            ),
                            param: "input".into(),
                        });
                    }
                    ids
                }
            };
            if ids.len() > embedder.max_tokens() {
                if !req.truncate {
                    return Err(InferenceError::TooLong(format!(
                        "input[{i}] has {} tokens; model '{model}' takes at most {}",
                        ids.len(),
                        embedder.max_tokens()
                    )));
                }
                embedder.truncate(&mut ids);
            }
            batch.push(ids);
        }
        let prompt_tokens: usize = batch.iter().map(Vec::len).sum();
        let request_id = crate::auth::secrets::random_token(20)
            .map_err(|e| InferenceError::Internal(e.to_string()))?;
        let rate = self
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
                prompt_tokens,
                0,
            )
            .await?;
        let on_finish = self.ledger.on_finish(request_id.clone());
        // All inputs in one forward pass.
        let run = tokio::task::spawn_blocking(move || embedder.embed_batch(&batch)).await;
        let usage = Usage {
            prompt_tokens,
            ..Default::default()
        };
        let end = |error: Option<String>| JobEnd {
            reason: FinishReason::Stop,
            usage,
            device: Some("cpu".into()),
            queue_time: Some(Duration::ZERO),
            error,
            energy: None,
        };
        let vectors = match run {
            Ok(Ok(v)) => {
                on_finish(&end(None));
                v
            }
            Ok(Err(e)) => {
                on_finish(&end(Some(e.to_string())));
                return Err(InferenceError::Internal(e.to_string()));
            }
            Err(e) => {
                on_finish(&end(Some(e.to_string())));
                return Err(InferenceError::Internal(e.to_string()));
            }
        };
        Ok(Embedded {
            model,
            vectors,
            prompt_tokens,
            rate,
            request_id,
            load_duration,
            total_duration: started.elapsed(),
        })
    }
}
