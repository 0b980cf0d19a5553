//! The values the code and the infrastructure must agree on, read from the
//! Terraform files (parsed as HCL), the Dockerfile and the compose file:
//! the port, the health path (asked of a running server), the variables
//! and parameter names the task is given (each must be one the service
//! reads, checked by loading the service's configuration from them), the
//! drain time against the ALB's deregistration delay and ECS's stop
//! timeout, and the log messages the alarms count.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use analyzer::config::{Config, Env};
use analyzer_telemetry::Exports;
use hcl::{Block, BlockLabel, Body, Expression, ObjectKey};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the repository root")
        .to_path_buf()
}

fn read(relative: &str) -> String {
    let path = repo().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn tf(relative: &str) -> Body {
    hcl::parse(&read(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

fn label(block: &Block, i: usize) -> Option<&str> {
    block.labels().get(i).map(BlockLabel::as_str)
}

/// The block `identifier "labels[0]" "labels[1]"`.
fn block<'a>(body: &'a Body, identifier: &str, labels: &[&str]) -> &'a Block {
    body.blocks()
        .find(|b| {
            b.identifier() == identifier
                && labels
                    .iter()
                    .enumerate()
                    .all(|(i, l)| label(b, i) == Some(*l))
        })
        .unwrap_or_else(|| panic!("no block {identifier} {labels:?}"))
}

fn attr<'a>(body: &'a Body, key: &str) -> &'a Expression {
    body.attributes()
        .find(|a| a.key() == key)
        .map(|a| a.expr())
        .unwrap_or_else(|| panic!("no attribute {key}"))
}

fn number(e: &Expression) -> u64 {
    match e {
        Expression::Number(n) => n.as_u64().expect("a whole number"),
        other => panic!("expected a number, got {other:?}"),
    }
}

fn string(e: &Expression) -> String {
    match e {
        Expression::String(s) => s.clone(),
        other => panic!("expected a string, got {other:?}"),
    }
}

/// A `local.NAME` reference in `stack`, resolved from its `locals`.
fn resolve<'a>(stack: &'a Body, e: &'a Expression) -> &'a Expression {
    if let Expression::Traversal(t) = e
        && let Expression::Variable(v) = &t.expr
        && v.as_str() == "local"
        && let [hcl::expr::TraversalOperator::GetAttr(name)] = t.operators.as_slice()
    {
        return attr(block(stack, "locals", &[]).body(), name.as_str());
    }
    e
}

/// Every key of every object literal in `e` (through function calls and
/// conditionals: `merge({...}, cond ? {} : {...})`).
fn object_keys(e: &Expression, out: &mut BTreeSet<String>) {
    match e {
        Expression::Object(object) => {
            for key in object.keys() {
                match key {
                    ObjectKey::Identifier(id) => out.insert(id.as_str().to_owned()),
                    ObjectKey::Expression(Expression::String(s)) => out.insert(s.clone()),
                    other => panic!("unexpected key {other:?}"),
                };
            }
        }
        Expression::FuncCall(call) => call.args.iter().for_each(|a| object_keys(a, out)),
        Expression::Conditional(c) => {
            object_keys(&c.true_expr, out);
            object_keys(&c.false_expr, out);
        }
        Expression::Parenthesis(inner) => object_keys(inner, out),
        _ => {}
    }
}

/// The last path segment of a `"${var.path}/NAME"` template.
fn parameter_name(e: &Expression) -> String {
    let text = match e {
        Expression::TemplateExpr(t) => t.to_string(),
        Expression::String(s) => s.clone(),
        other => panic!("expected a parameter path, got {other:?}"),
    };
    text.trim_matches('"')
        .rsplit('/')
        .next()
        .expect("a name")
        .to_owned()
}

/// An environment that answers from `values` and remembers what was asked.
struct Recording {
    values: BTreeMap<String, String>,
    asked: Mutex<BTreeSet<String>>,
}

impl Env for Recording {
    fn var(&self, name: &str) -> Option<String> {
        if let Ok(mut asked) = self.asked.lock() {
            asked.insert(name.to_owned());
        }
        self.values.get(name).cloned().filter(|v| !v.is_empty())
    }
}

