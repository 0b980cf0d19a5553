//! OpenAI, or any OpenAI-compatible server (vLLM, Ollama, Azure), through
//! async-openai: embeddings for ingest and queries, chat completions for
//! `/v1/analyze`.
//!
//! Every call goes through one tower stack: a retry policy (429 and 5xx and
//! connection failures; `Retry-After` honoured up to a bound; exponential
//! backoff with jitter otherwise) over reqwest with a per-attempt timeout.
//! A failure after the retries is a [`ProviderError`]: 503 when the
//! provider is unreachable or still limiting, 502 when it answered wrong.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::middleware::HttpRequestFactory;
use async_openai::types::chat::{
    ChatCompletionRequestMessage, ChatCompletionRequestSystemMessage,
    ChatCompletionRequestUserMessage, ChatCompletionStreamOptions, CreateChatCompletionRequest,
};
use async_openai::types::embeddings::{CreateEmbeddingRequest, EmbeddingInput};
use async_trait::async_trait;
use futures::StreamExt as _;
use secrecy::ExposeSecret as _;

use analyzer_domain::analyze::{Analysis, Analyst, AnswerEvent, AnswerStream, Citation, Usage};
use analyzer_domain::embed::{Embedded, Embedder, ProviderError};
use analyzer_domain::retrieval::ChunkHit;

use super::OpenAiConfig;

/// The shared client.
#[derive(Clone)]
pub struct OpenAi {
    client: Client<OpenAIConfig>,
    config: Arc<OpenAiConfig>,
}

impl std::fmt::Debug for OpenAi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAi")
            .field("base_url", &self.config.base_url)
            .finish_non_exhaustive()
    }
}

impl OpenAi {
    /// Build the client with its retry and timeout stack.
    pub fn new(config: OpenAiConfig) -> Result<Self, ProviderError> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(5)))
            .build()
            .map_err(|e| ProviderError::Unavailable(e.to_string()))?;
        let service = tower::ServiceBuilder::new()
            .retry(RetryPolicy::new(config.max_retries, config.max_retry_wait))
            .service(TracedHttp { client: http });
        let mut api = OpenAIConfig::new().with_api_base(config.base_url.clone());
        if let Some(key) = &config.api_key {
            api = api.with_api_key(key.expose_secret());
        }
        let client = Client::with_config(api).with_http_service(service);
        Ok(Self {
            client,
            config: Arc::new(config),
        })
    }

    /// The embedder of this provider.
    pub fn embedder(&self) -> OpenAiEmbedder {
        OpenAiEmbedder { api: self.clone() }
    }

    /// The analyst of this provider.
    pub fn analyst(&self) -> OpenAiAnalyst {
        OpenAiAnalyst { api: self.clone() }
    }
}

/// The transport under the retry layer: reqwest, with each attempt
/// carrying the calling span's W3C trace context (`traceparent`).
#[derive(Clone, Debug)]
struct TracedHttp {
    client: reqwest::Client,
}

impl tower::Service<HttpRequestFactory> for TracedHttp {
    type Response = reqwest::Response;
    type Error = OpenAIError;
    type Future = Pin<Box<dyn Future<Output = Result<reqwest::Response, OpenAIError>> + Send>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: HttpRequestFactory) -> Self::Future {
        // Read here, in the caller's span; the future may run later.
        let mut trace = http::HeaderMap::new();
        analyzer_telemetry::propagation::inject(&mut trace);
        let client = self.client.clone();
        Box::pin(async move {
            let mut request = request.build().await?;
            request.headers_mut().extend(trace);
            client.execute(request).await.map_err(OpenAIError::Reqwest)
        })
    }
}

/// Map a failure after retries to what the client is told.
fn provider_error(e: OpenAIError) -> ProviderError {
    match e {
        OpenAIError::ApiError(response) => {
            let status = response.status_code.as_u16();
            let text = format!("HTTP {status}: {}", response.api_error.message);
            if status == 429 || status == 408 {
                ProviderError::Unavailable(text)
            } else {
                ProviderError::BadGateway(text)
            }
        }
        OpenAIError::Reqwest(e) if e.is_timeout() || e.is_connect() => {
            ProviderError::Unavailable(e.without_url().to_string())
        }
        OpenAIError::Reqwest(e) => ProviderError::BadGateway(e.without_url().to_string()),
        OpenAIError::JSONDeserialize(e, _) => {
            ProviderError::BadGateway(format!("unreadable answer: {e}"))
        }
        other => ProviderError::BadGateway(other.to_string()),
    }
}

