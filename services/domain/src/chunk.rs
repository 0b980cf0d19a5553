//! Sentence-aware chunking of document text before embedding.
//!
//! Sentences are packed into chunks of about `chunk_chars` characters; the
//! next chunk repeats the last whole sentences of the previous one, up to
//! `overlap_chars`, so a fact that straddles a boundary is still retrievable.
//! A sentence longer than a chunk is cut at word boundaries.

/// How documents are split before embedding.
#[derive(Debug, Clone, Copy)]
pub struct ChunkingConfig {
    /// Target chunk size, in characters.
    pub chunk_chars: usize,
    /// Characters repeated from the end of one chunk at the start of the next.
    pub overlap_chars: usize,
}

/// Split `text` into chunks. Empty or whitespace-only text yields no chunks.
pub fn chunk_text(text: &str, config: ChunkingConfig) -> Vec<String> {
    let max = config.chunk_chars.max(1);
    let units: Vec<&str> = sentences(text)
        .into_iter()
        .flat_map(|s| split_long(s, max))
        .collect();

    let mut chunks = Vec::new();
    let mut current: Vec<&str> = Vec::new();
    let mut current_len = 0usize;
    // How many leading sentences of `current` were carried over as overlap:
    // a chunk made only of overlap adds nothing and is not emitted.
    let mut carried = 0usize;

    for unit in units {
        let len = unit.chars().count();
        let joined_len = if current.is_empty() {
            len
        } else {
            current_len + 1 + len
        };
        if joined_len > max && current.len() > carried {
            chunks.push(current.join(" "));
            let overlap = overlap_tail(&current, config.overlap_chars, max.saturating_sub(len + 1));
            carried = overlap.len();
            current_len = char_len_joined(&overlap);
            current = overlap;
        } else if joined_len > max {
            // Only overlap in the buffer and the new sentence does not fit
            // beside it: drop the overlap.
            current.clear();
            current_len = 0;
            carried = 0;
        }
        current_len = if current.is_empty() {
            len
        } else {
            current_len + 1 + len
        };
        current.push(unit);
    }
    if current.len() > carried {
        chunks.push(current.join(" "));
    }
    chunks
}

/// The last sentences of `chunk` whose joined length stays within both bounds.
fn overlap_tail<'a>(chunk: &[&'a str], overlap: usize, room: usize) -> Vec<&'a str> {
    let budget = overlap.min(room);
    let mut taken = 0usize;
    let mut start = chunk.len();
    for (i, s) in chunk.iter().enumerate().rev() {
        let add = s.chars().count() + usize::from(taken > 0);
        if taken + add > budget {
            break;
        }
        taken += add;
        start = i;
    }
    chunk[start..].to_vec()
}

fn char_len_joined(parts: &[&str]) -> usize {
    parts.iter().map(|p| p.chars().count()).sum::<usize>() + parts.len().saturating_sub(1)
}

/// Split text into trimmed sentences: a sentence ends at `.`, `!` or `?`
/// followed by whitespace, or at a blank line.
pub fn sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let end = match c {
            '.' | '!' | '?' | '。' | '！' | '？' => match chars.peek() {
                Some((_, next)) if next.is_whitespace() => Some(i + c.len_utf8()),
                None => Some(i + c.len_utf8()),
                _ => None,
            },
            '\n' => match chars.peek() {
                Some((_, '\n')) | Some((_, '\r')) => Some(i),
                _ => None,
            },
            _ => None,
        };
        if let Some(end) = end {
            push_trimmed(&mut out, &text[start..end]);
            start = end;
        }
    }
    push_trimmed(&mut out, &text[start..]);
    out
}

fn push_trimmed<'a>(out: &mut Vec<&'a str>, s: &'a str) {
    let s = s.trim();
    if !s.is_empty() {
        out.push(s);
    }
}

