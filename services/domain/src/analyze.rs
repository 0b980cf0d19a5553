//! Analysis: retrieval plus an answer with citations.
//!
//! The answer comes from an [`Analyst`]. With no LLM configured it is the
//! [`ExtractiveAnalyst`]: the retrieved sentences that best match the
//! question, each marked with the citation it came from. An LLM provider
//! implements the same trait.

use std::collections::HashSet;

use async_trait::async_trait;
use futures::stream::BoxStream;
use serde::Serialize;

use crate::chunk::sentences;
use crate::embed::ProviderError;
use crate::embed::tokens;
use crate::retrieval::ChunkHit;

/// A source the answer draws on.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct Citation {
    /// The document id.
    pub document_id: String,
    /// The chunk's position.
    pub chunk: u32,
    /// Its retrieval score.
    pub score: f32,
}

/// Token accounting of one analysis (zero when no LLM was called).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct Usage {
    /// Tokens sent to the model.
    pub prompt_tokens: u64,
    /// Tokens the model produced.
    pub completion_tokens: u64,
    /// Their sum.
    pub total_tokens: u64,
}

/// `POST /v1/analyze` response.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct Analysis {
    /// The answer; `[n]` marks refer to `citations[n-1]`.
    pub answer: String,
    /// The sources, in the order they are first cited.
    pub citations: Vec<Citation>,
    /// Which model answered (`extractive` when no LLM is configured).
    pub model: String,
    /// Token usage.
    pub usage: Usage,
}

/// One event of a streamed answer.
#[derive(Debug, Clone, PartialEq)]
pub enum AnswerEvent {
    /// The next piece of the answer text.
    Delta(String),
    /// The answer is complete.
    Done(Usage),
}

/// A streamed answer: the citations are known before the first delta.
pub struct AnswerStream {
    /// Sources, numbered as the answer's `[n]` marks.
    pub citations: Vec<Citation>,
    /// The model answering.
    pub model: String,
    /// Deltas, then `Done`; an error ends the stream.
    pub events: BoxStream<'static, Result<AnswerEvent, ProviderError>>,
}

/// Produces an answer from a question and retrieved chunks.
#[async_trait]
pub trait Analyst: Send + Sync {
    /// The model name reported in responses.
    fn model(&self) -> &str;
    /// Estimated cost of an answer's usage, in millionths of a US dollar.
    fn cost_micro_usd(&self, _usage: &Usage) -> u64 {
        0
    }
    /// Answer `question` from `hits` (best first).
    async fn analyze(&self, question: &str, hits: &[ChunkHit]) -> Result<Analysis, ProviderError>;
    /// The same answer as a stream. By default, the whole answer is
    /// computed and then sent a sentence at a time.
    async fn analyze_stream(
        &self,
        question: &str,
        hits: &[ChunkHit],
    ) -> Result<AnswerStream, ProviderError> {
        let analysis = self.analyze(question, hits).await?;
        let mut events: Vec<Result<AnswerEvent, ProviderError>> = answer_deltas(&analysis.answer)
            .into_iter()
            .map(|d| Ok(AnswerEvent::Delta(d)))
            .collect();
        events.push(Ok(AnswerEvent::Done(analysis.usage)));
        Ok(AnswerStream {
            citations: analysis.citations,
            model: analysis.model,
            events: Box::pin(futures::stream::iter(events)),
        })
    }
}

/// The built-in analyst: extractive, no LLM.
#[derive(Debug, Clone)]
pub struct ExtractiveAnalyst {
    /// Sentences in an answer at most.
    pub max_sentences: usize,
}

impl Default for ExtractiveAnalyst {
    fn default() -> Self {
        Self { max_sentences: 3 }
    }
}

/// A sentence must score at least this share of the best one to be quoted.
const RELATIVE_CUTOFF: f32 = 0.5;

/// The answer given when nothing relevant was retrieved.
pub const NO_ANSWER: &str = "No relevant passages were found in your documents for this question.";

#[async_trait]
impl Analyst for ExtractiveAnalyst {
    fn model(&self) -> &str {
        "extractive"
    }

