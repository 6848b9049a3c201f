//! The inside of a JSON string, byte by byte — RFC 8259's escapes, RFC 3629's UTF-8 (no overlong forms,
//! surrogates or code points past U+10FFFF) and UTF-16 surrogate escapes only as high-low pairs — shared by
//! JSON mode (`json_mode`) and the schema recogniser (`schema::matcher`).

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StrState {
    /// Between characters.
    Plain,
    /// Within a multi-byte character: `need` more bytes, the next in `lo..=hi`.
    Utf8 { need: u8, lo: u8, hi: u8 },
    /// After `\`.
    Escape,
    /// `\u`: `n` hex digits read, their `value`; `low`: it must be the second half of a surrogate pair.
    Hex { n: u8, value: u16, low: bool },
    /// After a high-surrogate escape: `\` (`u: false`), then `u`, must follow.
    LowEscape { u: bool },
}

/// What one byte does to a string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StrStep {
    /// The closing quote.
    Close,
    /// A character is complete; the string goes on.
    Char,
    /// Part of a character; the string goes on in this state.
    Part(StrState),
    /// No JSON string continues so.
    Invalid,
}

impl StrState {
    /// Whether a byte in this state starts a new character (the closing quote excepted): where a length
    /// bound applies.
    pub fn between_chars(self) -> bool {
        self == StrState::Plain
    }

    pub fn step(self, b: u8) -> StrStep {
        let utf8 = |need, lo, hi| StrStep::Part(StrState::Utf8 { need, lo, hi });
        let hex = |low| {
            StrStep::Part(StrState::Hex {
                n: 0,
                value: 0,
                low,
            })
        };
        match self {
            StrState::Plain => match b {
                b'"' => StrStep::Close,
                b'\\' => StrStep::Part(StrState::Escape),
                0..=0x1f => StrStep::Invalid,
                0x20..=0x7f => StrStep::Char,
                // The lead byte of a multi-byte character (RFC 3629's table).
                0xc2..=0xdf => utf8(1, 0x80, 0xbf),
                0xe0 => utf8(2, 0xa0, 0xbf),
                0xed => utf8(2, 0x80, 0x9f),
                0xe1..=0xef => utf8(2, 0x80, 0xbf),
                0xf0 => utf8(3, 0x90, 0xbf),
                0xf4 => utf8(3, 0x80, 0x8f),
                0xf1..=0xf3 => utf8(3, 0x80, 0xbf),
                _ => StrStep::Invalid,
            },
            StrState::Utf8 { need, lo, hi } => match (lo..=hi).contains(&b) {
                false => StrStep::Invalid,
                true if need == 1 => StrStep::Char,
                true => utf8(need - 1, 0x80, 0xbf),
            },
            StrState::Escape => match b {
                b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => StrStep::Char,
                b'u' => hex(false),
                _ => StrStep::Invalid,
            },
            StrState::Hex { n, value, low } => {
                let Some(d) = (b as char).to_digit(16) else {
                    return StrStep::Invalid;
                };
                let value = value << 4 | d as u16;
                if n < 3 {
                    return StrStep::Part(StrState::Hex {
                        n: n + 1,
                        value,
                        low,
                    });
                }
                // A UTF-16 surrogate must come as a high-low pair; JSON parsers refuse a lone half.
                match (low, value) {
                    (false, 0xd800..=0xdbff) => StrStep::Part(StrState::LowEscape { u: false }),
                    (false, 0xdc00..=0xdfff) => StrStep::Invalid,
                    (true, 0xdc00..=0xdfff) | (false, _) => StrStep::Char,
                    (true, _) => StrStep::Invalid,
                }
            }
            StrState::LowEscape { u: false } if b == b'\\' => {
                StrStep::Part(StrState::LowEscape { u: true })
            }
            StrState::LowEscape { u: true } if b == b'u' => hex(true),
            StrState::LowEscape { .. } => StrStep::Invalid,
        }
    }
}
