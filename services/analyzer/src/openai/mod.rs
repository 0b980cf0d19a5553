//! The AI provider: any OpenAI-compatible server for embeddings and
//! analysis. Its settings are always parsed; the client (`client`, the
//! `openai` feature, async-openai) is compiled in by default.

use std::time::Duration;

use secrecy::SecretString;

#[cfg(feature = "openai")]
mod client;
#[cfg(feature = "openai")]
pub use client::*;

/// An OpenAI-compatible provider for embeddings and analysis.
#[derive(Debug, Clone)]
pub struct OpenAiConfig {
    /// `OPENAI_API_KEY` (optional for local compatible servers).
    pub api_key: Option<SecretString>,
    /// `OPENAI_BASE_URL`, e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    /// `EMBEDDING_MODEL`.
    pub embedding_model: String,
    /// Length of the model's vectors (`EMBEDDING_DIMENSIONS`, known for
    /// OpenAI's models).
    pub embedding_dimensions: usize,
    /// Whether to ask the provider for `embedding_dimensions` (OpenAI's
    /// text-embedding-3 models can shorten their vectors).
    pub send_dimensions: bool,
    /// Inputs per embedding request.
    pub embedding_batch: usize,
    /// `CHAT_MODEL`.
    pub chat_model: String,
    /// Longest answer, in tokens.
    pub max_completion_tokens: u32,
    /// Per-attempt timeout.
    pub timeout: Duration,
    /// Retries after the first attempt.
    pub max_retries: usize,
    /// Longest wait before a retry (a longer `Retry-After` is not waited for).
    pub max_retry_wait: Duration,
    /// Prices for the cost estimate, US dollars per million tokens.
    pub embedding_usd_per_mtok: f64,
    /// Chat input price.
    pub chat_input_usd_per_mtok: f64,
    /// Chat output price.
    pub chat_output_usd_per_mtok: f64,
}
