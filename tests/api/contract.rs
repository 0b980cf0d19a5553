//! docs/api.md, the contract, and `/openapi.json` name the same routes.

use std::collections::BTreeSet;
use std::path::Path;

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
    let s = &env.server;
    let (status, spec) = analyzer_tests::split(
        s.http
            .get(s.url("/openapi.json"))
            .send()
            .await
            .expect("openapi"),
    )
    .await;
    assert_eq!(status, 200);
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
