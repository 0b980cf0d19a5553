//! The OpenAI provider against a real OpenAI-wire HTTP server started here:
//! requests are checked, answers mapped to citations, usage metered, and
//! injected 429/500/timeouts/malformed answers retried or reported.

use std::time::Duration;

use analyzer_tests::Env;
use analyzer_tests::openai_wire::{FakeOpenAi, Fault};
use serde_json::json;

const DIMS: usize = 32;

async fn with_provider(fake: &FakeOpenAi, extra: &[(&str, &str)]) -> Env {
    let mut env = vec![
        ("OPENAI_BASE_URL".to_owned(), fake.base_url.clone()),
        ("OPENAI_API_KEY".to_owned(), "sk-test-key".to_owned()),
        ("EMBEDDING_MODEL".to_owned(), "fake-embed".to_owned()),
        ("EMBEDDING_DIMENSIONS".to_owned(), DIMS.to_string()),
        ("CHAT_MODEL".to_owned(), "fake-chat".to_owned()),
        ("CHAT_PRICE_INPUT_PER_MTOK".to_owned(), "1.0".to_owned()),
        ("CHAT_PRICE_OUTPUT_PER_MTOK".to_owned(), "2.0".to_owned()),
        ("EMBEDDING_PRICE_PER_MTOK".to_owned(), "0.5".to_owned()),
        ("OPENAI_MAX_RETRY_WAIT_SECONDS".to_owned(), "2".to_owned()),
    ];
    env.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    analyzer_tests::start_with(env).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_come_from_the_model_grounded_in_the_tenants_chunks() {
    let fake = FakeOpenAi::start(DIMS).await;
    let env = with_provider(&fake, &[("EMBEDDING_BATCH_SIZE", "2")]).await;
    let s = &env.server;
    let (_, token) = s.tenant("Llm Co", "premium").await;

    let (status, ingested) = s.post("/v1/documents", &token, &json!({"documents": [
        {"id": "boilers", "text": "Boilers must be serviced every twelve months. Service records are kept for five years."},
        {"id": "lifts", "text": "Lifts are inspected every six months by a certified engineer."},
        {"id": "roofs", "text": "Roofs are checked after every storm for loose tiles."}
    ]})).await;
    assert_eq!(status, 201, "{ingested}");
    let embedding_calls: Vec<_> = fake
        .state
        .requests()
        .into_iter()
        .filter(|r| r.path == "/v1/embeddings")
        .collect();
    assert_eq!(embedding_calls.len(), 2, "3 chunks in batches of 2");
    for call in &embedding_calls {
        assert_eq!(call.authorization.as_deref(), Some("Bearer sk-test-key"));
        assert_eq!(call.body["model"], "fake-embed");
        assert!(
            call.body.get("dimensions").is_none(),
            "only text-embedding-3 models take `dimensions`"
        );
    }

    let query = json!({"query": "how often are boilers serviced"});
    let (_, found) = s.post("/v1/search", &token, &query).await;
    assert_eq!(found["hits"][0]["document_id"], "boilers", "{found}");
    let before = fake.state.count("/v1/embeddings");
    let (_, again) = s.post("/v1/search", &token, &query).await;
    assert_eq!(again["cached"], true);
    assert_eq!(
        fake.state.count("/v1/embeddings"),
        before,
        "a cached search calls no provider"
    );

    let (status, answer) = s
        .post(
            "/v1/analyze",
            &token,
            &json!({"question": "How often are boilers serviced?", "top_k": 2}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["model"], "fake-chat");
    assert_eq!(
        answer["answer"],
        "According to the documents, Boilers must be serviced every twelve months. [1]"
    );
    assert_eq!(answer["citations"][0]["document_id"], "boilers");
    assert!(answer["usage"]["prompt_tokens"].as_u64().expect("tokens") > 0);
    let chat = fake
        .state
        .requests()
        .into_iter()
        .rfind(|r| r.path == "/v1/chat/completions")
        .expect("chat call");
    assert_eq!(chat.body["model"], "fake-chat");
    let messages = chat.body["messages"].as_array().expect("messages");
    assert_eq!(messages[0]["role"], "system");
    assert!(
        messages[0]["content"]
            .as_str()
            .expect("system")
            .contains("cite")
    );
    let user = messages[1]["content"].as_str().expect("user");
    assert!(user.contains("[1] (document boilers, chunk 0)"), "{user}");
    assert!(
        user.ends_with("Question: How often are boilers serviced?"),
        "{user}"
    );

    let streamed = s
        .request(reqwest::Method::POST, "/v1/analyze", &token)
        .json(&json!({"question": "How often are boilers serviced?", "top_k": 2, "stream": true}))
        .send()
        .await
        .expect("stream")
        .text()
        .await
        .expect("body");
    let events: Vec<&str> = streamed
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    assert_eq!(events.first(), Some(&"citations"), "{streamed}");
    assert_eq!(events.last(), Some(&"done"), "{streamed}");
    let data: Vec<serde_json::Value> = streamed
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str(d).ok())
        .collect();
    let text: String = data.iter().filter_map(|d| d["text"].as_str()).collect();
    assert_eq!(text, answer["answer"].as_str().expect("answer"));
    assert_eq!(data[0]["citations"][0]["document_id"], "boilers");
    assert!(
        data.last().expect("done")["usage"]["completion_tokens"]
            .as_u64()
            .expect("usage")
            > 0,
        "{streamed}"
    );

    let (_, usage) = s.get("/v1/usage", &token).await;
    let counters = &usage["counters"];
    assert!(
        counters["embedding_tokens"]
            .as_i64()
            .expect("embedding tokens")
            > 0,
        "{usage}"
    );
    assert!(
        counters["llm_prompt_tokens"]
            .as_i64()
            .expect("prompt tokens")
            > 0,
        "{usage}"
    );
    assert!(
        counters["llm_completion_tokens"]
            .as_i64()
            .expect("completion tokens")
            > 0,
        "{usage}"
    );
    assert!(
        counters["estimated_cost_micro_usd"].as_i64().expect("cost") > 0,
        "{usage}"
    );
    let (_, ready) =
        analyzer_tests::split(s.http.get(s.url("/ready")).send().await.expect("ready")).await;
    assert_eq!(ready["checks"]["llm"]["backend"], "fake-chat", "{ready}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_failures_are_retried_then_reported_as_502_or_503() {
    let fake = FakeOpenAi::start(DIMS).await;
    let env = with_provider(
        &fake,
        &[("OPENAI_MAX_RETRIES", "2"), ("OPENAI_TIMEOUT_SECONDS", "1")],
    )
    .await;
    let s = &env.server;
    let (_, token) = s.tenant("Flaky", "standard").await;
    let ingest = |id: &str| json!({"documents": [{"id": id, "text": "Fire doors must stay closed at all times."}]});

    // A 429 with Retry-After, then success: retried, the caller sees 201.
    fake.state.inject([Fault::Status(429, Some(1))]);
    let before = fake.state.count("/v1/embeddings");
    let started = std::time::Instant::now();
    let (status, body) = s.post("/v1/documents", &token, &ingest("after-429")).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(fake.state.count("/v1/embeddings") - before, 2);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After was not honoured"
    );

    // Two 500s, then success (2 retries allowed).
    fake.state
        .inject([Fault::Status(500, None), Fault::Status(500, None)]);
    let (status, body) = s.post("/v1/documents", &token, &ingest("after-500s")).await;
    assert_eq!(status, 201, "{body}");

    // Still failing after the retries: 502, nothing stored.
    fake.state.inject([
        Fault::Status(500, None),
        Fault::Status(502, None),
        Fault::Status(500, None),
    ]);
    let (status, problem) = s.post("/v1/documents", &token, &ingest("never")).await;
    assert_eq!(status, 502, "{problem}");
    assert_eq!(problem["status"], 502);
    assert!(
        !problem["detail"]
            .as_str()
            .expect("detail")
            .contains("injected"),
        "internals leaked: {problem}"
    );
    let (status, _) = s.get("/v1/documents/never", &token).await;
    assert_eq!(status, 404, "a failed ingest stored its document");

    // Rate limited beyond the retries: 503 with Retry-After.
    fake.state.inject([
        Fault::Status(429, None),
        Fault::Status(429, None),
        Fault::Status(429, None),
    ]);
    let r = s
        .request(reqwest::Method::POST, "/v1/search", &token)
        .json(&json!({"query": "fire doors"}))
        .send()
        .await
        .expect("search");
    assert_eq!(r.status(), 503);
    assert!(r.headers().get("retry-after").is_some());

    // A Retry-After longer than we may wait is not waited for.
    fake.state.inject([Fault::Status(429, Some(120))]);
    let started = std::time::Instant::now();
    let (status, _) = s
        .post("/v1/search", &token, &json!({"query": "fire doors closed"}))
        .await;
    assert_eq!(status, 503);
    assert!(started.elapsed() < Duration::from_secs(30));

    // A provider that hangs: the per-call timeout answers 503.
    fake.state.inject([Fault::Hang(Duration::from_secs(5))]);
    let (status, problem) = s
        .post(
            "/v1/analyze",
            &token,
            &json!({"question": "Are fire doors kept closed?"}),
        )
        .await;
    assert_eq!(status, 503, "{problem}");

    // A malformed answer: 502.
    fake.state.inject([Fault::Malformed]);
    let (status, problem) = s
        .post(
            "/v1/search",
            &token,
            &json!({"query": "doors at all times"}),
        )
        .await;
    assert_eq!(status, 502, "{problem}");

    // And the service is fine afterwards.
    let (status, body) = s
        .post(
            "/v1/analyze",
            &token,
            &json!({"question": "Are fire doors kept closed?"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, usage) = s.get("/v1/usage", &token).await;
    assert_eq!(usage["documents"], 2, "{usage}");
}
