//! docs/api.md, the contract, and `/openapi.json` name the same routes.

use std::collections::BTreeSet;
use std::path::Path;

use analyzer_tests::node::{available, npm_install, run};
use analyzer_tests::{Db, Options, start};

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

/// `METHOD /path` of every route in the HTTP API table of docs/api.md.
fn documented_routes() -> BTreeSet<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/api.md");
    let text = std::fs::read_to_string(&path).expect("docs/api.md");
    let section = text
        .split("\n## HTTP API\n")
        .nth(1)
        .expect("an HTTP API section")
        .split("\n## ")
        .next()
        .unwrap_or_default();
    section
        .lines()
        .filter(|line| line.starts_with("| `"))
        .filter_map(|line| line.split('`').nth(1))
        .filter(|route| METHODS.iter().any(|m| route.starts_with(&format!("{m} /"))))
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_routes_are_the_routes_of_the_openapi_description() {
    let env = start(Db::Sqlite, Options::default()).await.expect("start");
    let spec = env.server.openapi().await;
    let mut served = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            served.insert(format!("{} {path}", method.to_ascii_uppercase()));
        }
    }
    // The description does not describe itself.
    served.insert("GET /openapi.json".to_owned());
    let documented = documented_routes();
    assert!(documented.len() > 10, "parsed docs/api.md: {documented:?}");
    assert_eq!(documented, served, "docs/api.md and /openapi.json disagree");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_openapi_description_is_valid_openapi() {
    if !available("openapi-spec-validator", "--version") {
        return;
    }
    let env = start(Db::Sqlite, Options::default()).await.expect("start");
    let spec = env.server.openapi().await;
    let file = env.dir.path().join("openapi.json");
    std::fs::write(&file, spec.to_string()).expect("write the description");
    run(std::process::Command::new("openapi-spec-validator").arg(&file));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typescript_client_generated_from_the_description_type_checks_and_runs_a_journey() {
    if !available("npm", "--version") {
        return;
    }
    let client = Path::new(env!("CARGO_MANIFEST_DIR")).join("client");
    npm_install(&client);
    let env = start(Db::Sqlite, Options::default()).await.expect("start");
    let s = &env.server;
    let spec = s.openapi().await;
    let file = env.dir.path().join("openapi.json");
    std::fs::write(&file, spec.to_string()).expect("write the description");
    let bin = |name: &str| client.join("node_modules/.bin").join(name);
    run(std::process::Command::new(bin("openapi-typescript"))
        .arg(&file)
        .args(["--output", "generated/schema.d.ts"])
        .current_dir(&client));
    // Strict type check first, then the same sources built and run.
    run(std::process::Command::new(bin("tsc"))
        .arg("--noEmit")
        .current_dir(&client));
    run(std::process::Command::new(bin("tsc")).current_dir(&client));
    let (_, token) = s.tenant("Generated Client", "premium").await;
    run(std::process::Command::new("node")
        .arg("dist/journey.js")
        .env("ANALYZER_URL", s.url(""))
        .env("ANALYZER_TOKEN", token)
        .current_dir(&client));
}
