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

use analyzer_domain::chunk::ChunkingConfig;
use analyzer_domain::tenants::Tier;

use crate::cache::CacheConfig;
use crate::limits::TierLimits;
use crate::openai::OpenAiConfig;

mod env;
mod openai;

pub use env::{ConfigError, Env, ProcessEnv};
use env::{Layered, invalid, parse_opt, parse_or, positive, read_toml_file};
use openai::openai_config;

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
    pub db_guard: analyzer_store::DbGuardConfig,
    /// Token verification.
    pub jwt: JwtConfig,
    /// The query cache.
    pub cache: CacheConfig,
    /// The AI provider; `None` means the built-in embedder and extractive
    /// analysis.
    pub openai: Option<OpenAiConfig>,
    /// A Qdrant server; `None` means the embedded Qdrant Edge.
    pub qdrant: Option<analyzer_vectors::qdrant::QdrantConfig>,
    /// The circuit breaker in front of a Qdrant server.
    pub breaker: analyzer_runtime::breaker::BreakerConfig,
    /// How wide a search walks the HNSW graph (Qdrant's `hnsw_ef`,
    /// `ANALYZER_VECTOR_SEARCH_EF`): wider finds more of the nearest
    /// neighbours and costs more per search. `None`: the engine's default
    /// (the graph's `ef_construct`, 100).
    pub vector_search_ef: Option<usize>,
    /// Browser origins allowed by CORS.
    pub cors_origins: Vec<String>,
    /// Whether the web console is served at `/console`
    /// (`ANALYZER_CONSOLE=on|off`, on by default).
    pub console: bool,
    /// Per-request limits.
    pub limits: RequestLimits,
    /// Bounds of file uploads and their extraction.
    pub uploads: crate::uploads::UploadConfig,
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
    /// The longest any request may run: the request timeout, or a file
    /// upload's when longer. A pending ingest in the vector journal is
    /// kept at least this long before it is given up on.
    pub fn longest_request(&self) -> Duration {
        self.limits
            .request_timeout
            .max(self.uploads.request_timeout)
    }

    /// The store's part: where the database is and how it is used.
    pub fn store(&self) -> analyzer_store::StoreConfig {
        analyzer_store::StoreConfig {
            data_dir: self.data_dir.clone(),
            database_url: self.database_url.clone(),
            max_connections: self.db_max_connections,
            guard: self.db_guard,
        }
    }

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

        let console = match env.var("ANALYZER_CONSOLE").as_deref().map(str::trim) {
            None | Some("on") => true,
            Some("off") => false,
            Some(other) => {
                return Err(invalid(
                    "ANALYZER_CONSOLE",
                    format!("expected on or off, got `{other}`"),
                ));
            }
        };

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

        let uploads = upload_config(env)?;

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
                    Some(analyzer_vectors::qdrant::QdrantConfig {
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
            breaker: analyzer_runtime::breaker::BreakerConfig {
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
            console,
            limits,
            uploads,
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

fn db_guard(env: &dyn Env) -> Result<analyzer_store::DbGuardConfig, ConfigError> {
    let millis = |name: &str, default: u64| -> Result<Duration, ConfigError> {
        let value = parse_or(env, name, default)?;
        positive(value, name)?;
        Ok(Duration::from_millis(value))
    };
    let failures = parse_or(env, "ANALYZER_DB_BREAKER_FAILURES", 3u32)?;
    positive(u64::from(failures), "ANALYZER_DB_BREAKER_FAILURES")?;
    let open_seconds = parse_or(env, "ANALYZER_DB_BREAKER_OPEN_SECONDS", 5u64)?;
    positive(open_seconds, "ANALYZER_DB_BREAKER_OPEN_SECONDS")?;
    Ok(analyzer_store::DbGuardConfig {
        acquire_timeout: millis("ANALYZER_DB_ACQUIRE_TIMEOUT_MS", 2000)?,
        breaker: analyzer_runtime::breaker::BreakerConfig {
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

/// Upload bounds: each positive; a file no larger than a request.
fn upload_config(env: &dyn Env) -> Result<crate::uploads::UploadConfig, ConfigError> {
    let defaults = crate::uploads::UploadConfig::DEFAULT;
    let uploads = crate::uploads::UploadConfig {
        max_file_bytes: parse_or(env, "ANALYZER_MAX_FILE_BYTES", defaults.max_file_bytes)?,
        max_request_bytes: parse_or(env, "ANALYZER_MAX_UPLOAD_BYTES", defaults.max_request_bytes)?,
        max_pages: parse_or(env, "ANALYZER_MAX_FILE_PAGES", defaults.max_pages)?,
        max_expanded_bytes: parse_or(
            env,
            "ANALYZER_MAX_EXPANDED_BYTES",
            defaults.max_expanded_bytes,
        )?,
        timeout: Duration::from_secs(parse_or(
            env,
            "ANALYZER_EXTRACT_TIMEOUT_SECONDS",
            defaults.timeout.as_secs(),
        )?),
        memory_bytes: parse_or(env, "ANALYZER_EXTRACT_MEMORY_BYTES", defaults.memory_bytes)?,
        concurrency: parse_or(env, "ANALYZER_EXTRACT_CONCURRENCY", defaults.concurrency)?,
        request_timeout: Duration::from_secs(parse_or(
            env,
            "ANALYZER_UPLOAD_TIMEOUT_SECONDS",
            defaults.request_timeout.as_secs(),
        )?),
    };
    for (value, name) in [
        (uploads.max_file_bytes, "ANALYZER_MAX_FILE_BYTES"),
        (uploads.max_request_bytes, "ANALYZER_MAX_UPLOAD_BYTES"),
        (u64::from(uploads.max_pages), "ANALYZER_MAX_FILE_PAGES"),
        (uploads.max_expanded_bytes, "ANALYZER_MAX_EXPANDED_BYTES"),
        (
            uploads.timeout.as_secs(),
            "ANALYZER_EXTRACT_TIMEOUT_SECONDS",
        ),
        (uploads.concurrency as u64, "ANALYZER_EXTRACT_CONCURRENCY"),
        (
            uploads.request_timeout.as_secs(),
            "ANALYZER_UPLOAD_TIMEOUT_SECONDS",
        ),
    ] {
        positive(value, name)?;
    }
    if uploads.memory_bytes < 64 * 1024 * 1024 {
        return Err(invalid(
            "ANALYZER_EXTRACT_MEMORY_BYTES",
            "expected at least 67108864 (64 MiB)",
        ));
    }
    if uploads.max_file_bytes > uploads.max_request_bytes {
        return Err(invalid(
            "ANALYZER_MAX_FILE_BYTES",
            "expected at most ANALYZER_MAX_UPLOAD_BYTES",
        ));
    }
    Ok(uploads)
}

#[cfg(test)]
mod tests;
