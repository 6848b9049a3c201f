//! One model's worker thread: loads it, admits jobs into its `Batch`, steps the batch while anything runs,
//! forwards events, cancels sequences whose receiver is gone, and unloads after `keep_alive` idle.

use super::fair::{FairQueue, Tag};
use super::{
    Admitted, Gate, JobEnd, JobEvent, JobSpec, Msg, OnFinish, Priority, Prompt, SchedConfig,
    SchedError,
};
use crate::metrics::energy::JobKey;
use hearth_engine::{
    Batch, EngineError, Event, FinishReason, GenerateRequest, LoadOptions, LoadedModel, SeqId,
    Speculation, Usage,
};
use prometheus::{Histogram, IntCounter};
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

#[derive(Debug, Default)]
pub(super) struct Status {
    pub loaded: bool,
    pub size_bytes: u64,
    pub context: usize,
    /// When the idle model will be unloaded; None while busy or when kept forever.
    pub idle_until: Option<Instant>,
    pub placement: Option<hearth_engine::devices::Placement>,
    /// Sequences in the batch, and jobs waiting for a slot (incl. those still before their quota gate).
    pub running: usize,
    pub waiting: usize,
    /// Speculative decoding: its mode and counters since the model loaded.
    pub speculation: Option<(hearth_engine::SpecMode, hearth_engine::SpecStats)>,
}

pub(super) struct Worker {
    pub model: String,
    /// Where it runs ('cpu'); the ledger records it per request.
    pub device: String,
    pub path: PathBuf,
    /// The draft model's file, when `[models.NAME] draft` is set.
    pub draft: Option<PathBuf>,
    /// A derived model's own chat template (in place of the file's).
    pub template: Option<String>,
    pub cfg: SchedConfig,
    pub rx: Receiver<Msg>,
    pub status: Arc<Mutex<Status>>,
}

struct Waiting {
    req: GenerateRequest,
    tx: mpsc::UnboundedSender<JobEvent>,
    on_finish: Option<OnFinish>,
    gate: Option<Gate>,
    queued: Instant,
    tag: Tag,
    /// The `user` label of its metrics.
    user: String,
    priority: Priority,
}

struct Active {
    tx: mpsc::UnboundedSender<JobEvent>,
    on_finish: Option<OnFinish>,
    queue_time: Duration,
    queued: Instant,
    last_token: Option<Instant>,
    user: String,
    /// Its share of the device's energy (None: the device has no energy source).
    energy: Option<JobKey>,
}

/// This model's series, resolved once (label lookups stay off the per-token path).
struct Observers {
    ttft: Histogram,
    itl: Histogram,
    e2e: Histogram,
    queue: Histogram,
    running: prometheus::IntGauge,
    waiting: prometheus::IntGauge,
    batch_size: prometheus::IntGauge,
    loaded: prometheus::IntGauge,
    spec_drafted: IntCounter,
    spec_accepted: IntCounter,
}

impl Observers {
    fn new(m: &crate::metrics::Metrics, model: &str, device: &str) -> Observers {
        let s = &m.serving;
        Observers {
            ttft: s.time_to_first_token.with_label_values(&[model]),
            itl: s.inter_token_latency.with_label_values(&[model]),
            e2e: s.e2e_latency.with_label_values(&[model]),
            queue: s.queue_time.with_label_values(&[model]),
            running: s.running.with_label_values(&[model, device]),
            waiting: s.waiting.with_label_values(&[model]),
            batch_size: s.batch_size.with_label_values(&[model]),
            loaded: s.model_loaded.with_label_values(&[model, device]),
            spec_drafted: s.spec_draft_tokens.with_label_values(&[model]),
            spec_accepted: s.spec_accepted_tokens.with_label_values(&[model]),
        }
    }
}

