//! Prompt-lookup proposals: the last few tokens are looked up earlier in the sequence (prompt and output), and
//! what followed them there is proposed as the continuation. Free to compute, and right surprisingly often when
//! the output copies from the input — summaries, extraction, code edits.

/// Longest and shortest n-gram tried (longest first: a longer match predicts better).
pub const MAX_NGRAM: usize = 3;
pub const MIN_NGRAM: usize = 1;

/// Matches are told apart by length up to this many tokens (the policy keeps an acceptance rate per length).
pub const LONGEST_MATCH: usize = 8;

/// Up to `k` tokens that followed the best earlier occurrence of the sequence's last n-gram (longest context
/// match, then most recent), trying n = MAX_NGRAM down to MIN_NGRAM; appended to `out` (cleared first). Returns how many trailing tokens the
/// occurrence matches (n, extended backwards up to LONGEST_MATCH): the longer, the likelier the sequence is
/// copying. None (and `out` empty) when nothing matches.
pub fn propose(tokens: &[u32], k: usize, out: &mut Vec<u32>) -> Option<usize> {
    out.clear();
    if k == 0 {
        return None;
    }
    let len = tokens.len();
    for n in (MIN_NGRAM..=MAX_NGRAM).rev() {
        if len <= n {
            continue;
        }
        let tail = &tokens[len - n..];
        // Of the earlier occurrences, the one whose context matches furthest back (a longer match predicts
        // better: "the" recurs everywhere, "of the contract, the" rarely), the most recent among equals — the
        // local context predicts best. A match must leave at least one token after it (start + n < len), and
        // may not be the tail itself.
        let mut best: Option<(usize, usize)> = None;
        for start in (0..len - n).rev() {
            if &tokens[start..start + n] != tail {
                continue;
            }
            let longer = (1..=start.min(LONGEST_MATCH.saturating_sub(n)))
                .take_while(|&i| tokens[start - i] == tokens[len - n - i])
                .count();
            if best.is_none_or(|(_, b)| longer > b) {
                best = Some((start, longer));
                if n + longer >= LONGEST_MATCH {
                    break;
                }
            }
        }
        if let Some((start, longer)) = best {
            let from = start + n;
            let to = (from + k).min(len);
            out.extend_from_slice(&tokens[from..to]);
            return Some(n + longer);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proposes_what_followed_the_last_ngram() {
        let mut out = Vec::new();
        // "1 2 3 4 5 … 1 2 3" → "4 5 …", a match of three.
        assert_eq!(
            propose(&[1, 2, 3, 4, 5, 6, 9, 1, 2, 3], 2, &mut out),
            Some(3)
        );
        assert_eq!(out, [4, 5]);
        // The match length extends backwards past the n-gram, up to LONGEST_MATCH.
        assert_eq!(
            propose(&[7, 1, 2, 3, 4, 0, 7, 1, 2, 3, 4], 1, &mut out),
            Some(5)
        );
        assert_eq!(out, [0]);
        let long: Vec<u32> = (0..20).chain(0..20).collect();
        assert_eq!(propose(&long, 3, &mut out), Some(LONGEST_MATCH));
        // Among equally long matches the most recent occurrence wins…
        propose(&[1, 2, 7, 0, 1, 2, 8, 0, 1, 2], 1, &mut out);
        assert_eq!(out, [8]);
        // …but one whose context matches further back beats a more recent shorter one.
        assert_eq!(
            propose(
                &[5, 6, 1, 2, 3, 7, 9, 1, 2, 3, 8, 5, 6, 1, 2, 3],
                1,
                &mut out
            ),
            Some(5)
        );
        assert_eq!(out, [7]);
        // Longer n-grams first: "2 3" after "1 2 3" beats a later bare "2 3".
        propose(&[1, 2, 3, 4, 0, 2, 3, 5, 1, 2, 3], 1, &mut out);
        assert_eq!(out, [4]);
        // Falls back to a shorter n-gram, down to the last token alone (a copy realigning after an edit).
        assert_eq!(propose(&[9, 3, 4, 7, 8, 3, 4], 3, &mut out), Some(2));
        assert_eq!(out, [7, 8, 3]);
        assert_eq!(propose(&[5, 6, 7, 1, 2, 6], 2, &mut out), Some(1));
        assert_eq!(out, [7, 1]);
        // A proposal stops at the end of the sequence.
        propose(&[5, 6, 5, 6], 4, &mut out);
        assert_eq!(out, [5, 6]);
    }

    #[test]
    fn nothing_to_propose() {
        let mut out = vec![1];
        assert_eq!(propose(&[1, 2, 3, 4], 4, &mut out), None);
        assert!(out.is_empty());
        assert_eq!(propose(&[1], 4, &mut out), None);
        assert!(out.is_empty());
        assert_eq!(propose(&[1, 2, 1, 2], 0, &mut out), None);
        assert!(out.is_empty());
    }
}
