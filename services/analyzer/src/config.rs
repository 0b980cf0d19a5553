//! Configuration: environment variables (12-factor), optionally merged over a
//! TOML file named by `ANALYZER_CONFIG`, parsed once into typed, validated
//! structs. A bad value is an error naming the variable and what was expected.
//!
//! The TOML file is flattened into the same names as the environment: a key
//! `bind` under `[analyzer]` is `ANALYZER_BIND`, a top-level `database_url`
//! is `DATABASE_URL`. The environment wins over the file.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;

use crate::tenants::Tier;

/// Where configuration values come from. Tests pass a map instead of
/// touching the process environment.
pub trait Env {
    /// The raw value of `name`, if set (an empty value counts as unset).
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

impl Env for HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned().filter(|v| !v.is_empty())
    }
}

/// An environment layered over another: the first one that has a value wins.
struct Layered<'a> {
    top: &'a dyn Env,
    bottom: HashMap<String, String>,
}

impl Env for Layered<'_> {
    fn var(&self, name: &str) -> Option<String> {
        self.top.var(name).or_else(|| self.bottom.var(name))
    }
}

/// A configuration error: which variable, and what was wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The value was present but not valid.
    #[error("{name}: {message}")]
    Invalid {
        /// The variable name.
        name: String,
        /// What was expected.
        message: String,
    },
    /// The TOML file could not be read or parsed.
    #[error("ANALYZER_CONFIG ({path}): {message}")]
    File {
        /// The file path.
        path: String,
        /// What went wrong.
        message: String,
    },
}

fn invalid(name: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        name: name.to_owned(),
        message: message.into(),
    }
}

/// The deployment environment; production forbids dev conveniences.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    /// Local development: a signing key is generated if none is configured.
    Development,
    /// Production: a token verification key must be configured.
    Production,
}

/// How tokens are verified.
#[derive(Debug, Clone)]
pub struct JwtConfig {
    /// HS256 shared secret (`JWT_SECRET`); also used to mint tokens.
    pub secret: Option<SecretString>,
    /// RS256/ES256 public key in PEM (`JWT_PUBLIC_KEY`).
    pub public_key_pem: Option<String>,
    /// JWKS endpoint (`JWT_JWKS_URL`).
    pub jwks_url: Option<String>,
    /// Required `iss` claim, when set.
    pub issuer: Option<String>,
    /// Required `aud` claim, when set.
    pub audience: Option<String>,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway: Duration,
}

/// The limits of one tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct TierLimits {
    /// Requests in flight at once.
    pub concurrent_requests: u32,
    /// Requests per minute.
    pub requests_per_minute: u32,
    /// Bytes of cached query results.
    pub query_cache_bytes: u64,
    /// Bytes of stored vectors and payload.
    pub vector_storage_bytes: u64,
    /// Database connections held at once.
    pub db_connections: u32,
    /// Extra database connections allowed in bursts.
    pub db_connections_burst: u32,
}

impl TierLimits {
    /// The contract's defaults for a tier.
    pub const fn defaults(tier: Tier) -> Self {
        const MIB: u64 = 1024 * 1024;
        const GIB: u64 = 1024 * MIB;
        match tier {
            Tier::Premium => Self {
                concurrent_requests: 100,
                requests_per_minute: 500,
                query_cache_bytes: 128 * MIB,
                vector_storage_bytes: 10 * GIB,
                db_connections: 5,
                db_connections_burst: 10,
            },
            Tier::Standard => Self {
                concurrent_requests: 20,
                requests_per_minute: 100,
                query_cache_bytes: 32 * MIB,
                vector_storage_bytes: 2 * GIB,
                db_connections: 2,
                db_connections_burst: 5,
            },
        }
    }
}

/// Limits on what one request may carry.
#[derive(Debug, Clone, Copy)]
pub struct RequestLimits {
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
    /// Most documents in one ingest request.
    pub max_batch_documents: usize,
    /// Largest document text, in bytes.
    pub max_document_bytes: usize,
    /// Largest `top_k` for search and analyze.
    pub max_top_k: usize,
    /// Whole-request timeout.
    pub request_timeout: Duration,
}

/// How documents are split before embedding.
#[derive(Debug, Clone, Copy)]
pub struct ChunkingConfig {
    /// Target chunk size, in characters.
    pub chunk_chars: usize,
    /// Characters repeated from the end of one chunk at the start of the next.
    pub overlap_chars: usize,
}

