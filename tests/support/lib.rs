//! Helpers for the black-box tests: spawn the real `analyzer` binary on a
//! random port with its own data dir (and, for PostgreSQL, its own fresh
//! database), mint tokens, and call it over HTTP.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub mod fleet;
pub mod moto;
pub mod node;
pub mod openai_wire;
pub mod otlp;
pub mod qdrant_wire;
pub mod tcp_proxy;

use anyhow::{Context as _, bail};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// The HS256 secret every test server is started with.
pub const SECRET: &str = "test-secret-0123456789abcdef-0123456789";

/// Which database a test server uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    /// The embedded SQLite file in the data dir.
    Sqlite,
    /// A fresh database on the PostgreSQL server.
    Postgres,
}

/// The PostgreSQL server the tests use: `DATABASE_URL`, or the local one.
pub fn postgres_admin_url() -> String {
    std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| u.starts_with("postgres"))
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// The Redis server the tests use: `REDIS_URL`, or the local one.
pub fn redis_url() -> String {
    std::env::var("REDIS_URL")
        .ok()
        .filter(|u| u.starts_with("redis"))
        .unwrap_or_else(|| "redis://127.0.0.1:6379".to_owned())
}

/// Whether the shared Redis answers; `false` (with a note) outside CI when
/// it does not, a panic under `CI=true`.
pub async fn redis_available() -> bool {
    let url = redis_url();
    let addr = url
        .trim_start_matches("redis://")
        .split('/')
        .next()
        .unwrap_or("127.0.0.1:6379")
        .rsplit('@')
        .next()
        .unwrap_or("127.0.0.1:6379")
        .to_owned();
    match tokio::net::TcpStream::connect(&addr).await {
        Ok(_) => true,
        Err(e) => {
            if in_ci() {
                panic!("Redis at {addr} is required under CI=true: {e}");
            }
            eprintln!("SKIPPED: Redis at {addr} unreachable ({e})");
            false
        }
    }
}

/// A `redis-server` this test starts on a free loopback port, and stops.
pub struct OwnRedis {
    child: Option<Child>,
    /// Its port.
    pub port: u16,
}

impl OwnRedis {
    /// Start one (on `port`, or a free one). Panics under CI if
    /// `redis-server` is missing; `None` with a note elsewhere.
    pub async fn start(port: Option<u16>) -> Option<Self> {
        let port = match port {
            Some(p) => p,
            None => std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .expect("free port"),
        };
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match child {
            Ok(c) => c,
            Err(e) => {
                if in_ci() {
                    panic!("redis-server is required under CI=true: {e}");
                }
                eprintln!("SKIPPED: cannot start redis-server ({e})");
                return None;
            }
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "redis-server did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Some(Self {
            child: Some(child),
            port,
        })
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kill it and wait until the port is closed.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// A database created for one test server and dropped after it.
#[derive(Debug)]
pub struct PgDatabase {
    /// The URL of the fresh database.
    pub url: String,
    name: String,
    admin_url: String,
}

impl PgDatabase {
    /// Create a fresh database; `None` (with a note) if PostgreSQL is not
    /// reachable outside CI. Under `CI=true` an unreachable server fails.
    pub async fn create() -> Option<Self> {
        let admin_url = postgres_admin_url();
        let mut conn = match <sqlx::PgConnection as sqlx::Connection>::connect(&admin_url).await {
            Ok(c) => c,
            Err(e) => {
                if in_ci() {
                    panic!("PostgreSQL at {admin_url} is required under CI=true: {e}");
                }
                eprintln!("SKIPPED: PostgreSQL at {admin_url} unreachable ({e})");
                return None;
            }
        };
        let name = format!("analyzer_t_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("create test database");
        let base = admin_url
            .rsplit_once('/')
            .map_or(admin_url.as_str(), |(b, _)| b);
        Some(Self {
            url: format!("{base}/{name}"),
            name,
            admin_url,
        })
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let (admin, name) = (self.admin_url.clone(), self.name.clone());
        // Drop runs outside async context: use a short-lived runtime.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(mut conn) =
                    <sqlx::PgConnection as sqlx::Connection>::connect(&admin).await
                {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut conn)
                    .await;
                }
            });
        })
        .join();
    }
}