/// Per-user token counters of this model.
fn token_counters(
    m: &crate::metrics::Metrics,
    model: &str,
    user: &str,
) -> (IntCounter, IntCounter) {
    (
        m.serving.prompt_tokens.with_label_values(&[model, user]),
        m.serving
            .generation_tokens
            .with_label_values(&[model, user]),
    )
}

/// A job that never left the queue: nothing was computed, nothing ran on a device.
fn unstarted(on_finish: &Option<OnFinish>) {
    if let Some(f) = on_finish {
        f(&JobEnd {
            reason: FinishReason::Cancelled,
            usage: Usage::default(),
            device: None,
            queue_time: None,
            error: None,
            energy: None,
        });
    }
}

struct Running<'a> {
    lm: LoadedModel,
    batch: Batch,
    waiting: VecDeque<Waiting>,
    fair: FairQueue,
    active: HashMap<SeqId, Active>,
    keep_alive: Duration,
    cfg: &'a SchedConfig,
    model: &'a str,
    device: &'a str,
    load_duration: Duration,
    first_job: bool,
    obs: Observers,
    /// Speculation counters as of the last step (the metrics get the difference).
    spec_seen: hearth_engine::SpecStats,
    status: Arc<Mutex<Status>>,
}

impl Worker {
    /// Loads the model, serves jobs until idle past keep_alive, an unload or shutdown, then unloads.
    pub fn run(self) {
        let started = Instant::now();
        let (lm, spec) = match self.load() {
            Ok(loaded) => loaded,
            Err(e) => {
                tracing::error!(model = %self.model, error = %e, "model failed to load");
                self.refuse_pending(&e);
                return;
            }
        };
        let mut r = self.start_running(lm, spec, started);
        self.serve(&mut r);
        self.stop_running(r);
    }

    /// The model with its `[models.NAME]` load options and speculation.
    fn load(&self) -> Result<(LoadedModel, Option<Speculation>), String> {
        let mcfg = self.cfg.models.get(&self.model);
        let opts = LoadOptions {
            head: mcfg.and_then(|m| m.head_type()),
            dtype: mcfg.and_then(|m| m.dtype_type()),
            ..LoadOptions::default()
        };
        let mut lm =
            LoadedModel::load(&self.path, &opts, self.cfg.threads).map_err(|e| e.to_string())?;
        if let Some(t) = &self.template {
            lm.set_template(t)
                .map_err(|e| format!("its chat template: {e}"))?;
        }
        let spec = self.speculation(&lm)?;
        Ok((lm, spec))
    }

    /// Answers everything already sent with the load error; later senders find the channel closed and retry.
    fn refuse_pending(&self, e: &str) {
        let err = || SchedError::Load {
            model: self.model.clone(),
            message: e.to_owned(),
        };
        while let Ok(msg) = self.rx.try_recv() {
            match msg {
                Msg::Job { reply, .. } => {
                    let _ = reply.send(Err(err()));
                }
                Msg::Loaded(reply) => {
                    let _ = reply.send(Err(err()));
                }
                Msg::KeepAlive(_) | Msg::Shutdown => {}
            }
        }
    }

