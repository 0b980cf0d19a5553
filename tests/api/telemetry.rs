//! Observability from the outside: spans and metrics exported over OTLP to
//! a real receiver started here, the caller's W3C trace continued and
//! passed on to the OpenAI-wire server, JSON log lines carrying trace and
//! request ids, and `/metrics` naming every metric after traffic.

use std::collections::HashSet;
use std::time::Duration;

use analyzer_tests::openai_wire::FakeOpenAi;
use analyzer_tests::otlp::{OtlpReceiver, ReceivedSpan};
use analyzer_tests::{Env, TestServer};
use serde_json::{Value, json};

const DIMS: usize = 16;
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

async fn observed(fake: &FakeOpenAi, otlp: Option<&OtlpReceiver>, extra: &[(&str, &str)]) -> Env {
    let mut env: Vec<(String, String)> = [
        ("OPENAI_BASE_URL", fake.base_url.as_str()),
        ("OPENAI_API_KEY", "sk-test-key"),
        ("EMBEDDING_MODEL", "fake-embed"),
        ("EMBEDDING_DIMENSIONS", "16"),
        ("CHAT_MODEL", "fake-chat"),
        ("CHAT_PRICE_INPUT_PER_MTOK", "1.0"),
        ("CHAT_PRICE_OUTPUT_PER_MTOK", "2.0"),
        ("EMBEDDING_PRICE_PER_MTOK", "0.5"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    if let Some(otlp) = otlp {
        env.extend(
            [
                ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.endpoint.as_str()),
                ("OTEL_SERVICE_NAME", "analyzer-under-test"),
                // Export quickly: the batch every 200 ms, metrics every 500 ms.
                ("OTEL_BSP_SCHEDULE_DELAY", "200"),
                ("OTEL_METRIC_EXPORT_INTERVAL", "500"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
        );
    }
    // Last, so that a test's own values win.
    env.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    analyzer_tests::start_with(env).await
}

/// POST JSON with a caller's `traceparent`.
async fn traced_post(s: &TestServer, path: &str, token: &str, body: &Value) -> (u16, Value) {
    let r = s
        .request(reqwest::Method::POST, path, token)
        .header("traceparent", format!("00-{TRACE}-{CALLER_SPAN}-01"))
        .json(body)
        .send()
        .await
        .expect("request");
    analyzer_tests::split(r).await
}

fn named<'a>(spans: &'a [ReceivedSpan], name: &str) -> Vec<&'a ReceivedSpan> {
    spans.iter().filter(|s| s.name == name).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_an_otlp_receiver_in_the_callers_trace_with_tenant_tier_and_route() {
    let otlp = OtlpReceiver::start().await;
    let fake = FakeOpenAi::start(DIMS).await;
    let env = observed(&fake, Some(&otlp), &[]).await;
    let s = &env.server;
    let (tenant, token) = s.tenant("Traced Co", "premium").await;

    let (status, body) = s
        .post(
            "/v1/documents",
            &token,
            &json!({"documents": [{"id": "boilers", "text": "Boilers are serviced every twelve months."}]}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) =
        traced_post(s, "/v1/search", &token, &json!({"query": "boiler service"})).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = traced_post(
        s,
        "/v1/analyze",
        &token,
        &json!({"question": "When are boilers serviced?"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    let wanted = [
        "POST /v1/search",
        "POST /v1/analyze",
        "vector.search",
        "llm",
        "store.write",
    ];
    let arrived = otlp
        .wait_for(Duration::from_secs(15), |r| {
            let names: HashSet<String> = r.spans().into_iter().map(|s| s.name).collect();
            wanted.iter().all(|w| names.contains(*w))
        })
        .await;
    let spans = otlp.spans();
    assert!(
        arrived,
        "spans missing; got {:?}",
        spans.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    assert_eq!(otlp.rejected(), 0, "every export was OTLP/protobuf");

    // The search continues the caller's trace: its server span is a child
    // of the caller's span, and its steps are children in the same trace.
    let search = named(&spans, "POST /v1/search")
        .into_iter()
        .find(|s| s.trace_id == TRACE)
        .expect("the search's server span, in the caller's trace");
    assert_eq!(search.parent_span_id, CALLER_SPAN);
    assert_eq!(search.attr("tenant_id"), Some(tenant.as_str()));
    assert_eq!(search.attr("tier"), Some("premium"));
    assert_eq!(search.attr("route"), Some("/v1/search"));
    assert_eq!(search.attr("status"), Some("200"));
    assert_eq!(
        search.resource.get("service.name").map(String::as_str),
        Some("analyzer-under-test")
    );
    let in_trace: Vec<&ReceivedSpan> = spans.iter().filter(|s| s.trace_id == TRACE).collect();
    for step in [
        "auth",
        "cache.get",
        "embed",
        "vector.search",
        "cache.put",
        "llm",
        "openai.chat",
    ] {
        let span = in_trace
            .iter()
            .find(|s| s.name == step)
            .unwrap_or_else(|| panic!("no `{step}` span in the caller's trace"));
        assert_eq!(span.attr("tenant_id"), Some(tenant.as_str()), "{step}");
        assert_eq!(span.attr("tier"), Some("premium"), "{step}");
        assert!(
            span.attr("route").is_some_and(|r| r.starts_with("/v1/")),
            "{step}"
        );
        assert!(
            spans.iter().any(|p| p.span_id == span.parent_span_id),
            "`{step}` hangs under a span of the request"
        );
    }
    let auth = in_trace.iter().find(|s| s.name == "auth").expect("auth");
    assert_eq!(auth.attr("outcome"), Some("ok"));

    // The ingest (no caller trace) is a trace of its own, with its writes.
    let ingest = named(&spans, "POST /v1/documents");
    assert_eq!(ingest.len(), 1);
    assert_ne!(ingest[0].trace_id, TRACE);
    assert_eq!(ingest[0].parent_span_id, "", "a root span");
    let writes: Vec<_> = named(&spans, "store.write")
        .into_iter()
        .filter(|w| w.trace_id == ingest[0].trace_id)
        .collect();
    let stores: HashSet<_> = writes.iter().filter_map(|w| w.attr("store")).collect();
    assert_eq!(stores, HashSet::from(["db", "vectors"]));

    // The trace went on to the provider: each call in the caller's trace
    // carried it.
    let calls = fake.state.requests();
    let traced: Vec<_> = calls
        .iter()
        .filter_map(|r| r.traceparent.as_deref())
        .filter(|t| t.starts_with(&format!("00-{TRACE}-")))
        .collect();
    assert!(
        traced.len() >= 2,
        "the query embedding and the chat call carry the caller's trace: {calls:?}"
    );
    assert!(calls.iter().all(|r| r.traceparent.is_some()));

    // Every log line of the search carries its trace and request ids.
    let output = s.output();
    let lines: Vec<Value> = output
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|l: &Value| l["trace_id"] == TRACE)
        .collect();
    assert!(
        lines.len() >= 2,
        "log lines of the traced requests:\n{output}"
    );
    for line in &lines {
        assert!(
            line["request_id"].as_str().is_some_and(|id| !id.is_empty()),
            "{line}"
        );
        assert_eq!(line["tenant_id"], tenant.as_str(), "{line}");
    }
    assert!(!output.contains(&token), "a bearer token was logged");
    assert!(
        !output.contains("sk-test-key"),
        "the provider key was logged"
    );

    // Metrics arrive too.
    let metrics_arrived = otlp
        .wait_for(Duration::from_secs(10), |r| {
            let names = r.metric_names();
            [
                "analyzer_http_requests",
                "analyzer_llm_tokens",
                "analyzer_cache_lookups",
            ]
            .iter()
            .all(|n| names.iter().any(|m| m == n))
        })
        .await;
    assert!(metrics_arrived, "metrics: {:?}", otlp.metric_names());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_exported_without_otel_variables_but_logs_still_carry_trace_ids() {
    let otlp = OtlpReceiver::start().await;
    let fake = FakeOpenAi::start(DIMS).await;
    // The receiver exists but nothing names it: nothing may arrive.
    let env = observed(&fake, None, &[]).await;
    let s = &env.server;
    let (_, token) = s.tenant("Quiet Co", "standard").await;
    let (status, _) = traced_post(s, "/v1/search", &token, &json!({"query": "anything"})).await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(otlp.spans().is_empty() && otlp.metric_names().is_empty());
    // The caller's trace id is still the request's, in the logs, and its
    // context goes on to the provider unchanged (this hop records nothing).
    assert!(
        s.log_line(|l| l["trace_id"] == TRACE && l["route"] == "/v1/search")
            .await
            .is_some(),
        "{}",
        s.output()
    );
    let calls = fake.state.requests();
    let passed_on = format!("00-{TRACE}-{CALLER_SPAN}-01");
    assert!(
        !calls.is_empty()
            && calls
                .iter()
                .all(|r| r.traceparent.as_deref() == Some(passed_on.as_str())),
        "{calls:?}"
    );
    // A request without a trace starts one: its id is in its log lines.
    let r = s
        .request(reqwest::Method::POST, "/v1/search", &token)
        .header("x-request-id", "untraced-1")
        .json(&json!({"query": "something else"}))
        .send()
        .await
        .expect("search");
    assert_eq!(r.status(), 200);
    let line = s
        .log_line(|l| l["request_id"] == "untraced-1")
        .await
        .expect("a log line of the request");
    let trace_id = line["trace_id"].as_str().expect("a trace id");
    assert!(trace_id.len() == 32 && trace_id != TRACE && trace_id != "0".repeat(32));
    let last = fake
        .state
        .requests()
        .pop()
        .expect("the query's embedding call");
    assert!(
        last.traceparent
            .as_deref()
            .is_some_and(|t| t.starts_with(&format!("00-{trace_id}-"))),
        "{last:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsupported_otlp_protocol_stops_the_start_with_its_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ok, _, stderr) = analyzer_tests::cli(
        dir.path(),
        None,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("JWT_SECRET", analyzer_tests::SECRET),
        ],
        &["serve"],
    );
    assert!(!ok);
    assert!(
        stderr.contains("OTEL_EXPORTER_OTLP_PROTOCOL=grpc") && stderr.contains("http/protobuf"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_name_every_signal_after_traffic() {
    let fake = FakeOpenAi::start(DIMS).await;
    let env = observed(
        &fake,
        None,
        &[("ANALYZER_TIER_STANDARD_REQUESTS_PER_MINUTE", "3")],
    )
    .await;
    let s = &env.server;
    let (premium, token) = s.tenant("Metered Co", "premium").await;
    let (standard, limited) = s.tenant("Limited Co", "standard").await;
    let (status, body) = s
        .post(
            "/v1/documents",
            &token,
            &json!({"documents": [{"id": "a", "text": "Lifts are inspected every six months."}]}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    for _ in 0..2 {
        let (status, _) = s
            .post("/v1/search", &token, &json!({"query": "lift inspection"}))
            .await;
        assert_eq!(status, 200);
    }
    let (status, _) = s
        .post("/v1/analyze", &token, &json!({"question": "Lifts?"}))
        .await;
    assert_eq!(status, 200);
    let (status, _) = s.get("/v1/usage", "not-a-token").await;
    assert_eq!(status, 401);
    let mut refused = 0;
    for _ in 0..6 {
        let (status, _) = s.get("/v1/usage", &limited).await;
        refused += usize::from(status == 429);
    }
    assert!(refused >= 2, "the standard tenant passes 3 per minute");

    let text = s.metrics().await.expect("metrics");
    let value = |series: &str| analyzer_tests::sample_value(&text, series);
    let has = |prefix: &str| text.lines().any(|l| l.starts_with(prefix));
    assert_eq!(
        value(
            r#"analyzer_http_requests_total{method="POST",route="/v1/search",status="200",tier="premium"}"#
        ),
        Some(2.0),
        "{text}"
    );
    assert!(
        has(
            r#"analyzer_http_request_duration_seconds_bucket{method="POST",route="/v1/search",status="200",tier="premium",le="0.0005"}"#
        ),
        "{text}"
    );
    assert!(
        has(
            r#"analyzer_http_requests_total{method="GET",route="/v1/usage",status="429",tier="standard"}"#
        ),
        "{text}"
    );
    assert!(
        has(
            r#"analyzer_http_requests_total{method="GET",route="/v1/usage",status="401",tier="none"}"#
        ),
        "{text}"
    );
    assert!(
        value("analyzer_http_requests_in_flight").is_some_and(|v| v >= 0.0),
        "{text}"
    );
    assert!(
        value(r#"analyzer_token_validations_total{outcome="invalid"}"#) >= Some(1.0),
        "{text}"
    );
    assert!(
        value(r#"analyzer_token_validations_total{outcome="ok"}"#) >= Some(10.0),
        "{text}"
    );
    assert_eq!(
        value(r#"analyzer_cache_lookups_total{outcome="hit"}"#),
        Some(1.0),
        "the repeated search: {text}"
    );
    assert!(
        value(r#"analyzer_cache_lookups_total{outcome="miss"}"#) >= Some(1.0),
        "{text}"
    );
    assert_eq!(value(r#"analyzer_cache_up{backend="memory"}"#), Some(1.0));
    assert!(
        matches!(value("analyzer_vector_maintenance_pending"), Some(v) if v == 0.0 || v == 1.0),
        "{text}"
    );
    assert!(
        has(
            r#"analyzer_vector_request_duration_seconds_count{backend="edge",operation="search",outcome="ok"}"#
        ),
        "{text}"
    );
    assert!(
        has(
            r#"analyzer_vector_request_duration_seconds_count{backend="edge",operation="upsert",outcome="ok"}"#
        ),
        "{text}"
    );
    assert!(
        has(
            r#"analyzer_llm_request_duration_seconds_count{model="fake-chat",operation="chat",outcome="ok"}"#
        ),
        "{text}"
    );
    assert!(
        has(
            r#"analyzer_llm_request_duration_seconds_count{model="fake-embed",operation="embeddings",outcome="ok"}"#
        ),
        "{text}"
    );
    assert!(
        value(&format!(
            r#"analyzer_llm_tokens_total{{kind="completion",model="fake-chat",tenant_id="{premium}"}}"#
        )) > Some(0.0),
        "{text}"
    );
    assert!(
        value(&format!(
            r#"analyzer_llm_tokens_total{{kind="embedding",model="fake-embed",tenant_id="{premium}"}}"#
        )) > Some(0.0),
        "{text}"
    );
    assert!(
        value(&format!(
            r#"analyzer_llm_cost_usd_total{{model="fake-chat",tenant_id="{premium}"}}"#
        )) > Some(0.0),
        "{text}"
    );
    assert_eq!(
        value(&format!(
            r#"analyzer_limit_refusals_total{{kind="requests_per_minute",tenant_id="{standard}"}}"#
        )),
        Some(refused as f64),
        "{text}"
    );
    assert!(
        has(r#"analyzer_db_pool_connections{pool="main",state="in_use"}"#),
        "{text}"
    );
    assert!(has(r#"analyzer_limit_fallbacks_total"#), "{text}");
    // No tenant id where a metric is not meant per tenant.
    for line in text
        .lines()
        .filter(|l| l.contains(&premium) || l.contains(&standard))
    {
        assert!(
            line.starts_with("analyzer_llm_") || line.starts_with("analyzer_limit_refusals"),
            "a tenant id on {line}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_spans_and_metrics_are_exported_at_shutdown() {
    let otlp = OtlpReceiver::start().await;
    let fake = FakeOpenAi::start(DIMS).await;
    // Nothing would leave before a minute: only the shutdown sends.
    let mut env = observed(
        &fake,
        Some(&otlp),
        &[
            ("OTEL_BSP_SCHEDULE_DELAY", "60000"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "60000"),
        ],
    )
    .await;
    let s = &env.server;
    let (_, token) = s.tenant("Last Words", "premium").await;
    let (status, _) = traced_post(s, "/v1/search", &token, &json!({"query": "anything"})).await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(otlp.spans().is_empty(), "exported before shutdown");

    env.server.terminate();
    let status = env.server.wait().await.expect("exit");
    assert!(status.success(), "{status:?}");
    assert!(
        otlp.spans()
            .iter()
            .any(|s| s.name == "POST /v1/search" && s.trace_id == TRACE),
        "{:?}",
        otlp.spans().iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    assert!(
        otlp.metric_names()
            .iter()
            .any(|n| n == "analyzer_http_requests")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_are_exported_when_the_logs_are_cut_to_warnings() {
    let otlp = OtlpReceiver::start().await;
    let fake = FakeOpenAi::start(DIMS).await;
    // What an operator sets to cut log volume (`analyzer::cli` stays at
    // info for the line the test waits for: the address it listens on).
    let env = observed(
        &fake,
        Some(&otlp),
        &[("RUST_LOG", "warn,analyzer::cli=info")],
    )
    .await;
    let s = &env.server;
    let (_, token) = s.tenant("Quiet Logs", "standard").await;
    let (status, body) = traced_post(s, "/v1/search", &token, &json!({"query": "anything"})).await;
    assert_eq!(status, 200, "{body}");

    let arrived = otlp
        .wait_for(Duration::from_secs(15), |r| {
            r.spans()
                .iter()
                .any(|s| s.name == "POST /v1/search" && s.trace_id == TRACE)
        })
        .await;
    assert!(
        arrived,
        "no search span exported under RUST_LOG=warn; got {:?}",
        otlp.spans()
            .iter()
            .map(|s| s.name.clone())
            .collect::<Vec<_>>()
    );
    assert!(
        !s.output()
            .lines()
            .any(|line| line.contains("\"level\":\"INFO\"") && !line.contains("analyzer::cli")),
        "RUST_LOG=warn still filters the logs"
    );
}