/// The query cache.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// `redis://…` or `rediss://…`; `None` means the in-process cache.
    pub redis_url: Option<SecretString>,
    /// How long a cached search result lives.
    pub ttl: Duration,
    /// Bound of the in-process cache, in bytes; `None`: from the memory
    /// the process is given (`cache::in_process_bound`).
    pub memory_max_bytes: Option<usize>,
    /// Connect and command timeout for Redis.
    pub redis_timeout: Duration,
}

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

/// Known vector lengths of OpenAI's embedding models.
fn known_dimensions(model: &str) -> Option<usize> {
    match model {
        "text-embedding-3-small" | "text-embedding-ada-002" => Some(1536),
        "text-embedding-3-large" => Some(3072),
        _ => None,
    }
}

/// List prices (US dollars per million tokens) of OpenAI's models, for the
/// cost estimate; `(input, output)`.
fn known_prices(model: &str) -> (f64, f64) {
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

fn openai_config(env: &dyn Env) -> Result<Option<OpenAiConfig>, ConfigError> {
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

/// The whole, validated configuration of the service.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listen address for `serve`.
    pub bind: SocketAddr,
    /// Development or production.
    pub environment: Environment,
    /// Where embedded stores live.
    pub data_dir: PathBuf,
    /// `postgres://…` or `sqlite://…`; `None` means the SQLite file in the data dir.
    pub database_url: Option<SecretString>,
    /// Upper bound of the database pool.
    pub db_max_connections: u32,
    /// PostgreSQL's acquire timeout, call deadline and breaker.
    pub db_guard: crate::store::DbGuardConfig,
    /// Token verification.
    pub jwt: JwtConfig,
    /// The query cache.
    pub cache: CacheConfig,
    /// The AI provider; `None` means the built-in embedder and extractive
    /// analysis.
    pub openai: Option<OpenAiConfig>,
    /// A Qdrant server; `None` means the embedded Qdrant Edge.
    pub qdrant: Option<crate::vectors::qdrant::QdrantConfig>,
    /// The circuit breaker in front of a Qdrant server.
    pub breaker: crate::vectors::breaker::BreakerConfig,
    /// How wide a search walks the HNSW graph (Qdrant's `hnsw_ef`,
    /// `ANALYZER_VECTOR_SEARCH_EF`): wider finds more of the nearest
    /// neighbours and costs more per search. `None`: the engine's default
    /// (the graph's `ef_construct`, 100).
    pub vector_search_ef: Option<usize>,
    /// Browser origins allowed by CORS.
    pub cors_origins: Vec<String>,
    /// Per-request limits.
    pub limits: RequestLimits,
    /// Chunking of ingested text.
    pub chunking: ChunkingConfig,
    /// How long a resolved tenant record is trusted before it is re-read.
    pub tenant_cache_ttl: Duration,
    /// Bound on the graceful drain after SIGTERM/SIGINT.
    pub shutdown_timeout: Duration,
    /// Connection timeouts, bound and drain of the HTTP server.
    pub server: crate::serve::ServerConfig,
    /// How often Parameter Store is re-read (with `ANALYZER_SSM_PATH`).
    pub ssm_refresh: Duration,
    /// How long a rotated-out JWT key still verifies tokens.
    pub key_overlap: Duration,
    /// Limits of each tier.
    pub premium: TierLimits,
    /// Limits of each tier.
    pub standard: TierLimits,
    /// How many tasks normally share the fleet-wide limits: while Redis is
    /// unreachable, each process enforces this share of them.
    pub expected_tasks: u32,
}

impl Config {
    /// Load from the process environment (and `ANALYZER_CONFIG` if set).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::load(&ProcessEnv)
    }

    /// Load from any [`Env`], merging the TOML file it names, if any.
    pub fn load(env: &dyn Env) -> Result<Self, ConfigError> {
        let file = match env.var("ANALYZER_CONFIG") {
            Some(path) => read_toml_file(Path::new(&path))?,
            None => HashMap::new(),
        };
        Self::parse(&Layered {
            top: env,
            bottom: file,
        })
    }

    /// The limits for a tier.
    pub fn tier_limits(&self, tier: Tier) -> TierLimits {
        match tier {
            Tier::Premium => self.premium,
            Tier::Standard => self.standard,
        }
    }

    fn parse(env: &dyn Env) -> Result<Self, ConfigError> {
        let environment = match env.var("ANALYZER_ENV").as_deref() {
            None | Some("development") | Some("dev") => Environment::Development,
            Some("production") | Some("prod") => Environment::Production,
            Some(other) => {
                return Err(invalid(
                    "ANALYZER_ENV",
                    format!("expected `development` or `production`, got `{other}`"),
                ));
            }
        };

        let database_url = env.var("DATABASE_URL");
        if let Some(url) = &database_url
            && !(url.starts_with("postgres://")
                || url.starts_with("postgresql://")
                || url.starts_with("sqlite:"))
        {
            return Err(invalid(
                "DATABASE_URL",
                "expected a postgres://… or sqlite:… URL",
            ));
        }

        let jwt = JwtConfig {
            secret: env.var("JWT_SECRET").map(SecretString::from),
            public_key_pem: env.var("JWT_PUBLIC_KEY"),
            jwks_url: env.var("JWT_JWKS_URL"),
            issuer: env.var("JWT_ISSUER"),
            audience: env.var("JWT_AUDIENCE"),
            leeway: Duration::from_secs(parse_or(env, "JWT_LEEWAY_SECONDS", 30u64)?),
        };
        if env.var("JWT_SECRET").is_some_and(|s| s.len() < 32) {
            return Err(invalid(
                "JWT_SECRET",
                "expected at least 32 bytes of secret for HS256",
            ));
        }
        if let Some(url) = &jwt.jwks_url
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            return Err(invalid("JWT_JWKS_URL", "expected an http(s):// URL"));
        }
        if environment == Environment::Production
            && jwt.secret.is_none()
            && jwt.public_key_pem.is_none()
            && jwt.jwks_url.is_none()
        {
            return Err(invalid(
                "JWT_SECRET",
                "ANALYZER_ENV=production requires JWT_SECRET, JWT_PUBLIC_KEY or JWT_JWKS_URL",
            ));
        }

        let redis_url = env.var("REDIS_URL");
        if let Some(url) = &redis_url
            && !(url.starts_with("redis://") || url.starts_with("rediss://"))
        {
            return Err(invalid(
                "REDIS_URL",
                "expected a redis://… or rediss://… URL",
            ));
        }
        let cache = CacheConfig {
            redis_url: redis_url.map(SecretString::from),
            ttl: Duration::from_secs(parse_or(env, "ANALYZER_CACHE_TTL_SECONDS", 300u64)?),
            // Unset: a share of the process's memory limit, at most 32 MiB
            // (`cache::in_process_bound`); with Redis the cache is not in
            // the process.
            memory_max_bytes: parse_opt(env, "ANALYZER_CACHE_MAX_BYTES")?,
            redis_timeout: Duration::from_millis(parse_or(
                env,
                "ANALYZER_REDIS_TIMEOUT_MS",
                250u64,
            )?),
        };
        positive(cache.ttl.as_secs(), "ANALYZER_CACHE_TTL_SECONDS")?;
        positive(
            cache.redis_timeout.as_millis() as u64,
            "ANALYZER_REDIS_TIMEOUT_MS",
        )?;

        let cors_origins = env
            .var("ANALYZER_CORS_ORIGINS")
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|o| !o.is_empty())
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        for origin in &cors_origins {
            if origin != "*"
                && (!(origin.starts_with("http://") || origin.starts_with("https://"))
                    || origin.ends_with('/')
                    || http::HeaderValue::from_str(origin).is_err())
            {
                return Err(invalid(
                    "ANALYZER_CORS_ORIGINS",
                    format!(
                        "expected comma-separated origins like https://app.example.com, got `{origin}`"
                    ),
                ));
            }
        }

        let limits = RequestLimits {
            max_body_bytes: parse_or(env, "ANALYZER_MAX_BODY_BYTES", 10 * 1024 * 1024)?,
            max_batch_documents: parse_or(env, "ANALYZER_MAX_BATCH_DOCUMENTS", 256)?,
            max_document_bytes: parse_or(env, "ANALYZER_MAX_DOCUMENT_BYTES", 1024 * 1024)?,
            max_top_k: parse_or(env, "ANALYZER_MAX_TOP_K", 100)?,
            request_timeout: Duration::from_secs(parse_or(
                env,
                "ANALYZER_REQUEST_TIMEOUT_SECONDS",
                30u64,
            )?),
        };
        positive(limits.max_body_bytes as u64, "ANALYZER_MAX_BODY_BYTES")?;
        positive(
            limits.max_batch_documents as u64,
            "ANALYZER_MAX_BATCH_DOCUMENTS",
        )?;
        positive(
            limits.max_document_bytes as u64,
            "ANALYZER_MAX_DOCUMENT_BYTES",
        )?;
        positive(limits.max_top_k as u64, "ANALYZER_MAX_TOP_K")?;
        positive(
            limits.request_timeout.as_secs(),
            "ANALYZER_REQUEST_TIMEOUT_SECONDS",
        )?;

        let chunking = ChunkingConfig {
            chunk_chars: parse_or(env, "ANALYZER_CHUNK_CHARS", 800)?,
            overlap_chars: parse_or(env, "ANALYZER_CHUNK_OVERLAP_CHARS", 100)?,
        };
        if chunking.chunk_chars < 50 {
            return Err(invalid(
                "ANALYZER_CHUNK_CHARS",
                "expected at least 50 characters",
            ));
        }
        if chunking.overlap_chars * 2 > chunking.chunk_chars {
            return Err(invalid(
                "ANALYZER_CHUNK_OVERLAP_CHARS",
                "expected at most half of ANALYZER_CHUNK_CHARS",
            ));
        }

        Ok(Self {
            bind: parse_or(env, "ANALYZER_BIND", SocketAddr::from(([0, 0, 0, 0], 8000)))?,
            environment,
            data_dir: env
                .var("ANALYZER_DATA_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("./data")),
            database_url: database_url.map(SecretString::from),
            cache,
            openai: openai_config(env)?,
            qdrant: match env.var("QDRANT_URL") {
                None => None,
                Some(url) if url.starts_with("http://") || url.starts_with("https://") => {
                    Some(crate::vectors::qdrant::QdrantConfig {
                        url,
                        api_key: env.var("QDRANT_API_KEY").map(SecretString::from),
                        timeout: Duration::from_millis(parse_or(
                            env,
                            "QDRANT_TIMEOUT_MS",
                            2000u64,
                        )?),
                    })
                }
                Some(_) => {
                    return Err(invalid(
                        "QDRANT_URL",
                        "expected the gRPC URL, like http://qdrant:6334",
                    ));
                }
            },
            breaker: crate::vectors::breaker::BreakerConfig {
                failure_threshold: parse_or(env, "ANALYZER_BREAKER_FAILURES", 5)?,
                open_for: Duration::from_secs(parse_or(
                    env,
                    "ANALYZER_BREAKER_OPEN_SECONDS",
                    30u64,
                )?),
                call_timeout: Duration::from_millis(parse_or(
                    env,
                    "ANALYZER_VECTOR_TIMEOUT_MS",
                    2000u64,
                )?),
            },
            vector_search_ef: match parse_opt(env, "ANALYZER_VECTOR_SEARCH_EF")? {
                None => None,
                Some(ef @ 1..=10_000) => Some(ef),
                Some(_) => {
                    return Err(invalid(
                        "ANALYZER_VECTOR_SEARCH_EF",
                        "expected a whole number from 1 to 10000",
                    ));
                }
            },
            db_max_connections: parse_or(env, "ANALYZER_DB_MAX_CONNECTIONS", 16)?,
            db_guard: db_guard(env)?,
            jwt,
            cors_origins,
            limits,
            chunking,
            tenant_cache_ttl: Duration::from_millis(parse_or(
                env,
                "ANALYZER_TENANT_CACHE_MS",
                5000u64,
            )?),
            shutdown_timeout: Duration::from_secs(parse_or(
                env,
                "ANALYZER_SHUTDOWN_TIMEOUT_SECONDS",
                25u64,
            )?),
            server: server_config(env)?,
            ssm_refresh: Duration::from_secs(parse_or(
                env,
                "ANALYZER_SSM_REFRESH_SECONDS",
                300u64,
            )?),
            key_overlap: Duration::from_secs(parse_or(
                env,
                "ANALYZER_KEY_OVERLAP_SECONDS",
                3600u64,
            )?),
            premium: tier_limits(env, Tier::Premium)?,
            standard: tier_limits(env, Tier::Standard)?,
            expected_tasks: {
                let tasks = parse_or(env, "ANALYZER_EXPECTED_TASKS", 3u32)?;
                positive(u64::from(tasks), "ANALYZER_EXPECTED_TASKS")?;
                tasks
            },
        })
    }
}