    /// The loaded model's batch and serving state, with its load published (metrics, status, log).
    fn start_running(
        &self,
        lm: LoadedModel,
        spec: Option<Speculation>,
        started: Instant,
    ) -> Running<'_> {
        let mut batch = lm.new_batch(self.cfg.max_sequences, self.cfg.context);
        batch.set_speculation(spec);
        let obs = Observers::new(&self.cfg.metrics, &self.model, &self.device);
        self.cfg
            .metrics
            .serving
            .model_load
            .with_label_values(&[&self.model])
            .observe(started.elapsed().as_secs_f64());
        obs.loaded.set(1);
        tracing::info!(model = %self.model, seconds = started.elapsed().as_secs_f64(), context = batch.context(),
            slots = batch.n_slots(), "model loaded");
        if let Ok(mut s) = self.status.lock() {
            s.loaded = true;
            s.context = batch.context();
            s.speculation = batch
                .speculation()
                .map(|mode| (mode, hearth_engine::SpecStats::default()));
        }
        Running {
            lm,
            batch,
            waiting: VecDeque::new(),
            fair: FairQueue::default(),
            active: HashMap::new(),
            keep_alive: self.cfg.keep_alive,
            cfg: &self.cfg,
            model: &self.model,
            device: &self.device,
            load_duration: started.elapsed(),
            first_job: true,
            obs,
            spec_seen: Default::default(),
            status: self.status.clone(),
        }
    }

    /// The serving loop: wait for work, take every message, admit what may start, cancel what was abandoned,
    /// step the batch and forward its events.
    fn serve(&self, r: &mut Running<'_>) {
        let mut idle_since = Instant::now();
        loop {
            if !self.wait_for_work(r, idle_since) {
                return;
            }
            while let Ok(msg) = self.rx.try_recv() {
                if !r.handle(msg) {
                    return;
                }
            }
            r.admit_waiting();
            r.cancel_abandoned();
            // Before the step (a step can be long: prompts) and after it (a worker about to wait idle must not
            // show the sequences it just finished).
            self.publish_load(r);
            if !r.batch.is_empty() {
                let events = r.batch.step();
                r.account_step();
                for ev in events {
                    r.forward(ev);
                }
                idle_since = Instant::now();
            }
            self.publish_load(r);
        }
    }

    /// With nothing running: poll briefly while jobs only await their gate, else wait for a message until
    /// keep_alive runs out. False = stop the worker.
    fn wait_for_work(&self, r: &mut Running<'_>, idle_since: Instant) -> bool {
        if !r.active.is_empty() {
            return true;
        }
        if !r.waiting.is_empty() {
            return match self.rx.recv_timeout(Duration::from_millis(1)) {
                Ok(msg) => r.handle(msg),
                Err(_) => true,
            };
        }
        let wait = r.keep_alive.saturating_sub(idle_since.elapsed());
        self.set_idle(
            Instant::now()
                .checked_add(wait)
                .filter(|_| r.keep_alive != Duration::MAX),
        );
        let go_on = match self.rx.recv_timeout(wait) {
            Ok(msg) => r.handle(msg),
            Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => return false,
        };
        self.set_idle(None);
        go_on
    }

    /// Ends what still runs and publishes the unload.
    fn stop_running(&self, mut r: Running<'_>) {
        r.cancel_all();
        if let Ok(mut s) = self.status.lock() {
            s.loaded = false;
            s.running = 0;
            s.waiting = 0;
            s.speculation = None;
        }
        r.obs.loaded.set(0);
        r.obs.running.set(0);
        r.obs.waiting.set(0);
        r.obs.batch_size.set(0);
        tracing::info!(model = %self.model, "model unloaded");
    }

    /// Speculative decoding as `[models.NAME]` asks: a draft model (loaded here; it must share the tokenizer), or
    /// prompt lookup.
    fn speculation(&self, lm: &LoadedModel) -> Result<Option<Speculation>, String> {
        let mcfg = self.cfg.models.get(&self.model);
        if let Some(path) = &self.draft {
            let name = mcfg.and_then(|m| m.draft.as_deref()).unwrap_or("?");
            // The draft runs on the target's threads (`Batch` drives both); its own pool stays idle.
            let draft = LoadedModel::load(path, &LoadOptions::default(), 1)
                .map_err(|e| format!("its draft model '{name}': {e}"))?;
            let spec = Speculation::draft(lm, &draft, self.cfg.max_sequences)
                .map_err(|e| format!("its draft model '{name}': {e}"))?;
            tracing::info!(model = %self.model, draft = name, "speculative decoding with a draft model");
            return Ok(Some(spec));
        }
        if mcfg.is_some_and(|m| m.prompt_lookup) {
            tracing::info!(model = %self.model, "speculative decoding by prompt lookup");
            return Ok(Some(Speculation::prompt_lookup()));
        }
        Ok(None)
    }

    fn publish_load(&self, r: &Running<'_>) {
        if let Ok(mut s) = self.status.lock() {
            s.running = r.active.len();
            s.waiting = r.waiting.len();
        }
        r.obs.running.set(r.active.len() as i64);
        r.obs.waiting.set(r.waiting.len() as i64);
    }

    fn set_idle(&self, until: Option<Instant>) {
        if let Ok(mut s) = self.status.lock() {
            s.idle_until = until;
        }
    }
}

