//! Reasoning models' thoughts: a `<think>…</think>` block before the answer (DeepSeek-R1 distills, Qwen3,
//! SmolLM3), split from the answer as the text streams. A prompt that already opened the block (a generation
//! prompt ending in `<think>`) starts inside it; without its closing tag, everything is thought.

const OPEN: &str = "<think>";
const CLOSE: &str = "</think>";

/// What the splitter gives out, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    Thought(String),
    Answer(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing but whitespace yet: a block may still open.
    Before,
    Inside,
    /// After the block: whitespace right after it is dropped, then everything is answer.
    After {
        started: bool,
    },
}

#[derive(Debug, Clone)]
pub struct ThoughtSplitter {
    state: State,
    buf: String,
    /// Give the thoughts out (false: thinking was switched off, a block the model still wrote is dropped).
    keep: bool,
}

/// Whether a template writes thought blocks (its model reasons before answering).
pub fn template_thinks(source: &str) -> bool {
    source.contains(OPEN)
}

/// Whether a rendered prompt ends inside an opened block (the model's output starts as thought).
pub fn prompt_opens_thought(prompt: &str) -> bool {
    prompt.trim_end().ends_with(OPEN)
}

impl ThoughtSplitter {
    pub fn new(inside: bool, keep: bool) -> ThoughtSplitter {
        ThoughtSplitter {
            state: if inside { State::Inside } else { State::Before },
            buf: String::new(),
            keep,
        }
    }

    /// Takes the next piece of generated text.
    pub fn push(&mut self, text: &str) -> Vec<Part> {
        self.buf.push_str(text);
        let mut out = Vec::new();
        loop {
            match self.state {
                State::Before => {
                    let t = self.buf.trim_start();
                    if t.is_empty() || (OPEN.starts_with(t) && t.len() < OPEN.len()) {
                        return out;
                    }
                    if let Some(rest) = t.strip_prefix(OPEN) {
                        self.buf = rest.to_owned();
                        self.state = State::Inside;
                    } else {
                        self.state = State::After { started: true };
                    }
                }
                State::Inside => {
                    if let Some(i) = self.buf.find(CLOSE) {
                        let thought: String = self.buf.drain(..i).collect();
                        self.buf.drain(..CLOSE.len());
                        self.give(&mut out, Part::Thought(thought));
                        self.state = State::After { started: false };
                        continue;
                    }
                    let keep = (1..CLOSE.len().min(self.buf.len() + 1))
                        .rev()
                        .find(|&k| {
                            self.buf.is_char_boundary(self.buf.len() - k)
                                && CLOSE.starts_with(&self.buf[self.buf.len() - k..])
                        })
                        .unwrap_or(0);
                    let cut = self.buf.len() - keep;
                    let thought: String = self.buf.drain(..cut).collect();
                    self.give(&mut out, Part::Thought(thought));
                    return out;
                }
                State::After { started } => {
                    let text = std::mem::take(&mut self.buf);
                    let text = if started {
                        text
                    } else {
                        let t = text.trim_start().to_owned();
                        if t.is_empty() {
                            return out;
                        }
                        self.state = State::After { started: true };
                        t
                    };
                    self.give(&mut out, Part::Answer(text));
                    return out;
                }
            }
        }
    }

    /// The output ended: what is held back goes out.
    pub fn finish(&mut self) -> Vec<Part> {
        let rest = std::mem::take(&mut self.buf);
        let mut out = Vec::new();
        match self.state {
            State::Before => self.give(&mut out, Part::Answer(rest)),
            State::Inside => self.give(&mut out, Part::Thought(rest)),
            State::After { .. } => {}
        }
        out
    }

    fn give(&self, out: &mut Vec<Part>, p: Part) {
        match &p {
            Part::Thought(t) if t.is_empty() || !self.keep => {}
            Part::Answer(t) if t.is_empty() => {}
            _ => out.push(p),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whole and cut at every character boundary, the same thought and answer.
    fn split(inside: bool, keep: bool, text: &str) -> (String, String) {
        let run = |pieces: &[&str]| {
            let mut s = ThoughtSplitter::new(inside, keep);
            let mut parts = Vec::new();
            for p in pieces {
                parts.extend(s.push(p));
            }
            parts.extend(s.finish());
            let (mut th, mut an) = (String::new(), String::new());
            for p in parts {
                match p {
                    Part::Thought(t) => th.push_str(&t),
                    Part::Answer(a) => an.push_str(&a),
                }
            }
            (th, an)
        };
        let whole = run(&[text]);
        for cut in (1..text.len()).filter(|&c| text.is_char_boundary(c)) {
            assert_eq!(run(&[&text[..cut], &text[cut..]]), whole, "cut at {cut}");
        }
        whole
    }

    #[test]
    fn thoughts_and_answers_part() {
        assert_eq!(
            split(
                false,
                true,
                "<think>\nLet me add: 2+2.\n</think>\n\nIt is 4."
            ),
            ("\nLet me add: 2+2.\n".into(), "It is 4.".into())
        );
        // The prompt opened the block (R1 distills).
        assert_eq!(
            split(true, true, "hmm, 4.</think>It is 4."),
            ("hmm, 4.".into(), "It is 4.".into())
        );
        // Never closed: all thought. No block: all answer.
        assert_eq!(
            split(true, true, "still <thinking"),
            ("still <thinking".into(), String::new())
        );
        assert_eq!(
            split(false, true, " <b>bold</b>"),
            (String::new(), " <b>bold</b>".into())
        );
        // Thinking off: an empty block the template or model wrote is dropped, and so would thoughts be.
        assert_eq!(
            split(false, false, "<think>\n\n</think>\n\nHi!"),
            (String::new(), "Hi!".into())
        );
        assert!(template_thinks(
            "{% if enable_thinking %}<think>{% endif %}"
        ));
        assert!(prompt_opens_thought("<|Assistant|><think>\n"));
        assert!(!prompt_opens_thought("<|im_start|>assistant\n"));
    }
}
