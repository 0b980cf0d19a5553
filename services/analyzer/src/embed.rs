//! Text embedding behind a trait. The built-in default, [`HashEmbedder`],
//! needs no network and no model: it hashes words and word pairs into a
//! fixed-size, L2-normalized vector (the "hashing trick"), so cosine
//! similarity measures lexical overlap. A remote provider (OpenAI or any
//! OpenAI-compatible server) implements the same trait.

use async_trait::async_trait;

/// A remote provider (embeddings or LLM) failed, after its retries. The
/// text is for logs; clients get a generic problem.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProviderError {
    /// Not reachable, timed out, or still rate limited after retries (503).
    #[error("provider unavailable: {0}")]
    Unavailable(String),
    /// Answered with an error or with something unreadable (502).
    #[error("provider failed: {0}")]
    BadGateway(String),
}

/// Vectors for a batch of texts, and what producing them cost.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Embedded {
    /// One vector per input text, in order.
    pub vectors: Vec<Vec<f32>>,
    /// Tokens the provider billed (0 for the built-in embedder).
    pub tokens: u64,
}

/// Turns texts into dense vectors of a fixed dimension.
#[async_trait]
pub trait Embedder: Send + Sync {
    /// The model name; vectors of different models never share a collection.
    fn model(&self) -> &str;
    /// Length of every vector this embedder returns.
    fn dimensions(&self) -> usize;
    /// Whether a call leaves the process (then query vectors are cached).
    fn is_remote(&self) -> bool {
        false
    }
    /// Estimated cost of `tokens` tokens, in millionths of a US dollar.
    fn cost_micro_usd(&self, _tokens: u64) -> u64 {
        0
    }
    /// One vector per input text, in order.
    async fn embed(&self, texts: &[String]) -> Result<Embedded, ProviderError>;
}

/// The built-in lexical embedder.
#[derive(Debug, Clone)]
pub struct HashEmbedder {
    dimensions: usize,
    model: String,
}

impl HashEmbedder {
    /// Default vector length: small enough to keep 100k chunks in tens of MiB.
    pub const DEFAULT_DIMENSIONS: usize = 256;

    /// An embedder producing `dimensions`-long vectors.
    pub fn new(dimensions: usize) -> Self {
        Self {
            dimensions,
            model: format!("builtin-hash-{dimensions}"),
        }
    }

    /// Embed one text synchronously (it is pure CPU work).
    pub fn embed_one(&self, text: &str) -> Vec<f32> {
        let mut vector = vec![0f32; self.dimensions];
        let tokens = tokens(text);
        let mut add = |feature: &str, weight: f32| {
            let h = fnv1a(feature.as_bytes());
            let index = (h % self.dimensions as u64) as usize;
            // The sign bit spreads collisions so they cancel on average.
            let sign = if h >> 63 == 0 { 1.0 } else { -1.0 };
            vector[index] += sign * weight;
        };
        for token in &tokens {
            add(token, 1.0);
        }
        let mut pair = String::new();
        for window in tokens.windows(2) {
            pair.clear();
            pair.push_str(&window[0]);
            pair.push(' ');
            pair.push_str(&window[1]);
            add(&pair, 0.5);
        }
        // Sublinear term frequency, then unit length for cosine similarity.
        for v in &mut vector {
            *v = v.signum() * (1.0 + v.abs()).ln();
        }
        let norm = vector.iter().map(|v| v * v).sum::<f32>().sqrt();
        if norm > 0.0 {
            for v in &mut vector {
                *v /= norm;
            }
        }
        vector
    }
}

impl Default for HashEmbedder {
    fn default() -> Self {
        Self::new(Self::DEFAULT_DIMENSIONS)
    }
}

#[async_trait]
impl Embedder for HashEmbedder {
    fn model(&self) -> &str {
        &self.model
    }

    fn dimensions(&self) -> usize {
        self.dimensions
    }

    async fn embed(&self, texts: &[String]) -> Result<Embedded, ProviderError> {
        Ok(Embedded {
            vectors: texts.iter().map(|t| self.embed_one(t)).collect(),
            tokens: 0,
        })
    }
}

/// Lower-cased word tokens with common English stop words removed and a
/// light plural stemming, shared with extractive analysis.
pub fn tokens(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .filter(|w| !is_stop_word(w))
        .map(stem)
        .collect()
}

fn stem(word: String) -> String {
    let n = word.chars().count();
    if n > 4 && word.ends_with("ies") {
        format!("{}y", &word[..word.len() - 3])
    } else if n > 3 && word.ends_with('s') && !word.ends_with("ss") && !word.ends_with("us") {
        word[..word.len() - 1].to_owned()
    } else {
        word
    }
}

fn is_stop_word(w: &str) -> bool {
    matches!(
        w,
        "a" | "an"
            | "and"
            | "are"
            | "as"
            | "at"
            | "be"
            | "by"
            | "for"
            | "from"
            | "has"
            | "have"
            | "in"
            | "is"
            | "it"
            | "its"
            | "of"
            | "on"
            | "or"
            | "that"
            | "the"
            | "this"
            | "to"
            | "was"
            | "were"
            | "will"
            | "with"
            | "what"
            | "which"
            | "who"
            | "how"
            | "do"
            | "does"
            | "did"
            | "i"
            | "we"
            | "you"
            | "they"
            | "our"
            | "your"
            | "their"
    )
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cosine(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn vectors_are_unit_length_and_deterministic() {
        let e = HashEmbedder::default();
        let v = e.embed_one("Quarterly revenue grew in Europe");
        assert_eq!(v.len(), HashEmbedder::DEFAULT_DIMENSIONS);
        assert!((cosine(&v, &v) - 1.0).abs() < 1e-4);
        assert_eq!(v, e.embed_one("Quarterly revenue grew in Europe"));
    }

    #[test]
    fn shared_words_score_higher_than_unrelated_text() {
        let e = HashEmbedder::default();
        let q = e.embed_one("revenue growth in Europe");
        let related = e.embed_one("Revenue in Europe grew by 12 percent this quarter.");
        let unrelated = e.embed_one("The cat sat on the warm kitchen floor.");
        assert!(cosine(&q, &related) > cosine(&q, &unrelated) + 0.2);
    }

    #[test]
    fn text_without_words_embeds_to_zero() {
        let e = HashEmbedder::default();
        assert!(e.embed_one(" ... !!! ").iter().all(|v| *v == 0.0));
    }

    #[test]
    fn tokens_drop_stop_words_and_plurals() {
        assert_eq!(
            tokens("The Invoices of companies"),
            vec!["invoice", "company"]
        );
    }
}
