//! When and where a request runs. Today: one worker thread per loaded model, each owning the engine's `Batch`
//! (continuous batching, so one model serves concurrent requests), loaded on first use and unloaded after
//! `keep_alive` idle. Inference never runs on an HTTP worker thread (a long step would stall every connection
//! on it): `inference` submits a `JobSpec`, gets an admission answer (errors come before any token), then
//! receives `JobEvent`s over a channel.
//! Dropping that receiver — a client that went away — cancels the sequence at the next step.

mod fair;
mod worker;

pub use fair::Owner;

use crate::models::{Manifest, ModelStore, ModelStoreError};
use hearth_engine::devices::{place, Footprint, Inventory, Placement};
use hearth_engine::{ChatMessage, EngineError, FinishReason, SamplingParams, Usage};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{mpsc, oneshot};

#[derive(Debug, Clone)]
pub enum Prompt {
    /// Rendered with the model's chat template.
    Chat(Vec<ChatMessage>),
    /// Tokenized as is.
    Text(String),
}

/// Holds an admitted job until the caller decides: quota admission needs the prompt's token count, which only
/// the worker knows, and must happen before any token is computed.
#[derive(Clone, Default, Debug)]
pub struct Gate(Arc<std::sync::atomic::AtomicU8>);

impl Gate {
    pub fn open(&self) {
        self.0.store(1, Ordering::SeqCst);
    }
    pub fn refuse(&self) {
        self.0.store(2, Ordering::SeqCst);
    }
    /// None while undecided, then whether it may run.
    fn decided(&self) -> Option<bool> {
        match self.0.load(Ordering::SeqCst) {
            0 => None,
            s => Some(s == 1),
        }
    }
}

/// Called exactly once when an admitted job ends — finished, stopped, cancelled or abandoned — with the real
/// counts; the request ledger hangs here so usage is recorded even when the client went away (invariant 3).
pub type OnFinish = Arc<dyn Fn(&JobEnd) + Send + Sync>;

/// How an admitted job ended, for the ledger.
#[derive(Debug, Clone)]
pub struct JobEnd {
    pub reason: FinishReason,
    pub usage: Usage,
    /// The device it ran on; None when it never left the queue.
    pub device: Option<String>,
    /// From acceptance by the worker to its first batch step; None when it never started.
    pub queue_time: Option<Duration>,
    /// Set when it ended by a failure rather than by finishing or being cancelled.
    pub error: Option<String>,
    /// Device energy attributed to it (None: no energy source on its device, or it never ran).
    pub energy: Option<crate::metrics::energy::Spent>,
}

/// Which class a job waits in: interactive API requests are served before batch-job lines, and batch lines never
/// take a model's last free slot (so an interactive request finds one at once).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Priority {
    #[default]
    Interactive,
    Batch,
}

#[derive(Clone)]
pub struct JobSpec {
    pub prompt: Prompt,
    /// None: until the context is full.
    pub max_tokens: Option<usize>,
    pub sampling: SamplingParams,
    pub stop: Vec<String>,
    /// Constrain the output to one JSON object.
    pub json: bool,
    /// Constrain the output to a value of this schema (structured outputs).
    pub schema: Option<std::sync::Arc<hearth_engine::schema::Grammar>>,
    /// Tools the chat offers (a chat prompt only): rendered into the prompt, a forced call constrained.
    pub tools: Option<std::sync::Arc<hearth_engine::tools::ToolUse>>,
    /// The template's thinking switch (a chat prompt only): None = the template's default.
    pub think: Option<bool>,
    /// Speculative decoding where the model has it configured (the `speculative: false` extension opts out).
    pub speculative: bool,
    /// Each generated token's log-probability with this many alternatives; None: none.
    pub logprobs: Option<usize>,
    /// This job's context window, bounded by the batch's (None: the batch's): prompt + output fit in it.
    pub context: Option<usize>,
    /// How long the model stays loaded after this request (None: the configured default).
    pub keep_alive: Option<Duration>,
    pub on_finish: Option<OnFinish>,
    /// If set, the job waits for `Gate::open` before it runs.
    pub gate: Option<Gate>,
    /// Whose job it is: the waiting queue is fair between owners, by weight.
    pub owner: Option<Owner>,
    pub priority: Priority,
}