fn db_guard(env: &dyn Env) -> Result<crate::store::DbGuardConfig, ConfigError> {
    let millis = |name: &str, default: u64| -> Result<Duration, ConfigError> {
        let value = parse_or(env, name, default)?;
        positive(value, name)?;
        Ok(Duration::from_millis(value))
    };
    let failures = parse_or(env, "ANALYZER_DB_BREAKER_FAILURES", 3u32)?;
    positive(u64::from(failures), "ANALYZER_DB_BREAKER_FAILURES")?;
    let open_seconds = parse_or(env, "ANALYZER_DB_BREAKER_OPEN_SECONDS", 5u64)?;
    positive(open_seconds, "ANALYZER_DB_BREAKER_OPEN_SECONDS")?;
    Ok(crate::store::DbGuardConfig {
        acquire_timeout: millis("ANALYZER_DB_ACQUIRE_TIMEOUT_MS", 2000)?,
        breaker: crate::vectors::breaker::BreakerConfig {
            failure_threshold: failures,
            open_for: Duration::from_secs(open_seconds),
            call_timeout: millis("ANALYZER_DB_QUERY_TIMEOUT_MS", 5000)?,
        },
    })
}

fn server_config(env: &dyn Env) -> Result<crate::serve::ServerConfig, ConfigError> {
    let seconds = |name: &str, default: u64| -> Result<Duration, ConfigError> {
        let value = parse_or(env, name, default)?;
        positive(value, name)?;
        Ok(Duration::from_secs(value))
    };
    let max_connections = parse_or(env, "ANALYZER_MAX_CONNECTIONS", 10_000usize)?;
    positive(max_connections as u64, "ANALYZER_MAX_CONNECTIONS")?;
    Ok(crate::serve::ServerConfig {
        header_read_timeout: seconds("ANALYZER_HEADER_READ_TIMEOUT_SECONDS", 10)?,
        idle_timeout: seconds("ANALYZER_IDLE_TIMEOUT_SECONDS", 75)?,
        max_connections,
        drain_grace: Duration::from_secs(parse_or(env, "ANALYZER_DRAIN_GRACE_SECONDS", 5u64)?),
    })
}

