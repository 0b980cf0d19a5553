//! The load harness. `cargo bench -p analyzer-tests --bench load` builds the
//! service in release mode, starts it (embedded defaults, or the real
//! backends named by `DATABASE_URL`, `REDIS_URL`, `QDRANT_URL`,
//! `OPENAI_BASE_URL` in the harness's environment), seeds tenants and a
//! corpus through the public API, runs the scenarios and prints one
//! Markdown table for docs/benchmarks.md. With `REDIS_URL` and a
//! PostgreSQL `DATABASE_URL` (the production shape) it also counts the
//! calls to each per request, and runs raw Redis GETs beside the cached
//! search. `-- --help` lists the options.

mod cgroup;
mod corpus;
mod counts;
mod drive;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use analyzer_tests::{Options, TestServer};
use anyhow::{Context as _, bail};
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use serde_json::json;

use cgroup::MemoryCgroup;
use corpus::Rng;
use drive::{Call, Outcome, Pace, Plan};

#[derive(Parser)]
#[command(about = "Load benchmark of the analyzer service")]
struct Args {
    /// Scenarios to run (all when none is given).
    #[arg(long = "scenario", value_enum)]
    scenarios: Vec<Scenario>,
    /// Concurrent connections of the throughput scenarios.
    #[arg(long, default_value_t = 1000)]
    connections: usize,
    /// Offered load of the throughput scenarios, requests/s over all
    /// connections (open loop: latency counts from when each call was
    /// due). 0: closed loop, each connection as fast as it is answered,
    /// which finds the maximum throughput.
    #[arg(long, default_value_t = 0)]
    rate: u32,
    /// Measured seconds per scenario.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Unmeasured seconds before each measurement.
    #[arg(long, default_value_t = 3)]
    warmup_seconds: u64,
    /// Chunks in the corpus of the uncached-search scenario.
    #[arg(long, default_value_t = 100_000)]
    chunks: usize,
    /// Chunks in each corpus of the noisy-neighbour scenario.
    #[arg(long, default_value_t = 20_000)]
    neighbour_chunks: usize,
    /// Requests per second of the quiet premium tenant (open loop).
    #[arg(long, default_value_t = 200)]
    quiet_rate: u32,
    /// Connections of the flooding standard tenant: its tier's concurrency
    /// cap by default, so it floods at the cap; more adds 429s.
    #[arg(long, default_value_t = 20)]
    flood_connections: usize,
    /// Run the server in a memory cgroup of its own with this limit, in MB
    /// (10^6 bytes), as a container's memory limit would hold it: heap and
    /// page cache together, reclaimed before anything is killed. Needs
    /// root and cgroup v1 or v2 with the memory controller.
    #[arg(long, value_name = "MB")]
    memory_limit: Option<u64>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum, Debug)]
enum Scenario {
    CachedSearch,
    UncachedSearch,
    Ingest,
    PdfIngest,
    Analyze,
    Mix,
    NoisyNeighbour,
    /// Three servers on one PostgreSQL and one Redis (needs both): each
    /// tenant's admitted requests against its tier's limit, and the
    /// fleet's throughput.
    Fleet,
}

/// One line of the report.
struct Row {
    name: String,
    connections: usize,
    outcome: Outcome,
    peak_rss_mib: f64,
    peak_anon_mib: f64,
    anon_mib: f64,
    /// The server's cgroup's peak usage, MiB, under `--memory-limit`.
    cgroup_peak_mib: Option<f64>,
    /// Calls to Redis and PostgreSQL per request, when they are the
    /// backends.
    per_request: Option<counts::PerRequest>,
}

/// The analyzer under load and what the harness knows of it.
struct Target {
    server: TestServer,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
    /// Server log lines already looked through for warnings and errors.
    log_seen: std::sync::atomic::AtomicUsize,
    /// The server's largest heap (RssAnon, kB) since the last reset, kept
    /// by a thread that reads it every 100 ms: Linux keeps a peak of the
    /// whole resident set only (VmHWM), mapped files included.
    peak_anon_kb: Arc<std::sync::atomic::AtomicU64>,
    /// Stops that thread.
    sampling: Arc<std::sync::atomic::AtomicBool>,
    /// The memory cgroup the server runs in (`--memory-limit`); after
    /// `server`, so the server is gone before the group is removed.
    cgroup: Option<Arc<MemoryCgroup>>,
}

