//! The OpenAI-compatible provider's settings (`OPENAI_*`, `EMBEDDING_*`,
//! `CHAT_*`), with the known models' vector lengths and prices.

use std::time::Duration;

use secrecy::SecretString;

use super::ConfigError;
use super::env::{Env, invalid, parse_opt, parse_or, positive};
use crate::openai::OpenAiConfig;

/// Known vector lengths of OpenAI's embedding models.
pub(super) fn known_dimensions(model: &str) -> Option<usize> {
    match model {
        "text-embedding-3-small" | "text-embedding-ada-002" => Some(1536),
        "text-embedding-3-large" => Some(3072),
        _ => None,
    }
}

/// List prices (US dollars per million tokens) of OpenAI's models, for the
/// cost estimate; `(input, output)`.
pub(super) fn known_prices(model: &str) -> (f64, f64) {
    match model {
        "text-embedding-3-small" => (0.02, 0.0),
        "text-embedding-3-large" => (0.13, 0.0),
        "text-embedding-ada-002" => (0.10, 0.0),
        "gpt-4o-mini" => (0.15, 0.60),
        "gpt-4o" => (2.50, 10.0),
        "gpt-4.1-mini" => (0.40, 1.60),
        "gpt-4.1" => (2.0, 8.0),
        _ => (0.0, 0.0),
    }
}

pub(super) fn openai_config(env: &dyn Env) -> Result<Option<OpenAiConfig>, ConfigError> {
    let api_key = env.var("OPENAI_API_KEY");
    let base_url = env.var("OPENAI_BASE_URL");
    if api_key.is_none() && base_url.is_none() {
        return Ok(None);
    }
    let base_url = base_url.unwrap_or_else(|| "https://api.openai.com/v1".to_owned());
    if !(base_url.starts_with("https://") || base_url.starts_with("http://")) {
        return Err(invalid("OPENAI_BASE_URL", "expected an http(s):// URL"));
    }
    let embedding_model = env
        .var("EMBEDDING_MODEL")
        .unwrap_or_else(|| "text-embedding-3-small".to_owned());
    let chat_model = env
        .var("CHAT_MODEL")
        .unwrap_or_else(|| "gpt-4o-mini".to_owned());
    let explicit_dims: Option<usize> = parse_opt(env, "EMBEDDING_DIMENSIONS")?;
    let embedding_dimensions = match (explicit_dims, known_dimensions(&embedding_model)) {
        (Some(0), _) => {
            return Err(invalid(
                "EMBEDDING_DIMENSIONS",
                "expected a value greater than zero",
            ));
        }
        (Some(d), _) => d,
        (None, Some(d)) => d,
        (None, None) => {
            return Err(invalid(
                "EMBEDDING_DIMENSIONS",
                format!("required for the embedding model `{embedding_model}` (its vector length)"),
            ));
        }
    };
    let send_dimensions =
        explicit_dims.is_some() && embedding_model.starts_with("text-embedding-3");
    let price = |name: &str, default: f64| -> Result<f64, ConfigError> {
        let value: f64 = parse_or(env, name, default)?;
        if !(value.is_finite() && value >= 0.0) {
            return Err(invalid(name, "expected a non-negative number"));
        }
        Ok(value)
    };
    let (chat_in, chat_out) = known_prices(&chat_model);
    let config = OpenAiConfig {
        api_key: api_key.map(SecretString::from),
        base_url: base_url.trim_end_matches('/').to_owned(),
        embedding_dimensions,
        send_dimensions,
        embedding_batch: parse_or(env, "EMBEDDING_BATCH_SIZE", 128)?,
        max_completion_tokens: parse_or(env, "CHAT_MAX_TOKENS", 800)?,
        timeout: Duration::from_secs(parse_or(env, "OPENAI_TIMEOUT_SECONDS", 30u64)?),
        max_retries: parse_or(env, "OPENAI_MAX_RETRIES", 3)?,
        max_retry_wait: Duration::from_secs(parse_or(env, "OPENAI_MAX_RETRY_WAIT_SECONDS", 10u64)?),
        embedding_usd_per_mtok: price(
            "EMBEDDING_PRICE_PER_MTOK",
            known_prices(&embedding_model).0,
        )?,
        chat_input_usd_per_mtok: price("CHAT_PRICE_INPUT_PER_MTOK", chat_in)?,
        chat_output_usd_per_mtok: price("CHAT_PRICE_OUTPUT_PER_MTOK", chat_out)?,
        embedding_model,
        chat_model,
    };
    positive(config.embedding_batch as u64, "EMBEDDING_BATCH_SIZE")?;
    positive(u64::from(config.max_completion_tokens), "CHAT_MAX_TOKENS")?;
    positive(config.timeout.as_secs(), "OPENAI_TIMEOUT_SECONDS")?;
    Ok(Some(config))
}