fn tier_limits(env: &dyn Env, tier: Tier) -> Result<TierLimits, ConfigError> {
    let d = TierLimits::defaults(tier);
    let prefix = format!("ANALYZER_TIER_{}_", tier.as_str().to_ascii_uppercase());
    let var = |suffix: &str| format!("{prefix}{suffix}");
    let limits = TierLimits {
        concurrent_requests: parse_or(env, &var("CONCURRENT_REQUESTS"), d.concurrent_requests)?,
        requests_per_minute: parse_or(env, &var("REQUESTS_PER_MINUTE"), d.requests_per_minute)?,
        query_cache_bytes: parse_or(env, &var("QUERY_CACHE_BYTES"), d.query_cache_bytes)?,
        vector_storage_bytes: parse_or(env, &var("VECTOR_STORAGE_BYTES"), d.vector_storage_bytes)?,
        db_connections: parse_or(env, &var("DB_CONNECTIONS"), d.db_connections)?,
        db_connections_burst: parse_or(env, &var("DB_CONNECTIONS_BURST"), d.db_connections_burst)?,
    };
    positive(
        u64::from(limits.concurrent_requests),
        &var("CONCURRENT_REQUESTS"),
    )?;
    positive(
        u64::from(limits.requests_per_minute),
        &var("REQUESTS_PER_MINUTE"),
    )?;
    positive(u64::from(limits.db_connections), &var("DB_CONNECTIONS"))?;
    Ok(limits)
}

