//! Text embedding behind a trait. The built-in default, [`HashEmbedder`],
//! needs no network and no model: it hashes words to dimensions of a
//! 2³²-wide space and weighs them, an L2-normalized
//! *sparse* vector, so that the dot product (cosine similarity) measures
//! lexical overlap. The vector stores keep such vectors in an inverted
//! index and search it exactly, where a dense graph (HNSW) of
//! near-orthogonal vectors found less than half of the true top hits
//! (docs/benchmarks/history.md). A remote provider (OpenAI or any OpenAI-compatible
//! server) implements the same trait with dense vectors.

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

/// The kind of vectors an embedder makes, which decides how the vector
/// store keeps and searches them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VectorSpace {
    /// Dense vectors of this length, searched through an HNSW graph.
    Dense(usize),
    /// Sparse vectors, searched exactly through an inverted index.
    Sparse,
}

/// One text's vector.
#[derive(Debug, Clone, PartialEq)]
pub enum Embedding {
    /// Every dimension's value.
    Dense(Vec<f32>),
    /// The non-zero dimensions only, in ascending order of index.
    Sparse(SparseVector),
}

impl Embedding {
    /// Bytes the vector takes in a store: 4 per value, and 4 per index of
    /// a sparse one.
    pub fn stored_bytes(&self) -> usize {
        match self {
            Self::Dense(values) => values.len() * 4,
            Self::Sparse(sparse) => sparse.values.len() * 8,
        }
    }
}

/// A sparse vector: `values[i]` is the value of dimension `indices[i]`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SparseVector {
    /// Strictly ascending dimension indices.
    pub indices: Vec<u32>,
    /// The value at each index.
    pub values: Vec<f32>,
}

impl SparseVector {
    /// The dot product with another sparse vector (both sorted by index).
    pub fn dot(&self, other: &SparseVector) -> f32 {
        let (mut i, mut j, mut sum) = (0, 0, 0.0);
        while i < self.indices.len() && j < other.indices.len() {
            match self.indices[i].cmp(&other.indices[j]) {
                std::cmp::Ordering::Less => i += 1,
                std::cmp::Ordering::Greater => j += 1,
                std::cmp::Ordering::Equal => {
                    sum += self.values[i] * other.values[j];
                    i += 1;
                    j += 1;
                }
            }
        }
        sum
    }
}

/// Vectors for a batch of texts, and what producing them cost.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Embedded {
    /// One vector per input text, in order.
    pub vectors: Vec<Embedding>,
    /// Tokens the provider billed (0 for the built-in embedder).
    pub tokens: u64,
}

/// Turns texts into vectors.
#[async_trait]
pub trait Embedder: Send + Sync {
    /// The model name; vectors of different models never share a collection.
    fn model(&self) -> &str;
    /// The kind of every vector this embedder returns.
    fn space(&self) -> VectorSpace;
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

/// The built-in lexical embedder: sparse vectors of hashed words.
///
/// Words only, no word pairs: a pair is nearly always new to the corpus
/// (in the benchmark's corpus, every one), so pairs made one posting list
/// per pair in the inverted index, and the engine keeps a map entry per
/// list in memory and rebuilds every list of a segment when it merges it:
/// some 8 million lists for 100,000 chunks, and a peak heap of 1.55 GB
/// where words alone peak at 240 MB (docs/benchmarks/history.md).
#[derive(Debug, Clone, Default)]
pub struct HashEmbedder;

impl HashEmbedder {
    /// The model name. Its vectors are sparse, so it names no dimension.
    /// Shards and collections of the former built-in models
    /// (`builtin-hash-256`, dense; `builtin-lexical`, words and word
    /// pairs) are left where they are and rebuilt under this name from the
    /// database.
    pub const MODEL: &'static str = "builtin-words";