    async fn analyze(&self, question: &str, hits: &[ChunkHit]) -> Result<Analysis, ProviderError> {
        let wanted: HashSet<String> = tokens(question).into_iter().collect();
        // Score each sentence by the question words it contains, weighted by
        // its chunk's retrieval score; ties keep retrieval order.
        let mut candidates = Vec::new();
        let mut seen = HashSet::new();
        for (hit_index, hit) in hits.iter().enumerate() {
            for (position, sentence) in sentences(&hit.text).into_iter().enumerate() {
                if !seen.insert(sentence.to_owned()) {
                    continue; // chunk overlap repeats sentences
                }
                let words: HashSet<String> = tokens(sentence).into_iter().collect();
                let overlap = words.intersection(&wanted).count();
                if overlap == 0 {
                    continue;
                }
                let coverage = overlap as f32 / wanted.len().max(1) as f32;
                let score = coverage * (0.5 + hit.score.max(0.0));
                candidates.push((score, hit_index, position, sentence.to_owned()));
            }
        }
        candidates.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        // Most relevant first: the first sentence is the best answer. A
        // sentence far weaker than the best one is noise, not support.
        let best = candidates.first().map_or(0.0, |c| c.0);
        candidates.retain(|c| c.0 >= best * RELATIVE_CUTOFF);
        candidates.truncate(self.max_sentences);

        let mut citations: Vec<Citation> = Vec::new();
        let mut parts = Vec::new();
        for (_, hit_index, _, sentence) in candidates {
            let hit = &hits[hit_index];
            let n = match citations
                .iter()
                .position(|c| c.document_id == hit.document_id && c.chunk == hit.chunk)
            {
                Some(i) => i + 1,
                None => {
                    citations.push(Citation {
                        document_id: hit.document_id.clone(),
                        chunk: hit.chunk,
                        score: hit.score,
                    });
                    citations.len()
                }
            };
            parts.push(format!("{sentence} [{n}]"));
        }
        let answer = if parts.is_empty() {
            NO_ANSWER.to_owned()
        } else {
            parts.join(" ")
        };
        Ok(Analysis {
            answer,
            citations,
            model: self.model().to_owned(),
            usage: Usage::default(),
        })
    }
}

/// Split an answer into stream deltas: one per sentence, spaces kept.
pub fn answer_deltas(answer: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, _) in answer.match_indices("] ") {
        out.push(answer[start..i + 2].to_owned());
        start = i + 2;
    }
    if start < answer.len() {
        out.push(answer[start..].to_owned());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(doc: &str, chunk: u32, score: f32, text: &str) -> ChunkHit {
        ChunkHit {
            document_id: doc.into(),
            chunk,
            score,
            text: text.into(),
            metadata: Default::default(),
            revision: None,
            page: None,
        }
    }

    #[tokio::test]
    async fn the_answer_quotes_matching_sentences_with_citations() {
        let hits = vec![
            hit("q3", 0, 0.8, "Revenue grew 12% in Europe. Costs were flat."),
            hit(
                "q2",
                1,
                0.4,
                "The office moved. Europe revenue was weak last year.",
            ),
        ];
        let a = ExtractiveAnalyst::default()
            .analyze("How did revenue in Europe develop?", &hits)
            .await
            .expect("answer");
        assert_eq!(
            a.answer,
            "Revenue grew 12% in Europe. [1] Europe revenue was weak last year. [2]"
        );
        assert_eq!(a.citations.len(), 2);
        assert_eq!(a.citations[0].document_id, "q3");
        assert_eq!(a.model, "extractive");
    }

    #[tokio::test]
    async fn weakly_related_sentences_are_left_out() {
        let hits = vec![hit(
            "handbook",
            0,
            0.4,
            "Employees accrue 25 vacation days per year. Unused vacation days expire at the end of March. Remote work is allowed three days a week.",
        )];
        let a = ExtractiveAnalyst::default()
            .analyze("When do vacation days expire?", &hits)
            .await
            .expect("answer");
        assert_eq!(
            a.answer,
            "Unused vacation days expire at the end of March. [1] Employees accrue 25 vacation days per year. [1]"
        );
    }

    #[tokio::test]
    async fn no_matching_sentence_gives_the_no_answer_text() {
        let hits = vec![hit("d", 0, 0.1, "Completely unrelated words here.")];
        let a = ExtractiveAnalyst::default()
            .analyze("quarterly revenue", &hits)
            .await
            .expect("answer");
        assert_eq!(a.answer, NO_ANSWER);
        assert!(a.citations.is_empty());
    }

    #[test]
    fn deltas_concatenate_to_the_answer() {
        let answer = "One. [1] Two. [2] Three. [1]";
        assert_eq!(answer_deltas(answer).concat(), answer);
        assert_eq!(answer_deltas(answer).len(), 3);
    }
}