fn positive(value: u64, name: &str) -> Result<(), ConfigError> {
    if value == 0 {
        return Err(invalid(name, "expected a value greater than zero"));
    }
    Ok(())
}

fn parse_or<T>(env: &dyn Env, name: &str, default: T) -> Result<T, ConfigError>
where
    T: std::str::FromStr,
{
    Ok(parse_opt(env, name)?.unwrap_or(default))
}

/// The variable parsed, or `None` when it is unset.
fn parse_opt<T>(env: &dyn Env, name: &str) -> Result<Option<T>, ConfigError>
where
    T: std::str::FromStr,
{
    env.var(name)
        .map(|raw| {
            raw.trim().parse().map_err(|_| {
                invalid(
                    name,
                    format!("could not parse `{raw}` as {}", short_type_name::<T>()),
                )
            })
        })
        .transpose()
}

fn short_type_name<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    match full {
        "u32" | "u64" | "usize" => "a non-negative integer",
        "f64" => "a number",
        _ if full.ends_with("SocketAddr") => "an address like 0.0.0.0:8000",
        _ => full.rsplit("::").next().unwrap_or(full),
    }
}

fn read_toml_file(path: &Path) -> Result<HashMap<String, String>, ConfigError> {
    let file_error = |message: String| ConfigError::File {
        path: path.display().to_string(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| file_error(e.to_string()))?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| file_error(e.to_string()))?;
    let mut flat = HashMap::new();
    flatten("", &table, &mut flat).map_err(file_error)?;
    Ok(flat)
}

