//! The recogniser of a compiled schema's outputs, byte by byte: the set of parses still possible (several where
//! `anyOf`, `enum` or optional properties leave a choice), each a stack of frames. A byte that no parse can
//! take is refused; a token is allowed when all its bytes are taken; end-of-generation only once some parse is
//! complete. Every state it keeps has a valid completion, so masking never leaves the model without a choice.

use super::{Grammar, Node, NodeId};
use crate::json_text::{StrState, StrStep};
use std::sync::Arc;

/// Nesting bound (recursive schemas, "any value"): deeper output is refused. Above what the compiler's own
/// nesting bound can require (two frames per level).
const MAX_STACK: usize = 256;
/// Consecutive whitespace allowed between tokens: small models otherwise loop on newlines.
const MAX_WS_RUN: u8 = 16;
/// Parses kept at once; more are alternatives of the same prefix and any one of them completes it.
const MAX_THREADS: usize = 64;
/// Characters of one number: small models otherwise repeat digits until the token limit.
const MAX_NUMBER: u8 = 24;
/// `anyOf` / `$ref` expansions for one byte (a reference cycle with no value in between ends here).
const MAX_HOPS: u8 = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Num {
    Minus,
    Zero,
    Int,
    Dot,
    Frac,
    Exp,
    ExpSign,
    /// One exponent digit; a second may follow, no third: every number fits a double (no `1e999`).
    ExpDigit,
    ExpDigits,
}