#[derive(Debug, Clone, PartialEq)]
pub enum JobEvent {
    /// Released text (never splits a UTF-8 character or a pending stop string).
    Text(String),
    /// The log-probabilities of the tokens the next `Text` starts (or of the last ones, before `Done`).
    Logprobs(Vec<hearth_engine::logprobs::TokenLogprob>),
    Done {
        reason: FinishReason,
        usage: Usage,
    },
}

/// A job the worker accepted: its prompt was tokenized and fits, and its events will follow.
pub struct Admitted {
    pub prompt_tokens: usize,
    pub max_tokens: usize,
    /// Time spent loading the model for this request (zero when it was loaded).
    pub load_duration: Duration,
    pub events: mpsc::UnboundedReceiver<JobEvent>,
    /// Reads tool calls out of the output, where the job offered tools (the model's format).
    pub calls: Option<hearth_engine::tools::CallReader>,
    /// Splits a thinking model's thoughts from its answer.
    pub thoughts: Option<hearth_engine::think::ThoughtSplitter>,
}

#[derive(Debug, thiserror::Error)]
pub enum SchedError {
    #[error("model '{0}' not found")]
    ModelNotFound(String),
    #[error("model '{model}' failed to load: {message}")]
    Load { model: String, message: String },
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("model '{model}' has {depth} requests waiting; try again later")]
    QueueFull { model: String, depth: usize },
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error("model store: {0}")]
    Store(String),
}

#[derive(Debug, Clone)]
pub struct SchedConfig {
    pub threads: usize,
    pub max_sequences: usize,
    pub context: usize,
    pub queue_depth: usize,
    pub keep_alive: Duration,
    /// Per device, the memory loaded models may take together (None: the device's memory).
    pub memory_budget: Option<u64>,
    /// Per-model device pins and keep_alive (`[models.NAME]`).
    pub models: std::collections::BTreeMap<String, crate::config::ModelConfig>,
    /// What placement chooses from (detected once at start).
    pub inventory: Arc<Inventory>,
    /// Serving series and the energy meter; workers observe every step.
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// A loaded model, as `/api/ps` shows it.
#[derive(Debug, Clone)]
pub struct LoadedInfo {
    pub name: String,
    pub size_bytes: u64,
    pub context: usize,
    /// When it will be unloaded if nothing else arrives (None: busy, or kept forever).
    pub expires_at: Option<SystemTime>,
    /// Sequences in its batch, and requests waiting for a slot.
    pub running: usize,
    pub waiting: usize,
}

/// Where an imported model goes — its `[models.NAME] device` pin or automatic placement (`engine::devices`) —
/// and what it needs there; shared by the scheduler and `hearth doctor` so both say the same.
pub fn plan_placement(
    models: &ModelStore,
    m: &Manifest,
    context: usize,
    slots: usize,
    config: Option<&crate::config::ModelConfig>,
    inventory: &Inventory,
) -> Result<(Footprint, Placement), String> {
    let fp = Footprint::of_gguf(&models.file_path(m), context, slots).map_err(|e| e.to_string())?;
    let pin = config.map_or(hearth_engine::devices::Pin::Auto, |c| c.pin());
    place(&fp, &pin, inventory)
        .map(|p| (fp, p))
        .map_err(|e| e.to_string())
}

/// An idle model's unload instant as wall-clock time (None when already past).
fn wall_clock(at: Instant) -> Option<SystemTime> {
    SystemTime::now().checked_add(at.checked_duration_since(Instant::now())?)
}

/// An imported model as `/admin/models` shows it: loaded or not, and where it runs (or would) and why.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ModelStatus {
    pub name: String,
    pub architecture: String,
    pub file_type: Option<String>,
    pub size_bytes: u64,
    pub parameters: u64,
    /// `loaded`, `loading` or `unloaded`.
    pub state: &'static str,
    pub device: Option<String>,
    pub backend: Option<&'static str>,
    /// Why that device, or why it cannot be placed.
    pub placement: String,
    /// Unix seconds when an idle loaded model unloads (None: busy, kept forever, or not loaded).
    pub expires_at: Option<u64>,
    pub preload: bool,
    /// Requests in the batch now, and waiting for a slot.
    pub running: usize,
    pub waiting: usize,
    /// Joules per token by energy source over the ledger's raw rows (filled in by the admin API).
    pub energy: Vec<crate::store::EnergyFigure>,
    /// Speculative decoding as configured, with counters while loaded.
    pub speculation: Option<SpeculationStatus>,
}

