//! The HTTP server's connection handling: a request header that does not
//! arrive in time and an idle keep-alive connection are closed, the
//! connection bound holds, and a SIGTERM under keep-alive load answers
//! every request sent.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use analyzer_tests::start_with;
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn addr(base: &str) -> String {
    base.trim_start_matches("http://").to_owned()
}

/// Read until the peer closes the connection; how long that took, and
/// what it sent.
async fn until_closed(stream: &mut TcpStream, limit: Duration) -> (Duration, String) {
    let started = Instant::now();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(
            tokio::time::Instant::from_std(started + limit),
            stream.read(&mut buf),
        )
        .await
        {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
            Err(_) => panic!(
                "still open after {limit:?}; received {:?}",
                String::from_utf8_lossy(&received)
            ),
        }
    }
    (
        started.elapsed(),
        String::from_utf8_lossy(&received).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_header_sent_in_half_is_closed_after_the_header_timeout() {
    let env = start_with(env(&[
        ("ANALYZER_HEADER_READ_TIMEOUT_SECONDS", "1"),
        ("ANALYZER_IDLE_TIMEOUT_SECONDS", "30"),
    ]))
    .await;
    let mut stream = TcpStream::connect(addr(&env.server.base))
        .await
        .expect("connect");
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: analyzer\r\n")
        .await
        .expect("half a header");
    let (took, received) = until_closed(&mut stream, Duration::from_secs(10)).await;
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "closed after {took:?}"
    );
    assert!(received.is_empty(), "answered a half header: {received}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout_and_a_slow_request_is_not()
{
    let env = start_with(env(&[
        ("ANALYZER_HEADER_READ_TIMEOUT_SECONDS", "1"),
        ("ANALYZER_IDLE_TIMEOUT_SECONDS", "2"),
    ]))
    .await;
    // One answered request, then nothing: closed about 2 s later.
    let mut stream = TcpStream::connect(addr(&env.server.base))
        .await
        .expect("connect");
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: analyzer\r\n\r\n")
        .await
        .expect("request");
    let (took, received) = until_closed(&mut stream, Duration::from_secs(10)).await;
    assert!(received.starts_with("HTTP/1.1 200"), "{received}");
    assert!(
        took >= Duration::from_millis(1800) && took < Duration::from_secs(6),
        "closed after {took:?}"
    );
    // A connection that never sends anything is idle too.
    let mut silent = TcpStream::connect(addr(&env.server.base))
        .await
        .expect("connect");
    let (took, _) = until_closed(&mut silent, Duration::from_secs(10)).await;
    assert!(took >= Duration::from_millis(1800), "closed after {took:?}");

    // A request that takes longer than both timeouts to answer (a body
    // sent slowly) is in progress, not idle: it is answered.
    let (_, token) = env.server.tenant("Slow", "premium").await;
    let body = json!({"query": "pumps"}).to_string();
    let mut slow = TcpStream::connect(addr(&env.server.base))
        .await
        .expect("connect");
    let head = format!(
        "POST /v1/search HTTP/1.1\r\nHost: analyzer\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    slow.write_all(head.as_bytes()).await.expect("head");
    let (first, rest) = body.split_at(5);
    slow.write_all(first.as_bytes()).await.expect("body");
    tokio::time::sleep(Duration::from_secs(3)).await;
    slow.write_all(rest.as_bytes()).await.expect("body");
    let (_, received) = until_closed(&mut slow, Duration::from_secs(10)).await;
    assert!(received.starts_with("HTTP/1.1 200"), "{received}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_connection_bound_a_connection_waits_and_the_bound_is_logged() {
    let env = start_with(env(&[("ANALYZER_MAX_CONNECTIONS", "2")])).await;
    let s = &env.server;
    let first = TcpStream::connect(addr(&s.base)).await.expect("connect");
    let _second = TcpStream::connect(addr(&s.base)).await.expect("connect");
    let mut third = TcpStream::connect(addr(&s.base))
        .await
        .expect("the kernel completes the handshake");
    third
        .write_all(b"GET /health HTTP/1.1\r\nHost: analyzer\r\nConnection: close\r\n\r\n")
        .await
        .expect("request");
    let mut buf = [0u8; 64];
    assert!(
        tokio::time::timeout(Duration::from_millis(500), third.read(&mut buf))
            .await
            .is_err(),
        "the third connection was served beside two open ones"
    );
    let line = s
        .log_line(|l| {
            l["fields"]["message"]
                == "connection bound reached; new connections wait in the listen backlog"
        })
        .await
        .expect("the bound is logged");
    assert_eq!(line["fields"]["max_connections"], 2, "{line}");
    drop(first);
    let (_, received) = until_closed(&mut third, Duration::from_secs(10)).await;
    assert!(received.starts_with("HTTP/1.1 200"), "{received}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_keep_alive_load_answers_every_request_sent_before_the_listener_closed() {
    let mut env = start_with(env(&[
        ("ANALYZER_DRAIN_GRACE_SECONDS", "3"),
        ("ANALYZER_TIER_PREMIUM_REQUESTS_PER_MINUTE", "1000000"),
        ("ANALYZER_TIER_PREMIUM_CONCURRENT_REQUESTS", "1000"),
    ]))
    .await;
    let (_, token) = env.server.tenant("Steady", "premium").await;
    let (status, _) = env
        .server
        .post(
            "/v1/documents",
            &token,
            &json!({"documents": [{"text": "Pumps move water uphill."}]}),
        )
        .await;
    assert_eq!(status, 201);

    // Fifty clients, each on its own keep-alive connection, search without
    // pause; they stop sending 1.5 s after SIGTERM, inside the grace period.
    let stop = Arc::new(AtomicBool::new(false));
    let terminated = Arc::new(AtomicBool::new(false));
    let url = env.server.url("/v1/search");
    let clients: Vec<_> = (0..50)
        .map(|_| {
            let (stop, terminated, url, token) = (
                Arc::clone(&stop),
                Arc::clone(&terminated),
                url.clone(),
                token.clone(),
            );
            tokio::spawn(async move {
                let http = reqwest::Client::builder()
                    .pool_max_idle_per_host(1)
                    .timeout(Duration::from_secs(20))
                    .build()
                    .expect("client");
                let (mut answered, mut after_signal, mut closing, mut failures) =
                    (0u32, 0u32, 0u32, Vec::new());
                while !stop.load(Ordering::Relaxed) {
                    let sent_after_signal = terminated.load(Ordering::Relaxed);
                    match http
                        .post(&url)
                        .bearer_auth(&token)
                        .json(&json!({"query": "pumps water"}))
                        .send()
                        .await
                    {
                        Ok(r) if r.status() == 200 => {
                            answered += 1;
                            if sent_after_signal {
                                after_signal += 1;
                                closing += u32::from(
                                    r.headers().get("connection").is_some_and(|v| v == "close"),
                                );
                            }
                        }
                        Ok(r) => failures.push(format!("status {}", r.status())),
                        Err(e) => failures.push(format!("{e:?}")),
                    }
                }
                (answered, after_signal, closing, failures)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(800)).await;
    terminated.store(true, Ordering::Relaxed);
    env.server.terminate();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    let (mut answered, mut after_signal, mut closing) = (0, 0, 0);
    for client in clients {
        let (a, s, c, failures) = client.await.expect("client");
        assert!(failures.is_empty(), "requests not answered: {failures:?}");
        answered += a;
        after_signal += s;
        closing += c;
    }
    assert!(answered > 100, "only {answered} answered");
    assert!(
        after_signal >= 50,
        "only {after_signal} requests were sent after SIGTERM"
    );
    // Those sent in the moment before the signal arrived are answered as usual.
    assert!(
        closing > 0 && closing <= after_signal,
        "{closing} of {after_signal} answers after SIGTERM asked the client to close"
    );
    eprintln!(
        "SIGTERM under 50 keep-alive clients: {answered} answered, {after_signal} sent after the \
         signal ({closing} with Connection: close), none failed"
    );
    let status = env.server.wait().await.expect("exit");
    assert!(status.success(), "{status}");
    let line = env
        .server
        .log_line(|l| {
            l["fields"]["message"]
                == "listener closed; closing connections as their requests finish"
        })
        .await
        .expect("the drain is logged");
    assert!(line["fields"]["open_connections"].is_number(), "{line}");
}