/// Names the service reads outside `Config` and the OTLP settings: the log
/// filter (tracing) and the Parameter Store path (read first, by `cli`).
const READ_ELSEWHERE: [&str; 2] = ["RUST_LOG", "ANALYZER_SSM_PATH"];

/// A plausible value for a variable or parameter, so that loading the
/// configuration checks names and values together.
fn sample_value(name: &str) -> String {
    match name {
        "DATABASE_URL" => "postgres://analyzer:pw@db.internal:5432/analyzer?sslmode=require",
        "REDIS_URL" => "rediss://:token@cache.internal:6379",
        "QDRANT_URL" => "http://10.0.10.5:6334",
        "JWT_SECRET" => "0123456789abcdef0123456789abcdef0123456789abcdef",
        "OTEL_EXPORTER_OTLP_ENDPOINT" => "http://collector:4318",
        _ => "sample",
    }
    .to_owned()
}

/// Load the service's configuration and OTLP settings from `given`
/// (name → value), and return the names that neither asked for.
fn unread(given: &BTreeMap<String, String>) -> (Config, Vec<String>) {
    let env = Recording {
        values: given.clone(),
        asked: Mutex::new(BTreeSet::new()),
    };
    let config =
        Config::load(&env).unwrap_or_else(|e| panic!("the service rejects {given:?}: {e}"));
    Exports::from_env(|name| env.var(name)).expect("OTLP settings");
    let asked = env.asked.lock().expect("lock").clone();
    let unread = given
        .keys()
        .filter(|k| !asked.contains(*k) && !READ_ELSEWHERE.contains(&k.as_str()))
        .cloned()
        .collect();
    (config, unread)
}

#[test]
fn every_terraform_file_parses() {
    let mut count = 0;
    let mut stack = vec![repo().join("infra")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("infra/") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "tf") {
                let text = std::fs::read_to_string(&path).expect("read");
                hcl::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                count += 1;
            }
        }
    }
    assert!(count >= 30, "only {count} .tf files found");
}

#[test]
fn the_task_is_given_only_what_the_service_reads_and_the_drain_fits_the_timeouts() {
    let stack = tf("infra/modules/stack/main.tf");
    let ecs_call = block(&stack, "module", &["ecs"]).body();
    let alb_call = block(&stack, "module", &["alb"]).body();

    // The port: the service's default bind, the ALB's target, the image's.
    let port = number(resolve(&stack, attr(ecs_call, "container_port")));
    assert_eq!(
        number(resolve(&stack, attr(alb_call, "container_port"))),
        port
    );
    let defaults =
        Config::load(&std::collections::HashMap::<String, String>::new()).expect("defaults");
    assert_eq!(u64::from(defaults.bind.port()), port);
    let dockerfile = read("docker/Dockerfile");
    assert!(dockerfile.contains(&format!("EXPOSE {port}")));
    assert!(dockerfile.contains(&format!("ANALYZER_BIND=0.0.0.0:{port}")));

    // Drain: the ALB stops sending before the service stops waiting, and
    // ECS waits longer than both plus the flush.
    let drain = number(resolve(&stack, attr(ecs_call, "drain_seconds")));
    let stop = number(resolve(&stack, attr(ecs_call, "stop_timeout_seconds")));
    let deregistration = number(resolve(
        &stack,
        attr(alb_call, "deregistration_delay_seconds"),
    ));
    assert!(
        deregistration <= drain,
        "deregistration {deregistration} s > drain {drain} s"
    );
    assert!(
        stop >= drain + 5,
        "stopTimeout {stop} s leaves no time after the {drain} s drain"
    );
    assert!(stop <= 120, "Fargate's stopTimeout is at most 120 s");

    // The task's environment and parameters are names the service reads,
    // with values it accepts.
    let ecs = tf("infra/modules/ecs/main.tf");
    let locals = block(&ecs, "locals", &[]).body();
    let mut names = BTreeSet::new();
    object_keys(attr(locals, "environment"), &mut names);
    for expected in [
        "ANALYZER_SSM_PATH",
        "ANALYZER_SHUTDOWN_TIMEOUT_SECONDS",
        "ANALYZER_BIND",
    ] {
        assert!(
            names.contains(expected),
            "{expected} missing from the task: {names:?}"
        );
    }
    let ssm = tf("infra/modules/ssm/main.tf");
    let mut parameters = BTreeSet::new();
    object_keys(
        attr(block(&ssm, "locals", &[]).body(), "values"),
        &mut parameters,
    );
    parameters.insert(parameter_name(attr(
        block(&ssm, "resource", &["aws_ssm_parameter", "openai_api_key"]).body(),
        "name",
    )));
    let qdrant = tf("infra/modules/qdrant/main.tf");
    let api_key = parameter_name(attr(
        block(&qdrant, "locals", &[]).body(),
        "api_key_parameter",
    ));
    assert!(
        parameters.contains(&api_key),
        "the Qdrant node reads {api_key}, which the stack does not create"
    );

    let mut given: BTreeMap<String, String> = names
        .iter()
        .chain(&parameters)
        .map(|n| (n.clone(), sample_value(n)))
        .collect();
    given.insert("ANALYZER_BIND".into(), format!("0.0.0.0:{port}"));
    given.insert(
        "ANALYZER_SHUTDOWN_TIMEOUT_SECONDS".into(),
        drain.to_string(),
    );
    given.insert("ANALYZER_ENV".into(), "production".into());
    given.insert("ANALYZER_EXPECTED_TASKS".into(), "3".into());
    given.insert("ANALYZER_DATA_DIR".into(), "/data".into());
    let (config, unread) = unread(&given);
    assert!(
        unread.is_empty(),
        "the task is given variables the service never reads: {unread:?}"
    );
    assert_eq!(config.shutdown_timeout.as_secs(), drain);
    assert!(config.qdrant.is_some() && config.cache.redis_url.is_some() && config.openai.is_some());
}