/// A model's speculative decoding in `/admin/models`.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct SpeculationStatus {
    /// `draft` or `prompt_lookup`.
    pub mode: &'static str,
    /// The draft model (draft mode).
    pub draft: Option<String>,
    /// Since the model loaded: tokens proposed, and kept by the model.
    pub drafted_tokens: u64,
    pub accepted_tokens: u64,
    /// accepted / drafted; None before any proposal.
    pub acceptance_rate: Option<f64>,
}

enum Msg {
    Job {
        spec: Box<JobSpec>,
        reply: oneshot::Sender<Result<Admitted, SchedError>>,
    },
    /// Answer once the model is loaded (Ollama's empty-prompt load).
    Loaded(oneshot::Sender<Result<(), SchedError>>),
    KeepAlive(Duration),
    Shutdown,
}

struct WorkerHandle {
    generation: u64,
    tx: std::sync::mpsc::Sender<Msg>,
    status: Arc<Mutex<worker::Status>>,
    device: String,
    /// Weights + full KV cache, what it counts against its device's memory budget.
    footprint: u64,
    /// Last job sent to it: the least recently used idle model is unloaded first.
    last_used: Instant,
}

pub struct Scheduler {
    models: ModelStore,
    cfg: SchedConfig,
    workers: Arc<Mutex<HashMap<String, WorkerHandle>>>,
    generation: AtomicU64,
    stopping: std::sync::atomic::AtomicBool,
}

impl Scheduler {
    pub fn new(models: ModelStore, cfg: SchedConfig) -> Arc<Scheduler> {
        Arc::new(Scheduler {
            models,
            cfg,
            workers: Arc::new(Mutex::new(HashMap::new())),
            generation: AtomicU64::new(0),
            stopping: false.into(),
        })
    }

    pub fn models(&self) -> &ModelStore {
        &self.models
    }

    /// Resolves a requested model name to an imported one (`name:latest` is accepted for Ollama clients).
    pub fn resolve(&self, name: &str) -> Result<String, SchedError> {
        self.resolve_model(name).map(|m| m.name)
    }

    /// `resolve`, with the model's manifest (read once for the request).
    pub fn resolve_model(&self, name: &str) -> Result<crate::models::Manifest, SchedError> {
        match self.models.lookup(name) {
            Ok(m) => Ok(m),
            Err(ModelStoreError::NotFound(_)) => Err(SchedError::ModelNotFound(name.to_owned())),
            Err(e) => Err(SchedError::Store(e.to_string())),
        }
    }

    /// Submits a job; resolves once the worker admitted it (or refused it, before any token).
    pub async fn submit(&self, model: &str, spec: JobSpec) -> Result<Admitted, SchedError> {
        // A worker may be exiting (idle unload) just as we send: then the job comes back unanswered and we
        // start a fresh worker once.
        for _ in 0..2 {
            let (reply, rx) = oneshot::channel();
            self.send(
                model,
                Msg::Job {
                    spec: Box::new(spec.clone()),
                    reply,
                },
            )?;
            if let Ok(answer) = rx.await {
                return answer;
            }
        }
        Err(SchedError::Load {
            model: model.to_owned(),
            message: "the model worker stopped unexpectedly".into(),
        })
    }

    /// Loads a model (if needed) and waits until it is ready.
    pub async fn load(&self, model: &str) -> Result<(), SchedError> {
        for _ in 0..2 {
            let (reply, rx) = oneshot::channel();
            self.send(model, Msg::Loaded(reply))?;
            if let Ok(answer) = rx.await {
                return answer;
            }
        }
        Err(SchedError::Load {
            model: model.to_owned(),
            message: "the model worker stopped unexpectedly".into(),
        })
    }

    /// Unloads a model once its running requests finish (keep_alive = 0). False when it was not loaded.
    pub fn unload(&self, model: &str) -> bool {
        let Ok(w) = self.workers.lock() else {
            return false;
        };
        w.get(model)
            .is_some_and(|h| h.tx.send(Msg::KeepAlive(Duration::ZERO)).is_ok())
    }

