//! Documents uploaded as files (`multipart/form-data`): each format read,
//! found by search with its page, listed and read with what it was; every
//! bad file refused with its reason, and nothing of its request stored.
//! The files are made here (`analyzer_extract::fixtures`: PDFs written by
//! lopdf, Word documents as a ZIP of WordprocessingML).

use analyzer_extract::fixtures::{self, Paragraph};
use analyzer_tests::{Options, on_both_databases, split, start};
use serde_json::{Value, json};

/// A multipart body: `files` as `file` parts, then the other parts.
fn form(files: &[(&str, &[u8])], fields: &[(&str, &str)]) -> (String, Vec<u8>) {
    let boundary = "analyzer-test-boundary-7d1f";
    let mut body = Vec::new();
    for (name, bytes) in files {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    for (name, value) in fields {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

async fn upload(
    s: &analyzer_tests::TestServer,
    token: &str,
    files: &[(&str, &[u8])],
    fields: &[(&str, &str)],
) -> (u16, Value) {
    let (content_type, body) = form(files, fields);
    let r = s
        .request(reqwest::Method::POST, "/v1/documents", token)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("upload");
    split(r).await
}

fn options() -> Options {
    Options {
        env: [
            ("ANALYZER_MAX_FILE_PAGES", "20"),
            ("ANALYZER_MAX_EXPANDED_BYTES", "1048576"),
            ("ANALYZER_MAX_FILE_BYTES", "4194304"),
            ("ANALYZER_MAX_UPLOAD_BYTES", "8388608"),
            ("ANALYZER_EXTRACT_TIMEOUT_SECONDS", "5"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect(),
        ..Options::default()
    }
}

on_both_databases! {
    async fn every_format_is_read_found_with_its_page_and_kept_apart_per_tenant(db: Db) {
        let Some(env) = start(db, options()).await else { return };
        let s = &env.server;
        let (_, token) = s.tenant("Uploader", "premium").await;
        let (_, other) = s.tenant("Bystander", "premium").await;
        let pdf = fixtures::pdf(&[
            "Harbour crane manual\nGeneral description of the crane.",
            "Hoist rope inspection\nReplace the hoist rope after 2000 operating hours.",
            "Load chart\nMaximum load at twenty metres is eight tonnes.",
        ]);
        let docx = fixtures::docx(&[
            Paragraph::Heading("Safety rules"),
            Paragraph::Text("Hard hats are mandatory on the quay."),
            Paragraph::PageBreak,
            Paragraph::Heading("Night shifts"),
            Paragraph::Text("Floodlights must be switched on at dusk."),
        ]);
        let html = b"<!DOCTYPE html><html><head><script>var tracking = 'pixel';</script></head><body><nav>Home | About</nav><h1>Tide tables</h1><p>High tide at the north pier is at 06:40.</p></body></html>";
        let markdown = b"# Canteen\n\nThe canteen serves lentil soup on Thursdays.\n\n## Hours\n\nOpen from 11 to 14.";
        let text = b"Parking permits are renewed every January at the gate office.";
        let options = json!([
            {"id": "manual", "metadata": {"kind": "manual"}},
            {"id": "rules", "metadata": {"kind": "rules"}},
            {"id": "tides"},
            {"id": "canteen"},
            {"id": "parking"}
        ]).to_string();
        let (status, body) = upload(
            s,
            &token,
            &[("crane.pdf", &pdf), ("rules.docx", &docx), ("tides.html", html), ("canteen.md", markdown), ("parking.txt", text)],
            &[("documents", &options), ("collection", "handbook")],
        )
        .await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["ids"], json!(["manual", "rules", "tides", "canteen", "parking"]));

        let (status, manual) = s.get("/v1/documents/manual", &token).await;
        assert_eq!(status, 200, "{manual}");
        assert_eq!(manual["collection"], "handbook");
        assert_eq!(manual["metadata"], json!({"kind": "manual"}));
        assert_eq!(manual["file"]["name"], "crane.pdf");
        assert_eq!(manual["file"]["media_type"], "application/pdf");
        assert_eq!(manual["file"]["pages"], 3);
        assert_eq!(manual["file"]["bytes"], pdf.len());
        assert!(manual["text"].as_str().expect("text").contains("eight tonnes"), "{manual}");
        let (_, tides) = s.get("/v1/documents/tides", &token).await;
        let tides_text = tides["text"].as_str().expect("text");
        assert!(tides_text.contains("06:40") && !tides_text.contains("tracking") && !tides_text.contains("About"), "{tides}");
        assert_eq!(tides["file"]["media_type"], "text/html");

        let search = |query: &str| json!({"query": query, "collection": "handbook", "top_k": 3});
        let (_, found) = s.post("/v1/search", &token, &search("when must the hoist rope be replaced")).await;
        assert_eq!(found["hits"][0]["document_id"], "manual", "{found}");
        assert_eq!(found["hits"][0]["page"], 2, "{found}");
        let (_, found) = s.post("/v1/search", &token, &search("floodlights at dusk on night shifts")).await;
        assert_eq!(found["hits"][0]["document_id"], "rules", "{found}");
        assert_eq!(found["hits"][0]["page"], 2, "{found}");
        for (query, id) in [("lentil soup canteen", "canteen"), ("parking permits renewed", "parking"), ("high tide north pier", "tides")] {
            let (_, found) = s.post("/v1/search", &token, &search(query)).await;
            assert_eq!(found["hits"][0]["document_id"], id, "{query}: {found}");
            assert!(found["hits"][0].get("page").is_none(), "{found}");
        }

        let (_, page) = s.get("/v1/documents?collection=handbook", &token).await;
        let listed: Vec<&Value> = page["documents"].as_array().expect("documents").iter().collect();
        assert_eq!(listed.len(), 5);
        assert!(listed.iter().all(|d| d["file"]["name"].is_string()), "{page}");

        // The other tenant sees none of it.
        let (status, _) = s.get("/v1/documents/manual", &other).await;
        assert_eq!(status, 404);
        let (status, found) = s.post("/v1/search", &other, &json!({"query": "hoist rope"})).await;
        assert_eq!(status, 200);
        assert_eq!(found["hits"], json!([]), "{found}");
    }
}

on_both_databases! {
    async fn every_bad_file_is_refused_with_its_reason_and_its_request_stores_nothing(db: Db) {
        let Some(env) = start(db, options()).await else { return };
        let s = &env.server;
        let (_, token) = s.tenant("Careful", "premium").await;
        let good = b"A good file: the quay closes at midnight.".to_vec();
        let many_pages: Vec<&str> = vec!["page"; 25];
        let cases: Vec<(&str, Vec<u8>, u16, &str, &str)> = vec![
            ("secret.pdf", fixtures::encrypted_pdf("classified"), 422, "unreadable_file", "encrypted"),
            ("broken.pdf", b"%PDF-1.7\nnot really a pdf".to_vec(), 422, "unreadable_file", "cannot be parsed"),
            ("empty.txt", Vec::new(), 422, "unreadable_file", "empty"),
            ("photo.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR".to_vec(), 415, "unsupported_file", "PNG"),
            ("invoice.pdf", b"plain text pretending to be a PDF".to_vec(), 415, "unsupported_file", "its name says PDF"),
            ("archive.docx", fixtures::plain_zip(), 415, "unsupported_file", "not a Word"),
            ("bomb.docx", fixtures::docx_bomb(8 << 20), 422, "unreadable_file", "expands"),
            ("loop.pdf", fixtures::recursive_pdf(), 422, "unreadable_file", ""),
            ("long.pdf", fixtures::pdf(&many_pages), 413, "payload_too_large", "25 pages"),
        ];
        for (name, bytes, status, code, reason) in &cases {
            let (got, problem) = upload(
                s,
                &token,
                &[("good.txt", &good), (name, bytes)],
                &[("documents", r#"[{"id": "good"}, {"id": "bad"}]"#)],
            )
            .await;
            assert_eq!((got, problem["code"].as_str()), (*status, Some(*code)), "{name}: {problem}");
            let errors = problem["errors"].as_array().expect("errors");
            assert_eq!(errors.len(), 1, "{name}: {problem}");
            assert_eq!(errors[0]["field"], "files[1]", "{problem}");
            let message = errors[0]["message"].as_str().expect("message");
            assert!(message.starts_with(&format!("{name}: ")) && message.contains(reason), "{name}: {problem}");
            let (status, _) = s.get("/v1/documents/good", &token).await;
            assert_eq!(status, 404, "{name}: the good file of a refused request was stored");
        }

        // Over the size of a file: refused as it streams.
        let big = vec![b'a'; 5 << 20];
        let (status, problem) = upload(s, &token, &[("good.txt", &good), ("big.txt", &big)], &[]).await;
        assert_eq!((status, problem["code"].as_str()), (413, Some("payload_too_large")), "{problem}");
        assert!(problem["detail"].as_str().expect("detail").contains("files[1]"), "{problem}");

        // Malformed requests.
        let (status, problem) = upload(s, &token, &[], &[("collection", "x")]).await;
        assert_eq!(status, 400, "{problem}");
        let (status, problem) = upload(s, &token, &[("good.txt", &good)], &[("documents", "[{}, {}]")]).await;
        assert_eq!((status, problem["errors"][0]["field"].as_str()), (400, Some("documents")), "{problem}");
        let (status, problem) = upload(s, &token, &[("good.txt", &good)], &[("extra", "x")]).await;
        assert_eq!((status, problem["errors"][0]["field"].as_str()), (400, Some("extra")), "{problem}");

        let (_, page) = s.get("/v1/documents", &token).await;
        assert_eq!(page["documents"], json!([]), "nothing of any refused request is stored: {page}");
        // The server is still well after the hostile files.
        let (status, body) = upload(s, &token, &[("good.txt", &good)], &[]).await;
        assert_eq!(status, 201, "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_runs_out_of_memory_costs_its_request_not_the_server() {
    // 64 MiB of address space is less than the child needs to read a few
    // megabytes: it aborts, as it would on a hostile file.
    let mut options = options();
    options
        .env
        .push(("ANALYZER_EXTRACT_MEMORY_BYTES".into(), "67108864".into()));
    let env = start(analyzer_tests::Db::Sqlite, options)
        .await
        .expect("start");
    let s = &env.server;
    let (_, token) = s.tenant("Unlucky", "standard").await;
    let text = "A line of plain text for the reader.\n".repeat(80_000);
    let (status, problem) = upload(s, &token, &[("big.txt", text.as_bytes())], &[]).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (422, Some("unreadable_file")),
        "{problem}"
    );
    assert!(
        problem["errors"][0]["message"]
            .as_str()
            .expect("message")
            .contains("the reader stopped"),
        "{problem}"
    );
    let (status, body) = s
        .post(
            "/v1/documents",
            &token,
            &json!({"documents": [{"id": "after", "text": "The server still serves."}]}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (_, page) = s.get("/v1/documents", &token).await;
    assert_eq!(
        page["documents"].as_array().map(Vec::len),
        Some(1),
        "{page}"
    );
}

/// Send `body` to `path` over `seconds`, in ten pieces; the status line.
async fn send_slowly(
    s: &analyzer_tests::TestServer,
    path: &str,
    token: &str,
    content_type: &str,
    body: &[u8],
    seconds: f64,
) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let addr = s.base.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("head");
    let pieces = body.chunks(body.len().div_ceil(10));
    for piece in pieces {
        // A server that answered already closes; the answer is read below.
        if stream.write_all(piece).await.is_err() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_secs_f64(seconds / 10.0)).await;
    }
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upload_has_the_upload_timeout_and_other_requests_the_request_timeout() {
    let options = Options {
        env: vec![
            ("ANALYZER_REQUEST_TIMEOUT_SECONDS".into(), "1".into()),
            ("ANALYZER_UPLOAD_TIMEOUT_SECONDS".into(), "4".into()),
        ],
        ..Options::default()
    };
    let env = start(analyzer_tests::Db::Sqlite, options)
        .await
        .expect("start");
    let s = &env.server;
    let (_, token) = s.tenant("Slow Link", "premium").await;
    let text = b"The ferry leaves the north pier at seven every morning.";

    // Longer than the request timeout, within the upload's: stored.
    let (content_type, body) = form(
        &[("ferry.txt", text)],
        &[("documents", r#"[{"id": "ferry"}]"#)],
    );
    let status = send_slowly(s, "/v1/documents", &token, &content_type, &body, 2.0).await;
    assert!(status.contains(" 201 "), "{status}");
    let (status, doc) = s.get("/v1/documents/ferry", &token).await;
    assert_eq!(status, 200, "{doc}");

    // Past the upload's: a 503, and nothing stored.
    let (content_type, body) = form(
        &[("late.txt", text)],
        &[("documents", r#"[{"id": "late"}]"#)],
    );
    let status = send_slowly(s, "/v1/documents", &token, &content_type, &body, 6.0).await;
    assert!(status.contains(" 503 "), "{status}");
    let (status, _) = s.get("/v1/documents/late", &token).await;
    assert_eq!(status, 404);

    // A JSON ingest as slow as the first upload: past the request timeout.
    let json = serde_json::to_vec(&json!({"documents": [{"id": "json", "text": "Slow JSON."}]}))
        .expect("json");
    let status = send_slowly(s, "/v1/documents", &token, "application/json", &json, 2.0).await;
    assert!(status.contains(" 503 "), "{status}");
    let (status, _) = s.get("/v1/documents/json", &token).await;
    assert_eq!(status, 404);
}
