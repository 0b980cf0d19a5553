//! A synthetic corpus: pseudo-words from a fixed vocabulary, drawn by a
//! seeded generator, so every run ingests the same text and the hashed
//! embedder spreads it over the whole vector space.

use serde_json::{Value, json};

/// A small deterministic generator (xorshift64*).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const SYLLABLES: [&str; 24] = [
    "ka", "lo", "mi", "ten", "ra", "vo", "shi", "pel", "dra", "nu", "qua", "zor", "bel", "fin",
    "gro", "hal", "jus", "mar", "nex", "ost", "pri", "sul", "tor", "ux",
];

/// The vocabulary: 24³ three-syllable words.
pub fn word(i: usize) -> String {
    let n = SYLLABLES.len();
    let i = i % (n * n * n);
    format!(
        "{}{}{}",
        SYLLABLES[i / (n * n)],
        SYLLABLES[(i / n) % n],
        SYLLABLES[i % n]
    )
}

const VOCABULARY: usize = 24 * 24 * 24;

/// A sentence of 8 to 15 words.
pub fn sentence(rng: &mut Rng) -> String {
    let len = 8 + rng.below(8);
    let mut words: Vec<String> = (0..len).map(|_| word(rng.below(VOCABULARY))).collect();
    if let Some(first) = words.first_mut() {
        first[..1].make_ascii_uppercase();
    }
    format!("{}.", words.join(" "))
}

/// Text of about `chars` characters.
pub fn text(rng: &mut Rng, chars: usize) -> String {
    let mut out = String::with_capacity(chars + 128);
    while out.len() < chars {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&sentence(rng));
    }
    out
}

/// A query of three vocabulary words, plus `unique` when given (a token
/// no document holds, which makes the request's cache key new).
pub fn query(rng: &mut Rng, unique: Option<&str>) -> String {
    let mut q = (0..3)
        .map(|_| word(rng.below(VOCABULARY)))
        .collect::<Vec<_>>()
        .join(" ");
    if let Some(u) = unique {
        q.push(' ');
        q.push_str(u);
    }
    q
}

/// An ingest body: `docs` documents named `{prefix}-{i}` of about
/// `chars` characters each.
pub fn batch(rng: &mut Rng, prefix: &str, first: usize, docs: usize, chars: usize) -> Value {
    let documents: Vec<Value> = (first..first + docs)
        .map(|i| {
            json!({
                "id": format!("{prefix}-{i}"),
                "text": text(rng, chars),
                "metadata": {"shard": (i % 8) as i64},
            })
        })
        .collect();
    json!({ "documents": documents })
}