/// How to start a server.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// Do not set `JWT_SECRET` (dev mode, or other key config in `env`).
    pub no_secret: bool,
    /// Start the server inside this cgroup (its directory in cgroupfs):
    /// it joins the group before the binary runs, so everything it ever
    /// allocates or reads is charged there (the load harness's
    /// `--memory-limit`).
    pub cgroup: Option<PathBuf>,
}

/// A running `analyzer serve`.
pub struct TestServer {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// A client with a generous timeout.
    pub http: reqwest::Client,
    /// Everything the server printed on stdout so far.
    pub stdout: Arc<Mutex<Vec<String>>>,
    data_dir: PathBuf,
    database_url: Option<String>,
    options: Options,
}

/// The binary under test: from the variables cargo and nextest set when
/// running tests, else beside the test executable's `deps/` folder.
pub fn binary() -> PathBuf {
    const NAME: &str = "analyzer-under-test";
    for var in [
        format!("CARGO_BIN_EXE_{NAME}"),
        format!("NEXTEST_BIN_EXE_{NAME}"),
    ] {
        if let Some(path) = std::env::var_os(var) {
            return PathBuf::from(path);
        }
    }
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(Path::parent)
        .map(|dir| dir.join(NAME))
        .expect("target dir")
}

/// The environment every server and CLI call gets: nothing inherited that
/// could switch a backend, plus the data dir and database.
pub fn base_command(data_dir: &Path, database_url: Option<&str>) -> Command {
    command(Command::new(binary()), data_dir, database_url)
}

/// `cmd` with the environment of [`base_command`].
fn command(mut cmd: Command, data_dir: &Path, database_url: Option<&str>) -> Command {
    cmd.env_clear();
    for keep in ["PATH", "HOME", "TMPDIR", "LANG"] {
        if let Ok(v) = std::env::var(keep) {
            cmd.env(keep, v);
        }
    }
    cmd.env("ANALYZER_DATA_DIR", data_dir)
        .env("RUST_LOG", "info,sqlx=warn")
        .env("ANALYZER_SHUTDOWN_TIMEOUT_SECONDS", "10");
    if let Some(url) = database_url {
        cmd.env("DATABASE_URL", url);
    }
    cmd
}

