//! A real HTTP server speaking the OpenAI wire format (embeddings, chat
//! completions, streamed chat completions), started by a test on loopback.
//! It records every request and lets the test inject failures: an HTTP
//! status (with `Retry-After`), a hang, or a malformed body.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

/// A failure to answer the next request with.
#[derive(Debug, Clone)]
pub enum Fault {
    /// This status with an OpenAI error body, and `Retry-After` if given.
    Status(u16, Option<u64>),
    /// Wait this long before answering normally.
    Hang(Duration),
    /// A 200 whose body is not JSON.
    Malformed,
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// `/v1/embeddings` or `/v1/chat/completions`.
    pub path: String,
    /// The `Authorization` header.
    pub authorization: Option<String>,
    /// The W3C `traceparent` header.
    pub traceparent: Option<String>,
    /// The JSON body.
    pub body: Value,
}

/// Shared between the server and the test.
#[derive(Debug, Default)]
pub struct WireState {
    faults: Mutex<VecDeque<Fault>>,
    requests: Mutex<Vec<Recorded>>,
    dimensions: usize,
}

impl WireState {
    /// Answer the next requests with these faults, in order.
    pub fn inject(&self, faults: impl IntoIterator<Item = Fault>) {
        if let Ok(mut q) = self.faults.lock() {
            q.extend(faults);
        }
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Requests to `path` so far.
    pub fn count(&self, path: &str) -> usize {
        self.requests().iter().filter(|r| r.path == path).count()
    }
}

/// The running server.
pub struct FakeOpenAi {
    /// `http://127.0.0.1:PORT/v1`, for `OPENAI_BASE_URL`.
    pub base_url: String,
    /// Faults and recorded requests.
    pub state: Arc<WireState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeOpenAi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeOpenAi {
    /// Start on a free loopback port, producing `dimensions`-long vectors.
    pub async fn start(dimensions: usize) -> Self {
        let state = Arc::new(WireState {
            dimensions,
            ..WireState::default()
        });
        let app = Router::new()
            .route("/v1/embeddings", post(embeddings))
            .route("/v1/chat/completions", post(chat))
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            base_url: format!("http://{addr}/v1"),
            state,
            task,
        }
    }
}

/// Record the request, then apply the next fault, if any: `Some(response)`
/// when the fault replaces the answer.
async fn intake(
    state: &WireState,
    path: &str,
    headers: &HeaderMap,
    body: &Value,
) -> Option<Response> {
    if let Ok(mut r) = state.requests.lock() {
        r.push(Recorded {
            path: path.to_owned(),
            authorization: headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            traceparent: headers
                .get("traceparent")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            body: body.clone(),
        });
    }
    let fault = state.faults.lock().ok().and_then(|mut q| q.pop_front());
    match fault {
        None => None,
        Some(Fault::Hang(d)) => {
            tokio::time::sleep(d).await;
            None
        }
        Some(Fault::Malformed) => Some(
            (
                StatusCode::OK,
                [("content-type", "application/json")],
                "{not json",
            )
                .into_response(),
        ),
        Some(Fault::Status(code, retry_after)) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let body = json!({"error": {"message": format!("injected {code}"), "type": "injected", "param": null, "code": null}});
            let mut response = (status, axum::Json(body)).into_response();
            if let Some(seconds) = retry_after {
                response
                    .headers_mut()
                    .insert("retry-after", seconds.to_string().parse().expect("header"));
            }
            Some(response)
        }
    }
}

/// The same lexical hashing idea as the built-in embedder, so that search
/// results are meaningful in tests.
fn embed(text: &str, dimensions: usize) -> Vec<f32> {
    let mut v = vec![0f32; dimensions];
    for word in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.len() > 2)
    {
        let word = word.to_lowercase();
        let h = word.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
        v[(h % dimensions as u64) as usize] += 1.0;
    }
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-6);
    v.iter().map(|x| x / norm).collect()
}

fn words(text: &str) -> u32 {
    u32::try_from(text.split_whitespace().count()).unwrap_or(u32::MAX)
}

async fn embeddings(
    State(state): State<Arc<WireState>>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    if let Some(r) = intake(&state, "/v1/embeddings", &headers, &body).await {
        return r;
    }
    let inputs: Vec<String> = match &body["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items
            .iter()
            .filter_map(|i| i.as_str().map(str::to_owned))
            .collect(),
        _ => return (StatusCode::BAD_REQUEST, "bad input").into_response(),
    };
    let tokens: u32 = inputs.iter().map(|t| words(t)).sum();
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, t)| json!({"object": "embedding", "index": i, "embedding": embed(t, state.dimensions)}))
        .collect();
    axum::Json(json!({
        "object": "list",
        "data": data,
        "model": body["model"],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens}
    }))
    .into_response()
}

/// The answer: the first sentence of source [1], cited.
fn answer_for(prompt: &str) -> String {
    let first_source = prompt
        .split("\n[1] ")
        .nth(1)
        .or_else(|| prompt.strip_prefix("Sources:\n[1] "))
        .and_then(|rest| rest.split_once('\n').map(|(_, text)| text))
        .and_then(|text| text.split(". ").next())
        .map(|s| s.trim_end_matches('.').to_owned());
    match first_source {
        Some(s) if !s.is_empty() => format!("According to the documents, {s}. [1]"),
        _ => "The documents do not answer the question.".to_owned(),
    }
}

async fn chat(
    State(state): State<Arc<WireState>>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    if let Some(r) = intake(&state, "/v1/chat/completions", &headers, &body).await {
        return r;
    }
    let prompt = body["messages"]
        .as_array()
        .and_then(|m| m.last())
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_owned();
    let answer = answer_for(&prompt);
    let (prompt_tokens, completion_tokens) = (words(&prompt), words(&answer));
    let usage = json!({"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens});
    if body["stream"] == true {
        let mut sse = String::new();
        for piece in answer.split_inclusive(' ') {
            let chunk = json!({"id": "chatcmpl-test", "object": "chat.completion.chunk", "created": 0, "model": body["model"],
                "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": null}]});
            sse.push_str(&format!("data: {chunk}\n\n"));
        }
        let last = json!({"id": "chatcmpl-test", "object": "chat.completion.chunk", "created": 0, "model": body["model"], "choices": [], "usage": usage});
        sse.push_str(&format!("data: {last}\n\ndata: [DONE]\n\n"));
        return Response::builder()
            .header("content-type", "text/event-stream")
            .body(Body::from(sse))
            .unwrap_or_default();
    }
    axum::Json(json!({
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 0,
        "model": body["model"],
        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop", "logprobs": null}],
        "usage": usage
    }))
    .into_response()
}