    /// Embed one text synchronously (it is pure CPU work).
    pub fn embed_one(&self, text: &str) -> SparseVector {
        // How often each word's dimension occurs.
        let mut counts: std::collections::BTreeMap<u32, f32> = std::collections::BTreeMap::new();
        for token in tokens(text) {
            let h = fnv1a(token.as_bytes());
            // Fold the 64-bit hash: two words collide once in 2³² pairs.
            let index = (h ^ (h >> 32)) as u32;
            *counts.entry(index).or_default() += 1.0;
        }
        // Sublinear term frequency, then unit length for cosine similarity.
        let (indices, mut values): (Vec<u32>, Vec<f32>) = counts
            .into_iter()
            .map(|(index, count)| (index, (1.0 + count).ln()))
            .unzip();
        let norm = values.iter().map(|v| v * v).sum::<f32>().sqrt();
        if norm > 0.0 {
            for v in &mut values {
                *v /= norm;
            }
        }
        SparseVector { indices, values }
    }
}

#[async_trait]
impl Embedder for HashEmbedder {
    fn model(&self) -> &str {
        Self::MODEL
    }

    fn space(&self) -> VectorSpace {
        VectorSpace::Sparse
    }

    async fn embed(&self, texts: &[String]) -> Result<Embedded, ProviderError> {
        Ok(Embedded {
            vectors: texts
                .iter()
                .map(|t| Embedding::Sparse(self.embed_one(t)))
                .collect(),
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

    #[test]
    fn vectors_are_unit_length_sorted_and_deterministic() {
        let e = HashEmbedder;
        let v = e.embed_one("Quarterly revenue grew in Europe");
        // 4 words (no stop words but "in"), each once.
        assert_eq!(v.indices.len(), 4);
        assert!(v.values.iter().all(|w| (w - 0.5).abs() < 1e-6));
        assert_eq!(v.indices.len(), v.values.len());
        assert!(
            v.indices.windows(2).all(|w| w[0] < w[1]),
            "strictly ascending"
        );
        assert!((v.dot(&v) - 1.0).abs() < 1e-4);
        assert_eq!(v, e.embed_one("Quarterly revenue grew in Europe"));
    }

    #[test]
    fn shared_words_score_higher_than_unrelated_text() {
        let e = HashEmbedder;
        let q = e.embed_one("revenue growth in Europe");
        let related = e.embed_one("Revenue in Europe grew by 12 percent this quarter.");
        let unrelated = e.embed_one("The cat sat on the warm kitchen floor.");
        assert!(q.dot(&related) > q.dot(&unrelated) + 0.2);
        assert_eq!(q.dot(&unrelated), 0.0, "no shared word, no similarity");
    }

    #[test]
    fn repeated_words_weigh_sublinearly() {
        let e = HashEmbedder;
        let value_of = |v: &SparseVector, word: &str| {
            let index = e.embed_one(word).indices[0];
            v.indices
                .iter()
                .position(|i| *i == index)
                .map(|at| v.values[at])
                .expect("the word is in the vector")
        };
        let v = e.embed_one("invoice invoice invoice overdue");
        // ln(1 + 3) against ln(1 + 1): twice the weight, not three times.
        let ratio = value_of(&v, "invoice") / value_of(&v, "overdue");
        assert!((ratio - 2.0).abs() < 1e-4, "{ratio}");
        let once = e.embed_one("invoice");
        assert!(once.dot(&v) > once.dot(&e.embed_one("invoice overdue")));
    }

    #[test]
    fn text_without_words_embeds_to_nothing() {
        let e = HashEmbedder;
        let v = e.embed_one(" ... !!! ");
        assert!(v.indices.is_empty() && v.values.is_empty());
    }

    #[test]
    fn sparse_dot_products_match_a_dense_reckoning() {
        let a = SparseVector {
            indices: vec![1, 4, 9],
            values: vec![0.5, -1.0, 2.0],
        };
        let b = SparseVector {
            indices: vec![0, 4, 9, 12],
            values: vec![3.0, 2.0, 0.25, 7.0],
        };
        assert_eq!(a.dot(&b), -2.0 + 0.5);
        assert_eq!(b.dot(&a), a.dot(&b));
    }

    #[test]
    fn tokens_drop_stop_words_and_plurals() {
        assert_eq!(
            tokens("The Invoices of companies"),
            vec!["invoice", "company"]
        );
    }
}