impl Num {
    fn terminal(self) -> bool {
        matches!(
            self,
            Num::Zero | Num::Int | Num::Frac | Num::ExpDigit | Num::ExpDigits
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ObjPhase {
    /// After `{`: a key or `}`.
    Open,
    /// After a key: `:`.
    Colon,
    /// After a member's value: `,` or `}`.
    AfterValue,
    /// After `,`: a key.
    Next,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ArrPhase {
    /// After `[`: a value or `]`.
    Open,
    /// After an element: `,` or `]`.
    AfterValue,
    /// After `,`: a value.
    Next,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Frame {
    /// A value of this node is expected (whitespace first allowed).
    Value(NodeId),
    /// Inside an object; `next`: the first declared property that may still come.
    Obj {
        node: NodeId,
        next: u16,
        phase: ObjPhase,
    },
    /// Inside a declared key (its quotes included), `pos` bytes matched.
    Key {
        node: NodeId,
        prop: u16,
        pos: u16,
    },
    Arr {
        node: NodeId,
        count: u32,
        phase: ArrPhase,
    },
    /// Inside literal `alt` of a `Literals` node.
    Lit {
        node: NodeId,
        alt: u16,
        pos: u16,
    },
    /// Inside a string: `chars` code points so far, at most `max`.
    Str {
        chars: u32,
        min: u32,
        max: u32,
        sub: StrState,
    },
    Num {
        integer: bool,
        st: Num,
        len: u8,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Thread {
    stack: Vec<Frame>,
    ws: u8,
}

/// The decoding state of one output under a schema.
#[derive(Clone, Debug)]
pub struct SchemaState {
    grammar: Arc<super::Grammar>,
    threads: Vec<Thread>,
}

impl SchemaState {
    pub fn new(grammar: Arc<Grammar>) -> SchemaState {
        let root = grammar.root;
        SchemaState {
            grammar,
            threads: vec![Thread {
                stack: vec![Frame::Value(root)],
                ws: 0,
            }],
        }
    }

    /// Some parse is a whole value: end-of-generation may come.
    pub fn is_complete(&self) -> bool {
        self.threads.iter().any(|t| match t.stack.as_slice() {
            [] => true,
            [Frame::Num { st, .. }] => st.terminal(),
            _ => false,
        })
    }

    /// Feeds bytes; false (state emptied) when no parse can take them.
    pub fn feed(&mut self, bytes: &[u8]) -> bool {
        for &b in bytes {
            let mut next = Vec::with_capacity(self.threads.len());
            for t in self.threads.drain(..) {
                step(&self.grammar, t, b, 0, &mut next);
            }
            self.threads = next;
            if self.threads.is_empty() {
                return false;
            }
        }
        true
    }

    /// Whether `bytes` could follow, without changing the state.
    pub fn accepts(&self, bytes: &[u8]) -> bool {
        let mut s = self.clone();
        s.feed(bytes)
    }
}

fn keep(out: &mut Vec<Thread>, t: Thread) {
    if out.len() < MAX_THREADS && !out.contains(&t) {
        out.push(t);
    }
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// Whitespace where the frame allows it: counted, bounded.
fn whitespace(mut t: Thread, out: &mut Vec<Thread>) {
    if t.ws < MAX_WS_RUN {
        t.ws += 1;
        keep(out, t);
    }
}

/// Replaces the top frame and keeps the thread.
fn set(mut t: Thread, f: Frame, out: &mut Vec<Thread>) {
    if let Some(top) = t.stack.last_mut() {
        *top = f;
    }
    t.ws = 0;
    keep(out, t);
}

/// The top frame's value is complete: back to its parent (already in its after-value phase).
fn pop(mut t: Thread, out: &mut Vec<Thread>) {
    t.stack.pop();
    t.ws = 0;
    keep(out, t);
}

fn step(g: &Grammar, mut t: Thread, b: u8, hops: u8, out: &mut Vec<Thread>) {
    let Some(&top) = t.stack.last() else {
        return; // complete: nothing may follow
    };
    match top {
        Frame::Value(node) => {
            if is_ws(b) {
                return whitespace(t, out);
            }
            begin_value(g, t, node, b, hops, out)
        }
        Frame::Obj { node, next, phase } => {
            if is_ws(b) {
                return whitespace(t, out);
            }
            let Node::Object { props, extra } = g.node(node) else {
                return;
            };
            let required_left = props.iter().skip(next as usize).any(|p| p.required);
            match (phase, b) {
                (ObjPhase::Open | ObjPhase::AfterValue, b'}') if !required_left => pop(t, out),
                (ObjPhase::Open | ObjPhase::Next, b'"') => {
                    if props.is_empty() {
                        // Any key (a string), then a value of `extra`.
                        if extra.is_some() && t.stack.len() < MAX_STACK {
                            if let Some(top) = t.stack.last_mut() {
                                *top = Frame::Obj {
                                    node,
                                    next,
                                    phase: ObjPhase::Colon,
                                };
                            }
                            t.stack.push(Frame::Str {
                                chars: 0,
                                min: 0,
                                max: u32::MAX,
                                sub: StrState::Plain,
                            });
                            t.ws = 0;
                            keep(out, t);
                        }
                        return;
                    }
                    for (i, p) in props.iter().enumerate().skip(next as usize) {
                        let mut n = t.clone();
                        if let Some(top) = n.stack.last_mut() {
                            *top = Frame::Obj {
                                node,
                                next: i as u16 + 1,
                                phase: ObjPhase::Colon,
                            };
                        }
                        n.stack.push(Frame::Key {
                            node,
                            prop: i as u16,
                            pos: 1,
                        });
                        n.ws = 0;
                        keep(out, n);
                        if p.required {
                            break; // a required property cannot be skipped
                        }
                    }
                }
                (ObjPhase::Colon, b':') => {
                    let value = if props.is_empty() {
                        *extra
                    } else {
                        props.get(next as usize - 1).map(|p| p.value)
                    };
                    let Some(value) = value else { return };
                    if t.stack.len() >= MAX_STACK {
                        return;
                    }
                    if let Some(top) = t.stack.last_mut() {
                        *top = Frame::Obj {
                            node,
                            next,
                            phase: ObjPhase::AfterValue,
                        };
                    }
                    t.stack.push(Frame::Value(value));
                    t.ws = 0;
                    keep(out, t);
                }
                (ObjPhase::AfterValue, b',') => {
                    let more = if props.is_empty() {
                        extra.is_some()
                    } else {
                        (next as usize) < props.len()
                    };
                    if more {
                        set(
                            t,
                            Frame::Obj {
                                node,
                                next,
                                phase: ObjPhase::Next,
                            },
                            out,
                        );
                    }
                }
                _ => {}
            }
        }
        Frame::Key { node, prop, pos } => {
            let Node::Object { props, .. } = g.node(node) else {
                return;
            };
            let key = &props[prop as usize].key;
            if key.get(pos as usize) == Some(&b) {
                if pos as usize + 1 == key.len() {
                    pop(t, out);
                } else {
                    set(
                        t,
                        Frame::Key {
                            node,
                            prop,
                            pos: pos + 1,
                        },
                        out,
                    );
                }
            }
        }
        Frame::Arr { node, count, phase } => {
            if is_ws(b) {
                return whitespace(t, out);
            }
            let Node::Array { items, min, max } = *g.node(node) else {
                return;
            };
            let room = max.is_none_or(|m| count < m);
            match (phase, b) {
                (ArrPhase::Open, b']') if min == 0 => pop(t, out),
                (ArrPhase::AfterValue, b']') if count >= min => pop(t, out),
                (ArrPhase::AfterValue, b',') if room => set(
                    t,
                    Frame::Arr {
                        node,
                        count,
                        phase: ArrPhase::Next,
                    },
                    out,
                ),
                (ArrPhase::Open | ArrPhase::Next, _) if room && t.stack.len() < MAX_STACK => {
                    if let Some(top) = t.stack.last_mut() {
                        *top = Frame::Arr {
                            node,
                            count: count + 1,
                            phase: ArrPhase::AfterValue,
                        };
                    }
                    t.stack.push(Frame::Value(items));
                    step(g, t, b, hops, out);
                }
                _ => {}
            }
        }
        Frame::Lit { node, alt, pos } => {
            let Node::Literals(alts) = g.node(node) else {
                return;
            };
            let text = &alts[alt as usize];
            if text.get(pos as usize) == Some(&b) {
                if pos as usize + 1 == text.len() {
                    pop(t, out);
                } else {
                    set(
                        t,
                        Frame::Lit {
                            node,
                            alt,
                            pos: pos + 1,
                        },
                        out,
                    );
                }
            }
        }
        Frame::Str {
            chars,
            min,
            max,
            sub,
        } => string_byte(t, chars, min, max, sub, b, out),
        Frame::Num { integer, st, len } => {
            let digit = b.is_ascii_digit();
            let full = len >= MAX_NUMBER && st.terminal();
            let next = match (st, b) {
                _ if full => None,
                (Num::Minus, b'0') => Some(Num::Zero),
                (Num::Minus, _) if digit => Some(Num::Int),
                (Num::Int, _) if digit => Some(Num::Int),
                (Num::Zero | Num::Int, b'.') if !integer => Some(Num::Dot),
                (Num::Zero | Num::Int | Num::Frac, b'e' | b'E') if !integer => Some(Num::Exp),
                (Num::Dot | Num::Frac, _) if digit => Some(Num::Frac),
                (Num::Exp, b'+' | b'-') => Some(Num::ExpSign),
                (Num::Exp | Num::ExpSign, _) if digit => Some(Num::ExpDigit),
                (Num::ExpDigit, _) if digit => Some(Num::ExpDigits),
                _ => None,
            };
            match next {
                Some(st) => set(
                    t,
                    Frame::Num {
                        integer,
                        st,
                        len: len.saturating_add(1),
                    },
                    out,
                ),
                // The number ended with this byte, which belongs to what follows.
                None if st.terminal() => {
                    t.stack.pop();
                    step(g, t, b, hops, out);
                }
                None => {}
            }
        }
    }
}

fn begin_value(g: &Grammar, t: Thread, node: NodeId, b: u8, hops: u8, out: &mut Vec<Thread>) {
    match g.node(node) {
        Node::Object { .. } if b == b'{' => set(
            t,
            Frame::Obj {
                node,
                next: 0,
                phase: ObjPhase::Open,
            },
            out,
        ),
        Node::Array { .. } if b == b'[' => set(
            t,
            Frame::Arr {
                node,
                count: 0,
                phase: ArrPhase::Open,
            },
            out,
        ),
        Node::Str { min, max } if b == b'"' => set(
            t,
            Frame::Str {
                chars: 0,
                min: *min,
                max: max.unwrap_or(u32::MAX),
                sub: StrState::Plain,
            },
            out,
        ),
        Node::Number { integer } => {
            let st = match b {
                b'-' => Num::Minus,
                b'0' => Num::Zero,
                b'1'..=b'9' => Num::Int,
                _ => return,
            };
            set(
                t,
                Frame::Num {
                    integer: *integer,
                    st,
                    len: 1,
                },
                out,
            )
        }
        Node::Literals(alts) => {
            for (i, text) in alts.iter().enumerate() {
                if text.first() == Some(&b) {
                    if text.len() == 1 {
                        pop(t.clone(), out);
                    } else {
                        set(
                            t.clone(),
                            Frame::Lit {
                                node,
                                alt: i as u16,
                                pos: 1,
                            },
                            out,
                        );
                    }
                }
            }
        }
        Node::AnyOf(ids) => {
            if hops >= MAX_HOPS {
                return;
            }
            for &id in ids {
                let mut n = t.clone();
                if let Some(top) = n.stack.last_mut() {
                    *top = Frame::Value(id);
                }
                begin_value(g, n, id, b, hops + 1, out);
            }
        }
        _ => {}
    }
}

fn string_byte(
    t: Thread,
    chars: u32,
    min: u32,
    max: u32,
    sub: StrState,
    b: u8,
    out: &mut Vec<Thread>,
) {
    let to = |chars, sub| Frame::Str {
        chars,
        min,
        max,
        sub,
    };
    match sub.step(b) {
        StrStep::Close if chars >= min => pop(t, out),
        StrStep::Close | StrStep::Invalid => {}
        // A new character needs room under `maxLength`.
        _ if sub.between_chars() && chars >= max => {}
        StrStep::Char => set(t, to(chars + 1, StrState::Plain), out),
        StrStep::Part(next) => set(t, to(chars, next), out),
    }
}