/// Cut a sentence longer than `max` characters at word boundaries (or
/// anywhere, for a single word longer than `max`).
fn split_long(sentence: &str, max: usize) -> Vec<&str> {
    if sentence.chars().count() <= max {
        return vec![sentence];
    }
    let mut parts = Vec::new();
    let mut rest = sentence;
    while rest.chars().count() > max {
        // Byte offset just past the `max`-th character.
        let limit = rest.char_indices().nth(max).map_or(rest.len(), |(i, _)| i);
        let cut = rest[..limit]
            .rfind(char::is_whitespace)
            .filter(|&i| i > 0)
            .unwrap_or(limit);
        parts.push(rest[..cut].trim());
        rest = rest[cut..].trim_start();
    }
    if !rest.is_empty() {
        parts.push(rest);
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(chunk_chars: usize, overlap_chars: usize) -> ChunkingConfig {
        ChunkingConfig {
            chunk_chars,
            overlap_chars,
        }
    }

    #[test]
    fn short_text_is_one_chunk() {
        assert_eq!(
            chunk_text("Hello world. Bye.", cfg(100, 20)),
            vec!["Hello world. Bye."]
        );
    }

    #[test]
    fn empty_text_has_no_chunks() {
        assert!(chunk_text("  \n\n ", cfg(100, 20)).is_empty());
    }

    #[test]
    fn sentences_split_on_terminators_and_blank_lines() {
        assert_eq!(
            sentences("One. Two! Three? v1.2 stays\n\nFour"),
            vec!["One.", "Two!", "Three?", "v1.2 stays", "Four"]
        );
    }

    #[test]
    fn chunks_respect_the_size_and_carry_sentence_overlap() {
        let text = "Alpha is first. Beta is second. Gamma is third. Delta is fourth.";
        let chunks = chunk_text(text, cfg(35, 16));
        assert_eq!(
            chunks,
            vec![
                "Alpha is first. Beta is second.",
                "Beta is second. Gamma is third.",
                "Gamma is third. Delta is fourth.",
            ]
        );
        for c in &chunks {
            assert!(c.chars().count() <= 35, "{c}");
        }
    }

    #[test]
    fn a_sentence_longer_than_a_chunk_is_cut_at_words() {
        let text = "word ".repeat(30);
        let chunks = chunk_text(&text, cfg(50, 0));
        assert!(chunks.len() >= 3);
        for c in &chunks {
            assert!(c.chars().count() <= 50, "{c}");
            assert!(!c.contains("wor d"));
        }
        assert_eq!(chunks.join(" ").split_whitespace().count(), 30);
    }

    #[test]
    fn multibyte_text_is_cut_on_character_boundaries() {
        let text = "é".repeat(120);
        let chunks = chunk_text(&text, cfg(50, 10));
        assert_eq!(chunks.iter().map(|c| c.chars().count()).sum::<usize>(), 120);
    }

    #[test]
    fn random_text_never_panics_loses_nothing_and_stays_within_the_size() {
        use rand::{Rng as _, SeedableRng as _};
        const PIECES: &[&str] = &[
            "word",
            " ",
            "  ",
            "\n",
            "\n\n",
            "\r\n",
            ". ",
            "!",
            "?",
            "。",
            "！",
            "é",
            "💥",
            "\u{202e}",
            "\t",
            "v1.2",
            "a.b.c",
            "ﬁ",
            "\u{0301}",
            "longwordlongwordlongword",
        ];
        let mut rng = rand::rngs::StdRng::seed_from_u64(23);
        for case in 0..2_000 {
            let text: String = (0..rng.random_range(0..200))
                .map(|_| PIECES[rng.random_range(0..PIECES.len())])
                .collect();
            let (max, overlap) = (rng.random_range(1..60), rng.random_range(0..40));
            let chunks = chunk_text(&text, cfg(max, overlap));
            for chunk in &chunks {
                assert!(
                    !chunk.trim().is_empty(),
                    "case {case}: an empty chunk of {text:?}"
                );
                assert!(
                    chunk.chars().count() <= max,
                    "case {case}: {chunk:?} is over {max} characters"
                );
            }
            let kept: usize = chunks
                .iter()
                .map(|c| c.chars().filter(|c| !c.is_whitespace()).count())
                .sum();
            let given = text.chars().filter(|c| !c.is_whitespace()).count();
            assert!(
                kept >= given,
                "case {case}: {given} characters in, {kept} kept: {text:?}"
            );
        }
    }
}