impl TestServer {
    /// Start a server on `data_dir` and wait until it listens.
    pub async fn start(
        data_dir: &Path,
        database_url: Option<&str>,
        options: Options,
    ) -> anyhow::Result<Self> {
        let mut cmd = match &options.cgroup {
            // The shell joins the group, then becomes the server (same PID).
            Some(group) => {
                let mut sh = Command::new("sh");
                sh.arg("-c")
                    .arg(r#"echo $$ > "$0/cgroup.procs" && exec "$@""#)
                    .arg(group)
                    .arg(binary());
                command(sh, data_dir, database_url)
            }
            None => base_command(data_dir, database_url),
        };
        cmd.arg("serve").env("ANALYZER_BIND", "127.0.0.1:0");
        if !options.no_secret {
            cmd.env("JWT_SECRET", SECRET);
        }
        for (k, v) in &options.env {
            cmd.env(k, v);
        }
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().context("spawn analyzer")?;
        let stdout = child.stdout.take().context("stdout")?;
        let stderr = child.stderr.take().context("stderr")?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel::<String>();
        {
            let lines = Arc::clone(&lines);
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if let Ok(v) = serde_json::from_str::<Value>(&line)
                        && v["fields"]["message"] == "listening"
                        && let Some(addr) = v["fields"]["addr"].as_str()
                    {
                        let _ = addr_tx.send(addr.to_owned());
                    }
                    if let Ok(mut l) = lines.lock() {
                        l.push(line);
                    }
                }
            });
        }
        let errors = Arc::new(Mutex::new(Vec::new()));
        let stderr_reader = {
            let errors = Arc::clone(&errors);
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if let Ok(mut e) = errors.lock() {
                        e.push(line);
                    }
                }
            })
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        let addr = loop {
            if let Ok(addr) = addr_rx.try_recv() {
                break addr;
            }
            if let Some(status) = child.try_wait()? {
                // The process is gone, so its stderr ends: read it whole
                // before reporting (the reader may not have caught up).
                let _ = stderr_reader.join();
                bail!(
                    "analyzer exited with {status} before listening; stderr: {:?}",
                    errors.lock().map(|e| e.clone()).unwrap_or_default()
                );
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("analyzer did not start within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        Ok(Self {
            child: Some(child),
            base: format!("http://{addr}"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()?,
            stdout: lines,
            data_dir: data_dir.to_owned(),
            database_url: database_url.map(str::to_owned),
            options,
        })
    }

    /// The URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Send SIGTERM.
    ///
    /// Through `kill(1)` rather than a signal crate: `nix` is already in the
    /// service's graph with fewer features, and a test-only feature set
    /// would make `cargo run` after `cargo test` rebuild its dependents.
    pub fn terminate(&self) {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {} failed", self.pid());
    }

    /// Wait for the process to exit (after [`Self::terminate`]).
    pub async fn wait(&mut self) -> anyhow::Result<ExitStatus> {
        let mut child = self.child.take().context("already waited")?;
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("analyzer did not exit within 40 s of SIGTERM");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stop gracefully and start again on the same data dir and database.
    pub async fn restart(self) -> anyhow::Result<Self> {
        self.restart_with(|_| {}).await
    }

    /// Stop gracefully, let `between` change the data dir (what a crash or
    /// an operator would leave), and start again on it.
    pub async fn restart_with(mut self, between: impl FnOnce(&Path)) -> anyhow::Result<Self> {
        self.terminate();
        let status = self.wait().await?;
        if !status.success() {
            bail!("analyzer exited with {status}");
        }
        between(&self.data_dir);
        TestServer::start(
            &self.data_dir,
            self.database_url.as_deref(),
            self.options.clone(),
        )
        .await
    }

    /// Kill the process with SIGKILL (a crash: nothing is flushed or
    /// drained) and start again on the same data dir and database.
    pub async fn crash_and_restart(mut self) -> anyhow::Result<Self> {
        let mut child = self.child.take().context("already stopped")?;
        child.kill().context("SIGKILL")?;
        child.wait().context("reap")?;
        TestServer::start(
            &self.data_dir,
            self.database_url.as_deref(),
            self.options.clone(),
        )
        .await
    }

    /// Everything printed on stdout so far.
    pub fn output(&self) -> String {
        self.stdout.lock().map(|l| l.join("\n")).unwrap_or_default()
    }

    /// The first JSON log line that `matches`, waiting up to 5 s for it:
    /// a request's log lines can reach the reader of the server's stdout
    /// after its response has reached the test.
    pub async fn log_line(&self, matches: impl Fn(&Value) -> bool) -> Option<Value> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let found = self
                .output()
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find(|l| matches(l));
            if found.is_some() || Instant::now() > deadline {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The value of one sample in `GET /metrics`, named with its labels
    /// exactly as exposed (`name{label="value"}`); None when absent.
    pub async fn metric(&self, sample: &str) -> Option<f64> {
        sample_value(&self.metrics().await?, sample)
    }

    /// The whole `GET /metrics` text.
    pub async fn metrics(&self) -> Option<String> {
        self.http
            .get(self.url("/metrics"))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()
    }

    /// `GET /openapi.json`, which must answer 200.
    pub async fn openapi(&self) -> Value {
        let r = self
            .http
            .get(self.url("/openapi.json"))
            .send()
            .await
            .expect("openapi");
        let (status, spec) = split(r).await;
        assert_eq!(status, 200, "{spec}");
        spec
    }

    /// A request with a bearer token.
    pub fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
    ) -> reqwest::RequestBuilder {
        self.http.request(method, self.url(path)).bearer_auth(token)
    }

    /// POST JSON with a token; returns status and JSON body (Null if none).
    pub async fn post(&self, path: &str, token: &str, body: &Value) -> (u16, Value) {
        let r = self
            .request(reqwest::Method::POST, path, token)
            .json(body)
            .send()
            .await
            .expect("request");
        split(r).await
    }

    /// GET with a token.
    pub async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        let r = self
            .request(reqwest::Method::GET, path, token)
            .send()
            .await
            .expect("request");
        split(r).await
    }

    /// DELETE with a token.
    pub async fn delete(&self, path: &str, token: &str) -> (u16, Value) {
        let r = self
            .request(reqwest::Method::DELETE, path, token)
            .send()
            .await
            .expect("request");
        split(r).await
    }

    /// Create a tenant through the admin API and mint it a token.
    pub async fn tenant(&self, name: &str, tier: &str) -> (String, String) {
        let admin = admin_token();
        let (status, tenant) = self
            .post(
                "/v1/admin/tenants",
                &admin,
                &json!({"name": name, "tier": tier}),
            )
            .await;
        assert_eq!(status, 201, "{tenant}");
        let id = tenant["id"].as_str().expect("id").to_owned();
        let (status, minted) = self
            .post(
                &format!("/v1/admin/tenants/{id}/tokens"),
                &admin,
                &json!({}),
            )
            .await;
        assert_eq!(status, 200, "{minted}");
        (id, minted["token"].as_str().expect("token").to_owned())
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The value of one sample in a Prometheus text, named with its labels
/// exactly as exposed (`name{label="value"}`); None when absent.
pub fn sample_value(text: &str, sample: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let (name, value) = line.rsplit_once(' ')?;
        (name == sample).then(|| value.parse().ok())?
    })
}