    pub fn loaded(&self) -> Vec<LoadedInfo> {
        let Ok(w) = self.workers.lock() else {
            return Vec::new();
        };
        let mut out: Vec<_> = w
            .iter()
            .filter_map(|(name, h)| {
                let s = h.status.lock().ok()?;
                s.loaded.then(|| LoadedInfo {
                    name: name.clone(),
                    size_bytes: s.size_bytes,
                    context: s.context,
                    expires_at: s.idle_until.and_then(wall_clock),
                    running: s.running,
                    waiting: s.waiting,
                })
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Refuses new work and stops every worker (running sequences end as cancelled).
    pub fn shutdown(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        if let Ok(w) = self.workers.lock() {
            for h in w.values() {
                let _ = h.tx.send(Msg::Shutdown);
            }
        }
    }

    /// Unloads least recently used idle models on `device` until `need` more bytes fit its budget. Busy models
    /// are never cut short: if they alone exceed it, the load goes ahead and says so.
    fn make_room(&self, workers: &mut HashMap<String, WorkerHandle>, device: &str, need: u64) {
        let inv = &self.cfg.inventory;
        let device_memory = match inv.gpus.iter().find(|g| g.id == device) {
            Some(g) => g.memory_total_bytes,
            None => inv.cpu.memory_total_bytes,
        };
        let budget = self.cfg.memory_budget.unwrap_or(device_memory);
        let mut used: u64 = workers
            .values()
            .filter(|h| h.device == device)
            .map(|h| h.footprint)
            .sum();
        let mut idle: Vec<(&String, &WorkerHandle)> = workers
            .iter()
            .filter(|(_, h)| h.device == device)
            .filter(|(_, h)| {
                h.status
                    .lock()
                    .is_ok_and(|s| s.running == 0 && s.waiting == 0)
            })
            .collect();
        idle.sort_by_key(|(_, h)| h.last_used);
        let mut evicted = Vec::new();
        for (name, h) in idle {
            if used + need <= budget {
                break;
            }
            if h.tx.send(Msg::KeepAlive(Duration::ZERO)).is_ok() {
                tracing::info!(model = %name, device, "unloading the least recently used model to make room");
                used -= h.footprint;
                evicted.push(name.clone());
            }
        }
        // Gone from the registry at once, so its memory is not counted twice while its thread exits.
        for name in evicted {
            workers.remove(&name);
        }
        if used + need > budget {
            tracing::warn!(
                device,
                need,
                used,
                budget,
                "over the memory budget: the models in use do not fit together"
            );
        }
    }

    /// Where a model goes: its `[models.NAME] device` pin or automatic placement (`engine::devices`).
    fn place(&self, m: &Manifest) -> Result<(Footprint, Placement), String> {
        plan_placement(
            &self.models,
            m,
            self.cfg.context,
            self.cfg.max_sequences,
            self.cfg.models.get(&m.name),
            &self.cfg.inventory,
        )
    }

    /// Every imported model with its state and placement (planned when not loaded).
    pub fn status(&self) -> Result<Vec<ModelStatus>, SchedError> {
        let list = self
            .models
            .list()
            .map_err(|e| SchedError::Store(e.to_string()))?;
        let workers = self
            .workers
            .lock()
            .map_err(|_| SchedError::Store("worker registry poisoned".into()))?;
        Ok(list
            .iter()
            .map(|m| {
                let worker = workers.get(&m.name).and_then(|h| {
                    h.status.lock().ok().map(|s| {
                        (
                            (s.loaded, s.placement.clone(), s.idle_until),
                            (s.running, s.waiting),
                            s.speculation,
                        )
                    })
                });
                let load = worker.as_ref().map_or((0, 0), |w| w.1);
                let stats = worker.as_ref().and_then(|w| w.2).map(|(_, s)| s);
                let mcfg = self.cfg.models.get(&m.name);
                let speculation = mcfg
                    .and_then(|c| match (&c.draft, c.prompt_lookup) {
                        (Some(d), _) => Some(("draft", Some(d.clone()))),
                        (None, true) => Some(("prompt_lookup", None)),
                        (None, false) => None,
                    })
                    .map(|(mode, draft)| {
                        let s = stats.unwrap_or_default();
                        SpeculationStatus {
                            mode,
                            draft,
                            drafted_tokens: s.drafted,
                            accepted_tokens: s.accepted,
                            acceptance_rate: s.acceptance(),
                        }
                    });
                let (state, placed, idle_until) = match worker.map(|w| w.0) {
                    Some((true, p, idle)) => ("loaded", p.ok_or_else(String::new), idle),
                    Some((false, p, _)) => ("loading", p.ok_or_else(String::new), None),
                    None => ("unloaded", self.place(m).map(|(_, p)| p), None),
                };
                let expires_at = idle_until
                    .and_then(wall_clock)
                    .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                    .map(|d| d.as_secs());
                let (device, backend, placement) = match placed {
                    Ok(p) => (Some(p.device), Some(p.backend), p.reason),
                    Err(e) => (None, None, e),
                };
                ModelStatus {
                    name: m.name.clone(),
                    architecture: m.architecture.clone(),
                    file_type: m.file_type.clone(),
                    size_bytes: m.size_bytes,
                    parameters: m.parameters,
                    state,
                    device,
                    backend,
                    placement,
                    expires_at,
                    preload: self.cfg.models.get(&m.name).is_some_and(|c| c.preload),
                    running: load.0,
                    waiting: load.1,
                    energy: Vec::new(),
                    speculation,
                }
            })
            .collect())
    }

    fn send(&self, model: &str, msg: Msg) -> Result<(), SchedError> {
        if self.stopping.load(Ordering::SeqCst) {
            return Err(SchedError::ShuttingDown);
        }
        let mut workers = self
            .workers
            .lock()
            .map_err(|_| SchedError::Store("worker registry poisoned".into()))?;
        let msg = match workers.get_mut(model) {
            Some(h) => match h.tx.send(msg) {
                Ok(()) => {
                    h.last_used = Instant::now();
                    return Ok(());
                }
                // The worker exited: start another below.
                Err(std::sync::mpsc::SendError(msg)) => msg,
            },
            None => msg,
        };
        let manifest = self.models.get(model).map_err(|e| match e {
            ModelStoreError::NotFound(_) => SchedError::ModelNotFound(model.to_owned()),
            e => SchedError::Store(e.to_string()),
        })?;
        let path = self.models.file_path(&manifest);
        let draft = match self.cfg.models.get(model).and_then(|m| m.draft.clone()) {
            None => None,
            Some(d) => {
                let dm = self.models.get(&d).map_err(|e| SchedError::Load {
                    model: model.to_owned(),
                    message: format!("its draft model '{d}': {e}"),
                })?;
                Some(self.models.file_path(&dm))
            }
        };
        let (footprint, placement) = self.place(&manifest).map_err(|message| SchedError::Load {
            model: model.to_owned(),
            message,
        })?;
        self.make_room(&mut workers, &placement.device, footprint.total());
        tracing::info!(model, device = %placement.device, backend = placement.backend,
            reason = %placement.reason, "model placed");
        let generation = self.generation.fetch_add(1, Ordering::SeqCst);
        let (tx, rx) = std::sync::mpsc::channel();
        let status = Arc::new(Mutex::new(worker::Status {
            size_bytes: manifest.size_bytes,
            placement: Some(placement.clone()),
            ..Default::default()
        }));
        let _ = tx.send(msg);
        let mut cfg = self.cfg.clone();
        if let Some(k) = self.cfg.models.get(model).and_then(|m| m.keep_alive) {
            cfg.keep_alive = k;
        }
        let device = placement.device.clone();
        let w = worker::Worker {
            model: model.to_owned(),
            device: placement.device,
            path,
            draft,
            template: manifest.derived.as_ref().and_then(|d| d.template.clone()),
            cfg,
            rx,
            status: status.clone(),
        };
        let registry = self.workers.clone();
        let name = model.to_owned();
        std::thread::Builder::new()
            .name(format!("model-{model}"))
            .spawn(move || {
                w.run();
                if let Ok(mut r) = registry.lock() {
                    if r.get(&name).is_some_and(|h| h.generation == generation) {
                        r.remove(&name);
                    }
                }
            })
            .map_err(|e| SchedError::Load {
                model: model.to_owned(),
                message: format!("cannot start the worker thread: {e}"),
            })?;
        workers.insert(
            model.to_owned(),
            WorkerHandle {
                generation,
                tx,
                status,
                device,
                footprint: footprint.total(),
                last_used: Instant::now(),
            },
        );
        Ok(())
    }
}
