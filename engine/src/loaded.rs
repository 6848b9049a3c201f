//! A model ready to serve: weights, tokenizer, chat template and its compute threads.

use crate::batch::Batch;
use crate::chat::{ChatMessage, ChatTemplate};
use crate::error::Result;
use crate::gguf::GgufFile;
use crate::model::{LoadOptions, Model};
use crate::threadpool::ThreadPool;
use crate::tokenizer::Tokenizer;
use std::path::Path;
use std::sync::Arc;

pub struct LoadedModel {
    pub model: Arc<Model>,
    pub tokenizer: Arc<Tokenizer>,
    pub template: ChatTemplate,
    pub pool: Arc<ThreadPool>,
}

/// Default thread count: the cores this process may use.
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
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
            pool: Arc::new(ThreadPool::new(threads)),
        })
    }

    /// Prompt tokens for a chat: the rendered template, tokenized with special tokens (BOS added only if the
    /// template did not write it).
    pub fn chat_prompt(&self, messages: &[ChatMessage]) -> Result<Vec<u32>> {
        let text = self.template.render(messages, true)?;
        self.tokenizer.encode(&text, true)
    }

    /// Prompt tokens for plain completion text.
    pub fn raw_prompt(&self, text: &str) -> Result<Vec<u32>> {
        self.tokenizer.encode(text, true)
    }

    pub fn new_batch(&self, n_slots: usize, context: usize) -> Batch {
        Batch::new(
            self.model.clone(),
            self.tokenizer.clone(),
            self.pool.clone(),
            n_slots,
            context,
        )
    }
}