#[test]
fn the_compose_stack_gives_the_service_only_what_it_reads() {
    // The analyzer service's `environment:` map, read line by line (the
    // file is plain block YAML; no YAML parser is needed for one map).
    let compose = read("docker/compose.yaml");
    let mut given = BTreeMap::new();
    let mut in_service = false;
    let mut in_environment = false;
    for line in compose.lines() {
        let indent = line.len() - line.trim_start().len();
        let text = line.trim();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        match indent {
            2 => in_service = text == "analyzer:",
            4 => in_environment = in_service && text == "environment:",
            6 if in_environment => {
                let (key, value) = text.split_once(':').expect("KEY: value");
                let value = value.trim().trim_matches('"');
                let value = if value.starts_with("${") {
                    sample_value(key)
                } else {
                    value.to_owned()
                };
                given.insert(key.to_owned(), value);
            }
            _ => {}
        }
    }
    for expected in [
        "DATABASE_URL",
        "REDIS_URL",
        "QDRANT_URL",
        "JWT_SECRET",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ] {
        assert!(
            given.contains_key(expected),
            "{expected} missing: {given:?}"
        );
    }
    let (config, unread) = unread(&given);
    assert!(
        unread.is_empty(),
        "compose gives variables the service never reads: {unread:?}"
    );
    assert_eq!(config.bind.port(), 8000);
    assert!(compose.contains("\"${ANALYZER_PORT:-8000}:8000\""));
}

#[test]
fn the_alarms_count_the_log_lines_the_service_writes() {
    let monitoring = tf("infra/modules/monitoring/variables.tf");
    let default = |name: &str| {
        string(attr(
            block(&monitoring, "variable", &[name]).body(),
            "default",
        ))
    };
    assert_eq!(
        default("breaker_opened_message"),
        analyzer_telemetry::messages::BREAKER_OPENED
    );
    assert_eq!(
        default("llm_answer_message"),
        analyzer_telemetry::messages::LLM_ANSWER
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_path_of_the_target_group_and_the_image_answers() {
    let stack = tf("infra/modules/stack/main.tf");
    let alb_call = block(&stack, "module", &["alb"]).body();
    let path = string(resolve(&stack, attr(alb_call, "health_check_path")));
    let env = analyzer_tests::start_with(Vec::new()).await;
    let s = &env.server;
    let response = s.http.get(s.url(&path)).send().await.expect("health");
    assert_eq!(response.status(), 200, "{path}");
    // The image checks the same endpoint (`analyzer healthcheck`).
    assert!(read("docker/Dockerfile").contains("\"healthcheck\"]"));
    let ecs = read("infra/modules/ecs/main.tf");
    assert!(ecs.contains("\"/usr/local/bin/analyzer\", \"healthcheck\""));
}