fn flatten(
    prefix: &str,
    table: &toml::Table,
    out: &mut HashMap<String, String>,
) -> Result<(), String> {
    for (key, value) in table {
        let name = if prefix.is_empty() {
            key.to_ascii_uppercase()
        } else {
            format!("{prefix}_{}", key.to_ascii_uppercase())
        };
        let text = match value {
            toml::Value::Table(inner) => {
                flatten(&name, inner, out)?;
                continue;
            }
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Array(items) => items
                .iter()
                .map(|item| match item {
                    toml::Value::String(s) => Ok(s.clone()),
                    other => Err(format!(
                        "`{name}`: expected a list of strings, got {other:?}"
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?
                .join(","),
            toml::Value::Datetime(d) => d.to_string(),
        };
        out.insert(name, text);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_parse_on_an_empty_environment() {
        let config = Config::load(&env(&[])).expect("defaults are valid");
        assert_eq!(config.bind, SocketAddr::from(([0, 0, 0, 0], 8000)));
        assert_eq!(config.environment, Environment::Development);
        assert_eq!(config.data_dir, PathBuf::from("./data"));
        assert!(config.database_url.is_none());
        assert_eq!(config.premium, TierLimits::defaults(Tier::Premium));
        assert_eq!(config.standard.requests_per_minute, 100);
        assert_eq!(config.jwt.leeway, Duration::from_secs(30));
    }

    #[test]
    fn a_bad_value_names_the_variable() {
        let err = Config::load(&env(&[("ANALYZER_BIND", "nope")])).expect_err("must be refused");
        assert!(err.to_string().starts_with("ANALYZER_BIND:"), "{err}");
        let err =
            Config::load(&env(&[("DATABASE_URL", "mysql://x")])).expect_err("must be refused");
        assert!(err.to_string().starts_with("DATABASE_URL:"), "{err}");
        let err = Config::load(&env(&[("ANALYZER_TIER_STANDARD_REQUESTS_PER_MINUTE", "0")]))
            .expect_err("must be refused");
        assert!(
            err.to_string()
                .starts_with("ANALYZER_TIER_STANDARD_REQUESTS_PER_MINUTE:"),
            "{err}"
        );
    }

    #[test]
    fn production_requires_a_verification_key() {
        let err =
            Config::load(&env(&[("ANALYZER_ENV", "production")])).expect_err("must be refused");
        assert!(err.to_string().contains("JWT_SECRET"), "{err}");
        let secret = "s".repeat(32);
        Config::load(&env(&[
            ("ANALYZER_ENV", "production"),
            ("JWT_SECRET", &secret),
        ]))
        .expect("a secret is enough");
    }

    #[test]
    fn a_short_hs256_secret_is_refused() {
        let err = Config::load(&env(&[("JWT_SECRET", "short")])).expect_err("must be refused");
        assert!(err.to_string().starts_with("JWT_SECRET:"), "{err}");
    }

    #[test]
    fn the_toml_file_is_flattened_and_the_environment_wins() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("analyzer.toml");
        std::fs::write(
            &path,
            "[analyzer]\nbind = \"127.0.0.1:9000\"\ncors_origins = [\"https://a.example\", \"https://b.example\"]\n\
             [analyzer.tier.premium]\nrequests_per_minute = 900\n",
        )
        .expect("write");
        let path = path.to_string_lossy().into_owned();
        let config = Config::load(&env(&[
            ("ANALYZER_CONFIG", &path),
            ("ANALYZER_TIER_PREMIUM_REQUESTS_PER_MINUTE", "700"),
        ]))
        .expect("valid");
        assert_eq!(config.bind, SocketAddr::from(([127, 0, 0, 1], 9000)));
        assert_eq!(
            config.cors_origins,
            vec!["https://a.example", "https://b.example"]
        );
        assert_eq!(config.premium.requests_per_minute, 700);
    }

    #[test]
    fn a_bad_cors_origin_is_refused() {
        let err = Config::load(&env(&[("ANALYZER_CORS_ORIGINS", "example.com")]))
            .expect_err("must be refused");
        assert!(
            err.to_string().starts_with("ANALYZER_CORS_ORIGINS:"),
            "{err}"
        );
    }

    #[test]
    fn the_search_ef_is_the_engines_unless_set_within_bounds() {
        assert_eq!(
            Config::load(&env(&[])).expect("valid").vector_search_ef,
            None
        );
        let set = Config::load(&env(&[("ANALYZER_VECTOR_SEARCH_EF", "256")])).expect("valid");
        assert_eq!(set.vector_search_ef, Some(256));
        for bad in ["0", "10001", "-3", "wide"] {
            let err =
                Config::load(&env(&[("ANALYZER_VECTOR_SEARCH_EF", bad)])).expect_err("refused");
            assert!(
                err.to_string().starts_with("ANALYZER_VECTOR_SEARCH_EF:"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn a_qdrant_url_must_be_grpc_over_http() {
        let err = Config::load(&env(&[("QDRANT_URL", "qdrant:6334")])).expect_err("refused");
        assert!(err.to_string().starts_with("QDRANT_URL:"), "{err}");
        let ok = Config::load(&env(&[("QDRANT_URL", "http://q:6334")])).expect("valid");
        assert_eq!(ok.qdrant.expect("on").url, "http://q:6334");
        assert_eq!(ok.breaker.failure_threshold, 5);
        assert_eq!(ok.breaker.open_for, Duration::from_secs(30));
    }

    #[test]
    fn the_openai_provider_is_on_with_a_key_or_a_base_url() {
        assert!(Config::load(&env(&[])).expect("valid").openai.is_none());
        let c = Config::load(&env(&[("OPENAI_API_KEY", "sk-test")])).expect("valid");
        let o = c.openai.expect("on");
        assert_eq!(o.embedding_model, "text-embedding-3-small");
        assert_eq!(o.embedding_dimensions, 1536);
        assert!(!o.send_dimensions);
        assert_eq!(o.chat_model, "gpt-4o-mini");
        assert_eq!(o.base_url, "https://api.openai.com/v1");
        let err = Config::load(&env(&[
            ("OPENAI_BASE_URL", "http://127.0.0.1:11434/v1"),
            ("EMBEDDING_MODEL", "nomic-embed-text"),
        ]))
        .expect_err("dimensions unknown");
        assert!(
            err.to_string().starts_with("EMBEDDING_DIMENSIONS:"),
            "{err}"
        );
        let c = Config::load(&env(&[
            ("OPENAI_BASE_URL", "http://127.0.0.1:11434/v1/"),
            ("EMBEDDING_MODEL", "nomic-embed-text"),
            ("EMBEDDING_DIMENSIONS", "768"),
        ]))
        .expect("valid");
        let o = c.openai.expect("on");
        assert_eq!((o.embedding_dimensions, o.send_dimensions), (768, false));
        assert_eq!(o.base_url, "http://127.0.0.1:11434/v1");
    }

    #[test]
    fn a_redis_url_must_be_redis() {
        let err = Config::load(&env(&[("REDIS_URL", "http://r:6379")])).expect_err("refused");
        assert!(err.to_string().starts_with("REDIS_URL:"), "{err}");
        let ok = Config::load(&env(&[("REDIS_URL", "rediss://r:6379")])).expect("valid");
        assert!(ok.cache.redis_url.is_some());
        assert_eq!(ok.cache.ttl, Duration::from_secs(300));
    }
}