fn micro_usd(tokens: u64, usd_per_million: f64) -> u64 {
    // usd_per_million / 1e6 per token, in millionths of a dollar: the same number.
    (tokens as f64 * usd_per_million).round() as u64
}

// ---- embeddings ----------------------------------------------------------

/// Embeddings from the provider.
#[derive(Debug, Clone)]
pub struct OpenAiEmbedder {
    api: OpenAi,
}

#[async_trait]
impl Embedder for OpenAiEmbedder {
    fn model(&self) -> &str {
        &self.api.config.embedding_model
    }

    fn space(&self) -> analyzer_domain::embed::VectorSpace {
        analyzer_domain::embed::VectorSpace::Dense(self.api.config.embedding_dimensions)
    }

    fn is_remote(&self) -> bool {
        true
    }

    fn cost_micro_usd(&self, tokens: u64) -> u64 {
        micro_usd(tokens, self.api.config.embedding_usd_per_mtok)
    }

    #[tracing::instrument(name = "openai.embeddings", skip_all, fields(model = %self.api.config.embedding_model, inputs = texts.len(), tenant_id, tier, route))]
    async fn embed(&self, texts: &[String]) -> Result<Embedded, ProviderError> {
        analyzer_telemetry::record_seat(&tracing::Span::current());
        let config = &self.api.config;
        let mut out = Embedded {
            vectors: Vec::with_capacity(texts.len()),
            tokens: 0,
        };
        // Batches keep each request within the provider's input limits.
        for batch in texts.chunks(config.embedding_batch.max(1)) {
            let request = CreateEmbeddingRequest {
                model: config.embedding_model.clone(),
                input: EmbeddingInput::StringArray(batch.to_vec()),
                dimensions: config
                    .send_dimensions
                    .then(|| u32::try_from(config.embedding_dimensions).unwrap_or(u32::MAX)),
                ..Default::default()
            };
            let began = std::time::Instant::now();
            let response = self.api.client.embeddings().create(request).await;
            analyzer_telemetry::metrics::metrics().llm_duration.record(
                began.elapsed().as_secs_f64(),
                &[
                    opentelemetry::KeyValue::new("model", config.embedding_model.clone()),
                    opentelemetry::KeyValue::new("operation", "embeddings"),
                    opentelemetry::KeyValue::new(
                        "outcome",
                        if response.is_ok() { "ok" } else { "error" },
                    ),
                ],
            );
            let response = response.map_err(provider_error)?;
            if response.data.len() != batch.len() {
                return Err(ProviderError::BadGateway(format!(
                    "asked for {} embeddings, got {}",
                    batch.len(),
                    response.data.len()
                )));
            }
            let mut data = response.data;
            data.sort_by_key(|e| e.index);
            for embedding in data {
                if embedding.embedding.len() != config.embedding_dimensions {
                    return Err(ProviderError::BadGateway(format!(
                        "embedding has {} dimensions, expected {} (EMBEDDING_DIMENSIONS)",
                        embedding.embedding.len(),
                        config.embedding_dimensions
                    )));
                }
                out.vectors.push(analyzer_domain::embed::Embedding::Dense(
                    embedding.embedding,
                ));
            }
            out.tokens += u64::from(response.usage.prompt_tokens);
        }
        Ok(out)
    }
}

// ---- analysis ------------------------------------------------------------

/// Answers from the chat model, grounded in the retrieved chunks.
#[derive(Debug, Clone)]
pub struct OpenAiAnalyst {
    api: OpenAi,
}

/// The instructions: answer from the numbered sources only, cite them.
pub const SYSTEM_PROMPT: &str = "You answer questions using only the numbered sources provided. \
After each statement, cite the sources it comes from as [n], using the source numbers. \
If the sources do not contain the answer, say that the documents do not answer the question. \
Do not use outside knowledge. Be concise.";

/// The user message: the sources, numbered as the citations, then the question.
pub fn user_prompt(question: &str, hits: &[ChunkHit]) -> String {
    let mut prompt = String::from("Sources:\n");
    for (i, hit) in hits.iter().enumerate() {
        prompt.push_str(&format!(
            "[{}] (document {}, chunk {})\n{}\n\n",
            i + 1,
            hit.document_id,
            hit.chunk,
            hit.text
        ));
    }
    prompt.push_str("Question: ");
    prompt.push_str(question);
    prompt
}

