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
    let err = Config::load(&env(&[("DATABASE_URL", "mysql://x")])).expect_err("must be refused");
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
    let err = Config::load(&env(&[("ANALYZER_ENV", "production")])).expect_err("must be refused");
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
        let err = Config::load(&env(&[("ANALYZER_VECTOR_SEARCH_EF", bad)])).expect_err("refused");
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
