//! The request parsers of every endpoint, fuzzed: random JSON, valid
//! bodies with one field replaced by an extreme or ill-typed value, random
//! query strings and path segments, and the usage report over every pair
//! of a grid of boundary dates. Every answer must be a success or a 4xx
//! problem: a 5xx here is a panic or an unchecked input reaching a store.
//! The generator is seeded, so a failure names the case that reproduces it.

use analyzer_tests::{admin_token, start_with};
use serde_json::{Value, json};

/// xorshift64*: small, seeded, and enough to pick cases.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Strings that have broken parsers elsewhere.
const STRINGS: &[&str] = &[
    "",
    " ",
    "\u{0}",
    "a\u{0}b",
    "default",
    "../../etc/passwd",
    "%00",
    "💥🦀",
    "\u{202e}rtl",
    "9999-12-31",
    "0000-01-01",
    "2026-02-30",
    "2026-11-01T25:00:00Z",
    "99999-01-01",
    "1970-01-01T00:00:00Z",
    "-1",
    "NaN",
    "premium",
    "standard",
    "suspended",
    "active",
    "{}",
    "' OR 1=1 --",
];

fn extreme_number(rng: &mut Rng) -> Value {
    match rng.below(9) {
        0 => json!(i64::MAX),
        1 => json!(i64::MIN),
        2 => json!(u64::MAX),
        3 => json!(0),
        4 => json!(-1),
        5 => json!(1e308),
        6 => json!(-0.0),
        7 => json!(0.5),
        _ => json!(rng.next() as i64),
    }
}

fn random_value(rng: &mut Rng, depth: u32) -> Value {
    match rng.below(if depth == 0 { 5 } else { 7 }) {
        0 => Value::Null,
        1 => Value::Bool(rng.below(2) == 0),
        2 => extreme_number(rng),
        3 => Value::String((*rng.pick(STRINGS)).to_owned()),
        4 => Value::String("x".repeat(rng.below(5000))),
        5 => Value::Array(
            (0..rng.below(4))
                .map(|_| random_value(rng, depth - 1))
                .collect(),
        ),
        _ => Value::Object(
            (0..rng.below(4))
                .map(|i| {
                    let key = if rng.below(2) == 0 {
                        (*rng.pick(STRINGS)).to_owned()
                    } else {
                        format!("k{i}")
                    };
                    (key, random_value(rng, depth - 1))
                })
                .collect(),
        ),
    }
}

/// `valid` with one field (at any depth) replaced, removed, or added.
fn mutate(rng: &mut Rng, valid: &Value) -> Value {
    let mut value = valid.clone();
    mutate_in(rng, &mut value);
    value
}

fn mutate_in(rng: &mut Rng, at: &mut Value) {
    match at {
        Value::Object(map) if !map.is_empty() && rng.below(3) != 0 => {
            let key = map
                .keys()
                .nth(rng.below(map.len()))
                .cloned()
                .unwrap_or_default();
            if rng.below(4) == 0 {
                map.remove(&key);
            } else if let Some(next) = map.get_mut(&key) {
                mutate_in(rng, next);
            }
            return;
        }
        Value::Array(items) if !items.is_empty() && rng.below(3) != 0 => {
            let i = rng.below(items.len());
            mutate_in(rng, &mut items[i]);
            return;
        }
        _ => {}
    }
    if rng.below(5) == 0
        && let Value::Object(map) = at
    {
        map.insert("unexpected".into(), random_value(rng, 1));
        return;
    }
    *at = random_value(rng, 2);
}