impl Running<'_> {
    /// Handles one message; false = stop the worker.
    fn handle(&mut self, msg: Msg) -> bool {
        match msg {
            Msg::Job { spec, reply } => {
                if let Some(k) = spec.keep_alive {
                    self.keep_alive = k;
                }
                // A caller that gave up drops the answer, and with it the receiver: the job is then skipped.
                let _ = reply.send(self.admit(*spec));
                true
            }
            Msg::Loaded(reply) => {
                let _ = reply.send(Ok(()));
                true
            }
            Msg::KeepAlive(k) => {
                self.keep_alive = k;
                true
            }
            Msg::Shutdown => false,
        }
    }

    fn admit(&mut self, spec: JobSpec) -> Result<Admitted, SchedError> {
        let (prompt, schema, calls, thoughts) = match &spec.prompt {
            Prompt::Chat(messages) => {
                let p = self
                    .lm
                    .prompt_for(messages, spec.tools.as_deref(), spec.think)?;
                // A forced call's grammar; the front ends refuse a response format beside tools.
                let schema = p.forced.map(Arc::new).or(spec.schema);
                (p.ids, schema, p.calls, p.thoughts)
            }
            Prompt::Text(text) => (self.lm.raw_prompt(text)?, spec.schema, None, None),
        };
        let window = spec
            .context
            .map_or(self.batch.context(), |n| n.min(self.batch.context()));
        if spec.context.is_some() && prompt.len() >= window {
            return Err(SchedError::Engine(EngineError::ContextOverflow {
                prompt_tokens: prompt.len(),
                max_tokens: 1,
                context: window,
            }));
        }
        let room = window.saturating_sub(prompt.len());
        // A window of its own (num_ctx) bounds the output as well: it ends at the window, as in Ollama.
        let max_tokens = match (spec.max_tokens, spec.context) {
            (Some(n), Some(_)) => n.min(room),
            (Some(n), None) => n,
            (None, _) => room.max(1),
        };
        let req = GenerateRequest {
            prompt,
            max_tokens,
            sampling: spec.sampling,
            stop: spec.stop,
            ignore_eos: false,
            json_object: spec.json,
            schema,
            no_speculation: !spec.speculative,
            logprobs: spec.logprobs,
        };
        self.batch.validate(&req)?;
        // Every accepted job not yet in the batch waits, whether for a slot or for its quota gate: at most the
        // free slots plus `queue_depth` of them, whatever the arrival pattern (a burst arrives while every slot
        // is still free, its jobs all waiting for their gates).
        let free = self.batch.n_slots() - self.batch.active();
        if self.waiting.len() >= free + self.cfg.queue_depth {
            return Err(SchedError::QueueFull {
                model: self.model.to_owned(),
                depth: self.waiting.len(),
            });
        }
        let (tx, events) = mpsc::unbounded_channel();
        let prompt_tokens = req.prompt.len();
        let tag = self
            .fair
            .tag(spec.owner.as_ref(), prompt_tokens + req.max_tokens);
        self.waiting.push_back(Waiting {
            req,
            tx,
            on_finish: spec.on_finish,
            gate: spec.gate,
            queued: Instant::now(),
            tag,
            user: spec.owner.map(|o| o.name).unwrap_or_default(),
            priority: spec.priority,
        });
        let load_duration = if std::mem::take(&mut self.first_job) {
            self.load_duration
        } else {
            Duration::ZERO
        };
        Ok(Admitted {
            prompt_tokens,
            max_tokens,
            load_duration,
            events,
            calls,
            thoughts,
        })
    }

    /// Moves waiting jobs whose gate is open into free slots, fairly between users (`fair`); drops refused or
    /// abandoned ones.
    fn admit_waiting(&mut self) {
        // Nothing was computed for these: they end with zero tokens (a refused one was never admitted and has
        // no ledger row to complete; the callback is then a no-op).
        self.waiting.retain(|w| {
            let keep = !w.tx.is_closed() && w.gate.as_ref().and_then(Gate::decided) != Some(false);
            if !keep {
                unstarted(&w.on_finish);
            }
            keep
        });
        while self.batch.has_free_slot() {
            // Batch lines leave the last free slot to interactive requests, so one can start at once (a model
            // with one or two slots lets batch lines use them all rather than idle half of them).
            let free = self.batch.n_slots() - self.batch.active();
            let batch_may_start = free >= 2 || self.batch.n_slots() <= 2;
            let next = self
                .waiting
                .iter()
                .enumerate()
                .filter(|(_, w)| w.gate.as_ref().is_none_or(|g| g.decided() == Some(true)))
                .filter(|(_, w)| w.priority == Priority::Interactive || batch_may_start)
                .reduce(|a, b| {
                    // Interactive before batch; within a class, the fair queue's order.
                    let (a_batch, b_batch) = (
                        a.1.priority == Priority::Batch,
                        b.1.priority == Priority::Batch,
                    );
                    let b_first =
                        (a_batch && !b_batch) || (a_batch == b_batch && b.1.tag.before(&a.1.tag));
                    if b_first {
                        b
                    } else {
                        a
                    }
                })
                .map(|(i, _)| i);
            let Some(w) = next.and_then(|i| self.waiting.remove(i)) else {
                break;
            };
            self.fair.dispatched(&w.tag);
            let queue_time = w.queued.elapsed();
            match self.batch.add(w.req) {
                Ok(id) => {
                    self.obs.queue.observe(queue_time.as_secs_f64());
                    let energy = self
                        .cfg
                        .metrics
                        .energy
                        .as_ref()
                        .and_then(|m| m.join(self.device));
                    self.active.insert(
                        id,
                        Active {
                            tx: w.tx,
                            on_finish: w.on_finish,
                            queue_time,
                            queued: w.queued,
                            last_token: None,
                            user: w.user,
                            energy,
                        },
                    );
                }
                Err(e) => {
                    // Validated at admission; only a changed batch could refuse it now.
                    tracing::error!(model = %self.model, error = %e, "admitted request refused by the batch");
                    if let Some(f) = &w.on_finish {
                        f(&JobEnd {
                            reason: FinishReason::Cancelled,
                            usage: Usage::default(),
                            device: Some(self.device.to_owned()),
                            queue_time: Some(queue_time),
                            error: Some(e.to_string()),
                            energy: None,
                        });
                    }
                    let _ = w.tx.send(JobEvent::Done {
                        reason: FinishReason::Cancelled,
                        usage: Usage::default(),
                    });
                }
            }
        }
    }

    fn cancel_abandoned(&mut self) {
        let gone: Vec<SeqId> = self
            .active
            .iter()
            .filter(|(_, a)| a.tx.is_closed())
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            tracing::debug!(model = %self.model, "client went away; sequence cancelled");
            if let Some(ev) = self.batch.cancel(id) {
                self.forward(ev);
            }
        }
    }

    /// After a forward pass: the batch size, and each sequence's tokens for the energy shares.
    fn account_step(&mut self) {
        if let Some(now) = self.batch.spec_stats() {
            let before = std::mem::replace(&mut self.spec_seen, now);
            self.obs
                .spec_drafted
                .inc_by(now.drafted.saturating_sub(before.drafted));
            self.obs
                .spec_accepted
                .inc_by(now.accepted.saturating_sub(before.accepted));
            if let Ok(mut s) = self.status.lock() {
                s.speculation = self.batch.speculation().map(|mode| (mode, now));
            }
        }
        let work = self.batch.last_step_work();
        self.obs.batch_size.set(work.len() as i64);
        if let Some(meter) = &self.cfg.metrics.energy {
            let active = &self.active;
            meter.work(
                self.device,
                work.iter()
                    .filter_map(|(id, n)| active.get(id)?.energy.map(|k| (k, *n as u64))),
            );
        }
    }

    fn forward(&mut self, ev: Event) {
        match ev {
            Event::Token {
                id, text, logprobs, ..
            } => {
                if let Some(a) = self.active.get_mut(&id) {
                    let now = Instant::now();
                    match a.last_token {
                        None => self.obs.ttft.observe((now - a.queued).as_secs_f64()),
                        Some(t) => self.obs.itl.observe((now - t).as_secs_f64()),
                    }
                    a.last_token = Some(now);
                }
                if text.is_empty() && logprobs.is_empty() {
                    return;
                }
                let closed = self.active.get(&id).is_none_or(|a| {
                    (!logprobs.is_empty() && a.tx.send(JobEvent::Logprobs(logprobs)).is_err())
                        || (!text.is_empty() && a.tx.send(JobEvent::Text(text)).is_err())
                });
                if closed {
                    if let Some(ev) = self.batch.cancel(id) {
                        self.forward(ev);
                    }
                }
            }
            Event::Finished {
                id,
                reason,
                text,
                usage,
                logprobs,
            } => {
                if let Some(a) = self.active.remove(&id) {
                    let energy = self.finished(&a, &usage);
                    if let Some(f) = &a.on_finish {
                        f(&JobEnd {
                            reason,
                            usage,
                            device: Some(self.device.to_owned()),
                            queue_time: Some(a.queue_time),
                            error: None,
                            energy,
                        });
                    }
                    if !logprobs.is_empty() {
                        let _ = a.tx.send(JobEvent::Logprobs(logprobs));
                    }
                    if !text.is_empty() {
                        let _ = a.tx.send(JobEvent::Text(text));
                    }
                    let _ = a.tx.send(JobEvent::Done { reason, usage });
                }
            }
        }
    }

    /// A sequence left the batch: its latency, tokens and energy.
    fn finished(&self, a: &Active, usage: &Usage) -> Option<crate::metrics::energy::Spent> {
        let m = &self.cfg.metrics;
        self.obs.e2e.observe(a.queued.elapsed().as_secs_f64());
        let (prompt, generated) = token_counters(m, self.model, &a.user);
        prompt.inc_by(usage.prompt_tokens as u64);
        if usage.cached_tokens > 0 {
            m.serving
                .prompt_tokens_cached
                .with_label_values(&[self.model, &a.user])
                .inc_by(usage.cached_tokens as u64);
        }
        generated.inc_by(usage.completion_tokens as u64);
        let spent = m.energy.as_ref()?.leave(self.device, a.energy?)?;
        let source = spent.source.as_str();
        m.serving
            .request_energy
            .with_label_values(&[self.model, &a.user, self.device, source])
            .inc_by(spent.joules);
        let tokens = usage.prompt_tokens + usage.completion_tokens;
        if tokens > 0 {
            m.serving
                .energy_per_token
                .with_label_values(&[self.model, self.device, source])
                .observe(spent.joules / tokens as f64);
        }
        Some(spent)
    }

    fn cancel_all(&mut self) {
        let ids: Vec<SeqId> = self.active.keys().copied().collect();
        for id in ids {
            if let Some(ev) = self.batch.cancel(id) {
                self.forward(ev);
            }
        }
        for w in self.waiting.drain(..) {
            unstarted(&w.on_finish);
            let _ = w.tx.send(JobEvent::Done {
                reason: FinishReason::Cancelled,
                usage: Usage::default(),
            });
        }
    }
}