impl Drop for Target {
    fn drop(&mut self) {
        self.sampling
            .store(false, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A `/proc/<pid>/status` field in kB.
fn status_kb(pid: u32, field: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Variables passed through from the harness's environment: they switch
/// the server to the real backends, or tune its vector store.
const BACKENDS: [&str; 11] = [
    "REDIS_URL",
    "QDRANT_URL",
    "QDRANT_API_KEY",
    "OPENAI_BASE_URL",
    "OPENAI_API_KEY",
    "EMBEDDING_MODEL",
    "EMBEDDING_DIMENSIONS",
    "CHAT_MODEL",
    "ANALYZER_CACHE_MAX_BYTES",
    "ANALYZER_DB_MAX_CONNECTIONS",
    "ANALYZER_VECTOR_SEARCH_EF",
];

impl Target {
    /// The server's WARN and ERROR log lines since the last call, counted
    /// by message (the cause of a 5xx in a scenario's row).
    fn new_problems(&self) -> Vec<(String, usize)> {
        use std::sync::atomic::Ordering;
        let Ok(lines) = self.server.stdout.lock() else {
            return Vec::new();
        };
        let from = self
            .log_seen
            .swap(lines.len(), Ordering::Relaxed)
            .min(lines.len());
        let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
        for line in &lines[from..] {
            let Ok(record) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let level = record["level"].as_str().unwrap_or_default();
            if level == "WARN" || level == "ERROR" {
                let message = record["fields"]["message"].as_str().unwrap_or("?");
                let error = record["fields"]["error"].as_str().unwrap_or_default();
                *counts
                    .entry(format!("{level} {message} {error}").trim().to_owned())
                    .or_default() += 1;
            }
        }
        counts.into_iter().collect()
    }

    /// Start the analyzer with `limits` (tier variables) on top of the
    /// backends from the environment. Access logs are off: at thousands of
    /// requests a second they would measure the harness's log reader.
    async fn start(
        limits: &[(&str, &str)],
        cgroup: Option<Arc<MemoryCgroup>>,
    ) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let database_url = std::env::var("DATABASE_URL").ok();
        let mut env: Vec<(String, String)> = BACKENDS
            .iter()
            .filter_map(|name| Some(((*name).to_owned(), std::env::var(name).ok()?)))
            .collect();
        env.push((
            "RUST_LOG".to_owned(),
            "info,tower_http=warn,sqlx=warn".to_owned(),
        ));
        env.extend(
            limits
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        let server = TestServer::start(
            dir.path(),
            database_url.as_deref(),
            Options {
                env,
                no_secret: false,
                cgroup: cgroup.as_ref().map(|g| g.dir().to_owned()),
            },
        )
        .await?;
        let addr = server
            .base
            .trim_start_matches("http://")
            .parse()
            .context("server address")?;
        let peak_anon_kb = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
        {
            let (peak, sampling, pid) = (
                Arc::clone(&peak_anon_kb),
                Arc::clone(&sampling),
                server.pid(),
            );
            std::thread::Builder::new()
                .name("heap-sampler".into())
                .spawn(move || {
                    use std::sync::atomic::Ordering;
                    while sampling.load(Ordering::Relaxed) {
                        if let Some(kb) = status_kb(pid, "RssAnon:") {
                            peak.fetch_max(kb, Ordering::Relaxed);
                        }
                        std::thread::sleep(Duration::from_millis(100));
                    }
                })?;
        }
        Ok(Self {
            server,
            addr,
            _dir: dir,
            log_seen: std::sync::atomic::AtomicUsize::new(0),
            peak_anon_kb,
            sampling,
            cgroup,
        })
    }

    /// Forget the peak resident memory so far (Linux `clear_refs`) and
    /// the peak heap.
    fn reset_peak(&self) {
        let _ = std::fs::write(format!("/proc/{}/clear_refs", self.server.pid()), "5");
        if let Some(group) = &self.cgroup {
            group.reset_peak();
        }
        self.peak_anon_kb
            .store(0, std::sync::atomic::Ordering::Relaxed);
    }

    /// The largest heap (RssAnon) since the last reset, MiB, as sampled
    /// every 100 ms.
    fn peak_anon_mib(&self) -> f64 {
        let kb = self
            .peak_anon_kb
            .load(std::sync::atomic::Ordering::Relaxed)
            .max(status_kb(self.server.pid(), "RssAnon:").unwrap_or(0));
        kb as f64 / 1024.0
    }

    /// Peak resident memory since the last reset, MiB: heap and mapped
    /// files (the shard's on-disk vectors and payload count once read).
    fn peak_rss_mib(&self) -> f64 {
        self.status_mib("VmHWM:")
    }

    /// Resident memory of the heap and stacks now (no mapped files), MiB.
    fn anon_mib(&self) -> f64 {
        self.status_mib("RssAnon:")
    }

    fn status_mib(&self, field: &str) -> f64 {
        status_kb(self.server.pid(), field).map_or(f64::NAN, |kb| kb as f64 / 1024.0)
    }

    /// Wait until the embedded vector store has flushed and indexed what
    /// was seeded (its optimizers build the HNSW index in the background),
    /// so that a scenario measures the steady state; a no-op on a Qdrant
    /// server, which has no such gauge.
    async fn settle(&self) -> anyhow::Result<()> {
        let began = Instant::now();
        let mut idle = 0;
        while idle < 2 {
            match self
                .server
                .metric("analyzer_vector_maintenance_pending")
                .await
            {
                Some(pending) if pending > 0.0 => idle = 0,
                Some(_) => idle += 1,
                None => return Ok(()),
            }
            if began.elapsed() > Duration::from_secs(900) {
                bail!("the vector store did not settle within 15 minutes");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let output = self.server.output();
        let layout = output
            .lines()
            .rev()
            .find(|l| l.contains("vector segments optimized"))
            .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .map(|v| {
                let f = &v["fields"];
                format!(
                    "; {} segments, {} points, {} in indexed segments",
                    f["segments"], f["points"], f["indexed_vectors"]
                )
            })
            .unwrap_or_default();
        eprintln!(
            "vector store settled (flushed and indexed) after {:.1} s{layout}",
            began.elapsed().as_secs_f64()
        );
        Ok(())
    }

    /// A new tenant of `tier`: its token.
    async fn tenant(&self, name: &str, tier: &str) -> Arc<str> {
        let (_, token) = self.server.tenant(name, tier).await;
        Arc::from(token)
    }

    /// Ingest about `chunks` chunks of synthetic text for `token`.
    async fn seed(&self, token: &str, prefix: &str, chunks: usize) -> anyhow::Result<usize> {
        const DOCS: usize = 100;
        const CHARS: usize = 3_000;
        let mut rng = Rng::new(prefix.len() as u64 * 7919 + chunks as u64);
        let (mut stored, mut first) = (0usize, 0usize);
        let began = Instant::now();
        while stored < chunks {
            let body = corpus::batch(&mut rng, prefix, first, DOCS, CHARS);
            let (status, answer) = self.server.post("/v1/documents", token, &body).await;
            if status != 201 && status != 200 {
                bail!("seeding {prefix}: {status} {answer}");
            }
            stored += answer["chunks"].as_u64().unwrap_or(0) as usize;
            first += DOCS;
        }
        eprintln!(
            "seeded {prefix}: {stored} chunks in {} documents, {:.1} s",
            first,
            began.elapsed().as_secs_f64()
        );
        Ok(stored)
    }
}

fn post(path: &'static str, token: &Arc<str>, body: serde_json::Value) -> Call {
    Call {
        method: hyper::Method::POST,
        path,
        token: Arc::clone(token),
        body: Bytes::from(body.to_string()),
        content_type: "application/json",
    }
}

/// The `n`th query of connection `conn`: three vocabulary words and a
/// token of its own, so that no two calls share a cache key.
fn new_query(conn: usize, n: u64, tag: &str) -> String {
    let mut rng = Rng::new((conn as u64) << 32 | n);
    corpus::query(&mut rng, Some(&format!("{tag}{conn}x{n}")))
}

/// Searches that are never cached.
fn new_searches(token: Arc<str>, tag: &'static str) -> Plan {
    Arc::new(move |conn, n| {
        let query = new_query(conn, n, tag);
        post("/v1/search", &token, json!({"query": query, "top_k": 5}))
    })
}

/// Limits far above the load, for the throughput scenarios: they measure
/// the service's capacity, not a tenant's quota (the noisy-neighbour
/// scenario keeps the tiers' concurrency caps).
const OPEN_LIMITS: [(&str, &str); 8] = [
    ("ANALYZER_TIER_PREMIUM_REQUESTS_PER_MINUTE", "100000000"),
    ("ANALYZER_TIER_PREMIUM_CONCURRENT_REQUESTS", "100000"),
    ("ANALYZER_TIER_STANDARD_REQUESTS_PER_MINUTE", "100000000"),
    ("ANALYZER_TIER_STANDARD_CONCURRENT_REQUESTS", "100000"),
    ("ANALYZER_TIER_PREMIUM_VECTOR_STORAGE_BYTES", "107374182400"),
    (
        "ANALYZER_TIER_STANDARD_VECTOR_STORAGE_BYTES",
        "107374182400",
    ),
    ("ANALYZER_TIER_PREMIUM_DB_CONNECTIONS", "16"),
    ("ANALYZER_TIER_STANDARD_DB_CONNECTIONS", "16"),
];

struct Bench {
    args: Args,
    /// Counts the calls to Redis and PostgreSQL, when they are configured.
    counter: Option<counts::Counter>,
    /// Raw Redis GETs at the same connection count, with `REDIS_URL`.
    raw_redis: Option<String>,
    /// The server's memory cgroup (`--memory-limit`).
    cgroup: Option<Arc<MemoryCgroup>>,
    window: (Duration, Duration),
    rows: Vec<Row>,
}

impl Bench {
    async fn measure(&mut self, target: &Target, name: &str, connections: usize, plan: Plan) {
        let (pace, name) = match self.args.rate {
            0 => (Pace::Closed, name.to_owned()),
            rate => (
                Pace::Every(Duration::from_secs_f64(
                    connections as f64 / f64::from(rate),
                )),
                format!("{name}, {rate}/s offered"),
            ),
        };
        target.reset_peak();
        let outcome = drive::run(target.addr, connections, pace, self.window, plan.clone()).await;
        self.record(target, &name, connections, outcome);
        if let Some(counter) = &self.counter {
            match counter
                .pass(&target.server.http, &target.server.base, &plan)
                .await
            {
                Ok(per) => {
                    eprintln!(
                        "  per request: {:.2} Redis commands, {:.2} database transactions",
                        per.redis_total().unwrap_or(0.0),
                        per.database.unwrap_or(0.0)
                    );
                    if let Some(row) = self.rows.last_mut() {
                        row.per_request = Some(per);
                    }
                }
                Err(e) => eprintln!("  counting the backends' calls failed: {e:#}"),
            }
        }
    }

    fn record(&mut self, target: &Target, name: &str, connections: usize, outcome: Outcome) {
        let mut row = Row {
            name: name.to_owned(),
            connections,
            peak_rss_mib: target.peak_rss_mib(),
            peak_anon_mib: target.peak_anon_mib(),
            anon_mib: target.anon_mib(),
            cgroup_peak_mib: target.cgroup.as_ref().map(|g| g.peak_mib()),
            outcome,
            per_request: None,
        };
        eprintln!("{}", line(&mut row));
        for (problem, count) in target.new_problems() {
            eprintln!("  server log: {count}× {problem}");
        }
        self.rows.push(row);
    }

    async fn cached_search(&mut self, target: &Target) -> anyhow::Result<()> {
        let token = target.tenant("cached", "premium").await;
        target.seed(&token, "cached", 2_000).await?;
        let mut rng = Rng::new(1);
        let queries: Arc<Vec<Bytes>> = Arc::new(
            (0..64)
                .map(|_| {
                    Bytes::from(
                        json!({"query": corpus::query(&mut rng, None), "top_k": 5}).to_string(),
                    )
                })
                .collect(),
        );
        for q in queries.iter() {
            let body: serde_json::Value = serde_json::from_slice(q)?;
            target.server.post("/v1/search", &token, &body).await;
        }
        let plan: Plan = Arc::new(move |conn, n| Call {
            method: hyper::Method::POST,
            path: "/v1/search",
            token: Arc::clone(&token),
            body: queries[(conn + n as usize) % queries.len()].clone(),
            content_type: "application/json",
        });
        self.measure(target, "cached search", self.args.connections, plan)
            .await;
        self.raw_redis = counts::raw_redis_get(self.args.connections).await;
        if let Some(raw) = &self.raw_redis {
            eprintln!("  {raw}");
        }
        Ok(())
    }

    async fn uncached_search(&mut self, target: &Target) -> anyhow::Result<()> {
        let token = target.tenant("uncached", "premium").await;
        let chunks = target.seed(&token, "uncached", self.args.chunks).await?;
        target.settle().await?;
        let plan = new_searches(token, "u");
        let name = format!("uncached search ({chunks} chunks)");
        self.measure(target, &name, self.args.connections, plan)
            .await;
        Ok(())
    }

    async fn ingest(&mut self, target: &Target) -> anyhow::Result<()> {
        let token = target.tenant("ingest", "premium").await;
        let plan: Plan = Arc::new(move |conn, n| {
            let mut rng = Rng::new((conn as u64) << 32 | n);
            post(
                "/v1/documents",
                &token,
                corpus::batch(&mut rng, &format!("c{conn}n{n}"), 0, 1, 1_500),
            )
        });
        self.measure(
            target,
            "ingest (1 document, ~2 chunks)",
            self.args.connections,
            plan,
        )
        .await;
        Ok(())
    }

    /// Uploads of a 50-page PDF (a new document each), a few at a time:
    /// each file is read by a child process, two at once by default.
    async fn pdf_ingest(&mut self, target: &Target) -> anyhow::Result<()> {
        const PAGES: usize = 50;
        const BOUNDARY: &str = "analyzer-load-boundary";
        let token = target.tenant("pdf", "premium").await;
        let mut rng = Rng::new(50);
        let pages: Vec<String> = (0..PAGES).map(|_| corpus::text(&mut rng, 1_500)).collect();
        let page_refs: Vec<&str> = pages.iter().map(String::as_str).collect();
        let pdf = Bytes::from(analyzer_extract::fixtures::pdf(&page_refs));
        eprintln!("pdf: {PAGES} pages, {} bytes", pdf.len());
        let plan: Plan = Arc::new(move |conn, n| {
            let mut body = format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"documents\"\r\n\r\n[{{\"id\": \"pdf-{conn}-{n}\"}}]\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"report.pdf\"\r\nContent-Type: application/pdf\r\n\r\n"
            )
            .into_bytes();
            body.extend_from_slice(&pdf);
            body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
            Call {
                method: hyper::Method::POST,
                path: "/v1/documents",
                token: Arc::clone(&token),
                body: Bytes::from(body),
                content_type: "multipart/form-data; boundary=analyzer-load-boundary",
            }
        });
        let connections = self.args.connections.min(4);
        self.measure(target, "PDF upload (50 pages)", connections, plan)
            .await;
        let peak_kb = target
            .server
            .output()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|l| l["fields"]["message"] == "file extracted")
            .filter_map(|l| l["fields"]["peak_rss_kb"].as_u64())
            .max();
        if let Some(row) = self.rows.last() {
            eprintln!(
                "  {:.0} pages/s; largest extracting child: {:.0} MiB",
                row.outcome.rate() * PAGES as f64,
                peak_kb.unwrap_or(0) as f64 / 1024.0
            );
        }
        Ok(())
    }

    async fn analyze(&mut self, target: &Target) -> anyhow::Result<()> {
        let token = target.tenant("analyze", "premium").await;
        target.seed(&token, "analyze", 10_000).await?;
        target.settle().await?;
        let plan: Plan = Arc::new(move |conn, n| {
            let question = new_query(conn, n, "a");
            post("/v1/analyze", &token, json!({ "question": question }))
        });
        self.measure(
            target,
            "analyze, extractive (10k chunks)",
            self.args.connections,
            plan,
        )
        .await;
        Ok(())
    }

    /// 20 tenants, 10 per tier, each connection one tenant's: 70% searches
    /// from a small set of popular queries, 20% new searches, 5% analyses,
    /// 5% ingests of one document.
    async fn mix(&mut self, target: &Target) -> anyhow::Result<()> {
        let mut tokens = Vec::new();
        for i in 0..20 {
            let tier = if i % 2 == 0 { "premium" } else { "standard" };
            let token = target.tenant(&format!("mix-{i}"), tier).await;
            target.seed(&token, &format!("mix{i}"), 1_000).await?;
            tokens.push(token);
        }
        target.settle().await?;
        let tokens = Arc::new(tokens);
        let plan: Plan = Arc::new(move |conn, n| {
            let token = &tokens[conn % tokens.len()];
            let mut rng = Rng::new((conn as u64) << 32 | n);
            match rng.below(100) {
                0..70 => {
                    let mut popular = Rng::new(rng.below(16) as u64);
                    post(
                        "/v1/search",
                        token,
                        json!({"query": corpus::query(&mut popular, None), "top_k": 5}),
                    )
                }
                70..90 => post(
                    "/v1/search",
                    token,
                    json!({"query": new_query(conn, n, "m"), "top_k": 5}),
                ),
                90..95 => post(
                    "/v1/analyze",
                    token,
                    json!({"question": new_query(conn, n, "m")}),
                ),
                _ => post(
                    "/v1/documents",
                    token,
                    corpus::batch(&mut rng, &format!("m{conn}n{n}"), 0, 1, 1_500),
                ),
            }
        });
        self.measure(
            target,
            "mix, 20 tenants of both tiers",
            self.args.connections,
            plan,
        )
        .await;
        Ok(())
    }

    /// Three servers sharing one PostgreSQL and one Redis, the load spread
    /// evenly over them: two premium tenants each sending far more than
    /// the tier's rate allows. Each tenant's admitted requests in the
    /// measured window are compared with what its limit allows in it (the
    /// burst of a whole minute is spent in the warm-up); the fleet's
    /// throughput (every answer, 429s included) is in the rows. Lines for
    /// the report.
    async fn fleet(&mut self) -> anyhow::Result<Vec<String>> {
        const SERVERS: usize = 3;
        // Two premium tenants: a standard tenant's work runs at the lowest
        // CPU priority and barely runs while premium work keeps the cores
        // busy (docs/decisions/lanes.md), which would measure the lanes,
        // not the limiter.
        const TENANTS: [&str; 2] = ["a", "b"];
        // Low enough that a tenant's burst (a whole minute's limit) is
        // spent within the warm-up and the window measures the refill.
        const LIMIT: u32 = 6_000;
        let database = std::env::var("DATABASE_URL").unwrap_or_default();
        if !database.starts_with("postgres") || std::env::var("REDIS_URL").is_err() {
            bail!(
                "the fleet scenario needs a PostgreSQL DATABASE_URL and REDIS_URL: three servers share them"
            );
        }
        let limit = LIMIT.to_string();
        let limits = [
            ("ANALYZER_TIER_PREMIUM_REQUESTS_PER_MINUTE", limit.as_str()),
            ("ANALYZER_TIER_PREMIUM_CONCURRENT_REQUESTS", "100000"),
            ("ANALYZER_EXPECTED_TASKS", "3"),
        ];
        let mut servers = Vec::new();
        for _ in 0..SERVERS {
            servers.push(Target::start(&limits, None).await?);
        }
        let query = json!({"query": "fleet", "top_k": 1});
        let mut tokens = Vec::new();
        for name in TENANTS {
            let token = servers[0].tenant(&format!("fleet {name}"), "premium").await;
            // One cached query: the load measures admission, not retrieval.
            servers[0].server.post("/v1/search", &token, &query).await;
            tokens.push(token);
        }
        let per_run = (self.args.connections / (SERVERS * TENANTS.len())).max(1);
        let mut runs = Vec::new();
        for target in &servers {
            for token in &tokens {
                let (token, query) = (Arc::clone(token), query.clone());
                let plan: Plan = Arc::new(move |_, _| post("/v1/search", &token, query.clone()));
                runs.push(drive::run(
                    target.addr,
                    per_run,
                    Pace::Closed,
                    self.window,
                    plan,
                ));
            }
        }
        let outcomes = futures::future::join_all(runs).await;
        let mut by_tenant: Vec<Outcome> = TENANTS.iter().map(|_| Outcome::default()).collect();
        for (i, outcome) in outcomes.into_iter().enumerate() {
            by_tenant[i % TENANTS.len()].merge(outcome);
        }
        let seconds = self.window.1.as_secs_f64();
        let allowed = f64::from(LIMIT) * seconds / 60.0;
        let mut lines = vec![String::new()];
        for (name, mut outcome) in TENANTS.iter().zip(by_tenant) {
            let admitted = outcome.statuses.get(&200).copied().unwrap_or(0);
            lines.push(format!(
                "fleet of {SERVERS}: tenant {name} ({LIMIT}/min) was admitted {admitted} requests in {seconds:.0} s, its limit allows {allowed:.0}: {:+.1}%",
                (admitted as f64 / allowed - 1.0) * 100.0
            ));
            outcome.window = self.window.1;
            self.record(
                &servers[0],
                &format!("fleet of {SERVERS}, tenant {name} (200s and 429s)"),
                per_run * SERVERS,
                outcome,
            );
        }
        Ok(lines)
    }

    /// A premium tenant at a steady rate, alone and then while a standard
    /// tenant floods the service at its concurrency cap: the premium
    /// tenant's p99 must not rise by more than 20%.
    async fn noisy_neighbour(&mut self) -> anyhow::Result<()> {
        // Only the concurrency caps bind: the flood is not cut short by
        // the standard tier's requests per minute.
        let target = Target::start(
            &[
                ("ANALYZER_TIER_PREMIUM_REQUESTS_PER_MINUTE", "100000000"),
                ("ANALYZER_TIER_STANDARD_REQUESTS_PER_MINUTE", "100000000"),
            ],
            self.cgroup.clone(),
        )
        .await?;
        let quiet = target.tenant("quiet", "premium").await;
        let noisy = target.tenant("noisy", "standard").await;
        let chunks = self.args.neighbour_chunks;
        target.seed(&quiet, "quiet", chunks).await?;
        target.seed(&noisy, "noisy", chunks).await?;
        target.settle().await?;

        let quiet_connections = 20usize;
        let interval = Duration::from_secs_f64(
            quiet_connections as f64 / f64::from(self.args.quiet_rate.max(1)),
        );
        let window = self.window;
        let quiet_run = || {
            drive::run(
                target.addr,
                quiet_connections,
                Pace::Every(interval),
                window,
                new_searches(Arc::clone(&quiet), "q"),
            )
        };

        target.reset_peak();
        let alone = quiet_run().await;
        self.record(
            &target,
            "premium alone (open loop)",
            quiet_connections,
            alone,
        );

        target.reset_peak();
        // The flood's client runs on its own runtime, on CPU nobody else
        // wants (SCHED_IDLE): in production a flood arrives over the
        // network, and here its generator would otherwise take the CPU
        // from the premium client's own sends and reads (two shared cores)
        // and be counted as the service's latency.
        let flood_client = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("flood-client")
            .on_thread_start(analyzer_runtime::lanes::lower_priority)
            .enable_all()
            .build()?;
        let flood = flood_client.spawn(drive::run(
            target.addr,
            self.args.flood_connections,
            Pace::Closed,
            window,
            new_searches(Arc::clone(&noisy), "n"),
        ));
        let (beside, flood) = tokio::join!(quiet_run(), flood);
        flood_client.shutdown_background();
        let flood = flood?;
        self.record(
            &target,
            "premium beside the flood",
            quiet_connections,
            beside,
        );
        self.record(
            &target,
            "standard tenant flooding at its cap",
            self.args.flood_connections,
            flood,
        );
        Ok(())
    }
}

fn line(row: &mut Row) -> String {
    let o = &mut row.outcome;
    let errors = if o.errors() == 0 {
        "0".to_owned()
    } else {
        let by_status: Vec<String> = o
            .statuses
            .iter()
            .filter(|(s, _)| !(200..300).contains(*s))
            .map(|(s, n)| format!("{n}×{s}"))
            .chain((o.failures > 0).then(|| format!("{}×no answer", o.failures)))
            .collect();
        format!("{} ({})", o.errors(), by_status.join(", "))
    };
    let cgroup = row
        .cgroup_peak_mib
        .map(|mib| format!(" {mib:.0} |"))
        .unwrap_or_default();
    format!(
        "| {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {:.0} | {:.0} | {:.0} |{cgroup}",
        row.name,
        row.connections,
        o.rate(),
        o.quantile_ms(0.50),
        o.quantile_ms(0.95),
        o.quantile_ms(0.99),
        errors,
        row.peak_rss_mib,
        row.peak_anon_mib,
        row.anon_mib,
    )
}

fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_default();
    format!("{cores} cores ({cpu}), {mem:.0} GiB")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; it means nothing here.
    let argv = std::env::args().filter(|a| a != "--bench");
    let args = Args::parse_from(argv);
    let scenarios = if args.scenarios.is_empty() {
        Scenario::value_variants().to_vec()
    } else {
        args.scenarios.clone()
    };
    let window = (
        Duration::from_secs(args.warmup_seconds),
        Duration::from_secs(args.seconds),
    );
    let cgroup = args
        .memory_limit
        .map(|mb| MemoryCgroup::create(mb.saturating_mul(1_000_000)))
        .transpose()?
        .map(Arc::new);
    let mut bench = Bench {
        args,
        counter: counts::Counter::from_env(),
        raw_redis: None,
        cgroup,
        window,
        rows: Vec::new(),
    };
    let throughput = scenarios
        .iter()
        .any(|s| !matches!(s, Scenario::NoisyNeighbour | Scenario::Fleet));
    if throughput {
        let target = Target::start(&OPEN_LIMITS, bench.cgroup.clone()).await?;
        for scenario in &scenarios {
            match scenario {
                Scenario::CachedSearch => bench.cached_search(&target).await?,
                Scenario::UncachedSearch => bench.uncached_search(&target).await?,
                Scenario::Ingest => bench.ingest(&target).await?,
                Scenario::PdfIngest => bench.pdf_ingest(&target).await?,
                Scenario::Analyze => bench.analyze(&target).await?,
                Scenario::Mix => bench.mix(&target).await?,
                Scenario::NoisyNeighbour | Scenario::Fleet => {}
            }
        }
    }
    if scenarios.contains(&Scenario::NoisyNeighbour) {
        bench.noisy_neighbour().await?;
    }
    let mut fleet_lines = Vec::new();
    if scenarios.contains(&Scenario::Fleet) {
        fleet_lines = bench.fleet().await?;
    }

    println!("\nmachine: {}", machine());
    println!(
        "window: {} s measured after {} s warm-up per scenario\n",
        window.1.as_secs(),
        window.0.as_secs()
    );
    let (cgroup_head, cgroup_rule) = match &bench.cgroup {
        Some(group) => {
            let (hits, kills) = group.pressure();
            println!(
                "memory limit: {}; reached {hits} times, {kills} processes killed for memory\n",
                group.describe()
            );
            (" cgroup peak (heap + page cache) MiB |", " --- |")
        }
        None => ("", ""),
    };
    println!(
        "| scenario | connections | requests/s | p50 ms | p95 ms | p99 ms | errors | server peak RSS MiB | server peak heap (RssAnon) MiB | server heap at end MiB |{cgroup_head}"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |{cgroup_rule}");
    for row in &mut bench.rows {
        println!("{}", line(row));
    }
    for line in &fleet_lines {
        println!("{line}");
    }
    if let Some(raw) = &bench.raw_redis {
        println!("\n{raw}");
    }
    if bench.rows.iter().any(|r| r.per_request.is_some()) {
        println!(
            "\nCalls to the backends per request ({} sequential requests after each measurement):\n",
            counts::REQUESTS
        );
        println!("| scenario | Redis commands | by command | PostgreSQL transactions |");
        println!("| --- | --- | --- | --- |");
        for row in &bench.rows {
            let Some(per) = &row.per_request else {
                continue;
            };
            let by: Vec<String> = per
                .redis
                .iter()
                .flatten()
                .map(|(name, n)| format!("{name} {n:.2}"))
                .collect();
            let number = |n: Option<f64>| n.map_or("-".to_owned(), |n| format!("{n:.2}"));
            println!(
                "| {} | {} | {} | {} |",
                row.name,
                number(per.redis_total()),
                by.join(", "),
                number(per.database)
            );
        }
    }
    let p99 = |name: &str, rows: &mut [Row]| {
        rows.iter_mut()
            .find(|r| r.name == name)
            .map(|r| r.outcome.quantile_ms(0.99))
    };
    if let (Some(alone), Some(beside)) = (
        p99("premium alone (open loop)", &mut bench.rows),
        p99("premium beside the flood", &mut bench.rows),
    ) {
        let rise = (beside / alone - 1.0) * 100.0;
        println!(
            "\nnoisy neighbour: premium p99 {alone:.2} ms alone, {beside:.2} ms beside the flood: {rise:+.1}% ({})",
            if rise <= 20.0 {
                "within 20%"
            } else {
                "MORE THAN 20%"
            }
        );
    }
    Ok(())
}