fn query_string(rng: &mut Rng, names: &[&str]) -> String {
    let mut pairs = Vec::new();
    for name in names {
        if rng.below(5) != 0 {
            let raw = if rng.below(2) == 0 {
                // A date, in or out of range, in or out of the calendar.
                let (any_year, any_month, any_day) =
                    (rng.below(12_000), rng.below(14), rng.below(33));
                let year = *rng.pick(&[1969, 1970, 2026, 9998, 9999, 10_000, any_year]);
                let month = *rng.pick(&[0, 1, 2, 12, 13, any_month]);
                let day = *rng.pick(&[0, 1, 28, 29, 30, 31, 32, any_day]);
                format!("{year:04}-{month:02}-{day:02}")
            } else {
                (*rng.pick(STRINGS)).to_owned()
            };
            let encoded: String = raw.bytes().map(|b| format!("%{b:02X}")).collect();
            pairs.push(format!("{name}={encoded}"));
        }
    }
    if rng.below(4) == 0 {
        pairs.push("from=2026-01-01&from=2026-02-01".into());
    }
    pairs.join("&")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzzed_requests_to_every_endpoint_get_an_answer_or_a_4xx_problem_never_a_5xx() {
    let env = start_with(
        [
            ("ANALYZER_TIER_PREMIUM_REQUESTS_PER_MINUTE", "1000000"),
            ("ANALYZER_TIER_PREMIUM_CONCURRENT_REQUESTS", "1000"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect(),
    )
    .await;
    let s = &env.server;
    let admin = admin_token();
    let (tenant, token) = s.tenant("Fuzzed", "premium").await;

    let valid: Vec<(reqwest::Method, String, bool, Value)> = vec![
        (
            reqwest::Method::POST,
            "/v1/documents".into(),
            false,
            json!({"collection": "c1", "documents": [{"id": "d1", "text": "Pumps move water.", "metadata": {"k": "v", "n": 1}}]}),
        ),
        (
            reqwest::Method::POST,
            "/v1/search".into(),
            false,
            json!({"query": "pumps", "top_k": 3, "collection": "c1", "filter": {"k": "v"}}),
        ),
        (
            reqwest::Method::POST,
            "/v1/analyze".into(),
            false,
            json!({"question": "What do pumps move?", "top_k": 2, "stream": false, "filter": {"n": 1}}),
        ),
        (
            reqwest::Method::POST,
            "/v1/admin/tenants".into(),
            true,
            json!({"name": "Acme", "tier": "premium"}),
        ),
        (
            reqwest::Method::PATCH,
            format!("/v1/admin/tenants/{tenant}"),
            true,
            json!({"tier": "premium", "status": "active", "name": "Fuzzed"}),
        ),
        (
            reqwest::Method::POST,
            format!("/v1/admin/tenants/{tenant}/tokens"),
            true,
            json!({"ttl_seconds": 3600}),
        ),
    ];

    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut checked = 0;
    for case in 0..1200 {
        let (method, path, as_admin, body) = &valid[case % valid.len()];
        let body = if rng.below(4) == 0 {
            random_value(&mut rng, 3)
        } else {
            mutate(&mut rng, body)
        };
        let credential = if *as_admin { &admin } else { &token };
        let r = s
            .request(method.clone(), path, credential)
            .json(&body)
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        let (_, answer) = analyzer_tests::split(r).await;
        assert!(
            status < 500,
            "case {case}: {method} {path} {body} answered {status}: {answer}"
        );
        if status >= 400 {
            assert!(
                answer["detail"].is_string(),
                "case {case}: not a problem: {answer}"
            );
        }
        checked += 1;
    }

    let gets: Vec<(String, Vec<&str>, bool)> = vec![
        ("/v1/admin/usage".into(), vec!["from", "to", "format"], true),
        ("/v1/admin/tenants".into(), vec!["limit"], true),
        ("/v1/usage".into(), vec!["from"], false),
    ];
    for case in 0..300 {
        let (path, names, as_admin) = &gets[case % gets.len()];
        let url = format!("{path}?{}", query_string(&mut rng, names));
        let credential = if *as_admin { &admin } else { &token };
        let r = s
            .request(reqwest::Method::GET, &url, credential)
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        assert!(status < 500, "case {case}: GET {url} answered {status}");
        checked += 1;
    }
    // The report's period, over a grid of boundary dates and times: every
    // pair of them, in range or not.
    let mut bounds = Vec::new();
    for year in [1969, 1970, 2026, 9999, 10_000] {
        for (month, day) in [(1, 0), (1, 1), (2, 29), (12, 31), (13, 1)] {
            bounds.push(format!("{year:04}-{month:02}-{day:02}"));
        }
        bounds.push(format!("{year:04}-12-31T23:00:00Z"));
    }
    for from in &bounds {
        for to in &bounds {
            let url = format!("/v1/admin/usage?from={from}&to={to}");
            let r = s
                .request(reqwest::Method::GET, &url, &admin)
                .send()
                .await
                .expect("request");
            let status = r.status().as_u16();
            assert!(status < 500, "GET {url} answered {status}");
            checked += 1;
        }
    }
    for case in 0..200 {
        let raw = rng.pick(STRINGS);
        let encoded: String = raw.bytes().map(|b| format!("%{b:02X}")).collect();
        let segment = if rng.below(2) == 0 {
            encoded
        } else {
            "x".repeat(rng.below(300) + 1)
        };
        for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
            let path = format!("/v1/documents/{segment}");
            let r = s
                .request(method.clone(), &path, &token)
                .send()
                .await
                .expect("request");
            let status = r.status().as_u16();
            assert!(
                status < 500,
                "case {case}: {method} {path} answered {status}"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 1900 + bounds.len() * bounds.len());
    let (status, _) = s.get("/health", "").await;
    assert_eq!(status, 200, "the server still serves");
}
