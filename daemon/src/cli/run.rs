//! `hearth run MODEL PROMPT`: stream the generated text (and nothing else) to stdout.

use anyhow::{Context, Result};
use hearth::models::ModelStore;
use hearth_engine::{
    ChatMessage, Event, GenerateRequest, LoadOptions, LoadedModel, SamplingParams, Speculation,
};
use std::io::{Read, Write};

#[derive(clap::Args)]
pub struct RunArgs {
    /// Path to a .gguf file, or the name of an imported model.
    pub model: String,
    /// The prompt ("-" reads standard input).
    pub prompt: String,
    /// Plain completion: no chat template.
    #[arg(long)]
    pub raw: bool,
    /// System message (chat mode).
    #[arg(long)]
    pub system: Option<String>,
    #[arg(long)]
    pub max_tokens: Option<usize>,
    /// 0 = greedy.
    #[arg(long, default_value_t = 0.8)]
    pub temperature: f32,
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f32,
    #[arg(long, default_value_t = 40)]
    pub top_k: usize,
    #[arg(long, default_value_t = 0.05)]
    pub min_p: f32,
    #[arg(long, default_value_t = 1.0)]
    pub repeat_penalty: f32,
    #[arg(long)]
    pub seed: Option<u64>,
    /// Stop when this text appears (repeatable).
    #[arg(long)]
    pub stop: Vec<String>,
    #[arg(long, default_value_t = hearth_engine::default_threads())]
    pub threads: usize,
    /// Context length (default: the model's, at most 8192).
    #[arg(long)]
    pub ctx: Option<usize>,
    /// Convert weights at load: f16 or f32.
    #[arg(long, value_parser = super::parse_dtype)]
    pub dtype: Option<hearth_engine::quant::GgmlType>,
    /// How to read the output head: i8 / q8_0 halve a tied F16 head's bytes per token (BitNet), q4_0 quarters
    /// them, i4-rescored scores every row with an int4 copy and rescores the best candidates with the file's head.
    #[arg(long, value_parser = super::head_parser())]
    pub head: Option<hearth_engine::model::HeadOption>,
    /// Keep generating through end-of-generation tokens.
    #[arg(long)]
    pub ignore_eos: bool,
    /// JSON mode: the output is constrained to one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Speculative decoding: this model (a path or an imported name, same tokenizer) drafts, MODEL verifies.
    /// Greedy output is unchanged.
    #[arg(long, conflicts_with = "prompt_lookup")]
    pub draft: Option<String>,
    /// Speculative decoding without a draft model: continuations looked up in the prompt and the output.
    #[arg(long)]
    pub prompt_lookup: bool,
}

pub fn run(store: &ModelStore, a: RunArgs) -> Result<()> {
    let path = store.resolve(&a.model)?;
    let lm = LoadedModel::load(
        &path,
        &LoadOptions {
            dtype: a.dtype,
            head: a.head,
            isa: None,
        },
        a.threads,
    )
    .with_context(|| format!("loading {}", path.display()))?;
    let prompt_text = if a.prompt == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading the prompt from stdin")?;
        s
    } else {
        a.prompt.clone()
    };
    let prompt = if a.raw {
        lm.raw_prompt(&prompt_text)?
    } else {
        let mut messages = Vec::new();
        if let Some(sys) = &a.system {
            messages.push(ChatMessage::new("system", sys));
        }
        messages.push(ChatMessage::new("user", &prompt_text));
        lm.chat_prompt(&messages)?
    };
    let ctx = a.ctx.unwrap_or(lm.model.config.context_length.min(8192));
    let max_tokens = a
        .max_tokens
        .unwrap_or_else(|| ctx.saturating_sub(prompt.len()).clamp(1, 1024));
    let mut batch = lm.new_batch(1, ctx);
    batch.set_speculation(speculation(
        store,
        &lm,
        a.draft.as_deref(),
        a.prompt_lookup,
        1,
        a.head,
    )?);
    batch.add(GenerateRequest {
        prompt,
        max_tokens,
        sampling: SamplingParams {
            temperature: a.temperature,
            top_p: a.top_p,
            top_k: a.top_k,
            min_p: a.min_p,
            repeat_penalty: a.repeat_penalty,
            seed: a.seed,
            ..Default::default()
        },
        stop: a.stop,
        ignore_eos: a.ignore_eos,
        json_object: a.json,
        schema: None,
        no_speculation: false,
        logprobs: None,
    })?;
    let mut out = std::io::stdout().lock();
    while !batch.is_empty() {
        for ev in batch.step() {
            match ev {
                Event::Token { text, .. } => {
                    out.write_all(text.as_bytes())?;
                    out.flush()?;
                }
                Event::Finished {
                    text,
                    usage,
                    reason,
                    ..
                } => {
                    out.write_all(text.as_bytes())?;
                    // Only the generated text goes to stdout; a closing newline only for a person at a terminal.
                    if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                        out.write_all(b"\n")?;
                    }
                    out.flush()?;
                    let gen_s = usage.generation_time.as_secs_f64();
                    eprintln!(
                        "\nhearth: {} prompt tokens in {:.2}s, {} generated ({:.1} tok/s), finish: {}",
                        usage.prompt_tokens,
                        usage.time_to_first_token.as_secs_f64(),
                        usage.completion_tokens,
                        if gen_s > 0.0 { usage.completion_tokens.saturating_sub(1) as f64 / gen_s } else { 0.0 },
                        reason.as_str()
                    );
                    if let Some(s) = batch.spec_stats() {
                        eprintln!(
                            "hearth: speculation kept {} of {} proposed tokens ({})",
                            s.accepted,
                            s.drafted,
                            s.acceptance()
                                .map_or("none proposed".into(), |r| format!("{:.0}%", r * 100.0))
                        );
                    }
                }
            }
        }
    }
    Ok(())
}

/// The `--draft` / `--prompt-lookup` speculation for `target` (shared with `hearth bench`). `head`: the `--head`
/// conversion, applied to the draft as well (a draft's tied head can be most of its bytes per token); `--dtype`
/// is the target's alone.
pub fn speculation(
    store: &ModelStore,
    target: &LoadedModel,
    draft: Option<&str>,
    prompt_lookup: bool,
    n_slots: usize,
    head: Option<hearth_engine::model::HeadOption>,
) -> Result<Option<Speculation>> {
    if let Some(d) = draft {
        let path = store.resolve(d)?;
        let opts = LoadOptions {
            head,
            ..LoadOptions::default()
        };
        // The draft runs on the target's threads; its own pool stays idle.
        let lm = LoadedModel::load(&path, &opts, 1)
            .with_context(|| format!("loading the draft model {}", path.display()))?;
        return Ok(Some(Speculation::draft(target, &lm, n_slots)?));
    }
    Ok(prompt_lookup.then(Speculation::prompt_lookup))
}
