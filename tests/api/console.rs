//! The web console (`services/web`): served by the binary at `/console`
//! with a strict policy; its committed API types are what the server
//! describes; its committed bundle is what its sources build to, within
//! its size budget; and a person can use it in a real browser (Playwright
//! driving Debian's Chromium against the real server).

use std::path::{Path, PathBuf};
use std::process::Command;

use analyzer_tests::node::{available, npm_install, run};
use analyzer_tests::{Db, Options, admin_token, start};

/// The gzipped JavaScript the console may ship (docs/console.md).
const JS_BUDGET_GZIP_BYTES: u64 = 150 * 1024;

fn web() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../services/web")
}

fn bin(name: &str) -> PathBuf {
    web().join("node_modules/.bin").join(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_is_served_with_a_strict_policy_and_cache_headers() {
    let env = start(Db::Sqlite, Options::default()).await.expect("start");
    let s = &env.server;
    let page = s.http.get(s.url("/console")).send().await.expect("request");
    assert_eq!(page.status(), 200);
    let header = |r: &reqwest::Response, name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(header(&page, "content-type"), "text/html; charset=utf-8");
    assert_eq!(header(&page, "cache-control"), "no-store");
    let policy = header(&page, "content-security-policy");
    assert!(policy.contains("script-src 'self'"), "{policy}");
    assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
    assert!(!policy.contains("unsafe"), "{policy}");
    assert_eq!(header(&page, "x-content-type-options"), "nosniff");
    let html = page.text().await.expect("body");
    // Every script is a file: the policy allows no inline script.
    assert!(!html.contains("<script>"), "{html}");
    let script = html
        .split("src=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .find(|src| src.ends_with(".js"))
        .expect("a script file")
        .to_owned();
    assert!(script.starts_with("/console/assets/"), "{script}");

    let asset = s.http.get(s.url(&script)).send().await.expect("request");
    assert_eq!(asset.status(), 200);
    assert_eq!(
        header(&asset, "cache-control"),
        "public, max-age=31536000, immutable"
    );
    assert_eq!(
        header(&asset, "content-type"),
        "text/javascript; charset=utf-8"
    );
    assert!(header(&asset, "content-security-policy").contains("default-src 'none'"));

    // A screen's path is the app's page (reloads land on it); a missing
    // asset is not.
    let screen = s
        .http
        .get(s.url("/console/admin/tenants"))
        .send()
        .await
        .expect("request");
    assert_eq!(screen.status(), 200);
    assert_eq!(header(&screen, "cache-control"), "no-store");
    let missing = s
        .http
        .get(s.url("/console/assets/index-00000000.js"))
        .send()
        .await
        .expect("request");
    assert_eq!(missing.status(), 404);

    let root = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .get(s.url("/"))
        .send()
        .await
        .expect("request");
    assert_eq!(root.status(), 307);
    assert_eq!(header(&root, "location"), "/console/");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_can_be_turned_off() {
    let options = Options {
        env: vec![("ANALYZER_CONSOLE".into(), "off".into())],
        ..Options::default()
    };
    let env = start(Db::Sqlite, options).await.expect("start");
    let s = &env.server;
    for path in ["/console", "/console/documents", "/"] {
        let r = s.http.get(s.url(path)).send().await.expect("request");
        assert_eq!(r.status(), 404, "{path}");
    }
    let (status, _) = s.get("/health", "").await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_committed_api_types_are_what_the_server_describes() {
    if !available("npm", "--version") {
        return;
    }
    npm_install(&web());
    let env = start(Db::Sqlite, Options::default()).await.expect("start");
    let spec = env.server.openapi().await;
    let file = env.dir.path().join("openapi.json");
    std::fs::write(&file, spec.to_string()).expect("write the description");
    let generated = env.dir.path().join("schema.d.ts");
    run(Command::new(bin("openapi-typescript"))
        .arg(&file)
        .arg("--output")
        .arg(&generated)
        .current_dir(web()));
    let committed =
        std::fs::read_to_string(web().join("src/api/schema.d.ts")).expect("schema.d.ts");
    let fresh = std::fs::read_to_string(&generated).expect("generated");
    assert!(
        committed == fresh,
        "services/web/src/api/schema.d.ts differs from the server's /openapi.json: \
         regenerate it (docs/console.md, `npm run generate`)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_committed_bundle_is_what_the_sources_build_to_and_within_budget() {
    if !available("npm", "--version") {
        return;
    }
    npm_install(&web());
    let out = tempfile::tempdir().expect("tempdir");
    run(Command::new(bin("tsc"))
        .args(["--noEmit", "-p", "."])
        .current_dir(web()));
    run(Command::new(bin("vite"))
        .args(["build", "--logLevel", "warn", "--emptyOutDir", "--outDir"])
        .arg(out.path())
        .current_dir(web()));
    let committed = files(&web().join("dist"));
    let built = files(out.path());
    let names = |f: &[(String, Vec<u8>)]| f.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(
        names(&committed),
        names(&built),
        "services/web/dist is not what the sources build to: `npm run build` there and commit it"
    );
    for ((name, a), (_, b)) in committed.iter().zip(&built) {
        assert!(
            a == b,
            "dist/{name} differs from the build: `npm run build` and commit it"
        );
    }
    let report = run(Command::new("node")
        .args(["scripts/size.mjs", "dist"])
        .current_dir(web()));
    let size: serde_json::Value = serde_json::from_str(&report).expect("size.mjs prints JSON");
    let js = size["js_gzip_bytes"].as_u64().expect("js_gzip_bytes");
    assert!(
        js > 0 && js <= JS_BUDGET_GZIP_BYTES,
        "the console's JavaScript is {js} bytes gzipped; the budget is {JS_BUDGET_GZIP_BYTES}"
    );
}

/// Every file under `dir`, by path, sorted.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
        for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let name = path
                    .strip_prefix(root)
                    .expect("under root")
                    .display()
                    .to_string();
                out.push((name, std::fs::read(&path).expect("read")));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_uses_the_console_in_a_real_browser() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    if !available("npm", "--version") || !available(&chromium, "--version") {
        return;
    }
    npm_install(&web());
    // Standard tenants get a small rate limit: the 429 test reaches it.
    let options = Options {
        env: vec![(
            "ANALYZER_TIER_STANDARD_REQUESTS_PER_MINUTE".into(),
            "12".into(),
        )],
        ..Options::default()
    };
    let env = start(Db::Sqlite, options).await.expect("start");
    let fixtures = env.dir.path().join("fixtures");
    std::fs::create_dir_all(&fixtures).expect("fixtures dir");
    std::fs::write(
        fixtures.join("crane-manual.pdf"),
        analyzer_extract::fixtures::pdf(&[
            "Daily inspection of the hooks and wire ropes comes before each shift.",
            "The crane's load limit is 12 tonnes at full reach, and less in high wind.",
        ]),
    )
    .expect("write the PDF");
    std::fs::write(
        fixtures.join("canteen.md"),
        "# Canteen\n\nThe canteen opens at 7:30 and serves lunch from noon until 14:00.\n",
    )
    .expect("write the Markdown");
    let mut command = Command::new(bin("playwright"));
    command
        .arg("test")
        .env("CONSOLE_URL", env.server.url(""))
        .env("ADMIN_TOKEN", admin_token())
        .env("FIXTURES", &fixtures)
        .env("CHROMIUM", &chromium)
        .env("E2E_OUTPUT", env.dir.path().join("playwright"))
        .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
        .current_dir(web());
    // `CONSOLE_SCREENSHOTS=docs/console` refreshes the docs' screenshots.
    if let Ok(dir) = std::env::var("CONSOLE_SCREENSHOTS") {
        command.env(
            "SCREENSHOTS",
            Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(dir),
        );
    }
    run(&mut command);
}