/// The `field` of each of a problem's `errors`, in order.
pub fn problem_fields(problem: &Value) -> Vec<&str> {
    problem["errors"]
        .as_array()
        .map(|errors| errors.iter().filter_map(|e| e["field"].as_str()).collect())
        .unwrap_or_default()
}

/// Status and JSON body of a response.
pub async fn split(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Sign arbitrary claims with the test secret.
pub fn sign(claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("sign")
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// An admin token signed with the test secret.
pub fn admin_token() -> String {
    sign(&json!({"scope": "admin", "exp": now() + 3600}))
}

/// A tenant token signed with the test secret.
pub fn tenant_token(tenant_id: &str) -> String {
    sign(&json!({"tenant_id": tenant_id, "exp": now() + 3600}))
}

/// A running server with its data dir and (maybe) database kept alive.
pub struct Env {
    /// The server.
    pub server: TestServer,
    /// Keeps the data dir.
    pub dir: tempfile::TempDir,
    /// Keeps the database.
    pub pg: Option<PgDatabase>,
}

/// Start a server on `db`; `None` when PostgreSQL is unavailable outside CI.
pub async fn start(db: Db, options: Options) -> Option<Env> {
    let dir = tempfile::tempdir().expect("tempdir");
    let pg = match db {
        Db::Sqlite => None,
        Db::Postgres => Some(PgDatabase::create().await?),
    };
    let server = TestServer::start(dir.path(), pg.as_ref().map(|p| p.url.as_str()), options)
        .await
        .expect("server starts");
    Some(Env { server, dir, pg })
}

/// Start a server on SQLite with these extra environment variables.
pub async fn start_with(env: Vec<(String, String)>) -> Env {
    start(
        Db::Sqlite,
        Options {
            env,
            ..Options::default()
        },
    )
    .await
    .expect("server starts")
}

/// Run the analyzer CLI with the given args on a data dir/database.
pub fn cli(
    data_dir: &Path,
    database_url: Option<&str>,
    env: &[(&str, &str)],
    args: &[&str],
) -> (bool, String, String) {
    let mut cmd = base_command(data_dir, database_url);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.args(args).output().expect("run analyzer");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Define a test scenario once and run it on SQLite and on PostgreSQL.
#[macro_export]
macro_rules! on_both_databases {
    ($(#[$meta:meta])* async fn $name:ident($db:ident: Db) $body:block) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn scenario($db: $crate::Db) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_sqlite() {
                scenario($crate::Db::Sqlite).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_postgres() {
                scenario($crate::Db::Postgres).await;
            }
        }
    };
}
