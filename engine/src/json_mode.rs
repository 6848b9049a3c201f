//! JSON mode (OpenAI's `response_format: json_object`, Ollama's `format: "json"`): a byte-level recogniser of
//! JSON-object prefixes. Before each sampled token, every token whose bytes would leave the output an invalid
//! prefix is masked, end-of-generation is allowed only once the object is complete, and nothing may follow it.
//! The state is `Copy` (fixed-depth stack) so testing a candidate token costs no allocation.

use crate::json_text::{StrState, StrStep};

const MAX_DEPTH: usize = 32;
/// Consecutive whitespace allowed between tokens: small models otherwise loop on newlines.
const MAX_WS_RUN: u8 = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Num {
    Minus,
    Zero,
    Int,
    Dot,
    Frac,
    Exp,
    ExpSign,
    ExpDigits,
}

impl Num {
    fn terminal(self) -> bool {
        matches!(self, Num::Zero | Num::Int | Num::Frac | Num::ExpDigits)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Before the top-level `{`.
    Start,
    /// A value is expected.
    Value,
    /// Just after `[`: a value or `]`.
    ArrayFirst,
    /// Just after `{`: a key or `}`.
    ObjectFirst,
    /// After `,` in an object: a key.
    Key,
    /// After a key: `:`.
    Colon,
    /// After a value: `,` or the closing bracket.
    AfterValue,
    /// Inside a string (a key's or a value's).
    Str {
        key: bool,
        st: StrState,
    },
    Number(Num),
    Literal {
        word: u8,
        pos: u8,
    },
    Done,
}

const WORDS: [&[u8]; 3] = [b"true", b"false", b"null"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JsonState {
    stack: [u8; MAX_DEPTH],
    depth: u8,
    mode: Mode,
    ws_run: u8,
}

impl Default for JsonState {
    fn default() -> Self {
        JsonState {
            stack: [0; MAX_DEPTH],
            depth: 0,
            mode: Mode::Start,
            ws_run: 0,
        }
    }
}

impl JsonState {
    /// The top-level object is closed: only end-of-generation may follow.
    pub fn is_complete(&self) -> bool {
        self.mode == Mode::Done
    }

    /// Feeds bytes; false (state unspecified) when they cannot continue a JSON object.
    pub fn feed(&mut self, bytes: &[u8]) -> bool {
        bytes.iter().all(|&b| self.byte(b))
    }

    /// Whether `bytes` could follow, without changing the state.
    pub fn accepts(&self, bytes: &[u8]) -> bool {
        let mut s = *self;
        s.feed(bytes)
    }

    fn push(&mut self, b: u8) -> bool {
        if self.depth as usize >= MAX_DEPTH {
            return false;
        }
        self.stack[self.depth as usize] = b;
        self.depth += 1;
        true
    }

    fn top(&self) -> u8 {
        if self.depth == 0 {
            0
        } else {
            self.stack[self.depth as usize - 1]
        }
    }

    fn close(&mut self, b: u8) -> bool {
        let open = if b == b'}' { b'{' } else { b'[' };
        if self.top() != open {
            return false;
        }
        self.depth -= 1;
        self.mode = if self.depth == 0 {
            Mode::Done
        } else {
            Mode::AfterValue
        };
        true
    }

    fn begin_value(&mut self, b: u8) -> bool {
        self.mode = match b {
            b'{' => return self.push(b'{') && self.set(Mode::ObjectFirst),
            b'[' => return self.push(b'[') && self.set(Mode::ArrayFirst),
            b'"' => Mode::Str {
                key: false,
                st: StrState::Plain,
            },
            b'-' => Mode::Number(Num::Minus),
            b'0' => Mode::Number(Num::Zero),
            b'1'..=b'9' => Mode::Number(Num::Int),
            b't' => Mode::Literal { word: 0, pos: 1 },
            b'f' => Mode::Literal { word: 1, pos: 1 },
            b'n' => Mode::Literal { word: 2, pos: 1 },
            _ => return false,
        };
        true
    }

    fn set(&mut self, m: Mode) -> bool {
        self.mode = m;
        true
    }

    fn byte(&mut self, b: u8) -> bool {
        let ws = matches!(b, b' ' | b'\t' | b'\n' | b'\r');
        let between = matches!(
            self.mode,
            Mode::Start
                | Mode::Value
                | Mode::ArrayFirst
                | Mode::ObjectFirst
                | Mode::Key
                | Mode::Colon
                | Mode::AfterValue
        );
        if ws && between {
            self.ws_run += 1;
            return self.ws_run <= MAX_WS_RUN;
        }
        self.ws_run = 0;
        match self.mode {
            Mode::Start => b == b'{' && self.push(b'{') && self.set(Mode::ObjectFirst),
            Mode::Value => self.begin_value(b),
            Mode::ArrayFirst => {
                if b == b']' {
                    self.close(b)
                } else {
                    self.begin_value(b)
                }
            }
            Mode::ObjectFirst => match b {
                b'}' => self.close(b),
                b'"' => self.set(Mode::Str {
                    key: true,
                    st: StrState::Plain,
                }),
                _ => false,
            },
            Mode::Key => {
                b == b'"'
                    && self.set(Mode::Str {
                        key: true,
                        st: StrState::Plain,
                    })
            }
            Mode::Colon => b == b':' && self.set(Mode::Value),
            Mode::AfterValue => match (b, self.top()) {
                (b',', b'{') => self.set(Mode::Key),
                (b',', b'[') => self.set(Mode::Value),
                (b'}' | b']', _) => self.close(b),
                _ => false,
            },
            Mode::Str { key, st } => match st.step(b) {
                StrStep::Close => self.set(if key { Mode::Colon } else { Mode::AfterValue }),
                StrStep::Char => self.set(Mode::Str {
                    key,
                    st: StrState::Plain,
                }),
                StrStep::Part(st) => self.set(Mode::Str { key, st }),
                StrStep::Invalid => false,
            },
            Mode::Number(n) => {
                let d = b.is_ascii_digit();
                let next = match (n, b) {
                    (Num::Minus, b'0') => Some(Num::Zero),
                    (Num::Minus, b'1'..=b'9') => Some(Num::Int),
                    (Num::Int, _) if d => Some(Num::Int),
                    (Num::Zero | Num::Int, b'.') => Some(Num::Dot),
                    (Num::Zero | Num::Int | Num::Frac, b'e' | b'E') => Some(Num::Exp),
                    (Num::Dot | Num::Frac, _) if d => Some(Num::Frac),
                    (Num::Exp, b'+' | b'-') => Some(Num::ExpSign),
                    (Num::Exp | Num::ExpSign | Num::ExpDigits, _) if d => Some(Num::ExpDigits),
                    _ => None,
                };
                match next {
                    Some(n) => self.set(Mode::Number(n)),
                    // The number ended: this byte belongs to what follows it.
                    None if n.terminal() => {
                        self.mode = Mode::AfterValue;
                        self.byte(b)
                    }
                    None => false,
                }
            }
            Mode::Literal { word, pos } => {
                let w = WORDS[word as usize];
                if w.get(pos as usize) != Some(&b) {
                    return false;
                }
                if pos as usize + 1 == w.len() {
                    self.set(Mode::AfterValue)
                } else {
                    self.set(Mode::Literal { word, pos: pos + 1 })
                }
            }
            Mode::Done => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(s: &str) -> bool {
        let mut st = JsonState::default();
        st.feed(s.as_bytes()) && st.is_complete()
    }

    fn complete_bytes(b: &[u8]) -> bool {
        let mut st = JsonState::default();
        st.feed(b) && st.is_complete()
    }

    /// Found by the json_mode fuzz target (tests/fuzz): raw bytes in a string were accepted whatever they were,
    /// so the output could be invalid UTF-8 that no JSON parser reads.
    #[test]
    fn strings_hold_only_valid_utf8() {
        assert!(complete("{\"x\": \"é 東京 🌙\"}"));
        for bad in [
            &b"{\"x\": \"\xdcu\"}"[..],       // a lead byte without its continuation
            b"{\"x\": \"\x80\"}",             // a lone continuation byte
            b"{\"x\": \"\xc0\xaf\"}",         // overlong '/'
            b"{\"x\": \"\xed\xa0\x80\"}",     // an encoded surrogate
            b"{\"x\": \"\xf4\x90\x80\x80\"}", // past U+10FFFF
            b"{\"x\": \"\xff\"}",
        ] {
            assert!(!complete_bytes(bad), "{}", String::from_utf8_lossy(bad));
            assert!(serde_json::from_slice::<serde_json::Value>(bad).is_err());
        }
    }

    /// A `\u` escape of a UTF-16 surrogate must be one half of a pair (serde_json refuses a lone half).
    #[test]
    fn surrogate_escapes_come_in_pairs() {
        assert!(complete(r#"{"x": "\ud83c\udf19"}"#));
        for bad in [
            r#"{"x": "\ud83c"}"#,
            r#"{"x": "\udf19"}"#,
            r#"{"x": "\ud83c\u0041"}"#,
            r#"{"x": "\ud83cA"}"#,
        ] {
            assert!(!complete(bad), "{bad}");
            assert!(
                serde_json::from_str::<serde_json::Value>(bad).is_err(),
                "{bad}"
            );
        }
    }

    fn prefix_ok(s: &str) -> bool {
        JsonState::default().accepts(s.as_bytes())
    }

    #[test]
    fn accepts_json_objects_and_their_prefixes() {
        for ok in [
            "{}",
            " {\"a\": 1}",
            "{\"a\":[1,-2.5e+3,0,true,false,null,\"x\\n\\u00e9\"],\"b\":{\"c\":{}}}",
            "{\"k\": \"naïve ✓\"}",
            "{\"n\": 10 }",
            "{\"e\": []}",
        ] {
            assert!(complete(ok), "{ok}");
            for i in 0..ok.len() {
                if ok.is_char_boundary(i) {
                    assert!(prefix_ok(&ok[..i]), "prefix {:?}", &ok[..i]);
                }
            }
        }
    }

    #[test]
    fn rejects_what_cannot_become_an_object() {
        for bad in [
            "[1]",
            "\"s\"",
            "1",
            "{a",
            "{\"a\" 1",
            "{\"a\":}",
            "{\"a\":01",
            "{\"a\":-}",
            "{\"a\":1,}",
            "{\"a\":tru }",
            "{\"a\":\"\x01\"}",
            "{\"a\":\"\\x\"}",
            "{\"a\":1]",
            "{}x",
            "{} ",
            "{\"a\":1.}",
        ] {
            assert!(!complete(bad), "{bad:?}");
        }
        assert!(!prefix_ok("{}}"));
        assert!(!prefix_ok(&" ".repeat(MAX_WS_RUN as usize + 1)));
        assert!(!prefix_ok(&"{\"a\":[".repeat(MAX_DEPTH)));
        let mut s = JsonState::default();
        assert!(s.feed(b"{\"a\":1"));
        assert!(!s.is_complete());
        assert!(s.feed(b"}"));
        assert!(s.is_complete());
    }
}