/// Every retrieved chunk, numbered as in the prompt: `[n]` in the answer
/// refers to `citations[n-1]`.
fn citations(hits: &[ChunkHit]) -> Vec<Citation> {
    hits.iter()
        .map(|h| Citation {
            document_id: h.document_id.clone(),
            chunk: h.chunk,
            score: h.score,
        })
        .collect()
}

impl OpenAiAnalyst {
    fn request(
        &self,
        question: &str,
        hits: &[ChunkHit],
        stream: bool,
    ) -> CreateChatCompletionRequest {
        let config = &self.api.config;
        CreateChatCompletionRequest {
            model: config.chat_model.clone(),
            messages: vec![
                ChatCompletionRequestMessage::from(ChatCompletionRequestSystemMessage::from(
                    SYSTEM_PROMPT,
                )),
                ChatCompletionRequestMessage::from(ChatCompletionRequestUserMessage::from(
                    user_prompt(question, hits).as_str(),
                )),
            ],
            max_completion_tokens: Some(config.max_completion_tokens),
            temperature: Some(0.0),
            stream: stream.then_some(true),
            stream_options: stream.then_some(ChatCompletionStreamOptions {
                include_usage: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn usage(prompt: u32, completion: u32) -> Usage {
        Usage {
            prompt_tokens: u64::from(prompt),
            completion_tokens: u64::from(completion),
            total_tokens: u64::from(prompt) + u64::from(completion),
        }
    }
}

#[async_trait]
impl Analyst for OpenAiAnalyst {
    fn model(&self) -> &str {
        &self.api.config.chat_model
    }

    fn cost_micro_usd(&self, usage: &Usage) -> u64 {
        let config = &self.api.config;
        micro_usd(usage.prompt_tokens, config.chat_input_usd_per_mtok)
            + micro_usd(usage.completion_tokens, config.chat_output_usd_per_mtok)
    }

    #[tracing::instrument(name = "openai.chat", skip_all, fields(model = %self.api.config.chat_model, sources = hits.len(), tenant_id, tier, route))]
    async fn analyze(&self, question: &str, hits: &[ChunkHit]) -> Result<Analysis, ProviderError> {
        analyzer_telemetry::record_seat(&tracing::Span::current());
        let response = self
            .api
            .client
            .chat()
            .create(self.request(question, hits, false))
            .await
            .map_err(provider_error)?;
        let answer = response
            .choices
            .into_iter()
            .next()
            .and_then(|c| c.message.content)
            .ok_or_else(|| ProviderError::BadGateway("the model returned no answer".into()))?;
        let usage = response
            .usage
            .map(|u| Self::usage(u.prompt_tokens, u.completion_tokens))
            .unwrap_or_default();
        Ok(Analysis {
            answer,
            citations: citations(hits),
            model: response.model,
            usage,
        })
    }

    async fn analyze_stream(
        &self,
        question: &str,
        hits: &[ChunkHit],
    ) -> Result<AnswerStream, ProviderError> {
        let stream = self
            .api
            .client
            .chat()
            .create_stream(self.request(question, hits, true))
            .await
            .map_err(provider_error)?;
        let model = self.api.config.chat_model.clone();
        let events = async_stream::stream! {
            let mut stream = stream;
            let mut usage = Usage::default();
            while let Some(item) = stream.next().await {
                match item {
                    Ok(chunk) => {
                        if let Some(u) = chunk.usage {
                            usage = Self::usage(u.prompt_tokens, u.completion_tokens);
                        }
                        for choice in chunk.choices {
                            if let Some(text) = choice.delta.content.filter(|t| !t.is_empty()) {
                                yield Ok(AnswerEvent::Delta(text));
                            }
                        }
                    }
                    Err(e) => {
                        yield Err(provider_error(e));
                        return;
                    }
                }
            }
            yield Ok(AnswerEvent::Done(usage));
        };
        Ok(AnswerStream {
            citations: citations(hits),
            model,
            events: Box::pin(events),
        })
    }
}

// ---- retries -------------------------------------------------------------

/// Retries 429, 5xx and connection failures: `Retry-After` when the
/// provider sends one (and it is within `max_wait`), else exponential
/// backoff from 200 ms with full jitter, capped at `max_wait`.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    max_retries: usize,
    attempts: usize,
    max_wait: Duration,
}

impl RetryPolicy {
    /// At most `max_retries` retries, none waiting longer than `max_wait`.
    pub fn new(max_retries: usize, max_wait: Duration) -> Self {
        Self {
            max_retries,
            attempts: 0,
            max_wait,
        }
    }

    /// How long to wait before the next attempt, or `None` to give up.
    pub fn delay(
        &self,
        status: Option<u16>,
        retry_after: Option<&str>,
        connect_error: bool,
    ) -> Option<Duration> {
        if self.attempts >= self.max_retries {
            return None;
        }
        let retryable = connect_error || matches!(status, Some(429) | Some(500..=599));
        if !retryable {
            return None;
        }
        if let Some(seconds) = retry_after.and_then(|v| v.trim().parse::<u64>().ok()) {
            let wait = Duration::from_secs(seconds);
            // A wait longer than we may spend is not worth holding the request.
            return (wait <= self.max_wait).then_some(wait);
        }
        let exp = 200u64.saturating_mul(1 << self.attempts.min(16));
        let cap = u64::try_from(self.max_wait.as_millis())
            .unwrap_or(u64::MAX)
            .min(exp);
        Some(Duration::from_millis(rand::random_range(
            cap / 2..=cap.max(1),
        )))
    }
}

impl tower::retry::Policy<HttpRequestFactory, reqwest::Response, OpenAIError> for RetryPolicy {
    type Future = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

    fn retry(
        &mut self,
        _req: &mut HttpRequestFactory,
        result: &mut Result<reqwest::Response, OpenAIError>,
    ) -> Option<Self::Future> {
        let (status, retry_after, connect) = match result {
            Ok(response) => (
                Some(response.status().as_u16()),
                response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned),
                false,
            ),
            Err(OpenAIError::Reqwest(e)) => (None, None, e.is_connect()),
            Err(_) => (None, None, false),
        };
        let delay = self.delay(status, retry_after.as_deref(), connect)?;
        self.attempts += 1;
        tracing::warn!(
            ?status,
            attempt = self.attempts,
            delay_ms = delay.as_millis() as u64,
            "retrying the AI provider"
        );
        Some(Box::pin(tokio::time::sleep(delay)))
    }

    fn clone_request(&mut self, req: &HttpRequestFactory) -> Option<HttpRequestFactory> {
        Some(req.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_only_what_may_succeed_later() {
        let policy = RetryPolicy::new(3, Duration::from_secs(10));
        assert!(policy.delay(Some(429), None, false).is_some());
        assert!(policy.delay(Some(503), None, false).is_some());
        assert!(policy.delay(None, None, true).is_some());
        assert!(policy.delay(Some(400), None, false).is_none());
        assert!(policy.delay(Some(401), None, false).is_none());
        assert!(policy.delay(None, None, false).is_none());
    }

    #[test]
    fn retry_after_is_honoured_within_the_bound() {
        let policy = RetryPolicy::new(3, Duration::from_secs(10));
        assert_eq!(
            policy.delay(Some(429), Some("2"), false),
            Some(Duration::from_secs(2))
        );
        assert_eq!(policy.delay(Some(429), Some("60"), false), None);
    }

    #[test]
    fn backoff_grows_with_jitter_and_stops_after_the_budget() {
        let mut policy = RetryPolicy::new(2, Duration::from_secs(10));
        let first = policy.delay(Some(500), None, false).expect("retry");
        assert!(
            first >= Duration::from_millis(100) && first <= Duration::from_millis(200),
            "{first:?}"
        );
        policy.attempts = 1;
        let second = policy.delay(Some(500), None, false).expect("retry");
        assert!(
            second >= Duration::from_millis(200) && second <= Duration::from_millis(400),
            "{second:?}"
        );
        policy.attempts = 2;
        assert!(policy.delay(Some(500), None, false).is_none());
    }

    #[test]
    fn the_prompt_numbers_sources_as_the_citations() {
        let hits = vec![ChunkHit {
            document_id: "d1".into(),
            chunk: 2,
            score: 0.5,
            text: "Facts.".into(),
            metadata: Default::default(),
            revision: None,
            page: None,
        }];
        let prompt = user_prompt("Why?", &hits);
        assert!(prompt.starts_with("Sources:\n[1] (document d1, chunk 2)\nFacts."));
        assert!(prompt.ends_with("Question: Why?"));
        assert_eq!(citations(&hits)[0].document_id, "d1");
    }

    #[test]
    fn cost_is_in_micro_dollars() {
        assert_eq!(micro_usd(1_000_000, 0.15), 150_000);
        assert_eq!(micro_usd(1000, 0.6), 600);
    }
}
