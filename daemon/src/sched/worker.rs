//! One model's worker thread: loads it, admits jobs into its `Batch`, steps the batch while anything runs,
//! forwards events, cancels sequences whose receiver is gone, and unloads after `keep_alive` idle.

use super::fair::{FairQueue, Tag};
use super::{
    Admitted, Gate, JobEnd, JobEvent, JobSpec, Msg, OnFinish, Prompt, SchedConfig, SchedError,
};
use hearth_engine::{
    Batch, Event, FinishReason, GenerateRequest, LoadOptions, LoadedModel, SeqId, Usage,
};
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
}

pub(super) struct Worker {
    pub model: String,
    /// Where it runs ('cpu'); the ledger records it per request.
    pub device: String,
    pub path: PathBuf,
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
}

struct Active {
    tx: mpsc::UnboundedSender<JobEvent>,
    on_finish: Option<OnFinish>,
    queue_time: Duration,
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
}

impl Worker {
    pub fn run(self) {
        let started = Instant::now();
        let loaded = LoadedModel::load(&self.path, &LoadOptions::default(), self.cfg.threads);
        let lm = match loaded {
            Ok(lm) => lm,
            Err(e) => {
                tracing::error!(model = %self.model, error = %e, "model failed to load");
                // Answer everything already sent; later senders find the channel closed and retry.
                let err = || SchedError::Load {
                    model: self.model.clone(),
                    message: e.to_string(),
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
                return;
            }
        };
        let batch = lm.new_batch(self.cfg.max_sequences, self.cfg.context);
        tracing::info!(model = %self.model, seconds = started.elapsed().as_secs_f64(), context = batch.context(),
            slots = batch.n_slots(), "model loaded");
        if let Ok(mut s) = self.status.lock() {
            s.loaded = true;
            s.context = batch.context();
        }
        let mut r = Running {
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
        };
        let mut idle_since = Instant::now();
        'outer: loop {
            if r.active.is_empty() && !r.waiting.is_empty() {
                // Only jobs awaiting their gate: poll briefly rather than sleep for keep_alive.
                if let Ok(msg) = self.rx.recv_timeout(Duration::from_millis(1)) {
                    if !r.handle(msg) {
                        break 'outer;
                    }
                }
            } else if r.active.is_empty() && r.waiting.is_empty() {
                let wait = r.keep_alive.saturating_sub(idle_since.elapsed());
                self.set_idle(
                    Instant::now()
                        .checked_add(wait)
                        .filter(|_| r.keep_alive != Duration::MAX),
                );
                match self.rx.recv_timeout(wait) {
                    Ok(msg) => {
                        if !r.handle(msg) {
                            break 'outer;
                        }
                    }
                    Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {
                        break 'outer
                    }
                }
                self.set_idle(None);
            }
            while let Ok(msg) = self.rx.try_recv() {
                if !r.handle(msg) {
                    break 'outer;
                }
            }
            r.admit_waiting();
            r.cancel_abandoned();
            // Before the step (a step can be long: prompts) and after it (a worker about to wait idle must not
            // show the sequences it just finished).
            self.publish_load(&r);
            if !r.batch.is_empty() {
                for ev in r.batch.step() {
                    r.forward(ev);
                }
                idle_since = Instant::now();
            }
            self.publish_load(&r);
        }
        r.cancel_all();
        if let Ok(mut s) = self.status.lock() {
            s.loaded = false;
            s.running = 0;
            s.waiting = 0;
        }
        tracing::info!(model = %self.model, "model unloaded");
    }

    fn publish_load(&self, r: &Running<'_>) {
        if let Ok(mut s) = self.status.lock() {
            s.running = r.active.len();
            s.waiting = r.waiting.len();
        }
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
        let prompt = match &spec.prompt {
            Prompt::Chat(messages) => self.lm.chat_prompt(messages)?,
            Prompt::Text(text) => self.lm.raw_prompt(text)?,
        };
        let room = self.batch.context().saturating_sub(prompt.len());
        let max_tokens = spec.max_tokens.unwrap_or(room.max(1));
        let req = GenerateRequest {
            prompt,
            max_tokens,
            sampling: spec.sampling,
            stop: spec.stop,
            ignore_eos: false,
            json_object: spec.json,
        };
        self.batch.validate(&req)?;
        if self.waiting.len() >= self.cfg.queue_depth && !self.batch.has_free_slot() {
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
            let next = self
                .waiting
                .iter()
                .enumerate()
                .filter(|(_, w)| w.gate.as_ref().is_none_or(|g| g.decided() == Some(true)))
                .reduce(|a, b| if b.1.tag.before(&a.1.tag) { b } else { a })
                .map(|(i, _)| i);
            let Some(w) = next.and_then(|i| self.waiting.remove(i)) else {
                break;
            };
            self.fair.dispatched(&w.tag);
            let queue_time = w.queued.elapsed();
            match self.batch.add(w.req) {
                Ok(id) => {
                    self.active.insert(
                        id,
                        Active {
                            tx: w.tx,
                            on_finish: w.on_finish,
                            queue_time,
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

    fn forward(&mut self, ev: Event) {
        match ev {
            Event::Token { id, text, .. } => {
                if text.is_empty() {
                    return;
                }
                let closed = self
                    .active
                    .get(&id)
                    .is_none_or(|a| a.tx.send(JobEvent::Text(text)).is_err());
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
            } => {
                if let Some(a) = self.active.remove(&id) {
                    if let Some(f) = &a.on_finish {
                        f(&JobEnd {
                            reason,
                            usage,
                            device: Some(self.device.to_owned()),
                            queue_time: Some(a.queue_time),
                            error: None,
                        });
                    }
                    if !text.is_empty() {
                        let _ = a.tx.send(JobEvent::Text(text));
                    }
                    let _ = a.tx.send(JobEvent::Done { reason, usage });
                }
            }
        }
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
