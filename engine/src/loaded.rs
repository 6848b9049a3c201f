//! A model ready to serve: weights, tokenizer, chat template and its compute threads.

use crate::chat::{ChatMessage, ChatTemplate};
use crate::error::{EngineError, Result};
use crate::gguf::GgufFile;
use crate::model::{LoadOptions, Model};
use crate::schema::Grammar;
use crate::think::{prompt_opens_thought, ThoughtSplitter};
use crate::threadpool::ThreadPool;
use crate::tokenizer::Tokenizer;
use crate::tools::{CallReader, ToolUse};
use std::path::Path;
use std::sync::Arc;

/// A chat ready to run, with what reads its output.
pub struct ChatPrompt {
    /// Ending in the tool format's opening where a call is forced, so that the answer starts inside the call.
    pub ids: Vec<u32>,
    /// Reads the calls out of the answer (where tools are offered).
    pub calls: Option<CallReader>,
    /// The grammar of a forced call.
    pub forced: Option<Grammar>,
    /// Splits the thoughts from the answer (a model that thinks; not for a forced call).
    pub thoughts: Option<ThoughtSplitter>,
}

pub struct LoadedModel {
    pub model: Arc<Model>,
    pub tokenizer: Arc<Tokenizer>,
    pub template: ChatTemplate,
    pub pool: Arc<ThreadPool>,
}

/// Default thread count: physical cores (SMT siblings share the SIMD units the kernels saturate), capped by the
/// CPUs this process may use.
pub fn default_threads() -> usize {
    let allowed = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let physical = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .map(|s| physical_cores(&s))
        .unwrap_or(0);
    if physical > 0 {
        physical.min(allowed)
    } else {
        allowed
    }
}

/// Distinct (physical id, core id) pairs in /proc/cpuinfo; 0 when the file does not say.
fn physical_cores(cpuinfo: &str) -> usize {
    let mut cores = std::collections::HashSet::new();
    let (mut phys, mut core) = (None, None);
    for line in cpuinfo.lines().chain(std::iter::once("")) {
        let value = || line.split(':').nth(1).map(|v| v.trim().to_owned());
        if line.starts_with("physical id") {
            phys = value();
        } else if line.starts_with("core id") {
            core = value();
        } else if line.trim().is_empty() {
            if let (Some(p), Some(c)) = (phys.take(), core.take()) {
                cores.insert((p, c));
            }
        }
    }
    cores.len()
}

impl LoadedModel {
    pub fn load(path: impl AsRef<Path>, opts: &LoadOptions, threads: usize) -> Result<LoadedModel> {
        let file = Arc::new(GgufFile::open(path)?);
        let tokenizer = Tokenizer::from_gguf(&file)?;
        let model = Model::from_gguf(file.clone(), opts)?;
        let template = ChatTemplate::for_model(
            file.get_str("tokenizer.chat_template"),
            &model.config.architecture,
            tokenizer.bos_text(),
            tokenizer.eos_text(),
        )?;
        Ok(LoadedModel {
            model: Arc::new(model),
            tokenizer: Arc::new(tokenizer),
            template,
            pool: Arc::new(
                ThreadPool::new(threads).map_err(|e| EngineError::Threads(e.to_string()))?,
            ),
        })
    }

    /// Renders chats with `source` (a Jinja chat template) instead of the file's own.
    pub fn set_template(&mut self, source: &str) -> Result<()> {
        self.template =
            ChatTemplate::new(source, self.tokenizer.bos_text(), self.tokenizer.eos_text())?;
        Ok(())
    }

    /// Prompt tokens for a chat: the rendered template, tokenized with special tokens (BOS added only if the
    /// template did not write it).
    pub fn chat_prompt(&self, messages: &[ChatMessage]) -> Result<Vec<u32>> {
        let text = self.template.render(messages, true)?;
        self.tokenizer.encode(&text, true)
    }

    /// A chat's prompt with its tools (if any) and thinking switch (`Some(false)`: off, thoughts dropped;
    /// `Some(true)` on a model that does not think: refused), and the readers of its output.
    pub fn prompt_for(
        &self,
        messages: &[ChatMessage],
        tools: Option<&ToolUse>,
        think: Option<bool>,
    ) -> Result<ChatPrompt> {
        if think == Some(true) && !self.template.thinks() {
            return Err(EngineError::InvalidRequest(
                "'think': this model does not think (its chat template has no <think> block)"
                    .into(),
            ));
        }
        let format = self.template.tool_format();
        let forced = tools.and_then(|t| t.forced(format));
        let opening = if forced.is_some() {
            format.opening()
        } else {
            ""
        };
        let offered = tools.map_or(&[][..], |t| &t.tools[..]);
        let mut text = self.template.render_with(messages, offered, think, true)?;
        let thoughts = (self.template.thinks() && forced.is_none())
            .then(|| ThoughtSplitter::new(prompt_opens_thought(&text), think != Some(false)));
        text.push_str(opening);
        Ok(ChatPrompt {
            ids: self.tokenizer.encode(&text, true)?,
            calls: tools.map(|t| t.reader(format, opening)),
            forced,
            thoughts,
        })
    }

    /// Prompt tokens for plain completion text.
    pub fn raw_prompt(&self, text: &str) -> Result<Vec<u32>> {
        self.tokenizer.encode(text, true)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_physical_cores_not_smt_siblings() {
        let info = "processor : 0\nphysical id : 0\ncore id : 0\n\nprocessor : 1\nphysical id : 0\ncore id : 0\n\n\
                    processor : 2\nphysical id : 0\ncore id : 1\n\nprocessor : 3\nphysical id : 1\ncore id : 0\n";
        assert_eq!(super::physical_cores(info), 3);
        assert_eq!(super::physical_cores("processor : 0\n"), 0);
    }
}
