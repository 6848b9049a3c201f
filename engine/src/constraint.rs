//! What a sequence's output must be, checked token by token: one JSON object (`json_mode`) or a value of a
//! JSON Schema (`schema`). `Batch` asks whether a token may follow and feeds the chosen one.

use crate::json_mode::JsonState;
use crate::schema::{Grammar, SchemaState};
use crate::tokenizer::Tokenizer;
use std::sync::Arc;

#[derive(Debug, Clone)]
pub enum Constraint {
    Object(JsonState),
    Schema(SchemaState),
}

impl Constraint {
    /// The constraint of a request: its schema if it has one, else JSON mode if asked, else none.
    pub fn of(schema: Option<&Arc<Grammar>>, json_object: bool) -> Option<Constraint> {
        match schema {
            Some(g) => Some(Constraint::Schema(SchemaState::new(g.clone()))),
            None if json_object => Some(Constraint::Object(JsonState::default())),
            None => None,
        }
    }

    fn is_complete(&self) -> bool {
        match self {
            Constraint::Object(s) => s.is_complete(),
            Constraint::Schema(s) => s.is_complete(),
        }
    }

    fn accepts(&self, bytes: &[u8]) -> bool {
        match self {
            Constraint::Object(s) => !s.is_complete() && s.accepts(bytes),
            Constraint::Schema(s) => s.accepts(bytes),
        }
    }

    /// A token may follow if its bytes keep the output a valid prefix; end-of-generation only once the output is
    /// complete (and, for an object, nothing else then). Tokens without bytes (control tokens) never may.
    pub fn allows(&self, tok: &Tokenizer, id: u32) -> bool {
        if tok.is_eog(id) {
            self.is_complete()
        } else {
            let bytes = tok.token_bytes(id);
            !bytes.is_empty() && self.accepts(bytes)
        }
    }

    /// Sets every token that may not follow to -inf.
    pub fn mask(&self, tok: &Tokenizer, logits: &mut [f32]) {
        for (id, l) in logits.iter_mut().enumerate() {
            if !self.allows(tok, id as u32) {
                *l = f32::NEG_INFINITY;
            }
        }
    }

    /// Takes the chosen token's bytes.
    pub fn feed(&mut self, bytes: &[u8]) {
        match self {
            Constraint::Object(s) => {
                s.feed(bytes);
            }
            Constraint::Schema(s) => {
                s.feed(bytes);
            }
        }
    }
}
